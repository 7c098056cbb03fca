#!/bin/bash
# The `http` protocol (issue 5): the function's command is an HTTP server on
# 127.0.0.1:8080 inside its sandbox; hearthd proxies each invocation to it
# over one keep-alive connection per sandbox. Deploys tests/runtimes/http_server
# and invokes it through the hearth API (Unix socket and TCP), the CLI, the
# Lambda-compatible endpoint and async invocations; checks the round trip of
# method, path, query, headers and body, the headers that must not pass,
# status and headers back, keep-alive; then a server that never listens, one
# that exits at start, one that starts slowly, a crash and an exit mid-call,
# a hang past the timeout, answers over the size cap, CPU charged to the
# tenant, a stdio function beside it, and a clean SIGTERM.
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { skip "http protocol" "needs root"; finish; }
[ -x "$HEARTHD" ] || { skip "http protocol" "hearthd not built"; finish; }
make_workdir hearth-http

# Sandboxes do not see the host's /tmp: the server goes to a fresh directory in /var/tmp.
RT=$(mktemp -d /var/tmp/hearth-http-rt.XXXXXX) || { not_ok "mktemp in /var/tmp"; finish; }
trap 'lib_cleanup; rm -rf "$RT"' EXIT
chmod 755 "$RT"
if out=$(gcc -O2 -static -o "$RT/http_server" "$REPO/tests/runtimes/http_server.c" 2>&1); then
    ok "http_server.c builds static"
else
    not_ok "http_server.c builds static" "$out"
    finish
fi
SRV=$RT/http_server

PORT=$(free_port)
URL=http://127.0.0.1:$PORT
SOCK=$WORK/run/hearth.sock
TOKEN=$(new_token)
AKID=AKIAHEARTHHTTP$(printf '%06d' $((RANDOM * 32768 % 1000000)))
SECRET=$(new_token)
CG=hearth-http-$$
UID_BASE=5310000
MAX_BODY=1048576
cat >"$WORK/hearthd.json" <<EOT
{"listen_unix": "$SOCK", "listen_http": "127.0.0.1:$PORT", "state_dir": "$WORK/state",
 "functions_dir": "", "cgroup_root": "$CG", "uid_base": $UID_BASE, "uid_count": 256, "log_level": "warn",
 "max_body_bytes": $MAX_BODY, "drain_timeout_ms": 1500,
 "tenants": [{"name": "t1", "uids": [0], "tokens_sha256": ["$(sha256_hex "$TOKEN")"],
              "aws_keys": [{"access_key_id": "$AKID", "secret_access_key": "$SECRET"}]}]}
EOT
start_daemon "$WORK/hearthd.json" "$WORK/log" "$SOCK" "$URL" || { not_ok "hearthd starts" "$(tail -n 20 "$WORK/log")"; finish; }
ok "hearthd starts"
S=(curl -s --max-time 60 --unix-socket "$SOCK")

# deploy NAME SPEC-JSON: sets DCODE
deploy() {
    DCODE=$("${S[@]}" -o "$WORK/deploy.out" -w '%{http_code}' -X PUT -d "$2" "http://x/v1/functions/$1")
    [ "$DCODE" = 201 ] || [ "$DCODE" = 200 ] || note "deploy $1 answered $DCODE: $(cat "$WORK/deploy.out")"
}
# call [CURL-ARGS...] URL: sets CODE, BODY, START, MS; headers in $WORK/h, body in $WORK/b.
call() {
    local t0
    rm -f "$WORK/h" "$WORK/b"
    : >"$WORK/b"
    t0=$(now_ms)
    CODE=$(curl -s --max-time 60 -D "$WORK/h" -o "$WORK/b" -w '%{http_code}' "$@")
    MS=$(($(now_ms) - t0))
    BODY=$(cat "$WORK/b")
    START=$(hdr X-Hearth-Start)
}
# inv NAME SUBPATH [CURL-ARGS...]: call over the Unix socket, to .../invocations$SUBPATH.
inv() {
    local f=$1 p=$2
    shift 2
    call --unix-socket "$SOCK" "$@" "http://x/v1/functions/$f/invocations$p"
}
hdr() { sed -n "s/^$1:[[:space:]]*//Ip" "$WORK/h" | tr -d '\r' | head -n 1; }
bget() { json_get "$WORK/b" "$1"; }
what() { echo "HTTP $CODE in ${MS} ms, X-Hearth-Start: $START, body: $(head -c 600 "$WORK/b")"; }

