"""Evaluation reports: metrics, confusion matrices, errors and training curves, via scikit-learn.

One accuracy figure hides what a person needs to know about a surname classifier: *which*
languages it mixes up (Korean read as Chinese, Scottish as English) and how often. So every
evaluation writes the same folder of files (see :func:`write_report`): ``metrics.json`` for
scripts, ``report.txt`` for people, the confusion matrix as CSV and as a heatmap, and every
error in ``errors.csv``. ``names evaluate`` and ``names train`` both go through here, so a model's
test figures printed at training time and rebuilt later with ``names evaluate --split test`` are
one computation, not two that might drift.

All figures come from scikit-learn (``accuracy_score``, ``f1_score``, ``top_k_accuracy_score``,
``confusion_matrix``, ``classification_report``); this module only chooses the rows, the label
order and the layout.

Two accuracies are reported because the data set lists some names under several languages
(``Abel`` is English and French and ...). A model gives one answer per name, so under the strict
per-(name, language) ``accuracy`` such a name is wrong for all but one of its pairs whatever the
model does; ``accuracy_any`` scores each distinct name once and counts it right when the
prediction is any of its languages. ``accuracy_single`` and ``macro_f1_single`` are the strict
figures again over the pairs of names listed under one language only, where a perfect model can
reach 1.

Every report also scores the model at the coarser levels of :mod:`namesclf.inference.groups`
(origin groups and regions): the probabilities summed within each group, its argmax the answer,
each name's true labels taken to their groups. ``metrics.json`` holds them under ``levels``,
beside the label-level figures (which stay where they were), and each level has its own
confusion matrices (``confusion_matrix_group.csv``...).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    f1_score,
)

from namesclf.config import SPLIT_CHOICES
from namesclf.data.dataset import NamesData, single_language, split_names
from namesclf.errors import NamesError
from namesclf.files import atomic_write_text, jsonable
from namesclf.inference.groups import level_map
from namesclf.inference.priors import resolve_prior, reweight
from namesclf.report.levels import (
    COARSE_LEVELS,
    LEVEL_FIGURES,
    LevelReport,
    confusion_frames,
    level_files,
    level_report,
    most_confused,
)
from namesclf.report.metrics import (
    CALIBRATION_BINS,
    calibration_scores,
    classification_scores,
    single_language_scores,
    top_k_accuracy,
)
from namesclf.report.plots import figure_title, plot_confusion, plot_reliability

REPORT_FILES = ("metrics.json", "report.txt", "confusion_matrix.csv", "confusion_matrix_normalized.csv",
                "confusion_matrix.png", "reliability.png", "errors.csv",
                *(name for level in COARSE_LEVELS for name in level_files(level)))


class ProbaModel(Protocol):
    """What evaluation needs from a model: its languages and probabilities for folded names.

    :class:`~namesclf.inference.predictor.Predictor` is one; tests use a stub whose answers they control.
    """

    labels: list[str]

    def proba_ascii(self, folded: Sequence[str], batch_size: int | None = ...) -> np.ndarray: ...


@dataclass
class EvaluationReport:
    """Everything one evaluation found; :func:`write_report` turns it into files.

    ``confusion`` and ``confusion_normalized`` are indexed by true language (rows) and predicted
    language (columns), both in the model's language order. ``predictions`` has one row per
    evaluated (name, language) pair; ``errors`` is its misclassified rows.
    """

    metrics: dict[str, Any]
    confusion: pd.DataFrame
    confusion_normalized: pd.DataFrame
    predictions: pd.DataFrame
    errors: pd.DataFrame
    confused_pairs: list[dict[str, Any]]
    text_report: str
    context: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    levels: dict[str, LevelReport] = field(default_factory=dict)

    def headline(self) -> str:
        """The one line a person reads first (the CLI prints it)."""
        m = self.metrics
        return (f"accuracy {m['accuracy']:.4f}  accuracy_any {m['accuracy_any']:.4f}  "
                f"macro-F1 {m['macro_f1']:.4f}  balanced {m['balanced_accuracy']:.4f}  "
                f"weighted-F1 {m['weighted_f1']:.4f}  top-3 {m['top3_accuracy']:.4f}  "
                f"on {m['n']:,} (name, language) pairs")

    def level_lines(self) -> list[str]:
        """One line per level: accuracy, macro-F1 and balanced accuracy (the CLI prints them)."""
        rows = self.metrics.get("levels", {})
        return [f"{level:<7} accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  "
                f"balanced {m['balanced_accuracy']:.4f}  ({m['n_classes']} {level}s, {m['n']:,} pairs)"
                for level, m in rows.items()]

    def to_text(self) -> str:
        """``report.txt``: figures, the most confused pairs, then the per-language report."""
        m = self.metrics
        ctx = self.context
        lines = ["namesclf evaluation"]
        where = [f"{k}: {ctx[k]}" for k in ("model", "data", "split", "split_seed", "prior") if ctx.get(k) is not None]
        if where:
            lines.append("  " + "  ".join(where))
        lines += [
            "",
            f"n              {m['n']:>8,}  (name, language) pairs, {m['n_names']:,} distinct folded names",
            f"accuracy       {m['accuracy']:8.4f}  strict: each (name, language) pair scored once",
            f"accuracy_any   {m['accuracy_any']:8.4f}  each name once, right if any of its languages",
            f"macro-F1       {m['macro_f1']:8.4f}  every language weighs the same",
            f"weighted-F1    {m['weighted_f1']:8.4f}  languages weighed by their number of pairs",
            f"balanced acc.  {m['balanced_accuracy']:8.4f}  mean recall per language (every language weighs the same)",
            f"top-3 accuracy {m['top3_accuracy']:8.4f}  the true language among the three most probable",
            f"log-loss       {m['log_loss']:8.4f}  mean -log p(true language): lower is better",
            f"ECE            {m['ece']:8.4f}  |confidence - accuracy| over {CALIBRATION_BINS} confidence bins, "
            f"weighted (0 = calibrated; reliability.png)",
            *_single_lines(m),
            "",
            _shared_names_sentence(m),
            "",
            "Most confused pairs (true → predicted: errors of the true language's pairs):",
        ]
        if self.confused_pairs:
            lines += [f"  {format_pair(p)}" for p in self.confused_pairs]
        else:
            lines.append("  none: every pair was classified correctly")
        if self.levels:
            lines += ["", "At each level (docs/groups.md: probabilities summed within a group or region):", ""]
            lines += [f"  {line}" for line in self.level_lines()]
            for level, found in self.levels.items():
                pairs = found.metrics["most_confused"][:3]
                if pairs:
                    lines.append(f"  most confused {level}s: " + "; ".join(format_pair(p) for p in pairs))
                if found.metrics.get("note"):
                    lines.append(f"  {found.metrics['note']}")
        lines += ["", "Per language (scikit-learn classification_report):", "", self.text_report.rstrip()]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def format_pair(pair: Mapping[str, Any]) -> str:
    """``Korean → Chinese: 9 of 24 (38%)``."""
    return (f"{pair['true']} → {pair['predicted']}: {pair['count']:,} of {pair['support']:,} "
            f"({pair['count'] / pair['support']:.0%})")


def _single_lines(m: Mapping[str, Any]) -> list[str]:
    """Accuracy and macro-F1 again over names listed under one language, when some are not."""
    if not m["names_in_several_languages"] or m["accuracy_single"] is None:
        return []
    return [f"single-language accuracy {m['accuracy_single']:.4f}  macro-F1 {m['macro_f1_single']:.4f}  "
            f"on the {m['n_single']:,} pairs of names listed under one language only"]


def _shared_names_sentence(m: Mapping[str, Any]) -> str:
    """Why strict accuracy has a ceiling below 1 when names are listed under several languages."""
    shared = m["names_in_several_languages"]
    if not shared:
        return ("No name is listed under more than one language here, so accuracy and accuracy_any "
                "differ only in weighting (pairs vs. distinct names).")
    return (f"{shared:,} of the {m['n_names']:,} names are listed under several languages "
            f"({m['pairs_of_shared_names']:,} pairs). One answer per name can never be right under every "
            f"one of its pairs, so strict accuracy cannot exceed {m['accuracy_ceiling']:.4f} here; "
            f"accuracy_any ({m['accuracy_any']:.4f}) counts such a name as right when the prediction is "
            "any of its languages.")


# ----------------------------------------------------------------------------- choosing the rows


def check_languages(labels: Sequence[str], frame: pd.DataFrame) -> None:
    """Refuse data with languages the model cannot predict: those rows could only ever be wrong."""
    unknown = sorted(set(frame["language"]) - set(labels))
    if unknown:
        shown = ", ".join(unknown[:20]) + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else "")
        raise NamesError(f"the model does not know these languages in DATA: {shown} "
                         f"(it knows {', '.join(labels)})")


def select_split(frame: pd.DataFrame, split: str, meta: Mapping[str, Any] | None) -> pd.DataFrame:
    """Rows of ``frame`` in the model's own ``split``, rebuilt from the seed stored in its file.

    ``split_names`` is deterministic for a given seed and data, so on the data the model was
    trained on this gives back exactly its test (or valid, or train) names.
    """
    if split not in SPLIT_CHOICES:
        raise NamesError(f"unknown split {split!r}: use {', '.join(SPLIT_CHOICES)}")
    if split == "all":
        return frame
    seed = (meta or {}).get("split_seed")
    if seed is None:
        raise NamesError(f"the model file stores no split seed, so its {split} split cannot be rebuilt "
                         "(evaluate with --split all)")
    chosen = frame[split_names(frame, seed=int(seed)) == split]
    if chosen.empty:
        raise NamesError(f"the {split} split of DATA (seed {seed}) is empty")
    return chosen


# ----------------------------------------------------------------------------- evaluation


def evaluate(predictor: ProbaModel, frame: pd.DataFrame, context: Mapping[str, Any] | None = None,
             batch_size: int | None = None, prior: str | Mapping[str, float] | None = None) -> EvaluationReport:
    """Predict every (name, language) row of ``frame`` and score it against the true language.

    ``frame`` has the columns of :func:`~namesclf.data.dataset.load_names` (``name``, ``language``,
    ``ascii``); each row is one distinct pair. Each distinct folded name is predicted once, in
    batches of ``batch_size`` (default: the predictor's own, tuned per device). ``prior``
    re-weighs the probabilities for another population (:mod:`namesclf.inference.priors`; the predictor must know
    its training mix, ``trained_on``).
    """
    labels = list(predictor.labels)
    if frame.empty:
        raise NamesError("nothing to evaluate: the data has no names")
    check_languages(labels, frame)
    frame = frame.reset_index(drop=True)
    proba = row_probabilities(predictor, frame, labels, batch_size, prior)
    languages_of = frame.groupby("ascii", sort=False)["language"].agg(lambda s: sorted(set(s)))
    predictions = prediction_table(frame, proba, labels, languages_of)
    y_true = predictions["language"].to_numpy(dtype=object)
    y_pred = predictions["predicted"].to_numpy(dtype=object)
    # Languages that occur as truth or prediction: the set scikit-learn averages over by default,
    # and the one `names train` used for the test figures stored in the model file.
    present = [lang for lang in labels if lang in set(y_true) | set(y_pred)]
    report_dict = classification_report(y_true, y_pred, labels=present, output_dict=True, zero_division=0)
    text_report = classification_report(y_true, y_pred, labels=present, digits=3, zero_division=0)
    confusion, confusion_normalized = confusion_frames(y_true, y_pred, labels)
    confused = most_confused(confusion)
    metrics: dict[str, Any] = {
        **scalar_figures(frame, predictions, proba, labels, languages_of),
        "labels": labels,
        "per_language": {lang: report_dict[lang] for lang in present},
        "classification_report": {k: v for k, v in report_dict.items() if k not in present},
        "most_confused": confused,
    }
    levels = {level: level_report(frame, proba, labels, level) for level in COARSE_LEVELS}
    metrics["levels"] = {"label": {key: metrics[key] for key in LEVEL_FIGURES} | {"n_classes": len(labels)},
                         **{level: found.metrics for level, found in levels.items()}}
    ctx = dict(context or {})
    metrics.update({k: v for k, v in ctx.items() if k not in metrics})
    unknown = level_map(labels, "label").unknown
    notes = [f"{', '.join(unknown)} not in the origin-group table: at the group and region level "
             f"{'each stands' if len(unknown) > 1 else 'it stands'} for itself"] if unknown else []
    return EvaluationReport(jsonable(metrics), confusion, confusion_normalized, predictions,
                            error_rows(predictions), confused, text_report, ctx, notes=notes, levels=levels)


#: The figures reported at every level (the label level's are the report's own).
def row_probabilities(predictor: ProbaModel, frame: pd.DataFrame, labels: list[str], batch_size: int | None,
                      prior: str | Mapping[str, float] | None) -> np.ndarray:
    """The probabilities of each row of ``frame`` (columns in ``labels`` order), each distinct
    folded name predicted once, re-weighed by ``prior`` when given."""
    folded = pd.unique(frame["ascii"])
    kwargs = {} if batch_size is None else {"batch_size": batch_size}
    proba = np.asarray(predictor.proba_ascii(list(folded), **kwargs), dtype=np.float64)
    if proba.shape != (len(folded), len(labels)):
        raise ValueError(f"proba_ascii returned shape {proba.shape}, expected {(len(folded), len(labels))}")
    weights = resolve_prior(prior, labels)
    if weights is not None:
        proba = reweight(proba, predictor.trained_on, weights)  # type: ignore[attr-defined]
    return proba[pd.Index(folded).get_indexer(frame["ascii"])]


def scalar_figures(frame: pd.DataFrame, predictions: pd.DataFrame, proba: np.ndarray, labels: list[str],
                   languages_of: pd.Series) -> dict[str, Any]:
    """The report's figures (``metrics.json`` before the per-language tables), from the
    :func:`prediction_table` of ``frame`` and its row probabilities."""
    y_true = predictions["language"].to_numpy(dtype=object)
    y_pred = predictions["predicted"].to_numpy(dtype=object)
    y_true_idx = frame["language"].map({lang: i for i, lang in enumerate(labels)}).to_numpy()
    # accuracy_any: one row per distinct folded name (the model's answer is the same for all its
    # pairs); its "true" label is the predicted one when that is among its languages.
    per_name = predictions.drop_duplicates("ascii")
    any_true = np.where(per_name["correct_any"], per_name["predicted"], per_name["ascii"].map(
        lambda a: languages_of[a][0]))
    n_langs = languages_of.map(len)
    shared = n_langs[n_langs > 1]
    scores = classification_scores(y_true, y_pred)
    return {
        "n": len(frame),
        "n_names": len(languages_of),
        "accuracy": scores["accuracy"],
        "accuracy_any": float(accuracy_score(any_true, per_name["predicted"])),
        "accuracy_ceiling": len(languages_of) / len(frame),
        "macro_f1": scores["macro_f1"],
        "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "top3_accuracy": top_k_accuracy(y_true_idx, proba, k=3),
        # The same figures over the pairs of names listed under one language only: no ceiling
        # below 1, and the yardstick on which published peer figures reproduce (docs/evaluation.md).
        **single_language_scores(y_true, y_pred, single_language(frame)),
        **calibration_scores(proba, y_true_idx),
        "names_in_several_languages": len(shared),
        "pairs_of_shared_names": int(shared.sum()),
    }


#: The columns of ``errors.csv``.
ERROR_COLUMNS = ["name", "ascii", "language", "predicted", "probability", "true_probability", "other_languages"]


def error_rows(predictions: pd.DataFrame) -> pd.DataFrame:
    """The misclassified pairs, by true language and then most confident first."""
    errors = predictions.loc[~predictions["correct"], ERROR_COLUMNS]
    errors = errors.sort_values(["language", "probability"], ascending=[True, False], kind="stable")
    return errors.reset_index(drop=True)


def prediction_table(frame: pd.DataFrame, proba: np.ndarray, labels: list[str],
                     languages_of: pd.Series) -> pd.DataFrame:
    """One row per (name, language) pair: the answer, its probability, the true language's, and
    whether it is right strictly or under any of the name's languages (``languages_of``)."""
    y_true = frame["language"].to_numpy(dtype=object)
    y_true_idx = frame["language"].map({lang: i for i, lang in enumerate(labels)}).to_numpy()
    y_pred_idx = proba.argmax(axis=1)
    y_pred = np.asarray(labels, dtype=object)[y_pred_idx]
    predictions = frame[["name", "ascii", "language"]].copy()
    predictions["predicted"] = y_pred
    predictions["probability"] = proba[np.arange(len(frame)), y_pred_idx]
    predictions["true_probability"] = proba[np.arange(len(frame)), y_true_idx]
    predictions["correct"] = y_true == y_pred
    all_langs = predictions["ascii"].map(languages_of)
    predictions["correct_any"] = [p in langs for p, langs in zip(y_pred, all_langs, strict=True)]
    predictions["other_languages"] = [";".join(x for x in langs if x != t)
                                      for t, langs in zip(y_true, all_langs, strict=True)]
    return predictions


def evaluate_data(predictor: Any, data: NamesData, split: str = "all",
                  model_path: str | Path | None = None, prior: str | None = None) -> EvaluationReport:
    """What ``names evaluate`` does: check the languages, rebuild the split, evaluate.

    ``predictor`` is a :class:`~namesclf.inference.predictor.Predictor` (its ``meta`` holds the split seed).
    """
    meta = getattr(predictor, "meta", None) or {}
    check_languages(predictor.labels, data.frame)
    frame = select_split(data.frame, split, meta)
    context: dict[str, Any] = {"model": str(model_path) if model_path is not None else None,
                               "data": data.source, "split": split, "prior": prior}
    notes = []
    if split != "all":
        context["split_seed"] = meta.get("split_seed")
        expected = meta.get(f"n_{split}")
        if expected is not None and int(expected) != len(frame):
            notes.append(f"DATA gives {len(frame):,} {split} pairs but the model's {split} split had "
                         f"{int(expected):,}: DATA is not the data the model was trained on, so this is "
                         f"not its {split} split")
    if split == "valid" and meta.get("pooling", {}).get("counted_on") == "train+valid":
        notes.append("the model's n-gram half was counted on the valid names too (--refit-ngram), so these "
                     "figures are not held out: use --split test")
    report = evaluate(predictor, frame, {k: v for k, v in context.items() if v is not None}, prior=prior)
    report.notes.extend(notes)
    return report


# ----------------------------------------------------------------------------- files


def default_report_dir(model_path: str | Path) -> Path:
    """``reports/<model stem>/``: ``models/names.pt`` -> ``reports/names``."""
    return Path("reports") / Path(model_path).stem


def training_report_dir(model_out: str | Path) -> Path:
    """``models/names.pt`` -> ``models/names.report``: next to the model it describes."""
    return Path(model_out).with_suffix(".report")


def _csv(frame: pd.DataFrame, index: bool = False) -> str:
    return frame.to_csv(index=index, lineterminator="\n")


def write_report(report: EvaluationReport, out_dir: str | Path, title: str | None = None) -> list[Path]:
    """Write the report files into ``out_dir`` (each atomically) and return their paths.

    ``metrics.json``, ``report.txt``, ``confusion_matrix.csv`` (counts),
    ``confusion_matrix_normalized.csv`` (rows sum to 1), ``confusion_matrix.png``,
    ``reliability.png`` (confidence against accuracy), ``errors.csv``, and the three confusion
    files of each coarser level the report holds (:func:`level_files`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {**report.metrics, "notes": report.notes} if report.notes else report.metrics
    written = [
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False) + "\n"),
        atomic_write_text(out / "report.txt", report.to_text()),
        atomic_write_text(out / "confusion_matrix.csv", _csv(report.confusion, index=True)),
        atomic_write_text(out / "confusion_matrix_normalized.csv",
                          _csv(report.confusion_normalized, index=True)),
        plot_confusion(report.confusion, report.confusion_normalized, report.metrics, out / "confusion_matrix.png",
                       title or figure_title(report.context)),
        plot_reliability(report.metrics, out / "reliability.png", title or figure_title(report.context, "Reliability")),
        atomic_write_text(out / "errors.csv", _csv(report.errors)),
    ]
    for level, found in report.levels.items():
        counts, normalized, png = level_files(level)
        written += [
            atomic_write_text(out / counts, _csv(found.confusion, index=True)),
            atomic_write_text(out / normalized, _csv(found.confusion_normalized, index=True)),
            plot_confusion(found.confusion, found.confusion_normalized, found.metrics, out / png,
                           f"{title or figure_title(report.context)} ({level}s)"),
        ]
    return written


__all__ = [
    "REPORT_FILES",
    "SPLIT_CHOICES",
    "EvaluationReport",
    "LevelReport",
    "check_languages",
    "default_report_dir",
    "evaluate",
    "evaluate_data",
    "format_pair",
    "level_report",
    "most_confused",
    "select_split",
    "training_report_dir",
    "write_report",
]
