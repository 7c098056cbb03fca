/* `hearth` — the command-line client: `run` starts one sandbox on this host;
 * the other commands talk to hearthd over its Unix socket or HTTP. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/http.h>
#include <jansson.h>

#include "common/util.h"
#include "orchestrator/client.h"
#include "sandbox/sandbox.h"

enum { EXIT_OK = 0, EXIT_FUNCTION = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

#define DEFAULT_SOCKET "/run/hearth/hearth.sock"

static void usage_main(FILE *f)
{
    fprintf(f, "usage: hearth [--socket PATH | --url URL [--token TOKEN]] COMMAND [OPTIONS]\n"
               "\n"
               "commands:\n"
               "  deploy FILE     create or update a function from its JSON spec\n"
               "  ls              list functions\n"
               "  get NAME        print a function's spec, defaults filled in\n"
               "  rm NAME         delete a function\n"
               "  invoke NAME     call a function and print its output\n"
               "  usage [TENANT]  CPU time, invocations, errors and cold starts of a tenant\n"
               "  status          sandbox pools and queues of each function\n"
               "  run             run one command in a fresh sandbox (needs root; no daemon)\n"
               "\n"
               "where the daemon is (before or after COMMAND):\n"
               "  --socket PATH   its Unix socket (default $HEARTH_SOCKET, else " DEFAULT_SOCKET ");\n"
               "                  without a token the daemon knows you by your uid\n"
               "  --url URL       its HTTP listener, e.g. http://127.0.0.1:8080 (default $HEARTH_URL)\n"
               "  --token TOKEN   bearer token (default $HEARTH_TOKEN); required over HTTP\n"
               "  -h, --help      this text\n"
               "\n"
               "exit status: 0 ok; 1 the function or the request failed; 2 usage error;\n"
               "3 daemon unreachable or credentials refused.\n"
               "`hearth COMMAND --help` describes each command.\n");
}

static void usage_run(FILE *f)
{
    fprintf(f,
            "usage: hearth run [OPTIONS] -- CMD [ARG...]\n"
            "\n"
            "Run CMD in a fresh sandbox: its own user (root inside = an unprivileged host uid),\n"
            "pid, mount, network (only lo), uts, ipc and cgroup namespaces; the host's / (or\n"
            "--rootfs) read-only; fresh /proc, minimal /dev, tmpfs /tmp; every capability\n"
            "dropped; no_new_privs; seccomp. stdin, stdout and stderr are passed through.\n"
            "Exits with CMD's status, 128+N if signal N killed it, 137 if a limit killed it.\n"
            "\n"
            "options:\n"
            "  --memory SIZE       memory limit, no swap (default 128M; k, M, G suffixes)\n"
            "  --cpus N            CPU quota in cores (default 1.0)\n"
            "  --pids N            most processes at once (default 64)\n"
            "  --timeout SEC       time limit; everything is killed when it passes (default none)\n"
            "  --tmp SIZE          size of the tmpfs on /tmp (default 64M)\n"
            "  --rootfs DIR        root directory (default the host's /, read-only)\n"
            "  --bind SRC:DST[:ro] bind-mount host SRC on DST (which must exist); repeatable\n"
            "  --env K=V           set an environment variable; repeatable\n"
            "  --cwd DIR           working directory inside (default /)\n"
            "  --hostname NAME     host name inside (default hearth)\n"
            "  --seccomp FILE      an OCI/Docker seccomp JSON profile (default: hearth's own)\n"
            "  --cgroup-root PATH  cgroup subtree to work under (default hearth)\n"
            "  --stats             print CPU time and peak memory to stderr at the end\n"
            "  -h, --help          this text\n");
}

static volatile sig_atomic_t run_init_pid;
static volatile sig_atomic_t run_signal;

static void on_signal(int sig)
{
    run_signal = sig;
    if (run_init_pid > 0)
        kill((pid_t)run_init_pid, SIGKILL);
}

static int cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"memory", required_argument, NULL, 'm'}, {"cpus", required_argument, NULL, 'c'},
        {"pids", required_argument, NULL, 'p'},   {"timeout", required_argument, NULL, 't'},
        {"tmp", required_argument, NULL, 'T'},    {"rootfs", required_argument, NULL, 'r'},
        {"bind", required_argument, NULL, 'b'},   {"env", required_argument, NULL, 'e'},
        {"cwd", required_argument, NULL, 'w'},    {"hostname", required_argument, NULL, 'H'},
        {"seccomp", required_argument, NULL, 's'}, {"cgroup-root", required_argument, NULL, 'g'},
        {"stats", no_argument, NULL, 'S'},        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    sbx_spec_t spec = {0};
    sbx_mount_t mounts[64];
    size_t n_mounts = 0;
    const char *envv[256];
    size_t n_env = 0;
    const char *cwd = "/";
    const char *cg_root = "hearth";
    double timeout_s = 0;
    bool stats = false;

    envv[n_env++] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    envv[n_env++] = "HOME=/tmp";
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'm':
            if (parse_size(optarg, &spec.memory_bytes) < 0 || spec.memory_bytes < (4ULL << 20)) {
                fprintf(stderr, "hearth run: --memory `%s`: a size of at least 4M, e.g. 64M or 1G\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'T':
            if (parse_size(optarg, &spec.tmp_bytes) < 0 || spec.tmp_bytes < 4096) {
                fprintf(stderr, "hearth run: --tmp `%s`: a size of at least 4k, e.g. 16M\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'c':
            spec.cpus = strtod(optarg, &end);
            if (*end || spec.cpus < 0.01 || spec.cpus > 1024) {
                fprintf(stderr, "hearth run: --cpus `%s`: a number from 0.01 to 1024\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'p': {
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v < 1 || v > 1000000) {
                fprintf(stderr, "hearth run: --pids `%s`: a number from 1 to 1000000\n", optarg);
                return EXIT_USAGE;
            }
            spec.pids = (uint32_t)v;
            break;
        }
        case 't':
            timeout_s = strtod(optarg, &end);
            if (*end || timeout_s <= 0 || timeout_s > 86400 * 365) {
                fprintf(stderr, "hearth run: --timeout `%s`: seconds, more than 0\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'r':
            spec.rootfs = optarg;
            break;
        case 'b': {
            if (n_mounts == sizeof(mounts) / sizeof(mounts[0])) {
                fprintf(stderr, "hearth run: too many --bind\n");
                return EXIT_USAGE;
            }
            char *src = optarg, *dst = strchr(optarg, ':');
            if (dst == NULL || dst == src || dst[1] == '\0') {
                fprintf(stderr, "hearth run: --bind `%s`: SRC:DST[:ro]\n", optarg);
                return EXIT_USAGE;
            }
            *dst++ = '\0';
            char *ro = strchr(dst, ':');
            if (ro != NULL) {
                *ro++ = '\0';
                if (strcmp(ro, "ro") != 0 && strcmp(ro, "rw") != 0) {
                    fprintf(stderr, "hearth run: --bind: `%s` is neither ro nor rw\n", ro);
                    return EXIT_USAGE;
                }
            }
            mounts[n_mounts++] = (sbx_mount_t){src, dst, ro != NULL && strcmp(ro, "ro") == 0};
            break;
        }
        case 'e':
            if (strchr(optarg, '=') == NULL || optarg[0] == '=') {
                fprintf(stderr, "hearth run: --env `%s`: K=V\n", optarg);
                return EXIT_USAGE;
            }
            if (n_env == sizeof(envv) / sizeof(envv[0]) - 1) {
                fprintf(stderr, "hearth run: too many --env\n");
                return EXIT_USAGE;
            }
            envv[n_env++] = optarg;
            break;
        case 'w':
            cwd = optarg;
            break;
        case 'H':
            spec.hostname = optarg;
            break;
        case 's':
            spec.seccomp = optarg;
            break;
        case 'g':
            cg_root = optarg;
            break;
        case 'S':
            stats = true;
            break;
        case 'h':
            usage_run(stdout);
            return EXIT_OK;
        default:
            usage_run(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "hearth run: no command given\n");
        usage_run(stderr);
        return EXIT_USAGE;
    }
    envv[n_env] = NULL;
    spec.mounts = mounts;
    spec.n_mounts = n_mounts;

    /* A shared root: concurrent runs and a daemon on the same root never
     * touch each other's cgroups. */
    sbx_host_config_t hc = {.cgroup_root = cg_root, .uid_base = 100000, .uid_count = 65536, .shared_root = true,
                             .seccomp_cache = "/run/hearth/seccomp"};
    hearth_error_t err = {0};
    sbx_host_t *host = NULL;
    if (sbx_host_open(&hc, &host, &err) < 0) {
        fprintf(stderr, "hearth run: %s\n", err.msg);
        return 125;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    int rc = 125;
    sbx_t *sb = NULL;
    sbx_exec_t ex = {
        .argv = (const char *const *)&argv[optind],
        .envp = envv,
        .cwd = cwd,
        .stdin_fd = 0,
        .stdout_fd = 1,
        .stderr_fd = 2,
    };
    /* Create and start in one go: the request reaches init while the
     * sandbox is still being set up. */
    int started = sbx_create_exec(host, &spec, &ex, &sb, NULL, &err);
    if (sb != NULL) {
        run_init_pid = sbx_init_pid(sb);
        /* A signal that came while we were not yet able to kill. */
        if (run_signal)
            kill(sbx_init_pid(sb), SIGKILL);
    }
    if (started < 0) {
        fprintf(stderr, "hearth run: %s\n", err.msg);
        if (sb != NULL)
            rc = err.code == ENOENT ? 127 : 126;
        goto out;
    }
    sbx_end_t end;
    uint64_t timeout_ms = (uint64_t)(timeout_s * 1000.0 + 0.5);
    if (sbx_wait(sb, timeout_ms, &end, &err) < 0) {
        fprintf(stderr, "hearth run: %s\n", err.msg);
        goto out;
    }
    if (run_signal) {
        rc = 128 + run_signal;
        goto out;
    }
    char why[128];
    sbx_end_describe(&end, &spec, timeout_ms, why, sizeof(why));
    switch (end.kind) {
    case SBX_END_EXIT:
        rc = end.status;
        break;
    case SBX_END_SIGNAL:
        rc = 128 + end.status;
        break;
    case SBX_END_PIDS:
        fprintf(stderr, "hearth: %s\n", why);
        rc = 137;
        break;
    default:
        fprintf(stderr, "hearth: %s\n", why);
        rc = 137;
        break;
    }
    if (stats) {
        /* Kill leftovers first: CPU usage is exact only once nothing runs. */
        sbx_usage_t u;
        if (sbx_kill(sb, &err) == 0 && sbx_usage(sb, &u, &err) == 0)
            fprintf(stderr, "hearth: cpu %.3f ms, peak memory %.1f MiB\n", (double)u.cpu_ns / 1e6,
                    (double)u.memory_peak / (1024.0 * 1024.0));
        else
            fprintf(stderr, "hearth: no stats: %s\n", err.msg);
    }
out:
    sbx_destroy(sb);
    sbx_host_close(host);
    return rc;
}

