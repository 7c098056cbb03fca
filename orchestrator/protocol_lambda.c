/* The `lambda` protocol: the function's command is an AWS Lambda custom
 * runtime (`bootstrap`), started once per sandbox and polling the Lambda
 * Runtime API (2018-06-01) at AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001.
 *
 * We serve that API from our own event loop on a listening socket that
 * the sandbox's init made inside the sandbox's own network namespace
 * (sbx_socket): no veth, no port clash, and no way for one sandbox to
 * reach another's. The sandbox is ready when the runtime first asks for
 * `next`; an invocation answers that (long-)poll; the runtime posts the
 * result or an error. Init errors, crashes and timeouts are reported as
 * Lambda reports them, and such a sandbox is replaced. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <jansson.h>

#include "orchestrator/daemon.h"

#define RUNTIME_PORT 9001
#define LOG_RING 4096
/* Lambda gives init 10 s. Ours is a little less so that the scheduler's
 * three tries of a runtime that never comes up end within its 30 s queue
 * timeout: the callers then hear the init error, not a generic timeout. */
#define INIT_TIMEOUT_S 9
/* Connections a runtime may hold to its Runtime API at once: one polls
 * `next` and one posts a result, a few more for runtimes with helper
 * processes. Past it we stop accepting (the kernel's backlog holds the
 * rest), so that a runtime cannot spend the daemon's file descriptors. */
#define RUNTIME_MAX_CONNS 16
#define RUNTIME_REAP_MS 50

typedef struct lambda_call lambda_call_t;

typedef struct hd_runtime {
    hd_sandbox_t *sb;
    struct evhttp *http;          /* the Runtime API, on the sandbox's loopback */
    struct evhttp_request *next;  /* the runtime's pending `next` */
    pid_t pid;                    /* the runtime, inside the sandbox */
    bool up;                      /* it has asked for `next` */
    bool failed;                  /* init error or death reported */
    int log_fd;                   /* its stdout and stderr */
    struct event *ev_log;
    struct event *ev_init;        /* init deadline */
    char log[LOG_RING];           /* the last LOG_RING bytes it wrote */
    size_t log_len;
    lambda_call_t *call;          /* the invocation it serves */
    struct evconnlistener *listener; /* the Runtime API's, paused at RUNTIME_MAX_CONNS */
    struct bufferevent *conns[RUNTIME_MAX_CONNS]; /* its connections, with a reference of ours */
    int n_conns;
    struct event *ev_reap;        /* while paused: look for closed connections */
} hd_runtime_t;

struct lambda_call {
    proto_call_t base;            /* ops: lambda's */
    hd_sandbox_t *sb;
    hd_inv_t *inv;
    bool delivered;               /* handed to the runtime's `next` */
    bool finished;                /* hd_call_done called */
    struct event *ev_timeout;
    struct evhttp_request *ack;   /* the runtime's response or error, answered 202 when the call is
                                     freed: after the client's answer, which then goes out first */
};

static void log_append(hd_runtime_t *rt, const char *p, size_t n)
{
    if (n >= LOG_RING) {
        p += n - LOG_RING;
        n = LOG_RING;
        rt->log_len = 0;
    } else if (rt->log_len + n > LOG_RING) {
        size_t drop = rt->log_len + n - LOG_RING;
        memmove(rt->log, rt->log + drop, rt->log_len - drop);
        rt->log_len -= drop;
    }
    memcpy(rt->log + rt->log_len, p, n);
    rt->log_len += n;
}

static void on_log(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    hd_runtime_t *rt = arg;
    char buf[8192];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0) {
            log_append(rt, buf, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        event_del(rt->ev_log); /* EOF: the runtime and its children are gone */
        return;
    }
}

/* --- an invocation ------------------------------------------------------------ */

static void finish(lambda_call_t *c)
{
    if (c->finished)
        return;
    c->finished = true;
    if (c->ev_timeout != NULL)
        event_del(c->ev_timeout);
    hd_runtime_t *rt = c->sb->rt;
    if (rt != NULL) {
        /* The invocation's log: what the runtime wrote while it ran. */
        size_t n = rt->log_len < sizeof(c->inv->log_tail) ? rt->log_len : sizeof(c->inv->log_tail);
        memcpy(c->inv->log_tail, rt->log + rt->log_len - n, n);
        c->inv->log_len = n;
        if (rt->call == c)
            rt->call = NULL;
    }
    hd_call_done(c->sb, c->inv);
}

