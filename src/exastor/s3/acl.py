"""S3 access control lists as requests carry them: canned ACLs, x-amz-grant-* headers,
AccessControlPolicy XML. What a stored ACL grants is the authorizer's (exastor.auth.acl).

An ACL is stored in the bucket's or object's ``attrs["acl"]`` as
``{"owner": id, "grants": [[kind, value, permission], ...]}`` with ``kind`` one of
``user`` (a canonical id, which is the user name here) or ``group`` (a group URI).
A resource without one has the default ACL: its owner holds FULL_CONTROL.
"""

from __future__ import annotations

import re
from typing import Any

from exastor.auth.acl import (  # noqa: F401 - re-exported for the S3 handlers
    ALL_USERS,
    AUTHENTICATED_USERS,
    GROUPS,
    LOG_DELIVERY,
    PERMISSIONS,
    Acl,
    acl_of,
    default_acl,
    grants_permission,
)
from exastor.s3.errors import S3Error
from exastor.s3.xml import doc, el, owner_xml, parse, text

# x-amz-grant-* header -> permission, in the order S3 lists them back
GRANT_HEADERS = {"x-amz-grant-read": "READ", "x-amz-grant-write": "WRITE", "x-amz-grant-read-acp": "READ_ACP",
                 "x-amz-grant-write-acp": "WRITE_ACP", "x-amz-grant-full-control": "FULL_CONTROL"}
BUCKET_CANNED = ("private", "public-read", "public-read-write", "authenticated-read", "log-delivery-write",
                 "aws-exec-read")
OBJECT_CANNED = (*BUCKET_CANNED, "bucket-owner-read", "bucket-owner-full-control")


def canned_acl(name: str, owner: str, bucket_owner: str | None = None, *, for_object: bool = False) -> Acl:
    """The grants a canned ACL stands for (group grants first, as S3 lists them)."""
    allowed = OBJECT_CANNED if for_object else BUCKET_CANNED
    if name not in allowed:
        raise S3Error("InvalidArgument", f"Invalid canned ACL {name!r}", ArgumentName="x-amz-acl")
    grants: list[list[str]] = []
    if name == "public-read":
        grants.append(["group", ALL_USERS, "READ"])
    elif name == "public-read-write":
        grants += [["group", ALL_USERS, "READ"], ["group", ALL_USERS, "WRITE"]]
    elif name == "authenticated-read":
        grants.append(["group", AUTHENTICATED_USERS, "READ"])
    elif name == "log-delivery-write":
        grants += [["group", LOG_DELIVERY, "WRITE"], ["group", LOG_DELIVERY, "READ_ACP"]]
    grants.append(["user", owner, "FULL_CONTROL"])
    if bucket_owner and bucket_owner != owner:
        if name == "bucket-owner-read":
            grants.append(["user", bucket_owner, "READ"])
        elif name == "bucket-owner-full-control":
            grants.append(["user", bucket_owner, "FULL_CONTROL"])
    return {"owner": owner, "grants": grants}


_GRANTEE = re.compile(r'\s*(id|uri|emailAddress)\s*=\s*"?([^",]*)"?\s*', re.IGNORECASE)


def _grantee(kind: str, value: str, user_exists: Any, user_by_email: Any = None) -> list[str]:
    kind = kind.lower()
    if kind == "id":
        if not user_exists(value):
            raise S3Error("InvalidArgument", "Invalid id", ArgumentName="CanonicalUser/ID", ArgumentValue=value)
        return ["user", value]
    if kind == "uri":
        if value not in GROUPS:
            raise S3Error("InvalidArgument", "Invalid group uri", ArgumentName="Group/URI", ArgumentValue=value)
        return ["group", value]
    # An address resolves to the user who has it (`exastor user add --email`); the grant is stored
    # by that user's canonical id, as S3 does.
    name = user_by_email(value) if user_by_email is not None else None
    if name is None:
        raise S3Error("UnresolvableGrantByEmailAddress", "The e-mail address you provided does not match any "
                      "account on record.", status=400)
    return ["user", name]


def acl_from_headers(h: dict[str, str], owner: str, bucket_owner: str | None, user_exists: Any, *,
                     for_object: bool = False, user_by_email: Any = None) -> Acl | None:
    """The ACL a request's x-amz-acl or x-amz-grant-* headers ask for, or None if it has neither."""
    canned = h.get("x-amz-acl")
    granted = [name for name in GRANT_HEADERS if name in h]
    if canned is not None and granted:
        raise S3Error("InvalidRequest", "Specifying both Canned ACLs and Header Grants is not allowed")
    if canned is not None:
        return canned_acl(canned.strip(), owner, bucket_owner, for_object=for_object)
    if not granted:
        return None
    grants: list[list[str]] = []
    for name in granted:
        for item in h[name].split(","):
            if not item.strip():
                continue
            m = _GRANTEE.fullmatch(item)
            if not m:
                raise S3Error("InvalidArgument", f"Invalid grantee in {name}")
            grants.append([*_grantee(m.group(1), m.group(2), user_exists, user_by_email), GRANT_HEADERS[name]])
    return {"owner": owner, "grants": grants}


def acl_from_xml(body: bytes, owner: str, user_exists: Any, *, user_by_email: Any = None,
                 check_owner: bool = True) -> Acl:
    """An AccessControlPolicy document; its owner must be the resource's owner (``check_owner``)."""
    root = parse(body)
    if root.tag != "AccessControlPolicy":
        raise S3Error("MalformedACLError", "The XML you provided was not well-formed or did not validate against "
                      "our published schema.", status=400)
    declared = text(root, "Owner/ID")
    if check_owner and declared is not None and declared != owner:
        raise S3Error("AccessDenied")
    grants: list[list[str]] = []
    for grant in root.iter("Grant"):
        permission = text(grant, "Permission")
        grantee = grant.find("Grantee")
        if permission not in PERMISSIONS or grantee is None:
            raise S3Error("MalformedACLError", "The XML you provided was not well-formed or did not validate "
                          "against our published schema.", status=400)
        if text(grantee, "ID") is not None:
            who = _grantee("id", text(grantee, "ID") or "", user_exists)
        elif text(grantee, "URI") is not None:
            who = _grantee("uri", text(grantee, "URI") or "", user_exists)
        elif text(grantee, "EmailAddress") is not None:
            who = _grantee("email", text(grantee, "EmailAddress") or "", user_exists, user_by_email)
        else:
            raise S3Error("InvalidArgument", "Grantee has no ID, URI or EmailAddress")
        grants.append([*who, permission])
    return {"owner": owner, "grants": grants}


def acl_xml(acl: Acl) -> bytes:
    parts = []
    for kind, value, permission in acl["grants"]:
        if kind == "user":
            grantee = ('<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser">'
                       f"{el('ID', value)}{el('DisplayName', value)}</Grantee>")
        else:
            grantee = ('<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="Group">'
                       f"{el('URI', value)}</Grantee>")
        parts.append(f"<Grant>{grantee}{el('Permission', permission)}</Grant>")
    return doc("AccessControlPolicy",
               f"{owner_xml(acl['owner'])}<AccessControlList>{''.join(parts)}</AccessControlList>")
