"""``collapselab scan | filter | mix``: the corpus pipeline from the command line.

Each command is one call of :mod:`collapselab.pipeline`. :func:`register` adds the three commands
to the main app (``collapselab.cli``); ``pipeline_app`` holds the same commands on their own, and
``python -m collapselab.cli.pipeline`` (and the older ``python -m collapselab.pipeline.pipeline_cli``) runs it with the main CLI's error handling
(a UserError or a usage error: one line on stderr, exit 2).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import typer

from collapselab.cli.common import JSON_HELP, QUIET_HELP, print_json, progress_bar
from collapselab.pipeline.shards import SHARD_BYTES

ON_ERROR_HELP = "What a malformed JSONL line does: 'fail' stops with its file and line (default), 'skip' skips it with a count."
JOBS_HELP = ("Processes (or, with --backend ray, Ray tasks) working on shards at once (default: one per core). "
             "The output is the same whatever it is.")
SHARD_HELP = ("Plain JSONL per shard (the unit of parallel work and of resuming), in bytes or with a unit: 64MiB, 500MB, 1GiB; "
              ".gz and Parquet files are one shard each.")
BACKEND_HELP = ("Where the shards run: 'local' (--jobs processes on this machine) or 'ray' (Ray tasks: a local Ray, "
                "or the cluster at --address; needs the ray extra). The outputs are the same on both.")
ADDRESS_HELP = "With --backend ray: the Ray cluster to join ('auto', 'ray://HOST:10001', 'HOST:6379'); default: start a local Ray."
INPUTS_HELP = ("Files, folders or URLs (file://, memory://, s3://, gs://, hf://): JSON lines (.jsonl, .jsonl.gz, .json.gz, "
               ".jsonl.zst), Parquet, HF datasets folders (save_to_disk), .txt/.md (one document each); never modified.")
LEDGER_HELP = ("A provenance ledger (SQLite file or postgresql:// URL; made if absent) to record this command in: "
               "the files it read and wrote, by SHA-256, and its settings and counts (see `collapselab ledger steps`).")
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 10**3, "kib": 1 << 10, "m": 1 << 20, "mb": 10**6, "mib": 1 << 20,
          "g": 1 << 30, "gb": 10**9, "gib": 1 << 30}


def parse_size(text: str | int) -> int:
    """A size in bytes from ``268435456``, ``256MiB``, ``256M`` (binary), ``500MB`` (decimal) or ``1.5 GiB``."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    size = int(float(m.group(1)) * _UNITS[m.group(2).lower()]) if m and m.group(2).lower() in _UNITS else 0
    if size < 1:
        raise typer.BadParameter(f"{text!r} is not a size: give bytes (268435456) or a number and a unit (64MiB, 500MB, 1GiB)")
    return size