deploy web "{\"protocol\": \"http\", \"command\": [\"$SRV\"], \"timeout_ms\": 5000}"
check "deploy of an http function answers 201" "[ '$DCODE' = 201 ]" "$(cat "$WORK/deploy.out")"
check "its spec says protocol http" "[ \"\$(json_get '$WORK/deploy.out' 'd[\"protocol\"]')\" = http ]" \
    "$(cat "$WORK/deploy.out")"
deploy web-conc "{\"protocol\": \"http\", \"command\": [\"$SRV\"], \"concurrency\": 2}"
check "concurrency 2 is refused for http (400 naming the key)" \
    "[ '$DCODE' = 400 ] && grep -q 'concurrency' '$WORK/deploy.out'" "HTTP $DCODE: $(cat "$WORK/deploy.out")"

# --- the round trip over the Unix socket ------------------------------------------------------
inv web '/a/b?x=1&y=%20z' --data-binary 'hello body' -H 'X-Foo: bar' -H "Authorization: Bearer $TOKEN" \
    -H 'Connection: X-Drop' -H 'X-Drop: 1' -H 'Keep-Alive: timeout=5' -H 'TE: trailers' -H 'Upgrade: h2c' \
    -H 'Proxy-Authorization: Basic Zm9v' -H 'X-Hearth-Invocation-Id: spoofed'
IID=$(hdr X-Hearth-Invocation-Id)
check "first call: 200, cold" "[ '$CODE' = 200 ] && [ '$START' = cold ]" "$(what)"
check "method, path below .../invocations, raw query and body reach the server" \
    "[ \"\$(bget 'd[\"method\"]')\" = POST ] && [ \"\$(bget 'd[\"path\"]')\" = /a/b ] && [ \"\$(bget 'd[\"query\"]')\" = 'x=1&y=%20z' ] && [ \"\$(bget 'd[\"body\"]')\" = 'hello body' ]" \
    "$(what)"
check "the caller's end-to-end header (X-Foo) reaches the server" "[ \"\$(bget 'd[\"headers\"][\"x-foo\"]')\" = bar ]" "$(what)"
check "Authorization (the tenant's hearth token) is not forwarded" \
    "[ \"\$(bget '\"authorization\" in d[\"headers\"]')\" = false ]" "$(what)"
check "hop-by-hop headers (Connection and what it names, Keep-Alive, TE, Upgrade, Proxy-Authorization) are not forwarded" \
    "[ \"\$(bget 'any(k in d[\"headers\"] for k in (\"x-drop\", \"keep-alive\", \"te\", \"upgrade\", \"proxy-authorization\"))')\" = false ] && [ \"\$(bget 'd[\"headers\"].get(\"connection\", \"keep-alive\")')\" = keep-alive ]" \
    "$(what)"
check "X-Hearth-Invocation-Id seen by the server is hearth's (not the caller's spoofed one), with X-Hearth-Function" \
    "[ -n '$IID' ] && [ \"\$(bget 'd[\"headers\"][\"x-hearth-invocation-id\"]')\" = '$IID' ] && [ \"\$(bget 'd[\"headers\"][\"x-hearth-function\"]')\" = web ]" \
    "id $IID; $(what)"
check "the server runs with PORT=8080 and HEARTH_FUNCTION" \
    "[ \"\$(bget 'd[\"port_env\"]')\" = 8080 ] && [ \"\$(bget 'd[\"function_env\"]')\" = web ]" "$(what)"
check "the server's own header comes back (X-Echo), with the X-Hearth-* headers" \
    "[ \"\$(hdr X-Echo)\" = 1 ] && [ -n \"\$(hdr X-Hearth-Duration-Ms)\" ] && [ -n \"\$(hdr X-Hearth-Cpu-Ms)\" ] && [ \"\$(hdr Content-Type)\" = application/json ]" \
    "$(cat "$WORK/h")"
