"""The rows that hold secrets sealed under the master key (users' secret keys, the Blob account key,
the data keys of encryption at rest): which master keys they name, and sealing the ones a store from
before sealing still holds in the clear (datadir/keys.py decides when). Named operations."""

from __future__ import annotations

import logging
from typing import Any

from exastor.meta import blob as bm
from exastor.meta import datakeys, members
from exastor.meta.contract import Metadata, user_context
from exastor.meta.sealing import PREFIX, Sealer, is_sealed, sealed_key_id

log = logging.getLogger("exastor.keys")


def sealed_key_ids(meta: Metadata) -> set[str]:
    """The master key ids the database's sealed secrets name (empty: nothing sealed yet)."""
    def q(cur: Any) -> set[str]:
        cur.execute("SELECT secret_key FROM users WHERE secret_key LIKE ?", (PREFIX + "%",))
        ids = {sealed_key_id(v) for (v,) in cur.fetchall()}
        account = bm.get_setting(cur, "account_key")
        if account and is_sealed(account):
            ids.add(sealed_key_id(account))
        # The data keys (encryption at rest) too: a new master key would lock every object away.
        ids |= {sealed_key_id(wrapped) for _, wrapped, _ in datakeys.wrapped_keys(cur)}
        return ids

    return meta.runner.read(q)


def _seal_rows(cur: Any, box: Sealer, account_context: str) -> int:
    """Seal, in one transaction's cursor, every secret still in the clear; returns how many."""
    cur.execute("SELECT access_key, secret_key FROM users")
    clear = [(access, secret) for access, secret in cur.fetchall() if not is_sealed(secret)]
    for access, secret in clear:
        cur.execute("UPDATE users SET secret_key = ? WHERE access_key = ?", (box.seal(secret, user_context(access)), access))
    account = bm.get_setting(cur, "account_key")
    if account is None or is_sealed(account):
        return len(clear)
    bm.put_setting(cur, "account_key", box.seal(account, account_context))
    return len(clear) + 1


def _rewrite(meta: Metadata, body: Any) -> int:
    """Run ``body(cursor) -> count`` in one transaction that rewrites sealed values.

    On SQLite the values it replaces must not survive anywhere in the file: the rewrite runs on a
    connection of its own with ``secure_delete`` (freed bytes are zeroed), then VACUUM rebuilds the
    file without free pages and the WAL is truncated. PostgreSQL rewrites rows through the runner
    (its own storage reclaims the old row versions)."""
    if getattr(meta.runner, "backend", "sqlite") != "sqlite":
        return int(meta.runner.write_sync(body))
    from exastor.meta.sqlite import rewrite_securely, sqlite_runner

    return rewrite_securely(sqlite_runner(meta).path, body)


def seal_clear_secrets(meta: Metadata, box: Sealer, account_context: str) -> int:
    """Seal every secret still stored in the clear, in one transaction; returns how many."""
    return _rewrite(meta, lambda cur: _seal_rows(cur, box, account_context))


# store_info: the master key(s) the copies on the drives may still be sealed under (set by a
# rotation, cleared by the `exastor serve` start that replaced them with a fresh copy).
COPIES_SEALED_UNDER = "meta_copies_sealed_under"


def _reseal_rows(cur: Any, old: Sealer, new: Sealer, account_context: str) -> int:
    """Reseal, in one transaction's cursor, every secret under ``new`` (opened with ``old``); returns how
    many. The data keys' bytes are unchanged (records name them, not the master key): only their
    wrapping changes."""
    count = 0
    cur.execute("SELECT access_key, secret_key FROM users")
    for access, value in cur.fetchall():
        secret = old.open(value, user_context(access))  # not a drive: unseals a secret
        cur.execute("UPDATE users SET secret_key = ? WHERE access_key = ?",
                    (new.seal(secret, user_context(access)), access))
        count += 1
    account = bm.get_setting(cur, "account_key")
    if account is not None:
        opened = old.open(account, account_context)  # not a drive: unseals a secret
        bm.put_setting(cur, "account_key", new.seal(opened, account_context))
        count += 1
    for data_key_id, wrapped, _ in datakeys.wrapped_keys(cur):
        opened = old.open(wrapped, datakeys.context(data_key_id))  # not a drive: unseals a secret
        cur.execute("UPDATE data_keys SET wrapped = ? WHERE id = ?",
                    (new.seal(opened, datakeys.context(data_key_id)), data_key_id))
        count += 1
    # The copies on the drives (and the journal) still hold the secrets sealed under the old key:
    # the next `exastor serve` takes a fresh copy and retires them (gateway/serve_cli.py).
    earlier = datakeys.get_info(cur, COPIES_SEALED_UNDER)  # a rotation before, its copies not yet retired
    ids = set(earlier.split(",")) if earlier else set()
    datakeys.put_info(cur, COPIES_SEALED_UNDER, ",".join(sorted(ids | {str(old.key_id)})))
    return count


def reseal_all(meta: Metadata, old: Sealer, new: Sealer, account_context: str, *,
               refuse_beside_gateways_ms: int | None = None) -> int:
    """Every sealed secret resealed from ``old`` to ``new`` in one transaction; returns how many.
    ``refuse_beside_gateways_ms``: first, in the same transaction, raise members.GatewaysRunning
    if a gateway heartbeated that recently (PostgreSQL: many gateways share the database, and no
    file lock reaches them)."""
    def body(cur: Any) -> int:
        if refuse_beside_gateways_ms is not None:
            members.refuse_beside_live_gateways(cur, refuse_beside_gateways_ms)
        return _reseal_rows(cur, old, new, account_context)

    return _rewrite(meta, body)


def copies_sealed_under(meta: Metadata) -> str | None:
    """The master key ids (comma-separated) the copies on the drives may still be sealed under."""
    return meta.runner.read(lambda cur: datakeys.get_info(cur, COPIES_SEALED_UNDER))


def forget_copies_sealed_under(meta: Metadata) -> None:
    """No copy on the drives needs an old master key any more."""
    meta.runner.write_sync(lambda cur: cur.execute("DELETE FROM store_info WHERE name = ?", (COPIES_SEALED_UNDER,)))
