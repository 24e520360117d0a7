"""The server's processes: workers die with their master, SIGTERM drains within shutdown_timeout,
one server per data directory, and readiness tells a load balancer the truth."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from conftest import exastor, read_response, s3_client, signed_head, start_server
from exastor.datadir.lock import server_running


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


def _running(pid: int) -> bool:
    """Alive and not a zombie (any of its threads)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                    return True
        except OSError:
            continue
    return False


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _ready(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/minio/health/ready", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _until(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


def test_kill9_of_the_master_takes_its_workers_down(tmp_path):
    server = start_server(tmp_path, "--workers", "2")
    s3 = s3_client(server)
    s3.create_bucket(Bucket="orphans")
    s3.put_object(Bucket="orphans", Key="k", Body=b"kept")
    workers = _children(server.proc.pid)
    assert len(workers) == 2, workers
    os.kill(server.proc.pid, signal.SIGKILL)  # the master alone, as an OOM killer or an operator would
    server.proc.wait(timeout=10)
    _until(lambda: not any(_running(w) for w in workers), 15, "workers outlived their master")
    _until(lambda: not server_running(server.data_dir), 5, "the data directory's server lock")
    assert not _listening(server.s3_port) and not _listening(server.blob_port)
    repair = exastor("fsck", "--repair", data_dir=server.data_dir, check=False)
    assert repair.returncode == 0, repair.stdout + repair.stderr
    server.start()  # a new server on the same data and ports
    try:
        assert s3_client(server).get_object(Bucket="orphans", Key="k")["Body"].read() == b"kept"
    finally:
        server.stop()


def test_a_second_server_on_the_same_data_is_refused(tmp_path):
    server = start_server(tmp_path)
    try:
        s3_client(server).create_bucket(Bucket="one")
        second = subprocess.run([sys.executable, "-m", "exastor.cli", "serve", "--data", str(server.data_dir),
                                 "--s3-port", "0", "--blob-port", "0"], capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert f"pid {server.proc.pid}" in second.stderr and "one server per data directory" in second.stderr
        assert "Traceback" not in second.stderr
        assert [b["Name"] for b in s3_client(server).list_buckets()["Buckets"]] == ["one"]  # untouched
    finally:
        server.stop()


def test_sigterm_finishes_requests_in_flight_and_cuts_a_stalled_upload_at_shutdown_timeout(tmp_path):
    timeout = 3.0
    server = start_server(tmp_path, "--workers", "2", "--shutdown-timeout", str(timeout))
    s3 = s3_client(server)
    s3.create_bucket(Bucket="drain")
    body = os.urandom(300_000)

    def upload(key: str, length: int, first: bytes) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", server.s3_port))
        sock.sendall(signed_head(server, "PUT", f"/drain/{key}", length, {"expect": "100-continue"}))
        status, _, _ = read_response(sock)  # 100 Continue: the handler is reading this body now
        assert status == 100
        sock.sendall(first)
        return sock

    finishing = upload("finished", len(body), body[:100_000])
    stalled = upload("stalled", 10 << 20, b"x" * 1000)
    try:
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)  # the master only: it tells the workers
        finishing.sendall(body[100_000:])
        status, _, reply = read_response(finishing)
        assert status == 200, reply
        server.proc.wait(timeout=timeout + 20)
        elapsed = time.monotonic() - started
        assert server.proc.returncode == 0
        # bounded by the timeout (not minutes), with room for a loaded machine to exit the processes
        assert elapsed < timeout + 6, f"SIGTERM took {elapsed:.1f} s with shutdown_timeout {timeout}"
        stalled.settimeout(5)
        try:
            assert stalled.recv(1) == b""  # cut
        except ConnectionResetError:
            pass
    finally:
        finishing.close()
        stalled.close()
    server.start()
    try:
        s3 = s3_client(server)
        assert s3.get_object(Bucket="drain", Key="finished")["Body"].read() == body
        assert "Contents" not in s3.list_objects_v2(Bucket="drain", Prefix="stalled")
    finally:
        server.stop()
    assert "Traceback" not in server.log_text()


def test_readiness_follows_the_drives_and_the_metadata(tmp_path):
    faults = tmp_path / "faults.json"
    faults.write_text("{}")
    server = start_server(tmp_path, env={"EXASTOR_FAULTS": str(faults)})
    try:
        for port in (server.s3_port, server.blob_port):
            assert _ready(port) == (200, "")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/minio/health/live", timeout=10) as r:
                assert r.status == 200
        # The only drive stops taking writes: every PUT would fail, so not ready.
        faults.write_text(json.dumps({str((server.data_dir / "drive0").resolve()): {"full": True}}))
        _until(lambda: _ready(server.s3_port)[0] == 503, 15, "readiness with no writable drive")
        # Each worker caches its answer for health.CACHE_S, and the Blob port may be another worker's:
        # one that answered 200 just before may say so once more. The 503 itself must give the reason.
        answers: list[tuple[int, str]] = []
        _until(lambda: answers.append(_ready(server.blob_port)) or answers[-1][0] == 503, 15,
               "readiness with no writable drive, on Blob")
        assert json.loads(answers[-1][1])["reason"] == "0 drive(s) take writes, 1 needed"
        faults.write_text("{}")
        _until(lambda: _ready(server.s3_port)[0] == 200, 15, "readiness once the drive takes writes again")
        # The metadata's disk goes away (as an unmounted disk would; open connections would still read).
        meta, gone = server.data_dir / "meta", server.data_dir / "meta.unmounted"
        meta.rename(gone)
        try:
            _until(lambda: _ready(server.s3_port)[0] == 503, 15, "readiness with the metadata gone")
            _until(lambda: "metadata unreachable" in _ready(server.blob_port)[1], 15, "the reason, on Blob")
        finally:
            gone.rename(meta)
        _until(lambda: _ready(server.s3_port)[0] == 200, 15, "readiness once the metadata is back")
        assert s3_client(server).list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
    finally:
        server.stop()
