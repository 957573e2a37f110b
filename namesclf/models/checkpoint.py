"""The model file: one self-describing ``torch.save`` dict, loaded with ``weights_only=True``.

Contents: ``format`` and ``format_version``, ``kind`` (``classifier`` or ``lm``), ``config`` (enough
to rebuild the network), ``state_dict``, ``alphabet``, ``labels`` (languages), and free-form
``meta`` (split seed, metrics, history, resume state). A model that reads full names
(``meta["reads"] == "full_name"``) is its surname part as above, plus ``given`` (the given-name
part's ``config``, ``state_dict`` and ``labels``) and its combiner in ``meta["combiner"]``
(:mod:`namesclf.inference.parts`). Only tensors, numbers, strings, lists and
dicts go in, so the restricted unpickler can read it and a crafted pickle cannot run code.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from namesclf.config import MAX_NGRAM_ORDER
from namesclf.errors import ModelFileError, check_model_path, first_line
from namesclf.files import atomic_write_with, jsonable
from namesclf.models.onnx_format import MAX_LABELS, check_calibration
from namesclf.text import ALPHABET

FORMAT = "namesclf"
FORMAT_VERSION = 1

#: The largest network a model file may describe (docs/safety.md, "Model files"). It is computed
#: from the config before any weight is allocated, so a file that declares a huge network and holds
#: tiny tensors is refused without costing the memory it asks for. Every model this package trains
#: is far below it.
MAX_PARAMETERS = 200_000_000
#: Allowed ranges of the config's size fields, checked first: the parameter count is computed
#: from them, and a building loop runs once per layer or n-gram order.
SIZE_RANGES: dict[str, tuple[int, int]] = {
    "hidden": (1, 4096), "embed": (0, 4096), "lang_embed": (0, 4096), "layers": (1, 16),
    "ngram_buckets": (0, 1 << 24), "ngram_dim": (0, 4096), "ngram_order": (0, MAX_NGRAM_ORDER),
}


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
    check_model_path(path)
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
    check_sizes(payload, path)
    if payload.get("kind") == "classifier":
        check_classifier(payload, path)
        check_calibration(payload.get("meta"), len(payload["labels"]), path)
        given = payload.get("given")
        if given is not None:  # the given-name part of a full-name model: held to the same checks
            if not isinstance(given, dict):
                raise ModelFileError(f"{path}: model file is damaged: its given-name part is not a model")
            check_sizes(given, path)
            check_classifier(given, path)
    return payload


def check_sizes(payload: Mapping[str, Any], path: str | Path) -> None:
    """The config's size fields are whole numbers in :data:`SIZE_RANGES`, and the file lists at
    most :data:`MAX_LABELS` labels: checked before anything is built from them."""
    config = payload.get("config")
    labels = payload.get("labels", [])
    if not isinstance(config, dict) or not isinstance(payload.get("state_dict"), dict):
        raise ModelFileError(f"{path}: model file is damaged: no config or weights")
    if not isinstance(labels, list) or len(labels) > MAX_LABELS or not all(isinstance(x, str) for x in labels):
        raise ModelFileError(f"{path}: model file is damaged: the labels are not a list of at most "
                             f"{MAX_LABELS:,} strings")
    for key, (low, high) in SIZE_RANGES.items():
        value = config.get(key)
        if value is None:
            continue  # absent where the model kind has no such part; a missing key the builder needs is its error
        if type(value) is not int or not low <= value <= high:
            raise ModelFileError(f"{path}: the config's {key} is {str(value)[:40]}, outside {low}-{high}: "
                                 "not a model this namesclf builds")


class _NoInit(torch.overrides.TorchFunctionMode):
    """Skips the in-place initialisers (``normal_``, ``uniform_``, ...) while a network is built on
    the ``meta`` device: their values do not exist there, and their meta kernels import torch's
    compiler stack, which would cost every command that loads a model a second or more."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        target = args[0] if args else kwargs.get("tensor")
        if name.endswith("_") and not name.startswith("_") and isinstance(target, torch.Tensor) and target.is_meta:
            return target
        return func(*args, **kwargs)


def check_classifier(payload: Mapping[str, Any], path: str | Path) -> None:
    """The classifier the config describes has at most :data:`MAX_PARAMETERS` parameters, and
    every one of them has a tensor of its shape in the state dict.

    The network is built on torch's ``meta`` device, which records shapes and allocates nothing,
    so the count and shapes are exactly those the real build will have."""
    from namesclf.models.networks import build_classifier

    labels, state = payload.get("labels") or [], payload["state_dict"]
    try:
        with torch.device("meta"), _NoInit():
            model = build_classifier(payload["config"], len(labels))
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: model file is damaged: {first_line(exc)}") from None
    count = sum(p.numel() for p in model.parameters())
    if count > MAX_PARAMETERS:
        raise ModelFileError(f"{path}: the config describes {count:,} parameters, more than the "
                             f"{MAX_PARAMETERS:,} a model file may have")
    for name, param in model.named_parameters():
        found = state.get(name)
        if not isinstance(found, torch.Tensor):
            raise ModelFileError(f"{path}: model file is damaged: no weights for {name}")
        if tuple(found.shape) != tuple(param.shape):
            raise ModelFileError(f"{path}: model file is damaged: {name} has shape {tuple(found.shape)} where "
                                 f"the config implies {tuple(param.shape)}")
