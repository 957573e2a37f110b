"""How often the letters explain the answer: on a model's grouped test split, which half of the
pooled classifier favours the answer over the runner-up (docs/explain.md).

    python -m experiments.explain data/names --model models/names.pt --seed 0

The model must have been trained on DATA with the same ``--seed`` (so the test names were held
out). Each distinct test name (the reserved slice left out) is explained once; the names are then
grouped by whether the n-gram half (its letters plus its training prior) and the network each
favour the answer, with the accuracy of the answer in each group: where the n-gram half
disagrees, the letters argue for the runner-up and the network or the pool's prior shift carried
the answer.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.explain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("--model", default="models/names.pt")
    parser.add_argument("--seed", type=int, default=0, help="The seed the model was trained with (its split).")
    args = parser.parse_args(argv)

    from namesclf.data.dataset import load_names, split_names
    from namesclf.data.surname_rules import is_reserved
    from namesclf.inference.predictor import Predictor

    frame = load_names(Path(args.data)).frame
    test = frame[split_names(frame, seed=args.seed) == "test"]
    test = test[~test["ascii"].map(is_reserved)]
    truth = test.groupby("ascii")["language"].agg(set)  # a name listed under several languages: any is right
    names = truth.index.tolist()
    predictions = Predictor.load(args.model).predict(names, k=2, explain=True, surname_only=True)
    groups: dict[tuple[bool, bool], list[bool]] = {}
    for name, p in zip(names, predictions, strict=True):
        e = p.explanation
        assert e is not None
        groups.setdefault((e.ngram > 0, e.network > 0), []).append(e.language in truth[name])
    total = len(names)
    print(f"{total:,} distinct test names (seed {args.seed}), answer against runner-up")
    print(f"{'n-gram half':12} {'network':8} {'names':>7} {'share':>7} {'answer right':>13}")
    for ngram, network in ((True, True), (True, False), (False, True), (False, False)):
        right = groups.get((ngram, network), [])
        share = len(right) / total
        accuracy = f"{sum(right) / len(right):.3f}" if right else "-"
        print(f"{'favours' if ngram else 'against':12} {'favours' if network else 'against':8} {len(right):7,} "
              f"{share:7.1%} {accuracy:>13}")


if __name__ == "__main__":
    main()
