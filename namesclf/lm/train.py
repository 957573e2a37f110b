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
from namesclf.training.loop import fit, loop_clip, make_updater, resolve_device


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
    meta: dict[str, Any] = {"source": src.path, "source_kind": src.kind, "split_seed": src.seed,
                            "n_train": len(enc_train), "n_valid": len(enc_valid),
                            "n_test": len(src.splits["test"][0]) if "test" in src.splits else 0,
                            "max_len": int(enc_train.lengths.max()) - 2}

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        for rows in length_bucketed_batches(enc_train.lengths, cfg.batch_size, rng, weights):
            yield enc_train.batch(rows, device)

    def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y, lang = batch
        if conditioned and cfg.lang_dropout > 0:  # teach the "any language" slot guidance contrasts with
            dropped = torch.rand(lang.shape, device=lang.device) < cfg.lang_dropout
            lang = lang.masked_fill(dropped, model.any_language)
        logits, _ = m(x, lang if conditioned else None)
        return masked_nll(logits, y)

    def validate(m: nn.Module) -> dict[str, float]:
        per_token = nll_metrics(*total_nll(model, enc_valid, device), len(enc_valid))["nats_per_token"]
        return {"valid_nats": per_token, "valid_perplexity": math.exp(per_token)}

    def on_best(epoch: int, metrics: dict[str, float], hist: list[dict[str, float]]) -> None:
        if out is not None:
            save_checkpoint(out, lm_payload(lm, cfg, {**meta, "history": hist, "best_epoch": epoch,
                                                      "valid": metrics}))

    started = time.perf_counter()
    result = fit(model, updater, batches, loss_fn, validate, epochs=cfg.epochs, score="valid_nats",
                 higher_is_better=False, patience=cfg.patience, lr=cfg.lr, clip=loop_clip(updater, cfg.clip),
                 steps_per_epoch=math.ceil(len(enc_train) / cfg.batch_size), on_best=on_best, progress=progress,
                 desc=f"lm {cfg.cell}")
    seconds = time.perf_counter() - started
    valid = nll_metrics(*total_nll(model, enc_valid, device), len(enc_valid))
    test = nll_metrics(*total_nll(model, enc_test, device), len(enc_test)) if enc_test is not None else {}
    meta.update({"history": result.history, "best_epoch": result.best_epoch, "valid": valid, "test": test,
                 "train_seconds": seconds, "interrupted": result.interrupted})
    lm.meta = meta
    if out is not None and not result.interrupted:
        save_checkpoint(out, lm_payload(lm, cfg, meta))
    return LMTrainResult(lm, result.history, result.best_epoch, valid, test, seconds, result.stopped_early,
                         result.interrupted)
