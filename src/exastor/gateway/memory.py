"""Keep the server's memory flat while gigabytes stream through it.

glibc's malloc raises its mmap threshold dynamically after large blocks are freed, so the 4 MiB
windows a stream allocates and frees end up recycled inside per-thread heap arenas that never
shrink: a 10 GiB PUT grew a worker by hundreds of MiB. A fixed 1 MiB threshold makes every
large buffer an mmap that returns to the OS when freed, and capping the arenas bounds the rest.

What stays is fragmentation: chunk-sized buffers (16-256 KiB: request body pieces, compressed
records, chunks read back) come and go between longer-lived small blocks, and glibc only gives
back the free memory at the top of a heap. ``Trimmer`` calls ``malloc_trim(0)`` once a second,
which returns every free page inside the heaps too (tens of MiB per worker while a stream runs;
under a millisecond when there is nothing to return).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def tune_malloc(mmap_threshold: int = 1 << 20, trim_threshold: int = 8 << 20, arenas: int = 4) -> bool:
    """Apply the settings to this process (call before starting threads). False if not glibc."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1
    ok &= mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1
    ok &= mallopt(M_ARENA_MAX, arenas) == 1
    return bool(ok)


class Trimmer:
    """A daemon thread that gives free heap memory back to the OS every ``interval`` seconds.
    ctypes releases the GIL for the call, so the event loop and the I/O threads run on."""

    def __init__(self, interval: float = 1.0) -> None:
        libc = _libc()
        self._trim = getattr(libc, "malloc_trim", None)
        if self._trim is not None:
            self._trim.argtypes = [ctypes.c_size_t]
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="exastor-trim", daemon=True)

    def start(self) -> Trimmer:
        if self._trim is not None:  # not glibc: nothing to do
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._trim(0)
