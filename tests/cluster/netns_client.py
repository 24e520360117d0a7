"""The client side of the network-namespace cluster test, run *inside* a test namespace
(`ip netns exec NS python netns_client.py ...`): nothing is ever sent from the root namespace.

    ready-drive URL KEYFILE TIMEOUT     until the drive server answers a signed request
    ready-gateway ENDPOINT TIMEOUT      until the gateway's readiness probe answers 200
    write ENDPOINT LEDGER PREFIX N SEED  PUT N objects; every acknowledged one goes into LEDGER (JSON lines)
    verify ENDPOINT LEDGER              GET every object in LEDGER: byte-identical (by SHA-256) or exit 1
    put-loop ENDPOINT LOG STOPFILE SECONDS  PUT one object after another, each tried once (no SDK retry),
                                        until STOPFILE exists or SECONDS pass; every attempt is a JSON line
                                        in LOG: key, sha256, size, status (0: no answer), start, end (epoch s)
    audit ENDPOINT LOG                  every acknowledged attempt in LOG (status 200) reads back
                                        byte-identical, and every other one is absent or whole (never
                                        half-visible); prints the counts, exit 1 on any breach
    patroni API_URL...                  the Patroni cluster as the first REST API that answers sees it:
                                        {"members": [{"name", "role", "state", ...}]} or {} if none answers
    reinit API_URL                      ask that node's Patroni to rebuild it from the leader (patronictl reinit)
    load ENDPOINT LEDGER PREFIX SECONDS SEED
                                        PUT objects for SECONDS (bounded in count too); every attempt goes into
                                        LEDGER with "acked" true or false (a PUT that failed may still have landed)
    check ENDPOINT PREFIX LEDGER...     every acknowledged object byte-identical; every attempt that was not
                                        acknowledged absent or complete; every listed key under PREFIX an attempt
                                        and complete ("nothing half-visible"); prints counts, exit 1 on any fault
    read ENDPOINT COUNT SEED LEDGER...  GET a seeded sample of COUNT acknowledged objects now (during a fault)
    fsck DATA META_URL KEY_FILE         exastor's fsck checks over that metadata, reaching the drive servers
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from pathlib import Path

ACCESS_KEY = "EXNETNSADMIN"
SECRET_KEY = "exastor-netns-secret-key-0123456789"
BUCKET = "cluster"


def _s3(endpoint: str, attempts: int = 6, connect_timeout: float = 5, read_timeout: float = 60):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY,
                        config=Config(s3={"addressing_style": "path"}, connect_timeout=connect_timeout,
                                      read_timeout=read_timeout,
                                      retries={"mode": "standard", "total_max_attempts": attempts}))


def _entries(ledgers: list[str]) -> list[dict]:
    out = []
    for ledger in ledgers:
        path = Path(ledger)
        if path.exists():
            out += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return out


def load(endpoint: str, ledger: str, prefix: str, seconds: float, seed: int) -> int:
    """PUTs for ``seconds`` through one gateway while a fault comes and goes. Each PUT gets one retry
    and short timeouts so a partitioned gateway costs seconds, not minutes; every attempt is written
    to the ledger before and after, so an attempt in flight when the process dies is still known."""
    s3 = _s3(endpoint, attempts=2, connect_timeout=2, read_timeout=20)
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    acked = attempted = 0
    latencies = []
    began, first_ack = time.monotonic(), None
    with open(ledger, "a") as out:
        for i in range(2000):
            if time.monotonic() > deadline:
                break
            body = rng.randbytes(rng.choice([100, 5_000, 60_000, 300_000, 1_200_000]))
            key = f"{prefix}{i}"
            digest = hashlib.sha256(body).hexdigest()
            out.write(json.dumps({"key": key, "sha256": digest, "size": len(body), "acked": False}) + "\n")
            out.flush()
            attempted += 1
            started = time.monotonic()
            try:
                if i == 0:
                    try:
                        s3.create_bucket(Bucket=BUCKET)
                    except s3.exceptions.BucketAlreadyOwnedByYou:
                        pass
                s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            except Exception as exc:  # noqa: BLE001 - not acknowledged: stays "acked": false
                print(f"PUT {key} not acknowledged: {type(exc).__name__}: {exc}", file=sys.stderr)
                time.sleep(0.2)  # a failing gateway answers at once; do not spin on it
                continue
            latencies.append(time.monotonic() - started)
            first_ack = first_ack if first_ack is not None else time.monotonic() - began
            out.write(json.dumps({"key": key, "sha256": digest, "size": len(body), "acked": True}) + "\n")
            out.flush()
            acked += 1
    print(json.dumps({"acknowledged": acked, "attempted": attempted,
                      "first_ack_s": round(first_ack, 3) if first_ack is not None else None,
                      "max_put_s": round(max(latencies), 3) if latencies else None}))
    return 0


def check(endpoint: str, prefix: str, ledgers: list[str]) -> int:
    from botocore.exceptions import ClientError

    s3 = _s3(endpoint)
    attempts: dict[str, dict] = {}
    for e in _entries(ledgers):
        if e.get("acked", True) or e["key"] not in attempts:
            attempts[e["key"]] = {**e, "acked": e.get("acked", True) or attempts.get(e["key"], {}).get("acked", False)}
    lost, half_visible, errors = [], [], []
    acked = landed = absent = 0
    for key, e in attempts.items():
        try:
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404") and not e["acked"]:
                absent += 1
            elif e["acked"]:
                lost.append(f"{key}: {code}")
            else:
                errors.append(f"{key} (not acknowledged): {code}")
            continue
        except Exception as exc:  # noqa: BLE001 - a read that fails is a finding, not a crash of the checker
            (lost if e["acked"] else errors).append(f"{key}: {type(exc).__name__}: {exc}")
            continue
        complete = hashlib.sha256(body).hexdigest() == e["sha256"]
        if e["acked"]:
            acked += 1
            if not complete:
                lost.append(f"{key}: {len(body)} bytes, not the {e['size']} acknowledged")
        else:
            landed += 1
            if not complete:
                half_visible.append(f"{key}: {len(body)} bytes of {e['size']}")
    listed = 0
    if prefix:
        paginator = s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=BUCKET, Prefix=prefix):
            for item in page.get("Contents", []):
                listed += 1
                e = attempts.get(item["Key"])
                if e is None:
                    continue  # another checker's prefix share: only keys of these ledgers are judged
                if item["Size"] != e["size"]:
                    half_visible.append(f"{item['Key']}: listed with {item['Size']} bytes of {e['size']}")
    print(json.dumps({"acked_verified": acked, "unacked_landed": landed, "unacked_absent": absent,
                      "listed": listed, "lost": lost, "half_visible": half_visible, "errors": errors}))
    return 1 if lost or half_visible or errors else 0


def read_sample(endpoint: str, count: int, seed: int, ledgers: list[str]) -> int:
    s3 = _s3(endpoint, attempts=3, connect_timeout=3, read_timeout=30)
    acked = [e for e in _entries(ledgers) if e.get("acked", True)]
    sample = random.Random(seed).sample(acked, min(count, len(acked)))
    failed, slowest = [], 0.0
    for e in sample:
        started = time.monotonic()
        try:
            body = s3.get_object(Bucket=BUCKET, Key=e["key"])["Body"].read()
            if hashlib.sha256(body).hexdigest() != e["sha256"]:
                failed.append(f"{e['key']}: wrong bytes")
        except Exception as exc:  # noqa: BLE001
            failed.append(f"{e['key']}: {type(exc).__name__}: {exc}")
        slowest = max(slowest, time.monotonic() - started)
    print(json.dumps({"read": len(sample), "failed": failed, "max_get_s": round(slowest, 3)}))
    return 1 if failed else 0


def fsck_cluster(data: str, meta_url: str, key_file: str) -> int:
    import os

    from exastor.datadir.opening import open_metadata
    from exastor.services import fsck

    os.environ["EXASTOR_CLUSTER_KEY_FILE"] = key_file
    meta = open_metadata(Path(data), meta_url)
    try:
        report = fsck.check(meta, Path())
    finally:
        meta.close()
    print(json.dumps(report.to_json(), default=str))
    return 0 if report.clean and report.chunks_checked > 0 else 1


def ready_drive(url: str, key_file: str, timeout: float) -> int:
    from exastor.drives.remote import RemoteDrive
    from exastor.drives.wire import load_key

    drive = RemoteDrive(url, load_key(Path(key_file)))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if drive.probe():  # answered a signed request now
            return 0
        time.sleep(0.1)
    print(f"{url} not ready after {timeout} s", file=sys.stderr)
    return 1


def ready_gateway(endpoint: str, timeout: float) -> int:
    from exastor.gateway.health import wait_ready

    wait_ready([endpoint], timeout=timeout)
    return 0


def write(endpoint: str, ledger: str, prefix: str, count: int, seed: int) -> int:
    s3 = _s3(endpoint)
    try:
        s3.create_bucket(Bucket=BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    rng = random.Random(seed)
    acked = 0
    with open(ledger, "a") as out:
        for i in range(count):
            body = rng.randbytes(rng.choice([100, 20_000, 300_000, 1_500_000]))
            key = f"{prefix}{i}"
            try:
                s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            except Exception as exc:  # noqa: BLE001 - not acknowledged: not in the ledger
                print(f"PUT {key} not acknowledged: {exc}", file=sys.stderr)
                continue
            out.write(json.dumps({"key": key, "sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}) + "\n")
            out.flush()
            acked += 1
    print(json.dumps({"acknowledged": acked, "of": count}))
    return 0


def verify(endpoint: str, ledger: str) -> int:
    s3 = _s3(endpoint)
    bad = []
    entries = [json.loads(line) for line in Path(ledger).read_text().splitlines() if line.strip()]
    for e in entries:
        try:
            body = s3.get_object(Bucket=BUCKET, Key=e["key"])["Body"].read()
        except Exception as exc:  # noqa: BLE001
            bad.append(f"{e['key']}: {exc}")
            continue
        if hashlib.sha256(body).hexdigest() != e["sha256"]:
            bad.append(f"{e['key']}: {len(body)} bytes, not the {e['size']} acknowledged")
    print(json.dumps({"verified": len(entries) - len(bad), "bad": bad}))
    return 1 if bad else 0


def put_loop(endpoint: str, log: str, stopfile: str, seconds: float) -> int:
    from botocore.exceptions import ClientError

    s3 = _s3(endpoint, attempts=1)  # every answer is seen: a 503 is not hidden by a retry
    rng = random.Random(14)
    deadline = time.monotonic() + seconds
    with open(log, "a") as out:
        for i in range(1_000_000):
            if time.monotonic() > deadline or Path(stopfile).exists():
                break
            body = rng.randbytes(rng.choice([100, 20_000, 300_000]))
            key = f"loop-{i}"
            start = time.time()
            try:
                s3.put_object(Bucket=BUCKET, Key=key, Body=body)
                status = 200
            except ClientError as exc:
                status = int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
            except Exception:  # noqa: BLE001 - no answer (reset, timeout): recorded as status 0
                status = 0
            out.write(json.dumps({"key": key, "sha256": hashlib.sha256(body).hexdigest(), "size": len(body),
                                  "status": status, "start": start, "end": time.time()}) + "\n")
            out.flush()
    return 0


def audit(endpoint: str, log: str) -> int:
    from botocore.exceptions import ClientError

    s3 = _s3(endpoint)
    acked = lost = half = absent = whole = 0
    bad = []
    for line in Path(log).read_text().splitlines():
        e = json.loads(line)
        try:
            body = s3.get_object(Bucket=BUCKET, Key=e["key"])["Body"].read()
        except ClientError as exc:
            body = None
            if exc.response["Error"]["Code"] != "NoSuchKey":
                bad.append(f"{e['key']}: {exc}")
        same = body is not None and hashlib.sha256(body).hexdigest() == e["sha256"]
        if e["status"] == 200:
            acked += 1
            if not same:
                lost += 1
                bad.append(f"{e['key']}: acknowledged, reads back {'nothing' if body is None else len(body)}")
        elif body is None:
            absent += 1
        elif same:
            whole += 1  # an unanswered PUT that committed: whole, which is allowed
        else:
            half += 1
            bad.append(f"{e['key']}: not acknowledged and reads back {len(body)} other bytes")
    print(json.dumps({"acknowledged": acked, "lost": lost, "half_visible": half, "unacknowledged_absent": absent,
                      "unacknowledged_whole": whole, "bad": bad[:50]}))
    return 1 if bad else 0


def patroni(api_urls: list[str]) -> int:
    import urllib.request

    for url in api_urls:
        try:
            with urllib.request.urlopen(f"{url}/cluster", timeout=3.0) as answer:
                print(answer.read().decode())
                return 0
        except OSError as exc:
            print(f"{url}: {exc}", file=sys.stderr)
            continue
    print("{}")
    return 0


def reinit(api_url: str) -> int:
    import urllib.request

    ask = urllib.request.Request(f"{api_url}/reinitialize", data=b'{"force": true}', method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(ask, timeout=30) as answer:
        print(answer.read().decode())
    return 0


def main(argv: list[str]) -> int:
    cmd, args = argv[0], argv[1:]
    if cmd == "ready-drive":
        return ready_drive(args[0], args[1], float(args[2]))
    if cmd == "ready-gateway":
        return ready_gateway(args[0], float(args[1]))
    if cmd == "write":
        return write(args[0], args[1], args[2], int(args[3]), int(args[4]))
    if cmd == "verify":
        return verify(args[0], args[1])
    if cmd == "put-loop":
        return put_loop(args[0], args[1], args[2], float(args[3]))
    if cmd == "audit":
        return audit(args[0], args[1])
    if cmd == "patroni":
        return patroni(args)
    if cmd == "reinit":
        return reinit(args[0])
    if cmd == "load":
        return load(args[0], args[1], args[2], float(args[3]), int(args[4]))
    if cmd == "check":
        return check(args[0], args[1], args[2:])
    if cmd == "read":
        return read_sample(args[0], int(args[1]), int(args[2]), args[3:])
    if cmd == "fsck":
        return fsck_cluster(args[0], args[1], args[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
