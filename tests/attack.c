/* attack — escape attempts a hostile function makes from inside a hearth
 * sandbox, each reported as one JSON line on stdout:
 *
 *   {"attack": NAME, "blocked": true|false, "errno": "EPERM"|null, "detail": TEXT}
 *
 *   attack NAME...     run these attacks (a name, or a group: every attack NAME:*)
 *   attack all         every attack whose setup is present (see the variables below)
 *   attack list        the names, one per line
 * Exit status 0 when every attempt was blocked, 1 otherwise, 2 on a usage error.
 *
 * Helpers the adversarial tests use around the attacks (not attacks):
 *   attack whoami             euid, capabilities and host uid, as key=value (run through a
 *                             setuid or file-capability copy of this binary)
 *   attack listen PORT MS     accept on 127.0.0.1:PORT for MS ms; print `accepted=N`
 *   attack mark NAME          leave /tmp/attack-marker-NAME behind
 *   attack sleep MS           sleep, then print `alive`
 * and the faults:
 *   attack flood stdout|stderr|both MB   write MB MiB of 'x' there
 *   attack emfile             open files until EMFILE, print how many
 *   attack segv|abort|selfkill
 *   attack orphans N          leave N zombies, N orphans and a double-forked sleeper behind
 *   attack connflood HOST:PORT N PROCS MS   hold up to N connections from PROCS processes for MS ms
 *
 * Setup from the environment (an attack whose variable is unset is skipped by `all`, and fails
 * when named — a test that names it must set it up):
 *   ATTACK_UNIX        the daemon's Unix socket path on the host
 *   ATTACK_PORT        the daemon's TCP port on the host's 127.0.0.1
 *   ATTACK_ABSTRACT    the name of an abstract Unix socket listening on the host
 *   ATTACK_PEER_PORT   a port another sandbox listens on, on its 127.0.0.1
 *   ATTACK_HOST_PIDS   comma-separated host pids (the daemon, another sandbox's processes)
 *   ATTACK_SUID        path of a setuid-root copy of this binary (default /mnt/attack-suid)
 *   ATTACK_CAPS        path of a copy with file capabilities (default /mnt/attack-caps)
 *   ATTACK_RO_DIR      a directory bind-mounted read-only (rootfs_write tries to write there too)
 *
 * Nothing here ever acts on success: a write-open that works is closed unwritten (one byte to
 * /proc/sysrq-trigger acts on the host), a cgroup release_agent is never written, a signal that
 * would reach outside goes only to pids that are not this sandbox's. Each attempt that could
 * change its caller runs in a forked child, so that one attempt cannot disturb the next.
 *
 * Built static with libc only (like probe.c), so it runs whatever the sandbox's rootfs. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#define X32_BIT 0x40000000L
#define I386_GETPID 20L
#define I386_UNSHARE 310L

static int n_attempts, n_failed;

/* --- output ---------------------------------------------------------------------------------- */

static const char *errname(int e)
{
    static char buf[16];
    const char *n = strerrorname_np(e);
    if (n != NULL)
        return n;
    snprintf(buf, sizeof(buf), "E%d", e);
    return buf;
}

static void json_str(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

/* One attempt's line. e is the errno that stopped it (0: none, or not an errno). */
static void report(const char *name, bool blocked, int e, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void report(const char *name, bool blocked, int e, const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    printf("{\"attack\": ");
    json_str(name);
    printf(", \"blocked\": %s, \"errno\": ", blocked ? "true" : "false");
    if (e != 0)
        json_str(errname(e));
    else
        printf("null");
    printf(", \"detail\": ");
    json_str(detail);
    printf("}\n");
    fflush(stdout);
    n_attempts++;
    if (!blocked) {
        /* Also on stderr: a failed call's answer carries only its stderr. */
        fprintf(stderr, "NOT BLOCKED: %s: %s\n", name, detail);
        n_failed++;
    }
}

/* --- running one call in a child -------------------------------------------------------------- */

typedef long (*call_fn)(void);

typedef struct outcome {
    bool done;   /* the call returned (else: killed, see sig) */
    long rc;
    int err;     /* errno when rc < 0 */
    int sig;     /* the signal that killed the child, 0 if none */
} outcome_t;

/* Run fn in a forked child; whatever it changes (namespaces, tracing, a
 * kill by seccomp) dies with the child. */
static outcome_t in_child(call_fn fn)
{
    outcome_t o = {false, -1, 0, 0};
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        o.err = errno;
        return o;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        o.err = errno;
        close(p[0]);
        close(p[1]);
        return o;
    }
    if (pid == 0) {
        close(p[0]);
        errno = 0;
        long r[2];
        r[0] = fn();
        r[1] = r[0] < 0 ? errno : 0;
        (void)!write(p[1], r, sizeof(r));
        _exit(0);
    }
    close(p[1]);
    long r[2];
    ssize_t n;
    do
        n = read(p[0], r, sizeof(r));
    while (n < 0 && errno == EINTR);
    close(p[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (n == (ssize_t)sizeof(r)) {
        o.done = true;
        o.rc = r[0];
        o.err = (int)r[1];
    } else if (WIFSIGNALED(st)) {
        o.sig = WTERMSIG(st);
    }
    return o;
}

/* A call that must fail (or its child be killed, e.g. SIGSYS from seccomp). */
static void must_fail(const char *name, call_fn fn)
{
    outcome_t o = in_child(fn);
    if (o.sig != 0)
        report(name, true, 0, "killed by signal %d (%s)", o.sig, strsignal(o.sig));
    else if (!o.done)
        report(name, false, o.err, "attack error: no result from the child");
    else if (o.rc < 0)
        report(name, true, o.err, "refused");
    else
        report(name, false, 0, "the call succeeded (returned %ld)", o.rc);
}

/* --- small helpers ----------------------------------------------------------------------------- */

static bool is_number(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* The pids this sandbox's /proc shows (its own pid namespace). */
static int own_pids(int *pids, int cap)
{
    int n = 0;
    DIR *d = opendir("/proc");
    if (d == NULL)
        return 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < cap)
        if (is_number(de->d_name))
            pids[n++] = atoi(de->d_name);
    closedir(d);
    return n;
}

static bool in_list(const int *v, int n, int x)
{
    for (int i = 0; i < n; i++)
        if (v[i] == x)
            return true;
    return false;
}

/* Host pids named in ATTACK_HOST_PIDS. */
static int host_pids(int *pids, int cap)
{
    const char *s = getenv("ATTACK_HOST_PIDS");
    int n = 0;
    while (s != NULL && *s && n < cap) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s)
            break;
        if (v > 0)
            pids[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end != '\0')
            break;
    }
    return n;
}

static ssize_t read_some(const char *path, char *buf, size_t cap, int *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *e = errno;
        return -1;
    }
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *e = errno;
            close(fd);
            return len > 0 ? (ssize_t)len : -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    close(fd);
    *e = 0;
    return (ssize_t)len;
}

