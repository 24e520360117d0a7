"""Keep the server's memory flat while gigabytes stream through it.

glibc's malloc raises its mmap threshold dynamically after large blocks are freed, so the 4 MiB
windows a stream allocates and frees end up recycled inside per-thread heap arenas that never
shrink: a 10 GiB PUT grew a worker by hundreds of MiB. A fixed 1 MiB threshold makes every
large buffer an mmap that returns to the OS when freed, and capping the arenas bounds the rest.

What stays is fragmentation: chunk-sized buffers (16-256 KiB: request body pieces, compressed
records, chunks read back) come and go between longer-lived small blocks, and glibc only gives
back the free memory at the top of a heap. ``Trimmer`` calls ``malloc_trim(0)`` after every
256 MiB of large objects a process streams (it returns every free page inside the heaps too: tens
of MiB per worker), and once when they stop, not otherwise: small requests reuse their freed heap
memory at once, and trimming under them would only make them fault the pages back in (~15% more
CPU per 4 KiB PUT).

Per bytes streamed, not per second: each trim costs the pages it returned, faulted back in by the
next buffers (a few ms of CPU), so trimming once a second made that cost grow with the number of
processes sharing the bytes (four gateways at a quarter of the rate each trimmed four times as
often per byte as one: bench/cluster_roles.py measured 2-3x the page faults per GiB of GET) and
with a slower stream. The free heap between trims stays bounded by what the buffers in flight
leave behind, not by the bytes streamed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Callable

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def tune_malloc(mmap_threshold: int = 1 << 20, trim_threshold: int = 8 << 20, arenas: int = 4) -> bool:
    """Apply the settings to this process (call before starting threads). False if not glibc."""
    mallopt = getattr(libc(), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1
    ok &= mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1
    ok &= mallopt(M_ARENA_MAX, arenas) == 1
    return bool(ok)


TRIM_EVERY = 256 << 20  # bytes of large objects streamed by one process between two trims


def trim_due(now: int, last: int, seen: int, every: int) -> bool:
    """Whether to trim, given bytes streamed ``now``, at the last trim (``last``) and at the last
    check (``seen``): every ``every`` bytes, and once more when a stream has stopped (nothing moved
    since the last check, something since the last trim). Never on time alone."""
    return now - last >= every or (now == seen and now != last)


class Trimmer:
    """A daemon thread that gives free heap memory back to the OS, checking every ``interval``
    seconds: when ``moved()`` (bytes of large objects streamed so far) advanced by ``every`` bytes
    since the last trim, and once when it stops advancing (``trim_due``). ctypes releases the GIL
    for the call, so the event loop and the I/O threads run on."""

    def __init__(self, moved: Callable[[], int], interval: float = 1.0, every: int = TRIM_EVERY,
                 trim: Callable[[int], object] | None = None) -> None:
        if trim is None:
            malloc_trim = getattr(libc(), "malloc_trim", None)
            if malloc_trim is not None:
                malloc_trim.argtypes = [ctypes.c_size_t]
            trim = malloc_trim
        self._trim: Callable[[int], object] | None = trim
        self.trims = 0
        self.moved = moved
        self.interval = interval
        self.every = every
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
        trim = self._trim
        assert trim is not None, "started only where libc has malloc_trim"
        last = seen = self.moved()
        while not self._stop.wait(self.interval):
            now = self.moved()
            if trim_due(now, last, seen, self.every):
                last = now
                trim(0)
                self.trims += 1
            seen = now
