"""Bad input, interruption, determinism, and property tests. Nothing the user had is lost."""

import json
import os
import signal
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from namesclf import to_ascii
from namesclf.cli.main import cli
from namesclf.data.dataset import load_names
from namesclf.errors import NamesError
from namesclf.inference.predictor import Predictor
from namesclf.inference.torch_scorer import TorchScorer
from namesclf.models.checkpoint import load_checkpoint
from namesclf.models.networks import build_classifier
from namesclf.text import ALPHABET, MAX_NAME_LENGTH

from .conftest import MORE, REPO, Watched, network_config, write_names_dir

ALLOWED = set(ALPHABET)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(scope="module")
def small_predictor() -> Predictor:
    torch.manual_seed(0)
    model = build_classifier(network_config(hidden=8), 3)
    return Predictor(model, ["Greek", "Italian", "Russian"])


# ----------------------------------------------------------------------------- text properties


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_to_ascii_never_raises_and_stays_in_alphabet(text: str) -> None:
    folded = to_ascii(text)
    assert set(folded) <= ALLOWED
    assert folded == folded.strip() and "  " not in folded


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=1, max_size=120))
def test_prediction_never_raises_on_a_foldable_name(small_predictor: Predictor, text: str) -> None:
    if not to_ascii(text):
        with pytest.raises(NamesError):
            small_predictor.top_k([text])
        return
    [pred] = small_predictor.top_k([text], k=2)
    reading = small_predictor.scripts.read(pred.surname or text)
    assert (pred.reason == "script") == (reading is not None and not reading.candidates.any())
    if pred.reason == "script":  # a script Greek, Italian and Russian do not write: unknown, no languages
        assert pred.languages == [] and pred.answer == "unknown"
        return
    assert len(pred.languages) == 2 and 0.0 <= pred.languages[0][1] <= 1.0


# ----------------------------------------------------------------------------- names at prediction


@pytest.mark.parametrize("name", ["", "   ", "\u200d\u200d", "😀", "123"])
def test_names_with_no_letters_are_a_clear_error(small_predictor: Predictor, name: str) -> None:
    with pytest.raises(NamesError, match="no letters"):
        small_predictor.top_k([name])


@pytest.mark.parametrize("name", ["Smith\u200dJones", "Иван Smith", "Иванов", "Παπαδόπουλος", "Nguyễn Văn"])
def test_odd_scripts_get_an_answer(small_predictor: Predictor, name: str) -> None:
    [pred] = small_predictor.top_k([name])
    assert pred.ascii and set(pred.ascii) <= ALLOWED and len(pred.languages) == 3


@pytest.mark.parametrize("name", ["محمد", "שרון", "ﾅｶﾑﾗ"])
def test_scripts_no_language_writes_are_unknown(small_predictor: Predictor, name: str) -> None:
    """Greek, Italian and Russian write no Arabic, Hebrew or katakana: ``unknown``, reason ``script``."""
    [pred] = small_predictor.top_k([name])
    assert pred.ascii and set(pred.ascii) <= ALLOWED
    assert pred.languages == [] and pred.answer == "unknown" and pred.reason == "script"


def test_very_long_name_is_capped_and_fast(small_predictor: Predictor) -> None:
    name = "Papadopoulos" * 8_400  # ~100,000 characters
    steps: list[int] = []  # what the time rests on: the network reads at most MAX_NAME_LENGTH letters
    hook = small_predictor.model.register_forward_pre_hook(lambda _, args: steps.append(args[0].shape[0]))
    try:
        [pred] = small_predictor.top_k([name])
        assert len(pred.languages) == 3
        assert small_predictor.proba_ascii([to_ascii(name)]).shape == (1, 3)
    finally:
        hook.remove()
    assert steps and max(steps) == MAX_NAME_LENGTH, steps
    assert len(pred.ascii) > MAX_NAME_LENGTH  # folding keeps it; encoding caps it


# ----------------------------------------------------------------------------- data edge cases


