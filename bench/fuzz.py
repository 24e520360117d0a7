#!/usr/bin/env python3
"""A seeded fuzzer that sends malformed and hostile S3 and Blob requests to a live exastor server.

Every request is a valid one first (a template per operation: objects, buckets, multipart, copy,
policies, ACLs, tags, Blob blocks and block lists, containers, leases, SAS), then mutated at the
level a network attacker controls: method, path (percent-encoding, NUL, dot segments, overlong),
query (duplicate and unknown subresources, bad values), headers (huge, duplicated, bad dates,
ranges, lengths, checksums, versions), bodies (malformed, huge, entity-expanding, external
entities, deep nesting), framing (HTTP chunked and aws-chunked with bad sizes, bad chunk
signatures, truncated streams, Content-Length and Transfer-Encoding together) and signatures
(SigV4 header and presigned, V2, Shared Key, SAS; tampered). Most requests are signed *after* the
mutation (botocore's S3SigV4Auth, the Azure SDK's Shared Key policy), so the mutation reaches the
handler and not only the authenticator; the rest are mutated after signing.

Invariants, checked after every request: no 5xx other than 503 (a deliberate limit: SlowDown /
ServerBusy) and 501 (the protocol's NotImplemented), no hang (an answer within ``--timeout``), the
server still answers its readiness probe, and no worker died (the master's children are those it
started with). After every batch: the canary objects (S3 objects and Blob blobs) hold the same
bytes and ETag unless a request that the server answered 2xx wrote that very name.

    python bench/fuzz.py --requests 100000 --seed 1            # starts its own server in a temp dir
    python bench/fuzz.py --requests 2000 --seed 7 --only 1234   # one request of that seed, printed

Each failure is printed with the request's bytes (reproducible: request i of seed s is the same
on every run, ``--only i``). Exit status 1 when any invariant failed. The CI slice is
``tests/api/test_fuzz.py``; the recorded long run is in docs/security.md ("Fuzzing").
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

REPO = Path(__file__).resolve().parent.parent

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
ALLOWED_5XX = {503, 501}  # a deliberate limit (SlowDown / ServerBusy), and "not implemented"
MUTATING = {"PUT", "POST", "DELETE", "PATCH"}


# --- where the server is -------------------------------------------------------------------------


@dataclass
class Target:
    """A running server: its ports, credentials and master process (for the worker check)."""

    s3_port: int
    blob_port: int
    access_key: str
    secret_key: str
    alt_access_key: str
    alt_secret_key: str
    account_name: str
    account_key: str
    master_pid: int | None = None
    host: str = "127.0.0.1"


# --- one request, as bytes on the wire -----------------------------------------------------------


@dataclass
class Request:
    api: str                                   # "s3" | "blob"
    method: str
    path: str                                  # raw, percent-encoded as sent
    query: str = ""                            # raw, without "?"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    framing: str = "length"                    # "length": Content-Length; "chunked": HTTP chunked; "none"
    truncate: int | None = None                # send only this many bytes, then half-close
    half_close: bool = False                   # shut the sending side once sent: a body the framing
    #                                            promises but never sends ends in EOF, not a wait
    label: str = ""                            # template + mutations, for the report
    canary_writes: tuple[str, ...] = ()        # the canary names a 2xx of this request may change

    @property
    def target(self) -> str:
        return self.path + ("?" + self.query if self.query else "")

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def set_header(self, name: str, value: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        self.headers.append((name, value))

    def drop_header(self, name: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]

    def encode(self, host: str) -> bytes:
        head = [f"{self.method} {self.target} HTTP/1.1"]
        names = {k.lower() for k, _ in self.headers}
        if "host" not in names:
            head.append(f"Host: {host}")
        head += [f"{k}: {v}" for k, v in self.headers]
        body = self.body
        if self.framing == "length" and "content-length" not in names:
            head.append(f"Content-Length: {len(body)}")
        elif self.framing == "chunked":
            if "transfer-encoding" not in names:
                head.append("Transfer-Encoding: chunked")
            body = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 4096]), body[i:i + 4096])
                            for i in range(0, len(body), 4096)) + b"0\r\n\r\n"
        if "connection" not in names:
            head.append("Connection: close")
        raw = ("\r\n".join(head) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body
        return raw if self.truncate is None else raw[:self.truncate]

    def show(self, host: str, limit: int = 3000) -> str:
        raw = self.encode(host)
        text = repr(raw[:limit])
        return text + (f" ... ({len(raw)} bytes)" if len(raw) > limit else "")


# --- signing -------------------------------------------------------------------------------------


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _signing_key(secret: str, date: str, region: str = "us-east-1", service: str = "s3") -> bytes:
    key = _hmac(("AWS4" + secret).encode(), date)
    return _hmac(_hmac(_hmac(key, region), service), "aws4_request")


def sign_s3(req: Request, host: str, access_key: str, secret_key: str, *, payload: str | None = None,
            region: str = "us-east-1", presign: int | None = None) -> None:
    """Sign ``req`` as it stands with botocore's SigV4 (header auth, or a presigned URL valid for
    ``presign`` seconds). ``payload``: the x-amz-content-sha256 to sign (default: the body's hash)."""
    from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    class Signer(S3SigV4Auth):
        def payload(self, request: AWSRequest) -> str:  # noqa: D102 - the value we chose, not botocore's
            return payload or (hashlib.sha256(req.body).hexdigest() if req.body else EMPTY_SHA256)

    creds = Credentials(access_key, secret_key)
    # duplicates and the filler headers go in after signing (botocore's header map is quadratic)
    headers = {k: v for k, v in req.headers if not k.startswith("x-fz-")}
    aws = AWSRequest(method=req.method, url=f"http://{host}{req.target}", data=b"", headers=headers)
    if presign is not None:
        S3SigV4QueryAuth(creds, "s3", region, expires=presign).add_auth(aws)
        req.query = aws.url.split("?", 1)[1] if "?" in aws.url else req.query
    else:
        Signer(creds, "s3", region).add_auth(aws)
    extra = [(k, v) for k, v in req.headers if headers.get(k) != v]
    req.headers = list(aws.headers.items()) + extra


def sign_blob(req: Request, host: str, account: str, key: str) -> None:
    """Sign ``req`` with Shared Key by the Azure SDK's own policy."""
    from azure.core.pipeline import PipelineContext, PipelineRequest
    from azure.core.pipeline.transport import HttpRequest
    from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy

    headers = {k: v for k, v in req.headers if not k.startswith("x-fz-")}
    if req.framing == "length" and "Content-Length" not in headers:
        headers["Content-Length"] = str(len(req.body))
    http_req = HttpRequest(req.method, f"http://{host}{req.target}")
    http_req.headers.update(headers)
    SharedKeyCredentialPolicy(account, key).on_request(PipelineRequest(http_req, PipelineContext(None)))
    extra = [(k, v) for k, v in req.headers if headers.get(k) != v]
    req.headers = list(http_req.headers.items()) + extra


def blob_sas(t: Target, container: str, blob: str | None, permission: str, *, expiry_s: int = 3600) -> str:
    from azure.storage.blob import generate_blob_sas, generate_container_sas

    expiry = datetime.now(UTC) + timedelta(seconds=expiry_s)
    if blob is None:
        return generate_container_sas(t.account_name, container, account_key=t.account_key,
                                      permission=permission, expiry=expiry)
    return generate_blob_sas(t.account_name, container, blob, account_key=t.account_key,
                             permission=permission, expiry=expiry)


def aws_chunked(body: bytes, seed_signature: str, amz_date: str, secret: str, *, chunk: int = 8192,
                region: str = "us-east-1") -> bytes:
    """``body`` as an aws-chunked stream with valid per-chunk signatures (STREAMING-AWS4-HMAC-SHA256-PAYLOAD)."""
    date = amz_date[:8]
    scope = f"{date}/{region}/s3/aws4_request"
    key = _signing_key(secret, date, region)
    out, previous = [], seed_signature
    pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)] + [b""]
    for piece in pieces:
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous, EMPTY_SHA256,
                             hashlib.sha256(piece).hexdigest()])
        previous = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        out.append(b"%x;chunk-signature=%s\r\n%s\r\n" % (len(piece), previous.encode(), piece))
    return b"".join(out)


# --- the wire ------------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    more_statuses: list[int] = field(default_factory=list)  # pipelined answers after the first


class Hang(Exception):
    pass


