"""Append-only segments across drives: replicated while open, erasure-coded once sealed.

One segment is open for appends at a time per gateway process. Its bytes go to m+1 replica files
on distinct drives (the write buffer: it survives the same m failures as the final stripe), and
``sync`` fsyncs all of them before any commit points at the bytes. When the segment reaches
``max_size`` it is sealed on a background thread: cut into k contiguous data shards plus m parity
shards (systematic Reed-Solomon, engine/erasure.py), each written and fsynced on a distinct drive,
recorded in the database, and only then are the replicas deleted. With one drive (1+0) the single
replica simply stays: the segment file IS the data, byte-compatible with format version 1.

Reads: a healthy read is a ``pread`` of the one data shard (or two, across a boundary) holding the
record. ``pread_degraded`` is for when that failed its checksum: other replicas, or a column-range
decode from k verified shards.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from exastor import errors
from exastor.engine import erasure, shards
from exastor.engine.drives import Drive, DriveSet, Layout, commit_seal, crash_point, load_layout, new_segment
from exastor.engine.record import (
    HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    decode_header,
    segment_header,
    verify_payload,
)
from exastor.meta.store import Metadata

DEFAULT_SEGMENT_SIZE = 64 << 20
_IOV_MAX = 1024              # pieces one writev takes (Linux)
DEGRADED_WINDOW = 1 << 20    # columns decoded at once by a degraded read
DEGRADED_WINDOWS_KEPT = 32   # decoded windows kept per process (32 MiB)
log = logging.getLogger("exastor.segments")

Check = Callable[[bytes], object]


class DriveDown(FileNotFoundError):
    """The drive holding the bytes is failed or removed: go degraded without asking the database again."""


def segment_path(directory: Path, segment_id: int) -> Path:
    return directory / f"seg-{segment_id:016x}.log"


def record_length(view: memoryview, pos: int) -> int:
    """Length of the valid record at ``pos`` of an in-memory segment, 0 if there is none."""
    if pos + HEADER_SIZE > len(view):
        return 0
    try:
        head = decode_header(view[pos:pos + HEADER_SIZE])
        end = pos + HEADER_SIZE + head.stored_len
        if end > len(view):
            return 0
        verify_payload(head, view[pos + HEADER_SIZE:end])
    except errors.DataCorrupted:
        return 0
    return end - pos


class SegmentLog:
    """Locks, and why there are three:

    - ``_append_lock`` guards the open segment's descriptors and size; held only for the ``write``s.
    - ``_sync_lock`` serialises fsyncs and the closing of descriptors, so an fsync never runs on
      a descriptor that a rollover closed.
    - ``_rollover_lock`` lets one appender seal the full segment and open the next while the
      others wait. Rollover talks to the metadata writer thread, and the metadata writer thread
      calls ``sync`` (to make data durable before it commits), so rollover must never hold the
      append or sync lock while it waits on the database: that would deadlock. The erasure coding
      itself runs on the sealer thread, holding none of them.
    """

    def __init__(self, drives: DriveSet | Path, meta: Metadata, max_size: int = DEFAULT_SEGMENT_SIZE) -> None:
        if isinstance(drives, Path):  # one drive directory: DIR/segments as before
            drives = DriveSet(meta, [drives.parent if drives.name == "segments" else drives])
        self.drives = drives
        self.meta = meta
        self.max_size = max_size
        self._append_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._rollover_lock = threading.Lock()
        self._read_fds: dict[tuple[int, int, int], int] = {}   # (segment, kind 0=replica 1=shard, n) -> fd
        self._infos: dict[tuple[int, int], shards.ShardInfo] = {}
        self._layouts: dict[int, Layout] = {}
        self._loaded_at: dict[int, float] = {}
        self._windows: OrderedDict[tuple[int, int, int], bytes] = OrderedDict()  # decoded shard columns
        self._fd_lock = threading.Lock()
        self._seg: int | None = None
        self._fds: list[tuple[int, int]] = []   # (drive id, fd) of the open segment's replicas
        self._broken = False                    # a replica failed: roll over before the next append
        self._size = 0
        # Segments with bytes not yet known durable: segment -> [fds, size, durable offset].
        self._unsynced: dict[int, list] = {}
        self._sealer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="exastor-seal")
        self._sealing: dict[int, Future[None]] = {}

    @property
    def directory(self) -> Path:
        """Drive 0's segment directory (single-drive compatibility)."""
        return self.drives.first.segments

    # --- writing ---------------------------------------------------------------
    def _create(self) -> tuple[int, list[tuple[int, int]]]:
        self.drives.maybe_refresh()
        for _attempt in range(8):
            g = self.drives.geometry()
            placed = self.drives.place(g.m + 1, salt=int(time.monotonic_ns() // 1000))
            seg = new_segment(self.meta, g.m, placed)
            head = segment_header(seg, time.time_ns())
            fds: list[tuple[int, int]] = []
            failed: tuple[Drive, OSError] | None = None
            for d in placed:
                path = segment_path(d.segments, seg)
                try:
                    self.drives.check(d, "write")
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o640)
                    fds.append((d.id, fd))
                    os.write(fd, head)
                    os.fsync(fd)
                    shards.fsync_dir(d.segments)
                except OSError as exc:
                    failed = (d, exc)
                    break
            if failed is None:
                return seg, fds
            for _, fd in fds:
                os.close(fd)
            for d in placed:
                segment_path(d.segments, seg).unlink(missing_ok=True)
            self.meta.set_segment_state_sync(seg, "deleted", 0)
            self.drives.failed_io(failed[0].id, failed[1])
        raise errors.Unavailable("could not open a segment on enough healthy drives")

    def _rollover(self, full_segment: int | None) -> None:
        """Seal ``full_segment`` (if it is still the open one) and open a new segment."""
        with self._rollover_lock:
            with self._append_lock:
                if self._seg != full_segment:
                    return  # another appender already rolled over
                old, self._seg = self._seg, None
                self._broken = False
            if old is not None:
                with self._sync_lock:
                    fds, size, _ = self._unsynced[old]
                    good = self._fsync_all(fds)
                    with self._append_lock:
                        del self._unsynced[old]
                    for _, fd in fds:
                        os.close(fd)
                self._sealing[old] = self._sealer.submit(self._seal_quietly, old, size, good)
            seg, fds = self._create()
            with self._append_lock:
                self._seg, self._fds, self._size = seg, fds, SEGMENT_HEADER_SIZE
                self._unsynced[seg] = [fds, SEGMENT_HEADER_SIZE, SEGMENT_HEADER_SIZE]

    def _fsync_all(self, fds: list[tuple[int, int]]) -> list[int]:
        """fsync every replica; returns the drives that succeeded (failures are recorded)."""
        good = []
        for drive, fd in fds:
            try:
                d = self.drives.get(drive)
                if d is not None:
                    self.drives.check(d, "write")
                os.fsync(fd)
                good.append(drive)
            except OSError as exc:
                self.drives.failed_io(drive, exc, now=False)
        return good

    def append(self, blob: bytes | bytearray | list[bytes | memoryview]) -> tuple[int, int]:
        """Append ``blob`` to the open segment; returns (segment id, offset of its first byte).

        A list of pieces is written with one ``writev`` per replica: the write path passes its
        records' headers and payloads as they are instead of joining a 4 MiB copy per window."""
        if isinstance(blob, list) and len(blob) > _IOV_MAX:
            blob = b"".join(blob)
        size = sum(map(len, blob)) if isinstance(blob, list) else len(blob)
        self.drives.maybe_refresh()  # another process may have marked a drive failed
        while True:
            failure: tuple[int, OSError] | None = None
            with self._append_lock:
                seg = self._seg
                if seg is not None and self._size < self.max_size and not self._broken:
                    base = self._size
                    for drive, fd in self._fds:
                        try:
                            d = self.drives.get(drive)
                            if d is None or d.state == "failed":
                                raise OSError(errno.EIO, "drive is marked failed")
                            self.drives.check(d, "write")
                            written = os.writev(fd, blob) if isinstance(blob, list) else os.write(fd, blob)
                            if written != size:
                                raise OSError(errno.ENOSPC, "short write")
                        except OSError as exc:
                            failure = (drive, exc)
                            break
                    if failure is None:
                        self._size = base + size
                        self._unsynced[seg][1] = self._size
                        return seg, base
                    # Cut torn tails so every replica stays parseable, then move to a new segment.
                    for _, fd in self._fds:
                        try:
                            os.ftruncate(fd, base)
                        except OSError:
                            pass
                    if failure[1].errno in (errno.ENOSPC, errno.EDQUOT):
                        holding = {d for d, _ in self._fds}
                        if not [d for d in self.drives.writable() if d.id not in holding]:
                            # Nowhere else to go: the store is out of space (507), the segment stays open.
                            raise errors.InsufficientStorage("no space left on the drives")
                    self._fds = [(d, fd) for d, fd in self._fds if d != failure[0]]
                    self._broken = True
            if failure is not None:
                d = self.drives.get(failure[0])
                if d is not None and d.state == "active":
                    self.drives.failed_io(failure[0], failure[1], now=False)  # the database may share the disk
            self._rollover(seg)

    def sync(self, segment: int, upto: int) -> None:
        """Make bytes ``[0, upto)`` of ``segment`` durable on every replica. Sealed segments already are."""
        with self._sync_lock:
            with self._append_lock:
                entry = self._unsynced.get(segment)
                if entry is None or entry[2] >= upto:
                    return
                fds, target = list(entry[0]), entry[1]
            good = self._fsync_all(fds)  # outside the append lock: writers keep appending meanwhile
            if len(good) < len(fds):
                with self._append_lock:
                    if self._seg == segment:
                        self._broken = True
                raise errors.Unavailable("a drive failed while making data durable; retry")
            with self._append_lock:
                entry = self._unsynced.get(segment)
                if entry is not None:
                    entry[2] = max(entry[2], target)

    # --- sealing ---------------------------------------------------------------
    def _seal_quietly(self, segment: int, size: int | None, good: list[int] | None) -> None:
        try:
            self.seal(segment, size, good)
        except (errors.Unavailable, errors.InsufficientStorage) as exc:
            log.warning("segment %d stays replicated for now: %s", segment, exc.detail)
        except Exception as exc:  # noqa: BLE001 - the segment stays replicated; recovery seals it at next start
            log.error("sealing segment %d failed (%s); it stays replicated and is sealed at the next start",
                      segment, exc)
            log.debug("sealing segment %d", segment, exc_info=True)
        finally:
            self._sealing.pop(segment, None)

    def _replica_bytes(self, lay: Layout, good: list[int] | None, size: int | None) -> bytes:
        """The segment's bytes from its replicas: the longest valid prefix, record by record from
        whichever replica holds a valid copy (a flipped byte in one replica is healed by another)."""
        bufs: list[bytes] = []
        drives = list(lay.replicas) if lay.kind == "replicas" else [self.drives.first.id]
        for drive in drives:
            if good is not None and drive not in good:
                continue
            d = self.drives.get(drive)
            if d is None or not self.drives.readable(drive):
                continue
            try:
                self.drives.check(d, "read")
                with open(segment_path(d.segments, lay.segment), "rb") as f:
                    bufs.append(f.read() if size is None else f.read(size))
            except OSError:
                continue
        if not bufs:
            raise errors.DataCorrupted(f"segment {lay.segment}: no readable replica")
        out = bytearray(bufs[0][:SEGMENT_HEADER_SIZE])
        pos = SEGMENT_HEADER_SIZE
        views = [memoryview(b) for b in bufs]
        while True:
            got = None
            for v in views:
                n = record_length(v, pos)
                if n:
                    got = v[pos:pos + n]
                    break
            if got is None:
                break
            out += got
            pos += len(got)
        return bytes(out)

    def seal(self, segment: int, size: int | None = None, good: list[int] | None = None, *,
             expect_state: str = "open") -> None:
        """Erasure-code a replicated segment and drop its replicas (idempotent; crash-safe at every step).
        ``expect_state='sealed'`` re-protects a sealed segment kept as plain copies."""
        lay = load_layout(self.meta, segment)
        if lay is None or lay.state != expect_state or lay.kind == "ec":
            return
        self.drives.maybe_refresh()
        reprotect = expect_state == "sealed"
        g = self.drives.seal_geometry() if (lay.kind == "replicas" or reprotect) else None
        single_copy = lay.kind == "plain" or (lay.kind == "replicas" and lay.m == 0 and g is not None
                                              and (g.k, g.m) == (1, 0) and len(lay.replicas) == 1)
        if single_copy and not reprotect and size is not None and (good is None or set(lay.replicas) <= set(good)):
            # A one-drive (1+0) segment sealed at rollover is its own final form: it was fsynced
            # and appends cut any torn tail, so reading 64 MiB back would only burn a core.
            if lay.kind == "plain":
                self.meta.set_segment_state_sync(segment, "sealed", size)
            else:
                commit_seal(self.meta, segment, 1, 0, 0, size, [])
            return
        if reprotect and (g is None or g.m == 0):
            return
        data = self._replica_bytes(lay, good, size)
        if g is None or (g.k == 1 and g.m == 0):
            # Legacy file or 1+0: the (cut back) replica is the final form.
            self._truncate_replicas(lay, len(data), good)
            if g is None and lay.kind == "replicas" and lay.m > 0:
                log.warning("segment %d sealed without erasure coding: too few healthy drives", segment)
            if lay.kind == "plain":
                self.meta.set_segment_state_sync(segment, "sealed", len(data))
            else:
                commit_seal(self.meta, segment, 1, 0, 0, len(data), [])
            return
        data_shards = erasure.split(data, g.k)
        all_shards = data_shards + erasure.encode(data_shards, g.m)
        placed = self._write_shards(segment, g, len(data), all_shards)  # Unavailable: stays replicated
        crash_point("seal.shards_written")
        if not commit_seal(self.meta, segment, g.k, g.m, len(all_shards[0]), len(data), placed,
                           expect_state=expect_state):
            for i, drive in enumerate(placed):
                d = self.drives.get(drive)
                if d is not None:
                    (d.shards / shards.shard_name(segment, i)).unlink(missing_ok=True)
            return
        crash_point("seal.committed")
        self.forget(segment)
        self.delete_replicas(lay)
        if lay.kind == "plain":
            segment_path(self.drives.first.segments, segment).unlink(missing_ok=True)

    def _write_shards(self, segment: int, g: erasure.Geometry, data_len: int, all_shards: list[bytes]) -> list[int]:
        placed: list[int] = []
        used: set[int] = set()
        for i, shard in enumerate(all_shards):
            while True:
                d = self.drives.place(1, salt=segment + i, exclude=used)[0]
                used.add(d.id)
                try:
                    self.drives.check(d, "write")
                    shards.write_shard(d.shards / shards.shard_name(segment, i), segment, i, g.k, g.m, data_len, shard)
                    placed.append(d.id)
                    break
                except OSError as exc:
                    self.drives.failed_io(d.id, exc)
        return placed

    def _truncate_replicas(self, lay: Layout, end: int, good: list[int] | None) -> None:
        drives = list(lay.replicas) if lay.kind == "replicas" else [self.drives.first.id]
        for drive in drives:
            d = self.drives.get(drive)
            if d is None or (good is not None and drive not in good):
                continue
            try:
                with open(segment_path(d.segments, lay.segment), "r+b") as f:
                    if os.fstat(f.fileno()).st_size != end:
                        f.truncate(end)
                    os.fsync(f.fileno())
            except OSError:
                continue

    def delete_replicas(self, lay: Layout) -> None:
        for drive in lay.replicas:
            d = self.drives.get(drive)
            if d is not None:
                try:
                    segment_path(d.segments, lay.segment).unlink(missing_ok=True)
                except OSError:
                    pass

    def delete_files(self, segment: int, lay: Layout | None = None) -> None:
        """Remove every file of a deleted segment (replicas, shards, a legacy file)."""
        self.forget(segment)
        width = lay.k + lay.m if lay is not None and lay.kind == "ec" else 0
        for d in self.drives.all:
            paths = [segment_path(d.segments, segment)] + [d.shards / shards.shard_name(segment, i)
                                                            for i in range(width)]
            for path in paths:
                try:
                    path.unlink(missing_ok=True)
                except OSError:
                    pass

    def wait_sealed(self) -> None:
        for fut in list(self._sealing.values()):
            try:
                fut.result()
            except Exception:  # noqa: BLE001 - logged by the sealer
                pass

    def recover(self) -> None:
        """At start: seal segments a previous process left open, remove files a crash orphaned."""
        for seg, state, _size in self.meta.segments():
            if state == "open":
                lay = load_layout(self.meta, seg)
                if lay is None:
                    continue
                if lay.kind == "plain" and not segment_path(self.drives.first.segments, seg).exists():
                    self.meta.set_segment_state_sync(seg, "deleted", 0)
                    continue
                try:
                    self.seal(seg)
                except errors.DataCorrupted:
                    self.meta.set_segment_state_sync(seg, "deleted", 0)  # no replica survived: nothing was acked
                except errors.Unavailable as exc:
                    log.error("segment %d stays replicated: %s", seg, exc.detail)
        self.remove_orphans()

    def remove_orphans(self) -> None:
        """Replica files of erasure-coded segments and files of deleted segments (a crash between
        the database commit and the unlink leaves them); temporary shard files."""
        states = {seg: state for seg, state, _ in self.meta.segments()}

        def q(cur):  # noqa: ANN001, ANN202
            cur.execute("SELECT segment FROM segment_layout WHERE shard_len > 0")
            return {int(r[0]) for r in cur.fetchall()}

        def placed_q(cur):  # noqa: ANN001, ANN202
            cur.execute("SELECT segment, idx, drive FROM shards")
            return {(int(a), int(b)): int(c) for a, b, c in cur.fetchall()}

        coded = self.meta.runner.read(q)
        placed = self.meta.runner.read(placed_q)
        for d in self.drives.all:
            if not self.drives.readable(d.id):
                continue
            for path in list(d.segments.glob("seg-*.log")):
                seg = int(path.stem[4:], 16)
                if states.get(seg) == "deleted" or (seg in coded and states.get(seg) == "sealed"):
                    path.unlink(missing_ok=True)
            for path in list(d.shards.glob("seg-*")):
                if ".tmp" in path.name:
                    path.unlink(missing_ok=True)
                    continue
                seg, idx = int(path.name[4:20], 16), int(path.name[22:25])
                # a deleted segment's, or a copy the database does not point at (a seal or repair that
                # crashed before its commit, or the old copy of a moved shard)
                if states.get(seg) == "deleted" or (states.get(seg) == "sealed" and placed.get((seg, idx)) != d.id):
                    path.unlink(missing_ok=True)

    def close(self) -> None:
        with self._rollover_lock:
            with self._sync_lock, self._append_lock:
                pending = [(seg, fds, size) for seg, (fds, size, _) in self._unsynced.items()]
                self._unsynced.clear()
                self._seg = None
            for seg, fds, size in pending:
                good = self._fsync_all(fds)
                for _, fd in fds:
                    os.close(fd)
                self._sealing[seg] = self._sealer.submit(self._seal_quietly, seg, size, good)
        self.wait_sealed()
        self._sealer.shutdown(wait=True)
        with self._fd_lock:
            for fd in self._read_fds.values():
                os.close(fd)
            self._read_fds.clear()

    # --- reading ---------------------------------------------------------------
    def layout(self, segment: int, *, fresh: bool = False) -> Layout:
        lay = None if fresh else self._layouts.get(segment)
        if lay is None:
            lay = load_layout(self.meta, segment)
            if lay is None or lay.state == "deleted":
                raise errors.DataCorrupted(f"segment {segment} missing")
            if lay.state == "sealed":  # immutable until repair moves a shard (then a read fails and refreshes)
                self._layouts[segment] = lay
                self._loaded_at[segment] = time.monotonic()
        return lay

    def _fd(self, segment: int, kind: int, n: int, path: Path) -> int:
        key = (segment, kind, n)
        fd = self._read_fds.get(key)
        if fd is not None:
            return fd
        with self._fd_lock:
            fd = self._read_fds.get(key)
            if fd is None:
                fd = os.open(path, os.O_RDONLY)
                self._read_fds[key] = fd
            return fd

    def _replica_fd(self, lay: Layout, drive: int) -> int:
        d = self.drives.get(drive)
        if d is None or not self.drives.readable(drive):
            raise DriveDown(f"drive {drive} unavailable")
        self.drives.check(d, "read")
        return self._fd(lay.segment, 0, drive, segment_path(d.segments, lay.segment))

    def _shard_fd(self, lay: Layout, idx: int) -> int:
        if idx >= len(lay.shards):
            raise FileNotFoundError(f"shard {idx} not recorded")
        _, drive, _ = lay.shards[idx]
        d = self.drives.get(drive)
        if d is None or not self.drives.readable(drive):
            raise DriveDown(f"drive {drive} unavailable")
        self.drives.check(d, "read")
        return self._fd(lay.segment, 1, idx, d.shards / shards.shard_name(lay.segment, idx))

    def _pread_healthy(self, lay: Layout, offset: int, length: int) -> bytes:
        if lay.kind == "plain":
            return os.pread(self._fd(lay.segment, 0, -1, segment_path(self.drives.first.segments, lay.segment)),
                            length, offset)
        if lay.kind == "replicas":
            last: OSError | None = None
            for drive in lay.replicas:
                try:
                    return os.pread(self._replica_fd(lay, drive), length, offset)
                except OSError as exc:
                    last = exc
            raise last or FileNotFoundError("no replica")
        out = []
        pos, end = offset, offset + length
        while pos < end:
            idx = pos // lay.shard_len
            within = pos - idx * lay.shard_len
            take = min(end - pos, lay.shard_len - within)
            out.append(os.pread(self._shard_fd(lay, idx), take, within))
            pos += take
        return b"".join(out)

    def pread(self, segment: int, offset: int, length: int) -> bytes:
        """Healthy read: the one replica or data shard(s) holding the bytes; no verification here."""
        try:
            return self._pread_healthy(self.layout(segment), offset, length)
        except DriveDown as exc:
            # Repair may have moved the shard off the dead drive: look again, at most every few seconds.
            lay = self._layouts.get(segment)
            if lay is not None and time.monotonic() - self._loaded_at.get(segment, 0.0) > 5.0:
                try:
                    return self._pread_healthy(self.layout(segment, fresh=True), offset, length)
                except OSError:
                    pass
            raise errors.DataCorrupted(f"segment {segment}: {exc}") from exc
        except OSError as exc:
            if segment in self._layouts and time.monotonic() - self._loaded_at.get(segment, 0.0) < 5.0:
                # The layout was just read afresh and the file is still not there: a lost shard, not a
                # move. Go degraded without another database round trip per record.
                raise errors.DataCorrupted(f"segment {segment}: {exc}") from exc
            try:  # the layout may have changed under us (sealed, repaired, compacted): look again once
                lay = self.layout(segment, fresh=True)
                self._drop_stale_fds(lay)
                return self._pread_healthy(lay, offset, length)
            except OSError as exc:
                raise errors.DataCorrupted(f"segment {segment}: {exc}") from exc

    def pread_degraded(self, segment: int, offset: int, length: int, check: Check) -> bytes:
        """Bytes that pass ``check`` from other copies or by decoding; queues bad shards for repair."""
        lay = self.layout(segment)  # pread already looked the layout up afresh if a file was missing
        if lay.kind == "replicas":
            for drive in lay.replicas:
                try:
                    raw = os.pread(self._replica_fd(lay, drive), length, offset)
                    check(raw)
                    return raw
                except (OSError, errors.DataCorrupted):
                    continue
            raise errors.DataCorrupted(f"segment {segment}: every replica failed")
        if lay.kind == "plain":
            raw = self._pread_healthy(lay, offset, length)
            check(raw)
            return raw
        raw = self.read_ec_range(lay, offset, length)
        check(raw)
        return raw

    def _shard_info(self, lay: Layout, idx: int, fd: int) -> shards.ShardInfo:
        key = (lay.segment, idx)
        info = self._infos.get(key)
        if info is None:
            info = shards.read_info(fd)
            if info.segment != lay.segment or info.index != idx or info.shard_len != lay.shard_len:
                raise errors.DataCorrupted(f"shard {idx} of segment {lay.segment} is another shard")
            self._infos[key] = info
        return info

    def read_shard_range(self, lay: Layout, idx: int, start: int, length: int) -> bytes:
        """Verified bytes [start, start+length) of shard ``idx``; DataCorrupted/OSError if not."""
        fd = self._shard_fd(lay, idx)
        return shards.read_verified(fd, self._shard_info(lay, idx, fd), start, length)

    def read_ec_range(self, lay: Layout, offset: int, length: int) -> bytes:
        """Segment bytes [offset, offset+length) of an erasure-coded segment, decoding around bad shards.
        Decodes whole ``DEGRADED_WINDOW`` column windows and keeps the last few: a degraded sequential
        read then costs one decode per window, not one per record."""
        out = []
        pos, end = offset, offset + length
        while pos < end:
            idx = pos // lay.shard_len
            within = pos - idx * lay.shard_len
            ws = within // DEGRADED_WINDOW * DEGRADED_WINDOW
            key = (lay.segment, idx, ws)
            with self._fd_lock:
                window = self._windows.get(key)
                if window is not None:
                    self._windows.move_to_end(key)
            if window is None:
                n = min(DEGRADED_WINDOW, lay.shard_len - ws)
                window = self.decode_columns(lay, ws, n, [idx])[idx]
                with self._fd_lock:
                    self._windows[key] = window
                    while len(self._windows) > DEGRADED_WINDOWS_KEPT:
                        self._windows.popitem(last=False)
            take = min(end - pos, ws + len(window) - within)
            out.append(window[within - ws:within - ws + take])
            pos += take
        return b"".join(out)

    def decode_columns(self, lay: Layout, start: int, length: int, want: list[int]) -> dict[int, bytes]:
        """Columns [start, start+length) of shards ``want``, from the shards themselves where they
        verify, else decoded from k verified others. Bad shards are queued for repair."""
        got: dict[int, bytes] = {}
        bad: list[int] = []
        order = want + [i for i in range(lay.k + lay.m) if i not in want]
        for idx in order:
            if len(got) >= lay.k and all(w in got for w in want):
                break
            if len(got) >= lay.k and idx not in want:
                break
            try:
                got[idx] = self.read_shard_range(lay, idx, start, length)
            except (OSError, errors.DataCorrupted):
                bad.append(idx)
        for idx in bad:
            if idx < len(lay.shards) and lay.shards[idx][2] == "ok":
                self.drives.shard_bad(lay.segment, idx)
        if len(got) < lay.k:
            raise errors.DataCorrupted(f"segment {lay.segment}: only {len(got)} of {lay.k} needed shards readable")
        return erasure.decode(lay.k, lay.m, got, want)

    def read_segment(self, segment: int) -> bytes:
        """Every byte of a segment (fsck, scans), decoding if needed."""
        lay = self.layout(segment, fresh=True)
        if lay.kind == "ec":
            return self.read_ec_range(lay, 0, lay.data_len)
        return self._replica_bytes(lay, None, None)

    def _drop_stale_fds(self, lay: Layout) -> None:
        """Close cached descriptors of shards that moved to another drive (repair, drain)."""
        if lay.kind != "ec":
            return
        with self._fd_lock:
            for idx, _drive, _ in lay.shards:
                info = self._infos.get((lay.segment, idx))
                fd = self._read_fds.get((lay.segment, 1, idx))
                if fd is None:
                    continue
                try:
                    moved = os.fstat(fd).st_nlink == 0  # the file we hold was unlinked: the shard moved
                except OSError:
                    moved = True
                if moved:
                    os.close(self._read_fds.pop((lay.segment, 1, idx)))
                    if info is not None:
                        del self._infos[(lay.segment, idx)]

    def forget(self, segment: int) -> None:
        """Drop cached descriptors and layout of a segment (compacted, sealed, or repaired)."""
        with self._fd_lock:
            self._layouts.pop(segment, None)
            for key in [k for k in self._read_fds if k[0] == segment]:
                os.close(self._read_fds.pop(key))
            for key in [k for k in self._infos if k[0] == segment]:
                del self._infos[key]

    @property
    def open_segment(self) -> int | None:
        return self._seg
