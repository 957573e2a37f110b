"""The contract between the ONNX export and its readers: names of the graph's input and outputs,
where the export lives beside its ``.pt``, and the JSON metadata entry that makes it self-describing.

:mod:`namesclf.models.export` writes it and :mod:`namesclf.inference.onnx_scorer` reads it; both
import it from here, so prediction needs no torch and the writer needs no ONNX Runtime.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

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


def onnx_path_for(path: str | Path) -> Path:
    """Where the ONNX file of a ``.pt`` model file lives: beside it, same stem."""
    return Path(path).with_suffix(".onnx")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_metadata(raw: str | None, path: str | Path) -> dict[str, Any]:
    """The JSON description of an ONNX file, checked."""
    if raw is None:
        raise ModelFileError(f"{path}: an ONNX model, but not one namesclf exported")
    try:
        info = json.loads(raw)
    except json.JSONDecodeError:
        raise ModelFileError(f"{path}: its namesclf metadata is not JSON") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ModelFileError(f"{path}: its metadata is not a namesclf ONNX description")
    version = info.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(f"{path}: ONNX format version {version} is newer than this namesclf reads "
                             f"({FORMAT_VERSION}); upgrade namesclf")
    if info.get("alphabet") != ALPHABET:
        raise ModelFileError(f"{path}: the model was trained on a different alphabet")
    missing = [k for k in ("kind", "labels", "config", "outputs") if k not in info]
    if missing or info["kind"] != "classifier":
        raise ModelFileError(f"{path}: not a namesclf classifier export (missing {', '.join(missing) or 'kind'})")
    return info
