"""Real names end to end: "none of these", prediction sets, population priors, full names and whole
tables, through the Python API, the CLI (CliRunner and a real process) and HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from namesclf import NameClassifier, predict_frame
from namesclf.cli.main import cli
from namesclf.data.dataset import load_names, split_names
from namesclf.errors import NamesError
from namesclf.inference.predictor import Predictor
from namesclf.models.checkpoint import load_checkpoint
from namesclf.serve.app import create_app

from .conftest import MORE, REPO, TINY, write_names_dir


@pytest.fixture(scope="module")
def model(small_model: Path) -> Path:
    """The small pooled classifier on three languages, 36 names each, with its calibration."""
    return small_model


@pytest.fixture(scope="module")
def predictor(model: Path) -> Predictor:
    return Predictor.load(str(model))


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


def test_the_model_file_carries_its_calibration(model: Path) -> None:
    calibration = load_checkpoint(model)["meta"]["calibration"]
    assert set(calibration) == {"label_counts", "conformal", "openset", "mix_error"}
    assert sum(calibration["label_counts"]) > 0 and len(calibration["label_counts"]) == 3
    assert len(calibration["conformal"]["labels"]) == len(calibration["conformal"]["p_true"]) > 0


def test_abstain_coverage_and_full_names_in_one_call(predictor: Predictor) -> None:
    results = predictor.predict(["Ivanov", "Fyodor Ivanov", "Xqzwvb"], 2, coverage=0.9, abstain=True)
    alone, full, odd = results
    assert full.surname == "Ivanov" and alone.surname is None
    assert full.languages == alone.languages  # the surname is what was classified
    assert all(r.abstained in (True, False) and r.novelty is not None for r in results)
    assert odd.novelty > alone.novelty  # consonant soup looks less like any known language
    for r in results:
        assert not r.prediction_set or r.prediction_set[0] == r.languages[0][0]
        assert r.answer == ("unknown" if r.abstained else r.languages[0][0])
    threshold = predictor.open_set.threshold(0.05)
    assert all(r.abstained == (r.novelty > threshold) for r in results)
    assert predictor.predict(["Fyodor Ivanov"], surname_only=True)[0].surname is None


def test_a_prior_reweighs_by_bayes_rule(predictor: Predictor) -> None:
    base = predictor.predict_proba(["Ivanov", "Rossi"])
    uniform = np.array([[p for _, p in sorted(r.languages)] for r in predictor.predict(
        ["Ivanov", "Rossi"], 3, prior="uniform")])
    expected = base / predictor.trained_on
    np.testing.assert_allclose(uniform, expected / expected.sum(1, keepdims=True), rtol=1e-5)
    weights = dict(zip(predictor.labels, [0.0, 1.0, 0.0], strict=True))
    only = predictor.predict(["Ivanov"], 1, prior=weights)[0]
    assert only.languages[0] == (predictor.labels[1], pytest.approx(1.0))


def test_cli_options_and_their_one_line_errors(model: Path, tmp_path: Path) -> None:
    result = invoke("predict", "Ivanov", "Fyodor Tanaka", "--model", str(model), "--coverage", "0.9", "--abstain",
                    "--prior", "uniform", "--json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert records[1]["surname"] == "Tanaka" and "prediction_set" in records[0] and "abstained" in records[0]
    text = invoke("predict", "Fyodor Tanaka", "--model", str(model), "--coverage", "0.8").stdout
    assert text.startswith("Fyodor Tanaka [Tanaka]  ") and "{" in text
    prior = tmp_path / "prior.json"
    for options, message in ((["--coverage", "1.5"], "coverage must be between 0 and 1"),
                             (["--coverage", "lots"], "--coverage must be a number"),
                             (["--abstain", "--abstain-rate", "2"], "abstention rate must be between 0 and 1"),
                             (["--prior", str(prior)], "unknown language(s) Klingon"),
                             (["--prior", "sideways"], "no such file")):
        prior.write_text(json.dumps({"Klingon": 1, **{lang: 1 for lang in TINY}}))
        result = invoke("predict", "Ivanov", "--model", str(model), *options)
        assert result.exit_code == 1, (options, result.output)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    prior.write_text(json.dumps({lang: 0 for lang in TINY}))
    result = invoke("predict", "Ivanov", "--model", str(model), "--prior", str(prior))
    assert result.exit_code == 1 and "sum to 0" in result.stderr


def test_a_model_without_the_ngram_half_says_it_cannot_abstain(tmp_path: Path) -> None:
    data = write_names_dir(tmp_path / "names", MORE)
    out = tmp_path / "bare.pt"
    assert invoke("train", str(data), "--out", str(out), "--epochs", "1", "--hidden", "8", "--ngram-order", "0",
                  "-q").exit_code == 0
    result = invoke("predict", "Ivanov", "--model", str(out), "--abstain")
    assert result.exit_code == 1 and "abstention needs the n-gram half" in result.stderr
    assert invoke("predict", "Ivanov", "--model", str(out), "--coverage", "0.9").exit_code == 0  # sets still work


def test_predict_frame_keeps_rows_index_and_order_and_classifies_each_name_once(
        predictor: Predictor, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = pd.DataFrame({"id": [10, 11, 12, 13, 14], "last": ["Ivanov", "Rossi", "Ivanov", "", None]},
                         index=[5, 3, 9, 1, 7])
    seen: list[str] = []
    original = predictor.predict_with

    def counting(names, options, strict=True):
        seen.extend(names)
        return original(names, options, strict)

    monkeypatch.setattr(predictor, "predict_with", counting)
    out = predict_frame(frame, "last", predictor, k=2, coverage=0.9, abstain=True)
    assert list(out.index) == [5, 3, 9, 1, 7] and list(out["id"]) == [10, 11, 12, 13, 14]
    assert sorted(seen) == sorted(set(seen)) and seen.count("Ivanov") == 1  # duplicates classified once
    assert out.loc[5, "language"] == out.loc[9, "language"] and out.loc[5, "language"] in TINY
    assert pd.isna(out.loc[1, "language"]) and pd.isna(out.loc[7, "language"])  # empty and missing cells
    for column in ("language_2", "probability_2", "answer", "abstained", "novelty", "prediction_set", "surname"):
        assert column in out.columns
    assert out["probability"].dropna().between(0, 1).all()
    with pytest.raises(NamesError, match=r"no column 'surname' in the table \(its columns: id, last\)"):
        predict_frame(frame, "surname", predictor)


def test_table_files_through_the_cli_and_a_real_process(model: Path, tmp_path: Path) -> None:
    table = pd.DataFrame({"person": ["a", "b", "c"], "last_name": ["Rossi", "Tanaka", "Rossi"], "age": ["1", "2", ""]})
    src = tmp_path / "people.csv"
    table.to_csv(src, index=False)
    out = tmp_path / "out.parquet"
    result = invoke("predict", "--model", str(model), "--input", str(src), "--column", "last_name", "--output",
                    str(out))
    assert result.exit_code == 0, result.output
    back = pd.read_parquet(out)
    assert list(back.columns[:3]) == ["person", "last_name", "age"] and list(back["age"]) == ["1", "2", ""]
    assert back["language"].iloc[0] == back["language"].iloc[2]
    proc = subprocess.run([sys.executable, "-m", "namesclf", "predict", "--model", str(model), "--input", str(src),
                           "--column", "last_name", "-k", "2"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("person,last_name,age,language,probability,language_2") and len(lines) == 4
    missing = subprocess.run([sys.executable, "-m", "namesclf", "predict", "--model", str(model), "--input",
                              str(src), "--column", "surname"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "no column 'surname'" in missing.stderr and "person, last_name, age" in missing.stderr
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = invoke("predict", "--model", str(model), "--input", str(empty), "--column", "last_name")
    assert result.exit_code == 1 and "empty" in result.stderr.lower()


def test_http_options(predictor: Predictor) -> None:
    client = TestClient(create_app(predictor))
    one = client.get("/predict", params={"name": "Fyodor Ivanov", "abstain": "true", "coverage": 0.9,
                                         "prior": "uniform"})
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["surname"] == "Ivanov" and isinstance(body["abstained"], bool) and "prediction_set" in body
    many = client.post("/predict", json={"names": ["Ivanov", "Rossi"], "k": 1,
                                         "prior": dict.fromkeys(predictor.labels, 1.0), "coverage": 0.8})
    assert many.status_code == 200 and len(many.json()) == 2
    for bad in ({"names": ["Ivanov"], "prior": {"Klingon": 1.0}}, {"names": ["Ivanov"], "coverage": 1.5},
                {"names": ["Ivanov"], "prior": "sideways"}):
        answer = client.post("/predict", json=bad)
        assert answer.status_code == 422 and "error" in answer.json(), bad
    assert client.get("/predict", params={"name": "Ivanov", "prior": "/etc/passwd"}).status_code == 422


def test_the_estimator_predict_set_and_abstain(model: Path) -> None:
    clf = NameClassifier.load(model)
    sets = clf.predict_set(["Ivanov", "Rossi"], coverage=0.9)
    assert all(set(s) <= set(clf.classes_) for s in sets)
    wide = clf.predict_set(["Ivanov", "Rossi"], coverage=0.95)
    assert all(set(a) <= set(b) for a, b in zip(sets, wide, strict=True))  # more coverage, larger sets
    clf.set_params(abstain=True)
    answers = clf.predict(["Ivanov", "Xqzwvbkk"])
    assert set(answers) <= {*clf.classes_, "unknown"}


# ----------------------------------------------------------------------------- the experiments (experiments/)


def test_crosscorpus_rebuilds_the_models_test_split(model: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m experiments.crosscorpus MODEL=DATA`` scores the test split of the model's own seed;
    on a corpus of the model's languages, "shared only" is its training mix: the same answers."""
    from experiments import crosscorpus

    data = write_names_dir(tmp_path / "names", MORE)
    crosscorpus.main([f"{model}={data}"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["model", "test"] and len(lines) == 3
    frame = load_names(data).frame
    pairs = int((split_names(frame, seed=1) == "test").sum())  # the fixture trains with --seed 1
    rows = {" ".join(line.split()[2:-5]): line.split()[-5:] for line in lines[1:]}
    assert set(rows) == {"all", "shared only"}
    assert int(rows["all"][0].replace(",", "")) == pairs and int(rows["all"][1]) == len(TINY)
    assert rows["all"] == rows["shared only"]


def test_realnames_wild_scores_the_novel_languages(model: Path, tmp_path: Path) -> None:
    """``python -m experiments.realnames DATA wild``: surnames of a language the model lacks are the
    novel ones, new surnames of its languages the in-set ones; the figures land in ``--json``."""
    from experiments import realnames

    data = write_names_dir(tmp_path / "names", MORE)
    corpus = write_names_dir(tmp_path / "corpus", {
        "Russian": ["Orlov", "Belov", "Titov", "Zaitsev", "Gusev", "Vinogradov", "Ivanov"],
        "Greek": ["Papadopoulos", "Georgiou", "Nikolaidis", "Konstantinou", "Dimitriou", "Pappas"]})
    out = tmp_path / "wild.json"
    realnames.main([str(data), "--json", str(out), "wild", "--model", str(model), "--corpus", str(corpus)])
    report = json.loads(out.read_text())
    assert report["n_inset"] == 6 and report["n_novel"] == 6  # Ivanov is in DATA: left out
    assert report["novel_languages"] == ["Greek"]
    for score in ("novelty (learned)", "max-probability", "n-gram nats/letter"):
        assert 0.0 <= report[score]["auroc"] <= 1.0, score
    learned = report["novelty (learned)"]
    assert 0.0 <= learned["abstained_novel"] <= 1.0 and 0.0 <= learned["abstained_inset"] <= 1.0


# ----------------------------------------------------------------------------- on the real split


@pytest.mark.slow
def test_real_coverage_abstention_and_full_names(trained_model: Path, real_data: Path) -> None:
    """On the real test names: sets cover at the target, abstention stays near its rate on known
    languages, and "Given Surname" gives the surname's answer in at least 99% of cases."""
    predictor = Predictor.load(str(trained_model))
    frame = load_names(real_data).frame
    test = frame[split_names(frame, seed=0) == "test"]
    names = test["ascii"].tolist()
    answers = predictor.predict(names, 1, coverage=0.9, abstain=True, surname_only=True)
    covered = np.mean([lang in a.prediction_set for lang, a in zip(test["language"], answers, strict=True)])
    assert 0.87 <= covered <= 0.93, covered
    abstained = np.mean([a.abstained for a in answers])
    assert abstained <= 0.09, abstained
    rng = np.random.default_rng(0)
    by_language = {lang: sub["name"].tolist() for lang, sub in frame.groupby("language")}
    given = [str(rng.choice(by_language[lang])).split()[0] for lang in test["language"]]
    full = predictor.predict([f"{g} {n}" for g, n in zip(given, test["name"], strict=True)], 1)
    same = np.mean([f.languages[0][0] == a.languages[0][0] for f, a in zip(full, answers, strict=True)])
    assert same >= 0.99, same
