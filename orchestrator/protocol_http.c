/* The `http` protocol: the function's command is an HTTP server, started
 * once per sandbox, that listens on 127.0.0.1:8080 inside the sandbox's own
 * network namespace. The sandbox is warm once that port accepts a
 * connection; each invocation is then passed on as an HTTP request over
 * one keep-alive connection per sandbox, and the server's answer comes
 * back as the invocation's result.
 *
 * evhttp speaks the HTTP. The one thing it cannot do here is reach the
 * server: sockets belong to the network namespace of the thread that
 * creates them, and evhttp 2.1 cannot adopt a connected fd (made, say, by
 * the sandbox's init: evhttp_connection_connect_ resets the bufferevent's
 * fd to -1 and makes its own). So every request is handed to evhttp while
 * the loop's thread has entered the sandbox's namespace (setns), and left
 * again right after. Within that window evhttp_make_request either sends
 * on the open connection, or, when it has none, connects at once: with a
 * numeric address and no DNS base, bufferevent_socket_connect_hostname
 * resolves synchronously (evutil_getaddrinfo, no socket for a numeric
 * host without AI_ADDRCONFIG) and bufferevent_socket_connect makes the
 * socket (libevent 2.1.12, http.c and bufferevent_sock.c). It never
 * reconnects later, outside the window: retries are 0 (no retry timer),
 * and it reconnects from its own callbacks only for a second queued
 * request, which never exists since a sandbox serves one invocation at a
 * time (concurrency 1, see config.c). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "orchestrator/daemon.h"

#define SERVER_PORT 8080
#define LOG_RING 4096
/* As for lambda: three tries of a server that never listens end within
 * the scheduler's 30 s queue timeout, so callers hear why. */
#define INIT_TIMEOUT_S 9
#define PROBE_FIRST_MS 1
#define PROBE_MAX_MS 50
/* After the connection broke mid-call: time for init's report that the
 * server died, so that the answer says how. */
#define GRACE_MS 200

typedef struct http_call http_call_t;

typedef struct hd_httpsrv {
    hd_sandbox_t *sb;
    int netns;                       /* the sandbox's network namespace, for our sockets there */
    pid_t pid;                       /* the server, inside the sandbox; 0 until started */
    bool up;                         /* its port accepted */
    bool failed;                     /* start failure, death or kill reported */
    int log_fd;                      /* its stdout and stderr */
    struct event *ev_log;
    char log[LOG_RING];              /* the last LOG_RING bytes it wrote */
    size_t log_len;
    struct event *ev_probe;          /* the next connect attempt while not yet up */
    struct event *ev_connect;        /* the attempt in progress: its socket becomes writable */
    int probe_fd;                    /* that socket, or -1 */
    uint32_t probe_ms;               /* wait before the attempt after next */
    uint64_t init_deadline_ns;
    struct evhttp_connection *evcon; /* keep-alive to the server; made at the first call */
    bool evcon_stale;                /* what it holds cannot be trusted: replace it before the next call */
    http_call_t *call;               /* the invocation it serves */
} hd_httpsrv_t;

struct http_call {
    proto_call_t base;               /* ops: http's */
    hd_sandbox_t *sb;
    hd_inv_t *inv;
    struct evhttp_request *req;      /* owned by us (evhttp_request_own): freed with the call */
    bool in_flight;                  /* evhttp still holds req in its connection's queue */
    bool finished;                   /* hd_call_done called */
    bool refused;                    /* the broken connection never connected */
    struct event *ev_timeout;
    struct event *ev_grace;          /* the connection broke: wait for news of the server's death */
};

/* --- the server's output --------------------------------------------------------- */

static void log_append(hd_httpsrv_t *s, const char *p, size_t n)
{
    if (n >= LOG_RING) {
        p += n - LOG_RING;
        n = LOG_RING;
        s->log_len = 0;
    } else if (s->log_len + n > LOG_RING) {
        size_t drop = s->log_len + n - LOG_RING;
        memmove(s->log, s->log + drop, s->log_len - drop);
        s->log_len -= drop;
    }
    memcpy(s->log + s->log_len, p, n);
    s->log_len += n;
}

