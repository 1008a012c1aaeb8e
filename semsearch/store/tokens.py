"""Token rows: one per passage, holding its token ids, character offsets and coded token vectors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..core import codec as codecs
from ..core.types import NewPassage, TokenData
from ..errors import NotFoundError, StoreError

if TYPE_CHECKING:
    from . import Store


class Tokens:
    """The ``tokens`` table of one store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @staticmethod
    def row(passage_id: int, passage: NewPassage, codec: codecs.Codec) -> dict[str, Any]:
        """The row that stores ``passage``'s tokens (written with its passage by ``Documents.write``)."""
        return {
            "passage_id": passage_id,
            "n": len(passage.token_ids),
            "token_ids": codecs.ints_to_bytes(passage.token_ids),
            "offsets": codecs.ints_to_bytes(passage.offsets),
            "codes": codec.encode(passage.token_vectors),
        }

    def of(self, passage_id: int, codec: codecs.Codec) -> TokenData:
        """A stored passage's text and decoded token vectors, in one read."""
        row = self._store.db.execute(
            "SELECT t.n, t.token_ids, t.offsets, t.codes, p.vector, "
            "substr(d.text, p.char_start + 1, p.char_end - p.char_start) AS text "
            "FROM tokens t JOIN passages p ON p.id = t.passage_id JOIN documents d ON d.id = p.document_id "
            "WHERE t.passage_id = ?",
            [passage_id],
        ).fetchone()
        if row is None:
            raise NotFoundError(self._store.unknown_passage(passage_id))
        n, ids, offsets, codes, vector, text = row
        if n < 1 or len(ids) != 4 * n or len(offsets) != 8 * n or len(vector) != 4 * self._store.meta.dim:
            raise StoreError(f"passage {passage_id}'s stored tokens are damaged; run 'semsearch check --repair'")
        return TokenData(
            text=text,
            vectors=codec.decode(codes, n, codecs.f32_from_bytes(vector)),
            token_ids=codecs.ints_from_bytes(ids),
            offsets=codecs.ints_from_bytes(offsets, 2),
        )

    def iter_rows(self, batch: int = 1000) -> Iterator[tuple[int, int, bytes, bytes, bytes]]:
        """(passage id, n, token ids, offsets, codes) of every stored passage, in id order."""
        last = 0
        while True:
            rows = self._store.db.execute(
                "SELECT passage_id, n, token_ids, offsets, codes FROM tokens WHERE passage_id > ? "
                "ORDER BY passage_id LIMIT ?",
                [last, batch],
            ).fetchall()
            if not rows:
                return
            yield from rows
            last = rows[-1][0]
