"""The language mix of a population, with intervals: what share of a table's names is of each origin.

Counting each name's top label (classify-and-count) is biased whenever the population's mix differs
from the training mix: a classifier that is 80% right on Ukrainian names still sends a share of
them to Russian, and the error does not average out. The model's probabilities estimate
``p_train(l | x)`` under the training prior ``pi_train`` (:mod:`namesclf.inference.priors`); under
label shift the likelihoods ``p(x | l)`` are the same in the new population, so its prior ``pi``
is the maximum-likelihood solution of a fixed point (Saerens, Latinne & Decaestecker, 2002):

    p_pi(l | x_i) = p_train(l | x_i) * pi(l) / pi_train(l), normalised over l
    pi(l)         = mean over i of p_pi(l | x_i)

iterated from ``pi = pi_train`` (an EM algorithm: each step cannot lower the likelihood). Intervals
come from the bootstrap: the names are resampled with replacement and the estimate is made again,
and the 2.5th and 97.5th percentiles of each share bound its 95% interval. They measure the
sampling uncertainty of the table at hand, not the model's own calibration error under shift.

Three methods, the first the default:

* ``em``: the maximum-likelihood prior above;
* ``cc``: classify and count, the share of names whose top label is ``l``;
* ``mean``: the mean probability (probabilistic classify-and-count).

Everything here is numpy on a probability matrix, so tables, Dask partitions and the HTTP API
share it; which names went into the matrix is the caller's business.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from namesclf.config import MIX_BOOTSTRAP, MIX_CONFIDENCE, MIX_METHODS
from namesclf.errors import NamesError
from namesclf.inference.groups import LevelMap, level_map

if TYPE_CHECKING:
    from namesclf.inference.predictor import Predictor

#: EM stops when no share moves by more than this, or after MAX_EM_STEPS steps.
EM_TOLERANCE = 1e-6
MAX_EM_STEPS = 1000


def _weights(proba: np.ndarray, counts: np.ndarray | None) -> np.ndarray:
    return np.ones(len(proba)) if counts is None else np.asarray(counts, dtype=np.float64)


def classify_and_count(proba: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
    """The share of names whose most probable label is each label (``counts``: names per row)."""
    w = _weights(proba, counts)
    return np.bincount(proba.argmax(axis=1), weights=w, minlength=proba.shape[1]) / w.sum()


def mean_probability(proba: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
    """The mean of each label's probability over the names (``counts``: names per row)."""
    w = _weights(proba, counts)
    return w @ proba / w.sum()


def em_prior(proba: np.ndarray, train_prior: np.ndarray, counts: np.ndarray | None = None,
             tol: float = EM_TOLERANCE, max_steps: int = MAX_EM_STEPS) -> np.ndarray:
    """The maximum-likelihood mix of the names behind ``proba`` under label shift (Saerens et al., 2002).

    ``proba`` are calibrated posteriors under ``train_prior``, one row per distinct name, and
    ``counts`` how many names each row stands for; each step re-weighs the rows by the current mix
    over the training mix, renormalises them, and takes their weighted mean as the next mix.
    """
    w = _weights(proba, counts)
    base = np.asarray(train_prior, dtype=np.float64)
    pi = base.copy()
    for _ in range(max_steps):
        weighted = proba * (pi / base)
        weighted /= weighted.sum(axis=1, keepdims=True)
        new = w @ weighted / w.sum()
        if np.abs(new - pi).max() < tol:
            return new
        pi = new
    return pi


def point_estimate(proba: np.ndarray, train_prior: np.ndarray, method: str,
                   counts: np.ndarray | None = None) -> np.ndarray:
    """One estimate of the mix by ``method`` (one of :data:`~namesclf.config.MIX_METHODS`)."""
    if check_mix_method(method) == "em":
        return em_prior(proba, train_prior, counts)
    if method == "cc":
        return classify_and_count(proba, counts)
    return mean_probability(proba, counts)


def check_mix_method(method: str) -> str:
    if method not in MIX_METHODS:
        raise NamesError(f"unknown mix method {method!r}: use {', '.join(MIX_METHODS)}")
    return method


@dataclass(frozen=True)
class MixEstimate:
    """Each label's estimated share of the population with its bootstrap interval."""

    labels: list[str]
    share: np.ndarray
    low: np.ndarray
    high: np.ndarray
    method: str
    n: int
    confidence: float
    skipped: int = 0
    """Names with no letters after folding: not part of the population estimated."""

    def to_dict(self) -> dict:
        """What ``--json`` prints and ``POST /estimate`` answers."""
        return {"method": self.method, "n": self.n, "skipped": self.skipped, "confidence": self.confidence,
                "mix": self.rows()}

    def rows(self) -> list[dict[str, float | str]]:
        """One dict per label, largest share first: what ``--json`` and the HTTP API answer."""
        order = np.argsort(-self.share, kind="stable")
        return [{"label": self.labels[i], "share": float(self.share[i]), "low": float(self.low[i]),
                 "high": float(self.high[i])} for i in order]


