"""Answers for a busy server: an LRU cache of finished JSON answers, micro-batching of concurrent
requests into one :meth:`~namesclf.inference.predictor.Predictor.predict_with` call, and a bound on queued work.

Why each part (the measurements behind it: docs/benchmarks.md#server):

* **Micro-batching.** One ``predict_with`` call costs nearly as much for 1 name as for 32: almost
  all of it is per-call overhead (module calls, the recurrence's steps, the n-gram lookups), not
  per-name work. Answering each request with its own call would make the server *slower* under
  concurrency. Here every request's names are queued; a single
  prediction thread takes everything waiting (up to ``pass_names`` names) and runs one call, so
  the more requests arrive together, the cheaper each one gets. While a pass runs, the next
  requests queue up, so batches form by themselves under load. Clients that have just had their
  answers come back a moment later, so a pass waits up to ``gather_ms`` for as many requests as
  the last pass held, which makes passes fuller and each request cheaper in CPU. A lone client
  never waits: its last pass held one request.
* **Small requests first.** Requests of at most :data:`SMALL` uncached names (one-name GETs) wait
  in their own queue, and each pass takes them before the chunks of big batches, so a big POST
  does not put a one-name request behind all of its chunks.
* **One prediction thread per process.** Passes run one after another: no oversubscription of
  the cores by many torch calls at once, and the event loop keeps parsing HTTP meanwhile (torch
  releases the GIL in its kernels). More cores are used by more worker processes.
* **The cache** maps (options, name as sent) to the finished JSON bytes of its answer, so a
  repeated surname costs a dictionary look-up and no folding, no forward pass, no JSON encoding.
  It is keyed by the name as sent, not its folded form: the answer echoes the name and its
  surname, so only the exact string has the exact same answer, and looking up a raw string
  needs no folding first. It is bounded in entries and in bytes (the key, the
  answer and the bookkeeping of each entry are counted), since a name can be 1,000 characters
  and its answer echoes it twice. ``coverage`` and ``abstain_rate`` are rounded to
  :data:`OPTION_STEP` first (:func:`normalise`), so clients cannot make new options keys (nor
  new calibration entries in the predictor) by sending values that differ in the tenth decimal.
* **Admission control.** A request is refused at once with :class:`Overloaded` (the server
  answers 503 + ``Retry-After``) instead of queueing without bound when the process is behind:
  when the oldest small request has waited more than ``max_queue_ms`` (a small request is then
  refused: latency stays bounded whatever the load), or when its names would take the names
  queued or in a pass past ``max_pending`` (the bound on big batches' work). A request is always
  admitted when nothing is queued, however big. Cache hits never queue, so they are never
  refused. ``/generate`` runs on its own threads, at most ``max_generating`` at once (a request
  beyond is refused the same way), so a long generation never holds up a prediction pass.

Answers are those of a direct ``predict_with`` call on the same names (a parity test checks it):
the model reads each name alone (one length per forward batch, no padding), so which other names
share a pass changes a probability only by the rounding of a differently sized matrix product
(~1e-6), as between any two batch sizes; the languages and their order stay (unless two
probabilities tie to that rounding).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from namesclf.config import ServeConfig
from namesclf.inference.options import Options
from namesclf.inference.predictor import Predictor


class Overloaded(Exception):
    """The process is behind; the client should retry after :attr:`retry_after` seconds."""

    retry_after = 1


#: ``coverage`` and ``abstain_rate`` are rounded to a multiple of this (and kept within
#: ``[OPTION_STEP, 1 - OPTION_STEP]``) before they are used or cached: at most 999 values each,
#: finer than the calibration itself resolves (its quantiles step by 1 / the number of
#: validation names).
OPTION_STEP = 0.001


def _on_grid(value: float) -> float:
    steps = round(value / OPTION_STEP)
    steps = min(max(steps, 1), round(1 / OPTION_STEP) - 1)
    return round(steps * OPTION_STEP, 6)


def normalise(options: Options) -> Options:
    """``options`` with ``coverage`` and ``abstain_rate`` on the :data:`OPTION_STEP` grid."""
    coverage = None if options.coverage is None else _on_grid(options.coverage)
    abstain_rate = _on_grid(options.abstain_rate)
    if coverage == options.coverage and abstain_rate == options.abstain_rate:
        return options
    return dataclasses.replace(options, coverage=coverage, abstain_rate=abstain_rate)


def options_key(options: Options) -> Hashable:
    """A hashable key for ``options``: every field's value, in field order (a prior given as weights
    becomes a sorted tuple)."""
    values = (getattr(options, f.name) for f in dataclasses.fields(options))
    return tuple(tuple(sorted(v.items())) if isinstance(v, Mapping) else v for v in values)


def encode(answer: dict[str, Any]) -> bytes:
    """The JSON bytes of one answer, exactly as Starlette's ``JSONResponse`` would write them."""
    return json.dumps(answer, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


#: Bytes an entry costs beyond its name, answer and options key: the ordered dict's slot and
#: node and the (options, name) tuple (measured with tracemalloc: ~160).
ENTRY_OVERHEAD = 200


def key_bytes(key: Hashable) -> int:
    """What an options key holds in memory (a prior's weights included), counted once per entry:
    equal keys from different requests are different objects."""
    if isinstance(key, tuple):
        return sys.getsizeof(key) + sum(key_bytes(part) for part in key)
    return sys.getsizeof(key)


class AnswerCache:
    """A least-recently-used map from (options key, name) to an answer's JSON bytes, bounded in
    entries (``size``) and in bytes (``max_bytes``, see :meth:`cost`); either at 0: nothing is kept.

    Only the event loop's thread touches it, so it needs no lock.
    """

    def __init__(self, size: int, max_bytes: int = ServeConfig.cache_bytes) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self.bytes = 0
        self._data: OrderedDict[tuple[Hashable, str], tuple[bytes, int]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def cost(key: tuple[Hashable, str], value: bytes, options_bytes: int | None = None) -> int:
        """Bytes an entry holds: its name and answer objects, its options key and :data:`ENTRY_OVERHEAD`."""
        options_bytes = key_bytes(key[0]) if options_bytes is None else options_bytes
        return ENTRY_OVERHEAD + options_bytes + sys.getsizeof(key[1]) + sys.getsizeof(value)

    def get(self, key: tuple[Hashable, str]) -> bytes | None:
        found = self._data.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self._data.move_to_end(key)
        return found[0]

    def put(self, key: tuple[Hashable, str], value: bytes, options_bytes: int | None = None) -> None:
        cost = self.cost(key, value, options_bytes)
        if self.size <= 0 or cost > self.max_bytes:
            return
        old = self._data.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self._data[key] = (value, cost)
        self.bytes += cost
        while len(self._data) > self.size or self.bytes > self.max_bytes:
            self.bytes -= self._data.popitem(last=False)[1][1]

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
    key_bytes: int = 0  # what the options key costs a cache entry


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
        self.cache = AnswerCache(config.cache_size, config.cache_bytes)
        if not config.cache_size or not config.cache_bytes:
            # No cache means none at all: the predictor keeps no calibrated coverages either.
            predictor.calibration_cache = 0
        self.pending = 0  # names queued or in a pass
        self.passes = 0
        self.predicted = 0
        self.refused = 0
        self.generating = 0  # /generate requests admitted and not finished (their thread may still run)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="names-predict")
        self._generate_executor = ThreadPoolExecutor(max_workers=config.max_generating,
                                                     thread_name_prefix="names-generate")
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
        ``coverage`` and ``abstain_rate`` are answered on the :data:`OPTION_STEP` grid.
        """
        options = normalise(options)
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
        size_of_key = key_bytes(key)
        futures = []
        step = self.config.pass_names
        for start in range(0, len(todo), step):
            future = loop.create_future()
            queue.append(_Item(todo[start : start + step], options, key, future, now, size_of_key))
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

    async def generate(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` (a ``/generate`` request) on a generation thread, or raise
        :class:`Overloaded` when ``max_generating`` are already admitted.

        The slot is freed when the thread is done, not when the request is: a client that hangs
        up does not stop the work it started, so it must not let another start beside it.
        """
        limit = self.config.max_generating
        if self.generating >= limit:
            self.refused += 1
            raise Overloaded(f"server busy: {self.generating} /generate request(s) running, the limit is {limit}; "
                             "retry after 1 s")
        loop = asyncio.get_running_loop()
        self.generating += 1
        job = self._generate_executor.submit(fn, *args, **kwargs)

        def done(_: Future) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the server is stopping
                loop.call_soon_threadsafe(self._generated)

        job.add_done_callback(done)
        return await asyncio.wrap_future(job)

    def _generated(self) -> None:
        self.generating -= 1

    def stats(self) -> dict[str, int]:
        return {"cache_entries": len(self.cache), "cache_bytes": self.cache.bytes, "cache_hits": self.cache.hits,
                "cache_misses": self.cache.misses, "pending": self.pending, "passes": self.passes,
                "predicted": self.predicted, "refused": self.refused, "generating": self.generating}

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._generate_executor.shutdown(wait=False, cancel_futures=True)

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
                        self.cache.put((item.key, name), answer, item.key_bytes)
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
                answers = {n: encode(p.to_dict()) if p.languages or p.reason else None
                           for n, p in zip(names, predictions, strict=True)}
            except Exception as exc:  # the options' fault (e.g. no calibration): every member gets it
                for i in members:
                    results[i] = exc
                continue
            for i in members:
                results[i] = [(n, answers[n]) for n in batch[i].names]
        return results
