"""People tables: one row per person, their given names and surname apart (the corpus that
``names data fetch wikipedia --full-names`` writes), read for a model that reads full names.

A CSV or TSV with ``given`` and ``surname`` columns and a label column (``language`` unless told
otherwise, e.g. ``nationality``) is a people table; :func:`is_people_table` tells it from a
surname table by its header alone, so ``names train`` can pick the model to train.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from namesclf.errors import DataError, first_line
from namesclf.text import to_ascii

#: The columns a people table must have besides its label column.
PEOPLE_COLUMNS = ("given", "surname")
#: A people table is larger than a surname list (the Wikipedia people are ~46 MB); a mistaken
#: path may still be gigabytes.
MAX_PEOPLE_BYTES = 512 * 1024 * 1024


def _separator(path: Path) -> str:
    return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","


def header(path: str | Path) -> list[str]:
    """The column names of a CSV/TSV file ([] when it is not one or cannot be read)."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() not in (".csv", ".tsv", ".tab"):
        return []
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return next(csv.reader(handle, delimiter=_separator(path)), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def is_people_table(path: str | Path) -> bool:
    """Whether ``path`` is a people table (its header has ``given`` and ``surname``)."""
    return set(PEOPLE_COLUMNS) <= set(header(path))


@dataclass
class People:
    """A loaded people table: ``name`` (the full name, or given + surname), ``given``, ``surname``
    and ``language`` (the label column's value), and what loading dropped."""

    frame: pd.DataFrame
    source: str
    label_column: str
    n_rows: int
    n_no_label: int
    n_no_surname: int


def load_people(source: str | Path, label_column: str = "language") -> People:
    """Read a people table; rows with no label or a surname without letters are dropped and counted."""
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_PEOPLE_BYTES:
        raise DataError(f"{path}: {size:,} bytes is too large for a people table (limit {MAX_PEOPLE_BYTES:,})")
    try:
        frame = pd.read_csv(path, sep=_separator(path), dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({first_line(exc)})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: cannot read as a table: {first_line(exc, 'no data')}") from None
    missing = [c for c in (*PEOPLE_COLUMNS, label_column) if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (a people table has given, surname "
                        f"and the label column {label_column!r})")
    n_rows = len(frame)
    given = frame["given"].str.strip()
    surname = frame["surname"].str.strip()
    name = frame["name"].str.strip() if "name" in frame.columns else (given + " " + surname).str.strip()
    out = pd.DataFrame({"name": name, "given": given, "surname": surname,
                        "language": frame[label_column].str.strip()})
    no_label = out["language"] == ""
    no_surname = ~no_label & (out["surname"].map(to_ascii) == "")
    out = out[~no_label & ~no_surname].reset_index(drop=True)
    if out["language"].nunique() < 2:
        raise DataError(f"{path}: fewer than two labels in column {label_column!r}: nothing to learn")
    return People(out, str(path), label_column, n_rows, int(no_label.sum()), int(no_surname.sum()))
