"""Mix estimation on a problem whose true answer is known: three labels with Gaussian likelihoods,
so the exact posterior under the training mix is computable, and a population with another mix."""

from __future__ import annotations

import json

import numpy as np
import pytest

from namesclf.errors import NamesError
from namesclf.inference.mix import (
    CALIBRATION_KEY,
    MIX_METHODS,
    MixCalibration,
    classify_and_count,
    em_prior,
    estimate_mix_from_proba,
    mean_probability,
    mix_error_calibration,
    model_error_of,
)

MEANS = np.array([0.0, 1.5, 3.0])
TRAIN = np.array([0.6, 0.3, 0.1])


def exact_posteriors(x: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """``p(l | x)`` for unit-variance Gaussians at MEANS under ``prior``."""
    like = np.exp(-0.5 * (x[:, None] - MEANS[None, :]) ** 2)
    joint = like * prior
    return joint / joint.sum(axis=1, keepdims=True)


def population(mix: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(mix), size=n, p=mix)
    return rng.normal(MEANS[labels], 1.0)


def test_em_recovers_a_shifted_mix_that_counting_gets_wrong() -> None:
    truth = np.array([0.1, 0.3, 0.6])
    proba = exact_posteriors(population(truth, 20_000, seed=1), TRAIN)
    em = em_prior(proba, TRAIN)
    cc = classify_and_count(proba)
    mean = mean_probability(proba)
    assert np.abs(em - truth).max() < 0.02
    # the baselines are pulled towards the training mix: the most common training label gains
    assert cc[0] > truth[0] + 0.05 and mean[0] > truth[0] + 0.05
    assert np.abs(em - truth).sum() < 0.5 * np.abs(cc - truth).sum()


def test_on_the_training_mix_em_stays_there_and_every_estimate_is_a_distribution() -> None:
    proba = exact_posteriors(population(TRAIN, 20_000, seed=2), TRAIN)
    em = em_prior(proba, TRAIN)
    assert np.abs(em - TRAIN).max() < 0.02
    for method in MIX_METHODS:
        est = estimate_mix_from_proba(proba[:500], ["a", "b", "c"], TRAIN, method=method, bootstrap=20)
        assert est.share.sum() == pytest.approx(1.0)
        assert np.all(est.low <= est.share) and np.all(est.share <= est.high)


def test_bootstrap_intervals_hold_the_truth_about_as_often_as_they_say() -> None:
    truth = np.array([0.2, 0.5, 0.3])
    held = []
    for seed in range(20):
        proba = exact_posteriors(population(truth, 2_000, seed=100 + seed), TRAIN)
        est = estimate_mix_from_proba(proba, ["a", "b", "c"], TRAIN, bootstrap=100, seed=seed)
        held.extend((est.low <= truth) & (truth <= est.high))
    assert np.mean(held) >= 0.85, np.mean(held)


def test_intervals_are_reproducible_with_a_seed_and_rows_come_largest_first() -> None:
    proba = exact_posteriors(population(TRAIN, 300, seed=3), TRAIN)
    a = estimate_mix_from_proba(proba, ["a", "b", "c"], TRAIN, bootstrap=30, seed=7)
    b = estimate_mix_from_proba(proba, ["a", "b", "c"], TRAIN, bootstrap=30, seed=7)
    assert np.array_equal(a.low, b.low) and np.array_equal(a.high, b.high)
    shares = [row["share"] for row in a.rows()]
    assert shares == sorted(shares, reverse=True)
    assert a.rows()[0]["label"] == "a"


def test_a_rolled_up_mix_is_the_label_mix_summed_within_groups() -> None:
    from namesclf.inference.groups import level_map

    labels = ["Russian", "Ukrainian", "Polish"]
    proba = exact_posteriors(population(np.array([0.2, 0.5, 0.3]), 1_000, seed=5), TRAIN)
    by_label = estimate_mix_from_proba(proba, labels, TRAIN, bootstrap=0)
    by_group = estimate_mix_from_proba(proba, labels, TRAIN, bootstrap=0, rollup=level_map(labels, "group"))
    assert by_group.labels == ["East Slavic", "West Slavic"]
    assert np.allclose(by_group.share, [by_label.share[0] + by_label.share[1], by_label.share[2]])


def test_bad_arguments_are_one_line_errors() -> None:
    proba = exact_posteriors(population(TRAIN, 10, seed=4), TRAIN)
    with pytest.raises(NamesError, match="unknown mix method 'median'"):
        estimate_mix_from_proba(proba, ["a", "b", "c"], TRAIN, method="median")
    with pytest.raises(NamesError, match="no names"):
        estimate_mix_from_proba(proba[:0], ["a", "b", "c"], TRAIN)
    with pytest.raises(NamesError, match="confidence"):
        estimate_mix_from_proba(proba, ["a", "b", "c"], TRAIN, confidence=1.0)


# ----------------------------------------------------------------------------- origin groups


def test_every_label_of_both_corpora_has_a_group_a_region_and_a_reason() -> None:
    import csv
    from importlib import resources

    from namesclf.data.wikipedia import DROP, load_mapping
    from namesclf.inference.groups import origin_table

    tutorial = ["Arabic", "Chinese", "Czech", "Dutch", "English", "French", "German", "Greek", "Irish", "Italian",
                "Japanese", "Korean", "Polish", "Portuguese", "Russian", "Scottish", "Spanish", "Vietnamese"]
    wikipedia = {row.label for row in load_mapping().values() if row.label != DROP}
    table = origin_table()
    assert set(tutorial) | wikipedia == set(table)
    text = resources.files("namesclf.data").joinpath("origin_groups.csv").read_text("utf-8")
    assert all(row["why"].strip() for row in csv.DictReader(text.splitlines()))
    assert table["Russian"] == ("East Slavic", "Slavic") and table["Norwegian"] == ("North Germanic", "Germanic")
    assert table["Japanese"] == ("Japonic", "East Asian")


def test_levels_sum_probabilities_and_unknown_labels_stay_their_own_group() -> None:
    from namesclf.inference.groups import level_map

    labels = ["Russian", "Ukrainian", "Polish", "Klingon"]
    proba = np.array([[0.4, 0.3, 0.2, 0.1]])
    group = level_map(labels, "group")
    assert group.names == ["East Slavic", "West Slavic", "Klingon"]
    assert np.allclose(group.sum_columns(proba), [[0.7, 0.2, 0.1]])
    region = level_map(labels, "region")
    assert region.names == ["Slavic", "Klingon"] and np.allclose(region.sum_columns(proba), [[0.9, 0.1]])
    assert region.note() == "note: Klingon not in the origin-group table; it stays a region of its own"
    assert level_map(labels, "label").note() is None
    with pytest.raises(NamesError, match="unknown --level 'family'"):
        level_map(labels, "family")


def test_distinct_rows_with_counts_estimate_what_the_repeated_rows_do() -> None:
    proba = exact_posteriors(population(np.array([0.2, 0.5, 0.3]), 50, seed=6), TRAIN)
    counts = np.arange(1, 51) % 4 + 1
    repeated = np.repeat(proba, counts, axis=0)
    for method in MIX_METHODS:
        a = estimate_mix_from_proba(proba, ["a", "b", "c"], TRAIN, method=method, bootstrap=0, counts=counts)
        b = estimate_mix_from_proba(repeated, ["a", "b", "c"], TRAIN, method=method, bootstrap=0)
        assert np.allclose(a.share, b.share) and a.n == b.n == counts.sum()


def test_estimate_mix_scores_each_distinct_name_once_and_counts_what_it_skips() -> None:
    from namesclf.inference.mix import estimate_mix

    class Fake:
        def __init__(self) -> None:
            self.labels = ["Russian", "Ukrainian", "Polish"]
            self.trained_on = TRAIN
            self.meta: dict = {}
            self.calls: list[list[str]] = []

        def proba_ascii(self, folded: list[str]) -> np.ndarray:
            self.calls.append(list(folded))
            return np.array([[0.8, 0.1, 0.1] if n.endswith("ov") else [0.1, 0.1, 0.8] for n in folded])

    fake = Fake()
    names = ["Ivanov", "Ivanov", "Fyodor Ivanov", "Kowalski", "123", "Ivanov"]
    est = estimate_mix(fake, names, method="cc", bootstrap=0)
    assert fake.calls == [["Ivanov", "Kowalski"]]
    assert est.n == 5 and est.skipped == 1
    assert dict(zip(est.labels, est.share, strict=True)) == {"Russian": 0.8, "Ukrainian": 0.0, "Polish": 0.2}
    grouped = estimate_mix(fake, names, method="cc", bootstrap=0, level="region")
    assert grouped.labels == ["Slavic"] and grouped.share.tolist() == [1.0]


# ----------------------------------------------------------------------------- the model's own error

#: What a miscalibrated model believes: label 1 sits nearer label 0 than it does, so it sends too
#: many of label 1's names to label 0 whatever the mix, an error no resampling of the names sees.
BELIEVED = np.array([0.0, 1.1, 3.0])


def believed_posteriors(x: np.ndarray) -> np.ndarray:
    like = np.exp(-0.5 * (x[:, None] - BELIEVED[None, :]) ** 2)
    joint = like * TRAIN
    return joint / joint.sum(axis=1, keepdims=True)


def labelled(per_label: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), per_label)
    return believed_posteriors(rng.normal(MEANS[y], 1.0)), y


