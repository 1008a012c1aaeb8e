"""Which FAISS index a store gets, its search-time knobs, and building one from vector batches."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from .vectors import VectorIndex

AUTO_FLAT_LIMIT = 100_000  # exact search stays fast (~6 ms a query) below this many passages
TRAIN_SAMPLE = 100_000  # vectors an IVF or PQ index is trained on

Batches = Callable[[], Iterator[tuple[NDArray[np.int64], NDArray[np.float32]]]]


def resolve_factory(factory: str, count: int, dim: int) -> str:
    """The FAISS factory for ``count`` vectors of ``dim`` dimensions; ``auto`` picks by size.

    Flat (exact) below 100k passages. From there IVF with about 4·√N lists (rounded to a power of
    two, so the choice changes rarely) holding 4-bit fast-scan PQ codes (dim/4 half-bytes), whose
    best ``k_factor``·k candidates are re-scored from float16 copies of the vectors: on 105k real
    Reuters vectors as accurate as IVF,Flat and five times faster (scripts/bench_search.py).
    """
    if factory != "auto":
        return factory
    if count < AUTO_FLAT_LIMIT:
        return "Flat"
    nlist = 2 ** round(math.log2(4 * math.sqrt(count)))
    if dim % 4:
        return f"IVF{nlist},Flat"
    return f"IVF{nlist},PQ{dim // 4}x4fs,Refine(SQfp16)"


@dataclass(frozen=True)
class IndexOptions:
    """Search-time settings of the index."""

    nprobe: int = 128  # Recall@10 0.95 on 105k real Reuters vectors with 1,024 lists (0.80 at 16)
    ef_search: int = 64
    mmap: bool = False
    k_factor: int = 32


def build(factory: str, dim: int, count: int, batches: Batches) -> VectorIndex:
    """A new index of every vector that ``batches()`` yields (trained first when the type needs it).

    ``batches`` is called once to draw a training sample of about ``TRAIN_SAMPLE`` vectors, when
    the type needs training, and once more to add every vector.
    """
    check_size(factory, count)
    index = VectorIndex.create(factory, dim)
    try:
        if not index.is_trained:
            step = max(1, count // TRAIN_SAMPLE)
            sample = [v[::step] for _, v in batches()]
            if not sample:
                return index
            index.train(np.vstack(sample))
        for ids, vectors in batches():
            index.add(ids, vectors)
    except RuntimeError as exc:
        raise ConfigError(
            f"FAISS cannot build {factory!r} over {count:,} vectors ({str(exc).strip().splitlines()[-1]}); "
            "choose another --factory, such as Flat or HNSW32"
        ) from None
    return index


def check_size(factory: str, count: int) -> None:
    """Refuse, before any work, what FAISS would fail on or abort the process for: an HNSW graph
    with fewer than 2 links, or an IVF index with no lists or more lists than vectors to train."""
    links = re.search(r"HNSW(\d+)", factory)
    if links is not None and not 2 <= int(links.group(1)) <= 512:
        raise ConfigError(f"{factory!r} asks for {links.group(1)} links per HNSW node; give 2 to 512, e.g. HNSW32")
    lists = re.search(r"IVF(\d+)", factory)
    if lists is None:
        return
    nlist = int(lists.group(1))
    if nlist < 1:
        raise ConfigError(f"{factory!r} asks for {nlist} IVF lists; give at least 1, e.g. IVF{max(1, round(4 * math.sqrt(count)))}")
    if count and nlist > count:
        fit = max(1, 2 ** int(math.log2(max(1, count // 39))))
        raise ConfigError(
            f"{factory!r} needs at least {nlist:,} vectors to train its {nlist:,} lists (FAISS advises 39 per list), "
            f"and the store has {count:,}; use IVF{fit} or fewer lists, or Flat (exact) or 'auto'"
        )
