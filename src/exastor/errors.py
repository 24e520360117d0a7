"""Protocol-neutral errors raised by the namespace, metadata and engine layers.

The S3 and Blob front-ends each map these to their own protocol's codes, so
nothing below the front-ends knows what S3 or Blob is.
"""

from __future__ import annotations

from pathlib import Path


class StoreError(Exception):
    """Base class. ``detail`` is safe to show to a client."""

    def __init__(self, detail: str = "", **info: object) -> None:
        self.detail = detail
        self.info = info
        super().__init__(detail or self.__class__.__name__)


class AccessDenied(StoreError): ...
class BucketNotFound(StoreError): ...
class BucketExists(StoreError):
    """``info['owned_by_caller']`` tells the caller whether it already owns it."""
class BucketNotEmpty(StoreError): ...
class InvalidBucketName(StoreError): ...
class InvalidKey(StoreError): ...
class KeyTooLong(StoreError): ...
class ObjectNotFound(StoreError): ...
class VersionNotFound(StoreError): ...
class MethodNotAllowed(StoreError):
    """E.g. reading a version that is a delete marker."""
class UploadNotFound(StoreError): ...
class InvalidPart(StoreError): ...
class InvalidPartOrder(StoreError): ...
class PartTooSmall(StoreError): ...
class PreconditionFailed(StoreError): ...
class ConditionalConflict(PreconditionFailed):
    """A conditional write's condition held when the request arrived, but a conflicting change (a
    delete) committed before the write did (S3: 409 ConditionalRequestConflict; retry)."""
class NotModified(StoreError): ...
class BadDigest(StoreError): ...
class IncompleteBody(StoreError): ...
class EntityTooLarge(StoreError): ...
class InvalidArgument(StoreError): ...
class InvalidRange(StoreError): ...
class QuotaExceeded(StoreError):
    """A capacity quota (bytes or objects, of a bucket or of its owner) would be exceeded; nothing was
    written. ``info['scope']`` is 'bucket' or 'user'."""
class SlowDown(StoreError):
    """A QoS rate limit refused the request (http/qos.py). ``info['retry_after']``: whole seconds until
    it would pass; ``info['scope']``: 'user' or 'bucket'."""
class InsufficientStorage(StoreError):
    """A drive is full; nothing of the failed write became visible."""
class Unavailable(StoreError):
    """Transient: too few drives, a raced garbage collection. The client should retry."""
class DataCorrupted(StoreError):
    """Every copy of some bytes failed its checksum. Never served to a client as data."""


class AuthorizationMissing(Exception):
    """A request touched a bucket or object its authorization decision does not cover: a bug in a
    handler (a resource nobody declared), never a client's doing. Not a StoreError, so no front-end
    maps it to a protocol answer: the request fails closed as an internal error, logged with its
    traceback."""


class MetadataUnreadable(Exception):
    """The metadata database file is not a readable database (damaged, or not SQLite at all).
    Not a StoreError: no request maps to it; commands stop with a pointer to ``fsck --restore-meta``."""


class CommandError(Exception):
    """An operator's command cannot proceed (bad input, a missing or unusable data directory). The
    `exastor` entry point prints ``exastor <command>: <message>`` and exits with ``code``; never a
    traceback."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


# In a data directory whose metadata is in PostgreSQL (written by the first command that opens it with
# --meta, datadir/opening.py): the database's URL without its password.
METADATA_ELSEWHERE = "metadata-in-postgresql"


def metadata_elsewhere(data: Path) -> CommandError | None:
    """The error for a command run without --meta on a store whose metadata is in PostgreSQL (None
    for any other directory): opened as an embedded store it would get, and create, an empty SQLite
    database beside the store, and report an empty store, reduce nothing or find no users."""
    marker = data / METADATA_ELSEWHERE
    if not marker.exists():  # not a drive: a file in --data
        return None
    where = marker.read_text().strip()  # not a drive: a file in --data
    return CommandError(f"the store in {data} keeps its metadata in PostgreSQL ({where}): "
                        "pass --meta postgresql://... or set EXASTOR_META_URL")


def data_dir_unusable(data: object, exc: BaseException) -> CommandError:
    """The one message for a data directory the process cannot write (read-only mount, wrong owner)."""
    why = getattr(exc, "strerror", None) or str(exc)
    where = getattr(exc, "filename", None)
    return CommandError(f"cannot use the data directory {data}: {why}" + (f" ({where})" if where else "")
                        + ". exastor needs to write there, even to read its metadata (SQLite WAL): check the "
                          "mount and the owner")
class MetadataOpenError(Exception):
    """The metadata database cannot be opened: unreachable (PostgreSQL down, a wrong URL), written by
    a newer exastor, or a schema migration failed (the database is left as it was). Not a
    StoreError: no request maps to it; commands stop with the message."""
