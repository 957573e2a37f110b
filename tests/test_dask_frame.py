"""Whole tables on Dask: ``predict_frame`` given a Dask DataFrame, and ``names predict --scheduler``.

One two-worker ``LocalCluster`` of real processes on loopback serves the module. The cluster's
answer must match one process's, row for row (float cells up to the rounding of different batch
shapes), including duplicates, empty and missing cells and names that fold to nothing; a worker
killed mid-run must be retried without losing or repeating rows; each worker must load the model
once. Without ``--scheduler`` dask is never imported, and without dask ``--scheduler`` says what to
install.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from namesclf import predict_frame
from namesclf.cli.main import cli
from namesclf.errors import NamesError
from namesclf.inference import dask_tables as dask_frame
from namesclf.inference.predictor import Predictor

from .conftest import REPO, TINY

dd = pytest.importorskip("dask.dataframe", reason="dask is the optional extra namesclf[scale]")
distributed = pytest.importorskip("distributed", reason="dask is the optional extra namesclf[scale]")

OPTIONS = {"k": 2, "coverage": 0.9, "abstain": True}
#: Cells that must survive the trip: a full name, non-ASCII, apostrophes, names that fold to
#: nothing, empty and missing cells; repeated many times in shuffled order.
CELLS = [*[n for names in TINY.values() for n in names], "Fyodor Ivanov", "Ślusàrski", "O'Brien", "Достоевский",
         "123", "!!!", "", None]


@pytest.fixture(scope="module")
def model(small_model: Path) -> Path:
    """The small pooled classifier with its calibration (prediction sets and abstention work)."""
    return small_model


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, scheduler_kwargs=dask_frame.LOOPBACK_HTTP) as cluster, \
            distributed.Client(cluster) as c:
        c.wait_for_workers(2, timeout=60)
        yield c


def table(rows: int = 3000, seed: int = 0) -> pd.DataFrame:
    """``rows`` people drawn from :data:`CELLS`, under a shuffled index that is not 0..n-1."""
    rng = np.random.default_rng(seed)
    last = [CELLS[i] for i in rng.integers(0, len(CELLS), rows)]
    return pd.DataFrame({"person": np.arange(rows), "last": last}, index=rng.permutation(rows) * 3 + 7)


def assert_same(cluster: pd.DataFrame, single: pd.DataFrame) -> None:
    """Identical rows, index, columns and dtypes; floats to 1e-6, since partitions batch the names
    differently and a matrix product's rounding depends on its shape."""
    pd.testing.assert_frame_equal(cluster, single, check_exact=False, rtol=0, atol=1e-6)


def test_the_cluster_gives_the_single_process_table_and_loads_the_model_once_per_worker(
        model: Path, client: distributed.Client) -> None:
    frame = table()
    ddf = dd.from_pandas(frame, npartitions=6, sort=False)
    lazy = predict_frame(ddf, "last", str(model), **OPTIONS)
    assert isinstance(lazy, dd.DataFrame) and lazy.npartitions == 6
    out = lazy.compute()
    single = predict_frame(ddf.compute(), "last", Predictor.load(str(model)), **OPTIONS)
    assert_same(out, single)
    assert list(out.index) == list(frame.index) and list(out["person"]) == list(frame["person"])
    assert out.dtypes.equals(lazy._meta.dtypes)  # the meta is exact
    assert out["language"].isna().sum() == frame["last"].isin(["123", "!!!", "", None]).sum() > 0
    assert out["language"].notna().sum() > 0
    # six partitions, at most one load per worker; the model on one thread in each that loaded
    seen = list(client.run(worker_state).values())
    assert {loads for loads, _ in seen} <= {0, 1} and sum(loads for loads, _ in seen) >= 1, seen
    assert all(threads == [("onnx", 1)] for loads, threads in seen if loads), seen


def worker_state() -> tuple[int, list[tuple[str, int]]]:
    """In a worker: how many times it loaded a model, and each loaded model's backend and threads."""
    threads = [(p.backend, p.scorer.session.get_session_options().intra_op_num_threads)
               for p in dask_frame._PREDICTORS.values()]
    return dask_frame.loads, threads


