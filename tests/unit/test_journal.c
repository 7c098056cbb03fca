/* The async journal: group commit and durability across reopen,
 * idempotency keys, the state machine (claim order, retries, dead
 * letters, manual retry), crash recovery after a real SIGKILL, callbacks,
 * TTL pruning, and a full disk (a tiny tmpfs; needs root, else SKIP).
 * Works in a temporary directory removed afterwards. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "orchestrator/journal.h"
#include "tests/harness.h"

static char tmpdir[64];
static char state[128];
static int dir_n;

static const jnl_backoff_t fast = {.base_ms = 10, .cap_ms = 40};

/* on_done frees the tickets of the accepts a test does not look at */
typedef struct done done_t;
static done_t *drop(void);

/* A fresh state_dir per test. */
static const char *fresh_dir(void)
{
    snprintf(state, sizeof(state), "%s/s%d", tmpdir, ++dir_n);
    return state;
}

static void make_id(char id[33], unsigned n)
{
    snprintf(id, 33, "%032x", n);
}

struct done {
    int durable, failed, calls;
    int last_code;
    bool free_it;
};

static done_t *drop(void)
{
    static done_t d = {.free_it = true};
    return &d;
}

static void on_done(jnl_ticket_t *t, void *arg)
{
    done_t *d = arg;
    d->calls++;
    if (jnl_ticket_state(t) == JNL_TICKET_DURABLE)
        d->durable++;
    else if (jnl_ticket_state(t) == JNL_TICKET_FAILED) {
        d->failed++;
        d->last_code = jnl_ticket_error(t)->code;
    }
    if (d->free_it)
        jnl_ticket_free(t);
}

/* Accept one invocation; returns its ticket (NULL on refusal). */
static jnl_ticket_t *accept1(jnl_t *j, unsigned n, const char *tenant, const char *fn, const char *key,
                             const char *payload, int max_attempts, int64_t created, done_t *d)
{
    char id[33];
    make_id(id, n);
    jnl_new_t in = {
        .id = id,
        .tenant = tenant,
        .function = fn,
        .payload = payload,
        .payload_len = payload ? strlen(payload) : 0,
        .idempotency_key = key,
        .max_attempts = max_attempts,
        .created = created,
        .on_done = d ? on_done : NULL,
        .arg = d,
    };
    jnl_ticket_t *t = NULL;
    hearth_error_t err = {0};
    if (jnl_accept(j, &in, &t, &err) < 0) {
        printf("#   accept: %s\n", err.msg);
        return NULL;
    }
    return t;
}

typedef struct {
    int n;
    char ids[64][33];
    char tenants[64][16];
    char payloads[64][32];
    int attempts[64];
} claimed_t;

static void on_claim(const jnl_claim_t *c, void *arg)
{
    claimed_t *cl = arg;
    if (cl->n < 64) {
        snprintf(cl->ids[cl->n], 33, "%s", c->id);
        snprintf(cl->tenants[cl->n], 16, "%s", c->tenant);
        snprintf(cl->payloads[cl->n], 32, "%.*s", (int)c->payload_len, (const char *)c->payload);
        cl->attempts[cl->n] = c->attempt;
    }
    cl->n++;
}

static int claim(jnl_t *j, int64_t now, int max, claimed_t *cl)
{
    memset(cl, 0, sizeof(*cl));
    hearth_error_t err = {0};
    int n = jnl_claim_due(j, now, max, on_claim, cl, &err);
    if (n < 0)
        printf("#   claim: %s\n", err.msg);
    return n;
}

static int finish(jnl_t *j, unsigned n, jnl_outcome_t o, const char *data, int64_t now, jnl_status_t *st,
                  hearth_error_t *err)
{
    char id[33];
    make_id(id, n);
    return jnl_finish(j, id, o, data, data ? strlen(data) : 0, now, &fast, st, err);
}

static jnl_status_t status_of(jnl_t *j, unsigned n, jnl_record_t *keep)
{
    char id[33];
    make_id(id, n);
    jnl_record_t r;
    hearth_error_t err = {0};
    if (jnl_get(j, id, NULL, &r, &err) != 1)
        return (jnl_status_t)-1;
    jnl_status_t s = r.status;
    if (keep)
        *keep = r;
    else
        jnl_record_clear(&r);
    return s;
}

static void t_open(void)
{
    jnl_t *j = NULL;
    hearth_error_t err = {0};
    jnl_open_stats_t st;
    REQUIRE(jnl_open(fresh_dir(), &j, &st, &err) == 0, "%s", err.msg);
    int v = -1;
    CHECK(jnl_schema_version(j, &v, &err) == 0 && v == 1, "version %d", v);
    char p[256];
    snprintf(p, sizeof(p), "%s/journal.db", state);
    CHECK(strcmp(jnl_path(j), p) == 0, "%s", jnl_path(j));
    struct stat sb;
    CHECK(stat(state, &sb) == 0 && (sb.st_mode & 0777) == 0700, "mode %o", sb.st_mode & 0777);
    CHECK(st.requeued == 0 && st.dead == 0 && st.queued == 0, "stats");
    jnl_close(j);

    /* Refused input */
    REQUIRE(jnl_open(state, &j, NULL, &err) == 0, "%s", err.msg);
    jnl_ticket_t *t = NULL;
    jnl_new_t in = {.id = "XYZ", .tenant = "a", .function = "f", .max_attempts = 3};
    CHECK(jnl_accept(j, &in, &t, &err) < 0 && err.code == EINVAL && t == NULL, "bad id");
    in.id = "0123456789abcdef0123456789abcdef";
    in.max_attempts = 0;
    CHECK(jnl_accept(j, &in, &t, &err) < 0 && err.code == EINVAL, "max_attempts 0");
    in.max_attempts = 1;
    in.payload_len = JNL_PAYLOAD_MAX + 1;
    in.payload = "x";
    CHECK(jnl_accept(j, &in, &t, &err) < 0 && err.code == EMSGSIZE, "too big");
    CHECK(!jnl_pending(j), "nothing pending");
    jnl_close(j);

    /* A newer schema is refused */
    snprintf(p, sizeof(p), "%s/journal.db", state);
    sqlite3 *db = NULL;
    REQUIRE(sqlite3_open(p, &db) == SQLITE_OK, "sqlite open");
    sqlite3_exec(db, "UPDATE meta SET value = 99 WHERE key = 'schema_version'", NULL, NULL, NULL);
    sqlite3_close(db);
    CHECK(jnl_open(state, &j, NULL, &err) < 0 && err.code == EPROTO, "newer schema: %s", err.msg);
}

