#include "registry.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* One slot per tenant/name, in two chained hash tables (by name and by
 * id). The slot outlives updates; its fn is swapped. */
typedef struct slot {
    char *tenant;
    char *name;
    uint64_t hash;          /* of tenant/name */
    uint64_t id;            /* reg_function_t.id of whatever fn it holds */
    uint64_t mark;          /* reload number that last saw its file */
    reg_function_t *fn;     /* current; the registry holds one reference */
    struct slot *next_name; /* chain in by_name */
    struct slot *next_id;   /* chain in by_id */
} slot_t;

struct registry {
    store_t *store;          /* borrowed */
    char *functions_dir;     /* NULL when none */
    slot_t **by_name;        /* size buckets each */
    slot_t **by_id;
    size_t size;             /* power of two */
    size_t n;                /* slots */
    uint64_t next_id;        /* ids are never reused */
    uint64_t next_generation;
    uint64_t reloads;        /* for slot.mark */
    reg_change_fn on_change;
    void *on_change_arg;
};

static uint64_t key_hash(const char *tenant, const char *name)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)tenant; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    h = (h ^ '/') * 1099511628211ULL; /* '/' is in neither name */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

static uint64_t id_hash(uint64_t id)
{
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdULL;
    id ^= id >> 33;
    return id;
}

reg_function_t *reg_function_ref(const reg_function_t *f)
{
    reg_function_t *m = (reg_function_t *)f; /* refs are bookkeeping, not content */
    m->refs++;
    return m;
}

void reg_function_unref(const reg_function_t *f)
{
    reg_function_t *m = (reg_function_t *)f;
    if (m == NULL || --m->refs > 0)
        return;
    cfg_function_free(m->spec);
    free(m->path);
    free(m);
}

/* A new function object owning spec (freed on failure). */
static reg_function_t *fn_new(cfg_function_t *spec, reg_source_t source, const char *path, int64_t version)
{
    reg_function_t *f = calloc(1, sizeof(*f));
    if (f == NULL || (path != NULL && (f->path = strdup(path)) == NULL)) {
        free(f);
        cfg_function_free(spec);
        return NULL;
    }
    f->spec = spec;
    f->source = source;
    f->version = version;
    f->refs = 1;
    return f;
}

static slot_t *find(const registry_t *r, const char *tenant, const char *name)
{
    uint64_t h = key_hash(tenant, name);
    for (slot_t *s = r->by_name[h & (r->size - 1)]; s != NULL; s = s->next_name)
        if (s->hash == h && strcmp(s->tenant, tenant) == 0 && strcmp(s->name, name) == 0)
            return s;
    return NULL;
}

static void grow(registry_t *r)
{
    size_t size = r->size * 2;
    slot_t **bn = calloc(size, sizeof(*bn)), **bi = calloc(size, sizeof(*bi));
    if (bn == NULL || bi == NULL) {
        free(bn);
        free(bi);
        return; /* longer chains, still correct */
    }
    for (size_t i = 0; i < r->size; i++)
        for (slot_t *s = r->by_name[i], *nx; s != NULL; s = nx) {
            nx = s->next_name;
            s->next_name = bn[s->hash & (size - 1)];
            bn[s->hash & (size - 1)] = s;
            s->next_id = bi[id_hash(s->id) & (size - 1)];
            bi[id_hash(s->id) & (size - 1)] = s;
        }
    free(r->by_name);
    free(r->by_id);
    r->by_name = bn;
    r->by_id = bi;
    r->size = size;
}

static void notify(registry_t *r, const reg_function_t *old, const reg_function_t *now)
{
    if (r->on_change != NULL)
        r->on_change(r->on_change_arg, old, now);
}

/* Publish fn (its reference passes to the registry) as a new tenant/name. */
static int insert(registry_t *r, reg_function_t *fn, hearth_error_t *err)
{
    slot_t *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->tenant = strdup(fn->spec->tenant)) == NULL || (s->name = strdup(fn->spec->name)) == NULL) {
        if (s != NULL)
            free(s->tenant);
        free(s);
        reg_function_unref(fn);
        return hearth_error_tag(err, ENOMEM, "registry: out of memory");
    }
    if (r->n + 1 > r->size)
        grow(r);
    s->hash = key_hash(s->tenant, s->name);
    s->id = fn->id = ++r->next_id;
    fn->generation = ++r->next_generation;
    fn->current = true;
    s->fn = fn;
    s->mark = r->reloads;
    s->next_name = r->by_name[s->hash & (r->size - 1)];
    r->by_name[s->hash & (r->size - 1)] = s;
    s->next_id = r->by_id[id_hash(s->id) & (r->size - 1)];
    r->by_id[id_hash(s->id) & (r->size - 1)] = s;
    r->n++;
    notify(r, NULL, fn);
    return 0;
}

