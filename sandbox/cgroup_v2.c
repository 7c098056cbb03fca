/* cgroup v2 backend: one unified hierarchy; sandboxes are cloned straight
 * into their cgroup with clone3(CLONE_INTO_CGROUP), killed with cgroup.kill. */
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Enable our controllers in dir's cgroup.subtree_control unless already on.
 * Writing only what is missing keeps us from touching a cgroup we did not
 * create when its parent already delegates them (systemd hosts). */
static int enable_controllers(const char *dir, hearth_error_t *err)
{
    char path[512], cur[512];
    snprintf(path, sizeof(path), "%s/cgroup.subtree_control", dir);
    if (read_file_at(AT_FDCWD, path, cur, sizeof(cur)) < 0)
        return hearth_error_sys(err, "read %s", path);
    static const char *const ctrls[] = {"cpu", "memory", "pids"};
    for (size_t i = 0; i < sizeof(ctrls) / sizeof(ctrls[0]); i++) {
        bool on = false;
        for (char *p = strstr(cur, ctrls[i]); p != NULL; p = strstr(p + 1, ctrls[i])) {
            char after = p[strlen(ctrls[i])];
            if ((p == cur || p[-1] == ' ') && (after == ' ' || after == '\n' || after == '\0'))
                on = true;
        }
        if (on)
            continue;
        char req[32];
        snprintf(req, sizeof(req), "+%s", ctrls[i]);
        if (write_file_at(AT_FDCWD, path, req) < 0)
            return hearth_error_sys(err, "enable %s in %s", ctrls[i], path);
    }
    return 0;
}

static int v2_open_root(sbx_cgroups_t *cgs, hearth_error_t *err)
{
    /* mkdir -p the root, enabling controllers on the way down: the mount's
     * root first, then each level we walk through. */
    char path[256];
    snprintf(path, sizeof(path), "%s", cgs->hier_path[0]);
    size_t base_len = strlen(path) - strlen(cgs->root) - 1;
    char cur[256];
    snprintf(cur, sizeof(cur), "%.*s", (int)base_len, path);
    if (enable_controllers(cur, err) < 0)
        return -1;
    for (char *p = path + base_len + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char save = *p;
        *p = '\0';
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return hearth_error_sys(err, "mkdir %s", path);
        if (enable_controllers(path, err) < 0)
            return -1;
        *p = save;
        if (save == '\0')
            break;
    }
    cgs->hier_dirfd[0] = open(cgs->hier_path[0], O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cgs->hier_dirfd[0] < 0)
        return hearth_error_sys(err, "open %s", cgs->hier_path[0]);
    return 0;
}

static int v2_create(sbx_cgroups_t *cgs, sbx_cgroup_t *cg, hearth_error_t *err)
{
    if (mkdirat(cgs->hier_dirfd[0], cg->name, 0755) < 0)
        return hearth_error_sys(err, "mkdir %s/%s", cgs->hier_path[0], cg->name);
    cg->created = true;
    cg->dirfd[0] = openat(cgs->hier_dirfd[0], cg->name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cg->dirfd[0] < 0)
        return hearth_error_sys(err, "open %s/%s", cgs->hier_path[0], cg->name);
    return 0;
}

static int v2_set_limits(sbx_cgroup_t *cg, const sbx_cgroup_limits_t *lim, hearth_error_t *err)
{
    char buf[64];
    int fd = cg->dirfd[0];
    snprintf(buf, sizeof(buf), "%" PRIu64, lim->memory_bytes);
    if (write_file_at(fd, "memory.max", buf) < 0)
        return hearth_error_sys(err, "set memory.max of %s", cg->name);
    /* No swap: absent when the kernel has no swap accounting; then there
     * is no swap to limit either. */
    if (write_file_at(fd, "memory.swap.max", "0") < 0 && errno != ENOENT)
        return hearth_error_sys(err, "set memory.swap.max of %s", cg->name);
    if (lim->cpu_quota_us > 0)
        snprintf(buf, sizeof(buf), "%" PRIu64 " %" PRIu64, lim->cpu_quota_us, lim->cpu_period_us);
    else
        snprintf(buf, sizeof(buf), "max %" PRIu64, lim->cpu_period_us);
    if (write_file_at(fd, "cpu.max", buf) < 0)
        return hearth_error_sys(err, "set cpu.max of %s", cg->name);
    snprintf(buf, sizeof(buf), "%u", lim->pids);
    if (write_file_at(fd, "pids.max", buf) < 0)
        return hearth_error_sys(err, "set pids.max of %s", cg->name);
    return 0;
}

static int v2_clone_fd(sbx_cgroup_t *cg)
{
    return cg->dirfd[0];
}

