#!/bin/bash
# Host paths in function specs (finding F5) against the real daemon:
#  - an API spec's mounts[].source and rootfs must lie under the daemon's
#    mount_sources / rootfs_dirs (empty by default): outside → 400 naming the
#    key; a symlink inside an allowed directory that points out → 400;
#  - /proc, /sys, /dev, state_dir, the socket's directory, and anything that
#    contains one of them, are refused even when "/" is allowlisted;
#  - a path swapped for a symlink after the deploy, or taken off the
#    allowlist by a SIGHUP, fails the invocation (502) without being mounted;
#  - an allowed mount and an allowed rootfs work; functions_dir specs (the
#    operator's) skip the allowlist but not the hard refusals;
#  - hearth.db, journal.db and their -wal/-shm files are 0600, also after a
#    restart over files an older hearth left 0644.
# Needs root, curl, python3. Binaries from $HEARTH_BIN (default <repo>/bin):
# hearthd, probe. TAP output; the last line is "N passed, N failed[, N skipped]".
# shellcheck disable=SC2016,SC2034,SC2317  # check's conditions are single-quoted on purpose: evaluated later
# shellcheck source-path=SCRIPTDIR source=lib.sh
set -u
. "$(dirname "$0")/lib.sh"
PROBE=$HB/probe

if [ ! -x "$HEARTHD" ] || [ ! -x "$PROBE" ]; then
    skip "host paths in specs" "hearthd or probe not built (run make, or set HEARTH_BIN)"
    finish
fi
if [ "$(id -u)" != 0 ]; then
    skip "host paths in specs" "needs root (hearthd runs sandboxes)"
    finish
fi
for t in curl python3; do
    command -v $t >/dev/null || { not_ok "$t present" "the test needs $t (scripts/install-deps)"; finish; }
done

make_workdir hearth-mounts-test
T0=$(now_ms)
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
SOCK=$WORK/run/hearth.sock
STATE=$WORK/state
CGROOT=hearth-mounts-$$
UID_BASE=$((7300000 + ($$ % 1000) * 64))
UID_COUNT=64
TOK=$(new_token)
ALLOW=$WORK/allowed   # in mount_sources
OUTSIDE=$WORK/outside # not
ROOTS=$WORK/roots     # in rootfs_dirs
PROFILES=$WORK/seccomp # in seccomp_dirs
SECRET=outside-secret-$(new_token)
mkdir -p "$PROFILES" "$ALLOW/swap" "$OUTSIDE" "$ROOTS/r1/proc" "$ROOTS/r1/dev" "$ROOTS/r1/tmp" "$WORK/run" "$STATE" \
    "$WORK/functions"
chmod 0755 "$WORK" "$ALLOW" "$ALLOW/swap" "$OUTSIDE"
chmod 0750 "$WORK/run"
echo "hello through an allowed mount" >"$ALLOW/hello.txt"
echo "swap ok" >"$ALLOW/swap/ok.txt"
echo "$SECRET" >"$OUTSIDE/secret.txt"
chmod 0644 "$ALLOW/hello.txt" "$ALLOW/swap/ok.txt" "$OUTSIDE/secret.txt"
cp "$PROBE" "$ROOTS/r1/probe"
ln -s "$OUTSIDE" "$ALLOW/link-out"
ln -s "$STATE" "$ALLOW/link-state"
ln -s / "$ROOTS/link-root"
echo '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mknod"], "action": "SCMP_ACT_ERRNO"}]}' \
    >"$PROFILES/allow.json"
cp "$PROFILES/allow.json" "$OUTSIDE/allow.json"
ln -s /etc/shadow "$PROFILES/shadow.json"
mkfifo "$PROFILES/fifo.json"

# The operator's own specs: one mounts a directory outside mount_sources (allowed:
# the allowlist is for API specs), one mounts /proc (refused all the same).
cat >"$WORK/functions/opmount.json" <<EOF
{"name": "opmount", "tenant": "t1", "command": ["/bin/cat", "/mnt/secret.txt"],
 "mounts": [{"source": "$OUTSIDE", "target": "/mnt"}], "seccomp": "$OUTSIDE/allow.json", "timeout_ms": 10000}
