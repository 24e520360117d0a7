"""A drive served by a drive server on another host (drives/server.py), over HTTP/1.1 keep-alive.

``RemoteDrive("http://10.0.0.5:9100/ssd0", key)`` is a ``DriveIO`` like any other: the engine cannot
tell it from a local directory, except for one thing it must be told - *unreachable is not broken*.

- A connection refused, reset or timed out, a 401 (another cluster key), an answer that is not signed
  by the server for this very request, or a server that does not serve this drive, raises
  ``DriveUnreachable`` (an OSError): the drive is *unavailable* - the drive set keeps it out of
  reads and writes in this process and never records it failed. Never ``FileNotFoundError``: only a
  signed answer saying the file is absent is "not found" (and the drive set still checks the drive's
  identity file through the same server before it believes a missing file means anything).
- After such an error the drive is *down*: ``reachable()`` is False and every call fails at once,
  until a background thread's probe (a signed ``space`` request, 0.25 s apart doubling to 5 s) is
  answered. So a dead or partitioned host costs the request that found it one timeout, and no
  request after it anything.
- A failed write or fsync is final for that file (as ``LocalDrive``), and so is a lost answer to one:
  the client cannot know whether the write happened, so it never writes or fsyncs that file again.
- A server restart between a write and its fsync fails the fsync (final): the fsync names the
  server's boot id under which the file was written, and the server refuses a stale one with its
  own code, raised here as ``ServerRestarted`` - like a lost answer, final for the file and never
  evidence against the drive (a plain EIO from the server is the disk's, and is).

Requests that change nothing (pread, stat, list, space, fsync, sync_dir, release) are sent again once,
newly signed, when a pooled keep-alive connection turns out to have been closed by the server.
"""

from __future__ import annotations

import errno
import json
import os
import struct
import threading
import time
from collections.abc import Iterable
from typing import cast
from urllib.parse import urlencode, urlsplit

import urllib3

from exastor.drives.base import (
    AnswerLost,
    Buffers,
    DriveIO,
    DriveNotServed,
    DriveUnreachable,
    Fenced,
    FsyncFailed,
    Piece,
    ServerRestarted,
    Space,
    Stat,
    WritesInDoubt,
    check_name,
    pieces,
)
from exastor.drives.server import H_BOOT, RESTARTED, UNAVAILABLE
from exastor.drives.wire import (
    EMPTY_DIGEST,
    H_ANSWER,
    H_AUTH,
    H_ERRNO,
    H_FINAL,
    SCHEME,
    body_digest,
    errno_from_name,
    request_headers,
    sign_answer,
)

CONNECT_TIMEOUT_S = float(os.environ.get("EXASTOR_DRIVE_CONNECT_TIMEOUT", "3"))
# A partitioned host does not refuse: a request on a kept-alive connection waits for this long. Short
# for what a local disk answers at once; long for what waits on the disk (an fsync of a 64 MiB file).
READ_TIMEOUT_S = float(os.environ.get("EXASTOR_DRIVE_TIMEOUT", "10"))
SYNC_TIMEOUT_S = float(os.environ.get("EXASTOR_DRIVE_SYNC_TIMEOUT", "60"))
_WAITS_ON_DISK = {"fsync", "sync_dir", "put", "format", "write_at", "rename", "fence"}
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.25, 5.0   # between probes of an unreachable drive
_SAFE_TO_RESEND = {"pread", "read", "stat", "list", "space", "fsync", "sync_dir", "release"}
# ESTALE: a fenced write was refused before it wrote anything (the server checks the epoch first).
_WRITE_ERRORS_NOT_FINAL = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EINVAL, errno.EEXIST, errno.ENOENT,
                           errno.ESTALE)


def parse_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, drive name) of ``http(s)://HOST:PORT/NAME``; ValueError if it is not one."""
    parts = urlsplit(url)
    name = parts.path.strip("/")
    if parts.scheme not in ("http", "https") or not parts.hostname or not parts.port or not name or "/" in name \
            or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: a drive URL is http(s)://HOST:PORT/NAME")
    return parts.scheme, parts.hostname, parts.port, name


