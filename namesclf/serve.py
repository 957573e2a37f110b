"""The JSON HTTP API: ``names serve`` answers ``/predict`` (one name or a batch) and ``/generate``.

Why FastAPI + uvicorn rather than ``http.server`` or Flask: request bodies and query strings are
validated by pydantic models, so a missing field, a wrong type, an empty or over-long name or a
``k`` out of range is a 4xx JSON answer without hand-written parsing; the OpenAPI schema and the
interactive docs at ``/docs`` come for free from the same declarations; and uvicorn is the
well-kept ASGI server that handles HTTP/1.1 keep-alive, slow clients and graceful shutdown.

Concurrency: ``/predict`` goes through :class:`~namesclf.batcher.Batcher`: an LRU cache of
answers, then one prediction thread per process that gathers the names of all concurrent requests
into one forward pass (one call costs ~3 ms whether it holds 1 name or 30), so the server gets
faster per request as concurrency grows instead of slower. More cores are used by more processes
(``--workers``; each loads the model once, through :func:`app_from_env`). When more names are
queued than a process admits, a request is answered at once with 503 and ``Retry-After`` rather
than queued without bound. The endpoints are ``async``: a cache hit never leaves the event loop.

Errors: every non-2xx answer is a JSON object with an ``error`` string (validation errors also
carry FastAPI's ``detail`` list). A :class:`~namesclf.errors.NamesError` (a name with no letters,
an unknown language) is a 422; a body over :data:`MAX_BODY_BYTES` is a 413 before it is parsed,
sent after the body has been read and discarded (up to :data:`DRAIN_BYTES`), so a client that
writes its whole body before reading (Python's urllib) gets the 413 and not a broken pipe.
Nothing a client sends should produce a 500 or stop the server.
"""

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from fastapi import FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__
from .batcher import Batcher, Overloaded
from .config import ServeConfig
from .errors import NamesError
from .openset import ABSTAIN_RATE
from .predict import Options, Predictor

#: Longest name accepted (characters before folding). Surnames are short; the model reads at
#: most :data:`namesclf.text.MAX_NAME_LENGTH` letters anyway, the cap only bounds the folding work.
MAX_NAME_CHARS = 1_000
#: Most names in one ``POST /predict``: about 4 s of CPU at ~2,500 names/s on one core.
MAX_BATCH = 10_000
#: Largest request body; a bigger one is refused with 413 before it is read into memory or parsed.
MAX_BODY_BYTES = 2 * 1024 * 1024
#: Most names in one ``POST /generate``.
MAX_GENERATE = 1_000
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

    A declared ``Content-Length`` over the limit is refused without being stored. A chunked body
    is counted as it arrives and refused as soon as it passes the limit, so a client cannot make
    the server hold more than ``max_bytes`` of one request in memory. A body within the limit is
    replayed to the app unchanged.

    Before answering 413 the rest of the body is read and thrown away (at most ``drain_bytes``
    within ``drain_s``): a client that sends its whole body before reading the answer then gets
    the 413. A client that asked ``Expect: 100-continue`` has sent no body yet and is answered at
    once.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, drain_bytes: int = DRAIN_BYTES,
                 drain_s: float = DRAIN_S) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = drain_bytes
        self.drain_s = drain_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        waits_for_continue = headers.get(b"expect", b"").lower() == b"100-continue"
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _send_json(send, 400, {"error": "Content-Length is not a number"})
                return
            if size > self.max_bytes:
                if not waits_for_continue:
                    await self._drain(receive, 0)
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
            more = message.get("more_body", False)
            if total > self.max_bytes:
                if more:
                    await self._drain(receive, total)
                await _send_json(send, 413, self._too_large(None))
                return
            chunks.append(body)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _drain(self, receive: Receive, seen: int) -> None:
        """Read and discard the rest of the body, within :attr:`drain_bytes` and :attr:`drain_s`."""
        deadline = time.monotonic() + self.drain_s
        while seen <= self.drain_bytes:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                message = await asyncio.wait_for(receive(), left)
            except TimeoutError:
                return
            if message["type"] != "http.request":
                return
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    def _too_large(self, size: int | None) -> dict[str, str]:
        got = f"{size:,} bytes" if size is not None else "the body"
        return {"error": f"request body too large: {got} is over the limit of {self.max_bytes:,} bytes; "
                         f"send fewer names per request"}


