"""A gateway's persistent identity: DATA/gateway.id.

On a shared (PostgreSQL) database many gateways write, each holding the leases of the segments it
has open (meta/leases.py). A gateway killed with -9 leaves its open segments leased to it until the
leases expire; restarted, it must not wait for that: every lease holder id of a gateway begins with
its identity, so at its next start - before its workers fork, when no process of it can be writing,
as the data directory's server lock guarantees - it takes over the leases its previous run left and
seals those segments at once, while leaving every other gateway's live ones alone.

The identity is random (``gw-`` and 16 hex digits), made once with mode 0600 and fsynced (file and
directory) before it is first used, so a restart after a power cut finds the same one. Copying a
data directory to a second host copies the identity too: two gateways running with one identity
would take over each other's leases at start (the fence keeps the data safe; their writes would
keep being cut). docs/operations.md says not to, and `serve` refuses to start beside a twin whose
heartbeat it sees moving (gateway/serve_cli.py ``identity_twin``).
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

GATEWAY_ID_FILE = "gateway.id"
_FORMAT = re.compile(r"gw-[0-9a-f]{16}")


class GatewayIdUnusable(RuntimeError):
    """DATA/gateway.id exists but does not hold an identity: never replaced silently (a new identity
    would leave the old run's leases to expire)."""


def ensure(data: Path) -> str:
    """This gateway's identity: read from DATA/gateway.id, or made now (first start)."""
    path = data / GATEWAY_ID_FILE
    found = _read(path)
    if found is not None:
        return found
    identity = f"gw-{secrets.token_hex(8)}"
    tmp = path.with_name(f"{GATEWAY_ID_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (identity + "\n").encode())
        os.fsync(fd)  # not a drive: the gateway's identity in --data
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # never over one another process made first: theirs is the identity
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    dir_fd = os.open(data, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # not a drive: the gateway's identity in --data
    finally:
        os.close(dir_fd)
    found = _read(path)
    assert found is not None
    return found


def _read(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    if not _FORMAT.fullmatch(text):
        raise GatewayIdUnusable(f"{path} does not hold a gateway identity ({text[:40]!r}); it is never replaced "
                                "on its own: remove it only if no gateway with that identity is running")
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return text
