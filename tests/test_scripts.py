"""Native scripts as evidence: detection, the label table, romanization goldens, the label mask and
its combination rule, ``unknown`` with the reason ``script`` everywhere a prediction is shown, and
Latin names exactly as before."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from namesclf.data.romanize import SCHEMES, romanize
from namesclf.data.scripts import LATIN, family_name_first, label_scripts, native_scripts, scripts_of
from namesclf.inference.answers import surname_of_name
from namesclf.inference.options import UNKNOWN, Options
from namesclf.inference.predictor import Predictor
from namesclf.inference.scripts import ScriptEvidence
from namesclf.text import to_ascii
from tests.test_cli import run, run_subprocess

GEORGIAN = "ჯუღაშვილი"


@pytest.mark.parametrize(("text", "scripts"), [
    ("Smith", {"Latin"}), ("Ślusàrski", {"Latin"}), ("Достоевский", {"Cyrillic"}), ("Παπαδόπουλος", {"Greek"}),
    ("محمد", {"Arabic"}), ("כהן", {"Hebrew"}), ("中村", {"Han"}), ("佐々木", {"Han"}), ("さとう", {"Hiragana"}),
    ("コバヤシ", {"Katakana"}), ("ｻﾄｳ", {"Katakana"}), ("タナカー", {"Katakana"}), ("김민준", {"Hangul"}),
    ("ชินวัตร", {"Thai"}), ("शर्मा", {"Devanagari"}), ("সেন", {"Bengali"}), ("Գրիգորյան", {"Armenian"}),
    (GEORGIAN, {"Georgian"}), ("山田 Taro", {"Han", "Latin"}), ("Иванов-Smith", {"Cyrillic", "Latin"}),
    ("O'Brien 3rd", {"Latin"}), ("123 -", set()), ("", set()),
])
def test_script_detection(text: str, scripts: set[str]) -> None:
    assert scripts_of(text) == scripts
    assert native_scripts(text) == scripts - {LATIN}


def test_the_label_table_covers_every_label_of_both_corpora() -> None:
    groups = Path(__file__).resolve().parents[1] / "namesclf" / "data" / "origin_groups.csv"
    with groups.open(encoding="utf-8") as f:
        labels = {row["label"] for row in csv.DictReader(f)}
    table = label_scripts()
    assert set(table) == labels
    assert all(LATIN in row.scripts for row in table.values())  # the corpora hold romanized names
    assert all(set(row.schemes) <= row.scripts and set(row.schemes.values()) <= set(SCHEMES)
               for row in table.values())
    assert table["Japanese"].scripts >= {"Han", "Hiragana", "Katakana"} and table["Korean"].schemes == {"Hangul": "ko"}
    assert "Han" not in table["Korean"].scripts and table["Vietnamese"].scripts == {LATIN}


@pytest.mark.parametrize(("text", "scheme", "latin"), [
    ("김", "ko", "Kim"), ("이", "ko", "Lee"), ("박", "ko", "Park"), ("최", "ko", "Choi"),
    ("김민준", "ko", "Kim Minjun"),
    ("이서연", "ko", "Lee Seoyeon"), ("남궁민", "ko", "Namgoong Min"), ("한글", "ko", "Han Geul"),
    ("설악", "ko", "Seol Ak"), ("박석우", "ko", "Park Seogu"),
    ("さとう", "ja", "Sato"), ("いのうえ", "ja", "Inoue"), ("コバヤシ", "ja", "Kobayashi"),
    ("まっちゃ", "ja", "Matcha"),
    ("きょうこ", "ja", "Kyoko"), ("ｻﾄｳ", "ja", "Sato"), ("中村", "ja", "Nakamura"), ("佐々木", "ja", "Sasaki"),
    ("夏目", "ja", "Natsume"), ("宮沢", "ja", "Miyazawa"), ("山田太郎", "ja", "Yamada Taro"),
    ("中村", "zh", "Zhongcun"), ("张伟", "zh", "Zhangwei"), ("王", "zh", "Wang"),
    ("Григорій", "uk", "Hryhoriy"), ("Ковальський", "uk", "Kovalskyi"), ("Сергеев", "ru", "Sergeyev"),
    ("Достоевский", "ru", "Dostoyevsky"), ("Щербаков", "bg", "Shterbakov"), ("Ђорђевић", "sr", "Đorđević"),
    ("Ѓорѓиевски", "mk", "Gjorgjievski"), ("Παπαδόπουλος", "el", "Papadopoulos"), ("Γεωργίου", "el", "Georgiou"),
    ("Smith", "ja", "Smith"), ("Иванов-Smith", "ru", "Ivanov-Smith"),
])
def test_romanization_golden(text: str, scheme: str, latin: str) -> None:
    assert romanize(text, scheme) == latin


def test_anyascii_stays_the_fallback() -> None:
    assert to_ascii(romanize(GEORGIAN, "any")) == to_ascii(GEORGIAN) == "jughashvili"
    assert to_ascii(romanize("محمد", "ja")) == "mhmd"  # a scheme leaves other scripts to anyascii


def test_full_names_of_family_first_scripts_keep_their_first_word() -> None:
    assert family_name_first("山田 Taro") == "山田" and surname_of_name("山田 Taro") == "山田"
    assert surname_of_name("김 민준") == "김" and surname_of_name("Taro Yamada") == "Yamada"
    assert family_name_first("Иван Петров") is None and surname_of_name("Иван Петров") == "Петров"


# ----------------------------------------------------------------------------- the mask and the rule

LABELS = ["Russian", "Japanese", "Chinese", "Italian", "Ukrainian"]


def fake_scores(texts: list[str]) -> np.ndarray:
    """Made-up probabilities by reading, so the combination can be checked to the digit."""
    table = {"Nakamura": [0.0, 0.9, 0.05, 0.05, 0.0], "Zhongcun": [0.1, 0.2, 0.3, 0.4, 0.0]}
    return np.array([table[t] for t in texts], dtype=np.float32)


def test_the_mask_zeroes_labels_that_do_not_write_the_script() -> None:
    evidence = ScriptEvidence(LABELS)
    proba = np.array([[0.25, 0.25, 0.25, 0.25, 0.0], [0.5, 0.1, 0.1, 0.1, 0.2], [0.3, 0.1, 0.1, 0.1, 0.4],
                      [0.1, 0.1, 0.1, 0.1, 0.6]], dtype=np.float32)
    found = evidence.apply(["中村", "Иванов", "Smith", "Олійник"], proba, fake_scores)
    # 中村: Japanese from its reading (0.9), Chinese from its own (0.3), the rest zero: 0.75 / 0.25
    assert found.proba[0] == pytest.approx([0.0, 0.75, 0.25, 0.0, 0.0])
    assert found.shown[0] == "Nakamura"
    # Иванов: Cyrillic, read by anyascii for both Cyrillic labels: 0.5 and 0.2 renormalised
    assert found.proba[1] == pytest.approx([0.5 / 0.7, 0.0, 0.0, 0.0, 0.2 / 0.7])
    assert found.proba[2].tolist() == proba[2].tolist()  # Latin: as the model gave it
    assert found.proba[3] == pytest.approx([0.0, 0.0, 0.0, 0.0, 1.0])  # і is not a Russian letter
    assert found.unwritten == []
    latin = np.array([[0.3, 0.7, 0.0, 0.0, 0.0]], dtype=np.float32)
    assert evidence.apply(["Ślusàrski"], latin, fake_scores).proba is latin  # not even a copy


def test_a_script_no_label_writes_leaves_no_candidate() -> None:
    found = ScriptEvidence(LABELS).apply([GEORGIAN, "כהן"], np.full((2, 5), 0.2, dtype=np.float32), fake_scores)
    assert found.unwritten == [0, 1] and not found.proba.any()


# ----------------------------------------------------------------------------- on a trained model


def test_georgian_is_unknown_with_reason_script(small_model: Path) -> None:
    from namesclf.cli.predict import _format_line
    from namesclf.inference.output import output_columns, output_row

    predictor = Predictor.load(small_model)  # Russian, Japanese, Italian: none writes Georgian
    pred, latin = predictor.predict([GEORGIAN, "Ivanov"], k=2)
    assert pred.answer == UNKNOWN and pred.reason == "script" and pred.languages == []
    assert pred.to_dict() == {"name": GEORGIAN, "ascii": "jughashvili", "predictions": [], "answer": UNKNOWN,
                              "reason": "script"}
    assert latin.reason is None and latin.answer == "Russian"
    assert _format_line(pred) == f"{GEORGIAN}  unknown (script: no language of this model writes Georgian)"
    options = Options(k=2, abstain=True)
    abstaining = predictor.predict_with([GEORGIAN], options)[0]  # under --abstain too, the reason is the script
    assert abstaining.answer == UNKNOWN and abstaining.reason == "script"
    row = dict(zip(output_columns(options, 3), output_row(abstaining, options, 3), strict=True))
    assert row["language"] == UNKNOWN and row["probability"] is None and row["answer"] == UNKNOWN


def test_table_and_estimator_say_unknown(small_model: Path) -> None:
    import pandas as pd

    from namesclf.estimator import load_model
    from namesclf.inference.tables import predict_frame

    out = predict_frame(pd.DataFrame({"name": [GEORGIAN, "中村", "Rossi"]}), "name", str(small_model), k=1)
    assert out["language"].tolist() == [UNKNOWN, "Japanese", "Italian"]
    assert np.isnan(out["probability"][0]) and out["probability"][1] == pytest.approx(1.0)
    assert load_model(str(small_model)).predict([GEORGIAN, "中村"]).tolist() == [UNKNOWN, "Japanese"]
    under_prior = load_model(str(small_model)).set_params(prior="uniform")
    assert under_prior.predict([GEORGIAN]).tolist() == [UNKNOWN]
    assert not under_prior.predict_proba([GEORGIAN]).any()


def test_latin_names_are_answered_exactly_as_before(small_model: Path) -> None:
    """Parity with the plain path (fold, score, top k): the script step leaves Latin names alone."""
    predictor = Predictor.load(small_model)
    names = ["Ivanov", "Ślusàrski", "O'Neill", "Yamada", "Rossi-Bianchi", "ŁUKASZ", "Müller"]
    proba = predictor.proba_ascii([to_ascii(n) for n in names])
    for pred, row in zip(predictor.predict(names, k=3, surname_only=True), proba, strict=True):
        order = np.argsort(-row, kind="stable")[:3]
        assert pred.languages == [(predictor.labels[j], float(row[j])) for j in order]
        assert pred.reason is None


def test_cli_subprocess_kanji_comes_out_japanese(small_model: Path) -> None:
    predictor = Predictor.load(small_model)
    before = predictor.proba_ascii([to_ascii("中村")])[0][predictor.labels.index("Japanese")]
    result = run_subprocess("predict", "中村", GEORGIAN, "--model", str(small_model), "--json", "-k", "2")
    assert result.returncode == 0, result.stderr
    kanji, georgian = json.loads(result.stdout)
    assert kanji["ascii"] == "Nakamura" and kanji["predictions"][0] == {"language": "Japanese", "probability": 1.0}
    assert kanji["predictions"][1]["probability"] == 0.0  # Russian and Italian do not write Han
    assert before < 0.99  # anyascii's ZhongCun was not that
    assert georgian["answer"] == UNKNOWN and georgian["reason"] == "script" and georgian["predictions"] == []
    text = run("predict", "中村", GEORGIAN, "--model", str(small_model))
    assert text.exit_code == 0 and "中村  Japanese 1.00" in text.output and "unknown (script:" in text.output


@pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient.")
def test_http_kanji_comes_out_japanese(small_model: Path) -> None:
    from fastapi.testclient import TestClient

    from namesclf.serve.app import create_app

    with TestClient(create_app(Predictor.load(small_model), model_path="m.pt")) as http:
        got = http.get("/predict", params={"name": "山田 Taro", "k": 1})
        assert got.status_code == 200, got.text
        assert got.json()["predictions"][0]["language"] == "Japanese" and got.json()["surname"] == "山田"
        posted = http.post("/predict", json={"names": ["中村", GEORGIAN], "k": 2})
        assert posted.status_code == 200, posted.text
        kanji, georgian = posted.json()
        assert kanji["predictions"][0]["language"] == "Japanese" and kanji["ascii"] == "Nakamura"
        assert georgian["answer"] == UNKNOWN and georgian["reason"] == "script"
        assert http.get("/predict", params={"name": GEORGIAN}).json()["reason"] == "script"


def test_the_benchmark_names_are_in_the_script_they_claim() -> None:
    from benchmarks.native_scripts import load

    rows = load()
    assert len(rows) >= 300 and all(row["source"] for row in rows)
    assert [row["name"] for row in rows if native_scripts(row["name"]) != {row["script"]}] == []


def test_native_scripts_benchmark_end_to_end(small_model: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "benchmarks.native_scripts", "--model", str(small_model), "--json"],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    table = json.loads(proc.stdout)
    # Russian, Japanese, Italian: Georgian and Hebrew have no writer, kanji have one (Japanese)
    assert table["Georgian"]["unknown_before"] == 0.0 and table["Georgian"]["unknown_after"] == 1.0
    assert table["Han (ja, not in table)"]["accuracy_after"] == 1.0 and table["Han"]["scored"] == 35
    assert table["all"]["wrong_unknown"] == 0.0
