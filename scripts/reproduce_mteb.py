"""Reproduce MTEB's published figures for all-MiniLM-L6-v2 through semsearch, and price its options.

1. STS-B test: Spearman x 100 of cosine vs gold (MTEB: 82.03).
2. BEIR SciFact test: ingest ``corpus.jsonl.gz`` as MTEB does (title, a space, text; one passage per
   document, truncated at the model window), then ``semsearch eval`` (MTEB: nDCG@10 = 64.51).
3. The same corpus with semsearch's passage splitting (a document scores as its best passage).
4. For each approximate index type: Recall@10 against exact search and the nDCG@10 it costs.

    .venv/bin/python scripts/reproduce_mteb.py [--data ../shared/data] [--work DIR]
"""

from __future__ import annotations

import argparse
import csv
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import semsearch  # noqa: E402
from semsearch.encoder.torch_backend import SentenceTransformerEncoder  # noqa: E402
from semsearch.flows.evaluate import read_qrels, read_queries, run_queries  # noqa: E402
from semsearch.index import INDEX_FILE, IndexOptions  # noqa: E402

FACTORIES = ("HNSW32", "IVF64,Flat", "IVF64,SQ8", "IVF64,PQ48", "IVF64,PQ48x4fs,RFlat")


def stsb(enc: SentenceTransformerEncoder, data: Path) -> float:
    from scipy.stats import spearmanr

    with (data / "stsb" / "sts-test.csv").open(encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    left = [r[5] for r in rows]
    right = [r[6] for r in rows]
    gold = [float(r[4]) for r in rows]

    def vectors(texts: list[str]) -> np.ndarray:
        return np.vstack([e.vector for i in range(0, len(texts), 64) for e in enc.encode(texts[i : i + 64])])

    cos = np.sum(vectors(left) * vectors(right), axis=1)
    return 100 * float(spearmanr(cos, gold).statistic)


def scifact_store(enc: SentenceTransformerEncoder, data: Path, path: Path, mode: str) -> tuple[semsearch.Session, float, int]:
    session = semsearch.open(path, create=True, encoder=enc, long_documents=mode)
    report = session.ingest([data / "scifact" / "corpus.jsonl.gz"], text_fields=("title", "text"))
    return session, report.seconds, report.passages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=None, help="where the stores go [default: a temporary folder]")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="semsearch-mteb-"))
    enc = SentenceTransformerEncoder("all-MiniLM-L6-v2", "cpu")
    lines = [f"machine: {platform.machine()}, Python {platform.python_version()}, all-MiniLM-L6-v2 on CPU; stores in {work}"]

    started = time.perf_counter()
    rho = stsb(enc, args.data)
    lines.append(f"STS-B test Spearman x100: {rho:.2f} (MTEB 82.03) in {time.perf_counter() - started:.0f} s")
    print(lines[-1], flush=True)

    queries = read_queries(args.data / "scifact" / "queries.jsonl")
    qrels = read_qrels(args.data / "scifact" / "qrels" / "test.tsv")
    rows = []
    stores = {}
    for mode in ("truncate", "split"):
        store, seconds, passages = scifact_store(enc, args.data, work / mode, mode)
        stores[mode] = store
        report = store.evaluate(queries, qrels, 10, 1000)
        m = report.measures
        cells = " | ".join(f"{100 * m[name]:.2f}" for name in ("nDCG@10", "MRR@10", "Recall@100", "MAP"))
        rows.append(f"| {mode} | {passages:,} | {cells} | {seconds:.0f} |")
        print(rows[-1], flush=True)
    lines += [
        "",
        "SciFact test (300 queries), exact Flat index; MTEB nDCG@10 = 64.51",
        "",
        "| long documents | passages | nDCG@10 | MRR@10 | Recall@100 | MAP | ingest s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
    ]

    store = stores["truncate"]
    judged = {q: queries[q] for q in qrels}
    exact = run_queries(store.store, store.keeper, enc, judged, 10)
    exact_ndcg = store.evaluate(queries, qrels, 10, 1000).measures["nDCG@10"]
    approx_rows = []
    for factory in FACTORIES:
        t = time.perf_counter()
        store.build_index(factory)
        build_s = time.perf_counter() - t
        size = (store.path / INDEX_FILE).stat().st_size
        run = run_queries(store.store, store.keeper, enc, judged, 10)
        recall = float(np.mean([len(set(run[q]) & set(exact[q])) / max(len(exact[q]), 1) for q in judged]))
        ndcg = store.evaluate(queries, qrels, 10, 1000).measures["nDCG@10"]
        approx_rows.append(
            f"| {factory} | {recall:.3f} | {100 * ndcg:.2f} | {100 * (ndcg - exact_ndcg):+.2f} | {size / 1e6:.2f} | {build_s:.2f} |"
        )
        print(approx_rows[-1], flush=True)
    store.build_index("Flat")
    lines += [
        "",
        f"Approximate indexes on the truncated SciFact store (nprobe {IndexOptions().nprobe}, efSearch "
        f"{IndexOptions().ef_search}, k_factor {IndexOptions().k_factor}); exact nDCG@10 {100 * exact_ndcg:.2f}",
        "",
        "| index | Recall@10 vs exact | nDCG@10 | change | index MB | build s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *approx_rows,
    ]
    for s in stores.values():
        s.close()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
