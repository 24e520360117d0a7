"""Secrets at rest: the metadata database and its copies on the drives are private and hold no
secret in the clear (they are sealed under a master key kept elsewhere); an older store is
migrated on start; the banner prints secrets only when it made them."""

from __future__ import annotations

import base64
import os
import sqlite3
import time
from pathlib import Path

import pytest

from conftest import (
    ACCOUNT_KEY,
    ALT_ACCESS_KEY,
    ALT_SECRET_KEY,
    SECRET_KEY,
    exastor,
    s3_client,
    start_server,
    unseal_as_before_sealing,
)
from exastor.services import metabackup


def _drives(tmp_path: Path) -> list[Path]:
    return [tmp_path / f"d{i}" for i in range(3)]


def _serve(tmp_path: Path, **env: str):
    args = [a for d in _drives(tmp_path) for a in ("--drive", str(d))]
    return start_server(tmp_path, *args, env={"EXASTOR_META_BACKUP_INTERVAL": "1", **env})


def _until_copied(drives: list[Path], holds) -> None:  # noqa: ANN001
    """Until some copy on the drives satisfies ``holds(connection)`` (copies follow changes, within
    about a second at meta_backup_interval = 1)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for copy in metabackup.backups(drives):
            try:
                with sqlite3.connect(f"file:{copy.path}?mode=ro&immutable=1", uri=True) as con:
                    if holds(con):
                        return
            except sqlite3.Error:
                continue  # pruned while we looked
        time.sleep(0.2)
    raise AssertionError("no metadata copy holds the change")


def _secret_forms() -> list[bytes]:
    return [SECRET_KEY.encode(), ALT_SECRET_KEY.encode(), ACCOUNT_KEY.encode(), base64.b64decode(ACCOUNT_KEY)]


def _files_with_metadata(data: Path, drives: list[Path]) -> list[Path]:
    meta = data / "meta"
    return [p for p in meta.iterdir() if p.is_file()] + [b.path for b in metabackup.backups(drives)]


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_the_database_and_its_copies_hold_no_secret_in_the_clear_and_are_private(tmp_path):
    server = _serve(tmp_path)
    drives = _drives(tmp_path)
    try:
        s3_client(server).create_bucket(Bucket="sealed")
        exastor("user", "add", "alt", "--access-key", ALT_ACCESS_KEY, "--secret-key", ALT_SECRET_KEY,
                data_dir=server.data_dir)
        s3_client(server, alt=True).list_buckets()  # the sealed secret opens for signing
        _until_copied(drives, lambda con: con.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 2)
        live = _files_with_metadata(server.data_dir, drives)  # -wal and -shm beside the database
    finally:
        server.stop()
    assert any(p.name.endswith("-wal") for p in live)
    files = _files_with_metadata(server.data_dir, drives)
    assert len(files) >= 3
    for path in files:
        content = path.read_bytes()
        for secret in _secret_forms():
            assert secret not in content, f"{path} holds a secret in the clear"
        assert _mode(path) == 0o600, path
    copies = {b.path.parent for b in metabackup.backups(drives)}
    assert len(copies) == 2  # m+1 drives
    for folder in [server.data_dir, server.data_dir / "meta", *copies]:
        assert _mode(folder) == 0o700, folder
    assert _mode(server.data_dir / "master.key") == 0o600
    with sqlite3.connect(server.data_dir / "meta" / "exastor.sqlite") as con:
        stored = [v for (v,) in con.execute("SELECT secret_key FROM users")]
        stored.append(con.execute("SELECT value FROM blob_settings WHERE name = 'account_key'").fetchone()[0])
    assert len(stored) == 3 and all(v.startswith("enc1:") for v in stored)


def test_a_store_from_before_sealing_is_sealed_on_start_and_its_clear_copies_retired(tmp_path):
    server = _serve(tmp_path, EXASTOR_ENCRYPT_AT_REST="off")  # from before data keys, too
    drives = _drives(tmp_path)
    try:
        s3_client(server).create_bucket(Bucket="old")
        s3_client(server).put_object(Bucket="old", Key="k", Body=b"still here")
    finally:
        server.stop()
    # Turn it into a store as the previous version left it: secrets in the clear, 0644 files, no
    # key file, and a copy of that database on the drives.
    db = unseal_as_before_sealing(server.data_dir)
    for path in (db, server.data_dir / "meta"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    for old in metabackup.backups(drives):
        old.path.unlink()
    clear_copy = metabackup.take(db, drives[:2])
    assert SECRET_KEY.encode() in clear_copy[0].path.read_bytes()

    server.start()
    try:
        assert s3_client(server).get_object(Bucket="old", Key="k")["Body"].read() == b"still here"
    finally:
        server.stop()
    assert "sealed 2 secret(s) that were stored in the clear" in server.log_text()
    assert not any(c.path.exists() for c in clear_copy), "copies holding clear secrets are retired"
    assert metabackup.backups(drives), "after a fresh copy"
    for path in _files_with_metadata(server.data_dir, drives):
        for secret in _secret_forms():
            assert secret not in path.read_bytes(), f"{path} still holds a secret in the clear"
        assert _mode(path) == 0o600, path
    assert _mode(server.data_dir / "meta") == 0o700


def test_the_banner_shows_secrets_only_when_it_made_them_and_user_show_does_on_demand(tmp_path):
    server = start_server(tmp_path)  # keys given on the command line: not made by the server
    try:
        banner = server.log_text()
        assert "exastor" in banner and "access key  : EXTESTADMIN" in banner
        assert SECRET_KEY not in banner and ACCOUNT_KEY not in banner
        assert "not shown (exastor user show admin" in banner
        listed = exastor("user", "list", data_dir=server.data_dir)
        assert SECRET_KEY not in listed.stdout
        shown = exastor("user", "show", "admin", data_dir=server.data_dir)
        assert f"secret key : {SECRET_KEY}" in shown.stdout and f"Blob account key : {ACCOUNT_KEY}" in shown.stdout
        missing = exastor("user", "show", "nobody", data_dir=server.data_dir, check=False)
        assert missing.returncode == 1 and "no user 'nobody'" in missing.stderr
    finally:
        server.stop()


def test_without_its_master_key_a_store_refuses_to_start_and_says_which_key(tmp_path):
    server = _serve(tmp_path)
    server.stop()
    key_file = server.data_dir / "master.key"
    saved = key_file.read_bytes()
    key_file.unlink()
    with pytest.raises(RuntimeError, match="master.key is missing and the database's secrets are sealed under"):
        server.start()
    shown = exastor("user", "show", "admin", data_dir=server.data_dir, check=False)
    assert shown.returncode == 2 and "sealed under master key" in shown.stderr and "Traceback" not in shown.stderr
    assert not key_file.exists(), "no new key is made while the database's secrets need the old one"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode())  # another store's key
    with pytest.raises(RuntimeError, match="holds master key .* but the database's secrets are sealed under"):
        server.start()
    key_file.write_bytes(saved)
    os.chmod(key_file, 0o600)
    server.start()
    try:
        s3_client(server).list_buckets()
    finally:
        server.stop()
    assert "Traceback" not in server.log_text()
