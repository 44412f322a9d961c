"""``gate``: pass or fail a training set against a provenance policy, for CI pipelines.

The policy is a YAML file; every rule is optional, unknown keys and wrong types are a
:class:`~collapselab.errors.UserError` naming the file and the key::

    min_verified_human_share: 0.2   # least share of verified human documents (vault or ledger)
    max_synthetic_depth: 1          # deepest chain of model-made data behind any document
    max_flagged_share: 0.1          # most synthetic share a scan may allow: its 95% CI upper bound
    max_unverified_share: 0.5       # most share of documents with unverified provenance

The numbers are those of :func:`collapselab.report.compose.compose_trainset`. A rule that cannot be
judged (``max_flagged_share`` with no scan that estimates a share) fails, and so does any
disagreement between the provenance records and the training set (compose's ``checks``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from collapselab.errors import UserError


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    min_verified_human_share: Optional[float] = Field(None, ge=0, le=1)
    max_synthetic_depth: Optional[int] = Field(None, ge=0)
    max_flagged_share: Optional[float] = Field(None, ge=0, le=1)
    max_unverified_share: Optional[float] = Field(None, ge=0, le=1)


def load_policy(path: str | os.PathLike) -> Policy:
    """The policy in ``path``; any problem is one UserError line naming the file (and the key)."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{p}: no such policy file.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{p}: cannot read the policy ({getattr(e, 'strerror', None) or e}).") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise UserError(f"{p}{f', line {mark.line + 1}' if mark else ''}: malformed YAML "
                        f"({getattr(e, 'problem', None) or e}).") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{p}: a policy is a mapping of rules ({', '.join(Policy.model_fields)}), "
                        f"not a {type(data).__name__}.")
    if isinstance(data.get("max_synthetic_depth"), float) and data["max_synthetic_depth"].is_integer():
        data["max_synthetic_depth"] = int(data["max_synthetic_depth"])
    for k in ("min_verified_human_share", "max_flagged_share", "max_unverified_share"):
        if type(data.get(k)) is int:  # 0 and 1 are shares too
            data[k] = float(data[k])
    try:
        return Policy(**{str(k): v for k, v in data.items()})
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(map(str, err["loc"])) or "policy"
        if err["type"] == "extra_forbidden":
            raise UserError(f"{p}: {key}: unknown rule; the rules are {', '.join(Policy.model_fields)}.") from None
        got = err.get("input")
        raise UserError(f"{p}: {key}: {err['msg']} (got {got!r}).") from None


@dataclass
class GateResult:
    passed: bool
    reasons: list[str] = field(default_factory=list)  # one line per failed rule or check
    rules: dict = field(default_factory=dict)  # each rule given: its limit and the measured value

    def to_dict(self) -> dict:
        return asdict(self)


def _pct(x: float) -> str:
    return f"{x:.2%}"


def gate(composition, policy: Policy) -> GateResult:
    """Judge ``composition`` (a :class:`~collapselab.report.compose.Composition`) by ``policy``."""
    c = composition
    reasons: list[str] = []
    rules: dict = {}
    total = c.value("general", "documents")
    if policy.min_verified_human_share is not None:
        share = c.value("provenance", "verified_human", "share")
        rules["min_verified_human_share"] = {"limit": policy.min_verified_human_share, "value": share}
        if share < policy.min_verified_human_share:
            reasons.append(f"min_verified_human_share: {c.value('provenance', 'verified_human', 'documents')} of "
                           f"{total} documents are verified human ({_pct(share)}), below the required "
                           f"{_pct(policy.min_verified_human_share)}")
    if policy.max_synthetic_depth is not None:
        depth = c.value("provenance", "synthetic", "max_depth")
        rules["max_synthetic_depth"] = {"limit": policy.max_synthetic_depth, "value": depth}
        if depth > policy.max_synthetic_depth:
            deep = [m for m in c.data["sources"]["synthetic_models"] if m["depth"]["value"] > policy.max_synthetic_depth]
            who = ", ".join(f"{m['model_id']} (depth {m['depth']['value']}, {m['documents']['value']} documents)"
                            for m in deep[:3])
            reasons.append(f"max_synthetic_depth: synthetic depth {depth} above the allowed "
                           f"{policy.max_synthetic_depth}: {who}")
    if policy.max_flagged_share is not None:
        highs = [(s["high"]["value"], s["sidecar"]) for s in c.data["processing"]["detection"]
                 if s["high"]["value"] is not None and s["high"]["value"] == s["high"]["value"]]
        rules["max_flagged_share"] = {"limit": policy.max_flagged_share, "value": max(highs)[0] if highs else None}
        if not highs:
            reasons.append("max_flagged_share: no scan that estimates a synthetic share was given; pass --scores "
                           "S.parquet from `collapselab scan` (watermark or perplexity)")
        for high, sidecar in highs:
            if high > policy.max_flagged_share:
                reasons.append(f"max_flagged_share: scan {sidecar} allows a synthetic share up to {_pct(high)} "
                               f"(95% CI upper bound), above the allowed {_pct(policy.max_flagged_share)}")
    if policy.max_unverified_share is not None:
        share = c.value("provenance", "unverified", "share")
        rules["max_unverified_share"] = {"limit": policy.max_unverified_share, "value": share}
        if share > policy.max_unverified_share:
            reasons.append(f"max_unverified_share: {c.value('provenance', 'unverified', 'documents')} of {total} "
                           f"documents have unverified provenance ({_pct(share)}), above the allowed "
                           f"{_pct(policy.max_unverified_share)}")
    reasons += [f"provenance check: {x}" for x in c.data["checks"]]
    return GateResult(not reasons, reasons, rules)
