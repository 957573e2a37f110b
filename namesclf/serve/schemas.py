"""What the HTTP API accepts and answers: the pydantic request and response models, and the limits
they enforce (name length, names per request, body size). The OpenAPI schema at ``/docs`` is made
from these declarations, so it says what the server does: the prediction options are made from
:class:`~namesclf.inference.options.Options` (names, defaults, bounds, help), and JSON bodies are
validated strictly (``"k": "3"``, ``"k": true`` and ``"surname_only": 0`` are 422s, not coerced).
"""

import logging
from typing import Annotated, Any, Literal, get_type_hints

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, create_model, model_validator

from namesclf.config import LEVELS, MIX_BOOTSTRAP, MIX_CONFIDENCE, MIX_METHODS
from namesclf.inference.options import (
    DEFAULTS,
    NAMED_PRIORS,
    ORDERS,
    Options,
    bounds,
    choices,
    help_text,
    option_fields,
)

#: Longest name accepted (characters before folding). Surnames are short; the model reads at
#: most :data:`~namesclf.text.MAX_NAME_LENGTH` letters anyway, the cap only bounds the folding work.
MAX_NAME_CHARS = 1_000
#: Most names in one ``POST /predict``: bounds one request's work (docs/benchmarks.md#server).
MAX_BATCH = 10_000
#: Largest request body; a bigger one is refused with 413 before it is read into memory or parsed.
MAX_BODY_BYTES = 2 * 1024 * 1024
#: Most names in one ``POST /generate``.
MAX_GENERATE = 1_000
#: Longest ``start`` of a ``POST /generate`` (characters): every candidate reads it first, and no
#: name is longer than :data:`~namesclf.text.MAX_NAME_LENGTH` letters.
MAX_GENERATE_START = 60
#: Most letters one ``POST /generate`` may read and sample, counted per candidate as its start,
#: the begin token and the longest name the model may write: it caps the candidates tried, so a
#: request that asks for many names with a long start returns fewer names (``attempts`` says how
#: many were tried) instead of running for seconds.
MAX_GENERATE_LETTERS = 200_000
#: A refused body is read and discarded up to this many bytes (and :data:`DRAIN_S` seconds) before
#: the 413 is sent and the connection closed, as nginx's lingering close does: closing a socket
#: with unread data makes the kernel send a reset, and a client still writing its body then sees
#: a broken pipe instead of the answer. Past either bound the connection is closed anyway.
DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_S = 10.0
#: Most resamples one ``POST /estimate`` may ask for.
MAX_ESTIMATE_BOOTSTRAP = 1_000
#: Most (distinct names x resamples) one ``POST /estimate`` may cost: every resample re-estimates
#: the mix over the distinct names, so this bounds a request's work as :data:`MAX_GENERATE_LETTERS`
#: bounds a ``/generate`` (the default 200 resamples of :data:`MAX_BATCH` distinct names fit).
MAX_ESTIMATE_WORK = 2_000_000
#: Most people one entry of ``POST /estimate``'s ``counts`` may stand for.
MAX_COUNT = 10**12
#: The environment variable through which :func:`serve` hands its settings to worker processes.
ENV_SETTINGS = "NAMES_SERVE_SETTINGS"

log = logging.getLogger("namesclf.serve")

Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS)]


