"""``NameClassifier``: the project as a scikit-learn estimator (``fit``/``predict``/``predict_proba``).

It trains through the same code as ``names train``, holds out a grouped validation slice of what
it is given for best-epoch selection, and saves the same self-describing model file, so
``cross_val_score(NameClassifier(), names, languages)`` and ``names predict`` agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from namesclf.config import TrainConfig
from namesclf.data.dataset import split_names
from namesclf.errors import NamesError
from namesclf.files import atomic_write_with
from namesclf.inference.answers import Prediction
from namesclf.inference.options import DEFAULTS, UNKNOWN, Options, option_fields
from namesclf.inference.predictor import Predictor
from namesclf.models.checkpoint import classifier_meta, classifier_payload, save_checkpoint
from namesclf.models.export import export_payload
from namesclf.models.onnx_format import onnx_path_for
from namesclf.text import to_ascii

_D = TrainConfig()  # the defaults below are TrainConfig's and Options' own, never retyped
_O = DEFAULTS


class NameClassifier(ClassifierMixin, BaseEstimator):
    """Which language a surname comes from: a character RNN pooled with a character n-gram model.

    Every parameter of :class:`~namesclf.config.TrainConfig` (the options of ``names train``) is a
    parameter here, with the same default; ``None`` means the chosen model's own default
    (:data:`~namesclf.config.MODEL_DEFAULTS`, or :data:`~namesclf.config.LARGE_CORPUS_DEFAULTS`
    when ``fit`` gets 100,000 training names or more).

    Parameters
    ----------
    model : {"gru", "rnn", "lstm", "handbuilt"}, default="gru"
        The network: a torch cell, or the tutorial's hand-built RNN trained by manual SGD.
    hidden : int, default=None
        Hidden units per direction.
    embed : int, default=64
        Letter embedding size (torch cells).
    layers : int, default=1
        Stacked recurrent layers (torch cells).
    bidirectional : bool, default=True
        Read names in both directions (torch cells).
    dropout : float, default=0.2
        Dropout on embeddings and features (torch cells).
    ngram_buckets, ngram_dim : int, default=0, 64
        A fastText-style bag of hashed letter n-grams inside the network (0: none).
    ngram_order : int, default=None
        Order of the Kneser-Ney n-gram Bayes classifier pooled with the network (0: the network alone).
    refit_ngram : bool, default=True
        Count the n-gram half again on train + validation names once the epoch is chosen.
    tanh : bool, default=True
        Squash the hand-built RNN's hidden state (False: the tutorial's linear recurrence).
    epochs : int, default=None
        At most this many epochs; the best by validation macro-F1 is kept.
    lr : float, default=None
        Peak learning rate (cosine decay).
    batch_size : int, default=None
        Names per step.
    optimizer : {"manual", "sgd", "adam", "adamw"}, default=None
        ``manual`` is the hand-written SGD update (the only one the hand-built RNN takes).
    weight_decay : float, default=0.0
    clip : float or None, default=1.0
        Gradient-norm clipping.
    class_weight : {"none", "sqrt", "balanced"}, default="none"
        Weigh rare languages up in the loss.
    patience : int, default=None
        Stop after this many epochs without a better validation macro-F1 (0: never).
    seed : int, default=0
        Seeds the validation split and the training.
    device : {"auto", "cpu", "cuda"}, default="cpu"
        ``cpu`` unless asked: an estimator in a scikit-learn pipeline should not grab a GPU by itself.
    valid_fraction : float, default=0.1
        Share of the distinct names held out (grouped by folded name) to choose the epoch.
    progress : bool, default=False
        Show progress bars and per-epoch lines.

    The prediction options are those of :class:`~namesclf.inference.options.Options`, with its
    defaults but for ``surname_only``:

    k : int, default=3
        Languages per name in :meth:`top_k`.
    abstain : bool, default=False
        :meth:`predict` answers ``"unknown"`` for names that fit none of the known languages.
    abstain_rate : float, default=0.05
        The share of names from known languages that may be wrongly abstained on.
    coverage : float, default=None
        The coverage of :meth:`predict_set` when its call gives none.
    per_language : bool, default=False
        Calibrate :meth:`predict_set`'s sets per language (rare languages covered too).
    prior : {"train", "uniform"}, path or mapping, default=None
        The population's language mix: :meth:`predict_proba` and :meth:`predict` re-weigh for it.
    level : {"label", "group", "region"}, default="label"
        Answer with origin groups or regions (docs/groups.md): ``classes_``, :meth:`predict_proba`
        (probabilities summed within each), :meth:`predict`, :meth:`predict_set`, :meth:`top_k`
        and :meth:`score` (which maps the true labels to the level) all work at it; :meth:`fit`
        still learns the labels.
    surname_only : bool, default=True
        Classify each name as given, as :meth:`fit` learnt from them (False: cut a full name to
        its surname first, as ``names predict`` does). Ignored by a full-name model
        (``full_names``), which always reads given names and surname.
    order : {"auto", "given-first", "family-first"}, default="auto"
        How full names are written (``full_names``, or ``surname_only=False``).
    full_names : bool, default=False
        ``X`` holds full names (``"Fyodor Dostoevsky"``): :meth:`fit` parses each into given names
        and surname and trains a model that reads both (docs/models.md, "Full-name models"), and
        prediction parses the same way. The network options do not apply (its parts are n-gram
        classifiers of order ``ngram_order``, default 5).
    explain : bool, default=False
        :meth:`top_k`'s predictions carry an ``explanation``: which letters pushed the answer over
        the runner-up (docs/explain.md).

    Attributes
    ----------
    classes_ : ndarray of str
        The languages (or, at a ``level``, the groups or regions), in the column order of
        :meth:`predict_proba`.
    predictor_ : Predictor
        The trained model, ready to answer (``top_k``, ``stream``).

    Examples
    --------
    >>> from namesclf import NameClassifier
    >>> clf = NameClassifier(epochs=3).fit(names, languages)          # doctest: +SKIP
    >>> clf.predict(["Dostoevsky", "Nakamura"])                        # doctest: +SKIP
    array(['Russian', 'Japanese'], dtype='<U10')
    >>> clf.save("models/mine.pt")                                     # doctest: +SKIP
    """

    def __init__(self, model: str = _D.model, *, hidden: int | None = _D.hidden, embed: int = _D.embed,
                 layers: int = _D.layers, bidirectional: bool = _D.bidirectional, dropout: float = _D.dropout,
                 ngram_buckets: int = _D.ngram_buckets, ngram_dim: int = _D.ngram_dim,
                 ngram_order: int | None = _D.ngram_order, refit_ngram: bool = _D.refit_ngram, tanh: bool = _D.tanh,
                 epochs: int | None = _D.epochs, lr: float | None = _D.lr, batch_size: int | None = _D.batch_size,
                 optimizer: str | None = _D.optimizer, weight_decay: float = _D.weight_decay,
                 clip: float | None = _D.clip, class_weight: str = _D.class_weight,
                 patience: int | None = _D.patience, seed: int = _D.seed, device: str = "cpu",
                 valid_fraction: float = 0.1, progress: bool = False, k: int = _O.k, abstain: bool = _O.abstain,
                 abstain_rate: float = _O.abstain_rate, coverage: float | None = _O.coverage,
                 per_language: bool = _O.per_language, prior: str | Mapping[str, float] | None = _O.prior,
                 level: str = _O.level, surname_only: bool = True, order: str = _O.order,
                 explain: bool = _O.explain, full_names: bool = False) -> None:
        self.model = model
        self.hidden = hidden
        self.embed = embed
        self.layers = layers
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.ngram_buckets = ngram_buckets
        self.ngram_dim = ngram_dim
        self.ngram_order = ngram_order
        self.refit_ngram = refit_ngram
        self.tanh = tanh
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.clip = clip
        self.class_weight = class_weight
        self.patience = patience
        self.seed = seed
        self.device = device
        self.valid_fraction = valid_fraction
        self.progress = progress
        self.k = k
        self.abstain = abstain
        self.abstain_rate = abstain_rate
        self.coverage = coverage
        self.per_language = per_language
        self.prior = prior
        self.level = level
        self.surname_only = surname_only
        self.explain = explain
        self.order = order
        self.full_names = full_names

    def _config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.get_params())

    def fit(self, X: Sequence[str], y: Sequence[str]) -> NameClassifier:
        """Train on names ``X`` and languages ``y`` (a grouped slice is held out to pick the epoch)."""
        if self.full_names:
            return self._fit_full_names(X, y)
        from namesclf.training.train import (
            train_classifier,  # training only when fitting: a loaded model never needs it
        )

        frame = pd.DataFrame({"name": list(X), "language": [str(v) for v in y]})
        frame["ascii"] = frame["name"].map(to_ascii)
        frame = frame[frame["ascii"] != ""].drop_duplicates(["ascii", "language"]).reset_index(drop=True)
        if frame["language"].nunique() < 2:
            raise NamesError("cannot train a classifier on fewer than two languages")
        split = split_names(frame, seed=self.seed, valid=self.valid_fraction, test=0.0)
        result = train_classifier(frame[split == "train"], frame[split == "valid"], self._config(),
                                  progress=self.progress)
        device = next(result.model.parameters()).device
        meta = classifier_meta(history=result.history, best_epoch=result.best_epoch, valid=result.valid,
                               pooling=result.pooling, calibration=result.calibration)
        self.predictor_ = Predictor(result.model, result.labels, device, meta=meta, config=result.config.to_dict())
        return self

    @property
    def classes_(self) -> np.ndarray:
        """The columns of :meth:`predict_proba`: the labels, or their groups or regions at ``level``
        (a property, so that ``set_params(level=...)`` after fitting changes it too)."""
        if not hasattr(self, "predictor_"):
            raise AttributeError("classes_: this NameClassifier is not fitted yet")
        return np.array(self.predictor_.classes(self._options().level))

    def _fit_full_names(self, X: Sequence[str], y: Sequence[str]) -> NameClassifier:
        """:meth:`fit` for full names: parse, hold out people grouped by surname, train both parts."""
        from namesclf.data.fullnames import split_name
        from namesclf.training.fullname import DEFAULT_ORDER, train_full_name

        Options(order=self.order)  # a bad order is refused before any work
        parts = [split_name(str(x), self.order) for x in X]
        people = pd.DataFrame({"name": [str(x) for x in X], "given": [p[0] for p in parts],
                               "surname": [p[1] for p in parts], "language": [str(v) for v in y]})
        people = people[people["surname"].map(to_ascii) != ""].reset_index(drop=True)
        if people["language"].nunique() < 2:
            raise NamesError("cannot train a classifier on fewer than two languages")
        keyed = pd.DataFrame({"ascii": people["surname"].map(to_ascii), "language": people["language"]})
        split = split_names(keyed, seed=self.seed, valid=self.valid_fraction, test=0.0)
        result = train_full_name(people[split == "train"], people[split == "valid"], self._config(),
                                 order=self.ngram_order or DEFAULT_ORDER, progress=self.progress)
        self.predictor_ = result.predictor()
        self.payload_ = result.payload({"source": "NameClassifier.fit"})
        return self

    def _check(self) -> Predictor:
        if not hasattr(self, "predictor_"):
            raise NamesError("this NameClassifier is not fitted yet: call fit() or NameClassifier.load()")
        return self.predictor_

    def _options(self, **changes: object) -> Options:
        """The estimator's prediction options (its parameters named as :class:`Options` fields),
        with ``changes`` made; a full-name model always parses its inputs."""
        values = {**{f.name: getattr(self, f.name) for f in option_fields()}, **changes}
        if getattr(self, "full_names", False) and hasattr(self, "predictor_"):
            values["surname_only"] = False
        return Options(**values)

    def predict_proba(self, X: Sequence[str]) -> np.ndarray:
        """Probabilities ``(n_names, n_classes)``, columns in ``classes_`` order (under ``prior``)."""
        predictor = self._check()
        return predictor.proba_with(list(X), self._options())

    def predict(self, X: Sequence[str]) -> np.ndarray:
        """The most probable language of each name (``"unknown"`` where ``abstain`` says none fits)."""
        options = self._options()
        if not options.abstain:
            proba = self.predict_proba(X)  # checks fitted first
            answers = self.classes_[proba.argmax(axis=1)]
            unwritten = proba.sum(axis=1) == 0  # no language of the model writes the name's script
            return np.where(unwritten, UNKNOWN, answers) if unwritten.any() else answers
        answers = self._check().predict_with(list(X), dataclasses.replace(options, k=1, coverage=None, explain=False))
        return np.array([p.answer for p in answers], dtype=object)

    def score(self, X: Sequence[str], y: Sequence[str], sample_weight: Sequence[float] | None = None) -> float:
        """Accuracy of :meth:`predict` on names ``X`` with true labels ``y``; at a ``level`` the
        labels are taken to their group or region first, so ``cross_val_score`` works at it."""
        predictor = self._check()
        truth = np.array([str(v) for v in y], dtype=object)
        rollup = predictor.level_map(self._options().level)
        if rollup.level != "label":
            group_of = {label: rollup.names[i] for label, i in zip(predictor.labels, rollup.index.tolist(),
                                                                  strict=True)}
            truth = np.array([group_of.get(v, v) for v in truth], dtype=object)
        return super().score(X, truth, sample_weight)

    def predict_set(self, X: Sequence[str], coverage: float | None = None, per_language: bool | None = None
                    ) -> list[list[str]]:
        """For each name, the smallest set of languages that holds the true one with probability
        ``coverage`` (split-conformal, calibrated on the validation names; ``per_language``
        calibrates each language on its own, so rare languages are covered too). Either defaults
        to the estimator's own parameter."""
        coverage = self.coverage if coverage is None else coverage
        if coverage is None:
            raise NamesError("predict_set needs a coverage: predict_set(X, coverage=0.9) or "
                             "NameClassifier(coverage=0.9)")
        per_language = self.per_language if per_language is None else per_language
        options = self._options(k=1, abstain=False, coverage=coverage, per_language=per_language, explain=False)
        return [p.prediction_set or [] for p in self._check().predict_with(list(X), options)]

    def top_k(self, X: Sequence[str], k: int | None = None) -> list[Prediction]:
        """The ``k`` most probable languages of each name, with probabilities (``k``: the estimator's
        own by default), and what its other options add."""
        return self._check().predict_with(list(X), self._options(**({} if k is None else {"k": k})))

    def save(self, path: str | Path, export: bool = True) -> Path:
        """Write the same self-describing model file as ``names train`` (atomically), and with
        ``export`` its ONNX file beside it (what :meth:`load` answers from without torch)."""
        predictor = self._check()
        if getattr(self, "payload_", None) is not None:  # a full-name model fitted here
            from namesclf.models.export import export_parts

            written = save_checkpoint(path, self.payload_)
            if export:
                export_parts(self.payload_, onnx_path_for(path), source=path)
            return written
        if predictor.backend == "torch":
            payload = classifier_payload(predictor.model, predictor.config, [str(c) for c in self.classes_],
                                         predictor.meta)
            written = save_checkpoint(path, payload)
            if export:
                export_payload(payload, onnx_path_for(path), source=path)
            return written
        # Loaded from an ONNX export: the model file it came from is the torch half to save.
        source = getattr(self, "source_", None)
        if source is None or not Path(source).is_file():
            raise NamesError("this classifier was loaded from an .onnx file alone; load the .pt model file to save it")
        written = _copy(source, path)
        if export:
            _copy(onnx_path_for(source), onnx_path_for(path))
        return written

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", backend: str = "auto") -> NameClassifier:
        """Load a model file written by ``names train`` or :meth:`save`: from its ONNX export when
        there is a current one beside it (no torch needed to answer), else with torch
        (``weights_only`` loading); see :meth:`~namesclf.inference.predictor.Predictor.load`."""
        predictor = Predictor.load(path, device, backend=backend)
        if predictor.reads_full_names:
            est = cls(full_names=True, ngram_order=predictor.config.get("ngram_order"))
        else:
            config = TrainConfig.from_dict(predictor.config).to_dict()
            est = cls(**{k: v for k, v in config.items() if k in cls._get_param_names()})
        est.predictor_ = predictor
        est.source_ = None if Path(path).suffix == ".onnx" else str(path)
        return est


def _copy(source: str | Path, target: str | Path) -> Path:
    data = Path(source).read_bytes()
    return atomic_write_with(target, lambda handle: handle.write(data))


def load_model(path: str | Path, device: str = "cpu", backend: str = "auto") -> NameClassifier:
    """Load a classifier model file: ``load_model("models/names.pt").predict(["Dostoevsky"])``
    (from its ONNX export when there is a current one, see :meth:`NameClassifier.load`)."""
    return NameClassifier.load(path, device, backend)
