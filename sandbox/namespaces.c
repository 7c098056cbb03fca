/* Creating a sandbox: clone its init into fresh pid, mount, uts and ipc
 * namespaces and build its root (or start from a copy of the mount
 * template, below), while its network namespace is made on a thread of
 * the parent or was made ahead (netns.c) and the parent, on cgroup v1,
 * makes its cgroups; enter those; then give it a user namespace and a
 * cgroup namespace and drop every privilege.
 *
 * Why the user namespace comes last: mounts copied into a mount namespace
 * owned by a new user namespace are "locked", and the kernel then refuses
 * a non-recursive bind of the host's / (it would reveal what /proc, /run
 * and friends cover). Building the root while still host root, in
 * namespaces owned by the initial user namespace, lets us bind only the
 * root filesystem, mknod a minimal /dev and mask /proc with few mounts.
 * The tenant then runs as root of a user namespace that owns none of the
 * other namespaces: it holds no capability over its own mounts, network or
 * hostname, and every capability is dropped anyway. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#define STAGE "/tmp"          /* private tmpfs in the new mount namespace */
#define NEWROOT STAGE "/root" /* where the sandbox's root is assembled */

/* The child reports a failed step to the parent and exits. */
__attribute__((noreturn)) static void child_fail(int sync, hearth_error_t *err)
{
    char buf[sizeof(err->msg) + 1];
    int n = snprintf(buf, sizeof(buf), "E%s", err->msg);
    (void)!send(sync, buf, (size_t)n, MSG_NOSIGNAL);
    _exit(1);
}

static int do_mount(const char *src, const char *dst, const char *type, unsigned long flags, const char *data,
                    hearth_error_t *err)
{
    if (mount(src, dst, type, flags, data) < 0)
        return hearth_error_sys(err, "mount %s on %s", src ? src : type ? type : "(remount)", dst);
    return 0;
}

/* Open a path inside the new root without following symlinks out of it
 * (CVE-2021-30465): the result is used through /proc/self/fd. */
static int open_in_root(int rootfd, const char *path, hearth_error_t *err)
{
    struct open_how how = {
        .flags = O_PATH | O_CLOEXEC,
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    while (*path == '/')
        path++;
    int fd = (int)syscall(SYS_openat2, rootfd, *path ? path : ".", &how, sizeof(how));
    if (fd < 0)
        return hearth_error_sys(err, "mount target /%s", path);
    return fd;
}

static int bind_into_root(int rootfd, const char *src, const char *target, bool readonly, hearth_error_t *err)
{
    char proc[64];
    int fd = open_in_root(rootfd, target, err);
    if (fd < 0)
        return -1;
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    int rc = do_mount(src, proc, NULL, MS_BIND | MS_REC, NULL, err);
    close(fd);
    if (rc < 0 || !readonly)
        return rc;
    /* Reopen: the old fd names the covered directory, not the new mount. */
    fd = open_in_root(rootfd, target, err);
    if (fd < 0)
        return -1;
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    rc = do_mount(NULL, proc, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL, err);
    close(fd);
    return rc;
}

/* Docker's masked and read-only /proc paths. */
static const char *const masked_files[] = {"kcore", "keys", "latency_stats", "timer_list", "timer_stats",
                                           "sched_debug", "kallsyms", "kpagecount", "kpageflags", NULL};
static const char *const masked_dirs[] = {"acpi", "asound", "scsi", "driver", NULL};
static const char *const readonly_dirs[] = {"bus", "fs", "irq", "sys", "sysrq-trigger", NULL};

/* A fresh /proc under root ("" once the root is ours), masked. */
static int setup_proc(const char *root, hearth_error_t *err)
{
    char path[128], null[128];
    snprintf(path, sizeof(path), "%s/proc", root);
    if (do_mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, err) < 0)
        return -1;
    snprintf(null, sizeof(null), "%s/dev/null", root);
    for (const char *const *p = masked_files; *p; p++) {
        snprintf(path, sizeof(path), "%s/proc/%s", root, *p);
        if (mount(null, path, NULL, MS_BIND, NULL) < 0 && errno != ENOENT)
            return hearth_error_sys(err, "mask /proc/%s", *p);
    }
    for (const char *const *p = masked_dirs; *p; p++) {
        snprintf(path, sizeof(path), "%s/proc/%s", root, *p);
        if (mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k") < 0 &&
            errno != ENOENT)
            return hearth_error_sys(err, "mask /proc/%s", *p);
    }
    for (const char *const *p = readonly_dirs; *p; p++) {
        snprintf(path, sizeof(path), "%s/proc/%s", root, *p);
        if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) {
            if (errno == ENOENT)
                continue;
            return hearth_error_sys(err, "bind /proc/%s", *p);
        }
        if (do_mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL,
                     err) < 0)
            return hearth_error_wrap(err, "make /proc/%s read-only", *p);
    }
    return 0;
}

