"""Seeded, deterministic fault-injection harness for exastor's redundancy (docs/reliability.md).

Scenarios, each followed by the invariant checker (every acknowledged object byte-identical,
nothing unacknowledged half-visible, `exastor fsck` clean after repair):

- ``kill``: a multi-drive server (separate worker processes) under concurrent PUT / DELETE /
  multipart-complete load over S3 and Put Blob / Put Block List / Append Block over the Blob API,
  with tiny segments (a seal every few PUTs) and garbage collection and
  repair every second, so a ``kill -9`` at a random moment lands in any of PUT, DELETE, multipart
  complete, seal, compaction or repair; bytes are flipped in shards and open-segment replicas and
  shard files truncated while it runs.
- ``corrupt``: rounds of random byte flips and truncations in shard files (at most m per stripe)
  and in open-segment replicas; scrub must find every one, repair must rebuild every one.
- ``drives``: whole drive directories deleted (up to m), a drive made read-only, a drive filled,
  a drive slowed; then too few drives left to write: writes must fail with 503, reads continue.
- ``speed``: scrub throughput, and degraded-read throughput as a ratio of healthy reads.
- ``power``: the ``kill`` scenario's server and load on drives in recording mode; kill -9 of every
  process at a random moment, then every drive rewound to what a power cut at that instant leaves
  (``exastor.drives.power_cut``: ``drop`` and ``tear`` in turn), restart, the same checks.
- ``meta``: the metadata database overwritten with garbage under a live store (copies taken after
  the one awaited damaged too); ``fsck --restore-meta`` must bring back that copy plus every journaled
  commit after it: every acknowledged write and delete, nothing lost.

Run: ``python tests/faults/harness.py --cycles 200 --seed 1`` (all scenarios; ``--only kill`` etc.).
The same seed injects the same faults at the same points of the workload (timing of kill -9
against the server's threads is the one thing a seed cannot pin).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))           # tests/ (conftest: the server fixture helpers)
sys.path.insert(0, str(HERE.parents[1] / "src"))

from conftest import exastor, s3_client, start_server  # noqa: E402
from exastor import errors  # noqa: E402
from exastor.datadir.opening import open_namespace  # noqa: E402
from exastor.engine import shards as shardfiles  # noqa: E402
from exastor.engine.drives import load_layout, segment_name  # noqa: E402
from exastor.namespace.operations import PutSpec, SystemGrant  # noqa: E402
from exastor.services.repair import Repairer  # noqa: E402
from exastor.services.scrub import Scrubber  # noqa: E402

ADMIN = SystemGrant("admin")  # the namespace used directly, outside any request

BUCKET = "faults"
CRASH_POINTS = ["seal.shards_written", "seal.committed", "repair.written", "repair.moved", "gc.copied",
                "gc.committed",
                # a full stripe (the multipart load's 5 MiB parts) written directly: its shards fsynced and
                # its seal not committed, or committed and no chunk row pointing into it yet
                "stripe.shards_written", "stripe.committed",
                # inside the metadata commit of a PUT, a DELETE, an UploadPart, a multipart complete: data
                # durable and the transaction not committed, or committed and the client not answered
                # (exastor/crashpoints.py)
                "put.before_commit", "put.committed", "delete.before_commit", "delete.committed",
                "part.before_commit", "part.committed", "multipart.before_commit", "multipart.committed",
                # the same for the Blob API's Put Block, Put Block List, Append Block, Snapshot Blob,
                # Delete Blob (soft) and Undelete Blob (blob_load)
                "block.before_commit", "block.committed", "blocklist.before_commit", "blocklist.committed",
                "append.before_commit", "append.committed", "snapshot.before_commit", "snapshot.committed",
                "blobdelete.before_commit", "blobdelete.committed", "undelete.before_commit", "undelete.committed"]


@dataclass
class Results:
    seed: int
    kill_cycles: int = 0
    acked_objects: int = 0            # live at the end, each checked byte for byte
    acked_writes: int = 0             # every acknowledged write over the run (a live cap deletes most again)
    acked_lost: int = 0
    half_visible: int = 0
    fsck_unclean_after_repair: int = 0
    fsck_problems_before_repair: list[str] = field(default_factory=list)
    crash_points_hit: dict[str, int] = field(default_factory=dict)  # kill -9 at a named step
    kill_faults_injected: int = 0     # flips/truncations during kill cycles (checked by the invariants)
    corruptions_injected: int = 0
    corruptions_detected: int = 0
    corruptions_repaired: int = 0
    open_replica_flips: int = 0
    open_replica_flips_healed: int = 0
    drive_losses: int = 0
    drive_loss_data_lost: int = 0
    failure_modes: dict[str, str] = field(default_factory=dict)
    power_cuts: int = 0               # kill -9 of every process, then the drives rewound to what a power cut leaves
    power_cut_modes: dict[str, int] = field(default_factory=dict)
    power_files_cut: int = 0          # files cut back to their last fsync (or torn past it)
    power_bytes_dropped: int = 0
    power_sectors_zeroed: int = 0
    power_entries_undone: int = 0     # creates, renames, unlinks no directory fsync covered
    power_meta_restores: int = 0      # cuts that took the metadata database too: restored from the drives
    power_restore_degraded: int = 0   # chunks/shards fsck found readable only degraded right after such a restore
    meta_restores: int = 0            # metadata database destroyed, restored from the drives' copy
    meta_restore_objects: int = 0     # acknowledged objects, each checked byte for byte after the restore
    meta_journal_replayed: int = 0    # journaled commits the restores re-executed after their copy
    scrub_mb_s: float = 0.0
    healthy_read_mb_s: float = 0.0
    degraded_read_mb_s: float = 0.0
    worst_healthy_mb_s: float = 0.0   # one data shard's bytes read directly ...
    worst_degraded_mb_s: float = 0.0  # ... and the same bytes decoded from the other k shards
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)

    @property
    def degraded_ratio(self) -> float:
        return self.degraded_read_mb_s / self.healthy_read_mb_s if self.healthy_read_mb_s else 0.0

    @property
    def worst_degraded_ratio(self) -> float:
        return self.worst_degraded_mb_s / self.worst_healthy_mb_s if self.worst_healthy_mb_s else 0.0

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["degraded_ratio"] = round(self.degraded_ratio, 3)
        d["worst_degraded_ratio"] = round(self.worst_degraded_ratio, 3)
        return d


def body_for(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.55:
        return rng.randbytes(rng.randint(0, 80_000))
    if kind < 0.85:
        return rng.randbytes(rng.randint(200_000, 900_000))
    return bytes([rng.randint(0, 3)]) * rng.randint(1, 1_500_000)  # compressible, dedupes with itself


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


# --- the oracle -----------------------------------------------------------------------------------

class Oracle:
    """What clients were told: acknowledged contents and deletes, and what was in flight."""

    def __init__(self) -> None:
        self.acked: dict[str, str] = {}
        self.maybe: dict[str, set[str]] = {}   # key -> digests a write in flight may have left
        self.deleted: set[str] = set()
        self.deleting: set[str] = set()
        self.snaps: dict[tuple[str, str], str] = {}  # (key, Blob snapshot id) -> acknowledged contents
        self.lock = threading.Lock()

    def check(self, s3: Any, res: Results, keys: list[str] | None = None) -> None:
        present: dict[str, int] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for obj in page.get("Contents", []):
                present[obj["Key"]] = obj["Size"]
        for key in list(self.acked):
            if key in self.deleting:
                continue
            if key in self.deleted:
                if key in present:
                    res.violations.append(f"acknowledged delete of {key} lost")
                continue
            if key not in present:
                res.acked_lost += 1
                res.violations.append(f"acknowledged {key} missing")
        for key in present:
            if key not in self.acked and key not in self.maybe:
                res.half_visible += 1
                res.violations.append(f"{key} appeared from nowhere")
        for key in keys if keys is not None else list(present):
            if key not in present:
                continue
            data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            ok = {self.acked[key]} if key in self.acked else set()  # a delete in flight may not have happened
            ok |= self.maybe.get(key, set())
            if md5(data) not in ok:
                if key in self.acked and key not in self.maybe:
                    res.acked_lost += 1
                else:
                    res.half_visible += 1
                res.violations.append(f"{key} is not byte-identical to anything acknowledged")


    def check_snapshots(self, server: Any, res: Results) -> None:
        """Every acknowledged Blob snapshot of a blob that is not deleted reads back byte for byte."""
        from azure.core.exceptions import ResourceNotFoundError
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(server.connection_string)
        for (key, snap), digest in sorted(self.snaps.items()):
            if key in self.deleted or key in self.deleting:
                continue
            try:
                data = service.get_blob_client(BUCKET, key, snapshot=snap).download_blob().readall()
            except ResourceNotFoundError:
                data = None
            if data is None or md5(data) != digest:
                res.acked_lost += 1
                res.violations.append(f"snapshot {snap} of {key} {'missing' if data is None else 'differs'}")

    def settle(self, s3: Any) -> None:
        """After a kill or a stopped load: what is visible now is what counts for every write and delete
        that was not answered (a mismatching body was already counted by ``check``)."""
        with self.lock:
            present = {o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
                       for o in p.get("Contents", [])}
            for key in list(self.deleting):
                self.deleting.discard(key)
                (self.deleted.discard if key in present else self.deleted.add)(key)
            for key in list(self.maybe):
                # an unanswered write that landed (a new key, or an append onto an acknowledged blob)
                if key in present:
                    digest = md5(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
                    if digest in self.maybe[key]:
                        self.acked[key] = digest
                self.maybe.pop(key, None)

    def snapshot(self) -> Oracle:
        """A settled copy: what a metadata copy taken now must bring back."""
        with self.lock:
            assert not self.maybe and not self.deleting, "settle first"
            twin = Oracle()
            twin.acked, twin.deleted, twin.snaps = dict(self.acked), set(self.deleted), dict(self.snaps)
            return twin


def load(server: Any, oracle: Oracle, seed: int, stop: threading.Event, wid: int, live_cap: int = 0) -> None:
    """An S3 writer: PUTs, multipart uploads and deletes at random (a quarter deletes). ``live_cap``:
    while more than that many objects are live, three quarters delete, so the store stops growing
    (a long services stress whose every scrub and relayout pass would otherwise cover ever more)."""
    from botocore.exceptions import BotoCoreError, ClientError

    rng = random.Random(seed)
    client = s3_client(server)
    n = 0
    while not stop.is_set():
        n += 1
        op = rng.random()
        with oracle.lock:
            # not the Blob thread's pinned blobs: it soft-deletes and undeletes them itself
            victims = sorted(k for k in oracle.acked
                             if k not in oracle.deleted and k not in oracle.deleting and "/pin" not in k)
        try:
            if victims and op < (0.75 if live_cap and len(victims) > live_cap else 0.25):
                key = rng.choice(victims)
                with oracle.lock:
                    oracle.deleting.add(key)
                client.delete_object(Bucket=BUCKET, Key=key)
                with oracle.lock:
                    oracle.deleted.add(key)
                    oracle.deleting.discard(key)
            elif op < 0.32:
                key = f"s{seed}/mp{n}"
                parts = [rng.randbytes(5 << 20), rng.randbytes(rng.randint(1, 300_000))]
                digest = md5(b"".join(parts))
                with oracle.lock:
                    oracle.maybe.setdefault(key, set()).add(digest)
                up = client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
                etags = [client.upload_part(Bucket=BUCKET, Key=key, UploadId=up, PartNumber=i + 1, Body=p)["ETag"]
                         for i, p in enumerate(parts)]
                client.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=up, MultipartUpload={
                    "Parts": [{"ETag": e, "PartNumber": i + 1} for i, e in enumerate(etags)]})
                with oracle.lock:
                    oracle.acked[key] = digest
            else:
                key = f"s{seed}/o{n}"
                body = body_for(rng)
                digest = md5(body)
                with oracle.lock:
                    oracle.maybe.setdefault(key, set()).add(digest)
                client.put_object(Bucket=BUCKET, Key=key, Body=body)
                with oracle.lock:
                    oracle.acked[key] = digest
        except (BotoCoreError, ClientError, KeyError):
            # A 503 during an injected fault, or a reply cut by kill -9 (a 200 whose body never came
            # whole: no UploadId): not acknowledged, so the oracle only lists it as "maybe".
            if stop.is_set():
                return
            time.sleep(0.05)


def blob_load(server: Any, oracle: Oracle, seed: int, stop: threading.Event, wid: int) -> None:
    """The Blob API's writes into the same namespace: Put Blob, Put Block + Put Block List, Append
    Block onto append blobs this thread created (an append in flight may leave the old or the new
    contents: both are "maybe" until the blob is read back), and on "pinned" blobs (which the S3
    threads leave alone) Snapshot Blob and a soft Delete Blob (snapshots included) followed by
    Undelete Blob (cut in between, the blob stays soft-deleted: deleted for the oracle)."""
    from azure.core.exceptions import AzureError
    from azure.storage.blob import BlobBlock, BlobServiceClient

    rng = random.Random(seed)
    container = BlobServiceClient.from_connection_string(server.connection_string, retry_total=0,
                                                         connection_timeout=20, read_timeout=60
                                                         ).get_container_client(BUCKET)
    appendable: dict[str, bytes] = {}  # append blobs this thread made, and their acknowledged contents
    pinned: dict[str, str] = {}        # pinned blobs this thread made, and their contents' digests
    n = 0
    while not stop.is_set():
        n += 1
        op = rng.random()
        try:
            if op >= 0.84 and pinned:
                key = rng.choice(sorted(pinned))
                if op < 0.92:
                    snap = container.get_blob_client(key).create_snapshot()["snapshot"]
                    with oracle.lock:
                        oracle.snaps[(key, snap)] = pinned[key]
                else:
                    digest = pinned.pop(key)  # back once undeleted: cut in between, it stays soft-deleted
                    with oracle.lock:
                        oracle.deleting.add(key)
                    blob = container.get_blob_client(key)
                    blob.delete_blob(delete_snapshots="include")
                    blob.undelete_blob()
                    with oracle.lock:
                        oracle.deleting.discard(key)
                    pinned[key] = digest
                continue
            if op >= 0.76:
                key, body = f"s{seed}/pin{n}", body_for(rng)
                with oracle.lock:
                    oracle.maybe.setdefault(key, set()).add(md5(body))
                container.upload_blob(key, body, overwrite=True)
                pinned[key] = md5(body)
            elif op < 0.3:
                key, body = f"s{seed}/b{n}", body_for(rng)
                with oracle.lock:
                    oracle.maybe.setdefault(key, set()).add(md5(body))
                container.upload_blob(key, body, overwrite=True)
            elif op < 0.55:
                key = f"s{seed}/bl{n}"
                blocks = [rng.randbytes(rng.randint(1, 300_000)) for _ in range(rng.randint(1, 3))]
                body = b"".join(blocks)
                with oracle.lock:
                    oracle.maybe.setdefault(key, set()).add(md5(body))
                blob = container.get_blob_client(key)
                ids = [f"{i:08d}" for i in range(len(blocks))]
                for block_id, block in zip(ids, blocks, strict=True):
                    blob.stage_block(block_id, block)
                blob.commit_block_list([BlobBlock(block_id) for block_id in ids])
            else:
                with oracle.lock:  # an append blob another thread deleted is not appended to again
                    live = sorted(k for k in appendable if k not in oracle.deleted and k not in oracle.deleting)
                if live and rng.random() < 0.7:
                    key = rng.choice(live)
                    tail = rng.randbytes(rng.randint(1, 200_000))
                    body = appendable.pop(key) + tail  # back only once acknowledged: a failed append may
                    # still have landed, so this thread no longer knows the blob's contents
                    with oracle.lock:
                        oracle.maybe.setdefault(key, set()).add(md5(body))
                    container.get_blob_client(key).append_block(tail)
                else:
                    key, body = f"s{seed}/ab{n}", rng.randbytes(rng.randint(1, 100_000))
                    with oracle.lock:
                        oracle.maybe.setdefault(key, set()).update({md5(b""), md5(body)})
                    blob = container.get_blob_client(key)
                    blob.create_append_blob()
                    blob.append_block(body)
                appendable[key] = body
            with oracle.lock:
                oracle.acked[key] = md5(body)
        except AzureError:
            if stop.is_set():
                return
            time.sleep(0.05)


# --- fault injection on files -----------------------------------------------------------------------

def flip(path: Path, rng: random.Random, *, lo: int = 0, hi: int | None = None) -> int | None:
    """Flip one random byte of ``path`` in [lo, hi); returns the offset (None if the file is gone/empty)."""
    try:
        size = path.stat().st_size
        hi = size if hi is None else min(hi, size)
        if hi <= lo:
            return None
        off = rng.randrange(lo, hi)
        with open(path, "r+b") as f:
            f.seek(off)
            b = f.read(1)
            f.seek(off)
            f.write(bytes([b[0] ^ (1 << rng.randrange(8))]))
        return off
    except OSError:
        return None


def truncate(path: Path, rng: random.Random) -> bool:
    try:
        size = path.stat().st_size
        os.truncate(path, rng.randrange(0, max(1, size)))
        return True
    except OSError:
        return False


def write_faults(path: Path, rules: dict[str, dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rules))
    os.replace(tmp, path)


# --- scenario: kill -9 under load -----------------------------------------------------------------

def kill_cycles(work: Path, cycles: int, seed: int, res: Results, *, drives: int = 6, ec: str = "4+2",
                fsck_every: int = 10, progress: Any = None) -> None:
    rng = random.Random(seed)
    drive_dirs = [work / f"drive{i}" for i in range(drives)]
    args = [a for d in drive_dirs for a in ("--drive", str(d))] + ["--ec", ec]
    crash_file, crash_log = work / "crash-points", work / "crash-log"
    work.mkdir(parents=True, exist_ok=True)
    crash_file.write_text("")
    env = {"EXASTOR_SEGMENT_SIZE": str(1 << 20), "EXASTOR_GC_INTERVAL": "1", "EXASTOR_GC_GRACE": "0",
           "EXASTOR_REPAIR_INTERVAL": "1", "EXASTOR_CRASH_POINTS": str(crash_file),
           "EXASTOR_CRASH_LOG": str(crash_log), "EXASTOR_CRASH_SEED": str(seed)}
    server = start_server(work, *args, env=env)
    oracle = Oracle()
    _create_bucket(server)
    m = int(ec.split("+")[1])
    for cycle in range(cycles):
        stop = threading.Event()
        threads = start_load(server, oracle, seed * 100_000 + cycle * 10, stop)
        run_for = rng.uniform(0.3, 2.5)
        # Half the cycles also arm a crash point: kill -9 exactly between two steps of a seal, a repair, a
        # compaction or the metadata commit of a PUT / DELETE / multipart complete (the other half rely on
        # the kill's random timing).
        if rng.random() < 0.5:
            crash_file.write_text(",".join(f"{p}={rng.choice((0.3, 1.0))}" for p in
                                           rng.sample(CRASH_POINTS, rng.randint(1, 2))))
        # Flip bytes while the load runs: a sealed shard (scrub/repair or degraded reads must cope) or an
        # open segment's replica (the other replicas must cover it) - never more than m per segment.
        time.sleep(run_for / 2)
        for _ in range(rng.randint(0, 2)):
            files = sorted(p for d in drive_dirs for sub in ("shards", "segments")
                           for p in (d / sub).glob("seg-*") if ".tmp" not in p.name)
            if files:
                victim = rng.choice(files)
                if victim.parent.name == "shards" and rng.random() < 0.2:
                    truncate(victim, rng)
                elif victim.parent.name == "shards":
                    flip(victim, rng)
                else:
                    # only a replica's durable prefix: the tail may be a torn write we would mask
                    flip(victim, rng, lo=64, hi=max(65, victim.stat().st_size // 2) if victim.exists() else 65)
                res.kill_faults_injected += 1
        time.sleep(run_for / 2)
        server.kill()  # SIGKILL the whole process group, mid-flight (if a crash point has not already)
        crash_file.write_text("")
        stop.set()
        for t in threads:
            t.join(timeout=120)
        res.kill_cycles += 1
        if (cycle + 1) % fsck_every == 0 or cycle == cycles - 1:
            fsck_round(server.data_dir, res, m)
        server.start()
        s3 = s3_client(server)
        check_recent(s3, oracle, res, rng)
        oracle.check_snapshots(server, res)
        if progress:
            progress(1)
    if crash_log.exists():
        for name in crash_log.read_text().split():
            res.crash_points_hit[name] = res.crash_points_hit.get(name, 0) + 1
    oracle.check(s3_client(server), res)   # every object, byte for byte
    oracle.check_snapshots(server, res)
    res.acked_objects = len([k for k in oracle.acked if k not in oracle.deleted])
    server.stop()
    fsck_round(server.data_dir, res, m)


def power_cycles(work: Path, cycles: int, seed: int, res: Results, *, drives: int = 6, ec: str = "4+2",
                 fsck_every: int = 10, progress: Any = None, modes: tuple[str, ...] = ("drop", "tear"),
                 crash_points: bool = True, stop_at_first: bool = False, lose_meta_every: int = 0,
                 budget_s: float | None = None, live_cap: int = 0) -> None:
    """Power cuts under load: the kill scenario's server and clients, on drives in recording mode
    (exastor/drives/faulty.py), killed with -9 at a random moment; then every drive is made to look as
    a power failure at that instant would leave it (``power_cut``: each file cut back to its last
    fsync, or torn at a random sector with one maybe zeroed, modes taken in turn; creates, renames and
    unlinks no directory fsync covered undone), the server restarts and the invariant checker runs.
    fsck runs recorded too, so a cut after its repair undoes what it did not make durable.
    Every ``lose_meta_every``-th cut also takes the metadata database with it (the --data disk died
    with the power): ``fsck --restore-meta`` must bring it back from the drives' copy and metadata
    journal, both as the cut left them, with every acknowledged write and delete.
    A server that cannot start again, or an error answering the checker, is a violation too;
    ``stop_at_first``: end at the first cut that shows one (the mutation check, fsync_mutation.py).
    ``budget_s``: start no new cut after this many seconds (the final full check still runs).
    ``live_cap``: the load keeps about that many objects live (``load``), so a long run's restarts,
    checks and fsck rounds do not slow down as the store grows."""
    from exastor.drives import power_cut

    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    drive_dirs = [(work / f"drive{i}").resolve() for i in range(drives)]
    record = work / "power-journal"
    faults = work / "faults.json"
    write_faults(faults, {str(d): {"record": str(record)} for d in drive_dirs})
    args = [a for d in drive_dirs for a in ("--drive", str(d))] + ["--ec", ec]
    crash_file, crash_log = work / "crash-points", work / "crash-log"
    crash_file.write_text("")
    env = {"EXASTOR_SEGMENT_SIZE": str(1 << 20), "EXASTOR_GC_INTERVAL": "1", "EXASTOR_GC_GRACE": "0",
           "EXASTOR_REPAIR_INTERVAL": "1", "EXASTOR_CRASH_POINTS": str(crash_file),
           "EXASTOR_CRASH_LOG": str(crash_log), "EXASTOR_CRASH_SEED": str(seed),
           "EXASTOR_META_BACKUP_INTERVAL": "2"}
    if lose_meta_every:
        # A restore from a copy needs the chunks that copy names: gc must not reclaim them sooner than
        # the next copy lands (the server warns when gc_grace <= meta_backup_interval).
        env["EXASTOR_GC_GRACE"] = "30"
    m = int(ec.split("+")[1])
    before_faults = os.environ.get("EXASTOR_FAULTS")
    os.environ["EXASTOR_FAULTS"] = str(faults)  # fsck and the servers: every drive write is recorded
    server = None
    try:
        server = start_server(work, *args, env=env)
        oracle = Oracle()
        _create_bucket(server)
        ends = time.monotonic() + budget_s if budget_s else None
        for cycle in range(cycles):
            if ends is not None and time.monotonic() > ends:
                break
            stop = threading.Event()
            threads = start_load(server, oracle, seed * 100_000 + cycle * 10, stop, live_cap)
            if crash_points and rng.random() < 0.3:  # a cut exactly between two steps of a commit or a seal
                crash_file.write_text(",".join(f"{p}={rng.choice((0.3, 1.0))}" for p in
                                               rng.sample(CRASH_POINTS, rng.randint(1, 2))))
            time.sleep(rng.uniform(0.3, 2.5))
            server.kill()  # every process of the server stops at once: then the power goes
            crash_file.write_text("")
            stop.set()
            for t in threads:
                t.join(timeout=120)
            mode = modes[cycle % len(modes)]
            for cut in power_cut(record, rng, mode).values():
                count_cut(res, cut)
            res.power_cuts += 1
            res.power_cut_modes[mode] = res.power_cut_modes.get(mode, 0) + 1
            before = len(res.violations)
            try:
                restored = bool(lose_meta_every) and (cycle + 1) % lose_meta_every == 0
                if restored:
                    _lose_and_restore_meta(work / "data", drive_dirs, rng, res)
                elif (cycle + 1) % fsck_every == 0:
                    # Not right after a restore: its open segments have shown chunks readable only around
                    # one replica until the next start seals them (counted in power_restore_degraded, not
                    # yet explained: docs/reliability.md); the final fsck, after a clean stop, covers them.
                    fsck_round(server.data_dir, res, m)
                server.start()
                s3 = s3_client(server)
                check_recent(s3, oracle, res, rng)
                oracle.check_snapshots(server, res)
            except Exception as exc:  # a 500, a server that will not start: the cut broke the store
                res.violations.append(f"{type(exc).__name__}: {str(exc)[:600]}")
            if len(res.violations) > before:
                res.violations[before] = f"power cut {cycle} ({mode}): {res.violations[before]}"
                if stop_at_first:
                    return
            if progress:
                progress(1)
        if crash_log.exists():
            for name in crash_log.read_text().split():
                res.crash_points_hit[name] = res.crash_points_hit.get(name, 0) + 1
        oracle.check(s3_client(server), res)   # every object, byte for byte
        oracle.check_snapshots(server, res)
        res.acked_objects += len([k for k in oracle.acked if k not in oracle.deleted])
        res.acked_writes += len(oracle.acked)
        server.stop()
        server = None
        fsck_round(work / "data", res, m)
    finally:
        if server is not None:
            server.kill()
        if before_faults is None:
            os.environ.pop("EXASTOR_FAULTS", None)
        else:
            os.environ["EXASTOR_FAULTS"] = before_faults


def _lose_and_restore_meta(data: Path, drive_dirs: list[Path], rng: random.Random, res: Results) -> None:
    """The metadata database gone with the power: restore it from what the cut left on the drives."""
    from exastor.services import metabackup

    if not metabackup.backups(drive_dirs):
        return  # the server had not copied its database yet: nothing to restore from (docs/reliability.md)
    damage_database(data, rng)
    restored = exastor("fsck", "--restore-meta", "--json", *[a for d in drive_dirs for a in ("--drive", str(d))],
                       data_dir=data, check=False)
    report = json.loads(restored.stdout) if restored.stdout.strip() else {}
    # The copy must be installed and nothing indexed corrupt, missing or lost. Chunks readable only
    # from another replica or shard are counted, not failed: every acknowledged byte is still checked
    # through the server right after, and the periodic fsck rounds must be clean after --repair.
    hard = {k: report.get(k) for k in ("corrupt_chunks", "missing_chunks", "lost_chunks", "refcount_mismatches",
                                        "damaged_objects") if report.get(k)}
    if not report.get("restored_meta") or hard:
        res.violations.append(f"restore-meta after the cut (exit {restored.returncode}): {json.dumps(hard)[:1500]} "
                              f"{restored.stderr[-1500:]}")
    res.power_meta_restores += 1
    res.power_restore_degraded += report.get("degraded_chunks", 0) + len(report.get("bad_shards", []))
    res.meta_journal_replayed += report.get("journal_replayed", 0)


def _create_bucket(server: Any) -> None:
    """The load's bucket, and Blob soft delete on (a day's retention) for the Blob thread's deletes."""
    from azure.storage.blob import BlobServiceClient, RetentionPolicy

    s3_client(server).create_bucket(Bucket=BUCKET)
    BlobServiceClient.from_connection_string(server.connection_string).set_service_properties(
        delete_retention_policy=RetentionPolicy(enabled=True, days=1))


