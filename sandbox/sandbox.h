/* The sandbox layer's one public face.
 *
 * A sandbox is a long-lived init process (pid 1 of its own pid namespace)
 * living in fresh user, pid, mount, network, uts, ipc and cgroup namespaces,
 * inside its own cgroup, with a pivoted read-only root. Processes are started
 * in it on request (sbx_exec); each gets stdio fds from the caller, every
 * capability dropped, no_new_privs and the seccomp filter. The sandbox
 * outlives its processes, so a function's next invocation is warm.
 *
 * This layer knows nothing of tenants, queues or HTTP. It never logs: every
 * failure comes back in a hearth_error_t. */
#ifndef HEARTH_SANDBOX_H
#define HEARTH_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/util.h"

typedef struct sbx_host sbx_host_t; /* per-host context: cgroups, spawner, uid range, seccomp cache */
typedef struct sbx sbx_t;           /* one sandbox */

typedef struct sbx_host_config {
    const char *cgroup_root; /* our subtree under each hierarchy; default "hearth" */
    uid_t uid_base;          /* first host uid/gid for sandboxes; default 100000 */
    uint32_t uid_count;      /* how many; each live sandbox takes one; default 65536 */
    bool spawner;            /* fork a spawner process now and clone sandboxes from it */
    const char *seccomp_cache; /* directory for compiled seccomp programs; NULL: none */
    bool shared_root;        /* others use cgroup_root too (`hearth run` beside a daemon): name our
                                cgroups run-<pid>-<n>, clean only those of dead processes, and leave
                                the root in place at close */
    int netns_ahead;         /* with a spawner: network namespaces it keeps made ahead of need.
                                0, or no spawner: each creation makes its own beside the child (a
                                one-shot run gains nothing from a thread started earlier: measured
                                slower, see docs/benchmarks.md) */
    int cgroups_ahead;       /* with a spawner: empty cgroups kept made ahead of need (at most
                                SBX_CG_AHEAD_MAX); a creation then only writes their limits.
                                Made at open, then by sbx_host_make_ahead */
    bool inits_ahead;        /* with a spawner: keep a sandbox init cloned ahead of need (new pid, uts
                                and ipc namespaces, waiting for its spec), so that a creation starts
                                without the clone. v1 only: on v2 clone3 puts each init into its
                                cgroup at birth, which needs the cgroup first */
} sbx_host_config_t;
#define SBX_CG_AHEAD_MAX 16

typedef struct sbx_mount {
    const char *source; /* host path */
    const char *target; /* path inside the sandbox; must exist in the rootfs */
    bool readonly;
} sbx_mount_t;

typedef struct sbx_spec {
    const char *rootfs;        /* NULL: the host's / (read-only) */
    const sbx_mount_t *mounts; /* extra bind mounts */
    size_t n_mounts;
    const char *hostname;      /* NULL: "hearth" */
    uint64_t memory_bytes;     /* memory limit, no swap; 0: 128 MiB */
    double cpus;               /* CPU quota in cores; 0: 1.0 */
    uint32_t pids;             /* pids limit; 0: 64 */
    uint64_t tmp_bytes;        /* size of the tmpfs /tmp; 0: 64 MiB */
    uint32_t nofile;           /* RLIMIT_NOFILE; 0: 1024 */
    const char *seccomp;       /* NULL or "default": built-in profile; else an OCI/Docker JSON path */
    bool paths_resolved;       /* rootfs and mount sources are canonical (realpath) and were checked:
                                  they are opened without following any symlink, so a path turned
                                  into one since fails the creation instead of binding elsewhere */
} sbx_spec_t;

typedef struct sbx_exec {
    const char *const *argv; /* argv[0] is looked up on PATH from envp */
    const char *const *envp; /* NULL: a minimal PATH/HOME/TERM-less environment */
    const char *cwd;         /* NULL: "/" */
    int stdin_fd;            /* fds in the caller; -1 for /dev/null */
    int stdout_fd;
    int stderr_fd;
} sbx_exec_t;

