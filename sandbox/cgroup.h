/* One interface to cgroups; cgroup_v1.c and cgroup_v2.c behind it.
 * Callers never test which backend is in use. hearth only ever touches
 * cgroups under its own root (`cgroup_root`, default "hearth"). */
#ifndef HEARTH_CGROUP_H
#define HEARTH_CGROUP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/util.h"

typedef struct sbx_cgroups sbx_cgroups_t; /* the backend plus our root under each hierarchy */
typedef struct sbx_cgroup sbx_cgroup_t;   /* one sandbox's cgroup */

typedef struct sbx_cgroup_limits {
    uint64_t memory_bytes; /* hard limit; swap disabled */
    uint64_t cpu_quota_us; /* per cpu_period_us; 0: unlimited */
    uint64_t cpu_period_us;
    uint32_t pids;
} sbx_cgroup_limits_t;

typedef struct sbx_cgroup_stats {
    uint64_t cpu_ns;
    uint64_t memory_peak;
    uint64_t memory_current;
    uint64_t oom_kills;
    uint64_t pids_max_hits;
} sbx_cgroup_stats_t;

struct sbx_cgroup_ops {
    const char *name; /* "v1" or "v2" */
    bool clone_into;  /* processes are cloned straight into the cgroup (v2), which must then exist
                         before the clone; else they join it themselves, after (v1) */
    /* Create our root (and, on v2, enable the controllers for it) and
     * remove every cgroup a killed predecessor left under it. */
    int (*open_root)(sbx_cgroups_t *cgs, hearth_error_t *err);
    /* mkdir the sandbox cgroup in every hierarchy we use. */
    int (*create)(sbx_cgroups_t *cgs, sbx_cgroup_t *cg, hearth_error_t *err);
    int (*set_limits)(sbx_cgroup_t *cg, const sbx_cgroup_limits_t *lim, hearth_error_t *err);
    /* v2: an O_DIRECTORY fd for clone3(CLONE_INTO_CGROUP); v1: -1. */
    int (*clone_fd)(sbx_cgroup_t *cg);
    /* Move a process in (v1; on v2 only used when clone_fd is -1). */
    int (*attach)(sbx_cgroup_t *cg, pid_t pid, hearth_error_t *err);
    /* Kill every process in the cgroup and wait until it is empty. */
    int (*kill)(sbx_cgroup_t *cg, hearth_error_t *err);
    int (*stats)(sbx_cgroup_t *cg, sbx_cgroup_stats_t *st, hearth_error_t *err);
    /* CPU time alone: what every call of a warm sandbox reads twice. */
    int (*cpu_ns)(sbx_cgroup_t *cg, uint64_t *ns, hearth_error_t *err);
    /* rmdir in every hierarchy (kills first if not empty). */
    int (*destroy)(sbx_cgroup_t *cg, hearth_error_t *err);
    /* Close our root; rmdir it too when remove (best effort, at shutdown). */
    void (*close_root)(sbx_cgroups_t *cgs, bool remove);
};

#define SBX_CG_MAX_HIER 6

struct sbx_cgroups {
    const struct sbx_cgroup_ops *ops;
    char root[128];                    /* our root's name, e.g. "hearth" */
    int n_hier;                        /* v1: hierarchies used; v2: 1 */
    char hier_path[SBX_CG_MAX_HIER][256]; /* mount point + "/" + root */
    char hier_ctrl[SBX_CG_MAX_HIER][64];  /* v1 controllers of that mount, e.g. "cpu,cpuacct" */
    int hier_dirfd[SBX_CG_MAX_HIER];   /* O_PATH|O_DIRECTORY of hier_path */
    bool v1_memsw;                     /* v1: swap is accounted (memory.memsw.* exist) */
    bool v1_swappiness_inherited;      /* v1: our root has swappiness 0, which new children copy */
};

struct sbx_cgroup {
    sbx_cgroups_t *cgs;
    char name[64];                     /* e.g. "sbx-42"; path below our root */
    int dirfd[SBX_CG_MAX_HIER];        /* O_DIRECTORY fds of the sandbox cgroup */
    int cpu_fd;                        /* its CPU usage file, opened at the first read; -1 before */
    bool created;
    sbx_cgroup_limits_t cur;           /* v1: CPU settings as written (a new cgroup's: the kernel's
                                          defaults), so that only changes are written */
};

extern const struct sbx_cgroup_ops sbx_cgroup_v1_ops;
extern const struct sbx_cgroup_ops sbx_cgroup_v2_ops;

/* Detect the backend from /proc/self/mountinfo: v2 when a cgroup2 mount at
 * /sys/fs/cgroup offers memory and pids; else v1 when cpu(acct), memory,
 * pids and freezer hierarchies exist. Fills cgs (not yet opened). */
int sbx_cgroups_detect(sbx_cgroups_t *cgs, const char *root, hearth_error_t *err);

/* Shared by both backends. */
/* An unopened cgroup of cgs: every fd -1. sbx_cg_close closes what is open. */
void sbx_cg_init(sbx_cgroup_t *cg, sbx_cgroups_t *cgs);
void sbx_cg_close(sbx_cgroup_t *cg);
/* The CPU usage file `file` under dirfd, kept open in cg->cpu_fd and read
 * from offset 0 (one pread a read): a number, or with key, the value of
 * that key's line. */
int sbx_cg_read_cpu(sbx_cgroup_t *cg, int dirfd, const char *file, const char *key, uint64_t *out);
int sbx_cg_read_u64(int dirfd, const char *file, uint64_t *out);
/* Find "key value" in a flat-keyed file such as memory.events. */
int sbx_cg_read_key(int dirfd, const char *file, const char *key, uint64_t *out);
/* Remove a directory tree of cgroups, children first (rmdir only). */
int sbx_cg_rmtree(int parent_dirfd, const char *name);

#endif
