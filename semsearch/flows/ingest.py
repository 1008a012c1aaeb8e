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
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..config import DEFAULT_CODEC, DEFAULT_POOL, Settings
from ..core import codec as codecs
from ..core.pooling import pool_words
from ..core.types import Encoded, NewPassage, Span
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
    dropped: set[int]  # positions in the input of the rejected items and of repeated keys

    def keep(self, items: Iterable[Item]) -> Iterator[Document]:
        """The documents of a second read (the same input, read the same way) that were not
        rejected the first time."""
        return (i for n, i in enumerate(items) if n not in self.dropped and isinstance(i, Document))


def validate(items: Iterable[Item], skip: bool = False) -> Validation:
    """Read every record once before anything is written.

    Raises ``InputError`` (file:line) for a bad record or a key used twice, unless ``skip``, which
    collects them instead (the first use of a key wins).
    """
    seen: dict[str, str] = {}
    rejected: list[Rejected] = []
    dropped: set[int] = set()
    count = 0
    for n, item in enumerate(items):
        if isinstance(item, Rejected):
            rejected.append(item)
            dropped.add(n)
            continue
        if item.key in seen:
            problem = Rejected(
                item.source or f"<document {n + 1}>",
                f"id {item.key!r} is also used at {seen[item.key]}; ids must be unique "
                "(fix the data or choose another --id-field)",
            )
            if not skip:
                raise InputError(f"{problem.source}: {problem.message}")
            rejected.append(problem)
            dropped.add(n)
            continue
        seen[item.key] = item.source or f"<document {n + 1}>"
        count += 1
    return Validation(count, rejected, dropped)


def write_skipped(directory: Path, rejected: list[Rejected]) -> Path:
    """List the records an ingest skipped, with where they are and why, in ``STORE/skipped.jsonl``."""
    path = directory / "skipped.jsonl"
    path.write_text("".join(json.dumps({"source": r.source, "error": r.message}) + "\n" for r in rejected))
    return path


def prepare_store(store: Store, encoder: Encoder, settings: Settings) -> None:
    """Record the model in a new store, or check that an existing store was built with it."""
    if store.meta.model is None:
        codec = settings.token_codec or DEFAULT_CODEC
        codecs.get_codec(codec, encoder.dim)  # an unknown codec fails before anything is set
        pool = settings.token_pool or DEFAULT_POOL
        store.set_meta(StoreMeta.for_encoder(encoder, codec, settings.index, settings.long_documents, pool))
        return
    store.meta.check_encoder(encoder, store.path)
    store.meta.check_codec(settings.token_codec, settings.token_pool, store.path)


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


SEGMENT = 100_000  # characters tokenised at once: a 50 MB one-line document is cut into segments


def _split(docs: list[Document], encoder: Encoder, settings: Settings) -> list[list[Span]]:
    """Each document's passages. Texts up to ``SEGMENT`` characters are tokenised together; a
    longer one segment by segment (cut at white space), so that tokenising it takes bounded
    memory; no passage crosses a segment's end."""
    truncate = settings.long_documents == "truncate"
    short = [i for i, d in enumerate(docs) if len(d.text) <= SEGMENT]
    result: list[list[Span]] = [[] for _ in docs]
    for i, spans in zip(short, encoder.split([docs[i].text for i in short], settings.overlap_tokens, truncate)):
        result[i] = spans
    for i, doc in enumerate(docs):
        if len(doc.text) <= SEGMENT:
            continue
        for start, end in _segments(doc.text):
            (spans,) = encoder.split([doc.text[start:end]], settings.overlap_tokens, truncate)
            result[i] += [Span(s.start + start, s.end + start, s.n_tokens) for s in spans]
            if truncate:
                break
    return result


