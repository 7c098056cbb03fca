/* Seccomp profiles, checked from inside: each case forks a child that sets
 * no_new_privs, installs the filter, makes one call and reports its result
 * (or the signal that killed it) to the parent.
 *
 * Every call uses arguments that are harmless should the filter let it
 * through (bad fds, NULL pointers, invalid flags), since the tests may run
 * as root. As root the kernel's own permission checks pass, so an EPERM can
 * only come from the filter; as an ordinary user some EPERM cases hold
 * trivially. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/seccomp.h"
#include "tests/harness.h"

#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

typedef struct outcome {
    int sig;  /* signal that killed the child, 0 if it exited */
    long ret; /* return value of the probe */
    int err;  /* errno after the probe */
    int code; /* exit status: 0 probe ran, 2 install failed, 3 no report */
} outcome_t;

typedef long (*probe_fn)(void);

/* Run probe in a child under sc (no filter when sc is NULL). */
static outcome_t run_probe(const sbx_seccomp_t *sc, probe_fn probe)
{
    outcome_t o = {.code = 3};
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return o;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        /* No controlling terminal: TIOCSTI and vhangup have nothing to
         * reach even if the filter were to let them through. */
        setsid();
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            _exit(2);
        if (sc != NULL && sbx_seccomp_install(sc) < 0)
            _exit(2);
        errno = 0;
        long r = probe();
        long rep[2] = {r, errno};
        if (write(fds[1], rep, sizeof(rep)) != (ssize_t)sizeof(rep))
            _exit(3);
        _exit(0); /* not exit(): no atexit handlers (LeakSanitizer) under the filter */
    }
    close(fds[1]);
    long rep[2];
    ssize_t n = pid > 0 ? read_all(fds[0], rep, sizeof(rep)) : -1;
    close(fds[0]);
    int status = 0;
    if (pid > 0)
        waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) {
        o.sig = WTERMSIG(status);
        return o;
    }
    o.code = WIFEXITED(status) ? WEXITSTATUS(status) : 3;
    if (n == (ssize_t)sizeof(rep)) {
        o.ret = rep[0];
        o.err = (int)rep[1];
    } else if (o.code == 0) {
        o.code = 3;
    }
    return o;
}

/* ---- probes --------------------------------------------------------------- */

static long p_getpid(void) { return getpid(); }
static long p_unshare_user(void) { return syscall(SYS_unshare, CLONE_NEWUSER); }

static long clone_with(unsigned long flags)
{
    long r = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (r == 0)
        _exit(0);
    if (r > 0)
        waitpid((pid_t)r, NULL, 0);
    return r;
}
static long p_clone_newns(void) { return clone_with(CLONE_NEWNS); }
static long p_clone_newuser(void) { return clone_with(CLONE_NEWUSER); }
static long p_clone_newpid(void) { return clone_with(CLONE_NEWPID); }
static long p_clone_newnet(void) { return clone_with(CLONE_NEWNET); }
static long p_clone_plain(void) { return clone_with(0); }

static long p_clone3(void)
{
    struct clone_args ca = {.exit_signal = SIGCHLD};
    long r = syscall(SYS_clone3, &ca, sizeof(ca));
    if (r == 0)
        _exit(0);
    if (r > 0)
        waitpid((pid_t)r, NULL, 0);
    return r;
}

static long p_fork(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(7);
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) < 0)
        return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 7 ? 0 : -1;
}

static long p_mount(void) { return mount("none", "/nonexistent-hearth-test", "tmpfs", 0, NULL); }
static long p_setns(void) { return syscall(SYS_setns, -1, 0); }
/* KEYCTL_GET_KEYRING_ID of the session keyring: harmless, works unfiltered. */
static long p_keyctl(void) { return syscall(SYS_keyctl, 0, -3, 0); }
static long p_bpf(void) { return syscall(SYS_bpf, -1, NULL, 0); }
static long p_ptrace(void) { return syscall(SYS_ptrace, 12 /* PTRACE_GETREGS */, 0, 0, 0); }
static long p_userfaultfd(void) { return syscall(SYS_userfaultfd, O_CLOEXEC); }
static long p_io_uring_setup(void) { return syscall(SYS_io_uring_setup, 0, NULL); }
static long p_perf_event_open(void) { return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0); }
static long p_open_by_handle_at(void) { return syscall(SYS_open_by_handle_at, -1, NULL, 0); }
static long p_init_module(void) { return syscall(SYS_init_module, NULL, 0, ""); }
/* Invalid flags: never unloads or loads a kexec kernel. */
static long p_kexec_load(void) { return syscall(SYS_kexec_load, 0, 0, NULL, 0xdead0000ul); }

