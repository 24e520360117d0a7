"""Walking a segment's bytes record by record, without the database: recovery, scrub, fsck.

Torn tail versus damage. Appends only ever add bytes at the end, so a crash (or a power cut) can
only leave a *torn tail*: an incomplete or unwritten record after the last complete one. A record
that fails its checksums with a valid record somewhere after it is *damage* (a flipped bit, a
lost sector): cutting the segment there would throw away every good record behind it. So a walk
that meets a bad record looks for the next valid record (its magic, header checksum and payload
checksum): if there is one, the bytes in between are damage, kept in place and reported; if
there is none, they are the torn tail.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exastor import errors
from exastor.engine.record import HEADER_SIZE, MAGIC, SEGMENT_HEADER_SIZE, decode_header, verify_payload


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


def next_valid(buf: bytes, pos: int) -> int | None:
    """Offset of the first valid record at or after ``pos`` (a resynchronisation after damage)."""
    view = memoryview(buf)
    while True:
        pos = buf.find(MAGIC, pos)
        if pos < 0:
            return None
        if record_length(view, pos):
            return pos
        pos += 1


@dataclass
class Walk:
    records: list[tuple[int, int]] = field(default_factory=list)   # (offset, length) of each valid record
    damaged: list[tuple[int, int]] = field(default_factory=list)   # [start, end) with no valid record, before a valid one
    end: int = SEGMENT_HEADER_SIZE                                  # past the last valid record: a torn tail follows


def walk(buf: bytes, start: int = SEGMENT_HEADER_SIZE) -> Walk:
    """Every valid record of a whole segment in memory, the damaged spans between them, and where
    the torn tail (if any) begins."""
    view = memoryview(buf)
    out = Walk(end=start)
    pos = start
    while pos < len(buf):
        n = record_length(view, pos)
        if n:
            out.records.append((pos, n))
            pos += n
            out.end = pos
            continue
        nxt = next_valid(buf, pos + 1)
        if nxt is None:
            break
        out.damaged.append((pos, nxt))
        pos = nxt
    return out
