"""The two pure ASGI middlewares in front of the app: :class:`BodySizeLimit` (a body is read within
its size, time and memory bounds before it is parsed: 413, 408 or 503 otherwise, sent after the
rest of the body has been read and discarded, so a client that writes its whole body before
reading gets the answer and not a broken pipe) and :class:`FastPredict` (the common
``GET /predict?name=...`` answered without FastAPI's routing).
"""

import asyncio
import ctypes
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from namesclf.config import ServeConfig
from namesclf.inference.options import DEFAULTS, Options
from namesclf.serve.batcher import Batcher, Overloaded
from namesclf.serve.schemas import DRAIN_BYTES, DRAIN_S, MAX_BODY_BYTES, MAX_NAME_CHARS

#: Body bytes released since the last trim past which the heap is trimmed once no body is held.
TRIM_AFTER_BYTES = 8 * 1024 * 1024


def _malloc_trim() -> Callable[[int], Any] | None:
    """glibc's ``malloc_trim(0)``, or None where there is none (musl, macOS, Windows)."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


class _Body:
    """One request's body as it arrives: its chunks, their size, and what they hold of the budget."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.held = 0
        self.complete = False

    def add(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)
        self.held += len(chunk)

    def clear(self) -> int:
        """Drop the chunks; what they held of the budget (now released)."""
        released, self.held = self.held, 0
        self.chunks = []
        return released

    def replay(self, receive: Receive) -> Receive:
        """The body as one message (joined once, the chunks dropped), then ``receive`` itself."""
        whole = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks = []
        replayed = False

        async def replayed_receive() -> Message:
            nonlocal replayed, whole
            if not replayed:
                replayed = True
                message: Message = {"type": "http.request", "body": whole, "more_body": False}
                whole = b""
                return message
            return await receive()

        return replayed_receive


class BodySizeLimit:
    """Pure ASGI middleware: read a request's body within its bounds before the app sees it.

    * **Size.** A declared ``Content-Length`` over ``max_bytes`` is refused with 413 without being
      stored. A chunked body is counted as it arrives and refused as soon as it passes the limit,
      so a client cannot make the server hold more than ``max_bytes`` of one request.
    * **Time.** The whole body must arrive within ``body_timeout_s`` of the headers, else 408 and
      the connection is closed: a client that sends part of a body and stalls does not keep its
      bytes (nor its connection) for good.
    * **Memory.** All bodies being received or handled by this process hold at most
      ``body_memory`` bytes between them; a body whose next bytes would pass it is refused with
      503 + ``Retry-After`` and its bytes are dropped. A body is refused only while other
      requests hold part of the budget, so a budget under ``max_bytes`` still lets one request at a
      time through. Memory for bodies is then bounded by ``max(body_memory, max_bytes)`` plus one
      piece, whatever the number of clients.

    A body within the bounds is replayed to the app in one message, and its bytes count against
    the budget until the app has answered. When no body is held any more and at least
    :data:`TRIM_AFTER_BYTES` were released since the last time, glibc's heap is trimmed (on a
    thread): bodies arrive in pieces of tens of KB from many connections at once, and the holes
    they leave in the heap otherwise keep a burst's memory in the process after it has passed.

    Before answering 413 or 503 the rest of the body is read and thrown away (at most
    ``drain_bytes`` within ``drain_s``): a client that sends its whole body before reading the
    answer then gets it. A client that asked ``Expect: 100-continue`` has sent no body yet and is
    answered at once.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, drain_bytes: int = DRAIN_BYTES,
                 drain_s: float = DRAIN_S, body_timeout_s: float = ServeConfig.body_timeout_s,
                 body_memory: int = ServeConfig.body_memory) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = drain_bytes
        self.drain_s = drain_s
        self.body_timeout_s = body_timeout_s
        self.body_memory = body_memory
        self.held = 0  # bytes of bodies held by this process's requests, all together
        self.released = 0  # body bytes released since the heap was last trimmed
        self._trim = _malloc_trim()

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
        body = _Body()
        try:
            await self._read(receive, send, body)
            if body.complete:
                await self.app(scope, body.replay(receive), send)
        finally:
            self._release(body.clear())

    def _release(self, size: int) -> None:
        """Give ``size`` bytes back to the budget; trim the heap after a burst (see the class)."""
        self.held -= size
        self.released += size
        if not self.held and self.released >= TRIM_AFTER_BYTES and self._trim is not None:
            self.released = 0
            asyncio.get_running_loop().run_in_executor(None, self._trim, 0)

    async def _read(self, receive: Receive, send: Send, body: _Body) -> None:
        """Read the body into ``body`` within the bounds, or answer 408, 413 or 503 and return."""
        try:
            async with asyncio.timeout(self.body_timeout_s):
                refusal = await self._receive_all(receive, body)
        except TimeoutError:
            self._release(body.clear())
            await _send_json(send, 408, {"error": f"request body not received within {self.body_timeout_s:g} s"})
            return
        if refusal is None:
            return
        status, content, headers, seen = refusal
        self._release(body.clear())
        if seen is not None:
            await self._drain(receive, seen)
        await _send_json(send, status, content, headers=headers)

    async def _receive_all(self, receive: Receive, body: _Body) -> tuple[int, dict[str, str], Any, int | None] | None:
        """Receive until the body is complete (``body.complete``) or the client hangs up (None), or
        the refusal to send when a bound is passed: (status, content, headers, bytes seen so far,
        or None when the client has sent all of its body and nothing is left to drain)."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            seen = body.size + len(chunk)
            if seen > self.max_bytes:
                return 413, self._too_large(None), (), seen if more else None
            if self.held > body.held and self.held + len(chunk) > self.body_memory:  # others hold some
                busy = (f"server busy: request bodies being received hold {self.held:,} bytes, the limit is "
                        f"{self.body_memory:,}; retry after 1 s")
                return 503, {"error": busy}, ((b"retry-after", b"1"),), seen if more else None
            self.held += len(chunk)
            body.add(chunk)
            if not more:
                body.complete = True
                return None

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

    Why: FastAPI's handling of the eight declared query parameters costs a request as much CPU as
    uvicorn's HTTP parsing, and more than a batched forward pass per name, while a bare ASGI
    function gives the same answer for a fraction of it (measured: docs/benchmarks.md#server).
    Only a query this path is sure of is answered here: ``name`` once,
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
        k = DEFAULTS.k
        if values:
            text = values.pop("k", "")
            if values or not (text.isascii() and text.isdigit() and len(text) <= 3 and text[0] != "0"):
                return None
            k = int(text)
            if k > self.n_languages:
                return None
        return name, k