/* ---- daemon commands ------------------------------------------------------------------ */

#define MAX_SPEC_BYTES ((size_t)1 << 20)    /* the daemon takes 256 KiB; room for a clear answer */
#define MAX_PAYLOAD_BYTES ((size_t)1 << 30) /* the daemon's highest max_body_bytes */

/* Long-only options: values past any character. */
enum { OPT_SOCKET = 256, OPT_URL, OPT_TOKEN, OPT_TENANT, OPT_ASYNC };

#define GLOBAL_OPTIONS                                                                                     \
    {"socket", required_argument, NULL, OPT_SOCKET}, {"url", required_argument, NULL, OPT_URL},            \
        {"token", required_argument, NULL, OPT_TOKEN}, {"help", no_argument, NULL, 'h'}

#define GLOBAL_HELP                                                                                        \
    "  --socket PATH | --url URL [--token TOKEN]   where the daemon is (see `hearth --help`)\n"         \
    "  -h, --help          this text\n"

/* What every daemon command shares. */
typedef struct cli {
    const char *cmd;        /* "ls", for messages */
    const char *socket_arg; /* --socket as given */
    const char *url_arg;    /* --url as given */
    const char *token_arg;  /* --token as given */
    client_opts_t conn;     /* resolved by cli_connect() */
} cli_t;

