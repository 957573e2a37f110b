"""Answers for a busy server: an LRU cache of finished JSON answers, micro-batching of concurrent
requests into one :meth:`~namesclf.inference.predictor.Predictor.predict_with` call, and a bound on queued work.

Why each part (figures on 2 shared cores, the default GRU + 4-gram model, torch 1 thread):

* **Micro-batching.** One ``predict_with`` call costs ~3.2 ms for 1 name, ~3.6 ms for 8 and
  ~5.7 ms for 32: almost all of it is per-call overhead (module calls, the recurrence's steps,
  the n-gram lookups), not per-name work. Answering each request with its own call is why the
  server got *slower* under concurrency. Here every request's names are queued; a single
  prediction thread takes everything waiting (up to ``pass_names`` names) and runs one call, so
  the more requests arrive together, the cheaper each one gets. While a pass runs, the next
  requests queue up, so batches form by themselves under load. Clients that have just had their
  answers come back a moment later, so a pass waits up to ``gather_ms`` for as many requests as
  the last pass held (measured with 8 connections on 2 busy cores: 8 names a pass instead of
  4.8, and 1.25 ms of CPU a request instead of 1.6-2.0). A lone client never waits: its last
  pass held one request.
* **Small requests first.** Requests of at most :data:`SMALL` uncached names (one-name GETs) wait
  in their own queue, and each pass takes them before the chunks of big batches, so a
  10,000-name POST does not put a one-name request a second behind it.
* **One prediction thread per process.** Passes run one after another: no oversubscription of
  the cores by many torch calls at once, and the event loop keeps parsing HTTP meanwhile (torch
  releases the GIL in its kernels). More cores are used by more worker processes.
* **The cache** maps (options, name as sent) to the finished JSON bytes of its answer, so a
  repeated surname costs a dictionary look-up and no folding, no forward pass, no JSON encoding.
  It is keyed by the name as sent, not its folded form: the answer echoes the name and its
  surname, so only the exact string has the exact same answer, and looking up a raw string
  needs no folding (~16 us a name) first.
* **Admission control.** A request is refused at once with :class:`Overloaded` (the server
  answers 503 + ``Retry-After``) instead of queueing without bound when the process is behind:
  when the oldest small request has waited more than ``max_queue_ms`` (a small request is then
  refused: latency stays bounded whatever the load), or when its names would take the names
  queued or in a pass past ``max_pending`` (the bound on big batches' work). A request is always
  admitted when nothing is queued, however big. Cache hits never queue, so they are never
  refused.

Answers are those of a direct ``predict_with`` call on the same names (a parity test checks it):
the model reads each name alone (one length per forward batch, no padding), so which other names
share a pass changes a probability only by the rounding of a differently sized matrix product
(~1e-6), as between any two batch sizes; the languages and their order stay (unless two
probabilities tie to that rounding).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import OrderedDict, deque
from collections.abc import Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from namesclf.config import ServeConfig
from namesclf.inference.options import Options
from namesclf.inference.predictor import Predictor


class Overloaded(Exception):
    """The process is behind; the client should retry after :attr:`retry_after` seconds."""

    retry_after = 1


def options_key(options: Options) -> Hashable:
    """A hashable key for ``options``: every field's value, in field order (a prior given as weights
    becomes a sorted tuple)."""
    values = (getattr(options, f.name) for f in dataclasses.fields(options))
    return tuple(tuple(sorted(v.items())) if isinstance(v, Mapping) else v for v in values)


def encode(answer: dict[str, Any]) -> bytes:
    """The JSON bytes of one answer, exactly as Starlette's ``JSONResponse`` would write them."""
    return json.dumps(answer, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


class AnswerCache:
    """A bounded least-recently-used map from (options key, name) to an answer's JSON bytes.

    Only the event loop's thread touches it, so it needs no lock.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[tuple[Hashable, str], bytes] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Hashable, str]) -> bytes | None:
        found = self._data.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self._data.move_to_end(key)
        return found

    def put(self, key: tuple[Hashable, str], value: bytes) -> None:
        if self.size <= 0:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


@dataclass
class _Item:
    """Some names of one request, all with the same options, waiting for a pass."""

    names: list[str]
    options: Options
    key: Hashable
    future: asyncio.Future = field(repr=False)
    queued: float = 0.0  # time.monotonic() when queued


#: Requests with at most this many uncached names go to the queue that passes serve first.
SMALL = 32


class Batcher:
    """Answers names through the cache and one prediction thread that batches concurrent requests.

    ``answers`` is called from the event loop; everything but the prediction itself runs there.
    Bind to a loop lazily, so one app object can be served by a test client and by uvicorn.
    """

    def __init__(self, predictor: Predictor, config: ServeConfig | None = None) -> None:
        config = config or ServeConfig()
        config.check()
        self.predictor = predictor
        self.config = config
        self.cache = AnswerCache(config.cache_size)
        self.pending = 0  # names queued or in a pass
        self.passes = 0
        self.predicted = 0
        self.refused = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="names-predict")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._small: deque[_Item] = deque()
        self._bulk: deque[_Item] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------------ the event-loop side

    async def answers(self, names: Sequence[str], options: Options) -> list[bytes | None]:
        """Each name's answer as JSON bytes, in input order; None where a name has no letters.

        Raises :class:`Overloaded` when the process is behind (see the module's docstring), and
        whatever ``predict_with`` raises for these options (a :class:`~namesclf.errors.NamesError`).
        """
        key = options_key(options)
        out: list[bytes | None] = [None] * len(names)
        missing: dict[str, list[int]] = {}
        cache = self.cache
        for i, name in enumerate(names):
            hit = cache.get((key, name))
            if hit is None:
                missing.setdefault(name, []).append(i)
            else:
                out[i] = hit
        if not missing:
            return out
        todo = list(missing)  # de-duplicated, first-seen order
        self._admit(len(todo))
        self._start()
        loop = self._loop
        assert loop is not None and self._wakeup is not None
        queue = self._small if len(todo) <= SMALL else self._bulk
        now = time.monotonic()
        futures = []
        step = self.config.pass_names
        for start in range(0, len(todo), step):
            future = loop.create_future()
            queue.append(_Item(todo[start : start + step], options, key, future, now))
            futures.append(future)
        self.pending += len(todo)
        self._wakeup.set()
        chunks = await asyncio.gather(*futures)
        for answered in chunks:
            for name, answer in answered:
                for i in missing[name]:
                    out[i] = answer
        return out

    def _admit(self, n: int) -> None:
        if not self.pending:
            return
        waited_ms = 1000 * (time.monotonic() - self._small[0].queued) if self._small else 0.0
        if n <= SMALL and waited_ms > self.config.max_queue_ms:
            self.refused += 1
            raise Overloaded(f"server busy: small requests have waited {waited_ms:.0f} ms, over the limit of "
                             f"{self.config.max_queue_ms:g} ms; retry after 1 s")
        if self.pending + n > self.config.max_pending:
            self.refused += 1
            raise Overloaded(f"server busy: {self.pending:,} names queued, {n:,} more would pass the limit of "
                             f"{self.config.max_pending:,}; retry after 1 s")

    async def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the prediction thread (what must not run beside a pass)."""
        self._start()
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def stats(self) -> dict[str, int]:
        return {"cache_entries": len(self.cache), "cache_hits": self.cache.hits, "cache_misses": self.cache.misses,
                "pending": self.pending, "passes": self.passes, "predicted": self.predicted,
                "refused": self.refused}

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._task is not None and not self._task.done():
            return
        if self._loop is not loop:  # a new loop (a second test client): queued work of the old one is gone
            self._small.clear()
            self._bulk.clear()
            self.pending = 0
        self._loop = loop
        self._wakeup = asyncio.Event()
        self._task = loop.create_task(self._run(), name="names-batcher")

    def _take(self) -> tuple[list[_Item], int]:
        """The next pass: small requests first, then chunks of big ones, up to ``pass_names`` names."""
        batch: list[_Item] = []
        size = 0
        for queue in (self._small, self._bulk):
            while queue and (not batch or size + len(queue[0].names) <= self.config.pass_names):
                item = queue.popleft()
                if item.future.done():  # its request was cancelled
                    self.pending -= len(item.names)
                    continue
                batch.append(item)
                size += len(item.names)
        return batch, size

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wakeup is not None
        gather_s = self.config.gather_ms / 1000
        last_requests = 1
        while True:
            while not (self._small or self._bulk):
                self._wakeup.clear()
                await self._wakeup.wait()
            if gather_s and len(self._small) < last_requests and not self._bulk:
                await self._gather(last_requests, loop.time() + gather_s)
            batch, size = self._take()
            last_requests = min(len(batch), self.config.pass_names)
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self._predict, batch)
            except Exception as exc:  # the executor itself failed: fail this batch, keep serving
                results = [exc] * len(batch)
            self.passes += 1
            self.predicted += size
            for item, result in zip(batch, results, strict=True):
                self.pending -= len(item.names)
                if isinstance(result, BaseException):
                    if not item.future.done():
                        item.future.set_exception(result)
                    continue
                for name, answer in result:
                    if answer is not None:
                        self.cache.put((item.key, name), answer)
                if not item.future.done():
                    item.future.set_result(result)

    async def _gather(self, want: int, deadline: float) -> None:
        """Wait until ``want`` small requests are queued (as many as the last pass held: the same
        clients coming back) or the deadline passes. A lone client never waits: its last pass held
        one request, which is already here."""
        assert self._loop is not None and self._wakeup is not None
        while len(self._small) < want and not self._bulk:
            left = deadline - self._loop.time()
            if left <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), left)
            except TimeoutError:
                return

    # ------------------------------------------------------------------ the prediction thread
    def _predict(self, batch: list[_Item]) -> list[list[tuple[str, bytes | None]] | Exception]:
        """One ``predict_with`` per distinct options in ``batch`` (usually one), each name once."""
        groups: dict[Hashable, list[int]] = {}
        for i, item in enumerate(batch):
            groups.setdefault(item.key, []).append(i)
        results: list[list[tuple[str, bytes | None]] | Exception] = [[] for _ in batch]
        for members in groups.values():
            names = list(dict.fromkeys(n for i in members for n in batch[i].names))
            try:
                predictions = self.predictor.predict_with(names, batch[members[0]].options, strict=False)
                answers = {n: encode(p.to_dict()) if p.languages else None
                           for n, p in zip(names, predictions, strict=True)}
            except Exception as exc:  # the options' fault (e.g. no calibration): every member gets it
                for i in members:
                    results[i] = exc
                continue
            for i in members:
                results[i] = [(n, answers[n]) for n in batch[i].names]
        return results
