/* Events in, actions out: placement, queues, fairness across tenants, the
 * generic pool, and the timers that drive scaling. See scheduler.h for the
 * policy; this file keeps every event O(1) amortised: no walk over all
 * functions or sandboxes ever happens outside sched_free. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/internal.h"

#define MS (1000000ull)
#define SEC (1000 * MS)
#define MAX_BACKOFF_NS (60 * SEC) /* the longest pause between failed proactive starts */

typedef enum { START_OK, START_SELF, START_TENANT, START_HOST, START_NOMEM } start_rc_t;

enum {
    TRY_EVICT = 1 << 0,       /* may evict idle sandboxes of other functions */
    TRY_BYPASS_RING = 1 << 1, /* the caller is serving the fairness ring itself */
};

static void capacity_freed(sched_t *s);
static void after_release(sched_t *s, sched_fn_t *fn, sched_tenant_t *t);

void sched_config_default(sched_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_sandboxes = 64;
    cfg->memory_budget_mb = 4096;
    cfg->prewarm_min = 0;
    cfg->prewarm_max = 4;
    cfg->generic_memory_mb = 0;
    cfg->stable_window_ms = 60000;
    cfg->panic_window_ms = 6000;
    cfg->queue_max = 1000;
    cfg->queue_timeout_ms = 30000;
    cfg->max_start_failures = 3;
}

static inline uint32_t fn_queued(const sched_fn_t *fn)
{
    return fn->qlen[0] + fn->qlen[1];
}

/* Queued invocations that no starting sandbox will take. */
static inline int64_t uncovered(const sched_fn_t *fn)
{
    return (int64_t)fn_queued(fn) - (int64_t)fn->n_creating * fn->concurrency;
}

static inline int fn_level(const sched_fn_t *fn)
{
    return fn->qlen[SCHED_SYNC] ? 0 : 1;
}

static inline void set_why(sched_fn_t *fn, sched_why_t why, uint32_t a, uint32_t b)
{
    fn->why = why;
    fn->why_a = a;
    fn->why_b = b;
}

static void arm_fn_timer(sched_t *s, sched_fn_t *fn, uint64_t when)
{
    if (fn->removed)
        return;
    if (!timer_armed(&fn->timer) || fn->timer.when > when)
        heap_arm(&s->timers, &fn->timer, when);
}

static inline uint64_t next_bucket(const sched_t *s)
{
    return (s->now / s->scfg.bucket_ns + 1) * s->scfg.bucket_ns;
}

static void observe(sched_t *s, sched_fn_t *fn)
{
    uint32_t v = fn->in_flight + fn_queued(fn);
    sched_scaler_observe(&fn->sc, &s->scfg, s->now, v);
    if (v > 0 && !timer_armed(&fn->timer))
        arm_fn_timer(s, fn, next_bucket(s));
}

/* --- fairness: deficit round robin over tenants whose functions wait for host capacity --- */

static void ring_join(sched_t *s, sched_tenant_t *t, int lvl)
{
    if (link_linked(&t->ring_link[lvl]))
        return;
    t->deficit[lvl] = 0;
    link_push_tail(&s->ring[lvl], &t->ring_link[lvl]);
}

static void ring_leave(sched_t *s, sched_tenant_t *t, int lvl)
{
    if (!link_linked(&t->ring_link[lvl]))
        return;
    if (s->ring_cur[lvl] == &t->ring_link[lvl])
        s->ring_cur[lvl] = t->ring_link[lvl].prev;
    link_unlink(&t->ring_link[lvl]);
    t->deficit[lvl] = 0;
}

/* The tenant served next at level lvl (the ring must not be empty). Calling
 * it again without drr_charge returns the same tenant. */
static sched_tenant_t *drr_peek(sched_t *s, int lvl)
{
    sched_link_t *c = s->ring_cur[lvl];
    if (c != &s->ring[lvl]) {
        sched_tenant_t *t = container_of(c, sched_tenant_t, ring_link[lvl]);
        if (t->deficit[lvl] >= 1)
            return t;
    }
    c = c->next;
    if (c == &s->ring[lvl])
        c = c->next;
    sched_tenant_t *t = container_of(c, sched_tenant_t, ring_link[lvl]);
    t->deficit[lvl] += t->weight;
    s->ring_cur[lvl] = c;
    return t;
}

static inline void drr_charge(sched_tenant_t *t, int lvl)
{
    if (t->deficit[lvl] > 0)
        t->deficit[lvl]--;
}

static inline int ring_level(const sched_t *s)
{
    return link_empty(&s->ring[0]) ? 1 : 0;
}

static void wait_clear(sched_t *s, sched_fn_t *fn)
{
    if (fn->wait == WAIT_HOST) {
        link_unlink(&fn->wait_link);
        s->n_waiting_host--;
        if (link_empty(&fn->tenant->blocked[fn->wait_level]))
            ring_leave(s, fn->tenant, fn->wait_level);
    } else if (fn->wait == WAIT_TENANT) {
        link_unlink(&fn->wait_link);
    }
    fn->wait = WAIT_NONE;
}

static void wait_set(sched_t *s, sched_fn_t *fn, fn_wait_t w)
{
    if (w == WAIT_NONE) {
        wait_clear(s, fn);
        return;
    }
    if (w == WAIT_TENANT) {
        if (fn->wait == WAIT_TENANT)
            return;
        wait_clear(s, fn);
        link_push_tail(&fn->tenant->tenant_wait, &fn->wait_link);
        fn->wait = WAIT_TENANT;
        return;
    }
    int lvl = fn_level(fn);
    if (fn->wait == WAIT_HOST && fn->wait_level == lvl)
        return;
    wait_clear(s, fn);
    link_push_tail(&fn->tenant->blocked[lvl], &fn->wait_link);
    ring_join(s, fn->tenant, lvl);
    s->n_waiting_host++;
    fn->wait = WAIT_HOST;
    fn->wait_level = lvl;
}

/* After fn's queue changed: leave the waiting lists once nothing is left
 * uncovered, change ring level when the last sync invocation went. */
static void refresh_wait(sched_t *s, sched_fn_t *fn)
{
    if (fn->wait == WAIT_NONE)
        return;
    if (uncovered(fn) <= 0)
        wait_clear(s, fn);
    else if (fn->wait == WAIT_HOST && fn->wait_level != fn_level(fn))
        wait_set(s, fn, WAIT_HOST);
}

