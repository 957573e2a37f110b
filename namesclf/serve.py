"""The JSON HTTP API: ``names serve`` answers ``/predict`` (one name or a batch) and ``/generate``.

Why FastAPI + uvicorn rather than ``http.server`` or Flask: request bodies and query strings are
validated by pydantic models, so a missing field, a wrong type, an empty or over-long name or a
``k`` out of range is a 4xx JSON answer without hand-written parsing; the OpenAPI schema and the
interactive docs at ``/docs`` come for free from the same declarations; and uvicorn is the
well-kept ASGI server that handles HTTP/1.1 keep-alive, slow clients and graceful shutdown.

Concurrency: inference is CPU-bound, so the endpoints are plain ``def`` functions, which FastAPI
runs in its worker thread pool; torch releases the GIL inside its kernels and is thread-safe for
inference (no grad, eval mode), so several requests run at once and the event loop never blocks.
:func:`serve` sets torch to one intra-op thread per request (``--threads``): with many requests
in flight the parallelism comes from the requests, and intra-op threads on top would oversubscribe
the cores (measured on 2 busy cores: 2 intra-op threads made a batch ~30x slower than 1).

Errors: every non-2xx answer is a JSON object with an ``error`` string (validation errors also
carry FastAPI's ``detail`` list). A :class:`~namesclf.errors.NamesError` (a name with no letters,
an unknown language) is a 422; a body over :data:`MAX_BODY_BYTES` is a 413 before it is parsed.
Nothing a client sends should produce a 500 or stop the server.
"""

import json
import logging
import sys
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__
from .errors import NamesError
from .predict import Options, Prediction, Predictor

#: Longest name accepted (characters before folding). Surnames are short; the model reads at
#: most :data:`namesclf.text.MAX_NAME_LENGTH` letters anyway, the cap only bounds the folding work.
MAX_NAME_CHARS = 1_000
#: Most names in one ``POST /predict``: about 4 s of CPU at ~2,500 names/s on one core.
MAX_BATCH = 10_000
#: Largest request body; a bigger one is refused with 413 before it is read into memory or parsed.
MAX_BODY_BYTES = 2 * 1024 * 1024
#: Most names in one ``POST /generate``.
MAX_GENERATE = 1_000

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
    """Body of ``POST /generate``: the arguments of :func:`namesclf.generate.generate_names`."""

    model_config = ConfigDict(extra="forbid")

    language: str | None = Field(None, max_length=100, description="Required when the LM is per-language.")
    n: int = Field(10, ge=1, le=MAX_GENERATE)
    start: str = Field("", max_length=60, description="Every name starts with this prefix.")
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


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


