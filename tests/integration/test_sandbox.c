/* Sandboxes through the C API (sandbox.h), checked from inside with
 * bin/probe and from the host through /proc and the cgroup tree.
 *
 * Needs root. Works on cgroup v1 (hybrid) and v2 hosts. Sandboxes get
 * host uids from a range of their own (UID_BASE..) so that the scans for
 * leftover processes cannot mistake another hearth's sandboxes for ours,
 * and cgroups go under hearth/test-<pid>, which sbx_host_close removes.
 *
 * Binaries come from $HEARTH_BIN (default <repo>/bin); the repo is found
 * from this binary's path (<repo>/build/tests/test_sandbox) or the cwd. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandbox/sandbox.h"
#include "tests/harness.h"

/* Its own range per run (two runs at once must not count each other's
 * processes), from 900000 on, below the other tests' ranges. */
static uid_t uid_base_;
#define UID_BASE uid_base_
#define UID_COUNT 4096u
#define LEAK_CYCLES 1000

static sbx_host_t *host;
static char cg_root[64];
static char repo[PATH_MAX];
static char probe[PATH_MAX + 16];
static char bin_dir[PATH_MAX];

/* --- helpers ------------------------------------------------------------------ */

typedef struct run {
    char out[65536];     /* the process's stdout */
    size_t len;
    sbx_end_t end;
    uint64_t elapsed_ms; /* exec to end */
} run_t;

static const sbx_spec_t default_spec = {0};

/* Start argv in sb with stdout on a pipe, wait for it (timeout_ms, 0: none)
 * and collect its output. Returns 0, or -1 with err filled. The probe's
 * output is far below a pipe's capacity, so reading after the end is safe;
 * reading without blocking copes with children that still hold the pipe. */
static int run_in(sbx_t *sb, const char *const *argv, uint64_t timeout_ms, run_t *r, hearth_error_t *err)
{
    memset(r, 0, sizeof(*r));
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return hearth_error_sys(err, "pipe");
    sbx_exec_t ex = {.argv = argv, .stdin_fd = -1, .stdout_fd = p[1], .stderr_fd = 2};
    uint64_t t0 = now_ns();
    int rc = sbx_exec(sb, &ex, NULL, err);
    close(p[1]);
    if (rc == 0)
        rc = sbx_wait(sb, timeout_ms, &r->end, err);
    r->elapsed_ms = (now_ns() - t0) / 1000000;
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    ssize_t n;
    while (r->len < sizeof(r->out) - 1 && (n = read(p[0], r->out + r->len, sizeof(r->out) - 1 - r->len)) > 0)
        r->len += (size_t)n;
    r->out[r->len] = '\0';
    close(p[0]);
    return rc;
}

/* Value of key in the probe's key=value output (a static copy), or NULL. */
static const char *val(const run_t *r, const char *key)
{
    static char buf[8][1024];
    static int slot;
    size_t kl = strlen(key);
    for (const char *line = r->out; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t ll = nl ? (size_t)(nl - line) : strlen(line);
        if (ll > kl && strncmp(line, key, kl) == 0 && line[kl] == '=') {
            char *b = buf[slot++ % 8];
            snprintf(b, sizeof(buf[0]), "%.*s", (int)(ll - kl - 1), line + kl + 1);
            return b;
        }
        line = nl ? nl + 1 : NULL;
    }
    return NULL;
}

static bool val_is(const run_t *r, const char *key, const char *want)
{
    const char *v = val(r, key);
    return v != NULL && strcmp(v, want) == 0;
}

#define SHOW(v) ((v) ? (v) : "(missing)")

static const char *end_kind_name(sbx_end_kind_t k)
{
    static const char *const names[] = {"EXIT", "SIGNAL", "OOM", "PIDS", "TIMEOUT", "LOST"};
    return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

static sbx_t *create(const sbx_spec_t *spec)
{
    hearth_error_t err = {0};
    sbx_t *sb = NULL;
    if (sbx_create(host, spec, &sb, &err) < 0) {
        printf("#   sbx_create: %s\n", err.msg);
        return NULL;
    }
    return sb;
}

/* Create a sandbox, run the probe with one subcommand, destroy it. */
static int probe_once(const sbx_spec_t *spec, const char *a1, const char *a2, run_t *r)
{
    sbx_t *sb = create(spec);
    if (sb == NULL)
        return -1;
    const char *argv[] = {probe, a1, a2, NULL};
    hearth_error_t err = {0};
    int rc = run_in(sb, argv, 30000, r, &err);
    if (rc < 0)
        printf("#   probe %s: %s\n", a1, err.msg);
    sbx_destroy(sb);
    return rc;
}

/* Processes whose real uid is in [lo, hi): all of them, or only those
 * that are not zombies. */
static int count_uid_procs(uid_t lo, uid_t hi, bool live_only)
{
    DIR *d = opendir("/proc");
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char path[64], buf[4096];
        snprintf(path, sizeof(path), "/proc/%s/status", de->d_name);
        if (read_file_at(AT_FDCWD, path, buf, sizeof(buf)) < 0)
            continue;
        const char *u = strstr(buf, "\nUid:");
        const char *s = strstr(buf, "\nState:");
        if (u == NULL)
            continue;
        unsigned long uid = strtoul(u + 5, NULL, 10);
        if (uid < lo || uid >= hi)
            continue;
        if (live_only && s != NULL && strstr(s, "\nState:\tZ") == s)
            continue;
        n++;
    }
    closedir(d);
    return n;
}

/* Host pid of a live process with this uid and comm, or 0. */
static pid_t find_proc(uid_t uid, const char *comm)
{
    DIR *d = opendir("/proc");
    if (d == NULL)
        return 0;
    pid_t found = 0;
    struct dirent *de;
    while (found == 0 && (de = readdir(d)) != NULL) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char path[64], buf[4096];
        snprintf(path, sizeof(path), "/proc/%s/status", de->d_name);
        if (read_file_at(AT_FDCWD, path, buf, sizeof(buf)) < 0)
            continue;
        char name[64] = "";
        sscanf(buf, "Name:\t%63s", name);
        const char *u = strstr(buf, "\nUid:");
        if (u != NULL && strtoul(u + 5, NULL, 10) == uid && strcmp(name, comm) == 0)
            found = (pid_t)atoi(de->d_name);
    }
    closedir(d);
    return found;
}

/* Subdirectories of mnt/sub added to *dirs: 1 if mnt/sub exists, else 0. */
static int count_under(const char *mnt, const char *sub, int *dirs)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", mnt, sub);
    DIR *d = opendir(path);
    if (d == NULL)
        return errno == ENOENT ? 0 : -1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_type == DT_DIR && de->d_name[0] != '.')
            (*dirs)++;
    closedir(d);
    return 1;
}

/* Child cgroups of `sub` (relative to the hierarchies' roots) summed over
 * every cgroup hierarchy; *roots says in how many `sub` exists. */
static int cgroup_children(const char *sub, int *roots)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (f == NULL)
        return -1;
    char line[4096];
    int dirs = 0, found = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        char mnt[1024], fstype[64];
        const char *sep = strstr(line, " - ");
        if (sep == NULL || sscanf(line, "%*d %*d %*s %*s %1023s", mnt) != 1 ||
            sscanf(sep + 3, "%63s", fstype) != 1)
            continue;
        if (strcmp(fstype, "cgroup") != 0 && strcmp(fstype, "cgroup2") != 0)
            continue;
        if (count_under(mnt, sub, &dirs) > 0)
            found++;
    }
    fclose(f);
    if (roots)
        *roots = found;
    return dirs;
}

static bool cgroup_exists(const char *name)
{
    char sub[256];
    int roots = 0;
    snprintf(sub, sizeof(sub), "%s/%s", cg_root, name);
    cgroup_children(sub, &roots);
    return roots > 0;
}

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -1;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own fd */
}

static uint64_t parse_u64(const char *s)
{
    return s ? strtoull(s, NULL, 10) : 0;
}

/* --- identity and isolation ------------------------------------------------------- */

static void t_probe_present(void)
{
    REQUIRE(access(probe, X_OK) == 0, "no probe at %s (build it with make, or set HEARTH_BIN)", probe);
    REQUIRE(strncmp(probe, "/tmp/", 5) != 0, "probe %s is under /tmp, which sandboxes do not see", probe);
}

