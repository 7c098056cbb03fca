/* Functions by tenant and name: in memory (hash tables by tenant/name and by
 * id), durable in the store.
 *
 * Two sources: functions deployed through the API (kept in the store, so
 * they survive restarts) and files in functions_dir (re-read on SIGHUP:
 * added, changed and removed files are reflected). The operator's files
 * win: a file defining tenant/name hides a stored function of the same
 * name while it exists, and the API refuses to overwrite or delete it
 * (EEXIST) — the file would undo the change at the next reload.
 *
 * A reg_function_t is immutable once published. An update publishes a new
 * one with the same id, a new generation and (for a changed spec) a higher
 * version; the old one lives on while references to it remain (an
 * invocation in flight, the scheduler's draining sandboxes). Single
 * threaded: the daemon's loop owns the registry.
 *
 * Errors carry err->code: ENOENT (absent or another tenant's: answer 404
 * for both), EACCES (deploying for another tenant without admin: 403),
 * EEXIST (owned by a functions_dir file: 409), EINVAL (bad spec or unknown
 * tenant: 400); anything else is internal (500). */
#ifndef HEARTH_REGISTRY_H
#define HEARTH_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/util.h"
#include "auth.h"
#include "config.h"
#include "store.h"

typedef enum reg_source {
    REG_SOURCE_API,  /* deployed through the API; in the store */
    REG_SOURCE_FILE, /* a functions_dir file */
} reg_source_t;

typedef struct reg_function {
    uint64_t id;           /* stable while tenant/name exists (updates keep it); never reused */
    uint64_t generation;   /* unique per published object: sandboxes of an older one drain */
    int64_t version;       /* user-visible; +1 at each change of the spec */
    cfg_function_t *spec;  /* validated, defaults filled in */
    reg_source_t source;
    char *path;            /* the file, for REG_SOURCE_FILE; else NULL */
    bool current;          /* false once replaced or deleted */
    int refs;              /* the registry's own plus holders' */
} reg_function_t;

typedef struct registry registry_t;

typedef struct reg_reload_stats {
    size_t added;     /* new tenant/name */
    size_t changed;   /* same tenant/name, different spec */
    size_t removed;   /* gone (a stored function hidden by a removed file comes back: changed) */
    size_t unchanged;
    size_t shadowed;  /* stored functions hidden by a file */
    size_t invalid;   /* stored specs that no longer validate; skipped */
    char first_invalid[256]; /* "tenant/name: reason" of the first one */
} reg_reload_stats_t;

/* Told about every change: old NULL → added; now NULL → removed; both →
 * replaced (drain sandboxes of old). Called after the change is visible. */
typedef void (*reg_change_fn)(void *arg, const reg_function_t *old, const reg_function_t *now);

/* Load the store's functions, then functions_dir's (NULL or "" for none).
 * A bad file fails the open, naming it. stats may be NULL. */
int reg_open(store_t *store, const char *functions_dir, registry_t **out, reg_reload_stats_t *stats,
             hearth_error_t *err);
void reg_close(registry_t *r);
void reg_set_listener(registry_t *r, reg_change_fn fn, void *arg);

/* Re-read functions_dir (SIGHUP). All or nothing: if any file is bad,
 * nothing changes and err names the file. */
int reg_reload_dir(registry_t *r, reg_reload_stats_t *stats, hearth_error_t *err);

/* Deploy spec (ownership taken, also on failure) on behalf of caller. auth,
 * when not NULL, must know spec->tenant. *created says 201 vs 200; *out
 * (may be NULL) is borrowed. Re-deploying an identical spec keeps the
 * version and publishes nothing. */
int reg_put(registry_t *r, const auth_t *auth, const auth_tenant_t *caller, cfg_function_t *spec, bool *created,
            const reg_function_t **out, hearth_error_t *err);
/* tenant/name if caller may see it, else NULL (absent and foreign look the
 * same). Borrowed: valid until the next change; reg_function_ref to keep. */
const reg_function_t *reg_get(registry_t *r, const auth_tenant_t *caller, const char *tenant, const char *name);
/* 0 when deleted; -1 with ENOENT, EEXIST (a file's) or an internal error. */
int reg_delete(registry_t *r, const auth_tenant_t *caller, const char *tenant, const char *name,
               hearth_error_t *err);
/* Functions of tenant (NULL: every tenant, admin only — others get their
 * own), sorted by tenant then name, each with a reference: release with
 * reg_list_free. */
int reg_list(registry_t *r, const auth_tenant_t *caller, const char *tenant, reg_function_t ***out, size_t *n,
             hearth_error_t *err);
void reg_list_free(reg_function_t **list, size_t n);
/* By id, no permission check (for the scheduler). Borrowed. */
const reg_function_t *reg_by_id(registry_t *r, uint64_t id);
size_t reg_count(const registry_t *r);

reg_function_t *reg_function_ref(const reg_function_t *f);
void reg_function_unref(const reg_function_t *f);

#endif
