"""A sharded store: a directory of N complete stores, each document in the shard that a stable
hash of its key names, and one Session-like front over all of them.

    DIR/shards.json     {"format": "semsearch-shards", "version": 1, "shards": N, "assign": ...}
    DIR/shard-000/      a complete store (its own SQLite file, FAISS index and lexical index)
    DIR/shard-001/ ...

A passage id names its shard in its high bits: ``(shard << 40) | id in the shard``, so ids stay
integers (below 2**53, exact in JSON and JavaScript) and ``explain --id`` goes to the right shard
without asking the others. Shard 0's ids are its own.

A search encodes its query once, asks every shard for its candidates on threads, and merges them
by score before fusing: in dense mode the merged top k is exactly one store's with an exact index.
BM25 is each shard's own (its document frequencies), as in other sharded engines. The query is
cached in the first shard that holds documents, so ``explain`` finds the last search's query there,
whichever shard the hit is in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from .config import Settings
from .core.fusion import MAX_TERMS, Fused, query_terms
from .core.types import Passage
from .documents import Document
from .encoder import Encoder
from .errors import NotFoundError, QueryError, StoreError
from .flows import explain as explaining
from .flows import query as querying
from .flows import search as searching
from .flows.indexing import IndexKeeper
from .results import (
    CheckReport,
    DeleteReport,
    Explanation,
    Hit,
    IndexReport,
    IngestReport,
    Problem,
    RecodeReport,
    SearchResult,
    StoreInfo,
)
from .session import Progress, Session, Source, _grouped, _translated
from .store import Store, StoredDocument, store_exists

MANIFEST = "shards.json"
FORMAT = "semsearch-shards"
SHARD_BITS = 40  # passage ids below 2**40 in each shard; 2**13 shards keep ids below 2**53
LOCAL = (1 << SHARD_BITS) - 1
MAX_SHARDS = 1 << 13
T = TypeVar("T")


def is_sharded(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def create(path: str | Path, shards: int) -> Path:
    """Make an empty sharded store of ``shards`` shards at ``path`` (a new or empty directory)."""
    path = Path(path)
    if not 1 <= shards <= MAX_SHARDS:
        raise QueryError(f"--shards must be between 1 and {MAX_SHARDS}, not {shards}")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise StoreError(f"{path} exists and is not an empty directory; choose a new one for the sharded store")
    path.mkdir(parents=True, exist_ok=True)
    for i in range(shards):
        (path / shard_name(i)).mkdir()
    manifest = {"format": FORMAT, "version": 1, "shards": shards, "assign": "sha256(key) first 8 bytes, big-endian, modulo shards"}
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def shard_name(i: int) -> str:
    return f"shard-{i:03d}"


def shard_of(key: str, shards: int) -> int:
    """The shard of a document key: stable across processes, machines and Python versions."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % shards


def global_id(shard: int, local: int) -> int:
    if not 0 <= local <= LOCAL:
        raise StoreError(f"passage id {local} of shard {shard} does not fit in {SHARD_BITS} bits; a shard holds fewer passages")
    return (shard << SHARD_BITS) | local


def split_id(passage_id: int) -> tuple[int, int]:
    return passage_id >> SHARD_BITS, passage_id & LOCAL


def read_manifest(path: Path) -> int:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        shards = int(manifest["shards"])
        if manifest.get("format") != FORMAT or not 1 <= shards <= MAX_SHARDS:
            raise ValueError(f"format {manifest.get('format')!r}, {shards} shards")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{path / MANIFEST} cannot be read ({exc}); it should say how many shards {path} has") from None
    return shards


