"""The full-name model on fixed split files (docs/experiments.md, "Full names"): train, test, compare.

    python -m experiments.fullname_model data/fullname_splits/nana --label-column nationality --order 4
    python -m experiments.fullname_model data/fullname_splits/origins_seed0

``SPLITS`` holds ``train.csv``, ``valid.csv`` and ``test.csv`` of people (the corpus's columns,
written by ``python -m benchmarks.fullnames split``). Both parts are trained on ``train.csv``, the
combiner and calibration fitted on ``valid.csv``, and on ``test.csv`` the script prints, for
the full-name model, the same model reading each test person's bare surname, and the surname
part alone: accuracy, balanced accuracy, macro-F1 and precision@1/2/3/5; then training seconds
and the process's peak resident memory. ``--out`` writes the model file (and its ONNX exports)
for later prediction, ``--json`` the figures. ``--combiner`` is ``label`` (one weight per
language and part) or ``stacker:M`` (full matrices pulled towards it by ``M`` per validation
row), either with ``/bB`` for class-balanced row weights of power
``B`` (``experiments.fullname_combiners`` compares them on cached part scores; the default is
``names train``'s, ``stacker:300/b0.2``).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from benchmarks.common import write_json
from namesclf.config import TrainConfig
from namesclf.data.people import load_people
from namesclf.inference.predictor import Predictor
from namesclf.training.fullname import (
    COMBINER_BALANCE,
    DEFAULT_ORDER,
    STACKER_L2,
    SURNAME_ROWS,
    people_scores,
    train_full_name,
)


def write_predictions(predictor: Predictor, test_csv: Path, out: Path) -> None:
    """The top 5 labels of every row of ``test_csv`` (given and surname columns, as they are)."""
    import pandas as pd

    from namesclf.inference.options import Options

    test = pd.read_csv(test_csv, dtype=str, keep_default_na=False)
    answers = predictor.predict_with(test["surname"].tolist(), Options(k=5), strict=False,
                                     given=test["given"].tolist())
    columns = {f"label_{i + 1}": [a.languages[i][0] if len(a.languages) > i else "" for a in answers]
               for i in range(5)}
    pd.DataFrame({"name": test["name"], **columns}).to_csv(out, index=False)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("splits", type=Path)
    parser.add_argument("--label-column", default="language")
    parser.add_argument("--order", type=int, default=DEFAULT_ORDER, help="the parts' n-gram order")
    parser.add_argument("--given-order", type=int, default=None, help="the given part n-gram order (default: --order)")
    parser.add_argument("--surname-rows", choices=SURNAME_ROWS, default="distinct",
                        help="the surname part counts distinct (surname, label) pairs or every person's")
    parser.add_argument("--combiner", default=(f"stacker:{STACKER_L2:g}" if STACKER_L2 is not None else "label")
                        + (f"/b{COMBINER_BALANCE:g}" if COMBINER_BALANCE else ""),
                        help="label, stacker:M, either with /bB (class-balanced row weights of power B)")
    parser.add_argument("--network", action="store_true",
                        help="the surname part is the pooled GRU + n-gram (names train's defaults) instead")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the model file (.pt) and its exports here")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--predictions", type=Path, default=None,
                        help="write the top 5 labels of every test row, in test.csv's order (label_1..label_5), "
                        "for `python -m benchmarks.fullnames score`")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    sets = {name: load_people(args.splits / f"{name}.csv", args.label_column).frame
            for name in ("train", "valid", "test")}
    loaded = time.perf_counter() - started
    from experiments.fullname_combiners import parse_combiner

    combiner = parse_combiner(args.combiner)
    result = train_full_name(sets["train"], sets["valid"], TrainConfig(seed=args.seed), network=args.network,
                             order=args.order, given_order=args.given_order, surname_rows=args.surname_rows,
                             matrix_l2=combiner.get("matrix_l2"), balance=combiner["balance"], progress=False)
    trained = time.perf_counter() - started
    full = result.predictor()
    surname_part = Predictor(result.surname.model, result.surname.labels, meta={}, config=result.surname.config)
    figures = {
        "splits": str(args.splits), "label_column": args.label_column, "order": args.order,
        "given_order": args.given_order or args.order, "surname_rows": args.surname_rows, "combiner": args.combiner,
        "network": args.network, "seed": args.seed,
        "n_train": len(sets["train"]), "n_valid": len(sets["valid"]),
        "full_name": people_scores(full, sets["test"]),
        "full_name_bare_surname": people_scores(full, sets["test"], surname_only=True),
        "surname_part": people_scores(surname_part, sets["test"], surname_only=True),
        "seconds": {"load": round(loaded, 1), "train": round(trained - loaded, 1),
                    "surname_part": round(result.surname.seconds, 1), "given_part": round(result.given.seconds, 1)},
    }
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if args.out is not None:
        from namesclf.models.checkpoint import save_checkpoint
        from namesclf.models.export import export_parts
        from namesclf.models.onnx_format import onnx_path_for

        payload = result.payload({"source": str(args.splits), "label_column": args.label_column,
                                  "test": figures["full_name"]})
        save_checkpoint(args.out, payload)
        export_parts(payload, onnx_path_for(args.out), source=args.out)
    for row in ("full_name", "full_name_bare_surname", "surname_part"):
        f = figures[row]
        print(f"{row:24s} acc {f['accuracy']:.4f}  bal {f['balanced_accuracy']:.4f}  macroF1 {f['macro_f1']:.4f}  "
              "P@1/2/3/5 " + " / ".join(f"{100 * f[f'precision_at_{k}']:.1f}" for k in (1, 2, 3, 5))
              + f"  (n={f['n']:,})")
    print(f"seconds {figures['seconds']}  peak RSS {figures['peak_rss_mb']:,} MB")
    if args.predictions is not None:
        write_predictions(full, args.splits / "test.csv", args.predictions)
    if args.json is not None:
        write_json(args.json, figures)
    return figures


if __name__ == "__main__":
    main()
