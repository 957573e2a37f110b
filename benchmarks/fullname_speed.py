"""Batch prediction of full names with a full-name model: ``names predict --input`` on a million
lines, a real process timed from start to exit, on the ONNX exports (no torch imported).

    python -m benchmarks.fullname_speed --model MODEL.pt --people data/wikipedia_people.csv

The lines are ``given surname``, the given names and the surnames drawn separately from the
people table, each Zipf-like by its frequency there: the given name (or surname) of frequency
rank r comes up with probability proportional to ``1 / r``. So most full names are distinct
while their parts repeat, which is what a customer list looks like. Prints the names per second,
the wall time and the peak resident memory, and how many distinct full names, given names and
surnames the lines hold (what the part cache works with).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import load_average
from benchmarks.speed import names_command, timed_process

TARGET_PER_S = 100_000


def zipf_by_frequency(values: pd.Series, n: int, rng: np.random.Generator) -> list[str]:
    """``n`` draws of ``values``'s distinct entries, rank r (most frequent first) with probability ∝ 1/r."""
    counts = values[values != ""].value_counts()
    ranked = counts.index.tolist()
    weights = 1.0 / np.arange(1, len(ranked) + 1)
    return [ranked[i] for i in rng.choice(len(ranked), size=n, p=weights / weights.sum())]


def full_name_lines(people: Path, n: int, seed: int = 0) -> list[str]:
    frame = pd.read_csv(people, dtype=str, keep_default_na=False, usecols=["given", "surname"])
    rng = np.random.default_rng(seed)
    given = zipf_by_frequency(frame["given"], n, rng)
    surname = zipf_by_frequency(frame["surname"], n, rng)
    return [f"{g} {s}" for g, s in zip(given, surname, strict=True)]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--people", type=Path, default=Path("data/wikipedia_people.csv"))
    parser.add_argument("--names", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    lines = full_name_lines(args.people, args.names, args.seed)
    given = {line.rsplit(" ", 1)[0] for line in lines}
    surname = {line.rsplit(" ", 1)[1] for line in lines}
    result: dict[str, Any] = {"names": len(lines), "distinct_full_names": len(set(lines)),
                              "distinct_given": len(given), "distinct_surnames": len(surname),
                              "load_before": load_average()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "names.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        wall, peak = timed_process([names_command(), "predict", "--input", str(path), "--model", args.model,
                                    "--backend", "onnx", "--quiet"])
    result.update({"seconds": round(wall, 2), "names_per_s": round(len(lines) / wall), "peak_mib": round(peak),
                   "load_after": load_average(), "target_per_s": TARGET_PER_S,
                   "pass": len(lines) / wall >= TARGET_PER_S})
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
