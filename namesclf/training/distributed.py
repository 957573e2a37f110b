"""Training on several processes with ``torch.distributed``: the process group, the shard of each
step that a rank trains on, and the helpers that keep every rank in step.

``torchrun`` (or ``names train --nproc N``, which calls the same launcher) starts one process per
rank with ``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` in its environment; :func:`process_group` turns
them into a gloo (CPU) or NCCL (CUDA) process group, and without them training is the plain
single process, unchanged. The gradient is averaged by ``DistributedDataParallel``, the engine
people already run; nothing here re-implements it.

What the ranks must agree on, and how:

- the split, the n-gram half and the batches of an epoch: every rank computes them from the same
  seed, so they are identical without any communication;
- each step: every rank takes the same length-bucketed batch (``--batch-size`` names, so the model
  is the one a single process trains with the same options) and keeps every ``world``-th row of
  it, and :func:`shard` scales its summed loss so that DDP's averaged gradient is exactly the
  gradient of the whole batch's mean loss, whatever the shards' sizes and class weights;
- validation, the pooling search and with them early stopping: computed on rank 0 and broadcast
  (:func:`from_main`), so a rank can never stop at another epoch than the rest;
- writing: rank 0 alone writes the model file and the report.

A rank that dies closes its connections and the others' next collective fails at once; a rank
that hangs makes the others' next collective fail after ``timeout`` seconds. Either way
:func:`process_group` turns the failure into a one-line :class:`.NamesError` and the launcher
stops every rank; the model file keeps the last best epoch rank 0 wrote (writes are atomic).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from namesclf.config import DIST_TIMEOUT
from namesclf.errors import NamesError, first_line
from namesclf.training.loop import resolve_device

#: What the launcher sets in each rank's environment.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """Where this process stands: its rank, how many there are, and the backend (None: one process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that validates, prints and writes files."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def describe(self) -> dict[str, Any]:
        """How a model was trained, for its file's metadata."""
        return {"world_size": self.world_size, "backend": self.backend}


SINGLE = Ranks()
_current = SINGLE


def current() -> Ranks:
    """The ranks of the running process group (:data:`SINGLE` outside one)."""
    return _current


def launched() -> bool:
    """Whether a launcher (torchrun, ``names train --nproc``) started this process as one rank of many."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes (the two backends torch ships for them)."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextmanager
def process_group(device_name: str = "auto", timeout: float = DIST_TIMEOUT) -> Iterator[Ranks]:
    """Join the process group the launcher set up, if it did; leave it on the way out.

    Outside a launcher this yields :data:`SINGLE` and does nothing else. Inside, a collective that
    fails (a rank died, or one did not answer within ``timeout`` seconds) becomes one
    :class:`.NamesError` line naming this rank, instead of a C++ traceback per rank.
    """
    global _current
    if not launched():
        yield SINGLE
        return
    check_timeout(timeout)
    device = resolve_device(device_name)
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise NamesError(f"local rank {local_rank} has no GPU of its own ({torch.cuda.device_count()} visible): "
                             "use --nproc-per-node up to the number of GPUs, or --device cpu")
        torch.cuda.set_device(local_rank)
    backend = backend_for(device)
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
    ranks = Ranks(dist.get_rank(), dist.get_world_size(), local_rank, backend)
    _current = ranks
    try:
        yield ranks
    except (dist.DistError, RuntimeError) as exc:
        if not _is_collective_failure(exc):
            raise
        first = re.sub(r"^\[[^\]]*\.(cc|cpp|hpp|h):\d+\]\s*", "", first_line(exc))  # gloo's source location
        raise NamesError(f"rank {ranks.rank} of {ranks.world_size}: a collective failed ({first[:200]}): another "
                         f"rank stopped, failed or did not answer within {timeout:g} s; every rank stops") from None
    finally:
        _current = SINGLE
        dist.destroy_process_group()


def check_timeout(timeout: float) -> None:
    """``--dist-timeout`` must be a positive number of seconds."""
    if timeout <= 0:
        raise NamesError("--dist-timeout must be a positive number of seconds")


def _is_collective_failure(exc: BaseException) -> bool:
    """A failure of the process group (peer gone, timeout), as opposed to a bug that should traceback."""
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc).lower()
    return any(word in text for word in ("gloo", "nccl", "connection closed", "connection reset", "timed out",
                                         "timeout", "broken pipe", "peer"))


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """Each rank's own GPU (``cuda:LOCAL_RANK``) under NCCL; the device unchanged otherwise."""
    if ranks.active and device.type == "cuda":
        return torch.device("cuda", ranks.local_rank)
    return device


def wrap(net: nn.Module, device: torch.device, ranks: Ranks) -> nn.Module:
    """``net`` in ``DistributedDataParallel`` when there are several ranks, else ``net`` itself.

    DDP averages the gradients across ranks inside ``backward``, so every updater, the manual
    SGD step included, then applies the averaged gradient as it would its own. Buffers are not
    broadcast at every forward: no network here has running statistics to keep in step.
    """
    if not ranks.active:
        return net
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(net, device_ids=ids, forward_sync_buffers=False)


def shard(rows: np.ndarray, ranks: Ranks, row_weights: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """This rank's rows of one step's batch, and the factor for its *summed* loss.

    The rank keeps rows ``rank, rank + world, ...``: batches are sorted by length, so every rank
    gets names of the same lengths and none waits for a slower one. DDP averages the ranks'
    gradients, so the loss of rank ``r`` is ``world / W * sum(w_i * loss_i for i in its rows)``,
    where ``W`` is the summed weight (the row count without class weights) of the *whole* batch,
    which every rank knows: the average over ranks is then exactly the whole batch's weighted mean
    loss, as ``nn.NLLLoss(weight=...)`` takes it in one process, even when the shards differ in
    size. A rank left without rows (a batch smaller than the world) trains on the batch's first
    row with factor 0, so it still joins the collective and adds nothing.
    """
    mine = rows[ranks.rank :: ranks.world_size]
    if not len(mine):
        return rows[:1], 0.0
    total = float(len(rows)) if row_weights is None else float(row_weights[rows].sum())
    return mine, ranks.world_size / total


def from_main(compute: Callable[[], T], ranks: Ranks) -> T:
    """``compute()`` on rank 0, its result on every rank (other ranks do not run it).

    The result must be picklable (it travels by ``broadcast_object_list``); the others wait in the
    broadcast meanwhile, which is why :data:`DIST_TIMEOUT` covers a validation.
    """
    if not ranks.active:
        return compute()
    box: list[Any] = [compute() if ranks.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ----------------------------------------------------------------------------- the local launcher


def launch_local(nproc: int, command: Sequence[str], out: str | None = None) -> None:
    """Run ``python -m namesclf COMMAND...`` as ``nproc`` ranks on this machine, through torchrun's own
    launcher (``torch.distributed.run``, standalone rendezvous on loopback), and wait for them.

    One rank failing makes the launcher stop the others; that, and Ctrl-C, become one
    :class:`.NamesError` line that says which rank failed and what ``out`` still holds.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    if nproc < 1:
        raise NamesError("--nproc must be at least 1")
    if launched():
        raise NamesError("--nproc starts the ranks itself: under torchrun, leave it out")
    # One thread per rank unless told otherwise: the ranks share the cores (torchrun does the same, noisily).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    args = get_args_parser().parse_args(["--standalone", "--nproc-per-node", str(nproc), "--monitor-interval",
                                         "0.5", "-m", "namesclf", *command])
    started = time.time()
    # The launcher logs each rank it stops; the one line below says the same, once.
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("torch.distributed.elastic")]:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        run(args)
    except ChildFailedError as exc:
        rank, failure = min(exc.failures.items(), key=lambda item: item[1].timestamp)
        how = failure.signal_name() if failure.exitcode < 0 else f"exit code {failure.exitcode}"
        raise NamesError(f"rank {rank} of {nproc} failed ({how}, pid {failure.pid}); every rank was stopped"
                         f"{_kept(out, started)}") from None
    except (KeyboardInterrupt, SignalException):
        raise NamesError(f"interrupted; every rank was stopped{_kept(out, started)}") from None


def _kept(out: str | None, started: float) -> str:
    """What a stopped run left behind, for its error line."""
    if out and os.path.exists(out) and os.path.getmtime(out) >= started:
        return f"; {out} holds the best epoch so far (continue with --resume)"
    return "; no epoch had finished, nothing was written"