static int setup_dev(hearth_error_t *err)
{
    static const struct {
        const char *name;
        unsigned minor;
    } nodes[] = {{"null", 3}, {"zero", 5}, {"full", 7}, {"random", 8}, {"urandom", 9}};
    static const struct {
        const char *name, *target;
    } links[] = {{"fd", "/proc/self/fd"},
                 {"stdin", "/proc/self/fd/0"},
                 {"stdout", "/proc/self/fd/1"},
                 {"stderr", "/proc/self/fd/2"}};
    if (do_mount("tmpfs", NEWROOT "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=16k,nr_inodes=32",
                 err) < 0)
        return -1;
    char path[128];
    for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
        snprintf(path, sizeof(path), NEWROOT "/dev/%s", nodes[i].name);
        if (mknod(path, S_IFCHR | 0666, makedev(1, nodes[i].minor)) < 0 || chmod(path, 0666) < 0)
            return hearth_error_sys(err, "mknod /dev/%s", nodes[i].name);
    }
    for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
        snprintf(path, sizeof(path), NEWROOT "/dev/%s", links[i].name);
        if (symlink(links[i].target, path) < 0)
            return hearth_error_sys(err, "symlink /dev/%s", links[i].name);
    }
    /* Nothing more may be created in /dev; device nodes stay writable. */
    return do_mount(NULL, NEWROOT "/dev", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC,
                    "mode=0755,size=16k,nr_inodes=32", err);
}

/* A host path to bind from, as an O_PATH fd. resolved: the caller checked
 * the path in its canonical form, and it must still be that: no symlink
 * anywhere on the way (a tenant with a writable mount could have made one
 * since the check). */
