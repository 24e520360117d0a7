"""Append-only segment files on a drive, with group fsync.

One segment is open for appends at a time per gateway process; it is sealed
(fsynced, marked in the index) when it reaches ``max_size``. Writers append
whole batches of records under a lock with one ``write`` call, then ask for
durability up to their last byte: ``sync`` fsyncs once for every writer whose
bytes were already in the file when the fsync started.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

from exastor import errors
from exastor.engine.record import SEGMENT_HEADER_SIZE, segment_header
from exastor.meta.store import Metadata

DEFAULT_SEGMENT_SIZE = 64 << 20


def segment_path(directory: Path, segment_id: int) -> Path:
    return directory / f"seg-{segment_id:016x}.log"


class SegmentLog:
    def __init__(self, directory: Path, meta: Metadata, max_size: int = DEFAULT_SEGMENT_SIZE) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.meta = meta
        self.max_size = max_size
        self._append_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._read_fds: dict[int, int] = {}
        self._fd_lock = threading.Lock()
        self._seg: int | None = None
        self._fd = -1
        self._size = 0
        self._synced = 0

    # --- writing ---------------------------------------------------------------
    def _open_new(self) -> None:
        seg = self.meta.new_segment_sync()
        path = segment_path(self.directory, seg)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o640)
        header = segment_header(seg, time.time_ns())
        try:
            os.write(fd, header)
        except OSError as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            self.meta.set_segment_state_sync(seg, "deleted", 0)
            raise _storage_error(exc) from exc
        _fsync_dir(self.directory)
        self._seg, self._fd, self._size, self._synced = seg, fd, SEGMENT_HEADER_SIZE, 0

    def _seal_current(self) -> None:
        if self._seg is None:
            return
        os.fsync(self._fd)
        os.close(self._fd)
        self.meta.set_segment_state_sync(self._seg, "sealed", self._size)
        self._seg, self._fd = None, -1

    def append(self, blob: bytes | bytearray) -> tuple[int, int]:
        """Append ``blob`` to the open segment; returns (segment id, offset of its first byte)."""
        with self._append_lock:
            if self._seg is None or self._size >= self.max_size:
                self._seal_current()
                self._open_new()
            assert self._seg is not None
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
            return self._seg, base

    def sync(self, segment: int, upto: int) -> None:
        """Make bytes ``[0, upto)`` of ``segment`` durable. Sealed segments already are."""
        with self._sync_lock:
            with self._append_lock:
                if segment != self._seg:
                    return
                if self._synced >= upto:
                    return
                fd, target = self._fd, self._size
            os.fsync(fd)  # outside the append lock: writers keep appending while we wait on the disk
            with self._append_lock:
                if segment == self._seg:
                    self._synced = max(self._synced, target)

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
        with self._append_lock:
            self._seal_current()
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
