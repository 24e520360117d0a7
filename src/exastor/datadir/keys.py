"""The master key that seals the secrets in the metadata database, and where it comes from.

The database, and every copy of it the server puts on the drives, holds users' secret keys and the
Blob account key sealed (meta/sealing.py) under a master key that is never in the database:

- by default the file ``DATA/master.key`` (32 random bytes, base64; 0600 in a 0700 directory),
  made on the first start of a store that holds no sealed secret yet;
- or, with ``key_command`` (setting, or ``EXASTOR_KEY_COMMAND`` for the other commands), whatever
  that command prints (base64): the hook for a KMS or a secrets manager, e.g.
  ``vault kv get -field=key secret/exastor`` or ``aws secretsmanager get-secret-value ...``. Nothing
  is written to ``DATA`` then.

A new key is never made while the database holds secrets sealed under another: a restored database
in a new ``DATA`` (``fsck --restore-meta``) needs the old key back (the file from a backup, or the
same ``key_command``), and until then every command that needs a secret stops with a message that
says which key is missing. A stolen drive or database copy therefore reveals no secret; a stolen
``DATA`` directory with ``master.key`` in it does, which is what ``key_command`` is for.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import subprocess
from pathlib import Path
from typing import Any, Protocol

from exastor.datadir.files import fsync_dir
from exastor.meta import sealed_rows
from exastor.meta.contract import Metadata
from exastor.meta.sealing import Sealer, SecretsLocked, key_id

ACCOUNT_CONTEXT = "blob_settings.account_key"  # what the sealed account key is bound to

log = logging.getLogger("exastor.keys")

KEY_FILE = "master.key"
COMMAND_TIMEOUT_S = 30


class KeyProvider(Protocol):
    """Where the master key comes from. ``load`` returns it, or None when there is none yet;
    ``create`` makes one (only asked when the database holds no sealed secret)."""

    description: str

    def load(self) -> bytes | None: ...

    def create(self) -> bytes: ...


def _decode(text: str, source: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SecretsLocked(f"{source} does not hold a base64 key") from exc
    if len(key) != 32:
        raise SecretsLocked(f"{source} holds {len(key)} bytes; a master key is 32 (AES-256)")
    return key


class FileKeyProvider:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"the key file {path}"

    def load(self) -> bytes | None:
        try:
            text = self.path.read_text()  # not a drive: the master key and the metadata in --data
        except FileNotFoundError:
            return None
        if self.path.stat().st_mode & 0o077:  # not a drive: the master key and the metadata in --data
            os.chmod(self.path, 0o600)
        return _decode(text, self.description)

    def create(self) -> bytes:
        key = os.urandom(32)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # not a drive: the master key and the metadata in --data
        except FileExistsError:  # another process made it first: use theirs
            loaded = self.load()
            assert loaded is not None
            return loaded
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(key).decode() + "\n")
            f.flush()
            os.fsync(f.fileno())  # not a drive: the master key and the metadata in --data
        dir_fd = os.open(self.path.parent, os.O_RDONLY)  # not a drive: the master key and the metadata in --data
        try:
            os.fsync(dir_fd)  # not a drive: the master key and the metadata in --data
        finally:
            os.close(dir_fd)
        log.warning("made a new master key in %s: back it up apart from the drives (docs/security.md)", self.path)
        return key


class CommandKeyProvider:
    """The KMS hook: a shell command that prints the base64 key."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.description = f"key_command ({command})"

    def load(self) -> bytes | None:
        try:
            done = subprocess.run(["/bin/sh", "-c", self.command], capture_output=True, text=True,
                                  timeout=COMMAND_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SecretsLocked(f"{self.description} failed: {exc}") from exc
        if done.returncode != 0:
            raise SecretsLocked(f"{self.description} exited with {done.returncode}: {done.stderr.strip()[:500]}")
        return _decode(done.stdout, self.description)

    def create(self) -> bytes:
        raise SecretsLocked(f"{self.description} printed no key; with key_command the key comes from it")


def provider(data: Path, command: str | None = None) -> KeyProvider:
    command = command or os.environ.get("EXASTOR_KEY_COMMAND") or ""
    return CommandKeyProvider(command) if command else FileKeyProvider(data / KEY_FILE)


def sealed_under(meta: Metadata) -> set[str]:
    """The key ids the database's sealed secrets name (empty: nothing sealed yet)."""
    return sealed_rows.sealed_key_ids(meta)


def sealer(data: Path, meta: Metadata, *, command: str | None = None, create: bool = False) -> Sealer:
    """The sealer for ``meta``: the master key when there is one (made now, with ``create``, if the
    database holds no sealed secret), else a locked sealer whose error says what is missing."""
    source = provider(data, command)
    needed = sealed_under(meta)
    try:
        key = source.load()
    except SecretsLocked as exc:
        return Sealer(None, why_locked=str(exc))
    if key is None:
        if needed:
            return Sealer(None, why_locked=(
                f"{source.description} is missing and the database's secrets are sealed under master key "
                f"{', '.join(sorted(needed))}: put that key back (from your backup of DATA/{KEY_FILE}, or "
                "set key_command) - see docs/security.md" + _hint(data, needed)))
        if not create:
            return Sealer(None, why_locked=f"{source.description} is missing (`exastor serve` makes one)")
        key = source.create()
    if needed and key_id(key) not in needed:
        return Sealer(None, why_locked=(
            f"{source.description} holds master key {key_id(key)}, but the database's secrets are sealed "
            f"under {', '.join(sorted(needed))}" + _hint(data, needed)))
    return Sealer(key)


def _hint(data: Path, needed: set[str]) -> str:
    """Where a rotation left the key the database needs, if it did (rotate_master)."""
    try:
        pending = FileKeyProvider(data / NEW_KEY_FILE).load()
    except (SecretsLocked, OSError):
        pending = None
    if pending is not None and key_id(pending) in needed:
        return (f"; an interrupted `exastor key rotate-master` left it in DATA/{NEW_KEY_FILE}: run "
                "`exastor key rotate-master` again to finish")
    kept = [str(old_key_path(data, i)) for i in sorted(needed)
            if old_key_path(data, i).exists()]  # not a drive: the master key in --data
    return f"; a master-key rotation kept it aside in {', '.join(kept)}" if kept else ""


def ensure(data: Path, meta: Metadata, *, command: str | None = None) -> Sealer:
    """For commands that store secrets (`serve`, `user add`): the key, made if the store has none
    yet; raises SecretsLocked with the reason when it cannot be had."""
    meta.sealer = sealer(data, meta, command=command, create=True)
    if meta.sealer.locked:
        raise SecretsLocked(meta.sealer.why_locked)
    return meta.sealer


def seal_plaintext(meta: Metadata) -> int:
    """Seal every secret still stored in the clear (a store from before sealing); returns how many.

    On SQLite the clear values must not survive anywhere in the file: the rewrite runs with
    ``secure_delete`` (freed bytes are zeroed), then VACUUM rebuilds the file without free pages and
    the WAL is truncated. Copies on the drives taken before this still hold them: the caller replaces
    them (metabackup.retire_older). PostgreSQL rewrites rows through the runner (its own storage
    reclaims the old row versions)."""
    box = meta.sealer
    assert not box.locked, "sealing needs the key"
    count = sealed_rows.seal_clear_secrets(meta, box, ACCOUNT_CONTEXT)
    if count:
        log.warning("sealed %d secret(s) that were stored in the clear", count)
    return count


# --- rotating the master key ---------------------------------------------------------------------

NEW_KEY_FILE = "master.key.new"      # the new key, written before anything is resealed under it
OLD_KEY_PREFIX = "master.key.old-"   # + the old key's id: kept aside until the operator removes it


class RotationRefused(RuntimeError):
    """A master-key rotation cannot start (or finish); the message says why and what to do."""


def old_key_path(data: Path, old_id: str) -> Path:
    return data / f"{OLD_KEY_PREFIX}{old_id}"


def kept_old_keys(data: Path) -> list[Path]:
    """Old master keys a rotation kept aside in ``data`` (the operator removes them)."""
    return sorted(data.glob(f"{OLD_KEY_PREFIX}*"))  # not a drive: the master key in --data


def rotate_master(data: Path, meta: Metadata, *, new_command: str | None = None,
                  command: str | None = None, refuse_beside_gateways_ms: int | None = None) -> dict[str, Any]:
    """Reseal every secret in the database (users' secret keys, the Blob account key, the data
    keys) under a new master key, in one transaction; the caller holds the data directory so no
    server on it runs meanwhile. A database shared by gateways elsewhere (PostgreSQL) is guarded
    by their heartbeats: with ``refuse_beside_gateways_ms``, the transaction refuses
    (members.GatewaysRunning, nothing changed) when any gateway heartbeated that recently.

    The new key is made as ``DATA/master.key.new`` (fsynced before anything is sealed under it), or
    printed by ``new_command`` (the KMS hook: nothing is written to DATA). After the commit the old
    key file is kept aside as ``DATA/master.key.old-<id>`` (a hard link first, so ``master.key``
    is never missing) and the new one takes its place. Every step can be repeated: a run
    interrupted anywhere is finished by running it again (the new key file is reused, a database
    already sealed under it is not resealed). Returns what was done, for the command to report."""
    source = provider(data, command)
    needed = sealed_under(meta)
    new_file = data / NEW_KEY_FILE
    if new_command:
        new_key = CommandKeyProvider(new_command).load()
        assert new_key is not None  # a command either prints a key or raises SecretsLocked
    elif isinstance(source, CommandKeyProvider):
        raise RotationRefused("the master key comes from key_command: give the new key's command with "
                              "--new-key-command (store a new key in your secrets manager first)")
    else:
        new_key = FileKeyProvider(new_file).load() or FileKeyProvider(new_file).create()
    new = Sealer(new_key)
    resealed = 0
    old_id: str | None = None
    if needed == {new.key_id}:
        pass  # an interrupted rotation committed already; only the key files are left to move
    else:
        old = sealer(data, meta, command=command)
        if old.locked:
            raise RotationRefused(f"the current master key is needed to open the secrets: {old.why_locked}")
        if old.key_id == new.key_id:
            raise RotationRefused(f"the new key is the key in use ({old.key_id}): the new key command must "
                                  "print a different key")
        old_id = old.key_id
        resealed = sealed_rows.reseal_all(meta, old, new, ACCOUNT_CONTEXT,
                                          refuse_beside_gateways_ms=refuse_beside_gateways_ms)
        log.warning("resealed %d secret(s) under master key %s (was %s)", resealed, new.key_id, old_id)
    kept: Path | None = None
    if isinstance(source, FileKeyProvider):
        current = source.path
        current_key = source.load()
        if current_key is not None and key_id(current_key) != new.key_id:
            kept = old_key_path(data, key_id(current_key))
            if not kept.exists():  # not a drive: the master key in --data
                os.link(current, kept)  # not a drive: the master key in --data; the old key, kept aside: never deleted here
            if new_command:  # the key comes from the command from now on: none is left in DATA
                os.unlink(current)  # not a drive: the master key in --data; its bytes are in the file kept aside (above)
        if not new_command:
            os.replace(new_file, current)  # not a drive: the master key in --data
        fsync_dir(data)
    return {"old": old_id, "new": new.key_id, "resealed": resealed, "kept": kept,
            "from_command": bool(new_command)}
