"""The policy spec grammar: one string names a data source and the defences around it.

A policy is written as a **data source**, optionally followed by **defences**, joined by ``+``::

    spec    := source ( "+" defence )*
    source  := replace | accumulate | accumulate-subsample | anchor[:F] | fresh[:F]
             | web[:LO-HI | :S][:pool | :train]
    defence := filter:DETECTOR[:FPR] | curate[:REWARD][:KEEP] | anchor[:F] | accumulate | accumulate-subsample
    DETECTOR := watermark | likelihood | classifier | fast-detectgpt | binoculars   (FPR default 0.01)
    REWARD   := reward | self | random                       (default reward; KEEP default 0.5)

Defences apply left to right, each to the training set the part before it built:
``web:0.1-0.9+filter:watermark:0.01+anchor:0.1`` filters the scraped web, then replaces 10% of
what is left with human data; ``...+anchor:0.1+filter:watermark`` would filter the human items
too. A spec's canonical form (``Policy.name``) spells every default out and names the run's
rows and random streams; ``parse_policy(p.name)`` gives ``p`` back.

The run parses its specs once, in the config (``ExperimentConfig.parsed_policies``); the sources
are in :mod:`collapselab.loop.sources` and :mod:`collapselab.loop.web`, the defences in
:mod:`collapselab.loop.defences` (docs/defences.md). This module is the only one that knows them
all, and nothing in the loop imports it.
"""

from __future__ import annotations

from collapselab.errors import UserError
from collapselab.loop.defences import DEFAULT_FPR, DEFAULT_KEEP, Accumulated, AccumulatedSubsample, Anchored, Curate, Filter
from collapselab.loop.judges import DETECTORS, REWARDS
from collapselab.loop.sources import SOURCES
from collapselab.loop.types import Policy
from collapselab.loop.web import SOURCES as WEB_SOURCES
from collapselab.loop.web import Web

POLICIES = SOURCES  # its old name
SPEC_HELP = ("Write a data source (replace, accumulate, accumulate-subsample, anchor[:F], fresh[:F], web[:LO-HI]), then defences "
             "joined by '+' (filter:DETECTOR[:FPR], curate[:REWARD][:KEEP], anchor[:F], accumulate, accumulate-subsample), "
             "e.g. 'anchor:0.1' or 'web:0.1-0.9+filter:watermark:0.01' (docs/defences.md).")
WEB_EXAMPLE = "web:0.1-0.9"
EXAMPLES = {"filter": f"web:0.1-0.9+filter:watermark:{DEFAULT_FPR:g}", "curate": f"web:0.1-0.9+curate:reward:{DEFAULT_KEEP:g}",
            "anchor": "web:0.1-0.9+anchor:0.1", "accumulate": "web:0.1-0.9+accumulate",
            "accumulate-subsample": "web:0.1-0.9+accumulate-subsample"}
MAX_ARGS = {"filter": 2, "curate": 1, "anchor": 1, "accumulate": 0, "accumulate-subsample": 0}  # curate: besides its optional reward name


def bad_spec(spec: str, problem: str, write: str = SPEC_HELP) -> UserError:
    """The one-line error for a policy spec: the spec, what is wrong, what to write."""
    return UserError(f"policy {spec!r}: {problem}. {write}")


def parse_fraction(arg: str, spec: str, what: str, example: str) -> float:
    """``arg`` as a number in [0, 1] (``what`` names it in the error, ``example`` shows a spec)."""
    try:
        x = float(arg)
    except ValueError:
        raise bad_spec(spec, f"{arg!r} is not a number", f"Write e.g. '{example}'.") from None
    if not 0.0 <= x <= 1.0:
        raise bad_spec(spec, f"the {what} must lie in [0, 1], got {x:g}", f"Write e.g. '{example}'.")
    return x


