"""Shard files: one piece of an erasure-coded segment on one drive, with per-block checksums.

Layout (docs/format.md, "Shard files"): the shard's bytes from offset 0, then one xxh3-64 per
64 KiB block of them, then a 64-byte trailer. Data at offset 0 keeps a healthy read a plain
``pread`` at the record's offset within the shard; the checksums let scrub and degraded reads
find a bad block without decoding the stripe.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import xxhash

from exastor import errors

BLOCK = 64 << 10
SHARD_MAGIC = b"EXSHD001"
TRAILER = struct.Struct("<8sQHHHHQQI Q 8x I")  # magic seg idx k m reserved shard_len data_len block sums_xxh3 hdr_xxh32
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

    @property
    def blocks(self) -> int:
        return len(self.sums)


def shard_name(segment: int, index: int) -> str:
    return f"seg-{segment:016x}.s{index:03d}"


def block_sums(data: bytes | memoryview, block: int = BLOCK) -> list[int]:
    view = memoryview(data)
    return [xxhash.xxh3_64_intdigest(view[i:i + block]) for i in range(0, len(view), block)]


def encode_footer(segment: int, index: int, k: int, m: int, data_len: int, shard: bytes | memoryview) -> bytes:
    sums = block_sums(shard)
    packed = struct.pack(f"<{len(sums)}Q", *sums)
    head = TRAILER.pack(SHARD_MAGIC, segment, index, k, m, 0, len(shard), data_len, BLOCK,
                        xxhash.xxh3_64_intdigest(packed), 0)
    head = head[:60] + struct.pack("<I", xxhash.xxh32_intdigest(head[:60]))
    return packed + head


def write_shard(path: Path, segment: int, index: int, k: int, m: int, data_len: int,
                shard: bytes | memoryview) -> None:
    """Write a shard durably: temporary file, fsync, rename, fsync the directory. Idempotent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        footer = encode_footer(segment, index, k, m, data_len, shard)
        view = memoryview(shard)
        while view:
            view = view[os.write(fd, view):]
        os.write(fd, footer)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_info(fd: int) -> ShardInfo:
    """Parse and verify a shard's trailer and checksum table."""
    size = os.fstat(fd).st_size
    if size < TRAILER_SIZE:
        raise errors.DataCorrupted("shard too short")
    raw = os.pread(fd, TRAILER_SIZE, size - TRAILER_SIZE)
    magic, seg, idx, k, m, _r, shard_len, data_len, block, sums_hash, hdr = TRAILER.unpack(raw)
    if magic != SHARD_MAGIC or xxhash.xxh32_intdigest(raw[:60]) != hdr:
        raise errors.DataCorrupted("bad shard trailer")
    nblocks = -(-shard_len // block)
    if size != shard_len + nblocks * 8 + TRAILER_SIZE:
        raise errors.DataCorrupted("shard has the wrong length")
    packed = os.pread(fd, nblocks * 8, shard_len)
    if xxhash.xxh3_64_intdigest(packed) != sums_hash:
        raise errors.DataCorrupted("shard checksum table corrupt")
    return ShardInfo(seg, idx, k, m, shard_len, data_len, block, struct.unpack(f"<{nblocks}Q", packed))


def read_verified(fd: int, info: ShardInfo, offset: int, length: int) -> bytes:
    """Bytes [offset, offset+length) of the shard, every covering block checked."""
    first = offset // info.block
    last = (offset + length - 1) // info.block if length else first - 1
    start = first * info.block
    buf = os.pread(fd, min(info.shard_len, (last + 1) * info.block) - start, start)
    view = memoryview(buf)
    for b in range(first, last + 1):
        piece = view[(b - first) * info.block:(b - first + 1) * info.block]
        if xxhash.xxh3_64_intdigest(piece) != info.sums[b]:
            raise errors.DataCorrupted(f"shard {info.index} block {b} checksum mismatch")
    rel = offset - start
    return bytes(view[rel:rel + length])


def verify_file(path: Path, chunk: int = 8 << 20) -> tuple[int, list[int]]:
    """Scrub one shard file: (bytes read, indexes of bad blocks). Raises DataCorrupted if the trailer
    or table is bad, FileNotFoundError if it is gone."""
    fd = os.open(path, os.O_RDONLY)
    try:
        info = read_info(fd)
        bad: list[int] = []
        per = max(1, chunk // info.block)
        for b0 in range(0, info.blocks, per):
            buf = os.pread(fd, min(per * info.block, info.shard_len - b0 * info.block), b0 * info.block)
            for j, s in enumerate(block_sums(buf, info.block)):
                if s != info.sums[b0 + j]:
                    bad.append(b0 + j)
        return info.shard_len, bad
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
