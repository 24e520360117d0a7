"""Advisory lock on a data directory: servers share it, offline repairs need it alone."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from exastor.errors import data_dir_unusable


class DataDirLocked(RuntimeError):
    """Another process holds the lock in a conflicting mode."""


def _lock(data: Path, mode: int) -> int:
    try:
        data.mkdir(parents=True, exist_ok=True)
        fd = os.open(data / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise data_dir_unusable(data, exc) from exc
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise DataDirLocked(str(data)) from exc
    return fd


def shared(data: Path) -> int:
    """Held by a running server for its lifetime (the descriptor is never closed)."""
    return _lock(data, fcntl.LOCK_SH)


@contextlib.contextmanager
def exclusive(data: Path) -> Iterator[None]:
    fd = _lock(data, fcntl.LOCK_EX)
    try:
        yield
    finally:
        os.close(fd)
