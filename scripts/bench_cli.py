"""Wall time of whole `semsearch` commands, as a user feels them (Python start-up included).

Ingests the committed ARC sample into a temporary store (timed; the first ingest on a machine
also makes the model's ONNX export, once), then runs `search` (ONNX Runtime, the default, and
with `SEMSEARCH_BACKEND=torch` for comparison), `explain --id` (cached query: no model), `info`,
and `search --queries` with 20 queries. The commands take turns, round after round, so that the
machine's noise falls on all of them alike; medians are printed, and search's ratio to info. The
PyTorch search runs its rounds after the others (see ``measure``).
With ``--before REV``, that git revision's `search` and `info` (checked out with `git worktree`,
run with this checkout's virtual environment on the same store) take their turns too.

    .venv/bin/python scripts/bench_cli.py [--repeat 5] [--before REV]
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


WORK = Path(tempfile.mkdtemp(prefix="bench-cli-"))  # the commands' folder: no config.yaml, no semsearch package


def timed(args: list[str], **env: str) -> tuple[float, str]:
    start = time.perf_counter()
    # from another folder: `python -m semsearch` imports from the current folder first
    proc = subprocess.run(SEMSEARCH + args, capture_output=True, text=True, env={**os.environ, "COLUMNS": "120", **env}, cwd=WORK)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"semsearch {' '.join(args)} failed:\n{proc.stderr}")
    return elapsed, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--before", help="a git revision whose search and info run beside this checkout's")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        if args.before:
            old = str(Path(tmp) / "before")
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", old, args.before], check=True)
        try:
            medians = measure(Path(tmp), args.repeat, args.before and old)
        finally:
            if args.before:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", old], check=False)
    WORK.rmdir()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; median of {args.repeat} rounds")
    print(f"ingest of the ARC sample (1,000 questions, one run): {medians.pop('ingest'):.1f} s")
    print("| command | median wall s |")
    print("| --- | ---: |")
    for name, value in medians.items():
        print(f"| `semsearch {name}` | {value:.2f} |".replace(" (before)`", f"` (at {args.before})"))
    print(f"search / info: {medians['search QUERY'] / medians['info']:.2f}; "
          f"torch search / ONNX search: {medians['search QUERY (torch backend)'] / medians['search QUERY']:.1f}; "
          f"one query of 20 in --queries: {medians['search --queries (20 queries)'] / 20:.3f} s")
    if args.before:
        print(f"at {args.before}: search / info: {medians['search QUERY (before)'] / medians['info (before)']:.2f}")


def measure(tmp: Path, repeat: int, old: str | None) -> dict[str, float]:
    """Median wall seconds of each command (and of the one ingest, as 'ingest')."""
    store = ["--store", str(tmp / "store")]
    ingest_s, _ = timed(["ingest", str(SAMPLE), "--text-field", "question.stem", "-q", *store])
    _, out = timed(["search", QUERY, "-k", "1", "--json", *store])
    top = str(json.loads(out)["hits"][0]["passage_id"])
    if old:  # its first search makes its own ONNX export if its layout differs
        timed(["search", QUERY, *store], PYTHONPATH=old)
    queries = tmp / "queries.txt"
    lines = [json.loads(line)["question"]["stem"] for line in SAMPLE.read_text().splitlines()[:20]]
    queries.write_text("\n".join(lines) + "\n")
    runs: dict[str, tuple[list[str], dict[str, str]]] = {
        "search QUERY": (["search", QUERY, *store], {}),
        "explain --id (cached query)": (["explain", "--id", top, *store], {}),
        "explain --id --png": (["explain", "--id", top, "--png", str(tmp / "x.png"), *store], {}),
        "info": (["info", *store], {}),
        "search --queries (20 queries)": (["search", "--queries", str(queries), *store], {}),
    }
    if old:
        runs["search QUERY (before)"] = (["search", QUERY, *store], {"PYTHONPATH": old})
        runs["info (before)"] = (["info", *store], {"PYTHONPATH": old})
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, (cmd, env) in runs.items():
            times[name].append(timed(cmd, **env)[0])
    # after the others, not among them: importing torch (seconds, a GB of libraries) leaves the
    # next few commands slower (search ~0.1 s here), which would blur the comparison of the rest
    torch = [timed(["search", QUERY, *store], SEMSEARCH_BACKEND="torch")[0] for _ in range(repeat)]
    times["search QUERY (torch backend)"] = torch
    return {"ingest": ingest_s, **{name: statistics.median(values) for name, values in times.items()}}


if __name__ == "__main__":
    main()
