"""Top-k prediction with probabilities, for one name or a million (streamed in batches).

Beyond the top languages, a prediction can carry what the model file's calibration allows
(:mod:`.calibrate`): a set of languages with guaranteed coverage (:mod:`.conformal`), "none of
these" when the name fits no known language (:mod:`.openset`), and probabilities for another
population's language mix (:mod:`.priors`). Full names are cut to their surname first
(:mod:`.fullnames`).
"""

from __future__ import annotations

import csv
import json
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Protocol, TextIO

import numpy as np

from .config import BACKENDS, PREDICTION_FORMATS, STREAM_BATCH
from .conformal import ConformalCalibration, ConformalSets
from .errors import NamesError
from .fullnames import MAX_RAW_LENGTH, parse_name
from .onnx_scorer import OnnxScorer, onnx_path_for
from .openset import ABSTAIN_RATE, OpenSet
from .priors import resolve_prior, reweight, train_prior
from .text import encode_batch, to_ascii

#: Names per forward pass on CPU / on an accelerator (see :meth:`Predictor.proba_ascii`).
CPU_BATCH = 2048
GPU_BATCH = 4096


#: What an abstained prediction shows in place of a language.
UNKNOWN = "unknown"


@dataclass
class Prediction:
    """One name's answer: the input, its folded form, and the top languages with probabilities.

    The optional fields are set when asked for: ``surname`` (the part of a full name that was
    classified), ``abstained`` and ``novelty`` (``abstain=True``), ``prediction_set``
    (``coverage=...``).
    """

    name: str
    ascii: str
    languages: list[tuple[str, float]]
    surname: str | None = None
    abstained: bool | None = None
    novelty: float | None = None
    prediction_set: list[str] | None = None

    @property
    def answer(self) -> str | None:
        """The top language, :data:`UNKNOWN` when abstained, None when the name had no letters."""
        if self.abstained:
            return UNKNOWN
        return self.languages[0][0] if self.languages else None

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "ascii": self.ascii,
                               "predictions": [{"language": lang, "probability": p} for lang, p in self.languages]}
        if self.surname is not None:
            out["surname"] = self.surname
        if self.abstained is not None:
            out.update({"abstained": self.abstained, "novelty": self.novelty, "answer": self.answer})
        if self.prediction_set is not None:
            out["prediction_set"] = self.prediction_set
        return out


@dataclass(frozen=True)
class Options:
    """What a prediction should carry besides the top ``k`` (see :meth:`Predictor.predict`)."""

    k: int = 3
    coverage: float | None = None
    per_language: bool = False
    prior: str | dict[str, float] | None = None
    abstain: bool = False
    abstain_rate: float = ABSTAIN_RATE
    surname_only: bool = False


class Scorer(Protocol):
    """What runs the network: :class:`.onnx_scorer.OnnxScorer` or :class:`.torch_scorer.TorchScorer`."""

    labels: list[str]
    meta: dict[str, Any]
    config: dict[str, Any]
    has_ngram: bool

    @property
    def device_type(self) -> str: ...

    def score(self, idx: np.ndarray, features: bool = False) -> tuple[np.ndarray, np.ndarray | None]: ...


