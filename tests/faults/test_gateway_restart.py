"""A gateway can be started, restarted and killed at any time while another writes (issue 14: "a
gateway can be killed and started anywhere at any time").

Real gateways (`exastor serve --meta postgresql://...`, one worker each) share a throwaway
PostgreSQL and three drive directories; boto3 drives them.

- Gateway A takes a steady stream of PUTs. While it writes, gateway B starts on the same metadata
  and drives, and is restarted once. B's start-up recovery must leave every segment A holds a live
  lease on alone: A's PUTs keep being acknowledged, no lease row ever names a holder other than A's,
  A never finds a segment of its own taken over, and every acknowledged object reads back
  byte-identical through both gateways. With recovery stealing live leases on PostgreSQL (as it
  rightly does on SQLite: engine/segments.py ``recover_steals``), B seals A's open segment under it
  and this test fails.
- A is killed with -9 mid-load and restarted: its start-up recovery takes over the leases its
  previous run left (their holder ids begin with DATA/gateway.id) at once, long before they would
  expire, and seals those segments; every acknowledged PUT reads back and fsck over PostgreSQL is
  clean. Without the identity the segments would stay open, leased to a dead process, until the
  lease expired and the cluster manager's next orphan pass.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import ServerProcess, free_port, s3_client, wait_until
from drive_servers import assert_fsck_clean, cluster_key
from exastor.datadir.gateway_id import GATEWAY_ID_FILE
from exastor.meta.leases import gateway_prefix
from pgcluster import rows as pg_rows

BUCKET = "restart"
LOAD_BOUND_S = 60.0      # no writer runs longer than this, whatever happens
LOAD_BOUND_PUTS = 2_000
LONG_LEASE_MS = 300_000


class Writer(threading.Thread):
    """A steady stream of PUTs through one gateway (seeded bodies, 20-150 KB); ``acked`` holds every
    object the gateway acknowledged, ``failed`` every PUT that was not."""

    def __init__(self, server: ServerProcess, seed: int) -> None:
        super().__init__(name="put-load", daemon=True)
        self.s3 = s3_client(server, retry=False)
        self.rng = random.Random(seed)
        self.acked: dict[str, bytes] = {}
        self.failed: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + LOAD_BOUND_S
        for n in range(LOAD_BOUND_PUTS):
            if self.halt.is_set() or time.monotonic() > deadline:
                return
            key, body = f"load/{n:05d}", self.rng.randbytes(self.rng.randrange(20_000, 150_000))
            try:
                self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            except Exception as exc:  # noqa: BLE001 - recorded; the test decides what may fail
                self.failed.append(f"{key}: {exc!r}")
                continue
            self.acked[key] = body

    def until(self, count: int, what: str) -> None:
        wait_until(lambda: len(self.acked) >= count or not self.is_alive(), what, timeout=60)
        assert len(self.acked) >= count, f"the writer stopped: {self.failed[-3:]}"

    def stop(self) -> None:
        self.halt.set()
        self.join(60)
        assert not self.is_alive()


class LeaseWatcher(threading.Thread):
    """Every lease holder the database names while it runs (polled, bounded in time)."""

    def __init__(self, dsn: str) -> None:
        super().__init__(name="lease-watch", daemon=True)
        self.dsn = dsn
        self.holders: set[str] = set()
        self.halt = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + LOAD_BOUND_S + 60
        while not self.halt.is_set() and time.monotonic() < deadline:
            self.holders.update(h for (h,) in pg_rows(self.dsn, "SELECT holder FROM segment_leases"))
            self.halt.wait(0.02)

    def stop(self) -> None:
        self.halt.set()
        self.join(30)


def _gateways(tmp_path: Path, dsn: str, lease_ms: int = 30_000) -> tuple[ServerProcess, ServerProcess]:
    """A (whose --drive flags register the three drives) and B (which finds them in the metadata),
    one master key for both, 1 MiB segments so A rolls over and seals its own segments meanwhile."""
    env = {"EXASTOR_META_URL": dsn, "EXASTOR_SEGMENT_LEASE_MS": str(lease_ms), "EXASTOR_SEGMENT_SIZE": str(1 << 20), "EXASTOR_GC_INTERVAL": "0",
           "EXASTOR_REDUCE_INTERVAL": "0", "EXASTOR_REPAIR_INTERVAL": "3600", "EXASTOR_SCRUB_INTERVAL": "0"}
    drives = [x for i in range(3) for x in ("--drive", str(tmp_path / "drives" / f"d{i}"))]
    a = ServerProcess(tmp_path / "a", free_port(), free_port(), tmp_path / "a.log", env=env,
                      extra_args=["--workers", "1", *drives])
    b = ServerProcess(tmp_path / "b", free_port(), free_port(), tmp_path / "b.log", env=env,
                      extra_args=["--workers", "1"])
    for server in (a, b):
        server.data_dir.mkdir(mode=0o700)
    return a, b


def _identity(server: ServerProcess) -> str:
    return gateway_prefix((server.data_dir / GATEWAY_ID_FILE).read_text().strip())


def _reads_back(server: ServerProcess, acked: dict[str, bytes]) -> None:
    s3 = s3_client(server)
    for key, body in acked.items():
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body, (server.log_path.name, key)


def test_a_gateway_started_while_another_writes_leaves_its_segments_alone(tmp_path, pg_cluster, monkeypatch):
    dsn = pg_cluster.create_database("exastor_gw_start")
    a, b = _gateways(tmp_path, dsn)
    writer: Writer | None = None
    watcher = LeaseWatcher(dsn)
    try:
        a.start()
        s3_client(a).create_bucket(Bucket=BUCKET)
        writer = Writer(a, seed=14)
        writer.start()
        watcher.start()
        writer.until(10, "A to acknowledge its first PUTs")
        shutil.copy2(a.data_dir / "master.key", b.data_dir / "master.key")  # one store, one master key
        for start in range(2):  # B starts, and restarts once, while A writes
            b.start()
            writer.until(len(writer.acked) + 10, f"A to keep acknowledging PUTs after B's start #{start + 1}")
            if start == 0:
                b.stop()
        writer.stop()
        watcher.stop()

        assert writer.failed == [], writer.failed[:5]
        prefix = _identity(a)
        assert watcher.holders and all(h.startswith(prefix) for h in watcher.holders), \
            f"a lease held by someone other than A ({prefix}): {sorted(watcher.holders)}"
        assert "taken over by another process" not in a.log_text(), a.log_text()[-3000:]
        _reads_back(a, writer.acked)
        _reads_back(b, writer.acked)
        a.stop()
        b.stop()
        assert_fsck_clean(a.data_dir, dsn, cluster_key(tmp_path), monkeypatch)
    finally:
        if writer is not None and writer.is_alive():
            writer.stop()
        watcher.stop()
        a.stop()
        b.stop()
        pg_cluster.drop_database("exastor_gw_start")
    for server in (a, b):
        assert "Traceback" not in server.log_text(), server.log_text()[-5000:]


def test_a_gateway_killed_mid_load_takes_over_what_it_left_open_at_restart(tmp_path, pg_cluster, monkeypatch):
    dsn = pg_cluster.create_database("exastor_gw_kill")
    # Leases far longer than a restart takes on a loaded machine: sealed by the restart, not by expiry.
    a, _ = _gateways(tmp_path, dsn, lease_ms=LONG_LEASE_MS)
    writer: Writer | None = None
    try:
        a.start()
        prefix = _identity(a)
        s3_client(a).create_bucket(Bucket=BUCKET)
        writer = Writer(a, seed=41)
        writer.start()
        writer.until(25, "A to acknowledge PUTs")
        a.kill()  # -9, mid-PUT: the writer's PUT in flight fails (never acknowledged)
        writer.stop()
        killed_at = time.monotonic()
        orphans = pg_rows(dsn, "SELECT l.segment, l.holder FROM segment_leases l JOIN segments s ON s.id = l.segment "
                               "WHERE s.state = 'open' AND l.expires_ms > "
                               "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)")
        assert orphans and all(h.startswith(prefix) for _, h in orphans), orphans

        a.start()
        assert _identity(a) == prefix, "the identity survives the restart"
        restarted_s = time.monotonic() - killed_at
        states = dict(pg_rows(dsn, "SELECT id, state FROM segments WHERE id = ANY(%s)", ([s for s, _ in orphans],)))
        assert set(states.values()) <= {"sealed", "deleted"}, \
            f"left open {restarted_s:.1f} s after the kill, leases not expired yet: {states}"
        assert restarted_s < LONG_LEASE_MS / 1000, "the leases could have expired: the test proves nothing"
        assert "was left open by this gateway's previous run" in a.log_text()
        assert not pg_rows(dsn, "SELECT segment FROM segment_leases WHERE holder = ANY(%s)",
                           ([h for _, h in orphans],)), "no lease of the dead run is left"

        _reads_back(a, writer.acked)
        s3_client(a, retry=False).put_object(Bucket=BUCKET, Key="after", Body=b"after the restart")
        a.stop()
        assert_fsck_clean(a.data_dir, dsn, cluster_key(tmp_path), monkeypatch)
    finally:
        if writer is not None and writer.is_alive():
            writer.stop()
        a.stop()
        pg_cluster.drop_database("exastor_gw_kill")
    assert "Traceback" not in a.log_text(), a.log_text()[-5000:]


def test_a_copied_data_directory_is_refused_while_its_original_runs(tmp_path, pg_cluster):
    """`cp -a` of a running gateway's data directory copies DATA/gateway.id: a gateway started on the
    copy would take the original's live leases as "its previous run's" and cut its writes. It is
    refused, saying why; removing the copy's gateway.id (a new identity) lets it start beside A."""
    dsn = pg_cluster.create_database("exastor_gw_twin")
    a, b = _gateways(tmp_path, dsn)
    try:
        a.start()
        s3_client(a).create_bucket(Bucket=BUCKET)
        s3_client(a).put_object(Bucket=BUCKET, Key="before", Body=b"written by A")
        b.data_dir.rmdir()
        shutil.copytree(a.data_dir, b.data_dir, ignore=shutil.ignore_patterns("*.lock", "*.pid"))
        env = {**os.environ, **b.env}
        env.pop("EXASTOR_CONFIG", None)
        refused = subprocess.run(
            [sys.executable, "-m", "exastor.cli", "serve", "--data", str(b.data_dir), "--s3-port", str(b.s3_port),
             "--blob-port", str(b.blob_port), "--workers", "1"],
            capture_output=True, text=True, env=env, timeout=120)
        assert refused.returncode == 2, (refused.returncode, refused.stderr[-3000:])
        assert "another gateway is running with this data directory's identity" in refused.stderr, refused.stderr
        assert _identity(a).rstrip("/") in refused.stderr
        assert s3_client(a, retry=False).get_object(Bucket=BUCKET, Key="before")["Body"].read() == b"written by A"

        (b.data_dir / GATEWAY_ID_FILE).unlink()
        b.start()
        assert _identity(b) != _identity(a)
        assert s3_client(b).get_object(Bucket=BUCKET, Key="before")["Body"].read() == b"written by A"
    finally:
        a.stop()
        b.stop()
        pg_cluster.drop_database("exastor_gw_twin")
    assert "Traceback" not in a.log_text(), a.log_text()[-5000:]
