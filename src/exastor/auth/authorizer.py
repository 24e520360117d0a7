"""The one authorizer: (principal, operation, resources) -> a Decision, for S3 and Blob alike.

It runs before any handler, from the operation's row in auth/operations.py:

1. Signed requests only, where the row says so.
2. A SAS: its level, resource and permission letters against the row (static, no metadata read).
3. Each resource (the target, and a copy/URL source read with the *source's* credentials):
   the bucket must exist and be owned by whom ``x-amz-expected-bucket-owner`` (for a copy source
   ``x-amz-source-expected-bucket-owner``) says; Block Public Access refuses a public ACL or
   policy the request would store; then the bucket policy (an explicit Deny wins, an Allow grants,
   but a public policy's Allow serves only the owner under RestrictPublicBuckets), then the ACL
   (the object's for ``object`` rows, the bucket's otherwise; grants to everyone ignored under
   IgnorePublicAcls, every ACL ignored under the BucketOwnerEnforced object ownership, where the
   bucket owner owns every object), then ownership; for an anonymous Blob caller, last, the
   container's public access level.
4. A Decision that covers exactly those resources for the row's kind of access.

Denials raise errors.AccessDenied (``info['code']`` carries the Azure code where there is a more
specific one; ``info['role']`` is "source" for a copy source), missing buckets BucketNotFound.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, unquote

from exastor import errors
from exastor.auth import policy
from exastor.auth.acl import PUBLIC_GROUPS, acl_of, grants_permission
from exastor.auth.acl import is_public as acl_is_public
from exastor.auth.decision import _DECISION_TOKEN, ANY_OWNED, Decision, Granted
from exastor.auth.operations import ANYONE, BUCKET, KEY, NEW_BUCKET, OBJECT, SERVICE, Need, Operation
from exastor.auth.principal import ANONYMOUS, AuthResult, Principal
from exastor.meta.records import Bucket, ObjectVersion
from exastor.namespace.operations import READ, Namespace

# Request headers a bucket policy may test (s3:<header> condition keys).
_HEADER_KEYS = ("x-amz-acl", "x-amz-grant-read", "x-amz-grant-write", "x-amz-grant-read-acp",
                "x-amz-grant-write-acp", "x-amz-grant-full-control", "x-amz-metadata-directive",
                "x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id",
                "x-amz-storage-class", "x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date",
                "x-amz-object-lock-legal-hold")
_LIST_BUCKET = Need(BUCKET, "s3:ListBucket", "READ", READ)


@dataclass
class RequestFacts:
    """What a decision may depend on besides the principal: the request as it arrived. The client
    address is the ASGI scope's ``client`` (the TCP peer, or what a *trusted* proxy said), never a
    header a client can write."""

    headers: Mapping[str, str]
    query: Mapping[str, str]
    client_ip: str
    secure: bool
    request_tags: dict[str, str] | None = None
    acl: dict[str, Any] | None = None   # an ACL the body carries (PutBucketAcl, PutObjectAcl, PostObject)
    policy: str | None = None           # the policy PutBucketPolicy would store

    @classmethod
    def from_scope(cls, scope: Mapping[str, Any], headers: Mapping[str, str], query: Mapping[str, str]
                   ) -> RequestFacts:
        client = scope.get("client")
        return cls(headers, query, client[0] if client else "", scope.get("scheme") == "https")


@dataclass
class Target:
    """The resource an operation names: a bucket and key, and the version it reads, if any."""

    bucket: str | None
    key: str | None
    version_id: str | None = None


@dataclass
class Source:
    """A copy or URL source, and whose credentials read it."""

    principal: Principal
    bucket: str
    key: str
    version_id: str | None = None
    # A source outside this store (a Blob copy from another account or host): the remote store
    # decides, on the credentials in the URL it is given; nothing here is granted or read.
    external: bool = False


@dataclass
class _Work:
    """One decision being made."""

    op: Operation
    principal: Principal
    facts: RequestFacts
    objects: dict[tuple[str, str, str | None], ObjectVersion | None] = field(default_factory=dict)


class Authorizer:
    def __init__(self, ns: Namespace) -> None:
        self.ns = ns

    def decide(self, op: Operation, principal: Principal, facts: RequestFacts, target: Target,
               source: Source | None = None, *, refined: bool = False) -> Decision:
        """The decision for one request, or AccessDenied / BucketNotFound."""
        work = _Work(op, principal, facts)
        if op.body_refines and not refined:
            # Who asks (PostObject's form) or what they ask for (PutObjectTagging's tags) is in the
            # body: until it is read, the handler may see the bucket's row and write nothing.
            if target.bucket is not None:
                bucket = self.ns.cached_bucket(target.bucket)
                if bucket is None:
                    raise errors.BucketNotFound(target.bucket)
                _expected_owner(facts, bucket, "x-amz-expected-bucket-owner")
            if (op.sets_acl or op.sets_policy) and not op.signer_in_body:
                # The body (an ACL, a policy) matters only to Block Public Access: who may ask is
                # decided now, so a denied caller is refused before any body is read.
                self.decide(op, principal, facts, target, source, refined=True)

            def redo(**changes: Any) -> Decision:
                p = changes.pop("principal", principal)
                t = replace(target, key=changes.pop("key", target.key))
                return self.decide(op, p, replace(facts, **changes), t, source, refined=True)
            return self._decision(work, [Granted(target.bucket or "", None, frozenset())],
                                  pending="the body completes the decision", redo=redo)
        if op.authenticated and principal.name is None:
            raise errors.AccessDenied("signed requests only")
        create_only = False
        if principal.sas is not None:
            create_only = self._check_sas(op, principal.sas, target, "target")
        if op.per_key:
            # DeleteObjects: the keys are in the body; each is decided as the handler reaches it.
            bucket = self.ns.cached_bucket(target.bucket or "")
            if bucket is None:
                raise errors.BucketNotFound(target.bucket or "")
            _expected_owner(facts, bucket, "x-amz-expected-bucket-owner")

            def per_key(key: str, version_id: str | None) -> Granted:
                return self._resource(_Work(op, principal, facts), op.target, principal,
                                      Target(target.bucket, key, version_id), False)
            return self._decision(work, [Granted(target.bucket or "", None, frozenset())], per_key=per_key)
        grants = [self._resource(work, op.target, principal, target, create_only)]
        if op.source is not None:
            if source is None:
                raise errors.AccessDenied("the copy source is missing", role="source")
            if source.external:
                return self._decision(work, grants)
            if source.principal.sas is not None:
                src_op = replace(op, sas="r", sas_level="o", service_sas=True, create_only=False)
                self._check_sas(src_op, source.principal.sas, Target(source.bucket, source.key), "source")
            try:
                grants.append(self._resource(work, op.source, source.principal,
                                             Target(source.bucket, source.key, source.version_id), False,
                                             source_role=True))
            except (errors.AccessDenied, errors.BucketNotFound) as exc:
                exc.info["role"] = "source"
                raise
        return self._decision(work, grants)

    def _decision(self, work: _Work, grants: list[Granted], **kw: Any) -> Decision:
        return Decision(_DECISION_TOKEN, work.op.api, work.op.name, work.principal.name, work.principal.label,
                        grants, work.objects, **kw)

    # --- one resource ------------------------------------------------------------------------------
    def _resource(self, work: _Work, need: Need, principal: Principal, target: Target,
                  create_only: bool, *, source_role: bool = False) -> Granted:
        access = frozenset({need.access}) if need.access else frozenset()
        if need.scope == SERVICE:
            return Granted(ANY_OWNED, None, access)
        name = target.bucket or ""
        if need.scope == NEW_BUCKET:
            if principal.name is None:
                raise errors.AccessDenied("anonymous callers own no buckets")
            return Granted(name, None, access)
        bucket = self.ns.cached_bucket(name)
        if bucket is None:
            raise errors.BucketNotFound(name)
        if need.acl == ANYONE:
            return Granted(name, None, access)
        _expected_owner(work.facts, bucket, "x-amz-source-expected-bucket-owner" if source_role
                        else "x-amz-expected-bucket-owner")
        if not source_role:
            _block_public_writes(work, bucket)
        if need.scope == BUCKET:
            self._allow(work, principal, bucket, need, None, None)
            return Granted(name, None, access)
        key = target.key or ""
        if need.scope == KEY:
            self._allow(work, principal, bucket, need, key, None, version_id=target.version_id)
            return Granted(name, key, access, create_only)
        assert need.scope == OBJECT, need
        obj = self.ns.meta.get_object(name, key, target.version_id)
        work.objects[(name, key, target.version_id)] = obj
        if obj is None or obj.delete_marker:
            # Whether it exists is what listing the bucket tells: a caller who may not list learns nothing.
            self._allow(work, principal, bucket, replace(_LIST_BUCKET, public=need.public), None, None)
        else:
            self._allow(work, principal, bucket, need, key, obj, version_id=target.version_id)
        return Granted(name, key, access, create_only)

    def _allow(self, work: _Work, principal: Principal, bucket: Bucket, need: Need, key: str | None,
               obj: ObjectVersion | None, *, version_id: str | None = None) -> None:
        action = need.versioned_action if version_id is not None and need.versioned_action else need.action
        who = principal.name
        if work.op.owner_always and who is not None and who == bucket.owner:
            return
        block = public_access_block(bucket)
        stored = bucket.attrs.get("policy")
        if stored:
            arn = f"arn:aws:s3:::{bucket.name}" + (f"/{key}" if key is not None else "")
            document = policy.parsed(stored)
            verdict = policy.evaluate(document, who, action, arn, _context(work.facts, who, obj, key))
            if verdict == policy.DENY:
                raise errors.AccessDenied(f"{action} denied by the bucket policy")
            if verdict == policy.ALLOW:
                if not (block.get("RestrictPublicBuckets") and policy.is_public(document)) or who == bucket.owner:
                    return
        if bucket.attrs.get("ownership") == ENFORCED:
            # ACLs are disabled: they grant nothing, and the bucket owner owns every object.
            if who is not None and who == bucket.owner:
                return
        elif obj is not None:
            if need.acl is not None:
                if grants_permission(acl_of(obj.attrs, obj.owner), who, need.acl,
                                     ignore_public=bool(block.get("IgnorePublicAcls"))):
                    return
            elif who is not None and who == obj.owner:
                return
        elif need.acl is not None:
            if grants_permission(acl_of(bucket.attrs, bucket.owner), who, need.acl,
                                 ignore_public=bool(block.get("IgnorePublicAcls"))):
                return
        elif who is not None and who == bucket.owner:
            return
        if principal.kind == ANONYMOUS and need.public and bucket.attrs.get("public_access") in need.public \
                and not block.get("IgnorePublicAcls"):
            return
        raise errors.AccessDenied(f"{action} not granted")

    # --- SAS -----------------------------------------------------------------------------------------
    def _check_sas(self, op: Operation, token: AuthResult, target: Target, role: str) -> bool:
        """Whether a SAS may do ``op`` on ``target``; returns True when it may only create there."""
        code = sas_denial(op, token, target.bucket, target.key)
        if code is not None:
            raise errors.AccessDenied("the SAS does not grant this", code=code, role=role)
        return op.create_only and "w" not in token.permissions


ENFORCED = "BucketOwnerEnforced"  # the Object Ownership setting that disables ACLs


def public_access_block(bucket: Bucket) -> dict[str, bool]:
    """The bucket's Block Public Access settings (all off when it has none)."""
    return bucket.attrs.get("public_access_block") or {}


