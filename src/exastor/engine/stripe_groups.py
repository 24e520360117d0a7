"""Stripe groups: which drives one segment may span (copyset-style; docs/design.md, "Stripe groups").

If every stripe picks its k+m drives freely among N, a store of many stripes uses almost every
possible set of drives, and *any* m+1 drives failing together almost surely hold m+1 shards of
some stripe: data is lost with near certainty (Cidon et al., "Copysets", USENIX ATC 2013). Restricting a
stripe to one of a few fixed groups of about k+m drives makes m+1 simultaneous failures lose data
only when they fall in one group: with 120 drives in groups of 6, 3 random failures hit one group
with probability 20 * C(6,3) / C(120,3) = 0.14% (bench/placement_groups.py measures it through the
real placement). The price: when it does happen more is lost at once, and a failed drive is rebuilt
from its own group's members only.

Groups are computed, not stored: every process derives the same groups from the drive rows
(ids, hosts) and the target width, so nothing new needs agreeing on. They change only when a drive
joins, fails or is removed; what was written stays where it is (a change adds at most one more
grouping's worth of drive sets to those stripes already use).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Protocol

import xxhash


class Member(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def host(self) -> str: ...


def _order(value: str | int) -> int:
    """A stable order that every process computes alike (xxh3: never Python's salted hash())."""
    return xxhash.xxh3_64_intdigest(str(value).encode())


def form_groups(members: Sequence[Member], width: int) -> list[frozenset[int]]:
    """The drive ids of each stripe group, for stripes ``width`` (k+m) wide.

    No groups (an empty list: a stripe may use any drive, the rule before groups) while the store
    has fewer than two groups' worth of drives. Otherwise hosts are cut into chunks of at least
    ``width`` hosts (all hosts in one chunk when there are fewer), and each chunk's drives are dealt
    into groups of ``width``: each place in a group goes to the host with the fewest drives in it
    so far, then the host with the most drives left, never more than ceil(width / hosts in the
    chunk) from one host - so a group spans ``width`` distinct hosts whenever its chunk has them,
    exactly as ``spread`` would place one stripe. Drives left over (too few hosts with drives left
    to deal a whole group) join the groups holding the fewest drives of their host: a group may be
    wider than ``width``, and a stripe then takes ``width`` of its drives by the usual ranking."""
    if width < 2 or len(members) < 2 * width:
        return []
    by_host: dict[str, list[Member]] = {}
    for d in sorted(members, key=lambda d: (_order(d.id), d.id)):
        by_host.setdefault(d.host, []).append(d)
    hosts = sorted(by_host, key=lambda h: (_order(h), h))
    chunks = _cut(hosts, len(hosts) // width) if len(hosts) >= width else [hosts]
    groups: list[list[Member]] = []
    for chunk in chunks:
        formed = _deal(chunk, {h: list(by_host[h]) for h in chunk}, width)
        if not formed:  # the drives sit on too few hosts to deal even one group: no groups at all
            return []
        groups.extend(formed)
    return [frozenset(d.id for d in g) for g in groups]


def _cut(items: list[str], parts: int) -> list[list[str]]:
    """``items`` in ``parts`` consecutive runs whose lengths differ by at most one."""
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (i < extra)
        out.append(items[start:end])
        start = end
    return out


def _deal(chunk: list[str], left: dict[str, list[Member]], width: int) -> list[list[Member]]:
    rank = {h: i for i, h in enumerate(chunk)}
    cap = math.ceil(width / len(chunk))
    formed: list[list[Member]] = []
    while sum(min(cap, len(drives)) for drives in left.values()) >= width:
        taken: dict[str, int] = {}
        group: list[Member] = []
        for _ in range(width):
            host = min((h for h in chunk if left[h] and taken.get(h, 0) < cap),
                       key=lambda h: (taken.get(h, 0), -len(left[h]), rank[h]))
            group.append(left[host].pop(0))
            taken[host] = taken.get(host, 0) + 1
        formed.append(group)
    for host in chunk:
        for d in left[host]:
            if formed:
                min(formed, key=lambda g: (sum(x.host == host for x in g), len(g))).append(d)
    return formed


def group_holding(groups: Iterable[frozenset[int]], drive_ids: Iterable[int]) -> frozenset[int] | None:
    """The group holding most of ``drive_ids`` (a stripe's other shards): where its repair should go."""
    ids = set(drive_ids)
    best = max(groups, key=lambda g: len(g & ids), default=None)
    return best if best is not None and best & ids else None
