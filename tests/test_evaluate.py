"""The evaluation stage: figures checked against a confusion matrix worked out by hand.

Most tests use a stub model whose answer for every name is fixed, so each expected count below can
be checked on paper; the last ones go through the CLI with a real model file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from namesclf.cli.main import cli
from namesclf.config import TrainConfig
from namesclf.data.dataset import load_names
from namesclf.errors import NamesError
from namesclf.inference.predictor import Predictor
from namesclf.models.checkpoint import classifier_payload, load_checkpoint, save_checkpoint
from namesclf.models.networks import build_classifier
from namesclf.report.evaluate import (
    REPORT_FILES,
    EvaluationReport,
    evaluate,
    select_split,
    training_report_dir,
    write_report,
)
from namesclf.report.metrics import calibration_bins, calibration_scores
from namesclf.report.plots import write_training_curves
from namesclf.training.pipeline import STORED_TEST_KEYS

from .conftest import TINY, write_names_dir

# The model's language order is deliberately not alphabetical; Italian is never true nor predicted.
LABELS = ["German", "English", "French", "Italian"]
#                 German English French Italian   true language(s)      predicted
ANSWERS = {
    "Smith":   [0.05, 0.85, 0.05, 0.05],          # English              English
    "Jones":   [0.10, 0.70, 0.10, 0.10],          # English              English
    "Brown":   [0.50, 0.40, 0.05, 0.05],          # English              German   (wrong)
    "Martin":  [0.05, 0.55, 0.35, 0.05],          # English and French   English  (wrong for French)
    "Dubois":  [0.05, 0.15, 0.75, 0.05],          # French               French
    "Muller":  [0.90, 0.04, 0.03, 0.03],          # German               German
    "Schmidt": [0.80, 0.10, 0.05, 0.05],          # German               German
    "Weber":   [0.04, 0.06, 0.60, 0.30],          # German               French   (wrong, German not in top 3)
}
DATA = {
    "English": ["Smith", "Jones", "Brown", "Martin"],
    "French": ["Dubois", "Martin"],
    "German": ["Muller", "Schmidt", "Weber"],
}
# rows: true German, English, French, Italian; columns: predicted, in the same order
EXPECTED_COUNTS = [[2, 0, 1, 0],
                   [1, 3, 0, 0],
                   [0, 1, 1, 0],
                   [0, 0, 0, 0]]


class StubPredictor:
    """A ``Predictor`` look-alike whose probabilities are fixed per folded name."""

    def __init__(self, answers: dict[str, list[float]], labels: Sequence[str]) -> None:
        self.answers = answers
        self.labels = list(labels)
        self.calls: list[list[str]] = []

    def proba_ascii(self, folded: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        self.calls.append(list(folded))
        return np.array([self.answers[name] for name in folded], dtype=np.float32)


@pytest.fixture
def hand_data(tmp_path: Path) -> pd.DataFrame:
    return load_names(write_names_dir(tmp_path / "hand", DATA)).frame


@pytest.fixture
def hand_report(hand_data: pd.DataFrame) -> EvaluationReport:
    return evaluate(StubPredictor(ANSWERS, LABELS), hand_data)


def test_hand_computed_confusion_matrix_and_metrics(hand_data: pd.DataFrame, tmp_path: Path) -> None:
    stub = StubPredictor(ANSWERS, LABELS)
    report = evaluate(stub, hand_data)
    assert sorted(n for call in stub.calls for n in call) == sorted(ANSWERS)  # Martin predicted once
    written = write_report(report, tmp_path / "out")
    assert sorted(p.name for p in written) == sorted(REPORT_FILES)

    counts = pd.read_csv(tmp_path / "out" / "confusion_matrix.csv", index_col=0)
    assert list(counts.index) == LABELS and list(counts.columns) == LABELS
    assert counts.to_numpy().tolist() == EXPECTED_COUNTS

    normalized = pd.read_csv(tmp_path / "out" / "confusion_matrix_normalized.csv", index_col=0)
    expected = [[2 / 3, 0, 1 / 3, 0], [1 / 4, 3 / 4, 0, 0], [0, 1 / 2, 1 / 2, 0], [0, 0, 0, 0]]
    np.testing.assert_allclose(normalized.to_numpy(), expected, atol=1e-12)
    assert not normalized.isna().any().any()  # the zero-support Italian row is zeros, not NaN

    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["n"] == 9 and m["n_names"] == 8
    assert m["accuracy"] == pytest.approx(6 / 9)
    # Martin is listed as English and French; its one answer (English) counts as right once per name.
    assert m["accuracy_any"] == pytest.approx(6 / 8)
    assert m["accuracy_ceiling"] == pytest.approx(8 / 9)
    assert m["names_in_several_languages"] == 1 and m["pairs_of_shared_names"] == 2
    assert m["top3_accuracy"] == pytest.approx(8 / 9)  # only Weber's German is outside its top 3
    # Without Martin's two pairs: Brown and Weber wrong of 7. German P 2/3 R 2/3, English P 1 R 2/3,
    # French P 1/2 (Weber) R 1.
    assert m["n_single"] == 7 and m["accuracy_single"] == pytest.approx(5 / 7)
    assert m["macro_f1_single"] == pytest.approx((2 / 3 + 0.8 + 2 / 3) / 3)
    f1 = {"German": 2 / 3, "English": 3 / 4, "French": 1 / 2}
    assert m["macro_f1"] == pytest.approx(sum(f1.values()) / 3)
    assert m["weighted_f1"] == pytest.approx((3 * 2 / 3 + 4 * 3 / 4 + 2 * 1 / 2) / 9)
    assert list(m["per_language"]) == ["German", "English", "French"]
    assert m["per_language"]["English"] == pytest.approx(
        {"precision": 3 / 4, "recall": 3 / 4, "f1-score": 3 / 4, "support": 4})
    assert m["per_language"]["French"]["support"] == 2
    assert [(p["true"], p["predicted"], p["count"], p["support"]) for p in m["most_confused"]] == [
        ("French", "English", 1, 2), ("German", "French", 1, 3), ("English", "German", 1, 4)]

    errors = pd.read_csv(tmp_path / "out" / "errors.csv", keep_default_na=False)
    rows = sorted(zip(errors["name"], errors["language"], errors["predicted"], errors["probability"].round(4),
                      errors["other_languages"], strict=True))
    assert rows == [("Brown", "English", "German", 0.5, ""), ("Martin", "French", "English", 0.55, "English"),
                    ("Weber", "German", "French", 0.6, "")]

    # log-loss: mean -log p(true language) over the 9 pairs (Martin's French pair reads 0.35)
    p_true = [0.85, 0.70, 0.40, 0.55, 0.35, 0.75, 0.90, 0.80, 0.04]
    assert m["log_loss"] == pytest.approx(-np.mean(np.log(p_true)), rel=1e-6)
    assert sum(b["n"] for b in m["calibration"]) == 9
    assert m["ece"] == pytest.approx(sum(b["n"] / 9 * abs(b["accuracy"] - b["confidence"]) for b in m["calibration"]))

    text = (tmp_path / "out" / "report.txt").read_text()
    assert f"log-loss         {m['log_loss']:.4f}" in text and f"ECE              {m['ece']:.4f}" in text
    assert "French → English: 1 of 2 (50%)" in text
    assert "accuracy_any" in text and "several languages" in text
    assert "single-language accuracy 0.7143  macro-F1 0.7111  on the 7 pairs" in text
    assert "precision" in text  # scikit-learn's classification report


def test_trace_is_accuracy_and_rows_are_support(hand_report: EvaluationReport) -> None:
    check_consistent(hand_report.confusion, hand_report.metrics)


def check_consistent(counts: pd.DataFrame, metrics: dict) -> None:
    values = counts.to_numpy()
    assert np.trace(values) / values.sum() == pytest.approx(metrics["accuracy"], abs=1e-12)
    assert values.sum() == metrics["n"]
    for lang, row in metrics["per_language"].items():
        assert counts.loc[lang].sum() == row["support"]


def test_expected_calibration_error_by_hand() -> None:
    # four answers at 0.9 of which three are right (over-confident by 0.15), three at 0.65 all right
    # (under-confident by 0.35): ECE weighs the two gaps by their share, (4 * 0.15 + 3 * 0.35) / 7.
    # Pooled into one bin the gaps would cancel (0.064); unweighted they would give 0.25.
    proba = np.array([[0.9, 0.05, 0.05]] * 4 + [[0.65, 0.3, 0.05]] * 3)
    y = np.array([0, 0, 0, 1, 0, 0, 0])
    scores = calibration_scores(proba, y)
    assert scores["ece"] == pytest.approx((4 * 0.15 + 3 * 0.35) / 7)
    assert scores["log_loss"] == pytest.approx(-(3 * np.log(0.9) + np.log(0.05) + 3 * np.log(0.65)) / 7)
    assert [(b["n"], b["accuracy"]) for b in scores["calibration"]] == [(3, 1.0), (4, 0.75)]
    low, high = scores["calibration"][0]["low"], scores["calibration"][1]["high"]
    assert (low, high) == (pytest.approx(0.6), pytest.approx(14 / 15))


def test_calibration_bins_are_scikit_learns() -> None:
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.05, 1.0, 500)
    correct = rng.uniform(size=500) < confidence**2  # over-confident, so the curve is not the diagonal
    bins = calibration_bins(confidence, correct, n_bins=10)
    prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=10)
    np.testing.assert_allclose([b["accuracy"] for b in bins], prob_true)
    np.testing.assert_allclose([b["confidence"] for b in bins], prob_pred)
    assert sum(b["n"] for b in bins) == 500
    assert all(b["low"] < b["confidence"] <= b["high"] for b in bins)


def test_png_is_a_real_image_of_readable_size(hand_report: EvaluationReport, tmp_path: Path) -> None:
    import matplotlib.image

    write_report(hand_report, tmp_path)
    for name in ("confusion_matrix.png", "reliability.png"):
        png = tmp_path / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        height, width = matplotlib.image.imread(png).shape[:2]
        assert width >= 700 and height >= 800, name
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))  # atomic writes left nothing


def test_training_curves(tmp_path: Path) -> None:
    history = [{"epoch": e, "train_loss": 2.0 / e, "valid_loss": 2.5 / e, "valid_accuracy": 0.5 + e / 10,
                "valid_macro_f1": 0.4 + e / 10, "seconds": 1.0} for e in (1, 2, 3)]
    written = write_training_curves(history, tmp_path, best_epoch=3)
    assert [p.name for p in written] == ["training.csv", "training.png"]
    assert pd.read_csv(tmp_path / "training.csv")["epoch"].tolist() == [1, 2, 3]
    assert (tmp_path / "training.png").read_bytes()[:4] == b"\x89PNG"


def test_select_split_needs_the_seed(hand_data: pd.DataFrame) -> None:
    assert select_split(hand_data, "all", None) is hand_data
    with pytest.raises(NamesError, match="no split seed"):
        select_split(hand_data, "test", {})
    with pytest.raises(NamesError, match="unknown split"):
        select_split(hand_data, "holdout", {"split_seed": 0})


def test_training_report_dir() -> None:
    assert training_report_dir("models/names.pt") == Path("models/names.report")
    assert training_report_dir("tmp/m.pt") == Path("tmp/m.report")


# ----------------------------------------------------------------------------- through the CLI


def untrained_model(path: Path, labels: list[str]) -> Path:
    """A valid model file without training: enough for the CLI's checks and plumbing."""
    config = TrainConfig(model="gru", hidden=8, embed=8, seed=0).resolved()
    model = build_classifier(asdict(config), len(labels))
    save_checkpoint(path, classifier_payload(model, asdict(config), labels, {"split_seed": 0}))
    return path


