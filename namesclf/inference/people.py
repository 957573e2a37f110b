"""Full names at scale: each raw name read once, each distinct part folded and scored once.

A million full names drawn from a customer list are mostly distinct as whole names, but their
given names and surnames repeat: a million lines hold a few hundred thousand distinct parts. So
a model that reads full names (:mod:`namesclf.inference.parts`) is fed here in bulk:

* the names are split by :func:`~namesclf.data.fullnames.split_many` (plain names from their
  words' cached bits, nameparser for the rest), in the order the options say;
* each part's folding and probabilities are kept in a :class:`PartCache` across calls, so the
  batches of a streamed file score each distinct surname and given name once, not once a batch;
* the two parts' probabilities are gathered to one row per name and handed to the model's
  combiner as they are.

A surname model reads names as it always has (:func:`~namesclf.inference.answers.surname_of_name`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from namesclf.data.fullnames import MAX_RAW_LENGTH, split_many
from namesclf.inference.answers import fold, surname_of_name
from namesclf.inference.options import Options
from namesclf.inference.parts import align, score_distinct
from namesclf.text import to_ascii_many

__all__ = ["PART_CACHE_BYTES", "PartCache", "read_ahead", "score_people", "split_people"]

#: Most bytes of probabilities a :class:`PartCache` keeps per part (it starts afresh when full):
#: 64 MiB is about 490,000 parts of a 34-label model.
PART_CACHE_BYTES = 64 << 20


def split_people(predictor: Any, names: Sequence[str], options: Options) -> tuple[list[str], list[str]]:
    """``(surnames, given names)`` of raw names as ``options`` says to read them: parsed in
    ``options.order`` (:func:`~namesclf.data.fullnames.split_many`); with ``surname_only``, a
    surname model reads each name as it is and a full-name model leaves the given names out.
    A surname part with no letters (``"A 0"``) falls back to the whole name."""
    full = predictor.given is not None
    if options.surname_only and not full:
        return list(names), [""] * len(names)
    if options.order == "auto" and not full:
        return [surname_of_name(name) for name in names], [""] * len(names)
    givens, surnames = split_many(names, options.order)
    folded = predictor.part_cache("surname").fold(surnames)
    for i in [i for i, f in enumerate(folded) if not f]:
        if surnames[i] != names[i] and fold(names[i]):
            surnames[i], givens[i] = names[i], ""
    if options.surname_only:
        givens = [""] * len(names)
    return surnames, givens


class PartCache:
    """The folded form and probabilities of the parts one part model has answered, by raw text.

    Rows live in one growing array, so a batch's rows are one gather. When the next batch's new
    parts would take it past ``max_bytes`` it starts afresh (a bound, not an LRU: what a stream
    repeats comes back at once). One lock guards it, for predictors shared by threads.
    """

    def __init__(self, n_labels: int, max_bytes: int = PART_CACHE_BYTES) -> None:
        self.limit = max(1, max_bytes // (4 * max(1, n_labels)))
        self.n_labels = n_labels
        self._folded: dict[str, str] = {}
        self._rows: dict[str, int] = {}
        self._proba = np.empty((0, n_labels), dtype=np.float32)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def fold(self, parts: Sequence[str]) -> list[str]:
        """Each part folded to the model alphabet (:func:`~namesclf.text.to_ascii_many`), each
        distinct one once over the cache's life."""
        with self._lock:
            known = self._folded
            new = [p for p in dict.fromkeys(parts) if p not in known]
            if len(known) + len(new) > self.limit:
                known.clear()
            known.update(zip(new, to_ascii_many([p[:MAX_RAW_LENGTH] for p in new]), strict=True))
            return [known[p] for p in parts]

    def proba(self, folded: Sequence[str], score: Callable[..., tuple[np.ndarray, Any]]) -> np.ndarray:
        """Probabilities ``(N, n_labels)`` of folded, non-empty parts; ``score`` (a predictor's
        ``score_ascii``) runs on the distinct parts the cache has not seen."""
        with self._lock:
            new = [p for p in dict.fromkeys(folded) if p not in self._rows]
            if len(new) > self.limit:  # more than the cache holds: score this batch alone
                return score_distinct(score, folded)[0]
            if len(self._rows) + len(new) > self.limit:  # start afresh before, so no row of this batch goes
                self._rows.clear()
                new = list(dict.fromkeys(folded))
            if new:
                self._insert(new, score(new)[0])
            rows = self._rows
            index = np.fromiter((rows[p] for p in folded), dtype=np.int64, count=len(folded))
            return self._proba[index]

    def add(self, folded: Sequence[str], score: Callable[..., tuple[np.ndarray, Any]]) -> None:
        """Score the non-empty parts of ``folded`` the cache has not seen, without holding the lock
        while the graph runs: another thread may read the cache meanwhile (:func:`read_ahead`)."""
        with self._lock:
            new = [p for p in dict.fromkeys(folded) if p and p not in self._rows]
        if new and len(new) <= self.limit:
            scored = score(new)[0]
            with self._lock:
                self._insert(new, scored)

    def _insert(self, new: list[str], scored: np.ndarray) -> None:
        """Add the rows of parts not cached yet (under the lock), starting afresh when full."""
        keep = [i for i, p in enumerate(new) if p not in self._rows]
        if len(self._rows) + len(keep) > self.limit:
            self._rows.clear()
            self._proba = self._proba[:0]
            keep = list(range(len(new)))
        start = len(self._rows)
        self._grow(start + len(keep))
        self._proba[start:] = scored[keep]
        self._rows.update(zip([new[i] for i in keep], range(start, start + len(keep)), strict=True))

    def _grow(self, size: int) -> None:
        """Room for ``size`` rows (the array's capacity doubles; its view is ``size`` rows long)."""
        base = self._proba.base if self._proba.base is not None else self._proba
        if size > len(base):
            bigger = np.empty((max(size, 2 * len(base), 1024), self.n_labels), dtype=np.float32)
            bigger[: len(self._proba)] = self._proba
            base = bigger
        self._proba = base[:size]