static void t_identity(void)
{
    run_t r;
    REQUIRE(probe_once(&default_spec, "status", NULL, &r) == 0, "probe status");
    CHECK(r.end.kind == SBX_END_EXIT && r.end.status == 0, "end %s %d", end_kind_name(r.end.kind), r.end.status);
    CHECK(val_is(&r, "uid", "0"), "uid inside: %s", SHOW(val(&r, "uid")));
    CHECK(val_is(&r, "uids", "0,0,0,0"), "uids inside: %s", SHOW(val(&r, "uids")));
    CHECK(val_is(&r, "gid", "0"), "gid inside: %s", SHOW(val(&r, "gid")));
    const char *map = val(&r, "uid_map");
    unsigned a = 1, b = 0, c = 0;
    CHECK(map && sscanf(map, "%u %u %u", &a, &b, &c) == 3 && a == 0 && b >= UID_BASE && b < UID_BASE + UID_COUNT &&
              c == 1,
          "uid_map: %s", SHOW(map));
}

/* The host's view of a running probe: an unprivileged uid, and the pid
 * the sandbox reported, as the innermost NSpid. */
static void t_host_view(void)
{
    sbx_t *sb = create(&default_spec);
    REQUIRE(sb, "create");
    uid_t huid = sbx_host_uid(sb);
    CHECK(huid >= UID_BASE && huid < UID_BASE + UID_COUNT, "host uid %u outside our range", (unsigned)huid);
    const char *argv[] = {probe, "sleep", "5000", NULL};
    sbx_exec_t ex = {.argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1};
    hearth_error_t err = {0};
    pid_t inner = 0;
    if (sbx_exec(sb, &ex, &inner, &err) < 0) {
        CHECK(0, "exec: %s", err.msg);
        sbx_destroy(sb);
        return;
    }
    pid_t hp = 0;
    for (int i = 0; i < 200 && hp == 0; i++) {
        hp = find_proc(huid, "probe");
        if (hp == 0)
            usleep(5000);
    }
    CHECK(hp > 0, "no host process with uid %u named probe", (unsigned)huid);
    if (hp > 0) {
        char path[64], buf[4096];
        snprintf(path, sizeof(path), "/proc/%d/status", (int)hp);
        CHECK(read_file_at(AT_FDCWD, path, buf, sizeof(buf)) > 0, "read %s", path);
        char want[128];
        snprintf(want, sizeof(want), "\nUid:\t%u\t%u\t%u\t%u\n", huid, huid, huid, huid);
        CHECK(strstr(buf, want) != NULL, "host-side Uid line is not %u x4", (unsigned)huid);
        snprintf(want, sizeof(want), "\nGid:\t%u\t%u\t%u\t%u\n", huid, huid, huid, huid);
        CHECK(strstr(buf, want) != NULL, "host-side Gid line is not %u x4", (unsigned)huid);
        const char *ns = strstr(buf, "\nNSpid:");
        CHECK(ns != NULL, "no NSpid");
        if (ns) {
            const char *eol = strchr(ns + 1, '\n');
            const char *last = eol;
            while (last > ns && last[-1] != '\t')
                last--;
            CHECK(atoi(last) == inner, "innermost NSpid %d, sbx_exec said %d", atoi(last), (int)inner);
        }
        CHECK(strstr(buf, "\nCapEff:\t0000000000000000\n") != NULL, "host-side CapEff not 0");
    }
    /* init too runs as the unprivileged uid */
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)sbx_init_pid(sb));
    CHECK(read_file_at(AT_FDCWD, path, buf, sizeof(buf)) > 0, "read init status");
    const char *u = strstr(buf, "\nUid:");
    CHECK(u && strtoul(u + 5, NULL, 10) == huid, "init's host uid is not %u", (unsigned)huid);
    /* Under the built-in profile init holds the filter itself, once set
     * up, and the processes it starts inherit it. */
    CHECK(strstr(buf, "\nSeccomp:\t2\n") != NULL, "init is not under the built-in seccomp filter");
    CHECK(sbx_reset(sb, &err) == 0, "reset: %s", err.msg);
    sbx_destroy(sb);
}

static void t_pid_namespace(void)
{
    run_t r;
    REQUIRE(probe_once(&default_spec, "status", NULL, &r) == 0, "probe status");
    int pids = atoi(SHOW(val(&r, "pids")));
    /* init and the probe; nothing of the host */
    CHECK(pids >= 1 && pids <= 3, "%d pids visible in /proc: %s", pids, SHOW(val(&r, "pid_list")));
    CHECK(val_is(&r, "ppid", "1"), "ppid %s", SHOW(val(&r, "ppid")));
    const char *list = val(&r, "pid_list");
    CHECK(list && strncmp(list, "1,", 2) == 0, "pid list %s", SHOW(list));
    int pid = atoi(SHOW(val(&r, "pid")));
    CHECK(pid > 1 && pid < 10, "probe's pid inside is %d", pid);
    const char *cg = val(&r, "cgroup");
    CHECK(cg != NULL, "no cgroup line");
    if (cg) {
        /* every hierarchy's path is the namespace's root */
        char copy[1024];
        snprintf(copy, sizeof(copy), "%s", cg);
        for (char *e = strtok(copy, ";"); e; e = strtok(NULL, ";")) {
            const char *path = strrchr(e, ':');
            CHECK(path && strcmp(path, ":/") == 0, "cgroup entry `%s` is not the namespace root", e);
        }
    }
}

/* A creator that ignores SIGUSR1 and glibc's own signal 32 (which glibc's
 * signal() cannot reset: a CI runner left it ignored once) and blocks
 * SIGUSR2: none of it may reach a sandbox's processes. */
typedef struct {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
} ksigaction_t;

typedef struct {
    struct sigaction usr1;
    ksigaction_t sig32;
    sigset_t mask;
} creator_signals_t;

static void creator_signals_set(creator_signals_t *saved)
{
    struct sigaction ign = {.sa_handler = SIG_IGN};
    sigaction(SIGUSR1, &ign, &saved->usr1);
    ksigaction_t kign = {.handler = SIG_IGN};
    syscall(SYS_rt_sigaction, 32, &kign, &saved->sig32, sizeof(kign.mask));
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    sigprocmask(SIG_BLOCK, &usr2, &saved->mask);
}

static void creator_signals_restore(const creator_signals_t *saved)
{
    sigaction(SIGUSR1, &saved->usr1, NULL);
    syscall(SYS_rt_sigaction, 32, &saved->sig32, NULL, sizeof(saved->sig32.mask));
    sigprocmask(SIG_SETMASK, &saved->mask, NULL);
}

static void t_privileges(void)
{
    run_t r;
    creator_signals_t saved;
    creator_signals_set(&saved);
    int rc = probe_once(&default_spec, "status", NULL, &r);
    creator_signals_restore(&saved);
    REQUIRE(rc == 0, "probe status");
    CHECK(val_is(&r, "SigIgn", "0000000000000000") && val_is(&r, "SigBlk", "0000000000000000"),
          "a signal ignored or blocked: SigIgn=%s SigBlk=%s", SHOW(val(&r, "SigIgn")), SHOW(val(&r, "SigBlk")));
    static const char *const zero_caps[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"};
    for (size_t i = 0; i < sizeof(zero_caps) / sizeof(zero_caps[0]); i++)
        CHECK(val_is(&r, zero_caps[i], "0000000000000000"), "%s=%s", zero_caps[i], SHOW(val(&r, zero_caps[i])));
    CHECK(val_is(&r, "NoNewPrivs", "1"), "NoNewPrivs=%s", SHOW(val(&r, "NoNewPrivs")));
    CHECK(val_is(&r, "Seccomp", "2"), "Seccomp=%s", SHOW(val(&r, "Seccomp")));
    CHECK(val_is(&r, "nofile", "1024"), "nofile=%s", SHOW(val(&r, "nofile")));
}

/* Every call the probe knows as dangerous fails with EPERM or ENOSYS;
 * the ones it lists as allowed work. The list comes from the probe
 * itself (syscall-list), so both stay in step. */
static void t_blocked_syscalls(void)
{
    sbx_t *sb = create(&default_spec);
    REQUIRE(sb, "create");
    run_t list, r;
    hearth_error_t err = {0};
    const char *argv_list[] = {probe, "syscall-list", NULL};
    const char *argv[] = {probe, "syscalls", NULL};
    int rc1 = run_in(sb, argv_list, 10000, &list, &err);
    CHECK(rc1 == 0, "syscall-list: %s", err.msg);
    int rc2 = run_in(sb, argv, 30000, &r, &err);
    CHECK(rc2 == 0, "syscalls: %s", err.msg);
    sbx_destroy(sb);
    if (rc1 < 0 || rc2 < 0)
        return;
    CHECK(r.end.kind == SBX_END_EXIT && r.end.status == 0, "end %s %d", end_kind_name(r.end.kind), r.end.status);
    int n = 0;
    for (const char *line = list.out; *line;) {
        const char *nl = strchr(line, '\n');
        if (nl == NULL)
            break;
        char key[64], policy[16];
        if (sscanf(line, "%63[^=]=%15s", key, policy) == 2) {
            const char *got = val(&r, key);
            n++;
            if (strcmp(policy, "deny") == 0)
                CHECK(got && (strcmp(got, "EPERM") == 0 || strcmp(got, "ENOSYS") == 0),
                      "%s: want EPERM or ENOSYS, got %s", key, SHOW(got));
            else
                CHECK(got && strcmp(got, "ok") == 0, "%s: want ok, got %s", key, SHOW(got));
        }
        line = nl + 1;
    }
    CHECK(n >= 30, "only %d calls listed", n);
    /* the ones the brief names explicitly, in case the list shrinks */
    static const char *const named[] = {"unshare_user", "unshare_ns", "clone_newuser", "clone3", "mount",
                                        "umount2", "pivot_root", "setns", "keyctl", "add_key", "bpf",
                                        "ptrace_traceme", "ptrace_attach_1", "userfaultfd", "io_uring_setup",
                                        "perf_event_open", "socket_alg", "socket_vsock", "ioctl_tiocsti",
                                        "ioctl_tiocsti_high", "open_by_handle_at", "init_module",
                                        "finit_module", "kexec_load", "chroot", "swapon", "reboot", "syslog",
                                        "acct", "settimeofday", "personality_read_implies_exec"};
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++)
        CHECK(val(&r, named[i]) != NULL, "probe did not try %s", named[i]);
    CHECK(val_is(&r, "socket_inet", "ok"), "socket(AF_INET): %s", SHOW(val(&r, "socket_inet")));
}

