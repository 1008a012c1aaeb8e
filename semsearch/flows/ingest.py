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
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..config import Settings
from ..core import codec as codecs
from ..core.types import NewPassage, Span
from ..documents import Document, Item, Rejected
from ..encoder import Encoder
from ..errors import ConfigError, InputError
from ..results import IngestProgress, IngestReport
from ..store import Store, StoreMeta
from .indexing import IndexKeeper

Progress = Callable[[IngestProgress], None]


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


def prepare_store(store: Store, encoder: Encoder, settings: Settings) -> None:
    """Record the model in a new store, or check that an existing store was built with it."""
    if store.meta.model is None:
        codecs.get_codec(settings.token_codec, encoder.dim)  # an unknown codec fails before anything is set
        store.set_meta(StoreMeta.for_encoder(encoder, settings.token_codec, settings.index, settings.long_documents))
        return
    store.meta.check_encoder(encoder, store.path)
    store.meta.check_codec(settings.token_codec, store.path)


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
    keeper: IndexKeeper,
    encoder: Encoder,
    documents: Iterable[Document],
    settings: Settings,
    progress: Progress | None = None,
    total: int = 0,
) -> IngestReport:
    """Encode and store ``documents``; unchanged ones (same key and text) are skipped.

    Writing overlaps encoding: while the model encodes one chunk, a writer thread (a one-worker
    executor, with its own connection) stores the previous one in its transaction. At most one
    write is pending; its errors arrive through its future's ``result()``.
    """
    started = time.perf_counter()
    prepare_store(store, encoder, settings)
    codec = store.codec()
    report = IngestReport(0, 0, 0, 0, 0, 0.0)
    done_docs = 0
    if progress:
        progress(IngestProgress("encoding", 0, total, 0))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="semsearch-writer") as writer:
        pending: Future[int] | None = None
        for chunk in _chunks(documents, encoder, settings):
            stored = store.documents.hashes([doc.key for doc, _ in chunk])
            todo = [(doc, spans) for doc, spans in chunk if stored.get(doc.key) != doc.content_hash]
            report.unchanged += len(chunk) - len(todo)
            docs, tokens = _encode(encoder, todo, settings.batch_size)
            if docs and codec.needs_training:
                train_codec(store, codec, [p.token_vectors for _, ps in docs for p in ps])
            if pending is not None:
                report.passages += pending.result()
            pending = writer.submit(_write, store, docs, codec) if docs else None
            report.documents += len(todo)
            report.replaced += sum(1 for doc, _ in todo if doc.key in stored)
            report.tokens += tokens
            done_docs += len(chunk)
            _release_freed_memory()
            if progress:
                progress(IngestProgress("encoding", done_docs, total, report.passages))
        if pending is not None:
            report.passages += pending.result()
    if progress:
        progress(IngestProgress("encoding", done_docs, total, report.passages))
    # The index is brought up to date once, from SQLite, when the passages are stored: memory
    # during ingest stays bounded by the batches, and a crash leaves nothing to reconcile.
    keeper.replace(keeper.current(save=False))
    report.seconds = time.perf_counter() - started
    return report


Chunk = list[tuple[Document, list[NewPassage]]]


def _write(store: Store, docs: Chunk, codec: codecs.Codec) -> int:
    """Store one encoded chunk in one transaction (on the writer thread); returns its passages."""
    new_ids, _ = store.documents.write(docs, codec)
    return len(new_ids)


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


def train_codec(store: Store, codec: codecs.Codec, matrices: list[NDArray[np.float32]]) -> None:
    """Train a FAISS token codec on the first chunk's token vectors and keep it in the store."""
    try:
        codec.train(matrices)
    except RuntimeError as exc:
        count = min(sum(len(m) for m in matrices), codecs.TRAIN_TOKENS)
        raise ConfigError(
            f"cannot train token codec {codec.name!r} on the first {count:,} token vectors "
            f"({str(exc).strip().splitlines()[-1]}); ingest more text at once or use float16 or SQ8"
        ) from None
    store.set_blob("token_codec", codec.state())


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
