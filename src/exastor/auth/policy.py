"""Bucket policy evaluation: one request against one parsed policy document.

The IAM rules for a single resource policy: an explicit Deny wins, then an Allow, else no opinion
(the ACLs decide). Supported: Principal / NotPrincipal ("*", {"AWS": ...} with user ARNs or ids),
Action / NotAction and Resource / NotResource with ``*``/``?`` wildcards, and the String*, Numeric*,
Bool, Null and IpAddress condition operators with ``IfExists``, ``ForAnyValue:`` and ``ForAllValues:``.
Validation of a document on PUT (with S3's error codes) stays in the S3 front-end (s3/policy.py).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

ALLOW, DENY = "allow", "deny"
Context = dict[str, list[str]]


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


@lru_cache(maxsize=4096)
def _wildcard(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(rx, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def like(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM's ``*``/``?`` wildcard match of the whole value."""
    return _wildcard(pattern, ignore_case).fullmatch(value) is not None


OPERATORS = ("StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
             "StringLike", "StringNotLike", "NumericEquals", "NumericNotEquals", "NumericLessThan",
             "NumericLessThanEquals", "NumericGreaterThan", "NumericGreaterThanEquals", "Bool", "Null",
             "IpAddress", "NotIpAddress", "DateEquals", "DateNotEquals", "DateLessThan", "DateLessThanEquals",
             "DateGreaterThan", "DateGreaterThanEquals", "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike")


def _principal_matches(spec: Any, principal: str | None) -> bool:
    if spec == "*":
        return True
    if isinstance(spec, dict):
        values = [v for vals in spec.values() for v in as_list(vals)]
    else:
        values = as_list(spec)
    for v in values:
        if v == "*":
            return True
        if principal is None or not isinstance(v, str):
            continue
        # arn:aws:iam::<tenant>:user/<name>, arn:aws:iam::<tenant>:root, or the bare id
        name = v.rsplit(":", 1)[-1]
        name = name.split("/", 1)[1] if name.startswith("user/") else name
        if v == principal or name == principal:
            return True
    return False


def _matches_any(patterns: Iterable[Any], value: str) -> bool:
    return any(isinstance(p, str) and like(p, value, ignore_case=True) for p in patterns)


def _resource_matches(patterns: Iterable[Any], arn: str) -> bool:
    return any(isinstance(p, str) and like(p, arn) for p in patterns)


def _compare(op: str, want: str, got: str) -> bool:
    if op.startswith("String"):
        if "IgnoreCase" in op:
            return want.lower() == got.lower()
        if "Like" in op:
            return like(want, got)
        return want == got
    if op.startswith("Numeric"):
        try:
            a, b = float(got), float(want)
        except ValueError:
            return False
        return {"NumericEquals": a == b, "NumericNotEquals": a == b, "NumericLessThan": a < b,
                "NumericLessThanEquals": a <= b, "NumericGreaterThan": a > b,
                "NumericGreaterThanEquals": a >= b}[op]
    if op == "Bool":
        return want.lower() == got.lower()
    if op in ("IpAddress", "NotIpAddress"):
        try:
            return ipaddress.ip_address(got) in ipaddress.ip_network(want, strict=False)
        except ValueError:
            return False
    if op.startswith("Arn"):
        return like(want, got)
    return want == got


_NEGATED = ("StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "NumericNotEquals", "NotIpAddress",
            "ArnNotEquals", "ArnNotLike", "DateNotEquals")


def _condition_holds(op_full: str, key: str, wants: list[Any], ctx: Context) -> bool:
    qualifier, _, op = op_full.rpartition(":")
    if_exists = op.endswith("IfExists")
    if if_exists:
        op = op[: -len("IfExists")]
    got = ctx.get(key.lower())
    if op == "Null":
        absent = not got
        return any(str(w).lower() == ("true" if absent else "false") for w in wants)
    if not got:
        return if_exists or op in _NEGATED
    negated = op in _NEGATED
    want_strs = [str(w).lower() if isinstance(w, bool) else str(w) for w in wants]

    def one(value: str) -> bool:
        hit = any(_compare(op, w, value) for w in want_strs)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(one(v) for v in got)
    return any(one(v) for v in got)


