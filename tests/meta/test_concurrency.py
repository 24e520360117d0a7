"""The contract under concurrency: real threads (and processes), each writer on its own runner (on
PostgreSQL its own gateway with its own pool; on SQLite its own connections to the file), against
the real databases. The outcomes asserted are the contract's (meta/contract.py docstring)."""

from __future__ import annotations

import multiprocessing
import random
from collections import Counter
from typing import Any

import pytest
from metacontract import (  # noqa: F401 - backend, meta: fixtures
    backend,
    bucket,
    chunk_locations,
    fp,
    held_and_counted,
    manifest_of,
    meta,
    obj,
    race_if_none_match,
    run,
    threads,
    vid_factory,
)

from exastor import errors
from exastor.meta import blob as bm
from exastor.meta.contract import register_chunks
from exastor.meta.records import Part, Upload

WRITERS = 8


def _gateways(backend, n: int = 4) -> list:
    return [backend.open() for _ in range(n)]


def _latest_rows(meta, b: str, key: str) -> int:
    return meta.runner.read(lambda cur: cur.execute(
        "SELECT COUNT(*) FROM objects WHERE bucket = ? AND key = ? AND is_latest = 1", (b, key)).fetchone()[0])


@pytest.mark.parametrize("versioning", ["", "Enabled"])
def test_writers_on_one_key_leave_exactly_one_latest(backend, meta, versioning):
    run(meta.create_bucket(bucket(versioning=versioning)))
    shared = [fp(i) for i in range(4)]
    locs = chunk_locations(meta, shared)
    meta.runner.write_sync(lambda cur: register_chunks(cur, locs))
    gateways = _gateways(backend)
    rounds = 5

    def writer(i: int) -> int:
        g = gateways[i % len(gateways)]
        for r in range(rounds):
            m = manifest_of(shared[i % 4], shared[(i + r) % 4])
            run(g.put_object(obj("bkt", "k", m, etag=f"{i}-{r}"), make_version_id=vid_factory()))
        return rounds

    results = threads(WRITERS, writer)
    assert results == [rounds] * WRITERS, results
    assert _latest_rows(meta, "bkt", "k") == 1
    versions = meta.list_versions("bkt", "", None, None, 1000)
    assert len(versions) == (WRITERS * rounds if versioning else 1)
    assert max(versions, key=lambda v: v.seq).is_latest  # the newest in write order is the latest
    expected, actual = held_and_counted(meta)
    assert expected == actual


def test_if_none_match_has_exactly_one_winner(backend, meta):
    run(meta.create_bucket(bucket()))
    gateways = _gateways(backend)
    for key in ("k1", "k2", "k3"):
        results = threads(WRITERS, lambda i, key=key: race_if_none_match(gateways[i % len(gateways)], key, i))
        winners = [r for r in results if r == "won"]
        assert len(winners) == 1, results
        assert all(r == "won" or isinstance(r, errors.PreconditionFailed) for r in results), results
        assert _latest_rows(meta, "bkt", key) == 1


def test_if_match_has_exactly_one_winner(backend, meta):
    run(meta.create_bucket(bucket()))
    run(meta.put_object(obj("bkt", "k", etag="0"), make_version_id=vid_factory()))
    gateways = _gateways(backend)

    def if_match(current):
        if current is None or current.etag != "0":
            raise errors.PreconditionFailed("etag moved")

    def writer(i: int) -> str:
        g = gateways[i % len(gateways)]
        run(g.put_object(obj("bkt", "k", etag=f"w{i}"), check=if_match, make_version_id=vid_factory()))
        return f"w{i}"

    results = threads(WRITERS, writer)
    won = [r for r in results if isinstance(r, str)]
    assert len(won) == 1 and all(isinstance(r, errors.PreconditionFailed) for r in results if r not in won), results
    assert meta.get_object("bkt", "k").etag == won[0]


def test_lease_acquire_has_exactly_one_winner(backend, meta):
    run(meta.create_bucket(bucket("ctr")))
    run(meta.put_object(obj("ctr", "blob"), make_version_id=vid_factory()))
    gateways = _gateways(backend)

    def acquire(i: int) -> str | None:
        # the operation Lease Blob runs (meta/blob.py), each writer proposing its own lease id
        done = run(bm.change_lease(gateways[i % len(gateways)], "ctr", "blob", "acquire", lease_id=None,
                                   proposed_id=f"lease-{i}", duration=-1, break_period=None, condition=None))
        return done.lease_id

    results = threads(WRITERS, acquire)
    won = [r for r in results if isinstance(r, str)]
    assert len(won) == 1, results
    assert all(isinstance(r, bm.BlobStateError) and r.info["code"] == "LeaseAlreadyPresent"
               for r in results if r not in won), results
    assert meta.runner.read(lambda cur: bm.get_lease(cur, "ctr", "blob")).lease_id == won[0]


