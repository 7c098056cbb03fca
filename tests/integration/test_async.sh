#!/bin/bash
# Asynchronous invocations (issue 6) against the real daemon:
#  1. crash safety: 2,000 async invocations of a function that appends its
#     invocation id to a bind-mounted file, while hearthd is killed with
#     SIGKILL three times at random moments and restarted with the same
#     config; every accepted id ends `succeeded` and is in the file, ids run
#     twice are bounded by kills × max_sandboxes; after the final SIGTERM no
#     cgroup and no sandbox process is left;
#  2. Idempotency-Key; 3. retries with backoff, dead letter, manual retry;
#  4. X-Callback-Url delivery (and a refused or failing listener);
#  5. result_ttl_s pruning; 6. a full state disk (503 storage_unavailable for
#     async accepts, synchronous calls and stored results unharmed).
# Also measures (reported as TAP comments, not asserted) the durable
# acceptance rate (202/s) and the end-to-end async throughput.
# Needs root, curl, /usr/bin/python3; wrk optional (the acceptance rate is
# then measured with the Python client). Binaries from $HEARTH_BIN (default
# <repo>/bin). TAP output; the last line is "N passed, N failed[, N skipped]".
set -u
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3

if [ ! -x "$HEARTHD" ]; then
    skip "async invocations" "hearthd not built (run make, or set HEARTH_BIN)"
    finish
fi
if [ "$(id -u)" != 0 ]; then
    skip "async invocations" "needs root (hearthd runs sandboxes)"
    finish
fi
for t in curl "$PY"; do
    command -v "$t" >/dev/null || { not_ok "$t present" "the test needs $t (scripts/install-deps)"; finish; }
done

make_workdir hearth-async-test
T0=$(now_ms)
TOK=$(new_token)
UID_BASE=$((4000000 + ($$ % 10000) * 256)) # four daemons, 64 uids each
CGROOT=hearth-async-$$
N_CRASH=${ASYNC_N:-2000}
MAXSB=8
SHARED=$WORK/shared # bind-mounted on /mnt in the sandboxes
mkdir -p "$SHARED"
chmod 0777 "$WORK" "$SHARED"
: >"$SHARED/ids"
chmod 0666 "$SHARED/ids"

# Besides lib.sh's daemon ($DAEMON_PID: daemon A), daemons B (TTL), C (full disk)
# and D (benchmark) and the callback listener; the tiny tmpfs is unmounted at exit.
EXTRA_PIDS=
TINY=$WORK/tiny
TINY_MOUNTED=
async_cleanup() {
    local p
    for p in $EXTRA_PIDS; do kill -0 "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null; done
    for p in $EXTRA_PIDS; do
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    if [ -n "$TINY_MOUNTED" ]; then
        umount "$TINY" 2>/dev/null || umount -l "$TINY" 2>/dev/null
    fi
    lib_cleanup
}
trap async_cleanup EXIT

# write_config FILE PORT STATE_DIR CGROUP_ROOT UID_OFFSET [EXTRA_KEYS]
write_config() {
    cat >"$1" <<EOF
{
  "listen_unix": "",
  "listen_http": "127.0.0.1:$2",
  "state_dir": "$3",
  "cgroup_root": "$4",
  "uid_base": $((UID_BASE + $5)),
  "uid_count": 64,
  "prewarm_pool": 0,
  "max_sandboxes": $MAXSB,
  "max_connections": 4096,
  "drain_timeout_ms": 5000,
  "log_level": "info"$6,
  "mount_sources": ["$SHARED"],
  "tenants": [
    {"name": "t1", "tokens_sha256": ["$(sha256_hex "$TOK")"]}
  ]
}
EOF
}

# --- requests -------------------------------------------------------------------------------
# call BASE METHOD PATH [CURL ARGS...]: CODE; body in $WORK/body, headers in $WORK/hdr.
call() {
    local base=$1 m=$2 p=$3
    shift 3
    CODE=$(curl -s -o "$WORK/body" -D "$WORK/hdr" -w '%{http_code}' --max-time 30 -X "$m" \
        -H "Authorization: Bearer $TOK" "$@" "$base$p")
}
body() { head -c 600 "$WORK/body"; }
hdr() { grep -i "^$1:" "$WORK/hdr" | head -n 1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//'; }
jbody() { json_get "$WORK/body" "$1"; }
show() { echo "HTTP $CODE: $(body)"; }
# deploy BASE NAME SPEC
deploy() { call "$1" PUT "/v1/functions/$2" --data-binary "$3"; }
# submit BASE FN [CURL ARGS...]: an async invocation; CODE, ID (empty unless 202).
submit() {
    local base=$1 fn=$2
    shift 2
    call "$base" POST "/v1/functions/$fn/invocations" -H 'Prefer: respond-async' "$@"
    ID=
    [ "$CODE" = 202 ] && ID=$(jbody "d['id']")
}
# inv BASE ID: GET /v1/invocations/ID (CODE, body).
inv() { call "$1" GET "/v1/invocations/$2"; }
# wait_status BASE ID STATUS SECONDS: poll until the invocation has STATUS.
wait_status() {
    local end=$(($(now_ms) + $4 * 1000))
    while :; do
        inv "$1" "$2"
        [ "$CODE" = 200 ] && [ "$(jbody "d['status']")" = "$3" ] && return 0
        [ "$(now_ms)" -ge "$end" ] && return 1
        sleep 0.1
    done
}
# async_idle BASE FN: nothing of FN queued or running.
async_idle() {
    local s
    for s in queued running; do
        call "$1" GET "/v1/functions/$2/invocations?status=$s&limit=1"
        [ "$CODE" = 200 ] && [ "$(jbody "len(d['invocations'])")" = 0 ] || return 1
    done
}
# stop_pid PID [SECONDS]: SIGTERM one of our extra daemons and wait; RC its exit status.
stop_pid() {
    local p=$1 limit=$(( ${2:-15} * 10 ))
    RC=timeout
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 1 "$limit"); do
        if ! kill -0 "$p" 2>/dev/null; then
            wait "$p"
            RC=$?
            return
        fi
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
}
# start_extra CONFIG LOG URL: like start_daemon, for daemons B, C, D; sets XPID.
start_extra() {
    local save=$DAEMON_PID rc=0
    start_daemon "$1" "$2" "" "$3" >"$WORK/start.out" || rc=1
    XPID=$DAEMON_PID
    DAEMON_PID=$save
    EXTRA_PIDS="$EXTRA_PIDS $XPID"
    return $rc
}
# proc_tree PID: "pid:starttime" of PID's descendants (not PID itself).
proc_tree() {
    local todo=$1 p c out=
    while [ -n "$todo" ]; do
        set -- $todo
        p=$1
        shift
        todo="$*"
        for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do
            out="$out $c:$(awk '{print $22}' "/proc/$c/stat" 2>/dev/null)"
            todo="$todo $c"
        done
    done
    echo "$out"
}
# still_alive "pid:start ...": those still running (same start time: not a reused pid).
still_alive() {
    local e s
    for e in $1; do
        [ -n "${e#*:}" ] || continue # it ended while the tree was read
        s=$(awk '{print $22}' "/proc/${e%%:*}/stat" 2>/dev/null)
        [ -n "$s" ] && [ "$s" = "${e#*:}" ] && echo "${e%%:*}"
    done
}