static void t_accept_durable(void)
{
    jnl_t *j = NULL;
    hearth_error_t err = {0};
    REQUIRE(jnl_open(fresh_dir(), &j, NULL, &err) == 0, "%s", err.msg);
    int64_t now = wall_ms();
    done_t d = {.free_it = true};
    REQUIRE(accept1(j, 1, "acme", "echo", NULL, "hello", 3, now, &d) != NULL, "accept");
    char id[33];
    make_id(id, 2);
    char big[100000];
    memset(big, 'b', sizeof(big));
    jnl_new_t in = {.id = id, .tenant = "acme", .function = "echo", .payload = big, .payload_len = sizeof(big),
                    .idempotency_key = "k1", .callback_url = "http://127.0.0.1:9/cb", .max_attempts = 5,
                    .created = now, .on_done = on_done, .arg = &d};
    jnl_ticket_t *t = NULL;
    REQUIRE(jnl_accept(j, &in, &t, &err) == 0, "%s", err.msg);
    CHECK(jnl_ticket_state(t) == JNL_TICKET_PENDING, "pending before flush");
    /* empty payload, and a ticket let go while pending */
    jnl_ticket_t *gone = accept1(j, 3, "beta", "noop", NULL, NULL, 1, now, NULL);
    REQUIRE(gone != NULL, "accept empty");
    jnl_ticket_free(gone);
    CHECK(jnl_pending(j), "pending");
    jnl_record_t r;
    CHECK(jnl_get(j, id, NULL, &r, &err) == 0, "not visible before the flush");
    CHECK(d.calls == 0, "no on_done before the flush");
    CHECK(jnl_flush(j, &err) == 0, "%s", err.msg);
    CHECK(d.calls == 2 && d.durable == 2, "on_done %d durable %d", d.calls, d.durable);
    CHECK(!jnl_pending(j), "nothing pending after flush");
    jnl_close(j);

    jnl_open_stats_t st;
    REQUIRE(jnl_open(state, &j, &st, &err) == 0, "%s", err.msg);
    CHECK(st.queued == 3, "queued after reopen: %lld", (long long)st.queued);
    REQUIRE(jnl_get(j, id, "acme", &r, &err) == 1, "get");
    CHECK(strcmp(r.id, id) == 0 && strcmp(r.tenant, "acme") == 0 && strcmp(r.function, "echo") == 0 &&
              r.status == JNL_QUEUED && r.attempts == 0 && r.max_attempts == 5 && r.created == now &&
              r.started == 0 && r.finished == 0 && r.result == NULL && r.error == NULL &&
              strcmp(r.callback_url, "http://127.0.0.1:9/cb") == 0 && strcmp(r.idempotency_key, "k1") == 0 &&
              r.callback_state == JNL_CB_NONE,
          "record");
    jnl_record_clear(&r);
    CHECK(jnl_get(j, id, "other", &r, &err) == 0, "another tenant does not see it");
    make_id(id, 3);
    CHECK(jnl_get(j, id, "beta", &r, &err) == 1, "the let-go ticket was committed");
    jnl_record_clear(&r);

    /* payloads come back with the claim, in acceptance order within a tenant */
    claimed_t cl;
    CHECK(claim(j, now, 10, &cl) == 3, "claimed %d", cl.n);
    int found_big = 0;
    for (int i = 0; i < cl.n; i++)
        found_big += strncmp(cl.payloads[i], "bbbb", 4) == 0;
    CHECK(strcmp(cl.payloads[0], "hello") == 0 && found_big == 1 && cl.attempts[0] == 1, "payloads %s",
          cl.payloads[0]);
    jnl_close(j);
}

