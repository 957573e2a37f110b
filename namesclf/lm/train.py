"""Training a language model: teacher forcing through the project's one loop, :func:`~namesclf.training.loop.fit`.

This module supplies the batches (language-balanced when asked), the masked loss and the
validation callback; the loop keeps the best epoch and handles Ctrl-C. What a language model is
and how it reads text lives in :mod:`namesclf.lm.model`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from namesclf.config import LMConfig
from namesclf.errors import NamesError
from namesclf.lm.data import EncodedLM, LMSource, Vocab, load_source
from namesclf.lm.model import LanguageModel, build_lm, language_ids, masked_nll, nll_metrics, total_nll
from namesclf.models.checkpoint import save_checkpoint
from namesclf.text import MAX_NAME_LENGTH
from namesclf.training.batches import length_bucketed_batches
from namesclf.training.loop import LoopSettings, fit, loop_clip, make_updater, resolve_device


@dataclass
class LMTrainResult:
    """What :func:`train_lm` returns: the model (best epoch) and its figures."""

    lm: LanguageModel
    history: list[dict[str, float]]
    best_epoch: int
    valid: dict[str, float]
    test: dict[str, float]
    seconds: float
    stopped_early: bool
    interrupted: bool = False


def lm_payload(lm: LanguageModel, config: LMConfig, meta: dict[str, Any]) -> dict[str, Any]:
    """The dict :func:`~namesclf.models.checkpoint.save_checkpoint` writes: plain types only
    (``weights_only`` loads it)."""
    return {
        "kind": "lm",
        "config": config.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in lm.model.state_dict().items()},
        "labels": list(lm.languages),
        "meta": {**meta, "vocab": list(lm.vocab.tokens), "unit": lm.vocab.unit, "known": list(lm.known)},
    }


def language_weights(encoded: EncodedLM, power: float) -> np.ndarray:
    """Sampling weight ``1 / n_language ** power`` per example.

    ``power=0`` is the plain data mix (Russian is half the names); ``power=1`` gives every language
    the same share. In between, rare languages (108 Arabic names) are seen more often without
    being memorised outright.
    """
    langs = encoded.languages.numpy()
    return np.bincount(langs)[langs].astype(float) ** -power


def _encode_splits(src: LMSource, cfg: LMConfig) -> tuple[Vocab, EncodedLM, EncodedLM, EncodedLM | None]:
    """The vocabulary (from the training texts) and the encoded train, valid and test splits."""
    train_texts, train_langs = src.splits["train"]
    valid_texts, valid_langs = src.splits["valid"]
    if not valid_texts:  # a names set too small to hold out any: select on train, as for tiny text files
        valid_texts, valid_langs = train_texts, train_langs
    vocab = Vocab.build(cfg.unit, train_texts)
    max_tokens = MAX_NAME_LENGTH if src.kind == "names" else None

    def encode(texts: list[str], langs: list[str] | None) -> EncodedLM:
        return EncodedLM.build(texts, vocab, language_ids(langs, src.languages), max_tokens)

    test = None
    if src.kind == "names" and src.splits["test"][0]:
        test = encode(*src.splits["test"])
    return vocab, encode(train_texts, train_langs), encode(valid_texts, valid_langs), test


def held_out(model: nn.Module, encoded: EncodedLM, device: torch.device) -> dict[str, float]:
    """Nats per token and perplexity of ``model`` on ``encoded`` (end tokens counted)."""
    return nll_metrics(*total_nll(model, encoded, device), len(encoded))


@dataclass
class LMBatches:
    """One epoch's batches for :func:`~namesclf.training.loop.fit`: length-bucketed, drawn by
    ``weights`` when given (:func:`language_weights`)."""

    encoded: EncodedLM
    batch_size: int
    rng: np.random.Generator
    device: torch.device
    weights: np.ndarray | None = None

    def __call__(self, epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        for rows in length_bucketed_batches(self.encoded.lengths, self.batch_size, self.rng, self.weights):
            yield self.encoded.batch(rows, self.device)


@dataclass
class LMLoss:
    """Teacher forcing's loss: :func:`~namesclf.lm.model.masked_nll` of the next tokens. A conditioned
    model sees its language, replaced by the "any language" slot with probability ``lang_dropout``,
    which teaches that slot what guided sampling contrasts with."""

    conditioned: bool
    lang_dropout: float
    any_language: int

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y, lang = batch
        if self.conditioned and self.lang_dropout > 0:
            dropped = torch.rand(lang.shape, device=lang.device) < self.lang_dropout
            lang = lang.masked_fill(dropped, self.any_language)
        logits, _ = model(x, lang if self.conditioned else None)
        return masked_nll(logits, y)


def _lm_meta(src: LMSource, enc_train: EncodedLM, enc_valid: EncodedLM) -> dict[str, Any]:
    """What the model file records about the source and its split before training."""
    return {"source": src.path, "source_kind": src.kind, "split_seed": src.seed,
            "n_train": len(enc_train), "n_valid": len(enc_valid),
            "n_test": len(src.splits["test"][0]) if "test" in src.splits else 0,
            "max_len": int(enc_train.lengths.max()) - 2}


def _lm_settings(cfg: LMConfig, updater: Any, n_train: int) -> LoopSettings:
    """The loop's settings for a language model: the epoch with the lowest valid nats/token is kept."""
    return LoopSettings(epochs=cfg.epochs, steps_per_epoch=math.ceil(n_train / cfg.batch_size), lr=cfg.lr,
                        score="valid_nats", higher_is_better=False, patience=cfg.patience,
                        clip=loop_clip(updater, cfg.clip),
                        desc=f"lm {cfg.cell}")


