/* The scheduler against a simulated clock and a fake provider that checks
 * every action it receives: limits, double dispatch, lost invocations. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/scheduler.h"
#include "tests/harness.h"

#define MS 1000000ull /* ns */
#define SEC 1000000000ull
#define MAXFN 4096
#define MAXT 16

/* --- the fake provider --- */

typedef struct {
    bool alive, ready, generic, used;
    uint64_t ready_at; /* F.now when reported ready (or specialised) */
    uint64_t fn;
    uint32_t version, mem, in_flight;
    int destroy_reason;
} fsbx_t;

enum { INV_NONE, INV_SUBMITTED, INV_RUNNING, INV_DONE, INV_REJECTED };

typedef struct {
    int state;
    uint64_t fn, sbx, submitted, dispatched_at;
    int kind, reason;
    uint32_t retry_ms;
} finv_t;

typedef struct {
    bool deployed;
    uint64_t tenant;
    uint32_t version, mem, conc, max_sbx;
    uint32_t live; /* live sandboxes of this function, any version */
} ffn_t;

static struct {
    sched_config_t cfg;
    fsbx_t *sbx;
    size_t nsbx_cap;
    finv_t *inv;
    size_t ninv_cap;
    ffn_t fn[MAXFN];
    uint32_t tenant_max[MAXT], tenant_live[MAXT];
    uint32_t host_n;
    uint64_t host_mem;
    uint64_t *creating;
    size_t ncreating, creating_cap;
    uint64_t *running;
    size_t nrunning, running_cap;
    size_t spawns, generic_spawns, dispatches, destroys, rejects, prewarm_spawns;
    uint64_t last_spawn, last_destroy, last_dispatch_sbx;
    int last_destroy_reason, last_reject_reason, last_kind;
    uint32_t last_retry;
    long violations;
    char first_violation[1200];
    uint64_t now;
} F;

#define VIOLATION(...)                                                                       \
    do {                                                                                     \
        if (F.violations++ == 0)                                                             \
            snprintf(F.first_violation, sizeof(F.first_violation), __VA_ARGS__);            \
    } while (0)

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need < *cap)
        return p;
    size_t nc = *cap ? *cap : 1024;
    while (nc <= need)
        nc *= 2;
    p = realloc(p, nc * elem);
    memset((char *)p + *cap * elem, 0, (nc - *cap) * elem);
    *cap = nc;
    return p;
}

static fsbx_t *S(uint64_t id)
{
    F.sbx = grow(F.sbx, &F.nsbx_cap, id, sizeof(*F.sbx));
    return &F.sbx[id];
}

static finv_t *I(uint64_t id)
{
    F.inv = grow(F.inv, &F.ninv_cap, id, sizeof(*F.inv));
    return &F.inv[id];
}

static void push(uint64_t **v, size_t *n, size_t *cap, uint64_t x)
{
    *v = grow(*v, cap, *n, sizeof(**v));
    (*v)[(*n)++] = x;
}

static void drop(uint64_t *v, size_t *n, uint64_t x)
{
    for (size_t i = 0; i < *n; i++)
        if (v[i] == x) {
            v[i] = v[--*n];
            return;
        }
}

static void check_limits(void)
{
    if (F.host_n > F.cfg.max_sandboxes)
        VIOLATION("host has %u sandboxes > %u", F.host_n, F.cfg.max_sandboxes);
    if (F.host_mem > F.cfg.memory_budget_mb)
        VIOLATION("host memory %" PRIu64 " > %" PRIu64, F.host_mem, F.cfg.memory_budget_mb);
}

static void fake_spawn(void *ctx, uint64_t fn, uint32_t version, uint64_t id, bool from_prewarm)
{
    (void)ctx;
    fsbx_t *x = S(id);
    ffn_t *f = &F.fn[fn];
    if (from_prewarm) {
        if (!x->alive || !x->generic || !x->ready)
            VIOLATION("prewarm spawn of sandbox %" PRIu64 " that is not a ready generic", id);
        F.host_mem -= x->mem;
        F.prewarm_spawns++;
    } else {
        if (x->alive)
            VIOLATION("sandbox id %" PRIu64 " reused", id);
        F.host_n++;
        x->alive = true;
        push(&F.creating, &F.ncreating, &F.creating_cap, id);
    }
    if (from_prewarm)
        push(&F.creating, &F.ncreating, &F.creating_cap, id);
    x->generic = false;
    x->ready = false;
    x->fn = fn;
    x->version = version;
    x->mem = f->mem;
    x->used = false;
    F.host_mem += x->mem;
    f->live++;
    F.tenant_live[f->tenant]++;
    if (!f->deployed || version != f->version)
        VIOLATION("spawn for fn %" PRIu64 " v%u, current v%u deployed %d", fn, version, f->version, f->deployed);
    if (f->live > f->max_sbx)
        VIOLATION("fn %" PRIu64 " has %u sandboxes > max %u", fn, f->live, f->max_sbx);
    if (F.tenant_live[f->tenant] > F.tenant_max[f->tenant])
        VIOLATION("tenant %" PRIu64 " has %u sandboxes > %u", f->tenant, F.tenant_live[f->tenant],
                  F.tenant_max[f->tenant]);
    check_limits();
    F.spawns++;
    F.last_spawn = id;
}

static void fake_spawn_generic(void *ctx, uint64_t id)
{
    (void)ctx;
    fsbx_t *x = S(id);
    if (x->alive)
        VIOLATION("generic id %" PRIu64 " reused", id);
    memset(x, 0, sizeof(*x));
    x->alive = true;
    x->generic = true;
    x->mem = F.cfg.generic_memory_mb;
    F.host_n++;
    F.host_mem += x->mem;
    push(&F.creating, &F.ncreating, &F.creating_cap, id);
    check_limits();
    F.generic_spawns++;
}