static void t_group_commit(void)
{
    jnl_t *j = NULL;
    hearth_error_t err = {0};
    REQUIRE(jnl_open(fresh_dir(), &j, NULL, &err) == 0, "%s", err.msg);
    int64_t now = wall_ms();
    char payload[256];
    memset(payload, 'p', sizeof(payload) - 1);
    payload[sizeof(payload) - 1] = '\0';
    const char *tenants[] = {"acme", "beta", "gamma", "delta"};

    /* One fsync per accept, for comparison. */
    done_t d = {.free_it = true};
    unsigned n = 0;
    uint64_t t0 = now_ns();
    for (int i = 0; i < 300; i++) {
        accept1(j, ++n, tenants[i % 4], "f", NULL, payload, 3, now, &d);
        jnl_flush(j, &err);
    }
    double single = 300 / ((double)(now_ns() - t0) / 1e9);
    CHECK(d.durable == 300, "single: %d durable", d.durable);

    jnl_counters_t c0;
    jnl_counters(j, now, &c0, &err);
    const int total = 12800, batch = 64;
    d = (done_t){.free_it = true};
    t0 = now_ns();
    for (int i = 0; i < total; i += batch) {
        for (int k = 0; k < batch; k++) {
            char key[32];
            snprintf(key, sizeof(key), "key-%d", i + k);
            accept1(j, ++n, tenants[k % 4], "f", key, payload, 3, now, &d);
        }
        if (jnl_flush(j, &err) < 0)
            break;
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    CHECK(d.durable == total && d.failed == 0, "durable %d failed %d", d.durable, d.failed);
    jnl_counters_t c;
    jnl_counters(j, now, &c, &err);
    CHECK(c.commits_total - c0.commits_total == total / batch, "commits %lld",
          (long long)(c.commits_total - c0.commits_total));
    printf("# accept rate with real fsync: %.0f/s in batches of %d (%d in %.2f s, 256-byte payload, with key);"
           " %.0f/s with one fsync each\n",
           total / secs, batch, total, secs, single);

    /* A batch over JNL_BATCH_MAX commits on its own; on_done waits for the flush. */
    d = (done_t){.free_it = true};
    jnl_counters(j, now, &c0, &err);
    for (int i = 0; i < JNL_BATCH_MAX + 10; i++)
        accept1(j, ++n, "acme", "f", NULL, "x", 3, now, &d);
    jnl_counters(j, now, &c, &err);
    CHECK(c.commits_total - c0.commits_total == 1 && d.calls == 0, "auto commit %lld, calls %d",
          (long long)(c.commits_total - c0.commits_total), d.calls);
    CHECK(jnl_flush(j, &err) == 0 && d.durable == JNL_BATCH_MAX + 10, "durable %d", d.durable);
    CHECK(c.queued + 10 == (int64_t)n - 0 && c.depth == c.queued + c.running, "queued %lld of %u",
          (long long)c.queued, n);
    jnl_close(j);
}

static void t_idempotency(void)
{
    jnl_t *j = NULL;
    hearth_error_t err = {0};
    REQUIRE(jnl_open(fresh_dir(), &j, NULL, &err) == 0, "%s", err.msg);
    int64_t t0 = 1700000000000;
    done_t d = {0};
    jnl_ticket_t *a = accept1(j, 1, "acme", "f", "K", "one", 3, t0, &d);
    /* same batch, same key: shares the original's id and fate */
    jnl_ticket_t *a2 = accept1(j, 2, "acme", "f", "K", "two", 3, t0 + 5, &d);
    /* another tenant, same key: its own */
    jnl_ticket_t *b = accept1(j, 3, "beta", "f", "K", "three", 3, t0, &d);
    REQUIRE(a && a2 && b, "accepts");
    CHECK(jnl_ticket_duplicate(a2) && !jnl_ticket_duplicate(a) && !jnl_ticket_duplicate(b), "duplicates");
    CHECK(strcmp(jnl_ticket_id(a2), jnl_ticket_id(a)) == 0, "same id in batch");
    CHECK(jnl_ticket_state(a2) == JNL_TICKET_PENDING, "follower pending");
    CHECK(jnl_flush(j, &err) == 0 && d.durable == 3, "flush %d", d.durable);
    CHECK(jnl_ticket_state(a2) == JNL_TICKET_DURABLE, "follower durable");
    char id1[33], id3[33];
    make_id(id1, 1);
    make_id(id3, 3);
    CHECK(strcmp(jnl_ticket_id(b), id3) == 0, "tenant b's own id");
    CHECK(status_of(j, 2, NULL) == (jnl_status_t)-1, "no row for the repeat");
    jnl_ticket_free(a);
    jnl_ticket_free(a2);
    jnl_ticket_free(b);

    /* after the flush, an hour later: durable at once, original id */
    d = (done_t){0};
    jnl_ticket_t *r = accept1(j, 4, "acme", "f", "K", "four", 3, t0 + 3600 * 1000, &d);
    REQUIRE(r != NULL, "accept");
    CHECK(jnl_ticket_duplicate(r) && jnl_ticket_state(r) == JNL_TICKET_DURABLE &&
              strcmp(jnl_ticket_id(r), id1) == 0,
          "repeat: %s", jnl_ticket_id(r));
    CHECK(jnl_pending(j), "its on_done waits for the flush");
    jnl_flush(j, &err);
    CHECK(d.calls == 1 && d.durable == 1, "on_done");
    CHECK(status_of(j, 4, NULL) == (jnl_status_t)-1, "no row");
    jnl_ticket_free(r);
    jnl_close(j);

    /* across a reopen, and 24 h later it is a new invocation */
    REQUIRE(jnl_open(state, &j, NULL, &err) == 0, "%s", err.msg);
    r = accept1(j, 5, "acme", "f", "K", "five", 3, t0 + 23 * 3600 * 1000LL, NULL);
    CHECK(r && jnl_ticket_duplicate(r) && strcmp(jnl_ticket_id(r), id1) == 0, "within 24 h");
    jnl_ticket_free(r);
    r = accept1(j, 6, "acme", "f", "K", "six", 3, t0 + JNL_IDEMPOTENCY_WINDOW_MS + 1, NULL);
    REQUIRE(r != NULL, "accept");
    CHECK(!jnl_ticket_duplicate(r), "after 24 h: new");
    jnl_flush(j, &err);
    CHECK(jnl_ticket_state(r) == JNL_TICKET_DURABLE, "durable");
    jnl_ticket_free(r);
    r = accept1(j, 7, "acme", "f", "K", "seven", 3, t0 + JNL_IDEMPOTENCY_WINDOW_MS + 2, NULL);
    char id6[33];
    make_id(id6, 6);
    CHECK(r && jnl_ticket_duplicate(r) && strcmp(jnl_ticket_id(r), id6) == 0, "the key now names the new one");
    jnl_ticket_free(r);
    jnl_close(j);
}

static void t_claim_order(void)
{
    jnl_t *j = NULL;
    hearth_error_t err = {0};
    REQUIRE(jnl_open(fresh_dir(), &j, NULL, &err) == 0, "%s", err.msg);
    int64_t now = 1700000000000;
    /* acme floods (1..5), beta trickles (6), gamma (7, 8); 9 is not due yet */
    for (unsigned i = 1; i <= 5; i++)
        accept1(j, i, "acme", "f", NULL, "a", 3, now + i, drop());
    accept1(j, 6, "beta", "f", NULL, "b", 3, now + 10, drop());
    accept1(j, 7, "gamma", "f", NULL, "c", 3, now + 1, drop());
    accept1(j, 8, "gamma", "f", NULL, "c", 3, now + 2, drop());
    accept1(j, 9, "beta", "f", NULL, "b", 3, now + 100000, drop());
    /* tickets without on_done are polled; free them after the flush */
    REQUIRE(jnl_flush(j, &err) == 0, "%s", err.msg);
    int64_t next = 0;
    CHECK(jnl_next_due(j, &next, &err) == 0 && next == now + 1, "next due %lld", (long long)next);

    claimed_t cl;
    CHECK(claim(j, now, 5, &cl) == 0, "nothing due before created");
    CHECK(claim(j, now + 1000, 1, &cl) == 1 && strcmp(cl.tenants[0], "acme") == 0, "first: %s", cl.tenants[0]);
    CHECK(claim(j, now + 1000, 1, &cl) == 1 && strcmp(cl.tenants[0], "beta") == 0, "round robin across calls: %s",
          cl.tenants[0]);
    CHECK(claim(j, now + 1000, 100, &cl) == 6, "claimed %d", cl.n);
    const char *want[] = {"gamma", "acme", "gamma", "acme", "acme", "acme"};
    char got[128] = "";
    for (int i = 0; i < cl.n && i < 6; i++) {
        strcat(got, cl.tenants[i]);
        strcat(got, " ");
        CHECK(strcmp(cl.tenants[i], want[i]) == 0, "order: %s", got);
    }
    char id[33];
    make_id(id, 2);
    CHECK(strcmp(cl.ids[1], id) == 0, "oldest of acme first after 1: %s", cl.ids[1]);
    jnl_counters_t c;
    jnl_counters(j, now + 1000, &c, &err);
    CHECK(c.queued == 1 && c.running == 8 && c.depth == 9, "counters %lld %lld", (long long)c.queued,
          (long long)c.running);

    /* illegal transitions are refused */
    jnl_status_t st;
    CHECK(finish(j, 9, JNL_OUTCOME_SUCCEEDED, "x", now, &st, &err) < 0 && err.code == EINVAL, "finish queued: %s",
          err.msg);
    CHECK(finish(j, 99, JNL_OUTCOME_SUCCEEDED, "x", now, &st, &err) < 0 && err.code == ENOENT, "finish absent");
    make_id(id, 1);
    CHECK(jnl_retry(j, id, NULL, now, &err) < 0 && err.code == EINVAL, "retry running: %s", err.msg);
    CHECK(jnl_started(j, id, now + 1500, &err) == 0, "started: %s", err.msg);
    CHECK(finish(j, 1, JNL_OUTCOME_SUCCEEDED, "ok", now + 2000, &st, &err) == 0 && st == JNL_SUCCEEDED, "%s",
          err.msg);
    CHECK(finish(j, 1, JNL_OUTCOME_SUCCEEDED, "again", now + 2000, &st, &err) < 0 && err.code == EINVAL,
          "finish twice");
    CHECK(finish(j, 1, JNL_OUTCOME_FAILED, "again", now + 2000, &st, &err) < 0 && err.code == EINVAL,
          "fail after success");
    CHECK(jnl_retry(j, id, NULL, now, &err) < 0 && err.code == EINVAL, "retry succeeded");
    jnl_record_t r;
    REQUIRE(status_of(j, 1, &r) == JNL_SUCCEEDED, "succeeded");
    CHECK(r.result_len == 2 && memcmp(r.result, "ok", 2) == 0 && r.finished == now + 2000 && r.attempts == 1 &&
              r.started == now + 1500,
          "result");
    jnl_record_clear(&r);
    CHECK(claim(j, now + 200000, 100, &cl) == 1, "the succeeded one never again; 9 now due");
    jnl_close(j);
}

typedef struct {
    int n;
    jnl_status_t status[8];
} listed_t;

static int on_list(const jnl_record_t *r, void *arg)
{
    listed_t *l = arg;
    if (l->n < 8)
        l->status[l->n] = r->status;
    l->n++;
    return 0;
}

static void t_retries_dead(void)
{
    jnl_t *j = NULL;
    hearth_error_t err = {0};
    REQUIRE(jnl_open(fresh_dir(), &j, NULL, &err) == 0, "%s", err.msg);
    int64_t now = 1700000000000;
    accept1(j, 1, "acme", "flaky", NULL, "p", 3, now, drop());
    accept1(j, 2, "acme", "flaky", NULL, "p", 3, now, drop());
    jnl_flush(j, &err);
    claimed_t cl;
    jnl_status_t st;
    /* attempt 1 fails: queued again after [5, 10] ms (base 10) */
    REQUIRE(claim(j, now, 1, &cl) == 1, "claim");
    CHECK(finish(j, 1, JNL_OUTCOME_FAILED, "exit 1", now, &st, &err) == 0 && st == JNL_QUEUED, "%s", err.msg);
    jnl_record_t r;
    REQUIRE(status_of(j, 1, &r) == JNL_QUEUED, "queued");
    CHECK(r.next_attempt_at >= now + 5 && r.next_attempt_at <= now + 10 && r.attempts == 1 &&
              strcmp(r.error, "exit 1") == 0,
          "backoff 1: %lld", (long long)(r.next_attempt_at - now));
    int64_t at = r.next_attempt_at;
    jnl_record_clear(&r);
    CHECK(claim(j, at - 1, 1, &cl) == 1 && strcmp(cl.ids[0], "00000000000000000000000000000002") == 0,
          "the other one, not the retry before its time");
    CHECK(finish(j, 2, JNL_OUTCOME_SUCCEEDED, "", now, &st, &err) == 0, "%s", err.msg);
    REQUIRE(claim(j, at, 1, &cl) == 1 && cl.attempts[0] == 2, "retry due: attempt %d", cl.attempts[0]);
    now = at;
    CHECK(finish(j, 1, JNL_OUTCOME_FAILED, "exit 2", now, &st, &err) == 0 && st == JNL_QUEUED, "%s", err.msg);
    REQUIRE(status_of(j, 1, &r) == JNL_QUEUED, "queued");
    CHECK(r.next_attempt_at >= now + 10 && r.next_attempt_at <= now + 20, "backoff 2: %lld",
          (long long)(r.next_attempt_at - now));
    now = r.next_attempt_at;
    jnl_record_clear(&r);
    REQUIRE(claim(j, now, 1, &cl) == 1 && cl.attempts[0] == 3, "attempt 3");
    CHECK(finish(j, 1, JNL_OUTCOME_FAILED, "exit 3", now, &st, &err) == 0 && st == JNL_DEAD, "dead");
    REQUIRE(status_of(j, 1, &r) == JNL_DEAD, "dead");
    CHECK(r.attempts == 3 && strcmp(r.error, "exit 3") == 0 && r.finished == now, "dead record");
    jnl_record_clear(&r);
    jnl_counters_t c;
    jnl_counters(j, now, &c, &err);
    CHECK(c.retries_total == 2 && c.dead_total == 1 && c.depth == 0, "retries %lld dead %lld depth %lld",
          (long long)c.retries_total, (long long)c.dead_total, (long long)c.depth);
    CHECK(claim(j, now + 10000000, 10, &cl) == 0, "dead is not claimed");

    listed_t l = {0};
    CHECK(jnl_list(j, "acme", "flaky", JNL_DEAD, 10, on_list, &l, &err) == 0 && l.n == 1 && l.status[0] == JNL_DEAD,
          "list dead: %d", l.n);
    l = (listed_t){0};
    CHECK(jnl_list(j, "acme", "flaky", -1, 10, on_list, &l, &err) == 0 && l.n == 2, "list all: %d", l.n);
    l = (listed_t){0};
    CHECK(jnl_list(j, "beta", "flaky", JNL_DEAD, 10, on_list, &l, &err) == 0 && l.n == 0, "other tenant");

    /* manual retry: fresh budget, payload kept */
    char id[33];
    make_id(id, 1);
    CHECK(jnl_retry(j, id, "beta", now, &err) < 0 && err.code == ENOENT, "another tenant's");
    CHECK(jnl_retry(j, "00000000000000000000000000000abc", NULL, now, &err) < 0 && err.code == ENOENT, "absent");
    CHECK(jnl_retry(j, id, "acme", now, &err) == 0, "%s", err.msg);
    CHECK(jnl_retry(j, id, "acme", now, &err) < 0 && err.code == EINVAL, "not dead any more");
    REQUIRE(claim(j, now, 1, &cl) == 1 && cl.attempts[0] == 1 && strcmp(cl.payloads[0], "p") == 0,
            "retried: attempt %d payload %s", cl.attempts[0], cl.payloads[0]);
    CHECK(finish(j, 1, JNL_OUTCOME_SUCCEEDED, "done", now, &st, &err) == 0 && st == JNL_SUCCEEDED, "%s", err.msg);
    jnl_counters(j, now, &c, &err);
    CHECK(c.transitions[JNL_DEAD][JNL_QUEUED] == 1 && c.transitions[JNL_RUNNING][JNL_SUCCEEDED] == 2, "transitions");
    jnl_close(j);
}

/* A child opens the journal, claims some, and is SIGKILLed mid-flight. */
static void t_crash_recovery(void)
{
    const char *dir = fresh_dir();
    int64_t now = wall_ms();
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) {
        jnl_t *j = NULL;
        hearth_error_t err = {0};
        if (jnl_open(dir, &j, NULL, &err) < 0)
            _exit(1);
        for (unsigned i = 1; i <= 4; i++)
            accept1(j, i, "acme", "f", NULL, "p", 3, now, drop());
        accept1(j, 5, "acme", "f", NULL, "p", 1, now, drop()); /* its only attempt */
        accept1(j, 6, "acme", "f", NULL, "p", 3, now, drop()); /* stays queued */
        if (jnl_flush(j, &err) < 0)
            _exit(2);
        /* 1..5 running, all started but 4 (claimed, still waiting for a
         * sandbox); 1 finishes */
        for (int k = 0; k < 5; k++) {
            claimed_t cl;
            if (claim(j, now + k, 1, &cl) != 1)
                _exit(3);
        }
        for (unsigned k = 1; k <= 5; k++) {
            char sid[33];
            make_id(sid, k);
            if (k != 4 && jnl_started(j, sid, now + 10, &err) < 0)
                _exit(6);
        }
        if (finish(j, 1, JNL_OUTCOME_SUCCEEDED, "ok", now, NULL, &err) < 0)
            _exit(4);
        raise(SIGKILL);
        _exit(5);
    }
    int ws;
    waitpid(pid, &ws, 0);
    REQUIRE(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL, "child: status %d", ws);

    jnl_t *j = NULL;
    hearth_error_t err = {0};
    jnl_open_stats_t st;
    REQUIRE(jnl_open(dir, &j, &st, &err) == 0, "%s", err.msg);
    CHECK(st.requeued == 3 && st.dead == 1 && st.queued == 4, "requeued %lld dead %lld queued %lld",
          (long long)st.requeued, (long long)st.dead, (long long)st.queued);
    CHECK(status_of(j, 1, NULL) == JNL_SUCCEEDED, "the finished one stays finished");
    jnl_record_t r;
    for (unsigned i = 2; i <= 3; i++) {
        REQUIRE(status_of(j, i, &r) == JNL_QUEUED, "%u requeued", i);
        CHECK(r.attempts == 1 && r.error != NULL, "%u: attempt kept (%d)", i, r.attempts);
        jnl_record_clear(&r);
    }
    /* never started: queued again with its attempt given back */
    REQUIRE(status_of(j, 4, &r) == JNL_QUEUED, "4 requeued");
    CHECK(r.attempts == 0 && r.error == NULL, "4: attempt given back (%d, %s)", r.attempts, r.error);
    jnl_record_clear(&r);
    REQUIRE(status_of(j, 5, &r) == JNL_DEAD, "last attempt interrupted: dead");
    CHECK(r.attempts == 1 && r.error && strstr(r.error, "interrupted"), "dead: %s", r.error);
    jnl_record_clear(&r);
    jnl_counters_t c;
    jnl_counters(j, now, &c, &err);
    CHECK(c.queued == 4 && c.running == 0 && c.dead_total == 1 && c.retries_total == 0, "counters");
    claimed_t cl;
    CHECK(claim(j, wall_ms() + 1, 10, &cl) == 4, "resumed: %d", cl.n);
    CHECK(cl.attempts[0] == 2, "second attempt");
    bool first_again = false;
    for (int i = 0; i < cl.n; i++)
        first_again |= cl.attempts[i] == 1;
    CHECK(first_again, "the never-started one makes its first attempt");
    jnl_close(j);
}

