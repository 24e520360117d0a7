"""`exastor fsck --rebuild-index` on an erasure-coded store whose database lost every layout row (and
its chunk index, and its list of drives): the layout comes back from the shard trailers and segment
headers on the drives alone, and every object reads back byte for byte."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import sqlite3

import harness

from conftest import exastor, s3_client, start_server
from exastor.datadir.opening import open_metadata
from exastor.engine.shards import shard_name
from exastor.services import fsck

BUCKET = "relayout"
LAYOUT_TABLES = ("segments", "segment_layout", "shards", "replicas", "chunks", "drives")


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def _rows(db, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return sorted(con.execute(sql).fetchall())


def test_rebuild_index_recovers_erasure_coded_layout_from_the_drives(tmp_path):
    rng = random.Random(4)
    drives = [tmp_path / f"d{i}" for i in range(6)]
    drive_args = [a for d in drives for a in ("--drive", str(d))]
    server = start_server(tmp_path, *drive_args, "--ec", "4+2", env={"EXASTOR_SEGMENT_SIZE": str(1 << 20)})
    bodies: dict[str, str] = {}
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket=BUCKET)
        for i in range(24):  # about 7 MB: several 1 MiB segments, sealed into 4+2 stripes
            body = rng.randbytes(rng.randint(0, 600_000)) if i % 5 else bytes([i]) * 400_000
            s3.put_object(Bucket=BUCKET, Key=f"a/{i}", Body=body)
            bodies[f"a/{i}"] = _md5(body)
        parts = [rng.randbytes(5 << 20), rng.randbytes(123_456)]
        up = s3.create_multipart_upload(Bucket=BUCKET, Key="a/mp")["UploadId"]
        etags = [s3.upload_part(Bucket=BUCKET, Key="a/mp", UploadId=up, PartNumber=n + 1, Body=p)["ETag"]
                 for n, p in enumerate(parts)]
        s3.complete_multipart_upload(Bucket=BUCKET, Key="a/mp", UploadId=up, MultipartUpload={
            "Parts": [{"ETag": e, "PartNumber": n + 1} for n, e in enumerate(etags)]})
        bodies["a/mp"] = _md5(b"".join(parts))
    finally:
        server.stop()  # seals the open segments too
    # A few more acknowledged objects left in open, replicated segments by a kill -9.
    server.start()
    s3 = s3_client(server)
    for i in range(3):
        body = rng.randbytes(40_000)
        s3.put_object(Bucket=BUCKET, Key=f"b/{i}", Body=body)
        bodies[f"b/{i}"] = _md5(body)
    server.kill()

    db = server.data_dir / "meta" / "exastor.sqlite"
    stripes = _rows(db, "SELECT l.segment, l.k, l.m, l.shard_len, l.data_len FROM segment_layout l "
                        "JOIN segments s ON s.id = l.segment WHERE s.state = 'sealed' AND l.shard_len > 0")
    placed = _rows(db, "SELECT segment, idx, drive, gen FROM shards")
    assert len(stripes) >= 4 and all(k == 4 and m == 2 for _, k, m, _, _ in stripes)
    assert _rows(db, "SELECT id FROM segments WHERE state = 'open'"), "the kill left no open segment"
    with sqlite3.connect(db) as con:
        for table in LAYOUT_TABLES:
            con.execute(f"DELETE FROM {table}")
    # And one data shard of one stripe is gone as well.
    lost_seg, lost_idx, lost_drive, lost_gen = next(p for p in placed if p[1] == 0)
    (drives[lost_drive] / shard_name(lost_seg, lost_idx, lost_gen)).unlink()

    rebuilt = exastor("fsck", "--rebuild-index", "--json", *drive_args, data_dir=server.data_dir, check=False)
    report = json.loads(rebuilt.stdout)
    assert report["rebuilt_layouts"] >= len(stripes) + 1, report
    assert not (report["corrupt_chunks"] or report["missing_chunks"] or report["lost_chunks"]), report
    assert not report["refcount_mismatches"], report
    # The stripes are recorded as they were; the lost shard is queued for repair.
    assert _rows(db, "SELECT l.segment, l.k, l.m, l.shard_len, l.data_len FROM segment_layout l "
                     "WHERE l.shard_len > 0") == stripes
    now = _rows(db, "SELECT segment, idx, drive, gen, state FROM shards")
    assert [(s, i, d, g) for s, i, d, g, st in now if (s, i) != (lost_seg, lost_idx)] == \
        [p for p in placed if p[:2] != (lost_seg, lost_idx)]
    assert [st for s, i, _, _, st in now if (s, i) == (lost_seg, lost_idx)] == ["bad"]
    assert [p for (p,) in _rows(db, "SELECT path FROM drives")] == sorted(str(d.resolve()) for d in drives)

    repaired = exastor("fsck", "--repair", "--json", data_dir=server.data_dir, check=False)
    assert json.loads(repaired.stdout)["clean"], repaired.stdout
    assert (drives[lost_drive] / "shards").exists()

    server.start()
    try:
        s3 = s3_client(server)
        listed = {o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
                  for o in p.get("Contents", [])}
        assert listed == set(bodies)
        for key, digest in bodies.items():
            assert _md5(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()) == digest, key
        # The store keeps working on the rebuilt layout.
        body = os.urandom(700_000)
        s3.put_object(Bucket=BUCKET, Key="c/after", Body=body)
        assert _md5(s3.get_object(Bucket=BUCKET, Key="c/after")["Body"].read()) == _md5(body)
    finally:
        server.stop()
    assert "Traceback" not in server.log_text()
    final = exastor("fsck", "--json", data_dir=server.data_dir, check=False)
    assert json.loads(final.stdout)["clean"], final.stdout


def _store(tmp_path, drives: int, ec: str | None, bodies: dict[str, bytes]):
    """An in-process store with ``bodies`` written and every segment sealed; returns its data dir."""
    data = tmp_path / "data"
    ns = harness.open_namespace(data, segment_size=1 << 20, ec=ec,
                                drives=[str(tmp_path / f"d{i}") for i in range(drives)] if drives > 1 else None)
    try:
        async def fill() -> None:
            await ns.create_bucket(harness.ADMIN, harness.BUCKET)
            for key, body in bodies.items():
                await harness._put(ns, key, body)

        asyncio.run(fill())
    finally:
        ns.close()
    return data


def _read_all(data, bodies: dict[str, bytes]) -> None:
    ns = harness.open_namespace(data, segment_size=1 << 20)
    try:
        for key, body in bodies.items():
            assert _md5(asyncio.run(harness._get(ns, key))) == _md5(body), key
    finally:
        ns.close()


def test_rebuild_layout_leaves_agreeing_rows_alone(tmp_path):
    rng = random.Random(8)
    bodies = {f"k{i}": rng.randbytes(rng.randint(1, 500_000)) for i in range(12)}
    data = _store(tmp_path, 6, "4+2", bodies)
    db = data / "meta" / "exastor.sqlite"
    before = {t: _rows(db, f"SELECT * FROM {t}") for t in LAYOUT_TABLES if t != "chunks"}
    meta = open_metadata(data)
    try:
        report = fsck.rebuild_index(meta, tmp_path / "d0" / "segments")
    finally:
        meta.close()
    assert report.rebuilt_layouts == 0 and not report.lost_chunks
    assert {t: _rows(db, f"SELECT * FROM {t}") for t in before} == before
    _read_all(data, bodies)


def test_rebuild_index_on_a_one_drive_store_without_layout_rows(tmp_path):
    rng = random.Random(9)
    bodies = {f"k{i}": rng.randbytes(rng.randint(1, 400_000)) for i in range(10)}
    data = _store(tmp_path, 1, None, bodies)
    db = data / "meta" / "exastor.sqlite"
    with sqlite3.connect(db) as con:
        for table in ("segments", "segment_layout", "shards", "replicas", "chunks"):
            con.execute(f"DELETE FROM {table}")
    rebuilt = exastor("fsck", "--rebuild-index", "--json", data_dir=data, check=False)
    report = json.loads(rebuilt.stdout)
    assert report["clean"] and report["rebuilt_layouts"] >= 2, report
    assert _rows(db, "SELECT DISTINCT state FROM segments") == [("sealed",)]
    _read_all(data, bodies)
