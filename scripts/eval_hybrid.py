"""Dense, lexical and hybrid search measured on two datasets, to choose the defaults.

1. BEIR SciFact test (300 queries, 5,183 abstracts; title + text, split into passages as ingest
   does by default).
2. Reuters-21578 titles → stories: the first ``--reuters`` paragraphs of the corpus are the
   documents; each story with a title and a paragraph among them gives one query (its title),
   and its paragraphs are the relevant documents. Titles are short and full of names and codes,
   the case keyword search is made for; SciFact's claims are paraphrases.

For each: FTS5's tokeniser (unicode61 with and without the Porter stemmer, in an in-memory copy of
the passages' text), then ``Session.evaluate`` in dense, lexical and hybrid mode, with reciprocal
rank fusion and with the normalised score combination at several dense weights. Prints Markdown
tables (nDCG@10, MRR@10, Recall@100, MAP; ir-measures), then warm search latency per mode.

    .venv/bin/python scripts/eval_hybrid.py [--scifact-store S] [--reuters-store R]

Stores that do not exist are ingested first (SciFact takes ~10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sqlite3
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import semsearch  # noqa: E402
from semsearch.core.fusion import query_terms  # noqa: E402
from semsearch.flows.evaluate import read_judged  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
from bench_serve import reuters_rows  # noqa: E402

DATA = REPO.parent / "shared" / "data"
MEASURES = ("nDCG@10", "MRR@10", "Recall@100", "MAP")
TOKENIZERS = ("unicode61 remove_diacritics 2", "porter unicode61 remove_diacritics 2")


def scifact(path: Path) -> tuple[semsearch.Session, dict[str, str], dict[str, dict[str, int]]]:
    session = semsearch.open(path, create=True)
    if not (path / "semsearch.db").exists() or session.info().documents == 0:
        print(f"ingesting SciFact into {path} …", file=sys.stderr)
        session.ingest([DATA / "scifact" / "corpus.jsonl.gz"], text_fields=("title", "text"))
    queries, qrels = read_judged(DATA / "scifact" / "queries.jsonl", DATA / "scifact" / "qrels" / "test.tsv")
    return session, queries, qrels


def reuters(path: Path, paragraphs: int, limit: int = 300) -> tuple[semsearch.Session, dict[str, str], dict[str, dict[str, int]]]:
    rows = reuters_rows(0, paragraphs)
    session = semsearch.open(path, create=True)
    if not (path / "semsearch.db").exists() or session.info().documents < len(rows):
        source = path.parent / f"{path.name}.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"ingesting {len(rows):,} Reuters paragraphs into {path} …", file=sys.stderr)
        session.ingest([source])
    stories: dict[int, list[str]] = {}
    for r in rows:
        stories.setdefault(int(r["newid"]), []).append(str(r["id"]))
    titles = {}
    with gzip.open(DATA / "reuters21578" / "docs.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            if doc["newid"] in stories and (doc.get("title") or "").strip():
                titles[doc["newid"]] = doc["title"].strip()
    chosen = sorted(titles)[:: max(1, len(titles) // limit)][:limit]
    queries = {str(n): titles[n] for n in chosen}
    qrels = {str(n): {key: 1 for key in stories[n]} for n in chosen}
    return session, queries, qrels


def tokenizer_rows(session: semsearch.Session, queries: dict[str, str], qrels: dict[str, dict[str, int]]) -> list[str]:
    """BM25 alone with each tokeniser, over the same passage texts, in memory."""
    import ir_measures
    from ir_measures import AP, RR, R, nDCG

    store_db = sqlite3.connect(f"file:{session.path / 'semsearch.db'}?mode=ro", uri=True)  # read only, the passages' text
    texts = store_db.execute(
        "SELECT p.id, d.key, substr(d.text, p.char_start + 1, p.char_end - p.char_start) FROM passages p JOIN documents d ON d.id = p.document_id"
    ).fetchall()
    store_db.close()
    keys = {pid: key for pid, key, _ in texts}
    rows = []
    for tokenizer in TOKENIZERS:
        db = sqlite3.connect(":memory:")
        db.execute(f"CREATE VIRTUAL TABLE t USING fts5(text, tokenize = '{tokenizer}')")
        db.executemany("INSERT INTO t (rowid, text) VALUES (?, ?)", [(pid, text) for pid, _, text in texts])
        run: dict[str, dict[str, float]] = {}
        for qid, text in queries.items():
            terms = query_terms(text)
            found = db.execute(
                "SELECT rowid, -bm25(t) FROM t WHERE t MATCH ? ORDER BY rank LIMIT 4000",
                [" OR ".join('"' + w.replace('"', '""') + '"' for w in terms)],
            ).fetchall()
            best: dict[str, float] = {}
            for pid, score in found:
                best.setdefault(keys[pid], score)
            run[qid] = dict(list(best.items())[:1000])
        measures = [nDCG @ 10, RR @ 10, R @ 100, AP]
        values = ir_measures.calc_aggregate(measures, qrels, run)
        rows.append(f"| lexical, FTS5 `{tokenizer}` | " + " | ".join(f"{100 * values[m]:.2f}" for m in measures) + " |")
    return rows


def mode_rows(path: Path, queries: dict[str, str], qrels: dict[str, dict[str, int]], weights: list[float]) -> list[str]:
    runs: list[tuple[str, dict[str, object]]] = [("dense", {"search_mode": "dense"}), ("lexical (BM25)", {"search_mode": "lexical"})]
    runs.append(("hybrid, RRF (k = 60)", {"search_mode": "hybrid", "fusion": "rrf"}))
    runs += [(f"hybrid, score, dense weight {w:g}", {"search_mode": "hybrid", "fusion": "score", "hybrid_weight": w}) for w in weights]
    rows = []
    for label, settings in runs:
        with semsearch.open(path, **settings) as session:
            report = session.evaluate(queries, qrels, k=10)
        rows.append(f"| {label} | " + " | ".join(f"{100 * report.measures[m]:.2f}" for m in MEASURES) + " |")
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def latency_rows(path: Path, queries: list[str], rounds: int = 3) -> list[str]:
    """Warm searches (k = 10) per mode, interleaved; medians over ``rounds`` passes."""
    modes = ("dense", "lexical", "hybrid")
    with semsearch.open(path) as session:
        session.search("warm up", k=10)
        times: dict[str, list[float]] = {m: [] for m in modes}
        for _ in range(rounds):
            for q in queries:
                for m in modes:
                    t = time.perf_counter()
                    session.search(q, k=10, mode=m)
                    times[m].append(1000 * (time.perf_counter() - t))
    dense = statistics.median(times["dense"])
    rows = []
    for m in modes:
        p50, p99 = statistics.median(times[m]), statistics.quantiles(times[m], n=100)[98]
        rows.append(f"| {m} | {p50:.1f} | {p99:.1f} | {p50 / dense:.2f}x |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scifact-store", type=Path, default=Path("scifact-store"))
    parser.add_argument("--reuters-store", type=Path, default=Path("reuters10k-store"))
    parser.add_argument("--reuters", type=int, default=10_000, help="Reuters paragraphs in the second store")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6, 0.7])
    parser.add_argument("--only", choices=("scifact", "reuters"), help="one dataset")
    parser.add_argument("--no-quality", action="store_true", help="latency only")
    parser.add_argument("--no-latency", action="store_true", help="quality only")
    args = parser.parse_args()
    head = "| | " + " | ".join(MEASURES) + " |\n| --- | " + " | ".join("---:" for _ in MEASURES) + " |"
    datasets = {
        "scifact": ("BEIR SciFact test", lambda: scifact(args.scifact_store), args.scifact_store),
        "reuters": ("Reuters titles → stories", lambda: reuters(args.reuters_store, args.reuters), args.reuters_store),
    }
    for key, (name, load, path) in datasets.items():
        if args.only and key != args.only:
            continue
        session, queries, qrels = load()
        info = session.info()
        print(f"\n### {name}: {len(qrels)} judged queries, {info.documents:,} documents, {info.passages:,} passages\n")
        if not args.no_quality:
            print(head)
            for row in tokenizer_rows(session, queries, qrels):
                print(row, flush=True)
            for row in mode_rows(path, queries, qrels, args.weights):
                print(row, flush=True)
        if not args.no_latency:
            sets = {"the judged queries": list(queries.values())[:100]}
            if key == "reuters":  # longer queries too: the first 12 words of paragraphs not in the store
                sets["paragraph openings, 12 words"] = [" ".join(r["text"].split()[:12]) for r in reuters_rows(60_000, 100)]
            for label, texts in sets.items():
                print(f"\nwarm search, k = 10, interleaved, {label} (ms):\n\n| mode | p50 | p99 | vs dense |\n| --- | ---: | ---: | ---: |")
                for row in latency_rows(path, texts):
                    print(row, flush=True)
        session.close()


if __name__ == "__main__":
    main()
