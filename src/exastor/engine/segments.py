"""Append-only segments across drives: replicated while open, erasure-coded once sealed.

One segment is open for appends at a time per gateway process. Its bytes go to m+1 replica files
on distinct drives (the write buffer: it survives the same m failures as the final stripe), and
``sync`` fsyncs all of them before any commit points at the bytes. When the segment reaches
``max_size`` it is sealed on a background thread: cut into k contiguous data shards plus m parity
shards (systematic Reed-Solomon, engine/erasure.py), each written and fsynced on a distinct drive,
recorded in the database, and only then are the replicas deleted. With one drive (1+0) the single
replica simply stays: the segment file IS the data, byte-compatible with format version 1.

Every byte goes through the drives' I/O seam (``exastor.drives``): names, never paths.

A failed write or fsync is final. The replica is never appended to or fsynced again (the seam
refuses too: after a failed fsync the kernel may have dropped the dirty pages, and a second fsync
would report success for lost bytes), the segment is rolled over (sealed from the replicas that
are left), and every commit that needs bytes the failure may have lost fails (``_tainted``): the
client gets a 503 and retries into a new segment, never a 200 for bytes that may be gone.

Reads: a healthy read is a ``pread`` of the one data shard (or two, across a boundary) holding the
record. ``pread_degraded`` is for when that failed its checksum: other replicas, or a column-range
decode from k verified shards. Bytes that exist only on offline drives are *unavailable*
(``SegmentUnavailable``, a 503), never reported lost.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from exastor import errors
from exastor.drives import DIRECT_ALIGN, DriveIO, Fenced, age_s, aligned_buffer, process_short
from exastor.engine import erasure, shards
from exastor.engine.drives import (
    CAPACITY,
    Drive,
    DriveSet,
    Layout,
    allocate_gens,
    commit_seal,
    crash_point,
    load_layout,
    names_shard,
    segment_name,
    shard_salt,
)
from exastor.engine.record import HEADER_SIZE, SEGMENT_HEADER_SIZE, segment_header
from exastor.engine.scan import next_valid, record_length
from exastor.meta import leases, placement
from exastor.meta.contract import Metadata
from exastor.meta.placement import Written, abandon_segment, abandon_stripe, new_segment, new_stripe

DEFAULT_SEGMENT_SIZE = 64 << 20
_IOV_MAX = 1024              # pieces one writev takes (Linux)
DEGRADED_WINDOW = 1 << 20    # columns decoded at once by a degraded read
DEGRADED_WINDOWS_KEPT = 32   # decoded windows kept per process (32 MiB)
LEFTOVER_GRACE_S = 3600.0    # a temporary file this old belongs to no write still in progress
# Write errors after which the replica still holds every byte written before (it only cannot
# grow): it is dropped from appends but still fsynced, and nothing written before is in doubt.
_CANNOT_GROW = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
_T = TypeVar("_T")

log = logging.getLogger("exastor.segments")

Check = Callable[[bytes], object]

__all__ = ["DEFAULT_SEGMENT_SIZE", "DriveDown", "SegmentLog", "SegmentUnavailable", "record_length", "segment_name"]


class DriveDown(FileNotFoundError):
    """The drive holding the bytes is failed, offline or removed: go degraded without asking the database again."""


class SegmentUnavailable(errors.Unavailable):
    """Every copy of these bytes is on an offline drive: they come back with the drive (503, never 500)."""


def _short(segment: int, exc: OSError) -> errors.Unavailable:
    """A read that failed because this process (or the kernel) is out of descriptors or memory: 503,
    never a bad shard or a failed drive (the drive said nothing wrong)."""
    return errors.Unavailable(f"segment {segment}: this server is short of resources ({exc}); retry")


@dataclass
class _Open:
    """A segment this process wrote and has not made fully durable yet."""

    replicas: list[int]          # drives to fsync (a replica that cannot grow is still fsynced)
    size: int                    # bytes written
    durable: int                 # bytes known fsynced on every replica
    all_replicas: list[int] = field(default_factory=list)


class SegmentLog:
    """Locks, and why there are three:

    - ``_append_lock`` guards the open segment's replicas and size; held only for the writes.
    - ``_sync_lock`` serialises fsyncs and the releasing of write handles, so an fsync never runs on
      a handle that a rollover released.
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
        self._infos: dict[tuple[int, int], shards.ShardInfo] = {}
        self._layouts: dict[int, Layout] = {}
        self._loaded_at: dict[int, float] = {}
        self._windows: OrderedDict[tuple[int, int, int], bytes | bytearray] = OrderedDict()  # decoded shard columns
        self._cache_lock = threading.Lock()
        # Bumped by every ``forget``: a layout read from the database before a forget is never cached
        # after it (a seal, repair or compaction committed in between; the cache would hold the view it
        # just dropped).
        self._forgets = 0
        self._seg: int | None = None
        self._epoch = 0                        # the open segment's lease epoch: every append carries it
        self._writing: list[int] = []          # drives the open segment's appends go to
        self._broken = False                   # a replica failed: roll over before the next append
        self._size = 0
        self._unsynced: dict[int, _Open] = {}
        # Segments where a write or fsync failed: segment -> bytes durable on every replica before the
        # failure. A commit that needs more of it fails, forever (the failure is final).
        self._tainted: dict[int, int] = {}
        self._sealer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="exastor-seal")
        # Writes a stripe's shards in parallel (seals and full stripes; each thread mostly waits on a
        # drive's write or fsync).
        self._shard_writers = ThreadPoolExecutor(max_workers=16, thread_name_prefix="exastor-shard")
        self._sealing: dict[int, Future[None]] = {}
        # Renews the open segment's lease (meta/leases.py); one per process (a forked worker starts its own).
        self._renewer: tuple[int, threading.Thread] | None = None
        self._stripes_writing: dict[int, int] = {}  # full stripes being written (write_stripe): segment -> epoch
        self._closing = threading.Event()
        # Only a process that knows no other can be writing may take over unexpired leases: a SQLite
        # store's server holds its data directory's lock; PostgreSQL is shared by gateways on many hosts.
        self.recover_steals = getattr(meta.runner, "backend", "") == "sqlite"

    # --- writing ---------------------------------------------------------------
    def _create(self) -> tuple[int, list[int]]:
        self.drives.maybe_refresh()
        for _attempt in range(8):
            g = self.drives.geometry()
            salt = int(time.monotonic_ns() // 1000)
            tier = self.drives.buffer_tier(g.m + 1)  # the write-buffer drives, when the store has them
            group = self.drives.stripe_group(g.m + 1, salt) if tier == CAPACITY else None
            placed = self.drives.place(g.m + 1, salt=salt, within=group, tier=tier)
            created_ns = time.time_ns()
            seg = new_segment(self.meta, g.m, [d.id for d in placed], created_ns)  # and its first lease, epoch 1
            name = segment_name(seg)
            head = segment_header(seg, created_ns, self.drives.store_tag, epoch=1)
            made: list[Drive] = []
            failed: tuple[Drive, OSError] | None = None
            for d in placed:
                try:
                    d.io.create(name, head)
                    made.append(d)
                    d.io.fsync(name)
                    d.io.sync_dir("segments")
                except OSError as exc:
                    failed = (d, exc)
                    break
            if failed is None:
                crash_point("segment.created")  # its files made (header fsynced, entry durable), no record yet
                return seg, [d.id for d in placed]
            for d in made:  # only the files this call created (O_EXCL): never one it found there
                try:
                    d.io.unlink(name)
                except OSError:
                    pass
                d.io.release([name])
            # Only while it is still open: a drive that took longer than the lease to fail lets another
            # process take the segment over and seal it meanwhile (the cluster manager's orphan sealer);
            # its shard rows then stand, and the segment with them (empty, compacted like any other).
            if not abandon_segment(self.meta, seg):
                log.info("segment %d was taken over by another process while its files were made: left to it", seg)
            if failed[1].errno == errno.EEXIST:
                log.error("drive %d already holds %s, which this store never wrote: another store is writing "
                          "to this drive (a copied data directory?); not touching it", failed[0].id, name)
                continue
            self.drives.failed_io(failed[0].id, failed[1])
        raise errors.Unavailable("could not open a segment on enough healthy drives")

    def _taint(self, segment: int, entry: _Open, failed: list[int]) -> None:
        """A write or fsync failed on ``failed``: those replicas are done with, and bytes past what was
        durable everywhere are in doubt (the append lock is held)."""
        self._tainted[segment] = min(self._tainted.get(segment, entry.durable), entry.durable)
        entry.replicas = [d for d in entry.replicas if d not in failed]
        if self._seg == segment:
            self._writing = [d for d in self._writing if d not in failed]
            self._broken = True

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
                    with self._append_lock:
                        entry = self._unsynced[old]
                        targets = list(entry.replicas)
                    failed = self._fsync_all(old, targets)
                    with self._append_lock:
                        if failed:
                            self._taint(old, entry, failed)
                        else:
                            entry.durable = entry.size
                        del self._unsynced[old]  # a later sync of it: durable, or failing by _tainted
                    self._release_writes(old, entry.all_replicas)
                self._sealing[old] = self._sealer.submit(self._seal_quietly, old, entry.size, list(entry.replicas))
            seg, placed = self._create()
            with self._append_lock:
                self._seg, self._writing, self._size, self._epoch = seg, list(placed), SEGMENT_HEADER_SIZE, 1
                self._unsynced[seg] = _Open(list(placed), SEGMENT_HEADER_SIZE, SEGMENT_HEADER_SIZE, list(placed))
            self._ensure_renewer()

    def _ensure_renewer(self) -> None:
        pid = os.getpid()
        if self._renewer is not None and self._renewer[0] == pid and self._renewer[1].is_alive():
            return
        thread = threading.Thread(target=self._renew_leases, name="exastor-lease", daemon=True)
        self._renewer = (pid, thread)
        thread.start()

    def _renew_leases(self) -> None:
        """Every third of the lease time, extend the leases of the open segment and of the full stripes
        being written. The open segment's found lost (another
        process took the segment over after it expired: this one was paused, or cut off from the
        database) makes the next append open a new segment; the fence already stops its writes."""
        while not self._closing.wait(leases.SEGMENT_LEASE_RENEW_MS / 1000):
            with self._append_lock:
                seg, epoch = self._seg, self._epoch
                held = dict(self._stripes_writing)
            if seg is not None:
                held[seg] = epoch
            if not held:
                continue
            try:
                lost = leases.renew(self.meta, leases.holder_id(), held)
            except errors.Unavailable as exc:  # the database is away: the fence keeps the segment safe meanwhile
                log.warning("could not renew the leases of segments %s: %s", sorted(held), exc)
                continue
            except Exception:  # noqa: BLE001 - a bug must not stop renewing; it is logged in full. No data
                # depends on this thread: a lease that lapses is taken over and fenced, never written twice.
                log.exception("renewing the leases of segments %s failed", sorted(held))
                continue
            if seg is not None and seg in lost:
                log.warning("segment %d: its lease was taken over by another process; opening a new one", seg)
                with self._append_lock:
                    if self._seg == seg and self._epoch == epoch:
                        self._broken = True

    def _release_writes(self, segment: int, drive_ids: list[int]) -> None:
        for drive in drive_ids:
            d = self.drives.get(drive)
            if d is not None:
                d.io.release([segment_name(segment)])

    def _fsync_all(self, segment: int, drive_ids: list[int]) -> list[int]:
        """fsync every replica once; returns the drives that failed (recorded as failed I/O). A
        failed replica is never fsynced again: the caller drops it."""
        failed = []
        name = segment_name(segment)
        for drive in drive_ids:
            d = self.drives.get(drive)
            try:
                if d is None:
                    raise OSError(errno.EIO, f"drive {drive} is gone")
                d.io.fsync(name)
            except OSError as exc:
                failed.append(drive)
                log.error("fsync of segment %d on drive %d failed (%s): that replica is written no more",
                          segment, drive, exc)
                self.drives.failed_io(drive, exc, now=False)
        return failed

    def append(self, blob: bytes | bytearray | list[bytes | bytearray | memoryview]) -> tuple[int, int]:
        """Append ``blob`` to the open segment; returns (segment id, offset of its first byte).

        A list of pieces is written with one ``pwritev`` per replica: the write path passes its
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
                    name = segment_name(seg)
                    for drive in self._writing:
                        try:
                            d = self.drives.get(drive)
                            if d is None or d.state in ("failed", "offline", "removed"):
                                raise OSError(errno.EIO, f"drive {drive} is {d.state if d else 'gone'}")
                            d.io.append(name, base, blob, epoch=self._epoch)
                        except OSError as exc:
                            failure = (drive, exc)
                            break
                    entry = self._unsynced[seg]
                    if failure is None:
                        self._size = base + size
                        entry.size = self._size
                        return seg, base
                    if isinstance(failure[1], Fenced):
                        # Another process took this segment over (our lease was lost) and fenced its
                        # replicas to seal it: not one more byte from us, and no truncate (refused
                        # anyway). Commits that need bytes not yet durable fail (503, the client
                        # retries); bytes made durable before are in the segment it seals.
                        log.warning("segment %d was taken over by another process (%s): abandoned, "
                                    "writing to a new segment", seg, failure[1])
                        self._taint(seg, entry, list(self._writing))
                        failure = None
                    else:
                        # Cut the failed append back so every replica stays parseable, then move on.
                        for drive in self._writing:
                            d = self.drives.get(drive)
                            try:
                                if d is not None:
                                    d.io.truncate(name, base, epoch=self._epoch)
                            except OSError:
                                pass
                        if failure[1].errno in (errno.ENOSPC, errno.EDQUOT):
                            holding = set(self._writing)
                            if not [d for d in self.drives.writable(None) if d.id not in holding]:
                                # Nowhere else to go: the store is out of space (507), the segment stays open.
                                raise errors.InsufficientStorage("no space left on the drives")
                        if failure[1].errno in _CANNOT_GROW:
                            self._writing = [d for d in self._writing if d != failure[0]]
                            self._broken = True
                        else:
                            self._taint(seg, entry, [failure[0]])
            if failure is not None:
                d = self.drives.get(failure[0])
                if d is not None and d.state == "active":
                    self.drives.failed_io(failure[0], failure[1], now=False)  # the database may share the disk
            self._rollover(seg)

    def sync(self, segment: int, upto: int) -> None:
        """Make bytes ``[0, upto)`` of ``segment`` durable on every replica. Sealed segments already
        are. Unavailable if a write or fsync failed on any replica after bytes this needs were
        written: they may be lost there, and that failure is final."""
        with self._sync_lock:
            with self._append_lock:
                if segment in self._tainted and upto > self._tainted[segment]:
                    raise errors.Unavailable("a drive failed while making data durable; retry")
                entry = self._unsynced.get(segment)
                if entry is None or entry.durable >= upto:
                    return
                targets, target = list(entry.replicas), entry.size
            failed = self._fsync_all(segment, targets)  # outside the append lock: writers keep appending meanwhile
            with self._append_lock:
                if failed:
                    self._taint(segment, entry, failed)
                    raise errors.Unavailable("a drive failed while making data durable; retry")
                entry.durable = max(entry.durable, target)

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

    def _holders(self, lay: Layout) -> list[int]:
        return list(lay.replicas) if lay.kind == "replicas" else [self.drives.first.id]

    def _replica_bytes(self, lay: Layout, good: list[int] | None, size: int | None, *,
                       sealing: bool = False) -> bytearray:
        """The segment's bytes from its replicas, record by record from whichever replica holds a
        valid copy (a flipped byte in one replica is healed by another). A record no replica holds
        valid is kept as it is when a valid record follows it (damage: reported, never a reason to
        drop what follows); only what follows the last valid record is a torn tail, cut.

        One replica is read first; the others only where it falls short: a record it does not hold
        valid, or its end before ``size`` (or, without ``size``, its end at all - another may be
        longer). A seal of healthy replicas reads one copy, not m+1.

        ``sealing``: the result must reach the end of the last record the chunk index points at (a
        committed record was fsynced, so it is never a torn tail): damage there is kept in place, and
        if no readable replica is that long (the complete ones offline, one that stopped growing
        left) nothing is sealed - SegmentUnavailable while a holder is offline, else DataCorrupted."""
        name = segment_name(lay.segment)
        unread: list[DriveIO] = []
        offline = []
        for drive in self._holders(lay):
            if good is not None and drive not in good:
                continue
            d = self.drives.get(drive)
            if d is None or not self.drives.readable(drive):
                if self.drives.offline(drive):
                    offline.append(drive)
                continue
            unread.append(d.io)
        bufs: list[bytes] = []
        views: list[memoryview] = []

        def read(every: bool) -> bool:
            """Read the next readable replica (``every``: all the rest); whether any was read."""
            before = len(bufs)
            while unread and (every or len(bufs) == before):
                io = unread.pop(0)
                try:
                    bufs.append(io.pread(name, 0, size if size is not None else io.stat(name).size))
                except OSError:
                    continue
                views.append(memoryview(bufs[-1]))
            return len(bufs) > before

        if not read(every=False):
            if offline:
                raise SegmentUnavailable(f"segment {lay.segment}: its replicas are on offline drives {offline}")
            raise errors.DataCorrupted(f"segment {lay.segment}: no readable replica")
        out = bytearray(bufs[0][:SEGMENT_HEADER_SIZE])
        pos = SEGMENT_HEADER_SIZE
        damaged: list[tuple[int, int]] = []
        while True:
            got = None
            for v in views:
                n = record_length(v, pos)
                if n:
                    got = v[pos:pos + n]
                    break
            if got is not None:
                out += got
                pos += len(got)
                continue
            if (size is None or pos < size) and read(every=True):
                continue  # the replicas read so far fall short here: ask the others too
            after = [p for b in bufs if (p := next_valid(b, pos + 1)) is not None]
            if not after:
                break  # the torn tail
            nxt = min(after)
            source = next(b for b in bufs if len(b) >= nxt)
            out += source[pos:nxt]
            damaged.append((pos, nxt))
            pos = nxt
        if sealing:
            need = placement.indexed_end(self.meta, lay.segment, HEADER_SIZE)
            if len(out) < need:
                read(every=True)
                holder = next((b for b in bufs if len(b) >= need), None)
                if holder is None:
                    if offline:
                        raise SegmentUnavailable(f"segment {lay.segment}: the replicas that hold its last indexed "
                                                 f"bytes are on offline drives {offline}")
                    raise errors.DataCorrupted(f"segment {lay.segment}: no readable replica holds its indexed "
                                               f"bytes up to {need}")
                damaged.append((len(out), need))
                out += holder[len(out):need]
        if damaged:
            log.error("segment %d: bytes %s fail their checksums in every replica; kept in place, not cut "
                      "(exastor fsck names the objects they belong to)", lay.segment,
                      ", ".join(f"{a}-{b}" for a, b in damaged[:8]))
        return out

    def _fence(self, lay: Layout, epoch: int, good: list[int] | None) -> list[int] | None:
        """Record ``epoch`` in every replica this seal may read (``good``, else all): from now on the
        drives refuse the previous holder's writes, so what is read next is final. Returns the
        replicas fenced; a replica that could not be (offline, unreachable, failed, missing) is left
        out of the seal - whatever a stale writer still puts there is never read. None when a replica
        already has a higher epoch: a later taker owns the segment now."""
        fenced = []
        name = segment_name(lay.segment)
        for drive in self._holders(lay):
            if good is not None and drive not in good:
                continue
            d = self.drives.get(drive)
            if d is None or not self.drives.readable(drive):
                continue
            try:
                d.io.fence(name, epoch)
            except Fenced as exc:
                log.info("segment %d: %s; left to its new holder", lay.segment, exc)
                return None
            except OSError as exc:
                if exc.errno == errno.EROFS:  # nobody can write it any more: as good as fenced
                    fenced.append(drive)
                    continue
                log.warning("segment %d: could not fence the replica on drive %d (%s): not read for sealing",
                            lay.segment, drive, exc)
                continue
            fenced.append(drive)
        return fenced

    def seal(self, segment: int, size: int | None = None, good: list[int] | None = None, *,
             expect_state: str = "open", steal: bool = False, steal_prefix: str | None = None) -> None:
        """Erasure-code a replicated segment and drop its replicas (idempotent; crash-safe at every step).
        ``expect_state='sealed'`` re-protects a sealed segment kept as plain copies.

        An open segment is sealed under its write lease (meta/leases.py): the sealer takes it (a new
        epoch; another holder's only once it expired, or with ``steal``, or when the holder's id
        begins with ``steal_prefix``: this gateway's previous run) and fences every replica with
        it before reading, so a writer that lost the lease can no longer change what is sealed. If the
        lease is another process's, the segment is left to it."""
        lay = load_layout(self.meta, segment)
        if lay is None or lay.state != expect_state or lay.kind == "ec":
            return
        epoch: int | None = None
        if expect_state == "open":
            epoch = leases.take(self.meta, segment, leases.holder_id(), steal=steal, steal_prefix=steal_prefix)
            if epoch is None:
                log.info("segment %d is written or sealed by another process (its lease): left to it", segment)
                return
            if lay.kind == "replicas" and not lay.replicas:  # a full stripe (write_stripe) whose writer is gone
                if abandon_stripe(self.meta, segment):
                    log.warning("segment %d: a full-stripe write whose writer is gone before it committed: "
                                "marked deleted (nothing points into it; the sweep removes its shards)", segment)
                return
            fenced = self._fence(lay, epoch, good)
            if fenced is None:
                return
            good = fenced
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
            else:  # its one file is the final form: nothing was written twice
                commit_seal(self.meta, segment, 1, 0, 0, size, [], epoch=epoch, written=Written(size, 0, size))
            return
        if reprotect and (g is None or g.m == 0):
            return
        data = self._replica_bytes(lay, good, size, sealing=True)
        if g is None or (g.k == 1 and g.m == 0):
            # Legacy file or 1+0: the (cut back) replica is the final form.
            self._truncate_replicas(lay, len(data), good, epoch or 0)
            if g is None and lay.kind == "replicas" and lay.m > 0:
                log.warning("segment %d sealed without erasure coding: too few healthy drives", segment)
            if lay.kind == "plain":
                self.meta.set_segment_state_sync(segment, "sealed", len(data))
            else:  # the replicas kept are the final form
                commit_seal(self.meta, segment, 1, 0, 0, len(data), [], epoch=epoch,
                            written=Written(len(data), 0, len(data) * max(1, len(lay.replicas))))
            crash_point("seal.committed")  # sealed as it is: the replica cut back to the size just committed
            return
        # Coded as a full stripe is (write_stripe): in one page-aligned buffer, parity in place, each
        # shard a view written with O_DIRECT.
        data_len = len(data)
        stripe = aligned_buffer(self.stripe_room(data_len, g))
        stripe[:data_len] = data
        del data  # one copy of the segment in memory, not two
        shard_len, pieces = self._code_stripe(stripe, data_len, g)
        placed = self._write_shards(segment, g, data_len, pieces)  # Unavailable: stays replicated
        crash_point("seal.shards_written")
        written = None if reprotect else Written(data_len, data_len * len(lay.replicas), shard_len * g.width)
        if not commit_seal(self.meta, segment, g.k, g.m, shard_len, data_len, placed,
                           expect_state=expect_state, epoch=epoch, written=written):
            # Lost to another sealer or to compaction: remove only the files this call wrote (their
            # generations are ours alone), and only those no row names.
            for i, (drive, gen) in enumerate(placed):
                d = self.drives.get(drive)
                if d is not None and not names_shard(self.meta, segment, i, drive, gen):
                    try:
                        d.io.unlink(shards.shard_name(segment, i, gen))
                    except OSError:
                        pass
            return
        crash_point("seal.committed")
        self.forget(segment)
        self.delete_replicas(lay)

    def _write_shards(self, segment: int, g: erasure.Geometry, data_len: int,
                      all_shards: Sequence[bytes | bytearray | memoryview],
                      gens: list[int] | None = None) -> list[tuple[int, int]]:
        """Write and fsync every shard on a drive of its own, all at once (a stripe's shards are written
        in parallel: one drive's fsync does not wait for another's); a drive that fails is recorded
        and its shard placed again elsewhere. Returns (drive, gen) by shard index."""
        gens = gens or allocate_gens(self.meta, len(all_shards))
        group = self.drives.stripe_group(len(all_shards), salt=segment)
        done: dict[int, int] = {}   # shard index -> the drive holding it
        used: set[int] = set()      # drives this stripe holds, is being written to, or that failed it

        def put(job: tuple[int, Drive]) -> OSError | None:
            i, d = job
            try:
                shards.write_shard(d.io, shards.shard_name(segment, i, gens[i]), segment, i, g.k, g.m,
                                   data_len, all_shards[i], self.drives.store_tag)
            except OSError as exc:
                return exc
            return None

        while len(done) < len(all_shards):
            batch: list[tuple[int, Drive]] = []
            for i in range(len(all_shards)):
                if i in done:
                    continue
                taken = [*done.values(), *(d.id for _, d in batch)]
                d = self.drives.place(1, salt=shard_salt(segment, i), exclude=used,
                                      occupied=self.drives.domains_of(taken), within=group)[0]
                used.add(d.id)
                batch.append((i, d))
            for (i, d), exc in zip(batch, self._shard_writers.map(put, batch), strict=True):
                if exc is None:
                    done[i] = d.id
                else:
                    self.drives.failed_io(d.id, exc)
        return [(done[i], gens[i]) for i in range(len(all_shards))]

    # --- full stripes, written once -----------------------------------------------
    def stripe_geometry(self) -> erasure.Geometry | None:
        """The geometry of a full stripe written directly now; None when every write goes through the
        replicated write buffer: one drive (1+0: the buffer's one file is already the final form), or
        fewer than m+1 drives writable."""
        g = self.drives.seal_geometry()
        return g if g is not None and g.m > 0 else None

    @staticmethod
    def stripe_room(data_len: int, g: erasure.Geometry) -> int:
        """Bytes a buffer needs to hold a full stripe of ``data_len`` bytes for ``write_stripe``: its
        k data shards of a page-aligned length, then its m parity shards."""
        return erasure.shard_length(data_len, g.k, align=DIRECT_ALIGN) * g.width

    @staticmethod
    def _code_stripe(stripe: memoryview, data_len: int, g: erasure.Geometry) -> tuple[int, list[memoryview]]:
        """(shard length, the k+m shards) of a stripe buffer (``stripe_room`` bytes, page-aligned)
        holding ``data_len`` bytes: the k data shards are page-aligned cuts of it, zero-padded after
        the data, and ISA-L writes the m parity shards into the rest - every shard a view, no copy."""
        shard_len = erasure.shard_length(data_len, g.k, align=DIRECT_ALIGN)
        stripe[data_len:shard_len * g.k] = bytes(shard_len * g.k - data_len)  # the padding parity covers
        pieces = [stripe[i * shard_len:(i + 1) * shard_len] for i in range(g.width)]
        erasure.encode(pieces[:g.k], g.m, out=pieces[g.k:])
        return shard_len, pieces

    def write_stripe(self, stripe: memoryview, data_len: int, g: erasure.Geometry) -> int:
        """Write a segment straight into its final form - k data and m parity shards on distinct
        drives, each fsynced - skipping the replicated write buffer, and commit it sealed. Returns its
        id. ``stripe``: a page-aligned buffer (``aligned_buffer``) of at least ``stripe_room`` bytes
        holding the segment's ``data_len`` bytes, its first SEGMENT_HEADER_SIZE reserved for the header
        (filled here); the padding and parity are computed into the rest. The shards are views of it,
        page-aligned, so each is written with O_DIRECT (drives/local.py ``put``): no page-cache copy.

        The ordering rule holds as for a seal: the shards are durable before the one transaction that
        records them, and a writer commits chunk rows into the segment only after that. A crash or
        failure before the commit leaves an open segment with no replica rows and no chunks:
        ``abandon_stripe`` marks it deleted (here, or at recovery) and the sweep removes its files,
        which name it. Unavailable when it cannot be placed or was taken over before it committed:
        the caller writes the bytes through the buffer instead, or the client retries."""
        assert len(stripe) >= self.stripe_room(data_len, g), "the caller sizes the buffer with stripe_room"
        created_ns = time.time_ns()
        seg, gens = new_stripe(self.meta, g.m, g.width, created_ns)  # open, no replicas, its lease epoch 1 ours
        with self._append_lock:
            self._stripes_writing[seg] = 1  # renewed while written: a slow write is not taken for a dead one
        self._ensure_renewer()
        view = memoryview(stripe)
        placed: list[tuple[int, int]] = []
        try:
            view[:SEGMENT_HEADER_SIZE] = segment_header(seg, created_ns, self.drives.store_tag, epoch=1)
            shard_len, pieces = self._code_stripe(view, data_len, g)
            placed = self._write_shards(seg, g, data_len, pieces, gens)
            crash_point("stripe.shards_written")
            committed = commit_seal(self.meta, seg, g.k, g.m, shard_len, data_len, placed, epoch=1,
                                    written=Written(data_len, 0, shard_len * g.width))
        except BaseException:
            self._abandon_stripe(seg, placed)
            raise
        finally:
            with self._append_lock:
                del self._stripes_writing[seg]
        if not committed:
            self._abandon_stripe(seg, placed)
            raise errors.Unavailable(f"segment {seg}: its full-stripe write lost its lease before it committed; retry")
        crash_point("stripe.committed")
        return seg

    def _abandon_stripe(self, segment: int, placed: list[tuple[int, int]]) -> None:
        """A full stripe that did not commit: its row marked deleted, the shard files known written
        removed now (any others are removed by the sweep: they name the deleted segment)."""
        try:
            if not abandon_stripe(self.meta, segment):
                return  # committed after all, or already taken over: its files are the row's
        except Exception as exc:  # noqa: BLE001 - the caller's own error is the one to report; recovery
            # marks the segment deleted later (open, no replicas, no chunks)
            log.warning("segment %d: could not mark an unfinished full stripe deleted (%s): recovery will", segment, exc)
            return
        for i, (drive, gen) in enumerate(placed):
            self._delete_file(drive, shards.shard_name(segment, i, gen), segment)

    def _truncate_replicas(self, lay: Layout, end: int, good: list[int] | None, epoch: int = 0) -> None:
        name = segment_name(lay.segment)
        for drive in self._holders(lay):
            d = self.drives.get(drive)
            if d is None or (good is not None and drive not in good) or not self.drives.readable(drive):
                continue
            try:
                if d.io.stat(name).size != end:
                    d.io.truncate(name, end, epoch=epoch)
                    d.io.fsync(name)
            except OSError:
                continue

    def delete_replicas(self, lay: Layout) -> None:
        """The replica files of a segment whose stripe this process just committed: garbage by that
        transaction. Offline drives keep theirs until they return (swept then)."""
        for drive in lay.replicas:
            self._delete_file(drive, segment_name(lay.segment), lay.segment)

    def _delete_file(self, drive: int, name: str, segment: int) -> None:
        d = self.drives.get(drive)
        if d is None or not self.drives.readable(drive):
            return
        try:
            d.io.unlink(name)
        except OSError as exc:
            log.warning("could not delete %s on drive %d (%s): swept later", name, drive, exc)
        d.io.release([name])

    def delete_files(self, segment: int, lay: Layout | None = None) -> None:
        """Remove every file of a segment compaction just marked deleted (its replicas, its shards as
        the layout names them, a legacy file) from the drives that are online; the rest is swept
        when those drives return (``sweep``)."""
        self.forget(segment)
        if lay is None:
            return
        for drive in ([self.drives.first.id] if lay.kind == "plain" else lay.replicas):
            d = self.drives.get(drive)
            if d is not None and self.drives.names_segment(d.io, segment_name(segment), segment):
                self._delete_file(drive, segment_name(segment), segment)
        for row in lay.shards:
            d = self.drives.get(row.drive)
            name = shards.shard_name(segment, row.idx, row.gen)
            if d is not None and self._names_shard(d.io, name, segment, row.idx):
                self._delete_file(row.drive, name, segment)

    def wait_sealed(self) -> None:
        for fut in list(self._sealing.values()):
            try:
                fut.result()
            except Exception:  # noqa: BLE001 - logged by the sealer
                pass

    def recover(self, *, previous_run: str | None = None) -> None:
        """At start: seal segments a previous process left open, then sweep what is provably garbage.

        Which open segments are this start's to seal: on SQLite every one (one server owns the store:
        it holds the data directory's lock, so no other process can be writing). On a shared
        database only those whose write lease expired (by the database's clock: the holder is gone)
        and those leased to this gateway's previous run (``previous_run``: the prefix of its holder
        ids, meta/leases.py ``gateway_prefix``; the caller guarantees no process of it still runs).
        A segment another gateway holds a live lease on is being written: it is left alone.

        A segment whose replicas are all on offline drives is left exactly as it is, open, until a
        drive returns: sealing it from nothing, or marking it deleted, would lose acknowledged
        bytes that are merely unreachable. The same for replicas on failed drives: never deleted."""
        self.drives.refresh()
        for seg, state, _size in self.meta.segments():
            if state != "open":
                continue
            lay = load_layout(self.meta, seg)
            if lay is None or not self._ours_to_recover(seg, previous_run):
                continue
            holders = self._holders(lay)
            if holders and not any(self.drives.readable(d) for d in holders):
                waiting = [d for d in holders if self.drives.offline(d)]
                if waiting:
                    log.error("segment %d waits for offline drive(s) %s: left open until they return "
                              "(exastor drive status)", seg, waiting)
                else:
                    log.error("segment %d: every replica is on a failed drive (%s); left as it is "
                              "(bring the drive back with exastor drive add)", seg, holders)
                continue
            try:
                self.seal(seg, steal=self.recover_steals, steal_prefix=previous_run)
            except errors.Unavailable as exc:
                log.error("segment %d stays replicated: %s", seg, exc.detail)
            except errors.DataCorrupted as exc:
                if self._never_written(lay):
                    # Positive proof, not absence of evidence: every drive that should hold it is online
                    # with its identity verified, none has the file, and no chunk points into it.
                    if abandon_segment(self.meta, seg):  # unless another process sealed it meanwhile
                        log.warning("segment %d was allocated but never written (a crash before its files "
                                    "were created): marked deleted", seg)
                else:
                    log.error("segment %d could not be sealed (%s); left open", seg, exc.detail)
        self.sweep()

    def _ours_to_recover(self, segment: int, previous_run: str | None) -> bool:
        """Whether start-up recovery takes ``segment`` over (see ``recover``); says why in the log."""
        if self.recover_steals:
            return True
        lease = leases.lease_of(self.meta, segment)
        if lease is None or lease.expired:
            log.warning("segment %d was left open by %s (its lease expired): sealing it", segment,
                        lease.holder if lease else "a process from before leases")
            return True
        if previous_run is not None and lease.holder.startswith(previous_run):
            log.warning("segment %d was left open by this gateway's previous run (%s): sealing it now",
                        segment, lease.holder)
            return True
        log.info("segment %d is being written by %s (its lease is live): left to it", segment, lease.holder)
        return False

    def _never_written(self, lay: Layout) -> bool:
        holders = self._holders(lay)
        for drive in holders:
            d = self.drives.get(drive)
            if d is None or not self.drives.readable(drive):
                return False
            try:
                d.io.stat(segment_name(lay.segment))
                return False
            except FileNotFoundError:
                continue
            except OSError:
                return False
        return not placement.segment_has_chunks(self.meta, lay.segment)

    def sweep(self) -> int:
        """Delete files the database proves are garbage, on drives whose identity verifies. Proof
        means: the database says the segment is deleted, or (for a replica) erasure-coded, or (for
        a shard) that another copy superseded this one - its row names a later generation, or this
        generation on another drive - AND the file's own header or trailer names that segment (and
        shard) and this store. Absence of evidence proves nothing: a file of a segment the database
        does not know (a restored older database, another writer) stays, as does one whose header
        cannot be read. Temporary files are removed an hour after their last write."""
        self.drives.refresh()

        states, coded, rows = placement.sweep_evidence(self.meta)
        removed = 0
        for d in self.drives.all:
            if d.state not in ("active", "full", "draining"):
                continue  # offline, failed, removed: never touched; read-only: cannot be
            try:
                segment_files = d.io.list("segments")
                shard_files = d.io.list("shards")
            except OSError:
                continue
            for base in segment_files:
                name = f"segments/{base}"
                try:
                    seg = int(base[4:20], 16) if base.startswith("seg-") and base.endswith(".log") else None
                except ValueError:
                    seg = None
                if seg is None:
                    continue
                if states.get(seg) == "deleted" or (seg in coded and states.get(seg) == "sealed"):
                    removed += self._remove_proven(d, name, lambda io, n, s=seg: self.drives.names_segment(io, n, s))
            for base in shard_files:
                name = f"shards/{base}"
                if ".tmp" in base:
                    try:
                        if age_s(d.io.stat(name)) > LEFTOVER_GRACE_S:
                            removed += self._remove_proven(d, name, lambda io, n: True)
                    except OSError:
                        pass
                    continue
                parsed = shards.parse_shard_name(name)
                if parsed is None:
                    continue
                seg, idx, gen = parsed
                if states.get(seg) == "deleted" or (states.get(seg) == "sealed" and
                                                    _superseded(rows.get(seg, {}), idx, gen, d.id)):
                    removed += self._remove_proven(d, name, lambda io, n, s=seg, i=idx: self._names_shard(io, n, s, i))
        return removed

    def _names_shard(self, io, name: str, segment: int, idx: int) -> bool:  # noqa: ANN001
        try:
            info = shards.read_info(io, name)
        except (OSError, errors.DataCorrupted):
            return False
        return info.segment == segment and info.index == idx and info.store_tag in (0, self.drives.store_tag)

    def _remove_proven(self, d: Drive, name: str, names_itself: Callable) -> int:
        if not names_itself(d.io, name):
            log.warning("drive %d: %s looks like garbage by the database but does not name itself as this "
                        "store's: left alone", d.id, name)
            return 0
        try:
            gone = d.io.unlink(name)
        except OSError as exc:
            log.warning("drive %d: could not delete %s: %s", d.id, name, exc)
            return 0
        d.io.release([name])
        if gone:
            log.info("drive %d: removed %s (garbage by the database)", d.id, name)
        return int(gone)

    def close(self) -> None:
        self._closing.set()
        with self._rollover_lock:
            with self._sync_lock, self._append_lock:
                pending = list(self._unsynced.items())
                self._unsynced.clear()
                self._seg = None
            for seg, entry in pending:
                failed = self._fsync_all(seg, entry.replicas)
                with self._append_lock:
                    if failed:
                        self._taint(seg, entry, failed)
                self._release_writes(seg, entry.all_replicas)
                self._sealing[seg] = self._sealer.submit(self._seal_quietly, seg, entry.size, list(entry.replicas))
        self.wait_sealed()
        self._sealer.shutdown(wait=True)
        self._shard_writers.shutdown(wait=True)
        self.drives.close()

    # --- reading ---------------------------------------------------------------
    def layout(self, segment: int, *, fresh: bool = False) -> Layout:
        lay = None if fresh else self._layouts.get(segment)
        if lay is None:
            forgets = self._forgets
            lay = load_layout(self.meta, segment)
            if lay is None or lay.state == "deleted":
                raise errors.DataCorrupted(f"segment {segment} missing")
            if lay.state == "sealed":  # kept until repair, re-protection or compaction changes it (a read fails, refreshes)
                with self._cache_lock:
                    if self._forgets == forgets:
                        self._layouts[segment] = lay
                        self._loaded_at[segment] = time.monotonic()
        return lay

    def _readable(self, drive: int) -> Drive:
        d = self.drives.get(drive)
        if d is None or not self.drives.readable(drive):
            raise DriveDown(f"drive {drive} is {d.state if d else 'unknown'}")
        return d

    def _unavailable(self, lay: Layout, drives: list[int]) -> SegmentUnavailable | None:
        waiting = [d for d in drives if self.drives.offline(d)]
        if not waiting:
            return None
        return SegmentUnavailable(f"segment {lay.segment} is on offline drive(s) {waiting}: bring "
                                  f"{'it' if len(waiting) == 1 else 'them'} back (exastor drive status)")

    def _pread_healthy(self, lay: Layout, offset: int, length: int, writable: bool = False) -> bytes | memoryview:
        if writable:  # a buffer the caller may change in place: read straight into it
            buffer = np.empty(length, np.uint8).data  # not zeroed: the read fills what is returned
            return buffer[:self._pread_into(lay, offset, buffer)]
        if lay.kind in ("plain", "replicas"):
            return self._from_a_replica(lay, lambda io, name: io.pread(name, offset, length))
        return b"".join(io.pread(name, within, take) for io, name, within, take in self._shard_pieces(lay, offset, length))

    def _pread_into(self, lay: Layout, offset: int, buffer: memoryview) -> int:
        """``_pread_healthy`` into a caller's buffer; returns the bytes read."""
        if lay.kind in ("plain", "replicas"):
            return self._from_a_replica(lay, lambda io, name: io.pread_into(name, offset, buffer))
        done = 0
        for io, name, within, take in self._shard_pieces(lay, offset, len(buffer)):
            got = io.pread_into(name, within, buffer[done:done + take])
            done += got
            if got < take:
                break  # the end of the data
        return done

    def _from_a_replica(self, lay: Layout, read: Callable[[DriveIO, str], _T]) -> _T:
        """``read(io, name)`` from the first holder of a replicated (or plain) segment that answers."""
        last: OSError | None = None
        holders = self._holders(lay)
        for drive in holders:
            try:
                return read(self._readable(drive).io, segment_name(lay.segment))
            except OSError as exc:
                if process_short(exc):
                    raise _short(lay.segment, exc) from exc
                last = exc
        unavailable = self._unavailable(lay, holders) if not any(self.drives.readable(d) for d in holders) \
            else None
        if unavailable is not None:
            raise unavailable
        raise last or FileNotFoundError("no replica")

    def _shard_pieces(self, lay: Layout, offset: int, length: int) -> Iterator[tuple[DriveIO, str, int, int]]:
        """(drive, shard file, offset in it, bytes) of each data shard a range of an erasure-coded
        segment spans, in order."""
        pos, end = offset, offset + length
        while pos < end:
            idx = pos // lay.shard_len
            within = pos - idx * lay.shard_len
            take = min(end - pos, lay.shard_len - within)
            if idx >= len(lay.shards):
                raise FileNotFoundError(f"shard {idx} not recorded")
            row = lay.shards[idx]
            yield self._readable(row.drive).io, shards.shard_name(lay.segment, idx, row.gen), within, take
            pos += take

    def pread(self, segment: int, offset: int, length: int, *, writable: bool = False) -> bytes | memoryview:
        """Healthy read: the one replica or data shard(s) holding the bytes; no verification here.
        ``writable``: into a buffer of its own that the caller may change in place (a run of
        encrypted records is decrypted where it lies: engine/chunkstore.py)."""
        try:
            return self._pread_healthy(self.layout(segment), offset, length, writable)
        except DriveDown as exc:
            # Repair may have moved the shard off the dead drive: look again, at most every few seconds.
            lay = self._layouts.get(segment)
            if lay is not None and time.monotonic() - self._loaded_at.get(segment, 0.0) > 5.0:
                try:
                    return self._pread_healthy(self.layout(segment, fresh=True), offset, length, writable)
                except OSError as again:
                    if process_short(again):
                        raise _short(segment, again) from again
            raise errors.DataCorrupted(f"segment {segment}: {exc}") from exc
        except OSError as exc:
            if process_short(exc):
                raise _short(segment, exc) from exc
            if segment in self._layouts and time.monotonic() - self._loaded_at.get(segment, 0.0) < 5.0:
                # The layout was just read afresh and the file is still not there: a lost shard, not a
                # move. Go degraded without another database round trip per record.
                raise errors.DataCorrupted(f"segment {segment}: {exc}") from exc
            try:  # the layout may have changed under us (sealed, repaired, compacted): look again once
                lay = self.layout(segment, fresh=True)
                self._drop_stale(lay)
                return self._pread_healthy(lay, offset, length, writable)
            except OSError as exc:
                if process_short(exc):
                    raise _short(segment, exc) from exc
                raise errors.DataCorrupted(f"segment {segment}: {exc}") from exc

    def pread_degraded(self, segment: int, offset: int, length: int, check: Check) -> bytes:
        """Bytes that pass ``check`` from other copies or by decoding; queues bad shards for repair.
        SegmentUnavailable when only copies on offline drives could still have them.

        A layout is a snapshot: between reading it and reading the files it names, a seal may have
        erasure-coded the segment and deleted its replicas, a repair or drain moved a shard, a
        re-protection replaced plain copies, compaction deleted the segment (DataCorrupted "missing":
        the caller looks the chunk up again). Each commits the new layout before it deletes a file, so
        a file missing under an old view proves nothing; only a failure under the layout read again
        after it is one (docs/design.md, "Readers and the files they were told about")."""
        lay = self.layout(segment)  # pread already looked the layout up afresh if a file was missing
        try:
            return self._read_around(lay, offset, length, check)
        except errors.DataCorrupted:
            self.forget(segment)  # the handles and shard trailers of the view that failed
            fresh = self.layout(segment, fresh=True)
            if fresh == lay:
                raise
            log.info("segment %d changed under a read (%s %s -> %s %s): reading it as it is now", segment,
                     lay.state, lay.kind, fresh.state, fresh.kind)
            return self._read_around(fresh, offset, length, check)

    def _read_around(self, lay: Layout, offset: int, length: int, check: Check) -> bytes:
        """``pread_degraded`` under one view of the segment's layout."""
        if lay.kind in ("replicas", "plain"):
            holders = self._holders(lay)
            for drive in holders:
                try:
                    raw = self._readable(drive).io.pread(segment_name(lay.segment), offset, length)
                    check(raw)
                    return raw
                except OSError as exc:
                    if process_short(exc):
                        raise _short(lay.segment, exc) from exc
                    continue
                except errors.DataCorrupted:
                    continue
            unavailable = self._unavailable(lay, holders)
            if unavailable is not None:
                raise unavailable
            raise errors.DataCorrupted(f"segment {lay.segment}: every replica failed")
        raw = self.read_ec_range(lay, offset, length)
        check(raw)
        return raw

    def _shard_info(self, lay: Layout, idx: int) -> shards.ShardInfo:
        key = (lay.segment, idx)
        info = self._infos.get(key)
        if info is None:
            row = lay.shards[idx]
            info = shards.read_info(self._readable(row.drive).io, shards.shard_name(lay.segment, idx, row.gen))
            if info.segment != lay.segment or info.index != idx or info.shard_len != lay.shard_len:
                raise errors.DataCorrupted(f"shard {idx} of segment {lay.segment} is another shard")
            self._infos[key] = info
        return info

    def read_shard_range(self, lay: Layout, idx: int, start: int, length: int) -> bytes:
        """Verified bytes [start, start+length) of shard ``idx``; DataCorrupted/OSError if not."""
        if idx >= len(lay.shards):
            raise FileNotFoundError(f"shard {idx} not recorded")
        row = lay.shards[idx]
        io = self._readable(row.drive).io
        return shards.read_verified(io, shards.shard_name(lay.segment, idx, row.gen), self._shard_info(lay, idx),
                                    start, length)

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
            with self._cache_lock:
                window = self._windows.get(key)
                if window is not None:
                    self._windows.move_to_end(key)
            if window is None:
                n = min(DEGRADED_WINDOW, lay.shard_len - ws)
                window = self.decode_columns(lay, ws, n, [idx])[idx]
                with self._cache_lock:
                    self._windows[key] = window
                    while len(self._windows) > DEGRADED_WINDOWS_KEPT:
                        self._windows.popitem(last=False)
            take = min(end - pos, ws + len(window) - within)
            out.append(window[within - ws:within - ws + take])
            pos += take
        return b"".join(out)

    def decode_columns(self, lay: Layout, start: int, length: int, want: list[int]) -> dict[int, bytes | bytearray]:
        """Columns [start, start+length) of shards ``want``, from the shards themselves where they
        verify, else decoded from k verified others. Bad shards are queued for repair (not those on
        offline drives: their data is expected back)."""
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
            except OSError as exc:
                if process_short(exc):  # never queued for repair: the shard may be fine
                    raise _short(lay.segment, exc) from exc
                bad.append(idx)
            except errors.DataCorrupted:
                bad.append(idx)
        for idx in bad:
            row = lay.shards[idx] if idx < len(lay.shards) else None
            if row is not None and row.state == "ok" and not self.drives.offline(row.drive):
                # Only the copy this view names: under a stale view the shard may have moved, and
                # the new copy is not known to be bad.
                self.drives.shard_bad(lay.segment, idx, row.drive, row.gen)
        if len(got) < lay.k:
            offline = [lay.shards[i].drive for i in bad if i < len(lay.shards) and self.drives.offline(lay.shards[i].drive)]
            if len(got) + len(offline) >= lay.k:
                raise SegmentUnavailable(f"segment {lay.segment}: {len(got)} of {lay.k} needed shards readable, "
                                         f"the others on offline drive(s) {sorted(set(offline))}")
            raise errors.DataCorrupted(f"segment {lay.segment}: only {len(got)} of {lay.k} needed shards readable")
        return erasure.decode(lay.k, lay.m, got, want)

    def read_segment(self, segment: int) -> bytes:
        """Every byte of a segment (fsck, scans), decoding if needed."""
        lay = self.layout(segment, fresh=True)
        if lay.kind == "ec":
            return self.read_ec_range(lay, 0, lay.data_len)
        return bytes(self._replica_bytes(lay, None, None))

    def _drop_stale(self, lay: Layout) -> None:
        """Forget cached shard trailers and handles of shards that moved (repair, drain)."""
        if lay.kind != "ec":
            return
        with self._cache_lock:
            for row in lay.shards:
                info = self._infos.get((lay.segment, row.idx))
                if info is not None:
                    del self._infos[(lay.segment, row.idx)]

    def forget(self, segment: int) -> None:
        """Drop cached handles, trailers and layout of a segment (compacted, sealed, or repaired)."""
        with self._cache_lock:
            self._forgets += 1
            self._layouts.pop(segment, None)
            for key in [k for k in self._infos if k[0] == segment]:
                del self._infos[key]
        names = [segment_name(segment), shards.shard_name(segment, 0)[:-3] + "*"]  # its shards, any generation
        for d in self.drives.all:
            d.io.release(names)

    @property
    def open_segment(self) -> int | None:
        return self._seg


def _superseded(rows: dict[int, tuple[int, int]], idx: int, gen: int, drive: int) -> bool:
    """Shard file (``idx``, ``gen``) on ``drive`` is a copy the database no longer points at and
    never will: generations only grow, so a writer that allocated ``gen`` before the row's current
    one was committed can no longer win its conditional update."""
    row = rows.get(idx)
    if row is not None:
        row_drive, row_gen = row
        return row_gen > gen or (row_gen == gen and row_drive != drive)
    return bool(rows) and min(g for _, g in rows.values()) > gen  # a stripe of another geometry replaced it