static void fake_dispatch(void *ctx, uint64_t inv, void *opaque, uint64_t sbx, sched_start_t kind)
{
    (void)ctx;
    (void)opaque;
    finv_t *v = I(inv);
    fsbx_t *x = S(sbx);
    if (v->state != INV_SUBMITTED)
        VIOLATION("invocation %" PRIu64 " dispatched in state %d", inv, v->state);
    if (!x->alive || !x->ready || x->generic)
        VIOLATION("dispatch of %" PRIu64 " to sandbox %" PRIu64 " not ready", inv, sbx);
    if (x->fn != v->fn)
        VIOLATION("invocation of fn %" PRIu64 " on a sandbox of fn %" PRIu64, v->fn, x->fn);
    if (x->version != F.fn[x->fn].version)
        VIOLATION("invocation %" PRIu64 " on an old version sandbox", inv);
    if (++x->in_flight > F.fn[x->fn].conc)
        VIOLATION("sandbox %" PRIu64 " runs %u > concurrency", sbx, x->in_flight);
    /* Warm: the sandbox ran before, or was ready before the call came in
     * (started ahead of demand). Otherwise the call waited for its start. */
    bool warm = x->used || x->ready_at < v->submitted;
    if ((kind == SCHED_START_WARM) != warm)
        VIOLATION("start kind %d on a sandbox used=%d ready at %" PRIu64 ", call at %" PRIu64, kind, x->used,
                  x->ready_at, v->submitted);
    x->used = true;
    v->state = INV_RUNNING;
    v->sbx = sbx;
    v->kind = kind;
    v->dispatched_at = F.now;
    push(&F.running, &F.nrunning, &F.running_cap, inv);
    F.dispatches++;
    F.last_kind = kind;
    F.last_dispatch_sbx = sbx;
}

static void fake_destroy(void *ctx, uint64_t sbx, sched_destroy_reason_t why)
{
    (void)ctx;
    fsbx_t *x = S(sbx);
    if (!x->alive)
        VIOLATION("destroy of dead sandbox %" PRIu64, sbx);
    if (x->in_flight)
        VIOLATION("destroy of sandbox %" PRIu64 " running %u", sbx, x->in_flight);
    if (!x->ready)
        VIOLATION("destroy of starting sandbox %" PRIu64, sbx);
    x->alive = false;
    x->destroy_reason = why;
    F.host_n--;
    F.host_mem -= x->mem;
    if (!x->generic) {
        F.fn[x->fn].live--;
        F.tenant_live[F.fn[x->fn].tenant]--;
    }
    F.destroys++;
    F.last_destroy = sbx;
    F.last_destroy_reason = why;
}

static void fake_reject(void *ctx, uint64_t inv, void *opaque, sched_reject_reason_t why, uint32_t retry)
{
    (void)ctx;
    (void)opaque;
    finv_t *v = I(inv);
    if (v->state != INV_SUBMITTED)
        VIOLATION("invocation %" PRIu64 " rejected in state %d", inv, v->state);
    v->state = INV_REJECTED;
    v->reason = why;
    v->retry_ms = retry;
    F.rejects++;
    F.last_reject_reason = why;
    F.last_retry = retry;
}

static sched_t *setup(const sched_config_t *cfg)
{
    free(F.sbx);
    free(F.inv);
    free(F.creating);
    free(F.running);
    memset(&F, 0, sizeof(F));
    F.cfg = *cfg;
    sched_provider_t pv = {fake_spawn, fake_spawn_generic, fake_dispatch, fake_destroy, fake_reject, NULL};
    hearth_error_t err;
    sched_t *s = sched_new(cfg, &pv, 0, &err);
    if (s == NULL)
        printf("# sched_new: %s\n", err.msg);
    return s;
}

static void tenant(sched_t *s, uint64_t id, uint32_t weight, uint32_t max_conc, uint64_t budget)
{
    sched_tenant_spec_t t = {"t", weight, max_conc, budget};
    hearth_error_t err;
    if (sched_tenant_put(s, id, &t, &err) < 0)
        printf("# tenant: %s\n", err.msg);
    F.tenant_max[id] = max_conc;
}

static int deploy(sched_t *s, uint64_t id, uint64_t t, uint32_t version, uint32_t mem, uint32_t conc,
                  uint32_t min_warm, uint32_t max_sbx, uint32_t keep_ms)
{
    sched_fn_spec_t f = {t, "f", version, mem, conc, min_warm, max_sbx, keep_ms, false};
    ffn_t *ff = &F.fn[id];
    /* The fake must know the new spec before the scheduler acts on it. */
    ffn_t saved = *ff;
    ff->deployed = true;
    ff->tenant = t;
    ff->version = version;
    ff->mem = mem;
    ff->conc = conc;
    ff->max_sbx = max_sbx;
    hearth_error_t err;
    int rc = sched_fn_put(s, id, &f, F.now, &err);
    if (rc < 0) {
        *ff = saved;
        printf("# deploy: %s\n", err.msg);
    }
    return rc;
}

static int submit(sched_t *s, uint64_t inv, uint64_t fn, sched_prio_t prio)
{
    finv_t *v = I(inv);
    v->state = INV_SUBMITTED;
    v->fn = fn;
    v->submitted = F.now;
    hearth_error_t err;
    int rc = sched_submit(s, inv, fn, prio, NULL, F.now, &err);
    if (rc < 0)
        v->state = INV_NONE;
    return rc;
}

static void ready(sched_t *s, uint64_t id)
{
    hearth_error_t err;
    drop(F.creating, &F.ncreating, id);
    S(id)->ready = true;
    S(id)->ready_at = F.now;
    if (sched_sandbox_ready(s, id, F.now, &err) < 0)
        VIOLATION("ready %" PRIu64 ": %s", id, err.msg);
}

static void ready_all(sched_t *s)
{
    while (F.ncreating > 0)
        ready(s, F.creating[0]);
}

static void failed(sched_t *s, uint64_t id)
{
    hearth_error_t err;
    fsbx_t *x = S(id);
    drop(F.creating, &F.ncreating, id);
    x->alive = false;
    F.host_n--;
    F.host_mem -= x->mem;
    if (!x->generic) {
        F.fn[x->fn].live--;
        F.tenant_live[F.fn[x->fn].tenant]--;
    }
    if (sched_sandbox_failed(s, id, F.now, &err) < 0)
        VIOLATION("failed %" PRIu64 ": %s", id, err.msg);
}

