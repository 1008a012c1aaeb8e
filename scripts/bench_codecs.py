"""Token codecs: bytes per token against the error they add to explanations, on real data.

Each FAISS codec is trained, as ingest trains it, on the first 32,768 token vectors of a corpus
(Reuters-21578 paragraphs), then used to store the token vectors of STS-B test sentences. For every
STS-B pair (sentence 1 as query, kept exact as the query cache keeps it; sentence 2 stored
through the codec) it measures how far the contribution matrix's sum falls from the index score,
and the change in every pair cosine against float32 token vectors.

    .venv/bin/python scripts/bench_codecs.py [--pairs 500] [--codecs float16 SQ8 SQ4 PQ96 PQ64 PQ48 PQ32]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from semsearch.core.codec import TRAIN_TOKENS, get_codec  # noqa: E402
from semsearch.core.matrices import contribution_matrix, cosine_matrix  # noqa: E402
from semsearch.encoder.torch_backend import SentenceTransformerEncoder  # noqa: E402

CODECS = ("float16", "SQ8", "SQ4", "PQ64", "PQ48")


def encode_all(enc: SentenceTransformerEncoder, texts: list[str]) -> list:
    return [e for i in range(0, len(texts), 64) for e in enc.encode(texts[i : i + 64])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--codecs", nargs="+", default=list(CODECS))
    args = parser.parse_args()
    enc = SentenceTransformerEncoder("all-MiniLM-L6-v2", "cpu")

    train_texts = []
    with gzip.open(args.data / "reuters21578" / "paragraphs.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            train_texts.append(json.loads(line)["text"])
            if len(train_texts) == 3000:
                break
    matrices = [e.tokens.vectors for e in encode_all(enc, train_texts)]
    sample_size = min(TRAIN_TOKENS, sum(len(m) for m in matrices))

    with (args.data / "stsb" / "sts-test.csv").open(encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[: args.pairs]
    queries = encode_all(enc, [r[5] for r in rows])
    docs = encode_all(enc, [r[6] for r in rows])
    exact_sum = [float(q.vector.astype(np.float64) @ d.vector.astype(np.float64)) for q, d in zip(queries, docs)]
    exact_cos = [cosine_matrix(q.tokens.vectors, d.tokens.vectors) for q, d in zip(queries, docs)]

    print(f"machine: {platform.machine()}; {sample_size:,} Reuters token vectors for training; {len(rows)} STS-B test pairs; dim {enc.dim}")
    print("(FAISS codecs also keep 4 bytes a passage; the score sum is compared with the index score)")
    print("| codec | bytes/token | vs float32 | train s | score-sum error max | mean | pair-cosine error max | mean |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in args.codecs:
        codec = get_codec(name, enc.dim)
        started = time.perf_counter()
        if codec.needs_training:
            codec.train(matrices)  # type: ignore[attr-defined]
        train_s = time.perf_counter() - started
        sum_err, cos_err_max, cos_err_mean = [], [], []
        for q, d, s, c in zip(queries, docs, exact_sum, exact_cos):
            n = len(d.tokens.vectors)
            stored = codec.decode(codec.encode(d.tokens.vectors), n, d.vector)
            sum_err.append(abs(contribution_matrix(q.tokens.vectors.astype(np.float64), stored.astype(np.float64)).sum() - s))
            diff = np.abs(cosine_matrix(q.tokens.vectors, stored) - c)
            cos_err_max.append(float(diff.max()))
            cos_err_mean.append(float(diff.mean()))
        bpt = codec.bytes_per_token()
        print(
            f"| {name} | {bpt:.0f} | {4 * enc.dim / bpt:.0f}x smaller | {train_s:.1f} | {max(sum_err):.2e} | {np.mean(sum_err):.2e} | "
            f"{max(cos_err_max):.2e} | {np.mean(cos_err_mean):.2e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
