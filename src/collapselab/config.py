"""Every knob of an experiment, validated once, with errors a newcomer can act on.

A config comes from YAML (or TOML), from CLI flags, or from a dict in Python; CLI flags override
the file. :func:`load_config` turns any pydantic validation error into one :class:`UserError` line
that names the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from collapselab.corpus.tokens import MAX_LEN
from collapselab.errors import UserError
from collapselab.loop.spec import parse_policy
from collapselab.loop.types import Policy

FAMILIES = ("ngram", "gpt", "smollm2", "gaussian", "gmm", "vae", "ddpm", "linreg", "categorical")
TEXT_FAMILIES = ("ngram", "gpt", "smollm2")
NEURAL_TEXT_FAMILIES = ("gpt", "smollm2")  # fine-tuned from an earlier generation's weights (``init``)
IMAGE_FAMILIES = ("vae", "ddpm")  # plus gmm on an image corpus
NEURAL_FAMILIES = ("gpt", "smollm2", "vae", "ddpm")  # need PyTorch: the [neural] extra (image corpora too)


class NGramParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order: int = Field(3, ge=1, le=8, description="n-gram order")
    temperature: float = Field(1.0, gt=0, description="sampling temperature")
    top_k: int = Field(0, ge=0, description="keep the k likeliest candidates; 0 = off")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass; 1 = off")
    discount: Optional[float] = Field(None, gt=0, lt=1, description="None = Ney's estimate per order")
    max_len: int = Field(MAX_LEN, ge=1, description="longest sampled sentence, in tokens")


class GaussianParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    estimator: Literal["mle", "unbiased"] = Field("mle", description="mle or unbiased estimate")
    bias: float = Field(1.0, gt=0, le=1, description="sampling bias lambda <= 1: sample covariance lambda*Sigma (1 = unbiased; MAD's lambda)")


class LinRegParams(BaseModel):
    """Gerstgrasser et al.'s linear regression (models/linreg.py): items are rows (x, y) of the 'linear' corpus."""

    model_config = ConfigDict(extra="forbid")
    noise: Optional[float] = Field(None, gt=0, description="label noise sigma the generator adds (None: the fit's residual level)")
    design: Literal["fixed", "gaussian"] = Field("fixed", description="fixed: relabel the training inputs (the papers); gaussian: fresh N(0, I) inputs")
    estimator: Literal["unbiased", "mle"] = "unbiased"


class CategoricalParams(BaseModel):
    """Seddik et al.'s categorical next-token model (models/categorical.py) on Zipf tokens (the 'zipf' corpus)."""

    model_config = ConfigDict(extra="forbid")
    n_types: int = Field(1000, ge=2, le=10_000_000, description="token types (the zipf corpus draws over as many)")
    top_k: Optional[int] = Field(None, ge=1, description="sample only the k likeliest types (Dohmatob's tail cutting)")
    top_p: Optional[float] = Field(None, gt=0, le=1, description="nucleus sampling mass")
    pseudo_count: float = Field(0.0, ge=0, description="add-alpha smoothing of the fitted counts")


class GMMParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_components: int = Field(2, ge=1)
    covariance_type: Literal["full", "tied", "diag", "spherical"] = "full"
    bias: float = Field(1.0, gt=0, le=1)


class ImageGMMParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_components: int = Field(10, ge=1)
    covariance_type: Literal["full", "tied", "diag", "spherical"] = "full"
    pca_components: int = Field(32, ge=0, description="0 = raw pixels")
    bias: float = Field(1.0, gt=0, le=1)


class _ModelDefaults(BaseModel):
    """Neural families: a setting left out takes the model class's own default (filled in here,
    so the resolved config.yaml shows every value the run used)."""

    model_config = ConfigDict(extra="forbid")
    device: str = Field("cpu", description="'cpu', or 'cuda' where a GPU is present")

    @classmethod
    def model_class(cls):  # the estimator whose constructor defaults fill the gaps
        raise NotImplementedError

    @model_validator(mode="after")
    def _fill(self):
        import inspect

        sig = inspect.signature(self.model_class().__init__)
        for name in type(self).model_fields:
            if getattr(self, name) is None and name in sig.parameters and sig.parameters[name].default is not inspect.Parameter.empty:
                setattr(self, name, sig.parameters[name].default)
        return self


BEAM_PROMPT_LEN = 8  # words of a training item each beam-searched item continues, when not set