static int open_source(const char *path, int flags, bool resolved)
{
    if (!resolved)
        return open(path, O_PATH | O_CLOEXEC | flags);
    struct open_how how = {
        .flags = (uint64_t)(O_PATH | O_CLOEXEC | flags),
        .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    return (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
}

static int check_dirs(const char *rootfs, hearth_error_t *err)
{
    static const char *const needed[] = {"proc", "dev", "tmp"};
    for (size_t i = 0; i < 3; i++) {
        char path[128];
        struct stat st;
        snprintf(path, sizeof(path), NEWROOT "/%s", needed[i]);
        if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
            return hearth_error_set(err, 0, "rootfs %s has no /%s directory", rootfs, needed[i]);
    }
    return 0;
}

/* The sandbox's /tmp under root ("" once the root is ours), capped. */
static int mount_tmp(const char *root, const sbx_spec_t *spec, hearth_error_t *err)
{
    char path[128], opts[96];
    snprintf(path, sizeof(path), "%s/tmp", root);
    snprintf(opts, sizeof(opts), "mode=1777,size=%llu,nr_inodes=%llu", (unsigned long long)spec->tmp_bytes,
             (unsigned long long)(spec->tmp_bytes / 4096 + 64));
    return do_mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, opts, err);
}

/* Make NEWROOT our root: pivot_root(".", ".") stacks the old root on the
 * new one; detaching it leaves no path back to the host's tree. */
static int enter_root(hearth_error_t *err)
{
    if (chdir(NEWROOT) < 0)
        return hearth_error_sys(err, "chdir " NEWROOT);
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return hearth_error_sys(err, "pivot_root");
    if (umount2(".", MNT_DETACH) < 0)
        return hearth_error_sys(err, "detach the old root");
    if (chdir("/") < 0)
        return hearth_error_sys(err, "chdir /");
    return 0;
}

static int setup_root(const sbx_spec_t *spec, hearth_error_t *err)
{
    const char *rootfs = spec->rootfs ? spec->rootfs : "/";
    bool host_root = strcmp(rootfs, "/") == 0;

    /* Nothing we mount may leak back to the host, nor the host's to us. */
    if (do_mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL, err) < 0)
        return -1;
    /* The stage covers the host's /tmp: open the rootfs and the sources of
     * the bind mounts first (they may lie under /tmp), and mount them
     * through /proc/self/fd. */
    cleanup_close int root_src = open_source(rootfs, O_DIRECTORY, spec->paths_resolved);
    if (root_src < 0)
        return hearth_error_sys(err, "rootfs: open %s", rootfs);
    int srcs[spec->n_mounts + 1];
    for (size_t i = 0; i < spec->n_mounts; i++) {
        srcs[i] = open_source(spec->mounts[i].source, 0, spec->paths_resolved);
        if (srcs[i] < 0) {
            hearth_error_sys(err, "bind mount %s: open", spec->mounts[i].source);
            for (size_t j = 0; j < i; j++)
                close(srcs[j]);
            return -1;
        }
    }
    /* The child exits on any failure below: its fds go with it. */
    if (do_mount("tmpfs", STAGE, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700,size=4k", err) < 0)
        return -1;
    if (mkdir(NEWROOT, 0755) < 0)
        return hearth_error_sys(err, "mkdir " NEWROOT);
    /* The host's / alone, without /proc, /sys, /run, /dev or /tmp above it:
     * those are covered by our own or stay empty directories. A given
     * rootfs comes with whatever is mounted below it. */
    char root_path[64];
    snprintf(root_path, sizeof(root_path), "/proc/self/fd/%d", root_src);
    if (do_mount(root_path, NEWROOT, NULL, MS_BIND | (host_root ? 0 : MS_REC), NULL, err) < 0)
        return hearth_error_wrap(err, "rootfs %s", rootfs);
    if (check_dirs(rootfs, err) < 0)
        return -1;
    if (setup_dev(err) < 0)
        return hearth_error_wrap(err, "/dev");
    if (setup_proc(NEWROOT, err) < 0)
        return hearth_error_wrap(err, "/proc");
    if (mount_tmp(NEWROOT, spec, err) < 0)
        return hearth_error_wrap(err, "/tmp");

    if (spec->n_mounts > 0) {
        cleanup_close int rootfd = open(NEWROOT, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
            return hearth_error_sys(err, "open " NEWROOT);
        for (size_t i = 0; i < spec->n_mounts; i++) {
            char src[64];
            snprintf(src, sizeof(src), "/proc/self/fd/%d", srcs[i]);
            if (bind_into_root(rootfd, src, spec->mounts[i].target, spec->mounts[i].readonly, err) < 0)
                return hearth_error_wrap(err, "bind mount %s", spec->mounts[i].source);
            close(srcs[i]);
        }
    }
    if (do_mount(NULL, NEWROOT, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL, err) < 0)
        return hearth_error_wrap(err, "make the rootfs read-only");
    return enter_root(err);
}

/* --- the mount template -----------------------------------------------------
 * Most sandboxes run on the host's root without bind mounts of their own,
 * and their roots differ only in /proc (their pid namespace's) and /tmp
 * (their size). The spawner has a short-lived child build the rest once,
 * in a mount namespace of its own: the host's / alone, read-only, and
 * /dev, pivoted into, the old root detached. Such a sandbox starts from a
 * copy of that namespace (setns, then unshare) and adds /proc and /tmp:
 * no copy of the host's mount table, no pivot_root, and above all no
 * detach of an old root, whose unmount waits for an RCU grace period
 * (0.1 to 0.8 ms on the development machine, traced with ftrace). */

static int build_template(hearth_error_t *err)
{
    if (unshare(CLONE_NEWNS) < 0)
        return hearth_error_sys(err, "unshare mount namespace");
    if (do_mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL, err) < 0 ||
        do_mount("tmpfs", STAGE, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700,size=4k", err) < 0)
        return -1;
    if (mkdir(NEWROOT, 0755) < 0)
        return hearth_error_sys(err, "mkdir " NEWROOT);
    if (do_mount("/", NEWROOT, NULL, MS_BIND, NULL, err) < 0 || check_dirs("/", err) < 0)
        return -1;
    if (setup_dev(err) < 0)
        return hearth_error_wrap(err, "/dev");
    if (do_mount(NULL, NEWROOT, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL, err) < 0)
        return hearth_error_wrap(err, "make the rootfs read-only");
    return enter_root(err);
}

int sbx_template_open(int *fd_out, hearth_error_t *err)
{
    *fd_out = -1;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return hearth_error_sys(err, "socketpair");
    pid_t pid = fork();
    if (pid < 0) {
        hearth_error_sys(err, "fork");
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    if (pid == 0) {
        close(sv[0]);
        hearth_error_t e = {0};
        if (build_template(&e) < 0)
            child_fail(sv[1], &e);
        char c;
        /* Hold the namespace until the parent has opened it. */
        if (send(sv[1], "T", 1, MSG_NOSIGNAL) == 1)
            (void)!recv(sv[1], &c, 1, 0);
        _exit(0);
    }
    close(sv[1]);
    char msg[sizeof(err->msg) + 1];
    ssize_t n = sbx_recv(sv[0], msg, sizeof(msg) - 1, 0);
    int rc = 0;
    if (n == 1 && msg[0] == 'T') {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)pid);
        *fd_out = open(path, O_RDONLY | O_CLOEXEC);
        if (*fd_out < 0)
            rc = hearth_error_sys(err, "open %s", path);
    } else if (n > 1 && msg[0] == 'E') {
        msg[n] = '\0';
        rc = hearth_error_set(err, 0, "%s", msg + 1);
    } else {
        rc = hearth_error_set(err, 0, "the template's builder died");
    }
    close(sv[0]);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    return rc;
}

bool sbx_template_fits(const sbx_spec_t *spec)
{
    return (spec->rootfs == NULL || strcmp(spec->rootfs, "/") == 0) && spec->n_mounts == 0;
}

/* A copy of the template, with this sandbox's /proc and /tmp. */
static int setup_root_from(int template_fd, const sbx_spec_t *spec, hearth_error_t *err)
{
    /* setns moves our root and cwd to the template's root. */
    if (setns(template_fd, CLONE_NEWNS) < 0)
        return hearth_error_sys(err, "enter the mount template");
    close(template_fd);
    if (unshare(CLONE_NEWNS) < 0)
        return hearth_error_sys(err, "unshare mount namespace");
    if (setup_proc("", err) < 0)
        return hearth_error_wrap(err, "/proc");
    if (mount_tmp("", spec, err) < 0)
        return hearth_error_wrap(err, "/tmp");
    if (chdir("/") < 0)
        return hearth_error_sys(err, "chdir /");
    return 0;
}

static int wait_byte(int sync, char want, hearth_error_t *err)
{
    char c;
    ssize_t n = sbx_recv(sync, &c, 1, 0);
    if (n != 1 || c != want)
        return hearth_error_set(err, n < 0 ? errno : 0, "parent went away during set-up");
    return 0;
}

/* The parent's 'N': the network namespace it made for us, then (v1) the
 * cgroups to join. Joined first, so that everything from here on, the
 * sandbox's own processes above all, is limited and accounted there. */
static int enter_net_and_cgroups(const sbx_spawn_req_t *req, int sync, hearth_error_t *err)
{
    int fds[1 + SBX_CG_MAX_HIER], n_fds;
    char c = 0;
    ssize_t n = sbx_recv_msg(sync, &c, 1, fds, 1 + SBX_CG_MAX_HIER, &n_fds);
    int want = 1 + (req->into_cgroup ? 0 : req->n_cg_fds);
    int rc = 0;
    if (n != 1 || c != 'N')
        rc = hearth_error_set(err, n < 0 ? errno : 0, "parent went away during set-up");
    else if (n_fds != want || (!req->into_cgroup && req->n_cg_fds < 1))
        rc = hearth_error_set(err, 0, "expected %d namespace and cgroup fds, got %d", want, n_fds);
    /* v1: writing "0" (the calling thread) to `tasks` lets the kernel skip
     * the global threadgroup rwsem that a write of a pid to cgroup.procs
     * takes, whose RCU grace period costs milliseconds here (FIELD-NOTES:
     * up to 17 ms). We are single-threaded, so the thread is the whole
     * process. */
    for (int i = 1; rc == 0 && i < n_fds; i++)
        if (write_file_at(fds[i], "tasks", "0") < 0)
            rc = hearth_error_sys(err, "join cgroup");
    /* Still host root in the initial user namespace, which owns the new
     * network namespace as it would have owned one made by clone3. */
    if (rc == 0 && setns(fds[0], CLONE_NEWNET) < 0)
        rc = hearth_error_sys(err, "enter the network namespace");
    for (int i = 0; i < n_fds; i++)
        close(fds[i]);
    return rc;
}

void sbx_signal_default(int sig)
{
    /* The kernel's struct sigaction: handler, flags, restorer, mask. */
    struct {
        void (*handler)(int);
        unsigned long flags;
        void (*restorer)(void);
        uint64_t mask;
    } act = {.handler = SIG_DFL};
    syscall(SYS_rt_sigaction, sig, &act, NULL, sizeof(act.mask));
}

/* What a child does first, before it knows its spec. */
static void child_prepare(const int *changed_signals, int sync)
{
    /* Whatever our creator ignored, caught or blocked, init and the
     * processes it starts begin from the defaults: a system call for each
     * signal, unless the creator said which few it changed (the spawner). */
    if (changed_signals != NULL) {
        for (const int *sig = changed_signals; *sig; sig++)
            sbx_signal_default(*sig);
    } else {
        for (int sig = 1; sig < NSIG; sig++)
            if (sig != SIGKILL && sig != SIGSTOP)
                sbx_signal_default(sig);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* Die with whoever created us, so a crashed daemon leaves nothing. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) {
        hearth_error_t err = {0};
        hearth_error_sys(&err, "PR_SET_PDEATHSIG");
        child_fail(sync, &err);
    }
}

/* The rest, from its root on: in every namespace but the mount, network,
 * user and cgroup ones, which it makes or enters here. */
__attribute__((noreturn)) static void child_setup(const sbx_spawn_req_t *req, int sync)
{
    hearth_error_t err = {0};
    const sbx_spec_t *spec = req->spec;

    /* The root is built while the parent makes our network namespace and
     * (v1) our cgroups: nothing of the tenant's runs before both are ours
     * (enter_net_and_cgroups), and nothing here depends on them. */
    if ((req->mount_template >= 0 ? setup_root_from(req->mount_template, spec, &err) : setup_root(spec, &err)) < 0)
        child_fail(sync, &err);
    if (sethostname(spec->hostname, strlen(spec->hostname)) < 0) {
        hearth_error_sys(&err, "sethostname");
        child_fail(sync, &err);
    }
    if (enter_net_and_cgroups(req, sync, &err) < 0)
        child_fail(sync, &err);

    if (unshare(CLONE_NEWUSER) < 0) {
        hearth_error_sys(&err, "unshare user namespace");
        child_fail(sync, &err);
    }
    if (send(sync, "U", 1, MSG_NOSIGNAL) != 1 || wait_byte(sync, 'G', &err) < 0) {
        hearth_error_sys(&err, "uid map handshake");
        child_fail(sync, &err);
    }
    /* The parent has written our uid/gid maps, and we are in our cgroup:
     * the cgroup namespace's root is that cgroup from now on. */
    if (unshare(CLONE_NEWCGROUP) < 0) {
        hearth_error_sys(&err, "unshare cgroup namespace");
        child_fail(sync, &err);
    }
    /* Become root of the user namespace for real: until now our kuid is
     * still the host's 0, and the host's supplementary groups are ours. */
    /* Raw system calls: our creator may have other threads (netns.c), and
     * glibc would then make every thread it knows of change ids too,
     * signalling threads that do not exist in this process and waiting
     * for them forever. Only we exist here. */
    if (syscall(SYS_setgroups, 0, NULL) < 0 || syscall(SYS_setresgid, 0, 0, 0) < 0 ||
        syscall(SYS_setresuid, 0, 0, 0) < 0) {
        hearth_error_sys(&err, "switch to the sandbox's uid");
        child_fail(sync, &err);
    }
    /* A uid change clears the parent-death signal: set it again. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) {
        hearth_error_sys(&err, "PR_SET_PDEATHSIG");
        child_fail(sync, &err);
    }
    if (sbx_caps_drop_all(&err) < 0)
        child_fail(sync, &err);
    /* Non-dumpable: processes in the sandbox may not ptrace us or open
     * /proc/1/fd, /proc/1/exe or /proc/1/mem. */
    if (prctl(PR_SET_DUMPABLE, 0) < 0) {
        hearth_error_sys(&err, "PR_SET_DUMPABLE");
        child_fail(sync, &err);
    }
    sbx_init_main(sync, req->seccomp, spec->nofile);
}

static int write_map(pid_t pid, const char *file, uid_t id, hearth_error_t *err)
{
    char path[64], map[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", pid, file);
    snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)id);
    if (write_file_at(AT_FDCWD, path, map) < 0)
        return hearth_error_sys(err, "write %s", path);
    return 0;
}

/* Close every fd from 3 up but a and b. */
static void close_all_but(int a, int b)
{
    if (a > b) {
        int t = a;
        a = b;
        b = t;
    }
    int from = 3;
    for (int keep = 0; keep < 2; keep++) {
        int fd = keep == 0 ? a : b;
        if (fd < from)
            continue;
        if (fd > from)
            syscall(SYS_close_range, from, fd - 1, 0);
        from = fd + 1;
    }
    syscall(SYS_close_range, from, ~0U, 0);
}

/* Clone a child into new pid, uts and ipc namespaces and the given
 * extra ones (flags), with a socket to it. In the parent: its pid (sp's
 * pid, pidfd and sock set); in the child: 0, *child_sock its end. */
static long clone_child(uint64_t flags, int cgroup_fd, sbx_spawning_t *sp, int *child_sock, hearth_error_t *err)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return hearth_error_sys(err, "socketpair");
    int pidfd = -1;
    struct clone_args args = {
        .flags = CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_PIDFD | flags,
        .pidfd = (uint64_t)(uintptr_t)&pidfd,
        .exit_signal = SIGCHLD,
    };
    if (flags & CLONE_INTO_CGROUP)
        args.cgroup = (uint64_t)cgroup_fd;
    /* clone3 without a stack behaves like fork: the child runs on a copy
     * of our memory (the caller's request stays valid there). */
    long pid = syscall(SYS_clone3, &args, sizeof(args));
    if (pid < 0) {
        hearth_error_sys(err, "clone3");
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    if (pid == 0) {
        close(sv[0]);
        *child_sock = sv[1];
        return 0;
    }
    close(sv[1]);
    sp->pid = (pid_t)pid;
    sp->pidfd = pidfd;
    sp->sock = sv[0];
    return pid;
}

int sbx_spawn_begin(const sbx_spawn_req_t *req, sbx_spawning_t *sp, hearth_error_t *err)
{
    /* From the template, the child makes its own (a copy of that). */
    uint64_t flags = req->mount_template < 0 ? CLONE_NEWNS : 0;
    if (req->into_cgroup)
        flags |= CLONE_INTO_CGROUP;
    int sock;
    long pid = clone_child(flags, req->cg_fds[0], sp, &sock, err);
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* First: our copies of the creator's fds (other sandboxes' pidfds
         * and control sockets, in the spawner) would keep their files
         * open after their owners close them. */
        close_all_but(sock, req->mount_template);
        child_prepare(req->changed_signals, sock);
        child_setup(req, sock);
    }
    return sbx_spawn_begin_given(req, sp, err);
}

