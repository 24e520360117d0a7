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


def _s3(endpoint: str, attempts: int = 6):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY,
                        config=Config(s3={"addressing_style": "path"}, connect_timeout=5, read_timeout=60,
                                      retries={"mode": "standard", "total_max_attempts": attempts}))


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
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
