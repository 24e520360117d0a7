"""Azure's structured message body ("XSM/1.0; properties=crc64"): how current SDKs carry CRC64 for
streamed uploads and for downloads (``validate_content="crc64"``).

Layout, all integers little-endian::

    message header  : version u8 (=1) | message length u64 (everything, headers included) | flags u16
                      (1 = CRC64) | segment count u16
    per segment     : number u16 (from 1) | content length u64 | content | CRC64 of the content u64
    message trailer : CRC64 of all content u64

The CRC is Azure's CRC64 (``http.checksums.crc64_azure``, SIMD, GIL released). Uploads are decoded
and every CRC checked before the bytes can be committed; downloads are encoded as they stream.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

from exastor.blob.errors import BlobError
from exastor.http.checksums import crc64_azure

HEADER_VALUE = "XSM/1.0; properties=crc64"
SEGMENT = 4 << 20
_HEADER, _SEG_HEADER, _CRC = 13, 10, 8
_FLAG_CRC64 = 1


def encoded_length(content_length: int, segment: int = SEGMENT) -> int:
    segments = math.ceil(content_length / segment) or 1
    return _HEADER + segments * (_SEG_HEADER + _CRC) + content_length + _CRC


async def encode(pieces: AsyncIterator[bytes | memoryview], content_length: int, segment: int = SEGMENT
                 ) -> AsyncIterator[bytes | memoryview]:
    """Wrap a body of ``content_length`` bytes into a structured message with CRC64s."""
    segments = math.ceil(content_length / segment) or 1
    yield (b"\x01" + encoded_length(content_length, segment).to_bytes(8, "little")
           + _FLAG_CRC64.to_bytes(2, "little") + segments.to_bytes(2, "little"))
    total_crc, number, left_in_segment, seg_crc = 0, 0, 0, 0
    remaining = content_length

    def open_segment() -> bytes:
        nonlocal number, left_in_segment, seg_crc
        number += 1
        left_in_segment = min(segment, remaining)
        seg_crc = 0
        return number.to_bytes(2, "little") + left_in_segment.to_bytes(8, "little")

    yield open_segment()
    async for piece in pieces:
        view = memoryview(piece)
        while len(view):
            if left_in_segment == 0:
                yield seg_crc.to_bytes(8, "little")
                yield open_segment()
            take = view[:left_in_segment]
            seg_crc = crc64_azure(take, seg_crc)
            total_crc = crc64_azure(take, total_crc)
            left_in_segment -= len(take)
            remaining -= len(take)
            yield take
            view = view[len(take):]
    yield seg_crc.to_bytes(8, "little") + total_crc.to_bytes(8, "little")


class _Reader:
    """Exact-size reads over an async iterator of pieces."""

    def __init__(self, pieces: AsyncIterator[bytes | memoryview]) -> None:
        self._it = pieces.__aiter__()
        self._buf = memoryview(b"")

    async def read(self, n: int) -> memoryview:
        """Up to ``n`` bytes (fewer only at the end of the body)."""
        if not len(self._buf):
            try:
                self._buf = memoryview(await self._it.__anext__())
            except StopAsyncIteration:
                return memoryview(b"")
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    async def exactly(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            piece = await self.read(n - got)
            if not len(piece):
                raise BlobError("InvalidInput", "The structured message body is truncated.")
            parts.append(bytes(piece))
            got += len(piece)
        return b"".join(parts)


async def decode(pieces: AsyncIterator[bytes | memoryview], content_length: int
                 ) -> AsyncIterator[bytes | memoryview]:
    """Yield the content of a structured message, checking every segment's CRC64 and the total."""
    reader = _Reader(pieces)
    header = await reader.exactly(_HEADER)
    if header[0] != 1:
        raise BlobError("InvalidInput", "Unsupported structured message version.")
    flags = int.from_bytes(header[9:11], "little")
    segments = int.from_bytes(header[11:13], "little")
    with_crc = bool(flags & _FLAG_CRC64)
    total_crc, seen = 0, 0
    for expected_number in range(1, segments + 1):
        seg = await reader.exactly(_SEG_HEADER)
        if int.from_bytes(seg[:2], "little") != expected_number:
            raise BlobError("InvalidInput", "Structured message segments are out of order.")
        left = int.from_bytes(seg[2:10], "little")
        seg_crc = 0
        while left:
            piece = await reader.read(left)
            if not len(piece):
                raise BlobError("InvalidInput", "The structured message body is truncated.")
            seg_crc = crc64_azure(piece, seg_crc)
            total_crc = crc64_azure(piece, total_crc)
            left -= len(piece)
            seen += len(piece)
            yield piece
        if with_crc and int.from_bytes(await reader.exactly(_CRC), "little") != seg_crc:
            raise BlobError("Crc64Mismatch")
    if with_crc and int.from_bytes(await reader.exactly(_CRC), "little") != total_crc:
        raise BlobError("Crc64Mismatch")
    if seen != content_length:
        raise BlobError("InvalidInput", "x-ms-structured-content-length does not match the message.")
    if len(await reader.read(1)):
        raise BlobError("InvalidInput", "Bytes after the end of the structured message.")