static void done(sched_t *s, uint64_t inv, uint64_t cpu, sched_done_t how)
{
    finv_t *v = I(inv);
    fsbx_t *x = S(v->sbx);
    if (v->state != INV_RUNNING) {
        VIOLATION("done of %" PRIu64 " in state %d", inv, v->state);
        return;
    }
    v->state = INV_DONE;
    x->in_flight--;
    drop(F.running, &F.nrunning, inv);
    hearth_error_t err;
    if (sched_invocation_done(s, inv, cpu, how, F.now, &err) < 0)
        VIOLATION("done %" PRIu64 ": %s", inv, err.msg);
}

static void done_all(sched_t *s)
{
    while (F.nrunning > 0)
        done(s, F.running[0], 1 * MS, SCHED_DONE_OK);
}

static void advance(sched_t *s, uint64_t ns)
{
    F.now += ns;
    sched_tick(s, F.now);
}

static sched_fn_status_t st(sched_t *s, uint64_t fn)
{
    sched_fn_status_t o;
    hearth_error_t err;
    memset(&o, 0, sizeof(o));
    if (sched_fn_status(s, fn, &o, &err) < 0)
        printf("# status: %s\n", err.msg);
    return o;
}

static sched_config_t base_cfg(void)
{
    sched_config_t c;
    sched_config_default(&c);
    c.prewarm_max = 0;
    return c;
}

/* The fake's first live sandbox (0 if none). */
static uint64_t first_alive(void)
{
    for (uint64_t i = 1; i < F.nsbx_cap; i++)
        if (F.sbx[i].alive)
            return i;
    return 0;
}

#define NO_VIOLATIONS() CHECK(F.violations == 0, "%ld violations, first: %s", F.violations, F.first_violation)

/* --- tests --- */

static void t_placement_order(void)
{
    sched_config_t c = base_cfg();
    sched_t *s = setup(&c);
    tenant(s, 1, 1, 10, 0);
    deploy(s, 1, 1, 1, 128, 1, 0, 4, 10000);
    submit(s, 1, 1, SCHED_SYNC);
    CHECK(F.spawns == 1 && F.dispatches == 0, "cold start requested, not dispatched yet");
    uint64_t a = F.last_spawn;
    submit(s, 2, 1, SCHED_SYNC);
    CHECK(F.spawns == 2, "second call, first sandbox still starting: another start (%zu)", F.spawns);
    uint64_t b = F.last_spawn;
    ready(s, a);
    CHECK(F.dispatches == 1 && F.inv[1].sbx == a && F.inv[1].kind == SCHED_START_COLD, "first queued to a, cold");
    ready(s, b);
    CHECK(F.dispatches == 2 && F.inv[2].sbx == b, "second to b");
    F.now += 10 * MS;
    done(s, 1, MS, SCHED_DONE_OK);
    F.now += 10 * MS;
    done(s, 2, MS, SCHED_DONE_OK);
    submit(s, 3, 1, SCHED_SYNC);
    CHECK(F.inv[3].sbx == b && F.inv[3].kind == SCHED_START_WARM, "warm, most recently used first (got %" PRIu64 ")",
          F.inv[3].sbx);
    submit(s, 4, 1, SCHED_SYNC);
    CHECK(F.inv[4].sbx == a && F.spawns == 2, "then the other idle one, no cold start");
    sched_fn_status_t o = st(s, 1);
    CHECK(o.busy == 2 && o.idle == 0 && o.queued == 0, "status busy %u idle %u", o.busy, o.idle);
    NO_VIOLATIONS();
    sched_free(s);
}

static void t_cold_start_limits(void)
{
    /* function max_sandboxes */
    sched_config_t c = base_cfg();
    sched_t *s = setup(&c);
    tenant(s, 1, 1, 10, 0);
    deploy(s, 1, 1, 1, 128, 1, 0, 1, 10000);
    submit(s, 1, 1, SCHED_SYNC);
    submit(s, 2, 1, SCHED_SYNC);
    CHECK(F.spawns == 1 && st(s, 1).queued == 2, "fn max_sandboxes 1: one start, two queued");
    CHECK(strstr(st(s, 1).reason, "max_sandboxes") != NULL, "reason: %s", st(s, 1).reason);
    sched_free(s);

    /* tenant max_concurrency */
    s = setup(&c);
    tenant(s, 1, 1, 1, 0);
    deploy(s, 1, 1, 1, 128, 1, 0, 4, 10000);
    deploy(s, 2, 1, 1, 128, 1, 0, 4, 10000);
    submit(s, 1, 1, SCHED_SYNC);
    ready_all(s);
    submit(s, 2, 2, SCHED_SYNC);
    CHECK(F.spawns == 1 && st(s, 2).queued == 1, "tenant max 1: no start for its other function");
    CHECK(strstr(st(s, 2).reason, "tenant") != NULL, "reason: %s", st(s, 2).reason);
    done(s, 1, MS, SCHED_DONE_OK);
    CHECK(F.spawns == 2 && F.destroys == 1 && F.last_destroy_reason == SCHED_DESTROY_EVICTED,
          "its idle sandbox of fn 1 evicted for fn 2 (spawns %zu destroys %zu)", F.spawns, F.destroys);
    NO_VIOLATIONS();
    sched_free(s);

    /* host max_sandboxes */
    c.max_sandboxes = 1;
    s = setup(&c);
    tenant(s, 1, 1, 10, 0);
    tenant(s, 2, 1, 10, 0);
    deploy(s, 1, 1, 1, 128, 1, 0, 4, 10000);
    deploy(s, 2, 2, 1, 128, 1, 0, 4, 10000);
    submit(s, 1, 1, SCHED_SYNC);
    submit(s, 2, 2, SCHED_SYNC);
    CHECK(F.spawns == 1 && st(s, 2).queued == 1, "host max 1: second function queued");
    CHECK(strstr(st(s, 2).reason, "host") != NULL, "reason: %s", st(s, 2).reason);
    NO_VIOLATIONS();
    sched_free(s);

    /* host memory budget */
    c = base_cfg();
    c.memory_budget_mb = 300;
    s = setup(&c);
    tenant(s, 1, 1, 10, 0);
    deploy(s, 1, 1, 1, 200, 1, 0, 4, 10000);
    deploy(s, 2, 1, 1, 200, 1, 0, 4, 10000);
    deploy(s, 3, 1, 1, 100, 1, 0, 4, 10000);
    submit(s, 1, 1, SCHED_SYNC);
    submit(s, 2, 2, SCHED_SYNC);
    CHECK(F.spawns == 1 && st(s, 2).queued == 1, "memory: 200+200 > 300, queued");
    sched_free(s);
    c.memory_budget_mb = 300;
    s = setup(&c);
    tenant(s, 1, 1, 10, 0);
    deploy(s, 1, 1, 1, 200, 1, 0, 4, 10000);
    deploy(s, 3, 1, 1, 100, 1, 0, 4, 10000);
    submit(s, 1, 1, SCHED_SYNC);
    submit(s, 2, 3, SCHED_SYNC);
    CHECK(F.spawns == 2, "memory: 200+100 fits");
    NO_VIOLATIONS();
    sched_free(s);
}

