/* libFuzzer entry point: bytes → the Lambda Runtime API that hearthd serves
 * to a `lambda` function's runtime (orchestrator/protocol_lambda.c), over
 * real connections to its real evhttp server.
 *
 * protocol_lambda.c is included here so that its statics are reachable;
 * what it calls outside (the sandbox layer, daemon.c's reports) is stubbed
 * below with the daemon's contract: reports arrive through a deferred
 * event, a finished invocation is freed from there, a lost or timed-out
 * runtime's sandbox is freed from there. No sandbox, no process.
 *
 * The input is a script: records separated by "\n@", each starting with
 * one opcode byte:
 *   N        open a new connection to the Runtime API (at most 8 open)
 *   S<bytes> send bytes on the newest open connection (opened if none)
 *   C        close the newest open connection
 *   I<bytes> an invocation arrives, with this payload (id: ID below)
 *   T        the invocation's timeout fires
 *   D / E<c> / F   the sandbox dies / the runtime exits with status c /
 *            the runtime could not be started
 * After each record the event loop runs until it is quiet. Invocation ids
 * are 32 hex digits counting from 00000000000000000000000000000001. */
// fuzz-sources: common/*.c orchestrator/process_env.c orchestrator/reply.c
#include "orchestrator/protocol_lambda.c"

#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define MAX_CONNS 8

static struct {
    struct event_base *base;
    struct event *ev_deferred; /* daemon.c's: reports made outside the callbacks */
    hearth_t hd;
    cfg_daemon_t cfg;
    cfg_function_t spec;
    reg_function_t fn;
    hd_sandbox_t sb;
    bool sandbox_gone;        /* failed, died or replaced: freed */
    hd_inv_t *done;           /* hd_call_done reported it */
    struct sockaddr_un addr;  /* the Runtime API's listening socket */
    socklen_t addr_len;
    uint64_t next_id;
    uint64_t listeners;
    bool trace;
} g;

/* --- what protocol_lambda.c calls outside -------------------------------------- */

int sbx_socket(sbx_t *sb, uint16_t port, bool connect, int *fd_out, hearth_error_t *err)
{
    (void)sb;
    (void)port;
    (void)connect;
    /* An abstract Unix socket, a new name each time: the previous one may
     * still be closing. */
    g.addr = (struct sockaddr_un){.sun_family = AF_UNIX};
    int n = snprintf(g.addr.sun_path + 1, sizeof(g.addr.sun_path) - 1, "hearth-fuzz-runtime-%d-%" PRIu64,
                     (int)getpid(), g.listeners++);
    g.addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&g.addr, g.addr_len) < 0 || listen(fd, 64) < 0) {
        if (fd >= 0)
            close(fd);
        return hearth_error_sys(err, "runtime socket");
    }
    *fd_out = fd;
    return 0;
}

int sbx_exec_send(sbx_t *sb, const sbx_exec_t *ex, hearth_error_t *err)
{
    (void)sb;
    (void)err;
    /* What a runtime would be started with must at least be well formed. */
    for (size_t i = 0; ex->envp[i] != NULL; i++)
        if (strchr(ex->envp[i], '=') == NULL)
            abort();
    return 0;
}

int sbx_cpu_ns(sbx_t *sb, uint64_t *ns, hearth_error_t *err)
{
    (void)sb;
    (void)err;
    *ns = 1000;
    return 0;
}

int sbx_kill(sbx_t *sb, hearth_error_t *err)
{
    (void)sb;
    (void)err;
    return 0;
}

void hd_sandbox_up(hd_sandbox_t *sb)
{
    if (sb != &g.sb || !sb->rt->up)
        abort();
}

void hd_sandbox_failed(hd_sandbox_t *sb, const char *why)
{
    if (sb != &g.sb || strlen(why) == 0)
        abort();
    if (sb->report == HD_REPORT_NONE) {
        sb->report = HD_REPORT_FAILED;
        event_active(g.ev_deferred, 0, 0);
    }
}

