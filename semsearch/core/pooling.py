"""Word pooling: one stored vector per word instead of one per word piece, losing nothing the
word-level view shows.

A word's row is the *sum* of its pieces' vectors, kept with its piece count. Since

    cos(q, d) = Σᵢⱼ Qᵢ·Dⱼ / (|ΣQ| · |ΣD|)

over any rows whose sum is the pooled total, a word's contribution (the sum of its pieces'), a
word's cosine (the direction of its pieces' mean), the score and the leave-one-word-out impact are
the same from word rows as from piece rows. Only the token-level view (``--tokens``) needs pieces.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .matrices import token_side
from .types import TokenData

POOLS = ("pieces", "words")


def pool_words(tokens: TokenData, special_tokens: dict[int, str]) -> TokenData:
    """``tokens`` with the pieces of each word summed into one row (special tokens stay rows of
    their own); ``pieces`` counts the pieces of each row."""
    if tokens.pieces is not None:
        return tokens  # pooled already
    side = token_side(tokens, special_tokens, "word")
    starts = [g[0] for g in side.groups]  # a word's pieces are consecutive rows
    vectors = np.add.reduceat(tokens.vectors.astype(np.float64), starts, axis=0).astype(np.float32)
    return replace(
        tokens,
        vectors=vectors,
        token_ids=tokens.token_ids[starts].astype(np.int32),
        offsets=np.array(side.spans, dtype=np.int32).reshape(-1, 2),
        pieces=np.array([len(g) for g in side.groups], dtype=np.int32),
    )