static void read_log(hd_httpsrv_t *s)
{
    char buf[8192];
    while (s->log_fd >= 0) {
        ssize_t n = read(s->log_fd, buf, sizeof(buf));
        if (n > 0) {
            log_append(s, buf, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 && s->ev_log != NULL)
            event_del(s->ev_log); /* EOF: the server and its children are gone */
        return;
    }
}

static void on_log(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    read_log(arg);
}

/* The end of the log, one line, for a start failure's message. */
static void log_tail_line(const hd_httpsrv_t *s, char *out, size_t len)
{
    size_t n = s->log_len;
    while (n > 0 && (s->log[n - 1] == '\n' || s->log[n - 1] == '\r'))
        n--;
    size_t start = n;
    while (start > 0 && s->log[start - 1] != '\n' && n - start < 160)
        start--;
    snprintf(out, len, "%.*s", (int)(n - start), s->log + start);
}

/* --- sockets in the sandbox's network ---------------------------------------------- */

static int enter_sandbox_net(hd_httpsrv_t *s, hearth_error_t *err)
{
    if (setns(s->netns, CLONE_NEWNET) < 0)
        return hearth_error_sys(err, "enter the sandbox's network namespace");
    return 0;
}

/* Back to the host's namespace. With a namespace fd we hold open, as host
 * root, setns can only fail for want of memory; should it fail twice, this
 * thread's next sockets (the API's callbacks, other sandboxes') would land
 * in the sandbox's network: stop the daemon rather than go on. */
static void leave_sandbox_net(hearth_t *hd)
{
    if (setns(hd->host_netns, CLONE_NEWNET) == 0 || setns(hd->host_netns, CLONE_NEWNET) == 0)
        return;
    hearth_log(HEARTH_LOG_ERROR, "cannot return to the host's network namespace: %s; shutting down",
               strerror(errno));
    event_base_loopbreak(hd->base);
}

/* The event stays (freed with the server or before the next attempt):
 * this may run inside its own callback. */
static void end_attempt(hd_httpsrv_t *s)
{
    if (s->ev_connect != NULL)
        event_del(s->ev_connect);
    if (s->probe_fd >= 0) {
        close(s->probe_fd);
        s->probe_fd = -1;
    }
}

/* Start a connect to 127.0.0.1:8080 in the sandbox: 1 accepted already,
 * 0 in progress (s->probe_fd), 2 refused. */
static int probe_once(hd_httpsrv_t *s, hearth_error_t *err)
{
    if (enter_sandbox_net(s, err) < 0)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int saved = errno;
    leave_sandbox_net(s->sb->hd);
    if (fd < 0) {
        errno = saved;
        return hearth_error_sys(err, "socket in the sandbox");
    }
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(SERVER_PORT),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0) {
        close(fd);
        return 1;
    }
    if (errno == EINPROGRESS) {
        s->probe_fd = fd;
        return 0;
    }
    close(fd);
    return 2;
}

/* --- the server's start ---------------------------------------------------------------- */

static void server_failed(hd_httpsrv_t *s, const char *why)
{
    s->failed = true;
    if (s->ev_probe != NULL)
        event_del(s->ev_probe);
    end_attempt(s);
    char line[200], msg[512];
    read_log(s);
    log_tail_line(s, line, sizeof(line));
    snprintf(msg, sizeof(msg), "%s%s%s", why, line[0] ? "; its last output: " : "", line);
    hd_sandbox_failed(s->sb, msg);
}

static void probe_next(hd_httpsrv_t *s, bool accepted);

