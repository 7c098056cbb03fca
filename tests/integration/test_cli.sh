#!/bin/bash
# The `hearth` CLI's daemon commands against a real hearthd: deploy, ls, get,
# invoke (-d DATA, -d @FILE, -d -, -v), usage, status, rm, over the Unix
# socket (uid auth) and over HTTP with bearer tokens; two tenants that cannot
# see each other; an admin; and the exit codes (1 function or request failed,
# 2 usage error, 3 unreachable or refused).
# Needs root (hearthd runs sandboxes). Binaries from $HEARTH_BIN (default
# <repo>/bin): hearth, hearthd. TAP output; the last line is
# "N passed, N failed[, N skipped]".
set -u
export LC_ALL=C
REPO=$(cd "$(dirname "$0")/../.." && pwd)
HB=${HEARTH_BIN:-$REPO/bin}
HB=$(cd "$HB" 2>/dev/null && pwd || echo "$HB")
HEARTH=$HB/hearth
HEARTHD=$HB/hearthd
unset HEARTH_URL HEARTH_TOKEN HEARTH_SOCKET

n=0 passed=0 failed=0 skipped=0
ok() { n=$((n + 1)); passed=$((passed + 1)); echo "ok $n - $1"; }
not_ok() { # name why...
    n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"
    shift
    local l
    for l in "$@"; do printf '%s\n' "$l" | sed 's/^/#   /'; done
}
skip() { n=$((n + 1)); skipped=$((skipped + 1)); echo "ok $n - $1 # SKIP $2"; }
finish() {
    echo "1..$n"
    if [ "$skipped" -gt 0 ]; then
        echo "$passed passed, $failed failed, $skipped skipped"
    else
        echo "$passed passed, $failed failed"
    fi
    [ "$failed" -eq 0 ]
    exit
}

if [ ! -x "$HEARTHD" ]; then
    skip "hearth CLI against hearthd" "hearthd not built"
    finish
fi
if [ ! -x "$HEARTH" ]; then
    not_ok "hearth present" "$HEARTH missing: run make, or set HEARTH_BIN"
    finish
fi
if [ "$(id -u)" != 0 ]; then
    skip "hearth CLI against hearthd" "needs root (hearthd runs sandboxes)"
    finish
fi

WORK=$(mktemp -d /tmp/hearth-cli-test.XXXXXX) || exit 1
DPID=
cleanup() {
    if [ -n "$DPID" ] && kill -0 "$DPID" 2>/dev/null; then
        kill -TERM "$DPID" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DPID" 2>/dev/null
        wait "$DPID" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- a daemon of our own -------------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null && return
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 30000))
        ({ exec 3<>"/dev/tcp/127.0.0.1/$p"; } 2>/dev/null) || { echo "$p"; return; }
    done
    echo 28080
}
token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }

PORT=$(free_port)
URL=http://127.0.0.1:$PORT
SOCK=$WORK/run/hearth.sock
TOK1=$(token) TOK2=$(token) TOKA=$(token)
mkdir -p "$WORK/functions" "$WORK/state"
# Our own cgroup root and uid range: nothing shared with another daemon on the host.
cat >"$WORK/hearthd.json" <<EOF
{
  "listen_unix": "$SOCK",
  "listen_http": "127.0.0.1:$PORT",
  "state_dir": "$WORK/state",
  "functions_dir": "$WORK/functions",
  "cgroup_root": "hearth-test-cli-$$",
  "uid_base": $((2000000 + ($$ % 10000) * 64)),
  "uid_count": 64,
  "prewarm_pool": 1,
  "drain_timeout_ms": 5000,
  "tenants": [
    {"name": "t1", "tokens_sha256": ["$(sha "$TOK1")"], "uids": [0]},
    {"name": "t2", "tokens_sha256": ["$(sha "$TOK2")"]},
    {"name": "ops", "tokens_sha256": ["$(sha "$TOKA")"], "admin": true}
  ]
}
EOF

"$HEARTHD" --config "$WORK/hearthd.json" 2>"$WORK/hearthd.log" &
DPID=$!
healthy() {
    local r
    r=$({ exec 3<>"/dev/tcp/127.0.0.1/$PORT" && printf 'GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n' >&3 && head -n 1 <&3; } 2>/dev/null)
    case $r in "HTTP/1."?" 200"*) return 0 ;; esac
    return 1
}
up=no
for _ in $(seq 1 100); do
    kill -0 "$DPID" 2>/dev/null || break
    if healthy && [ -S "$SOCK" ]; then up=yes; break; fi
    sleep 0.1
