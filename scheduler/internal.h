/* Private to scheduler/: the records and the small containers they live in.
 * Everything is intrusive (lists, timers) or keyed by id (idmap), so every
 * event costs O(1) amortised — the heap of timers O(log n). */
#ifndef HEARTH_SCHED_INTERNAL_H
#define HEARTH_SCHED_INTERNAL_H

#include <stddef.h>

#include "common/idmap.h"

#include "scheduler/scaler.h"
#include "scheduler/scheduler.h"

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Circular doubly linked list with a sentinel; an unlinked node points to itself. */
typedef struct sched_link {
    struct sched_link *prev; /* previous node or the sentinel */
    struct sched_link *next; /* next node or the sentinel */
} sched_link_t;

static inline void link_init(sched_link_t *l)
{
    l->prev = l->next = l;
}
static inline bool link_empty(const sched_link_t *l)
{
    return l->next == l;
}
static inline bool link_linked(const sched_link_t *n)
{
    return n->next != n;
}
static inline void link_unlink(sched_link_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}
static inline void link_push_head(sched_link_t *l, sched_link_t *n)
{
    n->next = l->next;
    n->prev = l;
    l->next->prev = n;
    l->next = n;
}
static inline void link_push_tail(sched_link_t *l, sched_link_t *n)
{
    n->prev = l->prev;
    n->next = l;
    l->prev->next = n;
    l->prev = n;
}

typedef idmap_t sched_idmap_t;

typedef enum { TIMER_IDLE, TIMER_FN } sched_timer_kind_t;

typedef struct sched_timer {
    uint64_t when;            /* deadline, ns */
    uint32_t idx;             /* slot in the heap, UINT32_MAX when not armed */
    sched_timer_kind_t kind;  /* which record embeds it */
} sched_timer_t;

typedef struct sched_heap {
    sched_timer_t **v; /* binary min-heap on when */
    uint32_t n;        /* armed timers */
    uint32_t cap;      /* allocated slots */
} sched_heap_t;

void timer_init(sched_timer_t *t, sched_timer_kind_t kind);
int heap_arm(sched_heap_t *h, sched_timer_t *t, uint64_t when);
void heap_disarm(sched_heap_t *h, sched_timer_t *t);
static inline bool timer_armed(const sched_timer_t *t)
{
    return t->idx != UINT32_MAX;
}

typedef enum { SBX_CREATING, SBX_IDLE, SBX_BUSY, SBX_DRAINING } sbx_state_t;

typedef enum { WAIT_NONE, WAIT_HOST, WAIT_TENANT } fn_wait_t;

/* Why the scaler or placement last decided what it did, formatted on read. */
typedef enum {
    WHY_NONE,
    WHY_STEADY,       /* desired reached */
    WHY_SCALE_UP,     /* started a, want b */
    WHY_PANIC,        /* panic: want a, ready b */
    WHY_HOLD,         /* after panic, holding a */
    WHY_SCALE_DOWN,   /* removed idle beyond desired */
    WHY_LIMIT_FN,     /* queued: function max_sandboxes a reached */
    WHY_LIMIT_TENANT, /* queued: tenant max_concurrency a reached */
    WHY_LIMIT_HOST,   /* queued: host full */
    WHY_QUEUE_FULL,   /* rejecting: queue full at a */
    WHY_START_FAILED, /* a consecutive start failures */
    WHY_BACKOFF,      /* a consecutive start failures; no proactive start for b s */
    WHY_DRAINING,     /* updated to version a, draining */
} sched_why_t;

typedef struct sched_tenant sched_tenant_t;
typedef struct sched_fn sched_fn_t;
typedef struct sched_sbx sched_sbx_t;
typedef struct sched_inv sched_inv_t;

