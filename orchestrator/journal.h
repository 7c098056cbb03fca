/* The durable journal of asynchronous invocations (issue 6):
 * `state_dir/journal.db`, its own SQLite file and connection, so that its
 * fsync discipline (WAL, synchronous=FULL where a promise is made) never
 * slows the main store (hearth.db, synchronous=NORMAL).
 *
 * Single-threaded: every call comes from the daemon's event loop. The only
 * call that waits on the disk for long is the group commit (jnl_flush, one
 * fsync for every accept staged since the last one), and jnl_finish /
 * jnl_retry (one fsync each: they record a result or a user's request).
 * Claims, callback bookkeeping, pruning and crash recovery commit with
 * synchronous=NORMAL: in WAL mode that survives a crash of hearthd (the
 * frames are in the OS page cache) and, should power fail, at worst
 * forgets that an attempt started or that a callback was delivered — the
 * attempt runs again, the callback is posted again. Never is an accepted
 * invocation or a recorded result lost once its call returned success.
 *
 * Life of an invocation (jnl_status_t; one setter in journal.c asserts the
 * transitions and counts them):
 *
 *     queued ──claim──▶ running ──finish ok──▶ succeeded
 *       ▲                 │  │
 *       │◀─finish failed──┘  └─finish failed, no attempt left──▶ dead
 *       │  (attempts < max,     (also: left running by a crash
 *       │   next_attempt_at      with no attempt left)
 *       │   = now + backoff)
 *       │◀──────────── jnl_retry (manual) ───────────────────────  dead
 *       │◀─ jnl_open: left running by a killed predecessor
 *
 * "failed" is an outcome of an attempt, not a stored status: a failed
 * attempt with attempts left is `queued` again, with `error` telling why
 * the last one failed; with none left it is `dead`.
 *
 * Acceptance: jnl_accept stages an invocation in memory and hands back a
 * ticket; jnl_flush commits every staged invocation in one transaction
 * (one fsync) and then calls each ticket's on_done. The daemon calls
 * jnl_flush from a zero-delay timer, so all accepts of one loop iteration
 * share one fsync, and answers 202 only for a DURABLE ticket (503 for a
 * FAILED one: ENOSPC, EIO, EROFS). */
#ifndef HEARTH_JOURNAL_H
#define HEARTH_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/util.h"

#define JNL_ID_LEN 32                         /* invocation ids: 128 bits, lowercase hex */
#define JNL_NAME_MAX 255                      /* tenant, function, idempotency key */
#define JNL_URL_MAX 2048                      /* callback_url */
#define JNL_PAYLOAD_MAX (16u << 20)           /* payload and result bytes */
#define JNL_ERROR_MAX 4096                    /* error text kept per invocation */
#define JNL_ATTEMPTS_MAX 100                  /* upper bound of max_attempts */
#define JNL_IDEMPOTENCY_WINDOW_MS (24 * 3600 * 1000LL) /* a key repeats the original for this long */
#define JNL_BATCH_MAX 1024                    /* staged accepts that force a commit */
#define JNL_BATCH_BYTES (64u << 20)           /* staged payload bytes that force a commit */
#define JNL_CLAIM_MAX 1024                    /* bound of max in claim and callbacks_due */
#define JNL_PRUNE_BATCH 256                   /* rows deleted per jnl_prune call */
#define JNL_CALLBACK_LEASE_MS 60000           /* a handed-out callback is handed out again after this */

typedef struct jnl jnl_t;
typedef struct jnl_ticket jnl_ticket_t;

typedef enum {
    JNL_QUEUED = 0,    /* waiting for next_attempt_at, or for a free slot */
    JNL_RUNNING = 1,   /* claimed; attempts counts this one */
    JNL_SUCCEEDED = 2, /* final; result kept until pruned */
    JNL_DEAD = 3,      /* final: out of attempts; payload kept for jnl_retry */
    JNL_N_STATUS
} jnl_status_t;

typedef enum { JNL_OUTCOME_SUCCEEDED, JNL_OUTCOME_FAILED } jnl_outcome_t;

/* X-Callback-Url delivery, once the invocation is succeeded or dead. */
typedef enum {
    JNL_CB_NONE = 0,      /* no callback_url, or the invocation has not ended */
    JNL_CB_PENDING = 1,   /* to be POSTed at cb_next_try_at */
    JNL_CB_DELIVERED = 2, /* final */
    JNL_CB_FAILED = 3,    /* final: out of attempts */
} jnl_cb_state_t;