def kill_once(part: pd.DataFrame, markers: str, partition_info: dict | None = None) -> pd.DataFrame:
    """Kill this worker's process the first time partition 3 gets here (after its prediction)."""
    if partition_info is not None and partition_info["number"] == 3:
        marker = Path(markers) / "killed"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
    return part


def test_a_worker_killed_mid_run_is_retried_and_no_row_is_lost_or_repeated(
        model: Path, client: distributed.Client, tmp_path: Path) -> None:
    frame = table(2400, seed=1)
    ddf = dd.from_pandas(frame, npartitions=6, sort=False)
    lazy = predict_frame(ddf, "last", str(model), **OPTIONS)
    before = set(client.scheduler_info()["workers"])
    out = lazy.map_partitions(kill_once, str(tmp_path), meta=lazy._meta).compute()
    assert (tmp_path / "killed").exists()  # the kill happened
    assert set(client.scheduler_info()["workers"]) != before  # and a worker was replaced
    assert_same(out, predict_frame(ddf.compute(), "last", Predictor.load(str(model)), **OPTIONS))
    assert out.index.is_unique and len(out) == len(frame)


def always_kill(part: pd.DataFrame) -> pd.DataFrame:
    os._exit(1)


def test_a_partition_that_kills_every_worker_is_one_line(client: distributed.Client) -> None:
    ddf = dd.from_pandas(table(10), npartitions=1)
    allowed = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
    client.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler, "allowed_failures", 0))
    try:
        with pytest.raises(NamesError, match=r"^a partition killed each of the 1 workers that ran it \(out of"), \
                dask_frame.connect(client.scheduler.address) as other:
            other.compute(ddf.map_partitions(always_kill, meta=ddf._meta)).result()
    finally:
        client.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler, "allowed_failures", allowed))
    client.wait_for_workers(2, timeout=60)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["predict", *args])
    return result.exit_code, result.stdout, result.stderr


def test_the_command_on_a_running_cluster_writes_one_file_or_a_folder(
        model: Path, client: distributed.Client, tmp_path: Path) -> None:
    src = tmp_path / "people.parquet"
    table(2000, seed=2).reset_index(drop=True).to_parquet(src, index=False, row_group_size=300)
    common = ["--model", str(model), "--input", str(src), "--column", "last", "-k", "2", "--abstain"]
    code, _, err = run(*common, "--output", str(tmp_path / "single.parquet"))
    assert code == 0, err
    single = pd.read_parquet(tmp_path / "single.parquet")
    address = client.scheduler.address
    for output in ("one.parquet", "folder/", "one.csv"):
        code, _, err = run(*common, "--output", str(tmp_path / output), "--scheduler", address)
        assert code == 0, err
        assert "wrote" in err
        if output.endswith(".csv"):
            back = pd.read_csv(tmp_path / output, dtype={"last": str}, keep_default_na=False, na_values=[""])
            assert list(back["language"].fillna("")) == list(single["language"].fillna(""))
            assert np.allclose(back["probability"].fillna(-1), single["probability"].fillna(-1), atol=1e-5)
            continue
        if output.endswith("/"):  # a file per partition, named so that their order is the rows' order
            assert sorted(os.listdir(tmp_path / output))[:2] == ["part.000000.parquet", "part.000001.parquet"]
        assert_same(pd.read_parquet(tmp_path / output), single)
    code, out, err = run(*common, "--scheduler", address)  # no --output: CSV on stdout
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("person,last,language,probability,language_2") and len(lines) == 2001
    assert [line.split(",")[0] for line in lines[1:]] == [str(i) for i in range(2000)]


def test_the_documented_command_on_a_local_cluster(model: Path, tmp_path: Path) -> None:
    src = tmp_path / "big.parquet"
    frame = table(500, seed=3).reset_index(drop=True)
    frame.to_parquet(src, index=False)
    out = tmp_path / "out.parquet"
    code, _, err = run("--model", str(model), "--input", str(src), "--column", "last", "--output", str(out),
                       "--scheduler", "local:1")
    assert code == 0, err
    assert err.strip().splitlines()[-1] == f"wrote {out} (500 rows)"
    assert_same(pd.read_parquet(out), predict_frame(pd.read_parquet(src), "last", str(model), k=3))


