"""The lexical index: SQLite FTS5 over each passage's text, BM25 ranking, and its explanation.

Triggers (schema m005) keep ``passage_text`` in step with ``passages`` inside the transaction
that writes or deletes them. Queries arrive as plain terms; each is quoted as an FTS5 phrase, so no
query text is ever parsed as FTS5 syntax, and the expression is a bound parameter. Scores are
FTS5's ``bm25()`` negated (higher is better). BM25 is a sum over the query's terms, so a single-term
query's score for a passage is exactly that term's part of the whole score.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import StoreError
from . import postings as memory
from .documents import _meta_filters
from .schema import LEXICAL_FILL, LEXICAL_TABLE, LEXICAL_TOKENIZER
from .sql import in_chunks

if TYPE_CHECKING:
    from . import Store

MARK_START, MARK_END = "\x02", "\x03"  # around matched words in ``marked`` text
DF_CACHE = 200_000  # posting counts kept (then the cache starts again)
COMMON_SHARE = 0.25  # query terms in this share of the passages or more are left out (see ``informative``)
REREAD_PAUSE = 2.0  # seconds, at least, between two reads of the postings into memory (and 3x the last read's time)

logger = logging.getLogger(__name__)


def expression(terms: Sequence[str]) -> str:
    """An FTS5 query matching any of ``terms``, each a quoted phrase (quotes doubled)."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


