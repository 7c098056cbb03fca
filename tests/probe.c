/* probe — a tiny static program run inside sandboxes that reports what it
 * could and could not do, as key=value lines on stdout.
 *
 *   probe status        identity, capabilities, seccomp, pid namespace, network, filesystems
 *   probe syscalls      each call a sandbox must refuse: name=ok or name=ERRNO
 *   probe masked        sizes or errnos of masked /proc and /sys paths
 *   probe fds           fds other than 0-2, and escapes through /proc/self/fd/N/..
 *   probe tmpfill       write /tmp until it is full
 *   probe forkbomb      fork sleeping children until fork fails; exit 3
 *   probe memhog MB     allocate and touch MB MiB, 1 MiB at a time
 *   probe spin MS       burn MS ms of CPU, then print getrusage user+sys
 *   probe hang          ignore SIGTERM, leave a SIGTERM-ignoring grandchild, never end
 *   probe sleep MS      sleep, then exit 0
 *   probe exit N        exit with status N
 *   probe x32           a syscall through the x32 ABI (must be killed by SIGSYS)
 *   probe int80         getpid through int $0x80 (must be killed by SIGSYS)
 *
 * Built static with libc only, so it runs whatever the sandbox's rootfs.
 * Calls that change the caller (unshare, chroot, ptrace, personality) run
 * in a forked child so that one attempt cannot disturb the next.
 *
 * `syscalls` refuses to run in the host's initial user namespace: as host
 * root some of these calls would work and change the host. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <net/if.h>
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
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/time.h>
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

/* --- errno names ------------------------------------------------------------ */

#define E_(x) {x, #x}
static const struct {
    int code;
    const char *name;
} errno_names[] = {
    E_(EPERM),  E_(ENOENT),  E_(ESRCH),      E_(EINTR),        E_(EIO),        E_(ENXIO),     E_(E2BIG),
    E_(ENOEXEC), E_(EBADF),  E_(ECHILD),     E_(EAGAIN),       E_(ENOMEM),     E_(EACCES),    E_(EFAULT),
    E_(EBUSY),  E_(EEXIST),  E_(EXDEV),      E_(ENODEV),       E_(ENOTDIR),    E_(EISDIR),    E_(EINVAL),
    E_(ENFILE), E_(EMFILE),  E_(ENOTTY),     E_(EFBIG),        E_(ENOSPC),     E_(ESPIPE),    E_(EROFS),
    E_(EMLINK), E_(EPIPE),   E_(ERANGE),     E_(ENAMETOOLONG), E_(ENOSYS),     E_(ENOTEMPTY), E_(ELOOP),
    E_(ENODATA), E_(ENOTSOCK), E_(EPROTONOSUPPORT), E_(ESOCKTNOSUPPORT), E_(EOPNOTSUPP), E_(EAFNOSUPPORT),
    E_(EADDRINUSE), E_(EADDRNOTAVAIL), E_(ENETDOWN), E_(ENETUNREACH), E_(ECONNREFUSED), E_(ETIMEDOUT),
    E_(EDQUOT), E_(ENOKEY),  E_(ESTALE),     E_(EOVERFLOW),
};