/* The connect in progress ended, or did not within the wait. */
static void on_connect(evutil_socket_t fd, short what, void *arg)
{
    hd_httpsrv_t *s = arg;
    int e = ETIMEDOUT;
    socklen_t len = sizeof(e);
    if ((what & EV_WRITE) && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
        e = errno;
    end_attempt(s);
    probe_next(s, e == 0);
}

static void on_probe(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hd_httpsrv_t *s = arg;
    hearth_error_t err = {0};
    if (s->up || s->failed)
        return;
    int rc = probe_once(s, &err);
    if (rc < 0) {
        server_failed(s, err.msg);
        return;
    }
    if (rc == 0) {
        /* The handshake goes on in the kernel (loopback too answers
         * EINPROGRESS); a listening socket completes it at once. */
        struct timeval wait = {1, 0};
        if (s->ev_connect != NULL)
            event_free(s->ev_connect);
        s->ev_connect = event_new(s->sb->hd->base, s->probe_fd, EV_WRITE, on_connect, s);
        if (s->ev_connect == NULL || event_add(s->ev_connect, &wait) < 0) {
            end_attempt(s);
            server_failed(s, "out of memory for the server's probe");
        }
        return;
    }
    probe_next(s, rc == 1);
}

/* After an attempt: up, or the next attempt, or the end of init's time. */
static void probe_next(hd_httpsrv_t *s, bool accepted)
{
    if (s->up || s->failed)
        return;
    if (accepted) {
        s->up = true;
        hd_sandbox_up(s->sb); /* may dispatch at once */
        return;
    }
    if (now_ns() >= s->init_deadline_ns) {
        char why[128];
        snprintf(why, sizeof(why), "the server did not accept connections on 127.0.0.1:%d within %d s", SERVER_PORT,
                 INIT_TIMEOUT_S);
        server_failed(s, why);
        return;
    }
    struct timeval tv = {0, (suseconds_t)s->probe_ms * 1000};
    s->probe_ms = s->probe_ms * 2 > PROBE_MAX_MS ? PROBE_MAX_MS : s->probe_ms * 2;
    evtimer_add(s->ev_probe, &tv);
}

int http_server_start(hd_sandbox_t *sb, hearth_error_t *err)
{
    hearth_t *hd = sb->hd;
    const cfg_function_t *fn = sb->fn->spec;
    hd_httpsrv_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return hearth_error_set(err, ENOMEM, "server");
    s->sb = sb;
    s->log_fd = -1;
    s->netns = -1;
    s->probe_fd = -1;
    s->probe_ms = PROBE_FIRST_MS;
    sb->srv = s;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)sbx_init_pid(sb->sbx));
    s->netns = open(path, O_RDONLY | O_CLOEXEC);
    if (s->netns < 0)
        return hearth_error_sys(err, "open %s", path);
    /* The pid could only be another process's if init had died and been
     * reaped since: then the sandbox is gone, and so is its use. */
    if (!sbx_alive(sb->sbx))
        return hearth_error_set(err, ESRCH, "the sandbox died as it started");

    int logp[2];
    if (pipe2(logp, O_CLOEXEC) < 0)
        return hearth_error_sys(err, "pipe");
    fcntl(logp[0], F_SETFL, O_NONBLOCK);
    s->log_fd = logp[0];
    s->ev_log = event_new(hd->base, logp[0], EV_READ | EV_PERSIST, on_log, s);
    s->ev_probe = evtimer_new(hd->base, on_probe, s);
    struct timeval first = {0, PROBE_FIRST_MS * 1000};
    if (s->ev_log == NULL || s->ev_probe == NULL || event_add(s->ev_log, NULL) < 0 ||
        evtimer_add(s->ev_probe, &first) < 0) {
        close(logp[1]);
        return hearth_error_set(err, ENOMEM, "server events");
    }
    s->init_deadline_ns = now_ns() + (uint64_t)INIT_TIMEOUT_S * 1000000000ULL;

    /* The spec's environment, then PATH, HOME and PORT unless it sets them,
     * then ours (HEARTH_* names are refused in specs). */
    char fn_env[128];
    snprintf(fn_env, sizeof(fn_env), "HEARTH_FUNCTION=%s", fn->name);
    static const char *const defaults[] = {HD_DEFAULT_PATH, "HOME=/tmp", "PORT=8080", NULL};
    const char *const ours[] = {fn_env, NULL};
    cleanup_free const char **envp = hd_function_env(fn, NULL, defaults, ours);
    if (envp == NULL) {
        close(logp[1]);
        return hearth_error_set(err, ENOMEM, "environment");
    }
    sbx_exec_t ex = {.argv = (const char *const *)fn->command, .envp = envp, .cwd = "/", .stdin_fd = -1,
                     .stdout_fd = logp[1], .stderr_fd = logp[1]};
    int rc = sbx_exec_send(sb->sbx, &ex, err);
    close(logp[1]);
    return rc;
}

