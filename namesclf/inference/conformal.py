"""Prediction sets with guaranteed coverage: split-conformal calibration on the validation names.

For a name, the set holds every language ``l`` with ``1 - p(l | name) <= q``, where ``q`` is a
quantile of the same score ``1 - p(true language)`` over the validation names (the "least
ambiguous" sets of Sadinle et al., 2019). With ``n`` calibration scores, taking the
``ceil((n + 1) * coverage)``-th smallest as ``q`` guarantees, for a new name exchangeable with
them, ``P(true language in set) >= coverage`` (Vovk et al.; Angelopoulos & Bates, 2021): this is
the finite-sample correction, and without it the coverage falls short by up to ``1 / n``.

Marginal calibration covers names on average, which lets the common languages carry the rare
ones. Per-language ("Mondrian") calibration takes a quantile per true language, so each
language is covered at the target; it needs at least ``coverage / (1 - coverage)`` validation
names of a language (19 at 0.95). The languages with fewer are pooled into one group that shares
a quantile (the "rare languages" cluster of clustered conformal prediction), so the group is
covered at the target as a whole; if even the group is too small, those languages enter every set
(:attr:`ConformalSets.fallback` names them). Per-language coverage also survives a change of
population prior (label shift), which the marginal guarantee does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from namesclf.errors import NamesError
from namesclf.inference.options import check_coverage


def conformal_quantile(scores: np.ndarray, coverage: float) -> float:
    """The ``ceil((n + 1) * coverage)``-th smallest score; ``inf`` when that rank passes ``n``
    (too few scores to promise the coverage: every label then enters the set)."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    rank = math.ceil((len(scores) + 1) * coverage - 1e-9)  # 20 * 0.95 is 19.000000000000004 in floats
    return float(scores[rank - 1]) if rank <= len(scores) else math.inf


def min_calibration_size(coverage: float) -> int:
    """Fewest scores for which :func:`conformal_quantile` is finite."""
    return math.ceil(coverage / (1.0 - coverage) - 1e-9)


@dataclass
class ConformalSets:
    """Per-language thresholds on ``1 - p(l | name)`` for one coverage, ready to make sets."""

    coverage: float
    thresholds: np.ndarray  # (n_languages,)
    per_language: bool
    fallback: list[int]  # language indices with too few calibration names for a quantile of their own

    def mask(self, proba: np.ndarray) -> np.ndarray:
        """``(B, n_languages)`` booleans: which languages are in each name's set.

        A set can be empty: no language is likely enough to need including at this coverage
        (at 0.8, when the top answer alone is right 85% of the time, some names must get no
        language for the coverage to be 0.8 and not 0.85). Forcing the top language in would only
        raise the coverage above the target, and the sizes with it.
        """
        return (1.0 - np.asarray(proba)) <= self.thresholds[None, :] + 1e-12

    def sets(self, proba: np.ndarray, labels: Sequence[str]) -> list[list[str]]:
        """Each name's set as language names, most probable first."""
        inside = self.mask(proba)
        order = np.argsort(-np.asarray(proba), axis=1, kind="stable")
        return [[labels[j] for j in row if keep[j]] for row, keep in zip(order.tolist(), inside, strict=True)]


@dataclass
class ConformalCalibration:
    """The calibration scores: for each validation (name, language) pair, its language index and
    the model's probability of that language. Stored in the model file, so any coverage can be
    asked for at prediction time."""

    labels: np.ndarray  # (n,) language indices
    p_true: np.ndarray  # (n,)
    n_languages: int

    @classmethod
    def from_proba(cls, proba: np.ndarray, labels: np.ndarray) -> ConformalCalibration:
        proba = np.asarray(proba, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.int64)
        return cls(labels, proba[np.arange(len(labels)), labels], proba.shape[1])

    def to_dict(self) -> dict[str, list]:
        return {"labels": self.labels.tolist(), "p_true": self.p_true.tolist()}

    @classmethod
    def from_dict(cls, values: dict, n_languages: int) -> ConformalCalibration:
        try:
            return cls(np.asarray(values["labels"], dtype=np.int64), np.asarray(values["p_true"], dtype=np.float64),
                       n_languages)
        except (KeyError, TypeError, ValueError) as exc:
            raise NamesError(f"model file's conformal calibration is damaged ({exc})") from None

    def at(self, coverage: float, per_language: bool = False) -> ConformalSets:
        """The thresholds for ``coverage``: one marginal quantile, or with ``per_language`` one per
        language that has enough calibration names and one shared by the languages that do not."""
        coverage = check_coverage(coverage)
        if not len(self.labels):
            raise NamesError("the model has no calibration names (it was trained without validation names), "
                             "so it cannot make prediction sets")
        scores = 1.0 - self.p_true
        marginal = conformal_quantile(scores, coverage)
        thresholds = np.full(self.n_languages, marginal)
        fallback: list[int] = []
        if per_language:
            need = min_calibration_size(coverage)
            for lang in range(self.n_languages):
                mine = scores[self.labels == lang]
                if len(mine) >= need:
                    thresholds[lang] = conformal_quantile(mine, coverage)
                else:
                    fallback.append(lang)
            if fallback:
                thresholds[fallback] = conformal_quantile(scores[np.isin(self.labels, fallback)], coverage)
        return ConformalSets(coverage, thresholds, per_language, fallback)
