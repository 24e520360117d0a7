"""Copies of the metadata database (services/metabackup.py) on plain SQLite files."""

from __future__ import annotations

import sqlite3
import time

import pytest

from exastor.services import metabackup


def _db(tmp_path):
    db = tmp_path / "meta.sqlite"
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB)")
    return db, con


def _drives(tmp_path, n: int):
    """Drive directories (they exist: a copy is never what creates a drive's root)."""
    drives = [tmp_path / f"d{i}" for i in range(n)]
    for d in drives:
        d.mkdir()
    return drives


def test_copies_are_consistent_verified_pruned_and_skipped_when_unchanged(tmp_path):
    db, con = _db(tmp_path)
    drives = _drives(tmp_path, 2)
    thread = metabackup.MetaBackupThread(db, lambda: drives, interval=3600)
    for round_ in range(5):
        con.execute("INSERT INTO t VALUES (?, ?)", (f"k{round_}", b"x" * 5000))
        made = thread.run_once()
        assert [b.path.parent.parent for b in made] == drives and len({b.digest for b in made}) == 1
        assert thread.run_once() == [], "no commit since the last copy: no new copy"
        time.sleep(0.001)
    for drive in drives:  # the newest three per drive, no partial leftovers
        kept = metabackup.found(drive / metabackup.BACKUP_DIR)
        assert len(kept) == metabackup.KEEP and not list((drive / metabackup.BACKUP_DIR).glob("*.partial"))
    newest, rejected = metabackup.newest_good(drives)
    assert rejected == []
    with sqlite3.connect(newest.path) as copy:  # the copy holds every row committed before it (WAL included)
        assert copy.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 5
    assert not newest.path.with_name(newest.path.name + "-wal").exists()


def test_a_damaged_copy_is_never_installed(tmp_path):
    db, con = _db(tmp_path)
    con.execute("INSERT INTO t VALUES ('a', x'00')")
    drives = _drives(tmp_path, 1)
    older = metabackup.take(db, drives)[0]
    time.sleep(0.001)
    con.execute("INSERT INTO t VALUES ('b', x'01')")
    newer = metabackup.take(db, drives)[0]
    damaged = bytearray(newer.path.read_bytes())
    damaged[-10] ^= 1
    newer.path.write_bytes(damaged)
    chosen, rejected = metabackup.newest_good(drives)
    assert chosen == older and [(b, why) for b, why in rejected] == [(newer, "BLAKE3 mismatch")]
    target = tmp_path / "restored" / "exastor.sqlite"
    assert metabackup.install(chosen, target) is None  # nothing was there to keep aside
    aside = metabackup.install(chosen, target)
    assert aside is not None and (aside / "exastor.sqlite").exists(), "what was there is kept, not deleted"
    older.path.write_bytes(b"not a database at all")
    with pytest.raises(metabackup.NoBackup):
        metabackup.newest_good(drives)


def test_first_copy_waits_only_for_the_rest_of_the_interval(tmp_path):
    db, _ = _db(tmp_path)
    drives = _drives(tmp_path, 1)
    thread = metabackup.MetaBackupThread(db, lambda: drives, interval=300)
    assert thread.first_delay() == metabackup.FIRST_COPY_MIN_S, "no copy yet: soon after start"
    metabackup.take(db, drives)
    assert 290 < thread.first_delay() <= 300, "a fresh copy: the next one a full interval later"
    old = metabackup.backups(drives)[0]
    aged = old.path.with_name(f"meta-{old.taken_ns - 280 * 10**9}-{old.digest}.sqlite")
    old.path.rename(aged)
    assert 19 < thread.first_delay() <= 20, "a restart 280 s after the last copy copies 20 s later"


def test_admin_keys_come_back_from_the_database_when_the_credentials_file_is_gone(tmp_path):
    """After `fsck --restore-meta` into a new --data, the admin keeps the keys the copy holds."""
    from exastor.datadir import keys
    from exastor.datadir.opening import CREDENTIALS_FILE, ensure_admin, open_metadata

    meta = open_metadata(tmp_path)
    keys.ensure(tmp_path, meta)  # as `exastor serve` does: the key that seals the secrets in the database
    try:
        first = ensure_admin(meta, tmp_path, None, None)
        assert first.generated
        (tmp_path / CREDENTIALS_FILE).unlink()
        again = ensure_admin(meta, tmp_path, None, None)
        assert (again.access_key, again.secret_key, again.generated) == (first.access_key, first.secret_key, False)
        assert (tmp_path / CREDENTIALS_FILE).read_text().count(first.secret_key) == 1  # written back, 0600
        assert (tmp_path / CREDENTIALS_FILE).stat().st_mode & 0o077 == 0
    finally:
        meta.close()
