"""Shared fixtures: a real exastor server process on loopback, and real client libraries."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ACCESS_KEY = "EXTESTADMIN"
SECRET_KEY = "exastor-test-secret-key-0123456789"
ALT_ACCESS_KEY = "EXTESTALT"
ALT_SECRET_KEY = "exastor-alt-secret-key-0123456789"
ACCOUNT_NAME = "exastortest"
# Azurite's well-known development key: any base64 works; this one makes the tests readable.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


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


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30.0, log_path: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = log_path.read_text(errors="replace")[-4000:] if log_path and log_path.exists() else ""
            raise RuntimeError(f"server exited early with code {proc.returncode}\n{log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"server did not listen on {port} within {timeout}s")


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

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.blob_port}/{self.account_name}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={self.account_name};AccountKey={self.account_key};"
                f"BlobEndpoint={self.blob_endpoint};")

    def start(self) -> ServerProcess:
        env = dict(os.environ)
        env.pop("EXASTOR_CONFIG", None)
        env.update(self.env)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exastor.cli", "serve", "--data", str(self.data_dir),
             "--s3-port", str(self.s3_port), "--access-key", self.access_key,
             "--secret-key", self.secret_key, "--blob-port", str(self.blob_port),
             "--account-name", self.account_name, "--account-key", self.account_key, *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        wait_port(self.s3_port, self.proc, log_path=self.log_path)
        wait_port(self.blob_port, self.proc, log_path=self.log_path)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
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

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def exastor(*args: str, data_dir: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run an `exastor` subcommand against a data directory."""
    cmd = [sys.executable, "-m", "exastor.cli", *args]
    if "--data" not in args:
        cmd[4:4] = ["--data", str(data_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=300)


def start_server(tmp: Path, *extra: str, env: dict[str, str] | None = None) -> ServerProcess:
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    server = ServerProcess(data, free_port(), free_port(), tmp / "server.log", extra_args=list(extra),
                           env=env or {})
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
