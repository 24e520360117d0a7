"""kill -9 the server in the middle of a concurrent PUT/DELETE load, restart, and check that every
acknowledged object reads back byte-identical, nothing unacknowledged is half-visible, and fsck is clean.
Seeded: a failure names its seed and reproduces."""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time

import pytest
from botocore.exceptions import BotoCoreError, ClientError
from harness import body_for

from conftest import exastor, s3_client, start_server

SEEDS = [1, 2, 3]


@pytest.mark.parametrize("seed", SEEDS)
def test_kill9_under_load(tmp_path, seed):
    rng = random.Random(seed)
    server = start_server(tmp_path, env={"EXASTOR_SEGMENT_SIZE": str(4 << 20)})
    s3 = s3_client(server)
    s3.create_bucket(Bucket="crash")
    acked: dict[str, str] = {}        # key -> md5 of acknowledged content
    inflight: dict[str, str] = {}     # key -> md5 of content being written
    deleted: set[str] = set()         # acknowledged deletes
    deleting: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def worker(wid: int) -> None:
        wrng = random.Random(seed * 1000 + wid)
        client = s3_client(server)
        n = 0
        while not stop.is_set():
            n += 1
            with lock:
                victims = sorted(k for k in acked if k not in deleted and k not in deleting)
            if victims and wrng.random() < 0.3:
                key = wrng.choice(victims)
                with lock:
                    deleting.add(key)
                try:
                    client.delete_object(Bucket="crash", Key=key)
                    with lock:
                        deleted.add(key)
                except (BotoCoreError, ClientError):
                    return
                continue
            key = f"w{wid}/o{n}"
            body = body_for(wrng)
            digest = hashlib.md5(body).hexdigest()
            with lock:
                inflight[key] = digest
            try:
                client.put_object(Bucket="crash", Key=key, Body=body)
                with lock:
                    acked[key] = digest
            except (BotoCoreError, ClientError):
                return

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(rng.uniform(1.0, 3.0))
    server.kill()  # SIGKILL, mid-flight
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert acked, "the load never got an acknowledgement"

    server.start()
    try:
        s3 = s3_client(server)
        present = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="crash"):
            for obj in page.get("Contents", []):
                present[obj["Key"]] = obj
        for key in acked:
            if key in deleted:
                assert key not in present, f"seed {seed}: acknowledged delete of {key} was lost"
            elif key in deleting:
                pass  # delete in flight: either outcome is allowed
            else:
                assert key in present, f"seed {seed}: acknowledged {key} is missing"
        for key in present:
            expected = acked.get(key) or inflight.get(key)
            assert expected is not None, f"seed {seed}: {key} appeared from nowhere"
            data = s3.get_object(Bucket="crash", Key=key)["Body"].read()
            assert hashlib.md5(data).hexdigest() == expected, f"seed {seed}: {key} is not byte-identical"
    finally:
        server.stop()
    report = exastor("fsck", "--json", data_dir=server.data_dir, check=False)
    assert json.loads(report.stdout)["clean"], f"seed {seed}: {report.stdout}"
