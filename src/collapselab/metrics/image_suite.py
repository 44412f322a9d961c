"""The image metrics of one generation, as a row of ``metrics.parquet`` (see :mod:`collapselab.metrics.suite`).

Generated images are compared with the corpus' real holdout, which no model trained on. FID and
precision/recall/density/coverage are size-sensitive, so both sets are cut to the smaller size
``m = min(len(samples), len(holdout))`` (their first ``m`` items: the samples are independent draws
and the holdout is in random order). The class metrics and sharpness use every sample.
``sharpness_real`` is the holdout's sharpness, the scale for ``sharpness``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from collapselab.corpus.images import ImageCorpus
from collapselab.metrics import images as im


@dataclass
class ImageEvaluator:
    corpus: ImageCorpus
    gen0: object | None = None  # generation 0's model; the image metrics do not use it
    k: int = 5  # neighbours for precision/recall/density/coverage
    classifier: object | None = None  # a fitted FeatureClassifier; None: trained (or loaded) here
    real_features_: np.ndarray = field(init=False)
    sharpness_real_: float = field(init=False)

    def __post_init__(self) -> None:
        c = self.corpus
        if self.classifier is None:
            from collapselab.metrics.image_features import FeatureClassifier

            images = np.concatenate([c.train, c.pool])  # every real image outside the holdout
            labels = None if c.train_labels is None else np.concatenate([c.train_labels, c.pool_labels])
            self.classifier = FeatureClassifier().fit(images, labels, holdout=c.holdout, holdout_labels=c.holdout_labels)
        self.real_features_ = self.classifier.features(c.holdout)
        self.sharpness_real_ = im.sharpness(c.holdout)

    def evaluate(self, model, samples: np.ndarray) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        holdout = self.corpus.holdout
        if samples.shape[1:] != holdout.shape[1:]:
            raise ValueError(f"samples of shape {samples.shape[1:]} cannot be compared with {holdout.shape[1:]} real images")
        feats = self.classifier.features(samples)
        labels = self.classifier.predict(samples)
        m = min(len(feats), len(self.real_features_))
        real, fake = self.real_features_[:m], feats[:m]
        n_classes = self.classifier.n_classes_
        row = {
            "n_items": float(len(samples)),
            "fid": im.frechet_distance(real, fake),
            **im.prdc(real, fake, self.k),
            "class_entropy": im.class_entropy(labels, n_classes),
            "rare_class_share": im.rare_class_share(labels, n_classes),
            "sharpness": im.sharpness(samples),
            "sharpness_real": self.sharpness_real_,
            "classifier_accuracy": self.classifier.accuracy_,
            "nll_holdout": float(-model.log_likelihood(holdout).mean()),
        }
        return row, {"label": labels}
