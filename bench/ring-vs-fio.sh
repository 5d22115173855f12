#!/usr/bin/env bash
# The blkif ring against a real O_DIRECT file, next to fio (libaio, direct=1) on the same file, same workloads.
# 1. Builds and runs BlkifRingFileBenchmarks (BDN ShortRun via --quick): the test frontend drives the ring in process
#    over the 1 GiB raw ("aio") image and a fully allocated 1 GiB dynamic VHD, 4 KiB random reads at QD1 and QD32
#    and 64 KiB random writes at QD32.
# 2. Runs fio with the same three workloads on the same raw file (time based, SECONDS each after 1 s of ramp).
# 3. Prints ring IOPS, fio IOPS, ring/fio, QD32/QD1 (ring and fio) and the ring's allocated B/op.
# fio cannot read VHD, so the VHD rows are set against fio on the raw file: the disk's capability, not a VHD reader.
# Images live in TAPDISK_BENCH_DIR, else ${TAPDISK_TEST_TMP:-/var/tmp}/tapdisk-bench (disk-backed; never a tmpfs).
# Usage: bench/ring-vs-fio.sh [SECONDS_PER_FIO_JOB (default 10)] [--no-bdn (reuse the last BDN report)]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=10
run_bdn=1
for arg in "$@"; do
    case "$arg" in
        --no-bdn) run_bdn=0 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) secs=$arg ;;
    esac
done
command -v fio >/dev/null || { echo "ring-vs-fio: fio missing (bash .ci/setup)" >&2; exit 1; }

folder=${TAPDISK_BENCH_DIR:-${TAPDISK_TEST_TMP:-/var/tmp}/tapdisk-bench}
class=BlkifRingFileBenchmarks
report=artifacts/bench/results/Tapdisk.Benchmarks.$class-report-full.json
fio_out=artifacts/bench/fio
mkdir -p "$folder" "$fio_out"
if [ "$(stat -f -c %T "$folder")" = tmpfs ]; then
    echo "ring-vs-fio: $folder is tmpfs; O_DIRECT there measures nothing (set TAPDISK_TEST_TMP or TAPDISK_BENCH_DIR)" >&2
    exit 1
fi

if [ "$run_bdn" = 1 ]; then
    dotnet build bench/Tapdisk.Benchmarks -c Release -v q -nologo | { grep -E 'error|warn' || true; }
    rm -f "$report"
    # The suite creates the images (BenchImages) on first use.
    TAPDISK_BENCH_DIR=$folder dotnet run -c Release --no-build --project bench/Tapdisk.Benchmarks -- \
        --quick --filter "*.$class.*" >"$fio_out/bdn.log" 2>&1 ||
        { tail -40 "$fio_out/bdn.log" >&2; echo "ring-vs-fio: BDN run failed (log: $fio_out/bdn.log)" >&2; exit 1; }
fi
[ -f "$report" ] || { echo "ring-vs-fio: no $report; run without --no-bdn" >&2; exit 1; }

img=$folder/raw-1g.img
[ -f "$img" ] || { echo "ring-vs-fio: $img missing (the BDN run creates it)" >&2; exit 1; }
size=$(stat -c %s "$img")

# name rw bs iodepth
jobs=("read4k_qd1 randread 4k 1" "read4k_qd32 randread 4k 32" "write64k_qd32 randwrite 64k 32")
for job in "${jobs[@]}"; do
    read -r name rw bs qd <<<"$job"
    fio --name="$name" --filename="$img" --size="$size" --ioengine=libaio --direct=1 --rw="$rw" --bs="$bs" \
        --iodepth="$qd" --numjobs=1 --time_based --runtime="$secs" --ramp_time=1 \
        --output-format=json --output="$fio_out/$name.json" >/dev/null
done

python3 - "$report" "$fio_out" "$img" "$secs" <<'PY'
import json, os, sys

report, fio_dir, img, secs = sys.argv[1:]
with open(report) as f:
    bdn = json.load(f)

ring = {}
for b in bdn["Benchmarks"]:
    image = (b.get("Parameters") or "").replace("Image=", "") or "?"
    mean_ns = b["Statistics"]["Mean"]
    alloc = (b.get("Memory") or {}).get("BytesAllocatedPerOperation")
    ring[(image, b["Method"])] = (1e9 / mean_ns, alloc)

def fio_iops(name):
    with open(os.path.join(fio_dir, name + ".json")) as f:
        text = f.read()
    job = json.loads(text[text.index("{"):])["jobs"][0]
    side = job["read"] if job["read"]["io_bytes"] else job["write"]
    return side["iops"]

workloads = [
    ("randread 4k QD1", "BlkifRingFile_RandomRead4K_QD1", "read4k_qd1", None),
    ("randread 4k QD32", "BlkifRingFile_RandomRead4K_QD32", "read4k_qd32", ("BlkifRingFile_RandomRead4K_QD1", "read4k_qd1")),
    ("randwrite 64k QD32", "BlkifRingFile_RandomWrite64K_QD32", "write64k_qd32", None),
]
fio = {w[2]: fio_iops(w[2]) for w in workloads}
images = sorted({k[0] for k in ring}, key=lambda i: (i != "Raw", i))

def fmt(x, spec):
    return "-" if x is None else format(x, spec)

print(f"ring: BDN {os.path.basename(report)}; fio: libaio direct=1 on {img}, {secs} s per job")
header = f"{'image':<6} {'workload':<19} {'ring IOPS':>10} {'fio IOPS':>10} {'ring/fio':>9} {'ring QD32/QD1':>14} {'fio QD32/QD1':>13} {'alloc B/op':>11}"
print(header)
print("-" * len(header))
for image in images:
    for label, method, fio_name, qd1 in workloads:
        iops, alloc = ring.get((image, method), (None, None))
        f_iops = fio[fio_name]
        ratio = iops / f_iops if iops and f_iops else None
        ring_scale = fio_scale = None
        if qd1 is not None:
            base = ring.get((image, qd1[0]), (None, None))[0]
            ring_scale = iops / base if iops and base else None
            fio_scale = f_iops / fio[qd1[1]] if fio[qd1[1]] else None
        print(f"{image:<6} {label:<19} {fmt(iops, ',.0f'):>10} {fmt(f_iops, ',.0f'):>10} {fmt(ratio, '.2f'):>9} "
              f"{fmt(ring_scale, '.2f'):>14} {fmt(fio_scale, '.2f'):>13} {fmt(alloc, 'd'):>11}")
if any(i != "Raw" for i in images):
    print("fio cannot read VHD: the Vhd rows compare with fio on the raw file (what the disk gives, not a VHD reader).")
PY