/* --- an invocation ---------------------------------------------------------------- */

/* Take the request back from evhttp, if it still holds it: the connection
 * is closed (the server sees the client go), the next call opens another. */
static void drop_request(http_call_t *c)
{
    if (!c->in_flight)
        return;
    c->in_flight = false; /* before: the cancel calls our error callback */
    evhttp_cancel_request(c->req);
}

static void finish(http_call_t *c)
{
    if (c->finished)
        return;
    c->finished = true;
    if (c->ev_timeout != NULL)
        event_del(c->ev_timeout);
    if (c->ev_grace != NULL)
        event_del(c->ev_grace);
    hd_httpsrv_t *s = c->sb->srv;
    if (s != NULL) {
        /* The invocation's log: what the server wrote while it ran. */
        read_log(s);
        size_t n = s->log_len < sizeof(c->inv->log_tail) ? s->log_len : sizeof(c->inv->log_tail);
        memcpy(c->inv->log_tail, s->log + s->log_len - n, n);
        c->inv->log_len = n;
        if (s->call == c)
            s->call = NULL;
    }
    hd_call_done(c->sb, c->inv);
}

static void fail_call(http_call_t *c, hd_outcome_t outcome, const char *error_type, const char *msg)
{
    hd_inv_t *inv = c->inv;
    inv->outcome = outcome;
    snprintf(inv->error_type, sizeof(inv->error_type), "%s", error_type ? error_type : "");
    snprintf(inv->message, sizeof(inv->message), "%s", msg);
    finish(c);
}

static bool is_hop_by_hop(const char *name, const char *connection)
{
    static const char *const hop[] = {"Connection", "Keep-Alive", "TE", "Trailer", "Trailers", "Transfer-Encoding",
                                      "Upgrade"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (strcasecmp(name, hop[i]) == 0)
            return true;
    if (strncasecmp(name, "Proxy-", 6) == 0) /* -Authorization, -Authenticate, -Connection, ... */
        return true;
    /* And whatever the Connection header names (RFC 9110, 7.6.1). */
    size_t len = strlen(name);
    for (const char *p = connection; p != NULL && *p;) {
        p += strspn(p, " \t,");
        size_t tok = strcspn(p, " \t,");
        if (tok == len && strncasecmp(p, name, len) == 0)
            return true;
        p += tok;
    }
    return false;
}

/* Copy the end-to-end headers. Never: hop-by-hop ones, Content-Length
 * (evhttp sets it from the body we send; kept only for the answer to a
 * HEAD, which has no body to count), X-Hearth-* (ours to set); on the way
 * in also Authorization (the tenant's hearth credentials) and Expect
 * (evhttp has answered the 100-continue already). */
static void copy_headers(struct evkeyvalq *to, const struct evkeyvalq *from, bool request, bool keep_length)
{
    const char *connection = evhttp_find_header(from, "Connection");
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, from, next)
    {
        if (is_hop_by_hop(kv->key, connection) || strncasecmp(kv->key, "X-Hearth-", 9) == 0 ||
            (!keep_length && strcasecmp(kv->key, "Content-Length") == 0) ||
            (request && (strcasecmp(kv->key, "Authorization") == 0 || strcasecmp(kv->key, "Expect") == 0)))
            continue;
        evhttp_add_header(to, kv->key, kv->value);
    }
}

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_call_t *c = arg;
    if (c->finished)
        return;
    if (c->inv->outcome == HD_OUT_CANCELLED) {
        finish(c);
        return;
    }
    /* The server lives but did not answer. One that no longer accepts
     * connections is no use: its sandbox is replaced (LOST). */
    if (c->refused)
        fail_call(c, HD_OUT_LOST, NULL, "the function's server no longer accepts connections on 127.0.0.1:8080");
    else
        fail_call(c, HD_OUT_FAILED, "ConnectionClosed",
                  "the function's server closed the connection without a complete answer");
}

