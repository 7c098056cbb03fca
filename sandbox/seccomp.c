/* Seccomp filters compiled with libseccomp: hearth's built-in allowlist and
 * OCI / Docker JSON profiles. Compilation happens once, in the daemon; the
 * result is a plain BPF program that sbx_seccomp_install() hands to the
 * kernel between fork and exec without allocating.
 *
 * One libseccomp behaviour shapes the whole default profile: for a given
 * syscall an unconditional rule swallows every conditional rule added for
 * it, whatever their actions (measured with libseccomp 2.5.4: ALLOW ioctl
 * plus ERRNO ioctl-if-TIOCSTI compiles to a bare ALLOW). "Allowed except
 * these values" therefore cannot be written as an allow plus a deny; it is
 * written as allow rules covering every other value (allow_except). */
#include "seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

/* Bounds on what a profile may ask of us, so hostile input costs bounded
 * memory and CPU. Docker's own profile is ~20 KB, 33 rules, ~420 names. */
#define PROFILE_MAX_BYTES (1u << 20) /* whole JSON text */
#define PROFILE_MAX_RULES 4096       /* entries of syscalls[] */
#define PROFILE_MAX_ADDS 16384       /* (name, rule) pairs handed to libseccomp */
#define PROFILE_MAX_ARGS 6           /* args[] entries of one rule */
#define PROFILE_MAX_ARCHES 16        /* architectures in one filter */

/* Namespace flags that clone must not carry: NEWNS, NEWCGROUP, NEWUTS,
 * NEWIPC, NEWUSER, NEWPID, NEWNET (the mask Docker uses). */
#define CLONE_NS_MASK 0x7E020000u

/* A profile's faults are reported by where they are, not by strerror():
 * the message stays "syscalls[3].action: unknown action `X`" while the
 * code still says what kind of fault it was. */
#define profile_error(err, errnum, ...)                                                                    \
    ({                                                                                                     \
        hearth_error_t *e_ = (err);                                                                        \
        hearth_error_set(e_, 0, __VA_ARGS__);                                                              \
        if (e_ != NULL)                                                                                    \
            e_->code = (errnum);                                                                           \
        -1;                                                                                                \
    })

/* ---- the built-in profile ---------------------------------------------- */

/* Allowed unconditionally. Names unknown to the running libseccomp or not
 * present on the native architecture are skipped, so the list may name
 * syscalls newer than the build host. Deliberately absent (left to the
 * default EPERM): mount and the new mount API, umount2, pivot_root, chroot,
 * unshare, setns (namespaces are ours to make, not the function's); keyctl,
 * add_key, request_key (the keyring is not namespaced); bpf,
 * perf_event_open, userfaultfd, io_uring_* (large kernel attack surface,
 * the source of many local escalations); ptrace, process_vm_readv/writev,
 * pidfd_getfd, kcmp, process_madvise (reach into other processes; kcmp also
 * leaks kernel pointer order); kexec_*, *_module, reboot, swapon/off,
 * syslog, acct, quotactl, *settime*, adjtimex, clock_adjtime, iopl, ioperm,
 * vhangup (host-wide state); open_by_handle_at / name_to_handle_at (the
 * "shocker" escape around mount boundaries); lookup_dcookie, uselib,
 * nfsservctl, _sysctl, sysfs, ustat, modify_ldt (obsolete, attack surface
 * only); mbind, set_mempolicy, migrate_pages, move_pages (NUMA placement of
 * other tenants' memory); fanotify_init, sethostname, setdomainname (need
 * CAP_SYS_ADMIN, which no sandboxed process holds). */
static const char *const default_allow[] = {
    /* files and descriptors */
    "read", "write", "open", "openat", "openat2", "close", "close_range", "creat", "lseek", "pread64",
    "pwrite64", "readv", "writev", "preadv", "pwritev", "preadv2", "pwritev2", "sendfile", "splice",
    "tee", "vmsplice", "copy_file_range", "stat", "fstat", "lstat", "newfstatat", "statx", "statfs",
    "fstatfs", "access", "faccessat", "faccessat2", "dup", "dup2", "dup3", "fcntl", "flock", "fsync",
    "fdatasync", "sync", "syncfs", "sync_file_range", "truncate", "ftruncate", "fallocate",
    "fadvise64", "readahead", "getdents", "getdents64", "getcwd", "chdir", "fchdir", "rename",
    "renameat", "renameat2", "mkdir", "mkdirat", "rmdir", "link", "linkat", "unlink", "unlinkat",
    "symlink", "symlinkat", "readlink", "readlinkat", "chmod", "fchmod", "fchmodat", "fchmodat2",
    "chown", "fchown", "lchown", "fchownat", "umask", "mknod", "mknodat", "utime", "utimes",
    "utimensat", "futimesat", "setxattr", "lsetxattr", "fsetxattr", "getxattr", "lgetxattr",
    "fgetxattr", "listxattr", "llistxattr", "flistxattr", "removexattr", "lremovexattr",
    "fremovexattr", "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
    "memfd_create", "cachestat",
    /* pipes, polling, event descriptors */
    "pipe", "pipe2", "select", "pselect6", "poll", "ppoll", "epoll_create", "epoll_create1",
    "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2",
    "timerfd_create", "timerfd_settime", "timerfd_gettime", "signalfd", "signalfd4",
    /* asynchronous I/O (the old interface; io_uring stays out) */
    "io_setup", "io_destroy", "io_getevents", "io_pgetevents", "io_submit", "io_cancel",
    /* memory */
    "brk", "mmap", "munmap", "mremap", "mprotect", "msync", "mincore", "madvise", "mlock", "mlock2",
    "munlock", "mlockall", "munlockall", "remap_file_pages", "pkey_mprotect", "pkey_alloc",
    "pkey_free", "membarrier", "map_shadow_stack", "mseal",
    /* System V and POSIX IPC (private to the sandbox's IPC namespace) */
    "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl", "msgget",
    "msgsnd", "msgrcv", "msgctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive",
    "mq_notify", "mq_getsetattr",
    /* signals */
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigtimedwait",
    "rt_sigqueueinfo", "rt_tgsigqueueinfo", "rt_sigsuspend", "sigaltstack", "pause", "kill",
    "tkill", "tgkill", "pidfd_open", "pidfd_send_signal",
    /* time */
    "nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday", "time",
    "alarm", "getitimer", "setitimer", "timer_create", "timer_settime", "timer_gettime",
    "timer_getoverrun", "timer_delete", "times",
    /* processes and threads (clone and clone3 have rules of their own) */
    "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid",
    "set_tid_address", "set_robust_list", "get_robust_list", "futex", "futex_waitv", "futex_wake",
    "futex_wait", "futex_requeue", "rseq", "restart_syscall", "arch_prctl", "prctl",
    "set_thread_area", "get_thread_area", "sched_yield", "sched_setparam", "sched_getparam",
    "sched_setscheduler", "sched_getscheduler", "sched_get_priority_max",
    "sched_get_priority_min", "sched_rr_get_interval", "sched_setaffinity", "sched_getaffinity",
    "sched_setattr", "sched_getattr", "getpriority", "setpriority", "ioprio_get", "ioprio_set",
    "getcpu", "seccomp", "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
    /* identity and limits (changing them needs capabilities we do not grant) */
    "getpid", "getppid", "gettid", "getuid", "geteuid", "getgid", "getegid", "getresuid",
    "getresgid", "getgroups", "setuid", "setgid", "setreuid", "setregid", "setresuid",
    "setresgid", "setfsuid", "setfsgid", "setgroups", "getpgid", "setpgid", "getpgrp", "getsid",
    "setsid", "capget", "capset", "getrlimit", "setrlimit", "prlimit64", "getrusage", "uname",
    "sysinfo", "getrandom",
    /* sockets (socket and socketpair have rules of their own) */
    "connect", "accept", "accept4", "bind", "listen", "shutdown", "getsockname", "getpeername",
    "setsockopt", "getsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg",
    "recvmmsg",
};

