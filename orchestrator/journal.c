#include "journal.h"
#include "sqlschema.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

/* Schema migrations, applied in order, each in its own transaction with
 * the version bump; meta.schema_version is how many have run. Append,
 * never edit: a journal in the field has run the old text.
 *
 * Payloads and results live in tables of their own: SQLite rewrites a
 * whole row on UPDATE, and every state change would otherwise copy a
 * payload of megabytes into the WAL. Status numbers are jnl_status_t,
 * cb_state numbers jnl_cb_state_t. The partial indexes on status = 0 keep
 * the claim path (tenant round robin, next due) at O(log n) however many
 * ended invocations are kept. */
static const char *const migrations[] = {
    /* 1: invocations, payloads, results, idempotency keys */
    "CREATE TABLE invocations ("
    "  seq INTEGER PRIMARY KEY,"       /* acceptance order */
    "  id TEXT NOT NULL UNIQUE,"
    "  tenant TEXT NOT NULL,"
    "  function TEXT NOT NULL,"
    "  status INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  max_attempts INTEGER NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  next_attempt_at INTEGER NOT NULL,"
    "  started INTEGER,"
    "  finished INTEGER,"
    "  error TEXT,"
    "  idempotency_key TEXT,"
    "  callback_url TEXT,"
    "  cb_state INTEGER NOT NULL DEFAULT 0,"
    "  cb_attempts INTEGER NOT NULL DEFAULT 0,"
    "  cb_next_try_at INTEGER"
    ");"
    "CREATE INDEX inv_queued_tenant ON invocations (tenant, next_attempt_at) WHERE status = 0;"
    "CREATE INDEX inv_queued_due ON invocations (next_attempt_at) WHERE status = 0;"
    "CREATE INDEX inv_status ON invocations (status, finished);"
    "CREATE INDEX inv_function ON invocations (tenant, function, status);"
    "CREATE INDEX inv_callback ON invocations (cb_next_try_at) WHERE cb_state = 1;"
    "CREATE TABLE payloads (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);"
    "CREATE TABLE results (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);"
    "CREATE TRIGGER inv_delete AFTER DELETE ON invocations BEGIN"
    "  DELETE FROM payloads WHERE seq = old.seq;"
    "  DELETE FROM results WHERE seq = old.seq;"
    "END;"
    "CREATE TABLE idempotency ("
    "  tenant TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  id TEXT NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  PRIMARY KEY (tenant, key)"
    ");"
    "CREATE INDEX idempotency_created ON idempotency (created);",
};
#define N_MIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

enum {
    Q_BEGIN,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_CHECKPOINT,
    Q_IDEM_FIND,
    Q_IDEM_PUT,
    Q_INSERT,
    Q_INSERT_PAYLOAD,
    Q_NEXT_TENANT,
    Q_TENANT_DUE,
    Q_MARK_RUNNING,
    Q_CLAIMED,
    Q_NEXT_DUE,
    Q_OLDEST_DUE,
    Q_FINISH_READ,
    Q_FINISH_DONE,
    Q_FINISH_RETRY,
    Q_PUT_RESULT,
    Q_DROP_PAYLOAD,
    Q_GET,
    Q_LIST_FN,
    Q_LIST_FN_STATUS,
    Q_LIST_TENANT,
    Q_LIST_TENANT_STATUS,
    Q_STATUS_OF,
    Q_RETRY,
    Q_COUNT,
    Q_CB_DUE,
    Q_CB_LEASE,
    Q_CB_VIEW,
    Q_CB_READ,
    Q_CB_SET,
    Q_PRUNE,
    Q_PRUNE_IDEM,
    Q_MARK_STARTED,
    Q_RECOVER_UNSTARTED,
    Q_RECOVER_DEAD,
    Q_RECOVER_QUEUE,
    N_QUERIES,
};

#define REC_COLS                                                                                   \
    "i.id, i.tenant, i.function, i.status, i.attempts, i.max_attempts, i.error, i.created, i.started," \
    " i.finished, i.next_attempt_at, i.idempotency_key, i.callback_url, i.cb_state, i.cb_attempts"

