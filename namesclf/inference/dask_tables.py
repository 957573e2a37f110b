"""Whole tables on Dask: :func:`~namesclf.inference.tables.predict_frame` for a Dask DataFrame, and the table files
``names predict --input FILE --column COL --scheduler local:N|tcp://HOST:PORT`` reads and writes; the language
mix of a Dask DataFrame's column (:func:`estimate_dask_frame`, ``names estimate --scheduler``).

Tables of tens or hundreds of millions of rows outgrow one process; Dask already spreads pandas
work over cores and machines, so each partition simply runs the pandas :func:`~namesclf.inference.frames.predict_pandas`
(which classifies each distinct name of the partition once). The model never travels in the task
graph: each task carries the model file's path, and each worker process loads it once, on the
first partition it sees (:func:`worker_predictor`), with one torch thread, since the cluster's
parallelism comes from its workers.

dask is the optional extra ``namesclf[scale]``: only this module imports it, and only
:func:`~namesclf.inference.tables.predict_frame` given a Dask DataFrame, or ``--scheduler``, imports this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from namesclf.config import MIX_BOOTSTRAP, MIX_CONFIDENCE
from namesclf.errors import NamesError, first_line
from namesclf.files import atomic_folder, atomic_open, check_output
from namesclf.inference.frames import FRAME_BATCH, predict_pandas, table_format
from namesclf.inference.mix import MixEstimate, check_mix_method, count_population, estimate_mix_of, score_population
from namesclf.inference.options import NAMED_PRIORS, Options
from namesclf.inference.predictor import Predictor
from namesclf.inference.priors import read_prior_file

#: The model files this process has loaded, by (path, mtime, size): a worker loads each once, and
#: again only when the file is replaced.
_PREDICTORS: dict[tuple[str, int, int], Predictor] = {}
_LOCK = threading.Lock()
#: How many times this process loaded a model file (what shows that a worker loads it once).
loads = 0

#: Partitions per worker thread when a table comes in fewer pieces, so every worker gets work and
#: a slow partition does not leave the others idle at the end.
PARTITIONS_PER_THREAD = 2

#: The scheduler always serves HTTP (health, metrics): on a free loopback port, not on 0.0.0.0:8787,
#: which a second cluster on the machine would find taken.
LOOPBACK_HTTP = {"dashboard_address": "127.0.0.1:0"}

INSTALL_HINT = "--scheduler needs dask: pip install 'namesclf[scale]'"


def require_dask() -> None:
    """A one-line :class:`NamesError` saying what to install when dask (or distributed) is missing."""
    try:
        import dask.dataframe  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        raise NamesError(INSTALL_HINT) from None


def worker_predictor(path: str) -> Predictor:
    """The :class:`~namesclf.inference.predictor.Predictor` for the model file at ``path``, loaded once per process.

    In a Dask worker the model gets one thread (ONNX Runtime's, or torch's when there is no export):
    a worker runs one partition per thread of its own, and the model's threads on top would fight
    them for the same cores.
    """
    global loads
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise NamesError(f"{path}: cannot read the model file on this worker ({exc.strerror})") from None
    key = (path, stat.st_mtime_ns, stat.st_size)
    with _LOCK:
        if key not in _PREDICTORS:
            _PREDICTORS.clear()  # a replaced file's old model is not needed again
            _PREDICTORS[key] = Predictor.load(path, threads=1 if _in_dask_worker() else None)
            loads += 1
        return _PREDICTORS[key]


def _in_dask_worker() -> bool:
    if "distributed" not in sys.modules:
        return False
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


def _predict_partition(part: pd.DataFrame, column: str, model: str, options: Options, prefix: str,
                       batch_size: int, given_column: str | None = None) -> pd.DataFrame:
    return predict_pandas(part, column, worker_predictor(model), options, prefix, batch_size, given_column)


def predict_dask_frame(ddf: Any, column: str, model: str | Path | Predictor, options: Options, *,
                       prefix: str = "", batch_size: int = FRAME_BATCH, given_column: str | None = None) -> Any:
    """``ddf`` (a Dask DataFrame) with the prediction columns of
    :func:`~namesclf.inference.tables.predict_frame`, lazily.

    ``model`` must be the model file's path, readable by every worker under that name (a shared
    filesystem on a cluster). The model is loaded here too, once, to fail early on a bad file or
    option and to know the output columns: ``meta`` is exact, and so is every partition's schema.
    A prior given as a file is read here, so workers need only the model file.
    """
    if isinstance(model, Predictor):
        raise NamesError("with a Dask DataFrame, pass the model file's path: each worker loads it once "
                         "(a loaded model is not shipped in the task graph)")
    path = str(Path(model).resolve())
    predictor = Predictor.load(path)
    if isinstance(options.prior, str) and options.prior not in NAMED_PRIORS:
        options = dataclasses.replace(options, prior=read_prior_file(options.prior))
    # the empty frame gives the exact columns; the made-up one runs the options once (a missing
    # calibration, a bad prior) before any worker does
    meta = predict_pandas(ddf._meta, column, predictor, options, prefix, batch_size, given_column)
    predict_pandas(ddf._meta_nonempty, column, predictor, options, prefix, batch_size, given_column)
    return ddf.map_partitions(_predict_partition, column, path, options, prefix, batch_size, given_column,
                              meta=meta)


# ----------------------------------------------------------------------------- the mix of a column

#: The column of the distinct folded surnames in the tables :func:`estimate_dask_frame` builds.
_KEY = "ascii"


def _count_partition(part: pd.DataFrame, column: str, surname_only: bool, model: str) -> pd.DataFrame:
    """One partition's distinct keys (folded surnames, with their given names for a model that
    reads full names) and their counts; the names with no letters are counted under the empty key
    (cells that are not text, or blank, are not names and not counted)."""
    names = [name for name in part[column].tolist() if isinstance(name, str) and name.strip()]
    tally, skipped = count_population(names, surname_only=surname_only, reader=worker_predictor(model))
    keys = [*tally, ""]
    return pd.DataFrame({_KEY: pd.Series(keys, dtype=object),
                         "count": pd.Series([*tally.values(), skipped], dtype="float64")})


def _score_partition(part: pd.DataFrame, model: str, n_labels: int) -> pd.DataFrame:
    """The model's probabilities of a partition of distinct names (the empty key scores nothing)."""
    keys = part[_KEY].tolist()
    scored = [k for k in keys if k]
    proba = score_population(worker_predictor(model), scored) if scored else None
    out = pd.DataFrame(0.0, index=part.index, columns=[f"p{i}" for i in range(n_labels)])
    if proba is not None:
        out.loc[[bool(k) for k in keys]] = proba
    return pd.concat([part[[_KEY, "count"]], out], axis=1)


