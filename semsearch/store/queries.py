"""The cache of recent queries' token vectors, so that ``explain`` needs no model for them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from ..core import codec as codecs
from ..core.types import TokenData
from ..errors import NotFoundError
from .sql import next_id

if TYPE_CHECKING:
    from . import Store

COLUMNS = "id, text, created, n, token_ids, offsets, vectors, vector"


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

    def save(self, vector: NDArray[np.float32], tokens: TokenData, keep: int, wait: float | None = None) -> int:
        """Cache a query's tokens; with ``wait``, give up (``StoreBusy``) when another writer holds
        the store longer than that."""
        with self._store.writing(wait):
            db = self._store.db
            qid = next_id(db, "queries")
            db.table("queries").insert(
                {
                    "id": qid,
                    "text": tokens.text,
                    "created": time.time(),
                    "n": len(tokens.token_ids),
                    "token_ids": codecs.ints_to_bytes(tokens.token_ids),
                    "offsets": codecs.ints_to_bytes(tokens.offsets),
                    "vectors": codecs.f32_to_bytes(tokens.vectors),
                    "vector": codecs.f32_to_bytes(vector),
                }
            )
            db.execute("DELETE FROM queries WHERE id <= ?", [qid - keep])
        return qid

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