static void t_abi_escapes(void)
{
    static const char *const cmds[] = {"x32", "int80"};
    for (size_t i = 0; i < 2; i++) {
        run_t r;
        if (probe_once(&default_spec, cmds[i], NULL, &r) < 0) {
            CHECK(0, "probe %s", cmds[i]);
            continue;
        }
        CHECK(r.end.kind == SBX_END_SIGNAL && r.end.status == SIGSYS, "%s: end %s %d, output: %s", cmds[i],
              end_kind_name(r.end.kind), r.end.status, r.out);
    }
}

static void t_network(void)
{
    run_t r;
    REQUIRE(probe_once(&default_spec, "status", NULL, &r) == 0, "probe status");
    CHECK(val_is(&r, "netifs", "lo"), "interfaces: %s", SHOW(val(&r, "netifs")));
    CHECK(val_is(&r, "lo_up", "1"), "lo up: %s", SHOW(val(&r, "lo_up")));
    CHECK(val_is(&r, "loopback", "ok"), "TCP over 127.0.0.1: %s", SHOW(val(&r, "loopback")));
    const char *out = val(&r, "outside");
    CHECK(out && strcmp(out, "ok") != 0, "connect to 192.0.2.1: %s", SHOW(out));
}

static void t_hostname(void)
{
    run_t r;
    REQUIRE(probe_once(&default_spec, "status", NULL, &r) == 0, "probe status");
    CHECK(val_is(&r, "hostname", "hearth"), "default hostname: %s", SHOW(val(&r, "hostname")));
    sbx_spec_t spec = {.hostname = "probe-box"};
    REQUIRE(probe_once(&spec, "status", NULL, &r) == 0, "probe status");
    CHECK(val_is(&r, "hostname", "probe-box"), "hostname: %s", SHOW(val(&r, "hostname")));
    char host_name[256] = "";
    gethostname(host_name, sizeof(host_name));
    CHECK(strcmp(host_name, "probe-box") != 0, "the host's name changed");
}

static void t_filesystems(void)
{
    sbx_spec_t spec = {.tmp_bytes = 8u << 20};
    sbx_t *sb = create(&spec);
    REQUIRE(sb, "create");
    run_t r, fill;
    hearth_error_t err = {0};
    const char *a_status[] = {probe, "status", NULL};
    const char *a_fill[] = {probe, "tmpfill", NULL};
    CHECK(run_in(sb, a_status, 10000, &r, &err) == 0, "status: %s", err.msg);
    CHECK(run_in(sb, a_fill, 30000, &fill, &err) == 0, "tmpfill: %s", err.msg);
    sbx_destroy(sb);
    CHECK(val_is(&r, "root_write", "EROFS"), "create /probe-test: %s", SHOW(val(&r, "root_write")));
    CHECK(val_is(&r, "root_readonly", "1"), "/ read-only: %s", SHOW(val(&r, "root_readonly")));
    CHECK(val_is(&r, "tmp_write", "ok"), "write /tmp: %s", SHOW(val(&r, "tmp_write")));
    CHECK(val_is(&r, "tmp_fstype", "tmpfs"), "/tmp type: %s", SHOW(val(&r, "tmp_fstype")));
    CHECK(parse_u64(val(&r, "tmp_size")) == 8u << 20, "/tmp size: %s", SHOW(val(&r, "tmp_size")));
    uint64_t written = parse_u64(val(&fill, "written"));
    CHECK(val_is(&fill, "errno", "ENOSPC"), "filling /tmp ended with %s", SHOW(val(&fill, "errno")));
    CHECK(written <= 8u << 20 && written >= 4u << 20, "wrote %llu bytes into an 8 MiB /tmp",
          (unsigned long long)written);
}

static void t_bind_mount(void)
{
    char src[PATH_MAX + 8];
    snprintf(src, sizeof(src), "%s", bin_dir);
    sbx_mount_t m = {src, "/mnt", true};
    sbx_spec_t spec = {.mounts = &m, .n_mounts = 1};
    sbx_t *sb = create(&spec);
    REQUIRE(sb, "create with --bind %s:/mnt:ro", src);
    run_t r;
    hearth_error_t err = {0};
    const char *argv[] = {"/bin/sh", "-c",
                          "test -x /mnt/probe || exit 10; (echo x > /mnt/probe-write) 2>/dev/null && exit 11; exit 0",
                          NULL};
    CHECK(run_in(sb, argv, 10000, &r, &err) == 0, "run: %s", err.msg);
    CHECK(r.end.kind == SBX_END_EXIT && r.end.status == 0, "end %s %d (10: not visible, 11: writable)",
          end_kind_name(r.end.kind), r.end.status);
    sbx_destroy(sb);
    char leftover[PATH_MAX + 32];
    snprintf(leftover, sizeof(leftover), "%s/probe-write", src);
    CHECK(access(leftover, F_OK) != 0, "the sandbox wrote %s", leftover);
}

static void t_masked_paths(void)
{
    run_t r;
    REQUIRE(probe_once(&default_spec, "masked", NULL, &r) == 0, "probe masked");
    /* readable files: empty (masked) or an errno (absent, denied) */
    static const char *const files[] = {"kcore", "keys", "timer_list", "sched_debug", "kallsyms", "latency_stats"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        const char *v = val(&r, files[i]);
        CHECK(v && (strcmp(v, "0") == 0 || v[0] == 'E'), "/proc/%s: %s", files[i], SHOW(v));
    }
    static const char *const dirs[] = {"acpi", "scsi", "sys_firmware", "sys"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        const char *v = val(&r, dirs[i]);
        CHECK(v && (strcmp(v, "0") == 0 || v[0] == 'E'), "%s listing: %s", dirs[i], SHOW(v));
    }
    static const char *const unwritable[] = {"sysrq_trigger", "sys_kernel_hostname", "sys_vm_drop_caches"};
    for (size_t i = 0; i < sizeof(unwritable) / sizeof(unwritable[0]); i++) {
        const char *v = val(&r, unwritable[i]);
        CHECK(v && v[0] == 'E', "open %s for writing: %s", unwritable[i], SHOW(v));
    }
    static const char *const init_bits[] = {"init_environ", "init_exe", "init_fd"};
    for (size_t i = 0; i < sizeof(init_bits) / sizeof(init_bits[0]); i++) {
        const char *v = val(&r, init_bits[i]);
        CHECK(v && v[0] == 'E', "init's %s: %s", init_bits[i], SHOW(v));
    }
}

/* An fd the caller leaks (no O_CLOEXEC) must not reach the sandbox
 * (CVE-2024-21626), and neither may init's control socket. */