/* The parent's side of a child that has its request: its network
 * namespace, and its release unless the cgroups come later. */
int sbx_spawn_begin_given(const sbx_spawn_req_t *req, sbx_spawning_t *sp, hearth_error_t *err)
{
    sp->uid = req->uid;
    sp->n_cg = req->into_cgroup ? 0 : req->n_cg_fds;
    sp->mapped = false;
    sp->net = NULL;
    /* Its network namespace: from the stock, or made now beside it (netns.c). */
    if (sbx_netns_job_start(req->netns, &sp->net, err) < 0) {
        sbx_spawn_abort(sp);
        return -1;
    }
    if (!req->cg_later)
        return sbx_spawn_release(sp, req->cg_fds, req->into_cgroup ? 0 : req->n_cg_fds, err);
    return 0;
}

/* --- children cloned ahead ----------------------------------------------------
 * Cloning is the dearest step of a creation the caller waits for (a fork
 * of the spawner, then the child's first copy-on-write faults: 0.3 to
 * 0.4 ms of a cold start on the development machine, traced). Nothing of
 * it depends on the request where the cgroups are joined later (v1): a
 * child cloned while the spawner is idle waits for its request, which
 * comes as [int32 cgroup fd count][the spawner's request]; decode turns
 * that into what a child cloned for it would have been given. */

