/* sbxbench — the sandbox library alone (sandbox/sandbox.h, linked from
 * build/libhearth.a): how fast sandboxes are made and unmade, what an idle
 * one costs the host, and how both change with the number of live ones.
 *
 *   sbxbench [-r CGROUP_ROOT] [-u UID_BASE] [-c UID_COUNT] [-o FILE] COMMAND ...
 *
 *   rate SECONDS INFLIGHT
 *       keep INFLIGHT creations in flight (sbx_create_async through the
 *       spawner) for SECONDS; each sandbox is killed (sbx_kill_start) as
 *       soon as it is ready, and destroyed (sbx_destroy) once its init is
 *       gone, as hearthd does. Prints "rate live=0 seconds=S created=N
 *       failed=F per_s=R destroy_us=D"; N counts the sandboxes destroyed.
 *   start N EXE
 *       N times: create a sandbox (sbx_create), run EXE in it (sbx_exec),
 *       wait for its exit (sbx_wait), all timed; then destroy it (not
 *       timed). Samples "start-L<TAB>RUN<TAB>NS<TAB>STATUS" go to FILE.
 *   density N EXE
 *       N sandboxes, each running EXE (a program that stays idle), kept
 *       alive together; prints /proc/meminfo and cgroup memory figures
 *       before, with them, and after they are gone, and EXE's and init's
 *       resident memory (see the "density" lines).
 *   scale LEVELS N SECONDS INFLIGHT EXE
 *       LEVELS is a comma-separated list of live-sandbox counts (0,100,...).
 *       For each, idle sandboxes are added until that many are live, then
 *       `start N EXE` and `rate SECONDS INFLIGHT` run beside them.
 *
 * Every sandbox has the library's defaults: the full isolation profile
 * (user, pid, mount, net, uts, ipc and cgroup namespaces, cgroup limits,
 * seccomp, no capabilities). Exit: 0 done, 1 a sandbox failed, 2 setup. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sandbox/sandbox.h"

static sbx_host_t *host;
static const char *cg_root;
static const sbx_spec_t spec = {0}; /* the library's defaults: full isolation */
static FILE *out;
static int failures;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Live idle sandboxes held for density and scale. */
static sbx_t **held;
static size_t n_held, cap_held;

static void hold(sbx_t *sb)
{
    if (n_held == cap_held) {
        cap_held = cap_held ? 2 * cap_held : 256;
        held = realloc(held, cap_held * sizeof(*held));
        if (held == NULL) {
            perror("sbxbench: realloc");
            exit(2);
        }
    }
    held[n_held++] = sb;
}

/* Start `exe` in sb and leave it running (idle programs), or NULL exe: nothing. */
static int exec_in(sbx_t *sb, const char *exe)
{
    if (exe == NULL)
        return 0;
    const char *argv[] = {exe, NULL};
    sbx_exec_t ex = {.argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1};
    hearth_error_t err = {0};
    if (sbx_exec(sb, &ex, NULL, &err) < 0) {
        fprintf(stderr, "sbxbench: exec %s: %s\n", exe, err.msg);
        return -1;
    }
    return 0;
}

/* Take every finished creation the spawner has answered: `ready(sb)` for
 * each. Returns how many finished (failed ones counted in `failures`). */
static int take_answers(void (*ready)(sbx_t *sb, void *arg), void *arg)
{
    int n = 0;
    sbx_t *sb;
    uint64_t ticket;
    hearth_error_t err = {0};
    int rc;
    while ((rc = sbx_host_poll(host, &sb, &ticket, &err)) > 0) {
        n++;
        if (sb == NULL) {
            if (failures++ < 5)
                fprintf(stderr, "sbxbench: create: %s\n", err.msg);
            continue;
        }
        ready(sb, arg);
    }
    if (rc < 0) {
        fprintf(stderr, "sbxbench: spawner: %s\n", err.msg);
        exit(2);
    }
    return n;
}

/* The same after waiting up to `ms` for the spawner's answers. */
static int collect(int ms, void (*ready)(sbx_t *sb, void *arg), void *arg)
{
    struct pollfd p = {sbx_host_fd(host), POLLIN, 0};
    return poll(&p, 1, ms) > 0 ? take_answers(ready, arg) : 0;
}

