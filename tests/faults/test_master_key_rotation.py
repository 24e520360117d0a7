"""`exastor key rotate-master` with a real server and real clients: every secret (users' secret keys,
the Blob account key, the data keys) is resealed under a new master key; after a restart the old
credentials still sign, old objects still decrypt, the old key no longer opens the database, the
old key is kept aside (never deleted), and the metadata copies sealed under it are replaced."""

from __future__ import annotations

import base64
import os
import random
import sqlite3
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from conftest import ALT_ACCESS_KEY, ALT_SECRET_KEY, exastor, s3_client, start_server, wait_until
from exastor.datadir import keys
from exastor.datadir.opening import open_metadata
from exastor.meta.sealing import key_id
from exastor.services import metabackup


def _drives(tmp_path: Path) -> list[Path]:
    return [tmp_path / f"d{i}" for i in range(3)]


def _serve(tmp_path: Path, **env: str):
    args = [a for d in _drives(tmp_path) for a in ("--drive", str(d))]
    return start_server(tmp_path, *args, env={"EXASTOR_META_BACKUP_INTERVAL": "1", **env})


def _sealed_ids(db: Path) -> set[str]:
    """The master key ids every sealed value of a database (or a copy of it) names."""
    with sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True) as con:
        values = [r[0] for r in con.execute("SELECT secret_key FROM users")]
        values += [r[0] for r in con.execute("SELECT value FROM blob_settings WHERE name = 'account_key'")]
        values += [r[0] for r in con.execute("SELECT wrapped FROM data_keys")]
    assert values and all(v.startswith("enc1:") for v in values)
    return {v.split(":")[1] for v in values}


def _until_copied(drives: list[Path], users: int) -> list[metabackup.Backup]:
    def holding() -> list[metabackup.Backup]:
        copies = metabackup.backups(drives)
        for copy in copies:
            try:
                with sqlite3.connect(f"file:{copy.path}?mode=ro&immutable=1", uri=True) as con:
                    if con.execute("SELECT COUNT(*) FROM users").fetchone()[0] == users:
                        return copies
            except sqlite3.Error:
                continue  # pruned while we looked
        return []

    return wait_until(holding, "a metadata copy that holds the users", interval=0.2)


def _fill(server) -> dict[str, bytes]:
    rng = random.Random(1204)
    bodies = {"s3": rng.randbytes(1 << 20), "blob": rng.randbytes(300_000)}
    exastor("user", "add", "alt", "--access-key", ALT_ACCESS_KEY, "--secret-key", ALT_SECRET_KEY,
            data_dir=server.data_dir)
    s3 = s3_client(server)
    s3.create_bucket(Bucket="rot")
    s3.put_object(Bucket="rot", Key="obj", Body=bodies["s3"])
    s3_client(server, alt=True).create_bucket(Bucket="alts")
    blobs = BlobServiceClient.from_connection_string(server.connection_string)
    blobs.create_container("rotc")
    blobs.get_blob_client("rotc", "blob").upload_blob(bodies["blob"])
    return bodies


def _read_back(server, bodies: dict[str, bytes]) -> None:
    """The old credentials sign (admin, alt, the Blob account key) and old records decrypt."""
    assert s3_client(server).get_object(Bucket="rot", Key="obj")["Body"].read() == bodies["s3"]
    assert [b["Name"] for b in s3_client(server, alt=True).list_buckets()["Buckets"]] == ["alts"]
    blobs = BlobServiceClient.from_connection_string(server.connection_string)
    assert blobs.get_blob_client("rotc", "blob").download_blob().readall() == bodies["blob"]


