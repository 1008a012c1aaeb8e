"""How small can the token store be while explanations stay exact and faithful?

Options: word pieces or words (one vector per word, the sum of its pieces), each through a token
codec (float16, SQ8, SQ4, PQ64), and words with the function words and punctuation of a passage
pooled into one "other words" vector. For each:

  bytes/passage  the token row (codes, token ids, offsets, piece counts) over the first 3,000
                 Reuters-21578 paragraphs (the issue's store) and 1,000 SciFact passages
  cos err        word-cosine error against float32 pieces: mean and 99th percentile of |Δ| over
                 every query-word × passage-word cell of the STS-B pairs (the "other" column left
                 out: it is not a word)
  sum err        the largest |Σ contribution − cosine of the stored sentence vectors|
  AOPC           deletion faithfulness as scripts/eval_faithfulness.py measures it: delete the
                 passage's top 1, 3, 5 words by contribution (computed from the stored vectors),
                 re-encode with the model, average the score drop (STS-B test pairs)
  explain ms     median time of the word-level decomposition of one pair

    .venv/bin/python scripts/bench_tokens.py [--pairs 200] [--reuters 3000] [--scifact 1000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from semsearch.core import codec as codecs  # noqa: E402
from semsearch.core.matrices import cosine_matrix, decompose, token_side  # noqa: E402
from semsearch.core.pooling import pool_words  # noqa: E402
from semsearch.core.types import TokenData  # noqa: E402
from semsearch.encoder.torch_backend import SentenceTransformerEncoder  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
from eval_faithfulness import delete_words, stsb_pairs  # noqa: E402

DATA = REPO.parent / "shared" / "data"
KS = (1, 3, 5)
# function words pooled by the "other words" option (a measurement only; not stored by semsearch)
FUNCTION_WORDS = set(
    "a an the and or but if of to in on at by for with from as is are was were be been being it its this that these those "
    "he she they we you i his her their our your my me him them us not no so than then there which who whom what when "
    "where how all any each some such can could will would shall should may might must do does did has have had".split()
)


@dataclass
class Option:
    name: str
    pool: str  # pieces, words or other
    codec: str


OPTIONS = [
    Option("pieces, float16 (today)", "pieces", "float16"),
    Option("pieces, SQ8", "pieces", "SQ8"),
    Option("words, float16", "words", "float16"),
    Option("words, SQ8", "words", "SQ8"),
    Option("words, SQ6", "words", "SQ6"),
    Option("words, SQ4", "words", "SQ4"),
    Option("words, PQ64", "words", "PQ64"),
    Option("words, RR384,SQ4", "words", "RR384,SQ4"),
    Option("words, OPQ96,PQ96", "words", "OPQ96,PQ96"),
    Option("words, PQ192x4", "words", "PQ192x4"),
    Option("words, RR384,PQ96", "words", "RR384,PQ96"),
    Option("words + other, float16", "other", "float16"),
    Option("words + other, SQ8", "other", "SQ8"),
    Option("words + other, SQ4", "other", "SQ4"),
]


def pool_other(tokens: TokenData, specials: dict[int, str]) -> tuple[TokenData, list[int], list[int]]:
    """Words, with function words and punctuation summed into one last row: the pooled tokens,
    the word indices (rows of ``pool_words``) kept apart, and those pooled."""
    words = pool_words(tokens, specials)
    side = token_side(words, specials, "word")
    keep, other = [], []
    for i, label in enumerate(side.labels):
        if not side.special[i] and (label.lower() in FUNCTION_WORDS or not any(c.isalnum() for c in label)):
            other.append(i)
        else:
            keep.append(i)
    if not other:
        return words, keep, other
    assert words.pieces is not None
    pooled = replace(
        words,
        vectors=np.vstack([words.vectors[i] for i in keep] + [words.vectors[other].sum(axis=0)]).astype(np.float32),
        token_ids=np.array([words.token_ids[i] for i in keep] + [-1], dtype=np.int32),
        offsets=np.array([words.offsets[i] for i in keep] + [[0, 0]], dtype=np.int32).reshape(-1, 2),
        pieces=np.array([words.pieces[i] for i in keep] + [int(words.pieces[other].sum())], dtype=np.int32),
    )
    return pooled, keep, other


def stored(tokens: TokenData, option: Option, codec: codecs.Codec, direction: np.ndarray, specials: dict[int, str]) -> tuple[TokenData, int, list[list[int]]]:
    """The rows as the option stores them, decoded again; the row's bytes; for "other", the word
    indices of each row."""
    groups: list[list[int]] = []
    if option.pool == "pieces":
        rows = tokens
    elif option.pool == "words":
        rows = pool_words(tokens, specials)
    else:
        rows, keep, other = pool_other(tokens, specials)
        groups = [[i] for i in keep] + ([other] if other else [])
    blob = codec.encode(rows.vectors)
    n = len(rows.vectors)
    size = len(blob) + 4 * n + 8 * n + (4 * n if rows.pieces is not None else 0)
    return replace(rows, vectors=codec.decode(blob, n, direction)), size, groups


def read_texts(reuters: int, scifact: int) -> list[str]:
    texts = []
    with gzip.open(DATA / "reuters21578" / "paragraphs.jsonl.gz", "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i == reuters:
                break
            texts.append(json.loads(line)["text"])
    with gzip.open(DATA / "scifact" / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i == scifact:
                break
            d = json.loads(line)
            texts.append(f"{d['title']} {d['text']}")
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=200, help="STS-B test pairs for errors and AOPC")
    parser.add_argument("--reuters", type=int, default=3000, help="Reuters paragraphs for bytes per passage")
    parser.add_argument("--scifact", type=int, default=1000, help="SciFact abstracts for bytes per passage")
    parser.add_argument("--only", nargs="+", help="options whose name contains one of these (the first, today's, always runs)")
    args = parser.parse_args()
    options = [o for i, o in enumerate(OPTIONS) if i == 0 or not args.only or any(w in o.name for w in args.only)]
    enc = SentenceTransformerEncoder("all-MiniLM-L6-v2", "cpu")
    specials = enc.special_tokens

    texts = read_texts(args.reuters, args.scifact)
    encoded = [e for i in range(0, len(texts), 64) for e in enc.encode(texts[i : i + 64])]
    corpora = {"Reuters": encoded[: args.reuters], "SciFact": encoded[args.reuters :]}
    pairs = stsb_pairs(DATA, args.pairs)
    pair_enc = [enc.encode([q, d]) for q, d in pairs]

    print(f"# bench_tokens: {args.reuters:,} Reuters paragraphs, {args.scifact:,} SciFact abstracts (truncated to 256 tokens), "
          f"{len(pairs)} STS-B test pairs\n")
    print("| option | Reuters B/passage | SciFact B/passage | vs today | word cos err mean | p99 | max sum err | AOPC | explain ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    today: dict[str, float] = {}
    for option in options:
        codec = codecs.get_codec(option.codec, enc.dim)
        if codec.needs_training:
            sample = []
            for e in corpora["Reuters"]:
                if option.pool == "pieces":
                    sample.append(e.tokens.vectors)
                elif option.pool == "words":
                    sample.append(pool_words(e.tokens, specials).vectors)
                else:
                    sample.append(pool_other(e.tokens, specials)[0].vectors)
            codec.train(sample)
        sizes = {name: statistics.mean(stored(e.tokens, option, codec, e.vector, specials)[1] for e in group) for name, group in corpora.items()}
        errors, sums, drops, times = [], [], {k: [] for k in KS}, []
        deletions, keys = [], []
        for (q, d), (_, d_text) in zip(pair_enc, pairs):
            rows, _, groups = stored(d.tokens, option, codec, d.vector, specials)
            t = time.perf_counter()
            if option.pool == "other":
                # the decomposition by hand: units are the content words and one "other" row
                qv, dv = q.tokens.vectors.astype(np.float64), rows.vectors.astype(np.float64)
                contribution = (qv @ dv.T) / (np.linalg.norm(qv.sum(0)) * np.linalg.norm(dv.sum(0)))
                score = float(contribution.sum())
                col = contribution.sum(axis=0)
            else:
                expl = decompose(q.tokens, rows, specials, "word", float(q.vector @ d.vector))
                score, col = expl.score, expl.contribution.astype(np.float64).sum(axis=0)
            times.append(1000 * (time.perf_counter() - t))
            sums.append(abs(score - float(q.vector @ d.vector)))
            # word cosines against float32 pieces
            exact = decompose(q.tokens, d.tokens, specials, "word")
            if option.pool == "other":
                _, content, _ = pool_other(d.tokens, specials)
                mq = np.zeros((len(exact.query.groups), len(q.tokens.vectors)))
                for gi, g in enumerate(exact.query.groups):
                    mq[gi, g] = 1
                got = cosine_matrix(mq @ q.tokens.vectors.astype(np.float64), rows.vectors[: len(content)].astype(np.float64))
                want = exact.cosine[:, content]
            else:
                got, want = expl.cosine, exact.cosine
            errors.extend(np.abs(got - want).ravel().tolist())
            # deletion: units ranked by contribution (special tokens never deleted)
            side = token_side(d.tokens, specials, "word")
            if option.pool == "other":
                units = [(col[u], [side.spans[w] for w in g]) for u, g in enumerate(groups) if not (len(g) == 1 and side.special[g[0]])]
            else:
                units = [(col[j], [side.spans[j]]) for j in range(len(side.labels)) if not side.special[j]]
            units.sort(key=lambda u: -u[0])
            for k in KS:
                if k < len(units):
                    deletions.append(delete_words(d_text, [s for _, spans in units[:k] for s in spans]))
                    keys.append((k, float(q.vector @ d.vector), q.vector))
        for i in range(0, len(deletions), 64):
            for (k, base, qv), e in zip(keys[i : i + 64], enc.encode(deletions[i : i + 64])):
                drops[k].append(base - float(qv @ e.vector))
        aopc = statistics.mean(statistics.mean(v) for v in drops.values())
        if not today:
            today = {"bytes": sizes["Reuters"]}
        errs = np.array(errors)
        print(f"| {option.name} | {sizes['Reuters']:,.0f} | {sizes['SciFact']:,.0f} | {sizes['Reuters'] / today['bytes']:.2f} | "
              f"{errs.mean():.4f} | {np.quantile(errs, 0.99):.4f} | {max(sums):.1e} | {aopc:.4f} | {statistics.median(times):.2f} |", flush=True)


if __name__ == "__main__":
    main()
