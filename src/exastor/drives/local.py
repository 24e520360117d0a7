"""A drive that is a local directory (one per SSD).

Descriptors are cached per name, reference-counted so that ``release`` never closes one a
concurrent ``pread`` is using (a closed number can be reused by the next ``open`` and the read
would return another file's bytes). Readers' descriptors are kept in a least-recently-used table
of at most ``max_readers`` (``READERS_KEPT``): files other processes delete, and the many distinct
shard and segment files a long read workload touches, would otherwise keep descriptors open forever
(EMFILE). Writers' descriptors are one per open segment (and journal file), dropped at seal. Nothing here creates the drive's root except ``format``:
every other call under a missing root fails with ENOENT, which the drive set reads as "offline".
"""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from exastor.drives.base import (
    EPOCH_OFFSET,
    IDENTITY_NAME,
    SUBDIRS,
    Buffers,
    DriveIO,
    Fenced,
    FsyncFailed,
    Piece,
    Space,
    Stat,
    check_name,
    parent,
    pieces,
)

_IOV_MAX = 1024
# O_DIRECT (``put``): a piece whose address and length are multiples of DIRECT_ALIGN, at least
# DIRECT_MIN long, at offset 0, is written straight from the caller's memory to the device - no
# copy into the page cache (the largest single CPU cost of writing a stripe: ~1.6 CPU-s per GiB
# here) and no cache filled with bytes nobody reads soon. EXASTOR_DIRECT_IO=0 turns it off (A/B).
DIRECT_ALIGN = 4096
DIRECT_MIN = 256 << 10
DIRECT_IO = os.environ.get("EXASTOR_DIRECT_IO", "1") != "0" and hasattr(os, "O_DIRECT")
# Nothing of an earlier write is in doubt after these: the caller cuts the failed append back, and a
# later fsync still tells the truth about the bytes before it.
_WRITE_ERRORS_NOT_FINAL = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
_EMPTY_ROOT_OK = {"lost+found"}  # a fresh ext4 file system
# Everything on a drive is the store's alone: tenants' data, metadata copies and the journal
# (docs/security.md, "Secrets at rest").
FILE_MODE, DIR_MODE = 0o600, 0o700
_EPOCH = struct.Struct("<Q")
_FENCE_STRIPES = 64  # threads of one process (a drive server's pool) exclude each other per name


