"""The drive server: a host's drives served to every gateway through the ``DriveIO`` interface.

``exastor drive-server --drive PATH... --listen HOST:PORT --key-file cluster.key``. Each drive is
addressed as ``http://HOST:PORT/NAME`` (NAME: the directory's base name, or ``NAME=PATH``). One
request is one ``DriveIO`` call (``POST /NAME/append?name=...&offset=...``, ``GET /NAME/pread?...``);
its answer is the call's result, or the errno it raised. HTTP/1.1 keep-alive (uvicorn + httptools),
blocking file calls on a thread pool so a slow fsync never stalls other requests.

What the server adds to a local drive:

- *Authentication* (drives/wire.py): every request is signed with the cluster key; unsigned, stale,
  replayed or wrongly signed requests get 401 and touch nothing. There is no open mode.
- *Signed answers*: a client believes an answer (above all "not found") only when it is signed.
- *Restarts are visible*: every answer carries the server's boot id (random per start). An
  ``fsync`` names the boot id under which its file was first written since the last fsync; if the
  server restarted in between, the writes it would cover may have died with the old process's page
  cache (a power cut) and the fsync fails - final, as a failed fsync always is - with its own code,
  ``RESTARTED`` (``ServerRestarted``), never a plain EIO: the disk did not fail, so the client must
  not mark the drive failed, while an EIO from the disk's own fsync still does.
- *Fencing*: ``append`` and ``truncate`` may carry the writer's lease ``epoch``; ``fence`` records a
  new one. The drive (``LocalDrive``) keeps the highest epoch in the file and refuses older ones
  (``ESTALE``, HTTP 409), so a partitioned gateway cannot write into a segment another one sealed.
- ``append`` with ``sync=1`` answers only after the file's fsync (one round trip for a caller that
  wants a durable append); ``write_at`` is durable when it answers (O_DSYNC), ``put`` publishes
  write-once (temporary file, fsync, link, directory fsync).

- *Traffic counters*: per operation, requests answered and body bytes received and sent (HTTP
  headers not included), since the server started; ``GET /NAME/traffic`` (signed, like every
  request) answers them as JSON for the whole server (``RemoteDrive.traffic``). Benchmarks read them
  to count the bytes a write or a seal puts on the network (bench/cluster_roles.py).

Nothing is cached here that the drive does not already cache (``LocalDrive``'s descriptors); fault
rules (``EXASTOR_FAULTS``) apply to served drives as to local ones, so fault tests reach through.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import secrets
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from exastor.drives.base import DriveIO, FsyncFailed, ServerRestarted
from exastor.drives.local import DIRECT_ALIGN, DIRECT_MIN, aligned_buffer
from exastor.drives.wire import (
    EMPTY_DIGEST,
    H_ANSWER,
    H_BODY,
    H_ERRNO,
    H_FINAL,
    MAX_BODY,
    STATUS_OF_ERRNO,
    ReplayGuard,
    body_digest,
    check_request,
    errno_name,
    sign_answer,
)

log = logging.getLogger("exastor.drive_server")

H_BOOT = "x-exastor-boot"
# A digests request reads at most this much (one worker thread for a bounded time) in blocks of at
# least this size (so the answer is at most 1/512 of the bytes read).
MAX_DIGEST_RANGE = 64 << 20
MIN_DIGEST_BLOCK = 4096
UNAVAILABLE = "UNAVAILABLE"   # the errno header of an answer that says "this drive is not served here"
RESTARTED = "RESTARTED"       # ... that says "this server restarted after the writes this fsync would cover"


class Answer(Exception):
    """A refusal that is not a drive error (bad request, unknown drive)."""

    def __init__(self, status: int, err: str, message: str) -> None:
        super().__init__(message)
        self.status, self.err = status, err


def _int(query: dict[str, str], name: str) -> int:
    try:
        value = int(query[name])
    except (KeyError, ValueError):
        raise Answer(400, "EINVAL", f"{name}: an integer is required") from None
    if value < 0:
        raise Answer(400, "EINVAL", f"{name}: must not be negative")
    return value


def _epoch(query: dict[str, str]) -> int:
    """A write's lease epoch (fencing: the drive refuses one older than the file has seen); 0 = none."""
    return _int(query, "epoch") if "epoch" in query else 0


def _name(query: dict[str, str], key: str = "name") -> str:
    if key not in query:
        raise Answer(400, "EINVAL", f"{key}: required")
    return query[key]


