"""Running the server: one process, or ``--workers`` processes under uvicorn's supervisor, each
building its app from the same :class:`Settings` (:func:`app_from_env`), with its threads capped
so that the processes share the cores instead of spinning on them, and its connections bounded
(:class:`DeadlineH11Protocol`, uvicorn's ``limit_concurrency``, ``backlog`` and keep-alive timeout).
"""

import asyncio
import contextlib
import functools
import json
import os
import socket
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

import h11
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from namesclf.config import ServeConfig
from namesclf.errors import NamesError
from namesclf.inference.predictor import Predictor
from namesclf.serve.app import create_app
from namesclf.serve.schemas import ENV_SETTINGS


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
        """Load the model(s), check that they answer, and build the app (in each worker process, once).

        Whatever goes wrong here (a damaged file, a model whose labels do not match its output, a
        runtime that cannot run it) is one :class:`NamesError`: the server does not start rather
        than answer 500 to every request.
        """
        predictor = _loading(self.model_path, lambda: _checked(Predictor.load(self.model_path, threads=self.threads)))
        lm = None
        if self.lm_path is not None:
            from namesclf.lm.generate import load_lm

            _set_threads(self.threads)
            lm = _loading(self.lm_path, lambda: _checked_lm(load_lm(self.lm_path)))
        return create_app(predictor, lm, model_path=self.model_path, lm_path=self.lm_path, tuning=self.tuning)


def _loading(path: str, load: Any) -> Any:
    """``load()``, with anything it raises but a :class:`NamesError` turned into one."""
    try:
        return load()
    except NamesError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise NamesError(f"cannot serve {path}: {type(exc).__name__}: {first}") from exc


def _checked(predictor: Predictor) -> Predictor:
    """``predictor`` once it has answered one name with one probability per label, all finite."""
    import numpy as np

    proba = predictor.proba_ascii(["smith"])
    if proba.shape != (1, len(predictor.labels)) or not np.isfinite(proba).all():
        raise NamesError(f"the model answers {proba.shape[-1]} probabilities for {len(predictor.labels)} labels "
                         "(or non-finite ones): the file is damaged; train or export it again")
    return predictor


def _checked_lm(lm: Any) -> Any:
    """``lm`` once it has sampled one candidate (in its first language, when it has languages)."""
    from namesclf.lm.generate import generate_names

    generate_names(lm, lm.languages[0] if lm.languages else None, n=1, seed=0, allow_known=True, max_attempts=1)
    return lm


#: Sent to a client whose request line and headers were not complete within the deadline.
_LATE = b"request headers not received in time"
_REQUEST_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: "
                    b"%d\r\nconnection: close\r\n\r\n%s" % (len(_LATE), _LATE))


#: Most bytes read from one socket at a time (asyncio's default is 256 KiB). uvicorn stops reading
#: a connection once 64 KiB of its body wait for the app, but only after the read that passed
#: that mark, so this is what bounds the body bytes each open connection can hold in buffers: with
#: hundreds of uploads at once, 256 KiB reads held more memory than the bodies' own budget.
READ_BYTES = 16 * 1024


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on a request's headers and small socket reads.

    uvicorn times out a keep-alive connection that stays silent after an answer, but nothing
    else: a connection that never sends a byte, or sends half a request line and stalls, is kept
    for good (and counts against ``limit_concurrency``, so a few hundred of them shut everyone
    else out). Here the request line and headers must be complete within ``header_timeout_s`` of
    the connection opening or of the previous answer; otherwise the connection is closed (with a
    408 when part of a request had arrived). The body's own deadline is
    :class:`~namesclf.serve.middleware.BodySizeLimit`'s; the headers' size is h11's limit (16 KiB).
    Each socket is read :data:`READ_BYTES` at a time (asyncio's transport attribute ``max_size``,
    left alone where a transport has none).

    Naming the protocol class means h11 even where httptools is installed (uvicorn's ``auto``
    would pick httptools); the server's figures were measured on h11, the only one installed.
    """

    def __init__(self, *args: Any, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if hasattr(transport, "max_size"):
            transport.max_size = READ_BYTES
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return  # closed already, or a request arrived whole: its body has its own deadline
        if self.conn.trailing_data[0]:
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()


def app_from_env() -> FastAPI:
    """The app factory uvicorn's worker processes call (``namesclf.serve.run:app_from_env``): the
    settings come from :data:`ENV_SETTINGS`, since a worker is a fresh interpreter."""
    text = os.environ.get(ENV_SETTINGS)
    if not text:
        raise NamesError(f"${ENV_SETTINGS} is not set: start the server with `names serve`")
    return Settings.from_env(text).load()


def _set_threads(threads: int) -> None:
    """Intra-op threads per process: concurrency comes from batching and processes, and intra-op
    threads on top oversubscribe the cores, which on a busy machine makes a batch many times slower
    (docs/benchmarks.md#server).
    The classifier gets the same cap through :meth:`~namesclf.inference.predictor.Predictor.load` (ONNX Runtime's, or
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
    common: dict[str, Any] = {
        "host": host, "port": port, "access_log": access_log, "log_level": "info", "timeout_graceful_shutdown": 10,
        # uvicorn answers 503 (and closes) when the connections, this one included, reach
        # limit_concurrency: one more lets exactly max_connections be served.
        "limit_concurrency": tuning.max_connections + 1, "backlog": tuning.backlog,
        "timeout_keep_alive": tuning.keep_alive_s,
        "http": functools.partial(DeadlineH11Protocol, header_timeout_s=tuning.header_timeout_s)}
    if workers == 1:
        uvicorn.run(app, **common)
        return
    del app
    os.environ[ENV_SETTINGS] = settings.to_env()
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config("namesclf.serve.run:app_from_env", factory=True, workers=workers, **common)
    # What uvicorn.run does for workers, but with the listening socket re-made from its descriptor,
    # so it records its protocol (TCP): asyncio only sets TCP_NODELAY on accepted sockets whose
    # protocol says TCP, and uvicorn binds with protocol 0. Without it, Nagle's algorithm holds
    # each answer's body behind its headers until the client's delayed ACK (docs/benchmarks.md#server).
    listener = socket.socket(fileno=config.bind_socket().detach())
    with contextlib.suppress(KeyboardInterrupt):
        Multiprocess(config, sockets=[listener]).run()