# ============================================================================================
# Daemon B (TTL pruning) starts first: its results must outlive result_ttl_s (at least 60 s,
# configs/README.md) plus the prune period (30 s), so the rest of the test runs meanwhile.
# ============================================================================================
PORT_B=$(free_port)
URL_B=http://127.0.0.1:$PORT_B
TTL_S=60
mkdir -p "$WORK/state-b"
write_config "$WORK/b.json" "$PORT_B" "$WORK/state-b" "$CGROOT-ttl" 64 ",
  \"result_ttl_s\": $TTL_S"
B_PID=
if start_extra "$WORK/b.json" "$WORK/b.log" "$URL_B"; then
    B_PID=$XPID
    B_START=$(now_ms)
else
    not_ok "TTL daemon starts (result_ttl_s $TTL_S)" "$(cat "$WORK/start.out")"
fi
TTL_ID= TTL_FIN=
if [ -n "$B_PID" ]; then
    deploy "$URL_B" cat '{"command": ["/bin/cat"], "memory_mb": 32, "timeout_ms": 5000}'
    submit "$URL_B" cat --data-binary 'kept for a while'
    if [ -n "$ID" ] && wait_status "$URL_B" "$ID" succeeded 15; then
        TTL_ID=$ID
        TTL_FIN=$(jbody "d['finished']")
    else
        not_ok "TTL: an async invocation succeeds" "$(show)"
    fi
fi

# ============================================================================================
# Daemon A: idempotency, retries and dead letters, callbacks; then the crash test.
# ============================================================================================
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
mkdir -p "$WORK/state"
write_config "$WORK/a.json" "$PORT" "$WORK/state" "$CGROOT" 0 ""
LOG=$WORK/a.log
if start_daemon "$WORK/a.json" "$LOG" "" "$URL" >"$WORK/start.out"; then
    ok "hearthd starts (/healthz 200)"
else
    not_ok "hearthd starts" "$(cat "$WORK/start.out")"
    finish
fi
deploy "$URL" cat '{"command": ["/bin/cat"], "memory_mb": 32, "timeout_ms": 5000}'
C1=$CODE
deploy "$URL" fail '{"command": ["/bin/false"], "memory_mb": 32, "timeout_ms": 5000, "max_attempts": 2}'
C2=$CODE
deploy "$URL" append "{\"command\": [\"/bin/sh\", \"-c\", \"echo \$HEARTH_INVOCATION_ID >> /mnt/ids\"],
  \"mounts\": [{\"source\": \"$SHARED\", \"target\": \"/mnt\", \"readonly\": false}],
  \"memory_mb\": 32, \"timeout_ms\": 10000, \"max_sandboxes\": $MAXSB, \"max_attempts\": 10}"
C3=$CODE
check "functions deployed (cat, fail: /bin/false with max_attempts 2, append)" \
    '[ "$C1" = 201 ] && [ "$C2" = 201 ] && [ "$C3" = 201 ]' "cat $C1, fail $C2, append $C3: $(show)"

