"""Moved to :mod:`collapselab.cli.pipeline`; this name keeps ``python -m collapselab.pipeline.pipeline_cli``
and old imports working."""

from collapselab.cli.pipeline import main, parse_size, pipeline_app, register  # noqa: F401

if __name__ == "__main__":
    main()