static const char *errname(int e)
{
    static char buf[16];
    for (size_t i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
        if (errno_names[i].code == e)
            return errno_names[i].name;
    snprintf(buf, sizeof(buf), "E%d", e);
    return buf;
}

/* "ok" for rc >= 0, else the errno name. */
static const char *result(long rc, int e)
{
    return rc >= 0 ? "ok" : errname(e);
}

static void kv(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void kv(const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s=", key);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    int e = errno;
    close(fd);
    errno = e;
    return (ssize_t)len;
}

/* --- status --------------------------------------------------------------------- */

static void status_fields(void)
{
    static const char *const want[] = {"Uid", "Gid", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
                                       "NoNewPrivs", "Seccomp", "SigBlk", "SigIgn", NULL};
    char buf[8192];
    if (read_small("/proc/self/status", buf, sizeof(buf)) < 0) {
        kv("status_error", "%s", errname(errno));
        return;
    }
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        char *colon = strchr(line, ':');
        if (colon == NULL)
            continue;
        *colon = '\0';
        for (const char *const *w = want; *w; w++) {
            if (strcmp(line, *w) != 0)
                continue;
            char *v = colon + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            if (strcmp(*w, "Uid") == 0 || strcmp(*w, "Gid") == 0) {
                /* real, effective, saved, fs: report the first, and all */
                char first[32];
                snprintf(first, sizeof(first), "%.*s", (int)strcspn(v, "\t "), v);
                kv(strcmp(*w, "Uid") == 0 ? "uid" : "gid", "%s", first);
                for (char *t = v; *t; t++)
                    if (*t == '\t')
                        *t = ',';
                kv(strcmp(*w, "Uid") == 0 ? "uids" : "gids", "%s", v);
            } else {
                kv(*w, "%s", v);
            }
        }
    }
}

static bool is_pid_name(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static void status_pids(void)
{
    DIR *d = opendir("/proc");
    if (d == NULL) {
        kv("pids", "%s", errname(errno));
        return;
    }
    char list[1024] = "";
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!is_pid_name(de->d_name))
            continue;
        n++;
        size_t l = strlen(list);
        if (l + strlen(de->d_name) + 2 < sizeof(list))
            snprintf(list + l, sizeof(list) - l, "%s%s", l ? "," : "", de->d_name);
    }
    closedir(d);
    kv("pids", "%d", n);
    kv("pid_list", "%s", list);
}