CONN0=$(bget 'd["conn"]')

for m in GET PUT DELETE PATCH OPTIONS; do
    inv web "/m/$m?k=v" -X "$m" --data-binary "body-$m"
    check "$m: method, path, query and body round trip; warm" \
        "[ '$CODE' = 200 ] && [ \"\$(bget 'd[\"method\"]')\" = $m ] && [ \"\$(bget 'd[\"path\"]')\" = /m/$m ] && [ \"\$(bget 'd[\"query\"]')\" = k=v ] && [ \"\$(bget 'd[\"body\"]')\" = body-$m ] && [ '$START' = warm ]" \
        "$(what)"
done
inv web /m/head -I
# (curl -I writes the headers where the body would go: there must be nothing else.)
check "HEAD: 200, the server's Content-Length, no body" \
    "[ '$CODE' = 200 ] && [ \"\$(hdr Content-Length)\" -gt 100 ] && ! grep -q method '$WORK/b'" "$(what)"
inv web ''
check "no path below .../invocations: GET / answers the server's fixed reply" \
    "[ '$CODE' = 200 ] && [ \"\$BODY\" = 'hello from http_server' ]" "$(what)"
inv web '/' -X POST --data-binary x
check "a lone trailing slash is the path /" "[ '$CODE' = 200 ] && [ \"\$(bget 'd[\"path\"]')\" = / ]" "$(what)"
inv web '/deep/er/and/deeper/still/more/seg/ments/x%2Fy/'
check "a deep path, encoded slash and trailing slash kept as sent" \
    "[ '$CODE' = 200 ] && [ \"\$(bget 'd[\"path\"]')\" = /deep/er/and/deeper/still/more/seg/ments/x%2Fy/ ]" "$(what)"

inv web /status/418
check "a status of the server's choice comes back (418) with its headers and body" \
    "[ '$CODE' = 418 ] && [ \"\$(hdr X-Test-Status)\" = 418 ] && [ \"\$BODY\" = 'status 418' ]" "$(what)"
inv web /status/503
check "a 503 of the server's comes back as it is (not hearth's error JSON)" \
    "[ '$CODE' = 503 ] && [ \"\$BODY\" = 'status 503' ] && [ -n \"\$(hdr X-Hearth-Invocation-Id)\" ]" "$(what)"
inv web /hop
check "hop-by-hop headers of the answer are dropped, end-to-end ones kept, X-Hearth-* is hearth's" \
    "[ '$CODE' = 200 ] && [ \"\$(hdr X-Custom-Back)\" = yes ] && [ -z \"\$(hdr Keep-Alive)\" ] && [ -z \"\$(hdr Proxy-Authenticate)\" ] && [ -z \"\$(hdr Upgrade)\" ] && [ -z \"\$(hdr X-Named-In-Connection)\" ] && [ \"\$(hdr X-Hearth-Invocation-Id)\" != spoofed ]" \
    "$(cat "$WORK/h")"

# --- keep-alive --------------------------------------------------------------------------------
inv web /ka
r0=$(bget 'd["req_on_conn"]')
c_ok=0
for i in $(seq 1 20); do
    inv web /ka
    [ "$(bget 'd["conn"]')" = "$CONN0" ] && [ "$(bget 'd["req_on_conn"]')" = $((r0 + i)) ] && c_ok=$((c_ok + 1))
done
check "keep-alive: 20 more calls all arrive on the first call's connection, one after another" \
    "[ $c_ok = 20 ]" "$c_ok of 20; conn $CONN0, last: $(what)"
inv web /stats
check "keep-alive: the server saw requests on exactly one connection" \
    "[ \"\$(bget 'd[\"connections_with_requests\"]')\" = 1 ] && [ \"\$(bget 'd[\"requests\"]')\" -ge 30 ]" "$(what)"

inv web /status/101
check "a 1xx status (not a final answer): 502 function_failed InvalidResponse" \
    "[ '$CODE' = 502 ] && [ \"\$(bget 'd[\"error_type\"]')\" = InvalidResponse ]" "$(what)"