/* A file opened for writing that should not be: closed unwritten. */
static void write_open(const char *name, const char *path)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
    if (fd >= 0) {
        close(fd);
        report(name, false, 0, "%s opened for writing (nothing written)", path);
    } else {
        report(name, true, errno, "%s", path);
    }
}

/* --- every /proc/PID/exe ---------------------------------------------------------------------- */

static void attack_proc_exe(void)
{
    /* CVE-2019-5736: the runtime's (or anyone's) binary reached through
     * /proc/PID/exe and rewritten. Also via an O_PATH fd reopened through
     * /proc/self/fd, as the exploit did. */
    write_open("proc_exe:self", "/proc/self/exe");
    int o = open("/proc/self/exe", O_PATH | O_CLOEXEC);
    if (o < 0) {
        report("proc_exe:self_reopen", true, errno, "O_PATH open of /proc/self/exe");
    } else {
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", o);
        write_open("proc_exe:self_reopen", path);
        close(o);
    }
    int pids[256];
    int n = own_pids(pids, 256);
    int self = getpid();
    for (int i = 0; i < n; i++) {
        if (pids[i] == self)
            continue;
        char path[64], name[64];
        snprintf(path, sizeof(path), "/proc/%d/exe", pids[i]);
        snprintf(name, sizeof(name), "proc_exe:%d", pids[i]);
        write_open(name, path);
    }
}

/* --- inherited fds ------------------------------------------------------------------------------ */

static int fchdir_fd; /* argument of try_fchdir (runs in a child) */
static char fchdir_where[512];

/* fchdir to the fd, then see where we are: "(unreachable)/..." is outside
 * our root (the CVE-2024-21626 shape). Success here means an escape. */
static long try_fchdir(void)
{
    if (fchdir(fchdir_fd) < 0)
        return -1;
    char cwd[512];
    if (getcwd(cwd, sizeof(cwd)) == NULL)
        return -1;
    if (strncmp(cwd, "(unreachable)", 13) == 0 || strstr(fchdir_where, "(unreachable)") != NULL)
        return 1;
    errno = 0;
    return -1; /* a directory inside our own root: nothing gained */
}

static long try_chdir_proc_fd(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fchdir_fd);
    if (chdir(path) < 0)
        return -1;
    char cwd[512];
    if (getcwd(cwd, sizeof(cwd)) == NULL)
        return -1;
    if (strncmp(cwd, "(unreachable)", 13) == 0)
        return 1;
    errno = 0;
    return -1;
}

static long try_proc1_fd(void)
{
    DIR *d = opendir("/proc/1/fd");
    if (d == NULL)
        return -1;
    closedir(d);
    return 0;
}

static void attack_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        report("fds:inherited", false, errno, "attack error: cannot list /proc/self/fd");
        return;
    }
    int self = dirfd(d), fds[256], n = 0, extra = 0;
    char list[768] = "";
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!is_number(de->d_name))
            continue;
        int fd = atoi(de->d_name);
        if (fd == self || n >= 256)
            continue;
        fds[n++] = fd;
        if (fd > 2) {
            char path[64], target[256];
            snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
            ssize_t len = readlink(path, target, sizeof(target) - 1);
            target[len < 0 ? 0 : len] = '\0';
            size_t l = strlen(list);
            snprintf(list + l, sizeof(list) - l, "%s%d->%s", l ? " " : "", fd, target);
            extra++;
        }
    }
    closedir(d);
    if (extra == 0)
        report("fds:inherited", true, 0, "only stdin, stdout and stderr are open");
    else
        report("fds:inherited", false, 0, "fds beyond stdio: %s", list);

    for (int i = 0; i < n; i++) {
        char name[64], path[64];
        fchdir_fd = fds[i];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fds[i]);
        ssize_t len = readlink(path, fchdir_where, sizeof(fchdir_where) - 1);
        fchdir_where[len < 0 ? 0 : len] = '\0';
        snprintf(name, sizeof(name), "fds:fchdir:%d", fds[i]);
        outcome_t o = in_child(try_fchdir);
        if (o.done && o.rc > 0)
            report(name, false, 0, "fchdir to fd %d (%s) leads outside the root", fds[i], fchdir_where);
        else
            report(name, true, o.done ? o.err : 0, "fd %d is %s", fds[i], fchdir_where);
        snprintf(name, sizeof(name), "fds:chdir_proc_fd:%d", fds[i]);
        o = in_child(try_chdir_proc_fd);
        if (o.done && o.rc > 0)
            report(name, false, 0, "chdir /proc/self/fd/%d leads outside the root", fds[i]);
        else
            report(name, true, o.done ? o.err : 0, "fd %d is %s", fds[i], fchdir_where);
        /* The leaked-directory shape: walk up from it. */
        snprintf(name, sizeof(name), "fds:dotdot:%d", fds[i]);
        char up[80];
        snprintf(up, sizeof(up), "/proc/self/fd/%d/..", fds[i]);
        int fd = open(up, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            char where[512] = "", lp[64];
            snprintf(lp, sizeof(lp), "/proc/self/fd/%d", fd);
            ssize_t wl = readlink(lp, where, sizeof(where) - 1);
            where[wl < 0 ? 0 : wl] = '\0';
            close(fd);
            bool outside = strncmp(where, "(unreachable)", 13) == 0 || strncmp(where, "/", 1) != 0;
            report(name, !outside, 0, "%s is %s", up, where);
        } else {
            report(name, true, errno, "%s", up);
        }
    }
    /* The sandbox's init is not dumpable: its fds are not ours to reach. */
    outcome_t o = in_child(try_proc1_fd);
    if (o.done && o.rc >= 0)
        report("fds:init", false, 0, "/proc/1/fd is listable");
    else
        report("fds:init", true, o.err, "/proc/1/fd");
}

/* --- namespaces, cgroup v1 release_agent --------------------------------------------------------- */

static char release_step[64];

/* CVE-2022-0492: a new user namespace (and cgroup + mount namespaces) in
 * which we are "root", a cgroup v1 hierarchy mounted there, and the
 * host-wide release_agent written. Stops at the first step refused. */
static long try_release_agent(void)
{
    snprintf(release_step, sizeof(release_step), "unshare");
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWCGROUP) < 0 &&
        unshare(CLONE_NEWNS | CLONE_NEWCGROUP) < 0 && unshare(CLONE_NEWUSER) < 0)
        return -1;
    static const char *const controllers[] = {"rdma", "memory", "pids", "cpu", "none,name=attack", NULL};
    mkdir("/tmp/attack-cg", 0700);
    for (const char *const *c = controllers; *c; c++) {
        snprintf(release_step, sizeof(release_step), "mount cgroup %s", *c);
        if (mount("cgroup", "/tmp/attack-cg", "cgroup", 0, *c) == 0) {
            snprintf(release_step, sizeof(release_step), "open release_agent (%s)", *c);
            int fd = open("/tmp/attack-cg/release_agent", O_WRONLY | O_CLOEXEC);
            if (fd < 0)
                return -1;
            close(fd); /* never written */
            return 1;
        }
    }
    return -1;
}

