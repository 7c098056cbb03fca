#!/bin/bash
# The `lambda` protocol (issue 5): hearthd serves the Lambda Runtime API
# (2018-06-01) at 127.0.0.1:9001 inside each sandbox; the function's command is
# its bootstrap, started once per sandbox and kept warm. Deploys the runtimes
# in tests/runtimes (shell + curl, Python stdlib, static C) and invokes them
# through the hearth API, the CLI and the Lambda-compatible endpoint (AWS CLI,
# skipped if absent); then a runtime that exits during init, one that reports
# an init error, one that hangs past its timeout, one that crashes mid-call;
# the Lambda environment; and a clean SIGTERM.
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { skip "lambda protocol" "needs root"; finish; }
[ -x "$HEARTHD" ] || { skip "lambda protocol" "hearthd not built"; finish; }
make_workdir hearth-lrt

# Sandboxes see the host's / read-only but not /tmp (nor anything under
# another mount): the runtimes are deployed from a fresh directory in /var/tmp.
RT=$(mktemp -d /var/tmp/hearth-lambda-rt.XXXXXX) || { not_ok "mktemp in /var/tmp"; finish; }
trap 'lib_cleanup; rm -rf "$RT"' EXIT
chmod 755 "$RT"
install -m 755 "$REPO/tests/runtimes/bootstrap.sh" "$RT/bootstrap"
install -m 755 "$REPO/tests/runtimes/python_bootstrap.py" "$RT/python_bootstrap.py"
if out=$(gcc -O2 -static -o "$RT/echo_runtime" "$REPO/tests/runtimes/echo_runtime.c" 2>&1); then
    ok "echo_runtime.c builds static"
else
    not_ok "echo_runtime.c builds static" "$out"
fi

PORT=$(free_port)
URL=http://127.0.0.1:$PORT
SOCK=$WORK/run/hearth.sock
TOKEN=$(new_token)
AKID=AKIAHEARTHLRT$(printf '%07d' $((RANDOM * 32768 % 10000000 + RANDOM % 1000)))
SECRET=$(new_token)
CG=hearth-lrt-$$
UID_BASE=830000
cat >"$WORK/hearthd.json" <<EOT
{"listen_unix": "$SOCK", "listen_http": "127.0.0.1:$PORT", "state_dir": "$WORK/state",
 "functions_dir": "", "cgroup_root": "$CG", "uid_base": $UID_BASE, "uid_count": 256, "log_level": "warn",
 "tenants": [{"name": "t1", "uids": [0], "tokens_sha256": ["$(sha256_hex "$TOKEN")"],
              "aws_keys": [{"access_key_id": "$AKID", "secret_access_key": "$SECRET"}]}]}
EOT
start_daemon "$WORK/hearthd.json" "$WORK/log" "$SOCK" "$URL" || { not_ok "hearthd starts" "$(tail -n 20 "$WORK/log")"; finish; }
ok "hearthd starts"
S=(curl -s --max-time 30 --unix-socket "$SOCK")

# deploy NAME SPEC-JSON (without the name)
deploy() {
    local code
    code=$("${S[@]}" -o "$WORK/deploy.out" -w '%{http_code}' -X PUT -d "$2" "http://x/v1/functions/$1")
    [ "$code" = 201 ] || [ "$code" = 200 ] || note "deploy $1 answered $code: $(cat "$WORK/deploy.out")"
}
# inv NAME DATA [CURL-ARGS...]: sets CODE, BODY, START (X-Hearth-Start), MS (round trip).
# DATA may be @FILE.
inv() {
    local t0 f=$1 d=$2
    shift 2
    rm -f "$WORK/h" "$WORK/b"
    : >"$WORK/b"
    t0=$(now_ms)
    CODE=$("${S[@]}" "$@" -D "$WORK/h" -o "$WORK/b" -w '%{http_code}' --data-binary "$d" "http://x/v1/functions/$f/invocations")
    MS=$(($(now_ms) - t0))
    BODY=$(cat "$WORK/b")
    START=$(sed -n 's/^[Xx]-[Hh]earth-[Ss]tart:[[:space:]]*//p' "$WORK/h" | tr -d '\r')
}
bget() { json_get "$WORK/b" "$1"; }
what() { echo "HTTP $CODE in ${MS} ms, X-Hearth-Start: $START, body: $BODY"; }