def test_big_single_line_file_and_only_one_language(tmp_path: Path) -> None:
    big = write_names_dir(tmp_path / "big", {"Greek": ["Papadopoulos"], "Italian": ["Rossi"]})
    (big / "Greek.txt").write_text("A" * 1_000_000 + "\nPapadopoulos\n")
    frame = load_names(big).frame
    assert len(frame) == 3
    one = write_names_dir(tmp_path / "one", {"Greek": ["Papadopoulos", "Georgiou", "Nikolaidis"]})
    result = invoke("train", str(one), "--out", str(tmp_path / "m.pt"), "--quiet")
    assert result.exit_code == 1 and "one language" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m.pt").exists()


def test_names_that_fold_to_nothing_are_dropped_and_counted(tmp_path: Path) -> None:
    folder = write_names_dir(tmp_path / "d", {"Greek": ["Papadopoulos", "Georgiou", "😀", "123"],
                                               "Italian": ["Rossi", "Russo", "Bianchi"]})
    result = invoke("train", str(folder), "--out", str(tmp_path / "m.pt"), "--epochs", "1", "--hidden", "8")
    assert result.exit_code == 0, result.output
    assert "dropped 2 names with no letters" in result.output


# ----------------------------------------------------------------------------- overwrite, resume, SIGINT


def test_out_needs_force_and_force_replaces(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    out.write_bytes(b"my precious model")
    result = invoke("train", str(tiny_dir), "--out", str(out), "--epochs", "1", "--hidden", "8", "--quiet")
    assert result.exit_code == 1 and "--force" in result.output
    assert out.read_bytes() == b"my precious model"
    result = invoke("train", str(tiny_dir), "--out", str(out), "--epochs", "1", "--hidden", "8", "--quiet", "--force")
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out, kind="classifier")["labels"] == ["Italian", "Japanese", "Russian"]