static void t_no_leaked_fds(void)
{
    int leak = open("/", O_RDONLY | O_DIRECTORY);
    run_t r;
    int rc = probe_once(&default_spec, "fds", NULL, &r);
    if (leak >= 0)
        close(leak);
    REQUIRE(rc == 0, "probe fds");
    CHECK(val_is(&r, "extra_fds", "0"), "fds beyond stdio: %s\n%s", SHOW(val(&r, "extra_fds")), r.out);
    CHECK(val_is(&r, "root_dotdot_same", "1"), "/.. is not /");
    CHECK(val_is(&r, "stdio.0", "/dev/null"), "stdin: %s", SHOW(val(&r, "stdio.0")));
}

/* --- faults ------------------------------------------------------------------------ */

static void t_fork_bomb(void)
{
    sbx_spec_t spec = {.pids = 16};
    sbx_t *sb = create(&spec);
    REQUIRE(sb, "create");
    char name[64];
    snprintf(name, sizeof(name), "%s", sbx_cgroup_name(sb));
    uid_t huid = sbx_host_uid(sb);
    run_t r;
    hearth_error_t err = {0};
    const char *argv[] = {probe, "forkbomb", NULL};
    CHECK(run_in(sb, argv, 30000, &r, &err) == 0, "run: %s", err.msg);
    CHECK(r.end.kind == SBX_END_PIDS, "end %s %d, output: %s", end_kind_name(r.end.kind), r.end.status, r.out);
    int forked = atoi(SHOW(val(&r, "forked")));
    CHECK(forked > 0 && forked < 16, "forked %d children under a limit of 16", forked);
    CHECK(val_is(&r, "errno", "EAGAIN"), "fork failed with %s", SHOW(val(&r, "errno")));
    CHECK(count_uid_procs(huid, huid + 1, true) >= forked, "the sleeping children are already gone");
    sbx_usage_t u;
    CHECK(sbx_usage(sb, &u, &err) == 0 && u.pids_max_hits > 0, "pids_max_hits %llu",
          (unsigned long long)u.pids_max_hits);
    CHECK(cgroup_exists(name), "cgroup %s missing before destroy", name);
    sbx_destroy(sb);
    CHECK(count_uid_procs(huid, huid + 1, false) == 0, "processes with uid %u remain", (unsigned)huid);
    CHECK(!cgroup_exists(name), "cgroup %s remains", name);
}

static void t_oom(void)
{
    sbx_spec_t spec = {.memory_bytes = 32u << 20};
    sbx_t *sb = create(&spec);
    REQUIRE(sb, "create");
    run_t r;
    hearth_error_t err = {0};
    const char *argv[] = {probe, "memhog", "100", NULL};
    CHECK(run_in(sb, argv, 30000, &r, &err) == 0, "run: %s", err.msg);
    CHECK(r.end.kind == SBX_END_OOM, "end %s %d", end_kind_name(r.end.kind), r.end.status);
    CHECK(val(&r, "done") == NULL, "allocated all 100 MiB under a 32 MiB limit");
    sbx_usage_t u;
    CHECK(sbx_usage(sb, &u, &err) == 0 && u.oom_kills > 0, "oom_kills %llu", (unsigned long long)u.oom_kills);
    CHECK(u.memory_peak <= (32u << 20), "peak %llu above the limit", (unsigned long long)u.memory_peak);
    char why[128];
    sbx_end_describe(&r.end, &spec, 0, why, sizeof(why));
    CHECK(strcmp(why, "out of memory (limit 32 MiB)") == 0, "described as `%s`", why);
    /* an OOM kill of one process leaves the sandbox usable */
    const char *again[] = {probe, "exit", "0", NULL};
    if (sbx_alive(sb)) {
        CHECK(run_in(sb, again, 10000, &r, &err) == 0, "after OOM: %s", err.msg);
        CHECK(r.end.kind == SBX_END_EXIT && r.end.status == 0, "after OOM: end %s %d", end_kind_name(r.end.kind),
              r.end.status);
    }
    sbx_destroy(sb);
}

static void t_timeout(void)
{
    sbx_t *sb = create(&default_spec);
    REQUIRE(sb, "create");
    char name[64];
    snprintf(name, sizeof(name), "%s", sbx_cgroup_name(sb));
    uid_t huid = sbx_host_uid(sb);
    run_t r;
    hearth_error_t err = {0};
    const char *argv[] = {probe, "hang", NULL};
    CHECK(run_in(sb, argv, 1000, &r, &err) == 0, "run: %s", err.msg);
    CHECK(r.end.kind == SBX_END_TIMEOUT, "end %s %d", end_kind_name(r.end.kind), r.end.status);
    CHECK(r.elapsed_ms >= 1000 && r.elapsed_ms < 2500, "ended after %llu ms", (unsigned long long)r.elapsed_ms);
    CHECK(val(&r, "hanging") != NULL, "the probe never started hanging");
    CHECK(!sbx_alive(sb), "still alive after the time limit");
    /* A SIGKILLed process runs its exit for a moment before it is a zombie. */
    int live = count_uid_procs(huid, huid + 1, true);
    for (int i = 0; live > 0 && i < 100; i++) {
        usleep(10000);
        live = count_uid_procs(huid, huid + 1, true);
    }
    CHECK(live == 0, "%d live processes with uid %u 1 s after the timeout", live, (unsigned)huid);
    char why[128];
    sbx_end_describe(&r.end, &default_spec, 1000, why, sizeof(why));
    CHECK(strcmp(why, "time limit (1 s) reached") == 0, "described as `%s`", why);
    sbx_destroy(sb);
    CHECK(count_uid_procs(huid, huid + 1, false) == 0, "processes with uid %u remain", (unsigned)huid);
    CHECK(!cgroup_exists(name), "cgroup %s remains", name);
}

static void t_cpu_accounting(void)
{
    sbx_t *sb = create(&default_spec);
    REQUIRE(sb, "create");
    hearth_error_t err = {0};
    sbx_usage_t before, after;
    run_t r;
    /* The cgroup also counts the probe's exec and exit, and init's part in
     * them: a few ms on a real kernel, tens under qemu's emulation (TCG),
     * where a longer spin keeps them under the 5 %. */
    const char *spin = getenv("HEARTH_VM") ? "1000" : "200";
    const char *argv[] = {probe, "spin", spin, NULL};
    CHECK(sbx_usage(sb, &before, &err) == 0, "usage: %s", err.msg);
    CHECK(run_in(sb, argv, 30000, &r, &err) == 0, "run: %s", err.msg);
    /* after the end: the counters are exact once the process is gone */
    CHECK(sbx_usage(sb, &after, &err) == 0, "usage: %s", err.msg);
    sbx_destroy(sb);
    uint64_t own = parse_u64(val(&r, "rusage_ns"));
    uint64_t cg = after.cpu_ns - before.cpu_ns;
    REQUIRE(own >= (uint64_t)atoi(spin) * 950000ULL, "probe reports %llu ns of CPU for spin %s", (unsigned long long)own,
            spin);
    double ratio = (double)cg / (double)own;
    printf("#   cgroup %.3f ms, probe's getrusage %.3f ms (ratio %.4f)\n", cg / 1e6, own / 1e6, ratio);
    CHECK(ratio > 0.95 && ratio < 1.05, "cgroup CPU %llu ns vs getrusage %llu ns", (unsigned long long)cg,
          (unsigned long long)own);
}

static void t_reset_keeps_sandbox(void)
{
    sbx_t *sb = create(&default_spec);
    REQUIRE(sb, "create");
    uid_t huid = sbx_host_uid(sb);
    hearth_error_t err = {0};
    const char *argv[] = {probe, "hang", NULL};
    sbx_exec_t ex = {.argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1};
    CHECK(sbx_exec(sb, &ex, NULL, &err) == 0, "exec hang: %s", err.msg);
    int live = 0;
    for (int i = 0; i < 200 && (live = count_uid_procs(huid, huid + 1, true)) < 3; i++)
        usleep(5000);
    CHECK(live >= 3, "%d live processes (init, hang, its grandchild expected)", live);
    CHECK(sbx_reset(sb, &err) == 0, "reset: %s", err.msg);
    CHECK(count_uid_procs(huid, huid + 1, true) == 1, "%d live processes after reset (init only expected)",
          count_uid_procs(huid, huid + 1, true));
    CHECK(sbx_alive(sb), "dead after reset");
    run_t r;
    const char *st[] = {probe, "status", NULL};
    CHECK(run_in(sb, st, 10000, &r, &err) == 0, "status after reset: %s", err.msg);
    CHECK(r.end.kind == SBX_END_EXIT && r.end.status == 0, "end %s %d", end_kind_name(r.end.kind), r.end.status);
    CHECK(val_is(&r, "pids", "2"), "pids after reset: %s (%s)", SHOW(val(&r, "pids")), SHOW(val(&r, "pid_list")));
    sbx_destroy(sb);
}

