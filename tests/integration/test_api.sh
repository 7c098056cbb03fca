#!/bin/bash
# hearthd's HTTP API against the real daemon, over the Unix socket and TCP:
# every status code the API documents, provoked for real; tenants apart and
# the admin; a restart keeps API-deployed functions; /metrics (promtool);
# CPU accounting against the probe's own getrusage and against the cgroups;
# SIGTERM under load loses no accepted call; SIGHUP reloads tenants; and the
# scheduler seen from outside (max_sandboxes, back to min_warm, fairness
# under a host cap, 429 with Retry-After).
# Needs root (hearthd runs sandboxes), curl and python3; promtool optional.
# Binaries from $HEARTH_BIN (default <repo>/bin): hearthd, probe. TAP output;
# the last line is "N passed, N failed[, N skipped]".
# shellcheck disable=SC2016,SC2317  # check's conditions are single-quoted on purpose: evaluated later
# shellcheck source-path=SCRIPTDIR source=lib.sh
set -u
. "$(dirname "$0")/lib.sh"
PROBE=$HB/probe

if [ ! -x "$HEARTHD" ] || [ ! -x "$PROBE" ]; then
    skip "hearthd API" "hearthd or probe not built (run make, or set HEARTH_BIN)"
    finish
fi
if [ "$(id -u)" != 0 ]; then
    skip "hearthd API" "needs root (hearthd runs sandboxes)"
    finish
fi
for t in curl python3; do
    command -v $t >/dev/null || { not_ok "$t present" "the test needs $t (scripts/install-deps)"; finish; }
done
case $PROBE in
/tmp/*) not_ok "probe outside /tmp" "$PROBE: a sandbox's /tmp is its own tmpfs; set HEARTH_BIN elsewhere"; finish ;;
esac

make_workdir hearth-api-test
T0=$(now_ms)
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
SOCK=$WORK/run/hearth.sock
CGROOT=hearth-itest-api-$$
UID_BASE=$((3000000 + ($$ % 10000) * 64))
UID_COUNT=64
TOK1=$(new_token) TOK2=$(new_token) TOK3=$(new_token) TOKA=$(new_token) TOKB=$(new_token)
mkdir -p "$WORK/state" "$WORK/burst" "$WORK/drain" "$WORK/fair" "$WORK/flood"

# write_config FILE MAX_SANDBOXES EXTRA_TENANTS
write_config() {
    cat >"$1" <<EOF
{
  "listen_unix": "$SOCK",
  "listen_http": "127.0.0.1:$PORT",
  "state_dir": "$WORK/state",
  "cgroup_root": "$CGROOT",
  "uid_base": $UID_BASE,
  "uid_count": $UID_COUNT,
  "prewarm_pool": 0,
  "max_sandboxes": $2,
  "max_body_bytes": 1048576,
  "max_connections": 4096,
  "drain_timeout_ms": 10000,
  "tenants": [
    {"name": "t1", "tokens_sha256": ["$(sha256_hex "$TOK1")"], "uids": [0]},
    {"name": "t2", "tokens_sha256": ["$(sha256_hex "$TOK2")"]},
    {"name": "ops", "tokens_sha256": ["$(sha256_hex "$TOKA")"], "admin": true}$3
  ]
}
EOF
}
write_config "$WORK/hearthd.json" 12 ""
LOG=$WORK/hearthd.log

# --- requests -----------------------------------------------------------------------------------
# call VIA METHOD PATH [CURL ARGS...]: VIA is unix (t1 by its uid), unix:TOKEN, tcp (no
# credentials) or tcp:TOKEN. Sets CODE and MS (time taken); the body in $WORK/body, the headers
# in $WORK/hdr.
call() {
    local via=$1 method=$2 path=$3 base out
    shift 3
    local a=(-s -o "$WORK/body" -D "$WORK/hdr" -w '%{http_code} %{time_total}' --max-time 60 -X "$method")
    case $via in
    unix) a+=(--unix-socket "$SOCK"); base=http://x ;;
    unix:*) a+=(--unix-socket "$SOCK" -H "Authorization: Bearer ${via#unix:}"); base=http://x ;;
    tcp) base=$URL ;;
    tcp:*) a+=(-H "Authorization: Bearer ${via#tcp:}"); base=$URL ;;
    esac
    out=$(curl "${a[@]}" "$@" "$base$path")
    CODE=${out%% *}
    MS=$(awk -v t="${out#* }" 'BEGIN { printf "%d", t * 1000 }')
}
V1=tcp:$TOK1 V2=tcp:$TOK2 VA=tcp:$TOKA
body() { cat "$WORK/body"; }
hdr() { grep -i "^$1:" "$WORK/hdr" | head -n 1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//'; }
jbody() { json_get "$WORK/body" "$1"; }
show() { echo "HTTP $CODE in $MS ms: $(head -c 500 "$WORK/body")"; }
# deploy VIA NAME SPEC_JSON: PUT; sets CODE.
deploy() { call "$1" PUT "/v1/functions/$2" --data-binary "$3"; }
# fn_status VIA NAME EXPR: EXPR over the function's entry `f` of GET /v1/status.
fn_status() {
    curl -s --max-time 5 -H "Authorization: Bearer ${1#tcp:}" "$URL/v1/status" >"$WORK/status.json"
    python3 - "$WORK/status.json" "$2" "$3" <<'PY' 2>/dev/null
import json, sys
try:
    f = [f for f in json.load(open(sys.argv[1]))["functions"] if f["name"] == sys.argv[2]][0]
    print(json.dumps(eval(sys.argv[3])))
except Exception:
    sys.exit(1)
PY
}
pool_size() { fn_status "$1" "$2" "sum(f['sandboxes'].values())"; }
metrics() { curl -s --max-time 5 "$URL/metrics"; }
# metric_value NAME_AND_LABELS: the sample's value (0 when absent).
metric_value() {
    metrics | awk -v k="$1" 'index($0, k " ") == 1 { v = $2 } END { print v == "" ? 0 : v }'
}
# within A B PCT: |A - B| <= PCT% of B
within() { awk -v a="$1" -v b="$2" -v p="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(b > 0 && d <= b * p / 100) }'; }

# --- start ---------------------------------------------------------------------------------------
if start_daemon "$WORK/hearthd.json" "$LOG" "$SOCK" "$URL" >"$WORK/start.out"; then
    ok "hearthd starts (/healthz 200 on the socket and on TCP)"
else
    not_ok "hearthd starts" "$(cat "$WORK/start.out")"
    finish
fi

# A second hearthd on the same state_dir (its own socket, port and cgroup root) is refused.
sed -e "s#$SOCK#$WORK/run/second.sock#; s#127.0.0.1:$PORT#127.0.0.1:$(free_port)#; s#$CGROOT#$CGROOT-2#" \
    "$WORK/hearthd.json" >"$WORK/second.json"
timeout 30 "$HB/hearthd" --config "$WORK/second.json" >"$WORK/second.log" 2>&1
rc=$?
check "a second hearthd on the same state_dir exits 1, saying the state is in use" \
    '[ "$rc" = 1 ] && grep -q "in use by another process" "$WORK/second.log"' "exit $rc: $(tail -c 300 "$WORK/second.log")"

# --- scheduler: 200 concurrent calls, max_sandboxes 4 ---------------------------------------------
deploy unix f4 '{"command": ["/bin/sh", "-c", "sleep 0.05; echo ok"], "max_sandboxes": 4, "min_warm": 1,
                 "keep_alive_ms": 1000, "timeout_ms": 20000}'
check "PUT a new function: 201" '[ "$CODE" = 201 ] && [ "$(jbody "d[\"version\"]")" = 1 ]' "$(show)"
for _ in $(seq 1 50); do [ "$(fn_status "$V1" f4 "f['sandboxes']['idle']")" = 1 ] && break; sleep 0.1; done
check "min_warm 1: one sandbox prewarmed at deploy" '[ "$(fn_status "$V1" f4 "f[\"sandboxes\"][\"idle\"]")" = 1 ]' \
    "$(cat "$WORK/status.json")"

# A second hearthd on the same cgroup root (its own state_dir, socket and port) is refused before it
# touches the root: the first one's sandbox cgroups are all still there.
sbx_cgroups() { ls -d /sys/fs/cgroup/*/"$CGROOT"/sbx-* /sys/fs/cgroup/"$CGROOT"/sbx-* 2>/dev/null | sort; }
before=$(sbx_cgroups)
sed -e "s#$SOCK#$WORK/run/third.sock#; s#127.0.0.1:$PORT#127.0.0.1:$(free_port)#; s#$WORK/state#$WORK/state3#" \
    "$WORK/hearthd.json" >"$WORK/third.json"