def _readers_kept() -> int:
    """Reader descriptors one LocalDrive keeps open (least recently used closed first): 256, or a 32nd
    of the process's descriptor limit when that is lower (16 drives then keep at most half of it,
    leaving the rest to sockets, writers and the database)."""
    try:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (OSError, ValueError):
        return 256
    return 256 if soft == resource.RLIM_INFINITY else max(16, min(256, soft // 32))


READERS_KEPT = _readers_kept()
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


class _Handle:
    __slots__ = ("fd", "refs", "closing")

    def __init__(self, fd: int) -> None:
        self.fd, self.refs, self.closing = fd, 0, False


class LocalDrive(DriveIO):
    def __init__(self, root: str | Path, *, max_readers: int = READERS_KEPT) -> None:
        self.root = Path(root)
        self.label = str(self.root)
        self._lock = threading.Lock()
        self.max_readers = max(1, max_readers)
        self._readers: OrderedDict[str, _Handle] = OrderedDict()   # least recently used first
        self._writers: dict[str, tuple[_Handle, int]] = {}   # name -> (handle, current length)
        self._poisoned: set[str] = set()
        self._stripes = [threading.Lock() for _ in range(_FENCE_STRIPES)]
        self._direct = DIRECT_IO  # cleared for good when the filesystem refuses O_DIRECT (tmpfs: EINVAL)

    def __repr__(self) -> str:
        return f"LocalDrive({self.label!r})"

    def _path(self, name: str) -> Path:
        name = check_name(name)
        return self.root / name if name else self.root

    # --- descriptors ---------------------------------------------------------------
    def _acquire(self, table: dict, name: str, flags: int) -> _Handle:
        with self._lock:
            entry = table.get(name)
            handle = entry[0] if isinstance(entry, tuple) else entry
            if handle is None or handle.closing:
                handle = _Handle(self._open_fd(name, flags))
                table[name] = (handle, os.fstat(handle.fd).st_size) if table is self._writers else handle
                if table is self._readers:
                    while len(self._readers) > self.max_readers:  # O(1) each: the oldest goes
                        self._drop(self._readers, next(iter(self._readers)))
            elif table is self._readers:
                self._readers.move_to_end(name)
            handle.refs += 1
            return handle

    def _open_fd(self, name: str, flags: int) -> int:
        """``open`` (the lock is held); out of descriptors, the idle readers are closed and it is tried once more."""
        path = self._path(name)
        try:
            return os.open(path, flags | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno not in _OUT_OF_DESCRIPTORS or not self._readers:
                raise
        for idle in [n for n, h in self._readers.items() if h.refs == 0]:
            self._drop(self._readers, idle)
        return os.open(path, flags | os.O_CLOEXEC)

    def _let_go(self, handle: _Handle) -> None:
        with self._lock:
            handle.refs -= 1
            if handle.closing and handle.refs == 0:
                os.close(handle.fd)

    def _drop(self, table: dict, name: str) -> None:
        """Close ``name``'s descriptor once nobody uses it (the lock is held)."""
        entry = table.pop(name, None)
        handle = entry[0] if isinstance(entry, tuple) else entry
        if handle is not None:
            handle.closing = True
            if handle.refs == 0:
                os.close(handle.fd)

    def _refuse_if_poisoned(self, name: str) -> None:
        if name in self._poisoned:
            raise FsyncFailed(errno.EIO, f"{self.label}/{name}: an earlier write or fsync failed; "
                                         "the file is never written again")

    def _poison(self, name: str) -> None:
        with self._lock:
            self._poisoned.add(name)
            self._drop(self._writers, name)

    # --- fencing ----------------------------------------------------------------------
    @contextmanager
    def _epoch_held(self, name: str, epoch: int, fd: int, *, fencing: bool = False) -> Iterator[None]:
        """While held, no other thread or process can change ``name``'s epoch, and ours is current:
        a fence either lands before this write (and refuses it) or after it (and a new holder reads
        the write). Threads are excluded by a striped lock, processes by ``flock`` on the file."""
        if epoch <= 0:
            yield
            return
        if epoch >= 1 << 64:
            raise OSError(errno.EINVAL, f"lease epoch {epoch}: at most 2^64 - 1")
        with self._stripes[hash(name) % _FENCE_STRIPES]:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                raw = os.pread(fd, _EPOCH.size, EPOCH_OFFSET)
                if len(raw) < _EPOCH.size:
                    raise OSError(errno.EINVAL, f"{self.label}/{name}: too short to carry a lease epoch")
                seen = _EPOCH.unpack(raw)[0]
                if seen > epoch:
                    raise Fenced(f"{self.label}/{name}: lease epoch {epoch} is stale, the file has seen {seen}: "
                                 "another writer took this segment over")
                if seen < epoch or fencing:
                    try:  # durable before the write it admits: a restart cannot forget a fence
                        if os.pwritev(fd, [_EPOCH.pack(epoch)], EPOCH_OFFSET, os.RWF_DSYNC) != _EPOCH.size:
                            raise OSError(errno.EIO, "short write of the lease epoch")
                    except OSError:
                        self._poison(name)
                        raise
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def fence(self, name: str, epoch: int) -> None:
        if epoch <= 0:
            raise OSError(errno.EINVAL, "a fence needs an epoch above 0")
        with self._lock:
            self._refuse_if_poisoned(name)
        handle = self._acquire(self._writers, name, os.O_RDWR)
        try:
            with self._epoch_held(name, epoch, handle.fd, fencing=True):
                pass
        finally:
            self._let_go(handle)

    # --- files that grow -------------------------------------------------------------
    def _subdir_for(self, name: str) -> None:
        """Make ``name``'s parent if it is a missing subdirectory (one level; a missing root stays
        missing: ENOENT, read as offline)."""
        path = self._path(name)
        if parent(name) and not path.parent.is_dir():
            path.parent.mkdir(mode=0o700)
            _fsync_dir(path.parent.parent)

    def create(self, name: str, data: Buffers = b"") -> None:
        path = self._path(name)
        self._subdir_for(name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        handle = _Handle(fd)
        with self._lock:
            self._poisoned.discard(name)
            self._drop(self._writers, name)
            self._writers[name] = (handle, 0)
        self.append(name, 0, data)

    def append(self, name: str, offset: int, data: Buffers, *, epoch: int = 0) -> None:
        with self._lock:
            self._refuse_if_poisoned(name)
        handle = self._acquire(self._writers, name, os.O_RDWR)
        try:
            with self._epoch_held(name, epoch, handle.fd):
                self._append_held(name, handle, offset, data)
        finally:
            self._let_go(handle)

    def _append_held(self, name: str, handle: _Handle, offset: int, data: Buffers) -> None:
        with self._lock:
            length = self._writers[name][1] if name in self._writers else offset
        if length != offset:
            raise OSError(errno.EINVAL, f"{self.label}/{name}: append at {offset}, the file has {length} bytes")
        bufs = pieces(data)
        total = sum(len(b) for b in bufs)
        try:
            _pwritev_all(handle.fd, bufs, offset, total)
        except OSError as exc:
            if exc.errno not in _WRITE_ERRORS_NOT_FINAL:
                self._poison(name)
            raise
        with self._lock:
            if name in self._writers and self._writers[name][0] is handle:
                self._writers[name] = (handle, offset + total)

    def write_at(self, name: str, offset: int, data: Buffers) -> None:
        with self._lock:
            self._refuse_if_poisoned(name)
        handle = self._acquire(self._writers, name, os.O_RDWR)
        try:
            bufs = pieces(data)
            total = sum(len(b) for b in bufs)
            try:
                if os.pwritev(handle.fd, bufs, offset, os.RWF_DSYNC) != total:
                    raise OSError(errno.ENOSPC, f"{self.label}/{name}: short write")
            except OSError:
                self._poison(name)  # the flush is part of the request: never retried on this file
                raise
            with self._lock:
                entry = self._writers.get(name)
                if entry is not None and entry[0] is handle and offset + total > entry[1]:
                    self._writers[name] = (handle, offset + total)
        finally:
            self._let_go(handle)

    def truncate(self, name: str, size: int, *, epoch: int = 0) -> None:
        with self._lock:
            self._refuse_if_poisoned(name)
        if epoch <= 0:
            os.truncate(self._path(name), size)
        else:
            if size < EPOCH_OFFSET + _EPOCH.size:
                raise OSError(errno.EINVAL, f"{self.label}/{name}: a fenced file keeps its epoch: not cut below "
                                            f"{EPOCH_OFFSET + _EPOCH.size} bytes")
            handle = self._acquire(self._writers, name, os.O_RDWR)
            try:
                with self._epoch_held(name, epoch, handle.fd):
                    os.ftruncate(handle.fd, size)
            finally:
                self._let_go(handle)
        with self._lock:
            entry = self._writers.get(name)
            if entry is not None:
                self._writers[name] = (entry[0], size)

    def fsync(self, name: str) -> None:
        with self._lock:
            self._refuse_if_poisoned(name)
            entry = self._writers.get(name)
            handle = entry[0] if entry is not None else None
            if handle is not None:
                handle.refs += 1
        try:
            if handle is not None:
                if os.fstat(handle.fd).st_nlink == 0:  # deleted under us: durable nowhere
                    raise FileNotFoundError(errno.ENOENT, f"{self.label}/{name} was deleted while open")
                os.fsync(handle.fd)
            else:
                fd = os.open(self._path(name), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except FileNotFoundError:
            raise
        except OSError:
            self._poison(name)
            raise
        finally:
            if handle is not None:
                self._let_go(handle)

    def sync_dir(self, directory: str = "") -> None:
        fd = os.open(self._path(directory), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- files written once --------------------------------------------------------------
    def put(self, name: str, data: Buffers | Iterable[Piece]) -> None:
        path = self._path(name)
        self._subdir_for(name)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        try:
            offset = 0
            for piece in ([data] if isinstance(data, bytes | bytearray | memoryview) else data):
                if not (offset == 0 and self._direct and _direct_ok(piece) and self._put_direct(tmp, piece)):
                    _pwritev_all(fd, [piece], offset, len(piece))
                offset += len(piece)
            os.fsync(fd)  # the inode, whichever descriptor wrote its bytes: they are on the device only after it
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        try:
            os.link(tmp, path)  # never replaces: write-once
        finally:
            tmp.unlink(missing_ok=True)
        self.sync_dir(parent(name))

    def _put_direct(self, tmp: Path, piece: Piece) -> bool:
        """Write ``piece`` at offset 0 of ``tmp`` with O_DIRECT; False (nothing to undo: the caller
        writes it again through the page cache) when this filesystem refuses O_DIRECT."""
        fd = -1
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
            _pwritev_all(fd, [piece], 0, len(piece))
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # a write error is the drive's, as through the page cache
                raise
            self._direct = False
            return False
        finally:
            if fd >= 0:
                os.close(fd)
        return True

    # --- reading ------------------------------------------------------------------------
    def pread(self, name: str, offset: int, length: int) -> bytes:
        handle = self._acquire(self._readers, name, os.O_RDONLY)
        try:
            return os.pread(handle.fd, length, offset)
        finally:
            self._let_go(handle)

    def pread_into(self, name: str, offset: int, buffer: memoryview) -> int:
        handle = self._acquire(self._readers, name, os.O_RDONLY)
        try:
            done = 0
            while done < len(buffer):  # preadv may return short of a full buffer before the end
                got = os.preadv(handle.fd, [buffer[done:]], offset + done)
                if got == 0:
                    break  # end of file
                done += got
            return done
        finally:
            self._let_go(handle)

    def stat(self, name: str = "") -> Stat:
        st = os.stat(self._path(name))
        return Stat(st.st_size, st.st_mtime_ns)

    def list(self, directory: str = "") -> list[str]:
        return sorted(os.listdir(self._path(directory)))

    # --- the namespace ------------------------------------------------------------------
    def rename(self, src: str, dst: str) -> None:
        os.replace(self._path(src), self._path(dst))
        with self._lock:
            self._drop(self._readers, src)
            self._drop(self._writers, src)
            self._drop(self._readers, dst)
        self.sync_dir(parent(dst))
        if parent(src) != parent(dst):
            self.sync_dir(parent(src))

    def unlink(self, name: str) -> bool:
        try:
            os.unlink(self._path(name))
            gone = True
        except FileNotFoundError:
            gone = False
        with self._lock:
            self._drop(self._readers, name)
            self._drop(self._writers, name)
        return gone

    # --- the drive ----------------------------------------------------------------------
    def space(self) -> Space:
        st = os.statvfs(self.root)
        return Space(st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)

    def format(self, identity: bytes) -> None:
        if self.root.exists():
            extra = set(os.listdir(self.root)) - _EMPTY_ROOT_OK
            if extra:
                raise FileExistsError(errno.EEXIST, f"{self.label} is not empty ({', '.join(sorted(extra)[:3])})")
        self.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        for sub in SUBDIRS:
            (self.root / sub).mkdir(mode=DIR_MODE, exist_ok=True)
        self.put(IDENTITY_NAME, identity)  # its directory fsync of the root also covers SUBDIRS made above
        _fsync_dir(self.root.parent)

    def release(self, names: Iterable[str]) -> None:
        with self._lock:
            for pattern in names:
                matching = [n for n in (*self._readers, *self._writers) if n.startswith(pattern[:-1])] \
                    if pattern.endswith("*") else [pattern]
                for name in matching:
                    self._drop(self._readers, name)
                    if name in self._writers and self._writers[name][0].refs == 0:
                        self._drop(self._writers, name)

    def close(self) -> None:
        with self._lock:
            for name in list(self._readers):
                self._drop(self._readers, name)
            for name in list(self._writers):
                self._drop(self._writers, name)


def aligned_buffer(size: int) -> memoryview:
    """``size`` writable bytes at a DIRECT_ALIGN-aligned address (for pieces ``put`` writes with
    O_DIRECT); not zeroed."""
    raw = np.empty(size + DIRECT_ALIGN, np.uint8)
    skip = -raw.ctypes.data % DIRECT_ALIGN
    return raw[skip:skip + size].data  # the view keeps the array alive


def _direct_ok(piece: Piece) -> bool:
    if len(piece) < DIRECT_MIN or len(piece) % DIRECT_ALIGN:
        return False
    return int(np.frombuffer(piece, np.uint8).ctypes.data) % DIRECT_ALIGN == 0


def _pwritev_all(fd: int, bufs: list[Piece], offset: int, total: int) -> None:
    """Write every byte of ``bufs`` at ``offset`` (a short write continues where it stopped)."""
    done = 0
    while done < total:
        if done == 0:
            views: list[Piece] = bufs
        else:  # rare: continue after a short write
            views, skip = [], done
            for b in bufs:
                if skip >= len(b):
                    skip -= len(b)
                    continue
                views.append(memoryview(b)[skip:])
                skip = 0
        n = 0
        for start in range(0, len(views), _IOV_MAX):
            batch = views[start:start + _IOV_MAX]
            wrote = os.pwritev(fd, batch, offset + done + n)
            n += wrote
            if wrote < sum(len(b) for b in batch):
                break
        if n == 0:
            raise OSError(errno.ENOSPC, "short write")
        done += n


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