def train_lm(
    source: str | Path | LMSource,
    config: LMConfig | None = None,
    *,
    out: str | Path | None = None,
    progress: bool | None = None,
) -> LMTrainResult:
    """Train a language model on ``source`` and keep the epoch with the lowest valid nats/token.

    Teacher forcing: every step's input is the true previous token. ``out``, when given, is written
    atomically at each new best epoch and once more at the end with the test figures, so Ctrl-C
    leaves a loadable model (:func:`~namesclf.training.loop.fit` keeps the best epoch; before the first one it raises
    :class:`.TrainingInterrupted`). ``source`` is a path or an already loaded :class:`LMSource`.
    """
    cfg = (config or LMConfig()).resolved()
    src = source if isinstance(source, LMSource) else load_source(source, seed=cfg.seed, unit=cfg.unit)
    if src.kind == "names" and cfg.unit == "word":
        raise NamesError("--unit word needs a text file: every name in a names folder is a single word")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = resolve_device(cfg.device)
    vocab, enc_train, enc_valid, enc_test = _encode_splits(src, cfg)
    languages = list(src.languages)
    conditioned = bool(languages)
    model = build_lm(cfg, len(vocab), len(languages)).to(device)
    lm = LanguageModel(model, vocab, languages, sorted(set(src.splits["train"][0])), cfg.to_dict())
    updater = make_updater("adamw", model.parameters(), cfg.lr, cfg.weight_decay)
    weights = language_weights(enc_train, cfg.balance) if conditioned and cfg.balance > 0 else None
    meta = _lm_meta(src, enc_train, enc_valid)

    def on_best(epoch: int, metrics: dict[str, float], hist: list[dict[str, float]]) -> None:
        save_checkpoint(out, lm_payload(lm, cfg, {**meta, "history": hist, "best_epoch": epoch, "valid": metrics}))

    started = time.perf_counter()
    result = fit(model, updater, LMBatches(enc_train, cfg.batch_size, rng, device, weights),
                 LMLoss(conditioned, cfg.lang_dropout, model.any_language),
                 lambda m: _selection_figures(held_out(m, enc_valid, device)),
                 _lm_settings(cfg, updater, len(enc_train)),
                 on_best=on_best if out is not None else None, progress=progress)
    seconds = time.perf_counter() - started
    valid = held_out(model, enc_valid, device)
    test = held_out(model, enc_test, device) if enc_test is not None else {}
    meta.update({"history": result.history, "best_epoch": result.best_epoch, "valid": valid, "test": test,
                 "train_seconds": seconds, "interrupted": result.interrupted})
    lm.meta = meta
    if out is not None and not result.interrupted:
        save_checkpoint(out, lm_payload(lm, cfg, meta))
    return LMTrainResult(lm, result.history, result.best_epoch, valid, test, seconds, result.stopped_early,
                         result.interrupted)


def _selection_figures(figures: dict[str, float]) -> dict[str, float]:
    """The per-epoch validation figures: nats per token (what chooses the epoch) and perplexity."""
    per_token = figures["nats_per_token"]
    return {"valid_nats": per_token, "valid_perplexity": math.exp(per_token)}
