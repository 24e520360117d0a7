"""A throwaway PostgreSQL cluster for the tests: initdb + pg_ctl on a temporary directory.

The cluster listens on a Unix socket in a temporary directory only (no TCP), runs as the
``postgres`` user when the tests run as root (initdb refuses root), and is stopped and removed at
the end of the session. Readiness is ``pg_ctl start -w`` (it polls the server) bounded by a timeout,
then ``pg_isready``; nothing waits on a sleep.

Without PostgreSQL installed the tests that need it are skipped with a message, except under CI
(``CI=true``) or ``EXASTOR_REQUIRE_PG=1``, where a missing PostgreSQL is a failure: `.ci/run` installs it.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT_S = 60


def pg_bindir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, else Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    found = shutil.which("initdb"), shutil.which("pg_ctl")
    if all(found):
        return Path(os.path.realpath(found[0])).parent  # type: ignore[arg-type]
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


def _required() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("EXASTOR_REQUIRE_PG") == "1"


@dataclass
class PgCluster:
    """A running cluster: its data directory, its socket directory and a superuser name."""

    bindir: Path
    root: Path
    user: str = "exastor"
    extra_options: str = ""  # more ``-c name=value`` server settings (benchmarks: pg_stat_statements)
    max_connections: int = 200

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql:///{dbname}?host={self.socket_dir}&user={self.user}"

    def _as_owner(self, *cmd: str) -> list[str]:
        if os.geteuid() != 0:
            return list(cmd)
        return ["runuser", "-u", "postgres", "--", *cmd]

    def _run(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run(self._as_owner(*cmd), capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def start(self) -> None:
        self._make_dirs(self.data)
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user, "-A", "trust",
                  "-E", "UTF8", "--no-sync", "--no-instructions")
        self._start_server()

    def start_standby_of(self, primary: PgCluster) -> None:
        """A streaming hot standby of ``primary`` (pg_basebackup -R over its socket): read-only until
        ``promote()``."""
        self._make_dirs()
        self._run(str(self.bindir / "pg_basebackup"), "-h", str(primary.socket_dir), "-U", primary.user,
                  "-D", str(self.data), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync")
        self._start_server()

    def promote(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "promote", "-D", str(self.data), "-w", "-t", str(START_TIMEOUT_S),
                  timeout=START_TIMEOUT_S + 30)

    def crash(self) -> None:
        """Stop at once, as a dying server would: no checkpoint, every connection cut."""
        self._run(str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate", "-w", "-t",
                  str(START_TIMEOUT_S), timeout=START_TIMEOUT_S + 30)

    def _make_dirs(self, *more: Path) -> None:
        for p in (*more, self.socket_dir):
            p.mkdir()
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for p in (self.root, *more, self.socket_dir):
                os.chown(p, owner.pw_uid, owner.pw_gid)

    def _start_server(self) -> None:
        options = (f"-c listen_addresses='' -k {self.socket_dir} -c max_connections={self.max_connections} "
                   "-c shared_buffers=64MB -c log_min_messages=warning " + self.extra_options)
        self._run(str(self.bindir / "pg_ctl"), "start", "-D", str(self.data), "-w", "-t", str(START_TIMEOUT_S),
                  "-l", str(self.root / "server.log"), "-o", options, timeout=START_TIMEOUT_S + 30)
        self._run(str(self.bindir / "pg_isready"), "-h", str(self.socket_dir), "-U", self.user, "-t", "30",
                  timeout=60)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(self._as_owner(str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast",
                                          "-w", "-t", "60"), capture_output=True, timeout=90)
        shutil.rmtree(self.root, ignore_errors=True)

    def sql(self, statement: str, dbname: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.dsn(dbname), autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    def create_database(self, name: str) -> str:
        self.sql(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\'')
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster for the whole session (skipped, with the reason, where none is installed)."""
    bindir = pg_bindir()
    if bindir is None:
        message = "PostgreSQL is not installed (no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin)"
        if _required():
            pytest.fail(message + "; .ci/run installs it")
        pytest.skip(message)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("psycopg is not installed: ./run-tests installs the project's dependencies")
    # A short path: a Unix socket's path is limited to ~107 bytes.
    cluster = PgCluster(bindir, Path(tempfile.mkdtemp(prefix="expg-", dir="/tmp")))
    if os.environ.get("EXASTOR_TEST_META", "").lower() == "postgresql":
        cluster.max_connections = 600  # every server of the API suites on it at once, a pool per worker
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def rows(dsn: str, query: str, params: tuple = ()) -> list[tuple]:
    """What ``query`` returns on ``dsn``, on a connection of its own (autocommit): how tests look at
    the shared metadata behind the gateways' backs."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as con:
        return con.execute(query, params).fetchall()  # type: ignore[arg-type]


_databases = itertools.count(1)


@pytest.fixture(scope="session")
def pg_dsn(pg_cluster: PgCluster) -> str:
    """A database of its own for the session."""
    return pg_cluster.create_database("exastor_session")


@pytest.fixture
def pg_database(pg_cluster: PgCluster) -> Iterator[str]:
    """A fresh, empty database for one test: its DSN."""
    name = f"exastor_t{os.getpid()}_{next(_databases)}"
    dsn = pg_cluster.create_database(name)
    yield dsn
    pg_cluster.drop_database(name)
