"""Running the server: one process, or ``--workers`` processes under uvicorn's supervisor, each
building its app from the same :class:`Settings` (:func:`app_from_env`), with its threads capped
so that the processes share the cores instead of spinning on them.
"""

import contextlib
import json
import os
import socket
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from fastapi import FastAPI

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
        """Load the model(s) and build the app (in each worker process, once)."""
        predictor = Predictor.load(self.model_path, threads=self.threads)
        lm = None
        if self.lm_path is not None:
            from namesclf.lm.generate import load_lm

            _set_threads(self.threads)
            lm = load_lm(self.lm_path)
        return create_app(predictor, lm, model_path=self.model_path, lm_path=self.lm_path, tuning=self.tuning)


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
    common: dict[str, Any] = {"host": host, "port": port, "access_log": access_log, "log_level": "info",
                              "timeout_graceful_shutdown": 10}
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