async def _send_json(send: Send, status: int, content: dict[str, Any], close: bool = True,
                     headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    body = json.dumps(content, separators=(",", ":")).encode()
    await _send_bytes(send, status, body, ((b"connection", b"close"), *headers) if close else headers)


async def _send_bytes(send: Send, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class FastPredict:
    """Pure ASGI middleware: answer the common ``GET /predict?name=...`` (and ``&k=...``) without
    FastAPI's routing and per-parameter validation; every other request goes to the app.

    Why: measured with wrk on 2 busy cores, FastAPI's handling of the eight declared query
    parameters cost ~0.4 ms of CPU a request (0.75-0.81 ms in all against 0.36 ms for the same
    answer from a bare ASGI function), as much as uvicorn's HTTP parsing and more than a batched
    forward pass per name. Only a query this path is sure of is answered here: ``name`` once,
    1..:data:`MAX_NAME_CHARS` characters, and at most ``k`` once, plain digits within 1..number of
    languages; the other options at their defaults, so the answer (and its cache entry) is the
    one the endpoint would give. Anything else, and a name with no letters (the endpoint words
    the 422), goes to FastAPI, which validates and answers as declared in the OpenAPI schema.
    """

    def __init__(self, app: ASGIApp, batcher: Batcher, n_languages: int, counts: dict[str, int]) -> None:
        self.app = app
        self.batcher = batcher
        self.n_languages = n_languages
        self.counts = counts  # shared with /health

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        simple = self._simple(scope["query_string"])
        if simple is None:
            await self.app(scope, receive, send)
            return
        name, k = simple
        try:
            answer = (await self.batcher.answers([name], Options(k=k)))[0]
        except Overloaded as exc:
            await _send_json(send, 503, {"error": str(exc)}, close=False,
                             headers=((b"retry-after", str(exc.retry_after).encode()),))
            return
        if answer is None:
            await self.app(scope, receive, send)
            return
        self.counts["fast_path"] += 1
        await _send_bytes(send, 200, answer)

    def _simple(self, query: bytes) -> tuple[str, int] | None:
        """``(name, k)`` when the query holds only those, valid; None for anything else."""
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)  # as Starlette parses it
        values = dict(pairs)
        if len(values) != len(pairs) or not 1 <= len(values) <= 2:
            return None
        name = values.pop("name", None)
        if name is None or not 1 <= len(name) <= MAX_NAME_CHARS:
            return None
        k = 3
        if values:
            text = values.pop("k", "")
            if values or not (text.isascii() and text.isdigit() and len(text) <= 3 and text[0] != "0"):
                return None
            k = int(text)
            if k > self.n_languages:
                return None
        return name, k


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

    @app.exception_handler(Overloaded)
    async def overloaded(_: Request, exc: Overloaded) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after)})

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
               lm_path: str | None = None, tuning: ServeConfig | None = None) -> FastAPI:
    """The API around an already loaded classifier (and optionally a language model).

    Building the app from loaded objects, not paths, lets tests run it in-process (``TestClient``)
    and lets :func:`serve` load the model once, before the port opens, so a bad model file is a
    one-line error at startup rather than a 500 on every request.
    """
    labels = list(predictor.labels)
    n_languages = len(labels)
    if lm is not None:
        _ = lm.known_keys  # built once here, not by the first concurrent /generate requests
    batcher = Batcher(predictor, tuning)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        yield
        batcher.close()

    app = FastAPI(
        title="namesclf",
        version=__version__,
        description="Which language does a surname come from? Top-k languages with probabilities.",
        responses={400: {"model": ErrorOut}, 413: {"model": ErrorOut}, 422: {"model": ErrorOut}},
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    counts = {"fast_path": 0}
    app.add_middleware(FastPredict, batcher=batcher, n_languages=n_languages, counts=counts)  # last added: first run
    app.state.batcher = batcher

    _install_error_handlers(app)
    busy = {503: {"model": ErrorOut, "description": "Too much work queued: retry after `Retry-After` seconds."}}

    def check_k(k: int) -> None:
        if not 1 <= k <= n_languages:
            raise NamesError(f"k must be between 1 and {n_languages} (the number of languages)")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, what is loaded, and this process's cache and queue counters."""
        return {"status": "ok", "version": __version__, "model": model_path, "languages": n_languages,
                "lm": lm_path if lm is not None else None, "pid": os.getpid(),
                "serving": {**batcher.stats(), **counts}}

    @app.get("/languages")
    async def languages() -> dict[str, Any]:
        """The classifier's languages (and the language model's, when one is loaded)."""
        return {"languages": labels, "lm_languages": list(lm.languages) if lm is not None else None}

    @app.get("/predict", response_model=PredictionOut, responses=busy)
    async def predict_one(
        name: Annotated[str, Query(min_length=1, max_length=MAX_NAME_CHARS, examples=["Dostoevsky"])],
        k: Annotated[int, Query(ge=1, description="1..number of languages")] = 3,
        abstain: bool = False,
        abstain_rate: Annotated[float, Query(gt=0, lt=1)] = ABSTAIN_RATE,
        coverage: Annotated[float | None, Query(gt=0, lt=1)] = None,
        per_language: bool = False,
        prior: Literal["train", "uniform"] | None = None,
        surname_only: bool = False,
    ) -> Response:
        """Top-``k`` languages of one name, and what the options add."""
        check_k(k)
        options = Options(k, coverage, per_language, prior, abstain, abstain_rate, surname_only)
        answer = (await batcher.answers([name], options))[0]
        if answer is None:  # no letters: the strict call raises the one-line reason (no forward pass)
            await batcher.call(predictor.predict_with, [name], options)
            raise NamesError(f"{name[:40]!r} has no letters after folding to ASCII; nothing to classify")
        return Response(answer, media_type="application/json")

    @app.post("/predict", response_model=list[PredictionOut], responses=busy)
    async def predict_many(request: PredictRequest) -> Response:
        """Top-``k`` languages of each name, in input order; repeated names are predicted once."""
        check_k(request.k)
        options = Options(request.k, request.coverage, request.per_language, request.prior, request.abstain,
                          request.abstain_rate, request.surname_only)
        answers = await batcher.answers(request.names, options)
        bad = [i for i, a in enumerate(answers) if a is None]
        if bad:
            shown = ", ".join(str(i) for i in bad[:10]) + (" ..." if len(bad) > 10 else "")
            return _error(422, f"{len(bad)} name(s) have no letters after folding to ASCII "
                               f"(positions {shown}); remove them and resend", positions=bad[:100])
        # The answers are JSON bytes already (cached as such): joined, not re-encoded. The declared
        # response_model documents the shape without paying for re-validating thousands of dicts.
        return Response(b"[" + b",".join(answers) + b"]", media_type="application/json")  # type: ignore[arg-type]

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


@dataclass(frozen=True)
class Settings:
    """Everything a server process needs to build its app: what :func:`serve` hands to workers."""

    model_path: str
    lm_path: str | None = None
    threads: int = 1
    tuning: ServeConfig = field(default_factory=ServeConfig)

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, text: str) -> "Settings":
        values = json.loads(text)
        return cls(**{**values, "tuning": ServeConfig(**values["tuning"])})

    def load(self) -> FastAPI:
        """Load the model(s) and build the app (in each worker process, once)."""
        predictor = Predictor.load(self.model_path, threads=self.threads)
        lm = None
        if self.lm_path is not None:
            from .generate import load_lm

            _set_threads(self.threads)
            lm = load_lm(self.lm_path)
        return create_app(predictor, lm, model_path=self.model_path, lm_path=self.lm_path, tuning=self.tuning)


