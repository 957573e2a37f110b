"""Unicode -> ASCII folding, the model alphabet, and name <-> tensor encodings.

Every model in the project sees names through this module, so a name typed as ``Ślusàrski``,
``Slusarski`` or ``ŚLUSÀRSKI``-with-a-zero-width-space all reach the model the same way.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from anyascii import anyascii

if TYPE_CHECKING:  # prediction folds and encodes without torch; only the tensor helpers need it
    import torch

#: The tutorial's alphabet (ASCII letters and `` .,;'``) plus the hyphen of double-barrelled names.
ALPHABET: str = string.ascii_letters + " .,;'-"
N_LETTERS: int = len(ALPHABET)
#: Index used for padding in embedding-based models (one past the last letter).
PAD_INDEX: int = N_LETTERS
#: Names are capped at this many characters: real surnames are far shorter, and a cap keeps a
#: 100,000-character input from costing 100,000 RNN steps.
MAX_NAME_LENGTH: int = 64

_INDEX = {c: i for i, c in enumerate(ALPHABET)}
# byte -> alphabet index; bytes outside the alphabet map to N_LETTERS + 1 and are dropped
_BYTE_INDEX = np.full(256, N_LETTERS + 1, dtype=np.int64)
_BYTE_INDEX[[ord(c) for c in ALPHABET]] = np.arange(N_LETTERS)
# Apostrophe look-alikes that anyascii would otherwise map to other characters or drop.
_APOSTROPHES = dict.fromkeys(map(ord, "\u2019\u2018\u201b\u02bc\u02bb\u2032\u00b4\u0060\uff07"), "'")
_SPACES = re.compile(r"\s+")
_OUTSIDE = re.compile(r"[^A-Za-z .,;'\-]+")


def _strip_latin_marks(text: str) -> str:
    """Drop combining marks that sit on an ASCII base letter (``à`` -> ``a``).

    Marks on non-Latin letters stay, so anyascii still sees ``й`` (not ``и`` + breve) and gives
    ``y``: ``Достоевский`` -> ``Dostoevskiy`` rather than ``Dostoevskii``.
    """
    out: list[str] = []
    for ch in text:
        if ch.isascii():
            out.append(ch)
            continue
        decomposed = unicodedata.normalize("NFD", ch)
        if decomposed[0].isascii() and all(unicodedata.combining(c) for c in decomposed[1:]):
            out.append(decomposed[0])
        elif unicodedata.combining(ch):
            continue  # an orphan combining mark carries no letter
        else:
            out.append(ch)
    return "".join(out)


def to_ascii(text: str) -> str:
    """Fold any Unicode string to the model alphabet.

    Steps: typographic apostrophes become ``'``; zero-width and control characters vanish;
    combining marks on Latin letters are dropped (NFD); symbols such as emoji are dropped; what is
    still not ASCII is transliterated
    with anyascii (``Достоевский`` -> ``Dostoevskiy``); anything outside :data:`ALPHABET` is
    dropped and runs of spaces collapse. The result may be empty (``"😀"``, ``"123"``).

    >>> to_ascii("Ślusàrski")
    'Slusarski'
    """
    text = text.translate(_APOSTROPHES)
    if not text.isascii():  # the per-character work only for text that needs it
        text = "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf") or c.isspace())
        text = _strip_latin_marks(unicodedata.normalize("NFC", text))
        # Symbols (emoji, currency, math) are not letters of a name: anyascii would spell 😀 as
        # ":grinning:", which must not become the "name" grinning.
        text = anyascii("".join(c for c in text if c.isascii() or unicodedata.category(c)[0] != "S"))
    text = _OUTSIDE.sub("", _SPACES.sub(" ", text))
    return _SPACES.sub(" ", text).strip()


_SPACES_IN_LINE = re.compile(r"[^\S\n]+")
_OUTSIDE_IN_LINE = re.compile(r"[^A-Za-z .,;'\-\n]+")


def to_ascii_many(texts: Sequence[str]) -> list[str]:
    """``[to_ascii(t) for t in texts]``, with the ASCII texts folded together: one pass of each
    pattern over them all joined by newlines (which the line-bound patterns never cross) instead
    of three per text, since full-name prediction folds hundreds of thousands of distinct parts."""
    out = list(texts)
    plain = [i for i, t in enumerate(out) if t.isascii() and "\n" not in t]
    plain_set = set(plain)
    for i, t in enumerate(out):
        if i not in plain_set:
            out[i] = to_ascii(t)
    if plain:
        joined = "\n".join(out[i] for i in plain).translate(_APOSTROPHES)
        joined = _SPACES_IN_LINE.sub(" ", _OUTSIDE_IN_LINE.sub("", _SPACES_IN_LINE.sub(" ", joined)))
        for i, folded in zip(plain, joined.split("\n"), strict=True):
            out[i] = folded.strip()
    return out


def encode(name: str) -> list[int]:
    """Indices of an already-folded name in :data:`ALPHABET` (unknown characters are skipped)."""
    return [_INDEX[c] for c in name[:MAX_NAME_LENGTH] if c in _INDEX]


def decode(indices: Sequence[int]) -> str:
    """Inverse of :func:`encode`; padding indices are ignored."""
    return "".join(ALPHABET[i] for i in indices if 0 <= i < N_LETTERS)


def line_to_tensor(name: str) -> torch.Tensor:
    """The tutorial's one-hot line tensor, shape ``<len x 1 x n_letters>``."""
    import torch

    idx = encode(name)
    tensor = torch.zeros(len(idx), 1, N_LETTERS)
    if idx:
        tensor[torch.arange(len(idx)), 0, torch.tensor(idx)] = 1.0
    return tensor


