"""The library's front door: ``semsearch.open(store)`` returns a Session that the CLI, the tests
and other front ends share.

A Session owns everything a front end must not: the store's connections (one per thread), the
loaded index (``IndexKeeper``), the encoder (loaded on first need, its calls serialised), and the
writer lock of the store directory. It can be shared by threads: reads run in parallel, writes
take the store's lock one at a time.

    import semsearch

    with semsearch.open("my-store", create=True) as s:
        s.ingest(["notes.jsonl"])
        result = s.search("how do vaccines work", k=5)
        why = s.explain(result.hits[0].passage_id)   # from stored token vectors, no model run
        print(why.score, why.contribution.sum())
"""

from __future__ import annotations

import errno
import functools
import io
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

from . import encoder as encoder_module
from .config import Settings, load_settings, resolve_model
from .core.batching import Grouped
from .core.types import Encoded, Passage, Span
from .documents import Document, ReadOptions, Rejected, read_all, read_records, spool_stdin
from .encoder import Encoder
from .errors import ModelError, QueryError, StoreError
from .flows import evaluate as evaluating
from .flows import explain as explaining
from .flows import ingest as ingesting
from .flows import maintenance
from .flows import query as querying
from .flows import search as searching
from .flows.indexing import IndexKeeper
from .index import IndexOptions
from .results import (
    CheckReport,
    DeleteReport,
    EvalReport,
    Explanation,
    IndexReport,
    IngestProgress,
    IngestReport,
    RecodeReport,
    SearchResult,
    StoreInfo,
)
from .store import DatabaseError, Store, StoredDocument, held_write_lock, store_exists

Progress = Callable[[IngestProgress], None]
Source = str | Path | Document | Mapping[str, Any]


class _SerialEncoder:
    """An encoder whose calls run one at a time: a fast tokenizer shared by threads can fail
    ('Already borrowed'), and two model passes on two cores only slow each other.

    With ``batch`` > 1 (the ONNX query model: the ``query_batch`` setting), single texts that
    arrive while a pass runs are encoded together in the next one, up to ``batch``: eight short
    queries cost 6.5 ms each in one pass on one ONNX Runtime thread instead of 8.7
    (scripts/bench_batching.py: 16 clients, 71.6 → 88.1 dense searches/s). Padding makes a
    query's vectors equal to its own pass's within float rounding (1e-6), not bit for bit."""

    def __init__(self, inner: Encoder, batch: int = 1) -> None:
        self.inner = inner
        self.batch = batch
        self._lock = threading.Lock()  # the model
        self._grouped = Grouped(self._pass, batch, lambda: ModelError("the query's model pass was interrupted; try again"))
        self.name, self.dim, self.max_tokens = inner.name, inner.dim, inner.max_tokens
        self.pooling, self.special_tokens = inner.pooling, inner.special_tokens

    def encode(self, texts: list[str]) -> list[Encoded]:
        if len(texts) != 1 or self.batch <= 1:
            return self._pass(texts)
        return [self._grouped(texts[0])]

    def _pass(self, texts: list[str]) -> list[Encoded]:
        with self._lock:
            return self.inner.encode(texts)

    def split(self, texts: list[str], overlap: int, truncate: bool) -> list[list[Span]]:
        with self._lock:
            return self.inner.split(texts, overlap, truncate)


F = TypeVar("F", bound=Callable[..., Any])


