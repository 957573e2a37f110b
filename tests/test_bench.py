"""CI smoke test of :mod:`benchmarks.bench`: it runs end to end and its JSON keeps its shape.

A benchmark that only runs by hand rots: a renamed config field or a changed training API
breaks it silently until the day the numbers are needed. So CI runs it with ``--smoke`` (a few
tutorial steps, one epoch per model, one repeat) on a made-up 4-language data set, as a
subprocess exactly as a person would, and checks every row and every key docs/benchmarks.md promises.
The other benchmarks and experiments run the same way, or through their ``main`` in this process.
The 4-gram model's smoothing is also checked directly: probabilities that do not sum to one
would make its nats per character meaningless.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from benchmarks import bench, load, peers, seeds, speed
from experiments import crosscorpus, realnames, scale_predict, scale_train
from namesclf.config import CLASSIFIER_KINDS, LMConfig, TrainConfig

from .conftest import REPO, invented_names, write_names_dir

ROW_KEYS = ("name", "accuracy", "macro_f1", "accuracy_single", "macro_f1_single", "train_seconds", "train_names_per_s",
            "predict_names_per_s")
HEADER_KEYS = ("cpu", "cores", "torch", "torch_threads", "date", "command", "mode", "split", "wall_seconds")

#: Syllables that give each made-up language a recognisable spelling.
SYLLABLES = {
    "Russian": (["vo", "ko", "pe", "sa", "mi", "ra"], ["rov", "nov", "kin", "vich", "sky"]),
    "Japanese": (["ta", "ka", "mo", "shi", "na", "yu"], ["mura", "moto", "kawa", "da", "no"]),
    "Italian": (["ro", "bi", "fe", "lu", "ca", "ma"], ["ini", "etti", "one", "ari", "ucci"]),
    "Dutch": (["van", "de", "hoo", "kl", "ber", "jan"], ["sen", "dijk", "hof", "man", "stra"]),
}


def made_up_names(n: int = 30, seed: int = 0) -> dict[str, list[str]]:
    """``n`` distinct invented surnames per language (deterministic)."""
    return invented_names(SYLLABLES, n, seed, max_stems=2)


def run_module(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` from the repository root, as the docs tell a person to run it."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


def expected_rows() -> set[str]:
    kinds = {k for k in CLASSIFIER_KINDS if k not in ("handbuilt", TrainConfig().model)}
    lm_rows = {"charlm"} | ({"charlm-gru"} if LMConfig().cell != "gru" else set())
    return {"tutorial", "handbuilt", "handbuilt-pooled", "default", "char-ngram-linear", "lm-4gram"} | kinds | lm_rows


def test_bench_smoke(tmp_path: Path) -> None:
    data = write_names_dir(tmp_path / "names", made_up_names())
    out = tmp_path / "bench.json"
    proc = run_module("benchmarks.bench", "--smoke", "--data", str(data), "--out", str(out), "--threads", "1",
                      timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())
    header = report["header"]
    for key in HEADER_KEYS:
        assert key in header, key
    assert header["torch_threads"] == 1 and header["mode"] == "smoke" and header["repeats"] == 1
    assert header["command"].split()[1:4] == ["-m", "benchmarks.bench", "--smoke"]  # runnable as written
    assert header["split"]["test"] > 0

    rows = {row["key"]: row for row in report["rows"]}
    assert set(rows) == expected_rows()
    assert rows["default"]["name"] == f"default ({TrainConfig().model} + {TrainConfig().resolved().ngram_order}-gram)"
    for key, row in rows.items():
        for field in ROW_KEYS:
            assert field in row, (key, field)
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["macro_f1"] <= 1.0, key
        assert 0.0 <= row["accuracy_single"] <= 1.0 and 0.0 <= row["macro_f1_single"] <= 1.0, key
        assert row["train_seconds"] > 0 and row["train_names_per_s"] > 0, key
        assert row["predict_names_per_s"] > 0 and row["predict_names"] >= header["split"]["test"], key
        assert len(row["runs"]) == 1, key
    for key in ("lm-4gram", "charlm", "charlm-gru"):
        if key in rows:
            nats = rows[key]["nats_per_char"]
            assert nats is not None and 0 < nats < 10, (key, nats)
    assert "nats_per_char" not in rows["default"]
    assert rows["tutorial"]["steps"] == 200
    assert "fidelity_error" not in rows["charlm"]
    assert 0.0 <= rows["charlm"]["fidelity_in_language"] <= 1.0

    statuses = {t["target"]: t["status"] for t in report["targets"]}
    assert len(statuses) == 4 and set(statuses.values()) <= {"PASS", "FAIL"}
    assert "PASS" in proc.stdout or "FAIL" in proc.stdout
    assert "tutorial" in proc.stdout and f"wrote {out}" in proc.stdout


LAB_MODULES = (bench, load, speed, seeds, peers, realnames, crosscorpus, scale_train, scale_predict)


@pytest.mark.parametrize("module", LAB_MODULES, ids=lambda m: m.__name__)
def test_every_lab_module_answers_help(module: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    """Each benchmark and experiment builds its command line, and its usage line says how to run it;
    the ones without an end-to-end test would otherwise rot unseen (their imports are checked above)."""
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m {module.__name__} ")


def test_the_package_never_imports_the_lab() -> None:
    """benchmarks/ and experiments/ are not installed: an import of them from namesclf would work in
    a checkout and fail for every user of the package."""
    lab = {"benchmarks", "experiments"}
    offenders = []
    for path in (REPO / "namesclf").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [(path.name, n) for n in names if n.split(".")[0] in lab]
    assert not offenders


def test_unknown_row_is_refused() -> None:
    with pytest.raises(SystemExit, match="unknown row 'nope'"):
        bench.select_rows("tutorial,nope")
    assert [r.key for r in bench.select_rows(f"{TrainConfig().model},tutorial")] == ["tutorial", "default"]


def test_peers_adapter_keeps_the_pipelines_answers(tmp_path: Path) -> None:
    """``evaluate`` scores the argmax of ``proba_ascii``: it must be the pipeline's own prediction."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    names = made_up_names(20)
    x = [n for lang in sorted(names) for n in names[lang]]
    y = [lang for lang in sorted(names) for _ in names[lang]]
    pipe = make_pipeline(TfidfVectorizer(analyzer="char", ngram_range=(1, 4)), LinearSVC()).fit(x, y)
    predictor = peers.PipelinePredictor(pipe)
    queries = [n for lang in names for n in made_up_names(5, seed=1)[lang]]
    proba = predictor.proba_ascii(queries)
    assert proba.shape == (len(queries), len(SYLLABLES))
    assert [predictor.labels[i] for i in proba.argmax(1)] == list(pipe.predict(queries))
    assert abs(proba.sum(1) - 1).max() < 1e-9


