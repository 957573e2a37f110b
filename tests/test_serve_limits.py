"""The server's resource bounds, tested where they break: real ``names serve`` subprocesses spoken
to over raw sockets (a stalled body, idle and half-sent headers, the connection cap, a model that
fails its load-time check), and the batcher, the body middleware and ``/generate`` in process
(cache bytes, options on a grid, the body memory budget, generation admission).

Waits are for events (a socket closing, a line on stderr, an answer) with generous overall
deadlines; nothing is asserted after a fixed sleep.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from namesclf.config import ServeConfig
from namesclf.serve.schemas import MAX_GENERATE, MAX_GENERATE_LETTERS, MAX_GENERATE_START

from .conftest import free_port
from .test_serve import TIMEOUT, Server, tiny_clf, tiny_data, tiny_lm  # noqa: F401 (fixtures)

#: Longest any test waits for the server to close a connection it should close within seconds.
CLOSE_WITHIN_S = 60.0


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a timeout fails the test)."""
    sock.settimeout(CLOSE_WITHIN_S)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except TimeoutError:
        pytest.fail(f"the server kept the connection open past {CLOSE_WITHIN_S:.0f}s (got {got[:200]!r})")
    except ConnectionResetError:
        pass
    return got


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=CLOSE_WITHIN_S)