def test_multipart_completion_racing_an_abort(backend, meta):
    run(meta.create_bucket(bucket()))
    a, b = fp(31), fp(32)
    locs = chunk_locations(meta, [a, b])
    meta.runner.write_sync(lambda cur: register_chunks(cur, locs))
    gateways = _gateways(backend, 2)

    def assemble(upload, parts):
        return obj(upload.bucket, upload.key, parts[1].manifest + parts[2].manifest, etag="mp"), [1, 2]

    outcomes = Counter()
    for round_ in range(8):
        uid = f"u{round_}"
        run(meta.create_upload(Upload(uid, "bkt", f"k{round_}", 1, "alice", {})))
        run(meta.put_part(Part(uid, 1, 1, "p1", 1, {}, manifest_of(a)), []))
        run(meta.put_part(Part(uid, 2, 1, "p2", 1, {}, manifest_of(b, a)), []))

        def racer(i: int, uid: str = uid) -> str:
            if i == 0:
                run(gateways[0].complete_upload(uid, assemble, make_version_id=vid_factory()))
                return "completed"
            run(gateways[1].abort_upload(uid))
            return "aborted"

        results = threads(2, racer)
        done = [r for r in results if isinstance(r, str)]
        assert len(done) == 1 and all(isinstance(r, errors.UploadNotFound) for r in results if r not in done), \
            results
        outcomes[done[0]] += 1
        assert meta.get_upload(uid) is None and meta.list_parts(uid, 0, 10) == []
        assert (meta.get_object("bkt", f"k{round_}") is not None) == (done[0] == "completed")
        expected, actual = held_and_counted(meta)
        assert expected == actual
    assert sum(outcomes.values()) == 8


@pytest.mark.parametrize("versioning", ["", "Enabled"])
def test_reference_counts_under_concurrent_put_and_delete(backend, meta, versioning):
    run(meta.create_bucket(bucket(versioning=versioning)))
    pool = [fp(100 + i) for i in range(6)]
    locs = chunk_locations(meta, pool)
    meta.runner.write_sync(lambda cur: register_chunks(cur, locs))
    gateways = _gateways(backend)

    def worker(i: int) -> int:
        rng = random.Random(i)
        g = gateways[i % len(gateways)]
        for _ in range(12):
            key = f"k{rng.randrange(3)}"
            if rng.random() < 0.6:
                m = manifest_of(*rng.choices(pool, k=rng.randrange(1, 5)))
                run(g.put_object(obj("bkt", key, m), make_version_id=vid_factory()))
            else:
                run(g.delete_object("bkt", key, None, make_version_id=vid_factory(), owner="alice"))
        return 12

    results = threads(WRITERS, worker)
    assert results == [12] * WRITERS, results
    expected, actual = held_and_counted(meta)  # asserts no count is negative
    assert expected == actual
    for k in ("k0", "k1", "k2"):
        assert _latest_rows(meta, "bkt", k) <= 1


def test_delete_bucket_racing_a_put_never_orphans(backend, meta):
    gateways = _gateways(backend, 2)
    for round_ in range(6):
        name = f"b{round_}"
        run(meta.create_bucket(bucket(name)))

        def racer(i: int, name: str = name) -> str:
            if i == 0:
                run(gateways[0].delete_bucket(name))
                return "deleted"
            run(gateways[1].put_object(obj(name, "k"), make_version_id=vid_factory()))
            return "put"

        results = threads(2, racer)
        ok = [r for r in results if isinstance(r, str)]
        assert len(ok) == 1, results
        assert all(isinstance(r, (errors.BucketNotFound, errors.BucketNotEmpty)) for r in results if r not in ok), \
            results
        orphans = meta.runner.read(lambda cur: cur.execute(
            "SELECT COUNT(*) FROM objects WHERE bucket NOT IN (SELECT name FROM buckets)").fetchone()[0])
        assert orphans == 0