def start_load(server: Any, oracle: Oracle, seed: int, stop: threading.Event,
               live_cap: int = 0) -> list[threading.Thread]:
    """Three S3 threads and one Blob thread (the same namespace: the S3 threads may delete its blobs),
    running until ``stop``; ``live_cap``: see ``load``."""
    threads = [threading.Thread(target=blob_load, args=(server, oracle, seed + w, stop, w)) if w == 3 else
               threading.Thread(target=load, args=(server, oracle, seed + w, stop, w, live_cap))
               for w in range(4)]
    for t in threads:
        t.start()
    return threads


def damage_database(data: Path, rng: random.Random) -> None:
    """The metadata database's device returned garbage: not a database any more, its WAL gone."""
    db = data / "meta" / "exastor.sqlite"
    db.write_bytes(rng.randbytes(max(4096, db.stat().st_size)))
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)


def _run_load(server: Any, oracle: Oracle, seed: int, seconds: float) -> None:
    """The load for ``seconds``, then wait for every request to end."""
    stop = threading.Event()
    threads = start_load(server, oracle, seed, stop)
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=120)


def meta_restore_rounds(work: Path, rounds: int, seed: int, res: Results) -> None:
    """The metadata database destroyed under a live store: each round writes and deletes under load,
    waits for the server's next copy of the database onto the drives, goes on writing and deleting
    (changes only the metadata journal holds), then kill -9, overwrites the database with garbage,
    damages every copy newer than the awaited one, runs `fsck --restore-meta` and restarts. The store
    must then hold every acknowledged write and none of the acknowledged deletes (meta/journal.py):
    the restore starts from the awaited copy and replays the journal after it; fsck clean."""
    from exastor.services import metabackup

    rng = random.Random(seed)
    drive_dirs = [work / f"drive{i}" for i in range(6)]
    drive_args = [a for d in drive_dirs for a in ("--drive", str(d))]
    env = {"EXASTOR_SEGMENT_SIZE": str(1 << 20), "EXASTOR_GC_INTERVAL": "1", "EXASTOR_GC_GRACE": "120",
           "EXASTOR_META_BACKUP_INTERVAL": "1"}
    work.mkdir(parents=True, exist_ok=True)
    server = start_server(work, *drive_args, "--ec", "4+2", env=env)
    oracle = Oracle()
    _create_bucket(server)
    try:
        for r in range(rounds):
            _run_load(server, oracle, seed * 100_000 + r * 10, rng.uniform(1.0, 3.0))
            s3 = s3_client(server)
            oracle.settle(s3)
            marker = f"s{seed}/marker{r}".encode()  # a write, so the next copy is not skipped as unchanged
            s3.put_object(Bucket=BUCKET, Key=marker.decode(), Body=marker)
            oracle.acked[marker.decode()] = md5(marker)
            mark = time.time_ns()
            deadline = time.monotonic() + 60
            while not (fresh := [b for b in metabackup.backups(drive_dirs) if b.taken_ns > mark]):
                if time.monotonic() > deadline:
                    raise RuntimeError("the server took no metadata copy within 60 s")
                time.sleep(0.1)
            chosen = min(b.taken_ns for b in fresh)
            _run_load(server, oracle, seed * 100_000 + r * 10 + 5, rng.uniform(0.5, 2.0))  # after the copy
            server.kill()
            # The copies taken during that load are damaged: the restore must skip every one of them,
            # start from the awaited copy and replay a longer stretch of the journal.
            for later in metabackup.backups(drive_dirs):
                if later.taken_ns > chosen:
                    flip(later.path, rng)
            damage_database(server.data_dir, rng)
            restored = exastor("fsck", "--restore-meta", "--json", *drive_args, data_dir=server.data_dir,
                               check=False)
            report = json.loads(restored.stdout) if restored.stdout.strip() else {"clean": False}
            if restored.returncode != 0 or not report["clean"] or f"meta-{chosen}-" not in report["restored_meta"]:
                res.violations.append(f"meta restore round {r}: {restored.stdout[-2000:]} {restored.stderr[-2000:]}")
            res.meta_journal_replayed += report.get("journal_replayed", 0)
            server.start()
            before = len(res.violations)
            s3 = s3_client(server)
            oracle.settle(s3)  # writes and deletes the kill left unanswered: whatever landed counts
            oracle.check(s3, res)
            oracle.check_snapshots(server, res)
            res.meta_restores += 1
            res.meta_restore_objects += len([k for k in oracle.acked if k not in oracle.deleted])
            if len(res.violations) > before:
                break
    finally:
        server.stop()
    fsck_round(server.data_dir, res, 2)


