/* cgroup v1 backend (hybrid hosts): one directory per hierarchy
 * (cpu, cpuacct, memory, pids, freezer — some may share a mount). A new
 * sandbox's init is moved in by pid before it runs anything; killing
 * freezes the cgroup first so that nothing can fork while we kill. */
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Index of the hierarchy that carries controller ctrl. */
static int hier_of(const sbx_cgroups_t *cgs, const char *ctrl)
{
    size_t n = strlen(ctrl);
    for (int i = 0; i < cgs->n_hier; i++) {
        for (const char *p = cgs->hier_ctrl[i]; p && *p;) {
            const char *c = strchr(p, ',');
            size_t len = c ? (size_t)(c - p) : strlen(p);
            if (len == n && strncmp(p, ctrl, n) == 0)
                return i;
            p = c ? c + 1 : NULL;
        }
    }
    return -1;
}

static int mkdir_p(char *path, hearth_error_t *err)
{
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char save = *p;
        *p = '\0';
        int rc = mkdir(path, 0755);
        int e = errno;
        *p = save;
        if (rc < 0 && e != EEXIST) {
            errno = e;
            return hearth_error_sys(err, "mkdir %.*s", (int)(p - path), path);
        }
        if (save == '\0')
            return 0;
    }
}

static int v1_open_root(sbx_cgroups_t *cgs, hearth_error_t *err)
{
    for (int i = 0; i < cgs->n_hier; i++) {
        /* Usually there already: one open instead of a mkdir per level. */
        cgs->hier_dirfd[i] = open(cgs->hier_path[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (cgs->hier_dirfd[i] >= 0)
            continue;
        char path[256];
        snprintf(path, sizeof(path), "%s", cgs->hier_path[i]);
        if (mkdir_p(path, err) < 0)
            return -1;
        cgs->hier_dirfd[i] = open(cgs->hier_path[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (cgs->hier_dirfd[i] < 0)
            return hearth_error_sys(err, "open %s", cgs->hier_path[i]);
    }
    /* Settings every sandbox shares are found out, or made, here once
     * rather than at each creation: memsw exists only with swap
     * accounting, and a new memory cgroup copies its parent's swappiness
     * (mem_cgroup_css_alloc), so 0 on our root keeps every sandbox from
     * swapping. */
    int mem = hier_of(cgs, "memory");
    if (mem >= 0) {
        cgs->v1_memsw = faccessat(cgs->hier_dirfd[mem], "memory.memsw.limit_in_bytes", F_OK, 0) == 0;
        char cur[16];
        cgs->v1_swappiness_inherited =
            (read_file_at(cgs->hier_dirfd[mem], "memory.swappiness", cur, sizeof(cur)) >= 0 && atoi(cur) == 0) ||
            write_file_at(cgs->hier_dirfd[mem], "memory.swappiness", "0") >= 0;
    }
    return 0;
}

static int v1_create(sbx_cgroups_t *cgs, sbx_cgroup_t *cg, hearth_error_t *err)
{
    for (int i = 0; i < cgs->n_hier; i++) {
        if (mkdirat(cgs->hier_dirfd[i], cg->name, 0755) < 0)
            return hearth_error_sys(err, "mkdir %s/%s", cgs->hier_path[i], cg->name);
        cg->created = true;
        cg->dirfd[i] = openat(cgs->hier_dirfd[i], cg->name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (cg->dirfd[i] < 0)
            return hearth_error_sys(err, "open %s/%s", cgs->hier_path[i], cg->name);
    }
    /* The kernel's defaults: no quota per 100 ms. */
    cg->cur = (sbx_cgroup_limits_t){.cpu_period_us = 100000};
    return 0;
}

static int ctrl_fd(sbx_cgroup_t *cg, const char *ctrl)
{
    int i = hier_of(cg->cgs, ctrl);
    return i < 0 ? -1 : cg->dirfd[i];
}

static int v1_set_limits(sbx_cgroup_t *cg, const sbx_cgroup_limits_t *lim, hearth_error_t *err)
{
    char buf[64];
    int mem = ctrl_fd(cg, "memory"), cpu = ctrl_fd(cg, "cpu"), pids = ctrl_fd(cg, "pids");
    snprintf(buf, sizeof(buf), "%" PRIu64, lim->memory_bytes);
    if (write_file_at(mem, "memory.limit_in_bytes", buf) < 0)
        return hearth_error_sys(err, "set memory.limit_in_bytes of %s", cg->name);
    /* Without swap accounting there is no swap to charge; swappiness 0
     * keeps the cgroup from swapping either way (see v1_open_root). */
    if (cg->cgs->v1_memsw && write_file_at(mem, "memory.memsw.limit_in_bytes", buf) < 0)
        return hearth_error_sys(err, "set memory.memsw.limit_in_bytes of %s", cg->name);
    if (!cg->cgs->v1_swappiness_inherited && write_file_at(mem, "memory.swappiness", "0") < 0 && errno != ENOENT)
        return hearth_error_sys(err, "set memory.swappiness of %s", cg->name);
    /* CPU bandwidth writes are among the dearest (they walk every CPU's
     * runqueue): only changes are written. */
    if (lim->cpu_period_us != cg->cur.cpu_period_us) {
        snprintf(buf, sizeof(buf), "%" PRIu64, lim->cpu_period_us);
        if (write_file_at(cpu, "cpu.cfs_period_us", buf) < 0)
            return hearth_error_sys(err, "set cpu.cfs_period_us of %s", cg->name);
        cg->cur.cpu_period_us = lim->cpu_period_us;
    }
    if (lim->cpu_quota_us != cg->cur.cpu_quota_us) {
        if (lim->cpu_quota_us > 0)
            snprintf(buf, sizeof(buf), "%" PRIu64, lim->cpu_quota_us);
        else
            snprintf(buf, sizeof(buf), "-1");
        if (write_file_at(cpu, "cpu.cfs_quota_us", buf) < 0)
            return hearth_error_sys(err, "set cpu.cfs_quota_us of %s", cg->name);
        cg->cur.cpu_quota_us = lim->cpu_quota_us;
    }
    snprintf(buf, sizeof(buf), "%u", lim->pids);
    if (write_file_at(pids, "pids.max", buf) < 0)
        return hearth_error_sys(err, "set pids.max of %s", cg->name);
    return 0;
}

static int v1_clone_fd(sbx_cgroup_t *cg)
{
    (void)cg;
    return -1;
}

static int v1_attach(sbx_cgroup_t *cg, pid_t pid, hearth_error_t *err)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%d", pid);
    for (int i = 0; i < cg->cgs->n_hier; i++)
        if (write_file_at(cg->dirfd[i], "cgroup.procs", buf) < 0)
            return hearth_error_sys(err, "move %d into %s/%s", pid, cg->cgs->hier_path[i], cg->name);
    return 0;
}

static void pause_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* The freezer reports FREEZING until every task has stopped. */
static int freeze(int fz, const char *state, const char *name, hearth_error_t *err)
{
    if (write_file_at(fz, "freezer.state", state) < 0)
        return hearth_error_sys(err, "write freezer.state %s of %s", state, name);
    if (strcmp(state, "THAWED") == 0)
        return 0;
    char buf[32];
    long delay = 20;
    for (uint64_t start = now_ns(); now_ns() - start < 2000000000ULL;) {
        if (read_file_at(fz, "freezer.state", buf, sizeof(buf)) < 0)
            return hearth_error_sys(err, "read freezer.state of %s", name);
        if (strncmp(buf, "FROZEN", 6) == 0)
            return 0;
        pause_us(delay);
        if (delay < 2000)
            delay *= 2;
    }
    return hearth_error_set(err, EBUSY, "%s did not freeze within 2 s", name);
}

/* SIGKILL every task listed; returns how many were listed. */
static int kill_listed(int dirfd)
{
    char buf[65536];
    if (read_file_at(dirfd, "cgroup.procs", buf, sizeof(buf)) < 0)
        return errno == ENOENT ? 0 : -1;
    int n = 0;
    for (char *p = buf; *p;) {
        char *end;
        long pid = strtol(p, &end, 10);
        if (end == p)
            break;
        if (pid > 0) {
            kill((pid_t)pid, SIGKILL);
            n++;
        }
        p = end;
        while (*p == '\n')
            p++;
    }
    return n;
}

static int v1_kill(sbx_cgroup_t *cg, hearth_error_t *err)
{
    int fz = ctrl_fd(cg, "freezer");
    /* Empty already (the caller killed init: sbx_kill): nothing to freeze. */
    int n = kill_listed(fz);
    if (n == 0)
        return 0;
    /* Frozen tasks cannot fork, so one pass over cgroup.procs sees every
     * task; SIGKILL is delivered once they are thawed. A task in the middle
     * of fork when the freeze began is caught by the later passes. */
    if (freeze(fz, "FROZEN", cg->name, err) < 0)
        return -1;
    n = kill_listed(fz);
    if (freeze(fz, "THAWED", cg->name, err) < 0)
        return -1;
    if (n < 0)
        return hearth_error_sys(err, "read cgroup.procs of %s", cg->name);
    long delay = 20;
    for (uint64_t start = now_ns(); now_ns() - start < 5000000000ULL;) {
        n = kill_listed(fz);
        if (n == 0)
            return 0;
        pause_us(delay);
        if (delay < 2000)
            delay *= 2;
    }
    return hearth_error_set(err, EBUSY, "processes of %s still alive 5 s after kill", cg->name);
}

static int v1_cpu_ns(sbx_cgroup_t *cg, uint64_t *ns, hearth_error_t *err)
{
    if (sbx_cg_read_cpu(cg, ctrl_fd(cg, "cpuacct"), "cpuacct.usage", NULL, ns) < 0)
        return hearth_error_sys(err, "read cpuacct.usage of %s", cg->name);
    return 0;
}

static int v1_stats(sbx_cgroup_t *cg, sbx_cgroup_stats_t *st, hearth_error_t *err)
{
    int mem = ctrl_fd(cg, "memory"), pids = ctrl_fd(cg, "pids");
    if (v1_cpu_ns(cg, &st->cpu_ns, err) < 0)
        return -1;
    if (sbx_cg_read_u64(mem, "memory.max_usage_in_bytes", &st->memory_peak) < 0)
        return hearth_error_sys(err, "read memory.max_usage_in_bytes of %s", cg->name);
    if (sbx_cg_read_u64(mem, "memory.usage_in_bytes", &st->memory_current) < 0)
        return hearth_error_sys(err, "read memory.usage_in_bytes of %s", cg->name);
    if (sbx_cg_read_key(mem, "memory.oom_control", "oom_kill", &st->oom_kills) < 0)
        return hearth_error_sys(err, "read memory.oom_control of %s", cg->name);
    if (sbx_cg_read_key(pids, "pids.events", "max", &st->pids_max_hits) < 0)
        return hearth_error_sys(err, "read pids.events of %s", cg->name);
    return 0;
}

static int v1_destroy(sbx_cgroup_t *cg, hearth_error_t *err)
{
    if (!cg->created)
        return 0;
    char buf[16];
    int fz = ctrl_fd(cg, "freezer");
    if (fz >= 0 && read_file_at(fz, "cgroup.procs", buf, sizeof(buf)) > 0 && v1_kill(cg, err) < 0)
        return -1;
    int rc = 0;
    for (int i = 0; i < cg->cgs->n_hier; i++) {
        if (cg->dirfd[i] < 0)
            continue;
        int tries = 0;
        while (unlinkat(cg->cgs->hier_dirfd[i], cg->name, AT_REMOVEDIR) < 0 && errno != ENOENT) {
            if (errno != EBUSY || ++tries > 1000) {
                rc = hearth_error_sys(err, "rmdir %s/%s", cg->cgs->hier_path[i], cg->name);
                break;
            }
            pause_us(1000);
        }
    }
    if (rc == 0)
        cg->created = false;
    return rc;
}

static void v1_close_root(sbx_cgroups_t *cgs, bool remove)
{
    for (int i = 0; i < cgs->n_hier; i++) {
        if (cgs->hier_dirfd[i] >= 0)
            close(cgs->hier_dirfd[i]);
        cgs->hier_dirfd[i] = -1;
        if (remove)
            rmdir(cgs->hier_path[i]);
    }
}

const struct sbx_cgroup_ops sbx_cgroup_v1_ops = {
    .name = "v1",
    .clone_into = false,
    .open_root = v1_open_root,
    .create = v1_create,
    .set_limits = v1_set_limits,
    .clone_fd = v1_clone_fd,
    .attach = v1_attach,
    .kill = v1_kill,
    .stats = v1_stats,
    .cpu_ns = v1_cpu_ns,
    .destroy = v1_destroy,
    .close_root = v1_close_root,
};
