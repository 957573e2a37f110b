"""Answers at the level of origin groups and regions (``level="group"``): in the predictor, its
sets, tables (pandas and Dask), the CLI (CliRunner and a real subprocess), HTTP and the estimator,
and in evaluation reports.

A model whose labels merge is needed: conftest's small model (Italian, Japanese, Russian) has one
label per group, so :func:`grouped_model` is a copy of it with its labels renamed to Ukrainian,
Klingon and Russian: Ukrainian and Russian share East Slavic, and Klingon, which the origin-group
table does not know, stays a group of its own (the note). The probabilities are the small
model's, so the expected group probabilities are sums of columns it answers.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from namesclf.cli.main import cli
from namesclf.errors import NamesError
from namesclf.inference.options import Options
from namesclf.inference.predictor import Predictor
from namesclf.inference.tables import predict_frame
from namesclf.report.evaluate import REPORT_FILES, evaluate, level_files, write_report

from .conftest import MORE, REPO, write_names_dir

#: The small model's labels renamed, in its own label order.
RENAMED = {"Italian": "Ukrainian", "Japanese": "Klingon", "Russian": "Russian"}
NOTE = "note: Klingon not in the origin-group table; it stays a group of its own"
#: The note as JSON answers carry it.
NOTE_TEXT = NOTE.removeprefix("note: ")
NAMES = ["Ivanov", "Tanaka", "Rossi", "Volkova", "Suzuki"]


@pytest.fixture(scope="module")
def grouped_model(small_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small model with renamed labels, and its ONNX export beside it."""
    from namesclf.models.checkpoint import load_checkpoint, save_checkpoint
    from namesclf.models.export import export_payload
    from namesclf.models.onnx_format import onnx_path_for

    payload = load_checkpoint(small_model)
    payload["labels"] = [RENAMED[label] for label in payload["labels"]]
    out = tmp_path_factory.mktemp("grouped") / "grouped.pt"
    payload = {k: v for k, v in payload.items() if k not in ("format", "format_version", "alphabet")}
    save_checkpoint(out, payload)
    export_payload(payload, onnx_path_for(out), source=out)
    return out


@pytest.fixture(scope="module")
def predictor(grouped_model: Path) -> Predictor:
    return Predictor.load(grouped_model)


def by_group(predictor: Predictor, names: list[str], level: str = "group") -> np.ndarray:
    """The label probabilities summed by hand: what every surface must answer at ``level``."""
    raw = predictor.proba_with(names, Options())
    labels = predictor.labels
    if level == "group":
        keys = ["East Slavic" if lab in ("Russian", "Ukrainian") else lab for lab in labels]
    else:
        keys = ["Slavic" if lab in ("Russian", "Ukrainian") else lab for lab in labels]
    names_at = list(dict.fromkeys(keys))
    out = np.zeros((len(names), len(names_at)))
    for j, key in enumerate(keys):
        out[:, names_at.index(key)] += raw[:, j]
    return out


# ----------------------------------------------------------------------------- the predictor


def test_classes_and_probabilities_are_sums_of_the_labels(predictor: Predictor) -> None:
    assert predictor.labels == ["Ukrainian", "Klingon", "Russian"]
    assert predictor.classes("group") == ["East Slavic", "Klingon"]
    assert predictor.classes("region") == ["Slavic", "Klingon"]
    for level in ("group", "region"):
        proba = predictor.proba_with(NAMES, Options(level=level))
        np.testing.assert_allclose(proba, by_group(predictor, NAMES, level), atol=1e-6)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    answers = predictor.predict(NAMES, k=5, level="group")
    expected = by_group(predictor, NAMES)
    for answer, row in zip(answers, expected, strict=True):
        assert len(answer.languages) == 2  # k is capped by the groups there are
        top = int(row.argmax())
        assert answer.languages[0] == (["East Slavic", "Klingon"][top], pytest.approx(row[top], abs=1e-6))
        assert answer.level == "group" and answer.note == NOTE_TEXT
        assert answer.to_dict()["level"] == "group" and answer.to_dict()["note"] == NOTE_TEXT
    label = predictor.predict(NAMES)[0]
    assert label.level is None and "level" not in label.to_dict()  # label answers are as they were


