"""Named integer rows of the ``counters`` table that services keep as state shared by every process
(the reducer's pause/run flags and its cursor, ...). Each function is one transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from exastor.meta.contract import Metadata


def read_counters(meta: Metadata, names: Iterable[str]) -> dict[str, int]:
    """The rows among ``names`` that exist (a missing row is simply absent), read outside a snapshot."""
    wanted = tuple(names)

    def q(cur: Any) -> dict[str, int]:
        marks = ",".join("?" * len(wanted))
        cur.execute(f"SELECT name, value FROM counters WHERE name IN ({marks})", wanted)
        return {str(name): int(value) for name, value in cur.fetchall()}

    return meta.runner.read(q, snapshot=False) if wanted else {}


def _put(cur: Any, name: str, value: int) -> None:
    cur.execute("UPDATE counters SET value = ? WHERE name = ?", (value, name))
    if cur.rowcount == 0:
        cur.execute("INSERT INTO counters (name, value) VALUES (?, ?)", (name, value))


def set_counters(meta: Metadata, values: Mapping[str, int]) -> None:
    """Set (or create) the rows, all in one transaction."""
    def tx(cur: Any) -> None:
        for name, value in values.items():
            _put(cur, name, int(value))

    meta.runner.write_sync(tx)


def advance_counter(meta: Metadata, name: str, at_least: int) -> int:
    """Set the row to ``at_least`` or one past its value, whichever is greater: strictly newer than any
    earlier value, even from another process. Returns what it set."""
    def tx(cur: Any) -> int:
        cur.execute("SELECT value FROM counters WHERE name = ?", (name,))
        row = cur.fetchone()
        value = max(at_least, int(row[0]) + 1 if row else 0)
        _put(cur, name, value)
        return value

    return meta.runner.write_sync(tx)
