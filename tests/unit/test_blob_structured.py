"""XSM/1.0 structured messages: ours against the azure-storage-blob SDK's encoder and decoder."""

from __future__ import annotations

import asyncio
import io
import os

import pytest

from exastor.blob.errors import BlobError
from exastor.blob.structured import decode, encode, encoded_length

streams = pytest.importorskip("azure.storage.blob._shared.streams")
pytest.importorskip("azure.storage.extensions")


async def _pieces(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def _collect(it) -> bytes:
    return b"".join([bytes(p) async for p in it])


@pytest.mark.parametrize("length,segment,piece", [(0, 4096, 100), (1, 4096, 1), (10_000, 4096, 777),
                                                   (3 * 4096, 4096, 4096), (100_000, 65536, 30_000)])
def test_sdk_encoded_messages_decode(length, segment, piece):
    data = os.urandom(length)
    sdk = streams.StructuredMessageEncodeStream(io.BytesIO(data), length, streams.StructuredMessageProperties.CRC64,
                                                segment_size=segment)
    wire = sdk.read()
    assert len(wire) == encoded_length(length, segment)
    assert asyncio.run(_collect(decode(_pieces(wire, piece), length))) == data
    ours = asyncio.run(_collect(encode(_pieces(data, piece), length, segment)))
    assert ours == wire  # byte-identical to what the SDK produces


def test_corruption_and_truncation_are_caught():
    data = os.urandom(20_000)
    wire = bytearray(asyncio.run(_collect(encode(_pieces(data, 5000), len(data), 8192))))
    wire[13 + 10 + 100] ^= 1  # one bit of the first segment's content
    with pytest.raises(BlobError) as ei:
        asyncio.run(_collect(decode(_pieces(bytes(wire), 999), len(data))))
    assert ei.value.code == "Crc64Mismatch"
    good = asyncio.run(_collect(encode(_pieces(data, 5000), len(data), 8192)))
    with pytest.raises(BlobError):
        asyncio.run(_collect(decode(_pieces(good[:-3], 999), len(data))))
    with pytest.raises(BlobError):
        asyncio.run(_collect(decode(_pieces(good, 999), len(data) + 1)))