timeout 30 "$HB/hearthd" --config "$WORK/third.json" >"$WORK/third.log" 2>&1
rc=$?
check "a second hearthd on the same cgroup_root exits 1, saying the root is in use" \
    '[ "$rc" = 1 ] && grep -q "cgroup root \`$CGROOT\` is in use by another hearthd" "$WORK/third.log"' \
    "exit $rc: $(tail -c 300 "$WORK/third.log")"
LOCKFILE=/run/hearth/root-$(echo "$CGROOT" | tr / +).lock
check "... the lock is a root-only file ($LOCKFILE, 0600), which no other user can open and hold" \
    '[ "$(stat -c "%a %U" "$LOCKFILE" 2>&1)" = "600 root" ] && ! setpriv --reuid=65534 --regid=65534 --clear-groups \
        sh -c "exec 3<\"$LOCKFILE\"" 2>/dev/null' "$(stat -c "%a %U" "$LOCKFILE" 2>&1)"
check "... and leaves the first one's sandboxes alone" \
    '[ -n "$before" ] && [ "$(sbx_cgroups)" = "$before" ] &&
     [ "$(fn_status "$V1" f4 "f[\"sandboxes\"][\"idle\"]")" = 1 ]' "before: $before; after: $(sbx_cgroups)"
(
    while [ ! -e "$WORK/burst/done" ]; do
        metrics | awk '/^hearth_sandboxes\{/ && /function="f4"/ { s += $NF } END { print s + 0 }' >>"$WORK/burst/samples"
        sleep 0.05
    done
) &
SAMPLER=$!
bg_track $SAMPLER
curl -s -Z --parallel-max 200 --parallel-immediate --max-time 60 --unix-socket "$SOCK" -X POST -d x \
    -o "$WORK/burst/out_#1" -w '%{http_code}\n' "http://x/v1/functions/f4/invocations?i=[1-200]" \
    >"$WORK/burst/codes" 2>/dev/null
touch "$WORK/burst/done"
wait $SAMPLER
T_BURST=$(now_ms)
n200=$(grep -c '^200$' "$WORK/burst/codes")
nok=$(cat "$WORK/burst/out_"* 2>/dev/null | grep -c '^ok$')
check "200 concurrent calls of a max_sandboxes 4 function: all 200 with the function's output" \
    '[ "$n200" = 200 ] && [ "$nok" = 200 ]' "200s: $n200, outputs ok: $nok; codes: $(sort "$WORK/burst/codes" | uniq -c | tr '\n' ' ')"
maxs=$(sort -n "$WORK/burst/samples" | tail -n 1)
nsamples=$(wc -l <"$WORK/burst/samples")
check "... never more than 4 of its sandboxes (hearth_sandboxes summed over states, $nsamples samples, max ${maxs:-none})" \
    '[ "$nsamples" -ge 3 ] && [ "${maxs:-0}" -ge 1 ] && [ "$maxs" -le 4 ]' "samples: $(sort -n "$WORK/burst/samples" | uniq -c | tr '\n' ' ')"

# --- the status codes -------------------------------------------------------------------------------
deploy unix echo '{"command": ["/bin/cat"], "memory_mb": 64, "timeout_ms": 10000}'
check "PUT echo over the socket (t1 by uid): 201" '[ "$CODE" = 201 ]' "$(show)"
deploy unix echo '{"command": ["/bin/cat"], "memory_mb": 96, "timeout_ms": 10000}'
check "PUT of a changed spec: 200, version 2" '[ "$CODE" = 200 ] && [ "$(jbody "d[\"version\"]")" = 2 ]' "$(show)"
call unix POST /v1/functions/echo/invocations -d world
check "POST invocations over the socket: 200 with the payload echoed" '[ "$CODE" = 200 ] && [ "$(body)" = world ]' "$(show)"
check "... with X-Hearth-Invocation-Id, -Start, -Duration-Ms and -Cpu-Ms" \
    '[ -n "$(hdr X-Hearth-Invocation-Id)" ] && echo "$(hdr X-Hearth-Start)" | grep -Eqx "cold|prewarm|warm" &&
     [ -n "$(hdr X-Hearth-Duration-Ms)" ] && [ -n "$(hdr X-Hearth-Cpu-Ms)" ]' "$(cat "$WORK/hdr")"
call "$V1" POST /v1/functions/echo/invocations -d "over tcp"
check "POST invocations over TCP with t1's token: 200, warm" \
    '[ "$CODE" = 200 ] && [ "$(body)" = "over tcp" ] && [ "$(hdr X-Hearth-Start)" = warm ]' "$(show)" "$(cat "$WORK/hdr")"
call "$V1" GET /v1/functions/echo
check "GET a function: 200, defaults filled in, version and source" \
    '[ "$CODE" = 200 ] && [ "$(jbody "d[\"memory_mb\"], d[\"pids\"], d[\"version\"], d[\"source\"]")" = "[96, 64, 2, \"api\"]" ]' "$(show)"

call unix PUT /v1/functions/bad --data-binary '{"command": ["/bin/cat"],'
check "PUT with malformed JSON: 400, JSON error" '[ "$CODE" = 400 ] && [ -n "$(jbody "d[\"error\"] + d[\"message\"]")" ]' "$(show)"
call unix PUT /v1/functions/bad --data-binary '{"command": ["/bin/cat"], "memory_mb": "x"}'
check "PUT with memory_mb \"x\": 400 naming memory_mb" \
    '[ "$CODE" = 400 ] && jbody "d[\"message\"]" | grep -q memory_mb' "$(show)"
call unix PUT /v1/functions/bad --data-binary '{"name": "other", "command": ["/bin/cat"]}'
check "PUT with a name that is not the URL's: 400" '[ "$CODE" = 400 ] && jbody "d[\"message\"]" | grep -q name' "$(show)"
call unix PUT /v1/functions/bad --data-binary '{"command": ["/bin/cat"], "memory_mb": 32, "frobnicate": 1}'
check "PUT with an unknown key: 400 naming it" '[ "$CODE" = 400 ] && jbody "d[\"message\"]" | grep -q frobnicate' "$(show)"
call unix GET /v1/functions/bad
check "... and nothing was created: GET 404" '[ "$CODE" = 404 ]' "$(show)"

call tcp GET /v1/functions
check "no credentials over TCP: 401, JSON error" '[ "$CODE" = 401 ] && [ "$(jbody "d[\"error\"]")" = unauthorized ]' "$(show)"
call tcp POST /v1/functions/echo/invocations -d x
check "an invocation without credentials over TCP: 401" '[ "$CODE" = 401 ]' "$(show)"
call "tcp:wrong-$TOK1" GET /v1/functions
check "a wrong token over TCP: 401" '[ "$CODE" = 401 ]' "$(show)"
call "unix:wrong-$TOK1" GET /v1/functions
check "a wrong token over the socket (even as uid 0): 401" '[ "$CODE" = 401 ]' "$(show)"
call tcp GET /v1/functions -H "Authorization: Basic dDE6eA=="
check "a non-bearer Authorization: 401" '[ "$CODE" = 401 ]' "$(show)"

call "$V1" POST /v1/functions/nosuch/invocations -d x
check "invoking an unknown function: 404, JSON error" '[ "$CODE" = 404 ] && [ "$(jbody "d[\"error\"]")" = not_found ]' "$(show)"
call "$V1" GET /v1/functions/nosuch
check "GET an unknown function: 404" '[ "$CODE" = 404 ]' "$(show)"
call "$V1" DELETE /v1/functions/nosuch
check "DELETE an unknown function: 404" '[ "$CODE" = 404 ]' "$(show)"

# 413: refused from Content-Length, before any body is read.
out=$(curl -s -o "$WORK/body" -w '%{http_code} %{time_total}' --max-time 5 --unix-socket "$SOCK" -X POST \
    -H 'Content-Length: 10000000000' http://x/v1/functions/echo/invocations)
c=${out%% *} t=${out#* }
check "Content-Length: 10000000000 and no body: 413 at once ($t s)" \
    '[ "$c" = 413 ] && awk -v t="$t" "BEGIN { exit !(t < 2) }"' "got: $out"
head -c 2000000 /dev/zero | tr '\0' a >"$WORK/big"
call "$V1" POST /v1/functions/echo/invocations --data-binary @"$WORK/big"
check "a 2 MB body over max_body_bytes 1 MiB: 413" '[ "$CODE" = 413 ]' "$(show)"
head -c 1000000 /dev/urandom >"$WORK/near"
call "$V1" POST /v1/functions/echo/invocations --data-binary @"$WORK/near"
check "a 1 MB body under max_body_bytes: 200, echoed byte for byte" '[ "$CODE" = 200 ] && cmp -s "$WORK/body" "$WORK/near"' "HTTP $CODE"

deploy unix fail '{"command": ["/bin/sh", "-c", "echo partial; echo oops-stderr-tail >&2; exit 3"], "timeout_ms": 10000}'
call unix POST /v1/functions/fail/invocations -d x
check "a function exiting 3: 502 function_failed with exit_status 3 and its stderr tail" \
    '[ "$CODE" = 502 ] && [ "$(jbody "d[\"error\"], d[\"exit_status\"]")" = "[\"function_failed\", 3]" ] &&
     jbody "d[\"stderr\"]" | grep -q oops-stderr-tail' "$(show)"

deploy unix oom "{\"command\": [\"$PROBE\", \"memhog\", \"200\"], \"memory_mb\": 32, \"timeout_ms\": 20000}"
call unix POST /v1/functions/oom/invocations -d x
check "probe memhog 200 with memory_mb 32: 502 out_of_memory" \
    '[ "$CODE" = 502 ] && [ "$(jbody "d[\"error\"]")" = out_of_memory ]' "$(show)"

deploy unix hang "{\"command\": [\"$PROBE\", \"hang\"], \"timeout_ms\": 500}"
call unix POST /v1/functions/hang/invocations -d x
check "probe hang with timeout_ms 500: 504 timeout in under 2 s ($MS ms)" \
    '[ "$CODE" = 504 ] && [ "$(jbody "d[\"error\"]")" = timeout ] && [ "$MS" -lt 2000 ] && [ "$MS" -ge 450 ]' "$(show)"
left=
for _ in $(seq 1 20); do
    left=$(uid_range_procs "$UID_BASE" "$UID_COUNT" | grep 'probe hang')
    [ -z "$left" ] && break
    sleep 0.1
done
check "... and no process of that sandbox remains (the hang and its grandchild)" '[ -z "$left" ]' "$left"


# --- tenants apart ----------------------------------------------------------------------------------
# t2's view of t1's `secret` must be byte for byte the view of a missing function.
snap() { # VIA METHOD PATH -> code, headers without Date, body
    call "$@" -d x
    echo "$CODE"
    grep -vi '^date:' "$WORK/hdr"
    body
}
for m in GET DELETE; do snap "$V2" $m /v1/functions/secret >"$WORK/missing.$m"; done
snap "$V2" POST /v1/functions/secret/invocations >"$WORK/missing.POST"
deploy unix secret '{"command": ["/bin/echo", "t1-only"]}'
[ "$CODE" = 201 ] || not_ok "deploy t1's secret" "$(show)"
call "$V2" GET /v1/functions
check "t2's GET /v1/functions does not list t1's functions" \
    '[ "$CODE" = 200 ] && [ "$(jbody "[f[\"name\"] for f in d[\"functions\"]]")" = "[]" ]' "$(show)"
call "$V1" GET /v1/functions
check "t1's list has its own" '[ "$CODE" = 200 ] && jbody "sorted(f[\"name\"] for f in d[\"functions\"])" | grep -q "\"secret\""' "$(show)"
for m in GET DELETE; do
    snap "$V2" $m /v1/functions/secret >"$WORK/foreign.$m"
    check "t2's $m of t1's function: 404, exactly as a missing one" \
        '[ "$(head -n 1 "$WORK/foreign.$m")" = 404 ] && cmp -s "$WORK/missing.$m" "$WORK/foreign.$m"' \
        "$(diff "$WORK/missing.$m" "$WORK/foreign.$m")"
done
snap "$V2" POST /v1/functions/secret/invocations >"$WORK/foreign.POST"
check "t2's invocation of t1's function: 404, exactly as a missing one" \
    '[ "$(head -n 1 "$WORK/foreign.POST")" = 404 ] && cmp -s "$WORK/missing.POST" "$WORK/foreign.POST"' \
    "$(diff "$WORK/missing.POST" "$WORK/foreign.POST")"
call "$V2" GET /v1/tenants/t1/functions/secret
check "t2 through /v1/tenants/t1/functions/secret: 404" '[ "$CODE" = 404 ]' "$(show)"
call "$V2" GET /v1/tenants/t1/usage
check "t2 reading t1's usage: 404" '[ "$CODE" = 404 ]' "$(show)"
call "$V1" POST /v1/functions/secret/invocations
check "t1's function is still there and answers t1" '[ "$CODE" = 200 ] && [ "$(body)" = t1-only ]' "$(show)"
deploy "$V2" secret '{"command": ["/bin/echo", "t2-own"]}'
check "t2 deploys its own function of the same name: 201" '[ "$CODE" = 201 ]' "$(show)"
call "$V2" POST /v1/functions/secret/invocations
c2=$CODE b2=$(body)
call "$V1" POST /v1/functions/secret/invocations
check "the same name, two tenants: each calls its own" '[ "$c2" = 200 ] && [ "$b2" = t2-own ] && [ "$CODE" = 200 ] && [ "$(body)" = t1-only ]' \
    "t2: $c2 $b2; t1: $(show)"

call "$VA" GET /v1/tenants/t1/functions
check "admin lists t1's functions under /v1/tenants/t1/functions" \
    '[ "$CODE" = 200 ] && jbody "[f[\"name\"] for f in d[\"functions\"] if f[\"tenant\"] == \"t1\"]" | grep -q "\"secret\""' "$(show)"
call "$VA" GET /v1/tenants/t1/functions/secret
check "admin GETs t1's function" '[ "$CODE" = 200 ] && [ "$(jbody "d[\"tenant\"]")" = t1 ]' "$(show)"
call "$VA" POST /v1/tenants/t1/functions/secret/invocations
check "admin invokes t1's function" '[ "$CODE" = 200 ] && [ "$(body)" = t1-only ]' "$(show)"
call "$VA" PUT /v1/tenants/t2/functions/adm --data-binary '{"command": ["/bin/echo", "by-admin"]}'
check "admin PUTs a function for t2: 201, tenant t2" '[ "$CODE" = 201 ] && [ "$(jbody "d[\"tenant\"]")" = t2 ]' "$(show)"
call "$V2" POST /v1/functions/adm/invocations
check "t2 calls the function the admin deployed for it" '[ "$CODE" = 200 ] && [ "$(body)" = by-admin ]' "$(show)"
call "$VA" DELETE /v1/tenants/t2/functions/adm
check "admin DELETEs t2's function: 204" '[ "$CODE" = 204 ]' "$(show)"
call "$V2" GET /v1/functions/adm
check "... gone for t2" '[ "$CODE" = 404 ]' "$(show)"
call "$VA" GET /v1/tenants/t1/usage
check "admin reads t1's usage" '[ "$CODE" = 200 ] && [ "$(jbody "d[\"tenant\"]")" = t1 ]' "$(show)"
call "$V1" PUT /v1/tenants/t2/functions/x --data-binary '{"command": ["/bin/cat"]}'
check "a tenant deploying for another tenant: refused (4xx), nothing created" '[ "${CODE:0:1}" = 4 ]' "$(show)"
call "$V2" GET /v1/functions/x
[ "$CODE" = 404 ] || not_ok "t1 created a function for t2" "$(show)"

# --- CPU: usage and metrics against the probe's getrusage --------------------------------------------
deploy unix spin "{\"command\": [\"$PROBE\", \"spin\", \"200\"], \"timeout_ms\": 20000}"
call "$V1" GET /v1/tenants/t1/usage
u0=$(jbody "d['cpu_ms']")
m0=$(metric_value 'hearth_tenant_cpu_seconds_total{tenant="t1"}')
f0=$(metric_value 'hearth_function_cpu_seconds_total{tenant="t1",function="spin"}')
call unix POST /v1/functions/spin/invocations
rus_ms=$(body | awk -F= '$1 == "rusage_ns" { printf "%.3f", $2 / 1e6 }')
hcpu=$(hdr X-Hearth-Cpu-Ms)
if [ "$CODE" != 200 ] || [ -z "$rus_ms" ]; then not_ok "probe spin 200 runs" "$(show)"; fi
call "$V1" GET /v1/tenants/t1/usage
u1=$(jbody "d['cpu_ms']")
m1=$(metric_value 'hearth_tenant_cpu_seconds_total{tenant="t1"}')
f1=$(metric_value 'hearth_function_cpu_seconds_total{tenant="t1",function="spin"}')
du=$((u1 - u0))
dm=$(awk -v a="$m0" -v b="$m1" 'BEGIN { printf "%.3f", (b - a) * 1000 }')
df=$(awk -v a="$f0" -v b="$f1" 'BEGIN { printf "%.3f", (b - a) * 1000 }')
note "probe spin 200: getrusage $rus_ms ms; X-Hearth-Cpu-Ms $hcpu; usage cpu_ms +$du; tenant metric +$dm ms; function metric +$df ms"
check "the probe's CPU (${rus_ms} ms) in /v1/tenants/t1/usage cpu_ms within 5% (+$du ms)" 'within "$du" "$rus_ms" 5'
check "... in hearth_tenant_cpu_seconds_total{tenant=\"t1\"} within 5% (+$dm ms)" 'within "$dm" "$rus_ms" 5'
check "... in hearth_function_cpu_seconds_total and X-Hearth-Cpu-Ms within 5%" \
    'within "$df" "$rus_ms" 5 && within "$hcpu" "$rus_ms" 5'

# --- /metrics -------------------------------------------------------------------------------------------
metrics >"$WORK/metrics.txt"
if command -v promtool >/dev/null; then
    if promtool check metrics <"$WORK/metrics.txt" >"$WORK/promtool.out" 2>&1; then
        ok "promtool check metrics passes on /metrics"
    else
        not_ok "promtool check metrics passes on /metrics" "$(head -n 20 "$WORK/promtool.out")"
    fi
else
    skip "promtool check metrics" "promtool not installed"
fi
missing=
for name in 'hearth_invocations_total{tenant="t1",function="echo",start="warm",outcome="ok"}' \
    'hearth_invocations_total{tenant="t1",function="fail",start="cold",outcome="error"}' \
    'hearth_invocations_total{tenant="t1",function="hang",start="cold",outcome="timeout"}' \
    'hearth_invocation_duration_seconds_bucket{tenant="t1",function="echo",le="+Inf"}' \
    'hearth_invocation_duration_seconds_sum{tenant="t1",function="echo"}' \
    'hearth_invocation_duration_seconds_count{tenant="t1",function="echo"}' \
    'hearth_cold_start_seconds_bucket{start="cold",le="+Inf"}' \
    'hearth_queue_depth{tenant="t1",function="echo"}' \
    'hearth_sandboxes{tenant="t1",function="echo",state="idle"}' \
    'hearth_tenant_cpu_seconds_total{tenant="t1"}' 'hearth_tenant_cpu_seconds_total{tenant="t2"}' \
    'hearth_function_cpu_seconds_total{tenant="t1",function="spin"}' \
    'hearth_scaler_desired{tenant="t1",function="f4"}' 'hearth_scaler_panic{tenant="t1",function="f4"}' \
    'hearth_open_connections' 'hearth_uptime_seconds' 'hearth_build_info{' 'hearth_host_sandboxes{kind="all"}'; do
    grep -qF "$name" "$WORK/metrics.txt" || missing="$missing $name"
done
check "the metrics of issue 3 are present after these invocations" '[ -z "$missing" ]' "missing:$missing"
for t in counter:hearth_invocations_total histogram:hearth_invocation_duration_seconds \
    histogram:hearth_cold_start_seconds gauge:hearth_queue_depth gauge:hearth_sandboxes \
    counter:hearth_tenant_cpu_seconds_total counter:hearth_function_cpu_seconds_total; do
    grep -qx "# TYPE ${t#*:} ${t%%:*}" "$WORK/metrics.txt" || missing="$missing ${t#*:}(${t%%:*})"
done
check "... with their TYPEs (counter, histogram, gauge)" '[ -z "$missing" ]' "wrong or missing:$missing"
n_ok=$(awk '/^hearth_invocations_total\{tenant="t1",function="f4",/ && /outcome="ok"/ { s += $NF } END { print s + 0 }' "$WORK/metrics.txt")
check "hearth_invocations_total counts the 200 calls of f4 ($n_ok)" '[ "$n_ok" = 200 ]'

# --- scale down: a small burst returns to min_warm after keep_alive_ms -----------------------------------
deploy unix mw '{"command": ["/bin/sh", "-c", "sleep 0.3; echo ok"], "max_sandboxes": 4, "min_warm": 1,
                 "keep_alive_ms": 1000, "timeout_ms": 10000}'
sleep 1
curl -s -Z --parallel-max 4 --parallel-immediate --max-time 30 --unix-socket "$SOCK" -X POST \
    -o /dev/null -w '%{http_code}\n' "http://x/v1/functions/mw/invocations?i=[1-4]" >"$WORK/mw.codes" 2>/dev/null
peak=$(pool_size "$V1" mw)
tb=$(now_ms)
back=
while [ $(($(now_ms) - tb)) -lt 8000 ]; do
    [ "$(pool_size "$V1" mw)" = 1 ] && { back=$(($(now_ms) - tb)); break; }
    sleep 0.2
done
check "4 concurrent calls of a min_warm 1, keep_alive_ms 1000 function: back at 1 sandbox (after ${back:-more than 8000} ms; $peak right after)" \
    '[ -n "$back" ] && [ "$(grep -c "^200$" "$WORK/mw.codes")" = 4 ]' "$(cat "$WORK/status.json")"

# --- the sum of per-tenant CPU equals the cgroups' ---------------------------------------------------------
# Under cgroup_root, the root cgroup's usage includes every sandbox ever under it (v1 cpuacct
# charges each ancestor; v2 folds a removed child into its parent), so its delta over a workload
# is what the sandboxes burnt, removed ones included. Compare it with the delta of the tenants'
# cpu_ms + overhead_cpu_ms (invocations + start-up, idle, tear-down) once everything is idle.
usage_total() {
    curl -s --max-time 5 -H "Authorization: Bearer $TOKA" "$URL/v1/usage" >"$WORK/usage.json"
    json_get "$WORK/usage.json" "sum(t['cpu_ms'] + t['overhead_cpu_ms'] for t in d['tenants'])"
}
deploy unix cpua "{\"command\": [\"$PROBE\", \"spin\", \"100\"], \"timeout_ms\": 20000}"
deploy "$V2" cpub "{\"command\": [\"$PROBE\", \"spin\", \"100\"], \"timeout_ms\": 20000}"
sleep 0.3
r0=$(cgroup_cpu_ns "$CGROOT")
a0=$(usage_total)
for i in 1 2 3 4 5 6 7 8; do
    curl -s -o /dev/null --max-time 20 --unix-socket "$SOCK" -X POST http://x/v1/functions/cpua/invocations &
    p=$!
    curl -s -o /dev/null --max-time 20 -H "Authorization: Bearer $TOK2" -X POST "$URL/v1/functions/cpub/invocations"
    wait $p    # not a bare `wait`: the daemon is a child too
done
call unix DELETE /v1/functions/cpua
call "$V2" DELETE /v1/functions/cpub
sleep 0.5
r1=$(cgroup_cpu_ns "$CGROOT")
a1=$(usage_total)
if [ -z "$r0" ] || [ -z "$r1" ]; then
    not_ok "the sum of per-tenant CPU equals the cgroups'" "no CPU figure for cgroup $CGROOT"
else
    dr=$(awk -v a="$r0" -v b="$r1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
    da=$((a1 - a0))
    check "the sum of per-tenant CPU-ms (+$da ms: cpu_ms + overhead_cpu_ms) equals the sandbox cgroups' usage (+$dr ms) within 1%" \
        'within "$da" "$dr" 1'
fi

# --- back to min_warm after the 200-call burst ---------------------------------------------------------
# The scaler averages over a 60 s stable window and never scales down while a burst is still in it:
# so the pool shrinks to min_warm within the stable window + keep_alive_ms (+ slack) after the burst.
back=
while [ $(($(now_ms) - T_BURST)) -lt 75000 ]; do
    [ "$(pool_size "$V1" f4)" = 1 ] && { back=$(($(now_ms) - T_BURST)); break; }
    sleep 0.5
done
check "after the 200-call burst f4 is back at min_warm 1 (after ${back:-more than 75000} ms; stable window 60 s + keep_alive 1 s)" \
    '[ -n "$back" ]' "$(cat "$WORK/status.json")"

# --- SIGTERM under load ------------------------------------------------------------------------------
deploy unix slow '{"command": ["/bin/sh", "-c", "sleep 0.3; echo done"], "max_sandboxes": 10, "timeout_ms": 10000}'
# A keep-alive connection opened before the drain, for /readyz during it.
exec 7<>"/dev/tcp/127.0.0.1/$PORT"
# get_on_7 PATH: a GET on the kept connection; prints the status code.
get_on_7() {
    local line len=0 code
    printf 'GET %s HTTP/1.1\r\nHost: x\r\n\r\n' "$1" >&7 || { echo none; return; }
    IFS= read -r -t 5 line <&7 || { echo none; return; }
    code=$(echo "$line" | awk '{ print $2 }')
    while IFS= read -r -t 5 line <&7; do
        line=${line%$'\r'}
        [ -z "$line" ] && break
        case ${line,,} in content-length:*) len=${line#*:}; len=${len// /} ;; esac
    done
    [ "$len" -gt 0 ] && read -r -t 5 -N "$len" line <&7
    echo "$code"
}
r=$(get_on_7 /readyz)
check "/readyz: 200 before the drain" '[ "$r" = 200 ]' "got $r"
curl -s -Z --parallel-max 20 --parallel-immediate --max-time 30 --unix-socket "$SOCK" -X POST -d x \
    -o "$WORK/drain/out_#1" -w '%{http_code}\n' "http://x/v1/functions/slow/invocations?i=[1-20]" \
    >"$WORK/drain/codes" 2>/dev/null &
LOAD=$!
bg_track $LOAD
accepted=
for _ in $(seq 1 100); do
    accepted=$(fn_status "$V1" slow "f['in_flight'] + f['queued']")
    [ "$accepted" = 20 ] && break
    sleep 0.02
done
kill -TERM "$DAEMON_PID"
sleep 0.05
r=$(get_on_7 /readyz)
check "/readyz: 503 while draining (on a connection opened before)" '[ "$r" = 503 ]' "got $r"
exec 7>&-
call tcp GET /healthz
check "no new connection is accepted while draining" '[ "$CODE" = 000 ]' "$(show)"
wait $LOAD
n200=$(grep -c '^200$' "$WORK/drain/codes")
ndone=$(cat "$WORK/drain/out_"* 2>/dev/null | grep -c '^done$')
check "SIGTERM with 20 calls accepted ($accepted in flight or queued): every one answered 200 \"done\"" \
    '[ "$n200" = 20 ] && [ "$ndone" = 20 ]' "200s: $n200, done: $ndone; codes: $(sort "$WORK/drain/codes" | uniq -c | tr '\n' ' ')"
wait_daemon_exit 20
check "hearthd exits 0 after the drain" '[ "$DAEMON_RC" = 0 ]' "exit: $DAEMON_RC" "$(tail -n 5 "$LOG")"
left=$(cgroup_leftovers "$CGROOT")
check "no cgroup left under cgroup_root $CGROOT" '[ -z "$left" ]' "$left"
left=$(uid_range_procs "$UID_BASE" "$UID_COUNT")
check "no process of the daemon's uid range left" '[ -z "$left" ]' "$left"

# === a restart: the same state_dir, the host capped at 2 sandboxes ============================================
write_config "$WORK/hearthd.json" 2 ",
    {\"name\": \"tb\", \"tokens_sha256\": [\"$(sha256_hex "$TOKB")\"], \"cpu_ms_per_minute\": 50}"
if start_daemon "$WORK/hearthd.json" "$LOG" "$SOCK" "$URL" >"$WORK/start.out"; then
    ok "hearthd starts again on the same state_dir"
else
    not_ok "hearthd starts again" "$(cat "$WORK/start.out")"
    finish
fi
call "$V1" GET /v1/functions
check "after the restart t1 still has its API-deployed functions" \
    '[ "$CODE" = 200 ] && [ "$(jbody "sorted(f[\"name\"] for f in d[\"functions\"])")" = "[\"echo\", \"f4\", \"fail\", \"hang\", \"mw\", \"oom\", \"secret\", \"slow\", \"spin\"]" ]' "$(show)"
call "$V1" GET /v1/functions/echo
check "... with their spec and version" '[ "$CODE" = 200 ] && [ "$(jbody "d[\"version\"], d[\"memory_mb\"]")" = "[2, 96]" ]' "$(show)"
call unix POST /v1/functions/echo/invocations -d again
check "... and invoking one works" '[ "$CODE" = 200 ] && [ "$(body)" = again ]' "$(show)"
call "$V2" POST /v1/functions/secret/invocations
check "... t2's too" '[ "$CODE" = 200 ] && [ "$(body)" = t2-own ]' "$(show)"

# --- fairness with the host capped at 2 ----------------------------------------------------------------------
deploy unix sl1 '{"command": ["/bin/sh", "-c", "sleep 0.1; echo ok"], "timeout_ms": 20000}'
deploy "$V2" sl2 '{"command": ["/bin/sh", "-c", "sleep 0.1; echo ok"], "timeout_ms": 20000}'
call unix POST /v1/functions/sl1/invocations
call unix POST /v1/functions/sl1/invocations
TINV=$MS
call "$V2" POST /v1/functions/sl2/invocations
TCOLD=$MS
curl -s -Z --parallel-max 50 --parallel-immediate --max-time 60 --unix-socket "$SOCK" -X POST \
    -o "$WORK/fair/out_#1" -w '%{http_code}\n' "http://x/v1/functions/sl1/invocations?i=[1-50]" \
    >"$WORK/fair/codes" 2>/dev/null &
FLOOD=$!
bg_track $FLOOD
for _ in $(seq 1 100); do
    q=$(fn_status "$V1" sl1 "f['queued']")
    [ "${q:-0}" -ge 40 ] && break
    sleep 0.02
done
call "$V2" POST /v1/functions/sl2/invocations
T2=$MS C2=$CODE S2=$(hdr X-Hearth-Start)
wait $FLOOD
n200=$(grep -c '^200$' "$WORK/fair/codes")
note "sl1 warm call ${TINV} ms; sl2 cold call ${TCOLD} ms; t2's call behind t1's flood of 50 (queue ${q:-?}): ${T2} ms ($S2)"
check "t1 flooding 50 calls (host max_sandboxes 2): all 50 succeed" '[ "$n200" = 50 ]' "$(sort "$WORK/fair/codes" | uniq -c | tr '\n' ' ')"
check "... and t2's single call is not held back by more than two invocation times ($T2 ms - a cold call's $TCOLD ms <= 2 x $TINV ms)" \
    '[ "$C2" = 200 ] && [ $((T2 - TCOLD)) -le $((2 * TINV)) ]'

# --- 429: a full queue ------------------------------------------------------------------------------------
# The scheduler's queue holds 1000 per function (not configurable); one sandbox busy for 2 s,
# 1100 calls at once: 1 runs, 1000 wait, the rest are refused 429 with Retry-After.
deploy unix qf '{"command": ["/bin/sh", "-c", "sleep 2; echo ok"], "max_sandboxes": 1, "timeout_ms": 20000}'
for i in 1 2 3 4; do
    curl -s -Z --parallel-max 275 --parallel-immediate --max-time 60 -H "Authorization: Bearer $TOK1" -X POST \
        -o /dev/null -w '%{http_code} %header{retry-after}\n' "$URL/v1/functions/qf/invocations?i=[1-275]" \
        >"$WORK/flood/codes.$i" 2>/dev/null &
    bg_track $!
    eval "FL$i=$!"
done
# (curl's -w lines reach their files only at its exit: watch the daemon's metrics instead.)
q=0 rej=0
tf=$(now_ms)
while [ $(($(now_ms) - tf)) -lt 20000 ]; do
    metrics >"$WORK/flood/metrics"
    q=$(awk 'index($0, "hearth_queue_depth{tenant=\"t1\",function=\"qf\"} ") == 1 { print $2 }' "$WORK/flood/metrics")
    rej=$(awk 'index($0, "hearth_rejected_total{tenant=\"t1\",function=\"qf\",reason=\"queue_full\"} ") == 1 { print $2 }' \
        "$WORK/flood/metrics")
    [ $((${q:-0} + ${rej:-0})) -ge 1099 ] && break
    sleep 0.2
done
note "the queue of qf: ${q:-?} waiting, ${rej:-0} rejected as queue_full, after $(($(now_ms) - tf)) ms"
call unix DELETE /v1/functions/qf
[ "$CODE" = 204 ] || not_ok "DELETE of the flooded function: 204" "$(show)"
wait "$FL1" "$FL2" "$FL3" "$FL4"
cat "$WORK/flood/codes."* >"$WORK/flood/all"
n429=$(grep -c '^429' "$WORK/flood/all")
n429ra=$(grep -Ec '^429 [0-9]+$' "$WORK/flood/all")
n404=$(grep -c '^404' "$WORK/flood/all")
n200=$(grep -c '^200' "$WORK/flood/all")
codes=$(cut -d' ' -f1 "$WORK/flood/all" | sort | uniq -c | tr '\n' ' ')
check "1100 calls at a max_sandboxes 1 function with a full queue: 429s ($n429), each with Retry-After" \
    '[ "$n429" -ge 1 ] && [ "$n429" = "$n429ra" ]' "codes: $codes"
check "... the queue held 1000 (the ones that ran: 200; queued when it was deleted: 404), every call answered" \
    '[ $((n200 + n404 + n429)) = 1100 ] && [ $((n200 + n404)) -ge 1000 ] && [ "$n404" -le 1000 ] && [ "$n404" -ge 900 ]' "codes: $codes"
check "hearth_rejected_total{reason=\"queue_full\"} counted them (${rej:-0})" '[ "${rej:-0}" = "$n429" ]'

# --- 429: a CPU budget ---------------------------------------------------------------------------------------
deploy "tcp:$TOKB" burn "{\"command\": [\"$PROBE\", \"spin\", \"100\"], \"timeout_ms\": 20000}"
call "tcp:$TOKB" POST /v1/functions/burn/invocations
c1=$CODE
call "tcp:$TOKB" POST /v1/functions/burn/invocations
check "a tenant with cpu_ms_per_minute 50 that spent 100 ms: 429 cpu_budget with Retry-After" \
    '[ "$c1" = 200 ] && [ "$CODE" = 429 ] && [ "$(jbody "d[\"error\"]")" = cpu_budget ] && [ -n "$(hdr Retry-After)" ]' \
    "first: $c1; $(show); Retry-After: $(hdr Retry-After)"

# --- SIGHUP reloads tenants ---------------------------------------------------------------------------------
call "tcp:$TOK3" GET /v1/functions
c0=$CODE
write_config "$WORK/hearthd.json" 2 ",
    {\"name\": \"tb\", \"tokens_sha256\": [\"$(sha256_hex "$TOKB")\"], \"cpu_ms_per_minute\": 50},
    {\"name\": \"t3\", \"tokens_sha256\": [\"$(sha256_hex "$TOK3")\"]}"
kill -HUP "$DAEMON_PID"
for _ in $(seq 1 50); do
    call "tcp:$TOK3" GET /v1/functions
    [ "$CODE" = 200 ] && break
    sleep 0.1
done
check "SIGHUP: a tenant added to the config works (401 before, 200 after)" '[ "$c0" = 401 ] && [ "$CODE" = 200 ]' \
    "before: $c0; $(show)"
deploy "tcp:$TOK3" hi '{"command": ["/bin/echo", "t3"]}'
call "tcp:$TOK3" POST /v1/functions/hi/invocations
check "... and can deploy and call" '[ "$CODE" = 200 ] && [ "$(body)" = t3 ]' "$(show)"
call unix POST /v1/functions/echo/invocations -d still
check "... and the others still work" '[ "$CODE" = 200 ] && [ "$(body)" = still ]' "$(show)"

# --- the end ---------------------------------------------------------------------------------------------------
stop_daemon 20
check "SIGTERM: hearthd exits 0" '[ "$DAEMON_RC" = 0 ]' "exit: $DAEMON_RC" "$(tail -n 5 "$LOG")"
left=$(cgroup_leftovers "$CGROOT")
check "no cgroup left under $CGROOT" '[ -z "$left" ]' "$left"
check "... nor its lock file" '[ ! -e "$LOCKFILE" ]' "$(ls -l "$LOCKFILE" 2>&1)"
left=$(uid_range_procs "$UID_BASE" "$UID_COUNT")
check "no process of the daemon's uid range left" '[ -z "$left" ]' "$left"
note "took $(( ($(now_ms) - T0) / 1000 )) s"
finish
