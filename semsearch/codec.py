"""The one place where arrays become bytes and back (explicit little-endian dtypes).

A token codec turns a passage's (n, dim) float32 token matrix into one blob. ``float16`` is exact
enough for explanations (the score sum moves by ~1e-5); codecs are named in the store's meta.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .errors import ConfigError, StoreError

F32 = np.dtype("<f4")
F16 = np.dtype("<f2")
I32 = np.dtype("<i4")


def f32_to_bytes(vector: NDArray[np.float32]) -> bytes:
    return np.ascontiguousarray(vector, dtype=F32).tobytes()


def f32_from_bytes(blob: bytes) -> NDArray[np.float32]:
    return np.frombuffer(blob, dtype=F32).astype(np.float32)


def ints_to_bytes(values: NDArray[np.integer]) -> bytes:
    return np.ascontiguousarray(values, dtype=I32).tobytes()


def ints_from_bytes(blob: bytes, columns: int = 1) -> NDArray[np.int32]:
    values = np.frombuffer(blob, dtype=I32).astype(np.int32)
    return values.reshape(-1, columns) if columns > 1 else values


@dataclass(frozen=True)
class Float16Codec:
    """Half precision: 2 bytes a dimension, no training."""

    dim: int
    name: str = "float16"

    def bytes_per_token(self) -> float:
        return 2.0 * self.dim

    def encode(self, vectors: NDArray[np.float32]) -> bytes:
        return np.ascontiguousarray(vectors, dtype=F16).tobytes()

    def decode(self, blob: bytes, n: int) -> NDArray[np.float32]:
        if len(blob) != n * self.dim * 2:
            raise StoreError(
                f"token blob holds {len(blob)} bytes, expected {n * self.dim * 2} for {n} tokens; "
                "run 'semsearch check --repair'"
            )
        return np.frombuffer(blob, dtype=F16).astype(np.float32).reshape(n, self.dim)


Codec = Float16Codec
CODECS = ("float16",)


def get_codec(name: str, dim: int) -> Codec:
    if name == "float16":
        return Float16Codec(dim)
    raise ConfigError(f"unknown token codec {name!r}; choose one of {', '.join(CODECS)}")
