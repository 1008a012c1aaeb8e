"""The store's writer lock: one process writes at a time (``STORE/write.lock``, ``flock``)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import StoreError

LOCK_FILE = "write.lock"


@contextmanager
def write_lock(directory: Path, wait: bool = False) -> Iterator[bool]:
    """Hold the store's writer lock; yields False when another process holds it and not ``wait``."""
    if directory.exists() and not directory.is_dir():
        raise StoreError(f"{directory} is a file, not a store directory; choose another --store")
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def held_write_lock(directory: Path, then: str = "wait for it to finish") -> Iterator[None]:
    """The writer lock, or a ``StoreError`` saying that another process holds it."""
    with write_lock(directory) as held:
        if not held:
            raise StoreError(f"another semsearch process is writing to {directory}; {then}")
        yield
