"""Search: encode the query, ask the index, read the hits from the store, cache the query."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .encoder import Encoder
from .errors import QueryError
from .explain import Pair, explain, top_pairs
from .index import VectorIndex
from .indexing import IndexOptions, open_index
from .ingest import check_model
from .store import Store, TokenData


@dataclass
class Hit:
    """One ranked passage."""

    rank: int
    passage_id: int
    score: float
    document_key: str
    ordinal: int
    char_start: int
    char_end: int
    text: str
    meta: dict[str, object]
    reasons: list[Pair] = field(default_factory=list)


@dataclass
class SearchResult:
    query: str
    query_id: int | None
    hits: list[Hit]


def special_tokens(store: Store) -> dict[int, str]:
    return {int(k): v for k, v in json.loads(store.meta("special_tokens") or "{}").items()}


BRUTE_FORCE_LIMIT = 20_000  # filtered searches over fewer passages are scored exactly from SQLite


def _ranked(
    store: Store,
    index: VectorIndex,
    vector: np.ndarray,
    k: int,
    where: Sequence[tuple[str, str]] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids); with ``where``, only passages whose metadata match (still k if k match)."""
    if not where:
        scores, ids = index.search(vector, k)
        return scores[0], ids[0]
    allowed = store.passage_ids_where(where)
    if len(allowed) > BRUTE_FORCE_LIMIT:
        scores, ids = index.search(vector, k, allowed)
        if int((ids[0] >= 0).sum()) >= min(k, len(allowed)):
            return scores[0], ids[0]
    found, vectors = store.vectors_for(allowed)
    scores = vectors @ vector.astype(np.float32)
    order = np.argsort(-scores, kind="stable")[:k]
    return scores[order], found[order]


def _hits(store: Store, scores: np.ndarray, ids: np.ndarray, k: int, exclude: int | None = None) -> list[Hit]:
    pairs = [(int(i), float(s)) for i, s in zip(ids, scores) if i >= 0 and i != exclude][:k]
    rows = store.passages([i for i, _ in pairs])
    hits = []
    for pid, score in pairs:
        row = rows.get(pid)
        if row is None:  # deleted since the index was read
            continue
        hits.append(
            Hit(len(hits) + 1, pid, score, row.document_key, row.ordinal, row.char_start, row.char_end, row.text, row.meta)
        )
    return hits


def encode_query(encoder: Encoder, text: str) -> tuple[np.ndarray, TokenData]:
    if not text.strip():
        raise QueryError("the query is empty; give some words to search for")
    encoded = encoder.encode([text])[0]
    return encoded.vector, encoded.tokens


def search(
    store: Store,
    encoder: Encoder,
    text: str,
    k: int = 10,
    why: int = 0,
    cache: int = 100,
    options: IndexOptions = IndexOptions(),
    where: Sequence[tuple[str, str]] = (),
) -> SearchResult:
    """The ``k`` passages closest to ``text``; with ``why`` > 0, each hit's top word pairs.

    ``where`` keeps passages whose document metadata has ``field == value`` for every pair.
    """
    if k < 1:
        raise QueryError(f"-k must be at least 1, not {k}")
    check_model(store, encoder)
    vector, tokens = encode_query(encoder, text)
    index = open_index(store, options=options)
    scores, ids = _ranked(store, index, vector, k, where)
    hits = _hits(store, scores, ids, k)
    query_id = store.save_query(vector, tokens, cache)
    if why:
        add_reasons(store, tokens, hits, why)
    return SearchResult(text, query_id, hits)


def add_reasons(store: Store, query: TokenData, hits: list[Hit], n_pairs: int) -> None:
    codec, specials, pooling = store.codec(), special_tokens(store), store.meta("pooling") or "mean"
    for hit in hits:
        doc = store.passage_tokens(hit.passage_id, codec)
        expl = explain(query, doc, specials, "word", hit.score, pooling)
        hit.reasons = top_pairs(expl, n_pairs)


def search_like(
    store: Store,
    passage_id: int,
    k: int = 10,
    options: IndexOptions = IndexOptions(),
    where: Sequence[tuple[str, str]] = (),
) -> SearchResult:
    """Nearest neighbours of a stored passage (itself excluded), without the model."""
    if k < 1:
        raise QueryError(f"-k must be at least 1, not {k}")
    vector = store.passage_vector(passage_id)
    index = open_index(store, options=options)
    scores, ids = _ranked(store, index, vector, k + 1, where)
    return SearchResult(f"like:{passage_id}", None, _hits(store, scores, ids, k, exclude=passage_id))