/* A global option, wherever it appears. */
static void global_opt(cli_t *c, int opt, const char *arg)
{
    if (opt == OPT_SOCKET)
        c->socket_arg = arg;
    else if (opt == OPT_URL)
        c->url_arg = arg;
    else if (opt == OPT_TOKEN)
        c->token_arg = arg;
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* Options first, then the environment: --socket beats $HEARTH_URL. */
static int cli_connect(cli_t *c)
{
    if (c->socket_arg != NULL && c->url_arg != NULL) {
        fprintf(stderr, "hearth %s: --socket and --url are exclusive\n", c->cmd);
        return -1;
    }
    if (c->url_arg != NULL)
        c->conn.url = c->url_arg;
    else if (c->socket_arg == NULL)
        c->conn.url = env("HEARTH_URL");
    c->conn.socket_path = c->socket_arg ? c->socket_arg : env("HEARTH_SOCKET") ? env("HEARTH_SOCKET") : DEFAULT_SOCKET;
    c->conn.token = c->token_arg ? c->token_arg : env("HEARTH_TOKEN");
    if (c->conn.url != NULL && strncasecmp(c->conn.url, "http://", 7) != 0) {
        fprintf(stderr, "hearth %s: --url `%s`: an http:// URL, e.g. http://127.0.0.1:8080\n", c->cmd, c->conn.url);
        return -1;
    }
    return 0;
}

/* One request. On a transport failure the message is printed and the exit
 * code returned; otherwise EXIT_OK with resp to be freed by the caller. */
static int call(cli_t *c, const char *method, const char *path, const client_header_t *h, size_t nh,
                const void *body, size_t len, client_response_t *resp)
{
    hearth_error_t err = {0};
    if (client_request(&c->conn, method, path, h, nh, body, len, resp, &err) == 0)
        return EXIT_OK;
    fprintf(stderr, "hearth: %s\n", err.msg);
    switch (err.code) {
    case EINVAL:
        return EXIT_USAGE;
    case EFBIG:  /* over our response cap */
    case EPROTO: /* an answer, but not HTTP we can read */
    case ENOMEM:
    case EIO:
        return EXIT_FUNCTION;
    default: /* could not connect, timed out, connection broken */
        return EXIT_UNREACHABLE;
    }
}

static bool is_success(const client_response_t *r)
{
    return r->status >= 200 && r->status < 300;
}

/* A daemon error: `hearth: MESSAGE (HTTP STATUS)`. 401/403 exit 3, the rest 1. */
static int http_failure(const client_response_t *r)
{
    json_t *j = r->body_len ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
    const char *msg = j ? json_string_value(json_object_get(j, "message")) : NULL;
    if (msg == NULL && j != NULL)
        msg = json_string_value(json_object_get(j, "error"));
    char text[512];
    if (msg == NULL) {
        /* Not our JSON (a proxy's page?): its first line, else nothing. */
        size_t n = r->body ? strcspn(r->body, "\r\n") : 0;
        if (n > 0)
            snprintf(text, sizeof(text), "%.*s", (int)(n < 300 ? n : 300), r->body);
        else
            snprintf(text, sizeof(text), "request failed");
        msg = text;
    }
    const char *retry = client_header(r, "Retry-After");
    if (retry != NULL)
        fprintf(stderr, "hearth: %s (HTTP %d; retry after %s s)\n", msg, r->status, retry);
    else
        fprintf(stderr, "hearth: %s (HTTP %d)\n", msg, r->status);
    /* A failed function's own words, when the daemon sends them apart. */
    static const char *const extra[] = {"stderr", "log", "logs"};
    for (size_t i = 0; j != NULL && i < sizeof(extra) / sizeof(extra[0]); i++) {
        const char *s = json_string_value(json_object_get(j, extra[i]));
        if (s != NULL && s[0] != '\0')
            fprintf(stderr, "%s:\n%s%s", extra[i], s, s[strlen(s) - 1] == '\n' ? "" : "\n");
    }
    json_decref(j);
    return r->status == 401 || r->status == 403 ? EXIT_UNREACHABLE : EXIT_FUNCTION;
}

/* "/v1/functions/NAME/SUFFIX", or under /v1/tenants/T/ for an admin; the
 * names percent-encoded, so a slash in one cannot reach another route. */
static char *function_path(const char *tenant, const char *name, const char *suffix)
{
    cleanup_free char *t = tenant ? evhttp_uriencode(tenant, -1, 0) : NULL;
    cleanup_free char *n = name ? evhttp_uriencode(name, -1, 0) : NULL;
    char *p = NULL;
    if ((tenant && !t) || (name && !n))
        return NULL;
    if (asprintf(&p, "%s%s%s/functions%s%s%s", tenant ? "/v1/tenants/" : "/v1", t ? t : "", "", n ? "/" : "",
                 n ? n : "", suffix ? suffix : "") < 0)
        return NULL;
    return p;
}

/* Read a whole file ("-": stdin) of at most cap bytes, NUL-terminated. On
 * failure prints why (naming what) and returns -1. */
static int read_input(const char *cmd, const char *path, size_t cap, char **out, size_t *len)
{
    cleanup_close int own = -1;
    int fd = 0;
    if (strcmp(path, "-") != 0) {
        own = open(path, O_RDONLY | O_CLOEXEC);
        if (own < 0) {
            fprintf(stderr, "hearth %s: cannot open %s: %s\n", cmd, path, strerror(errno));
            return -1;
        }
        struct stat st;
        if (fstat(own, &st) == 0 && S_ISDIR(st.st_mode)) {
            fprintf(stderr, "hearth %s: %s is a directory\n", cmd, path);
            return -1;
        }
        fd = own;
    }
    size_t size = 0, alloc = 0;
    cleanup_free char *buf = NULL;
    for (;;) {
        if (alloc - size < 65536) {
            alloc = alloc ? alloc * 2 : 65536;
            if (alloc > cap + 1)
                alloc = cap + 1;
            char *nb = realloc(buf, alloc + 1);
            if (nb == NULL) {
                fprintf(stderr, "hearth %s: out of memory reading %s\n", cmd, path);
                return -1;
            }
            buf = nb;
        }
        if (size == alloc) {
            fprintf(stderr, "hearth %s: %s is larger than %zu bytes\n", cmd, strcmp(path, "-") ? path : "stdin", cap);
            return -1;
        }
        ssize_t n = read(fd, buf + size, alloc - size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "hearth %s: reading %s: %s\n", cmd, strcmp(path, "-") ? path : "stdin", strerror(errno));
            return -1;
        }
        if (n == 0)
            break;
        size += (size_t)n;
    }
    buf[size] = '\0';
    *len = size;
    *out = steal_pointer(&buf);
    return 0;
}