def _expected_owner(facts: RequestFacts, bucket: Bucket, header: str) -> None:
    """x-amz-expected-bucket-owner: the request is for this owner's bucket only (else 403)."""
    expected = facts.headers.get(header)
    if expected is not None and expected.strip() != bucket.owner:
        raise errors.AccessDenied(f"{header} does not name the bucket's owner")


_PUBLIC_CANNED = ("public-read", "public-read-write", "authenticated-read")


def _header_acl_is_public(h: Mapping[str, str]) -> bool:
    if h.get("x-amz-acl", "").strip() in _PUBLIC_CANNED:
        return True
    grants = ",".join(v for k, v in h.items() if k.startswith("x-amz-grant-"))
    return any(group in grants for group in PUBLIC_GROUPS)


def _block_public_writes(work: _Work, bucket: Bucket) -> None:
    """Block Public Access on what a request would store: a public ACL (BlockPublicAcls) or a
    public bucket policy (BlockPublicPolicy) is refused with 403."""
    op, facts = work.op, work.facts
    if not (op.sets_acl or op.sets_policy):
        return
    block = public_access_block(bucket)
    if op.sets_acl and block.get("BlockPublicAcls") and \
            (_header_acl_is_public(facts.headers) or acl_is_public(facts.acl)):
        raise errors.AccessDenied("Block Public Access refuses a public ACL on this bucket")
    if op.sets_policy and block.get("BlockPublicPolicy") and facts.policy is not None \
            and policy.is_public(policy.parsed(facts.policy)):
        raise errors.AccessDenied("Block Public Access refuses a public bucket policy on this bucket")


