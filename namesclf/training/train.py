"""Classifier training: the n-gram half and the pooling search, and :func:`train_classifier`,
which runs the network through :func:`~namesclf.training.loop.fit`.

The config and its per-model defaults are in :mod:`namesclf.config`; every default was chosen by
measurement on the grouped split (``docs/experiments.md`` has the runs and their commands).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from namesclf.config import TrainConfig
from namesclf.errors import NamesError
from namesclf.models.checkpoint import classifier_meta, classifier_payload, save_checkpoint
from namesclf.models.networks import NgramEnsemble, build_classifier
from namesclf.models.ngram import NgramBayes
from namesclf.report.metrics import classification_scores
from namesclf.training.batches import EncodedSplit, length_bucketed_batches, predict_log_proba
from namesclf.training.calibrate import calibrate
from namesclf.training.distributed import Ranks, current, from_main, rank_device, shard, wrap
from namesclf.training.loop import LoopSettings, LoopStart, fit, loop_clip, make_updater, resolve_device

#: Grids for the pooling knobs of :class:`~namesclf.models.networks.NgramEnsemble`, searched on the validation names
#: (docs/experiments.md, "Pooling and temperature").
POOL_WEIGHTS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
POOL_SHIFTS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2)
#: Up to 6 because a product of two confident models can want a high temperature; a fine grid is
#: cheap, as each value is one pooled log-loss over the validation names.
TEMPERATURES = tuple(round(float(x), 2) for x in np.arange(0.5, 6.001, 0.05))


def class_weights(y: np.ndarray, n_classes: int, scheme: str) -> np.ndarray:
    """Per-class loss weights: ``balanced`` is scikit-learn's ``n / (k * n_c)``; ``sqrt`` is the
    gentler ``1 / sqrt(n_c)``, which lifts rare languages (macro-F1) without giving up as much
    accuracy. Both average to 1 over the training names, so the learning rate keeps its meaning.
    """
    present = np.unique(y)
    w = np.ones(n_classes, dtype=np.float32)
    if scheme == "balanced":
        w[present] = compute_class_weight("balanced", classes=present, y=y)
    elif scheme == "sqrt":
        counts = np.bincount(y, minlength=n_classes).astype(np.float64)
        w[present] = len(y) / np.sqrt(counts[present]).sum() / np.sqrt(counts[present])
    return w


# ----------------------------------------------------------------------------- the n-gram half and pooling


def fit_ngram(ngram: NgramBayes, enc_train: EncodedSplit, enc_valid: EncodedSplit | None) -> dict[str, Any]:
    """Count the n-gram half on the training names; tune its discount and mixture on the
    validation names (nats per character). Counting is one pass over the names
    (docs/benchmarks.md#training-speed)."""
    ngram.fit(enc_train.idx, enc_train.lengths, enc_train.labels)
    info: dict[str, Any] = {"ngram_order": ngram.order}
    if enc_valid is not None and len(enc_valid):
        info.update(ngram.tune(enc_valid.idx, enc_valid.lengths, enc_valid.labels))
    return info


def refit_ngram(ngram: NgramBayes, encoded: EncodedSplit, device: torch.device) -> None:
    """Count ``ngram`` again on ``encoded`` (train + valid), keeping the discount and mixture tuned on valid.

    Once the validation names have chosen the epoch and the pooling knobs they have nothing left
    to decide, and counting them too is free: the usual refit on all labelled data, as
    scikit-learn's ``GridSearchCV(refit=True)`` does (docs/experiments.md, "The n-gram refit").
    The network is not refit: that would take a second training run. The validation figures
    stored with the model are those measured before, and ``names evaluate --split valid`` says
    they are no longer held out.
    """
    ngram.fit(encoded.idx, encoded.lengths, encoded.labels)
    ngram.to(device)


@torch.no_grad()
def set_pooling(ensemble: NgramEnsemble, weight: float, shift: float, temperature: float) -> None:
    """Set the three pooling knobs of ``ensemble`` (buffers, so they travel in its state)."""
    ensemble.weight.fill_(weight)
    ensemble.shift.fill_(shift)
    ensemble.temperature.fill_(temperature)


@torch.no_grad()
def choose_pooling(ensemble: NgramEnsemble, net_logp: torch.Tensor, ngram_logp: torch.Tensor,
                   y: torch.Tensor) -> dict[str, Any]:
    """Set the pooling knobs of ``ensemble`` from held-out log-probabilities of its two halves.

    The weight and prior shift maximise ``(accuracy + macro-F1) / 2``, the two figures we report
    (the shift trades a little accuracy for the rare languages, so it is chosen on both); the
    temperature comes last and minimises the log-loss, so the pooled probabilities are calibrated
    (it cannot change which language wins). Returns the knobs and the pooled scores.
    """
    y_np = y.numpy()
    best: tuple[float, float, float] | None = None
    for weight in POOL_WEIGHTS:
        for shift in POOL_SHIFTS:
            scores = classification_scores(y_np, ensemble.pool(net_logp, ngram_logp, weight, shift).argmax(1).numpy())
            objective = (scores["accuracy"] + scores["macro_f1"]) / 2
            if best is None or objective > best[0] + 1e-12:
                best = (objective, weight, shift)
    assert best is not None
    _, weight, shift = best
    losses = {t: float(nn.functional.nll_loss(ensemble.pool(net_logp, ngram_logp, weight, shift, t), y))
              for t in TEMPERATURES}
    temperature = min(losses, key=losses.__getitem__)
    set_pooling(ensemble, weight, shift, temperature)
    pooled = ensemble.pool(net_logp, ngram_logp, weight, shift, temperature)
    return {"weight": weight, "shift": shift, "temperature": temperature, "loss": losses[temperature],
            **classification_scores(y_np, pooled.argmax(1).numpy())}


class Validator:
    """The per-epoch validation of a classifier: the network's own figures and, pooled, the
    pooling knobs chosen again for this epoch's network and the pooled figures (those choose the
    epoch, since the network that pools best is not always the best alone)."""

    def __init__(self, whole: nn.Module, enc_valid: EncodedSplit | None, device: torch.device) -> None:
        self.whole, self.enc_valid, self.device = whole, enc_valid, device
        self.ngram_logp = None
        if isinstance(whole, NgramEnsemble) and enc_valid is not None:
            self.ngram_logp = predict_log_proba(whole.ngram, enc_valid, device)

    def ngram_scores(self) -> dict[str, float]:
        """The n-gram half alone on the validation names (empty when there is none)."""
        if self.ngram_logp is None or self.enc_valid is None:
            return {}
        return classification_scores(self.enc_valid.labels.numpy(), self.ngram_logp.argmax(1).numpy())

    def __call__(self, net: nn.Module) -> dict[str, float]:
        if self.enc_valid is None:
            return {"valid_macro_f1": 0.0}
        logp = predict_log_proba(net, self.enc_valid, self.device)
        y = self.enc_valid.labels
        scores = classification_scores(y.numpy(), logp.argmax(1).numpy())
        metrics = {"valid_loss": float(nn.functional.nll_loss(logp, y)),
                   "valid_accuracy": scores["accuracy"], "valid_macro_f1": scores["macro_f1"]}
        if self.ngram_logp is None:
            return metrics
        assert isinstance(self.whole, NgramEnsemble)
        pooled = choose_pooling(self.whole, logp, self.ngram_logp, y)
        return {**{f"net_{k}": v for k, v in metrics.items()}, "valid_loss": pooled["loss"],
                "valid_accuracy": pooled["accuracy"], "valid_macro_f1": pooled["macro_f1"],
                "pool_weight": pooled["weight"], "pool_shift": pooled["shift"], "temperature": pooled["temperature"]}


class ValidatorOnEveryRank:
    """Validation under several ranks: rank 0 validates (and searches the pooling knobs), every
    other rank takes its figures and sets the knobs rank 0 chose, so all keep the same model."""

    def __init__(self, validate: Validator, net: nn.Module, ranks: Ranks) -> None:
        self.validate, self.net, self.ranks = validate, net, ranks

    def __call__(self, _: nn.Module) -> dict[str, float]:
        metrics = from_main(lambda: self.validate(self.net), self.ranks)
        if not self.ranks.is_main and "pool_weight" in metrics:
            assert isinstance(self.validate.whole, NgramEnsemble)
            set_pooling(self.validate.whole, metrics["pool_weight"], metrics["pool_shift"], metrics["temperature"])
        return metrics


# ----------------------------------------------------------------------------- batches, loss, checkpoints


@dataclass
class EpochBatches:
    """One epoch's batches for :func:`~namesclf.training.loop.fit`, length-bucketed; under several
    ranks every rank draws the same batch and trains on its share of it, with its loss factor."""

    encoded: EncodedSplit
    batch_size: int
    rng: np.random.Generator
    ranks: Ranks
    device: torch.device
    row_weights: np.ndarray | None = None

    def __call__(self, epoch: int) -> Iterator[tuple]:
        order = length_bucketed_batches(self.encoded.lengths, self.batch_size, self.rng)
        if not self.ranks.active:
            return self.encoded.epoch_batches(order, self.device)
        shares = (shard(rows, self.ranks, self.row_weights) for rows in order)
        return ((*self.encoded.batch(mine, self.device), factor) for mine, factor in shares)


def shard_loss(logp: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None, factor: float) -> torch.Tensor:
    """One rank's loss on its share of a step's batch: the summed (class-weighted) NLL times the
    :func:`~namesclf.training.distributed.shard` factor, so
    that DDP's average over ranks is the whole batch's mean loss."""
    return nn.functional.nll_loss(logp, y, weight=weight, reduction="sum") * factor


class ClassifierLoss:
    """The (class-weighted) mean NLL of a batch ``(idx, lengths, y)``, or :func:`shard_loss` of a
    rank's share ``(idx, lengths, y, factor)``."""

    def __init__(self, weight: torch.Tensor | None) -> None:
        self.weight = weight
        self.criterion = nn.NLLLoss(weight=weight)

    def __call__(self, model: nn.Module, batch: tuple) -> torch.Tensor:
        if len(batch) == 4:
            return shard_loss(model(batch[0], batch[1]), batch[2], self.weight, batch[3])
        idx, lengths, y = batch
        return self.criterion(model(idx, lengths), y)


@dataclass
class BestEpochWriter:
    """Writes the whole model to ``out`` at each new best epoch, with the optimizer state that
    ``--resume`` carries on from, so Ctrl-C leaves a complete, loadable model."""

    out: str | Path
    whole: nn.Module
    config: dict[str, Any]
    labels: list[str]
    meta: dict[str, Any] | None
    pooling: dict[str, Any]
    updater: Any

    def __call__(self, epoch: int, metrics: dict[str, float], history: list[dict[str, float]]) -> None:
        resume = {"epoch": epoch, "optimizer": self.updater.state_dict(), "best_score": metrics["valid_macro_f1"]}
        meta = classifier_meta(self.meta, history=history, best_epoch=epoch, valid=metrics, pooling=self.pooling,
                               resume=resume)
        save_checkpoint(self.out, classifier_payload(self.whole, self.config, self.labels, meta))


# ----------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """The trained model (best epoch restored) and everything needed to write its file and report."""

    model: nn.Module
    config: TrainConfig
    labels: list[str]
    history: list[dict[str, float]]
    best_epoch: int
    valid: dict[str, float]
    seconds: float
    stopped_early: bool
    interrupted: bool = False
    pooling: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)


