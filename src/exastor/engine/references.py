"""Reading a delta record's references: the bytes of its base chunk slices.

A base may itself be a delta, but the reducer keeps chains at most ``similarity.MAX_DEPTH``
deep, so resolving decodes a bounded number of records (and a guard refuses anything deeper,
which only corruption could produce). Consecutive delta chunks of an object share bases, so
decoded bases are kept in a small per-store LRU cache: reading a delta-stored object then costs
about one extra record read per base, not per delta.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from exastor import errors
from exastor.engine import codec
from exastor.engine.record import CODEC_DELTA
from exastor.meta import manifest as mf

CACHE_CHUNKS = 64  # ~5 MiB of decoded bases at the mean chunk size
MAX_DEPTH = 2      # = engine.similarity.MAX_DEPTH (not imported: similarity imports the codec stack)
MOVES_FOLLOWED = 4  # a chunk that moves more often than this under one read is busy: 503, the client retries

_nesting = threading.local()
_T = TypeVar("_T")


def read_following(meta: Any, loc: Any, read: Callable[[Any], _T]) -> tuple[_T, Any]:
    """``read(loc)``, following the chunk if it moved after the caller looked it up: compaction
    copies live records out of a segment and then deletes it, the reducer re-stores a chunk as a
    delta. Both commit the new location before the old record goes, so a failed read is looked up
    again *after* the failure, and only a failure at the location the index gives then is one
    (DataCorrupted). Returns the bytes and the location they were read at (the reducer's commit
    is conditional on it)."""
    for _ in range(MOVES_FOLLOWED):
        try:
            return read(loc), loc
        except errors.DataCorrupted:
            fresh = meta.lookup_chunks([loc.fp]).get(loc.fp)
            if fresh is None or fresh == loc:
                raise
            loc = fresh
    raise errors.Unavailable(f"chunk {loc.fp.hex()[:16]} moved {MOVES_FOLLOWED} times during one read; retry")


class BaseCache:
    def __init__(self, size: int = CACHE_CHUNKS) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[bytes, bytes | memoryview] = OrderedDict()

    def get(self, fp: bytes) -> bytes | memoryview | None:
        with self._lock:
            data = self._items.get(fp)
            if data is not None:
                self._items.move_to_end(fp)
            return data

    def put(self, fp: bytes, data: bytes | memoryview) -> None:
        with self._lock:
            self._items[fp] = data
            self._items.move_to_end(fp)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def resolver(store: Any, cache: BaseCache | None = None) -> codec.Resolver:
    """A resolver reading bases through ``store`` (a ChunkStore: ``meta``, ``read_chunk``)."""
    cache = cache or BaseCache()

    def read_base(fp: bytes, loc: Any) -> bytes | memoryview:
        if loc is None:
            raise errors.DataCorrupted("a delta's base chunk is missing from the index")
        if loc.codec != CODEC_DELTA:
            return read_following(store.meta, loc, store.read_chunk)[0]
        level = getattr(_nesting, "level", 0)
        if level + 1 >= MAX_DEPTH:
            raise errors.DataCorrupted("delta chain deeper than the maximum")
        _nesting.level = level + 1
        try:
            return read_following(store.meta, loc, store.read_chunk)[0]
        finally:
            _nesting.level = level

    def resolve(slices: list[mf.Slice]) -> list[bytes | memoryview]:
        missing = [s.fp for s in slices if cache.get(s.fp) is None]
        locs = store.meta.lookup_chunks(list(set(missing))) if missing else {}
        out: list[bytes | memoryview] = []
        for s in slices:
            data = cache.get(s.fp)
            if data is None:
                data = read_base(s.fp, locs.get(s.fp))  # follows a base that moved since the lookup
                cache.put(s.fp, data)
            if len(data) < s.start + s.length:
                raise errors.DataCorrupted("a delta's reference slice lies outside its base chunk")
            out.append(memoryview(data)[s.start:s.start + s.length])
        return out

    return resolve
