"""S3 access control lists as the authorizer reads them: who a stored ACL grants what.

An ACL is stored in the bucket's or object's ``attrs["acl"]`` as
``{"owner": id, "grants": [[kind, value, permission], ...]}`` with ``kind`` one of
``user`` (a canonical id, which is the user name here) or ``group`` (a group URI).
A resource without one has the default ACL: its owner holds FULL_CONTROL.
Parsing ACLs from requests (canned ACLs, x-amz-grant-* headers, XML) is the S3 front-end's (s3/acl.py).
"""

from __future__ import annotations

from typing import Any

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"
GROUPS = (ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY)
PERMISSIONS = ("FULL_CONTROL", "READ", "WRITE", "READ_ACP", "WRITE_ACP")

Acl = dict[str, Any]


def default_acl(owner: str) -> Acl:
    return {"owner": owner, "grants": [["user", owner, "FULL_CONTROL"]]}


def acl_of(attrs: dict[str, Any], owner: str) -> Acl:
    return attrs.get("acl") or default_acl(owner)


PUBLIC_GROUPS = (ALL_USERS, AUTHENTICATED_USERS)  # grants to these make an ACL public (Block Public Access)


def grants_permission(acl: Acl, principal: str | None, permission: str, *, ignore_public: bool = False) -> bool:
    """Whether the ACL gives ``principal`` (None: anonymous) ``permission``. The owner may always
    read and change the ACL itself, so an owner can never lock themselves out. ``ignore_public``:
    grants to everyone and to every signed user count for nothing (Block Public Access's
    IgnorePublicAcls)."""
    if principal is not None and principal == acl["owner"] and permission in ("READ_ACP", "WRITE_ACP"):
        return True
    for kind, value, granted in acl["grants"]:
        if granted != permission and granted != "FULL_CONTROL":
            continue
        if kind == "user" and principal is not None and value == principal:
            return True
        if kind == "group" and not (ignore_public and value in PUBLIC_GROUPS) and \
                (value == ALL_USERS or (value == AUTHENTICATED_USERS and principal is not None)):
            return True
    return False


def is_public(acl: Acl | None) -> bool:
    """Whether an ACL grants anything to everyone or to every signed user."""
    if not acl:
        return False
    return any(kind == "group" and value in PUBLIC_GROUPS for kind, value, _ in acl["grants"])