/* Is some other function waiting for host capacity at fn's priority or above? */
static bool contended(const sched_t *s, const sched_fn_t *fn)
{
    int lvl = fn_level(fn);
    uint32_t n = (uint32_t)!link_empty(&s->ring[0]);
    if (lvl == 1)
        n |= (uint32_t)!link_empty(&s->ring[1]);
    if (!n)
        return false;
    bool self = fn->wait == WAIT_HOST && fn->wait_level <= lvl;
    return s->n_waiting_host > (self ? 1u : 0u);
}

/* --- placement --- */

static void evicted(sched_t *s, sched_sbx_t *v)
{
    sched_fn_t *vfn = v->fn;
    pool_destroy(s, v, SCHED_DESTROY_EVICTED, true);
    /* Its min_warm is refilled by the scaler when room comes back, not now:
     * refilling at once would evict in turn. */
    arm_fn_timer(s, vfn, next_bucket(s));
}

/* Start one sandbox for fn if the four limits allow (steps 2 and 3). */
static start_rc_t try_start(sched_t *s, sched_fn_t *fn, int flags)
{
    sched_tenant_t *t = fn->tenant;
    if (fn->n_sbx >= fn->max_sandboxes) {
        set_why(fn, WHY_LIMIT_FN, fn->max_sandboxes, 0);
        return START_SELF;
    }
    bool t_full = t->n_sbx >= t->max_concurrency;
    if (t_full && (!(flags & TRY_EVICT) || t->n_sbx - t->n_idle >= t->max_concurrency)) {
        set_why(fn, WHY_LIMIT_TENANT, t->max_concurrency, 0);
        return START_TENANT;
    }
    if (!(flags & TRY_BYPASS_RING) && s->n_waiting_host > (fn->wait == WAIT_HOST ? 1u : 0u)) {
        set_why(fn, WHY_LIMIT_HOST, s->cfg.max_sandboxes, (uint32_t)s->cfg.memory_budget_mb);
        return START_HOST;
    }
    sched_sbx_t *g = NULL;
    if (!link_empty(&s->generic_ready) && !fn->no_prewarm)
        g = container_of(s->generic_ready.next, sched_sbx_t, fn_link);
    int64_t gn = g ? 1 : 0, gm = g ? g->memory_mb : 0;
    int64_t need_n = (int64_t)s->n_sbx + 1 - gn;
    int64_t need_m = (int64_t)s->mem_mb + fn->memory_mb - gm;
    int64_t max_n = s->cfg.max_sandboxes, max_m = (int64_t)s->cfg.memory_budget_mb;
    if (need_n > max_n || need_m > max_m || t_full) {
        if (!(flags & TRY_EVICT) || need_n - s->n_idle > max_n || need_m - (int64_t)s->idle_mem_mb > max_m) {
            set_why(fn, WHY_LIMIT_HOST, s->cfg.max_sandboxes, (uint32_t)s->cfg.memory_budget_mb);
            return START_HOST;
        }
        if (t_full) {
            sched_sbx_t *v = container_of(t->idle_lru.prev, sched_sbx_t, tlru_link);
            if (v->fn == fn)
                return START_SELF; /* cannot happen while fn has a queue: it would have used v */
            evicted(s, v);
        }
        while ((int64_t)s->n_sbx + 1 - gn > max_n || (int64_t)s->mem_mb + fn->memory_mb - gm > max_m) {
            sched_sbx_t *v = container_of(s->idle_lru.prev, sched_sbx_t, lru_link);
            if (link_empty(&s->idle_lru) || v->fn == fn)
                return START_HOST;
            evicted(s, v);
        }
    }
    if (g != NULL) {
        pool_specialise(s, g, fn);
        s->pv.spawn(s->pv.ctx, fn->id, fn->version, g->id, true);
    } else {
        sched_sbx_t *x = pool_new_sbx(s, fn);
        if (x == NULL)
            return START_NOMEM;
        s->pv.spawn(s->pv.ctx, fn->id, fn->version, x->id, false);
    }
    sched_scaler_count(&s->start_rate, &s->scfg, s->now);
    return START_OK;
}

/* Start sandboxes for fn's uncovered queue while the limits allow, and
 * record what it waits for when they do not. */
static start_rc_t pump(sched_t *s, sched_fn_t *fn)
{
    while (uncovered(fn) > 0) {
        start_rc_t rc = try_start(s, fn, TRY_EVICT);
        if (rc == START_OK)
            continue;
        wait_set(s, fn, rc == START_HOST ? WAIT_HOST : rc == START_TENANT ? WAIT_TENANT : WAIT_NONE);
        return rc;
    }
    wait_clear(s, fn);
    return START_OK;
}

/* Functions of t held back by t's own max_concurrency, first come first. */
static void wake_tenant(sched_t *s, sched_tenant_t *t)
{
    while (!link_empty(&t->tenant_wait)) {
        sched_fn_t *fn = container_of(t->tenant_wait.next, sched_fn_t, wait_link);
        pump(s, fn);
        if (fn->wait == WAIT_TENANT)
            break;
    }
}

/* Host room appeared (or may have): give it to the waiting functions in
 * deficit-round-robin order across tenants, sync level first. A function at
 * the head that still does not fit keeps its turn (so a big function is not
 * starved by small ones slipping into the room it is waiting for). */
static void capacity_freed(sched_t *s)
{
    if (s->in_capacity)
        return;
    s->in_capacity = true;
    while (s->n_waiting_host > 0) {
        int lvl = ring_level(s);
        sched_tenant_t *t = drr_peek(s, lvl);
        sched_fn_t *fn = container_of(t->blocked[lvl].next, sched_fn_t, wait_link);
        start_rc_t rc = try_start(s, fn, TRY_EVICT | TRY_BYPASS_RING);
        if (rc == START_OK) {
            drr_charge(t, lvl);
            link_unlink(&fn->wait_link);
            link_push_tail(&t->blocked[lvl], &fn->wait_link);
            refresh_wait(s, fn);
            continue;
        }
        if (rc == START_HOST || rc == START_NOMEM)
            break;
        wait_set(s, fn, rc == START_TENANT ? WAIT_TENANT : WAIT_NONE);
    }
    s->in_capacity = false;
}