class Predictor:
    """A trained classifier ready to answer: folding, batching, sets, priors and abstention live
    here; the network runs in a :class:`Scorer` (ONNX Runtime or torch), so this module imports
    no torch and prediction can start without it.

    ``Predictor(scorer)``, or ``Predictor(module, labels, device, meta, config)`` for a torch
    classifier in memory (training, tests).
    """

    def __init__(self, model: Any, labels: Sequence[str] | None = None, device: Any = "cpu",
                 meta: dict | None = None, config: dict | None = None) -> None:
        if hasattr(model, "score") and hasattr(model, "has_ngram"):
            self.scorer: Scorer = model
        else:
            from .torch_scorer import TorchScorer

            if labels is None:
                raise TypeError("a torch classifier needs its labels")
            self.scorer = TorchScorer(model, labels, device, meta, config)
        self.labels = list(self.scorer.labels)
        self._cache: dict[Any, Any] = {}  # calibration read from ``meta`` on first use

    @property
    def meta(self) -> dict[str, Any]:
        return self.scorer.meta

    @property
    def config(self) -> dict[str, Any]:
        return self.scorer.config

    @property
    def backend(self) -> str:
        """``onnx`` or ``torch``: which runtime answers."""
        return "onnx" if isinstance(self.scorer, OnnxScorer) else "torch"

    @property
    def model(self) -> Any:
        """The torch module (torch backend only: load with ``backend="torch"`` to get at it)."""
        model = getattr(self.scorer, "model", None)
        if model is None:
            raise NamesError("this predictor runs on ONNX Runtime; load it with backend='torch' for the torch module")
        return model

    @property
    def device_type(self) -> str:
        return self.scorer.device_type

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", backend: str = "auto", threads: int | None = None
             ) -> Predictor:
        """Load a model file. ``backend="auto"`` answers from the ONNX export beside it (same stem,
        ``.onnx``, written by ``names train`` and ``names export``) when there is one made from
        this very file and ``device`` is the CPU, else from torch; a path ending in ``.onnx`` is
        the export itself. ``threads`` caps the compute threads: ONNX Runtime's for this session,
        or torch's (a process-wide setting) when the model runs on torch; None leaves them be."""
        if backend not in BACKENDS:
            raise NamesError(f"unknown backend {backend!r}: use {', '.join(BACKENDS)}")
        path = Path(path)
        if path.suffix == ".onnx":
            if backend == "torch":
                raise NamesError(f"{path} is an ONNX export: give the .pt model file for the torch backend")
            return cls(OnnxScorer.load(path, threads))
        onnx_file = onnx_path_for(path)
        if backend == "onnx" or (backend == "auto" and device == "cpu" and onnx_file.is_file() and path.is_file()):
            scorer = OnnxScorer.load(onnx_file, threads)
            if not path.is_file() or scorer.matches(path):
                return cls(scorer)
            if backend == "onnx":
                raise NamesError(f"{onnx_file} was exported from another {path.name}: run `names export {path}`")
            warnings.warn(f"{onnx_file} was exported from another {path.name} (run `names export {path}`); "
                          "predicting with torch", stacklevel=2)
        from .torch_scorer import TorchScorer

        return cls(TorchScorer.load(str(path), device, threads))

    @classmethod
    def from_payload(cls, payload: dict, device: str = "cpu") -> Predictor:
        """A torch predictor from a loaded model file's dict."""
        from .torch_scorer import TorchScorer

        return cls(TorchScorer.from_payload(payload, device))

    def score_ascii(self, folded: Sequence[str], features: bool = False, batch_size: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities ``(N, n_languages)`` (and the novelty features) of folded, non-empty names.

        Names are grouped by length and run ``batch_size`` at a time, one length per batch (no
        padding, which is what both runtimes' fast paths want). The default is :data:`CPU_BATCH`
        on CPU: for the 64-unit GRU on 2 quiet cores, 2,048 names a pass ran at ~47,000 names/s
        against ~24,000 for 256 (bigger matrix products amortise the per-step overhead of the
        recurrence); :data:`GPU_BATCH` on an accelerator.
        """
        if batch_size is None:
            batch_size = CPU_BATCH if self.device_type == "cpu" else GPU_BATCH
        proba = np.empty((len(folded), len(self.labels)), dtype=np.float32)
        found = np.empty((len(folded), 6)) if features else None
        if not len(folded):
            return proba, found
        idx, lengths = encode_batch(folded)
        order = np.argsort(lengths, kind="stable")
        sorted_lengths = lengths[order]
        starts = np.flatnonzero(np.r_[True, sorted_lengths[1:] != sorted_lengths[:-1]])
        for start, stop in zip(starts, [*starts[1:], len(order)], strict=True):
            width = int(sorted_lengths[start])
            for first in range(start, stop, batch_size):
                rows = order[first : min(first + batch_size, stop)]
                p, f = self.scorer.score(np.ascontiguousarray(idx[:width, rows]), features)
                proba[rows] = p
                if found is not None:
                    found[rows] = f
        return proba, found

    def proba_ascii(self, folded: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Probabilities ``(N, n_languages)`` for already-folded, non-empty names."""
        return self.score_ascii(folded, batch_size=batch_size)[0]

    def predict_proba(self, names: Sequence[str]) -> np.ndarray:
        """Probabilities for raw names; a name with no letters after folding is a :class:`NamesError`."""
        return self.proba_ascii([fold_or_raise(n) for n in names])

    # ------------------------------------------------------------------ calibration from the model file

    def _calibration(self, key: str) -> Any:
        values = (self.meta.get("calibration") or {}).get(key)
        if values is None:
            what = {"conformal": "prediction sets (--coverage)", "openset": "abstention (--abstain)",
                    "label_counts": "population priors (--prior)"}[key]
            raise NamesError(f"this model file has no calibration for {what}: train it again with this version "
                             "of namesclf, on data with validation names (and, to abstain, an n-gram half)")
        return values

    def conformal(self, coverage: float, per_language: bool = False) -> ConformalSets:
        """The set thresholds for ``coverage`` from the validation names' scores."""
        key = ("conformal", coverage, per_language)
        if key not in self._cache:
            calibration = ConformalCalibration.from_dict(self._calibration("conformal"), len(self.labels))
            self._cache[key] = calibration.at(coverage, per_language)
        return self._cache[key]

    @property
    def open_set(self) -> OpenSet:
        if "openset" not in self._cache:
            if not self.scorer.has_ngram:
                raise NamesError("abstention needs the n-gram half (this model was trained with --ngram-order 0)")
            self._cache["openset"] = OpenSet.from_dict(self._calibration("openset"))
        return self._cache["openset"]

    @property
    def trained_on(self) -> np.ndarray:
        """The training names' language mix (add-one smoothed): what priors are taken against."""
        return train_prior(self._calibration("label_counts"))

    def novelty_ascii(self, folded: Sequence[str]) -> np.ndarray:
        """The novelty score of already-folded names (higher: less like any known language)."""
        open_set = self.open_set
        features = self.score_ascii(folded, features=True)[1]
        assert features is not None
        return open_set.scorer(features)

    # ------------------------------------------------------------------ answers

    def predict(self, names: Sequence[str], k: int = 3, *, coverage: float | None = None, per_language: bool = False,
                prior: str | dict[str, float] | None = None, abstain: bool = False,
                abstain_rate: float = ABSTAIN_RATE, surname_only: bool = False, strict: bool = True
                ) -> list[Prediction]:
        """The answer for each name, in input order.

        ``k`` top languages with probabilities; ``coverage`` adds the smallest set of languages
        that holds the true one with that probability (over names of the training mix; with
        ``per_language`` for names of every language, at the price of larger sets); ``prior``
        (``"train"``, ``"uniform"``, a file, or a mapping) re-weighs the probabilities for another
        population; ``abstain`` flags names that fit
        no known language (at most ``abstain_rate`` of in-set names wrongly); a full name is cut
        to its surname unless ``surname_only``. With ``strict=False`` a name without letters gets
        an empty answer instead of an error.
        """
        return self.predict_with(names, Options(k, coverage, per_language, prior, abstain, abstain_rate,
                                                surname_only), strict=strict)

    def predict_with(self, names: Sequence[str], options: Options, strict: bool = True) -> list[Prediction]:
        """:meth:`predict` with its options in one object (what streams and tables pass around).

        Each distinct name is answered once (real lists repeat surnames heavily); repeats of a
        name share its :class:`Prediction` object.
        """
        distinct = list(dict.fromkeys(names))
        if len(distinct) == len(names):
            return self._predict_distinct(names, options, strict)
        answers = dict(zip(distinct, self._predict_distinct(distinct, options, strict), strict=True))
        return [answers[name] for name in names]

    def _predict_distinct(self, names: Sequence[str], options: Options, strict: bool) -> list[Prediction]:
        if options.k < 1:
            raise NamesError("k must be at least 1")
        k = min(options.k, len(self.labels))
        prior = resolve_prior(options.prior, self.labels)
        sets = None if options.coverage is None else self.conformal(options.coverage, options.per_language)
        threshold = self.open_set.threshold(options.abstain_rate) if options.abstain else None
        parsed = list(names) if options.surname_only else [_surname(n) for n in names]
        folded = [fold_or_raise(p) if strict else fold(p) for p in parsed]
        results = [Prediction(n, f, [], surname=p if p != n else None)
                   for n, p, f in zip(names, parsed, folded, strict=True)]
        ok = [i for i, f in enumerate(folded) if f]
        if not ok:
            return results
        raw, features = self.score_ascii([folded[i] for i in ok], features=threshold is not None)
        proba = raw if prior is None else reweight(raw, self.trained_on, prior)
        # Vectorised: one argsort (the top k and the sets' order) and two .tolist() calls instead
        # of numpy scalar reads per cell.
        order = np.argsort(-proba, axis=1, kind="stable")
        top = order[:, :k]
        top_p = np.take_along_axis(proba, top, axis=1).tolist()
        in_set = sets.mask(raw) if sets is not None else None  # sets keep their coverage under any prior
        novelty = self.open_set.scorer(features) if features is not None else None
        labels = self.labels
        for row, (i, js, ps) in enumerate(zip(ok, top.tolist(), top_p, strict=True)):
            result = results[i]
            result.languages = [(labels[j], p) for j, p in zip(js, ps, strict=True)]
            if in_set is not None:
                result.prediction_set = [labels[j] for j in order[row] if in_set[row, j]]
            if novelty is not None and threshold is not None:
                result.novelty = float(novelty[row])
                result.abstained = bool(novelty[row] > threshold)
        return results

    def top_k(self, names: Sequence[str], k: int = 3, strict: bool = True) -> list[Prediction]:
        """Top-``k`` per name, in input order. With ``strict=False`` an unreadable name gets no languages."""
        return self.predict(names, k, strict=strict)

    def stream(self, names: Iterable[str], k: int | Options = 3, batch_size: int = STREAM_BATCH
               ) -> Iterator[Prediction]:
        """Predictions for an endless iterable in bounded memory: ``batch_size`` names at a time."""
        options = k if isinstance(k, Options) else Options(k=k)
        it = iter(names)
        while batch := list(islice(it, batch_size)):
            yield from self.predict_with(batch, options, strict=False)


def output_columns(options: Options, n_labels: int) -> list[str]:
    """The flat columns of a prediction (CSV, tables): the top languages and probabilities, then
    what the options add."""
    k = min(options.k, n_labels)
    columns = ["language", "probability", *(c for i in range(2, k + 1) for c in (f"language_{i}", f"probability_{i}"))]
    if not options.surname_only:
        columns.append("surname")
    if options.abstain:
        columns += ["answer", "abstained", "novelty"]
    if options.coverage is not None:
        columns.append("prediction_set")
    return columns


def output_row(pred: Prediction, options: Options, n_labels: int) -> list[Any]:
    """``pred`` as the values of :func:`output_columns`: strings, floats, booleans, None where it has none."""
    k = min(options.k, n_labels)
    row: list[Any] = []
    for lang, p in pred.languages:
        row += [lang, p]
    row += [None] * (2 * k - len(row))
    if not options.surname_only:
        row.append(pred.surname)
    if options.abstain:
        row += [pred.answer, pred.abstained, pred.novelty]
    if options.coverage is not None:
        row.append(None if pred.prediction_set is None else ";".join(pred.prediction_set))
    return row


def csv_cells(row: Sequence[Any]) -> list[str]:
    """Values of :func:`output_row` as CSV text: 6 decimals, ``true``/``false``, empty for None."""
    return ["" if v is None else str(v).lower() if isinstance(v, bool) else f"{v:.6f}" if isinstance(v, float)
            else str(v) for v in row]


#: Output lines kept by :func:`write_predictions` for names seen before (about 30 MB when full).
LINE_CACHE_SIZE = 100_000


def write_predictions(predictor: Predictor, lines: Iterable[str], out: TextIO, k: int | Options = 3,
                      fmt: str = "csv", batch_size: int = STREAM_BATCH, progress: bool | None = None,
                      cache_size: int = LINE_CACHE_SIZE) -> int:
    """Stream the answer for every line to ``out`` as CSV or JSON lines; return how many lines had
    no letters (they are written with empty languages, so output rows match input lines).

    CSV columns: ``name`` and :func:`output_columns`. ``k`` is the number of languages or an
    :class:`Options`. Memory stays bounded by ``batch_size`` names and ``cache_size`` cached
    output lines whatever the input's length: a name seen before is written from the cache,
    because a real list repeats its common surnames thousands of times (docs/benchmarks.md).
    ``progress=None`` shows a bar on stderr only when it is a terminal. Input that is not UTF-8
    is a :class:`NamesError`.
    """
    from tqdm.auto import tqdm  # here: a prediction of a few names on the command line should not pay for it

    options = k if isinstance(k, Options) else Options(k=k)
    if fmt not in PREDICTION_FORMATS:
        raise NamesError(f"unknown format {fmt!r}: use {', '.join(PREDICTION_FORMATS)}")
    n_labels = len(predictor.labels)
    line = _line_formatter(options, n_labels, fmt)
    if fmt == "csv":
        out.write(line(None))
    cache: dict[str, tuple[str, bool]] = {}  # name -> (output line, had no letters); oldest evicted first
    skipped = 0
    it = iter(lines)
    try:
        with tqdm(desc="predict", unit=" names", disable=None if progress is None else not progress,
                  file=sys.stderr) as bar:
            while batch := list(islice(it, batch_size)):
                missing = [name for name in dict.fromkeys(batch) if name not in cache]
                for pred in predictor.predict_with(missing, options, strict=False):
                    cache[pred.name] = (line(pred), not pred.languages)
                written = [cache[name] for name in batch]
                out.write("".join(text for text, _ in written))
                skipped += sum(empty for _, empty in written)
                bar.update(len(batch))
                for old in list(islice(cache, max(0, len(cache) - cache_size))):
                    del cache[old]
    except UnicodeDecodeError as exc:
        raise NamesError(f"input is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    return skipped


class _LastLine:
    """A file for ``csv.writer`` that keeps the line it was given: CSV quoting without a stream."""

    text = ""

    def write(self, text: str) -> int:
        self.text = text
        return len(text)


def _line_formatter(options: Options, n_labels: int, fmt: str) -> Any:
    """``line(prediction)`` -> one output line with its newline; ``line(None)`` is the CSV header."""
    if fmt != "csv":
        return lambda pred: json.dumps(pred.to_dict(), ensure_ascii=False) + "\n"
    last = _LastLine()
    writer = csv.writer(last, lineterminator="\n")

    def line(pred: Prediction | None) -> str:
        if pred is None:
            writer.writerow(["name", *output_columns(options, n_labels)])
        else:
            writer.writerow([pred.name, *csv_cells(output_row(pred, options, n_labels))])
        return last.text

    return line


def _surname(name: str) -> str:
    """The part of ``name`` to classify: the surname of a full name, unless that part has no letters
    (``"A 0"``) and the whole has some: then the whole."""
    surname = parse_name(name[:MAX_RAW_LENGTH]).surname
    return surname if surname == name or fold(surname) or not fold(name) else name


def fold(name: str) -> str:
    """Fold a name for prediction (capped raw length, see :data:`MAX_RAW_LENGTH`)."""
    return to_ascii(name[:MAX_RAW_LENGTH])


def fold_or_raise(name: str) -> str:
    folded = fold(name)
    if not folded:
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise NamesError(f"{shown!r} has no letters after folding to ASCII; nothing to classify")
    return folded