static const char *const queries[N_QUERIES] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_CHECKPOINT] = "PRAGMA wal_checkpoint(TRUNCATE)",
    [Q_IDEM_FIND] = "SELECT id, created FROM idempotency WHERE tenant = ?1 AND key = ?2",
    /* accept checked the window; a row still here is a stale one */
    [Q_IDEM_PUT] = "INSERT INTO idempotency (tenant, key, id, created) VALUES (?1, ?2, ?3, ?4)"
                   " ON CONFLICT (tenant, key) DO UPDATE SET id = excluded.id, created = excluded.created",
    [Q_INSERT] = "INSERT INTO invocations (id, tenant, function, status, max_attempts, created, next_attempt_at,"
                 " idempotency_key, callback_url) VALUES (?1, ?2, ?3, 0, ?4, ?5, ?5, ?6, ?7)",
    [Q_INSERT_PAYLOAD] = "INSERT INTO payloads (seq, data) VALUES (?1, ?2)",
    [Q_NEXT_TENANT] = "SELECT tenant FROM invocations INDEXED BY inv_queued_tenant"
                      " WHERE status = 0 AND tenant > ?1 ORDER BY tenant LIMIT 1",
    [Q_TENANT_DUE] = "SELECT seq FROM invocations INDEXED BY inv_queued_tenant"
                     " WHERE status = 0 AND tenant = ?1 AND next_attempt_at <= ?2"
                     " ORDER BY next_attempt_at, seq LIMIT 1",
    /* started = 0: claimed, not yet running (jnl_started) */
    [Q_MARK_RUNNING] = "UPDATE invocations SET status = 1, attempts = attempts + 1, started = 0"
                       " WHERE seq = ?1 AND status = 0",
    [Q_MARK_STARTED] = "UPDATE invocations SET started = ?2 WHERE id = ?1 AND status = 1 AND started = 0",
    [Q_CLAIMED] = "SELECT i.id, i.tenant, i.function, i.attempts, i.max_attempts, i.created, i.callback_url,"
                  " p.data FROM invocations i LEFT JOIN payloads p USING (seq) WHERE i.seq = ?1",
    [Q_NEXT_DUE] = "SELECT MIN(next_attempt_at) FROM invocations INDEXED BY inv_queued_due WHERE status = 0",
    [Q_OLDEST_DUE] = "SELECT MIN(next_attempt_at) FROM invocations INDEXED BY inv_queued_due"
                     " WHERE status = 0 AND next_attempt_at <= ?1",
    [Q_FINISH_READ] = "SELECT seq, status, attempts, max_attempts, callback_url IS NOT NULL"
                      " FROM invocations WHERE id = ?1",
    /* ?3 status (succeeded or dead), ?4 now, ?5 error, ?6 cb_state */
    [Q_FINISH_DONE] = "UPDATE invocations SET status = ?3, finished = ?4, error = ?5, cb_state = ?6,"
                      " cb_attempts = 0, cb_next_try_at = CASE WHEN ?6 = 1 THEN ?4 END"
                      " WHERE seq = ?1 AND status = ?2",
    [Q_FINISH_RETRY] = "UPDATE invocations SET status = 0, next_attempt_at = ?3, error = ?4"
                       " WHERE seq = ?1 AND status = ?2",
    [Q_PUT_RESULT] = "INSERT OR REPLACE INTO results (seq, data) VALUES (?1, ?2)",
    [Q_DROP_PAYLOAD] = "DELETE FROM payloads WHERE seq = ?1",
    [Q_GET] = "SELECT " REC_COLS ", r.data FROM invocations i LEFT JOIN results r USING (seq)"
              " WHERE i.id = ?1 AND (?2 IS NULL OR i.tenant = ?2)",
    [Q_LIST_FN] = "SELECT " REC_COLS " FROM invocations i WHERE tenant = ?1 AND function = ?2"
                  " ORDER BY seq LIMIT ?4",
    [Q_LIST_FN_STATUS] = "SELECT " REC_COLS " FROM invocations i INDEXED BY inv_function"
                         " WHERE tenant = ?1 AND function = ?2 AND status = ?3 ORDER BY seq LIMIT ?4",
    [Q_LIST_TENANT] = "SELECT " REC_COLS " FROM invocations i WHERE tenant = ?1 ORDER BY seq LIMIT ?4",
    [Q_LIST_TENANT_STATUS] = "SELECT " REC_COLS " FROM invocations i"
                             " WHERE tenant = ?1 AND status = ?3 ORDER BY seq LIMIT ?4",
    [Q_STATUS_OF] = "SELECT status FROM invocations WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)",
    [Q_RETRY] = "UPDATE invocations SET status = 0, attempts = 0, next_attempt_at = ?3, finished = NULL,"
                " cb_state = 0, cb_attempts = 0, cb_next_try_at = NULL"
                " WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2) AND status = 3",
    [Q_COUNT] = "SELECT status, COUNT(*) FROM invocations INDEXED BY inv_status WHERE status IN (0, 1)"
                " GROUP BY status",
    [Q_CB_DUE] = "SELECT seq FROM invocations INDEXED BY inv_callback WHERE cb_state = 1 AND cb_next_try_at <= ?1"
                 " ORDER BY cb_next_try_at LIMIT ?2",
    [Q_CB_LEASE] = "UPDATE invocations SET cb_next_try_at = ?2 WHERE seq = ?1",
    [Q_CB_VIEW] = "SELECT i.id, i.tenant, i.function, i.callback_url, i.status, i.attempts, i.error,"
                  " i.cb_attempts, r.data FROM invocations i LEFT JOIN results r USING (seq) WHERE i.seq = ?1",
    [Q_CB_READ] = "SELECT seq, cb_state, cb_attempts FROM invocations WHERE id = ?1",
    [Q_CB_SET] = "UPDATE invocations SET cb_state = ?2, cb_attempts = ?3, cb_next_try_at = ?4"
                 " WHERE seq = ?1 AND cb_state = 1",
    [Q_PRUNE] = "DELETE FROM invocations WHERE seq IN (SELECT seq FROM invocations INDEXED BY inv_status"
                " WHERE status IN (2, 3) AND finished < ?1 LIMIT ?2)",
    [Q_PRUNE_IDEM] = "DELETE FROM idempotency WHERE rowid IN (SELECT rowid FROM idempotency"
                     " WHERE created < ?1 LIMIT ?2)",
    /* Claimed but never started: the attempt was not made; queued again free. */
    [Q_RECOVER_UNSTARTED] = "UPDATE invocations SET status = 0, attempts = attempts - 1 WHERE status = 1 AND started = 0",
    [Q_RECOVER_DEAD] = "UPDATE invocations SET status = 3, finished = ?1,"
                       " error = 'interrupted by a restart of hearthd on its last attempt',"
                       " cb_state = CASE WHEN callback_url IS NOT NULL THEN 1 ELSE 0 END,"
                       " cb_attempts = 0, cb_next_try_at = CASE WHEN callback_url IS NOT NULL THEN ?1 END"
                       " WHERE status = 1 AND attempts >= max_attempts",
    /* next_attempt_at unchanged: it was due, it keeps its place in line */
    [Q_RECOVER_QUEUE] = "UPDATE invocations SET status = 0, error = 'interrupted by a restart of hearthd'"
                        " WHERE status = 1",
};

struct jnl_ticket {
    jnl_t *j;                  /* set while the journal holds it (batch or done list) */
    jnl_ticket_state_t state;
    bool duplicate;            /* an idempotency-key repeat: no row of its own */
    bool detached;             /* freed by the caller while pending: the journal frees it */
    char id[JNL_ID_LEN + 1];   /* to answer with */
    hearth_error_t err;        /* why FAILED */
    jnl_ticket_cb on_done;
    void *arg;
    jnl_ticket_t *leader;      /* duplicate of a ticket staged in the same batch */
    jnl_ticket_t *next;        /* in j->batch or j->done */
    /* staged invocation; the strings and payload follow the struct */
    const char *tenant;
    const char *function;
    const char *idempotency_key;
    const char *callback_url;
    const void *payload;
    size_t payload_len;
    int max_attempts;
    int64_t created;
};

typedef struct ticket_list {
    jnl_ticket_t *head, *tail;
} ticket_list_t;

struct jnl {
    sqlite3 *db;                   /* own connection, event loop thread only */
    char *path;                    /* state_dir/journal.db */
    sqlite3_stmt *stmt[N_QUERIES]; /* prepared once at open, reset after each use */
    bool sync_full;                /* current PRAGMA synchronous */
    ticket_list_t batch;           /* staged, not yet committed */
    size_t batch_n;                /* tickets in batch */
    size_t batch_bytes;            /* payload bytes in batch */
    ticket_list_t done;            /* resolved, on_done not yet called */
    bool flushing;                 /* inside jnl_flush's notify loop */
    char rr_tenant[JNL_NAME_MAX + 1]; /* claim round robin: last tenant served */
    uint64_t rng;                  /* xorshift state, for jitter */
    jnl_counters_t c;              /* queued, running and the totals */
};

/* ---- errors ---------------------------------------------------------- */

/* The errno a failing SQLite call stands for. ENOSPC and EROFS are told
 * apart (the daemon answers 503 and keeps serving); a write error whose
 * system errno was ENOSPC is a full disk too. */
static int sqlite_errno(sqlite3 *db, int rc)
{
    switch (rc & 0xff) {
    case SQLITE_FULL:
        return ENOSPC;
    case SQLITE_READONLY:
    case SQLITE_PERM:
        return EROFS;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return EBUSY;
    case SQLITE_CONSTRAINT:
        return EEXIST;
    case SQLITE_NOMEM:
        return ENOMEM;
    case SQLITE_TOOBIG:
        return EMSGSIZE;
    case SQLITE_IOERR:
        if (db != NULL && sqlite3_system_errno(db) == ENOSPC)
            return ENOSPC;
        return EIO;
    default:
        return EIO;
    }
}

static int db_error(jnl_t *j, hearth_error_t *err, int rc, const char *what)
{
    hearth_error_set(err, 0, "journal: %s: %s", what, j->db ? sqlite3_errmsg(j->db) : sqlite3_errstr(rc));
    if (err != NULL)
        err->code = sqlite_errno(j->db, rc);
    return -1;
}