def check_recent(s3: Any, oracle: Oracle, res: Results, rng: random.Random) -> None:
    """After a restart: every key written since the last check (by all the load's threads),
    acknowledged or not, is read back byte for byte - an unacknowledged PUT or multipart complete may
    be there or not, but if it is, it must be exactly the body that was sent - and a sample of the
    acknowledged ones; then what is visible settles the writes nobody answered."""
    with oracle.lock:
        recent = list(oracle.maybe)
        sample = rng.sample(sorted(oracle.acked), min(15, len(oracle.acked)))
    oracle.check(s3, res, keys=sorted(set(recent) | set(sample)))
    oracle.settle(s3)


def count_cut(res: Results, cut: Any) -> None:
    """Add one drive's power cut (drives/faulty.py PowerCut) to the results."""
    res.power_files_cut += cut.files_cut
    res.power_bytes_dropped += cut.bytes_dropped
    res.power_sectors_zeroed += cut.sectors_zeroed
    res.power_entries_undone += cut.entries_undone


def fsck_round(data: Path, res: Results, m: int) -> None:
    before = json.loads(exastor("fsck", "--json", data_dir=data, check=False).stdout)
    hard = {k: before[k] for k in ("corrupt_chunks", "missing_chunks", "lost_chunks") if before.get(k)}
    if before.get("refcount_mismatches"):
        hard["refcount_mismatches"] = before["refcount_mismatches"]
    if hard:
        res.fsck_problems_before_repair.append(json.dumps(hard)[:300])
    exastor("fsck", "--repair", "--json", data_dir=data, check=False)
    after = json.loads(exastor("fsck", "--json", data_dir=data, check=False).stdout)
    if not after["clean"]:
        res.fsck_unclean_after_repair += 1
        problems = {k: v for k, v in after.items()  # what made it unclean, whole: never cut off
                    if v and k in ("corrupt_chunks", "missing_chunks", "refcount_mismatches", "lost_chunks",
                                   "bad_shards", "degraded_chunks", "unavailable_chunks", "damaged_objects")}
        res.violations.append(f"fsck unclean after repair: {json.dumps(problems)[:2000]}")