/* A bad option or argument: the command's usage on stderr, exit 2. */
static int usage_error(void (*usage)(FILE *), const char *cmd, const char *why)
{
    if (why)
        fprintf(stderr, "hearth %s: %s\n", cmd, why);
    usage(stderr);
    return EXIT_USAGE;
}

/* Parse a command's options: the global ones, -h, and those in extra
 * (handled by on_opt, which returns <0 for a usage error). Positional
 * arguments land in pos (at most max_pos; between min_pos and max_pos
 * required). Returns -1 to go on, or the exit code. */
typedef int (*opt_fn)(void *ctx, int opt, const char *arg);
static int parse_cmd(cli_t *c, int argc, char **argv, const char *shortopts, const struct option *extra,
                     size_t n_extra, opt_fn on_opt, void *ctx, void (*usage)(FILE *), const char **pos,
                     int min_pos, int max_pos, int *n_pos)
{
    struct option opts[16] = {GLOBAL_OPTIONS};
    size_t n = 4;
    for (size_t i = 0; i < n_extra && n < 15; i++)
        opts[n++] = extra[i];
    opts[n] = (struct option){NULL, 0, NULL, 0};
    char so[32];
    snprintf(so, sizeof(so), "h%s", shortopts);
    optind = 0; /* a full reset: options may follow arguments (`invoke NAME -d x`) */
    int o;
    while ((o = getopt_long(argc, argv, so, opts, NULL)) != -1) {
        if (o == 'h') {
            usage(stdout);
            return EXIT_OK;
        }
        if (o == OPT_SOCKET || o == OPT_URL || o == OPT_TOKEN) {
            global_opt(c, o, optarg);
            continue;
        }
        if (o == '?' || o == ':' || on_opt == NULL || on_opt(ctx, o, optarg) < 0)
            return usage_error(usage, c->cmd, NULL);
    }
    int np = argc - optind;
    if (np < min_pos)
        return usage_error(usage, c->cmd, "missing argument");
    if (np > max_pos)
        return usage_error(usage, c->cmd, "too many arguments");
    for (int i = 0; i < np; i++) {
        if (argv[optind + i][0] == '\0')
            return usage_error(usage, c->cmd, "empty argument");
        pos[i] = argv[optind + i];
    }
    *n_pos = np;
    if (cli_connect(c) < 0)
        return EXIT_USAGE;
    return -1;
}

static int tenant_opt(void *ctx, int opt, const char *arg)
{
    if (opt != OPT_TENANT || arg[0] == '\0')
        return -1;
    *(const char **)ctx = arg;
    return 0;
}

static const struct option tenant_option = {"tenant", required_argument, NULL, OPT_TENANT};

/* Small aligned tables: rows of strings, column widths from the data. */
typedef struct table {
    size_t ncols;
    size_t nrows;
    char **cells; /* nrows * ncols, owned */
} table_t;