static void reply_status(struct evhttp_request *req, int code, const char *reason, const char *json)
{
    struct evbuffer *buf = evbuffer_new();
    if (buf != NULL)
        evbuffer_add_printf(buf, "%s\n", json);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    hd_send_reply(req, code, reason, buf);
    if (buf)
        evbuffer_free(buf);
}

/* The runtime's pending `next`, or NULL. A runtime may give up on a poll
 * and close its connection (an HTTP client's timeout, a restart of its
 * client); libevent 2.1 does not read a connection whose request awaits its
 * reply, so nobody tells us: peek at the socket. An abandoned `next` is
 * answered (to nobody; that frees it) and forgotten, so that the runtime's
 * new poll is taken and no invocation is handed to a closed connection. */
static struct evhttp_request *live_next(hd_runtime_t *rt)
{
    if (rt->next == NULL)
        return NULL;
    struct evhttp_connection *evcon = evhttp_request_get_connection(rt->next);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    char byte;
    ssize_t n = fd >= 0 ? recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) : 0;
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)))
        return rt->next;
    struct evhttp_request *gone = rt->next;
    rt->next = NULL;
    reply_status(gone, 410, "Gone", "{\"errorMessage\":\"abandoned by the runtime\"}");
    return NULL;
}

static void deliver(hd_runtime_t *rt, lambda_call_t *c)
{
    hd_inv_t *inv = c->inv;
    const cfg_function_t *fn = rt->sb->fn->spec;
    struct evhttp_request *req = rt->next;
    rt->next = NULL;
    c->delivered = true;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char v[256];
    int64_t now = wall_ms();
    uint64_t deadline = (uint64_t)now + fn->timeout_ms;
    evhttp_add_header(h, "Lambda-Runtime-Aws-Request-Id", inv->id);
    snprintf(v, sizeof(v), "%" PRIu64, deadline);
    evhttp_add_header(h, "Lambda-Runtime-Deadline-Ms", v);
    snprintf(v, sizeof(v), "arn:aws:lambda:us-east-1:000000000000:function:%s", fn->name);
    evhttp_add_header(h, "Lambda-Runtime-Invoked-Function-Arn", v);
    snprintf(v, sizeof(v), "Root=1-%08" PRIx64 "-%.24s;Parent=%.16s;Sampled=0", (uint64_t)(now / 1000), inv->id,
             inv->id + 16);
    evhttp_add_header(h, "Lambda-Runtime-Trace-Id", v);
    evhttp_add_header(h, "Content-Type", "application/json");
    hd_send_reply(req, 200, "OK", inv->payload);
}

static void on_call_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    lambda_call_t *c = arg;
    hearth_error_t err;
    /* Everything in the sandbox goes; the runtime with it. */
    if (c->sb->sbx != NULL && sbx_kill(c->sb->sbx, &err) < 0)
        hearth_log(HEARTH_LOG_ERROR, "kill at timeout: %s", err.msg);
    c->inv->outcome = HD_OUT_TIMEOUT;
    snprintf(c->inv->message, sizeof(c->inv->message), "Task timed out after %.2f seconds",
             c->inv->fn->spec->timeout_ms / 1000.0);
    finish(c);
}

static void call_on_event(proto_call_t *pc, const sbx_event_t *ev)
{
    (void)pc;
    (void)ev; /* the runtime's events come through lambda_sandbox_event */
}

static void call_cancel(proto_call_t *pc)
{
    lambda_call_t *c = (lambda_call_t *)pc;
    /* The runtime is mid-call: its answer will find no client. The call
     * runs its course (Lambda does not interrupt a runtime either). */
    (void)c;
}

static void call_free(proto_call_t *pc)
{
    lambda_call_t *c = (lambda_call_t *)pc;
    /* Without its runtime (lambda_sandbox_free) the request is gone. */
    if (c->ack != NULL && c->sb->rt != NULL)
        reply_status(c->ack, 202, "Accepted", "{\"status\":\"OK\"}");
    if (c->ev_timeout)
        event_free(c->ev_timeout);
    if (c->sb->rt != NULL && c->sb->rt->call == c)
        c->sb->rt->call = NULL;
    free(c);
}

static const proto_ops_t lambda_ops = {
    .on_event = call_on_event,
    .cancel = call_cancel,
    .free = call_free,
};

