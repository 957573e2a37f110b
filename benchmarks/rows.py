"""The rows of :mod:`benchmarks.bench`: the data every row shares, how much work a run does, and
each row's training, testing and timing (that module's docstring says what each row is and why).

A row is a function of the :class:`Bench` returning its figures; :func:`all_rows` lists them in
table order and :func:`select_rows` picks ``--rows``.
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.svm import LinearSVC
from torch import nn

from namesclf.config import CLASSIFIER_KINDS, LMConfig, TrainConfig
from namesclf.data.dataset import single_language
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
    # Four epochs keep --quick within its time target (bench.TARGET_QUICK_SECONDS, 2 quiet cores); its
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


# ----------------------------------------------------------------------------- the rows, in table order


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