/* The connection broke: if the server died, init says so within moments,
 * and http_sandbox_event finishes the call with how it died. */
static void connection_broke(http_call_t *c, bool refused)
{
    c->refused = refused;
    struct timeval tv = {0, GRACE_MS * 1000};
    if (c->ev_grace == NULL || evtimer_add(c->ev_grace, &tv) < 0)
        on_grace(-1, 0, c);
}

static void on_error(enum evhttp_request_error e, void *arg)
{
    http_call_t *c = arg;
    c->in_flight = false;
    if (c->finished || e == EVREQ_HTTP_REQUEST_CANCEL)
        return;
    char msg[160];
    switch (e) {
    case EVREQ_HTTP_DATA_TOO_LONG:
        /* evhttp also says this of a malformed chunked body. */
        snprintf(msg, sizeof(msg), "the function's answer exceeds %" PRIu64 " bytes (or is malformed)",
                 c->sb->hd->cfg->max_body_bytes);
        fail_call(c, HD_OUT_TOO_LARGE, NULL, msg);
        break;
    case EVREQ_HTTP_INVALID_HEADER:
        fail_call(c, HD_OUT_FAILED, "InvalidResponse", "the function's server sent a malformed HTTP answer");
        break;
    default: /* EOF, TIMEOUT, BUFFER_ERROR */
        connection_broke(c, false);
        break;
    }
}

static void on_response(struct evhttp_request *req, void *arg)
{
    if (req == NULL)
        return; /* after on_error, which dealt with it */
    http_call_t *c = arg;
    c->in_flight = false;
    if (c->finished)
        return;
    int code = evhttp_request_get_response_code(req);
    if (code == 0) {
        connection_broke(c, true); /* the connect failed */
        return;
    }
    if (code < 200 || code > 599) {
        /* Not a final answer (1xx), or no status at all: nothing to pass
         * on. evhttp read no body after it; whatever follows on the
         * connection is not the next answer. */
        if (c->sb->srv != NULL)
            c->sb->srv->evcon_stale = true;
        char msg[96];
        snprintf(msg, sizeof(msg), "the function's server answered with status %d", code);
        fail_call(c, HD_OUT_FAILED, "InvalidResponse", msg);
        return;
    }
    hd_inv_t *inv = c->inv;
    evbuffer_add_buffer(inv->output, evhttp_request_get_input_buffer(req));
    if (inv->http != NULL) {
        /* Over /v1: the caller gets the server's answer as it is. An
         * answer >= 500 still counts as the function's error. */
        hd_http_t *h = inv->http;
        h->status = code;
        const char *reason = evhttp_request_get_response_code_line(req);
        snprintf(h->reason, sizeof(h->reason), "%s", reason ? reason : "");
        copy_headers(&h->resp_headers, evhttp_request_get_input_headers(req), false,
                     h->method == EVHTTP_REQ_HEAD);
        if (code >= 500) {
            inv->outcome = HD_OUT_FAILED;
            snprintf(inv->error_type, sizeof(inv->error_type), "HttpError");
            snprintf(inv->message, sizeof(inv->message), "the function answered HTTP %d", code);
        }
        finish(c);
        return;
    }
    /* Async or the Lambda-compatible endpoint: only a body comes back, so
     * anything but 2xx is the function's failure. */
    if (code < 200 || code > 299) {
        size_t n = evbuffer_get_length(inv->output);
        char msg[200];
        snprintf(msg, sizeof(msg), "the function answered HTTP %d: %.*s", code, (int)(n > 120 ? 120 : n),
                 n ? (const char *)evbuffer_pullup(inv->output, (ev_ssize_t)(n > 120 ? 120 : n)) : "");
        fail_call(c, HD_OUT_FAILED, "HttpError", msg);
        return;
    }
    finish(c);
}

