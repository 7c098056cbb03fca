#!/bin/bash
# Faulty and hostile functions (issue 8, "Faults") against a real hearthd:
# memory exhaustion, a fork bomb, a SIGTERM-ignoring hang with double-forked
# children past its timeout, 1 GiB written to stdout and to stderr (cut at
# the output cap, the daemon's memory bounded), /tmp filled, files opened
# until EMFILE, a segfault, an abort, SIGKILL from inside, 1,000 invocations
# each leaving zombies and orphans, a client that disconnects mid-call, a
# Lambda runtime opening thousands of connections to its Runtime API, and
# the daemon killed with SIGKILL 20 times in a row under synchronous and
# asynchronous load (attempts charged only for runs that started). Each
# fault's answer must carry its cause (status code, error type, message),
# the daemon must stay healthy (/healthz and a plain
# echo function after each), and in the end nothing is left behind: no
# cgroup, mount, process or namespace, and every accepted async invocation
# is accounted for.
# Needs root, curl, python3. Binaries from $HEARTH_BIN (default <repo>/bin):
# hearthd, probe, attack. TAP output; the last line is
# "N passed, N failed[, N skipped]". FAULTS_KILLS sets the number of SIGKILLs (20);
# FAULTS_RESULTS=FILE copies the table of faults (fault, answer, detail, verdict) there.
# shellcheck disable=SC2016  # check's conditions are single-quoted on purpose: evaluated later
# shellcheck source-path=SCRIPTDIR source=lib.sh
set -u
. "$(dirname "$0")/lib.sh"
ATTACK=$HB/attack
PROBE=$HB/probe
KILLS=${FAULTS_KILLS:-20}

if [ ! -x "$HEARTHD" ] || [ ! -x "$ATTACK" ] || [ ! -x "$PROBE" ]; then
    skip "faults" "hearthd, probe or attack not built (run make, or set HEARTH_BIN)"
    finish
fi
if [ "$(id -u)" != 0 ]; then
    skip "faults" "needs root (hearthd runs sandboxes)"
    finish
fi
for t in curl python3; do
    command -v $t >/dev/null || { not_ok "$t present" "the test needs $t (scripts/install-deps)"; finish; }