def _conditions_hold(conditions: Any, ctx: Context) -> bool:
    if not conditions:
        return True
    for op, pairs in conditions.items():
        if not isinstance(pairs, dict):
            return False
        for key, wants in pairs.items():
            if not _condition_holds(op, key, as_list(wants), ctx):
                return False
    return True


def evaluate(policy: dict[str, Any], principal: str | None, action: str, arn: str, ctx: Context) -> str | None:
    """ALLOW, DENY or None for one request against one parsed policy."""
    verdict = None
    for st in as_list(policy.get("Statement")):
        if "Principal" in st and not _principal_matches(st["Principal"], principal):
            continue
        if "NotPrincipal" in st and _principal_matches(st["NotPrincipal"], principal):
            continue
        if "Action" in st and not _matches_any(as_list(st["Action"]), action):
            continue
        if "NotAction" in st and _matches_any(as_list(st["NotAction"]), action):
            continue
        if "Resource" in st and not _resource_matches(as_list(st["Resource"]), arn):
            continue
        if "NotResource" in st and _resource_matches(as_list(st["NotResource"]), arn):
            continue
        if not _conditions_hold(st.get("Condition"), ctx):
            continue
        if st.get("Effect") == "Deny":
            return DENY
        verdict = ALLOW
    return verdict


@lru_cache(maxsize=1024)
def parsed(text: str) -> dict[str, Any]:
    """A stored policy, parsed once (policies were validated when stored)."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# Condition keys that pin a statement to known callers, networks or resources: an Allow that names
# "*" as its principal is not public when one of them is fixed by an exact-match operator (S3's
# "The meaning of public", Block Public Access).
_FIXING_KEYS = {"aws:sourceip", "aws:sourcearn", "aws:sourcevpc", "aws:sourcevpce", "aws:sourceaccount",
                "aws:sourceowner", "aws:principalorgid", "aws:principalaccount", "aws:principalarn",
                "aws:userid", "aws:username", "s3:dataaccesspointarn", "s3:dataaccesspointaccount"}
_FIXING_OPERATORS = {"StringEquals", "StringEqualsIgnoreCase", "ArnEquals", "IpAddress"}
_ANY_NETWORK = ("0.0.0.0/0", "::/0")


def _principal_is_everyone(spec: Any) -> bool:
    if spec == "*":
        return True
    values = [v for vals in spec.values() for v in as_list(vals)] if isinstance(spec, dict) else as_list(spec)
    return any(v == "*" for v in values)


def _fixed_by_condition(conditions: Any) -> bool:
    if not isinstance(conditions, dict):
        return False
    for op_full, pairs in conditions.items():
        op = op_full.rpartition(":")[2]
        if op.endswith("IfExists") or op not in _FIXING_OPERATORS or not isinstance(pairs, dict):
            continue  # IfExists holds when the key is absent; negations and wildcards fix nothing
        for key, wants in pairs.items():
            values = [str(w) for w in as_list(wants)]
            if key.lower() in _FIXING_KEYS and values and not any("*" in v or v in _ANY_NETWORK for v in values):
                return True
    return False


def is_public(policy: dict[str, Any]) -> bool:
    """Whether a bucket policy grants anything to anyone: an Allow whose principal is everyone (or a
    NotPrincipal), unless a condition pins it to fixed callers or networks."""
    for st in as_list(policy.get("Statement")):
        if not isinstance(st, dict) or st.get("Effect") != "Allow":
            continue
        everyone = "NotPrincipal" in st or _principal_is_everyone(st.get("Principal"))
        if everyone and not _fixed_by_condition(st.get("Condition")):
            return True
    return False
