"""Opening a store from its data directory: metadata, drives, namespace, credentials."""

from __future__ import annotations

import errno
import logging
import os
import secrets
import sqlite3
import string
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from exastor.datadir import keys
from exastor.datadir.files import write_private
from exastor.datadir.keys import ACCOUNT_CONTEXT
from exastor.drives import DriveIO, is_url
from exastor.engine.chunkstore import ChunkStore
from exastor.engine.drives import DriveSet
from exastor.engine.segments import DEFAULT_SEGMENT_SIZE, SegmentLog
from exastor.errors import METADATA_ELSEWHERE, data_dir_unusable, metadata_elsewhere
from exastor.meta import blob as bm
from exastor.meta import journal as jr
from exastor.meta.contract import Metadata
from exastor.meta.records import User
from exastor.meta.sqlite import SqliteRunner, sqlite_runner, stored_drive_paths
from exastor.namespace.operations import Namespace

log = logging.getLogger("exastor.datadir")

ADMIN = "admin"
CREDENTIALS_FILE = "credentials.toml"


DB_NAME = "exastor.sqlite"


def _remember_postgres(data: Path, where: str) -> None:
    marker = data / METADATA_ELSEWHERE
    if marker.exists() or not data.is_dir():
        return
    try:
        write_private(marker, f"{where}\n".encode())
    except OSError as exc:  # only a guard for later commands: this one goes on, and says so
        log.warning("could not mark %s as a store whose metadata is in PostgreSQL (%s): commands run there "
                    "without --meta will not be refused", data, exc)