def _network(whole: nn.Module) -> nn.Module:
    """The trainable network of a classifier: the pooled model's neural half, or the model itself."""
    return whole.net if isinstance(whole, NgramEnsemble) else whole


def resume_start(resume: dict[str, Any], labels: list[str], net: nn.Module, updater: Any) -> LoopStart:
    """Load an earlier run's network and optimizer; return where it stopped (epoch, history, best)."""
    if resume.get("labels") != labels:
        raise NamesError("cannot resume: the checkpoint was trained on other languages")
    state_dict = resume["state_dict"]
    if any(k.startswith("net.") for k in state_dict):  # a pooled model: carry on with its network
        state_dict = {k[len("net."):]: v for k, v in state_dict.items() if k.startswith("net.")}
    net.load_state_dict(state_dict)
    state = resume.get("meta", {}).get("resume", {})
    if "optimizer" in state:
        updater.load_state_dict(state["optimizer"])
    return LoopStart(int(state.get("epoch", 0)), list(resume.get("meta", {}).get("history", [])),
                     state.get("best_score"))


def encode_splits(train: pd.DataFrame, valid: pd.DataFrame) -> tuple[list[str], EncodedSplit, EncodedSplit | None]:
    """The languages (sorted: the model's output order) and the encoded train and valid names."""
    labels = sorted(set(train["language"]) | set(valid["language"]))
    if len(labels) < 2:
        raise NamesError(f"cannot train a classifier on one language ({labels[0] if labels else 'none'}): "
                         "give names of at least two languages")
    label_index = {lang: i for i, lang in enumerate(labels)}
    enc_valid = EncodedSplit.from_frame(valid, label_index) if len(valid) else None
    return labels, EncodedSplit.from_frame(train, label_index), enc_valid


