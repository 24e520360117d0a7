"""Who is calling, once the front-end has checked the credentials: a user (an S3 signature), the
Blob account (Shared Key), a verified SAS, or nobody. Authentication (signatures, SAS signatures,
dates) is the front-ends'; what the caller may then do is the authorizer's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

USER, ACCOUNT, SAS, ANONYMOUS = "user", "account", "sas", "anonymous"


@dataclass
class AuthResult:
    """A verified Blob credential. ``kind``: 'sharedkey', 'service-sas' or 'account-sas'."""

    kind: str
    permissions: str = ""
    resource: str = ""                  # service SAS: sr (c, b, bs, bv); account SAS: srt letters
    services: str = ""                  # account SAS: ss letters
    path: str = ""                      # service SAS: "/container" or "/container/blob" it was signed for
    snapshot: str = ""                  # service SAS sr=bs: the snapshot it names


@dataclass(frozen=True)
class Principal:
    kind: str                           # USER, ACCOUNT, SAS or ANONYMOUS
    name: str | None                    # whose rights apply: the user (the account's user for a SAS); None
    sas: AuthResult | None = None

    @property
    def label(self) -> str:
        """How logs and metrics name the caller: the user, "sas" or "anonymous"."""
        if self.kind == SAS:
            return "sas"
        return self.name or "anonymous"

    @classmethod
    def anonymous(cls) -> Principal:
        return cls(ANONYMOUS, None)

    @classmethod
    def user(cls, name: str) -> Principal:
        return cls(USER, name)

    @classmethod
    def account(cls, name: str) -> Principal:
        return cls(ACCOUNT, name)

    @classmethod
    def from_sas(cls, account_user: str, token: AuthResult) -> Principal:
        return cls(SAS, account_user, token)

    def __repr__(self) -> str:
        extra: dict[str, Any] = {"sas": self.sas.kind} if self.sas else {}
        return f"Principal({self.kind}, {self.name!r}{', ' if extra else ''}{extra or ''})"