# --- in-process stores for the other scenarios ---------------------------------------------------

async def _put(ns: Any, key: str, body: bytes) -> None:
    async def source() -> Any:
        for i in range(0, len(body), 1 << 20):
            yield body[i:i + (1 << 20)]
        if not body:
            return

    await ns.put_object(ADMIN, BUCKET, key, source(), PutSpec())


async def _get(ns: Any, key: str) -> bytes:
    obj = ns.get_object(ADMIN, BUCKET, key)
    return b"".join([bytes(p) async for p in ns.read(ADMIN, obj)])


def _open(work: Path, n: int, ec: str, segment_size: int = 1 << 20) -> Any:
    return open_namespace(work / "data", segment_size=segment_size,
                          drives=[str(work / f"d{i}") for i in range(n)], ec=ec)


def _fill(ns: Any, rng: random.Random, count: int, size: int | None = None) -> dict[str, str]:
    bodies: dict[str, str] = {}

    async def main() -> None:
        if ns.meta.get_bucket(BUCKET) is None:
            await ns.create_bucket(ADMIN, BUCKET)
        for _ in range(count):
            b = rng.randbytes(size) if size else body_for(rng)
            key = f"k{len(bodies)}-{rng.getrandbits(32):08x}"
            await _put(ns, key, b)
            bodies[key] = md5(b)

    asyncio.run(main())
    return bodies


