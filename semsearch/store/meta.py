"""What a store records about how it was built, read once at open as a frozen ``StoreMeta``.

The model, dimension, pooling, token codec and index factory are set by the first ingest and then
checked against every encoder that touches the store, here and nowhere else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ModelError, StoreError

if TYPE_CHECKING:
    import sqlite_utils

REQUIRED = ("model", "dim", "pooling", "token_codec", "index_factory")


class EncoderFacts(Protocol):
    """The encoder's attributes a store records (``semsearch.encoder.Encoder`` has them)."""

    name: str
    dim: int
    max_tokens: int
    pooling: str
    special_tokens: dict[int, str]


@dataclass(frozen=True)
class StoreMeta:
    """The store's recorded settings; ``model`` is None until the first ingest."""

    format: str | None = None
    model: str | None = None
    dim: int = 0
    pooling: str = "mean"
    max_tokens: int = 0
    token_codec: str = "float16"
    token_pool: str = "pieces"  # stores made before word pooling kept pieces
    special_tokens: dict[int, str] = field(default_factory=dict)
    index_factory: str | None = None
    long_documents: str | None = None
    missing: tuple[str, ...] = REQUIRED

    @classmethod
    def from_values(cls, values: dict[str, str], where: Path) -> StoreMeta:
        try:
            specials = {int(k): str(v) for k, v in json.loads(values.get("special_tokens") or "{}").items()}
            dim = int(values.get("dim") or 0)
            max_tokens = int(values.get("max_tokens") or 0)
        except (ValueError, TypeError, AttributeError) as exc:
            raise StoreError(f"{where}: the store's meta table is damaged ({exc}); start a new store") from None
        return cls(
            format=values.get("format"),
            model=values.get("model"),
            dim=dim,
            pooling=values.get("pooling") or "mean",
            max_tokens=max_tokens,
            token_codec=values.get("token_codec") or "float16",
            token_pool=values.get("token_pool") or "pieces",
            special_tokens=specials,
            index_factory=values.get("index_factory"),
            long_documents=values.get("long_documents"),
            missing=tuple(k for k in REQUIRED if values.get(k) is None),
        )

    @staticmethod
    def for_encoder(encoder: EncoderFacts, token_codec: str, index_factory: str, long_documents: str, token_pool: str = "pieces") -> dict[str, str]:
        """The values a new store records for ``encoder`` and the settings."""
        return {
            "model": encoder.name,
            "dim": str(encoder.dim),
            "pooling": encoder.pooling,
            "max_tokens": str(encoder.max_tokens),
            "token_codec": token_codec,
            "token_pool": token_pool,
            "special_tokens": json.dumps({str(k): v for k, v in encoder.special_tokens.items()}),
            "index_factory": index_factory,
            "long_documents": long_documents,
        }

    def check_encoder(self, encoder: EncoderFacts, where: Path) -> None:
        """Raise ``ModelError`` when ``encoder`` is not the model the store was built with."""
        for key, stored, loaded in (("model", self.model, encoder.name), ("dim", str(self.dim), str(encoder.dim))):
            if stored != loaded:
                raise ModelError(
                    f"store {where} was built with {key} {stored!r}, but {loaded!r} is "
                    f"loaded; pass --model {self.model!r} or use a new --store"
                )

    def check_codec(self, token_codec: str, token_pool: str, where: Path) -> None:
        """Settings that name a codec or pooling (empty: the store's) must be the store's."""
        if token_codec and self.token_codec != token_codec:
            raise StoreError(
                f"store {where} keeps tokens as {self.token_codec!r} but the settings ask "
                f"for {token_codec!r}; use the store's codec, 'semsearch recode --codec {token_codec}', or a new --store"
            )
        if token_pool and self.token_pool != token_pool:
            fix = "'semsearch recode --pool words'" if token_pool == "words" else "a new --store (pooled pieces cannot come back)"
            raise StoreError(
                f"store {where} keeps token vectors per {self.token_pool[:-1]} but the settings ask for {token_pool}; "
                f"leave token_pool empty (the store's), or use {fix}"
            )


def read(db: sqlite_utils.Database, where: Path) -> StoreMeta:
    values = {str(k): str(v) for k, v in db.execute("SELECT key, value FROM meta").fetchall()}
    return StoreMeta.from_values(values, where)


def write(db: sqlite_utils.Database, values: dict[str, Any]) -> None:
    db.conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [(k, str(v)) for k, v in values.items()],
    )
