"""A joint full-name model against the factorized one: the n-gram Bayes classifier reading the whole string.

    python -m experiments.fullname_joint data/fullname_splits/origins_seed0
    python -m experiments.fullname_joint data/fullname_splits/origins_seed0 --order 6 --no-bare

The factorized model (``experiments.fullname_model``) scores a person's surname and given names
with a part each and combines them. The joint model here is the same Kneser-Ney n-gram Bayes
classifier trained on each person's whole name as one string (``given + " " + surname``,
folded), so its n-grams cross from the given names into the surname; every distinct surname is
added alone as well (unless ``--no-bare``), so a bare surname is in its distribution too. Its
discount and mixture are tuned on the validation people's whole names. On ``test.csv`` it prints
accuracy, balanced accuracy and precision@1/2/3/5 reading the whole name and the bare surname,
the training seconds and the process's peak resident memory; ``--json`` writes them.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import write_json
from namesclf.data.people import load_people
from namesclf.inference.parts import score_distinct
from namesclf.inference.predictor import Predictor
from namesclf.text import to_ascii
from namesclf.training.fullname import DEFAULT_ORDER, part_frame, train_ngram_part


def whole_names(people: pd.DataFrame) -> pd.DataFrame:
    """Each person's folded ``given surname`` (the surname alone when there are no given names)."""
    given, surname = people["given"].map(to_ascii), people["surname"].map(to_ascii)
    ascii_ = [f"{g} {s}" if g else s for g, s in zip(given, surname, strict=True)]
    frame = pd.DataFrame({"name": people["name"].to_numpy(), "language": people["language"].to_numpy(),
                          "ascii": ascii_})
    return frame[frame["ascii"] != ""].reset_index(drop=True)


def scores(proba: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from experiments.fullname_combiners import scores as ranked_scores

    return ranked_scores(np.log(np.maximum(proba, 1e-30)), y)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("splits", type=Path)
    parser.add_argument("--label-column", default="language")
    parser.add_argument("--order", type=int, default=DEFAULT_ORDER)
    parser.add_argument("--no-bare", action="store_true", help="train on whole names only (no surname rows)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    sets = {name: load_people(args.splits / f"{name}.csv", args.label_column).frame
            for name in ("train", "valid", "test")}
    labels = sorted(set(sets["train"]["language"]))
    started = time.perf_counter()
    train = whole_names(sets["train"])
    if not args.no_bare:
        train = pd.concat([train, part_frame(sets["train"], "surname")], ignore_index=True)
    part = train_ngram_part(train, whole_names(sets["valid"]), args.order, labels, args.seed)
    seconds = time.perf_counter() - started
    predictor = Predictor(part.model, labels, meta={}, config=part.config)

    # the test people the factorized model is scored on (experiments.fullname_cache.test_rows)
    from experiments.fullname_cache import test_rows

    rows, surnames, givens = test_rows(sets["test"], labels)
    index = {label: i for i, label in enumerate(labels)}
    y = rows["language"].map(index).to_numpy()
    whole = [f"{g} {s}" if g else s for g, s in zip(givens, surnames, strict=True)]
    out = {"splits": str(args.splits), "order": args.order, "bare_rows": not args.no_bare, "n_train_rows": len(train),
           "n_test": len(y), "train_seconds": round(seconds, 1), "record": part.record,
           "whole_name": scores(score_distinct(predictor.score_ascii, whole)[0], y),
           "bare_surname": scores(score_distinct(predictor.score_ascii, surnames)[0], y)}
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    for row in ("whole_name", "bare_surname"):
        f = out[row]
        print(f"joint, {row:14s} acc {f['accuracy']:.4f}  bal {f['balanced_accuracy']:.4f}  P@1/2/3/5 "
              + " / ".join(f"{100 * f[f'p@{k}']:.1f}" for k in (1, 2, 3, 5)) + f"  (n={len(y):,})")
    print(f"training {out['train_seconds']} s, peak RSS {out['peak_rss_mb']:,} MB")
    if args.json is not None:
        write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