def estimate_dask_frame(ddf: Any, column: str, model: str | Path, *, level: str = "label", method: str = "em",
                        bootstrap: int = MIX_BOOTSTRAP, confidence: float = MIX_CONFIDENCE, seed: int = 0,
                        surname_only: bool = False) -> MixEstimate:
    """The language mix of the names in ``ddf[column]`` (a Dask DataFrame), as
    :func:`~namesclf.inference.mix.estimate_mix` gives it for the same names in memory.

    A table of millions of rows is mostly repeats: each partition counts its distinct folded
    surnames, the counts are summed by name across partitions (the distinct names stay spread over
    the cluster), each partition of distinct names is scored by its worker's model (loaded once per
    worker, :func:`worker_predictor`), and only the distinct names' probabilities and counts come
    back here, where the estimate and its resampling run. ``model`` is the model file's path,
    readable by every worker under that name.
    """
    check_mix_method(method)
    if isinstance(model, Predictor):
        raise NamesError("with a Dask DataFrame, pass the model file's path: each worker loads it once "
                         "(a loaded model is not shipped in the task graph)")
    if column not in ddf.columns:
        raise NamesError(f"no column {column!r} (columns: {', '.join(map(str, ddf.columns))})")
    path = str(Path(model).resolve())
    predictor = Predictor.load(path)
    n_labels = len(predictor.labels)
    empty = pd.DataFrame({_KEY: pd.Series(dtype=object), "count": pd.Series(dtype="float64")})
    counted = ddf.map_partitions(_count_partition, column, surname_only, path, meta=empty)
    distinct = counted.groupby(_KEY, sort=False)["count"].sum(split_out=max(1, ddf.npartitions)).reset_index()
    meta = pd.concat([distinct._meta, pd.DataFrame(columns=[f"p{i}" for i in range(n_labels)], dtype="float64")],
                     axis=1)
    table = distinct.map_partitions(_score_partition, path, n_labels, meta=meta).compute()
    named = table[_KEY].astype(str) != ""
    skipped = float(table.loc[~named, "count"].sum())
    table = table[named].sort_values(_KEY, kind="stable")  # the order the cluster returned is not the result's
    return estimate_mix_of(predictor, table[[f"p{i}" for i in range(n_labels)]].to_numpy(np.float64),
                           table["count"].to_numpy(np.float64), level=level, method=method, bootstrap=bootstrap,
                           confidence=confidence, seed=seed, skipped=skipped)


# ----------------------------------------------------------------------------- clusters


#: Seconds to wait for a running scheduler to answer (``names predict --scheduler-timeout``).
SCHEDULER_TIMEOUT = 10.0
#: A Dask scheduler's first message (its handshake) is a few hundred bytes, preceded by its length;
#: a length beyond this is some other service talking.
MAX_HANDSHAKE_BYTES = 1 << 20
SCHEDULER_FORMS = "use local:N, or a scheduler address such as tcp://HOST:8786"