typedef enum {
    JNL_TICKET_PENDING, /* staged, not yet committed */
    JNL_TICKET_DURABLE, /* committed (or a repeat of a committed one): answer 202 */
    JNL_TICKET_FAILED,  /* not stored: answer 503 (see jnl_ticket_error) */
} jnl_ticket_state_t;

/* Exponential backoff with jitter: attempt n (1-based) failed → wait a
 * random time in [d/2, d], d = min(cap_ms, base_ms × 2^(n-1)). */
typedef struct jnl_backoff {
    int64_t base_ms; /* 1000 in production; small in tests */
    int64_t cap_ms;  /* 300000 */
} jnl_backoff_t;
#define JNL_BACKOFF_DEFAULT ((jnl_backoff_t){.base_ms = 1000, .cap_ms = 300000})

/* Called from jnl_flush (or jnl_close) once the ticket is DURABLE or
 * FAILED; never from jnl_accept. May call jnl_ticket_free(t), and any jnl_
 * function except jnl_flush and jnl_close. */
typedef void (*jnl_ticket_cb)(jnl_ticket_t *t, void *arg);

typedef struct jnl_new {
    const char *id;              /* JNL_ID_LEN lowercase hex, chosen by the caller */
    const char *tenant;
    const char *function;
    const void *payload;         /* copied; may be NULL when payload_len is 0 */
    size_t payload_len;          /* ≤ JNL_PAYLOAD_MAX */
    const char *idempotency_key; /* NULL: none */
    const char *callback_url;    /* NULL: none */
    int max_attempts;            /* 1..JNL_ATTEMPTS_MAX */
    int64_t created;             /* Unix ms; also the clock of the idempotency window */
    jnl_ticket_cb on_done;       /* NULL: poll jnl_ticket_state after jnl_flush */
    void *arg;                   /* for on_done */
} jnl_new_t;

/* What jnl_open found and did. */
typedef struct jnl_open_stats {
    int64_t requeued; /* left running by a killed predecessor, queued again */
    int64_t dead;     /* left running on their last attempt: dead */
    int64_t queued;   /* queued after recovery */
} jnl_open_stats_t;

/* For metrics. */
typedef struct jnl_counters {
    int64_t queued;             /* now */
    int64_t running;            /* now */
    int64_t depth;              /* queued + running */
    int64_t oldest_due_age_ms;  /* now − earliest next_attempt_at among queued ones that are due; 0 if none */
    int64_t retries_total;      /* failed attempts requeued, since open (a Prometheus counter) */
    int64_t dead_total;         /* invocations that went dead, since open (crash recovery included) */
    int64_t accepted_total;     /* invocations committed by jnl_flush, since open */
    int64_t commits_total;      /* group commits (fsyncs) of accepts, since open */
    int64_t transitions[JNL_N_STATUS][JNL_N_STATUS]; /* [from][to], since open */
} jnl_counters_t;

/* One invocation. From jnl_get every pointer is owned by the record (free
 * with jnl_record_clear); from jnl_list and the callbacks below they are
 * valid during the callback only. */
typedef struct jnl_record {
    char id[JNL_ID_LEN + 1];
    const char *tenant;
    const char *function;
    jnl_status_t status;
    int attempts;                /* started attempts (crash-interrupted ones included) */
    int max_attempts;
    const void *result;          /* succeeded: output; NULL otherwise and in jnl_list */
    size_t result_len;
    const char *error;           /* why the last attempt failed; NULL if none did */
    int64_t created;             /* Unix ms */
    int64_t started;             /* last attempt's start; 0 until it started */
    int64_t finished;            /* 0 until succeeded or dead */
    int64_t next_attempt_at;     /* queued: when it may run */
    const char *idempotency_key; /* NULL if none */
    const char *callback_url;    /* NULL if none */
    jnl_cb_state_t callback_state;
    int callback_attempts;       /* failed POSTs */
    void *mem_;                  /* private: jnl_get's copy */
} jnl_record_t;

/* An invocation handed to the daemon to run (jnl_claim_due). */
typedef struct jnl_claim {
    const char *id;
    const char *tenant;
    const char *function;
    const void *payload;
    size_t payload_len;
    int attempt;          /* this attempt, 1-based */
    int max_attempts;
    int64_t created;
    const char *callback_url; /* NULL if none */
} jnl_claim_t;