typedef struct {
    int n;
    char id[33];
    char url[64];
    char body[32];
    jnl_status_t status;
} cbs_t;

static void on_cb(const jnl_callback_t *c, void *arg)
{
    cbs_t *s = arg;
    s->n++;
    snprintf(s->id, sizeof(s->id), "%s", c->id);
    snprintf(s->url, sizeof(s->url), "%s", c->url);
    if (c->status == JNL_SUCCEEDED)
        snprintf(s->body, sizeof(s->body), "%.*s", (int)c->result_len, (const char *)c->result);
    else
        snprintf(s->body, sizeof(s->body), "%s", c->error ? c->error : "");
    s->status = c->status;
}

static void t_callbacks(void)
{
    jnl_t *j = NULL;
    hearth_error_t err = {0};
    REQUIRE(jnl_open(fresh_dir(), &j, NULL, &err) == 0, "%s", err.msg);
    int64_t now = 1700000000000;
    char id[33];
    make_id(id, 1);
    jnl_ticket_t *t = NULL;
    jnl_new_t in = {.id = id, .tenant = "acme", .function = "f", .payload = "p", .payload_len = 1,
                    .callback_url = "http://127.0.0.1:8123/hook", .max_attempts = 1, .created = now};
    REQUIRE(jnl_accept(j, &in, &t, &err) == 0, "%s", err.msg);
    jnl_ticket_free(t);
    make_id(id, 2);
    REQUIRE(jnl_accept(j, &in, &t, &err) == 0, "%s", err.msg);
    jnl_ticket_free(t);
    accept1(j, 3, "acme", "f", NULL, "p", 1, now, drop()); /* no callback */
    jnl_flush(j, &err);

    cbs_t s = {0};
    CHECK(jnl_callbacks_due(j, now, 10, on_cb, &s, &err) == 0, "none before the end");
    claimed_t cl;
    REQUIRE(claim(j, now, 10, &cl) == 3, "claim");
    CHECK(finish(j, 1, JNL_OUTCOME_SUCCEEDED, "result!", now, NULL, &err) == 0, "%s", err.msg);
    CHECK(finish(j, 3, JNL_OUTCOME_SUCCEEDED, "r", now, NULL, &err) == 0, "%s", err.msg);
    jnl_record_t r;
    REQUIRE(status_of(j, 1, &r) == JNL_SUCCEEDED, "succeeded");
    CHECK(r.callback_state == JNL_CB_PENDING, "pending: %s", jnl_cb_state_name(r.callback_state));
    jnl_record_clear(&r);

    CHECK(jnl_callbacks_due(j, now, 10, on_cb, &s, &err) == 1 && strcmp(s.body, "result!") == 0 &&
              strcmp(s.url, "http://127.0.0.1:8123/hook") == 0 && s.status == JNL_SUCCEEDED,
          "due: %d %s", s.n, s.body);
    s = (cbs_t){0};
    CHECK(jnl_callbacks_due(j, now + 1, 10, on_cb, &s, &err) == 0, "leased");
    CHECK(jnl_callbacks_due(j, now + JNL_CALLBACK_LEASE_MS, 10, on_cb, &s, &err) == 1, "lease expired");
    make_id(id, 1);
    CHECK(jnl_callback_done(j, id, false, now, &fast, 3, &err) == 0, "%s", err.msg);
    REQUIRE(status_of(j, 1, &r) == JNL_SUCCEEDED, "get");
    CHECK(r.callback_state == JNL_CB_PENDING && r.callback_attempts == 1, "retry pending");
    jnl_record_clear(&r);
    s = (cbs_t){0};
    CHECK(jnl_callbacks_due(j, now + 4, 10, on_cb, &s, &err) == 0, "backoff");
    CHECK(jnl_callbacks_due(j, now + 10, 10, on_cb, &s, &err) == 1, "after backoff");
    CHECK(jnl_callback_done(j, id, true, now + 10, &fast, 3, &err) == 0, "%s", err.msg);
    REQUIRE(status_of(j, 1, &r) == JNL_SUCCEEDED, "get");
    CHECK(r.callback_state == JNL_CB_DELIVERED, "delivered: %s", jnl_cb_state_name(r.callback_state));
    jnl_record_clear(&r);
    CHECK(jnl_callback_done(j, id, true, now, &fast, 3, &err) < 0 && err.code == EINVAL, "done twice");
    make_id(id, 3);
    CHECK(jnl_callback_done(j, id, true, now, &fast, 3, &err) < 0 && err.code == EINVAL, "no callback");

    /* a dead one is called back with its error, and gives up after max attempts */
    CHECK(finish(j, 2, JNL_OUTCOME_FAILED, "boom", now, NULL, &err) == 0, "%s", err.msg);
    make_id(id, 2);
    int64_t t2 = now + 100000;
    for (int k = 0; k < 2; k++) {
        s = (cbs_t){0};
        CHECK(jnl_callbacks_due(j, t2, 10, on_cb, &s, &err) == 1 && s.status == JNL_DEAD &&
                  strcmp(s.body, "boom") == 0 && strcmp(s.id, id) == 0,
              "dead callback %d: %s", k, s.body);
        CHECK(jnl_callback_done(j, id, false, t2, &fast, 2, &err) == 0, "%s", err.msg);
        t2 += 1000;
    }
    REQUIRE(status_of(j, 2, &r) == JNL_DEAD, "dead");
    CHECK(r.callback_state == JNL_CB_FAILED && r.callback_attempts == 2, "gave up: %s %d",
          jnl_cb_state_name(r.callback_state), r.callback_attempts);
    jnl_record_clear(&r);
    CHECK(jnl_callbacks_due(j, t2 + 10000000, 10, on_cb, &s, &err) == 0, "no more");
    /* a manual retry resets the callback */
    CHECK(jnl_retry(j, id, NULL, t2, &err) == 0, "%s", err.msg);
    REQUIRE(status_of(j, 2, &r) == JNL_QUEUED, "queued");
    CHECK(r.callback_state == JNL_CB_NONE && r.callback_attempts == 0, "reset");
    jnl_record_clear(&r);
    jnl_close(j);
}

