"""A query's arguments checked before anything heavy loads, and its one encode (search, explain
and evaluate share them)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..core.types import TokenData
from ..encoder import Encoder
from ..errors import NotFoundError, QueryError


def check_k(k: int) -> None:
    if k < 1:
        raise QueryError(f"-k must be at least 1, not {k}")


def check_query(text: str) -> None:
    if not text.strip():
        raise QueryError("the query is empty; give some words to search for")


def encode_query(encoder: Encoder, text: str) -> tuple[NDArray[np.float32], TokenData]:
    check_query(text)
    encoded = encoder.encode([text])[0]
    return encoded.vector, encoded.tokens


MAX_ID = (1 << 63) - 1


def check_id(passage_id: int, what: str = "passage id") -> None:
    """Ids are positive 64-bit integers: anything else names no passage."""
    if not 0 < passage_id <= MAX_ID:
        raise NotFoundError(f"{what} {passage_id} names no passage; take an id from 'semsearch search'")