struct sched_tenant {
    uint64_t id;                /* the daemon's id */
    char name[64];              /* for status */
    uint32_t weight;            /* DRR quantum */
    uint32_t max_concurrency;   /* live sandboxes allowed */
    uint32_t n_sbx;             /* live sandboxes tied to it */
    uint32_t n_idle;            /* of which idle */
    uint32_t in_flight;         /* running invocations */
    uint32_t queued;            /* waiting invocations */
    uint32_t n_fns;             /* functions, removed ones still draining included */
    sched_link_t idle_lru;      /* its idle sandboxes, most recently used first */
    sched_link_t blocked[2];    /* its functions waiting for host capacity, per priority level */
    sched_link_t ring_link[2];  /* in sched.ring[level] while blocked[level] is not empty */
    uint64_t deficit[2];        /* DRR credit per level */
    sched_link_t tenant_wait;   /* its functions waiting for its own max_concurrency */
    sched_usage_t usage;        /* totals */
    sched_budget_t budget;      /* cpu_ms_per_minute */
};

struct sched_fn {
    uint64_t id;                /* the daemon's id */
    sched_tenant_t *tenant;     /* owner */
    char name[64];              /* for status */
    uint32_t version;           /* current version */
    uint32_t memory_mb;         /* per sandbox */
    uint32_t concurrency;       /* slots per sandbox */
    uint32_t min_warm;          /* kept warm */
    bool no_prewarm;            /* never take a generic prewarmed sandbox */
    uint32_t max_sandboxes;     /* live sandboxes allowed, old versions included */
    uint64_t keep_alive_ns;     /* idle time before removal beyond desired */
    bool removed;               /* gone from the map, waiting for its sandboxes to drain */
    uint32_t n_sbx;             /* live sandboxes of any version */
    uint32_t n_creating;        /* current version, starting */
    uint32_t n_idle;            /* current version, idle */
    uint32_t n_busy;            /* current version, running something */
    uint32_t n_draining;        /* old version or crashed (stale starts included) */
    sched_link_t creating;      /* current version, starting */
    sched_link_t idle;          /* idle, most recently used first (LIFO) */
    sched_link_t avail;         /* busy with a free slot (concurrency > 1) */
    sched_link_t full;          /* busy, every slot taken */
    sched_link_t draining;      /* finishing, then destroyed */
    sched_link_t queue[2];      /* waiting invocations, sync then async, FIFO */
    uint32_t qlen[2];           /* their lengths */
    uint32_t in_flight;         /* running invocations */
    fn_wait_t wait;             /* what its uncovered queue waits for */
    int wait_level;             /* ring level while WAIT_HOST */
    sched_link_t wait_link;     /* in tenant->blocked[level] or tenant->tenant_wait */
    sched_link_t dead_link;     /* in sched.dead once removed */
    uint32_t start_failures;    /* consecutive failed starts (rejects the queue at max_start_failures) */
    uint32_t fail_streak;       /* consecutive failed starts, until one succeeds */
    uint64_t retry_at;          /* no start for min_warm or desired before (failures back off) */
    uint64_t avg_run_ns;        /* moving average of run time, for Retry-After */
    sched_scaler_t sc;          /* windows and decision */
    sched_timer_t timer;        /* next scaling evaluation */
    sched_why_t why;            /* last decision */
    uint32_t why_a, why_b;      /* its figures */
    sched_usage_t usage;        /* totals */
};

struct sched_sbx {
    uint64_t id;                /* handed to the provider */
    sched_fn_t *fn;             /* NULL while a generic pool sandbox */
    sched_tenant_t *tenant;     /* NULL while generic */
    sbx_state_t state;          /* creating -> idle <-> busy -> draining -> gone */
    sched_start_t start_kind;   /* cold or prewarm: what its first invocation reports */
    bool used;                  /* has run an invocation: later ones are warm */
    uint64_t ready_at;          /* ns when it became ready for its function; 0 before */
    bool stale;                 /* started for an old version or a removed function */
    sched_destroy_reason_t why; /* reason given when it is destroyed after draining */
    uint32_t version;           /* of its function */
    uint32_t in_flight;         /* running invocations */
    uint32_t memory_mb;         /* counted against the host budget */
    uint64_t idle_since;        /* when it last became idle */
    uint64_t overhead_ns;       /* CPU reported while generic, charged on specialisation */
    sched_link_t fn_link;       /* in one of its function's lists, or the generic lists */
    sched_link_t lru_link;      /* global idle LRU while idle */
    sched_link_t tlru_link;     /* tenant idle LRU while idle */
    sched_timer_t timer;        /* keep-alive while idle */
};

