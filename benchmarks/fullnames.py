"""The full-name benchmarks on the Wikipedia people (``names data fetch wikipedia --full-names``):
name2nat's NaNa task and the origins task, their split files, the TF-IDF + LinearSVC baselines, and
one scorer for any model's predictions on them.

* **NaNa** (name2nat's own task): the 173 nationalities of name2nat's table (all of the wheel's but
  :data:`NOT_IN_NANA`), split 8:1:1 at random within each nationality the way
  name2nat cut theirs (train the first ``int(0.8 n)`` of a shuffled nationality, valid up to
  ``int(0.9 n)``, test the rest), scored by precision@1/2/3/5 beside name2nat's published figures
  (:data:`NAME2NAT_PUBLISHED`). Their test file is not in the wheel, so the people differ; and the
  corpus has already left out the reserved slice and the names without a surname to take.
* **Origins**: the rows with an origin label (34 labels), split 8:1:1 grouped by folded surname (no
  surname in two splits), stratified by label, with the splitter of ``names train``
  (:func:`namesclf.data.dataset.split_names`), one split per seed; scored by accuracy and balanced
  accuracy.

Every split file has the corpus's columns (``name,given,surname,language,nationality``)::

    python -m benchmarks.fullnames split --corpus data/wikipedia_people.csv --out splits
    python -m benchmarks.fullnames baseline --splits splits --task origins --features full surname
    python -m benchmarks.fullnames score --splits splits --task nana --predictions nana_test.csv

``score`` reads a CSV with one row per test row, in the test file's order: columns ``label_1`` (the
top answer), optionally ``label_2`` ... ``label_5`` (the next ones, for precision@k), and optionally
``name`` (then checked against the test file's, row by row). ``baseline`` writes such files with
``--write-predictions DIR``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from namesclf.data.surname_rules import fold_surname, is_reserved
from namesclf.data.wikipedia_people import PEOPLE_COLUMNS
from namesclf.errors import DataError, NamesError
from namesclf.files import atomic_write_text, atomic_write_with
from namesclf.text import to_ascii

SPLIT_NAMES = ("train", "valid", "test")
#: The wheel's nationalities that name2nat's NaNa table leaves out: its smallest (3, 7 and 2 people;
#: the smallest it lists, Vincentian, has 10). The task's classes are the other 173.
NOT_IN_NANA = frozenset({"Croat", "Pole", "Tobagonian"})
#: name2nat's README, "Results": precision@k in % on its 111,368 test people.
NAME2NAT_PUBLISHED = {1: 55.1, 2: 69.6, 3: 77.9, 4: 83.0, 5: 86.8}
TOP_K = (1, 2, 3, 5)
FEATURES = ("full", "surname", "given")


# ----------------------------------------------------------------------------- reading


def read_people_csv(path: str | Path) -> pd.DataFrame:
    """A corpus or split file, every column a string (empty ``given``/``language`` stay ``''``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (build it with `names data fetch wikipedia --full-names`)")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    if tuple(frame.columns) != PEOPLE_COLUMNS:
        raise DataError(f"{path}: expected the columns {','.join(PEOPLE_COLUMNS)}")
    return frame


def surname_key(surname: str) -> str:
    """The key the origins split groups by, and the reserved slice is checked on: the folded,
    lower-cased surname as the surname corpus keys it."""
    folded = fold_surname(surname)
    return (folded if folded is not None else to_ascii(surname)).lower()


# ----------------------------------------------------------------------------- splitting


def nana_split(frame: pd.DataFrame, seed: int = 0) -> tuple[pd.Series, dict[str, int]]:
    """``train``/``valid``/``test`` (or ``''``: left out) for each row, and the nationalities left
    out (:data:`NOT_IN_NANA`), with their rows. Within each nationality the rows are shuffled and cut where
    name2nat cut: ``[:int(0.8 n)]``, ``[int(0.8 n):int(0.9 n)]``, the rest."""
    rng = np.random.default_rng(seed)
    assignment = np.full(len(frame), "", dtype=object)
    small: dict[str, int] = {}
    groups = frame.groupby("nationality", sort=True).indices
    for nationality, rows in groups.items():
        n = len(rows)
        if nationality in NOT_IN_NANA:
            small[str(nationality)] = n
            continue
        order = rows[rng.permutation(n)]
        cut_train, cut_valid = int(n * 0.8), int(n * 0.9)
        assignment[order[:cut_train]] = "train"
        assignment[order[cut_train:cut_valid]] = "valid"
        assignment[order[cut_valid:]] = "test"
    return pd.Series(assignment, index=frame.index, name="split"), small


def origins_split(frame: pd.DataFrame, seed: int) -> pd.Series:
    """``train``/``valid``/``test`` for each row of ``frame`` (rows with a label), grouped by folded
    surname and stratified by label: :func:`namesclf.data.dataset.split_names` on the surnames."""
    from namesclf.data.dataset import split_names

    keys = pd.DataFrame({"ascii": frame["surname"].map(surname_key), "language": frame["language"]},
                        index=frame.index)
    return split_names(keys, seed=seed)


def _write_split(frame: pd.DataFrame, split: pd.Series, folder: Path) -> dict[str, int]:
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name in SPLIT_NAMES:
        part = frame[split == name]
        atomic_write_text(folder / f"{name}.csv", part.to_csv(index=False, lineterminator="\n"))
        sizes[name] = len(part)
    return sizes


def make_splits(corpus: str | Path, out: str | Path, seeds: Sequence[int] = (0, 1, 2), nana_seed: int = 0,
                force: bool = False) -> dict[str, Any]:
    """Write ``nana/`` and ``origins_seed{s}/`` (``train.csv``, ``valid.csv``, ``test.csv``) under
    ``out`` and ``splits.json`` (sizes, what was left out); returns that summary."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise NamesError(f"{out}: not empty; pass --force to overwrite the split files there")
    frame = read_people_csv(corpus)
    reserved = frame["surname"].map(lambda s: is_reserved(surname_key(s)))
    if reserved.any():  # the builder leaves them out; a file from elsewhere might not
        frame = frame[~reserved].reset_index(drop=True)
    summary: dict[str, Any] = {"corpus": str(corpus), "rows": len(frame) + int(reserved.sum()),
                               "reserved_rows_left_out": int(reserved.sum()), "columns": list(PEOPLE_COLUMNS)}
    split, small = nana_split(frame, nana_seed)
    summary["nana"] = {"seed": nana_seed, "nationalities": int(frame["nationality"].nunique()) - len(small),
                       "not_in_nana_left_out": small, **_write_split(frame, split, out / "nana")}
    labelled = frame[frame["language"] != ""].reset_index(drop=True)
    summary["origins"] = {}
    for seed in seeds:
        sizes = _write_split(labelled, origins_split(labelled, seed), out / f"origins_seed{seed}")
        summary["origins"][f"seed{seed}"] = sizes
    summary["origins_rows"] = len(labelled)
    summary["origins_labels"] = int(labelled["language"].nunique())
    atomic_write_text(out / "splits.json", json.dumps(summary, indent=2) + "\n")
    return summary


# ----------------------------------------------------------------------------- scoring


def ranked_from_scores(scores: np.ndarray, classes: Sequence[str], k: int = max(TOP_K)) -> np.ndarray:
    """The ``k`` best labels per row, best first (ties: the order of ``classes``)."""
    if scores.ndim == 1:  # scikit-learn's decision_function for two classes: the second class's margin
        scores = np.stack([-scores, scores], axis=1)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.asarray(classes, dtype=object)[top]


def score_ranked(truth: Sequence[str], ranked: np.ndarray, task: str) -> dict[str, float]:
    """NaNa: precision@k in % for each k of :data:`TOP_K` that ``ranked`` has columns for; origins:
    accuracy and balanced accuracy (of the top answer, as fractions)."""
    truth = np.asarray(truth, dtype=object)
    ranked = np.asarray(ranked, dtype=object).reshape(len(truth), -1)
    if task == "nana":
        hits = ranked == truth[:, None]
        return {f"p@{k}": 100.0 * float(hits[:, :k].any(axis=1).mean()) for k in TOP_K if k <= ranked.shape[1]}
    from sklearn.metrics import balanced_accuracy_score

    top = ranked[:, 0]
    return {"accuracy": float((top == truth).mean()),
            "balanced_accuracy": float(balanced_accuracy_score(truth.astype(str), top.astype(str))), "n": len(truth)}


def label_column(task: str) -> str:
    return "nationality" if task == "nana" else "language"


def score_file(test: pd.DataFrame, predictions: str | Path, task: str) -> dict[str, float]:
    """Score a predictions CSV (``label_1`` ..., optional ``name``) against ``test``, row by row."""
    path = Path(predictions)
    if not path.is_file():
        raise DataError(f"{path}: no such predictions file")
    pred = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    columns = [f"label_{i}" for i in range(1, max(TOP_K) + 1) if f"label_{i}" in pred.columns]
    if "label_1" not in pred.columns or columns != [f"label_{i}" for i in range(1, len(columns) + 1)]:
        raise DataError(f"{path}: expected the columns label_1, label_2, ... (ranked answers, best first)")
    if len(pred) != len(test):
        raise DataError(f"{path}: {len(pred):,} rows, the test file has {len(test):,}: one row per test row, in order")
    if "name" in pred.columns:
        wrong = np.flatnonzero(pred["name"].to_numpy() != test["name"].to_numpy())
        if len(wrong):
            i = int(wrong[0])
            raise DataError(f"{path}: row {i + 2} is {pred['name'].iat[i]!r}, the test file has "
                            f"{test['name'].iat[i]!r}")
    return score_ranked(test[label_column(task)].to_list(), pred[columns].to_numpy(dtype=object), task)


# ----------------------------------------------------------------------------- the baselines


def _texts(frame: pd.DataFrame, column: str, fold: bool) -> list[str]:
    values = frame[column].to_list()
    return [to_ascii(v) for v in values] if fold else values


def fit_baseline(train: pd.DataFrame, task: str, features: str, fold: bool, seed: int) -> Any:
    """TF-IDF over char_wb 1-4-grams, one vectorizer per part (``full``: given names and surname,
    stacked side by side; ``surname`` or ``given`` alone), then LinearSVC (scikit-learn defaults)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    parts = {"full": ["given", "surname"], "surname": ["surname"], "given": ["given"]}[features]
    columns = ColumnTransformer([(part, TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4)), part)
                                 for part in parts])
    pipe = make_pipeline(columns, LinearSVC(random_state=seed))
    x = pd.DataFrame({part: _texts(train, part, fold) for part in parts})
    return pipe.fit(x, train[label_column(task)].to_numpy())