def test_rotate_master_reseals_everything_and_the_old_key_no_longer_opens_the_database(tmp_path):
    server = _serve(tmp_path)
    drives = _drives(tmp_path)
    data = server.data_dir
    key_file = data / keys.KEY_FILE
    try:
        bodies = _fill(server)
        _until_copied(drives, users=2)
        running = exastor("key", "rotate-master", data_dir=data, check=False)
        assert running.returncode == 2 and "stop it first" in running.stderr  # never under a live server
    finally:
        server.stop()
    # The copies as the server left them (it kept taking copies, and pruning older ones, until it stopped).
    old_copies = metabackup.backups(drives)
    assert old_copies
    old_key = key_file.read_bytes()
    old_id = key_id(base64.b64decode(old_key))
    db = data / "meta" / "exastor.sqlite"
    assert _sealed_ids(db) == {old_id}

    rotated = exastor("key", "rotate-master", data_dir=data)
    new_id = key_id(base64.b64decode(key_file.read_bytes()))
    assert new_id != old_id and f"master key {new_id} now seals" in rotated.stdout
    assert _sealed_ids(db) == {new_id}, "users' secrets, the account key and the data keys: all resealed"
    kept = data / f"master.key.old-{old_id}"
    assert kept.read_bytes() == old_key and kept.stat().st_mode & 0o777 == 0o600  # kept aside, private
    assert (key_file.stat().st_mode & 0o777) == 0o600 and not (data / keys.NEW_KEY_FILE).exists()
    for copy in old_copies:  # still there until a fresh copy replaces them (the next serve)
        assert _sealed_ids(copy.path) == {old_id}
    status = exastor("key", "status", data_dir=data).stdout
    assert f"may still be sealed under master key {old_id}" in status and str(kept) in status

    # The old key no longer opens the database (and the message says where the needed key is).
    new_key = key_file.read_bytes()
    key_file.write_bytes(old_key)
    shown = exastor("user", "show", "admin", data_dir=data, check=False)
    assert shown.returncode == 2 and f"sealed under {new_id}" in shown.stderr and "Traceback" not in shown.stderr
    with pytest.raises(RuntimeError, match=f"holds master key {old_id}"):
        server.start()
    key_file.write_bytes(new_key)

    server.start()
    try:
        _read_back(server, bodies)
    finally:
        server.stop()
    assert "Traceback" not in server.log_text()
    assert not any(c.path.exists() for c in old_copies), "copies sealed under the old key are retired"
    copies = metabackup.backups(drives)
    assert copies and all(_sealed_ids(c.path) == {new_id} for c in copies)
    status = exastor("key", "status", data_dir=data).stdout
    assert "may still be sealed" not in status and f"wrapped by master key {new_id}" in status
    assert kept.exists(), "the old key stays until the operator removes it"



def _key_file(path: Path) -> str:
    """A key file outside DATA, as a secrets manager would hold it; returns the command that prints it."""
    path.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    return f"cat {path}"


def test_with_key_command_the_new_key_comes_from_the_operators_command(tmp_path, monkeypatch):
    old_command = _key_file(tmp_path / "kms-old")
    new_command = _key_file(tmp_path / "kms-new")
    monkeypatch.setenv("EXASTOR_KEY_COMMAND", old_command)  # for the commands (`user add`, `key`)
    server = _serve(tmp_path, EXASTOR_KEY_COMMAND=old_command)
    try:
        bodies = _fill(server)
    finally:
        server.stop()
    data = server.data_dir
    refused = exastor("key", "rotate-master", data_dir=data, check=False)
    assert refused.returncode == 2 and "--new-key-command" in refused.stderr
    rotated = exastor("key", "rotate-master", "--new-key-command", new_command, data_dir=data)
    assert "set key_command (or EXASTOR_KEY_COMMAND) to it" in rotated.stdout
    assert not list(data.glob("master.key*")), "with key_command nothing holding a key is written to DATA"
    new_id = key_id(base64.b64decode((tmp_path / "kms-new").read_text()))
    assert _sealed_ids(data / "meta" / "exastor.sqlite") == {new_id}

    with pytest.raises(RuntimeError, match=f"sealed under {new_id}"):
        server.start()  # still given the old command: the old key opens nothing
    server.env["EXASTOR_KEY_COMMAND"] = new_command
    server.start()
    try:
        _read_back(server, bodies)
    finally:
        server.stop()
    assert "Traceback" not in server.log_text()


def test_an_interrupted_rotation_is_named_and_finished_by_running_it_again(tmp_path, monkeypatch):
    server = _serve(tmp_path)
    try:
        bodies = _fill(server)
    finally:
        server.stop()
    data = server.data_dir
    old_id = key_id(base64.b64decode((data / keys.KEY_FILE).read_text()))

    def crash(*_args: object) -> None:  # the process dies after the commit, before the key files move
        raise OSError("injected: crashed before the key files moved")

    meta = open_metadata(data)
    try:
        monkeypatch.setattr(keys.os, "replace", crash)
        with pytest.raises(OSError, match="injected"):
            keys.rotate_master(data, meta)
        monkeypatch.undo()
    finally:
        meta.close()
    pending = data / keys.NEW_KEY_FILE
    new_id = key_id(base64.b64decode(pending.read_text()))
    assert _sealed_ids(data / "meta" / "exastor.sqlite") == {new_id}
    shown = exastor("user", "show", "admin", data_dir=data, check=False)
    assert shown.returncode == 2 and "interrupted `exastor key rotate-master`" in shown.stderr

    again = exastor("key", "rotate-master", data_dir=data)
    assert "already resealed by an interrupted run" in again.stdout
    assert key_id(base64.b64decode((data / keys.KEY_FILE).read_text())) == new_id and not pending.exists()
    assert (data / f"master.key.old-{old_id}").exists()
    server.start()
    try:
        _read_back(server, bodies)
    finally:
        server.stop()


# --- PostgreSQL: gateways elsewhere share the database; their heartbeats say who runs ----------------

PG_ENV = {"EXASTOR_HEARTBEAT_INTERVAL": "0.3", "EXASTOR_DOWN_AFTER": "3"}


