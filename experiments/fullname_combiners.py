"""Full-name combiners compared on cached part scores (``experiments.fullname_cache``), chosen on validation.

    python -m experiments.fullname_combiners cache/origins0
    python -m experiments.fullname_combiners cache/origins0 --surname-order 5 --given-order 6 \\
        --combiners label stacker:1 stacker:10
    python -m experiments.fullname_combiners cache/nana --surname-order 4 --given-order 4 --task nana

Each combiner (``--combiners``: ``label`` is the per-language combiner ``names train`` fitted
before the stacker; ``stacker:M`` full matrices pulled towards it by ``M`` per row;
``…/bB`` adds class-balanced row weights of power ``B``) is scored by 5-fold (``--folds``) cross-validation on
the validation people, the folds grouped by surname (the combiner is fitted on four fifths, with
and without given names, and scored on the fifth, with their given names and as bare surnames):
the choice is made on these figures, never on test. Then each is fitted on all the validation
people, as training does, and scored on the test people: accuracy, balanced accuracy and
precision@1/2/3/5 of the full name and of the bare surname; and the surname part alone.
With ``--no-cv``, the figures on the validation people the combiner was fitted on are printed
instead (in-sample: fair for ``label``'s few weights, e.g. to compare the parts' n-gram orders;
optimistic for a stacker). ``--json`` writes every figure.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_json
from namesclf.inference.parts import Combiner
from namesclf.training.fullname import COMBINER_L2, fit_combiner

FOLDS = 5


def parse_combiner(spec: str) -> dict[str, Any]:
    """``label``, ``stacker:M``, either with ``/bB``: :func:`fit_combiner`'s keyword arguments."""
    head, _, balance = spec.partition("/b")
    kwargs: dict[str, Any] = {"balance": float(balance) if balance else 0.0}
    if head.startswith("stacker:"):
        kwargs["matrix_l2"] = float(head.split(":", 1)[1])
    elif head != "label":
        raise SystemExit(f"unknown combiner {spec!r}: label, stacker:M, with an optional /bB")
    return kwargs


def scores(log_proba: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy (mean recall over the labels present) and precision@1/2/3/5."""
    order = np.argsort(-log_proba, axis=1)[:, :5]
    top = order[:, 0]
    recalls = [float((top[y == c] == c).mean()) for c in np.unique(y)]
    out = {"accuracy": float((top == y).mean()), "balanced_accuracy": float(np.mean(recalls))}
    for k in (1, 2, 3, 5):
        out[f"p@{k}"] = float((order[:, :k] == y[:, None]).any(axis=1).mean())
    return out


def evaluate(combiner: Combiner, ls: np.ndarray, lg: np.ndarray, has_given: np.ndarray, y: np.ndarray
             ) -> dict[str, dict[str, float]]:
    full = combiner.logits(ls.astype(np.float64), lg.astype(np.float64), has_given)
    bare = combiner.logits(ls.astype(np.float64), lg.astype(np.float64), np.zeros_like(has_given))
    return {"full_name": scores(full, y), "bare_surname": scores(bare, y)}


def folds(keys: np.ndarray, n_folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """Each row's fold, the rows of one surname key in one fold."""
    distinct, inverse = np.unique(keys, return_inverse=True)
    return np.random.default_rng(seed).integers(0, n_folds, len(distinct))[inverse]


def fit(kwargs: dict[str, Any], ls: np.ndarray, lg: np.ndarray, has_given: np.ndarray, y: np.ndarray,
        l2: float) -> Combiner:
    return fit_combiner(np.exp(ls), np.exp(lg), has_given, y, l2, bare_too=True, **kwargs)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", type=Path)
    parser.add_argument("--surname-order", default="5", help="the cached surname part's tag: 5, or 5_d0.9")
    parser.add_argument("--given-order", default="5")
    parser.add_argument("--combiners", nargs="+", default=["label", "stacker:1", "stacker:10", "stacker:100"])
    parser.add_argument("--l2", type=float, default=COMBINER_L2)
    parser.add_argument("--folds", type=int, default=FOLDS, help="cross-validation folds on the validation people")
    parser.add_argument("--no-cv", action="store_true", help="skip the cross-validation (test figures only)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    people = np.load(args.cache / "people.npz")
    surname = np.load(args.cache / f"surname_o{args.surname_order}.npz")
    given = np.load(args.cache / f"given_o{args.given_order}.npz")
    v = (surname["valid"], given["valid"], people["valid_has_given"], people["valid_y"])
    t = (surname["test"], given["test"], people["test_has_given"], people["test_y"])
    fold = folds(people["valid_key"], args.folds)
    out: dict[str, Any] = {"cache": str(args.cache), "surname_order": args.surname_order,
                           "given_order": args.given_order, "n_valid": len(v[3]), "n_test": len(t[3]),
                           "surname_part_test": scores(t[0], t[3]), "combiners": {}}
    for spec in args.combiners:
        kwargs = parse_combiner(spec)
        started = time.perf_counter()
        row: dict[str, Any] = {}
        if not args.no_cv:
            pooled = {name: np.zeros(v[0].shape) for name in ("full_name", "bare_surname")}
            for k in range(args.folds):
                train, held = fold != k, fold == k
                combiner = fit(kwargs, *(a[train] for a in v), args.l2)
                ls, lg = v[0][held].astype(np.float64), v[1][held].astype(np.float64)
                pooled["full_name"][held] = combiner.logits(ls, lg, v[2][held])
                pooled["bare_surname"][held] = combiner.logits(ls, lg, np.zeros(int(held.sum()), dtype=bool))
            row["cv"] = {name: scores(z, v[3]) for name, z in pooled.items()}
        combiner = fit(kwargs, *v, args.l2)
        row["valid_in_sample"] = evaluate(combiner, *v)
        row["test"] = evaluate(combiner, *t)
        row["seconds"] = round(time.perf_counter() - started, 1)
        out["combiners"][spec] = row
        cv, cv_bare = row.get("cv", {}).get("full_name"), row.get("cv", {}).get("bare_surname")
        te = row["test"]["full_name"]
        print(f"{spec:18s} " + (f"cv acc {cv['accuracy']:.4f} bal {cv['balanced_accuracy']:.4f} P@1/3 "
                                f"{100 * cv['p@1']:.1f}/{100 * cv['p@3']:.1f} (bare {cv_bare['accuracy']:.4f} "
                                f"{cv_bare['balanced_accuracy']:.4f}) | " if cv else
                                f"valid (in-sample) acc {row['valid_in_sample']['full_name']['accuracy']:.4f} bal "
                                f"{row['valid_in_sample']['full_name']['balanced_accuracy']:.4f} | ")
              + f"test acc {te['accuracy']:.4f} bal {te['balanced_accuracy']:.4f} "
              + "P@1/2/3/5 " + " / ".join(f"{100 * te[f'p@{k}']:.1f}" for k in (1, 2, 3, 5))
              + f" | bare test acc {row['test']['bare_surname']['accuracy']:.4f} "
              f"bal {row['test']['bare_surname']['balanced_accuracy']:.4f} ({row['seconds']} s)", flush=True)
    sp = out["surname_part_test"]
    print(f"{'surname part':18s} test acc {sp['accuracy']:.4f} bal {sp['balanced_accuracy']:.4f}")
    if args.json is not None:
        write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
