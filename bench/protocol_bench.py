#!/usr/bin/env python3
"""Cost of the S3 protocol layer per request and per byte, with same-run baselines.

    python bench/protocol_bench.py [--mib 64] [--out bench/results/protocol.json]

Measures, single thread:

1. ``authenticate`` on a botocore-signed SigV4 header request and presigned URL (µs per call),
   next to the bare HMAC chain it cannot avoid (baseline).
2. ``AwsChunkedDecoder`` over ``--mib`` MiB: unsigned-trailer bodies (botocore's framing, 1 MiB
   chunks, fed in 64 KiB reads) and signed bodies (64 KiB chunks), next to a bare ``hashlib.sha256``
   pass over the same bytes (the floor for the signed variant).
3. Each checksum algorithm over ``--mib`` MiB (MB/s), and Azure CRC64.

Writes a JSON with machine info and inputs, and prints a table.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import io
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from bench.lib.machine import machine_info  # noqa: E402
from bench.lib.results import utc_stamp, write_result  # noqa: E402
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

from exastor.http.checksums import ALGORITHMS, crc64_azure, new_checksum  # noqa: E402
from exastor.s3.sigv4 import (  # noqa: E402
    EMPTY_SHA256,
    STREAMING_SIGNED,
    STREAMING_UNSIGNED_TRAILER,
    AuthContext,
    authenticate,
    derive_signing_key,
)
from exastor.s3.streaming import AwsChunkedDecoder  # noqa: E402

AK, SK = "benchkey", "benchsecret"


def _best_of(fn, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_auth(calls: int) -> dict[str, float]:
    req = AWSRequest(method="GET", url="http://127.0.0.1:9000/bucket/some/key.bin?versionId=abc")
    S3SigV4Auth(Credentials(AK, SK), "s3", "us-east-1").add_auth(req)
    split = urlsplit(req.url)
    headers = {k.lower(): v for k, v in req.headers.items()} | {"host": split.netloc}
    lookup = {AK: SK}.get
    pre = AWSRequest(method="GET", url="http://127.0.0.1:9000/bucket/some/key.bin")
    S3SigV4QueryAuth(Credentials(AK, SK), "s3", "us-east-1", expires=3600).add_auth(pre)
    psplit = urlsplit(pre.url)

    def header_auth() -> None:
        for _ in range(calls):
            authenticate("GET", split.path, split.query, headers, lookup)

    def presigned() -> None:
        for _ in range(calls):
            authenticate("GET", psplit.path, psplit.query, {"host": psplit.netloc}, lookup)

    def hmac_chain() -> None:  # baseline: key derivation + one signature, no parsing
        for _ in range(calls):
            key = hmac.new(("AWS4" + SK).encode(), b"20261127", hashlib.sha256).digest()
            for part in (b"us-east-1", b"s3", b"aws4_request"):
                key = hmac.new(key, part, hashlib.sha256).digest()
            hmac.new(key, b"x" * 200, hashlib.sha256).hexdigest()

    return {name: _best_of(fn) / calls * 1e6 for name, fn in
            (("authenticate_header_us", header_auth), ("authenticate_presigned_us", presigned),
             ("baseline_hmac_chain_us", hmac_chain))}


def _signed_body(payload: bytes, chunk: int, ctx: AuthContext) -> bytes:
    out = bytearray()
    previous = ctx.seed_signature
    for start in [*range(0, len(payload), chunk), len(payload)]:
        piece = payload[start:start + chunk]
        to_sign = "\n".join(("AWS4-HMAC-SHA256-PAYLOAD", ctx.amz_date, ctx.scope, previous, EMPTY_SHA256,
                             hashlib.sha256(piece).hexdigest()))
        previous = hmac.new(ctx.signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        out += f"{len(piece):x};chunk-signature={previous}\r\n".encode() + piece + (b"\r\n" if piece else b"")
    return bytes(out + b"\r\n")


def _decode(body: bytes, content_sha256: str, ctx: AuthContext | None, n: int, read: int = 65536) -> None:
    decoder = AwsChunkedDecoder(content_sha256, decoded_length=n, ctx=ctx)
    view = memoryview(body)
    for start in range(0, len(body), read):
        decoder.feed(bytes(view[start:start + read]))
    decoder.finish()


def bench_streaming(payload: bytes) -> dict[str, float]:
    n = len(payload)
    mb = n / 1e6
    unsigned = AwsChunkedWrapper(io.BytesIO(payload), checksum_cls=Crc32Checksum,
                                 checksum_name="x-amz-checksum-crc32", chunk_size=1 << 20).read()
    ctx = AuthContext(AK, STREAMING_SIGNED, derive_signing_key(SK, "20261127", "us-east-1", "s3"), "0" * 64,
                      "20261127/us-east-1/s3/aws4_request", "20261127T050000Z", False)
    signed = _signed_body(payload, 65536, ctx)

    def copy_only() -> None:  # baseline: the 64 KiB reads the decoder is fed, and nothing else
        view = memoryview(unsigned)
        for start in range(0, len(unsigned), 65536):
            bytes(view[start:start + 65536])

    return {
        "baseline_feed_copies_MBps": mb / _best_of(copy_only, 3),
        "unsigned_trailer_decode_MBps": mb / _best_of(lambda: _decode(unsigned, STREAMING_UNSIGNED_TRAILER,
                                                                        None, n), 3),
        "baseline_sha256_MBps": mb / _best_of(lambda: hashlib.sha256(payload).digest(), 3),
        "signed_64KiB_chunks_decode_MBps": mb / _best_of(lambda: _decode(signed, STREAMING_SIGNED, ctx, n), 3),
    }


def bench_checksums(payload: bytes) -> dict[str, float]:
    mb = len(payload) / 1e6
    out = {}
    for algorithm in ALGORITHMS:
        def run(algorithm: str = algorithm) -> None:
            c = new_checksum(algorithm)
            c.update(payload)
            c.digest()
        out[f"{algorithm}_MBps"] = mb / _best_of(run, 3)
    out["MD5_MBps"] = mb / _best_of(lambda: hashlib.md5(payload).digest(), 3)
    out["azure_CRC64_MBps"] = mb / _best_of(lambda: crc64_azure(payload), 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--auth-calls", type=int, default=2000)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "protocol.json"))
    args = parser.parse_args()
    payload = os.urandom(args.mib << 20)
    results: dict[str, dict[str, float]] = {}
    with Progress(transient=True) as progress:
        task = progress.add_task("protocol bench", total=3)
        results["auth"] = bench_auth(args.auth_calls)
        progress.advance(task)
        results["streaming"] = bench_streaming(payload)
        progress.advance(task)
        results["checksums"] = bench_checksums(payload)
        progress.advance(task)
    path = write_result(args.out, {"bench": "protocol", "when": utc_stamp(), "machine": machine_info(),
                                   "inputs": {"mib": args.mib, "auth_calls": args.auth_calls}, "results": results})
    table = Table("group", "metric", "value")
    for group, metrics in results.items():
        for name, value in metrics.items():
            table.add_row(group, name, f"{value:,.1f}")
    Console().print(table)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
