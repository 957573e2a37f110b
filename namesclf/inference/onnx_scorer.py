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

import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from namesclf.errors import ModelFileError, NamesError, first_line
from namesclf.inference.openset import FEATURES
from namesclf.inference.options import NO_NGRAM_EXPLAIN
from namesclf.models.onnx_format import (
    EXPLAIN_KEY,
    INPUT,
    METADATA_KEY,
    NGRAM_TOKENS,
    NOVELTY_FEATURES,
    PROBABILITY,
    file_sha256,
    read_metadata,
)

#: The most memory ONNX Runtime may hold for every session of this process together, weights
#: included, in MiB; ``$NAMES_ONNX_MEMORY_MB`` sets another (docs/safety.md, "ONNX exports"). A run
#: that would need more fails with one line instead of taking the machine's memory. A graph can size
#: a tensor from its input (the export itself does, for its initial states and n-gram windows), so
#: no check of the graph's operators can tell how much a crafted one will ask for: the allocator is
#: where it shows. The largest batch of the longest names prediction makes needs a fraction of it.
MEMORY_BUDGET_MB = 2048
MEMORY_ENV = "NAMES_ONNX_MEMORY_MB"
_budget_lock = threading.Lock()
_budget: list[int] = []  # the budget in MiB once registered for this process (0: none)


def memory_budget_mb(ort: Any) -> int:
    """Register, once per process, the capped arena every session here allocates from, and return
    its size in MiB; 0 where this ONNX Runtime cannot (its sessions then keep their own arenas)."""
    with _budget_lock:
        if not _budget:
            text = os.environ.get(MEMORY_ENV, str(MEMORY_BUDGET_MB))
            if not text.strip().isdigit() or int(text) < 1:
                raise NamesError(f"${MEMORY_ENV} must be a whole number of MiB, not {text!r}")
            try:
                where = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
                ort.create_and_register_allocator(where, ort.OrtArenaCfg(int(text) << 20, -1, -1, -1))
                _budget.append(int(text))
            except AttributeError:  # an ONNX Runtime without shared allocators
                _budget.append(0)
            except Exception:  # ORT's own error type: an arena is registered in this process already
                _budget.append(int(text))
        return _budget[0]


def _finite(value: Any) -> bool:
    """A JSON number that is finite (not a bool, a string or null)."""
    return type(value) in (int, float) and abs(value) < float("inf")


def _run_error(exc: Exception, path: str | Path) -> ModelFileError:
    """One line for a run ONNX Runtime refused: the budget, or the graph's own failure."""
    text = first_line(exc)
    if "Available memory of" in text:
        budget = _budget[0] if _budget else MEMORY_BUDGET_MB
        return ModelFileError(f"{path}: the model asks for more memory than ONNX Runtime's budget of {budget:,} MiB "
                              f"(set ${MEMORY_ENV} to raise it for a model you trust)")
    return ModelFileError(f"{path}: ONNX Runtime cannot run the model: {text[:200]}")