static void status_net(void)
{
    char buf[8192], names[512] = "";
    if (read_small("/proc/net/dev", buf, sizeof(buf)) < 0) {
        kv("netifs", "%s", errname(errno));
    } else {
        int line_no = 0;
        for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
            if (++line_no <= 2) /* two header lines */
                continue;
            char *colon = strchr(line, ':');
            if (colon == NULL)
                continue;
            *colon = '\0';
            while (*line == ' ')
                line++;
            size_t l = strlen(names);
            snprintf(names + l, sizeof(names) - l, "%s%s", l ? "," : "", line);
        }
        kv("netifs", "%s", names);
    }

    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        kv("lo_up", "%s", errname(errno));
    else
        kv("lo_up", "%d", (ifr.ifr_flags & IFF_UP) ? 1 : 0);
    if (s >= 0)
        close(s);

    /* TCP over loopback: listen, connect, one byte each way. */
    const char *step = "socket";
    int l = -1, c = -1, a = -1;
    struct sockaddr_in sa;
    socklen_t slen = sizeof(sa);
    char byte = 'x';
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if ((l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        goto fail;
    step = "bind";
    if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        goto fail;
    step = "listen";
    if (listen(l, 1) < 0 || getsockname(l, (struct sockaddr *)&sa, &slen) < 0)
        goto fail;
    step = "connect";
    if ((c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        goto fail;
    step = "accept";
    if ((a = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0)
        goto fail;
    step = "transfer";
    if (write(c, &byte, 1) != 1 || read(a, &byte, 1) != 1 || write(a, &byte, 1) != 1 || read(c, &byte, 1) != 1)
        goto fail;
    kv("loopback", "ok");
    goto out;
fail:
    kv("loopback", "%s:%s", step, errname(errno));
out:
    if (a >= 0)
        close(a);
    if (c >= 0)
        close(c);
    if (l >= 0)
        close(l);

    /* Anything beyond loopback must be unreachable. */
    s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(53);
    sa.sin_addr.s_addr = inet_addr("192.0.2.1"); /* TEST-NET-1 */
    long rc = s < 0 ? -1 : connect(s, (struct sockaddr *)&sa, sizeof(sa));
    kv("outside", "%s", result(rc, errno));
    if (s >= 0)
        close(s);
}

static void status_files(void)
{
    int fd = open("/probe-test", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    kv("root_write", "%s", result(fd, errno));
    if (fd >= 0) {
        close(fd);
        unlink("/probe-test");
    }
    fd = open("/tmp/probe-test", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int e = errno;
    if (fd >= 0) {
        ssize_t n = write(fd, "hello\n", 6);
        e = errno;
        close(fd);
        unlink("/tmp/probe-test");
        if (n != 6)
            fd = -1;
    }
    kv("tmp_write", "%s", result(fd, e));
    struct statfs sf;
    if (statfs("/tmp", &sf) == 0) {
        kv("tmp_size", "%llu", (unsigned long long)sf.f_blocks * (unsigned long long)sf.f_bsize);
        kv("tmp_fstype", "%s", sf.f_type == 0x01021994 ? "tmpfs" : "other");
    } else {
        kv("tmp_size", "%s", errname(errno));
    }
    if (statfs("/", &sf) == 0)
        kv("root_readonly", "%d", (sf.f_flags & ST_RDONLY) ? 1 : 0);
    char cwd[512];
    kv("cwd", "%s", getcwd(cwd, sizeof(cwd)) ? cwd : errname(errno));
}

static void status_cgroup(void)
{
    char buf[4096];
    if (read_small("/proc/self/cgroup", buf, sizeof(buf)) < 0) {
        kv("cgroup", "%s", errname(errno));
        return;
    }
    for (char *p = buf; *p; p++)
        if (*p == '\n')
            *p = p[1] ? ';' : '\0';
    kv("cgroup", "%s", buf);
}

static int cmd_status(void)
{
    status_fields();
    kv("pid", "%d", (int)getpid());
    kv("ppid", "%d", (int)getppid());
    status_pids();
    char host[256];
    if (gethostname(host, sizeof(host)) == 0)
        kv("hostname", "%s", host);
    else
        kv("hostname", "%s", errname(errno));
    char map[256];
    if (read_small("/proc/self/uid_map", map, sizeof(map)) >= 0) {
        map[strcspn(map, "\n")] = '\0';
        /* collapse runs of blanks */
        char *w = map;
        for (char *r = map; *r; r++)
            if (*r != ' ' || (w > map && w[-1] != ' '))
                *w++ = *r;
        *w = '\0';
        kv("uid_map", "%s", map);
    }
    status_net();
    status_files();
    status_cgroup();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        kv("nofile", "%llu", (unsigned long long)rl.rlim_cur);
    return 0;
}

/* --- syscalls ------------------------------------------------------------------ */

/* In the initial user namespace the map is "0 0 4294967295". */
static bool in_host_userns(void)
{
    char map[256];
    if (read_small("/proc/self/uid_map", map, sizeof(map)) < 0)
        return true;
    unsigned long a, b, c;
    return sscanf(map, "%lu %lu %lu", &a, &b, &c) == 3 && a == 0 && b == 0 && c == 4294967295UL;
}

typedef long (*attempt_fn)(void);

static long try_unshare_user(void) { return unshare(CLONE_NEWUSER); }
static long try_unshare_ns(void) { return unshare(CLONE_NEWNS); }
static long try_unshare_net(void) { return unshare(CLONE_NEWNET); }

static long try_clone_newuser(void)
{
    long pid = syscall(SYS_clone, (unsigned long)(CLONE_NEWUSER | SIGCHLD), 0UL, 0UL, 0UL, 0UL);
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, 0);
    return pid;
}

static long try_clone_plain(void)
{
    long pid = syscall(SYS_clone, (unsigned long)SIGCHLD, 0UL, 0UL, 0UL, 0UL);
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, 0);
    return pid;
}

static long try_clone3(void)
{
    struct clone_args args;
    memset(&args, 0, sizeof(args));
    args.flags = CLONE_NEWUSER;
    args.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &args, sizeof(args));
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, 0);
    return pid;
}

static long try_mount(void) { return mount("none", "/tmp", "tmpfs", 0, NULL); }
static long try_umount2(void) { return umount2("/tmp", MNT_DETACH); }
static long try_pivot_root(void) { return syscall(SYS_pivot_root, "/tmp", "/tmp"); }
static long try_chroot(void) { return chroot("/tmp"); }

static long try_setns(void)
{
    int fd = open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    long rc = setns(fd, CLONE_NEWUTS);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

static long try_keyctl(void) { return syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3L /* session */, 0L); }
static long try_add_key(void) { return syscall(SYS_add_key, "user", "probe", "x", 1UL, -2L /* process */); }

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

static long try_ptrace_traceme(void) { return ptrace(PTRACE_TRACEME, 0, NULL, NULL); }

static long try_ptrace_attach_1(void)
{
    long rc = ptrace(PTRACE_ATTACH, 1, NULL, NULL);
    if (rc == 0) {
        int e = errno;
        waitpid(1, NULL, __WALL);
        ptrace(PTRACE_DETACH, 1, NULL, NULL);
        errno = e;
    }
    return rc;
}

static long try_process_vm_readv(void)
{
    char buf[8];
    struct iovec local = {buf, sizeof(buf)}, remote = {(void *)0x400000, sizeof(buf)};
    return syscall(SYS_process_vm_readv, 1, &local, 1UL, &remote, 1UL, 0UL);
}

static long try_userfaultfd(void) { return syscall(SYS_userfaultfd, O_CLOEXEC); }

static long try_io_uring_setup(void)
{
    unsigned char params[120]; /* struct io_uring_params */
    memset(params, 0, sizeof(params));
    return syscall(SYS_io_uring_setup, 1U, params);
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
    return syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0UL);
}

static long try_socket_alg(void) { return socket(AF_ALG, SOCK_SEQPACKET | SOCK_CLOEXEC, 0); }
static long try_socket_vsock(void) { return socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0); }
static long try_socketpair_alg(void)
{
    int sv[2];
    return socketpair(AF_ALG, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv);
}
static long try_socket_inet(void) { return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); }
static long try_socket_unix(void) { return socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0); }

