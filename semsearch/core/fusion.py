"""Two ranked lists made one: reciprocal rank fusion and a normalised score combination.

Pure functions over (id, score) lists, best first. Both are measured on SciFact and Reuters by
``scripts/eval_hybrid.py``; the search's ``fusion`` setting chooses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

RRF_K = 60  # the constant of Cormack, Clarke and Büttcher (SIGIR 2009)
MAX_TERMS = 64  # query terms given to the lexical index (a long query or a passage for --like)
WORD = re.compile(r"\w+", re.UNICODE)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def query_terms(text: str, limit: int = MAX_TERMS) -> list[str]:
    """The distinct words of ``text``, lower-cased, in order; FTS5's tokeniser stems them."""
    seen: dict[str, None] = {}
    for match in WORD.finditer(text.lower()):
        seen.setdefault(match.group(), None)
        if len(seen) == limit:
            break
    return list(seen)


@dataclass
class Fused:
    """One passage of the fused list: its fused score, and where each retriever ranked it."""

    id: int
    score: float
    ranks: dict[str, int]


def rrf(lists: Mapping[str, Sequence[tuple[int, float]]], k: int = RRF_K) -> list[Fused]:
    """Reciprocal rank fusion: each list adds 1 / (k + rank) for the passages it ranks."""
    fused: dict[int, Fused] = {}
    for name, ranked in lists.items():
        for rank, (pid, _) in enumerate(ranked, start=1):
            item = fused.setdefault(pid, Fused(pid, 0.0, {}))
            item.score += 1.0 / (k + rank)
            item.ranks[name] = rank
    return sorted(fused.values(), key=lambda f: (-f.score, f.id))


def combine(lists: Mapping[str, Sequence[tuple[int, float]]], weights: Mapping[str, float]) -> list[Fused]:
    """A weighted sum of each retriever's score, min-max normalised over the list it returned.

    A passage missing from a retriever's list scores 0 on that side: its score there is at most
    the list's lowest (the list is that retriever's top), which normalises to 0.
    """
    fused: dict[int, Fused] = {}
    for name, ranked in lists.items():
        if not ranked:
            continue
        values = [s for _, s in ranked]
        low, high, weight = min(values), max(values), weights[name]
        for rank, (pid, score) in enumerate(ranked, start=1):
            item = fused.get(pid)
            if item is None:
                item = fused[pid] = Fused(pid, 0.0, {})
            item.ranks[name] = rank
            # one hit, or all equal: each is that retriever's best
            item.score += weight * ((score - low) / (high - low) if high > low else 1.0)
    return sorted(fused.values(), key=lambda f: (-f.score, f.id))


def sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (split after . ! ? and white space)."""
    spans, start = [], 0
    for match in SENTENCE_END.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans or [(0, len(text))]
