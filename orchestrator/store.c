#include "store.h"
#include "sqlschema.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

/* Schema migrations, applied in order, each in its own transaction with
 * the version bump; the schema_version in `meta` is how many have run.
 * Append, never edit: a database in the field has run the old text. */
static const char *const migrations[] = {
    /* 1: functions and usage */
    "CREATE TABLE functions ("
    "  tenant TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  spec TEXT NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  updated INTEGER NOT NULL,"
    "  PRIMARY KEY (tenant, name)"
    ") WITHOUT ROWID;"
    /* function '' holds the tenant's totals */
    "CREATE TABLE usage ("
    "  tenant TEXT NOT NULL,"
    "  function TEXT NOT NULL,"
    "  cpu_ns_invocation INTEGER NOT NULL DEFAULT 0,"
    "  cpu_ns_overhead INTEGER NOT NULL DEFAULT 0,"
    "  memory_mb_ms INTEGER NOT NULL DEFAULT 0,"
    "  invocations INTEGER NOT NULL DEFAULT 0,"
    "  errors INTEGER NOT NULL DEFAULT 0,"
    "  cold_starts INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (tenant, function)"
    ") WITHOUT ROWID;",
};
#define N_MIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

enum {
    Q_PUT,
    Q_GET,
    Q_DELETE,
    Q_LIST_ALL,
    Q_LIST_TENANT,
    Q_ADD_USAGE,
    Q_READ_USAGE,
    Q_LIST_USAGE,
    Q_BEGIN,
    Q_COMMIT,
    Q_ROLLBACK,
    N_QUERIES,
};

#define USAGE_COLS "cpu_ns_invocation, cpu_ns_overhead, memory_mb_ms, invocations, errors, cold_starts"

static const char *const queries[N_QUERIES] = {
    [Q_PUT] = "INSERT INTO functions (tenant, name, version, spec, created, updated)"
              " VALUES (?1, ?2, 1, ?3, ?4, ?4)"
              " ON CONFLICT (tenant, name) DO UPDATE SET"
              "  version = version + 1, spec = excluded.spec, updated = excluded.updated"
              " RETURNING version",
    [Q_GET] = "SELECT tenant, name, version, spec, created, updated FROM functions"
              " WHERE tenant = ?1 AND name = ?2",
    [Q_DELETE] = "DELETE FROM functions WHERE tenant = ?1 AND name = ?2",
    [Q_LIST_ALL] = "SELECT tenant, name, version, spec, created, updated FROM functions"
                   " ORDER BY tenant, name",
    [Q_LIST_TENANT] = "SELECT tenant, name, version, spec, created, updated FROM functions"
                      " WHERE tenant = ?1 ORDER BY name",
    [Q_ADD_USAGE] = "INSERT INTO usage (tenant, function, " USAGE_COLS ")"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                    " ON CONFLICT (tenant, function) DO UPDATE SET"
                    "  cpu_ns_invocation = cpu_ns_invocation + excluded.cpu_ns_invocation,"
                    "  cpu_ns_overhead = cpu_ns_overhead + excluded.cpu_ns_overhead,"
                    "  memory_mb_ms = memory_mb_ms + excluded.memory_mb_ms,"
                    "  invocations = invocations + excluded.invocations,"
                    "  errors = errors + excluded.errors,"
                    "  cold_starts = cold_starts + excluded.cold_starts",
    [Q_READ_USAGE] = "SELECT " USAGE_COLS " FROM usage WHERE tenant = ?1 AND function = ?2",
    [Q_LIST_USAGE] = "SELECT tenant, function, " USAGE_COLS " FROM usage ORDER BY tenant, function",
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
};

struct store {
    sqlite3 *db;                   /* one connection, event loop thread only */
    char *path;                    /* state_dir/hearth.db */
    sqlite3_stmt *stmt[N_QUERIES]; /* prepared once at open, reset after each use */
};

/* SQLITE_FULL is the one worth telling apart: the async path answers 503
 * on a full disk and keeps serving. */
