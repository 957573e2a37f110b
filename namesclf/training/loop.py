"""The one training loop every model goes through, and what it is built from: the hand-written
SGD update, the torch optimizers, the learning-rate schedule and the device.

:func:`fit` owns the run: it validates after each epoch, keeps a copy of the best epoch's state,
stops early, turns Ctrl-C into a clean stop that keeps the best epoch, and puts the best state
back at the end. The classifier (:mod:`namesclf.training.train`) and the language model (:mod:`namesclf.lm.train`) only
supply batches, a loss, a validation callback and what to do with a new best (write the file).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
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


# ----------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class LoopSettings:
    """How :func:`fit` trains: how long, how fast, and which figure chooses the best epoch.

    ``score`` names a figure the validation callback returns; ``higher_is_better`` says which way
    it improves. ``patience`` stops after that many epochs without a better score (0: never).
    ``clip`` is the global gradient-norm clip the loop applies (None for an updater that clips in
    its own step, see :func:`loop_clip`); ``warmup`` steps ramp the learning rate up linearly.
    """

    epochs: int
    steps_per_epoch: int
    lr: float
    score: str
    higher_is_better: bool
    patience: int = 0
    clip: float | None = None
    warmup: int = 0
    desc: str = "train"

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


@dataclass(frozen=True)
class LoopStart:
    """Where :func:`fit` starts: epoch 0, or where an earlier run stopped (its history and best score)."""

    epoch: int = 0
    history: Sequence[dict[str, float]] = field(default_factory=tuple)
    best_score: float | None = None


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


class _Best:
    """The best epoch so far: its score and number, the epochs since, and a copy of the kept state."""

    def __init__(self, settings: LoopSettings, start: LoopStart) -> None:
        self.sign = 1.0 if settings.higher_is_better else -1.0
        self.score = start.best_score if start.best_score is not None else -math.inf * self.sign
        self.epoch = max((int(h["epoch"]) for h in start.history if h.get(settings.score) == self.score), default=0)
        self.since = 0
        self.state: dict[str, torch.Tensor] | None = None

    def improves(self, epoch: int, score: float) -> bool:
        """Record ``epoch``'s ``score``; True when it beats the best so far (it becomes the best)."""
        if self.sign * (score - self.score) > 1e-12:
            self.score, self.epoch, self.since = score, epoch, 0
            return True
        self.since += 1
        return False


def fit(
    model: nn.Module,
    updater: Any,
    batches: Callable[[int], Iterable[Any]],
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    validate: Callable[[nn.Module], dict[str, float]],
    settings: LoopSettings,
    *,
    keep: nn.Module | None = None,
    on_best: Callable[[int, dict[str, float], list[dict[str, float]]], None] | None = None,
    start: LoopStart | None = None,
    progress: bool | None = None,
) -> Fit:
    """Train ``model`` for up to ``settings.epochs``, validating after each; return with the best epoch restored.

    ``keep`` is the module whose state *is* the model (default ``model``; a pooled classifier
    trains its network but keeps the whole, pooling knobs included). Its state is copied at each
    new best epoch, after ``on_best`` has had the chance to write it out, and loaded back when the
    loop ends, whether by the last epoch, early stopping or Ctrl-C. Ctrl-C before any new best
    raises :class:`.TrainingInterrupted` and leaves nothing changed. ``start`` carries on an
    earlier run (:class:`LoopStart`).

    ``progress=None`` shows a bar only on a terminal (tqdm's ``disable=None``); ``False`` hides it.
    """
    keep = model if keep is None else keep
    start = start or LoopStart()
    history = list(start.history)
    best = _Best(settings, start)
    disable = None if progress is None else not progress
    stopped = interrupted = False
    step = start.epoch * settings.steps_per_epoch
    try:
        if disable is not True and start.epoch < settings.epochs:
            # Off a terminal there is no bar, so this line is what tells a watcher (a log, a test)
            # that training has begun: a Ctrl-C from here on is the loop's to handle (see below).
            tqdm.write(f"{settings.desc}: training epochs {start.epoch + 1}-{settings.epochs}, "
                       f"{settings.steps_per_epoch} batches each")
        for epoch in range(start.epoch + 1, settings.epochs + 1):
            metrics, step = _train_and_validate(model, updater, batches, loss_fn, validate, settings,
                                                epoch=epoch, step=step, disable=disable)
            history.append(metrics)
            improved = best.improves(epoch, metrics[settings.score])
            if improved:
                if on_best is not None:
                    on_best(epoch, metrics, history)
                best.state = _snapshot(keep)
            if disable is not True:
                tqdm.write(_epoch_line(epoch, metrics, improved))
            if settings.patience and best.since >= settings.patience:
                stopped = True
                break
    except KeyboardInterrupt:
        if best.state is None:
            raise TrainingInterrupted("interrupted before the first epoch ended; nothing was written",
                                      saved=False) from None
        interrupted = True
    if best.state is not None:
        keep.load_state_dict(best.state)
    keep.eval()
    return Fit(history, best.epoch, best.score, stopped, interrupted)


def _train_and_validate(model: nn.Module, updater: Any, batches: Callable[[int], Iterable[Any]],
                        loss_fn: Callable[[nn.Module, Any], torch.Tensor],
                        validate: Callable[[nn.Module], dict[str, float]], settings: LoopSettings, *,
                        epoch: int, step: int, disable: bool | None) -> tuple[dict[str, float], int]:
    """One epoch: train on its batches, then validate; its figures and the global step reached."""
    model.train()
    started = time.perf_counter()
    bar = dict(total=settings.steps_per_epoch, desc=f"{settings.desc} {epoch}/{settings.epochs}")
    train_loss, step = _epoch(model, updater, batches(epoch), loss_fn, settings, step=step, disable=disable, bar=bar)
    model.eval()
    metrics = {"epoch": epoch, "train_loss": train_loss, **validate(model), "seconds": time.perf_counter() - started}
    return metrics, step


def _epoch_line(epoch: int, metrics: dict[str, float], improved: bool) -> str:
    """The line printed after each epoch: its figures, its time, and ``*`` at a new best."""
    shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k not in ("epoch", "seconds"))
    return f"epoch {epoch:>3}  {shown}  {metrics['seconds']:.1f}s{'  *' if improved else ''}"


def _epoch(model: nn.Module, updater: Any, batches: Iterable[Any], loss_fn: Callable[[nn.Module, Any], torch.Tensor],
           settings: LoopSettings, *, step: int, disable: bool | None, bar: dict[str, Any]) -> tuple[float, int]:
    """One pass over ``batches``: the mean training loss and the global step reached."""
    total, count = 0.0, 0
    progress = tqdm(batches, leave=False, disable=disable, unit="batch", **bar)
    for batch in progress:
        for group in updater.param_groups:
            group["lr"] = cosine_lr(settings.lr, step, settings.total_steps, settings.warmup)
        updater.zero_grad()
        loss = loss_fn(model, batch)
        loss.backward()
        if settings.clip:
            nn.utils.clip_grad_norm_(model.parameters(), settings.clip)
        updater.step()
        step += 1
        total += loss.detach().item()
        count += 1
        if count % 20 == 0:
            progress.set_postfix(loss=f"{total / count:.3f}")
    progress.close()
    return total / max(1, count), step
