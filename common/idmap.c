/* uint64 id -> pointer map: open addressing, linear probing,
 * backward-shift deletion. */
#include "idmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static inline uint32_t slot_of(const idmap_t *m, uint64_t key)
{
    /* Fibonacci hashing: ids are often sequential, the multiply spreads them. */
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (m->cap - 1);
}

int idmap_init(idmap_t *m, uint32_t cap)
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

void idmap_free(idmap_t *m)
{
    free(m->keys);
    free(m->vals);
    m->keys = NULL;
    m->vals = NULL;
    m->cap = m->n = 0;
}

void *idmap_get(const idmap_t *m, uint64_t key)
{
    for (uint32_t i = slot_of(m, key);; i = (i + 1) & (m->cap - 1)) {
        if (m->vals[i] == NULL)
            return NULL;
        if (m->keys[i] == key)
            return m->vals[i];
    }
}

static int grow(idmap_t *m)
{
    idmap_t bigger;
    if (idmap_init(&bigger, m->cap * 2) < 0)
        return -1;
    for (uint32_t i = 0; i < m->cap; i++)
        if (m->vals[i] != NULL)
            idmap_put(&bigger, m->keys[i], m->vals[i]);
    idmap_free(m);
    *m = bigger;
    return 0;
}

int idmap_put(idmap_t *m, uint64_t key, void *val)
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

void *idmap_del(idmap_t *m, uint64_t key)
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

void idmap_clear(idmap_t *m)
{
    if (m->n > 0)
        memset(m->vals, 0, m->cap * sizeof(*m->vals));
    m->n = 0;
}

bool idmap_next(const idmap_t *m, uint32_t *pos, void **val)
{
    for (; *pos < m->cap; (*pos)++) {
        if (m->vals[*pos] != NULL) {
            *val = m->vals[(*pos)++];
            return true;
        }
    }
    return false;
}