def _translated(method: F) -> F:
    """SQLite's and the disk's errors as one-line ``StoreError``s that say what to do."""

    @functools.wraps(method)
    def wrapper(self: Session, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except DatabaseError as exc:
            raise StoreError(_database_advice(self.path, exc)) from None
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise StoreError(f"the disk holding {self.path} is full; free some space and run the same command again (what was committed is kept)") from None
            raise

    return wrapper  # type: ignore[return-value]


def _database_advice(path: Path, exc: DatabaseError) -> str:
    text = str(exc)
    if "full" in text:
        return f"the disk holding {path} is full ({text}); free some space and run the same command again (what was committed is kept)"
    if "readonly" in text or "read-only" in text:
        return f"{path} is read-only ({text}); search, explain and info work there, other commands need a writable store"
    if "locked" in text or "busy" in text:
        return f"{path} is busy ({text}); another process holds it: try again when it has finished"
    return f"the database of {path} cannot be read ({text}); run 'semsearch check --store {path}', or ingest again into a new --store"


class Session:
    """A store opened for searching, explaining and (one writer at a time) changing it."""

    def __init__(self, settings: Settings, create: bool = False, encoder: Encoder | None = None) -> None:
        self.settings = settings
        self.path = Path(settings.store)
        self._create = create
        self._store: Store | None = None
        self._keeper: IndexKeeper | None = None
        given = None if encoder is None else _SerialEncoder(encoder)
        self._encoders: dict[str, _SerialEncoder] = {} if given is None else {"given": given}
        self._setup = threading.RLock()  # opening the store, loading the encoder: once
        self._helpers: ThreadPoolExecutor | None = None
        self._writing = threading.Lock()  # ingest, delete, repair, index build: one at a time
        if store_exists(self.path) or not create:
            self.store  # noqa: B018 - opens it, or raises the "no store" error

    # lifecycle -------------------------------------------------------------------------------
    def _attach(self, store: Store) -> None:
        self._store = store
        s = self.settings
        self._keeper = IndexKeeper(store, IndexOptions(s.nprobe, s.ef_search, s.mmap, s.k_factor))

    @property
    def store(self) -> Store:
        store = self._store
        if store is None:
            with self._setup:
                if self._store is None:
                    self._attach(Store.open(self.path))  # without a store: the "no store" error and its advice
                store = self._store
        assert store is not None
        return store

    @property
    def keeper(self) -> IndexKeeper:
        self.store  # noqa: B018 - opens the store (and its keeper) if it exists by now
        assert self._keeper is not None
        return self._keeper

    def _helper(self) -> ThreadPoolExecutor:
        """Threads that run a search's lexical side while its query is encoded (each keeps its
        own SQLite connection)."""
        if self._helpers is None:
            with self._setup:
                if self._helpers is None:
                    self._helpers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="semsearch-lexical")
        return self._helpers

    def close(self) -> None:
        if self._helpers is not None:
            self._helpers.shutdown(wait=True)
            self._helpers = None
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # the encoders -----------------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        """The model for queries (ONNX Runtime unless the backend setting says torch), loaded on
        first use and checked against what the store records."""
        return self._load("query")

    @property
    def ingest_encoder(self) -> Encoder:
        """The model for ingest: PyTorch unless the backend setting says onnx (``auto`` picks
        PyTorch, measured faster for batches here, and float16 output on a GPU)."""
        return self._load("ingest")

    def load_encoder(self, texts: int | None = None) -> Encoder:
        """Load the query model now (as ``encoder`` does on first use), knowing that this process
        will encode only ``texts`` texts: for one, the ONNX model starts sooner and runs slower, and
        stays so for the session's life (a one-off command's hint, not a server's)."""
        return self._load("query", texts)

    def _load(self, purpose: str, texts: int | None = None) -> Encoder:
        s = self.settings
        backend = encoder_module.choose_backend(s.backend, s.device, purpose)
        # one torch model serves both; ONNX Runtime gets one thread for queries, all for ingest
        key = "given" if "given" in self._encoders else backend if backend == "torch" else f"{backend}-{purpose}"
        encoder = self._encoders.get(key)
        if encoder is None:
            with self._setup:
                if key not in self._encoders:
                    recorded = self._store.meta.model if self._store is not None else None
                    precision = s.precision if purpose == "ingest" or key == "torch" else "fp32"
                    loaded = encoder_module.load_encoder(resolve_model(s, recorded), s.device, backend, s.model_cache, purpose, precision, texts)
                    self._encoders[key] = _SerialEncoder(loaded, batch=s.query_batch if key == "onnx-query" else 1)
                encoder = self._encoders[key]
        if self._store is not None and self._store.meta.model is not None:
            self._store.meta.check_encoder(encoder, self.path)
        return encoder

    # reads ------------------------------------------------------------------------------------
    def fusion(self, mode: str | None = None) -> searching.Fusion:
        """How searches rank: ``mode`` (default the ``search_mode`` setting) and the fusion settings."""
        s = self.settings
        mode = mode or s.search_mode
        searching.check_mode(mode)
        return searching.Fusion(mode, s.fusion, s.hybrid_weight, s.hybrid_depth)

    @_translated
    def search(
        self,
        text: str,
        k: int = 10,
        where: Sequence[tuple[str, str]] = (),
        why: int = 0,
        mode: str | None = None,
        group_by: str | None = None,
    ) -> SearchResult:
        """The ``k`` best passages for ``text``: ``mode`` 'hybrid' (meaning and words fused),
        'dense' (cosine) or 'lexical' (BM25), by default the ``search_mode`` setting. The query's
        tokens are cached for ``explain``. ``where`` keeps documents whose metadata has every
        ``(field, value)``; ``why`` adds each hit's top N word pairs and its query terms;
        ``group_by='document'`` gives the best passage of each of k documents."""
        querying.check_k(k)  # bad arguments fail before the model loads
        querying.check_query(text)
        fusion, group = self.fusion(mode), _grouped(group_by)
        store, keeper, encoder = self.store, self.keeper, self.encoder
        return searching.search(store, keeper, encoder, text, k, why, self.settings.query_cache, where, fusion, group, self._helper())

    @_translated
    def like(
        self,
        passage_id: int,
        k: int = 10,
        where: Sequence[tuple[str, str]] = (),
        why: int = 0,
        mode: str | None = None,
        group_by: str | None = None,
    ) -> SearchResult:
        """The neighbours of a stored passage (itself excluded), without the model: its vector
        for the dense side, its words for the lexical side; ``why`` adds each hit's top N word
        pairs with that passage."""
        fusion, group = self.fusion(mode), _grouped(group_by)
        return searching.like(self.store, self.keeper, passage_id, k, where, why, fusion, group)

    @_translated
    def explain(
        self,
        passage_id: int,
        query: str | None = None,
        query_id: int | None = None,
        against: int | None = None,
        level: str = "word",
    ) -> Explanation:
        """Why ``passage_id`` matched: against the last search's query by default (no model),
        a cached ``query_id`` (no model), new ``query`` text (one short encode), or another
        stored passage ``against`` (no model). ``level`` is 'word' or 'token'."""
        if sum(x is not None for x in (query, query_id, against)) > 1:
            raise ValueError("give at most one of query, query_id and against")
        encoder = self.encoder if query is not None else None
        return explaining.explain(
            self.store, passage_id, query_text=query, encoder=encoder, query_id=query_id, against=against, level=level
        )

    @_translated
    def documents(self, where: Sequence[tuple[str, str]] = (), limit: int | None = None) -> list[StoredDocument]:
        """Stored documents (key, source, passages, when ingested, metadata), oldest first;
        ``where`` keeps those whose metadata has every ``(field, value)``."""
        return self.store.documents.listing(where, limit)

    @_translated
    def passage(self, passage_id: int) -> Passage:
        querying.check_id(passage_id)
        return self.store.documents.passage(passage_id)

    @_translated
    def info(self) -> StoreInfo:
        """Model, counts, bytes per stored token, index and size (no model needed)."""
        return maintenance.describe(self.store)

    @_translated
    def evaluate(
        self, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]], k: int = 10, depth: int = 1000, mode: str | None = None
    ) -> EvalReport:
        """nDCG@k, MRR@k, Recall@100 and MAP over judged queries (``qrels``: query id → document
        key → relevance) in ``mode`` (default: search's); needs the ``eval`` extra (ir-measures).
        ``semsearch.flows.evaluate.read_judged`` reads BEIR files."""
        evaluating.require_ir_measures()  # before the model loads
        self.store.lexical.keep_in_memory(self.settings.lexical_memory)
        fusion = self.fusion(mode)
        return evaluating.evaluate(self.store, self.keeper, self.encoder, queries, qrels, k, depth, fusion)

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
    ) -> IngestReport:
        """Read, check, encode and store documents: paths (files, folders, ``-`` for standard
        input), ``Document`` objects or dicts (mapped like JSONL records). The whole input is read
        and checked before anything is written; with ``on_error='skip'`` bad records are listed in
        ``STORE/skipped.jsonl`` instead of stopping. ``progress`` is called with an
        ``IngestProgress`` before the model loads and after each chunk. ``ray`` ('local' or a
        cluster's address) encodes on a pool of Ray actors (``ray_workers`` of them; 0: one per
        GPU, else one per two CPUs); everything else stays here. ``only`` keeps the documents it
        is true for (after the whole input was checked); ``encoder`` replaces the ingest model (a
        Ray pool that a sharded store shares between its shards)."""
        if on_error not in ("stop", "skip"):
            raise ValueError(f"on_error must be 'stop' or 'skip', not {on_error!r}")
        skip, s = on_error == "skip", self.settings
        items = list(sources)
        opts = ReadOptions(text_fields=tuple(text_fields), id_field=id_field, format=format)
        with ExitStack() as stack:
            spool = stack.enter_context(spool_stdin()) if "-" in items else None
            reader = _Reader(items, opts, spool, skip)
            checked = ingesting.validate(reader(), skip=skip)
            with self._writing, held_write_lock(self.path):
                if progress:
                    progress(IngestProgress("model", 0, checked.documents, 0, 0))
                if encoder is None:
                    encoder = self._ray_encoder(stack, ray, ray_workers) if ray else self.ingest_encoder
                with self._setup:
                    if self._store is None:
                        self._attach(Store.open(self.path, create=True))
                documents = checked.keep(reader())
                if only is not None:
                    documents = (d for d in documents if only(d))
                report = ingesting.ingest(self.store, self.keeper, encoder, documents, self.settings, progress, checked.documents)
                if encoder_module.choose_backend(s.backend, s.device, "query") == "onnx":
                    encoder_module.prepare_query_model(encoder, s.model_cache)  # a PyTorch model's export; nothing for others
        report.rejected = checked.rejected
        if checked.rejected:
            report.skipped_file = str(ingesting.write_skipped(self.path, checked.rejected))
        self.store.checkpoint()
        report.store_bytes = self.store.file_bytes()
        return report

    def _ray_encoder(self, stack: ExitStack, address: str, workers: int) -> Encoder:
        """A pool of Ray actors holding the store's model, closed with ``stack``."""
        from .encoder.ray_backend import RayEncoder

        s = self.settings
        recorded = self._store.meta.model if self._store is not None else None
        pool = RayEncoder(resolve_model(s, recorded), s.device, s.backend, s.model_cache, address, workers, s.precision)
        stack.callback(pool.close)
        return pool

    def warm_up(self) -> None:
        """Load the query model and the index now, and keep BM25's postings in memory (a server
        does, before its port opens)."""
        self.encoder  # noqa: B018 - loads it
        self.keeper.current()
        self.store.lexical.keep_in_memory(self.settings.lexical_memory)

    @_translated
    def delete(self, keys: Sequence[str]) -> DeleteReport:
        """Remove documents by key, with their passages, token vectors and index entries."""
        with self._writing, held_write_lock(self.path):
            report = maintenance.delete(self.store, self.keeper, keys)
            self.store.checkpoint()
            return report

    @_translated
    def check(self, repair: bool = False, force: bool = False) -> CheckReport:
        """Verify the store; ``repair`` restores meta from the stored data, rebuilds what is
        derivable and removes damaged documents (more than a few only with ``force``)."""
        if not repair:
            return maintenance.check(self.store, self.keeper)
        with self._writing, held_write_lock(self.path, "repair when it has finished"):
            return maintenance.check(self.store, self.keeper, repair=True, force=force)

    @_translated
    def recode(self, codec: str | None = None, pool: str | None = None, progress: Callable[[int, int], None] | None = None) -> RecodeReport:
        """Rewrite the stored token vectors with another ``codec`` (float16, SQ8, SQ4, PQ64…)
        and/or ``pool='words'`` (one vector per word), without the model; crash-safe and resumable."""
        with self._writing, held_write_lock(self.path):
            return maintenance.recode(self.store, codec, pool, progress)

    @_translated
    def build_index(self, factory: str | None = None) -> IndexReport:
        """Rebuild the index, or switch its type (a FAISS factory string or ``auto``), from the
        stored sentence vectors; no model needed."""
        with self._writing, held_write_lock(self.path):
            return maintenance.build_index(self.store, self.keeper, factory)


