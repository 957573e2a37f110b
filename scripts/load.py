#!/usr/bin/env python
"""Measure the HTTP API: requests/s and p50/p99 latency for single-name GETs and 1,000-name POSTs.

    python scripts/load.py --model models/names.pt          # starts `names serve` on a free port
    python scripts/load.py --url http://127.0.0.1:8000      # an already running server

Loopback only (the script refuses any other host), a fixed number of requests per client, and a
timeout on every request, so a run is bounded in both load and time. Every answer is checked
(status 200, one prediction per name, names echoed in order); failures are counted and printed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
FALLBACK_NAMES = ["Dostoevsky", "Nakamura", "O'Brien", "Schmidt", "Rossi", "Kowalski", "Nguyen",
                  "Papadopoulos", "Garcia", "Dubois", "Smith", "Kim", "Zhang", "Novak", "Silva", "Murphy",
                  "Haddad", "Ślusàrski"]


def load_names(data: Path, limit: int = 5000) -> list[str]:
    """Real surnames from ``data/names`` when present (varied lengths), else a built-in list."""
    names: list[str] = []
    for path in sorted(data.glob("*.txt")):
        names += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        return FALLBACK_NAMES
    return names[:: max(1, len(names) // limit)][:limit]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(model: str, threads: int, startup_s: float = 120.0) -> Iterator[str]:
    """``python -m namesclf serve`` on a free loopback port; always terminated on exit."""
    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", prefix="names-serve-", suffix=".log", delete=False)  # noqa: SIM115
    cmd = [sys.executable, "-m", "namesclf", "serve", "--model", model, "--host", "127.0.0.1",
           "--port", str(port), "--threads", str(threads), "--no-access-log"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}; log: {log.name}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"server not up after {startup_s:.0f}s; log: {log.name}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def run_clients(url: str, clients: int, per_client: int, make: Callable[[int, int], tuple[str, str, dict]],
                check: Callable[[dict, httpx.Response], bool], timeout: float) -> dict:
    """``clients`` threads, each with its own keep-alive connection, ``per_client`` requests each."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    start_barrier = threading.Barrier(clients)

    def client(cid: int) -> None:
        mine: list[float] = []
        bad: list[str] = []
        with httpx.Client(base_url=url, timeout=timeout) as http:
            start_barrier.wait()
            for i in range(per_client):
                method, path, kwargs = make(cid, i)
                t0 = time.perf_counter()
                try:
                    resp = http.request(method, path, **kwargs)
                    ok = check(kwargs, resp)
                except httpx.HTTPError as exc:
                    ok, resp = False, exc
                mine.append(time.perf_counter() - t0)
                if not ok:
                    bad.append(f"{method} {path}: {getattr(resp, 'status_code', resp)}")
        with lock:
            latencies.extend(mine)
            failures.extend(bad)

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout * per_client + 60)
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    return {"requests": len(lat), "failures": len(failures), "first_failures": failures[:5],
            "seconds": round(wall, 2), "requests_per_s": round(len(lat) / wall, 1),
            "p50_ms": round(1000 * statistics.median(lat), 1) if lat else None,
            "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1) if lat else None}


def measure(url: str, names: list[str], args: argparse.Namespace) -> dict:
    def single(cid: int, i: int) -> tuple[str, str, dict]:
        return "GET", "/predict", {"params": {"name": names[(cid * 7919 + i) % len(names)], "k": 3}}

    def single_ok(kwargs: dict, resp: httpx.Response) -> bool:
        if resp.status_code != 200:
            return False
        body = resp.json()
        return body["name"] == kwargs["params"]["name"] and len(body["predictions"]) == 3

    def batch(cid: int, i: int) -> tuple[str, str, dict]:
        offset = (cid * 131 + i * args.batch_size) % len(names)
        chunk = [names[(offset + j) % len(names)] for j in range(args.batch_size)]
        return "POST", "/predict", {"json": {"names": chunk, "k": 3}}

    def batch_ok(kwargs: dict, resp: httpx.Response) -> bool:
        if resp.status_code != 200:
            return False
        body = resp.json()
        sent = kwargs["json"]["names"]
        return len(body) == len(sent) and all(b["name"] == n for b, n in zip(body, sent, strict=True))

    out = {"url": url, "clients": args.clients}
    # Warm up (first calls pay for lazy initialisation in torch and the thread pool).
    httpx.get(f"{url}/predict", params={"name": "Warmup"}, timeout=args.timeout)
    out["single_get"] = run_clients(url, args.clients, args.requests, single, single_ok, args.timeout)
    res = run_clients(url, args.clients, args.batch_requests, batch, batch_ok, args.timeout)
    res["names_per_s"] = round(res["requests_per_s"] * args.batch_size)
    res["batch_size"] = args.batch_size
    out["batch_post"] = res
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--model", help="Start `names serve --model MODEL` on a free loopback port.")
    where.add_argument("--url", help="A running server on this machine, e.g. http://127.0.0.1:8000.")
    parser.add_argument("--clients", type=int, default=8, help="Concurrent clients (threads).")
    parser.add_argument("--requests", type=int, default=250, help="Single-name GETs per client.")
    parser.add_argument("--batch-requests", type=int, default=5, help="Batch POSTs per client.")
    parser.add_argument("--batch-size", type=int, default=1000, help="Names per batch POST.")
    parser.add_argument("--threads", type=int, default=1, help="--threads for the started server.")
    parser.add_argument("--timeout", type=float, default=60.0, help="Seconds allowed per request.")
    parser.add_argument("--data", type=Path, default=Path("data/names"), help="Where to take names from.")
    parser.add_argument("--json", action="store_true", help="Print JSON only.")
    args = parser.parse_args()
    for name in ("clients", "requests", "batch_requests", "batch_size"):
        if not 1 <= getattr(args, name) <= 100_000:
            parser.error(f"--{name.replace('_', '-')} must be between 1 and 100000")
    if args.url and urlsplit(args.url).hostname not in LOOPBACK:
        parser.error("--url must point at this machine (127.0.0.1, localhost or ::1)")
    names = load_names(args.data)

    if args.model:
        with running_server(args.model, args.threads) as url:
            result = measure(url, names, args)
    else:
        result = measure(args.url.rstrip("/"), names, args)
    result["cpus"] = os.cpu_count()
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['clients']} clients against {result['url']} ({result['cpus']} CPUs, "
          f"load average {result['load_average']})")
    for label, key in (("GET /predict, 1 name", "single_get"),
                       (f"POST /predict, {args.batch_size:,} names", "batch_post")):
        r = result[key]
        extra = f", {r['names_per_s']:,} names/s" if "names_per_s" in r else ""
        print(f"{label:<28} {r['requests']:>6,} requests in {r['seconds']:>7.2f}s: "
              f"{r['requests_per_s']:>8,.1f} req/s{extra}, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
              f"failures {r['failures']}")
        for failure in r["first_failures"]:
            print(f"  failed: {failure}")
    if any(result[k]["failures"] for k in ("single_get", "batch_post")):
        sys.exit(1)


if __name__ == "__main__":
    main()
