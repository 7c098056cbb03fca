#!/bin/bash
# The Lambda-compatible invoke endpoint (issue 5): the AWS CLI and boto3
# invoke through it with a tenant's keys; a wrong key, a wrong signature or a
# stale date answers 403. Needs Debian's awscli and python3-boto3 (installed
# by scripts/install-deps); each is skipped with a message where absent.
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { skip "lambda endpoint" "needs root"; finish; }
[ -x "$HEARTHD" ] || { skip "lambda endpoint" "hearthd not built"; finish; }
make_workdir hearth-lambda
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
AKID=AKIAHEARTHTEST$(printf '%06d' $((RANDOM % 1000000)))
SECRET=$(new_token)
cat >"$WORK/hearthd.json" <<EOT
{"listen_unix": "$WORK/run/hearth.sock", "listen_http": "127.0.0.1:$PORT", "state_dir": "$WORK/state",
 "functions_dir": "", "cgroup_root": "hearth-lambda-$$", "uid_base": 820000, "uid_count": 256, "log_level": "warn",
 "tenants": [{"name": "t1", "uids": [0], "aws_keys": [{"access_key_id": "$AKID", "secret_access_key": "$SECRET"}]},
             {"name": "t2", "uids": [], "tokens_sha256": ["$(sha256_hex other-token)"]}]}
EOT
start_daemon "$WORK/hearthd.json" "$WORK/log" "$WORK/run/hearth.sock" || { not_ok "hearthd starts"; finish; }
S=(curl -s --unix-socket "$WORK/run/hearth.sock")
"${S[@]}" -X PUT -d '{"command":["/bin/sh","-c","echo \"hello, $(cat)\"; echo to-the-log >&2"]}' \
    http://x/v1/functions/hello -o /dev/null
"${S[@]}" -X PUT -d '{"command":["/bin/sh","-c","echo oops >&2; exit 4"]}' http://x/v1/functions/fails -o /dev/null

export AWS_ACCESS_KEY_ID=$AKID AWS_SECRET_ACCESS_KEY=$SECRET AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
AWS=/usr/bin/aws
if [ -x "$AWS" ]; then
    out=$("$AWS" --endpoint-url "$URL" lambda invoke --function-name hello --payload '"cli"' \
        --cli-binary-format raw-in-base64-out "$WORK/out.json" 2>&1)
    check "aws cli: RequestResponse answers 200 with the output" \
        "grep -q '\"StatusCode\": 200' <<<\"\$out\" && grep -q 'hello, \"cli\"' '$WORK/out.json'" "$out"
    out=$("$AWS" --endpoint-url "$URL" lambda invoke --function-name fails --log-type Tail "$WORK/out2.json" 2>&1)
    log=$(sed -n 's/.*"LogResult": "\(.*\)".*/\1/p' <<<"$out" | base64 -d 2>/dev/null)
    check "aws cli: a failing function answers FunctionError Unhandled, errorType, log tail" \
        "grep -q '\"FunctionError\": \"Unhandled\"' <<<\"\$out\" && grep -q Runtime.ExitError '$WORK/out2.json' && grep -q oops <<<\"\$log\"" \
        "$out" "$(cat "$WORK/out2.json")"
    out=$("$AWS" --endpoint-url "$URL" lambda invoke --function-name hello --invocation-type Event "$WORK/o3" 2>&1)
    check "aws cli: Event answers 202" "grep -q '\"StatusCode\": 202' <<<\"\$out\"" "$out"
    out=$("$AWS" --endpoint-url "$URL" lambda invoke --function-name hello --invocation-type DryRun "$WORK/o4" 2>&1)
    check "aws cli: DryRun answers 204" "grep -q '\"StatusCode\": 204' <<<\"\$out\"" "$out"
    out=$(AWS_SECRET_ACCESS_KEY=wrong-secret-000000000 "$AWS" --endpoint-url "$URL" lambda invoke \
        --function-name hello "$WORK/o5" 2>&1)
    check "aws cli: a wrong secret is refused (InvalidSignatureException)" "grep -q InvalidSignatureException <<<\"\$out\"" "$out"
    out=$(AWS_ACCESS_KEY_ID=AKIANOSUCHKEY0000000 "$AWS" --endpoint-url "$URL" lambda invoke \
        --function-name hello "$WORK/o6" 2>&1)
    check "aws cli: an unknown key is refused (UnrecognizedClientException)" \
        "grep -q UnrecognizedClientException <<<\"\$out\"" "$out"
    out=$("$AWS" --endpoint-url "$URL" lambda invoke --function-name nope "$WORK/o7" 2>&1)
    check "aws cli: an unknown function is ResourceNotFoundException" "grep -q ResourceNotFoundException <<<\"\$out\"" "$out"
else
    skip "aws cli" "/usr/bin/aws not installed (Debian package awscli)"
fi

PY=/usr/bin/python3
if "$PY" -c 'import boto3' 2>/dev/null; then
    out=$(URL=$URL "$PY" - <<'EOP' 2>&1
import os, boto3, botocore, datetime
from unittest import mock
c = boto3.client("lambda", endpoint_url=os.environ["URL"])
r = c.invoke(FunctionName="hello", Payload=b"boto")
print("ok1", r["StatusCode"], r["Payload"].read().decode().strip())
r = c.invoke(FunctionName="arn:aws:lambda:us-east-1:123456789012:function:hello", Payload=b"arn")
print("ok2", r["StatusCode"], r["Payload"].read().decode().strip())
# A request signed 10 minutes ago is stale. Signed by hand: the client
# would notice the skew from our Date header and sign again.
import urllib.request, urllib.error
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
url = os.environ["URL"] + "/2015-03-31/functions/hello/invocations"
req = AWSRequest(method="POST", url=url, data=b"old")
past = datetime.datetime.utcnow() - datetime.timedelta(minutes=10)
with mock.patch("botocore.auth.datetime") as dt:
    dt.datetime.utcnow.return_value = past
    SigV4Auth(Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]), "lambda",
              "us-east-1").add_auth(req)
try:
    urllib.request.urlopen(urllib.request.Request(url, data=b"old", headers=dict(req.headers.items()), method="POST"))
    print("stale accepted")
except urllib.error.HTTPError as e:
    print("stale", e.code, e.headers.get("x-amzn-ErrorType"))
EOP
)
    check "boto3: invoke by name" "grep -q '^ok1 200 hello, boto$' <<<\"\$out\"" "$out"
    check "boto3: invoke by ARN" "grep -q '^ok2 200 hello, arn$' <<<\"\$out\"" "$out"
    check "boto3: a stale date answers 403 InvalidSignatureException" \
        "grep -q '^stale 403 InvalidSignatureException' <<<\"\$out\"" "$out"
else
    skip "boto3" "python3-boto3 not installed for /usr/bin/python3"
fi

code=$(curl -s -o "$WORK/o8" -w '%{http_code}' -d x "$URL/2015-03-31/functions/hello/invocations")
check "no signature at all answers 403" "[ $code = 403 ]" "got $code: $(cat "$WORK/o8")"
stop_daemon
check "hearthd exits 0" "[ '$DAEMON_RC' = 0 ]" "exit $DAEMON_RC"
finish
