"""The files in --data that no power-cut scenario rewinds - the master key (made, or rotated), the
admin credentials, the gateway's identity, the TLS certificates, the database a restore installs -
and the cluster key file: syscall
contract tests, as LocalDrive's (tests/unit/test_drive_seam.py). Each function runs on a temporary
directory with os.fsync, os.link, os.replace and os.rename recorded (an fsync by the path of its
descriptor and the file's size at that moment), and the test checks the fsyncs its durability needs:
the file's after its whole content was written and before the link or rename that publishes it, the
directory's after that.

The mutation check (tests/faults/fsync_mutation.py) disables each fsync in these functions in turn
and expects a test here to fail. Losing the master key after a power cut loses every sealed secret
and every encrypted byte; a gateway identity made twice leaves the first one's leases to expire."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from exastor.datadir import files, gateway_id, keys
from exastor.datadir.opening import open_metadata
from exastor.drives.wire import create_key
from exastor.gateway import tls
from exastor.meta.sealing import key_id
from exastor.services import metabackup


@pytest.fixture
def syscalls(monkeypatch) -> list[tuple]:
    """("fsync", path, size or None for a directory), ("link" | "replace" | "rename", src, dst)."""
    seen: list[tuple] = []
    real_fsync, real_link, real_replace, real_rename = os.fsync, os.link, os.replace, os.rename

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        seen.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"),
                     st.st_size if stat.S_ISREG(st.st_mode) else None))
        real_fsync(fd)

    def link(src, dst, *args, **kwargs) -> None:
        real_link(src, dst, *args, **kwargs)
        seen.append(("link", str(src), str(dst)))

    def replace(src, dst, *args, **kwargs) -> None:
        real_replace(src, dst, *args, **kwargs)
        seen.append(("replace", str(src), str(dst)))

    def rename(src, dst, *args, **kwargs) -> None:
        real_rename(src, dst, *args, **kwargs)
        seen.append(("rename", str(src), str(dst)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "fdatasync", lambda fd: pytest.fail("no fdatasync expected here"))
    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", rename)
    return seen


def _index(seen: list[tuple], kind: str, dst: Path) -> int:
    found = [i for i, e in enumerate(seen) if e[0] == kind and e[2] == str(dst)]
    assert len(found) == 1, (kind, dst, seen)
    return found[0]


def _file_fsynced_whole(seen: list[tuple], path: Path, size: int, before: int | None = None) -> None:
    """``path`` was fsynced holding all ``size`` bytes (after its write), before event ``before``."""
    window = seen if before is None else seen[:before]
    assert ("fsync", str(path), size) in window, (path, size, seen)


def _dir_fsynced(seen: list[tuple], directory: Path, after: int = -1) -> None:
    assert ("fsync", str(directory), None) in seen[after + 1:], (directory, seen)


def test_a_new_master_key_is_fsynced_then_its_directory(tmp_path, syscalls):
    path = tmp_path / "master.key"
    key = keys.FileKeyProvider(path).create()
    assert keys.FileKeyProvider(path).load() == key
    size = path.stat().st_size
    _file_fsynced_whole(syscalls, path, size)
    made = syscalls.index(("fsync", str(path), size))
    _dir_fsynced(syscalls, tmp_path, after=made)   # O_EXCL made the name: the directory holds it


def test_a_rotated_master_key_is_durable_before_its_name_moves_and_the_moves_are_durable(tmp_path, syscalls):
    """rotate_master: master.key.new made durable (as create), the old key linked aside, the new one
    renamed over master.key, then DATA fsynced (files.fsync_dir): a power cut after the command
    answered never brings the old key back as master.key while the database is sealed under the new."""
    data = tmp_path / "data"
    data.mkdir()
    meta = open_metadata(data)
    try:
        old = keys.ensure(data, meta)
        syscalls.clear()
        done = keys.rotate_master(data, meta)
    finally:
        meta.close()
    current, new_file = data / "master.key", data / keys.NEW_KEY_FILE
    new_key = keys.FileKeyProvider(current).load()
    assert new_key is not None and done["new"] == key_id(new_key) != old.key_id
    kept = keys.old_key_path(data, old.key_id)
    linked, replaced = _index(syscalls, "link", kept), _index(syscalls, "replace", current)
    assert syscalls[replaced][1] == str(new_file)
    _file_fsynced_whole(syscalls, new_file, current.stat().st_size, before=replaced)
    _dir_fsynced(syscalls, data, after=max(linked, replaced))


def test_the_admin_credentials_file_is_fsynced_whole_before_it_replaces_the_name_and_the_directory_after(
        tmp_path, syscalls):
    """files.write_private (credentials.toml, blob-account.toml, the TLS files): never rewritten in
    place (a cut would leave it empty or torn), and its name durable when it returns."""
    path = tmp_path / "credentials.toml"
    path.write_text("the old credentials")
    text = 'access_key = "AK"\nsecret_key = "SK"\n'
    files.write_private(path, text.encode())
    assert path.read_text() == text and path.stat().st_mode & 0o777 == 0o600
    replaced = _index(syscalls, "replace", path)
    _file_fsynced_whole(syscalls, Path(syscalls[replaced][1]), len(text), before=replaced)
    _dir_fsynced(syscalls, tmp_path, after=replaced)


def test_the_gateway_identity_is_fsynced_before_its_link_and_the_directory_after(tmp_path, syscalls):
    identity = gateway_id.ensure(tmp_path)
    path = tmp_path / gateway_id.GATEWAY_ID_FILE
    linked = _index(syscalls, "link", path)
    tmp = Path(syscalls[linked][1])
    _file_fsynced_whole(syscalls, tmp, len(identity) + 1, before=linked)
    _dir_fsynced(syscalls, tmp_path, after=linked)
    assert gateway_id.ensure(tmp_path) == identity


def test_each_tls_file_is_fsynced_whole_before_it_replaces_the_old(tmp_path, syscalls):
    """gateway/tls through files.write_private: the key, the certificate chain and the CA each written to a temporary file,
    fsynced, then renamed over the name (never a torn certificate under the real name), then the
    directory fsynced (the rename)."""
    cert, key, ca, made = tls.self_signed(tmp_path, "localhost")
    assert made
    for path in (cert, key, ca):
        replaced = _index(syscalls, "replace", path)
        tmp = Path(syscalls[replaced][1])
        # the size the file has now is the size the temporary file had when fsynced
        _file_fsynced_whole(syscalls, tmp, path.stat().st_size, before=replaced)
        assert [e for e in syscalls[:replaced] if e[0] == "fsync"][-1][1] == str(tmp)
        assert syscalls[replaced + 1] == ("fsync", str(path.parent), None), syscalls


def test_a_new_cluster_key_is_fsynced_whole_then_its_directory(tmp_path, syscalls):
    path = tmp_path / "cluster.key"
    create_key(path)
    size = path.stat().st_size
    _file_fsynced_whole(syscalls, path, size)
    _dir_fsynced(syscalls, tmp_path, after=syscalls.index(("fsync", str(path), size)))


def test_a_restored_database_is_fsynced_whole_before_it_replaces_the_name_and_the_directory_after(tmp_path,
                                                                                                   syscalls):
    """metabackup.install (``fsck --restore-meta``): a cut after the restore answered must not bring
    back the database it replaced (moved aside) or leave a torn one under the name."""
    db = tmp_path / "meta.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
        con.execute("INSERT INTO t VALUES ('a')")
    con.close()
    drive = tmp_path / "d0"
    drive.mkdir()
    copy = metabackup.take(db, [drive])[0]
    target = tmp_path / "data" / "meta" / "exastor.sqlite"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"the damaged database")
    syscalls.clear()
    assert metabackup.install(copy, target) is not None   # the old one moved aside
    replaced = _index(syscalls, "replace", target)
    _file_fsynced_whole(syscalls, Path(syscalls[replaced][1]), target.stat().st_size, before=replaced)
    _dir_fsynced(syscalls, target.parent, after=replaced)
