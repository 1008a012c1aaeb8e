"""The cache of recent queries' token vectors, so that ``explain`` needs no model for them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from ..core import codec as codecs
from ..core.batching import Grouped
from ..core.types import TokenData
from ..errors import NotFoundError, StoreError
from .sql import next_id

if TYPE_CHECKING:
    from . import Store

COLUMNS = "id, text, created, n, token_ids, offsets, vectors, vector"
GROUP = 64  # queries cached in one transaction, at most


@dataclass
class CachedQuery:
    """A query kept from an earlier search."""

    id: int
    text: str
    created: float
    vector: NDArray[np.float32]
    tokens: TokenData


class Queries:
    """The ``queries`` table of one store: the last ``keep`` queries."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._grouped = Grouped(self._save_all, GROUP, lambda: StoreError("the query was not cached: its write was interrupted"))

    def save(self, vector: NDArray[np.float32], tokens: TokenData, keep: int, wait: float | None = None) -> int:
        """Cache a query's tokens; with ``wait``, give up (``StoreBusy``) when another writer holds
        the store longer than that. Queries that threads cache at once are written together, in one
        transaction (a busy server: one commit instead of one per search)."""
        query = (vector, tokens, keep, wait)
        if self._store.db.conn.in_transaction:  # a caller inside its own write: no other thread's queries join it
            return self._save_all([query])[0]
        return self._grouped(query)

    def _save_all(self, queries: list[tuple[NDArray[np.float32], TokenData, int, float | None]]) -> list[int]:
        waits = [q[3] for q in queries]
        with self._store.writing(None if None in waits else max(w for w in waits if w is not None)):
            db = self._store.db
            first = next_id(db, "queries")
            rows = [
                {
                    "id": first + i,
                    "text": tokens.text,
                    "created": time.time(),
                    "n": len(tokens.token_ids),
                    "token_ids": codecs.ints_to_bytes(tokens.token_ids),
                    "offsets": codecs.ints_to_bytes(tokens.offsets),
                    "vectors": codecs.f32_to_bytes(tokens.vectors),
                    "vector": codecs.f32_to_bytes(vector),
                }
                for i, (vector, tokens, _, _) in enumerate(queries)
            ]
            db.table("queries").insert_all(rows)
            last = first + len(rows) - 1
            db.execute("DELETE FROM queries WHERE id <= ?", [last - max(q[2] for q in queries)])
        return list(range(first, last + 1))

    def get(self, query_id: int | None = None) -> CachedQuery:
        """The cached query ``query_id``, or the most recent one."""
        db, path = self._store.db, self._store.path
        if query_id is None:
            row = db.execute(f"SELECT {COLUMNS} FROM queries ORDER BY id DESC LIMIT 1").fetchone()
            if row is None:
                raise NotFoundError(
                    f"no search has been run on {path} yet; run 'semsearch search \"...\"' "
                    "first, or pass --query TEXT or --against ID"
                )
        else:
            in_range = 0 < query_id < 1 << 63
            row = db.execute(f"SELECT {COLUMNS} FROM queries WHERE id = ?", [query_id]).fetchone() if in_range else None
            if row is None:
                raise NotFoundError(
                    f"no cached query with id {query_id}; only the most recent queries are kept "
                    "(setting query_cache); pass --query TEXT instead"
                )
        qid, text, created, n, ids, offsets, vectors, vector = row
        dim = len(vector) // 4
        return CachedQuery(
            id=qid,
            text=text,
            created=created,
            vector=codecs.f32_from_bytes(vector),
            tokens=TokenData(
                text=text,
                vectors=codecs.f32_from_bytes(vectors).reshape(n, dim),
                token_ids=codecs.ints_from_bytes(ids),
                offsets=codecs.ints_from_bytes(offsets, 2),
            ),
        )
