"""Token rows: one per passage, holding its token ids, character offsets and coded token vectors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..core import codec as codecs
from ..core.types import NewPassage, TokenData
from ..errors import NotFoundError, StoreError
from .schema import TOKEN_TRIGGERS

if TYPE_CHECKING:
    from . import Store

READ = (  # a passage's token row with what decoding needs: its sentence vector and its text
    "SELECT t.passage_id, t.n, t.token_ids, t.offsets, t.codes, p.vector, t.pieces, "
    "substr(d.text, p.char_start + 1, p.char_end - p.char_start) "
    "FROM tokens t JOIN passages p ON p.id = t.passage_id JOIN documents d ON d.id = p.document_id "
)


class Tokens:
    """The ``tokens`` table of one store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @staticmethod
    def row(passage_id: int, passage: NewPassage, codec: codecs.Codec) -> dict[str, Any]:
        """The row that stores ``passage``'s tokens (written with its passage by ``Documents.write``)."""
        return Tokens.row_of(passage_id, passage.token_ids, passage.offsets, passage.token_vectors, passage.pieces, codec)

    @staticmethod
    def row_of(
        passage_id: int,
        token_ids: NDArray[np.int32],
        offsets: NDArray[np.int32],
        vectors: NDArray[np.float32],
        pieces: NDArray[np.int32] | None,
        codec: codecs.Codec,
    ) -> dict[str, Any]:
        """The row for rows of token vectors (pieces, or words with ``pieces`` counted)."""
        return {
            "passage_id": passage_id,
            "n": len(token_ids),
            "token_ids": codecs.ints_to_bytes(token_ids),
            "offsets": codecs.ints_to_bytes(offsets),
            "codes": codec.encode(vectors),
            "pieces": None if pieces is None else codecs.ints_to_bytes(pieces),
        }

    def of(self, passage_id: int, codec: codecs.Codec) -> TokenData:
        """A stored passage's text and decoded token vectors, in one read."""
        row = self._store.db.execute(READ + "WHERE t.passage_id = ?", [passage_id]).fetchone()
        if row is None:
            raise NotFoundError(self._store.unknown_passage(passage_id))
        return self._decoded(row, codec)

    def _decoded(self, row: tuple[Any, ...], codec: codecs.Codec) -> TokenData:
        passage_id, n, ids, offsets, codes, vector, pieces, text = row
        if n < 1 or len(ids) != 4 * n or len(offsets) != 8 * n or len(vector) != 4 * self._store.meta.dim or (pieces is not None and len(pieces) != 4 * n):
            raise StoreError(f"passage {passage_id}'s stored tokens are damaged; run 'semsearch check --repair'")
        return TokenData(
            text=text,
            vectors=codec.decode(codes, n, codecs.f32_from_bytes(vector)),
            token_ids=codecs.ints_from_bytes(ids),
            offsets=codecs.ints_from_bytes(offsets, 2),
            pieces=None if pieces is None else codecs.ints_from_bytes(pieces),
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

    # recode: new rows into a shadow table, swapped in at the end ---------------------------------
    def token_data(self, after: int, batch: int, codec: codecs.Codec) -> list[tuple[int, TokenData]]:
        """Up to ``batch`` stored passages after passage id ``after``, decoded, with their text."""
        rows = self._store.db.execute(READ + "WHERE t.passage_id > ? ORDER BY t.passage_id LIMIT ?", [after, batch]).fetchall()
        return [(int(row[0]), self._decoded(row, codec)) for row in rows]

    def start_recode(self, target: str, fresh: bool = False) -> int:
        """The shadow table for a recode to ``target`` (a description of codec and pooling): kept
        from an interrupted recode to the same target, else made anew. Returns the last passage id
        it holds (0 when empty); ``fresh`` starts it empty in any case."""
        db = self._store.db
        with self._store.writing():
            row = db.execute("SELECT value FROM meta WHERE key = 'recode_target'").fetchone()
            exists = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'tokens_recode'").fetchone()[0]
            if exists and (fresh or row is None or row[0] != target):
                db.execute("DROP TABLE tokens_recode")
                exists = 0
            if not exists:
                db.execute(
                    # no foreign key: deletes between an interrupted recode and its resumption must not fail
                    "CREATE TABLE tokens_recode (passage_id INTEGER PRIMARY KEY, n INTEGER NOT NULL, "
                    "token_ids BLOB NOT NULL, offsets BLOB NOT NULL, codes BLOB NOT NULL, pieces BLOB)"
                )
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('recode_target', ?)", [target])
            last = db.execute("SELECT coalesce(max(passage_id), 0) FROM tokens_recode").fetchone()[0]
        return int(last)

    def write_recoded(self, rows: list[dict[str, Any]]) -> None:
        with self._store.writing():
            self._store.db.table("tokens_recode").insert_all(rows)

    def finish_recode(self, meta: dict[str, str], codec_state: bytes) -> None:
        """Swap the shadow table in, with the new codec's meta and state, in one transaction."""
        db = self._store.db
        with self._store.writing():
            db.execute("DELETE FROM tokens_recode WHERE passage_id NOT IN (SELECT id FROM passages)")
            missing = db.execute("SELECT count(*) FROM tokens WHERE passage_id NOT IN (SELECT passage_id FROM tokens_recode)").fetchone()[0]
            if missing:
                raise StoreError(f"the recode is missing {missing} passages; run the same recode again")
            db.execute("DROP TABLE tokens")
            db.execute(
                "CREATE TABLE tokens (passage_id INTEGER PRIMARY KEY REFERENCES passages(id), n INTEGER NOT NULL, "
                "token_ids BLOB NOT NULL, offsets BLOB NOT NULL, codes BLOB NOT NULL, pieces BLOB)"
            )
            db.execute("INSERT INTO tokens SELECT passage_id, n, token_ids, offsets, codes, pieces FROM tokens_recode")
            db.execute("DROP TABLE tokens_recode")
            for sql in TOKEN_TRIGGERS:
                db.execute(sql)
            db.execute("DELETE FROM meta WHERE key = 'recode_target'")
            version = db.execute("SELECT value FROM meta WHERE key = 'token_version'").fetchone()
            meta = {**meta, "token_version": str(int(version[0]) + 1 if version else 1)}
            db.conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", list(meta.items())
            )
            db.execute("INSERT OR REPLACE INTO blobs (key, value) VALUES ('token_codec', ?)", [codec_state])
            db.execute("DELETE FROM blobs WHERE key = 'token_codec_recode'")
            self._store.stats.recount()
        self._store.refresh_meta()
