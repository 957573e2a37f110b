"""Measure what the real-names options promise, on the grouped split (docs/realnames.md).

    python -m experiments.realnames data/names sets --seeds 0 1 2     # coverage, set size, priors, full names
    python -m experiments.realnames data/names lolo --seed 0          # "none of these": leave one language out
    python -m experiments.realnames data/names wild --model M --corpus data/wikipedia.csv   # ... on real people

``sets`` trains the default model once per seed (``--models DIR`` keeps the files and reuses them)
and, on that seed's test names, reports: marginal and per-language coverage and mean set size at
0.8 / 0.9 / 0.95 for per-language and marginal calibration; accuracy, macro-F1 and balanced accuracy
under the train and uniform priors; the share of test names abstained on at the default 5% rate
(all of them are of known languages); and how often "Given Surname" gets the surname's answer,
with the given name another name of the same language.

``lolo`` trains without each language in turn (same split, that language's rows removed) and
scores its names against the in-set test names: AUROC of each novelty score (the learned one, and
the baselines max-probability and n-gram nats per letter), the share of the held-out language
abstained on at each score's 5% threshold (chosen on the validation names), and the share of
in-set test names wrongly abstained on. These models skip the n-gram refit, so the validation
names stay held out for every score's threshold.

``wild`` takes a model trained on DATA and another corpus (the Wikipedia people): surnames the
corpus labels only with languages the model does not know are the novel names, surnames it labels
with the model's languages (and that DATA does not hold) the in-set ones. Same scores and figures,
at the model's own 5% threshold for the learned score. The corpus file already leaves out the
reserved slice.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

from benchmarks.common import write_json
from namesclf.config import TrainConfig
from namesclf.data.dataset import load_names, split_names
from namesclf.inference.conformal import conformal_quantile
from namesclf.inference.predictor import Predictor
from namesclf.training.pipeline import train_and_evaluate
from namesclf.training.train import train_classifier

COVERAGES = (0.8, 0.9, 0.95)


def seed_model(data: Any, seed: int, models: Path | None, train_args: dict[str, Any]) -> Predictor:
    """The default model for ``seed``: trained now, or loaded from ``models`` when it is there."""
    path = (models / f"seed{seed}.pt") if models else Path(f"/tmp/realnames-seed{seed}.pt")
    if not (models and path.exists()):
        train_and_evaluate(data, TrainConfig(seed=seed, **train_args), out=path, report_dir=path.with_suffix(".report"),
                           progress=False)
    return Predictor.load(str(path))


def sets_report(predictor: Predictor, test: pd.DataFrame) -> dict[str, Any]:
    labels = predictor.labels
    y = test["language"].to_numpy()
    out: dict[str, Any] = {}
    for per_language in (True, False):
        for coverage in COVERAGES:
            answers = predictor.predict(test["ascii"].tolist(), 1, coverage=coverage, per_language=per_language,
                                        surname_only=True)
            hit = np.array([lang in a.prediction_set for lang, a in zip(y, answers, strict=True)])
            size = np.array([len(a.prediction_set) for a in answers])
            per = {lang: float(hit[y == lang].mean()) for lang in labels if (y == lang).any()}
            key = f"{'per_language' if per_language else 'marginal'}@{coverage}"
            out[key] = {"coverage": float(hit.mean()), "mean_size": float(size.mean()),
                        "min_language_coverage": min(per.values()), "per_language": per,
                        "fallback": [labels[i] for i in predictor.conformal(coverage, per_language).fallback]}
    for prior in ("train", "uniform"):
        pred = [a.languages[0][0] for a in predictor.predict(test["ascii"].tolist(), 1, prior=prior,
                                                             surname_only=True)]
        out[f"prior={prior}"] = {"accuracy": float(accuracy_score(y, pred)),
                                 "macro_f1": float(f1_score(y, pred, average="macro")),
                                 "balanced_accuracy": float(balanced_accuracy_score(y, pred))}
    return out


def full_name_agreement(predictor: Predictor, frame: pd.DataFrame, test: pd.DataFrame, seed: int) -> float:
    """Share of test names whose answer is the same as "Given Surname", the given name another
    (first word of a) name of the same language."""
    rng = np.random.default_rng(seed)
    by_language = {lang: sub["name"].tolist() for lang, sub in frame.groupby("language")}
    given = [str(rng.choice(by_language[lang])).split()[0] for lang in test["language"]]
    alone = predictor.predict(test["name"].tolist(), 1, surname_only=True)
    full = predictor.predict([f"{g} {n}" for g, n in zip(given, test["name"], strict=True)], 1)
    return float(np.mean([a.languages[0][0] == f.languages[0][0] for a, f in zip(alone, full, strict=True)]))


def run_sets(args: argparse.Namespace) -> dict[str, Any]:
    data = load_names(args.data)
    frame = data.frame
    results = {}
    for seed in args.seeds:
        predictor = seed_model(data, seed, args.models, {})
        test = frame[split_names(frame, seed=seed) == "test"]
        report = sets_report(predictor, test)
        report["full_names"] = full_name_agreement(predictor, frame, test, seed)
        report["abstained_inset"] = float(np.mean([a.abstained for a in predictor.predict(
            test["ascii"].tolist(), 1, abstain=True, surname_only=True)]))
        results[seed] = report
        line = "  ".join(f"{k} cov {v['coverage']:.3f} size {v['mean_size']:.2f}" for k, v in report.items()
                         if "@" in k)
        print(f"seed {seed}: {line}", flush=True)
        print(f"seed {seed}: " + "  ".join(f"{k} bal-acc {v['balanced_accuracy']:.4f} acc {v['accuracy']:.4f}"
                                           for k, v in report.items() if k.startswith("prior")) +
              f"  full names agree {report['full_names']:.4f}  abstained {report['abstained_inset']:.4f}", flush=True)
    keys = [k for k in results[args.seeds[0]] if isinstance(results[args.seeds[0]][k], dict)]
    print("\nmean over seeds " + ", ".join(map(str, args.seeds)))
    for key in keys:
        fields = [f for f in ("coverage", "mean_size", "min_language_coverage", "accuracy", "macro_f1",
                              "balanced_accuracy") if f in results[args.seeds[0]][key]]
        shown = "  ".join(f"{f} {statistics.mean(results[s][key][f] for s in args.seeds):.4f}" for f in fields)
        print(f"  {key:<22} {shown}")
    for key in ("full_names", "abstained_inset"):
        print(f"  {key:<22} {statistics.mean(results[s][key] for s in args.seeds):.4f}")
    return {str(k): v for k, v in results.items()}


def _scores(predictor: Predictor, names: list[str]) -> dict[str, np.ndarray]:
    """Higher = more novel, for each score compared."""
    proba, features = predictor.score_ascii(names, features=True)
    open_set = predictor.open_set
    return {"novelty (learned)": open_set.scorer(features), "max-probability": -proba.max(axis=1),
            "n-gram nats/letter": features[:, 1]}


def run_lolo(args: argparse.Namespace) -> dict[str, Any]:
    frame = load_names(args.data).frame
    split = split_names(frame, seed=args.seed)
    languages = args.languages or sorted(frame["language"].unique())
    rows = {}
    for held in languages:
        started = time.perf_counter()
        keep = frame["language"] != held
        parts = {s: frame[(split == s) & keep] for s in ("train", "valid", "test")}
        # No refit: the validation names must stay held out for every score's threshold to be read
        # off them (the model's own threshold is taken before its refit, as training does).
        config = TrainConfig(seed=args.seed, refit_ngram=False, **({"epochs": args.epochs} if args.epochs else {}))
        result = train_classifier(parts["train"], parts["valid"], config, progress=False)
        predictor = Predictor(result.model, result.labels, meta={"calibration": result.calibration})
        held_keys = set(frame.loc[~keep, "ascii"].str.lower())
        inset = parts["test"][~parts["test"]["ascii"].str.lower().isin(held_keys)].drop_duplicates("ascii")
        seen = set(parts["train"]["ascii"].str.lower())
        novel = frame[~keep & ~frame["ascii"].str.lower().isin(seen)].drop_duplicates("ascii")
        valid = parts["valid"].drop_duplicates("ascii")
        s_in, s_out, s_valid = (_scores(predictor, d["ascii"].tolist()) for d in (inset, novel, valid))
        for scores in (s_in, s_out, s_valid):  # each standardised on the validation names: no novel name used
            scores["learned + max-probability"] = sum(
                (scores[k] - s_valid[k].mean()) / s_valid[k].std() for k in ("novelty (learned)", "max-probability"))
        row: dict[str, Any] = {"n_novel": len(novel), "n_inset": len(inset)}
        for name in s_in:
            truth = np.r_[np.zeros(len(s_in[name])), np.ones(len(s_out[name]))]
            threshold = conformal_quantile(s_valid[name], 0.95)
            row[name] = {"auroc": float(roc_auc_score(truth, np.r_[s_in[name], s_out[name]])),
                         "abstained_novel": float((s_out[name] > threshold).mean()),
                         "abstained_inset": float((s_in[name] > threshold).mean())}
        rows[held] = row
        print(f"{held:<11} " + "  ".join(f"{n}: AUROC {v['auroc']:.3f} abstains {v['abstained_novel']:.2f} "
                                         f"(in-set {v['abstained_inset']:.3f})" for n, v in row.items()
                                         if isinstance(v, dict)) + f"  [{time.perf_counter() - started:.0f}s]",
              flush=True)
    names = [n for n in rows[languages[0]] if isinstance(rows[languages[0]][n], dict)]
    print("\nmean over held-out languages")
    for name in names:
        means = {f: statistics.mean(rows[h][name][f] for h in languages) for f in ("auroc", "abstained_novel",
                                                                                    "abstained_inset")}
        print(f"  {name:<20} AUROC {means['auroc']:.3f}  abstains on {means['abstained_novel']:.3f} of novel names, "
              f"{means['abstained_inset']:.3f} of in-set test names")
    return rows


def run_wild(args: argparse.Namespace) -> dict[str, Any]:
    predictor = Predictor.load(str(args.model))
    known = set(load_names(args.data).frame["ascii"].str.lower())
    corpus = load_names(args.corpus).frame
    corpus = corpus[~corpus["ascii"].str.lower().isin(known)]
    labels_of = corpus.groupby("ascii")["language"].agg(set)
    inside = labels_of[labels_of.map(lambda s: s <= set(predictor.labels))].index.tolist()
    outside = labels_of[labels_of.map(lambda s: not s & set(predictor.labels))].index.tolist()
    s_in, s_out = _scores(predictor, inside), _scores(predictor, outside)
    threshold = predictor.open_set.threshold(0.05)
    rows: dict[str, Any] = {"n_inset": len(inside), "n_novel": len(outside),
                            "novel_languages": sorted(set(corpus["language"]) - set(predictor.labels))}
    for name in s_in:
        truth = np.r_[np.zeros(len(s_in[name])), np.ones(len(s_out[name]))]
        rows[name] = {"auroc": float(roc_auc_score(truth, np.r_[s_in[name], s_out[name]]))}
    rows["novelty (learned)"].update({"abstained_novel": float((s_out["novelty (learned)"] > threshold).mean()),
                                      "abstained_inset": float((s_in["novelty (learned)"] > threshold).mean())})
    print(f"{len(inside):,} in-set surnames, {len(outside):,} novel ({', '.join(rows['novel_languages'])})")
    for name, v in rows.items():
        if isinstance(v, dict):
            print(f"  {name:<20} " + "  ".join(f"{k} {x:.3f}" for k, x in v.items()))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.realnames", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    sub = parser.add_subparsers(dest="command", required=True)
    sets = sub.add_parser("sets", help="coverage and set size, priors, full names (per seed)")
    sets.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    sets.add_argument("--models", type=Path, default=None, help="keep (and reuse) the seeds' model files here")
    lolo = sub.add_parser("lolo", help="leave one language out: novelty scores")
    lolo.add_argument("--seed", type=int, default=0)
    lolo.add_argument("--epochs", type=int, default=None, help="fewer epochs for a quicker, weaker network")
    lolo.add_argument("--languages", nargs="+", default=None, help="hold out only these")
    wild = sub.add_parser("wild", help="novelty on another corpus's surnames (e.g. Wikipedia people)")
    wild.add_argument("--model", type=Path, required=True, help="a model trained on DATA")
    wild.add_argument("--corpus", type=Path, required=True, help="e.g. data/wikipedia.csv")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.command == "sets" and args.models:
        args.models.mkdir(parents=True, exist_ok=True)
    results = {"sets": run_sets, "lolo": run_lolo, "wild": run_wild}[args.command](args)
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
