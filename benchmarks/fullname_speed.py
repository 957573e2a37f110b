"""Batch prediction of full names with a full-name model: ``names predict --input`` on a million
lines, a real process timed from start to exit, on the ONNX exports (no torch imported).

    python -m benchmarks.fullname_speed --model MODEL.pt --people data/wikipedia_people.csv

The lines are ``given surname``, the given names and the surnames drawn separately from the
people table, each Zipf-like by its frequency there: the given name (or surname) of frequency
rank r comes up with probability proportional to ``1 / r``. So most full names are distinct
while their parts repeat, which is what a customer list looks like. Prints the names per second,
the wall time and the peak resident memory, and how many distinct full names, given names and
surnames the lines hold (what the part cache works with).

    python -m benchmarks.fullname_speed --parse-agreement 100000 --people data/wikipedia_people.csv

measures the parser's fast path instead: of that many distinct full names of the people table
(drawn at random, seeded), how many :func:`~namesclf.data.fullnames.split_many` answers from its
words' bits alone, and how many of those get the very ``(given, surname)`` nameparser's reading
(:func:`~namesclf.data.fullnames.parse_name`) gives.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import load_average, write_json
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


def parse_agreement(people: Path, sample: int, seed: int = 0) -> dict[str, Any]:
    """The fast path's share of ``sample`` distinct full names and its agreement with nameparser."""
    from namesclf.data import fullnames

    frame = pd.read_csv(people, dtype=str, keep_default_na=False, usecols=["name"])
    names = sorted(set(frame["name"]) - {""})
    rng = np.random.default_rng(seed)
    names = [names[i] for i in sorted(rng.choice(len(names), size=min(sample, len(names)), replace=False))]
    slow: list[str] = []
    original = fullnames.split_name
    fullnames.split_name = lambda text, order="auto": (slow.append(text), original(text, order))[1]
    try:
        givens, surnames = fullnames.split_many(names)
    finally:
        fullnames.split_name = original
    off = set(slow)
    fast = [(n, g, s) for n, g, s in zip(names, givens, surnames, strict=True) if n not in off]
    agree = sum((parsed := fullnames.parse_name(n)).given == g and parsed.surname == s for n, g, s in fast)
    return {"names": len(names), "fast_path": len(fast), "fast_share": round(len(fast) / max(1, len(names)), 4),
            "agree_with_nameparser": agree, "disagree": len(fast) - agree}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--people", type=Path, default=Path("data/wikipedia_people.csv"))
    parser.add_argument("--names", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--parse-agreement", type=int, default=0, metavar="N",
                        help="measure the parser's fast path on N distinct people instead of the speed")
    args = parser.parse_args(argv)
    if args.parse_agreement:
        result = parse_agreement(args.people, args.parse_agreement, args.seed)
        print(json.dumps(result, indent=2))
        return result
    if args.model is None:
        parser.error("--model is required (unless --parse-agreement)")
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
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
