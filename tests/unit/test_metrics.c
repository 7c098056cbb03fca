/* Metrics: families, series lookup, histograms, escaping, forgetting, and
 * the exposition checked by Prometheus's own promtool when installed. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "orchestrator/metrics.h"
#include "tests/harness.h"

static char *render(const metrics_t *m)
{
    struct evbuffer *b = evbuffer_new();
    hearth_error_t err = {0};
    char *text = NULL;
    if (b != NULL && metrics_render(m, b, &err) == 0) {
        size_t n = evbuffer_get_length(b);
        text = malloc(n + 1);
        if (text != NULL) {
            evbuffer_remove(b, text, n);
            text[n] = '\0';
        }
    }
    evbuffer_free(b);
    return text;
}

static const char *const INV_LABELS[] = {"tenant", "function", "start", "outcome", NULL};
static const double DURATION_BUCKETS[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5};

/* The families of the daemon, as the issue lists them. */
static metrics_t *daemon_like(void)
{
    hearth_error_t err = {0};
    metrics_t *m = metrics_new();
    if (m == NULL)
        return NULL;
    const char *const tf[] = {"tenant", "function", NULL};
    const char *const tfs[] = {"tenant", "function", "state", NULL};
    const char *const t[] = {"tenant", NULL};
    const char *const bi[] = {"version", NULL};
    metrics_family_t *inv = metrics_register(m, METRICS_COUNTER, "hearth_invocations_total",
                                             "Invocations by start kind and outcome.", INV_LABELS, NULL, 0, &err);
    metrics_family_t *dur = metrics_register(m, METRICS_HISTOGRAM, "hearth_invocation_duration_seconds",
                                             "Wall time of invocations.", tf, DURATION_BUCKETS, 8, &err);
    metrics_family_t *cold = metrics_register(m, METRICS_HISTOGRAM, "hearth_cold_start_seconds",
                                              "Time to a ready sandbox.", NULL, DURATION_BUCKETS, 8, &err);
    metrics_family_t *q = metrics_register(m, METRICS_GAUGE, "hearth_queue_depth", "Queued invocations.", tf,
                                           NULL, 0, &err);
    metrics_family_t *sb = metrics_register(m, METRICS_GAUGE, "hearth_sandboxes", "Sandboxes by state.", tfs,
                                            NULL, 0, &err);
    metrics_family_t *tc = metrics_register(m, METRICS_COUNTER, "hearth_tenant_cpu_seconds_total",
                                            "CPU time charged to a tenant.", t, NULL, 0, &err);
    metrics_family_t *fc = metrics_register(m, METRICS_COUNTER, "hearth_function_cpu_seconds_total",
                                            "CPU time charged to a function.", tf, NULL, 0, &err);
    metrics_family_t *up = metrics_register(m, METRICS_GAUGE, "hearth_uptime_seconds",
                                            "Seconds since hearthd started.", NULL, NULL, 0, &err);
    metrics_family_t *build = metrics_register(m, METRICS_GAUGE, "hearth_build_info",
                                               "Build information; always 1.", bi, NULL, 0, &err);
    if (!inv || !dur || !cold || !q || !sb || !tc || !fc || !up || !build) {
        printf("# register: %s\n", err.msg);
        metrics_free(m);
        return NULL;
    }
    const char *tricky = "we\"ird\\name\nline";
    metrics_add(metrics_series(inv, (const char *const[]){"acme", "echo", "cold", "ok"}), 1);
    metrics_add(metrics_series(inv, (const char *const[]){"acme", "echo", "warm", "ok"}), 41);
    metrics_add(metrics_series(inv, (const char *const[]){"beta", tricky, "warm", "error"}), 2);
    metrics_observe(metrics_series(dur, (const char *const[]){"acme", "echo"}), 0.004);
    metrics_observe(metrics_series(dur, (const char *const[]){"acme", "echo"}), 0.2);
    metrics_observe(metrics_series(dur, (const char *const[]){"acme", "echo"}), 9);
    metrics_observe(metrics_series(cold, NULL), 0.0008);
    metrics_set(metrics_series(q, (const char *const[]){"acme", "echo"}), 3);
    metrics_set(metrics_series(sb, (const char *const[]){"acme", "echo", "idle"}), 2);
    metrics_set(metrics_series(sb, (const char *const[]){"acme", "echo", "busy"}), 1);
    metrics_add(metrics_series(tc, (const char *const[]){"acme"}), 0.25);
    metrics_add(metrics_series(fc, (const char *const[]){"acme", "echo"}), 0.25);
    metrics_set(metrics_series(up, NULL), 12.5);
    metrics_set(metrics_series(build, (const char *const[]){"0.1.0"}), 1);
    return m;
}