static int submit(void)
{
    uint64_t ticket;
    hearth_error_t err = {0};
    if (sbx_create_async(host, &spec, &ticket, &err) < 0) {
        fprintf(stderr, "sbxbench: create_async: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static void ready_hold(sbx_t *sb, void *arg)
{
    if (exec_in(sb, arg) < 0) {
        failures++;
        sbx_destroy(sb);
        return;
    }
    hold(sb);
}

/* Add idle sandboxes (each running `exe`, or empty) until `target` are held. */
static void grow(size_t target, int inflight, const char *exe)
{
    int pending = 0, f0 = failures;
    while (n_held < target) {
        /* A failed creation is asked for again (up to 20 failures). */
        while (pending < inflight && n_held + (size_t)pending < target) {
            if (submit() < 0)
                exit(1);
            pending++;
        }
        pending -= collect(1000, ready_hold, (void *)exe);
        if (failures - f0 > 20) {
            fprintf(stderr, "sbxbench: too many failures growing to %zu\n", target);
            exit(1);
        }
    }
}

/* `rate` retires sandboxes as hearthd does: init is killed (sbx_kill_start)
 * and the sandbox destroyed once its pidfd turns readable, so the caller
 * never waits for an exit. The time spent in those two calls is measured:
 * it runs in this process while the spawner builds the next sandboxes. */
#define DYING_MAX 1024
static uint64_t destroy_ns;
static sbx_t *dying[DYING_MAX];
static struct pollfd rate_p[1 + DYING_MAX]; /* the host's fd, then the dying ones' pidfds */
static int n_dying;

static void ready_retire(sbx_t *sb, void *arg)
{
    uint64_t t = mono_ns();
    int fd = n_dying < DYING_MAX ? sbx_kill_start(sb) : -1;
    if (fd < 0) {
        sbx_destroy(sb); /* nothing to wait for, or no room to wait: at once */
        (*(uint64_t *)arg)++;
    } else {
        dying[n_dying] = sb;
        rate_p[1 + n_dying] = (struct pollfd){fd, POLLIN, 0};
        n_dying++;
    }
    destroy_ns += mono_ns() - t;
}

/* Wait up to `ms` for creations (each retired) and ends (each destroyed and
 * counted in *done); returns how many creations finished. */
static int rate_turn(int ms, uint64_t *done)
{
    rate_p[0] = (struct pollfd){sbx_host_fd(host), POLLIN, 0};
    if (poll(rate_p, 1 + (nfds_t)n_dying, ms) <= 0)
        return 0;
    for (int i = n_dying - 1; i >= 0; i--) {
        if (!rate_p[1 + i].revents)
            continue;
        uint64_t t = mono_ns();
        sbx_destroy(dying[i]);
        destroy_ns += mono_ns() - t;
        (*done)++;
        n_dying--;
        dying[i] = dying[n_dying];
        rate_p[1 + i] = rate_p[1 + n_dying];
    }
    return rate_p[0].revents ? take_answers(ready_retire, done) : 0;
}

static void rate(double seconds, int inflight, size_t live)
{
    uint64_t done = 0;
    int pending = 0, f0 = failures;
    destroy_ns = 0;
    uint64_t t0 = mono_ns(), end = t0 + (uint64_t)(seconds * 1e9);
    while (mono_ns() < end) {
        while (pending < inflight) {
            if (submit() < 0)
                exit(1);
            pending++;
        }
        pending -= rate_turn(100, &done);
    }
    double secs = (double)(mono_ns() - t0) / 1e9;
    double destroy_us = done ? (double)destroy_ns / 1e3 / (double)done : 0;
    /* Not counted: what was still in flight or dying at the end; taken and destroyed. */
    uint64_t extra = 0;
    while (pending > 0 || n_dying > 0)
        pending -= rate_turn(1000, &extra);
    printf("rate live=%zu seconds=%.3f inflight=%d created=%" PRIu64 " failed=%d per_s=%.1f destroy_us=%.0f\n", live,
           secs, inflight, done, failures - f0, (double)done / secs, destroy_us);
    fflush(stdout);
}

static void start(int n, const char *exe, size_t live)
{
    hearth_error_t err = {0};
    const char *argv[] = {exe, NULL};
    int dev_null = -1;
    for (int i = 0; i < n; i++) {
        sbx_exec_t ex = {.argv = argv, .stdin_fd = dev_null, .stdout_fd = -1, .stderr_fd = -1};
        sbx_t *sb = NULL;
        sbx_end_t e = {0};
        int status = 0;
        uint64_t t0 = mono_ns();
        if (sbx_create(host, &spec, &sb, &err) < 0 || sbx_exec(sb, &ex, NULL, &err) < 0 ||
            sbx_wait(sb, 10000, &e, &err) < 0) {
            if (failures++ < 5)
                fprintf(stderr, "sbxbench: start: %s\n", err.msg);
            status = -1;
        } else if (e.kind != SBX_END_EXIT || e.status != 0) {
            status = e.kind == SBX_END_EXIT ? e.status : 128 + e.status;
        }
        uint64_t t1 = mono_ns();
        sbx_destroy(sb);
        fprintf(out, "start-%zu\t%d\t%" PRIu64 "\t%d\n", live, i, t1 - t0, status);
    }
    fflush(out);
}

/* --- memory -------------------------------------------------------------------- */

static const char *const meminfo_keys[] = {"MemAvailable", "MemFree", "AnonPages", "Shmem", "Slab",
                                           "SUnreclaim", "KernelStack", "PageTables", "Percpu", NULL};

static void meminfo(long long *kib)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    for (int i = 0; meminfo_keys[i]; i++)
        kib[i] = 0;
    while (f && fgets(line, sizeof(line), f)) {
        for (int i = 0; meminfo_keys[i]; i++) {
            size_t l = strlen(meminfo_keys[i]);
            if (strncmp(line, meminfo_keys[i], l) == 0 && line[l] == ':')
                kib[i] = atoll(line + l + 1);
        }
    }
    if (f)
        fclose(f);
}

static long long read_ll(const char *path)
{
    FILE *f = fopen(path, "r");
    long long v = -1;
    if (f) {
        if (fscanf(f, "%lld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

/* The value of `key` in a "key value" file (memory.stat), -1 if absent. */
static long long stat_key(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    char k[128];
    long long v, r = -1;
    while (f && fscanf(f, "%127s %lld", k, &v) == 2)
        if (strcmp(k, key) == 0) {
            r = v;
            break;
        }
    if (f)
        fclose(f);
    return r;
}

/* VmRSS or RssAnon (`key`) of a host pid in KiB, -1 if gone. */
static long long rss_kib(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long long v = -1;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, key, strlen(key)) == 0 && line[strlen(key)] == ':')
            v = atoll(line + strlen(key) + 1);
    if (f)
        fclose(f);
    return v;
}

/* The first pid in the sandbox's memory cgroup other than its init: the
 * idle program. */
static pid_t other_pid(const char *memdir, pid_t init)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/cgroup.procs", memdir);
    FILE *f = fopen(path, "r");
    int pid;
    pid_t r = -1;
    while (f && fscanf(f, "%d", &pid) == 1)
        if (pid != init) {
            r = pid;
            break;
        }
    if (f)
        fclose(f);
    return r;
}

static void print_meminfo(const char *when, const long long *kib)
{
    printf("density meminfo %s", when);
    for (int i = 0; meminfo_keys[i]; i++)
        printf(" %s=%lld", meminfo_keys[i], kib[i]);
    printf("\n");
}

static void density(size_t n, const char *exe, int inflight)
{
    long long before[16], with[16], after[16];
    sleep(1);
    meminfo(before);
    uint64_t t0 = mono_ns();
    grow(n, inflight, exe);
    double secs = (double)(mono_ns() - t0) / 1e9;
    sleep(2); /* let deferred kernel work (RCU frees, netns set-up) settle */
    meminfo(with);

    /* The cgroups: v2 memory.current, or v1's memory controller (whose
     * usage includes kernel memory charged to the cgroup). */
    bool v2 = strcmp(sbx_host_cgroup_mode(host), "v2") == 0;
    long long cg = 0, cg_kmem = 0, cg_anon = 0, exe_rss = 0, init_rss = 0, exe_anon = 0, init_anon = 0;
    size_t counted = 0, exe_seen = 0;
    for (size_t i = 0; i < n_held; i++) {
        char dir[512], path[600];
        /* sbx_cgroup_name is the sandbox's own directory, below our root. */
        snprintf(dir, sizeof(dir), v2 ? "/sys/fs/cgroup/%s/%s" : "/sys/fs/cgroup/memory/%s/%s", cg_root,
                 sbx_cgroup_name(held[i]));
        snprintf(path, sizeof(path), "%s/%s", dir, v2 ? "memory.current" : "memory.usage_in_bytes");
        long long u = read_ll(path);
        if (u < 0)
            continue;
        counted++;
        cg += u;
        if (v2) {
            snprintf(path, sizeof(path), "%s/memory.stat", dir);
            long long k = stat_key(path, "kernel");
            cg_kmem += k > 0 ? k : 0;
            long long a = stat_key(path, "anon");
            cg_anon += a > 0 ? a : 0;
        } else {
            snprintf(path, sizeof(path), "%s/memory.kmem.usage_in_bytes", dir);
            long long k = read_ll(path);
            cg_kmem += k > 0 ? k : 0;
            snprintf(path, sizeof(path), "%s/memory.stat", dir);
            long long a = stat_key(path, "rss");
            cg_anon += a > 0 ? a : 0;
        }
        long long r = rss_kib(sbx_init_pid(held[i]), "VmRSS");
        init_rss += r > 0 ? r : 0;
        r = rss_kib(sbx_init_pid(held[i]), "RssAnon");
        init_anon += r > 0 ? r : 0;
        pid_t p = other_pid(dir, sbx_init_pid(held[i]));
        if (p > 0 && (r = rss_kib(p, "VmRSS")) > 0) {
            exe_rss += r;
            exe_seen++;
            r = rss_kib(p, "RssAnon");
            exe_anon += r > 0 ? r : 0;
        }
    }
    printf("density n=%zu create_seconds=%.3f cgroup_mode=%s cgroups=%zu cgroup_bytes=%lld cgroup_kmem_bytes=%lld "
           "cgroup_anon_bytes=%lld init_rss_kib=%lld init_anon_kib=%lld exe_seen=%zu exe_rss_kib=%lld "
           "exe_anon_kib=%lld\n",
           n_held, secs, v2 ? "v2" : "v1", counted, cg, cg_kmem, cg_anon, init_rss, init_anon, exe_seen, exe_rss,
           exe_anon);
    for (size_t i = 0; i < n_held; i++)
        sbx_destroy(held[i]);
    n_held = 0;
    sleep(2);
    meminfo(after);
    print_meminfo("before", before);
    print_meminfo("with", with);
    print_meminfo("after", after);
    fflush(stdout);
}

static void scale(const char *levels, int n, double seconds, int inflight, const char *exe)
{
    char *copy = strdup(levels), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        size_t level = strtoul(tok, NULL, 10);
        uint64_t t0 = mono_ns();
        grow(level, inflight, NULL);
        printf("grow live=%zu seconds=%.3f\n", n_held, (double)(mono_ns() - t0) / 1e9);
        fflush(stdout);
        usleep(500000);
        start(n, exe, n_held);
        rate(seconds, inflight, n_held);
    }
    free(copy);
    for (size_t i = 0; i < n_held; i++)
        sbx_destroy(held[i]);
    n_held = 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: sbxbench [-r CGROUP_ROOT] [-u UID_BASE] [-c UID_COUNT] [-o FILE]\n"
                    "                (rate SECONDS INFLIGHT | start N EXE | density N EXE |\n"
                    "                 scale LEVELS N SECONDS INFLIGHT EXE)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    char root[64];
    snprintf(root, sizeof(root), "hearth-sbxbench-%d", (int)getpid());
    sbx_host_config_t hc = {.cgroup_root = root, .uid_base = 6200000, .uid_count = 4096, .spawner = true};
    int c;
    out = stdout;
    while ((c = getopt(argc, argv, "+r:u:c:o:")) != -1) {
        switch (c) {
        case 'r': hc.cgroup_root = optarg; break;
        case 'u': hc.uid_base = (uid_t)strtoul(optarg, NULL, 10); break;
        case 'c': hc.uid_count = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'o':
            if ((out = fopen(optarg, "a")) == NULL) {
                perror(optarg);
                return 2;
            }
            break;
        default: usage();
        }
    }
    argc -= optind;
    argv += optind;
    if (argc < 1)
        usage();
    cg_root = hc.cgroup_root;
    hearth_error_t err = {0};
    if (sbx_host_open(&hc, &host, &err) < 0) {
        fprintf(stderr, "sbxbench: sbx_host_open: %s\n", err.msg);
        return 2;
    }
    /* One sandbox first, not counted: the seccomp program is compiled and
     * cached, the spawner's pages are touched. */
    sbx_t *sb = NULL;
    if (sbx_create(host, &spec, &sb, &err) < 0) {
        fprintf(stderr, "sbxbench: first sandbox: %s\n", err.msg);
        sbx_host_close(host);
        return 2;
    }
    sbx_destroy(sb);

    if (strcmp(argv[0], "rate") == 0 && argc == 3)
        rate(atof(argv[1]), atoi(argv[2]), 0);
    else if (strcmp(argv[0], "start") == 0 && argc == 3)
        start(atoi(argv[1]), argv[2], 0);
    else if (strcmp(argv[0], "density") == 0 && argc == 3)
        density(strtoul(argv[1], NULL, 10), argv[2], 8);
    else if (strcmp(argv[0], "scale") == 0 && argc == 6)
        scale(argv[1], atoi(argv[2]), atof(argv[3]), atoi(argv[4]), argv[5]);
    else {
        sbx_host_close(host);
        usage();
    }
    sbx_host_close(host);
    if (out != stdout)
        fclose(out);
    return failures ? 1 : 0;
}