/* Swap the slot's function for fn (reference passed in). */
static void replace(registry_t *r, slot_t *s, reg_function_t *fn)
{
    reg_function_t *old = s->fn;
    fn->id = s->id;
    fn->generation = ++r->next_generation;
    fn->current = true;
    old->current = false;
    s->fn = fn;
    notify(r, old, fn);
    reg_function_unref(old);
}

static void remove_slot(registry_t *r, slot_t *s)
{
    slot_t **pp = &r->by_name[s->hash & (r->size - 1)];
    while (*pp != s)
        pp = &(*pp)->next_name;
    *pp = s->next_name;
    pp = &r->by_id[id_hash(s->id) & (r->size - 1)];
    while (*pp != s)
        pp = &(*pp)->next_id;
    *pp = s->next_id;
    r->n--;
    reg_function_t *old = s->fn;
    old->current = false;
    notify(r, old, NULL);
    reg_function_unref(old);
    free(s->tenant);
    free(s->name);
    free(s);
}

/* A stored row as a function object; NULL with err when its spec no longer
 * validates (or ENOMEM). */
static reg_function_t *from_row(const store_function_t *row, hearth_error_t *err)
{
    cfg_function_t *spec = NULL;
    if (cfg_function_parse(row->spec_json, strlen(row->spec_json), row->tenant, &spec, err) < 0)
        return NULL;
    if (strcmp(spec->tenant, row->tenant) != 0 || strcmp(spec->name, row->name) != 0) {
        cfg_function_free(spec);
        hearth_error_tag(err, EINVAL, "stored spec names %s/%s", spec->tenant, spec->name);
        return NULL;
    }
    reg_function_t *f = fn_new(spec, REG_SOURCE_API, NULL, row->version);
    if (f == NULL)
        hearth_error_tag(err, ENOMEM, "registry: out of memory");
    return f;
}

typedef struct {
    registry_t *r;
    reg_reload_stats_t *stats;
    hearth_error_t *err;
} load_ctx_t;

static int load_row(const store_function_t *row, void *arg)
{
    load_ctx_t *c = arg;
    hearth_error_t e = {0};
    reg_function_t *f = from_row(row, &e);
    if (f == NULL) {
        if (e.code == ENOMEM)
            return hearth_error_tag(c->err, ENOMEM, "registry: out of memory");
        /* One bad row must not keep the daemon from starting: skip it
         * and say so (the row stays in the store for inspection). */
        if (c->stats->invalid++ == 0)
            snprintf(c->stats->first_invalid, sizeof(c->stats->first_invalid), "%.63s/%.63s: %.120s", row->tenant,
                     row->name, e.msg);
        return 0;
    }
    return insert(c->r, f, c->err) < 0 ? -1 : 0;
}

