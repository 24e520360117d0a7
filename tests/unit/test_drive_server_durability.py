"""The drive server's durability (drives/server.py ``_call``): a remote fsync, directory fsync or
``append`` with ``sync=1`` must reach its LocalDrive's fsync before the server answers. Syscall
contract tests, as LocalDrive's own (tests/unit/test_drive_seam.py ``local_``): the server runs in
this process (uvicorn on a thread, on a socket bound before it starts, so the first request simply
waits in the backlog), a RemoteDrive talks to it over loopback, and every os.fsync is recorded by the
path of its descriptor. The power-cut scenario runs local drives, so without these nothing would see
the server drop a forwarded fsync; the mutation check (tests/faults/fsync_mutation.py) disables each
fsync in ``_call`` in turn and expects a test here to fail."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn

from exastor.drives.local import LocalDrive
from exastor.drives.remote import RemoteDrive
from exastor.drives.server import DriveServer
from exastor.drives.wire import KEY_BYTES


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[RemoteDrive, str]]:
    """A RemoteDrive on an in-process drive server serving one LocalDrive; with the drive's root."""
    key = os.urandom(KEY_BYTES)
    local = LocalDrive(tmp_path / "d0")
    app = DriveServer({"d0": local}, key, threads=4)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # ready before the server runs: requests wait in the backlog until it accepts
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_config=None, access_log=False,
                                           timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name="in-process-drive-server")
    thread.start()
    drive = RemoteDrive(f"http://127.0.0.1:{port}/d0", key)
    try:
        drive.format(b"{}")
        yield drive, str(local.root)
    finally:
        drive.close()
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        app.pool.shutdown(wait=True)
    assert not thread.is_alive(), "the in-process drive server did not stop"


@pytest.fixture
def fsyncs(monkeypatch) -> list[str]:
    """The path of every os.fsync / os.fdatasync's descriptor, in any thread (the server's pool)."""
    seen: list[str] = []
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def fsync(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def fdatasync(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    return seen


def test_a_remote_fsync_reaches_the_file_on_the_server(served, fsyncs):
    drive, root = served
    drive.create("segments/a", b"head")
    drive.append("segments/a", 4, b"x" * 1000)
    fsyncs.clear()
    drive.fsync("segments/a")   # answered: the server's LocalDrive fsynced the file
    assert f"{root}/segments/a" in fsyncs, fsyncs


def test_an_append_with_sync_is_fsynced_before_the_answer(served, fsyncs):
    """``append`` with ``sync=1`` (one round trip for a durable append, drives/server.py)."""
    drive, root = served
    drive.create("segments/b", b"head")
    fsyncs.clear()
    drive._write("segments/b", "append", {"name": "segments/b", "offset": 4, "sync": 1}, b"y" * 1000)
    assert f"{root}/segments/b" in fsyncs, fsyncs
    assert drive.read("segments/b") == b"head" + b"y" * 1000


def test_a_remote_sync_dir_fsyncs_the_directory_on_the_server(served, fsyncs):
    drive, root = served
    drive.create("segments/c", b"head")
    fsyncs.clear()
    drive.sync_dir("segments")
    assert fsyncs == [f"{root}/segments"], fsyncs


def test_a_remote_put_is_fsynced_before_its_link_and_the_directory_after(served, fsyncs):
    """Not a server site (``put`` forwards to LocalDrive.put whole), checked for completeness."""
    drive, root = served
    fsyncs.clear()
    drive.put("shards/s", b"z" * 100)
    assert any(p.startswith(f"{root}/shards/s.tmp") for p in fsyncs), fsyncs
    assert fsyncs[-1] == f"{root}/shards", fsyncs
