"""What a drive server and its clients (``RemoteDrive``) agree on: the cluster key, request and
answer signatures, and how a drive error travels.

Every request carries an HMAC-SHA256 (the cluster key) over its method, path, query, a timestamp, a
random nonce and a BLAKE3 digest of its body. The server refuses anything unsigned, signed with
another key, older or newer than ``MAX_SKEW_S``, or whose nonce it has already seen inside that
window (a replay). Every answer is signed too, over the request's signature, the status, the drive
errno and a digest of the answer's body: a client believes "not found" (or any answer) only from a
server that holds the key and answered *this* request - a stray HTTP server on the port, a proxy's
404 or a truncated body are "unreachable", never "absent".

Why BLAKE3 for the body and not SHA-256: it runs at several GB/s on one core, so signing a 4 MiB
append costs about a millisecond; the HMAC itself covers only a few short strings.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import hmac
import os
import secrets
import threading
import time
from pathlib import Path

import blake3

SCHEME = "EXASTOR-HMAC-SHA256"
H_AUTH, H_DATE, H_NONCE, H_BODY = "authorization", "x-exastor-date", "x-exastor-nonce", "x-exastor-body"
H_ANSWER, H_ERRNO, H_FINAL = "x-exastor-answer", "x-exastor-errno", "x-exastor-final"
MAX_SKEW_S = 30.0          # a request older or newer than this is refused (clocks kept by NTP)
KEY_BYTES = 32
MAX_BODY = 256 << 20        # one request's body: a shard (segments are ~64 MiB) with room to spare
ENV_KEY_FILE = "EXASTOR_CLUSTER_KEY_FILE"
KEY_FILE_NAME = "cluster.key"  # in a gateway's --data, beside master.key


class ClusterKeyError(Exception):
    """The cluster key file is missing, unreadable, open to others or malformed."""


def body_digest(*pieces: bytes | bytearray | memoryview) -> str:
    """The digest of a body sent as these pieces back to back."""
    # One thread, always: blake3's multithreaded mode runs on a process-wide Rayon pool, and a
    # gateway's master hashes shards while it recovers segments (a seal over drive servers) before
    # it forks its workers. A worker inherits that pool without its threads, and its first
    # multithreaded hash waited for them forever: every request of that worker hung (found by the
    # power cuts of drive-server hosts, tests/faults/test_power_drive_servers.py).
    h = blake3.blake3()
    for piece in pieces:
        h.update(piece)
    return h.hexdigest()


EMPTY_DIGEST = body_digest(b"")


def sign_request(key: bytes, method: str, path: str, query: str, date: str, nonce: str, digest: str) -> str:
    text = "\n".join((method, path, query, date, nonce, digest)).encode("latin-1")
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def sign_answer(key: bytes, request_signature: str, status: int, err: str, digest: str) -> str:
    text = "\n".join(("answer", request_signature, str(status), err, digest)).encode("latin-1")
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def request_headers(key: bytes, method: str, path: str, query: str, digest: str) -> dict[str, str]:
    date = str(time.time_ns())
    nonce = secrets.token_hex(16)
    signature = sign_request(key, method, path, query, date, nonce, digest)
    return {H_DATE: date, H_NONCE: nonce, H_BODY: digest, H_AUTH: f"{SCHEME} {signature}"}


class ReplayGuard:
    """Nonces seen in the last ``2 * MAX_SKEW_S``: a request is accepted once."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._pruned = time.monotonic()

    def first_time(self, nonce: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._pruned > MAX_SKEW_S:
                self._seen = {n: t for n, t in self._seen.items() if now - t < 2 * MAX_SKEW_S}
                self._pruned = now
            if nonce in self._seen:
                return False
            self._seen[nonce] = now
            return True


def check_request(key: bytes, guard: ReplayGuard, method: str, path: str, query: str,
                  headers: dict[str, str]) -> str:
    """The request's signature if it is signed with ``key``, fresh and not a replay; else
    PermissionError saying why (for the server's log; the client only sees 401)."""
    auth = headers.get(H_AUTH, "")
    date, nonce, digest = headers.get(H_DATE, ""), headers.get(H_NONCE, ""), headers.get(H_BODY, "")
    if not auth.startswith(SCHEME + " ") or not date or not nonce or not digest:
        raise PermissionError("unsigned request")
    signature = auth[len(SCHEME) + 1:].strip()
    expected = sign_request(key, method, path, query, date, nonce, digest)
    if not hmac.compare_digest(signature, expected):
        raise PermissionError("bad signature (another cluster key?)")
    try:
        skew = abs(time.time_ns() - int(date)) / 1e9
    except ValueError:
        raise PermissionError("malformed date") from None
    if skew > MAX_SKEW_S:
        raise PermissionError(f"stale request ({skew:.0f} s off; clocks in sync?)")
    if len(nonce) < 16 or not guard.first_time(nonce):
        raise PermissionError("replayed request")
    return signature


# --- errors on the wire -------------------------------------------------------------------

STATUS_OF_ERRNO = {errno.ENOENT: 404, errno.ENOTDIR: 404, errno.EEXIST: 409, errno.ESTALE: 409, errno.EINVAL: 400,
                   errno.ENOSPC: 507, errno.EDQUOT: 507, errno.EROFS: 403, errno.EACCES: 403}


def errno_name(code: int | None) -> str:
    return errno.errorcode.get(code or errno.EIO, "EIO")


def errno_from_name(name: str) -> int:
    code = getattr(errno, name, None)
    return code if isinstance(code, int) and name.startswith("E") else errno.EIO


# --- the cluster key ---------------------------------------------------------------------------

def create_key(path: Path) -> bytes:
    """A new random cluster key in ``path`` (mode 0600, refused if it exists), durable when this
    returns: the file and then its directory fsynced (a key already copied to other servers must not
    vanish here with a power cut). Copy the same file to every gateway and drive server of the cluster."""
    key = os.urandom(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(key).decode() + "\n")
        f.flush()
        os.fsync(f.fileno())
    dir_fd = os.open(Path(path).parent, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)  # the new name
    finally:
        os.close(dir_fd)
    return key


def load_key(path: Path) -> bytes:
    """The cluster key in ``path``; ClusterKeyError if absent, readable by others, or malformed."""
    try:
        st = os.stat(path)
        text = Path(path).read_text()
    except OSError as exc:
        raise ClusterKeyError(f"cluster key {path}: {exc.strerror or exc}") from None
    if st.st_mode & 0o077:
        raise ClusterKeyError(f"cluster key {path} is readable by others (mode {st.st_mode & 0o777:o}): chmod 600 it")
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ClusterKeyError(f"cluster key {path} does not hold base64") from None
    if len(key) < KEY_BYTES:
        raise ClusterKeyError(f"cluster key {path} holds {len(key)} bytes; at least {KEY_BYTES} are needed")
    return key
