"""The confusion tables every report shares, and the model scored at the coarser levels.

A report scores its model at the label level and at each coarser level of the origin groups
(:mod:`namesclf.inference.groups`): a row's probabilities summed within each group, the largest
sum the answer, the true label taken to its group. :mod:`namesclf.report.evaluate` writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score

from namesclf.config import LEVELS
from namesclf.files import jsonable
from namesclf.inference.groups import level_map
from namesclf.report.metrics import classification_scores

#: How many of the most confused (true, predicted) pairs ``report.txt`` and the CLI list.
N_CONFUSED = 10

#: The coarser levels every report scores the model at, besides its labels.
COARSE_LEVELS = LEVELS[1:]


def level_files(level: str) -> tuple[str, str, str]:
    """The confusion matrix files of one coarser level: counts, row-normalised (CSV), heatmap (PNG)."""
    return (f"confusion_matrix_{level}.csv", f"confusion_matrix_{level}_normalized.csv",
            f"confusion_matrix_{level}.png")


@dataclass
class LevelReport:
    """The model scored at one coarser level: its figures (as in ``metrics["levels"][level]``) and
    its confusion matrices (rows: true group, columns: predicted group)."""

    level: str
    metrics: dict[str, Any]
    confusion: pd.DataFrame
    confusion_normalized: pd.DataFrame


LEVEL_FIGURES = ("n", "n_names", "accuracy", "accuracy_any", "macro_f1", "weighted_f1", "balanced_accuracy")


def level_report(frame: pd.DataFrame, proba: np.ndarray, labels: list[str], level: str) -> LevelReport:
    """The model scored at ``level``: each row's probabilities summed within its groups, the
    largest sum the answer, and the true label taken to its group.

    The pairs are (name, group): a name listed under Russian and Ukrainian is one East Slavic
    pair, as it is one answer. ``accuracy_any`` counts a distinct name as right when its answer
    is the group of any of its labels.
    """
    rollup = level_map(labels, level)
    names = rollup.names
    group_of = {label: names[i] for label, i in zip(labels, rollup.index.tolist(), strict=True)}
    summed = rollup.sum_columns(proba)
    table = pd.DataFrame({"name": frame["name"].to_numpy(), "ascii": frame["ascii"].to_numpy(),
                          "true": frame["language"].map(group_of).to_numpy(dtype=object),
                          "predicted": np.asarray(names, dtype=object)[summed.argmax(axis=1)]})
    table = table.drop_duplicates(["name", "true"]).reset_index(drop=True)
    y_true = table["true"].to_numpy(dtype=object)
    y_pred = table["predicted"].to_numpy(dtype=object)
    groups_of = table.groupby("ascii", sort=False)["true"].agg(set)
    per_name = table.drop_duplicates("ascii")
    right_any = [p in groups_of[a] for a, p in zip(per_name["ascii"], per_name["predicted"], strict=True)]
    confusion, confusion_normalized = confusion_frames(y_true, y_pred, names)
    metrics: dict[str, Any] = {
        "n": len(table),
        "n_names": len(groups_of),
        **classification_scores(y_true, y_pred),
        "accuracy_any": float(np.mean(right_any)),
        "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "n_classes": len(names),
        "classes": names,
        "members": {name: [label for label in labels if group_of[label] == name] for name in names},
        "most_confused": most_confused(confusion),
    }
    note = rollup.note()
    if note is not None:
        metrics["note"] = note.removeprefix("note: ")
    return LevelReport(level, jsonable(metrics), confusion, confusion_normalized)


def confusion_frames(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The confusion matrix as counts and row-normalised (rows: true language, columns: predicted)."""
    counts = confusion_matrix(y_true, y_pred, labels=labels)
    normalized = confusion_matrix(y_true, y_pred, labels=labels, normalize="true")  # zero rows stay 0
    confusion = pd.DataFrame(counts, index=pd.Index(labels, name="true"),
                             columns=pd.Index(labels, name="predicted"))
    return confusion, pd.DataFrame(normalized, index=confusion.index, columns=confusion.columns)


def most_confused(confusion: pd.DataFrame, n: int = N_CONFUSED) -> list[dict[str, Any]]:
    """The ``n`` largest off-diagonal cells: the mistakes worth looking at first."""
    support = confusion.sum(axis=1)
    cells = [
        {"true": t, "predicted": p, "count": int(confusion.loc[t, p]), "support": int(support[t])}
        for t in confusion.index for p in confusion.columns
        if t != p and confusion.loc[t, p] > 0
    ]
    cells.sort(key=lambda c: (-c["count"], -c["count"] / c["support"], c["true"], c["predicted"]))
    return cells[:n]
