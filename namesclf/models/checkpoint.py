"""The model file: one self-describing ``torch.save`` dict, loaded with ``weights_only=True``.

Contents: ``format`` and ``format_version``, ``kind`` (``classifier`` or ``lm``), ``config`` (enough
to rebuild the network), ``state_dict``, ``alphabet``, ``labels`` (languages), and free-form
``meta`` (split seed, metrics, history, resume state). Only tensors, numbers, strings, lists and
dicts go in, so the restricted unpickler can read it and a crafted pickle cannot run code.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from namesclf.errors import ModelFileError, first_line
from namesclf.files import atomic_write_with, jsonable
from namesclf.text import ALPHABET

FORMAT = "namesclf"
FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus format fields and the alphabet) atomically to ``path``."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "alphabet": ALPHABET, **payload}
    if "meta" in payload:  # numpy scalars (from scikit-learn metrics) would not load with weights_only
        payload["meta"] = jsonable(payload["meta"])
    return atomic_write_with(path, lambda handle: torch.save(payload, handle))


def classifier_payload(model: torch.nn.Module, config: Mapping[str, Any], labels: list[str],
                       meta: dict[str, Any]) -> dict[str, Any]:
    """The dict :func:`save_checkpoint` writes for a classifier: its training config (which
    :func:`~namesclf.models.networks.build_classifier` rebuilds it from), languages, weights and ``meta``."""
    return {
        "kind": "classifier",
        "config": dict(config),
        "labels": [str(label) for label in labels],  # plain str: numpy strings would not load weights_only
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "meta": meta,
    }


def classifier_meta(base: Mapping[str, Any] | None = None, *, history: list[dict[str, float]], best_epoch: int,
                    valid: Mapping[str, float], pooling: dict[str, Any], calibration: dict[str, Any] | None = None,
                    resume: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    """The ``meta`` of a classifier's model file, the one place its training record is assembled.

    ``base`` is what the caller knows before training (split seed, source, split sizes); then come
    the epochs' ``history``, the chosen ``best_epoch`` and its ``valid`` figures, the ``pooling``
    knobs, the ``calibration`` that sets, abstention and priors read (absent from a file written
    at a best epoch, before calibration), whatever else the caller adds (``test`` figures,
    ``train_seconds``) and last the ``resume`` state that ``names train --resume`` carries on from.
    """
    meta = {**(base or {}), "history": history, "best_epoch": best_epoch, "valid": valid, "pooling": pooling}
    if calibration is not None:
        meta["calibration"] = calibration
    meta.update(more)
    if resume is not None:
        meta["resume"] = resume
    return meta


def load_checkpoint(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Read a model file safely; every way it can be wrong is a one-line :class:`ModelFileError`."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file (train one with `names train DATA --out {path}`)")
    if not path.is_file():
        raise ModelFileError(f"{path}: not a file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = first_line(exc, "unsafe content")
        if "Weights only load failed" in reason or "Unsupported" in str(exc):
            reason = "it contains objects other than weights (refused: loading it could run code)"
        raise ModelFileError(f"{path}: not a namesclf model file: {reason}") from None
    except Exception as exc:  # arbitrary bytes make the unpickler raise anything (KeyError, struct.error...)
        reason = first_line(exc)
        raise ModelFileError(f"{path}: cannot read model file (truncated or not a model?): {reason}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a namesclf model file")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model format version {version} is newer than this namesclf reads ({FORMAT_VERSION}); "
            "upgrade namesclf"
        )
    if payload.get("alphabet") != ALPHABET:
        raise ModelFileError(f"{path}: the model was trained on a different alphabet")
    if kind is not None and payload.get("kind") != kind:
        raise ModelFileError(f"{path}: this is a {payload.get('kind')} model file, expected a {kind} model")
    return payload
