"""`semsearch recode` against reading the store once, side by side on copies of one store.

Read once: every passage's token vectors read and decoded, in the batches recode uses. Recode:
pieces → words with the default codec (or ``--codec``/``--pool``), written to the shadow table,
swapped in and vacuumed. Each is run ``--rounds`` times on fresh copies, interleaved; medians.

    .venv/bin/python scripts/bench_recode.py --store reuters-store [--codec SQ6] [--pool words]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import semsearch  # noqa: E402
from semsearch.flows.maintenance import RECODE_BATCH  # noqa: E402


def read_once(path: Path) -> float:
    with semsearch.open(path) as s:
        store, codec = s.store, s.store.codec()
        started, last = time.perf_counter(), 0
        while batch := store.tokens.token_data(last, RECODE_BATCH, codec):
            last = batch[-1][0]
        return time.perf_counter() - started


def recode(path: Path, codec: str, pool: str) -> tuple[float, semsearch.RecodeReport]:
    with semsearch.open(path) as s:
        started = time.perf_counter()
        report = s.recode(codec, pool)
        return time.perf_counter() - started, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True, help="a store of word pieces (e.g. made with token_pool: pieces)")
    parser.add_argument("--codec", default="SQ6")
    parser.add_argument("--pool", default="words")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    reads, recodes = [], []
    report = None
    with tempfile.TemporaryDirectory(prefix="bench-recode-") as work:
        for r in range(args.rounds):
            copy = Path(work) / f"copy{r}"
            shutil.copytree(args.store, copy, ignore=shutil.ignore_patterns("write.lock"))
            reads.append(read_once(copy))
            seconds, report = recode(copy, args.codec, args.pool)
            recodes.append(seconds)
            shutil.rmtree(copy)
    assert report is not None
    b, a = report.before, report.after
    print(f"# bench_recode: {args.store} ({b.passages:,} passages, {b.tokens:,} token vectors, {b.store_bytes / 1e6:,.1f} MB)")
    print(f"# {b.token_codec}/{b.token_pool} -> {a.token_codec}/{a.token_pool}: {a.tokens:,} vectors, store {a.store_bytes / 1e6:,.1f} MB\n")
    print("| | median s | runs |")
    print("| --- | ---: | --- |")
    print(f"| read every token row once | {statistics.median(reads):.2f} | {', '.join(f'{x:.2f}' for x in reads)} |")
    print(f"| recode (write, swap, vacuum) | {statistics.median(recodes):.2f} | {', '.join(f'{x:.2f}' for x in recodes)} |")
    print(f"\nrecode / read: {statistics.median(recodes) / statistics.median(reads):.2f}x")


if __name__ == "__main__":
    main()
