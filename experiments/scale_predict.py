"""Batch prediction of a big table, one process against a local Dask cluster (docs/scale.md).

    python -m experiments.scale_predict --model models/wikipedia.pt --rows 10000000 --workers 2

Builds a table of ``--rows`` people whose surnames are drawn with realistic repetition: the
distinct surnames of the corpus (``--source``, the Wikipedia corpus by default), ranked by how
many people carry them, the r-th drawn with probability proportional to ``1 / r ** --zipf`` (real
surname frequencies fall off about so). The table is written once as Parquet (a million rows to a
row group, so the cluster gets one partition per million rows) and reused from ``--table``.

Each configuration then runs in a fresh process, so its peak memory is its own, end to end as a
user would run it (read the file, classify, write one Parquet file in row order):

- ``single``: ``predict_frame`` on the whole table in one process (torch's default threads);
- ``local:N``: the same on a ``LocalCluster`` of N one-thread worker processes, the path of
  ``names predict --scheduler local:N``;
- with ``-nodedup``: every row classified, not each distinct surname once (what the
  de-duplication saves).

Prints, per configuration: seconds (and how many of them starting the cluster took), rows/s, and
the peak resident memory of the process (the client, for the cluster) and of each worker.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

COLUMN = "last_name"
ROW_GROUP = 1_000_000


def build_table(source: Path, rows: int, zipf: float, seed: int, out: Path) -> dict[str, Any]:
    """The Zipf-drawn table at ``out``, and how repetitive it is."""
    from namesclf.data.dataset import load_names

    raw = pd.read_csv(source, dtype=str, keep_default_na=False) if source.is_file() else None
    if raw is not None and "count" in raw:  # the Wikipedia corpus: people per (surname, language)
        counts = raw.assign(count=pd.to_numeric(raw["count"])).groupby("name")["count"].sum()
    else:
        counts = load_names(source).frame["name"].value_counts()
    rng = np.random.default_rng(seed)
    # rank by frequency in the corpus, ties in random order
    ranked = counts.sample(frac=1.0, random_state=seed).sort_values(ascending=False, kind="stable").index
    weights = 1.0 / np.arange(1, len(ranked) + 1) ** zipf
    drawn = rng.choice(len(ranked), size=rows, p=weights / weights.sum())
    table = pd.DataFrame({"person_id": np.arange(rows, dtype=np.int64), COLUMN: ranked.to_numpy()[drawn]})
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out, index=False, row_group_size=ROW_GROUP)
    per_part = [len(np.unique(drawn[i : i + ROW_GROUP])) for i in range(0, rows, ROW_GROUP)]
    return {"rows": rows, "corpus_surnames": len(ranked), "distinct": len(np.unique(drawn)),
            "distinct_per_partition": float(np.mean(per_part))}


def predict_every_row(part: pd.DataFrame, column: str, model: str, options: Any) -> pd.DataFrame:
    """A partition with every row classified (no de-duplication), in the output's exact dtypes."""
    from namesclf.inference.dask_tables import worker_predictor
    from namesclf.inference.output import output_row
    from namesclf.inference.tables import output_dtypes

    predictor = worker_predictor(model)
    n = len(predictor.labels)
    dtypes = output_dtypes(options, n)
    texts = [v if isinstance(v, str) else "" for v in part[column].tolist()]
    rows = []
    for start in range(0, len(texts), 65536):
        rows += [output_row(p, options, n) for p in predictor.predict_with(texts[start : start + 65536], options,
                                                                           strict=False)]
    added = pd.DataFrame(rows, columns=list(dtypes)).astype(dtypes)
    added.index = part.index
    return pd.concat([part, added], axis=1)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def run_one(config: str, table: Path, model: str, out: Path) -> dict[str, Any]:
    """One configuration, in this (fresh) process."""
    from namesclf.inference.options import Options
    from namesclf.inference.tables import predict_frame, read_table, write_table

    dedup = not config.endswith("-nodedup")
    scheduler = config.removesuffix("-nodedup")
    options = Options(k=1)
    start = time.perf_counter()
    if scheduler == "single":
        frame = read_table(table)
        if dedup:
            result = predict_frame(frame, COLUMN, model, k=options.k)
        else:
            result = pd.concat([predict_every_row(frame.iloc[i : i + ROW_GROUP], COLUMN, str(Path(model).resolve()),
                                                  options) for i in range(0, len(frame), ROW_GROUP)])
        write_table(result, out)
        rows, workers, startup = len(result), [], 0.0
    else:
        from namesclf.inference.dask_tables import connect, read_table_lazy, write_one_file

        with connect(scheduler) as client:
            startup = time.perf_counter() - start
            threads = sum(client.nthreads().values())
            ddf = read_table_lazy(table, threads)
            if dedup:
                result = predict_frame(ddf, COLUMN, model, k=options.k)
            else:
                meta = predict_frame(ddf._meta, COLUMN, model, k=options.k)
                result = ddf.map_partitions(predict_every_row, COLUMN, str(Path(model).resolve()), options, meta=meta)
            _, rows, _ = write_one_file(result, client, out, ahead=2 * threads)
            workers = sorted(client.run(peak_mb).values())
    seconds = time.perf_counter() - start
    return {"config": config, "rows": rows, "seconds": seconds, "startup": startup, "rows_per_s": rows / seconds,
            "peak_mb": peak_mb(), "worker_peak_mb": workers}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.scale_predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--source", type=Path, default=Path("data/wikipedia.csv"),
                        help="the corpus whose surnames are drawn (a names folder or CSV)")
    parser.add_argument("--zipf", type=float, default=1.0, help="the exponent of the rank-frequency law")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--configs", default="single,local,single-nodedup,local-nodedup",
                        help="which to run, in order; 'local' is local:--workers")
    parser.add_argument("--table", type=Path, default=None,
                        help="where the table is kept between runs [default: /tmp/names-scale-ROWS.parquet]")
    parser.add_argument("--run", default=None, help=argparse.SUPPRESS)  # one configuration, in a child process
    parser.add_argument("--build", action="store_true", help=argparse.SUPPRESS)  # the table, in a child process
    args = parser.parse_args(argv)
    table = args.table or Path(f"/tmp/names-scale-{args.rows}-zipf{args.zipf}-seed{args.seed}.parquet")
    out = table.with_name(table.stem + ".out.parquet")
    stats_file = table.with_suffix(".json")
    if args.run:
        print(json.dumps(run_one(args.run, table, args.model, out)))
        return
    if args.build:
        stats_file.write_text(json.dumps(build_table(args.source, args.rows, args.zipf, args.seed, table)))
        return
    # The children find this module as the parent did: same working directory, same environment.
    child = [sys.executable, "-m", "experiments.scale_predict", "--model", args.model, "--rows", str(args.rows),
             "--source", str(args.source), "--zipf", str(args.zipf), "--seed", str(args.seed), "--table", str(table)]
    if not (table.exists() and stats_file.exists()):
        # In a child too: Linux counts a parent's peak memory at fork into the child's own peak, so a
        # parent that had held the drawn table would inflate every configuration's figure.
        subprocess.run([*child, "--build"], check=True)
    stats = json.loads(stats_file.read_text())
    print(f"{stats['rows']:,} rows, {stats['distinct']:,} distinct surnames of {stats['corpus_surnames']:,} "
          f"(Zipf exponent {args.zipf}), {stats['distinct_per_partition']:,.0f} distinct per "
          f"{min(ROW_GROUP, stats['rows']):,}-row partition", flush=True)
    print(f"{'config':<16} {'seconds':>8} {'of which start':>14} {'rows/s':>10} {'peak MB':>8}  worker peak MB",
          flush=True)
    for config in args.configs.split(","):
        config = config.replace("local", f"local:{args.workers}", 1) if config.startswith("local") else config
        proc = subprocess.run([*child, "--run", config], capture_output=True, text=True)
        if proc.returncode:
            print(f"{config:<16} failed: {proc.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        workers = ", ".join(f"{m:,.0f}" for m in r["worker_peak_mb"]) or "-"
        print(f"{r['config']:<16} {r['seconds']:>8.1f} {r['startup']:>14.1f} {r['rows_per_s']:>10,.0f} "
              f"{r['peak_mb']:>8,.0f}  {workers}", flush=True)


if __name__ == "__main__":
    main()