/* An END says whether the process left anything behind: hearthd resets a
 * warm sandbox only when it did. */
static void t_end_alone(void)
{
    sbx_t *sb = create(&default_spec);
    REQUIRE(sb, "create");
    hearth_error_t err = {0};
    run_t r;
    const char *st[] = {probe, "exit", "0", NULL};
    CHECK(run_in(sb, st, 10000, &r, &err) == 0 && r.end.kind == SBX_END_EXIT, "exit: %s", err.msg);
    CHECK(r.end.alone, "a process that started nothing: END not alone");
    const char *bg[] = {"/bin/sh", "-c", "sleep 30 & exit 0", NULL};
    CHECK(run_in(sb, bg, 10000, &r, &err) == 0 && r.end.kind == SBX_END_EXIT, "sh: %s", err.msg);
    CHECK(!r.end.alone, "a shell that left `sleep 30` running: END says alone");
    CHECK(sbx_reset(sb, &err) == 0, "reset: %s", err.msg);
    CHECK(run_in(sb, st, 10000, &r, &err) == 0 && r.end.alone, "after the reset: END not alone (%s)", err.msg);
    sbx_destroy(sb);
}

static void t_warm_sandbox(void)
{
    sbx_t *sb = create(&default_spec);
    REQUIRE(sb, "create");
    hearth_error_t err = {0};
    run_t r;
    static const struct {
        const char *argv[5];
        int status;
    } steps[] = {
        {{"/bin/true", NULL}, 0},
        {{"/bin/sh", "-c", "exit 5", NULL}, 5},
        {{"/bin/sh", "-c", "echo warm > /tmp/keep", NULL}, 0},
        {{"/bin/sh", "-c", "test \"$(cat /tmp/keep)\" = warm", NULL}, 0},
        {{"false", NULL}, 1},
        {{NULL}, 0}, /* probe status x3 */
        {{NULL}, 0},
        {{NULL}, 0},
    };
    pid_t last = 0;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        const char *pargv[] = {probe, "status", NULL};
        const char *const *argv = steps[i].argv[0] ? steps[i].argv : pargv;
        if (run_in(sb, argv, 10000, &r, &err) < 0) {
            CHECK(0, "step %zu (%s): %s", i, argv[0], err.msg);
            break;
        }
        CHECK(r.end.kind == SBX_END_EXIT && r.end.status == steps[i].status, "step %zu (%s): end %s %d", i, argv[0],
              end_kind_name(r.end.kind), r.end.status);
        CHECK(r.end.pid != last, "step %zu reused pid %d", i, (int)r.end.pid);
        last = r.end.pid;
        if (argv == pargv)
            CHECK(val_is(&r, "pids", "2"), "step %zu sees %s pids", i, SHOW(val(&r, "pids")));
    }
    CHECK(sbx_alive(sb), "warm sandbox died");
    sbx_destroy(sb);
}

static void t_exec_errors(void)
{
    sbx_t *sb = create(&default_spec);
    REQUIRE(sb, "create");
    hearth_error_t err = {0};
    const struct {
        const char *cmd;
        int code;
    } cases[] = {
        {"/no/such/binary", ENOENT},
        {bin_dir, EACCES}, /* a directory */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *argv[] = {cases[i].cmd, NULL};
        sbx_exec_t ex = {.argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1};
        memset(&err, 0, sizeof(err));
        int rc = sbx_exec(sb, &ex, NULL, &err);
        CHECK(rc < 0 && err.code == cases[i].code, "exec %s: rc %d, code %d (%s), want %s", cases[i].cmd, rc, err.code,
              err.msg, strerror(cases[i].code));
        CHECK(rc < 0 && strstr(err.msg, cases[i].cmd) != NULL, "message does not name the command: %s", err.msg);
    }
    /* still usable */
    run_t r;
    const char *ok[] = {"/bin/true", NULL};
    CHECK(run_in(sb, ok, 10000, &r, &err) == 0 && r.end.kind == SBX_END_EXIT && r.end.status == 0,
          "exec after failures: %s", err.msg);
    sbx_destroy(sb);
}

/* sbx_exec_t: "argv[0] is looked up on PATH from envp". Not on the PATH
 * the sandbox's creator happened to have (which may name host directories
 * the sandbox's uid cannot search, giving EACCES for a missing command). */
static void t_exec_path_from_envp(void)
{
    const char *saved = getenv("PATH");
    char *keep = saved ? strdup(saved) : NULL;
    setenv("PATH", "/nonexistent-hearth-path", 1);
    sbx_t *sb = create(&default_spec);
    if (keep) {
        setenv("PATH", keep, 1);
        free(keep);
    } else {
        unsetenv("PATH");
    }
    REQUIRE(sb, "create");
    hearth_error_t err = {0};
    run_t r;
    const char *t[] = {"true", NULL};
    /* default envp: PATH=...:/usr/bin:/bin */
    int rc = run_in(sb, t, 10000, &r, &err);
    CHECK(rc == 0 && r.end.kind == SBX_END_EXIT && r.end.status == 0,
          "`true` with envp PATH=/usr/bin:... while the creator's PATH is elsewhere: %s", rc ? err.msg : "ran");
    const char *env_nopath[] = {"PATH=/nonexistent-hearth-path", NULL};
    sbx_exec_t ex = {.argv = t, .envp = env_nopath, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1};
    memset(&err, 0, sizeof(err));
    rc = sbx_exec(sb, &ex, NULL, &err);
    CHECK(rc < 0 && err.code == ENOENT, "`true` with envp PATH=/nonexistent: rc %d, %s", rc,
          rc ? err.msg : "found on another PATH");
    if (rc == 0) {
        sbx_end_t end;
        sbx_wait(sb, 10000, &end, &err);
    }
    sbx_destroy(sb);
}