static void on_call_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_call_t *c = arg;
    hearth_error_t err;
    /* Everything in the sandbox goes, the server with it; the scheduler
     * replaces the sandbox. Its death reported by init is no news. */
    if (c->sb->srv != NULL)
        c->sb->srv->failed = true;
    if (c->sb->sbx != NULL && sbx_kill(c->sb->sbx, &err) < 0)
        hearth_log(HEARTH_LOG_ERROR, "kill at timeout: %s", err.msg);
    drop_request(c);
    char msg[96];
    snprintf(msg, sizeof(msg), "the function ran past its timeout of %u ms", c->inv->fn->spec->timeout_ms);
    fail_call(c, HD_OUT_TIMEOUT, NULL, msg);
}

static void call_on_event(proto_call_t *pc, const sbx_event_t *ev)
{
    (void)pc;
    (void)ev; /* the server's events come through http_sandbox_event */
}

static void call_cancel(proto_call_t *pc)
{
    http_call_t *c = (http_call_t *)pc;
    if (c->finished)
        return;
    /* The caller went away: so does our request (a proxy closes its
     * upstream connection). The server stays warm. The call ends from the
     * loop, not from inside the canceller (which may free it first). */
    drop_request(c);
    c->inv->outcome = HD_OUT_CANCELLED;
    snprintf(c->inv->message, sizeof(c->inv->message), "the client went away");
    event_active(c->ev_grace, EV_TIMEOUT, 0);
}

static void call_free(proto_call_t *pc)
{
    http_call_t *c = (http_call_t *)pc;
    drop_request(c);
    if (c->req != NULL)
        evhttp_request_free(c->req);
    if (c->ev_timeout != NULL)
        event_free(c->ev_timeout);
    if (c->ev_grace != NULL)
        event_free(c->ev_grace);
    if (c->sb->srv != NULL && c->sb->srv->call == c)
        c->sb->srv->call = NULL;
    free(c);
}

static const proto_ops_t http_ops = {
    .on_event = call_on_event,
    .cancel = call_cancel,
    .free = call_free,
};

static struct evhttp_connection *connection(hd_httpsrv_t *s)
{
    if (s->evcon != NULL && s->evcon_stale) {
        evhttp_connection_free(s->evcon); /* idle: no request of ours in it */
        s->evcon = NULL;
        s->evcon_stale = false;
    }
    if (s->evcon != NULL)
        return s->evcon;
    hearth_t *hd = s->sb->hd;
    const cfg_function_t *fn = s->sb->fn->spec;
    /* No DNS base and a numeric host: the connect happens inside
     * evhttp_make_request, in the window (see the top of the file). */
    s->evcon = evhttp_connection_base_new(hd->base, NULL, "127.0.0.1", SERVER_PORT);
    if (s->evcon == NULL)
        return NULL;
    evhttp_connection_set_family(s->evcon, AF_INET);
    evhttp_connection_set_retries(s->evcon, 0);
    evhttp_connection_set_max_body_size(s->evcon, (ev_ssize_t)hd->cfg->max_body_bytes);
    evhttp_connection_set_max_headers_size(s->evcon, (ev_ssize_t)hd->cfg->max_header_bytes);
    /* Our own timer ends a call at timeout_ms; evhttp's (else 50 s) must
     * not come first. It also ends an idle connection (reopened on need):
     * give that an hour, the keep-alive is the point. */
    uint64_t ms = (uint64_t)fn->timeout_ms + 3600 * 1000;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evhttp_connection_set_timeout_tv(s->evcon, &tv);
    return s->evcon;
}

