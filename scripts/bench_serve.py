"""`semsearch serve` under load: 1, 4 and 16 concurrent clients, searches and explains, with and
without an ingest into the same store running beside it.

The server runs in its own process on a copy of the store (the ingest phase adds to it); the
clients are threads of this process, each with one keep-alive HTTP connection, asking one request
after another for a bounded time. Queries are Reuters paragraphs that are not in the store (their
first 12 words), in hybrid mode (the default) and in dense mode; explains use (passage, query id) pairs from those searches, so they need no
model (they are taken from 30 fresh searches before each explain row: the server keeps the
token vectors of the last 100 queries, the ``query_cache`` setting). The ingest is `semsearch ingest` of further Reuters paragraphs in a third process.
Everything shares this machine's cores: the clients' own time is inside the latencies.

    zcat ../shared/data/reuters21578/paragraphs.jsonl.gz | head -10000 > r10k.jsonl
    semsearch ingest r10k.jsonl --store r10k
    .venv/bin/python scripts/bench_serve.py --store r10k [--seconds 10]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PARAGRAPHS = REPO.parent / "shared" / "data" / "reuters21578" / "paragraphs.jsonl.gz"


def reuters_rows(start: int, count: int) -> list[dict[str, str]]:
    rows = []
    with gzip.open(PARAGRAPHS, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= start + count:
                break
            if i >= start:
                rows.append(json.loads(line))
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(store: Path, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "semsearch", "serve", "--store", str(store), "--port", str(port)]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
        if process.poll() is not None:
            break
    process.kill()
    raise SystemExit(f"the server did not start: {process.communicate()[1].decode()}")


def run_clients(port: int, paths: list[str], clients: int, seconds: float) -> dict[str, float]:
    """``clients`` threads asking ``paths`` in turn for ``seconds``: rate, p50, p99, errors."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    stop = threading.Event()

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = n
        start.wait()
        while not stop.is_set():
            path = paths[i % len(paths)]
            i += clients
            t = time.perf_counter()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            latencies[n].append(1000 * (time.perf_counter() - t))
            errors[n] += not ok
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    every = sorted(x for per in latencies for x in per)
    return {
        "requests": len(every),
        "rate": len(every) / elapsed,
        "p50": statistics.median(every),
        "p99": every[min(len(every) - 1, int(0.99 * len(every)))],
        "errors": sum(errors),
    }


def compare(servers: dict[str, int], queries: list[str], rounds: int, seconds: float) -> dict[tuple[str, int, str], list[tuple[float, float]]]:
    """Servers (name → port) asked in turn by 1 and 16 clients, hybrid then dense searches of
    ``queries``, for ``rounds`` alternating rounds: (mode, clients, name) → [(searches/s, p50)]."""
    results: dict[tuple[str, int, str], list[tuple[float, float]]] = {}
    for _ in range(rounds):
        for mode in ("hybrid", "dense"):
            paths = [search_path(q, mode) for q in queries]
            for clients in (1, 16):
                for name, port in servers.items():
                    run_clients(port, paths[:20], 4, 1)  # warm
                    out = run_clients(port, paths, clients, seconds)
                    assert out["errors"] == 0
                    results.setdefault((mode, clients, name), []).append((out["rate"], out["p50"]))
    return results


def print_comparison(results: dict[tuple[str, int, str], list[tuple[float, float]]], column: str, rounds: int, seconds: float) -> None:
    print(f"| mode | clients | {column} | searches/s | p50 ms |  (median of {rounds} alternating rounds of {seconds:g} s)")
    print("| --- | ---: | --- | ---: | ---: |")
    for (mode, clients, name), values in results.items():
        print(f"| {mode} | {clients} | {name} | {statistics.median(r for r, _ in values):.1f} | {statistics.median(p for _, p in values):.1f} |")


def search_path(text: str, mode: str = "hybrid") -> str:
    return "/api/search?" + urllib.parse.urlencode({"q": text, "k": 10, "mode": mode})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True, help="a store of Reuters paragraphs (10k for the issue's figures)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measurement")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--ingest", type=int, default=8000, help="Reuters paragraphs ingested beside the second round")
    args = parser.parse_args()
    if not PARAGRAPHS.exists():
        raise SystemExit(f"{PARAGRAPHS} is missing: this benchmark reads Reuters-21578 from ../shared/data")

    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    try:
        store = work / "store"
        shutil.copytree(args.store, store, ignore=shutil.ignore_patterns("write.lock"))
        queries = [" ".join(r["text"].split()[:12]) for r in reuters_rows(60_000, 400)]
        extra = work / "extra.jsonl"
        extra.write_text("".join(json.dumps({**r, "id": f"bench-{r['id']}"}) + "\n" for r in reuters_rows(20_000, args.ingest)))
        port = free_port()
        server = start_server(store, port)
        try:
            searches = {mode: [search_path(q, mode) for q in queries] for mode in ("hybrid", "dense")}
            for path in searches["hybrid"][:20]:  # warm-up
                _get(port, path)

            print(f"# bench_serve on {platform.processor() or platform.machine()}, {os.cpu_count()} cores; store {args.store} "
                  f"({json.loads(_get(port, '/api/info'))['passages']:,} passages); {args.seconds:g} s per row")
            print("| ingest beside | request | clients | requests/s | p50 ms | p99 ms | errors |")
            print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
            for beside in (False, True):
                ingest = None
                if beside:
                    ingest = subprocess.Popen(
                        [sys.executable, "-m", "semsearch", "ingest", str(extra), "--store", str(store), "-q"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                    )
                    time.sleep(2.0)
                for kind in ("search hybrid", "search dense", "explain"):
                    paths = searches[kind.split()[1]] if kind.startswith("search") else explain_paths(port, queries[:30])
                    for clients in args.clients:
                        r = run_clients(port, paths, clients, args.seconds)
                        running = "" if ingest is None else (" (running)" if ingest.poll() is None else " (had finished)")
                        cells = [f"{'yes' + running if beside else 'no'}", kind, str(clients), f"{r['rate']:.0f}", f"{r['p50']:.1f}", f"{r['p99']:.1f}"]
                        print("| " + " | ".join(cells) + f" | {r['errors']} |", flush=True)
                if ingest is not None:
                    _, stderr = ingest.communicate()
                    if ingest.returncode != 0:
                        raise SystemExit(f"the ingest beside failed: {stderr.decode()}")
                    print(f"\nthe ingest beside added {args.ingest:,} documents; the server now reports "
                          f"{json.loads(_get(port, '/api/info'))['passages']:,} passages")
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def explain_paths(port: int, queries: list[str]) -> list[str]:
    """(passage, query id) pairs of fresh searches: the server keeps the last 100 queries' tokens."""
    paths = []
    for q in queries:
        found = json.loads(_get(port, search_path(q)))
        paths += [f"/api/explain?id={h['passage_id']}&query_id={found['query_id']}" for h in found["hits"][:3]]
    return paths


def _get(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path)
    return conn.getresponse().read()


if __name__ == "__main__":
    main()