done
if [ "$up" = yes ]; then
    ok "hearthd is up (/healthz answers 200, socket exists)"
else
    not_ok "hearthd is up" "$(tail -n 20 "$WORK/hearthd.log")"
    finish
fi
# 64 uids for up to 256 sandboxes and 1 prewarm shell: said at the start.
if grep -q 'uid_count 64 is below max_sandboxes + prewarm_pool (257): creations fail once 64 sandboxes live' \
    "$WORK/hearthd.log"; then
    ok "a uid range smaller than the host's sandboxes is warned about"
else
    not_ok "a uid range smaller than the host's sandboxes is warned about" "$(head -n 5 "$WORK/hearthd.log")"
fi

# --- helpers -----------------------------------------------------------------------------------
# h ARGS... : `hearth ARGS...` with our stdin; stdout/stderr to $WORK/out, $WORK/err; sets rc.
h() {
    "$HEARTH" "$@" >"$WORK/out" 2>"$WORK/err"
    rc=$?
}
hs() { h --socket "$SOCK" "$@"; }                  # tenant t1 by uid 0
h1() { h --url "$URL" --token "$TOK1" "$@"; }     # t1 by token
h2() { h --url "$URL" --token "$TOK2" "$@"; }     # t2
ha() { h --url "$URL" --token "$TOKA" "$@"; }     # the admin
out() { cat "$WORK/out"; }
show() { echo "exit $rc; stdout: $(head -c 600 "$WORK/out"); stderr: $(head -c 600 "$WORK/err")"; }
check() { # NAME CONDITION (evaluated by the shell)
    local name=$1; shift
    if eval "$@"; then ok "$name"; else not_ok "$name" "$(show)"; fi
}

cat >"$WORK/echo.json" <<'EOF'
{"name": "echo", "protocol": "stdio", "command": ["/bin/cat"], "memory_mb": 64, "timeout_ms": 5000}
EOF
cat >"$WORK/echo2.json" <<'EOF'
{"name": "echo", "protocol": "stdio", "command": ["/bin/cat"], "memory_mb": 96, "timeout_ms": 5000}
EOF
cat >"$WORK/fail.json" <<'EOF'
{"name": "fail", "command": ["/bin/sh", "-c", "echo oops >&2; exit 3"], "timeout_ms": 5000}
EOF

# --- help and usage errors (no daemon needed) ------------------------------------------------
h --help
check "hearth --help: usage on stdout, exit 0" '[ $rc = 0 ] && grep -q "^usage: hearth" "$WORK/out"'
all_help=yes
for c in deploy ls get rm invoke usage status run; do
    h "$c" --help
    if [ $rc != 0 ] || ! grep -q "^usage: hearth $c" "$WORK/out"; then all_help="no ($c: $(show))"; fi
done
check "hearth COMMAND --help for every command" '[ "$all_help" = yes ]'
h frobnicate
check "unknown command: exit 2 with usage" '[ $rc = 2 ] && grep -q "^usage: hearth" "$WORK/err"'
h
check "no command: exit 2" '[ $rc = 2 ]'
hs ls --frobnicate
check "unknown option: exit 2" '[ $rc = 2 ]'
hs get
check "get without NAME: exit 2" '[ $rc = 2 ]'
hs rm a b
check "rm with two names: exit 2" '[ $rc = 2 ]'
hs deploy "$WORK/does-not-exist.json"
check "deploy of a missing file: exit 2" '[ $rc = 2 ] && grep -q "does-not-exist" "$WORK/err"'
echo 'this is not json' >"$WORK/bad.json"
hs deploy "$WORK/bad.json"
check "deploy of a file that is not JSON: exit 2" '[ $rc = 2 ]'
echo '{"command": ["/bin/cat"]}' >"$WORK/noname.json"
hs deploy "$WORK/noname.json"
check "deploy of a spec without a name: exit 2" '[ $rc = 2 ]'
hs invoke echo -d "@$WORK/does-not-exist"
check "invoke -d @FILE of a missing file: exit 2" '[ $rc = 2 ]'
h --socket "$SOCK" --url "$URL" ls
check "--socket and --url together: exit 2" '[ $rc = 2 ]'
h --url "ftp://127.0.0.1:$PORT" ls
check "a URL that is not http://: exit 2" '[ $rc = 2 ]'

