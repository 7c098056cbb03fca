#!/bin/bash
# Network abuse against a running hearthd over TCP, as a hostile client would
# do it: slowloris (trickled request lines, headers, bodies, and a trickled
# second request on a kept-alive connection), a 10 GB Content-Length, an
# endless chunked body, 100,000 headers, malformed JSON (truncated, deeply
# nested, invalid UTF-8, duplicate keys, NUL) to PUT /v1/functions and to a
# function that parses its payload as JSON, and 1,000 concurrent calls to a
# cold function.
# Expected: early 4xx answers (the body or headers are refused before they
# are read in full), connections cut within a bound of read_timeout_ms,
# 429/503 with Retry-After for what exceeds capacity and nothing else, no
# hang; /healthz answering throughout; hearthd's resident memory bounded
# during and after; a well-behaved client's latency during the abuse within
# a generous ratio of its latency before (both measured in this run).
# Needs root (sandboxes), python3, curl. Binaries from $HEARTH_BIN (default
# <repo>/bin). TAP output; the last line is "N passed, N failed[, N skipped]".
# shellcheck disable=SC2016  # check's conditions are single-quoted on purpose: evaluated later
# shellcheck source-path=SCRIPTDIR source=lib.sh
set -u
. "$(dirname "$0")/lib.sh"

if [ ! -x "$HEARTHD" ]; then
    skip "network abuse" "hearthd not built (run make, or set HEARTH_BIN)"
    finish
fi
if [ "$(id -u)" != 0 ]; then
    skip "network abuse" "needs root (hearthd runs sandboxes)"
    finish
fi
for t in curl python3; do
    command -v $t >/dev/null || { not_ok "$t present" "the test needs $t (scripts/install-deps)"; finish; }
done

make_workdir hearth-abuse-test
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
SOCK=$WORK/run/hearth.sock
CGROOT=hearth-itest-abuse-$$
UID_BASE=$((5200000 + ($$ % 10000) * 64))
TOKEN=$(new_token)
READ_TIMEOUT_MS=2000
MAX_BODY=1048576
mkdir -p "$WORK/state" "$WORK/functions"
cat >"$WORK/hearthd.json" <<EOF
{
  "listen_unix": "$SOCK",
  "listen_http": "127.0.0.1:$PORT",
  "state_dir": "$WORK/state",
  "functions_dir": "$WORK/functions",
  "cgroup_root": "$CGROOT",
  "uid_base": $UID_BASE,
  "uid_count": 64,
  "prewarm_pool": 0,
  "max_sandboxes": 16,
  "max_body_bytes": $MAX_BODY,
  "max_header_bytes": 16384,
  "max_connections": 2048,
  "read_timeout_ms": $READ_TIMEOUT_MS,
  "drain_timeout_ms": 10000,
  "log_level": "warn",
  "tenants": [{"name": "t1", "tokens_sha256": ["$(sha256_hex "$TOKEN")"], "uids": [0], "max_concurrency": 1000}]
}
EOF
# echo: the well-behaved client's function, kept warm. cold: no sandbox until
# called, at most 4. slow: one sandbox, 0.2 s a call, so that a burst
# overflows its queue (1,000 deep). json: parses its payload (python3 from
# the host's root).
cat >"$WORK/functions/echo.json" <<EOF
{"name": "echo", "tenant": "t1", "command": ["/bin/cat"], "min_warm": 1, "max_sandboxes": 2, "memory_mb": 64}
EOF
cat >"$WORK/functions/cold.json" <<EOF
{"name": "cold", "tenant": "t1", "command": ["/bin/cat"], "max_sandboxes": 4, "memory_mb": 64, "timeout_ms": 60000}
EOF
cat >"$WORK/functions/slow.json" <<EOF
{"name": "slow", "tenant": "t1", "command": ["/bin/sh", "-c", "sleep 0.2; cat"], "max_sandboxes": 1,
 "memory_mb": 64, "timeout_ms": 60000}
EOF
cat >"$WORK/functions/json.json" <<EOF
{"name": "json", "tenant": "t1", "max_sandboxes": 2, "memory_mb": 128, "timeout_ms": 20000,
 "command": ["/usr/bin/python3", "-c", "import json, sys; json.load(sys.stdin); print('parsed')"]}