def _parse_one(buf: bytes, head_request: bool) -> tuple[Response, int] | None:
    """One complete response at the start of ``buf`` and its length, or None if incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise ConnectionError(f"not an HTTP response: {buf[:200]!r}") from None
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    pos = end + 4
    if head_request or status in (204, 304) or 100 <= status < 200:
        return Response(status, headers, b""), pos
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(buf[pos:eol].split(b";")[0], 16)
            if len(buf) < eol + 2 + size + 2:
                return None
            body += buf[eol + 2:eol + 2 + size]
            pos = eol + 2 + size + 2
            if size == 0:
                return Response(status, headers, body), pos
    if "content-length" in headers:
        length = int(headers["content-length"])
        if len(buf) < pos + length:
            return None
        return Response(status, headers, buf[pos:pos + length]), pos + length
    return None  # until the server closes


def send(host: str, port: int, req: Request, timeout: float) -> Response:
    """Send ``req`` on a fresh connection and read the first final answer (and whatever else the
    server sends before it closes, for pipelined requests). Raises Hang past ``timeout``."""
    raw = req.encode(f"{host}:{port}")
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(raw)
            if req.truncate is not None or req.half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:  # EPIPE, ECONNRESET, ENOTCONN: the server closed early (a limit, a framing error)
            pass  # the server refused early (a limit); its answer may still be readable
        buf = b""
        first: Response | None = None
        head = req.method.upper() == "HEAD"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Hang(f"no complete answer within {timeout} s (got {buf[:200]!r})")
            sock.settimeout(remaining)
            try:
                piece = sock.recv(1 << 16)
            except TimeoutError:
                raise Hang(f"no complete answer within {timeout} s (got {buf[:200]!r})") from None
            except ConnectionResetError:
                piece = b""
            buf += piece
            while True:
                parsed = _parse_one(buf, head) if buf else None
                if parsed is None:
                    break
                resp, used = parsed
                buf = buf[used:]
                if 100 <= resp.status < 200:
                    continue
                if first is None:
                    first = resp
                    if resp.headers.get("connection", "").lower() != "close" and not req.label.startswith("pipeline"):
                        return first
                else:
                    first.more_statuses.append(resp.status)
            if not piece:
                if first is None:
                    if not buf:
                        # closed without an answer: what a server does to a framing it cannot read
                        return Response(0, {}, b"")
                    resp = _parse_one(buf + b"", head) or _close_delimited(buf)
                    return resp[0] if isinstance(resp, tuple) else resp
                return first


def _close_delimited(buf: bytes) -> Response:
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        raise ConnectionError(f"truncated answer: {buf[:200]!r}")
    status = int(buf.split(b" ", 2)[1])
    return Response(status, {}, buf[end + 4:])


# --- the generator -------------------------------------------------------------------------------

S3_CANARY_BUCKET = "fz-canary"
S3_WORK_BUCKET = "fz-work"
BLOB_CANARY_CONTAINER = "fz-blob-canary"
BLOB_WORK_CONTAINER = "fz-blob-work"
CANARY_KEYS = ("c1", "dir/c2", "c3 space", "c4%")  # "c4%" is sent as c4%25

XML_NS = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
WEIRD_METHODS = ["PATCH", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "get", "Put", "FOO", "M" * 300, "GET\x00",
                 "DELETE", "HEAD", "POST", "PUT", "GET"]
BAD_DATES = ["garbage", "", "20010101T000000Z", "Mon, 01 Jan 2001 00:00:00 GMT", "99999999T999999Z",
             "2026-13-45T25:61:61Z", "Thu, 31 Feb 2026 25:00:00 GMT", "\x00", "9" * 400, "-1",
             "Fri, 01 Jan 10000 00:00:00 GMT", "T", "20261204T"]
BAD_RANGES = ["bytes=5-1", "bytes=", "bytes=-", "bytes=abc", "bytes=0-1,2-3", "bytes=-0", "foo=0-1",
              "bytes=" + "9" * 5000 + "-", "bytes=0-" + "9" * 30, "bytes=--1", "bytes=1--2", "bytes 0-1",
              "bytes=0-1" + ",0-1" * 2000, "bytes=\x00", "bytes=18446744073709551616-", "bytes=0x10-0x20",
              "bytes=+1-2", "bytes= 1 - 2 ", "bytes=9223372036854775807-9223372036854775807"]
BAD_LENGTHS = ["-1", "abc", "1e3", "99999999999999999999999", "0x10", " 5", "+5", "5,5", "", "18446744073709551616",
               "1" * 5000]
BAD_SHA = ["garbage", "UNSIGNED", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
           "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD", "0" * 64,
           "Z" * 64, "", "UNSIGNED-PAYLOAD\x00"]
BAD_ETAGS = ["x", "", '"' * 3, "a" * 200]
BAD_KEYS = ["", "a" * 2000, "&#0;", "&#xFFFF;", "c1", "\x01"]
BAD_VERSIONS = ["garbage", "2009-09-19", "2099-01-01", "", "2025-11-05x", "1.0", "9" * 300, "2015-04-05"]
BAD_HEADER_VALUES = ["", " ", "\t", "a" * 8000, "\x01\x02", "ÿ", "%00", "=?utf-8?b?AA==?=", "-1", "0", "9" * 40,
                     "true", "null", "../../etc/passwd", "${jndi:ldap://x}", "' OR 1=1 --"]
S3_HEADERS = ["x-amz-acl", "x-amz-grant-read", "x-amz-grant-full-control", "x-amz-copy-source",
              "x-amz-copy-source-range", "x-amz-metadata-directive", "x-amz-tagging", "x-amz-tagging-directive",
              "x-amz-server-side-encryption", "x-amz-server-side-encryption-customer-algorithm",
              "x-amz-server-side-encryption-customer-key", "x-amz-server-side-encryption-customer-key-MD5",
              "x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date", "x-amz-object-lock-legal-hold",
              "x-amz-bypass-governance-retention", "x-amz-storage-class", "x-amz-decoded-content-length",
              "x-amz-checksum-crc32", "x-amz-checksum-sha256", "x-amz-checksum-crc64nvme", "x-amz-sdk-checksum-algorithm",
              "x-amz-trailer", "x-amz-website-redirect-location", "x-amz-expected-bucket-owner", "x-amz-mfa",
              "x-amz-bucket-object-lock-enabled", "x-amz-copy-source-if-match", "x-amz-copy-source-if-modified-since",
              "x-amz-meta-a", "Content-MD5", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since",
              "Range", "Content-Type", "Content-Encoding", "Cache-Control", "Expires", "Expect", "Content-Range",
              "x-amz-write-offset-bytes", "x-amz-object-attributes", "x-amz-request-payer"]
BLOB_HEADERS = ["x-ms-blob-type", "x-ms-blob-content-length", "x-ms-blob-sequence-number", "x-ms-range",
                "x-ms-range-get-content-md5", "x-ms-range-get-content-crc64", "x-ms-lease-id", "x-ms-lease-action",
                "x-ms-lease-duration", "x-ms-proposed-lease-id", "x-ms-lease-break-period", "x-ms-copy-source",
                "x-ms-copy-source-authorization", "x-ms-source-range", "x-ms-source-content-md5",
                "x-ms-blob-condition-appendpos", "x-ms-blob-condition-maxsize", "x-ms-access-tier", "x-ms-tags",
                "x-ms-meta-a", "x-ms-meta-", "x-ms-blob-public-access", "x-ms-content-crc64", "Content-MD5",
                "x-ms-blob-content-md5", "x-ms-blob-content-type", "x-ms-if-tags", "x-ms-immutability-policy-until-date",
                "x-ms-immutability-policy-mode", "x-ms-legal-hold", "x-ms-expiry-option", "x-ms-expiry-time",
                "x-ms-rehydrate-priority", "x-ms-snapshot", "x-ms-delete-snapshots", "x-ms-encryption-key",
                "x-ms-encryption-scope", "If-Match", "If-None-Match", "If-Modified-Since", "Range", "x-ms-client-request-id",
                "x-ms-requires-sync", "x-ms-seal-blob", "x-ms-source-if-match", "x-ms-undelete-source"]


def _xml_bomb() -> bytes:
    ents = '<!ENTITY a0 "lollollollollollollol">' + "".join(
        f'<!ENTITY a{i} "{("&a" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    return f'<?xml version="1.0"?><!DOCTYPE d [{ents}]><Delete{XML_NS}><Object><Key>&a9;</Key></Object></Delete>'.encode()


def _xxe(root: str) -> bytes:
    return (f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            f'<{root}{XML_NS}><Key>&x;</Key></{root}>').encode()


def _deep(root: str, depth: int) -> bytes:
    return (f"<{root}{XML_NS}>" + "<Part>" * depth + "</Part>" * depth + f"</{root}>").encode()


class Generator:
    """Request ``i`` of seed ``s`` is a function of (s, i) and the names below only."""

    def __init__(self, target: Target, seed: int) -> None:
        self.t = target
        self.seed = seed
        self.upload_id = "none"        # a live multipart upload in the work bucket (set by the runner)
        self.upload_key = "mp"

    # names ------------------------------------------------------------------------------------

    def s3_host(self) -> str:
        return f"{self.t.host}:{self.t.s3_port}"

    def blob_host(self) -> str:
        return f"{self.t.host}:{self.t.blob_port}"

    @staticmethod
    def enc(key: str) -> str:
        return quote(key, safe="/~")

    def pick_object(self, rng: random.Random, api: str) -> tuple[str, str, bool]:
        """(container, key, is_canary)."""
        if rng.random() < 0.3:
            key = rng.choice(CANARY_KEYS)
            return (S3_CANARY_BUCKET if api == "s3" else BLOB_CANARY_CONTAINER), key, True
        key = rng.choice(["k", "a/b/c", "big", "x" * rng.randint(1, 50), f"o{rng.randint(0, 20)}", "mp", "src"])
        return (S3_WORK_BUCKET if api == "s3" else BLOB_WORK_CONTAINER), key, False

    # S3 templates -------------------------------------------------------------------------------

    def s3_template(self, rng: random.Random) -> Request:
        bucket, key, canary = self.pick_object(rng, "s3")
        opath = f"/{bucket}/{self.enc(key)}"
        bpath = f"/{bucket}"
        body = rng.randbytes(rng.choice([0, 1, 100, 5000, 70000]))
        writes = (key,) if canary else ()
        kind = rng.randrange(26)
        if kind == 0:
            return Request("s3", "PUT", opath, body=body, headers=[("x-amz-meta-f", "1")], label="PutObject",
                           canary_writes=writes)
        if kind == 1:
            return Request("s3", "GET", opath, headers=[("Range", rng.choice(["bytes=0-9", "bytes=-5", "bytes=3-"]))],
                           label="GetObject")
        if kind == 2:
            return Request("s3", "HEAD", opath, label="HeadObject")
        if kind == 3:
            return Request("s3", "DELETE", opath, label="DeleteObject", canary_writes=writes)
        if kind == 4:
            q = rng.choice(["list-type=2&prefix=a&delimiter=/&max-keys=3", "prefix=&marker=k", "versions",
                            "uploads", "list-type=2&continuation-token=Zm9v&encoding-type=url", "max-keys=0"])
            return Request("s3", "GET", bpath, q, label="ListObjects")
        if kind == 5:
            keys = [rng.choice(CANARY_KEYS + ("k", "o1")) for _ in range(rng.randint(1, 4))]
            xml = f"<Delete{XML_NS}><Quiet>false</Quiet>" + "".join(
                f"<Object><Key>{k}</Key></Object>" for k in keys) + "</Delete>"
            b = xml.encode()
            md5 = base64.b64encode(hashlib.md5(b).digest()).decode()
            return Request("s3", "POST", bpath, "delete", [("Content-MD5", md5)], b, label="DeleteObjects",
                           canary_writes=tuple(keys) if bucket == S3_CANARY_BUCKET else ())
        if kind == 6:
            return Request("s3", "POST", f"/{S3_WORK_BUCKET}/{self.upload_key}", "uploads",
                           label="CreateMultipartUpload")
        if kind == 7:
            return Request("s3", "PUT", f"/{S3_WORK_BUCKET}/{self.upload_key}",
                           f"partNumber={rng.randint(1, 3)}&uploadId={self.upload_id}", body=body, label="UploadPart")
        if kind == 8:
            parts = "".join(f'<Part><PartNumber>{n}</PartNumber><ETag>"{rng.randbytes(16).hex()}"</ETag></Part>'
                            for n in range(1, rng.randint(1, 4)))
            xml = f"<CompleteMultipartUpload{XML_NS}>{parts}</CompleteMultipartUpload>".encode()
            return Request("s3", "POST", f"/{S3_WORK_BUCKET}/{self.upload_key}", f"uploadId={self.upload_id}",
                           body=xml, label="CompleteMultipartUpload")
        if kind == 9:
            return Request("s3", rng.choice(["GET", "DELETE"]), f"/{S3_WORK_BUCKET}/{self.upload_key}",
                           f"uploadId={self.upload_id}&max-parts=2", label="ListParts/Abort")
        if kind == 10:
            policy = {"Version": "2012-10-17", "Statement": [{
                "Effect": rng.choice(["Allow", "Deny"]), "Principal": rng.choice(["*", {"AWS": ["*"]}]),
                "Action": rng.choice(["s3:GetObject", "s3:*", ["s3:PutObject", "s3:DeleteObject"]]),
                "Resource": [f"arn:aws:s3:::{bucket}/*", f"arn:aws:s3:::{bucket}"],
                "Condition": rng.choice([{}, {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
                                         {"StringLike": {"s3:prefix": ["a*"]}}])}]}
            return Request("s3", "PUT", bpath, "policy", body=json.dumps(policy).encode(), label="PutBucketPolicy")
        if kind == 11:
            xml = (f'<AccessControlPolicy{XML_NS}><Owner><ID>admin</ID></Owner><AccessControlList>'
                   '<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="Group">'
                   '<URI>http://acs.amazonaws.com/groups/global/AllUsers</URI></Grantee>'
                   '<Permission>READ</Permission></Grant></AccessControlList></AccessControlPolicy>').encode()
            return Request("s3", "PUT", rng.choice([bpath, opath]), "acl", body=xml, label="PutAcl")
        if kind == 12:
            tags = "".join(f"<Tag><Key>t{i}</Key><Value>v{i}</Value></Tag>" for i in range(rng.randint(0, 3)))
            xml = f"<Tagging{XML_NS}><TagSet>{tags}</TagSet></Tagging>".encode()
            return Request("s3", "PUT", rng.choice([bpath, opath]), "tagging", body=xml, label="PutTagging")
        if kind == 13:
            xml = (f"<VersioningConfiguration{XML_NS}><Status>{rng.choice(['Enabled', 'Suspended'])}</Status>"
                   "</VersioningConfiguration>").encode()
            return Request("s3", "PUT", bpath, "versioning", body=xml, label="PutBucketVersioning")
        if kind == 14:
            src = f"/{rng.choice([S3_CANARY_BUCKET, S3_WORK_BUCKET])}/{self.enc(rng.choice(CANARY_KEYS + ('k',)))}"
            return Request("s3", "PUT", f"/{S3_WORK_BUCKET}/copy{rng.randint(0, 5)}",
                           headers=[("x-amz-copy-source", src)], label="CopyObject")
        if kind == 15:
            sub = rng.choice(["cors", "lifecycle", "encryption", "object-lock", "location", "policy", "acl",
                              "tagging", "versioning", "uploads", "versions"])
            return Request("s3", "GET", bpath, sub, label="GetBucket" + sub)
        if kind == 16:
            xml = (f"<CORSConfiguration{XML_NS}><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET"
                   "</AllowedMethod></CORSRule></CORSConfiguration>").encode()
            md5 = base64.b64encode(hashlib.md5(xml).digest()).decode()
            return Request("s3", "PUT", bpath, "cors", [("Content-MD5", md5)], xml, label="PutBucketCors")
        if kind == 17:
            xml = (f"<LifecycleConfiguration{XML_NS}><Rule><ID>r</ID><Filter><Prefix>tmp/</Prefix></Filter>"
                   "<Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>"
                   ).encode()
            md5 = base64.b64encode(hashlib.md5(xml).digest()).decode()
            return Request("s3", "PUT", bpath, "lifecycle", [("Content-MD5", md5)], xml, label="PutLifecycle")
        if kind == 18:
            sub = rng.choice(["retention", "legal-hold", "tagging", "acl", "attributes"])
            return Request("s3", "GET", opath, sub, label="GetObject" + sub)
        if kind == 19:
            xml = (f"<Retention{XML_NS}><Mode>GOVERNANCE</Mode><RetainUntilDate>2030-01-01T00:00:00Z"
                   "</RetainUntilDate></Retention>").encode()
            return Request("s3", "PUT", opath, rng.choice(["retention", "legal-hold"]), body=xml,
                           label="PutObjectRetention")
        if kind == 20:
            return Request("s3", "PUT", f"/fz-new-{rng.randint(0, 3)}", label="CreateBucket",
                           body=rng.choice([b"", (f"<CreateBucketConfiguration{XML_NS}><LocationConstraint>"
                                                  "us-east-1</LocationConstraint></CreateBucketConfiguration>").encode()]))
        if kind == 21:
            return Request("s3", "DELETE", f"/fz-new-{rng.randint(0, 3)}", label="DeleteBucket")
        if kind == 22:
            return Request("s3", "GET", "/", label="ListBuckets")
        if kind == 23:
            return Request("s3", "OPTIONS", opath, headers=[("Origin", "http://x"),
                                                            ("Access-Control-Request-Method", "PUT")],
                           label="CorsPreflight")
        if kind == 24:
            boundary = "fzb"
            form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\n{key}\r\n"
                    f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n").encode()
            form += body[:100] + f"\r\n--{boundary}--\r\n".encode()
            return Request("s3", "POST", bpath, headers=[("Content-Type", f"multipart/form-data; boundary={boundary}")],
                           body=form, label="PostObject", canary_writes=writes)
        return Request("s3", "PUT", f"/{S3_WORK_BUCKET}/{self.upload_key}",
                       f"partNumber=1&uploadId={self.upload_id}",
                       headers=[("x-amz-copy-source", f"/{S3_WORK_BUCKET}/k"),
                                ("x-amz-copy-source-range", rng.choice(["bytes=0-1", "bytes=0-99999"]))],
                       label="UploadPartCopy")

    # Blob templates ----------------------------------------------------------------------------

    def blob_template(self, rng: random.Random) -> Request:
        a = self.t.account_name
        container, name, canary = self.pick_object(rng, "blob")
        bpath = f"/{a}/{container}/{self.enc(name)}"
        cpath = f"/{a}/{container}"
        body = rng.randbytes(rng.choice([0, 1, 100, 5000, 70000]))
        writes = (name,) if canary else ()
        kind = rng.randrange(20)
        if kind == 0:
            return Request("blob", "PUT", bpath, headers=[("x-ms-blob-type", "BlockBlob"), ("x-ms-meta-f", "1")],
                           body=body, label="PutBlob", canary_writes=writes)
        if kind == 1:
            return Request("blob", "GET", bpath, headers=[("x-ms-range", rng.choice(["bytes=0-9", "bytes=5-"]))],
                           label="GetBlob")
        if kind == 2:
            return Request("blob", "HEAD", bpath, label="GetBlobProperties")
        if kind == 3:
            return Request("blob", "DELETE", bpath, label="DeleteBlob", canary_writes=writes)
        if kind == 4:
            block = base64.b64encode(b"blk-%03d" % rng.randint(0, 5)).decode()
            return Request("blob", "PUT", bpath, f"comp=block&blockid={quote(block, safe='')}", body=body,
                           label="PutBlock")
        if kind == 5:
            ids = "".join(f"<{rng.choice(['Latest', 'Committed', 'Uncommitted'])}>"
                          f"{base64.b64encode(b'blk-%03d' % rng.randint(0, 5)).decode()}"
                          f"</{'Latest'}>" for _ in range(rng.randint(0, 3)))
            ids = re.sub(r"<(Committed|Uncommitted)>([^<]*)</Latest>", r"<\1>\2</\1>", ids)
            xml = f'<?xml version="1.0" encoding="utf-8"?><BlockList>{ids}</BlockList>'.encode()
            return Request("blob", "PUT", bpath, "comp=blocklist", body=xml, label="PutBlockList",
                           canary_writes=writes)
        if kind == 6:
            return Request("blob", "GET", bpath, "comp=blocklist&blocklisttype=all", label="GetBlockList")
        if kind == 7:
            q = rng.choice(["restype=container&comp=list", "restype=container&comp=list&prefix=a&delimiter=/",
                            "restype=container&comp=list&include=metadata,snapshots,uncommittedblobs&maxresults=2",
                            "restype=container", "restype=container&comp=metadata", "restype=container&comp=acl"])
            return Request("blob", "GET", cpath, q, label="ContainerRead")
        if kind == 8:
            return Request("blob", "PUT", f"/{a}/fz-newc-{rng.randint(0, 3)}", "restype=container",
                           label="CreateContainer")
        if kind == 9:
            return Request("blob", "DELETE", f"/{a}/fz-newc-{rng.randint(0, 3)}", "restype=container",
                           label="DeleteContainer")
        if kind == 10:
            xml = (b'<?xml version="1.0" encoding="utf-8"?><SignedIdentifiers><SignedIdentifier><Id>p1</Id>'
                   b"<AccessPolicy><Start>2026-01-01T00:00:00Z</Start><Expiry>2030-01-01T00:00:00Z</Expiry>"
                   b"<Permission>rl</Permission></AccessPolicy></SignedIdentifier></SignedIdentifiers>")
            return Request("blob", "PUT", cpath, "restype=container&comp=acl",
                           headers=[("x-ms-blob-public-access", rng.choice(["blob", "container"]))], body=xml,
                           label="SetContainerACL")
        if kind == 11:
            return Request("blob", "PUT", bpath, "comp=metadata", headers=[("x-ms-meta-x", "y")],
                           label="SetBlobMetadata")
        if kind == 12:
            xml = (b'<?xml version="1.0" encoding="utf-8"?><Tags><TagSet><Tag><Key>a</Key><Value>b</Value></Tag>'
                   b"</TagSet></Tags>")
            return Request("blob", "PUT", bpath, "comp=tags", body=xml, label="SetBlobTags")
        if kind == 13:
            return Request("blob", "PUT", bpath, "comp=lease",
                           headers=[("x-ms-lease-action", rng.choice(["acquire", "break", "release", "renew"])),
                                    ("x-ms-lease-duration", rng.choice(["15", "-1", "60"]))], label="LeaseBlob")
        if kind == 14:
            src = f"http://{self.blob_host()}/{a}/{rng.choice([BLOB_CANARY_CONTAINER, BLOB_WORK_CONTAINER])}/c1"
            return Request("blob", "PUT", f"/{a}/{BLOB_WORK_CONTAINER}/copy{rng.randint(0, 3)}",
                           headers=[("x-ms-copy-source", src)], label="CopyBlob")
        if kind == 15:
            return Request("blob", "PUT", f"/{a}/{BLOB_WORK_CONTAINER}/app", "comp=appendblock", body=body[:4000],
                           label="AppendBlock")
        if kind == 16:
            return Request("blob", "PUT", f"/{a}/{BLOB_WORK_CONTAINER}/app",
                           headers=[("x-ms-blob-type", "AppendBlob")], label="CreateAppendBlob")
        if kind == 17:
            q = rng.choice(["comp=list", "comp=properties&restype=service", "restype=account&comp=properties",
                            "comp=stats&restype=service", "comp=blobs&where=%22a%22%3D%27b%27"])
            return Request("blob", "GET", f"/{a}", q, label="ServiceRead")
        if kind == 18:
            xml = (b'<?xml version="1.0" encoding="utf-8"?><StorageServiceProperties><Cors><CorsRule>'
                   b"<AllowedOrigins>*</AllowedOrigins><AllowedMethods>GET</AllowedMethods><AllowedHeaders>*"
                   b"</AllowedHeaders><ExposedHeaders>*</ExposedHeaders><MaxAgeInSeconds>5</MaxAgeInSeconds>"
                   b"</CorsRule></Cors></StorageServiceProperties>")
            return Request("blob", "PUT", f"/{a}", "restype=service&comp=properties", body=xml,
                           label="SetServiceProperties")
        return Request("blob", "PUT", bpath, rng.choice(["comp=snapshot", "comp=tier", "comp=properties",
                                                         "comp=seal", "comp=expiry", "comp=legalhold",
                                                         "comp=immutabilityPolicies", "comp=undelete"]),
                       headers=[("x-ms-access-tier", "Cool"), ("x-ms-expiry-option", "NeverExpire")],
                       label="BlobMisc")

    # mutations ---------------------------------------------------------------------------------

    def mutate(self, req: Request, rng: random.Random) -> list[str]:
        """Apply 0..3 mutations that a signature can still cover (the request is signed after)."""
        names = []
        for _ in range(rng.choice([0, 1, 1, 1, 2, 2, 3])):
            m = rng.choice(self.MUTATIONS)
            names.append(m.__name__.lstrip("_"))
            m(self, req, rng)
        return names

    def _method(self, req: Request, rng: random.Random) -> None:
        req.method = rng.choice(WEIRD_METHODS)

    def _path(self, req: Request, rng: random.Random) -> None:
        parts = req.path.split("/")
        choice = rng.randrange(12)
        if choice == 0:
            req.path += rng.choice(["%00", "%00x", "\x00"])
        elif choice == 1:
            req.path = req.path.replace("/", "/./", 1) if rng.random() < 0.5 else req.path + "/../../" + parts[-1]
        elif choice == 2:
            req.path += "/" + "%2e%2e/" * rng.randint(1, 5) + "x"
        elif choice == 3:
            req.path += rng.choice(["%FF", "%C0%AF", "%ED%A0%80", "%F4%90%80%80", "%E2%80%AE", "%0A", "%0D%0A"])
        elif choice == 4:
            req.path += "/" + "a" * rng.choice([1025, 5000, 60000])
        elif choice == 5:
            req.path += rng.choice(["%", "%G1", "%2", "%%", "%u0041"])
        elif choice == 6:
            req.path = req.path.replace("/", "//", rng.randint(1, 3))
        elif choice == 7:
            req.path = rng.choice(["*", "", "http://evil/x", "/" + "%2F" * 10, "//", "/%2e%2e", "/.", "/..", "?"])
        elif choice == 8 and len(parts) > 2:
            parts[2 if req.api == "s3" else min(3, len(parts) - 1)] = rng.choice(
                ["A", "ab", "a" * 64, "-x", "x-", "a..b", "192.168.1.1", "xn--x", "a_b", "%00", "\u00e9", "a" * 3])
            req.path = "/".join(parts)
        elif choice == 9:
            req.path = "/" + quote("/".join(parts[1:]), safe="")  # every slash encoded
        elif choice == 10:
            req.path += "/" + "".join(rng.choice(["%01", "%7F", "%20", "+", ";", ",", "'", '"', "<", "{"])
                                      for _ in range(rng.randint(1, 8)))
        else:
            req.path += "/" + "é" * rng.randint(1, 20)

    def _query(self, req: Request, rng: random.Random) -> None:
        extra = rng.choice([
            "acl", "acl&acl", "uploads&uploadId=x", "delete", "policy", "tagging&versionId=null", "versionId=",
            "versionId=" + "9" * 60, "partNumber=0&uploadId=x", "partNumber=-1&uploadId=x",
            "partNumber=99999999999999999999&uploadId=x", "uploadId=" + "A" * 3000, "max-keys=abc", "max-keys=-5",
            "max-keys=99999999999999999999", "list-type=3", "list-type=2&continuation-token=%%%", "encoding-type=foo",
            "comp=list&comp=block", "restype=container&restype=blob", "comp=block&blockid=!!!", "comp=block",
            "comp=blocklist&blocklisttype=nope", "blockid=" + "A" * 200 + "&comp=block", "comp=foo", "restype=bar",
            "timeout=-1", "timeout=abc", "maxresults=0", "maxresults=-1", "marker=%FF", "prefix=%00", "delimiter=",
            "x=1&x=2&x=3", "&&&", "=", "a=%", "snapshot=garbage", "versionid=garbage", "sv=x&sig=y",
            "X-Amz-Algorithm=AWS4-HMAC-SHA256", "Signature=abc&Expires=1&AWSAccessKeyId=x", "response-content-type=%0Ax",
            "response-content-disposition=" + "a" * 5000, "select&select-type=2", "torrent", "restore",
            "website", "logging", "notification", "replication", "accelerate", "requestPayment", "ownershipControls",
            "publicAccessBlock", "analytics&id=1", "metrics&id=x", "inventory", "intelligent-tiering",
            "x-id=PutObject", "partNumber=1", "uploadId=" + self.upload_id, "versioning&uploads&delete",
            "comp=appendblock&comp=appendblock", "comp=page", "comp=incrementalcopy", "comp=copy&copyid=x",
            "comp=query", "comp=batch", "comp=userdelegationkey", "comp=rename", "q" * 9000 + "=1",
            "partNumber=abc", "partNumber=0", "partNumber=10001", "max-parts=-1&uploadId=x",
            "part-number-marker=abc&uploadId=" + self.upload_id, "max-parts=abc&uploadId=" + self.upload_id,
            "uploads&max-uploads=abc", "uploads&key-marker=%FF&upload-id-marker=zz", "versions&version-id-marker=zzz",
            "versions&key-marker=a&version-id-marker=" + "9" * 40, "versions&max-keys=-1", "list-type=2&start-after=%FF",
            "list-type=2&fetch-owner=maybe", "list-type=2&max-keys=1001&encoding-type=url&delimiter=%00",
            "restype=container&comp=list&maxresults=99999999999999999999", "restype=container&comp=list&marker=zz",
            "restype=container&comp=list&include=bogus,metadata", "restype=container&comp=list&showonly=deleted",
            "snapshot=2026-01-01T00:00:00.0000000Z", "comp=page", "comp=pagelist", "comp=blocklist&blocklisttype=",
            "comp=tags&versionid=x", "prefix=" + "a" * 2000, "delimiter=%C3%A9", "versionId=null", "uploadId=",
            "response-content-type=a%0D%0ASet-Cookie:%20x", "response-expires=garbage",
            "response-cache-control=%00", "rscd=a%0D%0Ab", "rsct=%0A"])
        req.query = extra if not req.query or rng.random() < 0.3 else req.query + "&" + extra

    def _header(self, req: Request, rng: random.Random) -> None:
        pool = S3_HEADERS if req.api == "s3" else BLOB_HEADERS
        name = rng.choice(pool)
        value = rng.choice(BAD_HEADER_VALUES + BAD_DATES[:4] + BAD_RANGES[:4] + BAD_LENGTHS[:3] +
                           [f"/{S3_CANARY_BUCKET}/c1", f"{S3_CANARY_BUCKET}/c1?versionId=x", "REPLACE", "COPY",
                            "AES256", "aws:kms", "GOVERNANCE", "COMPLIANCE", "2099-01-01T00:00:00Z", "ON",
                            "public-read-write", "a=b&c=d", "a=" + "b" * 300, "base64", "100-continue",
                            "CRC32", "x-amz-checksum-crc32", "bytes 0-1/2", "BlockBlob", "PageBlob", "AppendBlob",
                            "http://127.0.0.1:1/x", f"http://{self.blob_host()}/{self.t.account_name}/"
                            f"{BLOB_CANARY_CONTAINER}/c1", "Hot", "Archive", "acquire", "-5"])
        req.set_header(name, value)

    def _huge_header(self, req: Request, rng: random.Random) -> None:
        size = rng.choice([8000, 30000, 60000, 70000, 200000])
        if rng.random() < 0.5:
            req.headers.append((f"x-{'amz' if req.api == 's3' else 'ms'}-meta-huge", "v" * size))
        else:
            req.headers += [(f"x-fz-{i}", "y" * 50) for i in range(size // 60)]

    def _date(self, req: Request, rng: random.Random) -> None:
        name = rng.choice(["x-amz-date", "Date"] if req.api == "s3" else ["x-ms-date", "Date"])
        req.set_header(name, rng.choice(BAD_DATES))

    def _range(self, req: Request, rng: random.Random) -> None:
        req.set_header(rng.choice(["Range", "x-ms-range", "x-amz-copy-source-range", "x-ms-source-range"]),
                       rng.choice(BAD_RANGES))

    def _version(self, req: Request, rng: random.Random) -> None:
        if req.api == "blob":
            req.set_header("x-ms-version", rng.choice(BAD_VERSIONS))
        else:
            req.set_header("x-amz-content-sha256", rng.choice(BAD_SHA))

    def _xml(self, req: Request, rng: random.Random) -> None:
        root = rng.choice(["CompleteMultipartUpload", "Delete", "AccessControlPolicy", "Tagging", "BlockList",
                           "SignedIdentifiers", "StorageServiceProperties", "Tags", "CORSConfiguration",
                           "LifecycleConfiguration", "VersioningConfiguration", "Retention", "LegalHold"])
        choice = rng.randrange(12)
        if choice == 0:
            req.body = req.body[:rng.randint(0, max(0, len(req.body) - 1))] if req.body else b"<"
        elif choice == 1:
            req.body = _xml_bomb()
        elif choice == 2:
            req.body = _xxe(root)
        elif choice == 3:
            req.body = _deep(root, rng.choice([100, 1000, 20000]))
        elif choice == 4:
            req.body = (f"<CompleteMultipartUpload{XML_NS}>" + "".join(
                f"<Part><PartNumber>{rng.choice([n, -n, 0, 10001, 99999999999999999999])}</PartNumber>"
                f"<ETag>{rng.choice(BAD_ETAGS)}</ETag></Part>"
                for n in range(rng.choice([2, 100, 10001]))) + "</CompleteMultipartUpload>").encode()
        elif choice == 5:
            req.body = (f"<Delete{XML_NS}>" + "".join(
                f"<Object><Key>{rng.choice(BAD_KEYS)}</Key>"
                f"<VersionId>{rng.choice(['', 'x', 'null'])}</VersionId></Object>"
                for _ in range(rng.choice([0, 2, 1001, 5000]))) + "</Delete>").encode()
        elif choice == 6:
            req.body = ("<BlockList>" + "".join(f"<Latest>{rng.choice(['!!', '', 'QUFB', 'A' * 200, '====', 'Zm9v'])}"
                                                "</Latest>" for _ in range(rng.choice([1, 50, 60000]))) +
                        "</BlockList>").encode()
        elif choice == 7:
            req.body = rng.choice([b"{", b"[]", b"null", b'{"Statement": "x"}', b'{"Version": "2012-10-17", '
                                   b'"Statement": [{"Effect": "Allow", "Principal": "*", "Action": 5}]}',
                                   b'{"a":' * 5000 + b"1" + b"}" * 5000, b'{"Statement":[' + b'{},' * 10000 + b"{}]}",
                                   json.dumps({"Version": "2012-10-17", "Statement": [{
                                       "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                       "Resource": "arn:aws:s3:::*", "Condition": {"Bogus": {"x": "y"}}}]}).encode()])
        elif choice == 8:
            req.body = rng.randbytes(rng.choice([1, 100, 4096]))
        elif choice == 9:
            req.body = (f'<?xml version="1.0" encoding="{rng.choice(["utf-16", "ebcdic", "x", "utf-8"])}"?>'
                        f"<{root}{XML_NS}><a>\udcff</a></{root}>").encode("utf-8", "surrogateescape")
        elif choice == 10:
            req.body = (f"<{root}{XML_NS}>" + "<Tag><Key>k</Key><Value>v</Value></Tag>" * rng.choice([11, 100000])
                        + f"</{root}>").encode()
        else:
            req.body = f"<{root} xmlns:x='urn:x'><x:Foo/><![CDATA[]]>]]><!-- --><?pi x?></{root}>".encode()
        if rng.random() < 0.5:
            req.drop_header("Content-MD5")

    def _body_size(self, req: Request, rng: random.Random) -> None:
        req.body = rng.choice([b"", b"x", rng.randbytes(1 << 20), b"\x00" * 300000])

    MUTATIONS: list[Callable] = [_method, _path, _path, _query, _query, _header, _header, _header, _huge_header,
                                 _date, _range, _range, _version, _xml, _xml, _xml, _body_size]

    # post-signing damage: framing and signatures -----------------------------------------------

    def damage(self, req: Request, rng: random.Random) -> str:
        choice = rng.randrange(22)
        if choice == 0:
            auth = req.header("Authorization") or ""
            req.set_header("Authorization", auth[:-1] + ("0" if auth[-1:] != "0" else "1"))
            return "tamper-signature"
        if choice == 1:
            req.set_header("Authorization", rng.choice([
                "AWS4-HMAC-SHA256", "AWS4-HMAC-SHA256 Credential=", "AWS4-HMAC-SHA256 Credential=a/b/c/d/e, "
                "SignedHeaders=host, Signature=00", "AWS x:y", "AWS :", "SharedKey x", "SharedKey :", "Bearer x",
                "SharedKeyLite " + self.t.account_name + ":AAAA", "AWS4-HMAC-SHA256 Credential=" +
                self.t.access_key + "/20261204/us-east-1/s3/aws4_request,SignedHeaders=,Signature=" + "0" * 64,
                "AWS4-HMAC-SHA256 " + "Credential=x," * 2000, "\x00", "SharedKey " + "a" * 5000 + ":b"]))
            return "garbage-authorization"
        if choice == 2:
            for k, v in list(req.headers):
                if k.lower() in ("x-amz-date", "x-ms-date"):
                    req.headers.append((k, v))
            req.headers.append(("Authorization", req.header("Authorization") or "x"))
            return "duplicate-auth-headers"
        if choice == 3:
            req.headers.append((rng.choice(["x-amz-acl", "x-amz-meta-late", "x-ms-meta-late", "Content-Type",
                                            "x-amz-grant-full-control", "x-ms-blob-public-access"]), "public-read"))
            return "header-after-signing"
        if choice == 4:
            req.body = req.body + b"!" if req.body else b"swapped"
            return "body-swapped"
        if choice == 5:
            req.framing = "chunked"
            return "http-chunked"
        if choice == 6:
            cl = str(len(req.body))
            req.framing = "none"
            req.half_close = True
            req.headers += [("Content-Length", cl), ("Transfer-Encoding", rng.choice(["chunked", "gzip", "chunked, x"]))]
            return "cl-and-te"
        if choice == 7:
            req.framing = "none"
            req.half_close = True
            req.headers += [("Content-Length", rng.choice(BAD_LENGTHS))]
            return "bad-content-length"
        if choice == 8:
            req.framing = "none"
            req.half_close = True
            req.headers += [("Content-Length", str(len(req.body))), ("Content-Length", str(len(req.body) + 1))]
            return "two-content-lengths"
        if choice == 9:
            raw = req.encode(self.s3_host())
            req.truncate = rng.randint(1, max(1, len(raw) - 1))
            return "truncated"
        if choice == 10:
            req.framing = "none"
            req.half_close = True
            req.headers.append(("Transfer-Encoding", "chunked"))
            req.body = rng.choice([b"zz\r\nabc\r\n0\r\n\r\n", b"-1\r\n\r\n", b"ffffffffffffffffffff\r\nx",
                                   b"5\r\nabc\r\n0\r\n\r\n", b"3\r\nabc", b"0\r\n", b"1;" + b"x" * 70000 + b"\r\na\r\n0\r\n\r\n",
                                   b"3\r\nabc\r\n0\r\nTrailer: " + b"x" * 10 + b"\r\n\r\n"])
            return "bad-http-chunks"
        if choice == 11:
            req.headers.append(("Expect", "100-continue"))
            return "expect-continue"
        if choice == 12:
            req.headers = [(k, v) for k, v in req.headers if k.lower() != "authorization"]
            return "anonymous"
        if choice == 13:
            req.headers.append((rng.choice(["Bad Header", "x:y", "\x00h", "é", ""]), "v"))
            return "bad-header-name"
        if choice == 14:
            req.headers.append(("X-Forwarded-For", rng.choice(["10.0.0.1", "garbage", "::1, 1.2.3.4", "a" * 1000])))
            return "forwarded"
        if choice == 15:
            req.set_header("Host", rng.choice(["", "evil.example", f"{S3_CANARY_BUCKET}.localhost", "a" * 300,
                                               "127.0.0.1:99999", "[::1", "\x00"]))
            return "host"
        if choice == 16:
            second = Request(req.api, "GET", req.path, headers=[("Connection", "close")])
            req.headers.append(("Connection", "keep-alive"))
            req.body += second.encode(self.s3_host())
            req.label = "pipeline " + req.label
            return "pipelined"
        if choice == 17:
            req.headers.insert(0, ("Transfer-Encoding", "identity"))
            return "te-identity"
        if choice == 18:
            req.method = req.method.lower()
            return "lower-method-after-signing"
        if choice == 19:
            req.query = (req.query + "&" if req.query else "") + rng.choice(["acl", "x-id=1", "versionId=null"])
            return "query-after-signing"
        if choice == 20:
            req.path = req.path + "/"
            return "path-after-signing"
        req.headers.append(("Content-Encoding", rng.choice(["aws-chunked", "gzip", "br", "aws-chunked,gzip"])))
        return "content-encoding"

    # assembly ----------------------------------------------------------------------------------

    def request(self, index: int) -> Request:
        rng = random.Random(f"{self.seed}:{index}")
        api = "s3" if rng.random() < 0.55 else "blob"
        req = self.s3_template(rng) if api == "s3" else self.blob_template(rng)
        tags = [req.label] + self.mutate(req, rng)
        auth = rng.random()
        try:
            if api == "s3":
                tags.append(self._sign_s3(req, rng, auth))
            else:
                tags.append(self._sign_blob(req, rng, auth))
        except Exception as exc:  # noqa: BLE001 - a mutation the signer itself cannot express: send it unsigned
            tags.append(f"unsignable({type(exc).__name__})")
        if rng.random() < 0.25:
            tags.append(self.damage(req, rng))
        req.label = " ".join(tags)
        return req

    def _sign_s3(self, req: Request, rng: random.Random, auth: float) -> str:
        host = self.s3_host()
        alt = rng.random() < 0.15
        ak = self.t.alt_access_key if alt else self.t.access_key
        sk = self.t.alt_secret_key if alt else self.t.secret_key
        who = "alt" if alt else "admin"
        if auth < 0.55:
            payload = req.header("x-amz-content-sha256")
            sign_s3(req, host, ak, sk, payload=payload if payload else
                    rng.choice([None, None, "UNSIGNED-PAYLOAD"]))
            return f"sigv4-{who}"
        if auth < 0.7 and req.method in ("PUT", "POST"):
            # aws-chunked with valid chunk signatures (the mutation then may damage them)
            decoded = req.body
            req.set_header("x-amz-decoded-content-length", str(len(decoded)))
            req.set_header("Content-Encoding", "aws-chunked")
            sign_s3(req, host, ak, sk, payload="STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
            auth_header = req.header("Authorization") or ""
            seed_sig = auth_header.rsplit("Signature=", 1)[-1]
            stream = aws_chunked(decoded, seed_sig, req.header("X-Amz-Date") or "", sk,
                                 chunk=rng.choice([8192, 65536, 1]) if len(decoded) < 200 else 8192)
            what = rng.randrange(8)
            if what == 1:
                stream = stream.replace(b"chunk-signature=", b"chunk-signature=0", 1)
            elif what == 2:
                stream = stream[:rng.randint(0, len(stream))]
            elif what == 3:
                stream = re.sub(rb"^[0-9a-f]+;", rng.choice([b"zz;", b"-1;", b"ffffffffffffffff;", b"10000000;"]),
                                stream, count=1)
            elif what == 4:
                req.set_header("x-amz-decoded-content-length", rng.choice(["0", "-1", "x", str(len(decoded) + 1)]))
            elif what == 5:
                stream = stream.replace(b"\r\n", b"\n", 2)
            req.body = stream
            req.half_close = what in (2, 3, 4, 5)  # a stream that promises more than it sends
            return f"aws-chunked-{who}-{what}"
        if auth < 0.8:
            sign_s3(req, host, ak, sk, presign=rng.choice([60, 3600, 604800]))
            if rng.random() < 0.4:
                req.query = rng.choice([
                    lambda q: q.replace("X-Amz-Expires=", "X-Amz-Expires=9"),
                    lambda q: q.replace("X-Amz-Signature=", "X-Amz-Signature=f"),
                    lambda q: q.replace("X-Amz-Date=", "X-Amz-Date=1"),
                    lambda q: q.replace("us-east-1", "eu-west-9"),
                    lambda q: q + "&X-Amz-Signature=00",
                    lambda q: q.replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=host%3Bx-amz-acl"),
                ])(req.query)
            return f"presigned-{who}"
        if auth < 0.85:
            sign_s3(req, host, ak, sk, region=rng.choice(["eu-west-1", "", "us-east-1\n"]))
            return "sigv4-wrong-region"
        if auth < 0.9:
            exp = int(time.time()) + rng.choice([60, -60, 10**9])
            req.query = (req.query + "&" if req.query else "") + (
                f"AWSAccessKeyId={ak}&Expires={exp}&Signature={quote(base64.b64encode(rng.randbytes(20)).decode())}")
            return "v2-presigned-bad"
        if auth < 0.95:
            sign_s3(req, host, "NOSUCHKEY", "x")
            return "sigv4-unknown-key"
        return "anonymous"

    def _sign_blob(self, req: Request, rng: random.Random, auth: float) -> str:
        host = self.blob_host()
        if not req.header("x-ms-version"):
            req.headers.append(("x-ms-version", "2025-11-05"))
        if not req.header("x-ms-date"):
            req.headers.append(("x-ms-date", format_datetime(datetime.now(UTC), usegmt=True)))
        if auth < 0.6:
            sign_blob(req, host, self.t.account_name, self.t.account_key)
            return "sharedkey"
        if auth < 0.85:
            parts = req.path.split("/")
            container = unquote_to_bytes(parts[2]).decode(errors="replace") if len(parts) > 2 else BLOB_WORK_CONTAINER
            blob = unquote_to_bytes("/".join(parts[3:])).decode(errors="replace") if len(parts) > 3 else None
            perm = "".join(rng.sample("racwdlt", rng.randint(1, 4)))
            sas = blob_sas(self.t, container or BLOB_WORK_CONTAINER, blob if rng.random() < 0.7 else None, perm,
                           expiry_s=rng.choice([3600, -3600]))
            if rng.random() < 0.4:
                sas = rng.choice([
                    lambda s: s.replace("sp=", "sp=racwdl&x="),
                    lambda s: s.replace("sig=", "sig=A"),
                    lambda s: s.replace("se=", "se=2099"),
                    lambda s: s.replace("sv=", "sv=1"),
                    lambda s: s + "&sip=garbage",
                    lambda s: s + "&sip=::1-::2",
                    lambda s: s + "&spr=ftp",
                    lambda s: s.replace("sr=b", "sr=c").replace("sr=c", rng.choice(["sr=b", "sr=x", "sr=bs"])),
                    lambda s: s + "&skoid=x&sktid=y",
                    lambda s: s + "&ses=scope",
                    lambda s: s + "&si=nope",
                ])(sas)
            req.query = (req.query + "&" if req.query else "") + sas
            return f"sas-{perm}"
        if auth < 0.92:
            req.set_header("Authorization", f"SharedKey {self.t.account_name}:"
                           + base64.b64encode(rng.randbytes(32)).decode())
            return "sharedkey-random"
        return "anonymous"


# --- canaries ------------------------------------------------------------------------------------


class Canaries:
    """Objects whose bytes and ETag no rejected request may change."""

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.t = gen.t
        self.expected: dict[tuple[str, str], tuple[bytes, str]] = {}

    def _s3(self, method: str, path: str, query: str = "", body: bytes = b"",
            headers: list[tuple[str, str]] | None = None) -> Response:
        req = Request("s3", method, path, query, list(headers or []), body)
        sign_s3(req, self.gen.s3_host(), self.t.access_key, self.t.secret_key)
        return send(self.t.host, self.t.s3_port, req, 60)

    def _blob(self, method: str, path: str, query: str = "", body: bytes = b"",
              headers: list[tuple[str, str]] | None = None) -> Response:
        req = Request("blob", method, path, query, [("x-ms-version", "2025-11-05"),
                                                    ("x-ms-date", format_datetime(datetime.now(UTC), usegmt=True)),
                                                    *(headers or [])], body)
        sign_blob(req, self.gen.blob_host(), self.t.account_name, self.t.account_key)
        return send(self.t.host, self.t.blob_port, req, 60)

    def setup(self) -> None:
        for bucket in (S3_CANARY_BUCKET, S3_WORK_BUCKET):
            self._s3("PUT", f"/{bucket}")
        for container in (BLOB_CANARY_CONTAINER, BLOB_WORK_CONTAINER):
            self._blob("PUT", f"/{self.t.account_name}/{container}", "restype=container")
        self._s3("PUT", f"/{S3_WORK_BUCKET}/k", body=b"0123456789" * 10)
        self._s3("PUT", f"/{S3_WORK_BUCKET}/src", body=b"src")
        self._blob("PUT", f"/{self.t.account_name}/{BLOB_WORK_CONTAINER}/c1", body=b"blob-work",
                   headers=[("x-ms-blob-type", "BlockBlob")])
        self.reopen()
        for key in CANARY_KEYS:
            self.restore("s3", key)
            self.restore("blob", key)

    def reopen(self) -> None:
        """Undo what the fuzz may legitimately have done to keep the owner out of the canaries: a
        deleted bucket, a policy Deny, an ACL without the owner's grant."""
        for bucket in (S3_CANARY_BUCKET, BLOB_CANARY_CONTAINER):
            self._s3("PUT", f"/{bucket}")
            self._s3("DELETE", f"/{bucket}", "policy")
            self._s3("PUT", f"/{bucket}", "acl", headers=[("x-amz-acl", "private")])

    def _object_path(self, api: str, key: str) -> str:
        return f"/{S3_CANARY_BUCKET if api == 's3' else BLOB_CANARY_CONTAINER}/{Generator.enc(key)}"

    def restore(self, api: str, key: str) -> None:
        data = hashlib.sha256(f"{api}:{key}".encode()).digest() * 100
        if api == "s3":
            resp = self._s3("PUT", self._object_path(api, key), body=data)
        else:
            path = f"/{self.t.account_name}/{BLOB_CANARY_CONTAINER}/{Generator.enc(key)}"
            self._blob("PUT", path, "comp=lease", headers=[("x-ms-lease-action", "break"),
                                                          ("x-ms-lease-break-period", "0")])
            resp = self._blob("PUT", path, body=data, headers=[("x-ms-blob-type", "BlockBlob")])
        if resp.status not in (200, 201):
            why = [f"{sub}: {self._s3('GET', self._object_path(api, key), sub).body[:400]!r}"
                   for sub in ("retention", "legal-hold", "acl")]
            raise RuntimeError(f"cannot write canary {api}:{key}: {resp.status} {resp.body[:300]!r}\n" +
                               "\n".join(why))
        self.expected[(api, key)] = (data, resp.headers.get("etag", ""))

    def read(self, api: str, key: str) -> tuple[int, bytes, str]:
        self._s3("PUT", self._object_path(api, key), "acl", headers=[("x-amz-acl", "private")])
        if api == "s3":
            resp = self._s3("GET", self._object_path(api, key))
        else:
            resp = self._blob("GET", f"/{self.t.account_name}/{BLOB_CANARY_CONTAINER}/{Generator.enc(key)}")
        return resp.status, resp.body, resp.headers.get("etag", "")

    def check(self, touched: set[tuple[str, str]]) -> list[str]:
        """Compare every canary no 2xx request wrote; restore the ones that were written."""
        problems = []
        self.reopen()
        for (api, key), (data, etag) in list(self.expected.items()):
            if (api, key) in touched:
                self.restore(api, key)
                continue
            status, body, got_etag = self.read(api, key)
            if status != 200 or body != data or got_etag != etag:
                problems.append(f"canary {api}:{key} changed by a rejected request: status {status}, "
                                f"{len(body)} bytes (expected {len(data)}), etag {got_etag} (expected {etag})")
                self.restore(api, key)
        return problems


