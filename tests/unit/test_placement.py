"""Placement (engine/drives.py): drives ranked by weighted rendezvous hashing on free space
(``rendezvous_rank``), then by failure domain (``spread``): a segment's replicas and shards on
distinct hosts while there are enough, spread evenly below that, racks next, and never more of a
stripe on one host than before when repair or rebalance moves a shard."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import put_bodies
from exastor.datadir.opening import open_namespace
from exastor.drives.base import Space
from exastor.engine import drives as drives_module
from exastor.engine.drives import Drive, load_layout, rendezvous_rank, spread
from exastor.meta import placement
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
        rng = random.Random(3)
        put_bodies(ns, {f"k{i}": rng.randbytes(400_000) for i in range(16)})
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


# --- ranking: weighted rendezvous hashing on free space (engine/drives.py, ``rendezvous_rank``) ---
# The hash is deterministic, so these statistical checks give the same counts on every run; their
# tolerances are still those an honest random sample of 20,000 would meet (3 to 7 standard deviations).
SALTS = range(20_000)  # consecutive, as ``segment + i`` salts are: the hash must decorrelate them


def _first_choices(weighed: list[tuple[Drive, int]], salts: range = SALTS) -> Counter[int]:
    return Counter(rendezvous_rank(weighed, salt)[0].id for salt in salts)


def test_a_drive_ranks_first_in_proportion_to_its_free_space():
    frees = [1, 1, 2, 2, 4, 4, 8]
    weighed = [(d, free << 30) for d, free in zip(_drives([("", "", len(frees))]), frees, strict=True)]
    firsts = _first_choices(weighed)
    for d, free in weighed:
        expected = free / sum(f for _d, f in weighed)
        assert firsts[d.id] / len(SALTS) == pytest.approx(expected, abs=0.01), (d.id, firsts)
    # twice the free space, about twice the new segments
    assert 1.8 < (firsts[2] + firsts[3]) / (firsts[0] + firsts[1]) < 2.2
    assert 1.8 < (firsts[4] + firsts[5]) / (firsts[2] + firsts[3]) < 2.2


def test_a_nearly_empty_new_drive_fills_fastest():
    full = [(d, 2 << 30) for d in _drives([("", "", 6)])]  # six drives with 2 GiB left each
    new = Drive(6, "/d6", "active", None)  # type: ignore[arg-type]
    firsts = _first_choices([*full, (new, 1 << 40)])  # a new 1 TiB drive
    assert firsts[6] / len(SALTS) > 0.98, firsts


def test_equal_free_space_spreads_uniformly():
    """Every test's drives share one filesystem: the same free space, so a uniform spread over salts."""
    weighed = [(d, 5 << 30) for d in _drives([("", "", 8)])]
    firsts = _first_choices(weighed)
    assert set(firsts) == set(range(8))
    for n in firsts.values():
        assert n / len(SALTS) == pytest.approx(1 / 8, abs=0.01)
    # consecutive salts are independent: the next salt's first drive is the same one about 1/8 of the time
    same = sum(rendezvous_rank(weighed, s)[0].id == rendezvous_rank(weighed, s + 1)[0].id for s in range(5_000))
    assert same / 5_000 == pytest.approx(1 / 8, abs=0.025)


