"""Placement by failure domain (engine/drives.py, ``spread``): a segment's replicas and shards on
distinct hosts while there are enough, spread evenly below that, racks next, and never more of a
stripe on one host than before when repair or rebalance moves a shard."""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from exastor.datadir.opening import open_namespace
from exastor.engine.drives import Drive, load_layout, spread
from exastor.namespace.operations import PutSpec, SystemGrant
from exastor.services.repair import _crowds


def _drives(layout: list[tuple[str, str, int]]) -> list[Drive]:
    """(host, rack, number of drives) -> drives, ranked in the order given."""
    out, i = [], 0
    for host, rack, n in layout:
        for _ in range(n):
            out.append(Drive(i, f"/d{i}", "active", None, host=host, rack=rack))  # type: ignore[arg-type]
            i += 1
    return out


def test_copies_go_to_distinct_hosts_while_there_are_enough():
    drives = _drives([(f"h{h}", "", 2) for h in range(6)])  # two drives per host, ranked host by host
    chosen = spread(drives, 6)
    assert sorted(d.host for d in chosen) == [f"h{h}" for h in range(6)]
    assert [d.id for d in spread(drives, 2)] == [0, 2], "rank decides among equally spread choices"


def test_below_k_plus_m_hosts_the_stripe_spreads_evenly():
    """The documented fallback: 4+2 over 3 hosts puts 2 shards on each, so the stripe survives the loss
    of floor(2 / 2) = 1 whole host (and of any 2 drives)."""
    drives = _drives([("h0", "", 4), ("h1", "", 4), ("h2", "", 4)])
    per_host = Counter(d.host for d in spread(drives, 6))
    assert max(per_host.values()) == math.ceil(6 / 3) and len(per_host) == 3
    assert len(spread(_drives([("", "", 5)]), 3)) == 3, "one host (local drives): distinct drives"


def test_what_the_stripe_already_occupies_counts():
    drives = _drives([("h0", "", 1), ("h1", "", 1)])
    assert spread(drives, 1, Counter({("h0", ""): 1}))[0].host == "h1"


def test_racks_after_hosts():
    drives = _drives([("a1", "A", 1), ("a2", "A", 1), ("b1", "B", 1), ("b2", "B", 1)])
    assert sorted(d.rack for d in spread(drives, 2)) == ["A", "B"]
    # distinct hosts come first: a rack with spare drives on a used host never beats an unused host
    crowded = _drives([("a1", "A", 1), ("a2", "A", 1), ("a3", "A", 1), ("b1", "B", 4)])
    assert len({d.host for d in spread(crowded, 4)}) == 4


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=12), st.integers(1, 20), st.randoms(use_true_random=False))
def test_never_two_on_a_host_while_another_host_has_none(per_host, count, rng):
    drives = _drives([(f"h{h}", "", n) for h, n in enumerate(per_host)])
    rng.shuffle(drives)
    chosen = spread(drives, count)
    assert len(chosen) == min(count, len(drives)) and len({d.id for d in chosen}) == len(chosen)
    used = Counter(d.host for d in chosen)
    ids = {d.id for d in chosen}
    hosts_with_spare_drives = {d.host for d in drives if d.id not in ids}
    for host, n in used.items():
        for other in hosts_with_spare_drives:
            assert n <= used.get(other, 0) + 1, (host, other, used)


def test_moving_a_shard_never_crowds_a_host():
    a, b, c = (Drive(i, f"/d{i}", "active", None, host=h) for i, h in enumerate("abc"))  # type: ignore[arg-type]
    occupied = Counter({("a", ""): 1, ("b", ""): 1})  # the stripe's other shards
    assert _crowds(occupied, c, a), "a shard leaving host c for host a would put two there"
    assert not _crowds(occupied, a, b) and not _crowds(Counter({("", ""): 3}), Drive(5, "/x", "active", None),
                                                        Drive(6, "/y", "active", None))  # type: ignore[arg-type]


def test_a_store_places_replicas_and_shards_on_distinct_hosts(tmp_path):
    """Six drives on three hosts (two each, recorded with set_domain), 2+1: every sealed stripe has one
    shard per host, every open segment's two replicas are on two hosts."""
    drives = [str(tmp_path / f"d{i}") for i in range(6)]
    ns = open_namespace(tmp_path / "data", segment_size=1 << 20, drives=drives, ec="2+1")
    try:
        ds = ns.chunks.log.drives
        for d in ds.all:
            ds.set_domain(d.id, f"host{d.id // 2}")  # drives 0,1 on host0; 2,3 on host1; 4,5 on host2
        ds.refresh()
        grant = SystemGrant("admin")
        rng = random.Random(3)

        async def fill() -> None:
            await ns.create_bucket(grant, "bkt")
            for i in range(16):
                body = rng.randbytes(400_000)

                async def source(b: bytes = body):
                    yield b

                await ns.put_object(grant, "bkt", f"k{i}", source(), PutSpec())

        asyncio.run(fill())
        ns.chunks.log.wait_sealed()
        host = {d.id: d.host for d in ds.all}
        segments = ns.meta.runner.read(lambda cur: [int(r[0]) for r in cur.execute("SELECT id FROM segments "
                                                                                    "WHERE state != 'deleted'")])
        coded = 0
        for seg in segments:
            lay = load_layout(ns.meta, seg)
            if lay.kind == "ec":
                coded += 1
                assert len({host[s.drive] for s in lay.shards}) == 3, lay
            elif lay.kind == "replicas":
                assert len({host[r] for r in lay.replicas}) == len(lay.replicas) == 2, lay
        assert coded >= 3
    finally:
        ns.close()
