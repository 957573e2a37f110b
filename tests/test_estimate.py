"""``names estimate`` and ``estimate_mix`` with the real model on the real split: EM beats counting
on a population whose mix is far from the training mix, and the command's outputs hold together."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from click.testing import CliRunner

from namesclf.cli import cli
from namesclf.data.dataset import load_names, split_names
from namesclf.inference.mix import estimate_mix
from namesclf.inference.predictor import Predictor


def skewed_population(real_data: Path, size: int = 3000, seed: int = 0) -> tuple[list[str], dict[str, float]]:
    """Test names drawn with replacement in a mix unlike the training one (Russian is half the
    training names; here it is a twentieth), and the true mix of what was drawn."""
    frame = load_names(real_data).frame
    test = frame[split_names(frame, seed=0) == "test"]
    want = {"Russian": 0.05, "English": 0.15, "Japanese": 0.2, "Italian": 0.2, "Polish": 0.2, "Greek": 0.2}
    rng = np.random.default_rng(seed)
    names, truth = [], {}
    for language, share in want.items():
        pool = test.loc[test["language"] == language, "name"].to_numpy()
        drawn = rng.choice(pool, int(size * share))
        names.extend(drawn)
        truth[language] = len(drawn) / size
    return names, truth


def test_em_estimates_a_skewed_population_better_than_counting(real_data: Path, trained_model: Path) -> None:
    predictor = Predictor.load(trained_model)
    names, truth = skewed_population(real_data)
    errors = {}
    for method in ("em", "cc", "mean"):
        est = estimate_mix(predictor, names, method=method, bootstrap=0, surname_only=True)
        share = dict(zip(est.labels, est.share, strict=True))
        errors[method] = sum(abs(share[label] - truth.get(label, 0.0)) for label in est.labels)
    assert errors["em"] < 0.5 * errors["cc"], errors
    assert errors["em"] < 0.5 * errors["mean"], errors


def test_the_command_prints_text_json_and_a_plot(trained_model: Path, tmp_path: Path) -> None:
    table = tmp_path / "people.csv"
    pd.DataFrame({"last": ["Ivanov", "Petrov", "Kowalski", "Nowak", "Tanaka", "", "123"],
                  "first": ["Ivan"] * 7}).to_csv(table, index=False)
    runner = CliRunner()
    common = ["estimate", "--model", str(trained_model), "--input", str(table), "--column", "last"]
    result = runner.invoke(cli, [*common, "--level", "region", "--json", "--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["n"] == 5 and out["skipped"] == 1 and out["method"] == "em"
    shares = {row["label"]: row for row in out["mix"]}
    assert abs(sum(row["share"] for row in out["mix"]) - 1) < 1e-9
    assert shares["Slavic"]["share"] > 0.5 and "East Asian" in shares
    assert all(row["low"] <= row["share"] <= row["high"] for row in out["mix"])

    plot = tmp_path / "mix.png"
    text = runner.invoke(cli, [*common, "--plot", str(plot)])
    assert text.exit_code == 0, text.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "share  95% interval" in text.output
    assert "5 names, method em, intervals: bootstrap+model; 1 with no letters left out" in text.output
    again = runner.invoke(cli, [*common, "--plot", str(plot)])
    assert again.exit_code == 1 and "--plot" in again.output and "--force" in again.output


def test_bad_input_is_one_line_from_a_real_process(trained_model: Path, tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "namesclf", "estimate", "--model", str(trained_model)],
                         capture_output=True, text=True)
    assert run.returncode == 1 and run.stderr.strip() == "Error: give names as arguments or --input FILE (not both)"
    table = tmp_path / "t.csv"
    table.write_text("last\nIvanov\n")
    run = subprocess.run([sys.executable, "-m", "namesclf", "estimate", "--model", str(trained_model), "--input",
                          str(table), "--column", "surname"], capture_output=True, text=True)
    assert run.returncode == 1 and run.stderr.startswith("Error: ") and len(run.stderr.strip().splitlines()) == 1
    assert "no column 'surname'" in run.stderr


def test_a_model_file_without_the_mix_calibration_still_works_and_says_so_in_one_line(
        small_model: Path, tmp_path: Path) -> None:
    """A model trained before the model error was measured: the bootstrap's intervals alone, a
    one-line note on stderr, and ``intervals`` in the JSON says which; the calibrated file's
    intervals hold the bootstrap's."""
    import torch

    from namesclf.inference.mix import CALIBRATION_KEY

    old = torch.load(small_model, weights_only=True)
    del old["meta"]["calibration"][CALIBRATION_KEY]
    path = tmp_path / "old.pt"
    torch.save(old, path)
    args = ["estimate", "Ivanov", "Petrov", "Tanaka", "Rossi", "Smith", "--json", "--seed", "2"]
    before = CliRunner().invoke(cli, [*args, "--model", str(path), "--backend", "torch"])
    assert before.exit_code == 0, before.output
    assert before.stderr.strip().splitlines() == [
        "note: this model file has no mix calibration; the intervals cover sampling error only (train the model "
        "again to include its own error)"]
    now = CliRunner().invoke(cli, [*args, "--model", str(small_model), "--backend", "torch"])
    assert now.exit_code == 0 and now.stderr == ""
    a, b = json.loads(before.stdout), json.loads(now.stdout)
    assert (a["intervals"], b["intervals"]) == ("bootstrap", "bootstrap+model")
    old_rows, new_rows = {r["label"]: r for r in a["mix"]}, {r["label"]: r for r in b["mix"]}
    for label, row in old_rows.items():
        assert new_rows[label]["share"] == row["share"]
        assert new_rows[label]["low"] <= row["low"] and new_rows[label]["high"] >= row["high"]
    quiet = CliRunner().invoke(cli, [*args, "--model", str(path), "--backend", "torch", "--quiet"])
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_the_experiment_reports_both_levels_and_both_kinds_of_interval(small_model: Path, capsys: Any) -> None:
    """``python -m experiments.mix`` end to end on the small model's own data, a few small mixes:
    the table docs/experiments.md quotes, with the model error's column since the file has it."""
    from experiments.mix import measure

    measure(str(small_model), str(small_model.parent / "names"), mixes=3, size=200, bootstrap=10, seed=0)
    out = capsys.readouterr().out
    assert "held bootstrap+model" in out and "label level" in out and "group level" in out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["em"], ["cc"], ["mean"])]
    assert len(rows) == 6 and all(len(row) == 7 for row in rows)
    for row in rows:
        held_alone, width_alone, held_both, width_both = map(float, row[3:])
        assert 0 <= held_alone <= held_both <= 1 and 0 <= width_alone <= width_both