def test_a_drive_joining_or_leaving_moves_only_the_placements_that_involve_it():
    """The rendezvous property, for the ranking and for what ``spread`` makes of it (3 copies on 4 hosts)."""
    drives = _drives([(f"h{h}", "", 3) for h in range(4)])
    weighed = [(d, (1 << 30) * (1 + d.id % 3)) for d in drives]
    joining = Drive(12, "/d12", "active", None, host="h1")  # type: ignore[arg-type]
    grown = [*weighed, (joining, 3 << 30)]
    leaving = 5
    shrunk = [(d, free) for d, free in weighed if d.id != leaving]
    moved_first = 0
    for salt in range(5_000):
        before = rendezvous_rank(weighed, salt)
        after = rendezvous_rank(grown, salt)
        assert [d.id for d in after if d.id != 12] == [d.id for d in before], "the others keep their order"
        moved_first += after[0].id != before[0].id
        placed, placed_grown = spread(before, 3), spread(after, 3)
        if 12 not in {d.id for d in placed_grown}:
            assert placed_grown == placed
        placed_shrunk = spread(rendezvous_rank(shrunk, salt), 3)
        if leaving not in {d.id for d in placed}:
            assert placed_shrunk == placed
    # first choices move to the new drive only, in proportion to its share of the free space
    share = 3 / (sum(f for _d, f in weighed) / (1 << 30) + 3)
    assert moved_first / 5_000 == pytest.approx(share, abs=0.02)


def test_a_drive_without_free_space_never_ranks_before_one_with_room():
    weighed = [(d, 0 if d.id == 0 else 1 << 20) for d in _drives([("", "", 4)])]
    assert all(rendezvous_rank(weighed, salt)[-1].id == 0 for salt in range(2_000))


def test_place_reads_each_drives_free_space_once_and_queries_no_shard_counts(tmp_path, monkeypatch):
    """Placement ranks by the free space ``writable`` reads anyway: one ``space()`` per drive per
    placement at most (an HTTP call for a remote drive), none again within SPACE_TTL_S (a seal
    places k+m shards one at a time), and no query over the shards table."""
    ns = open_namespace(tmp_path / "data", segment_size=1 << 20,
                        drives=[str(tmp_path / f"d{i}") for i in range(5)], ec="2+1")
    try:
        ds = ns.chunks.log.drives
        reads: Counter[int] = Counter()
        full = ds.all[4]
        for d in ds.all:
            def space(d: Drive = d, real=d.io.space) -> Space:
                reads[d.id] += 1
                return Space(0, real().total) if d.id == full.id else real()

            monkeypatch.setattr(d.io, "space", space)

        def no_query(_meta):
            raise AssertionError("placement queried the shards table")

        monkeypatch.setattr(placement, "shard_counts", no_query)
        clock = [1000.0]
        monkeypatch.setattr(drives_module.time, "monotonic", lambda: clock[0])
        for salt in range(200):
            clock[0] += drives_module.SPACE_TTL_S  # each placement past the last one's reads
            placed = ds.place(3, salt=salt)
            assert len({d.id for d in placed}) == 3 and full.id not in {d.id for d in placed}
        assert reads == Counter({d.id: 200 for d in ds.all}), reads
        reads.clear()
        clock[0] += drives_module.SPACE_TTL_S
        for salt in range(50):  # within the TTL: the free space read once serves every placement
            assert ds.place(1, salt=salt, exclude={0, 1})[0].id in (2, 3)
        assert reads == Counter({d.id: 1 for d in ds.all}), reads
    finally:
        ns.close()


@pytest.mark.parametrize("geometry,hosts,survived", [
    ("4+2", 6, 2), ("4+2", 7, 2), ("4+2", 4, 1), ("4+2", 3, 1), ("4+2", 2, 0), ("8+3", 4, 1), ("8+3", 3, 0),
    ("146+4", 150, 4), ("146+4", 40, 1), ("146+4", 30, 0)])
def test_host_losses_a_stripe_survives_follow_the_spread(geometry, hosts, survived):
    """What `exastor serve` and `drive status` report (and warn about at 0): spread puts at most
    ceil((k+m) / hosts) shards on a host, so a stripe survives floor(m / that) whole hosts lost."""
    from exastor.engine import erasure

    g = erasure.parse(geometry)
    assert g.host_losses_survived(hosts) == survived
    drives = _drives([(f"h{h}", "", g.width) for h in range(hosts)])
    per_host = Counter(d.host for d in spread(drives, g.width))
    assert max(per_host.values()) == math.ceil(g.width / hosts)
    assert survived * max(per_host.values()) <= g.m < (survived + 1) * max(per_host.values())
