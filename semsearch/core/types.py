"""Records that several parts pass around: a text's tokens, a passage of a document, an encoding."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass
class TokenData:
    """A text's token vectors with their ids and character offsets into that text."""

    text: str
    vectors: NDArray[np.float32]
    token_ids: NDArray[np.int32]
    offsets: NDArray[np.int32]
    pieces: NDArray[np.int32] | None = None  # word rows: pieces summed into each (None: one piece a row)


@dataclass
class Encoded:
    """One text through the model: its unit sentence vector and its token vectors."""

    vector: NDArray[np.float32]
    tokens: TokenData


@dataclass(frozen=True)
class Span:
    """A passage of a document: characters [start, end) and its token count without specials."""

    start: int
    end: int
    n_tokens: int


@dataclass
class Passage:
    """A stored passage with the document it comes from."""

    id: int
    document_key: str
    ordinal: int
    char_start: int
    char_end: int
    text: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class NewPassage:
    """What ingest writes for one passage."""

    ordinal: int
    char_start: int
    char_end: int
    vector: NDArray[np.float32]
    token_ids: NDArray[np.int32]
    offsets: NDArray[np.int32]
    token_vectors: NDArray[np.float32]
    pieces: NDArray[np.int32] | None = None  # word-pooled rows: pieces per row
