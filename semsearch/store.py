"""The store's SQLite database (through sqlite-utils): schema, migrations, reads and writes.

SQLite is the truth: documents, passages with their float32 unit sentence vectors, token vectors
(one blob per passage), cached queries and ``meta``. The FAISS index is derived from it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils
from numpy.typing import NDArray
from sqlite_utils.migrations import Migrations

from . import codec as codecs
from .errors import NotFoundError, StoreError

DB_NAME = "semsearch.db"
FORMAT = "semsearch-store"
migrations = Migrations("semsearch")


@migrations()
def m001_create_tables(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE documents (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL UNIQUE,
            source TEXT NOT NULL,
            text TEXT NOT NULL,
            meta TEXT NOT NULL,
            content_hash TEXT NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE passages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            document_id INTEGER NOT NULL REFERENCES documents(id),
            ordinal INTEGER NOT NULL,
            char_start INTEGER NOT NULL,
            char_end INTEGER NOT NULL,
            vector BLOB NOT NULL)"""
    )
    db.execute("CREATE INDEX passages_document ON passages(document_id)")
    db.execute(
        """CREATE TABLE tokens (
            passage_id INTEGER PRIMARY KEY REFERENCES passages(id),
            n INTEGER NOT NULL,
            token_ids BLOB NOT NULL,
            offsets BLOB NOT NULL,
            codes BLOB NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE queries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            text TEXT NOT NULL,
            created REAL NOT NULL,
            n INTEGER NOT NULL,
            token_ids BLOB NOT NULL,
            offsets BLOB NOT NULL,
            vectors BLOB NOT NULL,
            vector BLOB NOT NULL)"""
    )


