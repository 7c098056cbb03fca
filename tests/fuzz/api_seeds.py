#!/usr/bin/python3
"""Writes the seed corpus of fuzz_api (tests/fuzz/corpus/api/): one raw
HTTP/1.1 exchange per file, for every route of hearthd's API. The Lambda
endpoint's seeds are signed with SigV4 at fuzz_api's pinned time
(2024-05-17T12:34:56Z) with the `other` tenant's key; run again after
changing the harness's tenants or keys."""
import hashlib
import hmac
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus', 'api')
DEMO, ADMIN, OTHER = 'fuzz-demo-token', 'fuzz-admin-token', 'fuzz-other-token'
AKID, SECRET = 'AKIAFUZZFUZZFUZZ0001', 'hearthFuzzSecretKey/0123456789+abcdefghij'
DATE, DAY = '20240517T123456Z', '20240517'


def req(method, path, body=b'', token=None, headers=(), close=False):
    if isinstance(body, str):
        body = body.encode()
    lines = ['%s %s HTTP/1.1' % (method, path), 'Host: localhost']
    if token:
        lines.append('Authorization: Bearer ' + token)
    lines += ['%s: %s' % h for h in headers]
    if body or method in ('POST', 'PUT'):
        lines.append('Content-Length: %d' % len(body))
    if close:
        lines.append('Connection: close')
    return ('\r\n'.join(lines) + '\r\n\r\n').encode() + body


