"""The runner's own promises: the ordering rule (durable before the commit), bucket-cache
invalidation across runners, reads off the event loop, and - PostgreSQL - timeouts, restarts and a
database that is down turning into errors.Unavailable, never a driver traceback."""

from __future__ import annotations

import asyncio
import time

import pytest
from metacontract import backend, bucket, meta, obj, run, vid_factory  # noqa: F401 - fixtures

from exastor import errors
from exastor.meta.records import User
from exastor.meta.versions import SharedVersions


def _wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_durable_runs_first_and_its_failure_commits_nothing(backend, meta):
    run(meta.create_bucket(bucket()))
    order: list[str] = []

    def durable() -> None:
        order.append("durable")

    def tx(cur):
        order.append("body")
        cur.execute("INSERT INTO blob_settings (name, value) VALUES ('a', '1')")

    run(meta.runner.write(tx, durable=durable))
    assert order == ["durable", "body"]

    def failing() -> None:
        raise OSError("fsync failed")

    with pytest.raises(OSError):
        run(meta.runner.write(lambda cur: cur.execute("INSERT INTO blob_settings (name, value) VALUES ('b', '2')"),
                              durable=failing))
    names = meta.runner.read(lambda cur: [r[0] for r in cur.execute("SELECT name FROM blob_settings").fetchall()])
    assert names == ["a"]


def test_data_version_follows_bucket_changes_in_every_runner(backend, meta):
    """Both runners' data_version is the bucket_version row: at once in the runner that committed,
    within a bound in every other (on PostgreSQL, when its notification arrives)."""
    other = backend.open()

    def row() -> int:
        return meta.runner.read(lambda cur: cur.execute(
            "SELECT value FROM counters WHERE name = 'bucket_version'").fetchone()[0])

    run(meta.create_bucket(bucket()))
    v1 = row()
    assert meta.runner.data_version() == v1
    assert _wait_until(lambda: other.runner.data_version() == v1), "another runner never heard the change"
    for i in range(3):  # object writes leave bucket caches alone
        run(meta.put_object(obj("bkt", f"k{i}"), make_version_id=vid_factory()))
    assert row() == v1 and meta.runner.data_version() == v1 and other.runner.data_version() == v1
    run(other.update_bucket("bkt", attrs_patch={"policy": "x"}))
    assert other.runner.data_version() == row() == v1 + 1
    assert _wait_until(lambda: meta.runner.data_version() == v1 + 1), "the first runner never heard it"


def test_workers_of_one_server_see_each_others_bucket_changes_at_once(backend, meta, monkeypatch):
    """Two workers of one server (meta/versions.py): a change committed by one moves the other's
    data_version before the first answers, without the notification (which, between servers, comes
    milliseconds later: a Deny policy would not be enforced yet). The other runner hears nothing
    here, so only the shared page can move it."""
    other = backend.open()
    shared = SharedVersions(2)
    meta.runner.share_versions(shared, 0)
    other.runner.share_versions(shared, 1)
    run(meta.create_bucket(bucket()))
    if backend.kind == "postgres":
        assert _wait_until(lambda: other.runner._listening), "the other runner never listened"
        monkeypatch.setattr(other.runner, "_seen", lambda *args, **kwargs: None)  # deaf from now on
    before = other.runner.data_version()
    run(meta.update_bucket("bkt", attrs_patch={"policy": "deny"}))
    after = meta.runner.read(lambda cur: cur.execute(
        "SELECT value FROM counters WHERE name = 'bucket_version'").fetchone()[0])
    assert after > before
    assert other.runner.data_version() == after


def test_reads_can_leave_the_event_loop(backend, meta):
    if backend.kind == "sqlite":
        pytest.skip("SQLite reads are local page-cache reads: offload runs them inline by design")

    async def scenario() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        await meta.runner.offload(lambda: meta.runner.read(lambda cur: cur.execute("SELECT pg_sleep(0.5)")))
        users = await meta.aread(meta.list_users)
        task.cancel()
        assert users == []
        return ticks

    assert run(scenario()) >= 10