int reg_reload_dir(registry_t *r, reg_reload_stats_t *stats, hearth_error_t *err)
{
    reg_reload_stats_t local;
    if (stats == NULL)
        stats = &local;
    memset(stats, 0, sizeof(*stats));

    cfg_function_list_t list = {0};
    if (r->functions_dir != NULL && cfg_functions_load_dir(r->functions_dir, &list, err) < 0)
        return -1;
    r->reloads++;
    /* Past this point only ENOMEM can fail, and then the registry holds a
     * mix of old and new files: still consistent per function. */
    int rc = 0;
    for (size_t i = 0; i < list.n; i++) {
        cfg_function_t *spec = steal_pointer(&list.items[i]);
        slot_t *s = find(r, spec->tenant, spec->name);
        if (s != NULL) {
            s->mark = r->reloads;
            if (s->fn->source == REG_SOURCE_FILE && strcmp(s->fn->path, list.paths[i]) == 0 &&
                cfg_function_equal(s->fn->spec, spec)) {
                stats->unchanged++;
                cfg_function_free(spec);
                continue;
            }
            if (s->fn->source == REG_SOURCE_API)
                stats->shadowed++;
            reg_function_t *f = fn_new(spec, REG_SOURCE_FILE, list.paths[i], s->fn->version + 1);
            if (f == NULL) {
                rc = hearth_error_tag(err, ENOMEM, "registry: out of memory");
                break;
            }
            replace(r, s, f);
            stats->changed++;
            continue;
        }
        reg_function_t *f = fn_new(spec, REG_SOURCE_FILE, list.paths[i], 1);
        if (f == NULL || insert(r, f, err) < 0) {
            rc = f == NULL ? hearth_error_tag(err, ENOMEM, "registry: out of memory") : -1;
            break;
        }
        stats->added++;
    }
    cfg_function_list_clear(&list);
    if (rc < 0)
        return rc;

    /* Files gone since the last reload: their function goes, or the
     * stored one it hid comes back. */
    for (size_t b = 0; b < r->size; b++) {
        for (slot_t *s = r->by_name[b], *nx; s != NULL; s = nx) {
            nx = s->next_name;
            if (s->fn->source != REG_SOURCE_FILE || s->mark == r->reloads)
                continue;
            store_function_t row;
            hearth_error_t e = {0};
            int found = r->store ? store_get_function(r->store, s->tenant, s->name, &row, &e) : 0;
            if (found < 0)
                return hearth_error_tag(err, e.code, "%s", e.msg);
            if (found == 1) {
                reg_function_t *f = from_row(&row, &e);
                store_function_clear(&row);
                if (f != NULL) {
                    /* Keep versions moving forward across the swap. */
                    if (f->version <= s->fn->version)
                        f->version = s->fn->version + 1;
                    replace(r, s, f);
                    stats->changed++;
                    continue;
                }
            }
            remove_slot(r, s);
            stats->removed++;
        }
    }
    return 0;
}

int reg_open(store_t *store, const char *functions_dir, registry_t **out, reg_reload_stats_t *stats,
             hearth_error_t *err)
{
    reg_reload_stats_t local;
    if (stats == NULL)
        stats = &local;
    memset(stats, 0, sizeof(*stats));
    registry_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return hearth_error_tag(err, ENOMEM, "registry: out of memory");
    r->store = store;
    r->size = 64;
    r->by_name = calloc(r->size, sizeof(slot_t *));
    r->by_id = calloc(r->size, sizeof(slot_t *));
    if (r->by_name == NULL || r->by_id == NULL ||
        (functions_dir != NULL && functions_dir[0] != '\0' && (r->functions_dir = strdup(functions_dir)) == NULL)) {
        reg_close(r);
        return hearth_error_tag(err, ENOMEM, "registry: out of memory");
    }
    if (store != NULL) {
        load_ctx_t c = {r, stats, err};
        if (store_list_functions(store, NULL, load_row, &c, err) != 0) {
            reg_close(r);
            return hearth_error_wrap(err, "load functions from the store");
        }
    }
    reg_reload_stats_t from_store = *stats;
    if (reg_reload_dir(r, stats, err) < 0) {
        reg_close(r);
        return -1;
    }
    stats->invalid = from_store.invalid;
    memcpy(stats->first_invalid, from_store.first_invalid, sizeof(stats->first_invalid));
    *out = r;
    return 0;
}

void reg_close(registry_t *r)
{
    if (r == NULL)
        return;
    r->on_change = NULL; /* closing is not a stream of removals */
    for (size_t b = 0; b < r->size && r->by_name != NULL; b++)
        for (slot_t *s = r->by_name[b], *nx; s != NULL; s = nx) {
            nx = s->next_name;
            s->fn->current = false;
            reg_function_unref(s->fn);
            free(s->tenant);
            free(s->name);
            free(s);
        }
    free(r->by_name);
    free(r->by_id);
    free(r->functions_dir);
    free(r);
}

void reg_set_listener(registry_t *r, reg_change_fn fn, void *arg)
{
    r->on_change = fn;
    r->on_change_arg = arg;
}