static void t_eviction_lru(void)
{
    sched_config_t c = base_cfg();
    c.max_sandboxes = 3;
    sched_t *s = setup(&c);
    tenant(s, 1, 1, 10, 0);
    for (uint64_t f = 1; f <= 5; f++)
        deploy(s, f, 1, 1, 128, 1, 0, 4, 100000);
    uint64_t sb[4];
    for (uint64_t f = 1; f <= 3; f++) {
        F.now += MS;
        submit(s, f, f, SCHED_SYNC);
        sb[f] = F.last_spawn;
        ready(s, sb[f]);
    }
    /* used last: 2, then 3, then 1 -> LRU order 2, 3, 1 */
    F.now += MS;
    done(s, 2, MS, SCHED_DONE_OK);
    F.now += MS;
    done(s, 3, MS, SCHED_DONE_OK);
    F.now += MS;
    done(s, 1, MS, SCHED_DONE_OK);
    submit(s, 4, 4, SCHED_SYNC);
    CHECK(F.last_destroy == sb[2] && F.last_destroy_reason == SCHED_DESTROY_EVICTED, "LRU (fn 2) evicted first");
    ready_all(s);
    submit(s, 5, 5, SCHED_SYNC);
    CHECK(F.last_destroy == sb[3], "then fn 3");
    CHECK(F.destroys == 2, "only two evictions (%zu)", F.destroys);
    NO_VIOLATIONS();
    sched_free(s);
}

static void t_queue_and_timeout(void)
{
    sched_config_t c = base_cfg();
    c.queue_timeout_ms = 1000;
    sched_t *s = setup(&c);
    tenant(s, 1, 1, 10, 0);
    deploy(s, 1, 1, 1, 128, 1, 0, 1, 100000);
    submit(s, 1, 1, SCHED_SYNC);
    ready_all(s);
    F.now += 100 * MS;
    submit(s, 2, 1, SCHED_SYNC);
    submit(s, 3, 1, SCHED_ASYNC);
    submit(s, 4, 1, SCHED_SYNC);
    CHECK(st(s, 1).queued == 3, "three queued");
    done(s, 1, MS, SCHED_DONE_OK);
    CHECK(F.inv[2].state == INV_RUNNING && F.inv[2].kind == SCHED_START_WARM, "queued takes the freed sandbox");
    done(s, 2, MS, SCHED_DONE_OK);
    CHECK(F.inv[4].state == INV_RUNNING && F.inv[3].state == INV_SUBMITTED, "sync before async");
    advance(s, 950 * MS);
    CHECK(F.inv[3].state == INV_SUBMITTED, "not yet timed out");
    advance(s, 100 * MS);
    CHECK(F.inv[3].state == INV_REJECTED && F.inv[3].reason == SCHED_REJECT_QUEUE_TIMEOUT, "timed out");
    CHECK(st(s, 1).queued == 0, "queue empty");
    NO_VIOLATIONS();
    sched_free(s);
}

static void t_reject_retry_after(void)
{
    sched_config_t c = base_cfg();
    c.queue_max = 2;
    sched_t *s = setup(&c);
    tenant(s, 1, 1, 10, 0);
    deploy(s, 1, 1, 1, 128, 1, 0, 1, 100000);
    submit(s, 1, 1, SCHED_SYNC);
    ready_all(s);
    for (uint64_t i = 2; i <= 4; i++)
        submit(s, i, 1, SCHED_SYNC);
    CHECK(F.inv[4].state == INV_REJECTED && F.inv[4].reason == SCHED_REJECT_QUEUE_FULL, "4th rejected");
    CHECK(F.inv[4].retry_ms >= 100 && F.inv[4].retry_ms <= 60000, "retry-after %u ms", F.inv[4].retry_ms);
    CHECK(F.inv[3].state == INV_SUBMITTED, "3rd queued");
    hearth_error_t err;
    CHECK(sched_submit(s, 3, 1, SCHED_SYNC, NULL, F.now, &err) < 0, "duplicate id refused");
    CHECK(sched_submit(s, 9, 77, SCHED_SYNC, NULL, F.now, &err) < 0, "unknown function refused");
    NO_VIOLATIONS();
    sched_free(s);
}

