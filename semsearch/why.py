"""Explain a stored passage against a query, from stored token vectors only.

The query comes from the cache of recent searches (no model at all), from ``--query`` text (one
short encode of the query), or from another stored passage (no model at all).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .encoder import Encoder
from .explain import Explanation, explain
from .search import encode_query, special_tokens
from .store import PassageRow, Store


@dataclass
class ExplainedHit:
    """An explanation with what it explains."""

    passage: PassageRow
    query_label: str
    explanation: Explanation


def explain_passage(
    store: Store,
    passage_id: int,
    *,
    query_text: str | None = None,
    encoder: Encoder | None = None,
    query_id: int | None = None,
    against: int | None = None,
    level: str = "word",
    cache: int = 100,
) -> ExplainedHit:
    codec = store.codec()
    passage = store.passage(passage_id)
    doc = store.passage_tokens(passage_id, codec)
    doc_vector = store.passage_vector(passage_id)
    if against is not None:
        query = store.passage_tokens(against, codec)
        query_vector = store.passage_vector(against)
        label = f"passage {against}"
    elif query_text is not None:
        if encoder is None:
            raise ValueError("an encoder is needed to explain against new query text")
        query_vector, query = encode_query(encoder, query_text)
        qid = store.save_query(query_vector, query, cache)
        label = f"query {qid}: {query_text}"
    else:
        cached = store.cached_query(query_id)
        query, query_vector = cached.tokens, cached.vector
        label = f"query {cached.id}: {cached.text}"
    index_score = float(np.dot(query_vector.astype(np.float64), doc_vector.astype(np.float64)))
    expl = explain(query, doc, special_tokens(store), level, index_score, store.meta("pooling") or "mean")
    return ExplainedHit(passage, label, expl)
