"""The drive set: which drives a store has, their health, and where segments and shards go.

Drive state lives in the database (table ``drives``) because workers are separate processes:
a drive one worker saw fail is avoided by all of them. States:

- ``active``   takes new replicas and shards, serves reads;
- ``full``     serves reads, takes nothing new (ENOSPC seen, or free space under a reserve);
- ``readonly`` serves reads, takes nothing new (EROFS seen: a drive that went read-only, as SSDs do at end of life);
- ``offline``  its root or identity file is missing, unreadable or another's (an unmounted disk, the
  wrong disk in the right place): nothing is read, written, repaired into or swept there. Not
  ``failed``: its data is expected back, and it is ``active`` again as soon as its identity
  verifies. Segments all of whose copies are on offline drives are *unavailable* (503), never lost;
- ``draining`` serves reads while ``exastor drive remove`` moves its shards away;
- ``failed``   an I/O error that says the drive is bad was seen (never a shortage of this process or the
  kernel: EMFILE, ENFILE, ENOMEM... change no state): nothing is read from or written to it; its
  shards are rebuilt;
- ``removed``  gone from the store.

Every byte goes through the drive I/O seam (``exastor.drives``): a drive here is an id, where it
is, its state, and its ``DriveIO``. Each drive carries an identity file naming the store and its
id (drives/identity.py), written once when it joins; the store id lives in the database
(``store_info``). On SQLite a drive's ``path`` is stored relative to the data directory when it
lies inside it, so a copied data directory uses its own drives, never the original's. On a shared
database (PostgreSQL) a directory's path is stored absolute - every gateway has a data directory of
its own - and a gateway that cannot verify a directory drive (not mounted on its host, another
disk there) only leaves it out of its own view: another host may see it fine, so nothing is
recorded in the database (as for a drive server it cannot reach).

Fault injection (tests/faults): ``EXASTOR_FAULTS`` names a JSON rule file read by the drives'
``FaultyDrive`` wrapper (drives/faulty.py).

Crash points (tests/faults): ``crash_point`` (exastor/crashpoints.py, re-exported here) kills -9
the process group between two steps of sealing, repair, compaction or a metadata commit.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import queue
import secrets
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from exastor import errors
from exastor.crashpoints import crash_point  # noqa: F401 - re-exported: engine and services import it here
from exastor.drives import (
    IDENTITY_NAME,
    SUBDIRS,
    DriveIO,
    DriveUnreachable,
    Fenced,
    Identity,
    Space,
    Unidentified,
    WritesInDoubt,
    is_url,
    open_drive,
    process_short,
)
from exastor.drives import identity as drive_identity
from exastor.engine import erasure
from exastor.engine.record import HEADER_SIZE, decode_header, parse_segment_header
from exastor.engine.stripe_groups import form_groups, group_holding
from exastor.meta import placement
from exastor.meta.contract import Metadata
from exastor.meta.placement import (  # noqa: F401 - re-exported: services and tests import them here
    Layout,
    ShardRow,
    allocate_gens,
    commit_seal,
    load_layout,
    mark_shard,
    names_shard,
)

log = logging.getLogger("exastor.drives")

READABLE = ("active", "full", "readonly", "draining")
VERIFIED = ("active", "full", "readonly", "offline", "draining")  # states whose identity is checked
FREE_RESERVE = 256 << 20  # a drive with less free space than this takes no new segments
# Placement weighs drives by free space read at most this often per drive: a remote drive's space() is
# an HTTP call, and a seal places k+m shards one at a time over every drive (O(drives x shards) calls
# per segment without it). A drive that filled meanwhile answers ENOSPC and is marked full.
SPACE_TTL_S = 0.5


class DriveRefused(RuntimeError):
    """A directory cannot join this store (another store's drive, or not empty)."""


Location = Path | str   # a directory, or a drive server's URL (http://HOST:PORT/NAME)
CAPACITY, BUFFER = placement.TIERS  # a drive's tier: it holds sealed stripes, or only open segments' replicas
LOCAL_HOST = ""         # the host column of a drive in a directory: the host of the process using it


@dataclass(frozen=True, slots=True)
class Drive:
    id: int
    path: Location
    state: str                                           # as this process sees it ('offline': identity failed
                                                         # or, for a remote drive, unreachable from here)
    io: DriveIO = field(compare=False, repr=False)
    reason: str = ""
    host: str = LOCAL_HOST                               # failure domains: drive < host < rack
    rack: str = ""
    tier: str = CAPACITY                                 # CAPACITY (stripes) or BUFFER (the write buffer only)

    def with_state(self, state: str, reason: str = "") -> Drive:
        return Drive(self.id, self.path, state, self.io, reason, self.host, self.rack, self.tier)


def host_of_url(url: str) -> str:
    """The host part of a drive server's URL: its failure domain unless the operator names one."""
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or url


def segment_name(segment_id: int) -> str:
    """A segment file's name on a drive (docs/format.md)."""
    return f"segments/seg-{segment_id:016x}.log"


def store_tag_of(store_id: str | None) -> int:
    """The 64 bits of the store id written in segment headers and shard trailers (0: none yet)."""
    return int(store_id[:16], 16) if store_id else 0


def data_dir_of(meta: Metadata) -> Path | None:
    """The data directory of an embedded (SQLite) store: DATA/meta/exastor.sqlite."""
    path = getattr(meta.runner, "path", None)
    return Path(path).resolve().parent.parent if path else None


class DriveSet:
    """The store's drives as the database records them, plus this process's view of their health.

    ``adopt``: this process owns the store exclusively for now (the server's start, an offline
    command) and may run the one-time steps: writing identity files on drives of a store from
    before identities (``adopt_legacy``)."""

    def __init__(self, meta: Metadata, paths: list[Location] | None = None, *, ec: str | None = None,
                 base: Path | None = None, adopt: bool = False, vouch: bool = False,
                 buffer: list[Location] | None = None) -> None:
        self.meta = meta
        self.base = Path(base).resolve() if base else data_dir_of(meta)
        self._io: dict[int, DriveIO] = {}
        self._drives: dict[int, Drive] = {}
        self._loaded = 0.0
        self.store_id: str | None = self._read_store_id()
        # Many gateways, each with its own data directory and host, share the drive rows (PostgreSQL).
        self.shared = getattr(meta.runner, "backend", "sqlite") != "sqlite"
        if adopt:
            self.adopt_legacy()
        if paths:
            self.register(list(paths), vouch=vouch)
        if buffer:
            self.set_tier(self.register(list(buffer), vouch=vouch), BUFFER)
        self.refresh()
        self.explicit = erasure.parse(ec) if ec else None
        self._persist_geometry()
        self._reports: queue.SimpleQueue[tuple[str, tuple[Any, ...]]] = queue.SimpleQueue()
        self._reporter: threading.Thread | None = None
        self._groups: tuple[tuple[Any, ...], list[frozenset[int]]] | None = None  # (membership, groups)
        self._space: dict[int, tuple[float, Space]] = {}  # drive -> (when read, its space): SPACE_TTL_S

    @property
    def store_tag(self) -> int:
        return store_tag_of(self.store_id)

    def _persist_geometry(self) -> None:
        """An explicit geometry (--ec) is stored, so every tool and later start agrees on it."""
        stored = placement.stored_geometry(self.meta)
        if self.explicit is not None:
            if stored != {"ec_k": self.explicit.k, "ec_m": self.explicit.m}:  # no empty commit at every start
                placement.store_geometry(self.meta, self.explicit.k, self.explicit.m)
        else:
            if "ec_k" in stored and "ec_m" in stored:
                self.explicit = erasure.Geometry(stored["ec_k"], stored["ec_m"])

    # --- the store id ------------------------------------------------------------------
    def _read_store_id(self) -> str | None:
        return placement.store_id(self.meta)

    def _ensure_store_id(self, adopt_from: str | None = None) -> str:
        """The store id; made now (random, or ``adopt_from``: the drives' when the database was lost)."""
        if self.store_id is None:
            self.store_id = placement.ensure_store_id(self.meta, adopt_from or secrets.token_hex(16))
            log.info("store id %s", self.store_id)
        return self.store_id

    # --- where drives are ----------------------------------------------------------------
    def location(self, stored: str) -> Location:
        if is_url(stored):
            return stored
        return self._local_path(stored)

    def _local_path(self, stored: str) -> Path:
        """A local drive's directory: ``stored`` as it is when absolute, else under the data directory."""
        p = Path(stored)
        if p.is_absolute() or self.base is None:
            return p
        return self.base / p

    def _stored(self, location: Location) -> str:
        if isinstance(location, str):
            return location
        if self.shared:  # another gateway's data directory is elsewhere: relative to which?
            return str(Path(os.path.abspath(location)))
        if self.base is not None:
            try:
                return location.relative_to(self.base).as_posix()
            except ValueError:
                pass
        return str(location)

    def _rows(self) -> list[tuple[int, str, str, str, int]]:
        return placement.drive_rows(self.meta)

    def _domains(self) -> dict[int, tuple[str, str, str]]:
        return placement.drive_domains(self.meta)

    def _open(self, location: Location) -> DriveIO:
        return open_drive(location, key_file=self.base / "cluster.key" if self.base else None)

    def _io_for(self, drive: int, location: Location) -> DriveIO:
        io = self._io.get(drive)
        if io is None or io.label != str(location):
            if io is not None:
                io.close()
            io = self._io[drive] = self._open(location)
        return io

    def set_domain(self, drive: int, host: str | None, rack: str = "") -> None:
        """Record where ``drive`` is (failure domains for placement: docs/design.md); ``host`` None
        keeps the one recorded."""
        placement.set_drive_domain(self.meta, drive, host, rack)

    # --- joining ----------------------------------------------------------------------------
    def register(self, paths: list[Location], state: str = "active", *, vouch: bool = False) -> list[int]:
        """The ids of drives at ``paths``, joining the ones the store does not know yet. A directory
        joins when it is absent or empty (its root, ``segments/``, ``shards/`` and identity file are
        created: the only place a drive's root is ever made), or when its identity file names this
        store (a drive that moved, or a store whose database was rebuilt from its drives). Anything
        else is refused (DriveRefused): never write into a directory that may be another's - unless
        its files prove it is this store's (a store from before the drives table: ``adopt_legacy``'s
        proof) or the operator names it for a rebuild (``vouch``: ``fsck --rebuild-index --drive``)."""
        ids = []
        for p in paths:
            location: Location = str(p) if is_url(str(p)) else Path(os.path.abspath(Path(p).expanduser()))
            known = {_same(self.location(stored)): i for i, stored, *_ in self._rows()}
            if _same(location) in known:
                ids.append(known[_same(location)])
                continue
            io = self._open(location)
            try:
                found = drive_identity.read(io)
            except Unidentified as why:
                if why.unreachable or not (why.root_missing or why.missing):
                    raise DriveRefused(f"{location}: {why.reason}") from None
                ids.append(self._join_fresh(io, location, state, vouch))
                continue
            ids.append(self._join_known(found, location, state))
        return ids

    def _join_fresh(self, io: DriveIO, location: Location, state: str, vouch: bool) -> int:
        try:
            entries = [n for n in io.list("") if n != "lost+found"]
        except FileNotFoundError:
            entries = []
        proof = None
        if entries:
            next_id = placement.next_drive_id(self.meta)
            proof = self._prove_ours(io, next_id) or ("named by the operator" if vouch else None)
            if proof is None:
                raise DriveRefused(f"{location} is not empty and has no identity file: not joining it (another "
                                   f"store's? a drive of this store from before identity files is adopted at "
                                   f"the server's start)")
        store = self._ensure_store_id()
        new = placement.add_drive(self.meta, self._stored(location), state, _host(location), time.time_ns())
        if proof is not None:
            io.put(IDENTITY_NAME, Identity.new(store, new).encode())
            log.warning("drive %d (%s): identity file written (store %s): %s", new, location, store, proof)
            return new
        # A crash between the row and the identity file leaves an empty drive the database places
        # nothing on: adopt_legacy writes its identity at the next start.
        io.format(Identity.new(store, new).encode())
        log.warning("drive %d (%s) joined the store", new, location)
        return new

    def _join_known(self, found: Identity, location: Location, state: str) -> int:
        store = self.store_id
        if store is None:  # a database rebuilt from the drives: take the store id they carry
            store = self._ensure_store_id(adopt_from=found.store)
        if found.store != store:
            raise DriveRefused(f"{location} belongs to another store ({found.store[:12]}..., drive {found.drive})")
        placement.place_known_drive(self.meta, found.drive, self._stored(location), state, _host(location),
                                    time.time_ns())
        log.warning("drive %d is at %s (its identity file says so)", found.drive, location)
        return found.drive

    # --- stores from before identity files ---------------------------------------------------
    def adopt_legacy(self) -> None:
        """The one-time migration of a store from before identity files, run at the server's start
        and by offline commands. For each drive the database lists without an identity file, write
        one only with positive proof that the directory is this store's drive:

        - a segment file whose record at an offset the chunk index names holds that very chunk
          (its 256-bit fingerprint), or a shard file whose trailer matches the segment's layout and
          the shard row placing it on this drive; or
        - its ``segments/`` and ``shards/`` exist and hold no segment or shard file while the
          database places nothing on the drive (a drive that joined just before a crash).

        Without proof it stays offline (``exastor drive status`` says why). Drive paths inside the
        data directory are stored relative to it from then on - on SQLite; on a shared database a
        relative path (stored before paths were absolute there) becomes absolute at the start of
        the gateway whose data directory holds that drive (its identity verifies there)."""
        rows = [r for r in self._rows() if r[2] != "removed"]
        if not rows:
            return
        store = self._ensure_store_id()
        for drive, stored, _state, _reason, _changed in rows:
            location = self.location(stored)
            if isinstance(location, str):
                continue  # a remote drive joined with its identity file (format): never a legacy drive
            relative = self._stored(location.resolve())
            if not self.shared and Path(stored).is_absolute() and not Path(relative).is_absolute():
                placement.set_drive_path(self.meta, drive, relative)
                log.warning("drive %d: path stored relative to the data directory (%s)", drive, relative)
                location = self._local_path(relative)
            io = self._io_for(drive, location)
            if self.shared and not Path(stored).is_absolute():
                self._store_absolute(drive, location, io, store)
            try:
                drive_identity.read(io)
                continue
            except Unidentified as why:
                if not why.missing:
                    continue
            proof = self._prove_ours(io, drive)
            if proof is None:
                log.error("drive %d (%s) has no identity file and nothing on it proves it is this store's: "
                          "it stays offline (mount the right disk; `exastor drive add %s` if it is)",
                          drive, location, location)
                continue
            io.put(IDENTITY_NAME, Identity.new(store, drive).encode())
            log.warning("drive %d (%s): identity file written (store %s): %s", drive, location, store, proof)

    def _store_absolute(self, drive: int, location: Path, io: DriveIO, store: str) -> None:
        try:
            drive_identity.verify(io, store, drive)
        except Unidentified:
            return  # relative to another gateway's data directory: that gateway fixes it
        placement.set_drive_path(self.meta, drive, self._stored(location))
        log.warning("drive %d: path stored absolute (%s): gateways on a shared database each have "
                    "a data directory of their own", drive, location)

    def _prove_ours(self, io: DriveIO, drive: int) -> str | None:
        from exastor.engine import shards as shardfiles

        try:
            files = {sub: [n for n in io.list(sub) if n.startswith("seg-")] for sub in SUBDIRS}
        except FileNotFoundError:
            return None

        layouts, placed, expected = placement.ownership_evidence(self.meta, drive)
        if not files["segments"] and not files["shards"]:
            return None if expected else "empty, and the database places nothing on it"
        for name in files["segments"][:64]:
            try:
                seg = int(name[4:20], 16)
            except ValueError:
                continue
            if seg not in layouts:
                continue
            for fp, offset in placement.chunks_in_segment(self.meta, seg, 4):
                try:
                    head = decode_header(io.pread(f"segments/{name}", int(offset), HEADER_SIZE))
                except (OSError, errors.DataCorrupted):
                    continue
                if head.fp == bytes(fp):
                    return f"segments/{name} holds chunk {bytes(fp).hex()[:16]} at offset {offset}, as the index says"
        for name in files["shards"][:64]:
            parsed = shardfiles.parse_shard_name(f"shards/{name}")
            if parsed is None or (parsed[0], parsed[1]) not in placed:
                continue
            try:
                info = shardfiles.read_info(io, f"shards/{name}")
            except (OSError, errors.DataCorrupted):
                continue
            lay = layouts.get(info.segment)
            if lay is not None and (info.k, info.m, info.shard_len, info.data_len) == lay \
                    and (info.segment, info.index) == parsed[:2]:
                return f"shards/{name}'s trailer matches the layout of segment {info.segment}"
        return None

    def vouch(self, drive: int) -> None:
        """``exastor drive add PATH`` of a known drive without an identity file: the operator vouches
        for it, and the identity file is written (logged)."""
        d = self._drives.get(drive)
        if d is None:
            return
        try:
            drive_identity.read(d.io)
            return
        except Unidentified as why:
            if not why.missing:
                raise DriveRefused(f"{d.path}: {why.reason}") from None
        d.io.put(IDENTITY_NAME, Identity.new(self._ensure_store_id(), drive).encode())
        log.warning("drive %d (%s): identity file written at the operator's request", drive, d.path)

    # --- health ------------------------------------------------------------------------------
    def identity_problem(self, drive: int, io: DriveIO) -> str | None:
        """None if ``io`` carries this store's identity for ``drive``, else why not."""
        return self._identity(drive, io)[0]

    def _identity(self, drive: int, io: DriveIO) -> tuple[str | None, bool]:
        """(why the identity does not verify or None, whether that is only because the drive could not
        be reached from this process: then nothing is known about the drive itself)."""
        if self.store_id is None:
            self.store_id = self._read_store_id()
            if self.store_id is None:
                return "the store has no id yet (a store from before identity files: start the server once)", False
        try:
            drive_identity.verify(io, self.store_id, drive)
        except Unidentified as why:
            return why.reason, why.unreachable
        return None, False

    def refresh(self) -> None:
        drives: dict[int, Drive] = {}
        domains = self._domains()
        for i, stored, state, reason, _changed in self._rows():
            location = self.location(stored)
            io = self._io_for(i, location)
            seen = state
            if state in VERIFIED:
                problem, unreachable = self._identity(i, io)
                if problem is not None and self._seen_from_here_only(location):
                    if self._drives.get(i, Drive(i, location, "", io)).state != "offline":
                        log.warning("drive %d (%s) is not usable from this host (%s): left out of this "
                                    "gateway's view only", i, location, problem)
                    unreachable = True
                if unreachable:
                    # Unavailable from here, and only from here: other gateways may reach it. Never a
                    # database change (never offline for all, never failed): this process skips it.
                    seen, reason = "offline", problem or "unreachable"
                elif problem is not None:
                    seen, reason = "offline", problem
                    if state in ("active", "full", "readonly"):
                        self.set_state(i, "offline", problem, refresh=False)
                elif state == "offline":
                    self.set_state(i, "active", "identity verified: back online", refresh=False)
                    log.warning("drive %d (%s) is back online", i, location)
                    seen, reason = "active", "back online"
            host, rack, tier = domains.get(i, (LOCAL_HOST, "", CAPACITY))
            drives[i] = Drive(i, location, seen, io, reason, host, rack, tier)
        self._drives = drives
        self._loaded = time.monotonic()
        for d in [d for d in self._drives.values() if d.state == "full"]:
            if self._has_room(d):  # space came back (gc, an operator): take new segments again
                self.set_state(d.id, "active", "space available again", refresh=False)
                self._drives[d.id] = d.with_state("active")

    def _has_room(self, d: Drive) -> bool:
        try:
            space = d.io.space()
        except OSError:
            return False
        return space.free >= 2 * FREE_RESERVE or 0 < space.total <= 4 * FREE_RESERVE and space.free > 0

    def _seen_from_here_only(self, location: Location) -> bool:
        """Whether what this process finds at ``location`` says nothing about the drive for other
        processes: a directory on a shared database, which other hosts mount on their own."""
        return self.shared and not isinstance(location, str)

    def maybe_refresh(self, max_age: float = 2.0) -> None:
        if time.monotonic() - self._loaded > max_age:
            self.refresh()

    def set_state(self, drive: int, state: str, reason: str = "", *, refresh: bool = True,
                  refuse_beside_gateways_ms: int | None = None) -> None:
        placement.set_drive_state(self.meta, drive, state, reason, time.time_ns(),
                                  refuse_beside_gateways_ms=refuse_beside_gateways_ms)
        if state != "active":
            log.warning("drive %d is now %s: %s", drive, state, reason)
        if refresh:
            self.refresh()

    def mark_offline(self, drive: int, reason: str) -> bool:
        """Record ``drive`` offline for every process (the cluster manager, when its drive server has
        been down too long), if the database has it active, full or read-only; True if it changed.
        Its shards are then repaired once it has been offline for the repair grace, and the first
        process whose refresh reads its identity back marks it active again."""
        changed = placement.mark_drive_offline(self.meta, drive, reason, time.time_ns())
        if changed:
            log.warning("drive %d is now offline: %s", drive, reason)
        return bool(changed)

    @property
    def all(self) -> list[Drive]:
        return list(self._drives.values())

    def get(self, drive: int) -> Drive | None:
        return self._drives.get(drive)

    def readable(self, drive: int) -> bool:
        d = self._drives.get(drive)
        return d is not None and d.state in READABLE and d.io.reachable()

    def offline(self, drive: int) -> bool:
        """Offline, or unreachable from this process: its data is expected back, never rebuilt from here."""
        d = self._drives.get(drive)
        return d is not None and (d.state == "offline" or (d.state in READABLE and not d.io.reachable()))

    def writable(self, tier: str | None = CAPACITY) -> list[Drive]:
        return [d for d, _free in self.writable_with_free(tier)]

    def writable_with_free(self, tier: str | None = CAPACITY) -> list[tuple[Drive, int]]:
        """The drives of ``tier`` (None: either) that take new segments, each with the free bytes read
        to decide so: placement weighs drives by it, and reads it at most once per drive every
        SPACE_TTL_S (a remote drive's space() is an HTTP call)."""
        out = []
        now = time.monotonic()
        for d in self._drives.values():
            if d.state != "active" or not d.io.reachable() or (tier is not None and d.tier != tier):
                continue
            cached = self._space.get(d.id)
            if cached is not None and now - cached[0] < SPACE_TTL_S:
                space = cached[1]
            else:
                try:
                    space = d.io.space()
                except OSError:
                    self._space.pop(d.id, None)
                    continue
                self._space[d.id] = (now, space)
            if space.free <= 0 or space.free < FREE_RESERVE and space.total > 4 * FREE_RESERVE:
                continue  # full, or nearly (the reserve is ignored on tiny test filesystems)
            out.append((d, space.free))
        return out

    @property
    def first(self) -> Drive:
        """Drive 0: where segments from before drives existed live."""
        return self._drives.get(0) or next(iter(self._drives.values()))

    # --- geometry and placement --------------------------------------------------
    def geometry(self) -> erasure.Geometry:
        """The store's target geometry: explicit (--ec) or by the number of capacity drives in
        service (write-buffer drives hold no stripes)."""
        if self.explicit is not None:
            return self.explicit
        return erasure.auto(max(1, sum(d.state != "removed" and d.tier == CAPACITY for d in self._drives.values())))

    def buffer_tier(self, copies: int) -> str:
        """Where a new open segment's ``copies`` replicas go: the write-buffer drives when the store has
        that many taking writes, else the capacity drives (as in a store without a buffer tier: a
        buffer tier short of drives or space never stops writes)."""
        return BUFFER if len(self.writable(BUFFER)) >= copies else CAPACITY

    def set_tier(self, drive_ids: Iterable[int], tier: str) -> None:
        """Record ``drive_ids`` as capacity or write-buffer drives (what they hold stays where it is)."""
        rows = placement.drive_domains(self.meta)
        for i in drive_ids:
            if rows.get(i, ("", "", CAPACITY))[2] != tier:
                placement.set_drive_tier(self.meta, i, tier)
                log.warning("drive %d is now a %s drive", i, "write-buffer" if tier == BUFFER else "capacity")

    def seal_geometry(self) -> erasure.Geometry | None:
        """The geometry a segment sealed now gets: the target, with k reduced to fit the drives that can
        take shards (parity never reduced). None: fewer than m+1 drives can write."""
        g = self.geometry()
        n = len(self.writable())
        if n < g.m + 1:
            return None
        return erasure.Geometry(min(g.k, n - g.m), g.m)

    def domains_of(self, drive_ids: Iterable[int]) -> Counter[tuple[str, str]]:
        """How many of ``drive_ids`` are on each (host, rack): what a stripe already occupies."""
        out: Counter[tuple[str, str]] = Counter()
        for i in drive_ids:
            d = self._drives.get(i)
            if d is not None:
                out[(d.host, d.rack)] += 1
        return out

    def hosts_in_service(self) -> int:
        """Distinct hosts holding capacity drives neither removed nor failed (local directories: one host)."""
        return len({d.host for d in self._drives.values() if d.state not in ("removed", "failed") and d.tier == CAPACITY})

    def stripe_groups(self) -> list[frozenset[int]]:
        """The store's stripe groups (engine/stripe_groups.py) for its target width k+m, over the
        drives not removed or failed: a drive offline, full or read-only for a while keeps its place
        (its group takes no new stripes meanwhile), so groups change only when a drive joins or
        leaves for good. Recomputed when that membership changes."""
        g = self.geometry()
        members = [d for d in self._drives.values() if d.state not in ("removed", "failed") and d.tier == CAPACITY]
        key = (g.k + g.m, tuple(sorted((d.id, d.host) for d in members)))
        cached = self._groups
        if cached is None or cached[0] != key:
            cached = self._groups = (key, form_groups(members, g.k + g.m))
        return cached[1]

    def stripe_group(self, need: int, salt: int) -> frozenset[int] | None:
        """The group a new segment of ``need`` copies goes to: among the groups with at least
        ``need`` drives taking data now, by weighted rendezvous hashing of ``salt`` on the group's
        free space (as drives are ranked). None: no groups, or none can take it - the segment is
        then placed over the whole store rather than refused."""
        groups = self.stripe_groups()
        if not groups:
            return None
        free = {d.id: room for d, room in self.writable_with_free()}
        best: tuple[float, int, frozenset[int]] | None = None
        for group in groups:
            room = [free[i] for i in group if i in free]
            if len(room) < need:
                continue
            candidate = (rendezvous_score(salt, min(group), sum(room)), min(group), group)
            if best is None or candidate[:2] < best[:2]:
                best = candidate
        return best[2] if best else None

    def group_of(self, drive_ids: Iterable[int]) -> frozenset[int] | None:
        """The stripe group holding most of ``drive_ids`` (a stripe's other shards): a repaired or
        moved shard goes there while the group has a drive to spare."""
        return group_holding(self.stripe_groups(), drive_ids)

    def place(self, count: int, salt: int, exclude: AbstractSet[int] = frozenset(),
              occupied: Counter[tuple[str, str]] | None = None,
              within: AbstractSet[int] | None = None, tier: str = CAPACITY) -> list[Drive]:
        """``count`` distinct writable drives of ``tier`` on distinct hosts while there are enough (see
        ``spread``); ``occupied``: (host, rack) already holding other copies of the same data;
        ``within``: a stripe group (``stripe_group``), used when it has ``count`` candidates left and
        otherwise widened to the whole store (a write placed outside its group beats a refused one).

        Drives are ranked by weighted rendezvous hashing on free space (``rendezvous_rank``): no
        database query, each drive's chance of ranking first is its share of the free space, and a
        drive joining or leaving changes only the placements that involve it."""
        weighed = [(d, free) for d, free in self.writable_with_free(tier) if d.id not in exclude]
        if within is not None:
            inside = [(d, free) for d, free in weighed if d.id in within]
            if len(inside) >= count:
                weighed = inside
            else:
                log.info("stripe group %s has %d of %d drives free: placing outside it", sorted(within),
                         len(inside), count)
        cands = [d for d, _free in weighed]
        if len(cands) < count:
            out_of_space = [d for d in self._drives.values()
                            if d.state == "full" and d.tier == tier and d.id not in exclude]
            if len(cands) + len(out_of_space) >= count:  # healthy but full: the store is out of space
                raise errors.InsufficientStorage(
                    f"no space left: need {count} drives with room, have {len(cands)}")
            raise errors.Unavailable(
                f"too few healthy drives to write safely: need {count}, have {len(cands)} "
                f"(see `exastor drive status`)")
        return spread(rendezvous_rank(weighed, salt), count, occupied)

    def shard_counts(self) -> dict[int, int]:
        """Shards per drive (a query over every shard: for ``drive status`` and rebalance, not placement)."""
        return placement.shard_counts(self.meta)

    # --- errors ------------------------------------------------------------------
    def failed_io(self, drive: int, exc: OSError, *, now: bool = True) -> None:
        """Record an I/O error on ``drive``: ENOSPC makes it full, EROFS read-only, anything else
        failed - except a missing file or directory, which makes it offline if its identity no
        longer verifies (unmounted, removed) and changes nothing if it does (one missing file is
        not a broken drive), and a shortage of the process or kernel (EMFILE, ENFILE, ENOMEM...:
        ``drives.base.PROCESS_ERRNOS``), which changes nothing. ``now=False`` queues the database write (callers that may be on an
        event loop or hold locks)."""
        d = self._drives.get(drive)
        if isinstance(exc, Fenced):
            # Another process took the segment over (its lease): the drive answered, and is fine.
            log.info("drive %d refused a write of a segment another process took over: %s", drive, exc)
            return
        if isinstance(exc, WritesInDoubt):
            # A file this process wrote when an answer was lost (a partition, a killed server), or
            # whose server restarted before its fsync, is final - its replica is dropped by the
            # caller - but the drive itself said nothing wrong.
            log.info("drive %d: a file whose unsynced writes are in doubt (%s) is written no more: %s",
                     drive, type(exc).__name__, exc)
            return
        if isinstance(exc, DriveUnreachable):
            # Not this drive's fault as far as anyone knows: unavailable to this process until its
            # identity reads back (refresh), never recorded in the database.
            if d is not None and d.state in READABLE:
                self._drives[drive] = d.with_state("offline", f"unreachable: {exc}")
            log.warning("drive %d is unreachable from here: %s", drive, exc)
            return
        if process_short(exc):
            # This process (or the kernel) is out of descriptors or memory: the drive said nothing
            # wrong. Recording it failed or offline would take a healthy drive from every process.
            log.warning("drive %d: %s - a shortage of this process or the kernel, not the drive's: "
                        "nothing recorded", drive, exc)
            return
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            if d is None:
                return
            problem, unreachable = self._identity(drive, d.io)
            if problem is None:
                return
            if unreachable or self._seen_from_here_only(d.path):
                self._drives[drive] = d.with_state("offline", problem)
                return
            state, reason = "offline", problem
        elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
            state, reason = "full", "no space left"
        elif exc.errno == errno.EROFS:
            state, reason = "readonly", "read-only file system"
        else:
            state, reason = "failed", f"{errno.errorcode.get(exc.errno or 0, 'error')}: {exc.strerror or exc}"
        if d is not None:  # this process stops using it at once
            self._drives[drive] = d.with_state(state, reason)
        if now:
            self.set_state(drive, state, reason)
        else:
            self._report("state", (drive, state, reason))

    def shard_bad(self, segment: int, idx: int, drive: int, gen: int) -> None:
        """Queue a shard for repair (its checksum failed on a read): the copy on ``drive`` under ``gen``
        only, so a read through an old layout never marks the copy a repair has since made."""
        self._report("bad", (segment, idx, drive, gen))

    def _report(self, kind: str, args: tuple[Any, ...]) -> None:
        self._reports.put((kind, args))
        if self._reporter is None or not self._reporter.is_alive():
            self._reporter = threading.Thread(target=self._drain_reports, name="exastor-drive-reports",
                                              daemon=True)
            self._reporter.start()

    def _drain_reports(self) -> None:
        while True:
            try:
                kind, args = self._reports.get(timeout=1.0)
            except queue.Empty:
                return
            try:
                if kind == "state":
                    self.set_state(*args)
                else:
                    segment, idx, drive, gen = args
                    mark_shard(self.meta, segment, idx, state="bad", expect_drive=drive, expect_gen=gen)
            except Exception as exc:  # noqa: BLE001 - a report must never kill the reporter
                log.error("could not record drive report %s %s: %s", kind, args, exc)

    def flush_reports(self, timeout: float = 5.0) -> None:
        t = self._reporter
        if t is not None:
            t.join(timeout)

    def close(self) -> None:
        for io in self._io.values():
            io.close()

    # --- proofs ---------------------------------------------------------------------
    def names_segment(self, io: DriveIO, name: str, segment: int) -> bool:
        """A segment file's own header names ``segment`` and this store (or no store: written
        before store tags): part of the proof that deleting it deletes only garbage."""
        try:
            head = parse_segment_header(io.pread(name, 0, 64))
        except OSError:
            return False
        return head is not None and head[0] == segment and head[2] in (0, self.store_tag)


_U64 = 1 << 64
_SALT_AND_DRIVE = struct.Struct("<QQ")


def rendezvous_score(salt: int, drive_id: int, free: int) -> float:
    """-ln(u) / free, with u in (0, 1] a hash of (salt, drive): lowest ranks first.

    -ln(u) of a uniform u is exponential with rate 1, so the score is exponential with rate
    ``free``, and the smallest of such independent scores belongs to drive d with probability
    free(d) / (total free): new segments go where the space is (a drive twice as empty gets twice
    as many; a new, empty drive fills fastest). Each drive's score depends on the salt and on that
    drive alone, so a drive joining or leaving reorders nothing among the others. The hash is xxh3
    of the packed pair - never Python's hash(), which is salted per process for str and is the
    identity on small ints - so consecutive salts (``segment + i``, a clock) are decorrelated and
    every process ranks alike. ``free`` <= 0 never ranks before a drive with room (infinity)."""
    if free <= 0:
        return math.inf
    h = xxhash.xxh3_64_intdigest(_SALT_AND_DRIVE.pack(salt % _U64, drive_id % _U64))
    return -math.log((h + 1) / _U64) / free  # (h + 1) / 2**64 is in (0, 1]: log never sees 0


def shard_salt(segment: int, index: int) -> int:
    """The placement salt of shard ``index`` of ``segment``: distinct for every pair (an erasure
    stripe has fewer than 256 shards: GF(2^8)), so no shard of one segment shares its ranking with
    a shard of the next (``segment + index`` would)."""
    return segment << 8 | index


def rendezvous_rank(weighed: Iterable[tuple[Drive, int]], salt: int) -> list[Drive]:
    """Drives, best first, by weighted rendezvous hashing of ``salt`` on their free bytes
    (``rendezvous_score``; the drive id breaks the - astronomically unlikely - ties)."""
    scored = sorted((rendezvous_score(salt, d.id, free), d.id, d) for d, free in weighed)
    return [d for _score, _id, d in scored]


def spread(ranked: list[Drive], count: int, occupied: Counter[tuple[str, str]] | None = None) -> list[Drive]:
    """``count`` of ``ranked`` (best first), each taken from the host holding the fewest of the chosen
    so far (and of ``occupied``), then the rack holding the fewest, then by rank.

    So the copies of one segment land on distinct hosts whenever there are as many hosts with a
    writable drive as copies (m+1 replicas; k+m shards: at most one shard per host while hosts >=
    k+m), and on distinct racks too while racks allow. With fewer hosts, copies spread as evenly as
    possible - at most ceil(count / hosts) on one host - so a stripe still survives the loss of
    floor(m / ceil((k+m) / hosts)) hosts (and of any m drives). Local drives (host '') are one host."""
    hosts: Counter[str] = Counter()
    racks: Counter[str] = Counter()
    for (host, rack), n in (occupied or Counter()).items():
        hosts[host] += n
        if rack:
            racks[rack] += n
    rank = {d.id: i for i, d in enumerate(ranked)}
    left = list(ranked)
    chosen: list[Drive] = []
    while len(chosen) < count and left:
        best = min(left, key=lambda d: (hosts[d.host], racks[d.rack] if d.rack else 0, rank[d.id]))
        left.remove(best)
        chosen.append(best)
        hosts[best.host] += 1
        if best.rack:
            racks[best.rack] += 1
    return chosen


def _same(location: Location) -> str:
    """A key under which two spellings of one location compare equal."""
    return location if isinstance(location, str) else str(Path(location).resolve())


def _host(location: Location) -> str:
    return host_of_url(location) if isinstance(location, str) else LOCAL_HOST