/* Personalities a program may select: Linux, with ADDR_NO_RANDOMIZE
 * and/or UNAME26 (0x0008 is PER_LINUX32's low bits as Docker lists them),
 * and the 0xffffffff query. Others (READ_IMPLIES_EXEC, ...) weaken the
 * process. The same list as Docker's profile. */
static const uint32_t default_personalities[] = {0x0, 0x0008, 0x20000, 0x20008, 0xffffffff};

/* ---- helpers ------------------------------------------------------------ */

static void ctx_release(scmp_filter_ctx *ctx)
{
    if (*ctx != NULL)
        seccomp_release(*ctx);
}
#define cleanup_scmp __attribute__((cleanup(ctx_release)))

static int new_filter(uint32_t def_action, scmp_filter_ctx *out, hearth_error_t *err)
{
    cleanup_scmp scmp_filter_ctx ctx = seccomp_init(def_action);
    if (ctx == NULL)
        return profile_error(err, EINVAL, "cannot create a filter with default action %#x", def_action);
    /* Any ABI not added to the filter ends the whole process: killing only
     * the thread would leave the rest running in an unknown state. */
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (rc < 0)
        return hearth_error_set(err, -rc, "bad-architecture action");
    /* A binary tree of syscall numbers rather than a linear chain: a few
     * hundred allowed names would otherwise cost a few hundred compares on
     * the hottest syscalls. */
    rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    if (rc < 0)
        return hearth_error_set(err, -rc, "optimize attribute");
    *out = steal_pointer(&ctx);
    return 0;
}

/* Export the filter as BPF. libseccomp 2.5 can only write to an fd, so it
 * goes through a memfd and is read back into one allocation holding both
 * the sbx_seccomp_t and its instructions. */
static int export_filter(scmp_filter_ctx ctx, sbx_seccomp_t **out, hearth_error_t *err)
{
    cleanup_close int fd = memfd_create("hearth-seccomp", MFD_CLOEXEC);
    if (fd < 0)
        return hearth_error_sys(err, "memfd_create");
    int rc = seccomp_export_bpf(ctx, fd);
    if (rc < 0)
        return hearth_error_set(err, -rc, "export BPF");
    struct stat st;
    if (fstat(fd, &st) < 0)
        return hearth_error_sys(err, "fstat of exported BPF");
    size_t len = (size_t)st.st_size;
    if (len == 0 || len % sizeof(struct sock_filter) != 0)
        return hearth_error_set(err, 0, "exported BPF has odd size %zu", len);
    size_t n = len / sizeof(struct sock_filter);
    /* The kernel refuses longer programs; say so here, with the number,
     * rather than as EINVAL from every sandbox later. */
    if (n > BPF_MAXINSNS)
        return profile_error(err, E2BIG, "profile compiles to %zu BPF instructions, over the kernel's limit of %d", n,
                             BPF_MAXINSNS);
    cleanup_free sbx_seccomp_t *sc = calloc(1, sizeof(*sc) + len);
    if (sc == NULL)
        return hearth_error_set(err, ENOMEM, "allocate program");
    struct sock_filter *insns = (struct sock_filter *)(sc + 1);
    if (pread(fd, insns, len, 0) != (ssize_t)len)
        return hearth_error_sys(err, "read exported BPF");
    sc->prog.len = (unsigned short)n;
    sc->prog.filter = insns;
    *out = steal_pointer(&sc);
    return 0;
}

static int add_rule(scmp_filter_ctx ctx, uint32_t action, int nr, const char *name, unsigned ncmp,
                    const struct scmp_arg_cmp *cmp, hearth_error_t *err)
{
    int rc = seccomp_rule_add_array(ctx, action, nr, ncmp, cmp);
    if (rc < 0)
        return hearth_error_set(err, -rc, "rule for `%s`", name);
    return 0;
}

/* Allow syscall nr for every value of argument arg whose low 32 bits lie
 * in the block given by prefix (its top `bits` bits) and are not in
 * deny[]; prefix 0, bits 0 means all 2^32 values. The kernel reads these
 * arguments (ioctl's cmd, socket's domain) as 32-bit ints, so the high
 * half must not matter: a plain 64-bit compare would let
 * ioctl(fd, 0x100005412) through as TIOCSTI. The block minus the denied
 * points is cut into aligned sub-blocks, one MASKED_EQ rule each: about 32
 * rules per denied value over the full range, fewer when they share a
 * prefix. */