deploy sh-echo "{\"protocol\": \"lambda\", \"command\": [\"$RT/bootstrap\"], \"timeout_ms\": 10000}"
deploy py-echo "{\"protocol\": \"lambda\", \"command\": [\"$RT/python_bootstrap.py\"], \"timeout_ms\": 10000}"
deploy c-echo "{\"protocol\": \"lambda\", \"command\": [\"$RT/echo_runtime\"], \"timeout_ms\": 10000}"

# --- each runtime, through the hearth API ---------------------------------------------------
for rt in sh py; do
    f=$rt-echo
    inv "$f" '{"n": 1}'
    pid1=$(bget 'd["pid"]')
    check "$f: first call 200, event echoed, cold" \
        "[ '$CODE' = 200 ] && [ \"\$(bget 'd[\"echo\"]')\" = '{\"n\": 1}' ] && [ \"\$(bget 'd[\"count\"]')\" = 1 ] && [ '$START' = cold ]" \
        "$(what)"
    inv "$f" '{"n": 2}'
    check "$f: second call warm, the same runtime process (its counter at 2)" \
        "[ '$CODE' = 200 ] && [ \"\$(bget 'd[\"echo\"]')\" = '{\"n\": 2}' ] && [ \"\$(bget 'd[\"count\"]')\" = 2 ] && [ \"\$(bget 'd[\"pid\"]')\" = '$pid1' ] && [ '$START' = warm ]" \
        "$(what)"
    out=$(HEARTH_SOCKET=$SOCK timeout 30 "$HEARTH" invoke "$f" -d '"from-cli"' 2>&1)
    rc=$?
    check "$f: hearth invoke -d echoes, warm (counter 3)" \
        "[ $rc = 0 ] && grep -q '\"echo\": \"from-cli\"' <<<\"\$out\" && grep -q '\"count\": 3' <<<\"\$out\"" \
        "exit $rc: $out"
    # A handler error: 502 function_failed with the runtime's errorType and errorMessage.
    inv "$f" '"please fail"'
    check "$f: a handler error answers 502 function_failed with its error_type and message" \
        "[ '$CODE' = 502 ] && [ \"\$(bget 'd[\"error\"]')\" = function_failed ] && [ \"\$(bget 'd[\"error_type\"]')\" = HandlerFailed ] && bget 'd[\"message\"]' | grep -q 'the handler was asked to fail'" \
        "$(what)"
    inv "$f" '"after-error"'
    check "$f: after a handler error the runtime stays warm (same process)" \
        "[ '$CODE' = 200 ] && [ \"\$(bget 'd[\"pid\"]')\" = '$pid1' ] && [ '$START' = warm ]" "$(what)"
done

inv c-echo 'raw bytes, not JSON'
check "c-echo: first call 200, payload echoed verbatim, cold" \
    "[ '$CODE' = 200 ] && [ \"\$BODY\" = 'raw bytes, not JSON' ] && [ '$START' = cold ]" "$(what)"
inv c-echo '{"second": true}'
check "c-echo: second call warm" "[ '$CODE' = 200 ] && [ \"\$BODY\" = '{\"second\": true}' ] && [ '$START' = warm ]" "$(what)"
head -c 200000 /dev/urandom | base64 -w0 >"$WORK/big"
inv c-echo "@$WORK/big"
check "c-echo: a 266 KB payload comes back intact" "[ '$CODE' = 200 ] && cmp -s '$WORK/big' '$WORK/b'" \
    "HTTP $CODE, $(wc -c <"$WORK/b") bytes back of $(wc -c <"$WORK/big")"
t0=$(now_ms)
n_ok=0
for i in $(seq 1 50); do
    [ "$("${S[@]}" -o /dev/null -w '%{http_code}' -d "$i" http://x/v1/functions/c-echo/invocations)" = 200 ] &&
        n_ok=$((n_ok + 1))