static int exec_sql(jnl_t *j, const char *sql, hearth_error_t *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(j->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        hearth_error_set(err, 0, "journal: `%.60s`: %s", sql, msg ? msg : sqlite3_errstr(rc));
        if (err != NULL)
            err->code = sqlite_errno(j->db, rc);
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static void reset(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Run a statement that returns no rows, and reset it. */
static int step_done(jnl_t *j, sqlite3_stmt *st, const char *what, hearth_error_t *err)
{
    int rc = sqlite3_step(st);
    reset(st);
    if (rc != SQLITE_DONE)
        return db_error(j, err, rc, what);
    return 0;
}

static int bind_text(jnl_t *j, sqlite3_stmt *st, int i, const char *v, hearth_error_t *err)
{
    int rc = v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
    if (rc != SQLITE_OK) {
        reset(st);
        return db_error(j, err, rc, "bind");
    }
    return 0;
}

/* A blob column is never NULL here: an empty one is a zero-length blob. */
static int bind_blob(jnl_t *j, sqlite3_stmt *st, int i, const void *v, size_t len, hearth_error_t *err)
{
    int rc = len ? sqlite3_bind_blob64(st, i, v, len, SQLITE_STATIC) : sqlite3_bind_zeroblob(st, i, 0);
    if (rc != SQLITE_OK) {
        reset(st);
        return db_error(j, err, rc, "bind");
    }
    return 0;
}

/* ---- transactions ----------------------------------------------------- */

/* durable: synchronous=FULL, the commit fsyncs the WAL. Otherwise NORMAL:
 * the commit reaches the OS (a crash of hearthd keeps it) without waiting
 * for the disk; a later FULL commit makes it durable with itself, as the
 * WAL is written in order. */
static int begin(jnl_t *j, bool durable, hearth_error_t *err)
{
    /* Not a kept statement: SQLite applies PRAGMA synchronous when the
     * statement is prepared, not when it is stepped. */
    if (durable != j->sync_full) {
        if (exec_sql(j, durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL", err) < 0)
            return -1;
        j->sync_full = durable;
    }
    return step_done(j, j->stmt[Q_BEGIN], "begin", err);
}

static void rollback(jnl_t *j)
{
    if (!sqlite3_get_autocommit(j->db))
        step_done(j, j->stmt[Q_ROLLBACK], "rollback", NULL);
}

static int commit(jnl_t *j, hearth_error_t *err)
{
    if (step_done(j, j->stmt[Q_COMMIT], "commit", err) < 0) {
        rollback(j);
        return -1;
    }
    return 0;
}

/* ---- the state machine ------------------------------------------------ */

static const bool legal[JNL_N_STATUS][JNL_N_STATUS] = {
    [JNL_QUEUED][JNL_RUNNING] = true,    /* claimed */
    [JNL_RUNNING][JNL_SUCCEEDED] = true, /* finished ok */
    [JNL_RUNNING][JNL_QUEUED] = true,    /* failed, attempts left; or recovered after a crash */
    [JNL_RUNNING][JNL_DEAD] = true,      /* failed on the last attempt */
    [JNL_DEAD][JNL_QUEUED] = true,       /* manual retry */
};

/* The one place a status changes: st is an UPDATE guarded by
 * `status = from` (bound by the caller), so the row changes only if it is
 * where the caller believes. Returns 1 when it changed, 0 when the row was
 * elsewhere, -1 on error. Counts are applied by the caller after commit
 * (count()), so a rolled-back transaction counts nothing. */
static int transition(jnl_t *j, sqlite3_stmt *st, jnl_status_t from, jnl_status_t to, hearth_error_t *err)
{
    assert(from < JNL_N_STATUS && to < JNL_N_STATUS && legal[from][to]);
    if (step_done(j, st, "change status", err) < 0)
        return -1;
    return sqlite3_changes(j->db) > 0 ? 1 : 0;
}

static void count(jnl_t *j, jnl_status_t from, jnl_status_t to, int64_t n)
{
    assert(legal[from][to]);
    j->c.transitions[from][to] += n;
    int64_t *live[JNL_N_STATUS] = {[JNL_QUEUED] = &j->c.queued, [JNL_RUNNING] = &j->c.running};
    if (live[from])
        *live[from] -= n;
    if (live[to])
        *live[to] += n;
    if (to == JNL_DEAD)
        j->c.dead_total += n;
    if (from == JNL_RUNNING && to == JNL_QUEUED)
        j->c.retries_total += n;
}

const char *jnl_status_name(jnl_status_t s)
{
    static const char *const names[JNL_N_STATUS] = {"queued", "running", "succeeded", "dead"};
    return s < JNL_N_STATUS ? names[s] : "unknown";
}

const char *jnl_cb_state_name(jnl_cb_state_t s)
{
    static const char *const names[] = {"none", "pending", "delivered", "failed"};
    return (unsigned)s < 4 ? names[s] : "unknown";
}

/* ---- open and close --------------------------------------------------- */

static void free_all(jnl_t *j)
{
    for (int i = 0; i < N_QUERIES; i++)
        sqlite3_finalize(j->stmt[i]);
    sqlite3_close(j->db);
    free(j->path);
    free(j);
}

/* Requeue what a killed predecessor left running (see jnl_open). */
static int recover(jnl_t *j, jnl_open_stats_t *stats, hearth_error_t *err)
{
    int64_t now = wall_ms();
    if (begin(j, true, err) < 0)
        return -1;
    if (step_done(j, j->stmt[Q_RECOVER_UNSTARTED], "recover", err) < 0)
        goto fail;
    int64_t unstarted = sqlite3_changes(j->db);
    sqlite3_bind_int64(j->stmt[Q_RECOVER_DEAD], 1, now);
    if (step_done(j, j->stmt[Q_RECOVER_DEAD], "recover", err) < 0)
        goto fail;
    int64_t dead = sqlite3_changes(j->db);
    if (step_done(j, j->stmt[Q_RECOVER_QUEUE], "recover", err) < 0)
        goto fail;
    int64_t requeued = sqlite3_changes(j->db) + unstarted;
    if (commit(j, err) < 0)
        return -1;

    sqlite3_stmt *st = j->stmt[Q_COUNT];
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t n = sqlite3_column_int64(st, 1);
        if (sqlite3_column_int(st, 0) == JNL_QUEUED)
            j->c.queued = n;
        else
            j->c.running = n;
    }
    reset(st);
    if (rc != SQLITE_DONE)
        return db_error(j, err, rc, "count");
    /* The rows were counted after recovery: count() with what it moved
     * from running, which the count did not see. */
    j->c.running += dead + requeued;
    j->c.queued -= requeued;
    count(j, JNL_RUNNING, JNL_DEAD, dead);
    count(j, JNL_RUNNING, JNL_QUEUED, requeued);
    /* A crash is not a failed attempt: not a retry in the metrics. */
    j->c.retries_total -= requeued;
    if (stats != NULL) {
        stats->requeued = requeued;
        stats->dead = dead;
        stats->queued = j->c.queued;
    }
    return 0;
fail:
    rollback(j);
    return -1;
}

int jnl_open(const char *state_dir, jnl_t **out, jnl_open_stats_t *stats, hearth_error_t *err)
{
    if (sqlschema_make_dirs(state_dir, err) < 0)
        return -1;
    jnl_t *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return hearth_error_set(err, ENOMEM, "journal");
    if (asprintf(&j->path, "%s/journal.db", state_dir) < 0) {
        free(j);
        return hearth_error_set(err, ENOMEM, "journal");
    }
    j->rng = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ now_ns() ^ 0x9e3779b97f4a7c15ull;
    if (sqlschema_private_files(j->path, err) < 0) {
        free_all(j);
        return -1;
    }
    int rc = sqlite3_open_v2(j->path, &j->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOFOLLOW |
                                 SQLITE_OPEN_EXRESCODE,
                             NULL);
    if (rc != SQLITE_OK) {
        db_error(j, err, rc, "open");
        hearth_error_wrap(err, "%s", j->path);
        free_all(j);
        return -1;
    }
    sqlite3_busy_timeout(j->db, 5000);
    /* journal_size_limit: a batch of large payloads grows the WAL; give
     * the space back after the checkpoint rather than keep the high mark
     * (it matters most when the disk is nearly full). */
    if (exec_sql(j, "PRAGMA journal_mode = WAL", err) < 0 || exec_sql(j, "PRAGMA synchronous = FULL", err) < 0 ||
        exec_sql(j, "PRAGMA journal_size_limit = 16777216", err) < 0 ||
        sqlschema_migrate(j->db, "journal", j->path, migrations, N_MIGRATIONS, err) < 0)
        goto fail;
    sqlite3_stmt *mode = NULL;
    if (sqlite3_prepare_v2(j->db, "PRAGMA journal_mode", -1, &mode, NULL) == SQLITE_OK &&
        sqlite3_step(mode) == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(mode, 0), "wal") != 0) {
        hearth_error_set(err, ENOTSUP, "journal: WAL mode refused (file system without shared memory?)");
        sqlite3_finalize(mode);
        goto fail;
    }
    sqlite3_finalize(mode);
    j->sync_full = true;
    for (int i = 0; i < N_QUERIES; i++) {
        rc = sqlite3_prepare_v3(j->db, queries[i], -1, SQLITE_PREPARE_PERSISTENT, &j->stmt[i], NULL);
        if (rc != SQLITE_OK) {
            db_error(j, err, rc, "prepare");
            hearth_error_wrap(err, "query %d", i);
            goto fail;
        }
    }
    if (recover(j, stats, err) < 0)
        goto fail;
    *out = j;
    return 0;
fail:
    hearth_error_wrap(err, "%s", j->path);
    free_all(j);
    return -1;
}

void jnl_close(jnl_t *j)
{
    if (j == NULL)
        return;
    jnl_flush(j, NULL);
    free_all(j);
}

const char *jnl_path(const jnl_t *j)
{
    return j->path;
}

int jnl_schema_version(jnl_t *j, int *version, hearth_error_t *err)
{
    return sqlschema_version(j->db, "journal", version, err);
}

/* ---- accept and group commit ------------------------------------------ */

static void list_push(ticket_list_t *l, jnl_ticket_t *t)
{
    t->next = NULL;
    if (l->tail)
        l->tail->next = t;
    else
        l->head = t;
    l->tail = t;
}

static bool valid_id(const char *id)
{
    if (id == NULL || strlen(id) != JNL_ID_LEN)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

static bool valid_name(const char *s, size_t max)
{
    return s != NULL && s[0] != '\0' && strnlen(s, max + 1) <= max;
}

static int check_new(const jnl_new_t *in, hearth_error_t *err)
{
    if (!valid_id(in->id))
        return hearth_error_set(err, EINVAL, "journal: invocation id must be %d lowercase hex digits", JNL_ID_LEN);
    if (!valid_name(in->tenant, JNL_NAME_MAX) || !valid_name(in->function, JNL_NAME_MAX))
        return hearth_error_set(err, EINVAL, "journal: tenant and function must be 1 to %d bytes", JNL_NAME_MAX);
    if (in->idempotency_key != NULL && !valid_name(in->idempotency_key, JNL_NAME_MAX))
        return hearth_error_set(err, EINVAL, "journal: idempotency key must be 1 to %d bytes", JNL_NAME_MAX);
    if (in->callback_url != NULL && !valid_name(in->callback_url, JNL_URL_MAX))
        return hearth_error_set(err, EINVAL, "journal: callback URL must be 1 to %d bytes", JNL_URL_MAX);
    if (in->payload_len > JNL_PAYLOAD_MAX)
        return hearth_error_set(err, EMSGSIZE, "journal: payload of %zu bytes, more than %u", in->payload_len,
                                JNL_PAYLOAD_MAX);
    if (in->payload_len > 0 && in->payload == NULL)
        return hearth_error_set(err, EINVAL, "journal: payload missing");
    if (in->max_attempts < 1 || in->max_attempts > JNL_ATTEMPTS_MAX)
        return hearth_error_set(err, EINVAL, "journal: max_attempts %d out of 1..%d", in->max_attempts,
                                JNL_ATTEMPTS_MAX);
    return 0;
}

/* One allocation: the ticket, then its strings, then the payload. */
static jnl_ticket_t *ticket_new(const jnl_new_t *in, bool with_data)
{
    size_t lt = strlen(in->tenant) + 1, lf = strlen(in->function) + 1;
    size_t lk = in->idempotency_key ? strlen(in->idempotency_key) + 1 : 0;
    size_t lu = in->callback_url ? strlen(in->callback_url) + 1 : 0;
    size_t lp = with_data ? in->payload_len : 0;
    jnl_ticket_t *t = calloc(1, sizeof(*t) + lt + lf + lk + lu + lp);
    if (t == NULL)
        return NULL;
    char *p = (char *)(t + 1);
    t->tenant = memcpy(p, in->tenant, lt), p += lt;
    t->function = memcpy(p, in->function, lf), p += lf;
    if (lk)
        t->idempotency_key = memcpy(p, in->idempotency_key, lk), p += lk;
    if (lu)
        t->callback_url = memcpy(p, in->callback_url, lu), p += lu;
    if (lp)
        memcpy(p, in->payload, lp);
    t->payload = p;
    t->payload_len = lp;
    t->max_attempts = in->max_attempts;
    t->created = in->created;
    t->on_done = in->on_done;
    t->arg = in->arg;
    t->state = JNL_TICKET_PENDING;
    memcpy(t->id, in->id, JNL_ID_LEN + 1);
    return t;
}

/* A key's original, committed within the window: 1 and its id, 0 if none. */
static int find_key(jnl_t *j, const char *tenant, const char *key, int64_t now, char id[JNL_ID_LEN + 1],
                    hearth_error_t *err)
{
    sqlite3_stmt *st = j->stmt[Q_IDEM_FIND];
    if (bind_text(j, st, 1, tenant, err) < 0 || bind_text(j, st, 2, key, err) < 0)
        return -1;
    int rc = sqlite3_step(st), found = 0;
    if (rc == SQLITE_ROW && sqlite3_column_int64(st, 1) > now - JNL_IDEMPOTENCY_WINDOW_MS &&
        sqlite3_column_bytes(st, 0) == JNL_ID_LEN) {
        memcpy(id, sqlite3_column_text(st, 0), JNL_ID_LEN + 1);
        found = 1;
    }
    reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(j, err, rc, "find idempotency key");
    return found;
}

static void fail_ticket(jnl_ticket_t *t, const hearth_error_t *why)
{
    t->state = JNL_TICKET_FAILED;
    t->err = *why;
}

/* Insert one staged invocation. 0, or -1 with err: err->code EEXIST means
 * this row only was refused (its statement rolled back, the transaction
 * goes on); anything else dooms the batch. */
static int insert_one(jnl_t *j, jnl_ticket_t *t, hearth_error_t *err)
{
    sqlite3_stmt *st = j->stmt[Q_INSERT];
    if (bind_text(j, st, 1, t->id, err) < 0 || bind_text(j, st, 2, t->tenant, err) < 0 ||
        bind_text(j, st, 3, t->function, err) < 0 || bind_text(j, st, 6, t->idempotency_key, err) < 0 ||
        bind_text(j, st, 7, t->callback_url, err) < 0)
        return -1;
    sqlite3_bind_int(st, 4, t->max_attempts);
    sqlite3_bind_int64(st, 5, t->created);
    if (step_done(j, st, "insert invocation", err) < 0)
        return -1;
    int64_t seq = sqlite3_last_insert_rowid(j->db);
    st = j->stmt[Q_INSERT_PAYLOAD];
    sqlite3_bind_int64(st, 1, seq);
    if (bind_blob(j, st, 2, t->payload, t->payload_len, err) < 0 || step_done(j, st, "insert payload", err) < 0)
        goto doomed;
    if (t->idempotency_key != NULL) {
        st = j->stmt[Q_IDEM_PUT];
        if (bind_text(j, st, 1, t->tenant, err) < 0 || bind_text(j, st, 2, t->idempotency_key, err) < 0 ||
            bind_text(j, st, 3, t->id, err) < 0)
            goto doomed;
        sqlite3_bind_int64(st, 4, t->created);
        if (step_done(j, st, "insert idempotency key", err) < 0)
            goto doomed;
    }
    return 0;
doomed:
    /* The invocation row went in without the rest: the batch must go. */
    if (err != NULL && err->code == EEXIST)
        err->code = EIO;
    return -1;
}

/* After a commit failed for want of space: the failed transaction's
 * frames grew the WAL file, and that space stays taken from every other
 * user of the disk (the main store among them) until a checkpoint resets
 * the WAL. Checkpoint and truncate now, best effort: it needs room to copy
 * the committed frames into journal.db, so on a disk with no byte left it
 * fails (harmlessly) and the WAL keeps its size — later commits reuse
 * that space, so accepts of the same size still work. */
static void give_back_space(jnl_t *j)
{
    sqlite3_stmt *st = j->stmt[Q_CHECKPOINT];
    while (sqlite3_step(st) == SQLITE_ROW)
        ;
    sqlite3_reset(st);
}

/* Commit the batch: every staged invocation in one transaction, one
 * fsync. Each ticket ends DURABLE or FAILED and moves to j->done. */
static int commit_batch(jnl_t *j, hearth_error_t *err)
{
    if (j->batch.head == NULL)
        return 0;
    ticket_list_t batch = j->batch;
    j->batch = (ticket_list_t){0};
    size_t n = j->batch_n;
    j->batch_n = 0;
    j->batch_bytes = 0;

    hearth_error_t e = {0};
    int ret = 0;
    int64_t inserted = 0;
    bool leaders = false;
    for (jnl_ticket_t *t = batch.head; t; t = t->next)
        leaders |= t->leader == NULL;
    if (leaders) {
        if (begin(j, true, &e) < 0)
            goto fail;
        for (jnl_ticket_t *t = batch.head; t; t = t->next) {
            if (t->leader != NULL)
                continue;
            hearth_error_t one = {0};
            if (insert_one(j, t, &one) == 0) {
                inserted++;
                continue;
            }
            if (one.code != EEXIST) {
                e = one;
                goto fail;
            }
            hearth_error_wrap(&one, "invocation %s", t->id);
            fail_ticket(t, &one);
        }
        if (commit(j, &e) < 0)
            goto fail;
        j->c.commits_total++;
    }
    j->c.accepted_total += inserted;
    j->c.queued += inserted;
    goto resolve;
fail:
    rollback(j);
    if (e.code == ENOSPC)
        give_back_space(j);
    hearth_error_wrap(&e, "group commit of %zu invocations", n);
    for (jnl_ticket_t *t = batch.head; t; t = t->next)
        fail_ticket(t, &e);
    if (err != NULL)
        *err = e;
    ret = -1;
resolve:
    for (jnl_ticket_t *t = batch.head; t; t = t->next) {
        if (t->state == JNL_TICKET_PENDING && t->leader == NULL)
            t->state = JNL_TICKET_DURABLE;
    }
    /* Followers share their leader's fate; the leader is still alive (it
     * is freed only after the notify loop). */
    for (jnl_ticket_t *t = batch.head; t; t = t->next) {
        if (t->leader == NULL || t->state != JNL_TICKET_PENDING)
            continue;
        t->state = t->leader->state;
        t->err = t->leader->err;
        t->leader = NULL;
    }
    for (jnl_ticket_t *t = batch.head, *next; t; t = next) {
        next = t->next;
        list_push(&j->done, t);
    }
    return ret;
}

int jnl_accept(jnl_t *j, const jnl_new_t *in, jnl_ticket_t **out, hearth_error_t *err)
{
    if (check_new(in, err) < 0)
        return -1;
    jnl_ticket_t *leader = NULL;
    char original[JNL_ID_LEN + 1];
    int found = 0;
    if (in->idempotency_key != NULL) {
        for (jnl_ticket_t *t = j->batch.head; t && leader == NULL; t = t->next)
            if (t->leader == NULL && t->idempotency_key != NULL && strcmp(t->tenant, in->tenant) == 0 &&
                strcmp(t->idempotency_key, in->idempotency_key) == 0 &&
                in->created - t->created < JNL_IDEMPOTENCY_WINDOW_MS)
                leader = t;
        if (leader == NULL &&
            (found = find_key(j, in->tenant, in->idempotency_key, in->created, original, err)) < 0)
            return -1;
    }
    jnl_ticket_t *t = ticket_new(in, leader == NULL && !found);
    if (t == NULL)
        return hearth_error_set(err, ENOMEM, "journal: ticket");
    t->j = j;
    if (found) {
        t->duplicate = true;
        t->state = JNL_TICKET_DURABLE;
        memcpy(t->id, original, sizeof(original));
        list_push(&j->done, t);
    } else {
        if (leader != NULL) {
            t->duplicate = true;
            t->leader = leader;
            memcpy(t->id, leader->id, sizeof(t->id));
        }
        list_push(&j->batch, t);
        j->batch_n++;
        j->batch_bytes += t->payload_len;
        /* Bounded memory: a batch this big commits now. Its errors are
         * in the tickets, reported at the flush. */
        if (j->batch_n >= JNL_BATCH_MAX || j->batch_bytes >= JNL_BATCH_BYTES)
            commit_batch(j, NULL);
    }
    *out = t;
    return 0;
}

bool jnl_pending(const jnl_t *j)
{
    return j->batch.head != NULL || j->done.head != NULL;
}

int jnl_flush(jnl_t *j, hearth_error_t *err)
{
    int ret = commit_batch(j, err);
    if (j->flushing)
        return ret; /* an on_done flushing again: its caller's loop reports */
    j->flushing = true;
    /* on_done may accept again (those land in the next batch) or free its
     * ticket: take each ticket off the list before calling. */
    while (j->done.head != NULL) {
        jnl_ticket_t *t = j->done.head;
        j->done.head = t->next;
        if (j->done.head == NULL)
            j->done.tail = NULL;
        t->next = NULL;
        t->j = NULL;
        if (t->detached)
            free(t);
        else if (t->on_done != NULL)
            t->on_done(t, t->arg);
    }
    j->flushing = false;
    return ret;
}

jnl_ticket_state_t jnl_ticket_state(const jnl_ticket_t *t)
{
    return t->state;
}

const char *jnl_ticket_id(const jnl_ticket_t *t)
{
    return t->id;
}

bool jnl_ticket_duplicate(const jnl_ticket_t *t)
{
    return t->duplicate;
}

const hearth_error_t *jnl_ticket_error(const jnl_ticket_t *t)
{
    return &t->err;
}

void jnl_ticket_free(jnl_ticket_t *t)
{
    if (t == NULL)
        return;
    if (t->j != NULL)
        t->detached = true;
    else
        free(t);
}

/* ---- claim and finish ------------------------------------------------- */

static uint64_t next_random(jnl_t *j)
{
    uint64_t x = j->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return j->rng = x;
}

/* Delay before the attempt after attempt n (1-based) failed. */
static int64_t backoff_ms(jnl_t *j, const jnl_backoff_t *b, int n)
{
    jnl_backoff_t d = b ? *b : JNL_BACKOFF_DEFAULT;
    if (d.base_ms < 1)
        d.base_ms = 1;
    if (d.cap_ms < d.base_ms)
        d.cap_ms = d.base_ms;
    int64_t delay = d.base_ms;
    for (int i = 1; i < n && delay < d.cap_ms; i++)
        delay *= 2;
    if (delay > d.cap_ms)
        delay = d.cap_ms;
    /* Equal jitter: [delay/2, delay], so retries of a burst spread out but
     * never come sooner than half the rule. */
    int64_t half = delay / 2;
    return half + (int64_t)(next_random(j) % (uint64_t)(delay - half + 1));
}

/* The next tenant after `after` with queued work: 1 and its name, 0 if none. */
static int next_tenant(jnl_t *j, const char *after, char out[JNL_NAME_MAX + 1], hearth_error_t *err)
{
    sqlite3_stmt *st = j->stmt[Q_NEXT_TENANT];
    if (bind_text(j, st, 1, after, err) < 0)
        return -1;
    int rc = sqlite3_step(st), found = 0;
    if (rc == SQLITE_ROW) {
        snprintf(out, JNL_NAME_MAX + 1, "%s", (const char *)sqlite3_column_text(st, 0));
        found = 1;
    }
    reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(j, err, rc, "next tenant");
    return found;
}

/* Claim the tenant's earliest due invocation: 1 and its seq, 0 if none. */
static int claim_one(jnl_t *j, const char *tenant, int64_t now, int64_t *seq, hearth_error_t *err)
{
    sqlite3_stmt *st = j->stmt[Q_TENANT_DUE];
    if (bind_text(j, st, 1, tenant, err) < 0)
        return -1;
    sqlite3_bind_int64(st, 2, now);
    int rc = sqlite3_step(st);
    *seq = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    reset(st);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return db_error(j, err, rc, "claim");
    st = j->stmt[Q_MARK_RUNNING];
    sqlite3_bind_int64(st, 1, *seq);
    int changed = transition(j, st, JNL_QUEUED, JNL_RUNNING, err);
    if (changed < 0)
        return -1;
    if (changed == 0)
        return hearth_error_set(err, EIO, "journal: claimed invocation %lld was not queued", (long long)*seq);
    return 1;
}

int jnl_claim_due(jnl_t *j, int64_t now_ms, int max, jnl_claim_cb cb, void *arg, hearth_error_t *err)
{
    if (max <= 0)
        return 0;
    if (max > JNL_CLAIM_MAX)
        max = JNL_CLAIM_MAX;
    cleanup_free int64_t *seqs = malloc(sizeof(*seqs) * (size_t)max);
    if (seqs == NULL)
        return hearth_error_set(err, ENOMEM, "journal: claim");
    char cursor[JNL_NAME_MAX + 1], tenant[JNL_NAME_MAX + 1], first_empty[JNL_NAME_MAX + 1] = "";
    snprintf(cursor, sizeof(cursor), "%s", j->rr_tenant);
    int n = 0;
    /* Losing this commit to a power cut only forgets that the attempts
     * started: NORMAL, no fsync. */
    if (begin(j, false, err) < 0)
        return -1;
    /* Round robin: one invocation per tenant per lap, starting after the
     * tenant served last. A lap that finds nothing due ends the walk:
     * first_empty is the first tenant of the current run of empty ones. */
    while (n < max) {
        int r = next_tenant(j, cursor, tenant, err);
        if (r < 0)
            goto fail;
        if (r == 0) {
            if (cursor[0] == '\0')
                break; /* nothing queued at all */
            cursor[0] = '\0';
            continue;
        }
        if (first_empty[0] != '\0' && strcmp(first_empty, tenant) == 0)
            break;
        r = claim_one(j, tenant, now_ms, &seqs[n], err);
        if (r < 0)
            goto fail;
        if (r == 1) {
            n++;
            first_empty[0] = '\0';
            snprintf(j->rr_tenant, sizeof(j->rr_tenant), "%s", tenant);
        } else if (first_empty[0] == '\0') {
            snprintf(first_empty, sizeof(first_empty), "%s", tenant);
        }
        snprintf(cursor, sizeof(cursor), "%s", tenant);
    }
    if (commit(j, err) < 0)
        return -1;
    count(j, JNL_QUEUED, JNL_RUNNING, n);

    sqlite3_stmt *st = j->stmt[Q_CLAIMED];
    for (int i = 0; i < n; i++) {
        sqlite3_bind_int64(st, 1, seqs[i]);
        int rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            reset(st);
            /* The rest stay running until the next restart requeues them. */
            return db_error(j, err, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, "read claimed invocation");
        }
        jnl_claim_t c = {
            .id = (const char *)sqlite3_column_text(st, 0),
            .tenant = (const char *)sqlite3_column_text(st, 1),
            .function = (const char *)sqlite3_column_text(st, 2),
            .attempt = sqlite3_column_int(st, 3),
            .max_attempts = sqlite3_column_int(st, 4),
            .created = sqlite3_column_int64(st, 5),
            .callback_url = (const char *)sqlite3_column_text(st, 6),
            .payload = sqlite3_column_blob(st, 7),
            .payload_len = (size_t)sqlite3_column_bytes(st, 7),
        };
        if (cb != NULL)
            cb(&c, arg);
        reset(st);
    }
    return n;
fail:
    rollback(j);
    return -1;
}

int jnl_started(jnl_t *j, const char *id, int64_t now_ms, hearth_error_t *err)
{
    /* Losing this commit to a power cut only forgets that the attempt
     * started (it is then made again, uncharged): NORMAL, no fsync. A
     * hearthd killed after it, the case the attempt count is for, keeps it. */
    if (begin(j, false, err) < 0)
        return -1;
    sqlite3_stmt *st = j->stmt[Q_MARK_STARTED];
    if (bind_text(j, st, 1, id, err) < 0) {
        rollback(j);
        return -1;
    }
    sqlite3_bind_int64(st, 2, now_ms > 0 ? now_ms : 1);
    if (step_done(j, st, "mark started", err) < 0) {
        rollback(j);
        return -1;
    }
    return commit(j, err);
}

int jnl_next_due(jnl_t *j, int64_t *at, hearth_error_t *err)
{
    sqlite3_stmt *st = j->stmt[Q_NEXT_DUE];
    int rc = sqlite3_step(st);
    *at = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(j, err, rc, "next due");
    return 0;
}

/* ENOENT or EINVAL for an operation refused by the state machine. */
static int refuse(hearth_error_t *err, const char *id, const char *what, int status)
{
    if (status < 0)
        return hearth_error_set(err, ENOENT, "journal: no invocation %s", id);
    return hearth_error_set(err, EINVAL, "journal: invocation %s is %s, cannot %s", id,
                            jnl_status_name((jnl_status_t)status), what);
}

int jnl_finish(jnl_t *j, const char *id, jnl_outcome_t outcome, const void *data, size_t len, int64_t now_ms,
               const jnl_backoff_t *b, jnl_status_t *status, hearth_error_t *err)
{
    if (outcome == JNL_OUTCOME_SUCCEEDED && len > JNL_PAYLOAD_MAX)
        return hearth_error_set(err, EMSGSIZE, "journal: result of %zu bytes, more than %u", len, JNL_PAYLOAD_MAX);
    if (len > 0 && data == NULL)
        return hearth_error_set(err, EINVAL, "journal: result missing");
    if (begin(j, true, err) < 0)
        return -1;
    sqlite3_stmt *st = j->stmt[Q_FINISH_READ];
    if (bind_text(j, st, 1, id, err) < 0)
        goto fail;
    int rc = sqlite3_step(st);
    int64_t seq = 0;
    int cur = -1, attempts = 0, max_attempts = 0;
    bool has_cb = false;
    if (rc == SQLITE_ROW) {
        seq = sqlite3_column_int64(st, 0);
        cur = sqlite3_column_int(st, 1);
        attempts = sqlite3_column_int(st, 2);
        max_attempts = sqlite3_column_int(st, 3);
        has_cb = sqlite3_column_int(st, 4) != 0;
    }
    reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        db_error(j, err, rc, "read invocation");
        goto fail;
    }
    if (cur != JNL_RUNNING) {
        refuse(err, id, "finish", cur);
        goto fail;
    }

    jnl_status_t to;
    char error[JNL_ERROR_MAX + 1];
    const char *error_text = NULL;
    if (outcome == JNL_OUTCOME_FAILED) {
        size_t n = len < JNL_ERROR_MAX ? len : JNL_ERROR_MAX;
        if (n > 0)
            memcpy(error, data, n);
        error[n] = '\0';
        error_text = error;
    }
    if (outcome == JNL_OUTCOME_SUCCEEDED)
        to = JNL_SUCCEEDED;
    else if (attempts < max_attempts)
        to = JNL_QUEUED;
    else
        to = JNL_DEAD;

    if (to == JNL_QUEUED) {
        st = j->stmt[Q_FINISH_RETRY];
        sqlite3_bind_int64(st, 3, now_ms + backoff_ms(j, b, attempts));
        if (bind_text(j, st, 4, error_text, err) < 0)
            goto fail;
    } else {
        st = j->stmt[Q_FINISH_DONE];
        sqlite3_bind_int(st, 3, to);
        sqlite3_bind_int64(st, 4, now_ms);
        if (bind_text(j, st, 5, error_text, err) < 0)
            goto fail;
        sqlite3_bind_int(st, 6, has_cb ? JNL_CB_PENDING : JNL_CB_NONE);
    }
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_int(st, 2, JNL_RUNNING);
    int changed = transition(j, st, JNL_RUNNING, to, err);
    if (changed < 0)
        goto fail;
    if (changed == 0) {
        hearth_error_set(err, EIO, "journal: invocation %s changed under its finish", id);
        goto fail;
    }
    if (to == JNL_SUCCEEDED) {
        st = j->stmt[Q_PUT_RESULT];
        sqlite3_bind_int64(st, 1, seq);
        if (bind_blob(j, st, 2, data, len, err) < 0 || step_done(j, st, "store result", err) < 0)
            goto fail;
        /* Never run again: the payload is of no more use. A dead one keeps
         * it for jnl_retry. */
        st = j->stmt[Q_DROP_PAYLOAD];
        sqlite3_bind_int64(st, 1, seq);
        if (step_done(j, st, "drop payload", err) < 0)
            goto fail;
    }
    if (commit(j, err) < 0)
        return hearth_error_wrap(err, "finish %s", id);
    count(j, JNL_RUNNING, to, 1);
    if (status != NULL)
        *status = to;
    return 0;
fail:
    rollback(j);
    return -1;
}

/* ---- reads ------------------------------------------------------------ */

static void record_view(sqlite3_stmt *st, jnl_record_t *r)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->id, sizeof(r->id), "%s", (const char *)sqlite3_column_text(st, 0));
    r->tenant = (const char *)sqlite3_column_text(st, 1);
    r->function = (const char *)sqlite3_column_text(st, 2);
    r->status = (jnl_status_t)sqlite3_column_int(st, 3);
    r->attempts = sqlite3_column_int(st, 4);
    r->max_attempts = sqlite3_column_int(st, 5);
    r->error = (const char *)sqlite3_column_text(st, 6);
    r->created = sqlite3_column_int64(st, 7);
    r->started = sqlite3_column_int64(st, 8);
    r->finished = sqlite3_column_int64(st, 9);
    r->next_attempt_at = sqlite3_column_int64(st, 10);
    r->idempotency_key = (const char *)sqlite3_column_text(st, 11);
    r->callback_url = (const char *)sqlite3_column_text(st, 12);
    r->callback_state = (jnl_cb_state_t)sqlite3_column_int(st, 13);
    r->callback_attempts = sqlite3_column_int(st, 14);
}