class BodySizeLimit:
    """Pure ASGI middleware: refuse a request body over ``max_bytes`` with 413 before the app sees it.

    A declared ``Content-Length`` over the limit is refused at once. A chunked body is counted as
    it arrives and refused as soon as it passes the limit, so a client cannot make the server hold
    more than ``max_bytes`` of one request in memory. A body within the limit is replayed to the
    app unchanged.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _send_json(send, 400, {"error": "Content-Length is not a number"})
                return
            if size > self.max_bytes:
                await _send_json(send, 413, self._too_large(size))
                return
        chunks: list[bytes] = []
        total = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            total += len(body)
            if total > self.max_bytes:
                await _send_json(send, 413, self._too_large(None))
                return
            chunks.append(body)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self, size: int | None) -> dict[str, str]:
        got = f"{size:,} bytes" if size is not None else "the body"
        return {"error": f"request body too large: {got} is over the limit of {self.max_bytes:,} bytes; "
                         f"send fewer names per request"}


async def _send_json(send: Send, status: int, content: dict[str, Any]) -> None:
    body = json.dumps(content, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def _summarise(errors: list[dict[str, Any]]) -> str:
    """``body.names.3: String should have at least 1 character`` for the first error (plus a count)."""
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    message = f"{first.get('msg', 'invalid')}{more}"
    return f"{where}: {message}" if where else message


def _install_error_handlers(app: FastAPI) -> None:
    """Every error answers ``{"error": "one line"}``: user errors 422, HTTP errors their own code,
    and a bug 500 with the traceback in the server log, never in the answer."""

    @app.exception_handler(NamesError)
    async def names_error(_: Request, exc: NamesError) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Drop the echoed inputs: a 10,001-name list would otherwise come straight back.
        errors = [{k: v for k, v in e.items() if k != "input"} for e in exc.errors()]
        return _error(422, _summarise(errors), detail=jsonable_encoder(errors))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:  # a bug: keep the answer JSON
        log.exception("unhandled error", exc_info=exc)
        return _error(500, "internal error (a bug in namesclf; the server log has the traceback)")


def create_app(predictor: Predictor, lm: Any = None, *, model_path: str | None = None,
               lm_path: str | None = None) -> FastAPI:
    """The API around an already loaded classifier (and optionally a language model).

    Building the app from loaded objects, not paths, lets tests run it in-process (``TestClient``)
    and lets :func:`serve` load the model once, before the port opens, so a bad model file is a
    one-line error at startup rather than a 500 on every request.
    """
    labels = list(predictor.labels)
    n_languages = len(labels)
    if lm is not None:
        _ = lm.known_keys  # built once here, not by the first concurrent /generate requests
    app = FastAPI(
        title="namesclf",
        version=__version__,
        description="Which language does a surname come from? Top-k languages with probabilities.",
        responses={400: {"model": ErrorOut}, 413: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    )
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)

    _install_error_handlers(app)

    def check_k(k: int) -> None:
        if not 1 <= k <= n_languages:
            raise NamesError(f"k must be between 1 and {n_languages} (the number of languages)")

    def answer(predictions: list[Prediction]) -> list[dict[str, Any]]:
        return [p.to_dict() for p in predictions]

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness and what is loaded."""
        return {"status": "ok", "version": __version__, "model": model_path, "languages": n_languages,
                "lm": lm_path if lm is not None else None}

    @app.get("/languages")
    def languages() -> dict[str, Any]:
        """The classifier's languages (and the language model's, when one is loaded)."""
        return {"languages": labels, "lm_languages": list(lm.languages) if lm is not None else None}

    @app.get("/predict", response_model=PredictionOut)
    def predict_one(
        name: Annotated[str, Query(min_length=1, max_length=MAX_NAME_CHARS, examples=["Dostoevsky"])],
        k: Annotated[int, Query(ge=1, description="1..number of languages")] = 3,
        abstain: bool = False,
        abstain_rate: Annotated[float, Query(gt=0, lt=1)] = 0.05,
        coverage: Annotated[float | None, Query(gt=0, lt=1)] = None,
        per_language: bool = False,
        prior: Literal["train", "uniform"] | None = None,
        surname_only: bool = False,
    ) -> JSONResponse:
        """Top-``k`` languages of one name, and what the options add."""
        check_k(k)
        options = Options(k, coverage, per_language, prior, abstain, abstain_rate, surname_only)
        return JSONResponse(predictor.predict_with([name], options)[0].to_dict())

    @app.post("/predict", response_model=list[PredictionOut])
    def predict_many(request: PredictRequest) -> JSONResponse:
        """Top-``k`` languages of each name, in input order, in one batched forward pass."""
        check_k(request.k)
        options = Options(request.k, request.coverage, request.per_language, request.prior, request.abstain,
                          request.abstain_rate, request.surname_only)
        results = predictor.predict_with(request.names, options, strict=False)
        bad = [i for i, r in enumerate(results) if not r.languages]
        if bad:
            shown = ", ".join(str(i) for i in bad[:10]) + (" ..." if len(bad) > 10 else "")
            return _error(422, f"{len(bad)} name(s) have no letters after folding to ASCII "
                               f"(positions {shown}); remove them and resend", positions=bad[:100])
        # JSONResponse directly: the declared response_model documents the shape without paying
        # for re-validating thousands of dicts.
        return JSONResponse(answer(results))

    @app.post("/generate", response_model=GenerateOut, responses={404: {"model": ErrorOut}})
    def generate(request: GenerateRequest) -> JSONResponse:
        """New names from the language model loaded with ``--lm`` (404 when none is loaded)."""
        if lm is None:
            return _error(404, "no language model loaded: start the server with `names serve --lm PATH`")
        from .generate import generate_names  # only needed, and only importable, with an LM

        result = generate_names(lm, request.language, n=request.n, start=request.start,
                                temperature=request.temperature, top_k=request.top_k, seed=request.seed,
                                allow_known=request.allow_known)
        return JSONResponse(result.to_dict())

    return app


def serve(model_path: str, lm_path: str | None = None, host: str = "127.0.0.1", port: int = 8000,
          threads: int = 1, access_log: bool = True) -> None:
    """Load the model(s) once, then run uvicorn until Ctrl-C / SIGTERM.

    Loading happens before the port is bound, so a missing or damaged model file is a
    :class:`NamesError` (one line from the CLI) and a client never reaches a half-started server.
    """
    import torch
    import uvicorn

    if threads < 1:
        raise NamesError("--threads must be at least 1")
    torch.set_num_threads(threads)
    predictor = Predictor.load(model_path)
    lm = None
    if lm_path is not None:
        from .generate import load_lm

        lm = load_lm(lm_path)
    app = create_app(predictor, lm, model_path=model_path, lm_path=lm_path)
    extra = f" and language model {lm_path}" if lm is not None else ""
    print(f"names serve: {model_path} ({len(predictor.labels)} languages){extra}; "
          f"docs at http://{host}:{port}/docs", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info",
                timeout_graceful_shutdown=10)
