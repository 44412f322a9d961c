"""Each run seed's human data: the run's corpus and evaluator, or with ``resample_data`` the seed's own.

Built once per process from the config alone, so worker processes need not be sent the corpora.
"""

from __future__ import annotations

from collapselab.config import ExperimentConfig
from collapselab.corpus import load_corpus
from collapselab.metrics.suite import make_evaluator


class SeedData:
    """``seed -> (corpus, evaluator)``."""

    def __init__(self, config: ExperimentConfig, corpus, evaluator) -> None:
        self.config, self.corpus, self.evaluator = config, corpus, evaluator
        self._own: dict = {}

    def __getstate__(self) -> dict:  # a worker builds the seeds' own data itself
        return {**self.__dict__, "_own": {}}

    def __call__(self, seed: int) -> tuple:
        if not self.config.resample_data:
            return self.corpus, self.evaluator
        if seed not in self._own:
            corpus = load_corpus(self.config, seed)
            self._own[seed] = (corpus, make_evaluator(self.config, corpus))
        return self._own[seed]

    def vocab(self, seed: int):
        """Seed ``seed``'s word vocabulary (text runs), else None."""
        return self(seed)[0].vocab if self.config.is_text else None
