"""The drive server and RemoteDrive beyond the shared contract (tests/unit/test_drive_seam.py):
never open, replays refused, unreachable is never "not found", a restart fails the fsync that
would cover writes made before it, and only a signed answer is believed."""

from __future__ import annotations

import errno
import http.client
import http.server
import threading
import time

import pytest

from drive_servers import DriveServerProcess, cluster_key
from exastor.drives import AnswerLost, DriveUnreachable, FsyncFailed, ServerRestarted
from exastor.drives.remote import RemoteDrive
from exastor.drives.wire import H_AUTH, body_digest, create_key, load_key, request_headers


@pytest.fixture
def served(tmp_path):
    server = DriveServerProcess({"d0": tmp_path / "d0", "d1": tmp_path / "d1"}, cluster_key(tmp_path),
                                tmp_path / "server.log")
    server.start()
    drive = RemoteDrive(server.url("d0"), load_key(server.key_file))
    drive.format(b"{}")
    yield server, drive
    drive.close()
    server.stop()


def _raw(server: DriveServerProcess, method: str, target: str, body: bytes = b"",
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_unsigned_wrongly_signed_stale_and_replayed_requests_are_refused(served, tmp_path):
    server, drive = served
    key = load_key(server.key_file)
    path, query = "/d0/put", "name=shards%2Fx"
    assert _raw(server, "POST", f"{path}?{query}", b"evil")[0] == 401  # unsigned
    other = tmp_path / "other.key"
    create_key(other)
    forged = request_headers(load_key(other), "POST", path, query, body_digest(b"evil"))
    assert _raw(server, "POST", f"{path}?{query}", b"evil", forged)[0] == 401  # another cluster's key
    good = request_headers(key, "POST", path, query, body_digest(b"good"))
    tampered = dict(good, **{"x-exastor-body": body_digest(b"other")})
    assert _raw(server, "POST", f"{path}?{query}", b"other", tampered)[0] == 401  # digest not the signed one
    stale = request_headers(key, "POST", path, query, body_digest(b"evil"))
    stale["x-exastor-date"] = str(time.time_ns() - 120 * 10**9)
    assert _raw(server, "POST", f"{path}?{query}", b"evil", stale)[0] == 401
    assert drive.list("shards") == [], "nothing reached the drive"
    status, _ = _raw(server, "POST", f"{path}?{query}", b"good", good)
    assert status == 200 and drive.read("shards/x") == b"good"
    assert drive.unlink("shards/x")
    assert _raw(server, "POST", f"{path}?{query}", b"good", good)[0] == 401  # the same request again: a replay
    assert drive.list("shards") == [], "the replay did not write"
    # a signed request whose body is not the one it signed
    sneaky = request_headers(key, "POST", path, query, body_digest(b"good"))
    assert _raw(server, "POST", f"{path}?{query}", b"bad!", sneaky)[0] == 400
    assert drive.list("shards") == []
    assert "refused POST /d0/put" in server.log_text()


def test_a_client_with_another_key_sees_the_drive_unreachable_never_absent(served, tmp_path):
    server, _ = served
    other = tmp_path / "other.key"
    create_key(other)
    stranger = RemoteDrive(server.url("d0"), load_key(other))
    with pytest.raises(DriveUnreachable) as why:
        stranger.stat("exastor-drive.json")
    assert not isinstance(why.value, FileNotFoundError) and "signature" in str(why.value)
    assert not stranger.reachable()


def test_a_dead_server_is_unreachable_then_serves_again_after_a_restart(served):
    server, drive = served
    drive.create("segments/a", b"abc")
    drive.fsync("segments/a")
    server.kill()
    for call in (lambda: drive.read("segments/a"), lambda: drive.stat("segments/nothing")):
        with pytest.raises(DriveUnreachable) as why:
            call()
        assert not isinstance(why.value, FileNotFoundError)
    assert not drive.reachable()
    server.start()
    deadline = time.monotonic() + 15  # the client's back-off is at most 5 s
    while not drive.reachable():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert drive.read("segments/a") == b"abc"
    with pytest.raises(FileNotFoundError):  # a positive, signed answer: absent
        drive.stat("segments/nothing")


def test_a_restart_between_write_and_fsync_fails_that_fsync_for_good(served):
    """The writes may have died with the old process's page cache (a power cut): an fsync after the
    restart must not report them durable."""
    server, drive = served
    drive.create("segments/a", b"head")
    drive.fsync("segments/a")
    drive.append("segments/a", 4, b"unsynced")
    server.kill()
    server.start()
    assert drive.probe()
    with pytest.raises(ServerRestarted) as refused:  # its own code, never the disk's EIO: not a failed drive
        drive.fsync("segments/a")
    assert isinstance(refused.value, FsyncFailed) and not isinstance(refused.value, AnswerLost)
    with pytest.raises(ServerRestarted):             # final for that file, and still says why
        drive.append("segments/a", 12, b"more")
    other = RemoteDrive(server.url("d0"), load_key(server.key_file))
    other.create("segments/b", b"fresh")  # a file written after the restart syncs normally
    other.fsync("segments/b")


def test_a_lost_answer_to_a_write_is_final_for_that_file(served):
    server, drive = served
    drive.create("segments/a", b"head")
    server.kill()
    with pytest.raises(DriveUnreachable):
        drive.append("segments/a", 4, b"x")
    server.start()
    assert drive.probe()
    with pytest.raises(FsyncFailed):  # did the append happen? unknown: never write or fsync it again
        drive.fsync("segments/a")


def test_a_drive_not_served_there_and_a_foreign_404_are_unreachable(served):
    server, _ = served
    key = load_key(server.key_file)
    with pytest.raises(DriveUnreachable, match="no drive"):
        RemoteDrive(server.url("nope"), key).stat("")

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        stray = RemoteDrive(f"http://127.0.0.1:{httpd.server_address[1]}/d0", key)
        with pytest.raises(DriveUnreachable) as why:
            stray.stat("exastor-drive.json")
        assert not isinstance(why.value, FileNotFoundError)
    finally:
        httpd.shutdown()


def test_errors_travel_with_their_errno(served):
    _, drive = served
    drive.create("segments/a", b"x")
    for call, code in ((lambda: drive.create("segments/a"), errno.EEXIST),
                       (lambda: drive.append("segments/a", 0, b"y"), errno.EINVAL),
                       (lambda: drive.read("segments/none"), errno.ENOENT)):
        with pytest.raises(OSError) as err:
            call()
        assert err.value.errno == code and not isinstance(err.value, DriveUnreachable)
    assert H_AUTH == "authorization"


def test_a_forked_worker_never_shares_its_parents_connections(served):
    """Gateway workers are forked after the master used the drives: each must open its own
    connections, or two processes' requests would interleave on one socket."""
    import os

    _, drive = served
    drive.create("segments/a", b"x" * 1000)
    assert drive.read("segments/a") == b"x" * 1000  # the parent now holds a pooled connection
    pid = os.fork()
    if pid == 0:  # the child: many requests while the parent makes its own
        inherited = drive._pool
        ok = all(drive.read("segments/a") == b"x" * 1000 for _ in range(200))
        os._exit(0 if ok and drive._pool is not inherited else 1)
    parent_ok = all(drive.pread("segments/a", 10, 10) == b"x" * 10 for _ in range(200))
    _, status = os.waitpid(pid, 0)
    assert parent_ok and os.waitstatus_to_exitcode(status) == 0


def test_https_drive_servers_verify_the_certificate_and_still_sign(tmp_path):
    from exastor.gateway.tls import self_signed

    cert, key_pem, ca, _ = self_signed(tmp_path / "tls-home", "127.0.0.1")
    server = DriveServerProcess({"d0": tmp_path / "d0"}, cluster_key(tmp_path), tmp_path / "server.log",
                                tls=(cert, key_pem, ca))
    server.start()
    try:
        assert server.url("d0").startswith("https://")
        drive = RemoteDrive(server.url("d0"), load_key(server.key_file), ca_file=str(ca))
        drive.format(b"{}")
        drive.put("shards/s", b"over tls")
        assert drive.read("shards/s") == b"over tls"
        untrusting = RemoteDrive(server.url("d0"), load_key(server.key_file))  # the system's CAs only
        with pytest.raises(DriveUnreachable, match="(?i)certificate"):
            untrusting.read("shards/s")
        drive.close()
    finally:
        server.stop()


def test_traffic_counters_count_body_bytes_per_operation(served):
    """What bench/cluster_roles.py reads to count the bytes a write puts on the network."""
    _, drive = served
    before = drive.traffic()
    drive.create("segments/t", b"")
    drive.append("segments/t", 0, b"x" * 1000)
    drive.append("segments/t", 1000, b"y" * 24)
    assert drive.pread("segments/t", 10, 100) == b"x" * 100
    with pytest.raises(FileNotFoundError):
        drive.pread("segments/absent", 0, 1)
    after = drive.traffic()
    assert after["append"]["requests"] - before.get("append", {}).get("requests", 0) == 2
    assert after["append"]["received_bytes"] - before.get("append", {}).get("received_bytes", 0) == 1024
    assert after["pread"]["requests"] - before.get("pread", {}).get("requests", 0) == 2  # the refusal too
    assert after["pread"]["sent_bytes"] - before.get("pread", {}).get("sent_bytes", 0) >= 100
    assert "traffic" not in after, "reading the counters is not counted"


def test_a_scrub_digest_leaves_the_bytes_on_the_drive_servers_host(served):
    """Scrub over a drive server (engine/shards.verify_file) asks for block digests: 8 bytes a block
    cross the network, not the block; a request for too much at once, or for tiny blocks, is refused."""
    import xxhash

    _, drive = served
    body = bytes(range(256)) * 4096  # 1 MiB
    drive.put("shards/scrubbed", body)
    before = drive.traffic()
    sums = drive.block_digests("shards/scrubbed", 0, len(body), 65536)
    assert sums == [xxhash.xxh3_64_intdigest(body[i:i + 65536]) for i in range(0, len(body), 65536)]
    after = drive.traffic()
    assert after["digests"]["sent_bytes"] - before.get("digests", {}).get("sent_bytes", 0) == 16 * 8
    assert after.get("pread", {}).get("sent_bytes", 0) == before.get("pread", {}).get("sent_bytes", 0)
    for length, block in ((1 << 30, 65536), (65536, 512)):
        with pytest.raises(OSError) as refused:
            drive.block_digests("shards/scrubbed", 0, length, block)
        assert refused.value.errno == errno.EINVAL


def test_a_body_digest_in_a_forked_worker_never_waits_for_the_parents_threads():
    """A gateway's master hashes large bodies before it forks (recovery seals segments over drive
    servers); its workers must hash after the fork. blake3's multithreaded mode deadlocked there."""
    import os
    import signal

    from exastor.drives.wire import body_digest

    data = os.urandom(4 << 20)
    expected = body_digest(data)
    pid = os.fork()
    if pid == 0:
        os._exit(0 if body_digest(data) == expected else 1)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child's body digest hung")



def test_a_put_body_reaches_the_drive_with_o_direct(served, tmp_path):
    """A shard sent to a drive server (its data a page multiple, then a short trailer) is received
    into a page-aligned buffer and written with O_DIRECT, as on a local drive: the data never enters
    the server's page cache (fincore counts the file's resident bytes: the trailer's page at most)."""
    import shutil
    import subprocess

    if shutil.which("fincore") is None:
        pytest.skip("fincore (util-linux) is not installed")
    _skip_without_o_direct(tmp_path)
    server, drive = served
    data = bytes(range(256)) * (1 << 13)  # 2 MiB
    drive.put("shards/direct", [memoryview(data), b"a trailer"])
    path = tmp_path / "d0" / "shards" / "direct"
    resident = int(subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES", str(path)],
                                  capture_output=True, text=True, check=True).stdout.split()[0])
    assert resident <= 8192, f"{resident} bytes of the shard went through the page cache"
    assert path.read_bytes() == data + b"a trailer"


def _skip_without_o_direct(where):
    """Skip where ``where``'s filesystem refuses O_DIRECT (tmpfs): the drive writes through the page
    cache there by design (drives/local.py ``_put_direct``)."""
    import os

    from exastor.drives import aligned_buffer

    fd = -1
    try:
        fd = os.open(where / "direct.probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
        os.write(fd, aligned_buffer(4096))
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        pytest.skip(f"{where}'s filesystem refuses O_DIRECT")
    finally:
        if fd >= 0:
            os.close(fd)