static int allow_except(scmp_filter_ctx ctx, int nr, const char *name, unsigned arg, const uint32_t *deny,
                        size_t ndeny, uint32_t prefix, unsigned bits, hearth_error_t *err)
{
    uint32_t mask = bits == 0 ? 0 : ~0u << (32 - bits);
    bool hit = false;
    for (size_t i = 0; i < ndeny && !hit; i++)
        hit = (deny[i] & mask) == prefix;
    if (!hit) {
        struct scmp_arg_cmp cmp = SCMP_CMP(arg, SCMP_CMP_MASKED_EQ, mask, prefix);
        return add_rule(ctx, SCMP_ACT_ALLOW, nr, name, 1, &cmp, err);
    }
    if (bits == 32)
        return 0; /* a denied value: falls through to the default action */
    if (allow_except(ctx, nr, name, arg, deny, ndeny, prefix, bits + 1, err) < 0)
        return -1;
    return allow_except(ctx, nr, name, arg, deny, ndeny, prefix | (1u << (31 - bits)), bits + 1, err);
}

/* Resolve a name for the rules below, which name syscalls every x86_64 and
 * aarch64 kernel has; a miss means a broken libseccomp, so fail closed. */
static int must_resolve(const char *name, int *nr, hearth_error_t *err)
{
    *nr = seccomp_syscall_resolve_name(name);
    if (*nr == __NR_SCMP_ERROR)
        return hearth_error_set(err, 0, "libseccomp does not know `%s`", name);
    return 0;
}

static int build_default(scmp_filter_ctx *out, hearth_error_t *err)
{
    cleanup_scmp scmp_filter_ctx ctx = NULL;
    if (new_filter(SCMP_ACT_ERRNO(EPERM), &ctx, err) < 0)
        return -1;
    /* Only the native ABI. On x86_64 libseccomp also sends x32 numbers
     * (bit 30 set) to the bad-arch action when x32 is not in the filter,
     * and i386 (`int 0x80`) carries another AUDIT_ARCH; both are killed.
     * The unit tests check both. */
    for (size_t i = 0; i < sizeof(default_allow) / sizeof(default_allow[0]); i++) {
        int nr = seccomp_syscall_resolve_name(default_allow[i]);
        if (nr == __NR_SCMP_ERROR)
            continue; /* newer than this libseccomp: stays denied */
        if (add_rule(ctx, SCMP_ACT_ALLOW, nr, default_allow[i], 0, NULL, err) < 0)
            return -1;
    }

    /* clone: only without namespace flags. The flags are in a register
     * seccomp can read, unlike clone3's, which sit in memory; so clone3
     * answers ENOSYS and glibc falls back to clone. */
    int nr;
    if (must_resolve("clone", &nr, err) < 0)
        return -1;
    struct scmp_arg_cmp clone_cmp = SCMP_CMP(0, SCMP_CMP_MASKED_EQ, CLONE_NS_MASK, 0);
    if (add_rule(ctx, SCMP_ACT_ALLOW, nr, "clone", 1, &clone_cmp, err) < 0)
        return -1;
    nr = seccomp_syscall_resolve_name("clone3");
    if (nr != __NR_SCMP_ERROR && add_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), nr, "clone3", 0, NULL, err) < 0)
        return -1;

    /* Sockets of every family but AF_ALG (kernel crypto; page-cache writes
     * through splice) and AF_VSOCK (reaches the hypervisor). Only families
     * 0..63 are covered (AF_MAX is 46 in Linux 6.x): starting the cut at a
     * 26-bit prefix takes 8 rules instead of 34 for all 2^32 values, and
     * the cost of every install grows with program length (the kernel
     * checks and JITs it each time: ~0.2 us per instruction measured on a
     * development machine). Higher families, which do not exist, get EPERM
     * instead of EAFNOSUPPORT. */
    static const uint32_t bad_families[] = {AF_ALG, AF_VSOCK};
    static const char *const socket_calls[] = {"socket", "socketpair"};
    for (size_t i = 0; i < 2; i++) {
        if (must_resolve(socket_calls[i], &nr, err) < 0)
            return -1;
        if (allow_except(ctx, nr, socket_calls[i], 0, bad_families, 2, 0, 26, err) < 0)
            return -1;
    }

    /* ioctl, except TIOCSTI (pushes input into a terminal: escapes through
     * a shared tty) and TIOCLINUX (same, through the console). */
    static const uint32_t bad_ioctls[] = {TIOCSTI, TIOCLINUX};
    if (must_resolve("ioctl", &nr, err) < 0)
        return -1;
    if (allow_except(ctx, nr, "ioctl", 1, bad_ioctls, 2, 0, 0, err) < 0)
        return -1;

    if (must_resolve("personality", &nr, err) < 0)
        return -1;
    for (size_t i = 0; i < sizeof(default_personalities) / sizeof(default_personalities[0]); i++) {
        /* personality takes an unsigned int: compare the low half only. */
        struct scmp_arg_cmp cmp = SCMP_CMP(0, SCMP_CMP_MASKED_EQ, 0xffffffffu, default_personalities[i]);
        if (add_rule(ctx, SCMP_ACT_ALLOW, nr, "personality", 1, &cmp, err) < 0)
            return -1;
    }
    *out = steal_pointer(&ctx);
    return 0;
}

/* ---- JSON profiles -------------------------------------------------------- */

/* Architectures as profiles name them (SCMP_ARCH_*), as libseccomp resolves
 * them, and as Docker's includes/excludes `arches` spell them (Go's
 * GOARCH plus x86 and x32). */
