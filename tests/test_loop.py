"""The one training loop: best state kept and restored, early stopping, Ctrl-C, and the batching
every model shares. Both the classifier and the language model run through these."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from namesclf.config import LMConfig
from namesclf.errors import TrainingInterrupted
from namesclf.files import refuse_overwrite
from namesclf.models.checkpoint import load_checkpoint
from namesclf.training.batches import EncodedSplit, length_bucketed_batches
from namesclf.training.loop import LoopSettings, fit, make_updater
from namesclf.training.pipeline import resume_config

# A scripted run: the validation score of each epoch, and the epoch (if any) whose training is cut by Ctrl-C.
SCORES = [0.2, 0.5, 0.4, 0.7, 0.6, 0.65]


def scripted_fit(scores: list[float], interrupt_at: int | None = None, patience: int = 0, on_best=None):
    """Train a one-weight model whose weight records the epoch, with validation scores from ``scores``."""
    model = nn.Linear(1, 1, bias=False)
    epoch_seen = {"n": 0}

    def batches(epoch: int):
        epoch_seen["n"] = epoch
        if epoch == interrupt_at:
            raise KeyboardInterrupt
        yield torch.ones(1, 1)

    def loss_fn(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return (m(x) * 0).sum()

    def validate(m: nn.Module) -> dict[str, float]:
        with torch.no_grad():
            m.weight.fill_(epoch_seen["n"])  # the state *is* the epoch: restoring is visible
        return {"score": scores[epoch_seen["n"] - 1]}

    settings = LoopSettings(epochs=len(scores), steps_per_epoch=1, lr=0.1, score="score", higher_is_better=True,
                            patience=patience)
    result = fit(model, make_updater("sgd", model.parameters(), 0.1), batches, loss_fn, validate, settings,
                 on_best=on_best, progress=False)
    return result, model


def test_the_best_epoch_is_restored_and_every_epoch_is_in_the_history() -> None:
    saved = []
    result, model = scripted_fit(SCORES, on_best=lambda epoch, metrics, hist: saved.append(epoch))
    assert result.best_epoch == 4 and result.best_score == 0.7
    assert [int(h["epoch"]) for h in result.history] == [1, 2, 3, 4, 5, 6]
    assert saved == [1, 2, 4]  # on_best at each new best only
    assert model.weight.item() == 4.0  # the kept state is epoch 4's, not the last epoch's
    assert result.best["score"] == 0.7 and not result.interrupted


def test_patience_stops_early() -> None:
    result, _ = scripted_fit(SCORES, patience=1)
    assert result.stopped_early and [int(h["epoch"]) for h in result.history] == [1, 2, 3]


def test_ctrl_c_keeps_the_best_epoch_and_the_history() -> None:
    result, model = scripted_fit(SCORES, interrupt_at=4)
    assert result.interrupted and result.best_epoch == 2
    assert [int(h["epoch"]) for h in result.history] == [1, 2, 3]  # every finished epoch, not only to the best
    assert model.weight.item() == 2.0


def test_ctrl_c_before_the_first_epoch_ends_is_a_clear_error() -> None:
    with pytest.raises(TrainingInterrupted, match="before the first epoch ended") as info:
        scripted_fit(SCORES, interrupt_at=1)
    assert not info.value.saved


def test_the_language_model_keeps_its_history_on_ctrl_c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The LM goes through the same loop: Ctrl-C in epoch 3 keeps epochs 1-2, their best, and the file."""
    import namesclf.lm.train as lm_train

    source = tmp_path / "lines.txt"
    source.write_text("\n".join(f"line number {i}" for i in range(40)) + "\n")
    calls = {"n": 0}
    real = lm_train.masked_nll
    steps_per_epoch = 2  # 36 training lines, batches of 20

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2 * steps_per_epoch:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(lm_train, "masked_nll", interrupting)
    out = tmp_path / "lm.pt"
    result = lm_train.train_lm(source, LMConfig(epochs=5, batch_size=20, hidden=8, embed=4, device="cpu",
                                                patience=0), out=out, progress=False)
    assert result.interrupted and [int(h["epoch"]) for h in result.history] == [1, 2]
    assert result.best_epoch in (1, 2)
    assert load_checkpoint(out, kind="lm")["meta"]["best_epoch"] == result.best_epoch