def baseline_ranked(pipe: Any, test: pd.DataFrame, fold: bool) -> np.ndarray:
    parts = list(pipe[0].feature_names_in_)
    scores = pipe.decision_function(pd.DataFrame({part: _texts(test, part, fold) for part in parts}))
    return ranked_from_scores(np.asarray(scores), [str(c) for c in pipe.classes_])


def _write_predictions(ranked: np.ndarray, test: pd.DataFrame, path: Path) -> None:
    frame = pd.DataFrame(ranked, columns=[f"label_{i + 1}" for i in range(ranked.shape[1])])
    frame.insert(0, "name", test["name"].to_numpy())
    atomic_write_with(path, lambda h: frame.to_csv(h, index=False, lineterminator="\n"), binary=False)


def _task_folders(splits: Path, task: str, seeds: Sequence[int]) -> list[tuple[int, Path]]:
    if task == "nana":
        return [(0, splits / "nana")]
    return [(seed, splits / f"origins_seed{seed}") for seed in seeds]


def _print_table(task: str, results: dict[str, list[dict[str, float]]]) -> None:
    """Mean ± sd over the runs of each row; NaNa with name2nat's published figures beside."""
    if task == "nana":
        keys = [f"p@{k}" for k in TOP_K]
        print("| model | " + " | ".join(f"P@{k}" for k in TOP_K) + " | test people |")
        print("|---|" + "---:|" * (len(keys) + 1))
        print("| name2nat 0.5.1 as published (Flair bidirectional GRU, their split) | "
              + " | ".join(f"{NAME2NAT_PUBLISHED[k]:.1f}" for k in TOP_K) + " | 111,368 |")
    else:
        keys = ["accuracy", "balanced_accuracy"]
        print("| model | accuracy | balanced accuracy | seeds | test people (mean) |")
        print("|---|---:|---:|---:|---:|")
    for row, runs in results.items():
        cells = []
        for key in keys:
            values = [r[key] for r in runs if key in r]
            if not values:
                cells.append("-")
                continue
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.1f}" if task == "nana" and len(values) == 1 else
                         f"{statistics.mean(values):.4f} ± {sd:.4f}" if task != "nana" else
                         f"{statistics.mean(values):.1f} ± {sd:.1f}")
        n = statistics.mean(r["n"] for r in runs)
        tail = f" | {n:,.0f} |" if task == "nana" else f" | {len(runs)} | {n:,.0f} |"
        print(f"| {row} | " + " | ".join(cells) + tail)


