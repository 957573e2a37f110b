"""Score models trained on one corpus on another corpus's test names (docs/corpora.md).

    python -m experiments.crosscorpus models/names.pt=data/names models/wikipedia.pt=data/wikipedia.csv

Each MODEL=DATA pair is a model and the corpus it was trained on. Every model is scored on every
corpus's test split (rebuilt from the seed in that corpus's own model file), restricted to the
(name, language) pairs whose language both the model and that corpus have. Two rows per pair:
the model answering over all its languages, and answering over the shared languages only (a prior
of 0 on the others and the training mix on the shared ones, by Bayes' rule), which is what a user
who knows the population is limited to those languages would do. Balanced accuracy (mean recall
per language) is the headline: the corpora's language mixes differ too much for plain accuracy
to compare.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence

from namesclf.data.dataset import load_names, split_names
from namesclf.inference.predictor import Predictor
from namesclf.report.evaluate import evaluate


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.crosscorpus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pairs", nargs="+", metavar="MODEL=DATA")
    args = parser.parse_args(argv)
    # balanced accuracy over the shared languages warns that answers name other languages: they are wrong answers
    warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
    pairs = [p.split("=", 1) for p in args.pairs]
    models = {m: Predictor.load(m) for m, _ in pairs}
    tests = {}
    for model, data in pairs:
        frame = load_names(data).frame
        seed = int(models[model].meta.get("split_seed", 0))
        tests[data] = frame[split_names(frame, seed=seed) == "test"]
    print(f"{'model':<28} {'test names of':<26} {'answers over':<14} {'pairs':>7} {'languages':>9} "
          f"{'accuracy':>8} {'macro-F1':>8} {'balanced':>8}")
    for model, _ in pairs:
        predictor = models[model]
        for data, test in tests.items():
            shared = sorted(set(predictor.labels) & set(test["language"]))
            rows = test[test["language"].isin(shared)]
            # the training mix with the other languages at 0: the same model, told they do not occur
            mix = predictor.trained_on
            only_shared = {lang: float(mix[i]) if lang in shared else 0.0 for i, lang in enumerate(predictor.labels)}
            for name, prior in (("all", None), ("shared only", only_shared)):
                m = evaluate(predictor, rows, prior=prior).metrics
                print(f"{model:<28} {data:<26} {name:<14} {m['n']:>7,} {len(shared):>9} {m['accuracy']:>8.4f} "
                      f"{m['macro_f1']:>8.4f} {m['balanced_accuracy']:>8.4f}", flush=True)


if __name__ == "__main__":
    main()
