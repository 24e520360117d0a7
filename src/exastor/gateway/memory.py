"""Keep the server's memory flat while gigabytes stream through it.

glibc's malloc raises its mmap threshold dynamically after large blocks are freed, so the 4 MiB
windows a stream allocates and frees end up recycled inside per-thread heap arenas that never
shrink: a 10 GiB PUT grew a worker by hundreds of MiB. A fixed 1 MiB threshold makes every
large buffer an mmap that returns to the OS when freed, and capping the arenas bounds the rest.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def tune_malloc(mmap_threshold: int = 1 << 20, trim_threshold: int = 8 << 20, arenas: int = 4) -> bool:
    """Apply the settings to this process (call before starting threads). False if not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1
    ok &= mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1
    ok &= mallopt(M_ARENA_MAX, arenas) == 1
    return bool(ok)