class _TextNeuralParams(_ModelDefaults):
    epochs: Optional[float] = Field(None, ge=0, description="passes over each generation's training set")
    batch_size: Optional[int] = Field(None, ge=1)
    lr: Optional[float] = Field(None, gt=0)
    block_size: Optional[int] = Field(None, ge=8, description="context length in tokens")
    temperature: Optional[float] = Field(None, gt=0)
    top_k: Optional[int] = Field(None, ge=0, description="0 = off")
    top_p: Optional[float] = Field(None, gt=0, le=1, description="1 = off")
    decoding: Optional[Literal["sample", "beam"]] = Field(None, description="'beam': the Nature paper's prompted beam search")
    num_beams: Optional[int] = Field(None, ge=1, description="beam decoding: beams (default 5)")
    repetition_penalty: Optional[float] = Field(None, ge=1, description="divide repeated pieces' logits by this (default 1 = off; the Nature paper tried 2)")
    prompt_len: Optional[int] = Field(None, ge=0, description="beam decoding: words of a training item given as the prompt")
    max_len: int = Field(100, ge=1, description="longest sentence, in words")
    init: Literal["gen0", "previous", "scratch"] = Field("gen0", description="generation g >= 1 fine-tunes from generation 0's weights (the Nature paper), the previous generation's, or trains from scratch")

    @model_validator(mode="before")
    @classmethod
    def _beam_prompt(cls, data: Any) -> Any:
        """Beam search continues prompts: ``decoding: beam`` without a ``prompt_len`` takes 8 words."""
        if isinstance(data, dict) and data.get("decoding") == "beam":
            if data.get("prompt_len") is None:
                return {**data, "prompt_len": BEAM_PROMPT_LEN}
            if data["prompt_len"] == 0:
                raise ValueError("prompt_len: decoding 'beam' continues prompts taken from the training data and needs "
                                 f"prompt_len >= 1 (words of a training item; default {BEAM_PROMPT_LEN})")
        return data


class GPTParams(_TextNeuralParams):
    n_layer: Optional[int] = Field(None, ge=1)
    n_head: Optional[int] = Field(None, ge=1)
    n_embd: Optional[int] = Field(None, ge=8)
    bpe_vocab: Optional[int] = Field(None, ge=64, description="BPE vocabulary trained on the human corpus")
    recipe: Optional[Literal["nature"]] = Field(None, description="'nature': the Nature paper's recipe (docs/gpt.md): pretrained start, 64-piece blocks continued by 64 pieces from prompts of the original data, 5-beam search, checkpoint selection; any setting given beside it wins")
    prompts: Optional[Literal["train", "original"]] = Field(None, description="prompts from the generation's own training items (train) or generation 0's human data (original, the paper's)")
    continuation: Optional[int] = Field(None, ge=0, description="pieces each block_size-piece prompt block is continued by (the paper: 64); 0 = sentence items")
    pretrain_items: Optional[int] = Field(None, ge=0, description="pretrain on this many human sentences of the corpus reserve (cached in ~/.cache/collapselab); 0 = none")
    pretrain_epochs: Optional[float] = Field(None, gt=0, description="epochs of pretraining")
    val_items: Optional[int] = Field(None, ge=0, description="keep the epoch with the best perplexity on this many human reserve sentences; 0 = the last epoch")
    finetune_lr: Optional[float] = Field(None, gt=0, description="learning rate when training starts from trained weights (pretrained, or an earlier generation's); unset = lr")

    @model_validator(mode="before")
    @classmethod
    def _recipe(cls, data: Any) -> Any:
        """``recipe: nature`` fills the recipe's settings (``NATURE_RECIPE``) that are not given."""
        if isinstance(data, dict) and data.get("recipe") == "nature":
            from collapselab.models.gpt import NATURE_RECIPE

            return {**NATURE_RECIPE, **{k: v for k, v in data.items() if v is not None}}
        return data

    @model_validator(mode="after")
    def _original_prompts(self):
        if self.prompts == "original" and self.init == "scratch":
            raise ValueError("prompts: 'original' reads generation 0's data through the model a generation fine-tunes "
                             "from; init 'scratch' has none. Use init 'gen0' or 'previous'.")
        return self

    @classmethod
    def model_class(cls):
        from collapselab.models.gpt import GPTModel

        return GPTModel


class SmolLM2Params(_TextNeuralParams):
    @classmethod
    def model_class(cls):
        from collapselab.models.smollm2 import SmolLM2Model

        return SmolLM2Model


