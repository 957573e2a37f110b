"""The project against the PyTorch tutorial and the peers, side by side, in one process and one split.

    python -m benchmarks.bench                     # the full run
    python -m benchmarks.bench --quick             # 1 repeat, 20,000 tutorial steps, 4 epochs per model
    python -m benchmarks.bench --rows tutorial,handbuilt --repeats 5 --out tutorial.json
    python -m benchmarks.bench --rows none --serve models/names.pt   # the HTTP server alone
    python -m benchmarks.bench --rows none --speed models/names.pt   # cold start and batch CLI

How long each takes on which machine: docs/benchmarks.md, beside the figures.

Why one script and one process: figures taken on different days, splits or thread settings are
not comparable, and the comparisons this project makes (the batched hand-built RNN against the
tutorial's one-name-per-step loop, the default model against the n-gram baseline a practitioner
would try first, the neural language model against a count-based 4-gram) only mean something
when every row sees the same train/valid/test names (:func:`namesclf.data.dataset.split_names`, grouped by
name, 80/10/10), the same pinned number of torch threads and the same machine. The header of the
JSON says which machine, how busy it was (load average before and after) and the exact command.

Rows (``--rows`` takes their keys; :mod:`benchmarks.rows` runs them):

* ``tutorial``: "Classifying Names with a Character-Level RNN" re-implemented here: one random
  (language, name) pair from the train split per step, a one-hot line tensor, the linear
  hand-built RNN stepped letter by letter, NLLLoss and ``p.add_(p.grad, alpha=-0.005)``.
* ``handbuilt``: the same network in the project's batched loop, alone
  (``TrainConfig(model="handbuilt", ngram_order=0)``), so speed and accuracy compare like for like.
* ``handbuilt-pooled``: ``names train --model handbuilt`` as shipped: that network pooled with the
  4-gram half, like the torch cells.
* ``default``: ``TrainConfig()``; and one row per other recurrent kind (``rnn``, ``lstm``...).
* ``char-ngram-linear``: TF-IDF over character 1-4-grams + LinearSVC (scikit-learn defaults).
* ``lm-4gram``: a language-conditioned character 4-gram model (interpolated Kneser-Ney per
  language, mixed with the all-language model; discount and mixture tuned on valid): the
  package's :class:`namesclf.models.ngram.NgramBayes`, which is also the n-gram half of the default model.
* ``charlm``: the project's CharLM at ``LMConfig()``, and ``charlm-gru`` with a GRU cell.
  Language models are scored in nats per character on the test names, the end token counted;
  their accuracy is the Bayes classifier ``argmax_lang log p(name | lang) + log p(lang)``.

Every timed figure is the median of ``--repeats`` runs. Training is seeded and every repeat uses
the same seed, so repeats re-make the same model: accuracy, macro-F1 and nats come from the
first run (each run's figures are kept under ``runs``), and the repeats are there for the clock.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import load_average, machine_header, print_verdicts, verdicts, write_json
from benchmarks.rows import PLANS, Bench, Plan, select_rows
from namesclf.data.dataset import load_names, split_names

# ----------------------------------------------------------------------------- targets

#: The targets this bench checks (docs/benchmarks.md).
TARGET_SPEEDUP = 15.0
TARGET_ACCURACY_GAIN = 0.25
TARGET_PREDICT_PER_S = 50_000
TARGET_QUICK_SECONDS = 300.0


def check_targets(rows: dict[str, dict[str, Any]], plan: Plan, wall_seconds: float) -> list[dict[str, Any]]:
    """The bench targets as PASS / FAIL / SKIP (a target whose rows were not run is skipped)."""
    out: list[dict[str, Any]] = []

    def add(name: str, needs: Sequence[str], test: Callable[[], tuple[bool, str]]) -> None:
        missing = [k for k in needs if k not in rows]
        if missing:
            out.append({"target": name, "status": "SKIP", "detail": f"row(s) not run: {', '.join(missing)}"})
            return
        ok, detail = test()
        out.append({"target": name, "status": "PASS" if ok else "FAIL", "detail": detail})

    def speedup() -> tuple[bool, str]:
        ratio = rows["handbuilt"]["train_names_per_s"] / rows["tutorial"]["train_names_per_s"]
        return ratio >= TARGET_SPEEDUP, f"{ratio:.1f}x (target >= {TARGET_SPEEDUP:g}x)"

    def gain() -> tuple[bool, str]:
        diff = rows["handbuilt"]["accuracy"] - rows["tutorial"]["accuracy"]
        return diff >= TARGET_ACCURACY_GAIN, (f"{rows['handbuilt']['accuracy']:.4f} vs "
                                              f"{rows['tutorial']['accuracy']:.4f}: {diff:+.4f} "
                                              f"(target >= +{TARGET_ACCURACY_GAIN})")

    def beats_baseline() -> tuple[bool, str]:
        d, b = rows["default"], rows["char-ngram-linear"]
        ok = d["accuracy"] > b["accuracy"] and d["macro_f1"] > b["macro_f1"]
        return ok, (f"accuracy {d['accuracy']:.4f} vs {b['accuracy']:.4f}, "
                    f"macro-F1 {d['macro_f1']:.4f} vs {b['macro_f1']:.4f}")

    def predicts_fast() -> tuple[bool, str]:
        rate = rows["default"]["predict_names_per_s"]
        return rate >= TARGET_PREDICT_PER_S, f"{rate:,.0f} names/s (target >= {TARGET_PREDICT_PER_S:,})"

    add("handbuilt trains >= 15x more names/s than tutorial", ("handbuilt", "tutorial"), speedup)
    add("handbuilt accuracy >= tutorial + 0.25", ("handbuilt", "tutorial"), gain)
    add("default beats char-ngram-linear on accuracy and macro-F1", ("default", "char-ngram-linear"),
        beats_baseline)
    add("default predicts >= 50,000 names/s in batch", ("default",), predicts_fast)
    if plan.mode == "quick":
        detail = (f"{wall_seconds:.0f} s (target < {TARGET_QUICK_SECONDS:.0f} s on 2 quiet cores; "
                  f"load average now {load_average()})")
        out.append({"target": "--quick finishes in under 5 minutes",
                    "status": "PASS" if wall_seconds < TARGET_QUICK_SECONDS else "FAIL", "detail": detail})
    return out


# ----------------------------------------------------------------------------- the HTTP server and prediction speed

TARGET_SERVE_GET_PER_S = 1_000
TARGET_SERVE_GET_P99_MS = 20.0
TARGET_SERVE_GET64_P99_MS = 100.0
TARGET_SERVE_POST_NAMES_PER_S = 100_000


def serve_figures(args: argparse.Namespace) -> dict[str, Any]:
    """The server rows of :mod:`benchmarks.load` (``--bench``) against ``names serve --model args.serve``.

    Kept in load, which also runs them alone; here they join the report so that one JSON says
    which machine, how busy it was, and what the server did on it. Imported here: it needs httpx,
    which the other rows do not.
    """
    from benchmarks import load

    data = args.data if Path(args.data).is_dir() else Path("data/names")
    print(f"server: names serve --model {args.serve} --workers {args.serve_workers}, "
          f"{args.serve_seconds:g} s a row", flush=True)
    result = load.server_bench(str(args.serve), data, workers=args.serve_workers, seconds=args.serve_seconds)
    load.print_bench(result)
    return result


def speed_figures(args: argparse.Namespace) -> dict[str, Any]:
    """:mod:`benchmarks.speed`'s rows (cold ``names predict``, ``--input`` on a million names, ONNX
    and torch) against ``args.speed``, joined to this report."""
    from benchmarks import speed

    data = args.data if Path(args.data).is_dir() else Path("data/names")
    print(f"prediction speed: names predict --model {args.speed}, {args.speed_names:,} names a batch row",
          flush=True)
    result = speed.measure(str(args.speed), data, args.speed_names, 5)
    result["targets"] = speed.targets(result)
    return result


def serve_targets(result: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The server targets (docs/http.md) as PASS / FAIL; none without ``--serve``."""
    if result is None:
        return []
    rows = result["rows"]
    get8, get64, post = rows["get_c8"], rows["get_c64"], rows["post_repeat_c8"]
    lost = {key: sum(row["socket_errors"].values()) if "socket_errors" in row else 0 for key, row in rows.items()}
    checks = [
        (f"GET, 8 connections: >= {TARGET_SERVE_GET_PER_S:,} req/s, p99 <= {TARGET_SERVE_GET_P99_MS:g} ms",
         get8["requests_per_s"] >= TARGET_SERVE_GET_PER_S and (get8["p99_ms"] or 1e9) <= TARGET_SERVE_GET_P99_MS
         and not get8["non_2xx"] and not lost["get_c8"],
         f"{get8['requests_per_s']:,.0f} req/s, p99 {get8['p99_ms']} ms, non-2xx {get8['non_2xx']}"),
        (f"GET, 64 connections: p99 <= {TARGET_SERVE_GET64_P99_MS:g} ms or the excess refused with 503, "
         "no socket errors",
         ((get64["p99_ms"] or 1e9) <= TARGET_SERVE_GET64_P99_MS or get64["non_2xx"] > 0) and not lost["get_c64"],
         f"{get64['requests_per_s']:,.0f} req/s, p99 {get64['p99_ms']} ms, non-2xx {get64['non_2xx']}, "
         f"socket errors {lost['get_c64']}"),
        (f"POST 1,000 names, 8 connections: >= {TARGET_SERVE_POST_NAMES_PER_S:,} names/s",
         post["names_per_s"] >= TARGET_SERVE_POST_NAMES_PER_S and not post["non_2xx"] and not lost["post_repeat_c8"],
         f"{post['names_per_s']:,} names/s (all-new names: {rows['post_unique_c8']['names_per_s']:,}), "
         f"measured with {result['tool']}"),
    ]
    return verdicts(checks)


