"""``names serve``: the JSON HTTP API (:mod:`namesclf.serve.app`).
"""

from __future__ import annotations

import click

from namesclf.cli.console import model_option
from namesclf.config import (
    ServeConfig,
)

MIB = 1024 * 1024


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
@click.option("--cache-mib", type=click.FloatRange(0, 1_000_000), default=ServeConfig.cache_bytes / MIB,
              show_default=True, help="Memory the answer cache may hold per process, in MiB, counting names, answers "
              "and bookkeeping (0: no cache).")
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
@click.option("--max-connections", type=click.IntRange(1, 1_000_000), default=ServeConfig.max_connections,
              show_default=True, help="Open connections per process; past it a request is answered 503 and its "
              "connection closed.")
@click.option("--backlog", type=click.IntRange(1, 1_000_000), default=ServeConfig.backlog, show_default=True,
              help="Connections the kernel queues before the server accepts them.")
@click.option("--keep-alive-s", type=click.FloatRange(0, 3600, min_open=True), default=ServeConfig.keep_alive_s,
              show_default=True, help="Close a keep-alive connection that sends nothing this long after an answer.")
@click.option("--header-timeout-s", type=click.FloatRange(0, 3600, min_open=True),
              default=ServeConfig.header_timeout_s, show_default=True,
              help="A request's line and headers must arrive within this of the connection opening or the last "
              "answer, else the connection is closed.")
@click.option("--body-timeout-s", type=click.FloatRange(0, 3600, min_open=True), default=ServeConfig.body_timeout_s,
              show_default=True, help="A request's body must arrive within this of its headers, else 408 and the "
              "connection is closed.")
@click.option("--body-memory-mib", type=click.FloatRange(0, 1_000_000, min_open=True),
              default=ServeConfig.body_memory / MIB, show_default=True,
              help="Memory all request bodies being received may hold per process, in MiB; a body that would pass "
              "it is refused with 503 + Retry-After.")
@click.option("--max-generating", type=click.IntRange(1, 64), default=ServeConfig.max_generating, show_default=True,
              help="POST /generate requests running at once per process (one core each); another is refused with "
              "503 + Retry-After.")
def serve(model_path: str, lm_path: str | None, host: str, port: int, threads: int,
          no_access_log: bool, workers: int, cache_size: int, cache_mib: float, max_pending: int,
          max_queue_ms: float, pass_names: int, gather_ms: float, max_connections: int, backlog: int,
          keep_alive_s: float, header_timeout_s: float, body_timeout_s: float, body_memory_mib: float,
          max_generating: int) -> None:
    """Serve the model as a JSON HTTP API (docs at /docs).

    Concurrent requests are gathered into shared forward passes, answers are cached, and a
    process that is behind (--max-queue-ms, --max-pending) answers 503 at once (docs/http.md).
    Connections, request bodies, the cache and /generate are bounded in number, time and memory
    (docs/safety.md), so no client can make the server hold more than those bounds.

    \b
      names serve --model models/names.pt --lm models/lm.pt
      names serve --model models/names.pt --workers 2 --no-access-log
      curl 'http://127.0.0.1:8000/predict?name=Dostoevsky&k=3'
      curl -X POST http://127.0.0.1:8000/predict -H 'content-type: application/json' \\
           -d '{"names": ["Nakamura", "O'"'"'Brien"], "k": 2}'
    """
    from namesclf.serve.run import serve as run_server

    tuning = ServeConfig(cache_size=cache_size, cache_bytes=round(cache_mib * MIB), max_pending=max_pending,
                         max_queue_ms=max_queue_ms, pass_names=pass_names, gather_ms=gather_ms,
                         max_connections=max_connections, backlog=backlog, keep_alive_s=keep_alive_s,
                         header_timeout_s=header_timeout_s, body_timeout_s=body_timeout_s,
                         body_memory=max(1, round(body_memory_mib * MIB)), max_generating=max_generating)
    run_server(model_path, lm_path, host, port, threads=threads, access_log=not no_access_log, workers=workers,
               tuning=tuning)