static void table_row(table_t *t, const char *const *cells)
{
    char **nc = realloc(t->cells, (t->nrows + 1) * t->ncols * sizeof(char *));
    if (nc == NULL)
        return;
    t->cells = nc;
    for (size_t i = 0; i < t->ncols; i++)
        t->cells[t->nrows * t->ncols + i] = strdup(cells[i] ? cells[i] : "-");
    t->nrows++;
}

static void table_print_free(table_t *t)
{
    size_t w[32] = {0};
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t i = 0; i < t->ncols && i < 32; i++) {
            const char *s = t->cells[r * t->ncols + i];
            size_t l = s ? strlen(s) : 1;
            if (l > w[i])
                w[i] = l;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t i = 0; i < t->ncols; i++) {
            const char *s = t->cells[r * t->ncols + i];
            if (i + 1 < t->ncols)
                printf("%-*s  ", (int)w[i], s ? s : "-");
            else
                printf("%s\n", s ? s : "-");
        }
    }
    for (size_t k = 0; k < t->nrows * t->ncols; k++)
        free(t->cells[k]);
    free(t->cells);
    t->cells = NULL;
    t->nrows = 0;
}

/* A JSON value as table text: strings as they are, integers exactly, reals
 * with one decimal, booleans yes/no, anything else "-". */
static const char *jtext(json_t *o, const char *key, char *buf, size_t n)
{
    json_t *v = json_object_get(o, key);
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v))
        snprintf(buf, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, n, "%.1f", json_real_value(v));
    else if (json_is_boolean(v))
        snprintf(buf, n, "%s", json_is_true(v) ? "yes" : "no");
    else
        snprintf(buf, n, "-");
    return buf;
}

/* The body as JSON, or a message and NULL. */
static json_t *body_json(const client_response_t *r, const char *what)
{
    json_error_t je;
    json_t *j = json_loadb(r->body, r->body_len, 0, &je);
    if (j == NULL)
        fprintf(stderr, "hearth: the daemon's answer to %s is not JSON: %s\n", what, je.text);
    return j;
}

/* -- deploy ----------------------------------------------------------------------------- */

static void usage_deploy(FILE *f)
{
    fprintf(f, "usage: hearth deploy [--tenant TENANT] FILE\n"
               "\n"
               "Create or update the function that FILE (a JSON spec; - for stdin) describes; its\n"
               "name is the spec's \"name\". Prints `created NAME (version N)` or `updated NAME\n"
               "(version N)`. configs/README.md lists the keys.\n"
               "\n"
               "options:\n"
               "  --tenant TENANT     deploy for TENANT (admin only)\n" GLOBAL_HELP);
}

static int cmd_deploy(cli_t *c, int argc, char **argv)
{
    const char *tenant = NULL, *pos[1];
    int np, rc = parse_cmd(c, argc, argv, "", &tenant_option, 1, tenant_opt, &tenant, usage_deploy, pos, 1, 1, &np);
    if (rc >= 0)
        return rc;
    cleanup_free char *spec = NULL;
    size_t len;
    if (read_input("deploy", pos[0], MAX_SPEC_BYTES, &spec, &len) < 0)
        return EXIT_USAGE;
    json_error_t je;
    json_t *j = json_loadb(spec, len, 0, &je);
    if (j == NULL) {
        fprintf(stderr, "hearth deploy: %s: not JSON: line %d: %s\n", pos[0], je.line, je.text);
        return EXIT_USAGE;
    }
    const char *name = json_string_value(json_object_get(j, "name"));
    if (!json_is_object(j) || name == NULL || name[0] == '\0') {
        fprintf(stderr, "hearth deploy: %s: a function spec needs a \"name\" string\n", pos[0]);
        json_decref(j);
        return EXIT_USAGE;
    }
    cleanup_free char *fname = strdup(name);
    json_decref(j);
    cleanup_free char *path = function_path(tenant, fname, NULL);
    if (fname == NULL || path == NULL)
        return EXIT_FUNCTION;
    /* The file as written, not re-encoded: the daemon's messages then point at what the user wrote. */
    client_header_t ct = {"Content-Type", "application/json"};
    client_response_t r;
    rc = call(c, "PUT", path, &ct, 1, spec, len, &r);
    if (rc != EXIT_OK)
        return rc;
    if (!is_success(&r)) {
        rc = http_failure(&r);
    } else {
        json_t *b = r.body_len ? json_loadb(r.body, r.body_len, 0, NULL) : NULL;
        json_t *v = json_object_get(b, "version");
        const char *verb = r.status == 201 ? "created" : "updated";
        if (json_is_integer(v))
            printf("%s %s (version %" JSON_INTEGER_FORMAT ")\n", verb, fname, json_integer_value(v));
        else
            printf("%s %s\n", verb, fname);
        json_decref(b);
    }
    client_response_free(&r);
    return rc;
}

/* -- ls --------------------------------------------------------------------------------- */

static void usage_ls(FILE *f)
{
    fprintf(f, "usage: hearth ls [--tenant TENANT]\n"
               "\n"
               "List your functions (an admin: every tenant's) as a table:\n"
               "NAME TENANT PROTOCOL VERSION MEMORY TIMEOUT.\n"
               "\n"
               "options:\n"
               "  --tenant TENANT     TENANT's functions (admin only)\n" GLOBAL_HELP);
}