def get_health(sock: socket.socket) -> bytes:
    """One keep-alive ``GET /health`` on ``sock``; the status line and headers of its answer."""
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {got!r}"
        got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = int(next(line.split(b":")[1] for line in lines if line.startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head


# ----------------------------------------------------------------------------- deadlines and the connection cap


@pytest.fixture(scope="module")
def strict_server(tiny_clf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: F811
    """Deadlines of one second, so each shows at once."""
    args = ["--model", str(tiny_clf), "--no-access-log", "--header-timeout-s", "1", "--body-timeout-s", "1"]
    with Server(args, tmp_path_factory.mktemp("serve-strict") / "server.log") as srv:
        yield srv


def test_a_stalled_body_gets_408_and_its_connection_closed(strict_server: Server) -> None:
    with connect(strict_server.port) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n" + b'{"names": ["Smi')
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"request body not received within 1 s" in answer


@pytest.mark.parametrize("sent", [b"", b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Ty"], ids=["idle", "half-header"])
def test_idle_and_half_sent_headers_are_closed(strict_server: Server, sent: bytes) -> None:
    with connect(strict_server.port) as sock:
        sock.sendall(sent)
        answer = read_until_closed(sock)
    if sent:
        assert answer.startswith(b"HTTP/1.1 408 "), answer
    else:
        assert answer == b""
    with httpx.Client(base_url=strict_server.url, timeout=TIMEOUT) as http:  # and the server still answers
        assert http.get("/predict", params={"name": "Tanaka"}).status_code == 200


def test_past_the_connection_cap_a_request_gets_503_and_then_gets_in(tiny_clf: Path, tmp_path: Path) -> None:  # noqa: F811
    """With ``--max-connections 2``, two keep-alive connections are served; a request on a third
    gets 503 and the connection is closed; once one of the two closes, a new one is served."""
    args = ["--model", str(tiny_clf), "--no-access-log", "--max-connections", "2", "--keep-alive-s", "120",
            "--header-timeout-s", "120"]
    with Server(args, tmp_path / "server.log") as srv:
        first, second = connect(srv.port), connect(srv.port)
        try:
            assert get_health(first).startswith(b"HTTP/1.1 200 ")
            assert get_health(second).startswith(b"HTTP/1.1 200 ")
            with connect(srv.port) as third:
                third.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
                assert read_until_closed(third).startswith(b"HTTP/1.1 503 ")
            first.close()
            deadline = time.monotonic() + CLOSE_WITHIN_S
            with httpx.Client(base_url=srv.url, timeout=TIMEOUT) as http:
                while (resp := http.get("/health", headers={"connection": "close"})).status_code != 200:
                    assert time.monotonic() < deadline, resp.text  # the server had not seen the close yet
                    time.sleep(0.05)
        finally:
            first.close()
            second.close()


# ----------------------------------------------------------------------------- a model that does not load


def test_a_model_whose_labels_do_not_match_its_output_stops_the_start(tiny_clf: Path, tmp_path: Path) -> None:  # noqa: F811
    """An export whose metadata names one language more than its graph outputs: the server does
    not start (one line, exit 1) instead of answering 500 to every /predict."""
    import onnx

    from namesclf.models.onnx_format import METADATA_KEY

    graph = onnx.load(str(tiny_clf.with_suffix(".onnx")))
    entry = next(p for p in graph.metadata_props if p.key == METADATA_KEY)
    info = json.loads(entry.value)
    info["labels"] = [*info["labels"], "Klingon"]
    entry.value = json.dumps(info)
    bad = tmp_path / "bad.onnx"
    onnx.save(graph, str(bad))
    port = free_port()
    proc = subprocess.run([sys.executable, "-m", "namesclf", "serve", "--model", str(bad), "--port", str(port)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert "bad.onnx" in lines[0] or "Klingon" in lines[0] or "labels" in lines[0], lines[0]


# ----------------------------------------------------------------------------- the answer cache in bytes


def test_the_answer_cache_keeps_within_its_bytes_and_counts_what_it_holds() -> None:
    """1,000-character names under a 200 KB budget: the cache stays within the budget, evicts the
    least recently used, and what it counts is not less than what its entries really take."""
    from namesclf.inference.options import Options
    from namesclf.serve.batcher import AnswerCache, options_key

    key = options_key(Options(k=3, coverage=0.9))
    budget = 200_000
    cache = AnswerCache(size=1_000_000, max_bytes=budget)
    names = [f"{i:06d}" + "x" * 994 for i in range(400)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i, name in enumerate(names):
            cache.put((key, name), json.dumps({"name": name, "ascii": name, "i": i}).encode())
            assert cache.bytes <= budget
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 0 < len(cache) < len(names)
    assert cache.bytes >= held * 0.9, (cache.bytes, held)  # the count does not under-state the memory
    assert cache.get((key, names[-1])) is not None and cache.get((key, names[0])) is None  # LRU order
    assert cache.bytes == sum(AnswerCache.cost(k, v) for k, (v, _) in cache._data.items())
    huge = AnswerCache(size=10, max_bytes=100)
    huge.put((key, "Ivanov"), b"x" * 200)  # one answer over the whole budget is not kept
    assert len(huge) == 0 and huge.bytes == 0
    for none in (AnswerCache(size=0), AnswerCache(size=10, max_bytes=0)):
        none.put((key, "Ivanov"), b"{}")
        assert len(none) == 0


def test_coverage_and_abstain_rate_are_keyed_on_a_grid_and_cache_size_0_keeps_nothing(tiny_clf: Path) -> None:  # noqa: F811
    """Coverages that differ past the third decimal share one answer and one cache entry; with
    ``cache_size=0`` neither the answer cache nor the predictor's calibration keeps anything,
    however many coverages clients send."""
    from namesclf.inference.options import Options
    from namesclf.inference.predictor import Predictor
    from namesclf.serve.batcher import OPTION_STEP, Batcher, normalise

    assert normalise(Options(coverage=0.90004, abstain_rate=0.0501)) == Options(coverage=0.9, abstain_rate=0.05)
    assert normalise(Options(coverage=1e-9)).coverage == OPTION_STEP
    assert normalise(Options(coverage=1 - 1e-9)).coverage == 1 - OPTION_STEP

    async def ask(batcher: Batcher, coverages: list[float]) -> list[bytes | None]:
        return [(await batcher.answers(["Tanaka"], Options(k=2, coverage=c)))[0] for c in coverages]

    predictor = Predictor.load(str(tiny_clf))
    batcher = Batcher(predictor, ServeConfig())
    try:
        answers = asyncio.run(ask(batcher, [0.9, 0.9000001, 0.89996]))
    finally:
        batcher.close()
    assert answers[0] is not None and answers[0] == answers[1] == answers[2]
    assert len(batcher.cache) == 1 and batcher.cache.hits == 2
    direct = predictor.predict_with(["Tanaka"], Options(k=2, coverage=0.9))[0].to_dict()
    assert json.loads(answers[0])["prediction_set"] == direct["prediction_set"]

    bare = Predictor.load(str(tiny_clf))
    batcher = Batcher(bare, ServeConfig(cache_size=0))
    try:
        asyncio.run(ask(batcher, [0.5 + i / 1000 for i in range(100)]))
    finally:
        batcher.close()
    assert len(batcher.cache) == 0 and not any(isinstance(k, tuple) for k in bare._cache)

    many = Predictor.load(str(tiny_clf))
    for i in range(200):  # used directly: the calibration keeps the latest coverages only
        many.conformal(0.5 + i / 1000)
    assert sum(isinstance(k, tuple) for k in many._cache) == many.calibration_cache


# ----------------------------------------------------------------------------- the body memory budget


def test_bodies_beyond_the_memory_budget_get_503_and_the_budget_comes_back() -> None:
    """Two requests' bodies arrive together under a 1 MB budget: the first (600 KB so far) holds
    its bytes, the second's would pass the budget and is refused with 503 + Retry-After; once the
    first completes and is answered, the budget is whole again, and a body alone is admitted even
    over the budget."""
    from namesclf.serve.middleware import BodySizeLimit

    seen: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def scenario() -> None:
        limit = BodySizeLimit(app, body_memory=1_000_000, body_timeout_s=60)
        scope = {"type": "http", "headers": [(b"content-length", b"700000")]}
        rest = asyncio.Event()
        first_sent: list[dict] = []

        async def first_receive() -> dict:
            if not first_sent:
                first_sent.append({})
                return {"type": "http.request", "body": b"a" * 600_000, "more_body": True}
            await rest.wait()
            return {"type": "http.request", "body": b"a" * 100_000, "more_body": False}

        async def collect(out: list[dict]) -> Any:
            async def send(message: dict) -> None:
                out.append(message)
            return send

        first_out: list[dict] = []
        first = asyncio.ensure_future(limit(scope, first_receive, await collect(first_out)))
        while limit.held < 600_000:
            await asyncio.sleep(0)
        second_out: list[dict] = []
        chunks = iter([b"b" * 300_000, b"b" * 300_000])

        async def second_receive() -> dict:
            chunk = next(chunks, b"")
            return {"type": "http.request", "body": chunk, "more_body": bool(chunk)}

        await limit(scope, second_receive, await collect(second_out))
        assert second_out[0]["status"] == 503
        headers = second_out[0]["headers"]
        assert (b"retry-after", b"1") in headers and (b"connection", b"close") in headers
        assert "busy" in json.loads(second_out[1]["body"])["error"]
        assert limit.held == 600_000  # the refused body's bytes were dropped
        rest.set()
        await asyncio.wait_for(first, 60)
        assert first_out[0]["status"] == 200 and seen == [b"a" * 700_000]
        assert limit.held == 0
        alone: list[dict] = []  # a body alone is admitted even when it is bigger than the budget
        chunks = iter([b"c" * 800_000, b"c" * 800_000])
        await limit(scope, second_receive, await collect(alone))
        assert alone[0]["status"] == 200 and seen[-1] == b"c" * 1_600_000 and limit.held == 0

    asyncio.run(asyncio.wait_for(scenario(), 60))


# ----------------------------------------------------------------------------- /generate


@pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient.")
def test_generate_is_admitted_like_predict_and_its_work_is_bounded(tiny_clf: Path, monkeypatch: Any) -> None:  # noqa: F811
    """With one generation running (held at a gate on its thread), a second is refused at once
    with 503 + Retry-After while /predict still answers; the first then completes, and the next
    one is admitted. Each call is capped at MAX_GENERATE_LETTERS letters' worth of candidates."""
    import namesclf.lm.generate as generate_module
    from namesclf.inference.predictor import Predictor
    from namesclf.serve.app import create_app

    gate, started = threading.Event(), threading.Event()
    calls: list[dict[str, Any]] = []

    def gated(lm: Any, language: str | None, **kwargs: Any) -> Any:
        calls.append(kwargs)
        started.set()
        assert gate.wait(60)
        return SimpleNamespace(to_dict=lambda: {"language": language, "names": ["Ivanova"], "skipped_known": 0})

    monkeypatch.setattr(generate_module, "generate_names", gated)
    lm = SimpleNamespace(known_keys=set(), meta={"max_len": 20}, languages=["Russian"])
    app = create_app(Predictor.load(str(tiny_clf)), lm, tuning=ServeConfig(max_generating=1))

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as http:
            first = asyncio.ensure_future(http.post("/generate", json={"language": "Russian", "n": 10}))
            while not started.is_set():
                await asyncio.sleep(0.01)
            refused = await http.post("/generate", json={"language": "Russian", "n": 10})
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1", refused.text
            assert "busy" in refused.json()["error"]
            assert (await http.get("/predict", params={"name": "Tanaka"})).status_code == 200
            gate.set()
            assert (await first).json()["names"] == ["Ivanova"]
            long_start = "Ab" * (MAX_GENERATE_START // 2)
            again = await http.post("/generate", json={"language": "Russian", "n": MAX_GENERATE, "start": long_start})
            assert again.status_code == 200, again.text
            for bad in ({"n": MAX_GENERATE + 1}, {"start": "a" * (MAX_GENERATE_START + 1)}):
                resp = await http.post("/generate", json={"language": "Russian", **bad})
                assert resp.status_code == 422, (bad, resp.text)

    asyncio.run(scenario())
    assert calls[0]["max_attempts"] == 50 * 10 + 500  # a small request keeps generate_names' own default
    capped = calls[-1]
    assert capped["max_attempts"] * (len(capped["start"]) + 1 + 64) <= MAX_GENERATE_LETTERS
    assert capped["max_attempts"] < 50 * MAX_GENERATE + 500


def test_a_real_generate_over_its_letter_budget_returns_within_it(tiny_clf: Path, tiny_lm: Path,  # noqa: F811
                                                                    tmp_path: Path) -> None:
    """The costly request of the report (1,000 names after a 60-letter start) answers 200 with
    the candidates it tried within the budget, and the server goes on answering."""
    with Server(["--model", str(tiny_clf), "--lm", str(tiny_lm), "--no-access-log"], tmp_path / "server.log") as srv, \
            httpx.Client(base_url=srv.url, timeout=TIMEOUT) as http:
        resp = http.post("/generate", json={"language": "Russian", "n": MAX_GENERATE,
                                            "start": "K" * MAX_GENERATE_START, "allow_known": True})
        assert resp.status_code == 200, resp.text
        assert 0 < resp.json()["attempts"] * (MAX_GENERATE_START + 1 + 64) <= MAX_GENERATE_LETTERS
        assert http.get("/health").json()["serving"]["generating"] == 0