class DriveServer:
    """The ASGI application serving ``drives`` (name -> DriveIO)."""

    def __init__(self, drives: dict[str, DriveIO], key: bytes, *, threads: int = 32) -> None:
        assert drives, "a drive server serves at least one drive"
        self.drives = drives
        self.key = key
        self.boot = secrets.token_hex(8)
        self.guard = ReplayGuard()
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="exastor-drive-io")
        # op -> [requests, body bytes received, body bytes sent]; touched on the event loop only
        self.traffic: dict[str, list[int]] = {}

    def _count(self, op: str, received: int, sent: int) -> None:
        row = self.traffic.setdefault(op, [0, 0, 0])
        row[0] += 1
        row[1] += received
        row[2] += sent

    # --- one request ---------------------------------------------------------------------
    def _checked_call(self, drive: DriveIO, op: str, query: dict[str, str], body: bytes | memoryview,
                      signed_digest: str) -> tuple[bytes, str, str]:
        """The call, if the body is the one the request signed; with the answer's digest."""
        if (body_digest(body) if body else EMPTY_DIGEST) != signed_digest:
            raise Answer(400, "EBADMSG", "the body does not match its signed digest")
        result, ctype = self._call(drive, op, query, body)
        return result, ctype, body_digest(result) if result else EMPTY_DIGEST

    def _call(self, drive: DriveIO, op: str, query: dict[str, str], body: bytes | memoryview) -> tuple[bytes, str]:
        """Run one DriveIO call; returns the answer's body and content type."""
        if op == "pread":
            length = _int(query, "length")
            if length > MAX_BODY:
                raise Answer(400, "EINVAL", f"length: at most {MAX_BODY} bytes per read")
            return drive.pread(_name(query), _int(query, "offset"), length), "application/octet-stream"
        if op == "read":
            data = drive.read(_name(query))
            return data, "application/octet-stream"
        if op == "digests":  # a scrub of this host's files: the bytes stay here, 8 bytes a block leave
            length, block = _int(query, "length"), _int(query, "block")
            if length > MAX_DIGEST_RANGE or block < MIN_DIGEST_BLOCK:
                raise Answer(400, "EINVAL", f"digests: at most {MAX_DIGEST_RANGE} bytes, blocks of at least "
                                            f"{MIN_DIGEST_BLOCK}")
            sums = drive.block_digests(_name(query), _int(query, "offset"), length, block)
            return struct.pack(f"<{len(sums)}Q", *sums), "application/octet-stream"
        if op == "append":
            name = _name(query)
            drive.append(name, _int(query, "offset"), body, epoch=_epoch(query))
            if query.get("sync") == "1":
                drive.fsync(name)
            return b"", ""
        if op == "create":
            drive.create(_name(query), body)
            return b"", ""
        if op == "write_at":
            drive.write_at(_name(query), _int(query, "offset"), body)
            return b"", ""
        if op == "truncate":
            drive.truncate(_name(query), _int(query, "size"), epoch=_epoch(query))
            return b"", ""
        if op == "fence":
            drive.fence(_name(query), _int(query, "epoch"))
            return b"", ""
        if op == "fsync":
            since = query.get("since", "")
            if since and since != self.boot:
                raise ServerRestarted(errno.EIO, "the drive server restarted after writes this fsync would cover: "
                                                 "they may have been lost with its page cache")
            drive.fsync(_name(query))
            return b"", ""
        if op == "sync_dir":
            drive.sync_dir(query.get("name", ""))
            return b"", ""
        if op == "put":
            cut = len(body) - len(body) % DIRECT_ALIGN  # the aligned part (LocalDrive.put: O_DIRECT)
            aligned = isinstance(body, memoryview) and cut  # received aligned (_read_body): views, no copies
            drive.put(_name(query), [body[:cut], body[cut:]] if aligned else body)
            return b"", ""
        if op == "stat":
            st = drive.stat(query.get("name", ""))
            return json.dumps({"size": st.size, "mtime_ns": st.mtime_ns}).encode(), "application/json"
        if op == "list":
            return json.dumps(drive.list(query.get("name", ""))).encode(), "application/json"
        if op == "rename":
            drive.rename(_name(query, "src"), _name(query, "dst"))
            return b"", ""
        if op == "unlink":
            return json.dumps(drive.unlink(_name(query))).encode(), "application/json"
        if op == "space":
            sp = drive.space()
            return json.dumps({"free": sp.free, "total": sp.total}).encode(), "application/json"
        if op == "format":
            drive.format(bytes(body))
            return b"", ""
        if op == "release":
            try:
                names = json.loads(bytes(body))
                assert isinstance(names, list) and all(isinstance(n, str) for n in names)
            except (ValueError, AssertionError):
                raise Answer(400, "EINVAL", "release: a JSON list of names is required") from None
            drive.release(names)
            return b"", ""
        raise Answer(404, UNAVAILABLE, f"no such operation: {op}")

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        raw = scope.get("raw_path") or scope["path"].encode()
        path = raw.decode("latin-1").split("?", 1)[0]
        query_string = scope.get("query_string", b"").decode("latin-1")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            signature = check_request(self.key, self.guard, method, path, query_string, headers)
        except PermissionError as exc:
            client = scope.get("client") or ("?", 0)
            log.warning("refused %s %s from %s: %s", method, path, client[0], exc)
            await _send(send, 401, [], b"unauthorized\n")  # unsigned: the caller proved nothing
            return

        op: str | None = None   # set once the request's body is read: answers from then on are counted
        received = 0

        async def answer(status: int, err: str, body: bytes = b"", ctype: str = "", final: bool = False,
                         digest: str = "") -> None:
            if op is not None:
                self._count(op, received, len(body))
            digest = digest or (body_digest(body) if body else EMPTY_DIGEST)
            hdrs = [(H_ERRNO, err), (H_BOOT, self.boot),
                    (H_ANSWER, sign_answer(self.key, signature, status, err + "/" + self.boot, digest))]
            if ctype:
                hdrs.append(("content-type", ctype))
            if final:
                hdrs.append((H_FINAL, "1"))
            await _send(send, status, hdrs, body)

        try:
            length = int(headers.get("content-length", "0") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY or "chunked" in headers.get("transfer-encoding", ""):
            await answer(413, "EFBIG", b"a body of known length up to %d bytes is required\n" % MAX_BODY)
            return
        parts = path.strip("/").split("/")
        drive = self.drives.get(parts[0]) if len(parts) == 2 else None
        if drive is None:
            await answer(404, UNAVAILABLE, f"no drive {parts[0]!r} served here\n".encode())
            return
        # A put's body (a shard: data of a page-multiple length, then its checksums and trailer) is
        # received into a page-aligned buffer, so its data goes to the drive with O_DIRECT (no
        # page-cache copy), as a local drive's would.
        body = await _read_body(receive, length, aligned=parts[1] == "put")
        if body is None:
            return  # the client went away
        if parts[1] == "traffic":
            counts = {name: {"requests": r, "received_bytes": i, "sent_bytes": o}
                      for name, (r, i, o) in self.traffic.items()}
            await answer(200, "", json.dumps(counts).encode(), "application/json")
            return
        op, received = parts[1], len(body)
        query = dict(parse_qsl(query_string, keep_blank_values=True))
        loop = asyncio.get_running_loop()
        try:
            # Digests of multi-MiB bodies run on the pool too: never a stalled event loop.
            result, ctype, digest = await loop.run_in_executor(
                self.pool, self._checked_call, drive, op, query, body, headers.get(H_BODY, ""))
        except Answer as exc:
            await answer(exc.status, exc.err, f"{exc}\n".encode())
            return
        except OSError as exc:
            code = exc.errno or errno.EIO
            text = f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc.strerror or exc)
            await answer(STATUS_OF_ERRNO.get(code, 500), RESTARTED if isinstance(exc, ServerRestarted) else errno_name(code),
                         f"{text}\n".encode(), final=isinstance(exc, FsyncFailed))
            return
        except Exception as exc:  # noqa: BLE001 - a bug must answer, never hang the client
            log.exception("drive server: %s %s failed", method, path)
            await answer(500, "EIO", f"internal error: {type(exc).__name__}\n".encode())
            return
        await answer(200, "", result, ctype, digest=digest)


