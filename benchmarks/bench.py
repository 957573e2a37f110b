"""The project against the PyTorch tutorial and the peers, side by side, in one process and one split.

    python -m benchmarks.bench                     # the full run
    python -m benchmarks.bench --quick             # 1 repeat, 20,000 tutorial steps, 4 epochs per model
    python -m benchmarks.bench --rows tutorial,handbuilt --repeats 5 --out tutorial.json
    python -m benchmarks.bench --rows none --serve models/names.pt   # the HTTP server alone
    python -m benchmarks.bench --rows none --speed models/names.pt   # cold start and batch CLI

How long each takes on which machine: docs/benchmarks.md, beside the figures.

Why one script and one process: figures taken on different days, splits or thread settings are
not comparable, and the comparisons this project makes (the batched hand-built RNN against the
tutorial's one-name-per-step loop, the default model against the n-gram baseline a practitioner
would try first, the neural language model against a count-based 4-gram) only mean something
when every row sees the same train/valid/test names (:func:`namesclf.data.dataset.split_names`, grouped by
name, 80/10/10), the same pinned number of torch threads and the same machine. The header of the
JSON says which machine, how busy it was (load average before and after) and the exact command.

Rows (``--rows`` takes their keys):

* ``tutorial``: "Classifying Names with a Character-Level RNN" re-implemented here: one random
  (language, name) pair from the train split per step, a one-hot line tensor, the linear
  hand-built RNN stepped letter by letter, NLLLoss and ``p.add_(p.grad, alpha=-0.005)``.
* ``handbuilt``: the same network in the project's batched loop, alone
  (``TrainConfig(model="handbuilt", ngram_order=0)``), so speed and accuracy compare like for like.
* ``handbuilt-pooled``: ``names train --model handbuilt`` as shipped: that network pooled with the
  4-gram half, like the torch cells.
* ``default``: ``TrainConfig()``; and one row per other recurrent kind (``rnn``, ``lstm``...).
* ``char-ngram-linear``: TF-IDF over character 1-4-grams + LinearSVC (scikit-learn defaults).
* ``lm-4gram``: a language-conditioned character 4-gram model (interpolated Kneser-Ney per
  language, mixed with the all-language model; discount and mixture tuned on valid): the
  package's :class:`namesclf.models.ngram.NgramBayes`, which is also the n-gram half of the default model.
* ``charlm``: the project's CharLM at ``LMConfig()``, and ``charlm-gru`` with a GRU cell.
  Language models are scored in nats per character on the test names, the end token counted;
  their accuracy is the Bayes classifier ``argmax_lang log p(name | lang) + log p(lang)``.

Every timed figure is the median of ``--repeats`` runs. Training is seeded and every repeat uses
the same seed, so repeats re-make the same model: accuracy, macro-F1 and nats come from the
first run (each run's figures are kept under ``runs``), and the repeats are there for the clock.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.svm import LinearSVC
from torch import nn

from benchmarks.common import load_average, machine_header, print_verdicts, verdicts, write_json
from namesclf.config import CLASSIFIER_KINDS, LMConfig, TrainConfig
from namesclf.data.dataset import load_names, single_language, split_names
from namesclf.inference.options import CPU_BATCH, GPU_BATCH
from namesclf.inference.predictor import Predictor
from namesclf.lm import generate
from namesclf.lm.data import EncodedLM, LMSource
from namesclf.lm.model import masked_nll
from namesclf.lm.train import LMTrainResult, train_lm
from namesclf.models.handbuilt import HandBuiltRNN
from namesclf.models.ngram import NgramBayes
from namesclf.report.metrics import classification_scores, single_language_scores
from namesclf.text import MAX_NAME_LENGTH, N_LETTERS, line_to_tensor
from namesclf.training.batches import EncodedSplit, predict_log_proba
from namesclf.training.pipeline import score_test, stored_figures
from namesclf.training.train import TrainResult, train_classifier

# ----------------------------------------------------------------------------- settings

#: The tutorial's hyper-parameters, as published.
TUTORIAL_HIDDEN = 128
TUTORIAL_LR = 0.005
#: The best language-model option measured so far; a row of its own when it is not the default.
BEST_LM_CELL = "gru"
#: The quality figures of every row (``*_single``: names listed under one language only).
SCORE_KEYS = ("accuracy", "macro_f1", "accuracy_single", "macro_f1_single")
#: The targets this bench checks (docs/benchmarks.md).
TARGET_SPEEDUP = 15.0
TARGET_ACCURACY_GAIN = 0.25
TARGET_PREDICT_PER_S = 50_000
TARGET_QUICK_SECONDS = 300.0


@dataclass(frozen=True)
class Plan:
    """How much work a run does; ``--quick`` and ``--smoke`` trade fidelity for time."""

    mode: str
    repeats: int
    tutorial_steps: int
    #: Epochs for every project model (classifiers and language models); None keeps their defaults.
    epochs: int | None
    #: Names per timed prediction pass for batched predictors (the test names, repeated).
    predict_names: int
    #: The same for rows that score one name at a time (tutorial) or under every language (LMs):
    #: they are far slower, and a smaller sample measures a steady rate just as well.
    predict_names_slow: int
    fidelity_n: int


PLANS = {
    "full": Plan("full", 3, 100_000, None, 50_000, 10_000, 100),
    # Four epochs keep --quick within its time target (TARGET_QUICK_SECONDS on 2 quiet cores); its
    # accuracies are below the full run's.
    "quick": Plan("quick", 1, 20_000, 4, 50_000, 5_000, 30),
    "smoke": Plan("smoke", 1, 200, 1, 500, 100, 4),
}


# ----------------------------------------------------------------------------- shared state


@dataclass
class Bench:
    """The data, the split and what rows hand to later rows (the default classifier for fidelity)."""

    plan: Plan
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    labels: list[str]
    seed: int
    device: str
    predict_batch: int | None
    source: str
    shared: dict[str, Any] = field(default_factory=dict)

    def y_test(self) -> np.ndarray:
        index = {lang: i for i, lang in enumerate(self.labels)}
        return np.array([index[x] for x in self.test["language"]])

    def scores(self, pred: np.ndarray) -> dict[str, Any]:
        """Accuracy and macro-F1 of test predictions (label indices), over every (name, language)
        pair and over the pairs of names listed under one language only."""
        y = self.y_test()
        return {**classification_scores(y, pred), **single_language_scores(y, pred, single_language(self.test))}

    def repeated_test(self, at_least: int) -> list[str]:
        """The test names (folded) repeated until there are ``at_least`` of them."""
        names = self.test["ascii"].tolist()
        return names * max(1, math.ceil(at_least / max(1, len(names))))


def median_seconds(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Median wall time of ``repeats`` calls (and every call's time)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def timed_prediction(bench: Bench, predict: Callable[[list[str]], Any], slow: bool = False) -> dict[str, Any]:
    """Names per second of ``predict`` over the repeated test names, median of the repeats.

    One small warm-up call first, so one-off costs (allocator, lazy init) are not timed.
    """
    names = bench.repeated_test(bench.plan.predict_names_slow if slow else bench.plan.predict_names)
    predict(names[: min(len(names), 256)])
    seconds, times = median_seconds(lambda: predict(names), bench.plan.repeats)
    return {"predict_names_per_s": len(names) / seconds, "predict_names": len(names),
            "predict_seconds": seconds, "predict_seconds_runs": times}


def train_figures(runs: list[dict[str, Any]], names_per_run: float) -> dict[str, Any]:
    """Median training seconds and names per second; quality figures from the first run."""
    seconds = statistics.median(r["train_seconds"] for r in runs)
    first = runs[0]
    out = {"train_seconds": seconds, "train_names_per_s": names_per_run / seconds}
    out.update({k: first[k] for k in (*SCORE_KEYS, "nats_per_char", "epochs") if k in first})
    out["runs"] = runs
    return out


# ----------------------------------------------------------------------------- the tutorial


def tutorial_train_step(rnn: HandBuiltRNN, criterion: nn.Module, category_tensor: torch.Tensor,
                        line_tensor: torch.Tensor) -> float:
    """The tutorial's ``train()``: one name, letter by letter, then a manual SGD step."""
    hidden = rnn.init_hidden()
    rnn.zero_grad()
    output = None
    for i in range(line_tensor.size(0)):
        output, hidden = rnn.step(line_tensor[i], hidden)
    loss = criterion(output, category_tensor)
    loss.backward()
    with torch.no_grad():
        for p in rnn.parameters():
            p.add_(p.grad, alpha=-TUTORIAL_LR)
    return loss.item()