def _scheduler_address(scheduler: str) -> tuple[str, int]:
    """(host, port) of ``tcp://HOST:PORT``; any other form is one line (``tls://`` needs
    certificates this command has no options for, ``inproc://`` exists only inside one process)."""
    scheme, sep, rest = scheduler.partition("://")
    if not sep:
        raise NamesError(f"--scheduler {scheduler}: {SCHEDULER_FORMS}")
    if scheme != "tcp":
        raise NamesError(f"--scheduler {scheduler}: {scheme}:// is not supported; {SCHEDULER_FORMS}")
    host, _, port = rest.rstrip("/").rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise NamesError(f"--scheduler {scheduler}: {SCHEDULER_FORMS} (a host name and a port number)")
    return host, int(port)


def _may_be_handshake(head: bytes) -> bool:
    """Whether ``head`` can start the little-endian length of a handshake of at most
    :data:`MAX_HANDSHAKE_BYTES`: a service that greets with text fails on its first bytes, so it
    is told apart at once instead of after the timeout."""
    return int.from_bytes(head.ljust(8, b"\0"), "little") <= MAX_HANDSHAKE_BYTES


def _expect_scheduler(scheduler: str, timeout: float) -> None:
    """Check that a Dask scheduler listens at ``scheduler`` before the client tries: it must
    accept and then send its handshake's length within ``timeout`` seconds, as a scheduler does at
    once. A closed port, a port that stays silent, or a service that talks first with something
    else (which the client would read as a frame length and try to allocate) are one line each."""
    import socket

    host, port = _scheduler_address(scheduler)
    head = b""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            while len(head) < 8 and _may_be_handshake(head):
                chunk = conn.recv(8 - len(head))
                if not chunk:
                    break
                head += chunk
    except TimeoutError:
        if not head:
            raise NamesError(f"--scheduler {scheduler}: no Dask scheduler answered within {timeout:g} s "
                             "(see --scheduler-timeout)") from None
    except OSError as exc:
        raise NamesError(f"cannot reach the Dask scheduler at {scheduler}: {exc.strerror or first_line(exc)}") from None
    if len(head) < 8 or not _may_be_handshake(head) or head == bytes(8):
        said = f"it answered {head!r}" if head else "it closed the connection without a word"
        raise NamesError(f"--scheduler {scheduler}: the service there is not a Dask scheduler ({said})")


@contextlib.contextmanager
def connect(scheduler: str, quiet: bool = True, timeout: float = SCHEDULER_TIMEOUT) -> Iterator[Any]:
    """A ``distributed.Client`` for ``local:N`` (a ``LocalCluster`` of N one-thread worker
    processes on loopback, shut down on exit) or the address of a running scheduler
    (``tcp://host:8786``), reached within ``timeout`` seconds or one line saying why not."""
    if not scheduler.startswith("local:"):
        _scheduler_address(scheduler)  # a form this command cannot use is one line before dask loads
    require_dask()
    import logging

    import dask
    from distributed import Client, LocalCluster

    if quiet:  # the cluster's own start/stop chatter is not the user's business on the command line
        logging.getLogger("distributed").setLevel(logging.ERROR)
    if scheduler.startswith("local:"):
        try:
            workers = int(scheduler.removeprefix("local:"))
        except ValueError:
            workers = 0
        if workers < 1:
            raise NamesError(f"--scheduler {scheduler}: use local:N with N >= 1 workers, or tcp://HOST:PORT")
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, scheduler_kwargs=LOOPBACK_HTTP) as cluster, \
                Client(cluster) as client, _one_line_worker_deaths():
            yield client
        return
    if not timeout > 0:
        raise NamesError(f"--scheduler-timeout must be a positive number of seconds, not {timeout}")
    _expect_scheduler(scheduler, timeout)
    try:
        with dask.config.set({"distributed.comm.timeouts.connect": f"{timeout}s"}):
            client = Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError, ValueError, TypeError, MemoryError) as exc:
        raise NamesError(f"cannot reach the Dask scheduler at {scheduler}: {first_line(exc)[:200]}") from None
    with client, _one_line_worker_deaths():
        yield client


@contextlib.contextmanager
def _one_line_worker_deaths() -> Iterator[None]:
    """Dask reruns the partitions of a worker that died; when one partition has killed every worker
    that tried it (out of memory, most often), say so in one line rather than a traceback."""
    from distributed import KilledWorker

    try:
        yield
    except KilledWorker as exc:
        raise NamesError(f"a partition killed each of the {exc.allowed_failures + 1} workers that ran it (out of "
                         "memory?): give workers more memory, or write the input with smaller row groups") from None