class RemoteDrive(DriveIO):
    def __init__(self, url: str, key: bytes, *, connections: int = 16, ca_file: str | None = None) -> None:
        scheme, host, port, name = parse_url(url)
        self.scheme, self.host, self.port, self.name = scheme, host, port, name
        self.label = f"{scheme}://{host}:{port}/{name}" if ":" not in host else f"{scheme}://[{host}]:{port}/{name}"
        # https: the server's certificate is verified against this CA (EXASTOR_DRIVE_CA_FILE), else
        # the system's trust store; the cluster key's signatures are checked as well.
        self._ca_file = ca_file or os.environ.get("EXASTOR_DRIVE_CA_FILE") or None
        self._key = key
        self._connections = connections
        self._pool = self._new_pool()
        self._lock = threading.Lock()
        self._down = False
        self._why_down = ""
        self._closed = False
        self._prober: threading.Thread | None = None
        self._prober_pid = 0
        self._poisoned: set[str] = set()
        # poisoned by no fault of the drive (a lost answer, a server restart): why, to say so again
        self._in_doubt: dict[str, type[WritesInDoubt]] = {}
        self._written_under: dict[str, str] = {}   # name -> server boot id of its first unsynced write

    def __repr__(self) -> str:
        return f"RemoteDrive({self.label!r})"

    def _new_pool(self) -> urllib3.HTTPConnectionPool:
        self._pool_pid = os.getpid()
        timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S)
        if self.scheme == "https":
            return urllib3.HTTPSConnectionPool(self.host, self.port, maxsize=self._connections, block=False,
                                               retries=False, timeout=timeout, cert_reqs="CERT_REQUIRED",
                                               ca_certs=self._ca_file)
        return urllib3.HTTPConnectionPool(self.host, self.port, maxsize=self._connections, block=False,
                                          retries=False, timeout=timeout)

    # --- reachability -------------------------------------------------------------------
    def reachable(self) -> bool:
        if self._down:
            self._ensure_prober()  # a forked worker inherits the state, not the thread
        return not self._down

    def _went_down(self, why: str, kind: type[DriveUnreachable] = DriveUnreachable) -> DriveUnreachable:
        with self._lock:
            self._down, self._why_down = True, why
        self._ensure_prober()
        return kind(errno.EHOSTUNREACH, f"{self.label} unreachable: {why}")

    def _ensure_prober(self) -> None:
        with self._lock:
            alive = self._prober is not None and self._prober.is_alive() and self._prober_pid == os.getpid()
            if alive or not self._down or self._closed:
                return
            self._prober_pid = os.getpid()
            self._prober = threading.Thread(target=self._probe_until_up, name=f"exastor-probe-{self.name}",
                                            daemon=True)
            self._prober.start()

    def _probe_until_up(self) -> None:
        """Ends when the drive answers or is closed (each wait bounded by BACKOFF_MAX_S)."""
        delay = BACKOFF_MIN_S
        while self._down and not self._closed:
            time.sleep(delay)
            if self.probe():
                return
            delay = min(delay * 2, BACKOFF_MAX_S)

    def served(self) -> bool | None:
        """Ask the server now: True if it serves this drive, False if it answered (signed: alive, of
        this cluster) that it does not - a lost or unmounted disk - and None if it did not answer.
        The cluster manager's view: the server's liveness, which one lost disk among its drives must
        not decide, and which of its drives are gone."""
        try:
            self._request("GET", "space", probing=True)
        except DriveNotServed:
            return False
        except DriveUnreachable:
            return None
        except OSError:
            pass  # answered: the drive's own error
        return True

    def probe(self) -> bool:
        """Ask the server now (a signed ``space``), whatever the state; True (and up again) if it
        answered as a drive server of this cluster serving this drive (a drive error in the answer
        counts: its directory missing, the identity check says so)."""
        return self.served() is True

    # --- one request ---------------------------------------------------------------------
    def _request(self, method: str, op: str, params: dict[str, object] | None = None,
                 body: Piece | list[Piece] = b"", *, probing: bool = False) -> tuple[bytes, str]:
        """The answer's body and the server's boot id; OSError as the drive raised it there."""
        if self._pool_pid != os.getpid():
            # A forked process (a gateway worker) never shares its parent's connections: two processes
            # writing requests into one socket would interleave them.
            self._pool = self._new_pool()
        if not probing:
            self._closed = False  # used again after close(): a prober may run again
        if not probing and not self.reachable():
            raise DriveUnreachable(errno.EHOSTUNREACH, f"{self.label} unreachable ({self._why_down}); "
                                                       "waiting for it to answer a probe")
        timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT_S,
                                  read=min(READ_TIMEOUT_S, 2.0) if probing else
                                  SYNC_TIMEOUT_S if op in _WAITS_ON_DISK or params and params.get("sync") else
                                  READ_TIMEOUT_S)
        path = f"/{self.name}/{op}"
        query = urlencode(params or {})
        parts = body if isinstance(body, list) else [body]
        length = sum(len(p) for p in parts)
        digest = body_digest(*parts) if length else EMPTY_DIGEST
        # urllib3 sends each part with sendall, which takes any buffer (its hints say bytes)
        send = cast("list[bytes]", parts) if length else None
        for attempt in (0, 1):
            headers = request_headers(self._key, method, path, query, digest)
            if length:  # sent as it is (urllib3 writes each piece): no copy into one bytes object
                headers["Content-Length"] = str(length)
            try:
                resp = self._pool.urlopen(method, f"{path}?{query}" if query else path, body=send,
                                          headers=headers, retries=False, redirect=False, assert_same_host=False,
                                          preload_content=True, timeout=timeout)
            except urllib3.exceptions.ProtocolError as exc:
                if attempt == 0 and op in _SAFE_TO_RESEND:
                    continue  # a keep-alive connection the server had closed: once more, newly signed
                raise self._went_down(f"{type(exc).__name__}: {exc}") from None
            except urllib3.exceptions.HTTPError as exc:  # refused, timed out, unresolvable
                raise self._went_down(f"{type(exc).__name__}: {exc}") from None
            break
        data = resp.data
        err = resp.headers.get(H_ERRNO, "")
        boot = resp.headers.get(H_BOOT, "")
        signature = headers[H_AUTH][len(SCHEME) + 1:]
        expected = sign_answer(self._key, signature, resp.status, err + "/" + boot,
                               body_digest(data) if data else EMPTY_DIGEST)
        if resp.headers.get(H_ANSWER) != expected:
            if resp.status == 401:
                raise self._went_down("the drive server refused our signature (another cluster key? clocks apart?)")
            raise self._went_down(f"HTTP {resp.status} without a valid answer signature (not a drive server of "
                             "this cluster, or the answer was damaged)")
        if self._down:
            with self._lock:
                self._down, self._why_down = False, ""
        if resp.status == 200:
            return data, boot
        if err == UNAVAILABLE:
            raise self._went_down(data.decode("utf-8", "replace").strip(), DriveNotServed)
        code = errno_from_name(err)
        message = f"{self.label}: {data.decode('utf-8', 'replace').strip()}"
        if err == RESTARTED:
            raise ServerRestarted(errno.EIO, message)
        if resp.headers.get(H_FINAL) == "1":
            raise FsyncFailed(code, message)
        if code == errno.ESTALE:
            raise Fenced(message)
        raise OSError(code, message)

    def _json(self, method: str, op: str, params: dict[str, object] | None = None) -> object:
        data, _ = self._request(method, op, params)
        return json.loads(data)

    # --- writes: final on failure ---------------------------------------------------------
    def _refuse_if_poisoned(self, name: str) -> None:
        if name in self._poisoned:
            why = self._in_doubt.get(name)
            if why is ServerRestarted:  # final for the file, nothing against the drive
                raise ServerRestarted(errno.EIO, f"{self.label}/{name}: the drive server restarted after "
                                                 "unsynced writes to it; the file is never written again")
            if why is not None:
                raise AnswerLost(errno.EIO, f"{self.label}/{name}: an earlier write or fsync got no answer; "
                                            "the file is never written again")
            raise FsyncFailed(errno.EIO, f"{self.label}/{name}: an earlier write or fsync failed; "
                                         "the file is never written again")

    def _poison(self, name: str, cause: OSError) -> None:
        """Under the lock: ``name`` is never written again; remember whether it was not the drive's doing."""
        self._poisoned.add(name)
        self._written_under.pop(name, None)
        if isinstance(cause, WritesInDoubt):
            self._in_doubt[name] = type(cause)
        elif isinstance(cause, DriveUnreachable):
            self._in_doubt[name] = AnswerLost

    def _write(self, name: str, op: str, params: dict[str, object], body: bytes | bytearray | memoryview,
               *, durable: bool = False) -> None:
        check_name(name)
        with self._lock:
            self._refuse_if_poisoned(name)
        try:
            _, boot = self._request("POST", op, params, body)
        except OSError as exc:
            if isinstance(exc, DriveUnreachable) or exc.errno not in _WRITE_ERRORS_NOT_FINAL \
                    or isinstance(exc, FsyncFailed):
                with self._lock:
                    self._poison(name, exc)
            raise
        if not durable:
            with self._lock:
                self._written_under.setdefault(name, boot)

    def create(self, name: str, data: Buffers = b"") -> None:
        with self._lock:
            self._poisoned.discard(name)  # a new file of that name (the old one was deleted)
            self._in_doubt.pop(name, None)
            self._written_under.pop(name, None)
        self._write(name, "create", {"name": name}, _joined(data))

    def append(self, name: str, offset: int, data: Buffers, *, epoch: int = 0) -> None:
        params: dict[str, object] = {"name": name, "offset": offset}
        if epoch > 0:
            params["epoch"] = epoch
        self._write(name, "append", params, _joined(data))

    def write_at(self, name: str, offset: int, data: Buffers) -> None:
        self._write(name, "write_at", {"name": name, "offset": offset}, _joined(data), durable=True)

    def truncate(self, name: str, size: int, *, epoch: int = 0) -> None:
        params: dict[str, object] = {"name": name, "size": size}
        if epoch > 0:
            params["epoch"] = epoch
        self._write(name, "truncate", params, b"")

    def fence(self, name: str, epoch: int) -> None:
        """Durable when answered (the server writes the epoch with O_DSYNC); a lost answer leaves the
        fence in doubt, so the caller treats the replica as not fenced (and does not read it)."""
        self._request("POST", "fence", {"name": check_name(name), "epoch": epoch})

    def fsync(self, name: str) -> None:
        check_name(name)
        with self._lock:
            self._refuse_if_poisoned(name)
            since = self._written_under.get(name, "")
        try:
            self._request("POST", "fsync", {"name": name, "since": since})
        except FileNotFoundError:
            raise
        except OSError as exc:
            with self._lock:
                self._poison(name, exc)
            raise
        with self._lock:
            if self._written_under.get(name) == since:
                self._written_under.pop(name, None)

    def sync_dir(self, directory: str = "") -> None:
        self._request("POST", "sync_dir", {"name": check_name(directory)})

    def put(self, name: str, data: Buffers | Iterable[Piece]) -> None:
        # The pieces (a shard and its trailer) are sent as they are, not joined into one more copy.
        self._request("POST", "put", {"name": check_name(name)},
                      data if isinstance(data, bytes | bytearray | memoryview) else list(data))

    # --- reads ------------------------------------------------------------------------------
    def pread(self, name: str, offset: int, length: int) -> bytes:
        data, _ = self._request("GET", "pread", {"name": check_name(name), "offset": offset, "length": length})
        return data

    def read(self, name: str) -> bytes:
        data, _ = self._request("GET", "read", {"name": check_name(name)})
        return data

    def block_digests(self, name: str, offset: int, length: int, block: int) -> list[int]:
        """Computed by the drive server beside the drive: 8 bytes a block cross the network."""
        data, _ = self._request("GET", "digests", {"name": check_name(name), "offset": offset, "length": length,
                                                   "block": block})
        if len(data) % 8:
            raise OSError(errno.EIO, f"digests of {name}: an answer of {len(data)} bytes is not whole digests")
        return list(struct.unpack(f"<{len(data) // 8}Q", data))

    def stat(self, name: str = "") -> Stat:
        doc = self._json("GET", "stat", {"name": check_name(name)})
        assert isinstance(doc, dict)
        return Stat(int(doc["size"]), int(doc["mtime_ns"]))

    def list(self, directory: str = "") -> list[str]:
        names = self._json("GET", "list", {"name": check_name(directory)})
        assert isinstance(names, list)
        return [str(n) for n in names]

    # --- the namespace -------------------------------------------------------------------------
    def rename(self, src: str, dst: str) -> None:
        self._request("POST", "rename", {"src": check_name(src), "dst": check_name(dst)})

    def unlink(self, name: str) -> bool:
        gone = self._json("POST", "unlink", {"name": check_name(name)})
        with self._lock:
            self._written_under.pop(name, None)
        return bool(gone)

    # --- the drive ------------------------------------------------------------------------------
    def space(self) -> Space:
        doc = self._json("GET", "space")
        assert isinstance(doc, dict)
        return Space(int(doc["free"]), int(doc["total"]))

    def format(self, identity: bytes) -> None:
        self._request("POST", "format", None, identity)

    def traffic(self) -> dict[str, dict[str, int]]:
        """The server's traffic counters (all its drives): per operation, requests answered and body
        bytes received and sent since it started (drives/server.py). Not a ``DriveIO`` call."""
        doc = self._json("GET", "traffic")
        assert isinstance(doc, dict)
        return doc

    def release(self, names: Iterable[str]) -> None:
        """Best effort, as for a local drive (it never fails): the server's cached descriptors are
        its own business, and a server that restarts has none."""
        names = list(names)
        if names and self.reachable():
            try:
                self._request("POST", "release", None, json.dumps(names).encode())
            except OSError:
                pass

    def close(self) -> None:
        """Close the idle connections. Like ``LocalDrive.close`` (which closes descriptors that later
        calls reopen), the drive stays usable: a later call opens new connections."""
        self._closed = True  # stops the prober, if one runs
        old, self._pool = self._pool, self._new_pool()
        old.close()


def _joined(data: Buffers) -> bytes | bytearray | memoryview:
    parts = pieces(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)