/* A callback to POST (jnl_callbacks_due). */
typedef struct jnl_callback {
    const char *id;
    const char *tenant;
    const char *function;
    const char *url;
    jnl_status_t status;  /* JNL_SUCCEEDED or JNL_DEAD */
    int attempts;         /* of the invocation */
    const void *result;   /* succeeded: output */
    size_t result_len;
    const char *error;    /* dead: why the last attempt failed */
    int callback_attempts; /* failed POSTs so far */
} jnl_callback_t;

typedef void (*jnl_claim_cb)(const jnl_claim_t *c, void *arg);
typedef void (*jnl_callback_cb)(const jnl_callback_t *c, void *arg);
/* A non-zero return stops the walk and is returned. */
typedef int (*jnl_record_cb)(const jnl_record_t *r, void *arg);

/* Open (creating state_dir 0700 and the database if missing), bring the
 * schema up to date, and recover: every invocation left running by a
 * killed predecessor is queued again, due now, its interrupted attempt
 * counted — or dead (error "interrupted ...") if that was its last
 * attempt, so that a payload that kills hearthd cannot loop forever. One
 * that was claimed but had not started (jnl_started) is queued again with
 * its attempt given back.
 * stats may be NULL. A journal written by a newer hearth is refused. */
int jnl_open(const char *state_dir, jnl_t **out, jnl_open_stats_t *stats, hearth_error_t *err);
/* Flushes (commits staged accepts and calls their on_done), finalizes the
 * statements and closes. NULL is fine. */
void jnl_close(jnl_t *j);
const char *jnl_path(const jnl_t *j);
int jnl_schema_version(jnl_t *j, int *version, hearth_error_t *err);
const char *jnl_status_name(jnl_status_t s);       /* "queued", ... */
const char *jnl_cb_state_name(jnl_cb_state_t s);   /* "none", "pending", "delivered", "failed" */

/* Stage an invocation and return its ticket in *t (the caller owns it:
 * jnl_ticket_free). -1 (EINVAL, EMSGSIZE, ENOMEM, or a read error) when
 * the input is refused; no ticket then. An idempotency key already used by
 * the tenant within JNL_IDEMPOTENCY_WINDOW_MS (of in->created) gives a
 * duplicate ticket carrying the original's id: DURABLE at once if the
 * original is committed, else it shares the original's fate at the flush.
 * When the batch reaches JNL_BATCH_MAX or JNL_BATCH_BYTES, the batch is
 * committed here (the on_done calls still wait for jnl_flush). */
int jnl_accept(jnl_t *j, const jnl_new_t *in, jnl_ticket_t **t, hearth_error_t *err);
/* True when jnl_flush has work: staged accepts or tickets to report. */
bool jnl_pending(const jnl_t *j);
/* Commit every staged accept in one transaction (one fsync), then call
 * the on_done of every ticket resolved since the last flush. -1 with err
 * (ENOSPC, EIO, EROFS, ...) when the commit failed: nothing of the batch
 * is stored, its tickets are FAILED with that error, and the journal takes
 * accepts again at once (the next batch retries the disk). */
int jnl_flush(jnl_t *j, hearth_error_t *err);

jnl_ticket_state_t jnl_ticket_state(const jnl_ticket_t *t);
/* The id to answer with: the new invocation's, or the original's for a repeat. */
const char *jnl_ticket_id(const jnl_ticket_t *t);
bool jnl_ticket_duplicate(const jnl_ticket_t *t); /* an idempotency-key repeat */
/* Why a FAILED ticket failed (code: ENOSPC, EIO, EROFS, EEXIST, ...). */
const hearth_error_t *jnl_ticket_error(const jnl_ticket_t *t);
/* Free a ticket. A PENDING one is let go instead: it is still committed at
 * the next flush (the client may retry with its idempotency key), its
 * on_done is not called, and the journal frees it. NULL is fine. */
void jnl_ticket_free(jnl_ticket_t *t);

/* Claim up to max (≤ JNL_CLAIM_MAX) queued invocations due at now_ms
 * (next_attempt_at ≤ now_ms), mark them running (attempts + 1, started =
 * 0 until jnl_started) in one transaction, then call cb for each (cb may call
 * jnl_finish, not jnl_claim_due). Order: round robin over tenants (in
 * tenant-name order, resuming after the last tenant served by the previous
 * call), and within a tenant by next_attempt_at, then acceptance order —
 * so one tenant's flood takes one slot per round. Returns how many were
 * claimed, or -1. */