typedef enum { INV_QUEUED, INV_RUNNING } inv_state_t;

struct sched_inv {
    uint64_t id;                /* the daemon's id */
    void *opaque;               /* the daemon's pointer, handed back */
    sched_fn_t *fn;             /* its function */
    sched_sbx_t *sbx;           /* while running */
    sched_prio_t prio;          /* sync or async */
    inv_state_t state;          /* queued -> running -> freed */
    uint64_t submitted;         /* ns */
    uint64_t started;           /* ns, when dispatched */
    sched_link_t qlink;         /* in fn->queue[prio] */
    sched_link_t tlink;         /* in sched.timeouts (submission order = deadline order) */
};

struct sched {
    sched_config_t cfg;         /* copied at creation */
    sched_provider_t pv;        /* copied at creation */
    sched_scaler_cfg_t scfg;    /* bucket layout for every function */
    sched_idmap_t tenants;      /* id -> sched_tenant_t */
    sched_idmap_t fns;          /* id -> sched_fn_t, removed ones excluded */
    sched_idmap_t sbxs;         /* id -> sched_sbx_t */
    sched_idmap_t invs;         /* id -> sched_inv_t */
    sched_heap_t timers;        /* keep-alive and scaling timers */
    uint64_t next_sbx_id;       /* sandbox ids are ours */
    uint64_t now;               /* last time seen */
    uint32_t n_sbx;             /* live sandboxes, all kinds */
    uint64_t mem_mb;            /* their memory limits */
    uint32_t n_idle;            /* idle function sandboxes (evictable) */
    uint64_t idle_mem_mb;       /* their memory limits */
    sched_link_t idle_lru;      /* idle function sandboxes, most recently used first */
    sched_link_t generic_ready; /* pool, ready, newest first */
    sched_link_t generic_creating; /* pool, starting */
    uint32_t n_generic_ready;   /* length of generic_ready */
    uint32_t n_generic_creating; /* length of generic_creating */
    uint32_t prewarm_target;    /* pool target, from the recent start rate */
    sched_scaler_t start_rate;  /* sandbox starts, counted in a window (value stays 0) */
    sched_link_t ring[2];       /* tenants with functions waiting for host capacity, per level */
    sched_link_t *ring_cur[2];  /* DRR position (a tenant's ring_link or the sentinel) */
    uint32_t n_waiting_host;    /* functions in any tenant->blocked */
    sched_link_t timeouts;      /* queued invocations, oldest first */
    uint32_t queued;            /* all queues */
    uint32_t in_flight;         /* all running */
    sched_link_t dead;          /* removed functions waiting for their sandboxes */
    bool in_capacity;           /* guards capacity_freed against re-entry */
    sched_usage_t host_overhead; /* CPU of generic sandboxes never specialised */
};

/* pool.c: sandbox records and their lists. */
sched_sbx_t *pool_new_sbx(sched_t *s, sched_fn_t *fn);
void pool_place(sched_t *s, sched_sbx_t *x);
void pool_make_draining(sched_t *s, sched_sbx_t *x, sched_destroy_reason_t why);
void pool_specialise(sched_t *s, sched_sbx_t *x, sched_fn_t *fn);
void pool_generic_ready(sched_t *s, sched_sbx_t *x);
void pool_destroy(sched_t *s, sched_sbx_t *x, sched_destroy_reason_t why, bool tell);
sched_sbx_t *pool_warm_slot(sched_fn_t *fn);
void pool_fn_init(sched_fn_t *fn);

#endif
