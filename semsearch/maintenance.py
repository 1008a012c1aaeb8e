"""Keep a store sound: verify it (``check``), repair what is derivable, delete documents."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import codec as codecs
from .errors import NotFoundError
from .index import VectorIndex
from .indexing import build_index, current_factory, open_index, store_factory
from .store import SCHEMA_VERSION, Store

REQUIRED_META = ("model", "dim", "pooling", "token_codec", "index_factory")


@dataclass
class Problem:
    """One thing wrong with a store and what fixes it."""

    what: str
    fix: str


@dataclass
class CheckReport:
    counts: dict[str, int]
    problems: list[Problem] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _damaged_passages(store: Store, dim: int, codec: codecs.Codec) -> dict[int, str]:
    """Passage id → what is wrong with its stored vector or tokens."""
    damaged: dict[int, str] = {}
    for pid, blob in store.db.execute("SELECT id, vector FROM passages"):
        if len(blob) != 4 * dim:
            damaged[pid] = f"sentence vector has {len(blob)} bytes, not {4 * dim}"
        elif abs(float(np.linalg.norm(codecs.f32_from_bytes(blob))) - 1.0) > 1e-3:
            damaged[pid] = "sentence vector is not unit length"
    with_tokens = set()
    for pid, n, ids, offsets, codes in store.iter_tokens():
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
    for pid in store.all_passage_ids():
        if int(pid) not in with_tokens:
            damaged[int(pid)] = "no token vectors"
    return damaged


def check_store(store: Store, repair: bool = False) -> CheckReport:
    """Verify schema, meta, counts, blobs, unit vectors and index ↔ passages; optionally repair."""
    report = CheckReport(store.counts())
    if store.schema_version() != SCHEMA_VERSION:
        report.problems.append(Problem(f"schema version {store.schema_version()}, expected {SCHEMA_VERSION}", "upgrade semsearch"))
    missing = [k for k in REQUIRED_META if store.meta(k) is None]
    if missing:
        report.problems.append(Problem(f"meta lacks {', '.join(missing)}", "ingest into it again, or start a new store"))
        return report
    dim = int(store.meta("dim") or 0)
    codec = store.codec()
    damaged = _damaged_passages(store, dim, codec)
    orphans = store.db.execute("SELECT count(*) FROM tokens WHERE passage_id NOT IN (SELECT id FROM passages)").fetchone()[0]
    empty_docs = [r[0] for r in store.db.execute("SELECT key FROM documents WHERE id NOT IN (SELECT document_id FROM passages)")]
    damaged_docs = sorted(
        {r[0] for pid in damaged for r in store.db.execute(
            "SELECT d.key FROM documents d JOIN passages p ON p.document_id = d.id WHERE p.id = ?", [pid])}
        | set(empty_docs)
    )
    for pid, why in sorted(damaged.items())[:20]:
        report.problems.append(Problem(f"passage {pid}: {why}", "check --repair removes its document; ingest it again"))
    if len(damaged) > 20:
        report.problems.append(Problem(f"… and {len(damaged) - 20} more damaged passages", "check --repair"))
    for key in empty_docs[:20]:
        report.problems.append(Problem(f"document {key!r} has no passages", "check --repair removes it; ingest it again"))
    if orphans:
        report.problems.append(Problem(f"{orphans} token rows belong to no passage", "check --repair deletes them"))
    stats_ok = store.kept_stats() == store.counted_stats()
    if not stats_ok:
        report.problems.append(Problem("the passage and token counts kept for searches and info are wrong", "check --repair recounts"))
    index = VectorIndex.load(store.path)
    index_ok = index is not None and index.factory == current_factory(store)
    if not index_ok:
        report.problems.append(Problem("index.faiss is missing, unreadable or of another type", "check --repair rebuilds it (no model needed)"))
    elif not np.array_equal(index.ids(), store.all_passage_ids()):  # type: ignore[union-attr]
        index_ok = False
        report.problems.append(Problem("the index and the stored passages differ", "check --repair rebuilds the index"))
    if repair and report.problems:
        with store.writing():
            if damaged_docs:
                store.delete_documents(damaged_docs)
                report.repaired.append(f"removed {len(damaged_docs)} damaged documents: {', '.join(damaged_docs[:10])}; ingest them again")
            if orphans:
                store.db.execute("DELETE FROM tokens WHERE passage_id NOT IN (SELECT id FROM passages)")
                report.repaired.append(f"deleted {orphans} orphaned token rows")
        if not stats_ok:  # deletions above keep the counts right through their triggers
            store.recount_stats()
            report.repaired.append("recounted the passages and tokens")
        if damaged_docs or not index_ok:
            build_index(store, store_factory(store)).save(store.path)
            report.repaired.append("rebuilt the index from the stored sentence vectors")
        report.counts = store.counts()
    return report


def delete_documents(store: Store, keys: Sequence[str]) -> int:
    """Remove documents (with passages, tokens and index entries); returns passages removed.

    Every key must be stored: an unknown key removes nothing.
    """
    present = store.document_keys_present(set(keys))
    unknown = [k for k in keys if k not in present]
    if unknown:
        raise NotFoundError(
            f"no document with key {', '.join(repr(k) for k in unknown[:5])} in {store.path}; "
            "nothing was deleted (keys are shown in search results)"
        )
    index = open_index(store, save=False)
    with store.writing():
        removed = store.delete_documents(list(dict.fromkeys(keys)))
    index.remove(removed)
    if index.stale:
        index = build_index(store, index.factory)
    index.save(store.path)
    return len(removed)
