"""Append-only segment files on a drive, with group fsync.

One segment is open for appends at a time per gateway process; it is sealed
(fsynced, marked in the index) when it reaches ``max_size``. Writers append
whole batches of records under a lock with one ``write`` call, then ask for
durability up to their last byte: ``sync`` fsyncs once for every writer whose
bytes were already in the file when the fsync started.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from exastor import errors
from exastor.engine.record import SEGMENT_HEADER_SIZE, segment_header
from exastor.meta.store import Metadata

DEFAULT_SEGMENT_SIZE = 64 << 20
WRITEBACK_KICK = 8 << 20


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range back now (Linux sync_file_range, non-blocking).
    Only a hint: the fsync before the metadata commit is what guarantees durability."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def segment_path(directory: Path, segment_id: int) -> Path:
    return directory / f"seg-{segment_id:016x}.log"


class SegmentLog:
    """Locks, and why there are three:

    - ``_append_lock`` guards the open segment's descriptor and size; held only for a ``write``.
    - ``_sync_lock`` serialises fsyncs and the closing of descriptors, so an fsync never runs on
      a descriptor that a rollover closed.
    - ``_rollover_lock`` lets one appender seal the full segment and open the next while the
      others wait. Rollover talks to the metadata writer thread, and the metadata writer thread
      calls ``sync`` (to make data durable before it commits), so rollover must never hold the
      append or sync lock while it waits on the database: that would deadlock.
    """

    def __init__(self, directory: Path, meta: Metadata, max_size: int = DEFAULT_SEGMENT_SIZE) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.meta = meta
        self.max_size = max_size
        self._append_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._rollover_lock = threading.Lock()
        self._read_fds: dict[int, int] = {}
        self._fd_lock = threading.Lock()
        self._seg: int | None = None
        self._fd = -1
        self._size = 0
        self._kicked = 0
        # Segments with bytes not yet known durable: segment -> [fd, size, durable offset].
        self._unsynced: dict[int, list[int]] = {}

    # --- writing ---------------------------------------------------------------
    def _create(self) -> tuple[int, int]:
        seg = self.meta.new_segment_sync()
        path = segment_path(self.directory, seg)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o640)
        try:
            os.write(fd, segment_header(seg, time.time_ns()))
            os.fsync(fd)
            _fsync_dir(self.directory)
        except OSError as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            self.meta.set_segment_state_sync(seg, "deleted", 0)
            raise _storage_error(exc) from exc
        return seg, fd

    def _rollover(self, full_segment: int | None) -> None:
        """Seal ``full_segment`` (if it is still the open one) and open a new segment."""
        with self._rollover_lock:
            with self._append_lock:
                if self._seg != full_segment:
                    return  # another appender already rolled over
                old, self._seg = self._seg, None
            if old is not None:
                with self._sync_lock:
                    fd, size, _ = self._unsynced[old]
                    os.fsync(fd)
                    with self._append_lock:
                        del self._unsynced[old]
                    os.close(fd)
                self.meta.set_segment_state_sync(old, "sealed", size)
            seg, fd = self._create()
            with self._append_lock:
                self._seg, self._fd, self._size, self._kicked = seg, fd, SEGMENT_HEADER_SIZE, 0
                self._unsynced[seg] = [fd, SEGMENT_HEADER_SIZE, SEGMENT_HEADER_SIZE]

    def append(self, blob: bytes | bytearray) -> tuple[int, int]:
        """Append ``blob`` to the open segment; returns (segment id, offset of its first byte)."""
        while True:
            with self._append_lock:
                seg = self._seg
                if seg is not None and self._size < self.max_size:
                    base = self._size
                    try:
                        written = os.write(self._fd, blob)
                        if written != len(blob):
                            raise OSError(errno.ENOSPC, "short write")
                    except OSError as exc:
                        # Cut a torn tail so the segment stays parseable; the write is reported as failed.
                        try:
                            os.ftruncate(self._fd, base)
                        except OSError:
                            pass
                        raise _storage_error(exc) from exc
                    self._size = base + len(blob)
                    self._unsynced[seg][1] = self._size
                    if self._size - self._kicked >= WRITEBACK_KICK:
                        # Start writeback now (non-blocking), so the fsync before the commit
                        # finds little left to write: large PUTs stream to disk as they arrive.
                        _start_writeback(self._fd, self._kicked, self._size - self._kicked)
                        self._kicked = self._size
                    return seg, base
            self._rollover(seg)

    def sync(self, segment: int, upto: int) -> None:
        """Make bytes ``[0, upto)`` of ``segment`` durable. Sealed segments already are."""
        with self._sync_lock:
            with self._append_lock:
                entry = self._unsynced.get(segment)
                if entry is None or entry[2] >= upto:
                    return
                fd, target = entry[0], entry[1]
            try:
                os.fsync(fd)  # outside the append lock: writers keep appending while we wait on the disk
            except OSError as exc:
                raise _storage_error(exc) from exc
            with self._append_lock:
                entry = self._unsynced.get(segment)
                if entry is not None:
                    entry[2] = max(entry[2], target)

    def recover(self) -> None:
        """At start: seal segments a previous process left open, cutting any torn tail."""
        from exastor.engine.scan import valid_end  # local import: scan depends on this module's paths

        for seg, state, _size in self.meta.segments():
            if state != "open":
                continue
            path = segment_path(self.directory, seg)
            if not path.exists():
                self.meta.set_segment_state_sync(seg, "deleted", 0)
                continue
            end = valid_end(path)
            with open(path, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
            self.meta.set_segment_state_sync(seg, "sealed", end)

    def close(self) -> None:
        with self._rollover_lock, self._sync_lock, self._append_lock:
            for seg, (fd, size, _) in list(self._unsynced.items()):
                os.fsync(fd)
                os.close(fd)
                self.meta.set_segment_state_sync(seg, "sealed", size)
            self._unsynced.clear()
            self._seg = None
        with self._fd_lock:
            for fd in self._read_fds.values():
                os.close(fd)
            self._read_fds.clear()

    # --- reading ---------------------------------------------------------------
    def _read_fd(self, segment: int) -> int:
        fd = self._read_fds.get(segment)
        if fd is not None:
            return fd
        with self._fd_lock:
            fd = self._read_fds.get(segment)
            if fd is None:
                fd = os.open(segment_path(self.directory, segment), os.O_RDONLY)
                self._read_fds[segment] = fd
            return fd

    def pread(self, segment: int, offset: int, length: int) -> bytes:
        try:
            return os.pread(self._read_fd(segment), length, offset)
        except FileNotFoundError as exc:
            raise errors.DataCorrupted(f"segment {segment} missing") from exc

    def forget(self, segment: int) -> None:
        """Drop a cached read descriptor (after compaction deleted the file)."""
        with self._fd_lock:
            fd = self._read_fds.pop(segment, None)
        if fd is not None:
            os.close(fd)

    @property
    def open_segment(self) -> int | None:
        return self._seg


def _storage_error(exc: OSError) -> errors.StoreError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return errors.InsufficientStorage("drive full")
    return errors.Unavailable(f"drive error: {exc.strerror}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