def test_unknown_languages_are_a_clear_error(tmp_path: Path) -> None:
    model = untrained_model(tmp_path / "m.pt", ["English", "French"])
    data = write_names_dir(tmp_path / "d", {"English": ["Smith"], "Klingon": ["Worf"], "Elvish": ["Elrond"]})
    args = ["evaluate", str(data), "--model", str(model), "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "the model does not know these languages in DATA: Elvish, Klingon" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_cli_prints_headline_and_paths(tmp_path: Path, tiny_dir: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    model = untrained_model(tmp_path / "tiny.pt", sorted(TINY))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["evaluate", str(tiny_dir), "--model", str(model)])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "macro-F1" in result.output
    assert f"wrote {Path('reports') / 'tiny' / 'metrics.json'}" in result.output
    for name in REPORT_FILES:
        assert (tmp_path / "reports" / "tiny" / name).is_file()


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "tol"), [("torch", 1e-9), ("auto", 1e-6)])
def test_evaluate_test_split_reproduces_training_figures(trained_model: Path, real_data: Path,
                                                         tmp_path: Path, backend: str, tol: float) -> None:
    """With torch, the very numbers training stored (one computation); with the default backend
    (the ONNX export) the same figures to float rounding."""
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["evaluate", str(real_data), "--model", str(trained_model), "--split",
                                      "test", "--json", "--out", str(out), "--backend", backend])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    stored = load_checkpoint(trained_model)["meta"]["test"]
    assert metrics["n"] == stored["n"]
    assert metrics["accuracy"] == pytest.approx(stored["accuracy"], abs=tol)
    assert metrics["macro_f1"] == pytest.approx(stored["macro_f1"], abs=tol)
    assert len(metrics["per_language"]) == 18
    assert metrics["accuracy"] <= metrics["accuracy_any"] <= 1.0
    # names in several lists score ~0.4 (one answer, two or more pairs): leaving them out lifts accuracy
    # (at least the shared names' pairs are left out; more where two spellings fold to one name)
    assert metrics["n"] - metrics["n_single"] >= metrics["pairs_of_shared_names"] > 0
    assert metrics["accuracy_single"] > metrics["accuracy"]
    # `names train` stored what this computes: one computation (evaluate.evaluate), not two that agree
    for key in ("n_single", "accuracy_single", "macro_f1_single", "log_loss", "ece", "accuracy_any",
                "weighted_f1", "top3_accuracy", "n_names"):
        assert metrics[key] == pytest.approx(stored[key], abs=tol), key
    check_consistent(pd.read_csv(out / "confusion_matrix.csv", index_col=0), metrics)


