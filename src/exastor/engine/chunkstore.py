"""The chunk store: content-addressed, deduplicated, compressed chunks in segments.

Write path (per object): bytes stream in -> windows of WINDOW bytes -> FastCDC
chunks -> BLAKE3 fingerprints -> dedupe against the index (and against records
other writers just wrote) -> zstd -> AES-256-GCM when the store encrypts at rest
(engine/encryption.py) -> records appended to the open segment in
one write per window -> fsync (grouped) -> the caller commits metadata that
references the chunks. Data is durable before any metadata points at it.

Windows are processed on worker threads (BLAKE3, zstd and os.write release the
GIL) while the event loop receives the next window.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import blake3

from exastor import errors
from exastor.drives import aligned_buffer
from exastor.engine import chunker, codec, encryption, erasure, references
from exastor.engine.drives import DriveSet
from exastor.engine.record import HEADER_SIZE, SEGMENT_HEADER_SIZE, decode_header, encode, verify_payload
from exastor.engine.segments import DEFAULT_SEGMENT_SIZE, SegmentLog
from exastor.meta import manifest as mf
from exastor.meta.contract import Metadata
from exastor.meta.records import ChunkLocation

WINDOW = 4 << 20          # bytes chunked per worker-thread task
INLINE_LIMIT = 256 << 10  # objects this small are processed on the event loop: a thread hop costs more
READ_BATCH = 4 << 20      # bytes read per worker-thread task on GET
_ROOM = chunker.MAX_SIZE  # kept in front of each window after the first, for the chunk carried into it
RUN_LIMIT = 768 << 10     # bytes of adjacent records per pread: under malloc's 1 MiB mmap threshold
# Full stripes (SegmentLog.write_stripe): a writer of a large object gathers its new records into
# stripes of k x FULL_STRIPE_SHARD bytes (at most a segment) and writes each once, as k data + m
# parity shards, instead of into the replicated write buffer and again at its seal. An object whose
# new bytes are fewer than DIRECT_MIN (and that filled no stripe) goes through the buffer: a stripe
# of its own would be k+m small files. The last, partial stripe of an object that filled one is
# written directly too, whatever its size: one more segment per large object, and not one byte twice.
FULL_STRIPE_SHARD = 4 << 20
DIRECT_MIN = WINDOW
STRIPE_BUFFERS_KEPT = 2  # stripe buffers a process keeps for the next stripes (~30 MiB each at 4+2)
# A window buffer: room for the carried chunk, the window, and the piece that tips it over. Buffers
# are used again, by later windows and later objects (ChunkStore.take_window): a fresh 4 MiB buffer
# per window is an mmap (gateway/memory.py) whose pages are faulted in, zeroed and unmapped again
# every window, ~0.3-0.8 CPU-s per GiB of a large PUT (more than the copy into it).
WINDOW_BUFFER = _ROOM + WINDOW + (1 << 20)
WINDOW_POOL = 4           # spare window buffers a store keeps (resident once used: ~5 MiB each)

log = logging.getLogger("exastor.chunkstore")


_B = TypeVar("_B", bytearray, memoryview)


class _Spares(Generic[_B]):
    """Large buffers kept for the next use (window and stripe buffers): a fresh one costs its page
    faults and zeroing every time. At most ``keep``; any thread."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._bufs: list[_B] = []
        self._lock = threading.Lock()

    def take(self, size: int) -> _B | None:
        """A kept buffer of at least ``size`` bytes (its contents undefined), or None."""
        with self._lock:
            for i, buf in enumerate(self._bufs):
                if len(buf) >= size:
                    return self._bufs.pop(i)
        return None

    def give(self, buf: _B) -> None:
        with self._lock:
            if len(self._bufs) < self._keep:
                self._bufs.append(buf)

    def __len__(self) -> int:
        return len(self._bufs)


