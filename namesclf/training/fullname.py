"""Training a model that reads full names: the surname part, the given-name part, the combiner.

The model is factorized by part (:mod:`namesclf.inference.parts`): each part is a classifier of
the package's family. By default both are the Kneser-Ney n-gram Bayes classifier alone
(:class:`~namesclf.models.ngram.NgramBayes`, config ``model: "ngram"``), which fits by counting:
the surname part on the distinct ``(surname, label)`` pairs (what generalises to unseen surnames
is which letters a label's surnames use, not how many people share one), the given part on
every person's given names (how often a label uses ``John`` is the signal). With ``network``
the surname part is today's pooled network + n-gram
(:func:`~namesclf.training.train.train_classifier`) on the distinct pairs.

The combiner is fitted afterwards on the validation people, whose labels neither part was
trained on, each person seen twice: with their given names and without (a bare surname is then
an input the combiner knows). The parts are not counted again on the validation people (no
refit): the combiner must see held-out scores.

Calibration for sets, abstention and priors is taken on the combined probabilities of the
validation people (:mod:`namesclf.training.calibrate`). Abstention needs the pooled network's
novelty score: with a network surname part it is that part's (it is about the surname's
letters); n-gram parts alone give a model without abstention.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from namesclf.config import TrainConfig
from namesclf.data.people import PEOPLE_COLUMNS
from namesclf.errors import NamesError
from namesclf.inference.conformal import ConformalCalibration
from namesclf.inference.parts import FLOOR, READS_FULL_NAME, Combiner, align, score_distinct
from namesclf.inference.predictor import Predictor
from namesclf.models.checkpoint import classifier_payload
from namesclf.report.metrics import classification_scores
from namesclf.text import to_ascii
from namesclf.training.train import TrainResult, train_classifier

#: The combiner's L2 pull towards "trust each part as it is" (weights 1, biases 0), per person
#: of the validation set: per-language weights of a rare language would otherwise follow its
#: few validation people.
COMBINER_L2 = 1.0
#: Precision at these ranks (name2nat's table reports 1, 2, 3 and 5).
PRECISION_AT = (1, 2, 3, 5)
#: Validation people whose scores the prediction sets are calibrated on, at most: the scores
#: travel in the export's metadata, which has a size cap (:data:`~namesclf.models.onnx_format.MAX_METADATA_CHARS`).
CONFORMAL_PEOPLE = 20_000
#: The stacker's pull towards the per-language combiner, per validation row
#: (:func:`fit_combiner`'s ``matrix_l2``; chosen by cross-validation on the validation people,
#: docs/experiments.md, "Full names: the full-name model").
STACKER_L2: float | None = 300.0
#: The combiner's class balance (:func:`fit_combiner`'s ``balance``): a little weight towards the
#: rare labels buys balanced accuracy for about a tenth of a point of accuracy (same section).
COMBINER_BALANCE = 0.2
#: What the surname part counts (:func:`train_full_name`).
SURNAME_ROWS = ("distinct", "every")
#: The n-gram order of the parts (``names train --ngram-order`` sets another).
DEFAULT_ORDER = 5


def part_frame(people: pd.DataFrame, column: str) -> pd.DataFrame:
    """The distinct ``(part, label)`` pairs of ``people``'s ``column`` (``given`` or ``surname``),
    in the ``name``/``language``/``ascii`` form a classifier trains on; parts with no letters dropped."""
    frame = people[[column, "language"]].rename(columns={column: "name"})
    frame = frame[frame["name"] != ""].drop_duplicates(["name", "language"])
    frame = frame.assign(ascii=frame["name"].map(to_ascii))
    return frame[frame["ascii"] != ""].drop_duplicates(["ascii", "language"]).reset_index(drop=True)


#: Held-out names the n-gram part's discount and mixture are tuned on, at most (the tuning holds
#: a (length, names, labels) table per discount).
TUNE_NAMES = 20_000


def _device(module: torch.nn.Module) -> torch.device:
    """Where a part's module lives (an n-gram part has buffers and no parameters)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