static int db_error(store_t *s, hearth_error_t *err, int rc, const char *what)
{
    int code = rc == SQLITE_FULL ? ENOSPC : (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) ? EBUSY : EIO;
    hearth_error_set(err, 0, "store: %s: %s", what, s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
    if (err != NULL)
        err->code = code;
    return -1;
}

static int exec_sql(store_t *s, const char *sql, hearth_error_t *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        hearth_error_set(err, 0, "store: `%.60s`: %s", sql, msg ? msg : sqlite3_errstr(rc));
        if (err != NULL)
            err->code = rc == SQLITE_FULL ? ENOSPC : EIO;
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}


int store_open(const char *state_dir, store_t **out, hearth_error_t *err)
{
    if (sqlschema_make_dirs(state_dir, err) < 0)
        return -1;
    store_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return hearth_error_set(err, ENOMEM, "store");
    if (asprintf(&s->path, "%s/hearth.db", state_dir) < 0) {
        free(s);
        return hearth_error_set(err, ENOMEM, "store");
    }
    if (sqlschema_private_files(s->path, err) < 0) {
        store_close(s);
        return -1;
    }
    int rc = sqlite3_open_v2(s->path, &s->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOFOLLOW |
                                 SQLITE_OPEN_EXRESCODE,
                             NULL);
    if (rc != SQLITE_OK) {
        db_error(s, err, rc, "open");
        hearth_error_wrap(err, "%s", s->path);
        store_close(s);
        return -1;
    }
    /* journal_mode answers with a row; exec ignores it. Check it took:
     * on a file system without shared memory support WAL is refused. */
    sqlite3_busy_timeout(s->db, 5000);
    /* Exclusive: only this daemon opens its store, and holding the lock
     * saves the file-lock calls every transaction would make; a second
     * hearthd on the same state_dir fails here. Set before WAL, so that
     * the WAL index lives in the heap, not in a shared-memory file. */
    if (exec_sql(s, "PRAGMA locking_mode = EXCLUSIVE", err) < 0 ||
        exec_sql(s, "PRAGMA journal_mode = WAL", err) < 0 ||
        exec_sql(s, "PRAGMA synchronous = NORMAL", err) < 0 ||
        sqlschema_migrate(s->db, "store", s->path, migrations, N_MIGRATIONS, err) < 0) {
        if ((sqlite3_errcode(s->db) & 0xff) == SQLITE_BUSY)
            hearth_error_set(err, EBUSY, "%s is in use by another process (another hearthd with this state_dir?)",
                             s->path);
        else
            hearth_error_wrap(err, "%s", s->path);
        store_close(s);
        return -1;
    }
    for (int i = 0; i < N_QUERIES; i++) {
        rc = sqlite3_prepare_v3(s->db, queries[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i], NULL);
        if (rc != SQLITE_OK) {
            db_error(s, err, rc, "prepare");
            store_close(s);
            return -1;
        }
    }
    *out = s;
    return 0;
}

void store_close(store_t *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < N_QUERIES; i++)
        sqlite3_finalize(s->stmt[i]);
    sqlite3_close(s->db);
    free(s->path);
    free(s);
}

const char *store_path(const store_t *s)
{
    return s->path;
}

int store_schema_version(store_t *s, int *version, hearth_error_t *err)
{
    return sqlschema_version(s->db, "store", version, err);
}

/* Run a statement that returns no rows, and reset it. */
static int step_done(store_t *s, sqlite3_stmt *st, const char *what, hearth_error_t *err)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE)
        return db_error(s, err, rc, what);
    return 0;
}

int store_begin(store_t *s, hearth_error_t *err)
{
    return step_done(s, s->stmt[Q_BEGIN], "begin", err);
}

int store_commit(store_t *s, hearth_error_t *err)
{
    return step_done(s, s->stmt[Q_COMMIT], "commit", err);
}

void store_rollback(store_t *s)
{
    if (!sqlite3_get_autocommit(s->db))
        step_done(s, s->stmt[Q_ROLLBACK], "rollback", NULL);
}

static int bind_text(store_t *s, sqlite3_stmt *st, int i, const char *v, hearth_error_t *err)
{
    int rc = v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
    if (rc != SQLITE_OK) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return db_error(s, err, rc, "bind");
    }
    return 0;
}

int store_put_function(store_t *s, const char *tenant, const char *name, const char *spec_json,
                       bool *created, int64_t *version, hearth_error_t *err)
{
    sqlite3_stmt *st = s->stmt[Q_PUT];
    if (bind_text(s, st, 1, tenant, err) < 0 || bind_text(s, st, 2, name, err) < 0 ||
        bind_text(s, st, 3, spec_json, err) < 0)
        return -1;
    sqlite3_bind_int64(st, 4, wall_ms());
    int rc = sqlite3_step(st);
    int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    /* RETURNING: the row is produced before the statement completes. */
    if (rc == SQLITE_ROW)
        rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE || v < 1)
        return db_error(s, err, rc, "put function");
    if (created != NULL)
        *created = v == 1;
    if (version != NULL)
        *version = v;
    return 0;
}

static char *col_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return strdup(t ? (const char *)t : "");
}

static void row_view(sqlite3_stmt *st, store_function_t *f)
{
    f->tenant = (char *)sqlite3_column_text(st, 0);
    f->name = (char *)sqlite3_column_text(st, 1);
    f->version = sqlite3_column_int64(st, 2);
    f->spec_json = (char *)sqlite3_column_text(st, 3);
    f->created = sqlite3_column_int64(st, 4);
    f->updated = sqlite3_column_int64(st, 5);
}

void store_function_clear(store_function_t *f)
{
    free(f->tenant);
    free(f->name);
    free(f->spec_json);
    memset(f, 0, sizeof(*f));
}

