"""Conditional writes and deletes, decided inside the write's metadata transaction.

Both are ``TxCheck``s (meta/contract.py): ``run`` sees the row the transaction is about to replace or
remove, so two writers racing on one key serialise there and exactly one condition holds. The
answers are S3's (docs/compatibility.md, "Conditional writes and deletes"):

- a write with ``If-None-Match: *`` onto a live object: PreconditionFailed (412);
- a write with ``If-Match`` onto no live object: ObjectNotFound (404); onto another ETag: 412;
- the condition held when the request arrived (the precheck, before the body) but a delete
  committed while the body streamed in: ConditionalConflict (409 ConditionalRequestConflict: "a
  delete request succeeded before the conditional write completed"). A concurrent *write* that
  finished first makes the later one fail with 412, as S3 documents ("the first write to finish
  succeeds; subsequent writes fail with 412").
- a delete with ``If-Match`` / ``x-amz-if-match-last-modified-time`` / ``x-amz-if-match-size``: the
  version it removes (the current one, or the one named) must match; a key with no version at all
  answers ObjectNotFound (404), a current delete marker (nothing to match) 412.

Protocol-neutral: the front-ends parse the headers and map the errors to their codes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from exastor import errors
from exastor.meta.contract import TxCheck
from exastor.meta.records import ObjectVersion

_UNSEEN = object()
EtagMatch = Callable[[str], bool]  # whether an object's ETag satisfies If-Match (the front-end parses the header)


class WriteCondition(TxCheck):
    """``If-Match`` (its ETag list, or ``*``, as a predicate) and/or ``If-None-Match: *`` on a write of one key."""

    def __init__(self, if_match: EtagMatch | None, if_none_match: bool) -> None:
        assert if_match is not None or if_none_match, "a write condition needs a condition"
        self.if_match = if_match
        self.if_none_match = if_none_match
        self._seen: Any = _UNSEEN  # (seq, live) of the row the precheck saw; None: no row

    def precheck(self, cur: Any, current: ObjectVersion | None) -> None:
        self._seen = None if current is None else (current.seq, not current.delete_marker)
        self._decide(current, deleted_since=False)

    def run(self, cur: Any, current: ObjectVersion | None) -> None:
        deleted_since = False
        if self._seen is not _UNSEEN and self._seen is not None:
            seq, was_live = self._seen
            now_live = current is not None and not current.delete_marker
            deleted_since = was_live and not now_live and (current is None or current.seq != seq)
        self._decide(current, deleted_since=deleted_since)

    def _decide(self, current: ObjectVersion | None, *, deleted_since: bool) -> None:
        live = current if current is not None and not current.delete_marker else None
        if self.if_none_match and live is not None:
            raise errors.PreconditionFailed("If-None-Match")
        if self.if_match is not None:
            if live is None:
                if deleted_since:
                    raise errors.ConditionalConflict("the object was deleted while this conditional write ran")
                raise errors.ObjectNotFound("If-Match: the key has no live object")
            if not self.if_match(live.etag):
                raise errors.PreconditionFailed("If-Match")


@dataclass
class DeleteCondition(TxCheck):
    """What the version a delete removes must be: its ETag (or ``*``: any), its last-modified time
    (whole seconds) and/or its size. ``current`` is that version (None: there is none)."""

    if_match: EtagMatch | None = None
    last_modified: datetime | None = None
    size: int | None = None

    def any(self) -> bool:
        return self.if_match is not None or self.last_modified is not None or self.size is not None

    def run(self, cur: Any, current: ObjectVersion | None) -> None:
        if current is None:
            raise errors.ObjectNotFound("a conditional delete of a key with no version")
        if current.delete_marker:
            raise errors.PreconditionFailed("the current version is a delete marker")
        if self.if_match is not None and not self.if_match(current.etag):
            raise errors.PreconditionFailed("If-Match")
        if self.last_modified is not None and \
                current.mtime_ns // 1_000_000_000 != int(self.last_modified.timestamp()):
            raise errors.PreconditionFailed("x-amz-if-match-last-modified-time")
        if self.size is not None and current.size != self.size:
            raise errors.PreconditionFailed("x-amz-if-match-size")