@dataclass
class Part:
    """One trained part: its classifier module, labels, config and training record."""

    model: torch.nn.Module
    labels: list[str]
    config: dict[str, Any]
    record: dict[str, Any]
    seconds: float
    calibration: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_result(cls, result: TrainResult) -> Part:
        record = {"history": result.history, "best_epoch": result.best_epoch, "valid": result.valid,
                  "pooling": result.pooling}
        return cls(result.model, result.labels, result.config.to_dict(), record, result.seconds, result.calibration)


def train_ngram_part(train: pd.DataFrame, valid: pd.DataFrame, order: int, labels: list[str], seed: int = 0) -> Part:
    """An n-gram Bayes classifier of ``order`` counted on ``train``'s names (``name``/``language``/
    ``ascii``), its discount and mixture tuned on up to :data:`TUNE_NAMES` of ``valid``'s."""
    from namesclf.models.ngram import NgramBayes
    from namesclf.training.batches import EncodedSplit

    started = time.perf_counter()
    index = {label: i for i, label in enumerate(labels)}
    ngram = NgramBayes(len(labels), order, fold_case=False)
    enc = EncodedSplit.from_frame(train[train["language"].isin(index)], index)
    ngram.fit(enc.idx, enc.lengths, enc.labels)
    record: dict[str, Any] = {"ngram_order": order, "n_names": len(enc)}
    tune = valid[valid["language"].isin(index)]
    if len(tune):
        tune = tune.sample(min(len(tune), TUNE_NAMES), random_state=seed)
        enc_valid = EncodedSplit.from_frame(tune, index)
        with torch.no_grad():
            record.update(ngram.tune(enc_valid.idx, enc_valid.lengths, enc_valid.labels))
    config = {"model": "ngram", "ngram_order": order}
    return Part(ngram.eval(), list(labels), config, record, time.perf_counter() - started)


