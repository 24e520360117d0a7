"""The rows that hold secrets sealed under the master key (users' secret keys, the Blob account key,
the data keys of encryption at rest): which master keys they name, and sealing the ones a store from
before sealing still holds in the clear (datadir/keys.py decides when). Named operations."""

from __future__ import annotations

import logging
from typing import Any

from exastor.meta import blob as bm
from exastor.meta import datakeys
from exastor.meta.sealing import PREFIX, Sealer, is_sealed, sealed_key_id
from exastor.meta.store import Metadata, user_context

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


def seal_clear_secrets(meta: Metadata, box: Sealer, account_context: str) -> int:
    """Seal every secret still stored in the clear, in one transaction; returns how many.

    On SQLite the clear values must not survive anywhere in the file: the rewrite runs on a connection
    of its own with ``secure_delete`` (freed bytes are zeroed), then VACUUM rebuilds the file without
    free pages and the WAL is truncated. PostgreSQL rewrites rows through the runner (its own storage
    reclaims the old row versions)."""
    if getattr(meta.runner, "backend", "sqlite") != "sqlite":
        return meta.runner.write_sync(lambda cur: _seal_rows(cur, box, account_context))
    from exastor.meta.sqlite import rewrite_securely

    return rewrite_securely(meta.runner.path,  # type: ignore[attr-defined]  # the SQLite runner's file
                            lambda cur: _seal_rows(cur, box, account_context))
