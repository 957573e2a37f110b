"""Full-name models: the given-name part, the combiner, and scoring each distinct part once.

A model that reads full names is factorized by part (docs/models.md, "Full-name models"): the
surname part is an ordinary classifier (the model file's own network, so everything that reads a
surname model reads this one too), the given part is a second classifier of the same family over
given names (``Fyodor Mikhailovich``), and a small combiner, fitted on held-out people, turns both
parts' log-probabilities into one calibrated answer:

``z_c = a_c log p_surname(c) + g (b_c log p_given(c) + d_c) + e_c``, softmax over ``c``,

where ``g`` is 1 when the name has a given part and 0 for a bare surname (the combiner is fitted
on held-out people with and without their given names, so both are in-distribution).

Real lists repeat given names and surnames far more than whole names, so each distinct folded
part of a batch is scored once (:func:`score_distinct`): a million full names cost about as
much as their distinct given names and surnames. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from namesclf.errors import ModelFileError
from namesclf.models.onnx_format import given_onnx_path

__all__ = ["FLOOR", "READS_FULL_NAME", "Combiner", "align", "given_onnx_path", "label_index", "reads_full_names",
           "score_distinct"]

#: What a model file's ``meta["reads"]`` says: a surname alone (absent, or this) or a full name.
READS_SURNAME = "surname"
READS_FULL_NAME = "full_name"
#: A probability floor before logs: a part that gives a language no mass must not veto it outright.
FLOOR = 1e-7


def reads_full_names(meta: Mapping[str, Any] | None) -> bool:
    """Whether a model's ``meta`` says it reads given names and surname."""
    return bool(meta) and meta.get("reads") == READS_FULL_NAME  # type: ignore[union-attr]


@dataclass(frozen=True)
class Combiner:
    """The combiner's per-language weights (see the module docstring); pure numpy."""

    surname: np.ndarray
    given: np.ndarray
    given_bias: np.ndarray
    bias: np.ndarray

    KEYS = ("surname", "given", "given_bias", "bias")

    @classmethod
    def from_dict(cls, values: Any, n_labels: int) -> Combiner:
        if not isinstance(values, Mapping):
            raise ModelFileError("the model's combiner is not an object")
        arrays = []
        for key in cls.KEYS:
            try:
                array = np.asarray(values[key], dtype=np.float64)
            except (KeyError, TypeError, ValueError):
                raise ModelFileError(f"the model's combiner has no numeric {key!r}") from None
            if array.shape != (n_labels,) or not np.isfinite(array).all():
                raise ModelFileError(f"the model's combiner {key!r} is not {n_labels} finite numbers")
            arrays.append(array)
        return cls(*arrays)

    def to_dict(self) -> dict[str, list[float]]:
        return {key: [float(x) for x in getattr(self, key)] for key in self.KEYS}

    def __call__(self, surname_proba: np.ndarray, given_proba: np.ndarray, has_given: np.ndarray) -> np.ndarray:
        """Combined probabilities ``(N, L)``; ``given_proba``'s rows where ``has_given`` is False are ignored."""
        g = has_given.astype(np.float64)[:, None]
        z = self.surname * np.log(np.maximum(surname_proba, FLOOR)) + self.bias
        z = z + g * (self.given * np.log(np.maximum(given_proba, FLOOR)) + self.given_bias)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z.astype(np.float32)


def label_index(part_labels: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """For each of ``labels``, its column in a part's output (-1 where the part lacks it)."""
    where = {label: i for i, label in enumerate(part_labels)}
    return np.array([where.get(label, -1) for label in labels], dtype=np.int64)


def align(proba: np.ndarray, index: np.ndarray) -> np.ndarray:
    """A part's probabilities in the model's label order; a language the part never saw gets :data:`FLOOR`."""
    if (index == np.arange(len(index))).all() and proba.shape[1] == len(index):
        return proba
    out = np.take(proba, np.maximum(index, 0), axis=1)
    out[:, index < 0] = FLOOR
    return out


def score_distinct(score: Any, folded: Sequence[str], features: bool = False
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """``score(distinct, features)`` (a predictor's ``score_ascii``) on each distinct folded part
    once, the rows spread back to ``folded``'s order."""
    distinct = list(dict.fromkeys(folded))
    proba, found = score(distinct, features=features)
    if len(distinct) == len(folded):
        return proba, found
    where = {name: i for i, name in enumerate(distinct)}
    rows = np.fromiter((where[name] for name in folded), dtype=np.int64, count=len(folded))
    return proba[rows], (None if found is None else found[rows])
