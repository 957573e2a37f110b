"""The open-set features of :mod:`namesclf.inference.openset`, computed from the n-gram half in torch.

Six figures per name from two n-gram models: the classifier's own n-gram half (its posterior and
the mixture likelihood of the known languages) and a unigram "background" counted on the same
names (a likelihood ratio against it cancels how unusual the letters are in general). The same
function runs at training (to fit the scorer), in torch prediction, and inside the exported ONNX
graph, so the three cannot disagree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from namesclf.errors import NamesError, first_line
from namesclf.models.ngram import NgramBayes


def novelty_feature_tensor(ngram: NgramBayes, background: NgramBayes, idx: torch.Tensor, lengths: torch.Tensor,
                           likelihood: torch.Tensor | None = None) -> torch.Tensor:
    """:data:`~namesclf.inference.openset.FEATURES` for a padded batch, ``(B, 6)`` float64. ``likelihood`` is
    ``ngram.log_likelihood(idx, lengths)`` when the caller has it already (the classifier's
    forward pass computes it), so the n-gram half runs once."""
    n = (lengths.to(idx.device) + 1).double()  # letters and the end mark
    ll = (ngram.log_likelihood(idx, lengths) if likelihood is None else likelihood).double()
    joint = ll + ngram.log_prior.double()
    mixture = torch.logsumexp(joint, dim=1)
    posterior = torch.log_softmax(joint, dim=1)
    unigram = torch.logsumexp(background.log_likelihood(idx, lengths).double() + background.log_prior.double(), dim=1)
    entropy = -(posterior.exp() * posterior).sum(1)
    return torch.stack([posterior.max(1).values.exp(), -mixture / n, -(mixture - unigram) / n, entropy, n.log(),
                        -mixture], dim=1)


@torch.no_grad()
def novelty_features(ngram: NgramBayes, background: NgramBayes, idx: torch.Tensor, lengths: torch.Tensor
                     ) -> np.ndarray:
    """:func:`novelty_feature_tensor` as a numpy array."""
    return novelty_feature_tensor(ngram, background, idx, lengths).cpu().numpy()


def background_state(background: NgramBayes) -> dict[str, Any]:
    """The unigram background as it is stored in a model file's open-set calibration."""
    return {"background": {k: v.detach().cpu().clone() for k, v in background.state_dict().items()},
            "n_classes": background.n_classes}


def load_background(values: dict[str, Any]) -> NgramBayes:
    """The unigram background from a model file's open-set calibration."""
    try:
        background = NgramBayes(int(values["n_classes"]), 1)
        background.load_state_dict(values["background"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise NamesError(f"model file's novelty scorer is damaged ({first_line(exc)})") from None
    return background.eval()
