"""``NameClassifier``: the project as a scikit-learn estimator (``fit``/``predict``/``predict_proba``).

It trains through the same loop as ``names train``, holds out a grouped validation slice of what
it is given for best-epoch selection, and saves the same self-describing model file, so
``cross_val_score(NameClassifier(), names, languages)`` and ``names predict`` agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from .checkpoint import load_checkpoint, save_checkpoint
from .data import split_names
from .errors import NamesError
from .predict import Prediction, Predictor
from .text import to_ascii
from .train import TrainConfig, classifier_payload, train_classifier


class NameClassifier(ClassifierMixin, BaseEstimator):
    """Which language a surname comes from. Parameters mirror ``names train``'s options."""

    def __init__(self, model: str = TrainConfig.model, hidden: int | None = None,
                 epochs: int | None = None, lr: float | None = None,
                 batch_size: int | None = None, optimizer: str | None = None,
                 class_weight: str = "none", tanh: bool = TrainConfig.tanh, patience: int | None = None,
                 refit_ngram: bool = TrainConfig.refit_ngram,
                 valid_fraction: float = 0.1, seed: int = 0, device: str = "cpu", progress: bool = False) -> None:
        self.model = model
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.class_weight = class_weight
        self.tanh = tanh
        self.patience = patience
        self.refit_ngram = refit_ngram
        self.valid_fraction = valid_fraction
        self.seed = seed
        self.device = device
        self.progress = progress

    def _config(self) -> TrainConfig:
        return TrainConfig(model=self.model, hidden=self.hidden, epochs=self.epochs, lr=self.lr,
                           batch_size=self.batch_size, optimizer=self.optimizer, class_weight=self.class_weight,
                           tanh=self.tanh, patience=self.patience, refit_ngram=self.refit_ngram,
                           seed=self.seed, device=self.device)

    def fit(self, X: Sequence[str], y: Sequence[str]) -> NameClassifier:
        """Train on names ``X`` and languages ``y`` (a grouped slice is held out to pick the epoch)."""
        frame = pd.DataFrame({"name": list(X), "language": [str(v) for v in y]})
        frame["ascii"] = frame["name"].map(to_ascii)
        frame = frame[frame["ascii"] != ""].drop_duplicates(["ascii", "language"]).reset_index(drop=True)
        if frame["language"].nunique() < 2:
            raise NamesError("cannot train a classifier on fewer than two languages")
        split = split_names(frame, seed=self.seed, valid=self.valid_fraction, test=0.0)
        result = train_classifier(frame[split == "train"], frame[split == "valid"], self._config(),
                                  progress=self.progress)
        device = next(result.model.parameters()).device
        self.predictor_ = Predictor(result.model, result.labels, device,
                                    meta={"history": result.history, "valid": result.valid},
                                    config=asdict(result.config))
        self.classes_ = np.array(result.labels)
        return self

    def _check(self) -> Predictor:
        if not hasattr(self, "predictor_"):
            raise NamesError("this NameClassifier is not fitted yet: call fit() or NameClassifier.load()")
        return self.predictor_

    def predict_proba(self, X: Sequence[str]) -> np.ndarray:
        """Probabilities ``(n_names, n_classes)``, columns in ``classes_`` order."""
        return self._check().predict_proba(list(X))

    def predict(self, X: Sequence[str]) -> np.ndarray:
        proba = self.predict_proba(X)  # checks fitted first
        return self.classes_[proba.argmax(axis=1)]

    def top_k(self, X: Sequence[str], k: int = 3) -> list[Prediction]:
        return self._check().top_k(list(X), k)

    def save(self, path: str | Path) -> Path:
        """Write the same self-describing model file as ``names train`` (atomically)."""
        predictor = self._check()
        config = TrainConfig.from_dict(predictor.config)
        return save_checkpoint(path, classifier_payload(predictor.model, config, [str(c) for c in self.classes_],
                                                        predictor.meta))

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> NameClassifier:
        """Load a model file written by ``names train`` or :meth:`save` (``weights_only`` loading)."""
        payload = load_checkpoint(path, kind="classifier")
        predictor = Predictor.from_payload(payload, device)
        config = TrainConfig.from_dict(payload["config"])
        params = {k: v for k, v in asdict(config).items() if k in cls._get_param_names()}
        est = cls(**params)
        est.predictor_ = predictor
        est.classes_ = np.array(predictor.labels)
        return est


def load_model(path: str | Path, device: str = "cpu") -> NameClassifier:
    """Load a classifier model file: ``load_model("models/names.pt").predict(["Dostoevsky"])``."""
    return NameClassifier.load(path, device)