static void t_register_refusals(void)
{
    metrics_t *m = metrics_new();
    REQUIRE(m != NULL, "new");
    hearth_error_t err = {0};
    const double b[] = {1, 2};
    const double bad[] = {2, 1};
    CHECK(metrics_register(m, METRICS_COUNTER, "x_total", "h", NULL, NULL, 0, &err) != NULL, "ok");
    CHECK(metrics_register(m, METRICS_COUNTER, "x_total", "h", NULL, NULL, 0, &err) == NULL, "duplicate");
    CHECK(metrics_register(m, METRICS_COUNTER, "x", "h", NULL, NULL, 0, &err) == NULL &&
              strstr(err.msg, "must end in _total"),
          "%s", err.msg);
    CHECK(metrics_register(m, METRICS_GAUGE, "1x", "h", NULL, NULL, 0, &err) == NULL, "bad name");
    CHECK(metrics_register(m, METRICS_GAUGE, "a-b", "h", NULL, NULL, 0, &err) == NULL, "bad name 2");
    CHECK(metrics_register(m, METRICS_GAUGE, "g", "h", (const char *const[]){"a:b", NULL}, NULL, 0, &err) == NULL,
          "bad label");
    CHECK(metrics_register(m, METRICS_GAUGE, "g", "h", (const char *const[]){"__x", NULL}, NULL, 0, &err) == NULL,
          "reserved label");
    CHECK(metrics_register(m, METRICS_GAUGE, "g", "h", (const char *const[]){"a", "a", NULL}, NULL, 0, &err) ==
              NULL,
          "dup label");
    CHECK(metrics_register(m, METRICS_HISTOGRAM, "h", "h", (const char *const[]){"le", NULL}, b, 2, &err) == NULL,
          "le");
    CHECK(metrics_register(m, METRICS_HISTOGRAM, "h", "h", NULL, bad, 2, &err) == NULL, "order");
    CHECK(metrics_register(m, METRICS_HISTOGRAM, "h", "h", NULL, NULL, 0, &err) == NULL, "no buckets");
    CHECK(metrics_register(m, METRICS_HISTOGRAM, "h", "h", NULL, b, 2, &err) != NULL, "histogram ok");
    metrics_free(m);
}

static void t_series(void)
{
    metrics_t *m = metrics_new();
    REQUIRE(m != NULL, "new");
    hearth_error_t err = {0};
    metrics_family_t *c = metrics_register(m, METRICS_COUNTER, "c_total", "h", (const char *const[]){"a", "b", NULL},
                                           NULL, 0, &err);
    metrics_family_t *g = metrics_register(m, METRICS_GAUGE, "g", "h", (const char *const[]){"a", "b", NULL}, NULL,
                                           0, &err);
    REQUIRE(c != NULL && g != NULL, "register");
    metrics_series_t *s1 = metrics_series(c, (const char *const[]){"ab", "c"});
    metrics_series_t *s2 = metrics_series(c, (const char *const[]){"a", "bc"});
    CHECK(s1 != NULL && s2 != NULL && s1 != s2, "distinct series");
    CHECK(metrics_series(c, (const char *const[]){"ab", "c"}) == s1, "same series found again");
    CHECK(metrics_series(g, (const char *const[]){"ab", "c"}) != s1, "other family");
    CHECK(metrics_series(c, (const char *const[]){"x", NULL}) == NULL, "missing value");
    metrics_add(s1, 2);
    metrics_add(s1, -5);
    CHECK(metrics_value(s1) == 2, "counter never decreases: %g", metrics_value(s1));
    metrics_set(s1, 100);
    CHECK(metrics_value(s1) == 2, "set on a counter is ignored");
    metrics_series_t *gs = metrics_series(g, (const char *const[]){"x", "y"});
    metrics_set(gs, 5);
    metrics_add(gs, -7);
    CHECK(metrics_value(gs) == -2, "gauge %g", metrics_value(gs));

    /* Many series: the table grows and every one is still found. */
    char a[32], b[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(a, sizeof(a), "t%d", i % 50);
        snprintf(b, sizeof(b), "f%d", i);
        metrics_add(metrics_series(c, (const char *const[]){a, b}), i);
    }
    int bad = 0;
    for (int i = 0; i < 5000; i++) {
        snprintf(a, sizeof(a), "t%d", i % 50);
        snprintf(b, sizeof(b), "f%d", i);
        if (metrics_value(metrics_series(c, (const char *const[]){a, b})) != i)
            bad++;
    }
    CHECK(bad == 0, "%d lost", bad);
    metrics_free(m);
}

