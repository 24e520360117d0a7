"""Hostile and broken clients on raw sockets: huge heads, slow heads, trickled bodies, unread
responses, too many connections or requests. Each gets its protocol's 4xx/503 or a cut connection,
within a bounded time; never a 500, a traceback or a hung worker."""

from __future__ import annotations

import os
import socket
import time

import pytest

from conftest import read_response, s3_client, signed_head, start_server

TIMEOUT_S = 2  # header_timeout and body_timeout of these servers
SWEEP_S = 1    # the limits are checked once a second


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("limits"), "--workers", "1",
                       env={"EXASTOR_HEADER_TIMEOUT": str(TIMEOUT_S), "EXASTOR_BODY_TIMEOUT": str(TIMEOUT_S),
                            "EXASTOR_BODY_MIN_RATE": "1024", "EXASTOR_MAX_HEADER_BYTES": "16384"})
    s3_client(srv).create_bucket(Bucket="limits")
    yield srv
    srv.stop()
    assert "Traceback" not in srv.log_text()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def _closed_within(sock: socket.socket, seconds: float) -> bytes:
    """Everything the server sent until it closed the connection; fails if it is still open after ``seconds``."""
    deadline = time.monotonic() + seconds
    got = b""
    while True:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            return got
        except TimeoutError:
            pytest.fail(f"connection still open after {seconds} s (got {got[:200]!r})")
        if not piece:
            return got
        got += piece


def _alive(server) -> None:
    s3 = s3_client(server)
    s3.put_object(Bucket="limits", Key="alive", Body=b"ok")
    assert s3.get_object(Bucket="limits", Key="alive")["Body"].read() == b"ok"


@pytest.mark.parametrize("api", ["s3", "blob"])
def test_a_megabyte_of_headers_is_answered_431(server, api):
    port = server.s3_port if api == "s3" else server.blob_port
    with _connect(port) as sock:
        head = b"GET /limits/x HTTP/1.1\r\nhost: x\r\n" + b"".join(b"x-pad-%d: %s\r\n" % (i, b"a" * 1000)
                                                                    for i in range(1024))
        try:
            sock.sendall(head)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the rest was sent
        status, headers, body = read_response(sock)
    assert status == 431
    code = b"RequestHeaderSectionTooLarge" if api == "s3" else b"RequestHeaderFieldsTooLarge"
    assert b"<Code>" + code + b"</Code>" in body
    assert headers["connection"] == "close"
    assert headers["x-amz-request-id" if api == "s3" else "x-ms-request-id"]
    _alive(server)


@pytest.mark.parametrize("api", ["s3", "blob"])
def test_a_request_that_is_not_http_gets_the_protocols_400(server, api):
    with _connect(server.s3_port if api == "s3" else server.blob_port) as sock:
        sock.sendall(b"GET /limits/x HTTP/1.1\r\nhost: x\r\nbad header line\r\n\r\n")
        status, headers, body = read_response(sock)
    assert status == 400 and headers["connection"] == "close"
    assert b"<Code>" + (b"InvalidRequest" if api == "s3" else b"InvalidInput") + b"</Code>" in body
    _alive(server)