def private_dir(path: Path) -> None:
    """``path`` exists and is 0700 (made so, or tightened: a store from before this was 0755)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)


def private_file(path: Path) -> None:
    """``path``, if it exists, is 0600."""
    try:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
    except FileNotFoundError:
        pass


def open_metadata(data: Path, meta_url: str | None = None, *, key_command: str | None = None) -> Metadata:
    """The metadata database: PostgreSQL at ``meta_url`` (postgresql://...), else the embedded SQLite
    under DATA/meta, created on first use and private (directory 0700; the file, its -wal and -shm
    0600: SQLite gives its side files the database file's mode). Either way with the sealer for its
    secrets (datadir/keys.py: locked when the master key is not there; the commands that store
    secrets call keys.ensure).

    A data directory the process cannot write (a read-only mount, wrong owner) stops with a
    CommandError that says so: SQLite needs to write beside the database even to read it (WAL), so
    every command needs a writable directory."""
    if meta_url:
        from exastor.meta.postgres import PostgresRunner, describe  # psycopg only where it is used
        meta = Metadata(PostgresRunner(meta_url))
        _remember_postgres(data, describe(meta_url))
    else:
        folder = data / "meta"
        elsewhere = metadata_elsewhere(data)
        if elsewhere is not None:
            raise elsewhere
        try:
            private_dir(folder)
            if os.statvfs(folder).f_flag & os.ST_RDONLY:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(folder))
            if not os.access(folder, os.W_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))
            db = folder / DB_NAME
            if not db.exists():
                os.close(os.open(db, os.O_WRONLY | os.O_CREAT, 0o600))  # SQLite would make it 0644
            for path in (db, folder / f"{DB_NAME}-wal", folder / f"{DB_NAME}-shm"):
                private_file(path)
            meta = Metadata(SqliteRunner(db))
        except (OSError, sqlite3.OperationalError) as exc:
            raise data_dir_unusable(data, exc) from exc
    meta.sealer = keys.sealer(data, meta, command=key_command)
    return meta


def drive_dirs(data: Path) -> list[Path]:
    """The store's drive directories in id order (drive 0 first; removed drives left out), paths
    stored relative to the data directory resolved against it. A store that never named drives
    has one: DATA/drive0."""
    db = data / "meta" / DB_NAME
    if db.exists():
        stored = stored_drive_paths(db)
        if stored:
            return [Path(p) if Path(p).is_absolute() else data.resolve() / p for p in stored]
    return [data / "drive0"]


def open_drives(meta: Metadata, data: Path, drives: list[str] | None = None, ec: str | None = None, *,
                journal: bool = False, adopt: bool = False, buffer_drives: list[str] | None = None) -> DriveSet:
    """The drive set: ``drives`` are registered (idempotent); with none given and none known, DATA/drive0
    joins (the first start: the only time a drive's directory is created without `exastor drive add`).
    ``journal``: from now on every metadata commit is journaled onto the drives (meta/journal.py).
    ``adopt``: this process has the store to itself (see DriveSet). ``buffer_drives``: registered as
    write-buffer drives (they take the open segments' replicas only)."""
    paths: list[Path | str] = [p if is_url(p) else Path(p).expanduser() for p in drives or []]
    buffer: list[Path | str] = [p if is_url(p) else Path(p).expanduser() for p in buffer_drives or []]
    if not paths:
        if not meta.drive_count():
            paths = [data / "drive0"]
    drive_set = DriveSet(meta, paths, ec=ec or None, base=data, adopt=adopt, buffer=buffer)
    if journal:
        attach_journal(meta, drive_set)
    return drive_set


def attach_journal(meta: Metadata, drives: DriveSet) -> jr.Journal:
    """Journal every commit of ``meta`` onto the drives that take the copies (meta/journal.py)."""
    def failed(io: DriveIO, exc: OSError) -> None:
        for d in drives.all:
            if d.io is io or d.io.label == io.label:
                drives.failed_io(d.id, exc, now=False)  # on the writer thread: queued, never waited for

    journal = jr.Journal(lambda: journal_targets(drives), failed, copies=lambda: drives.geometry().m + 1)
    sqlite_runner(meta).attach_journal(journal)
    return journal


def journal_targets(drives: DriveSet) -> list[DriveIO]:
    """Where journal records may go, in order of preference (the journal writes each to the first
    m+1 whose file is good): the drives in service, full ones included - a full store must still
    commit the deletes that free it, and a record is small beside the space a drive keeps in reserve."""
    # Called on the metadata writer thread: no refresh here (a refresh may commit, which would wait on
    # this very thread); the process's view is kept fresh by its segment writes.
    live = sorted((d for d in drives.all if d.state in ("active", "full")), key=lambda d: d.id)
    return [d.io for d in live]


def open_namespace(data: Path, *, region: str = "us-east-1", segment_size: int = DEFAULT_SEGMENT_SIZE,
                   recover: bool = True, drives: list[str] | None = None, ec: str | None = None,
                   journal: bool = False, meta_url: str | None = None,
                   key_command: str | None = None) -> Namespace:
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    meta = open_metadata(data, meta_url, key_command=key_command)
    drive_set = open_drives(meta, data, drives, ec, journal=journal, adopt=recover)
    chunks = ChunkStore(drive_set, meta, segment_size=segment_size, recover=recover)
    return Namespace(meta, chunks, region=region)


def recover_segments(meta: Metadata, data: Path, drives: list[str] | None = None, ec: str | None = None, *,
                     journal: bool = False, previous_run: str | None = None,
                     buffer_drives: list[str] | None = None) -> DriveSet:
    """Adopt drives of a store from before identity files, seal the segments a previous run left open
    (cutting torn tails, erasure-coding replicas), and sweep what the database proves is garbage.
    ``previous_run``: on a shared database, the prefix of this gateway's lease holder ids, whose
    leases are taken over at once (SegmentLog.recover; only while no process of it runs)."""
    drive_set = open_drives(meta, data, drives, ec, journal=journal, adopt=True, buffer_drives=buffer_drives)
    log = SegmentLog(drive_set, meta)
    log.recover(previous_run=previous_run)
    log.close()
    return drive_set


def new_access_key() -> str:
    return "EX" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(18))


def new_secret_key() -> str:
    return secrets.token_urlsafe(30)[:40]


@dataclass
class Credentials:
    access_key: str
    secret_key: str
    generated: bool


def ensure_admin(meta: Metadata, data: Path, access_key: str | None, secret_key: str | None) -> Credentials:
    """The admin identity: the given keys, else the stored ones (the credentials file, else the
    database: a `--data` rebuilt by `fsck --restore-meta` keeps its admin), else freshly generated.
    Keys not given are written to the credentials file, 0600."""
    path = data / CREDENTIALS_FILE
    generated = False
    current = {u.name: u for u in meta.list_users()}.get(ADMIN)
    if access_key is None:
        if path.exists():
            with open(path, "rb") as f:
                stored = tomllib.load(f)
            access_key, secret_key = stored["access_key"], stored["secret_key"]
        else:
            if current is not None:
                access_key, secret_key = current.access_key, current.secret_key
            else:
                access_key, secret_key = new_access_key(), new_secret_key()
                generated = True
            write_private(path, f'access_key = "{access_key}"\nsecret_key = "{secret_key}"\n'.encode())
    assert secret_key is not None
    if current is None:
        meta.add_user(User(ADMIN, access_key, secret_key, time.time_ns()))
    elif (current.access_key, current.secret_key) != (access_key, secret_key):
        meta.set_user_keys(ADMIN, access_key, secret_key)  # the admin keeps its buckets
    return Credentials(access_key, secret_key, generated)


ACCOUNT_FILE = "blob-account.toml"
DEFAULT_ACCOUNT = "exastor"


@dataclass
class AccountKey:
    name: str
    key: str
    generated: bool


def stored_account(meta: Metadata) -> tuple[str | None, str | None]:
    """The Blob account name and key the server last recorded in the database (the key opened)."""
    name, key = bm.account_setting(meta)
    return name, (meta.sealer.open(key, ACCOUNT_CONTEXT) if key is not None else None)


def ensure_account(data: Path, name: str | None, key: str | None, meta: Metadata | None = None) -> AccountKey:
    """The Blob account name and key: the given ones, else the stored ones (the account file, else
    the database, so a `--data` rebuilt by `fsck --restore-meta` keeps its key), else generated (a
    64-byte key, base64, as Azure's). Keys not given are written to the account file, 0600; with
    ``meta``, the account is also recorded in the database (and so in its copies on the drives),
    its key sealed."""
    import base64

    path = data / ACCOUNT_FILE
    stored: dict[str, str] = {}
    if path.exists():
        with open(path, "rb") as f:
            stored = tomllib.load(f)
    elif meta is not None:
        recorded = dict(zip(("account_name", "account_key"), stored_account(meta), strict=True))
        stored = {k: v for k, v in recorded.items() if v is not None}
    name = name or stored.get("account_name") or DEFAULT_ACCOUNT
    generated = False
    if key is None:
        key = stored.get("account_key")
        if key is None:
            key = base64.b64encode(secrets.token_bytes(64)).decode()
            generated = True
        if not path.exists():
            write_private(path, f'account_name = "{name}"\naccount_key = "{key}"\n'.encode())
    if meta is not None:
        bm.record_account(meta, name, key, meta.sealer, ACCOUNT_CONTEXT)
    return AccountKey(name, key, generated)