int store_get_function(store_t *s, const char *tenant, const char *name, store_function_t *out,
                       hearth_error_t *err)
{
    sqlite3_stmt *st = s->stmt[Q_GET];
    if (bind_text(s, st, 1, tenant, err) < 0 || bind_text(s, st, 2, name, err) < 0)
        return -1;
    int rc = sqlite3_step(st);
    int found = 0;
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        out->tenant = col_dup(st, 0);
        out->name = col_dup(st, 1);
        out->version = sqlite3_column_int64(st, 2);
        out->spec_json = col_dup(st, 3);
        out->created = sqlite3_column_int64(st, 4);
        out->updated = sqlite3_column_int64(st, 5);
        found = 1;
        if (out->tenant == NULL || out->name == NULL || out->spec_json == NULL) {
            store_function_clear(out);
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            return hearth_error_set(err, ENOMEM, "store: get function");
        }
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(s, err, rc, "get function");
    return found;
}

int store_delete_function(store_t *s, const char *tenant, const char *name, hearth_error_t *err)
{
    sqlite3_stmt *st = s->stmt[Q_DELETE];
    if (bind_text(s, st, 1, tenant, err) < 0 || bind_text(s, st, 2, name, err) < 0)
        return -1;
    if (step_done(s, st, "delete function", err) < 0)
        return -1;
    return sqlite3_changes(s->db) > 0 ? 1 : 0;
}

int store_list_functions(store_t *s, const char *tenant, store_function_cb cb, void *arg, hearth_error_t *err)
{
    sqlite3_stmt *st = s->stmt[tenant ? Q_LIST_TENANT : Q_LIST_ALL];
    if (tenant != NULL && bind_text(s, st, 1, tenant, err) < 0)
        return -1;
    int rc, ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_function_t f;
        row_view(st, &f);
        if ((ret = cb(&f, arg)) != 0)
            break;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (ret != 0)
        return ret;
    if (rc != SQLITE_DONE)
        return db_error(s, err, rc, "list functions");
    return 0;
}

static int add_usage_row(store_t *s, const char *tenant, const char *function, const store_usage_t *d,
                         hearth_error_t *err)
{
    sqlite3_stmt *st = s->stmt[Q_ADD_USAGE];
    if (bind_text(s, st, 1, tenant, err) < 0 || bind_text(s, st, 2, function, err) < 0)
        return -1;
    sqlite3_bind_int64(st, 3, d->cpu_ns_invocation);
    sqlite3_bind_int64(st, 4, d->cpu_ns_overhead);
    sqlite3_bind_int64(st, 5, d->memory_mb_ms);
    sqlite3_bind_int64(st, 6, d->invocations);
    sqlite3_bind_int64(st, 7, d->errors);
    sqlite3_bind_int64(st, 8, d->cold_starts);
    return step_done(s, st, "add usage", err);
}

int store_add_usage(store_t *s, const char *tenant, const char *function, const store_usage_t *delta,
                    hearth_error_t *err)
{
    bool own_tx = sqlite3_get_autocommit(s->db) != 0;
    if (own_tx && store_begin(s, err) < 0)
        return -1;
    if (add_usage_row(s, tenant, "", delta, err) < 0 ||
        (function != NULL && add_usage_row(s, tenant, function, delta, err) < 0)) {
        if (own_tx)
            store_rollback(s);
        return -1;
    }
    if (own_tx && store_commit(s, err) < 0) {
        store_rollback(s);
        return -1;
    }
    return 0;
}

static void usage_row(sqlite3_stmt *st, int first, store_usage_t *u)
{
    u->cpu_ns_invocation = sqlite3_column_int64(st, first);
    u->cpu_ns_overhead = sqlite3_column_int64(st, first + 1);
    u->memory_mb_ms = sqlite3_column_int64(st, first + 2);
    u->invocations = sqlite3_column_int64(st, first + 3);
    u->errors = sqlite3_column_int64(st, first + 4);
    u->cold_starts = sqlite3_column_int64(st, first + 5);
}

int store_read_usage(store_t *s, const char *tenant, const char *function, store_usage_t *out,
                     hearth_error_t *err)
{
    sqlite3_stmt *st = s->stmt[Q_READ_USAGE];
    if (bind_text(s, st, 1, tenant, err) < 0 || bind_text(s, st, 2, function ? function : "", err) < 0)
        return -1;
    memset(out, 0, sizeof(*out));
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        usage_row(st, 0, out);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(s, err, rc, "read usage");
    return 0;
}

int store_list_usage(store_t *s, store_usage_cb cb, void *arg, hearth_error_t *err)
{
    sqlite3_stmt *st = s->stmt[Q_LIST_USAGE];
    int rc, ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_usage_t u;
        usage_row(st, 2, &u);
        const char *fn = (const char *)sqlite3_column_text(st, 1);
        if ((ret = cb((const char *)sqlite3_column_text(st, 0), fn && fn[0] ? fn : NULL, &u, arg)) != 0)
            break;
    }
    sqlite3_reset(st);
    if (ret != 0)
        return ret;
    if (rc != SQLITE_DONE)
        return db_error(s, err, rc, "list usage");
    return 0;
}