static void attack_release_agent(void)
{
    int p[2];
    if (pipe(p) < 0) {
        report("userns:release_agent", false, errno, "attack error: pipe");
        return;
    }
    /* The step reached comes back through a pipe: in_child keeps only rc. */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        errno = 0;
        long rc = try_release_agent();
        char msg[128];
        int len = snprintf(msg, sizeof(msg), "%ld %d %s", rc, rc < 0 ? errno : 0, release_step);
        (void)!write(p[1], msg, (size_t)len);
        _exit(0);
    }
    close(p[1]);
    char msg[128] = "";
    ssize_t n = pid > 0 ? read(p[0], msg, sizeof(msg) - 1) : -1;
    msg[n > 0 ? n : 0] = '\0';
    close(p[0]);
    int st = 0;
    if (pid > 0)
        waitpid(pid, &st, 0);
    long rc;
    int e, off = 0;
    if (sscanf(msg, "%ld %d %n", &rc, &e, &off) >= 2) {
        if (rc > 0)
            report("userns:release_agent", false, 0, "reached: %s", msg + off);
        else
            report("userns:release_agent", true, e, "stopped at %s", msg + off);
    } else if (pid > 0 && WIFSIGNALED(st)) {
        report("userns:release_agent", true, 0, "killed by signal %d", WTERMSIG(st));
    } else {
        report("userns:release_agent", false, 0, "attack error: no result");
    }
}

static long try_unshare_user(void) { return unshare(CLONE_NEWUSER); }
static long try_unshare_mnt(void) { return unshare(CLONE_NEWNS); }
static long try_unshare_pid(void) { return unshare(CLONE_NEWPID); }
static long try_unshare_net(void) { return unshare(CLONE_NEWNET); }
static long try_unshare_cgroup(void) { return unshare(CLONE_NEWCGROUP); }

static long clone_flags(unsigned long flags)
{
    long pid = syscall(SYS_clone, flags | SIGCHLD, 0UL, 0UL, 0UL, 0UL);
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, 0);
    return pid;
}
static long try_clone_user(void) { return clone_flags(CLONE_NEWUSER); }
static long try_clone_all(void)
{
    return clone_flags(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP | CLONE_NEWUTS |
                       CLONE_NEWIPC);
}
static long try_clone3_user(void)
{
    struct clone_args args;
    memset(&args, 0, sizeof(args));
    args.flags = CLONE_NEWUSER | CLONE_NEWNS;
    args.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &args, sizeof(args));
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, 0);
    return pid;
}

/* --- system calls that must be refused ------------------------------------------------------------ */

static long try_mount(void) { return mount("none", "/tmp", "tmpfs", 0, "size=1m"); }
static long try_mount_cgroup(void)
{
    mkdir("/tmp/attack-cg", 0700);
    return mount("cgroup", "/tmp/attack-cg", "cgroup", 0, "memory");
}
static long try_mount_proc(void)
{
    mkdir("/tmp/attack-proc", 0700);
    return mount("proc", "/tmp/attack-proc", "proc", 0, NULL);
}
static long try_pivot_root(void)
{
    mkdir("/tmp/attack-old", 0700);
    if (chdir("/tmp") < 0)
        return -1;
    return syscall(SYS_pivot_root, ".", "/tmp/attack-old");
}
static long setns_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    long rc = setns(fd, 0);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}
static long try_setns_self_net(void) { return setns_path("/proc/self/ns/net"); }
static long try_setns_init_mnt(void) { return setns_path("/proc/1/ns/mnt"); }
static long try_bpf(void)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    return syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr));
}
static long try_perf_event_open(void)
{
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.size = sizeof(attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    attr.disabled = 1;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    return syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0UL);
}
/* "Shocker": a file handle forged for inode 2 (the root of most file
 * systems) opened relative to our root — reaching past bind mounts. */
static long try_open_by_handle_at(void)
{
    struct {
        unsigned int handle_bytes;
        int handle_type;
        unsigned char f_handle[8];
    } h = {8, 1 /* FILEID_INO32_GEN */, {2, 0, 0, 0, 0, 0, 0, 0}};
    int root = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    long rc = syscall(SYS_open_by_handle_at, root, &h, O_RDONLY);
    int e = errno;
    close(root);
    errno = e;
    return rc;
}
static long try_init_module(void)
{
    static const char elf[64] = "\x7f" "ELF\x02\x01\x01";
    return syscall(SYS_init_module, elf, sizeof(elf), "");
}
static long try_finit_module(void)
{
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    return syscall(SYS_finit_module, fd, "", 0);
}
static long try_kexec_load(void) { return syscall(SYS_kexec_load, 0UL, 0UL, NULL, 0UL); }
static long try_kexec_file_load(void)
{
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    return syscall(SYS_kexec_file_load, fd, fd, 1UL, "", 0UL);
}
static long try_keyctl(void) { return syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, "attack"); }
static long try_add_key(void) { return syscall(SYS_add_key, "user", "attack", "x", 1UL, -2L /* process keyring */); }
static long try_request_key(void) { return syscall(SYS_request_key, "user", "attack", NULL, 0L); }
static long try_userfaultfd(void) { return syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */); }
static long try_io_uring_setup(void)
{
    unsigned char params[120]; /* struct io_uring_params */
    memset(params, 0, sizeof(params));
    return syscall(SYS_io_uring_setup, 1U, params);
}
static long try_socket_alg(void) { return socket(AF_ALG, SOCK_SEQPACKET | SOCK_CLOEXEC, 0); }
static long try_socket_vsock(void) { return socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0); }
static long try_socket_vsock_dgram(void) { return socket(AF_VSOCK, SOCK_DGRAM | SOCK_CLOEXEC, 0); }

/* TIOCSTI on a real terminal if we can make one (a pty), else on stdin. */
static long tiocsti(unsigned long request)
{
    int fd = 0;
    int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m >= 0 && grantpt(m) == 0 && unlockpt(m) == 0) {
        char *name = ptsname(m);
        int s = name ? open(name, O_RDWR | O_NOCTTY | O_CLOEXEC) : -1;
        if (s >= 0)
            fd = s;
    }
    char c = '#';
    return syscall(SYS_ioctl, fd, request, &c);
}
static long try_tiocsti(void) { return tiocsti(TIOCSTI); }
/* The kernel truncates cmd to 32 bits: a filter comparing all 64 would
 * let this one through as TIOCSTI. */
