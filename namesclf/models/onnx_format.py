"""The contract between the ONNX export and its readers: names of the graph's input and outputs,
where the export lives beside its ``.pt``, and the JSON metadata entry that makes it self-describing.

:mod:`namesclf.models.export` writes it and :mod:`namesclf.inference.onnx_scorer` reads it; both
import it from here, so prediction needs no torch and the writer needs no ONNX Runtime.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from namesclf.data.archive import sha256_file
from namesclf.errors import ModelFileError
from namesclf.text import ALPHABET

#: The metadata entry that holds the JSON description.
METADATA_KEY = "namesclf"
FORMAT = "namesclf-onnx"
FORMAT_VERSION = 1
#: The graph's input and outputs.
INPUT = "idx"
PROBABILITY = "probability"
NOVELTY_FEATURES = "novelty_features"
#: An optional output of an export with an n-gram half: ``log p(symbol | history, language)`` at
#: every position of the names, the end mark last, ``(P, B, n_languages)`` with ``P = T + 1``
#: (what explanations read). It is not listed in the metadata's ``outputs``, which says what
#: prediction needs (so a reader that predicts only still reads the file); the metadata entry
#: :data:`EXPLAIN_KEY` says it is there and carries the pooling numbers an explanation adds to it.
NGRAM_TOKENS = "ngram_token_log_likelihood"
EXPLAIN_KEY = "explain"
#: Caps on the metadata entry, checked before and after parsing it (docs/safety.md, "ONNX exports"):
#: an export's description is far smaller and nests a few levels.
MAX_METADATA_CHARS = 1 << 20
MAX_METADATA_DEPTH = 32
#: Languages a model (``.pt`` or ``.onnx``) may list; kept here, beside no torch, for both readers.
MAX_LABELS = 100_000

#: The SHA-256 of a model file: what an export records of its source, and what a reader compares.
file_sha256 = sha256_file


def onnx_path_for(path: str | Path) -> Path:
    """Where the ONNX file of a ``.pt`` model file lives: beside it, same stem."""
    return Path(path).with_suffix(".onnx")


def given_onnx_path(path: str | Path) -> Path:
    """Where a full-name model's given part is exported: beside its ``.pt`` (or its ``.onnx``),
    ``<stem>.given.onnx`` (:mod:`namesclf.inference.parts`)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.given.onnx")


def _depth(value: Any) -> int:
    """How deeply ``value``'s lists and dicts nest, without recursion (the value may come from a
    hostile file)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_METADATA_DEPTH:
                stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _parse(raw: Any, path: str | Path) -> dict[str, Any]:
    """The metadata JSON, within :data:`MAX_METADATA_CHARS` and :data:`MAX_METADATA_DEPTH`."""
    if not isinstance(raw, str):
        raise ModelFileError(f"{path}: its namesclf metadata is not text")
    if len(raw) > MAX_METADATA_CHARS:
        raise ModelFileError(f"{path}: its namesclf metadata is {len(raw):,} characters, more than the "
                             f"{MAX_METADATA_CHARS:,} allowed")
    try:
        info = json.loads(raw)
    except (ValueError, RecursionError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise ModelFileError(f"{path}: its namesclf metadata is not JSON ({type(exc).__name__})") from None
    if _depth(info) > MAX_METADATA_DEPTH:
        raise ModelFileError(f"{path}: its namesclf metadata nests deeper than {MAX_METADATA_DEPTH} levels")
    if not isinstance(info, dict):
        raise ModelFileError(f"{path}: its metadata is not a namesclf ONNX description")
    return info


def _check_fields(info: dict[str, Any], path: str | Path) -> None:
    """The fields prediction reads have the types it reads them as."""
    labels, outputs = info["labels"], info["outputs"]
    if not isinstance(labels, list) or not 0 < len(labels) <= MAX_LABELS or \
            not all(isinstance(x, str) for x in labels) or len(set(labels)) != len(labels):
        raise ModelFileError(f"{path}: its metadata's labels are not a list of 1 to {MAX_LABELS:,} distinct strings")
    if not isinstance(outputs, list) or outputs[:1] != [PROBABILITY] or not set(outputs) <= {PROBABILITY,
                                                                                          NOVELTY_FEATURES}:
        raise ModelFileError(f"{path}: its metadata's outputs are not [{PROBABILITY!r}(, {NOVELTY_FEATURES!r})]")
    if not isinstance(info["config"], dict) or not isinstance(info.get("meta") or {}, dict):
        raise ModelFileError(f"{path}: its metadata's config or meta is not a JSON object")


def check_calibration(meta: Any, n_labels: int, path: str | Path) -> None:
    """The calibration prediction reads from a model's ``meta`` (``.pt`` or ``.onnx``) has the
    shape it is read in: objects where objects are read, one non-negative count per language.
    What is inside the objects is checked where it is used, with a one-line error of its own."""
    if meta is None:
        return
    calibration = meta.get("calibration") if isinstance(meta, dict) else meta
    if not isinstance(calibration, dict | None):
        raise ModelFileError(f"{path}: the model's meta or calibration is not an object")
    calibration = calibration or {}
    for key in ("conformal", "openset"):
        if not isinstance(calibration.get(key), dict | None):
            raise ModelFileError(f"{path}: the model's {key} calibration is not an object")
    counts = calibration.get("label_counts")
    if counts is not None and not (isinstance(counts, list) and len(counts) == n_labels and all(
            type(n) in (int, float) and 0 <= n < float("inf") for n in counts)):
        raise ModelFileError(f"{path}: the model's label counts are not {n_labels} non-negative numbers, one per "
                             "language")


def read_metadata(raw: str | None, path: str | Path) -> dict[str, Any]:
    """The JSON description of an ONNX file, checked: size and nesting first (:func:`_parse`),
    then the fields prediction reads. Every way it can be wrong is one :class:`ModelFileError` line."""
    if raw is None:
        raise ModelFileError(f"{path}: an ONNX model, but not one namesclf exported")
    info = _parse(raw, path)
    if info.get("format") != FORMAT:
        raise ModelFileError(f"{path}: its metadata is not a namesclf ONNX description")
    version = info.get("format_version")
    if type(version) is not int or version > FORMAT_VERSION:
        raise ModelFileError(f"{path}: ONNX format version {str(version)[:20]} is newer than this namesclf reads "
                             f"({FORMAT_VERSION}); upgrade namesclf")
    if info.get("alphabet") != ALPHABET:
        raise ModelFileError(f"{path}: the model was trained on a different alphabet")
    missing = [k for k in ("kind", "labels", "config", "outputs") if k not in info]
    if missing or info["kind"] != "classifier":
        raise ModelFileError(f"{path}: not a namesclf classifier export (missing {', '.join(missing) or 'kind'})")
    _check_fields(info, path)
    check_calibration(info.get("meta"), len(info["labels"]), path)
    return info
