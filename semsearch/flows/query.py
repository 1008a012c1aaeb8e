"""A query's arguments checked before anything heavy loads, and its one encode (search, explain
and evaluate share them)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..core.types import TokenData
from ..encoder import Encoder
from ..errors import QueryError


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
