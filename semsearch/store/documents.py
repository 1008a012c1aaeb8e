"""Documents and their passages (with float32 unit sentence vectors): writes and reads."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ..core import codec as codecs
from ..core.types import NewPassage, Passage
from ..errors import NotFoundError, StoreError
from .sql import Ids, in_chunks, next_id

if TYPE_CHECKING:
    from . import Store

PASSAGE_COLUMNS = (
    "p.id, d.key, p.ordinal, p.char_start, p.char_end, "
    "substr(d.text, p.char_start + 1, p.char_end - p.char_start) AS text, d.source, d.meta"
)


class DocumentLike(Protocol):
    """What the store keeps of a document (``semsearch.documents.Document`` is one)."""

    key: str
    text: str
    source: str
    meta: dict[str, Any]

    @property
    def content_hash(self) -> str: ...


@dataclass
class StoredDocument:
    """A stored document as ``semsearch list`` shows it."""

    key: str
    source: str
    ingested_at: float
    passages: int
    meta: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _meta_filters(filters: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """SQL conditions (with their bound values) for ``field == value`` on document metadata;
    dots reach nested fields."""
    clauses, params = [], []
    for name, value in filters:
        clauses.append("CAST(json_extract(d.meta, ?) AS TEXT) = ?")
        params += ["$." + ".".join(f'"{part}"' for part in name.split(".")), value]
    return clauses, params


def _document_row(doc_id: int, doc: DocumentLike, now: float) -> dict[str, Any]:
    return {
        "id": doc_id,
        "key": doc.key,
        "source": doc.source,
        "text": doc.text,
        "meta": json.dumps(doc.meta, ensure_ascii=False),
        "content_hash": doc.content_hash,
        "ingested_at": now,
    }


def _passage_row(passage_id: int, doc_id: int, p: NewPassage) -> dict[str, Any]:
    return {
        "id": passage_id,
        "document_id": doc_id,
        "ordinal": p.ordinal,
        "char_start": p.char_start,
        "char_end": p.char_end,
        "vector": codecs.f32_to_bytes(p.vector),
    }


def _passage(row: Any) -> Passage:
    pid, key, ordinal, start, end, text, source, meta = row
    return Passage(pid, key, ordinal, start, end, text, source, json.loads(meta))


class Documents:
    """The ``documents`` and ``passages`` tables of one store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # writes ------------------------------------------------------------------------------
    def write(self, docs: Sequence[tuple[DocumentLike, Sequence[NewPassage]]], codec: codecs.Codec) -> tuple[list[int], list[int]]:
        """Write documents with all their passages and tokens in one transaction.

        A stored document with the same key is replaced. Returns (new passage ids, replaced ids).
        """
        store = self._store
        new_ids: list[int] = []
        now = time.time()
        with store.writing():
            db = store.db
            replaced = self.delete([doc.key for doc, _ in docs])
            doc_id = next_id(db, "documents")
            passage_id = next_id(db, "passages")
            doc_rows, passage_rows, token_rows = [], [], []
            for doc, passages in docs:
                doc_rows.append(_document_row(doc_id, doc, now))
                for p in passages:
                    passage_rows.append(_passage_row(passage_id, doc_id, p))
                    token_rows.append(store.tokens.row(passage_id, p, codec))
                    new_ids.append(passage_id)
                    passage_id += 1
                doc_id += 1
            db.table("documents").insert_all(doc_rows)
            db.table("passages").insert_all(passage_rows)
            db.table("tokens").insert_all(token_rows)
        return new_ids, replaced

    def write_part(self, doc: DocumentLike, passages: Sequence[NewPassage], codec: codecs.Codec, doc_id: int | None) -> int:
        """Write part of one long document inside a transaction opened with ``Store.begin``: the
        first part (``doc_id`` None) replaces a stored document with the same key and adds the
        document row. Returns the document's id."""
        db = self._store.db
        assert db.conn.in_transaction, "write_part runs inside Store.begin() … Store.end()"
        if doc_id is None:
            self.delete([doc.key])
            doc_id = next_id(db, "documents")
            db.table("documents").insert(_document_row(doc_id, doc, time.time()))
        passage_id = next_id(db, "passages")
        rows, tokens = [], []
        for p in passages:
            rows.append(_passage_row(passage_id, doc_id, p))
            tokens.append(self._store.tokens.row(passage_id, p, codec))
            passage_id += 1
        db.table("passages").insert_all(rows)
        db.table("tokens").insert_all(tokens)
        return doc_id

    def delete(self, keys: Sequence[str]) -> list[int]:
        """Remove documents with their passages and tokens; returns the removed passage ids."""
        removed: list[int] = []
        with self._store.writing():
            db = self._store.db
            for key in keys:
                ids = [r[0] for r in db.execute(
                    "SELECT p.id FROM passages p JOIN documents d ON d.id = p.document_id WHERE d.key = ?", [key]
                ).fetchall()]
                db.execute(
                    "DELETE FROM tokens WHERE passage_id IN "
                    "(SELECT p.id FROM passages p JOIN documents d ON d.id = p.document_id WHERE d.key = ?)",
                    [key],
                )
                db.execute("DELETE FROM passages WHERE document_id IN (SELECT id FROM documents WHERE key = ?)", [key])
                db.execute("DELETE FROM documents WHERE key = ?", [key])
                removed.extend(ids)
        return removed

    # reads -------------------------------------------------------------------------------
    def hashes(self, keys: Sequence[str]) -> dict[str, str]:
        """Content hash of each of ``keys`` that is stored."""
        sql = "SELECT key, content_hash FROM documents WHERE key IN ({marks})"
        return {key: digest for key, digest in in_chunks(self._store.db, sql, keys)}

    def present(self, keys: set[str]) -> set[str]:
        return set(self.hashes(sorted(keys)))

    def listing(self, filters: Sequence[tuple[str, str]] = (), limit: int | None = None) -> list[StoredDocument]:
        """Stored documents in the order they were ingested, with their passage counts; ``filters``
        keep those whose metadata has ``field == value`` (as text) for every pair."""
        clauses, params = _meta_filters(filters)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        try:
            rows = self._store.db.execute(
                "SELECT d.key, d.source, d.ingested_at, d.meta, "
                "(SELECT count(*) FROM passages p WHERE p.document_id = d.id) AS passages "
                f"FROM documents d {where} ORDER BY d.id LIMIT ?",
                [*params, -1 if limit is None else limit],
            ).fetchall()
        except sqlite3.OperationalError as exc:
            raise StoreError(f"cannot filter on {[n for n, _ in filters]}: {exc}; use plain field names") from None
        return [StoredDocument(key, source, ingested or 0.0, passages, json.loads(meta)) for key, source, ingested, meta, passages in rows]

    def count(self) -> int:
        return int(self._store.db.execute("SELECT count(*) FROM documents").fetchone()[0])

    def keys_of(self, passage_ids: Ids) -> dict[int, str]:
        """The document key of each stored passage among ``passage_ids``."""
        sql = "SELECT p.id, d.key FROM passages p JOIN documents d ON d.id = p.document_id WHERE p.id IN ({marks})"
        return {pid: key for pid, key in in_chunks(self._store.db, sql, passage_ids)}

    def passages(self, ids: Ids) -> dict[int, Passage]:
        sql = f"SELECT {PASSAGE_COLUMNS} FROM passages p JOIN documents d ON d.id = p.document_id WHERE p.id IN ({{marks}})"
        return {row[0]: _passage(row) for row in in_chunks(self._store.db, sql, ids)}

    def passage(self, passage_id: int) -> Passage:
        row = self.passages([passage_id]).get(passage_id)
        if row is None:
            raise NotFoundError(self._store.unknown_passage(passage_id))
        return row

    def all_passage_ids(self) -> NDArray[np.int64]:
        rows = self._store.db.execute("SELECT id FROM passages ORDER BY id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def passage_ids_where(self, filters: Sequence[tuple[str, str]]) -> NDArray[np.int64]:
        """Passages whose document metadata has ``field == value`` for every filter (as text)."""
        clauses, params = _meta_filters(filters)
        try:
            rows = self._store.db.execute(
                "SELECT p.id FROM passages p JOIN documents d ON d.id = p.document_id WHERE " + " AND ".join(clauses),
                params,
            ).fetchall()
        except sqlite3.OperationalError as exc:
            raise StoreError(f"cannot filter on {[n for n, _ in filters]}: {exc}; use plain field names") from None
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def iter_vectors(
        self, after_id: int = 0, batch: int = 10_000, on_damaged: Callable[[int], object] | None = None
    ) -> Iterator[tuple[NDArray[np.int64], NDArray[np.float32]]]:
        """Stored sentence vectors in id order, in batches: (ids, (k, dim) matrix). A vector of the
        wrong length, or not finite, is left out and its passage id given to ``on_damaged``."""
        last, dim = after_id, self._store.meta.dim
        while True:
            rows = self._store.db.execute(
                "SELECT id, vector FROM passages WHERE id > ? ORDER BY id LIMIT ?", [last, batch]
            ).fetchall()
            if not rows:
                return
            last = int(rows[-1][0])
            sound = [(pid, blob) for pid, blob in rows if len(blob) == 4 * dim]
            ids = np.fromiter((r[0] for r in sound), dtype=np.int64, count=len(sound))
            vectors = np.vstack([codecs.f32_from_bytes(r[1]) for r in sound]) if sound else np.zeros((0, dim), np.float32)
            finite = np.isfinite(vectors).all(axis=1)
            for pid in {r[0] for r in rows} - set(ids[finite].tolist()):
                if on_damaged is not None:
                    on_damaged(int(pid))
            if finite.any():
                yield ids[finite], vectors[finite]

    def count_after(self, passage_id: int) -> int:
        """How many passages have an id above ``passage_id``."""
        return int(self._store.db.execute("SELECT count(*) FROM passages WHERE id > ?", [passage_id]).fetchone()[0])

    def vectors_for(self, ids: Ids) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """(ids found, their sentence vectors) for the given passage ids; damaged vectors are left out."""
        dim = self._store.meta.dim
        rows = [r for r in in_chunks(self._store.db, "SELECT id, vector FROM passages WHERE id IN ({marks})", ids) if len(r[1]) == 4 * dim]
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, self._store.meta.dim), np.float32)
        return np.array([r[0] for r in rows], dtype=np.int64), np.vstack([codecs.f32_from_bytes(r[1]) for r in rows])

    def vector(self, passage_id: int) -> NDArray[np.float32]:
        row = self._store.db.execute("SELECT vector FROM passages WHERE id = ?", [passage_id]).fetchone()
        if row is None:
            raise NotFoundError(self._store.unknown_passage(passage_id))
        vector = codecs.f32_from_bytes(row[0])
        if len(vector) != self._store.meta.dim or not np.isfinite(vector).all():
            raise StoreError(f"passage {passage_id}'s sentence vector is damaged; run 'semsearch check --repair'")
        return vector
