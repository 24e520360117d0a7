"""The store's data keys (DEKs) and its encryption-at-rest settings, in the metadata database.

Each data key is 32 random bytes, sealed under the master key (meta/sealing.py; the master key is
never in the database) with the key's id as associated data, so a wrapped key moved to another id
does not open. Keys are only ever added (``exastor key rotate``): a record names the key that
encrypted it, and every key stays readable for as long as records may name it. Rewrapping under
another master key rewrites these rows only, never a record (docs/security.md).

``store_info`` settings:

- ``encrypt_at_rest``: ``'1'``: new records are encrypted under the newest key; ``'0'`` or absent:
  new records are plaintext (a store from before encryption at rest, or turned off).
- ``all_encrypted``: ``'1'`` while every record the store ever wrote was encrypted (a store made
  with encryption on, never turned off): only then is every object's data encrypted, which is
  what the S3 SSE-S3 and Blob ``x-ms-server-encrypted`` answers report.
"""

from __future__ import annotations

import base64
import os
import time
from typing import TYPE_CHECKING, Any

from exastor.meta.sealing import Sealer

if TYPE_CHECKING:
    from exastor.meta.contract import Metadata

ENCRYPT_SETTING = "encrypt_at_rest"
ALL_ENCRYPTED_SETTING = "all_encrypted"
MAX_KEY_ID = 0xFFFF_FFFF  # a record header holds the key id in 32 bits


def context(key_id: int) -> str:
    """The associated data a data key is sealed under: its own id."""
    return f"exastor data key {key_id}"


def get_info(cur: Any, name: str) -> str | None:
    cur.execute("SELECT value FROM store_info WHERE name = ?", (name,))
    row = cur.fetchone()
    return str(row[0]) if row else None


def put_info(cur: Any, name: str, value: str) -> None:
    # An upsert: gateways sharing one PostgreSQL may start (and decide) at the same moment.
    cur.execute("INSERT INTO store_info (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, value))


def wrapped_keys(cur: Any) -> list[tuple[int, str, int]]:
    """(id, wrapped key, created_ns) of every data key, oldest first."""
    cur.execute("SELECT id, wrapped, created_ns FROM data_keys ORDER BY id")
    return [(int(r[0]), str(r[1]), int(r[2])) for r in cur.fetchall()]


def add_key(cur: Any, sealer: Sealer) -> int:
    """A new data key (the newest: new records are encrypted under it); returns its id."""
    cur.execute("SELECT COALESCE(MAX(id), 0) FROM data_keys")
    key_id = int(cur.fetchone()[0]) + 1
    assert 0 < key_id <= MAX_KEY_ID, "data key ids fit a record header's 32 bits"
    wrapped = sealer.seal(base64.b64encode(os.urandom(32)).decode(), context(key_id))
    # Another gateway sharing a PostgreSQL database may add the same id at the same moment: one wins,
    # and both go on with the newest key.
    cur.execute("INSERT INTO data_keys (id, wrapped, created_ns) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (key_id, wrapped, time.time_ns()))
    cur.execute("SELECT MAX(id) FROM data_keys")
    return int(cur.fetchone()[0])


def unwrap(sealer: Sealer, key_id: int, wrapped: str) -> bytes:
    """The data key's 32 bytes (SecretsLocked when the master key it is sealed under is not there)."""
    key = base64.b64decode(sealer.open(wrapped, context(key_id)))  # not a drive: unseals a secret
    assert len(key) == 32, "a data key is 32 bytes (AES-256)"
    return key


def has_records(cur: Any) -> bool:
    """Whether the store holds any indexed chunk (a store that does is not new)."""
    cur.execute("SELECT 1 FROM chunks LIMIT 1")
    return cur.fetchone() is not None


def prepare(cur: Any, sealer: Sealer, want: bool | None) -> tuple[bool, bool]:
    """Decide, at a server's start, whether new records are encrypted; make the first data key when
    they are and there is none. ``want``: the ``encrypt_at_rest`` setting (None: not set: on for a
    new store, as it was for an existing one). Returns (encrypting, every record encrypted)."""
    stored = get_info(cur, ENCRYPT_SETTING)
    if want is None:
        # A store with no setting yet: new (nothing indexed) encrypts; one from before stays as it was.
        encrypt = stored == "1" if stored is not None else not has_records(cur)
    else:
        encrypt = want
    if stored is None:
        put_info(cur, ALL_ENCRYPTED_SETTING, "1" if encrypt and not has_records(cur) else "0")
    if not encrypt:
        put_info(cur, ALL_ENCRYPTED_SETTING, "0")  # plaintext records from now on: never "all" again
    if encrypt and not wrapped_keys(cur):
        add_key(cur, sealer)
    put_info(cur, ENCRYPT_SETTING, "1" if encrypt else "0")
    return encrypt, get_info(cur, ALL_ENCRYPTED_SETTING) == "1"


# --- named operations (each one transaction) --------------------------------------------------------

KeyState = tuple[list[tuple[int, str, int]], str | None, str | None]


def key_state(meta: Metadata, *, snapshot: bool = True) -> KeyState:
    """(wrapped data keys [(id, wrapped, created_ns)], the encrypt setting, the all-encrypted setting)."""
    def q(cur: Any) -> KeyState:
        return wrapped_keys(cur), get_info(cur, ENCRYPT_SETTING), get_info(cur, ALL_ENCRYPTED_SETTING)

    return meta.runner.read(q, snapshot=snapshot)


def new_key(meta: Metadata, sealer: Sealer) -> int:
    """A new data key (`exastor key rotate`): new records are sealed under it. Returns its id."""
    return meta.runner.write_sync(lambda cur: add_key(cur, sealer))


def decide(meta: Metadata, sealer: Sealer, want: bool | None) -> tuple[bool, bool]:
    """``prepare`` in one transaction: the store's encryption at rest decided (the first key made)
    before any worker writes; returns (encrypting, every record encrypted)."""
    return meta.runner.write_sync(lambda cur: prepare(cur, sealer, want))