EOF
LOG=$WORK/hearthd.log
if start_daemon "$WORK/hearthd.json" "$LOG" "$SOCK" "$URL" >"$WORK/start.out"; then
    ok "hearthd starts"
else
    not_ok "hearthd starts" "$(cat "$WORK/start.out")"
    finish
fi
# echo's min_warm sandbox, so that the baseline is a warm call.
for _ in $(seq 1 50); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Authorization: Bearer $TOKEN" -d x \
        "$URL/v1/functions/echo/invocations")" = 200 ] && break
    sleep 0.1
done

# The attacker, the well-behaved client and the watcher, in one asyncio
# program. Each phase prints `check <0|1> <name> | <detail>`.
cat >"$WORK/abuse.py" <<'PY'
import asyncio, json, os, resource, statistics, sys, time

PORT, TOKEN, PID = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
READ_TIMEOUT = int(sys.argv[4]) / 1000
MAX_BODY = int(sys.argv[5])
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
AUTH = 'Authorization: Bearer %s\r\n' % TOKEN


def check(ok, name, detail=''):
    print('check %d %s | %s' % (1 if ok else 0, name, detail), flush=True)


def fds():
    return len(os.listdir('/proc/%d/fd' % PID))


async def live_sandboxes():
    st, _, b, _ = await call('GET', '/v1/status')
    return sum(sum(f['sandboxes'].values()) for f in json.loads(b)['functions']) if st == 200 else -1


def rss_kib():
    with open('/proc/%d/status' % PID) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


async def read_response(r, timeout):
    """(status, headers dict, body) of one response; (None, {}, b'') if the
    connection ended or timed out first."""
    try:
        head = await asyncio.wait_for(r.readuntil(b'\r\n\r\n'), timeout)
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, asyncio.LimitOverrunError, ConnectionError):
        return None, {}, b''
    lines = head.decode('latin-1').split('\r\n')
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return None, {}, b''
    hdrs = {}
    for l in lines[1:]:
        if ':' in l:
            k, v = l.split(':', 1)
            hdrs[k.strip().lower()] = v.strip()
    body = b''
    try:
        if 'content-length' in hdrs:
            body = await asyncio.wait_for(r.readexactly(int(hdrs['content-length'])), timeout)
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
        pass
    return status, hdrs, body


async def call(method, path, body=b'', extra='', timeout=60):
    """A well-formed request on a fresh connection: (status, headers, body, seconds)."""
    t0 = time.monotonic()
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection('127.0.0.1', PORT), timeout)
    except (OSError, asyncio.TimeoutError):
        return None, {}, b'', time.monotonic() - t0
    w.write(('%s %s HTTP/1.1\r\nHost: x\r\n%s%sContent-Length: %d\r\nConnection: close\r\n\r\n'
             % (method, path, AUTH, extra, len(body))).encode() + body)
    st, h, b = await read_response(r, timeout)
    w.close()
    return st, h, b, time.monotonic() - t0


async def closed_within(r, limit):
    """Seconds until the peer closes (EOF or reset), or None after limit."""
    t0 = time.monotonic()
    try:
        while True:
            left = limit - (time.monotonic() - t0)
            if left <= 0:
                return None
            if not await asyncio.wait_for(r.read(65536), left):
                return time.monotonic() - t0
    except asyncio.TimeoutError:
        return None
    except ConnectionError:
        return time.monotonic() - t0


# --- the well-behaved client and the watcher, in the background -------------------------------
samples = {}       # phase -> [latency s]
bad_health = []    # (phase, status)
rss_peak = [0]
phase = ['idle']


async def watcher(stop):
    while not stop.is_set():
        st, _, b, dt = await call('POST', '/v1/functions/echo/invocations', b'ping', timeout=30)
        if st == 200 and b == b'ping':
            samples.setdefault(phase[0], []).append(dt)
        else:
            bad_health.append((phase[0], 'echo', st))
        st, _, _, _ = await call('GET', '/healthz', timeout=30)
        if st != 200:
            bad_health.append((phase[0], 'healthz', st))
        rss_peak[0] = max(rss_peak[0], rss_kib())
        await asyncio.sleep(0.05)