# --- the basic shape --------------------------------------------------------------------------
submit "$URL" cat --data-binary 'hello async'
LOC=$(hdr Location)
check "async accept: 202, Location /v1/invocations/{id}, {id, status queued, duplicate false}" \
    '[ "$CODE" = 202 ] && [ "${#ID}" = 32 ] && [ "$LOC" = "/v1/invocations/$ID" ] &&
     [ "$(jbody "d[\"status\"]")" = queued ] && [ "$(jbody "d[\"duplicate\"]")" = false ]' "$(show); Location: $LOC"
BASIC=$ID
if [ -n "$BASIC" ] && wait_status "$URL" "$BASIC" succeeded 15; then
    check "GET /v1/invocations/{id}: succeeded, result, attempts 1, tenant, function, times" \
        '[ "$(jbody "d[\"result\"]")" = "hello async" ] && [ "$(jbody "d[\"attempts\"]")" = 1 ] &&
         [ "$(jbody "d[\"tenant\"]")" = t1 ] && [ "$(jbody "d[\"function\"]")" = cat ] &&
         [ "$(jbody "d[\"created\"] <= d[\"started\"] <= d[\"finished\"]")" = true ]' "$(show)"
else
    not_ok "GET /v1/invocations/{id}: succeeded" "$(show)"
fi
inv "$URL" 0123456789abcdef0123456789abcdef
check "GET of an unknown invocation: 404" '[ "$CODE" = 404 ]' "$(show)"

# --- 2. Idempotency-Key -------------------------------------------------------------------------
K=idem-$$-$RANDOM
submit "$URL" cat -H "Idempotency-Key: $K" --data-binary one
I1=$ID D1=$(jbody "d['duplicate']")
submit "$URL" cat -H "Idempotency-Key: $K" --data-binary two
I2=$ID D2=$(jbody "d['duplicate']") L2=$(hdr Location)
check "Idempotency-Key repeated: the same id, duplicate true, same Location" \
    '[ -n "$I1" ] && [ "$I1" = "$I2" ] && [ "$D1" = false ] && [ "$D2" = true ] && [ "$L2" = "/v1/invocations/$I1" ]' \
    "first $I1 (duplicate $D1), second $I2 (duplicate $D2): $(show)"
submit "$URL" cat -H "Idempotency-Key: $K-other" --data-binary three
I3=$ID
submit "$URL" cat --data-binary four
I4=$ID
check "different keys (and no key): different ids" \
    '[ -n "$I3" ] && [ -n "$I4" ] && [ "$I3" != "$I1" ] && [ "$I4" != "$I1" ] && [ "$I4" != "$I3" ]' \
    "$I1 / $I3 / $I4"
if [ -n "$I1" ] && wait_status "$URL" "$I1" succeeded 15; then
    check "the key's invocation ran once, with the first payload" '[ "$(jbody "d[\"result\"]")" = one ] &&
        [ "$(jbody "d[\"attempts\"]")" = 1 ]' "$(show)"
else
    not_ok "the key's invocation ran once, with the first payload" "$(show)"
fi

# --- 4. callbacks (started now, checked after the dead letters) --------------------------------
CB_PORT=$(free_port)
REFUSED_PORT=$(free_port)
CB_OUT=$WORK/callbacks.jsonl
: >"$CB_OUT"
cat >"$WORK/listener.py" <<'PY'
import http.server, json, sys
port, out = int(sys.argv[1]), sys.argv[2]
seen = set()
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        code = 200
        key = (self.path, self.headers.get("X-Hearth-Invocation-Id"))
        if self.path.startswith("/flaky") and key not in seen:  # the first POST of each id fails
            seen.add(key)
            code = 500
        with open(out, "a") as f:
            f.write(json.dumps({"path": self.path, "code": code, "body": body.decode("utf-8", "replace")}) + "\n")
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
"$PY" "$WORK/listener.py" "$CB_PORT" "$CB_OUT" </dev/null >"$WORK/listener.log" 2>&1 &
CB_PID=$!
EXTRA_PIDS="$EXTRA_PIDS $CB_PID"
for _ in $(seq 1 50); do
    ({ exec 3<>"/dev/tcp/127.0.0.1/$CB_PORT"; } 2>/dev/null) && break
    sleep 0.1
done
submit "$URL" cat -H "X-Callback-Url: http://127.0.0.1:$CB_PORT/hook?x=1" --data-binary 'call me back'
CB_OK=$ID
submit "$URL" cat -H "X-Callback-Url: http://127.0.0.1:$CB_PORT/flaky" --data-binary 'call me twice'
CB_FLAKY=$ID
submit "$URL" cat -H "X-Callback-Url: http://127.0.0.1:$REFUSED_PORT/nobody" --data-binary 'nobody listens'
CB_REFUSED=$ID
submit "$URL" fail -H "X-Callback-Url: http://127.0.0.1:$CB_PORT/dead"
CB_DEAD=$ID
submit "$URL" cat -H "X-Callback-Url: https://127.0.0.1:$CB_PORT/"
check "X-Callback-Url other than http://: 400" '[ "$CODE" = 400 ]' "$(show)"

# --- 3. retries, dead letter, manual retry ------------------------------------------------------
submit "$URL" fail --data-binary 'doomed'
DEAD=$ID
if [ -n "$DEAD" ] && wait_status "$URL" "$DEAD" dead 20; then
    check "/bin/false with max_attempts 2: dead, attempts 2, error set" \
        '[ "$(jbody "d[\"attempts\"]")" = 2 ] && [ "$(jbody "d[\"max_attempts\"]")" = 2 ] &&
         [ -n "$(jbody "d[\"error\"]")" ] && [ "$(jbody "d[\"finished\"] is not None")" = true ]' "$(show)"
    GAP=$(jbody "d['started'] - d['created']")
    check "the second attempt waited for the backoff (1 s with jitter: >= 0.5 s after acceptance)" \
        '[ -n "$GAP" ] && [ "$GAP" -ge 450 ] && [ "$GAP" -le 5000 ]' "second attempt started $GAP ms after acceptance"
    note "dead letter: second attempt $GAP ms after acceptance; error: $(jbody "d['error']" | head -c 200)"
else
    not_ok "/bin/false with max_attempts 2: dead" "$(show)"
fi
call "$URL" GET "/v1/functions/fail/invocations?status=dead"
check "GET /v1/functions/fail/invocations?status=dead lists it" \
    '[ "$CODE" = 200 ] && [ "$(jbody "any(i[\"id\"] == \"$DEAD\" and i[\"status\"] == \"dead\" for i in d[\"invocations\"])")" = true ]' \
    "$(show)"
call "$URL" GET "/v1/functions/cat/invocations?status=dead"
check "... and not in another function's dead letters" \
    '[ "$CODE" = 200 ] && [ "$(jbody "any(i[\"id\"] == \"$DEAD\" for i in d[\"invocations\"])")" = false ]' "$(show)"
call "$URL" GET "/v1/functions/fail/invocations?status=bogus"
check "?status=bogus: 400" '[ "$CODE" = 400 ]' "$(show)"
call "$URL" POST "/v1/invocations/$DEAD/retry"
RCODE=$CODE RBODY=$(body)
inv "$URL" "$DEAD"
check "POST /v1/invocations/{dead}/retry: 200 queued, attempts start again" \
    '[ "$RCODE" = 200 ] && case $(jbody "d[\"status\"]") in queued|running) true ;; *) false ;; esac &&
     [ "$(jbody "d[\"attempts\"]")" -le 1 ]' "retry: HTTP $RCODE $RBODY; then $(show)"
if wait_status "$URL" "$DEAD" dead 20; then
    check "... and after its attempts it is dead again (attempts 2)" '[ "$(jbody "d[\"attempts\"]")" = 2 ]' "$(show)"
else
    not_ok "... and after its attempts it is dead again" "$(show)"
fi
call "$URL" POST "/v1/invocations/$BASIC/retry"
check "retry of a succeeded invocation: 409" '[ "$CODE" = 409 ]' "$(show)"
call "$URL" POST "/v1/invocations/0123456789abcdef0123456789abcdef/retry"
check "retry of an unknown invocation: 404" '[ "$CODE" = 404 ]' "$(show)"

# --- 4. callbacks: checked ----------------------------------------------------------------------
# cb_seen ID PATH CODE: the listener got a POST for ID on PATH answered CODE; prints its body.
cb_seen() {
    "$PY" - "$CB_OUT" "$1" "$2" "$3" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    try:
        b = json.loads(r["body"])
    except Exception:
        continue
    if b.get("id") == sys.argv[2] and r["path"].startswith(sys.argv[3]) and r["code"] == int(sys.argv[4]):
        print(json.dumps(b))
        sys.exit(0)
sys.exit(1)
PY
}
wait_cb() { # ID PATH CODE SECONDS
    local end=$(($(now_ms) + $4 * 1000))
    until cb_seen "$1" "$2" "$3" >"$WORK/cb.json"; do
        [ "$(now_ms)" -ge "$end" ] && return 1
        sleep 0.2
    done
}
if [ -n "$CB_OK" ] && wait_cb "$CB_OK" /hook 200 15; then
    check "callback POSTed to the listener (path and query kept): id, tenant, function, status succeeded, result" \
        '[ "$(json_get "$WORK/cb.json" "d[\"status\"]")" = succeeded ] &&
         [ "$(json_get "$WORK/cb.json" "d[\"result\"]")" = "call me back" ] &&
         [ "$(json_get "$WORK/cb.json" "d[\"function\"]")" = cat ] &&
         [ "$(json_get "$WORK/cb.json" "d[\"tenant\"]")" = t1 ] &&
         grep -q "/hook?x=1" "$CB_OUT"' "$(cat "$WORK/cb.json")"
    wait_status "$URL" "$CB_OK" succeeded 5
    sleep 0.3
    inv "$URL" "$CB_OK"
    check "... and the invocation shows callback delivered" '[ "$(jbody "d[\"callback\"][\"state\"]")" = delivered ]' "$(show)"
else
    not_ok "callback POSTed to the listener" "listener got: $(head -c 1500 "$CB_OUT")" "$(inv "$URL" "$CB_OK"; show)"
fi
if [ -n "$CB_FLAKY" ] && wait_cb "$CB_FLAKY" /flaky 200 15; then
    ok "a callback answered 500 is retried (delivered on a later POST)"
else
    not_ok "a callback answered 500 is retried" "listener got: $(grep flaky "$CB_OUT" | head -c 1000)" \
        "$(inv "$URL" "$CB_FLAKY"; show)"
fi
if [ -n "$CB_DEAD" ] && wait_cb "$CB_DEAD" /dead 200 20; then
    check "callback of a dead-lettered invocation: status dead, attempts 2, error" \
        '[ "$(json_get "$WORK/cb.json" "d[\"status\"]")" = dead ] && [ "$(json_get "$WORK/cb.json" "d[\"attempts\"]")" = 2 ] &&
         [ -n "$(json_get "$WORK/cb.json" "d[\"error\"]")" ]' "$(cat "$WORK/cb.json")"
else
    not_ok "callback of a dead-lettered invocation" "listener got: $(grep dead "$CB_OUT" | head -c 1000)" \
        "$(inv "$URL" "$CB_DEAD"; show)"
fi
if [ -n "$CB_REFUSED" ] && wait_status "$URL" "$CB_REFUSED" succeeded 15; then
    sleep 0.5
    inv "$URL" "$CB_REFUSED"
    check "a refused callback URL does not break the invocation: succeeded, result kept, callback pending/failed" \
        '[ "$(jbody "d[\"result\"]")" = "nobody listens" ] &&
         case $(jbody "d[\"callback\"][\"state\"]") in pending|failed) true ;; *) false ;; esac &&
         daemon_answers "" "$URL"' "$(show)"
else
    not_ok "a refused callback URL does not break the invocation" "$(show)"
fi

# ============================================================================================
# 1. Crash safety: 2,000 invocations, three SIGKILLs, restarts with the same config.
# ============================================================================================
cat >"$WORK/submit.py" <<'PY'
# submit.py PORT TOKEN FN N CONCURRENCY OUT KEYPREFIX DEADLINE_S: every logical submission i
# (Idempotency-Key KEYPREFIX-i) is retried until a 202 answers it; OUT gets "i id duplicate tries".
import http.client, json, queue, sys, threading, time
port, token, fn, n, conc, out, prefix, limit = sys.argv[1:9]
n, conc, deadline = int(n), int(conc), time.time() + float(limit)
todo = queue.Queue()
for i in range(n):
    todo.put(i)
lock = threading.Lock()
f = open(out, "a", buffering=1)
st = {"requests": 0, "conn_errors": 0, "other": {}, "dup_after_loss": 0, "dup_other": 0, "retried": 0, "given_up": 0}
def worker():
    conn = None
    while True:
        try:
            i = todo.get_nowait()
        except queue.Empty:
            return
        tries = 0
        while True:
            if time.time() > deadline:
                with lock:
                    st["given_up"] += 1
                break
            tries += 1
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=15)
                conn.request("POST", "/v1/functions/%s/invocations" % fn, body=str(i).encode(),
                             headers={"Authorization": "Bearer " + token, "Prefer": "respond-async",
                                      "Idempotency-Key": "%s-%d" % (prefix, i)})
                r = conn.getresponse()
                b = r.read()
                with lock:
                    st["requests"] += 1
                if r.status == 202:
                    d = json.loads(b)
                    with lock:
                        f.write("%d %s %d %d\n" % (i, d["id"], 1 if d["duplicate"] else 0, tries))
                        if tries > 1:
                            st["retried"] += 1
                        if d["duplicate"]:
                            st["dup_after_loss" if tries > 1 else "dup_other"] += 1
                    break
                with lock:
                    st["other"][r.status] = st["other"].get(r.status, 0) + 1
                if (r.getheader("Connection") or "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception:
                with lock:
                    st["conn_errors"] += 1
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(0.05)
ts = [threading.Thread(target=worker) for _ in range(conc)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(json.dumps(st))
PY
ACC=$WORK/accepted.txt
: >"$ACC"
progress() { echo $(($(wc -l <"$ACC") + $(wc -l <"$SHARED/ids"))); }
# Kill points, in "events" (accepts + completed runs, 2 × N in all), at random in three bands.
K1=$((2 * N_CRASH * (15 + RANDOM % 16) / 100))
K2=$((2 * N_CRASH * (40 + RANDOM % 16) / 100))
K3=$((2 * N_CRASH * (65 + RANDOM % 16) / 100))
CRASH_T0=$(now_ms)
"$PY" "$WORK/submit.py" "$PORT" "$TOK" append "$N_CRASH" 16 "$ACC" "crash-$$" 90 </dev/null >"$WORK/submit.out" 2>&1 &
SUB_PID=$!
EXTRA_PIDS="$EXTRA_PIDS $SUB_PID"
KILLS=0
KILL_NOTES=
ORPHANS=
RESTART_FAIL=
for k in $K1 $K2 $K3; do
    end=$(($(now_ms) + 120000))
    while [ "$(progress)" -lt "$k" ] && [ "$(now_ms)" -lt "$end" ]; do sleep 0.02; done
    ORPHANS="$ORPHANS $(proc_tree "$DAEMON_PID")"
    a=$(wc -l <"$ACC") c=$(wc -l <"$SHARED/ids")
    kill -KILL "$DAEMON_PID"
    wait "$DAEMON_PID" 2>/dev/null
    KILLS=$((KILLS + 1))
    KILL_NOTES="$KILL_NOTES kill $KILLS at +$(($(now_ms) - CRASH_T0)) ms (accepted $a, runs $c);"
    sleep 0.$((RANDOM % 5))
    if ! start_daemon "$WORK/a.json" "$LOG" "" "$URL" >"$WORK/start.out"; then
        RESTART_FAIL="restart after kill $KILLS failed: $(cat "$WORK/start.out")"
        break
    fi
done
note "$KILL_NOTES"
check "hearthd killed with SIGKILL 3 times during the run and restarted each time with the same config" \
    '[ "$KILLS" = 3 ] && [ -z "$RESTART_FAIL" ]' "$RESTART_FAIL"
[ -n "$RESTART_FAIL" ] && finish
# The client ends by itself (its own 90 s limit).
wait "$SUB_PID"
SUB_STATS=$(cat "$WORK/submit.out")
SUB_DONE=$(now_ms)
N_ACC=$(wc -l <"$ACC")
check "all $N_CRASH submissions accepted (202) in the end (retried by the client across the kills)" \
    '[ "$N_ACC" = "$N_CRASH" ]' "$N_ACC accepted; client: $SUB_STATS"
note "client: $SUB_STATS (dup_after_loss: retries whose earlier try got no 202 and that the key answered with the original id)"
end=$(($(now_ms) + 120000))
until async_idle "$URL" append || [ "$(now_ms)" -ge "$end" ]; do sleep 0.25; done
IDLE_MS=$(($(now_ms) - CRASH_T0))
check "within 120 s nothing is queued or running" 'async_idle "$URL" append' "$(show)"
note "crash run: $N_ACC accepted and finished in $IDLE_MS ms with 3 kills and restarts: $(awk -v n="$N_ACC" -v t="$IDLE_MS" 'BEGIN { printf "%.0f", n * 1000 / t }') invocations/s end to end"

cat >"$WORK/verify.py" <<'PY'
# verify.py PORT TOKEN ACCEPTED IDS: every accepted id's record and its lines in the file.
import collections, http.client, json, sys, threading
port, token, accf, idsf = sys.argv[1:5]
acc = {}
for line in open(accf):
    i, id_, dup, tries = line.split()
    acc.setdefault(int(i), set()).add(id_)
ids = sorted(set().union(*acc.values())) if acc else []
seen = collections.Counter(l.strip() for l in open(idsf) if l.strip())
rec, lock = {}, threading.Lock()
def get(part):
    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=15)
    for id_ in part:
        c.request("GET", "/v1/invocations/" + id_, headers={"Authorization": "Bearer " + token})
        r = c.getresponse()
        b = r.read()
        with lock:
            rec[id_] = json.loads(b) if r.status == 200 else {"status": "HTTP %d" % r.status}
ts = [threading.Thread(target=get, args=(ids[k::4],)) for k in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
status = collections.Counter(r["status"] for r in rec.values())
multi = {i: n for i, n in seen.items() if n > 1}
print(json.dumps({
    "logical_with_two_ids": sum(1 for s in acc.values() if len(s) > 1),
    "accepted_ids": len(ids),
    "status": dict(status),
    "not_succeeded": [i + " " + json.dumps(rec[i])[:300] for i in ids if rec[i]["status"] != "succeeded"][:5],
    "missing_in_file": [i for i in ids if seen[i] == 0][:10],
    "n_missing_in_file": sum(1 for i in ids if seen[i] == 0),
    "unknown_in_file": [i for i in seen if i not in rec][:10],
    "n_unknown_in_file": sum(1 for i in seen if i not in rec),
    "n_multi": len(multi),
    "max_runs": max(seen.values()) if seen else 0,
    "runs_over_attempts": ["%s ran %d, attempts %s" % (i, n, rec[i].get("attempts")) for i, n in multi.items()
                           if i in rec and n > int(rec[i].get("attempts") or 0)][:5],
    "attempts_hist": dict(collections.Counter(r.get("attempts") for r in rec.values())),
}))
PY
"$PY" "$WORK/verify.py" "$PORT" "$TOK" "$ACC" "$SHARED/ids" >"$WORK/verify.json" 2>"$WORK/verify.err"
V() { json_get "$WORK/verify.json" "$1"; }
note "verify: $(head -c 1500 "$WORK/verify.json") $(head -c 300 "$WORK/verify.err")"
check "one id per logical submission (the Idempotency-Key held across the kills)" \
    '[ "$(V "d[\"logical_with_two_ids\"]")" = 0 ] && [ "$(V "d[\"accepted_ids\"]")" = "$N_ACC" ]' "$(cat "$WORK/verify.json")"
check "every accepted id has status succeeded" \
    '[ "$(V "d[\"status\"].get(\"succeeded\", 0)")" = "$N_ACC" ]' \
    "statuses: $(V "d['status']")" "$(V "d['not_succeeded']")"
check "every accepted id appears in the file at least once" '[ "$(V "d[\"n_missing_in_file\"]")" = 0 ]' \
    "$(V "d['n_missing_in_file']") missing, e.g. $(V "d['missing_in_file']")"
check "no id in the file that was never accepted" '[ "$(V "d[\"n_unknown_in_file\"]")" = 0 ]' \
    "$(V "d['n_unknown_in_file']") unknown, e.g. $(V "d['unknown_in_file']")"
N_MULTI=$(V "d['n_multi']")
check "ids run more than once: $N_MULTI <= kills ($KILLS) x max_sandboxes ($MAXSB)" \
    '[ -n "$N_MULTI" ] && [ "$N_MULTI" -le $((KILLS * MAXSB)) ]' "max runs of one id: $(V "d['max_runs']")"
# Sharper: at most the invocations the restarts found running (from their start-up logs).
REQUEUED=$(grep -ho '[0-9]* invocations left running by a previous hearthd' "$LOG" | awk '{ n += $1 } END { print n + 0 }')
check "ids run more than once: $N_MULTI <= invocations requeued as left running at the restarts ($REQUEUED)" \
    '[ -n "$N_MULTI" ] && [ "$N_MULTI" -le "$REQUEUED" ]' "$(grep -h 'left running' "$LOG")"
check "an id run n times has at least n attempts counted (a rerun is an interrupted attempt)" \
    '[ "$(V "d[\"runs_over_attempts\"]")" = "[]" ]' "$(V "d['runs_over_attempts']")"
note "ids run twice or more: $N_MULTI; attempts histogram: $(V "d['attempts_hist']")"
note "$(grep -h 'left running by a previous hearthd' "$LOG" | sed 's/.*"msg": *"\([^"]*\)".*/\1/' | tr '\n' ';')"
# After restarts, nothing of a killed daemon still runs (spawner, sandbox inits).
LEFT=$(still_alive "$ORPHANS")
check "no process of a SIGKILLed hearthd outlives it (spawner, sandboxes)" '[ -z "$LEFT" ]' \
    "$(for p in $LEFT; do ps -o pid=,stat=,uid=,args= -p "$p"; done)"

# Final SIGTERM: nothing left.
stop_daemon 20
A_RC=$DAEMON_RC
sleep 0.3
check "final SIGTERM: hearthd exits 0" '[ "$A_RC" = 0 ]' "exit: $A_RC; $(tail -n 5 "$LOG")"
LEFTCG=$(cgroup_leftovers "$CGROOT")
check "after the final SIGTERM no cgroup is left under $CGROOT" '[ -z "$LEFTCG" ]' "$LEFTCG"
LEFTP=$(uid_range_procs "$UID_BASE" 64)
check "after the final SIGTERM no process of the sandboxes' uid range is left" '[ -z "$LEFTP" ]' "$LEFTP"

# ============================================================================================
# 6. Full state disk: daemon C with state_dir on a 2 MiB tmpfs.
# ============================================================================================
mkdir -p "$TINY"
if mount -t tmpfs -o size=2m,mode=0755 tmpfs "$TINY"; then
    TINY_MOUNTED=1
    PORT_C=$(free_port)
    URL_C=http://127.0.0.1:$PORT_C
    write_config "$WORK/c.json" "$PORT_C" "$TINY/state" "$CGROOT-disk" 128 ""
    if start_extra "$WORK/c.json" "$WORK/c.log" "$URL_C"; then
        C_PID=$XPID
        deploy "$URL_C" cat '{"command": ["/bin/cat"], "memory_mb": 32, "timeout_ms": 5000}'
        submit "$URL_C" cat --data-binary 'stored before the disk filled'
        PRE=$ID
        wait_status "$URL_C" "$PRE" succeeded 15 || not_ok "full disk: an invocation stored before" "$(show)"
        dd if=/dev/zero of="$TINY/filler" bs=4k 2>/dev/null
        FILL_ACC=() GOT503= FIRST503=
        PAY=$(head -c 6000 /dev/zero | tr '\0' x)
        for i in $(seq 1 400); do
            submit "$URL_C" cat --data-binary "$PAY"
            if [ "$CODE" = 503 ]; then
                GOT503=1
                FIRST503=$(show)
                ERR503=$(jbody "d['error']")
                break
            fi
            [ -n "$ID" ] && FILL_ACC+=("$ID")
            # Whatever free space was left (WAL pages): keep filling.
            dd if=/dev/zero of="$TINY/filler" bs=4k oflag=append conv=notrunc 2>/dev/null
        done
        note "full disk: ${#FILL_ACC[@]} async accepts got 202 after the filler, before the first 503"
        check "full state disk: async accept answers 503 storage_unavailable" \
            '[ -n "$GOT503" ] && [ "$ERR503" = storage_unavailable ]' "${FIRST503:-no 503 in 400 accepts: $(show)}" \
            "$(df -k "$TINY" | tail -n 1)"
        call "$URL_C" POST /v1/functions/cat/invocations --data-binary 'sync while full'
        check "full state disk: a synchronous invocation still answers 200" \
            '[ "$CODE" = 200 ] && [ "$(body)" = "sync while full" ]' "$(show)"
        inv "$URL_C" "$PRE"
        check "full state disk: an invocation stored before still reads back (succeeded, result)" \
            '[ "$CODE" = 200 ] && [ "$(jbody "d[\"result\"]")" = "stored before the disk filled" ]' "$(show)"
        rm -f "$TINY/filler"
        submit "$URL_C" cat --data-binary 'after the disk was freed'
        AFTER=$ID
        check "space freed: async accepts work again (202)" '[ "$CODE" = 202 ]' "$(show)"
        if [ -n "$AFTER" ] && wait_status "$URL_C" "$AFTER" succeeded 15; then
            ok "... and the invocation accepted after the disk was freed succeeds"
        else
            not_ok "... and the invocation accepted after the disk was freed succeeds" "$(show)"
        fi
        # What got 202 while the disk was filling must not be lost.
        BAD=
        for id in "${FILL_ACC[@]}"; do
            wait_status "$URL_C" "$id" succeeded 15 || BAD="$BAD $id: $(show);"
        done
        check "the ${#FILL_ACC[@]} invocations accepted (202) while the disk filled all succeed once space is back" \
            '[ -z "$BAD" ]' "$(echo "$BAD" | head -c 1500)" "$(grep -i 'not recorded\|journal' "$WORK/c.log" | tail -n 5)"
        stop_pid "$C_PID" 20
        check "full-disk daemon exits 0 on SIGTERM" '[ "$RC" = 0 ]' "exit $RC; $(tail -n 5 "$WORK/c.log")"
    else
        not_ok "full-disk daemon starts" "$(cat "$WORK/start.out")"
    fi
    umount "$TINY" && TINY_MOUNTED=
else
    not_ok "mount a 2 MiB tmpfs for the full-disk case"
fi

# ============================================================================================
# Measured, not asserted: durable acceptance rate and end-to-end throughput (daemon D).
# ============================================================================================
PORT_D=$(free_port)
URL_D=http://127.0.0.1:$PORT_D
mkdir -p "$WORK/state-d"
write_config "$WORK/d.json" "$PORT_D" "$WORK/state-d" "$CGROOT-bench" 192 ""
if start_extra "$WORK/d.json" "$WORK/d.log" "$URL_D"; then
    D_PID=$XPID
    deploy "$URL_D" noop "{\"command\": [\"/bin/true\"], \"memory_mb\": 32, \"max_sandboxes\": $MAXSB, \"max_attempts\": 1}"
    # completed: invocations of noop that ended, from the journal's metrics.
    completed() {
        curl -s --max-time 5 "$URL_D/metrics" | awk '
            /^hearth_invocations_total\{/ && /function="noop"/ { n += $2 } END { printf "%d\n", n }'
    }
    BENCH_S=5
    WRK_C=${ASYNC_WRK_CONNECTIONS:-32}
    if command -v wrk >/dev/null; then
        cat >"$WORK/async.lua" <<EOF
wrk.method = "POST"
wrk.body = "x"
wrk.headers["Prefer"] = "respond-async"
wrk.headers["Authorization"] = "Bearer $TOK"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) n202 = 0; nother = 0 end
function response(status, headers, body)
  if status == 202 then n202 = n202 + 1 else nother = nother + 1 end
end
function done(summary, latency, requests)
  local a, o = 0, 0
  for _, t in ipairs(threads) do a = a + t:get("n202"); o = o + t:get("nother") end
  io.write(string.format("ACCEPTED %d OTHER %d P50 %.2f P99 %.2f\n", a, o,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
EOF
        C0=$(completed)
        wrk -t2 -c"$WRK_C" -d${BENCH_S}s -s "$WORK/async.lua" "$URL_D/v1/functions/noop/invocations" >"$WORK/wrk.out" 2>&1
        C1=$(completed)
        read -r _ NA _ NO _ P50 _ P99 <<<"$(grep '^ACCEPTED' "$WORK/wrk.out")"
        note "durable acceptance (wrk -t2 -c$WRK_C, ${BENCH_S} s, fsync per group commit): ${NA:-?} accepted (202), ${NO:-?} other;" \
            "$(awk -v n="${NA:-0}" -v s="$BENCH_S" 'BEGIN { printf "%.0f", n / s }') accepted/s; latency p50 ${P50:-?} ms, p99 ${P99:-?} ms;" \
            "meanwhile $((C1 - C0)) invocations completed ($(((C1 - C0) / BENCH_S))/s)"
    else
        : >"$WORK/bench.acc"
        C0=$(completed)
        B0=$(now_ms)
        "$PY" "$WORK/submit.py" "$PORT_D" "$TOK" noop 5000 32 "$WORK/bench.acc" "bench-$$" 60 >/dev/null 2>&1
        B1=$(now_ms)
        C1=$(completed)
        NA=$(wc -l <"$WORK/bench.acc")
        note "durable acceptance (Python client, 32 connections; wrk not installed): $NA accepted in $((B1 - B0)) ms:" \
            "$(awk -v n="$NA" -v t="$((B1 - B0))" 'BEGIN { printf "%.0f", n * 1000 / t }') accepted/s"
    fi
    # End to end, with the accepted backlog and no more accepts: completions per second over 8 s.
    E0=$(completed)
    sleep 8
    E1=$(completed)
    note "end-to-end async throughput (noop, /bin/true, max_sandboxes $MAXSB, backlog queued): $(((E1 - E0) / 8)) completed/s"
    stop_pid "$D_PID" 30
else
    note "benchmark daemon did not start: $(cat "$WORK/start.out")"
fi

# ============================================================================================
# 5. TTL pruning (daemon B): gone after result_ttl_s + the prune period (30 s).
# ============================================================================================
if [ -n "$TTL_ID" ]; then
    NOW=$(now_ms)
    if [ "$NOW" -lt $((TTL_FIN + TTL_S * 1000 - 1000)) ]; then
        inv "$URL_B" "$TTL_ID"
        check "TTL: before result_ttl_s the result is still there ($(((NOW - TTL_FIN) / 1000)) s after it finished)" \
            '[ "$CODE" = 200 ] && [ "$(jbody "d[\"result\"]")" = "kept for a while" ]' "$(show)"
    fi
    LIMIT=$((TTL_FIN + (TTL_S + 30 + 5) * 1000))
    GONE=
    while [ "$(now_ms)" -lt "$LIMIT" ]; do
        inv "$URL_B" "$TTL_ID"
        if [ "$CODE" = 404 ]; then GONE=$(now_ms); break; fi
        [ "$CODE" = 200 ] && LAST200=$(now_ms)
        sleep 0.5
    done
    if [ -n "$GONE" ]; then
        check "TTL: pruned (404) after result_ttl_s ($TTL_S s) + prune period: gone $(((GONE - TTL_FIN) / 1000)) s after it finished" \
            '[ $((${LAST200:-0} - TTL_FIN)) -lt $((TTL_S * 1000 + 30000 + 5000)) ] && [ $((GONE - TTL_FIN)) -ge $((TTL_S * 1000 - 1000)) ]' \
            "last 200 at $(((${LAST200:-0} - TTL_FIN) / 1000)) s"
    else
        not_ok "TTL: pruned (404) within result_ttl_s + 35 s" "$(show)"
    fi
    stop_pid "$B_PID" 15
    check "TTL daemon exits 0 on SIGTERM" '[ "$RC" = 0 ]' "exit $RC"
fi

for r in "$CGROOT" "$CGROOT-ttl" "$CGROOT-disk" "$CGROOT-bench"; do
    l=$(cgroup_leftovers "$r")
    [ -n "$l" ] && LEFTALL="${LEFTALL:-} $l"
done
LEFTP=$(uid_range_procs "$UID_BASE" 256)
check "at the end: no cgroup of any of the four daemons, no process in their uid ranges" \
    '[ -z "${LEFTALL:-}" ] && [ -z "$LEFTP" ]' "${LEFTALL:-}" "$LEFTP"
note "total time $(( ($(now_ms) - T0) / 1000 )) s"
finish