void hd_sandbox_died(hd_sandbox_t *sb)
{
    if (sb != &g.sb)
        abort();
    if (sb->report == HD_REPORT_NONE) {
        sb->report = HD_REPORT_DIED;
        event_active(g.ev_deferred, 0, 0);
    }
}

void hd_call_done(hd_sandbox_t *sb, hd_inv_t *inv)
{
    if (sb != &g.sb || g.done != NULL || sb->call == NULL)
        abort();
    g.done = inv;
    event_active(g.ev_deferred, 0, 0);
}

/* --- the daemon's side ------------------------------------------------------------ */

static void free_inv(hd_inv_t *inv)
{
    evbuffer_free(inv->payload);
    evbuffer_free(inv->output);
    free(inv);
}

static void sandbox_free(void)
{
    if (g.sandbox_gone)
        return;
    lambda_sandbox_free(&g.sb);
    g.sandbox_gone = true;
}

/* ev_deferred: finish_inv and the scheduler's reaction, as daemon.c. */
static void on_deferred(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (g.done != NULL) {
        hd_inv_t *inv = g.done;
        g.done = NULL;
        if (memchr(inv->message, '\0', sizeof(inv->message)) == NULL ||
            memchr(inv->error_type, '\0', sizeof(inv->error_type)) == NULL || inv->log_len > sizeof(inv->log_tail) ||
            evbuffer_get_length(inv->output) > g.cfg.max_body_bytes)
            abort();
        proto_free(g.sb.call);
        g.sb.call = NULL;
        bool replaced = inv->outcome == HD_OUT_LOST || inv->outcome == HD_OUT_OOM || inv->outcome == HD_OUT_TIMEOUT;
        free_inv(inv);
        if (replaced)
            sandbox_free();
    }
    if (g.sb.report != HD_REPORT_NONE)
        sandbox_free();
}

static void invoke(const uint8_t *payload, size_t len)
{
    if (g.sandbox_gone || g.sb.call != NULL || g.done != NULL)
        return; /* the scheduler sends one at a time, only to a live sandbox */
    hd_inv_t *inv = calloc(1, sizeof(*inv));
    if (inv == NULL)
        abort();
    inv->hd = &g.hd;
    inv->fn = &g.fn;
    inv->payload = evbuffer_new();
    inv->output = evbuffer_new();
    evbuffer_add(inv->payload, payload, len);
    snprintf(inv->id, sizeof(inv->id), "%032" PRIx64, ++g.next_id);
    inv->sb = &g.sb;
    hearth_error_t err = {0};
    if (proto_lambda_start(&g.sb, inv, &err) < 0) {
        if (g.sb.rt != NULL && g.sb.rt->up && !g.sb.rt->failed)
            abort(); /* a live runtime must take it */
        free_inv(inv);
    }
}

static void runtime_event(sbx_event_kind_t kind, int status)
{
    if (g.sandbox_gone)
        return;
    sbx_event_t ev = {.kind = kind, .pid = g.sb.rt->pid, .err = ENOENT, .what = "execve"};
    ev.end.kind = kind == SBX_EV_END ? SBX_END_EXIT : SBX_END_LOST;
    ev.end.status = status;
    lambda_sandbox_event(&g.sb, &ev);
}

/* --- the runtime's side: raw connections ------------------------------------------ */

static int conns[MAX_CONNS];
static size_t n_conns;

static int conn_open(void)
{
    if (n_conns == MAX_CONNS)
        return conns[n_conns - 1];
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&g.addr, g.addr_len) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    conns[n_conns++] = fd;
    return fd;
}

static void conn_close(void)
{
    if (n_conns > 0)
        close(conns[--n_conns]);
}

/* Run the loop until nothing more happens; read and drop what the server
 * answers so that it never blocks on a full socket. */
static void pump(void)
{
    char buf[65536];
    for (int quiet = 0, rounds = 0; quiet < 3 && rounds < 1000; rounds++) {
        event_base_loop(g.base, EVLOOP_NONBLOCK);
        bool any = false;
        for (size_t i = 0; i < n_conns; i++) {
            ssize_t n;
            while ((n = read(conns[i], buf, sizeof(buf))) > 0) {
                any = true;
                if (g.trace) /* FUZZ_TRACE=1: what the runtime hears, to check the seeds */
                    fprintf(stderr, "[conn %zu] %.*s\n", i, (int)n, buf);
            }
        }
        quiet = any ? 0 : quiet + 1;
    }
}

