"""Search: encode the query, ask the index, read the hits from the store, cache the query."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from ..core.matrices import decompose, top_pairs
from ..core.types import TokenData
from ..encoder import Encoder
from ..results import Hit, SearchResult
from ..store import Store, StoreBusy
from .indexing import IndexKeeper
from .query import check_id, check_k, encode_query

logger = logging.getLogger(__name__)
BRUTE_FORCE_LIMIT = 20_000  # filtered searches over fewer passages are scored exactly from SQLite


def ranked(
    store: Store, keeper: IndexKeeper, vector: NDArray[np.float32], k: int, where: Sequence[tuple[str, str]] = ()
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Top-k (scores, ids); with ``where``, only passages whose metadata match (still k if k match)."""
    index = keeper.current()
    k = max(1, min(k, index.ntotal))  # a huge -k asks for no more than there is
    if not where:
        scores, ids = index.search(vector, k)
        return scores[0], ids[0]
    allowed = store.documents.passage_ids_where(where)
    if len(allowed) > BRUTE_FORCE_LIMIT:
        scores, ids = index.search(vector, k, allowed)
        if int((ids[0] >= 0).sum()) >= min(k, len(allowed)):
            return scores[0], ids[0]
    found, vectors = store.documents.vectors_for(allowed)
    exact = vectors @ vector.astype(np.float32)
    order = np.argsort(-exact, kind="stable")[:k]
    return exact[order], found[order]


def hits(store: Store, scores: NDArray[np.float32], ids: NDArray[np.int64], k: int, exclude: int | None = None) -> list[Hit]:
    pairs = [(int(i), float(s)) for i, s in zip(ids, scores) if i >= 0 and i != exclude][:k]
    rows = store.documents.passages([i for i, _ in pairs])
    found: list[Hit] = []
    for pid, score in pairs:
        row = rows.get(pid)
        if row is None:  # deleted since the index was read
            continue
        found.append(Hit(len(found) + 1, pid, score, row.document_key, row.ordinal, row.char_start, row.char_end, row.text, row.meta))
    return found


def _found(
    store: Store, keeper: IndexKeeper, vector: NDArray[np.float32], k: int, where: Sequence[tuple[str, str]], exclude: int | None = None
) -> list[Hit]:
    """The hits; when the index names only passages the store does not hold (a foreign or tampered
    index file whose counts look right), it is rebuilt from the store and asked again."""
    wanted = k + (exclude is not None)
    scores, ids = ranked(store, keeper, vector, wanted, where)
    found = hits(store, scores, ids, k, exclude)
    if not found and any(i >= 0 and i != exclude for i in ids.tolist()):
        logger.warning("the index of %s names passages the store does not hold; rebuilding it", store.path)
        keeper.rebuild()
        scores, ids = ranked(store, keeper, vector, wanted, where)
        found = hits(store, scores, ids, k, exclude)
    return found


def search(
    store: Store,
    keeper: IndexKeeper,
    encoder: Encoder,
    text: str,
    k: int = 10,
    why: int = 0,
    cache: int = 100,
    where: Sequence[tuple[str, str]] = (),
) -> SearchResult:
    """The ``k`` passages closest to ``text``; with ``why`` > 0, each hit's top word pairs.

    ``where`` keeps passages whose document metadata has ``field == value`` for every pair.
    """
    check_k(k)
    vector, tokens = encode_query(encoder, text)
    found = _found(store, keeper, vector, k, where)
    query_id = _cache(store, vector, tokens, cache)
    if why:
        add_reasons(store, tokens, found, why)
    return SearchResult(text, query_id, found)


CACHE_WAIT = 0.5  # seconds a search waits to cache its query while another writer holds the store


def _cache(store: Store, vector: NDArray[np.float32], tokens: TokenData, keep: int) -> int | None:
    """Cache the query for explain, unless the store is read-only or busy with a long write: a
    search never waits on an ingest (its query id is then None)."""
    if store.read_only:
        return None
    try:
        return store.queries.save(vector, tokens, keep, wait=CACHE_WAIT)
    except StoreBusy:
        logger.info("the store is busy; the query was not cached for explain")
        return None


def add_reasons(store: Store, query: TokenData, found: list[Hit], n_pairs: int) -> None:
    codec, meta = store.codec(), store.meta
    for hit in found:
        doc = store.tokens.of(hit.passage_id, codec)
        hit.reasons = top_pairs(decompose(query, doc, meta.special_tokens, "word", hit.score, meta.pooling), n_pairs, merge=True)


def like(
    store: Store, keeper: IndexKeeper, passage_id: int, k: int = 10, where: Sequence[tuple[str, str]] = (), why: int = 0
) -> SearchResult:
    """Nearest neighbours of a stored passage (itself excluded), without the model."""
    check_k(k)
    check_id(passage_id)
    vector = store.documents.vector(passage_id)
    found = _found(store, keeper, vector, k, where, exclude=passage_id)
    if why:
        add_reasons(store, store.tokens.of(passage_id, store.codec()), found, why)
    return SearchResult(f"like:{passage_id}", None, found)
