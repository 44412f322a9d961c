"""``collapselab run``'s settings as command-line options, generated from the config's pydantic fields.

Each :class:`~collapselab.config.ExperimentConfig` field is one option (``--train-items``), its help
the field's description and its default the field's; a family hyper-parameter listed in
:data:`MODEL_FLAGS` is one too, its help naming the families that have it. So a new setting is
written once, in :mod:`collapselab.config`, and :func:`config_values` turns the options given back
into what :func:`~collapselab.config.load_config` takes.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Any, List, Optional

import typer
from pydantic.fields import FieldInfo

from collapselab.config import PARAMS, ExperimentConfig
from collapselab.errors import UserError

# config field -> its option's names, where they are not --field-name (booleans: --name/--no-name)
NAMES = {
    "generations": ("--generations", "-g"),
    "policies": ("--policy", "-p"),
    "vault_snapshot": ("--snapshot", "--vault-snapshot"),
    "resample_data": ("--resample-data/--shared-data",),
    "tree": ("--tree/--chains",),
}
HELP_TAIL = {  # said on the command line only
    "policies": " Repeatable or comma-separated.",
    "seeds": " E.g. 0 or 0,1,2 or 0-4.",
    "vault_snapshot": " (old spelling --vault-snapshot: deprecated)",
}
PATHS = ("vault", "credentials", "watermark_key", "watermark", "ledger_signing_key")  # files and folders
METAVARS = {"watermark": "SPEC"}
NOT_OPTIONS = ("model",)  # the family's settings: MODEL_FLAGS, or a config file
# family hyper-parameters with an option of their own (the rest: a config file's ``model:``)
MODEL_FLAGS = ("order", "temperature", "top_k", "top_p", "estimator", "bias", "epochs", "init", "decoding", "prompt_len",
               "num_beams", "repetition_penalty", "device", "recipe")


def _plain(annotation) -> type:
    """The type an option parses: ``Optional[X]`` is X, a Literal of strings str, a list List[str]."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Union:
        return _plain(args[0])
    if typing.get_origin(annotation) is typing.Literal:
        return type(args[0])
    if typing.get_origin(annotation) is list:
        return List[str]
    return annotation


def _help(info: FieldInfo, tail: str = "") -> str:
    text = (info.description or "").strip()
    text = text[:1].upper() + text[1:]
    default = info.get_default(call_default_factory=True)
    if isinstance(default, list):
        default = ", ".join(str(d) for d in default)
    elif isinstance(default, bool):
        default = "on" if default else "off"
    said = default is not None and "default" not in text.lower()
    return (text + (f" (default {default})" if said else "") + ("." if text and not text.endswith(".") else "") + tail).strip()


def _model_field(name: str) -> tuple[type, str]:
    """A family setting's type and help: the description of the first family that has it, after
    the families that do."""
    families = [f for f, cls in PARAMS.items() if name in cls.model_fields]
    info = next((PARAMS[f].model_fields[name] for f in families if PARAMS[f].model_fields[name].description),
                PARAMS[families[0]].model_fields[name])
    types = {_plain(PARAMS[f].model_fields[name].annotation) for f in families}
    kind = float if float in types else types.pop()  # epochs: a float for text, a whole number for images
    return kind, f"{'/'.join(families)}: {_help(info)}"


def run_parameters() -> list[inspect.Parameter]:
    """One keyword parameter per option, defaulting to None (= not given), in the config's order."""
    params = []
    for name, info in ExperimentConfig.model_fields.items():
        if name in NOT_OPTIONS:
            params += [_model_parameter(m) for m in MODEL_FLAGS]
            continue
        kind = _plain(info.annotation)
        if name in PATHS:
            kind = Path
        elif name == "seeds":
            kind = str  # ranges: 0-4
        flag = "--" + name.replace("_", "-")
        decls = NAMES.get(name, (f"{flag}/--no-{name.replace('_', '-')}",) if kind is bool else (flag,))
        option = typer.Option(None, *decls, help=_help(info, HELP_TAIL.get(name, "")), metavar=METAVARS.get(name),
                              show_default=False)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=Optional[kind]))
    return params


def _model_parameter(name: str) -> inspect.Parameter:
    kind, help_text = _model_field(name)
    option = typer.Option(None, "--" + name.replace("_", "-"), help=help_text, show_default=False)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=Optional[kind])


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                seeds.extend(range(int(lo), int(hi) + 1))
            elif part:
                seeds.append(int(part))
        except ValueError:
            raise UserError(f"--seeds {text!r}: {part!r} is not a whole number. Write e.g. --seeds 0,1,2 or --seeds 0-4.") from None
    if not seeds:
        raise UserError(f"--seeds {text!r}: no seed given. Write e.g. --seeds 0,1,2.")
    return seeds


def config_values(options: dict[str, Any]) -> dict[str, Any]:
    """The options given (not None) as config settings: family settings under ``model``, paths as
    text, ``--seeds`` ranges and ``--policy`` lists spelled out."""
    values = {k: v for k, v in options.items() if v is not None and k not in MODEL_FLAGS}
    values["model"] = {k: options[k] for k in MODEL_FLAGS if options.get(k) is not None}
    for k in PATHS:
        if k in values:
            values[k] = str(values[k])
    if "seeds" in values:
        values["seeds"] = parse_seeds(values["seeds"])
    if "policies" in values:
        values["policies"] = [p for item in values["policies"] for p in item.split(",") if p.strip()] or None
    return values
