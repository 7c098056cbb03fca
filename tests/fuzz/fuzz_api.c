/* libFuzzer entry point: bytes → hearthd's API, as raw HTTP/1.1 on a
 * connection to its Unix socket.
 *
 * The daemon is the real one, started once as orchestrator/main.c starts
 * it (config file, store, journal, auth, registry, scheduler, async engine,
 * evhttp listener) in a temporary directory, with one difference: the
 * sandbox host has no spawner, so every sandbox creation fails at its first
 * step (sbx_create_async) and no sandbox, process or cgroup of a function
 * is ever made; invocations end as start failures (502) or queue limits
 * (429). Everything before that — routing, auth (bearer, peer uid, SigV4),
 * JSON specs, the registry and the store, async accepts in the journal —
 * runs for real. The process moves into a network namespace of its own at
 * start so that a fuzzed X-Callback-Url reaches nothing. Needs root (the
 * sandbox host checks for it; the namespace needs it).
 *
 * Each input is written on a new connection (peer uid 0: tenant `demo`;
 * tokens below name the others) — or on up to 4, its parts separated by
 * "\n@@\n" — the loop runs until nothing more happens, the connections are
 * closed. State carries over between inputs, as in a
 * daemon; an invocation still waiting for its 502 is answered later, to a
 * closed connection. time() is pinned to 2024-05-17T12:34:56Z so that
 * SigV4 seeds signed then stay valid.
 *
 * Tenants: demo (token fuzz-demo-token, uid 0), admin (fuzz-admin-token,
 * admin), other (fuzz-other-token; AWS key AKIAFUZZFUZZFUZZ0001 /
 * hearthFuzzSecretKey/0123456789+abcdefghij). Functions from files:
 * demo/echo (stdio), demo/lam (lambda), other/hello (stdio). */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "orchestrator/daemon.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define T0 1715949296 /* 2024-05-17T12:34:56Z */

time_t time(time_t *out)
{
    if (out != NULL)
        *out = T0;
    return T0;
}

static struct {
    hearth_t hd;
    char dir[256];
    struct sockaddr_un addr;
    bool trace;
} g;

static void die(const char *what, const char *why)
{
    fprintf(stderr, "fuzz_api: %s: %s\n", what, why);
    exit(1);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
        die(path, strerror(errno));
}

static void remove_tree(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_api: could not remove %s\n", dir);
}

/* What main.c does after the loop: the sandbox host's close removes our
 * cgroup root. */
static void teardown(void)
{
    hearth_t *hd = &g.hd;
    if (hd->sched != NULL)
        hd_shutdown(hd);
    async_stop(hd);
    jnl_close(hd->jnl);
    api_free(hd);
    reg_close(hd->reg);
    store_close(hd->store);
    if (hd->auth)
        auth_unref(hd->auth);
    sbx_host_close(hd->host);
    if (hd->base)
        event_base_free(hd->base);
    cfg_daemon_free(hd->cfg);
    remove_tree(g.dir);
}

/* A crash ends the fuzzer without its atexit: what a dead predecessor left
 * (its directory, its empty cgroup root; both named after its pid) goes
 * at the next start. */
