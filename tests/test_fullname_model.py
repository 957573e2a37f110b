"""Full-name models: parsing in an order, training on a people table, the part cache, the ONNX
export against torch, and every surface (CLI in-process and as a subprocess, tables with a
given-name column, HTTP, the estimator)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from namesclf.cli.main import cli
from namesclf.data.fullnames import parse_name, split_name
from namesclf.inference.options import Options
from namesclf.inference.predictor import Predictor

GIVEN = {
    "Russian": ["Ivan", "Fyodor", "Dmitri", "Sergei", "Nikolai", "Boris", "Mikhail Petrovich"],
    "Italian": ["Giovanni", "Marco", "Luca", "Giuseppe", "Paolo", "Matteo", "Francesco"],
    "Japanese": ["Hiroshi", "Takashi", "Yuki", "Kenji", "Haruto", "Sota", "Akira"],
}
SURNAMES = {
    "Russian": ["Ivanov", "Petrov", "Smirnov", "Volkov", "Popov", "Sokolov", "Lebedev", "Kozlov", "Novikov",
                "Morozov", "Pavlov", "Orlov", "Belov", "Zaitsev", "Medvedev", "Dostoevsky", "Tolstoy", "Chekhov"],
    "Italian": ["Rossi", "Russo", "Bianchi", "Romano", "Colombo", "Ricci", "Marino", "Greco", "Bruno", "Gallo",
                "Conti", "Costa", "Giordano", "Mancini", "Rizzo", "Lombardi", "Moretti", "Barbieri"],
    "Japanese": ["Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe", "Ito", "Yamamoto", "Nakamura", "Kobayashi",
                 "Kato", "Yoshida", "Yamada", "Sasaki", "Yamaguchi", "Matsumoto", "Inoue", "Kimura", "Hayashi"],
}
#: A surname every label's people carry: only the given names can tell them apart.
SHARED = "Marko"


def people_rows() -> pd.DataFrame:
    rows = []
    for label, surnames in SURNAMES.items():
        for i, surname in enumerate([*surnames, SHARED]):
            for j, given in enumerate(GIVEN[label]):
                if (i + j) % 2 == 0 or surname == SHARED:
                    rows.append({"name": f"{given} {surname}", "given": given, "surname": surname,
                                 "language": label, "nationality": label[:3]})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def people_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("people") / "people.csv"
    people_rows().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def full_model(people_csv: Path) -> Path:
    """A full-name model trained by ``names train`` on the people table (seconds)."""
    out = people_csv.parent / "full.pt"
    result = CliRunner().invoke(cli, ["train", str(people_csv), "--out", str(out), "--ngram-order", "3", "-q"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and out.with_name("full.given.onnx").is_file()
    return out


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(("text", "order", "want"), [
    ("Fyodor Mikhailovich Dostoevsky", "auto", ("Fyodor Mikhailovich", "Dostoevsky")),
    ("Dostoevsky, Fyodor", "auto", ("Fyodor", "Dostoevsky")),
    ("Jan van der Berg", "auto", ("Jan", "van der Berg")),
    ("Dr. John Smith Jr.", "auto", ("John", "Smith")),
    ("Mao Zedong", "family-first", ("Zedong", "Mao")),
    ("van der Berg Jan", "family-first", ("Jan", "van der Berg")),
    ("Kim Jong-un", "family-first", ("Jong-un", "Kim")),
    ("Smith, John", "given-first", ("Smith", "John")),
    ("Nakamura", "family-first", ("", "Nakamura")),
    ("", "auto", ("", "")),
])
def test_split_name_in_each_order(text: str, order: str, want: tuple[str, str]) -> None:
    assert split_name(text, order) == want


def test_the_fast_path_answers_as_nameparser_does() -> None:
    """Names of plain words skip nameparser; on them it would have answered the same."""
    names = [" ".join(row) for row in people_rows()[["given", "surname"]].itertuples(index=False)]
    names += ["Anna Maria Schmidt", "Jean-Luc Picard", "Seán O'Brien", "Zhang Wei", "Ali Hassan Ahmed",
              "Ludwig van Beethoven", "Jan van der Berg", "J. R. R. Tolkien", "John F. Kennedy", "Stephen King",
              "King Charles", "Al Pacino", "Martin Luther King Jr.", "Anna de la Cruz Garcia"]
    for name in names:
        parsed = parse_name(name)
        assert split_name(name) == (parsed.given, parsed.surname), name


def test_an_unknown_order_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown order"):
        split_name("A B", "backwards")
    result = CliRunner().invoke(cli, ["predict", "Ivanov", "--order", "backwards"])
    assert result.exit_code != 0 and "given-first" in result.output and "Traceback" not in result.output


# ----------------------------------------------------------------------------- the model


def test_the_model_file_says_what_it_reads(full_model: Path) -> None:
    import torch

    payload = torch.load(full_model, weights_only=True)
    assert payload["meta"]["reads"] == "full_name" and payload["meta"]["label_column"] == "language"
    assert set(payload["meta"]["combiner"]) == {"surname", "given", "given_bias", "bias"}
    assert payload["given"]["labels"] == payload["labels"] == sorted(SURNAMES)
    assert payload["meta"]["test"]["n"] > 0


def test_given_names_decide_a_shared_surname(full_model: Path) -> None:
    predictor = Predictor.load(full_model)
    assert predictor.backend == "onnx" and predictor.reads_full_names
    answers = predictor.predict([f"{given} {SHARED}" for given in ("Ivan", "Giovanni", "Hiroshi")], k=1)
    assert [a.languages[0][0] for a in answers] == ["Russian", "Italian", "Japanese"]
    assert all(a.surname == SHARED for a in answers)
    # with surname_only the given names are left out: the answers are the bare surname's
    bare = predictor.predict([f"{given} {SHARED}" for given in ("Ivan", "Giovanni")], k=3, surname_only=True)
    alone = predictor.predict([SHARED], k=3)[0]
    assert bare[0].languages == bare[1].languages == alone.languages != answers[0].languages
    assert bare[0].surname == SHARED and alone.surname is None


def test_onnx_and_torch_agree(full_model: Path) -> None:
    names = ["Fyodor Dostoevsky", "Giovanni Rossi", "Rossi", "Hiroshi Tanaka", "Tanaka, Hiroshi",
             f"Ivan {SHARED}", "Mikhail Petrovich Lebedev", "Kenji"]
    onnx, torch_ = Predictor.load(full_model), Predictor.load(full_model, backend="torch")
    assert (onnx.backend, torch_.backend) == ("onnx", "torch")
    for options in (Options(), Options(surname_only=True), Options(order="family-first")):
        a, b = onnx.proba_with(names, options), torch_.proba_with(names, options)
        assert np.allclose(a, b, atol=1e-5), options
    sets = [p.prediction_set for p in onnx.predict(names, coverage=0.9)]
    assert sets == [p.prediction_set for p in torch_.predict(names, coverage=0.9)]


def test_each_distinct_part_is_scored_once(full_model: Path) -> None:
    predictor = Predictor.load(full_model)
    assert predictor.given is not None
    seen: dict[str, list[str]] = {"surname": [], "given": []}
    for part, target in (("surname", predictor), ("given", predictor.given)):
        original = target.score_ascii

        def record(folded, features=False, batch_size=None, _part=part, _original=original):  # type: ignore[no-untyped-def]
            seen[_part].extend(folded)
            return _original(folded, features, batch_size)

        target.score_ascii = record  # type: ignore[method-assign]
    names = ["Ivan Petrov", "Ivan Rossi", "Marco Petrov", "Ivan Petrov", "Marco Rossi", "Petrov"]
    predictor.predict(names)
    assert sorted(seen["surname"]) == ["Petrov", "Rossi"]
    assert sorted(seen["given"]) == ["Ivan", "Marco"]


def test_a_surname_model_is_not_changed_by_given_names(small_model: Path) -> None:
    """A surname model reads the surname alone, whatever the table's given-name column says."""
    predictor = Predictor.load(small_model)
    assert not predictor.reads_full_names
    frame = pd.DataFrame({"last": ["Dostoevsky", "Rossi"], "first": ["Fyodor", "Giovanni"]})
    from namesclf.inference.tables import predict_frame

    with_given = predict_frame(frame, "last", predictor, given_column="first")
    without = predict_frame(frame[["last"]], "last", predictor)
    assert with_given["probability"].tolist() == without["probability"].tolist()
    full = predictor.predict(["Fyodor Dostoevsky"], k=2)[0]
    assert full.languages == predictor.predict(["Dostoevsky"], k=2)[0].languages


