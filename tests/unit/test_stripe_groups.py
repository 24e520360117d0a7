"""Stripe groups (engine/stripe_groups.py): a stripe's shards and an open segment's replicas stay
inside one fixed group of about k+m drives, so m+1 drives failing at once lose data only if they
fall in one group (copysets) - and the groups keep every placement rule that held without them."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from conftest import put_bodies
from exastor.datadir.opening import open_namespace
from exastor.engine.drives import Drive, load_layout
from exastor.engine.stripe_groups import form_groups, group_holding


def _drives(per_host: list[int]) -> list[Drive]:
    out = []
    for h, n in enumerate(per_host):
        for _ in range(n):
            out.append(Drive(len(out), f"/d{len(out)}", "active", None, host=f"h{h}"))  # type: ignore[arg-type]
    return out


def _check_partition(drives: list[Drive], groups: list[frozenset[int]], width: int) -> None:
    """Every drive in exactly one group, every group at least ``width`` wide."""
    seen = Counter(i for g in groups for i in g)
    assert set(seen) == {d.id for d in drives} and set(seen.values()) == {1}
    assert all(len(g) >= width for g in groups)


def test_too_few_drives_for_two_groups_means_no_groups():
    assert form_groups(_drives([1] * 11), 6) == []
    assert form_groups(_drives([11]), 6) == []
    assert len(form_groups(_drives([1] * 12), 6)) == 2


@pytest.mark.parametrize("per_host", [[6] * 20, [24] * 10, [3] * 7, [5, 4, 6, 6, 3, 6, 2, 6, 6]])
def test_while_hosts_allow_a_group_spans_width_distinct_hosts(per_host):
    drives = _drives(per_host)
    host = {d.id: d.host for d in drives}
    groups = form_groups(drives, 6)
    _check_partition(drives, groups, 6)
    for g in groups:
        # leftovers may widen a group with a second drive of a host, never narrow its host spread
        assert len({host[i] for i in g}) >= 6, sorted(Counter(host[i] for i in g).items())


@pytest.mark.parametrize("per_host,cap", [([24], 6), ([6, 6, 6, 6], 2), ([9, 9, 9], 2), ([13, 12], 3)])
def test_below_width_hosts_a_group_spreads_evenly(per_host, cap):
    """Fewer hosts than k+m: at most ceil(width / hosts) drives of one host per dealt group, as
    ``spread`` allows one stripe (leftover drives go to the group holding fewest of their host)."""
    drives = _drives(per_host)
    host = {d.id: d.host for d in drives}
    groups = form_groups(drives, 6)
    _check_partition(drives, groups, 6)
    assert len(groups) == sum(per_host) // 6
    for g in groups:
        per = Counter(host[i] for i in g)
        assert max(per.values()) <= cap + math.ceil((len(g) - 6) / len(per_host)), per


def test_a_host_with_most_of_the_drives_never_crowds_a_group():
    """Host 0 holds 10 of 20 drives: two groups dealt one drive per host, host 0's other 8 drives
    spread over both; every group still has all six hosts."""
    drives = _drives([10, 2, 2, 2, 2, 2])
    groups = form_groups(drives, 6)
    _check_partition(drives, groups, 6)
    assert len(groups) == 2 and all(len({d.host for d in drives if d.id in g}) == 6 for g in groups)


def test_every_process_computes_the_same_groups():
    drives = _drives([6] * 12)
    shuffled = list(drives)
    random.Random(5).shuffle(shuffled)
    assert sorted(map(sorted, form_groups(drives, 6))) == sorted(map(sorted, form_groups(shuffled, 6)))


def test_three_random_failures_rarely_fall_in_one_group():
    """120 drives on 20 hosts, 4+2: every 3-drive failure that can lose a stripe is one inside a
    group. The groups cover 20 * C(6, 3) = 400 of the C(120, 3) = 280,840 triples (0.14%); free
    placement of a store's many stripes covers nearly all of them."""
    drives = _drives([6] * 20)
    groups = form_groups(drives, 6)
    covered = sum(math.comb(len(g), 3) for g in groups)
    assert covered == 400
    assert covered / math.comb(120, 3) < 0.002


def test_a_repair_goes_to_the_group_holding_the_stripe():
    groups = [frozenset({0, 1, 2}), frozenset({3, 4, 5, 6})]
    assert group_holding(groups, [4, 5, 1]) == groups[1]
    assert group_holding(groups, [9]) is None


def test_a_store_keeps_each_stripe_and_replica_set_inside_one_group(tmp_path):
    """Thirteen local drives, 2+1: four groups (three of 3 drives, one of 4); every open segment's
    replicas and every sealed stripe's shards lie inside one of them."""
    paths = [str(tmp_path / f"d{i}") for i in range(13)]
    ns = open_namespace(tmp_path / "data", segment_size=1 << 18, drives=paths, ec="2+1")
    try:
        ds = ns.chunks.log.drives
        groups = ds.stripe_groups()
        assert sorted(len(g) for g in groups) == [3, 3, 3, 4]
        rng = random.Random(11)
        put_bodies(ns, {f"k{i}": rng.randbytes(rng.randint(50_000, 300_000)) for i in range(40)})
        ns.chunks.log.wait_sealed()
        segments = ns.meta.runner.read(lambda cur: [int(r[0]) for r in cur.execute(
            "SELECT id FROM segments WHERE state != 'deleted'")])
        used = Counter()
        for seg in segments:
            lay = load_layout(ns.meta, seg)
            copies = {s.drive for s in lay.shards} if lay.kind == "ec" else set(lay.replicas)
            inside = [g for g in groups if copies <= g]
            assert inside, (seg, lay.kind, sorted(copies), [sorted(g) for g in groups])
            used[min(inside[0])] += 1
        assert len(used) == 4, used  # every group takes segments
    finally:
        ns.close()
