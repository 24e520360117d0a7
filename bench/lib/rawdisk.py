"""Same-run raw disk baseline: what the disk under the server's data directory does.

A server's MB/s means little alone; divided by what a plain sequential
``write`` + ``fsync`` and a plain ``read`` of the same bytes achieve on the
same filesystem in the same run, it says how much the server costs.

Whether the read baseline was served from the page cache matters (a warm read
measures memory bandwidth, not the disk), so we evict the file
(``posix_fadvise(DONTNEED)`` after fsync, then ``echo 3 >
/proc/sys/vm/drop_caches`` when allowed) and *check* residency with
``mincore(2)`` instead of assuming it worked.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import time
from pathlib import Path

BLOCK = 8 << 20

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


def resident_fraction(path: str | os.PathLike[str]) -> float | None:
    """Fraction of ``path``'s pages in the page cache (via mincore), None if it cannot be told."""
    size = os.path.getsize(path)
    if size == 0:
        return 0.0
    page = mmap.PAGESIZE
    pages = (size + page - 1) // page
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            vec = (ctypes.c_ubyte * pages)()
            if _libc.mincore(addr, size, vec) != 0:
                return None
            import numpy as np

            return float(np.frombuffer(vec, dtype=np.uint8).__and__(1).mean())
        finally:
            _libc.munmap(addr, size)
    finally:
        os.close(fd)


def drop_caches() -> bool:
    """Ask the kernel to drop clean caches; False when the sandbox does not allow it."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def sequential_write_read(directory: str | os.PathLike[str], data: bytes) -> dict[str, object]:
    """Write ``data`` sequentially with one final fsync, evict it, read it back; MB/s both ways."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f".rawdisk-baseline-{os.getpid()}.bin"
    view = memoryview(data)
    try:
        t0 = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for off in range(0, len(view), BLOCK):
                os.write(fd, view[off : off + BLOCK])
            os.fsync(fd)
        finally:
            os.close(fd)
        write_s = time.perf_counter() - t0

        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        dropped = drop_caches()
        resident_before = resident_fraction(path)

        buf = bytearray(BLOCK)
        t0 = time.perf_counter()
        read = 0
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                read += n
        read_s = time.perf_counter() - t0
        assert read == len(data), (read, len(data))
    finally:
        path.unlink(missing_ok=True)
    cold = resident_before is not None and resident_before < 0.01
    return {
        "bytes": len(data),
        "write_fsync_MBps": len(data) / write_s / 1e6,
        "write_s": write_s,
        "read_MBps": len(data) / read_s / 1e6,
        "read_s": read_s,
        "drop_caches_allowed": dropped,
        "resident_fraction_before_read": resident_before,
        "read_was": "cold" if cold else ("warm" if resident_before is not None else "unknown"),
    }


def small_files(directory: str | os.PathLike[str], count: int, size: int = 4096) -> dict[str, object]:
    """Create ``count`` small files (no fsync, like most S3 servers' small PUTs) and read them back (warm).

    One thread, one directory: a floor for what a filesystem-backed store can
    do per object on this disk, not a ceiling.
    """
    directory = Path(directory) / f".rawdisk-small-{os.getpid()}"
    directory.mkdir(parents=True, exist_ok=True)
    from .datagen import payload

    blob = payload(size * count)
    names = [directory / f"{i:06d}" for i in range(count)]
    try:
        t0 = time.perf_counter()
        for i, name in enumerate(names):
            with open(name, "wb") as f:
                f.write(blob[i * size : (i + 1) * size])
        create_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for name in names:
            with open(name, "rb") as f:
                f.read()
        read_s = time.perf_counter() - t0
    finally:
        for name in names:
            name.unlink(missing_ok=True)
        directory.rmdir()
    return {
        "count": count,
        "size": size,
        "create_per_s": count / create_s,
        "read_per_s": count / read_s,
        "fsync": False,
        "read_was": "warm",
    }