# --- the attacks ---------------------------------------------------------------------------------
async def slowloris(kind, n, results):
    """n connections that trickle a byte a second (the kept-alive kind after
    one complete request); record when the daemon cuts each."""
    async def one():
        try:
            r, w = await asyncio.open_connection('127.0.0.1', PORT)
        except OSError:
            results.append(('connect', None))
            return
        if kind == 'keepalive':
            w.write(b'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')
            st, _, _ = await read_response(r, 10)
            if st != 200:
                results.append(('first', None))
                w.close()
                return
        if kind == 'body':
            w.write(('POST /v1/functions/echo/invocations HTTP/1.1\r\nHost: x\r\n%sContent-Length: 1000\r\n\r\n'
                     % AUTH).encode())
            drip = b'x'
        else:
            w.write(b'POST /v1/functions/echo/invocations HTTP/1.1\r\nHost: x\r\n')
            drip = b'X-Slow: 1\r\n'
        t0 = time.monotonic()
        limit = 5 * READ_TIMEOUT + 2
        cut = None
        while time.monotonic() - t0 < limit:
            try:
                for byte in drip:
                    w.write(bytes([byte]))
                    await w.drain()
                    got = await closed_within(r, 1.0)
                    if got is not None:
                        raise ConnectionError
            except ConnectionError:
                cut = time.monotonic() - t0
                break
        results.append((kind, cut))
        w.close()

    await asyncio.gather(*(one() for _ in range(n)))


async def big_body(path, headers, gen, max_send):
    """Send headers then body pieces from gen until the daemon answers or
    closes, or max_send bytes went out: (status, bytes sent, seconds)."""
    r, w = await asyncio.open_connection('127.0.0.1', PORT)
    t0 = time.monotonic()
    w.write(('POST %s HTTP/1.1\r\nHost: x\r\n%s%s\r\n' % (path, AUTH, headers)).encode())
    sent = 0
    reader = asyncio.ensure_future(read_response(r, 30))
    try:
        for piece in gen:
            if reader.done() or sent >= max_send:
                break
            w.write(piece)
            sent += len(piece)
            await asyncio.wait_for(w.drain(), 5)
    except (ConnectionError, asyncio.TimeoutError):
        pass
    st, _, _ = await reader
    w.close()
    return st, sent, time.monotonic() - t0


def endless(piece):
    while True:
        yield piece


async def many_headers(n):
    r, w = await asyncio.open_connection('127.0.0.1', PORT)
    t0 = time.monotonic()
    w.write(('GET /v1/functions HTTP/1.1\r\nHost: x\r\n%s' % AUTH).encode())
    reader = asyncio.ensure_future(read_response(r, 30))
    sent = 0
    try:
        for i in range(n):
            if reader.done():
                break
            line = b'X-Header-%d: v\r\n' % i
            w.write(line)
            sent += len(line)
            if i % 500 == 0:
                await asyncio.wait_for(w.drain(), 5)
        else:
            w.write(b'\r\n')
    except (ConnectionError, asyncio.TimeoutError):
        pass
    st, _, _ = await reader
    w.close()
    return st, sent, time.monotonic() - t0


MALFORMED = {
    'truncated': b'{"command": ["/bin/cat"], "memory_mb": 6',
    'deeply nested (100,000 [)': b'{"command": ' + b'[' * 100000 + b']' * 100000 + b'}',
    'deeply nested objects': b'{"env": ' + b'{"a":' * 20000 + b'1' + b'}' * 20000 + b'}',
    'invalid UTF-8': b'{"command": ["/bin/\xff\xfe\xc0\x80"]}',
    'overlong UTF-8 in a key': b'{"comm\xc1\xa1nd": ["/bin/cat"]}',
    'duplicate keys': b'{"command": ["/bin/cat"], "command": ["/bin/sh"]}',
    'NUL in a string': b'{"command": ["/bin/cat\\u0000x"]}',
    'NUL byte raw': b'{"command": ["/bin/cat"]}\x00',
    'huge number': b'{"command": ["/bin/cat"], "memory_mb": 1' + b'0' * 5000 + b'}',
    'lone surrogate': b'{"command": ["\\ud800"]}',
    'not an object': b'[1, 2, 3]',
    'empty': b'',
}