def test_batches_without_weights_see_every_row_once_sorted_by_length_within_chunks() -> None:
    lengths = torch.tensor(np.random.default_rng(1).integers(1, 12, size=500))
    batches = list(length_bucketed_batches(lengths, 8, np.random.default_rng(0)))
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(500))
    assert all(np.all(np.diff(lengths[b].numpy()) >= 0) for b in batches)  # each batch length-sorted
    again = np.concatenate(list(length_bucketed_batches(lengths, 8, np.random.default_rng(0))))
    assert np.array_equal(rows, again)  # seeded


def test_epoch_batches_are_the_batches_of_batch() -> None:
    """The whole-epoch tensors cut into the same batches, value for value, as one batch at a time."""
    names = ["Li", "Abe", "Nakamura", "X", "Dostoevsky", "Ng", "O'Neill", "Sato", "Rossi", "Yu", "Papadopoulos"]
    encoded = EncodedSplit.from_names(names)
    encoded.labels = torch.arange(len(names))
    row_batches = list(length_bucketed_batches(encoded.lengths, 3, np.random.default_rng(0)))
    cut = list(encoded.epoch_batches(iter(row_batches), torch.device("cpu")))
    assert len(cut) == len(row_batches) == 4
    for rows, got in zip(row_batches, cut, strict=True):
        for expected, value in zip(encoded.batch(rows, torch.device("cpu")), got, strict=True):
            assert torch.equal(expected, value)
    assert list(encoded.epoch_batches([], torch.device("cpu"))) == []


def test_training_runs_at_torchs_own_thread_setting_and_leaves_it_as_it_was(
        tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy machine trains the hand-built RNN far faster on one thread, and docs/benchmarks.md says
    to set ``OMP_NUM_THREADS=1`` there: training must take torch's setting as it finds it."""
    from namesclf.config import TrainConfig
    from namesclf.data.dataset import load_names
    from namesclf.models.handbuilt import HandBuiltRNN
    from namesclf.training.train import train_classifier

    seen: set[int] = set()
    forward = HandBuiltRNN.forward

    def recording(self: HandBuiltRNN, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            seen.add(torch.get_num_threads())
        return forward(self, idx, lengths)

    monkeypatch.setattr(HandBuiltRNN, "forward", recording)
    frame = load_names(tiny_dir).frame
    before = torch.get_num_threads()
    chosen = 2 if before == 1 else 1  # not torch's default, so a training that set its own would show
    torch.set_num_threads(chosen)
    try:
        train_classifier(frame, frame.iloc[:0], TrainConfig(model="handbuilt", ngram_order=0, epochs=1, device="cpu"),
                         progress=False)
        assert seen == {chosen}
        assert torch.get_num_threads() == chosen
    finally:
        torch.set_num_threads(before)


def test_weighted_batches_draw_rows_in_proportion_to_their_weight() -> None:
    lengths = torch.ones(1000, dtype=torch.long)
    weights = np.where(np.arange(1000) < 100, 9.0, 1.0)  # the first 100 rows weigh 9 times more
    rows = np.concatenate(list(length_bucketed_batches(lengths, 50, np.random.default_rng(0), weights)))
    assert len(rows) == 1000
    assert 0.45 < np.mean(rows < 100) < 0.55  # 100 * 9 / (100 * 9 + 900) = 0.5


def test_overwrite_needs_force_and_resume_takes_the_stored_config(tmp_path: Path, tiny_dir: Path) -> None:
    from click.testing import CliRunner

    from namesclf.cli.main import cli

    out = tmp_path / "m.pt"
    refuse_overwrite(out, force=False)  # nothing there: fine
    result = CliRunner().invoke(cli, ["train", str(tiny_dir), "--out", str(out), "--epochs", "1", "--hidden", "8",
                                      "--lr", "0.01", "-q"])
    assert result.exit_code == 0, result.output
    with pytest.raises(Exception, match=r"exists: pass --force to overwrite it, --resume to continue it"):
        refuse_overwrite(out, force=False)
    refuse_overwrite(out, force=True)
    config, previous = resume_config(out, epochs=3, device="cpu")
    assert (config.epochs, config.device, config.hidden, config.lr) == (3, "cpu", 8, 0.01)
    assert previous["meta"]["resume"]["epoch"] == 1
    assert resume_config(out)[0].epochs == 1  # no --epochs: the stored count