static int cmd_ls(cli_t *c, int argc, char **argv)
{
    const char *tenant = NULL, *pos[1];
    int np, rc = parse_cmd(c, argc, argv, "", &tenant_option, 1, tenant_opt, &tenant, usage_ls, pos, 0, 0, &np);
    if (rc >= 0)
        return rc;
    cleanup_free char *path = function_path(tenant, NULL, NULL);
    client_response_t r;
    if (path == NULL)
        return EXIT_FUNCTION;
    rc = call(c, "GET", path, NULL, 0, NULL, 0, &r);
    if (rc != EXIT_OK)
        return rc;
    if (!is_success(&r)) {
        rc = http_failure(&r);
        client_response_free(&r);
        return rc;
    }
    json_t *j = body_json(&r, "ls");
    client_response_free(&r);
    json_t *fns = json_object_get(j, "functions");
    if (!json_is_array(fns)) {
        if (j != NULL)
            fprintf(stderr, "hearth: the daemon's answer to ls has no \"functions\" list\n");
        json_decref(j);
        return EXIT_FUNCTION;
    }
    table_t t = {.ncols = 6};
    table_row(&t, (const char *const[]){"NAME", "TENANT", "PROTOCOL", "VERSION", "MEMORY", "TIMEOUT"});
    size_t i;
    json_t *fn;
    json_array_foreach(fns, i, fn) {
        char ver[32], mem[32], tmo[32];
        json_t *m = json_object_get(fn, "memory_mb"), *to = json_object_get(fn, "timeout_ms");
        snprintf(mem, sizeof(mem), json_is_integer(m) ? "%" JSON_INTEGER_FORMAT "M" : "-", json_integer_value(m));
        json_int_t ms = json_integer_value(to);
        if (!json_is_integer(to))
            snprintf(tmo, sizeof(tmo), "-");
        else if (ms % 1000 == 0)
            snprintf(tmo, sizeof(tmo), "%" JSON_INTEGER_FORMAT "s", ms / 1000);
        else
            snprintf(tmo, sizeof(tmo), "%" JSON_INTEGER_FORMAT "ms", ms);
        char b1[32], b2[32], b3[32];
        table_row(&t, (const char *const[]){jtext(fn, "name", b1, sizeof(b1)), jtext(fn, "tenant", b2, sizeof(b2)),
                                            jtext(fn, "protocol", b3, sizeof(b3)),
                                            jtext(fn, "version", ver, sizeof(ver)), mem, tmo});
    }
    table_print_free(&t);
    json_decref(j);
    return EXIT_OK;
}

/* -- get -------------------------------------------------------------------------------- */

static void usage_get(FILE *f)
{
    fprintf(f, "usage: hearth get [--tenant TENANT] NAME\n"
               "\n"
               "Print function NAME's spec as JSON, every default filled in.\n"
               "\n"
               "options:\n"
               "  --tenant TENANT     TENANT's function (admin only)\n" GLOBAL_HELP);
}

static int cmd_get(cli_t *c, int argc, char **argv)
{
    const char *tenant = NULL, *pos[1];
    int np, rc = parse_cmd(c, argc, argv, "", &tenant_option, 1, tenant_opt, &tenant, usage_get, pos, 1, 1, &np);
    if (rc >= 0)
        return rc;
    cleanup_free char *path = function_path(tenant, pos[0], NULL);
    client_response_t r;
    if (path == NULL)
        return EXIT_FUNCTION;
    rc = call(c, "GET", path, NULL, 0, NULL, 0, &r);
    if (rc != EXIT_OK)
        return rc;
    if (!is_success(&r)) {
        rc = http_failure(&r);
    } else {
        json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
        cleanup_free char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        if (s != NULL)
            printf("%s\n", s);
        else /* not JSON after all: as it came */
            fwrite(r.body, 1, r.body_len, stdout);
        json_decref(j);
    }
    client_response_free(&r);
    return rc;
}

/* -- rm --------------------------------------------------------------------------------- */

static void usage_rm(FILE *f)
{
    fprintf(f, "usage: hearth rm [--tenant TENANT] NAME\n"
               "\n"
               "Delete function NAME; its sandboxes drain and go.\n"
               "\n"
               "options:\n"
               "  --tenant TENANT     TENANT's function (admin only)\n" GLOBAL_HELP);
}

static int cmd_rm(cli_t *c, int argc, char **argv)
{
    const char *tenant = NULL, *pos[1];
    int np, rc = parse_cmd(c, argc, argv, "", &tenant_option, 1, tenant_opt, &tenant, usage_rm, pos, 1, 1, &np);
    if (rc >= 0)
        return rc;
    cleanup_free char *path = function_path(tenant, pos[0], NULL);
    client_response_t r;
    if (path == NULL)
        return EXIT_FUNCTION;
    rc = call(c, "DELETE", path, NULL, 0, NULL, 0, &r);
    if (rc != EXIT_OK)
        return rc;
    if (!is_success(&r))
        rc = http_failure(&r);
    else
        printf("removed %s\n", pos[0]);
    client_response_free(&r);
    return rc;
}

/* -- invoke ----------------------------------------------------------------------------- */

static void usage_invoke(FILE *f)
{
    fprintf(f, "usage: hearth invoke [OPTIONS] NAME\n"
               "\n"
               "Call function NAME with a payload and write its output, as it is, to stdout.\n"
               "Exits 1 when the function fails (HTTP 502), times out (504) or is refused.\n"
               "\n"
               "options:\n"
               "  -d, --data DATA     the payload: DATA itself, @FILE for a file's contents, - for\n"
               "                      stdin (default: empty)\n"
               "  --async             queue the call and print its invocation id (HTTP 202)\n"
               "  -v, --verbose       print the invocation id, start kind (cold, prewarm, warm),\n"
               "                      duration and CPU time to stderr\n"
               "  --tenant TENANT     TENANT's function (admin only)\n" GLOBAL_HELP);
}

typedef struct invoke_args {
    const char *tenant;
    const char *data; /* -d as given */
    bool async;
    bool verbose;
} invoke_args_t;

