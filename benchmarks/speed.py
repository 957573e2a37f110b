"""Prediction as a user meets it: a cold ``names predict NAME`` and ``names predict --input`` on a
million names, each a real process timed from start to exit, on the ONNX export and on torch.

    python -m benchmarks.speed --model models/names.pt              # the rows docs/benchmarks.md reports
    python -m benchmarks.speed --model models/names.pt --names 100000 --repeats 3 --json speed.json
    python -m benchmarks.bench --rows none --speed models/names.pt  # the same rows in the bench report

Rows:

* ``cold start``: ``names predict Dostoevsky``, median wall time and peak RSS of ``--repeats`` runs
  (the whole process: interpreter, imports, model load, answer).
* ``batch, repeated names``: ``--names`` lines drawn from the tutorial's surnames with Zipf-like
  frequencies (rank r drawn with probability proportional to 1/r, a surname list's shape), to CSV.
* ``batch, distinct names``: as many distinct made-up names (the front of one surname joined to
  the back of another), so every line is computed.

The machine should be quiet: it prints the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import load_average, name_lines, print_verdicts, verdicts, write_json

TARGET_COLD_SECONDS = 0.5
TARGET_COLD_MIB = 150
TARGET_REPEATED_PER_S = 200_000
TARGET_DISTINCT_PER_S = 60_000


def names_command() -> str:
    """The ``names`` console script of this interpreter's environment."""
    beside = Path(sys.executable).with_name("names")
    return str(beside) if beside.exists() else (shutil.which("names") or "names")


#: Run by a small interpreter of its own: a child forked from this (large) process would report
#: this process's memory as its own peak (Linux keeps the forked copy's high-water mark).
LAUNCHER = """
import json, os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump([time.perf_counter() - started, usage.ru_maxrss, os.waitstatus_to_exitcode(status)], out)
"""


def timed_process(argv: list[str], stdout: Any = subprocess.DEVNULL) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one process, from its own rusage (``wait4``)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        done = subprocess.run([sys.executable, "-c", LAUNCHER, str(report), *argv], stdout=stdout,
                              stderr=subprocess.PIPE, text=True)
        if done.returncode or not report.exists():
            raise SystemExit(f"benchmarks.speed: {' '.join(argv[:4])}... failed: {done.stderr.strip()[-300:]}")
        wall, peak_kib, code = json.loads(report.read_text())
    if code:
        raise SystemExit(f"benchmarks.speed: {' '.join(argv[:4])}... exited {code}: {done.stderr.strip()[-300:]}")
    return wall, peak_kib / 1024


def surnames(data: Path) -> list[str]:
    """The distinct surnames of ``data``, sorted (the same list whatever the files' order)."""
    return sorted(set(name_lines(data)))


def zipf_lines(names: list[str], n: int, seed: int) -> list[str]:
    """``n`` draws where the surname of rank r comes up with probability proportional to 1/r."""
    rng = np.random.default_rng(seed)
    ranked = [names[i] for i in rng.permutation(len(names))]
    weights = 1.0 / np.arange(1, len(ranked) + 1)
    return [ranked[i] for i in rng.choice(len(ranked), size=n, p=weights / weights.sum())]


def distinct_lines(names: list[str], n: int, seed: int) -> list[str]:
    """``n`` distinct made-up names: the front half of one surname and the back half of another."""
    rng = np.random.default_rng(seed)
    out: dict[str, None] = {}
    while len(out) < n:
        a, b = rng.integers(0, len(names), size=(2, 2 * (n - len(out))))
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            front, back = names[x], names[y]
            out[front[: max(1, len(front) // 2)] + back[len(back) // 2 :].lower()] = None
    return list(out)[:n]


def cold_start(model: str, backend: str, repeats: int) -> dict[str, Any]:
    runs = [timed_process([names_command(), "predict", "Dostoevsky", "--model", model, "--backend", backend])
            for _ in range(repeats)]
    return {"seconds": statistics.median(r[0] for r in runs), "peak_mib": statistics.median(r[1] for r in runs),
            "runs": [round(r[0], 3) for r in runs]}


def batch(model: str, backend: str, path: Path, n: int) -> dict[str, Any]:
    wall, peak = timed_process([names_command(), "predict", "--input", str(path), "--model", model, "--backend",
                                backend, "--quiet"])
    return {"seconds": wall, "names_per_s": n / wall, "peak_mib": peak}


def measure(model: str, data: Path, n: int, repeats: int, backends: tuple[str, ...] = ("onnx", "torch"),
            seed: int = 0) -> dict[str, Any]:
    """Every row on every backend; figures as a dict (see the module docstring)."""
    names = surnames(data)
    out: dict[str, Any] = {"model": model, "names": n, "load_average_start": load_average(), "rows": {}}
    with tempfile.TemporaryDirectory() as tmp:
        files = {"repeated": Path(tmp) / "repeated.txt", "distinct": Path(tmp) / "distinct.txt"}
        files["repeated"].write_text("\n".join(zipf_lines(names, n, seed)) + "\n", encoding="utf-8")
        files["distinct"].write_text("\n".join(distinct_lines(names, n, seed)) + "\n", encoding="utf-8")
        out["distinct_in_repeated"] = len(set(files["repeated"].read_text().split("\n"))) - 1
        for backend in backends:
            out["rows"][f"cold_{backend}"] = cold_start(model, backend, repeats)
            print(f"  cold start ({backend}): {out['rows'][f'cold_{backend}']}", flush=True)
            for kind, path in files.items():
                out["rows"][f"{kind}_{backend}"] = batch(model, backend, path, n)
                print(f"  batch, {kind} names ({backend}): {out['rows'][f'{kind}_{backend}']}", flush=True)
    out["load_average_end"] = load_average()
    return out


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = result["rows"]
    cold, rep, dis = rows.get("cold_onnx"), rows.get("repeated_onnx"), rows.get("distinct_onnx")
    checks = []
    if cold:
        checks.append((f"cold names predict <= {TARGET_COLD_SECONDS} s and <= {TARGET_COLD_MIB} MiB",
                       cold["seconds"] <= TARGET_COLD_SECONDS and cold["peak_mib"] <= TARGET_COLD_MIB,
                       f"{cold['seconds']:.2f} s, {cold['peak_mib']:.0f} MiB"))
    if rep:
        checks.append((f"batch of repeated names >= {TARGET_REPEATED_PER_S:,} names/s",
                       rep["names_per_s"] >= TARGET_REPEATED_PER_S, f"{rep['names_per_s']:,.0f} names/s"))
    if dis:
        checks.append((f"batch of distinct names >= {TARGET_DISTINCT_PER_S:,} names/s",
                       dis["names_per_s"] >= TARGET_DISTINCT_PER_S, f"{dis['names_per_s']:,.0f} names/s"))
    return verdicts(checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a model file written by names train (with its .onnx)")
    parser.add_argument("--data", type=Path, default=Path("data/names"), help="folder of <Language>.txt")
    parser.add_argument("--names", type=int, default=1_000_000, help="lines per batch row (default 1,000,000)")
    parser.add_argument("--repeats", type=int, default=5, help="cold starts per backend (default 5)")
    parser.add_argument("--backends", default="onnx,torch", help="comma-separated (default onnx,torch)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    result = measure(args.model, args.data, args.names, args.repeats, tuple(args.backends.split(",")))
    result["targets"] = targets(result)
    print_verdicts(result["targets"])
    print(f"load average {result['load_average_start']} -> {result['load_average_end']}")
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