def test_a_prior_is_applied_to_the_labels_before_summing(predictor: Predictor) -> None:
    weights = {"Ukrainian": 5.0, "Klingon": 1.0, "Russian": 0.2}
    labels = predictor.proba_with(NAMES, Options(prior=weights))
    groups = predictor.proba_with(NAMES, Options(prior=weights, level="group"))
    np.testing.assert_allclose(groups[:, 0], labels[:, 0] + labels[:, 2], atol=1e-6)
    np.testing.assert_allclose(groups[:, 1], labels[:, 1], atol=1e-6)


def test_group_sets_are_the_groups_of_the_label_sets(predictor: Predictor) -> None:
    for coverage, per_language in ((0.5, False), (0.9, False), (0.9, True), (0.99, False)):
        labels = predictor.predict(NAMES, coverage=coverage, per_language=per_language)
        groups = predictor.predict(NAMES, coverage=coverage, per_language=per_language, level="group")
        for lab, grp in zip(labels, groups, strict=True):
            assert lab.prediction_set is not None and grp.prediction_set is not None
            want = {"Klingon" if x == "Klingon" else "East Slavic" for x in lab.prediction_set}
            assert set(grp.prediction_set) == want
            assert len(grp.prediction_set) <= len(lab.prediction_set)
            order = [g for g, _ in grp.languages]  # most probable group first, as at the label level
            assert grp.prediction_set == [g for g in order if g in want]


def test_abstention_is_per_name_and_the_same_at_every_level(predictor: Predictor) -> None:
    names = [*NAMES, "Xqzwv", "Ngata"]
    labels = predictor.predict(names, abstain=True, abstain_rate=0.2)
    groups = predictor.predict(names, abstain=True, abstain_rate=0.2, level="region")
    assert [p.abstained for p in labels] == [p.abstained for p in groups]
    assert [p.novelty for p in labels] == [p.novelty for p in groups]
    assert all(p.answer == "unknown" or p.answer in ("Slavic", "Klingon") for p in groups)


def test_an_unknown_level_is_a_one_line_error(predictor: Predictor) -> None:
    with pytest.raises(NamesError, match=r"^unknown level 'family': use label, group, region$"):
        predictor.predict(NAMES, level="family")


# ----------------------------------------------------------------------------- tables


def test_tables_hold_groups_pandas_and_dask_alike(grouped_model: Path, predictor: Predictor) -> None:
    frame = pd.DataFrame({"id": range(7), "last": [*NAMES, "", "Ivanov"]})
    out = predict_frame(frame, "last", predictor, k=2, coverage=0.9, level="group")
    expected = by_group(predictor, NAMES)
    assert list(out["language"][:5]) == [["East Slavic", "Klingon"][i] for i in expected.argmax(axis=1)]
    np.testing.assert_allclose(out["probability"][:5], expected.max(axis=1), atol=1e-6)
    assert set(out["language_2"][:5]) <= {"East Slavic", "Klingon"}
    assert "language_3" not in out.columns  # two groups: two answers, whatever k
    assert pd.isna(out["language"][5]) and out["language"][6] == out["language"][0]
    assert all(set(s.split(";")) <= {"East Slavic", "Klingon"} for s in out["prediction_set"][:5])

    dd = pytest.importorskip("dask.dataframe", reason="dask is the optional extra namesclf[scale]")
    lazy = predict_frame(dd.from_pandas(frame, npartitions=3), "last", str(grouped_model), k=2, coverage=0.9,
                         level="group")
    added = [c for c in out.columns if c not in frame.columns]  # dask retypes the input's own text column
    pd.testing.assert_frame_equal(lazy.compute(scheduler="sync")[added], out[added], check_exact=False, atol=1e-6)


