"""Character (or word) language models: vocabulary, data, the trained model, held-out NLL.

A language model here learns ``p(next token | tokens so far[, language])``. Each example (a name,
or a line of a text file) becomes ``<bos> t1 .. tn <eos>``; the network reads ``<bos> t1 .. tn``
and is scored on ``t1 .. tn <eos>``, so it also learns *where names end*, and the held-out loss
counts the end token (makemore's convention; without it a model could score well and never stop).

Sources:

* a names folder (or CSV/TSV): the model is conditioned on the language, and the split is the
  classifier's grouped split (:func:`~namesclf.data.dataset.split_names`), so "test" means the same names
  everywhere in the project: train on train, keep the epoch with the best valid loss, report test;
* a plain text file, one example per line: not conditioned; lines are shuffled with the seed and
  split 90/10 into train/valid when there are at least 20 of them, else every line is used for
  both (so the tiny classic examples, three lines long, can be learnt and checked).

Nothing here trains: :mod:`namesclf.lm.train` does, so sampling (:mod:`namesclf.lm.generate`) never imports training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from namesclf.config import UNITS
from namesclf.data.dataset import load_names, read_text_file, split_names
from namesclf.errors import DataError, NamesError
from namesclf.text import ALPHABET, to_ascii

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS: tuple[str, ...] = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)
#: Below this many lines a text file is not split: train = valid = all lines (the classic toys).
MIN_LINES_TO_SPLIT = 20
TEXT_VALID_FRACTION = 0.1

# ----------------------------------------------------------------------------- vocabulary


@dataclass
class Vocab:
    """Tokens of a language model: the four specials first, then characters or words.

    Characters: the fixed model alphabet (:data:`~namesclf.text.ALPHABET`) over text folded with
    :func:`~namesclf.text.to_ascii`, so every model has the same 62 tokens and any input, in any script,
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
    lines = [line.strip() for line in read_text_file(p).splitlines()]
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
