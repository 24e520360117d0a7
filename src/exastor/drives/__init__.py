"""Drive I/O: the one seam every byte on a drive goes through (below engine/ and services/).

``open_drive(location)`` gives the ``DriveIO`` for a drive: a ``LocalDrive`` for a directory,
wrapped in a ``FaultyDrive`` when ``EXASTOR_FAULTS`` names a rule file (tests). A remote drive (a
drive server over HTTP) will implement the same interface.
"""

from __future__ import annotations

import os
from pathlib import Path

from exastor.drives.base import IDENTITY_NAME, SUBDIRS, Buffers, DriveIO, FsyncFailed, Space, Stat, age_s
from exastor.drives.faulty import FaultRules, FaultyDrive, power_cut
from exastor.drives.identity import Identity, Unidentified
from exastor.drives.local import LocalDrive

__all__ = ["IDENTITY_NAME", "SUBDIRS", "Buffers", "DriveIO", "FaultRules", "FaultyDrive", "FsyncFailed",
           "Identity", "LocalDrive", "Space", "Stat", "Unidentified", "age_s", "open_drive", "power_cut"]

_rules: dict[str, FaultRules] = {}


def open_drive(location: str | Path) -> DriveIO:
    """The drive at ``location`` (a directory today; a URL once drive servers exist)."""
    drive: DriveIO = LocalDrive(location)
    faults = os.environ.get("EXASTOR_FAULTS")
    if faults:
        rules = _rules.setdefault(faults, FaultRules(faults))  # one parse of the file per process
        drive = FaultyDrive(drive, rules)
    return drive
