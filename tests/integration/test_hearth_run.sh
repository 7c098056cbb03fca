#!/bin/bash
# `hearth run` driven as a user would: exit statuses, stdio, limits and
# their messages, options, usage errors, and no cgroup left behind.
# Needs root. Binaries from $HEARTH_BIN (default <repo>/bin): hearth, probe.
# TAP output; the last line is "N passed, N failed".
set -u
export LC_ALL=C
REPO=$(cd "$(dirname "$0")/../.." && pwd)
HB=${HEARTH_BIN:-$REPO/bin}
HB=$(cd "$HB" 2>/dev/null && pwd || echo "$HB")
HEARTH=$HB/hearth
PROBE=$HB/probe

n=0 passed=0 failed=0
ok() { n=$((n + 1)); passed=$((passed + 1)); echo "ok $n - $1"; }
not_ok() { # name why...
    n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"
    shift
    local l
    for l in "$@"; do printf '%s\n' "$l" | sed 's/^/#   /'; done
}
finish() {
    echo "1..$n"
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

if [ "$(id -u)" != 0 ]; then
    not_ok "running as root" "hearth run needs root (namespaces, cgroups)"
    finish
fi
for b in "$HEARTH" "$PROBE"; do
    if [ ! -x "$b" ]; then
        not_ok "binaries present" "$b missing: run make, or set HEARTH_BIN"
        finish
    fi
done
case $PROBE in
/tmp/*) not_ok "probe visible in sandboxes" "$PROBE is under /tmp, which sandboxes do not see"; finish ;;
esac

# Scratch space the sandbox can see (not /tmp, which is its own tmpfs), and
# outside the checkout, which may be read-only or elsewhere than $O.
WORK=$(mktemp -d /var/tmp/hearth-run-test.XXXXXX) || exit 1
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"
PIDS=$WORK/pids # every hearth we started, for the cgroup check at the end
: >"$PIDS"

# hr ARGS... : `hearth run ARGS...` with our stdin; stdout and stderr go to
# $WORK/out and $WORK/err; sets rc and secs (whole seconds it took).
hr() {
    local t0=$SECONDS
    "$HEARTH" run "$@" 0<&0 >"$WORK/out" 2>"$WORK/err" &
    local pid=$!
    echo "$pid" >>"$PIDS"
    wait "$pid"
    rc=$?
    secs=$((SECONDS - t0))
}
out() { cat "$WORK/out"; }
err() { cat "$WORK/err"; }
show() { echo "exit $rc; stdout: $(head -c 600 "$WORK/out"); stderr: $(head -c 600 "$WORK/err")"; }
# check NAME CONDITION... : CONDITION is evaluated by the shell
check() {
    local name=$1; shift
    if eval "$@"; then ok "$name"; else not_ok "$name" "$(show)"; fi
}

# --- status passthrough ---------------------------------------------------------------
hr -- /bin/sh -c 'exit 7' </dev/null
check "exit status passes through (7)" '[ "$rc" = 7 ]'
hr -- /bin/true </dev/null
check "exit status 0" '[ "$rc" = 0 ]'
hr -- /bin/sh -c 'kill -TERM $$' </dev/null
check "killed by SIGTERM: 128+15" '[ "$rc" = 143 ]'
hr -- /bin/sh -c 'kill -KILL $$' </dev/null
check "killed by SIGKILL: 128+9" '[ "$rc" = 137 ] && ! grep -q "out of memory" "$WORK/err"'

# --- stdio ------------------------------------------------------------------------------
# As typed at a shell (a pipeline, so not through hr, whose rc would stay in a subshell).
got=$(echo hi | "$HEARTH" run -- /bin/cat 2>"$WORK/err")
rc=$?
echo "$got" >"$WORK/out"
check "echo hi | hearth run -- /bin/cat" '[ "$rc" = 0 ] && [ "$got" = hi ]'
hr -- /bin/sh -c 'echo to-stderr >&2; echo to-stdout' </dev/null
check "stderr passes through apart from stdout" \
    '[ "$rc" = 0 ] && [ "$(out)" = to-stdout ] && [ "$(err)" = to-stderr ]'
head -c 300000 /dev/zero | tr '\0' x >"$WORK/big"
hr -- /bin/cat <"$WORK/big"
check "300 kB through stdin and stdout" '[ "$rc" = 0 ] && cmp -s "$WORK/out" "$WORK/big"'

# --- limits -----------------------------------------------------------------------------
hr --memory 32M -- "$PROBE" memhog 100 </dev/null
check "--memory 32M: memhog 100 exits 137 with the reason" \
    '[ "$rc" = 137 ] && grep -qF "hearth: out of memory (limit 32 MiB)" "$WORK/err"'

hr --timeout 1 -- "$PROBE" hang </dev/null
check "--timeout 1: hang is killed within 3 s with the reason" \
    '[ "$rc" = 137 ] && [ "$secs" -le 3 ] && grep -qF "hearth: time limit (1 s) reached" "$WORK/err"'

hr --pids 16 -- "$PROBE" forkbomb </dev/null
check "--pids 16: forkbomb stops at the pids limit" \
    '[ "$rc" != 0 ] && grep -qF "pids limit (16)" "$WORK/err" && grep -q "^errno=EAGAIN" "$WORK/out"'

hr --stats -- "$PROBE" spin 100 </dev/null
cpu_ms=$(sed -n 's/^hearth: cpu \([0-9.]*\) ms, peak memory .*/\1/p' "$WORK/err")
check "--stats prints CPU time and peak memory" \
    '[ "$rc" = 0 ] && [ -n "$cpu_ms" ] && [ "${cpu_ms%%.*}" -ge 95 ] && [ "${cpu_ms%%.*}" -le 200 ]'

hr --tmp 8M -- "$PROBE" status </dev/null
check "--tmp 8M sizes /tmp" '[ "$rc" = 0 ] && grep -qx "tmp_size=8388608" "$WORK/out"'

# --- environment, identity, filesystems ----------------------------------------------------
hr --env A=B --env C=D=E -- /usr/bin/env </dev/null
check "--env A=B reaches the command" \
    '[ "$rc" = 0 ] && grep -qx "A=B" "$WORK/out" && grep -qx "C=D=E" "$WORK/out"'
hr -- /usr/bin/env </dev/null
check "the caller's environment does not leak in" \
    '[ "$rc" = 0 ] && ! grep -q "^HEARTH_BIN=" "$WORK/out" && grep -q "^PATH=" "$WORK/out"'

if [ -x /bin/hostname ]; then
    hr --hostname box -- /bin/hostname </dev/null
else
    hr --hostname box -- /bin/sh -c 'cat /proc/sys/kernel/hostname' </dev/null
fi
check "--hostname box" '[ "$rc" = 0 ] && [ "$(out)" = box ] && [ "$(hostname)" != box ]'

hr --cwd /usr -- /bin/sh -c pwd </dev/null
check "--cwd /usr" '[ "$rc" = 0 ] && [ "$(out)" = /usr ]'

hr -- "$PROBE" status </dev/null
check "root inside, no capabilities, seccomp, read-only /, only lo" \
    '[ "$rc" = 0 ] && grep -qx "uid=0" "$WORK/out" && grep -qx "CapEff=0000000000000000" "$WORK/out" &&
     grep -qx "Seccomp=2" "$WORK/out" && grep -qx "root_write=EROFS" "$WORK/out" &&
     grep -qx "netifs=lo" "$WORK/out" && grep -qx "pids=2" "$WORK/out"'

# A uid another hearth process holds is not used again: start a run with a
# known pid (a child forked to exec it keeps its pid), hold the lock on the uid it
# would try first (100000 + pid % 65536) as another `hearth run` or hearthd
# would, and the sandbox must map root to another uid of the range.
if command -v python3 >/dev/null; then
    python3 - "$HEARTH" "$PROBE" "$WORK/out" "$PIDS" <<'PY' >"$WORK/err" 2>&1
import fcntl, os, signal, struct, sys
hearth, probe, out, pids = sys.argv[1:5]
signal.alarm(60)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(w)
    os.read(r, 1)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.execv(hearth, [hearth, "run", "--", probe, "status"])
with open(pids, "a") as f:
    f.write("%d\n" % pid)
os.makedirs("/run/hearth", exist_ok=True)
lock = os.open("/run/hearth/uids.lock", os.O_RDWR | os.O_CREAT, 0o600)
taken = 100000 + pid % 65536
# struct flock: l_type, l_whence, l_start, l_len, l_pid (0 for OFD locks).
# Held already by another hearth process (tests beside us): as good.
try:
    fcntl.fcntl(lock, fcntl.F_OFD_SETLK, struct.pack("@hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, taken, 1, 0))
except BlockingIOError:
    pass
os.write(w, b"g")
_, status = os.waitpid(pid, 0)
print("taken=%d exit=%d" % (taken, os.waitstatus_to_exitcode(status)))
PY
    taken=$(sed -n 's/^taken=\([0-9]*\) exit=0$/\1/p' "$WORK/err")
    mapped=$(sed -n 's/^uid_map=0 \([0-9]*\) 1$/\1/p' "$WORK/out")
    rc=0
    check "a uid held by another hearth process is skipped" \
        '[ -n "$taken" ] && [ -n "$mapped" ] && [ "$mapped" != "$taken" ] &&
         [ "$mapped" -ge 100000 ] && [ "$mapped" -lt 165536 ]'
    check "the uid lock file is root's alone" \
        '[ "$(stat -c "%a %U" /run/hearth/uids.lock)" = "600 root" ]'
else
    not_ok "a uid held by another hearth process is skipped" "python3 not found"
fi

mkdir -p "$WORK/ro" "$WORK/rw"
echo from-host >"$WORK/ro/file"
chmod 755 "$WORK/ro"
chmod 644 "$WORK/ro/file"
chmod 1777 "$WORK/rw"
hr --bind "$WORK/ro:/mnt:ro" -- /bin/cat /mnt/file </dev/null
check "--bind SRC:/mnt:ro: reading works" '[ "$rc" = 0 ] && [ "$(out)" = from-host ]'
hr --bind "$WORK/ro:/mnt:ro" -- /bin/sh -c 'echo x > /mnt/new' </dev/null
check "--bind SRC:/mnt:ro: writing fails" '[ "$rc" != 0 ] && [ ! -e "$WORK/ro/new" ]'
hr --bind "$WORK/rw:/mnt" -- /bin/sh -c 'echo written > /mnt/new' </dev/null
check "--bind SRC:/mnt (rw): writing works, as an unprivileged host uid" \
    '[ "$rc" = 0 ] && [ "$(cat "$WORK/rw/new" 2>/dev/null)" = written ] &&
     [ "$(stat -c %u "$WORK/rw/new")" -ge 100000 ]'
hr --bind "$WORK/ro:/no-such-target" -- /bin/true </dev/null
check "--bind onto a missing target fails closed" \
    '[ "$rc" != 0 ] && grep -q "no-such-target" "$WORK/err"'
hr --rootfs /no-such-rootfs -- /bin/true </dev/null
check "--rootfs missing fails closed" '[ "$rc" != 0 ] && grep -q "no-such-rootfs" "$WORK/err"'

# --- usage ----------------------------------------------------------------------------------
hr --memory banana -- /bin/true </dev/null
check "--memory banana: usage error 2" '[ "$rc" = 2 ] && grep -q -- "--memory" "$WORK/err"'
hr </dev/null
check "no command: usage error 2" '[ "$rc" = 2 ] && grep -qi "no command" "$WORK/err"'
hr --no-such-option -- /bin/true </dev/null
check "unknown option: usage error 2" '[ "$rc" = 2 ] && grep -q "usage" "$WORK/err"'
hr --pids 0 -- /bin/true </dev/null
check "--pids 0: usage error 2" '[ "$rc" = 2 ] && grep -q -- "--pids" "$WORK/err"'
hr --bind nocolon -- /bin/true </dev/null
check "--bind without DST: usage error 2" '[ "$rc" = 2 ] && grep -q -- "--bind" "$WORK/err"'
hr --help </dev/null
check "--help exits 0 with the usage" '[ "$rc" = 0 ] && grep -q "usage: hearth run" "$WORK/out"'
"$HEARTH" frobnicate >/dev/null 2>&1
rc=$?
check "unknown command: usage error 2" '[ "$rc" = 2 ]'

# --- missing commands ---------------------------------------------------------------------------
hr -- /no/such/command </dev/null
check "missing command (absolute) exits 127" '[ "$rc" = 127 ]'
PATH=/usr/bin:/bin hr -- no-such-command-hearth </dev/null
check "missing command (on PATH) exits 127" '[ "$rc" = 127 ]'
# The sandbox's PATH (from --env, or the default) decides the lookup, not
# the caller's: a caller's PATH naming a directory the sandbox cannot
# search (here /proc/1/root: init is not dumpable) must not matter.
PATH=/proc/1/root:/usr/bin:/bin hr -- no-such-command-hearth </dev/null
check "missing command exits 127 whatever the caller's PATH" '[ "$rc" = 127 ]'
PATH=/nonexistent-hearth hr -- true </dev/null
check "commands are found on the sandbox's PATH, not the caller's" '[ "$rc" = 0 ]'
hr -- /etc/passwd </dev/null
check "non-executable command exits 126" '[ "$rc" = 126 ]'

# --- signals to hearth itself ----------------------------------------------------------------------
"$HEARTH" run -- "$PROBE" sleep 20000 </dev/null >/dev/null 2>&1 &
pid=$!
echo "$pid" >>"$PIDS"
sleep 0.5
t0=$SECONDS
kill -TERM "$pid"
wait "$pid"
rc=$?
secs=$((SECONDS - t0))
check "SIGTERM to hearth ends the run: 128+15, promptly" '[ "$rc" = 143 ] && [ "$secs" -le 3 ]'

# --- nothing left behind ----------------------------------------------------------------------------
left=""
while read -r p; do
    for d in /sys/fs/cgroup/*/hearth/run-"$p" /sys/fs/cgroup/*/hearth/run-"$p"-* \
        /sys/fs/cgroup/hearth/run-"$p" /sys/fs/cgroup/hearth/run-"$p"-*; do
        [ -e "$d" ] && left="$left $d"
    done
done <"$PIDS"
if [ -z "$left" ]; then
    ok "no cgroup left under hearth/run-* by $(wc -l <"$PIDS") runs"
else
    not_ok "no cgroup left under hearth/run-*" "left:$left"
fi
finish
