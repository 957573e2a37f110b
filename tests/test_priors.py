"""Population priors: Bayes' rule, what it leaves alone, and every way a prior can be wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from namesclf.errors import NamesError
from namesclf.inference.priors import read_prior_file, resolve_prior, reweight, train_prior

LABELS = ["Greek", "Italian", "Russian"]


def test_reweighting_is_bayes_rule() -> None:
    proba = np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    trained_on = np.array([0.2, 0.3, 0.5])
    new = np.array([0.5, 0.25, 0.25])
    expected = proba * new / trained_on
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(reweight(proba, trained_on, new), expected)
    np.testing.assert_allclose(reweight(proba, trained_on, new).sum(1), 1.0)
    assert reweight(proba, trained_on, None) is proba  # train: untouched


def test_uniform_on_balanced_training_data_is_a_no_op() -> None:
    proba = np.random.default_rng(0).dirichlet(np.ones(3), size=20)
    balanced = train_prior([100, 100, 100])
    np.testing.assert_allclose(reweight(proba, balanced, resolve_prior("uniform", LABELS)), proba, atol=1e-12)


def test_the_training_mix_is_add_one_smoothed() -> None:
    np.testing.assert_allclose(train_prior([0, 1, 7]), np.array([1, 2, 8]) / 11)


def test_prior_files_json_and_csv(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps({"Greek": 2, "Italian": 1, "Russian": 1}))
    (tmp_path / "p.csv").write_text("language,weight\nGreek,2\nItalian,1\nRussian,1\n")
    (tmp_path / "p.tsv").write_text("Greek\t2\nItalian\t1\nRussian\t1\n")
    for name in ("p.json", "p.csv", "p.tsv"):
        np.testing.assert_allclose(resolve_prior(str(tmp_path / name), LABELS), [0.5, 0.25, 0.25])
    assert read_prior_file(tmp_path / "p.tsv") == {"Greek": "2", "Italian": "1", "Russian": "1"}


@pytest.mark.parametrize(("weights", "message"), [
    ({"Greek": 1, "Italian": 1, "Russian": 1, "Klingon": 1}, "unknown language"),
    ({"Greek": 1, "Italian": 1}, "no weight for Russian"),
    ({"Greek": 0, "Italian": 0, "Russian": 0}, "sum to 0"),
    ({"Greek": -1, "Italian": 1, "Russian": 1}, "not negative"),
    ({"Greek": "a lot", "Italian": 1, "Russian": 1}, "must be a number"),
])
def test_bad_priors_are_one_line_errors(weights: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(NamesError, match=message):
        resolve_prior(weights, LABELS)
    path = tmp_path / "prior.json"
    path.write_text(json.dumps(weights))
    with pytest.raises(NamesError, match=message) as info:
        resolve_prior(str(path), LABELS)
    assert "\n" not in str(info.value)


def test_a_missing_or_broken_prior_file(tmp_path: Path) -> None:
    with pytest.raises(NamesError, match="no such file"):
        resolve_prior(str(tmp_path / "nope.json"), LABELS)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(NamesError, match="not valid JSON"):
        resolve_prior(str(tmp_path / "bad.json"), LABELS)