def _segments(text: str) -> Iterator[tuple[int, int]]:
    """[start, end) pieces of about ``SEGMENT`` characters that end at white space when they can."""
    start = 0
    while start < len(text):
        end = min(start + SEGMENT, len(text))
        if end < len(text):
            cut = max(text.rfind(" ", start + SEGMENT // 2, end), text.rfind("\n", start + SEGMENT // 2, end))
            end = cut + 1 if cut > start else end
        yield start, end
        start = end


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
    write is pending; its errors arrive through its future's ``result()``. ``progress`` hears of
    every encoded batch and every stored chunk.
    """
    started = time.perf_counter()
    prepare_store(store, encoder, settings)
    codec = store.codec()
    report = IngestReport(0, 0, 0, 0, 0, 0.0)
    tell = _Teller(report, progress, total)
    tell(0, 0)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="semsearch-writer") as writer:
        try:
            pending: Future[int] | None = None
            limit = settings.batch_size * settings.sort_window
            for chunk in _chunks(documents, encoder, settings):
                stored = store.documents.hashes([doc.key for doc, _ in chunk])
                todo = [(doc, spans) for doc, spans in chunk if stored.get(doc.key) != doc.content_hash]
                report.unchanged += len(chunk) - len(todo)
                for doc, spans in [(d, s) for d, s in todo if len(s) > limit]:
                    if pending is not None:
                        report.passages += pending.result()
                        pending = None
                    report.passages += _stream(store, encoder, writer, codec, doc, spans, settings, tell)
                    report.documents += 1
                    report.replaced += doc.key in stored
                    report.tokens += sum(span.n_tokens for span in spans)
                todo = [(d, s) for d, s in todo if len(s) <= limit]
                docs, tokens = _encode(encoder, todo, settings.batch_size, functools.partial(tell.within, len(chunk)), store.meta.token_pool)
                if docs and codec.needs_training:
                    train_codec(store, codec, [p.token_vectors for _, ps in docs for p in ps])
                if pending is not None:
                    report.passages += pending.result()
                pending = writer.submit(_write, store, docs, codec) if docs else None
                report.documents += len(todo)
                report.replaced += sum(1 for doc, _ in todo if doc.key in stored)
                report.tokens += tokens
                tell.chunk_done(len(chunk), sum(len(ps) for _, ps in docs))
                _release_freed_memory()
            if pending is not None:
                report.passages += pending.result()
        finally:
            writer.submit(store.release)  # the writer thread's connection ends with it
    tell(0, 0)
    # The index is brought up to date once, from SQLite, when the passages are stored: memory
    # during ingest stays bounded by the batches, and a crash leaves nothing to reconcile.
    keeper.replace(keeper.current(save=False))
    report.seconds = time.perf_counter() - started
    return report


class _Teller:
    """Tells ``progress`` how far an ingest is: documents read and encoded (within a chunk,
    in proportion to its passages), passages encoded, and passages stored."""

    def __init__(self, report: IngestReport, progress: Progress | None, total: int) -> None:
        self.report, self.progress, self.total = report, progress, total
        self.documents = 0  # in finished chunks
        self.encoded = 0  # passages, in finished chunks

    def __call__(self, chunk_documents: int, chunk_passages: int) -> None:
        if self.progress:
            self.progress(
                IngestProgress(
                    "encoding", self.documents + chunk_documents, self.total, self.encoded + chunk_passages, self.report.passages
                )
            )

    def within(self, chunk_documents: int, encoded: int, of: int) -> None:
        """``encoded`` of a chunk's ``of`` passages are encoded."""
        self(chunk_documents * encoded // max(of, 1), encoded)

    def chunk_done(self, documents: int, passages: int) -> None:
        self.documents += documents
        self.encoded += passages
        self(0, 0)


STREAM_BATCHES = 4  # batches in a part of a long document: a part of 256-token passages holds ~50 MB


def _stream(
    store: Store, encoder: Encoder, writer: ThreadPoolExecutor, codec: codecs.Codec, doc: Document, spans: list[Span],
    settings: Settings, tell: _Teller,
) -> int:
    """Encode and store one document with more passages than a chunk holds, part by part, in one
    transaction on the writer thread: memory stays bounded by a part, and readers still never see
    half a document. Returns its passages."""
    limit = settings.batch_size * STREAM_BATCHES
    parts = iter(range(0, len(spans), limit))

    def encoded(start: int) -> list[NewPassage]:
        ((_, passages),), _ = _encode(encoder, [(doc, spans[start : start + limit])], settings.batch_size, lambda done, of: None, store.meta.token_pool)
        for passage in passages:
            passage.ordinal += start
        return passages

    start = next(parts)
    passages = encoded(start)
    if codec.needs_training:  # a new store whose first document is long: train before the transaction
        train_codec(store, codec, [p.token_vectors for p in passages])
    opening = writer.submit(store.begin)
    begun: Future[None] | None = opening  # ``end`` is safe to call even if ``begin`` never ran
    try:
        opening.result()
        doc_id: int | None = None
        part: Future[int] | None = None
        while True:
            if part is not None:
                doc_id = part.result()  # the part before is stored (at most one waits): its document id
            part = writer.submit(store.documents.write_part, doc, passages, codec, doc_id)
            tell(0, start + len(passages))
            del passages
            _release_freed_memory()
            start = next(parts, -1)
            if start < 0:
                break
            passages = encoded(start)
        part.result()
        ending = writer.submit(store.end, True)
        begun = None  # from here only this commit ends the transaction
        ending.result()
    finally:
        if begun is not None:
            writer.submit(store.end, False).result()
    return len(spans)


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


def _encode(
    encoder: Encoder, todo: list[tuple[Document, list[Span]]], batch_size: int, on_batch: Callable[[int, int], None], pool: str = "pieces"
) -> tuple[Chunk, int]:
    """Encode a chunk's passages, shortest first (little padding): (documents with passages, tokens).
    ``on_batch(encoded, of)`` follows each batch; ``pool`` 'words' sums each word's pieces."""
    items = [(d, o, span) for d, (doc, spans) in enumerate(todo) for o, span in enumerate(spans)]
    items.sort(key=lambda item: item[2].n_tokens)
    per_doc: list[list[NewPassage | None]] = [[None] * len(spans) for _, spans in todo]
    tokens = done = 0
    batches = [items[start : start + batch_size] for start in range(0, len(items), batch_size)]
    texts = [[todo[d][0].text[span.start : span.end] for d, _, span in batch] for batch in batches]
    for batch, encoded in zip(batches, _passes(encoder, texts)):
        for (d, o, span), enc in zip(batch, encoded):
            tokens += len(enc.tokens.token_ids)
            kept = pool_words(enc.tokens, encoder.special_tokens) if pool == "words" else enc.tokens
            per_doc[d][o] = NewPassage(
                ordinal=o,
                char_start=span.start,
                char_end=span.end,
                vector=enc.vector,
                token_ids=kept.token_ids,
                offsets=kept.offsets,
                token_vectors=kept.vectors,
                pieces=kept.pieces,
            )
        done += len(batch)
        on_batch(done, len(items))
    docs = [(doc, [p for p in per_doc[d] if p is not None]) for d, (doc, _) in enumerate(todo)]
    return docs, tokens


def _passes(encoder: Encoder, batches: list[list[str]]) -> Iterator[list[Encoded]]:
    """The batches' encodings in order: all at once where the encoder spreads them over workers
    (``encode_many``: a Ray pool), else one forward pass after another."""
    many = getattr(encoder, "encode_many", None)
    if many is not None:
        yield from many(batches)
        return
    for batch in batches:
        yield encoder.encode(batch)