def sas_denial(op: Operation, token: AuthResult, container: str | None, blob: str | None,
               snapshot: str | None = None) -> str | None:
    """The Azure error code that refuses ``op`` to this SAS, or None when it grants it."""
    if not op.sas_level:
        return "AuthorizationPermissionMismatch"
    if token.kind == "account-sas":
        if "b" not in token.services:
            return "AuthorizationServiceMismatch"
        if op.sas_level not in token.resource:
            return "AuthorizationResourceTypeMismatch"
    else:
        if not op.service_sas or op.sas_level == "s":
            return "AuthorizationResourceTypeMismatch"
        if token.resource == "c":
            if token.path != f"/{container or ''}":
                return "AuthenticationFailed"
        elif token.resource in ("b", "bs"):
            if op.sas_level != "o" or token.path != f"/{container or ''}/{blob or ''}":
                return "AuthorizationResourceTypeMismatch" if op.sas_level != "o" else "AuthenticationFailed"
        else:  # bv: blob versions are not served over Blob; d: no hierarchical namespace here
            return "AuthorizationResourceTypeMismatch"
    if op.sas and not any(p in token.permissions for p in op.sas):
        return "AuthorizationPermissionMismatch"
    return None


def _context(facts: RequestFacts, principal: str | None, obj: ObjectVersion | None, key: str | None
             ) -> policy.Context:
    """The condition keys a bucket policy may test for this request."""
    ctx: policy.Context = {"aws:currenttime": [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())],
                           "aws:epochtime": [str(int(time.time()))],
                           "aws:securetransport": ["true" if facts.secure else "false"]}
    if principal is not None:
        ctx["aws:username"] = [principal]
        ctx["aws:userid"] = [principal]
    if obj is not None:
        for k, v in (obj.attrs.get("tags") or {}).items():
            ctx[f"s3:existingobjecttag/{k.lower()}"] = [v]
    h, q = facts.headers, facts.query
    if "referer" in h:
        ctx["aws:referer"] = [h["referer"]]
    if facts.client_ip:
        ctx["aws:sourceip"] = [_plain_ip(facts.client_ip)]
    for name in ("prefix", "delimiter", "max-keys", "versionId"):
        if name in q:
            ctx[f"s3:{name.lower()}"] = [q[name]]
    for name in _HEADER_KEYS:
        if name in h:
            ctx[f"s3:{name}"] = [h[name]]
    if "x-amz-copy-source" in h:
        ctx["s3:x-amz-copy-source"] = [unquote(h["x-amz-copy-source"]).lstrip("/")]
    tags = facts.request_tags
    if tags is None and h.get("x-amz-tagging"):
        tags = dict(parse_qsl(h["x-amz-tagging"], keep_blank_values=True))
    if tags is not None:
        for k, v in tags.items():
            ctx[f"s3:requestobjecttag/{k.lower()}"] = [v]
        ctx["s3:requestobjecttagkeys"] = list(tags)
    return ctx


def _plain_ip(text: str) -> str:
    """An IPv4 client reached over an IPv6 socket is still that IPv4 address (::ffff:a.b.c.d)."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return text
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped) if mapped is not None else str(ip)


__all__ = ["ENFORCED", "Authorizer", "RequestFacts", "Source", "Target", "public_access_block", "sas_denial"]
