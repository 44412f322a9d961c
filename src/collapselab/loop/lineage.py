"""The models of a run: generation 0 of each seed, and the parent each later model starts from.

Neural text families fine-tune (``init``): generation g >= 1 starts from generation 0's weights
(the Nature paper), from its parent's (``previous``), or from scratch. With ``init: previous`` each
model is kept for its child, in memory and as a checkpoint in the run folder, so a resumed run
fine-tunes from exactly the same weights.
"""

from __future__ import annotations

import pickle

from collapselab.atomic import atomic_write
from collapselab.config import NEURAL_TEXT_FAMILIES, ExperimentConfig
from collapselab.models import make_model
from collapselab.runfolder import RunFolder


class Lineage:
    def __init__(self, config: ExperimentConfig, vocab, folder: RunFolder) -> None:
        self.config, self.vocab, self.folder = config, vocab, folder  # vocab(seed): the seed's word vocabulary
        self.gen0: dict = {}  # seed -> generation 0's model
        self._kept: dict = {}

    def __getstate__(self) -> dict:  # a worker keeps its own chains' models
        return {**self.__dict__, "_kept": {}}

    @property
    def _init(self) -> str | None:
        return self.config.model.get("init") if self.config.family in NEURAL_TEXT_FAMILIES else None

    def new_model(self, seed: int):
        return make_model(self.config.family, self.config.model, vocab=self.vocab(seed), image=self.config.is_image)

    def fit(self, data, rng, seed: int, parent: str | None = None, human=None):
        """A new model fitted on ``data``, fine-tuned from ``parent`` (a label, or 'gen0') as ``init`` says;
        ``human``: the seed's human corpus, for a model that asks for it (``uses_human``: gpt's recipe)."""
        model = self.new_model(seed)
        kw = {"human": human} if human is not None and getattr(model, "uses_human", False) else {}
        if self._init is None or parent is None:
            return model.fit(data, rng=rng, **kw)
        start = self.gen0[seed] if self._init == "gen0" else self.parent(parent, seed) if self._init == "previous" else None
        return model.fit(data, rng=rng, init_from=start, **kw)

    def keep(self, label: str, seed: int, g: int, model) -> None:
        """``init: previous`` only: keep the model for its child, in memory and as a checkpoint."""
        if self._init != "previous":
            return

        def dump(tmp: str) -> None:
            with open(tmp, "wb") as f:
                pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)

        self._kept[(label, seed)] = model
        path = self.folder.checkpoint_path(label, seed, g)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, dump)

    def parent(self, label: str, seed: int):
        """The model ``label`` of seed ``seed`` (its newest generation): kept in memory, or its checkpoint."""
        if label == "gen0":
            return self.gen0[seed]
        kept = self._kept.get((label, seed))
        if kept is not None:
            return kept
        g = max(int(p.stem[3:]) for p in self.folder.checkpoint_path(label, seed, 0).parent.glob("gen*.pkl"))
        with open(self.folder.checkpoint_path(label, seed, g), "rb") as f:
            return pickle.load(f)
