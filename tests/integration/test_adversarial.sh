#!/bin/bash
# Hostile tenants (issue 8, "Escapes"): every escape attempt of tests/attack.c
# run as a function deployed through the API of a real hearthd, in a real
# sandbox, by one of two tenants. Each attempt must be blocked (one TAP line
# per attempt, from the attack's own JSON report), and after each invocation
# the daemon must be healthy: /healthz 200 and a plain echo function answers.
# Cross-sandbox attacks get a real target: a listener on another sandbox's
# loopback, a sleeping function of the other tenant (signalled, ptraced), a
# marker file in the other tenant's /tmp, an abstract socket on the host, the
# daemon's own socket and port; a setuid-root and a file-capability copy of
# the attack binary are bind-mounted in. A tenant naming host paths in a
# spec's mounts (the daemon's state files, /proc, a writable host directory)
# must not reach them. Positive controls show the probes can see what they
# look for. At the end: nothing left behind. ADVERSARY_RESULTS=FILE copies
# the table of attempts (attack, result, errno, detail) there.
# Needs root, curl, python3, setcap (libcap2-bin; the file-capability attack
# is skipped without it). Binaries from $HEARTH_BIN (default <repo>/bin):
# hearthd, attack. TAP output; the last line is "N passed, N failed[, N skipped]".
# shellcheck disable=SC2016  # check's conditions are single-quoted on purpose: evaluated later
# shellcheck source-path=SCRIPTDIR source=lib.sh
set -u
. "$(dirname "$0")/lib.sh"
ATTACK=$HB/attack

if [ ! -x "$HEARTHD" ] || [ ! -x "$ATTACK" ]; then
    skip "adversarial suite" "hearthd or attack not built (run make, or set HEARTH_BIN)"
    finish
fi
if [ "$(id -u)" != 0 ]; then
    skip "adversarial suite" "needs root (hearthd runs sandboxes)"
    finish
fi
for t in curl python3; do
    command -v $t >/dev/null || { not_ok "$t present" "the test needs $t (scripts/install-deps)"; finish; }
