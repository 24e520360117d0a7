"""Directory drives on a shared database (engine/drives.py): on PostgreSQL every gateway has a data
directory of its own on a host of its own, so a drive's path is stored absolute, and a gateway that
cannot verify a directory (not mounted on its host) leaves it out of its own view only - another host
may see it fine. On SQLite (one server, one host) a path inside the data directory stays relative and
a drive that is not there is recorded offline, as before."""

from __future__ import annotations

import errno

from metacontract import backend, meta  # noqa: F401 - fixtures

from exastor.engine.drives import DriveSet
from exastor.meta import placement


def test_drive_paths_and_a_drive_one_gateway_cannot_see(backend, meta, tmp_path):  # noqa: F811
    data_a = tmp_path / "a"
    data_a.mkdir()
    paths = [data_a / "drive0", tmp_path / "elsewhere" / "drive1", tmp_path / "elsewhere" / "drive2"]
    first = DriveSet(meta, list(paths), base=data_a)
    stored = {i: p for i, p, *_ in placement.drive_rows(meta)}
    shared = backend.kind == "postgres"
    assert stored[0] == (str(paths[0]) if shared else "drive0"), stored
    assert stored[1] == str(paths[1]) and stored[2] == str(paths[2])

    # A second gateway (its own connection and data directory) on a host where drive2 is not mounted.
    paths[2].rename(tmp_path / "unmounted")
    other = backend.open()
    second = DriveSet(other, base=tmp_path / "b")
    assert second.get(2).state == "offline" and not second.readable(2)
    assert second.readable(1) and (second.readable(0) if shared else not second.readable(0))
    second.failed_io(2, FileNotFoundError(errno.ENOENT, "No such file or directory"))
    states = {i: state for i, _p, state, *_ in placement.drive_rows(meta)}
    if shared:
        assert states == {0: "active", 1: "active", 2: "active"}, "only the second gateway's own view changed"
        first.refresh()
        assert first.readable(2) is False  # in this test one filesystem is every host: it is gone here too
    else:
        assert states[2] == "offline", "SQLite: one host, the drive is gone for the store"
    (tmp_path / "unmounted").rename(paths[2])
    second.refresh()
    assert second.readable(2)
    states = {i: state for i, _p, state, *_ in placement.drive_rows(meta)}
    # SQLite: drive0's relative path, resolved against the second data directory, is not there.
    assert states == {0: "active" if shared else "offline", 1: "active", 2: "active"}
    first.close()
    second.close()


def test_a_relative_path_on_a_shared_database_becomes_absolute_where_the_drive_is(backend, meta, tmp_path):  # noqa: F811
    """A store on PostgreSQL from before absolute paths: the gateway whose data directory holds the
    drive rewrites its path absolute at its start; a gateway elsewhere changes nothing."""
    if backend.kind != "postgres":
        return  # SQLite keeps paths inside the data directory relative (tested above)
    data_a = tmp_path / "a"
    data_a.mkdir()
    DriveSet(meta, [data_a / "drive0"], base=data_a).close()
    placement.set_drive_path(meta, 0, "drive0")  # as stored before
    DriveSet(backend.open(), base=tmp_path / "b", adopt=True).close()
    assert [p for _i, p, *_ in placement.drive_rows(meta)] == ["drive0"], "not the other gateway's to fix"
    DriveSet(backend.open(), base=data_a, adopt=True).close()
    assert [(p, state) for _i, p, state, *_ in placement.drive_rows(meta)] == [(str(data_a / "drive0"), "active")]
