"""benchmarks.fullnames: the NaNa and origins split files, the scorer, and the baselines end to end on
a small invented people corpus (the real one is `names data fetch wikipedia --full-names`)."""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks import fullnames
from benchmarks.fullnames import NOT_IN_NANA, ranked_from_scores, score_ranked, surname_key
from namesclf.data.surname_rules import is_reserved
from namesclf.data.wikipedia_people import PEOPLE_COLUMNS

from .conftest import REPO

#: (nationality, label, given-name syllables, surname endings)
NATIONS = [
    ("Italian", "Italian", ["Gian", "Luca", "Marco", "Paolo"], ["ini", "etti", "one", "ucci"]),
    ("Japanese", "Japanese", ["Haru", "Yuki", "Ken", "Aki"], ["mura", "moto", "kawa", "yama"]),
    ("Russian", "Russian", ["Ivan", "Pyotr", "Oleg", "Boris"], ["ov", "enko", "ovich", "in"]),
    ("American", "", ["John", "Mary", "Bill", "Sue"], ["son", "ton", "er", "ley"]),
    ("German", "German", ["Hans", "Jörg", "Uwe", "Karl"], ["mann", "berg", "stein", "hauer"]),
    ("Greek", "Greek", ["Nikos", "Eleni", "Yannis", "Maria"], ["opoulos", "akis", "idis", "ou"]),
    ("Pole", "", ["Jan", "Ewa"], ["ski"]),  # in the wheel, not in name2nat's table
]
STEMS = ["Ber", "Kor", "Tal", "Mis", "Dun", "Fel", "Gar", "Hol", "Lim", "Nor", "Pat", "Rud", "Sev", "Vol"]


def invented_people() -> pd.DataFrame:
    rows = []
    for nationality, label, givens, endings in NATIONS:
        size = 8 if nationality == "Pole" else None
        pairs = list(itertools.product(givens, STEMS, endings))
        for given, stem, ending in pairs[:size]:
            surname = stem + ending
            rows.append((f"{given} {surname}", given, surname, label, nationality))
    return pd.DataFrame(rows, columns=list(PEOPLE_COLUMNS))


