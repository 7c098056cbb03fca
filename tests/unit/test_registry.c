/* The registry: API deploys backed by the store, functions_dir files with
 * reloads, tenant checks, versions and ids, restart persistence. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orchestrator/registry.h"
#include "tests/harness.h"

static char tmp[64], state[128], fdir[128];
static auth_t *auth;
static const auth_tenant_t *acme, *beta, *root;

typedef struct {
    int added, replaced, removed;
} changes_t;

static void on_change(void *arg, const reg_function_t *old, const reg_function_t *now)
{
    changes_t *c = arg;
    if (old == NULL)
        c->added++;
    else if (now == NULL)
        c->removed++;
    else
        c->replaced++;
}

static void write_file(const char *name, const char *text)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", fdir, name);
    FILE *f = fopen(p, "w");
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}

static void remove_file(const char *name)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", fdir, name);
    unlink(p);
}

static cfg_function_t *spec(const char *json, const char *tenant)
{
    cfg_function_t *fn = NULL;
    hearth_error_t err = {0};
    if (cfg_function_parse(json, strlen(json), tenant, &fn, &err) < 0)
        printf("# spec: %s\n", err.msg);
    return fn;
}

static int open_all(store_t **s, registry_t **r, reg_reload_stats_t *st, hearth_error_t *err)
{
    if (store_open(state, s, err) < 0)
        return -1;
    if (reg_open(*s, fdir, r, st, err) < 0) {
        store_close(*s);
        return -1;
    }
    return 0;
}

static void t_api_functions(void)
{
    store_t *s = NULL;
    registry_t *r = NULL;
    hearth_error_t err = {0};
    reg_reload_stats_t st;
    int rc = open_all(&s, &r, &st, &err);
    REQUIRE(rc == 0, "%s", err.msg);
    CHECK(reg_count(r) == 1 && st.added == 1, "the file: %zu", reg_count(r));
    changes_t ch = {0};
    reg_set_listener(r, on_change, &ch);

    bool created = false;
    const reg_function_t *f = NULL;
    rc = reg_put(r, auth, acme, spec("{\"name\":\"echo\",\"command\":[\"/bin/cat\"]}", "acme"), &created, &f, &err);
    CHECK(rc == 0 && created && f->version == 1 && f->source == REG_SOURCE_API && f->current, "put: %s", err.msg);
    REQUIRE(f != NULL, "f");
    uint64_t id = f->id, gen = f->generation;
    reg_function_t *held = reg_function_ref(f);

    /* The same spec again: nothing changes. */
    rc = reg_put(r, auth, acme, spec("{\"name\":\"echo\",\"command\":[\"/bin/cat\"]}", "acme"), &created, &f, &err);
    CHECK(rc == 0 && !created && f->version == 1 && f->generation == gen, "same again");
    /* A change: new version and generation, same id; the old object lives on for its holder. */
    rc = reg_put(r, auth, acme, spec("{\"name\":\"echo\",\"command\":[\"/bin/cat\"],\"memory_mb\":64}", "acme"),
                 &created, &f, &err);
    CHECK(rc == 0 && !created && f->version == 2 && f->id == id && f->generation > gen, "update: %s", err.msg);
    CHECK(!held->current && held->spec->memory_mb == 128 && f->spec->memory_mb == 64, "old version kept");
    reg_function_unref(held);
    CHECK(ch.added == 1 && ch.replaced == 1 && ch.removed == 0, "listener %d %d %d", ch.added, ch.replaced,
          ch.removed);
    CHECK(reg_by_id(r, id) == f, "by id");

    /* Tenant checks. */
    rc = reg_put(r, auth, acme, spec("{\"name\":\"x\",\"tenant\":\"beta\",\"command\":[\"/bin/true\"]}", NULL), NULL,
                 NULL, &err);
    CHECK(rc < 0 && err.code == EACCES && strcmp(err.msg, "tenant: only an admin may deploy for another tenant") == 0,
          "%s", err.msg);
    rc = reg_put(r, auth, root, spec("{\"name\":\"x\",\"tenant\":\"beta\",\"command\":[\"/bin/true\"]}", NULL),
                 &created, NULL, &err);
    CHECK(rc == 0 && created, "admin for beta: %s", err.msg);
    rc = reg_put(r, auth, root, spec("{\"name\":\"x\",\"tenant\":\"ghost\",\"command\":[\"/bin/true\"]}", NULL), NULL,
                 NULL, &err);
    CHECK(rc < 0 && err.code == EINVAL && strcmp(err.msg, "tenant: unknown tenant `ghost`") == 0, "%s", err.msg);

    CHECK(reg_get(r, acme, "acme", "echo") == f, "own");
    CHECK(reg_get(r, beta, "acme", "echo") == NULL, "foreign looks absent");
    CHECK(reg_get(r, acme, "acme", "nope") == NULL, "absent");
    CHECK(reg_get(r, root, "acme", "echo") == f, "admin");

    reg_function_t **list = NULL;
    size_t n = 0;
    CHECK(reg_list(r, acme, NULL, &list, &n, &err) == 0 && n == 2, "acme sees %zu", n);
    CHECK(n == 2 && strcmp(list[0]->spec->name, "echo") == 0 && strcmp(list[1]->spec->name, "filed") == 0, "sorted");
    reg_list_free(list, n);
    CHECK(reg_list(r, acme, "beta", &list, &n, &err) == 0 && n == 0, "foreign list empty");
    reg_list_free(list, n);
    CHECK(reg_list(r, root, NULL, &list, &n, &err) == 0 && n == 3, "admin sees all: %zu", n);
    CHECK(n == 3 && strcmp(list[2]->spec->tenant, "beta") == 0, "by tenant");
    reg_list_free(list, n);
    CHECK(reg_list(r, root, "beta", &list, &n, &err) == 0 && n == 1, "admin one tenant");
    reg_list_free(list, n);

    /* A file's function is the file's. */
    rc = reg_put(r, auth, acme, spec("{\"name\":\"filed\",\"command\":[\"/bin/true\"]}", "acme"), NULL, NULL, &err);
    CHECK(rc < 0 && err.code == EEXIST && strstr(err.msg, "change that file instead"), "%s", err.msg);
    CHECK(reg_delete(r, acme, "acme", "filed", &err) < 0 && err.code == EEXIST, "%s", err.msg);

    CHECK(reg_delete(r, beta, "acme", "echo", &err) < 0 && err.code == ENOENT, "foreign delete");
    CHECK(reg_delete(r, root, "beta", "x", &err) == 0, "admin delete: %s", err.msg);
    CHECK(reg_delete(r, root, "beta", "x", &err) < 0 && err.code == ENOENT, "twice");
    CHECK(ch.removed == 1, "listener removed %d", ch.removed);

    reg_close(r);
    store_close(s);
}

