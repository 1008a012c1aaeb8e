"""Whole-table scans for ``check``: every sentence vector, rows that belong to nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import Store


class Checks:
    """Integrity queries over one store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def passage_vectors(self) -> Iterator[tuple[int, bytes]]:
        """(passage id, sentence vector blob) of every passage."""
        yield from self._store.db.execute("SELECT id, vector FROM passages")

    def orphan_token_rows(self) -> int:
        return int(self._store.db.execute(
            "SELECT count(*) FROM tokens WHERE passage_id NOT IN (SELECT id FROM passages)"
        ).fetchone()[0])

    def delete_orphan_token_rows(self) -> None:
        with self._store.writing():
            self._store.db.execute("DELETE FROM tokens WHERE passage_id NOT IN (SELECT id FROM passages)")

    def documents_without_passages(self) -> list[str]:
        return [r[0] for r in self._store.db.execute(
            "SELECT key FROM documents WHERE id NOT IN (SELECT document_id FROM passages)"
        )]

    def vector_lengths(self) -> dict[int, int]:
        """Sentence vector byte lengths → how many passages have each."""
        return {int(n): int(c) for n, c in self._store.db.execute("SELECT length(vector), count(*) FROM passages GROUP BY 1")}

    def token_blob_sizes_match(self, bytes_per_token: int) -> bool:
        """Whether every token blob holds exactly ``bytes_per_token`` bytes a token."""
        row = self._store.db.execute(
            "SELECT count(*), sum(length(codes) = n * ?) FROM tokens", [bytes_per_token]
        ).fetchone()
        return bool(row[0]) and row[0] == row[1]