# --- PostgreSQL: a database that fails -------------------------------------------------------

@pytest.fixture
def pg(backend):
    if backend.kind != "postgres":
        pytest.skip("PostgreSQL only")
    return backend


def test_unreachable_at_start_is_a_clear_error(pg):
    from exastor.meta.postgres import PostgresRunner

    with pytest.raises(errors.MetadataOpenError, match="cannot connect") as exc:
        PostgresRunner("postgresql://someone:s3cret@/nodb?host=/nonexistent-exastor&connect_timeout=2")
    assert "s3cret" not in str(exc.value)


def test_a_restart_is_survived(pg, meta, pg_cluster):
    """Every pooled connection dies (as in a PostgreSQL restart); the next reads and writes get fresh
    ones: a read is re-run, a write whose statements never reached the server is re-run."""
    meta.add_user(User("u", "AK", "SK", 1))
    run(meta.create_bucket(bucket()))
    dbname = pg.target.split("///", 1)[1].split("?", 1)[0]
    pg_cluster.sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{dbname}' "
                   "AND pid <> pg_backend_pid()")
    assert meta.user_by_access_key("AK").name == "u"
    run(meta.put_object(obj("bkt", "k"), make_version_id=vid_factory()))
    assert meta.get_object("bkt", "k") is not None


def test_a_database_that_is_down_gives_unavailable(pg, meta, pg_cluster):
    run(meta.create_bucket(bucket()))
    dbname = pg.target.split("///", 1)[1].split("?", 1)[0]
    pg_cluster.sql(f'DROP DATABASE "{dbname}" WITH (FORCE)')  # gone: every connection and reconnect fails
    started = time.monotonic()
    with pytest.raises(errors.Unavailable):
        meta.get_bucket("bkt")
    with pytest.raises(errors.Unavailable):
        run(meta.put_object(obj("bkt", "k"), make_version_id=vid_factory()))
    assert time.monotonic() - started < 30
    pg_cluster.sql(f'CREATE DATABASE "{dbname}"')  # for the fixture's teardown


def test_a_statement_that_waits_too_long_gives_unavailable(pg, meta):
    import psycopg

    run(meta.create_bucket(bucket()))
    quick = pg.open(statement_timeout_ms=300)
    with psycopg.connect(pg.target) as holder:  # holds the bucket row's lock in an open transaction
        holder.execute("UPDATE buckets SET attrs = '{}' WHERE name = 'bkt'")
        started = time.monotonic()
        with pytest.raises(errors.Unavailable, match="in time"):
            run(quick.update_bucket("bkt", attrs_patch={"x": 1}))
        assert time.monotonic() - started < 10
        holder.rollback()


def test_sqlite_writer_cache_size_is_the_default_and_can_be_changed(tmp_path):
    """The writer's page cache: WRITER_CACHE_KIB unless told; assigning writer_cache_kib takes
    effect at the next batch (bench/many_objects.py compares sizes in one run); readers keep theirs."""
    from exastor.meta import sqlite as sq

    runner = sq.SqliteRunner(tmp_path / "meta.sqlite")
    try:
        def cache_size(cur):
            return cur.execute("PRAGMA cache_size").fetchone()[0]

        assert runner.write_sync(cache_size) == -sq.WRITER_CACHE_KIB
        runner.writer_cache_kib = 4096
        assert runner.write_sync(cache_size) == -4096
        assert runner.read(cache_size, snapshot=False) == -sq.READER_CACHE_KIB
    finally:
        runner.close()
    runner = sq.SqliteRunner(tmp_path / "meta.sqlite", writer_cache_kib=1024)
    try:
        assert runner.write_sync(cache_size) == -1024
    finally:
        runner.close()