int proto_http_start(hd_sandbox_t *sb, hd_inv_t *inv, hearth_error_t *err)
{
    hd_httpsrv_t *s = sb->srv;
    hearth_t *hd = sb->hd;
    if (s == NULL || !s->up || s->failed)
        return hearth_error_set(err, ESRCH, "the function's server is not running");
    const cfg_function_t *fn = sb->fn->spec;
    struct evhttp_connection *evcon = connection(s);
    http_call_t *c = calloc(1, sizeof(*c));
    if (c == NULL || evcon == NULL) {
        free(c);
        return hearth_error_set(err, ENOMEM, "invocation");
    }
    c->base.ops = &http_ops;
    c->sb = sb;
    c->inv = inv;
    sbx_cpu_ns(sb->sbx, &c->base.cpu_before, err);
    c->ev_timeout = evtimer_new(hd->base, on_call_timeout, c);
    c->ev_grace = evtimer_new(hd->base, on_grace, c);
    c->req = evhttp_request_new(on_response, c);
    if (c->ev_timeout == NULL || c->ev_grace == NULL || c->req == NULL) {
        call_free(&c->base);
        return hearth_error_set(err, ENOMEM, "invocation");
    }
    evhttp_request_own(c->req);
    evhttp_request_set_error_cb(c->req, on_error);

    enum evhttp_cmd_type method = inv->http ? inv->http->method : EVHTTP_REQ_POST;
    struct evkeyvalq *h = evhttp_request_get_output_headers(c->req);
    if (inv->http != NULL) {
        struct evkeyval *kv;
        TAILQ_FOREACH(kv, &inv->http->headers, next)
        evhttp_add_header(h, kv->key, kv->value);
    } else {
        /* Async, or the Lambda-compatible endpoint: a POST of the payload. */
        evhttp_add_header(h, "Content-Type", inv->lambda ? "application/json" : "application/octet-stream");
    }
    if (evhttp_find_header(h, "Host") == NULL)
        evhttp_add_header(h, "Host", "127.0.0.1:8080");
    char v[64];
    evhttp_add_header(h, "X-Hearth-Invocation-Id", inv->id);
    evhttp_add_header(h, "X-Hearth-Function", fn->name);
    snprintf(v, sizeof(v), "%" PRIu64, (uint64_t)wall_ms() + fn->timeout_ms);
    evhttp_add_header(h, "X-Hearth-Deadline-Ms", v);
    struct evbuffer *body = evhttp_request_get_output_buffer(c->req);
    evbuffer_add_buffer(body, inv->payload);
    /* evhttp counts only POST and PUT bodies. */
    size_t len = evbuffer_get_length(body);
    if (len > 0 || method == EVHTTP_REQ_PATCH) {
        snprintf(v, sizeof(v), "%zu", len);
        evhttp_add_header(h, "Content-Length", v);
    }

    const char *target = inv->http ? inv->http->target : "/";
    struct timeval tv = {fn->timeout_ms / 1000, (fn->timeout_ms % 1000) * 1000};
    if (evtimer_add(c->ev_timeout, &tv) < 0 || enter_sandbox_net(s, err) < 0) {
        call_free(&c->base);
        return -1;
    }
    s->log_len = 0; /* this invocation's log starts now */
    s->call = c;
    sb->call = &c->base;
    c->in_flight = true;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    evutil_socket_t before = bufferevent_getfd(bev);
    /* May report a failed connect at once, through on_response. */
    int rc = evhttp_make_request(evcon, c->req, method, target);
    leave_sandbox_net(hd);
    if (rc < 0) {
        c->in_flight = false;
        s->call = NULL;
        sb->call = NULL;
        call_free(&c->base);
        return hearth_error_set(err, EIO, "request to the function's server");
    }
    /* A new connection's socket (evhttp makes it without O_CLOEXEC): not
     * for children; we start none, but nothing of a sandbox's should
     * outlive an exec. */
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd >= 0 && fd != before)
        evutil_make_socket_closeonexec(fd);
    return 0;
}

/* --- the server's life ------------------------------------------------------------------ */

