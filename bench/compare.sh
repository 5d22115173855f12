#!/usr/bin/env bash
# Side-by-side NBD benchmark: the same fio (nbd engine) and nbdcopy workloads against our `tapdisk serve`,
# qemu-nbd and nbdkit (raw via its file plugin; nbdkit cannot serve VHD), on the same image, in one run.
# Prints IOPS/MB/s per server and the ratio ours/qemu-nbd. Cache modes match: O_DIRECT everywhere
# (tapdisk default, qemu-nbd --cache=none --aio=threads, nbdkit file cache=none).
# Usage: bench/compare.sh [SIZE_MIB (default 1024)] [SECONDS_PER_JOB (default 5)]
# BASE_BIN=<dir with another build's tapdisk> adds that build as server "base" (before/after a change, one run, the
# servers taking turns per image). Each cell also gives the server's CPU per request in microseconds (utime+stime of
# the server process over the job, ramp included, divided by IOPS x (seconds + 1 s ramp); for nbdcopy, per 256 KiB
# request): on two cores, CPU per request is throughput.
# THREADS=1 adds this build forced onto its fallback I/O engine (TAPDISK_IO_ENGINE=threads) as server "threads".
# The last rows put the raw file's own fio (libaio, O_DIRECT) against tapdisk over NBD, random 4 KiB reads at QD1 and
# QD32, in FILE_PAIRS interleaved pairs (default 5), and print the median of the pairs' ratios.
# qemu-nbd 10 runs as server "qemu10" (--aio=io_uring --cache=none) beside qemu-nbd 7.2 whenever .ci/setup unpacked it
# (bookworm-backports, under TAPDISK_CLIENTS, default /var/tmp/tapdisk-clients). QEMU10_NBD=<path> picks another
# qemu-nbd 10; QEMU10_NBD= (empty) leaves it out.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${1:-1024}
if [ -z "${QEMU10_NBD+set}" ]; then
    QEMU10_NBD=${TAPDISK_CLIENTS:-/var/tmp/tapdisk-clients}/qemu10/usr/bin/qemu-nbd
    [ -x "$QEMU10_NBD" ] || { echo "compare: no qemu-nbd 10 at $QEMU10_NBD (bash .ci/setup); comparing with qemu-nbd 7.2 only" >&2; QEMU10_NBD=; }
fi
secs=${2:-5}
bin=$PWD/artifacts/bin
[ -x "$bin/tapdisk" ] || { echo "compare: build first (bash .ci/publish)" >&2; exit 1; }
for t in qemu-nbd qemu-img nbdkit fio nbdcopy; do command -v "$t" >/dev/null || { echo "compare: $t missing (bash .ci/setup)" >&2; exit 1; }; done

work=${TAPDISK_BENCH_DIR:-/var/tmp/tapdisk-compare}
mkdir -p "$work"
sock=$work/s.sock
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -f "$sock"; }
trap cleanup EXIT

# Images: raw fully written; dynamic VHD fully allocated (so reads hit data), plus a fresh VHD for random writes.
if [ ! -f "$work/img.raw" ] || [ "$(stat -c %s "$work/img.raw")" -ne $((size_mb << 20)) ]; then
    dd if=/dev/urandom of="$work/img.raw" bs=1M count="$size_mb" status=none
    rm -f "$work/img.vhd"
fi
[ -f "$work/img.vhd" ] || qemu-img convert -f raw -O vpc -o subformat=dynamic,force_size=on "$work/img.raw" "$work/img.vhd"