def test_cli_lines_json_and_table_at_a_level(grouped_model: Path, predictor: Predictor, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["predict", "--model", str(grouped_model), "--level", "group", "--json", *NAMES])
    assert result.exit_code == 0, result.output
    assert result.stderr.count(NOTE) == 1  # once, not per name
    answers = json.loads(result.stdout)
    expected = by_group(predictor, NAMES)
    for answer, row in zip(answers, expected, strict=True):
        assert answer["level"] == "group" and answer["note"] == NOTE_TEXT
        assert answer["predictions"][0]["probability"] == pytest.approx(row.max(), abs=1e-6)

    table = tmp_path / "people.csv"
    pd.DataFrame({"last": NAMES}).to_csv(table, index=False)
    out = tmp_path / "out.parquet"
    result = runner.invoke(cli, ["predict", "--model", str(grouped_model), "--input", str(table), "--column", "last",
                                 "--output", str(out), "--level", "region"])
    assert result.exit_code == 0, result.output
    assert result.stderr.count(NOTE.replace("a group of", "a region of")) == 1
    assert set(pd.read_parquet(out)["language"]) <= {"Slavic", "Klingon"}

    result = runner.invoke(cli, ["predict", "--model", str(grouped_model), "--level", "family", "Ivanov"])
    assert result.exit_code == 2 and "'family' is not one of 'label', 'group', 'region'" in result.output


