"""Checksums: published check values, agreement with botocore's client-side classes, running updates."""

from __future__ import annotations

import base64
import hashlib
import os
import random

import pytest
from botocore import httpchecksum

from exastor.http.checksums import (
    ALGORITHMS,
    ChecksumMismatch,
    ContentMD5,
    ExpectedChecksum,
    InvalidDigestValue,
    UnknownChecksumAlgorithm,
    checksum_headers_in,
    crc64_azure,
    crc64_azure_b64,
    new_azure_crc64,
    new_checksum,
)

CHECK_INPUT = b"123456789"

# The "check" values from the CRC catalogue (reveng) for b"123456789", plus FIPS 180 "abc"-style digests.
KNOWN = {
    "CRC32": 0xCBF43926,
    "CRC32C": 0xE3069283,
    "CRC64NVME": 0xAE8B14860A799888,
}


def _reference_crc64_azure(data: bytes, crc: int = 0) -> int:
    """Bit-at-a-time CRC-64 with Azure Storage's reflected polynomial, written from the definition."""
    poly = 0x9A6C9329AC4BC9B5
    crc ^= 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFFFFFFFFFF


@pytest.mark.parametrize("algorithm", sorted(KNOWN))
def test_crc_check_values(algorithm: str) -> None:
    c = new_checksum(algorithm)
    c.update(CHECK_INPUT)
    size = 8 if algorithm == "CRC64NVME" else 4
    assert c.digest() == KNOWN[algorithm].to_bytes(size, "big")
    assert c.b64() == base64.b64encode(KNOWN[algorithm].to_bytes(size, "big")).decode()


def test_sha_vectors() -> None:
    for algorithm, expected in (
        ("SHA1", "a9993e364706816aba3e25717850c26c9cd0d89d"),
        ("SHA256", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    ):
        c = new_checksum(algorithm.lower())
        c.update(b"abc")
        assert c.digest().hex() == expected


def _botocore_classes() -> dict[str, type]:
    classes = {"CRC32": httpchecksum.Crc32Checksum, "SHA1": httpchecksum.Sha1Checksum,
               "SHA256": httpchecksum.Sha256Checksum}
    if httpchecksum.HAS_CRT:
        classes["CRC32C"] = httpchecksum.CrtCrc32cChecksum
        classes["CRC64NVME"] = httpchecksum.CrtCrc64NvmeChecksum
    return classes


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_matches_botocore_in_pieces(algorithm: str) -> None:
    """What botocore puts in x-amz-checksum-* must equal ours, however the body is split."""
    classes = _botocore_classes()
    if algorithm not in classes:
        pytest.skip("botocore has no CRT here")
    rng = random.Random(algorithm)
    data = rng.randbytes(200_000)
    theirs = classes[algorithm]()
    theirs.update(data)
    ours = new_checksum(algorithm)
    pos = 0
    while pos < len(data):
        step = rng.randint(0, 5000)
        ours.update(memoryview(data)[pos:pos + step])
        pos += step
    assert ours.b64() == theirs.b64digest()


def test_unknown_algorithm() -> None:
    with pytest.raises(UnknownChecksumAlgorithm):
        new_checksum("MD4")


def test_expected_checksum_verify_and_mismatch() -> None:
    body = os.urandom(1000)
    good = base64.b64encode(hashlib.sha256(body).digest()).decode()
    exp = ExpectedChecksum("sha256", good)
    exp.update(body)
    assert exp.verify() == good
    exp = ExpectedChecksum("SHA256", good)
    exp.update(body + b"x")
    with pytest.raises(ChecksumMismatch) as info:
        exp.verify()
    assert info.value.expected == good


@pytest.mark.parametrize("value", ["not base64!", "AAAA", base64.b64encode(b"12345").decode(), ""])
def test_expected_checksum_rejects_malformed(value: str) -> None:
    with pytest.raises(InvalidDigestValue):
        ExpectedChecksum("CRC32", value)


def test_content_md5() -> None:
    body = b"hello world"
    header = base64.b64encode(hashlib.md5(body).digest()).decode()
    md5 = ContentMD5(header)
    md5.update(body)
    assert md5.verify() == hashlib.md5(body).hexdigest()
    wrong = ContentMD5(header)
    wrong.update(b"hello there")
    with pytest.raises(ChecksumMismatch):
        wrong.verify()
    for malformed in ("zzz", base64.b64encode(b"short").decode(), hashlib.md5(body).hexdigest()):
        with pytest.raises(InvalidDigestValue):
            ContentMD5(malformed)


def test_checksum_headers_in() -> None:
    headers = {"x-amz-checksum-crc32": "AAAAAA==", "x-amz-checksum-sha256": "x", "content-md5": "y"}
    assert checksum_headers_in(headers) == {"CRC32": "AAAAAA==", "SHA256": "x"}


def test_crc64_azure_definition() -> None:
    rng = random.Random(7)
    for n in (0, 1, 7, 8, 9, 63, 64, 65, 1000):
        data = rng.randbytes(n)
        assert crc64_azure(data) == _reference_crc64_azure(data)
    assert crc64_azure(CHECK_INPUT) == 0xAE8B14860A799888


def test_crc64_azure_continues() -> None:
    data = random.Random(3).randbytes(100_000)
    running = 0
    for start in range(0, len(data), 7777):
        running = crc64_azure(data[start:start + 7777], running)
    assert running == crc64_azure(data)
    c = new_azure_crc64()
    c.update(data[:500])
    c.update(data[500:])
    assert c.digest() == crc64_azure(data).to_bytes(8, "little")
    assert c.b64() == crc64_azure_b64(crc64_azure(data))


def test_crc64_azure_matches_azure_sdk_extension() -> None:
    """Cross-check against the compiled extension azure-storage-blob itself uses for x-ms-content-crc64."""
    ext = pytest.importorskip("azure.storage.extensions.checksums")
    rng = random.Random(11)
    for n in (0, 1, 3, 100, 4096, 65537):
        data = rng.randbytes(n)
        assert crc64_azure(data) == ext.crc64.compute(data, 0)
        assert crc64_azure(data, 12345) == ext.crc64.compute(data, 12345)


@pytest.mark.parametrize("size", [0, 1, 100, (16 << 10) - 1, 16 << 10, 70_001, 4 << 20])
def test_crc32_compiled_kernel_matches_zlib(size: int) -> None:
    """CRC32 of large buffers comes from ISA-L (http/checksums.py, ``_crc32``) where it is loaded:
    the same values as zlib, for bytes, bytearrays and read-only views at odd offsets, continued
    from any previous value."""
    import zlib

    from exastor.http import checksums

    data = os.urandom(size + 3)
    for buf in (data, bytearray(data), memoryview(data)[3:], memoryview(bytearray(data))[1:]):
        for previous in (0, 1, 0xFFFFFFFF, zlib.crc32(b"abc")):
            assert checksums._crc32(buf, previous) == zlib.crc32(buf, previous)
    running = new_checksum("CRC32")
    for i in range(0, len(data), 50_000):
        running.update(memoryview(data)[i:i + 50_000])
    assert running.digest() == zlib.crc32(data).to_bytes(4, "big")