async def main():
    # Baseline: the well-behaved client alone.
    base = []
    for _ in range(40):
        st, _, b, dt = await call('POST', '/v1/functions/echo/invocations', b'ping')
        if st == 200:
            base.append(dt)
    check(len(base) == 40, 'baseline: 40 warm calls of echo answered 200', '%d answered' % len(base))
    if not base:
        return
    base_med = statistics.median(base)
    rss0 = rss_kib()
    fds0, sbx0 = fds(), await live_sandboxes()
    print('# baseline: median %.2f ms, hearthd VmRSS %d KiB' % (base_med * 1000, rss0), flush=True)

    stop = asyncio.Event()
    watch = asyncio.ensure_future(watcher(stop))

    # Slowloris: 3 x 150 connections.
    phase[0] = 'slowloris'
    res = []
    await asyncio.gather(slowloris('headers', 150, res), slowloris('body', 150, res),
                         slowloris('keepalive', 150, res))
    bound = 3 * READ_TIMEOUT + 1
    for kind in ('headers', 'body', 'keepalive'):
        cuts = [c for k, c in res if k == kind]
        done = sorted(c for c in cuts if c is not None)
        print('# slowloris %s: %d of %d cut, median %s s' % (kind, len(done), len(cuts),
              '%.1f' % done[len(done) // 2] if done else '-'), flush=True)
        kept = [c for c in cuts if c is None or c > bound]
        worst = max((c for c in cuts if c is not None), default=None)
        check(len(cuts) == 150 and not kept,
              'slowloris (%s): 150 connections trickling a byte a second, each cut within %.0f s '
              '(3 x read_timeout_ms + 1 s)' % (kind, bound),
              '%d of %d not cut in time; slowest cut %s s; other outcomes: %s'
              % (len(kept), len(cuts), '%.1f' % worst if worst else '-',
                 [k for k, _ in res if k not in ('headers', 'body', 'keepalive')][:5]))

    # A 10 GB Content-Length, to an invocation and to a deploy.
    phase[0] = 'huge content-length'
    for path in ('/v1/functions/echo/invocations', '/v1/functions/big'):
        st, sent, dt = await big_body(path, 'Content-Length: 10737418240\r\n', endless(b'x' * 65536), 64 << 20)
        print('# Content-Length 10 GB to %s: %s after %d bytes, %.2f s' % (path, st, sent, dt), flush=True)
        check(st == 413 and sent <= 16 * MAX_BODY,
              'Content-Length 10 GB to %s: 413 before the body is read' % path,
              'status %s after %d bytes sent, %.2f s' % (st, sent, dt))

    # An endless chunked body.
    phase[0] = 'endless chunked'
    chunk = b'10000\r\n' + b'y' * 65536 + b'\r\n'
    st, sent, dt = await big_body('/v1/functions/echo/invocations', 'Transfer-Encoding: chunked\r\n',
                                  endless(chunk), 256 << 20)
    print('# endless chunked: %s after %d bytes, %.2f s' % (st, sent, dt), flush=True)
    check(st in (400, 413) and sent <= 16 * MAX_BODY,
          'endless chunked body: 400/413 once past max_body_bytes, not after reading it all',
          'status %s after %d bytes sent (max_body_bytes %d), %.2f s' % (st, sent, MAX_BODY, dt))

    # 100,000 headers.
    phase[0] = '100k headers'
    st, sent, dt = await many_headers(100000)
    print('# 100,000 headers: %s after %d bytes, %.2f s' % (st, sent, dt), flush=True)
    check(st is not None and 400 <= st < 500 and sent < 4 * 1024 * 1024,
          '100,000 headers: a 4xx once past max_header_bytes',
          'status %s after %d bytes of headers, %.2f s' % (st, sent, dt))

    # Malformed JSON: to a deploy (400), and as the payload of a function
    # that parses it (its own failure: 502 function_failed, or 200).
    phase[0] = 'malformed json'
    for name, body in MALFORMED.items():
        st, _, b, _ = await call('PUT', '/v1/functions/mal', body)
        check(st == 400 and b.startswith(b'{"error"'), 'PUT /v1/functions with malformed JSON (%s): 400' % name,
              'status %s: %r' % (st, b[:200]))
    st, _, b, _ = await call('GET', '/v1/functions/mal')
    check(st == 404, '... and nothing was deployed', 'status %s' % st)
    outcomes = []
    for name, body in MALFORMED.items():
        st, h, b, _ = await call('POST', '/v1/functions/json/invocations', body)
        outcomes.append((name, st, b[:120]))
    # Which payloads Python's json takes is its business; hearthd must pass
    # each through intact and report the function's verdict.
    verdicts = {n: st for n, st, b in outcomes if st == 200 and b == b'parsed\n' or
                st == 502 and b.startswith(b'{"error":"function_failed"')}
    check(len(verdicts) == len(MALFORMED) and verdicts['truncated'] == 502 and verdicts['duplicate keys'] == 200,
          'malformed JSON payloads to a function that parses JSON: each answered with the function\'s own '
          'verdict (200, or 502 function_failed; truncated refused, duplicate keys taken)', repr(outcomes))

    abuse = [dt for p, l in samples.items() if p != 'idle' for dt in l]
    med = statistics.median(abuse) if abuse else float('inf')
    check(len(abuse) >= 10 and med <= 20 * base_med,
          'a well-behaved client during the abuse: median latency within 20x its baseline',
          'baseline %.2f ms; during %.2f ms over %d calls (%s)' % (
              base_med * 1000, med * 1000, len(abuse),
              ', '.join('%s %.2f ms/%d' % (p, statistics.median(l) * 1000, len(l)) for p, l in samples.items())))

    # 1,000 concurrent calls to a cold function. The well-behaved client
    # goes on (its calls must be answered; their latency is only reported:
    # two cores fork a thousand processes meanwhile).
    phase[0] = 'burst'
    t0 = time.monotonic()
    got = await asyncio.gather(*(call('POST', '/v1/functions/cold/invocations', b'%d' % i, timeout=90)
                                 for i in range(1000)))
    dt = time.monotonic() - t0
    codes = {}
    for st, h, b, _ in got:
        codes[st] = codes.get(st, 0) + 1
    print('# 1,000 concurrent calls: %s in %.1f s' % (codes, dt), flush=True)
    right = sum(1 for i, (st, h, b, _) in enumerate(got) if st == 200 and b == b'%d' % i)
    limited = [(st, h) for st, h, _, _ in got if st in (429, 503)]
    others = {k: v for k, v in codes.items() if k not in (200, 429, 503)}
    check(not others and right == codes.get(200, 0) and right > 0,
          '1,000 concurrent calls to a cold function: each answered 200 with its own payload, or 429/503; '
          'no hang, no other status', 'codes %s in %.1f s' % (codes, dt))
    check(all('retry-after' in h for _, h in limited),
          '... every 429/503 carries Retry-After', '%d limited, %d without' % (
              len(limited), sum(1 for _, h in limited if 'retry-after' not in h)))

    # More than the queue holds: 1,100 concurrent calls to a function that
    # serves 5 a second. The overflow is refused at once (429 queue_full),
    # what waits past the queue timeout is refused then (429), all with
    # Retry-After; none hangs.
    t0 = time.monotonic()
    got = await asyncio.gather(*(call('POST', '/v1/functions/slow/invocations', b'%d' % i, timeout=90)
                                 for i in range(1100)))
    dt = time.monotonic() - t0
    codes = {}
    for st, h, b, _ in got:
        codes[st] = codes.get(st, 0) + 1
    print('# 1,100 concurrent calls to a 1-sandbox function: %s in %.1f s' % (codes, dt), flush=True)
    right = sum(1 for i, (st, h, b, _) in enumerate(got) if st == 200 and b == b'%d' % i)
    limited = [(st, h, b) for st, h, b, _ in got if st in (429, 503)]
    others = {k: v for k, v in codes.items() if k not in (200, 429, 503)}
    check(not others and right == codes.get(200, 0) and right > 0 and len(limited) >= 100,
          '1,100 concurrent calls to a function that cannot keep up: 200s, and 429/503 for what exceeds the '
          'queue (at least the 100 past its 1,000 places); no hang, no other status', 'codes %s in %.1f s' % (codes, dt))
    check(all('retry-after' in h and b.startswith(b'{"error"') for _, h, b in limited),
          '... every 429/503 carries Retry-After and a JSON error', '%d limited, %d without Retry-After' % (
              len(limited), sum(1 for _, h, _ in limited if 'retry-after' not in h)))

    stop.set()
    await watch
    burst = samples.get('burst', [])
    print('# the well-behaved client during the bursts: %d calls, median %s ms' % (
        len(burst), '%.2f' % (statistics.median(burst) * 1000) if burst else '-'), flush=True)
    check(not bad_health and len(burst) >= 5, '/healthz and the well-behaved calls answered 200 throughout, '
          'bursts included', '%d calls during the bursts; failures %r' % (len(burst), bad_health[:10]))

    st, _, _, _ = await call('GET', '/healthz')
    rss_peak[0] = max(rss_peak[0], rss_kib())
    await asyncio.sleep(2)
    rss1 = rss_kib()
    fds1, sbx1 = fds(), await live_sandboxes()
    print('# hearthd fds: before %d with %d sandboxes, after %d with %d' % (fds0, sbx0, fds1, sbx1), flush=True)
    check(sbx1 >= 0 and fds1 <= fds0 + 8 * max(0, sbx1 - sbx0) + 16,
          'no connection left open in hearthd: its fds after everything within 16 (+8 a sandbox) of before',
          'before %d fds with %d sandboxes, after %d with %d' % (fds0, sbx0, fds1, sbx1))
    print('# hearthd VmRSS: before %d KiB, peak %d KiB, after %d KiB' % (rss0, rss_peak[0], rss1), flush=True)
    check(st == 200, '/healthz after everything: 200', 'status %s' % st)
    # ASan keeps freed memory in quarantine (256 MiB by default): more room.
    with open('/proc/%d/maps' % PID) as f:
        scale = 4 if 'libasan' in f.read() else 1
    check(rss_peak[0] <= rss0 + scale * 256 * 1024 and rss1 <= rss0 + scale * 64 * 1024,
          'hearthd memory bounded: peak VmRSS within +%d MiB of before, after within +%d MiB'
          % (scale * 256, scale * 64), 'before %d KiB, peak %d KiB, after %d KiB' % (rss0, rss_peak[0], rss1))


asyncio.run(main())
PY

T0=$(now_ms)
timeout 170 python3 "$WORK/abuse.py" "$PORT" "$TOKEN" "$DAEMON_PID" "$READ_TIMEOUT_MS" "$MAX_BODY" \
    >"$WORK/abuse.out" 2>"$WORK/abuse.err"
rc=$?
while IFS= read -r line; do
    case $line in
    "check 1 "*) ok "$(printf '%s' "${line#check 1 }" | sed 's/ | .*//')" ;;
    "check 0 "*) not_ok "$(printf '%s' "${line#check 0 }" | sed 's/ | .*//')" "${line#* | }" ;;
    "#"*) echo "$line" ;;
    esac
done <"$WORK/abuse.out"
check "the abuse driver ran to its end ($(( ($(now_ms) - T0) / 1000 )) s)" '[ "$rc" = 0 ]' \
    "exit $rc" "$(tail -n 20 "$WORK/abuse.err")"

check "hearthd still runs" 'kill -0 "$DAEMON_PID" 2>/dev/null' "$(tail -n 20 "$LOG")"
stop_daemon 20
check "SIGTERM: hearthd exits 0" '[ "$DAEMON_RC" = 0 ]' "exit: $DAEMON_RC" "$(tail -n 20 "$LOG")"
check "no cgroup left under $CGROOT" '[ -z "$(cgroup_leftovers "$CGROOT")" ]' "$(cgroup_leftovers "$CGROOT")"
finish
