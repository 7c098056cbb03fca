/* The SQLite store: functions, versions, usage, persistence across reopen,
 * schema versioning. Works in a temporary directory removed afterwards. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "orchestrator/store.h"
#include "tests/harness.h"

static char tmpdir[64];
static char state[128];

typedef struct {
    int n;
    char names[8][64];
} seen_t;

static int collect(const store_function_t *f, void *arg)
{
    seen_t *s = arg;
    if (s->n < 8)
        snprintf(s->names[s->n], sizeof(s->names[0]), "%s/%s@%lld", f->tenant, f->name, (long long)f->version);
    s->n++;
    return 0;
}

static int stop_at_first(const store_function_t *f, void *arg)
{
    (void)f;
    (*(int *)arg)++;
    return 7;
}

static void t_open_creates(void)
{
    store_t *s = NULL;
    hearth_error_t err = {0};
    int orc = store_open(state, &s, &err);
    REQUIRE(orc == 0, "%s", err.msg);
    struct stat st;
    CHECK(stat(state, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700, "mode %o",
          st.st_mode & 0777);
    int v = -1;
    CHECK(store_schema_version(s, &v, &err) == 0 && v == 1, "version %d", v);
    char p[256];
    snprintf(p, sizeof(p), "%s/hearth.db", state);
    CHECK(strcmp(store_path(s), p) == 0, "%s", store_path(s));
    store_close(s);
}

static void t_functions(void)
{
    store_t *s = NULL;
    hearth_error_t err = {0};
    int orc = store_open(state, &s, &err);
    REQUIRE(orc == 0, "%s", err.msg);
    bool created = false;
    int64_t version = 0;
    CHECK(store_put_function(s, "acme", "echo", "{\"v\":1}", &created, &version, &err) == 0, "%s", err.msg);
    CHECK(created && version == 1, "created %d version %lld", created, (long long)version);
    CHECK(store_put_function(s, "acme", "echo", "{\"v\":2}", &created, &version, &err) == 0, "%s", err.msg);
    CHECK(!created && version == 2, "updated %d version %lld", created, (long long)version);
    CHECK(store_put_function(s, "beta", "echo", "{\"v\":9}", &created, &version, &err) == 0 && created &&
              version == 1,
          "other tenant, same name");
    CHECK(store_put_function(s, "acme", "alpha", "{}", NULL, NULL, &err) == 0, "%s", err.msg);

    store_function_t f;
    CHECK(store_get_function(s, "acme", "echo", &f, &err) == 1, "get");
    CHECK(strcmp(f.spec_json, "{\"v\":2}") == 0 && f.version == 2 && f.created > 0 && f.updated >= f.created,
          "row %s", f.spec_json);
    store_function_clear(&f);
    CHECK(store_get_function(s, "acme", "nope", &f, &err) == 0, "absent");
    CHECK(store_get_function(s, "gamma", "echo", &f, &err) == 0, "foreign tenant absent");

    seen_t seen = {0};
    CHECK(store_list_functions(s, "acme", collect, &seen, &err) == 0 && seen.n == 2, "acme list %d", seen.n);
    CHECK(strcmp(seen.names[0], "acme/alpha@1") == 0 && strcmp(seen.names[1], "acme/echo@2") == 0, "%s %s",
          seen.names[0], seen.names[1]);
    memset(&seen, 0, sizeof(seen));
    CHECK(store_list_functions(s, NULL, collect, &seen, &err) == 0 && seen.n == 3, "all %d", seen.n);
    CHECK(strcmp(seen.names[2], "beta/echo@1") == 0, "%s", seen.names[2]);
    int calls = 0;
    CHECK(store_list_functions(s, NULL, stop_at_first, &calls, &err) == 7 && calls == 1, "stop");
    /* The statement was reset: the next walk starts over. */
    memset(&seen, 0, sizeof(seen));
    CHECK(store_list_functions(s, NULL, collect, &seen, &err) == 0 && seen.n == 3, "again %d", seen.n);

    CHECK(store_delete_function(s, "acme", "alpha", &err) == 1, "delete");
    CHECK(store_delete_function(s, "acme", "alpha", &err) == 0, "delete twice");
    CHECK(store_delete_function(s, "beta", "alpha", &err) == 0, "delete foreign");
    /* A re-created function starts again at version 1. */
    CHECK(store_put_function(s, "acme", "alpha", "{}", &created, &version, &err) == 0 && created && version == 1,
          "recreate");
    store_close(s);
}

