/* The scheduler's two small containers: an id map and a timer heap. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/internal.h"

static inline uint32_t slot_of(const sched_idmap_t *m, uint64_t key)
{
    /* Fibonacci hashing: ids are often sequential, the multiply spreads them. */
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (m->cap - 1);
}

int idmap_init(sched_idmap_t *m, uint32_t cap)
{
    uint32_t c = 16;
    while (c < cap)
        c <<= 1;
    m->keys = calloc(c, sizeof(*m->keys));
    m->vals = calloc(c, sizeof(*m->vals));
    if (m->keys == NULL || m->vals == NULL) {
        free(m->keys);
        free(m->vals);
        m->keys = NULL;
        m->vals = NULL;
        return -1;
    }
    m->cap = c;
    m->n = 0;
    return 0;
}

void idmap_free(sched_idmap_t *m)
{
    free(m->keys);
    free(m->vals);
    m->keys = NULL;
    m->vals = NULL;
    m->cap = m->n = 0;
}

void *idmap_get(const sched_idmap_t *m, uint64_t key)
{
    for (uint32_t i = slot_of(m, key);; i = (i + 1) & (m->cap - 1)) {
        if (m->vals[i] == NULL)
            return NULL;
        if (m->keys[i] == key)
            return m->vals[i];
    }
}

static int grow(sched_idmap_t *m)
{
    sched_idmap_t bigger;
    if (idmap_init(&bigger, m->cap * 2) < 0)
        return -1;
    for (uint32_t i = 0; i < m->cap; i++)
        if (m->vals[i] != NULL)
            idmap_put(&bigger, m->keys[i], m->vals[i]);
    idmap_free(m);
    *m = bigger;
    return 0;
}

int idmap_put(sched_idmap_t *m, uint64_t key, void *val)
{
    /* Keep the load under 1/2 so probes stay short. */
    if ((m->n + 1) * 2 > m->cap && grow(m) < 0) {
        errno = ENOMEM;
        return -1;
    }
    uint32_t i = slot_of(m, key);
    while (m->vals[i] != NULL)
        i = (i + 1) & (m->cap - 1);
    m->keys[i] = key;
    m->vals[i] = val;
    m->n++;
    return 0;
}

void *idmap_del(sched_idmap_t *m, uint64_t key)
{
    uint32_t mask = m->cap - 1, i = slot_of(m, key);
    while (m->vals[i] != NULL && m->keys[i] != key)
        i = (i + 1) & mask;
    void *val = m->vals[i];
    if (val == NULL)
        return NULL;
    /* Backward-shift deletion: no tombstones, so lookups never slow down
     * after churn (the benchmark inserts and deletes millions of ids). */
    uint32_t hole = i;
    for (uint32_t j = (i + 1) & mask; m->vals[j] != NULL; j = (j + 1) & mask) {
        uint32_t home = slot_of(m, m->keys[j]);
        /* Move j into the hole unless its home lies cyclically in (hole, j]. */
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            m->keys[hole] = m->keys[j];
            m->vals[hole] = m->vals[j];
            hole = j;
        }
    }
    m->vals[hole] = NULL;
    m->n--;
    return val;
}

bool idmap_next(const sched_idmap_t *m, uint32_t *pos, void **val)
{
    for (; *pos < m->cap; (*pos)++) {
        if (m->vals[*pos] != NULL) {
            *val = m->vals[(*pos)++];
            return true;
        }
    }
    return false;
}

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