def _verify_all(ns: Any, bodies: dict[str, str], why: list[str] | None = None) -> int:
    async def main() -> int:
        bad = 0
        for k, d in bodies.items():
            try:
                if md5(await _get(ns, k)) != d:
                    bad += 1
                    if why is not None:
                        why.append(f"{k}: wrong bytes")
            except errors.StoreError as exc:
                bad += 1
                if why is not None:
                    why.append(f"{k}: {type(exc).__name__} {exc.detail}")
        return bad

    return asyncio.run(main())


def _shard_files(ns: Any) -> list[tuple[int, int, Path]]:
    out = []
    for seg, state, _ in ns.meta.segments():
        lay = load_layout(ns.meta, seg)
        if state != "sealed" or lay is None or lay.kind != "ec":
            continue
        for row in lay.shards:
            d = ns.chunks.log.drives.get(row.drive)
            if d is not None:
                out.append((seg, row.idx, d.path / shardfiles.shard_name(seg, row.idx, row.gen)))
    return out


def corruption_rounds(work: Path, rounds: int, per_round: int, seed: int, res: Results, progress: Any = None,
                      objects: int = 60) -> None:
    """Flip/truncate shards (at most m per stripe per round); scrub must flag each, repair must fix each."""
    rng = random.Random(seed)
    ns = _open(work, 6, "4+2")
    try:
        bodies = _fill(ns, rng, objects)
        ns.chunks.log.wait_sealed()
        log = ns.chunks.log
        for _ in range(rounds):
            files = _shard_files(ns)
            per_seg: dict[int, int] = {}
            hit: list[tuple[int, int]] = []
            rng.shuffle(files)
            for seg, idx, path in files:
                if len(hit) >= per_round:
                    break
                if per_seg.get(seg, 0) >= 2:
                    continue
                ok = truncate(path, rng) if rng.random() < 0.1 else flip(path, rng) is not None
                if ok:
                    per_seg[seg] = per_seg.get(seg, 0) + 1
                    hit.append((seg, idx))
            res.corruptions_injected += len(hit)
            # Also a flipped byte in the open segment's replica: reads and sealing use the other replica.
            scrubbed = Scrubber(log).run_once()
            flagged = {(s, i) for s, i, _ in scrubbed.bad_shards}
            res.corruptions_detected += sum(1 for h in hit if h in flagged)
            fixed = Repairer(log).run_once()
            after = Scrubber(log).run_once()
            still = {(s, i) for s, i, _ in after.bad_shards}
            res.corruptions_repaired += sum(1 for h in hit if h in flagged and h not in still)
            if fixed.unrepairable:
                res.violations.append(f"unrepairable: {fixed.unrepairable[:3]}")
            if progress:
                progress(1)
        lost = _verify_all(ns, bodies)
        if lost:
            res.violations.append(f"corruption rounds: {lost} objects not byte-identical")
            res.acked_lost += lost
        # Open-segment replicas: flip a byte in one replica of the open segment, read everything back.
        more = _fill(ns, rng, 3, 100_000)
        seg = log.open_segment
        lay = load_layout(ns.meta, seg) if seg else None
        if lay is not None and lay.replicas:
            d = log.drives.get(lay.replicas[0])
            path = d.path / segment_name(seg)
            # Counted apart from the shard corruptions: no detector reports these flips (the read
            # path's checks route around them, sealing splices valid records from the other
            # replicas), so only "every object read back" says they did no harm.
            flipped = sum(1 for _ in range(5) if flip(path, rng, lo=64) is not None)
            res.open_replica_flips += flipped
            log.forget(seg)
            if _verify_all(ns, more) == 0:
                res.open_replica_flips_healed += flipped
            else:
                res.violations.append("a flipped byte in one open replica was served or lost")
    finally:
        ns.close()
    ns = _open(work, 6, "4+2")
    try:
        if _verify_all(ns, {**bodies, **more}):
            res.violations.append("objects differ after sealing a segment with a corrupt replica")
    finally:
        ns.close()
    fsck_round(work / "data", res, 2)


