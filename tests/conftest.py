"""Shared fixtures: a real exastor server process on loopback, and real client libraries."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from pgcluster import PgCluster, pg_cluster, pg_database, pg_dsn  # noqa: F401 - fixtures: a throwaway PostgreSQL

T = TypeVar("T")

ACCESS_KEY = "EXTESTADMIN"
SECRET_KEY = "exastor-test-secret-key-0123456789"
ALT_ACCESS_KEY = "EXTESTALT"
ALT_SECRET_KEY = "exastor-alt-secret-key-0123456789"
ACCOUNT_NAME = "exastortest"
# Azurite's well-known development key: any base64 works; this one makes the tests readable.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


# EXASTOR_TEST_META=postgresql: every server the tests start keeps its metadata in PostgreSQL, a
# database of its own in the session's throwaway cluster (the API suites on PostgreSQL,
# docs/operations.md). Unset or "sqlite": the embedded SQLite, as a user's first start.
TEST_META = os.environ.get("EXASTOR_TEST_META", "sqlite").lower()
if TEST_META not in ("sqlite", "postgresql"):
    raise pytest.UsageError(f"EXASTOR_TEST_META={TEST_META!r}: expected sqlite or postgresql")
ON_POSTGRES = TEST_META == "postgresql"


def sqlite_only(reason: str):
    """Marks a test that looks at (or edits) the SQLite file behind a server: skipped, with the
    reason, when the suite runs on PostgreSQL. Keep these few; most tests go through a client."""
    return pytest.mark.skipif(ON_POSTGRES, reason=f"SQLite only: {reason}")


class _SuiteDatabases:
    """The databases of the servers under EXASTOR_TEST_META=postgresql: one per data directory (a
    restart keeps its database, as a gateway keeps its --meta), made at the server's first start."""

    def __init__(self) -> None:
        self.cluster: PgCluster | None = None
        self.by_data_dir: dict[Path, tuple[str, str]] = {}  # data dir -> (database name, URL)
        self.servers: dict[Path, list[ServerProcess]] = {}
        self._numbers = iter(range(1, 1_000_000))

    def url_for(self, server: ServerProcess) -> str:
        assert self.cluster is not None, "EXASTOR_TEST_META=postgresql but no cluster (conftest's fixture)"
        data_dir = server.data_dir.resolve()
        if server not in self.servers.setdefault(data_dir, []):
            self.servers[data_dir].append(server)
        if data_dir not in self.by_data_dir:
            name = f"exastor_suite_{os.getpid()}_{next(self._numbers)}"
            self.by_data_dir[data_dir] = name, self.cluster.create_database(name)
        return self.by_data_dir[data_dir][1]

    def url_of(self, data_dir: Path) -> str | None:
        known = self.by_data_dir.get(data_dir.resolve())
        return known[1] if known else None

    def drop_unused(self) -> None:
        """Drop the databases whose servers have all exited (a module's servers, at its end): the
        disk does not fill over a long run. One whose server still runs (the session's) stays."""
        assert self.cluster is not None
        for data_dir, (name, _) in list(self.by_data_dir.items()):
            if all(s.proc is None or s.proc.poll() is not None for s in self.servers.get(data_dir, [])):
                self.cluster.drop_database(name)
                del self.by_data_dir[data_dir]
                self.servers.pop(data_dir, None)

    def drop_all(self) -> None:
        assert self.cluster is not None
        for name, _ in self.by_data_dir.values():
            self.cluster.drop_database(name)  # WITH (FORCE): a leaked server's connections are cut
        self.by_data_dir.clear()
        self.servers.clear()


suite_databases = _SuiteDatabases()


@pytest.fixture(scope="session", autouse=True)
def _suite_meta_cluster(request: pytest.FixtureRequest):
    """Under EXASTOR_TEST_META=postgresql, the session's PostgreSQL cluster, set up before (and so torn
    down after) every server fixture."""
    if not ON_POSTGRES:
        yield
        return
    suite_databases.cluster = request.getfixturevalue("pg_cluster")
    try:
        yield
    finally:
        suite_databases.drop_all()
        suite_databases.cluster = None