def test_resume_continues_from_the_saved_epoch(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    base = ["train", str(tiny_dir), "--out", str(out), "--hidden", "8", "--patience", "0", "--quiet"]
    assert invoke(*base, "--epochs", "2").exit_code == 0
    assert len(load_checkpoint(out)["meta"]["history"]) == 2
    result = invoke(*base, "--epochs", "5", "--resume", "--json")
    assert result.exit_code == 0, result.output
    history = load_checkpoint(out)["meta"]["history"]
    assert [int(h["epoch"]) for h in history] == [1, 2, 3, 4, 5]
    assert json.loads(result.output)["epochs_run"] == 5


def test_same_seed_same_model(tiny_dir: Path, tmp_path: Path) -> None:
    metrics = []
    for name in ("a.pt", "b.pt"):
        out = tmp_path / name
        invoke("train", str(tiny_dir), "--out", str(out), "--epochs", "3", "--hidden", "16", "--seed", "7", "-q")
        payload = load_checkpoint(out)
        metrics.append((payload["meta"]["test"], payload["state_dict"]))
    (test_a, state_a), (test_b, state_b) = metrics
    for key in ("accuracy", "macro_f1"):
        assert abs(test_a[key] - test_b[key]) <= 1e-9
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


#: Epoch lines reach the pipe as they are printed, not when the child exits.
UNBUFFERED = {**os.environ, "PYTHONUNBUFFERED": "1"}
#: A deadline against a hang, never a wait before acting: generous for a loaded machine.
DEADLINE_S = 240


def test_sigint_mid_training_leaves_a_loadable_best_checkpoint(tmp_path: Path) -> None:
    data = write_names_dir(tmp_path / "names", MORE)
    out = tmp_path / "model" / "m.pt"
    # epochs of a few milliseconds, and more of them than can pass before the signal arrives
    with Watched([sys.executable, "-m", "namesclf", "train", str(data), "--out", str(out), "--model", "gru",
                  "--hidden", "16", "--epochs", "1000000", "--patience", "0"], cwd=REPO, env=UNBUFFERED) as run:
        # the first epoch line is printed after that epoch is saved: a later epoch is now under way
        run.wait_for("stdout", r"^epoch +1 ", DEADLINE_S)
        assert out.exists()
        run.proc.send_signal(signal.SIGINT)
        code = run.finish(60)
    stderr = run.text("stderr")
    assert code == 1, (run.text("stdout"), stderr)
    assert "interrupted after epoch" in stderr and "--resume" in stderr and "Traceback" not in stderr
    payload = load_checkpoint(out, kind="classifier")
    assert payload["meta"]["best_epoch"] >= 1
    assert Predictor(TorchScorer.from_payload(payload)).top_k(["Dostoevsky"])[0].languages
    assert [p.name for p in out.parent.iterdir()] == ["m.pt"]  # no temp files left


@pytest.mark.slow
def test_sigint_before_first_epoch_keeps_the_previous_model(real_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    out.write_bytes(b"previous model bytes")
    with Watched([sys.executable, "-m", "namesclf", "train", str(real_data), "--out", str(out), "--force",
                  "--hidden", "512", "--epochs", "3"], cwd=REPO, env=UNBUFFERED) as run:
        # printed as the first epoch starts (imports, data and the n-gram half done); an epoch of
        # 512 units on the real names is far longer than the signal takes to arrive
        run.wait_for("stdout", r": training epochs 1-3,", DEADLINE_S)
        run.proc.send_signal(signal.SIGINT)
        code = run.finish(60)
    stderr = run.text("stderr")
    assert code == 1 and "Traceback" not in stderr, stderr
    assert "interrupted before the first epoch ended; nothing was written" in stderr, stderr
    assert out.read_bytes() == b"previous model bytes"


def test_sizes_below_one_are_refused_with_the_option_name() -> None:
    from namesclf.config import LMConfig, TrainConfig
    from namesclf.errors import NamesError

    with pytest.raises(NamesError, match=r"^--hidden must be at least 1$"):
        TrainConfig(hidden=0).resolved()
    with pytest.raises(NamesError, match=r"^--batch-size must be at least 1$"):
        TrainConfig(model="handbuilt", batch_size=0).resolved()
    with pytest.raises(NamesError, match=r"^--embed must be at least 1$"):
        LMConfig(embed=0).resolved()
    with pytest.raises(NamesError, match=r"^--batch-size must be at least 1$"):
        LMConfig(batch_size=0).resolved()


def test_patience_defaults_per_model_and_refuses_negative() -> None:
    from namesclf.config import TrainConfig
    from namesclf.errors import NamesError

    assert TrainConfig(model="handbuilt").resolved().patience == 10
    assert TrainConfig(model="gru").resolved().patience == 5
    assert TrainConfig(model="handbuilt", patience=0).resolved().patience == 0  # an explicit 0 is kept
    with pytest.raises(NamesError, match=r"^--patience must be 0 \(never stop early\) or more$"):
        TrainConfig(patience=-1).resolved()


def test_a_large_training_set_takes_the_large_corpus_defaults() -> None:
    from namesclf.config import LARGE_CORPUS, LARGE_CORPUS_DEFAULTS, MODEL_DEFAULTS, TrainConfig

    for kind in ("handbuilt", "gru"):
        small = TrainConfig(model=kind).resolved(n_train=LARGE_CORPUS - 1)
        large = TrainConfig(model=kind).resolved(n_train=LARGE_CORPUS)
        assert small == TrainConfig(model=kind).resolved()  # an unknown size is a small corpus
        for name, value in MODEL_DEFAULTS[kind].items():
            assert getattr(small, name) == value, (kind, name)
            assert getattr(large, name) == LARGE_CORPUS_DEFAULTS[kind].get(name, value), (kind, name)
        assert large != small
        assert large.resolved(n_train=1) == large  # resolving again keeps what the size chose
    explicit = TrainConfig(hidden=32, epochs=3).resolved(n_train=10 * LARGE_CORPUS)  # the user's word wins
    assert (explicit.hidden, explicit.epochs) == (32, 3)