class Digester(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...


@dataclass
class WriteResult:
    size: int
    manifest: bytes
    new_chunks: list[ChunkLocation]


@dataclass
class _Stripe:
    """A full stripe a writer fills with its new records, then writes once (``SegmentLog.write_stripe``)."""

    geometry: erasure.Geometry
    target: int                                   # bytes of records that fill it
    buf: memoryview                               # the segment: its header's room, the records, room for
                                                  # the padding and the parity (write_stripe); page-aligned
    fill: int = SEGMENT_HEADER_SIZE
    records: list[tuple[bytes, int, int, int, int]] = field(default_factory=list)  # fp, offset, stored, raw, codec
    fps: set[bytes] = field(default_factory=set)

    @property
    def data(self) -> int:
        return self.fill - SEGMENT_HEADER_SIZE


@dataclass
class _WriterState:
    cdc: chunker.FastCDC
    slices: list[mf.Slice] = field(default_factory=list)
    new_chunks: dict[bytes, ChunkLocation] = field(default_factory=dict)  # fp -> loc (written or borrowed)
    own_fps: list[bytes] = field(default_factory=list)                   # fps this writer put into `pending`
    touched: dict[int, int] = field(default_factory=dict)                # segment -> end offset to fsync
    size: int = 0
    direct: bool = False               # new records go into full stripes (a large object), not the buffer
    stripe: _Stripe | None = None      # the stripe being filled
    stripes: int = 0                   # full stripes written
    writing: tuple[_Stripe, Future[int]] | None = None  # the previous stripe, written while this one fills


class ChunkStore:
    def __init__(self, drive: Path | DriveSet, meta: Metadata, *, segment_size: int = DEFAULT_SEGMENT_SIZE,
                 threads: int | None = None, recover: bool = True) -> None:
        self.meta = meta
        # A bare directory is a one-drive store (no redundancy); a DriveSet spreads segments over drives.
        self.log = SegmentLog(drive if isinstance(drive, DriveSet) else drive / "segments", meta,
                              max_size=segment_size)
        if recover:  # only where no other process may have a segment open (see gateway.server)
            self.log.recover()
        # Threads mostly wait on I/O or run GIL-free hashing/compression: more than the cores.
        self.pool = ThreadPoolExecutor(max_workers=threads or 2 * max(2, os.cpu_count() or 2),
                                       thread_name_prefix="exastor-io")
        # The data keys records are encrypted under (engine/encryption.py; plaintext when the store does not encrypt).
        self.keys = encryption.of(meta)
        # Records written but not yet committed to the index, so concurrent writers of the same
        # bytes share one record instead of both writing it.
        self._pending: dict[bytes, ChunkLocation] = {}
        self._pending_lock = threading.Lock()
        # Writes full stripes while their writers fill the next (a thread waits on drives, not a core).
        self._stripe_writers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="exastor-stripe")
        self._spare_stripes: _Spares[memoryview] = _Spares(STRIPE_BUFFERS_KEPT)
        # Bytes that went through worker-thread windows and read batches (large objects only): the
        # gateway's heap trimmer runs only when this moved (gateway/memory.py).
        self.moved = 0
        self._spare_windows: _Spares[bytearray] = _Spares(WINDOW_POOL)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self._stripe_writers.shutdown(wait=True)
        self.log.close()

    # --- writing ---------------------------------------------------------------
    def writer(self, digesters: Iterable[Digester] = ()) -> ObjectWriter:
        return ObjectWriter(self, list(digesters))

    def take_window(self) -> bytearray:
        """A window buffer of WINDOW_BUFFER bytes (contents undefined), a spare one when there is one."""
        buf = self._spare_windows.take(WINDOW_BUFFER)
        return bytearray(WINDOW_BUFFER) if buf is None else buf

    def give_window(self, buf: bytearray) -> None:
        """Return a window buffer nothing reads any more. It is written again, never resized: a
        worker thread may hold a view of it for a moment after its window's future completed."""
        if len(buf) == WINDOW_BUFFER:  # a grown one (a piece past the room) is let go
            self._spare_windows.give(buf)

    def _process(self, state: _WriterState, buf: bytes | memoryview, final: bool) -> bytes:
        """Chunk, fingerprint, dedupe, compress and append (or stage into a full stripe) one window.
        Returns the carried tail. The final window also writes the stripe being filled."""
        tail = self._process_window(state, buf, final)
        if final and (state.stripe is not None or state.writing is not None):
            self._finish_stripe(state)
        return tail

    def _process_window(self, state: _WriterState, buf: bytes | memoryview, final: bool) -> bytes:
        chunks, tail = chunker.cut(state.cdc, buf, final)
        if not chunks:
            return tail
        fps = [blake3.blake3(c).digest() for c in chunks]
        staged = state.stripe.fps if state.stripe is not None else ()
        known: dict[bytes, ChunkLocation] = {}
        unknown: list[bytes] = []
        with self._pending_lock:
            for fp in fps:
                if fp in state.new_chunks or fp in known or fp in staged:
                    continue
                loc = self._pending.get(fp)
                if loc is not None:
                    known[fp] = loc
                else:
                    unknown.append(fp)
        indexed = self.meta.lookup_chunks(unknown) if unknown else {}
        new: list[tuple[bytes, int, int, int, bytes | memoryview]] = []  # (fp, codec, flags, raw_len, payload)
        seen: set[bytes] = set()
        for chunk, fp in zip(chunks, fps, strict=True):
            state.slices.append(mf.Slice(fp, 0, len(chunk)))
            if fp in indexed or fp in state.new_chunks or fp in seen or fp in staged:
                continue
            borrowed = known.get(fp)
            if borrowed is not None:
                state.new_chunks[fp] = borrowed
                end = borrowed.offset + HEADER_SIZE + borrowed.stored_len
                state.touched[borrowed.segment] = max(state.touched.get(borrowed.segment, 0), end)
                continue
            seen.add(fp)
            which, payload = codec.compress(chunk)
            new.append((fp, which, 0, len(chunk), payload))
        if not new:
            return tail
        # Encrypted below the reduction (engine/encryption.py) into one buffer the next window reuses:
        # the stored payloads are written (or copied into the stripe) before the block ends.
        with self.keys.seal_window(new) as (key_id, stored):
            if state.direct and (state.stripe is not None or self._start_stripe(state)):
                self._stage(state, new, stored, key_id)
                return tail
            fresh: list[tuple[bytes, int, int, int, int]] = []  # (fp, offset in the write, stored_len, raw_len, codec)
            pos = 0
            parts: list[bytes | bytearray | memoryview] = []
            for (fp, which, _, raw, _), payload in zip(new, stored, strict=True):
                parts.append(encode(fp, which, raw, payload, key_id=key_id))
                parts.append(payload)
                fresh.append((fp, pos, len(payload), raw, which))
                pos += HEADER_SIZE + len(payload)
            seg, base = self.log.append(parts)  # one writev: no joined copy of the window
        self._located(state, seg, base, fresh)
        state.touched[seg] = max(state.touched.get(seg, 0), base + pos)
        return tail

    def _located(self, state: _WriterState, seg: int, base: int,
                 records: Iterable[tuple[bytes, int, int, int, int]]) -> None:
        """Records now written at ``base`` + their offset in ``seg``: this writer's, and visible to
        concurrent writers of the same bytes (``_pending``) until its commit."""
        with self._pending_lock:
            for fp, rel, stored_len, raw, which in records:
                loc = ChunkLocation(fp, seg, base + rel, stored_len, raw, which)
                state.new_chunks[fp] = loc
                self._pending.setdefault(fp, loc)
                state.own_fps.append(fp)

    # --- full stripes ------------------------------------------------------------
    def _start_stripe(self, state: _WriterState) -> bool:
        g = self.log.stripe_geometry()
        if g is None:  # one drive, or too few writable: the buffer (its 1+0 file is already final)
            state.direct = False
            return False
        target = min(g.k * FULL_STRIPE_SHARD, self.log.max_size)
        # Room for what one more window can add past the target (its records and the chunk it carried)
        most = SEGMENT_HEADER_SIZE + target + WINDOW + _ROOM + (64 << 10)
        state.stripe = _Stripe(g, target, self._stripe_buffer(self.log.stripe_room(most, g)))
        return True

    def _stripe_buffer(self, size: int) -> memoryview:
        """A page-aligned buffer for a stripe: a kept one (its old bytes are overwritten as the stripe
        fills, and write_stripe zeroes the padding) or a new one."""
        buf = self._spare_stripes.take(size)
        return aligned_buffer(size) if buf is None else buf

    def _recycle(self, stripe: _Stripe) -> None:
        self._spare_stripes.give(stripe.buf)

    def _stage(self, state: _WriterState, new: list[tuple[bytes, int, int, int, bytes | memoryview]],
               stored: Sequence[bytes | bytearray | memoryview], key_id: int) -> None:
        """Copy a window's new records into the stripe being filled; write it once full. Nobody else
        sees them until it is written: another writer never borrows a record that is not durable."""
        stripe = state.stripe
        assert stripe is not None
        for (fp, which, _, raw, _), payload in zip(new, stored, strict=True):
            head = encode(fp, which, raw, payload, key_id=key_id)
            end = stripe.fill + len(head) + len(payload)
            if end > len(stripe.buf):  # not reached: the buffer has room for a window past the target
                grown = aligned_buffer(self.log.stripe_room(end + WINDOW, stripe.geometry))
                grown[:stripe.fill] = stripe.buf[:stripe.fill]
                stripe.buf = grown
            stripe.buf[stripe.fill:stripe.fill + len(head)] = head
            stripe.buf[stripe.fill + len(head):end] = payload
            stripe.records.append((fp, stripe.fill, len(payload), raw, which))
            stripe.fps.add(fp)
            stripe.fill = end
        if stripe.data >= stripe.target:
            self._written(state)  # at most one stripe of a writer in flight: memory stays two stripes
            state.stripe = None
            state.stripes += 1
            state.writing = (stripe, self._stripe_writers.submit(self.log.write_stripe, stripe.buf, stripe.fill,
                                                                 stripe.geometry))

    def _finish_stripe(self, state: _WriterState) -> None:
        """The object's last stripe: written directly when the object filled one before or has
        DIRECT_MIN new bytes, else through the buffer like any small object."""
        self._written(state)
        stripe = state.stripe
        state.stripe = None
        if stripe is None or not stripe.records:
            return
        if state.stripes or stripe.data >= DIRECT_MIN:
            state.stripes += 1
            self._written_as(state, stripe, lambda: self.log.write_stripe(stripe.buf, stripe.fill, stripe.geometry))
        else:
            self._append_staged(state, stripe)

    def _written(self, state: _WriterState) -> None:
        """Wait for the stripe in flight (if any) and make its records this writer's."""
        if state.writing is not None:
            stripe, future = state.writing
            state.writing = None
            self._written_as(state, stripe, future.result)

    def _written_as(self, state: _WriterState, stripe: _Stripe, write: Callable[[], int]) -> None:
        try:
            seg = write()
        except errors.Unavailable as exc:
            # Too few drives for its k+m shards now (one failed meanwhile), or it lost its lease: the
            # same bytes go through the replicated buffer, as every write did before full stripes.
            log.warning("a full stripe could not be written directly (%s): writing it through the buffer", exc.detail)
            self._append_staged(state, stripe)
            return
        self._located(state, seg, 0, stripe.records)  # sealed and durable: nothing to fsync at commit
        self._recycle(stripe)

    def _append_staged(self, state: _WriterState, stripe: _Stripe) -> None:
        seg, base = self.log.append([memoryview(stripe.buf)[SEGMENT_HEADER_SIZE:stripe.fill]])
        self._located(state, seg, base - SEGMENT_HEADER_SIZE, stripe.records)
        state.touched[seg] = max(state.touched.get(seg, 0), base + stripe.data)
        self._recycle(stripe)

    def _sync(self, state: _WriterState) -> None:
        for seg, end in state.touched.items():
            self.log.sync(seg, end)

    def release(self, state: _WriterState) -> None:
        """Forget this writer's pending records (after its commit, or its failure)."""
        with self._pending_lock:
            for fp in state.own_fps:
                loc = self._pending.get(fp)
                if loc is not None and loc is state.new_chunks.get(fp):
                    del self._pending[fp]
        state.own_fps.clear()

    # --- reading ---------------------------------------------------------------
    def read_chunk(self, loc: ChunkLocation) -> bytes | memoryview:
        """Read and verify one chunk. Never returns bytes that failed their checksum: a record that fails
        on the healthy path (one replica, or the data shard holding it) is read degraded (another replica,
        or decoded from the other shards), and the bad shard is queued for repair."""
        length = HEADER_SIZE + loc.stored_len
        resolve, keys = self._resolve, self.keys
        try:
            # Into a buffer of its own when records may be encrypted: decrypted where they lie.
            raw = self.log.pread(loc.segment, loc.offset, length, writable=keys.any_keys)
            return _decode_record(loc, raw, resolve, keys)
        except errors.DataCorrupted:
            raw = self.log.pread_degraded(loc.segment, loc.offset, length,
                                          lambda b: _decode_record(loc, b, resolve, keys))
            return _decode_record(loc, raw, resolve, keys)

    @functools.cached_property
    def _resolve(self) -> codec.Resolver:
        """Reads a delta record's bases (engine/references.py): deltas reconstruct transparently."""
        return references.resolver(self)

    def read_slices(self, slices: list[tuple[mf.Slice, int, int]]) -> list[bytes | memoryview]:
        """Bytes for (slice, skip, take) triples, in order. Runs on a worker thread for large reads.

        Records that lie back to back in a segment (a window's new chunks are appended in one
        write) are read with one ``pread`` of up to RUN_LIMIT bytes, and stored-raw chunks are
        returned as views of it: a few same-sized heap blocks per 4 MiB instead of ~64 of every
        size from 16 to 256 KiB (which fragment the heaps), and ~6 system calls instead of ~64.
        Not larger: a buffer over malloc's mmap threshold is fresh pages, and faulting in 1 GiB of
        them costs more CPU than the reads save."""
        order = list(dict.fromkeys(s.fp for s, _, _ in slices))
        locs = self.meta.lookup_chunks(order)
        data: dict[bytes, bytes | memoryview] = {}
        run: list[ChunkLocation] = []
        for fp in order:
            loc = locs.get(fp)
            if loc is None:
                raise errors.DataCorrupted("manifest references a chunk missing from the index")
            if run and (loc.segment != run[0].segment or loc.offset != _record_end(run[-1])
                        or _record_end(loc) - run[0].offset > RUN_LIMIT):
                self._read_run(run, data)
                run = []
            run.append(loc)
        if run:
            self._read_run(run, data)
        out: list[bytes | memoryview] = []
        for s, skip, take in slices:
            chunk = data[s.fp]
            begin = s.start + skip
            out.append(memoryview(chunk)[begin:begin + take] if (begin or take != len(chunk)) else chunk)
        return out

    def _read_run(self, run: list[ChunkLocation], data: dict[bytes, bytes | memoryview]) -> None:
        """Read adjacent records with one pread; any record that fails is read on its own (degraded)."""
        view: memoryview | None = None
        start = run[0].offset
        if len(run) > 1:
            length = _record_end(run[-1]) - start
            try:
                raw = self.log.pread(run[0].segment, start, length, writable=self.keys.any_keys)
                if len(raw) == length:
                    view = memoryview(raw)
            except errors.DataCorrupted:
                pass
        for loc in run:
            if view is not None:
                rel = loc.offset - start
                try:
                    data[loc.fp] = _decode_record(loc, view[rel:rel + HEADER_SIZE + loc.stored_len], self._resolve,
                                                  self.keys)
                    continue
                except errors.DataCorrupted:
                    pass
            data[loc.fp] = self._read_located(loc)

    def _read_located(self, loc: ChunkLocation) -> bytes | memoryview:
        return self.read_current(loc)[0]

    def read_current(self, loc: ChunkLocation) -> tuple[bytes | memoryview, ChunkLocation]:
        """Read a chunk the caller looked up earlier, following it if it moved since (compaction, the
        reducer); returns its bytes and the location they came from. A segment whose layout changed
        under the read (sealed, repaired, re-protected) is followed by ``SegmentLog.pread_degraded``.
        What still fails is logged here: a client gets a 500 for it, and the log must say why."""
        try:
            return references.read_following(self.meta, loc, self.read_chunk)
        except errors.DataCorrupted as exc:
            log.error("chunk %s (looked up in segment %d at %d) unreadable where the index puts it now: %s",
                      loc.fp.hex()[:16], loc.segment, loc.offset, exc.detail)
            raise

    async def read_range(self, manifest: bytes | None, start: int, end: int) -> AsyncIterator[bytes | memoryview]:
        """Stream the inclusive byte range [start, end] of an object, reading only the chunks needed."""
        layout = mf.Layout(manifest)
        batches = _batches(layout.covering(start, end), READ_BATCH)
        first = next(batches, None)
        if first is None:
            return
        total = sum(t for _, _, t in first)
        if total <= INLINE_LIMIT:
            for piece in self.read_slices(first):
                yield piece
            first = next(batches, None)
            if first is None:
                return
        loop = asyncio.get_running_loop()
        self.moved += READ_BATCH
        pending = loop.run_in_executor(self.pool, self.read_slices, first)
        for batch in batches:
            self.moved += READ_BATCH
            nxt = loop.run_in_executor(self.pool, self.read_slices, batch)  # read ahead one batch
            for piece in await pending:
                yield piece
            pending = nxt
        for piece in await pending:
            yield piece


