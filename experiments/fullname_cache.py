"""Train a full-name model's parts once and keep their scores, so combiners compare in seconds.

    python -m experiments.fullname_cache data/fullname_splits/origins_seed0 --out cache/origins0
    python -m experiments.fullname_cache data/fullname_splits/origins_seed0 --out cache/origins0 \\
        --parts given --order 6
    python -m experiments.fullname_cache data/fullname_splits/nana --label-column nationality \\
        --out cache/nana --order 4

``SPLITS`` holds ``train.csv``, ``valid.csv`` and ``test.csv`` of people (written by
``python -m benchmarks.fullnames split``). Each part asked for (``--parts``: the surname part,
the given-name part, or both) is trained on ``train.csv`` as ``names train`` trains it (an n-gram
Bayes classifier of ``--order``, its discount and mixture tuned on validation names); then its
log-probabilities of every validation and test person are written to ``OUT/<part>_o<order>.npz``
(``valid`` and ``test``: float32 ``(people, labels)``), and ``OUT/people.npz`` holds what the
combiner needs beside them: the labels, each person's label index, whether they have given names,
and the surname key the combiner's cross-validation folds group by. The rows are the people the
full-name model's training (validation) and :func:`~namesclf.training.fullname.people_scores`
(test) read, in the same order: ``experiments.fullname_combiners`` then reproduces their figures.

``--model PT`` reads both parts from a full-name model file instead of training them.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from namesclf.data.people import load_people
from namesclf.inference.parts import FLOOR, align, score_distinct
from namesclf.inference.predictor import Predictor
from namesclf.text import to_ascii
from namesclf.training.fullname import DEFAULT_ORDER, every_given, part_frame, train_ngram_part


def test_rows(people: pd.DataFrame, labels: list[str]) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The test people :func:`~namesclf.training.fullname.people_scores` scores (a known label, a
    readable surname or else a readable whole name), their folded surnames and given names."""
    known = people[people["language"].isin(labels)]
    surnames = [to_ascii(s) or to_ascii(n) for s, n in zip(known["surname"], known["name"], strict=True)]
    keep = np.array([bool(s) for s in surnames], dtype=bool)
    rows = known[keep]
    return rows, [s for s, k in zip(surnames, keep, strict=True) if k], rows["given"].map(to_ascii).tolist()


def valid_rows(people: pd.DataFrame, labels: list[str]) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The validation people the combiner is fitted on, as
    :func:`~namesclf.training.fullname.train_full_name` reads them."""
    rows = people[people["language"].isin(labels)]
    return rows, rows["surname"].map(to_ascii).tolist(), rows["given"].map(to_ascii).tolist()


def log_scores(predictor: Predictor, labels: list[str], folded: list[str], only: np.ndarray | None = None
               ) -> np.ndarray:
    """``log max(p, FLOOR)`` of each folded name under a part, in ``labels`` order; rows outside
    ``only`` (names that are absent) are zeros."""
    from namesclf.inference.parts import label_index

    out = np.zeros((len(folded), len(labels)), dtype=np.float32)
    rows = np.arange(len(folded)) if only is None else np.flatnonzero(only)
    if len(rows):
        proba = score_distinct(predictor.score_ascii, [folded[i] for i in rows])[0]
        proba = align(proba, label_index(predictor.labels, labels))
        out[rows] = np.log(np.maximum(proba, FLOOR))
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("splits", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--label-column", default="language")
    parser.add_argument("--order", type=int, default=DEFAULT_ORDER, help="the parts' n-gram order")
    parser.add_argument("--parts", nargs="+", choices=["surname", "given"], default=["surname", "given"])
    parser.add_argument("--model", type=Path, default=None, help="read both parts from this full-name model file")
    parser.add_argument("--discount", type=float, default=None,
                        help="fix the parts' Kneser-Ney discount instead of tuning it (the mixture stays tuned)")
    parser.add_argument("--surname-rows", choices=["distinct", "every"], default="distinct",
                        help="count the surname part on the distinct (surname, label) pairs, or on every person's")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    sets = {name: load_people(args.splits / f"{name}.csv", args.label_column).frame
            for name in ("train", "valid", "test")}
    labels = sorted(set(sets["train"]["language"]))
    valid, valid_s, valid_g = valid_rows(sets["valid"], labels)
    test, test_s, test_g = test_rows(sets["test"], labels)
    args.out.mkdir(parents=True, exist_ok=True)
    index = {label: i for i, label in enumerate(labels)}
    people = {"labels": np.array(labels)}
    for name, frame, givens in (("valid", valid, valid_g), ("test", test, test_g)):
        people[f"{name}_y"] = frame["language"].map(index).to_numpy(np.int64)
        people[f"{name}_has_given"] = np.array([bool(g) for g in givens])
        people[f"{name}_key"] = frame["surname"].map(lambda s: to_ascii(s).lower()).to_numpy(dtype=str)
    np.savez(args.out / "people.npz", **people)

    record: dict = {"splits": str(args.splits), "order": args.order, "discount": args.discount, "parts": {}}
    predictors: dict[str, Predictor] = {}
    if args.model is not None:
        full = Predictor.load(args.model, backend="torch")
        if full.labels != labels or full.given is None:
            raise SystemExit(f"{args.model}: not a full-name model of these labels")
        predictors = {"surname": full, "given": full.given}
        record["model"] = str(args.model)
    for part in args.parts:
        if part not in predictors:
            surnames = (every_given(sets["train"], "surname") if args.surname_rows == "every"
                        else part_frame(sets["train"], "surname"))
            frames = ((surnames, part_frame(sets["valid"], "surname")) if part == "surname"
                      else (every_given(sets["train"]), every_given(sets["valid"])))
            trained = train_ngram_part(*frames, args.order, labels, args.seed)
            if args.discount is not None:
                trained.model.discount.fill_(args.discount)
            predictors[part] = Predictor(trained.model, labels, meta={}, config=trained.config)
            record["parts"][part] = {**trained.record, "seconds": round(trained.seconds, 1)}
        predictor = predictors[part]
        arrays = {}
        for name, surnames, givens in (("valid", valid_s, valid_g), ("test", test_s, test_g)):
            if part == "surname":
                arrays[name] = log_scores(predictor, labels, surnames)
            else:
                arrays[name] = log_scores(predictor, labels, givens, people[f"{name}_has_given"])
        tag = f"{part}_o{args.order}" + (f"_d{args.discount:g}" if args.discount is not None else "") \
            + ("_every" if part == "surname" and args.surname_rows == "every" else "")
        np.savez(args.out / f"{tag}.npz", **arrays)
        print(f"{tag}: {record['parts'].get(part, 'from the model file')}", flush=True)
    record["seconds"] = round(time.perf_counter() - started, 1)
    record["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    tag = "_".join(args.parts) + f"_o{args.order}" + (f"_d{args.discount:g}" if args.discount is not None else "") \
        + ("_every" if args.surname_rows == "every" else "")
    (args.out / f"record_{tag}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
