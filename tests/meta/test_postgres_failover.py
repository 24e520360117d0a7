"""A gateway on a primary and its streaming standby, named together in one libpq multi-host URL with
``target_session_attrs=read-write`` (how gateways are deployed against Patroni, docs/operations.md),
through a failover done by hand: the primary stops being writable, the standby is promoted.

Two ways the primary goes: it turns read-only under the gateway's open connections (what a demoted
primary answers: SQLSTATE 25006), or it stops (its connections drop). Either way, until the standby
is promoted every PUT is answered 503 (never 500), afterwards PUTs succeed again on the new primary
through the same gateway, and every acknowledged object reads back byte-identical.

The read-only case fails without meta/postgres.py's handling of 25006: the pooled connections to the
old primary are healthy, so the gateway keeps lending them, and every write is a 500 even after the
promotion. Patroni with etcd over network namespaces: tests/cluster/test_patroni_failover.py."""

from __future__ import annotations

import hashlib
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from conftest import s3_client, start_server, wait_until
from pgcluster import PgCluster, pg_bindir

DB = "exastor_failover"


@pytest.fixture
def primary_and_standby() -> Iterator[tuple[PgCluster, PgCluster]]:
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin)")
    primary = PgCluster(bindir, Path(tempfile.mkdtemp(prefix="expgA-", dir="/tmp")))
    standby = PgCluster(bindir, Path(tempfile.mkdtemp(prefix="expgB-", dir="/tmp")))
    try:
        primary.start()
        primary.create_database(DB)
        standby.start_standby_of(primary)
        yield primary, standby
    finally:
        standby.stop()
        primary.stop()


def _status(call) -> int:
    """The HTTP status of one S3 call without the SDK's retries (200 when it succeeded)."""
    try:
        call()
    except ClientError as exc:
        return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
    except (ConnectionClosedError, ReadTimeoutError):
        return 0  # no answer at all: as bad as a 500 here
    return 200


@pytest.mark.parametrize("how", ["read-only", "stopped"])
def test_failover_to_the_promoted_standby_gives_503s_then_writes_again_and_loses_nothing(
        tmp_path, primary_and_standby, how):
    primary, standby = primary_and_standby
    url = (f"postgresql:///{DB}?host={primary.socket_dir},{standby.socket_dir}&user={primary.user}"
           "&target_session_attrs=read-write")
    server = start_server(tmp_path, "--meta", url, "--workers", "1")
    rng = random.Random(14)
    acknowledged: dict[str, str] = {}
    try:
        s3 = s3_client(server, retry=False, read_timeout=60)
        s3.create_bucket(Bucket="failover")

        def put(key: str) -> int:
            body = rng.randbytes(rng.choice([10, 70_000, 400_000]))
            status = _status(lambda: s3.put_object(Bucket="failover", Key=key, Body=body))
            if status == 200:
                acknowledged[key] = hashlib.sha256(body).hexdigest()
            return status

        assert [put(f"before-{i}") for i in range(8)] == [200] * 8

        if how == "read-only":  # the old primary's open connections now refuse writes (25006)
            primary.sql("ALTER SYSTEM SET default_transaction_read_only = on")
            primary.sql("SELECT pg_reload_conf()")
        else:
            primary.crash()  # its connections drop
        during = [put(f"during-{i}") for i in range(3)]
        assert set(during) == {503}, f"no primary: every write is a 503, got {during}"
        assert _status(lambda: s3.get_object(Bucket="failover", Key="before-0")) in (200, 503)

        standby.promote()
        statuses: list[int] = []

        def writes_again() -> bool:
            statuses.append(put(f"after-{len(statuses)}"))
            return statuses[-1] == 200

        wait_until(writes_again, "a PUT through the gateway after the standby's promotion", timeout=60,
                   interval=0.2)
        assert set(statuses) <= {200, 503}, f"while the gateway finds the new primary: only 503s, got {statuses}"
        assert [put(f"later-{i}") for i in range(4)] == [200] * 4

        for key, digest in acknowledged.items():
            body = s3.get_object(Bucket="failover", Key=key)["Body"].read()
            assert hashlib.sha256(body).hexdigest() == digest, key
        listed = {o["Key"] for o in s3.list_objects_v2(Bucket="failover", MaxKeys=1000)["Contents"]}
        assert listed == set(acknowledged), "nothing but the acknowledged objects"
    finally:
        server.stop()
    log = server.log_text()
    assert "Traceback" not in log, log[-5000:]
