"""Mean and spread of `names train` over several seeds (split and training both seeded).

Each seed is a different grouped split, so the spread shows how much of a difference between two
settings is noise: macro-F1 moves by several points between splits because the smallest
languages have only 5-10 test names. The single-language figures leave out the names listed under
several languages (see `names evaluate`); log-loss and ECE say how well calibrated the
probabilities are.

    python -m benchmarks.seeds data/names --seeds 0 1 2 -- --model handbuilt
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import split_at_dashes


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.seeds", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("train_args", nargs="*", help="extra `names train` options, after --")
    ours, train_args = split_at_dashes(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(ours)
    args.train_args += train_args
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            out = Path(tmp) / f"seed{seed}.pt"
            cmd = [sys.executable, "-m", "namesclf", "train", args.data, "--seed", str(seed), "--out", str(out),
                   "--quiet", "--json", "--no-export", *args.train_args]
            result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            rows.append(result)
            print(f"seed {seed}: accuracy {result['test_accuracy']:.4f}  macro-F1 {result['test_macro_f1']:.4f}  "
                  f"balanced accuracy {result['test_balanced_accuracy']:.4f}  "
                  f"{result['train_seconds']:.1f}s  (best epoch {result['best_epoch']}; single-language names "
                  f"{result['test_accuracy_single']:.4f} / {result['test_macro_f1_single']:.4f}; log-loss "
                  f"{result['test_log_loss']:.4f}, ECE {result['test_ece']:.4f}, temperature "
                  f"{result['valid'].get('temperature', '-')})", flush=True)
    for key in ("test_accuracy", "test_macro_f1", "test_balanced_accuracy", "train_seconds", "test_accuracy_single",
                "test_macro_f1_single", "test_log_loss", "test_ece"):
        values = [r[key] for r in rows]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{key:>20}: mean {statistics.mean(values):.4f}  sd {spread:.4f}")


if __name__ == "__main__":
    main()
