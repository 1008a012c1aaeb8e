"""What bfloat16 ingest costs: the ingest encoder (PyTorch, CPU) in float32 and in bfloat16
autocast on the same texts, side by side.

  parity     1 − cosine of each sentence vector and of each token vector against float32's
             (STS-B test sentences): mean and worst
  STS-B      Spearman × 100 of the pair cosines with the gold scores (all 1,379 test pairs)
  SciFact    nDCG@10 × 100 of a dense search (BEIR test queries; every abstract encoded in its
             first model window, queries in float32 as the query path encodes them, ONNX parity)
  speed      texts/s of the encoder alone on the STS-B sentences and the first 300 SciFact
             abstracts, median of ``--rounds`` alternating rounds

    .venv/bin/python scripts/bench_precision.py [--rounds 3]

bfloat16 is only fast where the CPU multiplies it in hardware (Intel AMX or AVX-512 BF16);
``precision: auto`` uses it only there.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from semsearch.encoder.torch_backend import SentenceTransformerEncoder, bf16_is_fast  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def stsb() -> tuple[list[tuple[str, str]], list[float]]:
    with (DATA / "stsb" / "sts-test.csv").open(encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(r[5], r[6]) for r in rows], [float(r[4]) for r in rows]


def scifact() -> tuple[dict[str, str], dict[str, str], dict[str, set[str]]]:
    root = DATA / "scifact"
    qrels: dict[str, set[str]] = defaultdict(set)
    for line in (root / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, did, _ = line.strip().split("\t")
        qrels[qid].add(did)
    queries = {q["_id"]: q["text"] for q in map(json.loads, (root / "queries.jsonl").read_text().splitlines()) if q["_id"] in qrels}
    corpus = {}
    with gzip.open(root / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            corpus[d["_id"]] = f"{d['title']} {d['text']}"
    return queries, corpus, qrels


def vectors(enc: SentenceTransformerEncoder, texts: list[str], batch: int = 32) -> tuple[np.ndarray, list[np.ndarray]]:
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    sentences: list[np.ndarray] = [np.zeros(0)] * len(texts)
    tokens: list[np.ndarray] = [np.zeros(0)] * len(texts)
    for start in range(0, len(order), batch):
        chunk = order[start : start + batch]
        for i, e in zip(chunk, enc.encode([texts[i] for i in chunk])):
            sentences[i], tokens[i] = e.vector, e.tokens.vectors
    return np.vstack(sentences), tokens


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def ndcg10(scores: np.ndarray, doc_ids: list[str], relevant: set[str]) -> float:
    top = np.argsort(-scores)[:10]
    gain = sum(1.0 / math.log2(r + 2) for r, i in enumerate(top) if doc_ids[i] in relevant)
    ideal = sum(1.0 / math.log2(r + 2) for r in range(min(10, len(relevant))))
    return gain / ideal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    fp32 = SentenceTransformerEncoder("all-MiniLM-L6-v2", "cpu", "fp32")
    bf16 = SentenceTransformerEncoder("all-MiniLM-L6-v2", "cpu", "bf16")
    pairs, gold = stsb()
    sentences = sorted({s for p in pairs for s in p})
    queries, corpus, qrels = scifact()
    doc_ids, doc_texts = list(corpus), list(corpus.values())
    query_vectors, _ = vectors(fp32, list(queries.values()))

    print(f"# bench_precision on {platform.machine()}, CPU bfloat16 in hardware: {bf16_is_fast(__import__('torch'))}; "
          f"{len(sentences):,} STS-B sentences, {len(pairs):,} pairs; SciFact {len(doc_ids):,} abstracts, {len(queries)} queries")
    found: dict[str, dict[str, float]] = {}
    exact_s, exact_t = vectors(fp32, sentences)
    speed: dict[str, dict[str, list[float]]] = {"fp32": defaultdict(list), "bf16": defaultdict(list)}
    for _ in range(args.rounds):
        for name, enc in (("fp32", fp32), ("bf16", bf16)):
            for label, texts in (("STS-B sentences", sentences), ("SciFact abstracts", doc_texts[:300])):
                start = time.perf_counter()
                vectors(enc, texts)
                speed[name][label].append(len(texts) / (time.perf_counter() - start))
    for name, enc in (("fp32", fp32), ("bf16", bf16)):
        sent, toks = vectors(enc, sentences)
        index = {s: i for i, s in enumerate(sentences)}
        cos = np.array([float(sent[index[a]] @ sent[index[b]]) for a, b in pairs])
        s_err = 1.0 - np.sum(sent * exact_s, axis=1)
        t_err = np.concatenate([1.0 - np.sum(t * e, axis=1) / (np.linalg.norm(t, axis=1) * np.linalg.norm(e, axis=1)) for t, e in zip(toks, exact_t)])
        docs, _ = vectors(enc, doc_texts)
        scores = query_vectors @ docs.T
        ndcg = statistics.mean(ndcg10(scores[q], doc_ids, qrels[qid]) for q, qid in enumerate(queries))
        found[name] = {
            "s_mean": float(s_err.mean()), "s_max": float(s_err.max()), "t_mean": float(t_err.mean()), "t_max": float(t_err.max()),
            "stsb": 100 * spearman(cos, np.array(gold)), "ndcg": 100 * ndcg,
            **{label: statistics.median(v) for label, v in speed[name].items()},
        }
    print("| precision | sentence 1−cos mean | worst | token 1−cos mean | worst | STS-B Spearman | SciFact nDCG@10 | STS-B sentences/s | SciFact abstracts/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in found.items():
        print(f"| {name} | {r['s_mean']:.1e} | {r['s_max']:.1e} | {r['t_mean']:.1e} | {r['t_max']:.1e} | {r['stsb']:.2f} | {r['ndcg']:.2f} "
              f"| {r['STS-B sentences']:,.1f} | {r['SciFact abstracts']:,.1f} |")
    print(f"\nspeed, bf16 over fp32: {found['bf16']['STS-B sentences'] / found['fp32']['STS-B sentences']:.2f}x (STS-B sentences), "
          f"{found['bf16']['SciFact abstracts'] / found['fp32']['SciFact abstracts']:.2f}x (SciFact abstracts)")


if __name__ == "__main__":
    main()