static void t_update_drains(void)
{
    sched_config_t c = base_cfg();
    sched_t *s = setup(&c);
    tenant(s, 1, 1, 10, 0);
    deploy(s, 1, 1, 1, 128, 1, 0, 3, 100000);
    submit(s, 1, 1, SCHED_SYNC);
    submit(s, 2, 1, SCHED_SYNC);
    ready_all(s);
    uint64_t idle_sbx = F.inv[2].sbx, busy_sbx = F.inv[1].sbx;
    done(s, 2, MS, SCHED_DONE_OK);
    deploy(s, 1, 1, 2, 128, 1, 0, 3, 100000);
    CHECK(!F.sbx[idle_sbx].alive && F.sbx[idle_sbx].destroy_reason == SCHED_DESTROY_DRAINED, "idle old one drained");
    CHECK(F.sbx[busy_sbx].alive, "busy old one keeps running");
    sched_fn_status_t o = st(s, 1);
    CHECK(o.draining == 1, "one draining (%u)", o.draining);
    submit(s, 3, 1, SCHED_SYNC);
    CHECK(F.sbx[F.last_spawn].version == 2, "new call starts version 2");
    ready_all(s);
    CHECK(F.inv[3].state == INV_RUNNING && F.sbx[F.inv[3].sbx].version == 2, "runs on version 2");
    done(s, 1, MS, SCHED_DONE_OK);
    CHECK(!F.sbx[busy_sbx].alive && F.sbx[busy_sbx].destroy_reason == SCHED_DESTROY_DRAINED,
          "old one destroyed after finishing");
    /* removal rejects what is queued */
    deploy(s, 1, 1, 2, 128, 1, 0, 1, 100000);
    submit(s, 4, 1, SCHED_SYNC);
    CHECK(F.inv[4].state == INV_SUBMITTED, "queued behind max 1");
    hearth_error_t err;
    sched_fn_remove(s, 1, F.now, &err);
    CHECK(F.inv[4].state == INV_REJECTED && F.inv[4].reason == SCHED_REJECT_REMOVED, "queued call rejected on removal");
    F.fn[1].deployed = false;
    done(s, 3, MS, SCHED_DONE_OK);
    CHECK(!F.sbx[F.inv[3].sbx].alive, "removed function's sandbox destroyed when done");
    advance(s, SEC);
    NO_VIOLATIONS();
    sched_free(s);
}

static void t_scale_up_burst_and_panic(void)
{
    sched_config_t c = base_cfg();
    sched_t *s = setup(&c);
    tenant(s, 1, 1, 100, 0);
    deploy(s, 1, 1, 1, 64, 1, 0, 40, 5000);
    /* steady: one call at a time for 10 s */
    uint64_t id = 1;
    for (int i = 0; i < 10; i++) {
        submit(s, id, 1, SCHED_SYNC);
        ready_all(s);
        advance(s, 500 * MS);
        done(s, id++, MS, SCHED_DONE_OK);
        advance(s, 500 * MS);
    }
    sched_fn_status_t o = st(s, 1);
    CHECK(!o.panic, "no panic in steady state (%s)", o.reason);
    size_t spawns0 = F.spawns;
    /* burst: 30 at once; sandboxes take over a second to start */
    for (int i = 0; i < 30; i++)
        submit(s, id++, 1, SCHED_SYNC);
    CHECK(F.spawns - spawns0 == 29, "a start per queued call at once (started %zu)", F.spawns - spawns0);
    advance(s, 1100 * MS);
    o = st(s, 1);
    CHECK(o.panic, "panic entered (avg_panic %.1f, reason %s)", o.avg_panic, o.reason);
    CHECK(o.desired >= 6, "desired %u", o.desired);
    ready_all(s);
    advance(s, SEC);
    done_all(s);
    /* quiet afterwards: panic holds a stable window, then ends */
    for (int i = 0; i < 30; i++)
        advance(s, SEC);
    o = st(s, 1);
    CHECK(o.panic, "still in panic hold after 30 s (%s)", o.reason);
    CHECK(o.idle + o.busy == 30, "no scale-down during panic (%u)", o.idle + o.busy);
    for (int i = 0; i < 40; i++)
        advance(s, SEC);
    o = st(s, 1);
    CHECK(!o.panic, "panic left after a stable window (%s)", o.reason);
    for (int i = 0; i < 20; i++)
        advance(s, SEC);
    o = st(s, 1);
    CHECK(o.idle + o.busy == 0, "then idle ones go after keep-alive (%u left, %s)", o.idle + o.busy, o.reason);
    NO_VIOLATIONS();
    sched_free(s);
}

static void t_return_to_min_warm(void)
{
    sched_config_t c = base_cfg();
    sched_t *s = setup(&c);
    tenant(s, 1, 1, 100, 0);
    deploy(s, 1, 1, 1, 64, 1, 2, 10, 5000);
    CHECK(F.spawns == 2, "min_warm prewarmed at deploy (%zu)", F.spawns);
    ready_all(s);
    for (uint64_t i = 1; i <= 8; i++)
        submit(s, i, 1, SCHED_SYNC);
    ready_all(s);
    CHECK(st(s, 1).busy == 8, "8 busy");
    advance(s, SEC);
    done_all(s);
    for (int i = 0; i < 200; i++)
        advance(s, SEC);
    sched_fn_status_t o = st(s, 1);
    CHECK(o.idle == 2 && o.busy == 0 && o.creating == 0, "back to min_warm: idle %u (%s)", o.idle, o.reason);
    CHECK(o.desired == 2, "desired %u", o.desired);
    /* eviction of a min_warm sandbox is refilled when room comes back */
    hearth_error_t err;
    sched_sandbox_died(s, first_alive(), F.now, &err);
    advance(s, SEC);
    o = st(s, 1);
    CHECK(o.idle + o.creating == 2, "refilled after crash (%u idle, %u creating)", o.idle, o.creating);

    /* min_warm 0 scales to zero */
    deploy(s, 2, 1, 1, 64, 1, 0, 10, 1000);
    submit(s, 100, 2, SCHED_SYNC);
    ready_all(s);
    done_all(s);
    for (int i = 0; i < 100; i++)
        advance(s, SEC);
    o = st(s, 2);
    CHECK(o.idle == 0 && o.busy == 0, "scaled to zero");
    NO_VIOLATIONS();
    sched_free(s);
}

/* A function whose sandboxes fail to start is not restarted every bucket
 * for min_warm: 1, 2, 4 ... s apart, up to a minute; a success resets. */
