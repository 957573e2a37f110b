"""The HTTP API, tested the way it is used: a real ``python -m namesclf serve`` subprocess on a free
loopback port, spoken to over HTTP with httpx, plus a few in-process checks of ``create_app``.

Every server started here is terminated in its fixture's teardown, and only 127.0.0.1 is ever
contacted. Waits are bounded: the server must answer /health within :data:`STARTUP_S`, every
request has a timeout, and the load test has an overall deadline.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from namesclf.serve.schemas import MAX_BATCH, MAX_BODY_BYTES, MAX_NAME_CHARS

from .conftest import REPO, TINY, free_port, write_names_dir

STARTUP_S = 120.0
TIMEOUT = httpx.Timeout(60.0)
JSON = {"content-type": "application/json"}


class Server:
    """A ``names serve`` subprocess and where its log goes."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("w")
        cmd = [sys.executable, "-m", "namesclf", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               *args]
        # The log goes to a file, not a pipe: 2,000 access-log lines would fill a pipe nobody reads.
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail(f"server did not answer /health within {STARTUP_S:.0f}s:\n{self.log()}")

    def __enter__(self) -> Server:
        """Ready to answer (a server that fails to start is stopped before the failure is raised)."""
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        self._log.close()


@pytest.fixture(scope="module")
def server(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real-data classifier behind a real server (no language model)."""
    with Server(["--model", str(trained_model)], tmp_path_factory.mktemp("serve") / "server.log") as srv:
        yield srv
    assert srv.proc.returncode is not None


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
        yield http


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_names_dir(tmp_path_factory.mktemp("tiny") / "names", TINY)


@pytest.fixture(scope="module")
def tiny_clf(small_model: Path) -> Path:
    """The small classifier on the three hand-made languages (conftest's, trained once per run)."""
    return small_model


@pytest.fixture(scope="module")
def tiny_lm(tiny_data: Path) -> Path:
    """A small language model on the same three languages (seconds)."""
    from namesclf.config import LMConfig
    from namesclf.lm.train import train_lm

    out = tiny_data.parent / "lm.pt"
    train_lm(tiny_data, LMConfig(epochs=1, hidden=16, embed=8, lang_embed=4, device="cpu"), out=out,
             progress=False)
    return out


def check_prediction(body: dict[str, Any], name: str, k: int) -> None:
    assert body["name"] == name
    preds = body["predictions"]
    assert len(preds) == k
    probs = [p["probability"] for p in preds]
    assert probs == sorted(probs, reverse=True)
    assert all(0.0 <= p <= 1.0 for p in probs) and sum(probs) <= 1.0 + 1e-5
    assert len({p["language"] for p in preds}) == k


# ----------------------------------------------------------------------------- answers


def test_health_and_languages(client: httpx.Client, trained_model: Path) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok"
    assert health["model"] == str(trained_model)
    assert health["languages"] == 18 and health["lm"] is None
    languages = client.get("/languages").json()["languages"]
    assert len(languages) == 18 and "Russian" in languages
    assert client.get("/docs").status_code == 200
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_get_predict_dostoevsky_is_russian(client: httpx.Client) -> None:
    resp = client.get("/predict", params={"name": "Dostoevsky", "k": 3})
    assert resp.status_code == 200
    body = resp.json()
    check_prediction(body, "Dostoevsky", 3)
    assert body["ascii"] == "Dostoevsky"
    assert body["predictions"][0]["language"] == "Russian"


def test_get_predict_folds_unicode_and_defaults_k(client: httpx.Client) -> None:
    body = client.get("/predict", params={"name": "Достоевский"}).json()
    check_prediction(body, "Достоевский", 3)
    assert body["ascii"] == "Dostoevskiy"
    assert body["predictions"][0]["language"] == "Russian"


def test_post_predict_batch_keeps_input_order_and_matches_get(client: httpx.Client) -> None:
    names = ["Nakamura", "O'Brien", "Dostoevsky", "Ślusàrski", "Rossi", "Schmidt", "Nguyen"] * 5
    resp = client.post("/predict", json={"names": names, "k": 2})
    assert resp.status_code == 200
    body = resp.json()
    assert [b["name"] for b in body] == names
    for b in body:
        check_prediction(b, b["name"], 2)
    assert body[0]["predictions"][0]["language"] == "Japanese"
    single = client.get("/predict", params={"name": "O'Brien", "k": 2}).json()
    assert single["predictions"][0]["language"] == body[1]["predictions"][0]["language"]
    assert single["predictions"][0]["probability"] == pytest.approx(body[1]["predictions"][0]["probability"],
                                                                      abs=1e-5)
    assert client.post("/predict", json={"names": []}).json() == []
    assert len(client.post("/predict", json={"names": ["Ivanov"], "k": 18}).json()[0]["predictions"]) == 18


def test_generate_without_lm_is_404(client: httpx.Client) -> None:
    resp = client.post("/generate", json={"language": "Russian", "n": 3})
    assert resp.status_code == 404
    assert "--lm" in resp.json()["error"]


# ----------------------------------------------------------------------------- bad input

LONG = "a" * (MAX_NAME_CHARS + 1)
BAD_REQUESTS: list[tuple[str, str, str, dict[str, Any], int]] = [
    ("not-json", "POST", "/predict", {"content": b'{"names": [', "headers": JSON}, 422),
    ("not-utf8", "POST", "/predict", {"content": b'{"names": ["\xff"]}', "headers": JSON}, 400),
    ("text-plain", "POST", "/predict", {"content": b"Ivanov", "headers": {"content-type": "text/plain"}},
     422),
    ("no-body", "POST", "/predict", {}, 422),
    ("json-list-not-object", "POST", "/predict", {"json": ["Ivanov"]}, 422),
    ("missing-names", "POST", "/predict", {"json": {"k": 2}}, 422),
    ("unknown-field", "POST", "/predict", {"json": {"name": "Ivanov"}}, 422),
    ("names-not-list", "POST", "/predict", {"json": {"names": "Ivanov"}}, 422),
    ("names-not-strings", "POST", "/predict", {"json": {"names": [1, 2]}}, 422),
    ("empty-name-in-list", "POST", "/predict", {"json": {"names": ["Ivanov", ""]}}, 422),
    ("no-letters-in-list", "POST", "/predict", {"json": {"names": ["Ivanov", "123", "😀"]}}, 422),
    ("long-name-in-list", "POST", "/predict", {"json": {"names": [LONG]}}, 422),
    ("too-many-names", "POST", "/predict", {"json": {"names": ["Ivanov"] * (MAX_BATCH + 1)}}, 422),
    ("k-zero-post", "POST", "/predict", {"json": {"names": ["Ivanov"], "k": 0}}, 422),
    ("k-over-languages-post", "POST", "/predict", {"json": {"names": ["Ivanov"], "k": 19}}, 422),
    ("k-fraction", "POST", "/predict", {"json": {"names": ["Ivanov"], "k": 2.5}}, 422),
    ("deeply-nested", "POST", "/predict", {"content": b"[" * 100_000 + b"]" * 100_000, "headers": JSON}, 400),
    ("missing-name", "GET", "/predict", {}, 422),
    ("empty-name", "GET", "/predict", {"params": {"name": ""}}, 422),
    ("blank-name", "GET", "/predict", {"params": {"name": "   "}}, 422),
    ("no-letters", "GET", "/predict", {"params": {"name": "12345"}}, 422),
    ("emoji-only", "GET", "/predict", {"params": {"name": "😀"}}, 422),
    ("long-name", "GET", "/predict", {"params": {"name": LONG}}, 422),
    ("k-zero", "GET", "/predict", {"params": {"name": "Ivanov", "k": 0}}, 422),
    ("k-negative", "GET", "/predict", {"params": {"name": "Ivanov", "k": -3}}, 422),
    ("k-over-languages", "GET", "/predict", {"params": {"name": "Ivanov", "k": 19}}, 422),
    ("k-huge", "GET", "/predict", {"params": {"name": "Ivanov", "k": "9" * 30}}, 422),
    ("k-not-int", "GET", "/predict", {"params": {"name": "Ivanov", "k": "three"}}, 422),
    ("generate-bad-n", "POST", "/generate", {"json": {"language": "Russian", "n": 0}}, 422),
    ("unknown-path", "GET", "/nothing", {}, 404),
    ("wrong-method", "DELETE", "/predict", {}, 405),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), [b[1:] for b in BAD_REQUESTS],
                         ids=[b[0] for b in BAD_REQUESTS])
def test_bad_input_is_a_4xx_json_error(client: httpx.Client, method: str, path: str, kwargs: dict[str, Any],
                                       status: int) -> None:
    resp = client.request(method, path, **kwargs)
    assert resp.status_code == status, resp.text[:500]
    body = resp.json()
    assert isinstance(body["error"], str) and body["error"]
    assert len(resp.content) < 20_000  # inputs are not echoed back
    assert client.get("/health").status_code == 200


def test_no_letters_in_batch_names_the_positions(client: httpx.Client) -> None:
    resp = client.post("/predict", json={"names": ["Ivanov", "123", "Tanaka", "😀"]})
    assert resp.status_code == 422
    assert resp.json()["positions"] == [1, 3]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_the_cap_is_413(server: Server, chunked: bool) -> None:
    body = b'{"names": [' + b'"Ivanov",' * (MAX_BODY_BYTES // 9 + 10) + b'"Petrov"]}'
    assert len(body) > MAX_BODY_BYTES
    content: Any = body
    if chunked:  # an iterator makes httpx send Transfer-Encoding: chunked, with no length up front
        content = iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
        resp = http.post("/predict", content=content, headers=JSON)
        assert resp.status_code == 413
        assert "too large" in resp.json()["error"]
    assert httpx.get(f"{server.url}/health", timeout=TIMEOUT).status_code == 200


def test_server_still_serves_after_bad_input(client: httpx.Client) -> None:
    assert client.get("/health").json()["status"] == "ok"
    body = client.get("/predict", params={"name": "Dostoevsky"}).json()
    assert body["predictions"][0]["language"] == "Russian"


# ----------------------------------------------------------------------------- load

CLIENTS, PER_CLIENT, DEADLINE_S = 8, 250, 300.0
LOAD_NAMES = ["Dostoevsky", "Nakamura", "O'Brien", "Rossi", "Schmidt", "Kowalski", "Nguyen", "Papadopoulos",
              "Tanaka", "Ivanov", "Dubois", "Yamamoto", "Abbas", "Smirnov", "Kim", "Ślusàrski"]


def test_load_8_clients_2000_requests_all_answered_correctly(client: httpx.Client, server: Server) -> None:
    """8 concurrent keep-alive clients x 250 requests (every 10th a 20-name POST): none lost or wrong."""
    expected = {b["name"]: b for b in client.post("/predict", json={"names": LOAD_NAMES, "k": 3}).json()}
    ok_count = 0
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + DEADLINE_S

    def same(got: dict[str, Any], want: dict[str, Any]) -> bool:
        languages = [p["language"] for p in want["predictions"]]
        return (got["name"] == want["name"]
                and [p["language"] for p in got["predictions"]] == languages
                and all(abs(g["probability"] - w["probability"]) < 1e-4
                        for g, w in zip(got["predictions"], want["predictions"], strict=True)))

    def run(cid: int) -> None:
        nonlocal ok_count
        good, bad = 0, []
        with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
            for i in range(PER_CLIENT):
                if time.monotonic() > deadline:
                    bad.append(f"client {cid}: deadline passed at request {i}")
                    break
                try:
                    if i % 10 == 9:
                        names = [LOAD_NAMES[(cid + i + j) % len(LOAD_NAMES)] for j in range(20)]
                        resp = http.post("/predict", json={"names": names, "k": 3})
                        right = resp.status_code == 200 and len(resp.json()) == 20 and all(
                            same(g, expected[n]) for g, n in zip(resp.json(), names, strict=True))
                    else:
                        name = LOAD_NAMES[(cid * 5 + i) % len(LOAD_NAMES)]
                        resp = http.get("/predict", params={"name": name, "k": 3})
                        right = resp.status_code == 200 and same(resp.json(), expected[name])
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    bad.append(f"client {cid} request {i}: {type(exc).__name__}: {exc}")
                    continue
                if right:
                    good += 1
                else:
                    bad.append(f"client {cid} request {i}: {resp.status_code} {resp.text[:200]}")
        with lock:
            ok_count += good
            failures.extend(bad)

    threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in range(CLIENTS)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline + 30 - time.monotonic()))
    elapsed = time.monotonic() - start
    assert not any(t.is_alive() for t in threads), "clients still running after the deadline"
    assert failures == [], failures[:10]
    assert ok_count == CLIENTS * PER_CLIENT == 2000
    print(f"\n{ok_count} requests from {CLIENTS} clients in {elapsed:.1f}s ({ok_count / elapsed:.0f} req/s)")
    assert server.proc.poll() is None
    assert client.get("/health").status_code == 200


