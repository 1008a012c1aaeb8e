"""Counts kept by triggers (migration m004), so searches and ``info`` never scan the tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import Store


@dataclass(frozen=True)
class PassageStats:
    """The passages' count and highest id, and the stored tokens' count and bytes."""

    passages: int
    max_id: int
    tokens: int
    token_bytes: int

    @property
    def fingerprint(self) -> tuple[int, int]:
        """(count, max id): what an index in step with the store must hold."""
        return self.passages, self.max_id


class Stats:
    """The ``passage_stats`` row of one store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def kept(self) -> PassageStats:
        """The four figures as the triggers kept them (counted, slower, if their row is gone:
        ``check`` reports that and ``--repair`` puts it back)."""
        row = self._store.db.execute(
            "SELECT count, max_id, tokens, token_bytes FROM passage_stats WHERE id = 1"
        ).fetchone()
        if row is None or any(not isinstance(v, int) for v in row):
            return self.counted()
        return PassageStats(*(int(v) for v in row))

    def present(self) -> bool:
        return self._store.db.execute("SELECT count(*) FROM passage_stats WHERE id = 1").fetchone()[0] == 1

    def counted(self) -> PassageStats:
        """The same four, counted from the tables (what ``check`` compares)."""
        db = self._store.db
        count, top = db.execute("SELECT count(*), coalesce(max(id), 0) FROM passages").fetchone()
        tokens, size = db.execute("SELECT coalesce(sum(n), 0), coalesce(sum(length(codes)), 0) FROM tokens").fetchone()
        return PassageStats(int(count), int(top), int(tokens), int(size))

    def recount(self) -> None:
        with self._store.writing():
            counted = self.counted()
            self._store.db.execute(
                "INSERT OR REPLACE INTO passage_stats (id, count, max_id, tokens, token_bytes) VALUES (1, ?, ?, ?, ?)",
                [counted.passages, counted.max_id, counted.tokens, counted.token_bytes],
            )
