"""The store's schema: numbered migrations (never edited once shipped) and opening a connection.

Each migration is a small function named for what it does; ``SCHEMA_VERSION`` is their count. A
store from a newer semsearch, or an SQLite file from another tool, is refused here.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import sqlite_utils
from sqlite_utils.migrations import Migrations

from ..errors import StoreError

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
    for sql in TOKEN_TRIGGERS:
        db.execute(sql)


TOKEN_TRIGGERS = (  # made again when a recode swaps the tokens table
    """CREATE TRIGGER token_stats_insert AFTER INSERT ON tokens BEGIN
        UPDATE passage_stats SET tokens = tokens + NEW.n,
            token_bytes = token_bytes + length(NEW.codes) WHERE id = 1;
    END""",
    """CREATE TRIGGER token_stats_delete AFTER DELETE ON tokens BEGIN
        UPDATE passage_stats SET tokens = tokens - OLD.n,
            token_bytes = token_bytes - length(OLD.codes) WHERE id = 1;
    END""",
)


# The lexical index's tokeniser: Porter stemming over unicode61 with diacritics folded
# (scripts/eval_hybrid.py measures it against plain unicode61 on SciFact and Reuters).
LEXICAL_TOKENIZER = "porter unicode61 remove_diacritics 2"
LEXICAL_TABLE = f"CREATE VIRTUAL TABLE passage_text USING fts5(text, tokenize = '{LEXICAL_TOKENIZER}')"


@migrations()
def m005_create_lexical_index(db: sqlite_utils.Database) -> None:
    """An FTS5 index of every passage's text, kept by triggers in the transaction that writes or
    deletes the passage, and built here for existing stores. The text is the passage's span of
    its document (documents are written before their passages, and deleted after them)."""
    db.execute(LEXICAL_TABLE)
    db.execute(
        """CREATE TRIGGER passage_text_insert AFTER INSERT ON passages BEGIN
            INSERT INTO passage_text (rowid, text)
                SELECT NEW.id, substr(d.text, NEW.char_start + 1, NEW.char_end - NEW.char_start)
                FROM documents d WHERE d.id = NEW.document_id;
        END"""
    )
    db.execute(
        """CREATE TRIGGER passage_text_delete AFTER DELETE ON passages BEGIN
            DELETE FROM passage_text WHERE rowid = OLD.id;
        END"""
    )
    db.execute(LEXICAL_FILL)


LEXICAL_FILL = (
    "INSERT INTO passage_text (rowid, text) SELECT p.id, substr(d.text, p.char_start + 1, p.char_end - p.char_start) "
    "FROM passages p JOIN documents d ON d.id = p.document_id"
)

@migrations()
def m006_add_token_pieces(db: sqlite_utils.Database) -> None:
    """Word-pooled token rows keep each row's piece count (NULL: one piece a row)."""
    db.execute("ALTER TABLE tokens ADD COLUMN pieces BLOB")


SCHEMA_VERSION = 6  # the number of migrations above


def connect(db_file: Path, read_only: bool = False) -> sqlite_utils.Database:
    """A connection in WAL mode with foreign keys on, waiting up to 30 s for another writer; or,
    for a store on a read-only mount, a read-only one (the journal mode is left as it is)."""
    try:
        if read_only:
            uri = f"file:{db_file}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError:  # a WAL file that cannot be opened: read it as it is on disk
                conn.close()
                conn = sqlite3.connect(f"file:{db_file}?immutable=1", uri=True, isolation_level=None, check_same_thread=False)
        else:
            conn = sqlite3.connect(str(db_file), timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return sqlite_utils.Database(conn)
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{db_file} is not a semsearch store ({exc}); move it away or choose another --store"
        ) from None


def inspect(db_file: Path) -> None:
    """Refuse a file that is not a semsearch store, or is from a newer semsearch, before anything
    is changed in it (not even its journal mode)."""
    try:
        conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=30.0)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:  # on a read-only mount a WAL store's -shm cannot be made: read the file as it is
            conn.close()
            conn = sqlite3.connect(f"file:{db_file}?immutable=1", uri=True)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{db_file} is not a semsearch store ({exc}); move it away or choose another --store") from None
    try:
        _refuse_foreign(sqlite_utils.Database(conn), db_file)
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"the database of {db_file.parent} cannot be read ({exc}); copy out what is readable with sqlite3's "
            ".recover, or ingest again into a new --store"
        ) from None
    finally:
        conn.close()


def _refuse_foreign(db: sqlite_utils.Database, db_file: Path) -> set[str]:
    try:
        tables = set(db.table_names())
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{db_file} is not a semsearch store ({exc}); move it away or choose another --store"
        ) from None
    if tables and "meta" not in tables:
        raise StoreError(
            f"{db_file} is an SQLite file from another tool (tables: {', '.join(sorted(tables))}); "
            "choose another --store"
        )
    if tables:
        row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        if row is None or row[0] != FORMAT:
            raise StoreError(f"{db_file} has no semsearch format marker; choose another --store")
        applied = len(migrations.applied(db))
        if applied > SCHEMA_VERSION:
            raise StoreError(
                f"{db_file} has schema version {applied}, newer than this semsearch's "
                f"{SCHEMA_VERSION}; upgrade semsearch (pip install -U semsearch)"
            )
    return tables


def upgrade(db: sqlite_utils.Database, db_file: Path, read_only: bool = False) -> bool:
    """Refuse foreign or newer files, then apply pending migrations; True for a new store."""
    tables = _refuse_foreign(db, db_file)
    if read_only:
        if len(migrations.applied(db)) != SCHEMA_VERSION:
            raise StoreError(f"{db_file} is read-only and needs an upgrade to schema {SCHEMA_VERSION}; open it once where it is writable")
        return False
    if tables:
        migrations.apply(db)
        return False
    with db.atomic():  # a new store: its tables and its format marker, or nothing (a kill in between)
        migrations.apply(db)
        db.execute("INSERT INTO meta (key, value) VALUES ('format', ?)", [FORMAT])
    return True


def schema_version(db: sqlite_utils.Database) -> int:
    return len(migrations.applied(db))
