#!/usr/bin/env bash
# What the CBT log costs: 4 KiB random writes at QD32 (fio, nbd engine) on one raw image served by tap-ctl create,
# with and without -C, in one run, the two configurations taking turns in ABBA order (ROUNDS rounds of SECONDS each) so background
# load hits both alike. Prints each round's IOPS, the medians and the ratio with/without.
# Usage: bench/cbt-overhead.sh [SIZE_MIB (default 1024)] [SECONDS (default 10)] [ROUNDS (default 3)]
# BIN=<dir with tapdisk, tap-ctl, cbt-util> (default artifacts/bin, from bash .ci/publish).
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${1:-1024}
secs=${2:-10}
rounds=${3:-3}
bin=${BIN:-$PWD/artifacts/bin}
for b in tapdisk tap-ctl cbt-util; do [ -x "$bin/$b" ] || { echo "cbt-overhead: $bin/$b missing (bash .ci/publish, or BIN=)" >&2; exit 1; }; done
command -v fio >/dev/null || { echo "cbt-overhead: fio missing" >&2; exit 1; }

work=${TAPDISK_BENCH_DIR:-/var/tmp/tapdisk-cbt-bench}
mkdir -p "$work"
ctl=$(mktemp -d /tmp/tdcbt-XXXXXX)
export BLKTAP_CONTROL_DIR=$ctl TAPDISK_EXEC=$bin/tapdisk
cleanup() { "$bin/tap-ctl" list 2>/dev/null | sed -n 's/^pid=\([0-9]*\) minor=\([0-9]*\).*/\1 \2/p' | while read -r p m; do "$bin/tap-ctl" destroy -p "$p" -m "$m" || true; done; rm -rf "$ctl"; }
trap cleanup EXIT

img=$work/img.raw
[ -f "$img" ] && [ "$(stat -c %s "$img")" -eq $((size_mb << 20)) ] || dd if=/dev/zero of="$img" bs=1M count="$size_mb" status=none

run() { # with-log? -> IOPS
    local args=(-a "aio:$img") pid minor iops
    if [ "$1" = yes ]; then "$bin/cbt-util" create -n "$work/img.cbtlog" -s $((size_mb << 20)); args+=(-C "$work/img.cbtlog"); fi
    "$bin/tap-ctl" create "${args[@]}" >/dev/null
    read -r pid minor < <("$bin/tap-ctl" list | sed -n 's/^pid=\([0-9]*\) minor=\([0-9]*\).*/\1 \2/p')
    iops=$(fio --name=w --ioengine=nbd --uri="nbd+unix:///?socket=$ctl/nbd$pid.$minor" --rw=randwrite --bs=4k --iodepth=32 \
        --size="${size_mb}M" --time_based --runtime="$secs" --ramp_time=1 --output-format=json 2>/dev/null |
        python3 -c 'import json,sys; t=sys.stdin.read(); print("%.0f" % json.loads(t[t.index("{"):])["jobs"][0]["write"]["iops"])')
    "$bin/tap-ctl" destroy -p "$pid" -m "$minor"
    echo "$iops"
}

without=() with=()
for r in $(seq "$rounds"); do
    # ABBA: the configuration that runs first alternates, so a trend in the background load favours neither.
    if [ $((r % 2)) -eq 1 ]; then without+=("$(run no)"); with+=("$(run yes)"); else with+=("$(run yes)"); without+=("$(run no)"); fi
    echo "round $r: without -C ${without[-1]} IOPS, with -C ${with[-1]} IOPS"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mw=$(median "${without[@]}"); mc=$(median "${with[@]}")
python3 -c "print('median: without -C $mw IOPS, with -C $mc IOPS, ratio %.3f (cost %.1f%%)' % ($mc/$mw, 100*(1-$mc/$mw)))"
