#!/usr/bin/env python3
"""The floor of a large PUT's CPU: the per-byte work no implementation of this store may skip, each
stage timed alone on one thread with the very libraries and calls the server uses.

    .venv/bin/python bench/put_floor.py [--mib 256] [--ec 4+2] [--repeat 3]

Stages (CPU-seconds per GiB of object bytes, the least of ``--repeat`` runs, thread CPU time, so
user and kernel time of the measuring thread and nothing else):

- ``receive``: the kernel's copy of the body from a TCP socket on loopback (``recv_into`` a reused
  buffer; the sender runs on another thread and is not counted);
- ``md5``: the S3 ETag of a single PUT is the body's MD5 (clients such as rclone, s3fs and the aws
  cli's sync compare it with their own);
- ``sha256``: SigV4's signed payload (``x-amz-content-sha256: <hex>``, what boto3 sends over plain
  HTTP): the body must hash to it before the PUT may be acknowledged;
- ``crc32``: the flexible checksum boto3 sends by default (header or trailer), checked the same way
  (exastor.http.checksums, ISA-L when present);
- ``cdc``: content-defined chunking for dedupe (exastor.engine.chunker, FastCDC);
- ``blake3``: each chunk's fingerprint (as ObjectWriter does);
- ``aes_gcm``: encryption at rest, on by default for a new store (AES-256-GCM per chunk into one
  reused buffer, as DataKeys.seal_window);
- ``parity``: the erasure code's parity of full stripes (``--ec``; none at 1+0), ISA-L.

The sum is a lower bound for any server with these promises on this CPU: it leaves out the HTTP
parsing, the interpreter, writing to the drives and the metadata transaction. bench/write_path.py
runs this beside the servers it measures (one run) and prints the floor against Ceph RGW's figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

import blake3  # noqa: E402
import numpy as np  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from exastor.engine import chunker, encryption, erasure  # noqa: E402
from exastor.http.checksums import new_checksum  # noqa: E402

GiB = 1 << 30
PIECE = 256 << 10  # what the HTTP server hands over at a time, about


def _timed(fn: Any) -> float:
    start = time.thread_time()
    fn()
    return time.thread_time() - start


def _receive(data: memoryview) -> float:
    """Thread CPU of receiving ``data`` over a loopback TCP connection into one reused buffer."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def send() -> None:
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(data)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        conn, _ = server.accept()
        with conn:
            buf = bytearray(PIECE)
            view = memoryview(buf)
            start = time.thread_time()
            left = len(data)
            while left:
                n = conn.recv_into(view, min(PIECE, left))
                if n == 0:
                    raise ConnectionError("sender closed early")
                left -= n
            spent = time.thread_time() - start
        sender.join(timeout=60)
    return spent


def _stream_digest(data: memoryview, h: Any) -> None:
    for off in range(0, len(data), PIECE):
        h.update(data[off:off + PIECE])


def measure(mib: int = 256, ec: str = "4+2", repeat: int = 3, seed: int = 1) -> dict[str, Any]:
    """{stage: CPU-s per GiB} (least of ``repeat``), their ``total``, and what was measured."""
    size = mib << 20
    data = memoryview(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).data).cast("B")
    k, m = (int(x) for x in ec.split("+"))
    cdc = chunker.new_chunker()
    chunks, _ = chunker.cut(cdc, data, True)
    aead = AESGCM(os.urandom(32))
    out = memoryview(np.empty(max(len(c) for c in chunks) + encryption.OVERHEAD, np.uint8).data)
    shard = 4 << 20  # exastor.engine.chunkstore.FULL_STRIPE_SHARD
    stripe_bytes = shard * k
    parity = [bytearray(shard) for _ in range(m)]

    def aes() -> None:
        for i, c in enumerate(chunks):
            aead.encrypt_into(i.to_bytes(12, "big"), c, b"", out[:len(c) + 16])

    def code() -> None:
        for off in range(0, size - stripe_bytes + 1, stripe_bytes):
            erasure.encode([data[off + j * shard:off + (j + 1) * shard] for j in range(k)], m, out=parity)

    stages: dict[str, Any] = {
        "receive": lambda: None,
        "md5": lambda: _stream_digest(data, hashlib.md5()),
        "sha256": lambda: _stream_digest(data, hashlib.sha256()),
        "crc32": lambda: _stream_digest(data, new_checksum("CRC32")),
        "cdc": lambda: chunker.cut(chunker.new_chunker(), data, True),
        "blake3": lambda: [blake3.blake3(c).digest() for c in chunks],
        "aes_gcm": aes,
        "parity": code,
    }
    best: dict[str, float] = {}
    for _ in range(max(1, repeat)):
        for name, fn in stages.items():
            if name == "parity" and not m:
                spent = 0.0  # 1+0 codes nothing
            else:
                spent = _receive(data) if name == "receive" else _timed(fn)
            best[name] = min(best.get(name, spent), spent)
    per_gib = {name: round(spent * GiB / size, 3) for name, spent in best.items()}
    return {"stages": per_gib, "total": round(sum(per_gib.values()), 3), "mib": mib, "ec": ec,
            "repeat": repeat, "chunks": len(chunks), "isal_crc32": new_checksum("CRC32").__class__.__name__}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mib", type=int, default=256)
    p.add_argument("--ec", default="4+2", help="k+m of the full stripes whose parity is counted (1+0: none)")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    print(json.dumps(measure(args.mib, args.ec, args.repeat), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
