"""Whole tables: ``predict_frame`` adds prediction columns to a pandas DataFrame, and the table
files ``names predict --input FILE --column COL`` reads and writes (CSV, TSV, Parquet).

One output row per input row, same index and order; each distinct name is classified once and
joined back, because real tables repeat surnames heavily. Empty and unreadable cells get empty
predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import NamesError
from .files import atomic_write_with
from .predict import Options, Predictor, output_columns, output_row

#: Table formats by file suffix.
TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet"}


def table_format(path: str | Path) -> str:
    """``csv``, ``tsv`` or ``parquet`` from the suffix (``-`` is CSV on stdin/stdout)."""
    if str(path) == "-":
        return "csv"
    fmt = TABLE_SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        raise NamesError(f"{path}: unknown table format (use {', '.join(sorted(TABLE_SUFFIXES))})")
    return fmt


def read_table(path: str | Path) -> pd.DataFrame:
    """A table as strings (no type guessing: ``0042`` stays ``0042``, ``NA`` stays ``NA``)."""
    fmt = table_format(path)
    source: Any = "/dev/stdin" if str(path) == "-" else path
    if str(path) != "-" and not Path(path).is_file():
        raise NamesError(f"{path}: no such file")
    try:
        if fmt == "parquet":
            return pd.read_parquet(source)
        return pd.read_csv(source, sep="\t" if fmt == "tsv" else ",", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NamesError(f"{path}: cannot read as {fmt.upper()}: {first}") from None


def write_table(frame: pd.DataFrame, path: str | Path) -> Path | None:
    """Write ``frame`` atomically in the format of ``path``'s suffix (``-``: CSV on stdout)."""
    fmt = table_format(path)
    if str(path) == "-":
        import sys

        frame.to_csv(sys.stdout, index=False, lineterminator="\n")
        return None
    if fmt == "parquet":
        return atomic_write_with(path, lambda handle: frame.to_parquet(handle, index=False))
    sep = "\t" if fmt == "tsv" else ","
    return atomic_write_with(path, lambda handle: frame.to_csv(handle, sep=sep, index=False, lineterminator="\n"),
                             binary=False)


def predict_frame(frame: pd.DataFrame, column: str, predictor: Predictor | str | Path, k: int = 1, *,
                  coverage: float | None = None, per_language: bool = False,
                  prior: str | dict[str, float] | None = None, abstain: bool = False, abstain_rate: float = 0.05,
                  surname_only: bool = False, prefix: str = "", batch_size: int = 65536) -> pd.DataFrame:
    """``frame`` with prediction columns added after its own: ``language``, ``probability`` (and
    ``language_2``... up to ``k``), ``surname`` (the part of a full name classified), and with
    ``abstain`` / ``coverage`` the ``answer``, ``abstained``, ``novelty`` / ``prediction_set``
    columns. ``prefix`` is put before each new column's name (to keep clear of existing ones).

    ``predictor`` is a :class:`.predict.Predictor` or a model file. The options are those of
    :meth:`.predict.Predictor.predict`. Empty or non-text cells get empty predictions.
    """
    if column not in frame.columns:
        raise NamesError(f"no column {column!r} in the table (its columns: {', '.join(map(str, frame.columns))})")
    if not isinstance(predictor, Predictor):
        predictor = Predictor.load(str(predictor))
    options = Options(k, coverage, per_language, prior, abstain, abstain_rate, surname_only)
    columns = [prefix + c for c in output_columns(options, len(predictor.labels))]
    clash = sorted(set(columns) & set(map(str, frame.columns)))
    if clash:
        raise NamesError(f"the table already has column(s) {', '.join(clash)}: pass a prefix (--prefix)")
    values = frame[column]
    text = values.where(values.map(lambda v: isinstance(v, str)), "").astype(str)
    unique, inverse = np.unique(text.to_numpy(dtype=object).astype(str), return_inverse=True)
    rows = []
    for start in range(0, len(unique), batch_size):
        batch: Sequence[str] = unique[start : start + batch_size].tolist()
        rows += [output_row(p, options, len(predictor.labels)) for p in predictor.predict_with(batch, options,
                                                                                                 strict=False)]
    table = pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
    added = table.iloc[inverse].reset_index(drop=True) if len(frame) else table.iloc[:0]
    added.index = frame.index
    return pd.concat([frame, added], axis=1)
