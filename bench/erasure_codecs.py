"""Erasure codec comparison behind docs/reliability.md, for sealing (encode a 64 MiB segment) and
degraded reads (rebuild one data shard; and one 1 MiB column window, the unit a degraded GET
decodes), at the geometries exastor picks. Same data, same process, best of 3:

- zfec alone (the baseline: what exastor used before, and the code whose bytes are on disk);
- exastor's ``engine/erasure.py`` (zfec's matrix applied by ISA-L's SIMD kernel, engine/gf.py);
- pyeclib's own API (liberasurecode + ISA-L, isa_l_rs_cauchy: a different code, for reference).

    python bench/erasure_codecs.py [--out bench/results/erasure_codecs.json]
"""

# ruff: noqa: B023  (each lambda is timed inside its own loop iteration)
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import zfec

from exastor.engine import erasure, gf


def best(fn, n: int = 3) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--mb", type=int, default=64)
    p.add_argument("--out")
    args = p.parse_args()
    size = args.mb << 20
    data = os.urandom(size)
    rows = []
    try:
        from pyeclib.ec_iface import ECDriver
    except ImportError:
        ECDriver = None  # noqa: N806
    for k, m in [(4, 2), (8, 4), (12, 4), (146, 4)]:
        shard = -(-size // k)
        blocks = [data[i * shard:(i + 1) * shard].ljust(shard, b"\0") for i in range(k)]
        enc = zfec.Encoder(k, k + m)
        parity = enc.encode(blocks, list(range(k, k + m)))
        dec = zfec.Decoder(k, k + m)
        have = list(range(1, k)) + [k]
        row = {"geometry": f"{k}+{m}",
               "zfec_encode_mb_s": round(args.mb / best(lambda: enc.encode(blocks, list(range(k, k + m)))), 1),
               "zfec_rebuild_one_shard_mb_s": round(
                   shard / 1e6 / best(lambda: dec.decode([blocks[i] for i in range(1, k)] + [parity[0]], have)), 1)}
        survivors = {i: blocks[i] for i in range(1, k)} | {k: parity[0]}
        window = {i: b[:1 << 20] for i, b in survivors.items()}
        row["exastor_kernel"] = gf.kernel_name()
        row["exastor_encode_mb_s"] = round(args.mb / best(lambda: erasure.encode(blocks, m)), 1)
        row["exastor_rebuild_one_shard_mb_s"] = round(
            shard / 1e6 / best(lambda: erasure.decode(k, m, survivors, [0])), 1)
        row["exastor_rebuild_1mib_window_mb_s"] = round(
            100 * (1 << 20) / 1e6 / best(lambda: [erasure.decode(k, m, window, [0]) for _ in range(100)]), 1)
        row["zfec_rebuild_1mib_window_mb_s"] = round(100 * (1 << 20) / 1e6 / best(
            lambda: [dec.decode([window[i] for i in have], have) for _ in range(100)]), 1)
        if ECDriver is not None:
            try:
                drv = ECDriver(k=k, m=m, ec_type="isa_l_rs_cauchy")
                frags = drv.encode(data)
                row["isal_encode_mb_s"] = round(args.mb / best(lambda: drv.encode(data)), 1)
                row["isal_rebuild_one_shard_mb_s"] = round(
                    shard / 1e6 / best(lambda: drv.reconstruct(frags[1:k + 1], [0])), 1)
            except Exception as exc:  # noqa: BLE001 - liberasurecode refuses wide stripes
                row["isal"] = f"unsupported: {str(exc)[:80]}"
        rows.append(row)
        print(json.dumps(row))
    out = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                       "python": platform.python_version()}, "segment_mb": args.mb, "rows": rows}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
