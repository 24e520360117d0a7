"""Power cuts of drive-server hosts under a live gateway (issue 11: "no power-cut run over drive servers").

Three drive servers, each its own loopback address (a host) with one drive, under a gateway (2+1,
1 MiB segments) carrying the S3 + Blob load of tests/faults/harness.py. Each drive server records
its drive's writes (drives/faulty.py, a journal per host). A cut takes one host, or one time in three
the whole rack (every drive-server host and the gateway): the processes are killed with -9, then each
drive is made to look as a power failure at that instant would leave it (every file cut back to its
last fsync, or torn with a sector maybe zeroed; creates, renames and unlinks no directory fsync
covered undone), and the servers start again on the same addresses.

One host: the gateway keeps running through it. A PUT whose fsync would cover writes the cut took
must get an error, never 200 (the server's new boot id fails that fsync for good), and the next
append at the old offset of a cut-back file is refused (exact-offset appends); the other replica's
host kept its page cache. The whole rack: nothing kept anything but what was fsynced, on any host -
the cut that shows a missing fsync on the drive servers' side (without the server's forwarded fsync,
seed 31 loses acknowledged objects within six cuts). After every cut the recent and a sample of the
acknowledged objects are read back; at the end every acknowledged object byte-identical, nothing
half-visible, fsck clean, no traceback.

The CI slice runs a few cuts; the long run is

    python tests/faults/test_power_drive_servers.py CUTS SEED [OUT.json]
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import harness  # noqa: E402

from conftest import exastor, s3_client, start_server, wait_until  # noqa: E402
from drive_servers import DriveServerProcess, cluster_key  # noqa: E402
from exastor.drives import power_cut  # noqa: E402


def run_cuts(work: Path, cuts: int, seed: int) -> dict[str, Any]:
    """``cuts`` power cuts under load, each of one drive-server host or (one in three) of every host
    and the gateway; returns what was reached. The gateway and fsck find the cluster key through
    EXASTOR_CLUSTER_KEY_FILE, which the caller sets to ``work/cluster.key``."""
    rng = random.Random(seed)
    key = cluster_key(work)
    rules_path = work / "faults.json"
    hosts = [DriveServerProcess({f"d{n}": work / f"host{n}" / f"d{n}"}, key, work / f"ds{n}.log")
             for n in (1, 2, 3)]
    rules = {}
    for n, ds in enumerate(hosts, 1):
        ds.host = f"127.0.0.{n}"
        ds.env = {"EXASTOR_FAULTS": str(rules_path)}
        # the server's FaultyDrive label is its directory; a journal per host, so a cut takes one host
        rules[str(ds.drives[f"d{n}"])] = {"record": str(work / f"record-{ds.host}")}
    rules_path.write_text(json.dumps(rules))
    res = harness.Results(seed=seed)
    modes: dict[str, int] = {}
    scopes = {"one drive-server host": 0, "every host": 0}
    gateway = None
    try:
        for ds in hosts:
            ds.start()
        urls = [ds.url(f"d{n}") for n, ds in enumerate(hosts, 1)]
        gateway = start_server(work, *(a for u in urls for a in ("--drive", u)), "--ec", "2+1",
                               env={"EXASTOR_SEGMENT_SIZE": str(1 << 20),
                                    "EXASTOR_GC_INTERVAL": "1", "EXASTOR_GC_GRACE": "0",
                                    "EXASTOR_REPAIR_INTERVAL": "1"})
        oracle = harness.Oracle()
        harness._create_bucket(gateway)
        for cycle in range(cuts):
            stop = threading.Event()
            threads = harness.start_load(gateway, oracle, seed * 100_000 + cycle * 10, stop)
            whole = rng.random() < 1 / 3  # the rack's power: every host, the gateway's too
            victims = hosts if whole else [rng.choice(hosts)]
            try:
                _acked_more(oracle, rng.randint(1, 30))  # the cut lands at a seeded point of the load
                if whole:
                    gateway.kill()
                for ds in victims:
                    ds.kill()  # the host's power goes: its processes first, then what its page cache held
                mode = ("drop", "tear")[cycle % 2]
                for ds in victims:
                    for cut in power_cut(work / f"record-{ds.host}", rng, mode).values():
                        harness.count_cut(res, cut)
                res.power_cuts += 1
                scopes["every host" if whole else "one drive-server host"] += 1
                modes[mode] = modes.get(mode, 0) + 1
                if not whole:
                    _acked_more(oracle, rng.randint(1, 10))  # the host is down; the gateway goes on writing
            finally:
                stop.set()
                for t in threads:
                    t.join(timeout=120)
            before = len(res.violations)
            try:
                for ds in victims:
                    ds.start()
                if whole:
                    gateway.start()
                harness.check_recent(s3_client(gateway), oracle, res, rng)
            except Exception as exc:  # a 500, a server that will not start: the cut broke the store
                res.violations.append(f"{type(exc).__name__}: {str(exc)[:600]}")
            if len(res.violations) > before:
                res.violations[before] = f"cut {cycle} ({mode}, {len(victims)} host(s)): {res.violations[before]}"
        try:
            s3 = s3_client(gateway)
            oracle.settle(s3)
            oracle.check(s3, res)
            oracle.check_snapshots(gateway, res)
        except Exception as exc:  # an object the store cannot read back (503, 500): a cut broke it
            res.violations.append(f"final read-back: {type(exc).__name__}: {str(exc)[:600]}")
        gateway.stop()
        report = _fsck(gateway.data_dir)
        log = gateway.log_text()
        return {"seed": seed, "cuts": res.power_cuts, "scopes": scopes, "modes": modes, "files_cut": res.power_files_cut,
                "bytes_dropped": res.power_bytes_dropped, "sectors_zeroed": res.power_sectors_zeroed,
                "entries_undone": res.power_entries_undone,
                "acked_objects": len([k for k in oracle.acked if k not in oracle.deleted]),
                "acked_lost": res.acked_lost, "half_visible": res.half_visible, "violations": res.violations[:20],
                "fsck_clean": report.get("clean"), "fsck": {k: v for k, v in report.items() if v and k != "clean"},
                "traceback_in_logs": "Traceback" in log or any("Traceback" in ds.log_text() for ds in hosts)}
    finally:
        if gateway is not None:
            gateway.stop()
        for ds in hosts:
            ds.stop()


def _acked_more(oracle: harness.Oracle, count: int, timeout: float = 120.0) -> None:
    """Until the load has ``count`` more acknowledged writes (bounded): a state, not a time."""
    with oracle.lock:
        target = len(oracle.acked) + count
    wait_until(lambda: len(oracle.acked) >= target, f"{count} more acknowledged writes", timeout=timeout)


def _fsck(data: Path) -> dict[str, Any]:
    """`exastor fsck --json` of the gateway's store (its drives are the drive servers' URLs)."""
    out = exastor("fsck", "--json", data_dir=data, check=False)
    try:
        return dict(json.loads(out.stdout))
    except ValueError:
        return {"clean": False, "error": (out.stdout + out.stderr)[-2000:]}


def test_power_cuts_of_drive_server_hosts_lose_no_acknowledged_object(tmp_path, monkeypatch):
    monkeypatch.setenv("EXASTOR_CLUSTER_KEY_FILE", str(tmp_path / "cluster.key"))
    got = run_cuts(tmp_path, cuts=6, seed=31)
    assert got["cuts"] == 6 and got["acked_objects"] > 0, got
    assert got["acked_lost"] == 0 and got["half_visible"] == 0 and not got["violations"], got
    assert got["fsck_clean"], got
    assert not got["traceback_in_logs"], got


if __name__ == "__main__":
    import os

    work = Path(tempfile.mkdtemp(prefix="exastor-power-ds-"))
    os.environ["EXASTOR_CLUSTER_KEY_FILE"] = str(work / "cluster.key")
    started = time.monotonic()
    result = run_cuts(work, int(sys.argv[1]) if len(sys.argv) > 1 else 50, int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    result["wall_s"] = round(time.monotonic() - started, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if len(sys.argv) > 3:
        Path(sys.argv[3]).write_text(text + "\n")