EOF
cat >"$WORK/functions/opproc.json" <<EOF
{"name": "opproc", "tenant": "t1", "command": ["/bin/sh", "-c", "ls /mnt | grep -c '^[0-9]'"],
 "mounts": [{"source": "/proc", "target": "/mnt"}], "timeout_ms": 10000}
EOF

# write_config FILE MOUNT_SOURCES_JSON: "" leaves the key out (the default: none).
write_config() {
    local ms=
    [ -n "$2" ] && ms="\"mount_sources\": $2,"
    cat >"$1" <<EOF
{
  "listen_unix": "$SOCK",
  "listen_http": "127.0.0.1:$PORT",
  "state_dir": "$STATE",
  "functions_dir": "$WORK/functions",
  "cgroup_root": "$CGROOT",
  "uid_base": $UID_BASE,
  "uid_count": $UID_COUNT,
  "prewarm_pool": 0,
  "max_sandboxes": 8,
  "drain_timeout_ms": 5000,
  $ms
  "rootfs_dirs": ["$ROOTS"],
  "seccomp_dirs": ["$PROFILES"],
  "tenants": [
    {"name": "t1", "tokens_sha256": ["$(sha256_hex "$TOK")"]}
  ]
}
EOF
}
write_config "$WORK/hearthd.json" "[\"$ALLOW\"]"
LOG=$WORK/hearthd.log

# call METHOD PATH [CURL ARGS...]: CODE; the body in $WORK/body.
call() {
    local m=$1 p=$2
    shift 2
    CODE=$(curl -s -o "$WORK/body" -w '%{http_code}' --max-time 30 -X "$m" -H "Authorization: Bearer $TOK" "$@" \
        "$URL$p")
}
show() { echo "HTTP $CODE: $(head -c 600 "$WORK/body")"; }
has() { grep -qF -- "$1" "$WORK/body"; }
deploy() { call PUT "/v1/functions/$1" --data-binary "$2"; }
invoke() { call POST "/v1/functions/$1/invocations" --data-binary "${2:-}"; }
# mount_spec SOURCE [TARGET] [COMMAND_JSON]: a spec binding SOURCE read-only.
mount_spec() {
    printf '{"command": %s, "mounts": [{"source": "%s", "target": "%s"}], "timeout_ms": 10000}' \
        "${3:-[\"/bin/true\"]}" "$1" "${2:-/mnt}"
}
# reload CONFIG_MOUNT_SOURCES PROBE_SOURCE WANT: SIGHUP with a new mount_sources, then wait until
# a deploy of PROBE_SOURCE answers WANT (the reload is asynchronous).
reload() {
    write_config "$WORK/hearthd.json" "$1"
    kill -HUP "$DAEMON_PID"
    for _ in $(seq 1 50); do
        deploy reload-probe "$(mount_spec "$2")"
        [ "$CODE" = "$3" ] && { call DELETE /v1/functions/reload-probe; return 0; }
        sleep 0.1
    done
    return 1
}

if start_daemon "$WORK/hearthd.json" "$LOG" "$SOCK" "$URL" >"$WORK/start.out"; then
    ok "hearthd starts with mount_sources [allowed] and rootfs_dirs [roots]"
else
    not_ok "hearthd starts" "$(cat "$WORK/start.out")"
    finish
fi

# --- the allowlist ---------------------------------------------------------------------------------
deploy outside "$(mount_spec "$OUTSIDE")"
check "a mount outside mount_sources: 400 naming mounts[0].source and mount_sources" \
    '[ "$CODE" = 400 ] && has "mounts[0].source" && has "mount_sources"' "$(show)"
note "for example: $(show)"
deploy outside-missing "$(mount_spec "$OUTSIDE/no-such-dir")"
check "a missing path outside mount_sources gets the same answer (no probing of host paths)" \
    '[ "$CODE" = 400 ] && has "is not under any of the daemon" && ! has "No such file"' "$(show)"