start() { # server image-kind image
    rm -f "$sock"
    case "$1" in
        tapdisk) "$bin/tapdisk" serve -s "$sock" "$([ "$2" = raw ] && echo aio || echo vhd):$3" 2>/dev/null & ;;
        threads) TAPDISK_IO_ENGINE=threads "$bin/tapdisk" serve -s "$sock" "$([ "$2" = raw ] && echo aio || echo vhd):$3" 2>/dev/null & ;;
        qemu10) "$QEMU10_NBD" -f "$([ "$2" = raw ] && echo raw || echo vpc)" --cache=none --aio=io_uring -t -e 64 -k "$sock" "$3" & ;;
        base) "$BASE_BIN/tapdisk" serve -s "$sock" "$([ "$2" = raw ] && echo aio || echo vhd):$3" 2>/dev/null & ;;
        qemu-nbd) qemu-nbd -f "$([ "$2" = raw ] && echo raw || echo vpc)" --cache=none --aio=threads -t -e 64 -k "$sock" "$3" & ;;
        nbdkit) nbdkit -f -U "$sock" file "$3" cache=none & ;;
    esac
    pids+=($!)
    for _ in $(seq 100); do [ -S "$sock" ] && nbdinfo --size "nbd+unix:///?socket=$sock" >/dev/null 2>&1 && return; sleep 0.1; done
    echo "compare: $1 did not start" >&2; exit 1
}
stop() { kill "${pids[-1]}" 2>/dev/null || true; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }

ticks() { awk '{print $14 + $15}' "/proc/${pids[-1]}/stat"; } # the server's utime + stime, in clock ticks
hz=$(getconf CLK_TCK)
fio_job() { # rw bs iodepth -> "iops MB/s cpu-us-per-request"
    local c0 c1 out
    c0=$(ticks)
    out=$(fio --name=j --ioengine=nbd --uri="nbd+unix:///?socket=$sock" --rw="$1" --bs="$2" --iodepth="$3" \
        --size="${size_mb}M" --time_based --runtime="$secs" --ramp_time=1 --output-format=json 2>/dev/null)
    c1=$(ticks)
    python3 -c 'import json,sys; t=sys.stdin.read(); j=json.loads(t[t.index("{"):])["jobs"][0]; r=j["read"] if j["read"]["io_bytes"] else j["write"]; cpu=('"$c1"'-'"$c0"')/'"$hz"'; n=r["iops"]*('"$secs"'+1); print("%.0f %.1f %.1f" % (r["iops"], r["bw_bytes"]/1e6, cpu*1e6/n if n else 0))' <<<"$out"
}
copy_job() { # -> "- MB/s cpu-us-per-256KiB", the median of three copies (one copy of 1 GiB takes half a second,
    # and a single one swung 0.8-1.6x against the same peer between runs)
    local t0 t1 c0 c1 runs=()
    for _ in 1 2 3; do
        c0=$(ticks); t0=$(date +%s.%N)
        if ! nbdcopy --connections=4 "nbd+unix:///?socket=$sock" null: ; then
            # A failed copy shows as 0 MB/s rather than as the time it took to fail.
            echo "compare: nbdcopy failed" >&2; echo "- 0.0 0.0"; return
        fi
        t1=$(date +%s.%N); c1=$(ticks)
        runs+=("$(python3 -c "print('%.1f %.1f' % ($size_mb*1.048576/($t1-$t0), ($c1-$c0)/$hz*1e6/($size_mb*4)))")")
    done
    printf '%s\n' "${runs[@]}" | LC_ALL=C sort -g | sed -n 2p | sed 's/^/- /'
}

declare -A result
rows=("randread 4k 1" "randread 4k 32" "randwrite 4k 1" "randwrite 4k 32" "read 1M 8" "write 1M 8" "nbdcopy - -")
# "vhd-new": random writes into an empty dynamic VHD, where every first write to a block allocates it.
kinds=(raw vhd vhd-new)
rows_for() { if [ "$1" = vhd-new ]; then echo "randwrite 4k 1;randwrite 4k 32"; else local IFS=';'; echo "${rows[*]}"; fi; }
for kind in "${kinds[@]}"; do
    servers=(tapdisk); [ -n "${BASE_BIN:-}" ] && servers+=(base)
    [ -n "${THREADS:-}" ] && servers+=(threads)
    servers+=(qemu-nbd); [ -n "${QEMU10_NBD:-}" ] && servers+=(qemu10)
    [ "$kind" = raw ] && servers+=(nbdkit)
    for server in "${servers[@]}"; do
        img=$work/img.raw
        case "$kind" in
            vhd) cp --sparse=always "$work/img.vhd" "$work/run.vhd"; img=$work/run.vhd ;;
            vhd-new) rm -f "$work/run.vhd"; qemu-img create -q -f vpc -o subformat=dynamic,force_size=on "$work/run.vhd" "${size_mb}M"; img=$work/run.vhd ;;
        esac
        # Read the image once with O_DIRECT first: on a VM, whichever server ran first otherwise paid for the host's
        # cold cache (one run measured the first server's raw random reads at a sixth of the second's).
        dd if="$img" of=/dev/null bs=4M iflag=direct status=none
        start "$server" "${kind%-new}" "$img"
        IFS=';' read -r -a krows <<<"$(rows_for "$kind")"
        for row in "${krows[@]}"; do
            read -r rw bs qd <<<"$row"
            if [ "$rw" = nbdcopy ]; then result["$kind|$row|$server"]=$(copy_job); else result["$kind|$row|$server"]=$(fio_job "$rw" "$bs" "$qd"); fi
        done
        stop
    done