static int invoke_opt(void *ctx, int opt, const char *arg)
{
    invoke_args_t *a = ctx;
    switch (opt) {
    case OPT_TENANT:
        return tenant_opt(&a->tenant, opt, arg);
    case 'd':
        if (a->data != NULL) {
            fprintf(stderr, "hearth invoke: -d given twice\n");
            return -1;
        }
        a->data = arg;
        return 0;
    case OPT_ASYNC:
        a->async = true;
        return 0;
    case 'v':
        a->verbose = true;
        return 0;
    }
    return -1;
}

static int cmd_invoke(cli_t *c, int argc, char **argv)
{
    static const struct option extra[] = {
        {"tenant", required_argument, NULL, OPT_TENANT},
        {"data", required_argument, NULL, 'd'},
        {"async", no_argument, NULL, OPT_ASYNC},
        {"verbose", no_argument, NULL, 'v'},
    };
    invoke_args_t a = {0};
    const char *pos[1];
    int np, rc = parse_cmd(c, argc, argv, "d:v", extra, 4, invoke_opt, &a, usage_invoke, pos, 1, 1, &np);
    if (rc >= 0)
        return rc;
    cleanup_free char *payload = NULL;
    size_t len = 0;
    if (a.data != NULL && a.data[0] == '@') {
        if (a.data[1] == '\0')
            return usage_error(usage_invoke, "invoke", "-d @FILE: no file named");
        if (read_input("invoke", a.data + 1, MAX_PAYLOAD_BYTES, &payload, &len) < 0)
            return EXIT_USAGE;
    } else if (a.data != NULL && strcmp(a.data, "-") == 0) {
        if (read_input("invoke", "-", MAX_PAYLOAD_BYTES, &payload, &len) < 0)
            return EXIT_USAGE;
    } else if (a.data != NULL) {
        payload = strdup(a.data);
        len = strlen(a.data);
    }
    cleanup_free char *path = function_path(a.tenant, pos[0], "/invocations");
    if (path == NULL || (a.data != NULL && payload == NULL))
        return EXIT_FUNCTION;
    client_header_t h[2] = {{"Content-Type", "application/octet-stream"}, {"Prefer", "respond-async"}};
    client_response_t r;
    rc = call(c, "POST", path, h, a.async ? 2 : 1, payload, len, &r);
    if (rc != EXIT_OK)
        return rc;
    if (a.verbose) {
        static const char *const names[] = {"X-Hearth-Invocation-Id", "X-Hearth-Start", "X-Hearth-Duration-Ms",
                                            "X-Hearth-Cpu-Ms"};
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            const char *v = client_header(&r, names[i]);
            if (v != NULL)
                fprintf(stderr, "%s: %s\n", names[i], v);
        }
        fprintf(stderr, "HTTP %d, %zu bytes\n", r.status, r.body_len);
    }
    if (!is_success(&r)) {
        rc = http_failure(&r);
    } else if (a.async && r.status == 202) {
        json_t *j = r.body_len ? json_loadb(r.body, r.body_len, 0, NULL) : NULL;
        const char *id = json_string_value(json_object_get(j, "invocation_id"));
        if (id == NULL)
            id = json_string_value(json_object_get(j, "id"));
        if (id == NULL)
            id = client_header(&r, "X-Hearth-Invocation-Id");
        if (id != NULL)
            printf("%s\n", id);
        else
            fwrite(r.body, 1, r.body_len, stdout);
        json_decref(j);
    } else if (r.body_len > 0 && fwrite(r.body, 1, r.body_len, stdout) != r.body_len) {
        fprintf(stderr, "hearth invoke: writing the output: %s\n", strerror(errno));
        rc = EXIT_FUNCTION;
    }
    client_response_free(&r);
    if (fflush(stdout) != 0 && rc == EXIT_OK) {
        fprintf(stderr, "hearth invoke: writing the output: %s\n", strerror(errno));
        rc = EXIT_FUNCTION;
    }
    return rc;
}

/* -- usage ------------------------------------------------------------------------------ */

static void usage_usage(FILE *f)
{
    fprintf(f, "usage: hearth usage [TENANT]\n"
               "\n"
               "What a tenant has used: invocations, errors, cold starts, CPU milliseconds and\n"
               "memory (MB x ms). Without TENANT: your own (an admin: every tenant's).\n"
               "\n"
               "options:\n" GLOBAL_HELP);
}

static void usage_row(table_t *t, json_t *u, const char *tenant)
{
    char b[6][48];
    const char *name = json_string_value(json_object_get(u, "tenant"));
    table_row(t, (const char *const[]){name ? name : tenant, jtext(u, "invocations", b[1], sizeof(b[1])),
                                       jtext(u, "errors", b[2], sizeof(b[2])),
                                       jtext(u, "cold_starts", b[3], sizeof(b[3])),
                                       jtext(u, "cpu_ms", b[4], sizeof(b[4])),
                                       jtext(u, "memory_mb_ms", b[5], sizeof(b[5]))});
}

