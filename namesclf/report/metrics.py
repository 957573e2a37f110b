"""The figures every report leads with: accuracy and macro-F1, the single-language yardstick, and
calibration (log-loss, expected calibration error, reliability bins).

Training (to choose epochs and pooling knobs) and evaluation (to report) both score through here,
so a figure means the same thing wherever it is printed. The definitions are in
``docs/evaluation.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, log_loss, top_k_accuracy_score

#: Confidence bins for the expected calibration error and the reliability diagram (Guo et al., 2017).
CALIBRATION_BINS = 15


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 by scikit-learn, the two figures every report leads with."""
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def top_k_accuracy(y_true: np.ndarray, proba: np.ndarray, k: int = 3) -> float:
    """The share of rows whose true class (an index) is among the ``k`` most probable, by scikit-learn."""
    n_classes = proba.shape[1]
    if k >= n_classes:  # the true class is always among them (scikit-learn would warn)
        return 1.0
    return float(top_k_accuracy_score(y_true, proba, k=k, labels=np.arange(n_classes)))


def single_language_scores(y_true: np.ndarray, y_pred: np.ndarray, single: np.ndarray) -> dict[str, Any]:
    """Accuracy and macro-F1 over the rows of names listed under one language only
    (:func:`~namesclf.data.dataset.single_language`): the yardstick with no ceiling below 1
    (None when there are none)."""
    scores = classification_scores(y_true[single], y_pred[single]) if single.any() else {
        "accuracy": None, "macro_f1": None}
    return {"n_single": int(single.sum()), "accuracy_single": scores["accuracy"],
            "macro_f1_single": scores["macro_f1"]}


def calibration_bins(confidence: np.ndarray, correct: np.ndarray,
                     n_bins: int = CALIBRATION_BINS) -> list[dict[str, float]]:
    """The non-empty bins of a reliability diagram: top-1 confidence against accuracy.

    Bin ``i`` holds confidences in ``(i / n_bins, (i + 1) / n_bins]``, the binning of scikit-learn's
    ``calibration_curve`` (which gives the two means but not the counts the ECE weighs them by).
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], confidence)
    counts = np.bincount(ids, minlength=n_bins)
    conf_sum = np.bincount(ids, weights=confidence, minlength=n_bins)
    right_sum = np.bincount(ids, weights=correct.astype(np.float64), minlength=n_bins)
    return [{"low": float(edges[i]), "high": float(edges[i + 1]), "n": int(counts[i]),
             "confidence": float(conf_sum[i] / counts[i]), "accuracy": float(right_sum[i] / counts[i])}
            for i in range(n_bins) if counts[i]]


def calibration_scores(proba: np.ndarray, y_true: np.ndarray, n_bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Log-loss, expected calibration error and the reliability bins of ``proba`` (one row per
    pair) for the class indices ``y_true``.

    "Calibrated" is a claim about these numbers: ``ece`` is the share-weighted gap between how
    sure the model is of its answer and how often that answer is right (0: of the answers given
    with 0.8, 80% are right); ``log_loss`` (scikit-learn's) also punishes confident mistakes.
    """
    proba = np.asarray(proba, dtype=np.float64)
    proba = proba / proba.sum(axis=1, keepdims=True)  # float32 softmax rows miss 1 by ~1e-7
    bins = calibration_bins(proba.max(axis=1), proba.argmax(axis=1) == y_true, n_bins)
    n = len(y_true)
    return {"log_loss": float(log_loss(y_true, proba, labels=np.arange(proba.shape[1]))),
            "ece": float(sum(b["n"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins)),
            "calibration": bins}
