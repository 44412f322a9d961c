"""Detectors of synthetic text: one interface, ``score(texts) -> scores`` (higher = more synthetic).

* :class:`WatermarkDetector` - the KGW z-score of a keyed watermark (``watermark.py``).
* :class:`PerplexityDetector`, :class:`BinocularsDetector` - likelihood under reference n-gram
  models fitted on human text (``likelihood.py``).
* :class:`ClassifierDetector` - hashed word/char n-grams + logistic regression (``classifier.py``).
* :class:`FastDetectGPT`, :class:`Binoculars` - zero-shot detectors that read text with a real
  causal language model (SmolLM2-135M by default; ``lm.py``, needs the ``smollm2`` extra).
* Calibration and evaluation (``calibration.py``): :func:`threshold_at_fpr`, :func:`evaluate`,
  :class:`Calibrated`, :func:`rogan_gladen`.

See ``docs/detect.md`` for the measured strength of each on the State of the Union corpus.
"""

from collapselab.detect.base import Detector, as_sequences, chunk
from collapselab.detect.calibration import (
    Calibrated,
    Prevalence,
    auroc,
    evaluate,
    rogan_gladen,
    threshold_at_fpr,
    tpr_at_fpr,
)
from collapselab.detect.classifier import ClassifierDetector
from collapselab.detect.likelihood import BinocularsDetector, PerplexityDetector
from collapselab.detect.lm import Binoculars, FastDetectGPT
from collapselab.detect.watermark import WatermarkDetector

__all__ = [
    "Detector", "as_sequences", "chunk",
    "Calibrated", "Prevalence", "auroc", "evaluate", "rogan_gladen", "threshold_at_fpr", "tpr_at_fpr",
    "ClassifierDetector", "BinocularsDetector", "PerplexityDetector", "WatermarkDetector",
    "Binoculars", "FastDetectGPT",
]