inv web /after-101
check "after it the next call works (on a fresh connection)" \
    "[ '$CODE' = 200 ] && [ \"\$(bget 'd[\"path\"]')\" = /after-101 ] && [ \"\$(bget 'd[\"req_on_conn\"]')\" = 1 ]" "$(what)"

# --- TCP, the CLI ----------------------------------------------------------------------------------
call -H "Authorization: Bearer $TOKEN" -H 'X-Via: tcp' "$URL/v1/functions/web/invocations/over/tcp?q=1"
check "over TCP with a token: path, query and header round trip; Authorization not forwarded" \
    "[ '$CODE' = 200 ] && [ \"\$(bget 'd[\"path\"]')\" = /over/tcp ] && [ \"\$(bget 'd[\"headers\"][\"x-via\"]')\" = tcp ] && [ \"\$(bget '\"authorization\" in d[\"headers\"]')\" = false ]" \
    "$(what)"
call "$URL/v1/functions/web/invocations/x"
check "over TCP without a token: 401" "[ '$CODE' = 401 ]" "$(what)"
out=$(HEARTH_SOCKET=$SOCK timeout 30 "$HEARTH" invoke web -d from-cli 2>&1)
rc=$?
check "hearth invoke -d: POST / with the data as body" \
    "[ $rc = 0 ] && grep -q '\"method\": \"POST\", \"path\": \"/\"' <<<\"\$out\" && grep -q '\"body\": \"from-cli\"' <<<\"\$out\"" \
    "exit $rc: $out"
out=$(timeout 30 "$HEARTH" --url "$URL" --token "$TOKEN" invoke web -d over-tcp 2>&1)
rc=$?
check "hearth invoke over TCP with a token" "[ $rc = 0 ] && grep -q '\"body\": \"over-tcp\"' <<<\"\$out\"" \
    "exit $rc: $out"

# --- the Lambda-compatible endpoint, async -----------------------------------------------------
code=$(curl -s --max-time 30 --aws-sigv4 "aws:amz:us-east-1:lambda" --user "$AKID:$SECRET" -o "$WORK/lb" \
    -w '%{http_code}' -D "$WORK/lh" --data-binary '{"via": "lambda"}' "$URL/2015-03-31/functions/web/invocations")
check "Lambda endpoint: 200, the payload POSTed to / as application/json" \
    "[ '$code' = 200 ] && [ \"\$(json_get '$WORK/lb' 'd[\"method\"] + \" \" + d[\"path\"] + \" \" + d[\"body\"] + \" \" + d[\"headers\"][\"content-type\"]')\" = 'POST / {\"via\": \"lambda\"} application/json' ] && ! grep -qi '^X-Amz-Function-Error' '$WORK/lh'" \
    "HTTP $code" "$(cat "$WORK/lh")" "$(cat "$WORK/lb")"
deploy web-500 "{\"protocol\": \"http\", \"command\": [\"$SRV\", \"--root-status\", \"500\"]}"
code=$(curl -s --max-time 30 --aws-sigv4 "aws:amz:us-east-1:lambda" --user "$AKID:$SECRET" -o "$WORK/lb" \
    -w '%{http_code}' -D "$WORK/lh" --data-binary '"x"' "$URL/2015-03-31/functions/web-500/invocations")
check "Lambda endpoint: a server answering 500 is a function error (200 + X-Amz-Function-Error, errorType HttpError)" \
    "[ '$code' = 200 ] && grep -qi '^X-Amz-Function-Error: Unhandled' '$WORK/lh' && [ \"\$(json_get '$WORK/lb' 'd[\"errorType\"]')\" = HttpError ] && json_get '$WORK/lb' 'd[\"errorMessage\"]' | grep -q 'HTTP 500'" \
    "HTTP $code" "$(cat "$WORK/lh")" "$(cat "$WORK/lb")"

inv web '' -H 'Prefer: respond-async' --data-binary 'async body'
aid=$(bget 'd["id"]')
check "async (Prefer: respond-async): 202 with an id" "[ '$CODE' = 202 ] && [ -n '$aid' ]" "$(what)"
st=
for _ in $(seq 1 100); do
    call --unix-socket "$SOCK" "http://x/v1/invocations/$aid"
    st=$(bget 'd["status"]')
    [ "$st" = succeeded ] || [ "$st" = dead ] && break
    sleep 0.1
