"""The one training loop every model goes through, and what it is built from: the hand-written
SGD update, the torch optimizers, the learning-rate schedule and the device.

:func:`fit` owns the run: it validates after each epoch, keeps a copy of the best epoch's state,
stops early, turns Ctrl-C into a clean stop that keeps the best epoch, and puts the best state
back at the end. The classifier (:mod:`namesclf.training.train`) and the language model (:mod:`namesclf.lm.train`) only
supply batches, a loss, a validation callback and what to do with a new best (write the file).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from namesclf.config import DEVICES, OPTIMIZERS
from namesclf.errors import NamesError, TrainingInterrupted

# ----------------------------------------------------------------------------- updates


class ManualSGD:
    """The tutorial's update, ``p.add_(p.grad, alpha=-lr)`` under ``no_grad``, and no ``torch.optim``.

    It has the optimizer interface the loop needs (``zero_grad``, ``step``, ``param_groups``,
    ``state_dict``) so the hand-built RNN goes through the same loop as every other model.

    ``max_norm`` clips the gradient's global norm inside the update: the step becomes
    ``p.add_(p.grad, alpha=-lr * min(1, max_norm / (norm + 1e-6)))``, which is exactly
    ``clip_grad_norm_`` followed by the plain step (a test checks it) without rewriting every
    gradient first; at the hand-built RNN's sizes rewriting them is a noticeable share of a step.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float, max_norm: float | None = None) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.param_groups = [{"lr": lr}]
        self.max_norm = max_norm

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        lr = self.param_groups[0]["lr"]
        if self.max_norm:
            grads = [p.grad.reshape(-1) for p in self.params if p.grad is not None]
            if grads:
                lr *= min(1.0, self.max_norm / (float(torch.cat(grads).norm()) + 1e-6))
        for p in self.params:
            if p.grad is not None:
                p.add_(p.grad, alpha=-lr)

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.param_groups[0]["lr"]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.param_groups[0]["lr"] = float(state["lr"])


def make_updater(name: str, params: Iterable[nn.Parameter], lr: float, weight_decay: float = 0.0,
                 max_norm: float | None = None) -> Any:
    """``manual`` (hand-written SGD), ``sgd`` (torch, no momentum), ``adam`` or ``adamw``.

    ``max_norm`` is the manual update's own gradient clipping; the torch optimizers ignore it and
    are clipped by :func:`fit` (:func:`loop_clip` says which clips).
    """
    if name == "manual":
        return ManualSGD(params, lr, max_norm)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise NamesError(f"unknown optimizer {name!r}: use {', '.join(OPTIMIZERS)}")


def loop_clip(updater: Any, clip: float | None) -> float | None:
    """The clip :func:`fit` applies: none for the manual update, which clips inside its own step."""
    return None if isinstance(updater, ManualSGD) else clip