static long p_socket_alg(void) { return socket(AF_ALG, SOCK_SEQPACKET | SOCK_CLOEXEC, 0); }
static long p_socket_vsock(void) { return socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0); }
static long p_socket_alg_high(void) { return syscall(SYS_socket, 0x100000000ul | AF_ALG, SOCK_SEQPACKET, 0); }
static long p_socket_inet_high(void) { return syscall(SYS_socket, 0x100000000ul | AF_INET, SOCK_STREAM, 0); }
static long p_socket_inet(void) { return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); }
static long p_socket_inet6(void) { return socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0); }
static long p_socket_unix(void) { return socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0); }
static long p_socket_netlink(void) { return socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0); }
static long p_socketpair_unix(void)
{
    int sv[2];
    return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
}
static long p_socketpair_vsock(void)
{
    int sv[2];
    return socketpair(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
}

/* On fd -1: EBADF if the filter lets it through, never a real injection. */
static long p_tiocsti(void)
{
    char c = 'x';
    return syscall(SYS_ioctl, -1, TIOCSTI, &c);
}
static long p_tiocsti_high(void)
{
    char c = 'x';
    return syscall(SYS_ioctl, -1, 0x100000000ul | TIOCSTI, &c);
}
static long p_tioclinux(void)
{
    char c = 0;
    return syscall(SYS_ioctl, -1, TIOCLINUX, &c);
}
/* An ordinary ioctl on a pipe: FIONREAD works. */
static long p_ioctl_fionread(void)
{
    int fds[2], n = -1;
    if (pipe(fds) < 0)
        return -1;
    return ioctl(fds[0], FIONREAD, &n) < 0 ? -1 : n;
}

/* getpid with the x32 bit set: killed before the kernel sees it. */
static long p_x32(void) { return syscall(0x40000000 | SYS_getpid); }

/* getpid through the i386 gate (number 20). */
static long p_int80(void)
{
    long ret = 20;
    __asm__ volatile("int $0x80" : "+a"(ret) : : "memory", "r8", "r9", "r10", "r11");
    return ret;
}

static long p_personality_query(void) { return personality(0xffffffff); }
static long p_personality_rie(void) { return personality(0x0400000 /* READ_IMPLIES_EXEC */); }

static long p_file_io(void)
{
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[8];
    if (write(fd, "x", 1) != 1 || read(fd, buf, sizeof(buf)) != 0)
        return -1;
    return close(fd);
}

static long p_mmap(void)
{
    void *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    memset(p, 1, 1 << 20);
    return munmap(p, 1 << 20);
}

static long p_pipe(void)
{
    int fds[2];
    char c;
    if (pipe2(fds, O_CLOEXEC) < 0 || write(fds[1], "y", 1) != 1 || read(fds[0], &c, 1) != 1)
        return -1;
    return c == 'y' ? 0 : -1;
}

static long run_cmd(char *const argv[])
{
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) < 0)
        return -1;
    if (WIFSIGNALED(status))
        return 1000 + WTERMSIG(status);
    return WEXITSTATUS(status);
}
static long p_exec_true(void)
{
    char *argv[] = {"/bin/true", NULL};
    return run_cmd(argv);
}
static long p_exec_sh(void)
{
    char *argv[] = {"/bin/sh", "-c", "echo hello | cat && x=$(uname -s) && test -n \"$x\"", NULL};
    return run_cmd(argv);
}

/* ---- table-driven checks ----------------------------------------------------- */

enum { WORKS = -1, KILLED = -2 }; /* expectation, otherwise an errno */

typedef struct probe_case {
    const char *name;
    probe_fn fn;
    int expect; /* WORKS (ret >= 0), KILLED (SIGSYS) or the errno of a -1 return */
} probe_case_t;

static const char *describe(outcome_t o, char *buf, size_t len)
{
    if (o.sig)
        snprintf(buf, len, "killed by signal %d", o.sig);
    else if (o.code != 0)
        snprintf(buf, len, "child exit code %d (2: install failed)", o.code);
    else if (o.ret == -1)
        snprintf(buf, len, "-1, errno %d (%s)", o.err, strerror(o.err));
    else
        snprintf(buf, len, "returned %ld", o.ret);
    return buf;
}