static const struct arch_name {
    const char *scmp;   /* "SCMP_ARCH_X86_64" */
    const char *lib;    /* name for seccomp_arch_resolve_name */
    const char *docker; /* name in includes/excludes arches */
} arch_names[] = {
    {"SCMP_ARCH_X86", "x86", "x86"},
    {"SCMP_ARCH_X86_64", "x86_64", "amd64"},
    {"SCMP_ARCH_X32", "x32", "x32"},
    {"SCMP_ARCH_ARM", "arm", "arm"},
    {"SCMP_ARCH_AARCH64", "aarch64", "arm64"},
    {"SCMP_ARCH_MIPS", "mips", "mips"},
    {"SCMP_ARCH_MIPS64", "mips64", "mips64"},
    {"SCMP_ARCH_MIPS64N32", "mips64n32", "mips64n32"},
    {"SCMP_ARCH_MIPSEL", "mipsel", "mipsel"},
    {"SCMP_ARCH_MIPSEL64", "mipsel64", "mipsel64"},
    {"SCMP_ARCH_MIPSEL64N32", "mipsel64n32", "mipsel64n32"},
    {"SCMP_ARCH_PPC", "ppc", "ppc"},
    {"SCMP_ARCH_PPC64", "ppc64", "ppc64"},
    {"SCMP_ARCH_PPC64LE", "ppc64le", "ppc64le"},
    {"SCMP_ARCH_S390", "s390", "s390"},
    {"SCMP_ARCH_S390X", "s390x", "s390x"},
    {"SCMP_ARCH_PARISC", "parisc", "parisc"},
    {"SCMP_ARCH_PARISC64", "parisc64", "parisc64"},
    {"SCMP_ARCH_RISCV64", "riscv64", "riscv64"},
    {"SCMP_ARCH_LOONGARCH64", "loongarch64", "loong64"},
    {"SCMP_ARCH_M68K", "m68k", "m68k"},
    {"SCMP_ARCH_SH", "sh", "sh"},
    {"SCMP_ARCH_SHEB", "sheb", "sheb"},
};

static const struct arch_name *arch_by_scmp(const char *s)
{
    for (size_t i = 0; i < sizeof(arch_names) / sizeof(arch_names[0]); i++)
        if (strcmp(arch_names[i].scmp, s) == 0)
            return &arch_names[i];
    return NULL;
}

static const struct arch_name *arch_by_token(uint32_t token)
{
    for (size_t i = 0; i < sizeof(arch_names) / sizeof(arch_names[0]); i++)
        if (seccomp_arch_resolve_name(arch_names[i].lib) == token)
            return &arch_names[i];
    return NULL;
}

static const struct {
    const char *name;
    uint32_t action; /* ERRNO and TRACE get their data added later */
} action_names[] = {
    {"SCMP_ACT_KILL", SCMP_ACT_KILL_THREAD},     {"SCMP_ACT_KILL_THREAD", SCMP_ACT_KILL_THREAD},
    {"SCMP_ACT_KILL_PROCESS", SCMP_ACT_KILL_PROCESS}, {"SCMP_ACT_TRAP", SCMP_ACT_TRAP},
    {"SCMP_ACT_ERRNO", SCMP_ACT_ERRNO(0)},       {"SCMP_ACT_TRACE", SCMP_ACT_TRACE(0)},
    {"SCMP_ACT_ALLOW", SCMP_ACT_ALLOW},          {"SCMP_ACT_LOG", SCMP_ACT_LOG},
};

static const struct {
    const char *name;
    enum scmp_compare op;
} op_names[] = {
    {"SCMP_CMP_NE", SCMP_CMP_NE}, {"SCMP_CMP_LT", SCMP_CMP_LT}, {"SCMP_CMP_LE", SCMP_CMP_LE},
    {"SCMP_CMP_EQ", SCMP_CMP_EQ}, {"SCMP_CMP_GE", SCMP_CMP_GE}, {"SCMP_CMP_GT", SCMP_CMP_GT},
    {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ},
};

typedef struct profile {
    scmp_filter_ctx ctx;                       /* filter being built */
    uint32_t def_action;                       /* resolved defaultAction */
    int def_errno;                             /* defaultErrnoRet, EPERM if absent */
    const char *arches[PROFILE_MAX_ARCHES];    /* Docker names of the filter's arches */
    size_t narches;                            /* entries used in arches */
    unsigned kernel_major, kernel_minor;       /* running kernel, for minKernel */
    size_t adds;                               /* rules handed to libseccomp so far */
} profile_t;

/* Error paths are built as they are needed; one buffer per nesting level
 * keeps them short-lived and bounded. */
#define PATH_MAX_LEN 96