int jnl_claim_due(jnl_t *j, int64_t now_ms, int max, jnl_claim_cb cb, void *arg, hearth_error_t *err);
/* A claimed invocation's process is about to start: only from now
 * does the attempt count should hearthd be killed (see jnl_open). */
int jnl_started(jnl_t *j, const char *id, int64_t now_ms, hearth_error_t *err);
/* Earliest next_attempt_at among queued invocations, in *at (0 if none):
 * when to call jnl_claim_due next. */
int jnl_next_due(jnl_t *j, int64_t *at, hearth_error_t *err);

/* Record the end of a running attempt, with the state change, in one
 * durable transaction. Succeeded: data is the result (≤ JNL_PAYLOAD_MAX),
 * the payload is dropped. Failed: data is the error text (truncated to
 * JNL_ERROR_MAX); queued again at now_ms + backoff (b, NULL for
 * JNL_BACKOFF_DEFAULT) if attempts < max_attempts, else dead. When it
 * ends (succeeded or dead) and has a callback_url, its callback becomes
 * pending. *status (may be NULL) gets the new status. -1 with ENOENT if
 * there is no such invocation, EINVAL if it is not running (so a completed
 * one is never finished, nor run, twice). */
int jnl_finish(jnl_t *j, const char *id, jnl_outcome_t outcome, const void *data, size_t len, int64_t now_ms,
               const jnl_backoff_t *b, jnl_status_t *status, hearth_error_t *err);

/* 1 and *rec filled (jnl_record_clear), 0 when absent or owned by another
 * tenant (tenant NULL: any, for admins), -1 on error. Staged, not yet
 * flushed accepts are not visible. */
int jnl_get(jnl_t *j, const char *id, const char *tenant, jnl_record_t *rec, hearth_error_t *err);
void jnl_record_clear(jnl_record_t *rec);
/* A tenant's invocations of function (NULL: all its functions) with the
 * given status (-1: any), oldest first, at most limit (≤ 0: 1000); result
 * is NULL in these records. */
int jnl_list(jnl_t *j, const char *tenant, const char *function, int status, int limit, jnl_record_cb cb,
             void *arg, hearth_error_t *err);
/* Manual retry: a dead invocation is queued again, due at now_ms, with a
 * fresh budget (attempts back to 0, max_attempts kept) and its callback
 * state reset. -1 with ENOENT (absent, or another tenant's; tenant NULL:
 * any) or EINVAL (not dead). */
int jnl_retry(jnl_t *j, const char *id, const char *tenant, int64_t now_ms, hearth_error_t *err);

/* queued and running are recounted at open and kept up to date; the
 * *_total ones count since open (Prometheus counters may reset). */
int jnl_counters(jnl_t *j, int64_t now_ms, jnl_counters_t *out, hearth_error_t *err);

/* Hand out up to max (≤ JNL_CLAIM_MAX) pending callbacks due at now_ms;
 * each is leased for JNL_CALLBACK_LEASE_MS (handed out again after that if
 * jnl_callback_done never comes, e.g. after a crash). Returns how many. */
int jnl_callbacks_due(jnl_t *j, int64_t now_ms, int max, jnl_callback_cb cb, void *arg, hearth_error_t *err);
/* Report a POST: delivered → DELIVERED; else callback_attempts + 1 and
 * FAILED once it reaches max_attempts, or pending again at now_ms +
 * backoff. -1 with ENOENT, or EINVAL if the callback is not pending. */
int jnl_callback_done(jnl_t *j, const char *id, bool delivered, int64_t now_ms, const jnl_backoff_t *b,
                      int max_attempts, hearth_error_t *err);

/* Delete up to JNL_PRUNE_BATCH ended (succeeded or dead) invocations that
 * finished before now_ms − result_ttl_s, with their payloads and results,
 * and up to JNL_PRUNE_BATCH idempotency keys older than the window, in one
 * transaction. Returns the larger of the two counts: call again (from a
 * later loop iteration) while it returns JNL_PRUNE_BATCH. */
int jnl_prune(jnl_t *j, int64_t now_ms, int64_t result_ttl_s, hearth_error_t *err);

#endif