@pytest.fixture(scope="module", autouse=True)
def _suite_meta_module():
    yield
    if ON_POSTGRES:
        suite_databases.drop_unused()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port *below* the kernel's ephemeral range.

    A port from bind(0) lies inside that range, so between this call and the server's bind any
    outgoing connection (a client of another test server) may take it as its local port, and the
    server then fails with "address in use". Ports below the range are never handed to connect()."""
    low, _ = _ephemeral_range()
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(max(1024, low - 20000), low)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)  # restarts reuse a server's ports: never give them to another server
        return port
    raise RuntimeError("no free loopback port below the ephemeral range")


def wait_released(data_dir: Path, ports: list[int], timeout: float = 30.0) -> None:
    """Until no process of an earlier server holds ``data_dir`` (its server lock) or listens on ``ports``.

    A server killed with -9 is not gone when its master has been reaped: a worker's thread still in
    the kernel keeps the listening socket (and the lock) open for a moment while its main thread is
    already a zombie. A restart in that moment would be refused, or its probe would reach the dying
    listener."""
    from exastor.datadir.lock import server_running

    deadline = time.monotonic() + timeout
    while True:
        busy = [p for p in ports if not _bindable(p)]
        if not busy and not server_running(data_dir):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{data_dir} still held or ports {busy} still listening after {timeout:.0f} s")
        time.sleep(0.05)


def put_bodies(ns, bodies: dict[str, bytes], bucket: str = "bkt", *, create: bool = True) -> None:
    """PUT ``bodies`` (key -> bytes) into ``bucket`` of an in-process namespace as the admin, creating
    the bucket first unless ``create`` is false."""
    import asyncio

    from exastor.namespace.operations import PutSpec, SystemGrant

    grant = SystemGrant("admin")

    async def main() -> None:
        if create:
            await ns.create_bucket(grant, bucket)
        for key, body in bodies.items():
            async def source(b: bytes = body):
                yield b

            await ns.put_object(grant, bucket, key, source(), PutSpec())

    asyncio.run(main())


def wait_until(predicate: Callable[[], T], what: str, timeout: float = 30.0, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy (returned), for at most ``timeout`` seconds:
    how tests wait for a state, never for a time."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(interval)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class ServerProcess:
    """A running `exastor serve` process and how to reach it."""

    data_dir: Path
    s3_port: int
    blob_port: int
    log_path: Path
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    alt_access_key: str = ALT_ACCESS_KEY
    alt_secret_key: str = ALT_SECRET_KEY
    account_name: str = ACCOUNT_NAME
    account_key: str = ACCOUNT_KEY
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    tls_ca: Path | None = None  # the CA to trust when the server speaks HTTPS

    @property
    def scheme(self) -> str:
        return "https" if self.tls_ca else "http"

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.s3_port}"

    @property
    def blob_endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.blob_port}/{self.account_name}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol={self.scheme};AccountName={self.account_name};"
                f"AccountKey={self.account_key};BlobEndpoint={self.blob_endpoint};")

    def start(self, timeout: float = 60.0, *, degraded: bool = False) -> ServerProcess:
        """Start `exastor serve` and return once both endpoints answer their readiness probe
        (``degraded``: or say that every worker serves but too few drives take writes, as a test
        that took a drive away on purpose expects)."""
        wait_released(self.data_dir, [self.s3_port, self.blob_port])
        env = dict(os.environ)
        env.pop("EXASTOR_CONFIG", None)
        env.pop("EXASTOR_META_URL", None)
        if ON_POSTGRES and "--meta" not in self.extra_args and "EXASTOR_META_URL" not in self.env:
            self.env["EXASTOR_META_URL"] = suite_databases.url_for(self)
        env.update(self.env)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exastor.cli", "serve", "--data", str(self.data_dir),
             "--s3-port", str(self.s3_port), "--access-key", self.access_key,
             "--secret-key", self.secret_key, "--blob-port", str(self.blob_port),
             "--account-name", self.account_name, "--account-key", self.account_key, *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.wait_ready(timeout, degraded=degraded)
        return self

    def wait_ready(self, timeout: float = 60.0, *, degraded: bool = False) -> None:
        from exastor.gateway.health import wait_ready

        assert self.proc is not None
        try:
            wait_ready([f"{self.scheme}://127.0.0.1:{self.s3_port}", f"{self.scheme}://127.0.0.1:{self.blob_port}"],
                       timeout=timeout, alive=lambda: self.proc.poll() is None,
                       ca=str(self.tls_ca) if self.tls_ca else None, degraded_ok=degraded)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc} (exit code {self.proc.poll()})\n{self.log_text()[-4000:]}") from exc

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group, then wait until every process of it let go of the data
        directory and the ports (so a restart or an offline fsck can follow at once)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=60)
        if self.proc and sig == signal.SIGKILL:
            # The workers die with the group, but not at the same instant as the master: until the last
            # is gone its inherited listening socket still accepts, and a restart's readiness check
            # would be answered by the dying server. Wait (bounded) until the group is empty.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    os.killpg(self.proc.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.02)
        wait_released(self.data_dir, [self.s3_port, self.blob_port])

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def exastor(*args: str, data_dir: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run an `exastor` subcommand against a data directory (under EXASTOR_TEST_META=postgresql, with
    EXASTOR_META_URL naming the database of the server on that directory, as an operator would set it)."""
    cmd = [sys.executable, "-m", "exastor.cli", *args]
    if "--data" not in args:
        cmd[4:4] = ["--data", str(data_dir)]
    env = dict(os.environ)
    env.pop("EXASTOR_META_URL", None)
    url = suite_databases.url_of(data_dir) if ON_POSTGRES else None
    if url and "--meta" not in args:
        env["EXASTOR_META_URL"] = url
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=300, env=env)


