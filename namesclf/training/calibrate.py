"""What training measures on the validation names once the epoch is chosen, so that prediction
can say how sure it may be: the conformal scores behind prediction sets (:mod:`namesclf.inference.conformal`), the
novelty scorer and its threshold behind "none of these" (:mod:`namesclf.inference.openset`), the training mix
that population priors are taken against (:mod:`namesclf.inference.priors`), and the model's own error
in estimating a population's mix, which widens the mix intervals (:mod:`namesclf.inference.mix`).

It runs before the n-gram half is counted again on train + valid (the refit), while the
validation names are still held out: each guarantee needs scores of names the model has not seen.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression

from namesclf.inference.conformal import ConformalCalibration
from namesclf.inference.mix import CALIBRATION_KEY, mix_error_calibration
from namesclf.inference.openset import NoveltyScorer, OpenSet
from namesclf.inference.priors import train_prior
from namesclf.models.networks import NgramEnsemble
from namesclf.models.ngram import NgramBayes
from namesclf.models.novelty import background_state, novelty_features
from namesclf.training.batches import EncodedSplit, predict_log_proba

#: Simulated novel languages: the known languages are held out in this many groups.
NOVELTY_FOLDS = 6
#: Names per held-out language used as simulated novel names (keeps the big languages from dominating).
NOVELTY_NAMES_PER_LANGUAGE = 300


def _count(train: pd.DataFrame, valid: pd.DataFrame, labels: list[str], order: int,
           like: NgramBayes | None = None) -> NgramBayes:
    """An n-gram classifier of ``order`` counted on ``train``, with ``like``'s discount and mixture
    when given (tuning again costs more than counting), else tuned on ``valid``."""
    index = {lang: i for i, lang in enumerate(labels)}
    encoded = EncodedSplit.from_frame(train, index)
    model = NgramBayes(len(labels), order).fit(encoded.idx, encoded.lengths, encoded.labels)
    if like is not None:
        model.discount.fill_(float(like.discount))
        model.mixture.fill_(float(like.mixture))
    elif len(valid):
        held = EncodedSplit.from_frame(valid, index)
        model.tune(held.idx, held.lengths, held.labels)
    return model.eval()


def _features(ngram: NgramBayes, background: NgramBayes, names: list[str]) -> np.ndarray:
    encoded = EncodedSplit.from_names(names)
    return novelty_features(ngram, background, encoded.idx, encoded.lengths)


def fit_open_set(ngram: NgramBayes, train: pd.DataFrame, valid: pd.DataFrame, labels: list[str],
                 seed: int = 0) -> tuple[OpenSet, NgramBayes] | None:
    """Fit the novelty scorer by outlier exposure on simulated novel languages, and score the
    validation names with ``ngram`` (the classifier's n-gram half, counted on ``train``).

    The known languages are split into :data:`NOVELTY_FOLDS` groups; for each, n-grams counted
    without it score its training names (novel, as far as that model knows) against the other
    languages' validation names (known). A logistic regression on those features is the scorer.
    Returns the scorer and the unigram background its features need, or None when there are too
    few languages (3) or no validation names to do this with.
    """
    present = sorted(set(train["language"]))
    if len(present) < 3 or valid.empty:
        return None
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(present))
    folds = [[present[i] for i in order[k::NOVELTY_FOLDS]] for k in range(min(NOVELTY_FOLDS, len(present)))]
    features, targets = [], []
    for held in folds:
        kept_train = train[~train["language"].isin(held)]
        kept_labels = sorted(set(kept_train["language"]))
        kept_valid = valid[valid["language"].isin(kept_labels)]
        if kept_valid.empty:
            continue
        sub_ngram = _count(kept_train, kept_valid, kept_labels, ngram.order, like=ngram)
        sub_background = _count(kept_train, kept_valid, kept_labels, 1)
        seen = set(kept_train["ascii"].str.lower())
        novel = train[train["language"].isin(held) & ~train["ascii"].str.lower().isin(seen)].drop_duplicates("ascii")
        novel = novel.groupby("language", group_keys=False).apply(
            lambda g: g.sample(min(len(g), NOVELTY_NAMES_PER_LANGUAGE), random_state=seed))
        known = kept_valid.drop_duplicates("ascii")["ascii"].tolist()
        if novel.empty or not known:
            continue
        features += [_features(sub_ngram, sub_background, known), _features(sub_ngram, sub_background,
                                                                              novel["ascii"].tolist())]
        targets += [np.zeros(len(known)), np.ones(len(novel))]
    if not features:
        return None
    x, y = np.concatenate(features), np.concatenate(targets)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    model = LogisticRegression(max_iter=2000, class_weight="balanced").fit((x - mean) / scale, y)
    scorer = NoveltyScorer(mean, scale, model.coef_[0].astype(np.float64), float(model.intercept_[0]))
    background = _count(train, valid[valid["language"].isin(labels)], labels, 1)
    valid_scores = scorer(_features(ngram, background, valid.drop_duplicates("ascii")["ascii"].tolist()))
    return OpenSet(scorer, valid_scores), background


@torch.no_grad()
def calibrate(whole: torch.nn.Module, labels: list[str], train: pd.DataFrame, valid: pd.DataFrame,
              enc_valid: EncodedSplit | None, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """The calibration a model file carries: ``label_counts`` (training mix), ``conformal``
    (validation scores), ``mix_error`` (the mix estimate's model error) and ``openset`` (the
    novelty scorer), all but the first when there are validation names (and, for the scorer, an
    n-gram half). Nothing here draws from torch's random state: what is measured after training
    leaves the model as it was."""
    counts = train["language"].value_counts()
    out: dict[str, Any] = {"label_counts": [int(counts.get(lang, 0)) for lang in labels]}
    if enc_valid is None or not len(enc_valid):
        return out
    proba = predict_log_proba(whole, enc_valid, device).double().exp().numpy()
    out["conformal"] = ConformalCalibration.from_proba(proba, enc_valid.labels.numpy()).to_dict()
    mix_error = mix_error_calibration(proba, enc_valid.labels.numpy(), train_prior(out["label_counts"]), seed=seed)
    if mix_error is not None:
        out[CALIBRATION_KEY] = mix_error.to_dict()
    if isinstance(whole, NgramEnsemble):
        ngram = whole.ngram.cpu()
        fitted = fit_open_set(ngram, train, valid, labels, seed)
        whole.ngram.to(device)
        if fitted is not None:
            out["openset"] = {**fitted[0].to_dict(), **background_state(fitted[1])}
    return out
