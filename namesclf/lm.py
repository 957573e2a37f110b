"""Character (or word) language models: vocabulary, data, teacher-forced training, held-out NLL.

A language model here learns ``p(next token | tokens so far[, language])``. Each example (a name,
or a line of a text file) becomes ``<bos> t1 .. tn <eos>``; the network reads ``<bos> t1 .. tn``
and is scored on ``t1 .. tn <eos>``, so it also learns *where names end*, and the held-out loss
counts the end token (makemore's convention; without it a model could score well and never stop).

Sources:

* a names folder (or CSV/TSV): the model is conditioned on the language, and the split is the
  classifier's grouped split (:func:`.data.split_names`), so "test" means the same names
  everywhere in the project: train on train, keep the epoch with the best valid loss, report test;
* a plain text file, one example per line: not conditioned; lines are shuffled with the seed and
  split 90/10 into train/valid when there are at least 20 of them, else every line is used for
  both (so the tiny classic examples, three lines long, can be learnt and checked).

Training reuses the project's one loop, :func:`.train.fit`; this module only supplies batches,
the masked loss and the validation callback.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import save_checkpoint
from .data import _decode, _read_bytes, load_names, split_names
from .errors import DataError, NamesError
from .models import LM_CELLS, CharLM
from .text import ALPHABET, MAX_NAME_LENGTH, to_ascii
from .train import bucketed_batches, fit, make_updater, require_at_least_one, resolve_device

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS: tuple[str, ...] = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)
UNITS = ("char", "word")
#: Below this many lines a text file is not split: train = valid = all lines (the classic toys).
MIN_LINES_TO_SPLIT = 20
TEXT_VALID_FRACTION = 0.1

# ----------------------------------------------------------------------------- vocabulary


@dataclass
class Vocab:
    """Tokens of a language model: the four specials first, then characters or words.

    Characters: the fixed model alphabet (:data:`.text.ALPHABET`) over text folded with
    :func:`.text.to_ascii`, so every model has the same 62 tokens and any input, in any script,
    encodes without unknowns. Words: the whitespace tokens of the training lines, unknown words
    map to ``<unk>`` (as in pytorch/examples' word_language_model).
    """

    tokens: list[str]
    unit: str = "char"
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise NamesError(f"unknown unit {self.unit!r}: use char or word")
        if tuple(self.tokens[: len(SPECIALS)]) != SPECIALS:
            raise NamesError("damaged vocabulary: it does not start with the special tokens")
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, unit: str, lines: Sequence[str]) -> Vocab:
        """The vocabulary for ``unit`` over training ``lines`` (ignored for characters)."""
        if unit == "char":
            return cls([*SPECIALS, *ALPHABET], "char")
        if unit == "word":
            words = sorted({w for line in lines for w in line.split()} - set(SPECIALS))
            return cls([*SPECIALS, *words], "word")
        raise NamesError(f"unknown unit {unit!r}: use char or word")

    def __len__(self) -> int:
        return len(self.tokens)

    def fold(self, text: str, prompt: bool = False) -> str:
        """The text as the model sees it; for a prompt, a trailing space is kept (``"hello "``)."""
        if self.unit == "word":
            return " ".join(text.split())
        folded = to_ascii(text)
        if prompt and folded and text[-1:].isspace():
            folded += " "
        return folded

    def split(self, text: str, prompt: bool = False) -> list[str]:
        """Tokens of ``text``: its folded characters, or its whitespace-separated words."""
        folded = self.fold(text, prompt)
        return folded.split() if self.unit == "word" else list(folded)

    def encode(self, text: str, prompt: bool = False) -> list[int]:
        return [self.index.get(t, UNK_ID) for t in self.split(text, prompt)]

    def decode(self, ids: Sequence[int]) -> str:
        """Tokens back to text; the specials (padding, begin, end) are dropped."""
        toks = [self.tokens[i] for i in ids if i >= len(SPECIALS) or i == UNK_ID]
        return (" " if self.unit == "word" else "").join(toks)

    def join(self, left: str, right: str) -> str:
        """Append generated text to a prompt: words need a space between, characters do not."""
        if self.unit == "word" and left and right:
            return f"{left} {right}"
        return left + right


# ----------------------------------------------------------------------------- data


@dataclass
class LMSource:
    """One source split into examples: ``splits[name] = (texts, languages or None)``."""

    kind: str  # "names" or "text"
    path: str
    splits: dict[str, tuple[list[str], list[str] | None]]
    languages: list[str]
    seed: int


def is_names_source(path: str | Path) -> bool:
    """A folder or a CSV/TSV holds names with languages; any other file is plain text lines."""
    p = Path(path)
    return p.is_dir() or p.suffix.lower() in (".csv", ".tsv", ".tab")


def read_text_lines(path: str | Path) -> list[str]:
    """Non-blank lines of a UTF-8 text file, stripped (same size limit and errors as names files)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    lines = [line.strip() for line in _decode(p, _read_bytes(p)).splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise DataError(f"{p}: the file has no lines of text")
    return lines


def split_text_lines(lines: Sequence[str], seed: int) -> dict[str, list[str]]:
    """Seeded 90/10 shuffle split; with fewer than 20 lines every line is in train and valid."""
    lines = list(lines)
    if len(lines) < MIN_LINES_TO_SPLIT:
        return {"train": lines, "valid": lines}
    order = np.random.default_rng(seed).permutation(len(lines))
    n_valid = max(1, round(TEXT_VALID_FRACTION * len(lines)))
    return {"train": [lines[i] for i in order[n_valid:]], "valid": [lines[i] for i in order[:n_valid]]}


def load_source(path: str | Path, seed: int = 0, unit: str = "char") -> LMSource:
    """Read a names folder/CSV (language-conditioned) or a text file, and split it reproducibly."""
    if is_names_source(path):
        data = load_names(path)
        split = split_names(data.frame, seed=seed)
        splits: dict[str, tuple[list[str], list[str] | None]] = {}
        for name in ("train", "valid", "test"):
            rows = data.frame[split == name]
            splits[name] = (rows["ascii"].tolist(), rows["language"].tolist())
        splits["all"] = (data.frame["ascii"].tolist(), data.frame["language"].tolist())
        return LMSource("names", str(path), splits, data.languages, seed)
    lines = read_text_lines(path)
    if unit == "char":
        lines = [f for f in (to_ascii(line) for line in lines) if f]
        if not lines:
            raise DataError(f"{path}: no line has any letters after folding to ASCII")
    parts = split_text_lines(lines, seed)
    splits = {name: (texts, None) for name, texts in parts.items()}
    splits["all"] = (lines, None)
    return LMSource("text", str(path), splits, [], seed)


@dataclass
class EncodedLM:
    """Examples as one padded tensor ``(L, N)``: ``<bos> tokens <eos> <pad>..``, batches are slices."""

    seq: torch.Tensor
    lengths: torch.Tensor  # tokens + 2 (begin and end)
    languages: torch.Tensor

    @classmethod
    def build(cls, texts: Sequence[str], vocab: Vocab, languages: Sequence[int] | None = None,
              max_tokens: int | None = None) -> EncodedLM:
        encoded = [vocab.encode(t)[:max_tokens] for t in texts]
        lengths = torch.tensor([len(e) + 2 for e in encoded], dtype=torch.long)
        width = int(lengths.max()) if len(encoded) else 2
        seq = torch.full((width, len(encoded)), PAD_ID, dtype=torch.long)
        for j, e in enumerate(encoded):
            seq[: len(e) + 2, j] = torch.tensor([BOS_ID, *e, EOS_ID], dtype=torch.long)
        ids = list(languages) if languages is not None else [0] * len(encoded)
        langs = torch.tensor(ids, dtype=torch.long)
        return cls(seq, lengths, langs)

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, rows: np.ndarray | torch.Tensor, device: torch.device
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(inputs, targets, languages)``: targets are the inputs shifted by one, padded with ``<pad>``."""
        rows_t = torch.as_tensor(rows, dtype=torch.long)
        width = int(self.lengths[rows_t].max())
        block = self.seq[:width, rows_t]
        return block[:-1].to(device), block[1:].to(device), self.languages[rows_t].to(device)


def balanced_batches(encoded: EncodedLM, batch_size: int, rng: np.random.Generator, power: float
                     ) -> Iterator[np.ndarray]:
    """An epoch of the same size drawn with replacement, example weight ``1 / n_language ** power``.

    ``power=0`` is the plain data mix (Russian is half the names); ``power=1`` gives every language
    the same share. In between, rare languages (108 Arabic names) are seen more often without
    being memorised outright. Batches are bucketed by length as in :func:`.train.bucketed_batches`.
    """
    langs = encoded.languages.numpy()
    counts = np.bincount(langs)
    weights = counts[langs].astype(float) ** -power
    rows = rng.choice(len(langs), size=len(langs), p=weights / weights.sum())
    chunk = batch_size * 32
    batches = []
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        part = part[np.argsort(encoded.lengths[part].numpy(), kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    for k in rng.permutation(len(batches)):
        yield batches[k]


def masked_nll(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over real tokens only: ``<pad>`` targets are ignored (``ignore_index``).

    With ``mean`` the loss is per real token, so a batch's loss does not depend on how much padding
    its longest example forced on the others.
    """
    return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                                       ignore_index=PAD_ID, reduction=reduction)


@torch.inference_mode()
def total_nll(model: CharLM, encoded: EncodedLM, device: torch.device, batch_size: int = 1024
              ) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) and the number of scored tokens (end tokens included)."""
    model.eval()
    order = torch.argsort(encoded.lengths, stable=True)
    total, count = 0.0, 0
    for start in range(0, len(order), batch_size):
        x, y, lang = encoded.batch(order[start : start + batch_size], device)
        logits, _ = model(x, lang if model.n_languages else None)
        total += float(masked_nll(logits, y, reduction="sum"))
        count += int((y != PAD_ID).sum())
    return total, count


def nll_metrics(total: float, count: int, n_examples: int) -> dict[str, float]:
    """Nats per token and perplexity (``exp`` of it) from a summed NLL."""
    per_token = total / count if count else float("nan")
    return {"nats_per_token": per_token, "perplexity": math.exp(per_token) if count else float("nan"),
            "tokens": count, "examples": n_examples}


# ----------------------------------------------------------------------------- training


@dataclass
class LMConfig:
    """Every knob of ``names lm train``. Defaults were picked by measurement (README, "Language model")."""

    unit: str = "char"
    cell: str = "rnn"
    hidden: int = 256
    embed: int = 64
    lang_embed: int = 32
    lang_init: bool = True
    lang_dropout: float = 0.1
    balance: float = 0.0
    layers: int = 1
    dropout: float = 0.1
    epochs: int = 20
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 0.01
    clip: float | None = 1.0
    patience: int = 5
    seed: int = 0
    device: str = "auto"

    def check(self) -> LMConfig:
        if self.unit not in UNITS:
            raise NamesError(f"unknown --unit {self.unit!r}: use char or word")
        if self.cell not in LM_CELLS:
            raise NamesError(f"unknown --cell {self.cell!r}: use {', '.join(LM_CELLS)}")
        require_at_least_one(self, ("hidden", "embed", "layers", "epochs", "batch_size"))
        if not 0.0 <= self.dropout < 1.0:
            raise NamesError("--dropout must be in [0, 1)")
        if self.lr <= 0:
            raise NamesError("--lr must be positive")
        return self

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LMConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def build_lm(config: dict[str, Any], vocab_size: int, n_languages: int) -> CharLM:
    """The network for a stored config (see :class:`LMConfig`)."""
    return CharLM(vocab_size, n_languages, cell=config["cell"], hidden_size=config["hidden"],
                  embed_size=config["embed"], lang_size=config.get("lang_embed", 32),
                  num_layers=config.get("layers", 1), dropout=config.get("dropout", 0.0),
                  pad_index=PAD_ID, never_next=(PAD_ID, BOS_ID), lang_init=config.get("lang_init", False))


@dataclass
class LanguageModel:
    """A trained model with what it needs to read and write text: vocabulary, languages, known names."""

    model: CharLM
    vocab: Vocab
    languages: list[str]
    known: list[str]
    config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    _known_keys: frozenset[str] | None = field(default=None, init=False, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def known_keys(self) -> frozenset[str]:
        """Training examples, lower-cased: a generated ``IVANOV`` is not new if ``Ivanov`` was seen."""
        if self._known_keys is None:
            self._known_keys = frozenset(k.lower() for k in self.known)
        return self._known_keys

    def language_index(self, language: str | None) -> int | None:
        """Index of ``language`` (case-insensitive); ``None`` for an unconditioned model."""
        if not self.languages:
            if language:
                raise NamesError(f"this model was trained on a text file and knows no languages "
                                 f"(drop {language!r})")
            return None
        if not language:
            raise NamesError("this model is conditioned on a language: name one of "
                             f"{', '.join(self.languages)}")
        for i, lang in enumerate(self.languages):
            if lang.lower() == language.strip().lower():
                return i
        raise NamesError(f"unknown language {language!r}: this model knows {', '.join(self.languages)}")

    @classmethod
    def from_payload(cls, payload: dict[str, Any], device: str | torch.device = "cpu") -> LanguageModel:
        """Rebuild from a loaded ``kind="lm"`` model file; a damaged file is a one-line error."""
        try:
            meta = payload.get("meta", {})
            vocab = Vocab(list(meta["vocab"]), meta.get("unit", payload["config"]["unit"]))
            languages = list(payload.get("labels", []))
            model = build_lm(payload["config"], len(vocab), len(languages))
            model.load_state_dict(payload["state_dict"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise NamesError(f"language model file is damaged: {str(exc).splitlines()[0]}") from None
        model.to(device).eval()
        return cls(model, vocab, languages, list(meta.get("known", [])), dict(payload["config"]), meta)


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
    """The dict :func:`.checkpoint.save_checkpoint` writes: plain types only (``weights_only`` loads it)."""
    return {
        "kind": "lm",
        "config": asdict(config),
        "state_dict": {k: v.detach().cpu().clone() for k, v in lm.model.state_dict().items()},
        "labels": list(lm.languages),
        "meta": {**meta, "vocab": list(lm.vocab.tokens), "unit": lm.vocab.unit, "known": list(lm.known)},
    }


def _language_ids(langs: list[str] | None, languages: list[str]) -> list[int] | None:
    if langs is None or not languages:
        return None
    index = {lang: i for i, lang in enumerate(languages)}
    return [index[x] for x in langs]


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
    leaves a loadable model. ``source`` is a path or an already loaded :class:`LMSource`.
    """
    cfg = (config or LMConfig()).check()
    src = source if isinstance(source, LMSource) else load_source(source, seed=cfg.seed, unit=cfg.unit)
    if src.kind == "names" and cfg.unit == "word":
        raise NamesError("--unit word needs a text file: every name in a names folder is a single word")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = resolve_device(cfg.device)
    train_texts, train_langs = src.splits["train"]
    valid_texts, valid_langs = src.splits["valid"]
    if not valid_texts:  # a names set too small to hold out any: select on train, as for tiny text files
        valid_texts, valid_langs = train_texts, train_langs
    vocab = Vocab.build(cfg.unit, train_texts)
    languages = list(src.languages)
    max_tokens = MAX_NAME_LENGTH if src.kind == "names" else None
    enc_train = EncodedLM.build(train_texts, vocab, _language_ids(train_langs, languages), max_tokens)
    enc_valid = EncodedLM.build(valid_texts, vocab, _language_ids(valid_langs, languages), max_tokens)
    model = build_lm(asdict(cfg), len(vocab), len(languages)).to(device)
    known = sorted(set(train_texts))
    lm = LanguageModel(model, vocab, languages, known, asdict(cfg))
    updater = make_updater("adamw", model.parameters(), cfg.lr, cfg.weight_decay)
    conditioned = bool(languages)
    meta: dict[str, Any] = {
        "source": src.path, "source_kind": src.kind, "split_seed": src.seed,
        "n_train": len(train_texts), "n_valid": len(valid_texts),
        "n_test": len(src.splits["test"][0]) if "test" in src.splits else 0,
        "max_len": int(enc_train.lengths.max()) - 2,
    }

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        if conditioned and cfg.balance > 0:
            rows_iter = balanced_batches(enc_train, cfg.batch_size, rng, cfg.balance)
        else:
            rows_iter = bucketed_batches(enc_train.lengths, cfg.batch_size, rng)
        for rows in rows_iter:
            yield enc_train.batch(rows, device)

    def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y, lang = batch
        if conditioned and cfg.lang_dropout > 0:  # teach the "any language" slot guidance contrasts with
            dropped = torch.rand(lang.shape, device=lang.device) < cfg.lang_dropout
            lang = lang.masked_fill(dropped, model.any_language)
        logits, _ = m(x, lang if conditioned else None)
        return masked_nll(logits, y)

    def validate(m: nn.Module) -> dict[str, float]:
        total, count = total_nll(model, enc_valid, device)
        per_token = total / count
        return {"valid_nats": per_token, "valid_perplexity": math.exp(per_token)}

    best_state: dict[str, Any] = {}

    def on_best(epoch: int, metrics: dict[str, float], hist: list[dict[str, float]]) -> None:
        best_state["weights"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        best_state["metrics"] = metrics
        if out is not None:
            save_checkpoint(out, lm_payload(lm, cfg, {**meta, "history": hist, "best_epoch": epoch,
                                                      "valid": metrics}))

    steps = math.ceil(len(enc_train) / cfg.batch_size)
    started = time.perf_counter()
    interrupted = False
    try:
        result = fit(model, updater, batches, loss_fn, validate, epochs=cfg.epochs, score="valid_nats",
                     higher_is_better=False, patience=cfg.patience, lr=cfg.lr, clip=cfg.clip,
                     steps_per_epoch=steps, on_best=on_best, progress=progress, desc=f"lm {cfg.cell}")
        history, best_epoch, stopped = result.history, result.best_epoch, result.stopped_early
    except KeyboardInterrupt:
        if not best_state:
            raise
        interrupted = True
        history, best_epoch, stopped = [], int(best_state["metrics"]["epoch"]), False
    seconds = time.perf_counter() - started
    model.load_state_dict(best_state["weights"])
    model.eval()
    valid = nll_metrics(*total_nll(model, enc_valid, device), len(enc_valid))
    test: dict[str, float] = {}
    if src.kind == "names" and src.splits["test"][0]:
        test_texts, test_langs = src.splits["test"]
        enc_test = EncodedLM.build(test_texts, vocab, _language_ids(test_langs, languages), max_tokens)
        test = nll_metrics(*total_nll(model, enc_test, device), len(enc_test))
    meta.update({"history": history, "best_epoch": best_epoch, "valid": valid, "test": test,
                 "train_seconds": seconds, "interrupted": interrupted})
    lm.meta = meta
    if out is not None and not interrupted:
        save_checkpoint(out, lm_payload(lm, cfg, meta))
    return LMTrainResult(lm, history, best_epoch, valid, test, seconds, stopped, interrupted)


# ----------------------------------------------------------------------------- evaluation


def evaluate_lm(lm: LanguageModel, source: str | Path, split: str | None = None) -> dict[str, Any]:
    """Held-out nats per token (end token counted) and perplexity of ``lm`` on a split of ``source``.

    The split is rebuilt with the seed stored in the model file, so ``test`` is exactly the names the
    training run never saw. ``split=None`` means ``test`` for names and ``valid`` for text files
    (a text file has no test part). Names of languages the model does not know are skipped.
    """
    seed = int(lm.meta.get("split_seed", 0))
    src = load_source(source, seed=seed, unit=lm.vocab.unit)
    split = split or ("test" if src.kind == "names" else "valid")
    if split not in src.splits:
        raise NamesError(f"a text file has only train, valid and all splits (not {split!r})")
    texts, langs = src.splits[split]
    skipped = 0
    lang_ids: list[int] | None = None
    if lm.languages:
        if langs is None:
            raise NamesError("this model is conditioned on languages: evaluate it on a names folder or CSV")
        index = {lang: i for i, lang in enumerate(lm.languages)}
        keep = [i for i, lang in enumerate(langs) if lang in index]
        skipped = len(texts) - len(keep)
        texts, lang_ids = [texts[i] for i in keep], [index[langs[i]] for i in keep]
    if not texts:
        raise NamesError(f"no examples to evaluate in the {split} split of {source}")
    max_tokens = MAX_NAME_LENGTH if src.kind == "names" else None
    encoded = EncodedLM.build(texts, lm.vocab, lang_ids, max_tokens)
    metrics = nll_metrics(*total_nll(lm.model, encoded, lm.device), len(encoded))
    return {"source": str(source), "split": split, "unit": lm.vocab.unit, "skipped_unknown_language": skipped,
            **metrics}
