"""Index speed, recall and memory at 100k real and 1M synthetic vectors; whole warm search latency.

Real: the sentence vectors of a store (ingest Reuters-21578 paragraphs first, ~105k passages:
`semsearch ingest ../shared/data/reuters21578/paragraphs.jsonl.gz --store reuters-store`), with
200 Reuters titles, encoded by the model, as queries. Synthetic: 1M unit vectors drawn around 2,000
random centres, queries drawn the same way (clustered, so easier for IVF than real data; said so
in the output). For each
index: build seconds, memory (serialised size), p50/p99 of one query at a time, batch throughput,
Recall@10 against exact search (a returned passage counts when it scores at least the exact 10th
score, so exact duplicates, common in Reuters, tie instead of counting as misses). Then whole warm
searches through ``Session.search`` (encode the query, search, read the hits from SQLite, cache the
query) on the real store: dense and hybrid, warmed up as a server is, and hybrid without warm-up.

    .venv/bin/python scripts/bench_search.py --store reuters-store [--synthetic 1000000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import faiss  # noqa: E402

import semsearch  # noqa: E402
from semsearch.index import IndexOptions, VectorIndex, resolve_factory  # noqa: E402

Truth = tuple[np.ndarray, np.ndarray, dict[int, np.ndarray], np.ndarray]


def ground_truth(ids: np.ndarray, base: np.ndarray, queries: np.ndarray) -> Truth:
    exact = VectorIndex.create("Flat", base.shape[1])
    exact.add(ids, base)
    scores, top = exact.search(queries, 10)
    return scores, top, {int(i): v for i, v in zip(ids, base)}, queries


def recall_at_10(found: np.ndarray, truth: Truth) -> float:
    """Share of the exact top 10 found; a hit scoring at least the exact 10th score counts (ties)."""
    scores, top, by_id, queries = truth
    total = 0.0
    for q, row in enumerate(found):
        good = {int(i) for i in top[q]}
        for i in row:
            i = int(i)
            if i >= 0 and i not in good and float(by_id[i] @ queries[q]) >= scores[q, 9] - 1e-6:
                good.add(i)
        total += min(10, len({int(i) for i in row} & good)) / 10
    return total / len(found)


def one_at_a_time(index: VectorIndex, queries: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Each query's top-10 ids and its latency in ms."""
    found = np.zeros((len(queries), 10), dtype=np.int64)
    times = []
    for i, q in enumerate(queries):
        t = time.perf_counter()
        found[i] = index.search(q, 10)[1][0]
        times.append(1000 * (time.perf_counter() - t))
    return found, times