def _whole_float(value: Any) -> Any:
    """``2.0`` -> ``2``: JSON Schema's ``integer`` holds every number with no fraction, so the
    schema promises to take it; anything else goes on to strict validation (``"3"``, ``true``: 422)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


WHOLE = BeforeValidator(_whole_float)
#: An integer in a strictly validated body: a JSON integer, or a number with no fraction.
Whole = Annotated[int, WHOLE]
#: A prior by name (over HTTP a prior is never read from a file on the server).
NamedPrior = Literal[NAMED_PRIORS]  # type: ignore[valid-type]
#: A prior as weights: at least one language, each weight a finite number, 0 or more.
Weights = Annotated[dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]], Field(min_length=1)]


def _http_type(name: str, body: bool) -> Any:
    """How an :class:`Options` field is typed over HTTP: as in Python, but for the prior (named or,
    in a JSON body, weights). A field of a type not handled here fails at import, so a new option
    cannot be left out of the API unnoticed."""
    kind = get_type_hints(Options)[name]
    words = choices(next(f for f in option_fields() if f.name == name))
    if words is not None:
        return Literal[words]  # an enum in the schema; anything else is a 422
    if name == "prior":
        return NamedPrior | Weights | None if body else NamedPrior | None
    if name == "order":
        return Literal[ORDERS]  # type: ignore[valid-type]
    if kind is int:
        return Whole if body else int
    if kind in (bool, float, float | None):
        return kind
    raise TypeError(f"Options.{name} ({kind}) has no HTTP form: add one in {__name__}")


def _option_fields(body: bool, max_k: int | None) -> dict[str, Any]:
    """Each :class:`Options` field as a pydantic field: its default, bounds and help (``k`` at most
    ``max_k``, the number of languages of the model served)."""
    out = {}
    for option in option_fields():
        limits = bounds(option)
        if option.name == "k" and max_k is not None:
            limits["le"] = max_k
        description = help_text(option, lambda name: f"`{name}`")
        out[option.name] = (_http_type(option.name, body),
                            Field(getattr(DEFAULTS, option.name), description=description, **limits))
    return out


def predict_request(max_k: int | None = None) -> type[BaseModel]:
    """The body of ``POST /predict`` for a model of ``max_k`` languages. Unknown fields are refused
    (a typo such as ``name`` is a 422), and types are strict: JSON says what it means."""
    return create_model(  # type: ignore[call-overload, no-any-return]
        "PredictRequest", __config__=ConfigDict(extra="forbid", strict=True),
        __doc__="Body of `POST /predict`: the names, and the options of every one of them.",
        names=(list[Name], Field(max_length=MAX_BATCH, description=f"At most {MAX_BATCH:,} names.")),
        **_option_fields(True, max_k))


def predict_query(max_k: int | None = None) -> type[BaseModel]:
    """The query of ``GET /predict`` (one name; a prior only by name). A query string holds only
    text, so ``k=3`` is read as the number 3 here."""
    return create_model(  # type: ignore[call-overload, no-any-return]
        "PredictQuery", __doc__="Query of `GET /predict`: one name and its options.",
        name=(str, Field(min_length=1, max_length=MAX_NAME_CHARS, examples=["Dostoevsky"])),
        **_option_fields(False, max_k))


#: The request models of no particular model (the served ones bound ``k`` by its languages).
PredictRequest = predict_request()
PredictQuery = predict_query()


class LanguageProbability(BaseModel):
    language: str
    probability: float


class PositionOut(BaseModel):
    position: int
    char: str = Field(description="The letter, or `$` for the end of the name.")
    context: str = Field(description="The letters it was predicted from (`^`: before the name's start).")
    log_ratio: float = Field(description="log p(char | context, language) - log p(char | context, runner_up).")


class PoolOut(BaseModel):
    weight: float
    shift: float
    temperature: float


class ExplanationOut(BaseModel):
    """Which letters pushed the answer over the runner-up, in nats (docs/explain.md)."""

    language: str
    runner_up: str
    unit: str
    positions: list[PositionOut]
    letters_log_odds: float = Field(description="The sum of the positions' log_ratio.")
    ngram_prior_log_odds: float
    ngram_log_odds: float = Field(description="letters_log_odds + ngram_prior_log_odds: the n-gram half's log-odds.")
    network_log_odds: float
    pool: PoolOut
    pooled_log_odds: float = Field(description="(network + weight x ngram - shift x ngram_prior) / temperature.")
    population_prior_log_odds: float
    final_log_odds: float


class PredictionOut(BaseModel):
    name: str
    ascii: str
    predictions: list[LanguageProbability]
    surname: str | None = Field(None, description="The part of a full name that was classified.")
    abstained: bool | None = None
    novelty: float | None = None
    answer: str | None = Field(None, description="The top language, or `unknown` when abstained or when no "
                               "language of the model writes the name's script.")
    prediction_set: list[str] | None = None
    level: str | None = Field(None, description="`group` or `region` when asked for: the languages and the set "
                                                "are then origin groups or regions.")
    note: str | None = Field(None, description="At a `level`: the model's labels that the origin-group table "
                                               "does not know, each a group of its own.")
    reason: str | None = Field(None, description="`script` when no language of the model writes the name's "
                               "script (the answer is then `unknown`, with no predictions).")
    explanation: ExplanationOut | None = Field(None, description="With `explain`: why the answer and not the "
                                                                 "runner-up.")


class GenerateRequest(BaseModel):
    """Body of ``POST /generate``: the arguments of :func:`~namesclf.lm.generate.generate_names`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    language: str | None = Field(None, max_length=100, description="Required when the LM is per-language.")
    n: Whole = Field(10, ge=1, le=MAX_GENERATE, description=f"At most {MAX_GENERATE:,} names; fewer come back when "
                     f"{MAX_GENERATE_LETTERS:,} letters sampled do not find them.")
    start: str = Field("", max_length=MAX_GENERATE_START, description="Every name starts with this prefix.")
    temperature: float = Field(0.8, gt=0, le=10)
    # bounds before the validator: after it, pydantic writes them into the schema under its own names
    top_k: Annotated[int, Field(ge=1), WHOLE] | None = None
    # below 2**53: JSON numbers past it are not exact in most clients (nor in schema validators)
    seed: Annotated[int, Field(ge=0, lt=2**53), WHOLE] | None = None
    allow_known: bool = False


