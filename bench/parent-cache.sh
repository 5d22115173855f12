#!/usr/bin/env bash
# The shared parent cache on many VMs over one golden image (issue 16): a golden VHD holding a real ext4 file system
# (the machine's /usr/bin, made with mke2fs -d, no root needed), 8 differencing leaves (vhd-util snapshot), all 8 VBDs
# in one tapdisk. Phase "boot": one VBD reads alone; phase "all": 8 fio readers in parallel, one per VBD, zipf random
# 4 KiB reads through the nbd engine. tapdisk opens the files O_DIRECT (its default), so the host page cache does not
# serve the parent. Run once with the cache off (TAPDISK_PARENT_CACHE_MB=0) and once on, and print per phase:
# aggregate MB/s, bytes the parent layer served (its read hits in tap-ctl stats), the cache's hit rate (and the share of
# hits the hot tier answered without a decode), the cache's stored bytes against the raw bytes it holds; and CPU per
# request of tapdisk (utime+stime from /proc/<pid>/stat) and of fio (its usr_cpu+sys_cpu), so a CPU-bound run shows
# which side the cores went to. RUNS picks the runs (default
# "off on"; "nohot" is the cache on with its hot tier off, TAPDISK_PARENT_CACHE_HOT=0).
# PARENT_IOPS=N (root) puts the golden image on a file system of its own (a loop device with direct I/O) and limits the
# reads this script's processes make from that device to N per second (cgroup v1 blkio throttle): a golden image on
# shared storage (an NFS or iSCSI SR serving many hosts), where a parent read costs a round trip, unlike this VM's
# virtual disk, which the host answers from its own page cache. The leaves stay where they are, unthrottled.
# Usage: [RUNS="off on nohot"] [PARENT_IOPS=N] bench/parent-cache.sh [SECONDS_PER_PHASE (default 20)] [CACHE_MB (default 512)]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
cache_mb=${2:-512}
bin=$PWD/artifacts/bin
[ -x "$bin/tapdisk" ] || { echo "parent-cache: build first (bash .ci/publish)" >&2; exit 1; }
for t in mke2fs qemu-img fio python3; do command -v "$t" >/dev/null || { echo "parent-cache: $t missing" >&2; exit 1; }; done

work=${TAPDISK_BENCH_DIR:-/var/tmp/tapdisk-parent-cache}
mkdir -p "$work"
export BLKTAP_CONTROL_DIR=$work/ctl TAPDISK_SHM_DIR=$work/shm TAPDISK_LOG_DIR=$work/log TAPDISK_EXEC=$bin/tapdisk
mkdir -p "$BLKTAP_CONTROL_DIR" "$TAPDISK_SHM_DIR" "$TAPDISK_LOG_DIR"
n=8

if [ ! -f "$work/golden.vhd" ]; then
    rm -f "$work/golden.raw"
    mke2fs -q -t ext4 -d /usr/bin -F "$work/golden.raw" 512M
    qemu-img convert -f raw -O vpc -o subformat=dynamic "$work/golden.raw" "$work/golden.vhd"
    rm -f "$work/golden.raw"
fi

golden=$work/golden.vhd
if [ -n "${PARENT_IOPS:-}" ]; then
    mnt=$work/parent-mnt cg=/sys/fs/cgroup/blkio/tapdisk-parent-cache
    mkdir -p "$mnt" "$cg"
    if ! mountpoint -q "$mnt"; then
        [ -f "$work/parent-fs.img" ] || { truncate -s 1G "$work/parent-fs.img"; mke2fs -q -t ext4 -F "$work/parent-fs.img"; }
        mount "$(losetup --direct-io=on -f --show "$work/parent-fs.img")" "$mnt"
    fi
    release_parent() {
        echo $$ > /sys/fs/cgroup/blkio/cgroup.procs
        rmdir "$cg" 2>/dev/null || true
        dev=$(findmnt -n -o SOURCE "$mnt"); umount "$mnt" && losetup -d "$dev"
    }
    trap release_parent EXIT
    [ -f "$mnt/golden.vhd" ] || cp "$work/golden.vhd" "$mnt/golden.vhd"
    golden=$mnt/golden.vhd
    echo "$(lsblk -dno MAJ:MIN "$(findmnt -n -o SOURCE "$mnt")" | tr -d ' ') $PARENT_IOPS" > "$cg/blkio.throttle.read_iops_device"
    echo $$ > "$cg/cgroup.procs"
    echo "parent-cache: golden image on $(findmnt -n -o SOURCE "$mnt"), reads limited to $PARENT_IOPS per second"
