"""Wall time of whole `semsearch` commands, as a user feels them (Python start-up included).

Ingests the committed ARC sample into a temporary store (timed; the first ingest on a machine
also makes the model's ONNX export, once), then runs `search` (ONNX Runtime, the default, and
with `SEMSEARCH_BACKEND=torch` for comparison), `explain --id` (cached query: no model), `info`,
and `search --queries` with 20 queries. The commands take turns, round after round, so that the
machine's noise falls on all of them alike; medians are printed, and search's ratio to info.

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


def timed(args: list[str], **env: str) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(SEMSEARCH + args, capture_output=True, text=True, env={**os.environ, "COLUMNS": "120", **env})
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
        runs: dict[str, tuple[list[str], dict[str, str]]] = {
            "search QUERY": (["search", QUERY, *store], {}),
            "search QUERY (torch backend)": (["search", QUERY, *store], {"SEMSEARCH_BACKEND": "torch"}),
            "explain --id (cached query)": (["explain", "--id", top, *store], {}),
            "explain --id --png": (["explain", "--id", top, "--png", str(Path(tmp) / "x.png"), *store], {}),
            "info": (["info", *store], {}),
            "search --queries (20 queries)": (["search", "--queries", str(queries), *store], {}),
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeat):
            for name, (cmd, env) in runs.items():
                times[name].append(timed(cmd, **env)[0])
        medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; median of {args.repeat} rounds")
    print(f"ingest of the ARC sample (1,000 questions, one run): {ingest_s:.1f} s")
    print("| command | median wall s |")
    print("| --- | ---: |")
    for name, value in medians.items():
        print(f"| `semsearch {name}` | {value:.2f} |")
    print(f"search / info: {medians['search QUERY'] / medians['info']:.2f}; "
          f"torch search / ONNX search: {medians['search QUERY (torch backend)'] / medians['search QUERY']:.1f}; "
          f"one query of 20 in --queries: {medians['search --queries (20 queries)'] / 20:.3f} s")


if __name__ == "__main__":
    main()
