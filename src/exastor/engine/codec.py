"""Chunk codecs: zstd when it saves space, raw otherwise.

zstd contexts are not thread-safe, so each worker thread keeps its own.
zstd releases the GIL, which is what lets two cores compress at once.
"""

from __future__ import annotations

import threading

import zstandard

from exastor import errors
from exastor.engine.record import CODEC_RAW, CODEC_ZSTD

ZSTD_LEVEL = 1  # foreground level: ~1 GB/s per core; the background reducer may recompress harder

_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    c = getattr(_local, "c", None)
    if c is None:
        c = _local.c = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=False,
                                                write_checksum=False)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    return d


def compress(raw: bytes | memoryview) -> tuple[int, bytes | memoryview]:
    """(codec, payload): the zstd frame if it is smaller than the raw bytes, else the raw bytes."""
    packed = _compressor().compress(raw)
    if len(packed) < len(raw):
        return CODEC_ZSTD, packed
    return CODEC_RAW, raw


def decompress(codec: int, payload: bytes | memoryview, raw_len: int) -> bytes | memoryview:
    if codec == CODEC_RAW:
        return payload
    if codec == CODEC_ZSTD:
        out = _decompressor().decompress(payload, max_output_size=raw_len)
        if len(out) != raw_len:
            raise errors.DataCorrupted("decompressed length mismatch")
        return out
    raise errors.DataCorrupted(f"unknown codec {codec}")