def cosine_lr(base: float, step: int, total: int, warmup: int = 0) -> float:
    """Linear warm-up then cosine decay to 5% of ``base``: robust across models without tuning."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def resolve_device(name: str) -> torch.device:
    """``auto`` takes CUDA when present; asking for ``cuda`` without one is a clear error."""
    if name not in DEVICES:
        raise NamesError(f"unknown device {name!r}: use {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise NamesError("--device cuda was asked for, but no CUDA device is available (use --device cpu)")
    return torch.device(name)


@contextlib.contextmanager
def pinned_threads(threads: int | None) -> Iterator[None]:
    """Run the block with torch's intra-op threads set to ``threads`` (None: as they are), then
    put the setting back, so a network that trains best on one thread leaves the rest alone."""
    before = torch.get_num_threads()
    if threads and threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


# ----------------------------------------------------------------------------- the loop


@dataclass
class Fit:
    """What :func:`fit` returns: every finished epoch's figures and where the best one was.

    ``interrupted`` is Ctrl-C after at least one new best epoch: the kept module holds that epoch.
    """

    history: list[dict[str, float]]
    best_epoch: int
    best_score: float
    stopped_early: bool
    interrupted: bool = False

    @property
    def best(self) -> dict[str, float]:
        """The best epoch's figures (empty when no epoch ran)."""
        return next((h for h in self.history if int(h["epoch"]) == self.best_epoch), {})


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def fit(
    model: nn.Module,
    updater: Any,
    batches: Callable[[int], Iterable[Any]],
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    validate: Callable[[nn.Module], dict[str, float]],
    *,
    epochs: int,
    score: str,
    higher_is_better: bool,
    patience: int,
    lr: float,
    clip: float | None,
    steps_per_epoch: int,
    keep: nn.Module | None = None,
    on_best: Callable[[int, dict[str, float], list[dict[str, float]]], None] | None = None,
    start_epoch: int = 0,
    history: list[dict[str, float]] | None = None,
    best_score: float | None = None,
    warmup: int = 0,
    progress: bool | None = None,
    desc: str = "train",
) -> Fit:
    """Train ``model`` for up to ``epochs``, validating after each; return with the best epoch restored.

    ``keep`` is the module whose state *is* the model (default ``model``; a pooled classifier
    trains its network but keeps the whole, pooling knobs included). Its state is copied at each
    new best epoch, after ``on_best`` has had the chance to write it out, and loaded back when the
    loop ends, whether by the last epoch, early stopping or Ctrl-C. Ctrl-C before any new best
    raises :class:`.TrainingInterrupted` and leaves nothing changed.

    ``progress=None`` shows a bar only on a terminal (tqdm's ``disable=None``); ``False`` hides it.
    """
    keep = model if keep is None else keep
    history = list(history or [])
    sign = 1.0 if higher_is_better else -1.0
    best = best_score if best_score is not None else -math.inf * sign
    best_epoch = max((int(h["epoch"]) for h in history if h.get(score) == best), default=0)
    best_state: dict[str, torch.Tensor] | None = None
    since_best = 0
    disable = None if progress is None else not progress
    stopped = interrupted = False
    step = start_epoch * steps_per_epoch
    try:
        if disable is not True and start_epoch < epochs:
            # Off a terminal there is no bar, so this line is what tells a watcher (a log, a test)
            # that training has begun: a Ctrl-C from here on is the loop's to handle (see below).
            tqdm.write(f"{desc}: training epochs {start_epoch + 1}-{epochs}, {steps_per_epoch} batches each")
        for epoch in range(start_epoch + 1, epochs + 1):
            model.train()
            started = time.perf_counter()
            train_loss, step = _epoch(model, updater, batches(epoch), loss_fn, lr=lr, clip=clip, step=step,
                                      total_steps=epochs * steps_per_epoch, warmup=warmup, disable=disable,
                                      bar=dict(total=steps_per_epoch, desc=f"{desc} {epoch}/{epochs}"))
            model.eval()
            metrics = {"epoch": epoch, "train_loss": train_loss, **validate(model),
                       "seconds": time.perf_counter() - started}
            history.append(metrics)
            improved = sign * (metrics[score] - best) > 1e-12
            if improved:
                best, best_epoch, since_best = metrics[score], epoch, 0
                if on_best is not None:
                    on_best(epoch, metrics, history)
                best_state = _snapshot(keep)
            else:
                since_best += 1
            if disable is not True:
                shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k not in ("epoch", "seconds"))
                tqdm.write(f"epoch {epoch:>3}  {shown}  {metrics['seconds']:.1f}s{'  *' if improved else ''}")
            if patience and since_best >= patience:
                stopped = True
                break
    except KeyboardInterrupt:
        if best_state is None:
            raise TrainingInterrupted("interrupted before the first epoch ended; nothing was written",
                                      saved=False) from None
        interrupted = True
    if best_state is not None:
        keep.load_state_dict(best_state)
    keep.eval()
    return Fit(history, best_epoch, best, stopped, interrupted)


def _epoch(model: nn.Module, updater: Any, batches: Iterable[Any], loss_fn: Callable[[nn.Module, Any], torch.Tensor],
           *, lr: float, clip: float | None, step: int, total_steps: int, warmup: int, disable: bool | None,
           bar: dict[str, Any]) -> tuple[float, int]:
    """One pass over ``batches``: the mean training loss and the global step reached."""
    total, count = 0.0, 0
    progress = tqdm(batches, leave=False, disable=disable, unit="batch", **bar)
    for batch in progress:
        for group in updater.param_groups:
            group["lr"] = cosine_lr(lr, step, total_steps, warmup)
        updater.zero_grad()
        loss = loss_fn(model, batch)
        loss.backward()
        if clip:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        updater.step()
        step += 1
        total += loss.detach().item()
        count += 1
        if count % 20 == 0:
            progress.set_postfix(loss=f"{total / count:.3f}")
    progress.close()
    return total / max(1, count), step
