"""Shard files: one piece of an erasure-coded segment on one drive, with per-block checksums.

Layout (docs/format.md, "Shard files"): the shard's bytes from offset 0, then one xxh3-64 per
64 KiB block of them, then a 64-byte trailer. Data at offset 0 keeps a healthy read a plain
``pread`` at the record's offset within the shard; the checksums let scrub and degraded reads
find a bad block without decoding the stripe.

Every shard written carries a generation in its name (``shards.gen`` in the database, from one
counter shared by every process): two repairers of one shard write two files, the metadata
transaction picks one, and the loser deletes only its own file, never the winner's.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import xxhash

from exastor import errors
from exastor.drives import DriveIO

BLOCK = 64 << 10
SHARD_MAGIC = b"EXSHD001"
TRAILER = struct.Struct("<8sQHHHHQQIQQI")  # magic seg idx k m reserved shard_len data_len block sums_xxh3 store_tag hdr_xxh32
TRAILER_SIZE = TRAILER.size
assert TRAILER_SIZE == 64


@dataclass(frozen=True, slots=True)
class ShardInfo:
    segment: int
    index: int
    k: int
    m: int
    shard_len: int      # bytes of shard data at offset 0
    data_len: int       # the segment's length before padding
    block: int
    sums: tuple[int, ...]
    store_tag: int = 0  # the store's 64-bit tag (0: written before tags existed)

    @property
    def blocks(self) -> int:
        return len(self.sums)


_NAME = re.compile(r"^shards/seg-([0-9a-f]{16})\.s(\d{3})(?:\.g([0-9a-f]{16}))?$")


def shard_name(segment: int, index: int, gen: int = 0) -> str:
    """A shard file's name on its drive; generation 0 is a shard written before generations."""
    return f"shards/seg-{segment:016x}.s{index:03d}" + (f".g{gen:016x}" if gen else "")


def parse_shard_name(name: str) -> tuple[int, int, int] | None:
    """(segment, index, generation) of a shard file's name; None for anything else (temporary files)."""
    match = _NAME.match(name)
    if match is None:
        return None
    return int(match[1], 16), int(match[2]), int(match[3], 16) if match[3] else 0


def block_sums(data: bytes | bytearray | memoryview, block: int = BLOCK) -> list[int]:
    view = memoryview(data)
    return [xxhash.xxh3_64_intdigest(view[i:i + block]) for i in range(0, len(view), block)]


def encode_footer(segment: int, index: int, k: int, m: int, data_len: int, shard: bytes | bytearray | memoryview,
                  store_tag: int = 0) -> bytes:
    sums = block_sums(shard)
    packed = struct.pack(f"<{len(sums)}Q", *sums)
    head = TRAILER.pack(SHARD_MAGIC, segment, index, k, m, 0, len(shard), data_len, BLOCK,
                        xxhash.xxh3_64_intdigest(packed), store_tag, 0)
    head = head[:60] + struct.pack("<I", xxhash.xxh32_intdigest(head[:60]))
    return packed + head


def write_shard(drive: DriveIO, name: str, segment: int, index: int, k: int, m: int, data_len: int,
                shard: bytes | bytearray | memoryview, store_tag: int = 0) -> None:
    """Publish a shard durably under ``name`` (a temporary file, fsync, rename, directory fsync)."""
    drive.put(name, [shard, encode_footer(segment, index, k, m, data_len, shard, store_tag)])


def read_info(drive: DriveIO, name: str) -> ShardInfo:
    """Parse and verify a shard's trailer and checksum table."""
    size = drive.stat(name).size
    if size < TRAILER_SIZE:
        raise errors.DataCorrupted("shard too short")
    raw = drive.pread(name, size - TRAILER_SIZE, TRAILER_SIZE)
    if len(raw) < TRAILER_SIZE:
        raise errors.DataCorrupted("shard too short")
    magic, seg, idx, k, m, _r, shard_len, data_len, block, sums_hash, tag, hdr = TRAILER.unpack(raw)
    if magic != SHARD_MAGIC or xxhash.xxh32_intdigest(raw[:60]) != hdr:
        raise errors.DataCorrupted("bad shard trailer")
    nblocks = -(-shard_len // block)
    if size != shard_len + nblocks * 8 + TRAILER_SIZE:
        raise errors.DataCorrupted("shard has the wrong length")
    packed = drive.pread(name, shard_len, nblocks * 8)
    if xxhash.xxh3_64_intdigest(packed) != sums_hash:
        raise errors.DataCorrupted("shard checksum table corrupt")
    return ShardInfo(seg, idx, k, m, shard_len, data_len, block, struct.unpack(f"<{nblocks}Q", packed), tag)


def read_verified(drive: DriveIO, name: str, info: ShardInfo, offset: int, length: int) -> bytes:
    """Bytes [offset, offset+length) of the shard, every covering block checked."""
    first = offset // info.block
    last = (offset + length - 1) // info.block if length else first - 1
    start = first * info.block
    buf = drive.pread(name, start, min(info.shard_len, (last + 1) * info.block) - start)
    view = memoryview(buf)
    for b in range(first, last + 1):
        piece = view[(b - first) * info.block:(b - first + 1) * info.block]
        if xxhash.xxh3_64_intdigest(piece) != info.sums[b]:
            raise errors.DataCorrupted(f"shard {info.index} block {b} checksum mismatch")
    rel = offset - start
    return bytes(view[rel:rel + length])


def verify_file(drive: DriveIO, name: str, chunk: int = 8 << 20) -> tuple[int, list[int]]:
    """Scrub one shard file: (bytes read, indexes of bad blocks). Raises DataCorrupted if the trailer
    or table is bad, FileNotFoundError if it is gone."""
    info = read_info(drive, name)
    bad: list[int] = []
    per = max(1, chunk // info.block)
    for b0 in range(0, info.blocks, per):
        # Digested where the drive is (a drive server sends 8 bytes a block, not the block).
        sums = drive.block_digests(name, b0 * info.block, min(per * info.block, info.shard_len - b0 * info.block),
                                   info.block)
        want = min(per, info.blocks - b0)
        if len(sums) != want:
            raise errors.DataCorrupted(f"shard shorter than its table: {len(sums)} of {want} blocks at block {b0}")
        bad.extend(b0 + j for j, s in enumerate(sums) if s != info.sums[b0 + j])
    return info.shard_len, bad