async def _read_body(receive: Callable, length: int, *, aligned: bool = False) -> bytes | memoryview | None:
    """The request's body (None if the client went away or sent more than it announced); with
    ``aligned``, in a page-aligned buffer (``aligned_buffer``) when it is long enough for O_DIRECT."""
    into = aligned_buffer(length) if aligned and length >= DIRECT_MIN else None
    parts: list[bytes] = []
    got = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        piece = message.get("body", b"")
        if got + len(piece) > length:
            return None
        if into is not None:
            into[got:got + len(piece)] = piece
        else:
            parts.append(piece)
        got += len(piece)
        if not message.get("more_body", False):
            if into is not None:
                return into[:got]
            return b"".join(parts)


async def _send(send: Callable, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    hdrs = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    hdrs.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


def parse_drives(specs: list[str]) -> dict[str, Path]:
    """``PATH`` or ``NAME=PATH`` -> {name: path}; ValueError on duplicate or unsafe names."""
    out: dict[str, Path] = {}
    for spec in specs:
        name, _, path = spec.partition("=") if "=" in spec else (Path(spec).name, "", spec)
        if not name or not all(c.isalnum() or c in "-_." for c in name) or name in (".", ".."):
            raise ValueError(f"drive name {name!r}: letters, digits, '-', '_' and '.' only")
        if name in out:
            raise ValueError(f"two drives named {name!r}: name them (NAME=PATH)")
        out[name] = Path(os.path.abspath(path))
    return out
