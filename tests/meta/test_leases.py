"""Segment write leases (meta/leases.py) on both backends: epochs only grow, one holder at a time,
expiry on the database's clock, racing takers never share an epoch."""

from __future__ import annotations

import threading
import time

from metacontract import backend, meta  # noqa: F401 - fixtures

from exastor.meta import leases
from exastor.meta.placement import commit_seal, new_segment


def _segment(meta, holder: str = "gw-a") -> int:
    return new_segment(meta, 1, [1, 2], holder=holder)


def test_the_database_clock_is_the_one_used(backend, meta):
    now = meta.runner.read(leases.db_now_ms)
    assert abs(now - time.time() * 1000) < 5000  # the test's database runs on this host


def test_a_new_segment_has_epoch_1_and_takers_get_higher_ones(backend, meta):
    seg = _segment(meta)
    lease = leases.lease_of(meta, seg)
    assert (lease.holder, lease.epoch) == ("gw-a", 1) and not lease.expired
    # Another holder cannot take a live lease ...
    assert leases.take(meta, seg, "gw-b") is None
    # ... the holder itself can (a seal bumps the epoch), and so can a stealer (a SQLite store's server).
    assert leases.take(meta, seg, "gw-a") == 2
    assert leases.take(meta, seg, "gw-b", steal=True) == 3
    assert leases.lease_of(meta, seg).holder == "gw-b"
    # Renewing at an epoch that is no longer the lease's says it was lost.
    assert leases.renew(meta, "gw-a", {seg: 2}) == {seg}
    assert leases.renew(meta, "gw-b", {seg: 3}) == set()


def test_an_expired_lease_is_taken_over_without_stealing(backend, meta):
    seg = _segment(meta)
    assert leases.take(meta, seg, "gw-a", ttl_ms=0) == 2  # expires at once (the database's now)
    assert leases.lease_of(meta, seg).expired
    assert leases.take(meta, seg, "gw-b") == 3


def test_a_sealed_segment_has_no_lease_and_cannot_be_taken(backend, meta):
    seg = _segment(meta)
    epoch = leases.take(meta, seg, "sealer", steal=True)
    assert not commit_seal(meta, seg, 1, 0, 0, 64, [], epoch=epoch - 1), "a sealer that was taken over loses"
    assert commit_seal(meta, seg, 1, 0, 0, 64, [], epoch=epoch)
    assert leases.lease_of(meta, seg) is None
    assert leases.take(meta, seg, "gw-b", steal=True) is None
    other = _segment(meta)
    meta.set_segment_state_sync(other, "deleted", 0)
    assert leases.lease_of(meta, other) is None


def test_racing_takers_never_share_an_epoch(backend, meta):
    """Many takers on their own connections (gateways) at once: every take that succeeds got an
    epoch no other got, and the last one is the lease's."""
    seg = _segment(meta)
    runners = [backend.open() for _ in range(4)]
    got: list[int] = []
    lock = threading.Lock()

    def taker(m, name: str) -> None:
        for _ in range(10):
            epoch = leases.take(m, seg, name, steal=True)
            assert epoch is not None
            with lock:
                got.append(epoch)

    threads = [threading.Thread(target=taker, args=(m, f"gw-{i}")) for i, m in enumerate(runners)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(got) == 40 and len(set(got)) == 40, sorted(got)
    assert sorted(got) == list(range(2, 42))
    assert leases.lease_of(meta, seg).epoch == 41
