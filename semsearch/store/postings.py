"""BM25 from memory: the lexical index's postings read once, for a long-lived session.

FTS5's ``bm25()`` walks every query term's whole posting list in every statement (for the term's
document count, then for each matching row), which costs a server 3 to 5 ms a search on 10k
passages. A server reads the postings once through ``fts5vocab`` (one (term, passage, count) row
per pair), keeps them as NumPy arrays with each pair's BM25 weight computed by FTS5's own formula
(``fts5_aux.c``: idf = ln((N − n + 0.5) / (n + 0.5)), 1e-6 where that is ≤ 0; k1 = 1.2, b = 0.75,
lengths in tokens), and then scores a query in a fraction of a millisecond. The scores equal
``bm25()``'s within float rounding (tests compare both).

A snapshot belongs to the passages it was read from (the stats fingerprint, read in the same
transaction); once the passages change, the lexical index answers from FTS5 until a newer snapshot
is read on a background thread.

Query words are stemmed by FTS5 itself: they are written to a private in-memory FTS5 table with the
store's tokenizer, and its vocabulary says which terms they became.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

K1, B = 1.2, 0.75  # FTS5's bm25() defaults
STEM_CACHE = 100_000  # query words whose FTS5 terms are kept (then the cache starts again)


@dataclass(frozen=True)
class Postings:
    """Every (term, passage) pair of one snapshot, grouped by term, with its BM25 weight."""

    fingerprint: tuple[int, int]
    rowids: NDArray[np.int64]  # passage id of each row, ascending
    terms: dict[str, int]  # FTS5 term → its number
    starts: NDArray[np.int64]  # term t's pairs are starts[t]:starts[t + 1]
    rows: NDArray[np.int32]  # the pair's passage row (a term's pairs ascending)
    weights: NDArray[np.float64]  # the pair's part of the passage's BM25 score

    @property
    def pairs(self) -> int:
        return len(self.rows)

    def df(self, term: str) -> int:
        """How many passages hold ``term`` (an FTS5 term)."""
        t = self.terms.get(term)
        return 0 if t is None else int(self.starts[t + 1] - self.starts[t])

    def _slices(self, terms: Sequence[str]) -> list[slice]:
        """Each term's pairs; a term given twice counts twice, as two FTS5 phrases do (``plants``
        and ``plant`` are both the term ``plant``)."""
        found = (self.terms.get(term) for term in terms)
        return [slice(self.starts[t], self.starts[t + 1]) for t in found if t is not None]

    def top(self, terms: Sequence[str], k: int) -> list[tuple[int, float]]:
        """The ``k`` best (passage id, BM25) for any of ``terms``, best first (ties by id)."""
        slices = self._slices(terms)
        if not slices or k < 1:
            return []
        rows = np.concatenate([self.rows[s] for s in slices])
        weights = np.concatenate([self.weights[s] for s in slices])
        matched, at = np.unique(rows, return_inverse=True)
        scores = np.bincount(at, weights=weights, minlength=len(matched))
        if len(matched) > k:  # the k best and all tied with the k-th, then the first k by id
            keep = np.flatnonzero(scores >= np.partition(scores, len(scores) - k)[len(scores) - k])
            matched, scores = matched[keep], scores[keep]
        order = np.lexsort((matched, -scores))[:k]
        return [(int(self.rowids[r]), float(scores[i])) for i, r in zip(order, matched[order])]

    def scores(self, terms: Sequence[str], passage_ids: Sequence[int]) -> dict[int, float]:
        """The BM25 of each of ``passage_ids`` for ``terms`` (0 for a passage that holds none)."""
        ids = np.asarray(passage_ids, dtype=np.int64)
        rows = np.searchsorted(self.rowids, ids)
        rows[rows >= len(self.rowids)] = 0
        present = self.rowids[rows] == ids if len(self.rowids) else np.zeros(len(ids), dtype=bool)
        total = np.zeros(len(ids))
        for s in self._slices(terms):
            where = np.searchsorted(self.rows[s], rows)  # a term's pairs are sorted by row
            where[where >= s.stop - s.start] = 0
            hit = present & (self.rows[s][where] == rows) if s.stop > s.start else np.zeros(len(ids), dtype=bool)
            total[hit] += self.weights[s][where[hit]]
        return {int(i): float(v) for i, v in zip(ids, total)}


def read(db: sqlite3.Connection, fingerprint: Callable[[], tuple[int, int]], chunk: int = 200_000) -> Postings:
    """One snapshot of the ``passage_text`` postings and the ``fingerprint`` of the passages it
    holds, read in one transaction of ``db`` (a writer elsewhere cannot slip in between)."""
    db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.passage_text_instance USING fts5vocab(main, passage_text, instance)")
    terms: dict[str, int] = {}
    numbers, docs, counts = [], [], []
    db.execute("BEGIN")
    try:
        snapshot = fingerprint()
        (rows_in_index,) = db.execute("SELECT count(*) FROM passage_text").fetchone()  # passages without a word count too
        cursor = db.execute("SELECT term, doc, count(*) FROM temp.passage_text_instance GROUP BY term, doc")
        while found := cursor.fetchmany(chunk):
            numbers.append(np.fromiter((terms.setdefault(r[0], len(terms)) for r in found), dtype=np.int64, count=len(found)))
            docs.append(np.fromiter((r[1] for r in found), dtype=np.int64, count=len(found)))
            counts.append(np.fromiter((r[2] for r in found), dtype=np.float64, count=len(found)))
    finally:
        db.execute("COMMIT")
    number = np.concatenate(numbers) if numbers else np.zeros(0, dtype=np.int64)
    tf = np.concatenate(counts) if counts else np.zeros(0)
    rowids, rows = np.unique(np.concatenate(docs) if docs else np.zeros(0, dtype=np.int64), return_inverse=True)
    length = np.bincount(rows, weights=tf, minlength=len(rowids))  # tokens in each passage
    n = int(rows_in_index)
    starts = np.searchsorted(number, np.arange(len(terms) + 1))  # the rows come grouped by term, then by passage
    df = np.diff(starts)
    with np.errstate(divide="ignore", invalid="ignore"):
        idf = np.log((n - df + 0.5) / (df + 0.5))
    idf[~(idf > 0)] = 1e-6
    average = float(length.sum()) / n if n else 1.0
    weights = idf[number] * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length[rows] / average))
    return Postings(snapshot, rowids, terms, starts.astype(np.int64), rows.astype(np.int32), weights)


class Stemmer:
    """Query words → the FTS5 terms the store's tokenizer makes of them (none for a word it
    drops, several for one it splits, such as ``a_b``)."""

    def __init__(self, tokenizer: str) -> None:
        self._db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._db.execute(f"CREATE VIRTUAL TABLE words USING fts5(text, tokenize = '{tokenizer}')")
        self._db.execute("CREATE VIRTUAL TABLE words_instance USING fts5vocab(words, instance)")
        self._lock = threading.Lock()
        self._known: dict[str, tuple[str, ...]] = {}

    def terms(self, words: Sequence[str]) -> list[tuple[str, ...]]:
        with self._lock:
            if len(self._known) > STEM_CACHE:
                self._known = {}
            new = [w for w in dict.fromkeys(words) if w not in self._known]
            if new:
                made: dict[int, list[tuple[int, str]]] = {}
                self._db.execute("BEGIN")
                try:
                    self._db.executemany("INSERT INTO words (rowid, text) VALUES (?, ?)", list(enumerate(new, start=1)))
                    for term, doc, offset in self._db.execute("SELECT term, doc, offset FROM words_instance"):
                        made.setdefault(doc, []).append((offset, term))
                finally:
                    self._db.execute("ROLLBACK")  # the table stays empty
                for number, word in enumerate(new, start=1):
                    self._known[word] = tuple(term for _, term in sorted(made.get(number, [])))
            return [self._known[w] for w in words]
