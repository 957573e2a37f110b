"""Prediction sets at the group and region level on a model's test names (docs/experiments.md#origin-groups).

    python -m experiments.groups models/names.pt data/names --coverage 0.9

A set at a level is the groups of the labels in the label-level set (what ``--level group
--coverage`` answers): whenever the true label is in the label set its group is in the group set,
so the coverage cannot fall below the label set's. This measures how far above it lands and how
small the sets are, beside a set calibrated on group probabilities themselves, which the model
file cannot make because it stores only the label probabilities of its validation names.

That comparison set is split-conformal on the test names themselves, cross-fitted: the distinct
test names are cut in two halves at random (seeded), each half's threshold is taken on the other
half, and the figures pool both. The validation names cannot serve: a model whose n-gram half was
counted again on them (``--refit-ngram``, the default) is over-confident there, and a threshold
taken on them under-covers new names (the last row of each level shows by how much). Every
figure is over (name, true label) pairs of the test split: the set is right when it holds the
pair's label, or its group or region.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from namesclf.config import LEVELS
from namesclf.data.dataset import load_names, split_names
from namesclf.inference.conformal import conformal_quantile
from namesclf.inference.options import Options
from namesclf.inference.predictor import Predictor


def level_rows(predictor: Predictor, frame: object, valid: object, coverage: float, seed: int = 0
               ) -> list[dict[str, object]]:
    """One row per level and kind of set: its coverage on the test pairs and its mean size per name."""
    names = list(dict.fromkeys(frame["ascii"]))  # type: ignore[index]
    half = dict(zip(names, np.random.default_rng(seed).permutation(len(names)) % 2, strict=True))
    pair_half = np.array([half[a] for a in frame["ascii"]])  # type: ignore[index]
    rows = []
    for level in LEVELS:
        rollup = predictor.level_map(level)
        group_of = {label: rollup.names[i] for label, i in zip(predictor.labels, rollup.index.tolist(), strict=True)}
        truth = [group_of[label] for label in frame["language"]]  # type: ignore[index]
        answers = predictor.predict_with(names, Options(k=1, coverage=coverage, level=level, surname_only=True))
        sets = {name: set(p.prediction_set or []) for name, p in zip(names, answers, strict=True)}
        rows.append(_row(level, "groups of the label set" if level != "label" else "label set (stored calibration)",
                         frame, truth, sets))
        if level == "label":
            continue
        # calibrated on the group probabilities of the other half of the test names
        proba = predictor.proba_with(names, Options(level=level, surname_only=True))
        row_of = {name: i for i, name in enumerate(names)}
        p_true = np.array([proba[row_of[a], rollup.names.index(t)]
                           for a, t in zip(frame["ascii"], truth, strict=True)])  # type: ignore[index]
        q = [conformal_quantile(1.0 - p_true[pair_half != h], coverage) for h in (0, 1)]
        direct = {name: {rollup.names[j] for j in np.flatnonzero(1.0 - proba[i] <= q[half[name]] + 1e-12)}
                  for i, name in enumerate(names)}
        rows.append(_row(level, "calibrated at the level (cross-fitted)", frame, truth, direct))
        # the same on the validation names' probabilities at this level
        valid_truth = np.array([rollup.names.index(group_of[label]) for label in valid["language"]])  # type: ignore[index]
        valid_p = predictor.proba_with(list(valid["ascii"]), Options(level=level, surname_only=True))  # type: ignore[index]
        q_valid = conformal_quantile(1.0 - valid_p[np.arange(len(valid_truth)), valid_truth], coverage)
        on_valid = {name: {rollup.names[j] for j in np.flatnonzero(1.0 - proba[i] <= q_valid + 1e-12)}
                    for i, name in enumerate(names)}
        rows.append(_row(level, "calibrated at the level (valid names)", frame, truth, on_valid))
    return rows


def _row(level: str, kind: str, frame: object, truth: list[str], sets: dict[str, set[str]]) -> dict[str, object]:
    held = [t in sets[a] for a, t in zip(frame["ascii"], truth, strict=True)]  # type: ignore[index]
    return {"level": level, "set": kind, "coverage": float(np.mean(held)),
            "size": float(np.mean([len(s) for s in sets.values()])), "pairs": len(held), "names": len(sets)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.groups", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("--coverage", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0, help="Seeds the halves of the cross-fitted comparison.")
    args = parser.parse_args(argv)
    predictor = Predictor.load(args.model)
    frame = load_names(args.data).frame
    split = split_names(frame, seed=int(predictor.meta.get("split_seed", 0)))
    rows = level_rows(predictor, frame[split == "test"], frame[split == "valid"], args.coverage, args.seed)
    print(f"target coverage {args.coverage}; test split of {args.data} (seed {predictor.meta.get('split_seed', 0)})")
    print(f"{'level':<7} {'set':<38} {'coverage':>8} {'mean size':>9} {'pairs':>7} {'names':>7}")
    for r in rows:
        print(f"{r['level']:<7} {r['set']:<38} {r['coverage']:>8.3f} {r['size']:>9.2f} {r['pairs']:>7,} "
              f"{r['names']:>7,}")


if __name__ == "__main__":
    main()