class OnnxScorer:
    """An exported classifier on an ONNX Runtime session, with what its metadata says."""

    device_type = "cpu"

    def __init__(self, session: Any, info: dict[str, Any], path: str | Path = "the ONNX model") -> None:
        self.session = session
        self.path = path
        self.info = info
        self.labels: list[str] = list(info["labels"])
        self.config: dict[str, Any] = dict(info["config"])
        self.meta: dict[str, Any] = dict(info.get("meta") or {})
        self.has_ngram = NOVELTY_FEATURES in info["outputs"]
        self.explains = isinstance(info.get(EXPLAIN_KEY), dict)

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
        # Warnings about unused initialisers are not the user's business, and a failed run is
        # reported as one error line, not logged beside it too.
        options.log_severity_level = 4
        if memory_budget_mb(ort):
            options.add_session_config_entry("session.use_env_allocators", "1")
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        except Exception as exc:  # ORT raises its own exception types for damaged or foreign files
            raise ModelFileError(f"{path}: cannot read as an ONNX model: {first_line(exc)[:200]}") from None
        scorer = cls(session, read_metadata(raw, path), path)
        scorer.check_graph()
        return scorer

    def check_graph(self) -> None:
        """The graph's input and outputs are those the metadata describes, and it answers as many
        languages as the metadata lists (a server would otherwise start and fail every request)."""
        inputs, outputs = self.session.get_inputs(), {o.name: o for o in self.session.get_outputs()}
        if [i.name for i in inputs] != [INPUT] or inputs[0].type != "tensor(int64)" or len(inputs[0].shape) != 2:
            raise ModelFileError(f"{self.path}: the graph's input is not {INPUT!r}, int64 (length, batch)")
        missing = [name for name in self.info["outputs"] if name not in outputs]
        if missing:
            raise ModelFileError(f"{self.path}: the graph has no output {missing[0]!r}")
        widths = {name: (outputs[name].shape or [None])[-1] for name in self.info["outputs"]}
        if not all(isinstance(w, int) for w in widths.values()):  # a symbolic width: ask the graph itself
            proba, found = self.score(np.zeros((1, 1), dtype=np.int64), self.has_ngram)
            widths = {PROBABILITY: proba.shape[-1], NOVELTY_FEATURES: None if found is None else found.shape[-1]}
        if widths[PROBABILITY] != len(self.labels):
            raise ModelFileError(f"{self.path}: the graph answers {widths[PROBABILITY]} languages but its metadata "
                                 f"lists {len(self.labels)}")
        if self.has_ngram and widths[NOVELTY_FEATURES] != len(FEATURES):
            raise ModelFileError(f"{self.path}: the graph gives {widths[NOVELTY_FEATURES]} novelty features, "
                                 f"not {len(FEATURES)}")
        if self.explains and NGRAM_TOKENS not in outputs:
            raise ModelFileError(f"{self.path}: its metadata describes an explanation output the graph does not have")

    def pool_terms(self) -> dict[str, Any]:
        """The n-gram half's order, its training prior and the pooling weight, shift and temperature,
        as the export's metadata gives them (what :mod:`namesclf.inference.explain` adds to the
        graph's per-position output), checked; a one-line error for an export made without them."""
        terms = self.info.get(EXPLAIN_KEY)
        if not isinstance(terms, dict):
            if not self.config.get("ngram_order"):
                raise NamesError(NO_NGRAM_EXPLAIN)
            raise NamesError(f"{self.path} was exported by an earlier namesclf, without what explanations read: "
                             f"run `names export --force {Path(self.path).with_suffix('.pt')}` to export it again")
        numbers = [terms.get(key) for key in ("weight", "shift", "temperature")]
        prior, order = terms.get("log_prior"), terms.get("order")
        if not (all(_finite(x) for x in numbers) and isinstance(prior, list) and len(prior) == len(self.labels)
                and all(_finite(x) for x in prior) and type(order) is int and order >= 1 and numbers[2] > 0):
            raise ModelFileError(f"{self.path}: its metadata's explanation terms are not numbers of the right shape")
        return {"weight": float(numbers[0]), "shift": float(numbers[1]), "temperature": float(numbers[2]),
                "log_prior": [float(x) for x in prior], "order": order}

    def score_tokens(self, idx: np.ndarray, features: bool = False
                     ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """:meth:`score` and the n-gram half's per-position log-likelihoods, ``(T + 1, B,
        n_languages)``, from the same run of the graph."""
        if not self.explains:
            self.pool_terms()  # the one-line error for an export without the output
        outputs = [PROBABILITY, *([NOVELTY_FEATURES] if features else []), NGRAM_TOKENS]
        if features and not self.has_ngram:
            raise ValueError("this model has no n-gram half, hence no novelty features")
        try:
            result = self.session.run(outputs, {INPUT: idx})
        except Exception as exc:  # ORT's own error types: a graph that fails, the memory budget
            raise _run_error(exc, self.path) from None
        width, batch = idx.shape
        if len(result) != len(outputs) or result[0].shape != (batch, len(self.labels)) or \
                result[-1].shape != (width + 1, batch, len(self.labels)):
            raise ModelFileError(f"{self.path}: the graph answered {result[0].shape} and {result[-1].shape} for "
                                 f"{batch} names of {width} letters and {len(self.labels)} languages")
        return result[0], (result[1] if features else None), result[-1]

    def score(self, idx: np.ndarray, features: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities (and the novelty features when asked) for a ``(T, B)`` batch of one length."""
        if features and not self.has_ngram:
            raise ValueError("this model has no n-gram half, hence no novelty features")
        outputs = [PROBABILITY, NOVELTY_FEATURES] if features else [PROBABILITY]
        try:
            result = self.session.run(outputs, {INPUT: idx})
        except Exception as exc:  # ORT's own error types: a graph that fails, the memory budget
            raise _run_error(exc, self.path) from None
        if len(result) != len(outputs) or result[0].shape != (idx.shape[1], len(self.labels)):
            raise ModelFileError(f"{self.path}: the graph answered {result[0].shape} for {idx.shape[1]} names and "
                                 f"{len(self.labels)} languages")
        return result[0], (result[1] if features else None)

    def matches(self, source: str | Path) -> bool:
        """Whether this export was made from the model file ``source`` as it is now."""
        return self.info.get("source_sha256") == file_sha256(source)


def export_beside(path: Path, onnx_file: Path, backend: str, threads: int | None) -> OnnxScorer | None:
    """The export beside the model file ``path`` when it is usable and made from it; else None with
    a one-line warning (``backend="auto"``: torch answers from ``path``) or the error (``"onnx"``)."""
    try:
        scorer = OnnxScorer.load(onnx_file, threads)
    except ModelFileError as exc:
        if backend == "onnx" or not path.is_file():
            raise
        warnings.warn(f"{first_line(exc)}; predicting with torch from {path}", stacklevel=3)
        return None
    if not path.is_file() or scorer.matches(path):
        return scorer
    if backend == "onnx":
        raise NamesError(f"{onnx_file} was exported from another {path.name}: run `names export --force {path}`")
    warnings.warn(f"{onnx_file} was exported from another {path.name} (run `names export --force {path}`); "
                  "predicting with torch", stacklevel=3)
    return None
