"""Calls made one item at a time by many threads, run together in groups (group commit).

While one group runs, the items that arrive wait; the next caller to find nothing running takes up
to ``limit`` of them and runs them in one call. Each caller gets its own result, or the error of the
run its item was in. A busy server uses it to encode queries in one model pass and to cache them
in one transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Item(Generic[T, R]):
    def __init__(self, value: T) -> None:
        self.value = value
        self.result: R | None = None
        self.error: BaseException | None = None
        self.done = False


class Grouped(Generic[T, R]):
    """``run(items) -> results`` (one result per item, in order), shared by threads that each
    bring one item; ``interrupted()`` is the error the others get when a run is interrupted
    (KeyboardInterrupt, SystemExit), which goes on up in the thread that ran it."""

    def __init__(self, run: Callable[[list[T]], list[R]], limit: int, interrupted: Callable[[], Exception]) -> None:
        self._run = run
        self.limit = max(1, limit)
        self._interrupted = interrupted
        self._changed = threading.Condition()
        self._queue: list[_Item[T, R]] = []
        self._running = False

    def __call__(self, value: T) -> R:
        mine: _Item[T, R] = _Item(value)
        changed = self._changed
        with changed:
            self._queue.append(mine)
            try:
                while not mine.done:
                    if self._running:
                        changed.wait()
                        continue
                    self._running = True
                    group, self._queue = self._queue[: self.limit], self._queue[self.limit :]
                    changed.release()
                    try:
                        self._run_group(group)
                    finally:
                        changed.acquire()
                        self._running = False
                        changed.notify_all()
            except BaseException:
                if mine in self._queue:  # interrupted before its turn: nobody is waiting for it
                    self._queue.remove(mine)
                raise
        if mine.error is not None:
            raise mine.error
        return mine.result  # type: ignore[return-value]

    def _run_group(self, group: list[_Item[T, R]]) -> None:
        try:
            results = self._run([item.value for item in group])
            for item, result in zip(group, results, strict=True):
                item.result = result
        except Exception as exc:
            for item in group:
                item.error = exc
        except BaseException:
            for item in group:
                item.error = self._interrupted()
            raise
        finally:
            for item in group:
                item.done = True