def run_baselines(splits: Path, task: str, features: Sequence[str], seeds: Sequence[int], fold: bool,
                  predictions: Path | None, train_rows: int | None = None) -> dict[str, list[dict[str, float]]]:
    """Fit and score each baseline on each split (``train_rows``: a random sample of the training
    file that size, seeded, where fitting on all of it takes too long)."""
    results: dict[str, list[dict[str, float]]] = {}
    for seed, folder in _task_folders(splits, task, seeds):
        train = read_people_csv(folder / "train.csv")
        if train_rows is not None and train_rows < len(train):
            train = train.sample(n=train_rows, random_state=seed).sort_index()
        test = read_people_csv(folder / "test.csv")
        for feature in features:
            start = time.perf_counter()
            pipe = fit_baseline(train, task, feature, fold, seed)
            fitted = time.perf_counter() - start
            ranked = baseline_ranked(pipe, test, fold)
            metrics = score_ranked(test[label_column(task)].to_list(), ranked, task) | {"n": len(test)}
            metrics["seconds"] = round(time.perf_counter() - start, 1)
            row = (f"TF-IDF + LinearSVC, {feature}{' (folded to ASCII)' if fold else ''}"
                   f"{f', {len(train):,} training rows' if train_rows else ''}")
            results.setdefault(row, []).append(metrics)
            print(json.dumps({"task": task, "seed": seed, "features": feature, "fold": fold, "train_rows": len(train),
                              "fit_seconds": round(fitted, 1), **metrics}), flush=True)
            if predictions is not None:
                predictions.mkdir(parents=True, exist_ok=True)
                _write_predictions(ranked, test, predictions / f"{folder.name}_{feature}{'_ascii' if fold else ''}.csv")
    return results


