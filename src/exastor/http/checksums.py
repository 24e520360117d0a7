"""Running checksums for request and response bodies (S3 x-amz-checksum-*, Content-MD5, Azure CRC64).

Shared by the S3 and Blob front-ends, so it raises its own small exception types and never imports
from ``exastor.s3``; each front-end maps them to its protocol's error codes.

Every algorithm here is a compiled implementation that releases the GIL on large buffers, so a body
can be hashed in a worker thread while the event loop keeps serving. Single-thread speeds measured on
the 2-core dev machine (64 MiB buffer): CRC64NVME / Azure CRC64 (awscrt) ~12,500 MB/s, CRC32C (crc32c)
~11,000 MB/s, CRC32 ~7,000 MB/s (ISA-L's crc32_gzip_refl from the libisal pyeclib bundles; zlib's
~1,170 MB/s without it), SHA-1 ~1,090 MB/s, SHA-256 ~630 MB/s, MD5 ~380 MB/s; each one's
CPU-seconds per GiB beside MD5 are in docs/benchmarks.md ("Flexible checksums", bench/checksums.py).

The CRCs combine (``combine``: the CRC of A+B from the CRCs of A and B and B's length, awscrt's
compiled combine), which is how a multipart object gets a FULL_OBJECT checksum without reading its
parts again; every other algorithm only composes (the hash of the parts' digests, S3's COMPOSITE).

Azure's x-ms-content-crc64 and S3's CRC64NVME are the same CRC (polynomial 0x9A6C9329AC4BC9B5 reflected
== 0xAD93D23594C93659, init and xor-out all ones; check value of b"123456789" is 0xAE8B14860A799888);
only the wire encoding differs: S3 sends the 8 bytes big-endian, Azure little-endian.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import ctypes.util
import functools
import glob
import hashlib
import importlib.util
import os
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import crc32c as _crc32c
import numpy as np
import xxhash as _xxhash
from awscrt import checksums as _crt

# S3 names of the x-amz-checksum-<algorithm> headers, upper-case as in x-amz-checksum-algorithm.
ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256", "SHA512", "MD5", "XXHASH64", "XXHASH3",
              "XXHASH128")
# The algorithms whose checksum of a whole object can be combined from its parts' (FULL_OBJECT).
COMBINABLE = ("CRC32", "CRC32C", "CRC64NVME")
_SIZES = {"CRC32": 4, "CRC32C": 4, "CRC64NVME": 8, "SHA1": 20, "SHA256": 32, "SHA512": 64, "MD5": 16,
          "XXHASH64": 8, "XXHASH3": 8, "XXHASH128": 16}

Buffer = bytes | bytearray | memoryview


class ChecksumError(ValueError):
    """Base for checksum problems a front-end maps to its own error code."""


class UnknownChecksumAlgorithm(ChecksumError):
    """The client named an algorithm we do not implement (S3: InvalidRequest / InvalidArgument)."""


class InvalidDigestValue(ChecksumError):
    """A digest header is not valid base64 of the right length (S3: InvalidDigest / InvalidRequest)."""


class ChecksumMismatch(ChecksumError):
    """The body does not hash to the digest the client sent (S3: BadDigest / XAmzContentChecksumMismatch)."""

    def __init__(self, algorithm: str, expected: str, actual: str) -> None:
        self.algorithm = algorithm
        self.expected = expected
        self.actual = actual
        super().__init__(f"{algorithm} mismatch: client sent {expected}, body hashes to {actual}")


class Checksum(Protocol):
    algorithm: str
    digest_size: int

    def update(self, data: Buffer) -> None: ...
    def digest(self) -> bytes: ...
    def b64(self) -> str: ...


class _CrcChecksum:
    """A running CRC kept as an int; ``_fn(data, previous)`` continues it."""

    def __init__(self, algorithm: str, fn, digest_size: int, byteorder: Literal["big", "little"] = "big") -> None:
        self.algorithm = algorithm
        self.digest_size = digest_size
        self._fn = fn
        self._byteorder = byteorder
        self._value = 0

    def update(self, data: Buffer) -> None:
        self._value = self._fn(data, self._value)

    @property
    def value(self) -> int:
        return self._value

    def digest(self) -> bytes:
        return self._value.to_bytes(self.digest_size, self._byteorder)

    def b64(self) -> str:
        return base64.b64encode(self.digest()).decode("ascii")


class _HashChecksum:
    """A hashlib or xxHash object (both compiled); digest() is the canonical (big-endian) form."""

    def __init__(self, algorithm: str, factory: Callable[[], Any]) -> None:
        self.algorithm = algorithm
        self._hash = factory()
        self.digest_size = self._hash.digest_size

    def update(self, data: Buffer) -> None:
        self._hash.update(data)

    def digest(self) -> bytes:
        return self._hash.digest()

    def b64(self) -> str:
        return base64.b64encode(self._hash.digest()).decode("ascii")


def _load_isal_crc32() -> Callable[[int, int, int], int] | None:
    """ISA-L's ``crc32_gzip_refl`` (the zlib/gzip CRC-32, AVX-512/VPCLMULQDQ folding, ~7x zlib's
    speed here), from the ``libisal`` the pyeclib wheel bundles (as engine/gf.py loads it) or the
    system's; None without either. ctypes releases the GIL for the call."""
    if os.environ.get("EXASTOR_CRC32", "isal") != "isal":
        return None
    found: list[str] = []
    spec = importlib.util.find_spec("pyeclib")
    if spec is not None and spec.submodule_search_locations:
        site = Path(next(iter(spec.submodule_search_locations))).parent
        found = sorted(glob.glob(str(site / "pyeclib.libs" / "libisal*.so*")))
    path = found[0] if found else ctypes.util.find_library("isal")
    if path is None:
        return None
    try:
        fn = ctypes.CDLL(path).crc32_gzip_refl
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint64]
    fn.restype = ctypes.c_uint32
    if fn(0, b"123456789", 9) != 0xCBF43926:  # the CRC-32 check value: not the CRC we think, not used
        return None
    return fn


