"""Keep a store sound: verify it (``check``), repair what is derivable, delete documents, switch
the index type; none of it needs the model."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from ..core import codec as codecs
from ..core.pooling import POOLS, pool_words
from ..core.types import TokenData
from ..errors import ConfigError, NotFoundError
from ..index import VectorIndex, read_info
from ..results import CheckReport, DeleteReport, IndexReport, Problem, RecodeReport, StoreInfo
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
        token_pool=meta.token_pool,
        bytes_per_token=kept.token_bytes / kept.tokens if kept.tokens else 0.0,
        token_bytes_per_passage=kept.token_bytes / kept.passages if kept.passages else 0.0,
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
            continue
        norm = float(np.linalg.norm(codecs.f32_from_bytes(blob)))
        if not np.isfinite(norm) or abs(norm - 1.0) > 1e-3:
            damaged[pid] = "sentence vector holds NaN or infinity" if not np.isfinite(norm) else "sentence vector is not unit length"
    with_tokens = set()
    for pid, n, ids, offsets, codes in store.tokens.iter_rows():
        with_tokens.add(pid)
        if n < 1:
            damaged[pid] = "it has no tokens"
            continue
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


REPAIR_LIMIT = 0.05  # --repair removes at most this share of the documents (or one) without --force


def _store_findings(store: Store, report: CheckReport) -> dict[str, str]:
    """Facts about the whole store: SQLite's own page check, and meta against what is stored.
    Returns the meta values a repair would restore (found from the stored data itself)."""
    damage = store.quick_check()
    if damage:
        report.problems.append(Problem(
            f"the database file is damaged ({'; '.join(damage[:3])})",
            "no repair can restore lost pages: copy out what is readable with sqlite3's .recover, or ingest again into a new --store",
        ))
        return {}
    restore: dict[str, str] = {}
    meta = store.meta
    lengths = store.checks.vector_lengths()
    if lengths:
        common, share = max(lengths.items(), key=lambda kv: kv[1])
        if common != 4 * meta.dim and share >= 0.95 * sum(lengths.values()) and common % 4 == 0:
            report.problems.append(Problem(
                f"meta says the vectors have {meta.dim} dimensions, but {share:,} of {sum(lengths.values()):,} stored vectors have {common // 4}",
                f"check --repair sets meta dim back to {common // 4}",
            ))
            restore["dim"] = str(common // 4)
    try:
        codec = store.codec()
        trained = not codec.needs_training or not store.documents.count()
    except Exception as exc:  # a damaged codec blob can fail in many ways
        report.problems.append(Problem(f"the trained token codec cannot be read ({exc})", "ingest again into a new --store"))
        return restore
    if not trained:
        sizes = store.checks.token_blob_sizes_match(2 * int(restore.get("dim", meta.dim)))
        if sizes:
            report.problems.append(Problem(
                f"meta says tokens are coded {meta.token_codec!r}, which has no trained state, but they are float16",
                "check --repair sets meta token_codec back to float16",
            ))
            restore["token_codec"] = "float16"
        else:
            report.problems.append(Problem(
                f"the trained state of token codec {meta.token_codec!r} is missing: token vectors cannot be decoded",
                "explain needs them: ingest again into a new --store (search still works)",
            ))
    return restore


def check(store: Store, keeper: IndexKeeper, repair: bool = False, force: bool = False, rounds: int = 2) -> CheckReport:
    """Verify the store, then (with ``repair``) fix what is derivable.

    Store-level facts come first (SQLite's page check, meta against the stored vectors and blobs,
    the kept counts): a store whose meta was changed is repaired by restoring meta, never by
    deleting documents. Then every passage: vector length, NaN, unit length, tokens that decode.
    A repair removes damaged documents only while they are few (``REPAIR_LIMIT``) unless ``force``;
    it runs at most ``rounds`` times (restoring meta can reveal damaged passages), then checks again.
    """
    report = CheckReport(counts(store))
    if store.schema_version() != SCHEMA_VERSION:
        report.problems.append(Problem(f"schema version {store.schema_version()}, expected {SCHEMA_VERSION}", "upgrade semsearch"))
    if store.meta.missing:
        report.problems.append(Problem(f"meta lacks {', '.join(store.meta.missing)}", "ingest into it again, or start a new store"))
        return report
    restore = _store_findings(store, report)
    if report.problems and not restore:
        return report  # the store as a whole is wrong: passage checks would only repeat it
    if restore:
        if repair:
            store.set_meta(restore)
            report.repaired.append(f"restored meta {', '.join(f'{k} = {v}' for k, v in restore.items())} from the stored data")
            return _after_repair(store, keeper, report, force, rounds - 1)
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
    has_stats = store.stats.present()
    stats_ok = has_stats and store.stats.kept() == store.stats.counted()
    if not has_stats:
        report.problems.append(Problem("the row of passage and token counts is missing", "check --repair counts them again"))
    elif not stats_ok:
        report.problems.append(Problem("the passage and token counts kept for searches and info are wrong", "check --repair recounts"))
    lexical = store.lexical.problems()
    for what in lexical:
        report.problems.append(Problem(what, "check --repair rebuilds the lexical index from the passages"))
    # the index leaves out what iter_vectors leaves out: vectors of the wrong length or not finite
    left_out = {pid for pid, why in damaged.items() if why.startswith(("sentence vector has", "sentence vector holds NaN"))}
    index_ok = _check_index(store, report, left_out, keeper)
    limit = max(1, int(REPAIR_LIMIT * report.counts["documents"]))
    if repair and len(damaged_docs) > limit and not force:
        shown = ", ".join(damaged_docs[:10]) + (", …" if len(damaged_docs) > 10 else "")
        report.problems.append(Problem(
            f"{len(damaged_docs):,} of {report.counts['documents']:,} documents look damaged, more than a repair removes on its own "
            f"(nothing was removed; --force would remove {shown})",
            "read the problems above: damage this wide usually has one cause; check --repair --force removes them all",
        ))
        return report
    if repair and (report.problems or not index_ok):
        if lexical:  # first: the deletions below go through its triggers
            rows = store.lexical.rebuild()
            report.repaired.append(f"rebuilt the lexical index ({rows:,} passages)")
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
        return _after_repair(store, keeper, report, force, rounds - 1)
    return report


def _after_repair(store: Store, keeper: IndexKeeper, report: CheckReport, force: bool, rounds: int) -> CheckReport:
    """Check again after a repair, repairing once more while rounds are left (meta restored, the
    passages come next)."""
    again = check(store, keeper, repair=rounds > 0, force=force, rounds=rounds)
    again.repaired = report.repaired + again.repaired
    return again


def _prove(store: Store, index: VectorIndex, factory: str) -> None:
    """A new index must find a stored passage by its own vector before it is recorded."""
    ids, vectors = next(store.documents.iter_vectors(batch=1), (None, None))
    if ids is None or vectors is None:
        return
    try:
        _, found = index.search(vectors, 1)
    except RuntimeError as exc:
        raise ConfigError(f"FAISS index {factory!r} fails a test search ({exc}); nothing was changed; choose another --factory") from None
    if int(found[0][0]) < 0:
        raise ConfigError(f"FAISS index {factory!r} finds nothing in a test search; nothing was changed; choose another --factory")


def _check_index(store: Store, report: CheckReport, damaged: set[int], keeper: IndexKeeper | None = None) -> bool:
    """Whether the index file holds exactly the stored passages (the damaged ones left out), with
    their vectors. One that is missing, unreadable, of an older type or behind is a note, not a
    problem: opening the store rebuilds or catches it up from the stored vectors, without the model."""
    index = VectorIndex.load(store.path, dim=store.meta.dim)
    count, top = store.stats.kept().fingerprint
    heals = "the next search or ingest rebuilds it from the stored vectors (no model needed), or check --repair now"
    if index is None:
        report.notes.append(f"index.faiss is missing or unreadable; {heals}")
        return False
    if index.factory != current_factory(store):
        report.notes.append(f"index.faiss is {index.factory}, the store now wants {current_factory(store)}; {heals}")
        return False
    if (index.ntotal + index.skipped, index.max_id) != (count, top):
        report.notes.append(f"index.faiss holds {index.ntotal:,} of {count:,} passages; {heals.replace('rebuilds', 'catches up or rebuilds')}")
        return False
    stored = store.documents.all_passage_ids()
    if not np.array_equal(index.ids(), stored[~np.isin(stored, list(damaged))]):
        report.problems.append(Problem("the index holds other passages than the store", "check --repair rebuilds the index"))
        return False
    if keeper is not None:
        o = keeper.options
        index.tune(o.nprobe, o.ef_search, o.k_factor)
    missed, sampled = _sample_vectors(store, index, damaged)
    if missed > 0.2 * max(sampled, 1):
        report.problems.append(Problem(
            f"the index's vectors differ from the stored ones ({missed} of {sampled} sampled passages are not found by their own vector)",
            "check --repair rebuilds the index",
        ))
        return False
    return True


def _sample_vectors(store: Store, index: VectorIndex, damaged: set[int], sample: int = 200) -> tuple[int, int]:
    """How many of up to ``sample`` stored passages the index does not find by their own vector."""
    stored = [int(i) for i in store.documents.all_passage_ids() if int(i) not in damaged]
    if not stored:
        return 0, 0
    chosen = stored[:: max(1, len(stored) // sample)][:sample]
    ids, vectors = store.documents.vectors_for(chosen)
    scores, found = index.search(vectors, 10)
    # found: its own id, or a passage as close as itself (identical texts tie)
    self_scores = (vectors * vectors).sum(axis=1)
    missed = sum(
        1 for pid, row, top, own in zip(ids.tolist(), found.tolist(), scores[:, 0].tolist(), self_scores.tolist())
        if pid not in row and top < own - 1e-3
    )
    return missed, len(ids)


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
    _prove(store, index, chosen)
    keeper.replace(index)
    store.set_meta({"index_factory": chosen})
    return IndexReport(chosen, index.factory, index.ntotal, time.perf_counter() - started)


RECODE_BATCH = 2_000  # passages rewritten per transaction


def recode(store: Store, codec_name: str | None, pool: str | None, progress: Callable[[int, int], None] | None = None) -> RecodeReport:
    """Rewrite every passage's token vectors with another codec and/or pooled into words, in
    batches into a shadow table that replaces the tokens in one transaction at the end: killed at
    any moment, the store keeps its old tokens, and the same command resumes. No model needed."""
    started = time.perf_counter()
    meta, before = store.meta, describe(store)
    target_codec = codec_name or meta.token_codec
    target_pool = pool or meta.token_pool
    if target_pool not in POOLS:
        raise ConfigError(f"--pool must be one of {', '.join(POOLS)}, not {target_pool!r}")
    if meta.token_pool == "words" and target_pool == "pieces":
        raise ConfigError("this store keeps one vector per word: its word pieces are gone and cannot be recoded back; ingest again into a new store")
    if (target_codec, target_pool) == (meta.token_codec, meta.token_pool):
        return RecodeReport(before, before, 0, time.perf_counter() - started, changed=False)
    old, new = store.codec(), codecs.get_codec(target_codec, meta.dim)

    def convert(tokens: TokenData) -> TokenData:
        return pool_words(tokens, meta.special_tokens) if target_pool == "words" else tokens

    target = json.dumps({"codec": target_codec, "pool": target_pool, "from": [meta.token_codec, meta.token_pool]})
    after_id = store.tokens.start_recode(target)
    if new.needs_training:
        state = store.blob("token_codec_recode")
        if after_id and state is not None:  # resuming: the rows so far were coded with this state
            new = codecs.get_codec(target_codec, meta.dim, state)
        else:
            sample: list[NDArray[np.float32]] = []
            last = 0
            while sum(len(m) for m in sample) < codecs.TRAIN_TOKENS:
                batch = store.tokens.token_data(last, 500, old)
                if not batch:
                    break
                sample += [convert(tokens).vectors for _, tokens in batch]
                last = batch[-1][0]
            new.train(sample)
            store.set_blob("token_codec_recode", new.state())
            after_id = store.tokens.start_recode(target, fresh=True)
    total, done = store.stats.kept().passages, 0
    while True:
        batch = store.tokens.token_data(after_id, RECODE_BATCH, old)
        if not batch:
            break
        rows = []
        for pid, tokens in batch:
            kept = convert(tokens)
            rows.append(store.tokens.row_of(pid, kept.token_ids, kept.offsets, kept.vectors, kept.pieces, new))
        store.tokens.write_recoded(rows)
        after_id = batch[-1][0]
        done += len(batch)
        if progress:
            progress(done, total)
    store.tokens.finish_recode({"token_codec": target_codec, "token_pool": target_pool}, new.state())
    store.vacuum()  # the old tokens' pages go back to the disk
    return RecodeReport(before, describe(store), total, time.perf_counter() - started)