static void t_start_backoff(void)
{
    sched_config_t c = base_cfg();
    sched_t *s = setup(&c);
    tenant(s, 1, 1, 100, 0);
    deploy(s, 1, 1, 1, 64, 1, 1, 10, 5000);
    CHECK(F.spawns == 1, "min_warm started at deploy (%zu)", F.spawns);
    uint64_t gaps[8];
    size_t n = 0;
    uint64_t last = F.now;
    /* 300 s in steps of 100 ms: every start fails at once */
    for (int i = 0; i < 3000 && n < 8; i++) {
        if (F.ncreating > 0) {
            gaps[n++] = F.now - last;
            last = F.now;
            failed(s, F.creating[0]);
        }
        advance(s, 100 * MS);
    }
    CHECK(n == 8, "8 starts in 300 s (%zu)", n);
    /* the first gap is the deploy itself (0); then 1, 2, 4, 8, 16, 32, 60 s, each to within a bucket */
    static const uint64_t want[] = {0, 1, 2, 4, 8, 16, 32, 60};
    for (size_t i = 1; i < n; i++)
        CHECK(gaps[i] >= want[i] * SEC && gaps[i] <= (want[i] + 1) * SEC + 100 * MS,
              "gap %zu: %.1f s, want %" PRIu64 " s", i, gaps[i] / 1e9, want[i]);
    CHECK(strstr(st(s, 1).reason, "backing off after") != NULL, "reason: %s", st(s, 1).reason);
    /* a queued call does not wait for the back-off */
    size_t spawns = F.spawns;
    submit(s, 1, 1, SCHED_SYNC);
    CHECK(F.spawns == spawns + 1, "a call starts a sandbox at once (%zu spawns)", F.spawns - spawns);
    ready_all(s);
    done_all(s);
    /* success resets: a crash of the warm sandbox is refilled within a bucket */
    hearth_error_t err;
    sched_sandbox_died(s, first_alive(), F.now, &err);
    spawns = F.spawns;
    advance(s, SEC + 100 * MS);
    CHECK(F.spawns == spawns + 1, "refilled within a bucket after a success (%zu spawns)", F.spawns - spawns);
    NO_VIOLATIONS();
    sched_free(s);
}

static void t_prewarm_pool(void)
{
    sched_config_t c = base_cfg();
    c.prewarm_min = 2;
    c.prewarm_max = 4;
    c.generic_memory_mb = 16;
    sched_t *s = setup(&c);
    tenant(s, 1, 1, 100, 0);
    deploy(s, 1, 1, 1, 64, 1, 0, 10, 5000);
    advance(s, MS);
    CHECK(F.generic_spawns == 2, "pool filled to prewarm_min (%zu)", F.generic_spawns);
    ready_all(s);
    submit(s, 1, 1, SCHED_SYNC);
    CHECK(F.prewarm_spawns == 1, "cold start uses a generic sandbox");
    ready_all(s);
    CHECK(F.inv[1].state == INV_RUNNING && F.inv[1].kind == SCHED_START_PREWARM, "start kind prewarm");
    sched_host_status_t h;
    sched_host_status(s, &h);
    CHECK(h.memory_mb == 64 + 16 && h.sandboxes == 2, "memory %" PRIu64 " sandboxes %u", h.memory_mb, h.sandboxes);
    advance(s, MS);
    CHECK(F.generic_spawns == 3, "pool refilled (%zu)", F.generic_spawns);
    NO_VIOLATIONS();
    sched_free(s);
}

/* Tenant A floods 10,000 calls, tenant B sends one; the host holds 2 sandboxes.
 * Calls run 100 ms, sandboxes start in 5 ms. */
static void t_fairness(void)
{
    sched_config_t c = base_cfg();
    c.max_sandboxes = 2;
    c.queue_max = 20000;
    c.queue_timeout_ms = 3600 * 1000;
    sched_t *s = setup(&c);
    tenant(s, 1, 1, 100, 0);
    tenant(s, 2, 1, 100, 0);
    deploy(s, 1, 1, 1, 64, 1, 0, 10, 5000);
    deploy(s, 2, 2, 1, 64, 1, 0, 10, 5000);
    const uint64_t run = 100 * MS, start = 5 * MS;
    for (uint64_t i = 1; i <= 10000; i++)
        submit(s, i, 1, SCHED_SYNC);
    uint64_t ready_at[64] = {0};
    uint64_t b = 20000, b_submit = 1 * SEC + 3 * MS;
    bool b_sent = false;
    for (F.now = 0; F.now < 5 * SEC && (!b_sent || F.inv[b].state == INV_SUBMITTED); F.now += MS) {
        if (!b_sent && F.now >= b_submit) {
            submit(s, b, 2, SCHED_SYNC);
            b_sent = true;
        }
        for (size_t k = 0; k < F.ncreating;) {
            uint64_t id = F.creating[k];
            if (ready_at[id % 64] == 0)
                ready_at[id % 64] = F.now + start;
            if (F.now >= ready_at[id % 64]) {
                ready_at[id % 64] = 0;
                ready(s, id);
            } else {
                k++;
            }
        }
        for (size_t k = 0; k < F.nrunning;) {
            uint64_t inv = F.running[k];
            if (F.now >= F.inv[inv].dispatched_at + run)
                done(s, inv, MS, SCHED_DONE_OK);
            else
                k++;
        }
        sched_tick(s, F.now);
    }
    CHECK(F.inv[b].state == INV_RUNNING, "B's call dispatched (state %d)", F.inv[b].state);
    uint64_t wait = F.inv[b].dispatched_at - b_submit;
    printf("# B waited %llu ms behind A's flood (run time %llu ms)\n", wait / MS, run / MS);
    CHECK(wait <= run + 2 * start + 2 * MS, "B waited %llu ms, more than ~one invocation", wait / MS);
    NO_VIOLATIONS();
    sched_free(s);
}