_ISAL_CRC32 = _load_isal_crc32()
_ISAL_MIN = 16 << 10  # below this zlib's call costs less than the ctypes call and the buffer's address


def _crc32(data: Buffer, previous: int) -> int:
    if _ISAL_CRC32 is None or len(data) < _ISAL_MIN:
        return zlib.crc32(data, previous)
    view = np.frombuffer(data, dtype=np.uint8)  # no copy; read-only buffers too
    return _ISAL_CRC32(previous, view.ctypes.data, view.nbytes)


def _crc32c_fn(data: Buffer, previous: int) -> int:
    return _crc32c.crc32c(data, previous)


def _crc64nvme(data: Buffer, previous: int) -> int:
    return _crt.crc64nvme(data, previous)


def new_checksum(algorithm: str) -> Checksum:
    """A fresh running checksum for an S3 algorithm name (case-insensitive, e.g. 'crc32c', 'SHA256')."""
    name = algorithm.upper()
    if name == "CRC32":
        return _CrcChecksum(name, _crc32, 4)
    if name == "CRC32C":
        return _CrcChecksum(name, _crc32c_fn, 4)
    if name == "CRC64NVME":
        return _CrcChecksum(name, _crc64nvme, 8)
    if name in ("SHA1", "SHA256", "SHA512", "MD5"):
        return _HashChecksum(name, functools.partial(hashlib.new, name.lower()))
    if name in _XXHASH:
        return _HashChecksum(name, _XXHASH[name])
    raise UnknownChecksumAlgorithm(f"unsupported checksum algorithm {algorithm!r}")


_XXHASH = {"XXHASH64": _xxhash.xxh64, "XXHASH3": _xxhash.xxh3_64, "XXHASH128": _xxhash.xxh3_128}


def digest_size(algorithm: str) -> int:
    return _SIZES[algorithm.upper()]


def is_algorithm(name: str) -> bool:
    return name.upper() in _SIZES


def digest_of(algorithm: str, data: Buffer) -> bytes:
    """One algorithm's digest of a whole buffer."""
    ck = new_checksum(algorithm)
    ck.update(data)
    return ck.digest()


def composite(algorithm: str, part_digests: list[bytes]) -> str:
    """S3's COMPOSITE checksum of a multipart object: the algorithm over the parts' binary digests,
    base64, then ``-<number of parts>``."""
    return f"{base64.b64encode(digest_of(algorithm, b''.join(part_digests))).decode('ascii')}-{len(part_digests)}"


_COMBINE = {"CRC32": _crt.combine_crc32, "CRC32C": _crt.combine_crc32c, "CRC64NVME": _crt.combine_crc64nvme}