class ShardedSession(Session):
    """The Session's reads and writes over a sharded store (see the module's doc). One model
    serves every shard; searches ask the shards on threads. A sharded store has no single
    ``store`` or ``keeper``: each shard's Session has its own (``shards``)."""

    def __init__(self, settings: Settings, create: bool = False, encoder: Encoder | None = None) -> None:  # noqa: ARG002 - shards exist from 'shard create'
        self.settings = settings
        self.path = Path(settings.store)
        self.count = read_manifest(self.path)
        self.shards = [Session(replace(settings, store=str(self.path / shard_name(i))), create=True, encoder=encoder) for i in range(self.count)]
        models = {m for m in (s._store.meta.model for s in self.shards if s._store is not None) if m is not None}
        if len(models) > 1:
            raise StoreError(f"the shards of {self.path} were built with different models ({', '.join(sorted(str(m) for m in models))}); rebuild the odd ones")
        if models and not settings.model:  # a shard that gets its first documents uses the others' model
            for shard in self.shards:
                shard.settings = replace(shard.settings, model=next(iter(models)))
        for shard in self.shards[1:]:
            shard._encoders = self.shards[0]._encoders  # one model for all shards, its calls serialised
        self._pool = ThreadPoolExecutor(max_workers=min(8, self.count), thread_name_prefix="semsearch-shard")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for shard in self.shards:
            shard.close()

    def _existing(self) -> list[tuple[int, Session]]:
        """The shards that hold a store (a shard gets one with its first document)."""
        return [(i, s) for i, s in enumerate(self.shards) if s._store is not None or store_exists(s.path)]

    def _live(self) -> list[tuple[int, Session]]:
        """The shards that hold a store; an error when none does yet."""
        live = self._existing()
        if not live:
            raise StoreError(f"the sharded store {self.path} holds no documents yet; run 'semsearch ingest FILES --store {self.path}' first")
        return live

    def _map(self, fn: Callable[[tuple[int, Session]], T], items: Sequence[tuple[int, Session]]) -> list[T]:
        return list(self._pool.map(fn, items)) if len(items) > 1 else [fn(i) for i in items]

    def _shard(self, passage_id: int) -> tuple[Session, int, int]:
        querying.check_id(passage_id)
        shard, local = split_id(passage_id)
        if shard >= self.count:
            raise NotFoundError(f"no passage {passage_id} in {self.path}: its shard {shard} is not one of its {self.count} shards")
        return self.shards[shard], shard, local

    @property
    def encoder(self) -> Encoder:
        """The query model (one for all shards), checked against every shard that has a store."""
        return self.load_encoder()

    def load_encoder(self, texts: int | None = None) -> Encoder:
        live = self._live()
        encoder = live[0][1].load_encoder(texts)
        for _, shard in live[1:]:
            if shard.store.meta.model is not None:
                shard.store.meta.check_encoder(encoder, shard.path)
        return encoder

    @property
    def store(self) -> Store:
        raise StoreError(f"{self.path} is sharded: each of its shards has its own store (ShardedSession.shards)")

    @property
    def keeper(self) -> IndexKeeper:
        raise StoreError(f"{self.path} is sharded: each of its shards has its own index (ShardedSession.shards)")

    def warm_up(self) -> None:
        self.encoder  # noqa: B018 - loads it
        for _, shard in self._live():
            shard.keeper.current()
            shard.store.lexical.keep_in_memory(self.settings.lexical_memory)

    # reads ------------------------------------------------------------------------------------
    @_translated
    def search(
        self, text: str, k: int = 10, where: Sequence[tuple[str, str]] = (), why: int = 0, mode: str | None = None, group_by: str | None = None
    ) -> SearchResult:
        """As ``Session.search``, over every shard; the query is cached in the first shard with a store."""
        querying.check_k(k)
        querying.check_query(text)
        fusion, group = self.fusion(mode), _grouped(group_by)
        live = self._live()
        vector, tokens = querying.encode_query(self.encoder, text)
        found = self._found(live, vector, query_terms(text), fusion, k, where, group)
        query_id = searching.cache_query(live[0][1].store, vector, tokens, self.settings.query_cache)
        self._describe(found, tokens, why, fusion)
        return SearchResult(text, query_id, [hit for _, hit, _ in found], fusion.mode)

    @_translated
    def like(
        self, passage_id: int, k: int = 10, where: Sequence[tuple[str, str]] = (), why: int = 0, mode: str | None = None, group_by: str | None = None
    ) -> SearchResult:
        """As ``Session.like``: the passage's vector and words asked of every shard."""
        querying.check_k(k)
        origin, shard, local = self._shard(passage_id)
        fusion, group = self.fusion(mode), _grouped(group_by)
        store = origin.store
        vector = store.documents.vector(local)
        source = store.tokens.of(local, store.codec())
        words = query_terms(source.text, limit=4 * MAX_TERMS)
        found = self._found(self._live(), vector, words, fusion, k, where, group, exclude=(shard, local), limit=MAX_TERMS)
        self._describe(found, source, why, fusion)
        return SearchResult(f"like:{passage_id}", None, [hit for _, hit, _ in found], fusion.mode)

    def _found(
        self,
        live: list[tuple[int, Session]],
        vector: Any,
        words: list[str],
        fusion: searching.Fusion,
        k: int,
        where: Sequence[tuple[str, str]],
        group: bool,
        exclude: tuple[int, int] | None = None,
        limit: int | None = None,
    ) -> list[tuple[int, Hit, list[str]]]:
        """(shard, hit with its id in the shard, the shard's query terms), best first. Every
        shard's candidate lists are merged by score and fused once; with ``group``, the fused
        list is cut to the best passage of each document, asked deeper until it holds k
        documents (a document lives in one shard)."""
        terms_of = {i: shard.store.lexical.informative(words)[:limit] for i, shard in live}

        def fused_at(wanted: int) -> list[Fused]:
            def ask(item: tuple[int, Session]) -> tuple[int, dict[str, list[tuple[int, float]]]]:
                i, shard = item
                skip = exclude[1] if exclude is not None and exclude[0] == i else None
                return i, searching.candidates(shard.store, shard.keeper, vector, terms_of[i], fusion, wanted, where, skip)

            answers = self._map(ask, live)
            depth = searching.lexical_depth(fusion, wanted)
            lists: dict[str, list[tuple[int, float]]] = {}
            for name in ("dense", "lexical"):
                if any(name in found for _, found in answers):
                    entries = [(global_id(i, pid), score) for i, found in answers for pid, score in found.get(name, [])]
                    lists[name] = sorted(entries, key=lambda x: -x[1])[:depth]
            return searching.fuse(lists, fusion)

        def keys_of(fused: list[Fused]) -> dict[int, str]:  # a key lives in one shard: keys name documents across shards
            return {
                global_id(i, pid): key
                for i, mine in self._by_shard(fused).items()
                for pid, key in self.shards[i].store.documents.keys_of([f.id for f in mine]).items()
            }

        if group:
            passages = sum(shard.store.stats.kept().passages for _, shard in live)
            fused = searching.best_of_documents(fused_at, keys_of, k, passages)[:k]
        else:
            fused = fused_at(k)[:k]
        by_shard = self._by_shard(fused)

        def read(item: tuple[int, list[Fused]]) -> dict[int, Hit]:
            i, mine = item
            store = self.shards[i].store
            found = searching.hits(store, mine, len(mine))
            searching.add_cosines(store, vector, found)
            return {global_id(i, h.passage_id): h for h in found}

        read_hits: dict[int, Hit] = {}
        for part in self._pool.map(read, by_shard.items()):
            read_hits.update(part)
        result: list[tuple[int, Hit, list[str]]] = []
        for f in fused:
            found_hit = read_hits.get(f.id)
            if found_hit is not None:  # None: deleted since the index was read
                found_hit.rank = len(result) + 1
                result.append((split_id(f.id)[0], found_hit, terms_of[split_id(f.id)[0]]))
        return result

    @staticmethod
    def _by_shard(fused: list[Fused]) -> dict[int, list[Fused]]:
        """Fused hits with global ids, grouped by shard with their ids in the shard (order kept)."""
        by_shard: dict[int, list[Fused]] = {}
        for f in fused:
            shard, local = split_id(f.id)
            by_shard.setdefault(shard, []).append(Fused(local, f.score, f.ranks))
        return by_shard

    def _describe(self, found: list[tuple[int, Hit, list[str]]], query: Any, why: int, fusion: searching.Fusion) -> None:
        """Reasons, terms and snippets from each hit's own shard; then the hits get global ids."""
        by_shard: dict[int, list[Hit]] = {}
        for i, hit, _ in found:
            by_shard.setdefault(i, []).append(hit)
        terms_of = {i: terms for i, _, terms in found}

        def describe(item: tuple[int, list[Hit]]) -> None:
            i, hits = item
            searching.describe(self.shards[i].store, hits, query, terms_of[i], why, fusion)

        list(self._pool.map(describe, by_shard.items()))
        for i, hit, _ in found:
            hit.passage_id = global_id(i, hit.passage_id)

    @_translated
    def explain(
        self, passage_id: int, query: str | None = None, query_id: int | None = None, against: int | None = None, level: str = "word"
    ) -> Explanation:
        """As ``Session.explain``: the passage's shard explains it, against the query cached in
        the first shard with a store, new query text, or a passage of any shard."""
        if sum(x is not None for x in (query, query_id, against)) > 1:
            raise ValueError("give at most one of query, query_id and against")
        shard, _, local = self._shard(passage_id)
        given = None
        if against is not None:
            other, _, other_local = self._shard(against)
            store = other.store
            tokens, vector = store.tokens.of(other_local, store.codec()), store.documents.vector(other_local)
            given = explaining.Given(tokens, vector, f"passage {against}", None, f"passage {against}")
        elif query is None:
            cached = self._live()[0][1].store.queries.get(query_id)
            given = explaining.Given(cached.tokens, cached.vector, f"query {cached.id}: {cached.text}", cached.id)
        encoder = self.encoder if query is not None else None
        result = explaining.explain(shard.store, local, query_text=query, encoder=encoder, level=level, given=given)
        result.passage = replace(result.passage, id=passage_id)
        return result

    @_translated
    def passage(self, passage_id: int) -> Passage:
        shard, _, local = self._shard(passage_id)
        return replace(shard.passage(local), id=passage_id)

    @_translated
    def documents(self, where: Sequence[tuple[str, str]] = (), limit: int | None = None) -> list[StoredDocument]:
        """Every shard's documents, oldest first."""
        listed = [d for _, shard in self._live() for d in shard.documents(where, limit)]
        listed.sort(key=lambda d: d.ingested_at)
        return listed[:limit] if limit is not None else listed

    @_translated
    def info(self) -> StoreInfo:
        """The shards' counts and sizes added up; model and codec from the first shard."""
        parts = [shard.info() for _, shard in self._live()]
        first, tokens = parts[0], sum(p.tokens for p in parts)
        token_bytes, passages, size = sum(p.token_store_bytes for p in parts), sum(p.passages for p in parts), sum(p.store_bytes for p in parts)
        return replace(
            first,
            store=str(self.path),
            documents=sum(p.documents for p in parts),
            passages=passages,
            tokens=tokens,
            bytes_per_token=token_bytes / tokens if tokens else 0.0,
            token_bytes_per_passage=token_bytes / passages if passages else 0.0,
            token_store_bytes=token_bytes,
            token_store_share=token_bytes / size if size else 0.0,
            index_vectors=sum(p.index_vectors for p in parts),
            store_bytes=size,
            shards=self.count,
        )

    def evaluate(self, *args: Any, **kwargs: Any) -> Any:
        raise QueryError(f"eval runs on one store, and {self.path} is sharded: evaluate a single store built from the same input")

    # writes -----------------------------------------------------------------------------------
    @_translated
    def ingest(
        self,
        sources: Iterable[Source],
        *,
        text_fields: Sequence[str] = ("text",),
        id_field: str | None = None,
        format: str | None = None,
        on_error: str = "stop",
        progress: Progress | None = None,
        ray: str | None = None,
        ray_workers: int = 0,
        only: Callable[[Document], bool] | None = None,
        encoder: Encoder | None = None,
        shard: int | None = None,
    ) -> IngestReport:
        """Each shard ingests the documents whose key hashes to it (the input is read and checked
        once per shard, nothing is written before the first shard's check passed); a Ray pool is
        started once for all shards. ``shard`` ingests that shard's documents only, so that
        processes on several machines can fill one sharded store's shards at once."""
        if shard is not None and not 0 <= shard < self.count:
            raise QueryError(f"--shard must name one of the {self.count} shards of {self.path} (0 to {self.count - 1}), not {shard}")
        items = list(sources)
        if "-" in items:
            raise QueryError("a sharded store reads its input once per shard: ingest files, not standard input")
        total = IngestReport(0, 0, 0, 0, 0, 0.0)
        with ExitStack() as stack:
            if ray and encoder is None:  # one pool for every shard, with the store's model
                first = next((part for _, part in self._existing()), self.shards[0])
                encoder = first._ray_encoder(stack, ray, ray_workers)
            for i, part in enumerate(self.shards):
                if shard is not None and i != shard:
                    continue

                def mine(doc: Document, i: int = i) -> bool:
                    return shard_of(doc.key, self.count) == i and (only is None or only(doc))

                report = part.ingest(
                    items, text_fields=text_fields, id_field=id_field, format=format, on_error=on_error, progress=progress, only=mine, encoder=encoder
                )
                for name in ("documents", "passages", "tokens", "unchanged", "replaced", "seconds", "store_bytes"):
                    setattr(total, name, getattr(total, name) + getattr(report, name))
                if not total.rejected:
                    total.rejected, total.skipped_file = report.rejected, report.skipped_file
        return total

    @_translated
    def delete(self, keys: Sequence[str]) -> DeleteReport:
        """Remove documents by key from their shards; every key must be stored, else nothing is removed."""
        groups: dict[int, list[str]] = {}
        for key in dict.fromkeys(keys):
            groups.setdefault(shard_of(key, self.count), []).append(key)
        live = dict(self._existing())
        unknown = []
        for i, group in groups.items():
            present = live[i].store.documents.present(set(group)) if i in live else set()
            unknown += [k for k in group if k not in present]
        if unknown:
            raise NotFoundError(
                f"no document with key {', '.join(repr(k) for k in unknown[:5])} in {self.path}; nothing was deleted (keys are shown in search results)"
            )
        total = DeleteReport(0, 0)
        for i, group in groups.items():
            report = self.shards[i].delete(group)
            total.documents += report.documents
            total.passages += report.passages
        return total

    @_translated
    def check(self, repair: bool = False, force: bool = False) -> CheckReport:
        """Every shard checked (and repaired); problems name their shard."""
        total = CheckReport({})
        for i, shard in self._existing():
            report = shard.check(repair, force)
            name = shard_name(i)
            for key, value in report.counts.items():
                total.counts[key] = total.counts.get(key, 0) + value
            total.problems += [Problem(f"{name}: {p.what}", p.fix) for p in report.problems]
            total.repaired += [f"{name}: {r}" for r in report.repaired]
            total.notes += [f"{name}: {n}" for n in report.notes]
        return total

    @_translated
    def recode(self, codec: str | None = None, pool: str | None = None, progress: Callable[[int, int], None] | None = None) -> RecodeReport:
        """Every shard recoded, one after another."""
        before = self.info()
        reports = [shard.recode(codec, pool, progress) for _, shard in self._live()]
        return RecodeReport(before, self.info(), sum(r.passages for r in reports), sum(r.seconds for r in reports), any(r.changed for r in reports))

    @_translated
    def build_index(self, factory: str | None = None) -> IndexReport:
        reports = [shard.build_index(factory) for _, shard in self._live()]
        return IndexReport(reports[0].factory, reports[0].resolved, sum(r.vectors for r in reports), sum(r.seconds for r in reports))
