"""Self-describing records: the unit of data in a segment (see docs/format.md).

A record is a 64-byte header followed by its payload. The header carries the
chunk's fingerprint, codec and lengths, a checksum of the payload and a
checksum of the header itself, so a segment can be scanned, verified and
re-indexed without the metadata database.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import xxhash

from exastor import errors
from exastor.drives.base import EPOCH_OFFSET

MAGIC = b"EXR1"
HEADER = struct.Struct("<4sBBHII32sQII")  # magic kind codec flags raw_len stored_len fp payload_xxh3 key_id hdr_xxh32
HEADER_SIZE = HEADER.size
assert HEADER_SIZE == 64

KIND_CHUNK = 1

CODEC_RAW = 0
CODEC_ZSTD = 1
CODEC_GROUPED = 2   # byte-grouped float streams (payload says width and phase)
CODEC_DELTA = 3     # delta against slices of other chunks (payload lists them)

# Header flags: a summary of the transforms inside the payload, for scans and statistics
# (the payload is authoritative; see docs/format.md "Codecs and transforms").
FLAG_GROUPED = 1 << 0      # byte grouping applied
FLAG_DELTA_DICT = 1 << 1   # zstd with a reference dictionary
FLAG_DELTA_XOR = 1 << 2    # XOR residual against an aligned reference
FLAG_DELTA_DIFF = 1 << 3   # difference residual against an aligned reference
FLAG_WIDTH_SHIFT = 4       # bits 4-6: element width in bytes (0, 2, 4)

SEGMENT_MAGIC = b"EXSEG001"
SEGMENT_HEADER = struct.Struct("<8sQQQQQQQ")  # magic, segment id, created_ns, store tag, lease epoch, reserved...
SEGMENT_HEADER_SIZE = SEGMENT_HEADER.size
assert SEGMENT_HEADER_SIZE == 64
assert SEGMENT_HEADER.size - 4 * 8 == EPOCH_OFFSET  # the drives keep a replica's lease epoch there (fencing)


@dataclass(frozen=True, slots=True)
class RecordHeader:
    kind: int
    codec: int
    flags: int
    raw_len: int
    stored_len: int
    fp: bytes
    payload_hash: int
    key_id: int = 0  # the data key the payload is encrypted under (engine/encryption.py); 0 = plaintext


def encode(fp: bytes, codec: int, raw_len: int, payload: bytes | bytearray | memoryview, flags: int = 0,
           key_id: int = 0) -> bytes:
    """Header bytes for the stored ``payload`` (encrypted under data key ``key_id``, or plaintext: 0);
    write ``header + payload`` contiguously."""
    assert len(fp) == 32
    head = HEADER.pack(MAGIC, KIND_CHUNK, codec, flags, raw_len, len(payload), fp,
                       xxhash.xxh3_64_intdigest(payload), key_id, 0)
    return head[:60] + struct.pack("<I", xxhash.xxh32_intdigest(head[:60]))


def decode_header(buf: bytes | memoryview) -> RecordHeader:
    """Parse and verify a header. Raises DataCorrupted if it is not a valid header."""
    if len(buf) < HEADER_SIZE:
        raise errors.DataCorrupted("short record header")
    magic, kind, codec, flags, raw_len, stored_len, fp, payload_hash, key_id, hdr_hash = HEADER.unpack_from(buf)
    if magic != MAGIC or xxhash.xxh32_intdigest(bytes(buf[:60])) != hdr_hash:
        raise errors.DataCorrupted("bad record header")
    return RecordHeader(kind, codec, flags, raw_len, stored_len, fp, payload_hash, key_id)


def verify_payload(head: RecordHeader, payload: bytes | memoryview) -> None:
    if len(payload) != head.stored_len or xxhash.xxh3_64_intdigest(payload) != head.payload_hash:
        raise errors.DataCorrupted("record payload checksum mismatch")


def segment_header(segment_id: int, created_ns: int, store_tag: int = 0, epoch: int = 0) -> bytes:
    """``store_tag``: the first 64 bits of the store id (0 in files written before it existed), so a
    file found on a drive names the store it belongs to (docs/format.md). ``epoch``: the write lease
    the file is created under (meta/leases.py); the drives raise it as later holders fence the file."""
    return SEGMENT_HEADER.pack(SEGMENT_MAGIC, segment_id, created_ns, store_tag, epoch, 0, 0, 0)


def parse_segment_header(buf: bytes | memoryview) -> tuple[int, int, int] | None:
    """(segment id, created_ns, store tag) of a segment file's first bytes; None if not a segment header."""
    if len(buf) < SEGMENT_HEADER_SIZE:
        return None
    magic, seg, created, tag = SEGMENT_HEADER.unpack_from(buf)[:4]
    return (seg, created, tag) if magic == SEGMENT_MAGIC else None
