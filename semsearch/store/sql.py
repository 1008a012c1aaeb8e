"""Small helpers every store module shares: chunked ``IN (…)`` reads and the next row id."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import sqlite_utils
from numpy.typing import NDArray

Ids = Sequence[int] | NDArray[np.int64]

CHUNK = 500  # bound parameters per statement, well under SQLite's limit


def in_chunks(db: sqlite_utils.Database, sql: str, values: Sequence[Any] | NDArray[Any], before: Sequence[Any] = ()) -> Iterator[Any]:
    """The rows of ``sql`` over all of ``values``: ``sql`` holds ``{marks}`` where the IN list goes,
    and runs once per chunk of values (each bound, never pasted into the text); ``before`` are
    the values of the placeholders that come before the IN list."""
    for start in range(0, len(values), CHUNK):
        chunk = [v if isinstance(v, str) else int(v) for v in values[start : start + CHUNK]]
        yield from db.execute(sql.format(marks=",".join("?" * len(chunk))), [*before, *chunk]).fetchall()


def next_id(db: sqlite_utils.Database, table: str) -> int:
    """The id AUTOINCREMENT would give the next row of ``table``."""
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", [table]).fetchone()
    return (row[0] if row else 0) + 1
