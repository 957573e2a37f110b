"""``names serve``: the JSON HTTP API (:mod:`namesclf.serve.app`).
"""

from __future__ import annotations

import click

from namesclf.cli.console import model_option
from namesclf.config import (
    ServeConfig,
)


@click.command()
@model_option()
@click.option("--lm", "lm_path", type=click.Path(dir_okay=False), default=None,
              help="Also load this language model and answer POST /generate.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (0.0.0.0 exposes the API to the network).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Compute threads per server process, ONNX Runtime or torch (batching and --workers "
                   "already use the cores).")
@click.option("--no-access-log", is_flag=True, help="Do not log one line per request.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes on the one port, each with its own model, cache and batcher "
              "(about one per core).")
@click.option("--cache-size", type=click.IntRange(0, 10_000_000), default=ServeConfig.cache_size,
              show_default=True, help="Answers cached per process, keyed by name as sent and options (0: no cache).")
@click.option("--max-pending", type=click.IntRange(1, 10_000_000), default=ServeConfig.max_pending,
              show_default=True, help="Names queued or being predicted per process before a request is refused with "
              "503 + Retry-After.")
@click.option("--max-queue-ms", type=click.FloatRange(0, 60_000, min_open=True), default=ServeConfig.max_queue_ms,
              show_default=True, help="Refuse small requests with 503 + Retry-After once the oldest queued one "
              "has waited this long.")
@click.option("--pass-names", type=click.IntRange(1, 100_000), default=ServeConfig.pass_names,
              show_default=True, help="Most names one forward pass gathers from concurrent requests.")
@click.option("--gather-ms", type=click.FloatRange(0, 100), default=ServeConfig.gather_ms,
              show_default=True, help="Hold a lone request this long to gather others into its pass.")
def serve(model_path: str, lm_path: str | None, host: str, port: int, threads: int,
          no_access_log: bool, workers: int, cache_size: int, max_pending: int, max_queue_ms: float,
          pass_names: int, gather_ms: float) -> None:
    """Serve the model as a JSON HTTP API (docs at /docs).

    Concurrent requests are gathered into shared forward passes, answers are cached, and a
    process that is behind (--max-queue-ms, --max-pending) answers 503 at once (docs/http.md).

    \b
      names serve --model models/names.pt --lm models/lm.pt
      names serve --model models/names.pt --workers 2 --no-access-log
      curl 'http://127.0.0.1:8000/predict?name=Dostoevsky&k=3'
      curl -X POST http://127.0.0.1:8000/predict -H 'content-type: application/json' \\
           -d '{"names": ["Nakamura", "O'"'"'Brien"], "k": 2}'
    """
    from namesclf.serve.run import serve as run_server

    tuning = ServeConfig(cache_size=cache_size, max_pending=max_pending, max_queue_ms=max_queue_ms,
                         pass_names=pass_names, gather_ms=gather_ms)
    run_server(model_path, lm_path, host, port, threads=threads, access_log=not no_access_log, workers=workers,
               tuning=tuning)