/* Fails closed: a clear message, and neither a cgroup nor a process left. */
static void t_bad_specs(void)
{
    int roots = 0;
    int before = cgroup_children(cg_root, &roots);
    int procs_before = count_uid_procs(UID_BASE, UID_BASE + UID_COUNT, false);
    sbx_mount_t no_target = {bin_dir, "/no-such-target-hearth", true};
    sbx_mount_t no_source = {"/no-such-source-hearth", "/mnt", true};
    sbx_mount_t relative = {"etc", "/mnt", true};
    const struct {
        sbx_spec_t spec;
        const char *want; /* in the message */
    } cases[] = {
        {{.rootfs = "/no-such-rootfs-hearth"}, "/no-such-rootfs-hearth"},
        {{.rootfs = "relative/root"}, "absolute"},
        {{.rootfs = bin_dir}, "/proc"}, /* no /proc, /dev, /tmp in it */
        {{.mounts = &no_target, .n_mounts = 1}, "no-such-target-hearth"},
        {{.mounts = &no_source, .n_mounts = 1}, "no-such-source-hearth"},
        {{.mounts = &relative, .n_mounts = 1}, "absolute"},
        {{.memory_bytes = 1024}, "memory"},
        {{.seccomp = "/no-such-profile-hearth.json"}, "no-such-profile-hearth"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        hearth_error_t err = {0};
        sbx_t *sb = NULL;
        int rc = sbx_create(host, &cases[i].spec, &sb, &err);
        CHECK(rc < 0, "case %zu (%s) was accepted", i, cases[i].want);
        if (rc == 0) {
            sbx_destroy(sb);
            continue;
        }
        printf("#   case %zu: %s\n", i, err.msg);
        CHECK(strstr(err.msg, cases[i].want) != NULL, "case %zu: `%s` does not mention `%s`", i, err.msg,
              cases[i].want);
        int now = cgroup_children(cg_root, NULL);
        CHECK(now == before, "case %zu left %d cgroups behind", i, now - before);
        CHECK(count_uid_procs(UID_BASE, UID_BASE + UID_COUNT, false) == procs_before, "case %zu left processes", i);
    }
    /* A checked, canonical path that has become a symlink since (a tenant
     * with a writable mount can make one): refused when the caller says
     * its paths are resolved, followed otherwise. */
    char link[64];
    snprintf(link, sizeof(link), "/var/tmp/hearth-test-link-%d", (int)getpid());
    unlink(link);
    if (symlink(bin_dir, link) == 0) {
        sbx_mount_t via_link = {link, "/mnt", true};
        sbx_spec_t resolved = {.mounts = &via_link, .n_mounts = 1, .paths_resolved = true};
        sbx_spec_t plain = {.mounts = &via_link, .n_mounts = 1};
        hearth_error_t err = {0};
        sbx_t *sb = NULL;
        CHECK(sbx_create(host, &resolved, &sb, &err) < 0 && strstr(err.msg, link) != NULL,
              "paths_resolved: a symlinked source was bound (%s)", sb ? "created" : err.msg);
        sbx_destroy(sb);
        sb = NULL;
        CHECK(sbx_create(host, &plain, &sb, &err) == 0, "a symlinked source without paths_resolved: %s", err.msg);
        sbx_destroy(sb);
        unlink(link);
    } else {
        CHECK(0, "symlink %s: %s", link, strerror(errno));
    }
    /* and the host is still fine */
    run_t r;
    CHECK(probe_once(&default_spec, "exit", "0", &r) == 0 && r.end.kind == SBX_END_EXIT, "sandbox after failures");
}

static const char *docker_profile(void)
{
    static char path[PATH_MAX + 64];
    const char *env = getenv("HEARTH_TESTDATA");
    if (env) {
        snprintf(path, sizeof(path), "%s/docker-default-seccomp.json", env);
        if (access(path, R_OK) == 0)
            return path;
    }
    snprintf(path, sizeof(path), "%s/../shared/testdata/docker-default-seccomp.json", repo);
    if (access(path, R_OK) == 0)
        return path;
    snprintf(path, sizeof(path), "/work/shared/testdata/docker-default-seccomp.json");
    if (access(path, R_OK) == 0)
        return path;
    return NULL;
}

/* Two hosts over one uid range (as `hearth run` beside a hearthd, both
 * from 100000 by default) never map two live sandboxes to one host uid;
 * with every uid held, a creation says where they went; a destroyed
 * sandbox's uid is free again. The hosts' uid locks exclude each other in
 * one process as they would in two. */
static void t_uid_locks(void)
{
    char ra[96], rb[96];
    snprintf(ra, sizeof(ra), "%s-ua", cg_root);
    snprintf(rb, sizeof(rb), "%s-ub", cg_root);
    uid_t base = UID_BASE + UID_COUNT - 2;
    sbx_host_config_t ca = {.cgroup_root = ra, .uid_base = base, .uid_count = 2};
    sbx_host_config_t cb = {.cgroup_root = rb, .uid_base = base, .uid_count = 2};
    sbx_host_t *a = NULL, *b = NULL;
    hearth_error_t err = {0};
    REQUIRE(sbx_host_open(&ca, &a, &err) == 0, "host a: %s", err.msg);
    if (sbx_host_open(&cb, &b, &err) < 0) {
        CHECK(0, "host b: %s", err.msg);
        sbx_host_close(a);
        return;
    }
    sbx_t *x = NULL, *y = NULL, *z = NULL;
    if (sbx_create(a, &default_spec, &x, &err) < 0) {
        CHECK(0, "create in a: %s", err.msg);
        goto out;
    }
    if (sbx_create(b, &default_spec, &y, &err) < 0) {
        CHECK(0, "create in b: %s", err.msg);
        goto out;
    }
    uid_t xu = sbx_host_uid(x), yu = sbx_host_uid(y);
    CHECK(xu != yu && xu >= base && xu < base + 2 && yu >= base && yu < base + 2,
          "two live sandboxes over uids %u-%u map to %u and %u", (unsigned)base, (unsigned)base + 1, (unsigned)xu,
          (unsigned)yu);
    hearth_error_t full = {0};
    int rc = sbx_create(b, &default_spec, &z, &full);
    CHECK(rc < 0 && strstr(full.msg, "no free uid") && strstr(full.msg, "1 of them held by another"),
          "a third sandbox over two uids: %s", rc == 0 ? "created" : full.msg);
    if (rc == 0) {
        sbx_destroy(z);
        z = NULL;
    }
    sbx_destroy(x);
    x = NULL;
    if (sbx_create(b, &default_spec, &z, &err) < 0)
        CHECK(0, "create in b once a's sandbox is gone: %s", err.msg);
    else
        CHECK(sbx_host_uid(z) == xu, "b's new sandbox maps to %u, want %u, freed by a", (unsigned)sbx_host_uid(z),
              (unsigned)xu);
out:
    sbx_host_close(a); /* destroys what is left */
    sbx_host_close(b);
}

static void t_docker_seccomp(void)
{
    const char *profile = docker_profile();
    if (profile == NULL)
        SKIP("Docker's default seccomp profile not found (../shared/testdata/docker-default-seccomp.json "
             "next to the repo, or $HEARTH_TESTDATA)");
    sbx_spec_t spec = {.seccomp = profile};
    sbx_t *sb = create(&spec);
    REQUIRE(sb, "create with %s", profile);
    run_t st, sc;
    hearth_error_t err = {0};
    const char *a_status[] = {probe, "status", NULL};
    const char *a_sys[] = {probe,   "syscalls", "unshare_user", "unshare_ns", "unshare_net", "clone_newuser",
                           "clone3", "mount",   "setns",        "keyctl",     "bpf",          "socket_alg",
                           "socket_vsock", "ioctl_tiocsti", "socket_inet", "clone_plain", NULL};
    CHECK(run_in(sb, a_status, 10000, &st, &err) == 0, "status: %s", err.msg);
    CHECK(run_in(sb, a_sys, 30000, &sc, &err) == 0, "syscalls: %s", err.msg);
    /* A profile of the operator's may deny what init needs: each process
     * installs it, and init runs without it. */
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)sbx_init_pid(sb));
    CHECK(read_file_at(AT_FDCWD, path, buf, sizeof(buf)) > 0 && strstr(buf, "\nSeccomp:\t0\n") != NULL,
          "init is under the operator's profile");
    sbx_destroy(sb);
    CHECK(st.end.kind == SBX_END_EXIT && st.end.status == 0, "status end %s %d", end_kind_name(st.end.kind),
          st.end.status);
    CHECK(val_is(&st, "Seccomp", "2"), "Seccomp=%s", SHOW(val(&st, "Seccomp")));
    static const char *const denied[] = {"unshare_user", "unshare_ns", "unshare_net", "clone_newuser", "clone3",
                                         "mount",        "setns",      "keyctl",      "bpf",           "socket_alg",
                                         "socket_vsock"};
    for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
        const char *v = val(&sc, denied[i]);
        CHECK(v && (strcmp(v, "EPERM") == 0 || strcmp(v, "ENOSYS") == 0), "%s under Docker's profile: %s",
              denied[i], SHOW(v));
    }
    /* Docker allows ioctl wholesale; TIOCSTI still finds no terminal (setsid) */
    const char *tiocsti = val(&sc, "ioctl_tiocsti");
    CHECK(tiocsti && strcmp(tiocsti, "ok") != 0, "TIOCSTI under Docker's profile: %s", SHOW(tiocsti));
    CHECK(val_is(&sc, "socket_inet", "ok"), "socket(AF_INET): %s", SHOW(val(&sc, "socket_inet")));
    CHECK(val_is(&sc, "clone_plain", "ok"), "fork: %s", SHOW(val(&sc, "clone_plain")));
}

/* The children of process pid (its main thread's), up to max; how many. */
static int children_of(pid_t pid, pid_t *out, int max)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
    int n = 0;
    if (read_file_at(AT_FDCWD, path, buf, sizeof(buf)) < 0)
        return 0;
    for (char *p = buf; *p && n < max;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p)
            break;
        out[n++] = (pid_t)v;
        p = end;
    }
    return n;
}

/* The same checks through a spawner: sandboxes cloned from a small fork
 * server instead of this process. */
