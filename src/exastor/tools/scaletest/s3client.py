"""A small asynchronous S3 client: just what the scale test needs, and cheap per request.

Why not boto3/aiobotocore: at thousands of emulated accelerators the client's
own CPU is the limit, and botocore spends hundreds of microseconds per request
building, signing and parsing. Here one request is one SigV4 HMAC chain (the
signing key is cached per day) and an aiohttp call over a bounded connection
pool; response bodies are counted and dropped, never copied or kept.

Path-style addressing (``http://host:port/bucket/key``) so any endpoint works
without DNS tricks.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import hmac
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

from exastor.tools.scaletest.dataset import PartMaker, Session

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_RETRYABLE_STATUS = {500, 502, 503, 504}


class S3Error(Exception):
    """A request the server answered with an error status."""

    def __init__(self, status: int, code: str, message: str, key: str = "") -> None:
        super().__init__(f"HTTP {status} {code}: {message} ({key})")
        self.status = status
        self.code = code


def _uri_encode(text: str, safe: str) -> str:
    # SigV4's encoding: unreserved characters stay, everything else is %XX (uppercase).
    return quote(text, safe=safe + "-_.~")


@dataclass
class SigV4Signer:
    """AWS Signature Version 4 for S3, header form.

    Only ``host``, ``x-amz-content-sha256`` and ``x-amz-date`` are signed: the
    smallest set S3 requires, so signing stays one canonical string per request.
    """

    access_key: str
    secret_key: str
    region: str = "us-east-1"
    service: str = "s3"

    def __post_init__(self) -> None:
        self._key_date = ""
        self._key = b""
        self._date_second = -1
        self._amz_date = ""

    def _signing_key(self, date: str) -> bytes:
        if date != self._key_date:  # the derived key changes once a day
            k = hmac.new(("AWS4" + self.secret_key).encode(), date.encode(), hashlib.sha256).digest()
            for part in (self.region, self.service, "aws4_request"):
                k = hmac.new(k, part.encode(), hashlib.sha256).digest()
            self._key_date, self._key = date, k
        return self._key

    def sign(
        self,
        method: str,
        host: str,
        path: str,
        query: dict[str, str],
        payload_hash: str,
        now: _dt.datetime | None = None,
    ) -> dict[str, str]:
        """Headers to add to the request: x-amz-date, x-amz-content-sha256, Authorization.

        ``path`` is the already-encoded request path, exactly as sent.
        """
        if now is None:
            second = int(time.time())
            if second != self._date_second:  # strftime once a second, not once a request
                self._date_second = second
                self._amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
            amz_date = self._amz_date
        else:
            amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        date = amz_date[:8]
        canonical_query = "&".join(
            f"{_uri_encode(k, '')}={_uri_encode(v, '')}" for k, v in sorted(query.items())
        )
        canonical_headers = f"host:{host}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{amz_date}\n"
        signed_headers = "host;x-amz-content-sha256;x-amz-date"
        canonical_request = "\n".join(
            (method, path, canonical_query, canonical_headers, signed_headers, payload_hash)
        )
        scope = f"{date}/{self.region}/{self.service}/aws4_request"
        string_to_sign = "\n".join(
            ("AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest())
        )
        signature = hmac.new(self._signing_key(date), string_to_sign.encode(), hashlib.sha256).hexdigest()
        return {
            "x-amz-date": amz_date,
            "x-amz-content-sha256": payload_hash,
            "Authorization": (
                f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                f"SignedHeaders={signed_headers}, Signature={signature}"
            ),
        }


def _error_from_body(status: int, body: bytes, key: str) -> S3Error:
    code, message = "Unknown", body[:200].decode(errors="replace")
    try:
        root = ET.fromstring(body)
        code = root.findtext("Code") or code
        message = root.findtext("Message") or message
    except ET.ParseError:
        pass
    return S3Error(status, code, message, key)


def _xml_text(body: bytes, tag: str) -> str:
    """First element named ``tag`` in an S3 XML answer, namespace or not."""
    for element in ET.fromstring(body).iter():
        if element.tag == tag or element.tag.endswith("}" + tag):
            return element.text or ""
    raise ValueError(f"no <{tag}> in response")


class S3Client(Session):
    """Path-style S3 over one bounded aiohttp connection pool.

    ``pool`` bounds both open connections and requests in flight: thousands of
    emulated accelerators queue for a connection instead of opening thousands.
    """

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        pool: int = 64,
        sign_payload: bool = False,
        retries: int = 3,
        read_chunk: int = 1 << 20,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"endpoint must be http(s)://host[:port], got {endpoint!r}")
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.netloc
        self.bucket = bucket
        self.signer = SigV4Signer(access_key, secret_key, region)
        self.pool = pool
        self.sign_payload = sign_payload
        self.retries = retries
        self.read_chunk = read_chunk
        self.errors = 0  # requests that failed at least once (retried or not)
        self._session: aiohttp.ClientSession | None = None

    @property
    def description(self) -> str:
        return f"{self.base}/{self.bucket}"

    async def open(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.pool, limit_per_host=self.pool, ttl_dns_cache=3600)
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
            # skip_auto_headers: no Accept-Encoding, so bodies arrive as stored, not recompressed; no
            # Content-Type, which S3 requires to be signed when present (this signer signs only host,
            # x-amz-content-sha256 and x-amz-date)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=timeout,
                auto_decompress=False,
                skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _path(self, key: str = "") -> str:
        path = "/" + _uri_encode(self.bucket, "")
        if key:
            path += "/" + _uri_encode(key, "/")
        return path

    async def _request(
        self,
        method: str,
        key: str = "",
        query: dict[str, str] | None = None,
        body: bytes | memoryview | None = None,
        headers: dict[str, str] | None = None,
        sink: bool = False,
        ok: tuple[int, ...] = (200,),
    ) -> tuple[int, dict[str, str], bytes, int]:
        """One request with retries. Returns status, headers, body (unless ``sink``), bytes read."""
        assert self._session is not None, "open() the client first"
        query = query or {}
        path = self._path(key)
        url_text = self.base + path
        if query:
            url_text += "?" + "&".join(
                f"{_uri_encode(k, '')}={_uri_encode(v, '')}" if v else _uri_encode(k, "")
                for k, v in sorted(query.items())
            )
        url = URL(url_text, encoded=True)  # sent exactly as signed
        if body is None:
            payload_hash = EMPTY_SHA256
        elif self.sign_payload:
            payload_hash = hashlib.sha256(body).hexdigest()
        else:
            payload_hash = UNSIGNED_PAYLOAD
        attempt = 0
        while True:
            send_headers = {"Host": self.host, **(headers or {})}
            send_headers.update(self.signer.sign(method, self.host, path, query, payload_hash))
            try:
                async with self._session.request(method, url, data=body, headers=send_headers) as resp:
                    if resp.status not in ok:
                        raise _error_from_body(resp.status, await resp.read(), key)
                    if sink:
                        n = 0
                        # count and drop: the scale test measures delivery, it keeps nothing
                        async for chunk in resp.content.iter_chunked(self.read_chunk):
                            n += len(chunk)
                        return resp.status, dict(resp.headers), b"", n
                    data = await resp.read()
                    return resp.status, dict(resp.headers), data, len(data)
            except (TimeoutError, aiohttp.ClientConnectionError, S3Error) as exc:
                self.errors += 1  # every failed attempt, retried or not
                if isinstance(exc, S3Error) and exc.status not in _RETRYABLE_STATUS:
                    raise
                attempt += 1
                if attempt > self.retries:
                    raise
                await asyncio.sleep(0.05 * 2**attempt)

    # -- operations the scale test uses ---------------------------------------------------

    async def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (owned by us or already there)."""
        status, _, _, _ = await self._request("HEAD", ok=(200, 404, 403))
        if status == 200:
            return
        try:
            await self._request("PUT", ok=(200,))
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    async def get(self, key: str, offset: int | None = None, length: int | None = None) -> int:
        """Read an object (or ``length`` bytes at ``offset``) and drop it; returns bytes read."""
        headers = None
        ok: tuple[int, ...] = (200,)
        if offset is not None and length is not None:
            headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
            ok = (206, 200)
        _, _, _, n = await self._request("GET", key, headers=headers, sink=True, ok=ok)
        return n

    async def get_bytes(self, key: str) -> bytes | None:
        """A small object's content, or None when it does not exist."""
        status, _, data, _ = await self._request("GET", key, ok=(200, 404))
        return data if status == 200 else None

    async def get_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes of an object from ``offset`` (fewer at its end)."""
        if length <= 0:
            return b""
        _, _, data, _ = await self._request("GET", key, headers={"Range": f"bytes={offset}-{offset + length - 1}"},
                                            ok=(206, 200))
        return data

    async def list_objects(self, prefix: str = "") -> list[tuple[str, int]]:
        """Every (key, size) under ``prefix``, in key order (ListObjectsV2, page by page)."""
        out: list[tuple[str, int]] = []
        token = ""
        for _ in range(10_000_000):  # bounded: a billion keys at 1,000 a page
            query = {"list-type": "2"}
            if prefix:
                query["prefix"] = prefix
            if token:
                query["continuation-token"] = token
            _, _, body, _ = await self._request("GET", query=query)
            root = ET.fromstring(body)
            local = {el: el.tag.rsplit("}", 1)[-1] for el in root.iter()}
            for el in root:
                if local[el] == "Contents":
                    fields = {local[c]: c.text or "" for c in el}
                    out.append((fields["Key"], int(fields["Size"])))
            truncated = next((el.text for el in root if local[el] == "IsTruncated"), "false") == "true"
            token = next((el.text or "" for el in root if local[el] == "NextContinuationToken"), "")
            if not truncated or not token:
                break
        return out

    async def put(self, key: str, data: bytes | memoryview) -> None:
        await self._request("PUT", key, body=data)

    async def delete(self, key: str) -> None:
        await self._request("DELETE", key, ok=(200, 204, 404))

    async def create_multipart(self, key: str) -> str:
        _, _, body, _ = await self._request("POST", key, query={"uploads": ""})
        return _xml_text(body, "UploadId")

    async def upload_part(self, key: str, upload_id: str, number: int, data: bytes | memoryview) -> str:
        query = {"partNumber": str(number), "uploadId": upload_id}
        _, headers, _, _ = await self._request("PUT", key, query=query, body=data)
        etag = headers.get("ETag") or headers.get("Etag") or headers.get("etag")
        if not etag:
            raise S3Error(200, "NoETag", "upload part answered without an ETag", key)
        return etag

    async def complete_multipart(self, key: str, upload_id: str, etags: Iterable[tuple[int, str]]) -> None:
        parts = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>" for n, etag in sorted(etags)
        )
        body = f'<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUpload>{parts}</CompleteMultipartUpload>'
        _, _, answer, _ = await self._request("POST", key, query={"uploadId": upload_id}, body=body.encode())
        # S3 may answer 200 with an <Error> body when completion fails late.
        if b"<Error>" in answer[:200]:
            raise _error_from_body(200, answer, key)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        await self._request("DELETE", key, query={"uploadId": upload_id}, ok=(200, 204, 404))


    async def write_object(
        self,
        key: str,
        size: int,
        part_size: int,
        make_part: PartMaker,
        parallel: int = 4,
    ) -> None:
        """Write ``size`` bytes produced part by part: one PUT when it fits a part, else multipart.

        ``make_part(index, offset, length)`` returns that part's bytes; up to
        ``parallel`` parts are made and uploaded at once.
        """
        if size <= part_size:
            await self.put(key, await make_part(0, 0, size))
            return
        upload_id = await self.create_multipart(key)
        try:
            etags = await _run_parts(size, part_size, parallel, make_part,
                                     lambda n, data: self.upload_part(key, upload_id, n, data))
            await self.complete_multipart(key, upload_id, etags)
        except BaseException:
            await asyncio.shield(self.abort_multipart(key, upload_id))
            raise

    async def read_object(self, key: str, size: int, part_size: int, parallel: int = 4) -> int:
        """Read an object back with up to ``parallel`` ranged GETs of ``part_size``; returns bytes."""
        if size <= part_size:
            return await self.get(key)
        total = 0

        async def one(index: int, offset: int, length: int) -> bytes:
            nonlocal total
            got = await self.get(key, offset, length)  # not `total += await`: lanes interleave
            total += got
            return b""

        async def ignore(n: int, data: bytes | memoryview) -> str:
            return ""

        await _run_parts(size, part_size, parallel, one, ignore)
        return total


async def _run_parts(
    size: int,
    part_size: int,
    parallel: int,
    make_part: PartMaker,
    send: Callable[[int, bytes | memoryview], Awaitable[str]],
) -> list[tuple[int, str]]:
    """Make and send parts with at most ``parallel`` in flight; (part number, result) pairs."""
    count = -(-size // part_size)
    next_index = 0
    results: list[tuple[int, str]] = []

    async def lane() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            offset = index * part_size
            length = min(part_size, size - offset)
            data = await make_part(index, offset, length)
            results.append((index + 1, await send(index + 1, data)))

    await asyncio.gather(*(lane() for _ in range(min(parallel, count))))
    return sorted(results)
