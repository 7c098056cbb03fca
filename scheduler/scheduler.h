/* The scheduler: where every invocation runs and how many sandboxes each
 * function keeps. Pure logic driven by the daemon's event loop: events come
 * in through sched_* calls carrying the time, actions go out through the
 * provider callbacks. No syscalls, no clock, no threads, no locks.
 *
 * Placement of an invocation, in order:
 *   1. a free slot of a warm sandbox of its function (partly busy ones
 *      first when concurrency > 1, then idle ones most recently used first);
 *   2. a cold start, if the function's max_sandboxes, the tenant's
 *      max_concurrency (its live sandboxes), the host's max_sandboxes and
 *      memory budget all allow; a ready prewarmed generic sandbox is used
 *      when there is one (start kind prewarm);
 *   3. evicting idle sandboxes of other functions, least recently used
 *      first (of the same tenant when the tenant limit is what blocks);
 *   4. the function's queue (bounded, with a timeout), served by whichever
 *      sandbox frees first; when host capacity is short, freed capacity goes
 *      to waiting functions by deficit round robin across tenants (sync
 *      before async);
 *   5. rejection with a Retry-After.
 *
 * Every sandbox id handed to spawn or spawn_generic ends with exactly one
 * of: sched_sandbox_failed from the daemon, or destroy from the scheduler.
 * Every submitted invocation ends with exactly one of: dispatch followed by
 * sched_invocation_done from the daemon, or reject.
 *
 * Provider callbacks must not call back into the scheduler; report results
 * later from the event loop. Time (now, ns) must never go back. */
#ifndef HEARTH_SCHED_SCHEDULER_H
#define HEARTH_SCHED_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>

#include "common/util.h"
#include "scheduler/accounting.h"

typedef struct sched sched_t;

typedef enum { SCHED_SYNC = 0, SCHED_ASYNC = 1 } sched_prio_t;

typedef enum {
    SCHED_START_COLD,    /* a sandbox built for this invocation */
    SCHED_START_PREWARM, /* a prewarmed generic sandbox specialised for it */
    SCHED_START_WARM,    /* a sandbox that already ran the function */
} sched_start_t;

typedef enum {
    SCHED_DESTROY_KEEP_ALIVE, /* idle past keep_alive_ms beyond the desired count */
    SCHED_DESTROY_EVICTED,    /* idle, removed to make room for another function */
    SCHED_DESTROY_FAIRNESS,   /* freed, its capacity given to another tenant's queue */
    SCHED_DESTROY_DRAINED,    /* its function was updated or removed */
    SCHED_DESTROY_CRASHED,    /* an invocation crashed it, or it died */
    SCHED_DESTROY_POOL,       /* a generic prewarmed sandbox beyond the pool target */
    SCHED_DESTROY_SHUTDOWN,   /* sched_free */
} sched_destroy_reason_t;

typedef enum {
    SCHED_REJECT_QUEUE_FULL,    /* 429: no capacity and the function's queue is full */
    SCHED_REJECT_QUEUE_TIMEOUT, /* waited queue_timeout_ms without a sandbox */
    SCHED_REJECT_CPU_BUDGET,    /* 429: the tenant spent its cpu_ms_per_minute */
    SCHED_REJECT_REMOVED,       /* the function was removed while this waited */
    SCHED_REJECT_START_FAILED,  /* sandboxes of the function keep failing to start */
    SCHED_REJECT_SHUTDOWN,      /* sched_free */
} sched_reject_reason_t;

typedef enum { SCHED_DONE_OK, SCHED_DONE_ERROR, SCHED_DONE_CRASHED } sched_done_t;

typedef struct sched_provider {
    /* Start sandbox sandbox_id for version `version` of function fn_id; with
     * from_prewarm, sandbox_id is a ready generic sandbox to specialise. */
    void (*spawn)(void *ctx, uint64_t fn_id, uint32_t version, uint64_t sandbox_id, bool from_prewarm);
    /* Start a generic sandbox (namespaces, cgroup, default rootfs) for the pool. */
    void (*spawn_generic)(void *ctx, uint64_t sandbox_id);
    /* Run invocation inv_id on a ready sandbox. */
    void (*dispatch)(void *ctx, uint64_t inv_id, void *opaque, uint64_t sandbox_id, sched_start_t kind);
    /* Tear sandbox_id down (it runs nothing the scheduler knows of). */
    void (*destroy)(void *ctx, uint64_t sandbox_id, sched_destroy_reason_t reason);
    /* Turn invocation inv_id away; retry_after_ms is for Retry-After. */
    void (*reject)(void *ctx, uint64_t inv_id, void *opaque, sched_reject_reason_t reason,
                   uint32_t retry_after_ms);
    void *ctx; /* handed to every callback */
} sched_provider_t;

