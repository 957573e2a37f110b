"""The language mix of a population, with intervals: what share of a table's names is of each origin.

Counting each name's top label (classify-and-count) is biased whenever the population's mix differs
from the training mix: a classifier that is 80% right on Ukrainian names still sends a share of
them to Russian, and the error does not average out. The model's probabilities estimate
``p_train(l | x)`` under the training prior ``pi_train`` (:mod:`namesclf.inference.priors`); under
label shift the likelihoods ``p(x | l)`` are the same in the new population, so its prior ``pi``
is the maximum-likelihood solution of a fixed point (Saerens, Latinne & Decaestecker, 2002):

    p_pi(l | x_i) = p_train(l | x_i) * pi(l) / pi_train(l), normalised over l
    pi(l)         = mean over i of p_pi(l | x_i)

iterated from ``pi = pi_train`` (an EM algorithm: each step cannot lower the likelihood).

An interval has two sources of error to cover. The names at hand are a sample: the bootstrap
resamples them with replacement, makes the estimate again, and its percentiles bound the sampling
error. But the model is not exact either: its probabilities are calibrated on average, not for
every mix, and confusable labels (Russian and Ukrainian) trade shares in a way that depends on the
mix, an error that no resampling of the names can see and that does not shrink with more names.
Training measures that second error on the validation names (:func:`mix_error_calibration`):
populations with flat-Dirichlet mixes are made by weighing the validation names, so that each
population is the validation distribution of its labels with no sampling noise at all, and the
second moment of each method's error (estimate minus true mix) is kept, a label-by-label matrix so
that groups, whose errors are sums of correlated label errors, get theirs too. An interval is then
the bootstrap's, each side widened in quadrature by the normal quantile times that model error's
root mean square. Model files without it fall back to the bootstrap alone.

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
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np

from namesclf.config import MIX_BOOTSTRAP, MIX_CONFIDENCE, MIX_METHODS
from namesclf.errors import NamesError
from namesclf.inference.groups import LevelMap, level_map

if TYPE_CHECKING:
    from namesclf.inference.predictor import Predictor

#: EM stops when no share moves by more than this, or after MAX_EM_STEPS steps.
EM_TOLERANCE = 1e-6
MAX_EM_STEPS = 1000
#: Flat-Dirichlet populations of validation names behind the model-error term: enough for a
#: second moment to settle, few enough that the calibration stays a small part of training.
ERROR_MIXES = 200
#: Validation names per label in those populations: more only sharpens each label's error
#: distribution, at the cost of every EM step.
ERROR_NAMES_PER_LABEL = 400
#: The key the model-error term has in a model file's ``meta["calibration"]``.
CALIBRATION_KEY = "mix_error"


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
    total = w.sum()
    for _ in range(max_steps):
        # the re-weighed rows are never formed: each row's normaliser is one matrix-vector product
        ratio = pi / base
        new = ratio * ((w / (proba @ ratio)) @ proba) / total
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
    model_error: bool = False
    """Whether the intervals include the model's own error (the model file's calibration), not only
    the bootstrap's sampling error."""

    def to_dict(self) -> dict:
        """What ``--json`` prints and ``POST /estimate`` answers."""
        return {"method": self.method, "n": self.n, "skipped": self.skipped, "confidence": self.confidence,
                "intervals": self.intervals, "mix": self.rows()}

    @property
    def intervals(self) -> str:
        """What the intervals cover: ``bootstrap+model`` or ``bootstrap`` (sampling error only)."""
        return "bootstrap+model" if self.model_error else "bootstrap"

    def rows(self) -> list[dict[str, float | str]]:
        """One dict per label, largest share first: what ``--json`` and the HTTP API answer."""
        order = np.argsort(-self.share, kind="stable")
        return [{"label": self.labels[i], "share": float(self.share[i]), "low": float(self.low[i]),
                 "high": float(self.high[i])} for i in order]