static void check_cases(const sbx_seccomp_t *sc, const probe_case_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        outcome_t o = run_probe(sc, cases[i].fn);
        char what[128];
        describe(o, what, sizeof(what));
        if (cases[i].expect == WORKS)
            CHECK(o.sig == 0 && o.code == 0 && o.ret >= 0, "%s should work: %s", cases[i].name, what);
        else if (cases[i].expect == KILLED)
            CHECK(o.sig == SIGSYS, "%s should be killed by SIGSYS: %s", cases[i].name, what);
        else
            CHECK(o.sig == 0 && o.code == 0 && o.ret == -1 && o.err == cases[i].expect, "%s should fail with %s: %s",
                  cases[i].name, strerror(cases[i].expect), what);
    }
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const probe_case_t ordinary_cases[] = {
    {"getpid", p_getpid, WORKS},
    {"open/read/write /dev/null", p_file_io, WORKS},
    {"mmap", p_mmap, WORKS},
    {"pipe", p_pipe, WORKS},
    {"fork", p_fork, WORKS},
    {"clone without namespace flags", p_clone_plain, WORKS},
    {"socket(AF_INET)", p_socket_inet, WORKS},
    {"socket(AF_INET6)", p_socket_inet6, WORKS},
    {"socket(AF_INET | 1<<32)", p_socket_inet_high, WORKS},
    {"socket(AF_UNIX)", p_socket_unix, WORKS},
    {"socketpair(AF_UNIX)", p_socketpair_unix, WORKS},
    {"socket(AF_NETLINK)", p_socket_netlink, WORKS},
    {"ioctl(FIONREAD)", p_ioctl_fionread, WORKS},
    {"personality(0xffffffff)", p_personality_query, WORKS},
};

static const probe_case_t default_cases[] = {
    {"unshare(CLONE_NEWUSER)", p_unshare_user, EPERM},
    {"clone(CLONE_NEWNS)", p_clone_newns, EPERM},
    {"clone(CLONE_NEWUSER)", p_clone_newuser, EPERM},
    {"clone(CLONE_NEWPID)", p_clone_newpid, EPERM},
    {"clone(CLONE_NEWNET)", p_clone_newnet, EPERM},
    {"clone3", p_clone3, ENOSYS},
    {"mount", p_mount, EPERM},
    {"setns", p_setns, EPERM},
    {"keyctl", p_keyctl, EPERM},
    {"bpf", p_bpf, EPERM},
    {"ptrace", p_ptrace, EPERM},
    {"userfaultfd", p_userfaultfd, EPERM},
    {"io_uring_setup", p_io_uring_setup, EPERM},
    {"perf_event_open", p_perf_event_open, EPERM},
    {"socket(AF_ALG)", p_socket_alg, EPERM},
    {"socket(AF_ALG | 1<<32)", p_socket_alg_high, EPERM},
    {"socket(AF_VSOCK)", p_socket_vsock, EPERM},
    {"socketpair(AF_VSOCK)", p_socketpair_vsock, EPERM},
    {"ioctl(TIOCSTI)", p_tiocsti, EPERM},
    {"ioctl(TIOCSTI | 1<<32)", p_tiocsti_high, EPERM},
    {"ioctl(TIOCLINUX)", p_tioclinux, EPERM},
    {"open_by_handle_at", p_open_by_handle_at, EPERM},
    {"init_module", p_init_module, EPERM},
    {"kexec_load", p_kexec_load, EPERM},
    {"personality(READ_IMPLIES_EXEC)", p_personality_rie, EPERM},
    {"x32 getpid", p_x32, KILLED},
    {"exec /bin/true", p_exec_true, 0},
    {"exec /bin/sh pipeline", p_exec_sh, 0},
};