@migrations()
def m002_add_document_ingested_at(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE documents ADD COLUMN ingested_at REAL")
    db.execute("UPDATE documents SET ingested_at = ? WHERE ingested_at IS NULL", [time.time()])


@migrations()
def m003_create_blobs(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE blobs (key TEXT PRIMARY KEY, value BLOB NOT NULL)")


@migrations()
def m004_count_passages(db: sqlite_utils.Database) -> None:
    """Keep the passages' count and highest id, and the stored tokens' count and bytes, in one
    row kept by triggers: a search can tell whether its loaded index is current, and ``info``
    can report sizes, without scanning the tables."""
    db.execute(
        """CREATE TABLE passage_stats (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            count INTEGER NOT NULL,
            max_id INTEGER NOT NULL,
            tokens INTEGER NOT NULL,
            token_bytes INTEGER NOT NULL)"""
    )
    db.execute(
        "INSERT INTO passage_stats SELECT 1, (SELECT count(*) FROM passages), "
        "(SELECT coalesce(max(id), 0) FROM passages), (SELECT coalesce(sum(n), 0) FROM tokens), "
        "(SELECT coalesce(sum(length(codes)), 0) FROM tokens)"
    )
    db.execute(
        """CREATE TRIGGER passage_stats_insert AFTER INSERT ON passages BEGIN
            UPDATE passage_stats SET count = count + 1, max_id = max(max_id, NEW.id) WHERE id = 1;
        END"""
    )
    db.execute(
        """CREATE TRIGGER passage_stats_delete AFTER DELETE ON passages BEGIN
            UPDATE passage_stats SET count = count - 1,
                max_id = CASE WHEN OLD.id >= max_id
                              THEN (SELECT coalesce(max(id), 0) FROM passages) ELSE max_id END
            WHERE id = 1;
        END"""
    )
    db.execute(
        """CREATE TRIGGER token_stats_insert AFTER INSERT ON tokens BEGIN
            UPDATE passage_stats SET tokens = tokens + NEW.n,
                token_bytes = token_bytes + length(NEW.codes) WHERE id = 1;
        END"""
    )
    db.execute(
        """CREATE TRIGGER token_stats_delete AFTER DELETE ON tokens BEGIN
            UPDATE passage_stats SET tokens = tokens - OLD.n,
                token_bytes = token_bytes - length(OLD.codes) WHERE id = 1;
        END"""
    )


SCHEMA_VERSION = 4  # the number of migrations above


@dataclass
class TokenData:
    """A text's token vectors with their ids and character offsets into that text."""

    text: str
    vectors: NDArray[np.float32]
    token_ids: NDArray[np.int32]
    offsets: NDArray[np.int32]


@dataclass
class PassageRow:
    """A stored passage with its document."""

    id: int
    document_key: str
    ordinal: int
    char_start: int
    char_end: int
    text: str
    source: str
    meta: dict[str, Any]


@dataclass
class NewPassage:
    """What ingest writes for one passage."""

    ordinal: int
    char_start: int
    char_end: int
    vector: NDArray[np.float32]
    token_ids: NDArray[np.int32]
    offsets: NDArray[np.int32]
    token_vectors: NDArray[np.float32]


@dataclass
class CachedQuery:
    id: int
    text: str
    created: float
    vector: NDArray[np.float32]
    tokens: TokenData


def store_exists(path: str | Path) -> bool:
    return (Path(path) / DB_NAME).is_file()


class Store:
    """One store directory's database. Use ``Store.open``; close with ``close`` or ``with``."""

    def __init__(self, path: Path, db: sqlite_utils.Database) -> None:
        self.path = path
        self.db = db
        self._meta_cache: dict[str, str] | None = None

    @classmethod
    def open(cls, path: str | Path, create: bool = False) -> Store:
        directory = Path(path)
        db_file = directory / DB_NAME
        if not db_file.is_file():
            if not create:
                raise StoreError(
                    f"no store at {directory} (no {DB_NAME}); run 'semsearch ingest' first "
                    "or point --store / SEMSEARCH_STORE at an existing store"
                )
            directory.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(str(db_file), timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            db = sqlite_utils.Database(conn)
            tables = set(db.table_names())
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{db_file} is not a semsearch store ({exc}); move it away or choose another --store"
            ) from None
        store = cls(directory, db)
        if tables and "meta" not in tables:
            raise StoreError(
                f"{db_file} is an SQLite file from another tool (tables: {', '.join(sorted(tables))}); "
                "choose another --store"
            )
        if tables and store.meta("format") != FORMAT:
            raise StoreError(f"{db_file} has no semsearch format marker; choose another --store")
        if tables:
            applied = len(migrations.applied(db))
            if applied > SCHEMA_VERSION:
                raise StoreError(
                    f"{db_file} has schema version {applied}, newer than this semsearch's "
                    f"{SCHEMA_VERSION}; upgrade semsearch (pip install -U semsearch)"
                )
        migrations.apply(db)
        if not tables:
            store.set_meta({"format": FORMAT})
        return store

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """A write transaction taken up front (BEGIN IMMEDIATE), so a concurrent writer makes
        this one wait for the busy timeout instead of failing when a read would turn into a write."""
        conn = self.db.conn
        if conn.in_transaction:
            with self.db.atomic():
                yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # meta ---------------------------------------------------------------------------------
    def meta(self, key: str, default: str | None = None) -> str | None:
        if self._meta_cache is None:
            self._meta_cache = {r["key"]: r["value"] for r in self.db["meta"].rows}
        return self._meta_cache.get(key, default)

    def set_meta(self, values: dict[str, Any]) -> None:
        rows = [{"key": k, "value": str(v)} for k, v in values.items()]
        self.db["meta"].upsert_all(rows, pk="key")
        self._meta_cache = None

    def blob(self, key: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM blobs WHERE key = ?", [key]).fetchone()
        return None if row is None else bytes(row[0])

    def set_blob(self, key: str, value: bytes) -> None:
        with self.writing():
            self.db.execute("INSERT OR REPLACE INTO blobs (key, value) VALUES (?, ?)", [key, value])

    def codec(self) -> codecs.Codec:
        """The store's token codec, trained state included."""
        return codecs.get_codec(self.meta("token_codec") or "float16", int(self.meta("dim") or 0), self.blob("token_codec"))

    def schema_version(self) -> int:
        return len(migrations.applied(self.db))

    # writes --------------------------------------------------------------------------------
    def document_hashes(self, keys: Sequence[str]) -> dict[str, str]:
        """Content hash of each of ``keys`` that is stored."""
        found: dict[str, str] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for key, digest in self.db.execute(
                f"SELECT key, content_hash FROM documents WHERE key IN ({marks})", chunk
            ).fetchall():
                found[key] = digest
        return found

    def _next_id(self, table: str) -> int:
        row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", [table]).fetchone()
        return (row[0] if row else 0) + 1

    def delete_documents(self, keys: Sequence[str]) -> list[int]:
        """Remove documents with their passages and tokens; returns the removed passage ids."""
        removed: list[int] = []
        for key in keys:
            ids = [
                r[0]
                for r in self.db.execute(
                    "SELECT p.id FROM passages p JOIN documents d ON d.id = p.document_id "
                    "WHERE d.key = ?",
                    [key],
                ).fetchall()
            ]
            self.db.execute(
                "DELETE FROM tokens WHERE passage_id IN "
                "(SELECT p.id FROM passages p JOIN documents d ON d.id = p.document_id WHERE d.key = ?)",
                [key],
            )
            self.db.execute(
                "DELETE FROM passages WHERE document_id IN (SELECT id FROM documents WHERE key = ?)",
                [key],
            )
            self.db.execute("DELETE FROM documents WHERE key = ?", [key])
            removed.extend(ids)
        return removed

    def write_documents(
        self,
        docs: Sequence[tuple[Any, Sequence[NewPassage]]],
        codec: codecs.Codec,
    ) -> tuple[list[int], list[int]]:
        """Write documents with all their passages in one transaction.

        ``docs`` pairs a ``documents.Document`` with its passages. A stored document with the same
        key is replaced. Returns (new passage ids, replaced passage ids).
        """
        new_ids: list[int] = []
        now = time.time()
        with self.writing():
            replaced = self.delete_documents([doc.key for doc, _ in docs])
            doc_id = self._next_id("documents")
            passage_id = self._next_id("passages")
            doc_rows, passage_rows, token_rows = [], [], []
            for doc, passages in docs:
                doc_rows.append(
                    {
                        "id": doc_id,
                        "key": doc.key,
                        "source": doc.source,
                        "text": doc.text,
                        "meta": json.dumps(doc.meta, ensure_ascii=False),
                        "content_hash": doc.content_hash,
                        "ingested_at": now,
                    }
                )
                for p in passages:
                    passage_rows.append(
                        {
                            "id": passage_id,
                            "document_id": doc_id,
                            "ordinal": p.ordinal,
                            "char_start": p.char_start,
                            "char_end": p.char_end,
                            "vector": codecs.f32_to_bytes(p.vector),
                        }
                    )
                    token_rows.append(
                        {
                            "passage_id": passage_id,
                            "n": len(p.token_ids),
                            "token_ids": codecs.ints_to_bytes(p.token_ids),
                            "offsets": codecs.ints_to_bytes(p.offsets),
                            "codes": codec.encode(p.token_vectors),
                        }
                    )
                    new_ids.append(passage_id)
                    passage_id += 1
                doc_id += 1
            self.db["documents"].insert_all(doc_rows)
            self.db["passages"].insert_all(passage_rows)
            self.db["tokens"].insert_all(token_rows)
        return new_ids, replaced

    # reads ---------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        docs = self.db.execute("SELECT count(*) FROM documents").fetchone()[0]
        passages, tokens = self.db.execute("SELECT count, tokens FROM passage_stats WHERE id = 1").fetchone()
        return {"documents": docs, "passages": passages, "tokens": tokens}

    def token_bytes(self) -> int:
        return int(self.db.execute("SELECT token_bytes FROM passage_stats WHERE id = 1").fetchone()[0])

    def all_passage_ids(self) -> NDArray[np.int64]:
        rows = self.db.execute("SELECT id FROM passages ORDER BY id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def passage_ids_where(self, filters: Sequence[tuple[str, str]]) -> NDArray[np.int64]:
        """Passages whose document metadata has ``field == value`` for every filter (as text)."""
        clauses, params = [], []
        for name, value in filters:
            clauses.append("CAST(json_extract(d.meta, ?) AS TEXT) = ?")
            params += ["$." + ".".join(f'"{part}"' for part in name.split(".")), value]
        try:
            rows = self.db.execute(
                "SELECT p.id FROM passages p JOIN documents d ON d.id = p.document_id WHERE "
                + " AND ".join(clauses),
                params,
            ).fetchall()
        except sqlite3.OperationalError as exc:
            raise StoreError(f"cannot filter on {[n for n, _ in filters]}: {exc}; use plain field names") from None
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def iter_tokens(self, batch: int = 1000) -> Iterator[tuple[int, int, bytes, bytes, bytes]]:
        """(passage id, n, token ids, offsets, codes) of every stored passage, in id order."""
        last = 0
        while True:
            rows = self.db.execute(
                "SELECT passage_id, n, token_ids, offsets, codes FROM tokens WHERE passage_id > ? "
                "ORDER BY passage_id LIMIT ?",
                [last, batch],
            ).fetchall()
            if not rows:
                return
            yield from rows
            last = rows[-1][0]

    def passage_fingerprint(self) -> tuple[int, int]:
        """(count, max id) of the stored passages: what a synced index must hold.

        Read from the row that triggers keep current (migration m004), not counted.
        """
        count, top = self.kept_stats()[:2]
        return count, top

    def kept_stats(self) -> tuple[int, int, int, int]:
        """(passages, max id, tokens, token bytes) as the triggers kept them."""
        return tuple(self.db.execute("SELECT count, max_id, tokens, token_bytes FROM passage_stats WHERE id = 1").fetchone())  # type: ignore[return-value]

    def counted_stats(self) -> tuple[int, int, int, int]:
        """The same four, counted from the tables (what ``check`` compares)."""
        count, top = self.db.execute("SELECT count(*), coalesce(max(id), 0) FROM passages").fetchone()
        tokens, size = self.db.execute("SELECT coalesce(sum(n), 0), coalesce(sum(length(codes)), 0) FROM tokens").fetchone()
        return count, top, tokens, size

    def recount_stats(self) -> None:
        with self.writing():
            self.db.execute(
                "UPDATE passage_stats SET count = ?, max_id = ?, tokens = ?, token_bytes = ? WHERE id = 1",
                list(self.counted_stats()),
            )

    def iter_vectors(
        self, after_id: int = 0, batch: int = 10_000
    ) -> Iterator[tuple[NDArray[np.int64], NDArray[np.float32]]]:
        """Stored sentence vectors in id order, in batches: (ids, (k, dim) matrix)."""
        last = after_id
        while True:
            rows = self.db.execute(
                "SELECT id, vector FROM passages WHERE id > ? ORDER BY id LIMIT ?", [last, batch]
            ).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vectors = np.vstack([codecs.f32_from_bytes(r[1]) for r in rows])
            yield ids, vectors
            last = int(ids[-1])

    def vectors_for(self, ids: Sequence[int]) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """(ids found, their sentence vectors) for the given passage ids."""
        found, vectors = [], []
        for start in range(0, len(ids), 500):
            chunk = [int(i) for i in ids[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            for pid, blob in self.db.execute(f"SELECT id, vector FROM passages WHERE id IN ({marks})", chunk):
                found.append(pid)
                vectors.append(codecs.f32_from_bytes(blob))
        if not found:
            return np.zeros(0, np.int64), np.zeros((0, int(self.meta("dim") or 0)), np.float32)
        return np.array(found, dtype=np.int64), np.vstack(vectors)

    def passage_vector(self, passage_id: int) -> NDArray[np.float32]:
        row = self.db.execute("SELECT vector FROM passages WHERE id = ?", [passage_id]).fetchone()
        if row is None:
            raise NotFoundError(self._unknown_passage(passage_id))
        return codecs.f32_from_bytes(row[0])

    def _unknown_passage(self, passage_id: int) -> str:
        count, top = self.passage_fingerprint()
        return (
            f"no passage with id {passage_id} in {self.path} ({count} passages, ids up to {top}); "
            "take an id from 'semsearch search'"
        )

    def passages(self, ids: Sequence[int]) -> dict[int, PassageRow]:
        found: dict[int, PassageRow] = {}
        for start in range(0, len(ids), 500):
            chunk = [int(i) for i in ids[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                "SELECT p.id, d.key, p.ordinal, p.char_start, p.char_end, "
                "substr(d.text, p.char_start + 1, p.char_end - p.char_start), d.source, d.meta "
                f"FROM passages p JOIN documents d ON d.id = p.document_id WHERE p.id IN ({marks})",
                chunk,
            ).fetchall()
            for r in rows:
                found[r[0]] = PassageRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]))
        return found

    def document_keys(self, passage_ids: Sequence[int]) -> dict[int, str]:
        """The document key of each stored passage among ``passage_ids``."""
        found: dict[int, str] = {}
        for start in range(0, len(passage_ids), 500):
            chunk = [int(i) for i in passage_ids[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            for pid, key in self.db.execute(
                f"SELECT p.id, d.key FROM passages p JOIN documents d ON d.id = p.document_id WHERE p.id IN ({marks})",
                chunk,
            ).fetchall():
                found[pid] = key
        return found

    def document_keys_present(self, keys: set[str]) -> set[str]:
        return set(self.document_hashes(sorted(keys)))

    def passage(self, passage_id: int) -> PassageRow:
        row = self.passages([passage_id]).get(passage_id)
        if row is None:
            raise NotFoundError(self._unknown_passage(passage_id))
        return row

    def passage_tokens(self, passage_id: int, codec: codecs.Codec) -> TokenData:
        """A stored passage's text and decoded token vectors, in one read."""
        row = self.db.execute(
            "SELECT t.n, t.token_ids, t.offsets, t.codes, p.vector, "
            "substr(d.text, p.char_start + 1, p.char_end - p.char_start) "
            "FROM tokens t JOIN passages p ON p.id = t.passage_id JOIN documents d ON d.id = p.document_id "
            "WHERE t.passage_id = ?",
            [passage_id],
        ).fetchone()
        if row is None:
            raise NotFoundError(self._unknown_passage(passage_id))
        n, ids, offsets, codes, vector, text = row
        return TokenData(
            text=text,
            vectors=codec.decode(codes, n, codecs.f32_from_bytes(vector)),
            token_ids=codecs.ints_from_bytes(ids),
            offsets=codecs.ints_from_bytes(offsets, 2),
        )

    # query cache ---------------------------------------------------------------------------
    def save_query(self, vector: NDArray[np.float32], tokens: TokenData, keep: int) -> int:
        with self.writing():
            qid = self._next_id("queries")
            self.db["queries"].insert(
                {
                    "id": qid,
                    "text": tokens.text,
                    "created": time.time(),
                    "n": len(tokens.token_ids),
                    "token_ids": codecs.ints_to_bytes(tokens.token_ids),
                    "offsets": codecs.ints_to_bytes(tokens.offsets),
                    "vectors": codecs.f32_to_bytes(tokens.vectors),
                    "vector": codecs.f32_to_bytes(vector),
                }
            )
            self.db.execute("DELETE FROM queries WHERE id <= ?", [qid - keep])
        return qid

    def cached_query(self, query_id: int | None = None) -> CachedQuery:
        """The cached query ``query_id``, or the most recent one."""
        if query_id is None:
            row = self.db.execute("SELECT * FROM queries ORDER BY id DESC LIMIT 1").fetchone()
            if row is None:
                raise NotFoundError(
                    f"no search has been run on {self.path} yet; run 'semsearch search \"...\"' "
                    "first, or pass --query TEXT or --against ID"
                )
        else:
            row = self.db.execute("SELECT * FROM queries WHERE id = ?", [query_id]).fetchone()
            if row is None:
                raise NotFoundError(
                    f"no cached query with id {query_id}; only the most recent queries are kept "
                    "(setting query_cache); pass --query TEXT instead"
                )
        qid, text, created, n, ids, offsets, vectors, vector = row
        dim = len(vector) // 4
        return CachedQuery(
            id=qid,
            text=text,
            created=created,
            vector=codecs.f32_from_bytes(vector),
            tokens=TokenData(
                text=text,
                vectors=codecs.f32_from_bytes(vectors).reshape(n, dim),
                token_ids=codecs.ints_from_bytes(ids),
                offsets=codecs.ints_from_bytes(offsets, 2),
            ),
        )

    def file_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())