int proto_lambda_start(hd_sandbox_t *sb, hd_inv_t *inv, hearth_error_t *err)
{
    hd_runtime_t *rt = sb->rt;
    if (rt == NULL || !rt->up || rt->failed)
        return hearth_error_set(err, ESRCH, "the function's runtime is not running");
    lambda_call_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return hearth_error_set(err, ENOMEM, "invocation");
    c->base.ops = &lambda_ops;
    c->sb = sb;
    c->inv = inv;
    sbx_cpu_ns(sb->sbx, &c->base.cpu_before, err);
    c->ev_timeout = evtimer_new(sb->hd->base, on_call_timeout, c);
    const cfg_function_t *fn = sb->fn->spec;
    struct timeval tv = {fn->timeout_ms / 1000, (fn->timeout_ms % 1000) * 1000};
    if (c->ev_timeout == NULL || evtimer_add(c->ev_timeout, &tv) < 0) {
        call_free(&c->base);
        return hearth_error_set(err, ENOMEM, "invocation timer");
    }
    rt->log_len = 0; /* this invocation's log starts now */
    rt->call = c;
    sb->call = &c->base;
    if (live_next(rt) != NULL)
        deliver(rt, c);
    return 0;
}

/* --- the Runtime API ------------------------------------------------------------- */

/* {"errorMessage", "errorType"} of a runtime's error post: the message
 * into out, the type (if any) into type_out. */
static void error_text(struct evhttp_request *req, char *out, size_t len, char *type_out, size_t type_len,
                       const char *fallback)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    json_t *o = n ? json_loadb((const char *)evbuffer_pullup(in, -1), n, 0, NULL) : NULL;
    const char *msg = NULL, *type = NULL;
    if (o != NULL)
        json_unpack(o, "{s?s,s?s}", "errorMessage", &msg, "errorType", &type);
    if (type == NULL)
        type = evhttp_find_header(evhttp_request_get_input_headers(req), "Lambda-Runtime-Function-Error-Type");
    if (type_out != NULL) {
        snprintf(out, len, "%s", msg ? msg : fallback);
        snprintf(type_out, type_len, "%s", type ? type : "");
    } else {
        snprintf(out, len, "%s%s%s", type ? type : "", type ? ": " : "", msg ? msg : fallback);
    }
    json_decref(o);
}

static void runtime_route(struct evhttp_request *req, void *arg)
{
    hd_runtime_t *rt = arg;
    hd_sandbox_t *sb = rt->sb;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    static const char prefix[] = "/2018-06-01/runtime/";
    if (path == NULL || strncmp(path, prefix, sizeof(prefix) - 1) != 0) {
        reply_status(req, 404, "Not Found", "{\"errorMessage\":\"unknown route\",\"errorType\":\"InvalidRoute\"}");
        return;
    }
    const char *p = path + sizeof(prefix) - 1;
    if (strcmp(p, "invocation/next") == 0 && m == EVHTTP_REQ_GET) {
        if (live_next(rt) != NULL) {
            reply_status(req, 400, "Bad Request", "{\"errorMessage\":\"a `next` is already waiting\"}");
            return;
        }
        rt->next = req;
        if (!rt->up) {
            rt->up = true;
            event_del(rt->ev_init);
            hd_sandbox_up(sb); /* may dispatch at once, onto this `next` */
            return;
        }
        if (rt->call != NULL && !rt->call->delivered)
            deliver(rt, rt->call);
        return;
    }
    if (strcmp(p, "init/error") == 0 && m == EVHTTP_REQ_POST) {
        char why[256];
        error_text(req, why, sizeof(why), NULL, 0, "the runtime failed to initialise");
        reply_status(req, 202, "Accepted", "{\"status\":\"OK\"}");
        if (!rt->up && !rt->failed) {
            rt->failed = true;
            char msg[300];
            snprintf(msg, sizeof(msg), "init error: %s", why);
            hd_sandbox_failed(sb, msg);
        }
        return;
    }
    /* invocation/{id}/response | invocation/{id}/error */
    char id[64], what[16];
    if (sscanf(p, "invocation/%63[^/]/%15s", id, what) == 2 && m == EVHTTP_REQ_POST) {
        lambda_call_t *c = rt->call;
        if (c == NULL || !c->delivered || c->finished || strcmp(id, c->inv->id) != 0) {
            reply_status(req, 400, "Bad Request",
                         "{\"errorMessage\":\"no such invocation in flight\",\"errorType\":\"InvalidRequestID\"}");
            return;
        }
        if (strcmp(what, "response") == 0) {
            struct evbuffer *in = evhttp_request_get_input_buffer(req);
            if (evbuffer_get_length(in) > sb->hd->cfg->max_body_bytes) {
                c->inv->outcome = HD_OUT_TOO_LARGE;
                snprintf(c->inv->message, sizeof(c->inv->message), "the function's response exceeds %" PRIu64 " bytes",
                         sb->hd->cfg->max_body_bytes);
            } else {
                evbuffer_add_buffer(c->inv->output, in);
            }
        } else if (strcmp(what, "error") == 0) {
            c->inv->outcome = HD_OUT_FAILED;
            error_text(req, c->inv->message, sizeof(c->inv->message), c->inv->error_type,
                       sizeof(c->inv->error_type), "the function reported an error");
        } else {
            reply_status(req, 404, "Not Found", "{\"errorMessage\":\"unknown route\"}");
            return;
        }
        /* Answered when the call is freed, in the same turn of the loop:
         * libevent reads nothing more from this connection meanwhile. */
        c->ack = req;
        finish(c);
        return;
    }
    reply_status(req, 404, "Not Found", "{\"errorMessage\":\"unknown route\",\"errorType\":\"InvalidRoute\"}");
}