static long try_tiocsti_high(void) { return tiocsti(0x100000000UL | TIOCSTI); }
static long try_tiocsti_high2(void) { return tiocsti(0xffffffff00000000UL | TIOCSTI); }

/* --- other processes ------------------------------------------------------------------------------- */

static int target_pid; /* argument of the tries below (run in a child) */

static long try_ptrace_attach(void)
{
    long rc = ptrace(PTRACE_ATTACH, target_pid, NULL, NULL);
    if (rc == 0) {
        int e = errno;
        waitpid(target_pid, NULL, __WALL);
        ptrace(PTRACE_DETACH, target_pid, NULL, NULL);
        errno = e;
    }
    return rc;
}
static long try_ptrace_seize(void) { return ptrace(PTRACE_SEIZE, target_pid, NULL, NULL); }
static long try_process_vm_readv(void)
{
    char buf[8];
    struct iovec local = {buf, sizeof(buf)}, remote = {(void *)0x400000, sizeof(buf)};
    return syscall(SYS_process_vm_readv, target_pid, &local, 1UL, &remote, 1UL, 0UL);
}
static long try_process_vm_writev(void)
{
    char buf[8] = "attack";
    struct iovec local = {buf, sizeof(buf)}, remote = {(void *)0x400000, sizeof(buf)};
    return syscall(SYS_process_vm_writev, target_pid, &local, 1UL, &remote, 1UL, 0UL);
}
static long try_proc_mem(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/mem", target_pid);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd >= 0)
        close(fd);
    return fd;
}

/* own: pid is one of our own children, whose memory is ours anyway
 * (same uid, same sandbox): /proc/PID/mem is not a boundary there. */
static void on_pid(const char *what, int pid, bool own)
{
    static const struct {
        const char *name;
        call_fn fn;
    } tries[] = {
        {"ptrace_attach", try_ptrace_attach},         {"ptrace_seize", try_ptrace_seize},
        {"process_vm_readv", try_process_vm_readv}, {"process_vm_writev", try_process_vm_writev},
        {"proc_mem", try_proc_mem},
    };
    target_pid = pid;
    for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
        if (own && tries[i].fn == try_proc_mem)
            continue;
        char name[96];
        snprintf(name, sizeof(name), "%s:%s", tries[i].name, what);
        must_fail(name, tries[i].fn);
    }
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void attack_ptrace(void)
{
    /* The sandbox's init (pid 1): not dumpable, and ptrace is filtered. */
    on_pid("init", 1, false);
    /* A sibling we started ourselves: same uid, same sandbox; still refused. */
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        for (;;)
            pause();
    }
    if (child > 0) {
        char what[32];
        snprintf(what, sizeof(what), "sibling");
        on_pid(what, child, true);
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
}

/* The highest pid to guess: the kernel's pid_max (the sandbox's /proc
 * shows the host's), at most 4194304, the kernel's own ceiling. */
static int pid_max(void)
{
    char buf[32];
    int e;
    long v = read_some("/proc/sys/kernel/pid_max", buf, sizeof(buf), &e) > 0 ? strtol(buf, NULL, 10) : 0;
    return v > 0 && v <= 4194304 ? (int)v : 32768;
}

static void attack_ptrace_host(void)
{
    int hp[64];
    int n = host_pids(hp, 64);
    int own[256];
    int n_own = own_pids(own, 256);
    for (int i = 0; i < n; i++) {
        char what[32];
        snprintf(what, sizeof(what), "host-%d", hp[i]);
        if (in_list(own, n_own, hp[i])) {
            /* The number also names a process of ours: not a host process. */
            char name[48];
            snprintf(name, sizeof(name), "ptrace:%s", what);
            report(name, true, 0, "pid %d is one of this sandbox's own", hp[i]);
            continue;
        }
        on_pid(what, hp[i], false);
    }
    /* Guessing: every pid this sandbox cannot see, through the one call
     * that does not need ptrace rights first. */
    int reached = 0, first = 0, last_err = 0, max = pid_max();
    for (int pid = 2; pid <= max; pid++) {
        if (in_list(own, n_own, pid))
            continue;
        char buf[8];
        struct iovec local = {buf, sizeof(buf)}, remote = {(void *)0x400000, sizeof(buf)};
        if (syscall(SYS_process_vm_readv, pid, &local, 1UL, &remote, 1UL, 0UL) >= 0 || errno == EFAULT) {
            if (reached++ == 0)
                first = pid;
        } else {
            last_err = errno;
        }
    }
    if (reached == 0)
        report("process_vm_readv:guess", true, last_err, "pids 2-%d outside this sandbox: none reached", max);
    else
        report("process_vm_readv:guess", false, 0, "%d pids reached, the first %d", reached, first);
}

static void attack_kill_range(void)
{
    /* kill -9 on every pid this sandbox does not own: another sandbox's
     * processes, the daemon, the host. ESRCH is the answer expected: they
     * are not in our pid namespace. */
    int own[256];
    int n_own = own_pids(own, 256);
    int hp[64];
    int n_hp = host_pids(hp, 64);
    int killed = 0, first = 0, max = pid_max();
    int last_err = 0;
    for (int i = 0; i < n_hp; i++) {
        if (in_list(own, n_own, hp[i]))
            continue;
        if (kill(hp[i], SIGKILL) == 0) {
            if (killed++ == 0)
                first = hp[i];
        } else {
            last_err = errno;
        }
    }
    for (int pid = 2; pid <= max; pid++) {
        if (in_list(own, n_own, pid))
            continue;
        if (kill(pid, SIGKILL) == 0) {
            if (killed++ == 0)
                first = pid;
        } else {
            last_err = errno;
        }
    }
    if (killed == 0)
        report("kill:range", true, last_err, "SIGKILL to pids 2-%d and %d named host pids: none reached", max, n_hp);
    else
        report("kill:range", false, 0, "%d pids outside this sandbox signalled, the first %d", killed, first);
    /* Everyone we may signal, at once: only our own processes (none but
     * us and init, which ignores it) may be hit. Judged by the test from
     * outside (the other sandbox's processes must survive). */
    errno = 0;
    long rc = kill(-1, SIGKILL);
    report("kill:all", true, rc < 0 ? errno : 0, "kill(-1, SIGKILL) returned %ld; outside effects are checked by the test",
           rc);
}

/* --- setuid and file capabilities ------------------------------------------------------------------- */