done
case $ATTACK in
/tmp/*) not_ok "attack binary outside /tmp" "$ATTACK: a sandbox's /tmp is its own tmpfs; set HEARTH_BIN elsewhere"; finish ;;
esac

make_workdir hearth-adversarial-test
T0=$(now_ms)
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
SOCK=$WORK/run/hearth.sock
CGROOT=hearth-adversary-$$
UID_BASE=$((8400000 + ($$ % 1000) * 64))
UID_COUNT=64
TOK1=$(new_token) TOK2=$(new_token)
ABSTRACT=hearth-adversary-$$
# The setuid and file-capability copies: the directory is bind-mounted on
# /mnt; its parent ($WORK, 0700) keeps host users away from the copies.
PRIV=$WORK/priv
mkdir -p "$PRIV" "$WORK/state"
chmod 0700 "$WORK"
chmod 0755 "$PRIV"
cp "$ATTACK" "$PRIV/attack-suid"
chown 0:0 "$PRIV/attack-suid"
chmod 4755 "$PRIV/attack-suid"
HAVE_CAPS=
if command -v setcap >/dev/null; then
    cp "$ATTACK" "$PRIV/attack-caps"
    setcap cap_sys_admin,cap_setuid,cap_dac_override+ep "$PRIV/attack-caps" 2>"$WORK/setcap.err" && HAVE_CAPS=1
fi

cat >"$WORK/hearthd.json" <<EOF
{
  "listen_unix": "$SOCK",
  "listen_http": "127.0.0.1:$PORT",
  "state_dir": "$WORK/state",
  "cgroup_root": "$CGROOT",
  "uid_base": $UID_BASE,
  "uid_count": $UID_COUNT,
  "prewarm_pool": 2,
  "max_sandboxes": 16,
  "max_body_bytes": 1048576,
  "drain_timeout_ms": 5000,
  "mount_sources": ["$PRIV"],
  "tenants": [
    {"name": "t1", "tokens_sha256": ["$(sha256_hex "$TOK1")"]},
    {"name": "t2", "tokens_sha256": ["$(sha256_hex "$TOK2")"]}
  ]
}
EOF
LOG=$WORK/hearthd.log

# --- requests --------------------------------------------------------------------------------------
# call TOKEN METHOD PATH [CURL ARGS...]: CODE; the body in $WORK/body.
call() {
    local tok=$1 m=$2 p=$3
    shift 3
    CODE=$(curl -s -o "$WORK/body" -w '%{http_code}' --max-time 60 -X "$m" -H "Authorization: Bearer $tok" "$@" \
        "$URL$p")
}
show() { echo "HTTP $CODE: $(head -c 1500 "$WORK/body")"; }
# deploy TOKEN NAME SPEC
deploy() { call "$1" PUT "/v1/functions/$2" --data-binary "$3"; }
invoke() { call "$1" POST "/v1/functions/$2/invocations" --data-binary "${3:-}"; }
healthz() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$URL/healthz"; }
# json_array: a JSON array of the arguments (strings).
json_array() { python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@"; }

# still_healthy AFTER: /healthz 200 and the echo function answers, after AFTER.
ECHO_N=0
still_healthy() {
    local h
    h=$(healthz)
    ECHO_N=$((ECHO_N + 1))
    invoke "$TOK1" echo "ping-$ECHO_N"
    if [ "$h" = 200 ] && [ "$CODE" = 200 ] && [ "$(cat "$WORK/body")" = "ping-$ECHO_N" ]; then
        ok "after $1: /healthz 200, echo answers"
    else
        not_ok "after $1: /healthz 200, echo answers" "/healthz: $h; echo: $(show)" "$(tail -n 5 "$LOG")"
    fi
    if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
        # A finding: recorded, and the daemon started again (same state) so that
        # the rest of the suite still runs.
        not_ok "hearthd still running after $1" "$(tail -n 5 "$LOG")"
        wait "$DAEMON_PID" 2>/dev/null
        start_daemon "$WORK/hearthd.json" "$LOG" "$SOCK" "$URL" >"$WORK/start.out" ||
            { not_ok "hearthd restarts after dying" "$(cat "$WORK/start.out")"; finish; }
    fi
}

# report_attempts FN CODE BODY_FILE: one TAP line per attempt in the attack's report.
# A 200 carries every line on stdout; a failed call (some attempt not blocked: exit 1)
# carries only its stderr tail, where the attack repeats the attempts it got through.
N_ATTEMPTS=0
RESULTS=$WORK/results.tsv # attack, blocked, errno, detail: for the summary
report_attempts() {
    local fn=$1 code=$2 file=$3
    python3 - "$fn" "$code" "$file" "$RESULTS" <<'PY'
import json, sys
fn, code, path, results = sys.argv[1:]
raw = open(path, "rb").read().decode("utf-8", "replace")
lines = []
if code == "200":
    for l in raw.splitlines():
        try:
            lines.append(json.loads(l))
        except ValueError:
            print("BAD\t%s: not a JSON report line: %r" % (fn, l[:200]))
else:
    try:
        d = json.loads(raw)
    except ValueError:
        d = {}
    print("BAD\t%s: HTTP %s, %s: %s" % (fn, code, d.get("error"), d.get("message", raw[:300])))
    for l in d.get("stderr", "").splitlines():
        if l.startswith("NOT BLOCKED: "):
            name, _, detail = l[len("NOT BLOCKED: "):].partition(": ")
            lines.append({"attack": name, "blocked": False, "errno": None, "detail": detail})
with open(results, "a") as r:
    for a in lines:
        e = a.get("errno") or "-"
        print("%s\t%s (%s): %s — %s" % ("OK" if a.get("blocked") is True else "BAD", a.get("attack"), fn, e,
                                          a.get("detail", "")))
        r.write("%s\t%s\t%s\t%s\n" % (a.get("attack"), "blocked" if a.get("blocked") is True else "NOT BLOCKED", e,
                                      a.get("detail", "").replace("\t", " ")))
if not lines:
    print("BAD\t%s: no attempt reported" % fn)
PY
}
tap_lines() { # reads "OK|BAD<TAB>text" lines
    local verdict text
    while IFS=$'\t' read -r verdict text; do
        N_ATTEMPTS=$((N_ATTEMPTS + 1))
        if [ "$verdict" = OK ]; then ok "escape blocked: $text"; else not_ok "escape blocked: $text"; fi
    done
}

# run_attack TENANT_TOKEN NAME [ENV_JSON] [MOUNTS_JSON]: deploy adv-NAME running `attack NAME`,
# invoke it, report each attempt, check the daemon, delete the function.
run_attack() {
    local tok=$1 name=$2 env=${3:-"{}"} mounts=${4:-"[]"} fn
    fn=adv-${name//_/-}
    deploy "$tok" "$fn" "{\"command\": $(json_array "$ATTACK" "$name"), \"env\": $env, \"mounts\": $mounts,
                          \"timeout_ms\": 20000, \"pids\": 32, \"memory_mb\": 64, \"keep_alive_ms\": 1000}"
    if [ "$CODE" != 201 ]; then
        not_ok "deploy $fn" "$(show)"
        return
    fi
    invoke "$tok" "$fn"
    report_attempts "$fn" "$CODE" "$WORK/body" >"$WORK/attempts"
    tap_lines <"$WORK/attempts"
    still_healthy "$fn"
    call "$tok" DELETE "/v1/functions/$fn"
}

# --- start -------------------------------------------------------------------------------------------
if start_daemon "$WORK/hearthd.json" "$LOG" "$SOCK" "$URL" >"$WORK/start.out"; then
    ok "hearthd starts"
else
    not_ok "hearthd starts" "$(cat "$WORK/start.out")"
    finish
fi
deploy "$TOK1" echo '{"command": ["/bin/cat"], "min_warm": 1, "max_sandboxes": 2}'
check "deploy echo (t1)" '[ "$CODE" = 201 ]' "$(show)"
RSS0=$(awk '/^VmRSS/ { print $2 }' "/proc/$DAEMON_PID/status")

# --- the self-contained attacks, alternating tenants -----------------------------------------------------
SPECIAL=" setuid filecaps rootfs_write daemon_unix daemon_tcp abstract peer_loopback ptrace_host kill_range tmp_peek "
i=0
for name in $("$ATTACK" list); do
    case $SPECIAL in *" $name "*) continue ;; esac
    if [ $((i % 2)) = 0 ]; then run_attack "$TOK1" "$name"; else run_attack "$TOK2" "$name"; fi
    i=$((i + 1))
done

# --- setuid and file capabilities ---------------------------------------------------------------------------
MNT="[{\"source\": \"$PRIV\", \"target\": \"/mnt\", \"readonly\": true}]"
run_attack "$TOK1" setuid '{"ATTACK_SUID": "/mnt/attack-suid"}' "$MNT"
run_attack "$TOK2" rootfs_write '{"ATTACK_RO_DIR": "/mnt"}' "$MNT"
if [ -n "$HAVE_CAPS" ]; then
    run_attack "$TOK2" filecaps '{"ATTACK_CAPS": "/mnt/attack-caps"}' "$MNT"
else
    skip "escape blocked: filecaps" "setcap missing or refused (apt-get install libcap2-bin): $(cat "$WORK/setcap.err" 2>/dev/null)"
fi

# --- the daemon's own socket and port; an abstract socket on the host -----------------------------------------
python3 - "$ABSTRACT" "$WORK/abstract.count" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("\0" + sys.argv[1])
s.listen(16)
s.settimeout(0.2)
n, end = 0, time.time() + 60
open(sys.argv[2], "w").write("listening\n")
while time.time() < end:
    try:
        c, _ = s.accept()
        n += 1
        c.close()
        open(sys.argv[2], "w").write("%d\n" % n)
    except socket.timeout:
        pass
PY
ABS_PID=$!
bg_track $ABS_PID
for _ in $(seq 1 50); do [ -s "$WORK/abstract.count" ] && break; sleep 0.1; done
# Positive control: from the host, the abstract socket answers (and is counted).
python3 -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect("\0" + sys.argv[1])' "$ABSTRACT" 2>/dev/null
sleep 0.3
check "control: the host's abstract socket @$ABSTRACT accepts from the host" '[ "$(cat "$WORK/abstract.count")" = 1 ]' \
    "count: $(cat "$WORK/abstract.count")"
run_attack "$TOK1" daemon_unix "{\"ATTACK_UNIX\": \"$SOCK\"}"
run_attack "$TOK2" daemon_tcp "{\"ATTACK_PORT\": \"$PORT\"}"
run_attack "$TOK1" abstract "{\"ATTACK_ABSTRACT\": \"$ABSTRACT\"}"
sleep 0.3
check "the host's abstract socket accepted nothing from the sandbox" '[ "$(cat "$WORK/abstract.count")" = 1 ]' \
    "count: $(cat "$WORK/abstract.count")"
kill "$ABS_PID" 2>/dev/null
wait "$ABS_PID" 2>/dev/null

# --- another sandbox's loopback ---------------------------------------------------------------------------------
PEER_PORT=$((20000 + $$ % 20000))
deploy "$TOK1" listener "{\"command\": $(json_array "$ATTACK" listen "$PEER_PORT" 3000), \"timeout_ms\": 20000}"
check "deploy listener (t1)" '[ "$CODE" = 201 ]' "$(show)"
curl -s -o "$WORK/listener.out" -w '%{http_code}' --max-time 30 -X POST -H "Authorization: Bearer $TOK1" \
    "$URL/v1/functions/listener/invocations" >"$WORK/listener.code" &
LISTENER=$!
bg_track $LISTENER
# The listener is up once its process runs as a sandbox uid.
for _ in $(seq 1 50); do
    uid_range_procs "$UID_BASE" "$UID_COUNT" | grep -q "attack listen" && break
    sleep 0.1
done
sleep 0.2
run_attack "$TOK2" peer_loopback "{\"ATTACK_PEER_PORT\": \"$PEER_PORT\"}"
wait $LISTENER
check "the listener in t1's sandbox answered and accepted no connection from t2's" \
    '[ "$(cat "$WORK/listener.code")" = 200 ] && grep -qx "listening=127.0.0.1:$PEER_PORT" "$WORK/listener.out" &&
     grep -qx "accepted=0" "$WORK/listener.out"' \
    "HTTP $(cat "$WORK/listener.code"): $(head -c 500 "$WORK/listener.out")"

# --- signalling and tracing the other tenant's processes, and the daemon ------------------------------------------
deploy "$TOK1" victim "{\"command\": $(json_array "$ATTACK" sleep 4000), \"timeout_ms\": 20000}"
check "deploy victim (t1)" '[ "$CODE" = 201 ]' "$(show)"
curl -s -o "$WORK/victim.out" -w '%{http_code}' --max-time 30 -X POST -H "Authorization: Bearer $TOK1" \
    "$URL/v1/functions/victim/invocations" >"$WORK/victim.code" &
VICTIM=$!
bg_track $VICTIM
VPIDS=
for _ in $(seq 1 50); do
    VPIDS=$(uid_range_procs "$UID_BASE" "$UID_COUNT" | awk '/attack sleep/ { print $1 }' | paste -sd, -)
    [ -n "$VPIDS" ] && break
    sleep 0.1
done
check "the victim runs (host pids: $VPIDS)" '[ -n "$VPIDS" ]'
# The victim's init too: every process of its sandbox, by the host's pid.
VINIT=$(uid_range_procs "$UID_BASE" "$UID_COUNT" | awk '{ print $1 }' | paste -sd, -)
HOSTPIDS="$DAEMON_PID,$VINIT,$$,1"
run_attack "$TOK2" ptrace_host "{\"ATTACK_HOST_PIDS\": \"$HOSTPIDS\"}"
run_attack "$TOK2" kill_range "{\"ATTACK_HOST_PIDS\": \"$HOSTPIDS\"}"
wait $VICTIM
check "t1's victim survived t2's kill -9 of every pid (answered alive)" \
    '[ "$(cat "$WORK/victim.code")" = 200 ] && grep -qx alive "$WORK/victim.out"' \
    "HTTP $(cat "$WORK/victim.code"): $(head -c 500 "$WORK/victim.out")"

# --- another tenant's /tmp ------------------------------------------------------------------------------------------
# The marker function marks on its first call and peeks on the next (same warm
# sandbox): the positive control that tmp_peek finds a marker where one is.
deploy "$TOK1" marker "{\"command\": [\"/bin/sh\", \"-c\",
    \"if [ -e /tmp/attack-marker-t1 ]; then exec $ATTACK tmp_peek; else exec $ATTACK mark t1; fi\"],
    \"min_warm\": 1, \"max_sandboxes\": 1, \"keep_alive_ms\": 600000}"
check "deploy marker (t1)" '[ "$CODE" = 201 ]' "$(show)"
invoke "$TOK1" marker
check "t1 leaves a marker in its /tmp" '[ "$CODE" = 200 ] && grep -q "^marked=" "$WORK/body"' "$(show)"
run_attack "$TOK2" tmp_peek
run_attack "$TOK1" tmp_peek # the same tenant's other function: another sandbox
invoke "$TOK1" marker
check "control: the marking sandbox itself sees its marker (tmp_peek can find one)" \
    '[ "$CODE" = 502 ] && grep -q "NOT BLOCKED: tmp:other_tenant" "$WORK/body"' "$(show)"

# --- host paths through a spec's mounts --------------------------------------------------------------------------------
# A tenant names host paths in `mounts` through the API. Whatever the daemon
# allows, a tenant must not reach another tenant's data in the daemon's state,
# the host's /proc (other processes' command lines: tokens), nor write host
# directories. Passed when the deploy is refused (4xx) or the sandbox cannot
# see or write the target.
# mount_attack NAME SOURCE TARGET READONLY SHELL_COMMAND: as t2; sets MOUNT_OUT (the
# call's body, empty if the deploy was refused) and MOUNT_DEPLOY (the deploy's code).
mount_attack() {
    deploy "$TOK2" "$1" "{\"command\": [\"/bin/sh\", \"-c\", $(python3 -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$5")],
        \"mounts\": [{\"source\": \"$2\", \"target\": \"$3\", \"readonly\": $4}], \"timeout_ms\": 10000}"
    MOUNT_DEPLOY=$CODE MOUNT_OUT=
    [ "$CODE" = 201 ] || MOUNT_DEPLOY="$CODE $(head -c 300 "$WORK/body")"
    if [ "$CODE" = 201 ]; then
        invoke "$TOK2" "$1"
        MOUNT_OUT=$(cat "$WORK/body")
        call "$TOK2" DELETE "/v1/functions/$1"
    fi
}
SECRET=t1-secret-$(new_token)
deploy "$TOK1" keeper '{"command": ["/bin/cat"]}'
call "$TOK1" POST /v1/functions/keeper/invocations -H 'Prefer: respond-async' --data-binary "$SECRET"
check "t1 stores an async invocation with a secret payload (202)" '[ "$CODE" = 202 ]' "$(show)"
sleep 0.5
for f in journal.db-wal journal.db hearth.db-wal; do
    if [ -e "$WORK/state/$f" ]; then
        mount_attack steal "$WORK/state/$f" /etc/hostname true "grep -a -c '$SECRET' /etc/hostname; true"
        check "mount: t2 cannot read t1's async payload from the daemon's state ($f; deploy $MOUNT_DEPLOY)" \
            '! printf "%s" "$MOUNT_OUT" | grep -qx "[1-9][0-9]*"' "answer: $(printf %s "$MOUNT_OUT" | head -c 300)"
        printf 'mount:state_dir/%s\t%s\t-\tdeploy %s, answer %s\n' "$f" \
            "$(printf "%s" "$MOUNT_OUT" | grep -qx "[1-9][0-9]*" && echo "NOT BLOCKED" || echo blocked)" \
            "$MOUNT_DEPLOY" "$(printf %s "$MOUNT_OUT" | head -c 60 | tr '\n\t' '  ')" >>"$RESULTS"
        still_healthy "mount of $f"
    fi
done
mount_attack hostproc /proc /mnt true "cat /mnt/$DAEMON_PID/cmdline 2>/dev/null | tr '\\0' ' '; ls /mnt | grep -c '^[0-9]'; true"
check "mount: t2 cannot see the host's processes through a bind of /proc (deploy $MOUNT_DEPLOY)" \
    '! printf "%s" "$MOUNT_OUT" | grep -q "hearthd"' "answer: $(printf %s "$MOUNT_OUT" | head -c 300)"
printf 'mount:host_proc\t%s\t-\tdeploy %s, answer %s\n' \
    "$(printf "%s" "$MOUNT_OUT" | grep -q hearthd && echo "NOT BLOCKED" || echo blocked)" "$MOUNT_DEPLOY" \
    "$(printf %s "$MOUNT_OUT" | head -c 60 | tr '\n\t' '  ')" >>"$RESULTS"
still_healthy "mount of /proc"
HOSTFILE=adversary-written-by-t2-$$
mount_attack hostvartmp /var/tmp /mnt false "touch /mnt/$HOSTFILE && echo wrote; true"
wrote=no
[ -e "/var/tmp/$HOSTFILE" ] && wrote=yes
rm -f "/var/tmp/$HOSTFILE"
check "mount: t2 cannot write the host's /var/tmp through a read-write bind (deploy $MOUNT_DEPLOY)" '[ "$wrote" = no ]' \
    "answer: $MOUNT_OUT"
printf 'mount:host_var_tmp_rw\t%s\t-\tdeploy %s, host file created: %s\n' \
    "$([ "$wrote" = no ] && echo blocked || echo "NOT BLOCKED")" "$MOUNT_DEPLOY" "$wrote" >>"$RESULTS"
still_healthy "mount of /var/tmp"

# --- the end ------------------------------------------------------------------------------------------------------
RSS1=$(awk '/^VmRSS/ { print $2 }' "/proc/$DAEMON_PID/status")
note "hearthd VmRSS: ${RSS0} kB at start, ${RSS1} kB after $N_ATTEMPTS attempts"
stop_daemon 20
check "hearthd stops cleanly (exit 0)" '[ "$DAEMON_RC" = 0 ]' "exit: $DAEMON_RC" "$(tail -n 10 "$LOG")"
left=$(cgroup_leftovers "$CGROOT")
check "no cgroup left under $CGROOT" '[ -z "$left" ]' "$left"
left=$(uid_range_procs "$UID_BASE" "$UID_COUNT")
check "no sandbox process left" '[ -z "$left" ]' "$left"
left=$(grep -c " $WORK" /proc/self/mountinfo)
check "no mount of the test's directories left on the host" '[ "$left" = 0 ]' "$(grep " $WORK" /proc/self/mountinfo)"
if [ -n "${ADVERSARY_RESULTS:-}" ]; then
    cp "$RESULTS" "$ADVERSARY_RESULTS"
fi
note "$N_ATTEMPTS attempts in $(($(now_ms) - T0)) ms"
finish
