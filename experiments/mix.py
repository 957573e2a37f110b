#!/usr/bin/env python3
"""How well each method estimates a population's language mix (docs/experiments.md#population-mix).

    python -m experiments.mix models/names.pt=data/names [--mixes 50 --size 2000 --bootstrap 200]

For each MODEL=DATA pair, the corpus's test split is rebuilt from the seed in the model file. Each of
``--mixes`` populations draws label proportions from a flat Dirichlet (every mix equally likely),
then ``--size`` (name, language) rows of the test split with replacement, that many of each label.
Every method estimates the mix from the model's probabilities for those names; the table prints
the mean absolute error per label (over labels and populations), the worst label's mean error,
and how often the 95% bootstrap interval held the true share.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from namesclf.data.dataset import load_names, split_names
from namesclf.inference.mix import MIX_METHODS, estimate_mix_from_proba
from namesclf.inference.predictor import Predictor


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
    column = {label: i for i, label in enumerate(predictor.labels)}
    by_label = [np.flatnonzero(test["language"].to_numpy() == label) for label in predictor.labels]
    present = [i for i, rows in enumerate(by_label) if len(rows)]
    rng = np.random.default_rng(seed)
    errors = {m: [] for m in MIX_METHODS}
    held = {m: [] for m in MIX_METHODS}
    started = time.perf_counter()
    for _ in range(mixes):
        rows, truth_present = draw_population([by_label[i] for i in present], size, rng)
        truth = np.zeros(len(predictor.labels))
        truth[present] = truth_present
        for method in MIX_METHODS:
            est = estimate_mix_from_proba(proba[rows], predictor.labels, predictor.trained_on, method=method,
                                          bootstrap=bootstrap, seed=int(rng.integers(1 << 31)))
            errors[method].append(np.abs(est.share - truth)[present])
            held[method].append(((est.low <= truth) & (truth <= est.high))[present])
    assert column  # every test label is a model label (filtered above)
    print(f"\n{model} on the test names of {data}: {len(test):,} rows, {len(present)} labels, {mixes} mixes "
          f"of {size:,} names, {bootstrap} bootstrap resamples ({time.perf_counter() - started:.0f} s)")
    print(f"{'method':<8} {'MAE/label':>10} {'worst label':>12} {'95% interval held':>18}")
    for method in MIX_METHODS:
        err = np.stack(errors[method])
        print(f"{method:<8} {err.mean():>10.4f} {err.mean(axis=0).max():>12.4f} {np.mean(held[method]):>18.3f}")
    ratio = np.stack(errors["em"]).mean() / np.stack(errors["cc"]).mean()
    print(f"EM error / classify-and-count error: {ratio:.3f}")


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