def drive_scenarios(work: Path, seed: int, res: Results) -> None:
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    faults = work / "faults.json"
    write_faults(faults, {})
    os.environ["EXASTOR_FAULTS"] = str(faults)
    try:
        ns = _open(work, 8, "4+2")
        try:
            bodies = _fill(ns, rng, 40)
            ns.chunks.log.wait_sealed()
            drives = ns.chunks.log.drives
            # 1. Lose m=2 whole drives (directories deleted): they are offline (never re-created, never
            # written), reads continue, and repair (here without waiting out the offline grace period)
            # rebuilds their shards elsewhere.
            lost = rng.sample(range(8), 2)
            for i in lost:
                shutil.rmtree(work / f"d{i}")
            res.drive_losses += 2
            drives.refresh()
            offline = {d.id for d in drives.all if d.state == "offline"}
            res.failure_modes["deleted drive dirs offline"] = "ok" if len(offline) == 2 else f"got {offline}"
            bad = _verify_all(ns, bodies, res.violations)
            res.drive_loss_data_lost += bad
            fixed = Repairer(ns.chunks.log, offline_after_s=0).run_once()
            res.failure_modes["rebuilt shards after losing 2 drives"] = str(fixed.repaired_shards)
            if fixed.unrepairable:
                res.violations.append(f"drive loss: unrepairable {fixed.unrepairable[:3]}")
            # 2. A read-only drive: writes route around it (marked failed on first write).
            ro = next(d for d in drives.all if d.state == "active")
            write_faults(faults, {str(ro.path): {"readonly": True}})
            more = _fill(ns, rng, 10, 300_000)
            drives.refresh()
            res.failure_modes["read-only drive"] = f"writes ok, drive {ro.id} {drives.get(ro.id).state}"
            # 3. A full drive: stops taking new segments, others continue.
            full = next(d for d in drives.all if d.state == "active")
            write_faults(faults, {str(ro.path): {"readonly": True}, str(full.path): {"full": True}})
            more |= _fill(ns, rng, 10, 300_000)
            res.failure_modes["full drive"] = "writes ok, others continue"
            # 4. A slow drive: everything still works, only slower.
            slow = next(d for d in drives.all if d.state == "active" and d.id != full.id)
            write_faults(faults, {str(ro.path): {"readonly": True}, str(full.path): {"full": True},
                                  str(slow.path): {"slow_ms": 5}})
            more |= _fill(ns, rng, 5, 200_000)
            res.failure_modes["slow drive"] = "writes and reads ok"
            bad = _verify_all(ns, {**bodies, **more}, res.violations)
            res.drive_loss_data_lost += bad
            # 5a. All but two drives full: the store is out of space - 507, nothing partial; reads continue.
            drives.refresh()
            keep = [d for d in drives.all if d.state == "active"][:2]
            write_faults(faults, {str(d.path): {"full": True} for d in drives.all if d not in keep})
            try:
                _fill(ns, rng, 2, 2 << 20)
                res.violations.append("writes succeeded with too little space")
            except errors.InsufficientStorage as exc:
                res.failure_modes["out of space"] = f"507 InsufficientStorage: {exc.detail}"
            write_faults(faults, {})
            drives.refresh()  # the space is back now, not at the next periodic look (which load can delay)
            # 5b. All but two drives read-only (worn out): too few drives to write safely - 503.
            write_faults(faults, {str(d.path): {"readonly": True} for d in drives.all if d not in keep})
            try:
                _fill(ns, rng, 2, 2 << 20)
                res.violations.append("writes succeeded with too few drives")
                res.failure_modes["too few drives"] = "writes accepted (wrong)"
            except errors.Unavailable as exc:
                res.failure_modes["too few drives"] = f"503 Unavailable: {exc.detail}"
            bad = _verify_all(ns, {**bodies, **more}, res.violations)
            res.drive_loss_data_lost += bad
            res.failure_modes["reads with too few drives to write"] = "ok" if not bad else f"{bad} failed"
            write_faults(faults, {})
            write_faults(faults, {})
            ns.chunks.log.wait_sealed()
        finally:
            ns.close()
    finally:
        os.environ.pop("EXASTOR_FAULTS", None)
    ns = _open(work, 8, "4+2")
    try:
        bad = _verify_all(ns, {**bodies, **more}, res.violations)
        res.drive_loss_data_lost += bad
        if bad:
            res.violations.append(f"drive scenarios: {bad} objects lost")
    finally:
        ns.close()