# --- over the Unix socket (t1 by its uid) ------------------------------------------------------
hs deploy "$WORK/echo.json"
check "deploy over the socket: created echo (version 1)" '[ $rc = 0 ] && [ "$(out)" = "created echo (version 1)" ]'
hs deploy "$WORK/echo2.json"
check "deploy of a changed spec: updated echo (version 2)" '[ $rc = 0 ] && [ "$(out)" = "updated echo (version 2)" ]'
hs deploy - <"$WORK/fail.json"
check "deploy - reads the spec from stdin" '[ $rc = 0 ] && [ "$(out)" = "created fail (version 1)" ]'
hs ls
check "ls: a header and a row per function" \
    '[ $rc = 0 ] && head -n 1 "$WORK/out" | grep -Eq "^NAME +TENANT +PROTOCOL +VERSION +MEMORY +TIMEOUT$" &&
     grep -Eq "^echo +t1 +stdio +2 +96M +5s$" "$WORK/out" && grep -Eq "^fail +t1 " "$WORK/out"'
hs get echo
check "get: the spec as indented JSON, defaults filled in" \
    '[ $rc = 0 ] && grep -q "^  \"name\": \"echo\"" "$WORK/out" && grep -q "\"memory_mb\": 96" "$WORK/out" &&
     grep -q "\"pids\"" "$WORK/out"'
hs invoke echo -d hello
check "invoke -d DATA: the output, as it is" '[ $rc = 0 ] && [ "$(out)" = hello ]'
printf 'line one\nline two\n\ttabbed\n' >"$WORK/payload"
hs invoke echo -d "@$WORK/payload"
check "invoke -d @FILE" '[ $rc = 0 ] && cmp -s "$WORK/out" "$WORK/payload"'
head -c 200000 /dev/urandom >"$WORK/binary"
hs invoke echo -d - <"$WORK/binary"
check "invoke -d - (200 kB of binary from stdin)" '[ $rc = 0 ] && cmp -s "$WORK/out" "$WORK/binary"'
hs invoke echo
check "invoke without -d: an empty payload" '[ $rc = 0 ] && [ ! -s "$WORK/out" ]'
hs invoke -v echo -d x
check "invoke -v: invocation id, start kind, duration and CPU on stderr" \
    '[ $rc = 0 ] && [ "$(out)" = x ] && grep -Eq "^X-Hearth-Invocation-Id: [0-9a-f]+" "$WORK/err" &&
     grep -Eq "^X-Hearth-Start: (cold|prewarm|warm)$" "$WORK/err" && grep -q "^X-Hearth-Duration-Ms: " "$WORK/err" &&
     grep -q "^X-Hearth-Cpu-Ms: " "$WORK/err"'
hs invoke fail -d x
check "invoke of a failing function: exit 1, the daemon's message with HTTP 502" \
    '[ $rc = 1 ] && grep -q "^hearth: .*(HTTP 502)$" "$WORK/err"'
hs invoke missing -d x
check "invoke of a missing function: exit 1, HTTP 404" '[ $rc = 1 ] && grep -q "(HTTP 404)" "$WORK/err"'
hs usage
check "usage: the caller's own row" \
    '[ $rc = 0 ] && head -n 1 "$WORK/out" | grep -q "^TENANT +INVOCATIONS" -E &&
     awk "\$1 == \"t1\" && \$2 >= 5 { f = 1 } END { exit !f }" "$WORK/out"'
hs usage t1
check "usage TENANT" '[ $rc = 0 ] && grep -Eq "^t1 +[0-9]+" "$WORK/out"'
hs status
check "status: a row per function with its reason" \
    '[ $rc = 0 ] && grep -Eq "^TENANT +FUNCTION +VERSION +CREATING +IDLE +BUSY +DRAINING +QUEUED +IN_FLIGHT +DESIRED +PANIC +REASON$" "$WORK/out" &&
     grep -Eq "^t1 +echo +2 " "$WORK/out"'
HEARTH_SOCKET=$SOCK h ls
check "HEARTH_SOCKET is the default socket" '[ $rc = 0 ] && grep -Eq "^echo " "$WORK/out"'

