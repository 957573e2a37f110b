"""Prediction sets: the quantile's finite-sample correction, the coverage guarantee on synthetic
scores, per-language calibration and its fallback."""

from __future__ import annotations

import math

import numpy as np
import pytest

from namesclf.errors import NamesError
from namesclf.inference.conformal import ConformalCalibration, check_coverage, conformal_quantile, min_calibration_size


def test_the_quantile_is_the_ceil_n_plus_1_rank() -> None:
    scores = np.arange(1, 11) / 10  # 0.1 .. 1.0, n = 10
    # ceil(11 * 0.8) = 9: the 9th smallest, not the empirical 80% quantile (the 8th)
    assert conformal_quantile(scores, 0.8) == 0.9
    assert conformal_quantile(scores, 0.5) == 0.6  # ceil(5.5) = 6
    assert conformal_quantile(scores, 0.95) == math.inf  # ceil(10.45) = 11 > n: nothing can promise 95%
    assert conformal_quantile(np.arange(19) / 19, 0.95) == 18 / 19  # 20 * 0.95 = 19 exactly (float-safe)
    assert min_calibration_size(0.95) == 19 and min_calibration_size(0.9) == 9 and min_calibration_size(0.8) == 4


@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_marginal_coverage_holds_on_exchangeable_synthetic_data(coverage: float) -> None:
    """Draw calibration and test sets from one distribution many times: mean coverage is at least the
    target and, with the correction, at most target + 1/(n+1) (Angelopoulos & Bates, Theorem 1)."""
    rng = np.random.default_rng(0)
    n, n_test, k, trials = 50, 400, 5, 300
    covered = []
    for _ in range(trials):
        logits = rng.normal(size=(n + n_test, k)) * 2
        proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        labels = np.array([rng.choice(k, p=p) for p in proba])  # labels drawn from the model: calibrated
        cal = ConformalCalibration.from_proba(proba[:n], labels[:n])
        sets = cal.at(coverage, per_language=False)
        mask = sets.mask(proba[n:])
        covered.append(mask[np.arange(n_test), labels[n:]].mean())
    mean = float(np.mean(covered))
    assert coverage - 0.01 <= mean <= coverage + 1 / (n + 1) + 0.02, mean
    # without the correction (empirical quantile) the same draws fall short
    short = []
    rng = np.random.default_rng(0)
    for _ in range(trials):
        logits = rng.normal(size=(n + n_test, k)) * 2
        proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        labels = np.array([rng.choice(k, p=p) for p in proba])
        q = np.quantile(1 - proba[np.arange(n), labels[:n]], coverage, method="lower")
        short.append(((1 - proba[n:][np.arange(n_test), labels[n:]]) <= q).mean())
    assert np.mean(short) < mean


def test_per_language_thresholds_and_the_fallback_for_rare_languages() -> None:
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(200, int), np.ones(200, int), np.full(5, 2)]  # language 2: 5 names only
    p_true = np.r_[rng.uniform(0.6, 1.0, 200), rng.uniform(0.1, 0.5, 200), rng.uniform(0.2, 0.9, 5)]
    proba = np.zeros((len(labels), 3))
    proba[np.arange(len(labels)), labels] = p_true
    for i, y in enumerate(labels):
        rest = [j for j in range(3) if j != y]
        proba[i, rest] = (1 - p_true[i]) / 2
    cal = ConformalCalibration.from_proba(proba, labels)
    per = cal.at(0.9, per_language=True)
    marginal = cal.at(0.9)
    assert per.fallback == [2]  # 5 < 9 names: too few for a quantile of its own
    assert per.thresholds[2] == math.inf  # and alone in the rare group, too few there too: in every set
    more = np.r_[labels, np.full(6, 3)]  # a fourth rare language: the group of two has 11 names
    more_proba = np.zeros((len(more), 4))
    more_proba[:, :3] = np.r_[proba, np.tile([0.1, 0.1, 0.2], (6, 1))]
    more_proba[len(labels):, 3] = 0.6
    grouped = ConformalCalibration.from_proba(more_proba, more).at(0.9, per_language=True)
    assert grouped.fallback == [2, 3]
    rare = np.isin(more, [2, 3])
    assert grouped.thresholds[2] == grouped.thresholds[3] == conformal_quantile(
        1 - more_proba[np.arange(len(more)), more][rare], 0.9)
    # the hard language gets a looser threshold than the easy one, so both are covered
    assert per.thresholds[1] > per.thresholds[0]
    for lang in (0, 1):
        mine = labels == lang
        assert per.mask(proba[mine])[np.arange(mine.sum()), lang].mean() >= 0.9
    # marginally calibrated, the hard language is covered much less
    assert marginal.mask(proba[labels == 1])[:, 1].mean() < 0.9


def test_sets_list_the_most_probable_first_and_may_be_empty() -> None:
    # calibration: the true language always had 0.8 or 0.9, so q = 0.2 (the 17th of 20 scores 0.1/0.2)
    cal = ConformalCalibration.from_proba(np.array([[0.9, 0.1], [0.8, 0.2]] * 10), np.zeros(20, int))
    sets = cal.at(0.8)
    assert sets.thresholds.tolist() == pytest.approx([0.2, 0.2])
    flat = np.array([[0.1, 0.9], [0.15, 0.85], [0.5, 0.5], [0.85, 0.85]])
    assert sets.sets(flat, ["A", "B"]) == [["B"], ["B"], [], ["A", "B"]]  # nothing reaches 0.8: an empty set


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, "0.9"])
def test_coverage_outside_0_1_is_refused(bad: object) -> None:
    with pytest.raises(NamesError, match="coverage must be between 0 and 1"):
        check_coverage(bad)  # type: ignore[arg-type]