def test_a_head_under_the_limit_is_served(server):
    with _connect(server.s3_port) as sock:
        sock.sendall(b"GET /limits/x HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 12000 + b"\r\n\r\n")
        status, _, body = read_response(sock)
    assert status == 403, body  # unsigned: refused by authentication, not by the head limit


def test_a_head_sent_one_byte_a_second_is_cut(server):
    with _connect(server.s3_port) as sock:
        sock.sendall(b"GET /limits/x HTTP/1.1\r\n")
        started = time.monotonic()
        deadline = started + TIMEOUT_S + 2 * SWEEP_S + 6
        got = b""
        try:
            while time.monotonic() < deadline:  # one header byte every 0.3 s, until the server gives up
                sock.sendall(b"x")
                sock.settimeout(0.3)
                try:
                    piece = sock.recv(65536)
                except TimeoutError:
                    continue
                got += piece
                if not piece or b"\r\n\r\n" in got:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        got += _closed_within(sock, 5)
        elapsed = time.monotonic() - started
    assert got.startswith(b"HTTP/1.1 408 "), got[:200]
    assert b"<Code>RequestTimeout</Code>" in got
    assert elapsed < TIMEOUT_S + 2 * SWEEP_S + 4, elapsed  # the limit plus a sweep, not the client's pace
    _alive(server)


def test_a_connection_that_never_sends_a_request_is_closed(server):
    with _connect(server.s3_port) as sock:
        started = time.monotonic()
        got = _closed_within(sock, TIMEOUT_S + 2 * SWEEP_S + 2)
    assert got.startswith(b"HTTP/1.1 408 ") and time.monotonic() - started >= TIMEOUT_S - 0.1


def test_a_body_trickled_one_byte_at_a_time_is_cut_and_stores_nothing(server):
    with _connect(server.s3_port) as sock:
        sock.sendall(signed_head(server, "PUT", "/limits/trickled", 1 << 20, {"expect": "100-continue"}))
        assert read_response(sock)[0] == 100
        started = time.monotonic()
        deadline = started + 2 * TIMEOUT_S + 2 * SWEEP_S + 6
        cut = False
        while time.monotonic() < deadline and not cut:
            try:
                sock.sendall(b"x")
                sock.settimeout(0.2)
                cut = sock.recv(1) == b""
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                cut = True
    assert cut, "a body trickled at 5 B/s was not cut"
    assert time.monotonic() - started < 2 * TIMEOUT_S + 2 * SWEEP_S + 4
    listed = s3_client(server).list_objects_v2(Bucket="limits", Prefix="trickled")
    assert "Contents" not in listed
    _alive(server)


def test_a_client_that_stops_reading_its_response_is_cut(server):
    s3 = s3_client(server)
    s3.put_object(Bucket="limits", Key="big", Body=os.urandom(64 << 20))
    with _connect(server.s3_port) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(signed_head(server, "GET", "/limits/big", 0))
        # Read nothing: once the socket buffers are full the server waits on us; it must give up.
        deadline = time.monotonic() + 2 * TIMEOUT_S + 4 * SWEEP_S + 10
        while "read none of the response" not in server.log_text():
            assert time.monotonic() < deadline, "the server still waits on a client that reads nothing"
            time.sleep(0.1)
        received = len(_closed_within(sock, 10))
    assert received < 64 << 20
    _alive(server)


def test_connections_over_the_per_client_limit_get_503_slowdown_with_retry_after(tmp_path):
    server = start_server(tmp_path, "--workers", "1", env={"EXASTOR_MAX_CONNECTIONS_PER_CLIENT": "3"})
    held = []
    try:
        held = [_connect(server.s3_port) for _ in range(3)]
        for port, code in ((server.s3_port, b"SlowDown"), (server.blob_port, b"ServerBusy")):
            with _connect(port) as sock:
                sock.sendall(b"GET /limits/x HTTP/1.1\r\nhost: x\r\n\r\n")
                status, headers, body = read_response(sock)
            assert status == 503 and headers["retry-after"] == "1" and b"<Code>" + code + b"</Code>" in body
        for sock in held:
            sock.close()
        held = []
        deadline = time.monotonic() + 10
        while True:  # the server notices the closes when its loop reads them
            try:
                s3_client(server).list_buckets()
                break
            except Exception:  # noqa: BLE001 - 503 until then
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        for sock in held:
            sock.close()
        server.stop()


def test_requests_over_max_requests_get_503_slowdown(tmp_path):
    server = start_server(tmp_path, "--workers", "1", env={"EXASTOR_MAX_REQUESTS": "2"})
    uploads = []
    try:
        s3_client(server).create_bucket(Bucket="busy")
        for i in range(2):  # two uploads in flight: their handlers are reading the bodies
            sock = _connect(server.s3_port)
            sock.sendall(signed_head(server, "PUT", f"/busy/u{i}", 1000, {"expect": "100-continue"}))
            assert read_response(sock)[0] == 100
            uploads.append(sock)
        with _connect(server.s3_port) as sock:
            sock.sendall(signed_head(server, "GET", "/busy/u0", 0))
            status, headers, body = read_response(sock)
        assert status == 503 and b"<Code>SlowDown</Code>" in body and headers["retry-after"] == "1"
        for sock in uploads:
            sock.sendall(b"y" * 1000)
            assert read_response(sock)[0] == 200
        assert s3_client(server).get_object(Bucket="busy", Key="u1")["Body"].read() == b"y" * 1000
    finally:
        for sock in uploads:
            sock.close()
        server.stop()
    assert "Traceback" not in server.log_text()
