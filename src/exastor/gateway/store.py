"""Opening a store from its data directory: metadata, drives, namespace, credentials."""

from __future__ import annotations

import os
import secrets
import string
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exastor.engine.drives import DriveSet
from exastor.engine.segments import DEFAULT_SEGMENT_SIZE, SegmentLog
from exastor.engine.store import ChunkStore
from exastor.meta import blob as bm
from exastor.meta.records import User
from exastor.meta.sqlite import SqliteRunner
from exastor.meta.store import Metadata
from exastor.namespace.store import Namespace

ADMIN = "admin"
CREDENTIALS_FILE = "credentials.toml"


def open_metadata(data: Path) -> Metadata:
    (data / "meta").mkdir(parents=True, exist_ok=True)
    return Metadata(SqliteRunner(data / "meta" / "exastor.sqlite"))


def drive_dirs(data: Path) -> list[Path]:
    """The store's drive directories in id order (drive 0 first; removed drives left out), paths
    stored relative to the data directory resolved against it. A store that never named drives
    has one: DATA/drive0."""
    db = data / "meta" / "exastor.sqlite"
    if db.exists():
        import sqlite3
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
                rows = con.execute("SELECT path FROM drives WHERE state != 'removed' ORDER BY id").fetchall()
            if rows:
                return [Path(r[0]) if Path(r[0]).is_absolute() else data.resolve() / r[0] for r in rows]
        except sqlite3.Error:
            pass  # an old store without the drives table yet
    return [data / "drive0"]


def open_drives(meta: Metadata, data: Path, drives: list[str] | None = None, ec: str | None = None, *,
                adopt: bool = False) -> DriveSet:
    """The drive set: ``drives`` are registered (idempotent); with none given and none known, DATA/drive0
    joins (the first start: the only time a drive's directory is created without `exastor drive add`).
    ``adopt``: this process has the store to itself (see DriveSet)."""
    paths = [Path(p).expanduser() for p in drives or []]
    if not paths:
        known = meta.runner.read(lambda cur: cur.execute("SELECT COUNT(*) FROM drives").fetchone()[0])
        if not known:
            paths = [data / "drive0"]
    return DriveSet(meta, paths, ec=ec or None, base=data, adopt=adopt)


def open_namespace(data: Path, *, region: str = "us-east-1", segment_size: int = DEFAULT_SEGMENT_SIZE,
                   recover: bool = True, drives: list[str] | None = None, ec: str | None = None) -> Namespace:
    data.mkdir(parents=True, exist_ok=True)
    meta = open_metadata(data)
    chunks = ChunkStore(open_drives(meta, data, drives, ec, adopt=recover), meta, segment_size=segment_size,
                        recover=recover)
    return Namespace(meta, chunks, region=region)


def recover_segments(meta: Metadata, data: Path, drives: list[str] | None = None, ec: str | None = None) -> DriveSet:
    """Adopt drives of a store from before identity files, seal the segments a previous run left open
    (cutting torn tails, erasure-coding replicas), and sweep what the database proves is garbage."""
    drive_set = open_drives(meta, data, drives, ec, adopt=True)
    log = SegmentLog(drive_set, meta)
    log.recover()
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
            _write_private(path, f'access_key = "{access_key}"\nsecret_key = "{secret_key}"\n')
    assert secret_key is not None
    if current is None or (current.access_key, current.secret_key) != (access_key, secret_key):
        if current is not None:
            meta.remove_user(ADMIN)
        meta.add_user(User(ADMIN, access_key, secret_key, time.time_ns()))
    return Credentials(access_key, secret_key, generated)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


ACCOUNT_FILE = "blob-account.toml"
DEFAULT_ACCOUNT = "exastor"


@dataclass
class AccountKey:
    name: str
    key: str
    generated: bool


def ensure_account(data: Path, name: str | None, key: str | None, meta: Metadata | None = None) -> AccountKey:
    """The Blob account name and key: the given ones, else the stored ones (the account file, else
    the database, so a `--data` rebuilt by `fsck --restore-meta` keeps its key), else generated (a
    64-byte key, base64, as Azure's). Keys not given are written to the account file, 0600; with
    ``meta``, the account is also recorded in the database (and so in its copies on the drives)."""
    import base64

    path = data / ACCOUNT_FILE
    stored: dict[str, str] = {}
    if path.exists():
        with open(path, "rb") as f:
            stored = tomllib.load(f)
    elif meta is not None:
        stored = meta.runner.read(lambda cur: {k: v for k in ("account_name", "account_key")
                                               if (v := bm.get_setting(cur, k)) is not None})
    name = name or stored.get("account_name") or DEFAULT_ACCOUNT
    generated = False
    if key is None:
        key = stored.get("account_key")
        if key is None:
            key = base64.b64encode(secrets.token_bytes(64)).decode()
            generated = True
        if not path.exists():
            _write_private(path, f'account_name = "{name}"\naccount_key = "{key}"\n')
    if meta is not None:
        def record(cur: Any) -> None:
            for setting, value in (("account_name", name), ("account_key", key)):
                if bm.get_setting(cur, setting) != value:
                    bm.put_setting(cur, setting, value)
        meta.runner.write_sync(record)
    return AccountKey(name, key, generated)