@dataclass
class FullNameResult:
    """Both parts, the combiner and the calibration: everything a full-name model file holds."""

    surname: Part
    given: Part
    combiner: Combiner
    labels: list[str]
    calibration: dict[str, Any]
    seconds: float
    valid: dict[str, float] = field(default_factory=dict)

    def predictor(self) -> Predictor:
        """The model in memory, answering as its file will."""
        surname, given = self.surname, self.given
        meta = {"reads": READS_FULL_NAME, "combiner": self.combiner.to_dict(), "calibration": self.calibration}
        device = _device(surname.model)
        predictor = Predictor(surname.model, surname.labels, device, meta=meta, config=surname.config)
        return predictor.attach_given(Predictor(given.model, given.labels, device))

    def payload(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        """The model file's dict: the surname part as a classifier, the given part beside it,
        ``meta`` with what the model reads, its combiner and calibration, and each part's record."""
        parts = {name: {"config": part.config, **part.record, "train_seconds": part.seconds}
                 for name, part in (("surname", self.surname), ("given", self.given))}
        full_meta = {**meta, "reads": READS_FULL_NAME, "combiner": self.combiner.to_dict(),
                     "calibration": self.calibration, "parts": parts, "valid": self.valid,
                     "train_seconds": self.seconds}
        payload = classifier_payload(self.surname.model, self.surname.config, self.surname.labels, full_meta)
        given = classifier_payload(self.given.model, self.given.config, self.given.labels, {})
        payload["given"] = {k: given[k] for k in ("config", "labels", "state_dict")}
        return payload


def fit_combiner(surname_proba: np.ndarray, given_proba: np.ndarray, has_given: np.ndarray, y: np.ndarray,
                 l2: float = COMBINER_L2, steps: int = 200, *, bare_too: bool = False, matrix_l2: float | None = None,
                 balance: float = 0.0) -> Combiner:
    """The combiner's weights by L-BFGS on the log-loss of the rows (``y``: label indices), pulled
    towards weights 1 and biases 0 by ``l2`` (:data:`COMBINER_L2`, per row).

    ``bare_too`` counts each row a second time as a bare surname (``has_given`` false): what the
    combiner is fitted on, without copying the arrays. ``matrix_l2`` (None: per-language weights
    only) then fits full matrices (a stacker, :class:`~namesclf.inference.parts.Combiner`),
    started from and pulled towards the per-language fit by ``matrix_l2`` per row. ``balance``
    weighs each row by ``(rows / (labels * rows of its label)) ** balance`` (0: every row alike,
    1: every label alike)."""
    ls = torch.from_numpy(np.log(np.maximum(surname_proba, FLOOR), dtype=np.float64))
    lg = torch.from_numpy(np.log(np.maximum(given_proba, FLOOR), dtype=np.float64))
    g = torch.from_numpy(has_given.astype(np.float64))[:, None]
    target = torch.from_numpy(y.astype(np.int64))
    n, n_labels = ls.shape
    counts = np.bincount(y, minlength=n_labels).astype(np.float64)
    weight = torch.from_numpy((n / (n_labels * np.maximum(counts, 1.0))) ** balance)[target]
    weight = weight / weight.mean()
    rows = 2 * n if bare_too else n

    def fit(params: list[torch.Tensor], logits: Any, penalty: Any) -> None:
        optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

        def loss() -> torch.Tensor:
            optimizer.zero_grad()
            surname, given = logits(*params)
            value = (weight * torch.nn.functional.cross_entropy(surname + g * given, target, reduction="none")).sum()
            if bare_too:
                value = value + (weight * torch.nn.functional.cross_entropy(surname, target, reduction="none")).sum()
            value = value / rows + penalty(*params) / rows
            value.backward()
            return value

        optimizer.step(loss)

    ones, zeros = torch.ones(n_labels, dtype=torch.float64), torch.zeros(n_labels, dtype=torch.float64)
    params = [t.clone().requires_grad_(True) for t in (ones, ones, zeros, zeros)]
    fit(params, lambda a, b, d, e: (a * ls + e, b * lg + d),
        lambda a, b, d, e: l2 * (((a - 1) ** 2).sum() + ((b - 1) ** 2).sum() + (d ** 2).sum() + (e ** 2).sum()))
    a, b, d, e = (p.detach() for p in params)
    if matrix_l2 is None:
        return Combiner(*(t.numpy().copy() for t in (a, b, d, e)))
    start_s, start_g = torch.diag(a), torch.diag(b)
    matrices = [t.clone().requires_grad_(True) for t in (start_s, start_g, d, e)]
    fit(matrices, lambda s, gm, d2, e2: (ls @ s.T + e2, lg @ gm.T + d2),
        lambda s, gm, d2, e2: matrix_l2 * (((s - start_s) ** 2).sum() + ((gm - start_g) ** 2).sum())
        + l2 * ((d2 ** 2).sum() + (e2 ** 2).sum()))
    return Combiner(*(t.detach().numpy().copy() for t in matrices))


def _part_scores(predictor: Predictor, people: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The surname and given parts' probabilities of ``people`` (in the model's label order) and
    whether each has given names: what the combiner reads."""
    surnames = people["surname"].map(to_ascii).tolist()
    givens = people["given"].map(to_ascii).tolist()
    surname_proba = score_distinct(predictor.score_ascii, surnames)[0]
    has_given = np.array([bool(g) for g in givens])
    given_proba = np.ones_like(surname_proba)
    assert predictor.given is not None
    if has_given.any():
        rows = np.flatnonzero(has_given)
        scored = score_distinct(predictor.given.score_ascii, [givens[i] for i in rows])[0]
        given_proba[rows] = align(scored, predictor._given_index)
    return surname_proba, given_proba, has_given


def every_given(people: pd.DataFrame, column: str = "given") -> pd.DataFrame:
    """Every person's given names (or ``column``) with their label (not de-duplicated), in the classifier's columns."""
    frame = people.loc[people[column] != "", [column, "language"]].rename(columns={column: "name"})
    frame = frame.assign(ascii=frame["name"].map(to_ascii))
    return frame[frame["ascii"] != ""].reset_index(drop=True)


def train_full_name(train: pd.DataFrame, valid: pd.DataFrame, config: TrainConfig, *, network: bool = False,
                    order: int = DEFAULT_ORDER, given_order: int | None = None, surname_rows: str = "distinct",
                    matrix_l2: float | None = STACKER_L2, balance: float = COMBINER_BALANCE,
                    progress: bool | None = None) -> FullNameResult:
    """Train both parts on ``train`` people (``given``/``surname``/``language`` columns), fit the
    combiner and the calibration on ``valid`` people. Both parts are n-gram Bayes classifiers of
    ``order`` (the given part of ``given_order`` if set), unless ``network``: then the surname
    part is ``config``'s classifier. ``surname_rows``: the surname part counts the distinct
    ``(surname, label)`` pairs (``distinct``: what generalises to surnames never seen) or every
    person's (``every``: how often a label has a surname, for test people whose surnames recur).
    ``matrix_l2`` and ``balance`` are :func:`fit_combiner`'s (None: the per-language combiner)."""
    if surname_rows not in SURNAME_ROWS:
        raise NamesError(f"unknown surname_rows {surname_rows!r}: use {' or '.join(SURNAME_ROWS)}")
    started = time.perf_counter()
    valid = valid[valid["language"].isin(set(train["language"]))]
    if valid.empty:
        raise NamesError("a full-name model needs validation people (to fit its combiner) of the training labels")
    labels = sorted(set(train["language"]))
    surname_train = every_given(train, "surname") if surname_rows == "every" else part_frame(train, "surname")
    surname_valid = part_frame(valid, "surname")
    if network:
        result = train_classifier(surname_train, surname_valid, replace(config, refit_ngram=False).resolved(
            n_train=len(surname_train)), progress=progress)
        surname = Part.from_result(result)
        labels = surname.labels
    else:
        surname = train_ngram_part(surname_train, surname_valid, order, labels, config.seed)
    given_train = every_given(train)
    if given_train["language"].nunique() < 2:
        raise NamesError("fewer than two labels have people with given names: nothing to learn from them")
    given = train_ngram_part(given_train, every_given(valid), given_order or order, labels, config.seed)
    meta = {"reads": READS_FULL_NAME, "combiner": Combiner(*(np.ones(len(labels)),) * 2,
                                                           *(np.zeros(len(labels)),) * 2).to_dict()}
    device = _device(surname.model)
    predictor = Predictor(surname.model, labels, device, meta=meta).attach_given(
        Predictor(given.model, given.labels, device))
    valid = valid[valid["language"].isin(labels)]
    y = valid["language"].map({label: i for i, label in enumerate(labels)}).to_numpy()
    surname_proba, given_proba, has_given = _part_scores(predictor, valid)
    # each validation person twice: as written, and as a bare surname
    combiner = fit_combiner(surname_proba, given_proba, has_given, y, bare_too=True, matrix_l2=matrix_l2,
                            balance=balance)
    combined = combiner(surname_proba, given_proba, has_given)
    counts = train["language"].value_counts()
    calibration: dict[str, Any] = {
        "label_counts": [int(counts.get(label, 0)) for label in labels],
        "conformal": conformal_calibration(combined, y, config.seed),
    }
    if "openset" in surname.calibration:
        calibration["openset"] = surname.calibration["openset"]
    scores = classification_scores(y, combined.argmax(1))
    return FullNameResult(surname, given, combiner, labels, calibration, time.perf_counter() - started,
                          valid={f"valid_{k}": v for k, v in scores.items()})


def conformal_calibration(proba: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """The prediction sets' calibration from at most :data:`CONFORMAL_PEOPLE` validation people
    (a seeded random sample: split-conformal needs exchangeable rows, not all of them)."""
    rows = np.arange(len(y))
    if len(rows) > CONFORMAL_PEOPLE:
        rows = np.sort(np.random.default_rng(seed).choice(rows, CONFORMAL_PEOPLE, replace=False))
    return ConformalCalibration.from_proba(proba[rows].astype(np.float64), y[rows]).to_dict()


def people_scores(predictor: Predictor, people: pd.DataFrame, surname_only: bool = False) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1 and precision@k of ``predictor`` on ``people`` whose
    label it knows, reading their given names and surname (or the surname alone)."""
    from sklearn.metrics import balanced_accuracy_score

    known = people[people["language"].isin(predictor.labels)]
    index = {label: i for i, label in enumerate(predictor.labels)}
    y = known["language"].map(index).to_numpy()
    surnames = [to_ascii(s) or to_ascii(n) for s, n in zip(known["surname"], known["name"], strict=True)]
    givens = [""] * len(known) if surname_only else known["given"].map(to_ascii).tolist()
    keep = np.array([bool(s) for s in surnames])
    proba = predictor.score_parts([s for s, k in zip(surnames, keep, strict=True) if k],
                                  [g for g, k in zip(givens, keep, strict=True) if k])[0]
    y = y[keep]
    order = np.argsort(-proba, axis=1)
    out: dict[str, Any] = {"n": len(y), "n_unreadable": int((~keep).sum()),
                           "left_out_unknown_label": int(len(people) - len(known))}
    out.update(classification_scores(y, order[:, 0]))
    out["balanced_accuracy"] = float(balanced_accuracy_score(y, order[:, 0]))
    for k in PRECISION_AT:
        out[f"precision_at_{k}"] = float((order[:, :k] == y[:, None]).any(axis=1).mean())
    return out


__all__ = ["PEOPLE_COLUMNS", "FullNameResult", "fit_combiner", "part_frame", "people_scores", "train_full_name"]


# ----------------------------------------------------------------------------- what `names train PEOPLE` does


@dataclass
class FullNameRun:
    """A finished ``names train`` on a people table: the result, the test figures, what was written."""

    result: FullNameResult
    meta: dict[str, Any]
    test: dict[str, Any]
    written: list[Any] = field(default_factory=list)


def split_people(people: pd.DataFrame, seed: int = 0) -> pd.Series:
    """Each person's split (80/10/10), grouped by folded surname: no surname in two splits, as
    :func:`~namesclf.data.dataset.split_names` does for surname lists."""
    from namesclf.data.dataset import split_names

    keyed = pd.DataFrame({"ascii": people["surname"].map(to_ascii), "language": people["language"]})
    return split_names(keyed, seed=seed)


def train_people(people: pd.DataFrame, config: TrainConfig, *, source: str, label_column: str,
                 out: str | None = None, export: bool = True, progress: bool | None = None) -> FullNameRun:
    """Split ``people`` (grouped by surname), train a full-name model, score the test people, and
    write the model file (with its ONNX exports) to ``out``."""
    from pathlib import Path

    from namesclf.models.checkpoint import save_checkpoint
    from namesclf.models.export import export_parts
    from namesclf.models.onnx_format import onnx_path_for

    split = split_people(people, config.seed)
    parts = {name: people[split == name] for name in ("train", "valid", "test")}
    result = train_full_name(parts["train"], parts["valid"], config, order=config.ngram_order or DEFAULT_ORDER,
                             progress=progress)
    predictor = result.predictor()
    test = people_scores(predictor, parts["test"]) if len(parts["test"]) else {"n": 0}
    meta = {"split_seed": config.seed, "source": source, "label_column": label_column,
            **{f"n_{name}": len(frame) for name, frame in parts.items()}, "test": test}
    run = FullNameRun(result, meta, test)
    if out is not None:
        payload = result.payload(meta)
        save_checkpoint(out, payload)
        run.written.append(Path(out))
        if export:
            run.written += export_parts(payload, onnx_path_for(out), source=out)
    return run
