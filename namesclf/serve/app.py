"""The JSON HTTP API: ``names serve`` answers ``/predict`` (one name or a batch), ``/estimate`` (the
language mix of a population) and ``/generate``.

Why FastAPI + uvicorn rather than ``http.server`` or Flask: request bodies and query strings are
validated by pydantic models, so a missing field, a wrong type, an empty or over-long name or a
``k`` out of range is a 4xx JSON answer without hand-written parsing; the OpenAPI schema and the
interactive docs at ``/docs`` come for free from the same declarations; and uvicorn is the
well-kept ASGI server that handles HTTP/1.1 keep-alive, slow clients and graceful shutdown.

Concurrency: ``/predict`` goes through :class:`~namesclf.serve.batcher.Batcher`: an LRU cache of
answers, then one prediction thread per process that gathers the names of all concurrent requests
into one forward pass (a call costs about the same whether it holds 1 name or 30: see
docs/benchmarks.md#server), so the server gets faster per request as concurrency grows instead of
slower. More cores are used by more processes
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

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope

from namesclf import __version__
from namesclf.config import ServeConfig
from namesclf.errors import NamesError
from namesclf.inference.options import Options
from namesclf.inference.predictor import Predictor
from namesclf.serve.batcher import Batcher, Overloaded
from namesclf.serve.middleware import BodySizeLimit, FastPredict, _error
from namesclf.serve.schemas import (
    MAX_BODY_BYTES,
    MAX_ESTIMATE_WORK,
    MAX_GENERATE_LETTERS,
    ErrorOut,
    EstimateOut,
    EstimateRequest,
    GenerateOut,
    GenerateRequest,
    PredictionOut,
    log,
    predict_query,
    predict_request,
)
from namesclf.text import MAX_NAME_LENGTH

#: The error answers each route declares, so the OpenAPI schema lists exactly those it can give.
MALFORMED = {400: {"model": ErrorOut, "description": "The body is not UTF-8, or JSON nested too deeply."}}
TOO_LARGE = {413: {"model": ErrorOut, "description": f"The body is over {MAX_BODY_BYTES:,} bytes (checked before "
                                                        "it is read, so it comes before any 422)."}}
UNPROCESSABLE = {422: {"model": ErrorOut, "description": "Invalid input: a field missing, of the wrong type or out "
                                                          "of its bounds, or a value only the model can refuse (a "
                                                          "name with no letters after folding to ASCII, prior "
                                                          "weights that miss or add a language or sum to 0, an "
                                                          "option the model has no calibration for)."}}
BUSY = {503: {"model": ErrorOut, "description": "Too much work queued: retry after `Retry-After` seconds."}}


def _summarise(errors: list[dict[str, Any]]) -> str:
    """``body.names.3: String should have at least 1 character`` for the first error (plus a count)."""
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    message = f"{first.get('msg', 'invalid')}{more}"
    return f"{where}: {message}" if where else message


def generation_attempts(lm: Any, n: int, start: str) -> int:
    """How many candidates one ``/generate`` request may sample: ``generate_names``' own default
    (``50 * n + 500``), capped so that the letters read and sampled stay within
    :data:`MAX_GENERATE_LETTERS`. Each candidate is counted as the start, the begin token and the
    longest name the model may write (an upper bound: most candidates end sooner)."""
    longest = max(MAX_NAME_LENGTH, int(lm.meta.get("max_len", MAX_NAME_LENGTH)) + 10)
    return max(1, min(50 * n + 500, MAX_GENERATE_LETTERS // (len(start) + 1 + longest)))


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
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = exc.headers
        if exc.status_code == 405:  # the route that refused knows only its own method
            headers = {**(headers or {}), "Allow": allowed_methods(app, request.scope)}
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:  # a bug: keep the answer JSON
        log.exception("unhandled error", exc_info=exc)
        return _error(500, "internal error (a bug in namesclf; the server log has the traceback)")


def allowed_methods(app: FastAPI, scope: Scope) -> str:
    """Every method some route answers at the path of ``scope`` (``GET, POST`` for ``/predict``):
    what a 405's ``Allow`` header must list, where Starlette lists the methods of the first route
    with that path only."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def create_app(predictor: Predictor, lm: Any = None, *, model_path: str | None = None,
               lm_path: str | None = None, tuning: ServeConfig | None = None) -> FastAPI:
    """The API around an already loaded classifier (and optionally a language model).

    Building the app from loaded objects, not paths, lets tests run it in-process (``TestClient``)
    and lets :func:`serve` load the model once, before the port opens, so a bad model file is a
    one-line error at startup rather than a 500 on every request.
    """
    if lm is not None:
        _ = lm.known_keys  # built once here, not by the first concurrent /generate requests
    batcher = Batcher(predictor, tuning)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        batcher.close()

    app = FastAPI(title="namesclf", version=__version__, lifespan=lifespan,
                  description="Which language does a surname come from? Top-k languages with probabilities.")
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES, body_timeout_s=batcher.config.body_timeout_s,
                       body_memory=batcher.config.body_memory)
    counts = {"fast_path": 0}
    app.add_middleware(FastPredict, batcher=batcher, n_languages=len(predictor.labels),  # last added: first run
                       counts=counts)
    app.state.batcher = batcher
    _install_error_handlers(app)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, what is loaded, and this process's cache and queue counters."""
        return {"status": "ok", "version": __version__, "model": model_path, "languages": len(predictor.labels),
                "lm": lm_path if lm is not None else None, "pid": os.getpid(),
                "serving": {**batcher.stats(), **counts}}

    @app.get("/languages")
    async def languages() -> dict[str, Any]:
        """The classifier's languages (and the language model's, when one is loaded), and what an
        answer at ``level=group`` or ``level=region`` can be."""
        return {"languages": list(predictor.labels), "groups": predictor.classes("group"),
                "regions": predictor.classes("region"),
                "lm_languages": list(lm.languages) if lm is not None else None}

    _add_predict_routes(app, predictor, batcher)
    _add_estimate_route(app, predictor, batcher)
    _add_generate_route(app, lm, batcher)
    return app


