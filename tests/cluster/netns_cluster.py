"""A many-host exastor cluster in network namespaces, and seeded fault scenarios against it (issue 14).

Hosts (namespaces on one bridge, tests/cluster/netns.py):

    1..7   `exastor drive-server`, one drive each (erasure 4+2: each host is one failure domain),
           behind a delay proxy on the host's address (tests/cluster/delay_proxy.py)
    8      PostgreSQL (tests/pgcluster.py's throwaway cluster, listening on the host's address)
    9, 10  gateways: `exastor serve --meta postgresql://...`, one worker each
    11     the client: boto3 load and checks (tests/cluster/netns_client.py), fsck

A scenario (``run_scenario``) draws a fault from a seeded RNG, starts PUT load through both gateways,
injects the fault, reads a sample of what was acknowledged before (reads must keep working with up
to m = 2 drive hosts down), heals, waits until a PUT is acknowledged again through each gateway
(bounded: a store that stalls after a heal is a finding, with diagnostics captured), then checks
through both gateways that every acknowledged object is byte-identical, every unacknowledged
attempt is absent or complete, every listed key is complete, and no drive is marked failed for a
partition. ``final_checks`` runs fsck over the PostgreSQL metadata with the gateways stopped.

Used by tests/cluster/test_netns_scenarios.py (a short CI slice) and tests/cluster/netns_long.py
(the long run). Everything it starts is stopped and every namespace removed in ``stop``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: pgcluster, when run as a script

from netns import Namespaces, run, stop  # noqa: E402

from conftest import wait_until  # noqa: E402
from exastor.drives.wire import create_key  # noqa: E402
from pgcluster import PgCluster, pg_bindir  # noqa: E402

CLIENT = HERE / "netns_client.py"
DELAY_PROXY = HERE / "delay_proxy.py"
PY = sys.executable
# A drive server listens on its host's loopback (DRIVE_BACKEND_PORT) behind a delay proxy on the
# host's address (DRIVE_PORT, delay 0 until a `delayed_link` fault sets one): latency without netem.
S3_PORT, DRIVE_PORT, DRIVE_BACKEND_PORT, PG_PORT = 9000, 9100, 9101, 5432
ACCESS_KEY, SECRET_KEY = "EXNETNSADMIN", "exastor-netns-secret-key-0123456789"
# Seven drive hosts for a 4+2 stripe: one more than a stripe spans, so a lost host's shards have a
# host to be rebuilt on (with exactly k+m hosts they would wait for its replacement).
DRIVE_HOSTS = (1, 2, 3, 4, 5, 6, 7)
PG_HOST, GATEWAY_HOSTS, CLIENT_HOST = 8, (9, 10), 11
EC = "4+2"
PARITY = 2
STALL_LIMIT_S = 90.0  # after a heal, a PUT must be acknowledged through each gateway within this

FAULTS = ("partition_drive_host", "partition_gateway_host", "kill_drive_server", "kill_gateway",
          "slow_link", "one_way_drop", "m_hosts_down", "partition_heal_under_load", "host_lost", "delayed_link")
# A lost host's copies must be rebuilt on the others within this, plus REPAIR_PER_COPY_S for each copy
# it held (the rebuild's time grows with the store: ~12 copies a second here, seed 17).
REPAIR_LIMIT_S, REPAIR_PER_COPY_S = 300.0, 0.25

# Short timeouts so a scenario takes seconds: a partitioned drive server costs one connect timeout,
# then its drives are down in that gateway until a probe is answered; leases and heartbeats short
# enough that a partition of a few seconds exercises fencing and the cluster manager. Garbage
# collection and repair run in both gateways (repair every 5 s); a drive is rebuilt elsewhere after
# 20 s offline - longer than any partition or restart the other faults hold, so only a lost host's.
SERVER_ENV = {
    "EXASTOR_SEGMENT_SIZE": str(2 << 20), "EXASTOR_SEGMENT_LEASE_MS": "3000", "EXASTOR_HEARTBEAT_INTERVAL": "0.5",
    "EXASTOR_DOWN_AFTER": "3", "EXASTOR_ORPHAN_INTERVAL": "1", "EXASTOR_GC_INTERVAL": "60",
    "EXASTOR_REPAIR_INTERVAL": "5", "EXASTOR_OFFLINE_REPAIR_AFTER": "20",
    "EXASTOR_REDUCE_INTERVAL": "0", "EXASTOR_DRIVE_CONNECT_TIMEOUT": "1", "EXASTOR_DRIVE_TIMEOUT": "4",
    "EXASTOR_DRIVE_SYNC_TIMEOUT": "20",
}


class NamespacePg(PgCluster):
    """The throwaway PostgreSQL of tests/pgcluster.py, run inside a host namespace and listening on
    that host's address (trust for the test subnet only; the subnet exists only in the namespaces)."""

    namespace: str = ""
    address: str = ""
    subnet: str = ""

    def _as_owner(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *super()._as_owner(*cmd)]

    def start(self) -> None:
        import pwd

        self.data.mkdir()
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for p in (self.root, self.data, self.socket_dir):
                os.chown(p, owner.pw_uid, owner.pw_gid)
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user, "-A", "trust",
                  "-E", "UTF8", "--no-sync", "--no-instructions")
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {self.subnet}.0/24 trust\n")
        options = (f"-c listen_addresses='{self.address}' -p {PG_PORT} -k {self.socket_dir} "
                   "-c max_connections=200 -c shared_buffers=64MB -c log_min_messages=warning")
        self._run(str(self.bindir / "pg_ctl"), "start", "-D", str(self.data), "-w", "-t", "60",
                  "-l", str(self.root / "server.log"), "-o", options, timeout=90)

    def dsn(self, dbname: str = "postgres") -> str:  # from the root namespace: the Unix socket
        return f"postgresql:///{dbname}?host={self.socket_dir}&port={PG_PORT}&user={self.user}"


