"""Collapse Lab: make AI model collapse happen on purpose, measure it, and prove which defences stop it."""

from collapselab.api import Run, load_run, run_experiment
from collapselab.config import ExperimentConfig, load_config
from collapselab.errors import UserError

__version__ = "0.1.0"
__all__ = ["run_experiment", "load_run", "Run", "ExperimentConfig", "load_config", "UserError", "__version__"]
