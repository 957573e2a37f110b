"""Whole tables: :func:`predict_frame` adds prediction columns to a pandas or Dask DataFrame, and
the table files ``names predict --input FILE --column COL`` reads and writes (CSV, TSV, Parquet).

The work on one pandas DataFrame is :func:`~namesclf.inference.frames.predict_pandas`; a Dask
DataFrame goes to :mod:`namesclf.inference.dask_tables`, imported only then (dask is optional).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from namesclf.errors import NamesError, first_line
from namesclf.files import atomic_write_with
from namesclf.inference.frames import (
    FRAME_BATCH,
    STRING,
    TABLE_SUFFIXES,
    ColumnClash,
    output_dtypes,
    predict_pandas,
    table_format,
)
from namesclf.inference.options import DEFAULTS, Options
from namesclf.inference.predictor import Predictor

# Re-exported: where these lived before :mod:`namesclf.inference.frames` was split out.
__all__ = ["STRING", "TABLE_SUFFIXES", "ColumnClash", "output_dtypes", "predict_frame", "predict_pandas",
           "read_table", "table_format", "write_table"]


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


def predict_frame(frame: Any, column: str, predictor: Predictor | str | Path, k: int = DEFAULTS.k, *,
                  abstain: bool = DEFAULTS.abstain, abstain_rate: float = DEFAULTS.abstain_rate,
                  coverage: float | None = DEFAULTS.coverage, per_language: bool = DEFAULTS.per_language,
                  prior: str | Mapping[str, float] | None = DEFAULTS.prior, level: str = DEFAULTS.level,
                  surname_only: bool = DEFAULTS.surname_only, order: str = DEFAULTS.order,
                  explain: bool = DEFAULTS.explain, given_column: str | None = None, prefix: str = "",
                  batch_size: int = FRAME_BATCH) -> Any:
    """``frame`` with prediction columns added after its own: ``language``, ``probability`` (and
    ``language_2``... up to ``k``), ``surname`` (the part of a full name classified), and with
    ``abstain`` / ``coverage`` / ``explain`` the ``answer``, ``abstained``, ``novelty`` /
    ``prediction_set`` / ``explanation`` (a JSON string, docs/explain.md) columns. ``prefix`` is
    put before each new column's name (to keep clear of existing ones).
    With ``level="group"`` or ``"region"`` the ``language`` columns hold origin groups or regions
    and ``probability`` their summed probabilities (docs/groups.md).
    With ``given_column``, ``column`` holds surnames and ``given_column`` their given names (for a
    model that reads full names; a surname model reads ``column`` alone).

    ``frame`` is a pandas DataFrame, or a Dask DataFrame: then the answer is a Dask DataFrame too,
    lazy, computed partition by partition on whatever scheduler runs it
    (:mod:`namesclf.inference.dask_tables`; there ``predictor`` must be the model file's path,
    which every worker loads once).

    ``predictor`` is a :class:`~namesclf.inference.predictor.Predictor` or a model file. The
    options are those of :class:`~namesclf.inference.options.Options`, with its defaults. Empty or
    non-text cells get empty predictions.
    """
    options = Options(k=k, abstain=abstain, abstain_rate=abstain_rate, coverage=coverage, per_language=per_language,
                      prior=prior, level=level, surname_only=surname_only, order=order, explain=explain)
    if not isinstance(frame, pd.DataFrame):
        if _is_dask_frame(frame):
            from namesclf.inference.dask_tables import predict_dask_frame

            return predict_dask_frame(frame, column, predictor, options, prefix=prefix, batch_size=batch_size,
                                      given_column=given_column)
        raise NamesError(f"predict_frame takes a pandas or Dask DataFrame, not {type(frame).__name__}")
    if not isinstance(predictor, Predictor):
        predictor = Predictor.load(str(predictor))
    return predict_pandas(frame, column, predictor, options, prefix, batch_size, given_column)


def _is_dask_frame(frame: Any) -> bool:
    """Whether ``frame`` is a Dask DataFrame, without importing dask: if it is not imported yet,
    nobody can have made one."""
    dd = sys.modules.get("dask.dataframe")
    return dd is not None and isinstance(frame, dd.DataFrame)