@dataclass
class Cluster:
    root: Path
    net: Namespaces = field(default_factory=lambda: Namespaces(CLIENT_HOST))
    pg: NamespacePg | None = None
    drive_servers: dict[int, subprocess.Popen] = field(default_factory=dict)
    proxies: dict[int, subprocess.Popen] = field(default_factory=dict)
    gateways: dict[int, subprocess.Popen] = field(default_factory=dict)
    key: Path = Path()
    restarts: int = 0
    # Each drive host's current drive (a lost host comes back with a new, empty one), and the URLs of
    # drives lost for good: offline until `exastor drive remove` retires them (final_checks).
    drive_names: dict[int, str] = field(default_factory=lambda: {h: f"d{h}" for h in DRIVE_HOSTS})
    retired: list[str] = field(default_factory=list)

    # --- addresses ---------------------------------------------------------------------------------
    @property
    def meta_url(self) -> str:
        return f"postgresql://exastor@{self.net.address(PG_HOST)}:{PG_PORT}/exastor"

    def endpoint(self, host: int) -> str:
        return f"http://{self.net.address(host)}:{S3_PORT}"

    def drive_url(self, host: int) -> str:
        return f"http://{self.net.address(host)}:{DRIVE_PORT}/{self.drive_names[host]}"

    def drive_dir(self, host: int) -> Path:
        return self.root / f"host{host}" / self.drive_names[host]

    def env(self) -> dict[str, str]:
        env = {**os.environ, **SERVER_ENV, "EXASTOR_CLUSTER_KEY_FILE": str(self.key)}
        env.pop("EXASTOR_CONFIG", None)
        env.pop("EXASTOR_META_URL", None)
        return env

    # --- processes ---------------------------------------------------------------------------------
    def client(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        return run(self.net.cmd(CLIENT_HOST, PY, str(CLIENT), *args), timeout, self.env())

    def client_json(self, *args: str, timeout: float = 240) -> tuple[int, dict]:
        out = self.client(*args, timeout=timeout)
        try:
            return out.returncode, json.loads(out.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return out.returncode if out.returncode else 1, {"stdout": out.stdout[-2000:], "stderr": out.stderr[-2000:]}

    def client_json_many(self, calls: dict[int, list[str]], timeout: float = 600) -> dict[int, tuple[int, dict]]:
        """Several client commands at once (one per gateway, say), each bounded by ``timeout``."""
        procs = {k: subprocess.Popen(self.net.cmd(CLIENT_HOST, PY, str(CLIENT), *argv), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=self.env(), start_new_session=True)
                 for k, argv in calls.items()}
        results: dict[int, tuple[int, dict]] = {}
        deadline = time.monotonic() + timeout
        for k, proc in procs.items():
            try:
                out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stop(proc, signal.SIGKILL)
                results[k] = (124, {"timeout": timeout})
                continue
            try:
                results[k] = (proc.returncode, json.loads(out.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                results[k] = (proc.returncode or 1, {"stdout": out[-2000:], "stderr": err[-2000:]})
        return results

    def delay_control(self, host: int) -> Path:
        return self.root / f"host{host}" / "delay_ms"

    def set_delay(self, host: int, ms: float) -> None:
        """One-way latency, each direction, on every connection to ``host``'s drive server."""
        self.delay_control(host).write_text(f"{ms:g}\n")

    def start_proxy(self, host: int) -> None:
        self.delay_control(host).parent.mkdir(parents=True, exist_ok=True)
        self.set_delay(host, 0)
        with open(self.root / f"delay-proxy-{host}.log", "ab") as log:
            self.proxies[host] = subprocess.Popen(
                self.net.cmd(host, PY, str(DELAY_PROXY), f"{self.net.address(host)}:{DRIVE_PORT}",
                             f"127.0.0.1:{DRIVE_BACKEND_PORT}", str(self.delay_control(host))),
                stdout=log, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True)

    def start_drive_server(self, host: int) -> None:
        with open(self.root / f"drive-server-{host}.log", "ab") as log:
            self.drive_servers[host] = subprocess.Popen(
                self.net.cmd(host, PY, "-m", "exastor.cli", "drive-server", "--drive",
                             f"{self.drive_names[host]}={self.drive_dir(host)}",
                             "--listen", f"127.0.0.1:{DRIVE_BACKEND_PORT}", "--key-file", str(self.key)),
                stdout=log, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True)

    def wait_drive_server(self, host: int, timeout: float = 60) -> bool:
        return self.client("ready-drive", self.drive_url(host), str(self.key), str(timeout),
                           timeout=timeout + 30).returncode == 0

    def gateway_data(self, host: int) -> Path:
        return self.root / f"gateway{host}"

    def start_gateway(self, host: int, first: bool = False) -> None:
        data = self.gateway_data(host)
        extra = [a for h in DRIVE_HOSTS for a in ("--drive", self.drive_url(h))] + ["--ec", EC] if first else []
        with open(self.root / f"gateway-{host}.log", "ab") as log:
            self.gateways[host] = subprocess.Popen(
                self.net.cmd(host, PY, "-X", "faulthandler", "-m", "exastor.cli", "serve", "--data", str(data),
                             "--meta", self.meta_url, "--host", self.net.address(host), "--s3-port", str(S3_PORT),
                             "--blob-port", "0", "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY,
                             "--workers", "1", *extra),
                stdout=log, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True)

    def wait_gateway(self, host: int, timeout: float = 90) -> bool:
        return self.client("ready-gateway", self.endpoint(host), str(timeout), timeout=timeout + 30).returncode == 0

    def start(self) -> None:
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (initdb/pg_ctl)")
        self.root.mkdir(parents=True, exist_ok=True)
        self.key = self.root / "cluster.key"
        create_key(self.key)
        self.net.up()
        pg_root = Path(tempfile_dir())
        self.pg = NamespacePg(bindir, pg_root)
        self.pg.namespace, self.pg.address, self.pg.subnet = (self.net.hosts[PG_HOST - 1], self.net.address(PG_HOST),
                                                              self.net.subnet)
        self.pg.start()
        self.pg.sql("CREATE DATABASE exastor TEMPLATE template0 ENCODING 'UTF8'")
        for h in DRIVE_HOSTS:
            self.start_proxy(h)
            self.start_drive_server(h)
        for h in DRIVE_HOSTS:
            if not self.wait_drive_server(h):
                raise RuntimeError(f"drive server {h} not ready:\n{self.log(f'drive-server-{h}')}")
        first, second = GATEWAY_HOSTS
        for h in GATEWAY_HOSTS:
            self.gateway_data(h).mkdir(mode=0o700)
            shutil.copy2(self.key, self.gateway_data(h) / "cluster.key")
        self.start_gateway(first, first=True)
        if not self.wait_gateway(first):
            raise RuntimeError(f"gateway {first} not ready:\n{self.log(f'gateway-{first}')}")
        shutil.copy2(self.gateway_data(first) / "master.key", self.gateway_data(second) / "master.key")
        self.start_gateway(second)
        if not self.wait_gateway(second):
            raise RuntimeError(f"gateway {second} not ready:\n{self.log(f'gateway-{second}')}")

    def stop(self) -> None:
        for proc in [*self.gateways.values(), *self.drive_servers.values(), *self.proxies.values()]:
            stop(proc)
        if self.pg is not None:
            self.pg.stop()
        self.net.down()

    def log(self, name: str, tail: int = 4000) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    # --- metadata state (read over PostgreSQL's Unix socket from the root namespace) ---------------
    def sql(self, query: str) -> list[tuple]:
        import psycopg

        assert self.pg is not None
        with psycopg.connect(self.pg.dsn("exastor"), autocommit=True, connect_timeout=10) as con:
            return con.execute(query).fetchall()  # type: ignore[arg-type]

    def drive_states(self) -> dict[str, str]:
        """Every drive in service (not one retired after its host was lost) and its state."""
        return {str(path): str(state) for path, state in self.sql("SELECT path, state FROM drives")
                if str(path) not in self.retired}

    def drive_id(self, url: str) -> int:
        return int(self.sql(f"SELECT id FROM drives WHERE path = '{url}'")[0][0])

    def copies_on(self, drive: int) -> int:
        """Shards and replicas of live segments the metadata still places on ``drive``."""
        return int(self.sql(
            f"SELECT (SELECT COUNT(*) FROM shards sh JOIN segments s ON s.id = sh.segment "
            f"WHERE sh.drive = {drive} AND s.state != 'deleted') + (SELECT COUNT(*) FROM replicas r "
            f"JOIN segments s ON s.id = r.segment WHERE r.drive = {drive} AND s.state != 'deleted')")[0][0])

    def exastor(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """An `exastor` command on the client host, over the metadata and the first gateway's --data."""
        return run(self.net.cmd(CLIENT_HOST, PY, "-m", "exastor.cli", *args, "--meta", self.meta_url, "--data",
                                str(self.gateway_data(GATEWAY_HOSTS[0]))), timeout, self.env())


def tempfile_dir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="expgns-", dir="/tmp")  # short: a Unix socket path is ~107 bytes at most


# --- scenarios -------------------------------------------------------------------------------------

@dataclass
class Fault:
    kind: str
    targets: list[int]
    hold_s: float
    detail: str = ""


def draw_fault(rng: random.Random) -> Fault:
    kind = rng.choice(FAULTS)
    hold = round(rng.uniform(3.0, 7.0), 1)
    if kind in ("partition_drive_host", "kill_drive_server", "slow_link", "partition_heal_under_load", "host_lost"):
        return Fault(kind, [rng.choice(DRIVE_HOSTS)], hold)
    if kind == "delayed_link":
        return Fault(kind, [rng.choice(DRIVE_HOSTS)], hold, f"{rng.choice((20, 100, 400, 1500))} ms")
    if kind in ("partition_gateway_host", "kill_gateway"):
        return Fault(kind, [rng.choice(GATEWAY_HOSTS)], hold)
    if kind == "one_way_drop":
        return Fault(kind, [rng.choice(DRIVE_HOSTS), rng.choice(GATEWAY_HOSTS)], hold,
                     rng.choice(["outgoing", "incoming"]))
    return Fault(kind, sorted(rng.sample(DRIVE_HOSTS, PARITY)), hold, rng.choice(["partition", "kill"]))


def _inject(c: Cluster, f: Fault) -> None:
    if f.kind in ("partition_drive_host", "partition_gateway_host", "partition_heal_under_load"):
        c.net.partition(f.targets[0])
    elif f.kind == "kill_drive_server":
        stop(c.drive_servers[f.targets[0]], signal.SIGKILL)
    elif f.kind == "host_lost":  # the host dies with its disk: its drive will not come back
        host = f.targets[0]
        f.detail = c.drive_url(host)
        stop(c.drive_servers[host], signal.SIGKILL)
        shutil.rmtree(c.drive_dir(host))
    elif f.kind == "kill_gateway":
        stop(c.gateways[f.targets[0]], signal.SIGKILL)
    elif f.kind == "slow_link":
        c.net.limit_bandwidth(f.targets[0], "20mbit")
    elif f.kind == "delayed_link":
        c.set_delay(f.targets[0], float(f.detail.split()[0]))
    elif f.kind == "one_way_drop":
        drive_host, gateway = f.targets
        how = (c.net.drop_outgoing(drive_host, gateway) if f.detail == "outgoing"
               else c.net.drop_incoming(drive_host, gateway))
        f.detail += f" ({how})"
    elif f.kind == "m_hosts_down":
        for h in f.targets:
            if f.detail == "partition":
                c.net.partition(h)
            else:
                stop(c.drive_servers[h], signal.SIGKILL)


def _heal(c: Cluster, f: Fault) -> None:
    if f.kind in ("partition_drive_host", "partition_gateway_host", "partition_heal_under_load"):
        c.net.heal(f.targets[0])
    elif f.kind == "kill_drive_server":
        c.start_drive_server(f.targets[0])
    elif f.kind == "host_lost":  # the host is rebuilt with a new, empty disk, which the operator adds
        host = f.targets[0]
        c.retired.append(c.drive_url(host))
        c.drive_names[host] = f"d{host}n{len(c.retired)}"
        c.start_drive_server(host)
    elif f.kind == "kill_gateway":
        c.start_gateway(f.targets[0])
    elif f.kind == "slow_link":
        c.net.unlimit_bandwidth(f.targets[0])
    elif f.kind == "delayed_link":
        c.set_delay(f.targets[0], 0)
    elif f.kind == "one_way_drop":
        c.net.undrop(*f.targets)
    elif f.kind == "m_hosts_down":
        for h in f.targets:
            if f.detail == "partition":
                c.net.heal(h)
            else:
                c.start_drive_server(h)


def _gateways_reading(f: Fault) -> list[int]:
    """The gateways a client may expect answers from during the fault."""
    if f.kind in ("partition_gateway_host", "kill_gateway"):
        return [g for g in GATEWAY_HOSTS if g != f.targets[0]]
    return list(GATEWAY_HOSTS)


def run_scenario(c: Cluster, index: int, seed: int, ledger_dir: Path, kind: str | None = None) -> dict[str, Any]:
    """One seeded scenario (``kind``: this fault, its targets still drawn); returns its record (``ok``
    false on any broken invariant)."""
    rng = random.Random(seed * 100_003 + index)
    f = draw_fault(rng)
    while kind is not None and f.kind != kind:  # the same RNG stream until the asked kind comes up
        f = draw_fault(rng)
    started = time.monotonic()
    record: dict[str, Any] = {"index": index, "fault": f.kind, "targets": f.targets, "hold_s": f.hold_s}
    problems: list[str] = []
    older = sorted(str(p) for p in ledger_dir.glob("*.jsonl"))
    ledgers = {g: ledger_dir / f"s{index:04d}-g{g}.jsonl" for g in GATEWAY_HOSTS}
    prefix = f"s{index:04d}/"
    load_s = f.hold_s + 4.0
    loads = {g: subprocess.Popen(
        c.net.cmd(CLIENT_HOST, PY, str(CLIENT), "load", c.endpoint(g), str(ledgers[g]), f"{prefix}g{g}-",
                  str(load_s), str(rng.randrange(1 << 30))),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=c.env(), start_new_session=True)
        for g in GATEWAY_HOSTS}
    try:
        # Inject once the load is flowing (each loader has written its first attempt), bounded.
        with contextlib.suppress(AssertionError):  # no load after 30 s: inject anyway, the checks will say
            wait_until(lambda: all(p.exists() and p.stat().st_size for p in ledgers.values()),
                       "every loader's first attempt", timeout=30, interval=0.1)
        _inject(c, f)
        record["detail"] = f.detail
        fault_at = time.monotonic()
        # Reads during the fault: a sample of what was acknowledged before, through each gateway
        # that is not itself the fault. At most m drive hosts are ever down, so these must succeed.
        reads = []
        if older:
            sampled = c.client_json_many({g: ["read", c.endpoint(g), "12", str(rng.randrange(1 << 30)), *older]
                                          for g in _gateways_reading(f)}, timeout=240)
            for g, (rc, out) in sampled.items():
                reads.append({"gateway": g, **out})
                if rc != 0:
                    problems.append(f"reads through gateway {g} failed during the fault: {out}")
        record["reads_during_fault"] = reads
        remaining = f.hold_s - (time.monotonic() - fault_at)
        if remaining > 0:
            time.sleep(remaining)  # the fault's duration itself (the loaders keep writing meanwhile)
        if f.kind == "host_lost":
            record["repair"] = _wait_for_repair(c, c.drive_id(f.detail), problems)
    finally:
        _heal(c, f)
    record["load"] = {}
    for g, proc in loads.items():
        try:
            out, err = proc.communicate(timeout=load_s + 120)
            record["load"][g] = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"stderr": err[-500:]}
        except subprocess.TimeoutExpired:
            stop(proc, signal.SIGKILL)
            problems.append(f"the loader through gateway {g} did not finish")
    # Recovery: the healed processes answer, then each gateway acknowledges a PUT again (bounded).
    if f.kind in ("kill_drive_server", "m_hosts_down", "partition_drive_host", "partition_heal_under_load",
                  "host_lost"):
        for h in f.targets:
            if not c.wait_drive_server(h, 60):
                problems.append(f"drive server {h} did not answer again within 60 s")
    if f.kind == "host_lost":  # the operator adds the rebuilt host's new disk (beside the running gateways)
        added = c.exastor("drive", "add", c.drive_url(f.targets[0]), "--no-rebalance", timeout=300)
        record["drive_added"] = {"url": c.drive_url(f.targets[0]), "rc": added.returncode}
        if added.returncode != 0:
            problems.append(f"exastor drive add {c.drive_url(f.targets[0])} failed: {added.stderr[-1500:]}")
    if f.kind in ("kill_gateway", "partition_gateway_host"):
        if not c.wait_gateway(f.targets[0], 90):
            problems.append(f"gateway {f.targets[0]} did not become ready again within 90 s")
    # Then each gateway must acknowledge a PUT again within STALL_LIMIT_S (both probed at once).
    healed_at = time.monotonic()
    after: dict[int, Any] = {}
    pending = list(GATEWAY_HOSTS)
    for attempt in range(60):
        if not pending or time.monotonic() - healed_at > STALL_LIMIT_S:
            break
        probes = c.client_json_many({g: ["load", c.endpoint(g), str(ledger_dir / f"s{index:04d}-after-g{g}.jsonl"),
                                         f"{prefix}after{attempt}-g{g}-", "2", str(rng.randrange(1 << 30))]
                                     for g in pending}, timeout=STALL_LIMIT_S + 60)
        for g, (_rc, out) in probes.items():
            if out.get("acknowledged"):
                after[g] = {"acknowledged": out["acknowledged"], "attempts": attempt + 1,
                            "first_ack_after_heal_s": round(time.monotonic() - healed_at, 2),
                            "first_ack_in_probe_s": out.get("first_ack_s"), "max_put_s": out.get("max_put_s")}
                pending.remove(g)
    for g in pending:
        after[g] = {"acknowledged": 0}
        problems.append(f"STALL: no PUT acknowledged through gateway {g} within {STALL_LIMIT_S} s after the heal")
    record["after_heal"] = after
    # Every attempt of this scenario, through both gateways; a sample of the older ledgers (all of
    # them are checked through both gateways at the end, final_checks).
    mine = sorted(str(p) for p in ledger_dir.glob(f"s{index:04d}-*.jsonl"))
    sample_older = rng.sample(older, min(4, len(older)))
    checks = c.client_json_many({g: ["check", c.endpoint(g), prefix, *mine, *sample_older] for g in GATEWAY_HOSTS})
    record["check"] = {}
    for g, (rc, out) in checks.items():
        record["check"][g] = {k: (v if not isinstance(v, list) else v[:5]) for k, v in out.items()}
        if rc != 0:
            problems.append(f"check through gateway {g}: {json.dumps(out)[:1500]}")
    # A partition is unavailability, never failure: no drive is 'failed' and all come back active.
    states: dict[str, str] = {}

    def all_active() -> bool:
        states.update(c.drive_states())
        return set(states.values()) == {"active"}

    with contextlib.suppress(AssertionError):  # not all active after 60 s: recorded as a problem below
        wait_until(all_active, "every drive active after the heal", timeout=60, interval=0.5)
    record["drive_states"] = states
    if "failed" in states.values() or set(states.values()) != {"active"}:
        problems.append(f"drives not all active 60 s after the heal: {states}")
    for role, procs, start, wait in (("gateway", c.gateways, c.start_gateway, c.wait_gateway),
                                     ("drive server", c.drive_servers, c.start_drive_server, c.wait_drive_server)):
        for host, proc in list(procs.items()):
            if proc.poll() is not None:
                problems.append(f"{role} {host} exited ({proc.returncode})")
                start(host)
                c.restarts += 1
                wait(host)
    if any(p.startswith("STALL") for p in problems):
        record["diagnostics"] = str(capture_diagnostics(c, ledger_dir.parent / f"stall-s{index:04d}"))
    record["problems"] = problems
    record["ok"] = not problems
    record["seconds"] = round(time.monotonic() - started, 1)
    return record


def _wait_for_repair(c: Cluster, drive: int, problems: list[str]) -> dict[str, Any]:
    """A lost host's drive: wait (bounded) until no live segment has a shard or replica on it - the
    cluster manager marked it offline, and after the offline grace the gateways' repairers rebuilt
    its shards on the other hosts (and sealed what it held open)."""
    began = time.monotonic()
    at_fault = c.copies_on(drive)
    limit = REPAIR_LIMIT_S + REPAIR_PER_COPY_S * at_fault
    with contextlib.suppress(AssertionError):  # not within the limit: reported below
        wait_until(lambda: c.copies_on(drive) == 0, "the lost drive's copies rebuilt elsewhere",
                   timeout=limit, interval=1.0)
    left = c.copies_on(drive)
    if left:
        problems.append(f"the lost drive {drive}: {left} of {at_fault} copies not rebuilt within {limit:.0f} s")
    return {"drive": drive, "copies_at_fault": at_fault, "copies_left": left,
            "rebuilt_within_s": round(time.monotonic() - began, 1)}


def capture_diagnostics(c: Cluster, where: Path) -> Path:
    """What a stalled store was waiting on: each gateway's Python stacks (py-spy where installed),
    its log, and the drives, members, leases and open segments in PostgreSQL."""
    where.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    for g, proc in c.gateways.items():
        (where / f"gateway-{g}.log").write_text(c.log(f"gateway-{g}", 200_000))
        if Path(spy).exists() and proc.poll() is None:
            pids = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True, timeout=10).stdout
            for pid in pids.split():
                dump = subprocess.run([spy, "dump", "--pid", pid], capture_output=True, text=True, timeout=60)
                (where / f"gateway-{g}-pid{pid}.stacks").write_text(dump.stdout + dump.stderr)
    tables = {}
    for name, query in (("drives", "SELECT * FROM drives"), ("members", "SELECT * FROM members"),
                        ("open_segments", "SELECT * FROM segments WHERE state = 'open'"),
                        ("leases", "SELECT * FROM segment_leases")):
        try:
            tables[name] = [list(map(str, row)) for row in c.sql(query)]
        except Exception as exc:  # noqa: BLE001 - a table this version lacks is reported, not fatal
            tables[name] = [f"{type(exc).__name__}: {exc}"]
    (where / "metadata.json").write_text(json.dumps(tables, indent=1))
    return where


def fsck_round(c: Cluster) -> dict[str, Any]:
    """fsck between scenarios: both gateways stopped (SIGTERM: a drained, clean stop), fsck over the
    PostgreSQL metadata, the gateways started again and ready. Returns fsck's summary; ``ok`` false
    when it found a problem or a gateway did not come back."""
    for proc in c.gateways.values():
        stop(proc)
    rc, out = c.client_json("fsck", str(c.gateway_data(GATEWAY_HOSTS[0])), c.meta_url, str(c.key), timeout=1800)
    for g in GATEWAY_HOSTS:
        c.start_gateway(g)
    back = all(c.wait_gateway(g) for g in GATEWAY_HOSTS)
    return {"rc": rc, "gateways_back": back, "ok": rc == 0 and back,
            **{k: out.get(k) for k in ("clean", "chunks_checked", "objects_checked") if k in out},
            "report": out if rc else None}


def final_checks(c: Cluster, ledger_dir: Path) -> dict[str, Any]:
    """Every ledger through both gateways, then fsck over the metadata with the gateways stopped."""
    result: dict[str, Any] = {}
    every = sorted(str(p) for p in ledger_dir.glob("*.jsonl"))
    for g in GATEWAY_HOSTS:
        rc, out = c.client_json("check", c.endpoint(g), "", *every, timeout=1800)
        result[f"check_gateway_{g}"] = {k: (v if not isinstance(v, list) else v[:20]) for k, v in out.items()}
        result[f"check_gateway_{g}"]["rc"] = rc
    for proc in c.gateways.values():
        stop(proc)
    # Drives lost with their host leave the store for good (refused until no gateway has heartbeated
    # for the down timeout: a few seconds after the stop).
    result["retired"] = {}
    for url in c.retired:
        answers: list[subprocess.CompletedProcess] = []

        def removed(url: str = url, answers: list = answers) -> bool:
            answers.append(c.exastor("drive", "remove", url, timeout=600))
            return answers[-1].returncode == 0

        with contextlib.suppress(AssertionError):
            wait_until(removed, f"exastor drive remove {url}", timeout=120, interval=1.0)
        result["retired"][url] = {"rc": answers[-1].returncode if answers else None, "tries": len(answers),
                                  "stderr": answers[-1].stderr[-500:] if answers else ""}
        if not answers or answers[-1].returncode != 0:  # which rows kept it: their segments' state and layout
            result["retired"][url]["rows_left"] = [list(map(str, r)) for r in c.sql(
                "SELECT s.segment, s.idx, s.state, s.gen, g.state, g.size, l.k, l.m, l.shard_len, "
                "(SELECT COUNT(*) FROM chunks c WHERE c.segment = s.segment) FROM shards s "
                "JOIN drives d ON d.id = s.drive LEFT JOIN segments g ON g.id = s.segment "
                f"LEFT JOIN segment_layout l ON l.segment = s.segment WHERE d.path = '{url}' LIMIT 20")]
    rc, out = c.client_json("fsck", str(c.gateway_data(GATEWAY_HOSTS[0])), c.meta_url, str(c.key), timeout=1800)
    result["fsck"] = {"rc": rc, **{k: out.get(k) for k in ("clean", "chunks_checked", "objects_checked") if k in out},
                      "report": out if rc else None}
    result["ok"] = (rc == 0 and all(result[f"check_gateway_{g}"]["rc"] == 0 for g in GATEWAY_HOSTS)
                    and all(r["rc"] == 0 for r in result["retired"].values()))
    return result