static void t_restart(void)
{
    store_t *s = NULL;
    registry_t *r = NULL;
    hearth_error_t err = {0};
    int rc = open_all(&s, &r, NULL, &err);
    REQUIRE(rc == 0, "%s", err.msg);
    const reg_function_t *f = reg_get(r, acme, "acme", "echo");
    CHECK(f != NULL && f->version == 2 && f->spec->memory_mb == 64 && f->source == REG_SOURCE_API,
          "API function survived");
    CHECK(reg_get(r, root, "beta", "x") == NULL, "deleted stays deleted");
    CHECK(reg_count(r) == 2, "count %zu", reg_count(r));
    reg_close(r);
    store_close(s);
}

static void t_reload(void)
{
    store_t *s = NULL;
    registry_t *r = NULL;
    hearth_error_t err = {0};
    int rc = open_all(&s, &r, NULL, &err);
    REQUIRE(rc == 0, "%s", err.msg);
    changes_t ch = {0};
    reg_set_listener(r, on_change, &ch);
    const reg_function_t *filed = reg_get(r, acme, "acme", "filed");
    REQUIRE(filed != NULL, "filed");
    uint64_t filed_id = filed->id;

    reg_reload_stats_t st;
    CHECK(reg_reload_dir(r, &st, &err) == 0 && st.unchanged == 1 && st.added + st.changed + st.removed == 0,
          "nothing changed");

    write_file("filed.json", "{\"name\":\"filed\",\"tenant\":\"acme\",\"command\":[\"/bin/false\"]}");
    write_file("new.json", "{\"name\":\"new\",\"tenant\":\"beta\",\"command\":[\"/bin/true\"]}");
    /* A file over the API-deployed echo: the file wins while it exists. */
    write_file("echo.json", "{\"name\":\"echo\",\"tenant\":\"acme\",\"command\":[\"/bin/echo\"]}");
    CHECK(reg_reload_dir(r, &st, &err) == 0, "%s", err.msg);
    CHECK(st.added == 1 && st.changed == 2 && st.shadowed == 1 && st.removed == 0, "a%zu c%zu s%zu r%zu", st.added,
          st.changed, st.shadowed, st.removed);
    filed = reg_get(r, acme, "acme", "filed");
    CHECK(filed && filed->id == filed_id && filed->version == 2 && strcmp(filed->spec->command[0], "/bin/false") == 0,
          "changed file");
    const reg_function_t *echo = reg_get(r, acme, "acme", "echo");
    CHECK(echo && echo->source == REG_SOURCE_FILE && echo->version == 3, "shadowed: v%lld",
          echo ? (long long)echo->version : -1);
    CHECK(reg_get(r, beta, "beta", "new") != NULL, "added");

    /* A bad file: nothing changes, the error names it. */
    write_file("zz.json", "{\"name\":\"zz\",\"tenant\":\"beta\",\"command\":[]}");
    char want[256];
    snprintf(want, sizeof(want), "%s/zz.json: command: must be a non-empty array of strings (at most 256)", fdir);
    CHECK(reg_reload_dir(r, &st, &err) < 0 && strcmp(err.msg, want) == 0, "%s", err.msg);
    remove_file("zz.json");
    CHECK(reg_get(r, beta, "beta", "new") != NULL, "still there");

    /* Removing files: a plain one goes, the shadowing one uncovers the stored function. */
    remove_file("new.json");
    remove_file("echo.json");
    memset(&ch, 0, sizeof(ch));
    CHECK(reg_reload_dir(r, &st, &err) == 0 && st.removed == 1 && st.changed == 1, "r%zu c%zu", st.removed,
          st.changed);
    CHECK(reg_get(r, beta, "beta", "new") == NULL, "removed");
    echo = reg_get(r, acme, "acme", "echo");
    CHECK(echo && echo->source == REG_SOURCE_API && echo->version == 4 && echo->spec->memory_mb == 64,
          "stored echo is back");
    CHECK(ch.removed == 1 && ch.replaced == 1, "listener");
    reg_close(r);
    store_close(s);
}