def _options(request: Any, *exclude: str) -> Options:
    """The :class:`Options` of a validated request: its fields but ``exclude``, by name."""
    return Options(**{name: value for name, value in request if name not in exclude})


def _add_predict_routes(app: FastAPI, predictor: Predictor, batcher: Batcher) -> None:
    """``GET /predict`` (one name) and ``POST /predict`` (a batch), their models made from
    :class:`Options` with ``k`` bound by the model's number of languages."""
    n_languages = len(predictor.labels)
    query_model = predict_query(n_languages)
    body_model = predict_request(n_languages)

    @app.get("/predict", response_model=PredictionOut, responses={**UNPROCESSABLE, **BUSY})
    async def predict_one(query: Annotated[query_model, Query()]) -> Response:  # type: ignore[valid-type]
        """Top-``k`` languages of one name, and what the options add."""
        options = _options(query, "name")
        name = query.name  # type: ignore[attr-defined]
        answer = (await batcher.answers([name], options))[0]
        if answer is None:  # no letters: the strict call raises the one-line reason (no forward pass)
            await batcher.call(predictor.predict_with, [name], options)
            raise NamesError(f"{name[:40]!r} has no letters after folding to ASCII; nothing to classify")
        return Response(answer, media_type="application/json")

    @app.post("/predict", response_model=list[PredictionOut],
              responses={**MALFORMED, **TOO_LARGE, **UNPROCESSABLE, **BUSY})
    async def predict_many(request: body_model) -> Response:  # type: ignore[valid-type]
        """Top-``k`` languages of each name, in input order; repeated names are predicted once."""
        names = request.names  # type: ignore[attr-defined]
        answers = await batcher.answers(names, _options(request, "names"))
        bad = [i for i, a in enumerate(answers) if a is None]
        if bad:
            shown = ", ".join(str(i) for i in bad[:10]) + (" ..." if len(bad) > 10 else "")
            return _error(422, f"{len(bad)} name(s) have no letters after folding to ASCII "
                               f"(positions {shown}); remove them and resend", positions=bad[:100])
        # The answers are JSON bytes already (cached as such): joined, not re-encoded. The declared
        # response_model documents the shape without paying for re-validating thousands of dicts.
        return Response(b"[" + b",".join(answers) + b"]", media_type="application/json")  # type: ignore[arg-type]