typedef enum {
    SBX_END_EXIT,    /* exited; status = exit code */
    SBX_END_SIGNAL,  /* killed by a signal; status = signal number */
    SBX_END_OOM,     /* killed after hitting the memory limit */
    SBX_END_PIDS,    /* failed after hitting the pids limit */
    SBX_END_TIMEOUT, /* killed at the time limit */
    SBX_END_LOST,    /* the sandbox itself died (init gone) */
} sbx_end_kind_t;

typedef struct sbx_end {
    sbx_end_kind_t kind;
    int status;              /* exit code or signal number */
    pid_t pid;               /* pid inside the sandbox */
    bool alone;              /* END: nothing but init was left in the sandbox then (every other
                                process it ever had had ended): no reset needed */
} sbx_end_t;

typedef struct sbx_usage {
    uint64_t cpu_ns;         /* total CPU time of the cgroup, exact once processes have exited */
    uint64_t memory_peak;    /* bytes */
    uint64_t memory_current; /* bytes */
    uint64_t oom_kills;      /* times the OOM killer fired in this sandbox */
    uint64_t pids_max_hits;  /* times a fork failed at the pids limit */
} sbx_usage_t;

/* Open the host context: detect the cgroup backend, create `cgroup_root`
 * under each hierarchy, remove what a killed predecessor left there
 * (sbx-* when the root is ours alone; run-<pid>-* of dead processes in any
 * case), and (if cfg->spawner) fork the spawner. Requires root. */
int sbx_host_open(const sbx_host_config_t *cfg, sbx_host_t **out, hearth_error_t *err);
/* Destroy every sandbox still open, stop the spawner, remove our cgroups. */
void sbx_host_close(sbx_host_t *host);
/* "v1" or "v2". */
const char *sbx_host_cgroup_mode(const sbx_host_t *host);
/* How many sandboxes so far started on an init cloned ahead (inits_ahead). */
uint64_t sbx_host_cloned_ahead(const sbx_host_t *host);

/* Create a sandbox and wait until its init is ready for sbx_exec. Fails
 * closed: if any isolation step cannot be applied, nothing is left behind
 * and err says which step. */
int sbx_create(sbx_host_t *host, const sbx_spec_t *spec, sbx_t **out, hearth_error_t *err);

/* The same without waiting, for event loops (needs cfg->spawner): the
 * request goes to the spawner and *ticket names it. When sbx_host_fd is
 * readable, sbx_host_poll returns 1 with the ticket of a finished
 * creation and *out set (NULL and err filled when it failed), or 0 when
 * nothing has finished; -1 when the spawner is gone. */
int sbx_create_async(sbx_host_t *host, const sbx_spec_t *spec, uint64_t *ticket, hearth_error_t *err);
int sbx_host_fd(const sbx_host_t *host);
int sbx_host_poll(sbx_host_t *host, sbx_t **out, uint64_t *ticket, hearth_error_t *err);
/* Make one of the empty cgroups kept ahead of need (cgroups_ahead) if the
 * host is short of them; true if it made one and is still short. A directory in each
 * v1 hierarchy costs 0.1-0.3 ms: call it when nothing waits, not between
 * sbx_create_async and the loop's return to poll (the spawner, woken on
 * this CPU, would wait for it). */
bool sbx_host_make_ahead(sbx_host_t *host);

/* Start a process in the sandbox. The caller's fds are passed over, not
 * kept open by the sandbox after exec. One process at a time may be
 * awaited with sbx_wait; more may run (use sbx_ctl_fd for events). */
int sbx_exec(sbx_t *sb, const sbx_exec_t *ex, pid_t *pid_out, hearth_error_t *err);

/* sbx_create then sbx_exec, for one-shot runs: without a spawner the exec
 * request goes to init while the sandbox is still being set up, which
 * saves a round trip. Returns -1 with *out NULL when the sandbox could not
 * be created, and -1 with *out set (to be destroyed) when the process
 * could not be started (err.code ENOENT: not found). */
int sbx_create_exec(sbx_host_t *host, const sbx_spec_t *spec, const sbx_exec_t *ex, sbx_t **out, pid_t *pid_out,
                    hearth_error_t *err);