/* Copy a view's strings and result into one block owned by the record. */
static int record_own(jnl_record_t *r)
{
    const char **strs[] = {&r->tenant, &r->function, &r->error, &r->idempotency_key, &r->callback_url};
    size_t total = r->result_len + 1;
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        if (*strs[i])
            total += strlen(*strs[i]) + 1;
    char *mem = malloc(total);
    if (mem == NULL)
        return -1;
    char *p = mem;
    if (r->result != NULL) {
        memcpy(p, r->result, r->result_len);
        p[r->result_len] = '\0'; /* a text result can be used as a string */
        r->result = p;
        p += r->result_len + 1;
    }
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        if (*strs[i] == NULL)
            continue;
        size_t l = strlen(*strs[i]) + 1;
        *strs[i] = memcpy(p, *strs[i], l);
        p += l;
    }
    r->mem_ = mem;
    return 0;
}

int jnl_get(jnl_t *j, const char *id, const char *tenant, jnl_record_t *rec, hearth_error_t *err)
{
    memset(rec, 0, sizeof(*rec));
    sqlite3_stmt *st = j->stmt[Q_GET];
    if (bind_text(j, st, 1, id, err) < 0 || bind_text(j, st, 2, tenant, err) < 0)
        return -1;
    int rc = sqlite3_step(st);
    int found = 0;
    if (rc == SQLITE_ROW) {
        record_view(st, rec);
        if (sqlite3_column_type(st, 15) != SQLITE_NULL) {
            rec->result = sqlite3_column_blob(st, 15);
            rec->result_len = (size_t)sqlite3_column_bytes(st, 15);
            if (rec->result == NULL)
                rec->result = ""; /* an empty result is not no result */
        }
        if (record_own(rec) < 0) {
            reset(st);
            memset(rec, 0, sizeof(*rec));
            return hearth_error_set(err, ENOMEM, "journal: get %s", id);
        }
        found = 1;
    }
    reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(j, err, rc, "get invocation");
    return found;
}