@torch.no_grad()
def tutorial_predict(rnn: HandBuiltRNN, names: Sequence[str]) -> list[int]:
    """The tutorial's ``evaluate()`` then ``topk(1)``, one name at a time."""
    return [int(rnn.forward_line(line_to_tensor(name)).argmax(1)) for name in names]


def row_tutorial(bench: Bench) -> dict[str, Any]:
    """``randomTrainingExample`` from the train split: a random language, then a random name of it."""
    languages = [lang for lang in bench.labels if (bench.train["language"] == lang).any()]
    by_language = {lang: bench.train.loc[bench.train["language"] == lang, "ascii"].tolist()
                   for lang in languages}
    label_of = {lang: bench.labels.index(lang) for lang in languages}
    steps = bench.plan.tutorial_steps
    runs, first = [], None
    for _ in range(bench.plan.repeats):
        torch.manual_seed(bench.seed)
        rng = random.Random(bench.seed)
        rnn = HandBuiltRNN(N_LETTERS, TUTORIAL_HIDDEN, len(bench.labels), tanh=False)
        criterion = nn.NLLLoss()
        losses = []
        started = time.perf_counter()
        for _step in range(steps):
            category = rng.choice(languages)
            line = rng.choice(by_language[category])
            category_tensor = torch.tensor([label_of[category]], dtype=torch.long)
            losses.append(tutorial_train_step(rnn, criterion, category_tensor, line_to_tensor(line)))
        seconds = time.perf_counter() - started
        pred = tutorial_predict(rnn, bench.test["ascii"].tolist())
        tail = losses[-min(len(losses), 1000):]
        runs.append({"train_seconds": seconds, **bench.scores(np.array(pred)),
                     "final_loss": sum(tail) / max(1, len(tail))})
        if first is None:
            first = rnn
    assert first is not None
    row = {"steps": steps, **train_figures(runs, steps)}
    row.update(timed_prediction(bench, lambda names: tutorial_predict(first, names), slow=True))
    row["predict_batch"] = 1
    return row