def speed(work: Path, seed: int, res: Results, mb: int = 256) -> None:
    """Scrub MB/s; healthy vs degraded read MB/s of the same objects (one data drive's shards gone)."""
    rng = random.Random(seed)
    ns = _open(work, 6, "4+2", segment_size=64 << 20)
    try:
        bodies: dict[str, str] = {}

        async def fill() -> None:
            await ns.create_bucket(ADMIN, BUCKET)
            for i in range(max(1, mb // 4)):
                b = rng.randbytes(4 << 20)  # incompressible and unique: reads really hit the shards
                await _put(ns, f"big{i}", b)
                bodies[f"big{i}"] = md5(b)

        asyncio.run(fill())
    finally:
        ns.close()
    ns = _open(work, 6, "4+2", segment_size=64 << 20)
    try:
        scrub = Scrubber(ns.chunks.log).run_once()
        res.scrub_mb_s = round(scrub.mb_per_s, 1)

        def timed() -> float:
            t = time.perf_counter()
            total = 0

            async def main() -> None:
                nonlocal total
                for k in bodies:
                    total += len(await _get(ns, k))

            asyncio.run(main())
            return total / 1e6 / (time.perf_counter() - t)

        timed()  # warm the page cache and descriptors: both runs then read from memory alike
        res.healthy_read_mb_s = round(max(timed(), timed()), 1)
        log = ns.chunks.log
        coded = [load_layout(ns.meta, seg) for seg, st, _ in ns.meta.segments() if st == "sealed"]
        coded = [lay for lay in coded if lay is not None and lay.kind == "ec"]

        def shard0(degraded: bool) -> float:  # every byte of data shard 0, directly or decoded
            t = time.perf_counter()
            n = 0
            for lay in coded:
                for start in range(0, lay.shard_len, 4 << 20):
                    take = min(4 << 20, lay.shard_len - start)
                    n += len(log.decode_columns(lay, start, take, [0])[0] if degraded
                             else log.read_shard_range(lay, 0, start, take))
            return n / 1e6 / (time.perf_counter() - t)

        res.worst_healthy_mb_s = round(max(shard0(False), shard0(False)), 1)
        # Lose data shard 0 of every stripe (one drive's worth of data shards, the case that decodes).
        for lay in coded:
            d = log.drives.get(lay.shards[0].drive)
            (d.path / shardfiles.shard_name(lay.segment, 0, lay.shards[0].gen)).unlink()
            log.forget(lay.segment)
        coded = [load_layout(ns.meta, lay.segment) for lay in coded]
        res.worst_degraded_mb_s = round(max(shard0(True), shard0(True)), 1)
        res.degraded_read_mb_s = round(max(timed(), timed()), 1)
        if _verify_all(ns, bodies):
            res.violations.append("degraded reads returned wrong bytes")
    finally:
        ns.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, default=200, help="kill -9 cycles")
    p.add_argument("--rounds", type=int, default=50, help="corruption rounds")
    p.add_argument("--per-round", type=int, default=20, help="corruptions per round")
    p.add_argument("--objects", type=int, default=60, help="objects in the corruption scenario's store")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--meta-rounds", type=int, default=5, help="metadata database losses and restores")
    p.add_argument("--power-cuts", type=int, default=100, help="power cuts under load")
    p.add_argument("--power-drives", type=int, default=6, help="power: drive directories")
    p.add_argument("--power-ec", default="4+2", help="power: erasure geometry (1+0 with one drive)")
    p.add_argument("--lose-meta-every", type=int, default=0,
                   help="power: every N-th cut takes the metadata database too (0: never)")
    p.add_argument("--power-live-cap", type=int, default=0,
                   help="power: keep about this many objects live (0: the store grows all run)")
    p.add_argument("--power-budget-s", type=float, help="power: start no new cut after this many seconds")
    p.add_argument("--stop-at-first", action="store_true", help="power: end at the first cut that loses something")
    p.add_argument("--only", choices=["kill", "corrupt", "drives", "speed", "meta", "power"], action="append")
    p.add_argument("--speed-mb", type=int, default=256)
    p.add_argument("--work", help="working directory (default: a temporary one, removed after)")
    p.add_argument("--out", help="write the results JSON here too")
    args = p.parse_args(argv)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    res = Results(seed=args.seed)
    started = time.monotonic()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="exastor-faults-"))
    want = set(args.only or ["kill", "corrupt", "drives", "speed", "meta", "power"])
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      disable=not sys.stderr.isatty()) as bar:
            if "corrupt" in want:
                t = bar.add_task("corruption rounds", total=args.rounds)
                corruption_rounds(work / "corrupt", args.rounds, args.per_round, args.seed, res,
                                  lambda n: bar.advance(t, n), objects=args.objects)
            if "drives" in want:
                drive_scenarios(work / "drives", args.seed, res)
            if "speed" in want:
                speed(work / "speed", args.seed, res, args.speed_mb)
            if "meta" in want:
                meta_restore_rounds(work / "meta", args.meta_rounds, args.seed, res)
            if "kill" in want:
                t = bar.add_task("kill -9 cycles", total=args.cycles)
                kill_cycles(work / "kill", args.cycles, args.seed, res, progress=lambda n: bar.advance(t, n))
            if "power" in want:
                t = bar.add_task("power cuts", total=args.power_cuts)
                power_cycles(work / "power", args.power_cuts, args.seed, res, progress=lambda n: bar.advance(t, n),
                             stop_at_first=args.stop_at_first, drives=args.power_drives, ec=args.power_ec,
                             lose_meta_every=args.lose_meta_every, budget_s=args.power_budget_s,
                             live_cap=args.power_live_cap)
    finally:
        res.seconds = round(time.monotonic() - started, 1)
        out = json.dumps(res.to_json(), indent=2)
        print(out)
        if args.out:
            Path(args.out).write_text(out + "\n")
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if res.violations else 0


if __name__ == "__main__":
    sys.exit(main())
