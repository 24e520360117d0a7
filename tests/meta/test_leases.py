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


def test_a_gateway_takes_over_its_previous_runs_leases_and_no_others(backend, meta):
    """A gateway restarted after kill -9 (DATA/gateway.id kept): at its start it takes over the live
    leases its previous run holds (their holder ids begin with its identity) at once, without waiting
    for them to expire; another gateway's live lease - even one whose identity begins with the same
    characters - stays that gateway's."""
    mine, other = leases.gateway_prefix("gw-00aa"), leases.gateway_prefix("gw-00aab")
    previous = _segment(meta, holder=mine + "host/41/0001")
    theirs = _segment(meta, holder=other + "host/42/0002")
    restarted = mine + "host/43/0003"
    assert leases.take(meta, previous, restarted) is None, "a live lease of another process id"
    assert leases.take(meta, theirs, restarted, steal_prefix=mine) is None, "another gateway's live lease"
    assert leases.lease_of(meta, theirs).holder == other + "host/42/0002"
    assert leases.take(meta, previous, restarted, steal_prefix=mine) == 2
    lease = leases.lease_of(meta, previous)
    assert (lease.holder, lease.epoch) == (restarted, 2) and not lease.expired
    assert leases.renew(meta, mine + "host/41/0001", {previous: 1}) == {previous}, "the old run lost it"


def test_holder_ids_begin_with_the_gateway_identity(monkeypatch):
    monkeypatch.setattr(leases, "_gateway", None)
    monkeypatch.setattr(leases, "_holder", None)
    plain = leases.holder_id()
    assert not plain.startswith("gw-")
    leases.set_gateway("gw-0123456789abcdef")
    assert leases.holder_id().startswith(leases.gateway_prefix("gw-0123456789abcdef"))
    assert leases.holder_id() != plain and leases.holder_id() == leases.holder_id()


def test_the_gateway_identity_is_made_once_private_and_kept(tmp_path):
    import os
    import stat

    import pytest

    from exastor.datadir import gateway_id

    first = gateway_id.ensure(tmp_path)
    path = tmp_path / gateway_id.GATEWAY_ID_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert gateway_id.ensure(tmp_path) == first and first.startswith("gw-") and len(first) == 19
    assert [p.name for p in tmp_path.iterdir()] == [gateway_id.GATEWAY_ID_FILE], "no temporary file left"
    os.chmod(path, 0o644)
    assert gateway_id.ensure(tmp_path) == first and stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("garbage\n")
    with pytest.raises(gateway_id.GatewayIdUnusable):
        gateway_id.ensure(tmp_path)  # never silently replaced: the old run's leases would wait to expire
