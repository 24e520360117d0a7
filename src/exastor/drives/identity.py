"""A drive's identity file: which store and which drive of it a directory is.

Written once, when the drive joins a store (``exastor drive add``, a new ``--drive``, the first
start), published atomically and fsynced (``DriveIO.put``): ``exastor-drive.json`` at the
drive's root, e.g.::

    {"magic": "exastor-drive", "format": 1, "store": "3f2a...", "drive": 2, "created_ns": 17...}

Without it, or with another store's or another drive's, the drive is *offline*: never written,
never repaired into, never swept. That is what keeps an unmounted disk (an empty mount point), the
wrong disk mounted in the right place, or another store's drive from being mistaken for this one.
"""

from __future__ import annotations

import errno
import json
import time
from dataclasses import dataclass

from exastor.drives.base import IDENTITY_NAME, DriveIO, DriveUnreachable, process_short

MAGIC = "exastor-drive"
FORMAT = 1


@dataclass(frozen=True, slots=True)
class Identity:
    store: str      # the store id (hex), also in the database
    drive: int      # the drive's id in the database's drives table
    created_ns: int = 0
    format: int = FORMAT

    def encode(self) -> bytes:
        return (json.dumps({"magic": MAGIC, "format": self.format, "store": self.store, "drive": self.drive,
                            "created_ns": self.created_ns}, sort_keys=True) + "\n").encode()

    @staticmethod
    def new(store: str, drive: int) -> Identity:
        return Identity(store, drive, time.time_ns())


class Unidentified(Exception):
    """Why a drive's identity could not be established (``reason`` is for operators)."""

    def __init__(self, reason: str, *, root_missing: bool = False, missing: bool = False,
                 unreachable: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.root_missing, self.missing = reason, root_missing, missing
        # A remote drive that did not answer, or this process short of descriptors or memory
        # (drives.base.PROCESS_ERRNOS): nothing is known about the drive.
        self.unreachable = unreachable


def read(drive: DriveIO) -> Identity:
    """The drive's identity; Unidentified if the root or the file is missing, unreadable or malformed."""
    try:
        try:
            raw = drive.read(IDENTITY_NAME)
        finally:
            # Never keep it open: a cached descriptor would keep verifying a disk that was swapped
            # out (and would keep it from being unmounted).
            drive.release([IDENTITY_NAME])
    except FileNotFoundError:
        try:
            drive.stat("")
        except FileNotFoundError:
            raise Unidentified("the drive's directory is missing (not mounted?)", root_missing=True) from None
        except OSError as exc:
            raise Unidentified(f"the drive's directory is unreadable: {exc}",
                               unreachable=isinstance(exc, DriveUnreachable) or process_short(exc)) from None
        raise Unidentified(f"no identity file ({IDENTITY_NAME}): not mounted, or not this store's drive",
                           missing=True) from None
    except DriveUnreachable as exc:
        raise Unidentified(f"unreachable: {exc}", unreachable=True) from None
    except OSError as exc:
        # Out of descriptors or memory here says nothing about the drive: unreachable from this process.
        raise Unidentified(f"identity file unreadable: {errno.errorcode.get(exc.errno or 0, '')} {exc}",
                           unreachable=process_short(exc)) from None
    try:
        doc = json.loads(raw)
        if doc.get("magic") != MAGIC:
            raise ValueError("wrong magic")
        if int(doc["format"]) > FORMAT:
            raise ValueError(f"format {doc['format']} is newer than this exastor understands")
        return Identity(str(doc["store"]), int(doc["drive"]), int(doc.get("created_ns", 0)), int(doc["format"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise Unidentified(f"identity file malformed: {exc}") from None


def verify(drive: DriveIO, store: str, drive_id: int) -> Identity:
    """The identity, if it names this store and this drive; else Unidentified saying whose it is."""
    found = read(drive)
    if found.store != store:
        raise Unidentified(f"belongs to another store ({found.store[:12]}..., drive {found.drive})")
    if found.drive != drive_id:
        raise Unidentified(f"is drive {found.drive} of this store, not drive {drive_id} (drives swapped?)")
    return found
