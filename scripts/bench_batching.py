"""A server setting measured side by side: two `semsearch serve` processes on one copy of a store,
one with the defaults and one with ``--against NAME=VALUE`` (by default `query_batch=1`: queries
encoded one by one instead of together), asked in turn by 1 and 16 client threads (dense and
hybrid searches of 12-word Reuters paragraph openings), rounds alternating; medians of the rounds.

    .venv/bin/python scripts/bench_batching.py --store r10k [--rounds 3] [--seconds 8]
    .venv/bin/python scripts/bench_batching.py --store r10k --against lexical_memory=0
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serve import compare, free_port, print_comparison, reuters_rows, start_server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--against", default="query_batch=1", help="NAME=VALUE: the setting the second server runs with")
    args = parser.parse_args()
    setting, _, value = args.against.partition("=")
    variable = "SEMSEARCH_" + setting.upper()
    queries = [" ".join(r["text"].split()[:12]) for r in reuters_rows(20_000, 600)]
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        shutil.copytree(args.store, store)
        servers = {}
        for name, given in (("defaults", None), (f"{setting} {value}", value)):
            if given is not None:
                os.environ[variable] = given  # the server process inherits it
            port = free_port()
            servers[name] = (port, start_server(store, port))
        os.environ.pop(variable, None)
        try:
            results = compare({name: port for name, (port, _) in servers.items()}, queries, args.rounds, args.seconds)
        finally:
            for _, process in servers.values():
                process.terminate()
                process.wait()
    print_comparison(results, "setting", args.rounds, args.seconds)


if __name__ == "__main__":
    main()
