"""Advisory locks on a data directory.

Two files, two questions:

- ``DATA/lock``: may an offline repair run? Servers and the standalone reducer hold it shared;
  ``fsck --repair`` / ``--rebuild-index`` need it exclusively.
- ``DATA/server.lock``: is a server already serving this directory? ``exastor serve``'s master
  holds it exclusively (and writes its pid into it); its forked workers inherit the same open file
  description, so the lock lasts exactly as long as any process of that server lives. Two servers
  on one directory would each recover (seal, cut) the other's open segments.

flock locks belong to open file descriptions, not processes: they vanish when the last process
holding one exits, however it exits (kill -9 included), so a stale lock is impossible.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from exastor.errors import data_dir_unusable

SERVER_LOCK = "server.lock"


class DataDirLocked(RuntimeError):
    """Another process holds the lock in a conflicting mode."""


def _lock(path: Path, mode: int) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise data_dir_unusable(path.parent, exc) from exc
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise DataDirLocked(str(path.parent)) from exc
    return fd


def shared(data: Path) -> int:
    """Held by a running server for its lifetime (the descriptor is never closed)."""
    return _lock(data / "lock", fcntl.LOCK_SH)


@contextlib.contextmanager
def exclusive(data: Path) -> Iterator[None]:
    fd = _lock(data / "lock", fcntl.LOCK_EX)
    try:
        yield
    finally:
        os.close(fd)


class ServerRunning(DataDirLocked):
    """Another server serves this data directory; ``pid`` is its master's, when it wrote one."""

    def __init__(self, data: Path, pid: int | None) -> None:
        super().__init__(str(data))
        self.data = data
        self.pid = pid


def serving(data: Path) -> int:
    """Take the one-server lock of ``data`` for this process and the workers it will fork; the
    descriptor stays open for the process's lifetime. Raises ServerRunning if a server holds it."""
    path = data / SERVER_LOCK
    try:
        fd = _lock(path, fcntl.LOCK_EX)
    except DataDirLocked:
        raise ServerRunning(data, server_pid(data)) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def server_pid(data: Path) -> int | None:
    """The pid the serving master wrote (informational: the lock, not the pid, is the truth)."""
    try:
        return int((data / SERVER_LOCK).read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def server_running(data: Path) -> bool:
    """Whether any process of a server still holds ``data`` (probes the lock without keeping it)."""
    path = data / SERVER_LOCK
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's lock too
    return False
