"""Training on several processes: two gloo ranks on loopback against one process.

What must hold: one DDP step of the hand-built RNN applies the gradient one process computes on
the whole batch (to 1e-6); two ranks train the model one process trains with the same options
(the validation figures agree to rounding, see TOLERANCE); the ranks agree on every epoch's
validation, pooling and stopping; `torchrun -m namesclf train` writes one model file that says
how it was trained; and a rank killed mid-run stops the run with one clear line, well within the
collective timeout, leaving the last good model file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from namesclf.cli.main import cli
from namesclf.models.checkpoint import load_checkpoint
from namesclf.training.distributed import Ranks, shard

from .conftest import REPO, Watched, free_port, invented_names, write_names_dir

#: Two ranks against one process on the same batches: the gradients differ only by the order of
#: float sums (DDP adds the ranks' gradients, one process sums the batch at once), so losses agree
#: to 1e-4 and accuracy and macro-F1 to one name in a hundred (a name on a tie may flip).
TOLERANCE = {"loss": 1e-4, "score": 0.01}
SYLLABLES = ["ka", "ro", "mi", "ta", "lu", "ne", "vo", "sa", "pe", "di", "go", "ha", "ri", "mo", "be"]
ENDINGS = {"Aland": ("ov", "in", "a"), "Bland": ("ski", "ak", "a"), "Cland": ("ez", "es", "o"),
           "Dland": ("son", "berg", "o")}
CONFIG = dict(model="handbuilt", hidden=16, epochs=3, patience=0, batch_size=16, class_weight="sqrt",
              device="cpu", seed=0)


def synthetic_names(per_language: int, seed: int = 0) -> dict[str, list[str]]:
    """Four made-up languages told apart by their endings, two of which they share (so not trivially)."""
    return invented_names({lang: (SYLLABLES, endings) for lang, endings in ENDINGS.items()}, per_language, seed,
                          max_stems=3)


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def names_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_names_dir(tmp_path_factory.mktemp("synthetic") / "names", synthetic_names(120))


def test_shards_split_every_batch_and_their_factors_make_the_whole_batchs_mean() -> None:
    rows = np.array([5, 3, 8, 1, 9, 2, 7])
    weights = np.linspace(0.5, 2.0, 10)
    parts = [shard(rows, Ranks(rank, 2, rank, "gloo"), weights) for rank in range(2)]
    assert sorted(np.concatenate([p[0] for p in parts]).tolist()) == sorted(rows.tolist())
    assert [len(p[0]) for p in parts] == [4, 3]
    assert all(factor == pytest.approx(2 / weights[rows].sum()) for _, factor in parts)
    lonely, factor = shard(np.array([4]), Ranks(1, 2, 1, "gloo"))
    assert lonely.tolist() == [4] and factor == 0.0  # joins the step, adds nothing


# ----------------------------------------------------------------------------- two ranks in-process


def _rank(rank: int, world: int, port: int, names_dir: str, out_dir: str) -> None:
    """One rank: a DDP step of the hand-built RNN, then a short training run; results to a file."""
    from namesclf.config import TrainConfig
    from namesclf.data.dataset import load_names, split_names
    from namesclf.models.handbuilt import HandBuiltRNN
    from namesclf.models.networks import NgramEnsemble
    from namesclf.text import N_LETTERS
    from namesclf.training.distributed import process_group, wrap
    from namesclf.training.loop import ManualSGD
    from namesclf.training.train import shard_loss, train_classifier

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    with process_group("cpu", timeout=60) as ranks:
        batch, weight = step_batch()
        torch.manual_seed(0)
        net = HandBuiltRNN(N_LETTERS, 16, 3, tanh=True)
        model = wrap(net, torch.device("cpu"), ranks)
        mine, factor = shard(np.arange(len(batch)), ranks, weight.numpy()[batch.labels.numpy()])
        idx, lengths, y = batch.batch(mine, torch.device("cpu"))
        shard_loss(model(idx, lengths), y, weight, factor).backward()
        grads = {k: p.grad.clone() for k, p in net.named_parameters()}
        ManualSGD(net.parameters(), lr=0.5, max_norm=1.0).step()
        data = load_names(names_dir)
        split = split_names(data.frame, seed=0)
        result = train_classifier(data.frame[split == "train"], data.frame[split == "valid"], TrainConfig(**CONFIG),
                                  progress=False)
        assert isinstance(result.model, NgramEnsemble)
        knobs = [float(result.model.weight), float(result.model.shift), float(result.model.temperature)]
        torch.save({"grads": grads, "params": {k: p.detach().clone() for k, p in net.named_parameters()},
                    "history": result.history, "best_epoch": result.best_epoch, "knobs": knobs,
                    "ranks": ranks.describe()},
                   Path(out_dir) / f"rank{rank}.pt")


def step_batch() -> tuple[Any, torch.Tensor]:
    """Seven names of different lengths (so the shards differ in size and padding) and class weights."""
    from namesclf.training.batches import EncodedSplit

    batch = EncodedSplit.from_names(["Ivanov", "Li", "Takahashi", "Rossi", "Kowalski", "Ng", "Esposito"])
    batch.labels = torch.tensor([0, 2, 1, 2, 0, 1, 2])
    return batch, torch.tensor([0.5, 1.5, 1.0])


@pytest.fixture(scope="module")
def two_ranks(names_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("ranks")
    context = torch.multiprocessing.start_processes(_rank, args=(2, free_port(), str(names_dir), str(out)),
                                                    nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("two gloo ranks did not finish within 120 s")
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def test_one_ddp_step_of_the_handbuilt_rnn_is_the_whole_batchs_gradient(two_ranks: list[dict[str, Any]]) -> None:
    from namesclf.models.handbuilt import HandBuiltRNN
    from namesclf.text import N_LETTERS
    from namesclf.training.loop import ManualSGD

    batch, weight = step_batch()
    torch.manual_seed(0)
    net = HandBuiltRNN(N_LETTERS, 16, 3, tanh=True)
    idx, lengths, y = batch.batch(np.arange(len(batch)), torch.device("cpu"))
    nn.NLLLoss(weight=weight)(net(idx, lengths), y).backward()  # what one process does with the whole batch
    ManualSGD(net.parameters(), lr=0.5, max_norm=1.0).step()
    for name, p in net.named_parameters():
        for got in two_ranks:
            assert torch.allclose(got["grads"][name], p.grad, rtol=0, atol=1e-6), name
            assert torch.allclose(got["params"][name], p.detach(), rtol=0, atol=1e-6), name
    assert float(p.grad.abs().max()) > 1e-3  # a gradient worth comparing


def test_ranks_agree_on_every_epoch_and_train_what_one_process_trains(
        two_ranks: list[dict[str, Any]], names_dir: Path) -> None:
    from namesclf.config import TrainConfig
    from namesclf.data.dataset import load_names, split_names
    from namesclf.training.train import train_classifier

    first, second = two_ranks
    assert first["ranks"] == {"world_size": 2, "backend": "gloo"}
    keys = [k for k in first["history"][0] if k != "seconds" and k != "train_loss"]
    assert [{k: h[k] for k in keys} for h in first["history"]] == [{k: h[k] for k in keys} for h in second["history"]]
    assert first["best_epoch"] == second["best_epoch"] and first["knobs"] == second["knobs"]

    data = load_names(names_dir)
    split = split_names(data.frame, seed=0)
    one = train_classifier(data.frame[split == "train"], data.frame[split == "valid"], TrainConfig(**CONFIG),
                           progress=False)
    assert len(one.history) == len(first["history"]) == CONFIG["epochs"]
    for mine, theirs in zip(first["history"], one.history, strict=True):
        # (not train_loss: under DDP it is rank 0's running estimate from its own shards)
        for key in ("net_valid_loss", "valid_loss"):
            assert mine[key] == pytest.approx(theirs[key], abs=TOLERANCE["loss"]), key
        for key in ("net_valid_accuracy", "net_valid_macro_f1", "valid_accuracy", "valid_macro_f1"):
            assert mine[key] == pytest.approx(theirs[key], abs=TOLERANCE["score"]), key
    assert one.history[-1]["net_valid_accuracy"] < 0.99  # the network alone has not solved it: a real comparison


# ----------------------------------------------------------------------------- the command line


def test_torchrun_trains_on_two_ranks_and_rank_0_alone_writes_and_reports(names_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "two.pt"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "namesclf", "train", str(names_dir), "--model", "handbuilt", "--hidden", "16",
                           "--epochs", "2", "--batch-size", "16", "--device", "cpu", "--json", "-q", "--out", str(out),
                           "--dist-timeout", "60"],
                          capture_output=True, text=True, timeout=180, env=env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)  # one JSON document: rank 1 printed nothing
    assert summary["epochs_run"] == 2 and summary["n_test"] > 0 and summary["test_accuracy"] > 0.5
    saved = load_checkpoint(out, kind="classifier")
    assert saved["meta"]["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert saved["meta"]["test"]["accuracy"] == summary["test_accuracy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.onnx", "two.pt", "two.report"]


def test_nproc_checks_its_options_before_starting_anything(names_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["train", str(names_dir), "--nproc", "2", "--dist-timeout", "0",
                                 "--out", str(tmp_path / "m.pt")])
    assert result.exit_code == 1 and "Error: --dist-timeout must be a positive number of seconds" in result.output
    (tmp_path / "m.pt").write_bytes(b"")
    result = runner.invoke(cli, ["train", str(names_dir), "--nproc", "2", "--out", str(tmp_path / "m.pt")])
    assert result.exit_code == 1 and "--force" in result.output


def test_a_rank_killed_mid_run_stops_every_rank_with_one_clear_line(tmp_path: Path) -> None:
    data = write_names_dir(tmp_path / "names", synthetic_names(600, seed=1))
    out = tmp_path / "m.pt"
    # A collective timeout far beyond the deadline below: the run can end in time only if the dead
    # rank is noticed at once, not because a collective gave up waiting for it.
    timeout, deadline = 600, 120
    with Watched([sys.executable, "-m", "namesclf", "train", str(data), "--model", "handbuilt", "--hidden", "32",
                  "--epochs", "500", "--patience", "0", "--device", "cpu", "--out", str(out), "--nproc", "2",
                  "--dist-timeout", str(timeout)],
                 env={**env(), "PYTHONUNBUFFERED": "1"}, cwd=tmp_path) as run:
        pid = int(run.wait_for("stderr", r"rank 1 of 2: pid (\d+),", deadline)[1])
        # rank 0 prints an epoch's line after saving it, as the last thing it does in that epoch
        run.wait_for("stdout", r"^epoch +1 ", deadline)
        assert out.exists()
        os.kill(pid, signal.SIGKILL)
        code = run.finish(deadline, f" of the kill, with a collective timeout of {timeout} s")
    lines = run.text("stderr").strip().splitlines()
    assert code == 1, lines
    assert lines[-1] == (f"Error: rank 1 of 2 failed (SIGKILL, pid {pid}); every rank was stopped; {out} holds the "
                         "best epoch so far (continue with --resume)"), lines
    assert not any("Traceback" in line for line in lines), lines
    saved = load_checkpoint(out, kind="classifier")  # the last good epoch, complete and loadable
    assert saved["meta"]["distributed"] == {"world_size": 2, "backend": "gloo"} and saved["meta"]["best_epoch"] >= 1


def test_one_process_records_that_it_trained_alone(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    result = CliRunner().invoke(cli, ["train", str(tiny_dir), "--model", "handbuilt", "--hidden", "8", "--epochs", "1",
                                      "--ngram-order", "0", "--device", "cpu", "-q", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out)["meta"]["distributed"] == {"world_size": 1, "backend": None}