/* A sandbox of fn (tenant t) is gone: its function, its tenant and the host
 * each have room for one more. */
static void after_release(sched_t *s, sched_fn_t *fn, sched_tenant_t *t)
{
    if (fn != NULL && !fn->removed) {
        if (uncovered(fn) > 0)
            pump(s, fn);
        arm_fn_timer(s, fn, next_bucket(s));
    }
    if (t != NULL)
        wake_tenant(s, t);
    capacity_freed(s);
}

static void enqueue(sched_t *s, sched_inv_t *inv)
{
    sched_fn_t *fn = inv->fn;
    inv->state = INV_QUEUED;
    link_push_tail(&fn->queue[inv->prio], &inv->qlink);
    link_push_tail(&s->timeouts, &inv->tlink);
    fn->qlen[inv->prio]++;
    fn->tenant->queued++;
    s->queued++;
}

static void unqueue(sched_t *s, sched_inv_t *inv)
{
    sched_fn_t *fn = inv->fn;
    link_unlink(&inv->qlink);
    link_unlink(&inv->tlink);
    fn->qlen[inv->prio]--;
    fn->tenant->queued--;
    s->queued--;
}

static sched_inv_t *queue_head(sched_fn_t *fn)
{
    sched_link_t *q = fn->qlen[SCHED_SYNC] ? &fn->queue[SCHED_SYNC] : &fn->queue[SCHED_ASYNC];
    return container_of(q->next, sched_inv_t, qlink);
}

static void dispatch(sched_t *s, sched_inv_t *inv, sched_sbx_t *x)
{
    sched_fn_t *fn = inv->fn;
    if (inv->state == INV_QUEUED)
        unqueue(s, inv);
    inv->state = INV_RUNNING;
    inv->sbx = x;
    inv->started = s->now;
    /* Warm unless the invocation waited for this sandbox to start: one
     * started ahead of demand (min_warm, scale-up) and already ready when
     * the invocation came in serves it warm. */
    bool waited = !x->used && (x->ready_at == 0 || x->ready_at >= inv->submitted);
    sched_start_t kind = waited ? x->start_kind : SCHED_START_WARM;
    x->used = true;
    x->in_flight++;
    fn->in_flight++;
    fn->tenant->in_flight++;
    s->in_flight++;
    pool_place(s, x);
    if (kind != SCHED_START_WARM) {
        fn->usage.cold_starts++;
        fn->tenant->usage.cold_starts++;
    }
    s->pv.dispatch(s->pv.ctx, inv->id, inv->opaque, x->id, kind);
}

static uint32_t retry_after_ms(const sched_fn_t *fn)
{
    uint64_t slots = (uint64_t)(fn->n_idle + fn->n_busy + fn->n_creating) * fn->concurrency;
    if (slots == 0)
        slots = 1;
    uint64_t ms = fn->avg_run_ns * (fn_queued(fn) / slots + 1) / MS;
    return ms < 100 ? 100 : ms > 60000 ? 60000 : (uint32_t)ms;
}

static void reject(sched_t *s, sched_inv_t *inv, sched_reject_reason_t why, uint32_t retry_ms)
{
    inv->fn->usage.rejected++;
    inv->fn->tenant->usage.rejected++;
    idmap_del(&s->invs, inv->id);
    s->pv.reject(s->pv.ctx, inv->id, inv->opaque, why, retry_ms);
    free(inv);
}

static void reject_queue(sched_t *s, sched_fn_t *fn, sched_reject_reason_t why)
{
    while (fn_queued(fn) > 0) {
        sched_inv_t *inv = queue_head(fn);
        unqueue(s, inv);
        reject(s, inv, why, why == SCHED_REJECT_START_FAILED ? 1000 : 0);
    }
    wait_clear(s, fn);
    observe(s, fn);
}

/* x has a free slot (it just became ready, or an invocation on it ended):
 * it takes fn's queue, unless capacity is contended and the round robin says
 * another tenant's turn has come — then an empty x is destroyed to make room
 * for that tenant. A sandbox that just became ready is not contested: the
 * round robin already chose its function when it was started. */
static void offer(sched_t *s, sched_sbx_t *x, bool contest)
{
    sched_fn_t *fn = x->fn;
    sched_tenant_t *t = fn->tenant;
    while (x->in_flight < fn->concurrency && fn_queued(fn) > 0) {
        if (contest && contended(s, fn)) {
            if (uncovered(fn) > 0)
                wait_set(s, fn, WAIT_HOST);
            int lvl = ring_level(s);
            sched_tenant_t *w = drr_peek(s, lvl);
            if (w != t && x->in_flight == 0) {
                pool_destroy(s, x, SCHED_DESTROY_FAIRNESS, true);
                after_release(s, fn, t);
                return;
            }
            if (w == t)
                drr_charge(w, lvl);
        }
        dispatch(s, queue_head(fn), x);
    }
    refresh_wait(s, fn);
    if (x->in_flight > 0)
        return;
    pool_place(s, x);
    wake_tenant(s, t);
    if (s->n_waiting_host > 0)
        capacity_freed(s);
}

/* An invocation left x: destroy it if it drains, else offer the slot. */
static void slot_freed(sched_t *s, sched_sbx_t *x)
{
    if (x->state == SBX_DRAINING) {
        if (x->in_flight == 0) {
            sched_fn_t *fn = x->fn;
            sched_tenant_t *t = x->tenant;
            pool_destroy(s, x, x->why, true);
            after_release(s, fn, t);
        }
        return;
    }
    offer(s, x, true);
}

/* --- creation and registration --- */

