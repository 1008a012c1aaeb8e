"""Ray ingest and sharded search, measured side by side in one run.

1. The same Reuters-21578 paragraphs ingested by `semsearch ingest` plainly, and with
   `--ray local --ray-workers 1` and `2`, rounds alternating; medians of the whole command's wall
   time (Python start, model load, the Ray cluster's start included) and of the ingest itself (the
   "in N s" it reports: reading, encoding, writing, the index). Every Ray store is compared with
   the plain one (same keys and passages, sentence vectors within 1e-5).
2. The ingesting process's own ceiling: the same paragraphs ingested with their encodings
   replayed from memory (no model pass), so what is left is what the ingesting process does
   whatever feeds it (splitting, word pooling, the token codec, SQLite and FTS5 writes, the
   index): the rate one writer sustains however many GPUs encode for it.
3. Search latency in one process over stores of 1, 2 and 4 shards holding the same paragraphs
   (dense and hybrid, one query at a time, warm), and whether the dense hits equal the single
   store's.

    .venv/bin/python scripts/bench_ray.py [--paragraphs 3000] [--rounds 3] [--queries 200] [--parts ingest,writer,search]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import semsearch  # noqa: E402
from semsearch import shards  # noqa: E402

PARAGRAPHS = REPO.parent / "shared" / "data" / "reuters21578" / "paragraphs.jsonl.gz"
SEMSEARCH = [sys.executable, "-m", "semsearch"]


def write_input(path: Path, start: int, count: int) -> list[str]:
    texts = []
    with gzip.open(PARAGRAPHS, "rt", encoding="utf-8") as f, path.open("w") as out:
        for i, line in enumerate(f):
            if i >= start + count:
                break
            if i >= start:
                row = json.loads(line)
                out.write(json.dumps({"id": row.get("id", str(i)), "text": row["text"]}) + "\n")
                texts.append(row["text"])
    return texts


def ingest(source: Path, store: Path, *extra: str) -> tuple[float, float]:
    """(whole command wall seconds, the ingest's own seconds)."""
    started = time.perf_counter()
    done = subprocess.run([*SEMSEARCH, "ingest", str(source), "--store", str(store), "-q", *extra], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"ingest {' '.join(extra)} failed:\n{done.stderr}")
    seconds = re.search(r"in ([\d.,]+) s", done.stderr)
    assert seconds, done.stderr
    return wall, float(seconds.group(1).replace(",", ""))


def same_store(a: Path, b: Path) -> float:
    """The largest sentence-vector difference between two stores of the same input (keys and
    passages must match)."""
    with semsearch.open(a) as x, semsearch.open(b) as y:
        sx, sy = x.store, y.store
        ax = {(p.document_key, p.ordinal): p for p in sx.documents.passages(list(range(1, x.info().passages + 1))).values()}
        ay = {(p.document_key, p.ordinal): p for p in sy.documents.passages(list(range(1, y.info().passages + 1))).values()}
        assert set(ax) == set(ay) and all(ax[k].text == ay[k].text for k in ax), "the stores hold different passages"
        worst = 0.0
        for key, p in ax.items():
            worst = max(worst, float(np.abs(sx.documents.vector(p.id) - sy.documents.vector(ay[key].id)).max()))
        return worst


def exact_agrees(session: semsearch.Session, queries: list[str], found: list[list[tuple[str, float]]]) -> int:
    """Queries whose dense hits have, rank by rank, the scores of an exact scan of every stored
    sentence vector of the store (all its shards)."""
    from semsearch.flows.query import encode_query

    parts = session.shards if isinstance(session, shards.ShardedSession) else [session]
    vectors = []
    for part in parts:
        store = part.store
        ids = list(range(1, part.info().passages + 1))  # a new store numbers its passages from 1
        vectors.append(store.documents.vectors_for(ids)[1])
    every = np.concatenate(vectors)
    agree = 0
    for q, hits in zip(queries, found):
        vector, _ = encode_query(session.encoder, q)
        best = np.sort(every @ vector)[::-1][: len(hits)]
        agree += bool(np.allclose(best, [score for _, score in hits], atol=1e-5))
    return agree


def latency(session: semsearch.Session, queries: list[str], mode: str) -> tuple[float, float, list[list[tuple[str, float]]]]:
    for q in queries[:10]:
        session.search(q, k=10, mode=mode)
    times, found = [], []
    for q in queries:
        started = time.perf_counter()
        result = session.search(q, k=10, mode=mode)
        times.append((time.perf_counter() - started) * 1000)
        found.append([(f"{h.document_key}/{h.ordinal}", h.score) for h in result.hits])
    return statistics.median(times), float(np.percentile(times, 99)), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paragraphs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--parts", default="ingest,writer,search")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    os.environ.setdefault("SEMSEARCH_MODEL_CACHE", tempfile.mkdtemp(prefix="bench-ray-models-"))
    import ray

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, ray {ray.__version__}; {args.paragraphs:,} Reuters paragraphs, "
          f"median of {args.rounds} alternating rounds")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = root / "paragraphs.jsonl"
        write_input(source, 0, args.paragraphs)
        if "writer" in parts:
            writer_ceiling(source, root, args.rounds)
        if "ingest" not in parts:
            ingest(source, root / "plain-0")
        runs = {"plain": [], "ray, 1 worker": [], "ray, 2 workers": []}  # type: dict[str, list[tuple[float, float]]]
        extra = {"plain": [], "ray, 1 worker": ["--ray", "local", "--ray-workers", "1"], "ray, 2 workers": ["--ray", "local", "--ray-workers", "2"]}
        diffs = {}
        for r in range(args.rounds if "ingest" in parts else 0):
            for name in runs:
                store = root / f"{name.replace(' ', '').replace(',', '-')}-{r}"
                runs[name].append(ingest(source, store, *extra[name]))
                if name != "plain":
                    diffs[name] = max(diffs.get(name, 0.0), same_store(root / f"plain-{r}", store))
        if "ingest" in parts:
            ingest_table(runs, diffs, args.paragraphs)
        if "search" in parts:
            search_table(root, source, args.queries)


