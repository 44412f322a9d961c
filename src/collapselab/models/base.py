"""The protocol every generative family follows (see DESIGN.md).

scikit-learn habits: hyper-parameters are constructor arguments stored as given, fitted state
ends in ``_``, ``fit`` returns ``self``, and all randomness comes from the ``rng`` passed in.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from collapselab.data import Data


@runtime_checkable
class GenerativeModel(Protocol):
    def fit(self, data: Data, *, rng: np.random.Generator) -> "GenerativeModel": ...

    def sample(self, n: int, *, rng: np.random.Generator) -> Data: ...

    def log_likelihood(self, data: Data) -> np.ndarray:
        """One value per item (natural log)."""
        ...