sched_t *sched_new(const sched_config_t *cfg, const sched_provider_t *provider, uint64_t now,
                   hearth_error_t *err)
{
    if (cfg->max_sandboxes == 0 || cfg->memory_budget_mb == 0 || cfg->prewarm_min > cfg->prewarm_max) {
        hearth_error_set(err, EINVAL, "scheduler: max_sandboxes and memory_budget_mb must be > 0, "
                                      "prewarm_min <= prewarm_max");
        return NULL;
    }
    if (provider->spawn == NULL || provider->spawn_generic == NULL || provider->dispatch == NULL ||
        provider->destroy == NULL || provider->reject == NULL) {
        hearth_error_set(err, EINVAL, "scheduler: provider callbacks missing");
        return NULL;
    }
    cleanup_free sched_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        hearth_error_set(err, ENOMEM, "scheduler");
        return NULL;
    }
    s->cfg = *cfg;
    if (s->cfg.max_start_failures == 0)
        s->cfg.max_start_failures = 3;
    s->pv = *provider;
    if (sched_scaler_cfg_init(&s->scfg, cfg->stable_window_ms * MS, cfg->panic_window_ms * MS) < 0) {
        hearth_error_set(err, EINVAL, "scheduler: windows must be > 0 with panic <= stable");
        return NULL;
    }
    if (idmap_init(&s->tenants, 16) < 0 || idmap_init(&s->fns, 64) < 0 || idmap_init(&s->sbxs, 256) < 0 ||
        idmap_init(&s->invs, 1024) < 0) {
        idmap_free(&s->tenants);
        idmap_free(&s->fns);
        idmap_free(&s->sbxs);
        hearth_error_set(err, ENOMEM, "scheduler");
        return NULL;
    }
    s->now = now;
    link_init(&s->idle_lru);
    link_init(&s->generic_ready);
    link_init(&s->generic_creating);
    link_init(&s->timeouts);
    link_init(&s->dead);
    for (int l = 0; l < 2; l++) {
        link_init(&s->ring[l]);
        s->ring_cur[l] = &s->ring[l];
    }
    s->prewarm_target = cfg->prewarm_min;
    sched_scaler_init(&s->start_rate, &s->scfg, now);
    return steal_pointer(&s);
}

int sched_tenant_put(sched_t *s, uint64_t id, const sched_tenant_spec_t *spec, hearth_error_t *err)
{
    if (spec->weight == 0 || spec->max_concurrency == 0)
        return hearth_error_set(err, EINVAL, "tenant %llu: weight and max_concurrency must be >= 1",
                                (unsigned long long)id);
    sched_tenant_t *t = idmap_get(&s->tenants, id);
    if (t == NULL) {
        t = calloc(1, sizeof(*t));
        if (t == NULL || idmap_put(&s->tenants, id, t) < 0) {
            free(t);
            return hearth_error_set(err, ENOMEM, "tenant %llu", (unsigned long long)id);
        }
        t->id = id;
        link_init(&t->idle_lru);
        link_init(&t->tenant_wait);
        for (int l = 0; l < 2; l++) {
            link_init(&t->blocked[l]);
            link_init(&t->ring_link[l]);
        }
    }
    snprintf(t->name, sizeof(t->name), "%s", spec->name ? spec->name : "");
    t->weight = spec->weight;
    bool raised = spec->max_concurrency > t->max_concurrency;
    t->max_concurrency = spec->max_concurrency;
    t->budget.limit_ms = spec->cpu_ms_per_minute;
    if (raised)
        wake_tenant(s, t);
    return 0;
}

int sched_tenant_remove(sched_t *s, uint64_t id, hearth_error_t *err)
{
    sched_tenant_t *t = idmap_get(&s->tenants, id);
    if (t == NULL)
        return hearth_error_set(err, ENOENT, "tenant %llu", (unsigned long long)id);
    if (t->n_fns > 0)
        return hearth_error_set(err, EBUSY, "tenant `%s` still has %u functions", t->name, t->n_fns);
    idmap_del(&s->tenants, id);
    free(t);
    return 0;
}

static void drain_fn(sched_t *s, sched_fn_t *fn)
{
    while (!link_empty(&fn->idle))
        pool_destroy(s, container_of(fn->idle.next, sched_sbx_t, fn_link), SCHED_DESTROY_DRAINED, true);
    sched_link_t *lists[] = {&fn->avail, &fn->full, &fn->creating};
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
        while (!link_empty(lists[i]))
            pool_make_draining(s, container_of(lists[i]->next, sched_sbx_t, fn_link), SCHED_DESTROY_DRAINED);
}

static void scale_eval(sched_t *s, sched_fn_t *fn);

int sched_fn_put(sched_t *s, uint64_t id, const sched_fn_spec_t *spec, uint64_t now, hearth_error_t *err)
{
    sched_tenant_t *t = idmap_get(&s->tenants, spec->tenant_id);
    if (t == NULL)
        return hearth_error_set(err, ENOENT, "function %llu: no tenant %llu", (unsigned long long)id,
                                (unsigned long long)spec->tenant_id);
    if (spec->concurrency == 0 || spec->max_sandboxes == 0 || spec->min_warm > spec->max_sandboxes)
        return hearth_error_set(err, EINVAL, "function `%s`: need concurrency >= 1, max_sandboxes >= 1, "
                                             "min_warm <= max_sandboxes", spec->name ? spec->name : "");
    if (spec->memory_mb > s->cfg.memory_budget_mb)
        return hearth_error_set(err, EINVAL, "function `%s`: memory %u MiB exceeds the host budget %llu MiB",
                                spec->name ? spec->name : "", spec->memory_mb,
                                (unsigned long long)s->cfg.memory_budget_mb);
    if (now > s->now)
        s->now = now;
    sched_fn_t *fn = idmap_get(&s->fns, id);
    bool drain = false;
    if (fn == NULL) {
        fn = calloc(1, sizeof(*fn));
        if (fn == NULL || idmap_put(&s->fns, id, fn) < 0) {
            free(fn);
            return hearth_error_set(err, ENOMEM, "function %llu", (unsigned long long)id);
        }
        fn->id = id;
        fn->tenant = t;
        pool_fn_init(fn);
        sched_scaler_init(&fn->sc, &s->scfg, s->now);
        fn->avg_run_ns = 100 * MS;
        t->n_fns++;
    } else {
        if (fn->tenant != t)
            return hearth_error_set(err, EINVAL, "function `%s` belongs to another tenant", fn->name);
        drain = fn->version != spec->version || fn->memory_mb != spec->memory_mb ||
                fn->concurrency != spec->concurrency;
    }
    snprintf(fn->name, sizeof(fn->name), "%s", spec->name ? spec->name : "");
    if (drain)
        drain_fn(s, fn);
    fn->version = spec->version;
    fn->memory_mb = spec->memory_mb;
    fn->concurrency = spec->concurrency;
    fn->min_warm = spec->min_warm;
    fn->no_prewarm = spec->no_prewarm;
    fn->max_sandboxes = spec->max_sandboxes;
    fn->keep_alive_ns = (uint64_t)spec->keep_alive_ms * MS;
    if (drain) {
        fn->start_failures = 0;
        fn->fail_streak = 0; /* the new version may start */
        fn->retry_at = 0;
        set_why(fn, WHY_DRAINING, fn->version, fn->n_draining);
    }
    /* Queued calls now go to the new version; the drained idle sandboxes and
     * a raised max_sandboxes may both have made room. */
    after_release(s, fn, t);
    scale_eval(s, fn);
    return 0;
}

