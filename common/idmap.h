/* uint64 id -> pointer, open addressing with linear probing. O(1) get,
 * put and delete; used by the scheduler and the daemon for their ids. */
#ifndef HEARTH_IDMAP_H
#define HEARTH_IDMAP_H

#include <stdbool.h>
#include <stdint.h>

typedef struct idmap {
    uint64_t *keys; /* slot keys */
    void **vals;    /* slot values; NULL marks an empty slot */
    uint32_t cap;   /* power of two */
    uint32_t n;     /* used slots */
} idmap_t;

int idmap_init(idmap_t *m, uint32_t cap);
void idmap_free(idmap_t *m);
void *idmap_get(const idmap_t *m, uint64_t key);
int idmap_put(idmap_t *m, uint64_t key, void *val); /* -1 on ENOMEM; key must be absent */
void *idmap_del(idmap_t *m, uint64_t key);
void idmap_clear(idmap_t *m); /* forget every entry, keep the capacity */
/* Iterate: for (uint32_t i = 0; idmap_next(m, &i, &v);) */
bool idmap_next(const idmap_t *m, uint32_t *pos, void **val);

#endif