def read_table_lazy(path: str | Path, threads: int) -> Any:
    """A CSV, TSV or Parquet file (or a folder of Parquet files) as a Dask DataFrame of strings, in
    at least ``PARTITIONS_PER_THREAD * threads`` partitions, in file order.

    Parquet is split by row group (pyarrow writes a million rows to one by default), CSV in 64 MB
    blocks; a table with fewer pieces is cut evenly. Columns keep the dtypes pandas reads (dask
    would make text ``string[pyarrow]``), so the output is the file ``names predict`` writes
    without ``--scheduler``.
    """
    import dask
    import dask.dataframe as dd

    source = Path(path)
    if not source.exists():
        raise NamesError(f"{path}: no such file or folder")
    fmt = "parquet" if source.is_dir() else table_format(path)
    try:
        with dask.config.set({"dataframe.convert-string": False}):
            if fmt == "parquet":
                ddf = dd.read_parquet(str(path), split_row_groups=True)
            else:
                ddf = dd.read_csv(str(path), sep="\t" if fmt == "tsv" else ",", dtype=str, keep_default_na=False,
                                  blocksize="64MB")
    except (OSError, ValueError) as exc:
        raise NamesError(f"{path}: cannot read as {fmt.upper()}: {first_line(exc)}") from None
    wanted = PARTITIONS_PER_THREAD * max(threads, 1)
    return ddf.repartition(npartitions=wanted) if ddf.npartitions < wanted else ddf


def is_dataset_path(path: str | Path) -> bool:
    """Whether ``--output`` names a folder of Parquet files (an existing folder, a trailing ``/``,
    or no suffix) rather than one file."""
    text = str(path)
    return text.endswith(("/", os.sep)) or Path(text).is_dir() or not Path(text).suffix


def part_name(i: int) -> str:
    """Zero-padded, so that listing the folder by name gives the partitions in row order."""
    return f"part.{i:06d}.parquet"


def write_dataset(ddf: Any, path: str | Path) -> Path:
    """Each partition to its own Parquet file in the new folder ``path``, written by the workers
    (``path`` must be reachable from them). The folder is filled beside and renamed into place, so
    a failed run leaves nothing behind; anything already at ``path`` is refused, never replaced
    (:func:`namesclf.files.check_output` says so before the work, and the rename again)."""
    target = Path(path)
    check_output(target, kind="dataset", option="")
    with atomic_folder(target) as tmp:
        ddf.to_parquet(str(tmp), write_index=False, name_function=part_name, write_metadata_file=False)
    return target


def iter_partitions(ddf: Any, client: Any, ahead: int) -> Iterator[pd.DataFrame]:
    """The computed partitions in order, with at most ``ahead`` in flight: the cluster works ahead
    while the caller writes, and memory holds a few partitions, not the table."""
    # one partition's graph per submission (not the whole table's graph, culled, each time)
    parts = (ddf.partitions[i] for i in range(ddf.npartitions))
    pending: deque = deque()
    for part in parts:
        pending.append(client.compute(part))
        if len(pending) >= ahead:
            break
    while pending:
        future = pending.popleft()
        frame = future.result()
        del future  # release it on the cluster
        nxt = next(parts, None)
        if nxt is not None:
            pending.append(client.compute(nxt))
        yield frame


def write_one_file(ddf: Any, client: Any, path: str | Path, ahead: int, language: str = "language",
                   force: bool = True) -> tuple[Path | None, int, int]:
    """The table to one file (Parquet, CSV or TSV by suffix; ``-``: CSV on stdout), partition after
    partition in row order, atomically. Returns the path (None for stdout), the number of rows, and
    how many have no ``language`` (empty or unreadable cells). Without ``force`` an existing file
    is refused, as :func:`~namesclf.inference.tables.write_table` does."""
    fmt = table_format(path)
    rows = empty = 0

    def counted(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        nonlocal rows, empty
        for frame in frames:
            rows += len(frame)
            empty += int(frame[language].isna().sum())
            yield frame

    frames = counted(iter_partitions(ddf, client, ahead))
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.Schema.from_pandas(ddf._meta, preserve_index=False)
        with atomic_open(path, "wb", overwrite=force) as handle, pq.ParquetWriter(handle, schema) as writer:
            for frame in frames:
                writer.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
        return Path(path), rows, empty
    sep = "\t" if fmt == "tsv" else ","
    stdout = str(path) == "-"
    with contextlib.nullcontext(sys.stdout) if stdout else atomic_open(path, "w", overwrite=force) as handle:
        for i, frame in enumerate(frames):
            frame.to_csv(handle, sep=sep, index=False, header=i == 0, lineterminator="\n")
    return (None if stdout else Path(path)), rows, empty