def test_without_scheduler_dask_is_never_imported_and_without_dask_one_line_says_what_to_install(
        model: Path, tmp_path: Path) -> None:
    """One real process: the table without --scheduler, then dask made unimportable and --scheduler."""
    src = tmp_path / "people.csv"
    table(20).to_csv(src, index=False)
    code = ("import sys\nimport namesclf, namesclf.inference.tables\nfrom namesclf.cli import main\n"
            f"common = ['names', 'predict', '--model', {str(model)!r}, '--input', {str(src)!r}, '--column', 'last']\n"
            "sys.argv = [*common, '-q']\n"
            "try:\n    main()\nexcept SystemExit as done:\n    assert not done.code, done.code\n"
            "print('dask' in sys.modules, 'distributed' in sys.modules, file=sys.stderr, flush=True)\n"
            "sys.modules['dask'] = sys.modules['distributed'] = None\n"
            "sys.argv = [*common, '--scheduler', 'local:2']\n"
            "main()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stdout.splitlines()) == 21  # the table, on stdout
    assert proc.stderr.strip().splitlines() == ["False False",
                                                "Error: --scheduler needs dask: pip install 'namesclf[scale]'"]


def test_bad_schedulers_models_and_columns_are_one_line_errors(model: Path, tmp_path: Path) -> None:
    src = tmp_path / "people.csv"
    table(20).to_csv(src, index=False)
    for scheduler, message in (("local:0", "use local:N with N >= 1"), ("somewhere", "use local:N, or a scheduler")):
        code, _, err = run("--model", str(model), "--input", str(src), "--column", "last", "--scheduler", scheduler)
        assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run("--model", str(model), "--input", "-", "--column", "last", "--scheduler", "local:1")
    assert code == 2 and "--scheduler goes with --input FILE --column COL" in err
    with pytest.raises(NamesError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"), \
            dask_frame.connect("tcp://127.0.0.1:9", timeout=1):
        pass
    ddf = dd.from_pandas(table(20), npartitions=2)
    with pytest.raises(NamesError, match="pass the model file's path"):
        predict_frame(ddf, "last", Predictor.load(str(model)))
    with pytest.raises(NamesError, match=r"no column 'surname' in the table \(its columns: person, last\)"):
        predict_frame(ddf, "surname", str(model))
    with pytest.raises(NamesError, match="the prior: unknown language"):  # before any worker runs
        predict_frame(ddf, "last", str(model), prior={"Klingon": 1.0})


def listening(mode: str) -> tuple[socket.socket, threading.Event]:
    """A TCP server on a free loopback port that is not a Dask scheduler: ``silent`` accepts and
    never says a word, ``speaks`` greets first as many services do. The event is set once it has
    accepted a connection."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted = threading.Event()

    def serve() -> None:
        held = []
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed by the test
                return
            held.append(conn)
            if mode == "speaks":
                conn.sendall(b"HELLO\r\n")
            accepted.set()

    threading.Thread(target=serve, daemon=True).start()
    return server, accepted


def test_what_is_not_a_dask_scheduler_is_one_line_within_the_timeout(tmp_path: Path) -> None:
    """A port that accepts and stays silent, a service that speaks first (which the Dask client
    would read as a frame length of exabytes), a closed port and schemes this command cannot use
    are each one line, before any model is read; the silent one is given up after the timeout."""
    src = tmp_path / "people.csv"
    table(20).to_csv(src, index=False)
    silent, silent_accepted = listening("silent")
    speaks, speaks_accepted = listening("speaks")
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    cases = [
        (silent, "no Dask scheduler answered within 1 s (see --scheduler-timeout)"),
        (speaks, "the service there is not a Dask scheduler (it answered b'HELLO\\r\\n')"),
        (f"tcp://127.0.0.1:{closed_port}", f"cannot reach the Dask scheduler at tcp://127.0.0.1:{closed_port}: "),
        ("tls://127.0.0.1:8786", "tls:// is not supported; use local:N, or a scheduler address such as tcp://"),
        ("inproc://127.0.0.1/1/1", "inproc:// is not supported"),
        ("ws://127.0.0.1:8786", "ws:// is not supported"),
        ("tcp://127.0.0.1", "(a host name and a port number)"),
        ("tcp://127.0.0.1:99999", "(a host name and a port number)"),
    ]
    try:
        for where, message in cases:
            address = where if isinstance(where, str) else f"tcp://127.0.0.1:{where.getsockname()[1]}"
            code, _, err = run("--model", str(tmp_path / "never-read.pt"), "--input", str(src), "--column", "last",
                               "--scheduler", address, "--scheduler-timeout", "1")
            assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (address, err)
            assert err.startswith("Error: ") and message in err, (address, err)
        assert silent_accepted.is_set() and speaks_accepted.is_set()
    finally:
        silent.close()
        speaks.close()
    code, _, err = run("--model", str(tmp_path / "m.pt"), "--input", str(src), "--column", "last",
                       "--scheduler", "tcp://127.0.0.1:1", "--scheduler-timeout", "soon")
    assert code == 1 and err == "Error: --scheduler-timeout must be a number, not 'soon'\n"


# ----------------------------------------------------------------------------- the mix of a column


def test_the_mix_of_a_column_on_the_cluster_is_the_in_memory_estimate(model: Path, client: distributed.Client) -> None:
    """Counted per partition, summed by name across partitions, scored on the workers: the same
    estimate and the same resampled intervals as ``estimate_mix`` on the same names in memory."""
    from namesclf.inference.mix import estimate_mix

    frame = table(4000, seed=5)
    ddf = dd.from_pandas(frame, npartitions=5, sort=False)
    names = [n for n in frame["last"] if isinstance(n, str) and n.strip()]
    predictor = Predictor.load(str(model))
    for level, method in (("label", "em"), ("group", "cc")):
        cluster = dask_frame.estimate_dask_frame(ddf, "last", str(model), level=level, method=method, bootstrap=40,
                                                 seed=3)
        single = estimate_mix(predictor, names, level=level, method=method, bootstrap=40, seed=3)
        assert cluster.labels == single.labels and cluster.n == single.n and cluster.skipped == single.skipped > 0
        assert cluster.model_error and single.model_error
        for got, want in zip((cluster.share, cluster.low, cluster.high), (single.share, single.low, single.high),
                             strict=True):
            np.testing.assert_allclose(got, want, atol=1e-6)
    with pytest.raises(NamesError, match="no column 'first'"):
        dask_frame.estimate_dask_frame(ddf, "first", str(model))
    with pytest.raises(NamesError, match="pass the model file's path"):
        dask_frame.estimate_dask_frame(ddf, "last", predictor)


def test_names_estimate_on_a_local_cluster_prints_the_in_memory_answer(model: Path, tmp_path: Path) -> None:
    import json

    src = tmp_path / "big.parquet"
    table(1500, seed=6).reset_index(drop=True).to_parquet(src, index=False, row_group_size=400)
    common = ["estimate", "--model", str(model), "--input", str(src), "--column", "last", "--json",
              "--bootstrap", "30", "--level", "region"]
    single = CliRunner().invoke(cli, common)
    assert single.exit_code == 0, single.output
    cluster = CliRunner().invoke(cli, [*common, "--scheduler", "local:1"])
    assert cluster.exit_code == 0, cluster.output
    a, b = json.loads(single.stdout), json.loads(cluster.stdout)
    assert a["n"] == b["n"] and a["skipped"] == b["skipped"] and a["intervals"] == b["intervals"]
    for x, y in zip(a["mix"], b["mix"], strict=True):
        assert x == pytest.approx(y, abs=1e-6)
    wrong = CliRunner().invoke(cli, ["estimate", "--model", str(model), "--input", str(src), "--scheduler", "local:1"])
    assert wrong.exit_code != 0 and "--scheduler goes with --input FILE --column COL" in wrong.output