def meta_rows(server: ServerProcess, query: str, params: tuple = ()) -> list[tuple]:
    """What ``query`` (``?`` placeholders) returns on the metadata behind ``server``, on a connection of
    its own, SQLite or PostgreSQL alike: how tests check a figure against the rows themselves."""
    url = server.env.get("EXASTOR_META_URL")  # set by start() under EXASTOR_TEST_META=postgresql
    if "--meta" in server.extra_args:
        url = server.extra_args[server.extra_args.index("--meta") + 1]
    if url:
        from pgcluster import rows

        return rows(url, query.replace("?", "%s"), params)
    import sqlite3

    with sqlite3.connect(server.data_dir / "meta" / "exastor.sqlite") as con:
        return con.execute(query, params).fetchall()


def unseal_as_before_sealing(data: Path) -> Path:
    """Turn a stopped store's secrets back into what versions before sealed secrets wrote: the admin
    secret and the Blob account key in the clear in the database, and no key file. Returns the
    database's path."""
    import sqlite3

    db = data / "meta" / "exastor.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("UPDATE users SET secret_key = ?", (SECRET_KEY,))
        con.execute("UPDATE blob_settings SET value = ? WHERE name = 'account_key'", (ACCOUNT_KEY,))
    (data / "master.key").unlink()
    return db


def prepare_encryption(data: Path, want: bool | None = True) -> None:
    """What `exastor serve` does before its workers start, for a store opened in process: the master
    key, then the encrypt_at_rest decision and the first data key (meta/datakeys.py)."""
    from exastor.datadir import keys
    from exastor.datadir.opening import open_metadata
    from exastor.meta import datakeys

    data.mkdir(parents=True, exist_ok=True)
    meta = open_metadata(data)
    try:
        keys.ensure(data, meta)
        meta.runner.write_sync(lambda cur: datakeys.prepare(cur, meta.sealer, want))
    finally:
        meta.close()


