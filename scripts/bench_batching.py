"""Queries encoded together or one by one: two `semsearch serve` processes on one copy of a store,
one with the default `query_batch` (16) and one with `SEMSEARCH_QUERY_BATCH=1`, asked in turn by
1 and 16 client threads (dense and hybrid searches of 12-word Reuters paragraph openings),
rounds alternating; medians of the rounds.

    .venv/bin/python scripts/bench_batching.py --store r10k [--rounds 3] [--seconds 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serve import free_port, reuters_rows, run_clients, search_path, start_server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    queries = [" ".join(r["text"].split()[:12]) for r in reuters_rows(20_000, 600)]
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        shutil.copytree(args.store, store)
        servers = {}
        for name, batch in (("query_batch 16", "16"), ("query_batch 1", "1")):
            os.environ["SEMSEARCH_QUERY_BATCH"] = batch  # the server process inherits it
            port = free_port()
            servers[name] = (port, start_server(store, port))
        os.environ.pop("SEMSEARCH_QUERY_BATCH")
        results: dict[tuple[str, int, str], list[tuple[float, float]]] = {}
        try:
            for _ in range(args.rounds):
                for mode in ("dense", "hybrid"):
                    paths = [search_path(q, mode) for q in queries]
                    for clients in (1, 16):
                        for name, (port, _) in servers.items():
                            run_clients(port, paths[:20], 4, 1)  # warm
                            out = run_clients(port, paths, clients, args.seconds)
                            assert out["errors"] == 0
                            results.setdefault((mode, clients, name), []).append((out["rate"], out["p50"]))
        finally:
            for _, process in servers.values():
                process.terminate()
                process.wait()
    print(f"| mode | clients | setting | searches/s | p50 ms |  (median of {args.rounds} alternating rounds of {args.seconds:g} s)")
    print("| --- | ---: | --- | ---: | ---: |")
    for (mode, clients, name), values in results.items():
        print(f"| {mode} | {clients} | {name} | {statistics.median(r for r, _ in values):.1f} | {statistics.median(p for _, p in values):.1f} |")


if __name__ == "__main__":
    main()