static void t_fairness_weights(void)
{
    /* Host of 1 sandbox shared by tenants of weight 3 and 1, both flooding:
     * dispatches split about 3:1. */
    sched_config_t c = base_cfg();
    c.max_sandboxes = 1;
    c.queue_max = 10000;
    c.queue_timeout_ms = 3600 * 1000;
    sched_t *s = setup(&c);
    tenant(s, 1, 3, 100, 0);
    tenant(s, 2, 1, 100, 0);
    deploy(s, 1, 1, 1, 64, 1, 0, 10, 5000);
    deploy(s, 2, 2, 1, 64, 1, 0, 10, 5000);
    for (uint64_t i = 1; i <= 2000; i++)
        submit(s, i, 1 + (i & 1), SCHED_SYNC);
    unsigned per[3] = {0};
    for (int round = 0; round < 400; round++) {
        ready_all(s);
        F.now += MS;
        if (F.nrunning) {
            uint64_t inv = F.running[0];
            per[F.inv[inv].fn]++;
            done(s, inv, MS, SCHED_DONE_OK);
        }
    }
    printf("# weight 3 got %u, weight 1 got %u\n", per[1], per[2]);
    CHECK(per[1] > 2 * per[2] && per[1] < 4 * per[2], "split %u:%u not about 3:1", per[1], per[2]);
    NO_VIOLATIONS();
    sched_free(s);
}

static void t_accounting(void)
{
    sched_config_t c = base_cfg();
    sched_t *s = setup(&c);
    tenant(s, 1, 1, 100, 0);
    tenant(s, 2, 1, 100, 0);
    deploy(s, 1, 1, 1, 128, 1, 0, 10, 5000);
    deploy(s, 2, 1, 1, 256, 1, 0, 10, 5000);
    deploy(s, 3, 2, 1, 64, 1, 0, 10, 5000);
    submit(s, 1, 1, SCHED_SYNC);
    submit(s, 2, 2, SCHED_SYNC);
    submit(s, 3, 3, SCHED_SYNC);
    ready_all(s);
    hearth_error_t err;
    sched_sandbox_overhead(s, F.inv[1].sbx, 7 * MS, &err);
    F.now += 1000 * MS;
    done(s, 1, 30 * MS, SCHED_DONE_OK);
    done(s, 2, 20 * MS, SCHED_DONE_ERROR);
    done(s, 3, 5 * MS, SCHED_DONE_OK);
    submit(s, 4, 1, SCHED_SYNC);
    F.now += 500 * MS;
    done(s, 4, 10 * MS, SCHED_DONE_OK);
    sched_usage_t t1, t2, f1, f2;
    sched_tenant_usage(s, 1, &t1, &err);
    sched_tenant_usage(s, 2, &t2, &err);
    sched_fn_usage(s, 1, &f1, &err);
    sched_fn_usage(s, 2, &f2, &err);
    CHECK(f1.cpu_ns == 40 * MS && f2.cpu_ns == 20 * MS, "fn cpu %" PRIu64 " %" PRIu64, f1.cpu_ns, f2.cpu_ns);
    CHECK(t1.cpu_ns == f1.cpu_ns + f2.cpu_ns && t2.cpu_ns == 5 * MS, "tenant cpu sums");
    CHECK(sched_usage_cpu_ms(&t1) == 60, "60 ms");
    CHECK(t1.overhead_cpu_ns == 7 * MS && f1.overhead_cpu_ns == 7 * MS && t1.cpu_ns == 60 * MS,
          "overhead apart");
    CHECK(f1.memory_mb_ms == 128 * 1000 + 128 * 500 && f2.memory_mb_ms == 256 * 1000, "memory-ms %" PRIu64,
          f1.memory_mb_ms);
    CHECK(t1.invocations == 3 && t1.errors == 1 && t1.cold_starts == 2 && f1.cold_starts == 1,
          "counts inv %" PRIu64 " err %" PRIu64 " cold %" PRIu64, t1.invocations, t1.errors, t1.cold_starts);
    sched_usage_t saved = {.cpu_ns = 5 * SEC, .invocations = 9};
    sched_tenant_usage_load(s, 2, &saved, &err);
    sched_tenant_usage(s, 2, &t2, &err);
    CHECK(t2.cpu_ns == 5 * SEC && t2.invocations == 9, "loaded totals");
    NO_VIOLATIONS();
    sched_free(s);
}

static void t_cpu_budget(void)
{
    sched_config_t c = base_cfg();
    sched_t *s = setup(&c);
    tenant(s, 1, 1, 100, 100);
    tenant(s, 2, 1, 100, 0);
    deploy(s, 1, 1, 1, 64, 1, 0, 10, 5000);
    deploy(s, 2, 2, 1, 64, 1, 0, 10, 5000);
    F.now = SEC;
    submit(s, 1, 1, SCHED_SYNC);
    ready_all(s);
    done(s, 1, 60 * MS, SCHED_DONE_OK);
    submit(s, 2, 1, SCHED_SYNC);
    CHECK(F.inv[2].state == INV_RUNNING, "under budget: runs");
    done(s, 2, 60 * MS, SCHED_DONE_OK);
    F.now += 10 * SEC;
    submit(s, 3, 1, SCHED_SYNC);
    CHECK(F.inv[3].state == INV_REJECTED && F.inv[3].reason == SCHED_REJECT_CPU_BUDGET, "budget spent: 429");
    CHECK(F.inv[3].retry_ms > 49000 && F.inv[3].retry_ms <= 50000, "retry after the window (%u ms)",
          F.inv[3].retry_ms);
    submit(s, 4, 2, SCHED_SYNC);
    CHECK(F.inv[4].state != INV_REJECTED, "other tenant unaffected");
    F.now += 51 * SEC;
    submit(s, 5, 1, SCHED_SYNC);
    CHECK(F.inv[5].state == INV_RUNNING, "window moved on");
    NO_VIOLATIONS();
    sched_free(s);
}

/* --- the property test --- */