def bench_header(args: argparse.Namespace, plan: Plan, threads: int) -> dict[str, Any]:
    """The machine header (:func:`benchmarks.common.machine_header`) and this run's settings."""
    return {
        **machine_header(),
        "torch_threads": threads,
        "torch_interop_threads": torch.get_num_interop_threads(),
        "mode": plan.mode,
        "repeats": plan.repeats,
        "tutorial_steps": plan.tutorial_steps,
        "epochs": plan.epochs if plan.epochs is not None else "each model's default",
        "seed": args.seed,
        "device": args.device,
        "data": str(args.data),
        "quality_figures": "from the first run (every repeat uses the same seed); timings: median of repeats",
    }


# ----------------------------------------------------------------------------- output


def fmt(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table of the headline figures, one line per row."""
    head = (f"{'row':<20} {'accuracy':>8} {'macro-F1':>8} {'single':>13} {'nats/ch':>7} {'epochs':>6} "
            f"{'train s':>8} {'train names/s':>13} {'predict names/s':>15}")
    lines = [head, "-" * len(head)]
    for r in rows:
        single = f"{fmt(r.get('accuracy_single'), '.4f')}/{fmt(r.get('macro_f1_single'), '.3f')}"
        lines.append(f"{r['name']:<20} {fmt(r.get('accuracy'), '.4f'):>8} {fmt(r.get('macro_f1'), '.4f'):>8} "
                     f"{single:>13} "
                     f"{fmt(r.get('nats_per_char'), '.3f'):>7} {fmt(r.get('epochs'), 'd'):>6} "
                     f"{fmt(r.get('train_seconds'), '.1f'):>8} {fmt(r.get('train_names_per_s'), ',.0f'):>13} "
                     f"{fmt(r.get('predict_names_per_s'), ',.0f'):>15}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="1 repeat, 20,000 tutorial steps, 4 epochs per model")
    mode.add_argument("--smoke", action="store_true",
                      help="seconds, for CI: a few steps and 1 epoch per model")
    parser.add_argument("--out", type=Path, default=Path("bench.json"),
                        help="JSON report, written after every row (default bench.json)")
    parser.add_argument("--data", type=Path, default=Path("data/names"), help="names folder or CSV")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--rows", default=None, help="comma-separated row keys (default: all)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs per timed figure (default 3; quick 1)")
    parser.add_argument("--steps", type=int, default=None,
                        help="tutorial steps (default 100,000; quick 20,000)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs for every project model (default: each model's own; quick 4)")
    parser.add_argument("--predict-batch", type=int, default=None,
                        help="names per forward pass when timing prediction (default: the Predictor's)")
    parser.add_argument("--seed", type=int, default=0, help="split and training seed (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device for the project's models (default cpu)")
    parser.add_argument("--serve", type=Path, default=None, metavar="MODEL",
                        help="also measure `names serve --model MODEL` (wrk when installed, else "
                        "benchmarks.load's clients); --rows none for the server alone")
    parser.add_argument("--serve-workers", type=int, default=2, help="server processes for --serve (default 2)")
    parser.add_argument("--serve-seconds", type=float, default=10.0, help="seconds per server row (default 10)")
    parser.add_argument("--speed", type=Path, default=None, metavar="MODEL",
                        help="also time a cold `names predict` and `names predict --input` on a million names "
                        "(benchmarks.speed) with MODEL and its ONNX export")
    parser.add_argument("--speed-names", type=int, default=1_000_000, help="names per --speed batch row")
    args = parser.parse_args(argv)
    for name in ("threads", "repeats", "steps", "epochs", "predict_batch", "serve_workers"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    plan = PLANS["smoke" if args.smoke else "quick" if args.quick else "full"]
    changes = {k: v for k, v in (("repeats", args.repeats), ("tutorial_steps", args.steps),
                                 ("epochs", args.epochs)) if v is not None}
    return dataclasses.replace(plan, **changes)


def pin_threads(threads: int) -> int:
    """Pin torch's intra-op (and, where still allowed, inter-op) threads; return what took."""
    torch.set_num_threads(threads)
    # Inter-op threads are only settable before the first parallel region; intra-op is what matters.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(threads)
    return torch.get_num_threads()


def main(argv: Sequence[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    rows_to_run = select_rows(args.rows)
    plan = make_plan(args)
    threads = pin_threads(args.threads)
    data = load_names(args.data)
    split = split_names(data.frame, seed=args.seed)
    parts = {name: data.frame[split == name].reset_index(drop=True) for name in ("train", "valid", "test")}
    bench = Bench(plan, parts["train"], parts["valid"], parts["test"], data.languages, args.seed, args.device,
                  args.predict_batch, str(args.data))
    header = bench_header(args, plan, threads)
    header["split"] = {name: len(part) for name, part in parts.items()}
    header["languages"] = len(bench.labels)
    report: dict[str, Any] = {"header": header, "rows": [], "targets": []}
    print(f"bench: {plan.mode} run, {threads} torch thread(s), {header['cpu']}, "
          f"load average {header['load_average_start']}")
    print(f"split: train {len(bench.train):,}  valid {len(bench.valid):,}  test {len(bench.test):,} "
          f"(name, language) pairs, {len(bench.labels)} languages; {plan.repeats} repeat(s)", flush=True)
    done: dict[str, dict[str, Any]] = {}
    for row in rows_to_run:
        row_started = time.perf_counter()
        figures = row.run(bench)
        result = {"key": row.key, "name": row.name, **figures}
        done[row.key] = result
        report["rows"].append(result)
        write_json(args.out, report)
        nats = f"  nats/char {result['nats_per_char']:.3f}" if "nats_per_char" in result else ""
        print(f"  {row.name:<20} accuracy {result['accuracy']:.4f}  macro-F1 {result['macro_f1']:.4f}{nats}  "
              f"single-language {fmt(result.get('accuracy_single'), '.4f')} / "
              f"{fmt(result.get('macro_f1_single'), '.4f')}  "
              f"train {result['train_seconds']:.1f} s  "
              f"({time.perf_counter() - row_started:.0f} s with repeats and timing)", flush=True)
        if "fidelity_in_language" in result:
            print(f"  {'':<20} generated names: {result['fidelity_in_language']:.0%} read as the asked "
                  f"language by the default classifier, {result['fidelity_new']:.0%} new "
                  f"({result['fidelity_n_per_language']} per language)", flush=True)
        elif "fidelity_error" in result:
            print(f"  {'':<20} generation fidelity failed: {result['fidelity_error']}", flush=True)
    if args.serve is not None:
        report["serve"] = serve_figures(args)
        write_json(args.out, report)
    if args.speed is not None:
        report["speed"] = speed_figures(args)
        write_json(args.out, report)
    wall = time.perf_counter() - started
    report["targets"] = (check_targets(done, plan, wall) + serve_targets(report.get("serve"))
                         + report.get("speed", {}).get("targets", []))
    header["wall_seconds"] = wall
    header["load_average_end"] = load_average()
    write_json(args.out, report)
    print()
    print(table(report["rows"]))
    print()
    print_verdicts(report["targets"])
    if plan.mode != "quick":
        print(f"INFO  total wall time {wall:.0f} s ({plan.mode} run)")
    print(f"load average at start {header['load_average_start']}, at end {header['load_average_end']} "
          f"(numbers are only comparable on a quiet machine)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
