/* The scheduler's timer heap (its id map is common/idmap.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/internal.h"

void timer_init(sched_timer_t *t, sched_timer_kind_t kind)
{
    t->when = 0;
    t->idx = UINT32_MAX;
    t->kind = kind;
}

static void heap_set(sched_heap_t *h, uint32_t i, sched_timer_t *t)
{
    h->v[i] = t;
    t->idx = i;
}

static void sift_up(sched_heap_t *h, uint32_t i)
{
    sched_timer_t *t = h->v[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (h->v[p]->when <= t->when)
            break;
        heap_set(h, i, h->v[p]);
        i = p;
    }
    heap_set(h, i, t);
}

static void sift_down(sched_heap_t *h, uint32_t i)
{
    sched_timer_t *t = h->v[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->v[c + 1]->when < h->v[c]->when)
            c++;
        if (t->when <= h->v[c]->when)
            break;
        heap_set(h, i, h->v[c]);
        i = c;
    }
    heap_set(h, i, t);
}

int heap_arm(sched_heap_t *h, sched_timer_t *t, uint64_t when)
{
    if (timer_armed(t)) {
        uint64_t old = t->when;
        t->when = when;
        if (when < old)
            sift_up(h, t->idx);
        else
            sift_down(h, t->idx);
        return 0;
    }
    if (h->n == h->cap) {
        uint32_t cap = h->cap ? h->cap * 2 : 64;
        sched_timer_t **v = realloc(h->v, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        h->v = v;
        h->cap = cap;
    }
    t->when = when;
    heap_set(h, h->n++, t);
    sift_up(h, t->idx);
    return 0;
}

void heap_disarm(sched_heap_t *h, sched_timer_t *t)
{
    if (!timer_armed(t))
        return;
    uint32_t i = t->idx;
    t->idx = UINT32_MAX;
    if (i == --h->n)
        return;
    sched_timer_t *moved = h->v[h->n];
    heap_set(h, i, moved);
    sift_up(h, i);
    sift_down(h, moved->idx);
}
