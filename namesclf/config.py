"""Every training knob and its default, in one place and without torch.

``names train``'s and ``names lm train``'s options, their ``--help`` defaults and choices, the
:class:`~namesclf.estimator.NameClassifier` parameters and the config stored in a model file all come
from the dataclasses and constants here, so they cannot disagree. The values were chosen by
measurement (``docs/experiments.md``, "Choosing defaults").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Self

from namesclf.errors import NamesError

#: Classifier networks: the tutorial's hand-built RNN and the three torch cells.
CLASSIFIER_KINDS = ("handbuilt", "rnn", "gru", "lstm")
#: Language-model cells.
LM_CELLS = ("rnn", "gru", "lstm")
#: Language-model tokens: characters, or whitespace-separated words.
UNITS = ("char", "word")
#: ``manual`` is the hand-written SGD update; the rest are torch's optimizers.
OPTIMIZERS = ("manual", "sgd", "adam", "adamw")
#: Lines read at a time when streaming: the distinct new names of a batch go to the network
#: together, one call per length, so bigger batches make fewer, fuller calls, while memory stays
#: bounded by one batch (docs/benchmarks.md#batch-prediction).
STREAM_BATCH = 16_384

#: Where prediction runs: ``auto`` takes a model file's ONNX export when it is current, else torch.
BACKENDS = ("auto", "onnx", "torch")
#: ``auto`` takes CUDA when present.
DEVICES = ("auto", "cpu", "cuda")
#: Loss weights per language (see :func:`~namesclf.training.train.class_weights`).
CLASS_WEIGHTS = ("none", "sqrt", "balanced")
#: The grouped split's parts (:func:`~namesclf.data.dataset.split_names`), and what ``--split`` accepts.
SPLITS = ("train", "valid", "test")
SPLIT_CHOICES = ("all", *SPLITS)
#: What ``names predict --input`` writes (:func:`~namesclf.inference.output.write_predictions`).
PREDICTION_FORMATS = ("csv", "jsonl")
#: The levels an answer can be given at, finest first (:mod:`namesclf.inference.groups`).
LEVELS = ("label", "group", "region")
#: How ``names estimate`` estimates a population's mix, default first (:mod:`namesclf.inference.mix`);
#: its bootstrap resamples and the intervals' nominal coverage.
MIX_METHODS = ("em", "cc", "mean")
MIX_BOOTSTRAP = 200
MIX_CONFIDENCE = 0.95
#: Highest n-gram order accepted: past 6 the tables grow and held-out names gain nothing.
MAX_NGRAM_ORDER = 6
#: Seconds a collective of a multi-process run waits for the other ranks (``names train
#: --dist-timeout``). Rank 0 validates and writes the model file while the others wait in a
#: broadcast, so it must cover the longest validation, not one step.
DIST_TIMEOUT = 300.0

#: Per-model defaults for the fields :class:`TrainConfig` leaves ``None``. The hand-built RNN wants
#: many small manual-SGD steps at a high rate, and more patience because under the cosine decay of
#: a high rate its best epochs come last; the torch cells train with AdamW and larger batches.
#: Every model is pooled with the 4-gram half.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "handbuilt": {"hidden": 128, "epochs": 15, "lr": 1.0, "batch_size": 32, "optimizer": "manual", "ngram_order": 4,
                  "patience": 10},
    **{kind: {"hidden": 64, "epochs": 15, "lr": 3e-3, "batch_size": 64, "optimizer": "adamw", "ngram_order": 4,
              "patience": 5}
       for kind in ("rnn", "gru", "lstm")},
}

#: From this many training names (after the split) :data:`LARGE_CORPUS_DEFAULTS` replace some of
#: :data:`MODEL_DEFAULTS`. The tutorial set has about 14,400 training names, the Wikipedia corpus
#: 198,776; the threshold sits between them, well clear of both.
LARGE_CORPUS = 100_000
#: What paid on the Wikipedia corpus (docs/experiments.md#choosing-the-defaults-at-this-scale): with
#: that many names a wider GRU beats the small-corpus width on every seed, where a wider one still
#: adds less than the seed noise for much more time; 6 epochs do as well as 15, since one epoch holds
#: more steps than a whole run on the tutorial set and the cosine schedule decays to zero either way.
LARGE_CORPUS_DEFAULTS: dict[str, dict[str, Any]] = {
    "handbuilt": {"epochs": 6},
    **{kind: {"hidden": 128, "epochs": 6} for kind in ("rnn", "gru", "lstm")},
}


def _option(field_name: str) -> str:
    """A field's CLI option: ``batch_size`` -> ``batch-size``."""
    return field_name.replace("_", "-")