static void t_histogram(void)
{
    metrics_t *m = metrics_new();
    hearth_error_t err = {0};
    const double b[] = {0.1, 1, 10};
    metrics_family_t *h = metrics_register(m, METRICS_HISTOGRAM, "lat_seconds", "Latency.",
                                           (const char *const[]){"fn", NULL}, b, 3, &err);
    REQUIRE(h != NULL, "%s", err.msg);
    metrics_series_t *s = metrics_series(h, (const char *const[]){"x"});
    metrics_observe(s, 0.1); /* le is inclusive */
    metrics_observe(s, 0.5);
    metrics_observe(s, 0.7);
    metrics_observe(s, 100);
    CHECK(metrics_count(s) == 4 && metrics_value(s) == 101.3, "count %llu sum %g", metrics_count(s),
          metrics_value(s));
    char *text = render(m);
    REQUIRE(text != NULL, "render");
    const char *want = "# HELP lat_seconds Latency.\n"
                       "# TYPE lat_seconds histogram\n"
                       "lat_seconds_bucket{fn=\"x\",le=\"0.1\"} 1\n"
                       "lat_seconds_bucket{fn=\"x\",le=\"1\"} 3\n"
                       "lat_seconds_bucket{fn=\"x\",le=\"10\"} 3\n"
                       "lat_seconds_bucket{fn=\"x\",le=\"+Inf\"} 4\n"
                       "lat_seconds_sum{fn=\"x\"} 101.3\n"
                       "lat_seconds_count{fn=\"x\"} 4\n";
    CHECK(strcmp(text, want) == 0, "got:\n%s", text);
    free(text);
    metrics_free(m);
}

static void t_escaping(void)
{
    metrics_t *m = metrics_new();
    hearth_error_t err = {0};
    metrics_family_t *g = metrics_register(m, METRICS_GAUGE, "g", "Help with \\ and\nnewline \"quoted\".",
                                           (const char *const[]){"v", NULL}, NULL, 0, &err);
    REQUIRE(g != NULL, "%s", err.msg);
    metrics_set(metrics_series(g, (const char *const[]){"a\"b\\c\nd"}), 1.5);
    metrics_set(metrics_series(g, (const char *const[]){""}), 1.0 / 0.0);
    char *text = render(m);
    REQUIRE(text != NULL, "render");
    const char *want = "# HELP g Help with \\\\ and\\nnewline \"quoted\".\n"
                       "# TYPE g gauge\n"
                       "g{v=\"a\\\"b\\\\c\\nd\"} 1.5\n"
                       "g{v=\"\"} +Inf\n";
    CHECK(strcmp(text, want) == 0, "got:\n%s", text);
    free(text);
    metrics_free(m);
}

static void t_forget(void)
{
    metrics_t *m = daemon_like();
    REQUIRE(m != NULL, "metrics");
    size_t n = metrics_forget(m, (const char *const[]){"tenant", "function"}, (const char *const[]){"acme", "echo"}, 2);
    /* 2 invocation series, 1 duration, 1 queue, 2 sandbox states, 1 function cpu. */
    CHECK(n == 7, "removed %zu", n);
    char *text = render(m);
    REQUIRE(text != NULL, "render");
    CHECK(strstr(text, "function=\"echo\"") == NULL, "echo gone:\n%s", text);
    CHECK(strstr(text, "hearth_tenant_cpu_seconds_total{tenant=\"acme\"} 0.25") != NULL, "tenant total kept");
    CHECK(strstr(text, "tenant=\"beta\"") != NULL, "beta kept");
    free(text);
    CHECK(metrics_forget(m, (const char *const[]){"tenant"}, (const char *const[]){"nobody"}, 1) == 0, "none");
    /* A forgotten series comes back at zero when used again. */
    metrics_family_t *dummy = metrics_register(m, METRICS_GAUGE, "hearth_open_connections", "Open connections.",
                                               NULL, NULL, 0, NULL);
    CHECK(dummy != NULL, "register after forget");
    metrics_free(m);
}

static void t_promtool(void)
{
    metrics_t *m = daemon_like();
    REQUIRE(m != NULL, "metrics");
    char *text = render(m);
    metrics_free(m);
    REQUIRE(text != NULL, "render");
    CHECK(strstr(text, "hearth_invocations_total{tenant=\"acme\",function=\"echo\",start=\"warm\",outcome=\"ok\"} 41\n"),
          "counter line:\n%s", text);
    CHECK(strstr(text, "hearth_cold_start_seconds_bucket{le=\"0.001\"} 1\n"), "unlabelled histogram");
    if (access("/usr/bin/promtool", X_OK) != 0) {
        free(text);
        SKIP("promtool not installed (apt-get install prometheus) — exposition not checked by Prometheus");
    }
    char path[] = "/tmp/hearth-metrics-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0, "mkstemp");
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write");
    close(fd);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "/usr/bin/promtool check metrics < %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    char out[4096] = "";
    size_t n = p ? fread(out, 1, sizeof(out) - 1, p) : 0;
    out[n] = '\0';
    int rc = p ? pclose(p) : -1;
    CHECK(rc == 0, "promtool says (%d):\n%s\n--- input:\n%s", rc, out, text);
    unlink(path);
    free(text);
}

int main(void)
{
    RUN(t_register_refusals);
    RUN(t_series);
    RUN(t_histogram);
    RUN(t_escaping);
    RUN(t_forget);
    RUN(t_promtool);
    return harness_done();
}