def _pg_sealed_ids(dsn: str) -> set[str]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        values = [r[0] for r in con.execute("SELECT secret_key FROM users")]
        values += [r[0] for r in con.execute("SELECT value FROM blob_settings WHERE name = 'account_key'")]
        values += [r[0] for r in con.execute("SELECT wrapped FROM data_keys")]
    assert values and all(v.startswith("enc1:") for v in values)
    return {v.split(":")[1] for v in values}


def _gateway_ages(dsn: str) -> list[float]:
    """Seconds since each gateway process (starting ones included) heartbeated, by the database's clock."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        rows = con.execute("SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000 - seen_ms) / 1000.0 FROM members "
                           "WHERE kind IN ('gateway', 'gateway-starting')").fetchall()
    return [float(r[0]) for r in rows]


def test_rotate_master_on_postgresql_refuses_beside_a_running_gateway_and_reseals_when_all_are_stopped(
        tmp_path, pg_database, monkeypatch):
    dsn = pg_database
    monkeypatch.setenv("EXASTOR_DOWN_AFTER", PG_ENV["EXASTOR_DOWN_AFTER"])  # for the `key` commands below
    drive_args = [a for d in _drives(tmp_path) for a in ("--drive", str(d))]
    server = start_server(tmp_path, *drive_args, "--meta", dsn, env=PG_ENV)
    data = server.data_dir
    key_file = data / keys.KEY_FILE
    old_key = key_file.read_bytes()
    old_id = key_id(base64.b64decode(old_key))
    rng = random.Random(1205)
    bodies = {f"o{i}": rng.randbytes(300_000 + i) for i in range(3)}
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket="pgrot")
        for name, body in bodies.items():
            s3.put_object(Bucket="pgrot", Key=name, Body=body)
        blobs = BlobServiceClient.from_connection_string(server.connection_string)
        blobs.create_container("pgrotc")
        blobs.get_blob_client("pgrotc", "blob").upload_blob(bodies["o0"])
        assert _pg_sealed_ids(dsn) == {old_id}
        wait_until(lambda: any(age < 1 for age in _gateway_ages(dsn)), "the gateway's heartbeat", interval=0.1)
        local = exastor("key", "--meta", dsn, "rotate-master", data_dir=data, check=False)
        assert local.returncode == 2 and "stop it first" in local.stderr  # its own DATA: the server lock says so
        # From another host's DATA (same store, same master key) no file lock reaches the gateway: its
        # heartbeats on the database's clock do.
        other = tmp_path / "elsewhere"
        other.mkdir(mode=0o700)
        (other / keys.KEY_FILE).write_bytes(old_key)
        os.chmod(other / keys.KEY_FILE, 0o600)
        refused = exastor("key", "--meta", dsn, "rotate-master", data_dir=other, check=False)
        assert refused.returncode == 2 and "heartbeated within the last 3 s" in refused.stderr, refused.stderr
        assert "nothing was changed" in refused.stderr and "Traceback" not in refused.stderr
        assert _pg_sealed_ids(dsn) == {old_id}, "refused: nothing resealed"
        assert key_file.read_bytes() == old_key and (other / keys.KEY_FILE).read_bytes() == old_key
    finally:
        server.stop()

    # Every gateway stopped (its last heartbeat older than the down timeout): the rotation goes through.
    wait_until(lambda: all(age > 3.2 for age in _gateway_ages(dsn)), "the stopped gateway's heartbeats to age",
               timeout=30, interval=0.2)
    rotated = exastor("key", "--meta", dsn, "rotate-master", data_dir=data)
    new_key = key_file.read_bytes()
    new_id = key_id(base64.b64decode(new_key))
    assert new_id != old_id and f"master key {new_id} now seals" in rotated.stdout
    assert _pg_sealed_ids(dsn) == {new_id}, "the admin's secret, the account key and the data keys: all resealed"
    assert (data / f"master.key.old-{old_id}").read_bytes() == old_key

    # The old key no longer opens the store.
    key_file.write_bytes(old_key)
    with pytest.raises(RuntimeError, match=f"holds master key {old_id}"):
        server.start()
    key_file.write_bytes(new_key)
    server.start()
    try:
        s3 = s3_client(server)
        for name, body in bodies.items():
            assert s3.get_object(Bucket="pgrot", Key=name)["Body"].read() == body, name
        blobs = BlobServiceClient.from_connection_string(server.connection_string)
        assert blobs.get_blob_client("pgrotc", "blob").download_blob().readall() == bodies["o0"]
        s3.put_object(Bucket="pgrot", Key="after", Body=b"after rotation")  # new records: data keys open
        assert s3.get_object(Bucket="pgrot", Key="after")["Body"].read() == b"after rotation"
    finally:
        server.stop()
    status = exastor("key", "--meta", dsn, "status", data_dir=data).stdout
    assert f"wrapped by master key {new_id}" in status and old_id not in status.split("old master key")[0]
    assert "Traceback" not in server.log_text()
