# Shared helpers for the bash integration tests (sourced, not run):
#   TAP output:   ok NAME; not_ok NAME [DETAIL...]; skip NAME WHY; check NAME COND; finish
#   the daemon:   write a config, start_daemon CONFIG LOG [SOCKET] [URL]; stop_daemon [SECONDS]
#   small tools:  free_port, new_token, sha256_hex, json_get, cgroup_leftovers, uid_range_procs
# Everything the tests start is tracked here and ended (by PID) on exit; the
# work directory ($WORK, from make_workdir) is removed.
#
# Variables: REPO (the repository), HB (binaries: $HEARTH_BIN or <repo>/bin),
# HEARTHD, HEARTH, DAEMON_PID, DAEMON_RC (exit status after stop_daemon), WORK.

export LC_ALL=C
REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
HB=${HEARTH_BIN:-$REPO/bin}
HB=$(cd "$HB" 2>/dev/null && pwd || echo "$HB")
HEARTHD=$HB/hearthd
HEARTH=$HB/hearth
unset HEARTH_URL HEARTH_TOKEN HEARTH_SOCKET

# --- TAP ------------------------------------------------------------------------------------
TAP_N=0 TAP_PASSED=0 TAP_FAILED=0 TAP_SKIPPED=0
ok() { TAP_N=$((TAP_N + 1)); TAP_PASSED=$((TAP_PASSED + 1)); echo "ok $TAP_N - $1"; }
not_ok() { # NAME [DETAIL...]: each detail line as a TAP comment
    TAP_N=$((TAP_N + 1)); TAP_FAILED=$((TAP_FAILED + 1)); echo "not ok $TAP_N - $1"
    shift
    local l
    for l in "$@"; do printf '%s\n' "$l" | sed 's/^/#   /'; done
}
skip() { TAP_N=$((TAP_N + 1)); TAP_SKIPPED=$((TAP_SKIPPED + 1)); echo "ok $TAP_N - $1 # SKIP $2"; }
note() { printf '%s\n' "$@" | sed 's/^/# /'; }
# check NAME COND [DETAIL...]: COND is evaluated by the shell.
check() {
    local name=$1 cond=$2
    shift 2
    if eval "$cond"; then ok "$name"; else not_ok "$name" "$@"; fi
}
finish() {
    echo "1..$TAP_N"
    if [ "$TAP_SKIPPED" -gt 0 ]; then
        echo "$TAP_PASSED passed, $TAP_FAILED failed, $TAP_SKIPPED skipped"
    else
        echo "$TAP_PASSED passed, $TAP_FAILED failed"
    fi
    [ "$TAP_FAILED" -eq 0 ]
    exit
}

# --- small tools ----------------------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null &&
        return
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 30000))
        ({ exec 3<>"/dev/tcp/127.0.0.1/$p"; } 2>/dev/null) || { echo "$p"; return; }
    done
    echo 28080
}
new_token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
sha256_hex() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
now_ms() { date +%s%3N; }

# json_get FILE EXPR: print a Python expression over the JSON document `d`
# (strings bare, everything else as JSON); empty output and status 1 on error.
json_get() {
    python3 - "$1" "$2" <<'PY' 2>/dev/null
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    v = eval(sys.argv[2], {"d": d, "sum": sum, "len": len, "any": any, "all": all})
except Exception:
    sys.exit(1)
print(v if isinstance(v, str) else json.dumps(v))
PY
}

