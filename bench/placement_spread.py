#!/usr/bin/env python3
"""Where new segments go: weighted rendezvous hashing on free space (``DriveSet.place``), simulated.

Twelve drives on four hosts, each host with one drive of 1x, one of 2x and one of 4x free space
(1x = 1 TiB; the free space stays fixed while placing: this measures where *new* data goes for a
given state, not a filling store). Through the real ``DriveSet.place`` and ``spread`` (a DriveSet
over fake drives whose ``space()`` answers the simulated free space; no database), it places:

- 100,000 open segments of m+1 = 3 replicas (``place(3, salt)``, as engine/segments.py does), and
- 100,000 sealed 4+2 stripes, one shard at a time with ``exclude`` and ``occupied`` (as the seal does),

and records each drive's share of the placed copies against its share of the free space, the
share of *first choices* (rank 1, before host spreading: exactly proportional in theory), and what
moves when a thirteenth, nearly empty drive (8x) joins host h1: the fraction of first choices and
of replica sets that change (ideal: the new drive's share of the free space, and only placements
that now use it).

Baseline in the same run: the ranking this replaced - fewest shards first (from ``SELECT drive,
COUNT(*) FROM shards GROUP BY drive`` on every placement), rotated by the salt - simulated with the
counts kept in memory, plus the cost of that query itself on SQLite with the real ``shards`` table
and index at 10^5 and 10^6 shards. CPU time per placement is ``time.process_time`` over the whole
loop.

    python bench/placement_spread.py [--segments 100000] [--out bench/results/placement_spread.json]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from lib.machine import machine_info  # noqa: E402
from lib.results import save_figure, utc_stamp, write_result  # noqa: E402

from exastor.drives.base import Space  # noqa: E402
from exastor.engine.drives import Drive, DriveSet, rendezvous_rank, shard_salt, spread  # noqa: E402

TIB = 1 << 40
HOSTS = 4
UNITS = (1, 2, 4)  # free space of each host's three drives, in TiB
NEW_DRIVE_UNITS = 8
NEW_DRIVE_HOST = "h1"


class SimulatedIO:
    """Just what placement asks of a drive: is it reachable, how much room has it."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.space_reads = 0

    def reachable(self) -> bool:
        return True

    def space(self) -> Space:
        self.space_reads += 1
        return Space(self.free, 2 * self.free)


def simulated_drives(with_new_drive: bool = False) -> list[Drive]:
    drives = []
    for h in range(HOSTS):
        for units in UNITS:
            i = len(drives)
            drives.append(Drive(i, f"/sim/d{i}", "active", SimulatedIO(units * TIB), host=f"h{h}"))  # type: ignore[arg-type]
    if with_new_drive:
        i = len(drives)
        drives.append(Drive(i, f"/sim/d{i}", "active", SimulatedIO(NEW_DRIVE_UNITS * TIB),  # type: ignore[arg-type]
                            host=NEW_DRIVE_HOST))
    return drives


def simulated_set(drives: list[Drive]) -> DriveSet:
    """A DriveSet over ``drives`` without a database: placement reads nothing else."""
    ds = DriveSet.__new__(DriveSet)
    ds._drives = {d.id: d for d in drives}
    ds._groups = None
    ds._space = {}
    ds.explicit = None
    return ds


def free_of(d: Drive) -> int:
    return d.io.free  # type: ignore[attr-defined,no-any-return]


def old_rank(drives: list[Drive], load: Counter[int], salt: int) -> list[Drive]:
    """The ranking this replaced: fewest shards first, then a rotation by the salt."""
    n = len(drives)
    return sorted(drives, key=lambda d: (load.get(d.id, 0), (d.id - salt) % max(n, 1)))


def place_replicas(place: Callable[[int, int], list[Drive]], segments: int) -> tuple[Counter[int], float]:
    copies: Counter[int] = Counter()
    start = time.process_time()
    for seg in range(segments):
        for d in place(3, seg):
            copies[d.id] += 1
    return copies, time.process_time() - start