static int cmd_usage(cli_t *c, int argc, char **argv)
{
    const char *pos[1] = {NULL};
    int np, rc = parse_cmd(c, argc, argv, "", NULL, 0, NULL, NULL, usage_usage, pos, 0, 1, &np);
    if (rc >= 0)
        return rc;
    cleanup_free char *t = np ? evhttp_uriencode(pos[0], -1, 0) : NULL;
    cleanup_free char *path = NULL;
    if ((np && t == NULL) || asprintf(&path, "%s%s%s", np ? "/v1/tenants/" : "/v1/usage", np ? t : "",
                                      np ? "/usage" : "") < 0) {
        path = NULL;
        return EXIT_FUNCTION;
    }
    client_response_t r;
    rc = call(c, "GET", path, NULL, 0, NULL, 0, &r);
    if (rc != EXIT_OK)
        return rc;
    if (!is_success(&r)) {
        rc = http_failure(&r);
        client_response_free(&r);
        return rc;
    }
    json_t *j = body_json(&r, "usage");
    client_response_free(&r);
    if (!json_is_object(j)) {
        json_decref(j);
        return EXIT_FUNCTION;
    }
    table_t tab = {.ncols = 6};
    table_row(&tab, (const char *const[]){"TENANT", "INVOCATIONS", "ERRORS", "COLD_STARTS", "CPU_MS", "MEMORY_MB_MS"});
    json_t *all = json_object_get(j, "tenants");
    if (json_is_array(all)) {
        size_t i;
        json_t *u;
        json_array_foreach(all, i, u) usage_row(&tab, u, "-");
    } else {
        usage_row(&tab, j, np ? pos[0] : "-");
    }
    table_print_free(&tab);
    json_decref(j);
    return EXIT_OK;
}

/* -- status ----------------------------------------------------------------------------- */

static void usage_status(FILE *f)
{
    fprintf(f, "usage: hearth status\n"
               "\n"
               "The host's sandboxes, then one line per function: its sandboxes by state\n"
               "(creating, idle, busy, draining), calls queued and in flight, the pool size the\n"
               "scaler wants, whether it is in panic mode, and why.\n"
               "\n"
               "options:\n" GLOBAL_HELP);
}

static int cmd_status(cli_t *c, int argc, char **argv)
{
    const char *pos[1];
    int np, rc = parse_cmd(c, argc, argv, "", NULL, 0, NULL, NULL, usage_status, pos, 0, 0, &np);
    if (rc >= 0)
        return rc;
    client_response_t r;
    rc = call(c, "GET", "/v1/status", NULL, 0, NULL, 0, &r);
    if (rc != EXIT_OK)
        return rc;
    if (!is_success(&r)) {
        rc = http_failure(&r);
        client_response_free(&r);
        return rc;
    }
    json_t *j = body_json(&r, "status");
    client_response_free(&r);
    if (!json_is_object(j)) {
        json_decref(j);
        return EXIT_FUNCTION;
    }
    json_t *host = json_object_get(j, "host");
    if (json_is_object(host)) {
        /* Whatever scalars the daemon reports, in its order. */
        const char *k;
        json_t *v;
        printf("host:");
        json_object_foreach(host, k, v) {
            char b[64];
            if (!json_is_object(v) && !json_is_array(v))
                printf(" %s=%s", k, jtext(host, k, b, sizeof(b)));
        }
        printf("\n\n");
    }
    table_t t = {.ncols = 12};
    table_row(&t, (const char *const[]){"TENANT", "FUNCTION", "VERSION", "CREATING", "IDLE", "BUSY", "DRAINING",
                                        "QUEUED", "IN_FLIGHT", "DESIRED", "PANIC", "REASON"});
    json_t *fns = json_object_get(j, "functions");
    size_t i;
    json_t *fn;
    json_array_foreach(fns, i, fn) {
        char b[12][48];
        json_t *s = json_object_get(fn, "sandboxes");
        table_row(&t, (const char *const[]){
                          jtext(fn, "tenant", b[0], 48), jtext(fn, "name", b[1], 48), jtext(fn, "version", b[2], 48),
                          jtext(s, "creating", b[3], 48), jtext(s, "idle", b[4], 48), jtext(s, "busy", b[5], 48),
                          jtext(s, "draining", b[6], 48), jtext(fn, "queued", b[7], 48),
                          jtext(fn, "in_flight", b[8], 48), jtext(fn, "desired", b[9], 48),
                          jtext(fn, "panic", b[10], 48), jtext(fn, "reason", b[11], 48)});
    }
    table_print_free(&t);
    json_decref(j);
    return EXIT_OK;
}

/* ---- main ----------------------------------------------------------------------------- */

static const struct {
    const char *name;
    int (*fn)(cli_t *c, int argc, char **argv);
} commands[] = {
    {"deploy", cmd_deploy}, {"ls", cmd_ls},       {"get", cmd_get},       {"rm", cmd_rm},
    {"invoke", cmd_invoke}, {"usage", cmd_usage}, {"status", cmd_status},
};

int main(int argc, char **argv)
{
    static const struct option opts[] = {GLOBAL_OPTIONS, {NULL, 0, NULL, 0}};
    cli_t c = {0};
    int o;
    /* "+": stop at the command; its options are its own. */
    while ((o = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        if (o == 'h') {
            usage_main(stdout);
            return EXIT_OK;
        }
        if (o != OPT_SOCKET && o != OPT_URL && o != OPT_TOKEN) {
            usage_main(stderr);
            return EXIT_USAGE;
        }
        global_opt(&c, o, optarg);
    }
    if (optind >= argc) {
        usage_main(stderr);
        return EXIT_USAGE;
    }
    argc -= optind;
    argv += optind;
    c.cmd = argv[0];
    if (strcmp(argv[0], "help") == 0) {
        usage_main(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[0], "run") == 0)
        return cmd_run(argc, argv);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[0], commands[i].name) == 0)
            return commands[i].fn(&c, argc, argv);
    fprintf(stderr, "hearth: unknown command `%s`\n", argv[0]);
    usage_main(stderr);
    return EXIT_USAGE;
}