int sched_fn_remove(sched_t *s, uint64_t id, uint64_t now, hearth_error_t *err)
{
    sched_fn_t *fn = idmap_del(&s->fns, id);
    if (fn == NULL)
        return hearth_error_set(err, ENOENT, "function %llu", (unsigned long long)id);
    if (now > s->now)
        s->now = now;
    reject_queue(s, fn, SCHED_REJECT_REMOVED);
    fn->removed = true;
    heap_disarm(&s->timers, &fn->timer);
    drain_fn(s, fn);
    link_push_tail(&s->dead, &fn->dead_link);
    after_release(s, NULL, fn->tenant);
    return 0;
}

/* --- events --- */

int sched_submit(sched_t *s, uint64_t inv_id, uint64_t fn_id, sched_prio_t prio, void *opaque, uint64_t now,
                 hearth_error_t *err)
{
    sched_fn_t *fn = idmap_get(&s->fns, fn_id);
    if (fn == NULL)
        return hearth_error_set(err, ENOENT, "function %llu", (unsigned long long)fn_id);
    if (idmap_get(&s->invs, inv_id) != NULL)
        return hearth_error_set(err, EEXIST, "invocation %llu", (unsigned long long)inv_id);
    if (now > s->now)
        s->now = now;
    sched_tenant_t *t = fn->tenant;
    uint32_t retry_ms = 0;
    if (!sched_budget_allows(&t->budget, s->now, &retry_ms)) {
        fn->usage.rejected++;
        t->usage.rejected++;
        s->pv.reject(s->pv.ctx, inv_id, opaque, SCHED_REJECT_CPU_BUDGET, retry_ms);
        return 0;
    }
    sched_inv_t *inv = malloc(sizeof(*inv));
    if (inv == NULL || idmap_put(&s->invs, inv_id, inv) < 0) {
        free(inv);
        return hearth_error_set(err, ENOMEM, "invocation %llu", (unsigned long long)inv_id);
    }
    inv->id = inv_id;
    inv->opaque = opaque;
    inv->fn = fn;
    inv->sbx = NULL;
    inv->prio = prio == SCHED_ASYNC ? SCHED_ASYNC : SCHED_SYNC;
    inv->submitted = s->now;
    inv->started = 0;
    link_init(&inv->qlink);
    link_init(&inv->tlink);

    sched_sbx_t *x = pool_warm_slot(fn);
    if (x != NULL) {
        inv->state = INV_RUNNING; /* never queued: nothing for dispatch to unlink */
        dispatch(s, inv, x);
        observe(s, fn);
        return 0;
    }
    if (fn_queued(fn) >= s->cfg.queue_max) {
        set_why(fn, WHY_QUEUE_FULL, s->cfg.queue_max, 0);
        reject(s, inv, SCHED_REJECT_QUEUE_FULL, retry_after_ms(fn));
        return 0;
    }
    enqueue(s, inv);
    pump(s, fn);
    observe(s, fn);
    return 0;
}

int sched_sandbox_ready(sched_t *s, uint64_t sandbox_id, uint64_t now, hearth_error_t *err)
{
    sched_sbx_t *x = idmap_get(&s->sbxs, sandbox_id);
    if (x == NULL || x->state != SBX_CREATING)
        return hearth_error_set(err, x ? EINVAL : ENOENT, "sandbox %llu is not starting",
                                (unsigned long long)sandbox_id);
    if (now > s->now)
        s->now = now;
    if (x->fn == NULL) {
        pool_generic_ready(s, x);
        capacity_freed(s);
        return 0;
    }
    if (x->stale) {
        sched_fn_t *fn = x->fn;
        sched_tenant_t *t = x->tenant;
        pool_destroy(s, x, x->why, true);
        after_release(s, fn, t);
        return 0;
    }
    x->fn->start_failures = 0;
    x->fn->fail_streak = 0;
    x->fn->retry_at = 0;
    x->ready_at = s->now;
    offer(s, x, false);
    return 0;
}

int sched_sandbox_failed(sched_t *s, uint64_t sandbox_id, uint64_t now, hearth_error_t *err)
{
    sched_sbx_t *x = idmap_get(&s->sbxs, sandbox_id);
    if (x == NULL || x->state != SBX_CREATING)
        return hearth_error_set(err, x ? EINVAL : ENOENT, "sandbox %llu is not starting",
                                (unsigned long long)sandbox_id);
    if (now > s->now)
        s->now = now;
    sched_fn_t *fn = x->fn;
    sched_tenant_t *t = x->tenant;
    bool stale = x->stale;
    pool_destroy(s, x, SCHED_DESTROY_CRASHED, false);
    if (fn != NULL && !stale && !fn->removed) {
        /* Starts for min_warm or desired back off: one bucket after the
         * first failure, doubling up to a minute. A queued call still
         * tries at once (and gets the failure). */
        uint32_t shift = fn->fail_streak < 6 ? fn->fail_streak : 6;
        uint64_t wait = s->scfg.bucket_ns << shift;
        fn->fail_streak++;
        fn->retry_at = s->now + (wait < MAX_BACKOFF_NS ? wait : MAX_BACKOFF_NS);
        set_why(fn, WHY_BACKOFF, fn->fail_streak, (uint32_t)((fn->retry_at - s->now + SEC - 1) / SEC));
    }
    if (fn != NULL && !stale && !fn->removed && ++fn->start_failures >= s->cfg.max_start_failures) {
        /* A function whose sandboxes keep failing would otherwise spin
         * start/fail until its queue times out. */
        set_why(fn, WHY_START_FAILED, fn->start_failures, 0);
        fn->start_failures = 0;
        reject_queue(s, fn, SCHED_REJECT_START_FAILED);
    }
    after_release(s, fn, t);
    return 0;
}

