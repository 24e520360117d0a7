"""The drive I/O seam: every byte the store keeps on a drive goes through ``DriveIO``.

Why one small interface: the engine and the services must not care whether a drive is a local
directory, a drive behind a fault injector, or a drive served by another host. So the interface
is shaped like a network protocol: names relative to the drive, whole requests with whole
answers, no file descriptors or paths handed out. An implementation may cache descriptors
inside itself (``LocalDrive`` does) but never lets one escape.

Durability is explicit, as with POSIX: ``create`` and ``append`` are durable after ``fsync`` of
the file (and, for a new name, ``sync_dir`` of its directory); ``put`` is durable when it
returns. A failed ``fsync`` is final: the implementation never lets the same file be written or
fsynced again (PostgreSQL's "fsyncgate": after a failed fsync the kernel may have dropped the
dirty pages and a retry would report success for lost data).

Errors are ``OSError`` with the errno a local file system would give (ENOENT, EEXIST, EIO,
ENOSPC, EROFS, ...), whatever the transport: the engine maps them to drive states.
"""

from __future__ import annotations

import abc
import errno
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import xxhash

Piece = bytes | bytearray | memoryview
Buffers = Piece | Sequence[Piece]

# A fenced file (an open segment's replica, docs/format.md "Segment write leases") keeps the highest
# lease epoch its writers used in these 8 bytes (u64, little-endian): inside the segment header's
# reserved bytes, so the check costs one pread of a descriptor the drive already holds.
EPOCH_OFFSET = 32
IDENTITY_NAME = "exastor-drive.json"   # the drive's identity file, at its root (drives/identity.py)
SUBDIRS = ("segments", "shards")       # created when a drive joins a store, never at any other time


@dataclass(frozen=True, slots=True)
class Stat:
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Space:
    free: int    # bytes an unprivileged writer may still use
    total: int


def age_s(stat: Stat) -> float:
    """Seconds since ``stat``'s modification (grace periods on leftovers another process may own)."""
    return time.time() - stat.mtime_ns / 1e9


class FsyncFailed(OSError):
    """This file's fsync (or a write to it) failed before: it is never written or fsynced again."""


class WritesInDoubt(FsyncFailed):
    """This file's unsynced writes are in doubt for a reason that is not the drive's (the network, a
    restarted drive server): the file is never written or fsynced again, exactly as after a failed
    fsync, and commits that need those bytes fail - but this is never a reason to mark the drive
    failed. The subclasses say why."""


class AnswerLost(WritesInDoubt):
    """This file's earlier write or fsync got no answer (the drive server was unreachable, or the
    network failed mid-request): what reached the disk is unknown. The drive answered nothing against
    itself (the request that lost the answer already made the drive unavailable to this process until
    a probe is answered)."""


class ServerRestarted(WritesInDoubt):
    """The drive server restarted after writes to this file that an fsync would cover: they may have
    died with the old process's page cache (as in a power cut), so that fsync fails, final. The disk
    did not fail: the server answers its own code for this (``RESTARTED``), never a plain EIO, which
    stays what a broken disk answers."""


class Fenced(OSError):
    """A write carried an older lease epoch than the file has seen (errno ESTALE): another writer took
    the segment over (to seal it), so this writer's lease is gone. Not the drive's fault: the writer
    abandons the segment (its unsynced bytes fail their commits) and opens a new one."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ESTALE, message)


class DriveUnreachable(OSError):
    """The drive could not be reached: its server is down, refuses us, or the network failed or timed
    out (``RemoteDrive``). The drive is *unavailable*, exactly like a local drive that is offline: it
    is left out of reads and writes and its data is expected back. Never "not found" (that is only
    ever a positive answer from the drive), and never a reason to mark the drive failed."""


class DriveNotServed(DriveUnreachable):
    """The drive server answered - signed, so it is alive and of this cluster - that it does not serve
    this drive (its disk was lost or unmounted, or it was started without it). Unavailable, as above;
    but it says nothing against the server's other drives."""


# The process (or the kernel, or a drive server's process) ran short of descriptors, memory or buffers,
# or a call was interrupted: nothing is known about the drive itself. Never a reason to mark a drive
# failed or offline for anyone, nor a file on it bad: the request fails (503) and is retried.
PROCESS_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS, errno.EAGAIN, errno.EINTR})


def process_short(exc: BaseException) -> bool:
    """Whether ``exc`` is the process's or the kernel's shortage (``PROCESS_ERRNOS``), not the drive's."""
    return isinstance(exc, OSError) and exc.errno in PROCESS_ERRNOS


def pieces(data: Buffers) -> list[Piece]:
    return [data] if isinstance(data, bytes | bytearray | memoryview) else list(data)


def check_name(name: str) -> str:
    """A name relative to the drive: no absolute paths, no ``..``, no empty components."""
    if name in ("", "."):
        return ""
    parts = name.split("/")
    if name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in name:
        raise OSError(errno.EINVAL, f"not a drive-relative name: {name!r}")
    return name


def parent(name: str) -> str:
    """The directory holding ``name`` ('' for the drive's root)."""
    return name.rsplit("/", 1)[0] if "/" in name else ""


