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