# --- over HTTP with tokens -----------------------------------------------------------------------
h1 ls
check "ls over --url with t1's token" '[ $rc = 0 ] && grep -Eq "^echo +t1 " "$WORK/out"'
h1 invoke echo -d "over tcp"
check "invoke over --url" '[ $rc = 0 ] && [ "$(out)" = "over tcp" ]'
h1 invoke echo -d - <"$WORK/binary"
check "invoke -d - over --url" '[ $rc = 0 ] && cmp -s "$WORK/out" "$WORK/binary"'
h1 invoke echo -d "@$WORK/payload"
check "invoke -d @FILE over --url" '[ $rc = 0 ] && cmp -s "$WORK/out" "$WORK/payload"'
HEARTH_URL=$URL HEARTH_TOKEN=$TOK1 h invoke echo -d env
check "HEARTH_URL and HEARTH_TOKEN" '[ $rc = 0 ] && [ "$(out)" = env ]'
h --url "$URL" --token "$TOK1" get echo
check "get over --url" '[ $rc = 0 ] && grep -q "\"name\": \"echo\"" "$WORK/out"'
h1 status
check "status over --url" '[ $rc = 0 ] && grep -Eq "^t1 +echo " "$WORK/out"'

# --- tenants apart, and the admin --------------------------------------------------------------
h2 ls
check "t2 does not see t1's functions" '[ $rc = 0 ] && ! grep -q "^echo" "$WORK/out"'
h2 invoke echo -d x
check "t2 cannot call t1's function: exit 1, HTTP 404" '[ $rc = 1 ] && grep -q "(HTTP 404)" "$WORK/err"'
h2 get echo
check "t2 cannot read t1's function: exit 1" '[ $rc = 1 ]'
h2 deploy "$WORK/echo.json"
check "t2 deploys its own echo (version 1)" '[ $rc = 0 ] && [ "$(out)" = "created echo (version 1)" ]'
ha ls --tenant t1
check "admin: ls --tenant t1" '[ $rc = 0 ] && grep -Eq "^echo +t1 +stdio +2 " "$WORK/out"'
ha invoke --tenant t2 echo -d admin
check "admin: invoke --tenant t2" '[ $rc = 0 ] && [ "$(out)" = admin ]'
ha get --tenant t1 fail
check "admin: get --tenant t1" '[ $rc = 0 ] && grep -q "\"name\": \"fail\"" "$WORK/out"'
ha usage
check "admin: usage has a row per tenant" \
    '[ $rc = 0 ] && grep -Eq "^t1 " "$WORK/out" && grep -Eq "^t2 " "$WORK/out" && grep -Eq "^ops " "$WORK/out"'
ha rm --tenant t2 echo
check "admin: rm --tenant t2" '[ $rc = 0 ] && [ "$(out)" = "removed echo" ]'
h1 ls --tenant t2
check "a tenant's --tenant of another shows nothing of it" '[ $rc != 0 ] || ! grep -q "^echo" "$WORK/out"'

# --- unreachable and refused: exit 3 -----------------------------------------------------------
h --url "$URL" --token "wrong-$TOK1" ls
check "a wrong token over --url: exit 3, HTTP 401" '[ $rc = 3 ] && grep -q "(HTTP 401)" "$WORK/err"'
h --url "$URL" ls
check "no token over --url: exit 3" '[ $rc = 3 ]'
h --socket "$SOCK" --token "wrong-$TOK1" ls
check "a wrong token over the socket: exit 3" '[ $rc = 3 ]'
h --socket "$WORK/nobody-here.sock" ls
check "a dead socket: exit 3" '[ $rc = 3 ] && grep -q "nobody-here.sock" "$WORK/err"'
DEAD=$(free_port)
h --url "http://127.0.0.1:$DEAD" --token "$TOK1" ls
check "a closed port: exit 3" '[ $rc = 3 ]'

# --- rm -----------------------------------------------------------------------------------------
hs rm echo
check "rm: removed echo" '[ $rc = 0 ] && [ "$(out)" = "removed echo" ]'
hs get echo
check "get after rm: exit 1, HTTP 404" '[ $rc = 1 ] && grep -q "(HTTP 404)" "$WORK/err"'
hs rm echo
check "rm of a missing function: exit 1" '[ $rc = 1 ]'
hs invoke echo -d x
check "invoke after rm: exit 1" '[ $rc = 1 ]'

# --- SIGTERM ------------------------------------------------------------------------------------
kill -TERM "$DPID"
drc=timeout
for _ in $(seq 1 150); do
    if ! kill -0 "$DPID" 2>/dev/null; then wait "$DPID"; drc=$?; DPID=; break; fi
    sleep 0.1
done
if [ "$drc" = 0 ]; then
    ok "hearthd exits 0 on SIGTERM"
else
    not_ok "hearthd exits 0 on SIGTERM" "exit: $drc" "$(tail -n 10 "$WORK/hearthd.log")"
fi
h --socket "$SOCK" ls
check "after the daemon is gone: exit 3" '[ $rc = 3 ]'

finish
