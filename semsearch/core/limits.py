"""Bounds on what reading untrusted stored data may cost."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_LIMIT = threading.Lock()  # one bounded read at a time: the limit is the whole process's


@contextmanager
def bounded_memory(data_bytes: int) -> Iterator[None]:
    """Reading FAISS data from a file or blob: let the process grow by a few times the data's own
    size at most, so that a crafted header claiming gigabytes fails at once (as a MemoryError or a
    FAISS error) instead of allocating them. A no-op where address-space limits cannot be set."""
    with _LIMIT:
        try:
            import resource

            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            with open("/proc/self/status", encoding="ascii") as status:
                size_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
            limit = size_kb * 1024 + 4 * data_bytes + (512 << 20)
            for bound in (soft, hard):
                if bound != resource.RLIM_INFINITY:
                    limit = min(limit, bound)  # never above what the user set
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        except (ImportError, OSError, ValueError, StopIteration):
            yield
            return
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