# cgroup_leftovers ROOT: directories named ROOT under each v1 hierarchy and on v2
# (nothing printed: none left).
cgroup_leftovers() {
    local d
    for d in /sys/fs/cgroup/*/"$1" /sys/fs/cgroup/"$1"; do
        [ -d "$d" ] && echo "$d"
    done
    return 0
}

# uid_range_procs BASE COUNT: "pid uid args" of processes whose uid is in [BASE, BASE+COUNT).
uid_range_procs() {
    ps -eo pid=,uid=,args= 2>/dev/null | awk -v lo="$1" -v hi="$(($1 + $2))" '$2 >= lo && $2 < hi'
}

# cgroup_cpu_ns ROOT: CPU used under the cgroup ROOT so far, in ns (v1 cpuacct
# charges every ancestor, v2 folds removed children into the parent, so this
# includes sandboxes already removed). Empty if ROOT has no cgroup.
cgroup_cpu_ns() {
    local f
    for f in /sys/fs/cgroup/cpuacct/"$1"/cpuacct.usage /sys/fs/cgroup/cpu,cpuacct/"$1"/cpuacct.usage; do
        [ -r "$f" ] && { cat "$f"; return; }
    done
    f=/sys/fs/cgroup/$1/cpu.stat
    [ -r "$f" ] && awk '$1 == "usage_usec" { printf "%d\n", $2 * 1000 }' "$f"
}

# --- work directory and cleanup ---------------------------------------------------------------
WORK=
DAEMON_PID=
DAEMON_RC=
LIB_BG_PIDS=
# bg_track PID: end this background job at exit if it still runs.
bg_track() { LIB_BG_PIDS="$LIB_BG_PIDS $1"; }

lib_cleanup() {
    local p
    for p in $LIB_BG_PIDS; do
        kill -0 "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null
    done
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DAEMON_PID" 2>/dev/null
        wait "$DAEMON_PID" 2>/dev/null
    fi
    [ -n "$WORK" ] && rm -rf "$WORK"
}

# make_workdir PREFIX: a fresh $WORK, removed at exit (with the daemon stopped).
make_workdir() {
    WORK=$(mktemp -d "/tmp/$1.XXXXXX") || exit 1
    trap lib_cleanup EXIT
}

# --- the daemon -------------------------------------------------------------------------------
# daemon_answers SOCKET URL: /healthz answers 200 on the socket (if given) and on URL (if given).
daemon_answers() {
    if [ -n "$1" ]; then
        [ -S "$1" ] || return 1
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --unix-socket "$1" http://x/healthz)" = 200 ] ||
            return 1
    fi
    if [ -n "$2" ]; then
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$2/healthz")" = 200 ] || return 1
    fi
    return 0
}

# start_daemon CONFIG LOG [SOCKET] [URL]: start $HEARTHD (stderr to LOG, appended) and
# wait up to 10 s for /healthz. Sets DAEMON_PID (so call it directly, not in $(...)).
# Returns 1 (with the log's tail on stdout) if it does not come up.
start_daemon() {
    local cfg=$1 log=$2 sock=${3:-} url=${4:-}
    # Not on our stdout: a daemon left running must not hold the TAP pipe open.
    "$HEARTHD" --config "$cfg" </dev/null >>"$log" 2>&1 &
    DAEMON_PID=$!
    DAEMON_RC=
    for _ in $(seq 1 100); do
        kill -0 "$DAEMON_PID" 2>/dev/null || break
        daemon_answers "$sock" "$url" && return 0
        sleep 0.1
    done
    tail -n 20 "$log"
    return 1
}

# stop_daemon [SECONDS]: SIGTERM, wait up to SECONDS (default 15) for the exit.
# Sets DAEMON_RC (the exit status, or "timeout" and then SIGKILL).
stop_daemon() {
    [ -n "$DAEMON_PID" ] || { DAEMON_RC=none; return; }
    kill -TERM "$DAEMON_PID" 2>/dev/null
    wait_daemon_exit "${1:-15}"
}

# wait_daemon_exit [SECONDS]: wait for a daemon already told to stop. Sets DAEMON_RC.
wait_daemon_exit() {
    local limit=$(( ${1:-15} * 10 ))
    DAEMON_RC=timeout
    for _ in $(seq 1 "$limit"); do
        if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
            wait "$DAEMON_PID"
            DAEMON_RC=$?
            DAEMON_PID=
            return
        fi
        sleep 0.1
    done
    kill -KILL "$DAEMON_PID" 2>/dev/null
    wait "$DAEMON_PID" 2>/dev/null
    DAEMON_PID=
}