def place_stripes(ds: DriveSet, segments: int) -> tuple[Counter[int], float, int]:
    """4+2 stripes, one shard at a time, as engine/segments.py's seal places them."""
    copies: Counter[int] = Counter()
    host_overfull = 0
    start = time.process_time()
    for seg in range(segments):
        used: set[int] = set()
        for i in range(6):
            d = ds.place(1, salt=shard_salt(seg, i), exclude=used, occupied=ds.domains_of(used))[0]
            used.add(d.id)
            copies[d.id] += 1
        host_overfull += max(ds.domains_of(used).values()) > 2  # ceil(6 / 4 hosts) = 2 at most
    return copies, time.process_time() - start, host_overfull


def shares(copies: Counter[int], drives: list[Drive]) -> dict[int, float]:
    total = sum(copies.values())
    return {d.id: copies.get(d.id, 0) / total for d in drives}


def shard_count_query_ms(shards: int) -> float:
    """The old per-placement query, on SQLite with the real shards table and index."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE shards (segment BIGINT NOT NULL, idx INTEGER NOT NULL, drive INTEGER NOT NULL, "
               "state TEXT NOT NULL, PRIMARY KEY (segment, idx))")
    db.execute("CREATE INDEX shards_by_drive ON shards (drive)")
    db.executemany("INSERT INTO shards VALUES (?, ?, ?, 'ok')",
                   ((i // 6, i % 6, (i * 7) % 12) for i in range(shards)))
    db.commit()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        db.execute("SELECT drive, COUNT(*) FROM shards GROUP BY drive").fetchall()
        best = min(best, time.perf_counter() - start)
    db.close()
    return best * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segments", type=int, default=100_000)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "placement_spread.json"))
    ap.add_argument("--plot", default=str(REPO / "bench" / "results" / "placement_spread.png"))
    args = ap.parse_args()
    n = args.segments
    wall = time.perf_counter()

    drives = simulated_drives()
    ds = simulated_set(drives)
    total_free = sum(free_of(d) for d in drives)
    free_share = {d.id: free_of(d) / total_free for d in drives}

    replicas, replicas_cpu = place_replicas(lambda count, salt: ds.place(count, salt=salt), n)
    space_reads_per_placement = sum(d.io.space_reads for d in drives) / n / len(drives)  # type: ignore[attr-defined]
    stripes, stripes_cpu, stripes_overfull = place_stripes(ds, n)
    weighed = [(d, free_of(d)) for d in drives]
    firsts = Counter(rendezvous_rank(weighed, salt)[0].id for salt in range(n))

    # The old ranking, with the shard counts its query would have returned kept in memory.
    load: Counter[int] = Counter()

    def old_place(count: int, salt: int) -> list[Drive]:
        chosen = spread(old_rank(drives, load, salt), count)
        for d in chosen:
            load[d.id] += 1
        return chosen

    old_replicas, old_cpu = place_replicas(old_place, n)

    # A nearly empty drive joins host h1: what moves.
    grown = simulated_drives(with_new_drive=True)
    grown_weighed = [(d, free_of(d)) for d in grown]
    new_id = grown[-1].id
    moved_first = moved_sets = sets_with_new = moved_without_new = old_moved_first = 0
    for salt in range(n):
        before, after = rendezvous_rank(weighed, salt), rendezvous_rank(grown_weighed, salt)
        moved_first += before[0].id != after[0].id
        set_before = {d.id for d in spread(before, 3)}
        set_after = {d.id for d in spread(after, 3)}
        moved_sets += set_before != set_after
        sets_with_new += new_id in set_after
        moved_without_new += set_before != set_after and new_id not in set_after
        # the old rotation at balanced load: every drive's position depends on the number of drives
        old_moved_first += old_rank(drives, Counter(), salt)[0].id != old_rank(grown, Counter(), salt)[0].id
    new_free_share = NEW_DRIVE_UNITS * TIB / (total_free + NEW_DRIVE_UNITS * TIB)

    query_ms = {str(count): round(shard_count_query_ms(count), 3) for count in (100_000, 1_000_000)}

    per_drive = []
    for d in drives:
        per_drive.append({
            "drive": d.id, "host": d.host, "free_tib": free_of(d) // TIB,
            "free_share": round(free_share[d.id], 4),
            "first_choice_share": round(firsts[d.id] / n, 4),
            "replica_share": round(shares(replicas, drives)[d.id], 4),
            "stripe_shard_share": round(shares(stripes, drives)[d.id], 4),
            "old_ranking_replica_share": round(shares(old_replicas, drives)[d.id], 4),
        })

    def worst_ratio(column: str) -> tuple[float, float]:
        ratios = [row[column] / row["free_share"] for row in per_drive]
        return round(min(ratios), 3), round(max(ratios), 3)

    result = {
        "bench": "placement_spread",
        "when": utc_stamp(),
        "machine": machine_info(),
        "inputs": {"segments": n, "hosts": HOSTS, "drives": len(drives), "free_tib_per_host": list(UNITS),
                   "replicas": 3, "stripe": "4+2", "new_drive_tib": NEW_DRIVE_UNITS,
                   "new_drive_host": NEW_DRIVE_HOST},
        "per_drive": per_drive,
        "share_over_free_share_min_max": {c: worst_ratio(c) for c in (
            "first_choice_share", "replica_share", "stripe_shard_share", "old_ranking_replica_share")},
        "stripes_with_more_than_2_shards_on_a_host": stripes_overfull,
        "space_reads_per_drive_per_placement": round(space_reads_per_placement, 3),
        "drive_added": {
            "ideal_moved_first_choices": round(new_free_share, 4),
            "moved_first_choices": round(moved_first / n, 4),
            "moved_replica_sets": round(moved_sets / n, 4),
            "replica_sets_using_new_drive": round(sets_with_new / n, 4),
            "moved_sets_not_using_new_drive": moved_without_new,
            "old_ranking_moved_first_choices": round(old_moved_first / n, 4),
        },
        "cpu_us_per_placement": {
            "replicas_3_rendezvous": round(replicas_cpu / n * 1e6, 2),
            "stripe_shard_rendezvous": round(stripes_cpu / (6 * n) * 1e6, 2),
            "replicas_3_old_ranking_without_query": round(old_cpu / n * 1e6, 2),
        },
        "old_shard_count_query_ms_by_shards": query_ms,
        "wall_s": round(time.perf_counter() - wall, 1),
    }
    write_result(args.out, result)

    print(f"{'drive':>5} {'host':>4} {'TiB':>3} {'free':>6} {'first':>6} {'3-rep':>6} {'4+2':>6} {'old':>6}")
    for row in per_drive:
        print(f"{row['drive']:>5} {row['host']:>4} {row['free_tib']:>3} {row['free_share']:>6.3f} "
              f"{row['first_choice_share']:>6.3f} {row['replica_share']:>6.3f} "
              f"{row['stripe_shard_share']:>6.3f} {row['old_ranking_replica_share']:>6.3f}")
    for key in ("share_over_free_share_min_max", "stripes_with_more_than_2_shards_on_a_host",
                "space_reads_per_drive_per_placement", "drive_added", "cpu_us_per_placement",
                "old_shard_count_query_ms_by_shards", "wall_s"):
        print(f"{key}: {result[key]}")
    plot(per_drive, args.plot)


def plot(per_drive: list[dict[str, object]], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    free = [float(row["free_share"]) for row in per_drive]  # type: ignore[arg-type]
    series = (("first_choice_share", "first choice (rendezvous rank 1)", "o"),
              ("replica_share", "3 replicas, host-spread (new)", "s"),
              ("stripe_shard_share", "4+2 shards, host-spread (new)", "^"),
              ("old_ranking_replica_share", "3 replicas, old shard-count ranking", "x"))
    for column, label, marker in series:
        ax.scatter(free, [float(row[column]) for row in per_drive], label=label, marker=marker)  # type: ignore[arg-type]
    top = max(free) * 1.15
    ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="share = free share")
    ax.set_xlabel("drive's share of the free space")
    ax.set_ylabel("drive's share of new copies")
    ax.set_title("12 drives on 4 hosts (1/2/4 TiB free each), 100,000 segments")
    ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
