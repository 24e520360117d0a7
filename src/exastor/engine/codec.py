"""Chunk codecs (see docs/format.md, "Codecs and transforms").

- ``CODEC_RAW`` / ``CODEC_ZSTD``: the foreground write path — zstd-1 when it saves space.
- ``CODEC_GROUPED``: byte-grouped float data; each stream (sign/exponent bytes, each mantissa
  byte, edge bytes) is its own zstd frame or raw. Decodable from the payload alone.
- ``CODEC_DELTA``: a delta against reference bytes made of slices of other chunks (the
  references are listed in the payload): a zstd frame with the reference as its dictionary,
  or an XOR/difference residual, byte-grouped. Decoding needs the reference bytes.

The background reducer writes the last two; the write path only the first two.
zstd contexts are not thread-safe, so each thread keeps its own. zstd releases the GIL.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable

import blake3
import zstandard

from exastor import errors
from exastor.engine import transforms
from exastor.engine.encryption import DataKeys, KeyUnavailable
from exastor.engine.record import (
    CODEC_DELTA,
    CODEC_GROUPED,
    CODEC_RAW,
    CODEC_ZSTD,
    FLAG_DELTA_DICT,
    FLAG_DELTA_DIFF,
    FLAG_DELTA_XOR,
    FLAG_GROUPED,
    FLAG_WIDTH_SHIFT,
    RecordHeader,
)
from exastor.meta import manifest as mf

# Given reference slices, their bytes (each ``chunk[start:start+length]``), in order.
Resolver = Callable[[list[mf.Slice]], list[bytes | memoryview]]

ZSTD_LEVEL = 1      # foreground level: ~1 GB/s per core
REDUCE_LEVEL = 3    # the background reducer's level (stream frames and deltas)

DELTA_DICT = 1      # zstd frame compressed with the reference as a raw-content dictionary
DELTA_XOR = 2       # residual = chunk XOR reference, then byte grouping (or one stream)
DELTA_DIFF = 3      # residual = element-wise difference of bit patterns, then byte grouping

_GROUP_HEAD = struct.Struct("<BBBx")    # width (0 = one plain stream), phase, stream count
_STREAM = struct.Struct("<IB")          # stored length, 0 = raw / 1 = zstd
_DELTA_HEAD = struct.Struct("<BBBBII")  # mode, width, phase, nrefs, reference pad, reserved
MAX_REFS = 8                            # slices one delta may reference (bounds read fan-out)

_local = threading.local()


def _compressor(level: int = ZSTD_LEVEL) -> zstandard.ZstdCompressor:
    cache = getattr(_local, "c", None)
    if cache is None:
        cache = _local.c = {}
    c = cache.get(level)
    if c is None:
        c = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=False,
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


def _zstd_bound(raw_len: int) -> int:
    return raw_len + (raw_len >> 7) + 1024


def _unzstd(payload: bytes | memoryview, raw_len: int, dict_data: zstandard.ZstdCompressionDict | None = None
            ) -> bytes:
    d = zstandard.ZstdDecompressor(dict_data=dict_data) if dict_data is not None else _decompressor()
    out = d.decompress(payload, max_output_size=max(raw_len, 1))
    if len(out) != raw_len:
        raise errors.DataCorrupted("decompressed length mismatch")
    return out


# --- byte-grouped streams ------------------------------------------------------------------
def pack_streams(raw: bytes | memoryview, width: int, phase: int, level: int = REDUCE_LEVEL) -> bytes:
    """A grouped container: each stream zstd-compressed when that is smaller, else raw."""
    streams = transforms.group(raw, width, phase) if width else [bytes(raw)]
    heads, bodies = [], []
    comp = _compressor(level)
    for s in streams:
        packed = comp.compress(s) if s else b""
        if s and len(packed) < len(s):
            heads.append(_STREAM.pack(len(packed), 1))
            bodies.append(packed)
        else:
            heads.append(_STREAM.pack(len(s), 0))
            bodies.append(s)
    return _GROUP_HEAD.pack(width, phase, len(streams)) + b"".join(heads) + b"".join(bodies)


def unpack_streams(payload: bytes | memoryview, raw_len: int) -> bytes:
    try:
        width, phase, count = _GROUP_HEAD.unpack_from(payload)
        if width not in (0, *transforms.WIDTHS) or count != (width + 1 if width else 1):
            raise errors.DataCorrupted("bad grouped-stream header")
        pos = _GROUP_HEAD.size + count * _STREAM.size
        head_count = (raw_len - min(phase, raw_len)) // width if width else raw_len
        sizes = [head_count] * width + [raw_len - head_count * width] if width else [raw_len]
        streams = []
        for i in range(count):
            stored, mode = _STREAM.unpack_from(payload, _GROUP_HEAD.size + i * _STREAM.size)
            body = payload[pos:pos + stored]
            pos += stored
            streams.append(_unzstd(body, sizes[i]) if mode == 1 else bytes(body))
        if pos != len(payload):
            raise errors.DataCorrupted("grouped payload length mismatch")
        return transforms.ungroup(streams, width, phase, raw_len) if width else streams[0]
    except (struct.error, ValueError, zstandard.ZstdError) as exc:
        raise errors.DataCorrupted(f"bad grouped payload: {exc}") from exc


# --- deltas ------------------------------------------------------------------------------
def encode_delta(mode: int, raw: bytes | memoryview, reference: bytes, refs: list[mf.Slice], pad: int,
                 layout: tuple[int, int] | None, level: int = REDUCE_LEVEL) -> bytes:
    """A delta payload. ``reference`` is the zero-padded reference buffer: ``pad`` zero bytes, then
    the concatenated ``refs`` slices, then zeros to ``len(raw)`` (XOR/DIFF); or just the slices (DICT)."""
    if not refs or len(refs) > MAX_REFS:
        raise ValueError("a delta needs 1..MAX_REFS reference slices")
    width, phase = layout or (0, 0)
    if mode == DELTA_DICT:
        zdict = zstandard.ZstdCompressionDict(reference, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        body = zstandard.ZstdCompressor(level=level, dict_data=zdict, write_content_size=False,
                                        write_checksum=False, write_dict_id=False).compress(raw)
    elif mode == DELTA_XOR:
        body = pack_streams(transforms.xor(raw, reference), width, phase, level)
    elif mode == DELTA_DIFF and width:
        body = pack_streams(transforms.diff(raw, reference, width, phase), width, phase, level)
    else:
        raise ValueError(f"bad delta mode {mode}")
    return _DELTA_HEAD.pack(mode, width, phase, len(refs), pad, 0) + mf.pack(refs) + body


def delta_refs(payload: bytes | memoryview) -> tuple[list[mf.Slice], int]:
    """(reference slices, pad) of a delta payload."""
    try:
        _mode, _w, _p, nrefs, pad, _ = _DELTA_HEAD.unpack_from(payload)
    except struct.error as exc:
        raise errors.DataCorrupted("short delta header") from exc
    end = _DELTA_HEAD.size + nrefs * mf.ENTRY_SIZE
    if nrefs == 0 or nrefs > MAX_REFS or len(payload) < end:
        raise errors.DataCorrupted("bad delta reference list")
    return mf.unpack(bytes(payload[_DELTA_HEAD.size:end])), pad


def reference_buffer(pieces: list[bytes | memoryview], pad: int, raw_len: int, mode: int) -> bytes:
    joined = b"".join(pieces)
    if mode == DELTA_DICT:
        return joined
    if pad + len(joined) > raw_len:
        raise errors.DataCorrupted("delta reference longer than the chunk")
    return b"\0" * pad + joined + b"\0" * (raw_len - pad - len(joined))


def decode_delta(payload: bytes | memoryview, raw_len: int, pieces: list[bytes | memoryview]) -> bytes:
    """Reconstruct a delta chunk from its payload and the bytes of its reference slices, in order."""
    mode, width, phase, nrefs, pad, _ = _DELTA_HEAD.unpack_from(payload)
    body = payload[_DELTA_HEAD.size + nrefs * mf.ENTRY_SIZE:]
    reference = reference_buffer(pieces, pad, raw_len, mode)
    try:
        if mode == DELTA_DICT:
            zdict = zstandard.ZstdCompressionDict(reference, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
            return _unzstd(body, raw_len, zdict)
        residual = unpack_streams(body, raw_len)
        if mode == DELTA_XOR:
            return transforms.xor(residual, reference)
        if mode == DELTA_DIFF:
            return transforms.undiff(residual, reference, width, phase)
    except (ValueError, zstandard.ZstdError) as exc:
        raise errors.DataCorrupted(f"bad delta payload: {exc}") from exc
    raise errors.DataCorrupted(f"unknown delta mode {mode}")


def open_payload(head: RecordHeader, payload: bytes | memoryview, keys: DataKeys | None) -> bytes | memoryview:
    """The plaintext payload of a verified record (engine/encryption.py)."""
    if head.key_id == 0:
        return payload
    if keys is None:
        raise KeyUnavailable(f"a record is encrypted under data key {head.key_id} and was read without keys")
    return keys.open(head, payload)  # not a drive: decrypts a record


def flags_for(codec: int, mode: int = 0, layout: tuple[int, int] | None = None) -> int:
    """The header flags summarising a transformed record."""
    width = layout[0] if layout else 0
    flags = width << FLAG_WIDTH_SHIFT
    if width:
        flags |= FLAG_GROUPED
    if codec == CODEC_DELTA:
        flags |= {DELTA_DICT: FLAG_DELTA_DICT, DELTA_XOR: FLAG_DELTA_XOR, DELTA_DIFF: FLAG_DELTA_DIFF}[mode]
    return flags


def decode(head: RecordHeader, payload: bytes | memoryview, resolve: Resolver | None = None,
           keys: DataKeys | None = None) -> bytes | memoryview:
    """A verified record's chunk bytes. Transformed and delta records are reconstructed and their
    BLAKE3 checked against the fingerprint: a bug or a wrong reference can never return wrong bytes.
    An encrypted record (``head.key_id``) is decrypted first with ``keys`` (its tag authenticates it)."""
    payload = open_payload(head, payload, keys)
    if head.codec == CODEC_DELTA:
        if resolve is None:
            raise errors.DataCorrupted("delta record read without a reference resolver")
        slices, _pad = delta_refs(payload)
        data = decompress(head.codec, payload, head.raw_len, resolve(slices))
    else:
        data = decompress(head.codec, payload, head.raw_len)
    if head.codec >= CODEC_GROUPED and blake3.blake3(data).digest() != head.fp:
        raise errors.DataCorrupted("reconstructed chunk does not match its fingerprint")
    return data


def decompress(codec: int, payload: bytes | memoryview, raw_len: int,
               references: list[bytes | memoryview] | None = None) -> bytes | memoryview:
    """Decode a record's payload. Delta records need the bytes of their reference slices."""
    if codec == CODEC_RAW:
        return payload
    if codec == CODEC_ZSTD:
        try:
            return _unzstd(payload, raw_len)
        except zstandard.ZstdError as exc:
            raise errors.DataCorrupted(f"bad zstd payload: {exc}") from exc
    if codec == CODEC_GROUPED:
        return unpack_streams(payload, raw_len)
    if codec == CODEC_DELTA:
        if references is None:
            raise errors.DataCorrupted("delta record decoded without its references")
        return decode_delta(payload, raw_len, references)
    raise errors.DataCorrupted(f"unknown codec {codec}")