def signed(name, body, extra=(), query=''):
    """POST /2015-03-31/functions/NAME/invocations, signed as botocore does."""
    path = '/2015-03-31/functions/%s/invocations' % name
    body = body.encode() if isinstance(body, str) else body
    hdrs = [('host', 'localhost'), ('x-amz-date', DATE)] + [(k.lower(), v) for k, v in extra]
    hdrs.sort()
    signed_names = ';'.join(k for k, _ in hdrs)
    canonical = '\n'.join(['POST', path, query] + ['%s:%s' % (k, v) for k, v in hdrs] +
                          ['', signed_names, hashlib.sha256(body).hexdigest()])
    scope = '%s/us-east-1/lambda/aws4_request' % DAY
    to_sign = '\n'.join(['AWS4-HMAC-SHA256', DATE, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ('AWS4' + SECRET).encode()
    for part in (DAY, 'us-east-1', 'lambda', 'aws4_request'):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    auth = 'AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s' % (AKID, scope, signed_names, sig)
    lines = ['POST %s%s HTTP/1.1' % (path, '?' + query if query else ''), 'Host: localhost', 'X-Amz-Date: ' + DATE,
             'Authorization: ' + auth] + ['%s: %s' % h for h in extra] + ['Content-Length: %d' % len(body)]
    return ('\r\n'.join(lines) + '\r\n\r\n').encode() + body


SPEC = '{"command": ["/bin/cat"], "memory_mb": 64, "timeout_ms": 2000, "env": {"A": "b"}}'
seeds = {
    'healthz': req('GET', '/healthz'),
    'readyz': req('GET', '/readyz'),
    'metrics': req('GET', '/metrics'),
    'put_function': req('PUT', '/v1/functions/f1', SPEC),
    'put_full_spec': req('PUT', '/v1/functions/full', '{"name": "full", "tenant": "demo", "protocol": "stdio", '
                         '"command": ["/bin/sh", "-c", "cat"], "rootfs": "/", "mounts": [{"source": "/usr", '
                         '"target": "/mnt", "readonly": true}], "env": {"X": "1"}, "memory_mb": 32, "cpus": 0.5, '
                         '"pids": 8, "timeout_ms": 100, "tmp_mb": 1, "concurrency": 1, "min_warm": 0, '
                         '"max_sandboxes": 2, "keep_alive_ms": 0, "seccomp": "default", "max_attempts": 2}',
                         token=DEMO),
    'put_then_get_delete': req('PUT', '/v1/functions/tmp', SPEC) + req('GET', '/v1/functions/tmp') +
                           req('DELETE', '/v1/functions/tmp') + req('GET', '/v1/functions/tmp'),
    'put_bad_json': req('PUT', '/v1/functions/bad', '{"command": ["/bin/cat"'),
    'put_dup_keys': req('PUT', '/v1/functions/dup', '{"command": ["/bin/cat"], "command": ["/bin/sh"]}'),
    'put_nested': req('PUT', '/v1/functions/deep', '{"env": ' + '[' * 200 + ']' * 200 + '}'),
    'put_bad_utf8': req('PUT', '/v1/functions/utf', b'{"command": ["/bin/\xff\xfe"]}'),
    'put_http_protocol': req('PUT', '/v1/functions/web', '{"protocol": "http", "command": ["/srv"]}'),
    'put_name_mismatch': req('PUT', '/v1/functions/a', '{"name": "b", "command": ["/bin/cat"]}'),
    'put_other_tenant': req('PUT', '/v1/functions/x', '{"tenant": "other", "command": ["/bin/cat"]}'),
    'put_unknown_tenant_admin': req('PUT', '/v1/functions/z', '{"tenant": "nope", "command": ["/bin/cat"]}',
                                    token=ADMIN),
    'admin_put_for_tenant': req('PUT', '/v1/tenants/other/functions/y', SPEC, token=ADMIN),
    'list': req('GET', '/v1/functions'),
    'list_admin': req('GET', '/v1/functions', token=ADMIN) + req('GET', '/v1/tenants/demo/functions', token=ADMIN),
    'get_file_function': req('GET', '/v1/functions/echo'),
    'delete_file_function': req('DELETE', '/v1/functions/echo'),
    'invoke': req('POST', '/v1/functions/echo/invocations', 'hello'),
    'invoke_lambda_fn': req('POST', '/v1/functions/lam/invocations', '{"key": "value"}'),
    'invoke_other_tenant': req('POST', '/v1/functions/hello/invocations', 'x', token=OTHER) +
                           req('POST', '/v1/functions/hello/invocations', 'x', token=DEMO),
    'invoke_async': req('POST', '/v1/functions/echo/invocations', '{"a": 1}',
                        headers=[('Prefer', 'respond-async'), ('Idempotency-Key', 'k1')]),
    'invoke_async_callback': req('POST', '/v1/functions/lam/invocations', 'x',
                                 headers=[('Prefer', 'respond-async'), ('X-Callback-Url', 'http://127.0.0.1:9/cb')]),
    'invoke_async_bad_callback': req('POST', '/v1/functions/echo/invocations', 'x',
                                     headers=[('Prefer', 'respond-async'), ('X-Callback-Url', 'ftp://x/')]),
    'invocation_get': req('GET', '/v1/invocations/00000000000000000000000000000000'),
    'invocation_retry': req('POST', '/v1/invocations/00000000000000000000000000000000/retry', ''),
    'list_invocations': req('GET', '/v1/functions/echo/invocations?status=dead&limit=5') +
                        req('GET', '/v1/functions/echo/invocations?status=bogus') +
                        req('GET', '/v1/functions/echo/invocations?limit=-1'),
    'usage': req('GET', '/v1/usage') + req('GET', '/v1/usage', token=ADMIN) +
             req('GET', '/v1/tenants/other/usage', token=ADMIN) + req('GET', '/v1/tenants/other/usage'),
    'status': req('GET', '/v1/status') + req('GET', '/v1/status', token=ADMIN),
    'bad_token': req('GET', '/v1/functions', token='nope') + req('GET', '/v1/functions', headers=[('Authorization', 'Basic eDp5')]),
    'bad_methods': req('PATCH', '/v1/functions/echo') + req('POST', '/v1/functions') +
                   req('PUT', '/v1/functions/echo/invocations', 'x') + req('HEAD', '/v1/functions'),
    'bad_paths': req('GET', '/v1/functions/%2F..%2Fetc') + req('GET', '/v1//functions') +
                 req('GET', '/v1/functions/echo/invocations/extra/more') + req('GET', '/nothing') +
                 req('GET', '/v1/' + 'a/' * 10) + req('GET', '/v1/functions/' + 'x' * 300),
    'pipelined_close': req('GET', '/healthz') + req('GET', '/v1/functions') + req('GET', '/readyz', close=True),
    'chunked_put': b'PUT /v1/functions/chunky HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'
                   b'10\r\n{"command": ["/b\r\n9\r\nin/cat"]}\r\n0\r\n\r\n',
    'content_length_huge': b'POST /v1/functions/echo/invocations HTTP/1.1\r\nHost: x\r\n'
                           b'Content-Length: 10737418240\r\n\r\nabc',
    'http10': b'GET /v1/functions HTTP/1.0\r\n\r\n',
    'lambda_invoke': signed('hello', '{"k": "v"}'),
    'lambda_invoke_event': signed('hello', '"x"', extra=[('X-Amz-Invocation-Type', 'Event')]),
    'lambda_invoke_dryrun_tail': signed('hello', '{}', extra=[('X-Amz-Invocation-Type', 'DryRun'),
                                                               ('X-Amz-Log-Type', 'Tail')]),
    'lambda_invoke_arn': signed('arn:aws:lambda:us-east-1:123456789012:function:hello', '{}'),
    'lambda_invoke_qualifier': signed('hello', '{}', query='Qualifier=%24LATEST'),
    'lambda_invoke_missing': signed('nope', '{}'),
    # Several connections ("\n@@\n" between them), their requests in the same loop iterations.
    'conc_invoke_delete': req('PUT', '/v1/functions/c1', SPEC) + b'\n@@\n' +
                          req('POST', '/v1/functions/c1/invocations', 'x') + b'\n@@\n' +
                          req('DELETE', '/v1/functions/c1') + b'\n@@\n' + req('GET', '/v1/status'),
    'conc_put_invoke_async': req('PUT', '/v1/functions/c2', SPEC) + b'\n@@\n' +
                             req('POST', '/v1/functions/c2/invocations', 'x', headers=[('Prefer', 'respond-async')]) +
                             b'\n@@\n' + req('PUT', '/v1/functions/c2', SPEC.replace('2000', '3000')),
    'conc_partial_and_whole': b'POST /v1/functions/echo/invocations HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc' +
                              b'\n@@\n' + req('GET', '/metrics'),
    'lambda_unsigned': req('POST', '/2015-03-31/functions/hello/invocations', '{}'),
}
os.makedirs(OUT, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(OUT, name), 'wb') as f:
        f.write(data)
print('%d seeds in %s' % (len(seeds), OUT))