static int cmd_whoami(void)
{
    char buf[4096];
    int e;
    if (read_some("/proc/self/status", buf, sizeof(buf), &e) < 0) {
        printf("error=%s\n", errname(e));
        return 1;
    }
    printf("euid=%d\n", (int)geteuid());
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "CapEff:", 7) != 0 && strncmp(line, "CapPrm:", 7) != 0 && strncmp(line, "Uid:", 4) != 0)
            continue;
        size_t key = strcspn(line, ":");
        const char *v = line + key + 1;
        printf("%.*s=%s\n", (int)key, line, v + strspn(v, " \t"));
    }
    char map[256];
    if (read_some("/proc/self/uid_map", map, sizeof(map), &e) >= 0) {
        unsigned long in, out, count;
        unsigned long eu = (unsigned long)geteuid();
        /* The host uid our euid stands for. */
        if (sscanf(map, "%lu %lu %lu", &in, &out, &count) == 3 && eu >= in && eu < in + count)
            printf("host_euid=%lu\n", out + (eu - in));
        else
            printf("host_euid=unmapped\n");
    }
    return 0;
}

static void exec_privileged(const char *name, const char *env, const char *def)
{
    const char *path = getenv(env) ? getenv(env) : def;
    struct stat st;
    if (stat(path, &st) < 0) {
        report(name, false, errno, "setup: %s is missing (set %s)", path, env);
        return;
    }
    int p[2];
    if (pipe(p) < 0) {
        report(name, false, errno, "attack error: pipe");
        return;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execl(path, path, "whoami", (char *)NULL);
        printf("exec_errno=%d\n", errno);
        fflush(stdout);
        _exit(127);
    }
    close(p[1]);
    char out[2048];
    size_t len = 0;
    ssize_t n;
    while (len + 1 < sizeof(out) && (n = read(p[0], out + len, sizeof(out) - 1 - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        len += (size_t)n;
    }
    out[len] = '\0';
    close(p[0]);
    waitpid(pid, NULL, 0);
    int exec_errno = 0;
    char *s = strstr(out, "exec_errno=");
    if (s != NULL) {
        exec_errno = atoi(s + 11);
        report(name, true, exec_errno, "exec of %s (mode %o, owner %d) refused", path, st.st_mode & 07777,
               (int)st.st_uid);
        return;
    }
    int euid = -1;
    char capeff[32] = "?", capprm[32] = "?", host[32] = "?";
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        sscanf(line, "euid=%d", &euid);
        sscanf(line, "CapEff=%31s", capeff);
        sscanf(line, "CapPrm=%31s", capprm);
        sscanf(line, "host_euid=%31s", host);
    }
    bool same_uid = euid == (int)geteuid();
    bool no_caps = strtoull(capeff, NULL, 16) == 0 && strtoull(capprm, NULL, 16) == 0 && strcmp(capeff, "?") != 0;
    bool host_root = strcmp(host, "0") == 0;
    report(name, same_uid && no_caps && !host_root, 0,
           "%s (mode %o, owner %d): euid %d (ours %d), host euid %s, CapEff %s, CapPrm %s", path,
           st.st_mode & 07777, (int)st.st_uid, euid, (int)geteuid(), host, capeff, capprm);
}

static void attack_setuid(void) { exec_privileged("setuid", "ATTACK_SUID", "/mnt/attack-suid"); }
static void attack_filecaps(void) { exec_privileged("filecaps", "ATTACK_CAPS", "/mnt/attack-caps"); }

/* --- /proc and /sys ------------------------------------------------------------------------------- */

static void attack_sysrq(void) { write_open("proc:sysrq_trigger", "/proc/sysrq-trigger"); }

/* Every file under /proc/sys opened for writing; none may open. */
static void walk_sys(const char *dir, int *tried, int *opened, char *first, size_t cap, int *last_err)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(path, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            walk_sys(path, tried, opened, first, cap, last_err);
        } else if (S_ISREG(st.st_mode) && (st.st_mode & 0222)) {
            (*tried)++;
            int fd = open(path, O_WRONLY | O_CLOEXEC);
            if (fd >= 0) {
                close(fd);
                if ((*opened)++ == 0)
                    snprintf(first, cap, "%s", path);
            } else {
                *last_err = errno;
            }
        }
    }
    closedir(d);
}

static void attack_proc_sys(void)
{
    int tried = 0, opened = 0, last_err = 0;
    char first[512] = "";
    walk_sys("/proc/sys", &tried, &opened, first, sizeof(first), &last_err);
    if (tried == 0)
        report("proc:sys_write", true, 0, "no writable-looking file under /proc/sys");
    else if (opened == 0)
        report("proc:sys_write", true, last_err, "%d files under /proc/sys: none opened for writing", tried);
    else
        report("proc:sys_write", false, 0, "%d of %d files under /proc/sys opened for writing, e.g. %s", opened,
               tried, first);
    write_open("proc:sys_kernel_core_pattern", "/proc/sys/kernel/core_pattern");
}

/* Reading must give nothing: refused, or an empty (masked) file. */
static void must_read_nothing(const char *name, const char *path)
{
    char buf[4096];
    int e;
    ssize_t n = read_some(path, buf, sizeof(buf), &e);
    if (n < 0)
        report(name, true, e, "%s", path);
    else if (n == 0)
        report(name, true, 0, "%s reads empty (masked)", path);
    else
        report(name, false, 0, "%s: %zd bytes read", path, n);
}

static void attack_proc_read(void)
{
    must_read_nothing("proc:kcore", "/proc/kcore");
    must_read_nothing("proc:keys", "/proc/keys");
    must_read_nothing("proc:key_users", "/proc/key-users");
    must_read_nothing("proc:timer_list", "/proc/timer_list");
    DIR *d = opendir("/sys/firmware");
    if (d == NULL) {
        report("sys:firmware", true, errno, "/sys/firmware");
        return;
    }
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    report("sys:firmware", n == 0, 0, "/sys/firmware lists %d entries", n);
}

/* --- foreign ABIs ----------------------------------------------------------------------------------- */

#if defined(__x86_64__)
static long try_x32_getpid(void) { return syscall(X32_BIT | SYS_getpid); }
static long try_x32_unshare(void) { return syscall(X32_BIT | SYS_unshare, (long)CLONE_NEWUSER); }
static long int80(long nr, long a1)
{
    long rc;
    __asm__ volatile("int $0x80" : "=a"(rc) : "a"(nr), "b"(a1) : "memory", "rcx", "r11");
    if (rc < 0 && rc > -4096) {
        errno = (int)-rc;
        return -1;
    }
    return rc;
}
static long try_int80_getpid(void) { return int80(I386_GETPID, 0); }
static long try_int80_unshare(void) { return int80(I386_UNSHARE, (long)CLONE_NEWUSER); }
#endif

static void attack_abi(void)
{
#if defined(__x86_64__)
    must_fail("abi:x32_getpid", try_x32_getpid);
    must_fail("abi:x32_unshare", try_x32_unshare);
    must_fail("abi:int80_getpid", try_int80_getpid);
    must_fail("abi:int80_unshare", try_int80_unshare);
#else
    report("abi:x32_getpid", true, 0, "not an x86-64 build: no foreign ABI to try");
#endif
}

