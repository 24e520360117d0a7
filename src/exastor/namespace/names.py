"""Validation of bucket/container names and object keys (the rules both protocols share)."""

from __future__ import annotations

import ipaddress
import re

from exastor import errors

MAX_KEY_BYTES = 1024
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def check_bucket_name(name: str) -> None:
    """S3's bucket naming rules (which also satisfy Azure's container rules except dots)."""
    # fullmatch: re.match with "$" would let a trailing newline through ("abcd\n")
    if not _BUCKET_RE.fullmatch(name) or ".." in name or ".-" in name or "-." in name:
        raise errors.InvalidBucketName(name)
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return
    raise errors.InvalidBucketName(name)


def check_key(key: str) -> None:
    if not key:
        raise errors.InvalidKey("empty key")
    if not is_name_text(key):
        raise errors.InvalidKey("keys must be valid UTF-8 without NUL (0x00) characters")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise errors.KeyTooLong(key[:64] + "...")


def is_name_text(name: str) -> bool:
    """Whether a name decoded from a URL can name anything here: valid UTF-8 (no lone surrogates
    from %FF-style bytes, which the database cannot store and no client could name again) and no
    NUL (%00): PostgreSQL cannot store one in text, so one backend would take the name and the other
    refuse it, and the authorizer's every-key grant (auth/decision.py ANY_KEY) is spelt with a NUL
    precisely because no request can name it."""
    if "\0" in name:
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