def measure(factory: str, ids: np.ndarray, base: np.ndarray, queries: np.ndarray, truth: Truth) -> tuple[str, VectorIndex]:
    """A table row for ``factory`` at the default knobs, and the index built for it."""
    start = time.perf_counter()
    index = VectorIndex.create(factory, base.shape[1])
    if not index.is_trained:
        index.train(base[:: max(1, len(base) // 200_000)])
    for lo in range(0, len(base), 100_000):
        index.add(ids[lo : lo + 100_000], base[lo : lo + 100_000])
    build = time.perf_counter() - start
    opts = IndexOptions()
    index.tune(opts.nprobe, opts.ef_search, opts.k_factor)
    memory = len(faiss.serialize_index(index.index))
    found, single = one_at_a_time(index, queries)
    t = time.perf_counter()
    index.search(queries, 10)
    batch_qps = len(queries) / (time.perf_counter() - t)
    row = (
        f"{factory} | {build:.1f} | {memory / 1e6:,.0f} | {np.percentile(single, 50):.3f} | "
        f"{np.percentile(single, 99):.3f} | {batch_qps:,.0f} | {recall_at_10(found, truth):.3f} |"
    )
    return row, index


def sweep(index: VectorIndex, queries: np.ndarray, truth: Truth) -> list[str]:
    """Recall@10 and latency of an IVF index as nprobe grows (the search-time knob)."""
    opts = IndexOptions()
    lines = ["| nprobe | p50 ms | p99 ms | Recall@10 |", "| ---: | ---: | ---: | ---: |"]
    for nprobe in (16, 32, 64, 128, 256):
        index.tune(nprobe, opts.ef_search, opts.k_factor)
        found, times = one_at_a_time(index, queries)
        lines.append(
            f"| {nprobe} | {np.percentile(times, 50):.3f} | {np.percentile(times, 99):.3f} | {recall_at_10(found, truth):.3f} |"
        )
    return lines


def table(name: str, ids: np.ndarray, base: np.ndarray, queries: np.ndarray, factories: list[str], swept: str | None) -> None:
    """One row per factory; then, for ``swept``, recall and latency by nprobe on the same index."""
    truth = ground_truth(ids, base, queries)
    by_nprobe: list[str] = []
    for factory in factories:
        row, index = measure(factory, ids, base, queries, truth)
        print(f"| {name} | {row}", flush=True)
        if factory == swept:
            by_nprobe = [f"\n{factory} on {name} vectors, by nprobe:", *sweep(index, queries, truth)]
        del index
    if by_nprobe:
        print("\n".join(by_nprobe), flush=True)


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 2,000 fixed random centres; ``seed`` draws different points around them."""
    centres = np.random.default_rng(0).normal(size=(2000, dim)).astype(np.float32)
    rng = np.random.default_rng(seed + 1)
    out = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        out[lo:hi] = centres[rng.integers(0, len(centres), hi - lo)] + 0.6 * rng.normal(size=(hi - lo, dim))
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def warm_search(store: Path, enc: object, titles: list[str], n: int) -> str:
    """Whole searches in one process (the default query model, ONNX Runtime on one thread), next
    to PyTorch encoding the same queries: bare ``model.encode`` and semsearch's torch pass. A
    session warmed up as a long-lived process warms one (``semsearch serve``: model, index and BM25
    postings in memory) answers dense and hybrid searches; a session without it answers hybrid
    searches with BM25 from SQLite's FTS5 (as a one-off command does)."""
    from semsearch.flows.query import encode_query

    with open(store / "semsearch.db", "rb") as f:  # a store in use has its pages in the OS cache
        while f.read(1 << 24):
            pass
    with semsearch.open(store) as warm, semsearch.open(store) as plain:
        warm.warm_up()
        warm.search(titles[0], 10)
        plain.search(titles[0], 10)  # loads the model and the index, as a session's first search does
        onnx = warm.encoder
        model = enc.model  # type: ignore[attr-defined]
        rows: dict[str, list[float]] = {
            "bare `model.encode([query])` (PyTorch, sentence vector only)": [],
            "semsearch's query pass on PyTorch (vector, token vectors, offsets)": [],
            "semsearch's query pass on ONNX Runtime, one thread (the default)": [],
            "whole `Session.search` (k=10), dense, warmed-up session": [],
            "whole `Session.search` (k=10), hybrid (the default), warmed-up session": [],
            "whole `Session.search` (k=10), hybrid, BM25 from FTS5 (no warm-up)": [],
        }
        steps = (
            lambda t: model.encode([t]),
            lambda t: encode_query(enc, t),  # type: ignore[arg-type]
            lambda t: encode_query(onnx, t),
            lambda t: warm.search(t, 10, mode="dense"),
            lambda t: warm.search(t, 10),
            lambda t: plain.search(t, 10),
        )
        for title in titles:
            for sink, run in zip(rows.values(), steps):
                start = time.perf_counter()
                run(title)
                sink.append(1000 * (time.perf_counter() - start))
    onnx_pass = list(rows.values())[2]
    lines = [
        (
            f"\nwhole warm search on {n:,} passages, {len(titles)} Reuters titles (encode the query, search the "
            "index, read the hits from SQLite, cache the query; store file in the OS cache):"
        ),
        "| step | p50 ms | p99 ms | p50 of all but the model pass |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {name} | {statistics.median(v):.1f} | {np.percentile(v, 99):.1f} | "
            + (f"{statistics.median(np.subtract(v, onnx_pass)):.1f} |" if name.startswith("whole") else "|")
            for name, v in rows.items()
        ),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True, help="a store with real passages (Reuters)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--synthetic", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--sweep", action="store_true", help="also print recall and latency by nprobe on the real vectors")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads")
    opts = IndexOptions()
    print(f"search knobs: nprobe {opts.nprobe}, efSearch {opts.ef_search}, k_factor {opts.k_factor} (the defaults)")
    print("| vectors | index | build s | memory MB | p50 ms | p99 ms | batch queries/s | Recall@10 |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")

    from semsearch.encoder.torch_backend import SentenceTransformerEncoder

    enc = SentenceTransformerEncoder("all-MiniLM-L6-v2", "cpu")
    titles = []
    with gzip.open(args.data / "reuters21578" / "docs.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            t = json.loads(line).get("title")
            if t:
                titles.append(t)
            if len(titles) == max(args.queries, 150):
                break
    queries = np.vstack([e.vector for e in enc.encode(titles[: args.queries])])
    with semsearch.open(args.store) as session:
        parts = list(session.store.documents.iter_vectors())
        ids = np.concatenate([p[0] for p in parts])
        base = np.vstack([p[1] for p in parts])
        n = len(ids)
        dim = base.shape[1]
        auto = resolve_factory("auto", max(n, 100_000), dim)
        nlist = auto[3:].split(",")[0]
        factories = ["Flat", auto, f"IVF{nlist},Flat", f"IVF{nlist},SQ8", "HNSW32"]
        table(f"{n:,} real", ids, base, queries, list(dict.fromkeys(factories)), auto if args.sweep else None)

    warm_line = warm_search(args.store, enc, titles[50:150], n)

    if not args.synthetic:
        print(warm_line)
        return
    synth = clustered(args.synthetic, base.shape[1])
    sq = clustered(args.queries, base.shape[1], seed=1)
    sids = np.arange(1, args.synthetic + 1, dtype=np.int64)
    auto = resolve_factory("auto", args.synthetic, dim)
    nlist = auto[3:].split(",")[0]
    # HNSW32 is left out at this size: its build takes many minutes on two cores
    factories = list(dict.fromkeys(["Flat", auto, f"IVF{nlist},SQ8"]))
    table(f"{args.synthetic:,} synthetic", sids, synth, sq, factories, auto if args.sweep else None)
    print(warm_line)


if __name__ == "__main__":
    main()