int reg_put(registry_t *r, const auth_t *auth, const auth_tenant_t *caller, cfg_function_t *spec, bool *created,
            const reg_function_t **out, hearth_error_t *err)
{
    if (!auth_may_act(caller, spec->tenant)) {
        cfg_function_free(spec);
        return hearth_error_tag(err, EACCES, "tenant: only an admin may deploy for another tenant");
    }
    if (auth != NULL && auth_by_name(auth, spec->tenant) == NULL) {
        hearth_error_tag(err, EINVAL, "tenant: unknown tenant `%s`", spec->tenant);
        cfg_function_free(spec);
        return -1;
    }
    slot_t *s = find(r, spec->tenant, spec->name);
    if (s != NULL && s->fn->source == REG_SOURCE_FILE) {
        hearth_error_tag(err, EEXIST, "%s/%s is defined by %s; change that file instead", spec->tenant, spec->name,
             s->fn->path);
        cfg_function_free(spec);
        return -1;
    }
    if (s != NULL && cfg_function_equal(s->fn->spec, spec)) {
        cfg_function_free(spec);
        if (created != NULL)
            *created = false;
        if (out != NULL)
            *out = s->fn;
        return 0;
    }
    char *text = cfg_function_dump(spec);
    if (text == NULL) {
        cfg_function_free(spec);
        return hearth_error_tag(err, ENOMEM, "registry: out of memory");
    }
    bool was_created = false;
    int64_t version = 0;
    int rc = store_put_function(r->store, spec->tenant, spec->name, text, &was_created, &version, err);
    free(text);
    if (rc < 0) {
        cfg_function_free(spec);
        return -1;
    }
    reg_function_t *f = fn_new(spec, REG_SOURCE_API, NULL, version);
    if (f == NULL)
        return hearth_error_tag(err, ENOMEM, "registry: out of memory");
    if (s != NULL)
        replace(r, s, f);
    else if (insert(r, f, err) < 0)
        return -1;
    if (created != NULL)
        *created = s == NULL;
    if (out != NULL)
        *out = f;
    return 0;
}

const reg_function_t *reg_get(registry_t *r, const auth_tenant_t *caller, const char *tenant, const char *name)
{
    if (!auth_may_act(caller, tenant))
        return NULL;
    slot_t *s = find(r, tenant, name);
    return s ? s->fn : NULL;
}

int reg_delete(registry_t *r, const auth_tenant_t *caller, const char *tenant, const char *name,
               hearth_error_t *err)
{
    slot_t *s = auth_may_act(caller, tenant) ? find(r, tenant, name) : NULL;
    if (s == NULL)
        return hearth_error_tag(err, ENOENT, "function %s not found", name);
    if (s->fn->source == REG_SOURCE_FILE)
        return hearth_error_tag(err, EEXIST, "%s/%s is defined by %s; remove that file instead", tenant, name, s->fn->path);
    if (store_delete_function(r->store, tenant, name, err) < 0)
        return -1;
    remove_slot(r, s);
    return 0;
}

static int by_tenant_name(const void *a, const void *b)
{
    const reg_function_t *x = *(reg_function_t *const *)a, *y = *(reg_function_t *const *)b;
    int c = strcmp(x->spec->tenant, y->spec->tenant);
    return c ? c : strcmp(x->spec->name, y->spec->name);
}

int reg_list(registry_t *r, const auth_tenant_t *caller, const char *tenant, reg_function_t ***out, size_t *n,
             hearth_error_t *err)
{
    if (caller == NULL)
        return hearth_error_tag(err, EACCES, "no caller");
    if (tenant == NULL && !caller->admin)
        tenant = caller->name;
    *out = NULL;
    *n = 0;
    if (tenant != NULL && !auth_may_act(caller, tenant))
        return 0; /* nothing visible, exactly like a tenant without functions */
    reg_function_t **list = calloc(r->n + 1, sizeof(*list));
    if (list == NULL)
        return hearth_error_tag(err, ENOMEM, "registry: out of memory");
    size_t k = 0;
    for (size_t b = 0; b < r->size; b++)
        for (slot_t *s = r->by_name[b]; s != NULL; s = s->next_name)
            if (tenant == NULL || strcmp(s->tenant, tenant) == 0)
                list[k++] = reg_function_ref(s->fn);
    qsort(list, k, sizeof(*list), by_tenant_name);
    *out = list;
    *n = k;
    return 0;
}

void reg_list_free(reg_function_t **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        reg_function_unref(list[i]);
    free(list);
}

const reg_function_t *reg_by_id(registry_t *r, uint64_t id)
{
    for (slot_t *s = r->by_id[id_hash(id) & (r->size - 1)]; s != NULL; s = s->next_id)
        if (s->id == id)
            return s->fn;
    return NULL;
}

size_t reg_count(const registry_t *r)
{
    return r->n;
}