done
el=$(($(now_ms) - t0))
check "c-echo: 50 warm calls in a row succeed" "[ $n_ok = 50 ]" "$n_ok of 50 in $el ms"
note "c-echo: 50 sequential warm calls (curl each) in $el ms"
out=$(HEARTH_SOCKET=$SOCK timeout 30 "$HEARTH" invoke c-echo -d cli-data 2>&1)
check "c-echo: hearth invoke -d" "[ \"\$out\" = cli-data ]" "$out"
out=$(timeout 30 "$HEARTH" --url "$URL" --token "$TOKEN" invoke c-echo -d over-tcp 2>&1)
check "c-echo: hearth invoke over TCP with a token" "[ \"\$out\" = over-tcp ]" "$out"

# --- the Lambda-compatible endpoint ---------------------------------------------------------
export AWS_ACCESS_KEY_ID=$AKID AWS_SECRET_ACCESS_KEY=$SECRET AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
AWS=/usr/bin/aws
if [ -x "$AWS" ]; then
    awsinv() { # NAME PAYLOAD OUTFILE [more args]
        local n=$1 p=$2 o=$3
        shift 3
        timeout 60 "$AWS" --endpoint-url "$URL" lambda invoke --function-name "$n" --payload "$p" \
            --cli-binary-format raw-in-base64-out "$@" "$o" 2>&1
    }
    for rt in sh py; do
        out=$(awsinv $rt-echo '{"via": "aws"}' "$WORK/aws-$rt.json")
        check "$rt-echo: aws lambda invoke answers 200 with the echo" \
            "grep -q '\"StatusCode\": 200' <<<\"\$out\" && ! grep -q FunctionError <<<\"\$out\" && [ \"\$(json_get '$WORK/aws-$rt.json' 'd[\"echo\"][\"via\"]')\" = aws ]" \
            "$out" "$(cat "$WORK/aws-$rt.json" 2>/dev/null)"
        out=$(awsinv $rt-echo '"fail now"' "$WORK/aws-$rt-fail.json" --log-type Tail)
        check "$rt-echo: aws: a handler error answers 200 + FunctionError Unhandled, errorMessage in the body" \
            "grep -q '\"StatusCode\": 200' <<<\"\$out\" && grep -q '\"FunctionError\": \"Unhandled\"' <<<\"\$out\" && json_get '$WORK/aws-$rt-fail.json' 'd[\"errorMessage\"]' | grep -q 'the handler was asked to fail'" \
            "$out" "$(cat "$WORK/aws-$rt-fail.json" 2>/dev/null)"
        check "$rt-echo: aws: the error body's errorType is the runtime's (HandlerFailed), as Lambda reports it" \
            "[ \"\$(json_get '$WORK/aws-$rt-fail.json' 'd[\"errorType\"]')\" = HandlerFailed ]" \
            "body: $(cat "$WORK/aws-$rt-fail.json" 2>/dev/null)"
    done
    out=$(awsinv c-echo '{"c": 1}' "$WORK/aws-c.json")
    check "c-echo: aws lambda invoke echoes" \
        "grep -q '\"StatusCode\": 200' <<<\"\$out\" && [ \"\$(cat '$WORK/aws-c.json')\" = '{\"c\": 1}' ]" \
        "$out" "$(cat "$WORK/aws-c.json" 2>/dev/null)"
else
    skip "aws lambda invoke" "/usr/bin/aws not installed (Debian package awscli)"
fi
# The same through curl's own SigV4 signer: the raw headers.
code=$(curl -s --max-time 30 --aws-sigv4 "aws:amz:us-east-1:lambda" --user "$AKID:$SECRET" -D "$WORK/lh" \
    -o "$WORK/lb" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary '"fail via curl"' \
    "$URL/2015-03-31/functions/sh-echo/invocations")
check "sh-echo: Lambda endpoint (curl --aws-sigv4): a handler error is 200 + X-Amz-Function-Error" \
    "[ '$code' = 200 ] && grep -qi '^X-Amz-Function-Error: Unhandled' '$WORK/lh'" \
    "HTTP $code" "$(cat "$WORK/lh")" "$(cat "$WORK/lb")"