static void on_init_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hd_runtime_t *rt = arg;
    if (rt->up || rt->failed)
        return;
    rt->failed = true;
    char msg[128];
    snprintf(msg, sizeof(msg), "init error: the runtime did not ask for an invocation within %d s", INIT_TIMEOUT_S);
    hd_sandbox_failed(rt->sb, msg);
}

void lambda_sandbox_event(hd_sandbox_t *sb, const sbx_event_t *ev)
{
    hd_runtime_t *rt = sb->rt;
    if (!hd_process_gone(ev, &rt->pid) || rt->failed)
        return;
    char msg[256];
    if (ev->kind == SBX_EV_START_FAILED)
        snprintf(msg, sizeof(msg), "cannot start the runtime `%s` (%s): %s", sb->fn->spec->command[0], ev->what,
                 strerror(ev->err));
    else if (ev->end.kind == SBX_END_OOM)
        snprintf(msg, sizeof(msg), "Runtime exited: out of memory (limit %u MiB)", sb->fn->spec->memory_mb);
    else if (ev->end.kind == SBX_END_SIGNAL)
        snprintf(msg, sizeof(msg), "Runtime exited with signal %d (%s)", ev->end.status, strsignal(ev->end.status));
    else
        snprintf(msg, sizeof(msg), "Runtime exited with error: exit status %d", ev->end.status);
    rt->failed = true;
    if (!rt->up) {
        hd_sandbox_failed(sb, msg);
        return;
    }
    lambda_call_t *c = rt->call;
    if (c != NULL && !c->finished) {
        c->inv->outcome = ev->end.kind == SBX_END_OOM ? HD_OUT_OOM : HD_OUT_LOST;
        snprintf(c->inv->message, sizeof(c->inv->message), "%s", msg);
        finish(c); /* LOST/OOM: the scheduler replaces the sandbox */
    } else {
        hd_sandbox_died(sb);
    }
}

/* Forget the connections evhttp has let go (bufferevent_free clears their
 * callbacks; our reference kept them), and accept again below the cap. */
static void reap_conns(hd_runtime_t *rt)
{
    for (int i = rt->n_conns - 1; i >= 0; i--) {
        bufferevent_data_cb rd, wr;
        bufferevent_event_cb ev;
        void *arg;
        bufferevent_getcb(rt->conns[i], &rd, &wr, &ev, &arg);
        if (rd != NULL || wr != NULL || ev != NULL)
            continue;
        bufferevent_decref(rt->conns[i]);
        rt->conns[i] = rt->conns[--rt->n_conns];
    }
    if (rt->n_conns < RUNTIME_MAX_CONNS && rt->listener != NULL) {
        evconnlistener_enable(rt->listener);
        evtimer_del(rt->ev_reap);
    }
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    reap_conns(arg);
}

/* evhttp asks us for each new connection's bufferevent: count it. */
static struct bufferevent *runtime_bev(struct event_base *base, void *arg)
{
    hd_runtime_t *rt = arg;
    reap_conns(rt);
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL || rt->n_conns >= RUNTIME_MAX_CONNS)
        return bev; /* cannot happen: the listener pauses at the cap */
    bufferevent_incref(bev);
    rt->conns[rt->n_conns++] = bev;
    if (rt->n_conns == RUNTIME_MAX_CONNS && rt->listener != NULL) {
        evconnlistener_disable(rt->listener);
        struct timeval tv = {0, RUNTIME_REAP_MS * 1000};
        event_add(rt->ev_reap, &tv);
    }
    return bev;
}

