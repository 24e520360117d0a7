"""Secrets sealed in the metadata database (users' secret keys, the Blob account key).

A sealed value is ``enc1:<key id>:<base64(nonce | AES-256-GCM ciphertext and tag)>``: the
database and every copy of it on the drives hold no secret in the clear, and a value moved to
another row fails to open (the row's identity is the associated data). The key is the store's
master key, which is never in the database (datadir/keys.py says where it comes from); its id is
the first 8 hex digits of its SHA-256, so a database can say which key it needs without holding it.
"""

from __future__ import annotations

import base64
import hashlib
import os

PREFIX = "enc1:"


class SecretsLocked(RuntimeError):
    """A sealed secret was needed, and the key it is sealed under is not available."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def sealed_key_id(value: str) -> str:
    return value[len(PREFIX):].split(":", 1)[0]


class Sealer:
    """Seals and opens secrets with the master key; without one (``key=None``) it is locked: it still
    passes plaintext through (a store from before sealing, until it is migrated) but can seal
    nothing and open nothing sealed."""

    def __init__(self, key: bytes | None, *, why_locked: str = "no master key") -> None:
        if key is not None:
            assert len(key) == 32, "the master key is 32 bytes (AES-256)"
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead: AESGCM | None = AESGCM(key)
            self.key_id: str | None = key_id(key)
        else:
            self._aead, self.key_id = None, None
        self.why_locked = why_locked

    @property
    def locked(self) -> bool:
        return self._aead is None

    def seal(self, secret: str, context: str) -> str:
        if self._aead is None:
            raise SecretsLocked(f"cannot store a secret: {self.why_locked}")
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, secret.encode(), context.encode())
        return f"{PREFIX}{self.key_id}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, value: str, context: str) -> str:
        if not is_sealed(value):
            return value  # stored before sealing existed; `exastor serve` seals it on start
        kid, _, blob = value[len(PREFIX):].partition(":")
        if self._aead is None or kid != self.key_id:
            raise SecretsLocked(f"a secret is sealed under master key {kid}, which is not available "
                                f"({self.why_locked if self._aead is None else f'the key in use is {self.key_id}'})")
        raw = base64.b64decode(blob)
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except InvalidTag as exc:
            raise SecretsLocked(f"a secret sealed under {kid} does not open for {context!r} "
                                "(moved between rows, or damaged)") from exc
