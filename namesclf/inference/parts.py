"""Full-name models: the given-name part, the combiner, and scoring each distinct part once.

A model that reads full names is factorized by part (docs/models.md, "Full-name models"): the
surname part is an ordinary classifier (the model file's own network, so everything that reads a
surname model reads this one too), the given part is a second classifier of the same family over
given names (``Fyodor Mikhailovich``), and a small combiner, fitted on held-out people, turns both
parts' log-probabilities into one calibrated answer:

``z_c = a_c log p_surname(c) + g (b_c log p_given(c) + d_c) + e_c``, softmax over ``c``
(or, with full matrices in place of ``a`` and ``b``, a linear stacker: :class:`Combiner`),

where ``g`` is 1 when the name has a given part and 0 for a bare surname (the combiner is fitted
on held-out people with and without their given names, so both are in-distribution).

Real lists repeat given names and surnames far more than whole names, so each distinct folded
part of a batch is scored once (:func:`score_distinct`): a million full names cost about as
much as their distinct given names and surnames. Nothing here imports torch.
"""

from __future__ import annotations

import base64
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
    """The combiner's weights (see the module docstring); pure numpy.

    ``surname`` and ``given`` are per-language weights ``(L,)`` (``a_c``, ``b_c``), or full
    ``(L, L)`` matrices (a stacker: ``z_c = sum_k S_ck log p_surname(k) + g (sum_k G_ck log
    p_given(k) + d_c) + e_c``), which can also learn that one language's names look like
    another's (a part that mistakes Dutch for German hands the combiner evidence for both).
    A file stores a vector as a JSON list (every model file before the matrices), a matrix as
    its float32 bytes in base64 (:func:`encode_matrix`): a 174-label matrix pair is then about
    320 kB of the ONNX export's metadata instead of over its cap as JSON numbers.
    """

    surname: np.ndarray
    given: np.ndarray
    given_bias: np.ndarray
    bias: np.ndarray

    KEYS = ("surname", "given", "given_bias", "bias")
    #: The weights that may be matrices.
    MATRIX_KEYS = ("surname", "given")

    @classmethod
    def from_dict(cls, values: Any, n_labels: int) -> Combiner:
        if not isinstance(values, Mapping):
            raise ModelFileError("the model's combiner is not an object")
        arrays = []
        for key in cls.KEYS:
            value = values.get(key)
            if value is None:
                raise ModelFileError(f"the model's combiner has no numeric {key!r}")
            if key in cls.MATRIX_KEYS and isinstance(value, Mapping):
                array = decode_matrix(value, n_labels, key)
            else:
                try:
                    array = np.asarray(value, dtype=np.float64)
                except (TypeError, ValueError):
                    raise ModelFileError(f"the model's combiner has no numeric {key!r}") from None
                if array.shape != (n_labels,):
                    raise ModelFileError(f"the model's combiner {key!r} is not {n_labels} finite numbers")
            if not np.isfinite(array).all():
                raise ModelFileError(f"the model's combiner {key!r} is not {n_labels} finite numbers")
            arrays.append(array)
        return cls(*arrays)

    def to_dict(self) -> dict[str, Any]:
        return {key: encode_matrix(getattr(self, key)) if getattr(self, key).ndim == 2
                else [float(x) for x in getattr(self, key)] for key in self.KEYS}

    @property
    def is_matrix(self) -> bool:
        """Whether the weights are full matrices (a stacker) rather than one per language."""
        return self.surname.ndim == 2 or self.given.ndim == 2

    def logits(self, log_surname: np.ndarray, log_given: np.ndarray, has_given: np.ndarray) -> np.ndarray:
        """``z`` ``(N, L)`` from both parts' floored log-probabilities (float64)."""
        g = has_given.astype(np.float64)[:, None]
        z = (log_surname @ self.surname.T if self.surname.ndim == 2 else self.surname * log_surname) + self.bias
        given = log_given @ self.given.T if self.given.ndim == 2 else self.given * log_given
        return z + g * (given + self.given_bias)

    def __call__(self, surname_proba: np.ndarray, given_proba: np.ndarray, has_given: np.ndarray) -> np.ndarray:
        """Combined probabilities ``(N, L)``; ``given_proba``'s rows where ``has_given`` is False are ignored."""
        z = self.logits(np.log(np.maximum(surname_proba, FLOOR), dtype=np.float64),
                        np.log(np.maximum(given_proba, FLOOR), dtype=np.float64), has_given)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z.astype(np.float32)


#: How a combiner matrix is stored: its shape and its little-endian float32 bytes in base64.
MATRIX_ENCODING = "float32-le-base64"


def encode_matrix(matrix: np.ndarray) -> dict[str, Any]:
    """A matrix as JSON without a number per entry (see :class:`Combiner`)."""
    data = np.ascontiguousarray(matrix, dtype="<f4").tobytes()
    return {"encoding": MATRIX_ENCODING, "shape": list(matrix.shape), "data": base64.b64encode(data).decode("ascii")}


def decode_matrix(value: Mapping[str, Any], n_labels: int, key: str) -> np.ndarray:
    """The ``(n_labels, n_labels)`` matrix :func:`encode_matrix` stored, its size checked before decoding."""
    if value.get("encoding") != MATRIX_ENCODING or value.get("shape") != [n_labels, n_labels] \
            or not isinstance(value.get("data"), str):
        raise ModelFileError(f"the model's combiner {key!r} is not a {n_labels}x{n_labels} {MATRIX_ENCODING} matrix")
    size = 4 * n_labels * n_labels
    if len(value["data"]) != 4 * ((size + 2) // 3):
        raise ModelFileError(f"the model's combiner {key!r} does not hold {n_labels}x{n_labels} numbers")
    try:
        data = base64.b64decode(value["data"], validate=True)
    except ValueError:
        raise ModelFileError(f"the model's combiner {key!r} is not base64") from None
    return np.frombuffer(data, dtype="<f4").astype(np.float64).reshape(n_labels, n_labels)


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