class DriveIO(abc.ABC):
    """One drive. ``label`` says where it is (a path, a URL): for messages and fault rules."""

    label: str

    # --- files that grow -----------------------------------------------------------
    @abc.abstractmethod
    def create(self, name: str, data: Buffers = b"") -> None:
        """Create ``name``, which must not exist (FileExistsError), holding ``data``; a missing
        subdirectory of the root is made (durably), never the root itself."""

    @abc.abstractmethod
    def append(self, name: str, offset: int, data: Buffers, *, epoch: int = 0) -> None:
        """Write ``data`` at ``offset``, which must be the file's current length (so a retried
        request cannot write twice). All of it is written, or OSError.

        ``epoch`` > 0: the writer's lease epoch (fencing). Refused with ``Fenced`` if the file has
        seen a higher one; a higher one than the file's is recorded in it durably first (bytes
        ``EPOCH_OFFSET``..+8, written with O_DSYNC), atomically with the write against ``fence``
        from any thread or process. 0: unfenced (files that are not segment replicas)."""

    @abc.abstractmethod
    def write_at(self, name: str, offset: int, data: Buffers) -> None:
        """Write ``data`` over bytes at ``offset`` of the existing file ``name`` (it may grow) and make
        it durable before returning (a write with O_DSYNC: one request, no separate fsync). Used where
        a file is filled with durable zeros ahead and then written in place (the metadata journal):
        overwriting allocated blocks needs no file-system metadata flush. A failure is final for that
        file, as for ``fsync``."""

    @abc.abstractmethod
    def truncate(self, name: str, size: int, *, epoch: int = 0) -> None:
        """Cut ``name`` back to ``size`` bytes (a torn tail, a failed append); ``epoch`` as for
        ``append``."""

    @abc.abstractmethod
    def fence(self, name: str, epoch: int) -> None:
        """Record ``epoch`` in the existing file ``name`` durably, so that every later ``append`` or
        ``truncate`` with a lower epoch is refused (``Fenced``); ``Fenced`` if it has a higher one
        already. A new holder of a segment's lease calls it on every replica before reading them."""

    @abc.abstractmethod
    def fsync(self, name: str) -> None:
        """Make ``name``'s bytes durable. A failure is final for that file (FsyncFailed after)."""

    @abc.abstractmethod
    def sync_dir(self, directory: str = "") -> None:
        """Make creates, renames and unlinks in ``directory`` durable."""

    # --- files written once ---------------------------------------------------------
    @abc.abstractmethod
    def put(self, name: str, data: Buffers | Iterable[Piece]) -> None:
        """Publish ``name`` atomically and durably: a temporary file, fsync, rename, directory fsync.
        After a crash the name holds all of ``data`` or does not exist. FileExistsError if it does."""

    # --- reading ---------------------------------------------------------------------
    @abc.abstractmethod
    def pread(self, name: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset`` (fewer only at the end of the file)."""

    def pread_into(self, name: str, offset: int, buffer: memoryview) -> int:
        """Fill ``buffer`` from ``offset`` of ``name``; returns how many bytes were read (fewer only
        at the end of the file). For a caller that works on the bytes in place (decrypting a run of
        records where it lies): a drive that can read straight into it overrides this copy."""
        data = self.pread(name, offset, len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def read(self, name: str) -> bytes:
        """A whole (small) file."""
        return self.pread(name, 0, self.stat(name).size)

    def block_digests(self, name: str, offset: int, length: int, block: int) -> list[int]:
        """The xxh3-64 of each ``block``-byte piece of ``[offset, offset + length)`` (the last one
        shorter at the end of the range or the file), for a scrubber that compares them with a
        checksum table it read: a drive on another host computes them where the bytes are and sends
        8 bytes per block instead of the block (drives/server.py)."""
        if block <= 0:
            raise OSError(errno.EINVAL, "block must be positive")
        view = memoryview(self.pread(name, offset, length))
        return [xxhash.xxh3_64_intdigest(view[i:i + block]) for i in range(0, len(view), block)]

    @abc.abstractmethod
    def stat(self, name: str = "") -> Stat:
        """Size and modification time; ``''`` is the drive's root. FileNotFoundError if absent."""

    @abc.abstractmethod
    def list(self, directory: str = "") -> list[str]:
        """Names in ``directory`` (not recursive), sorted. FileNotFoundError if it is absent."""

    # --- the namespace ----------------------------------------------------------------
    @abc.abstractmethod
    def rename(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst`` (replacing it) and make that durable."""

    @abc.abstractmethod
    def unlink(self, name: str) -> bool:
        """Remove ``name``; False if it was not there. Not durable until ``sync_dir``."""

    # --- the drive ---------------------------------------------------------------------
    @abc.abstractmethod
    def space(self) -> Space: ...

    @abc.abstractmethod
    def format(self, identity: bytes) -> None:
        """Make this drive a store's: create its root and ``SUBDIRS`` and publish ``identity``.
        Only when a drive joins a store (``exastor drive add``, the first start): the server never
        re-creates a drive's root. Refused (FileExistsError) unless the root is absent or empty."""

    @abc.abstractmethod
    def release(self, names: Iterable[str]) -> None:
        """Forget cached state (descriptors) for ``names``: they were deleted or will not be read. A
        name ending in ``*`` stands for every name it begins."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def reachable(self) -> bool:
        """False for a while after ``DriveUnreachable`` (a remote drive): callers skip the drive
        instead of waiting for its timeout on every request. A local drive is always reachable."""
        return True