def combine(algorithm: str, parts: list[tuple[bytes, int]]) -> bytes:
    """The CRC of the concatenation of parts, from each part's (digest, length): S3's FULL_OBJECT
    checksum of a multipart object, computed without reading the bytes again (compiled combine)."""
    name = algorithm.upper()
    fn, size = _COMBINE[name], _SIZES[name]
    value = 0
    for digest, length in parts:
        value = fn(value, int.from_bytes(digest, "big"), length)
    return value.to_bytes(size, "big")


def header_name(algorithm: str) -> str:
    """The S3 header (and trailer) that carries this algorithm's digest: x-amz-checksum-crc32c etc."""
    return "x-amz-checksum-" + algorithm.lower()


def decode_b64_digest(value: str, size: int) -> bytes:
    """Strictly decode a base64 digest header of ``size`` bytes, or raise InvalidDigestValue."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidDigestValue(f"not base64: {value!r}") from exc
    if len(raw) != size:
        raise InvalidDigestValue(f"digest is {len(raw)} bytes, expected {size}")
    return raw


def checksum_headers_in(headers: Mapping[str, str]) -> dict[str, str]:
    """{ALGORITHM: base64 value} for every x-amz-checksum-<alg> header present (lower-cased names)."""
    found: dict[str, str] = {}
    for algorithm in ALGORITHMS:
        value = headers.get(header_name(algorithm))
        if value is not None:
            found[algorithm] = value
    return found


class ExpectedChecksum:
    """A digest the client announced; hash the body into ``checksum`` then call ``verify()``.

    Validating the header's shape up front lets the front-end reject a malformed digest before it
    reads the body.
    """

    def __init__(self, algorithm: str, b64_value: str) -> None:
        self.algorithm = algorithm.upper()
        self.checksum = new_checksum(self.algorithm)
        self.expected = decode_b64_digest(b64_value, self.checksum.digest_size)
        self.expected_b64 = b64_value.strip()

    def update(self, data: Buffer) -> None:
        self.checksum.update(data)

    def verify(self) -> str:
        """Return the base64 digest if it matches, else raise ChecksumMismatch."""
        actual = self.checksum.digest()
        if actual != self.expected:
            raise ChecksumMismatch(self.algorithm, self.expected_b64, base64.b64encode(actual).decode())
        return self.expected_b64


class ContentMD5:
    """Verify a base64 Content-MD5 header against the body.

    ``ContentMD5(header)`` raises InvalidDigestValue for a malformed header (S3: InvalidDigest);
    ``verify()`` raises ChecksumMismatch when the body differs (S3: BadDigest).
    """

    def __init__(self, header_value: str) -> None:
        self.expected_b64 = header_value.strip()
        self.expected = decode_b64_digest(self.expected_b64, 16)
        self._md5 = hashlib.md5(usedforsecurity=False)

    def update(self, data: Buffer) -> None:
        self._md5.update(data)

    def hexdigest(self) -> str:
        return self._md5.hexdigest()

    def verify(self) -> str:
        """Return the body's MD5 hex (the ETag of a single PUT) if it matches."""
        actual = self._md5.digest()
        if actual != self.expected:
            raise ChecksumMismatch("MD5", self.expected_b64, base64.b64encode(actual).decode())
        return actual.hex()


def crc64_azure(data: Buffer, previous: int = 0) -> int:
    """Azure Storage's CRC-64 (x-ms-content-crc64), continuing from ``previous``.

    Azure's definition (azure-storage-extensions ``checksums.crc64.compute(data, initial)``) is the
    same CRC as CRC-64/NVME, so awscrt's SIMD implementation serves both (~12,500 MB/s here, GIL
    released) and this keeps the Azure ``initial`` semantics: crc64_azure(b, crc64_azure(a)) ==
    crc64_azure(a + b).
    """
    return _crt.crc64nvme(data, previous)


def crc64_azure_b64(value: int) -> str:
    """Wire form of x-ms-content-crc64: base64 of the 8 bytes little-endian (as azure-storage-blob sends)."""
    return base64.b64encode(value.to_bytes(8, "little")).decode("ascii")


def new_azure_crc64() -> Checksum:
    """A running Azure CRC64 whose digest()/b64() is the x-ms-content-crc64 wire form."""
    return _CrcChecksum("CRC64", _crc64nvme, 8, byteorder="little")
