"""Sequential scans of segment files without the database: fsck, index rebuild, recovery."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from exastor import errors
from exastor.engine.record import (
    HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    SEGMENT_MAGIC,
    RecordHeader,
    decode_header,
    verify_payload,
)


def iter_records(path: Path, *, verify: bool = True) -> Iterator[tuple[int, RecordHeader]]:
    """Yield (offset, header) for each valid record; stops at the first invalid one (torn tail)."""
    with open(path, "rb") as f:
        head = f.read(SEGMENT_HEADER_SIZE)
        if len(head) < SEGMENT_HEADER_SIZE or head[:8] != SEGMENT_MAGIC:
            raise errors.DataCorrupted(f"{path.name}: bad segment header")
        offset = SEGMENT_HEADER_SIZE
        while True:
            raw = f.read(HEADER_SIZE)
            if len(raw) < HEADER_SIZE:
                return
            try:
                rec = decode_header(raw)
            except errors.DataCorrupted:
                return
            payload = f.read(rec.stored_len)
            if len(payload) < rec.stored_len:
                return
            if verify:
                try:
                    verify_payload(rec, payload)
                except errors.DataCorrupted:
                    return
            yield offset, rec
            offset += HEADER_SIZE + rec.stored_len


def valid_end(path: Path) -> int:
    """Offset just past the last valid record."""
    end = SEGMENT_HEADER_SIZE
    for offset, rec in iter_records(path):
        end = offset + HEADER_SIZE + rec.stored_len
    return end
