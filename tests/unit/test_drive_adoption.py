"""Stores from before identity files: each drive gets its identity once, at an explicit logged step,
and only with positive proof that the directory is this store's drive."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sqlite3
from pathlib import Path

from conftest import put_bodies
from exastor.datadir.opening import open_namespace
from exastor.drives import IDENTITY_NAME
from exastor.namespace.operations import SystemGrant


def _fill(ns, bodies: dict[str, bytes]) -> None:
    put_bodies(ns, bodies)


def _read_all(ns, bodies: dict[str, bytes]) -> None:
    async def main() -> None:
        for key, body in bodies.items():
            obj = ns.get_object(SystemGrant("admin"), "bkt", key)
            assert b"".join([bytes(p) async for p in ns.read(SystemGrant("admin"), obj)]) == body, key

    asyncio.run(main())


def _make_legacy(data: Path, drives: list[Path]) -> None:
    """What a store written before identity files looks like: no identity files, no store id, and
    drive paths stored absolute."""
    for d in drives:
        (d / IDENTITY_NAME).unlink()
    with sqlite3.connect(data / "meta" / "exastor.sqlite") as con:
        con.execute("DELETE FROM store_info")
        for i, d in enumerate(drives):
            con.execute("UPDATE drives SET path = ? WHERE id = ?", (str(d.resolve()), i))


def test_a_legacy_store_adopts_its_drives_with_proof_and_keeps_its_data(tmp_path, caplog):
    data = tmp_path / "data"
    drives = [data / "drive0", tmp_path / "d1", tmp_path / "d2"]
    ns = open_namespace(data, segment_size=1 << 20, ec="2+1", drives=[str(d) for d in drives])
    bodies = {f"k{i}": random.Random(i).randbytes(300_000) for i in range(8)}
    _fill(ns, bodies)
    ns.close()
    _make_legacy(data, drives)
    # A stranger's directory where drive 2 should be: it has segment and shard files, but none the
    # database can vouch for.
    stranger = tmp_path / "stranger"
    drives[2].rename(stranger)
    (drives[2] / "segments").mkdir(parents=True)
    (drives[2] / "shards").mkdir()
    (drives[2] / "segments" / "seg-0000000000000001.log").write_bytes(b"EXSEG001" + bytes(56) + b"x" * 1000)

    with caplog.at_level(logging.WARNING, logger="exastor.drives"):
        ns = open_namespace(data, segment_size=1 << 20)  # the server's start: adopt, recover
    try:
        store_id = ns.chunks.log.drives.store_id
        for i in (0, 1):
            ident = json.loads((drives[i] / IDENTITY_NAME).read_text())
            assert (ident["store"], ident["drive"], ident["format"]) == (store_id, i, 1)
        assert not (drives[2] / IDENTITY_NAME).exists(), "no proof, no identity"
        assert ns.chunks.log.drives.get(2).state == "offline"
        assert sum("identity file written" in r.getMessage() for r in caplog.records) == 2
        assert any("nothing on it proves" in r.getMessage() for r in caplog.records)
        with sqlite3.connect(data / "meta" / "exastor.sqlite") as con:
            assert con.execute("SELECT path FROM drives WHERE id = 0").fetchone()[0] == "drive0"
        _read_all(ns, bodies)  # 2+1 with one drive offline: every stripe still decodes
    finally:
        ns.close()
    assert (drives[2] / "segments" / "seg-0000000000000001.log").exists(), "an offline drive is not swept"

    # The right disk comes back: its files prove it (a chunk at the offset the index says).
    for sub in ("segments", "shards"):
        for f in (drives[2] / sub).iterdir():
            f.unlink()
        (drives[2] / sub).rmdir()
    drives[2].rmdir()
    stranger.rename(drives[2])
    ns = open_namespace(data, segment_size=1 << 20)
    try:
        assert json.loads((drives[2] / IDENTITY_NAME).read_text())["drive"] == 2
        assert all(d.state == "active" for d in ns.chunks.log.drives.all)
        _read_all(ns, bodies)
    finally:
        ns.close()
