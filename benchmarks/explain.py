"""What `--explain` costs: prediction speed with and without explanations, on each runtime.

The names are the tutorial set's distinct surnames (the reserved slice left out), shuffled with a
fixed seed, the first ``--names`` of them, classified as surnames (the full-name parse costs the
same either way). Each configuration predicts them all ``--repeats`` times in this process, the
configurations taking turns, each round starting one later (models loaded and warmed up first),
and keeps the median; "+ JSON"
also turns every answer into its JSON line, as ``names predict --input FILE --format jsonl`` does.

    python -m benchmarks.explain --model models/names.pt --names 10000 --repeats 5 [--baseline OLD.onnx]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import load_average, name_lines


def surnames(data: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` distinct tutorial surnames, none reserved, in a seeded shuffled order."""
    from namesclf.data.surname_rules import is_reserved

    distinct = sorted({name for name in name_lines(data) if not is_reserved(name)})
    random.Random(seed).shuffle(distinct)
    return distinct[:n]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.explain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/names.pt", help="A model file with its current export beside it.")
    parser.add_argument("--data", default="data/names", help="The tutorial set's folder (one file a language).")
    parser.add_argument("--names", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", default="onnx,torch")
    parser.add_argument("--threads", type=int, default=1, help="Compute threads of either runtime (1: the "
                        "figures depend less on what else the machine runs).")
    parser.add_argument("--baseline", metavar="FILE.onnx", default=None,
                        help="Also time plain prediction on this export (e.g. the same model exported without the "
                             "explanation output), to see what the extra output costs a plain prediction.")
    args = parser.parse_args(argv)

    from namesclf.inference.options import Options
    from namesclf.inference.predictor import Predictor

    names = surnames(Path(args.data), args.names)
    print(f"{len(names):,} distinct tutorial surnames, median of {args.repeats}, {args.threads} thread(s), "
          f"load average at start {load_average()}")
    runs = [("baseline", Predictor.load(args.baseline, threads=args.threads), False)] if args.baseline else []
    for backend in args.backends.split(","):
        predictor = Predictor.load(args.model, backend=backend, threads=args.threads)
        runs += [(backend, predictor, False), (backend, predictor, True)]
    # The full-name parse is left out (surname_only): it costs the same with or without explanations.
    options = {explain: Options(k=3, surname_only=True, explain=explain) for explain in (False, True)}
    for _, predictor, explain in runs:
        predictor.predict_with(names[:100], options[explain])  # warm-up: sessions, lookup tables
    times: dict[int, tuple[list[float], list[float]]] = {i: ([], []) for i in range(len(runs))}
    for repeat in range(args.repeats):
        # Interleaved, each round starting one configuration later: a change in the machine's load,
        # or whatever the first of a round pays, falls on every row alike.
        for i in [*range(len(runs))][repeat % len(runs):] + [*range(len(runs))][: repeat % len(runs)]:
            _, predictor, explain = runs[i]
            start = time.perf_counter()
            answers = predictor.predict_with(names, options[explain])
            middle = time.perf_counter()
            lines = [json.dumps(p.to_dict()) for p in answers]
            times[i][0].append(middle - start)
            times[i][1].append(time.perf_counter() - start)
            assert len(lines) == len(names)
    print(f"{'backend':8} {'explain':8} {'predict names/s':>16} {'+ JSON names/s':>15}")
    for i, (backend, _, explain) in enumerate(runs):
        plain, with_json = (statistics.median(t) for t in times[i])
        print(f"{backend:8} {explain!s:8} {len(names) / plain:16,.0f} {len(names) / with_json:15,.0f}")
    print(f"load average at end {load_average()}")


if __name__ == "__main__":
    main()
