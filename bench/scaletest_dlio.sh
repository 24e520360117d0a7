#!/usr/bin/env bash
# Cross-check `exastor scaletest` against DLIO (dlio-benchmark 2.0.0, the engine of MLPerf Storage)
# on a local-directory workload with identical parameters: same sample size, batch, read threads,
# compute time, file count. Records both tools' AU and throughput in bench/results/scaletest_dlio.json.
#
#   bench/scaletest_dlio.sh            # installs DLIO into /tmp/dlio-venv on first use (~1 GB: TensorFlow)
#
# DLIO's plain `pip install` fails here on an NVIDIA DALI dependency, so it goes in with --no-deps
# plus the packages it really imports for the TensorFlow data loader (no torch needed), and
# mpi4py against Debian's OpenMPI.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PY:-$REPO/.venv/bin/python}
VENV=${DLIO_VENV:-/tmp/dlio-venv}
WORK=${WORK:-$REPO/bench/results/tmp/scaletest_dlio}
OUT=${OUT:-$REPO/bench/results/scaletest_dlio.json}
FILES=${FILES:-128}
RECORD=${RECORD:-4194304}   # bytes per sample (one sample per npz file, like U-Net3D)
BATCH=${BATCH:-4}
THREADS=${THREADS:-4}
EPOCHS=${EPOCHS:-3}
COMPUTE_TIMES=${COMPUTE_TIMES:-"0.2 0.05 0.02 0.005"}

if [[ ! -x $VENV/bin/dlio_benchmark ]]; then
    command -v mpirun >/dev/null || apt-get install -y --no-install-recommends libopenmpi-dev openmpi-bin
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --no-deps dlio-benchmark==2.0.0
    "$VENV/bin/pip" install -q Pillow PyYAML h5py numpy omegaconf pandas psutil pydftracer==1.0.2 hydra-core \
        tensorflow-cpu mpi4py
fi
export TF_CPP_MIN_LOG_LEVEL=3
mkdir -p "$WORK"
cd "$WORK"
common=(workload=unet3d_h100 ++workload.framework=tensorflow ++workload.reader.data_loader=tensorflow
        ++workload.workflow.checkpoint=False ++workload.dataset.data_folder="$WORK/dlio-data"
        ++workload.dataset.num_files_train="$FILES" ++workload.dataset.record_length="$RECORD"
        ++workload.dataset.record_length_stdev=0 ++workload.reader.batch_size="$BATCH"
        ++workload.reader.read_threads="$THREADS")
if [[ ! -d $WORK/dlio-data/train ]]; then
    "$VENV/bin/dlio_benchmark" "${common[@]}" ++workload.workflow.generate_data=True \
        ++workload.workflow.train=False >"$WORK/generate.log" 2>&1
fi
# DLIO's npz adds a small header: our files get the same size, so both read the same bytes per sample
SIZE=$(stat -c %s "$(ls "$WORK"/dlio-data/train/*.npz | head -1)")
rows=()
for compute in $COMPUTE_TIMES; do
    log=$WORK/dlio_$compute.log
    start=$(date +%s.%N)
    "$VENV/bin/dlio_benchmark" "${common[@]}" ++workload.workflow.generate_data=False \
        ++workload.workflow.train=True ++workload.train.epochs="$EPOCHS" \
        ++workload.train.computation_time="$compute" >"$log" 2>&1
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    dlio_au=$(sed -n 's/.*Training Accelerator Utilization \[AU\] (%): \([0-9.]*\).*/\1/p' "$log" | tail -1)
    dlio_sps=$(sed -n 's/.*Training Throughput (samples\/second): \([0-9.]*\).*/\1/p' "$log" | tail -1)
    dlio_mbs=$(sed -n 's/.*Training I\/O Throughput (MB\/second): \([0-9.]*\).*/\1/p' "$log" | tail -1)
    # same work as DLIO's measured epochs: FILES/BATCH steps x EPOCHS, at the same compute time
    steps=$((FILES / BATCH * EPOCHS))
    duration=$(echo "$steps * $compute * 1.0 + 1" | bc)
    "$PY" -m exastor.cli scaletest --endpoint "file://$WORK/ours" --quiet --workload unet3d \
        --accelerators 1 --record-length "$SIZE" --record-length-stdev 0 --num-files "$FILES" \
        --batch-size "$BATCH" --read-threads "$THREADS" --compute-time "$compute" \
        --duration "$duration" --skip-first-step --json "$WORK/ours_$compute.json" >/dev/null || true
    rows+=("$("$PY" - "$WORK/ours_$compute.json" "$compute" "$dlio_au" "$dlio_sps" "$dlio_mbs" "$wall" <<'PYEOF'
import json, sys
ours = json.load(open(sys.argv[1]))["result"]
compute, dlio_au, dlio_sps, dlio_mbs, wall = sys.argv[2:]
print(json.dumps({
    "compute_time": float(compute),
    "dlio": {"au_percent": float(dlio_au), "samples_per_s": float(dlio_sps), "mb_per_s": float(dlio_mbs),
             "wall_s": float(wall)},
    "exastor_scaletest": {"au_percent": 100 * ours["au_mean"], "samples_per_s": ours["samples_per_s"],
                          "mb_per_s": ours["throughput_bytes_per_s"] / 2**20, "duration_s": ours["duration"]},
}))
PYEOF
)")
done
"$PY" - "$OUT" "$FILES" "$RECORD" "$BATCH" "$THREADS" "$EPOCHS" "${rows[@]}" <<'PYEOF'
import json, os, platform, sys
out, files, record, batch, threads, epochs, *rows = sys.argv[1:]
rows = [json.loads(r) for r in rows]
for r in rows:
    d, o = r["dlio"], r["exastor_scaletest"]
    r["au_ratio"] = o["au_percent"] / d["au_percent"] if d["au_percent"] else None
    r["samples_per_s_ratio"] = o["samples_per_s"] / d["samples_per_s"] if d["samples_per_s"] else None
doc = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg()},
       "inputs": {"files": int(files), "record_length": int(record), "batch_size": int(batch),
                  "read_threads": int(threads), "epochs": int(epochs), "dlio": "dlio-benchmark 2.0.0, tensorflow loader"},
       "rows": rows}
json.dump(doc, open(out, "w"), indent=2)
for r in rows:
    d, o = r["dlio"], r["exastor_scaletest"]
    print(f"compute {r['compute_time']:>6}s  AU dlio {d['au_percent']:6.1f}%  ours {o['au_percent']:6.1f}%  "
          f"samples/s dlio {d['samples_per_s']:7.1f}  ours {o['samples_per_s']:7.1f}")
PYEOF
