"""Races between Blob writers, leases and conditions, with the real azure-storage-blob client against
real servers (one gateway worker, and several, so concurrent clients are served by different processes).

A write's lease and its If-Match / If-None-Match / If-(Un)Modified-Since conditions are decided in
the metadata transaction that makes the write. These tests race real clients and assert what must
hold whatever the interleaving (invariants, not timings):

- of N writers with the same If-Match ETag, exactly one wins and the others get 412 ConditionNotMet;
- once a lease acquire has returned, no write without the lease id changes the blob (412
  LeaseIdMissing), including writes already in flight when the lease was taken;
- a container lease and a Delete Container without it never both succeed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from functools import partial

import pytest
from _blob_target import unique
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobClient, BlobServiceClient, ContainerClient

from conftest import start_server

ROUNDS = int(os.environ.get("EXASTOR_RACE_ROUNDS", "10"))
WRITERS = 6


@pytest.fixture(scope="module", params=[1, 4], ids=["1-worker", "4-workers"])
def conn(request, tmp_path_factory) -> str:
    """A server of its own: one worker (the check and the write race inside one process) and four
    (concurrent clients land on different processes, which share only the database)."""
    server = start_server(tmp_path_factory.mktemp(f"races{request.param}"), "--workers", str(request.param))
    yield server.connection_string
    server.stop()
    assert "Traceback" not in server.log_text(), server.log_text()[-5000:]


def client(conn: str) -> BlobServiceClient:
    """A client of its own (its own connection pool): concurrent clients reach different workers."""
    return BlobServiceClient.from_connection_string(conn, retry_total=0)


@pytest.fixture
def container(conn) -> str:
    name = unique("race")
    svc = client(conn)
    svc.create_container(name)
    yield name
    try:
        svc.delete_container(name)
    except HttpResponseError:
        pass


def blob_clients(conn: str, container: str, name: str, n: int) -> list[BlobClient]:
    return [client(conn).get_blob_client(container, name) for _ in range(n)]


def run_together(fns: list[Callable[[], object]]) -> list[object]:
    """Run the functions on threads released by one barrier; each result is a value or the exception."""
    results: list[object] = [None] * len(fns)
    barrier = threading.Barrier(len(fns))

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fns[i]()
        except Exception as exc:  # noqa: BLE001 - the caller asserts on it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def code(exc: object) -> tuple[int | None, str | None]:
    assert isinstance(exc, HttpResponseError), repr(exc)
    return exc.status_code, exc.error_code


# --- If-Match: one winner ----------------------------------------------------------------

IF_MATCH_OPS = ["put_blob", "set_metadata", "set_properties", "put_block_list", "append_block", "delete"]


@pytest.mark.parametrize("op", IF_MATCH_OPS)
def test_if_match_race_has_one_winner(conn, container, op):
    clients = blob_clients(conn, container, f"ifmatch-{op}", WRITERS)
    first = clients[0]
    for rnd in range(ROUNDS):
        if op == "append_block":
            first.create_append_blob()
            etag = first.append_block(b"base")["etag"]
        else:
            etag = first.upload_blob(b"base", overwrite=True, metadata={"w": "base"})["etag"]
        cond = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        results = run_together([_conditional_write(op, bc, i, f"round {rnd} writer {i}".encode(), cond)
                                for i, bc in enumerate(clients)])
        winners = [i for i, r in enumerate(results) if not isinstance(r, Exception)]
        assert len(winners) == 1, (op, rnd, results)
        for r in results:
            if isinstance(r, Exception):
                # a loser of a delete race may find the blob already gone
                allowed = [(412, "ConditionNotMet")] + ([(404, "BlobNotFound")] if op == "delete" else [])
                assert code(r) in allowed, (op, rnd, r)
        w = winners[0]
        if op == "delete":
            with pytest.raises(ResourceNotFoundError):
                first.get_blob_properties()
            continue
        props = first.get_blob_properties()
        assert props.etag != etag
        if op in ("put_blob", "set_metadata"):
            assert props.metadata == {"w": str(w)}
        elif op == "set_properties":
            assert props.content_settings.content_type == _content(w).content_type
        elif op == "put_block_list":
            assert first.download_blob().readall() == f"round {rnd} writer {w}".encode()
        else:
            assert first.download_blob().readall() == b"base" + f"round {rnd} writer {w}".encode()


def _conditional_write(op: str, bc: BlobClient, i: int, body: bytes, cond: dict) -> Callable[[], object]:
    return {
        "put_blob": lambda: bc.upload_blob(body, overwrite=True, metadata={"w": str(i)}, **cond),
        "set_metadata": lambda: bc.set_blob_metadata({"w": str(i)}, **cond),
        "set_properties": lambda: bc.set_http_headers(_content(i), **cond),
        "put_block_list": lambda: _commit_one_block(bc, i, body, cond),
        "append_block": lambda: bc.append_block(body, **cond),
        "delete": lambda: bc.delete_blob(**cond),
    }[op]


def _content(i: int):  # noqa: ANN202 - ContentSettings
    from azure.storage.blob import ContentSettings
    return ContentSettings(content_type=f"application/x-writer-{i}")


def _commit_one_block(bc: BlobClient, i: int, body: bytes, cond: dict) -> object:
    block_id = f"w{i:04d}"
    bc.stage_block(block_id, body)
    return bc.commit_block_list([BlobBlock(block_id)], **cond)


def test_if_none_match_star_race_creates_once(conn, container):
    for rnd in range(ROUNDS):
        clients = blob_clients(conn, container, f"create-{rnd}", WRITERS)
        results = run_together([
            partial(bc.upload_blob, f"writer {i}".encode(), metadata={"w": str(i)})  # If-None-Match: *
            for i, bc in enumerate(clients)])
        winners = [i for i, r in enumerate(results) if not isinstance(r, Exception)]
        assert len(winners) == 1, (rnd, results)
        for r in results:
            if isinstance(r, Exception):
                assert code(r) == (409, "BlobAlreadyExists"), r
        assert clients[0].download_blob().readall() == f"writer {winners[0]}".encode()


# --- leases against writers without the lease id -------------------------------------------

LEASE_OPS = ["put_blob", "set_metadata", "set_properties", "put_block_list", "append_block", "snapshot_meta"]


@pytest.mark.parametrize("op", LEASE_OPS)
def test_lease_acquired_under_running_writers(conn, container, op):
    """Writers without a lease id hammer a blob; another client takes a lease. Every write the
    server commits after the acquire would change what the lease holder sees: none may."""
    name = f"leased-{op}"
    owner = client(conn).get_blob_client(container, name)
    writers = blob_clients(conn, container, name, 4)
    payload = os.urandom(256 << 10)  # a body long enough that writes are in flight when the lease lands
    for rnd in range(max(ROUNDS // 2, 4)):
        if op == "append_block":
            owner.create_append_blob()
        else:
            owner.upload_blob(b"start", overwrite=True)
        stop = threading.Event()
        refused = [0] * len(writers)
        errors: list[object] = []
        threads = [threading.Thread(target=_write_until_refused, args=(op, bc, i, payload, stop, refused, errors))
                   for i, bc in enumerate(writers)]
        for t in threads:
            t.start()
        time.sleep(0.05)
        lease = owner.acquire_lease(lease_duration=-1)
        seen = _state(owner)
        deadline = time.monotonic() + 60
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        assert all(n >= 3 for n in refused), f"writers not refused after the acquire: {refused}"
        assert _state(owner) == seen, f"{op} round {rnd}: a write without the lease id landed after the acquire"
        lease.break_lease(lease_break_period=0)


def _write_until_refused(op: str, bc: BlobClient, i: int, payload: bytes, stop: threading.Event,
                         refused: list[int], errors: list[object]) -> None:
    """Write without a lease id until refused three times (or stopped); other errors are collected."""
    n = 0
    while not stop.is_set():
        n += 1
        try:
            if op == "put_blob":
                bc.upload_blob(payload + f"{i}.{n}".encode(), overwrite=True)
            elif op == "set_metadata":
                bc.set_blob_metadata({"w": f"{i}.{n}"})
            elif op == "set_properties":
                bc.set_http_headers(_content(i * 100_000 + n))
            elif op == "put_block_list":
                _commit_one_block(bc, i, payload + f"{i}.{n}".encode(), {})
            elif op == "append_block":
                bc.append_block(f"{i}.{n};".encode())
            else:
                bc.create_snapshot(metadata={"w": f"{i}.{n}"})  # needs no lease id: never refused
                bc.set_blob_metadata({"w": f"{i}.{n}"})
        except HttpResponseError as exc:
            if code(exc) == (412, "LeaseIdMissing"):
                refused[i] += 1
                if refused[i] >= 3:
                    return
            elif op == "put_block_list" and code(exc) == (400, "InvalidBlockList"):
                continue  # another writer's commit discarded this writer's staged block: try again
            else:
                errors.append(exc)
                return


def _state(bc: BlobClient) -> tuple:
    props = bc.get_blob_properties()
    return (props.etag, props.last_modified, props.size, dict(props.metadata),
            props.content_settings.content_type, bc.download_blob().readall())


def test_lease_refuses_writes_on_every_worker(conn, container):
    """After an acquire returns, a write without the lease id fails whichever gateway worker serves it."""
    owner = client(conn).get_blob_client(container, "every-worker")
    owner.upload_blob(b"v1")
    lease = owner.acquire_lease(lease_duration=-1)
    for bc in blob_clients(conn, container, "every-worker", 16):
        with pytest.raises(HttpResponseError) as ei:
            bc.upload_blob(b"v2", overwrite=True)
        assert code(ei.value) == (412, "LeaseIdMissing")
        with pytest.raises(HttpResponseError) as ei:
            bc.set_blob_metadata({"a": "b"})
        assert code(ei.value) == (412, "LeaseIdMissing")
        with pytest.raises(HttpResponseError) as ei:
            bc.delete_blob()
        assert code(ei.value) == (412, "LeaseIdMissing")
        assert bc.get_blob_properties().lease.state == "leased"
    other = client(conn)
    listed = {b.name: b.lease.state for b in other.get_container_client(container).list_blobs()}
    assert listed["every-worker"] == "leased"
    container_lease = other.get_container_client(container).acquire_lease(lease_duration=-1)
    for svc in (client(conn) for _ in range(8)):
        assert [c.lease.state for c in svc.list_containers(name_starts_with=container)] == ["leased"]
    container_lease.release()
    owner.upload_blob(b"v3", overwrite=True, lease=lease)
    assert owner.download_blob().readall() == b"v3"
    lease.release()


def test_lease_id_mismatch_after_change_race(conn, container):
    """A write carrying a lease id the lease no longer has fails, whichever order the change and the
    write commit in: the write either commits under the old id (before the change) or is refused."""
    owner = client(conn).get_blob_client(container, "changed")
    writer = client(conn).get_blob_client(container, "changed")
    for rnd in range(ROUNDS):
        owner.upload_blob(b"v0", overwrite=True)
        lease = owner.acquire_lease(lease_duration=-1)
        old_id = lease.id
        new_id = f"00000000-0000-0000-0000-{rnd:012d}"
        results = run_together([partial(lease.change, new_id),
                                partial(writer.set_blob_metadata, {"r": str(rnd)}, lease=old_id)])
        assert results[0] is None, results
        if isinstance(results[1], Exception):
            assert code(results[1]) == (412, "LeaseIdMismatchWithBlobOperation"), results[1]
        after = writer.get_blob_properties()
        # whatever happened, the id the write named is no longer the lease's
        with pytest.raises(HttpResponseError) as ei:
            writer.set_blob_metadata({"late": "1"}, lease=old_id)
        assert code(ei.value) == (412, "LeaseIdMismatchWithBlobOperation")
        assert writer.get_blob_properties().metadata == after.metadata
        lease.break_lease(lease_break_period=0)


# --- container lease against Delete Container ----------------------------------------------

def test_container_lease_and_delete_never_both_win(conn):
    for rnd in range(ROUNDS * 2):
        name = unique("racec")
        a: ContainerClient = client(conn).get_container_client(name)
        b: ContainerClient = client(conn).get_container_client(name)
        a.create_container()
        acquired, deleted = run_together([partial(a.acquire_lease, lease_duration=-1), b.delete_container])
        lease_ok = not isinstance(acquired, Exception)
        delete_ok = not isinstance(deleted, Exception)
        assert not (lease_ok and delete_ok), f"round {rnd}: the lease and the delete both succeeded"
        if lease_ok:
            assert code(deleted) == (412, "LeaseIdMissing"), deleted
            assert a.get_container_properties().lease.state == "leased"
            a.delete_container(lease=acquired)
        else:
            assert delete_ok, (acquired, deleted)
            assert code(acquired)[0] == 404, acquired
