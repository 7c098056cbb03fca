/* Sandbox records: their states, the lists each state keeps them in, and the
 * counters the limits are checked against. Every state change goes through
 * leave() and enter(), so lists and counters cannot drift apart. */
#include <assert.h>
#include <stdlib.h>

#include "scheduler/internal.h"

void pool_fn_init(sched_fn_t *fn)
{
    link_init(&fn->creating);
    link_init(&fn->idle);
    link_init(&fn->avail);
    link_init(&fn->full);
    link_init(&fn->draining);
    link_init(&fn->queue[0]);
    link_init(&fn->queue[1]);
    link_init(&fn->wait_link);
    link_init(&fn->dead_link);
    timer_init(&fn->timer, TIMER_FN);
}

static void leave(sched_t *s, sched_sbx_t *x)
{
    sched_fn_t *fn = x->fn;
    link_unlink(&x->fn_link);
    switch (x->state) {
    case SBX_CREATING:
        if (fn == NULL)
            s->n_generic_creating--;
        else if (x->stale)
            fn->n_draining--;
        else
            fn->n_creating--;
        break;
    case SBX_IDLE:
        if (fn == NULL) {
            s->n_generic_ready--;
            break;
        }
        link_unlink(&x->lru_link);
        link_unlink(&x->tlru_link);
        heap_disarm(&s->timers, &x->timer);
        s->n_idle--;
        s->idle_mem_mb -= x->memory_mb;
        x->tenant->n_idle--;
        fn->n_idle--;
        break;
    case SBX_BUSY:
        fn->n_busy--;
        break;
    case SBX_DRAINING:
        fn->n_draining--;
        break;
    }
}

static void enter(sched_t *s, sched_sbx_t *x, sbx_state_t st)
{
    sched_fn_t *fn = x->fn;
    x->state = st;
    switch (st) {
    case SBX_CREATING:
        if (fn == NULL) {
            link_push_tail(&s->generic_creating, &x->fn_link);
            s->n_generic_creating++;
        } else if (x->stale) {
            link_push_tail(&fn->draining, &x->fn_link);
            fn->n_draining++;
        } else {
            link_push_tail(&fn->creating, &x->fn_link);
            fn->n_creating++;
        }
        break;
    case SBX_IDLE:
        x->idle_since = s->now;
        if (fn == NULL) {
            link_push_head(&s->generic_ready, &x->fn_link);
            s->n_generic_ready++;
            break;
        }
        link_push_head(&fn->idle, &x->fn_link);
        link_push_head(&s->idle_lru, &x->lru_link);
        link_push_head(&x->tenant->idle_lru, &x->tlru_link);
        s->n_idle++;
        s->idle_mem_mb += x->memory_mb;
        x->tenant->n_idle++;
        fn->n_idle++;
        heap_arm(&s->timers, &x->timer, s->now + fn->keep_alive_ns);
        break;
    case SBX_BUSY:
        link_push_head(x->in_flight < fn->concurrency ? &fn->avail : &fn->full, &x->fn_link);
        fn->n_busy++;
        break;
    case SBX_DRAINING:
        link_push_tail(&fn->draining, &x->fn_link);
        fn->n_draining++;
        break;
    }
}

sched_sbx_t *pool_new_sbx(sched_t *s, sched_fn_t *fn)
{
    sched_sbx_t *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return NULL;
    x->id = ++s->next_sbx_id;
    if (idmap_put(&s->sbxs, x->id, x) < 0) {
        free(x);
        return NULL;
    }
    link_init(&x->fn_link);
    link_init(&x->lru_link);
    link_init(&x->tlru_link);
    timer_init(&x->timer, TIMER_IDLE);
    x->fn = fn;
    x->start_kind = SCHED_START_COLD;
    s->n_sbx++;
    if (fn != NULL) {
        x->tenant = fn->tenant;
        x->version = fn->version;
        x->memory_mb = fn->memory_mb;
        fn->n_sbx++;
        fn->tenant->n_sbx++;
    } else {
        x->memory_mb = s->cfg.generic_memory_mb;
    }
    s->mem_mb += x->memory_mb;
    enter(s, x, SBX_CREATING);
    return x;
}

/* Tie a ready generic sandbox to fn: it becomes one of fn's starting sandboxes. */
void pool_specialise(sched_t *s, sched_sbx_t *x, sched_fn_t *fn)
{
    assert(x->fn == NULL && x->state == SBX_IDLE);
    leave(s, x);
    s->mem_mb = s->mem_mb - x->memory_mb + fn->memory_mb;
    x->fn = fn;
    x->tenant = fn->tenant;
    x->version = fn->version;
    x->memory_mb = fn->memory_mb;
    x->start_kind = SCHED_START_PREWARM;
    fn->n_sbx++;
    fn->tenant->n_sbx++;
    /* CPU it burnt in the pool is start-up overhead of the tenant that takes it. */
    fn->usage.overhead_cpu_ns += x->overhead_ns;
    fn->tenant->usage.overhead_cpu_ns += x->overhead_ns;
    x->overhead_ns = 0;
    enter(s, x, SBX_CREATING);
}

void pool_generic_ready(sched_t *s, sched_sbx_t *x)
{
    assert(x->fn == NULL && x->state == SBX_CREATING);
    leave(s, x);
    enter(s, x, SBX_IDLE);
}

void pool_place(sched_t *s, sched_sbx_t *x)
{
    assert(x->state == SBX_CREATING || x->state == SBX_IDLE || x->state == SBX_BUSY);
    assert(x->in_flight <= x->fn->concurrency);
    sbx_state_t want = x->in_flight == 0 ? SBX_IDLE : SBX_BUSY;
    if (want == SBX_IDLE && x->state == SBX_IDLE)
        return;
    if (want == SBX_BUSY && x->state == SBX_BUSY) {
        link_unlink(&x->fn_link);
        link_push_head(x->in_flight < x->fn->concurrency ? &x->fn->avail : &x->fn->full, &x->fn_link);
        return;
    }
    leave(s, x);
    enter(s, x, want);
}

void pool_make_draining(sched_t *s, sched_sbx_t *x, sched_destroy_reason_t why)
{
    x->why = why;
    if (x->state == SBX_DRAINING)
        return;
    leave(s, x);
    if (x->state == SBX_CREATING) {
        x->stale = true;
        enter(s, x, SBX_CREATING);
    } else {
        enter(s, x, SBX_DRAINING);
    }
}

void pool_destroy(sched_t *s, sched_sbx_t *x, sched_destroy_reason_t why, bool tell)
{
    leave(s, x);
    s->n_sbx--;
    s->mem_mb -= x->memory_mb;
    if (x->fn != NULL) {
        x->fn->n_sbx--;
        x->tenant->n_sbx--;
    } else {
        s->host_overhead.overhead_cpu_ns += x->overhead_ns;
    }
    idmap_del(&s->sbxs, x->id);
    if (tell)
        s->pv.destroy(s->pv.ctx, x->id, why);
    free(x);
}

sched_sbx_t *pool_warm_slot(sched_fn_t *fn)
{
    if (!link_empty(&fn->avail))
        return container_of(fn->avail.next, sched_sbx_t, fn_link);
    if (!link_empty(&fn->idle))
        return container_of(fn->idle.next, sched_sbx_t, fn_link);
    return NULL;
}