def estimate_mix_from_proba(proba: np.ndarray, labels: Sequence[str], train_prior: np.ndarray,
                            method: str = "em", bootstrap: int = MIX_BOOTSTRAP, confidence: float = MIX_CONFIDENCE,
                            seed: int = 0, rollup: LevelMap | None = None,
                            counts: np.ndarray | None = None) -> MixEstimate:
    """The mix of the population behind the rows of ``proba`` with percentile-bootstrap intervals.

    Parameters
    ----------
    proba : array of shape (n_rows, n_labels)
        Calibrated probabilities under the training mix, one row per name (or per distinct name,
        with ``counts``).
    labels : the column labels.
    train_prior : the training mix the probabilities were calibrated under (same order).
    method : ``em`` (default), ``cc`` or ``mean``.
    bootstrap : resamples behind the intervals; 0 gives intervals equal to the estimate.
    confidence : the intervals' nominal coverage.
    seed : makes the resampling reproducible.
    rollup : report the mix at a group or region level: the label-level estimate (and each
        bootstrap draw) summed within each group, so that EM still sees every label.
    counts : how many names each row stands for (a table's distinct names are scored once). The
        bootstrap then resamples names, not rows: multinomial counts over the rows.
    """
    check_mix_method(method)
    if not 0 < confidence < 1:
        raise NamesError("the confidence of a mix interval must be in (0, 1)")
    proba = np.asarray(proba, dtype=np.float64)
    w = _weights(proba, counts)
    n = round(float(w.sum()))
    if n == 0:
        raise NamesError("no names to estimate a mix from")
    names = rollup.names if rollup is not None else list(labels)
    share = _rolled(point_estimate(proba, train_prior, method, w), rollup)
    if bootstrap <= 0:
        return MixEstimate(names, share, share.copy(), share.copy(), method, n, confidence)
    rng = np.random.default_rng(seed)
    draws = np.stack([_rolled(point_estimate(proba, train_prior, method, rng.multinomial(n, w / w.sum())), rollup)
                      for _ in range(bootstrap)])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail], axis=0)
    return MixEstimate(names, share, np.minimum(low, share), np.maximum(high, share), method, n, confidence)


def _rolled(share: np.ndarray, rollup: LevelMap | None) -> np.ndarray:
    return share if rollup is None else rollup.sum_columns(share[None, :])[0]


def estimate_mix(predictor: Predictor, names: Iterable[str], *, level: str = "label", method: str = "em",
                 bootstrap: int = MIX_BOOTSTRAP, confidence: float = MIX_CONFIDENCE, seed: int = 0,
                 surname_only: bool = False) -> MixEstimate:
    """The language mix of the population ``names`` come from, with bootstrap intervals.

    Each distinct name is scored once (a table of a million rows costs its distinct names); full
    names are cut to their surname as :meth:`Predictor.predict` does, unless ``surname_only``
    says every entry is a surname already. Names with no letters are left out and counted in
    ``skipped``. ``level`` rolls the labels up to origin groups or regions
    (:mod:`namesclf.inference.groups`); see :func:`estimate_mix_from_proba` for the rest.

    Examples
    --------
    >>> from namesclf.inference.predictor import Predictor
    >>> est = estimate_mix(Predictor.load("models/names.pt"), ["Ivanov", "Kowalski"], level="group")  # doctest: +SKIP
    >>> est.rows()[0]["label"]  # doctest: +SKIP
    'East Slavic'
    """
    from namesclf.inference.predictor import fold, surname_of_name

    counts = Counter(fold(name if surname_only else surname_of_name(name)) for name in names)
    skipped = counts.pop("", 0)
    distinct = list(counts)
    rollup = level_map(predictor.labels, level)
    proba = predictor.proba_ascii(distinct) if distinct else np.empty((0, len(predictor.labels)))
    estimate = estimate_mix_from_proba(proba, predictor.labels, predictor.trained_on, method=method,
                                       bootstrap=bootstrap, confidence=confidence, seed=seed,
                                       rollup=None if level == "label" else rollup,
                                       counts=np.array([counts[k] for k in distinct], dtype=np.float64))
    return dataclasses.replace(estimate, skipped=skipped)
