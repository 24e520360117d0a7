"""Small private files in the data directory (credentials, certificates, keys), made durable."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` (mode 0600), durably: written to a temporary file, fsynced, renamed over
    the name, the directory fsynced - a power cut leaves the old content or the new, never a torn
    or empty file, and never loses the name once this returned."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # not a drive: a file in --data
    os.fchmod(fd, 0o600)  # O_CREAT's mode applies only to a new file
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())  # not a drive: a file in --data
    os.replace(tmp, path)  # not a drive: a file in --data
    fsync_dir(path.parent)  # the rename


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)  # not a drive: a directory in --data
    try:
        os.fsync(fd)  # not a drive: a directory in --data
    finally:
        os.close(fd)