done

# Cells: "iops MB/s cpu-us/request". Ratios: throughput ours/peer, and server CPU per request ours/peer.
all=(tapdisk); [ -n "${BASE_BIN:-}" ] && all+=(base)
[ -n "${THREADS:-}" ] && all+=(threads)
all+=(qemu-nbd); [ -n "${QEMU10_NBD:-}" ] && all+=(qemu10)
all+=(nbdkit)
ratio() { python3 -c "import sys; a='$1'.split(); b='$2'.split(); i=$3; print('%.2f' % (float(a[i])/float(b[i])) if len(b)>i and b[i]!='-' and float(b[i])>0 else '-')"; }
header=$(printf '%-7s %-16s' image workload)
for server in "${all[@]}"; do header+=$(printf ' %24s' "$server"); done
for peer in "${all[@]:1}"; do header+=$(printf ' %9s %9s' "vs $peer" "cpu"); done
echo "$header"
for kind in "${kinds[@]}"; do
    IFS=';' read -r -a krows <<<"$(rows_for "$kind")"
    for row in "${krows[@]}"; do
        line=$(printf '%-7s %-16s' "$kind" "$row")
        for server in "${all[@]}"; do line+=$(printf ' %24s' "${result["$kind|$row|$server"]:-"- - -"}"); done
        t=${result["$kind|$row|tapdisk"]}
        for peer in "${all[@]:1}"; do
            o=${result["$kind|$row|$peer"]:-"- - -"}
            line+=$(printf ' %9s %9s' "$(ratio "$t" "$o" 1)" "$(ratio "$t" "$o" 2)")
        done
        echo "$line"
    done
done

# The disk itself: fio's libaio with O_DIRECT on the raw file (issue 17's yardstick). On this shared VM one server's
# figure swings by a third between minutes, so the file and tapdisk over NBD take turns, FILE_PAIRS pairs (default 5)
# per queue depth, and the ratio is the median of the pairs' ratios.
echo
file_iops() { # iodepth -> IOPS
    local out
    out=$(fio --name=f --ioengine=libaio --direct=1 --filename="$work/img.raw" --rw=randread --bs=4k --iodepth="$1" \
        --size="${size_mb}M" --time_based --runtime="$secs" --ramp_time=1 --output-format=json 2>/dev/null)
    python3 -c 'import json,sys; t=sys.stdin.read(); print("%.0f" % json.loads(t[t.index("{"):])["jobs"][0]["read"]["iops"])' <<<"$out"
}
for qd in 1 32; do
    pairs=()
    for _ in $(seq "${FILE_PAIRS:-5}"); do
        f=$(file_iops "$qd")
        start tapdisk raw "$work/img.raw"
        t=$(fio_job randread 4k "$qd")
        stop
        pairs+=("${t%% *}/$f")
    done
    python3 - "$qd" "${pairs[@]}" <<'PY'
import statistics, sys
qd, pairs = sys.argv[1], sys.argv[2:]
ratios = [int(a) / int(b) for a, b in (p.split('/') for p in pairs)]
print('file    randread 4k %-4s fio libaio O_DIRECT vs tapdisk over NBD, interleaved (IOPS ours/file): %s; median %.2f'
      % (qd, ' '.join('%s=%.2f' % (p, r) for p, r in zip(pairs, ratios)), statistics.median(ratios)))
PY
done