# --- the Lambda environment -----------------------------------------------------------------
deploy env-sh "{\"protocol\": \"lambda\", \"command\": [\"$RT/bootstrap\"], \"memory_mb\": 192, \"env\": {\"GREETING\": \"hi there\", \"_HANDLER\": \"app.main\"}}"
deploy env-py "{\"protocol\": \"lambda\", \"command\": [\"$RT/python_bootstrap.py\"], \"memory_mb\": 160, \"env\": {\"GREETING\": \"hi there\", \"_HANDLER\": \"app.main\"}}"
for f in env-sh:192 env-py:160; do
    mem=${f#*:}
    f=${f%:*}
    inv "$f" '"env"'
    e='d["echo"]'
    check "$f: the runtime sees AWS_LAMBDA_FUNCTION_NAME, _MEMORY_SIZE, AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001 and the spec's env" \
        "[ '$CODE' = 200 ] && [ \"\$(bget '$e[\"AWS_LAMBDA_FUNCTION_NAME\"]')\" = $f ] && [ \"\$(bget '$e[\"AWS_LAMBDA_FUNCTION_MEMORY_SIZE\"]')\" = $mem ] && [ \"\$(bget '$e[\"AWS_LAMBDA_RUNTIME_API\"]')\" = 127.0.0.1:9001 ] && [ \"\$(bget '$e[\"GREETING\"]')\" = 'hi there' ]" \
        "$(what)"
    check "$f: also AWS_LAMBDA_FUNCTION_VERSION, AWS_REGION, _HANDLER, LAMBDA_TASK_ROOT" \
        "[ \"\$(bget '$e[\"AWS_LAMBDA_FUNCTION_VERSION\"]')\" = '\$LATEST' ] && [ -n \"\$(bget '$e[\"AWS_REGION\"]')\" ] && [ -n \"\$(bget '$e[\"_HANDLER\"]')\" ] && [ -n \"\$(bget '$e[\"LAMBDA_TASK_ROOT\"]')\" ]" \
        "$(what)"
    check "$f: the spec's _HANDLER replaces the default" "[ \"\$(bget '$e[\"_HANDLER\"]')\" = app.main ]" "$(what)"
done

# --- init failures --------------------------------------------------------------------------
deploy init-exit '{"protocol": "lambda", "command": ["/bin/sh", "-c", "echo init is failing >&2; exit 3"]}'
inv init-exit '"x"'
check "init-exit: a runtime exiting during init answers 502 start_failed" \
    "[ '$CODE' = 502 ] && [ \"\$(bget 'd[\"error\"]')\" = start_failed ]" "$(what)"
check "init-exit: the message names the exit status 3" "bget 'd[\"message\"]' | grep -q 'exit status 3'" "$(what)"
check "init-exit: answered quickly (< 5 s; init's limit is 9 s)" "[ $MS -lt 5000 ]" "$(what)"
inv init-exit '"y"'
check "init-exit: a second call fails the same way, quickly" \
    "[ '$CODE' = 502 ] && [ \"\$(bget 'd[\"error\"]')\" = start_failed ] && [ $MS -lt 5000 ]" "$(what)"

deploy init-error-sh "{\"protocol\": \"lambda\", \"command\": [\"$RT/bootstrap\"], \"env\": {\"BOOTSTRAP_INIT_ERROR\": \"cannot load handler xyz\"}}"
deploy init-error-py "{\"protocol\": \"lambda\", \"command\": [\"$RT/python_bootstrap.py\"], \"env\": {\"BOOTSTRAP_INIT_ERROR\": \"no module named handler\"}}"
for f in "init-error-sh:cannot load handler xyz" "init-error-py:no module named handler"; do
    msg=${f#*:}
    f=${f%%:*}
    inv "$f" '"x"'
    check "$f: a runtime posting init/error answers 502 with its errorMessage (and errorType)" \
        "[ '$CODE' = 502 ] && bget 'd[\"message\"]' | grep -qF '$msg' && bget 'd[\"message\"]' | grep -q 'Runtime.InitError'" \
        "$(what)"
    check "$f: quickly (< 5 s)" "[ $MS -lt 5000 ]" "$(what)"
done
deploy never-asks '{"protocol": "lambda", "command": ["/bin/sleep", "60"]}'
inv never-asks '"x"' --max-time 60
# The scheduler gives up after 3 consecutive failed starts: 3 × the 9 s init limit, within the 30 s queue timeout.
check "never-asks: a runtime that never calls next answers 502 start_failed naming the init limit (3 starts x 9 s)" \
    "[ '$CODE' = 502 ] && [ \"\$(bget 'd[\"error\"]')\" = start_failed ] && bget 'd[\"message\"]' | grep -q 'did not ask for an invocation within 9 s' && [ $MS -ge 8000 ] && [ $MS -lt 40000 ]" \
    "$(what)"

# --- a hang past timeout_ms, a crash mid-call ------------------------------------------------
for rt in sh:bootstrap py:python_bootstrap.py; do
    exe=${rt#*:}
    rt=${rt%%:*}
    f=hang-$rt
    deploy "$f" "{\"protocol\": \"lambda\", \"command\": [\"$RT/$exe\"], \"timeout_ms\": 1000}"
    inv "$f" '"warm up"'
    pid1=$(bget 'd["pid"]')
    [ "$CODE" = 200 ] || note "$f: the warm-up call answered $(what)"
    inv "$f" '"hang"'
    check "$f: a handler hanging past timeout_ms 1000 answers 504 timeout within ~1 s" \
        "[ '$CODE' = 504 ] && [ \"\$(bget 'd[\"error\"]')\" = timeout ] && [ $MS -ge 900 ] && [ $MS -lt 4000 ]" "$(what)"
    inv "$f" '"after"'
    # A new sandbox: a fresh runtime (its counter restarts). It reports cold
    # when the call waited for it, warm when the scheduler had already
    # replaced the dead sandbox before the call came in.
    check "$f: the next call works, in a new sandbox (another runtime process)" \
        "[ '$CODE' = 200 ] && [ \"\$(bget 'd[\"echo\"]')\" = after ] && [ \"\$(bget 'd[\"count\"]')\" = 1 ] && [ \"\$(bget 'd[\"pid\"]')\" != '' ]" \
        "$(what)"

    f=crash-$rt
    deploy "$f" "{\"protocol\": \"lambda\", \"command\": [\"$RT/$exe\"], \"timeout_ms\": 10000}"
    inv "$f" '"warm up"'
    [ "$CODE" = 200 ] || note "$f: the warm-up call answered $(what)"
    inv "$f" '"crash"'
    check "$f: a runtime exiting mid-invocation answers 502 naming its exit status, quickly" \
        "[ '$CODE' = 502 ] && bget 'd[\"message\"]' | grep -q 'exit status 7' && [ $MS -lt 4000 ]" "$(what)"
    inv "$f" '"after"'
    check "$f: the next call works, in a new sandbox (counter restarted)" \
        "[ '$CODE' = 200 ] && [ \"\$(bget 'd[\"echo\"]')\" = after ] && [ \"\$(bget 'd[\"count\"]')\" = 1 ]" \
        "$(what)"
done

# --- the runtime's processes, then SIGTERM ---------------------------------------------------
procs=$(uid_range_procs "$UID_BASE" 256 | grep -c -E 'bootstrap|echo_runtime')
check "runtimes run as sandbox uids (in [$UID_BASE, +256))" "[ $procs -ge 3 ]" "$(uid_range_procs "$UID_BASE" 256)"
stop_daemon
check "hearthd exits 0 on SIGTERM" "[ '$DAEMON_RC' = 0 ]" "exit $DAEMON_RC" "$(tail -n 20 "$WORK/log")"
left=$(cgroup_leftovers "$CG")
check "no cgroup left under $CG" "[ -z \"\$left\" ]" "$left"
# Orphans are reaped by pid 1: give it a moment, but say if there were zombies at exit.
zombies=$(ps -eo pid=,ppid=,uid=,stat=,args= | awk -v lo="$UID_BASE" -v hi="$((UID_BASE + 256))" '$3 >= lo && $3 < hi && $4 ~ /Z/')
[ -z "$zombies" ] || note "unreaped sandbox processes right after hearthd exited (pid ppid uid stat args):" "$zombies"
for _ in $(seq 1 30); do
    left=$(uid_range_procs "$UID_BASE" 256)
    [ -z "$left" ] && break
    sleep 0.1
done
check "no sandbox process left (within 3 s)" "[ -z \"\$left\" ]" "$left"
finish