/* --- sockets ---------------------------------------------------------------------------------------- */

static void connect_report(const char *name, int family, const struct sockaddr *sa, socklen_t len, const char *what)
{
    int s = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        report(name, true, errno, "socket for %s", what);
        return;
    }
    /* Bounded: a connect that hangs is blocked too, but we must end. */
    struct timeval tv = {2, 0};
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(s, sa, len) == 0) {
        report(name, false, 0, "connected to %s", what);
    } else {
        report(name, true, errno, "%s", what);
    }
    close(s);
}

static bool env_needed(const char *name, const char *var, const char **val)
{
    *val = getenv(var);
    if (*val == NULL || **val == '\0') {
        report(name, false, 0, "setup: %s is not set", var);
        return false;
    }
    return true;
}

static void connect_tcp(const char *name, const char *port_s, const char *what)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(port_s));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char desc[96];
    snprintf(desc, sizeof(desc), "%s 127.0.0.1:%s", what, port_s);
    connect_report(name, AF_INET, (struct sockaddr *)&sa, sizeof(sa), desc);
    struct sockaddr_in6 sa6;
    memset(&sa6, 0, sizeof(sa6));
    sa6.sin6_family = AF_INET6;
    sa6.sin6_port = htons((uint16_t)atoi(port_s));
    sa6.sin6_addr = in6addr_loopback;
    char name6[96];
    snprintf(name6, sizeof(name6), "%s_v6", name);
    snprintf(desc, sizeof(desc), "%s [::1]:%s", what, port_s);
    connect_report(name6, AF_INET6, (struct sockaddr *)&sa6, sizeof(sa6), desc);
}

static void attack_daemon_unix(void)
{
    const char *path;
    if (!env_needed("net:daemon_unix", "ATTACK_UNIX", &path))
        return;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    char desc[160];
    snprintf(desc, sizeof(desc), "the daemon's socket %s", path);
    connect_report("net:daemon_unix", AF_UNIX, (struct sockaddr *)&sa, sizeof(sa), desc);
    /* The default path too, whatever the test's daemon uses. */
    snprintf(sa.sun_path, sizeof(sa.sun_path), "/run/hearth/hearth.sock");
    connect_report("net:daemon_unix_default", AF_UNIX, (struct sockaddr *)&sa, sizeof(sa), "/run/hearth/hearth.sock");
}

static void attack_daemon_tcp(void)
{
    const char *port;
    if (env_needed("net:daemon_tcp", "ATTACK_PORT", &port))
        connect_tcp("net:daemon_tcp", port, "the daemon's port");
}

static void attack_abstract(void)
{
    const char *name;
    if (!env_needed("net:abstract", "ATTACK_ABSTRACT", &name))
        return;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    size_t len = strnlen(name, sizeof(sa.sun_path) - 1);
    memcpy(sa.sun_path + 1, name, len); /* sun_path[0] = 0: abstract */
    char desc[160];
    snprintf(desc, sizeof(desc), "host abstract socket @%s", name);
    connect_report("net:abstract", AF_UNIX, (struct sockaddr *)&sa,
                   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len), desc);
}

static void attack_peer_loopback(void)
{
    const char *port;
    if (env_needed("net:peer_loopback", "ATTACK_PEER_PORT", &port))
        connect_tcp("net:peer_loopback", port, "another sandbox's listener on");
}

/* --- the read-only root and read-only binds ----------------------------------------------------------- */

/* Created and removed at once if it works (it must not). */
static void create_in(const char *name, const char *dir)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/attack-write-test", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        close(fd);
        unlink(path);
        report(name, false, 0, "created %s", path);
    } else {
        report(name, true, errno, "%s", path);
    }
}

static void attack_rootfs_write(void)
{
    create_in("fs:create_in_root", "");
    create_in("fs:create_in_etc", "/etc");
    create_in("fs:create_in_var_tmp", "/var/tmp");
    write_open("fs:write_etc_passwd", "/etc/passwd");
    write_open("fs:write_own_binary", "/proc/self/exe");
    const char *ro = getenv("ATTACK_RO_DIR");
    if (ro != NULL && *ro)
        create_in("fs:create_in_readonly_bind", ro);
}

static long try_chroot(void)
{
    /* The classic chroot escape: chroot into a subdirectory, then climb
     * out with .. from the old cwd. */
    mkdir("/tmp/attack-jail", 0700);
    if (chroot("/tmp/attack-jail") < 0)
        return -1;
    for (int i = 0; i < 64; i++)
        if (chdir("..") < 0)
            return -1;
    return chroot(".");
}

/* --- another tenant's /tmp ----------------------------------------------------------------------------- */

static void attack_tmp_peek(void)
{
    /* Our /tmp, and every /tmp this sandbox can name through /proc. */
    int found = 0;
    char where[512] = "";
    const char *dirs[] = {"/tmp", "/proc/1/root/tmp", "/proc/1/cwd/tmp", NULL};
    for (const char *const *dir = dirs; *dir; dir++) {
        DIR *d = opendir(*dir);
        if (d == NULL)
            continue;
        struct dirent *de;
        while ((de = readdir(d)) != NULL)
            if (strncmp(de->d_name, "attack-marker-", 14) == 0 && found++ == 0)
                snprintf(where, sizeof(where), "%s/%s", *dir, de->d_name);
        closedir(d);
    }
    if (found == 0)
        report("tmp:other_tenant", true, 0, "no attack-marker-* in any reachable /tmp");
    else
        report("tmp:other_tenant", false, 0, "%d markers found, e.g. %s", found, where);
}

/* --- the table ------------------------------------------------------------------------------------------ */

typedef void (*attack_fn)(void);

