"""Segment write leases, on the database's clock (docs/design.md, "Leases and fencing").

An open segment is written by one process: the holder of its lease. A lease is a row
(``segment_leases``: segment, holder, epoch, expires_ms). Taking one - when a gateway opens a
segment, or when any process takes a segment over to seal it - is one transaction that raises the
epoch by one, so epochs of a segment only grow and no two takers ever share one (on PostgreSQL two
racing takers write the same row: one commits, the other is re-run and gets the next epoch). The
epoch travels with every append to the segment's replica files and the drives refuse older ones
(drives/base.py, ``Fenced``): a partitioned gateway that lost its lease cannot change a segment
someone else sealed, whatever it still believes.

Time is the database's: ``expires_ms`` is computed from the database server's clock, never a
gateway's, so gateways whose clocks disagree still agree on who holds what. A holder renews its
leases (``renew``) well before they expire; a lease that expired may be taken over by anyone; an
unexpired one of another holder only with ``steal`` (one process that knows no other can be
writing: a SQLite store's server, which holds the data directory's lock), or with
``steal_prefix``: a gateway on a shared database takes over, at its start, the leases its own
previous run left (holder ids begin with the gateway's persistent identity, DATA/gateway.id,
``set_gateway``), and never another gateway's live ones.

Correctness does not rest on the expiry (a paused process may write after its lease expired): it
rests on the fence. Expiry only decides when someone else may go ahead and fence.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any

from exastor.meta.contract import Metadata

SEGMENT_LEASE_MS = int(os.environ.get("EXASTOR_SEGMENT_LEASE_MS", "30000"))
# How often a holder renews: a third of the lease, so two renewals may fail before it expires.
SEGMENT_LEASE_RENEW_MS = int(os.environ.get("EXASTOR_SEGMENT_LEASE_RENEW_MS", str(SEGMENT_LEASE_MS // 3)))

_holder: tuple[int, str] | None = None
_gateway: str | None = None


def set_gateway(identity: str) -> None:
    """This process (and the workers it forks) belongs to the gateway ``identity`` (DATA/gateway.id):
    its holder ids begin with ``gateway_prefix(identity)``."""
    global _gateway, _holder
    _gateway, _holder = identity, None


def gateway_prefix(identity: str) -> str:
    """What every holder id of the gateway ``identity`` begins with, and no other's (the separator
    keeps gateway ``ab`` from matching gateway ``abc``)."""
    return f"{identity}/"


def holder_id() -> str:
    """This process, as a lease holder: its gateway's identity (if it has one), host, pid and a random
    part (a pid is reused after a restart, and each forked worker is a holder of its own)."""
    global _holder
    if _holder is None or _holder[0] != os.getpid():  # a forked worker is a holder of its own
        own = f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"
        _holder = (os.getpid(), gateway_prefix(_gateway) + own if _gateway else own)
    return _holder[1]


def db_now_ms(cur: Any) -> int:
    """The database server's clock in ms since the Unix epoch. A backend difference kept here, like
    ``next_seq``: a cursor with sequences is PostgreSQL's."""
    if getattr(cur, "nextval", None) is not None:
        cur.execute("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)")
    else:
        cur.execute("SELECT CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)")
    return int(cur.fetchone()[0])


@dataclass(frozen=True)
class Lease:
    segment: int
    holder: str
    epoch: int
    expires_ms: int
    now_ms: int  # the database's clock when this was read

    @property
    def expired(self) -> bool:
        return self.expires_ms <= self.now_ms


def grant_first(cur: Any, segment: int, holder: str, ttl_ms: int = SEGMENT_LEASE_MS) -> int:
    """Inside the transaction that creates ``segment``: its first lease, epoch 1."""
    # The time is read first and written as a value: SQLite's metadata journal replays the statement.
    cur.execute("INSERT INTO segment_leases (segment, holder, epoch, expires_ms) VALUES (?, ?, 1, ?)",
                (segment, holder, db_now_ms(cur) + ttl_ms))
    return 1


