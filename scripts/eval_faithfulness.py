"""Does the explanation point at what really drives the score? A deletion test on real pairs.

For each (query, document) pair, rank the document's words by

  contribution   column sums of the word-level contribution matrix (stored token vectors)
  impact         the score lost when a word's stored token vectors leave the passage mean
                 (explain's "impact": a leave-one-out with no model run)
  cosine         each word's best cosine with a query word (the seed article's picture)
  occlusion      leave-one-word-out: one model run per word, as txtai does
  random         a seeded shuffle

then delete the k top-ranked words (k = 1, 3, 5), re-encode the document with the model and record
the score drop. Reports the mean drop per method and k, AOPC (the mean drop over k), the time
each method takes to rank one document's words, and a PNG of the curves.

Data: STS-B test pairs (sentence 1 as query, sentence 2 as document) and BEIR SciFact test queries
with their top hit among the documents relevant to the chosen queries plus the first
``--scifact-pool`` corpus documents (title, a space, text; truncated to the model window).

    .venv/bin/python scripts/eval_faithfulness.py [--stsb 200] [--scifact 30] [--png faithfulness.png]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from semsearch.core.matrices import decompose, token_side  # noqa: E402
from semsearch.encoder.torch_backend import SentenceTransformerEncoder  # noqa: E402

KS = (1, 3, 5)
METHODS = ("contribution", "impact", "cosine", "occlusion", "random")


def stsb_pairs(data: Path, limit: int) -> list[tuple[str, str]]:
    with (data / "stsb" / "sts-test.csv").open(encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(r[5], r[6]) for r in rows[:limit]]


def scifact_pairs(enc: SentenceTransformerEncoder, data: Path, limit: int, pool: int) -> list[tuple[str, str]]:
    root = data / "scifact"
    qrels: dict[str, set[str]] = defaultdict(set)
    for line in (root / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, did, _ = line.strip().split("\t")
        qrels[qid].add(did)
    queries = {}
    for line in (root / "queries.jsonl").read_text().splitlines():
        q = json.loads(line)
        if q["_id"] in qrels:
            queries[q["_id"]] = q["text"]
    chosen = list(queries)[:limit]
    wanted = set().union(*(qrels[q] for q in chosen))
    docs = []
    with gzip.open(root / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            d = json.loads(line)
            if i < pool or d["_id"] in wanted:
                docs.append(f"{d['title']} {d['text']}".strip())
    spans = enc.split(docs, 0, truncate=True)
    docs = [t[s[0].start : s[0].end] for t, s in zip(docs, spans)]
    doc_vecs = np.vstack([e.vector for i in range(0, len(docs), 64) for e in enc.encode(docs[i : i + 64])])
    q_vecs = np.vstack([e.vector for e in enc.encode([queries[q] for q in chosen])])
    top = np.argmax(q_vecs @ doc_vecs.T, axis=1)
    print(f"scifact: {len(chosen)} test queries, top hit among {len(docs)} documents", file=sys.stderr)
    return [(queries[q], docs[t]) for q, t in zip(chosen, top)]


def delete_words(text: str, spans: list[tuple[int, int]]) -> str:
    out, at = [], 0
    for a, b in sorted(spans):
        out.append(text[at:a])
        at = b
    out.append(text[at:])
    return " ".join("".join(out).split())


def encode_scores(enc: SentenceTransformerEncoder, query_vec: np.ndarray, texts: list[str]) -> np.ndarray:
    scores = []
    for i in range(0, len(texts), 32):
        scores.extend(float(query_vec @ e.vector) for e in enc.encode(texts[i : i + 32]))
    return np.array(scores)


def run_pairs(enc: SentenceTransformerEncoder, pairs: list[tuple[str, str]], seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    drops: dict[str, dict[int, list[float]]] = {m: defaultdict(list) for m in METHODS}
    times: dict[str, list[float]] = defaultdict(list)
    specials = enc.special_tokens
    for query_text, doc_text in pairs:
        q, d = enc.encode([query_text, doc_text])
        base = float(q.vector @ d.vector)
        side = token_side(d.tokens, specials, "word")
        words = [i for i in range(len(side.labels)) if not side.special[i]]
        if len(words) < 2:
            continue
        rankings: dict[str, list[int]] = {}

        t = time.perf_counter()
        expl = decompose(q.tokens, d.tokens, specials, "word", base)
        col = expl.contribution.astype(np.float64).sum(axis=0)
        rankings["contribution"] = sorted(words, key=lambda j: -col[j])
        times["contribution"].append(time.perf_counter() - t)

        t = time.perf_counter()
        impact = decompose(q.tokens, d.tokens, specials, "word", base).impact
        rankings["impact"] = sorted(words, key=lambda j: -impact[j])
        times["impact"].append(time.perf_counter() - t)

        t = time.perf_counter()
        expl = decompose(q.tokens, d.tokens, specials, "word", base)
        qrows = ~expl.query.special
        best = expl.cosine[qrows].max(axis=0) if qrows.any() else expl.cosine.max(axis=0)
        rankings["cosine"] = sorted(words, key=lambda j: -best[j])
        times["cosine"].append(time.perf_counter() - t)

        t = time.perf_counter()
        variants = [delete_words(doc_text, [side.spans[j]]) for j in words]
        occluded = base - encode_scores(enc, q.vector, variants)
        order = np.argsort(-occluded, kind="stable")
        rankings["occlusion"] = [words[i] for i in order]
        times["occlusion"].append(time.perf_counter() - t)

        rankings["random"] = list(rng.permutation(words))

        todo, keys = [], []
        for method, ranked in rankings.items():
            for k in KS:
                if k < len(words):
                    todo.append(delete_words(doc_text, [side.spans[j] for j in ranked[:k]]))
                    keys.append((method, k))
        for (method, k), score in zip(keys, encode_scores(enc, q.vector, todo)):
            drops[method][k].append(base - score)
    return drops, times


def report(name: str, drops: dict, times: dict) -> list[str]:
    n = len(drops["random"][1])
    lines = [f"\n{name}: {n} pairs; mean score drop after deleting the top-k document words", ""]
    lines.append(f"| method | {' | '.join(f'k={k}' for k in KS)} | AOPC | ms to rank one document |")
    lines.append("| --- | " + " | ".join("---:" for _ in KS) + " | ---: | ---: |")
    for method in METHODS:
        means = [float(np.mean(drops[method][k])) if drops[method][k] else float("nan") for k in KS]
        aopc = float(np.nanmean(means))
        ms = 1000 * statistics.median(times[method]) if method in times else 0.0
        lines.append(f"| {method} | {' | '.join(f'{m:.4f}' for m in means)} | {aopc:.4f} | {ms:.2f} |")
    return lines


def plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, (name, drops) in zip(axes[0], results.items()):
        for method in METHODS:
            ax.plot(KS, [np.mean(drops[method][k]) for k in KS], marker="o", label=method)
        ax.set_title(name)
        ax.set_xlabel("document words deleted (k)")
        ax.set_ylabel("mean score drop")
        ax.set_xticks(KS)
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--stsb", type=int, default=200, help="STS-B test pairs")
    parser.add_argument("--scifact", type=int, default=30, help="SciFact test queries")
    parser.add_argument("--scifact-pool", type=int, default=1000, help="corpus documents searched besides the relevant ones")
    parser.add_argument("--png", type=Path, default=Path("faithfulness.png"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    enc = SentenceTransformerEncoder("all-MiniLM-L6-v2", "cpu")
    results, lines = {}, [f"machine: {platform.machine()}, Python {platform.python_version()}, all-MiniLM-L6-v2 on CPU"]
    if args.stsb:
        drops, times = run_pairs(enc, stsb_pairs(args.data, args.stsb), args.seed)
        results["STS-B test"] = drops
        lines += report("STS-B test", drops, times)
    if args.scifact:
        drops, times = run_pairs(enc, scifact_pairs(enc, args.data, args.scifact, args.scifact_pool), args.seed)
        results["SciFact test (top hit)"] = drops
        lines += report("SciFact test queries, top hit", drops, times)
    plot(results, args.png)
    lines.append(f"\nplot: {args.png}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