static long try_tiocsti(void)
{
    char c = '#';
    return syscall(SYS_ioctl, 0, (unsigned long)TIOCSTI, &c);
}

static long try_tiocsti_high(void)
{
    /* The kernel truncates cmd to 32 bits; a filter comparing 64 bits
     * would let this through as TIOCSTI. */
    char c = '#';
    return syscall(SYS_ioctl, 0, 0x100005412UL, &c);
}

static long try_tioclinux(void)
{
    char c = 0;
    return syscall(SYS_ioctl, 0, (unsigned long)TIOCLINUX, &c);
}

static long try_open_by_handle_at(void)
{
    struct {
        unsigned int handle_bytes;
        int handle_type;
        unsigned char f_handle[8];
    } h = {8, 1, {2, 0, 0, 0, 0, 0, 0, 0}};
    return syscall(SYS_open_by_handle_at, AT_FDCWD, &h, O_RDONLY);
}

static long try_name_to_handle_at(void)
{
    struct {
        unsigned int handle_bytes;
        int handle_type;
        unsigned char f_handle[128];
    } h;
    int mnt;
    memset(&h, 0, sizeof(h));
    h.handle_bytes = sizeof(h.f_handle);
    return syscall(SYS_name_to_handle_at, AT_FDCWD, "/", &h, &mnt, 0);
}

static long try_init_module(void) { return syscall(SYS_init_module, NULL, 0UL, ""); }
static long try_finit_module(void) { return syscall(SYS_finit_module, 0, "", 0); }
static long try_delete_module(void) { return syscall(SYS_delete_module, "probe_no_such_module", 0); }
static long try_kexec_load(void) { return syscall(SYS_kexec_load, 0UL, 0UL, NULL, 0UL); }
static long try_swapon(void) { return syscall(SYS_swapon, "/tmp/probe-no-swap", 0); }
static long try_swapoff(void) { return syscall(SYS_swapoff, "/tmp/probe-no-swap"); }