static int v2_attach(sbx_cgroup_t *cg, pid_t pid, hearth_error_t *err)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%d", pid);
    if (write_file_at(cg->dirfd[0], "cgroup.procs", buf) < 0)
        return hearth_error_sys(err, "move %d into %s", pid, cg->name);
    return 0;
}

/* Wait until cgroup.procs is empty. cgroup.events notifications are rate
 * limited (~10 ms), so poll the file itself with a short, growing sleep. */
static int wait_empty(int dirfd, const char *name, hearth_error_t *err)
{
    char buf[64];
    long delay_us = 20;
    for (uint64_t start = now_ns(); now_ns() - start < 5000000000ULL;) {
        ssize_t n = read_file_at(dirfd, "cgroup.procs", buf, sizeof(buf));
        if (n < 0)
            return errno == ENOENT ? 0 : hearth_error_sys(err, "read cgroup.procs of %s", name);
        if (n == 0)
            return 0;
        struct timespec ts = {0, delay_us * 1000};
        nanosleep(&ts, NULL);
        if (delay_us < 2000)
            delay_us *= 2;
    }
    return hearth_error_set(err, EBUSY, "processes of %s still alive 5 s after kill", name);
}

static int v2_kill(sbx_cgroup_t *cg, hearth_error_t *err)
{
    if (write_file_at(cg->dirfd[0], "cgroup.kill", "1") < 0)
        return hearth_error_sys(err, "write cgroup.kill of %s", cg->name);
    return wait_empty(cg->dirfd[0], cg->name, err);
}

static int v2_cpu_ns(sbx_cgroup_t *cg, uint64_t *ns, hearth_error_t *err)
{
    uint64_t usec = 0;
    if (sbx_cg_read_cpu(cg, cg->dirfd[0], "cpu.stat", "usage_usec", &usec) < 0)
        return hearth_error_sys(err, "read cpu.stat of %s", cg->name);
    *ns = usec * 1000;
    return 0;
}

static int v2_stats(sbx_cgroup_t *cg, sbx_cgroup_stats_t *st, hearth_error_t *err)
{
    int fd = cg->dirfd[0];
    if (v2_cpu_ns(cg, &st->cpu_ns, err) < 0)
        return -1;
    /* memory.peak appeared in 5.19; fall back to current where absent. */
    if (sbx_cg_read_u64(fd, "memory.current", &st->memory_current) < 0)
        return hearth_error_sys(err, "read memory.current of %s", cg->name);
    if (sbx_cg_read_u64(fd, "memory.peak", &st->memory_peak) < 0)
        st->memory_peak = st->memory_current;
    if (sbx_cg_read_key(fd, "memory.events", "oom_kill", &st->oom_kills) < 0)
        return hearth_error_sys(err, "read memory.events of %s", cg->name);
    if (sbx_cg_read_key(fd, "pids.events", "max", &st->pids_max_hits) < 0)
        return hearth_error_sys(err, "read pids.events of %s", cg->name);
    return 0;
}

static int v2_destroy(sbx_cgroup_t *cg, hearth_error_t *err)
{
    if (!cg->created)
        return 0;
    char buf[16];
    if (read_file_at(cg->dirfd[0], "cgroup.procs", buf, sizeof(buf)) > 0 && v2_kill(cg, err) < 0)
        return -1;
    /* rmdir can briefly fail with EBUSY while the last task is released. */
    for (int i = 0; i < 1000; i++) {
        if (unlinkat(cg->cgs->hier_dirfd[0], cg->name, AT_REMOVEDIR) == 0 || errno == ENOENT) {
            cg->created = false;
            return 0;
        }
        if (errno != EBUSY)
            break;
        usleep(1000);
    }
    return hearth_error_sys(err, "rmdir %s/%s", cg->cgs->hier_path[0], cg->name);
}

static void v2_close_root(sbx_cgroups_t *cgs, bool remove)
{
    if (cgs->hier_dirfd[0] >= 0)
        close(cgs->hier_dirfd[0]);
    cgs->hier_dirfd[0] = -1;
    if (remove)
        rmdir(cgs->hier_path[0]);
}

const struct sbx_cgroup_ops sbx_cgroup_v2_ops = {
    .name = "v2",
    .clone_into = true,
    .open_root = v2_open_root,
    .create = v2_create,
    .set_limits = v2_set_limits,
    .clone_fd = v2_clone_fd,
    .attach = v2_attach,
    .kill = v2_kill,
    .stats = v2_stats,
    .cpu_ns = v2_cpu_ns,
    .destroy = v2_destroy,
    .close_root = v2_close_root,
};