done
case $ATTACK in
/tmp/*) not_ok "binaries outside /tmp" "$ATTACK: a sandbox's /tmp is its own tmpfs; set HEARTH_BIN elsewhere"; finish ;;
esac

make_workdir hearth-faults-test
T0=$(now_ms)
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
SOCK=$WORK/run/hearth.sock
CGROOT=hearth-faults-$$
UID_BASE=$((8500000 + ($$ % 1000) * 64))
UID_COUNT=64
CAP=1048576 # max_body_bytes: the output cap
TOK=$(new_token)
mkdir -p "$WORK/state"
NSFS0=$(grep -c ' nsfs ' /proc/self/mountinfo)

cat >"$WORK/hearthd.json" <<EOF
{
  "listen_unix": "$SOCK",
  "listen_http": "127.0.0.1:$PORT",
  "state_dir": "$WORK/state",
  "cgroup_root": "$CGROOT",
  "uid_base": $UID_BASE,
  "uid_count": $UID_COUNT,
  "prewarm_pool": 1,
  "max_sandboxes": 12,
  "max_body_bytes": $CAP,
  "max_connections": 4096,
  "drain_timeout_ms": 3000,
  "mount_sources": ["$WORK/shared"],
  "tenants": [
    {"name": "t1", "tokens_sha256": ["$(sha256_hex "$TOK")"]}
  ]
}
EOF
LOG=$WORK/hearthd.log

# --- requests --------------------------------------------------------------------------------------
# call METHOD PATH [CURL ARGS...]: CODE and MS; the body in $WORK/body.
call() {
    local m=$1 p=$2 out
    shift 2
    out=$(curl -s -o "$WORK/body" -D "$WORK/hdr" -w '%{http_code} %{time_total}' --max-time 60 -X "$m" \
        -H "Authorization: Bearer $TOK" "$@" "$URL$p")
    CODE=${out%% *}
    MS=$(awk -v t="${out#* }" 'BEGIN { printf "%d", t * 1000 }')
}
show() { echo "HTTP $CODE in $MS ms: $(head -c 800 "$WORK/body")"; }
hdr() { grep -i "^$1:" "$WORK/hdr" | head -n 1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//'; }
# cpu_us: the call's CPU (X-Hearth-Cpu-Ms, from the sandbox's cgroup) in µs.
cpu_us() { hdr X-Hearth-Cpu-Ms | awk '{ printf "%d", $1 * 1000 }'; }
jbody() { json_get "$WORK/body" "$1"; }
deploy() { call PUT "/v1/functions/$1" --data-binary "$2"; }
invoke() { call POST "/v1/functions/$1/invocations" --data-binary "${2:-}"; }
json_array() { python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@"; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$DAEMON_PID/status" 2>/dev/null; }
healthz() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$URL/healthz"; }
sandbox_procs() { uid_range_procs "$UID_BASE" "$UID_COUNT" | grep -E "$1"; }

ECHO_N=0
still_healthy() {
    local h save_code=$CODE save_ms=$MS
    cp "$WORK/body" "$WORK/body.fault"
    h=$(healthz)
    ECHO_N=$((ECHO_N + 1))
    invoke echo "ping-$ECHO_N"
    if [ "$h" = 200 ] && [ "$CODE" = 200 ] && [ "$(cat "$WORK/body")" = "ping-$ECHO_N" ]; then
        ok "after $1: /healthz 200, echo answers"
    else
        not_ok "after $1: /healthz 200, echo answers" "/healthz: $h; echo: $(show)" "$(tail -n 5 "$LOG")"
    fi
    cp "$WORK/body.fault" "$WORK/body"
    CODE=$save_code MS=$save_ms
    if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
        # A finding: recorded, and the daemon started again (same state) so that
        # the rest of the suite still runs.
        not_ok "hearthd still running after $1" "$(tail -n 5 "$LOG")"
        wait "$DAEMON_PID" 2>/dev/null
        start_daemon "$WORK/hearthd.json" "$LOG" "$SOCK" "$URL" >"$WORK/start.out" ||
            { not_ok "hearthd restarts after dying" "$(cat "$WORK/start.out")"; finish; }
    fi
}
# fault NAME COMMAND_JSON [EXTRA_SPEC_KEYS]: deploy NAME and invoke it once (CODE, MS, body).
fault() {
    begin_fault
    local extra=${3:-}
    case $extra in *timeout_ms*) ;; *) extra="\"timeout_ms\": 20000${extra:+, $extra}" ;; esac
    deploy "$1" "{\"command\": $2, $extra}"
    if [ "$CODE" != 201 ]; then
        not_ok "deploy $1" "$(show)"
        return 1
    fi
    invoke "$1"
}
# The results table (FAULTS_RESULTS): fault, answer, detail, verdict. A fault's
# verdict counts every check from its begin_fault to the next one (after-checks
# of the daemon's health included).
RESULTS=$WORK/results.tsv
PENDING='' FAIL_MARK=0
flush_fault() {
    [ -n "$PENDING" ] || return 0
    local v="as expected"
    [ "$TAP_FAILED" -gt "$FAIL_MARK" ] && v="FINDING ($((TAP_FAILED - FAIL_MARK)) checks failed)"
    printf '%s\t%s\n' "$PENDING" "$v" >>"$RESULTS"
    PENDING=
}
begin_fault() { flush_fault; FAIL_MARK=$TAP_FAILED; }
record() { PENDING=$(printf '%s\t%s\t%s' "$1" "$2" "$3" | tr '\n' ' '); } # fault, answer, detail

# --- start -------------------------------------------------------------------------------------------
if start_daemon "$WORK/hearthd.json" "$LOG" "$SOCK" "$URL" >"$WORK/start.out"; then
    ok "hearthd starts"
else
    not_ok "hearthd starts" "$(cat "$WORK/start.out")"
    finish
fi
deploy echo '{"command": ["/bin/cat"], "min_warm": 1, "max_sandboxes": 2}'
check "deploy echo" '[ "$CODE" = 201 ]' "$(show)"
invoke echo warm
RSS0=$(rss_kb)

# --- the client disconnecting mid-call (first: on a fresh daemon) ---------------------------------------------
begin_fault
deploy sleeper "{\"command\": $(json_array "$ATTACK" sleep 5000), \"timeout_ms\": 20000}"
check "deploy sleeper" '[ "$CODE" = 201 ]' "$(show)"
# Three times: cold, then warm.
DC_KILLED=0
for try in 1 2 3; do
    curl -s -o /dev/null --max-time 0.5 -X POST -H "Authorization: Bearer $TOK" "$URL/v1/functions/sleeper/invocations"
    seen=$(sandbox_procs "attack sleep")
    for _ in $(seq 1 30); do [ -z "$(sandbox_procs "attack sleep")" ] && break; sleep 0.1; done
    left=$(sandbox_procs "attack sleep")
    check "client gone after 0.5 s (try $try): the function's process is killed (within 3 s, not at its 5 s end)" \
        '[ -z "$left" ]' "$left" "(while the client waited: ${seen:-no process seen})"
    [ -z "$left" ] && DC_KILLED=$((DC_KILLED + 1))
    for _ in $(seq 1 30); do [ -z "$(sandbox_procs "attack sleep")" ] && break; sleep 0.1; done
    still_healthy "the client's disconnect (try $try)"
done
record "client disconnecting mid-call" "killed in $DC_KILLED of 3 tries" "the function's process after the client left"
deploy sleeper "{\"command\": $(json_array "$ATTACK" sleep 100), \"timeout_ms\": 20000}"
invoke sleeper
check "the function answers later calls (200 alive)" '[ "$CODE" = 200 ] && grep -qx alive "$WORK/body"' "$(show)"
still_healthy "client disconnect"

# --- memory exhaustion ----------------------------------------------------------------------------------
fault memhog "$(json_array "$PROBE" memhog 512)" '"memory_mb": 32'
check "memory exhaustion (512 MiB in a 32 MiB sandbox): 502 out_of_memory, the limit named" \
    '[ "$CODE" = 502 ] && [ "$(jbody "d[\"error\"]")" = out_of_memory ] && jbody "d[\"message\"]" | grep -q "32 MiB"' \
    "$(show)"
record "memory exhaustion" "$CODE $(jbody 'd["error"]')" "$(jbody 'd["message"]')"
still_healthy memhog

# --- fork bomb ----------------------------------------------------------------------------------------------
fault forkbomb "$(json_array "$PROBE" forkbomb)" '"pids": 24'
check "fork bomb (pids 24): 502 function_failed, the pids limit named" \
    '[ "$CODE" = 502 ] && [ "$(jbody "d[\"error\"]")" = function_failed ] && jbody "d[\"message\"]" | grep -q "pids limit"' \
    "$(show)"
record "fork bomb" "$CODE $(jbody 'd["error"]')" "$(jbody 'd["message"]')"
left=$(sandbox_procs "probe forkbomb")
check "fork bomb: no child left" '[ -z "$left" ]' "$left"
still_healthy forkbomb

# --- hang: ignores SIGTERM, double-forked children, past its timeout ----------------------------------------------
fault hang "$(json_array "$PROBE" hang)" '"timeout_ms": 1000'
check "SIGTERM-ignoring hang with a double-forked child (timeout 1 s): 504 timeout, in time" \
    '[ "$CODE" = 504 ] && [ "$(jbody "d[\"error\"]")" = timeout ] && [ "$MS" -lt 10000 ]' "$(show)"
record "infinite loop ignoring SIGTERM, double-forked children" "$CODE $(jbody 'd["error"]')" "$(jbody 'd["message"]')"
for _ in $(seq 1 30); do [ -z "$(sandbox_procs "probe hang")" ] && break; sleep 0.1; done
left=$(sandbox_procs "probe hang")
check "hang: the process and its orphaned grandchild are gone" '[ -z "$left" ]' "$left"
invoke hang
check "hang: the next call gets a fresh sandbox and the same cause" '[ "$CODE" = 504 ]' "$(show)"
still_healthy hang

# --- 1 GiB on stdout, on stderr, on both ----------------------------------------------------------------------------
# The reference: 1 MiB on stdout, just under the cap (measured now, same machine, same load).
fault small "$(json_array "$ATTACK" flood stdout 1)" '"timeout_ms": 10000'
SMALL_MS=$MS SMALL_CPU=$(cpu_us)
for where in stdout stderr both; do
    before=$(rss_kb)
    fault "flood-$where" "$(json_array "$ATTACK" flood "$where" 1024)" '"timeout_ms": 10000'
    after=$(rss_kb)
    cpu=$(cpu_us)
    note "flood $where: HTTP $CODE in $MS ms, function CPU $cpu µs (1 MiB reference: $SMALL_MS ms, $SMALL_CPU µs)," \
        "hearthd VmRSS $before -> $after kB"
    check "1 GiB on $where: 502 output_too_large" \
        '[ "$CODE" = 502 ] && [ "$(jbody "d[\"error\"]")" = output_too_large ]' "$(show)"
    record "1 GiB on $where" "$CODE $(jbody 'd["error"]')" "$(jbody 'd["message"]') (${MS} ms)"
    check "1 GiB on $where: hearthd's memory stays bounded (VmRSS grew by less than 32 MiB: $before -> $after kB)" \
        '[ -n "$after" ] && [ $((after - before)) -lt 32768 ]'
    # Cut at the cap, not read to the end: the writer is stopped near the cap, so
    # its CPU is of the order of the 1 MiB reference's (1 GiB costs ~1,000 times
    # that), and the answer comes at once, not at the timeout.
    check "1 GiB on $where: cut near the cap (function CPU $cpu µs, 1 MiB: $SMALL_CPU µs; answered in $MS ms)" \
        '[ -n "$cpu" ] && [ "$cpu" -lt $((SMALL_CPU * 20 + 20000)) ] && [ "$MS" -lt 5000 ]'
    tail_len=$(jbody 'len(d.get("stderr", ""))')
    if [ "$where" != stdout ] && [ -n "$tail_len" ]; then
        check "1 GiB on $where: the answer's stderr tail is at most 4 KiB ($tail_len bytes)" '[ "$tail_len" -le 4096 ]'
    fi
    still_healthy "flood-$where"
done

# --- /tmp filled -----------------------------------------------------------------------------------------------------
fault tmpfill "$(json_array "$PROBE" tmpfill)" '"tmp_mb": 16'
written=$(sed -n 's/^written=//p' "$WORK/body")
check "/tmp filled (tmp_mb 16): the function sees ENOSPC at 16 MiB and ends normally" \
    '[ "$CODE" = 200 ] && grep -qx "errno=ENOSPC" "$WORK/body" && [ "$written" -le $((16 << 20)) ] &&
     [ "$written" -ge $((15 << 20)) ]' "$(show)"
record "/tmp filled (tmp_mb 16)" "$CODE" "written=$written errno=ENOSPC"
still_healthy tmpfill
# A /tmp larger than the memory limit: its pages are the sandbox's memory.
fault tmpfill-big "$(json_array "$PROBE" tmpfill)" '"tmp_mb": 256, "memory_mb": 32'
check "/tmp of 256 MiB filled in a 32 MiB sandbox: stopped by the memory limit, reported (502 out_of_memory, or ENOMEM/ENOSPC seen by the function)" \
    '{ [ "$CODE" = 502 ] && [ "$(jbody "d[\"error\"]")" = out_of_memory ]; } ||
     { [ "$CODE" = 200 ] && grep -qE "^errno=(ENOMEM|ENOSPC)" "$WORK/body" &&
       [ "$(sed -n "s/^written=//p" "$WORK/body")" -le $((40 << 20)) ]; }' "$(show)"
record "/tmp (256 MiB) filled beyond memory_mb 32" "$CODE $(jbody 'd["error"]' 2>/dev/null)" \
    "$(head -c 200 "$WORK/body" | tr '\n' ' ')"
invoke tmpfill-big
check "... and the function can be called again (same cause, the daemon unharmed)" \
    '[ "$CODE" = 502 ] || [ "$CODE" = 200 ]' "$(show)"
still_healthy tmpfill-big

# --- files until EMFILE ------------------------------------------------------------------------------------------------
fault emfile "$(json_array "$ATTACK" emfile)"
opened=$(sed -n 's/^opened=//p' "$WORK/body")
check "open files until EMFILE: stopped by RLIMIT_NOFILE (EMFILE after about 1,000), 200" \
    '[ "$CODE" = 200 ] && grep -qx "errno=EMFILE" "$WORK/body" && [ "$opened" -ge 100 ] && [ "$opened" -le 65536 ]' \
    "$(show)"
record "open files until EMFILE" "$CODE" "opened=$opened errno=EMFILE"
still_healthy emfile

# --- crashes from inside ---------------------------------------------------------------------------------------------------
for c in segv:11 abort:6 selfkill:9; do
    name=${c%%:*} sig=${c#*:}
    fault "$name" "$(json_array "$ATTACK" "$name")"
    check "$name: 502 function_failed with signal $sig (not mistaken for another cause)" \
        '[ "$CODE" = 502 ] && [ "$(jbody "d[\"error\"]")" = function_failed ] && [ "$(jbody "d[\"signal\"]")" = "$sig" ]' \
        "$(show)"
    record "$name" "$CODE $(jbody 'd["error"]') signal $(jbody 'd["signal"]')" "$(jbody 'd["message"]')"
    invoke "$name"
    check "$name: again, the same answer (the sandbox is reusable or replaced)" \
        '[ "$CODE" = 502 ] && [ "$(jbody "d[\"signal\"]")" = "$sig" ]' "$(show)"
    still_healthy "$name"
done

# --- a Lambda runtime flooding the daemon's Runtime API with connections ----------------------------------------------------
# The runtime asks for its first invocation (so it is warm), then opens as many
# connections to its Runtime API as it can, from 8 processes: each is an fd in
# hearthd. A runtime needs a handful; hearthd's own fds must stay bounded.
begin_fault
fds_of_daemon() { find "/proc/$DAEMON_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
FD0=$(fds_of_daemon)
deploy connflood "{\"protocol\": \"lambda\", \"command\": [\"/bin/sh\", \"-c\",
    \"exec $ATTACK connflood \$AWS_LAMBDA_RUNTIME_API 6000 8 8000\"], \"min_warm\": 1, \"timeout_ms\": 5000}"
check "deploy connflood (lambda, min_warm 1)" '[ "$CODE" = 201 ]' "$(show)"
# A call, so that the runtime runs even when idle sandboxes of the functions
# above fill max_sandboxes (a call evicts them; min_warm does not): it never
# gets its answer (the runtime only floods) and ends at timeout_ms.
curl -s -o "$WORK/connflood.out" -w '%{http_code}' --max-time 30 -X POST -H "Authorization: Bearer $TOK" \
    "$URL/v1/functions/connflood/invocations" >"$WORK/connflood.code" &
CF=$!
bg_track $CF
FDMAX=$FD0
for _ in $(seq 1 40); do
    n=$(fds_of_daemon)
    [ "$n" -gt "$FDMAX" ] && FDMAX=$n
    sleep 0.1
done
wait $CF
note "hearthd fds: $FD0 before, at most $FDMAX while a runtime floods its Runtime API for 4 s;" \
    "the call: HTTP $(cat "$WORK/connflood.code") $(head -c 200 "$WORK/connflood.out")"
for _ in $(seq 1 30); do [ -z "$(sandbox_procs "attack connflood")" ] && break; sleep 0.1; done
left=$(sandbox_procs "attack connflood")
check "the flooding runtime's call ends at its timeout (504) and its processes are gone" \
    '[ "$(cat "$WORK/connflood.code")" = 504 ] && [ -z "$left" ]' \
    "HTTP $(cat "$WORK/connflood.code"); $(echo "$left" | wc -l) processes left"
check "a runtime's connection flood: hearthd holds fewer than 256 more fds ($FD0 -> at most $FDMAX)" \
    '[ $((FDMAX - FD0)) -lt 256 ]'
record "Lambda runtime opening thousands of Runtime API connections" "daemon fds $FD0 -> $FDMAX" \
    "8 processes, up to 6,000 connections, 4 s"
still_healthy connflood
call DELETE /v1/functions/connflood

# --- 1,000 invocations leaving zombies and orphans ----------------------------------------------------------------------------
begin_fault
deploy orphans "{\"command\": $(json_array "$ATTACK" orphans 3), \"max_sandboxes\": 4, \"pids\": 32,
                 \"timeout_ms\": 10000}"
check "deploy orphans" '[ "$CODE" = 201 ]' "$(show)"
T_ORPH=$(now_ms)
timeout 300 curl -s -Z --parallel-max 8 --max-time 60 -X POST -H "Authorization: Bearer $TOK" -o "$WORK/orph_#1" \
    -w '%{http_code}\n' "$URL/v1/functions/orphans/invocations?i=[1-1000]" >"$WORK/orph.codes" 2>/dev/null
n200=$(grep -c '^200$' "$WORK/orph.codes")
nleft=$(cat "$WORK"/orph_* 2>/dev/null | grep -c '^left=3$')
rm -f "$WORK"/orph_*
note "1,000 invocations leaving 3 zombies + 3 orphans each: $(($(now_ms) - T_ORPH)) ms"
check "1,000 invocations leaving zombies and orphans: all 200 (the pids limit never fills up)" \
    '[ "$n200" = 1000 ] && [ "$nleft" = 1000 ]' "200s: $n200, outputs: $nleft; $(sort "$WORK/orph.codes" | uniq -c | tr '\n' ' ')"
record "1,000 invocations leaving unreaped children" "$n200 × 200" "zombies and orphans reaped, none left"
sleep 0.3
left=$(sandbox_procs "attack")
check "after them: no process of theirs left in the sandboxes" '[ -z "$left" ]' "$(echo "$left" | head -n 5)"
nz=$(uid_range_procs "$UID_BASE" "$UID_COUNT" | awk '{ print $1 }' | while read -r p; do
    awk '{ print $3 }' "/proc/$p/stat" 2>/dev/null
done | grep -c Z)
check "after them: no zombie in the uid range" '[ "$nz" = 0 ]' "$nz zombies"
still_healthy orphans

begin_fault
RSS1=$(rss_kb)
note "hearthd VmRSS: $RSS0 kB after warm-up, $RSS1 kB after the faults"
# ASan's quarantine and shadow memory hold freed memory on purpose: a wider bound there.
RSS_SLACK=32768
[ -n "${HEARTH_SANITIZED:-}" ] && RSS_SLACK=$((RSS_SLACK * 8))
check "hearthd's memory after every fault: within $((RSS_SLACK / 1024)) MiB of where it started ($RSS0 -> $RSS1 kB)" \
    '[ -n "$RSS1" ] && [ $((RSS1 - RSS0)) -lt $RSS_SLACK ]'

# --- SIGKILL mid-load, 20 times, on the same state dir ----------------------------------------------------------------------------
begin_fault
# Each run of `work` first appends its invocation id to a bind-mounted file: the
# record of which invocations really started.
SHARED=$WORK/shared
mkdir -p "$SHARED"
: >"$SHARED/ids"
chmod 0777 "$SHARED"
chmod 0666 "$SHARED/ids"
# max_sandboxes 2 below the host's 12: hearthd claims up to 12 stored invocations
# at a time, so most of those claimed at a kill were queued, not running.
deploy work "{\"command\": [\"/bin/sh\", \"-c\", \"echo \$HEARTH_INVOCATION_ID >> /mnt/ids; exec $PROBE sleep 100\"],
              \"mounts\": [{\"source\": \"$SHARED\", \"target\": \"/mnt\", \"readonly\": false}],
              \"max_sandboxes\": 2, \"timeout_ms\": 10000, \"max_attempts\": 3}"
check "deploy work (async target)" '[ "$CODE" = 201 ]' "$(show)"
: >"$WORK/accepted"
: >"$WORK/accepted.202"
crash_ok=0
T_KILL0=$(now_ms)
for round in $(seq 1 "$KILLS"); do
    # Async accepts and synchronous calls in flight together.
    # timeout: curl 7.88's parallel mode can hang past --max-time when its server dies.
    timeout 20 curl -s -Z --parallel-max 16 --max-time 10 -X POST -H "Authorization: Bearer $TOK" -H 'Prefer: respond-async' \
        -o "$WORK/acc_${round}_#1" -w '%{http_code}\n' "$URL/v1/functions/work/invocations?r=$round&i=[1-24]" \
        >"$WORK/acc_$round.codes" 2>/dev/null &
    A=$!
    timeout 20 curl -s -Z --parallel-max 8 --max-time 10 -X POST -H "Authorization: Bearer $TOK" -o /dev/null \
        "$URL/v1/functions/work/invocations?sync=$round&i=[1-16]" 2>/dev/null &
    S=$!
    sleep "0.$((1 + RANDOM % 3))"
    kill -KILL "$DAEMON_PID"
    wait "$DAEMON_PID" 2>/dev/null
    wait "$A" "$S" 2>/dev/null
    # Every 202 has a body with its id; the others (connection cut) have none.
    cat "$WORK/acc_${round}_"* 2>/dev/null | grep -o '"id": *"[0-9a-f]*"' | grep -o '[0-9a-f]\{32\}' >>"$WORK/accepted"
    grep -c '^202$' "$WORK/acc_$round.codes" >>"$WORK/accepted.202"
    rm -f "$WORK/acc_${round}_"*
    DAEMON_PID=
    if start_daemon "$WORK/hearthd.json" "$LOG" "$SOCK" "$URL" >"$WORK/start.out"; then
        crash_ok=$((crash_ok + 1))
    else
        not_ok "hearthd restarts after SIGKILL #$round" "$(cat "$WORK/start.out")"
        break
    fi
done
NACC=$(grep -c . "$WORK/accepted")
N202=$(awk '{ s += $1 } END { print s + 0 }' "$WORK/accepted.202")
T_KILLS=$(now_ms)
note "$KILLS SIGKILL rounds: $((T_KILLS - T_KILL0)) ms"
check "hearthd restarted after each of $KILLS SIGKILLs under load ($N202 answers 202, $NACC ids read)" \
    '[ "$crash_ok" = "$KILLS" ] && [ "$NACC" -gt 0 ] && [ "$NACC" = "$N202" ]'
# Every accepted invocation ends succeeded or dead: none lost, none stuck.
python3 - "$URL" "$TOK" "$WORK/accepted" "$SHARED/ids" >"$WORK/accounted" 2>"$WORK/never_started" <<'PY'
import http.client, json, sys, time, urllib.parse
url, tok, path, ran_path = sys.argv[1:]
u = urllib.parse.urlparse(url)
ids = [l.strip() for l in open(path) if l.strip()]
final, retried, why, attempts = {}, set(), {}, {}
end = time.time() + 90
while time.time() < end and len(final) < len(ids):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    for i in ids:
        if i in final:
            continue
        c.request("GET", "/v1/invocations/" + i, headers={"Authorization": "Bearer " + tok})
        r = c.getresponse()
        body = r.read()
        if r.status == 404:
            final[i] = "lost"
            continue
        d = json.loads(body)
        if d.get("status") in ("succeeded", "dead"):
            final[i] = d["status"]
            if d.get("attempts", 1) > 1:
                retried.add(i)
            attempts[i] = d.get("attempts", 1)
            if d["status"] == "dead":
                why[i] = "attempts %s: %s" % (d.get("attempts"), d.get("error"))
    c.close()
    if len(final) < len(ids):
        time.sleep(0.5)
counts = {}
for i in ids:
    counts[final.get(i, "unfinished")] = counts.get(final.get(i, "unfinished"), 0) + 1
counts["ran_again_after_a_kill"] = len(retried)
print(" ".join("%s=%d" % kv for kv in sorted(counts.items())))
for i in ids:
    if final.get(i) not in ("succeeded", "dead"):
        print("%s %s" % (i, final.get(i, "unfinished")))
# On stderr: those charged attempts they never had. A start is recorded by the
# function's first command, so a kill between the process's start and that
# write can hide one start of an invocation (rarely); two hidden starts of the
# same invocation do not happen by chance: charged attempts - recorded starts >= 2
# means attempts counted without a process. Never started at all: the same.
starts = {}
for l in open(ran_path):
    starts[l.strip()] = starts.get(l.strip(), 0) + 1
for i in ids:
    if final.get(i) not in ("succeeded", "dead"):
        continue
    n = starts.get(i, 0)
    if n == 0 or attempts[i] - n >= 2:
        sys.stderr.write("%s %s: %d attempts charged, %d started %s\n" % (i, final[i], attempts[i], n, why.get(i, "")))
PY
note "accounting for them: $(($(now_ms) - T_KILLS)) ms"
summary=$(head -n 1 "$WORK/accounted")
bad=$(tail -n +2 "$WORK/accounted" | head -n 10)
check "every accepted async invocation is accounted for: succeeded or dead-lettered ($summary)" \
    '[ -z "$bad" ] && [ -n "$summary" ]' "$bad"
never=$(grep -c . "$WORK/never_started")
# README: a killed hearthd requeues what was *running*, and that attempt counts.
# An invocation only claimed (queued in memory, no process started) is not
# running: it must not use up its attempts (and be dead-lettered unrun).
check "attempts are charged only for runs that started ($never invocations charged for runs that never were)" \
    '[ "$never" = 0 ]' "$(head -n 5 "$WORK/never_started")"
record "SIGKILL of hearthd mid-load, $KILLS times" "$crash_ok restarts" "$NACC accepted: $summary"
still_healthy "$KILLS SIGKILLs"

begin_fault
# --- the end ----------------------------------------------------------------------------------------------------------------------
stop_daemon 20
check "hearthd stops cleanly (exit 0)" '[ "$DAEMON_RC" = 0 ]' "exit: $DAEMON_RC" "$(tail -n 10 "$LOG")"
left=$(cgroup_leftovers "$CGROOT")
check "no cgroup left under $CGROOT" '[ -z "$left" ]' "$left"
left=$(uid_range_procs "$UID_BASE" "$UID_COUNT")
check "no sandbox process left (uid range $UID_BASE+$UID_COUNT)" '[ -z "$left" ]' "$left"
left=$(grep -E " ($WORK|/sys/fs/cgroup/[^ ]*/$CGROOT)" /proc/self/mountinfo)
check "no mount of the test's directories or cgroups left on the host" '[ -z "$left" ]' "$left"
NSFS1=$(grep -c ' nsfs ' /proc/self/mountinfo)
check "no namespace pinned by a mount left on the host (nsfs mounts: $NSFS0 before, $NSFS1 after)" \
    '[ "$NSFS1" -le "$NSFS0" ]' "$(grep ' nsfs ' /proc/self/mountinfo)"
# A sandbox's namespaces live while a process in it (its uid is in the range:
# none, above), a mount (nsfs: none new, above) or an fd holds them; fds are
# held only by hearthd and its spawner, which carry the config's path.
left=$(pgrep -af -- "$WORK/hearthd.json")
check "no hearthd or spawner process of this test left (none holds a namespace fd)" '[ -z "$left" ]' "$left"
if [ -n "${FAULTS_RESULTS:-}" ]; then
    cp "$RESULTS" "$FAULTS_RESULTS"
fi
note "faults test took $(($(now_ms) - T0)) ms"
finish
