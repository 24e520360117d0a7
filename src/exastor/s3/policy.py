"""Bucket policies on PUT: validation with S3's error codes. Evaluation per request is the
authorizer's (exastor.auth.policy)."""

from __future__ import annotations

import json
from typing import Any

from exastor.auth.policy import OPERATORS, as_list, like
from exastor.s3.errors import S3Error


def validate(body: bytes, bucket: str) -> dict[str, Any]:
    """Parse a policy document, rejecting what S3 rejects (MalformedPolicy)."""
    try:
        policy = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested thousands deep
        raise S3Error("MalformedPolicy", "Policies must be valid JSON", status=400) from exc
    if not isinstance(policy, dict):
        raise S3Error("MalformedPolicy", "Policies must be JSON objects", status=400)
    statements = as_list(policy.get("Statement"))
    if not statements:
        raise S3Error("MalformedPolicy", "Missing required field Statement", status=400)
    for st in statements:
        if not isinstance(st, dict) or st.get("Effect") not in ("Allow", "Deny"):
            raise S3Error("MalformedPolicy", "Invalid effect", status=400)
        if "Action" not in st and "NotAction" not in st:
            raise S3Error("MalformedPolicy", "Missing required field Action", status=400)
        if "Principal" not in st and "NotPrincipal" not in st:
            raise S3Error("MalformedPolicy", "Missing required field Principal", status=400)
        if "NotPrincipal" in st and st["Effect"] == "Allow":
            # S3 takes NotPrincipal only to Deny: an Allow to "everyone but X" is refused, not stored.
            raise S3Error("MalformedPolicy", "Invalid principal in policy: NotPrincipal with Allow", status=400)
        resources = as_list(st.get("Resource")) + as_list(st.get("NotResource"))
        if not resources:
            raise S3Error("MalformedPolicy", "Missing required field Resource", status=400)
        for arn in resources:
            if not isinstance(arn, str) or not (arn == "*" or arn.startswith("arn:aws:s3:")):
                raise S3Error("MalformedPolicy", "Policy has invalid resource", status=400)
            name = arn.split(":::", 1)[-1].split("/", 1)[0]
            if arn != "*" and not like(name, bucket):
                raise S3Error("MalformedPolicy", "Policy has invalid resource", status=400)
        for op in (st.get("Condition") or {}):
            base = op.split(":", 1)[-1]
            base = base[: -len("IfExists")] if base.endswith("IfExists") else base
            if base not in OPERATORS:
                raise S3Error("MalformedPolicy", f"Invalid Condition type : {op}", status=400)
    return policy