static long try_reboot(void)
{
    /* A wrong second magic number: even where the call is allowed and
     * privileged it ends in EINVAL and does nothing. */
    return syscall(SYS_reboot, 0xfee1deadUL, 0x12345678UL, 0UL, NULL);
}

static long try_syslog(void) { return syscall(SYS_syslog, 10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0); }
static long try_acct(void) { return syscall(SYS_acct, "/tmp/probe-no-acct"); }
static long try_settimeofday(void) { return syscall(SYS_settimeofday, NULL, NULL); }
static long try_clock_settime(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return syscall(SYS_clock_settime, CLOCK_REALTIME, &ts);
}
static long try_personality(void) { return syscall(SYS_personality, 0x0400000UL /* READ_IMPLIES_EXEC */); }
static long try_iopl(void) { return syscall(SYS_iopl, 3); }
static long try_sethostname(void) { return sethostname("probe", 5); }

static long try_kcmp(void) { return syscall(SYS_kcmp, getpid(), 1, 0 /* KCMP_FILE */, 0UL, 0UL); }

static const struct {
    const char *name;
    attempt_fn fn;
    bool must_fail; /* false: must succeed */
} attempts[] = {
    {"unshare_user", try_unshare_user, true},
    {"unshare_ns", try_unshare_ns, true},
    {"unshare_net", try_unshare_net, true},
    {"clone_newuser", try_clone_newuser, true},
    {"clone3", try_clone3, true},
    {"mount", try_mount, true},
    {"umount2", try_umount2, true},
    {"pivot_root", try_pivot_root, true},
    {"setns", try_setns, true},
    {"chroot", try_chroot, true},
    {"keyctl", try_keyctl, true},
    {"add_key", try_add_key, true},
    {"bpf", try_bpf, true},
    {"ptrace_traceme", try_ptrace_traceme, true},
    {"ptrace_attach_1", try_ptrace_attach_1, true},
    {"process_vm_readv", try_process_vm_readv, true},
    {"kcmp", try_kcmp, true},
    {"userfaultfd", try_userfaultfd, true},
    {"io_uring_setup", try_io_uring_setup, true},
    {"perf_event_open", try_perf_event_open, true},
    {"socket_alg", try_socket_alg, true},
    {"socketpair_alg", try_socketpair_alg, true},
    {"socket_vsock", try_socket_vsock, true},
    {"ioctl_tiocsti", try_tiocsti, true},
    {"ioctl_tiocsti_high", try_tiocsti_high, true},
    {"ioctl_tioclinux", try_tioclinux, true},
    {"open_by_handle_at", try_open_by_handle_at, true},
    {"name_to_handle_at", try_name_to_handle_at, true},
    {"init_module", try_init_module, true},
    {"finit_module", try_finit_module, true},
    {"delete_module", try_delete_module, true},
    {"kexec_load", try_kexec_load, true},
    {"swapon", try_swapon, true},
    {"swapoff", try_swapoff, true},
    {"reboot", try_reboot, true},
    {"syslog", try_syslog, true},
    {"acct", try_acct, true},
    {"settimeofday", try_settimeofday, true},
    {"clock_settime", try_clock_settime, true},
    {"personality_read_implies_exec", try_personality, true},
    {"iopl", try_iopl, true},
    {"sethostname", try_sethostname, true},
    /* these must keep working */
    {"socket_inet", try_socket_inet, false},
    {"socket_unix", try_socket_unix, false},
    {"clone_plain", try_clone_plain, false},
};

