"""The fuzzing gate: a seeded slice of bench/fuzz.py against a live server, in the normal suite.

Malformed and hostile S3 and Blob requests (methods, paths, queries, headers, XML and JSON bodies,
HTTP and aws-chunked framing, SigV4 / presigned / V2 / Shared Key / SAS signatures, most signed
after mutation so they reach the handlers): no 500, no hang, readiness answers after every request,
no worker dies, and no canary object changes unless a request the server accepted wrote it. The long
run (>= 100,000 requests) is ``python bench/fuzz.py --requests 100000 --seed N`` (docs/security.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import exastor, start_server

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.fuzz import Fuzzer, Generator, Target  # noqa: E402

SEED = 20261204
REQUESTS = 2000


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory):
    """A server of its own: the fuzz changes bucket policies, ACLs and service properties, which
    other tests sharing the session server must not see."""
    server = start_server(tmp_path_factory.mktemp("fuzz"))
    exastor("user", "add", "alt", "--access-key", server.alt_access_key, "--secret-key", server.alt_secret_key,
            data_dir=server.data_dir)
    yield server, Target(server.s3_port, server.blob_port, server.access_key, server.secret_key,
                         server.alt_access_key, server.alt_secret_key, server.account_name, server.account_key,
                         master_pid=server.proc.pid)
    server.stop()


def test_seeded_slice_has_no_500_no_hang_no_dead_worker_and_no_changed_canary(fuzz_target):
    server, target = fuzz_target
    failures: list[str] = []
    report = Fuzzer(target, SEED, log=failures.append, batch=250).run(REQUESTS)
    assert report.requests == REQUESTS
    assert not failures, "\n\n".join(failures[:10])
    assert report.server_errors == report.hangs == report.worker_deaths == report.canary_changes == 0
    # the mutations reach the handlers, not only the authenticator: plenty of requests succeed
    assert sum(n for status, n in report.statuses.items() if 200 <= status < 300) > REQUESTS // 20, report.statuses
    log = server.log_text()
    assert "Traceback" not in log, log[log.find("Traceback") - 500:][:6000]


def test_request_i_of_a_seed_is_always_the_same():
    target = Target(1, 2, "AK", "SK", "AK2", "SK2", "acct", "a2V5")
    first, second = Generator(target, 7), Generator(target, 7)
    for i in range(200):
        a, b = first.request(i), second.request(i)
        # (signatures and the dates they sign differ from one second to the next; the request does not)
        assert (a.label, a.method, a.path, a.api) == (b.label, b.method, b.path, b.api)