def test_peers_script_prints_every_yardstick(tmp_path: Path) -> None:
    names = made_up_names()
    for lang in ("Italian", "Dutch"):  # names listed under two languages, so the yardsticks differ
        names[lang] = names[lang] + names["Russian"][:10]
    data = write_names_dir(tmp_path / "names", names)
    proc = run_module("benchmarks.peers", str(data), "--seeds", "0", "1", "--analyzer", "char_wb")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert [line.split()[:3] for line in lines] == [["seed", "0", "char_wb"], ["seed", "1", "char_wb"],
                                                    ["mean", "of", "2"]]
    for line in lines:
        words = line.split()
        figures = {k: float(words[words.index(k) + 1]) for k in ("accuracy", "macro_f1", "accuracy_single",
                                                                   "macro_f1_single", "accuracy_any")}
        assert all(0.0 <= v <= 1.0 for v in figures.values()), line
        assert figures["accuracy"] <= figures["accuracy_any"], line


def test_seeds_script_means_the_per_seed_figures(tmp_path: Path) -> None:
    data = write_names_dir(tmp_path / "names", made_up_names())
    proc = run_module("benchmarks.seeds", str(data), "--seeds", "0", "1", "--", "--epochs", "2", "--hidden", "16")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    per_seed = [line for line in lines if line.startswith("seed ")]
    assert [line.split(":")[0] for line in per_seed] == ["seed 0", "seed 1"]
    summary = {line.split(":")[0].strip(): line for line in lines if ": mean " in line}
    for key, word in (("test_accuracy", "accuracy"), ("test_ece", "ECE")):
        values = [float(line.split(f"{word} ")[1].split()[0].rstrip(",")) for line in per_seed]
        mean = float(summary[key].split("mean ")[1].split()[0])
        assert mean == pytest.approx(sum(values) / 2, abs=1e-4), key
    assert all("temperature" in line and "log-loss" in line for line in per_seed)
