"""Epoch time of `names train` in one process (all cores as threads) against `--nproc N` processes
(one thread each), run after one another in one go so both see the same machine, and the test
figures each reaches. The two train the same model: each step's batch is split across the ranks.

    python -m experiments.scale_train data/wikipedia.csv --epochs 2                 # the measurement
    python -m experiments.scale_train data/wikipedia.csv --sample 40000 --epochs 1  # a quick look
    python -m experiments.scale_train data/names --repeats 2 -- --model handbuilt   # names train options after --

Epoch seconds are the model file's per-epoch `seconds` (training and validation), the mean over
the epochs of a run; the ratio is one process's over N processes' (above 1: N processes are faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.common import split_at_dashes


def one_run(data: str, out: Path, nproc: int, threads: int, epochs: int, train_args: list[str]) -> dict:
    """Train once; the epoch seconds from the model file and the test figures from `--json`."""
    cmd = [sys.executable, "-m", "namesclf", "train", data, "--seed", "0", "--epochs", str(epochs),
           "--patience", "0", "--out", str(out), "--force", "--quiet", "--json", *train_args]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    history = torch.load(out, weights_only=True)["meta"]["history"]
    return {"epoch_seconds": statistics.mean(h["seconds"] for h in history),
            "test_accuracy": summary["test_accuracy"], "test_macro_f1": summary["test_macro_f1"]}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.scale_train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads of the single process (default: every core)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each, alternating")
    parser.add_argument("--sample", type=int, default=0, help="train on this many random rows of a CSV (0: all)")
    ours, train_args = split_at_dashes(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(ours)
    runs: dict[str, list[dict]] = {"1 process": [], f"{args.nproc} processes": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if args.sample:
            import pandas as pd

            data = str(Path(tmp) / "sample.csv")
            pd.read_csv(args.data).sample(args.sample, random_state=0).to_csv(data, index=False)
        for _ in range(args.repeats):
            runs["1 process"].append(one_run(data, Path(tmp) / "one.pt", 1, args.threads, args.epochs, train_args))
            runs[f"{args.nproc} processes"].append(one_run(data, Path(tmp) / "many.pt", args.nproc, 1, args.epochs,
                                                           train_args))
    rows = {}
    for arm, results in runs.items():
        rows[arm] = {key: statistics.mean(r[key] for r in results) for key in results[0]}
        rows[arm]["runs"] = [round(r["epoch_seconds"], 2) for r in results]
    one, many = rows.values()
    print(json.dumps({"data": args.data, "sample": args.sample, "epochs": args.epochs, "train_args": train_args,
                      "single_threads": args.threads, **rows,
                      "ratio": round(one["epoch_seconds"] / many["epoch_seconds"], 3)}, indent=2))


if __name__ == "__main__":
    main()
