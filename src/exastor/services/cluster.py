"""Heartbeats, membership and the cluster manager (docs/design.md, "Membership and the cluster manager").

Runs in worker 0 of every gateway on PostgreSQL (``ClusterThread``), every ``EXASTOR_HEARTBEAT_INTERVAL``
seconds (2):

1. The gateway heartbeats its own ``members`` row (meta/members.py; the database's clock).
2. It takes or renews the ``cluster-manager`` role (a lease row, ``EXASTOR_DOWN_AFTER`` seconds long).
   One gateway of the cluster holds it; when that one dies or is cut off, another takes it once the
   lease expired. Everything the manager does is idempotent and safe to do twice (a manager that
   lost the role while paused may finish one pass): the database's transactions and the segment
   fences arbitrate, not the role.
3. The manager probes every drive server named by the ``drives`` table (a signed request) and
   heartbeats its row when answered; marks members not seen for ``EXASTOR_DOWN_AFTER`` seconds (10)
   down; for a drive server just marked down it records its drives ``offline`` in the database for
   every gateway (until then each gateway only left them out in its own view), which queues their
   shards for repair once they have been offline for ``EXASTOR_OFFLINE_REPAIR_AFTER`` seconds
   (services/repair.py). A drive whose server answers again is marked active by the next gateway
   whose drive refresh reads its identity back. A server is alive when it answers a signed request
   through any of its drives, even "not served here"; every ``EXASTOR_ORPHAN_INTERVAL`` the manager
   asks each drive of the servers that answered, and records offline the drives their server no
   longer serves (a lost disk), so they are repaired like a dead server's.
4. Every ``EXASTOR_ORPHAN_INTERVAL`` seconds (30) the manager seals open segments whose write lease
   expired - a gateway died, or was cut off, with a segment open - taking the lease over and fencing
   the replicas first (engine/segments.py, ``seal``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from exastor import errors
from exastor.drives import is_url
from exastor.engine.drives import DriveSet
from exastor.engine.segments import SegmentLog
from exastor.meta import leases, members
from exastor.meta.contract import Metadata

log = logging.getLogger("exastor.cluster")

HEARTBEAT_S = float(os.environ.get("EXASTOR_HEARTBEAT_INTERVAL", "2"))
DOWN_AFTER_S = float(os.environ.get("EXASTOR_DOWN_AFTER", "10"))
ORPHAN_INTERVAL_S = float(os.environ.get("EXASTOR_ORPHAN_INTERVAL", "30"))
FORGET_AFTER_S = 7 * 86400.0   # rows of members down this long go (a restarted gateway has a new id)
MANAGER = "cluster-manager"


def server_of(url: str) -> str:
    """``http://HOST:PORT`` of a drive URL ``http://HOST:PORT/NAME``: a drive server's member address."""
    return url.rsplit("/", 1)[0]


def drive_server_id(address: str) -> str:
    return f"{members.DRIVE_SERVER} {address}"