done
check "async: succeeded; the stored body was POSTed to /" \
    "[ '$st' = succeeded ] && bget 'd[\"result\"]' | grep -q '\"method\": \"POST\", \"path\": \"/\"' && bget 'd[\"result\"]' | grep -q '\"body\": \"async body\"'" \
    "$(what)"
inv web /sub -H 'Prefer: respond-async' --data-binary x
check "async with a path below .../invocations: 400 saying what async carries" \
    "[ '$CODE' = 400 ] && bget 'd[\"message\"]' | grep -q 'POST'" "$(what)"

# --- sizes -------------------------------------------------------------------------------------
inv web "/big?bytes=$((MAX_BODY / 2))"
check "an answer of half max_body_bytes comes back whole" \
    "[ '$CODE' = 200 ] && [ \$(wc -c <'$WORK/b') = $((MAX_BODY / 2)) ]" "HTTP $CODE, $(wc -c <"$WORK/b") bytes"
head -c 300000 /dev/urandom | base64 -w0 >"$WORK/big"
inv web /upload --data-binary "@$WORK/big"
check "a 400 KB request body reaches the server whole" \
    "[ '$CODE' = 200 ] && [ \"\$(bget 'd[\"body_len\"]')\" = \$(wc -c <'$WORK/big') ]" "HTTP $CODE, $(bget 'd["body_len"]')"
inv web "/big?bytes=$((MAX_BODY * 2))"
check "an answer over max_body_bytes (Content-Length): 502 output_too_large" \
    "[ '$CODE' = 502 ] && [ \"\$(bget 'd[\"error\"]')\" = output_too_large ]" "$(what)"
inv web "/big?bytes=$((MAX_BODY * 2))&chunked=1"
check "an answer over max_body_bytes (chunked): 502 output_too_large" \
    "[ '$CODE' = 502 ] && [ \"\$(bget 'd[\"error\"]')\" = output_too_large ]" "$(what)"
inv web /after-big
check "after an oversized answer the next call works" "[ '$CODE' = 200 ] && [ \"\$(bget 'd[\"path\"]')\" = /after-big ]" \
    "$(what)"

# --- CPU ---------------------------------------------------------------------------------------
call --unix-socket "$SOCK" http://x/v1/usage
cpu0=$(bget 'd["cpu_ms"]')
inv web '/burn?ms=400'
srv_cpu=$(bget 'd["cpu_ms"]')
hcpu=$(hdr X-Hearth-Cpu-Ms)
check "CPU: X-Hearth-Cpu-Ms covers what the server burnt (between 0.8x and 2x its own figure)" \
    "python3 -c 'import sys; s, h = float(sys.argv[1]), float(sys.argv[2]); sys.exit(not (s >= 300 and 0.8 * s <= h <= 2 * s))' '$srv_cpu' '$hcpu'" \
    "server says $srv_cpu ms, hearth $hcpu ms"
call --unix-socket "$SOCK" http://x/v1/usage
cpu1=$(bget 'd["cpu_ms"]')
check "CPU: the tenant's usage cpu_ms grew by at least 0.8x the server's figure" \
    "python3 -c 'import sys; a, b, s = map(float, sys.argv[1:]); sys.exit(not (b - a >= 0.8 * s))' '$cpu0' '$cpu1' '$srv_cpu'" \
    "cpu_ms $cpu0 -> $cpu1, server burnt $srv_cpu ms"

# --- the client going away -----------------------------------------------------------------------
# (hearthd hears of it only when it answers: evhttp 2.1 does not read a
# connection while its request is served. The call runs its course.)
inv web '/sleep?ms=2000' --max-time 0.5
inv web /after-leaving
check "a caller leaving mid-call: another call meanwhile works (on another sandbox)" \
    "[ '$CODE' = 200 ] && [ \"\$(bget 'd[\"path\"]')\" = /after-leaving ]" "$(what)"

