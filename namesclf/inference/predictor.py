"""Top-k prediction with probabilities, for one name or a million (streamed in batches).

Beyond the top languages, a prediction can carry what the model file's calibration allows
(:mod:`namesclf.training.calibrate`): a set of languages with guaranteed coverage
(:mod:`namesclf.inference.conformal`), "none of
these" when the name fits no known language (:mod:`namesclf.inference.openset`), and probabilities for another
population's language mix (:mod:`namesclf.inference.priors`). Full names are cut to their surname first
(:mod:`namesclf.data.fullnames`), or, for a model that reads full names, read as given names and
surname, each part scored once per distinct string (:mod:`namesclf.inference.people`,
:mod:`namesclf.inference.parts`). Every answer runs the same stages
(:mod:`namesclf.inference.staged`). Answers can
be given at the level of origin groups or regions (:mod:`namesclf.inference.groups`): the
probabilities are summed within each, after any prior.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from namesclf.config import BACKENDS, STREAM_BATCH
from namesclf.errors import NamesError, check_model_path
from namesclf.inference.answers import Prediction, fold_each, fold_or_raise
from namesclf.inference.conformal import ConformalCalibration, ConformalSets
from namesclf.inference.groups import LevelMap, level_map
from namesclf.inference.onnx_scorer import OnnxScorer, export_beside
from namesclf.inference.openset import OpenSet
from namesclf.inference.options import CPU_BATCH, DEFAULTS, GPU_BATCH, NO_NGRAM_EXPLAIN, Options
from namesclf.inference.parts import Combiner, given_onnx_path, label_index, reads_full_names
from namesclf.inference.people import PartCache, score_people, split_people
from namesclf.inference.priors import resolve_prior, reweight, train_prior
from namesclf.inference.scripts import ScriptEvidence
from namesclf.inference.staged import Scored, answers
from namesclf.models.onnx_format import onnx_path_for
from namesclf.text import encode_batch


class Scorer(Protocol):
    """What runs the network: :class:`~namesclf.inference.onnx_scorer.OnnxScorer` or
    :class:`~namesclf.inference.torch_scorer.TorchScorer`."""

    labels: list[str]
    meta: dict[str, Any]
    config: dict[str, Any]
    has_ngram: bool

    @property
    def device_type(self) -> str: ...

    def score(self, idx: np.ndarray, features: bool = False) -> tuple[np.ndarray, np.ndarray | None]: ...

    def score_tokens(self, idx: np.ndarray, features: bool = False
                     ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]: ...

    def pool_terms(self) -> dict[str, Any]: ...


class Predictor:
    """A trained classifier ready to answer: folding, batching, sets, priors and abstention live
    here; the network runs in a :class:`Scorer` (ONNX Runtime or torch), so this module imports
    no torch and prediction can start without it.

    ``Predictor(scorer)``, or ``Predictor(module, labels, device, meta, config)`` for a torch
    classifier in memory (training, tests).
    """

    #: Most coverages whose set thresholds are kept (least recently used out first): each
    #: distinct ``coverage`` a caller asks for would otherwise add an entry for good.
    calibration_cache: int = 64

    def __init__(self, model: Any, labels: Sequence[str] | None = None, device: Any = "cpu",
                 meta: dict | None = None, config: dict | None = None) -> None:
        if hasattr(model, "score") and hasattr(model, "has_ngram"):
            self.scorer: Scorer = model
        else:
            from namesclf.inference.torch_scorer import TorchScorer

            if labels is None:
                raise TypeError("a torch classifier needs its labels")
            self.scorer = TorchScorer(model, labels, device, meta, config)
        self.labels = list(self.scorer.labels)
        self._cache: dict[Any, Any] = {}  # calibration read from ``meta`` on first use
        self.scripts = ScriptEvidence(self.labels)
        self.given: Predictor | None = None  # the given-name part of a full-name model
        self.combiner: Combiner | None = None

    @property
    def reads_full_names(self) -> bool:
        """Whether this model reads given names and surname (its ``meta`` says so)."""
        return reads_full_names(self.meta)

    def attach_given(self, given: Predictor) -> Predictor:
        """Make this (the surname part of a full-name model) read given names with ``given``,
        combined as the model file's combiner says (:mod:`namesclf.inference.parts`)."""
        self.given = given
        self.combiner = Combiner.from_dict(self.meta.get("combiner"), len(self.labels))
        self._given_index = label_index(given.labels, self.labels)
        return self

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
            return cls(OnnxScorer.load(path, threads))._with_given_onnx(path, threads)
        check_model_path(path)
        onnx_file = onnx_path_for(path)
        if backend == "onnx" or (backend == "auto" and device == "cpu" and onnx_file.is_file() and path.is_file()):
            scorer = export_beside(path, onnx_file, backend, threads)
            if scorer is not None:
                if not reads_full_names(scorer.meta) or given_onnx_path(path).is_file() or backend == "onnx":
                    return cls(scorer)._with_given_onnx(onnx_file, threads)
                warnings.warn(f"{given_onnx_path(path)} is missing (run `names export --force {path}`); "
                              "predicting with torch", stacklevel=2)
        from namesclf.inference.torch_scorer import TorchScorer

        predictor = cls(TorchScorer.load(str(path), device, threads))
        if predictor.reads_full_names:
            predictor.attach_given(cls(TorchScorer.given_part(str(path), device)))
        return predictor

    def _with_given_onnx(self, onnx_file: Path, threads: int | None) -> Predictor:
        """Attach the given part's export beside ``onnx_file`` when this model reads full names."""
        if not self.reads_full_names:
            return self
        given = OnnxScorer.load(given_onnx_path(onnx_file), threads)
        if given.info.get("source_sha256") != self.scorer.info.get("source_sha256"):  # type: ignore[attr-defined]
            raise NamesError(f"{given_onnx_path(onnx_file)} and {onnx_file} were exported from different model "
                             "files: run `names export --force` on the model file")
        return self.attach_given(Predictor(given))

    def score_ascii(self, folded: Sequence[str], features: bool = False, batch_size: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities ``(N, n_languages)`` (and the novelty features) of folded, non-empty names.

        Names are grouped by length and run ``batch_size`` at a time, one length per batch (no
        padding, which is what both runtimes' fast paths want). The default is :data:`CPU_BATCH`
        on CPU, where bigger matrix products amortise the per-step overhead of the recurrence
        (docs/benchmarks.md#prediction-speed); :data:`GPU_BATCH` on an accelerator.
        """
        proba, found, _ = self._score(folded, features, False, batch_size)
        return proba, found

    def score_ascii_tokens(self, folded: Sequence[str], features: bool = False, batch_size: int | None = None
                           ) -> tuple[np.ndarray, np.ndarray | None, list[np.ndarray]]:
        """:meth:`score_ascii` and, per name, the n-gram half's log-likelihood of each letter and
        of the end under every language, ``(len + 1, n_languages)``, from the same passes (what
        :mod:`namesclf.inference.explain` reads)."""
        proba, found, tokens = self._score(folded, features, True, batch_size)
        assert tokens is not None
        return proba, found, tokens

    def _score(self, folded: Sequence[str], features: bool, tokens: bool, batch_size: int | None
               ) -> tuple[np.ndarray, np.ndarray | None, list[np.ndarray] | None]:
        if batch_size is None:
            batch_size = CPU_BATCH if self.device_type == "cpu" else GPU_BATCH
        proba = np.empty((len(folded), len(self.labels)), dtype=np.float32)
        found = np.empty((len(folded), 6)) if features else None
        per_name: list[Any] | None = [None] * len(folded) if tokens else None
        if not len(folded):
            return proba, found, per_name
        idx, lengths = encode_batch(folded)
        order = np.argsort(lengths, kind="stable")
        sorted_lengths = lengths[order]
        starts = np.flatnonzero(np.r_[True, sorted_lengths[1:] != sorted_lengths[:-1]])
        for start, stop in zip(starts, [*starts[1:], len(order)], strict=True):
            width = int(sorted_lengths[start])
            for first in range(start, stop, batch_size):
                rows = order[first : min(first + batch_size, stop)]
                batch = np.ascontiguousarray(idx[:width, rows])
                if per_name is None:
                    p, f = self.scorer.score(batch, features)
                else:
                    p, f, t = self.scorer.score_tokens(batch, features)
                    for column, row in enumerate(rows.tolist()):
                        per_name[row] = t[:, column]
                proba[rows] = p
                if found is not None:
                    found[rows] = f
        return proba, found, per_name

    def score_parts(self, surnames: Sequence[str], givens: Sequence[str], features: bool = False
                    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities ``(N, n_languages)`` (and the surname part's novelty features) of folded,
        non-empty surnames with their folded given names (``''``: none). A surname model reads the
        surnames alone; a full-name model scores each distinct surname and given name once and
        combines them (:func:`~namesclf.inference.people.score_people`)."""
        if self.given is None or self.combiner is None:
            return self.score_ascii(surnames, features)
        return score_people(self, surnames, givens, features)

    def part_cache(self, part: str) -> PartCache:
        """The :class:`~namesclf.inference.people.PartCache` of a full-name model's ``part``
        (``"surname"`` or ``"given"``), made on first use."""
        key = f"parts:{part}"
        if key not in self._cache:
            self._cache[key] = PartCache(len(self.labels if part == "surname" or self.given is None
                                             else self.given.labels))
        return self._cache[key]

    def split(self, names: Sequence[str], options: Options) -> tuple[list[str], list[str]]:
        """``(surnames, given names)`` of raw names as ``options`` says to read them
        (:func:`~namesclf.inference.people.split_people`)."""
        return split_people(self, names, options)

    def proba_ascii(self, folded: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Probabilities ``(N, n_languages)`` for already-folded, non-empty names."""
        return self.score_ascii(folded, batch_size=batch_size)[0]

    def predict_proba(self, names: Sequence[str]) -> np.ndarray:
        """Probabilities for raw names, with their scripts' evidence (a row of zeros where no label
        writes the name's script); a name with no letters after folding is a :class:`NamesError`."""
        return self.scripts.apply(names, self.proba_ascii([fold_or_raise(n) for n in names]), self.proba_ascii).proba

    def proba_with(self, names: Sequence[str], options: Options) -> np.ndarray:
        """Probabilities ``(N, n_languages)`` in label order, of what ``options`` says to classify
        (the surname of a full name unless ``surname_only``) and under its ``prior``: the matrix
        behind :meth:`predict_with`'s top languages. At a ``level`` other than ``"label"`` the
        columns are that level's, in :meth:`classes` order: sums of the label columns after the
        prior. A name with no letters is a :class:`NamesError`."""
        proba = self.scored(names, options).proba
        return proba if options.level == "label" else self.level_map(options.level).sum_columns(proba)

    def scored(self, names: Sequence[str], options: Options, strict: bool = True, given: Sequence[str] | None = None,
               features: bool = False, tokens: bool = False) -> Scored:
        """The stages every answer runs (:class:`~namesclf.inference.staged.Scored`): read each
        name as ``options`` says (``given``: the names are surnames with these given names), fold,
        score (with the novelty ``features``, or the per-letter ``tokens`` of an explanation),
        script evidence, prior. A name with no letters is a :class:`NamesError` when ``strict``."""
        if given is None:
            parsed, givens = self.split(names, options)
        else:  # separate columns: the parts are known
            parsed, givens = list(names), [""] * len(names) if options.surname_only else list(given)
        folded = fold_each(parsed, strict) if self.given is None else self.part_cache("surname").fold(parsed)
        ok = [i for i, f in enumerate(folded) if f]
        if strict and len(ok) < len(folded):
            fold_or_raise(parsed[next(i for i, f in enumerate(folded) if not f)])
        if not ok:
            empty = np.empty((0, len(self.labels)), dtype=np.float32)
            return Scored(parsed, folded, ok, empty, empty, {}, [])
        found = None
        if tokens:
            raw, features_found, found = self.score_ascii_tokens([folded[i] for i in ok], features=features)
        else:
            folded_given = self.part_cache("given").fold(givens) if self.given is not None else givens
            raw, features_found = self.score_parts([folded[i] for i in ok], [folded_given[i] for i in ok], features)
        evidence = self.scripts.apply([parsed[i] for i in ok], raw, self.proba_ascii)
        prior = resolve_prior(options.prior, self.labels)
        proba = evidence.proba if prior is None else reweight(evidence.proba, self.trained_on, prior)
        if evidence.unwritten:
            proba = proba.copy() if proba is evidence.proba else proba
            proba[evidence.unwritten] = 0.0  # no label writes it: zeros, not the prior reweight falls back to
        return Scored(parsed, folded, ok, evidence.proba, proba, evidence.shown, evidence.unwritten,
                      features_found, found)

    def level_map(self, level: str) -> LevelMap:
        """How this model's labels roll up at ``level`` (:func:`~namesclf.inference.groups.level_map`)."""
        key = f"level:{level}"
        if key not in self._cache:
            self._cache[key] = level_map(self.labels, level)
        return self._cache[key]

    def classes(self, level: str = "label") -> list[str]:
        """What an answer at ``level`` can be: the labels, or their groups or regions in the
        column order of :meth:`proba_with` at that level."""
        return list(self.level_map(level).names)

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
        found = self._cache.pop(key, None)  # re-inserted below: the dict's order is the LRU order
        if found is None:
            calibration = ConformalCalibration.from_dict(self._calibration("conformal"), len(self.labels))
            found = calibration.at(coverage, per_language)
        if self.calibration_cache > 0:
            self._cache[key] = found
            kept = [k for k in self._cache if isinstance(k, tuple)]
            for old in kept[: max(0, len(kept) - self.calibration_cache)]:
                del self._cache[old]
        return found

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

    def predict(self, names: Sequence[str], k: int = DEFAULTS.k, *, abstain: bool = DEFAULTS.abstain,
                abstain_rate: float = DEFAULTS.abstain_rate, coverage: float | None = DEFAULTS.coverage,
                per_language: bool = DEFAULTS.per_language, prior: str | Mapping[str, float] | None = DEFAULTS.prior,
                level: str = DEFAULTS.level, surname_only: bool = DEFAULTS.surname_only,
                order: str = DEFAULTS.order, explain: bool = DEFAULTS.explain, strict: bool = True
                ) -> list[Prediction]:
        """The answer for each name, in input order.

        The options are those of :class:`~namesclf.inference.options.Options`: ``k`` top languages
        with probabilities; ``coverage`` adds the smallest set of languages that holds the true
        one with that probability (over names of the training mix; with ``per_language`` for
        names of every language, at the price of larger sets); ``prior`` (``"train"``,
        ``"uniform"``, a file, or a mapping) re-weighs the probabilities for another population;
        ``abstain`` flags names that fit no known language (at most ``abstain_rate`` of in-set
        names wrongly); ``level`` (``"group"``, ``"region"``) answers with origin groups or
        regions, whose probabilities are sums of their labels' and whose set is the groups of
        the labels in the label-level set (so it keeps the set's coverage); a full name is cut to
        its surname unless ``surname_only`` (a full-name model reads its given names too), its
        words read in ``order``; ``explain`` adds which letters pushed the answer over
        the runner-up (:class:`~namesclf.inference.explain.Explanation`; at a level, the two most
        probable labels). With
        ``strict=False`` a name without letters gets an empty answer instead of an error.
        """
        options = Options(k=k, abstain=abstain, abstain_rate=abstain_rate, coverage=coverage,
                          per_language=per_language, prior=prior, level=level, surname_only=surname_only,
                          order=order, explain=explain)
        return self.predict_with(names, options, strict=strict)

    def predict_with(self, names: Sequence[str], options: Options, strict: bool = True,
                     given: Sequence[str] | None = None) -> list[Prediction]:
        """:meth:`predict` with its options in one object (what streams and tables pass around).

        Each distinct name is answered once (real lists repeat surnames heavily); repeats of a
        name share its :class:`Prediction` object. With ``given`` (one entry per name, ``''`` for
        none) the names are surnames and ``given`` their given names, read as they are (a table
        with the two in separate columns); a surname model ignores ``given``.
        """
        if given is not None:
            if len(given) != len(names):
                raise NamesError(f"{len(names)} surnames but {len(given)} given names")
            pairs = list(zip(names, given, strict=True))
            distinct_pairs = list(dict.fromkeys(pairs))
            found = self._predict_distinct([p[0] for p in distinct_pairs], options, strict,
                                           [p[1] for p in distinct_pairs])
            by_pair = dict(zip(distinct_pairs, found, strict=True))
            return [by_pair[pair] for pair in pairs]
        distinct = list(dict.fromkeys(names))
        if len(distinct) == len(names):
            return self._predict_distinct(names, options, strict)
        answers = dict(zip(distinct, self._predict_distinct(distinct, options, strict), strict=True))
        return [answers[name] for name in names]

    def _predict_distinct(self, names: Sequence[str], options: Options, strict: bool,
                          given: Sequence[str] | None = None) -> list[Prediction]:
        if options.coverage is not None:  # what the options need from the model file, before any scoring
            self.conformal(options.coverage, options.per_language)
        if options.abstain:
            self.open_set.threshold(options.abstain_rate)
        if options.explain:
            self.explain_terms()
        scored = self.scored(names, options, strict, given, features=options.abstain, tokens=options.explain)
        return answers(self, names, scored, options)

    def explain_terms(self) -> dict[str, Any]:
        """What an explanation adds to the n-gram half's per-letter terms (its order, its training
        prior, the pooling numbers), or a one-line error for a model that has no n-gram half or,
        on ONNX Runtime, an export made before explanations were."""
        if "explain" not in self._cache:
            if not self.config.get("ngram_order"):
                raise NamesError(NO_NGRAM_EXPLAIN)
            if self.given is not None:
                raise NamesError("explanations (explain) are for surname models: this model reads given names "
                                 "too, and its answer is not one n-gram half's")
            self._cache["explain"] = self.scorer.pool_terms()
        return self._cache["explain"]

    def top_k(self, names: Sequence[str], k: int = DEFAULTS.k, strict: bool = True) -> list[Prediction]:
        """Top-``k`` per name, in input order. With ``strict=False`` an unreadable name gets no languages."""
        return self.predict(names, k, strict=strict)

    def stream(self, names: Iterable[str], k: int | Options = DEFAULTS.k, batch_size: int = STREAM_BATCH
               ) -> Iterator[Prediction]:
        """Predictions for an endless iterable in bounded memory: ``batch_size`` names at a time."""
        options = k if isinstance(k, Options) else Options(k=k)
        it = iter(names)
        while batch := list(islice(it, batch_size)):
            yield from self.predict_with(batch, options, strict=False)
