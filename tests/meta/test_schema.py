"""Versioned schemas (meta/migrations/): fresh databases, reopening, in-place upgrades of stores
from before versions were kept, refusals, and the invariants the database itself enforces."""

from __future__ import annotations

import sqlite3
from importlib import resources

import pytest
from metacontract import backend, bucket, meta, obj, run, vid_factory  # noqa: F401 - fixtures

from exastor import errors
from exastor.meta import migrations
from exastor.meta.contract import Metadata
from exastor.meta.sqlite import SqliteRunner


def _versions(meta: Metadata) -> list[int]:
    return [r[0] for r in meta.runner.read(lambda cur: cur.execute(
        "SELECT version FROM schema_version ORDER BY version").fetchall())]


def test_fresh_database_is_at_the_newest_version_and_reopens_unchanged(backend, meta):
    newest = migrations.latest_version(backend.kind)
    assert meta.runner.schema_versions == (0, newest)
    assert _versions(meta) == list(range(1, newest + 1))
    again = backend.open()
    assert again.runner.schema_versions == (newest, newest)
    assert _versions(again) == list(range(1, newest + 1))


def test_a_newer_schema_is_refused(backend, meta):
    meta.runner.write_sync(lambda cur: cur.execute(
        "INSERT INTO schema_version (version, name, applied_ns) VALUES (999, 'future', 0)"))
    with pytest.raises(errors.MetadataOpenError, match="newer than this exastor"):
        backend.open()


def _raw(backend):
    """A plain driver connection, autocommit: the database's own constraints, no runner between."""
    if backend.kind == "postgres":
        import psycopg
        return psycopg.connect(backend.target, autocommit=True), "%s", psycopg.IntegrityError
    return sqlite3.connect(backend.target, isolation_level=None), "?", sqlite3.IntegrityError


def test_the_database_enforces_the_invariants(backend, meta):
    run(meta.create_bucket(bucket()))
    run(meta.put_object(obj("bkt", "k"), make_version_id=vid_factory()))
    conn, p, integrity = _raw(backend)
    try:
        # one latest version per key
        with pytest.raises(integrity):
            conn.execute("INSERT INTO objects (bucket, key, version_id, seq, is_latest, delete_marker, size, etag, "
                         "mtime_ns, owner, attrs) VALUES ('bkt', 'k', 'v2', 99, 1, 0, 0, 'e', 1, 'o', '{}')")
        # unique upload ids
        conn.execute(f"INSERT INTO uploads (upload_id, bucket, key, initiated_ns, owner) VALUES ({p}, 'bkt', 'k', 1, 'o')",
                     ("u1",))
        with pytest.raises(integrity):
            conn.execute(f"INSERT INTO uploads (upload_id, bucket, key, initiated_ns, owner) "
                         f"VALUES ({p}, 'bkt', 'k2', 2, 'o')", ("u1",))
        # reference counts never negative
        conn.execute(f"INSERT INTO chunks (fp, segment, \"offset\", stored_len, raw_len, codec, refs) "
                     f"VALUES ({p}, 1, 0, 1, 1, 0, 1)", (b"\x01" * 32,))
        with pytest.raises(integrity):
            conn.execute(f"UPDATE chunks SET refs = refs - 2 WHERE fp = {p}", (b"\x01" * 32,))
    finally:
        conn.close()


def _v1_store(path) -> None:
    """A store as every exastor before versioned schemas wrote it: version 1's tables, no schema_version."""
    v1 = resources.files("exastor.meta.migrations").joinpath("sqlite/0001_initial.sql").read_text()
    with sqlite3.connect(path) as conn:
        conn.executescript(v1)
        conn.execute("INSERT INTO buckets (name, owner, created_ns, region) VALUES ('old', 'alice', 1, 'r')")
        conn.execute("INSERT INTO objects (bucket, key, version_id, seq, is_latest, delete_marker, size, etag, "
                     "mtime_ns, owner, attrs, manifest) VALUES ('old', 'k', 'null', 1, 1, 0, 3, 'e', 1, 'o', '{}', ?)",
                     (b"m",))
        conn.execute("INSERT INTO chunks VALUES (?, 1, 0, 1, 1, 0, 2, NULL)", (b"\x02" * 32,))
        conn.execute("INSERT INTO counters (name, value) VALUES ('seq', 1)")


def test_an_old_sqlite_store_upgrades_in_place(tmp_path):
    path = tmp_path / "old.sqlite"
    _v1_store(path)
    meta = Metadata(SqliteRunner(path))
    try:
        assert meta.runner.schema_versions == (0, migrations.latest_version("sqlite"))
        got = meta.get_object("old", "k")
        assert got.manifest == b"m" and got.size == 3
        assert meta.runner.read(lambda cur: cur.execute("SELECT refs FROM chunks").fetchone()[0]) == 2
        run(meta.create_bucket(bucket("new")))
        assert run(meta.put_object(obj("old", "k2"), make_version_id=vid_factory())).seq == 2  # the old counter
    finally:
        meta.close()
    with sqlite3.connect(path) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE chunks SET refs = -1")


def test_a_failed_migration_leaves_the_store_as_it_was(tmp_path):
    path = tmp_path / "bad.sqlite"
    _v1_store(path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE chunks SET refs = -5")  # what version 2's CHECK forbids
    with pytest.raises(errors.MetadataOpenError, match="0002_invariants"):
        SqliteRunner(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT refs FROM chunks").fetchone()[0] == -5
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "schema_version" not in tables and "chunks_v2" not in tables


def test_statements_split_like_the_files_mean():
    sql = ("CREATE TABLE a (x TEXT); -- trailing comment; not a statement\n"
           "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n  PERFORM 1;\n  RETURN NULL;\nEND\n$$;\n"
           "INSERT INTO a VALUES ('x');\n")
    parts = migrations.split_statements(sql)
    assert len(parts) == 3 and parts[1].count(";") == 2 and parts[2].startswith("INSERT")