# --- the runner ----------------------------------------------------------------------------------


def children(pid: int) -> set[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return {int(p) for p in f.read().split()}
    except OSError:
        return set()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@dataclass
class Report:
    seed: int
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    server_errors: int = 0       # 5xx other than 503/501
    hangs: int = 0
    worker_deaths: int = 0
    canary_changes: int = 0
    late_ready: int = 0          # readiness probes that answered 200 only after a first "not ready"
    seconds: float = 0.0

    def summary(self) -> dict:
        return {"seed": self.seed, "requests": self.requests, "seconds": round(self.seconds, 1),
                "server_errors_5xx": self.server_errors, "hangs": self.hangs, "worker_deaths": self.worker_deaths,
                "canary_changes": self.canary_changes, "late_ready": self.late_ready,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())}, "failures": len(self.failures)}


class Fuzzer:
    def __init__(self, target: Target, seed: int, *, timeout: float = 20.0, batch: int = 100,
                 log: Callable[[str], None] = print, progress: int = 0) -> None:
        self.t = target
        self.gen = Generator(target, seed)
        self.canaries = Canaries(self.gen)
        self.timeout = timeout
        self.batch = batch
        self.log = log
        self.progress = progress  # print a line every this many requests (0: never)
        self.report = Report(seed)
        self.workers = children(target.master_pid) if target.master_pid else set()
        self._probes: dict[int, http.client.HTTPConnection] = {}

    def new_upload(self) -> None:
        resp = self.canaries._s3("POST", f"/{S3_WORK_BUCKET}/{self.gen.upload_key}", "uploads")
        m = re.search(rb"<UploadId>([^<]+)</UploadId>", resp.body)
        self.gen.upload_id = m.group(1).decode() if m else "none"

    def ready(self, port: int) -> bool:
        """Whether the server answers its readiness probe with 200 within ``self.timeout`` seconds.
        One "not ready" is not a failure: the probe's own check of the metadata and drives answers 503
        when they take over 2 s (gateway/health.py), as they may while another process floods the
        disk; a wedged or dead worker still fails, once the deadline passes."""
        deadline = time.monotonic() + self.timeout
        tries = 0
        while True:
            tries += 1
            if self._probe(port):
                self.report.late_ready += tries > 1
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)  # between probes of a server that said "not ready" (bounded by the deadline)

    def _probe(self, port: int) -> bool:
        for _ in range(2):  # a keep-alive connection the server closed is retried once
            conn = self._probes.get(port) or http.client.HTTPConnection(self.t.host, port, timeout=self.timeout)
            self._probes[port] = conn
            try:
                conn.request("GET", "/minio/health/ready")
                resp = conn.getresponse()
                resp.read()
                return resp.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                self._probes.pop(port, None)
        return False

    def fail(self, what: str, req: Request | None, index: int | None) -> None:
        host = f"{self.t.host}:{self.t.s3_port if req and req.api == 's3' else self.t.blob_port}"
        text = f"[seed {self.gen.seed} request {index}] {what}"
        if req is not None:
            text += f"\n  {req.label}\n  {req.show(host)}"
        self.report.failures.append(text)
        self.log(text)

    def run(self, count: int, *, start: int = 0) -> Report:
        began = time.monotonic()
        self.canaries.setup()
        self.new_upload()
        touched: set[tuple[str, str]] = set()
        batch_log: list[str] = []  # this batch's requests that named a canary, for a failure's report
        for index in range(start, start + count):
            req = self.gen.request(index)
            port = self.t.s3_port if req.api == "s3" else self.t.blob_port
            try:
                resp = send(self.t.host, port, req, self.timeout)
            except Hang as exc:
                self.report.hangs += 1
                self.fail(f"hang: {exc}", req, index)
                resp = Response(0, {}, b"")
            except (ConnectionError, OSError) as exc:
                self.fail(f"connection failed: {exc!r}", req, index)
                resp = Response(0, {}, b"")
            self.report.requests += 1
            self.report.statuses[resp.status] = self.report.statuses.get(resp.status, 0) + 1
            for status in [resp.status, *resp.more_statuses]:
                if status >= 500 and status not in ALLOWED_5XX:
                    self.report.server_errors += 1
                    self.fail(f"status {status}: {resp.body[:500]!r}", req, index)
            # A write answered 2xx may change what it names; so may one whose answer never came
            # (a connection the framing made the server close after the handler ran).
            if (200 <= resp.status < 300 or resp.status == 0) and req.method.upper() in MUTATING:
                touched |= self._written(req)
            if "canary" in req.target:
                batch_log.append(f"  {index} -> {resp.status}: {req.label}: {req.method} {req.target[:300]}")
            self._check_alive(req, index)
            if (index - start + 1) % self.batch == 0 or index == start + count - 1:
                for problem in self.canaries.check(touched):
                    self.report.canary_changes += 1
                    self.fail(problem + "\n" + "\n".join(batch_log), None, index)
                touched, batch_log = set(), []
                self.new_upload()
            if self.progress and (index - start + 1) % self.progress == 0:
                r = self.report
                self.log(f"{r.requests} requests in {time.monotonic() - began:.0f} s: {r.server_errors} 5xx, "
                         f"{r.hangs} hangs, {r.worker_deaths} worker deaths, {r.canary_changes} canary changes")
        self.report.seconds = time.monotonic() - began
        return self.report

    def _written(self, req: Request) -> set[tuple[str, str]]:
        """The canaries a request answered 2xx may have changed: the name it addresses, or, for a
        request on the canary bucket/container itself (DeleteObjects, DeleteContainer), all."""
        parts = req.path.split("/")
        if req.api == "s3":
            bucket, key = (parts[1] if len(parts) > 1 else ""), "/".join(parts[2:])
            canary_bucket = S3_CANARY_BUCKET
        else:
            bucket, key = (parts[2] if len(parts) > 2 else ""), "/".join(parts[3:])
            canary_bucket = BLOB_CANARY_CONTAINER
        if unquote_to_bytes(bucket).decode(errors="replace").split("?")[0] != canary_bucket:
            if "canary" in req.target or (req.api == "s3" and req.header("Host") and "canary" in req.header("Host")):
                return {(req.api, k) for k in CANARY_KEYS}  # an odd spelling of the canary bucket: be safe
            return set()
        name = unquote_to_bytes(key).decode(errors="replace")
        if name in CANARY_KEYS:
            return {(req.api, name)}
        return {(req.api, k) for k in CANARY_KEYS}

    def _check_alive(self, req: Request, index: int) -> None:
        pid = self.t.master_pid
        if pid is not None:
            if not alive(pid):
                self.report.worker_deaths += 1
                self.fail("the server process exited", req, index)
                raise SystemExit(1)
            now = children(pid)
            if self.workers and now != self.workers:
                self.report.worker_deaths += len(self.workers - now)
                self.fail(f"workers changed: {sorted(self.workers)} -> {sorted(now)}", req, index)
                self.workers = now
        port = self.t.s3_port if req.api == "s3" else self.t.blob_port
        if not self.ready(port):
            self.fail("readiness probe did not answer 200", req, index)


