"""The `names` command through click's CliRunner and, once per kind of case, as a real subprocess."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from click.testing import CliRunner

from namesclf.cli.main import cli
from namesclf.models.checkpoint import load_checkpoint

from .conftest import REPO, TINY, write_names_dir


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


def run_subprocess(*args: str, input: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "namesclf", *args], capture_output=True, text=True,
                          input=input, timeout=timeout, cwd=REPO)


def assert_clean_error(result, message: str) -> None:
    """Exit 1, the message on one line, no traceback."""
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("Error")]) == 1


def bad_sources(tmp: Path) -> list[tuple[Path, str]]:
    empty_dir = tmp / "empty"
    empty_dir.mkdir()
    empty_file = tmp / "emptyfile"
    write_names_dir(empty_file, {"Greek": []})
    bad_utf8 = tmp / "badutf8"
    bad_utf8.mkdir()
    (bad_utf8 / "Czech.txt").write_bytes(b"Novak\nDvor\xe1k\n")
    return [(tmp / "nope", "no such file or folder"), (empty_dir, "no <Language>.txt files"),
            (empty_file, "Greek.txt: the file has no names"),
            (bad_utf8, "Czech.txt: line 2 is not valid UTF-8")]


def test_data_errors_are_one_line(tmp_path: Path) -> None:
    for source, message in bad_sources(tmp_path):
        assert_clean_error(run("data", "stats", str(source)), message)
        assert_clean_error(run("train", str(source), "--out", str(tmp_path / "m.pt")), message)


def test_data_errors_as_real_subprocess(tmp_path: Path) -> None:
    for source, message in bad_sources(tmp_path):
        proc = run_subprocess("data", "stats", str(source))
        assert proc.returncode == 1
        assert message in proc.stderr and "Traceback" not in proc.stderr
        assert proc.stderr.strip().count("\n") == 0  # one line


def test_data_stats_json_tiny(tiny_dir: Path) -> None:
    result = run("data", "stats", str(tiny_dir), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["languages"] == 3 and summary["lines"] == 36 and summary["distinct_pairs"] == 36
    assert sum(summary["splits"].values()) == 36


def test_data_stats_real(real_data: Path) -> None:
    result = run("data", "stats", str(real_data))
    assert result.exit_code == 0, result.output
    assert "18 languages, 20,075 lines, 18,016 distinct (name, language) pairs" in result.output


def test_data_fetch_from_folder_and_zip(real_data: Path, tmp_path: Path) -> None:
    result = run("data", "fetch", "--from", str(real_data), "--dest", str(tmp_path / "x"))
    assert result.exit_code == 0, result.output
    assert "verified and wrote 18 files" in result.output
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == sorted(p.name for p in real_data.glob("*.txt"))
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in real_data.glob("*.txt"):
            z.write(p, f"data/names/{p.name}")
    proc = run_subprocess("data", "fetch", "--from", str(archive), "--dest", str(tmp_path / "y"))
    assert proc.returncode == 0 and "wrote 18 files" in proc.stdout


def test_data_fetch_rejects_other_files(tmp_path: Path, tiny_dir: Path) -> None:
    assert_clean_error(run("data", "fetch", "--from", str(tiny_dir), "--dest", str(tmp_path / "x")), "of 18 files")
    assert not (tmp_path / "x").exists()
    result = run("data", "fetch", "--from", str(tiny_dir), "--dest", str(tmp_path / "x"), "--no-verify")
    assert result.exit_code == 0 and len(list((tmp_path / "x").glob("*.txt"))) == 3


def test_data_fetch_corrupted_file_is_refused(real_data: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    run("data", "fetch", "--from", str(real_data), "--dest", str(copy))
    (copy / "Greek.txt").write_text("Papadopoulos\n")
    assert_clean_error(run("data", "fetch", "--from", str(copy), "--dest", str(tmp_path / "z")),
                       "Greek.txt: checksum mismatch")


def test_data_fetch_offline_says_use_from(tmp_path: Path) -> None:
    result = run("data", "fetch", "--from", "http://127.0.0.1:9/data.zip", "--dest", str(tmp_path / "x"))
    assert_clean_error(result, "--from")


def test_train_then_predict_tiny(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    result = run("train", str(tiny_dir), "--out", str(out), "--epochs", "3", "--hidden", "16", "--quiet")
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output and f"wrote {out}" in result.output
    predicted = run("predict", "Ivanov", "Tanaka", "--model", str(out), "--json", "-k", "2")
    assert predicted.exit_code == 0, predicted.output
    rows = json.loads(predicted.output)
    assert [r["name"] for r in rows] == ["Ivanov", "Tanaka"]
    assert all(len(r["predictions"]) == 2 for r in rows)
    assert {p["language"] for r in rows for p in r["predictions"]} <= set(TINY)
    again = run("train", str(tiny_dir), "--out", str(out), "--epochs", "1", "--quiet")
    assert_clean_error(again, "exists: pass --force")


def test_train_json_summary_is_what_the_model_file_stores(tmp_path: Path) -> None:
    langs = {lang: list(names) for lang, names in TINY.items()}
    for lang in langs:  # names listed under every language, so the single-language figures differ
        langs[lang] += ["Abel", "Martin", "Lee", "Mann"]
    data = write_names_dir(tmp_path / "shared", langs)
    out = tmp_path / "m.pt"
    result = run("train", str(data), "--out", str(out), "--epochs", "2", "--hidden", "16", "--quiet", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    stored = load_checkpoint(out)["meta"]["test"]
    assert summary["n_test"] == stored["n"] > stored["n_single"] > 0
    for key in ("accuracy", "macro_f1", "balanced_accuracy", "accuracy_single", "macro_f1_single"):
        assert summary[f"test_{key}"] == stored[key] and 0.0 <= stored[key] <= 1.0, key


def test_train_resolves_the_defaults_by_the_training_set_size(tiny_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """The 36 tiny names become a "large corpus" when the threshold is lowered: the model file
    then stores the large-corpus defaults, and the per-model ones otherwise."""
    from namesclf import config

    monkeypatch.setitem(config.LARGE_CORPUS_DEFAULTS, "gru", {"hidden": 12, "epochs": 2})
    stored = {}
    for threshold in (10, 1000):
        monkeypatch.setattr(config, "LARGE_CORPUS", threshold)
        out = tmp_path / f"m{threshold}.pt"
        result = run("train", str(tiny_dir), "--out", str(out), "--quiet", "--no-export", "--epochs", "1")
        assert result.exit_code == 0, result.output
        stored[threshold] = load_checkpoint(out)["config"]
    assert (stored[10]["hidden"], stored[10]["epochs"]) == (12, 1)  # --epochs given, hidden from the size
    assert stored[1000]["hidden"] == config.MODEL_DEFAULTS["gru"]["hidden"]


def test_train_on_cuda_trains_there_or_says_there_is_none(tiny_dir: Path, tmp_path: Path) -> None:
    import torch

    out = tmp_path / "m.pt"
    result = run("train", str(tiny_dir), "--out", str(out), "--device", "cuda", "--epochs", "1", "--hidden", "8",
                 "--quiet", "--no-export")
    if torch.cuda.is_available():  # the device machine: the run goes through and records where it ran
        assert result.exit_code == 0, result.output
        assert load_checkpoint(out)["config"]["device"] == "cuda"
    else:
        assert_clean_error(result, "--device cuda was asked for, but no CUDA device is available (use --device cpu)")
        assert not out.exists()


def test_predict_errors(tmp_path: Path) -> None:
    assert_clean_error(run("predict", "Smith", "--model", str(tmp_path / "none.pt")), "no such model file")
    assert run("predict", "--model", str(tmp_path / "none.pt")).exit_code == 2  # usage error


def test_abstain_rate_0_is_a_one_line_error_before_the_model_is_read(tmp_path: Path) -> None:
    """An abstention rate is strictly between 0 and 1: ``--abstain-rate 0`` (or 1) is refused in one
    line naming the option, with or without ``--abstain``, before any model file is read, and is
    never quietly replaced by the default."""
    model = str(tmp_path / "none.pt")
    for args in (["--abstain-rate", "0"], ["--abstain", "--abstain-rate", "0"], ["--abstain-rate", "1"],
                 ["--abstain-rate", "-0.5"]):
        result = run("predict", "Smith", "--model", model, *args)
        assert_clean_error(result, f"Error: --abstain-rate: the abstention rate must be between 0 and 1 (e.g. 0.05), "
                                   f"not {float(args[-1])}")
    assert_clean_error(run("predict", "Smith", "--model", model, "--coverage", "0"),
                       "Error: --coverage: coverage must be between 0 and 1 (e.g. 0.9), not 0.0")


def test_help_teaches() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in ("data", "train", "predict"):
        assert command in result.output
    assert "names train data/names" in result.output