class Lexical:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._df: dict[str, int] = {}
        self._df_of: tuple[int, int] | None = None  # the passage count and top id the cache holds for
        self._df_lock = threading.Lock()
        self._memory_limit = 0  # passages up to which BM25 is answered from memory (0: never)
        self._postings: memory.Postings | None = None
        self._stemmer: memory.Stemmer | None = None
        self._reading: threading.Thread | None = None
        self._next_read = 0.0
        self._reading_lock = threading.Lock()  # starting a read of the postings

    # BM25 from memory (a long-lived session) ----------------------------------------------------
    def keep_in_memory(self, limit: int) -> None:
        """Answer BM25 from postings held in memory (``postings``) while the store has at most
        ``limit`` passages; read them now. Until they are read, and whenever the passages have
        changed since, FTS5 answers (exactly the same scores) and a newer read starts behind."""
        self._memory_limit = limit
        self._stemmer = self._stemmer or memory.Stemmer(LEXICAL_TOKENIZER)
        self._reread()
        if self._reading is not None:
            self._reading.join()

    def _memory(self, words: Sequence[str]) -> tuple[memory.Postings, list[str]] | None:
        """The postings, if they hold the passages as they are now, and ``words`` as their terms
        (None where a word is more than one FTS5 term: that phrase needs FTS5)."""
        postings, stemmer = self._postings, self._stemmer
        if not self._memory_limit or stemmer is None:
            return None
        if postings is None or postings.fingerprint != self._store.stats.kept().fingerprint:
            self._reread()
            return None
        terms = stemmer.terms(words)
        if any(len(t) > 1 for t in terms):
            return None
        return postings, [t[0] if t else "" for t in terms]

    def _reread(self) -> None:
        """Read the postings on a thread of their own, unless a read runs or ran a moment ago."""
        with self._reading_lock:
            if (self._reading is not None and self._reading.is_alive()) or time.monotonic() < self._next_read:
                return
            if self._store.stats.kept().passages > self._memory_limit:
                self._postings, self._next_read = None, time.monotonic() + REREAD_PAUSE
                return
            self._next_read = time.monotonic() + REREAD_PAUSE
            self._reading = threading.Thread(target=self._read, name="semsearch-postings", daemon=True)
            self._reading.start()

    def _read(self) -> None:
        started = time.monotonic()
        try:
            self._postings = memory.read(self._store.db.conn, lambda: self._store.stats.kept().fingerprint)
            logger.info("BM25 postings in memory: %d pairs in %.2f s", self._postings.pairs, time.monotonic() - started)
        except (sqlite3.Error, StoreError) as exc:  # FTS5 keeps answering (or the store was closed meanwhile)
            logger.warning("the lexical postings could not be read into memory (%s); BM25 comes from FTS5", exc)
        finally:
            self._next_read = max(self._next_read, time.monotonic() + 3 * (time.monotonic() - started))
            self._store.release()

    def informative(self, terms: Sequence[str]) -> list[str]:
        """``terms`` that occur, without those in a quarter of the passages or more (unless all
        are). BM25 weighs such a term by an idf of at most log(3) ≈ 1.1 (a rare term's is 5 to 9;
        at half the passages FTS5 clamps it to 1e-6), yet bm25() walks its whole posting list in
        every query: 'said', in 47% of Reuters paragraphs, made a query 3x slower. Scores are the
        BM25 of the remaining terms. Posting counts are cached until the passages change."""
        if not terms:
            return []
        held = self._memory(terms)
        stats = self._store.stats.kept()
        if held is not None:
            postings, stems = held
            df = {t: postings.df(stem) for t, stem in zip(terms, stems)}
            found = [t for t in terms if df[t] > 0]
            rare = [t for t in found if df[t] < COMMON_SHARE * stats.passages]
            return rare or found
        with self._df_lock:
            if self._df_of != stats.fingerprint or len(self._df) > DF_CACHE:
                self._df, self._df_of = {}, stats.fingerprint
            df = {t: self._df[t] for t in terms if t in self._df}
        for term in terms:
            if term not in df:
                row = self._store.db.execute("SELECT count(*) FROM passage_text WHERE passage_text MATCH ?", [expression([term])]).fetchone()
                df[term] = int(row[0])
        with self._df_lock:
            if self._df_of == stats.fingerprint:
                self._df.update(df)
        found = [t for t in terms if df[t] > 0]
        rare = [t for t in found if df[t] < COMMON_SHARE * stats.passages]
        return rare or found  # a query of common words only keeps them: they still tell rows apart by frequency

    def search(
        self, terms: Sequence[str], k: int, filters: Sequence[tuple[str, str]] = (), only: Sequence[int] | None = None
    ) -> list[tuple[int, float]]:
        """The best ``k`` (passage id, BM25) for ``terms``, best first; ``filters`` keep
        documents whose metadata match, ``only`` these passages."""
        if not terms or k < 1:
            return []
        held = None if filters else self._memory(terms)
        if held is not None:
            postings, stems = held
            if only is None:
                return postings.top(stems, k)
            scored = [(pid, score) for pid, score in postings.scores(stems, only).items() if score > 0]
            return sorted(scored, key=lambda r: (-r[1], r[0]))[:k]
        sql = "SELECT rowid, -bm25(passage_text) FROM passage_text WHERE passage_text MATCH ?"
        params: list[object] = [expression(terms)]
        if filters:
            clauses, values = _meta_filters(filters)
            sql += " AND rowid IN (SELECT p.id FROM passages p JOIN documents d ON d.id = p.document_id WHERE " + " AND ".join(clauses) + ")"
            params += values
        if only is not None:
            found: list[tuple[int, float]] = []
            marks = sql + " AND rowid IN ({marks})"
            for rowid, score in in_chunks(self._store.db, marks, list(only), params):
                found.append((int(rowid), float(score)))
            return sorted(found, key=lambda r: -r[1])[:k]
        rows = self._store.db.execute(sql + " ORDER BY rank LIMIT ?", [*params, k]).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]

    def term_scores(self, passage_ids: Sequence[int], terms: Sequence[str]) -> dict[int, list[float]]:
        """Each passage's BM25 part for each term (0 where the term does not occur); the parts of
        a passage add up to its BM25 score for all the terms."""
        scores = {pid: [0.0] * len(terms) for pid in passage_ids}
        for t, term in enumerate(terms):
            for pid, score in self.search([term], len(passage_ids), only=passage_ids):
                scores[pid][t] = score
        return scores

    def marked(self, passage_ids: Sequence[int], terms: Sequence[str], scores: bool = True) -> dict[int, tuple[float | None, str]]:
        """For each passage that matches any term: its BM25 (with ``scores``; bm25() first walks
        each term's posting list for its idf) and its text with matched words between
        ``MARK_START`` and ``MARK_END`` (FTS5's own tokeniser and stemmer decide what matches)."""
        if not terms or not passage_ids:
            return {}
        held = self._memory(terms) if scores else None
        if held is not None or not scores:  # one short statement a passage: cheaper than one over them all
            bm25 = held[0].scores(held[1], passage_ids) if held is not None else {}
            sql = "SELECT highlight(passage_text, 0, ?, ?) FROM passage_text WHERE passage_text MATCH ? AND rowid = ?"
            marks: dict[int, tuple[float | None, str]] = {}
            query = expression(terms)
            for pid in passage_ids:
                row = self._store.db.execute(sql, [MARK_START, MARK_END, query, pid]).fetchone()
                if row is not None:
                    marks[int(pid)] = (bm25.get(int(pid)), str(row[0]))
            return marks
        score = "-bm25(passage_text)" if scores else "NULL"
        sql = (
            f"SELECT rowid, {score}, highlight(passage_text, 0, ?, ?) FROM passage_text "
            "WHERE passage_text MATCH ? AND rowid IN ({marks})"
        )
        rows = in_chunks(self._store.db, sql, list(passage_ids), [MARK_START, MARK_END, expression(terms)])
        return {int(pid): (None if value is None else float(value), text) for pid, value, text in rows}

    # check and repair -------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """What is wrong with the lexical index: FTS5's own integrity check, and its rows against
        the passages (missing, extra, or text that differs from the passage's span)."""
        db = self._store.db
        found = []
        if not self._store.read_only:  # FTS5's own check is written as an INSERT
            try:
                db.execute("INSERT INTO passage_text (passage_text, rank) VALUES ('integrity-check', 1)")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "readonly" not in str(exc):
                    return [f"the lexical index is damaged ({exc})"]
            except sqlite3.DatabaseError as exc:
                return [f"the lexical index is damaged ({exc})"]
        missing = db.execute("SELECT count(*) FROM passages WHERE id NOT IN (SELECT rowid FROM passage_text)").fetchone()[0]
        extra = db.execute("SELECT count(*) FROM passage_text WHERE rowid NOT IN (SELECT id FROM passages)").fetchone()[0]
        differ = db.execute(
            "SELECT count(*) FROM passages p JOIN documents d ON d.id = p.document_id JOIN passage_text t ON t.rowid = p.id "
            "WHERE t.text IS NOT substr(d.text, p.char_start + 1, p.char_end - p.char_start)"
        ).fetchone()[0]
        if missing:
            found.append(f"{missing:,} passages are missing from the lexical index")
        if extra:
            found.append(f"the lexical index holds {extra:,} rows of passages that are gone")
        if differ:
            found.append(f"{differ:,} passages have other text in the lexical index than in their document")
        return found

    def rebuild(self) -> int:
        """Build the lexical index anew from the passages (a damaged one is dropped first)."""
        with self._store.writing():
            db = self._store.db
            db.execute("DROP TABLE IF EXISTS passage_text")
            db.execute(LEXICAL_TABLE)
            db.execute(LEXICAL_FILL)
            return int(db.execute("SELECT count(*) FROM passage_text").fetchone()[0])
