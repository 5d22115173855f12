#!/usr/bin/env bash
# Compares the latest BenchmarkDotNet results with bench/allocation-budget.json.
# Usage: bench/check-allocations.sh [RESULTS_DIR] [--require-all]
#   RESULTS_DIR  folder holding *-report-full.json (default: artifacts/bench/results, where Program.cs points BDN)
#   --require-all  also fail when a budgeted benchmark has no result (a full-suite run)
# Exit status: 0 within budget, 1 over budget / unbudgeted benchmark / no memory data, 2 no results or bad input.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
results="$root/artifacts/bench/results"
require_all=0
for arg in "$@"; do
  case "$arg" in
    --require-all) require_all=1 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) results="$arg" ;;
  esac
done

exec python3 - "$here/allocation-budget.json" "$results" "$require_all" <<'PY'
import glob, json, os, sys

budget_path, results_dir, require_all = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
with open(budget_path) as f:
    budget = json.load(f)["benchmarks"]

reports = sorted(glob.glob(os.path.join(results_dir, "*-report-full.json")))
if not reports:
    print(f"check-allocations: no *-report-full.json in {results_dir}; run the suite first", file=sys.stderr)
    sys.exit(2)

failures, seen = [], set()
print(f"{'benchmark':<72} {'B/op':>8} {'budget':>8}")
for report in reports:
    with open(report) as f:
        data = json.load(f)
    for b in data.get("Benchmarks", []):
        key = f"{b['Type']}.{b['Method']}"
        params = b.get("Parameters") or ""
        name = f"{key} [{params}]" if params else key
        seen.add(key)
        # A parameter-specific entry ("Type.Method [DirectIo=True]") wins over the plain one.
        allowed = budget.get(name, budget.get(key))
        memory = b.get("Memory")
        if memory is None or memory.get("BytesAllocatedPerOperation") is None:
            failures.append(f"{name}: no memory data (is [MemoryDiagnoser] on the class?)")
            continue
        actual = memory["BytesAllocatedPerOperation"]
        verdict = ""
        if allowed is None:
            failures.append(f"{name}: {actual} B/op but no budget entry in allocation-budget.json")
            verdict = "  <- no budget"
        elif actual > allowed:
            failures.append(f"{name}: {actual} B/op exceeds the budget of {allowed} B/op")
            verdict = "  <- OVER"
        print(f"{name:<72} {actual:>8} {str(allowed):>8}{verdict}")

missing = sorted(k for k in budget if k.split(" [")[0] not in seen)
for k in missing:
    msg = f"{k}: budgeted but not in the results"
    if require_all:
        failures.append(msg)
    else:
        print(f"note: {msg}")

if failures:
    print("\ncheck-allocations: FAILED", file=sys.stderr)
    for line in failures:
        print(f"  {line}", file=sys.stderr)
    sys.exit(1)
print(f"\ncheck-allocations: OK ({len(seen)} benchmarks from {len(reports)} report(s) within budget)")
PY