def _grouped(group_by: str | None) -> bool:
    if group_by not in (None, "passage", "document"):
        raise QueryError(f"group_by must be 'document' (or 'passage', the default), not {group_by!r}")
    return group_by == "document"


class _Reader:
    """Reads the ingest sources afresh on each call (once to check, once to ingest)."""

    def __init__(self, items: list[Source], opts: ReadOptions, spool: io.BufferedRandom | None, skip: bool) -> None:
        self.items, self.opts, self.spool, self.skip = items, opts, spool, skip

    def __call__(self) -> Iterator[Document | Rejected]:
        if self.spool is not None:
            self.spool.seek(0)
        paths = [str(i) for i in self.items if isinstance(i, (str, Path))]
        records = [i for i in self.items if not isinstance(i, (str, Path))]
        yield from read_all(paths, self.opts, self.spool, skip=self.skip)
        yield from read_records(records, self.opts, skip=self.skip)


def open_session(
    store: str | Path | None = None,
    create: bool = False,
    *,
    config: str | Path | None = None,
    encoder: Encoder | None = None,
    **settings: Any,
) -> Session:
    """Open the store at ``store`` (default: the settings' store).

    Args:
        store: the store directory.
        create: make a new store on the first ingest when none exists.
        config: a settings file (default ``./config.yaml`` or ``SEMSEARCH_CONFIG`` if present).
        encoder: an already loaded encoder to use instead of loading the store's model.
        settings: any setting of ``config.yaml`` (``nprobe=64``, ``model=...``); they take
            precedence over environment variables and the file.
    """
    overrides = {**settings, "store": str(store) if store is not None else settings.get("store")}
    loaded = load_settings(config, overrides)
    from .shards import ShardedSession, is_sharded

    if is_sharded(loaded.store):
        return ShardedSession(loaded, create=create, encoder=encoder)
    return Session(loaded, create=create, encoder=encoder)
