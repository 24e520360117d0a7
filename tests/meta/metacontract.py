"""The metadata contract suite runs once per backend (in the manner of Garage's database adapter
tests and zarr's StoreTests): every test here takes ``backend`` and runs against SQLite and against
a real PostgreSQL (tests/pgcluster.py; skipped, with the reason, where none is installed)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from exastor.meta import manifest as mf
from exastor.meta.contract import MANIFEST_QUERIES, Metadata
from exastor.meta.records import Bucket, ChunkLocation, ObjectVersion
from exastor.meta.sealing import Sealer

TEST_MASTER_KEY = bytes(range(32))


@dataclass
class Backend:
    """One fresh database of one backend; ``open()`` gives another connection to it (another
    runner: on PostgreSQL another gateway, on SQLite another process's view of the file)."""

    kind: str
    target: str
    opened: list[Metadata] = field(default_factory=list)

    def open(self, **kwargs: Any) -> Metadata:
        # Secrets are sealed under a master key (meta/sealing.py): one fixed test key for every runner.
        sealer = Sealer(TEST_MASTER_KEY)
        if self.kind == "postgres":
            from exastor.meta.postgres import PostgresRunner
            meta = Metadata(PostgresRunner(self.target, **kwargs), sealer)
        else:
            from exastor.meta.sqlite import SqliteRunner
            meta = Metadata(SqliteRunner(self.target, **kwargs), sealer)
        self.opened.append(meta)
        return meta

    def close(self) -> None:
        for meta in self.opened:
            meta.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "postgres":
        target = request.getfixturevalue("pg_database")
    else:
        target = str(tmp_path / "meta.sqlite")
    b = Backend(request.param, target)
    yield b
    b.close()


@pytest.fixture
def meta(backend: Backend) -> Metadata:
    return backend.open()


# --- helpers shared by the suite ----------------------------------------------------------

def run(coro: Any) -> Any:
    return asyncio.run(coro)


def vid_factory() -> Callable[[], str]:
    import uuid
    return lambda: uuid.uuid4().hex


def bucket(name: str = "bkt", owner: str = "alice", versioning: str = "") -> Bucket:
    return Bucket(name, owner, 1, "us-east-1", versioning, {})


def obj(b: str, key: str, manifest: bytes | None = b"", etag: str = "e", size: int = 0) -> ObjectVersion:
    return ObjectVersion(b, key, "", 0, True, False, size, etag, 1, "alice", {}, manifest)


def fp(i: int) -> bytes:
    return i.to_bytes(4, "big") * 8


def manifest_of(*fps: bytes) -> bytes:
    return mf.pack([mf.Slice(f, 0, 100) for f in fps])


def chunk_locations(meta: Metadata, fps: list[bytes]) -> list[ChunkLocation]:
    """Index entries for ``fps`` in a fresh open segment (what a PUT registers)."""
    seg = meta.new_segment_sync()
    return [ChunkLocation(f, seg, i * 200, 100, 100, 1) for i, f in enumerate(fps)]


def held_and_counted(meta: Metadata) -> tuple[Counter, Counter]:
    """(references held by every manifest, as fsck recomputes them; chunks.refs as stored)."""
    def q(cur: Any) -> tuple[Counter, Counter]:
        expected: Counter = Counter()
        for query in MANIFEST_QUERIES:
            cur.execute(query)
            for (m,) in cur.fetchall():
                expected.update(mf.ref_counts(bytes(m) if m is not None else None))
        cur.execute("SELECT fp, refs FROM chunks")
        actual = Counter({bytes(f): r for f, r in cur.fetchall() if r})
        cur.execute("SELECT COUNT(*) FROM chunks WHERE refs < 0")
        assert cur.fetchone()[0] == 0
        return expected, actual
    return meta.runner.read(q)


def threads(n: int, target: Callable[[int], Any], timeout: float = 120.0) -> list[Any]:
    """Run ``target(i)`` on n threads released together; their results (or exceptions)."""
    barrier = threading.Barrier(n, timeout=timeout)
    results: list[Any] = [None] * n

    def body(i: int) -> None:
        try:
            barrier.wait()
            results[i] = target(i)
        except BaseException as exc:  # noqa: BLE001 - collected for the test to judge
            results[i] = exc

    ts = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout)
        assert not t.is_alive(), "a writer thread hung"
    return results


def race_if_none_match(meta: Metadata, key: str, writer: int, *, swallow: bool = False) -> str:
    """A PUT of ``key`` in bucket "bkt" with If-None-Match: * (the check runs inside the write)."""
    from exastor import errors

    def if_none_match(current: ObjectVersion | None) -> None:
        if current is not None:
            raise errors.PreconditionFailed("exists")

    try:
        run(meta.put_object(obj("bkt", key, etag=f"w{writer}"), check=if_none_match, make_version_id=vid_factory()))
    except errors.PreconditionFailed:
        if swallow:
            return "lost"
        raise
    return "won"