# ----------------------------------------------------------------------------- the command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fullnames", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    split = sub.add_parser("split", help="write the NaNa and origins split files")
    split.add_argument("--corpus", default="data/wikipedia_people.csv")
    split.add_argument("--out", default="data/fullname_splits")
    split.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="origins splits, one per seed")
    split.add_argument("--nana-seed", type=int, default=0)
    split.add_argument("--force", action="store_true", help="overwrite split files already in --out")
    base = sub.add_parser("baseline", help="TF-IDF + LinearSVC on the split files, and the table")
    base.add_argument("--splits", default="data/fullname_splits")
    base.add_argument("--task", choices=["nana", "origins"], required=True)
    base.add_argument("--features", nargs="+", choices=FEATURES, default=["full", "surname"])
    base.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="origins: which splits")
    base.add_argument("--ascii", action="store_true", help="fold the parts to ASCII first (the model alphabet)")
    base.add_argument("--train-rows", type=int, metavar="N", help="fit on a random sample of N training rows")
    base.add_argument("--write-predictions", type=Path, metavar="DIR",
                      help="also write each run's ranked test answers, in the format `score` reads")
    score = sub.add_parser("score", help="score a model's ranked answers on a test file")
    score.add_argument("--splits", default="data/fullname_splits")
    score.add_argument("--task", choices=["nana", "origins"], required=True)
    score.add_argument("--seeds", type=int, nargs="+", default=[0], help="origins: which splits' test files")
    score.add_argument("--predictions", required=True, nargs="+",
                       help="CSV files (label_1 ..., optional name): one for nana, one per --seeds for origins")
    score.add_argument("--label", default="model", help="the row's name in the table")
    args = parser.parse_args(argv)
    try:
        if args.command == "split":
            summary = make_splits(args.corpus, args.out, args.seeds, args.nana_seed, args.force)
            print(json.dumps(summary, indent=2))
        elif args.command == "baseline":
            results = run_baselines(Path(args.splits), args.task, args.features, args.seeds, args.ascii,
                                    args.write_predictions, args.train_rows)
            _print_table(args.task, results)
        else:
            seeds = [0] if args.task == "nana" else args.seeds
            if len(args.predictions) != len(seeds):
                raise NamesError(f"{len(args.predictions)} predictions files for {len(seeds)} test files "
                                 f"({'nana: one' if args.task == 'nana' else 'one per --seeds'})")
            runs = []
            for seed, predictions in zip(seeds, args.predictions, strict=True):
                folder = _task_folders(Path(args.splits), args.task, [seed])[0][1]
                test = read_people_csv(folder / "test.csv")
                metrics = score_file(test, predictions, args.task) | {"n": len(test)}
                print(json.dumps({"task": args.task, "split": folder.name, "predictions": predictions, **metrics}))
                runs.append(metrics)
            _print_table(args.task, {args.label: runs})
    except NamesError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