static void a_unshare_user(void) { must_fail("userns:unshare_user", try_unshare_user); }
static void a_unshare_mnt(void) { must_fail("userns:unshare_mnt", try_unshare_mnt); }
static void a_unshare_pid(void) { must_fail("userns:unshare_pid", try_unshare_pid); }
static void a_unshare_net(void) { must_fail("userns:unshare_net", try_unshare_net); }
static void a_unshare_cgroup(void) { must_fail("userns:unshare_cgroup", try_unshare_cgroup); }
static void a_clone_user(void) { must_fail("userns:clone_newuser", try_clone_user); }
static void a_clone_all(void) { must_fail("userns:clone_all_ns", try_clone_all); }
static void a_clone3(void) { must_fail("userns:clone3", try_clone3_user); }
static void a_mount(void)
{
    must_fail("sys:mount_tmpfs", try_mount);
    must_fail("sys:mount_cgroup", try_mount_cgroup);
    must_fail("sys:mount_proc", try_mount_proc);
}
static void a_pivot_root(void) { must_fail("sys:pivot_root", try_pivot_root); }
static void a_chroot(void) { must_fail("sys:chroot", try_chroot); }
static void a_setns(void)
{
    must_fail("sys:setns_self_net", try_setns_self_net);
    must_fail("sys:setns_init_mnt", try_setns_init_mnt);
}
static void a_bpf(void) { must_fail("sys:bpf", try_bpf); }
static void a_perf(void) { must_fail("sys:perf_event_open", try_perf_event_open); }
static void a_handle(void) { must_fail("sys:open_by_handle_at", try_open_by_handle_at); }
static void a_init_module(void)
{
    must_fail("sys:init_module", try_init_module);
    must_fail("sys:finit_module", try_finit_module);
}
static void a_kexec(void)
{
    must_fail("sys:kexec_load", try_kexec_load);
    must_fail("sys:kexec_file_load", try_kexec_file_load);
}
static void a_keyctl(void)
{
    must_fail("sys:keyctl", try_keyctl);
    must_fail("sys:request_key", try_request_key);
}
static void a_add_key(void) { must_fail("sys:add_key", try_add_key); }
static void a_userfaultfd(void) { must_fail("sys:userfaultfd", try_userfaultfd); }
static void a_io_uring(void) { must_fail("sys:io_uring_setup", try_io_uring_setup); }
static void a_alg(void) { must_fail("sys:socket_af_alg", try_socket_alg); }
static void a_vsock(void)
{
    must_fail("sys:socket_af_vsock", try_socket_vsock);
    must_fail("sys:socket_af_vsock_dgram", try_socket_vsock_dgram);
}
static void a_tiocsti(void)
{
    must_fail("sys:ioctl_tiocsti", try_tiocsti);
    must_fail("sys:ioctl_tiocsti_high", try_tiocsti_high);
    must_fail("sys:ioctl_tiocsti_high_all", try_tiocsti_high2);
}

static const struct {
    const char *name;  /* the name given on the command line */
    attack_fn fn;
    const char *needs; /* an environment variable `all` requires, or NULL */
} attacks[] = {
    {"proc_exe", attack_proc_exe, NULL},
    {"fds", attack_fds, NULL},
    {"release_agent", attack_release_agent, NULL},
    {"unshare_user", a_unshare_user, NULL},
    {"unshare_mnt", a_unshare_mnt, NULL},
    {"unshare_pid", a_unshare_pid, NULL},
    {"unshare_net", a_unshare_net, NULL},
    {"unshare_cgroup", a_unshare_cgroup, NULL},
    {"clone_newuser", a_clone_user, NULL},
    {"clone_all_ns", a_clone_all, NULL},
    {"clone3", a_clone3, NULL},
    {"mount", a_mount, NULL},
    {"pivot_root", a_pivot_root, NULL},
    {"chroot", a_chroot, NULL},
    {"rootfs_write", attack_rootfs_write, NULL},
    {"setns", a_setns, NULL},
    {"bpf", a_bpf, NULL},
    {"perf_event_open", a_perf, NULL},
    {"open_by_handle_at", a_handle, NULL},
    {"init_module", a_init_module, NULL},
    {"kexec_load", a_kexec, NULL},
    {"keyctl", a_keyctl, NULL},
    {"add_key", a_add_key, NULL},
    {"userfaultfd", a_userfaultfd, NULL},
    {"io_uring_setup", a_io_uring, NULL},
    {"socket_af_alg", a_alg, NULL},
    {"socket_af_vsock", a_vsock, NULL},
    {"tiocsti", a_tiocsti, NULL},
    {"ptrace", attack_ptrace, NULL},
    {"ptrace_host", attack_ptrace_host, NULL},
    {"kill_range", attack_kill_range, NULL},
    {"setuid", attack_setuid, "ATTACK_SUID"},
    {"filecaps", attack_filecaps, "ATTACK_CAPS"},
    {"sysrq", attack_sysrq, NULL},
    {"proc_sys", attack_proc_sys, NULL},
    {"proc_read", attack_proc_read, NULL},
    {"abi", attack_abi, NULL},
    {"daemon_unix", attack_daemon_unix, "ATTACK_UNIX"},
    {"daemon_tcp", attack_daemon_tcp, "ATTACK_PORT"},
    {"abstract", attack_abstract, "ATTACK_ABSTRACT"},
    {"peer_loopback", attack_peer_loopback, "ATTACK_PEER_PORT"},
    {"tmp_peek", attack_tmp_peek, NULL},
};
#define N_ATTACKS (sizeof(attacks) / sizeof(attacks[0]))

/* --- helpers and faults ------------------------------------------------------------------------------------- */

static long arg_long(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || v < 0) {
        fprintf(stderr, "attack: `%s` is not a non-negative number\n", s);
        exit(2);
    }
    return v;
}

static int cmd_listen(long port, long ms)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 16) < 0) {
        printf("listen_error=%s\n", errname(errno));
        return 1;
    }
    printf("listening=127.0.0.1:%ld\n", port);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int accepted = 0;
    for (;;) {
        int a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        if (a >= 0) {
            accepted++;
            close(a);
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        long el = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (el >= ms)
            break;
        tv.tv_sec = (ms - el) / 1000;
        tv.tv_usec = ((ms - el) % 1000) * 1000;
        setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    }
    printf("accepted=%d\n", accepted);
    return 0;
}

static int cmd_mark(const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "/tmp/attack-marker-%s", name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, "secret\n", 7) != 7) {
        printf("mark_error=%s\n", errname(errno));
        return 1;
    }
    close(fd);
    printf("marked=%s\n", path);
    return 0;
}

static int cmd_flood(const char *where, long mb)
{
    static char chunk[1 << 16];
    memset(chunk, 'x', sizeof(chunk));
    bool out = strcmp(where, "stdout") == 0 || strcmp(where, "both") == 0;
    bool err = strcmp(where, "stderr") == 0 || strcmp(where, "both") == 0;
    if (!out && !err) {
        fprintf(stderr, "attack: flood stdout|stderr|both MB\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    unsigned long long total = (unsigned long long)mb << 20, done = 0;
    while (done < total) {
        if (out && write(1, chunk, sizeof(chunk)) < 0)
            return 3; /* the reader is gone: cut */
        if (err && write(2, chunk, sizeof(chunk)) < 0)
            return 3;
        done += sizeof(chunk);
    }
    return 0;
}

static int cmd_emfile(void)
{
    long n = 0;
    for (;;) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd < 0) {
            printf("opened=%ld\nerrno=%s\n", n, errname(errno));
            return errno == EMFILE ? 0 : 1;
        }
        n++;
    }
}