def ingest_table(runs: dict[str, list[tuple[float, float]]], diffs: dict[str, float], paragraphs: int) -> None:
    plain_wall = statistics.median(w for w, _ in runs["plain"])
    plain_own = statistics.median(s for _, s in runs["plain"])
    print("\n| ingest | whole command s | ratio to plain | ingest itself s | passages/s | ratio to plain | max vector difference |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, times in runs.items():
        wall, own = statistics.median(w for w, _ in times), statistics.median(s for _, s in times)
        diff = f"{diffs[name]:.1e}" if name in diffs else "-"
        print(f"| {name} | {wall:.1f} | {wall / plain_wall:.2f} | {own:.1f} | {paragraphs / own:,.1f} | {own / plain_own:.2f} | {diff} |")
    print("(whole command: Python, the model and, with --ray, the local cluster start included)")


def search_table(root: Path, source: Path, count: int) -> None:
    queries = [t[:200] for t in write_input(root / "queries.jsonl", 20_000, count)]
    stores = {1: root / "plain-0"}
    for n in (2, 4):
        stores[n] = shards.create(root / f"shards-{n}", n)
        ingest(source, stores[n])
    print("\n| shards | dense p50 ms | dense p99 ms | hybrid p50 ms | hybrid p99 ms | dense = exact scan, rank by rank | dense hits in 1-shard order |")
    print("| ---: | ---: | ---: | ---: | ---: | --- | --- |")
    baseline: list[list[tuple[str, float]]] = []
    for n, path in stores.items():
        with semsearch.open(path) as session:
            d50, d99, found = latency(session, queries, "dense")
            h50, h99, _ = latency(session, queries, "hybrid")
            exact = exact_agrees(session, queries, found)
        baseline = baseline or found
        same = sum([x[0] for x in a] == [y[0] for y in b] for a, b in zip(found, baseline))
        print(f"| {n} | {d50:.1f} | {d99:.1f} | {h50:.1f} | {h99:.1f} | {exact} of {len(found)} | {same} of {len(found)} |")


class Replay:
    """The real model's encodings of a fixed set of texts, handed back from memory."""

    def __init__(self, model: Any, texts: list[str]) -> None:
        self.inner = model
        self.name, self.dim, self.max_tokens = model.name, model.dim, model.max_tokens
        self.pooling, self.special_tokens = model.pooling, model.special_tokens
        self.known: dict[str, Any] = {}
        spans = model.split(texts, 32, False)
        pieces = [t[s.start : s.end] for t, ss in zip(texts, spans) for s in ss]
        for start in range(0, len(pieces), 64):
            for text, encoded in zip(pieces[start : start + 64], model.encode(pieces[start : start + 64])):
                self.known[text] = encoded

    def encode(self, texts: list[str]) -> list[Any]:
        return [self.known[t] for t in texts]

    def split(self, texts: list[str], overlap: int, truncate: bool) -> list[Any]:
        return self.inner.split(texts, overlap, truncate)


def writer_ceiling(source: Path, root: Path, rounds: int) -> None:
    from semsearch.encoder import load_encoder

    rows = [json.loads(line) for line in source.read_text().splitlines()]
    replay = Replay(load_encoder("all-MiniLM-L6-v2", "cpu", "torch", purpose="ingest"), [r["text"] for r in rows])
    times, passages = [], 0
    for r in range(rounds):
        with semsearch.open(root / f"replay-{r}", create=True, encoder=replay) as session:  # type: ignore[arg-type]
            report = session.ingest([source])
        times.append(report.seconds)
        passages = report.passages
    seconds = statistics.median(times)
    print(f"\nthe ingesting process alone (encodings replayed from memory): {passages:,} passages in {seconds:.2f} s, "
          f"{passages / seconds:,.0f} passages/s (median of {rounds})")


if __name__ == "__main__":
    main()