typedef struct sched_config {
    uint32_t max_sandboxes;     /* host: live sandboxes of any kind */
    uint64_t memory_budget_mb;  /* host: sum of memory limits of live sandboxes */
    uint32_t prewarm_min;       /* generic pool target bounds */
    uint32_t prewarm_max;
    uint32_t generic_memory_mb; /* memory a generic sandbox counts before it is specialised */
    uint64_t stable_window_ms;  /* default 60000 */
    uint64_t panic_window_ms;   /* default 6000 */
    uint32_t queue_max;         /* per function, sync and async together */
    uint64_t queue_timeout_ms;  /* how long an invocation may wait in a queue */
    uint32_t max_start_failures; /* consecutive failed starts before a function's queue is rejected; default 3 */
} sched_config_t;

/* Defaults: 64 sandboxes, 4096 MiB, pool 0..4 of 0 MiB, windows 60 s / 6 s,
 * queue 1000 for 30 s, 3 start failures. */
void sched_config_default(sched_config_t *cfg);

typedef struct sched_tenant_spec {
    const char *name;           /* for status and logs; copied */
    uint32_t weight;            /* share of contended capacity, >= 1 */
    uint32_t max_concurrency;   /* live sandboxes of the tenant */
    uint64_t cpu_ms_per_minute; /* 0 = no budget */
} sched_tenant_spec_t;

typedef struct sched_fn_spec {
    uint64_t tenant_id;      /* owner, registered before */
    const char *name;        /* copied */
    uint32_t version;        /* a change drains the old sandboxes */
    uint32_t memory_mb;      /* memory limit of one sandbox */
    uint32_t concurrency;    /* invocations one sandbox runs at once, >= 1 */
    uint32_t min_warm;       /* sandboxes kept warm */
    uint32_t max_sandboxes;  /* >= 1 */
    uint32_t keep_alive_ms;  /* idle time before a sandbox beyond desired goes */
    bool no_prewarm;         /* its sandboxes cannot be made from generic prewarmed ones */
} sched_fn_spec_t;

/* Create a scheduler; the provider is copied. NULL with err set on bad
 * config or no memory. */
sched_t *sched_new(const sched_config_t *cfg, const sched_provider_t *provider, uint64_t now,
                   hearth_error_t *err);

/* Destroy every sandbox and reject every queued invocation through the
 * provider, then free. Running invocations are forgotten. */
void sched_free(sched_t *s);

/* Register or update tenant id. Lowering max_concurrency never kills
 * sandboxes; it stops new ones. */
int sched_tenant_put(sched_t *s, uint64_t id, const sched_tenant_spec_t *spec, hearth_error_t *err);

/* Remove a tenant that owns no function (EBUSY otherwise). */
int sched_tenant_remove(sched_t *s, uint64_t id, hearth_error_t *err);

/* Register or update function id. A new function gets min_warm sandboxes
 * started. An update that changes version, memory_mb or concurrency
 * drains the old sandboxes (idle ones at once, busy ones when they finish)
 * and sends queued and new calls to the new version. */
int sched_fn_put(sched_t *s, uint64_t id, const sched_fn_spec_t *spec, uint64_t now, hearth_error_t *err);

/* Remove a function: its queued invocations are rejected, its sandboxes
 * drained. ENOENT if unknown. */
int sched_fn_remove(sched_t *s, uint64_t id, uint64_t now, hearth_error_t *err);

/* A new invocation. Returns 0 when it was dispatched, queued or rejected
 * (through the provider); -1 with err when the call itself is wrong
 * (unknown function: ENOENT; id in use: EEXIST) and nothing happened. */
int sched_submit(sched_t *s, uint64_t inv_id, uint64_t fn_id, sched_prio_t prio, void *opaque, uint64_t now,
                 hearth_error_t *err);

/* The daemon's reports. Unknown or out-of-state ids give -1 (EINVAL/ENOENT)
 * and change nothing. */