# ----------------------------------------------------------------------------- project classifiers


def bench_config(bench: Bench, config: TrainConfig) -> TrainConfig:
    """The row's config with the bench's device, seed and (for --quick/--epochs) epoch count."""
    changes: dict[str, Any] = {"device": bench.device, "seed": bench.seed}
    if bench.plan.epochs is not None:
        changes["epochs"] = bench.plan.epochs
    return dataclasses.replace(config, **changes)


def row_classifier(bench: Bench, config: TrainConfig, keep_as: str | None = None) -> dict[str, Any]:
    """Train ``repeats`` times with the project's loop, test the first model, time its Predictor."""
    cfg = bench_config(bench, config)
    runs, first = [], None
    for _ in range(bench.plan.repeats):
        started = time.perf_counter()
        result = train_classifier(bench.train, bench.valid, cfg, progress=False)
        seconds = time.perf_counter() - started
        test = stored_figures(score_test(result.model, result.labels, bench.test))
        runs.append({"train_seconds": seconds, "epochs": len(result.history), "best_epoch": result.best_epoch,
                     **{k: test[k] for k in SCORE_KEYS}})
        if first is None:
            first = result
    assert first is not None
    row = {**train_figures(runs, len(bench.train) * runs[0]["epochs"]),
           "config": dataclasses.asdict(first.config)}
    predictor = Predictor(first.model, first.labels, bench.device)
    row.update(timed_prediction(bench, lambda names: predictor.proba_ascii(names, bench.predict_batch)))
    row["predict_batch"] = bench.predict_batch or (CPU_BATCH if predictor.device_type == "cpu" else GPU_BATCH)
    if keep_as:
        bench.shared[keep_as] = first
    return row


def row_ngram_linear(bench: Bench) -> dict[str, Any]:
    """TF-IDF character 1-4-grams (``char_wb``) + LinearSVC, scikit-learn defaults, on the folded names."""
    runs, first = [], None
    index = {lang: i for i, lang in enumerate(bench.labels)}
    for _ in range(bench.plan.repeats):
        pipe: Pipeline = make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4)),
                                       LinearSVC(random_state=bench.seed))
        started = time.perf_counter()
        pipe.fit(bench.train["ascii"].tolist(), bench.train["language"].tolist())
        seconds = time.perf_counter() - started
        pred = np.array([index[x] for x in pipe.predict(bench.test["ascii"].tolist())])
        runs.append({"train_seconds": seconds, **bench.scores(pred)})
        if first is None:
            first = pipe
    assert first is not None
    row = train_figures(runs, len(bench.train))
    row.update(timed_prediction(bench, first.predict))
    row["predict_batch"] = "all at once"
    return row


# ----------------------------------------------------------------------------- count-based 4-gram LM


def encoded(frame: pd.DataFrame, labels: Sequence[str]) -> EncodedSplit:
    return EncodedSplit.from_frame(frame, {lang: i for i, lang in enumerate(labels)})


def log_prior(bench: Bench) -> np.ndarray:
    """``log p(language)`` from the train split (add-one, so no language is impossible)."""
    counts = bench.train["language"].value_counts()
    n = np.array([counts.get(lang, 0) + 1 for lang in bench.labels], dtype=float)
    return np.log(n / n.sum())