static void t_prune(void)
{
    jnl_t *j = NULL;
    hearth_error_t err = {0};
    REQUIRE(jnl_open(fresh_dir(), &j, NULL, &err) == 0, "%s", err.msg);
    int64_t now = 1700000000000;
    const unsigned n = JNL_PRUNE_BATCH + 44;
    for (unsigned i = 1; i <= n + 1; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%u", i);
        jnl_ticket_free(accept1(j, i, "acme", "f", i <= 20 ? key : NULL, "p", 1, now, NULL));
    }
    REQUIRE(jnl_flush(j, &err) == 0, "%s", err.msg);
    int claimed = 0;
    for (;;) {
        claimed_t cl;
        int k = claim(j, now, 1000, &cl);
        if (k <= 0)
            break;
        claimed += k;
    }
    REQUIRE(claimed == (int)n + 1, "claimed %d", claimed);
    /* n end (half succeed, half die), 1 stays running */
    for (unsigned i = 1; i <= n; i++)
        finish(j, i, i % 2 ? JNL_OUTCOME_SUCCEEDED : JNL_OUTCOME_FAILED, "r", now + 1000, NULL, &err);
    const int64_t ttl = 3600;
    CHECK(jnl_prune(j, now + 1000 + ttl * 1000, ttl, &err) == 0, "not yet: %s", err.msg);
    CHECK(status_of(j, 1, NULL) == JNL_SUCCEEDED && status_of(j, 2, NULL) == JNL_DEAD, "kept");
    int64_t later = now + 1001 + ttl * 1000;
    CHECK(jnl_prune(j, later, ttl, &err) == JNL_PRUNE_BATCH, "first batch");
    CHECK(jnl_prune(j, later, ttl, &err) == 44, "second batch");
    CHECK(jnl_prune(j, later, ttl, &err) == 0, "done");
    for (unsigned i = 1; i <= n; i++)
        if (status_of(j, i, NULL) != (jnl_status_t)-1) {
            CHECK(0, "%u not pruned", i);
            break;
        }
    CHECK(status_of(j, n + 1, NULL) == JNL_RUNNING, "running one kept");
    /* payload and result rows went with them; keys stay until 24 h */
    sqlite3 *db = NULL;
    REQUIRE(sqlite3_open(jnl_path(j), &db) == SQLITE_OK, "open");
    sqlite3_stmt *q = NULL;
    sqlite3_prepare_v2(db,
                       "SELECT (SELECT COUNT(*) FROM payloads), (SELECT COUNT(*) FROM results),"
                       " (SELECT COUNT(*) FROM idempotency)",
                       -1, &q, NULL);
    REQUIRE(q && sqlite3_step(q) == SQLITE_ROW, "count");
    CHECK(sqlite3_column_int(q, 0) == 1 && sqlite3_column_int(q, 1) == 0 && sqlite3_column_int(q, 2) == 20,
          "payloads %d results %d keys %d", sqlite3_column_int(q, 0), sqlite3_column_int(q, 1),
          sqlite3_column_int(q, 2));
    sqlite3_finalize(q);
    CHECK(jnl_prune(j, now + JNL_IDEMPOTENCY_WINDOW_MS + 1, ttl, &err) == 20, "stale keys");
    sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM idempotency", -1, &q, NULL);
    CHECK(q && sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int(q, 0) == 0, "keys gone");
    sqlite3_finalize(q);
    sqlite3_close(db);
    jnl_close(j);
}