class GenerateOut(BaseModel):
    language: str | None
    names: list[str]
    skipped_known: int
    skipped_duplicates: int = 0
    attempts: int = 0
    requested: int = 0


class EstimateRequest(BaseModel):
    """Body of ``POST /estimate``: a population's names (and how many people each stands for) and
    the arguments of :func:`~namesclf.inference.mix.estimate_mix`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    names: list[Name] = Field(min_length=1, max_length=MAX_BATCH,
                              description=f"The population's names, at most {MAX_BATCH:,} (repeats allowed).")
    counts: list[Annotated[int, Field(ge=1, le=MAX_COUNT), WHOLE]] | None = Field(
        None, description="How many people each name stands for, one count per name (default: one each).")
    level: Literal[LEVELS] = Field(LEVELS[0], description="Estimate the mix of labels, origin groups or regions.")  # type: ignore[valid-type]
    method: Literal[MIX_METHODS] = Field(  # type: ignore[valid-type]
        MIX_METHODS[0], description="`em`: maximum likelihood under label shift; `cc`: classify and count; "
        "`mean`: mean probability.")
    bootstrap: Annotated[int, Field(ge=0, le=MAX_ESTIMATE_BOOTSTRAP), WHOLE] = Field(
        MIX_BOOTSTRAP, description=f"Resamples behind the intervals (0: none); distinct names x resamples at most "
        f"{MAX_ESTIMATE_WORK:,}.")
    confidence: float = Field(MIX_CONFIDENCE, gt=0, lt=1, description="The intervals' nominal coverage.")
    seed: Annotated[int, Field(ge=0, lt=2**53), WHOLE] = Field(0, description="Makes the resampling reproducible.")
    surname_only: bool = Field(False, description="Every name is a surname already (else full names are cut).")

    @model_validator(mode="after")
    def _one_count_per_name(self) -> "EstimateRequest":
        if self.counts is not None and len(self.counts) != len(self.names):
            raise ValueError(f"counts has {len(self.counts):,} entries for {len(self.names):,} names: "
                             "give one per name")
        return self


class MixShare(BaseModel):
    label: str
    share: float
    low: float
    high: float


class EstimateOut(BaseModel):
    method: str
    level: str
    n: int = Field(description="Names (people) the estimate is of.")
    skipped: int = Field(description="Names with no letters after folding, left out.")
    confidence: float
    intervals: str = Field(description="`bootstrap+model`: sampling and model error; `bootstrap`: sampling error "
                           "only (a model file without the mix calibration).")
    note: str | None = None
    mix: list[MixShare] = Field(description="One row per label (or group, or region), largest share first.")


class ErrorOut(BaseModel):
    error: str