__attribute__((noreturn)) static void ahead_main(int sync, int keep_fd, const int *changed_signals,
                                                 sbx_ahead_decode_fn decode)
{
    hearth_error_t err = {0};
    /* Nothing of the spawner's (network namespaces of its stock above all)
     * stays pinned while we wait. */
    close_all_but(sync, keep_fd);
    child_prepare(changed_signals, sync);
    char *buf = malloc(SBX_MAX_MSG + 4);
    if (buf == NULL) {
        hearth_error_set(&err, ENOMEM, "child cloned ahead");
        child_fail(sync, &err);
    }
    ssize_t n = sbx_recv(sync, buf, SBX_MAX_MSG + 4, 0);
    if (n <= 0)
        _exit(0); /* let go unused */
    int32_t n_cg;
    sbx_spawn_req_t req;
    if (n < 4 || (memcpy(&n_cg, buf, 4), decode(buf + 4, (size_t)n - 4, n_cg, &req, &err) < 0)) {
        if (err.msg[0] == '\0')
            hearth_error_set(&err, 0, "child cloned ahead: malformed request");
        child_fail(sync, &err);
    }
    /* What a clone for this request would have made in passing. */
    if (req.mount_template < 0 && unshare(CLONE_NEWNS) < 0) {
        hearth_error_sys(&err, "unshare mount namespace");
        child_fail(sync, &err);
    }
    child_setup(&req, sync);
}