static int fill(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    char buf[4096];
    memset(buf, 'f', sizeof(buf));
    while (write(fd, buf, sizeof(buf)) > 0)
        ;
    int e = errno;
    close(fd);
    return e == ENOSPC ? 0 : -1;
}

static void t_disk_full(void)
{
    if (geteuid() != 0)
        SKIP("needs root to mount a 256 KiB tmpfs as state_dir");
    char dir[128];
    snprintf(dir, sizeof(dir), "%s/tiny", tmpdir);
    REQUIRE(mkdir(dir, 0700) == 0, "mkdir");
    if (mount("tmpfs", dir, "tmpfs", 0, "size=256k,mode=0700") < 0)
        SKIP("mount tmpfs: %s", strerror(errno));
    char state_dir[160];
    snprintf(state_dir, sizeof(state_dir), "%s/state", dir);
    jnl_t *j = NULL;
    hearth_error_t err = {0};
    int orc = jnl_open(state_dir, &j, NULL, &err);
    if (orc < 0) {
        umount2(dir, MNT_DETACH);
        REQUIRE(0, "%s", err.msg);
    }
    int64_t now = wall_ms();
    done_t d = {.free_it = true};
    unsigned n = 0;
    for (int i = 0; i < 5; i++)
        accept1(j, ++n, "acme", "f", NULL, "small", 3, now, &d);
    CHECK(jnl_flush(j, &err) == 0 && d.durable == 5, "before: %s", err.msg);

    /* Another user fills the disk: accepts fail, nothing stored is hurt */
    char filler[200];
    snprintf(filler, sizeof(filler), "%s/filler", dir);
    CHECK(fill(filler) == 0, "fill");
    d = (done_t){.free_it = true};
    int rounds = 0;
    unsigned first_full = n + 1;
    for (; rounds < 200 && d.failed == 0; rounds++) {
        for (int k = 0; k < 16; k++)
            accept1(j, ++n, "acme", "f", NULL, "0123456789abcdef0123456789abcdef", 3, now, &d);
        hearth_error_t ferr = {0};
        if (jnl_flush(j, &ferr) < 0) {
            CHECK(ferr.code == ENOSPC, "flush on a full disk: %d %s", ferr.code, ferr.msg);
            printf("# full: %s\n", ferr.msg);
        }
    }
    CHECK(d.failed == 16 && d.last_code == ENOSPC, "small accepts fail when full: failed %d code %d", d.failed,
          d.last_code);
    printf("# disk full: %d accepts still fitted in the WAL's slack\n", d.durable);
    for (unsigned i = 1; i <= 5; i++)
        CHECK(status_of(j, i, NULL) == JNL_QUEUED, "%u still reads back", i);
    CHECK(status_of(j, n, NULL) == (jnl_status_t)-1, "nothing of the failed batch");
    for (unsigned i = first_full; i <= n - 16; i++)
        CHECK(status_of(j, i, NULL) == JNL_QUEUED, "%u (durable before the failure) reads back", i);
    claimed_t cl;
    int c = claim(j, now, 1, &cl);
    CHECK(c == 1 || c < 0, "a claim on a full disk works or fails cleanly");

    unlink(filler);
    d = (done_t){.free_it = true};
    unsigned first_after = n + 1;
    for (int k = 0; k < 8; k++)
        accept1(j, ++n, "acme", "f", NULL, "after", 3, now, &d);
    CHECK(jnl_flush(j, &err) == 0 && d.durable == 8, "space back: %s", err.msg);
    for (unsigned i = first_after; i <= n; i++)
        CHECK(status_of(j, i, NULL) == JNL_QUEUED, "%u stored", i);

    /* A payload larger than the file system fails with its batch; the
     * WAL space it took is reused by later commits */
    static char big[400 << 10];
    memset(big, 'B', sizeof(big));
    char id[33];
    make_id(id, ++n);
    jnl_ticket_t *t = NULL;
    jnl_new_t in = {.id = id, .tenant = "acme", .function = "f", .payload = big, .payload_len = sizeof(big),
                    .max_attempts = 3, .created = now};
    CHECK(jnl_accept(j, &in, &t, &err) == 0, "%s", err.msg);
    jnl_ticket_t *small = accept1(j, ++n, "acme", "f", NULL, "same batch", 3, now, NULL);
    hearth_error_t ferr = {0};
    CHECK(jnl_flush(j, &ferr) < 0 && ferr.code == ENOSPC, "flush over the limit: %d %s", ferr.code, ferr.msg);
    CHECK(t && jnl_ticket_state(t) == JNL_TICKET_FAILED && jnl_ticket_error(t)->code == ENOSPC, "ticket failed");
    CHECK(small && jnl_ticket_state(small) == JNL_TICKET_FAILED, "the whole batch failed");
    jnl_ticket_free(t);
    jnl_ticket_free(small);
    struct statvfs vfs;
    if (statvfs(dir, &vfs) == 0)
        printf("# after the failed 400 KiB batch: %lu KiB free\n", (unsigned long)(vfs.f_bavail * vfs.f_bsize >> 10));
    for (unsigned i = 1; i <= 5; i++)
        CHECK(status_of(j, i, NULL) == JNL_QUEUED, "%u still reads back", i);
    d = (done_t){.free_it = true};
    for (int k = 0; k < 8; k++)
        accept1(j, ++n, "acme", "f", NULL, "after big", 3, now, &d);
    CHECK(jnl_flush(j, &err) == 0 && d.durable == 8, "after the big one: %s", err.msg);
    jnl_close(j);

    /* the file is sound */
    char path[200];
    snprintf(path, sizeof(path), "%s/journal.db", state_dir);
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK &&
              sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &q, NULL) == SQLITE_OK &&
              sqlite3_step(q) == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(q, 0), "ok") == 0,
          "integrity: %s", q ? (const char *)sqlite3_column_text(q, 0) : "?");
    sqlite3_finalize(q);
    sqlite3_close(db);
    CHECK(umount2(dir, 0) == 0 || umount2(dir, MNT_DETACH) == 0, "umount: %s", strerror(errno));
    rmdir(dir);
}

int main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_journal.XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(t_open);
    RUN(t_accept_durable);
    RUN(t_group_commit);
    RUN(t_idempotency);
    RUN(t_claim_order);
    RUN(t_retries_dead);
    RUN(t_crash_recovery);
    RUN(t_callbacks);
    RUN(t_prune);
    RUN(t_disk_full);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmpdir);
    return harness_done();
}
