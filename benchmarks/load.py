"""Measure the HTTP API: requests/s and p50/p99 latency for single-name GETs and 1,000-name POSTs.

    python -m benchmarks.load --model models/names.pt          # starts `names serve` on a free port
    python -m benchmarks.load --url http://127.0.0.1:8000      # an already running server
    python -m benchmarks.load --model models/names.pt --bench --workers 2   # the benchmark's server rows

``--bench`` measures what :mod:`benchmarks.bench` reports (``--serve``): with wrk when it is installed
(``GET /predict`` with a new name every request at 8 and 64 connections, ``POST /predict`` with
1,000 names a request at 8 connections, cycling through the data's names or all new), else with
this module's own clients (threads with keep-alive connections, a fixed number of requests). The
result says which tool measured it: the two are not comparable (wrk's C client costs the server's
cores far less than Python threads parsing every answer).

Loopback only (it refuses any other host), a fixed number of requests per client, and a
timeout on every request, so a run is bounded in both load and time. Every answer is checked
(status 200, one prediction per name, names echoed in order); failures are counted and printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from benchmarks.common import free_port, load_average, name_lines

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
FALLBACK_NAMES = ["Dostoevsky", "Nakamura", "O'Brien", "Schmidt", "Rossi", "Kowalski", "Nguyen",
                  "Papadopoulos", "Garcia", "Dubois", "Smith", "Kim", "Zhang", "Novak", "Silva", "Murphy",
                  "Haddad", "Ślusàrski"]


def load_names(data: Path, limit: int = 5000) -> list[str]:
    """Real surnames from ``data/names`` when present (varied lengths), else a built-in list."""
    names = name_lines(data)
    if not names:
        return FALLBACK_NAMES
    return names[:: max(1, len(names) // limit)][:limit]


@contextmanager
def running_server(model: str, threads: int, startup_s: float = 120.0, extra: Sequence[str] = ()) -> Iterator[str]:
    """``python -m namesclf serve`` on a free loopback port (``extra``: more options); always
    terminated on exit."""
    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", prefix="names-serve-", suffix=".log", delete=False)  # noqa: SIM115
    cmd = [sys.executable, "-m", "namesclf", "serve", "--model", model, "--host", "127.0.0.1",
           "--port", str(port), "--threads", str(threads), "--no-access-log", *extra]
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


# ----------------------------------------------------------------------------- the benchmark's server rows

#: The wrk scripts lie beside this module.
HERE = Path(__file__).resolve().parent
#: (key, what, method, connections): the rows of ``--bench``.
BENCH_ROWS = [
    ("get_c8", "GET /predict, a new name every request, 8 connections", "GET", 8),
    ("get_c64", "GET /predict, a new name every request, 64 connections", "GET", 64),
    ("post_repeat_c8", "POST /predict, 1,000 names a request, 5,000 recurring names, 8 connections",
     "POST-repeat", 8),
    ("post_unique_c8", "POST /predict, 1,000 new names a request, 8 connections", "POST-unique", 8),
]
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return round(float(number) * _UNITS[unit], 2)


def parse_wrk(output: str) -> dict:
    """Requests, req/s, p50/p99 (ms), non-2xx answers and socket errors from ``wrk --latency``."""
    total = re.search(r"(\d+) requests in ([0-9.]+)(\w+)", output)
    latency = dict(re.findall(r"^\s+(50|99)(?:\.000)?%\s+(\S+)", output, re.M))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    rate = re.search(r"Requests/sec:\s+([0-9.]+)", output)
    if total is None or rate is None:
        raise SystemExit(f"could not read wrk's output:\n{output}")
    return {"requests": int(total.group(1)), "requests_per_s": float(rate.group(1)),
            "p50_ms": _ms(latency["50"]) if "50" in latency else None,
            "p99_ms": _ms(latency["99"]) if "99" in latency else None,
            "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
            "socket_errors": dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True))
            if errors else {"connect": 0, "read": 0, "write": 0, "timeout": 0}}


def wrk(url: str, method: str, connections: int, seconds: float, names_file: Path, batch: int) -> dict:
    """One wrk run (one thread: wrk's C client is not the bottleneck, and the cores are the server's)."""
    script, extra = ((HERE / "wrk_predict.lua", []) if method == "GET" else
                     (HERE / "wrk_post.lua", [str(batch), "unique" if method == "POST-unique" else "repeat"]))
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "--latency", "-s", str(script),
           url, "--", str(names_file), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True)
    return parse_wrk(proc.stdout)


def python_clients(url: str, method: str, connections: int, names: list[str], batch: int, requests: int,
                   timeout: float) -> dict:
    """The same shapes with this module's clients, when wrk is not installed."""
    stamp = f"{time.time_ns() % 10**12:012d}"

    def single(cid: int, i: int) -> tuple[str, str, dict]:
        return "GET", "/predict", {"params": {"name": f"{names[(cid * 7919 + i) % len(names)]}{stamp}{cid:03d}{i:09d}"}}

    def batch_request(cid: int, i: int) -> tuple[str, str, dict]:
        offset = (cid * 7919 + i * batch) % len(names)
        chunk = [names[(offset + j) % len(names)] for j in range(batch)]
        if method == "POST-unique":
            chunk = [f"{n}{stamp}{cid:03d}{i:06d}{j:04d}" for j, n in enumerate(chunk)]
        return "POST", "/predict", {"json": {"names": chunk, "k": 3}}

    def ok(kwargs: dict, resp: httpx.Response) -> bool:
        return resp.status_code == 200

    result = run_clients(url, connections, max(1, requests // connections),
                         single if method == "GET" else batch_request, ok, timeout)
    result["non_2xx"] = result.pop("failures")
    result.pop("first_failures")
    return result


def wait_until_idle(url: str, limit_s: float = 120.0) -> None:
    """Wait until the server has no queued work (requests whose clients have gone are still
    answered), so one row's backlog does not count against the next; every process is asked."""
    deadline = time.monotonic() + limit_s
    quiet = 0
    while quiet < 10 and time.monotonic() < deadline:
        with httpx.Client(timeout=10) as fresh:  # a new connection: any worker may answer
            pending = fresh.get(f"{url}/health").json()["serving"]["pending"]
        quiet = quiet + 1 if pending == 0 else 0
        time.sleep(0.05)


def server_bench(model: str, data: Path, workers: int = 2, seconds: float = 10.0, threads: int = 1,
                 batch: int = 1000, tool: str | None = None) -> dict:
    """The benchmark's server rows against a freshly started ``names serve --workers N``.

    The GET rows and the all-new POST row send names never seen before (every data name with a
    number appended), so the cache never answers. The recurring POST row cycles through 5,000 of
    the data's names, as the default run of this module does, after a warm-up that has every
    process see them: it measures steady traffic that repeats surnames, the cache's case.
    """
    tool = tool or ("wrk" if shutil.which("wrk") else "benchmarks.load")
    names = load_names(data, limit=1_000_000)
    recurring = load_names(data)
    out: dict = {"tool": tool, "workers": workers, "threads": threads, "seconds": seconds, "batch_size": batch,
                 "distinct_names": len(set(names)), "recurring_names": len(set(recurring)), "rows": {}}
    with tempfile.TemporaryDirectory(prefix="names-bench-") as tmp:
        names_file, recurring_file = Path(tmp) / "names.txt", Path(tmp) / "recurring.txt"
        names_file.write_text("\n".join(names) + "\n", encoding="utf-8")
        recurring_file.write_text("\n".join(recurring) + "\n", encoding="utf-8")
        with running_server(model, threads, extra=["--workers", str(workers)]) as url:
            httpx.get(f"{url}/predict", params={"name": "Warmup"}, timeout=60)
            for key, what, method, connections in BENCH_ROWS:
                size = batch if method != "GET" else 1
                pool = recurring if method == "POST-repeat" else names
                if method == "POST-repeat":  # every process sees every recurring name first
                    for _ in range(2 * workers):
                        python_clients(url, method, 1, recurring, batch, -(-len(recurring) // batch), 60.0)
                    wait_until_idle(url)
                if tool == "wrk":
                    row = wrk(url, method, connections, seconds,
                              recurring_file if method == "POST-repeat" else names_file, batch)
                else:
                    # A fixed number of requests, about ``seconds`` of work for 2 cores.
                    requests = int(seconds * (300 if size == 1 else 10))
                    row = python_clients(url, method, connections, pool, batch, max(connections, requests), 60.0)
                answered = row["requests_per_s"] * (1 - row["non_2xx"] / max(1, row["requests"]))
                row.update(what=what, connections=connections, names_per_request=size,
                           ok_per_s=round(answered, 1), names_per_s=round(answered * size))
                out["rows"][key] = row
                wait_until_idle(url)
            out["server_counters"] = httpx.get(f"{url}/health", timeout=60).json().get("serving")
    return out


def print_bench(result: dict) -> None:
    print(f"server: {result['workers']} worker(s), {result['threads']} torch thread(s); measured with "
          f"{result['tool']}, {result['seconds']:g} s a row")
    for row in result["rows"].values():
        errors = sum(row.get("socket_errors", {}).values())
        print(f"  {row['what']:<70} {row['requests_per_s']:>9,.1f} req/s {row['names_per_s']:>9,} names/s  "
              f"p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  non-2xx {row['non_2xx']}  socket errors {errors}")
    print("  (names/s counts answered requests only; a 503 answers no names)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.splitlines()[0])
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
    parser.add_argument("--bench", action="store_true",
                        help="The benchmark's server rows instead (needs --model; wrk when installed).")
    parser.add_argument("--workers", type=int, default=2, help="--workers for the server --bench starts.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Seconds per --bench row.")
    args = parser.parse_args(argv)
    for name in ("clients", "requests", "batch_requests", "batch_size"):
        if not 1 <= getattr(args, name) <= 100_000:
            parser.error(f"--{name.replace('_', '-')} must be between 1 and 100000")
    if args.url and urlsplit(args.url).hostname not in LOOPBACK:
        parser.error("--url must point at this machine (127.0.0.1, localhost or ::1)")
    names = load_names(args.data)
    if args.bench:
        if not args.model:
            parser.error("--bench starts its own server: give --model")
        bench = server_bench(args.model, args.data, args.workers, args.seconds, args.threads, args.batch_size)
        bench["cpus"] = os.cpu_count()
        bench["load_average"] = load_average()
        if args.json:
            print(json.dumps(bench, indent=2))
        else:
            print_bench(bench)
        return

    if args.model:
        with running_server(args.model, args.threads) as url:
            result = measure(url, names, args)
    else:
        result = measure(args.url.rstrip("/"), names, args)
    result["cpus"] = os.cpu_count()
    result["load_average"] = load_average()
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
