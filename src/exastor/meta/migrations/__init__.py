"""Versioned metadata schemas: one ordered list of migrations per backend.

Each backend has a folder here (``sqlite/``, ``postgres/``) of SQL files named ``NNNN_what.sql``;
file N brings a database from version N-1 to N. The table ``schema_version`` holds one row per
migration applied (version, file name, when). A runner calls :func:`migrate` when it opens a
database: every migration above the database's version runs, in order, each in the same
transaction as its ``schema_version`` row, so a failed migration leaves the database as it was.
Several processes may open one database at once (gateway workers, many gateways on one
PostgreSQL): the migration transaction first takes the database's write lock (SQLite: BEGIN
IMMEDIATE; PostgreSQL: a transaction-level advisory lock), then reads the version.

A store from before versions were kept (SQLite, no ``schema_version`` table) is at version 0; its
version 1 is the schema it already has, written idempotently, so it upgrades in place.

A database at a version newer than this code knows is refused: an older exastor must not write to
a schema it does not understand.

Rules: never edit a released migration; add the next one, to every backend whose schema changes.
Statements in a file are separated by ``;`` at the end of a line (PostgreSQL function bodies in
``$$ ... $$`` are kept whole; no SQLite trigger bodies: their ``;`` would split them).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from exastor.errors import MetadataOpenError

BACKENDS = ("sqlite", "postgres")
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

SCHEMA_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ns BIGINT NOT NULL)"
)


class SchemaTooNew(MetadataOpenError):
    """The database was written by a newer exastor."""


class MigrationFailed(MetadataOpenError):
    """A migration's statements failed; the database is unchanged (the transaction rolled back)."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        return split_statements(self.sql)


def migrations(backend: str) -> list[Migration]:
    """The backend's migrations in version order; versions run 1, 2, 3... without gaps."""
    assert backend in BACKENDS, backend
    folder = resources.files("exastor.meta.migrations").joinpath(backend)
    found = []
    for entry in folder.iterdir():  # not a drive: package files
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text()))  # not a drive: package files
    found.sort(key=lambda m: m.version)
    assert [m.version for m in found] == list(range(1, len(found) + 1)), \
        f"{backend} migrations must be numbered 1..n without gaps: {[m.name for m in found]}"
    return found


def latest_version(backend: str) -> int:
    return len(migrations(backend))


def split_statements(sql: str) -> list[str]:
    """The statements of a migration file: ``--`` comments dropped, split at a ``;`` that ends a
    line, except inside ``$$``-quoted bodies (kept whole, comments and all)."""
    out: list[str] = []
    current: list[str] = []
    in_dollar = False
    for raw in sql.splitlines():
        line = raw if in_dollar else raw.split("--", 1)[0].rstrip()
        if not line.strip():
            continue
        current.append(line)
        if line.count("$$") % 2:
            in_dollar = not in_dollar
        if not in_dollar and line.endswith(";"):
            out.append("\n".join(current).rstrip(";"))
            current = []
    assert not in_dollar, "unterminated $$ body in a migration"
    if current:
        out.append("\n".join(current))
    return out


def migrate(execute: Callable[..., list[tuple]], backend: str) -> tuple[int, int]:
    """Bring the database to this code's newest version, inside the caller's write transaction
    (already holding the database's write lock). ``execute(sql, params=())`` runs one statement
    with ``?`` placeholders and returns its rows. Returns (version before, version after)."""
    execute(SCHEMA_VERSION_TABLE)
    before = int(execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")[0][0])
    steps = migrations(backend)
    if before > len(steps):
        raise SchemaTooNew(f"the metadata database is at schema version {before}, newer than this exastor "
                           f"knows ({len(steps)}): run the exastor that wrote it, or a newer one")
    for step in steps[before:]:
        try:
            for statement in step.statements():
                execute(statement)
        except Exception as exc:
            raise MigrationFailed(f"schema migration {step.name} ({backend}) failed: {exc}") from exc
        execute("INSERT INTO schema_version (version, name, applied_ns) VALUES (?, ?, ?)",
                (step.version, step.name, time.time_ns()))
    return before, len(steps)