void http_sandbox_event(hd_sandbox_t *sb, const sbx_event_t *ev)
{
    hd_httpsrv_t *s = sb->srv;
    if (!hd_process_gone(ev, &s->pid) || s->failed)
        return;
    char msg[256];
    if (ev->kind == SBX_EV_START_FAILED)
        snprintf(msg, sizeof(msg), "cannot start the server `%s` (%s): %s", sb->fn->spec->command[0], ev->what,
                 strerror(ev->err));
    else if (ev->end.kind == SBX_END_OOM)
        snprintf(msg, sizeof(msg), "the function's server ran out of memory (limit %u MiB)", sb->fn->spec->memory_mb);
    else if (ev->end.kind == SBX_END_SIGNAL)
        snprintf(msg, sizeof(msg), "the function's server was killed by signal %d (%s)", ev->end.status,
                 strsignal(ev->end.status));
    else if (ev->end.kind == SBX_END_LOST)
        snprintf(msg, sizeof(msg), "the function's sandbox died");
    else
        snprintf(msg, sizeof(msg), "the function's server exited with status %d", ev->end.status);
    if (!s->up) {
        char why[300];
        snprintf(why, sizeof(why), "%s before accepting on 127.0.0.1:%d", msg, SERVER_PORT);
        server_failed(s, why);
        return;
    }
    s->failed = true;
    http_call_t *c = s->call;
    if (c != NULL && !c->finished) {
        /* LOST and OOM: the scheduler replaces the sandbox. */
        drop_request(c);
        fail_call(c, ev->end.kind == SBX_END_OOM ? HD_OUT_OOM : HD_OUT_LOST, NULL, msg);
    } else {
        hd_sandbox_died(sb);
    }
}

void http_sandbox_free(hd_sandbox_t *sb)
{
    hd_httpsrv_t *s = sb->srv;
    if (s == NULL)
        return;
    if (s->call != NULL) {
        /* Its request goes with the connection; the call, freed later,
         * must not reach for either. */
        drop_request(s->call);
        s->call = NULL;
    }
    sb->srv = NULL;
    if (s->evcon != NULL)
        evhttp_connection_free(s->evcon);
    if (s->ev_log != NULL)
        event_free(s->ev_log);
    if (s->ev_probe != NULL)
        event_free(s->ev_probe);
    end_attempt(s);
    if (s->ev_connect != NULL)
        event_free(s->ev_connect);
    if (s->log_fd >= 0)
        close(s->log_fd);
    if (s->netns >= 0)
        close(s->netns);
    free(s);
}

/* --- the caller's request ------------------------------------------------------------------ */

hd_http_t *http_request_new(struct evhttp_request *req, const char *path, hearth_error_t *err)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_POST && m != EVHTTP_REQ_PUT && m != EVHTTP_REQ_DELETE &&
        m != EVHTTP_REQ_PATCH && m != EVHTTP_REQ_HEAD && m != EVHTTP_REQ_OPTIONS) {
        hearth_error_set(err, EINVAL, "http functions take GET, POST, PUT, DELETE, PATCH, HEAD and OPTIONS");
        return NULL;
    }
    hd_http_t *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        hearth_error_set(err, ENOMEM, "request");
        return NULL;
    }
    TAILQ_INIT(&h->headers);
    TAILQ_INIT(&h->resp_headers);
    h->method = m;
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (path == NULL || path[0] == '\0')
        path = "/";
    if (asprintf(&h->target, "%s%s%s", path, query ? "?" : "", query ? query : "") < 0) {
        h->target = NULL;
        http_request_free(h);
        hearth_error_set(err, ENOMEM, "request");
        return NULL;
    }
    copy_headers(&h->headers, evhttp_request_get_input_headers(req), true, false);
    return h;
}

void http_request_free(hd_http_t *h)
{
    if (h == NULL)
        return;
    free(h->target);
    evhttp_clear_headers(&h->headers);
    evhttp_clear_headers(&h->resp_headers);
    free(h);
}
