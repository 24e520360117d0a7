"""Drive I/O: the one seam every byte on a drive goes through (below engine/ and services/).

``open_drive(location)`` gives the ``DriveIO`` for a drive: a ``LocalDrive`` for a directory, a
``RemoteDrive`` for a drive server's URL (``http://HOST:PORT/NAME``, signed with the cluster key),
wrapped in a ``FaultyDrive`` when ``EXASTOR_FAULTS`` names a rule file (tests).
"""

from __future__ import annotations

import os
from pathlib import Path

from exastor.drives.base import (
    IDENTITY_NAME,
    SUBDIRS,
    AnswerLost,
    Buffers,
    DriveIO,
    DriveNotServed,
    DriveUnreachable,
    Fenced,
    FsyncFailed,
    ServerRestarted,
    Space,
    Stat,
    WritesInDoubt,
    age_s,
    process_short,
)
from exastor.drives.faulty import FaultRules, FaultyDrive, power_cut
from exastor.drives.identity import Identity, Unidentified
from exastor.drives.local import DIRECT_ALIGN, LocalDrive, aligned_buffer

__all__ = ["DIRECT_ALIGN", "IDENTITY_NAME", "SUBDIRS", "Buffers", "DriveIO", "DriveNotServed", "DriveUnreachable", "FaultRules", "FaultyDrive",
           "AnswerLost", "Fenced", "FsyncFailed", "Identity", "LocalDrive", "ServerRestarted", "Space", "Stat", "Unidentified",
           "WritesInDoubt", "age_s", "aligned_buffer", "cluster_key", "is_url", "open_drive", "power_cut", "process_short"]

_rules: dict[str, FaultRules] = {}
_keys: dict[str, bytes] = {}


def is_url(location: object) -> bool:
    """Whether a drive's location is a drive server's URL rather than a directory."""
    return isinstance(location, str) and location.startswith(("http://", "https://"))


def cluster_key(key_file: str | Path | None = None) -> bytes:
    """The cluster key remote drives sign with: ``EXASTOR_CLUSTER_KEY_FILE``, else ``key_file`` (a
    gateway's DATA/cluster.key). ClusterKeyError if neither holds a usable key."""
    from exastor.drives.wire import ClusterKeyError, load_key

    path = os.environ.get("EXASTOR_CLUSTER_KEY_FILE") or (str(key_file) if key_file else "")
    if not path:
        raise ClusterKeyError("no cluster key: put it in DATA/cluster.key or name it in EXASTOR_CLUSTER_KEY_FILE")
    if path not in _keys:
        _keys[path] = load_key(Path(path))
    return _keys[path]


def open_drive(location: str | Path, *, key_file: str | Path | None = None) -> DriveIO:
    """The drive at ``location``: a directory, or a drive server's URL (``key_file``: where the
    cluster key is when ``EXASTOR_CLUSTER_KEY_FILE`` does not say)."""
    drive: DriveIO
    if is_url(location):
        from exastor.drives.remote import RemoteDrive  # urllib3 only where remote drives are used

        drive = RemoteDrive(str(location), cluster_key(key_file))
    else:
        drive = LocalDrive(location)
    faults = os.environ.get("EXASTOR_FAULTS")
    if faults:
        rules = _rules.setdefault(faults, FaultRules(faults))  # one parse of the file per process
        drive = FaultyDrive(drive, rules)
    return drive
