"""Every knob of an experiment, validated once, with errors a newcomer can act on.

A config comes from YAML (or TOML), from CLI flags, or from a dict in Python; CLI flags override
the file. :func:`load_config` turns any pydantic validation error into one :class:`UserError` line
that names the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from collapselab.errors import UserError
from collapselab.loop.policies import parse_policy

FAMILIES = ("ngram", "gaussian", "gmm")
TEXT_FAMILIES = ("ngram",)


class NGramParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order: int = Field(3, ge=1, le=8, description="n-gram order")
    temperature: float = Field(1.0, gt=0)
    top_k: int = Field(0, ge=0, description="0 = off")
    top_p: float = Field(1.0, gt=0, le=1, description="1 = off")
    discount: Optional[float] = Field(None, gt=0, lt=1, description="None = Ney's estimate per order")
    max_len: int = Field(100, ge=1, description="longest sampled sentence, in tokens")


class GaussianParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    estimator: Literal["mle", "unbiased"] = "mle"
    bias: float = Field(1.0, gt=0, le=1, description="sampling bias lambda: sample covariance lambda*Sigma")


class GMMParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_components: int = Field(2, ge=1)
    covariance_type: Literal["full", "tied", "diag", "spherical"] = "full"
    bias: float = Field(1.0, gt=0, le=1)


PARAMS = {"ngram": NGramParams, "gaussian": GaussianParams, "gmm": GMMParams}
DEFAULT_CORPUS = {"ngram": "sotu", "gaussian": "normal", "gmm": "mixture"}
DEFAULT_TRAIN_ITEMS = {"ngram": 20000, "gaussian": 100, "gmm": 1000}
DEFAULT_DIVERSITY = {"ngram": "vocab_size", "gaussian": "variance_ratio", "gmm": "variance_ratio"}
DEFAULT_POLICIES = ["replace", "accumulate", "anchor:0.1", "fresh:0.1"]


class ExperimentConfig(BaseModel):
    """One experiment: a family, a corpus, data policies side by side, seeds, generations."""

    model_config = ConfigDict(extra="forbid")

    family: Literal["ngram", "gaussian", "gmm"] = "ngram"
    corpus: Optional[str] = Field(None, description="'sotu' (default for text), a .txt/.jsonl/.parquet file or folder; 'normal', 'mixture' or a .npy for gaussian/gmm")
    text_field: str = Field("text", description="JSONL field / Parquet column holding the text")
    generations: int = Field(10, ge=1, le=1000)
    policies: list[str] = Field(default_factory=lambda: list(DEFAULT_POLICIES), min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    train_items: Optional[int] = Field(None, ge=2, description="human items generation 0 learns from (None: family default; text: 20000 sentences)")
    samples: Optional[int] = Field(None, ge=2, description="items each generation produces (None: as many as generation 0's training set)")
    dim: int = Field(1, ge=1, le=256, description="dimension of the built-in 'normal' data")
    holdout_fraction: float = Field(0.1, gt=0, lt=1)
    split_seed: int = Field(0, description="seed of the train/held-out split, shared by all run seeds")
    rare_max_count: int = Field(10, ge=1, description="a 'rare word' occurs at most this often in the human training set")
    diversity_metric: Optional[str] = Field(None, description="metric shown as 'output diversity' in the table (None: family default)")
    model: dict[str, Any] = Field(default_factory=dict, description="family hyper-parameters")
    tree: bool = Field(False, description="grow a tree: every model spawns one derivative per policy, each trained on its parent's output (the article's derivatives of derivatives)")
    vault: Optional[str] = Field(None, description="a vault folder (`collapselab vault init`): anchor and fresh draw their human items from its snapshot")
    vault_snapshot: Optional[str] = Field(None, description="the vault snapshot to draw from (None: the newest)")
    credentials: Optional[str] = Field(None, description="a credentials folder (`collapselab credentials init`): each generation's sample shard gets a signed sidecar manifest")
    watermark_key: Optional[str] = Field(None, description="key file (`collapselab keys new`): ngram samplers embed a green-list watermark")
    watermark_gamma: float = Field(0.25, gt=0, lt=1, description="watermark green share")
    watermark_delta: float = Field(2.0, ge=0, le=20, description="watermark logit bias")
    facts: bool = Field(False, description="plant invented facts at long-tailed frequencies (1..32 copies) in the human training set and probe every generation's recall and hallucination rate per frequency bucket (docs/facts.md)")

    @field_validator("policies")
    @classmethod
    def _policies(cls, v: list[str]) -> list[str]:
        specs = [s for item in v for s in str(item).split(",") if s.strip()]
        names = [parse_policy(s).name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"a policy is listed twice: {names}")
        return names

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("a seed is listed twice")
        if any(x < 0 for x in v):
            raise ValueError("seeds must be whole numbers >= 0")
        return v

    @model_validator(mode="after")
    def _family_defaults(self) -> "ExperimentConfig":
        try:
            params = PARAMS[self.family](**self.model)
        except ValidationError as e:
            raise ValueError(_format(e, prefix="model.")) from None
        self.model = params.model_dump()
        if self.corpus is None:
            self.corpus = DEFAULT_CORPUS[self.family]
        if self.train_items is None:
            self.train_items = DEFAULT_TRAIN_ITEMS[self.family]
        if self.diversity_metric is None:
            self.diversity_metric = DEFAULT_DIVERSITY[self.family]
        if self.tree and len(self.policies) ** self.generations > 4096:
            n = sum(len(self.policies) ** d for d in range(1, self.generations + 1))
            raise ValueError(f"tree: {len(self.policies)} policies over {self.generations} generations make {n} models; "
                             "keep policies ** generations <= 4096 (fewer policies or generations)")
        if self.vault is not None and not self.is_text:
            raise ValueError(f"vault: a vault holds text; the {self.family} family cannot draw from it (use --family ngram)")
        if self.facts and not self.is_text:
            raise ValueError(f"facts: the {self.family} family learns no text to plant facts in; use it with --family ngram")
        if self.watermark_key is not None and not self.is_text:
            raise ValueError(f"watermark_key: the {self.family} family makes no text to watermark; use it with --family ngram")
        return self

    @property
    def root_labels(self) -> list[str]:
        """The policy labels generation 0's row is stored under: each chain's, or the tree's root."""
        return ["root"] if self.tree else list(self.policies)

    @property
    def is_text(self) -> bool:
        return self.family in TEXT_FAMILIES

    def params(self) -> BaseModel:
        return PARAMS[self.family](**self.model)


