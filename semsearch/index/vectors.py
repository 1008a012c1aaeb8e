"""The FAISS sentence-vector index, derived from the store and rebuilt from it when out of date.

Invariant: every vector added here, and every query vector, has unit length, so the
inner-product metric ranks by cosine similarity. FAISS ids are the store's passage ids.
``index.faiss`` is written to a temporary file and renamed; ``index.json`` beside it records the
factory string and the (count, max id) fingerprint of the passages it holds.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..core.limits import bounded_memory
from ..errors import ConfigError

logger = logging.getLogger(__name__)
INDEX_FILE = "index.faiss"
INDEX_META = "index.json"


def _faiss() -> Any:
    import faiss  # ~0.3 s to import: only commands that search pay for it

    return faiss


@dataclass
class IndexInfo:
    factory: str
    ntotal: int
    max_id: int
    dim: int
    skipped: int = 0  # stored passages left out because their vector is damaged


def read_info(directory: Path) -> IndexInfo | None:
    """The sidecar description of the saved index, without loading FAISS; None when it is missing,
    not a regular file (a FIFO would block the read) or holds values out of range."""
    path = directory / INDEX_META
    try:
        if not path.is_file() or path.stat().st_size > 1 << 16:
            return None
        data = json.loads(path.read_text())
        info = IndexInfo(str(data["factory"]), int(data["ntotal"]), int(data["max_id"]), int(data["dim"]), int(data.get("skipped", 0)))
    except (OSError, ValueError, KeyError, TypeError, OverflowError, AttributeError):
        return None
    if not (0 <= info.ntotal < 1 << 40 and 0 <= info.max_id < 1 << 62 and 0 < info.dim < 1 << 16 and 0 <= info.skipped < 1 << 40):
        return None
    return info


@contextmanager
def _one_thread_for(queries: int) -> Iterator[None]:
    """Search a single query on one FAISS thread.

    FAISS splits work across queries, so one query uses one thread anyway, while its idle OpenMP
    threads spin after each call and slow the next query's model pass (scripts/bench_search.py's
    warm search). OpenMP keeps the thread count per calling thread (its nthreads-var), so searches
    on other threads are not affected.
    """
    if queries != 1:
        yield
        return
    faiss = _faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class VectorIndex:
    """A FAISS inner-product index over unit vectors, keyed by passage id."""

    def __init__(self, index: Any, factory: str, dim: int, max_id: int = 0) -> None:
        self.index = index
        self.factory = factory
        self.dim = dim
        self.max_id = max_id
        self.skipped = 0  # stored passages left out (damaged vectors); check reports them
        self.stale = False  # set when a removal is not supported: rebuild from the store
        self._tuned: tuple[int, int, int] | None = None

    def tune(self, nprobe: int, ef_search: int, k_factor: int) -> None:
        """Apply the search-time knobs that this index type has (IVF nprobe, HNSW efSearch,
        the candidates a Refine stage re-scores per result)."""
        if self._tuned == (nprobe, ef_search, k_factor):
            return
        self._tuned = (nprobe, ef_search, k_factor)
        space = _faiss().ParameterSpace()
        for name, value in (("nprobe", nprobe), ("efSearch", ef_search), ("k_factor_rf", k_factor)):
            try:
                space.set_index_parameter(self.index, name, value)
            except RuntimeError:
                pass  # this index type has no such knob

    @classmethod
    def create(cls, factory: str, dim: int) -> VectorIndex:
        faiss = _faiss()
        try:
            inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise ConfigError(
                f"FAISS cannot build index {factory!r} ({str(exc).strip().splitlines()[-1]}); "
                "give a valid factory string such as 'Flat', 'HNSW32' or 'IVF1024,SQ8'"
            ) from None
        if not isinstance(inner, (faiss.IndexIDMap, faiss.IndexIDMap2)) and not hasattr(inner, "invlists"):
            inner = faiss.IndexIDMap2(inner)
        return cls(inner, factory, dim)

    def copy(self) -> VectorIndex:
        """An independent copy (through FAISS's own serialisation), to change while others search."""
        faiss = _faiss()
        inner = faiss.deserialize_index(faiss.serialize_index(self.index))
        return VectorIndex(inner, self.factory, self.dim, self.max_id)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def train(self, vectors: NDArray[np.float32]) -> None:
        self.index.train(np.ascontiguousarray(vectors, dtype=np.float32))

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        if len(ids) == 0:
            return
        self.index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64)
        )
        self.max_id = max(self.max_id, int(ids.max()))

    def remove(self, ids: Iterable[int]) -> None:
        ids = np.fromiter(ids, dtype=np.int64)
        if len(ids):
            try:
                self.index.remove_ids(ids)
            except RuntimeError:  # HNSW cannot remove: the caller rebuilds from the store
                self.stale = True

    def ids(self) -> NDArray[np.int64]:
        """Every id the index holds (sorted)."""
        faiss = _faiss()
        index = faiss.downcast_index(self.index)
        if hasattr(index, "id_map"):
            return np.sort(faiss.vector_to_array(index.id_map).astype(np.int64))
        invlists = faiss.extract_index_ivf(index).invlists
        parts = [
            faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
            for i in range(invlists.nlist)
            if invlists.list_size(i)
        ]
        return np.sort(np.concatenate(parts).astype(np.int64)) if parts else np.zeros(0, np.int64)

    def search(
        self, queries: NDArray[np.float32], k: int, allowed: NDArray[np.int64] | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Top ``k`` (scores, ids) per query row; ``allowed`` restricts the ids considered."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        with _one_thread_for(len(q)):
            return self._search(q, k, allowed)

    def _search(
        self, q: NDArray[np.float32], k: int, allowed: NDArray[np.int64] | None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        if allowed is None:
            return self.index.search(q, k)
        faiss = _faiss()
        inner = faiss.downcast_index(self.index)
        wrapped = faiss.downcast_index(inner.index) if hasattr(inner, "id_map") else None
        if isinstance(wrapped, faiss.IndexRefine):
            return self._search_refine(q, k, allowed, inner, wrapped)
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        if isinstance(inner, faiss.IndexIVF):
            params = faiss.SearchParametersIVF(sel=selector, nprobe=inner.nprobe)
        else:
            params = faiss.SearchParameters(sel=selector)
        return self.index.search(q, k, params=params)

    def _search_refine(
        self, q: NDArray[np.float32], k: int, allowed: NDArray[np.int64], idmap: Any, refine: Any
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """A filtered search through IDMap2(Refine(IVF …)): FAISS translates the selector for the
        outer layer only, so select by internal position here and map the labels back."""
        faiss = _faiss()
        id_map = faiss.vector_to_array(idmap.id_map).astype(np.int64)
        positions = np.flatnonzero(np.isin(id_map, allowed)).astype(np.int64)
        selector = faiss.IDSelectorBatch(positions)
        base = faiss.downcast_index(refine.base_index)
        base_params = (
            faiss.SearchParametersIVF(sel=selector, nprobe=base.nprobe)
            if isinstance(base, faiss.IndexIVF)
            else faiss.SearchParameters(sel=selector)
        )
        params = faiss.IndexRefineSearchParameters(sel=selector, k_factor=refine.k_factor, base_index_params=base_params)
        scores, labels = refine.search(q, k, params=params)
        return scores, np.where(labels >= 0, id_map[np.maximum(labels, 0)], -1)

    def save(self, directory: Path) -> None:
        faiss = _faiss()
        tmp = directory / (INDEX_FILE + ".tmp")
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, directory / INDEX_FILE)
        meta = {"factory": self.factory, "ntotal": self.ntotal, "max_id": self.max_id, "dim": self.dim, "skipped": self.skipped}
        tmp_meta = directory / (INDEX_META + ".tmp")
        tmp_meta.write_text(json.dumps(meta))
        os.replace(tmp_meta, directory / INDEX_META)

    @classmethod
    def load(cls, directory: Path, mmap: bool = False, dim: int | None = None) -> VectorIndex | None:
        """The saved index, or None when it is missing, unreadable or not of ``dim`` dimensions
        (it is then rebuilt from the store).

        With ``mmap`` the file is mapped read-only instead of read into memory.
        """
        info = read_info(directory)
        path = directory / INDEX_FILE
        if info is None or not path.is_file() or (dim is not None and info.dim != dim):
            return None
        faiss = _faiss()
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        try:
            with bounded_memory(path.stat().st_size):
                index = faiss.read_index(str(path), flags)
        except (RuntimeError, MemoryError) as exc:
            logger.warning("index %s is unreadable (%s); it will be rebuilt", path, exc)
            return None
        if index.ntotal != info.ntotal or index.d != info.dim or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            logger.warning("index %s does not match %s; it will be rebuilt", path, INDEX_META)
            return None
        loaded = cls(index, info.factory, info.dim, info.max_id)
        loaded.skipped = info.skipped
        return loaded