static const probe_case_t docker_cases[] = {
    {"unshare(CLONE_NEWUSER)", p_unshare_user, EPERM},
    {"clone(CLONE_NEWNS)", p_clone_newns, EPERM},
    {"clone(CLONE_NEWUSER)", p_clone_newuser, EPERM},
    {"clone(CLONE_NEWPID)", p_clone_newpid, EPERM},
    {"clone3", p_clone3, ENOSYS},
    {"socket(AF_VSOCK)", p_socket_vsock, EPERM},
    {"socket(AF_ALG)", p_socket_alg, EPERM},
    {"keyctl", p_keyctl, EPERM},
    {"mount", p_mount, EPERM},
    {"bpf", p_bpf, EPERM},
    {"io_uring_setup", p_io_uring_setup, EPERM},
    {"open_by_handle_at", p_open_by_handle_at, EPERM},
    {"exec /bin/true", p_exec_true, 0},
    {"exec /bin/sh pipeline", p_exec_sh, 0},
};

/* The exec probes return the command's exit status; 0 counts as "works"
 * only through the errno slot, so fix them up here. */
static void check_table(const sbx_seccomp_t *sc, const probe_case_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (cases[i].expect != 0) {
            check_cases(sc, &cases[i], 1);
            continue;
        }
        outcome_t o = run_probe(sc, cases[i].fn);
        char what[128];
        CHECK(o.sig == 0 && o.code == 0 && o.ret == 0, "%s should exit 0: %s", cases[i].name,
              describe(o, what, sizeof(what)));
    }
}

/* ---- the tests ------------------------------------------------------------- */

static sbx_seccomp_t *compile_default(void)
{
    hearth_error_t err = {0};
    sbx_seccomp_t *sc = NULL;
    if (sbx_seccomp_compile(NULL, &sc, &err) < 0) {
        printf("#   compile default: %s\n", err.msg);
        return NULL;
    }
    return sc;
}

static void t_default_ordinary(void)
{
    sbx_seccomp_t *sc = compile_default();
    REQUIRE(sc != NULL, "default profile compiles");
    printf("#   default profile: %u BPF instructions\n", sc->prog.len);
    check_cases(sc, ordinary_cases, N(ordinary_cases));
    sbx_seccomp_free(sc);
}

static void t_default_denied(void)
{
    sbx_seccomp_t *sc = compile_default();
    REQUIRE(sc != NULL, "default profile compiles");
    check_table(sc, default_cases, N(default_cases));
    sbx_seccomp_free(sc);
}

static void t_default_int80(void)
{
    /* Kernels built without IA32 emulation (or booted with
     * ia32_emulation=0) fault on int 0x80 before seccomp sees it. */
    outcome_t base = run_probe(NULL, p_int80);
    if (base.sig != 0)
        SKIP("int 0x80 faults without a filter (signal %d): no IA32 emulation", base.sig);
    sbx_seccomp_t *sc = compile_default();
    REQUIRE(sc != NULL, "default profile compiles");
    probe_case_t c = {"int 0x80 getpid", p_int80, KILLED};
    check_cases(sc, &c, 1);
    sbx_seccomp_free(sc);
}

/* Everything the default profile promises to refuse, called with harmless
 * arguments (see the top of the file). */
static const struct {
    const char *name;
    unsigned long a[6];
} never_allowed[] = {
    {"mount", {0}}, {"umount2", {0}}, {"pivot_root", {0}}, {"chroot", {0}},
    {"unshare", {CLONE_NEWNS}}, {"setns", {~0ul}}, {"keyctl", {0}}, {"add_key", {0}},
    {"request_key", {0}}, {"bpf", {~0ul}}, {"ptrace", {12}}, {"process_vm_readv", {0}},
    {"process_vm_writev", {0}}, {"userfaultfd", {0}}, {"io_uring_setup", {0}}, {"io_uring_enter", {~0ul}},
    {"io_uring_register", {~0ul}}, {"perf_event_open", {0}}, {"kexec_load", {0, 0, 0, 0xdead0000ul}},
    {"kexec_file_load", {~0ul, ~0ul, 0, 0, 0xdead0000ul}}, {"init_module", {0}}, {"finit_module", {~0ul}},
    {"delete_module", {0}}, {"open_by_handle_at", {~0ul}}, {"name_to_handle_at", {~0ul}}, {"fsopen", {0}},
    {"fsmount", {~0ul}}, {"fsconfig", {~0ul}}, {"fspick", {~0ul}}, {"open_tree", {~0ul}},
    {"move_mount", {~0ul}}, {"mount_setattr", {~0ul}}, {"swapon", {0}}, {"swapoff", {0}},
    {"reboot", {0}}, {"syslog", {~0ul}}, {"acct", {1}}, {"settimeofday", {1}},
    {"clock_settime", {0, 0}}, {"clock_adjtime", {0, 0}}, {"adjtimex", {0}}, {"iopl", {0}},
    {"ioperm", {0}}, {"quotactl", {0}}, {"lookup_dcookie", {0}}, {"pidfd_getfd", {~0ul}},
    {"kcmp", {0}}, {"vhangup", {0}}, {"uselib", {0}}, {"nfsservctl", {0}}, {"_sysctl", {0}},
    {"sysfs", {0}}, {"ustat", {0}}, {"modify_ldt", {0}}, {"sethostname", {1, 1}},
    {"setdomainname", {1, 1}}, {"fanotify_init", {~0ul}}, {"mbind", {0}}, {"set_mempolicy", {~0ul}},
};