def estimate_mix_from_proba(proba: np.ndarray, labels: Sequence[str], train_prior: np.ndarray,
                            method: str = "em", bootstrap: int = MIX_BOOTSTRAP, confidence: float = MIX_CONFIDENCE,
                            seed: int = 0, rollup: LevelMap | None = None,
                            counts: np.ndarray | None = None, model_error: np.ndarray | None = None) -> MixEstimate:
    """The mix of the population behind the rows of ``proba`` with percentile-bootstrap intervals,
    widened by the model's own error when ``model_error`` is given.

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
    model_error : the second moment of this method's error, label by label (``n_labels`` square),
        as :meth:`MixCalibration.second_moment` gives it; None: sampling error only.
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
    share = point_estimate(proba, train_prior, method, w)
    draws = bootstrap_draws(proba, train_prior, method, w, bootstrap, seed)
    low, high = intervals(share, draws, confidence, rollup, model_error)
    return MixEstimate(names, _rolled(share, rollup), low, high, method, n, confidence,
                       model_error=model_error is not None)


def bootstrap_draws(proba: np.ndarray, train_prior: np.ndarray, method: str, counts: np.ndarray | None,
                    bootstrap: int, seed: int) -> np.ndarray | None:
    """``bootstrap`` label-level estimates, each from the names resampled with replacement
    (multinomial counts over the rows), shape ``(bootstrap, n_labels)``; None for no resampling."""
    if bootstrap <= 0:
        return None
    w = _weights(proba, counts)
    n = round(float(w.sum()))
    rng = np.random.default_rng(seed)
    return np.stack([point_estimate(proba, train_prior, method, rng.multinomial(n, w / w.sum()))
                     for _ in range(bootstrap)])


def intervals(share: np.ndarray, draws: np.ndarray | None, confidence: float, rollup: LevelMap | None = None,
              model_error: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``confidence`` interval of each share at the reported level, from label-level ``share``
    and bootstrap ``draws`` (None: no sampling error), each side widened in quadrature by the normal
    quantile times the model error's root mean square when ``model_error`` is given.

    The two errors are added as independent: resampling the names at hand cannot move the model's
    systematic error, and that error does not depend on which names of a label were drawn."""
    share = _rolled(share, rollup)
    low, high = share.copy(), share.copy()
    if draws is not None:
        rolled = draws if rollup is None else rollup.sum_columns(draws)
        tail = (1 - confidence) / 2 * 100
        low, high = np.percentile(rolled, [tail, 100 - tail], axis=0)
        low, high = np.minimum(low, share), np.maximum(high, share)
    if model_error is None:
        return low, high
    upper = 0.5 + confidence / 2  # rounds to 1 for a confidence within 1e-16 of 1: no finite quantile
    z = NormalDist().inv_cdf(upper) if upper < 1 else np.inf
    spread = z * np.sqrt(_rolled_moment(model_error, rollup))
    return (np.clip(share - np.hypot(share - low, spread), 0.0, 1.0),
            np.clip(share + np.hypot(high - share, spread), 0.0, 1.0))


def _rolled_moment(moment: np.ndarray, rollup: LevelMap | None) -> np.ndarray:
    """The diagonal of the error's second moment at the reported level: a group's error is the sum
    of its labels' errors, so its second moment sums the block of the label matrix."""
    if rollup is None:
        return np.clip(np.diag(moment), 0.0, None)
    onehot = rollup.sum_columns(np.eye(moment.shape[0]))
    return np.clip(np.einsum("lg,lk,kg->g", onehot, moment, onehot), 0.0, None)


def _rolled(share: np.ndarray, rollup: LevelMap | None) -> np.ndarray:
    return share if rollup is None else rollup.sum_columns(share[None, :])[0]


