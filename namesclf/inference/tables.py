"""Whole tables: ``predict_frame`` adds prediction columns to a pandas DataFrame, and the table
files ``names predict --input FILE --column COL`` reads and writes (CSV, TSV, Parquet).

One output row per input row, same index and order; each distinct name is classified once and
joined back, because real tables repeat surnames heavily. Empty and unreadable cells get empty
predictions.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from namesclf.errors import NamesError, first_line
from namesclf.files import atomic_write_with
from namesclf.inference.options import Options
from namesclf.inference.output import output_columns, output_row
from namesclf.inference.predictor import Predictor

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
        raise NamesError(f"{path}: cannot read as {fmt.upper()}: {first_line(exc)}") from None


def check_text_column(path: str | Path, column: str) -> None:
    """A Parquet column of lists, records or maps holds no names: say so in one line, from the
    file's schema alone, before anything is read or predicted. Other files and formats pass."""
    source = Path(path)
    if str(path) == "-" or not (source.is_dir() or (source.is_file() and table_format(path) == "parquet")):
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.ParquetDataset(str(source)).schema
    except (OSError, ValueError, pa.ArrowException):
        return  # the reader says what is wrong with the file
    if column in schema.names and pa.types.is_nested(schema.field(column).type):
        raise NamesError(f"{path}: column {column!r} holds {schema.field(column).type} values, not text: "
                         "give --column a column of names")


def write_table(frame: pd.DataFrame, path: str | Path, force: bool = True) -> Path | None:
    """Write ``frame`` atomically in the format of ``path``'s suffix (``-``: CSV on stdout).

    Without ``force`` an existing file is refused, even one that appeared during the work (the
    command line passes its ``--force``); a folder, link, device or FIFO is refused always.
    """
    fmt = table_format(path)
    if str(path) == "-":
        frame.to_csv(sys.stdout, index=False, lineterminator="\n")
        return None
    if fmt == "parquet":
        return atomic_write_with(path, lambda handle: frame.to_parquet(handle, index=False), overwrite=force)
    sep = "\t" if fmt == "tsv" else ","
    return atomic_write_with(path, lambda handle: frame.to_csv(handle, sep=sep, index=False, lineterminator="\n"),
                             binary=False, overwrite=force)


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


def predict_frame(frame: Any, column: str, predictor: Predictor | str | Path, k: int = 1, *,
                  coverage: float | None = None, per_language: bool = False,
                  prior: str | dict[str, float] | None = None, abstain: bool = False, abstain_rate: float = 0.05,
                  surname_only: bool = False, prefix: str = "", batch_size: int = 65536) -> Any:
    """``frame`` with prediction columns added after its own: ``language``, ``probability`` (and
    ``language_2``... up to ``k``), ``surname`` (the part of a full name classified), and with
    ``abstain`` / ``coverage`` the ``answer``, ``abstained``, ``novelty`` / ``prediction_set``
    columns. ``prefix`` is put before each new column's name (to keep clear of existing ones).

    ``frame`` is a pandas DataFrame, or a Dask DataFrame: then the answer is a Dask DataFrame too,
    lazy, computed partition by partition on whatever scheduler runs it (:mod:`namesclf.inference.dask_tables`; there
    ``predictor`` must be the model file's path, which every worker loads once).

    ``predictor`` is a :class:`~namesclf.inference.predictor.Predictor` or a model file. The options are those of
    :meth:`~namesclf.inference.predictor.Predictor.predict`. Empty or non-text cells get empty predictions.
    """
    options = Options(k, coverage, per_language, prior, abstain, abstain_rate, surname_only)
    if not isinstance(frame, pd.DataFrame):
        if _is_dask_frame(frame):
            from namesclf.inference.dask_tables import predict_dask_frame

            return predict_dask_frame(frame, column, predictor, options, prefix=prefix, batch_size=batch_size)
        raise NamesError(f"predict_frame takes a pandas or Dask DataFrame, not {type(frame).__name__}")
    if not isinstance(predictor, Predictor):
        predictor = Predictor.load(str(predictor))
    return predict_pandas(frame, column, predictor, options, prefix, batch_size)


def _is_dask_frame(frame: Any) -> bool:
    """Whether ``frame`` is a Dask DataFrame, without importing dask: if it is not imported yet,
    nobody can have made one."""
    dd = sys.modules.get("dask.dataframe")
    return dd is not None and isinstance(frame, dd.DataFrame)


def predict_pandas(frame: pd.DataFrame, column: str, predictor: Predictor, options: Options, prefix: str = "",
                   batch_size: int = 65536) -> pd.DataFrame:
    """:func:`predict_frame` for a pandas DataFrame and options in one object (what each Dask
    partition runs).

    Distinct cells are found by hashing (``pd.factorize``), in time linear in the rows: sorting
    them, or testing each cell's type in Python, cost more than the model itself on tables whose
    surnames repeat. Each distinct text is classified once and the answers are taken back to the
    rows, typed by :func:`output_dtypes`.
    """
    if column not in frame.columns:
        raise NamesError(f"no column {column!r} in the table (its columns: {', '.join(map(str, frame.columns))})")
    n_labels = len(predictor.labels)
    dtypes = output_dtypes(options, n_labels, prefix)
    clash = sorted(set(dtypes) & set(map(str, frame.columns)))
    if clash:
        raise NamesError(f"the table already has column(s) {', '.join(clash)}: pass a prefix (--prefix)")
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
