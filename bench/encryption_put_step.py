#!/usr/bin/env python3
"""The encrypt step of a PUT, in process: CPU-seconds per GiB of what the write path does to a
window's new records after chunking and compression (seal, header, one writev), with encryption
at rest off, on as the write path did it before (``DataKeys.seal`` per record: a fresh buffer each),
on as it does it now (``DataKeys.seal_window``: one reused buffer per window), and AES-256-GCM alone
into a reused buffer on top of the plaintext step (the floor no implementation can go under).

Less sensitive to a busy machine than bench/encryption_cost.py: one thread, no server, no client,
the same 64 MiB of incompressible records (the real FastCDC chunker on random bytes, 16 windows of
4 MiB) for every mode, modes interleaved in ABBA order, CPU from ``time.thread_time``. The heap is
tuned and trimmed as the gateway does it (gateway/memory.py: ``tune_malloc``, and ``malloc_trim``
after every 32 MiB, as ``Trimmer`` does while large objects stream), since what a per-record buffer
costs depends on it. The writes go to a memfd (the copy into the page cache without a device).

    nice -n 10 python bench/encryption_put_step.py [--rounds 20]

Writes bench/results/encryption_put_step-<date>.json.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from bench.lib.machine import machine_info  # noqa: E402
from bench.lib.results import utc_stamp, write_result  # noqa: E402

from exastor.gateway.memory import libc, tune_malloc  # noqa: E402

MiB = 1 << 20
WINDOWS = 16            # of 4 MiB: one 64 MiB object, as bench/encryption_cost.py PUTs
TRIM_EVERY = 8          # windows between malloc_trim(0) calls: 32 MiB, gateway/memory.Trimmer's default

Record = tuple[bytes, int, int, int, memoryview]  # fingerprint, codec, flags, raw_len, payload


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" /
                                         f"encryption_put_step-{time.strftime('%Y-%m-%d', time.gmtime())}.json"))
    args = ap.parse_args()
    tune_malloc()  # before any thread starts, as `exastor serve` does
    work = Path(tempfile.mkdtemp(prefix="exastor-encstep-"))
    try:
        return measure(args, work / "data")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(args: argparse.Namespace, data: Path) -> int:
    import blake3

    from exastor.datadir import keys as master_keys
    from exastor.datadir.opening import open_metadata
    from exastor.engine import chunker, encryption
    from exastor.engine.record import encode
    from exastor.meta import datakeys

    data.mkdir(parents=True)
    meta = open_metadata(data)
    master_keys.ensure(data, meta)
    meta.runner.write_sync(lambda cur: datakeys.prepare(cur, meta.sealer, True))
    keys = encryption.of(meta)
    assert keys.encrypting
    aead = keys._aeads[keys._writing]
    trim = libc().malloc_trim
    trim.argtypes = [ctypes.c_size_t]
    sink = os.memfd_create("sink")

    windows: list[list[Record]] = []
    for _ in range(WINDOWS):
        buf = memoryview(bytearray(os.urandom(4 * MiB)))
        chunks, _ = chunker.cut(chunker.new_chunker(), buf, True)
        windows.append([(blake3.blake3(c).digest(), 0, 0, len(c), c) for c in chunks])
    records = sum(map(len, windows))
    floor_buf = memoryview(bytearray(4 * MiB + records * encryption.OVERHEAD))

    def plaintext(window: list[Record]) -> None:
        parts: list[bytes | memoryview] = []
        for fp, codec, _, raw, payload in window:
            parts += [encode(fp, codec, raw, payload), payload]
        os.pwritev(sink, parts, 0)

    def per_record(window: list[Record]) -> None:
        parts: list[bytes | bytearray | memoryview] = []
        for fp, codec, flags, raw, payload in window:
            key_id, stored = keys.seal(fp, codec, flags, raw, payload)
            parts += [encode(fp, codec, raw, stored, key_id=key_id), stored]
        os.pwritev(sink, parts, 0)

    def per_window(window: list[Record]) -> None:
        with keys.seal_window(window) as (key_id, stored):
            parts: list[bytes | memoryview] = []
            for (fp, codec, _, raw, _), payload in zip(window, stored, strict=True):
                parts += [encode(fp, codec, raw, payload, key_id=key_id), payload]
            os.pwritev(sink, parts, 0)

    nonce, ad = os.urandom(12), bytes(48)

    def cipher_floor(window: list[Record]) -> None:
        pos = 0
        for *_, payload in window:
            out = floor_buf[pos:pos + len(payload) + encryption.TAG_SIZE]
            aead.encrypt_into(nonce, payload, ad, out)
            pos += len(out)
        plaintext(window)

    modes: dict[str, Callable[[list[Record]], None]] = {
        "off": plaintext, "on_per_record_buffers": per_record, "on_window_buffer": per_window,
        "off_plus_aes_gcm_alone": cipher_floor}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    faults: dict[str, list[float]] = {m: [] for m in modes}
    loads = []
    gib = WINDOWS * 4 * MiB / (1 << 30)
    for r in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for mode in (list(modes) if r % 2 == 0 else list(reversed(modes))):
            t0, f0 = time.thread_time(), resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            for i, window in enumerate(windows):
                modes[mode](window)
                if i % TRIM_EVERY == TRIM_EVERY - 1:
                    trim(0)
            cpu[mode].append((time.thread_time() - t0) / gib)
            faults[mode].append((resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - f0) / gib)
    rows = {}
    for mode in modes:
        extra = [a - b for a, b in zip(cpu[mode], cpu["off"], strict=True)]
        rows[mode] = {"cpu_s_per_GiB_min": min(cpu[mode]), "cpu_s_per_GiB_median": statistics.median(cpu[mode]),
                      "over_off_paired_median": statistics.median(extra),
                      "over_off_min_minus_min": min(cpu[mode]) - min(cpu["off"]),
                      "minor_faults_per_GiB_median": statistics.median(faults[mode]),
                      "samples_cpu_s_per_GiB": cpu[mode]}
        print(f"{mode:24s} {rows[mode]['cpu_s_per_GiB_median']:.3f} CPU-s/GiB (min {rows[mode]['cpu_s_per_GiB_min']:.3f}); "
              f"over off: paired median {rows[mode]['over_off_paired_median']:+.3f}, "
              f"min-min {rows[mode]['over_off_min_minus_min']:+.3f}; "
              f"minor faults/GiB {rows[mode]['minor_faults_per_GiB_median']:.0f}")
    print(f"{records} records of {WINDOWS * 4 * MiB // records} B on average; load (1 min) "
          f"{min(loads):.1f}-{max(loads):.1f}")
    write_result(args.out, {"schema": "exastor-bench/1", "bench": "encryption_put_step", "when": utc_stamp(),
                            "machine": machine_info(), "args": vars(args), "records": records,
                            "load_avg_1min_per_round": loads, "rows": rows})
    meta.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
