"""``POST /estimate``: the language mix of a population over HTTP, in process (``TestClient``) and
from a real ``names serve`` subprocess. Its answer must be what ``estimate_mix`` gives for the same
names, its body is validated as strictly as ``/predict``'s, and its work stays within its bound."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from fastapi.testclient import TestClient

from namesclf.inference.mix import CALIBRATION_KEY, estimate_mix
from namesclf.inference.predictor import Predictor
from namesclf.serve.app import create_app
from namesclf.serve.schemas import MAX_BATCH, MAX_ESTIMATE_WORK

from .test_serve import TIMEOUT, Server

NAMES = ["Ivanov", "Petrov", "Tanaka", "Yamamoto", "Rossi", "Fyodor Ivanov", "Ślusàrski", "123", "Ivanov"]


@pytest.fixture(scope="module")
def http(small_model: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Predictor.load(str(small_model)), model_path="m.pt")) as client:
        yield client


def test_the_answer_is_estimate_mix_for_the_same_names(http: TestClient, small_model: Path) -> None:
    predictor = Predictor.load(str(small_model))
    for level, method in (("label", "em"), ("region", "cc")):
        resp = http.post("/estimate", json={"names": NAMES, "level": level, "method": method, "bootstrap": 30,
                                            "seed": 4})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        want = estimate_mix(predictor, NAMES, level=level, method=method, bootstrap=30, seed=4).to_dict()
        assert body["n"] == 8 and body["skipped"] == 1 and body["level"] == level
        assert body["intervals"] == "bootstrap+model" and body["note"] is None
        assert [r["label"] for r in body["mix"]] == [r["label"] for r in want["mix"]]
        for got, expected in zip(body["mix"], want["mix"], strict=True):
            assert got == pytest.approx(expected, abs=1e-6)


def test_counts_stand_for_repeated_names(http: TestClient) -> None:
    counted = http.post("/estimate", json={"names": ["Ivanov", "Tanaka", "Rossi"], "counts": [3, 1, 2],
                                           "bootstrap": 20}).json()
    repeated = http.post("/estimate", json={"names": ["Ivanov"] * 3 + ["Tanaka"] + ["Rossi"] * 2,
                                            "bootstrap": 20}).json()
    assert counted["n"] == repeated["n"] == 6
    for a, b in zip(counted["mix"], repeated["mix"], strict=True):
        assert a == pytest.approx(b, abs=1e-9)


@pytest.mark.parametrize(("body", "says"), [
    ({"names": ["Ivanov"], "bootstrap": "3"}, "bootstrap"),
    ({"names": ["Ivanov"], "bootstrap": True}, "bootstrap"),
    ({"names": ["Ivanov"], "surname_only": 0}, "surname_only"),
    ({"names": ["Ivanov"], "level": "country"}, "level"),
    ({"names": ["Ivanov"], "method": "median"}, "method"),
    ({"names": ["Ivanov"], "confidence": 1.0}, "confidence"),
    ({"names": ["Ivanov"], "confidence": 0}, "confidence"),
    ({"names": ["Ivanov"], "bootstrap": 1001}, "bootstrap"),
    ({"names": ["Ivanov"], "seed": -1}, "seed"),
    ({"names": ["Ivanov"], "name": "x"}, "name"),
    ({"names": []}, "names"),
    ({"names": [""]}, "names.0"),
    ({"names": ["Ivanov", "Tanaka"], "counts": [1]}, "one per name"),
    ({"names": ["Ivanov"], "counts": [0]}, "counts.0"),
    ({"names": ["123", "!!!"]}, "no letters after folding"),
    ({"names": ["x"] * (MAX_BATCH + 1)}, "names"),
])
def test_bad_bodies_are_one_line_422s(http: TestClient, body: dict[str, Any], says: str) -> None:
    resp = http.post("/estimate", json=body)
    assert resp.status_code == 422, resp.text
    assert says in resp.json()["error"]


def test_a_whole_number_written_as_a_float_is_taken(http: TestClient) -> None:
    resp = http.post("/estimate", json={"names": ["Ivanov", "Tanaka"], "bootstrap": 10.0, "counts": [2.0, 1]})
    assert resp.status_code == 200 and resp.json()["n"] == 3


def test_work_over_the_bound_is_refused_before_it_starts(http: TestClient) -> None:
    letters = "abcdefghijklmnop"
    names = [f"Na{letters[i % 16]}{letters[i // 16 % 16]}{letters[i // 256]}" for i in range(3000)]
    assert len(set(names)) == 3000
    resp = http.post("/estimate", json={"names": names, "bootstrap": MAX_ESTIMATE_WORK // 3000 + 1})
    assert resp.status_code == 422 and "over the limit" in resp.json()["error"]
    assert http.post("/estimate", json={"names": names, "bootstrap": 5}).status_code == 200


def test_a_model_file_without_the_mix_calibration_says_its_intervals_are_the_bootstraps(
        small_model: Path, tmp_path: Path) -> None:
    old = torch.load(small_model, weights_only=True)
    del old["meta"]["calibration"][CALIBRATION_KEY]
    path = tmp_path / "old.pt"
    torch.save(old, path)
    with TestClient(create_app(Predictor.load(str(path), backend="torch"))) as client:
        body = client.post("/estimate", json={"names": NAMES, "bootstrap": 20}).json()
    assert body["intervals"] == "bootstrap" and "sampling error only" in body["note"]


def test_a_real_server_answers_estimate(small_model: Path, tmp_path: Path) -> None:
    with Server(["--model", str(small_model)], tmp_path / "server.log") as server, \
            httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        resp = client.post("/estimate", json={"names": NAMES, "level": "group", "bootstrap": 25, "seed": 1})
        assert resp.status_code == 200, resp.text
        want = estimate_mix(Predictor.load(str(small_model)), NAMES, level="group", bootstrap=25, seed=1).to_dict()
        for got, expected in zip(resp.json()["mix"], want["mix"], strict=True):
            assert got == pytest.approx(expected, abs=1e-6)
        bad = client.post("/estimate", content=b'{"names": ["Ivanov"], "bootstrap": "3"}',
                          headers={"content-type": "application/json"})
        assert bad.status_code == 422 and "bootstrap" in bad.json()["error"]
        assert "/estimate" in client.get("/openapi.json").json()["paths"]