/* Wait for the process started last to end, at most timeout_ms (0: no
 * limit). On timeout every process in the sandbox is killed and the end
 * is SBX_END_TIMEOUT; the sandbox is then dead and should be destroyed. */
int sbx_wait(sbx_t *sb, uint64_t timeout_ms, sbx_end_t *end, hearth_error_t *err);

/* For event loops: sbx_exec_send starts a process without waiting for
 * init's answer; sbx_ctl_fd is readable when init reports something, and
 * sbx_next_event then returns 1 with one event (0: nothing pending; it
 * never blocks). Events of one process come in order: STARTED or
 * START_FAILED, then END. DIED means the sandbox itself is gone. */
typedef enum {
    SBX_EV_STARTED,      /* pid runs */
    SBX_EV_START_FAILED, /* err, what: why the process could not start */
    SBX_EV_END,          /* end: how a started process ended */
    SBX_EV_DIED,         /* init is gone; end.kind is SBX_END_LOST or SBX_END_OOM */
} sbx_event_kind_t;

typedef struct sbx_event {
    sbx_event_kind_t kind;
    pid_t pid;           /* pid inside the sandbox */
    int err;             /* START_FAILED: errno */
    char what[64];       /* START_FAILED: the step that failed */
    sbx_end_t end;       /* END, DIED */
} sbx_event_t;

int sbx_exec_send(sbx_t *sb, const sbx_exec_t *ex, hearth_error_t *err);
int sbx_ctl_fd(const sbx_t *sb);
int sbx_next_event(sbx_t *sb, sbx_event_t *ev, hearth_error_t *err);

/* Kill every process in the sandbox except its init, and reap them:
 * the sandbox stays usable (warm). Returns once they are gone. */
int sbx_reset(sbx_t *sb, hearth_error_t *err);
/* A TCP socket on 127.0.0.1:port inside the sandbox's own network
 * namespace, made by its init: listening (backlog 64), or connecting
 * (non-blocking: wait for it to become writable). Nothing outside the
 * sandbox can reach either; the caller owns *fd. */
int sbx_socket(sbx_t *sb, uint16_t port, bool connect, int *fd_out, hearth_error_t *err);
/* Kill everything: init, whose pid namespace goes with it, then through
 * the cgroup whatever is left. Returns once nothing runs (the CPU figure
 * is then final). */
int sbx_kill(sbx_t *sb, hearth_error_t *err);
/* The same without waiting, for event loops: kill init and return an fd
 * that turns readable once it is gone, and with it every process of the
 * sandbox (sbx_kill then returns at once), or -1 with nothing to wait for. */
int sbx_kill_start(sbx_t *sb);
/* Apply spec's memory, CPU and pids limits to a live sandbox (a
 * prewarmed generic one taken over by a function). The other fields of
 * spec are ignored: they were fixed at creation. */
int sbx_set_limits(sbx_t *sb, const sbx_spec_t *spec, hearth_error_t *err);
/* Read the cgroup's counters. */
int sbx_usage(sbx_t *sb, sbx_usage_t *out, hearth_error_t *err);
/* Only its CPU time (usage's cpu_ns), in one system call. */
int sbx_cpu_ns(sbx_t *sb, uint64_t *ns, hearth_error_t *err);
/* Kill, reap and remove the cgroup; frees sb. Safe on a dead sandbox. */
void sbx_destroy(sbx_t *sb);

pid_t sbx_init_pid(const sbx_t *sb);        /* host pid of the sandbox's init */
uid_t sbx_host_uid(const sbx_t *sb);        /* host uid that root inside maps to */
const char *sbx_cgroup_name(const sbx_t *sb); /* below cgroup_root, e.g. "sbx-42" */
bool sbx_alive(const sbx_t *sb);

/* Human-readable reason, e.g. "out of memory (limit 64 MiB)". */
void sbx_end_describe(const sbx_end_t *end, const sbx_spec_t *spec, uint64_t timeout_ms, char *buf,
                      size_t len);

#endif
