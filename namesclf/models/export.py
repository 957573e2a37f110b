"""Export a trained classifier to ONNX, so that prediction runs on ONNX Runtime without torch.

The graph is traced from the very modules training built (``torch.onnx.export``, the TorchScript
exporter: it maps ``nn.RNN``/``nn.GRU``/``nn.LSTM`` to ONNX's own recurrent nodes, which take any
length, and the hand-built RNN's TorchScript recurrence to an ONNX loop), so there is no second
copy of any network's math to keep in step. The n-gram half's lookups are gathers
(:meth:`~namesclf.models.ngram.NgramBayes._lookup`) and export as they are. A parity test holds the two paths
to 1e-5 in every probability and novelty score.

What the file holds is described in :mod:`namesclf.inference.onnx_scorer`.
"""

from __future__ import annotations

import io
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from namesclf.files import atomic_write_with, jsonable
from namesclf.models.checkpoint import load_checkpoint
from namesclf.models.networks import NgramEnsemble, build_classifier
from namesclf.models.ngram import NgramBayes
from namesclf.models.novelty import load_background, novelty_feature_tensor
from namesclf.models.onnx_format import (
    EXPLAIN_KEY,
    FORMAT,
    FORMAT_VERSION,
    INPUT,
    METADATA_KEY,
    NGRAM_TOKENS,
    NOVELTY_FEATURES,
    PROBABILITY,
    file_sha256,
    given_onnx_path,
    onnx_path_for,
)
from namesclf.text import ALPHABET, N_LETTERS, PAD_INDEX

#: ONNX opset of the export (ONNX Runtime 1.17 and later run it).
OPSET = 17


class InferenceGraph(nn.Module):
    """What the ONNX file computes, for a batch of names of one length: probabilities and, with
    an n-gram half, the open-set features from the same n-gram pass (:mod:`namesclf.models.novelty`)."""

    def __init__(self, model: nn.Module, background: NgramBayes | None) -> None:
        super().__init__()
        self.model, self.background = model, background

    def forward(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        lengths = (idx != PAD_INDEX).sum(0)  # from the data, so the graph has no fixed length
        if not isinstance(self.model, NgramEnsemble):
            return (self.model(idx, lengths).exp(),)
        log_p, likelihood, tokens = self.model.forward_with_tokens(idx, lengths)
        if self.background is None:
            return log_p.exp(), tokens
        return log_p.exp(), novelty_feature_tensor(self.model.ngram, self.background, idx, lengths, likelihood), tokens


def portable_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """The model file's ``meta`` as JSON: what prediction and a reader need, without the resume
    state (optimizer tensors) or the open-set background (it is inside the graph)."""
    out = {k: v for k, v in meta.items() if k != "resume"}
    calibration = dict(out.get("calibration") or {})
    if "openset" in calibration:
        calibration["openset"] = {k: v for k, v in calibration["openset"].items()
                                  if k not in ("background", "n_classes")}
    out["calibration"] = calibration
    return jsonable(out)


def export_payload(payload: dict[str, Any], out: str | Path, source: str | Path | None = None) -> Path:
    """Write the ONNX file for a classifier payload (:func:`~namesclf.models.checkpoint.load_checkpoint`'s dict)
    to ``out``, atomically. ``source`` is the ``.pt`` it came from: its SHA-256 goes into the
    metadata so a predictor can tell a stale export."""
    labels = list(payload["labels"])
    model = build_classifier(payload["config"], len(labels))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    meta = payload.get("meta") or {}
    openset = (meta.get("calibration") or {}).get("openset")
    background = load_background(openset) if isinstance(model, NgramEnsemble) and openset else None
    graph = InferenceGraph(model, background).eval()
    outputs = [PROBABILITY] + ([NOVELTY_FEATURES] if background is not None else [])
    extra = [NGRAM_TOKENS] if isinstance(model, NgramEnsemble) else []
    example = torch.randint(0, N_LETTERS, (5, 3))
    buffer = io.BytesIO()
    with torch.no_grad():
        # Build the n-gram lookup tables now, so the trace sees them as constants: traced while
        # being built, they would be rebuilt by every call of the graph.
        graph(example)
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns that it is deprecated and that the tracer saw Python
        # control flow; both are expected here (the branches are fixed per model).
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (example,), buffer, dynamo=False, opset_version=OPSET, input_names=[INPUT],
                          output_names=outputs + extra,
                          dynamic_axes={INPUT: {0: "length", 1: "batch"}, **{o: {0: "batch"} for o in outputs},
                                        **{o: {0: "positions", 1: "batch"} for o in extra}})
    import onnx

    proto = onnx.load_from_string(buffer.getvalue())
    info = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": "classifier", "alphabet": ALPHABET,
            "labels": labels, "config": payload["config"], "outputs": outputs, "meta": portable_meta(meta),
            "source_sha256": file_sha256(source) if source is not None else None}
    if isinstance(model, NgramEnsemble):
        info[EXPLAIN_KEY] = {"output": NGRAM_TOKENS, "order": model.ngram.order, **model.pool_terms()}
    entry = proto.metadata_props.add()
    # compact: a large corpus's calibration (conformal scores, the novelty scorer) comes near the
    # size the reader accepts (onnx_format.MAX_METADATA_CHARS), and spaces buy nothing
    entry.key, entry.value = METADATA_KEY, json.dumps(info, separators=(",", ":"))
    data = optimized(proto.SerializeToString())
    return atomic_write_with(out, lambda handle: handle.write(data))


def optimized(model: bytes) -> bytes:
    """The graph after ONNX Runtime's basic and extended optimisations (constant folding, fusions),
    done once here instead of at every session start: a cold ``names predict`` starts its session
    in about half the time. These levels are the same on any CPU (the hardware-specific layout
    pass stays at load time), and the metadata is kept."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        return Path(options.optimized_model_filepath).read_bytes()


def export_parts(payload: dict[str, Any], out: str | Path, source: str | Path | None = None) -> list[Path]:
    """Export a classifier payload to ``out``, and for a model that reads full names its given
    part beside it (``<stem>.given.onnx``), both recording ``source``'s SHA-256."""
    written = [export_payload(payload, out, source)]
    given = payload.get("given")
    if given is not None:
        part = {"config": given["config"], "state_dict": given["state_dict"], "labels": given["labels"],
                "meta": {"part": "given"}}
        written.append(export_payload(part, given_onnx_path(out), source))
    return written


def export_model_file(path: str | Path, out: str | Path | None = None) -> Path:
    """Export the classifier model file ``path`` to ``out`` (default: beside it, ``.onnx``); a
    full-name model's given part goes beside ``out`` (:func:`export_parts`)."""
    payload = load_checkpoint(path, kind="classifier")
    return export_parts(payload, onnx_path_for(path) if out is None else out, source=path)[0]
