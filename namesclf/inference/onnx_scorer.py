"""Prediction on ONNX Runtime: the exported classifier (:mod:`namesclf.models.export`), no torch.

Loading torch costs a prediction process more time and memory before the first name than ONNX
Runtime needs for the whole answer (docs/benchmarks.md#cold-start). The ``.onnx`` file is self-describing
and holds no pickle: the graph, its weights as constants, and one JSON metadata entry with the
languages, the training config, the calibration prediction needs (prediction sets, abstention,
priors) and the SHA-256 of the ``.pt`` it was exported from, so a stale export is noticed.

The graph takes a batch of names of one length, ``idx`` ``(T, B)`` int64 letter indices, and
returns ``probability`` ``(B, n_languages)`` and, when the model has an n-gram half,
``novelty_features`` ``(B, 6)`` (:data:`~namesclf.inference.openset.FEATURES`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from namesclf.errors import ModelFileError, first_line
from namesclf.models.onnx_format import (
    INPUT,
    METADATA_KEY,
    NOVELTY_FEATURES,
    PROBABILITY,
    file_sha256,
    read_metadata,
)


class OnnxScorer:
    """An exported classifier on an ONNX Runtime session, with what its metadata says."""

    device_type = "cpu"

    def __init__(self, session: Any, info: dict[str, Any]) -> None:
        self.session = session
        self.info = info
        self.labels: list[str] = list(info["labels"])
        self.config: dict[str, Any] = dict(info["config"])
        self.meta: dict[str, Any] = dict(info.get("meta") or {})
        self.has_ngram = NOVELTY_FEATURES in info["outputs"]

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> OnnxScorer:
        """Open ``path``; every way it can be wrong is a one-line :class:`~namesclf.errors.ModelFileError`.

        ``threads`` caps ONNX Runtime's threads for this session (one per process when several
        processes share the cores, as server and Dask workers do); None lets it use every core.
        """
        import onnxruntime as ort  # here, not at import: a torch-backed predictor never pays for it

        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"{path}: no such ONNX file (write one with `names export MODEL.pt`)")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            # Several processes share the cores: threads that spin while idle would take them from the others.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # warnings about unused initialisers are not the user's business
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        except Exception as exc:  # ORT raises its own exception types for damaged or foreign files
            raise ModelFileError(f"{path}: cannot read as an ONNX model: {first_line(exc)[:200]}") from None
        return cls(session, read_metadata(raw, path))

    def score(self, idx: np.ndarray, features: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities (and the novelty features when asked) for a ``(T, B)`` batch of one length."""
        if features and not self.has_ngram:
            raise ValueError("this model has no n-gram half, hence no novelty features")
        outputs = [PROBABILITY, NOVELTY_FEATURES] if features else [PROBABILITY]
        result = self.session.run(outputs, {INPUT: idx})
        return result[0], (result[1] if features else None)

    def matches(self, source: str | Path) -> bool:
        """Whether this export was made from the model file ``source`` as it is now."""
        return self.info.get("source_sha256") == file_sha256(source)