int sched_sandbox_died(sched_t *s, uint64_t sandbox_id, uint64_t now, hearth_error_t *err)
{
    sched_sbx_t *x = idmap_get(&s->sbxs, sandbox_id);
    if (x == NULL)
        return hearth_error_set(err, ENOENT, "sandbox %llu", (unsigned long long)sandbox_id);
    if (x->state == SBX_CREATING)
        return sched_sandbox_failed(s, sandbox_id, now, err);
    if (now > s->now)
        s->now = now;
    if (x->state == SBX_IDLE) {
        sched_fn_t *fn = x->fn;
        sched_tenant_t *t = x->tenant;
        pool_destroy(s, x, SCHED_DESTROY_CRASHED, true);
        after_release(s, fn, t);
        return 0;
    }
    pool_make_draining(s, x, SCHED_DESTROY_CRASHED);
    return 0;
}

int sched_sandbox_overhead(sched_t *s, uint64_t sandbox_id, uint64_t cpu_ns, hearth_error_t *err)
{
    sched_sbx_t *x = idmap_get(&s->sbxs, sandbox_id);
    if (x == NULL)
        return hearth_error_set(err, ENOENT, "sandbox %llu", (unsigned long long)sandbox_id);
    if (x->fn == NULL) {
        x->overhead_ns += cpu_ns;
        return 0;
    }
    x->fn->usage.overhead_cpu_ns += cpu_ns;
    x->tenant->usage.overhead_cpu_ns += cpu_ns;
    return 0;
}

int sched_fn_overhead(sched_t *s, uint64_t fn_id, uint64_t cpu_ns, hearth_error_t *err)
{
    sched_fn_t *fn = idmap_get(&s->fns, fn_id);
    if (fn == NULL)
        return hearth_error_set(err, ENOENT, "function %llu", (unsigned long long)fn_id);
    fn->usage.overhead_cpu_ns += cpu_ns;
    fn->tenant->usage.overhead_cpu_ns += cpu_ns;
    return 0;
}

int sched_invocation_done(sched_t *s, uint64_t inv_id, uint64_t cpu_ns, sched_done_t how, uint64_t now,
                          hearth_error_t *err)
{
    sched_inv_t *inv = idmap_get(&s->invs, inv_id);
    if (inv == NULL || inv->state != INV_RUNNING)
        return hearth_error_set(err, inv ? EINVAL : ENOENT, "invocation %llu is not running",
                                (unsigned long long)inv_id);
    idmap_del(&s->invs, inv_id);
    if (now > s->now)
        s->now = now;
    sched_sbx_t *x = inv->sbx;
    sched_fn_t *fn = inv->fn;
    sched_tenant_t *t = fn->tenant;
    uint64_t dur = s->now - inv->started;
    bool failed = how != SCHED_DONE_OK;
    sched_usage_charge(&fn->usage, cpu_ns, x->memory_mb, dur, fn->concurrency, failed);
    sched_usage_charge(&t->usage, cpu_ns, x->memory_mb, dur, fn->concurrency, failed);
    sched_budget_spend(&t->budget, cpu_ns, s->now);
    fn->avg_run_ns = fn->avg_run_ns - fn->avg_run_ns / 8 + dur / 8;
    x->in_flight--;
    fn->in_flight--;
    t->in_flight--;
    s->in_flight--;
    free(inv);
    if (how == SCHED_DONE_CRASHED)
        pool_make_draining(s, x, SCHED_DESTROY_CRASHED);
    slot_freed(s, x);
    observe(s, fn);
    return 0;
}

/* --- timers --- */

/* Scaling decision for fn: runs every bucket while the function is active. */
static void scale_eval(sched_t *s, sched_fn_t *fn)
{
    if (fn->removed)
        return;
    uint32_t ready = fn->n_idle + fn->n_busy;
    sched_scaler_view_t view;
    uint32_t desired = sched_scaler_decide(&fn->sc, &s->scfg, s->now, fn->concurrency, ready, fn->min_warm,
                                           fn->max_sandboxes, &view);
    uint32_t live = fn->n_creating + fn->n_idle + fn->n_busy;
    uint32_t started = 0, removed = 0;
    bool backoff = s->now < fn->retry_at && fn_queued(fn) == 0;
    /* Scale up without evicting: proactive sandboxes must not push out
     * other functions' warm ones (that would just move the cold start). */
    while (!backoff && live + started < desired && try_start(s, fn, 0) == START_OK)
        started++;
    if (!fn->sc.panic) {
        while (live - removed > desired && !link_empty(&fn->idle)) {
            sched_sbx_t *x = container_of(fn->idle.prev, sched_sbx_t, fn_link);
            if (x->idle_since + fn->keep_alive_ns > s->now)
                break;
            pool_destroy(s, x, SCHED_DESTROY_KEEP_ALIVE, true);
            removed++;
        }
    }
    if (backoff && live < desired)
        set_why(fn, WHY_BACKOFF, fn->fail_streak, (uint32_t)((fn->retry_at - s->now + SEC - 1) / SEC));
    else if (started)
        set_why(fn, WHY_SCALE_UP, started, desired);
    else if (fn->sc.panic)
        set_why(fn, view.want_panic >= 2 * (ready ? ready : 1) ? WHY_PANIC : WHY_HOLD, desired, ready);
    else if (removed)
        set_why(fn, WHY_SCALE_DOWN, removed, desired);
    else if (live >= desired && fn->wait == WAIT_NONE && fn->why != WHY_START_FAILED &&
             fn->why != WHY_QUEUE_FULL)
        set_why(fn, WHY_STEADY, desired, live);
    if (removed) {
        wake_tenant(s, fn->tenant);
        capacity_freed(s);
    }
    /* Keep evaluating while anything is observed, the windows still hold
     * history, or min_warm is not yet met; otherwise sleep until an event. */
    if (backoff && live < desired)
        arm_fn_timer(s, fn, fn->retry_at);
    else if (!sched_scaler_quiet(&fn->sc) || live + started < desired)
        arm_fn_timer(s, fn, next_bucket(s));
}