class _ImageNeuralParams(_ModelDefaults):
    epochs: Optional[int] = Field(None, ge=0)
    batch_size: Optional[int] = Field(None, ge=1)
    lr: Optional[float] = Field(None, gt=0)
    bias: Optional[float] = Field(None, gt=0, le=1, description="sampling bias lambda <= 1 (1 = unbiased)")


class VAEParams(_ImageNeuralParams):
    latent_dim: Optional[int] = Field(None, ge=1)
    hidden: Optional[int] = Field(None, ge=1)

    @classmethod
    def model_class(cls):
        from collapselab.models.vae import VAEModel

        return VAEModel


class DDPMParams(_ImageNeuralParams):
    timesteps: Optional[int] = Field(None, ge=2)
    schedule: Optional[Literal["cosine", "linear"]] = None
    hidden: Optional[int] = Field(None, ge=1)
    layers: Optional[int] = Field(None, ge=1)
    ema: Optional[float] = Field(None, ge=0, lt=1)

    @classmethod
    def model_class(cls):
        from collapselab.models.ddpm import DDPMModel

        return DDPMModel


PARAMS = {"ngram": NGramParams, "gpt": GPTParams, "smollm2": SmolLM2Params, "gaussian": GaussianParams,
          "gmm": GMMParams, "vae": VAEParams, "ddpm": DDPMParams, "linreg": LinRegParams, "categorical": CategoricalParams}
IMAGE_PARAMS = {"gmm": ImageGMMParams}  # a family's settings on an image corpus, where they differ
DEFAULT_CORPUS = {"ngram": "sotu", "gpt": "sotu", "smollm2": "sotu", "gaussian": "normal", "gmm": "mixture",
                  "vae": "digits", "ddpm": "digits", "linreg": "linear", "categorical": "zipf"}
DEFAULT_TRAIN_ITEMS = {"ngram": 20000, "gpt": 5000, "smollm2": 300, "gaussian": 100, "gmm": 1000,
                       "image": 500, "linreg": 50, "categorical": 1000}
DEFAULT_HOLDOUT_ITEMS = {"ngram": 5000, "gpt": 5000, "smollm2": 500, "image": 300}  # smollm2 scores ~6 sentences/s on a CPU
DEFAULT_DIVERSITY = {"text": "vocab_size", "numeric": "variance_ratio", "image": "recall"}
FAMILY_DIVERSITY = {"categorical": "types_seen", "linreg": "label_variance_ratio"}  # theory families without a variance
DEFAULT_POLICIES = ["replace", "accumulate", "anchor:0.1", "fresh:0.1"]


