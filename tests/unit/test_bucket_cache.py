"""The namespace's bucket cache (namespace/operations.py ``cached_bucket``) between the moments a
commit is acknowledged and this process hears of it (on PostgreSQL, another gateway's commit reaches
``data_version`` through a NOTIFY some milliseconds later): a bucket that exists in the database is
never answered "no such bucket" from the cache. tests/api/test_two_gateways.py has the same through
two real gateways."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from exastor.meta.records import Bucket
from exastor.namespace.operations import Namespace


class FrozenMeta:
    """Bucket rows as the database holds them, and a ``data_version`` that has not moved yet."""

    def __init__(self) -> None:
        self.rows: dict[str, Bucket] = {}
        self.lookups = 0
        self.runner = SimpleNamespace(data_version=lambda: 7)

    def get_bucket(self, name: str) -> Bucket | None:
        self.lookups += 1
        return self.rows.get(name)


def test_a_bucket_created_elsewhere_is_served_before_the_notification_comes():
    meta = FrozenMeta()
    ns = Namespace(cast(Any, meta), cast(Any, None))
    assert ns.cached_bucket("b") is None
    meta.rows["b"] = Bucket("b", "admin", 1, "us-east-1", "", {})  # committed by another gateway
    assert ns.cached_bucket("b") == meta.rows["b"], "a cached 'no such bucket' hid a bucket that exists"
    lookups = meta.lookups
    assert ns.cached_bucket("b") == meta.rows["b"] and meta.lookups == lookups, "an existing bucket is cached"