# ----------------------------------------------------------------------------- surfaces


def test_cli_predict_reads_both_parts_and_cuts_with_surname_only(full_model: Path) -> None:
    runner = CliRunner()
    both = runner.invoke(cli, ["predict", f"Giovanni {SHARED}", "--model", str(full_model), "--json", "-k", "1"])
    assert both.exit_code == 0, both.output
    assert json.loads(both.output)[0]["predictions"][0]["language"] == "Italian"
    cut = runner.invoke(cli, ["predict", f"Giovanni {SHARED}", "--model", str(full_model), "--json", "-k", "3",
                              "--surname-only"])
    plain = runner.invoke(cli, ["predict", SHARED, "--model", str(full_model), "--json", "-k", "3"])
    # --surname-only cuts to the surname: "Giovanni Marko" is read as "Marko"
    assert json.loads(cut.output)[0]["predictions"] == json.loads(plain.output)[0]["predictions"]
    assert json.loads(plain.output)[0]["predictions"] != json.loads(both.output)[0]["predictions"]
    order = runner.invoke(cli, ["predict", f"{SHARED} Hiroshi", "--model", str(full_model), "--json", "-k", "1",
                                "--order", "family-first"])
    assert order.exit_code == 0, order.output
    assert json.loads(order.output)[0]["predictions"][0]["language"] == "Japanese"
    assert json.loads(order.output)[0]["surname"] == SHARED


