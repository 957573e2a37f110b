"""What the HTTP API accepts and answers: the pydantic request and response models, and the limits
they enforce (name length, names per request, body size). The OpenAPI schema at ``/docs`` is made
from these declarations, so it says what the server does.
"""

import logging
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

#: Longest name accepted (characters before folding). Surnames are short; the model reads at
#: most :data:`~namesclf.text.MAX_NAME_LENGTH` letters anyway, the cap only bounds the folding work.
MAX_NAME_CHARS = 1_000
#: Most names in one ``POST /predict``: about 4 s of CPU at ~2,500 names/s on one core.
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
#: The environment variable through which :func:`serve` hands its settings to worker processes.
ENV_SETTINGS = "NAMES_SERVE_SETTINGS"

log = logging.getLogger("namesclf.serve")

Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS)]


class PredictRequest(BaseModel):
    """Body of ``POST /predict``. Unknown fields are refused, so a typo (``name``) is a 422."""

    model_config = ConfigDict(extra="forbid")

    names: list[Name] = Field(max_length=MAX_BATCH, description=f"At most {MAX_BATCH:,} names.")
    k: int = Field(3, ge=1, description="How many languages per name (1..number of languages).")
    abstain: bool = Field(False, description="Flag names that fit no known language (`answer`: unknown).")
    abstain_rate: float = Field(0.05, gt=0, lt=1, description="Share of in-set names that may be abstained on.")
    coverage: float | None = Field(None, gt=0, lt=1, description="Add a prediction set with this coverage.")
    per_language: bool = Field(False, description="Calibrate the sets per language (covers rare languages too).")
    prior: Literal["train", "uniform"] | dict[str, float] | None = Field(
        None, description="The population's language mix: train, uniform, or {language: weight} for every language.")
    surname_only: bool = Field(False, description="Do not cut full names to their surname.")


class LanguageProbability(BaseModel):
    language: str
    probability: float


class PredictionOut(BaseModel):
    name: str
    ascii: str
    predictions: list[LanguageProbability]
    surname: str | None = Field(None, description="The part of a full name that was classified.")
    abstained: bool | None = None
    novelty: float | None = None
    answer: str | None = Field(None, description="The top language, or `unknown` when abstained.")
    prediction_set: list[str] | None = None


class GenerateRequest(BaseModel):
    """Body of ``POST /generate``: the arguments of :func:`~namesclf.lm.generate.generate_names`."""

    model_config = ConfigDict(extra="forbid")

    language: str | None = Field(None, max_length=100, description="Required when the LM is per-language.")
    n: int = Field(10, ge=1, le=MAX_GENERATE, description=f"At most {MAX_GENERATE:,} names; fewer come back when "
                   f"{MAX_GENERATE_LETTERS:,} letters sampled do not find them.")
    start: str = Field("", max_length=MAX_GENERATE_START, description="Every name starts with this prefix.")
    temperature: float = Field(0.8, gt=0, le=10)
    top_k: int | None = Field(None, ge=1)
    seed: int | None = Field(None, ge=0, lt=2**63)
    allow_known: bool = False


class GenerateOut(BaseModel):
    language: str | None
    names: list[str]
    skipped_known: int
    skipped_duplicates: int = 0
    attempts: int = 0
    requested: int = 0


class ErrorOut(BaseModel):
    error: str