def loss_weight(cfg: TrainConfig, enc_train: EncodedSplit, n_classes: int, device: torch.device
                ) -> torch.Tensor | None:
    """The per-class loss weights of ``cfg.class_weight`` (None: every class weighs the same)."""
    if cfg.class_weight == "none":
        return None
    return torch.tensor(class_weights(enc_train.labels.numpy(), n_classes, cfg.class_weight), device=device)


def loop_settings(cfg: TrainConfig, updater: Any, n_train: int) -> LoopSettings:
    """The loop's settings for a classifier: the epoch with the best validation macro-F1 is kept."""
    return LoopSettings(epochs=cfg.epochs, steps_per_epoch=math.ceil(n_train / cfg.batch_size), lr=cfg.lr,
                        score="valid_macro_f1", higher_is_better=True, patience=cfg.patience,
                        clip=loop_clip(updater, cfg.clip), desc=cfg.model)


def train_classifier(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    config: TrainConfig,
    *,
    out: str | Path | None = None,
    meta: dict[str, Any] | None = None,
    resume: dict[str, Any] | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train a classifier on ``train``, keep the epoch with the best validation macro-F1.

    When ``out`` is given, each new best epoch is written there atomically (with the optimizer state
    for ``resume``), so an interrupted run leaves a complete, loadable model. ``resume`` is a loaded
    checkpoint of an earlier run with the same config.
    """
    cfg = config.resolved(n_train=len(train))
    torch.manual_seed(cfg.seed)
    ranks = current()  # one process unless torchrun started this one as a rank of several
    device = rank_device(resolve_device(cfg.device), ranks)
    labels, enc_train, enc_valid = encode_splits(train, valid)
    # The n-gram half is counted before training, so every saved epoch is the complete model.
    whole = build_classifier(cfg.to_dict(), len(labels))
    pooling = fit_ngram(whole.ngram, enc_train, enc_valid) if isinstance(whole, NgramEnsemble) else {}
    whole.to(device)
    net = _network(whole)
    model = wrap(net, device, ranks)
    if ranks.rank:  # same initial weights everywhere, but each rank its own dropout masks
        torch.manual_seed(cfg.seed + 7919 * ranks.rank)
    validate = Validator(whole, enc_valid, device)
    if validate.ngram_logp is not None:
        pooling["valid_ngram"] = validate.ngram_scores()
    updater = make_updater(cfg.optimizer, net.parameters(), cfg.lr, cfg.weight_decay, max_norm=cfg.clip)
    weight = loss_weight(cfg, enc_train, len(labels), device)
    start = LoopStart() if resume is None else resume_start(resume, labels, net, updater)
    row_weights = None if weight is None else weight.cpu().numpy()[enc_train.labels.numpy()]
    batches = EpochBatches(enc_train, cfg.batch_size, np.random.default_rng(cfg.seed + start.epoch), ranks, device,
                           row_weights)
    on_best = None
    if out is not None and ranks.is_main:
        on_best = BestEpochWriter(out, whole, cfg.to_dict(), labels, meta, pooling, updater)
    started = time.perf_counter()
    result = fit(model, updater, batches, ClassifierLoss(weight),
                 ValidatorOnEveryRank(validate, net, ranks) if ranks.active else validate,
                 loop_settings(cfg, updater, len(enc_train)), keep=whole, on_best=on_best, start=start,
                 progress=progress)
    if not ranks.is_main:  # rank 0 alone calibrates, tests and writes
        return TrainResult(whole, cfg, labels, result.history, result.best_epoch, dict(result.best),
                           time.perf_counter() - started, result.stopped_early, result.interrupted, pooling=pooling)
    calibration = {} if result.interrupted else calibrate(whole, labels, train, valid, enc_valid, device, cfg.seed)
    if isinstance(whole, NgramEnsemble):
        _record_pooling(whole, pooling, enc_train, enc_valid, device, refit=cfg.refit_ngram and not result.interrupted)
    valid_metrics = dict(result.best or (result.history[-1] if result.history else {}))
    return TrainResult(whole, cfg, labels, result.history, result.best_epoch, valid_metrics,
                       time.perf_counter() - started, result.stopped_early, result.interrupted, pooling=pooling,
                       calibration=calibration)


def _record_pooling(whole: NgramEnsemble, pooling: dict[str, Any], enc_train: EncodedSplit,
                    enc_valid: EncodedSplit | None, device: torch.device, refit: bool) -> None:
    """Note the chosen pooling knobs in ``pooling``; with ``refit``, count the n-gram half again
    on train + valid (:func:`refit_ngram`) and say so."""
    pooling.update({"weight": float(whole.weight), "shift": float(whole.shift),
                    "temperature": float(whole.temperature), "counted_on": "train"})
    if refit and enc_valid is not None:  # None: no valid names
        refit_ngram(whole.ngram, EncodedSplit.concat(enc_train, enc_valid), device)
        pooling["counted_on"] = "train+valid"