class ClusterService:
    def __init__(self, segments: SegmentLog, address: str) -> None:
        self.log = segments
        self.meta: Metadata = segments.meta
        self.drives: DriveSet = segments.drives
        self.address = address
        self._next_orphans = 0.0

    @property
    def member_id(self) -> str:
        return f"{members.GATEWAY} {leases.holder_id()}"  # per process: a forked worker is its own member

    def pass_once(self) -> dict[str, Any]:
        """One heartbeat, and one manager pass if this gateway holds the role: what it did."""
        members.heartbeat(self.meta, self.member_id, members.GATEWAY, self.address)
        epoch = members.hold_role(self.meta, MANAGER, self.member_id, int(DOWN_AFTER_S * 1000))
        done: dict[str, Any] = {"manager": epoch is not None}
        if epoch is None:
            return done
        # Drives come and go (added, back online): this also marks a returned drive active when idle.
        self.drives.maybe_refresh()
        done["servers_answered"] = self.probe_drive_servers()
        down = members.mark_down(self.meta, int(DOWN_AFTER_S * 1000))
        for m in down:
            if m.kind == members.STARTING:
                continue  # a gateway's master after its start: its workers heartbeat as themselves
            log.warning("cluster manager: %s %s not seen for %.0f s: down", m.kind, m.address, m.age_s)
            if m.kind == members.DRIVE_SERVER:
                self.queue_repair(m.address)
        done["marked_down"] = [m.id for m in down if m.kind != members.STARTING]
        if time.monotonic() >= self._next_orphans:
            self._next_orphans = time.monotonic() + ORPHAN_INTERVAL_S
            done["orphans_sealed"] = self.seal_orphans()
            done["not_served"] = self.mark_not_served(done["servers_answered"])
        members.forget(self.meta, int(FORGET_AFTER_S * 1000))
        members.forget_started(self.meta)
        return done

    def probe_drive_servers(self) -> list[str]:
        """Heartbeat every drive server that answers a signed request, through any one of its drives:
        a server that says it no longer serves that drive (a lost disk whose row stays until
        `exastor drive remove`) is alive all the same - taking it for dead would leave its other
        drives' outage undetected, or take them all offline for one lost disk."""
        servers: dict[str, Any] = {}
        for d in self.drives.all:
            if is_url(d.path) and d.state != "removed":
                servers.setdefault(server_of(str(d.path)), getattr(d.io, "inner", d.io))
        answered = []
        for address, io in sorted(servers.items()):
            served = getattr(io, "served", None)
            if served is not None and served() is not None:
                members.heartbeat(self.meta, drive_server_id(address), members.DRIVE_SERVER, address)
                answered.append(address)
        return answered

    def mark_not_served(self, answered: list[str]) -> list[int]:
        """Drives in service whose server answers but says it does not serve them (the disk was lost or
        unmounted, the server restarted without it): offline for every gateway, so their shards are
        rebuilt once offline for the repair grace, as a dead server's are. Only servers that answered
        this pass are asked (a dead one would cost a timeout per drive); one request per drive, every
        ``EXASTOR_ORPHAN_INTERVAL``."""
        gone = []
        for d in self.drives.all:
            # not this process's view of the state (one unserved answer already left it out here):
            # mark_offline changes only what the database still has in service
            if not is_url(d.path) or d.state == "removed" or server_of(str(d.path)) not in answered:
                continue
            served = getattr(getattr(d.io, "inner", d.io), "served", None)
            if served is not None and served() is False:
                if self.drives.mark_offline(d.id, "its drive server does not serve it (cluster manager)"):
                    log.warning("cluster manager: drive %d (%s) is not served by its server: offline; its shards "
                                "are repaired if it stays away", d.id, d.path)
                gone.append(d.id)
        return gone

    def queue_repair(self, address: str) -> None:
        """The drives of a drive server marked down: offline for every gateway from now on (their
        shards are rebuilt elsewhere once offline for the repair grace)."""
        for d in self.drives.all:
            if is_url(d.path) and server_of(str(d.path)) == address and d.state != "removed":
                if self.drives.mark_offline(d.id, f"drive server {address} down (cluster manager)"):
                    log.warning("cluster manager: drive %d (%s) offline; its shards are repaired if it stays away",
                                d.id, d.path)

    def seal_orphans(self) -> list[int]:
        sealed = []
        for segment in leases.expired_open_segments(self.meta):
            if segment == self.log.open_segment:
                continue
            log.warning("cluster manager: segment %d was left open by a gateway whose lease expired: sealing it",
                        segment)
            try:
                self.log.seal(segment)
            except (OSError, errors.StoreError) as exc:  # a drive or the database: nothing committed,
                # the segment stays open under its replicas and the next pass tries again
                log.error("cluster manager: sealing segment %d failed: %s", segment, exc)
                continue
            sealed.append(segment)
        return sealed


class ClusterThread(threading.Thread):
    def __init__(self, service: ClusterService, interval: float = HEARTBEAT_S) -> None:
        super().__init__(name="exastor-cluster", daemon=True)
        self.service = service
        self.interval = interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.service.pass_once()
            except errors.Unavailable as exc:  # the database is away: try again next beat
                log.warning("cluster heartbeat failed: %s", exc)
            except Exception:  # noqa: BLE001 - a bug must not end the heartbeats; it is logged in full
                log.exception("cluster heartbeat failed")
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()


def gateway_address(host: str, port: int) -> str:
    """What `exastor cluster status` and the manager's log show for this gateway: the address it
    listens on when that is one routable address (several gateways may share a host name - network
    namespaces, containers), else this host's name."""
    if host and host not in ("0.0.0.0", "::", "localhost") and not host.startswith("127.") and host != "::1":
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"{socket.gethostname()}:{port}"
