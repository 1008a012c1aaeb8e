"""Ingest a whole corpus through the CLI and watch its memory: bounded by batches, not corpus size.

Runs `semsearch ingest` (Reuters-21578 paragraphs by default: 105,536 passages) in a child process
and samples its resident memory and the stored passage count every second. Reports the time, the
store's size, and RSS when 10k, 50k and 100k passages were stored, and their ratio. (The FAISS
index is built from SQLite once the passages are stored, so it is not in memory while encoding.)

    .venv/bin/python scripts/bench_memory.py --store reuters-store [--input FILE] [--limit N]
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident memory of ``pid`` in MB: (all, anonymous); the rest is mapped files (model, libraries)."""
    found = {"VmRSS": 0.0, "RssAnon": 0.0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":")[0]
            if key in found:
                found[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return found["VmRSS"], found["RssAnon"]


def passages(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        n = con.execute("SELECT count(*) FROM passages").fetchone()[0]
        con.close()
        return int(n)
    except sqlite3.Error:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--input", default=str(REPO.parent / "shared" / "data" / "reuters21578" / "paragraphs.jsonl.gz"))
    parser.add_argument("--limit", type=int, default=0, help="ingest only the first N records")
    args = parser.parse_args()
    source = args.input
    if args.limit:
        import gzip
        import itertools
        import tempfile

        opener = gzip.open if source.endswith(".gz") else open
        with opener(source, "rt", encoding="utf-8") as f:
            head = list(itertools.islice(f, args.limit))
        tmp = tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8")
        tmp.writelines(head)
        tmp.close()
        source = tmp.name
    cmd = [sys.executable, "-m", "semsearch", "ingest", source, "--store", str(args.store)]
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "120"})
    samples: list[tuple[float, int, float, float]] = []
    while child.poll() is None:
        samples.append((time.perf_counter() - start, passages(args.store / "semsearch.db"), *rss_mb(child.pid)))
        time.sleep(1.0)
    elapsed = time.perf_counter() - start
    err = child.stderr.read() if child.stderr else ""
    if child.returncode != 0:
        sys.exit(f"ingest failed:\n{err}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; `{' '.join(cmd[1:])}`")
    summary = err[err.rfind("Ingested") :] if "Ingested" in err else err.strip().splitlines()[-1]
    print(" ".join(summary.split()))
    print(f"wall time {elapsed:.0f} s; store {sum(p.stat().st_size for p in args.store.iterdir()) / 1e6:,.0f} MB")

    def at(n: int) -> tuple[int, float, float] | None:
        hits = [(p, r, a) for _, p, r, a in samples if p >= n]
        return hits[0] if hits else None

    rows = []
    for target in (10_000, 20_000, 50_000, 100_000):
        found = at(target)
        if found:
            rows.append(found)
    print("| passages stored | RSS MB | of which anonymous MB |")
    print("| ---: | ---: | ---: |")
    for p, r, a in rows:
        print(f"| {p:,} | {r:,.0f} | {a:,.0f} |")
    if len(rows) >= 2:
        print(f"RSS at {rows[-1][0]:,} passages is {rows[-1][1] / rows[0][1]:.2f}x that at {rows[0][0]:,}")
    print(f"peak RSS {max(s[2] for s in samples):,.0f} MB")


if __name__ == "__main__":
    main()