# --- start-up ------------------------------------------------------------------------------------
deploy slow "{\"protocol\": \"http\", \"command\": [\"$SRV\", \"--delay-ms\", \"1500\"]}"
inv slow /x
check "a server listening after 1.5 s: the first call waits for it (200, cold, >= 1.4 s)" \
    "[ '$CODE' = 200 ] && [ '$START' = cold ] && [ $MS -ge 1400 ]" "$(what)"
deploy kept "{\"protocol\": \"http\", \"command\": [\"$SRV\"], \"min_warm\": 1}"
idle=
for _ in $(seq 1 100); do
    call --unix-socket "$SOCK" http://x/v1/status
    idle=$(bget '[f["sandboxes"]["idle"] for f in d["functions"] if f["name"] == "kept"][0]')
    [ "$idle" = 1 ] && break
    sleep 0.1
done
inv kept /x
check "min_warm 1: a sandbox comes up idle with no call, and the first call is warm" \
    "[ '$idle' = 1 ] && [ '$CODE' = 200 ] && [ '$START' = warm ]" "idle $idle; $(what)"
deploy exits "{\"protocol\": \"http\", \"command\": [\"$SRV\", \"--exit-at-start\", \"3\"]}"
inv exits /x
check "a server exiting at start: 502 start_failed naming the exit status and its last output, quickly" \
    "[ '$CODE' = 502 ] && [ \"\$(bget 'd[\"error\"]')\" = start_failed ] && bget 'd[\"message\"]' | grep -q 'exited with status 3 before accepting' && bget 'd[\"message\"]' | grep -q 'failing at start, on purpose' && [ $MS -lt 5000 ]" \
    "$(what)"
deploy noexec '{"protocol": "http", "command": ["/nonexistent/server"]}'
inv noexec /x
check "a server that cannot be started: 502 start_failed saying so" \
    "[ '$CODE' = 502 ] && bget 'd[\"message\"]' | grep -q 'cannot start the server'" "$(what)"
deploy never "{\"protocol\": \"http\", \"command\": [\"$SRV\", \"--never-listen\"]}"
inv never /x --max-time 60
# The scheduler gives up after 3 failed starts: 3 x the 9 s limit, within its 30 s queue timeout.
check "a server that never listens: 502 start_failed naming the 9 s limit, after its tries" \
    "[ '$CODE' = 502 ] && [ \"\$(bget 'd[\"error\"]')\" = start_failed ] && bget 'd[\"message\"]' | grep -q 'did not accept connections on 127.0.0.1:8080 within 9 s' && [ $MS -ge 8000 ] && [ $MS -lt 40000 ]" \
    "$(what)"

# --- failures mid-call ------------------------------------------------------------------------------
deploy crashy "{\"protocol\": \"http\", \"command\": [\"$SRV\"], \"timeout_ms\": 10000}"
inv crashy /warm
inv crashy /warm
check "crashy: warm, its second request" "[ '$CODE' = 200 ] && [ \"\$(bget 'd[\"requests\"]')\" = 2 ]" "$(what)"
inv crashy /crash
check "a server crashing mid-call: 502 naming signal 6, its stderr in the answer, quickly" \
    "[ '$CODE' = 502 ] && [ \"\$(bget 'd[\"error\"]')\" = sandbox_lost ] && bget 'd[\"message\"]' | grep -q 'killed by signal 6' && bget 'd[\"stderr\"]' | grep -q 'crashing on purpose' && [ $MS -lt 4000 ]" \
    "$(what)"
inv crashy /after
check "after the crash the next call works, on a new server (its request counter restarted)" \
    "[ '$CODE' = 200 ] && [ \"\$(bget 'd[\"requests\"]')\" = 1 ]" "$(what)"
inv crashy '/exit?code=7'
check "a server exiting mid-call: 502 naming exit status 7" \
    "[ '$CODE' = 502 ] && bget 'd[\"message\"]' | grep -q 'exited with status 7'" "$(what)"
inv crashy /after-exit
check "after the exit the next call works on a new server" \
    "[ '$CODE' = 200 ] && [ \"\$(bget 'd[\"requests\"]')\" = 1 ]" "$(what)"
