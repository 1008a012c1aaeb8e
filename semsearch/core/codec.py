"""The one place where arrays become bytes and back (explicit little-endian dtypes).

A token codec turns a passage's (n, dim) float32 token matrix into one blob:

- ``float16`` (default): 2 bytes a dimension, no training; moves the score sum by ~1e-5.
- any FAISS standalone codec by its factory string — ``SQ8`` (1 byte a dimension), ``SQ4``,
  ``PQ64`` (64 bytes a token)… — through ``index_factory`` + ``sa_encode``/``sa_decode``. These are
  trained once on a sample of token vectors; the trained codec is serialised into the store.

FAISS codecs store each token as its offset from the passage's mean token vector (a passage's
tokens share a large common component, so offsets quantise better), plus the mean's length (4
bytes a passage). On decoding, the offsets are re-centred and added to that length times the
passage's stored unit sentence vector. The decoded tokens' mean then points exactly along the
stored sentence vector, so the contribution matrix still sums to the score (up to float rounding):
quantisation blurs the individual cells, never the decomposition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, StoreError

F32 = np.dtype("<f4")
F16 = np.dtype("<f2")
I32 = np.dtype("<i4")
TRAIN_TOKENS = 32_768  # token vectors a trained codec learns from (PQ needs ≥ 9,984 for 256 centroids)


def f32_to_bytes(vector: NDArray[np.float32]) -> bytes:
    return np.ascontiguousarray(vector, dtype=F32).tobytes()


def f32_from_bytes(blob: bytes) -> NDArray[np.float32]:
    return np.frombuffer(blob, dtype=F32).astype(np.float32)


def ints_to_bytes(values: NDArray[np.integer]) -> bytes:
    return np.ascontiguousarray(values, dtype=I32).tobytes()


def ints_from_bytes(blob: bytes, columns: int = 1) -> NDArray[np.int32]:
    values = np.frombuffer(blob, dtype=I32).astype(np.int32)
    return values.reshape(-1, columns) if columns > 1 else values


class Codec(Protocol):
    """Token vectors ↔ one blob per passage."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def needs_training(self) -> bool: ...

    def train(self, matrices: list[NDArray[np.float32]]) -> None:
        """Learn the codec from passages' token matrices (codecs that need no training ignore it)."""

    def state(self) -> bytes:
        """The trained state to keep in the store (empty when there is none)."""
        ...

    def bytes_per_token(self) -> float: ...

    def encode(self, vectors: NDArray[np.float32]) -> bytes: ...

    def decode(self, blob: bytes, n: int, direction: NDArray[np.float32] | None = None) -> NDArray[np.float32]:
        """The (n, dim) token vectors; ``direction`` is the passage's unit sentence vector."""
        ...


def _check_size(blob: bytes, n: int, per_token: int, header: int = 0) -> None:
    if len(blob) != header + n * per_token:
        raise StoreError(
            f"token blob holds {len(blob)} bytes, expected {header + n * per_token} for {n} tokens; "
            "run 'semsearch check --repair'"
        )


@dataclass(frozen=True)
class Float16Codec:
    """Half precision: 2 bytes a dimension, no training."""

    dim: int
    name: str = "float16"
    needs_training: bool = False

    def train(self, matrices: list[NDArray[np.float32]]) -> None:
        """Nothing to learn."""

    def state(self) -> bytes:
        return b""

    def bytes_per_token(self) -> float:
        return 2.0 * self.dim

    def encode(self, vectors: NDArray[np.float32]) -> bytes:
        return np.ascontiguousarray(vectors, dtype=F16).tobytes()

    def decode(self, blob: bytes, n: int, direction: NDArray[np.float32] | None = None) -> NDArray[np.float32]:
        _check_size(blob, n, 2 * self.dim)
        return np.frombuffer(blob, dtype=F16).astype(np.float32).reshape(n, self.dim)


class FaissCodec:
    """A FAISS standalone codec (``SQ8``, ``SQ4``, ``PQ64``…), trained on token vectors."""

    def __init__(self, name: str, dim: int, index: Any | None = None) -> None:
        import faiss  # only stores that use a FAISS codec pay for the import

        self._faiss = faiss
        self.name = name
        self.dim = dim
        if index is None:
            try:
                index = faiss.index_factory(dim, name)
            except RuntimeError:
                raise ConfigError(
                    f"FAISS has no codec {name!r}; use float16 or a factory string such as SQ8, SQ4 or PQ64"
                ) from None
        self.index = index

    @property
    def needs_training(self) -> bool:
        return not self.index.is_trained

    def train(self, matrices: list[NDArray[np.float32]]) -> None:
        """Learn the codec from passages' token matrices (as offsets from each passage's mean)."""
        offsets = np.vstack([m - m.mean(axis=0) for m in matrices])[:TRAIN_TOKENS]
        self.index.train(np.ascontiguousarray(offsets, dtype=np.float32))

    def state(self) -> bytes:
        """The trained codec, as FAISS serialises it (stored in the store, never pickled)."""
        return bytes(self._faiss.serialize_index(self.index))

    @classmethod
    def from_state(cls, name: str, dim: int, state: bytes, limit: Any = None) -> FaissCodec:
        """The trained codec from its serialised state; ``limit(size)`` bounds the memory that
        reading it may take (a damaged or crafted state fails instead of allocating gigabytes)."""
        import contextlib

        import faiss

        try:
            with limit(len(state)) if limit is not None else contextlib.nullcontext():
                index = faiss.deserialize_index(np.frombuffer(state, dtype=np.uint8))
        except (RuntimeError, MemoryError) as exc:
            raise StoreError(f"the stored token codec {name!r} cannot be read ({str(exc).strip().splitlines()[-1]}); ingest again into a new --store") from None
        if index.d != dim:
            raise StoreError(f"the stored token codec {name!r} has {index.d} dimensions, not {dim}; ingest again into a new --store")
        return cls(name, dim, index)

    def bytes_per_token(self) -> float:
        return float(self.index.sa_code_size())

    def encode(self, vectors: NDArray[np.float32]) -> bytes:
        if self.needs_training:
            raise StoreError(f"token codec {self.name} is not trained yet")
        mean = vectors.mean(axis=0)
        codes = self.index.sa_encode(np.ascontiguousarray(vectors - mean, dtype=np.float32))
        return f32_to_bytes(np.array([np.linalg.norm(mean)])) + bytes(codes.tobytes())

    def decode(self, blob: bytes, n: int, direction: NDArray[np.float32] | None = None) -> NDArray[np.float32]:
        size = int(self.index.sa_code_size())
        _check_size(blob, n, size, header=4)
        length = float(np.frombuffer(blob[:4], dtype=F32)[0])
        codes = np.frombuffer(blob[4:], dtype=np.uint8).reshape(n, size)
        offsets = np.asarray(self.index.sa_decode(codes), dtype=np.float32)
        offsets -= offsets.mean(axis=0)
        if direction is None:
            return offsets
        return offsets + np.float32(length) * direction.astype(np.float32)


def get_codec(name: str, dim: int, state: bytes | None = None, limit: Any = None) -> Codec:
    """The codec called ``name``; a trained FAISS codec is restored from ``state`` (within the
    memory bound ``limit`` gives, if any)."""
    if name == "float16":
        return Float16Codec(dim)
    if state is not None:
        return FaissCodec.from_state(name, dim, state, limit)
    return FaissCodec(name, dim)
