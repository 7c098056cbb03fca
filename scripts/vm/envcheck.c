/* Run at boot in the scripts/vm-test guest (built static by vm-test): checks
 * that the kernel offers what hearth's v2 sandbox backend needs — a
 * cgroup2-only hierarchy with cpu, memory and pids, cgroup.kill, clone3 with
 * CLONE_INTO_CGROUP and all namespaces including a user namespace, and a root
 * that pivot_root can leave.  Prints "# vm-env: ..." lines; exits 1 if any
 * check failed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#define CG "/sys/fs/cgroup"
#define CHECK_CG CG "/hearth-vm-envcheck"

static int failed;

static void result(int ok, const char *what, const char *detail)
{
    printf("# vm-env: %s %s%s%s\n", ok ? "ok    " : "FAILED", what, detail[0] ? ": " : "",
           detail);
    if (!ok)
        failed = 1;
}

static int read_file(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    if (n > 0 && buf[n - 1] == '\n')
        buf[n - 1] = 0;
    return 0;
}

static int has_word(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == 0 || p[n] == ' '))
            return 1;
    return 0;
}

int main(void)
{
    char buf[4096], detail[512];
    struct statfs sfs;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!getenv("HEARTH_VM") || getppid() != 1) {
        fprintf(stderr, "envcheck: only for the scripts/vm-test guest\n");
        return 2;
    }

    /* a cgroup2 hierarchy at /sys/fs/cgroup and no v1 hierarchy anywhere */
    int v2 = statfs(CG, &sfs) == 0 && sfs.f_type == CGROUP2_SUPER_MAGIC;
    result(v2, "cgroup2 mounted at " CG, "");
    FILE *m = fopen("/proc/mounts", "re");
    int v1 = 0;
    char dev[256], dir[256], type[64];
    while (m && fscanf(m, "%255s %255s %63s %*[^\n]", dev, dir, type) == 3)
        if (strcmp(type, "cgroup") == 0)
            v1++;
    if (m)
        fclose(m);
    snprintf(detail, sizeof detail, "%d v1 hierarchies mounted", v1);
    result(v1 == 0, "no cgroup v1", v1 ? detail : "");

    /* controllers */
    if (read_file(CG "/cgroup.controllers", buf, sizeof buf) < 0)
        buf[0] = 0;
    const char *want[] = {"cpu", "memory", "pids"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(detail, sizeof detail, "controller %s", want[i]);
        result(has_word(buf, want[i]), detail, "");
    }

    /* the root must be leavable with pivot_root: not the initramfs rootfs */
    int rootfs = 0;
    m = fopen("/proc/mounts", "re");
    while (m && fscanf(m, "%255s %255s %63s %*[^\n]", dev, dir, type) == 3)
        if (strcmp(dir, "/") == 0 && strcmp(type, "rootfs") == 0)
            rootfs = 1;
    if (m)
        fclose(m);
    result(!rootfs && statfs("/", &sfs) == 0 && sfs.f_type == TMPFS_MAGIC, "root is a tmpfs", "");

    /* a cgroup of our own, with cgroup.kill */
    rmdir(CHECK_CG);
    if (mkdir(CHECK_CG, 0755) < 0) {
        snprintf(detail, sizeof detail, "mkdir: %s", strerror(errno));
        result(0, "create a cgroup", detail);
        return 1;
    }
    result(access(CHECK_CG "/cgroup.kill", W_OK) == 0, "cgroup.kill", "");
    int cgfd = open(CHECK_CG, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    /* clone3 into that cgroup with every namespace hearth uses */
    int pidfd = -1;
    struct clone_args ca = {
        .flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC |
                 CLONE_NEWNET | CLONE_NEWCGROUP | CLONE_INTO_CGROUP | CLONE_PIDFD,
        .pidfd = (uint64_t)(uintptr_t)&pidfd,
        .exit_signal = SIGCHLD,
        .cgroup = (uint64_t)cgfd,
    };
    long pid = syscall(SYS_clone3, &ca, sizeof ca);
    if (pid == 0) {
        /* pid 1 of a new pid namespace, in the cgroup, root of its cgroup ns */
        char cg[256];
        int fd = open("/proc/self/cgroup", O_RDONLY);
        ssize_t n = fd >= 0 ? read(fd, cg, sizeof cg - 1) : -1;
        int ok = getpid() == 1 && n > 0 && strncmp(cg, "0::/\n", 5) == 0;
        _exit(ok ? 0 : 3);
    }
    if (pid < 0) {
        snprintf(detail, sizeof detail, "%s", strerror(errno));
        result(0, "clone3 user+pid+mnt+uts+ipc+net+cgroup ns, CLONE_INTO_CGROUP", detail);
    } else {
        siginfo_t si = {0};
        int w = pidfd >= 0 ? waitid(P_PIDFD, pidfd, &si, WEXITED) : -1;
        snprintf(detail, sizeof detail, "child exit %d", si.si_status);
        int ok = w == 0 && si.si_code == CLD_EXITED && si.si_status == 0;
        result(ok, "clone3 user+pid+mnt+uts+ipc+net+cgroup ns, CLONE_INTO_CGROUP",
               ok ? "" : detail);
    }
    if (cgfd >= 0)
        close(cgfd);
    rmdir(CHECK_CG);

    /* an unprivileged user may create a user namespace too */
    pid = fork();
    if (pid == 0) {
        if (setgid(65534) < 0 || setuid(65534) < 0)
            _exit(2);
        _exit(unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID) == 0 ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    /* informational only: hearth creates its user namespaces as root */
    printf("# vm-env: note   unprivileged user namespaces %s\n",
           WIFEXITED(st) && WEXITSTATUS(st) == 0 ? "allowed" : "refused");

    return failed;
}