inv crashy /hangup
check "a server closing the connection without answering: 502 function_failed ConnectionClosed" \
    "[ '$CODE' = 502 ] && [ \"\$(bget 'd[\"error\"]')\" = function_failed ] && [ \"\$(bget 'd[\"error_type\"]')\" = ConnectionClosed ]" \
    "$(what)"
inv crashy /after-hangup
check "after a hang-up the same server (alive) answers on a new connection" \
    "[ '$CODE' = 200 ] && [ \"\$(bget 'd[\"requests\"]')\" = 3 ] && [ \"\$(bget 'd[\"req_on_conn\"]')\" = 1 ]" "$(what)"

deploy hang "{\"protocol\": \"http\", \"command\": [\"$SRV\"], \"timeout_ms\": 1000}"
inv hang /warm
[ "$CODE" = 200 ] || note "hang: the warm-up call answered $(what)"
inv hang '/sleep?ms=5000'
check "a call hanging past timeout_ms 1000: 504 timeout within ~1 s" \
    "[ '$CODE' = 504 ] && [ \"\$(bget 'd[\"error\"]')\" = timeout ] && [ $MS -ge 900 ] && [ $MS -lt 4000 ]" "$(what)"
inv hang /after
check "after the timeout the next call works, on a new server" \
    "[ '$CODE' = 200 ] && [ \"\$(bget 'd[\"requests\"]')\" = 1 ]" "$(what)"

# --- a new version ----------------------------------------------------------------------------------
deploy crashy "{\"protocol\": \"http\", \"command\": [\"$SRV\"], \"timeout_ms\": 9000}"
inv crashy /new-version
check "after an update the call runs on a server of the new version (a fresh one)" \
    "[ '$DCODE' = 200 ] && [ '$CODE' = 200 ] && [ \"\$(bget 'd[\"requests\"]')\" = 1 ]" "$(what)"

# --- a stdio function beside it: unchanged ------------------------------------------------------------
deploy cat '{"command": ["/bin/cat"]}'
inv cat '' --data-binary 'stdio still'
check "stdio: POST .../invocations echoes as before" "[ '$CODE' = 200 ] && [ \"\$BODY\" = 'stdio still' ]" "$(what)"
inv cat /sub --data-binary x
check "stdio: a path below .../invocations is 404" "[ '$CODE' = 404 ]" "$(what)"
inv cat '' -X PATCH --data-binary x
check "stdio: PATCH on .../invocations is 405" "[ '$CODE' = 405 ]" "$(what)"

# --- shutdown ------------------------------------------------------------------------------------------
procs=$(uid_range_procs "$UID_BASE" 256 | grep -c http_server)
check "servers run as sandbox uids (in [$UID_BASE, +256))" "[ $procs -ge 3 ]" "$(uid_range_procs "$UID_BASE" 256)"
# A call still running at SIGTERM: past drain_timeout_ms (1.5 s) it is
# stopped, its request to the server taken back, and hearthd exits.
curl -s --max-time 30 --unix-socket "$SOCK" -o "$WORK/drain.b" -w '%{http_code}' \
    'http://x/v1/functions/web/invocations/sleep?ms=20000' >"$WORK/drain.code" &
drain_curl=$!
bg_track $drain_curl
sleep 0.5
t0=$(now_ms)
stop_daemon
wait $drain_curl
el=$(($(now_ms) - t0))
check "SIGTERM with a call in flight: hearthd stops it after drain_timeout_ms, well before the call's 20 s" \
    "[ $el -ge 1400 ] && [ $el -lt 10000 ]" "after $el ms, HTTP $(cat "$WORK/drain.code")"
check "hearthd exits 0 on SIGTERM" "[ '$DAEMON_RC' = 0 ]" "exit $DAEMON_RC" "$(tail -n 20 "$WORK/log")"
left=$(cgroup_leftovers "$CG")
check "no cgroup left under $CG" "[ -z \"\$left\" ]" "$left"
for _ in $(seq 1 30); do
    left=$(uid_range_procs "$UID_BASE" 256)
    [ -z "$left" ] && break
    sleep 0.1
done
check "no sandbox process left (within 3 s)" "[ -z \"\$left\" ]" "$left"
finish