static void t_bad_dir(void)
{
    store_t *s = NULL;
    registry_t *r = NULL;
    hearth_error_t err = {0};
    int rc = store_open(state, &s, &err);
    REQUIRE(rc == 0, "%s", err.msg);
    CHECK(reg_open(s, "/nonexistent-hearth-dir", &r, NULL, &err) < 0 && err.code == ENOENT, "%s", err.msg);
    CHECK(reg_open(s, "", &r, NULL, &err) == 0 && reg_count(r) == 1, "no dir: only stored functions");
    reg_close(r);
    store_close(s);
}

int main(void)
{
    snprintf(tmp, sizeof(tmp), "/tmp/hearth-reg-XXXXXX");
    if (mkdtemp(tmp) == NULL)
        return 1;
    snprintf(state, sizeof(state), "%s/state", tmp);
    snprintf(fdir, sizeof(fdir), "%s/functions", tmp);
    if (mkdir(fdir, 0755) < 0)
        return 1;
    write_file("filed.json", "{\"name\":\"filed\",\"tenant\":\"acme\",\"command\":[\"/bin/true\"]}");
    const char *cfgjson = "{\"tenants\":[{\"name\":\"acme\",\"uids\":[1000]},{\"name\":\"beta\",\"uids\":[1001]},"
                          "{\"name\":\"root\",\"uids\":[0],\"admin\":true}]}";
    cfg_daemon_t *cfg = NULL;
    hearth_error_t err = {0};
    if (cfg_daemon_parse(cfgjson, strlen(cfgjson), &cfg, &err) < 0 || auth_new(cfg, &auth, &err) < 0) {
        printf("# %s\n", err.msg);
        return 1;
    }
    cfg_daemon_free(cfg);
    acme = auth_by_name(auth, "acme");
    beta = auth_by_name(auth, "beta");
    root = auth_by_name(auth, "root");

    RUN(t_api_functions);
    RUN(t_restart);
    RUN(t_reload);
    RUN(t_bad_dir);

    auth_unref(auth);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmp);
    return harness_done();
}