/* Run fn in a child so that whatever it changes dies with it. */
static void attempt(const char *name, attempt_fn fn)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        kv(name, "probe-error:pipe:%s", errname(errno));
        return;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        kv(name, "probe-error:fork:%s", errname(errno));
        close(p[0]);
        close(p[1]);
        return;
    }
    if (pid == 0) {
        close(p[0]);
        errno = 0;
        long rc = fn();
        int r[2] = {rc >= 0 ? 0 : 1, errno};
        (void)!write(p[1], r, sizeof(r));
        _exit(0);
    }
    close(p[1]);
    int r[2];
    ssize_t n;
    do
        n = read(p[0], r, sizeof(r));
    while (n < 0 && errno == EINTR);
    close(p[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (n != (ssize_t)sizeof(r)) {
        if (WIFSIGNALED(st))
            kv(name, "killed:%d", WTERMSIG(st));
        else
            kv(name, "probe-error:no-result");
        return;
    }
    kv(name, "%s", r[0] == 0 ? "ok" : errname(r[1]));
}

static int cmd_syscalls(int argc, char **argv)
{
    if (in_host_userns() && getenv("PROBE_ON_HOST") == NULL) {
        fprintf(stderr, "probe: `syscalls` is for sandboxes: in the host's user namespace it could change "
                        "the host (set PROBE_ON_HOST=1 to insist)\n");
        return 2;
    }
    for (size_t i = 0; i < sizeof(attempts) / sizeof(attempts[0]); i++) {
        bool wanted = argc == 0;
        for (int j = 0; j < argc; j++)
            wanted |= strcmp(argv[j], attempts[i].name) == 0;
        if (wanted)
            attempt(attempts[i].name, attempts[i].fn);
    }
    return 0;
}

/* Which calls must fail: for tests that want the list from the probe. */
static int cmd_syscall_list(void)
{
    for (size_t i = 0; i < sizeof(attempts) / sizeof(attempts[0]); i++)
        kv(attempts[i].name, "%s", attempts[i].must_fail ? "deny" : "allow");
    return 0;
}

/* --- masked ---------------------------------------------------------------------- */

/* Bytes readable from path (up to 64 KiB), or the errno of open/read. */
static void masked_read(const char *key, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        kv(key, "%s", errname(errno));
        return;
    }
    char buf[4096];
    size_t total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            kv(key, "%s", errname(errno));
            close(fd);
            return;
        }
        if (n == 0 || (total += (size_t)n) >= 65536)
            break;
    }
    close(fd);
    kv(key, "%zu", total);
}

static void masked_list(const char *key, const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL) {
        kv(key, "%s", errname(errno));
        return;
    }
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    kv(key, "%d", n);
}

/* Open for writing only: a successful open is the failure being probed,
 * and nothing is ever written (a byte to sysrq-trigger acts on the host). */
static void masked_open_write(const char *key, const char *path)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    kv(key, "%s", result(fd, errno));
    if (fd >= 0)
        close(fd);
}

static int cmd_masked(void)
{
    masked_read("kcore", "/proc/kcore");
    masked_read("keys", "/proc/keys");
    masked_read("timer_list", "/proc/timer_list");
    masked_read("sched_debug", "/proc/sched_debug");
    masked_read("kallsyms", "/proc/kallsyms");
    masked_read("latency_stats", "/proc/latency_stats");
    masked_list("acpi", "/proc/acpi");
    masked_list("scsi", "/proc/scsi");
    masked_open_write("sysrq_trigger", "/proc/sysrq-trigger");
    masked_open_write("sys_kernel_hostname", "/proc/sys/kernel/hostname");
    masked_open_write("sys_vm_drop_caches", "/proc/sys/vm/drop_caches");
    masked_list("sys_firmware", "/sys/firmware");
    masked_list("sys", "/sys");
    masked_read("init_environ", "/proc/1/environ");
    char link[256];
    ssize_t n = readlink("/proc/1/exe", link, sizeof(link) - 1);
    kv("init_exe", "%s", n < 0 ? errname(errno) : "readable");
    masked_list("init_fd", "/proc/1/fd");
    return 0;
}

/* --- fds ---------------------------------------------------------------------------- */