def parse_web(arg: str, spec: str) -> Web:
    """``web`` and its arguments: ``''``, ``'LO-HI'``, ``'S'``, each optionally followed by ``':pool'`` / ``':train'``."""
    args = [a.strip().lower() for a in arg.split(":")] if arg else []
    human = "pool"
    if args and args[-1] in WEB_SOURCES:
        human = args.pop()
    if len(args) > 1 or (args and not args[0]):
        raise bad_spec(spec, f"the web takes one share or range and a source, got {arg!r}",
                       f"Write e.g. '{WEB_EXAMPLE}', 'web:0.5' or '{WEB_EXAMPLE}:train'.")
    if not args:
        return Web(human=human)
    lo, dash, hi = args[0].partition("-")
    start = parse_fraction(lo, spec, "synthetic share", WEB_EXAMPLE)
    end = parse_fraction(hi, spec, "synthetic share", WEB_EXAMPLE) if dash else start
    return Web(start, end, human)


def _source(part: str, spec: str) -> Policy:
    name, _, arg = part.partition(":")
    name = name.strip().lower()
    if name == "web":
        return parse_web(arg, spec)
    if name in ("filter", "curate"):
        raise bad_spec(spec, f"{name!r} is a defence: it wraps a data source, so write one before it")
    if name not in SOURCES:
        raise bad_spec(spec, f"unknown data source {name!r}" if name else "no data source")
    cls = SOURCES[name]
    if not arg:
        return cls()
    if name in ("replace", "accumulate", "accumulate-subsample"):
        raise bad_spec(spec, f"{name!r} takes no fraction", f"Write just '{name}'.")
    return cls(parse_fraction(arg, spec, "fraction", f"{name}:0.1"))


def _is_number(arg: str) -> bool:
    try:
        float(arg)
    except ValueError:
        return False
    return True


def _choice(arg: str, choices: tuple, spec: str, what: str, example: str) -> str:
    if arg not in choices:
        raise bad_spec(spec, f"unknown {what} {arg!r}" if arg else f"no {what}",
                       f"Choose {', '.join(choices)}; write e.g. '{example}'.")
    return arg


def parse_defence(part: str, inner: Policy, spec: str) -> Policy:
    """The defence ``part`` (one '+'-separated piece of ``spec``) wrapped around ``inner``."""
    name, *args = [a.strip().lower() for a in part.split(":")]
    if name not in EXAMPLES:
        where = "a data source and can only come first" if name in ("replace", "fresh", "web") else "not a defence"
        raise bad_spec(spec, f"{name!r} after '+' is {where}")
    example = EXAMPLES[name]
    reward = "reward"
    if name == "curate" and args and not _is_number(args[0]):
        reward = _choice(args.pop(0), REWARDS, spec, "reward", example)
    if len(args) > MAX_ARGS[name]:
        raise bad_spec(spec, f"too many ':' arguments for {name!r}", f"Write e.g. '{example}'.")
    if name == "filter":
        detector = _choice(args[0] if args else "", DETECTORS, spec, "detector", example)
        return Filter(inner, detector, parse_fraction(args[1], spec, "false-positive rate", example) if len(args) > 1 else DEFAULT_FPR)
    if name == "curate":
        return Curate(inner, reward, parse_fraction(args[0], spec, "kept share", example) if args else DEFAULT_KEEP)
    if name == "anchor":
        return Anchored(inner, parse_fraction(args[0], spec, "fraction", example) if args else 0.1)
    if name == "accumulate-subsample":
        return AccumulatedSubsample(inner)
    return Accumulated(inner)


def parse_policy(spec: str) -> Policy:
    """A policy from its spec (the grammar is in the module docstring); one UserError line if bad."""
    parts = [p.strip() for p in str(spec).split("+")]
    if not all(parts):
        raise bad_spec(spec, "an empty part (a '+' with nothing on one side)")
    policy = _source(parts[0], spec)
    for part in parts[1:]:
        policy = parse_defence(part, policy, spec)
    return policy