def drop(cur: Any, segment: int) -> None:
    """Inside the transaction that seals or deletes ``segment``: nobody writes it again."""
    cur.execute("DELETE FROM segment_leases WHERE segment = ?", (segment,))


def take(meta: Metadata, segment: int, holder: str, *, steal: bool = False, steal_prefix: str | None = None,
         ttl_ms: int = SEGMENT_LEASE_MS) -> int | None:
    """Take (or take over) ``segment``'s lease for ``holder``: the new epoch, one above the last. None
    when the segment is no longer open, or another holder's lease has not expired - unless
    ``steal``, or the holder's id begins with ``steal_prefix`` (a gateway's previous run, taken over
    at its start: only then can no process of that prefix be writing). The caller must then
    ``fence`` every replica with the epoch before reading it."""
    def tx(cur: Any) -> int | None:
        cur.execute("SELECT state FROM segments WHERE id = ?", (segment,))
        row = cur.fetchone()
        if row is None or row[0] != "open":
            return None
        now = db_now_ms(cur)
        cur.execute("SELECT holder, epoch, expires_ms FROM segment_leases WHERE segment = ?", (segment,))
        lease = cur.fetchone()
        if lease is None:  # a segment opened before leases existed: its files carry epoch 0
            cur.execute("INSERT INTO segment_leases (segment, holder, epoch, expires_ms) VALUES (?, ?, 1, ?)",
                        (segment, holder, now + ttl_ms))
            return 1
        ours = lease[0] == holder or (steal_prefix is not None and str(lease[0]).startswith(steal_prefix))
        if not ours and int(lease[2]) > now and not steal:
            return None
        epoch = int(lease[1]) + 1
        cur.execute("UPDATE segment_leases SET holder = ?, epoch = ?, expires_ms = ? WHERE segment = ?",
                    (holder, epoch, now + ttl_ms, segment))
        return epoch

    return meta.runner.write_sync(tx)


def renew(meta: Metadata, holder: str, held: dict[int, int], *, ttl_ms: int = SEGMENT_LEASE_MS) -> set[int]:
    """Extend the leases ``held`` (segment -> epoch) by ``ttl_ms`` from now; returns the segments whose
    lease is no longer this holder's at that epoch (taken over, or the segment sealed)."""
    def tx(cur: Any) -> set[int]:
        expires = db_now_ms(cur) + ttl_ms
        lost = set()
        for segment, epoch in sorted(held.items()):
            cur.execute("UPDATE segment_leases SET expires_ms = ? WHERE segment = ? AND holder = ? AND epoch = ?",
                        (expires, segment, holder, epoch))
            if cur.rowcount == 0:
                lost.add(segment)
        return lost

    return meta.runner.write_sync(tx) if held else set()


def holds(cur: Any, segment: int, epoch: int) -> bool:
    """Inside a transaction: whether ``epoch`` is still ``segment``'s current lease (no row: a segment
    from before leases, or one already sealed - the caller checks the segment's state)."""
    cur.execute("SELECT epoch FROM segment_leases WHERE segment = ?", (segment,))
    row = cur.fetchone()
    return row is None or int(row[0]) == epoch


def lease_of(meta: Metadata, segment: int) -> Lease | None:
    def q(cur: Any) -> Lease | None:
        now = db_now_ms(cur)
        cur.execute("SELECT holder, epoch, expires_ms FROM segment_leases WHERE segment = ?", (segment,))
        row = cur.fetchone()
        return None if row is None else Lease(segment, row[0], int(row[1]), int(row[2]), now)

    return meta.runner.read(q)


def expired_open_segments(meta: Metadata) -> list[int]:
    """Open segments whose write lease expired (by the database's clock): their holder is gone."""
    def q(cur: Any) -> list[int]:
        now = db_now_ms(cur)
        cur.execute("SELECT l.segment FROM segment_leases l JOIN segments s ON s.id = l.segment "
                    "WHERE s.state = 'open' AND l.expires_ms < ? ORDER BY l.segment", (now,))
        return [int(r[0]) for r in cur.fetchall()]

    return meta.runner.read(q)