static int cmd_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        kv("fds", "%s", errname(errno));
        return 1;
    }
    int self = dirfd(d), n = 0;
    int fds[256];
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!is_pid_name(de->d_name))
            continue;
        int fd = atoi(de->d_name);
        if (fd <= 2 || fd == self)
            continue;
        char path[64], target[512];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        ssize_t len = readlink(path, target, sizeof(target) - 1);
        target[len < 0 ? 0 : len] = '\0';
        char key[32];
        snprintf(key, sizeof(key), "fd.%d", fd);
        kv(key, "%s", target);
        if (n < 256)
            fds[n++] = fd;
    }
    closedir(d);
    kv("extra_fds", "%d", n);
    for (int i = 0; i < 3; i++) {
        char path[64], target[512], key[32];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", i);
        ssize_t len = readlink(path, target, sizeof(target) - 1);
        target[len < 0 ? 0 : len] = '\0';
        snprintf(key, sizeof(key), "stdio.%d", i);
        kv(key, "%s", len < 0 ? errname(errno) : target);
    }
    /* The CVE-2024-21626 shape: a leaked directory fd walked upwards. */
    for (int i = 0; i < n; i++) {
        char path[64], key[32];
        snprintf(path, sizeof(path), "/proc/self/fd/%d/..", fds[i]);
        snprintf(key, sizeof(key), "escape.%d", fds[i]);
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        kv(key, "%s", result(fd, errno));
        if (fd >= 0)
            close(fd);
    }
    /* Where "/.." leads: must be "/" itself. */
    struct stat root, up;
    if (stat("/", &root) == 0 && stat("/..", &up) == 0)
        kv("root_dotdot_same", "%d", root.st_ino == up.st_ino && root.st_dev == up.st_dev);
    char cwd[512];
    kv("cwd", "%s", getcwd(cwd, sizeof(cwd)) ? cwd : errname(errno));
    return 0;
}

/* --- resource faults -------------------------------------------------------------------- */

static void quiet_stdio(void)
{
    /* Whoever reads our stdout must see EOF when we end, not when the last
     * child does. */
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int i = 0; i < 3; i++)
        dup2(null, i);
    if (null > 2)
        close(null);
}

static int cmd_forkbomb(void)
{
    long n = 0;
    fflush(stdout);
    for (;;) {
        pid_t pid = fork();
        if (pid == 0) {
            quiet_stdio();
            for (;;)
                pause();
        }
        if (pid < 0) {
            int e = errno;
            kv("forked", "%ld", n);
            kv("errno", "%s", errname(e));
            return 3;
        }
        n++;
        if (n > 1000000) {
            kv("forked", "%ld", n);
            kv("errno", "none");
            return 4;
        }
    }
}

static int cmd_memhog(long mb)
{
    for (long i = 1; i <= mb; i++) {
        char *p = malloc(1 << 20);
        if (p == NULL) {
            kv("malloc_failed_at", "%ld", i);
            return 1;
        }
        memset(p, (int)(i & 0xff) | 1, 1 << 20);
        kv("allocated_mb", "%ld", i);
    }
    kv("done", "%ld", mb);
    return 0;
}

static uint64_t ts_ns(const struct timespec *ts)
{
    return (uint64_t)ts->tv_sec * 1000000000ULL + (uint64_t)ts->tv_nsec;
}

static uint64_t tv_ns(const struct timeval *tv)
{
    return (uint64_t)tv->tv_sec * 1000000000ULL + (uint64_t)tv->tv_usec * 1000ULL;
}