fi

tapctl() { "$bin/tap-ctl" "$@"; }
stats() { tapctl stats -p "$pid" -m "$1"; }

run() { # label cache_mb hot(1/0)
    local label=$1
    for i in $(seq 0 $((n - 1))); do rm -f "$work/leaf$i.vhd"; "$bin/vhd-util" snapshot -n "$work/leaf$i.vhd" -p "$golden"; done
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    pid=$(TAPDISK_PARENT_CACHE_MB=$2 TAPDISK_PARENT_CACHE_HOT=$3 tapctl spawn)
    minors=()
    for i in $(seq 0 $((n - 1))); do
        m=$(tapctl allocate); m=${m##*tapdisk-}
        tapctl attach -p "$pid" -m "$m"
        tapctl open -p "$pid" -m "$m" -a "vhd:$work/leaf$i.vhd"
        minors+=("$m")
    done

    phase() { # name count
        local jobs=$work/job.fio before after
        before=$(for m in "${minors[@]}"; do stats "$m"; echo; done)
        ticks0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        { echo "[global]"; echo "ioengine=nbd"; echo "rw=randread"; echo "bs=4k"; echo "iodepth=8";
          echo "random_distribution=zipf:1.1"; echo "time_based=1"; echo "runtime=$secs"; echo "size=512M"; echo "group_reporting=1"
          for i in $(seq 0 $(($2 - 1))); do echo "[vbd$i]"; echo "uri=nbd+unix:///?socket=$BLKTAP_CONTROL_DIR/nbd$pid.${minors[$i]}"; done
        } > "$jobs"
        fio --output-format=json "$jobs" > "$work/$label-$1.json"
        ticks1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        after=$(for m in "${minors[@]}"; do stats "$m"; echo; done)
        python3 - "$label" "$1" "$work/$label-$1.json" "$secs" "$((ticks1 - ticks0))" "$(getconf CLK_TCK)" <<PY
import json, sys
label, name, out, secs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ticks, hz = int(sys.argv[5]), int(sys.argv[6])
def docs(text): return [json.loads(l) for l in text.splitlines() if l.strip()]
before, after = docs('''$before'''), docs('''$after''')
def parent_bytes(ds): return sum(d["images"][-1]["hits"][0] for d in ds) * 512
t = open(out).read(); j = json.loads(t[t.index("{"):])["jobs"][0]; r = j["read"]
line = f"{label:5} {name:4}: {r['bw_bytes']/1e6:8.1f} MB/s  {r['iops']:9.0f} IOPS  parent served {(parent_bytes(after)-parent_bytes(before))/1e6:9.1f} MB"
# fio's usr/sys_cpu are percent of the jobs' summed runtime (ms): their CPU seconds over all jobs.
requests = max(r["total_ios"], 1); server = ticks / hz; client = (j["usr_cpu"] + j["sys_cpu"]) / 100 * j["job_runtime"] / 1000
line += f"  CPU tapdisk {server:5.1f} s ({1e6*server/requests:4.1f} us/req), fio {client:5.1f} s ({1e6*client/requests:4.1f} us/req)"
c0, c1 = before[0].get("parent_cache"), after[0].get("parent_cache")
if c1:
    h = c1["set_hits"] - c0["set_hits"]; m = c1["set_misses"] - c0["set_misses"]
    hot = sum(d["parent_cache"].get("hot_hits", 0) for d in after) - sum(d["parent_cache"].get("hot_hits", 0) for d in before)
    line += f"  hit rate {100*h/max(h+m,1):5.1f}% (hot {100*hot/max(h,1):4.1f}%)  cache {c1['stored_bytes']/1e6:.1f} MB stored for {c1['raw_bytes']/1e6:.1f} MB raw ({100*c1['stored_bytes']/max(c1['raw_bytes'],1):.0f}%), {c1['entries']} entries"
print(line)
PY
    }
    phase boot 1
    phase all "$n"
    for m in "${minors[@]}"; do tapctl close -p "$pid" -m "$m"; tapctl detach -p "$pid" -m "$m"; done
}

for r in ${RUNS:-off on}; do
    case $r in
        off) run off 0 1 ;;
        on) run on "$cache_mb" 1 ;;
        nohot) run nohot "$cache_mb" 0 ;;
        *) echo "parent-cache: unknown run $r (off, on, nohot)" >&2; exit 2 ;;
    esac
done
