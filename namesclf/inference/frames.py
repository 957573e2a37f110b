"""One pandas DataFrame's prediction columns (:func:`predict_pandas`, what
:func:`~namesclf.inference.tables.predict_frame` and each Dask partition run), their dtypes, and
the table formats by file suffix: what :mod:`namesclf.inference.tables` (one process) and
:mod:`namesclf.inference.dask_tables` (a cluster) share, so that neither imports the other.

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

from namesclf.errors import NamesError
from namesclf.inference.options import Options
from namesclf.inference.output import output_columns, output_row
from namesclf.inference.predictor import Predictor

#: Rows classified per call (distinct names): bounds the memory of one call's answers.
FRAME_BATCH = 65536


class ColumnClash(NamesError):
    """The table already has a column that prediction would add. The message is the advice for
    Python callers (``prefix=``); the command line, which has no prefix option, words its own
    from :attr:`columns`."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns
        super().__init__(f"the table already has column(s) {', '.join(columns)}: pass prefix= (e.g. "
                         f"predict_frame(..., prefix=\"pred_\")) so that the new columns keep clear of them")


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


#: The dtype pandas gives a column of text by default (``str`` in pandas 3, ``object`` before): the
#: prediction columns take it, so a table looks the same whether it came from one process or a cluster.
STRING = pd.Series(["a"]).dtype


def output_dtypes(options: Options, n_labels: int, prefix: str = "") -> dict[str, Any]:
    """The dtype of each prediction column, fixed whatever the cells hold (an all-empty batch would
    otherwise give ``object`` columns): what a Dask ``meta`` and a Parquet schema need to be exact."""
    dtypes: dict[str, Any] = {}
    for column in output_columns(options, n_labels):
        if column.startswith("probability") or column == "novelty":
            dtypes[prefix + column] = np.dtype("float64")
        elif column == "abstained":
            dtypes[prefix + column] = pd.BooleanDtype()
        else:
            dtypes[prefix + column] = STRING
    return dtypes


def _text(values: Sequence[Any]) -> list[str]:
    """Cells as text: missing cells and cells that are not text read as ``""``."""
    return [v if isinstance(v, str) else "" for v in values]


def _predict_pairs(frame: pd.DataFrame, column: str, given_column: str, predictor: Predictor, options: Options,
                   dtypes: dict[str, Any], batch_size: int) -> pd.DataFrame:
    """The prediction columns for surnames in ``column`` and given names in ``given_column``,
    each distinct pair classified once."""
    if given_column not in frame.columns:
        raise NamesError(f"no column {given_column!r} in the table (its columns: "
                         f"{', '.join(map(str, frame.columns))})")
    surnames, givens = _text(frame[column].tolist()), _text(frame[given_column].tolist())
    codes, uniques = pd.factorize(pd.Series([f"{s}\x1f{g}" for s, g in zip(surnames, givens, strict=True)],
                                            dtype=object))
    pairs = [u.split("\x1f", 1) for u in uniques.tolist()]
    n_labels = len(predictor.labels)
    rows = []
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start : start + batch_size]
        answers = predictor.predict_with([p[0] for p in batch], options, strict=False, given=[p[1] for p in batch])
        rows += [output_row(p, options, n_labels) for p in answers]
    table = pd.DataFrame(rows, columns=list(dtypes)).astype(dtypes)
    return table.take(codes)


def predict_pandas(frame: pd.DataFrame, column: str, predictor: Predictor, options: Options, prefix: str = "",
                   batch_size: int = FRAME_BATCH, given_column: str | None = None) -> pd.DataFrame:
    """:func:`predict_frame` for a pandas DataFrame and options in one object (what each Dask
    partition runs).

    Distinct cells are found by hashing (``pd.factorize``), in time linear in the rows: sorting
    them, or testing each cell's type in Python, cost more than the model itself on tables whose
    surnames repeat. Each distinct text is classified once and the answers are taken back to the
    rows, typed by :func:`output_dtypes`. With ``given_column`` the names in ``column`` are
    surnames and their given names are in ``given_column`` (a full-name model reads both).
    """
    if column not in frame.columns:
        raise NamesError(f"no column {column!r} in the table (its columns: {', '.join(map(str, frame.columns))})")
    n_labels = len(predictor.classes(options.level))
    dtypes = output_dtypes(options, n_labels, prefix)
    clash = sorted(set(dtypes) & set(map(str, frame.columns)))
    if clash:
        raise ColumnClash(clash)
    if given_column is not None:
        added = _predict_pairs(frame, column, given_column, predictor, options, dtypes, batch_size)
        added.index = frame.index
        return pd.concat([frame, added], axis=1)
    try:
        codes, uniques = pd.factorize(frame[column], use_na_sentinel=True)
    except TypeError:  # unhashable cells: lists or records (a nested Parquet column)
        raise NamesError(f"column {column!r} holds lists or records, not text: give a column of names") from None
    # Missing cells (code -1, taken from the end) and cells that are not text all read as "", once.
    text_codes, distinct = pd.factorize(np.array([u if isinstance(u, str) else "" for u in uniques] + [""],
                                                 dtype=object))
    codes = text_codes[codes]
    texts = distinct.tolist()
    rows = []
    for start in range(0, len(texts), batch_size):
        batch: Sequence[str] = texts[start : start + batch_size]
        rows += [output_row(p, options, n_labels) for p in predictor.predict_with(batch, options, strict=False)]
    table = pd.DataFrame(rows, columns=list(dtypes)).astype(dtypes)
    added = table.take(codes)
    added.index = frame.index
    return pd.concat([frame, added], axis=1)