int lambda_runtime_start(hd_sandbox_t *sb, hearth_error_t *err)
{
    hearth_t *hd = sb->hd;
    const cfg_function_t *fn = sb->fn->spec;
    hd_runtime_t *rt = calloc(1, sizeof(*rt));
    if (rt == NULL)
        return hearth_error_set(err, ENOMEM, "runtime");
    rt->sb = sb;
    rt->log_fd = -1;
    sb->rt = rt;
    int lfd = -1;
    if (sbx_socket(sb->sbx, RUNTIME_PORT, false, &lfd, err) < 0)
        return hearth_error_wrap(err, "Runtime API socket");
    rt->http = evhttp_new(hd->base);
    rt->ev_reap = event_new(hd->base, -1, EV_PERSIST, on_reap, rt);
    /* The listener loops on accept until EAGAIN. */
    struct evhttp_bound_socket *bound = NULL;
    if (rt->http == NULL || rt->ev_reap == NULL || evutil_make_socket_nonblocking(lfd) < 0 ||
        (bound = evhttp_accept_socket_with_handle(rt->http, lfd)) == NULL) {
        close(lfd);
        return hearth_error_set(err, ENOMEM, "Runtime API server");
    }
    rt->listener = evhttp_bound_socket_get_listener(bound);
    evhttp_set_bevcb(rt->http, runtime_bev, rt);
    evhttp_set_max_body_size(rt->http, (ev_ssize_t)hd->cfg->max_body_bytes + 1);
    evhttp_set_allowed_methods(rt->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_gencb(rt->http, runtime_route, rt);

    int logp[2];
    if (pipe2(logp, O_CLOEXEC) < 0)
        return hearth_error_sys(err, "pipe");
    fcntl(logp[0], F_SETFL, O_NONBLOCK);
    rt->log_fd = logp[0];
    rt->ev_log = event_new(hd->base, logp[0], EV_READ | EV_PERSIST, on_log, rt);
    rt->ev_init = evtimer_new(hd->base, on_init_timeout, rt);
    struct timeval tv = {INIT_TIMEOUT_S, 0};
    if (rt->ev_log == NULL || rt->ev_init == NULL || event_add(rt->ev_log, NULL) < 0 ||
        evtimer_add(rt->ev_init, &tv) < 0) {
        close(logp[1]);
        return hearth_error_set(err, ENOMEM, "runtime events");
    }

    /* Lambda's reserved variables first (getenv finds the first of a
     * name), then the spec's, then the defaults a spec may override, as
     * on Lambda: _HANDLER, TZ, PATH, HOME, LANG. */
    char mem[64], name[128];
    snprintf(mem, sizeof(mem), "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=%u", fn->memory_mb);
    snprintf(name, sizeof(name), "AWS_LAMBDA_FUNCTION_NAME=%s", fn->name);
    const char *const reserved[] = {"AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001", name, mem,
                                    "AWS_LAMBDA_FUNCTION_VERSION=$LATEST", "LAMBDA_TASK_ROOT=/",
                                    "AWS_REGION=us-east-1", "AWS_DEFAULT_REGION=us-east-1", NULL};
    static const char *const defaults[] = {"_HANDLER=handler", "TZ=:UTC", HD_DEFAULT_PATH, "HOME=/tmp",
                                           "LANG=C.UTF-8", NULL};
    cleanup_free const char **envp = hd_function_env(fn, reserved, defaults, NULL);
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

void lambda_sandbox_free(hd_sandbox_t *sb)
{
    hd_runtime_t *rt = sb->rt;
    if (rt == NULL)
        return;
    sb->rt = NULL;
    if (rt->call != NULL) {
        rt->call->ack = NULL; /* evhttp_free takes it */
        rt->call->sb->rt = NULL;
    }
    if (rt->http)
        evhttp_free(rt->http); /* answers nothing more; a pending `next` goes with it */
    for (int i = 0; i < rt->n_conns; i++)
        bufferevent_decref(rt->conns[i]); /* evhttp_free has let go of them */
    if (rt->ev_reap)
        event_free(rt->ev_reap);
    if (rt->ev_log)
        event_free(rt->ev_log);
    if (rt->ev_init)
        event_free(rt->ev_init);
    if (rt->log_fd >= 0)
        close(rt->log_fd);
    free(rt);
}
