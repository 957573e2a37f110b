"""Prediction in torch: a trained classifier module behind the same small interface as
:class:`~namesclf.inference.onnx_scorer.OnnxScorer` (``score`` a batch of names of one length), so
:class:`~namesclf.inference.predictor.Predictor` runs on either. Torch is the path for CUDA, for a model being
trained or tuned in this process, and for a model file without an ONNX export beside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from namesclf.errors import NamesError, first_line
from namesclf.inference.options import NO_NGRAM_EXPLAIN
from namesclf.models.checkpoint import load_checkpoint
from namesclf.models.networks import NgramEnsemble, build_classifier
from namesclf.models.ngram import NgramBayes
from namesclf.models.novelty import load_background, novelty_feature_tensor


class TorchScorer:
    """A classifier module, its languages, and what the model file says about it."""

    def __init__(self, model: nn.Module, labels: Sequence[str], device: torch.device | str = "cpu",
                 meta: dict | None = None, config: dict | None = None) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.labels = list(labels)
        self.meta = meta or {}
        self.config = config or {}
        self.has_ngram = isinstance(model, NgramEnsemble)
        self._background: NgramBayes | None = None

    @property
    def device_type(self) -> str:
        return self.device.type

    @classmethod
    def load(cls, path: str, device: str = "cpu", threads: int | None = None) -> TorchScorer:
        """Load a model file; ``threads`` sets torch's intra-op threads (for the whole process,
        the only way torch has), as several processes sharing the cores want one each."""
        if threads:
            torch.set_num_threads(threads)
        return cls.from_payload(load_checkpoint(path, kind="classifier"), device)

    @classmethod
    def given_part(cls, path: str, device: str = "cpu") -> TorchScorer:
        """The given-name part of a full-name model file (:mod:`namesclf.inference.parts`)."""
        payload = load_checkpoint(path, kind="classifier")
        if not isinstance(payload.get("given"), dict):
            raise NamesError(f"{path}: this model file says it reads full names but holds no given-name part")
        return cls.from_payload({**payload["given"], "meta": {}}, device)

    @classmethod
    def from_payload(cls, payload: dict, device: str = "cpu") -> TorchScorer:
        try:
            model = build_classifier(payload["config"], len(payload["labels"]))
            model.load_state_dict(payload["state_dict"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise NamesError(f"model file is damaged: {first_line(exc)}") from None
        return cls(model, payload["labels"], device, payload.get("meta"), payload["config"])

    @property
    def background(self) -> NgramBayes:
        """The open-set features' unigram model, read from the calibration on first use."""
        if self._background is None:
            values = (self.meta.get("calibration") or {}).get("openset")
            if values is None:
                raise NamesError("this model file has no calibration for abstention (--abstain)")
            self._background = load_background(values).to(self.device)
        return self._background

    def pool_terms(self) -> dict:
        """What explanations add to the n-gram half's per-position terms (see
        :meth:`~namesclf.models.networks.NgramEnsemble.pool_terms`), and its order."""
        if not isinstance(self.model, NgramEnsemble):
            raise NamesError(NO_NGRAM_EXPLAIN)
        return {**self.model.pool_terms(), "order": self.model.ngram.order}

    @torch.inference_mode()
    def score_tokens(self, idx: np.ndarray, features: bool = False
                     ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """:meth:`score` and the n-gram half's per-position log-likelihoods, ``(T + 1, B,
        n_languages)``, from the same pass."""
        if not isinstance(self.model, NgramEnsemble):
            raise NamesError(NO_NGRAM_EXPLAIN)
        x = torch.from_numpy(idx).to(self.device)
        lengths = torch.full((x.size(1),), x.size(0), dtype=torch.long)
        log_p, likelihood, tokens = self.model.forward_with_tokens(x, lengths)
        found = None
        if features:
            found = novelty_feature_tensor(self.model.ngram, self.background, x, lengths, likelihood).cpu().numpy()
        return log_p.float().exp().cpu().numpy(), found, tokens.float().cpu().numpy()

    @torch.inference_mode()
    def score(self, idx: np.ndarray, features: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities (and the novelty features when asked) for a ``(T, B)`` batch of one length."""
        x = torch.from_numpy(idx).to(self.device)
        lengths = torch.full((x.size(1),), x.size(0), dtype=torch.long)
        if isinstance(self.model, NgramEnsemble):
            log_p, likelihood = self.model.forward_with_likelihood(x, lengths)
        elif features:
            raise ValueError("this model has no n-gram half, hence no novelty features")
        else:
            log_p, likelihood = self.model(x, lengths), None
        found = None
        if features:
            found = novelty_feature_tensor(self.model.ngram, self.background, x, lengths, likelihood).cpu().numpy()
        return log_p.float().exp().cpu().numpy(), found
