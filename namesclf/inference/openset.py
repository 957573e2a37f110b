""""None of these": a novelty score for every name, and the threshold above which to abstain.

A name from a language the model was never trained on still gets a confident answer from a
classifier (it must pick one of its languages). What gives it away is how its letters fit the
languages the model knows. The score combines six figures from the n-gram half, all computable
for any name in microseconds:

* the n-gram classifier's top probability and the entropy of its posterior;
* nats per letter under the mixture of the known languages, and the same relative to a unigram
  model of the same names (a likelihood ratio: it cancels how unusual the letters are in general,
  so long, rare-letter names are not flagged for that alone);
* the name's length, and its total nats.

They are weighed by a logistic regression fitted at training time on *simulated* novel languages:
in-set languages held out in turn from the n-gram counts (:mod:`namesclf.training.calibrate`). The threshold is a
conformal quantile of the scores of the validation names, so at most the chosen rate of names
from the known languages (default 5%) is wrongly abstained on. Measured in
docs/experiments.md#none-of-these-abstention.

This module is the part prediction needs (the weights and the threshold: numbers, no torch); the
features themselves are computed by :mod:`namesclf.models.novelty` in torch, or by the exported ONNX graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from namesclf.errors import NamesError, first_line
from namesclf.inference.conformal import conformal_quantile
from namesclf.inference.options import ABSTAIN_RATE, check_rate

#: The features :func:`~namesclf.models.novelty.novelty_features` computes, in order.
FEATURES = ("ngram_top_probability", "nats_per_letter", "nats_per_letter_over_unigram", "entropy", "log_length",
            "nats")


@dataclass
class NoveltyScorer:
    """Standardise the features, then a linear score (logit of "from a language not known")."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.scale) @ self.coef + self.intercept


class OpenSet:
    """A trained model's novelty scorer: the weights, and the validation names' scores that the
    abstention threshold is a quantile of. (The unigram background the features need is stored
    beside them in the model file, under ``"background"``, and read by :mod:`namesclf.models.novelty`.)"""

    def __init__(self, scorer: NoveltyScorer, valid_scores: np.ndarray) -> None:
        self.scorer = scorer
        self.valid_scores = np.sort(np.asarray(valid_scores, dtype=np.float64))

    def threshold(self, rate: float = ABSTAIN_RATE) -> float:
        """The score above which a name is abstained on: at most ``rate`` of names from the known
        languages score higher (a conformal quantile, so the bound holds for unseen names too)."""
        return conformal_quantile(self.valid_scores, 1.0 - check_rate(rate))

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(FEATURES), "mean": self.scorer.mean.tolist(), "scale": self.scorer.scale.tolist(),
                "coef": self.scorer.coef.tolist(), "intercept": float(self.scorer.intercept),
                "valid_scores": self.valid_scores.tolist()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> OpenSet:
        try:
            if list(values["features"]) != list(FEATURES):
                raise ValueError("it was made with other features")
            scorer = NoveltyScorer(np.asarray(values["mean"], dtype=np.float64),
                                   np.asarray(values["scale"], dtype=np.float64),
                                   np.asarray(values["coef"], dtype=np.float64), float(values["intercept"]))
            return cls(scorer, np.asarray(values["valid_scores"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise NamesError(f"model file's novelty scorer is damaged ({first_line(exc)})") from None
