"""A segment whose files could not all be made is marked deleted only while it is still open.

On a shared database a drive that takes longer than the write lease to fail (a partitioned drive
server answers nothing until the request times out) lets another gateway's cluster manager take the
new segment over and seal it meanwhile: its shard rows are committed, the segment sealed. Marking it
deleted after that left those rows pointing into a deleted segment, where no repair or drain looks
(they look at sealed segments): the netns slice's `exastor drive remove` of a lost host's drive then
failed with "still holds 1 shards ... (0 could not move)". And a drain names or forgets every row it
does not move."""

from __future__ import annotations

import argparse
import errno

from exastor.datadir.opening import open_namespace
from exastor.drives import LocalDrive
from exastor.engine.drives import segment_name


def _rows_outside_sealed(meta) -> list[tuple]:
    return meta.runner.read(lambda cur: cur.execute(
        "SELECT s.segment, s.idx, s.drive, g.state FROM shards s LEFT JOIN segments g ON g.id = s.segment "
        "WHERE g.state IS NULL OR g.state != 'sealed'").fetchall())


def test_a_segment_sealed_by_another_process_while_its_files_were_made_stays_sealed(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    ns = open_namespace(data, segment_size=1 << 20, drives=[str(tmp_path / f"d{i}") for i in range(8)], ec="4+2")
    try:
        log = ns.chunks.log
        real_create = LocalDrive.create
        calls: list[str] = []
        taken: list[int] = []

        def slow_then_failing(self, name, data=b""):
            calls.append(name)
            if len(calls) == 2:  # the second replica of the first segment: the first one's file exists
                seg = int(name.split("-")[1].split(".")[0], 16)
                # Meanwhile the lease expired and another process (the cluster manager's orphan
                # sealer) took the segment over, fenced and sealed it: its shard rows are committed.
                log.seal(seg)
                taken.append(seg)
                raise OSError(errno.ETIMEDOUT, "the drive server did not answer in time")
            return real_create(self, name, data)

        monkeypatch.setattr(LocalDrive, "create", slow_then_failing)
        seg, placed = log._create()  # the next attempt, on other drives
        monkeypatch.setattr(LocalDrive, "create", real_create)

        (other,) = taken
        assert seg != other and calls[0] == segment_name(other)
        holders = [d for (d,) in ns.meta.runner.read(lambda cur: cur.execute(
            "SELECT drive FROM shards WHERE segment = ? ORDER BY idx", (other,)).fetchall())]
        assert len(holders) == 6, "the other process's seal committed the segment's k+m shards"
        state = ns.meta.runner.read(lambda cur: cur.execute(
            "SELECT state FROM segments WHERE id = ?", (other,)).fetchone()[0])
        healthy = {d.id for d in log.drives.all if d.state == "active"}
    finally:
        ns.close()

    # The netns slice's symptom: a drive holding one of those shards cannot be removed (the drain
    # moves the shards of sealed segments; a deleted segment's row stayed, "0 could not move").
    drive = next(d for d in holders if d in healthy and d not in placed)  # not a replica of the open one
    capsys.readouterr()
    assert _drive_cmd(data, "remove", str(drive)) == 0, capsys.readouterr().err
    assert state == "sealed", "a segment another process sealed was marked deleted under its shard rows"
    ns = open_namespace(data, segment_size=1 << 20)
    try:
        assert _rows_outside_sealed(ns.meta) == []
    finally:
        ns.close()


def _drive_cmd(data, *argv) -> int:
    from exastor.services import drive_cli

    p = argparse.ArgumentParser()
    drive_cli.add_arguments(p)
    return drive_cli.run(p.parse_args(["--data", str(data), *argv]))


def test_a_drain_forgets_rows_of_deleted_segments_and_names_any_row_it_cannot_move(tmp_path, capsys):
    from exastor.meta.contract import Metadata
    from exastor.meta.sqlite import SqliteRunner

    data = tmp_path / "data"
    ns = open_namespace(data, segment_size=1 << 20, drives=[str(tmp_path / f"d{i}") for i in range(5)], ec="2+2")
    ns.close()

    def sql(statement: str, params: tuple = ()) -> list:
        meta = Metadata(SqliteRunner(data / "meta" / "exastor.sqlite"))
        try:
            return meta.runner.write_sync(lambda cur: cur.execute(statement, params).fetchall())
        finally:
            meta.close()

    # A deleted segment whose shard rows were left behind (as the unconditional delete above left
    # them), one on drive 0; and an open segment with a shard row on drive 1 (no writer makes one:
    # the drain must say so rather than pass it over).
    sql("INSERT INTO segments (id, state, size, created_ns) VALUES (900, 'deleted', 0, 1)")
    sql("INSERT INTO segment_layout (segment, k, m, shard_len, data_len) VALUES (900, 2, 2, 4096, 100)")
    for idx in range(4):
        sql("INSERT INTO shards (segment, idx, drive, state, gen) VALUES (900, ?, ?, 'ok', ?)", (idx, idx, 9000 + idx))
    sql("INSERT INTO segments (id, state, size, created_ns) VALUES (901, 'open', 0, 1)")
    sql("INSERT INTO segment_layout (segment, k, m, shard_len, data_len) VALUES (901, 1, 2, 0, 0)")
    sql("INSERT INTO shards (segment, idx, drive, state, gen) VALUES (901, 0, 1, 'ok', 9100)")

    assert _drive_cmd(data, "remove", "0") == 0
    assert sql("SELECT COUNT(*) FROM shards WHERE drive = 0") == [(0,)]
    assert sql("SELECT state FROM drives WHERE id = 0") == [("removed",)]
    capsys.readouterr()
    assert _drive_cmd(data, "remove", "1") == 1
    err = capsys.readouterr().err
    assert "still holds 1 shards" in err and "segment 901 shard 0 (open)" in err, err
