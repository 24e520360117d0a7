"""A decision: what one request may touch, made by the authorizer before any handler runs.

A Decision is the namespace's ``Grant``: every namespace operation that reads or changes a bucket
or an object is handed one and asks it (``require``) whether this request was authorized for that
resource and that kind of access. A handler that touches something its operation's decision does
not cover (a copy source nobody declared, a write under a read decision, a second bucket) gets
AuthorizationMissing: the request fails closed, with a traceback in the log, instead of quietly
reading as the account.

Only the authorizer makes decisions: the constructor takes a token private to auth/authorizer.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from exastor.errors import AuthorizationMissing
from exastor.meta.records import ObjectVersion
from exastor.namespace.operations import READ, WRITE

if TYPE_CHECKING:
    pass

ANY_OWNED = "*"      # a grant's bucket: every bucket the principal owns (service-level operations)
ANY_KEY = "\0*"      # a grant's key: every key of the bucket (not a key anyone can name: no NUL in keys)

# Only the authorizer (auth/authorizer.py) passes this: a Decision cannot be made anywhere else.
_DECISION_TOKEN = object()


@dataclass(frozen=True)
class Granted:
    """One resource a decision covers: ``key`` None is the bucket itself (listing, configuration)."""

    bucket: str
    key: str | None
    access: frozenset[str]
    create_only: bool = False     # a write here may only create (SAS with c but not w)

    def covers(self, principal: str | None, bucket: str | None, key: str | None, access: str | None,
               bucket_owner: str | None) -> bool:
        if self.bucket == ANY_OWNED:
            if bucket is not None and (principal is None or bucket_owner != principal):
                return False
        elif bucket != self.bucket:
            return False
        if access is None:  # the bucket's row: any decision that names the bucket may see it
            return True
        if access not in self.access:
            return False
        return self.key == key or (self.key == ANY_KEY and key is not None)


@dataclass
class Decision:
    """Made by ``Authorizer.decide``; see the module docstring. Handlers read ``principal`` (whose
    rights were used: new objects belong to them) and pass the decision to the namespace."""

    token: object
    api: str
    operation: str
    principal: str | None
    label: str
    grants: list[Granted]
    objects: dict[tuple[str, str, str | None], ObjectVersion | None] = field(default_factory=dict)
    pending: str | None = None        # why writes wait (the body completes the decision)
    redo: Callable[..., Decision] | None = field(default=None, repr=False)
    per_key: Callable[[str, str | None], Granted] | None = field(default=None, repr=False)
    keyed: dict[tuple[str, str], Granted] = field(default_factory=dict, repr=False)  # extend()'s, by key

    def __post_init__(self) -> None:
        if self.token is not _DECISION_TOKEN:
            raise AuthorizationMissing("a Decision is made by the authorizer only")

    # --- the namespace's Grant interface ---------------------------------------------------------
    def require(self, bucket: str | None, key: str | None, access: str | None, *,
                bucket_owner: str | None = None) -> None:
        """Pass, or raise AuthorizationMissing: this request was not authorized for that."""
        if access == WRITE and self.pending:
            raise AuthorizationMissing(f"{self.operation}: writes wait until {self.pending}")
        if bucket is not None and key is not None:
            granted = self.keyed.get((bucket, key))
            if granted is not None and granted.covers(self.principal, bucket, key, access, bucket_owner):
                return
        for granted in self.grants:
            if granted.covers(self.principal, bucket, key, access, bucket_owner):
                return
        raise AuthorizationMissing(f"{self.api} {self.operation} touched bucket {bucket!r} key {key!r} "
                                   f"({access or 'its row'}) outside its decision")

    def known_object(self, bucket: str, key: str, version_id: str | None) -> tuple[bool, ObjectVersion | None]:
        """The object row the decision was made on, if the authorizer read it: the handler's first
        read of it gets exactly the version that was authorized (and skips a second read). Once:
        a handler that reads it again, after changing it, sees the change."""
        k = (bucket, key, version_id)
        if k in self.objects:
            return True, self.objects.pop(k)
        return False, None

    def create_only(self, bucket: str, key: str) -> bool:
        for granted in self.grants:
            if granted.covers(self.principal, bucket, key, WRITE, None):
                return granted.create_only
        return False

    # --- completing a decision -------------------------------------------------------------------
    def extend(self, key: str, version_id: str | None = None) -> None:
        """DeleteObjects: decide one more key of the body (raises AccessDenied when denied)."""
        if self.per_key is None:
            raise AuthorizationMissing(f"{self.operation} does not decide keys one by one")
        granted = self.per_key(key, version_id)
        self.keyed[(granted.bucket, key)] = granted

    def refine(self, **facts: Any) -> Decision:
        """The decision again, with what the body told (PostObject: who signed the form and the
        key; PutObjectTagging: the tags). Raises AccessDenied when the complete request is denied."""
        if self.redo is None:
            raise AuthorizationMissing(f"{self.operation} has nothing to refine")
        return self.redo(**facts)

    def reads(self, bucket: str, key: str | None) -> bool:
        """Whether this decision lets the request read that resource (for optional extras)."""
        return any(g.covers(self.principal, bucket, key, READ, None) for g in self.grants)