void jnl_record_clear(jnl_record_t *rec)
{
    if (rec == NULL)
        return;
    free(rec->mem_);
    memset(rec, 0, sizeof(*rec));
}

int jnl_list(jnl_t *j, const char *tenant, const char *function, int status, int limit, jnl_record_cb cb,
             void *arg, hearth_error_t *err)
{
    if (tenant == NULL)
        return hearth_error_set(err, EINVAL, "journal: list needs a tenant");
    if (status >= JNL_N_STATUS)
        return hearth_error_set(err, EINVAL, "journal: no status %d", status);
    int q = function ? (status >= 0 ? Q_LIST_FN_STATUS : Q_LIST_FN)
                     : (status >= 0 ? Q_LIST_TENANT_STATUS : Q_LIST_TENANT);
    sqlite3_stmt *st = j->stmt[q];
    if (bind_text(j, st, 1, tenant, err) < 0 || (function != NULL && bind_text(j, st, 2, function, err) < 0))
        return -1;
    if (status >= 0)
        sqlite3_bind_int(st, 3, status);
    sqlite3_bind_int(st, 4, limit > 0 ? limit : 1000);
    int rc, ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        jnl_record_t r;
        record_view(st, &r);
        if ((ret = cb(&r, arg)) != 0)
            break;
    }
    reset(st);
    if (ret != 0)
        return ret;
    if (rc != SQLITE_DONE)
        return db_error(j, err, rc, "list invocations");
    return 0;
}