def test_conditional_writes_across_processes(backend, meta):
    """Two processes (separate interpreters, separate runners): one winner per key in all."""
    run(meta.create_bucket(bucket()))
    keys = [f"p{i}" for i in range(12)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        per_process = pool.starmap(_race_process, [(backend.kind, backend.target, keys, n) for n in range(2)])
    wins = Counter(k for won in per_process for k in won)
    assert wins == Counter(keys), per_process
    for k in keys:
        assert _latest_rows(meta, "bkt", k) == 1


def _race_process(kind: str, target: str, keys: list[str], n: int) -> list[str]:
    from metacontract import Backend, race_if_none_match

    b = Backend(kind, target)
    g = b.open()
    try:
        return [k for k in keys if race_if_none_match(g, k, n, swallow=True) == "won"]
    finally:
        b.close()


def test_conflicting_writes_are_rerun_not_failed(backend, meta):
    """On PostgreSQL concurrent increments of one row conflict at REPEATABLE READ; the runner re-runs
    the loser's body on the committed state, so every increment lands (none is lost or refused)."""
    meta.runner.write_sync(lambda cur: cur.execute("INSERT INTO counters (name, value) VALUES ('t', 0)"))
    gateways = _gateways(backend)
    attempts = Counter()

    def bump(i: int) -> int:
        def tx(cur: Any) -> None:
            attempts[i] += 1  # test-only bookkeeping: bodies of the real contract have no side effects
            cur.execute("SELECT value FROM counters WHERE name = 't'")
            value = cur.fetchone()[0]
            cur.execute("UPDATE counters SET value = ? WHERE name = 't'", (value + 1,))

        for _ in range(5):
            run(gateways[i % len(gateways)].runner.write(tx))
        return 5

    assert threads(WRITERS, bump) == [5] * WRITERS
    total = meta.runner.read(lambda cur: cur.execute("SELECT value FROM counters WHERE name = 't'").fetchone()[0])
    assert total == WRITERS * 5
    if backend.kind == "postgres":
        assert sum(attempts.values()) > WRITERS * 5, "no conflict happened: the test proves nothing"


def test_usage_is_exact_under_concurrent_puts_and_deletes(backend, meta):
    """A bucket's usage is the sum of its rows (PostgreSQL spreads unbounded writers over shards):
    whatever the interleaving, it equals what the bucket holds."""
    run(meta.create_bucket(bucket()))
    gateways = _gateways(backend)
    rounds = 6

    def writer(i: int) -> int:
        g = gateways[i % len(gateways)]
        for r in range(rounds):
            run(g.put_object(obj("bkt", f"w{i}/{r}", size=100 + i), make_version_id=vid_factory()))
        run(g.put_object(obj("bkt", f"w{i}/0", size=7), make_version_id=vid_factory()))  # an overwrite
        run(g.delete_object("bkt", f"w{i}/1", None, make_version_id=vid_factory(), owner="alice"))
        return rounds

    assert threads(WRITERS, writer) == [rounds] * WRITERS
    held = meta.runner.read(lambda cur: cur.execute(
        "SELECT COALESCE(SUM(size), 0), COUNT(*) FROM objects WHERE bucket = 'bkt' AND delete_marker = 0").fetchone())
    assert meta.bucket_usage()["bkt"] == (int(held[0]), int(held[1]))
    assert held[1] == WRITERS * (rounds - 1)


def test_object_quota_is_never_overshot_by_concurrent_writers(backend, meta):
    run(meta.create_bucket(bucket()))
    run(meta.put_object(obj("bkt", "before", size=1), make_version_id=vid_factory()))  # usage rows exist
    limit = 5
    meta.set_quota("bucket", "bkt", None, limit)
    gateways = _gateways(backend)

    def writer(i: int) -> str:
        g = gateways[i % len(gateways)]
        try:
            run(g.put_object(obj("bkt", f"q{i}", size=1), make_version_id=vid_factory()))
            return "stored"
        except errors.QuotaExceeded:
            return "refused"

    results = threads(WRITERS, writer)
    assert results.count("stored") == limit - 1, results
    assert meta.bucket_usage()["bkt"] == (limit, limit)


def _deadlocks_after_closing(backend) -> int:
    """PostgreSQL's count of deadlocks in this database, once every runner's connections are gone
    (a backend reports its statistics as it exits)."""
    import psycopg

    from conftest import wait_until

    backend.close()
    with psycopg.connect(backend.target, autocommit=True) as con:
        wait_until(lambda: con.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                                       "AND pid <> pg_backend_pid()").fetchone()[0] == 0,
                   "the gateways' connections to end", timeout=30)
        return int(con.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
                   .fetchone()[0])


def test_overwrites_that_swap_shared_chunks_never_deadlock(backend, meta):
    """Writer 1 overwrites k1 (chunks B) with chunks A while writer 2 overwrites k2 (chunks A) with B,
    and back, round after round: each adds references to one set and drops them from the other. Were
    the adds and the drops two runs each in its own order, each writer would hold rows the other
    waits for (PostgreSQL detects the deadlock only after deadlock_timeout, 1 s, and under more writers
    gives the write up: Blob's conditional-write races answered 503). The counts change at the end of
    the transaction in one fingerprint order (meta/contract.py, DeferredRefs): no deadlock, ever."""
    run(meta.create_bucket(bucket()))
    a, b = [fp(500 + i) for i in range(8)], [fp(600 + i) for i in range(8)]
    locs = chunk_locations(meta, a + b)
    meta.runner.write_sync(lambda cur: register_chunks(cur, locs))
    run(meta.put_object(obj("bkt", "k1", manifest_of(*b)), make_version_id=vid_factory()))
    run(meta.put_object(obj("bkt", "k2", manifest_of(*a)), make_version_id=vid_factory()))
    gateways = _gateways(backend, 2)
    rounds = 60

    def writer(i: int) -> int:
        for r in range(rounds):
            new = (a, b)[(i + r) % 2]  # k1 gets a, k2 gets b, then the other way round
            run(gateways[i].put_object(obj("bkt", f"k{i + 1}", manifest_of(*new)), make_version_id=vid_factory()))
        return rounds

    assert threads(2, writer) == [rounds, rounds]
    expected, actual = held_and_counted(meta)
    assert expected == actual
    if backend.kind == "postgres":
        assert _deadlocks_after_closing(backend) == 0