@dataclass(frozen=True)
class MixCalibration:
    """Each method's model error on flat-Dirichlet mixes of validation names: the second moment
    ``E[(estimate - truth)(estimate - truth)^T]`` over ``mixes`` populations, one matrix per method."""

    moments: dict[str, np.ndarray]
    mixes: int

    def second_moment(self, method: str) -> np.ndarray | None:
        return self.moments.get(method)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers: what a model file's ``meta`` (and its ONNX metadata, which has a
        size limit) can hold. Each symmetric matrix is kept as its upper triangle, row by row, to four
        significant digits: an interval's width needs no more."""
        upper = {m: moment[np.triu_indices(len(moment))] for m, moment in self.moments.items()}
        return {"mixes": self.mixes,
                "second_moment": {m: [float(f"{v:.4g}") for v in values] for m, values in upper.items()}}

    @classmethod
    def from_dict(cls, values: Any, n_labels: int) -> MixCalibration:
        """Read back :meth:`to_dict`; anything of the wrong shape is a one-line :class:`NamesError`."""
        try:
            packed = {str(m): np.asarray(v, dtype=np.float64) for m, v in values["second_moment"].items()}
            mixes = int(values["mixes"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise NamesError(f"the model file's mix calibration is malformed ({exc})") from None
        rows, cols = np.triu_indices(n_labels)
        moments = {}
        for m, upper in packed.items():
            if m not in MIX_METHODS or upper.shape != rows.shape or not np.isfinite(upper).all():
                raise NamesError(f"the model file's mix calibration for {m!r} is not the finite upper triangle of "
                                 f"a {n_labels} x {n_labels} matrix of a known method")
            moment = np.zeros((n_labels, n_labels))
            moment[rows, cols] = upper
            moment[cols, rows] = upper
            moments[m] = moment
        return cls(moments, mixes)


def mix_error_calibration(proba: np.ndarray, y: np.ndarray, train_prior: np.ndarray, mixes: int = ERROR_MIXES,
                          per_label: int = ERROR_NAMES_PER_LABEL, seed: int = 0) -> MixCalibration | None:
    """Measure each method's model error on populations made of validation names.

    ``proba`` are the model's probabilities for the validation names and ``y`` their labels. Up to
    ``per_label`` names of each label are kept; each of ``mixes`` populations draws its mix ``pi``
    from a flat Dirichlet over the labels present and weighs every kept name of label ``l`` by
    ``pi(l) / n_l``, so the population's mix is exactly ``pi`` and its names of each label are
    the validation names of that label: what remains of an estimate's error is the model's, not
    the sample's. Returns None with fewer than two labels present.
    """
    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y)
    n_labels = proba.shape[1]
    rng = np.random.default_rng(seed)
    kept = [rng.permutation(np.flatnonzero(y == label))[:per_label] for label in range(n_labels)]
    present = [label for label in range(n_labels) if len(kept[label])]
    if len(present) < 2:
        return None
    rows = np.concatenate([kept[label] for label in present])
    sub, sub_y = proba[rows], y[rows]
    per = np.array([len(kept[label]) for label in range(n_labels)], dtype=np.float64)
    moments = {m: np.zeros((n_labels, n_labels)) for m in MIX_METHODS}
    for _ in range(mixes):
        truth = np.zeros(n_labels)
        truth[present] = rng.dirichlet(np.ones(len(present)))
        weights = truth[sub_y] / per[sub_y]
        for method in MIX_METHODS:
            error = point_estimate(sub, train_prior, method, weights) - truth
            moments[method] += np.outer(error, error)
    return MixCalibration({m: moment / mixes for m, moment in moments.items()}, mixes)


#: Between a full name's folded surname and given names in a population key (neither can hold it).
KEY_SEPARATOR = "\x1f"


def count_population(names: Iterable[str], counts: Iterable[float] | None = None,
                     surname_only: bool = False, reader: Any = None) -> tuple[dict[str, float], float]:
    """The population's distinct keys (sorted) with how many names each stands for, and how many
    names have no letters (left out). ``counts``: how many people each entry of ``names`` stands
    for (one each by default). A key is the folded surname: full names are cut to it as
    :meth:`Predictor.predict` does, unless ``surname_only`` says every entry is a surname already.
    With a ``reader`` (a predictor) whose model reads full names, a full name's key also holds its
    folded given names (:data:`KEY_SEPARATOR` between), so the mix reads them too
    (:func:`score_population`)."""
    names = list(names)
    tally: Counter[str] = Counter()
    keys = population_keys(names, surname_only, reader)
    for key, count in zip(keys, counts, strict=True) if counts is not None else ((k, 1) for k in keys):
        tally[key] += count
    skipped = tally.pop("", 0)
    # sorted: the order the rows are resampled in, the same for any path to the same names
    return dict(sorted(tally.items())), skipped


def population_keys(names: Sequence[str], surname_only: bool = False, reader: Any = None) -> list[str]:
    """Each name's key for :func:`count_population` (``''``: no letters to classify)."""
    from namesclf.inference.answers import fold, surname_of_name

    if surname_only or getattr(reader, "given", None) is None:
        return [fold(name if surname_only else surname_of_name(name)) for name in names]
    from namesclf.inference.options import Options

    surnames, givens = reader.split(names, Options())
    return [s + KEY_SEPARATOR + g if s and g else s
            for s, g in zip(map(fold, surnames), map(fold, givens), strict=True)]


def score_population(predictor: Any, keys: Sequence[str]) -> np.ndarray:
    """The model's probabilities of :func:`count_population`'s non-empty keys: surnames alone, or
    with their given names for a model that reads full names."""
    if not keys:
        return np.empty((0, len(predictor.labels)), dtype=np.float32)
    if getattr(predictor, "given", None) is None:
        return predictor.proba_ascii(keys)
    pairs = [key.partition(KEY_SEPARATOR) for key in keys]
    return predictor.score_parts([p[0] for p in pairs], [p[2] for p in pairs])[0]


def estimate_mix_of(predictor: Any, proba: np.ndarray, counts: np.ndarray, *, level: str = "label",
                    method: str = "em", bootstrap: int = MIX_BOOTSTRAP, confidence: float = MIX_CONFIDENCE,
                    seed: int = 0, skipped: float = 0) -> MixEstimate:
    """The mix from the model's probabilities of a population's distinct names and their counts:
    what :func:`estimate_mix`, the Dask tables and the HTTP API share once the names are scored.
    ``predictor`` gives the labels, the training mix and the model file's calibration."""
    n_labels = len(predictor.labels)
    proba = np.asarray(proba, dtype=np.float64).reshape(-1, n_labels)
    estimate = estimate_mix_from_proba(proba, predictor.labels, predictor.trained_on, method=method,
                                       bootstrap=bootstrap, confidence=confidence, seed=seed,
                                       rollup=level_rollup(predictor.labels, level),
                                       counts=np.asarray(counts, dtype=np.float64),
                                       model_error=model_error_of(predictor.meta, n_labels, method))
    return dataclasses.replace(estimate, skipped=round(skipped))


def estimate_mix(predictor: Predictor, names: Iterable[str], *, level: str = "label", method: str = "em",
                 bootstrap: int = MIX_BOOTSTRAP, confidence: float = MIX_CONFIDENCE, seed: int = 0,
                 surname_only: bool = False, counts: Iterable[float] | None = None) -> MixEstimate:
    """The language mix of the population ``names`` come from, with intervals.

    Each distinct name is scored once (a table of a million rows costs its distinct names); full
    names are cut to their surname as :meth:`Predictor.predict` does (a model that reads full
    names reads their given names too), unless ``surname_only`` says every entry is a surname
    already. Names with no letters are left out and counted in
    ``skipped``. ``counts`` says how many people each entry stands for (one each by default).
    ``level`` rolls the labels up to origin groups or regions (:mod:`namesclf.inference.groups`).
    The intervals include the model's own error when the model file carries its mix calibration
    (``MixEstimate.model_error``); see :func:`estimate_mix_from_proba` for the rest.

    Examples
    --------
    >>> from namesclf.inference.predictor import Predictor
    >>> est = estimate_mix(Predictor.load("models/names.pt"), ["Ivanov", "Kowalski"], level="group")  # doctest: +SKIP
    >>> est.rows()[0]["label"]  # doctest: +SKIP
    'East Slavic'
    """
    tally, skipped = count_population(names, counts, surname_only, reader=predictor)
    distinct = list(tally)
    proba = score_population(predictor, distinct)
    return estimate_mix_of(predictor, proba, np.array([tally[k] for k in distinct], dtype=np.float64), level=level,
                           method=method, bootstrap=bootstrap, confidence=confidence, seed=seed, skipped=skipped)


def level_rollup(labels: Sequence[str], level: str) -> LevelMap | None:
    """The roll-up for ``level``, None at the label level."""
    return None if level == "label" else level_map(labels, level)


def model_error_of(meta: dict[str, Any] | None, n_labels: int, method: str) -> np.ndarray | None:
    """The second moment of ``method``'s model error from a model file's calibration, None when the
    file has none (a model trained before it was measured): its intervals are the bootstrap's alone."""
    values = ((meta or {}).get("calibration") or {}).get(CALIBRATION_KEY)
    return None if values is None else MixCalibration.from_dict(values, n_labels).second_moment(method)


#: What ``names estimate`` (and the HTTP API's answer) says when a model file has no model-error term.
NO_MODEL_ERROR_NOTE = ("note: this model file has no mix calibration; the intervals cover sampling error only "
                       "(train the model again to include its own error)")
