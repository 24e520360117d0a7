"""The bucket version each worker of one server last committed, shared by all of them.

On PostgreSQL a process hears other processes' bucket and setting changes through a NOTIFY that
arrives milliseconds after the commit (meta/postgres.py, ``data_version``). Within one server that
window is closed here: the worker that commits a change writes the new ``bucket_version`` into its
own slot of a shared page (anonymous ``MAP_SHARED``, made by the master before the fork) before it
answers, and every worker's ``data_version`` is at least the largest slot. So a Deny policy put
through one worker is enforced by the server's every worker on the very next request. Each slot
has one writer (its worker, which serialises its own threads), so no lock between workers; a torn read of a slot being written can only move the
version, which empties a cache once more than needed, never keeps a stale one.
"""

from __future__ import annotations

import mmap
import struct

_SLOT = struct.Struct("=q")


class SharedVersions:
    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._all = struct.Struct(f"={self.workers}q")
        self._map = mmap.mmap(-1, self._all.size)

    def publish(self, index: int, value: int) -> None:
        """Worker ``index`` committed ``value`` (values only grow: bucket_version is a counter). One
        writer per slot: the worker serialises its own threads' calls."""
        if value > _SLOT.unpack_from(self._map, index * _SLOT.size)[0]:
            _SLOT.pack_into(self._map, index * _SLOT.size, value)

    def highest(self) -> int:
        return max(self._all.unpack_from(self._map, 0))