static void t_usage(void)
{
    store_t *s = NULL;
    hearth_error_t err = {0};
    int orc = store_open(state, &s, &err);
    REQUIRE(orc == 0, "%s", err.msg);
    store_usage_t d = {.cpu_ns_invocation = 1000, .cpu_ns_overhead = 10, .memory_mb_ms = 128,
                       .invocations = 1, .errors = 0, .cold_starts = 1};
    CHECK(store_add_usage(s, "acme", "echo", &d, &err) == 0, "%s", err.msg);
    d.errors = 1;
    d.cold_starts = 0;
    CHECK(store_add_usage(s, "acme", "echo", &d, &err) == 0, "%s", err.msg);
    CHECK(store_add_usage(s, "acme", "wc", &d, &err) == 0, "%s", err.msg);
    CHECK(store_add_usage(s, "acme", NULL, &d, &err) == 0, "tenant only");

    store_usage_t u;
    CHECK(store_read_usage(s, "acme", "echo", &u, &err) == 0, "%s", err.msg);
    CHECK(u.cpu_ns_invocation == 2000 && u.cpu_ns_overhead == 20 && u.memory_mb_ms == 256 && u.invocations == 2 &&
              u.errors == 1 && u.cold_starts == 1,
          "echo %lld %lld", (long long)u.cpu_ns_invocation, (long long)u.invocations);
    CHECK(store_read_usage(s, "acme", NULL, &u, &err) == 0 && u.invocations == 4 && u.cpu_ns_invocation == 4000 &&
              u.errors == 3 && u.cold_starts == 1,
          "tenant %lld", (long long)u.invocations);
    CHECK(store_read_usage(s, "beta", NULL, &u, &err) == 0 && u.invocations == 0 && u.cpu_ns_invocation == 0,
          "none");

    /* Batching: one transaction around several adds. */
    CHECK(store_begin(s, &err) == 0, "%s", err.msg);
    for (int i = 0; i < 100; i++)
        store_add_usage(s, "beta", "f", &d, &err);
    CHECK(store_commit(s, &err) == 0, "%s", err.msg);
    CHECK(store_read_usage(s, "beta", "f", &u, &err) == 0 && u.invocations == 100, "batched %lld",
          (long long)u.invocations);
    CHECK(store_begin(s, &err) == 0, "begin");
    store_add_usage(s, "beta", "f", &d, &err);
    store_rollback(s);
    CHECK(store_read_usage(s, "beta", "f", &u, &err) == 0 && u.invocations == 100, "rolled back");
    store_close(s);
}

static int count_usage(const char *tenant, const char *function, const store_usage_t *u, void *arg)
{
    (void)u;
    int *n = arg;
    if (strcmp(tenant, "acme") == 0 && function == NULL)
        n[1] = 1;
    n[0]++;
    return 0;
}

static void t_persistence(void)
{
    /* Everything written by earlier tests, read back by a new connection. */
    store_t *s = NULL;
    hearth_error_t err = {0};
    int orc = store_open(state, &s, &err);
    REQUIRE(orc == 0, "%s", err.msg);
    store_function_t f;
    CHECK(store_get_function(s, "acme", "echo", &f, &err) == 1 && f.version == 2, "kept");
    store_function_clear(&f);
    store_usage_t u;
    CHECK(store_read_usage(s, "acme", NULL, &u, &err) == 0 && u.invocations == 4, "usage kept");
    int n[2] = {0, 0};
    CHECK(store_list_usage(s, count_usage, n, &err) == 0 && n[0] == 5 && n[1] == 1, "usage rows %d", n[0]);
    store_close(s);
}

static void t_schema_newer_refused(void)
{
    char db[256];
    snprintf(db, sizeof(db), "%s/hearth.db", state);
    sqlite3 *raw = NULL;
    int rrc = sqlite3_open(db, &raw);
    REQUIRE(rrc == SQLITE_OK, "open raw");
    sqlite3_exec(raw, "UPDATE meta SET value = 99 WHERE key = 'schema_version'", NULL, NULL, NULL);
    sqlite3_close(raw);
    store_t *s = NULL;
    hearth_error_t err = {0};
    CHECK(store_open(state, &s, &err) < 0 && strstr(err.msg, "schema version 99, newer than this hearth's 1"),
          "%s", err.msg);
    CHECK(s == NULL, "no store");
    rrc = sqlite3_open(db, &raw);
    REQUIRE(rrc == SQLITE_OK, "open raw");
    sqlite3_exec(raw, "UPDATE meta SET value = 1 WHERE key = 'schema_version'", NULL, NULL, NULL);
    sqlite3_close(raw);
}

static void t_open_errors(void)
{
    store_t *s = NULL;
    hearth_error_t err = {0};
    char file[192];
    snprintf(file, sizeof(file), "%s/plain", tmpdir);
    FILE *f = fopen(file, "w");
    if (f)
        fclose(f);
    CHECK(store_open(file, &s, &err) < 0 && err.code == ENOTDIR, "file as dir: %s", err.msg);
    /* Below a regular file: refused even for root. */
    char below[256];
    snprintf(below, sizeof(below), "%s/sub/dir", file);
    CHECK(store_open(below, &s, &err) < 0 && err.code == ENOTDIR && strstr(err.msg, "create state_dir"),
          "below a file: %s", err.msg);
    CHECK(s == NULL, "no store");
}

int main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/hearth-store-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(state, sizeof(state), "%s/state/sub", tmpdir);
    RUN(t_open_creates);
    RUN(t_functions);
    RUN(t_usage);
    RUN(t_persistence);
    RUN(t_schema_newer_refused);
    RUN(t_open_errors);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmpdir);
    return harness_done();
}