def test_cli_table_with_a_given_name_column(full_model: Path, tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    pd.DataFrame({"first_name": ["Ivan", "Giovanni", "", "Ivan"],
                  "last_name": [SHARED, SHARED, "Rossi", SHARED]}).to_csv(table, index=False)
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(cli, ["predict", "--input", str(table), "--column", "last_name", "--given-column",
                                      "first_name", "--model", str(full_model), "-k", "1", "--output", str(out)])
    assert result.exit_code == 0, result.output
    got = pd.read_csv(out, keep_default_na=False)
    assert got["language"].tolist() == ["Russian", "Italian", "Italian", "Russian"]
    assert got["first_name"].tolist() == ["Ivan", "Giovanni", "", "Ivan"]
    missing = CliRunner().invoke(cli, ["predict", "--input", str(table), "--column", "last_name",
                                       "--given-column", "nope", "--model", str(full_model)])
    assert missing.exit_code == 1 and "no column 'nope'" in missing.output
    alone = CliRunner().invoke(cli, ["predict", "Ivanov", "--given-column", "first_name"])
    assert alone.exit_code != 0 and "--given-column goes with --column" in alone.output


def test_subprocess_names_predict_without_torch(full_model: Path) -> None:
    """The real command, in a fresh process: both parts answer from their ONNX exports, no torch."""
    code = ("import sys; from namesclf.cli.main import main; sys.argv = ['names', 'predict', 'Ivan Marko', "
            f"'--model', {str(full_model)!r}, '-k', '1', '--json']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["predictions"][0]["language"] == "Russian"


def test_names_train_refuses_label_column_on_a_surname_list(tmp_path: Path) -> None:
    data = tmp_path / "s.csv"
    pd.DataFrame({"name": ["Ivanov", "Rossi"], "language": ["Russian", "Italian"]}).to_csv(data, index=False)
    result = CliRunner().invoke(cli, ["train", str(data), "--out", str(tmp_path / "m.pt"), "--label-column", "x"])
    assert result.exit_code == 1 and "--label-column is for people tables" in result.output


def test_names_train_on_another_label_column(people_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "nat.pt"
    result = CliRunner().invoke(cli, ["train", str(people_csv), "--out", str(out), "--label-column", "nationality",
                                      "--ngram-order", "3", "-q", "--no-export"])
    assert result.exit_code == 0, result.output
    predictor = Predictor.load(out)
    assert predictor.labels == ["Ita", "Jap", "Rus"] and predictor.backend == "torch"
    assert predictor.predict([f"Hiroshi {SHARED}"], k=1)[0].languages[0][0] == "Jap"


def test_http_reads_full_names(full_model: Path) -> None:
    from fastapi.testclient import TestClient

    from namesclf.serve.app import create_app

    app = create_app(Predictor.load(full_model), model_path=str(full_model))
    with TestClient(app) as http:
        got = http.get("/predict", params={"name": f"Hiroshi {SHARED}", "k": 1}).json()
        assert got["predictions"][0]["language"] == "Japanese" and got["surname"] == SHARED
        body = http.post("/predict", json={"names": [f"{SHARED} Ivan"], "k": 1, "order": "family-first"}).json()
        assert body[0]["predictions"][0]["language"] == "Russian"
        assert http.post("/predict", json={"names": ["x"], "order": "sideways"}).status_code == 422


def test_the_estimator_fits_and_predicts_full_names(tmp_path: Path) -> None:
    from namesclf import NameClassifier

    people = people_rows()
    clf = NameClassifier(full_names=True, ngram_order=3).fit(people["name"], people["language"])
    names = [f"Ivan {SHARED}", f"Giovanni {SHARED}", f"Hiroshi {SHARED}"]
    assert clf.predict(names).tolist() == ["Russian", "Italian", "Japanese"]
    saved = clf.save(tmp_path / "est.pt")
    loaded = NameClassifier.load(saved)
    assert loaded.predictor_.backend == "onnx" and loaded.full_names
    assert np.allclose(loaded.predict_proba(names), clf.predict_proba(names), atol=1e-5)


def test_dask_reads_a_given_name_column(full_model: Path) -> None:
    dd = pytest.importorskip("dask.dataframe")
    from namesclf.inference.tables import predict_frame

    frame = pd.DataFrame({"first": ["Ivan", "Giovanni", "Hiroshi"], "last": [SHARED] * 3})
    lazy = predict_frame(dd.from_pandas(frame, npartitions=2), "last", full_model, k=1, given_column="first")
    eager = predict_frame(frame, "last", full_model, k=1, given_column="first")
    got = lazy.compute(scheduler="synchronous")
    assert got["language"].tolist() == eager["language"].tolist() == ["Russian", "Italian", "Japanese"]


def test_names_export_writes_both_parts(full_model: Path, tmp_path: Path) -> None:
    """``names export`` on a full-name model writes the given part beside the surname part; the
    two answer as the exports ``names train`` wrote."""
    import shutil

    copy = tmp_path / "copy.pt"
    shutil.copy(full_model, copy)
    result = CliRunner().invoke(cli, ["export", str(copy)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "copy.onnx").is_file() and (tmp_path / "copy.given.onnx").is_file()
    names = [f"Ivan {SHARED}", "Giovanni Rossi", "Tanaka"]
    got = Predictor.load(copy, backend="onnx").proba_with(names, Options())
    assert np.allclose(got, Predictor.load(full_model).proba_with(names, Options()), atol=1e-6)
    (tmp_path / "copy.given.onnx").unlink()
    with pytest.warns(UserWarning, match="copy.given.onnx is missing"):
        assert Predictor.load(copy).backend == "torch"