def test_cli_level_as_a_real_subprocess(grouped_model: Path, predictor: Predictor, tmp_path: Path) -> None:
    lines = tmp_path / "names.txt"
    lines.write_text("\n".join(NAMES) + "\n")
    done = subprocess.run([sys.executable, "-m", "namesclf", "predict", "--model", str(grouped_model), "--input",
                           str(lines), "--format", "csv", "--level", "group", "-k", "2", "--coverage", "0.9"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(NOTE) == 1
    rows = list(pd.read_csv(io.StringIO(done.stdout)).itertuples(index=False))
    expected = by_group(predictor, NAMES)
    assert [r.name for r in rows] == NAMES
    for r, row in zip(rows, expected, strict=True):
        assert r.language == ["East Slavic", "Klingon"][int(row.argmax())]
        assert r.probability == pytest.approx(row.max(), abs=1e-5)


# ----------------------------------------------------------------------------- HTTP and Python


def test_http_get_and_post_at_a_level(predictor: Predictor) -> None:
    from fastapi.testclient import TestClient

    from namesclf.serve.app import create_app

    expected = by_group(predictor, NAMES)
    with TestClient(create_app(predictor)) as http:
        one = http.get("/predict", params={"name": "Ivanov", "level": "group"})
        assert one.status_code == 200, one.text
        assert one.json()["level"] == "group" and one.json()["note"] == NOTE_TEXT
        assert one.json()["predictions"][0]["probability"] == pytest.approx(expected[0].max(), abs=1e-6)
        many = http.post("/predict", json={"names": NAMES, "level": "region", "coverage": 0.9})
        assert many.status_code == 200, many.text
        assert [a["predictions"][0]["language"] for a in many.json()] == [
            ["Slavic", "Klingon"][int(row.argmax())] for row in expected]
        label = http.get("/predict", params={"name": "Ivanov"}).json()
        assert "level" not in label and label["predictions"][0]["language"] in predictor.labels
        bad = http.post("/predict", json={"names": NAMES, "level": "family"})
        assert bad.status_code == 422 and "level" in bad.text
        languages = http.get("/languages").json()
        assert languages["groups"] == ["East Slavic", "Klingon"] and languages["regions"] == ["Slavic", "Klingon"]


def test_estimator_at_a_level(grouped_model: Path, predictor: Predictor) -> None:
    from namesclf.estimator import NameClassifier

    clf = NameClassifier.load(grouped_model)
    assert list(clf.classes_) == predictor.labels
    clf.set_params(level="group")
    assert list(clf.classes_) == ["East Slavic", "Klingon"]
    proba = clf.predict_proba(NAMES)
    np.testing.assert_allclose(proba, by_group(predictor, NAMES), atol=1e-6)
    assert list(clf.predict(NAMES)) == [clf.classes_[i] for i in proba.argmax(axis=1)]
    truth = ["Russian", "Klingon", "Ukrainian", "Ukrainian", "Klingon"]
    right = np.mean([p == ("Klingon" if t == "Klingon" else "East Slavic")
                     for p, t in zip(clf.predict(NAMES), truth, strict=True)])
    assert clf.score(NAMES, truth) == pytest.approx(right)
    assert all(set(s) <= {"East Slavic", "Klingon"} for s in clf.predict_set(NAMES, coverage=0.9))
    with pytest.raises(AttributeError):
        _ = NameClassifier().classes_


# ----------------------------------------------------------------------------- evaluation


class Stub:
    """Fixed probabilities per folded name (as in tests/test_evaluate.py)."""

    def __init__(self, answers: dict[str, list[float]], labels: list[str]) -> None:
        self.answers, self.labels = answers, labels

    def proba_ascii(self, folded: list[str], batch_size: int | None = None) -> np.ndarray:
        return np.array([self.answers[name] for name in folded])


# German and English are West Germanic (Germanic), French Gallo-Romance and Italian Italo-Romance
# (both Romance), Klingon its own.
LABELS = ["German", "English", "French", "Italian", "Klingon"]
#                 German English French Italian Klingon   true            predicted group
ANSWERS = {
    "Smith":   [0.05, 0.85, 0.05, 0.05, 0.00],          # English         West Germanic
    "Brown":   [0.50, 0.40, 0.05, 0.05, 0.00],          # English         West Germanic (German at the label level)
    "Martin":  [0.05, 0.55, 0.35, 0.05, 0.00],          # English, French West Germanic
    "Weber":   [0.04, 0.06, 0.40, 0.30, 0.20],          # German          Gallo-Romance; Romance as a region
    "Rossi":   [0.00, 0.00, 0.45, 0.40, 0.15],          # Italian         Gallo-Romance; Romance as a region
    "Krag":    [0.30, 0.30, 0.00, 0.00, 0.40],          # Klingon, German West Germanic
}
DATA = {"English": ["Smith", "Brown", "Martin"], "French": ["Martin"], "German": ["Weber", "Krag"],
        "Italian": ["Rossi"], "Klingon": ["Krag"]}


def test_evaluation_at_each_level_by_hand(tmp_path: Path) -> None:
    from namesclf.data.dataset import load_names

    frame = load_names(write_names_dir(tmp_path / "hand", DATA)).frame
    report = evaluate(Stub(ANSWERS, LABELS), frame)
    m = report.metrics
    # labels: Smith, Martin's English pair and Krag's Klingon pair are right
    assert m["levels"]["label"]["accuracy"] == m["accuracy"] == pytest.approx(3 / 8)
    group = m["levels"]["group"]
    assert group["classes"] == ["West Germanic", "Gallo-Romance", "Italo-Romance", "Klingon"]
    assert group["members"]["West Germanic"] == ["German", "English"]
    # pairs: Smith WG ok, Brown WG ok, Martin WG ok, Martin GR wrong (WG), Weber WG wrong (GR),
    # Rossi IR wrong (GR), Krag WG ok, Krag Klingon wrong (WG): 4 of 8
    assert group["n"] == 8 and group["accuracy"] == pytest.approx(4 / 8)
    assert group["accuracy_any"] == pytest.approx(4 / 6)  # Weber and Rossi wrong of six names
    counts = report.levels["group"].confusion
    assert counts.loc["West Germanic"].tolist() == [4, 1, 0, 0]
    assert counts.loc["Gallo-Romance"].tolist() == [1, 0, 0, 0]
    assert counts.loc["Italo-Romance"].tolist() == [0, 1, 0, 0]
    assert counts.loc["Klingon"].tolist() == [1, 0, 0, 0]
    # F1: WG P 4/6 R 4/5; GR P 0 R 0; IR 0; Klingon 0
    wg = 2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5)
    assert group["macro_f1"] == pytest.approx(wg / 4)
    assert group["balanced_accuracy"] == pytest.approx((4 / 5) / 4)
    assert group["note"] == "Klingon not in the origin-group table; it stays a group of its own"
    region = m["levels"]["region"]
    # Martin's French pair and Weber: Romance vs Germanic; Rossi is right as Romance now
    assert region["classes"] == ["Germanic", "Romance", "Klingon"]
    assert region["n"] == 8 and region["accuracy"] == pytest.approx(5 / 8)

    written = write_report(report, tmp_path / "out")
    assert sorted(p.name for p in written) == sorted(REPORT_FILES)
    for level in ("group", "region"):
        counts_csv, normalized_csv, png = level_files(level)
        table = pd.read_csv(tmp_path / "out" / counts_csv, index_col=0)
        assert table.to_numpy().tolist() == report.levels[level].confusion.to_numpy().tolist()
        shares = pd.read_csv(tmp_path / "out" / normalized_csv, index_col=0).sum(axis=1)
        assert set(shares.round(9)) <= {0.0, 1.0}
        assert (tmp_path / "out" / png).stat().st_size > 1000
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["levels"]["group"]["accuracy"] == pytest.approx(4 / 8)
    text = (tmp_path / "out" / "report.txt").read_text()
    assert "group   accuracy 0.5000" in text and "region  accuracy 0.6250" in text


def test_a_name_under_two_labels_of_one_group_is_one_pair(tmp_path: Path) -> None:
    from namesclf.data.dataset import load_names

    data = {"Russian": ["Kovalenko", "Ivanov"], "Ukrainian": ["Kovalenko", "Shevchenko"], "Japanese": ["Sato"]}
    answers = {"Kovalenko": [0.3, 0.6, 0.1], "Ivanov": [0.9, 0.05, 0.05], "Shevchenko": [0.2, 0.2, 0.6],
               "Sato": [0.1, 0.1, 0.8]}
    frame = load_names(write_names_dir(tmp_path / "slavic", data)).frame
    m = evaluate(Stub(answers, ["Russian", "Ukrainian", "Japanese"]), frame).metrics
    assert m["n"] == 5 and m["levels"]["group"]["n"] == 4  # Kovalenko is one East Slavic pair
    assert m["levels"]["group"]["accuracy"] == pytest.approx(3 / 4)  # Shevchenko reads Japonic


def test_evaluate_cli_reports_every_level(grouped_model: Path, tmp_path: Path) -> None:
    data = write_names_dir(tmp_path / "data", {RENAMED[k]: v[:8] for k, v in MORE.items()})
    result = CliRunner().invoke(cli, ["evaluate", str(data), "--model", str(grouped_model), "--out",
                                      str(tmp_path / "report"), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert list(metrics["levels"]) == ["label", "group", "region"]
    assert metrics["levels"]["label"]["accuracy"] == metrics["accuracy"]
    assert metrics["levels"]["group"]["accuracy"] >= metrics["accuracy"]  # merging can only help
    assert {Path(f).name for f in metrics["files"]} == set(REPORT_FILES)
    text = CliRunner().invoke(cli, ["evaluate", str(data), "--model", str(grouped_model), "--out",
                                    str(tmp_path / "report"), "--force"])
    assert text.exit_code == 0, text.output
    assert "group   accuracy" in text.output and "region  accuracy" in text.output
    note = "note: Klingon not in the origin-group table: at the group and region level it stands for itself"
    assert text.stderr.count(note) == 1


def test_the_groups_experiment_measures_sets_at_each_level(grouped_model: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m experiments.groups MODEL DATA``: the sets made of the label set's groups cover at
    least as many test pairs as the label set, and are no larger."""
    from experiments import groups

    data = write_names_dir(tmp_path / "data", {RENAMED[k]: v for k, v in MORE.items()})
    groups.main([str(grouped_model), str(data), "--coverage", "0.8"])
    lines = capsys.readouterr().out.splitlines()
    rows = {" ".join(line.split()[:-4]): [float(x.replace(",", "")) for x in line.split()[-4:]]
            for line in lines[2:]}
    label = rows["label label set (stored calibration)"]
    for level in ("group", "region"):
        mine = rows[f"{level} groups of the label set"]
        assert mine[0] >= label[0] and mine[1] <= label[1] and mine[2:] == label[2:]
        assert f"{level} calibrated at the level (cross-fitted)" in rows
        assert f"{level} calibrated at the level (valid names)" in rows