def score_people(predictor: Any, surnames: Sequence[str], givens: Sequence[str], features: bool = False
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Probabilities ``(N, n_languages)`` (and the surname part's novelty features) of folded,
    non-empty surnames with their folded given names (``''``: none), from a full-name model:
    each part's rows from its :class:`PartCache` (the novelty features bypass it), combined by the
    model's combiner."""
    if features:
        proba, found = score_distinct(predictor.score_ascii, surnames, features)
    else:
        proba, found = predictor.part_cache("surname").proba(surnames, predictor.score_ascii), None
    has_given = np.fromiter(map(bool, givens), dtype=bool, count=len(givens))
    given_proba = np.ones_like(proba)
    if has_given.any():
        rows = np.flatnonzero(has_given)
        scored = predictor.part_cache("given").proba([givens[i] for i in rows], predictor.given.score_ascii)
        given_proba[rows] = align(scored, predictor._given_index)
    return predictor.combiner(proba, given_proba, has_given), found


def read_ahead(predictor: Any, names: Sequence[str], options: Options) -> dict[str, tuple[str, str]]:
    """Split the distinct ``names`` (:func:`split_people`) and score their parts into the part
    caches, for a full-name model: what a stream does for its next batch on a second thread while
    it writes this one (the graphs run without Python's lock). Returns each name's ``(surname,
    given names)`` for :meth:`~namesclf.inference.predictor.Predictor.scored`'s ``given``."""
    distinct = list(dict.fromkeys(names))
    surnames, givens = split_people(predictor, distinct, options)
    predictor.part_cache("surname").add(predictor.part_cache("surname").fold(surnames), predictor.score_ascii)
    predictor.part_cache("given").add(predictor.part_cache("given").fold(givens), predictor.given.score_ascii)
    return dict(zip(distinct, zip(surnames, givens, strict=True), strict=True))