/* The status of id (tenant's, or anyone's when NULL): >= 0, -1 absent. */
static int status_of(jnl_t *j, const char *id, const char *tenant, int *status, hearth_error_t *err)
{
    sqlite3_stmt *st = j->stmt[Q_STATUS_OF];
    if (bind_text(j, st, 1, id, err) < 0 || bind_text(j, st, 2, tenant, err) < 0)
        return -1;
    int rc = sqlite3_step(st);
    *status = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(j, err, rc, "read status");
    return 0;
}

int jnl_retry(jnl_t *j, const char *id, const char *tenant, int64_t now_ms, hearth_error_t *err)
{
    if (begin(j, true, err) < 0)
        return -1;
    sqlite3_stmt *st = j->stmt[Q_RETRY];
    if (bind_text(j, st, 1, id, err) < 0 || bind_text(j, st, 2, tenant, err) < 0)
        goto fail;
    sqlite3_bind_int64(st, 3, now_ms);
    int changed = transition(j, st, JNL_DEAD, JNL_QUEUED, err);
    if (changed < 0)
        goto fail;
    if (changed == 0) {
        int cur;
        if (status_of(j, id, tenant, &cur, err) == 0)
            refuse(err, id, "retry", cur);
        goto fail;
    }
    if (commit(j, err) < 0)
        return hearth_error_wrap(err, "retry %s", id);
    count(j, JNL_DEAD, JNL_QUEUED, 1);
    return 0;
fail:
    rollback(j);
    return -1;
}

