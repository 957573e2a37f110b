#!/usr/bin/env python3
"""How well each method estimates a population's language mix, and how often its intervals hold
the true mix (docs/experiments.md#population-mix).

    python -m experiments.mix models/names.pt=data/names [--mixes 50 --size 2000 --bootstrap 200]

For each MODEL=DATA pair, the corpus's test split is rebuilt from the seed in the model file. Each of
``--mixes`` populations draws label proportions from a flat Dirichlet (every mix equally likely),
then ``--size`` (name, language) rows of the test split with replacement, that many of each label.
Every method estimates the mix from the model's probabilities for those names; at the label level
and at the origin-group level the table prints the mean absolute error per label (over labels and
populations), the worst label's mean error, and, for the 95% intervals of the bootstrap alone and of
the bootstrap widened by the model error the model file carries (when it does), how often they held
the true share and their mean width.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from namesclf.data.dataset import load_names, split_names
from namesclf.inference.mix import (
    MIX_METHODS,
    bootstrap_draws,
    intervals,
    level_rollup,
    model_error_of,
    point_estimate,
)
from namesclf.inference.predictor import Predictor

LEVELS = ("label", "group")
CONFIDENCE = 0.95


def draw_population(by_label: list[np.ndarray], size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of one population and its true mix (the realised shares, not the Dirichlet's)."""
    counts = rng.multinomial(size, rng.dirichlet(np.ones(len(by_label))))
    rows = np.concatenate([rng.choice(rows, n) for rows, n in zip(by_label, counts, strict=True) if n])
    return rows, counts / size


def measure(model: str, data: str, mixes: int, size: int, bootstrap: int, seed: int) -> None:
    predictor = Predictor.load(model)
    frame = load_names(data).frame
    test = frame[split_names(frame, seed=int(predictor.meta.get("split_seed", 0))) == "test"]
    test = test[test["language"].isin(predictor.labels)].reset_index(drop=True)
    proba = predictor.proba_ascii(list(test["ascii"]))
    by_label = [np.flatnonzero(test["language"].to_numpy() == label) for label in predictor.labels]
    present = [i for i, rows in enumerate(by_label) if len(rows)]
    rollups = {level: level_rollup(predictor.labels, level) for level in LEVELS}
    # the columns each level reports on: the labels with test names, the groups holding one of them
    shown = {"label": np.array(present),
             "group": np.unique(rollups["group"].index[present]) if rollups["group"] else np.array(present)}
    moments = {m: model_error_of(predictor.meta, len(predictor.labels), m) for m in MIX_METHODS}
    kinds = ["bootstrap", "bootstrap+model"] if all(v is not None for v in moments.values()) else ["bootstrap"]
    rng = np.random.default_rng(seed)
    errors = {(lv, m): [] for lv in LEVELS for m in MIX_METHODS}
    held = {(lv, m, k): [] for lv in LEVELS for m in MIX_METHODS for k in kinds}
    width = {(lv, m, k): [] for lv in LEVELS for m in MIX_METHODS for k in kinds}
    started = time.perf_counter()
    for _ in range(mixes):
        rows, truth_present = draw_population([by_label[i] for i in present], size, rng)
        truth = np.zeros(len(predictor.labels))
        truth[present] = truth_present
        for method in MIX_METHODS:
            share = point_estimate(proba[rows], predictor.trained_on, method)
            draws = bootstrap_draws(proba[rows], predictor.trained_on, method, None, bootstrap,
                                    int(rng.integers(1 << 31)))
            for level in LEVELS:
                rollup, cols = rollups[level], shown[level]
                true_here = truth if rollup is None else rollup.sum_columns(truth[None, :])[0]
                est_here = share if rollup is None else rollup.sum_columns(share[None, :])[0]
                errors[level, method].append(np.abs(est_here - true_here)[cols])
                for kind in kinds:
                    low, high = intervals(share, draws, CONFIDENCE, rollup,
                                          moments[method] if kind == "bootstrap+model" else None)
                    held[level, method, kind].append(((low <= true_here) & (true_here <= high))[cols])
                    width[level, method, kind].append((high - low)[cols])
    print(f"\n{model} on the test names of {data}: {len(test):,} rows, {len(present)} labels, {mixes} mixes "
          f"of {size:,} names, {bootstrap} bootstrap resamples ({time.perf_counter() - started:.0f} s)")
    if len(kinds) == 1:
        print("(this model file has no mix calibration: bootstrap intervals only)")
    for level in LEVELS:
        cells = "".join(f" {'held ' + k:>22} {'width':>7}" for k in kinds)
        print(f"{level + ' level':<12} {'MAE/label':>10} {'worst':>7}{cells}")
        for method in MIX_METHODS:
            err = np.stack(errors[level, method])
            cells = "".join(f" {np.mean(held[level, method, k]):>22.3f} {np.mean(width[level, method, k]):>7.4f}"
                            for k in kinds)
            print(f"{method:<12} {err.mean():>10.4f} {err.mean(axis=0).max():>7.4f}{cells}")
        ratio = np.stack(errors[level, "em"]).mean() / np.stack(errors[level, "cc"]).mean()
        print(f"EM error / classify-and-count error at the {level} level: {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pairs", nargs="+", metavar="MODEL=DATA")
    parser.add_argument("--mixes", type=int, default=50)
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for pair in args.pairs:
        model, data = pair.split("=", 1)
        measure(model, data, args.mixes, args.size, args.bootstrap, args.seed)


if __name__ == "__main__":
    main()