/* snprintf for error paths; truncation only shortens a message. */
static void HEARTH_PRINTF(3, 4) path_printf(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

static const char *type_name(const json_t *j)
{
    if (j == NULL)
        return "nothing";
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "something else";
}

static int type_error(const char *path, const char *want, const json_t *got, hearth_error_t *err)
{
    return profile_error(err, EINVAL, "%s: expected %s, got %s", path, want, type_name(got));
}

/* Fetch an optional member; JSON null counts as absent (Go's encoder writes
 * null for empty slices, and Docker's own profile has such nulls). */
static json_t *member(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

/* An optional array of strings: returns its size, 0 if absent, -1 on error. */
static ssize_t string_array(const json_t *v, const char *path, hearth_error_t *err)
{
    if (v == NULL)
        return 0;
    if (!json_is_array(v))
        return type_error(path, "an array of strings", v, err);
    for (size_t i = 0; i < json_array_size(v); i++)
        if (!json_is_string(json_array_get(v, i))) {
            char p[PATH_MAX_LEN * 2];
            path_printf(p, sizeof(p), "%s[%zu]", path, i);
            return type_error(p, "a string", json_array_get(v, i), err);
        }
    return (ssize_t)json_array_size(v);
}

static int parse_action(const json_t *v, const char *path, uint32_t *out, hearth_error_t *err)
{
    if (!json_is_string(v))
        return type_error(path, "an action string", v, err);
    const char *s = json_string_value(v);
    for (size_t i = 0; i < sizeof(action_names) / sizeof(action_names[0]); i++)
        if (strcmp(action_names[i].name, s) == 0) {
            *out = action_names[i].action;
            return 0;
        }
    if (strcmp(s, "SCMP_ACT_NOTIFY") == 0)
        return profile_error(err, ENOTSUP, "%s: `SCMP_ACT_NOTIFY` is not supported (no seccomp agent)", path);
    return profile_error(err, EINVAL, "%s: unknown action `%.64s`", path, s);
}

/* errnoRet / defaultErrnoRet: the kernel carries 16 bits and reports at
 * most MAX_ERRNO (4095) as an error; TRACE passes the 16 bits to the
 * tracer. */
static int parse_ret(const json_t *v, const char *path, uint32_t max, int *out, hearth_error_t *err)
{
    if (!json_is_integer(v))
        return type_error(path, "an integer", v, err);
    json_int_t n = json_integer_value(v);
    if (n < 0 || n > (json_int_t)max)
        return profile_error(err, ERANGE, "%s: %lld is outside 0..%u", path, (long long)n, max);
    *out = (int)n;
    return 0;
}

/* Combine an action with its errno/trace data; errno_ret < 0 = absent. */
static int finish_action(uint32_t action, int ret, int fallback, const char *path, uint32_t *out,
                         hearth_error_t *err)
{
    if (action == SCMP_ACT_ERRNO(0) || action == SCMP_ACT_TRACE(0)) {
        if (ret < 0)
            ret = fallback;
        if (action == SCMP_ACT_ERRNO(0) && ret > 4095)
            return profile_error(err, ERANGE, "%s: errno %d is above 4095", path, ret);
        *out = action == SCMP_ACT_ERRNO(0) ? SCMP_ACT_ERRNO((uint32_t)ret) : SCMP_ACT_TRACE((uint32_t)ret);
        return 0;
    }
    if (ret >= 0)
        return profile_error(err, EINVAL, "%s: errnoRet only goes with SCMP_ACT_ERRNO or SCMP_ACT_TRACE", path);
    *out = action;
    return 0;
}

static int add_arch(profile_t *p, const struct arch_name *a, const char *path, hearth_error_t *err)
{
    for (size_t i = 0; i < p->narches; i++)
        if (strcmp(p->arches[i], a->docker) == 0)
            return 0;
    uint32_t token = seccomp_arch_resolve_name(a->lib);
    /* Fail closed: an ABI this libseccomp cannot filter is left out of the
     * filter, so its syscalls meet the bad-arch action. */
    if (token == 0)
        return 0;
    if (p->narches == PROFILE_MAX_ARCHES)
        return profile_error(err, E2BIG, "%s: too many architectures", path);
    int rc = seccomp_arch_add(p->ctx, token);
    if (rc < 0 && rc != -EEXIST)
        return hearth_error_set(err, -rc, "%s: cannot add architecture `%s`", path, a->scmp);
    p->arches[p->narches++] = a->docker;
    return 0;
}

static int parse_arches(profile_t *p, const json_t *root, hearth_error_t *err)
{
    const struct arch_name *native = arch_by_token(seccomp_arch_native());
    if (native == NULL)
        return profile_error(err, ENOTSUP, "native architecture unknown to hearth");
    if (add_arch(p, native, "native architecture", err) < 0)
        return -1;

    json_t *list = member(root, "architectures");
    json_t *map = member(root, "archMap");
    /* Docker refuses the two together; so do we, rather than guess. */
    if (list != NULL && map != NULL && json_array_size(list) > 0 && json_array_size(map) > 0)
        return profile_error(err, EINVAL, "architectures and archMap: use one or the other");

    ssize_t n = string_array(list, "architectures", err);
    if (n < 0)
        return -1;
    for (size_t i = 0; i < (size_t)n; i++) {
        char path[PATH_MAX_LEN];
        path_printf(path, sizeof(path), "architectures[%zu]", i);
        const char *s = json_string_value(json_array_get(list, i));
        const struct arch_name *a = arch_by_scmp(s);
        if (a == NULL)
            return profile_error(err, EINVAL, "%s: unknown architecture `%.64s`", path, s);
        if (add_arch(p, a, path, err) < 0)
            return -1;
    }

    if (map == NULL)
        return 0;
    if (!json_is_array(map))
        return type_error("archMap", "an array", map, err);
    for (size_t i = 0; i < json_array_size(map); i++) {
        char path[PATH_MAX_LEN];
        json_t *e = json_array_get(map, i);
        path_printf(path, sizeof(path), "archMap[%zu]", i);
        if (!json_is_object(e))
            return type_error(path, "an object", e, err);
        json_t *arch = json_object_get(e, "architecture");
        path_printf(path, sizeof(path), "archMap[%zu].architecture", i);
        if (!json_is_string(arch))
            return type_error(path, "a string", arch, err);
        json_t *subs = member(e, "subArchitectures");
        path_printf(path, sizeof(path), "archMap[%zu].subArchitectures", i);
        ssize_t nsub = string_array(subs, path, err);
        if (nsub < 0)
            return -1;
        /* Only the entry for the machine we run on counts; the others may
         * name architectures this libseccomp has never heard of. */
        if (strcmp(json_string_value(arch), native->scmp) != 0)
            continue;
        for (size_t j = 0; j < (size_t)nsub; j++) {
            const char *s = json_string_value(json_array_get(subs, j));
            path_printf(path, sizeof(path), "archMap[%zu].subArchitectures[%zu]", i, j);
            const struct arch_name *a = arch_by_scmp(s);
            if (a == NULL)
                return profile_error(err, EINVAL, "%s: unknown architecture `%.64s`", path, s);
            if (add_arch(p, a, path, err) < 0)
                return -1;
        }
    }
    return 0;
}

static bool have_arch(const profile_t *p, const char *docker_name)
{
    for (size_t i = 0; i < p->narches; i++)
        if (strcmp(p->arches[i], docker_name) == 0)
            return true;
    return false;
}

/* "4.8" (Docker writes major.minor; a .patch is tolerated and ignored). */
static int parse_kernel_version(const char *s, unsigned *major, unsigned *minor)
{
    char *end;
    errno = 0;
    unsigned long a = strtoul(s, &end, 10);
    if (end == s || *end != '.' || errno != 0 || a > 10000)
        return -1;
    const char *m = end + 1;
    unsigned long b = strtoul(m, &end, 10);
    if (end == m || errno != 0 || b > 10000)
        return -1;
    *major = (unsigned)a;
    *minor = (unsigned)b;
    return 0;
}

/* Decide whether a filter (includes or excludes) matches this host and a
 * process without capabilities. *match is true when every condition it
 * sets holds; conditions absent do not count. */
static int eval_filter(const profile_t *p, const json_t *f, const char *path, bool is_exclude, bool *match,
                       hearth_error_t *err)
{
    char sub[PATH_MAX_LEN * 2];
    bool any = false; /* for excludes: any condition holds */
    bool all = true;  /* for includes: all conditions hold */
    if (!json_is_object(f))
        return type_error(path, "an object", f, err);

    json_t *caps = member(f, "caps");
    path_printf(sub, sizeof(sub), "%s.caps", path);
    ssize_t n = string_array(caps, sub, err);
    if (n < 0)
        return -1;
    if (n > 0) {
        /* We hold no capabilities: an include of any cap never holds, an
         * exclude of any cap never excludes. */
        all = false;
    }

    json_t *arches = member(f, "arches");
    path_printf(sub, sizeof(sub), "%s.arches", path);
    if ((n = string_array(arches, sub, err)) < 0)
        return -1;
    if (n > 0) {
        bool hit = false;
        for (size_t i = 0; i < (size_t)n && !hit; i++)
            hit = have_arch(p, json_string_value(json_array_get(arches, i)));
        any = any || hit;
        all = all && hit;
    }

    json_t *mk = member(f, "minKernel");
    if (mk != NULL) {
        path_printf(sub, sizeof(sub), "%s.minKernel", path);
        if (!json_is_string(mk))
            return type_error(sub, "a string", mk, err);
        unsigned maj, min;
        if (parse_kernel_version(json_string_value(mk), &maj, &min) < 0)
            return profile_error(err, EINVAL, "%s: invalid kernel version `%.32s`", sub, json_string_value(mk));
        bool at_least = p->kernel_major > maj || (p->kernel_major == maj && p->kernel_minor >= min);
        any = any || at_least;
        all = all && at_least;
    }
    *match = is_exclude ? any : all;
    return 0;
}

static int parse_arg(const json_t *a, const char *path, struct scmp_arg_cmp *out, hearth_error_t *err)
{
    char sub[PATH_MAX_LEN * 2];
    if (!json_is_object(a))
        return type_error(path, "an object", a, err);

    json_t *idx = json_object_get(a, "index");
    path_printf(sub, sizeof(sub), "%s.index", path);
    if (!json_is_integer(idx))
        return type_error(sub, "an integer", idx, err);
    json_int_t index = json_integer_value(idx);
    if (index < 0 || index > 5)
        return profile_error(err, EINVAL, "%s: %lld is not an argument index (0..5)", sub, (long long)index);

    uint64_t vals[2] = {0, 0};
    static const char *const keys[2] = {"value", "valueTwo"};
    for (size_t k = 0; k < 2; k++) {
        json_t *v = member(a, keys[k]);
        if (v == NULL)
            continue;
        path_printf(sub, sizeof(sub), "%s.%s", path, keys[k]);
        if (!json_is_integer(v))
            return type_error(sub, "an integer", v, err);
        /* Docker reads these as uint64; jansson's integers are signed, so
         * only values up to 2^63-1 can be written. */
        if (json_integer_value(v) < 0)
            return profile_error(err, ERANGE, "%s: negative value %lld", sub, (long long)json_integer_value(v));
        vals[k] = (uint64_t)json_integer_value(v);
    }

    json_t *op = json_object_get(a, "op");
    path_printf(sub, sizeof(sub), "%s.op", path);
    if (!json_is_string(op))
        return type_error(sub, "an operator string", op, err);
    for (size_t i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++)
        if (strcmp(op_names[i].name, json_string_value(op)) == 0) {
            /* For MASKED_EQ, value is the mask and valueTwo the datum, as
             * in libseccomp's SCMP_CMP(). */
            *out = (struct scmp_arg_cmp){.arg = (unsigned)index, .op = op_names[i].op, .datum_a = vals[0],
                                         .datum_b = vals[1]};
            return 0;
        }
    return profile_error(err, EINVAL, "%s: unknown operator `%.64s`", sub, json_string_value(op));
}

static int parse_rule(profile_t *p, const json_t *rule, size_t ri, hearth_error_t *err)
{
    char path[PATH_MAX_LEN], sub[PATH_MAX_LEN * 2];
    path_printf(path, sizeof(path), "syscalls[%zu]", ri);
    if (!json_is_object(rule))
        return type_error(path, "an object", rule, err);

    /* Validate the whole rule before deciding whether it applies, so a
     * typo in a rule for another architecture is still reported. */
    json_t *names = member(rule, "names");
    json_t *name = member(rule, "name");
    path_printf(sub, sizeof(sub), "%s.names", path);
    ssize_t nnames = string_array(names, sub, err);
    if (nnames < 0)
        return -1;
    if (name != NULL && !json_is_string(name)) {
        path_printf(sub, sizeof(sub), "%s.name", path);
        return type_error(sub, "a string", name, err);
    }
    if (nnames == 0 && name == NULL)
        return profile_error(err, EINVAL, "%s: neither `names` nor `name`", path);

    uint32_t base;
    path_printf(sub, sizeof(sub), "%s.action", path);
    if (parse_action(json_object_get(rule, "action"), sub, &base, err) < 0)
        return -1;
    int ret = -1;
    json_t *r = member(rule, "errnoRet");
    path_printf(sub, sizeof(sub), "%s.errnoRet", path);
    if (r != NULL && parse_ret(r, sub, 0xffff, &ret, err) < 0)
        return -1;
    uint32_t action;
    /* Without errnoRet, an errno rule answers EPERM, as in runc. */
    if (finish_action(base, ret, EPERM, sub, &action, err) < 0)
        return -1;

    struct scmp_arg_cmp cmp[PROFILE_MAX_ARGS];
    size_t ncmp = 0;
    json_t *args = member(rule, "args");
    if (args != NULL) {
        path_printf(sub, sizeof(sub), "%s.args", path);
        if (!json_is_array(args))
            return type_error(sub, "an array", args, err);
        if (json_array_size(args) > PROFILE_MAX_ARGS)
            return profile_error(err, E2BIG, "%s: more than %d comparisons", sub, PROFILE_MAX_ARGS);
        for (ncmp = 0; ncmp < json_array_size(args); ncmp++) {
            path_printf(sub, sizeof(sub), "%s.args[%zu]", path, ncmp);
            if (parse_arg(json_array_get(args, ncmp), sub, &cmp[ncmp], err) < 0)
                return -1;
        }
    }

    bool applies = true, m;
    json_t *inc = member(rule, "includes");
    if (inc != NULL) {
        path_printf(sub, sizeof(sub), "%s.includes", path);
        if (eval_filter(p, inc, sub, false, &m, err) < 0)
            return -1;
        applies = applies && m;
    }
    json_t *exc = member(rule, "excludes");
    if (exc != NULL) {
        path_printf(sub, sizeof(sub), "%s.excludes", path);
        if (eval_filter(p, exc, sub, true, &m, err) < 0)
            return -1;
        applies = applies && !m;
    }
    /* A rule that repeats the default action changes nothing, and
     * libseccomp refuses it (EACCES). */
    if (!applies || action == p->def_action)
        return 0;

    /* libseccomp cannot AND two comparisons of the same argument; runc
     * then adds each comparison as a rule of its own, and so do we. */
    bool same_index = false;
    for (size_t i = 0; i < ncmp && !same_index; i++)
        for (size_t j = i + 1; j < ncmp && !same_index; j++)
            same_index = cmp[i].arg == cmp[j].arg;

    size_t total = nnames > 0 ? (size_t)nnames : 1;
    for (size_t i = 0; i < total; i++) {
        const char *sc = nnames > 0 ? json_string_value(json_array_get(names, i)) : json_string_value(name);
        /* As Docker does: a profile lists syscalls of every architecture
         * and kernel; those this libseccomp does not know are skipped. */
        int nr = seccomp_syscall_resolve_name(sc);
        if (nr == __NR_SCMP_ERROR)
            continue;
        size_t rounds = same_index ? ncmp : 1;
        for (size_t k = 0; k < rounds; k++) {
            if (++p->adds > PROFILE_MAX_ADDS)
                return profile_error(err, E2BIG, "%s: profile adds more than %d rules", path, PROFILE_MAX_ADDS);
            int rc = same_index ? seccomp_rule_add_array(p->ctx, action, nr, 1, &cmp[k])
                                : seccomp_rule_add_array(p->ctx, action, nr, (unsigned)ncmp, ncmp ? cmp : NULL);
            if (rc < 0)
                return hearth_error_set(err, -rc, "%s: libseccomp refused the rule for `%.64s`", path, sc);
        }
    }
    return 0;
}

static int build_json(const char *json, size_t len, scmp_filter_ctx *out, hearth_error_t *err)
{
    if (len > PROFILE_MAX_BYTES)
        return profile_error(err, E2BIG, "profile is %zu bytes, more than %u", len, PROFILE_MAX_BYTES);
    json_error_t jerr;
    json_auto_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return profile_error(err, EINVAL, "not valid JSON (line %d, column %d): %s", jerr.line, jerr.column,
                                jerr.text);
    if (!json_is_object(root))
        return type_error("top level", "an object", root, err);

    profile_t p = {.def_errno = EPERM};
    json_t *der = member(root, "defaultErrnoRet");
    if (der != NULL && parse_ret(der, "defaultErrnoRet", 4095, &p.def_errno, err) < 0)
        return -1;
    uint32_t base;
    if (parse_action(json_object_get(root, "defaultAction"), "defaultAction", &base, err) < 0)
        return -1;
    if (finish_action(base, -1, p.def_errno, "defaultAction", &p.def_action, err) < 0)
        return -1;

    struct utsname uts;
    if (uname(&uts) < 0)
        return hearth_error_sys(err, "uname");
    if (parse_kernel_version(uts.release, &p.kernel_major, &p.kernel_minor) < 0)
        return profile_error(err, EINVAL, "cannot parse kernel release `%s`", uts.release);

    cleanup_scmp scmp_filter_ctx ctx = NULL;
    if (new_filter(p.def_action, &ctx, err) < 0)
        return -1;
    p.ctx = ctx;
    if (parse_arches(&p, root, err) < 0)
        return -1;

    json_t *rules = member(root, "syscalls");
    if (rules != NULL) {
        if (!json_is_array(rules))
            return type_error("syscalls", "an array", rules, err);
        if (json_array_size(rules) > PROFILE_MAX_RULES)
            return profile_error(err, E2BIG, "syscalls: more than %d rules", PROFILE_MAX_RULES);
        for (size_t i = 0; i < json_array_size(rules); i++)
            if (parse_rule(&p, json_array_get(rules, i), i, err) < 0)
                return -1;
    }
    *out = steal_pointer(&ctx);
    return 0;
}

/* ---- public interface ------------------------------------------------------ */

static int compile_text(const char *json, size_t len, sbx_seccomp_t **out, hearth_error_t *err)
{
    cleanup_scmp scmp_filter_ctx ctx = NULL;
    if (build_json(json, len, &ctx, err) < 0)
        return -1;
    return export_filter(ctx, out, err);
}

int sbx_seccomp_compile_json(const char *json, size_t len, sbx_seccomp_t **out, hearth_error_t *err)
{
    if (compile_text(json, len, out, err) < 0)
        return hearth_error_wrap(err, "seccomp profile");
    return 0;
}

int sbx_seccomp_compile(const char *profile, sbx_seccomp_t **out, hearth_error_t *err)
{
    if (profile == NULL || strcmp(profile, "default") == 0) {
        cleanup_scmp scmp_filter_ctx ctx = NULL;
        if (build_default(&ctx, err) < 0 || export_filter(ctx, out, err) < 0)
            return hearth_error_wrap(err, "default seccomp profile");
        return 0;
    }

    /* Not a FIFO or a device (the regular-file check comes after the
     * open; O_NONBLOCK keeps the open itself from waiting), nor a symlink
     * swapped in for the file that was checked. */
    cleanup_close int fd = open(profile, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
    if (fd < 0)
        return hearth_error_sys(err, "seccomp profile `%s`", profile);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return hearth_error_sys(err, "seccomp profile `%s`", profile);
    if (!S_ISREG(st.st_mode))
        return profile_error(err, EINVAL, "seccomp profile `%s`: not a regular file", profile);
    if ((uint64_t)st.st_size > PROFILE_MAX_BYTES)
        return profile_error(err, E2BIG, "seccomp profile `%s`: %lld bytes, more than %u", profile,
                                (long long)st.st_size, PROFILE_MAX_BYTES);
    size_t cap = (size_t)st.st_size + 1;
    cleanup_free char *text = malloc(cap);
    if (text == NULL)
        return hearth_error_set(err, ENOMEM, "seccomp profile `%s`", profile);
    /* Read one byte past the size seen by fstat, to notice a file that
     * grew meanwhile instead of parsing a truncated text. */
    ssize_t n = read_all(fd, text, cap);
    if (n < 0)
        return hearth_error_sys(err, "seccomp profile `%s`", profile);
    if ((size_t)n == cap)
        return profile_error(err, EAGAIN, "seccomp profile `%s`: file changed while read", profile);
    if (compile_text(text, (size_t)n, out, err) < 0)
        return hearth_error_wrap(err, "seccomp profile `%s`", profile);
    return 0;
}

int sbx_seccomp_install(const sbx_seccomp_t *sc)
{
    /* prctl's argument is not const, but the kernel only reads (copies)
     * the program. */
    struct sock_fprog prog = sc->prog;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
        return -1;
    return 0;
}

void sbx_seccomp_free(sbx_seccomp_t *sc)
{
    free(sc);
}

/* --- a cache of compiled programs ------------------------------------------
 * Compiling costs 2 ms for the default profile and 15 ms for Docker's, a
 * large share of a one-shot `hearth run`. Programs are kept in a root-only
 * directory, under a name made of everything the result depends on: the
 * profile file's identity (device, inode, size, mtime in ns — as make and
 * Python's bytecode cache judge staleness), the same of this executable
 * (a rebuild changes the built-in profile), libseccomp's version and the
 * kernel's release (minKernel). No hashing: OpenSSL's start-up alone
 * would cost more than the compile it saves. A cache file is trusted only
 * if it is a regular root-owned file in a root-owned directory nobody
 * else can write. */

static int identity(const char *path, char *buf, size_t len)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -1;
    snprintf(buf, len, "%lx-%lx-%llx-%llx.%lx", (unsigned long)st.st_dev, (unsigned long)st.st_ino,
             (unsigned long long)st.st_size, (unsigned long long)st.st_mtim.tv_sec, (unsigned long)st.st_mtim.tv_nsec);
    return 0;
}

static int cache_name(const char *profile, char *name, size_t len)
{
    char exe[96], prof[96] = "default";
    struct utsname un;
    if (identity("/proc/self/exe", exe, sizeof(exe)) < 0 || uname(&un) < 0)
        return -1;
    if (profile != NULL && strcmp(profile, "default") != 0 && identity(profile, prof, sizeof(prof)) < 0)
        return -1;
    const struct scmp_version *v = seccomp_version();
    int n = snprintf(name, len, "1_%s_%s_%u.%u.%u_%s.bpf", exe, prof, v->major, v->minor, v->micro, un.release);
    for (char *p = name; *p; p++)
        if (*p == '/')
            *p = '_';
    return n > 0 && (size_t)n < len ? 0 : -1;
}

static bool safe_dir(const char *dir)
{
    struct stat st;
    return lstat(dir, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == 0 && (st.st_mode & 022) == 0;
}

static int cache_load(const char *path, sbx_seccomp_t **out)
{
    cleanup_close int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022) != 0 ||
        st.st_size == 0 || st.st_size % (off_t)sizeof(struct sock_filter) != 0 ||
        st.st_size > (off_t)(BPF_MAXINSNS * sizeof(struct sock_filter)))
        return -1;
    size_t len = (size_t)st.st_size;
    sbx_seccomp_t *sc = calloc(1, sizeof(*sc) + len);
    if (sc == NULL)
        return -1;
    struct sock_filter *insns = (struct sock_filter *)(sc + 1);
    if (pread(fd, insns, len, 0) != (ssize_t)len) {
        free(sc);
        return -1;
    }
    sc->prog.len = (unsigned short)(len / sizeof(struct sock_filter));
    sc->prog.filter = insns;
    *out = sc;
    return 0;
}

static void cache_store(const char *dir, const char *path, const sbx_seccomp_t *sc)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s/.tmp-%d", dir, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    bool ok = write_all(fd, sc->prog.filter, (size_t)sc->prog.len * sizeof(struct sock_filter)) == 0;
    close(fd);
    if (!ok || rename(tmp, path) < 0)
        unlink(tmp);
}

int sbx_seccomp_compile_cached(const char *profile, const char *cache_dir, sbx_seccomp_t **out,
                               hearth_error_t *err)
{
    char name[NAME_MAX + 1], path[PATH_MAX];
    bool use_cache = cache_dir != NULL && geteuid() == 0 && cache_name(profile, name, sizeof(name)) == 0;
    if (use_cache) {
        /* mkdir -p with 0700; an existing directory must already be safe. */
        char d[PATH_MAX];
        snprintf(d, sizeof(d), "%s", cache_dir);
        for (char *p = d + 1; *p; p++)
            if (*p == '/') {
                *p = '\0';
                mkdir(d, 0755);
                *p = '/';
            }
        mkdir(d, 0700);
        use_cache = safe_dir(cache_dir);
        snprintf(path, sizeof(path), "%s/%s", cache_dir, name);
        if (use_cache && cache_load(path, out) == 0)
            return 0;
    }
    if (sbx_seccomp_compile(profile, out, err) < 0)
        return -1;
    if (use_cache)
        cache_store(cache_dir, path, *out);
    return 0;
}