int jnl_counters(jnl_t *j, int64_t now_ms, jnl_counters_t *out, hearth_error_t *err)
{
    *out = j->c;
    out->depth = j->c.queued + j->c.running;
    out->oldest_due_age_ms = 0;
    sqlite3_stmt *st = j->stmt[Q_OLDEST_DUE];
    sqlite3_bind_int64(st, 1, now_ms);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        out->oldest_due_age_ms = now_ms - sqlite3_column_int64(st, 0);
    reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(j, err, rc, "oldest due");
    return 0;
}

/* ---- callbacks -------------------------------------------------------- */

int jnl_callbacks_due(jnl_t *j, int64_t now_ms, int max, jnl_callback_cb cb, void *arg, hearth_error_t *err)
{
    if (max <= 0)
        return 0;
    if (max > JNL_CLAIM_MAX)
        max = JNL_CLAIM_MAX;
    cleanup_free int64_t *seqs = malloc(sizeof(*seqs) * (size_t)max);
    if (seqs == NULL)
        return hearth_error_set(err, ENOMEM, "journal: callbacks");
    if (begin(j, false, err) < 0)
        return -1;
    sqlite3_stmt *st = j->stmt[Q_CB_DUE];
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite3_bind_int(st, 2, max);
    int rc, n = 0;
    while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW)
        seqs[n++] = sqlite3_column_int64(st, 0);
    reset(st);
    if (n < max && rc != SQLITE_DONE) {
        db_error(j, err, rc, "callbacks due");
        goto fail;
    }
    st = j->stmt[Q_CB_LEASE];
    for (int i = 0; i < n; i++) {
        sqlite3_bind_int64(st, 1, seqs[i]);
        sqlite3_bind_int64(st, 2, now_ms + JNL_CALLBACK_LEASE_MS);
        if (step_done(j, st, "lease callback", err) < 0)
            goto fail;
    }
    if (commit(j, err) < 0)
        return -1;
    st = j->stmt[Q_CB_VIEW];
    for (int i = 0; i < n; i++) {
        sqlite3_bind_int64(st, 1, seqs[i]);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            reset(st);
            return db_error(j, err, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, "read callback");
        }
        jnl_callback_t c = {
            .id = (const char *)sqlite3_column_text(st, 0),
            .tenant = (const char *)sqlite3_column_text(st, 1),
            .function = (const char *)sqlite3_column_text(st, 2),
            .url = (const char *)sqlite3_column_text(st, 3),
            .status = (jnl_status_t)sqlite3_column_int(st, 4),
            .attempts = sqlite3_column_int(st, 5),
            .error = (const char *)sqlite3_column_text(st, 6),
            .callback_attempts = sqlite3_column_int(st, 7),
            .result = sqlite3_column_blob(st, 8),
            .result_len = (size_t)sqlite3_column_bytes(st, 8),
        };
        if (cb != NULL)
            cb(&c, arg);
        reset(st);
    }
    return n;