def coverage(model_error: bool, mixes: int = 30, size: int = 1000) -> tuple[float, float]:
    """How often the 90% intervals held the true share over flat-Dirichlet populations, and their
    mean width, with the calibration measured on other (validation) draws."""
    proba, y = labelled(400, seed=1)
    calibration = mix_error_calibration(proba, y, TRAIN, mixes=100, seed=0)
    assert calibration is not None
    rng = np.random.default_rng(2)
    held, widths = [], []
    for i in range(mixes):
        counts = rng.multinomial(size, rng.dirichlet(np.ones(3)))
        labels = np.repeat(np.arange(3), counts)
        x = rng.normal(MEANS[labels], 1.0)
        est = estimate_mix_from_proba(believed_posteriors(x), ["a", "b", "c"], TRAIN, bootstrap=50, seed=i,
                                      confidence=0.9,
                                      model_error=calibration.second_moment("em") if model_error else None)
        truth = counts / size
        held.append((est.low <= truth) & (truth <= est.high))
        widths.append(est.high - est.low)
    return float(np.mean(held)), float(np.mean(widths))


def test_the_model_error_term_brings_a_miscalibrated_models_intervals_up_to_their_coverage() -> None:
    alone, narrow = coverage(model_error=False)
    both, wide = coverage(model_error=True)
    assert alone < 0.6, alone  # the bootstrap sees only sampling error
    assert both >= 0.85, both
    assert wide < 3 * narrow + 0.05, (narrow, wide)  # wider, not useless