def _format(e: ValidationError, prefix: str = "", flags: bool = False) -> str:
    parts = []
    for err in e.errors():
        loc = prefix + ".".join(str(x) for x in err["loc"]) if err["loc"] else prefix.rstrip(".") or "config"
        msg = err["msg"].removeprefix("Value error, ")
        head = msg.split(":", 1)[0]
        if not err["loc"] and ":" in msg and (head.startswith("model.") or head in ExperimentConfig.model_fields):
            loc, msg = head, msg.split(":", 1)[1].strip()  # reported by the model validator: name the field
        if flags:
            loc = "--" + loc.removeprefix("model.").replace("_", "-")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting (check the spelling; `collapselab run --help` lists them)"
        got = err.get("input")
        tail = f" (got {got!r})" if err["type"] != "extra_forbidden" and not isinstance(got, (dict, list)) and got is not None else ""
        parts.append(f"{loc}: {msg}{tail}")
    return "; ".join(parts)


def make_config(values: dict[str, Any], *, source: str = "config", flags: bool = False) -> ExperimentConfig:
    """Validate ``values``; errors name ``source`` and the field (as a CLI flag if ``flags``)."""
    try:
        return ExperimentConfig(**values)
    except ValidationError as e:
        where = "" if flags else f"{source}: "
        raise UserError(f"{where}{_format(e, flags=flags)}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such config file. Pass a YAML or TOML file, or leave it out for the default experiment.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text. Save the config as UTF-8.") from None
    if path.suffix.lower() == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"{path}: malformed TOML ({e}).") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f", line {mark.line + 1}" if mark else ""
            raise UserError(f"{path}{where}: malformed YAML ({getattr(e, 'problem', e)}).") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: the config must be a mapping of settings, found {type(data).__name__}.")
    return data


def load_config(path: str | Path | None = None, **overrides: Any) -> ExperimentConfig:
    """The file's settings (if any) with ``overrides`` (non-None values) on top."""
    values = read_config_file(path) if path else {}
    model = dict(values.get("model") or {})
    model.update(overrides.pop("model", None) or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    if model:
        values["model"] = model
    return make_config(values, source=str(path) if path else "options", flags=path is None)
