"""Origin groups: answers at the level of a language branch or a region as well as a label.

When the model hesitates between Russian, Ukrainian and Belarusian, the answer "East Slavic" can be
sure where none of the three is; researchers who count populations are told to work at that level.
The committed table ``namesclf/data/origin_groups.csv`` places every label of both corpora in a
group (a branch, e.g. East Slavic) and a region (a family or an area, e.g. Slavic), each row with
its reason (docs/groups.md). A label the table does not know (a user's own training labels) stays a
group and a region of its own, and :func:`level_map` says so in a note.

Probabilities at a level are sums of label probabilities, so they stay calibrated when the label
probabilities are: the probability that a name is East Slavic is the probability that it is one
of the three.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from namesclf.config import LEVELS
from namesclf.errors import NamesError

TABLE = "origin_groups.csv"


@cache
def origin_table() -> dict[str, tuple[str, str]]:
    """``{label: (group, region)}`` from the packaged table."""
    text = resources.files("namesclf.data").joinpath(TABLE).read_text("utf-8")
    return {row["label"]: (row["group"], row["region"]) for row in csv.DictReader(io.StringIO(text))}


@dataclass(frozen=True)
class LevelMap:
    """How a model's labels roll up at one level: ``index[i]`` is label ``i``'s column in ``names``."""

    level: str
    names: list[str]
    index: np.ndarray
    unknown: list[str]

    def note(self) -> str | None:
        """One line for stderr when some labels are not in the table, else None."""
        if not self.unknown or self.level == "label":
            return None
        return (f"note: {', '.join(self.unknown)} not in the origin-group table; "
                f"{'each stays' if len(self.unknown) > 1 else 'it stays'} a {self.level} of its own")

    def sum_columns(self, proba: np.ndarray) -> np.ndarray:
        """Label probabilities ``(n, n_labels)`` -> probabilities at this level ``(n, len(names))``."""
        out = np.zeros((proba.shape[0], len(self.names)), dtype=np.float64)
        for column in range(proba.shape[1]):
            out[:, self.index[column]] += proba[:, column]
        return out


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise NamesError(f"unknown --level {level!r}: use {', '.join(LEVELS)}")
    return level


def level_map(labels: Sequence[str], level: str) -> LevelMap:
    """How ``labels`` roll up at ``level``; names at that level in order of first appearance."""
    check_level(level)
    table = origin_table()
    unknown = [label for label in labels if label not in table]
    if level == "label":
        return LevelMap(level, list(labels), np.arange(len(labels)), unknown)
    which = LEVELS.index(level) - 1
    keys = [table[label][which] if label in table else label for label in labels]
    names = list(dict.fromkeys(keys))
    return LevelMap(level, names, np.array([names.index(k) for k in keys]), unknown)


def groups_in_set(in_set: np.ndarray, rollup: LevelMap) -> np.ndarray:
    """``(B, n_groups)``: a group is in a name's set when one of its labels is in the label set.

    The true label is in the label set with the set's coverage, and whenever it is, its group is
    in this set: the coverage carries over (docs/groups.md#prediction-sets-at-a-level). The
    validation names' stored scores are label probabilities only, so a set cannot be calibrated
    on group probabilities themselves.
    """
    out = np.zeros((in_set.shape[0], len(rollup.names)), dtype=bool)
    for column, group in enumerate(rollup.index.tolist()):
        out[:, group] |= in_set[:, column]
    return out
