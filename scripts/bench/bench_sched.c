/* Scheduler throughput in simulation: submit + complete pairs per second on
 * one core, each call landing on a warm sandbox, for 1, 100 and 10,000
 * registered functions (the cost must not depend on that number), and the
 * process's resident memory.
 *
 *   gcc -std=gnu11 -D_GNU_SOURCE -I. -O2 -o bench_sched scripts/bench/bench_sched.c scheduler/[a-z]*.c common/util.c
 *   ./bench_sched [pairs]        (default 5,000,000 per case) */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "scheduler/scheduler.h"

typedef struct {
    uint64_t *spawned; /* sandbox ids to report ready */
    size_t n, cap;
    uint64_t dispatched; /* dispatches seen */
    uint64_t rejected;   /* rejections seen (should stay 0) */
} bench_ctx_t;

static void on_spawn(void *ctx, uint64_t fn, uint32_t version, uint64_t id, bool from_prewarm)
{
    (void)fn;
    (void)version;
    (void)from_prewarm;
    bench_ctx_t *b = ctx;
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 1024;
        b->spawned = realloc(b->spawned, b->cap * sizeof(*b->spawned));
        if (b->spawned == NULL)
            abort();
    }
    b->spawned[b->n++] = id;
}

static void on_spawn_generic(void *ctx, uint64_t id)
{
    on_spawn(ctx, 0, 0, id, false);
}

static void on_dispatch(void *ctx, uint64_t inv, void *opaque, uint64_t sbx, sched_start_t kind)
{
    (void)inv;
    (void)opaque;
    (void)sbx;
    (void)kind;
    ((bench_ctx_t *)ctx)->dispatched++;
}

static void on_destroy(void *ctx, uint64_t sbx, sched_destroy_reason_t why)
{
    (void)ctx;
    (void)sbx;
    (void)why;
}

static void on_reject(void *ctx, uint64_t inv, void *opaque, sched_reject_reason_t why, uint32_t retry)
{
    (void)inv;
    (void)opaque;
    (void)why;
    (void)retry;
    ((bench_ctx_t *)ctx)->rejected++;
}

static long rss_kib(void)
{
    char buf[4096];
    ssize_t n = read_file_at(-100 /* AT_FDCWD */, "/proc/self/status", buf, sizeof(buf));
    if (n < 0)
        return -1;
    const char *p = strstr(buf, "VmRSS:");
    return p ? strtol(p + 6, NULL, 10) : -1;
}

static int run_case(uint32_t n_fns, uint64_t pairs)
{
    bench_ctx_t b = {0};
    sched_provider_t pv = {on_spawn, on_spawn_generic, on_dispatch, on_destroy, on_reject, &b};
    sched_config_t cfg;
    sched_config_default(&cfg);
    cfg.max_sandboxes = n_fns + 16;
    cfg.memory_budget_mb = (uint64_t)n_fns * 128 + 1024;
    cfg.prewarm_max = 0;
    hearth_error_t err;
    uint64_t now = 1;
    sched_t *s = sched_new(&cfg, &pv, now, &err);
    if (s == NULL) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return -1;
    }
    uint32_t n_tenants = n_fns < 100 ? 1 : n_fns / 100;
    for (uint32_t t = 1; t <= n_tenants; t++) {
        sched_tenant_spec_t ts = {"bench", 1, 1000000, 0};
        if (sched_tenant_put(s, t, &ts, &err) < 0)
            goto fail;
    }
    long rss0 = rss_kib();
    for (uint32_t f = 1; f <= n_fns; f++) {
        sched_fn_spec_t fs = {1 + (f - 1) % n_tenants, "fn", 1, 128, 1, 1, 4, 3600 * 1000};
        if (sched_fn_put(s, f, &fs, now, &err) < 0)
            goto fail;
    }
    long rss_reg = rss_kib();
    for (size_t i = 0; i < b.n; i++)
        if (sched_sandbox_ready(s, b.spawned[i], now, &err) < 0)
            goto fail;
    b.n = 0;

    uint64_t t0 = now_ns();
    /* A stride coprime with n_fns walks every function, defeating any cache of "the last one". */
    uint64_t stride = n_fns > 1 ? 7919 % n_fns : 0;
    if (stride == 0 && n_fns > 1)
        stride = 1;
    uint64_t fn = 0;
    for (uint64_t i = 1; i <= pairs; i++) {
        now += 1000; /* 1 µs of simulated time per pair */
        fn = (fn + stride) % n_fns;
        if (sched_submit(s, i, fn + 1, SCHED_SYNC, NULL, now, &err) < 0 ||
            sched_invocation_done(s, i, 1000, SCHED_DONE_OK, now, &err) < 0)
            goto fail;
        if ((i & 1023) == 0)
            sched_tick(s, now);
    }
    uint64_t dt = now_ns() - t0;
    long rss1 = rss_kib();
    double rate = (double)pairs / ((double)dt / 1e9);
    printf("functions %6u: %10.0f submit+complete pairs/s (%.0f ns/pair, %llu dispatched, %llu rejected, %zu cold "
           "starts during the run); RSS %ld KiB before registering, %ld KiB with functions, %ld KiB after\n",
           n_fns, rate, (double)dt / (double)pairs, (unsigned long long)b.dispatched,
           (unsigned long long)b.rejected, b.n, rss0, rss_reg, rss1);
    fflush(stdout);
    sched_free(s);
    free(b.spawned);
    return rate >= 1e6 ? 0 : 1;
fail:
    fprintf(stderr, "bench: %s\n", err.msg);
    sched_free(s);
    free(b.spawned);
    return -1;
}

int main(int argc, char **argv)
{
    uint64_t pairs = argc > 1 ? strtoull(argv[1], NULL, 10) : 5000000;
    /* One core, as the daemon's event loop has. */
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    sched_setaffinity(0, sizeof(set), &set);
    static const uint32_t cases[] = {1, 100, 10000};
    int slow = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = run_case(cases[i], pairs);
        if (rc < 0)
            return 2;
        slow += rc;
    }
    printf("target: >= 1000000 pairs/s in every case: %s\n", slow ? "MISSED" : "met");
    return slow ? 1 : 0;
}
