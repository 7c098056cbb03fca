#!/bin/bash
# Smoke test of the benchmark harness, so that `make bench` does not rot
# between the times someone runs it: `scripts/bench/run --smoke` must start
# every subject a few times and get numbers from each, without touching
# docs/: process start (hearth run, bwrap, crun, the kernel floors), cold and
# prewarm starts through hearthd, the sandbox library's creation rate,
# density and scaling (scripts/bench/sbxbench.c), the scheduler benchmark,
# hearthd's memory, warm stdio/lambda/http calls and their floors, async
# acceptance. Then nothing it started may be left: cgroups, sandbox processes.
#
# TAP lines, then "N passed, N failed[, N skipped]". A subject whose tool is
# not installed (or bin/hearth not built) is a "# SKIP", never a pass.
# Runs as root (namespaces, cgroups, crun), from any directory.
set -u
cd "$(dirname "$0")/../.." || exit 1

pass=0 fail=0 skip=0 n=0
ok()     { n=$((n + 1)); pass=$((pass + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n - $1"; }
skip()   { n=$((n + 1)); skip=$((skip + 1)); echo "ok $n - $1 # SKIP $2"; }
finish() {
    if [ "$skip" -gt 0 ]; then
        echo "$pass passed, $fail failed, $skip skipped"
    else
        echo "$pass passed, $fail failed"
    fi
    [ "$fail" -eq 0 ]
    exit
}

if [ "$(id -u)" != 0 ]; then
    skip "benchmark harness smoke run" "needs root"
    finish
fi

docs=docs/benchmarks.md
before=$(sha256sum "$docs" docs/bench/* 2>/dev/null)
out=$(mktemp)
trap 'rm -f "$out"' EXIT

timeout 300 scripts/bench/run --smoke >"$out" 2>&1
rc=$?
# The harness names its cgroups after its pid, which it reports.
pid=$(sed -n 's/^smoke pid: \([0-9]*\)$/\1/p' "$out" | head -n 1)

# Every subject the harness knows must report: ok, skip (tool missing) or fail.
for subject in exec hearth bwrap crun floor floor-map cold prewarm sbx-rate density scaling sched \
    daemon-memory warm-hearth warm-lambda warm-http warm-floor warm-floor-hop async-accept; do
    line=$(grep -E "^smoke (ok|skip|fail) $subject:" "$out" | head -n 1)
    case "$line" in
    "smoke ok $subject:"*)   ok "$subject produced numbers (${line#*: })" ;;
    "smoke skip $subject:"*) skip "$subject" "${line#*: }" ;;
    "smoke fail $subject:"*) not_ok "$subject: ${line#*: }" ;;
    *)                       not_ok "$subject: no result line from the harness" ;;
    esac
done

if grep -q '^smoke ok document:' "$out"; then
    ok "the report renders (under build/bench/smoke/)"
else
    not_ok "the report renders"
fi

# Exit status 0 exactly when no subject failed (1 when one did, reported above).
if [ "$rc" -eq 0 ] && [ "$fail" -eq 0 ]; then
    ok "harness exited 0"
elif [ "$rc" -eq 1 ] && [ "$fail" -gt 0 ]; then
    ok "harness exited 1, matching the failures above"
else
    not_ok "harness exited $rc with $fail failure(s) above"
fi

# The harness's own output, as TAP diagnostics, when something went wrong.
[ "$fail" -gt 0 ] && sed 's/^/# /' "$out"

after=$(sha256sum "$docs" docs/bench/* 2>/dev/null)
if [ "$before" = "$after" ]; then
    ok "smoke run left docs/ untouched"
else
    not_ok "smoke run changed docs/benchmarks.md or docs/bench/"
fi

# crun's per-run cgroups (cgroupsPath /hearth-bench-crun-PID), the hearthds'
# cgroup roots (hearth-bench-NAME-PID) and sbxbench's (hearth-sbxbench-PID)
# must be gone: each is named after the harness's pid, so only this run's.
left=$(find /sys/fs/cgroup -maxdepth 2 \( -name 'hearth-bench-*' -o -name 'hearth-sbxbench-*' \) 2>/dev/null |
    grep -E -- "-$pid\$|crun-$pid\$")
if [ -n "$pid" ] && [ -z "$left" ]; then
    ok "no cgroup of the run left behind"
else
    not_ok "cgroups left behind (harness pid ${pid:-unknown}): $left"
fi

# Sandboxes run as host uids from the harness's ranges (sbxbench, cold,
# prewarm, warm, daemon-memory; see scripts/bench/run): none may still run.
procs=$(ps -e -o uid= -o pid= -o comm= | awk '($1 >= 6200000 && $1 < 6204096) || ($1 >= 6300000 && $1 < 6304096) ||
    ($1 >= 6310000 && $1 < 6311024) || ($1 >= 6400000 && $1 < 6401024) || ($1 >= 6500000 && $1 < 6500256)')
if [ -z "$procs" ]; then
    ok "no sandbox process of the run left behind"
else
    not_ok "sandbox processes left behind: $(echo "$procs" | head -n 5 | tr '\n' ';')"
fi

finish