static void t_spawner(void)
{
    char root[96];
    snprintf(root, sizeof(root), "%s-sp", cg_root);
    sbx_host_config_t hc = {.cgroup_root = root, .uid_base = UID_BASE + UID_COUNT / 2, .uid_count = UID_COUNT / 2,
                            .spawner = true, .netns_ahead = 2, .cgroups_ahead = 2, .inits_ahead = true};
    pid_t before[16], after[16], spawner = 0;
    int n_before = children_of(getpid(), before, 16);
    sbx_host_t *h = NULL;
    hearth_error_t err = {0};
    /* The spawner is forked from us: what we ignore or block must not
     * reach the sandbox's processes that way. */
    creator_signals_t saved;
    creator_signals_set(&saved);
    int open_rc = sbx_host_open(&hc, &h, &err);
    creator_signals_restore(&saved);
    REQUIRE(open_rc == 0, "host with spawner: %s", err.msg);
    int n_after = children_of(getpid(), after, 16);
    for (int i = 0; i < n_after; i++) {
        bool old_child = false;
        for (int j = 0; j < n_before; j++)
            old_child = old_child || after[i] == before[j];
        if (!old_child)
            spawner = after[i];
    }
    /* Idle a moment: on v1 the spawner clones an init ahead, and the next
     * creation is that process. */
    pid_t waiting[4];
    int n_waiting = 0;
    uint64_t until = now_ns() + 2000000000ULL;
    usleep(100000); /* past the mount template's builder, a child of the spawner for a moment */
    while ((n_waiting = children_of(spawner, waiting, 4)) < 1 && now_ns() < until)
        usleep(10000);
    bool v1 = strcmp(sbx_host_cgroup_mode(h), "v1") == 0;
    if (v1)
        CHECK(spawner > 0 && n_waiting == 1, "spawner %d: %d children after idling, want the one cloned ahead",
              (int)spawner, n_waiting);
    else
        CHECK(spawner > 0 && n_waiting == 0, "spawner %d: %d children after idling, want none on v2", (int)spawner,
              n_waiting);
    sbx_t *sb = NULL;
    if (sbx_create(h, &default_spec, &sb, &err) < 0) {
        CHECK(0, "create through the spawner: %s", err.msg);
        sbx_host_close(h);
        return;
    }
    if (v1 && n_waiting == 1)
        CHECK(sbx_init_pid(sb) == waiting[0] && sbx_host_cloned_ahead(h) == 1,
              "the sandbox's init is %d, not %d cloned ahead (%llu counted so)", (int)sbx_init_pid(sb),
              (int)waiting[0], (unsigned long long)sbx_host_cloned_ahead(h));
    /* init itself: nothing ignored; only SIGCHLD blocked (its signalfd). */
    char init_status[64], st[4096];
    snprintf(init_status, sizeof(init_status), "/proc/%d/status", (int)sbx_init_pid(sb));
    CHECK(read_file_at(AT_FDCWD, init_status, st, sizeof(st)) > 0 &&
              strstr(st, "\nSigIgn:\t0000000000000000\n") != NULL &&
              strstr(st, "\nSigBlk:\t0000000000010000\n") != NULL,
          "init's signals through the spawner:\n%s", st);
    run_t r;
    const char *argv[] = {probe, "status", NULL};
    CHECK(run_in(sb, argv, 10000, &r, &err) == 0, "status: %s", err.msg);
    CHECK(val_is(&r, "uid", "0") && val_is(&r, "CapEff", "0000000000000000") && val_is(&r, "Seccomp", "2") &&
              val_is(&r, "pids", "2") && val_is(&r, "netifs", "lo"),
          "status through the spawner:\n%s", r.out);
    CHECK(val_is(&r, "SigIgn", "0000000000000000") && val_is(&r, "SigBlk", "0000000000000000"),
          "no signal ignored or blocked through the spawner (SIGUSR1 and 32 ignored, SIGUSR2 blocked by its "
          "creator):\n%s",
          r.out);
    uid_t huid = sbx_host_uid(sb);
    sbx_destroy(sb);

    /* Limits the kernel refuses (a CPU quota under its 1 ms minimum) on a
     * cgroup made ahead, whose limits are written once the request is on
     * its way to the spawner: the failure comes with the spawner's answer,
     * and the sandbox started meanwhile is gone with its cgroup. */
    while (sbx_host_make_ahead(h))
        ;
    int hiers = 0;
    int cgs_before = cgroup_children(root, &hiers);
    sbx_spec_t tiny = default_spec;
    tiny.cpus = 0.001;
    uint64_t bad_ticket;
    if (sbx_create_async(h, &tiny, &bad_ticket, &err) < 0) {
        CHECK(0, "a cgroup made ahead was there: the request should have gone out (%s)", err.msg);
    } else {
        sbx_t *bad = NULL;
        uint64_t t = 0;
        int rc = 0;
        uint64_t give_up = now_ns() + 10000000000ULL;
        while (rc == 0 && now_ns() < give_up) {
            struct pollfd p = {sbx_host_fd(h), POLLIN, 0};
            poll(&p, 1, 100);
            rc = sbx_host_poll(h, &bad, &t, &err);
        }
        CHECK(rc == 1 && t == bad_ticket && bad == NULL && strstr(err.msg, "cgroup") != NULL,
              "limits refused on a cgroup made ahead: poll %d, ticket %llu of %llu, sandbox %p, `%s`", rc,
              (unsigned long long)t, (unsigned long long)bad_ticket, (void *)bad, err.msg);
        CHECK(hiers > 0 && cgroup_children(root, NULL) == cgs_before - hiers,
              "cgroups under %s in %d hierarchies: %d before, %d after (want one fewer in each)", root, hiers,
              cgs_before, cgroup_children(root, NULL));
    }

    /* A burst asked for before any answer is read: more requests than the
     * socket holds, while the spawner's answers fill the other way (both
     * sides once blocked in sendmsg for good). */
    enum { BURST_MAX = 1000 };
    uint64_t tickets[BURST_MAX];
    /* A pending sandbox holds a cgroup fd per hierarchy and maybe a copy
     * of them: stay within the open files limit (1,000 hung before). */
    struct rlimit nofile;
    int burst = BURST_MAX;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur / 12 < (rlim_t)burst)
        burst = (int)(nofile.rlim_cur / 12);
    int asked = 0, got = 0, failed = 0;
    for (; asked < burst; asked++)
        if (sbx_create_async(h, &default_spec, &tickets[asked], &err) < 0) {
            CHECK(0, "burst request %d: %s", asked, err.msg);
            break;
        }
    uint64_t deadline = now_ns() + 120 * 1000000000ULL;
    while (got + failed < asked && now_ns() < deadline) {
        struct pollfd p = {sbx_host_fd(h), POLLIN, 0};
        poll(&p, 1, 100);
        sbx_t *one;
        uint64_t t;
        while (sbx_host_poll(h, &one, &t, &err) > 0) {
            if (one == NULL) {
                failed++;
                continue;
            }
            got++;
            sbx_destroy(one);
        }
    }
    CHECK(got == asked && failed == 0, "burst of %d: %d created, %d failed, %d unanswered in 120 s", asked, got,
          failed, asked - got - failed);

    /* An init cloned ahead killed while it waits: the spawner replaces it,
     * and creations go on. */
    if (v1) {
        usleep(100000);
        n_waiting = children_of(spawner, waiting, 4);
        CHECK(n_waiting == 1, "after the burst: %d children of the spawner waiting", n_waiting);
        if (n_waiting == 1) {
            kill(waiting[0], SIGKILL);
            pid_t next[4];
            int n_next = 0;
            uint64_t until2 = now_ns() + 2000000000ULL;
            while (now_ns() < until2 && !((n_next = children_of(spawner, next, 4)) == 1 && next[0] != waiting[0]))
                usleep(10000);
            CHECK(n_next == 1 && next[0] != waiting[0], "the killed child %d was not replaced (%d children, first %d)",
                  (int)waiting[0], n_next, n_next > 0 ? (int)next[0] : 0);
            sbx_t *after_kill = NULL;
            CHECK(sbx_create(h, &default_spec, &after_kill, &err) == 0 && after_kill != NULL &&
                      sbx_init_pid(after_kill) == next[0],
                  "creation after the kill: %s (init %d, waiting %d)", err.msg,
                  after_kill ? (int)sbx_init_pid(after_kill) : 0, (int)next[0]);
            sbx_destroy(after_kill);
        }
    }
    sbx_host_close(h);
    int roots = 0;
    cgroup_children(root, &roots);
    CHECK(roots == 0, "%s remains in %d hierarchies after sbx_host_close", root, roots);
    CHECK(count_uid_procs(huid, huid + 1, false) == 0, "processes with uid %u remain", (unsigned)huid);
}

/* --- leaks ----------------------------------------------------------------------------- */