static uint64_t rng_state;
static uint64_t rnd(void)
{
    /* splitmix64: seeded, reproducible */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint32_t rn(uint32_t n)
{
    return (uint32_t)(rnd() % n);
}

static void check_host(sched_t *s)
{
    sched_host_status_t h;
    sched_host_status(s, &h);
    if (h.sandboxes != F.host_n || h.memory_mb != F.host_mem)
        VIOLATION("scheduler counts %u sandboxes %" PRIu64 " MiB, provider %u / %" PRIu64, h.sandboxes, h.memory_mb,
                  F.host_n, F.host_mem);
    if (h.in_flight != F.nrunning)
        VIOLATION("scheduler has %u in flight, provider %zu", h.in_flight, F.nrunning);
}

static void t_property(void)
{
    const char *env = getenv("SCHED_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : 0x5eed0001ull;
    const long events = env && getenv("SCHED_EVENTS") ? atol(getenv("SCHED_EVENTS")) : 1000000;
    printf("# property test: seed 0x%" PRIx64 ", %ld events (SCHED_SEED=... to replay)\n", seed, events);
    rng_state = seed;
    sched_config_t c = base_cfg();
    c.max_sandboxes = 10;
    c.memory_budget_mb = 1024;
    c.prewarm_min = 1;
    c.prewarm_max = 3;
    c.generic_memory_mb = 32;
    c.queue_max = 12;
    c.queue_timeout_ms = 2000;
    c.stable_window_ms = 10000;
    c.panic_window_ms = 2000;
    sched_t *s = setup(&c);
    for (uint64_t t = 1; t <= 4; t++)
        tenant(s, t, 1 + (uint32_t)t % 3, 2 + (uint32_t)t, 0);
    uint64_t next_fn = 1, next_inv = 1;
    uint64_t live_fns[64];
    size_t n_live = 0;
    static const uint32_t mems[] = {64, 128, 256, 512};
    size_t submitted = 0;
    for (long e = 0; e < events && F.violations == 0; e++) {
        F.now += rn(3) * MS;
        uint32_t r = rn(1000);
        hearth_error_t err;
        if (n_live < 3 || (r < 5 && n_live < 60 && next_fn < MAXFN)) {
            uint64_t id = next_fn++;
            if (deploy(s, id, 1 + rn(4), 1, mems[rn(4)], 1 + rn(3), rn(3) == 0, 1 + rn(4), 200 + rn(3000)) == 0)
                live_fns[n_live++] = id;
        } else if (r < 8) {
            uint64_t id = live_fns[rn((uint32_t)n_live)];
            ffn_t *f = &F.fn[id];
            deploy(s, id, f->tenant, f->version + 1, mems[rn(4)], 1 + rn(3), rn(3) == 0, f->max_sbx, 200 + rn(3000));
        } else if (r < 10) {
            size_t k = rn((uint32_t)n_live);
            uint64_t id = live_fns[k];
            if (sched_fn_remove(s, id, F.now, &err) < 0)
                VIOLATION("remove: %s", err.msg);
            F.fn[id].deployed = false;
            F.fn[id].version = UINT32_MAX; /* nothing may run on it any more */
            live_fns[k] = live_fns[--n_live];
        } else if (r < 450) {
            uint64_t id = live_fns[rn((uint32_t)n_live)];
            if (submit(s, next_inv, id, rn(4) ? SCHED_SYNC : SCHED_ASYNC) == 0)
                submitted++;
            else
                VIOLATION("submit refused");
            next_inv++;
        } else if (r < 700) {
            if (F.nrunning) {
                uint64_t inv = F.running[rn((uint32_t)F.nrunning)];
                uint32_t k = rn(100);
                done(s, inv, rn(50) * MS, k < 2 ? SCHED_DONE_CRASHED : k < 10 ? SCHED_DONE_ERROR : SCHED_DONE_OK);
            }
        } else if (r < 860) {
            if (F.ncreating)
                ready(s, F.creating[rn((uint32_t)F.ncreating)]);
        } else if (r < 875) {
            if (F.ncreating)
                failed(s, F.creating[rn((uint32_t)F.ncreating)]);
        } else if (r < 880) {
            uint64_t id = 1 + rn((uint32_t)(F.nsbx_cap - 1));
            fsbx_t *x = S(id);
            if (x->alive && x->ready && !x->generic) {
                if (sched_sandbox_died(s, id, F.now, &err) < 0)
                    VIOLATION("died: %s", err.msg);
            }
        } else {
            advance(s, rn(300) * MS);
        }
        check_host(s);
    }
    /* Quiesce: everything queued must run or be rejected. */
    for (int round = 0; round < 10000 && (F.nrunning || F.ncreating); round++) {
        ready_all(s);
        done_all(s);
        advance(s, 100 * MS);
    }
    advance(s, 10 * SEC);
    ready_all(s);
    done_all(s);
    size_t ran = 0, rejected = 0, pending = 0;
    for (uint64_t i = 1; i < next_inv; i++) {
        if (F.inv[i].state == INV_DONE)
            ran++;
        else if (F.inv[i].state == INV_REJECTED)
            rejected++;
        else
            pending++;
    }
    sched_host_status_t h;
    sched_host_status(s, &h);
    printf("# %zu submitted: %zu ran, %zu rejected, %zu lost; %zu spawns, %zu destroys\n", submitted, ran, rejected,
           pending, F.spawns + F.generic_spawns, F.destroys);
    CHECK(pending == 0 && ran + rejected == submitted, "%zu invocations neither ran nor were rejected", pending);
    CHECK(h.queued == 0 && h.in_flight == 0, "scheduler still holds %u queued %u running", h.queued, h.in_flight);
    CHECK(ran > submitted / 4, "most invocations ran (%zu of %zu)", ran, submitted);
    NO_VIOLATIONS();
    sched_free(s);
    CHECK(F.host_n == 0, "sched_free destroyed everything (%u left)", F.host_n);
}

int main(void)
{
    RUN(t_placement_order);
    RUN(t_cold_start_limits);
    RUN(t_eviction_lru);
    RUN(t_queue_and_timeout);
    RUN(t_reject_retry_after);
    RUN(t_update_drains);
    RUN(t_scale_up_burst_and_panic);
    RUN(t_return_to_min_warm);
    RUN(t_start_backoff);
    RUN(t_prewarm_pool);
    RUN(t_fairness);
    RUN(t_fairness_weights);
    RUN(t_accounting);
    RUN(t_cpu_budget);
    if (!getenv("SKIP_PROPERTY"))
        RUN(t_property);
    free(F.sbx);
    free(F.inv);
    free(F.creating);
    free(F.running);
    return harness_done();
}