static int cmd_spin(long ms)
{
    struct timespec ts;
    volatile uint64_t sink = 0;
    for (;;) {
        for (int i = 0; i < 10000; i++)
            sink += (uint64_t)i;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        if (ts_ns(&ts) >= (uint64_t)ms * 1000000ULL)
            break;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    kv("cputime_ns", "%llu", (unsigned long long)ts_ns(&ts));
    kv("rusage_ns", "%llu", (unsigned long long)(tv_ns(&ru.ru_utime) + tv_ns(&ru.ru_stime)));
    return 0;
}

static int cmd_hang(void)
{
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        pid_t grandchild = fork();
        if (grandchild == 0) {
            quiet_stdio();
            for (;;)
                pause();
        }
        _exit(0); /* the grandchild is orphaned to the sandbox's init */
    }
    if (child > 0)
        waitpid(child, NULL, 0);
    kv("hanging", "%d", (int)getpid());
    for (;;)
        pause();
}

/* --- ABI escapes -------------------------------------------------------------------------- */

static int cmd_x32(void)
{
#if defined(__x86_64__)
    long rc = syscall(0x40000000L | 39 /* getpid */);
    kv("x32", "survived:%ld:%s", rc, rc < 0 ? errname(errno) : "ok");
    return 0;
#else
    kv("x32", "unsupported");
    return 0;
#endif
}

static int cmd_int80(void)
{
#if defined(__x86_64__)
    long rc;
    __asm__ volatile("int $0x80" : "=a"(rc) : "a"(20L /* i386 getpid */) : "memory", "rcx", "r11");
    kv("int80", "survived:%ld", rc);
    return 0;
#else
    kv("int80", "unsupported");
    return 0;
#endif
}

/* --- main ---------------------------------------------------------------------------------- */

static long arg_long(int argc, char **argv, int i, long def)
{
    if (i >= argc)
        return def;
    char *end;
    long v = strtol(argv[i], &end, 10);
    if (*end != '\0' || v < 0) {
        fprintf(stderr, "probe: `%s` is not a non-negative number\n", argv[i]);
        exit(2);
    }
    return v;
}

static int cmd_tmpfill(void)
{
    int fd = open("/tmp/probe-fill", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        kv("written", "0");
        kv("errno", "%s", errname(errno));
        return 1;
    }
    static char chunk[1 << 16];
    memset(chunk, 'x', sizeof(chunk));
    unsigned long long total = 0;
    int e = 0;
    for (;;) {
        ssize_t n = write(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            e = n < 0 ? errno : ENOSPC;
            break;
        }
        total += (unsigned long long)n;
        if (total > (64ULL << 30))
            break;
    }
    close(fd);
    unlink("/tmp/probe-fill");
    kv("written", "%llu", total);
    kv("errno", "%s", e ? errname(e) : "none");
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: probe status|syscalls [NAME...]|syscall-list|masked|fds|tmpfill|forkbomb|\n"
                    "             memhog MB|spin MS|hang|sleep MS|exit N|x32|int80\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "status") == 0)
        return cmd_status();
    if (strcmp(cmd, "syscalls") == 0)
        return cmd_syscalls(argc - 2, argv + 2);
    if (strcmp(cmd, "syscall-list") == 0)
        return cmd_syscall_list();
    if (strcmp(cmd, "masked") == 0)
        return cmd_masked();
    if (strcmp(cmd, "fds") == 0)
        return cmd_fds();
    if (strcmp(cmd, "tmpfill") == 0)
        return cmd_tmpfill();
    if (strcmp(cmd, "forkbomb") == 0)
        return cmd_forkbomb();
    if (strcmp(cmd, "memhog") == 0)
        return cmd_memhog(arg_long(argc, argv, 2, 256));
    if (strcmp(cmd, "spin") == 0)
        return cmd_spin(arg_long(argc, argv, 2, 100));
    if (strcmp(cmd, "hang") == 0)
        return cmd_hang();
    if (strcmp(cmd, "sleep") == 0) {
        long ms = arg_long(argc, argv, 2, 1000);
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
        return 0;
    }
    if (strcmp(cmd, "exit") == 0)
        return (int)arg_long(argc, argv, 2, 0);
    if (strcmp(cmd, "x32") == 0)
        return cmd_x32();
    if (strcmp(cmd, "int80") == 0)
        return cmd_int80();
    usage();
    return 2;
}
