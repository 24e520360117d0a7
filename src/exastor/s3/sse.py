"""Server-side encryption with customer-provided keys (SSE-C), and the SSE request headers.

SSE-C objects are encrypted with AES-256 in CTR mode under the caller's key,
so any byte range can be decrypted on its own and sizes do not change. The
key is never stored: only its MD5 (to recognise it) and the random nonce, in
``attrs["sse_c"] = {"key_md5", "iv"}``. A multipart object's parts are each
encrypted with a counter derived from the nonce and the part number
(``"part_numbers"`` records them in object order at completion), so parts can
be uploaded in any order and in parallel.

SSE-S3 (``x-amz-server-side-encryption: AES256``) is recorded and echoed when it is
true: in a store that encrypts every record at rest (AES-256-GCM under the store's
data keys, engine/encryption.py; on by default for new stores). A store that holds
plaintext records (made before encryption at rest, or with it off) refuses it
(501 NotImplemented) rather than claim what it does not do. SSE-KMS needs a key service exastor does not have:
such requests get NotImplemented.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from exastor.meta.records import ObjectVersion
from exastor.namespace.operations import PutSpec
from exastor.s3.errors import S3Error

PREFIX = "x-amz-server-side-encryption-customer-"
COPY_PREFIX = "x-amz-copy-source-server-side-encryption-customer-"
_BLOCK = 16


@dataclass(frozen=True)
class CustomerKey:
    key: bytes
    key_md5: str  # base64, as the headers carry it


def customer_key(h: Mapping[str, str], prefix: str = PREFIX) -> CustomerKey | None:
    """The SSE-C key a request carries, validated as S3 does, or None if it carries none."""
    alg, key_b64, md5_b64 = h.get(prefix + "algorithm"), h.get(prefix + "key"), h.get(prefix + "key-md5")
    if alg is None and key_b64 is None and md5_b64 is None:
        return None
    if alg is None:
        raise S3Error("InvalidArgument", "Requests specifying Server Side Encryption with Customer provided keys "
                      "must provide a valid encryption algorithm.", ArgumentName=prefix + "algorithm")
    if alg != "AES256":
        raise S3Error("InvalidEncryptionAlgorithmError", "The encryption request you specified is not valid. "
                      "The valid value is AES256.", status=400)
    if not key_b64:
        raise S3Error("InvalidArgument", "Requests specifying Server Side Encryption with Customer provided keys "
                      "must provide an appropriate secret key.", ArgumentName=prefix + "key")
    try:
        key = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise S3Error("InvalidArgument", "The secret key was invalid for the specified algorithm.") from exc
    if len(key) != 32:
        raise S3Error("InvalidArgument", "The secret key was invalid for the specified algorithm.")
    actual = base64.b64encode(hashlib.md5(key).digest()).decode()
    if not md5_b64:
        raise S3Error("InvalidArgument", "Requests specifying Server Side Encryption with Customer provided keys "
                      "must provide the client calculated MD5 of the secret key.", ArgumentName=prefix + "key-md5")
    if md5_b64 != actual:
        raise S3Error("InvalidArgument", "The calculated MD5 hash of the key did not match the hash that was "
                      "provided.", ArgumentName=prefix + "key-md5")
    return CustomerKey(key, actual)


def check_sse_headers(h: Mapping[str, str], *, at_rest: bool) -> dict[str, Any]:
    """The x-amz-server-side-encryption (SSE-S3/KMS) request: attrs to record, or an error.
    ``at_rest``: the store encrypts every object's data (only then is SSE-S3 honoured)."""
    mode = h.get("x-amz-server-side-encryption")
    kms_key = h.get("x-amz-server-side-encryption-aws-kms-key-id")
    if mode is None:
        if kms_key is not None:
            raise S3Error("InvalidArgument", "Server Side Encryption with AWS KMS managed key requires HTTP header "
                          "x-amz-server-side-encryption : aws:kms")
        return {}
    if mode == "AES256":
        if not at_rest:
            raise S3Error("NotImplemented", "SSE-S3 needs encryption at rest, which is off in this store "
                          "(encrypt_at_rest; docs/security.md)")
        return {"sse": "AES256"}
    if mode == "aws:kms":
        if not kms_key:
            raise S3Error("InvalidArgument", "Server Side Encryption with AWS KMS managed key requires a key id")
        raise S3Error("NotImplemented", "SSE-KMS needs a key management service, which exastor does not have")
    raise S3Error("InvalidArgument", "The encryption method specified is not supported",
                  ArgumentName="x-amz-server-side-encryption")


