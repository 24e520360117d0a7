"""Membership and singleton roles, on the database's clock (docs/design.md, "Membership and the
cluster manager").

- ``members``: one row per gateway (it heartbeats its own row) and per drive server (drive servers
  never talk to the database: the cluster manager heartbeats their rows when a signed probe of
  theirs is answered). ``seen_ms`` is the database's clock at the last heartbeat; a member not seen
  for ``down_after_ms`` is marked down by the manager (``mark_down``), and alive again by its next
  heartbeat.
- ``service_leases``: a role only one process may play at a time (the cluster manager). Taking it
  is one transaction: the holder renews its own lease, anyone takes an expired one, the epoch
  grows with every change of holder - so a manager that lost the role (paused, cut off) is told by
  its next renewal, and two processes never both believe they hold it at one epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from exastor.meta.contract import Metadata
from exastor.meta.leases import db_now_ms

GATEWAY, DRIVE_SERVER = "gateway", "drive-server"
# A gateway's master process while it starts (gateway/serve_cli.py): it opens, and may seal, secrets
# before its workers (the members of kind GATEWAY) heartbeat. Its row goes once it is down.
STARTING = "gateway-starting"


class GatewaysRunning(RuntimeError):
    """Gateways heartbeated recently: something that must not run beside them (a master-key
    rotation) is refused. ``members`` are the gateways seen."""

    def __init__(self, seen: list[Member], within_ms: int) -> None:
        self.members = seen
        names = ", ".join(f"{m.address} ({m.age_s:.1f} s ago)" for m in seen)
        super().__init__(f"{len(seen)} gateway process(es) heartbeated within the last {within_ms / 1000:g} s "
                         f"(database clock): {names}")


@dataclass(frozen=True)
class Member:
    id: str
    kind: str
    address: str
    started_ms: int
    seen_ms: int
    state: str
    now_ms: int  # the database's clock when read

    @property
    def age_s(self) -> float:
        return max(0, self.now_ms - self.seen_ms) / 1000


def heartbeat(meta: Metadata, member: str, kind: str, address: str) -> None:
    """``member`` is alive now (by the database's clock): its row made or refreshed, state alive."""
    def tx(cur: Any) -> None:
        now = db_now_ms(cur)
        cur.execute("UPDATE members SET seen_ms = ?, address = ?, state = 'alive' WHERE id = ?", (now, address, member))
        if cur.rowcount == 0:
            cur.execute("INSERT INTO members (id, kind, address, started_ms, seen_ms, state) "
                        "VALUES (?, ?, ?, ?, ?, 'alive')", (member, kind, address, now, now))

    meta.runner.write_sync(tx)


def refuse_beside_live_gateways(cur: Any, within_ms: int) -> None:
    """In the caller's write transaction: hold membership still until it ends, then raise
    GatewaysRunning if any gateway (or starting gateway) heartbeated within ``within_ms``.

    The lock makes the check and the caller's writes one step for the gateways: a gateway whose
    heartbeat committed before it is seen here (and the caller's transaction rolls back); one that
    heartbeats after waits until the caller committed, and - since a gateway heartbeats before it
    opens any secret (gateway/serve_cli.py) - then reads what the caller wrote."""
    if getattr(cur, "nextval", None) is not None:  # PostgreSQL: before the first SELECT, so the snapshot follows it
        cur.execute("LOCK TABLE members IN SHARE ROW EXCLUSIVE MODE")  # blocks INSERT/UPDATE of heartbeats
    # (SQLite: the write transaction already excludes every other writer.)
    now = db_now_ms(cur)
    cur.execute("SELECT id, kind, address, started_ms, seen_ms, state FROM members WHERE kind IN (?, ?) "
                "AND seen_ms >= ? ORDER BY id", (GATEWAY, STARTING, now - within_ms))
    seen = [Member(r[0], r[1], r[2], int(r[3]), int(r[4]), r[5], now) for r in cur.fetchall()]
    if seen:
        raise GatewaysRunning(seen, within_ms)


def gateways_beating(meta: Metadata, id_part: str, within_ms: int) -> dict[str, int]:
    """Gateway members (workers, and masters while they start) alive by their row, seen within
    ``within_ms`` by the database's clock, whose id holds ``id_part``: id -> seen_ms."""
    def q(cur: Any) -> dict[str, int]:
        cur.execute("SELECT id, seen_ms FROM members WHERE kind IN (?, ?) AND state = 'alive' AND seen_ms >= ?",
                    (GATEWAY, STARTING, db_now_ms(cur) - within_ms))
        return {r[0]: int(r[1]) for r in cur.fetchall() if id_part in r[0]}

    return meta.runner.read(q)


def forget_started(meta: Metadata) -> int:
    """Remove the rows of starting gateways marked down: their workers heartbeat as themselves."""
    def tx(cur: Any) -> int:
        cur.execute("DELETE FROM members WHERE kind = ? AND state = 'down'", (STARTING,))
        return max(cur.rowcount, 0)

    return meta.runner.write_sync(tx)


def mark_down(meta: Metadata, down_after_ms: int) -> list[Member]:
    """Members alive by their row but not seen for ``down_after_ms``: marked down (returned)."""
    def tx(cur: Any) -> list[Member]:
        now = db_now_ms(cur)
        cur.execute("SELECT id, kind, address, started_ms, seen_ms FROM members WHERE state = 'alive' AND seen_ms < ? "
                    "ORDER BY id", (now - down_after_ms,))
        gone = [Member(r[0], r[1], r[2], int(r[3]), int(r[4]), "down", now) for r in cur.fetchall()]
        for m in gone:
            cur.execute("UPDATE members SET state = 'down' WHERE id = ? AND seen_ms = ?", (m.id, m.seen_ms))
        return gone

    return meta.runner.write_sync(tx)


def forget(meta: Metadata, older_than_ms: int) -> int:
    """Remove rows of members down and unseen for ``older_than_ms`` (restarted gateways get new ids)."""
    def tx(cur: Any) -> int:
        cur.execute("DELETE FROM members WHERE state = 'down' AND seen_ms < ?", (db_now_ms(cur) - older_than_ms,))
        return max(cur.rowcount, 0)

    return meta.runner.write_sync(tx)


def members(meta: Metadata) -> list[Member]:
    def q(cur: Any) -> list[Member]:
        now = db_now_ms(cur)
        cur.execute("SELECT id, kind, address, started_ms, seen_ms, state FROM members ORDER BY kind, id")
        return [Member(r[0], r[1], r[2], int(r[3]), int(r[4]), r[5], now) for r in cur.fetchall()]

    return meta.runner.read(q)


@dataclass(frozen=True)
class Role:
    name: str
    holder: str
    epoch: int
    expires_ms: int
    now_ms: int

    @property
    def expired(self) -> bool:
        return self.expires_ms <= self.now_ms


def hold_role(meta: Metadata, name: str, holder: str, ttl_ms: int) -> int | None:
    """Take or renew the singleton role ``name`` for ``holder``: its epoch while held, None while
    another holder's lease has not expired."""
    def tx(cur: Any) -> int | None:
        now = db_now_ms(cur)
        cur.execute("SELECT holder, epoch, expires_ms FROM service_leases WHERE name = ?", (name,))
        row = cur.fetchone()
        if row is None:
            cur.execute("INSERT INTO service_leases (name, holder, epoch, expires_ms) VALUES (?, ?, 1, ?)",
                        (name, holder, now + ttl_ms))
            return 1
        if row[0] == holder:
            cur.execute("UPDATE service_leases SET expires_ms = ? WHERE name = ?", (now + ttl_ms, name))
            return int(row[1])
        if int(row[2]) > now:
            return None
        epoch = int(row[1]) + 1
        cur.execute("UPDATE service_leases SET holder = ?, epoch = ?, expires_ms = ? WHERE name = ?",
                    (holder, epoch, now + ttl_ms, name))
        return epoch

    return meta.runner.write_sync(tx)


def role(meta: Metadata, name: str) -> Role | None:
    def q(cur: Any) -> Role | None:
        now = db_now_ms(cur)
        cur.execute("SELECT holder, epoch, expires_ms FROM service_leases WHERE name = ?", (name,))
        row = cur.fetchone()
        return None if row is None else Role(name, row[0], int(row[1]), int(row[2]), now)

    return meta.runner.read(q)