class RunConfig:
    """What every training config shares: one ``resolved()`` verb that fills defaults and checks
    every value (messages name the CLI option), and ``from_dict``/``to_dict`` for model files.

    Subclasses are dataclasses; :attr:`AT_LEAST_ONE` names their size and count fields.
    """

    AT_LEAST_ONE: ClassVar[tuple[str, ...]] = ()
    #: Fields that must be one of a fixed set: ``{field: choices}``.
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"optimizer": OPTIMIZERS, "device": DEVICES}

    def defaults(self, n_train: int | None = None) -> Mapping[str, Any]:
        """Values for fields left ``None``; subclasses whose defaults depend on other fields, or on
        the number of training examples ``n_train``, override it."""
        return {}

    def resolved(self, n_train: int | None = None) -> Self:
        """A checked copy with every ``None`` filled from :meth:`defaults`; a bad value is a :class:`NamesError`.

        ``n_train`` is the size of the training set when it is known; resolving an already resolved
        config changes nothing, so the size only matters the first time.
        """
        values = self.to_dict()
        for name, value in self.defaults(n_train).items():
            if values.get(name) is None:
                values[name] = value
        cfg = type(self)(**values)
        cfg.check()
        return cfg

    def check(self) -> None:
        """The checks every config shares; subclasses add their own and call this."""
        for name, choices in self.CHOICES.items():
            value = getattr(self, name, choices[0])
            if value not in choices:
                raise NamesError(f"unknown --{_option(name)} {value!r}: use {', '.join(choices)}")
        for name in self.AT_LEAST_ONE:
            if getattr(self, name) < 1:
                raise NamesError(f"--{_option(name)} must be at least 1")
        if not 0.0 <= getattr(self, "dropout", 0.0) < 1.0:
            raise NamesError("--dropout must be in [0, 1)")
        if getattr(self, "lr", 1.0) <= 0:
            raise NamesError("--lr must be positive")
        if getattr(self, "weight_decay", 0.0) < 0:
            raise NamesError("--weight-decay must be 0 or more")
        if getattr(self, "patience", 0) < 0:
            raise NamesError("--patience must be 0 (never stop early) or more")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Self:
        """The config stored in a model file; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in values.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]


@dataclass
class TrainConfig(RunConfig):
    """Every knob of ``names train``; ``None`` means the per-model default in :data:`MODEL_DEFAULTS`,
    or in :data:`LARGE_CORPUS_DEFAULTS` for a training set of :data:`LARGE_CORPUS` names or more."""

    AT_LEAST_ONE: ClassVar[tuple[str, ...]] = ("hidden", "embed", "layers", "epochs", "batch_size")
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {**RunConfig.CHOICES, "class_weight": CLASS_WEIGHTS}

    model: str = "gru"
    hidden: int | None = None
    embed: int = 64
    layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.2
    ngram_buckets: int = 0
    ngram_dim: int = 64
    ngram_order: int | None = None
    refit_ngram: bool = True
    tanh: bool = True
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    weight_decay: float = 0.0
    clip: float | None = 1.0
    class_weight: str = "none"
    patience: int | None = None
    seed: int = 0
    device: str = "auto"

    def defaults(self, n_train: int | None = None) -> Mapping[str, Any]:
        if self.model not in CLASSIFIER_KINDS:
            raise NamesError(f"unknown --model {self.model!r}: use {', '.join(CLASSIFIER_KINDS)}")
        if n_train is not None and n_train >= LARGE_CORPUS:
            return {**MODEL_DEFAULTS[self.model], **LARGE_CORPUS_DEFAULTS[self.model]}
        return MODEL_DEFAULTS[self.model]

    def check(self) -> None:
        if self.model == "handbuilt" and self.optimizer != "manual":
            raise NamesError("the hand-built RNN trains with manual SGD only (--optimizer manual)")
        super().check()
        if not 0 <= self.ngram_order <= MAX_NGRAM_ORDER:  # type: ignore[operator]
            raise NamesError(f"--ngram-order must be between 0 (off) and {MAX_NGRAM_ORDER}")


@dataclass
class LMConfig(RunConfig):
    """Every knob of ``names lm train`` (docs/experiments.md, "Language model")."""

    AT_LEAST_ONE: ClassVar[tuple[str, ...]] = ("hidden", "embed", "layers", "epochs", "batch_size")
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"device": DEVICES, "unit": UNITS, "cell": LM_CELLS}

    unit: str = "char"
    cell: str = "rnn"
    hidden: int = 256
    embed: int = 64
    lang_embed: int = 32
    lang_init: bool = True
    lang_dropout: float = 0.1
    balance: float = 0.0
    layers: int = 1
    dropout: float = 0.1
    epochs: int = 20
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 0.01
    clip: float | None = 1.0
    patience: int = 5
    seed: int = 0
    device: str = "auto"


@dataclass(frozen=True)
class ServeConfig:
    """How ``names serve`` batches, caches, sheds load and bounds its resources, per server process
    (docs/http.md, docs/safety.md).

    Why these defaults (the timings behind them: docs/benchmarks.md#server): a pass of
    ``pass_names`` is short, so a one-name request waits at most about one pass behind a big batch;
    ``max_pending`` bounds the work queued ahead of a new request; a small request that has waited
    ``max_queue_ms``, longer than a pass, means the process is behind, so new small requests are
    refused until it catches up, which keeps an admitted request's latency bounded; and
    ``cache_size`` finished answers take little memory.

    The resource bounds are what a client cannot push past, whatever it sends: the answer cache
    holds at most ``cache_size`` answers and ``cache_bytes`` bytes; request bodies being received
    hold at most ``body_memory`` bytes between them (a body that would pass it is refused with
    503), each within ``body_timeout_s`` (else 408 and the connection is closed); a request's
    headers must be complete within ``header_timeout_s`` of the connection opening or the last
    answer, an idle keep-alive connection is closed after ``keep_alive_s``; past
    ``max_connections`` open connections a new request is answered 503 and closed. Memory then
    stays within about the idle size + ``body_memory`` + ``max_connections`` x ~150 KB of
    uvicorn's buffers + ``cache_bytes``, whatever the clients do. ``max_generating`` ``/generate`` requests
    run at once (one core each); another is refused with 503.
    """

    cache_size: int = 65_536
    cache_bytes: int = 32 * 1024 * 1024
    max_pending: int = 8_192
    max_queue_ms: float = 50.0
    pass_names: int = 256
    gather_ms: float = 2.0
    max_connections: int = 256
    backlog: int = 2048
    keep_alive_s: float = 5.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    body_memory: int = 32 * 1024 * 1024
    max_generating: int = 1

    def check(self) -> None:
        if self.pass_names < 1 or self.max_pending < 1 or self.cache_size < 0 or self.gather_ms < 0 \
                or self.max_queue_ms <= 0:
            raise NamesError("--pass-names, --max-pending and --max-queue-ms must be positive, --cache-size and "
                             "--gather-ms at least 0")
        if self.cache_bytes < 0:
            raise NamesError("--cache-mib must be at least 0")
        if self.max_connections < 1 or self.backlog < 1 or self.max_generating < 1:
            raise NamesError("--max-connections, --backlog and --max-generating must be at least 1")
        if min(self.keep_alive_s, self.header_timeout_s, self.body_timeout_s) <= 0:
            raise NamesError("--keep-alive-s, --header-timeout-s and --body-timeout-s must be positive")
        if self.body_memory < 1:
            raise NamesError("--body-memory-mib must be positive")
