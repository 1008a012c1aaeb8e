"""Wall time of whole `semsearch` commands, as a user feels them (Python start-up included).

Ingests the committed ARC sample into a temporary store (timed), then runs `search`,
`explain --id` (cached query: no model), `info`, and `search --queries` with 20 queries, each
several times, and prints medians and the ratio explain / search.

    .venv/bin/python scripts/bench_cli.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "arc" / "arc-easy-train-1000.jsonl"
QUERY = "Which factor will most likely cause a person to develop a fever?"
SEMSEARCH = [sys.executable, "-m", "semsearch"]


def timed(args: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(SEMSEARCH + args, capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"})
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"semsearch {' '.join(args)} failed:\n{proc.stderr}")
    return elapsed, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = ["--store", str(Path(tmp) / "store")]
        ingest_s, _ = timed(["ingest", str(SAMPLE), "--text-field", "question.stem", "-q", *store])
        _, out = timed(["search", QUERY, "-k", "1", "--json", *store])
        top = str(json.loads(out)["hits"][0]["passage_id"])
        queries = Path(tmp) / "queries.txt"
        lines = [json.loads(line)["question"]["stem"] for line in SAMPLE.read_text().splitlines()[:20]]
        queries.write_text("\n".join(lines) + "\n")
        runs = {
            "search QUERY": ["search", QUERY, *store],
            "explain --id (cached query)": ["explain", "--id", top, *store],
            "explain --id --png": ["explain", "--id", top, "--png", str(Path(tmp) / "x.png"), *store],
            "info": ["info", *store],
            "search --queries (20 queries)": ["search", "--queries", str(queries), *store],
        }
        medians = {}
        for name, cmd in runs.items():
            medians[name] = statistics.median(timed(cmd)[0] for _ in range(args.repeat))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; median of {args.repeat}")
    print(f"ingest of the ARC sample (1,000 questions, one run): {ingest_s:.1f} s")
    print(f"{'command':<32} {'median wall (s)':>16}")
    for name, value in medians.items():
        print(f"{name:<32} {value:>16.2f}")
    ratio = medians["search QUERY"] / medians["explain --id (cached query)"]
    print(f"explain --id is {ratio:.1f}x faster than search; one query of 20 in --queries costs "
          f"{medians['search --queries (20 queries)'] / 20:.2f} s")


if __name__ == "__main__":
    main()