fail:
    rollback(j);
    return -1;
}

int jnl_callback_done(jnl_t *j, const char *id, bool delivered, int64_t now_ms, const jnl_backoff_t *b,
                      int max_attempts, hearth_error_t *err)
{
    if (begin(j, false, err) < 0)
        return -1;
    sqlite3_stmt *st = j->stmt[Q_CB_READ];
    if (bind_text(j, st, 1, id, err) < 0)
        goto fail;
    int rc = sqlite3_step(st);
    int64_t seq = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    int state = rc == SQLITE_ROW ? sqlite3_column_int(st, 1) : -1;
    int attempts = rc == SQLITE_ROW ? sqlite3_column_int(st, 2) : 0;
    reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        db_error(j, err, rc, "read callback");
        goto fail;
    }
    if (state < 0) {
        hearth_error_set(err, ENOENT, "journal: no invocation %s", id);
        goto fail;
    }
    if (state != JNL_CB_PENDING) {
        hearth_error_set(err, EINVAL, "journal: callback of %s is %s, not pending", id,
                         jnl_cb_state_name((jnl_cb_state_t)state));
        goto fail;
    }
    st = j->stmt[Q_CB_SET];
    sqlite3_bind_int64(st, 1, seq);
    if (delivered) {
        sqlite3_bind_int(st, 2, JNL_CB_DELIVERED);
        sqlite3_bind_int(st, 3, attempts);
        sqlite3_bind_null(st, 4);
    } else if (attempts + 1 >= max_attempts) {
        sqlite3_bind_int(st, 2, JNL_CB_FAILED);
        sqlite3_bind_int(st, 3, attempts + 1);
        sqlite3_bind_null(st, 4);
    } else {
        sqlite3_bind_int(st, 2, JNL_CB_PENDING);
        sqlite3_bind_int(st, 3, attempts + 1);
        sqlite3_bind_int64(st, 4, now_ms + backoff_ms(j, b, attempts + 1));
    }
    if (step_done(j, st, "callback state", err) < 0)
        goto fail;
    return commit(j, err);
fail:
    rollback(j);
    return -1;
}

/* ---- pruning ---------------------------------------------------------- */

int jnl_prune(jnl_t *j, int64_t now_ms, int64_t result_ttl_s, hearth_error_t *err)
{
    if (begin(j, false, err) < 0)
        return -1;
    sqlite3_stmt *st = j->stmt[Q_PRUNE];
    sqlite3_bind_int64(st, 1, now_ms - result_ttl_s * 1000);
    sqlite3_bind_int(st, 2, JNL_PRUNE_BATCH);
    if (step_done(j, st, "prune invocations", err) < 0)
        goto fail;
    int n = sqlite3_changes(j->db);
    st = j->stmt[Q_PRUNE_IDEM];
    sqlite3_bind_int64(st, 1, now_ms - JNL_IDEMPOTENCY_WINDOW_MS);
    sqlite3_bind_int(st, 2, JNL_PRUNE_BATCH);
    if (step_done(j, st, "prune idempotency keys", err) < 0)
        goto fail;
    int keys = sqlite3_changes(j->db);
    if (commit(j, err) < 0)
        return -1;
    return n > keys ? n : keys;
fail:
    rollback(j);
    return -1;
}
