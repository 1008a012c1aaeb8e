"""Explaining a hit from stored token vectors vs re-encoding the passage (the seed article's way).

Ingests the committed ARC sample, runs real searches, then for each hit times
(a) `explain` from the store: read and decode the passage's token blob, build both matrices and
    the word-level summary against the cached query (what `semsearch explain --id` does), and
(b) the seed's way: run the model on the query and the passage to get their token vectors,
    then build the same matrices.
Prints the median of each and the ratio; then the median of a whole in-process search of k hits
without and with reasons (`--why 3`: each hit's top word pairs from stored tokens).

    .venv/bin/python scripts/bench_explain.py [--queries 20] [-k 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import semsearch  # noqa: E402
from semsearch.core.matrices import decompose, top_pairs  # noqa: E402
from semsearch.encoder.torch_backend import SentenceTransformerEncoder  # noqa: E402

SAMPLE = REPO / "samples" / "arc" / "arc-easy-train-1000.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("-k", type=int, default=5)
    args = parser.parse_args()
    enc = SentenceTransformerEncoder("all-MiniLM-L6-v2", "cpu")
    stems = [json.loads(line)["question"]["stem"] for line in SAMPLE.read_text().splitlines()]
    stored_ms, reencode_ms, plain_ms, why_ms = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        with semsearch.open(tmp, create=True, encoder=enc) as session:
            session.ingest([SAMPLE], text_fields=("question.stem",))
            specials = enc.special_tokens
            for text in stems[500 : 500 + args.queries]:
                result = session.search(text, args.k)
                for hit in result.hits:
                    start = time.perf_counter()
                    explained = session.explain(hit.passage_id, query_id=result.query_id)
                    top_pairs(explained.decomposition, 8)
                    stored_ms.append(1000 * (time.perf_counter() - start))

                    start = time.perf_counter()
                    q, d = enc.encode([text, hit.text])
                    top_pairs(decompose(q.tokens, d.tokens, specials, "word", hit.score), 8)
                    reencode_ms.append(1000 * (time.perf_counter() - start))
            for text in stems[600 : 600 + args.queries]:
                for why, sink in ((0, plain_ms), (3, why_ms)):
                    start = time.perf_counter()
                    session.search(text, args.k, why=why)
                    sink.append(1000 * (time.perf_counter() - start))
    a, b = statistics.median(stored_ms), statistics.median(reencode_ms)
    print(f"machine: {platform.machine()}, all-MiniLM-L6-v2 on CPU; {len(stored_ms)} hits of {args.queries} ARC queries")
    print("| explain a hit | median ms |")
    print("| --- | ---: |")
    print(f"| from stored token vectors (semsearch) | {a:.2f} |")
    print(f"| re-encoding query and passage with the model | {b:.2f} |")
    print(f"stored explanations are {b / a:.1f}x faster")
    p, w = statistics.median(plain_ms), statistics.median(why_ms)
    print(f"search of {args.k} hits in process: plain {p:.1f} ms, with --why 3 {w:.1f} ms (+{100 * (w - p) / p:.0f}%)")


if __name__ == "__main__":
    main()