int sbx_spawn_ahead(const int *changed_signals, sbx_ahead_decode_fn decode, int keep_fd, sbx_spawning_t *ahead,
                    hearth_error_t *err)
{
    *ahead = (sbx_spawning_t){.pid = 0, .pidfd = -1, .sock = -1};
    int sock;
    long pid = clone_child(0, -1, ahead, &sock, err);
    if (pid < 0)
        return -1;
    if (pid == 0)
        ahead_main(sock, keep_fd, changed_signals, decode);
    return 0;
}

int sbx_spawn_give(sbx_spawning_t *ahead, int n_cg_fds, const void *msg, size_t len, sbx_spawning_t *sp,
                   hearth_error_t *err)
{
    *sp = *ahead;
    *ahead = (sbx_spawning_t){.pid = 0, .pidfd = -1, .sock = -1};
    int32_t n_cg = n_cg_fds;
    struct iovec iov[2] = {{.iov_base = &n_cg, .iov_len = 4}, {.iov_base = (void *)msg, .iov_len = len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    if (sendmsg(sp->sock, &mh, MSG_NOSIGNAL) != (ssize_t)(len + 4)) {
        hearth_error_sys(err, "hand the request to a child cloned ahead");
        sbx_spawn_abort(sp);
        return -1;
    }
    return 0;
}

int sbx_spawn_release(sbx_spawning_t *sp, const int *cg_fds, int n_cg_fds, hearth_error_t *err)
{
    if (n_cg_fds != sp->n_cg || n_cg_fds > SBX_CG_MAX_HIER) {
        hearth_error_set(err, EINVAL, "sandbox set-up: %d cgroup fds for %d hierarchies", n_cg_fds, sp->n_cg);
        sbx_spawn_abort(sp);
        return -1;
    }
    int netfd = sbx_netns_job_finish(sp->net, err);
    sp->net = NULL;
    if (netfd < 0) {
        sbx_spawn_abort(sp);
        return -1;
    }
    int fds[1 + SBX_CG_MAX_HIER] = {netfd};
    for (int i = 0; i < n_cg_fds; i++)
        fds[1 + i] = cg_fds[i];
    ssize_t n = sbx_send_msg(sp->sock, "N", 1, fds, 1 + n_cg_fds);
    close(netfd);
    if (n != 1) {
        hearth_error_sys(err, "hand the namespaces to sandbox init");
        /* Most likely the child failed first: its reason is better. */
        char msg[sizeof(err->msg) + 1];
        ssize_t m = sbx_recv(sp->sock, msg, sizeof(msg) - 1, MSG_DONTWAIT);
        if (m > 1 && msg[0] == 'E') {
            msg[m] = '\0';
            hearth_error_set(err, 0, "%s", msg + 1);
        }
        sbx_spawn_abort(sp);
        return -1;
    }
    return 0;
}

void sbx_spawn_abort(sbx_spawning_t *sp)
{
    if (sp->net != NULL) {
        hearth_error_t ignore;
        int fd = sbx_netns_job_finish(sp->net, &ignore);
        if (fd >= 0)
            close(fd);
        sp->net = NULL;
    }
    if (sp->sock >= 0)
        close(sp->sock);
    if (sp->pidfd >= 0) {
        syscall(SYS_pidfd_send_signal, sp->pidfd, SIGKILL, NULL, 0);
        /* Reaped here unless SIGCHLD is ignored (the spawner): then the
         * kernel reaps it and this waits for its end. By pidfd, not pid:
         * a child that died long ago (one cloned ahead) may have left its
         * pid to another child of ours, a sandbox's init. */
        siginfo_t info;
        while (waitid((idtype_t)P_PIDFD, (id_t)sp->pidfd, &info, WEXITED) < 0 && errno == EINTR)
            ;
        close(sp->pidfd);
    }
    sp->pidfd = sp->sock = -1;
}

int sbx_spawn_advance(sbx_spawning_t *sp, sbx_spawn_res_t *res, hearth_error_t *err)
{
    char msg[sizeof(err->msg) + 1];
    ssize_t n = sbx_recv(sp->sock, msg, sizeof(msg) - 1, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    if (n == 1 && msg[0] == 'U') {
        /* The child has its user namespace: map root inside to our uid. */
        if (write_map(sp->pid, "uid_map", sp->uid, err) < 0 || write_map(sp->pid, "gid_map", sp->uid, err) < 0)
            goto fail;
        if (send(sp->sock, "G", 1, MSG_NOSIGNAL) != 1) {
            hearth_error_sys(err, "release sandbox init");
            goto fail;
        }
        sp->mapped = true;
        return 0;
    }
    if (n == 1 && msg[0] == 'K' && sp->mapped) {
        res->pid = sp->pid;
        res->pidfd = sp->pidfd;
        res->ctl = sp->sock;
        sp->pidfd = sp->sock = -1;
        return 1;
    }
    if (n > 1 && msg[0] == 'E') {
        msg[n] = '\0';
        hearth_error_set(err, 0, "%s", msg + 1);
    } else {
        hearth_error_set(err, 0, "sandbox init died during set-up");
    }
fail:
    sbx_spawn_abort(sp);
    return -1;
}

int sbx_spawn_local(const sbx_spawn_req_t *req, sbx_spawn_res_t *res, hearth_error_t *err)
{
    sbx_spawning_t sp;
    if (sbx_spawn_begin(req, &sp, err) < 0)
        return -1;
    int rc;
    while ((rc = sbx_spawn_advance(&sp, res, err)) == 0)
        ;
    return rc > 0 ? 0 : -1;
}
