"""Drive servers for tests: real `exastor drive-server` processes on loopback (drives/server.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import free_port
from exastor.datadir.opening import open_metadata
from exastor.drives.remote import RemoteDrive
from exastor.drives.wire import create_key, load_key
from exastor.services import fsck


def cluster_key(where: Path) -> Path:
    """A cluster key file in ``where`` (made once)."""
    path = where / "cluster.key"
    if not path.exists():
        create_key(path)
    return path


@dataclass
class DriveServerProcess:
    """One `exastor drive-server` serving ``drives`` (name -> directory) on a loopback port."""

    drives: dict[str, Path]
    key_file: Path
    log_path: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    tls: tuple[Path, Path, Path] | None = None  # (certificate, key, CA): serve HTTPS
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def url(self, name: str) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}/{name}"

    def start(self, timeout: float = 30.0) -> DriveServerProcess:
        env = {**os.environ, **self.env}
        args = [a for name, path in self.drives.items() for a in ("--drive", f"{name}={path}")]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "exastor.cli", "drive-server", *args, "--listen", f"{self.host}:{self.port}",
                 "--key-file", str(self.key_file),
                 *(["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])] if self.tls else [])],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        """Until a signed request is answered (bounded; fails at once if the process died)."""
        probe = RemoteDrive(self.url(next(iter(self.drives))), load_key(self.key_file),
                            ca_file=str(self.tls[2]) if self.tls else None)
        deadline = time.monotonic() + timeout
        try:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"drive server exited ({self.proc.returncode}):\n{self.log_text()[-3000:]}")
                if probe.probe():  # a signed request answered now (not the client's own probing pace)
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"drive server not ready after {timeout} s:\n{self.log_text()[-3000:]}")
                time.sleep(0.05)
        finally:
            probe.close()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
                raise

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def assert_fsck_clean(data: Path, meta_url: str, key_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks of `exastor fsck` (whose command opens SQLite stores only) over ``meta_url``'s
    metadata, reaching drive servers with the cluster key: clean, and something was checked."""
    monkeypatch.setenv("EXASTOR_CLUSTER_KEY_FILE", str(key_file))
    meta = open_metadata(data, meta_url)
    try:
        report = fsck.check(meta, Path())
    finally:
        meta.close()
    assert report.clean and report.chunks_checked > 0, report.to_json()