/* x has idled keep_alive: it goes if its function has more than it wants. */
static void idle_expired(sched_t *s, sched_sbx_t *x)
{
    sched_fn_t *fn = x->fn;
    uint32_t live = fn->n_creating + fn->n_idle + fn->n_busy;
    if (!fn->sc.panic && live > fn->sc.desired) {
        sched_tenant_t *t = x->tenant;
        pool_destroy(s, x, SCHED_DESTROY_KEEP_ALIVE, true);
        set_why(fn, WHY_SCALE_DOWN, 1, fn->sc.desired);
        after_release(s, fn, t);
        return;
    }
    /* Needed (min_warm or desired): look again after another keep-alive. */
    heap_arm(&s->timers, &x->timer, s->now + (fn->keep_alive_ns ? fn->keep_alive_ns : s->scfg.bucket_ns));
}

static void pool_tick(sched_t *s)
{
    sched_scaler_advance(&s->start_rate, &s->scfg, s->now);
    /* Reactive prewarming (OpenWhisk-style): keep about as many generic
     * sandboxes as there were starts in the last panic window. */
    uint64_t starts = s->start_rate.panic_sum / s->scfg.bucket_ns;
    uint32_t target = starts > s->cfg.prewarm_max ? s->cfg.prewarm_max : (uint32_t)starts;
    if (target < s->cfg.prewarm_min)
        target = s->cfg.prewarm_min;
    s->prewarm_target = target;
    while (s->n_generic_ready + s->n_generic_creating < target && s->n_waiting_host == 0 &&
           s->n_sbx + 1 <= s->cfg.max_sandboxes && s->mem_mb + s->cfg.generic_memory_mb <= s->cfg.memory_budget_mb) {
        sched_sbx_t *x = pool_new_sbx(s, NULL);
        if (x == NULL)
            break;
        s->pv.spawn_generic(s->pv.ctx, x->id);
    }
    if (s->n_generic_ready > 0 && s->n_generic_ready + s->n_generic_creating > target) {
        sched_sbx_t *x = container_of(s->generic_ready.prev, sched_sbx_t, fn_link);
        pool_destroy(s, x, SCHED_DESTROY_POOL, true);
        capacity_freed(s);
    }
}

void sched_tick(sched_t *s, uint64_t now)
{
    if (now > s->now)
        s->now = now;
    uint64_t timeout = s->cfg.queue_timeout_ms * MS;
    while (!link_empty(&s->timeouts)) {
        sched_inv_t *inv = container_of(s->timeouts.next, sched_inv_t, tlink);
        if (inv->submitted + timeout > s->now)
            break;
        sched_fn_t *fn = inv->fn;
        unqueue(s, inv);
        reject(s, inv, SCHED_REJECT_QUEUE_TIMEOUT, retry_after_ms(fn));
        refresh_wait(s, fn);
        observe(s, fn);
    }
    while (s->timers.n > 0 && s->timers.v[0]->when <= s->now) {
        sched_timer_t *tm = s->timers.v[0];
        heap_disarm(&s->timers, tm);
        if (tm->kind == TIMER_IDLE)
            idle_expired(s, container_of(tm, sched_sbx_t, timer));
        else
            scale_eval(s, container_of(tm, sched_fn_t, timer));
    }
    pool_tick(s);
    for (sched_link_t *l = s->dead.next, *nx; l != &s->dead; l = nx) {
        nx = l->next;
        sched_fn_t *fn = container_of(l, sched_fn_t, dead_link);
        if (fn->n_sbx == 0 && fn->in_flight == 0) {
            link_unlink(l);
            fn->tenant->n_fns--;
            free(fn);
        }
    }
}

uint64_t sched_next_deadline(const sched_t *s)
{
    uint64_t d = s->timers.n ? s->timers.v[0]->when : UINT64_MAX;
    if (!link_empty(&s->timeouts)) {
        const sched_inv_t *inv = container_of(s->timeouts.next, sched_inv_t, tlink);
        uint64_t q = inv->submitted + s->cfg.queue_timeout_ms * MS;
        if (q < d)
            d = q;
    }
    return d;
}

void sched_free(sched_t *s)
{
    if (s == NULL)
        return;
    /* Queued invocations first (rejected), then running ones (forgotten). */
    while (!link_empty(&s->timeouts)) {
        sched_inv_t *inv = container_of(s->timeouts.next, sched_inv_t, tlink);
        unqueue(s, inv);
        reject(s, inv, SCHED_REJECT_SHUTDOWN, 0);
    }
    void *v;
    for (uint32_t i = 0; idmap_next(&s->invs, &i, &v);)
        free(v);
    /* Destroying reshuffles the id map, so collect the sandboxes first. */
    uint32_t n = s->sbxs.n, k = 0;
    sched_sbx_t **all = calloc(n ? n : 1, sizeof(*all));
    for (uint32_t i = 0; all != NULL && idmap_next(&s->sbxs, &i, &v);)
        all[k++] = v;
    for (uint32_t i = 0; i < k; i++) {
        all[i]->in_flight = 0;
        pool_destroy(s, all[i], SCHED_DESTROY_SHUTDOWN, true);
    }
    free(all);
    for (uint32_t i = 0; idmap_next(&s->fns, &i, &v);)
        free(v);
    while (!link_empty(&s->dead)) {
        sched_link_t *l = s->dead.next;
        link_unlink(l);
        free(container_of(l, sched_fn_t, dead_link));
    }
    for (uint32_t i = 0; idmap_next(&s->tenants, &i, &v);)
        free(v);
    idmap_free(&s->tenants);
    idmap_free(&s->fns);
    idmap_free(&s->sbxs);
    idmap_free(&s->invs);
    free(s->timers.v);
    free(s);
}

/* --- introspection --- */

