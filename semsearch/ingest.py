"""Ingest: documents → passages → one forward pass per batch → SQLite (truth) and FAISS (derived).

Documents are read in chunks of about ``batch_size × sort_window`` passages; a chunk's passages
are sorted by token count before batching (less padding), and each chunk's documents are written
in one transaction with all their passages, so a crash never leaves half a document. A writer
thread stores one chunk while the model encodes the next.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from . import codec as codecs
from .config import Settings
from .documents import Document, Item, Rejected
from .encoder import Encoder, Span
from .errors import ConfigError, InputError, ModelError, StoreError
from .indexing import open_index
from .store import NewPassage, Store

Progress = Callable[[int, int], None]


@dataclass
class IngestReport:
    """What one ingest did."""

    documents: int
    passages: int
    tokens: int
    unchanged: int
    replaced: int
    seconds: float


@dataclass
class Validation:
    """What a read-through of the input found, before anything is written."""

    documents: int
    rejected: list[Rejected]

    def keep(self, items: Iterable[Item]) -> Iterator[Document]:
        """The documents of a second read that were not rejected the first time."""
        dropped = {r.source for r in self.rejected}
        return (i for i in items if isinstance(i, Document) and i.source not in dropped)


def validate(items: Iterable[Item], skip: bool = False) -> Validation:
    """Read every record once before anything is written.

    Raises ``InputError`` (file:line) for a bad record or a key used twice, unless ``skip``, which
    collects them instead (the first use of a key wins).
    """
    seen: dict[str, str] = {}
    rejected: list[Rejected] = []
    count = 0
    for item in items:
        if isinstance(item, Rejected):
            rejected.append(item)
            continue
        if item.key in seen:
            problem = Rejected(
                item.source,
                f"id {item.key!r} is also used at {seen[item.key]}; ids must be unique "
                "(fix the data or choose another --id-field)",
            )
            if not skip:
                raise InputError(f"{problem.source}: {problem.message}")
            rejected.append(problem)
            continue
        seen[item.key] = item.source
        count += 1
    return Validation(count, rejected)


def store_settings(encoder: Encoder, settings: Settings) -> dict[str, str]:
    """The meta values that every later ingest and search must agree with."""
    return {
        "model": encoder.name,
        "dim": str(encoder.dim),
        "pooling": encoder.pooling,
        "max_tokens": str(encoder.max_tokens),
        "token_codec": settings.token_codec,
        "special_tokens": json.dumps({str(k): v for k, v in encoder.special_tokens.items()}),
    }


def prepare_store(store: Store, encoder: Encoder, settings: Settings) -> None:
    """Record the model in a new store, or check that an existing store was built with it."""
    wanted = store_settings(encoder, settings)
    if store.meta("model") is None:
        codecs.get_codec(settings.token_codec, encoder.dim)  # an unknown codec fails before anything is set
        store.set_meta({**wanted, "index_factory": settings.index, "long_documents": settings.long_documents})
        return
    check_model(store, encoder)
    if store.meta("token_codec") != settings.token_codec:
        raise StoreError(
            f"store {store.path} keeps tokens as {store.meta('token_codec')!r} but the settings ask "
            f"for {settings.token_codec!r}; use the store's codec or a new --store"
        )


def check_model(store: Store, encoder: Encoder) -> None:
    for key, value in (("model", encoder.name), ("dim", str(encoder.dim))):
        if store.meta(key) != value:
            raise ModelError(
                f"store {store.path} was built with {key} {store.meta(key)!r}, but {value!r} is "
                f"loaded; pass --model {store.meta('model')!r} or use a new --store"
            )


def _chunks(documents: Iterable[Document], encoder: Encoder, settings: Settings) -> Iterator[list[tuple[Document, list[Span]]]]:
    limit = settings.batch_size * settings.sort_window
    pending: list[Document] = []
    chars = 0
    for doc in documents:
        pending.append(doc)
        chars += len(doc.text)
        # cheap bound before tokenising: a passage holds at most ~window*8 characters
        if len(pending) >= limit or chars >= limit * 2000:
            yield list(zip(pending, _split(pending, encoder, settings)))
            pending, chars = [], 0
    if pending:
        yield list(zip(pending, _split(pending, encoder, settings)))


def _split(docs: list[Document], encoder: Encoder, settings: Settings) -> list[list[Span]]:
    truncate = settings.long_documents == "truncate"
    return encoder.split([d.text for d in docs], settings.overlap_tokens, truncate)


def ingest(
    store: Store,
    encoder: Encoder,
    documents: Iterable[Document],
    settings: Settings,
    progress: Progress | None = None,
) -> IngestReport:
    """Encode and store ``documents``; unchanged ones (same key and text) are skipped.

    Writing overlaps encoding: while the model encodes one chunk, a writer thread (with its own
    connection) stores the previous one in its transaction. At most one encoded chunk waits.
    """
    started = time.perf_counter()
    prepare_store(store, encoder, settings)
    report = IngestReport(0, 0, 0, 0, 0, 0.0)
    done_docs = 0
    with _Writer(store) as writer:
        for chunk in _chunks(documents, encoder, settings):
            stored = store.document_hashes([doc.key for doc, _ in chunk])
            todo = [(doc, spans) for doc, spans in chunk if stored.get(doc.key) != doc.content_hash]
            report.unchanged += len(chunk) - len(todo)
            docs, tokens = _encode(encoder, todo, settings.batch_size)
            if docs:
                writer.put(docs)
            report.documents += len(todo)
            report.replaced += sum(1 for doc, _ in todo if doc.key in stored)
            report.tokens += tokens
            done_docs += len(chunk)
            _release_freed_memory()
            if progress:
                progress(done_docs, writer.passages)
    report.passages = writer.passages
    if progress:
        progress(done_docs, report.passages)
    # The index is brought up to date once, from SQLite, when the passages are stored: memory
    # during ingest stays bounded by the batches, and a crash leaves nothing to reconcile.
    open_index(store, save=False).save(store.path)
    report.seconds = time.perf_counter() - started
    return report


Chunk = list[tuple[Document, list[NewPassage]]]


class _Writer:
    """Stores encoded chunks on a thread of its own, one transaction per chunk.

    ``put`` hands over a chunk, waiting while one is already queued; a failure in the writer is
    raised by the next ``put`` or on leaving the ``with`` block. Leaving early (an error while
    reading or encoding) lets the chunk being written finish and drops the queued one: each
    chunk is its own transaction, so the store stays whole either way.
    """

    def __init__(self, store: Store) -> None:
        self.path = store.path
        self.passages = 0
        self._queue: queue.Queue[Chunk | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="semsearch-writer", daemon=True)

    def __enter__(self) -> _Writer:
        self._thread.start()
        return self

    def put(self, docs: Chunk) -> None:
        while True:
            self._raise()
            try:
                self._queue.put(docs, timeout=0.1)
                return
            except queue.Full:
                continue

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if exc is not None:
            self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join()
        if exc is None:
            self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            self._stop.set()
            raise error

    def _run(self) -> None:
        try:
            with Store.open(self.path) as store:
                codec = store.codec()
                while not self._stop.is_set():
                    docs = self._queue.get()
                    if docs is None or self._stop.is_set():
                        return
                    if codec.needs_training:
                        _train_codec(store, codec, [p.token_vectors for _, ps in docs for p in ps])
                    new_ids, _ = store.write_documents(docs, codec)
                    self.passages += len(new_ids)
        except BaseException as exc:  # handed to the reading thread, which raises it
            self._error = exc
            while True:  # unblock a put that is waiting for room
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break


def _release_freed_memory() -> None:
    """Hand freed heap memory back to the system (glibc only; elsewhere a no-op).

    Batches of varying shapes leave glibc's heap fragmented, and resident memory then creeps up with
    the corpus; trimming once a chunk keeps it flat (scripts/bench_memory.py).
    """
    _malloc_trim()(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int]:
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    return getattr(libc, "malloc_trim", None) or (lambda pad: 0)


def _train_codec(store: Store, codec: codecs.Codec, matrices: list[np.ndarray]) -> None:
    """Train a FAISS token codec on the first chunk's token vectors and keep it in the store."""
    try:
        codec.train(matrices)  # type: ignore[attr-defined]
    except RuntimeError as exc:
        count = min(sum(len(m) for m in matrices), codecs.TRAIN_TOKENS)
        raise ConfigError(
            f"cannot train token codec {codec.name!r} on the first {count:,} token vectors "
            f"({str(exc).strip().splitlines()[-1]}); ingest more text at once or use float16 or SQ8"
        ) from None
    store.set_blob("token_codec", codec.state())  # type: ignore[attr-defined]


def _encode(encoder: Encoder, todo: list[tuple[Document, list[Span]]], batch_size: int) -> tuple[Chunk, int]:
    """Encode a chunk's passages, shortest first (little padding): (documents with passages, tokens)."""
    items = [(d, o, span) for d, (doc, spans) in enumerate(todo) for o, span in enumerate(spans)]
    items.sort(key=lambda item: item[2].n_tokens)
    per_doc: list[list[NewPassage | None]] = [[None] * len(spans) for _, spans in todo]
    tokens = 0
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        texts = [todo[d][0].text[span.start : span.end] for d, _, span in batch]
        for (d, o, span), enc in zip(batch, encoder.encode(texts)):
            per_doc[d][o] = NewPassage(
                ordinal=o,
                char_start=span.start,
                char_end=span.end,
                vector=enc.vector,
                token_ids=enc.tokens.token_ids,
                offsets=enc.tokens.offsets,
                token_vectors=enc.tokens.vectors,
            )
            tokens += len(enc.tokens.token_ids)
    docs = [(doc, [p for p in per_doc[d] if p is not None]) for d, (doc, _) in enumerate(todo)]
    return docs, tokens