# ----------------------------------------------------------------------------- with a language model


@pytest.fixture(scope="module")
def lm_server(tiny_clf: Path, tiny_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(["--model", str(tiny_clf), "--lm", str(tiny_lm), "--no-access-log"],
                tmp_path_factory.mktemp("serve-lm") / "server.log") as srv:
        yield srv


def test_generate_with_lm(lm_server: Server, tiny_lm: Path) -> None:
    with httpx.Client(base_url=lm_server.url, timeout=TIMEOUT) as http:
        health = http.get("/health").json()
        assert health["lm"] == str(tiny_lm) and health["languages"] == 3
        assert http.get("/languages").json()["lm_languages"] == ["Italian", "Japanese", "Russian"]
        resp = http.post("/generate", json={"language": "Russian", "n": 5, "seed": 1, "allow_known": True})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["language"] == "Russian"
        assert 1 <= len(body["names"]) <= 5 and all(isinstance(n, str) and n for n in body["names"])
        again = http.post("/generate", json={"language": "Russian", "n": 5, "seed": 1, "allow_known": True})
        assert again.json()["names"] == body["names"]  # a seed makes the draw reproducible
        resp = http.post("/generate", json={"language": "Russian", "n": 3, "start": "Ko", "seed": 2,
                                            "allow_known": True})
        assert resp.status_code == 200 and all(n.startswith("Ko") for n in resp.json()["names"])
        for bad in ({"language": "Klingon"}, {"language": "Russian", "n": 100_000}, {"language": "Russian",
                    "temperature": 0}, {"language": "Russian", "top_k": 0}, {"lang": "Russian"}, {}):
            resp = http.post("/generate", json=bad)
            assert resp.status_code == 422, (bad, resp.text)
            assert resp.json()["error"]
        assert "Klingon" in http.post("/generate", json={"language": "Klingon"}).json()["error"]
        assert http.get("/health").status_code == 200


def test_serve_with_missing_model_fails_fast(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "namesclf", "serve", "--model", str(tmp_path / "none.pt"),
                           "--port", str(free_port())], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "no such model file" in proc.stderr and "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- in-process


@pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient.")
def test_create_app_in_process(tiny_clf: Path) -> None:
    """The factory works without a server (TestClient), and NamesError becomes a 422."""
    from fastapi.testclient import TestClient

    from namesclf.inference.predictor import Predictor
    from namesclf.serve.app import create_app

    app = create_app(Predictor.load(str(tiny_clf)), model_path="m.pt")
    with TestClient(app) as http:
        assert http.get("/health").json()["model"] == "m.pt"
        body = http.get("/predict", params={"name": "Yamamoto", "k": 2}).json()
        check_prediction(body, "Yamamoto", 2)
        assert http.get("/predict", params={"name": "Yamamoto", "k": 4}).status_code == 422
        resp = http.get("/predict", params={"name": "!!!"})
        assert resp.status_code == 422 and "no letters" in resp.json()["error"]
        assert http.post("/generate", json={"language": "Russian"}).status_code == 404


# ----------------------------------------------------------------------------- batching, cache, load shedding


def same_answer(got: dict[str, Any], want: dict[str, Any], tol: float = 1e-5) -> bool:
    """Equal but for float rounding: two batch sizes give probabilities up to ~1e-6 apart (float32
    matrix products of another shape), novelty scores a few 1e-6 (relative)."""
    def floats(d: dict[str, Any]) -> list[float]:
        return [p["probability"] for p in d["predictions"]] + ([d["novelty"]] if "novelty" in d else [])

    def rest(d: dict[str, Any]) -> dict[str, Any]:
        return {**{k: v for k, v in d.items() if k not in ("predictions", "novelty")},
                "languages": [p["language"] for p in d["predictions"]]}

    return rest(got) == rest(want) and all(abs(a - b) <= tol * max(1.0, abs(b))
                                         for a, b in zip(floats(got), floats(want), strict=True))


PARITY_NAMES = ["Ivanov", "Tanaka", "Rossi", "Ivanov", "Fyodor Dostoevsky", "Ślusàrski", "123", "Yamamoto",
                "Berg, Jan van der", "Kuznetsov", "Tanaka", "😀", "O'Brien", "Esposito", "Sasaki"]


def test_batched_and_cached_answers_match_a_direct_predict_with(tiny_clf: Path) -> None:
    """Requests gathered into shared passes (3 names a pass, so passes mix requests) and then
    answered from the cache give what one direct ``predict_with`` call gives, name by name."""
    import asyncio
    import json

    from namesclf.config import ServeConfig
    from namesclf.inference.options import Options
    from namesclf.inference.predictor import Predictor
    from namesclf.serve.batcher import Batcher

    predictor = Predictor.load(str(tiny_clf))
    batcher = Batcher(predictor, ServeConfig(pass_names=3, cache_size=1000, max_queue_ms=60_000))
    option_sets = [Options(k=2), Options(k=3, abstain=True), Options(k=1, prior="uniform"),
                   Options(k=2, surname_only=True)]

    async def ask_all() -> list[list[list[bytes | None]]]:
        rounds = []
        for _ in range(2):  # the second round comes from the cache
            asks = [batcher.answers([name], options) for options in option_sets for name in PARITY_NAMES]
            asks += [batcher.answers(PARITY_NAMES, options) for options in option_sets]
            rounds.append(await asyncio.gather(*asks))
        return rounds

    try:
        rounds = asyncio.run(ask_all())
    finally:
        batcher.close()
    assert batcher.passes > 1 and batcher.cache.hits > 0 and batcher.pending == 0
    for answers in rounds:
        singles, batches = answers[: -len(option_sets)], answers[-len(option_sets):]
        for o, options in enumerate(option_sets):
            direct = predictor.predict_with(PARITY_NAMES, options, strict=False)
            for i, (name, want) in enumerate(zip(PARITY_NAMES, direct, strict=True)):
                for got in (singles[o * len(PARITY_NAMES) + i][0], batches[o][i]):
                    if not want.languages:
                        assert got is None, name
                        continue
                    assert got is not None and same_answer(json.loads(got), want.to_dict()), (name, options)


def test_a_process_that_is_behind_refuses_at_once_and_cache_hits_still_pass(
        tiny_clf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the prediction thread held busy: names beyond ``max_pending`` are refused (the first
    request is admitted even when it alone is over the bound); a small request is refused once
    the oldest small one has waited ``max_queue_ms``, while a big batch within the bound is still
    admitted; cached names are answered; and once the queue drains everything goes through.

    Ordered by events, not sleeps: the test waits until the pass is inside the predictor, until
    each request is queued, and moves the batcher's clock on by hand."""
    import asyncio
    import threading
    from types import SimpleNamespace

    from namesclf.config import ServeConfig
    from namesclf.inference.options import Options
    from namesclf.inference.predictor import Predictor
    from namesclf.serve import batcher as batcher_module
    from namesclf.serve.batcher import SMALL, Batcher, Overloaded

    predictor = Predictor.load(str(tiny_clf))
    options = Options(k=2)
    big = [f"Tanaka{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(SMALL + 1)]
    clock = SimpleNamespace(ahead=0.0)  # the batcher's clock: real time plus what the test adds
    monkeypatch.setattr(batcher_module, "time", SimpleNamespace(monotonic=lambda: time.monotonic() + clock.ahead))

    class Gated:
        """The predictor, held at a gate: a pass stays in flight until the test opens it, and says
        when it has arrived there."""

        def __init__(self) -> None:
            self.gate = threading.Event()
            self.gate.set()
            self.arrived = threading.Event()

        def predict_with(self, *args: Any, **kwargs: Any) -> Any:
            self.arrived.set()
            assert self.gate.wait(30)
            return predictor.predict_with(*args, **kwargs)

    async def until(condition: Any, what: str, *tasks: asyncio.Future) -> None:
        """Yield to the event loop until ``condition()`` holds (a task only gets as far as its first
        wait per turn); a task that ended first (refused) fails the test with its error."""
        for _ in range(1000):
            if condition():
                return
            for task in tasks:
                if task.done():
                    task.result()
            await asyncio.sleep(0)
        pytest.fail(f"never {what}")

    async def scenario(batcher: Batcher, gated: Gated, reason: str) -> None:
        assert (await batcher.answers(["Ivanov"], options))[0] is not None  # cached from here on
        gated.gate.clear()
        gated.arrived.clear()
        in_pass = asyncio.ensure_future(batcher.answers(["Kuznetsov"], options))
        arrived = await asyncio.get_running_loop().run_in_executor(None, gated.arrived.wait, 30)
        assert arrived, "the pass never reached the predictor"
        queued = asyncio.ensure_future(batcher.answers(["Tanaka", "Rossi"], options))
        await until(lambda: batcher.pending == 3, "queued Tanaka and Rossi", in_pass, queued)
        clock.ahead += 1.0  # the queued request has now waited a second
        with pytest.raises(Overloaded) as refused:
            await batcher.answers(["Yamada"], options)
        assert refused.value.retry_after == 1 and reason in str(refused.value)
        bulk = [] if batcher.config.max_pending < 100 else [asyncio.ensure_future(batcher.answers(big, options))]
        # a big batch is not refused for small ones' wait
        await until(lambda: batcher.pending == 3 + len(big) * len(bulk), "queued the big batch", *bulk)
        assert (await batcher.answers(["Ivanov"], options))[0] is not None  # a hit never queues
        gated.gate.set()
        for task in (in_pass, queued, *bulk):
            assert all(a is not None for a in await task)
        assert batcher.pending == 0
        assert (await batcher.answers(["Yamada"], options))[0] is not None

    # a second's wait is within the first bound (so the names bound refuses) and over the second
    for config, reason in ((ServeConfig(max_pending=3, max_queue_ms=60_000), "names queued"),
                           (ServeConfig(max_pending=1000, max_queue_ms=20), "have waited")):
        gated = Gated()
        batcher = Batcher(gated, config)  # type: ignore[arg-type]
        try:
            asyncio.run(asyncio.wait_for(scenario(batcher, gated, reason), 60))
        finally:
            gated.gate.set()
            batcher.close()
        assert batcher.refused == 1, reason


@pytest.fixture(scope="module")
def tiny_server(tiny_clf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The tiny classifier behind a real server that admits only 10 queued names (fewer than the
    last pass of a 10,000-name batch holds, so a new name is refused until the batch is done)."""
    with Server(["--model", str(tiny_clf), "--no-access-log", "--max-pending", "10"],
                tmp_path_factory.mktemp("serve-tiny") / "server.log") as srv:
        yield srv


def test_overload_is_503_with_retry_after_and_nothing_is_lost(tiny_server: Server) -> None:
    """While a 10,000-name batch is queued, a new name is refused at once with 503, Retry-After
    and a JSON error; the batch itself and a cached name are still answered, and the refused
    name is answered once the queue has drained."""
    names = [f"Ivanov{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{chr(97 + i // 676 % 26)}" for i in range(MAX_BATCH)]
    with httpx.Client(base_url=tiny_server.url, timeout=TIMEOUT) as http:
        assert http.get("/predict", params={"name": "Tanaka"}).status_code == 200
        result: dict[str, Any] = {}
        big = threading.Thread(target=lambda: result.update(resp=httpx.post(
            f"{tiny_server.url}/predict", json={"names": names, "k": 1}, timeout=TIMEOUT)))
        big.start()
        try:
            deadline = time.monotonic() + 30
            while http.get("/health").json()["serving"]["pending"] == 0:
                assert big.is_alive() and time.monotonic() < deadline, "the batch never showed as queued"
                time.sleep(0.002)
            refused = http.get("/predict", params={"name": "Kuznetsov"})
            assert refused.status_code == 503, refused.text
            assert "resp" not in result, "refused only after the batch was answered, not at once"
            assert refused.headers["retry-after"] == "1"
            assert "busy" in refused.json()["error"]
            assert http.get("/predict", params={"name": "Tanaka"}).status_code == 200  # cached
        finally:
            big.join(120)
        assert result["resp"].status_code == 200 and len(result["resp"].json()) == MAX_BATCH
        assert http.get("/predict", params={"name": "Kuznetsov"}).status_code == 200
        assert http.get("/health").json()["serving"]["refused"] >= 1


def test_urllib_sending_a_5mb_body_gets_the_413(tiny_server: Server) -> None:
    """urllib writes the whole body before reading: the server must read it (and throw it away)
    before answering, or the client sees a broken pipe instead of the 413."""
    import urllib.error
    import urllib.request

    body = b'{"names": ["' + b"a" * (5 * 1024 * 1024) + b'"]}'
    request = urllib.request.Request(f"{tiny_server.url}/predict", data=body, headers=JSON, method="POST")
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=60)
    assert answer.value.code == 413
    assert "too large" in json.loads(answer.value.read())["error"]
    assert httpx.get(f"{tiny_server.url}/health", timeout=TIMEOUT).status_code == 200


FUZZ_EXAMPLES = 25
#: The statuses schemathesis may see, beyond its defaults: a schema-valid body over the size cap
#: (413), and schema-valid input only the model can refuse (422: a name with no letters, prior
#: weights that miss a language); ``tests/schemathesis_hooks.py`` fails any other reason. A
#: schema-invalid body over the cap is refused for its size before its content is read (413).
SCHEMATHESIS_CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "404", "413", "422"]
[checks.negative_data_rejection]
expected-statuses = ["400", "404", "405", "413", "422"]
"""


def test_schemathesis_all_checks_pass(tiny_server: Server, tmp_path: Path) -> None:
    """``schemathesis run --checks all`` (every phase: examples, coverage, fuzzing) against the
    server's own OpenAPI schema, :data:`FUZZ_EXAMPLES` cases per operation and mode: no 5xx, every
    status and answer as declared, schema-invalid input refused and schema-valid input accepted
    (but for the refusals no schema can state), ``Allow`` listing every method on a 405."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "PYTHONIOENCODING": "utf-8",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-c", "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
           "--config-file", str(config), "--no-color", "run", f"{tiny_server.url}/openapi.json", "--checks", "all",
           "--max-examples", str(FUZZ_EXAMPLES), "--seed", "0", "--workers", "1"]
    proc = subprocess.run(cmd, capture_output=True, encoding="utf-8", errors="replace", cwd=tmp_path, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    tested = proc.stdout.split("Test cases:")[1].split()[0]
    assert int(tested) > 100, proc.stdout[-2000:]
    for phase in ("Examples", "Coverage", "Fuzzing"):
        assert re.search(rf"✅\s+{phase}", proc.stdout), proc.stdout[-2000:]
    assert tiny_server.proc.poll() is None


# ----------------------------------------------------------------------------- the schema says what the server does

STRICT_BODIES = [({"surname_only": 0}, "surname_only"), ({"abstain": "true"}, "abstain"), ({"k": True}, "k"),
                 ({"k": "3"}, "k"), ({"k": 2.5}, "k"), ({"coverage": "0.9"}, "coverage"),
                 ({"abstain_rate": False}, "abstain_rate"), ({"prior": {}}, "prior"),
                 ({"prior": {"Russian": -1}}, "prior"), ({"per_language": None}, "per_language")]


@pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient.")
def test_json_bodies_are_strict_and_the_schema_says_so(tiny_clf: Path) -> None:
    """No coercion in a JSON body: each value of the wrong JSON type is a 422 naming its field, and
    the OpenAPI schema declares the type, the bounds (``k`` up to the model's languages) and the
    statuses each route can answer."""
    from fastapi.testclient import TestClient

    from namesclf.inference.predictor import Predictor
    from namesclf.serve.app import create_app

    with TestClient(create_app(Predictor.load(str(tiny_clf)))) as http:
        for change, field in STRICT_BODIES:
            resp = http.post("/predict", json={"names": ["Ivanov"], **change})
            assert resp.status_code == 422 and resp.json()["error"].startswith(f"body.{field}"), (change, resp.text)
        assert http.post("/generate", json={"n": "3"}).status_code == 422
        assert http.post("/generate", json={"allow_known": 1}).status_code == 422
        # JSON Schema's integer holds 2.0, so the server takes it
        assert len(http.post("/predict", json={"names": ["Ivanov"], "k": 2.0}).json()[0]["predictions"]) == 2
        schema = http.get("/openapi.json").json()
    body = schema["components"]["schemas"]["PredictRequest"]["properties"]
    assert body["k"]["type"] == "integer" and (body["k"]["minimum"], body["k"]["maximum"]) == (1, len(TINY))
    assert body["abstain"]["type"] == "boolean" and body["prior"]["anyOf"][1]["minProperties"] == 1
    declared = {(method, path): set(op["responses"]) for path, ops in schema["paths"].items()
                for method, op in ops.items()}
    assert declared[("post", "/predict")] == {"200", "400", "413", "422", "503"}
    assert declared[("get", "/predict")] == {"200", "422", "503"}
    assert declared[("post", "/generate")] == {"200", "400", "404", "413", "422", "503"}  # --max-generating
    assert declared[("post", "/estimate")] == {"200", "400", "413", "422", "503"}  # --max-generating
    assert declared[("get", "/health")] == declared[("get", "/languages")] == {"200"}


def test_too_many_names_is_the_declared_422_and_a_body_over_the_cap_the_declared_413(tiny_server: Server) -> None:
    with httpx.Client(base_url=tiny_server.url, timeout=TIMEOUT) as http:
        over = http.post("/predict", json={"names": ["Ivanov"] * (MAX_BATCH + 1)})
        assert over.status_code == 422 and over.json()["error"].startswith("body.names")
        big = http.post("/predict", json={"names": ["I" * MAX_NAME_CHARS] * MAX_BATCH})
        assert big.status_code == 413 and "too large" in big.json()["error"]


@pytest.mark.parametrize(("method", "path", "allow"), [("OPTIONS", "/predict", "GET, POST"),
                                                        ("DELETE", "/predict", "GET, POST"),
                                                        ("PUT", "/generate", "POST"), ("POST", "/health", "GET")])
def test_a_405_allows_every_method_of_its_path(tiny_server: Server, method: str, path: str, allow: str) -> None:
    resp = httpx.request(method, f"{tiny_server.url}{path}", timeout=TIMEOUT)
    assert resp.status_code == 405 and resp.json()["error"]
    assert resp.headers["allow"] == allow


def test_workers_share_the_port_and_answer_alike(tiny_clf: Path, tmp_path: Path) -> None:
    """``--workers 2``: two processes answer on one port (both seen), the same as one process
    would, and stopping the parent stops them."""
    pids: set[int] = set()
    with Server(["--model", str(tiny_clf), "--no-access-log", "--workers", "2"], tmp_path / "server.log") as srv:
        deadline = time.monotonic() + 60
        while len(pids) < 2 and time.monotonic() < deadline:
            with httpx.Client(base_url=srv.url, timeout=TIMEOUT) as http:  # a new connection each time
                pids.add(http.get("/health").json()["pid"])
        assert len(pids) == 2, pids
        answers = [httpx.get(f"{srv.url}/predict", params={"name": "Yamamoto", "k": 2}, timeout=TIMEOUT).json()
                   for _ in range(6)]
        assert all(same_answer(a, answers[0]) for a in answers)
        assert answers[0]["predictions"][0]["language"] == "Japanese"
    for pid in pids:
        deadline = time.monotonic() + 20
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the server"


@pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient.")
def test_the_get_fast_path_answers_what_the_endpoint_answers(tiny_clf: Path) -> None:
    """``GET /predict?name=..&k=..`` is answered by a pure ASGI fast path; the same request with
    one more (default) option goes through FastAPI. With no cache, both compute: same bytes. Odd
    queries (a repeated key, ``k`` out of range or not plain digits, no letters) fall through."""
    from fastapi.testclient import TestClient

    from namesclf.config import ServeConfig
    from namesclf.inference.predictor import Predictor
    from namesclf.serve.app import create_app

    app = create_app(Predictor.load(str(tiny_clf)), tuning=ServeConfig(cache_size=0))
    with TestClient(app) as http:
        def fast_count() -> int:
            return http.get("/health").json()["serving"]["fast_path"]

        for name, k in (("Yamamoto", 2), ("Ślusàrski", 3), ("Fyodor Dostoevsky", 1), ("O'Brien & Co", 3)):
            before = fast_count()
            fast = http.get("/predict", params={"name": name, "k": k})
            assert fast_count() == before + 1
            slow = http.get("/predict", params={"name": name, "k": k, "surname_only": "false"})
            assert fast_count() == before + 1
            assert fast.status_code == slow.status_code == 200
            assert fast.content == slow.content and fast.headers["content-type"] == slow.headers["content-type"]
            assert fast.json()["name"] == name
        before = fast_count()
        assert http.get("/predict", params={"name": "Rossi"}).json()["predictions"].__len__() == 3
        assert http.get("/predict?name=Rossi&name=Tanaka").json()["name"] == "Tanaka"  # FastAPI: the last
        assert http.get("/predict?name=Rossi&k=03").json()["predictions"].__len__() == 3
        for query, status in (("name=Rossi&k=4", 422), ("name=Rossi&k=0", 422), ("name=1234", 422), ("name=", 422),
                              ("k=2", 422), ("name=Rossi&k=-1", 422)):
            resp = http.get(f"/predict?{query}")
            assert resp.status_code == status, (query, resp.text)
            assert resp.json()["error"]
        assert "no letters" in http.get("/predict?name=1234").json()["error"]
        assert fast_count() == before + 1  # only the plain "Rossi"


WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8000
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    41.20ms   20.11ms 281.30ms   80.00%
    Req/Sec     1.30k   200.00     1.60k    70.00%
  Latency Distribution
     50%   39.64ms
     75%   50.00ms
     90%   70.00ms
     99%  1.20s
  12960 requests in 10.00s, 5.10MB read
  Socket errors: connect 0, read 2, write 0, timeout 5
  Non-2xx or 3xx responses: 78
Requests/sec:   1295.64
Transfer/sec:    510.00KB
"""


def test_the_benchmark_reads_wrk_and_judges_the_server_targets() -> None:
    """benchmarks.load reads wrk's report (units included), and benchmarks.bench's server targets
    pass or fail on those figures."""
    from benchmarks import bench, load

    row = load.parse_wrk(WRK_OUTPUT)
    assert row == {"requests": 12960, "requests_per_s": 1295.64, "p50_ms": 39.64, "p99_ms": 1200.0, "non_2xx": 78,
                   "socket_errors": {"connect": 0, "read": 2, "write": 0, "timeout": 5}}
    with pytest.raises(SystemExit):
        load.parse_wrk("unable to connect to 127.0.0.1:8000 Connection refused")

    quiet = {"requests": 10_000, "non_2xx": 0, "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0}}
    rows = {"get_c8": {**quiet, "requests_per_s": 1200.0, "p99_ms": 15.0},
            "get_c64": {**quiet, "requests_per_s": 1500.0, "p99_ms": 140.0, "non_2xx": 300},
            "post_repeat_c8": {**quiet, "requests_per_s": 150.0, "p99_ms": 90.0, "names_per_s": 150_000},
            "post_unique_c8": {**quiet, "requests_per_s": 30.0, "p99_ms": 400.0, "names_per_s": 30_000}}
    assert [t["status"] for t in bench.serve_targets({"rows": rows, "tool": "wrk"})] == ["PASS"] * 3
    rows["get_c8"]["p99_ms"] = 25.0
    rows["get_c64"] = {**rows["get_c64"], "non_2xx": 0}
    rows["post_repeat_c8"]["socket_errors"] = {"connect": 0, "read": 0, "write": 0, "timeout": 1}
    assert [t["status"] for t in bench.serve_targets({"rows": rows, "tool": "wrk"})] == ["FAIL"] * 3
    assert bench.serve_targets(None) == []
