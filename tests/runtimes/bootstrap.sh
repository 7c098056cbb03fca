#!/bin/sh
# An AWS Lambda custom runtime (`bootstrap`) in plain shell with curl, written
# as one would for AWS itself: poll invocation/next, answer invocation/{id}/response.
# The handler echoes the event back as {"echo": EVENT, "count": N, "pid": PID,
# "runtime": "sh"} (N counts the invocations this process served: it shows the
# runtime stays warm). Special events, for the tests:
#   a payload containing "fail"   reports a handler error (invocation/{id}/error)
#   "crash"                       the runtime exits 7 mid-invocation
#   "hang"                        the handler never answers
#   "env"                         answers with the Lambda environment it sees
set -u
API="http://${AWS_LAMBDA_RUNTIME_API:?AWS_LAMBDA_RUNTIME_API is not set}/2018-06-01/runtime"
DIR=$(mktemp -d /tmp/bootstrap.XXXXXX) || exit 1
HDR=$DIR/headers
EVENT=$DIR/event
COUNT=0

if [ -n "${BOOTSTRAP_INIT_ERROR:-}" ]; then
    curl -sS -X POST -H 'Lambda-Runtime-Function-Error-Type: Runtime.InitError' \
        -d "{\"errorMessage\": \"$BOOTSTRAP_INIT_ERROR\", \"errorType\": \"Runtime.InitError\"}" \
        "$API/init/error" >/dev/null
    exit 1
fi

while :; do
    # Blocks until there is an invocation.
    curl -sS -D "$HDR" -o "$EVENT" "$API/invocation/next" || { sleep 0.1; continue; }
    ID=$(sed -n 's/^[Ll]ambda-[Rr]untime-[Aa]ws-[Rr]equest-[Ii]d:[[:space:]]*//p' "$HDR" | tr -d '\r\n')
    [ -n "$ID" ] || continue
    COUNT=$((COUNT + 1))
    BODY=$(cat "$EVENT")
    case $BODY in
    *fail*)
        curl -sS -X POST -H 'Lambda-Runtime-Function-Error-Type: HandlerFailed' \
            -d '{"errorMessage": "the handler was asked to fail", "errorType": "HandlerFailed"}' \
            "$API/invocation/$ID/error" >/dev/null
        continue
        ;;
    *crash*)
        echo "bootstrap: crashing on purpose" >&2
        exit 7
        ;;
    *hang*)
        echo "bootstrap: hanging on purpose" >&2
        sleep 3600
        ;;
    '"env"')
        BODY=$(printf '{"AWS_LAMBDA_FUNCTION_NAME": "%s", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "%s", "AWS_LAMBDA_RUNTIME_API": "%s", "AWS_LAMBDA_FUNCTION_VERSION": "%s", "AWS_REGION": "%s", "_HANDLER": "%s", "LAMBDA_TASK_ROOT": "%s", "GREETING": "%s"}' \
            "${AWS_LAMBDA_FUNCTION_NAME:-}" "${AWS_LAMBDA_FUNCTION_MEMORY_SIZE:-}" "${AWS_LAMBDA_RUNTIME_API:-}" \
            "${AWS_LAMBDA_FUNCTION_VERSION:-}" "${AWS_REGION:-}" "${_HANDLER:-}" "${LAMBDA_TASK_ROOT:-}" "${GREETING:-}")
        ;;
    esac
    [ -n "$BODY" ] || BODY=null
    echo "bootstrap: invocation $COUNT ($ID)" >&2
    printf '{"echo": %s, "count": %d, "pid": %d, "runtime": "sh"}' "$BODY" "$COUNT" "$$" |
        curl -sS -X POST --data-binary @- "$API/invocation/$ID/response" >/dev/null
done