def scan_cmd(
    inputs: List[str] = typer.Argument(..., metavar="IN...", help=INPUTS_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="The sidecar Parquet to write (one row per document); OUT.json is its manifest."),
    watermark: Optional[Path] = typer.Option(None, "--watermark", help="A watermark scheme spec (YAML/JSON: collapselab, hf-kgw, synthid, gumbel, gumbel-dual; its key_file names the 0600 key). Flags documents whose p-value <= the spec's flag_p_value (docs/watermark.md)."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="With --watermark: the generator's tokenizer: a tokenizer.json, a model folder, a .gguf file, or 'smollm2' (the installed SmolLM2-135M)."),
    ids_field: Optional[str] = typer.Option(None, "--ids-field", help="With --watermark: the field/column holding each document's token ids (instead of --tokenizer)."),
    key: Optional[Path] = typer.Option(None, "--watermark-key", "--key", help="The watermark key file (0600, see `collapselab keys new`); for --detector watermark. (old spelling --key: deprecated)"),
    vocab: Optional[Path] = typer.Option(None, "--vocab", help="The generator's vocabulary file (one word a line, Vocabulary.save); for watermark and perplexity."),
    detector: str = typer.Option("watermark", "--detector", "--detectors", help="'watermark' (needs --watermark-key, no training), 'perplexity' (needs --vault), 'fast-detectgpt' or 'binoculars' (a causal language model, zero-shot; need --vault) or 'length' (characters, for quality rules)."),
    reference_vault: Optional[Path] = typer.Option(None, "--vault", "--reference-vault", help="perplexity: the vault whose snapshot fits (half) and calibrates (half) the reference n-gram; fast-detectgpt, binoculars: all its human text sets the threshold. (old spelling --reference-vault: deprecated)"),
    snapshot: Optional[str] = typer.Option(None, "--snapshot", help="perplexity, fast-detectgpt, binoculars: the vault snapshot (default: the latest)."),
    fpr_target: float = typer.Option(0.01, "--fpr-target", help="perplexity, fast-detectgpt, binoculars: the threshold flags this share of the vault's (held-out) human text."),
    lm_model: str = typer.Option("smollm2", "--lm-model", help="fast-detectgpt, binoculars: the scoring model (Binoculars' observer): 'smollm2' (the installed SmolLM2-135M) or a model folder."),
    performer: Optional[Path] = typer.Option(None, "--performer", help="binoculars: the second model's folder (e.g. a SmolLM2 fine-tuned by the loop, bench/lm_performer.py)."),
    device: str = typer.Option("cpu", "--device", help="fast-detectgpt, binoculars: 'cpu' or 'cuda' (or 'cuda:N')."),
    batch_tokens: int = typer.Option(4096, "--batch-tokens", help="fast-detectgpt, binoculars: tokens per forward pass, padding included (memory vs speed; scores depend on it only by float rounding)."),
    max_tokens: int = typer.Option(512, "--max-tokens", help="fast-detectgpt, binoculars: read at most this many tokens of each document."),
    dtype: str = typer.Option("float32", "--dtype", help="fast-detectgpt, binoculars: the models' weights, 'float32' or 'bfloat16'."),
    order: int = typer.Option(3, "--order", help="perplexity: the reference n-gram's order."),
    direction: float = typer.Option(1.0, "--direction", help="perplexity: +1 high perplexity = synthetic, -1 the reverse."),
    text_field: str = typer.Option("text", "--text-field", help="The field (JSONL) or column (Parquet) holding the text."),
    z_threshold: float = typer.Option(4.0, "--z-threshold", help="Flag a document when its watermark z reaches this."),
    gamma: float = typer.Option(0.25, "--gamma", help="The watermark's green share."),
    context_width: int = typer.Option(1, "--context-width", help="The watermark's context width h."),
    tpr: Optional[float] = typer.Option(None, "--tpr", help="The detector's true-positive rate, if known (default: measured with --tpr-from, else assumed 1, giving a lower bound)."),
    n_tpr: Optional[int] = typer.Option(None, "--n-tpr", help="How many documents --tpr was measured on (widens the CI)."),
    tpr_from: List[str] = typer.Option([], "--tpr-from", help="Files of known watermarked documents to measure the TPR on (repeatable)."),
    fpr: Optional[float] = typer.Option(None, "--fpr", help="The false-positive rate (default: exact binomial at the scanned lengths)."),
    n_fpr: Optional[int] = typer.Option(None, "--n-fpr", help="How many documents --fpr was measured on."),
    on_error: str = typer.Option("fail", "--on-error", help=ON_ERROR_HELP),
    batch_size: int = typer.Option(10_000, "--batch-size", help="Records per batch (memory is flat in the file size)."),
    force: bool = typer.Option(False, "--force", help="Rescan even if a finished sidecar matches the inputs."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help=JOBS_HELP + " fast-detectgpt, binoculars: default 1 (torch uses the cores)."),
    shard_size: int = typer.Option(SHARD_BYTES, "--shard-size", parser=parse_size, metavar="SIZE", help=SHARD_HELP),
    backend: str = typer.Option("local", "--backend", help=BACKEND_HELP),
    address: Optional[str] = typer.Option(None, "--address", help=ADDRESS_HELP),
    ledger: Optional[str] = typer.Option(None, "--ledger", help=LEDGER_HELP),
    fmt: str = typer.Option("parquet", "--format", help="'parquet': the sidecar only; 'dolma': also dolma attribute files (documents/X.json.gz -> attributes/NAME/X.json.gz, row for row), so `dolma mix` filters on the scores (docs/scale.md)."),
    attributes_name: str = typer.Option("collapselab", "--attributes-name", help="--format dolma: the attribute set's name (a dolma stream's attributes: [NAME])."),
    attributes_root: Optional[Path] = typer.Option(None, "--attributes-root", help="--format dolma: where the attribute files go when the inputs are not under a documents/ folder."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Score every document into a sidecar Parquet and estimate the synthetic share (95% CI).

    The estimate is corrected for the detector's TPR and FPR (Rogan–Gladen); the raw flagged
    share is printed beside it. The input is never modified."""
    from collapselab.pipeline.scan import scan_corpus

    if fmt not in ("parquet", "dolma"):
        raise typer.BadParameter(f"{fmt!r}: use 'parquet' (the sidecar) or 'dolma' (the sidecar and dolma attributes)",
                                 param_hint="--format")

    with _progress("scan", quiet or as_json) as progress:
        r = scan_corpus(inputs, key=key, vocab=vocab, out=out, detector=detector, text_field=text_field, on_error=on_error,
                        z_threshold=z_threshold, gamma=gamma, context_width=context_width, tpr=tpr, n_tpr=n_tpr, fpr=fpr,
                        n_fpr=n_fpr, tpr_from=tpr_from, batch_size=batch_size, force=force,
                        reference_vault=reference_vault, snapshot=snapshot, fpr_target=fpr_target, order=order,
                        direction=direction, jobs=jobs, shard_bytes=shard_size, progress=progress, ledger=ledger,
                        watermark=watermark, tokenizer=tokenizer, ids_field=ids_field, lm_model=lm_model,
                        performer=performer, device=device, batch_tokens=batch_tokens, max_tokens=max_tokens, dtype=dtype,
                        backend=backend, address=address)
    attrs = None
    if fmt == "dolma":
        from collapselab.integrations.dolma import write_attributes

        attrs = write_attributes(out, name=attributes_name, root=attributes_root)
    if as_json and attrs is not None:
        return print_json({**r.to_dict(), "dolma": attrs.to_dict()})
    _show("scan", r, as_json)
    if attrs is not None:
        typer.echo(attrs.summary())


def filter_cmd(
    inp: str = typer.Argument(..., metavar="IN", help="A file, folder or URL (scanned, unless --detector): JSON lines (kept and quarantined lines copied as read), Parquet or a datasets folder (Parquet outputs), .txt/.md."),
    scores: Optional[Path] = typer.Option(None, "--scores", help="The sidecar from `collapselab scan`."),
    detector: Optional[str] = typer.Option(None, "--detector", help="Instead of --scores: 'length' scores while reading, one pass, no sidecar."),
    text_field: str = typer.Option("text", "--text-field", help="With --detector: the field (JSONL) or column (Parquet) holding the text."),
    out: Path = typer.Option(..., "--out", "-o", help="Where the kept records go: .jsonl, .jsonl.gz or .jsonl.zst for JSON-lines and text input, .parquet for Parquet and datasets input."),
    quarantine: Path = typer.Option(..., "--quarantine", help="Where the dropped records go; Q.reasons.jsonl says why."),
    fpr: Optional[float] = typer.Option(None, "--fpr", help="Quarantine when the sidecar's p-value <= FPR (e.g. 0.01): exact for watermark scans, conformal against the vault's human text for fast-detectgpt and binoculars."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Quarantine when score >= THRESHOLD (e.g. 4)."),
    on_error: str = typer.Option("fail", "--on-error", help=ON_ERROR_HELP + " Skipped lines go to quarantine."),
    force: bool = typer.Option(False, "--force", help="Redo even if finished outputs match the inputs."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help=JOBS_HELP + " With --scores it works on the scan's shards."),
    shard_size: int = typer.Option(SHARD_BYTES, "--shard-size", parser=parse_size, metavar="SIZE", help="With --detector: " + SHARD_HELP),
    backend: str = typer.Option("local", "--backend", help=BACKEND_HELP),
    address: Optional[str] = typer.Option(None, "--address", help=ADDRESS_HELP),
    ledger: Optional[str] = typer.Option(None, "--ledger", help=LEDGER_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Split IN into kept and quarantined records by its scores; nothing is dropped silently.

    Scores: a scan's sidecar (--scores), or computed while reading (--detector length, one pass)."""
    from collapselab.pipeline.filter import filter_corpus

    with _progress("filter", quiet or as_json) as progress:
        r = filter_corpus(inp, scores=scores, out=out, quarantine=quarantine, fpr=fpr, threshold=threshold,
                          on_error=on_error, force=force, jobs=jobs, detector=detector, text_field=text_field,
                          shard_bytes=shard_size, progress=progress, ledger=ledger, backend=backend, address=address)
    _show("filter", r, as_json)


def mix_cmd(
    inputs: List[str] = typer.Argument(..., metavar="IN...", help="Files, folders or URLs (e.g. filtered web text), of the formats scan reads."),
    vault: Path = typer.Option(..., "--vault", "-V", help="The human-data vault folder."),
    snapshot: Optional[str] = typer.Option(None, "--snapshot", help="The sealed snapshot to draw from (default: the latest)."),
    min_human: float = typer.Option(..., "--min-human", help="Least share of verified human documents in the output (e.g. 0.1)."),
    out: Path = typer.Option(..., "--out", "-o", help="The training set (JSONL: .jsonl, .jsonl.gz or .jsonl.zst); OUT.json is its manifest."),
    seed: int = typer.Option(0, "--seed", help="Seed for drawing and placing the vault documents."),
    text_field: str = typer.Option("text", "--text-field", help="The field holding the text."),
    on_error: str = typer.Option("fail", "--on-error", help=ON_ERROR_HELP),
    force: bool = typer.Option(False, "--force", help="Redo even if a finished output matches the inputs."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help=JOBS_HELP + " It counts the inputs' shards; the writing pass is one."),
    backend: str = typer.Option("local", "--backend", help=BACKEND_HELP + " (the counting pass)"),
    address: Optional[str] = typer.Option(None, "--address", help=ADDRESS_HELP),
    ledger: Optional[str] = typer.Option(None, "--ledger", help=LEDGER_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Write a training set holding at least --min-human verified human documents from the vault."""
    from collapselab.pipeline.mix import mix_corpus

    with _progress("mix", quiet or as_json) as progress:
        r = mix_corpus(inputs, vault=vault, snapshot=snapshot, min_human=min_human, out=out, seed=seed,
                       text_field=text_field, on_error=on_error, force=force, jobs=jobs, progress=progress, ledger=ledger,
                       backend=backend, address=address)
    _show("mix", r, as_json)


@contextmanager
def _progress(command: str, quiet: bool):
    """A progress bar over a command's shards (on a terminal, without --quiet), as the API's ``progress``."""
    with progress_bar(command, quiet=quiet) as update:
        def progress(done: int, total: int, what: str) -> None:
            update(completed=done, total=total, description=f"{command}: {what} shards")

        yield progress


def _show(command: str, result, as_json: bool) -> None:
    """The result: as JSON (its ``stats`` too), or its summary and a last line with the run's figures."""
    from collapselab.pipeline.runner import summary_line

    if as_json:
        print_json(result.to_dict())
        return
    typer.echo(("(finished output found for these inputs: skipped) " if result.skipped else "") + result.summary())
    if result.stats:
        typer.echo(summary_line(command, result.stats))


def register(app: typer.Typer) -> None:
    """Add ``scan``, ``filter`` and ``mix`` to ``app`` as top-level commands."""
    app.command("scan")(scan_cmd)
    app.command("filter")(filter_cmd)
    app.command("mix")(mix_cmd)


pipeline_app = typer.Typer(help="The corpus pipeline: scan, filter, mix (streaming).", no_args_is_help=True, add_completion=False,
                           context_settings={"help_option_names": ["-h", "--help"]})
register(pipeline_app)


def main() -> None:
    from collapselab.cli import run_app  # the main CLI's error handling

    run_app(pipeline_app)


if __name__ == "__main__":
    main()