def _add_estimate_route(app: FastAPI, predictor: Predictor, batcher: Batcher) -> None:
    """``POST /estimate``: the language mix of a population with intervals."""

    @app.post("/estimate", response_model=EstimateOut,
              responses={**MALFORMED, **TOO_LARGE, **UNPROCESSABLE, **BUSY})
    async def estimate(request: EstimateRequest) -> JSONResponse:
        """Each label's (group's, region's) estimated share of the population the names come from,
        with its interval (`names estimate`).

        The distinct names are scored on the prediction thread, between `/predict` passes; the
        resampling then runs on the threads `/generate` uses, at most `--max-generating` at once
        (503 beyond), within :data:`MAX_ESTIMATE_WORK` distinct names x resamples.
        """
        from namesclf.inference.mix import (
            NO_MODEL_ERROR_NOTE,
            count_population,
            estimate_mix_of,
            model_error_of,
            score_population,
        )

        tally, skipped = count_population(request.names, request.counts, request.surname_only, reader=predictor)
        if not tally:
            raise NamesError("no letters after folding to ASCII in any name: nothing to estimate a mix from")
        if len(tally) * request.bootstrap > MAX_ESTIMATE_WORK:
            raise NamesError(f"{len(tally):,} distinct names x {request.bootstrap:,} resamples is over the limit of "
                             f"{MAX_ESTIMATE_WORK:,}: ask for fewer resamples (bootstrap)")
        distinct = list(tally)
        proba = await batcher.call(score_population, predictor, distinct)
        counts = [tally[name] for name in distinct]
        result = await batcher.generate(estimate_mix_of, predictor, proba, counts, level=request.level,
                                        method=request.method, bootstrap=request.bootstrap,
                                        confidence=request.confidence, seed=request.seed, skipped=skipped)
        calibrated = model_error_of(predictor.meta, len(predictor.labels), request.method) is not None
        return JSONResponse({**result.to_dict(), "level": request.level,
                             "note": None if calibrated else NO_MODEL_ERROR_NOTE.removeprefix("note: ")})


def _add_generate_route(app: FastAPI, lm: Any, batcher: Batcher) -> None:
    """``POST /generate``: new names from the language model, or 404 when none is loaded."""

    @app.post("/generate", response_model=GenerateOut,
              responses={**MALFORMED, 404: {"model": ErrorOut}, **TOO_LARGE, **UNPROCESSABLE, **BUSY})
    async def generate(request: GenerateRequest) -> JSONResponse:
        """New names from the language model loaded with ``--lm`` (404 when none is loaded).

        At most ``--max-generating`` run at once (503 beyond), on their own threads, each within
        :data:`MAX_GENERATE_LETTERS` (fewer names come back when the budget runs out first).
        """
        if lm is None:
            return _error(404, "no language model loaded: start the server with `names serve --lm PATH`")
        from namesclf.lm.generate import generate_names  # only needed, and only importable, with an LM

        result = await batcher.generate(
            generate_names, lm, request.language, n=request.n, start=request.start,
            temperature=request.temperature, top_k=request.top_k, seed=request.seed,
            allow_known=request.allow_known, max_attempts=generation_attempts(lm, request.n, request.start))
        return JSONResponse(result.to_dict())
