"""Keep the FAISS index in step with the store: load it, catch it up, or rebuild it without the model.

An ``IndexKeeper`` belongs to one Session: it holds the loaded index and reuses it while the
index file and the stored passages are unchanged, so a loop of searches reads it once.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from ..errors import StoreError
from ..index import INDEX_FILE, IndexOptions, VectorIndex, build, resolve_factory
from ..store import Store, write_lock

logger = logging.getLogger(__name__)


def recorded_factory(store: Store) -> str:
    """The factory string the store records (possibly ``auto``)."""
    factory = store.meta.index_factory
    if factory is None:
        raise StoreError(f"store {store.path} records no index type; run 'semsearch index build --factory Flat'")
    return factory


def current_factory(store: Store) -> str:
    """The factory string the store's index must have now (``auto`` resolved)."""
    return resolve_factory(recorded_factory(store), store.stats.kept().passages, store.meta.dim)


def build_from_store(store: Store, factory: str) -> VectorIndex:
    """A new index of every sound stored sentence vector (``auto`` resolved for the store's size);
    damaged ones are left out and counted, and ``check`` names them."""
    count = store.stats.kept().passages
    dim = store.meta.dim
    damaged: set[int] = set()
    index = build(resolve_factory(factory, count, dim), dim, count, lambda: store.documents.iter_vectors(on_damaged=damaged.add))
    index.skipped = len(damaged)
    return index


@dataclass(frozen=True)
class _State:
    on_disk: tuple[int, int] | None
    fingerprint: tuple[int, int]


class IndexKeeper:
    """The store's index as one Session sees it, safe to share between threads."""

    def __init__(self, store: Store, options: IndexOptions) -> None:
        self.store = store
        self.options = options
        self._lock = threading.Lock()
        self._held: tuple[VectorIndex, _State] | None = None  # replaced whole, so a reader never sees half of it

    def _state_now(self) -> _State:
        try:
            stat = (self.store.path / INDEX_FILE).stat()
            on_disk: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            on_disk = None
        return _State(on_disk, self.store.stats.kept().fingerprint)

    def current(self, save: bool = True) -> VectorIndex:
        """The index, brought up to date with SQLite (saved when ``save`` and it changed)."""
        held, state = self._held, self._state_now()
        if held is not None and state == held[1]:  # the common case: no lock for threads to queue on
            return held[0]
        with self._lock:
            held, state = self._held, self._state_now()
            if held is None or state != held[1]:
                self.store.refresh_meta()  # another process may have switched the index type
                index = self._synced(save)
                index.tune(self.options.nprobe, self.options.ef_search, self.options.k_factor)
                held = self._held = (index, self._state_now())
            return held[0]

    def replace(self, index: VectorIndex) -> None:
        """Use ``index`` from now on, and save it as the store's index; when it cannot be written
        (a full disk, a read-only store) searches still answer from it in memory."""
        with self._lock:
            try:
                index.save(self.store.path)
            except (OSError, RuntimeError) as exc:
                logger.warning("could not save the index to %s (%s); using it from memory", self.store.path, exc)
            index.tune(self.options.nprobe, self.options.ef_search, self.options.k_factor)
            self._held = (index, self._state_now())

    def _synced(self, save: bool) -> VectorIndex:
        store = self.store
        count, top = store.stats.kept().fingerprint
        factory = current_factory(store)
        dim = store.meta.dim
        if self.options.mmap:
            mapped = VectorIndex.load(store.path, mmap=True, dim=dim)
            if mapped is not None and mapped.factory == factory and _holds(mapped, count, top):
                return mapped
        index = VectorIndex.load(store.path, dim=dim)
        if index is not None and index.factory == factory:
            if _holds(index, count, top):
                return index
            newer = store.documents.count_after(index.max_id)
            if index.ntotal + index.skipped + newer == count and index.is_trained:
                damaged: set[int] = set()
                for ids, vectors in store.documents.iter_vectors(after_id=index.max_id, on_damaged=damaged.add):
                    index.add(ids, vectors)
                index.skipped += len(damaged)
                index.max_id = max(index.max_id, top)
                logger.info("index caught up with %d passages from the store", newer)
                self._save(index, save)
                return index
        logger.info("rebuilding the index from the store's sentence vectors")
        index = build_from_store(store, factory)
        self._save(index, save)
        return index

    def rebuild(self) -> VectorIndex:
        """Build the index anew from the store (the loaded one named passages the store does not
        hold: a foreign or tampered file), save it and use it."""
        index = build_from_store(self.store, recorded_factory(self.store))
        self.replace(index)
        return index

    def _save(self, index: VectorIndex, save: bool) -> None:
        """Save a caught-up or rebuilt index when no writer holds the store; a search still
        answers from the index in memory when the file cannot be written (read-only, disk full)."""
        if not save:
            return
        try:
            with write_lock(self.store.path) as held:
                if held:
                    index.save(self.store.path)
        except (OSError, RuntimeError) as exc:
            logger.warning("could not save the index to %s (%s); using it from memory", self.store.path, exc)


def _holds(index: VectorIndex, count: int, top: int) -> bool:
    """Whether ``index`` holds every stored passage but the damaged ones it counted."""
    return index.ntotal + index.skipped == count and index.max_id == top
