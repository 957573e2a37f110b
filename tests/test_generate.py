"""Sampling: distinct names, known-name exclusion, prefixes, bounded attempts, the CLI, fidelity."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from namesclf.cli.main import cli
from namesclf.config import LMConfig
from namesclf.errors import NamesError
from namesclf.lm import generate
from namesclf.lm.generate import complete, fidelity, generate_names, load_lm
from namesclf.lm.model import LanguageModel
from namesclf.lm.train import train_lm

from .conftest import TINY

# The three languages of conftest's TINY set, as files this module's fixture writes once.
NAMES = TINY


@pytest.fixture(scope="module")
def names_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small language-conditioned LM on the three tiny languages (seconds to train)."""
    folder = tmp_path_factory.mktemp("names")
    for lang, names in NAMES.items():
        (folder / f"{lang}.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    out = tmp_path_factory.mktemp("lm") / "lm.pt"
    config = LMConfig(hidden=32, embed=16, epochs=15, patience=0, dropout=0.0, batch_size=8, device="cpu")
    train_lm(folder, config, out=out, progress=False)
    return out


@pytest.fixture
def lm(names_lm: Path) -> LanguageModel:
    return load_lm(names_lm)


def test_generated_names_are_distinct_and_reproducible(lm: LanguageModel) -> None:
    result = generate_names(lm, "Russian", n=15, seed=1, allow_known=True, temperature=1.0)
    keys = [name.lower() for name in result.names]
    assert len(keys) == len(set(keys)) and len(result.names) <= 15
    assert all(result.names)
    again = generate_names(lm, "Russian", n=15, seed=1, allow_known=True, temperature=1.0)
    assert again.names == result.names


def test_known_names_are_excluded_and_counted(lm: LanguageModel) -> None:
    drawn = generate_names(lm, "Japanese", n=8, seed=0, allow_known=True)
    # Pretend three of the names it draws were in the training data: the same draw must skip them.
    pretend = replace(lm, known=[*lm.known, *(name.upper() for name in drawn.names[:3])])
    fresh = generate_names(pretend, "Japanese", n=5, seed=0)
    assert fresh.skipped_known >= 3
    assert not any(name.lower() in pretend.known_keys for name in fresh.names)
    assert fresh.names == [name for name in drawn.names if name.lower() not in pretend.known_keys][:5]


def test_start_prefix_is_respected(lm: LanguageModel) -> None:
    result = generate_names(lm, "Italian", n=5, start="Ma", seed=0, allow_known=True, temperature=1.0)
    assert result.names and all(name.startswith("Ma") for name in result.names)


def test_attempts_are_bounded_when_new_names_run_out(lm: LanguageModel, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[int] = []  # what the time rests on: the model is asked for at most max_attempts samples
    sample_tokens = generate.sample_tokens
    monkeypatch.setattr(generate, "sample_tokens",
                        lambda lm, prefix, count, *args, **kwargs: drawn.append(count)
                        or sample_tokens(lm, prefix, count, *args, **kwargs))
    result = generate_names(lm, "Russian", n=5000, seed=0, max_attempts=300)
    assert result.exhausted and result.attempts <= 300 and len(result.names) < 5000
    assert drawn and sum(drawn) == result.attempts, drawn


def test_unknown_language_lists_the_known_ones(lm: LanguageModel) -> None:
    with pytest.raises(NamesError, match=r"unknown language 'Klingon'.*Italian, Japanese, Russian"):
        generate_names(lm, "Klingon")
    assert generate_names(lm, "rUSSIAN", n=1, seed=0, allow_known=True).language == "Russian"
    with pytest.raises(NamesError, match="conditioned on a language"):
        generate_names(lm, None)


def test_bad_arguments_are_names_errors(lm: LanguageModel) -> None:
    for kwargs in ({"n": 0}, {"temperature": 0.0}, {"top_k": 0}):
        with pytest.raises(NamesError):
            generate_names(lm, "Russian", **kwargs)


def test_top_k_one_is_greedy_and_gives_one_name(lm: LanguageModel) -> None:
    result = generate_names(lm, "Italian", n=3, top_k=1, seed=0, allow_known=True, max_attempts=200)
    assert len(result.names) == 1 and result.exhausted


def test_complete_a_name_in_a_language(lm: LanguageModel) -> None:
    text = complete(lm, "Yama", language="Japanese", length=3)
    assert text.startswith("Yama") and len(text) <= 4 + 3
    drawn = complete(lm, "Yama", language="Japanese", temperature=1.0, seed=3)
    assert drawn == complete(lm, "Yama", language="Japanese", temperature=1.0, seed=3)
    with pytest.raises(NamesError, match="conditioned on a language"):
        complete(lm, "Yama")


# ----------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def reciting_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An unconditioned LM that learnt twelve names (a text file under 20 lines: train = valid) by heart."""
    folder = tmp_path_factory.mktemp("recite")
    source = folder / "russian.txt"
    source.write_text("\n".join(NAMES["Russian"]) + "\n", encoding="utf-8")
    out = folder / "lm.pt"
    train_lm(source, LMConfig(epochs=60, patience=0, dropout=0.0, batch_size=4, device="cpu"), out=out,
             progress=False)
    return out


def test_cli_generate_prints_one_name_a_line_and_reports_skips(reciting_lm: Path) -> None:
    runner = CliRunner()
    args = ["generate", "-n", "5", "--seed", "0", "--model", str(reciting_lm), "--temperature", "0.5"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    printed = result.stdout.strip().splitlines()
    assert printed and len(printed) == len(set(printed)) <= 5
    assert not {name.lower() for name in printed} & {name.lower() for name in NAMES["Russian"]}
    assert "already in the training data" in result.stderr  # a reciting model mostly draws known names
    assert "Traceback" not in result.output
    as_json = runner.invoke(cli, [*args, "--json"])
    payload = json.loads(as_json.stdout)
    assert payload["names"] == printed and payload["skipped_known"] > 0
    known = runner.invoke(cli, [*args, "--allow-known"])
    assert {name.lower() for name in known.stdout.split()} & {name.lower() for name in NAMES["Russian"]}


def test_cli_generate_says_when_it_runs_out_of_new_names(reciting_lm: Path) -> None:
    result = CliRunner().invoke(cli, ["generate", "-n", "200", "--seed", "0", "--model", str(reciting_lm),
                                      "--temperature", "0.3"])
    assert result.exit_code == 0 and "found only" in result.stderr


def test_cli_generate_unknown_language_is_one_line_error(names_lm: Path) -> None:
    result = CliRunner().invoke(cli, ["generate", "Klingon", "--model", str(names_lm)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: unknown language 'Klingon': this model knows Italian, Japanese, Russian"]


def test_cli_generate_uses_names_lm_env(names_lm: Path) -> None:
    result = CliRunner().invoke(cli, ["generate", "Italian", "-n", "2", "--seed", "0"],
                                env={"NAMES_LM": str(names_lm)})
    assert result.exit_code == 0, result.output


# ----------------------------------------------------------------------------- fidelity (real data)


@pytest.mark.slow
def test_generated_names_read_as_their_language_and_are_new(real_data: Path, trained_model: Path,
                                                            tmp_path: Path) -> None:
    from namesclf.inference.predictor import Predictor

    out = tmp_path / "lm.pt"
    # Six epochs (~50 s) instead of the default twenty; balanced sampling lets the rare languages
    # (79 Arabic training names) catch up in that time. The full default model scores 0.82 / 0.88.
    config = LMConfig(epochs=6, patience=0, balance=0.5, device="cpu")
    train_lm(real_data, config, out=out, progress=False)
    report = fidelity(load_lm(out), Predictor.load(str(trained_model)),
                      ["Russian", "Japanese", "Italian", "Greek", "Arabic"], n=100, seed=0)
    assert report["mean"]["in_language"] >= 0.75, report
    assert report["mean"]["new"] >= 0.8, report


# ----------------------------------------------------------------------------- guidance


def test_guidance_zero_is_the_model_and_impossible_tokens_stay_impossible() -> None:
    from namesclf.lm.generate import _guide

    cond = torch.tensor([[float("-inf"), 2.0, 1.0, 0.0]])
    uncond = torch.tensor([[float("-inf"), 1.0, 1.0, 1.0]])
    both = torch.cat((cond, uncond))
    plain = _guide(both, 1, 0.0)
    assert torch.allclose(plain[0, 1:], torch.log_softmax(cond, -1)[0, 1:])
    guided = _guide(both, 1, 1.0)
    assert torch.isneginf(guided[0, 0]) and not torch.isnan(guided).any()
    probs = torch.softmax(guided, -1)[0]
    assert probs[1] > torch.softmax(cond, -1)[0, 1]  # what the language favours gets more
    assert probs[3] < torch.softmax(cond, -1)[0, 3]  # what it disfavours gets less


def test_generation_with_and_without_guidance(lm: LanguageModel) -> None:
    for guidance in (0.0, 2.0):
        result = generate_names(lm, "Italian", n=5, seed=0, allow_known=True, guidance=guidance)
        assert len(result.names) == 5
    with pytest.raises(NamesError, match="guidance"):
        generate_names(lm, "Italian", guidance=-1.0)