static void t_leak_cycles(void)
{
    /* A first cycle outside the count: one-time allocations (seccomp
     * compile cache) are not leaks. */
    run_t r;
    REQUIRE(probe_once(&default_spec, "exit", "0", &r) == 0, "warm-up");
    int fds0 = count_fds();
    int mounts0 = count_lines("/proc/self/mountinfo");
    int cg0 = cgroup_children(cg_root, NULL);
    uint64_t t0 = now_ns();
    int failures = 0;
    hearth_error_t err = {0};
    const char *argv[] = {"/bin/true", NULL};
    for (int i = 0; i < LEAK_CYCLES && failures < 5; i++) {
        sbx_t *sb = NULL;
        if (sbx_create(host, &default_spec, &sb, &err) < 0) {
            printf("#   cycle %d: create: %s\n", i, err.msg);
            failures++;
            continue;
        }
        sbx_exec_t ex = {.argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1};
        sbx_end_t end;
        if (sbx_exec(sb, &ex, NULL, &err) < 0 || sbx_wait(sb, 10000, &end, &err) < 0) {
            printf("#   cycle %d: %s\n", i, err.msg);
            failures++;
        } else if (end.kind != SBX_END_EXIT || end.status != 0) {
            printf("#   cycle %d: end %s %d\n", i, end_kind_name(end.kind), end.status);
            failures++;
        }
        sbx_destroy(sb);
    }
    double ms = (double)(now_ns() - t0) / 1e6;
    printf("#   %d create+exec+destroy cycles in %.0f ms (%.2f ms each)\n", LEAK_CYCLES, ms, ms / LEAK_CYCLES);
    CHECK(failures == 0, "%d cycles failed", failures);
    int cg1 = cgroup_children(cg_root, NULL);
    CHECK(cg1 == 0 && cg0 == 0, "cgroups under %s: %d before, %d after", cg_root, cg0, cg1);
    CHECK(count_fds() == fds0, "fds: %d before, %d after", fds0, count_fds());
    CHECK(count_lines("/proc/self/mountinfo") == mounts0, "mountinfo lines: %d before, %d after", mounts0,
          count_lines("/proc/self/mountinfo"));
    int procs = count_uid_procs(UID_BASE, UID_BASE + UID_COUNT, false);
    CHECK(procs == 0, "%d processes with sandbox uids remain", procs);
    /* no zombie children of ours */
    CHECK(waitpid(-1, NULL, WNOHANG) <= 0, "an unreaped child of the test process");
}

/* --- main -------------------------------------------------------------------------------- */

static void find_paths(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    repo[0] = '\0';
    if (n > 0) {
        exe[n] = '\0';
        /* <repo>/build/tests/test_sandbox (or O=<dir>/build/tests/...) */
        char *s = strrchr(exe, '/');
        for (int up = 0; s && up < 2; up++) {
            *s = '\0';
            s = strrchr(exe, '/');
        }
        if (s) {
            *s = '\0';
            char check[PATH_MAX + 32];
            snprintf(check, sizeof(check), "%s/tests/harness.h", exe);
            if (access(check, F_OK) == 0)
                snprintf(repo, sizeof(repo), "%s", exe);
        }
    }
    if (repo[0] == '\0' && getcwd(repo, sizeof(repo)) == NULL)
        snprintf(repo, sizeof(repo), ".");
    const char *bin = getenv("HEARTH_BIN");
    if (bin && *bin) {
        char abs[PATH_MAX];
        snprintf(bin_dir, sizeof(bin_dir), "%s", realpath(bin, abs) != NULL ? abs : bin);
    } else {
        snprintf(bin_dir, sizeof(bin_dir), "%s/bin", repo);
    }
    snprintf(probe, sizeof(probe), "%s/probe", bin_dir);
}

/* A host with a spawner, as hearthd has: there a sandbox on the host's
 * root starts from the mount template (namespaces.c). The spawner says on
 * its stderr when it could not build one: caught here until its first
 * sandbox is up (it builds the template before it takes requests). */
static sbx_host_t *spawner_host;

static void t_mount_template(void)
{
    char root[96];
    snprintf(root, sizeof(root), "%s-iso", cg_root);
    sbx_host_config_t hc = {.cgroup_root = root, .uid_base = UID_BASE + UID_COUNT / 2, .uid_count = UID_COUNT / 2,
                            .spawner = true, .netns_ahead = 2, .cgroups_ahead = 2, .inits_ahead = true};
    char log[] = "/var/tmp/hearth-test-spawner-XXXXXX";
    int logfd = mkstemp(log);
    REQUIRE(logfd >= 0, "mkstemp: %s", strerror(errno));
    unlink(log);
    int saved = dup(2);
    fflush(stderr);
    dup2(logfd, 2);
    hearth_error_t err = {0};
    sbx_host_t *sp = NULL;
    int rc = sbx_host_open(&hc, &sp, &err);
    sbx_t *first = NULL;
    if (rc == 0)
        rc = sbx_create(sp, &default_spec, &first, &err);
    sbx_destroy(first);
    dup2(saved, 2);
    close(saved);
    char said[1024];
    ssize_t n = pread(logfd, said, sizeof(said) - 1, 0);
    close(logfd);
    said[n > 0 ? n : 0] = '\0';
    if (rc < 0 && sp != NULL)
        sbx_host_close(sp);
    REQUIRE(rc == 0, "host with a spawner: %s", err.msg);
    spawner_host = sp;
    CHECK(strstr(said, "mount template") == NULL, "the spawner said: %s", said);
}

/* One of them, and (v1) that it ran on an init cloned ahead. */
static void (*isolation_fn)(void);

static void isolation_on_ahead(void)
{
    uint64_t before = sbx_host_cloned_ahead(host);
    isolation_fn();
    if (strcmp(sbx_host_cgroup_mode(host), "v1") == 0)
        CHECK(sbx_host_cloned_ahead(host) > before, "no sandbox of this test started on an init cloned ahead");
}

/* The isolation checks once more, through that spawner. */
static void spawner_isolation(void)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"t_identity (spawner)", t_identity},         {"t_host_view (spawner)", t_host_view},
        {"t_pid_namespace (spawner)", t_pid_namespace}, {"t_privileges (spawner)", t_privileges},
        {"t_blocked_syscalls (spawner)", t_blocked_syscalls}, {"t_network (spawner)", t_network},
        {"t_hostname (spawner)", t_hostname},         {"t_filesystems (spawner)", t_filesystems},
        {"t_bind_mount (spawner)", t_bind_mount},     {"t_masked_paths (spawner)", t_masked_paths},
        {"t_no_leaked_fds (spawner)", t_no_leaked_fds},
    };
    if (spawner_host == NULL)
        return;
    sbx_host_t *local = host;
    host = spawner_host;
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        /* Idle long enough for an init cloned ahead (v1) to be waiting:
         * each test's first sandbox starts on one (bind mounts and all). */
        usleep(30000);
        isolation_fn = tests[i].fn;
        harness_run(tests[i].name, isolation_on_ahead);
    }
    sbx_host_close(spawner_host);
    spawner_host = NULL;
    host = local;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (geteuid() != 0) {
        printf("# needs root (namespaces, cgroups, uid maps)\n");
        printf("0 passed, 1 failed\n");
        return 1;
    }
    find_paths();
    uid_base_ = 900000u + (uid_t)(getpid() % 64) * UID_COUNT;
    /* As hearthd does: t_spawner's burst holds a cgroup fd per pending sandbox. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    snprintf(cg_root, sizeof(cg_root), "hearth/test-%d", (int)getpid());
    sbx_host_config_t hc = {.cgroup_root = cg_root, .uid_base = UID_BASE, .uid_count = UID_COUNT / 2};
    hearth_error_t err = {0};
    if (sbx_host_open(&hc, &host, &err) < 0) {
        printf("# sbx_host_open: %s\n", err.msg);
        printf("0 passed, 1 failed\n");
        return 1;
    }
    printf("# cgroup %s, root %s, probe %s\n", sbx_host_cgroup_mode(host), cg_root, probe);

    RUN(t_probe_present);
    RUN(t_identity);
    RUN(t_host_view);
    RUN(t_pid_namespace);
    RUN(t_privileges);
    RUN(t_blocked_syscalls);
    RUN(t_abi_escapes);
    RUN(t_network);
    RUN(t_hostname);
    RUN(t_filesystems);
    RUN(t_bind_mount);
    RUN(t_masked_paths);
    RUN(t_no_leaked_fds);
    RUN(t_fork_bomb);
    RUN(t_oom);
    RUN(t_timeout);
    RUN(t_cpu_accounting);
    RUN(t_reset_keeps_sandbox);
    RUN(t_end_alone);
    RUN(t_warm_sandbox);
    RUN(t_exec_errors);
    RUN(t_exec_path_from_envp);
    RUN(t_bad_specs);
    RUN(t_uid_locks);
    RUN(t_docker_seccomp);
    RUN(t_spawner);
    RUN(t_mount_template);
    spawner_isolation();
    RUN(t_leak_cycles);

    sbx_host_close(host);
    int roots = 0;
    cgroup_children(cg_root, &roots);
    harness_n++;
    if (roots == 0) {
        harness_passed++;
        printf("ok %d - cgroup root removed at close\n", harness_n);
    } else {
        harness_failed++;
        printf("not ok %d - cgroup root removed at close\n#   %s remains in %d hierarchies\n", harness_n, cg_root,
               roots);
    }
    return harness_done();
}
