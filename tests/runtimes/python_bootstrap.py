#!/usr/bin/python3
"""An AWS Lambda custom runtime in Python using only the standard library.

Polls invocation/next and answers invocation/{id}/response with
{"echo": EVENT, "count": N, "pid": PID, "runtime": "python"} (N counts the
invocations this process served). Special events, for the tests:
  a payload containing "fail"  reports a handler error (invocation/{id}/error)
  "crash"                      the runtime exits 7 mid-invocation
  "hang"                       the handler never answers
  "env"                        answers with the Lambda environment it sees
With BOOTSTRAP_INIT_ERROR set it reports that message to init/error and exits.
"""
import json
import os
import sys
import time
import urllib.request

API = "http://%s/2018-06-01/runtime" % os.environ["AWS_LAMBDA_RUNTIME_API"]


def post(path, body, headers=None):
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body
    req = urllib.request.Request(API + path, data=data, method="POST", headers=headers or {})
    with urllib.request.urlopen(req) as r:
        r.read()


def handler(event, count):
    if event == "env":
        names = ["AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_RUNTIME_API",
                 "AWS_LAMBDA_FUNCTION_VERSION", "AWS_REGION", "_HANDLER", "LAMBDA_TASK_ROOT", "GREETING"]
        event = {n: os.environ.get(n, "") for n in names}
    return {"echo": event, "count": count, "pid": os.getpid(), "runtime": "python"}


def main():
    init_error = os.environ.get("BOOTSTRAP_INIT_ERROR")
    if init_error:
        post("/init/error", {"errorMessage": init_error, "errorType": "Runtime.InitError"},
             {"Lambda-Runtime-Function-Error-Type": "Runtime.InitError"})
        sys.exit(1)
    count = 0
    while True:
        try:
            with urllib.request.urlopen(API + "/invocation/next") as r:
                rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
                raw = r.read()
        except OSError as e:
            print("python_bootstrap: next: %s" % e, file=sys.stderr, flush=True)
            time.sleep(0.1)
            continue
        count += 1
        text = raw.decode("utf-8", "replace")
        if "fail" in text:
            post("/invocation/%s/error" % rid,
                 {"errorMessage": "the handler was asked to fail", "errorType": "HandlerFailed"},
                 {"Lambda-Runtime-Function-Error-Type": "HandlerFailed"})
            continue
        if "crash" in text:
            print("python_bootstrap: crashing on purpose", file=sys.stderr, flush=True)
            os._exit(7)
        if "hang" in text:
            print("python_bootstrap: hanging on purpose", file=sys.stderr, flush=True)
            time.sleep(3600)
        try:
            event = json.loads(raw) if raw else None
        except ValueError:
            event = text
        print("python_bootstrap: invocation %d (%s)" % (count, rid), file=sys.stderr, flush=True)
        post("/invocation/%s/response" % rid, handler(event, count))


if __name__ == "__main__":
    main()
