"""What `--explain` costs: prediction speed with and without explanations, on each runtime.

The names are the tutorial set's distinct surnames (the reserved slice left out), shuffled with a
fixed seed, the first ``--names`` of them. Each configuration predicts them all ``--repeats``
times in this process (model loaded and warmed up first) and keeps the median; "+ JSON" also
turns every answer into its JSON line, as ``names predict --input FILE --format jsonl`` does.

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

from benchmarks.common import name_lines


def surnames(data: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` distinct tutorial surnames, none reserved, in a seeded shuffled order."""
    from namesclf.data.wikipedia import is_reserved

    distinct = sorted({name for name in name_lines(data) if not is_reserved(name)})
    random.Random(seed).shuffle(distinct)
    return distinct[:n]


def timed(run: object, repeats: int) -> float:
    """The median wall time of ``repeats`` calls of ``run``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.explain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/names.pt", help="A model file with its current export beside it.")
    parser.add_argument("--data", default="data/names", help="The tutorial set's folder (one file a language).")
    parser.add_argument("--names", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", default="onnx,torch")
    parser.add_argument("--threads", type=int, default=1, help="Compute threads of either runtime (1: the "
                        "figures do not depend on what else the machine runs).")
    parser.add_argument("--baseline", metavar="FILE.onnx", default=None,
                        help="Also time plain prediction on this export (e.g. the same model exported without the "
                             "explanation output), to see what the extra output costs a plain prediction.")
    args = parser.parse_args(argv)

    from namesclf.inference.options import Options
    from namesclf.inference.predictor import Predictor

    names = surnames(Path(args.data), args.names)
    print(f"{len(names):,} distinct tutorial surnames, median of {args.repeats}, {args.threads} thread(s)")
    print(f"{'backend':8} {'explain':8} {'predict names/s':>16} {'+ JSON names/s':>15}")
    runs = [("baseline", args.baseline, (False,))] if args.baseline else []
    runs += [(backend, args.model, (False, True)) for backend in args.backends.split(",")]
    for backend, model, explains in runs:
        predictor = Predictor.load(model, backend="auto" if backend == "baseline" else backend, threads=args.threads)
        for explain in explains:
            options = Options(k=3, explain=explain)
            predictor.predict_with(names[:100], options)  # warm-up: sessions, lookup tables

            def predict(options: Options = options, predictor: Predictor = predictor) -> object:
                return predictor.predict_with(names, options)

            def with_json(options: Options = options, predictor: Predictor = predictor) -> object:
                return [json.dumps(p.to_dict()) for p in predictor.predict_with(names, options)]

            plain, lines = timed(predict, args.repeats), timed(with_json, args.repeats)
            print(f"{backend:8} {explain!s:8} {len(names) / plain:16,.0f} {len(names) / lines:15,.0f}")


if __name__ == "__main__":
    main()
