"""A long-running server's memory, kept flat (glibc's malloc; no-ops elsewhere).

Under many concurrent clients gradio runs each request's upload handling, image decoding and
file copies in its own worker thread, and glibc gives contending threads their own malloc arena
(up to 8 per core). Freed memory stays in those arenas, fragmented, so the resident size climbs
with the number of threads that ever ran at once and is only partly given back
(docs/benchmarks.md, "App under load": 16 clients). Two arenas and an occasional
``malloc_trim`` keep it level at no measurable cost in throughput."""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time

_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


_LIBC = _glibc()


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (call before the server starts its threads). Whether it applied."""
    return bool(_LIBC is not None and _LIBC.mallopt(_M_ARENA_MAX, arenas))


class MemoryTrimmer:
    """``after_request()`` hands free heap pages back to the system (``malloc_trim(0)``), at most
    once per ``interval_s`` whatever the request rate."""

    def __init__(self, interval_s: float = 2.0) -> None:
        self.interval_s = interval_s
        self._last = 0.0
        self._lock = threading.Lock()

    def after_request(self) -> None:
        if _LIBC is None:
            return
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval_s:
                return
            self._last = now
        _LIBC.malloc_trim(0)