@pytest.mark.slow
def test_fitted_temperature_calibrates_the_real_model(trained_model: Path, real_data: Path) -> None:
    predictor = Predictor.load(trained_model, backend="torch")  # the torch module, to change its temperature
    test = select_split(load_names(real_data).frame, "test", predictor.meta)
    fitted = evaluate(predictor, test).metrics
    assert predictor.model.temperature.item() > 1.5  # a product of two confident models is over-confident
    predictor.model.temperature.fill_(1.0)
    raw = evaluate(predictor, test).metrics
    assert raw["accuracy"] == fitted["accuracy"]  # a temperature never changes the answer ...
    assert fitted["ece"] < 0.04 < raw["ece"]  # ... only how sure it is (measured 0.015 against 0.098)
    assert fitted["log_loss"] < raw["log_loss"] - 0.1


def test_train_writes_report_and_curves(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    result = CliRunner().invoke(cli, ["train", str(tiny_dir), "--epochs", "2", "--hidden", "16", "--quiet",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = tmp_path / "m.report"
    assert str(report) in result.output
    for name in ("metrics.json", "confusion_matrix.png", "training.csv", "training.png", "report.txt"):
        assert (report / name).is_file(), name
    assert len(pd.read_csv(report / "training.csv")) == 2
    metrics = json.loads((report / "metrics.json").read_text())
    stored = load_checkpoint(out)["meta"]["test"]
    assert set(stored) == set(STORED_TEST_KEYS)
    assert {k: metrics[k] for k in STORED_TEST_KEYS} == stored  # the report and the file: one computation


def test_valid_split_of_a_refit_model_says_it_is_not_held_out(tiny_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    for flag, warned in (("--refit-ngram", True), ("--no-refit-ngram", False)):
        out = tmp_path / f"{flag}.pt"
        trained = runner.invoke(cli, ["train", str(tiny_dir), "--epochs", "1", "--hidden", "8", "--quiet",
                                      flag, "--out", str(out)])
        assert trained.exit_code == 0, trained.output
        assert load_checkpoint(out)["meta"]["pooling"]["counted_on"] == ("train+valid" if warned else "train")
        for split in ("valid", "test"):
            result = runner.invoke(cli, ["evaluate", str(tiny_dir), "--model", str(out), "--split", split,
                                         "--out", str(tmp_path / f"r{flag}{split}")])
            assert result.exit_code == 0, result.output
            assert ("counted on the valid names too" in result.output) == (warned and split == "valid"), result.output
