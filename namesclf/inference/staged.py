"""The stages every prediction runs, and the answers made from them.

:meth:`~namesclf.inference.predictor.Predictor.scored` reads the names (cut to the part to
classify, folded), scores them, applies their scripts' evidence and the prior, and leaves a
:class:`Scored`: the one matrix that :meth:`~namesclf.inference.predictor.Predictor.proba_with`
returns, that :func:`answers` turns into :class:`~namesclf.inference.answers.Prediction` objects,
and that the CSV writer (:mod:`namesclf.inference.output`) turns into lines without them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from namesclf.inference.answers import Prediction
from namesclf.inference.explain import explain_name
from namesclf.inference.groups import groups_in_set
from namesclf.inference.options import Options
from namesclf.inference.scripts import SCRIPT

__all__ = ["Scored", "answers", "top_k"]


@dataclass
class Scored:
    """What the stages leave: per name, the part classified (``parsed``) and its folded form
    (``''``: no letters); for the rows ``ok`` that have letters, in that order, the probabilities
    after script evidence (``raw``) and after the prior (``proba``, zero where no label writes the
    name's script: the rows ``unwritten``), the reading ``shown`` for names read per label, and the
    novelty features and per-letter terms when asked for."""

    parsed: list[str]
    folded: list[str]
    ok: list[int]
    raw: np.ndarray
    proba: np.ndarray
    shown: dict[int, str]
    unwritten: list[int]
    features: np.ndarray | None = None
    tokens: list[np.ndarray] | None = None


def top_k(proba: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most probable columns of each row and their probabilities, most probable first,
    ties in column order: what a stable ``argsort(-proba)`` gives, by ``k`` passes of ``argmax``
    (which also picks the first of equals) instead of a sort of every row."""
    work = np.array(proba, dtype=proba.dtype, copy=True)
    top = np.empty((len(proba), k), dtype=np.int64)
    rows = np.arange(len(proba))
    for j in range(k):
        top[:, j] = work.argmax(axis=1)
        work[rows, top[:, j]] = -np.inf
    return top, np.take_along_axis(proba, top, axis=1)


def answers(predictor: Any, names: Sequence[str], scored: Scored, options: Options) -> list[Prediction]:
    """One :class:`Prediction` per name from what the stages left: the top languages (at
    ``options.level``), and the set, abstention and explanation the options ask for."""
    rollup = None if options.level == "label" else predictor.level_map(options.level)
    classes = predictor.labels if rollup is None else rollup.names
    note = None if rollup is None else rollup.note()
    note = None if note is None else note.removeprefix("note: ")
    results = [Prediction(n, f, [], surname=p if p != n else None, level=options.level if rollup else None, note=note)
               for n, p, f in zip(names, scored.parsed, scored.folded, strict=True)]
    if not scored.ok:
        return results
    for row, shown in scored.shown.items():
        results[scored.ok[row]].ascii = shown
    sets = None if options.coverage is None else predictor.conformal(options.coverage, options.per_language)
    in_set = sets.mask(scored.raw) if sets is not None else None  # sets keep their coverage under any prior
    proba = scored.proba if rollup is None else rollup.sum_columns(scored.proba)
    if rollup is not None and in_set is not None:
        in_set = groups_in_set(in_set, rollup)
    top, top_p = top_k(proba, min(options.k, len(classes)))
    order = np.argsort(-proba, axis=1, kind="stable") if in_set is not None else None
    threshold = predictor.open_set.threshold(options.abstain_rate) if options.abstain else None
    novelty = predictor.open_set.scorer(scored.features) if threshold is not None else None
    terms = predictor.explain_terms() if options.explain else None
    unwritten = set(scored.unwritten)
    for row, (i, js, ps) in enumerate(zip(scored.ok, top.tolist(), top_p.tolist(), strict=True)):
        result = results[i]
        if row in unwritten:
            result.reason = SCRIPT
            continue
        result.languages = [(classes[j], p) for j, p in zip(js, ps, strict=True)]
        if in_set is not None and order is not None:
            result.prediction_set = [classes[j] for j in order[row] if in_set[row, j]]
        if novelty is not None and threshold is not None:
            result.novelty = float(novelty[row])
            result.abstained = bool(novelty[row] > threshold)
        # The letters were read one way for every label: a name read per label in its own script
        # has no single reading to explain, and a level's groups are explained by their two most
        # probable labels.
        if terms is not None and scored.tokens is not None and row not in scored.shown:
            pair = np.argsort(-scored.proba[row], kind="stable")[:2].tolist()
            result.explanation = explain_name(result.ascii, scored.tokens[row], scored.raw[row], scored.proba[row],
                                              pair, predictor.labels, terms)
    return results