static int never_nr;
static unsigned long never_args[6];
static long p_never(void)
{
    return syscall(never_nr, never_args[0], never_args[1], never_args[2], never_args[3], never_args[4],
                   never_args[5]);
}

static void t_default_never_allowed(void)
{
    sbx_seccomp_t *sc = compile_default();
    REQUIRE(sc != NULL, "default profile compiles");
    size_t tried = 0;
    for (size_t i = 0; i < N(never_allowed); i++) {
        never_nr = seccomp_syscall_resolve_name(never_allowed[i].name);
        if (never_nr < 0)
            continue;
        memcpy(never_args, never_allowed[i].a, sizeof(never_args));
        probe_case_t c = {never_allowed[i].name, p_never, EPERM};
        check_cases(sc, &c, 1);
        tried++;
    }
    printf("#   %zu of %zu never-allowed syscalls exist here and answer EPERM\n", tried, N(never_allowed));
    sbx_seccomp_free(sc);
}

static void t_default_deterministic(void)
{
    sbx_seccomp_t *a = compile_default(), *b = compile_default();
    REQUIRE(a != NULL && b != NULL, "default profile compiles");
    CHECK(a->prog.len == b->prog.len, "lengths %u and %u", a->prog.len, b->prog.len);
    if (a->prog.len == b->prog.len)
        CHECK(memcmp(a->prog.filter, b->prog.filter, a->prog.len * sizeof(struct sock_filter)) == 0,
              "two compilations give the same program");
    sbx_seccomp_free(a);
    sbx_seccomp_free(b);
}

/* 1,000,000 getppid calls, for the timing note below. */
static long p_syscall_loop(void)
{
    uint64_t t0 = now_ns();
    for (int i = 0; i < 1000000; i++)
        syscall(SYS_getppid);
    return (long)(now_ns() - t0);
}

static void t_default_timing(void)
{
    sbx_seccomp_t *sc = compile_default();
    REQUIRE(sc != NULL, "default profile compiles");
    /* Install cost, measured in the parent around the whole child run is
     * dominated by fork; measure the call itself in children instead. */
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < 20; i++) {
        int fds[2];
        int prc = pipe(fds);
        REQUIRE(prc == 0, "pipe");
        pid_t pid = fork();
        if (pid == 0) {
            prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            uint64_t t0 = now_ns();
            int rc = sbx_seccomp_install(sc);
            uint64_t dt = rc == 0 ? now_ns() - t0 : UINT64_MAX;
            if (write(fds[1], &dt, sizeof(dt)) != sizeof(dt))
                _exit(3);
            _exit(0);
        }
        close(fds[1]);
        uint64_t dt = UINT64_MAX;
        if (read_all(fds[0], &dt, sizeof(dt)) != sizeof(dt))
            dt = UINT64_MAX;
        close(fds[0]);
        waitpid(pid, NULL, 0);
        CHECK(dt != UINT64_MAX, "install in child %d", i);
        if (dt < best)
            best = dt;
    }
    outcome_t bare = run_probe(NULL, p_syscall_loop);
    outcome_t filtered = run_probe(sc, p_syscall_loop);
    printf("#   timing (a note, not an assertion): install %.1f us (best of 20); getppid %.0f ns bare, %.0f ns "
           "under the default filter\n",
           (double)best / 1e3, (double)bare.ret / 1e6, (double)filtered.ret / 1e6);
    sbx_seccomp_free(sc);
}

/* ---- JSON profiles ------------------------------------------------------------- */

static sbx_seccomp_t *compile_text(const char *json, hearth_error_t *err)
{
    sbx_seccomp_t *sc = NULL;
    if (sbx_seccomp_compile_json(json, strlen(json), &sc, err) < 0)
        return NULL;
    return sc;
}

