"""Keep a store sound: verify it (``check``), repair what is derivable, delete documents, switch
the index type; none of it needs the model."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ..core import codec as codecs
from ..errors import NotFoundError
from ..index import VectorIndex, read_info
from ..results import CheckReport, DeleteReport, IndexReport, Problem, StoreInfo
from ..store import SCHEMA_VERSION, Store
from .indexing import IndexKeeper, build_from_store, current_factory, recorded_factory


def describe(store: Store) -> StoreInfo:
    """Model, counts, bytes per stored token, index and size, from the kept counts (no scan)."""
    meta, kept = store.meta, store.stats.kept()
    size = store.file_bytes()
    index = read_info(store.path)
    return StoreInfo(
        store=str(store.path),
        model=meta.model,
        dim=meta.dim,
        pooling=meta.pooling,
        max_tokens=meta.max_tokens,
        documents=store.documents.count(),
        passages=kept.passages,
        tokens=kept.tokens,
        token_codec=meta.token_codec,
        bytes_per_token=kept.token_bytes / kept.tokens if kept.tokens else 0.0,
        token_store_bytes=kept.token_bytes,
        token_store_share=kept.token_bytes / size if size else 0.0,
        index_factory=meta.index_factory,
        index_vectors=index.ntotal if index else 0,
        store_bytes=size,
        schema_version=store.schema_version(),
    )


def counts(store: Store) -> dict[str, int]:
    kept = store.stats.kept()
    return {"documents": store.documents.count(), "passages": kept.passages, "tokens": kept.tokens}


def _damaged_passages(store: Store, dim: int, codec: codecs.Codec) -> dict[int, str]:
    """Passage id → what is wrong with its stored vector or tokens."""
    damaged: dict[int, str] = {}
    for pid, blob in store.checks.passage_vectors():
        if len(blob) != 4 * dim:
            damaged[pid] = f"sentence vector has {len(blob)} bytes, not {4 * dim}"
        elif abs(float(np.linalg.norm(codecs.f32_from_bytes(blob))) - 1.0) > 1e-3:
            damaged[pid] = "sentence vector is not unit length"
    with_tokens = set()
    for pid, n, ids, offsets, codes in store.tokens.iter_rows():
        with_tokens.add(pid)
        if len(ids) != 4 * n or len(offsets) != 8 * n:
            damaged[pid] = f"token ids or offsets do not hold {n} tokens"
            continue
        try:
            vectors = codec.decode(codes, n)  # offsets only: enough to prove the blob decodes
        except Exception as exc:  # a damaged blob can fail in many ways
            damaged[pid] = f"token vectors cannot be decoded ({exc})"
            continue
        if not np.isfinite(vectors).all():
            damaged[pid] = "token vectors hold NaN or infinity"
    for pid in store.documents.all_passage_ids():
        if int(pid) not in with_tokens:
            damaged[int(pid)] = "no token vectors"
    return damaged


def check(store: Store, keeper: IndexKeeper, repair: bool = False) -> CheckReport:
    """Verify schema, meta, counts, blobs, unit vectors and index ↔ passages; optionally repair."""
    report = CheckReport(counts(store))
    if store.schema_version() != SCHEMA_VERSION:
        report.problems.append(Problem(f"schema version {store.schema_version()}, expected {SCHEMA_VERSION}", "upgrade semsearch"))
    if store.meta.missing:
        report.problems.append(Problem(f"meta lacks {', '.join(store.meta.missing)}", "ingest into it again, or start a new store"))
        return report
    damaged = _damaged_passages(store, store.meta.dim, store.codec())
    orphans = store.checks.orphan_token_rows()
    empty_docs = store.checks.documents_without_passages()
    damaged_docs = sorted(set(store.documents.keys_of(sorted(damaged)).values()) | set(empty_docs))
    for pid, why in sorted(damaged.items())[:20]:
        report.problems.append(Problem(f"passage {pid}: {why}", "check --repair removes its document; ingest it again"))
    if len(damaged) > 20:
        report.problems.append(Problem(f"… and {len(damaged) - 20} more damaged passages", "check --repair"))
    for key in empty_docs[:20]:
        report.problems.append(Problem(f"document {key!r} has no passages", "check --repair removes it; ingest it again"))
    if orphans:
        report.problems.append(Problem(f"{orphans} token rows belong to no passage", "check --repair deletes them"))
    stats_ok = store.stats.kept() == store.stats.counted()
    if not stats_ok:
        report.problems.append(Problem("the passage and token counts kept for searches and info are wrong", "check --repair recounts"))
    index_ok = _check_index(store, report)
    if repair and (report.problems or not index_ok):
        with store.writing():
            if damaged_docs:
                store.documents.delete(damaged_docs)
                some = "document" if len(damaged_docs) == 1 else "documents"
                report.repaired.append(f"removed {len(damaged_docs)} damaged {some}: {', '.join(damaged_docs[:10])}; ingest them again")
            if orphans:
                store.checks.delete_orphan_token_rows()
                report.repaired.append(f"deleted {orphans} orphaned token rows")
        if not stats_ok:  # deletions above keep the counts right through their triggers
            store.stats.recount()
            report.repaired.append("recounted the passages and tokens")
        if damaged_docs or not index_ok:
            keeper.replace(build_from_store(store, recorded_factory(store)))
            report.repaired.append("rebuilt the index from the stored sentence vectors")
        repaired = report.repaired
        report = check(store, keeper)  # what is left after the repair
        report.repaired = repaired
    return report


def _check_index(store: Store, report: CheckReport) -> bool:
    """Whether the index file holds exactly the stored passages. One that is missing, unreadable,
    of an older type or behind is a note, not a problem: opening the store rebuilds or catches it
    up from the stored vectors, without the model."""
    index = VectorIndex.load(store.path)
    count, top = store.stats.kept().fingerprint
    heals = "the next search or ingest rebuilds it from the stored vectors (no model needed), or check --repair now"
    if index is None:
        report.notes.append(f"index.faiss is missing or unreadable; {heals}")
        return False
    if index.factory != current_factory(store):
        report.notes.append(f"index.faiss is {index.factory}, the store now wants {current_factory(store)}; {heals}")
        return False
    if (index.ntotal, index.max_id) != (count, top):
        report.notes.append(f"index.faiss holds {index.ntotal:,} of {count:,} passages; {heals.replace('rebuilds', 'catches up or rebuilds')}")
        return False
    if not np.array_equal(index.ids(), store.documents.all_passage_ids()):
        report.problems.append(Problem("the index holds other passages than the store", "check --repair rebuilds the index"))
        return False
    return True


def delete(store: Store, keeper: IndexKeeper, keys: Sequence[str]) -> DeleteReport:
    """Remove documents (with passages, tokens and index entries).

    Every key must be stored: an unknown key removes nothing.
    """
    present = store.documents.present(set(keys))
    unknown = [k for k in keys if k not in present]
    if unknown:
        raise NotFoundError(
            f"no document with key {', '.join(repr(k) for k in unknown[:5])} in {store.path}; "
            "nothing was deleted (keys are shown in search results)"
        )
    index = keeper.current(save=False).copy()  # searches on other threads keep the one they hold
    unique = list(dict.fromkeys(keys))
    removed = store.documents.delete(unique)
    index.remove(removed)
    if index.stale:
        index = build_from_store(store, index.factory)
    keeper.replace(index)
    return DeleteReport(len(unique), len(removed))


def build_index(store: Store, keeper: IndexKeeper, factory: str | None = None) -> IndexReport:
    """Rebuild the index, or switch its type, from the sentence vectors kept in SQLite."""
    chosen = factory or recorded_factory(store)
    started = time.perf_counter()
    index = build_from_store(store, chosen)
    keeper.replace(index)
    store.set_meta({"index_factory": chosen})
    return IndexReport(chosen, index.factory, index.ntotal, time.perf_counter() - started)