class ExperimentConfig(BaseModel):
    """One experiment: a family, a corpus, data policies side by side, seeds, generations."""

    model_config = ConfigDict(extra="forbid")

    family: Literal[FAMILIES] = Field("ngram", description="model family: text ngram, gpt, smollm2 (extra); images vae, ddpm, gmm (on an image corpus); theory gaussian, gmm, linreg, categorical")
    corpus: Optional[str] = Field(None, description="'sotu' (default for text), a file, folder, glob or URL of .txt/.md, .jsonl(.gz), dolma .json.gz, .jsonl.zst, Parquet or a datasets folder; 'normal', 'mixture' or a 2-D .npy for gaussian/gmm; 'linear' for linreg (rows (x, y), --dim features); 'zipf' or 'zipf:BETA' for categorical; 'digits' (default for vae/ddpm), 'fashion-mnist', a folder of PNGs or an (n, h, w) .npy for images (vae, ddpm, gmm)")
    text_field: str = Field("text", description="JSON field / Parquet or Arrow column holding the text; a dotted path (meta.body) for a nested one")
    generations: int = Field(10, ge=1, le=1000, description="generations after generation 0")
    policies: list[str] = Field(default_factory=lambda: list(DEFAULT_POLICIES), min_length=1, description="data policies side by side: a source (replace, accumulate, accumulate-subsample, anchor[:F], fresh[:F], web[:LO-HI]), then defences joined by '+', e.g. web:0.1-0.9+filter:watermark:0.01 (docs/defences.md)")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="run seeds: each runs every policy's chain")
    train_items: Optional[int] = Field(None, ge=2, description="human items generation 0 learns from (None: family default; text: 20000 sentences)")
    samples: Optional[int] = Field(None, ge=2, description="items each generation produces (None: as many as generation 0's training set)")
    dim: int = Field(1, ge=1, le=256, description="dimension of the built-in 'normal' data")
    holdout_fraction: float = Field(0.1, gt=0, lt=1, description="share of the human documents held out (at most holdout_items of their items are scored)")
    holdout_items: Optional[int] = Field(None, ge=1, description="held-out human items every generation is scored on (None: family default; text 5000 sentences, smollm2 500, images 300)")
    split_seed: int = Field(0, description="seed of the train/held-out split, shared by all run seeds")
    resample_data: bool = Field(False, description="per seed, draw generation 0's human data and the held-out split anew (from split_seed and the seed), so that spreads over seeds include the variation between draws of real data; off: every seed shares one split")
    rare_max_count: int = Field(10, ge=1, description="a 'rare word' occurs at most this often in the human training set")
    diversity_metric: Optional[str] = Field(None, description="metric shown as 'output diversity' in the table (None: family default)")
    model: dict[str, Any] = Field(default_factory=dict, description="family hyper-parameters")
    tree: bool = Field(False, description="grow a tree: every model spawns one derivative per policy, each trained on its parent's output (the article's derivatives of derivatives)")
    vault: Optional[str] = Field(None, description="a vault folder (`collapselab vault init`): anchor and fresh draw their human items from its snapshot")
    vault_snapshot: Optional[str] = Field(None, description="the vault snapshot to draw from (None: the newest)")
    credentials: Optional[str] = Field(None, description="a credentials folder (`collapselab credentials init`): each generation's sample shard gets a signed sidecar manifest")
    watermark_key: Optional[str] = Field(None, description="key file (`collapselab keys new`): ngram samplers embed a green-list watermark; 'new': a fresh key made in the run folder (watermark.key, 0600)")
    watermark: Optional[str] = Field(None, description="a watermark scheme spec file (YAML/JSON: collapselab, hf-kgw, synthid, gumbel, gumbel-dual; docs/watermark.md): gpt and smollm2 sample with any scheme, ngram with the collapselab scheme; the key stays in the spec's key file")
    ledger_signing_key: Optional[str] = Field(None, description="Ed25519 key file (`collapselab keys new-signing FILE`): the run's final ledger tree head in summary.json is signed with it")
    watermark_share: float = Field(1.0, gt=0, le=1, description="share of each generation's samples that carry the watermark (the contaminated web: not every maker marks its text)")
    preset: Optional[str] = Field(None, description="start from a ready-made experiment: 'defences' (the mitigation matrix, docs/defences.md; `run` prints its table); a config file and options override its settings")
    watermark_gamma: float = Field(0.25, gt=0, lt=1, description="watermark green share (watermark_key; a scheme spec has its own)")
    watermark_delta: float = Field(2.0, ge=0, le=20, description="watermark logit bias (watermark_key, and the collapselab scheme's spec, which has none)")
    _image_corpus: Optional[bool] = PrivateAttr(None)
    _parsed_policies: tuple = PrivateAttr(())  # the policies, parsed once (parsed_policies)
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
        if self.corpus is None:
            self.corpus = DEFAULT_CORPUS[self.family]
        if self.family in IMAGE_FAMILIES and not self.is_image:
            raise ValueError(f"corpus: the {self.family} family learns images; use 'digits', 'fashion-mnist', a folder of PNGs "
                             f"or an (n, h, w) .npy array")
        try:
            params = self.params_class()(**self.model)
        except ValidationError as e:
            raise ValueError(_format(e, prefix="model.")) from None
        self.model = params.model_dump()
        if self.train_items is None:
            self.train_items = DEFAULT_TRAIN_ITEMS["image" if self.is_image else self.family]
        if self.holdout_items is None and self.kind != "numeric":
            self.holdout_items = DEFAULT_HOLDOUT_ITEMS["image" if self.is_image else self.family]
        if self.diversity_metric is None:
            self.diversity_metric = FAMILY_DIVERSITY.get(self.family, DEFAULT_DIVERSITY[self.kind])
        if self.tree and len(self.policies) ** self.generations > 4096:
            n = sum(len(self.policies) ** d for d in range(1, self.generations + 1))
            raise ValueError(f"tree: {len(self.policies)} policies over {self.generations} generations make {n} models; "
                             "keep policies ** generations <= 4096 (fewer policies or generations)")
        if self.vault is not None and not self.is_text:
            raise ValueError(f"vault: a vault holds text; the {self.family} family cannot draw from it (use --family ngram)")
        if self.facts and not self.is_text:
            raise ValueError(f"facts: the {self.family} family learns no text to plant facts in; use it with --family ngram")
        if self.watermark is not None:
            self._check_watermark()
        if self.watermark_key is not None and self.family != "ngram":
            raise ValueError(f"watermark_key: the {self.family} family samples with a scheme instead: --watermark SPEC "
                             "(docs/watermark.md); --watermark-key is for --family ngram")
        return self

    def _check_watermark(self) -> None:
        """What can be known of ``watermark`` without reading its files (the api checks those)."""
        if self.watermark_key is not None:
            raise ValueError("watermark: give a scheme spec (--watermark) or a key (--watermark-key), not both")
        if self.family not in TEXT_FAMILIES:
            raise ValueError(f"watermark: the {self.family} family makes no text to watermark; use --family gpt, smollm2 or ngram")
        if self.model.get("decoding") == "beam":
            raise ValueError("watermark: the schemes' generation rules are sampling rules; beam decoding takes none "
                             "(use --decoding sample)")
        if self.family == "gpt" and self.model.get("init") == "scratch":
            raise ValueError("watermark: gpt with init 'scratch' learns a new BPE every generation, so the watermark's "
                             "token space would change under it; use --init gen0 or previous")

    @model_validator(mode="after")
    def _policy_needs(self) -> "ExperimentConfig":
        self._parsed_policies = tuple(parse_policy(spec) for spec in self.policies)
        for spec, policy in zip(self.policies, self._parsed_policies):
            needs = policy.requires
            if "text" in needs and not self.is_text:
                raise ValueError(f"policies: {spec} judges text and the {self.family} family makes none; "
                                 "keep only its data source (e.g. web:0.1-0.9) or use a text family")
            if "watermark" in needs and self.watermark_key is None and self.watermark is None:
                raise ValueError(f"policies: {spec} needs the run's watermark key or scheme; set watermark_key "
                                 "(--watermark-key FILE, or 'new' for a fresh key in the run folder) or watermark "
                                 "(--watermark SPEC, a scheme spec file)")
        if self.preset is not None:
            from collapselab.presets import PRESETS

            if self.preset not in PRESETS:
                raise ValueError(f"preset: unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")
        return self

    @property
    def parsed_policies(self) -> tuple[Policy, ...]:
        """The policies as objects (:mod:`collapselab.loop.spec`), in the order of ``policies``: parsed
        once, here, for everyone who runs them."""
        return self._parsed_policies

    def human_pool_needed(self, n_out: int | None = None) -> int:
        """Unseen human items the policies take from the reserve over the run, ``n_out`` items a
        generation (default: ``samples``, else ``train_items``): the most any one policy takes."""
        n = n_out or self.samples or self.train_items
        return max(p.human_pool_needed(self.generations, n) for p in self.parsed_policies)

    @property
    def root_labels(self) -> list[str]:
        """The policy labels generation 0's row is stored under: each chain's, or the tree's root."""
        return ["root"] if self.tree else list(self.policies)

    @property
    def is_text(self) -> bool:
        return self.family in TEXT_FAMILIES

    @property
    def is_image(self) -> bool:
        if self.family in IMAGE_FAMILIES:
            return True
        if self.family != "gmm" or self.corpus in (None, "normal", "mixture"):
            return False
        if self._image_corpus is None:  # looks at the file once
            from collapselab.corpus.images import is_image_source

            self._image_corpus = is_image_source(self.corpus)
        return self._image_corpus

    @property
    def kind(self) -> str:
        """'text', 'image' or 'numeric' (the theory models): what flows through the loop."""
        return "text" if self.is_text else "image" if self.is_image else "numeric"

    def params_class(self) -> type[BaseModel]:
        return IMAGE_PARAMS.get(self.family, PARAMS[self.family]) if self.is_image else PARAMS[self.family]

    def params(self) -> BaseModel:
        return self.params_class()(**self.model)


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


def load_config(path: str | Path | None = None, *, defaults: dict[str, Any] | None = None, **overrides: Any) -> ExperimentConfig:
    """``defaults`` (a preset's settings), then the file's settings (if any), then ``overrides``
    (non-None values) on top."""
    values = {**(defaults or {}), **(read_config_file(path) if path else {})}
    model = dict(values.get("model") or {})
    model.update(overrides.pop("model", None) or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    if model:
        values["model"] = model
    return make_config(values, source=str(path) if path else "options", flags=path is None)