static long p_getppid(void) { return syscall(SYS_getppid); }
static long p_getpgrp(void) { return syscall(SYS_getpgrp); }

/* Rules with includes/excludes, on an allow-by-default profile where each
 * rule that applies turns one harmless call into ENOSYS-like errnos. */
static void t_json_conditions(void)
{
    hearth_error_t err = {0};
    char json[2048];
    static const struct {
        const char *cond;
        bool applies;
    } cases[] = {
        {"", true},
        {"\"includes\": {\"caps\": [\"CAP_SYS_ADMIN\"]}", false},
        {"\"excludes\": {\"caps\": [\"CAP_SYS_ADMIN\"]}", true},
        {"\"includes\": {\"arches\": [\"amd64\"]}", true},
        {"\"includes\": {\"arches\": [\"arm64\", \"ppc64le\"]}", false},
        {"\"excludes\": {\"arches\": [\"s390\", \"s390x\"]}", true},
        {"\"excludes\": {\"arches\": [\"amd64\"]}", false},
        {"\"includes\": {\"minKernel\": \"3.10\"}", true},
        {"\"includes\": {\"minKernel\": \"99.0\"}", false},
        {"\"excludes\": {\"minKernel\": \"99.0\"}", true},
        {"\"includes\": {\"arches\": [\"amd64\"], \"minKernel\": \"99.1\"}", false},
        {"\"includes\": null, \"excludes\": null", true},
    };
    if (seccomp_arch_native() != SCMP_ARCH_X86_64)
        SKIP("arch cases written for x86_64");
    for (size_t i = 0; i < N(cases); i++) {
        snprintf(json, sizeof(json),
                 "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": ["
                 "{\"names\": [\"getppid\"], \"action\": \"SCMP_ACT_ERRNO\", \"errnoRet\": 77 %s %s}]}",
                 cases[i].cond[0] ? "," : "", cases[i].cond);
        sbx_seccomp_t *sc = compile_text(json, &err);
        CHECK(sc != NULL, "case %zu compiles: %s", i, err.msg);
        if (sc == NULL)
            continue;
        outcome_t o = run_probe(sc, p_getppid);
        bool denied = o.sig == 0 && o.code == 0 && o.ret == -1 && o.err == 77;
        CHECK(denied == cases[i].applies, "case %zu (%s): rule %s but getppid gave ret %ld errno %d", i,
              cases[i].cond, cases[i].applies ? "should apply" : "should not apply", o.ret, o.err);
        sbx_seccomp_free(sc);
    }
}

static void t_json_args_and_actions(void)
{
    hearth_error_t err = {0};
    /* Legacy `name`, EPERM default errno, argument comparisons, TRAP. */
    const char *json = "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": ["
                       " {\"name\": \"getppid\", \"action\": \"SCMP_ACT_ERRNO\"},"
                       " {\"names\": [\"socket\"], \"action\": \"SCMP_ACT_ERRNO\", \"errnoRet\": 97,"
                       "  \"args\": [{\"index\": 0, \"value\": 10, \"op\": \"SCMP_CMP_EQ\"}]},"
                       " {\"names\": [\"getpgrp\"], \"action\": \"SCMP_ACT_TRAP\"},"
                       " {\"names\": [\"no_such_syscall_hearth\"], \"action\": \"SCMP_ACT_KILL\"}]}";
    sbx_seccomp_t *sc = compile_text(json, &err);
    REQUIRE(sc != NULL, "compiles: %s", err.msg);
    probe_case_t cases[] = {
        {"getppid (errno without errnoRet)", p_getppid, EPERM},
        {"socket(AF_INET6) (arg EQ 10)", p_socket_inet6, 97},
        {"socket(AF_INET) (arg not EQ 10)", p_socket_inet, WORKS},
        {"getpgrp (TRAP)", p_getpgrp, KILLED},
        {"getpid (default allow)", p_getpid, WORKS},
    };
    check_cases(sc, cases, N(cases));
    sbx_seccomp_free(sc);

    /* Two comparisons on one argument become two rules (as in runc). */
    json = "{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"defaultErrnoRet\": 13, \"syscalls\": ["
           " {\"names\": [\"personality\"], \"action\": \"SCMP_ACT_ALLOW\", \"args\": ["
           "  {\"index\": 0, \"value\": 4294967295, \"op\": \"SCMP_CMP_EQ\"},"
           "  {\"index\": 0, \"value\": 0, \"op\": \"SCMP_CMP_EQ\"}]},"
           /* what the child and, under ASan, its runtime need to report */
           " {\"names\": [\"exit\", \"exit_group\", \"write\", \"getpid\", \"gettid\", \"mmap\", \"munmap\","
           "  \"mprotect\", \"madvise\", \"sigaltstack\", \"rt_sigaction\", \"rt_sigprocmask\", \"close\","
           "  \"futex\", \"sched_yield\", \"prctl\"], \"action\": \"SCMP_ACT_ALLOW\"}]}";
    sc = compile_text(json, &err);
    REQUIRE(sc != NULL, "compiles: %s", err.msg);
    probe_case_t cases2[] = {
        {"personality(0xffffffff)", p_personality_query, WORKS},
        {"personality(READ_IMPLIES_EXEC) (defaultErrnoRet)", p_personality_rie, EACCES},
        {"getppid (defaultErrnoRet)", p_getppid, EACCES},
    };
    check_cases(sc, cases2, N(cases2));
    sbx_seccomp_free(sc);
}

static const struct {
    const char *json;
    const char *expect; /* substring of the error message */
} malformed[] = {
    {"this is not json", "not valid JSON"},
    {"{\"defaultAction\": \"SCMP_ACT_ALLOW\"", "not valid JSON"},
    {"[]", "top level: expected an object"},
    {"{}", "defaultAction: expected an action string, got nothing"},
    {"{\"defaultAction\": \"SCMP_ACT_FOO\"}", "defaultAction: unknown action `SCMP_ACT_FOO`"},
    {"{\"defaultAction\": \"SCMP_ACT_NOTIFY\"}", "defaultAction: `SCMP_ACT_NOTIFY` is not supported"},
    {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"defaultErrnoRet\": \"1\"}", "defaultErrnoRet: expected an integer"},
    {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"defaultErrnoRet\": 5000}", "defaultErrnoRet: 5000 is outside"},
    {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"defaultAction\": \"SCMP_ACT_ALLOW\"}", "duplicate"},
    {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": {}}", "syscalls: expected an array"},
    {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"action\": \"SCMP_ACT_ALLOW\"}]}",
     "syscalls[0]: neither `names` nor `name`"},
    {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\"},"
     " {\"names\": [\"read\", \"write\", 3], \"action\": \"SCMP_ACT_ALLOW\"}]}",
     "syscalls[1].names[2]: expected a string, got an integer"},
    {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"names\": [\"read\"], \"action\": \"ALLOW\"}]}",
     "syscalls[0].action: unknown action `ALLOW`"},
    {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"names\": [\"read\"]}]}",
     "syscalls[0].action: expected an action string, got nothing"},
    {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": ["
     "{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\"},"
     "{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\"},"
     "{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\"},"
     "{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\", \"args\": [{\"index\": 0, \"value\": 1, \"op\": "
     "\"SCMP_CMP_FOO\"}]}]}",
     "syscalls[3].args[0].op: unknown operator `SCMP_CMP_FOO`"},
    {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\","
     " \"args\": [{\"index\": 6, \"value\": 1, \"op\": \"SCMP_CMP_EQ\"}]}]}",
     "syscalls[0].args[0].index: 6 is not an argument index"},
    {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\","
     " \"args\": [{\"index\": 0, \"value\": 1, \"op\": \"SCMP_CMP_EQ\"}, {\"index\": 1, \"value\": -1, \"op\": "
     "\"SCMP_CMP_EQ\"}]}]}",
     "syscalls[0].args[1].value: negative value -1"},
    {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\","
     " \"args\": [{\"value\": 1, \"op\": \"SCMP_CMP_EQ\"}]}]}",
     "syscalls[0].args[0].index: expected an integer, got nothing"},
    {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\","
     " \"args\": {}}]}",
     "syscalls[0].args: expected an array, got an object"},
    {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\","
     " \"includes\": {\"caps\": \"CAP_SYS_ADMIN\"}}]}",
     "syscalls[0].includes.caps: expected an array of strings, got a string"},
    {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\","
     " \"excludes\": {\"minKernel\": \"four\"}}]}",
     "syscalls[0].excludes.minKernel: invalid kernel version `four`"},
    {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\","
     " \"errnoRet\": 1}]}",
     "syscalls[0].errnoRet: errnoRet only goes with SCMP_ACT_ERRNO or SCMP_ACT_TRACE"},
    {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"architectures\": [\"SCMP_ARCH_X86_64\", \"SCMP_ARCH_BOGUS\"]}",
     "architectures[1]: unknown architecture `SCMP_ARCH_BOGUS`"},
    {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"archMap\": [{\"architecture\": 7}]}",
     "archMap[0].architecture: expected a string, got an integer"},
    {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"architectures\": [\"SCMP_ARCH_X86\"],"
     " \"archMap\": [{\"architecture\": \"SCMP_ARCH_X86_64\"}]}",
     "architectures and archMap"},
};

static void t_json_malformed(void)
{
    for (size_t i = 0; i < N(malformed); i++) {
        hearth_error_t err = {0};
        sbx_seccomp_t *sc = compile_text(malformed[i].json, &err);
        CHECK(sc == NULL, "malformed case %zu compiled", i);
        sbx_seccomp_free(sc);
        CHECK(strstr(err.msg, malformed[i].expect) != NULL, "case %zu: message `%s` lacks `%s`", i, err.msg,
              malformed[i].expect);
    }
    /* A native subarchitecture that is not an architecture at all. */
    if (seccomp_arch_native() == SCMP_ARCH_X86_64) {
        hearth_error_t err = {0};
        sbx_seccomp_t *sc = compile_text("{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"archMap\": ["
                                         "{\"architecture\": \"SCMP_ARCH_AARCH64\", \"subArchitectures\": [\"x\"]},"
                                         "{\"architecture\": \"SCMP_ARCH_X86_64\", \"subArchitectures\": "
                                         "[\"SCMP_ARCH_X86\", \"SCMP_ARCH_NOPE\"]}]}",
                                         &err);
        CHECK(sc == NULL, "bad native subarchitecture compiled");
        sbx_seccomp_free(sc);
        CHECK(strstr(err.msg, "archMap[1].subArchitectures[1]: unknown architecture `SCMP_ARCH_NOPE`") != NULL,
              "message `%s`", err.msg);
    }
}

static void t_json_missing_file(void)
{
    hearth_error_t err = {0};
    sbx_seccomp_t *sc = NULL;
    CHECK(sbx_seccomp_compile("/nonexistent/hearth/profile.json", &sc, &err) < 0, "missing file fails");
    CHECK(sc == NULL, "no program");
    CHECK(strstr(err.msg, "/nonexistent/hearth/profile.json") != NULL && err.code == ENOENT, "message `%s`",
          err.msg);
}

/* ---- Docker's profile ------------------------------------------------------- */

static int docker_profile_path(char *buf, size_t len)
{
    const char *env = getenv("HEARTH_TESTDATA");
    const char *dirs[] = {env, "../shared/testdata", "/work/shared/testdata"};
    for (size_t i = 0; i < N(dirs); i++) {
        if (dirs[i] == NULL)
            continue;
        snprintf(buf, len, "%s/docker-default-seccomp.json", dirs[i]);
        if (access(buf, R_OK) == 0)
            return 0;
    }
    return -1;
}

static void t_docker_profile(void)
{
    char path[4096];
    if (docker_profile_path(path, sizeof(path)) < 0)
        SKIP("docker-default-seccomp.json not found ($HEARTH_TESTDATA, ../shared/testdata, /work/shared/testdata)");
    hearth_error_t err = {0};
    sbx_seccomp_t *sc = NULL;
    int rc = sbx_seccomp_compile(path, &sc, &err); /* REQUIRE evaluates its condition twice */
    REQUIRE(rc == 0, "compile %s: %s", path, err.msg);
    printf("#   Docker profile: %u BPF instructions\n", sc->prog.len);
    check_cases(sc, ordinary_cases, N(ordinary_cases));
    check_table(sc, docker_cases, N(docker_cases));
    sbx_seccomp_free(sc);
}

int main(void)
{
    RUN(t_default_ordinary);
    RUN(t_default_denied);
    RUN(t_default_int80);
    RUN(t_default_never_allowed);
    RUN(t_default_deterministic);
    RUN(t_default_timing);
    RUN(t_json_conditions);
    RUN(t_json_args_and_actions);
    RUN(t_json_malformed);
    RUN(t_json_missing_file);
    RUN(t_docker_profile);
    return harness_done();
}
