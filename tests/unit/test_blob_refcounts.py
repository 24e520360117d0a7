"""Every chunk reference the Blob state holds is counted: after any sequence of Blob operations,
chunks.refs equals the number of manifest entries pointing at each chunk across objects, staged
blocks, snapshots and soft-deleted blobs (so garbage collection never frees bytes still in use)."""

from __future__ import annotations

import asyncio
import os
from collections import Counter

import pytest

from exastor import errors
from exastor.datadir.opening import open_namespace
from exastor.meta import manifest as mf
from exastor.namespace.blobs import Blobs, BlobStateError, part_block_id
from exastor.namespace.operations import PutSpec, SystemGrant

ADMIN = SystemGrant("admin")  # the namespace used directly, outside any request


async def _src(data: bytes):
    for i in range(0, len(data), 65536):
        yield data[i:i + 65536]


def _held(ns) -> tuple[Counter, Counter]:
    def q(cur):
        expected: Counter = Counter()
        for table in ("objects", "blob_blocks", "blob_snapshots", "blob_deleted", "parts"):
            cur.execute(f"SELECT manifest FROM {table}")
            for (m,) in cur.fetchall():
                expected.update(mf.ref_counts(m))
        cur.execute("SELECT fp, refs FROM chunks WHERE refs != 0")
        actual = Counter({bytes(fp): refs for fp, refs in cur.fetchall()})
        return expected, actual
    return ns.meta.runner.read(q)


async def _read(ns, obj) -> bytes:
    return b"".join([bytes(p) async for p in ns.read(ADMIN, obj)]) if obj.size else b""


@pytest.fixture
def store(tmp_path):
    ns = open_namespace(tmp_path / "data")
    yield ns, Blobs(ns)
    ns.close()


def test_refcounts_follow_every_blob_operation(store):
    ns, blobs = store
    a, b = os.urandom(300_000), os.urandom(200_000)

    async def scenario() -> None:
        await ns.create_bucket(ADMIN, "ctr")
        await blobs.stage_block(ADMIN, "ctr", "k", "QQ==", _src(a), PutSpec())
        await blobs.stage_block(ADMIN, "ctr", "k", "Qg==", _src(b), PutSpec())
        await blobs.stage_block(ADMIN, "ctr", "k", "Qg==", _src(b), PutSpec())  # re-staged: replaces
        exp, act = _held(ns)
        assert exp == act and sum(act.values()) > 0
        obj = await blobs.commit_blocks(ADMIN, "ctr", "k", [("Latest", "Qg=="), ("Uncommitted", "QQ==")],
                                        {"blob-type": "BlockBlob"}, None)
        assert await _read(ns, obj) == b + a
        assert _held(ns)[0] == _held(ns)[1]
        with pytest.raises(BlobStateError):
            await blobs.commit_blocks(ADMIN, "ctr", "k", [("Uncommitted", "QQ==")], {}, None)  # gone at commit
        snap = await blobs.snapshot(ADMIN, "ctr", "k", None, None)
        obj2 = await blobs.commit_blocks(ADMIN, "ctr", "k", [("Committed", "QQ==")], {}, None)
        assert await _read(ns, obj2) == a
        assert await _read(ns, blobs.get_snapshot(ADMIN, "ctr", "k", snap.snapshot).as_version()) == b + a
        assert _held(ns)[0] == _held(ns)[1]
        await blobs.delete(ADMIN, "ctr", "k", snapshot=None, snapshots="include", retention_days=3, check=None)
        assert _held(ns)[0] == _held(ns)[1]
        await blobs.undelete(ADMIN, "ctr", "k")
        assert await _read(ns, ns.get_object(ADMIN, "ctr", "k")) == a
        assert _held(ns)[0] == _held(ns)[1]
        await blobs.stage_block(ADMIN, "ctr", "other", "QQ==", _src(a), PutSpec())
        await blobs.delete_container(ADMIN, "ctr")
        exp, act = _held(ns)
        assert exp == act == Counter()

    asyncio.run(scenario())


def test_append_composes_manifests_and_checks_position(store):
    ns, blobs = store

    async def scenario() -> None:
        await ns.create_bucket(ADMIN, "ctr")
        await ns.put_object(ADMIN, "ctr", "log", _src(b""), PutSpec(attrs={"blob-type": "AppendBlob"}))
        pieces = [os.urandom(10_000 + i) for i in range(3)]
        offsets = []
        for p in pieces:
            obj, off = await blobs.append(ADMIN, "ctr", "log", _src(p), PutSpec(expected_size=len(p)),
                                          append_pos=None, max_size=None, check=None)
            offsets.append(off)
        assert offsets == [0, len(pieces[0]), len(pieces[0]) + len(pieces[1])]
        assert await _read(ns, obj) == b"".join(pieces) and obj.attrs["committed_blocks"] == 3
        with pytest.raises(BlobStateError) as ei:
            await blobs.append(ADMIN, "ctr", "log", _src(b"x"), PutSpec(expected_size=1), append_pos=1,
                               max_size=None, check=None)
        assert ei.value.info["code"] == "AppendPositionConditionNotMet"
        await blobs.seal(ADMIN, "ctr", "log", None)
        with pytest.raises(BlobStateError) as ei:
            await blobs.append(ADMIN, "ctr", "log", _src(b"x"), PutSpec(expected_size=1), append_pos=None,
                               max_size=None, check=None)
        assert ei.value.info["code"] == "BlobIsSealed"
        assert _held(ns)[0] == _held(ns)[1]

    asyncio.run(scenario())


def test_uncommitted_blocks_expire_after_a_week(store, monkeypatch):
    ns, blobs = store

    async def scenario() -> None:
        await ns.create_bucket(ADMIN, "ctr")
        await blobs.stage_block(ADMIN, "ctr", "k", "QQ==", _src(os.urandom(5000)), PutSpec())
        await blobs.purge_expired(force=True)
        assert len(blobs.block_lists(ADMIN, "ctr", "k")[1]) == 1
        import exastor.namespace.blobs as nb
        real = nb.time.time_ns
        monkeypatch.setattr(nb.time, "time_ns", lambda: real() + nb.BLOCK_TTL_NS + 10**9)
        await blobs.purge_expired(force=True)
        assert blobs.block_lists(ADMIN, "ctr", "k")[1] == []
        assert _held(ns)[1] == Counter()

    asyncio.run(scenario())


def test_part_block_ids_are_stable():
    assert part_block_id(1) != part_block_id(2)
    assert len(part_block_id(1)) == len(part_block_id(99999))


def test_missing_container(store):
    ns, blobs = store
    with pytest.raises(errors.BucketNotFound):
        asyncio.run(blobs.stage_block(ADMIN, "nope", "k", "QQ==", _src(b"x"), PutSpec()))