deploy second "{\"command\": [\"/bin/true\"], \"mounts\": [{\"source\": \"$ALLOW\", \"target\": \"/a\"},
    {\"source\": \"$OUTSIDE\", \"target\": \"/b\"}]}"
check "the second of two mounts outside: 400 naming mounts[1].source" \
    '[ "$CODE" = 400 ] && has "mounts[1].source"' "$(show)"
deploy linkout "$(mount_spec "$ALLOW/link-out")"
check "a symlink inside mount_sources pointing outside: 400 (resolves to)" \
    '[ "$CODE" = 400 ] && has "mounts[0].source" && has "resolves to $OUTSIDE"' "$(show)"
note "for example: $(show)"
deploy linkstate "$(mount_spec "$ALLOW/link-state")"
check "a symlink inside mount_sources pointing at state_dir: 400" \
    '[ "$CODE" = 400 ] && has "state_dir"' "$(show)"
deploy prefix "$(mount_spec "${ALLOW}x")"
check "a sibling sharing the allowed directory's name as a prefix (${ALLOW##*/}x): 400" \
    '[ "$CODE" = 400 ] && has "mount_sources"' "$(show)"
deploy badroot '{"command": ["/probe", "exit", "0"], "rootfs": "'"$OUTSIDE"'"}'
check "a rootfs outside rootfs_dirs: 400 naming rootfs and rootfs_dirs" \
    '[ "$CODE" = 400 ] && has "rootfs:" && has "rootfs_dirs"' "$(show)"
deploy linkroot '{"command": ["/probe", "exit", "0"], "rootfs": "'"$ROOTS/link-root"'"}'
check "a rootfs that is a symlink to / inside rootfs_dirs: 400 (contains /proc)" \
    '[ "$CODE" = 400 ] && has "rootfs:" && has "contains /proc"' "$(show)"

deploy hello "$(mount_spec "$ALLOW" /mnt '["/bin/cat", "/mnt/hello.txt"]')"
check "a mount under mount_sources deploys (201)" '[ "$CODE" = 201 ]' "$(show)"
invoke hello
check "and reads a file through it" '[ "$CODE" = 200 ] && has "hello through an allowed mount"' "$(show)"
deploy hellofile "$(mount_spec "$ALLOW/hello.txt" /etc/hostname '["/bin/cat", "/etc/hostname"]')"
invoke hellofile
check "a single file under mount_sources binds too" '[ "$CODE" = 200 ] && has "hello through"' "$(show)"
deploy rootfs '{"command": ["/probe", "exit", "0"], "rootfs": "'"$ROOTS/r1"'", "timeout_ms": 10000}'
C=$CODE
invoke rootfs
check "a rootfs under rootfs_dirs deploys and runs (201, then 200)" '[ "$C" = 201 ] && [ "$CODE" = 200 ]' \
    "deploy $C; $(show)"

# --- seccomp profiles: files the daemon itself opens and parses ------------------------------------------
deploy sc '{"command": ["/bin/true"], "seccomp": "'"$PROFILES/allow.json"'", "timeout_ms": 10000}'
C=$CODE
invoke sc
check "a seccomp profile under seccomp_dirs deploys and runs (201, then 200)" '[ "$C" = 201 ] && [ "$CODE" = 200 ]' \
    "deploy $C; $(show)"
deploy sc-out '{"command": ["/bin/true"], "seccomp": "'"$OUTSIDE/allow.json"'"}'
check "a seccomp profile outside seccomp_dirs: 400 naming seccomp and seccomp_dirs" \
    '[ "$CODE" = 400 ] && has "seccomp:" && has "seccomp_dirs"' "$(show)"
deploy sc-shadow '{"command": ["/bin/true"], "seccomp": "/etc/shadow"}'
check "seccomp /etc/shadow: 400 without a word of the file (no oracle through the parser's messages)" \
    '[ "$CODE" = 400 ] && has "seccomp_dirs" && ! has "near"' "$(show)"
deploy sc-link '{"command": ["/bin/true"], "seccomp": "'"$PROFILES/shadow.json"'"}'
check "a symlink in seccomp_dirs to /etc/shadow: 400 (resolves to)" \
    '[ "$CODE" = 400 ] && has "resolves to /etc/shadow" && ! has "near"' "$(show)"
deploy sc-fifo '{"command": ["/bin/true"], "seccomp": "'"$PROFILES/fifo.json"'"}'
check "a FIFO in seccomp_dirs: 400 (not a regular file: opening it would block the daemon)" \
    '[ "$CODE" = 400 ] && has "not a regular file"' "$(show)"
deploy sc-dev '{"command": ["/bin/true"], "seccomp": "/dev/zero"}'
check "seccomp /dev/zero: 400" '[ "$CODE" = 400 ] && has "seccomp:"' "$(show)"

# --- a symlink swapped in after the deploy ------------------------------------------------------------
# The deploy checks the directory; it is replaced by a symlink before the
# function's first sandbox is made, which must check again.
mkdir "$ALLOW/swap2"
chmod 0755 "$ALLOW/swap2"
SWAP_CMD='["/bin/sh", "-c", "cat /mnt/*.txt; ls /mnt | grep -c \"^[0-9]\"; true"]'
deploy swapper "$(mount_spec "$ALLOW/swap" /mnt "$SWAP_CMD")"
C1=$CODE
deploy swapper2 "$(mount_spec "$ALLOW/swap2" /mnt "$SWAP_CMD")"
check "swapper, swapper2: their directories under mount_sources deploy (201)" '[ "$C1" = 201 ] && [ "$CODE" = 201 ]' \
    "swapper $C1; $(show)"
rm -rf "$ALLOW/swap" "$ALLOW/swap2"
ln -s "$OUTSIDE" "$ALLOW/swap"
ln -s /proc "$ALLOW/swap2"
invoke swapper
check "swapped for a symlink out of mount_sources after the deploy: the call fails (502), nothing mounted" \
    '[ "$CODE" = 502 ] && ! has "$SECRET" && has "mount_sources"' "$(show)"
invoke swapper2
check "swapped for a symlink to /proc after the deploy: the call fails (502), nothing mounted" \
    '[ "$CODE" = 502 ] && has "never mounted" && ! has "hearthd"' "$(show)"
note "for example: $(show)"
rm "$ALLOW/swap"
mkdir "$ALLOW/swap"
echo "swap ok" >"$ALLOW/swap/ok.txt"
chmod 0755 "$ALLOW/swap"
chmod 0644 "$ALLOW/swap/ok.txt"
back=
for _ in $(seq 1 50); do # after a failed start the scheduler may back off a little
    invoke swapper
    [ "$CODE" = 200 ] && { back=1; break; }
    sleep 0.2
done
check "swapper works once its directory is back" '[ -n "$back" ] && has "swap ok"' "$(show)"

# --- functions_dir: the operator's specs ----------------------------------------------------------------
invoke opmount
check "a functions_dir spec mounting a path outside mount_sources, its profile outside seccomp_dirs, works" \
    '[ "$CODE" = 200 ] && has "$SECRET"' "$(show)"
invoke opproc
check "a functions_dir spec mounting /proc fails at its sandbox (502, never mounted)" \
    '[ "$CODE" = 502 ] && has "never mounted"' "$(show)"
deploy opmount "$(mount_spec "$ALLOW")"
check "the API still cannot change a functions_dir spec (409)" '[ "$CODE" = 409 ]' "$(show)"

# --- hard refusals, even with "/" allowlisted ---------------------------------------------------------
if reload "[\"$ALLOW\", \"/\"]" "$OUTSIDE" 201; then
    ok "SIGHUP: mount_sources [allowed, /] takes effect (a mount of the outside directory deploys)"
else
    not_ok "SIGHUP: mount_sources [allowed, /] takes effect" "$(show)" "$(tail -n 5 "$LOG")"
fi
# refused SOURCE WHAT DESCRIPTION
refused() {
    WANT=$2
    deploy hard "$(mount_spec "$1")"
    check "with / allowlisted, $3 is refused (400: $2)" '[ "$CODE" = 400 ] && has "$WANT" && has "never mounted"' \
        "$(show)"
}
refused /proc "/proc" "/proc"
refused "/proc/$DAEMON_PID" "is inside /proc" "/proc/PID of the daemon"
refused /sys/fs/cgroup "is inside /sys" "/sys/fs/cgroup"
refused /dev/shm "is inside /dev" "/dev/shm"
refused "$STATE" "is the daemon's state_dir" "state_dir"
refused "$STATE/journal.db-wal" "is inside the daemon's state_dir" "state_dir/journal.db-wal"
refused "$STATE/hearth.db" "is inside the daemon's state_dir" "state_dir/hearth.db"
refused "$WORK/run" "socket directory" "the socket's directory"
refused / "contains /proc" "/ itself"
note "for example: $(show)"
refused "$WORK" "contains the daemon's state_dir" "a parent of state_dir"
refused "$ALLOW/link-state" "state_dir" "a symlink to state_dir"

deploy widened "$(mount_spec "$OUTSIDE" /mnt '["/bin/cat", "/mnt/secret.txt"]')"
C=$CODE
invoke widened
check "with / allowlisted, an ordinary directory deploys and mounts" \
    '[ "$C" = 201 ] && [ "$CODE" = 200 ] && has "$SECRET"' "deploy $C; $(show)"
deploy stored "$(mount_spec "$OUTSIDE" /mnt '["/bin/cat", "/mnt/secret.txt"]')"
check "stored: deployed while / is allowlisted (201), not yet run" '[ "$CODE" = 201 ]' "$(show)"
if reload "[\"$ALLOW\"]" "$OUTSIDE" 400; then
    ok "SIGHUP: mount_sources back to [allowed]"
else
    not_ok "SIGHUP: mount_sources back to [allowed]" "$(show)"
fi
invoke stored
check "a stored function whose source left the allowlist fails at its next sandbox (502)" \
    '[ "$CODE" = 502 ] && ! has "$SECRET" && has "mount_sources"' "$(show)"

reload "" "$ALLOW" 400
deploy nolist "$(mount_spec "$ALLOW")"
check "SIGHUP without mount_sources (the default): even the formerly allowed directory is refused (400)" \
    '[ "$CODE" = 400 ] && has "none configured"' "$(show)"
invoke opmount
check "and functions_dir specs keep their mounts" '[ "$CODE" = 200 ] && has "$SECRET"' "$(show)"

# --- state files -----------------------------------------------------------------------------------------
# modes: "name=mode" for each state file present
modes() {
    local f
    for f in hearth.db hearth.db-wal hearth.db-shm journal.db journal.db-wal journal.db-shm; do
        [ -e "$STATE/$f" ] && printf '%s=%s ' "$f" "$(stat -c %a "$STATE/$f")"
    done
}
call POST /v1/functions/hello/invocations -H 'Prefer: respond-async' --data-binary x # writes the journal
M=$(modes)
check "state files are 0600 (hearth.db, journal.db and their -wal, -shm)" \
    'echo "$M" | grep -q "hearth.db=600" && echo "$M" | grep -q "journal.db-wal=600" &&
     ! echo "$M" | grep -qv "^\([a-z.-]*=600 \)*$"' "$M"
stop_daemon 20
check "hearthd stops cleanly" '[ "$DAEMON_RC" = 0 ]' "exit $DAEMON_RC" "$(tail -n 5 "$LOG")"
for f in hearth.db journal.db journal.db-wal; do
    [ -e "$STATE/$f" ] && chmod 0644 "$STATE/$f"
done
write_config "$WORK/hearthd.json" "[\"$ALLOW\"]"
if start_daemon "$WORK/hearthd.json" "$LOG" "$SOCK" "$URL" >"$WORK/start.out"; then
    M=$(modes)
    check "a restart over state files left 0644 makes them 0600" \
        '! echo "$M" | grep -qv "^\([a-z.-]*=600 \)*$" && echo "$M" | grep -q "hearth.db=600"' "$M"
    invoke hello
    check "and the stored functions still work" '[ "$CODE" = 200 ] && has "hello through"' "$(show)"
else
    not_ok "hearthd restarts over its state" "$(cat "$WORK/start.out")"
fi

# --- the end ------------------------------------------------------------------------------------------
stop_daemon 20
check "hearthd stops cleanly after the restart" '[ "$DAEMON_RC" = 0 ]' "exit $DAEMON_RC"
left=$(cgroup_leftovers "$CGROOT")
check "no cgroup left under $CGROOT" '[ -z "$left" ]' "$left"
left=$(uid_range_procs "$UID_BASE" "$UID_COUNT")
check "no sandbox process left" '[ -z "$left" ]' "$left"
left=$(grep -c " $WORK" /proc/self/mountinfo)
check "no mount of the test's directories left on the host" '[ "$left" = 0 ]' "$(grep " $WORK" /proc/self/mountinfo)"
note "done in $(($(now_ms) - T0)) ms"
finish