def start_server(tmp: Path, *extra: str, env: dict[str, str] | None = None,
                 tls_ca: Path | None = None) -> ServerProcess:
    """A server on ``tmp/data``; ``tls_ca``: it speaks HTTPS under a certificate from this CA (for
    ``--tls self-signed``, ``tmp/data/tls/ca.pem``, written by the server as it starts)."""
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    server = ServerProcess(data, free_port(), free_port(), tmp / "server.log", extra_args=list(extra),
                           env=env or {}, tls_ca=tls_ca)
    server.start()
    return server


@pytest.fixture(scope="session")
def exastor_server(tmp_path_factory: pytest.TempPathFactory):
    """One server for the session, with an admin and a second user ('alt')."""
    tmp = tmp_path_factory.mktemp("exastor")
    server = start_server(tmp)
    exastor("user", "add", "alt", "--access-key", ALT_ACCESS_KEY, "--secret-key", ALT_SECRET_KEY,
            data_dir=server.data_dir)
    yield server
    server.stop()
    # The server must never have shown a traceback to a client; it logs them. Any logged
    # traceback means some request hit an unexpected path: fail loudly.
    assert "Traceback" not in server.log_text(), server.log_text()[-5000:]


def s3_client(server: ServerProcess, *, alt: bool = False, retry: bool = True, **config):
    """``retry=False``: the first answer is the one seen (a 503 is not hidden by the SDK's retry)."""
    import boto3
    from botocore.config import Config

    retries = {"max_attempts": 1} if retry else {"mode": "standard", "total_max_attempts": 1}
    return boto3.client(
        "s3", endpoint_url=server.endpoint, region_name="us-east-1",
        verify=str(server.tls_ca) if server.tls_ca else None,
        aws_access_key_id=server.alt_access_key if alt else server.access_key,
        aws_secret_access_key=server.alt_secret_key if alt else server.secret_key,
        config=Config(s3={"addressing_style": "path"}, retries=retries, **config))


@pytest.fixture(scope="session")
def s3(exastor_server):
    return s3_client(exastor_server)


@pytest.fixture(scope="session")
def s3_alt(exastor_server):
    return s3_client(exastor_server, alt=True)


_counter = iter(range(1, 1_000_000))


@pytest.fixture
def bucket(s3):
    """A fresh, empty bucket owned by the admin user."""
    name = f"test-{os.getpid()}-{next(_counter)}"
    s3.create_bucket(Bucket=name)
    return name


def signed_head(server: ServerProcess, method: str, path: str, length: int,
                headers: dict[str, str] | None = None) -> bytes:
    """The raw head of a SigV4-signed S3 request (UNSIGNED-PAYLOAD) with a body of ``length`` bytes,
    for tests that send the body themselves over a socket (slowly, partly, never)."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    class Unsigned(S3SigV4Auth):  # botocore signs payloads over plain http; this body comes later
        def _should_sha256_sign_payload(self, request: AWSRequest) -> bool:
            return False

    req = AWSRequest(method=method, url=f"http://127.0.0.1:{server.s3_port}{path}", headers=headers or {})
    Unsigned(Credentials(server.access_key, server.secret_key), "s3", "us-east-1").add_auth(req)
    lines = [f"{method} {path} HTTP/1.1", f"host: 127.0.0.1:{server.s3_port}", f"content-length: {length}"]
    lines += [f"{k}: {v}" for k, v in req.headers.items() if k.lower() not in ("host", "content-length")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket, timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response (status, lower-cased headers, body by content-length) from a raw socket."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            raise ConnectionError(f"connection closed after {data[:200]!r}")
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        body += piece
    return int(lines[0].split()[1]), headers, body[:length]