def _decode_record(loc: ChunkLocation, raw: bytes | memoryview, resolve: codec.Resolver | None = None,
                   keys: encryption.DataKeys | None = None) -> bytes | memoryview:
    head = decode_header(raw)
    if head.fp != loc.fp:
        raise errors.DataCorrupted("record at indexed location has another fingerprint")
    payload = memoryview(raw)[HEADER_SIZE:]
    if head.key_id == 0:
        verify_payload(head, payload)
    elif len(payload) != head.stored_len:  # encrypted: the GCM tag checks every byte, xxh3 would add nothing
        raise errors.DataCorrupted("short encrypted record")
    return codec.decode(head, payload, resolve, keys)  # transformed/delta records: BLAKE3-verified


def _record_end(loc: ChunkLocation) -> int:
    return loc.offset + HEADER_SIZE + loc.stored_len


def _batches(items: Iterator[tuple[mf.Slice, int, int]], limit: int) -> Iterator[list[tuple[mf.Slice, int, int]]]:
    batch: list[tuple[mf.Slice, int, int]] = []
    size = 0
    for item in items:
        batch.append(item)
        size += item[2]
        if size >= limit:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


class ObjectWriter:
    """Streams one object's bytes into the store. Use ``write`` then ``finish`` (or ``abort``)."""

    def __init__(self, store: ChunkStore, digesters: list[Digester]) -> None:
        self.store = store
        self.digesters = digesters
        self.state = _WriterState(cdc=chunker.new_chunker())
        self._buf: list[bytes | memoryview] = []  # the first window's pieces (a small object's only ones)
        self._win: bytearray | None = None        # later windows: _ROOM bytes, then the new data
        self._fill = _ROOM                        # where the next piece goes in _win
        self._busy: bytearray | None = None       # the buffer of the window being processed
        self._buffered = 0
        self._tail = b""
        self._inflight: asyncio.Future[bytes] | None = None
        self._digest_inflight: asyncio.Future[list[None]] | None = None

    @property
    def size(self) -> int:
        return self.state.size + self._buffered

    async def write(self, data: bytes | memoryview) -> None:
        if not data:
            return
        if self._win is None:
            self._buf.append(data)
        else:
            self._put(data)  # copied as it arrives: no piece outlives its receive
        self._buffered += len(data)
        if self._buffered >= WINDOW:
            await self._flush(final=False)

    def _put(self, data: bytes | memoryview) -> None:
        assert self._win is not None
        end = self._fill + len(data)
        if end > len(self._win):  # a piece past the buffer's room: a larger buffer (never a resize)
            grown = bytearray(end + (1 << 20))
            grown[:self._fill] = memoryview(self._win)[:self._fill]
            self.store.give_window(self._win)
            self._win = grown
        self._win[self._fill:end] = data
        self._fill = end

    def _done_with_busy(self) -> None:
        if self._busy is not None:
            self.store.give_window(self._busy)
            self._busy = None

    async def _flush(self, final: bool) -> None:
        loop = asyncio.get_running_loop()
        # One window in flight at a time keeps chunk order and digest order; the event loop
        # receives the next window meanwhile.
        if self._inflight is not None:
            self._tail = await self._inflight
            if self._digest_inflight is not None:
                await self._digest_inflight
            self._inflight = self._digest_inflight = None
            self._done_with_busy()
        tail, self._tail = self._tail, b""
        buf: bytes | memoryview
        if self._win is None and final and self._buffered <= INLINE_LIMIT:  # a small object: joined
            buf = b"".join([tail, *self._buf]) if tail else b"".join(self._buf)
            self._buf.clear()
        else:
            if self._win is None:  # the first window of a large object (no carried chunk)
                self._win, self._fill = self.store.take_window(), _ROOM
                for piece in self._buf:
                    self._put(piece)
                self._buf.clear()
            if len(tail) <= _ROOM:  # the carried chunk goes into the room left in front of the new data
                self._win[_ROOM - len(tail):_ROOM] = tail
                buf = memoryview(self._win)[_ROOM - len(tail):self._fill]
                self._busy = self._win
            else:  # not reached: a carried chunk is at most chunker.MAX_SIZE
                buf = bytes(tail) + self._win[_ROOM:self._fill]
        # The next window is filled in a buffer of its own while this one is processed.
        self._win = None if final else self.store.take_window()
        self._fill = _ROOM
        fresh = memoryview(buf)[len(tail):]  # what digests have not seen
        self.state.size += self._buffered
        self._buffered = 0
        if final and len(buf) <= INLINE_LIMIT:
            for d in self.digesters:
                d.update(fresh)
            self._tail = self.store._process(self.state, buf, True)
            self._done_with_busy()
            return
        if not (final and self.state.size < DIRECT_MIN):  # a large object: full stripes, not the buffer
            self.state.direct = True
        self.store.moved += len(buf)
        # Each digest (MD5 for the ETag, SHA-256 of a signed payload, a CRC) on its own thread,
        # beside the chunking: the MD5 alone is the slowest stage of a large PUT.
        self._digest_inflight = asyncio.gather(
            *(loop.run_in_executor(self.store.pool, d.update, fresh) for d in self.digesters))
        self._inflight = loop.run_in_executor(self.store.pool, self.store._process, self.state, buf, final)
        if final:
            self._tail = await self._inflight
            if self._digest_inflight is not None:
                await self._digest_inflight
            self._inflight = self._digest_inflight = None
            self._done_with_busy()

    async def finish(self, *, sync: bool = True) -> WriteResult:
        """Process the rest and make every record this object needs durable. With ``sync=False``
        the caller must run ``make_durable()`` before committing metadata that points at the
        records (the metadata writer does it at the start of its batch: one thread hop, and one
        fsync shared by every commit in the batch)."""
        await self._flush(final=True)
        assert not self._tail
        state = self.state
        if sync and state.touched:
            await asyncio.get_running_loop().run_in_executor(self.store.pool, self.make_durable)
        return WriteResult(state.size, mf.pack(state.slices), list(state.new_chunks.values()))

    def make_durable(self) -> None:
        self.store._sync(self.state)

    async def abort(self) -> None:
        if self._inflight is not None:
            try:
                await self._inflight
                if self._digest_inflight is not None:
                    await self._digest_inflight
            except Exception:  # noqa: BLE001 - aborting anyway
                pass
        self.store.release(self.state)

    def done(self) -> None:
        """Call after the metadata commit (successful or not)."""
        self.store.release(self.state)

