"""The store's SQLite database (through sqlite-utils): the only package that executes SQL.

SQLite is the truth: documents, passages with their float32 unit sentence vectors, token vectors
(one blob per passage), cached queries and ``meta``. The FAISS index is derived from it.

One ``Store`` may be shared by threads: each thread reads through its own connection, and
writes take one lock (then ``BEGIN IMMEDIATE``), so one thread of this process writes at a time.
One job per module: ``schema`` (migrations), ``meta`` (``StoreMeta``), ``documents`` (documents
and passages), ``tokens``, ``queries`` (the query cache), ``stats`` (kept counts), ``checks``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from ..core import codec as codecs
from ..core.limits import bounded_memory
from ..core.types import NewPassage, Passage, TokenData
from ..errors import StoreError
from . import meta as meta_table
from .checks import Checks
from .documents import Documents, StoredDocument
from .lexical import MARK_END, MARK_START, Lexical
from .lock import held_write_lock, write_lock
from .meta import StoreMeta
from .queries import CachedQuery, Queries
from .schema import DB_NAME, FORMAT, SCHEMA_VERSION, connect, inspect, migrations, schema_version, upgrade
from .stats import PassageStats, Stats
from .tokens import Tokens

DatabaseError = sqlite3.DatabaseError  # what SQLite raises, for front ends to turn into advice


class StoreBusy(StoreError):
    """Raised by ``Store.writing(wait=…)`` when another writer holds the store longer than that."""

__all__ = [
    "DB_NAME",
    "DatabaseError",
    "FORMAT",
    "MARK_END",
    "MARK_START",
    "SCHEMA_VERSION",
    "CachedQuery",
    "NewPassage",
    "Passage",
    "PassageStats",
    "Store",
    "StoreBusy",
    "StoreMeta",
    "StoredDocument",
    "TokenData",
    "held_write_lock",
    "migrations",
    "store_exists",
    "write_lock",
]


def store_exists(path: str | Path) -> bool:
    return (Path(path) / DB_NAME).is_file()


class Store:
    """One store directory's database. Use ``Store.open``; close with ``close`` or ``with``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db_file = path / DB_NAME
        self._local = threading.local()
        self._connections: list[sqlite_utils.Database] = []
        self._guard = threading.Lock()
        self._closed = False
        self.read_only = False  # a store on a read-only mount: search, explain and info only
        self._write = threading.RLock()
        self._codec: codecs.Codec | None = None
        self._codec_version: str | None = None
        self._codec_lock = threading.Lock()
        self.meta = StoreMeta()
        self.documents = Documents(self)
        self.tokens = Tokens(self)
        self.queries = Queries(self)
        self.stats = Stats(self)
        self.checks = Checks(self)
        self.lexical = Lexical(self)

    @classmethod
    def open(cls, path: str | Path, create: bool = False) -> Store:
        directory = Path(path)
        store = cls(directory)
        if directory.exists() and not directory.is_dir():
            raise StoreError(f"{directory} is a file, not a store directory; choose another --store")
        if not store.db_file.is_file():
            if not create:
                raise StoreError(
                    f"no store at {directory} (no {DB_NAME}); run 'semsearch ingest' first "
                    "or point --store / SEMSEARCH_STORE at an existing store"
                )
            directory.mkdir(parents=True, exist_ok=True)
        else:
            inspect(store.db_file)
            store.read_only = not (os.access(store.db_file, os.W_OK) and os.access(directory, os.W_OK))
        try:
            upgrade(store.db, store.db_file, store.read_only)
            store.refresh_meta()
        except sqlite3.DatabaseError as exc:
            store.close()
            raise StoreError(
                f"the database of {directory} cannot be read ({exc}); copy out what is readable with sqlite3's "
                ".recover, or ingest again into a new --store"
            ) from None
        except BaseException:
            store.close()
            raise
        return store

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's connection (made on first use)."""
        db: sqlite_utils.Database | None = getattr(self._local, "db", None)
        if db is None:
            with self._guard:
                if self._closed:
                    raise StoreError(f"the store at {self.path} was closed; open it again")
                db = connect(self.db_file, self.read_only)
                self._connections.append(db)
            self._local.db = db
        return db

    def release(self) -> None:
        """Close this thread's connection (a worker thread that is done with the store)."""
        db: sqlite_utils.Database | None = getattr(self._local, "db", None)
        if db is not None:
            self._local.db = None
            with self._guard:
                if db in self._connections:  # else the store was closed meanwhile, and this with it
                    self._connections.remove(db)
            db.close()

    def close(self) -> None:
        with self._guard:
            connections, self._connections = self._connections, []
            self._closed = True
        for db in connections:
            db.close()
        self._local = threading.local()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _writable(self) -> None:
        if self.read_only:
            raise StoreError(f"{self.path} is read-only; search, explain and info work there, other commands need a writable store")

    @contextmanager
    def writing(self, wait: float | None = None) -> Iterator[None]:
        """A write transaction taken up front (BEGIN IMMEDIATE), one thread at a time, so a
        concurrent writer makes this one wait instead of failing when a read turns into a write.
        Nested calls join the outer transaction. With ``wait``, give up after that many seconds
        (``StoreBusy``) instead of waiting up to 30 s for another writer."""
        self._writable()
        if not self._write.acquire(timeout=-1 if wait is None else wait):
            raise StoreBusy(f"{self.path} is being written by another thread")
        try:
            conn = self.db.conn
            if conn.in_transaction:
                yield
                return
            if wait is not None:
                conn.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if wait is not None and ("locked" in str(exc) or "busy" in str(exc)):
                    raise StoreBusy(f"{self.path} is being written by another process") from None
                raise
            finally:
                if wait is not None:
                    conn.execute("PRAGMA busy_timeout = 30000")
            try:
                yield
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            self._write.release()

    def begin(self) -> None:
        """Open a write transaction that spans several calls on this thread (one long document
        written part by part); ``end`` commits or rolls it back. Holds the write lock until then."""
        self._writable()
        self._write.acquire()
        try:
            self.db.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._write.release()
            raise
        self._local.long = True

    def end(self, commit: bool) -> None:
        """Close what ``begin`` opened on this thread (a no-op when nothing is open): commit, or
        roll back, also when the commit fails; the write lock is released once."""
        if not getattr(self._local, "long", False):
            return
        self._local.long = False
        conn = self.db.conn
        try:
            if conn.in_transaction:
                try:
                    conn.execute("COMMIT" if commit else "ROLLBACK")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        finally:
            self._write.release()

    # meta and blobs --------------------------------------------------------------------------
    def refresh_meta(self) -> StoreMeta:
        """Read ``meta`` again (another process may have switched the index type)."""
        self.meta = meta_table.read(self.db, self.path)
        return self.meta

    def set_meta(self, values: dict[str, Any]) -> None:
        with self.writing():
            meta_table.write(self.db, values)
        self.refresh_meta()
        self._codec = None  # the codec follows the meta (dim, token_codec)

    def blob(self, key: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM blobs WHERE key = ?", [key]).fetchone()
        return None if row is None else bytes(row[0])

    def set_blob(self, key: str, value: bytes) -> None:
        with self.writing():
            self.db.execute("INSERT OR REPLACE INTO blobs (key, value) VALUES (?, ?)", [key, value])
        self._codec = None

    def codec(self) -> codecs.Codec:
        """The store's token codec, trained state included: read once, and again after another
        process recoded the tokens (``meta.token_version`` moved)."""
        with self._codec_lock:
            row = self.db.execute("SELECT value FROM meta WHERE key = 'token_version'").fetchone()
            version = None if row is None else str(row[0])
            if self._codec is None or version != self._codec_version:
                if version != self._codec_version:
                    self.refresh_meta()
                self._codec = codecs.get_codec(self.meta.token_codec, self.meta.dim, self.blob("token_codec"), bounded_memory)
                self._codec_version = version
            codec = self._codec
        return codec

    def schema_version(self) -> int:
        return schema_version(self.db)

    def quick_check(self) -> list[str]:
        """SQLite's own page check: empty when the file is sound."""
        try:
            rows = self.db.execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        found = [str(r[0]) for r in rows]
        return [] if found == ["ok"] else found

    # sizes and messages -------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Move the write-ahead log into the database file, so that sizes on disk are what they
        will stay (a reader holding an old snapshot can leave part of it for later)."""
        if not self.read_only:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def vacuum(self) -> None:
        """Rewrite the database file without its free pages (after a recode dropped the old tokens)."""
        with self._write:
            self.db.execute("VACUUM")
        self.checkpoint()

    def file_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())

    def unknown_passage(self, passage_id: int) -> str:
        count, top = self.stats.kept().fingerprint
        return (
            f"no passage with id {passage_id} in {self.path} ({count} passages, ids up to {top}); "
            "take an id from 'semsearch search'"
        )