static void conn_send(const uint8_t *p, size_t len)
{
    int fd = n_conns ? conns[n_conns - 1] : conn_open();
    if (fd < 0)
        return;
    for (int tries = 0; len > 0 && tries < 1000; tries++) {
        ssize_t n = write(fd, p, len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && errno != EAGAIN) {
            return; /* the server closed it */
        }
        pump();
    }
}

/* --- the target -------------------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    g.trace = getenv("FUZZ_TRACE") != NULL;
    hearth_log_set_level(HEARTH_LOG_ERROR + 1); /* init errors are expected: keep the output quiet */
    g.base = event_base_new();
    g.ev_deferred = event_new(g.base, -1, 0, on_deferred, NULL);
    if (g.base == NULL || g.ev_deferred == NULL)
        abort();
    g.cfg.max_body_bytes = 4096;
    g.hd.base = g.base;
    g.hd.cfg = &g.cfg;
    static char *command[] = {"/var/task/bootstrap", NULL};
    static cfg_env_t env[] = {{.name = "_HANDLER", .value = "index.handler"}, {.name = "X", .value = "y"}};
    g.spec = (cfg_function_t){.name = "fn", .tenant = "t", .protocol = CFG_PROTO_LAMBDA, .command = command,
                              .n_command = 1, .env = env, .n_env = 2, .memory_mb = 128, .timeout_ms = 3000};
    g.fn = (reg_function_t){.id = 1, .version = 1, .spec = &g.spec, .current = true, .refs = 1};
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g.sb = (hd_sandbox_t){.hd = &g.hd, .id = 1, .state = HD_SBX_READY, .sbx = (sbx_t *)&g, .fn = &g.fn};
    g.sandbox_gone = false;
    g.done = NULL;
    g.next_id = 0;
    hearth_error_t err = {0};
    if (lambda_runtime_start(&g.sb, &err) < 0)
        abort();
    pump();

    const uint8_t *p = data, *end = data + size;
    while (p < end) {
        const uint8_t *next = memmem(p, (size_t)(end - p), "\n@", 2);
        const uint8_t *rec_end = next ? next : end;
        uint8_t op = *p;
        const uint8_t *arg = p + 1 <= rec_end ? p + 1 : rec_end;
        size_t arg_len = (size_t)(rec_end - arg);
        switch (op) {
        case 'N':
            if (!g.sandbox_gone)
                conn_open();
            break;
        case 'S':
            conn_send(arg, arg_len);
            break;
        case 'C':
            conn_close();
            break;
        case 'I':
            invoke(arg, arg_len);
            break;
        case 'T':
            if (!g.sandbox_gone && g.sb.rt->call != NULL && !g.sb.rt->call->finished)
                on_call_timeout(-1, 0, g.sb.rt->call);
            break;
        case 'D':
            runtime_event(SBX_EV_DIED, 0);
            break;
        case 'E':
            runtime_event(SBX_EV_END, arg_len ? arg[0] : 0);
            break;
        case 'F':
            runtime_event(SBX_EV_START_FAILED, 0);
            break;
        default:
            break;
        }
        pump();
        p = next ? next + 2 : end;
    }

    /* Tear down as the daemon does: connections go, the sandbox goes (its
     * Runtime API server with it), a call still running is freed. */
    while (n_conns > 0)
        conn_close();
    pump();
    if (g.done != NULL)
        on_deferred(-1, 0, NULL);
    hd_inv_t *running = g.sb.call != NULL ? ((lambda_call_t *)g.sb.call)->inv : NULL;
    sandbox_free();
    if (g.sb.call != NULL) {
        proto_free(g.sb.call);
        g.sb.call = NULL;
        free_inv(running);
    }
    pump();
    return 0;
}
