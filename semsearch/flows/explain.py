"""Explain a stored passage against a query, from stored token vectors only.

The query comes from the cache of recent searches (no model at all), from new query text (one
short encode of the query), or from another stored passage (no model at all). Against query text,
the lexical side comes too: the query terms the passage holds and their parts of its BM25 score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..core.fusion import query_terms
from ..core.matrices import decompose
from ..core.types import TokenData
from ..encoder import Encoder
from ..results import Explanation, LexicalExplanation
from ..store import Store
from .query import check_id, encode_query
from .search import term_shares


def explain(
    store: Store,
    passage_id: int,
    *,
    query_text: str | None = None,
    encoder: Encoder | None = None,
    query_id: int | None = None,
    against: int | None = None,
    level: str = "word",
    given: Given | None = None,
) -> Explanation:
    """``encoder`` is needed only for ``query_text``, which is not cached: it never replaces the
    last search's query as the default of later explanations. ``given`` is a query found
    elsewhere (a sharded store's cache, or a passage of another shard)."""
    check_id(passage_id)
    if against is not None:
        check_id(against, "--against")
    codec = store.codec()
    passage = store.documents.passage(passage_id)
    doc = store.tokens.of(passage_id, codec)
    doc_vector = store.documents.vector(passage_id)
    cached_id: int | None = None
    rows = "query" if against is None else f"passage {against}"
    if given is not None:
        query, query_vector, label, cached_id, rows = given.tokens, given.vector, given.label, given.cached_id, given.rows
    elif against is not None:
        query = store.tokens.of(against, codec)
        query_vector = store.documents.vector(against)
        label = f"passage {against}"
    elif query_text is not None:
        if encoder is None:
            raise ValueError("an encoder is needed to explain against new query text")
        query_vector, query = encode_query(encoder, query_text)
        label = f"query: {query_text}"
    else:
        cached = store.queries.get(query_id)
        query, query_vector, cached_id = cached.tokens, cached.vector, cached.id
        label = f"query {cached.id}: {cached.text}"
    index_score = float(np.dot(query_vector.astype(np.float64), doc_vector.astype(np.float64)))
    decomposition = decompose(query, doc, store.meta.special_tokens, level, index_score, store.meta.pooling)
    lexical = None
    if rows == "query":  # the words side: the query terms in the passage, and their BM25 parts
        terms = store.lexical.informative(query_terms(query.text))
        parts = store.lexical.term_scores([passage_id], terms)[passage_id] if terms else []
        lexical = LexicalExplanation(float(sum(parts)), term_shares(parts, terms))
    return Explanation(passage, label, cached_id, decomposition, rows, lexical)


@dataclass(frozen=True)
class Given:
    """A query (or another passage) that the caller found: its tokens, sentence vector, label,
    cache id, and what the rows are ('query' or 'passage N')."""

    tokens: TokenData
    vector: NDArray[np.float32]
    label: str
    cached_id: int | None = None
    rows: str = "query"
