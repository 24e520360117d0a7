"""aws-chunked decoding: AWS's published multi-chunk example, bodies botocore sends, arbitrary splits."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import random
import time
import zlib
from datetime import UTC, datetime
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum
from hypothesis import given, settings
from hypothesis import strategies as st

from exastor.s3.errors import S3Error
from exastor.s3.sigv4 import (
    EMPTY_SHA256,
    STREAMING_SIGNED,
    STREAMING_SIGNED_TRAILER,
    STREAMING_UNSIGNED_TRAILER,
    AuthContext,
    authenticate,
    derive_signing_key,
)
from exastor.s3.streaming import AwsChunkedDecoder

AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


# ------------------------------------------------------------------ AWS documentation example

# "Signature Calculations for the Authorization Header: Transferring Payload in Multiple Chunks":
# 65 KiB of 'a' sent as a 64 KiB chunk, a 1 KiB chunk and the final empty chunk.
DOC_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
DOC_CHUNK_SIGNATURES = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
]
DOC_HEADERS = {
    "host": "s3.amazonaws.com",
    "x-amz-date": "20130524T000000Z",
    "x-amz-storage-class": "REDUCED_REDUNDANCY",
    "content-encoding": "aws-chunked",
    "x-amz-decoded-content-length": "66560",
    "content-length": "66824",
    "x-amz-content-sha256": STREAMING_SIGNED,
    "authorization": (
        f"AWS4-HMAC-SHA256 Credential={AK}/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;"
        "content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,"
        f"Signature={DOC_SEED}"),
}


def _doc_ctx() -> AuthContext:
    ctx = authenticate("PUT", "/examplebucket/chunkObject.txt", "", DOC_HEADERS, {AK: SK}.get,
                       now=datetime(2013, 5, 24, tzinfo=UTC))
    assert ctx is not None and ctx.seed_signature == DOC_SEED
    return ctx


def _doc_body(signatures: list[str] = DOC_CHUNK_SIGNATURES) -> bytes:
    sizes = [65536, 1024, 0]
    return b"".join(f"{size:x};chunk-signature={sig}\r\n".encode() + b"a" * size + b"\r\n"
                    for size, sig in zip(sizes, signatures, strict=True))


def decode(body: bytes, content_sha256: str, ctx: AuthContext | None, decoded_length: int | None,
           splits: list[int] | None = None) -> tuple[bytes, dict[str, str]]:
    decoder = AwsChunkedDecoder(content_sha256, decoded_length=decoded_length, ctx=ctx)
    out = bytearray()
    cuts = [0, *sorted(splits or []), len(body)]
    for start, stop in zip(cuts, cuts[1:], strict=False):
        for piece in decoder.feed(body[start:stop]):
            out += piece
    decoder.finish()
    return bytes(out), decoder.trailers


def test_doc_example_chunk_signatures() -> None:
    body = _doc_body()
    assert len(body) == 66824  # the example's Content-Length
    payload, trailers = decode(body, STREAMING_SIGNED, _doc_ctx(), 66560)
    assert payload == b"a" * 66560 and trailers == {}


def test_doc_example_split_everywhere() -> None:
    body = _doc_body()
    ctx = _doc_ctx()
    rng = random.Random(5)
    for _ in range(20):
        splits = rng.sample(range(1, len(body)), rng.randint(1, 40))
        assert decode(body, STREAMING_SIGNED, ctx, 66560, splits)[0] == b"a" * 66560
    # every framing byte on its own
    framing = [i for i in range(1, 200)] + list(range(65536 + 80, 65536 + 200))
    assert decode(body, STREAMING_SIGNED, ctx, 66560, framing)[0] == b"a" * 66560


@pytest.mark.parametrize("which", [0, 1, 2])
def test_doc_example_bad_chunk_signature(which: int) -> None:
    sigs = list(DOC_CHUNK_SIGNATURES)
    sigs[which] = sigs[which][:-1] + ("0" if sigs[which][-1] != "0" else "1")
    with pytest.raises(S3Error) as info:
        decode(_doc_body(sigs), STREAMING_SIGNED, _doc_ctx(), 66560)
    assert info.value.code == "SignatureDoesNotMatch"


def test_doc_example_tampered_payload() -> None:
    body = bytearray(_doc_body())
    body[100] = ord("b")
    with pytest.raises(S3Error) as info:
        decode(bytes(body), STREAMING_SIGNED, _doc_ctx(), 66560)
    assert info.value.code == "SignatureDoesNotMatch"


# ------------------------------------------------------------------ an encoder written from the spec

def _ctx(seed: str = "0" * 64) -> AuthContext:
    return AuthContext(access_key=AK, content_sha256=STREAMING_SIGNED_TRAILER,
                       signing_key=derive_signing_key(SK, "20261127", "us-east-1", "s3"), seed_signature=seed,
                       scope="20261127/us-east-1/s3/aws4_request", amz_date="20261127T050000Z", presigned=False)


def _hmac_hex(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def encode_signed(payload: bytes, chunk_size: int, ctx: AuthContext, trailers: dict[str, str] | None = None,
                  trailer_signature: str | None = None) -> bytes:
    """Client side of STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]."""
    out = bytearray()
    previous = ctx.seed_signature
    chunks = [payload[i:i + chunk_size] for i in range(0, len(payload), chunk_size)] + [b""]
    for chunk in chunks:
        to_sign = "\n".join(("AWS4-HMAC-SHA256-PAYLOAD", ctx.amz_date, ctx.scope, previous, EMPTY_SHA256,
                             hashlib.sha256(chunk).hexdigest()))
        previous = _hmac_hex(ctx.signing_key, to_sign)
        out += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + chunk
        if chunk:
            out += b"\r\n"
    if trailers is None:
        return bytes(out + b"\r\n")
    canonical = "".join(f"{name}:{value}\n" for name, value in trailers.items())
    signature = trailer_signature or _hmac_hex(ctx.signing_key, "\n".join((
        "AWS4-HMAC-SHA256-TRAILER", ctx.amz_date, ctx.scope, previous, hashlib.sha256(canonical.encode()).hexdigest())))
    out += canonical.replace("\n", "\r\n").encode()
    out += f"x-amz-trailer-signature:{signature}\r\n\r\n".encode()
    return bytes(out)


def _crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_signed_trailer_round_trip() -> None:
    payload = random.Random(1).randbytes(100_000)
    ctx = _ctx()
    body = encode_signed(payload, 8192, ctx, {"x-amz-checksum-crc32": _crc32_b64(payload)})
    got, trailers = decode(body, STREAMING_SIGNED_TRAILER, ctx, len(payload))
    assert got == payload and trailers == {"x-amz-checksum-crc32": _crc32_b64(payload)}
    rng = random.Random(2)
    for _ in range(10):
        splits = rng.sample(range(1, len(body)), 25)
        assert decode(body, STREAMING_SIGNED_TRAILER, ctx, len(payload), splits)[0] == payload


def test_signed_trailer_tampered() -> None:
    payload = b"x" * 5000
    ctx = _ctx()
    body = encode_signed(payload, 1000, ctx, {"x-amz-checksum-crc32": _crc32_b64(payload)})
    forged = body.replace(_crc32_b64(payload).encode(), b"AAAAAA==")
    with pytest.raises(S3Error) as info:
        decode(forged, STREAMING_SIGNED_TRAILER, ctx, len(payload))
    assert info.value.code == "SignatureDoesNotMatch"
    no_sig = body[:body.index(b"x-amz-trailer-signature")] + b"\r\n"
    with pytest.raises(S3Error) as info:
        decode(no_sig, STREAMING_SIGNED_TRAILER, ctx, len(payload))
    assert info.value.code == "SignatureDoesNotMatch"


def test_wrong_seed_signature_fails_first_chunk() -> None:
    body = encode_signed(b"hello", 4, _ctx("1" * 64))
    with pytest.raises(S3Error) as info:
        decode(body, STREAMING_SIGNED, _ctx("2" * 64), 5)
    assert info.value.code == "SignatureDoesNotMatch"


def test_signed_variant_requires_signed_request() -> None:
    with pytest.raises(S3Error) as info:
        AwsChunkedDecoder(STREAMING_SIGNED, decoded_length=None, ctx=None)
    assert info.value.code == "AccessDenied"
    with pytest.raises(S3Error) as info:
        AwsChunkedDecoder("UNSIGNED-PAYLOAD", decoded_length=None, ctx=None)
    assert info.value.code == "InvalidArgument"


# ------------------------------------------------------------------ unsigned trailer, as botocore sends it

def _botocore_chunked(payload: bytes, chunk_size: int) -> bytes:
    wrapper = AwsChunkedWrapper(io.BytesIO(payload), checksum_cls=Crc32Checksum,
                                checksum_name="x-amz-checksum-crc32", chunk_size=chunk_size)
    return wrapper.read()


@pytest.mark.parametrize("size", [0, 1, 10, 65536, 100_001])
def test_botocore_unsigned_trailer(size: int) -> None:
    payload = random.Random(size).randbytes(size)
    body = _botocore_chunked(payload, 8192)
    got, trailers = decode(body, STREAMING_UNSIGNED_TRAILER, None, size)
    assert got == payload
    assert trailers == {"x-amz-checksum-crc32": _crc32_b64(payload)}


def test_one_byte_at_a_time() -> None:
    payload = b"The quick brown fox jumps over the lazy dog" * 3
    body = _botocore_chunked(payload, 16)
    assert decode(body, STREAMING_UNSIGNED_TRAILER, None, len(payload), list(range(1, len(body))))[0] == payload
    ctx = _ctx()
    body = encode_signed(payload, 16, ctx, {"x-amz-checksum-crc32": _crc32_b64(payload)})
    got, trailers = decode(body, STREAMING_SIGNED_TRAILER, ctx, len(payload), list(range(1, len(body))))
    assert got == payload and trailers["x-amz-checksum-crc32"] == _crc32_b64(payload)


def test_boto3_https_put_object_body() -> None:
    """A real boto3 PutObject over https sends STREAMING-UNSIGNED-PAYLOAD-TRAILER; capture and decode it."""
    client = boto3.client("s3", endpoint_url="https://s3.local", region_name="us-east-1",
                          aws_access_key_id="ak", aws_secret_access_key="sk",
                          config=Config(signature_version="s3v4"))
    captured = []

    class Stop(Exception):
        pass

    def before_send(request, **_):
        captured.append(request)
        raise Stop()

    client.meta.events.register("before-send.s3", before_send)
    payload = random.Random(9).randbytes(300_000)
    with pytest.raises(Stop):
        client.put_object(Bucket="b", Key="k", Body=io.BytesIO(payload), ChecksumAlgorithm="CRC32")
    request = captured[0]
    headers = {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
    assert headers["x-amz-content-sha256"] == STREAMING_UNSIGNED_TRAILER
    assert headers["content-encoding"] == "aws-chunked"
    split = urlsplit(request.url)
    headers.setdefault("host", split.netloc)
    ctx = authenticate(request.method, split.path, split.query, headers, {"ak": "sk"}.get)
    assert ctx is not None and ctx.content_sha256 == STREAMING_UNSIGNED_TRAILER
    body = request.body.read() if hasattr(request.body, "read") else request.body
    got, trailers = decode(body, ctx.content_sha256, ctx, int(headers["x-amz-decoded-content-length"]),
                           [7, 1000, 65536 + 3])
    assert got == payload
    assert trailers == {headers["x-amz-trailer"]: _crc32_b64(payload)}


# ------------------------------------------------------------------ truncation and malformed framing

def _expect(code: str, body: bytes, content_sha256: str = STREAMING_UNSIGNED_TRAILER,
            ctx: AuthContext | None = None, decoded_length: int | None = None) -> None:
    with pytest.raises(S3Error) as info:
        decode(body, content_sha256, ctx, decoded_length)
    assert info.value.code == code, info.value


def test_truncated_anywhere_is_incomplete() -> None:
    payload = b"0123456789" * 50
    body = _botocore_chunked(payload, 128)
    for cut in range(0, len(body) - 2):  # dropping the final CRLF alone is tolerated (see below)
        _expect("IncompleteBody", body[:cut], decoded_length=len(payload))
    ctx = _ctx()
    signed = encode_signed(payload, 128, ctx)
    for cut in range(0, len(signed)):
        _expect("IncompleteBody", signed[:cut], STREAMING_SIGNED, ctx, len(payload))


def test_missing_final_blank_line_tolerated_for_unsigned_trailer() -> None:
    body = _botocore_chunked(b"abc", 10)
    assert body.endswith(b"\r\n\r\n")
    assert decode(body[:-2], STREAMING_UNSIGNED_TRAILER, None, 3)[0] == b"abc"


def test_decoded_length_mismatch() -> None:
    body = _botocore_chunked(b"abcdef", 4)
    _expect("IncompleteBody", body, decoded_length=5)   # more than declared
    _expect("IncompleteBody", body, decoded_length=7)   # less than declared
    assert decode(body, STREAMING_UNSIGNED_TRAILER, None, None)[0] == b"abcdef"


@pytest.mark.parametrize("body", [
    b"zz\r\nab\r\n0\r\n\r\n",                    # not hex
    b"2\r\nabXX0\r\n\r\n",                       # no CRLF after data
    b"2\nab\r\n0\r\n\r\n",                       # header without CR
    b"-2\r\nab\r\n0\r\n\r\n",
    b"12345678901234567\r\n",                     # more than 16 hex digits
    b"2\r\nab\r\n0\r\n\r\nextra",                 # data after the end
    b"1" * 5000,                                  # endless header line
    b"2\r\nab\r\n0\r\nno-colon\r\n\r\n",          # trailer not name:value
])
def test_malformed_framing(body: bytes) -> None:
    _expect("InvalidRequest", body)


def test_signed_chunk_without_signature() -> None:
    _expect("SignatureDoesNotMatch", b"2\r\nab\r\n0\r\n\r\n", STREAMING_SIGNED, _ctx())


def test_trailer_after_plain_signed_stream_is_malformed() -> None:
    ctx = _ctx()
    body = encode_signed(b"ab", 2, ctx)[:-2] + b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    _expect("InvalidRequest", body, STREAMING_SIGNED, ctx, 2)


# ------------------------------------------------------------------ speed (O(n), no per-byte work)

def test_decoder_throughput_is_linear() -> None:
    payload = bytes(8 << 20)
    body = _botocore_chunked(payload, 1 << 20)
    start = time.perf_counter()
    got = decode(body, STREAMING_UNSIGNED_TRAILER, None, len(payload), list(range(65536, len(body), 65536)))[0]
    elapsed = time.perf_counter() - start
    assert len(got) == len(payload)
    assert elapsed < 1.0, f"unsigned decode of 8 MiB took {elapsed:.3f}s"


# ------------------------------------------------------------------ property: any chunking, any split

@settings(max_examples=60, deadline=None)
@given(payload=st.binary(max_size=3000), chunk=st.integers(1, 700), signed=st.booleans(),
       data=st.data())
def test_round_trip_property(payload: bytes, chunk: int, signed: bool, data: st.DataObject) -> None:
    ctx = _ctx()
    if signed:
        body = encode_signed(payload, chunk, ctx, {"x-amz-checksum-crc32": _crc32_b64(payload)})
        mode = STREAMING_SIGNED_TRAILER
    else:
        body = _botocore_chunked(payload, chunk)
        mode = STREAMING_UNSIGNED_TRAILER
    splits = data.draw(st.lists(st.integers(1, max(1, len(body) - 1)), max_size=30))
    got, trailers = decode(body, mode, ctx if signed else None, len(payload), sorted(set(splits)))
    assert got == payload
    assert trailers == {"x-amz-checksum-crc32": _crc32_b64(payload)}