static void format_why(const sched_fn_t *fn, char *buf, size_t len)
{
    unsigned a = fn->why_a, b = fn->why_b;
    switch (fn->why) {
    case WHY_NONE:
        snprintf(buf, len, "no decision yet");
        break;
    case WHY_STEADY:
        snprintf(buf, len, "steady: desired %u, live %u", a, b);
        break;
    case WHY_SCALE_UP:
        snprintf(buf, len, "scaling up: started %u towards desired %u", a, b);
        break;
    case WHY_PANIC:
        snprintf(buf, len, "panic: panic-window demand needs %u sandboxes, %u ready", a, b);
        break;
    case WHY_HOLD:
        snprintf(buf, len, "holding %u after panic until a stable window passes (%u ready)", a, b);
        break;
    case WHY_SCALE_DOWN:
        snprintf(buf, len, "scaling down: removed %u idle past keep-alive, desired %u", a, b);
        break;
    case WHY_LIMIT_FN:
        snprintf(buf, len, "queued: function max_sandboxes %u reached", a);
        break;
    case WHY_LIMIT_TENANT:
        snprintf(buf, len, "queued: tenant max_concurrency %u reached", a);
        break;
    case WHY_LIMIT_HOST:
        snprintf(buf, len, "queued: host full (max_sandboxes %u, memory %u MiB) or its turn not come", a, b);
        break;
    case WHY_QUEUE_FULL:
        snprintf(buf, len, "rejecting: queue full at %u", a);
        break;
    case WHY_START_FAILED:
        snprintf(buf, len, "rejected the queue after %u consecutive failed starts", a);
        break;
    case WHY_BACKOFF:
        snprintf(buf, len, "backing off after %u consecutive failed starts: next start in %u s", a, b);
        break;
    case WHY_DRAINING:
        snprintf(buf, len, "updated to version %u, draining %u old sandboxes", a, b);
        break;
    }
}

int sched_fn_status(const sched_t *s, uint64_t fn_id, sched_fn_status_t *out, hearth_error_t *err)
{
    const sched_fn_t *fn = idmap_get(&s->fns, fn_id);
    if (fn == NULL)
        return hearth_error_set(err, ENOENT, "function %llu", (unsigned long long)fn_id);
    memset(out, 0, sizeof(*out));
    out->creating = fn->n_creating;
    out->idle = fn->n_idle;
    out->busy = fn->n_busy;
    out->draining = fn->n_draining;
    out->queued = fn_queued(fn);
    out->in_flight = fn->in_flight;
    out->desired = fn->sc.desired;
    out->panic = fn->sc.panic;
    sched_scaler_t sc = fn->sc;
    sched_scaler_view_t view;
    sched_scaler_advance(&sc, &s->scfg, s->now);
    sched_scaler_view(&sc, &s->scfg, s->now, fn->concurrency, &view);
    out->avg_stable = view.avg_stable;
    out->avg_panic = view.avg_panic;
    format_why(fn, out->reason, sizeof(out->reason));
    return 0;
}

int sched_tenant_status(const sched_t *s, uint64_t tenant_id, sched_tenant_status_t *out, hearth_error_t *err)
{
    const sched_tenant_t *t = idmap_get(&s->tenants, tenant_id);
    if (t == NULL)
        return hearth_error_set(err, ENOENT, "tenant %llu", (unsigned long long)tenant_id);
    out->sandboxes = t->n_sbx;
    out->in_flight = t->in_flight;
    out->queued = t->queued;
    return 0;
}

void sched_host_status(const sched_t *s, sched_host_status_t *out)
{
    memset(out, 0, sizeof(*out));
    out->sandboxes = s->n_sbx;
    out->memory_mb = s->mem_mb;
    out->generic_ready = s->n_generic_ready;
    out->generic_creating = s->n_generic_creating;
    out->prewarm_target = s->prewarm_target;
    out->queued = s->queued;
    out->in_flight = s->in_flight;
    out->waiting_fns = s->n_waiting_host;
    out->overhead = s->host_overhead;
}

int sched_tenant_usage(const sched_t *s, uint64_t tenant_id, sched_usage_t *out, hearth_error_t *err)
{
    const sched_tenant_t *t = idmap_get(&s->tenants, tenant_id);
    if (t == NULL)
        return hearth_error_set(err, ENOENT, "tenant %llu", (unsigned long long)tenant_id);
    *out = t->usage;
    return 0;
}

int sched_tenant_usage_load(sched_t *s, uint64_t tenant_id, const sched_usage_t *in, hearth_error_t *err)
{
    sched_tenant_t *t = idmap_get(&s->tenants, tenant_id);
    if (t == NULL)
        return hearth_error_set(err, ENOENT, "tenant %llu", (unsigned long long)tenant_id);
    t->usage = *in;
    return 0;
}

int sched_fn_usage(const sched_t *s, uint64_t fn_id, sched_usage_t *out, hearth_error_t *err)
{
    const sched_fn_t *fn = idmap_get(&s->fns, fn_id);
    if (fn == NULL)
        return hearth_error_set(err, ENOENT, "function %llu", (unsigned long long)fn_id);
    *out = fn->usage;
    return 0;
}

int sched_fn_usage_load(sched_t *s, uint64_t fn_id, const sched_usage_t *in, hearth_error_t *err)
{
    sched_fn_t *fn = idmap_get(&s->fns, fn_id);
    if (fn == NULL)
        return hearth_error_set(err, ENOENT, "function %llu", (unsigned long long)fn_id);
    fn->usage = *in;
    return 0;
}

const char *sched_start_name(sched_start_t kind)
{
    switch (kind) {
    case SCHED_START_COLD:
        return "cold";
    case SCHED_START_PREWARM:
        return "prewarm";
    case SCHED_START_WARM:
        return "warm";
    }
    return "?";
}

const char *sched_reject_name(sched_reject_reason_t reason)
{
    switch (reason) {
    case SCHED_REJECT_QUEUE_FULL:
        return "queue_full";
    case SCHED_REJECT_QUEUE_TIMEOUT:
        return "queue_timeout";
    case SCHED_REJECT_CPU_BUDGET:
        return "cpu_budget";
    case SCHED_REJECT_REMOVED:
        return "removed";
    case SCHED_REJECT_START_FAILED:
        return "start_failed";
    case SCHED_REJECT_SHUTDOWN:
        return "shutdown";
    }
    return "?";
}

const char *sched_destroy_name(sched_destroy_reason_t reason)
{
    switch (reason) {
    case SCHED_DESTROY_KEEP_ALIVE:
        return "keep_alive";
    case SCHED_DESTROY_EVICTED:
        return "evicted";
    case SCHED_DESTROY_FAIRNESS:
        return "fairness";
    case SCHED_DESTROY_DRAINED:
        return "drained";
    case SCHED_DESTROY_CRASHED:
        return "crashed";
    case SCHED_DESTROY_POOL:
        return "pool";
    case SCHED_DESTROY_SHUTDOWN:
        return "shutdown";
    }
    return "?";
}