def encode_batch(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Pad a batch of folded names to ``(max_len, batch)`` int64 indices and their lengths (numpy).

    Padding uses :data:`PAD_INDEX`. Every name must encode to at least one letter; callers fold
    and filter first (an empty name has no last letter to read a prediction from). Encoding goes
    through a byte lookup table and numpy, not a tensor per name, which would otherwise be a large
    share of prediction (docs/benchmarks.md#prediction-speed).
    """
    raw = [n.encode("ascii", "ignore")[:MAX_NAME_LENGTH] for n in names]
    # One lookup over all names joined, not one array per name: per-name numpy calls would be a
    # large share of prediction (docs/benchmarks.md#prediction-speed).
    codes = _BYTE_INDEX[np.frombuffer(b"".join(raw), dtype=np.uint8)]
    lengths = np.fromiter(map(len, raw), dtype=np.int64, count=len(raw))
    known = codes < N_LETTERS
    if not known.all():  # skip unknown bytes
        owner = np.repeat(np.arange(len(raw)), lengths)
        lengths = np.bincount(owner[known], minlength=len(raw)).astype(np.int64)
        codes = codes[known]
    if len(raw) and lengths.min() == 0:
        raise ValueError("cannot encode an empty name")
    width = int(lengths.max()) if len(raw) else 0
    out = np.full((width, len(raw)), PAD_INDEX, dtype=np.int64)
    if len(raw):
        # fill column-major: out.T[mask] walks names in order, letters in order within each
        out.T[np.arange(width) < lengths[:, None]] = codes
    return out, lengths


def batch_indices(names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`encode_batch` as tensors (what the networks take)."""
    import torch

    idx, lengths = encode_batch(names)
    return torch.from_numpy(idx), torch.from_numpy(lengths)


def batch_one_hot(names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded one-hot batch ``<max_len x batch x n_letters>`` (zeros at padding) and lengths."""
    idx, lengths = batch_indices(names)
    return one_hot(idx), lengths


def one_hot(idx: torch.Tensor) -> torch.Tensor:
    """One-hot of padded indices; the padding index becomes an all-zero row."""
    import torch

    return torch.nn.functional.one_hot(idx, N_LETTERS + 1)[..., :N_LETTERS].float()
