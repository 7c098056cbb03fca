/* Durable state in SQLite: `state_dir/hearth.db`.
 *
 * One connection, used from the daemon's event loop thread only. WAL mode
 * with synchronous=NORMAL: a commit is durable against a crash of hearthd,
 * and against power loss up to the last checkpoint — right for specs and
 * usage counters, which can be redeployed or are approximate anyway.
 *
 * The async journal (journal.[ch]) needs synchronous=FULL and group
 * commit: it lives in its own file, state_dir/journal.db, with its own
 * connection and migrations, so that nothing here changes its durability
 * and its fsyncs never wait behind ours. */
#ifndef HEARTH_STORE_H
#define HEARTH_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/util.h"

typedef struct store store_t;

typedef struct store_function {
    char *tenant;     /* owner */
    char *name;       /* unique per tenant */
    int64_t version;  /* 1 when created, +1 at each update */
    char *spec_json;  /* the spec as cfg_function_dump wrote it */
    int64_t created;  /* Unix time, ms */
    int64_t updated;  /* Unix time, ms */
} store_function_t;

typedef struct store_usage {
    int64_t cpu_ns_invocation; /* CPU burnt by the function's own processes */
    int64_t cpu_ns_overhead;   /* CPU of sandbox start-up and tear-down, billed apart */
    int64_t memory_mb_ms;      /* memory limit × wall time */
    int64_t invocations;
    int64_t errors;
    int64_t cold_starts;
} store_usage_t;

/* Open (creating state_dir with mode 0700 and the database if missing) and
 * bring the schema up to date. A database written by a newer hearth (a
 * higher schema_version) is refused rather than guessed at. */
int store_open(const char *state_dir, store_t **out, hearth_error_t *err);
/* Finalizes statements and closes; NULL is fine. */
void store_close(store_t *s);
/* The database file's path. */
const char *store_path(const store_t *s);
int store_schema_version(store_t *s, int *version, hearth_error_t *err);

/* Group several writes in one transaction (one WAL commit). Not nestable;
 * the single-call functions below join an open transaction instead of
 * starting their own. */
int store_begin(store_t *s, hearth_error_t *err);
int store_commit(store_t *s, hearth_error_t *err);
void store_rollback(store_t *s);

/* Create or replace a function. *created says which; *version is the new
 * version (1 when created). Either may be NULL. */
int store_put_function(store_t *s, const char *tenant, const char *name, const char *spec_json,
                       bool *created, int64_t *version, hearth_error_t *err);
/* 1 and *out filled (free with store_function_clear), 0 when absent, -1 on error. */
int store_get_function(store_t *s, const char *tenant, const char *name, store_function_t *out,
                       hearth_error_t *err);
/* 1 when deleted, 0 when absent, -1 on error. */
int store_delete_function(store_t *s, const char *tenant, const char *name, hearth_error_t *err);
void store_function_clear(store_function_t *f);

/* Called for each function, ordered by tenant and name; fields are valid
 * during the call only. A non-zero return stops the walk and is returned. */
typedef int (*store_function_cb)(const store_function_t *f, void *arg);
/* Functions of tenant, or of every tenant when tenant is NULL. */
int store_list_functions(store_t *s, const char *tenant, store_function_cb cb, void *arg, hearth_error_t *err);

/* Add delta to the tenant's totals and, when function is not NULL, to the
 * function's, in one transaction. */
int store_add_usage(store_t *s, const char *tenant, const char *function, const store_usage_t *delta,
                    hearth_error_t *err);
/* Totals of a tenant (function NULL) or of one function; zeros when none. */
int store_read_usage(store_t *s, const char *tenant, const char *function, store_usage_t *out,
                     hearth_error_t *err);
/* Every row: function is NULL for a tenant's totals. */
typedef int (*store_usage_cb)(const char *tenant, const char *function, const store_usage_t *u, void *arg);
int store_list_usage(store_t *s, store_usage_cb cb, void *arg, hearth_error_t *err);

#endif