int sched_sandbox_ready(sched_t *s, uint64_t sandbox_id, uint64_t now, hearth_error_t *err);
int sched_sandbox_failed(sched_t *s, uint64_t sandbox_id, uint64_t now, hearth_error_t *err);
/* A sandbox died on its own: it serves nothing more and is destroyed once its
 * running invocations are reported done. */
int sched_sandbox_died(sched_t *s, uint64_t sandbox_id, uint64_t now, hearth_error_t *err);
/* CPU a sandbox spent outside invocations (start-up, idle, teardown),
 * charged to its tenant and function as overhead. */
int sched_sandbox_overhead(sched_t *s, uint64_t sandbox_id, uint64_t cpu_ns, hearth_error_t *err);
/* The same for CPU measured after the sandbox is gone (teardown). */
int sched_fn_overhead(sched_t *s, uint64_t fn_id, uint64_t cpu_ns, hearth_error_t *err);
/* Invocation inv_id finished after using cpu_ns of CPU (its share when the
 * sandbox runs several at once). CRASHED destroys its sandbox. */
int sched_invocation_done(sched_t *s, uint64_t inv_id, uint64_t cpu_ns, sched_done_t how, uint64_t now,
                          hearth_error_t *err);

/* Timers: queue timeouts, keep-alive, scaling decisions, the generic pool.
 * Visits only what is due. Call at least every few hundred ms. */
void sched_tick(sched_t *s, uint64_t now);

/* When sched_tick next has work (UINT64_MAX: nothing but queue timeouts
 * and the pool, which want a tick about every second anyway). */
uint64_t sched_next_deadline(const sched_t *s);

/* Introspection for `hearth status` and metrics. */
typedef struct sched_fn_status {
    uint32_t creating;    /* sandboxes starting */
    uint32_t idle;        /* ready, running nothing */
    uint32_t busy;        /* running at least one invocation */
    uint32_t draining;    /* old version or crashed, finishing what they run */
    uint32_t queued;      /* sync + async */
    uint32_t in_flight;   /* invocations running */
    uint32_t desired;     /* hearth_scaler_desired */
    bool panic;           /* hearth_scaler_panic */
    double avg_stable;    /* observed concurrency, stable window */
    double avg_panic;     /* observed concurrency, panic window */
    char reason[192];     /* last decision, human-readable */
} sched_fn_status_t;

typedef struct sched_tenant_status {
    uint32_t sandboxes;   /* live sandboxes tied to the tenant */
    uint32_t in_flight;   /* invocations running */
    uint32_t queued;      /* invocations waiting */
} sched_tenant_status_t;

typedef struct sched_host_status {
    uint32_t sandboxes;        /* live, of every kind */
    uint64_t memory_mb;        /* sum of their memory limits */
    uint32_t generic_ready;    /* prewarmed pool, ready */
    uint32_t generic_creating; /* prewarmed pool, starting */
    uint32_t prewarm_target;   /* current pool target */
    uint32_t queued;           /* invocations waiting, all functions */
    uint32_t in_flight;        /* invocations running */
    uint32_t waiting_fns;      /* functions waiting for host capacity */
    sched_usage_t overhead;    /* unclaimed generic sandboxes' CPU */
} sched_host_status_t;

int sched_fn_status(const sched_t *s, uint64_t fn_id, sched_fn_status_t *out, hearth_error_t *err);
int sched_tenant_status(const sched_t *s, uint64_t tenant_id, sched_tenant_status_t *out, hearth_error_t *err);
void sched_host_status(const sched_t *s, sched_host_status_t *out);

/* Usage totals. load replaces the totals (restoring persisted state). */
int sched_tenant_usage(const sched_t *s, uint64_t tenant_id, sched_usage_t *out, hearth_error_t *err);
int sched_tenant_usage_load(sched_t *s, uint64_t tenant_id, const sched_usage_t *in, hearth_error_t *err);
int sched_fn_usage(const sched_t *s, uint64_t fn_id, sched_usage_t *out, hearth_error_t *err);
int sched_fn_usage_load(sched_t *s, uint64_t fn_id, const sched_usage_t *in, hearth_error_t *err);

const char *sched_start_name(sched_start_t kind);
const char *sched_reject_name(sched_reject_reason_t reason);
const char *sched_destroy_name(sched_destroy_reason_t reason);

#endif