static int cmd_orphans(long n)
{
    /* Zombies: children that exit and are never reaped. */
    for (long i = 0; i < n; i++)
        if (fork() == 0)
            _exit(0);
    /* Orphans: children whose parent exits first, left to the sandbox's
     * init; one of them detaches into its own session and sleeps on. */
    for (long i = 0; i < n; i++) {
        pid_t c = fork();
        if (c == 0) {
            if (fork() == 0) {
                setsid();
                int null = open("/dev/null", O_RDWR);
                for (int fd = 0; fd < 3; fd++)
                    dup2(null, fd);
                signal(SIGTERM, SIG_IGN);
                signal(SIGHUP, SIG_IGN);
                for (;;)
                    pause();
            }
            _exit(0);
        }
        if (c > 0)
            waitpid(c, NULL, 0);
    }
    printf("left=%ld\n", n);
    return 0;
}

/* In the initial user namespace the map is "0 0 4294967295". */
static bool in_host_userns(void)
{
    char map[256];
    int e;
    if (read_some("/proc/self/uid_map", map, sizeof(map), &e) < 0)
        return true;
    unsigned long a, b, c;
    return sscanf(map, "%lu %lu %lu", &a, &b, &c) == 3 && a == 0 && b == 0 && c == 4294967295UL;
}

/* Hold as many connections to host:port as this sandbox allows (up to n),
 * from `procs` processes (RLIMIT_NOFILE is per process), for ms: a
 * runtime's way to exhaust the fds of whoever serves its Runtime API. */
static int cmd_connflood(const char *addr, long n, long procs, long ms)
{
    char host[64];
    snprintf(host, sizeof(host), "%s", addr);
    char *colon = strrchr(host, ':');
    if (colon == NULL) {
        fprintf(stderr, "attack: connflood HOST:PORT N PROCS MS\n");
        return 2;
    }
    *colon = '\0';
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    inet_pton(AF_INET, host, &sa.sin_addr);
    int p[2];
    if (pipe(p) < 0)
        return 1;
    /* A runtime that has asked for its first invocation is warm: no init
     * timeout ends the sandbox while the connections pile up. */
    int next = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (next >= 0 && connect(next, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        char req[256];
        int len = snprintf(req, sizeof(req), "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: %s\r\n\r\n",
                           addr);
        (void)!write(next, req, (size_t)len);
    }
    long per = (n + procs - 1) / procs;
    fflush(stdout);
    for (long i = 0; i < procs; i++) {
        if (fork() != 0)
            continue;
        close(p[0]);
        long held = 0;
        int e = 0;
        while (held < per) {
            int s = socket(AF_INET, SOCK_STREAM, 0);
            if (s < 0) {
                e = errno;
                break;
            }
            if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                e = errno;
                close(s);
                break;
            }
            held++;
        }
        long r[2] = {held, e};
        (void)!write(p[1], r, sizeof(r));
        sleep_ms(ms);
        _exit(0);
    }
    close(p[1]);
    long total = 0, r[2];
    int last = 0;
    while (read(p[0], r, sizeof(r)) == (ssize_t)sizeof(r)) {
        total += r[0];
        if (r[1] != 0)
            last = (int)r[1];
    }
    printf("connections=%ld\nerrno=%s\n", total, last ? errname(last) : "none");
    fflush(stdout);
    while (wait(NULL) > 0)
        ;
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: attack all|list|NAME...\n"
                    "       attack whoami|listen PORT MS|mark NAME|sleep MS\n"
                    "       attack flood stdout|stderr|both MB|emfile|segv|abort|selfkill|orphans N\n"
                    "       attack connflood HOST:PORT N PROCS MS\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
        return 2;
    }
    const char *cmd = argv[1];
    /* The tests leave setuid-root and file-capability copies of this
     * binary on the host: run that way it only says who it is. */
    if (getauxval(AT_SECURE) != 0 && strcmp(cmd, "whoami") != 0) {
        fprintf(stderr, "attack: run setuid or with file capabilities: only `whoami`\n");
        return 2;
    }
    if (strcmp(cmd, "list") == 0) {
        for (size_t i = 0; i < N_ATTACKS; i++)
            printf("%s\n", attacks[i].name);
        return 0;
    }
    if (strcmp(cmd, "whoami") == 0)
        return cmd_whoami();
    if (strcmp(cmd, "listen") == 0 && argc == 4)
        return cmd_listen(arg_long(argv[2]), arg_long(argv[3]));
    if (strcmp(cmd, "mark") == 0 && argc == 3)
        return cmd_mark(argv[2]);
    if (strcmp(cmd, "sleep") == 0 && argc == 3) {
        sleep_ms(arg_long(argv[2]));
        printf("alive\n");
        return 0;
    }
    if (strcmp(cmd, "flood") == 0 && argc == 4)
        return cmd_flood(argv[2], arg_long(argv[3]));
    if (strcmp(cmd, "emfile") == 0)
        return cmd_emfile();
    if (strcmp(cmd, "segv") == 0) {
        /* A real fault, not raise(SIGSEGV): the kernel's path, not ours. */
        volatile uintptr_t addr = 8;
        return *(volatile int *)addr;
    }
    if (strcmp(cmd, "abort") == 0)
        abort();
    if (strcmp(cmd, "selfkill") == 0) {
        kill(getpid(), SIGKILL);
        return 0;
    }
    if (strcmp(cmd, "orphans") == 0 && argc == 3)
        return cmd_orphans(arg_long(argv[2]));
    if (strcmp(cmd, "connflood") == 0 && argc == 6)
        return cmd_connflood(argv[2], arg_long(argv[3]), arg_long(argv[4]), arg_long(argv[5]));

    /* As host root, kill:range would signal the whole host: sandboxes only. */
    if (in_host_userns() && getenv("ATTACK_ON_HOST") == NULL) {
        fprintf(stderr, "attack: attacks are for sandboxes: in the host's user namespace they could harm the host "
                        "(set ATTACK_ON_HOST=1 to insist)\n");
        return 2;
    }
    bool all = strcmp(cmd, "all") == 0;
    for (int a = 1; a < argc; a++) {
        bool known = false;
        for (size_t i = 0; i < N_ATTACKS; i++) {
            if (!all && strcmp(argv[a], attacks[i].name) != 0)
                continue;
            known = true;
            if (all && attacks[i].needs != NULL && getenv(attacks[i].needs) == NULL) {
                fprintf(stderr, "attack: %s skipped (%s not set)\n", attacks[i].name, attacks[i].needs);
                continue;
            }
            attacks[i].fn();
        }
        if (!known) {
            fprintf(stderr, "attack: no attack named `%s` (attack list)\n", argv[a]);
            usage();
            return 2;
        }
        if (all)
            break;
    }
    fprintf(stderr, "attack: %d attempts, %d not blocked\n", n_attempts, n_failed);
    return n_failed == 0 && n_attempts > 0 ? 0 : 1;
}
