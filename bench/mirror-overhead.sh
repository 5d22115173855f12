#!/usr/bin/env bash
# What mirroring to a secondary costs (tap-ctl -2, storage migration): 4 KiB random writes at QD32 and 1 MiB sequential
# writes at QD8 (fio, nbd engine) on one raw image served by tap-ctl create, without and with -2 aio:<local raw file
# of the same size>, the two configurations taking turns in ABBA order (ROUNDS rounds of SECONDS each) so background
# load hits both alike. Prints each round's IOPS and the server's CPU per request (utime+stime of the tapdisk over the
# requests fio completed, as compare.sh), the medians and the ratios with/without.
# Usage: bench/mirror-overhead.sh [SIZE_MIB (default 1024)] [SECONDS (default 8)] [ROUNDS (default 3)]
# BIN=<dir with tapdisk, tap-ctl> (default artifacts/bin, from bash .ci/publish).
# DEST=tapdisk mirrors to a second, local tapdisk instead (`tapdisk serve` of the secondary file, -2 nbd:<its socket>:
# storage migration's shape through our NBD client); the CPU per request is then the primary tapdisk's alone.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${1:-1024}
secs=${2:-8}
rounds=${3:-3}
bin=${BIN:-$PWD/artifacts/bin}
for b in tapdisk tap-ctl; do [ -x "$bin/$b" ] || { echo "mirror-overhead: $bin/$b missing (bash .ci/publish, or BIN=)" >&2; exit 1; }; done
command -v fio >/dev/null || { echo "mirror-overhead: fio missing" >&2; exit 1; }

work=${TAPDISK_BENCH_DIR:-/var/tmp/tapdisk-mirror-bench}
mkdir -p "$work"
ctl=$(mktemp -d /tmp/tdmir-XXXXXX)
export BLKTAP_CONTROL_DIR=$ctl TAPDISK_EXEC=$bin/tapdisk TAPDISK_ENOSPC_DIR=$ctl
cleanup() { "$bin/tap-ctl" list 2>/dev/null | sed -n 's/^pid=\([0-9]*\) minor=\([0-9]*\).*/\1 \2/p' | while read -r p m; do "$bin/tap-ctl" destroy -p "$p" -m "$m" || true; done; rm -rf "$ctl"; }
trap cleanup EXIT

img=$work/img.raw sec=$work/secondary.raw
for f in "$img" "$sec"; do
    [ -f "$f" ] && [ "$(stat -c %s "$f")" -eq $((size_mb << 20)) ] || dd if=/dev/zero of="$f" bs=1M count="$size_mb" status=none
done
hz=$(getconf CLK_TCK)
secondary="aio:$sec"
if [ "${DEST:-file}" = tapdisk ]; then
    "$bin/tapdisk" serve -s "$ctl/dest.sock" "aio:$sec" 2>/dev/null &
    dest_pid=$!
    trap 'kill $dest_pid 2>/dev/null; cleanup' EXIT
    for _ in $(seq 100); do [ -S "$ctl/dest.sock" ] && break; sleep 0.1; done
    secondary="nbd:$ctl/dest.sock"
fi

run() { # mirror? rw bs iodepth -> "iops cpu-us-per-request"
    local args=(-a "aio:$img") pid minor c0 c1 out
    [ "$1" = yes ] && args+=(-2 "$secondary")
    "$bin/tap-ctl" create "${args[@]}" >/dev/null
    read -r pid minor < <("$bin/tap-ctl" list | sed -n 's/^pid=\([0-9]*\) minor=\([0-9]*\).*/\1 \2/p')
    c0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    out=$(fio --name=w --ioengine=nbd --uri="nbd+unix:///?socket=$ctl/nbd$pid.$minor" --rw="$2" --bs="$3" --iodepth="$4" \
        --size="${size_mb}M" --time_based --runtime="$secs" --ramp_time=1 --output-format=json 2>/dev/null)
    c1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    if [ "$1" = yes ]; then
        "$bin/tap-ctl" stats -p "$pid" -m "$minor" | grep -q '"nbd_mirror_failed": 0' || { echo "mirror-overhead: the mirror failed" >&2; exit 1; }
    fi
    "$bin/tap-ctl" destroy -p "$pid" -m "$minor"
    python3 -c 'import json,sys; t=sys.stdin.read(); r=json.loads(t[t.index("{"):])["jobs"][0]["write"]; n=r["iops"]*('"$secs"'+1); print("%.0f %.1f" % (r["iops"], ('"$c1"'-'"$c0"')/'"$hz"'*1e6/n if n else 0))' <<<"$out"
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for job in "randwrite 4k 32" "write 1M 8"; do
    read -r rw bs qd <<<"$job"
    wi=() wc=() mi=() mc=()
    for r in $(seq "$rounds"); do
        # ABBA: the configuration that runs first alternates, so a trend in the background load favours neither.
        if [ $((r % 2)) -eq 1 ]; then order="no yes"; else order="yes no"; fi
        for mode in $order; do
            read -r iops cpu < <(run "$mode" "$rw" "$bs" "$qd")
            if [ "$mode" = no ]; then wi+=("$iops"); wc+=("$cpu"); else mi+=("$iops"); mc+=("$cpu"); fi
        done
        echo "$rw $bs QD$qd round $r: without -2 ${wi[-1]} IOPS ${wc[-1]} us/req, with -2 ${mi[-1]} IOPS ${mc[-1]} us/req"
    done
    a=$(median "${wi[@]}") b=$(median "${mi[@]}") ca=$(median "${wc[@]}") cb=$(median "${mc[@]}")
    python3 -c "print('$rw $bs QD$qd median: without -2 $a IOPS $ca us/req, with -2 $b IOPS $cb us/req; IOPS ratio %.3f, CPU per request ratio %.2f' % ($b/$a, $cb/$ca if $ca else 0))"
done