def app_from_env() -> FastAPI:
    """The app factory uvicorn's worker processes call (``namesclf.serve:app_from_env``): the
    settings come from :data:`ENV_SETTINGS`, since a worker is a fresh interpreter."""
    text = os.environ.get(ENV_SETTINGS)
    if not text:
        raise NamesError(f"${ENV_SETTINGS} is not set: start the server with `names serve`")
    return Settings.from_env(text).load()


def _set_threads(threads: int) -> None:
    """Intra-op threads per process: concurrency comes from batching and processes, and intra-op
    threads on top oversubscribe the cores (2 threads made a batch ~30x slower on 2 busy cores).
    The classifier gets the same cap through :meth:`.predict.Predictor.load` (ONNX Runtime's, or
    torch's when it has no export); this sets it for the language model, which runs on torch."""
    import torch

    torch.set_num_threads(threads)


def serve(model_path: str, lm_path: str | None = None, host: str = "127.0.0.1", port: int = 8000,
          threads: int = 1, access_log: bool = True, workers: int = 1, tuning: ServeConfig | None = None) -> None:
    """Load the model(s) once, then run uvicorn until Ctrl-C / SIGTERM.

    Loading happens before the port is bound, so a missing or damaged model file is a
    :class:`NamesError` (one line from the CLI) and a client never reaches a half-started server.
    With ``workers`` > 1 uvicorn starts that many processes on the one port, each loading the
    model again through :func:`app_from_env`; this process only checks the files and supervises.
    """
    import uvicorn

    if threads < 1:
        raise NamesError("--threads must be at least 1")
    if workers < 1:
        raise NamesError("--workers must be at least 1")
    tuning = tuning or ServeConfig()
    tuning.check()
    settings = Settings(model_path, lm_path, threads, tuning)
    app = settings.load()
    n_languages = len(app.state.batcher.predictor.labels)
    extra = f" and language model {lm_path}" if lm_path is not None else ""
    print(f"names serve: {model_path} ({n_languages} languages){extra}, {workers} worker process(es); "
          f"docs at http://{host}:{port}/docs", file=sys.stderr, flush=True)
    common: dict[str, Any] = {"host": host, "port": port, "access_log": access_log, "log_level": "info",
                              "timeout_graceful_shutdown": 10}
    if workers == 1:
        uvicorn.run(app, **common)
        return
    del app
    os.environ[ENV_SETTINGS] = settings.to_env()
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config("namesclf.serve:app_from_env", factory=True, workers=workers, **common)
    # What uvicorn.run does for workers, but with the listening socket re-made from its descriptor,
    # so it records its protocol (TCP): asyncio only sets TCP_NODELAY on accepted sockets whose
    # protocol says TCP, and uvicorn binds with protocol 0. Without it, Nagle's algorithm held
    # each answer's body behind its headers until the client's delayed ACK: 48 ms a request.
    listener = socket.socket(fileno=config.bind_socket().detach())
    with contextlib.suppress(KeyboardInterrupt):
        Multiprocess(config, sockets=[listener]).run()