def bayes_scores(bench: Bench, log_likelihood: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 of ``argmax_lang log p(name | lang) + log p(lang)`` on the test names."""
    pred = (log_likelihood + log_prior(bench)).argmax(axis=1)
    return bench.scores(pred)


def row_ngram_lm(bench: Bench) -> dict[str, Any]:
    """The package's :class:`~namesclf.models.ngram.NgramBayes` (order 4): count, tune on valid, then nats
    per character and the Bayes classifier on the test names. It is also the n-gram half of the
    default classifier, so this row shows what that half does alone."""
    runs, first = [], None
    train, valid, test = (encoded(part, bench.labels) for part in (bench.train, bench.valid, bench.test))
    for _ in range(bench.plan.repeats):
        started = time.perf_counter()
        lm = NgramBayes(len(bench.labels), order=4).fit(train.idx, train.lengths, train.labels)
        tuned = lm.tune(valid.idx, valid.lengths, valid.labels)
        seconds = time.perf_counter() - started
        with torch.inference_mode():
            scores = bayes_scores(bench, lm.log_likelihood(test.idx, test.lengths).double().numpy())
        runs.append({"train_seconds": seconds, "nats_per_char": lm.nats_per_char(test.idx, test.lengths, test.labels),
                     **scores, **tuned})
        if first is None:
            first = lm
    assert first is not None
    row = {"order": first.order, **train_figures(runs, len(bench.train)),
           "discount": float(first.discount), "mixture": float(first.mixture)}
    row.update(timed_prediction(bench, lambda names: predict_log_proba(first, EncodedSplit.from_names(names),
                                                                       torch.device("cpu"))))
    row["predict_batch"] = 2048
    return row


# ----------------------------------------------------------------------------- the project's CharLM


def lm_source(bench: Bench) -> LMSource:
    """The bench's split as an :class:`LMSource`, so the LM sees exactly the classifiers' names."""
    splits: dict[str, tuple[list[str], list[str] | None]] = {
        name: (part["ascii"].tolist(), part["language"].tolist())
        for name, part in (("train", bench.train), ("valid", bench.valid), ("test", bench.test))
    }
    everything = pd.concat([bench.train, bench.valid, bench.test])
    splits["all"] = (everything["ascii"].tolist(), everything["language"].tolist())
    return LMSource("names", bench.source, splits, list(bench.labels), bench.seed)


@torch.inference_mode()
def charlm_log_likelihoods(result: LMTrainResult, texts: Sequence[str], labels: Sequence[str],
                           batch_size: int = 1024) -> np.ndarray:
    """``log p(name | language)`` under a trained CharLM for every name and language: ``(N, L)``."""
    lm = result.lm
    model = lm.model.eval()
    lm_index = {lang: i for i, lang in enumerate(lm.languages)}
    base = EncodedLM.build(texts, lm.vocab, [0] * len(texts), MAX_NAME_LENGTH)
    order = torch.argsort(base.lengths, stable=True)
    out = np.full((len(texts), len(labels)), -np.inf)
    for j, lang in enumerate(labels):
        if lang not in lm_index:
            continue
        encoded = EncodedLM(base.seq, base.lengths, torch.full_like(base.languages, lm_index[lang]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            x, y, language = encoded.batch(rows, lm.device)
            logits, _ = model(x, language)
            nll = masked_nll(logits, y, reduction="none").view(y.shape).sum(0)
            out[rows.numpy(), j] = -nll.double().cpu().numpy()
    return out


def row_charlm(bench: Bench, config: LMConfig, keep_as: str | None = None) -> dict[str, Any]:
    """Train the project's CharLM through :func:`namesclf.lm.train.train_lm`; nats from its own test figure."""
    changes: dict[str, Any] = {"device": bench.device, "seed": bench.seed}
    if bench.plan.epochs is not None:
        changes["epochs"] = bench.plan.epochs
    cfg = dataclasses.replace(config, **changes)
    source = lm_source(bench)
    texts = bench.test["ascii"].tolist()
    runs, first = [], None
    for _ in range(bench.plan.repeats):
        started = time.perf_counter()
        result = train_lm(source, cfg, progress=False)
        seconds = time.perf_counter() - started
        scores = bayes_scores(bench, charlm_log_likelihoods(result, texts, bench.labels))
        runs.append({"train_seconds": seconds, "epochs": len(result.history), "best_epoch": result.best_epoch,
                     "nats_per_char": result.test["nats_per_token"], **scores})
        if first is None:
            first = result
    assert first is not None
    row = {**train_figures(runs, len(bench.train) * runs[0]["epochs"]), "config": dataclasses.asdict(cfg)}
    row.update(timed_prediction(bench, lambda names: charlm_log_likelihoods(first, names, bench.labels),
                                slow=True))
    row["predict_batch"] = 1024
    default = bench.shared.get("default")
    if keep_as and default is not None and hasattr(generate, "fidelity"):
        row.update(generation_fidelity(bench, first, default))
    return row


def generation_fidelity(bench: Bench, lm_result: LMTrainResult, classifier: TrainResult) -> dict[str, Any]:
    """Generated names judged by the default classifier: in the asked language? new?

    Reported, not fatal: a failure here is recorded as ``fidelity_error`` so the other figures
    of a long run survive (the smoke test insists it is absent).
    """
    predictor = Predictor(classifier.model, classifier.labels, bench.device)
    try:
        fid = generate.fidelity(lm_result.lm, predictor, lm_result.lm.languages, n=bench.plan.fidelity_n,
                                seed=bench.seed)
    except Exception as exc:  # see the docstring
        return {"fidelity_error": f"{type(exc).__name__}: {exc}"}
    per = {lang: {k: v for k, v in fig.items() if k in ("n", "in_language", "new")}
           for lang, fig in fid["per_language"].items()}
    return {"fidelity_in_language": fid["mean"]["in_language"], "fidelity_new": fid["mean"]["new"],
            "fidelity_n_per_language": bench.plan.fidelity_n, "fidelity_per_language": per,
            "fidelity_settings": {k: fid.get(k) for k in ("temperature", "guidance", "seed")}}


# ----------------------------------------------------------------------------- rows and targets


@dataclass(frozen=True)
class Row:
    key: str
    name: str
    run: Callable[[Bench], dict[str, Any]]
    language_model: bool = False


def pooled_suffix(config: TrainConfig) -> str:
    """`` + 4-gram`` when the config pools its network with the n-gram half, else nothing."""
    order = config.resolved().ngram_order
    return f" + {order}-gram" if order else ""


def all_rows() -> list[Row]:
    """Every row, in table order; names are read from the configs so they cannot go stale."""
    default = TrainConfig()
    rows = [Row("tutorial", "tutorial", row_tutorial)]
    # the tutorial's network alone, so its speed and accuracy compare with the tutorial's loop
    rows.append(Row("handbuilt", "handbuilt (alone)",
                    lambda b: row_classifier(b, TrainConfig(model="handbuilt", ngram_order=0))))
    if default.model != "handbuilt":
        rows.append(Row("handbuilt-pooled", f"handbuilt{pooled_suffix(TrainConfig(model='handbuilt'))}",
                        lambda b: row_classifier(b, TrainConfig(model="handbuilt"))))
    rows.append(Row("default", f"default ({default.model}{pooled_suffix(default)})",
                    lambda b: row_classifier(b, TrainConfig(), keep_as="default")))
    for kind in CLASSIFIER_KINDS:
        if kind not in ("handbuilt", default.model):
            rows.append(Row(kind, kind, lambda b, kind=kind: row_classifier(b, TrainConfig(model=kind))))
    rows.append(Row("char-ngram-linear", "char-ngram-linear", row_ngram_linear))
    rows.append(Row("lm-4gram", "lm-4gram", row_ngram_lm, language_model=True))
    lm_default = LMConfig()
    rows.append(Row("charlm", f"charlm ({lm_default.cell})",
                    lambda b: row_charlm(b, LMConfig(), keep_as="charlm"), language_model=True))
    if lm_default.cell != BEST_LM_CELL:
        rows.append(Row(f"charlm-{BEST_LM_CELL}", f"charlm ({BEST_LM_CELL})",
                        lambda b: row_charlm(b, LMConfig(cell=BEST_LM_CELL)), language_model=True))
    return rows


def select_rows(spec: str | None) -> list[Row]:
    """``--rows a,b,c`` (keys; the default model's kind is an alias of ``default``), in table order."""
    rows = all_rows()
    if not spec:
        return rows
    if spec == "none":  # e.g. the server rows alone (--serve)
        return []
    keys = {r.key for r in rows}
    wanted = set()
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item == TrainConfig().model:
            item = "default"
        if item not in keys:
            raise SystemExit(f"benchmarks.bench: unknown row {item!r}; rows are {', '.join(r.key for r in rows)}")
        wanted.add(item)
    return [r for r in rows if r.key in wanted]


def check_targets(rows: dict[str, dict[str, Any]], plan: Plan, wall_seconds: float) -> list[dict[str, Any]]:
    """The bench targets as PASS / FAIL / SKIP (a target whose rows were not run is skipped)."""
    out: list[dict[str, Any]] = []

    def add(name: str, needs: Sequence[str], test: Callable[[], tuple[bool, str]]) -> None:
        missing = [k for k in needs if k not in rows]
        if missing:
            out.append({"target": name, "status": "SKIP", "detail": f"row(s) not run: {', '.join(missing)}"})
            return
        ok, detail = test()
        out.append({"target": name, "status": "PASS" if ok else "FAIL", "detail": detail})

    def speedup() -> tuple[bool, str]:
        ratio = rows["handbuilt"]["train_names_per_s"] / rows["tutorial"]["train_names_per_s"]
        return ratio >= TARGET_SPEEDUP, f"{ratio:.1f}x (target >= {TARGET_SPEEDUP:g}x)"

    def gain() -> tuple[bool, str]:
        diff = rows["handbuilt"]["accuracy"] - rows["tutorial"]["accuracy"]
        return diff >= TARGET_ACCURACY_GAIN, (f"{rows['handbuilt']['accuracy']:.4f} vs "
                                              f"{rows['tutorial']['accuracy']:.4f}: {diff:+.4f} "
                                              f"(target >= +{TARGET_ACCURACY_GAIN})")

    def beats_baseline() -> tuple[bool, str]:
        d, b = rows["default"], rows["char-ngram-linear"]
        ok = d["accuracy"] > b["accuracy"] and d["macro_f1"] > b["macro_f1"]
        return ok, (f"accuracy {d['accuracy']:.4f} vs {b['accuracy']:.4f}, "
                    f"macro-F1 {d['macro_f1']:.4f} vs {b['macro_f1']:.4f}")

    def predicts_fast() -> tuple[bool, str]:
        rate = rows["default"]["predict_names_per_s"]
        return rate >= TARGET_PREDICT_PER_S, f"{rate:,.0f} names/s (target >= {TARGET_PREDICT_PER_S:,})"

    add("handbuilt trains >= 15x more names/s than tutorial", ("handbuilt", "tutorial"), speedup)
    add("handbuilt accuracy >= tutorial + 0.25", ("handbuilt", "tutorial"), gain)
    add("default beats char-ngram-linear on accuracy and macro-F1", ("default", "char-ngram-linear"),
        beats_baseline)
    add("default predicts >= 50,000 names/s in batch", ("default",), predicts_fast)
    if plan.mode == "quick":
        detail = (f"{wall_seconds:.0f} s (target < {TARGET_QUICK_SECONDS:.0f} s on 2 quiet cores; "
                  f"load average now {load_average()})")
        out.append({"target": "--quick finishes in under 5 minutes",
                    "status": "PASS" if wall_seconds < TARGET_QUICK_SECONDS else "FAIL", "detail": detail})
    return out


# ----------------------------------------------------------------------------- the HTTP server and prediction speed

TARGET_SERVE_GET_PER_S = 1_000
TARGET_SERVE_GET_P99_MS = 20.0
TARGET_SERVE_GET64_P99_MS = 100.0
TARGET_SERVE_POST_NAMES_PER_S = 100_000


def serve_figures(args: argparse.Namespace) -> dict[str, Any]:
    """The server rows of :mod:`benchmarks.load` (``--bench``) against ``names serve --model args.serve``.

    Kept in load, which also runs them alone; here they join the report so that one JSON says
    which machine, how busy it was, and what the server did on it. Imported here: it needs httpx,
    which the other rows do not.
    """
    from benchmarks import load

    data = args.data if Path(args.data).is_dir() else Path("data/names")
    print(f"server: names serve --model {args.serve} --workers {args.serve_workers}, "
          f"{args.serve_seconds:g} s a row", flush=True)
    result = load.server_bench(str(args.serve), data, workers=args.serve_workers, seconds=args.serve_seconds)
    load.print_bench(result)
    return result


def speed_figures(args: argparse.Namespace) -> dict[str, Any]:
    """:mod:`benchmarks.speed`'s rows (cold ``names predict``, ``--input`` on a million names, ONNX
    and torch) against ``args.speed``, joined to this report."""
    from benchmarks import speed

    data = args.data if Path(args.data).is_dir() else Path("data/names")
    print(f"prediction speed: names predict --model {args.speed}, {args.speed_names:,} names a batch row",
          flush=True)
    result = speed.measure(str(args.speed), data, args.speed_names, 5)
    result["targets"] = speed.targets(result)
    return result


def serve_targets(result: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The server targets (docs/http.md) as PASS / FAIL; none without ``--serve``."""
    if result is None:
        return []
    rows = result["rows"]
    get8, get64, post = rows["get_c8"], rows["get_c64"], rows["post_repeat_c8"]
    lost = {key: sum(row["socket_errors"].values()) if "socket_errors" in row else 0 for key, row in rows.items()}
    checks = [
        (f"GET, 8 connections: >= {TARGET_SERVE_GET_PER_S:,} req/s, p99 <= {TARGET_SERVE_GET_P99_MS:g} ms",
         get8["requests_per_s"] >= TARGET_SERVE_GET_PER_S and (get8["p99_ms"] or 1e9) <= TARGET_SERVE_GET_P99_MS
         and not get8["non_2xx"] and not lost["get_c8"],
         f"{get8['requests_per_s']:,.0f} req/s, p99 {get8['p99_ms']} ms, non-2xx {get8['non_2xx']}"),
        (f"GET, 64 connections: p99 <= {TARGET_SERVE_GET64_P99_MS:g} ms or the excess refused with 503, "
         "no socket errors",
         ((get64["p99_ms"] or 1e9) <= TARGET_SERVE_GET64_P99_MS or get64["non_2xx"] > 0) and not lost["get_c64"],
         f"{get64['requests_per_s']:,.0f} req/s, p99 {get64['p99_ms']} ms, non-2xx {get64['non_2xx']}, "
         f"socket errors {lost['get_c64']}"),
        (f"POST 1,000 names, 8 connections: >= {TARGET_SERVE_POST_NAMES_PER_S:,} names/s",
         post["names_per_s"] >= TARGET_SERVE_POST_NAMES_PER_S and not post["non_2xx"] and not lost["post_repeat_c8"],
         f"{post['names_per_s']:,} names/s (all-new names: {rows['post_unique_c8']['names_per_s']:,}), "
         f"measured with {result['tool']}"),
    ]
    return verdicts(checks)


def bench_header(args: argparse.Namespace, plan: Plan, threads: int) -> dict[str, Any]:
    """The machine header (:func:`benchmarks.common.machine_header`) and this run's settings."""
    return {
        **machine_header(),
        "torch_threads": threads,
        "torch_interop_threads": torch.get_num_interop_threads(),
        "mode": plan.mode,
        "repeats": plan.repeats,
        "tutorial_steps": plan.tutorial_steps,
        "epochs": plan.epochs if plan.epochs is not None else "each model's default",
        "seed": args.seed,
        "device": args.device,
        "data": str(args.data),
        "quality_figures": "from the first run (every repeat uses the same seed); timings: median of repeats",
    }


# ----------------------------------------------------------------------------- output


def fmt(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table of the headline figures, one line per row."""
    head = (f"{'row':<20} {'accuracy':>8} {'macro-F1':>8} {'single':>13} {'nats/ch':>7} {'epochs':>6} "
            f"{'train s':>8} {'train names/s':>13} {'predict names/s':>15}")
    lines = [head, "-" * len(head)]
    for r in rows:
        single = f"{fmt(r.get('accuracy_single'), '.4f')}/{fmt(r.get('macro_f1_single'), '.3f')}"
        lines.append(f"{r['name']:<20} {fmt(r.get('accuracy'), '.4f'):>8} {fmt(r.get('macro_f1'), '.4f'):>8} "
                     f"{single:>13} "
                     f"{fmt(r.get('nats_per_char'), '.3f'):>7} {fmt(r.get('epochs'), 'd'):>6} "
                     f"{fmt(r.get('train_seconds'), '.1f'):>8} {fmt(r.get('train_names_per_s'), ',.0f'):>13} "
                     f"{fmt(r.get('predict_names_per_s'), ',.0f'):>15}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="1 repeat, 20,000 tutorial steps, 4 epochs per model")
    mode.add_argument("--smoke", action="store_true",
                      help="seconds, for CI: a few steps and 1 epoch per model")
    parser.add_argument("--out", type=Path, default=Path("bench.json"),
                        help="JSON report, written after every row (default bench.json)")
    parser.add_argument("--data", type=Path, default=Path("data/names"), help="names folder or CSV")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--rows", default=None, help="comma-separated row keys (default: all)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs per timed figure (default 3; quick 1)")
    parser.add_argument("--steps", type=int, default=None,
                        help="tutorial steps (default 100,000; quick 20,000)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs for every project model (default: each model's own; quick 4)")
    parser.add_argument("--predict-batch", type=int, default=None,
                        help="names per forward pass when timing prediction (default: the Predictor's)")
    parser.add_argument("--seed", type=int, default=0, help="split and training seed (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device for the project's models (default cpu)")
    parser.add_argument("--serve", type=Path, default=None, metavar="MODEL",
                        help="also measure `names serve --model MODEL` (wrk when installed, else "
                        "benchmarks.load's clients); --rows none for the server alone")
    parser.add_argument("--serve-workers", type=int, default=2, help="server processes for --serve (default 2)")
    parser.add_argument("--serve-seconds", type=float, default=10.0, help="seconds per server row (default 10)")
    parser.add_argument("--speed", type=Path, default=None, metavar="MODEL",
                        help="also time a cold `names predict` and `names predict --input` on a million names "
                        "(benchmarks.speed) with MODEL and its ONNX export")
    parser.add_argument("--speed-names", type=int, default=1_000_000, help="names per --speed batch row")
    args = parser.parse_args(argv)
    for name in ("threads", "repeats", "steps", "epochs", "predict_batch", "serve_workers"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    plan = PLANS["smoke" if args.smoke else "quick" if args.quick else "full"]
    changes = {k: v for k, v in (("repeats", args.repeats), ("tutorial_steps", args.steps),
                                 ("epochs", args.epochs)) if v is not None}
    return dataclasses.replace(plan, **changes)


def pin_threads(threads: int) -> int:
    """Pin torch's intra-op (and, where still allowed, inter-op) threads; return what took."""
    torch.set_num_threads(threads)
    # Inter-op threads are only settable before the first parallel region; intra-op is what matters.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(threads)
    return torch.get_num_threads()


def main(argv: Sequence[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    rows_to_run = select_rows(args.rows)
    plan = make_plan(args)
    threads = pin_threads(args.threads)
    data = load_names(args.data)
    split = split_names(data.frame, seed=args.seed)
    parts = {name: data.frame[split == name].reset_index(drop=True) for name in ("train", "valid", "test")}
    bench = Bench(plan, parts["train"], parts["valid"], parts["test"], data.languages, args.seed, args.device,
                  args.predict_batch, str(args.data))
    header = bench_header(args, plan, threads)
    header["split"] = {name: len(part) for name, part in parts.items()}
    header["languages"] = len(bench.labels)
    report: dict[str, Any] = {"header": header, "rows": [], "targets": []}
    print(f"bench: {plan.mode} run, {threads} torch thread(s), {header['cpu']}, "
          f"load average {header['load_average_start']}")
    print(f"split: train {len(bench.train):,}  valid {len(bench.valid):,}  test {len(bench.test):,} "
          f"(name, language) pairs, {len(bench.labels)} languages; {plan.repeats} repeat(s)", flush=True)
    done: dict[str, dict[str, Any]] = {}
    for row in rows_to_run:
        row_started = time.perf_counter()
        figures = row.run(bench)
        result = {"key": row.key, "name": row.name, **figures}
        done[row.key] = result
        report["rows"].append(result)
        write_json(args.out, report)
        nats = f"  nats/char {result['nats_per_char']:.3f}" if "nats_per_char" in result else ""
        print(f"  {row.name:<20} accuracy {result['accuracy']:.4f}  macro-F1 {result['macro_f1']:.4f}{nats}  "
              f"single-language {fmt(result.get('accuracy_single'), '.4f')} / "
              f"{fmt(result.get('macro_f1_single'), '.4f')}  "
              f"train {result['train_seconds']:.1f} s  "
              f"({time.perf_counter() - row_started:.0f} s with repeats and timing)", flush=True)
        if "fidelity_in_language" in result:
            print(f"  {'':<20} generated names: {result['fidelity_in_language']:.0%} read as the asked "
                  f"language by the default classifier, {result['fidelity_new']:.0%} new "
                  f"({result['fidelity_n_per_language']} per language)", flush=True)
        elif "fidelity_error" in result:
            print(f"  {'':<20} generation fidelity failed: {result['fidelity_error']}", flush=True)
    if args.serve is not None:
        report["serve"] = serve_figures(args)
        write_json(args.out, report)
    if args.speed is not None:
        report["speed"] = speed_figures(args)
        write_json(args.out, report)
    wall = time.perf_counter() - started
    report["targets"] = (check_targets(done, plan, wall) + serve_targets(report.get("serve"))
                         + report.get("speed", {}).get("targets", []))
    header["wall_seconds"] = wall
    header["load_average_end"] = load_average()
    write_json(args.out, report)
    print()
    print(table(report["rows"]))
    print()
    print_verdicts(report["targets"])
    if plan.mode != "quick":
        print(f"INFO  total wall time {wall:.0f} s ({plan.mode} run)")
    print(f"load average at start {header['load_average_start']}, at end {header['load_average_end']} "
          f"(numbers are only comparable on a quiet machine)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