def _cipher(key: bytes, iv: bytes, offset: int = 0) -> Any:
    counter = (int.from_bytes(iv, "big") + offset // _BLOCK) % (1 << 128)
    cipher = Cipher(algorithms.AES(key), modes.CTR(counter.to_bytes(16, "big"))).encryptor()
    if offset % _BLOCK:
        cipher.update(b"\0" * (offset % _BLOCK))  # move into the block
    return cipher


def part_iv(iv: bytes, part_number: int) -> bytes:
    return hashlib.sha256(iv + part_number.to_bytes(4, "big")).digest()[:16]


def encrypt_stream(source: AsyncIterator[bytes | memoryview], key: bytes, iv: bytes,
                   spec: PutSpec) -> AsyncIterator[bytes]:
    """Encrypt ``source`` on its way to the store. Content-MD5 and checksums still cover the
    plaintext: the spec's digesters and verify step are moved in front of the cipher."""
    plain_md5 = hashlib.md5()
    digesters, spec.digesters = spec.digesters, []
    inner_verify = spec.verify

    def verify(_stored_md5: str, size: int) -> None:
        if inner_verify is not None:
            inner_verify(plain_md5.hexdigest(), size)

    spec.verify = verify

    async def gen() -> AsyncIterator[bytes]:
        cipher = _cipher(key, iv)
        async for piece in source:
            plain_md5.update(piece)
            for d in digesters:
                d.update(piece)
            out = cipher.update(bytes(piece))
            if out:
                yield out
        tail = cipher.finalize()
        if tail:
            yield tail

    return gen()


def new_object_encryption(h: Mapping[str, str], attrs: dict[str, Any], *, at_rest: bool) -> CustomerKey | None:
    """Validate a new object's SSE headers; record what is to be recorded in ``attrs``."""
    attrs.pop("sse_c", None)
    attrs.pop("sse", None)
    ck = customer_key(h)
    attrs.update(check_sse_headers(h, at_rest=at_rest))
    if ck is not None:
        attrs["sse_c"] = {"key_md5": ck.key_md5, "iv": base64.b64encode(os.urandom(16)).decode()}
    return ck


def wrap_put(source: AsyncIterator[bytes | memoryview], ck: CustomerKey | None, attrs: dict[str, Any],
             spec: PutSpec) -> AsyncIterator[bytes | memoryview]:
    if ck is None:
        return source
    return encrypt_stream(source, ck.key, base64.b64decode(attrs["sse_c"]["iv"]), spec)


def response_headers(attrs: Mapping[str, Any]) -> list[tuple[str, str]]:
    if "sse_c" in attrs:
        return [(PREFIX + "algorithm", "AES256"), (PREFIX + "key-md5", attrs["sse_c"]["key_md5"])]
    if attrs.get("sse"):
        return [("x-amz-server-side-encryption", attrs["sse"])]
    return []


def key_for_read(h: Mapping[str, str], obj: ObjectVersion, prefix: str = PREFIX) -> CustomerKey | None:
    """The key to decrypt ``obj`` with; errors when the request's key does not fit the object."""
    ck = customer_key(h, prefix)
    stored = obj.attrs.get("sse_c")
    if stored is None:
        if ck is not None:
            raise S3Error("InvalidRequest", "The encryption parameters are not applicable to this object.")
        return None
    if ck is None:
        raise S3Error("InvalidRequest", "The object was stored using a form of Server Side Encryption. The correct "
                      "parameters must be provided to retrieve the object.")
    if ck.key_md5 != stored["key_md5"]:
        raise S3Error("InvalidRequest", "The provided encryption parameters did not match the ones used "
                      "originally.")
    return ck


def _segments(obj: ObjectVersion) -> list[tuple[int, int, bytes]]:
    """(start, end inclusive, iv) for each separately encrypted piece of the object."""
    iv = base64.b64decode(obj.attrs["sse_c"]["iv"])
    numbers = obj.attrs["sse_c"].get("part_numbers")
    sizes = obj.attrs.get("parts")
    if not numbers or not sizes:
        return [(0, obj.size - 1, iv)]
    out, pos = [], 0
    for number, size in zip(numbers, sizes, strict=True):
        out.append((pos, pos + size - 1, part_iv(iv, number)))
        pos += size
    return out


async def decrypt_range(pieces: AsyncIterator[bytes | memoryview], obj: ObjectVersion, key: bytes,
                        start: int) -> AsyncIterator[bytes]:
    """Decrypt the stored bytes of ``obj`` from offset ``start`` on."""
    segments = _segments(obj)
    pos = start
    idx = next(i for i, (s, e, _) in enumerate(segments) if s <= pos <= e) if segments else 0
    seg_start, seg_end, iv = segments[idx]
    cipher = _cipher(key, iv, pos - seg_start)
    async for piece in pieces:
        data = bytes(piece)
        while data:
            take = min(len(data), seg_end - pos + 1)
            yield cipher.update(data[:take])
            data, pos = data[take:], pos + take
            if pos > seg_end and idx + 1 < len(segments):
                idx += 1
                seg_start, seg_end, iv = segments[idx]
                cipher = _cipher(key, iv, 0)


# --- POST Object ------------------------------------------------------------------

async def put_plain_or_encrypted(call: Any, key: str, source: AsyncIterator[bytes | memoryview],
                                 attrs: dict[str, Any], fields: Mapping[str, str],
                                 verify: Callable[[str, int], None], limit: int, *,
                                 digesters: list[Any] | None = None, owner: str | None = None) -> ObjectVersion:
    ck = new_object_encryption(fields, attrs, at_rest=call.ns.encrypted_at_rest)
    spec = PutSpec(attrs=attrs, verify=verify, digesters=digesters or [], owner=owner)
    body = wrap_put(_limited(source, limit), ck, attrs, spec)
    return await call.ns.put_object(call.grant, call.bucket, key, body, spec)


async def _limited(source: AsyncIterator[bytes | memoryview], limit: int) -> AsyncIterator[bytes | memoryview]:
    total = 0
    async for piece in source:
        total += len(piece)
        if total > limit:
            raise S3Error("EntityTooLarge")
        yield piece
