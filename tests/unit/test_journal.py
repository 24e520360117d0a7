"""The metadata journal (meta/journal.py): records, the committed chain, and exact replay."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
from pathlib import Path

import pytest

from exastor import errors
from exastor.drives import FaultRules, FaultyDrive, LocalDrive
from exastor.meta import journal as jr
from exastor.meta.sqlite import SqliteRunner


def _dump(db: Path) -> list[str]:
    """The database as SQL, but for where the next journal record would go (not replayed)."""
    con = sqlite3.connect(db)
    try:
        return [line for line in con.iterdump() if "'journal_off'" not in line]
    finally:
        con.close()


def _runner(tmp_path: Path, drives: list[Path]) -> SqliteRunner:
    runner = SqliteRunner(tmp_path / "meta.sqlite")
    runner.write_sync(lambda cur: cur.execute("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB, n BIGINT)"))
    return runner


def _copy(runner: SqliteRunner, dest: Path) -> Path:
    src = sqlite3.connect(runner.path)
    dst = sqlite3.connect(dest)
    src.backup(dst)
    src.close()
    dst.close()
    return dest


def _workload(runner: SqliteRunner, rng: random.Random, n: int) -> None:
    """Random units through the writer, some failing (rolled back), some with their own savepoints."""
    async def main() -> None:
        async def unit(i: int) -> None:
            key = f"k{rng.randrange(50)}"

            def tx(cur: sqlite3.Cursor) -> None:
                cur.execute("SELECT n FROM kv WHERE k = ?", (key,))
                row = cur.fetchone()
                if row is None:
                    cur.execute("INSERT INTO kv (k, v, n) VALUES (?, ?, ?)", (key, rng.randbytes(20), i))
                else:
                    cur.execute("UPDATE kv SET n = n + ?, v = ? WHERE k = ?", (i, rng.randbytes(8), key))
                cur.execute("SAVEPOINT inner")
                cur.executemany("INSERT INTO kv (k, v, n) VALUES (?, ?, ?) ON CONFLICT (k) DO NOTHING",
                                [(f"m{i}-{j}", b"\x00\xff", j) for j in range(3)])
                if i % 4 == 0:  # the unit's own savepoint undone: must not reach the journal
                    cur.execute("ROLLBACK TO SAVEPOINT inner")
                cur.execute("RELEASE SAVEPOINT inner")
                if i % 7 == 0:
                    raise errors.PreconditionFailed("a failing unit leaves nothing")

            try:
                await runner.write(tx)
            except errors.PreconditionFailed:
                pass

        for wave in range(0, n, 8):  # several batches, each with several units
            await asyncio.gather(*(unit(i) for i in range(wave, min(n, wave + 8))))

    asyncio.run(main())


def test_replaying_the_journal_onto_a_copy_gives_the_same_database(tmp_path):
    roots = [tmp_path / "d0", tmp_path / "d1"]
    for d in roots:
        d.mkdir()
    drives = [LocalDrive(d) for d in roots]
    runner = _runner(tmp_path, roots)
    journal = jr.Journal(lambda: drives)
    runner.attach_journal(journal)
    rng = random.Random(7)
    _workload(runner, rng, 40)
    base = _copy(runner, tmp_path / "base.sqlite")
    head = jr.read_head(sqlite3.connect(base))
    _workload(runner, rng, 200)
    final = _dump(runner.path)
    runner.close()
    assert journal.appended > 2

    records, skipped = jr.read_all(drives)
    chain = jr.committed_chain(records, head[0], head[1])
    assert skipped == 0 and chain.orphans == 0
    jr.replay(base, chain.records)
    assert _dump(base) == final, "the copy plus the journal is exactly the database"

    # Either drive alone holds the whole journal.
    one, _ = jr.read_drive(drives[1])
    assert len(jr.committed_chain(one, head[0], head[1]).records) == len(chain.records)


def test_a_failed_journal_write_fails_the_batch_and_commits_nothing(tmp_path):
    (tmp_path / "d0").mkdir()
    drive = LocalDrive(tmp_path / "d0")
    runner = _runner(tmp_path, [tmp_path / "d0"])
    runner.attach_journal(jr.Journal(lambda: [drive]))
    runner.write_sync(lambda cur: cur.execute("INSERT INTO kv (k, n) VALUES ('a', 1)"))
    failures: list[str] = []
    missing = LocalDrive(tmp_path / "missing-drive")  # an unmounted drive: its root is not there
    broken = jr.Journal(lambda: [missing], lambda io, exc: failures.append(io.label))
    runner.attach_journal(broken)
    with pytest.raises(jr.JournalError):
        runner.write_sync(lambda cur: cur.execute("INSERT INTO kv (k, n) VALUES ('b', 2)"))
    assert failures == [missing.label], "the drive is reported"
    rows = runner.read(lambda cur: cur.execute("SELECT k FROM kv ORDER BY k").fetchall())
    assert rows == [("a",)], "not journaled means not committed"
    runner.close()


def test_a_drive_whose_journal_file_failed_is_replaced_by_the_next_so_records_keep_their_copies(tmp_path):
    """Two copies of every record: when the first drive's file fails (its host lost power), that
    batch fails and the next drive steps in, so the following records still reach two drives (they
    went on to one only); a restore reads them from whichever drives hold them. With one drive left
    the (degraded) store journals on it; with none, nothing commits."""
    roots = [tmp_path / f"d{i}" for i in range(3)]
    for d in roots:
        d.mkdir()
    rule_file = tmp_path / "faults.json"
    rule_file.write_text("{}")
    drives = [FaultyDrive(LocalDrive(d), FaultRules(rule_file)) for d in roots]

    def break_drives(*broken: int) -> None:  # every write and fsync there fails with EIO from now on
        rule_file.write_text(json.dumps({drives[i].label: {"eio_write": True, "eio_fsync": True} for i in broken}))
        os.utime(rule_file, ns=(len(broken), len(broken)))  # re-read: its modification time changed

    runner = _runner(tmp_path, roots)
    base = _copy(runner, tmp_path / "base.sqlite")
    head = jr.read_head(sqlite3.connect(base))
    journal = jr.Journal(lambda: drives, copies=lambda: 2)
    runner.attach_journal(journal)
    runner.write_sync(lambda cur: cur.execute("INSERT INTO kv (k, n) VALUES ('a', 1)"))
    break_drives(0)
    with pytest.raises(jr.JournalError):
        runner.write_sync(lambda cur: cur.execute("INSERT INTO kv (k, n) VALUES ('b', 2)"))
    break_drives()  # the drive is back: its file of this generation is never written again all the same
    for k in "cde":
        runner.write_sync(lambda cur, k=k: cur.execute("INSERT INTO kv (k, n) VALUES (?, 3)", (k,)))
    held = [{r.rid for r in jr.read_drive(d)[0]} for d in drives]
    assert len(held[2]) >= 3 and held[2] <= held[1] and not held[2] & held[0], \
        "every record after the failure is on two drives, the second and the third"
    final = _dump(runner.path)
    records, _ = jr.read_all(drives)
    jr.replay(base, jr.committed_chain(records, head[0], head[1]).records)
    assert _dump(base) == final, "the copy plus what the drives hold is the database"
    break_drives(0, 1)  # one drive left of the two each record needs: the store is degraded
    with pytest.raises(jr.JournalError):  # the batch that met the second failure
        runner.write_sync(lambda cur: cur.execute("INSERT INTO kv (k, n) VALUES ('x', 4)"))
    runner.write_sync(lambda cur: cur.execute("INSERT INTO kv (k, n) VALUES ('f', 4)"))
    assert len({r.rid for r in jr.read_drive(drives[2])[0]}) == len(held[2]) + 1, "on the one there is"
    break_drives(0, 1, 2)
    with pytest.raises(jr.JournalError):
        runner.write_sync(lambda cur: cur.execute("INSERT INTO kv (k, n) VALUES ('g', 5)"))
    rows = runner.read(lambda cur: cur.execute("SELECT k FROM kv ORDER BY k").fetchall())
    assert rows == [("a",), ("c",), ("d",), ("e",), ("f",)], "no drive at all: nothing committed"
    runner.close()


def test_commits_without_a_journal_mark_a_gap(tmp_path):
    runner = _runner(tmp_path, [])
    seq0, _, _, gap0, _ = runner.head()
    runner.write_sync(lambda cur: cur.execute("INSERT INTO kv (k, n) VALUES ('a', 1)"))
    seq, _, _, gap, _ = runner.head()
    assert seq == seq0 + 1 and gap == seq > gap0
    runner.write_sync(lambda cur: cur.execute("SELECT 1"))  # a read-only unit moves nothing
    assert runner.head()[0] == seq
    runner.close()


def _rec(seq: int, rid: int, prev: int, where: tuple[str, int, int], kind: int = jr.COMMIT) -> jr.Record:
    return jr.Record(kind, seq, rid, prev, 0, b"[]", where)


def test_a_record_that_never_committed_is_told_apart():
    # Record 2 was written on head 1 but its batch died before COMMIT; record 3 was written on the
    # same head later in the same file, committed, and 4 followed it.
    records = [_rec(1, 1, 0, ("a", 0, 0)), _rec(2, 2, 1, ("a", 0, 100)), _rec(2, 3, 1, ("a", 0, 200)),
               _rec(3, 4, 3, ("a", 0, 300))]
    chain = jr.committed_chain(records, 0, 0)
    assert [r.rid for r in chain.records] == [1, 3, 4] and chain.orphans == 1
    # At the very end: two leaves on one head, the later in the file wins.
    chain = jr.committed_chain(records[:3], 0, 0)
    assert [r.rid for r in chain.records] == [1, 3]
    # An abort record names a batch whose COMMIT failed.
    chain = jr.committed_chain([*records[:2], _rec(0, 2, 0, ("a", 0, 150), jr.ABORT)], 0, 0)
    assert [r.rid for r in chain.records] == [1]


def test_torn_records_are_stepped_over():
    good = [jr.encode_record(jr.COMMIT, i + 1, i + 10, i + 9, 0, jr.encode_statements(
        [("INSERT INTO kv (k, v) VALUES (?, ?)", ("k", b"\x00" * i), False)])) for i in range(3)]
    torn = good[1][: len(good[1]) // 2]
    data = good[0] + torn + good[1] + good[2][:-3]  # a torn record mid-file, a torn tail
    records, skipped = jr.parse(data)
    assert [r.rid for r in records] == [10, 11]
    assert 0 < skipped <= len(torn) + len(good[2]) - 3  # zero bytes are not counted
    assert jr.decode_statements(records[1].payload) == [("INSERT INTO kv (k, v) VALUES (?, ?)", ("k", b"\x00"),
                                                         False)]