# --- a server of its own, for the long run -------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data: Path, log_path: Path) -> tuple[subprocess.Popen, Target]:
    from exastor.gateway.health import wait_ready

    t = Target(_free_port(), _free_port(), "FZADMIN", "fuzz-admin-secret-0123456789", "FZALT",
               "fuzz-alt-secret-0123456789", "fuzzacct",
               base64.b64encode(hashlib.sha512(b"fuzz").digest()).decode())
    env = dict(os.environ)
    env.pop("EXASTOR_CONFIG", None)
    cli = [sys.executable, "-m", "exastor.cli"]
    log = open(log_path, "ab")  # noqa: SIM115 - the server's log for the run's lifetime
    proc = subprocess.Popen([*cli, "serve", "--data", str(data), "--s3-port", str(t.s3_port), "--blob-port",
                             str(t.blob_port), "--access-key", t.access_key, "--secret-key", t.secret_key,
                             "--account-name", t.account_name, "--account-key", t.account_key],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    wait_ready([f"http://127.0.0.1:{t.s3_port}", f"http://127.0.0.1:{t.blob_port}"], timeout=120,
               alive=lambda: proc.poll() is None)
    subprocess.run([*cli, "user", "add", "alt", "--data", str(data), "--access-key", t.alt_access_key,
                    "--secret-key", t.alt_secret_key], check=True, capture_output=True, env=env, timeout=120)
    t.master_pid = proc.pid
    return proc, t


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", type=int, default=0, help="index of the first request")
    p.add_argument("--only", type=int, help="print request N of the seed and send it alone")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds a request may take before it is a hang")
    p.add_argument("--out", type=Path, help="write the summary as JSON here")
    p.add_argument("--progress", type=int, default=5000, help="a progress line every N requests (0: none)")
    args = p.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    with tempfile.TemporaryDirectory(prefix="exastor-fuzz-") as tmp:
        proc, target = start_server(Path(tmp) / "data", Path(tmp) / "server.log")
        try:
            fuzzer = Fuzzer(target, args.seed, timeout=args.timeout, progress=args.progress,
                            log=lambda line: print(line, flush=True))
            if args.only is not None:
                fuzzer.canaries.setup()
                fuzzer.new_upload()
                req = fuzzer.gen.request(args.only)
                print(req.label)
                print(req.show(f"127.0.0.1:{target.s3_port if req.api == 's3' else target.blob_port}", 20000))
                resp = send(target.host, target.s3_port if req.api == "s3" else target.blob_port, req, args.timeout)
                print(resp.status, resp.headers, resp.body[:2000])
                return 0
            report = fuzzer.run(args.requests, start=args.start)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            server_log = (Path(tmp) / "server.log").read_text(errors="replace")
        tracebacks = server_log.count("Traceback")
    summary = report.summary() | {"tracebacks_in_server_log": tracebacks}
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    if tracebacks:
        print(server_log[server_log.find("Traceback") - 2000:][:8000])
    return 1 if report.failures or tracebacks else 0


if __name__ == "__main__":
    sys.exit(main())