def write_corpus(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "people.csv"
    frame.to_csv(path, index=False)
    return path


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_split_cuts_nana_as_name2nat_and_groups_origins_by_surname(tmp_path: Path) -> None:
    frame = invented_people()
    corpus = write_corpus(tmp_path, frame)
    summary = fullnames.make_splits(corpus, tmp_path / "splits", seeds=(0, 1))
    out = tmp_path / "splits"
    assert json.loads((out / "splits.json").read_text()) == summary
    kept = frame[~frame["surname"].map(is_reserved)]
    # a file not from the builder may hold reserved surnames: the split re-checks and counts them
    assert summary["reserved_rows_left_out"] == len(frame) - len(kept) > 0
    assert summary["nana"]["not_in_nana_left_out"] == {"Pole": int((kept["nationality"] == "Pole").sum())}
    nana = {name: read(out / "nana" / f"{name}.csv") for name in fullnames.SPLIT_NAMES}
    assert all(tuple(part.columns) == PEOPLE_COLUMNS for part in nana.values())
    for nationality, n in kept["nationality"].value_counts().items():
        if nationality in NOT_IN_NANA:
            assert all((part["nationality"] != nationality).all() for part in nana.values())
            continue
        sizes = [int((nana[name]["nationality"] == nationality).sum()) for name in fullnames.SPLIT_NAMES]
        assert sizes == [int(n * 0.8), int(n * 0.9) - int(n * 0.8), n - int(n * 0.9)], nationality
    together = pd.concat(nana.values())
    assert sorted(together["name"]) == sorted(kept[kept["nationality"] != "Pole"]["name"])
    assert not together["surname"].map(is_reserved).any()
    for seed in (0, 1):
        parts = {name: read(out / f"origins_seed{seed}" / f"{name}.csv") for name in fullnames.SPLIT_NAMES}
        keys = {name: set(part["surname"].map(surname_key)) for name, part in parts.items()}
        assert not keys["train"] & keys["test"] and not keys["train"] & keys["valid"]
        assert not keys["valid"] & keys["test"]
        assert all((part["language"] != "").all() for part in parts.values())
        assert sum(map(len, parts.values())) == int((kept["language"] != "").sum()) == summary["origins_rows"]
        assert min(map(len, parts.values())) > 0
    assert read(out / "origins_seed0" / "test.csv")["name"].tolist() != read(out / "origins_seed1" / "test.csv")[
        "name"].tolist()
    # deterministic, and not overwritten without --force
    with pytest.raises(fullnames.NamesError, match="--force"):
        fullnames.make_splits(corpus, out, seeds=(0, 1))
    again = fullnames.make_splits(corpus, out, seeds=(0, 1), force=True)
    assert again == summary and read(out / "nana" / "test.csv").equals(nana["test"])


def test_precision_at_k_and_accuracy_golden() -> None:
    classes = ["A", "B", "C", "D", "E", "F"]
    scores = np.array([[0.9, 0.1, 0.0, 0.0, 0.0, 0.0],    # truth A: rank 1
                       [0.1, 0.9, 0.5, 0.0, 0.0, 0.0],    # truth C: rank 2
                       [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],    # truth B: rank 5
                       [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]])   # truth F: rank 6
    ranked = ranked_from_scores(scores, classes)
    assert ranked.shape == (4, 5) and list(ranked[1]) == ["B", "C", "A", "D", "E"]
    truth = ["A", "C", "B", "F"]
    assert score_ranked(truth, ranked, "nana") == {"p@1": 25.0, "p@2": 50.0, "p@3": 50.0, "p@5": 75.0}
    origins = score_ranked(truth, ranked, "origins")
    assert origins["accuracy"] == 0.25 and origins["n"] == 4
    assert origins["balanced_accuracy"] == pytest.approx(0.25)  # recall 1, 0, 0, 0 over the 4 true labels
    assert score_ranked(["A", "A", "B"], np.array([["A"], ["B"], ["B"]]), "origins")["balanced_accuracy"] == 0.75


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchmarks.fullnames", *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO)


def test_baselines_and_score_end_to_end(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path, invented_people())
    splits, preds = tmp_path / "splits", tmp_path / "preds"
    assert run_module("split", "--corpus", str(corpus), "--out", str(splits), "--seeds", "0", "1").returncode == 0
    proc = run_module("baseline", "--splits", str(splits), "--task", "origins", "--seeds", "0", "1",
                      "--write-predictions", str(preds))
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [(r["seed"], r["features"]) for r in runs] == [(0, "full"), (0, "surname"), (1, "full"), (1, "surname")]
    assert all(r["accuracy"] > 0.5 for r in runs)  # chance: 1/5; the endings tell the labels apart
    table = [line for line in proc.stdout.splitlines() if line.startswith("| TF-IDF")]
    full = [r for r in runs if r["features"] == "full"]
    mean = (full[0]["accuracy"] + full[1]["accuracy"]) / 2
    assert table[0].startswith(f"| TF-IDF + LinearSVC, full | {mean:.4f} ± ")
    # score reads the baseline's own predictions back to the same figures
    scored = run_module("score", "--splits", str(splits), "--task", "origins", "--seeds", "0", "1", "--predictions",
                        str(preds / "origins_seed0_full.csv"), str(preds / "origins_seed1_full.csv"), "--label", "m")
    assert scored.returncode == 0, scored.stderr[-2000:]
    again = [json.loads(line) for line in scored.stdout.splitlines() if line.startswith("{")]
    assert [(a["accuracy"], a["balanced_accuracy"]) for a in again] == [(r["accuracy"], r["balanced_accuracy"])
                                                                        for r in full]
    assert any(line.startswith(f"| m | {mean:.4f} ± ") for line in scored.stdout.splitlines())
    nana = run_module("baseline", "--splits", str(splits), "--task", "nana", "--features", "full",
                      "--train-rows", "200", "--write-predictions", str(preds))
    assert nana.returncode == 0, nana.stderr[-2000:]
    result = json.loads(nana.stdout.splitlines()[0])
    assert result["train_rows"] == 200 and set(result) >= {"p@1", "p@2", "p@3", "p@5"}
    assert result["p@1"] <= result["p@2"] <= result["p@3"] <= result["p@5"]
    published = "| name2nat 0.5.1 as published (Flair bidirectional GRU, their split) | 55.1 | 69.6 | 77.9 | 86.8 |"
    assert published in nana.stdout
    scored = run_module("score", "--splits", str(splits), "--task", "nana", "--predictions",
                        str(preds / "nana_full.csv"))
    assert json.loads(scored.stdout.splitlines()[0])["p@5"] == result["p@5"]


def test_score_refuses_predictions_that_do_not_line_up(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path, invented_people())
    splits = tmp_path / "splits"
    fullnames.make_splits(corpus, splits, seeds=(0,))
    test = read(splits / "nana" / "test.csv")
    cases = {
        "short.csv": (pd.DataFrame({"label_1": test["nationality"][:-1]}), "one row per test row"),
        "nolabel.csv": (pd.DataFrame({"answer": test["nationality"]}), "expected the columns label_1"),
        "gap.csv": (pd.DataFrame({"label_1": test["nationality"], "label_3": test["nationality"]}),
                    "expected the columns label_1"),
        "order.csv": (pd.DataFrame({"name": test["name"][::-1].to_numpy(), "label_1": test["nationality"]}),
                      "row 2 is"),
    }
    for file, (frame, message) in cases.items():
        frame.to_csv(tmp_path / file, index=False, quoting=csv.QUOTE_MINIMAL)
        proc = run_module("score", "--splits", str(splits), "--task", "nana", "--predictions", str(tmp_path / file))
        assert proc.returncode == 1 and message in proc.stderr, (file, proc.stderr)
        assert proc.stderr.startswith("Error: ") and len(proc.stderr.strip().splitlines()) == 1
    perfect = pd.DataFrame({"name": test["name"], "label_1": test["nationality"]})
    perfect.to_csv(tmp_path / "perfect.csv", index=False)
    proc = run_module("score", "--splits", str(splits), "--task", "nana", "--predictions",
                      str(tmp_path / "perfect.csv"))
    assert proc.returncode == 0 and json.loads(proc.stdout.splitlines()[0])["p@1"] == 100.0
    proc = run_module("score", "--splits", str(splits), "--task", "origins", "--seeds", "0", "1", "--predictions",
                      str(tmp_path / "perfect.csv"))
    assert proc.returncode == 1 and "one per --seeds" in proc.stderr