static void remove_stale(const char *tmp)
{
    static const char *const patterns[] = {"/sys/fs/cgroup/*/hearth-fuzz-api-*", "/sys/fs/cgroup/hearth-fuzz-api-*",
                                           NULL};
    char pat[512];
    snprintf(pat, sizeof(pat), "%s/hearth-fuzz-api-*", tmp);
    for (int i = 0; i < 3; i++) {
        glob_t gl;
        if (glob(patterns[i] ? patterns[i] : pat, 0, NULL, &gl) != 0)
            continue;
        for (size_t j = 0; j < gl.gl_pathc; j++) {
            const char *p = strrchr(gl.gl_pathv[j], '-') + 1;
            pid_t pid = (pid_t)atoi(p);
            if (pid <= 0 || kill(pid, 0) == 0 || errno != ESRCH)
                continue;
            if (patterns[i] != NULL)
                rmdir(gl.gl_pathv[j]); /* empty: no sandbox was ever made */
            else
                remove_tree(gl.gl_pathv[j]);
        }
        globfree(&gl);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (geteuid() != 0)
        die("start", "needs root (the sandbox host, a network namespace)");
    if (unshare(CLONE_NEWNET) < 0)
        die("unshare(CLONE_NEWNET)", strerror(errno));
    signal(SIGPIPE, SIG_IGN);
    g.trace = getenv("FUZZ_TRACE") != NULL;
    /* Connections whose invocation is still waiting stay open a while. */
    struct rlimit rl = {16384, 16384};
    setrlimit(RLIMIT_NOFILE, &rl);

    const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    remove_stale(tmp);
    snprintf(g.dir, sizeof(g.dir), "%s/hearth-fuzz-api-%d.XXXXXX", tmp, (int)getpid());
    if (mkdtemp(g.dir) == NULL)
        die("mkdtemp", strerror(errno));
    char path[512], text[4096];
    snprintf(path, sizeof(path), "%s/functions", g.dir);
    if (mkdir(path, 0755) < 0)
        die(path, strerror(errno));
    snprintf(path, sizeof(path), "%s/functions/echo.json", g.dir);
    write_file(path, "{\"name\": \"echo\", \"tenant\": \"demo\", \"command\": [\"/bin/cat\"], \"timeout_ms\": 1000}\n");
    snprintf(path, sizeof(path), "%s/functions/lam.json", g.dir);
    write_file(path, "{\"name\": \"lam\", \"tenant\": \"demo\", \"protocol\": \"lambda\", \"command\": [\"/bootstrap\"],"
                     " \"max_attempts\": 1}\n");
    snprintf(path, sizeof(path), "%s/functions/hello.json", g.dir);
    write_file(path, "{\"name\": \"hello\", \"tenant\": \"other\", \"command\": [\"/bin/echo\", \"hello\"]}\n");
    snprintf(text, sizeof(text),
             "{\"listen_unix\": \"%s/sock/hearth.sock\", \"listen_http\": \"\", \"state_dir\": \"%s/state\","
             " \"functions_dir\": \"%s/functions\", \"cgroup_root\": \"hearth-fuzz-api-%d\","
             " \"uid_base\": 5300000, \"uid_count\": 16, \"max_sandboxes\": 4, \"prewarm_pool\": 0,"
             " \"max_body_bytes\": 65536, \"max_header_bytes\": 8192, \"max_connections\": 8192,"
             " \"read_timeout_ms\": 1000, \"write_timeout_ms\": 1000, \"log_level\": \"error\", \"tenants\": ["
             "{\"name\": \"demo\", \"uids\": [0], \"tokens_sha256\": "
             "[\"1ec19f9055187ed648b274c38f37cb01b6b05da910b8ff058d630d92102a67f1\"]},"
             "{\"name\": \"admin\", \"admin\": true, \"tokens_sha256\": "
             "[\"fb5f5fe58160617e1487667a8133f89a396f563247c75a8e2824af6e08a810fc\"]},"
             "{\"name\": \"other\", \"max_concurrency\": 2, \"cpu_ms_per_minute\": 1000, \"tokens_sha256\": "
             "[\"2042f828b5734719307bdef35cf6bcab7942c84930935086712361cb67339b5b\"], \"aws_keys\": "
             "[{\"access_key_id\": \"AKIAFUZZFUZZFUZZ0001\", "
             "\"secret_access_key\": \"hearthFuzzSecretKey/0123456789+abcdefghij\"}]}]}\n",
             g.dir, g.dir, g.dir, (int)getpid());
    snprintf(path, sizeof(path), "%s/hearthd.json", g.dir);
    write_file(path, text);

    /* main.c's start-up, minus the spawner. */
    hearth_t *hd = &g.hd;
    hd->config_path = strdup(path);
    hd->started_ns = now_ns();
    hearth_error_t err = {0};
    if (cfg_daemon_load(path, &hd->cfg, &err) < 0)
        die("config", err.msg);
    hearth_log_set_level(HEARTH_LOG_ERROR + 1); /* start failures are the expected end: no log */
    sbx_host_config_t hc = {
        .cgroup_root = hd->cfg->cgroup_root,
        .uid_base = hd->cfg->uid_base,
        .uid_count = hd->cfg->uid_count,
        .spawner = false, /* no sandbox can be made */
    };
    if (sbx_host_open(&hc, &hd->host, &err) < 0)
        die("sandbox host", err.msg);
    atexit(teardown);
    hd->base = event_base_new();
    if (hd->base == NULL)
        die("event_base_new", "failed");
    jnl_open_stats_t js = {0};
    reg_reload_stats_t st = {0};
    if (store_open(hd->cfg->state_dir, &hd->store, &err) < 0 || jnl_open(hd->cfg->state_dir, &hd->jnl, &js, &err) < 0 ||
        auth_new(hd->cfg, &hd->auth, &err) < 0 ||
        reg_open(hd->store, hd->cfg->functions_dir, &hd->reg, &st, &err) < 0 || hd_init(hd, &err) < 0 ||
        async_start(hd, &err) < 0 || api_start(hd, &err) < 0)
        die("start-up", err.msg);
    g.addr = (struct sockaddr_un){.sun_family = AF_UNIX};
    snprintf(g.addr.sun_path, sizeof(g.addr.sun_path), "%s", hd->cfg->listen_unix);
    return 0;
}

/* One client connection and what is left to send on it. */
typedef struct conn {
    int fd;
    const uint8_t *p;
    size_t left;
} conn_t;

#define MAX_CONNS 4
#define CONN_MARK "\n@@\n" /* separates the connections' bytes in an input */

static int conn_open(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        abort();
    if (connect(fd, (struct sockaddr *)&g.addr, sizeof(g.addr)) < 0) {
        /* The backlog is full only if the daemon stopped accepting. */
        fprintf(stderr, "fuzz_api: connect: %s\n", strerror(errno));
        abort();
    }
    return fd;
}

/* Write what each connection has left, run the loop, read what the daemon
 * answers (and drop it: it must never wait on a full socket), until
 * nothing more happens for a few rounds. */
static void pump(conn_t *c, size_t n)
{
    char buf[65536];
    for (int quiet = 0, rounds = 0; quiet < 4 && rounds < 2000; rounds++) {
        bool any = false;
        for (size_t i = 0; i < n; i++) {
            if (c[i].fd < 0 || c[i].left == 0)
                continue;
            ssize_t w = write(c[i].fd, c[i].p, c[i].left);
            if (w > 0) {
                c[i].p += w;
                c[i].left -= (size_t)w;
                any = true;
            } else if (w < 0 && errno != EAGAIN) {
                c[i].left = 0; /* the daemon closed it: the rest goes nowhere */
            }
        }
        event_base_loop(g.hd.base, EVLOOP_NONBLOCK);
        for (size_t i = 0; i < n; i++) {
            ssize_t r;
            while (c[i].fd >= 0 && (r = read(c[i].fd, buf, sizeof(buf))) > 0) {
                any = true;
                if (g.trace) /* FUZZ_TRACE=1: the answers, to check the seeds */
                    fprintf(stderr, "[%zu] %.*s", i, (int)r, buf);
            }
        }
        quiet = any ? 0 : quiet + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Up to MAX_CONNS connections, all opened and written before the loop
     * runs: their requests meet in the same loop iterations. */
    conn_t c[MAX_CONNS];
    size_t n = 0;
    const uint8_t *p = data, *end = data + size;
    while (n < MAX_CONNS) {
        const uint8_t *mark = n + 1 < MAX_CONNS ? memmem(p, (size_t)(end - p), CONN_MARK, 4) : NULL;
        c[n] = (conn_t){.fd = conn_open(), .p = p, .left = (size_t)((mark ? mark : end) - p)};
        n++;
        if (mark == NULL)
            break;
        p = mark + 4;
    }
    pump(c, n);
    for (size_t i = 0; i < n; i++) {
        close(c[i].fd);
        c[i].fd = -1;
    }
    pump(c, n);
    /* The daemon must still answer a well-behaved client. */
    static const char health[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int fd = conn_open();
    if (write(fd, health, sizeof(health) - 1) != (ssize_t)sizeof(health) - 1)
        abort();
    char buf[512];
    size_t got = 0;
    for (int rounds = 0; rounds < 2000 && got < sizeof(buf) - 1; rounds++) {
        event_base_loop(g.hd.base, EVLOOP_NONBLOCK);
        ssize_t r = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (r == 0)
            break;
        if (r > 0)
            got += (size_t)r;
    }
    buf[got] = '\0';
    if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0) {
        fprintf(stderr, "fuzz_api: /healthz answered `%.80s`\n", buf);
        abort();
    }
    close(fd);
    return 0;
}