def test_the_calibration_is_a_second_moment_per_method_and_survives_a_model_file() -> None:
    proba, y = labelled(200, seed=3)
    calibration = mix_error_calibration(proba, y, TRAIN, mixes=40, seed=0)
    assert calibration is not None and calibration.mixes == 40 and set(calibration.moments) == set(MIX_METHODS)
    for moment in calibration.moments.values():
        assert moment.shape == (3, 3) and np.allclose(moment, moment.T)
        assert np.linalg.eigvalsh(moment).min() > -1e-12  # positive semi-definite
        assert np.allclose(moment.sum(axis=1), 0, atol=1e-9)  # errors of shares that sum to 1 sum to 0
    # counting is pulled towards the training mix: its error is the largest
    assert np.trace(calibration.moments["cc"]) > np.trace(calibration.moments["em"])
    meta = {"calibration": {CALIBRATION_KEY: json.loads(json.dumps(calibration.to_dict()))}}
    back = model_error_of(meta, 3, "em")
    assert back is not None and np.allclose(back, calibration.moments["em"], rtol=1e-3, atol=1e-12)
    assert model_error_of({"calibration": {}}, 3, "em") is None and model_error_of(None, 3, "em") is None
    with pytest.raises(NamesError, match="mix calibration"):
        MixCalibration.from_dict({"mixes": 3, "second_moment": {"em": [0.1] * 5}}, 3)
    with pytest.raises(NamesError, match="malformed"):
        MixCalibration.from_dict({"second_moment": []}, 3)
    assert mix_error_calibration(proba[y == 0], y[y == 0], TRAIN) is None  # one label: no mixes to draw


def test_the_model_error_widens_each_side_in_quadrature_and_sums_within_groups() -> None:
    """No resampling: the interval is the share plus and minus z times the root of the diagonal;
    at a group level a group's error is the sum of its labels', so its variance sums the block."""
    from statistics import NormalDist

    from namesclf.inference.groups import level_map

    labels = ["Russian", "Ukrainian", "Polish"]
    proba = exact_posteriors(population(np.array([0.3, 0.3, 0.4]), 500, seed=5), TRAIN)
    moment = np.array([[4e-4, -3e-4, -1e-4], [-3e-4, 4e-4, -1e-4], [-1e-4, -1e-4, 2e-4]])
    z = NormalDist().inv_cdf(0.975)
    est = estimate_mix_from_proba(proba, labels, TRAIN, bootstrap=0, model_error=moment)
    assert est.model_error and est.to_dict()["intervals"] == "bootstrap+model"
    assert np.allclose(est.high - est.share, np.minimum(z * np.sqrt(np.diag(moment)), 1 - est.share))
    assert np.allclose(est.share - est.low, np.minimum(z * np.sqrt(np.diag(moment)), est.share))
    grouped = estimate_mix_from_proba(proba, labels, TRAIN, bootstrap=0, model_error=moment,
                                      rollup=level_map(labels, "group"))
    east = grouped.labels.index("East Slavic")
    # Russian and Ukrainian trade shares: their errors cancel in the group's
    assert np.isclose(grouped.high[east] - grouped.share[east], z * np.sqrt(4e-4 + 4e-4 - 2 * 3e-4))
    wider = estimate_mix_from_proba(proba, labels, TRAIN, bootstrap=40, seed=1, model_error=moment)
    alone = estimate_mix_from_proba(proba, labels, TRAIN, bootstrap=40, seed=1)
    assert not alone.model_error and alone.to_dict()["intervals"] == "bootstrap"
    assert np.all(wider.low <= alone.low) and np.all(wider.high >= alone.high)
    assert np.allclose(wider.high - wider.share, np.hypot(alone.high - alone.share, z * np.sqrt(np.diag(moment))))
