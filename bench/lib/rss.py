"""Sampling a server's resident memory from /proc while a benchmark runs.

A server may be several processes (radosgw + OSD + mon, a gateway with
workers, npm wrappers around node), so the sampler follows the whole process
tree under the given pid and reports the peak of the tree's summed RSS as well
as the peak of the root process alone.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


def _rss_bytes(pid: int) -> int:
    """VmRSS of one process, 0 if it is gone or has no memory (kernel thread)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: split after the last ')'
        fields = stat[stat.rfind(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants that exist right now."""
    children = _children_map()
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def tree_rss_bytes(pid: int) -> tuple[int, int]:
    """(RSS of ``pid`` alone, summed RSS of its process tree)."""
    tree = process_tree(pid)
    return _rss_bytes(pid), sum(_rss_bytes(p) for p in tree)


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User+system CPU of one process, plus that of its children it has waited for."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(b")") + 2 :].split()
    # after the command name: state=0 ... utime=11 stime=12 cutime=13 cstime=14
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / _CLK_TCK


def tree_cpu_seconds(pid: int | None) -> float:
    """CPU seconds used so far by ``pid`` and its live descendants, plus what their reaped
    children used (so a gateway worker's or a PostgreSQL backend's exited children still count);
    0 for no process.

    A rate on a shared, overloaded machine mostly measures the other work;
    CPU seconds per GiB or per object measure the server's own cost.
    """
    return sum(_cpu_seconds(p) for p in process_tree(pid)) if pid else 0.0


def tree_minor_faults(pid: int | None) -> int:
    """Minor page faults so far of ``pid``'s live process tree and the children they reaped: pages
    the kernel mapped in (and zeroed) on first touch, e.g. heap memory faulted back in after
    ``malloc_trim`` gave it away; 0 for no process."""
    total = 0
    for p in process_tree(pid) if pid else []:
        try:
            stat = Path(f"/proc/{p}/stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        total += int(fields[7]) + int(fields[8])  # minflt, cminflt
    return total


def tree_cpu_ns_seconds(pid: int | None) -> float:
    """CPU seconds of the live threads of ``pid``'s process tree at nanosecond resolution (the
    scheduler's ``/proc/PID/task/TID/schedstat``), for samples too short for the 10 ms ticks of
    ``tree_cpu_seconds``: a 256 MiB read at 1 CPU-s/GiB is 25 ticks, so one tick moves a sample 4%.
    Threads and children that exited are not counted (``tree_cpu_seconds`` counts them): use it
    for the difference across a step of a server whose workers and threads live on."""
    if not pid:
        return 0.0
    total = 0
    for p in process_tree(pid):
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/schedstat", "rb") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
    return total / 1e9


class RssSampler:
    """Background thread that records the peak RSS of a process tree.

    Used as a context manager around the phase being measured. Tree discovery
    scans /proc, so it is refreshed only every ``tree_refresh_s``; RSS itself is
    sampled every ``interval_s``.
    """

    def __init__(self, pid: int, interval_s: float = 0.05, tree_refresh_s: float = 1.0) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.tree_refresh_s = tree_refresh_s
        self.peak_root = 0
        self.peak_tree = 0
        self.start_root, self.start_tree = tree_rss_bytes(pid)
        self.timeline: list[tuple[float, int]] = []  # (seconds since start, tree RSS), thinned
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"rss-{pid}", daemon=True)
        self._t0 = 0.0

    def _loop(self) -> None:
        tree = process_tree(self.pid)
        refreshed = time.monotonic()
        last_kept = -1.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now - refreshed > self.tree_refresh_s:
                tree, refreshed = process_tree(self.pid), now
            root = _rss_bytes(self.pid)
            total = root + sum(_rss_bytes(p) for p in tree if p != self.pid)
            self.peak_root = max(self.peak_root, root)
            self.peak_tree = max(self.peak_tree, total)
            if now - last_kept >= 0.5:  # keep ~2 points a second for plots
                self.timeline.append((round(now - self._t0, 2), total))
                last_kept = now
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, object]:
        return {
            "pid": self.pid,
            "processes": len(process_tree(self.pid)) if os.path.exists(f"/proc/{self.pid}") else 0,
            "start_root_bytes": self.start_root,
            "start_tree_bytes": self.start_tree,
            "peak_root_bytes": self.peak_root,
            "peak_tree_bytes": self.peak_tree,
            "timeline_tree_bytes": self.timeline,
        }
