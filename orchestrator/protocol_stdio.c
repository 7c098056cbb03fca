/* The stdio protocol: a fresh process of the function's command per
 * invocation, inside a warm sandbox; the payload on its stdin, the result
 * from its stdout, its stderr kept as the invocation's log. Exit status 0
 * is success. Whatever the process leaves running is killed when it ends,
 * so the next invocation starts clean. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "orchestrator/daemon.h"

#define LOG_TAIL 4096

typedef struct stdio_call {
    proto_call_t base;            /* ops: stdio's */
    hd_sandbox_t *sb;
    hd_inv_t *inv;
    int in_fd, out_fd, err_fd;    /* our ends of the pipes; -1 once closed */
    struct event *ev_in, *ev_out, *ev_err, *ev_timeout;
    size_t out_cap;               /* more stdout, or more stderr, than this fails the call */
    size_t err_bytes;             /* stderr read so far (only its tail is kept) */
    pid_t pid;                    /* inside the sandbox, once started */
    bool ended;                   /* init reported its end (or it never started) */
    bool finished;                /* hd_call_done called */
    bool killed;                  /* the sandbox was killed (timeout) or died */
    sbx_end_t end;
} stdio_call_t;

static void close_fd(struct event **ev, int *fd)
{
    if (*ev != NULL) {
        event_free(*ev);
        *ev = NULL;
    }
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static void set_outcome(stdio_call_t *c)
{
    hd_inv_t *inv = c->inv;
    if (inv->outcome != HD_OUT_OK)
        return; /* already decided: start failure, timeout, too large, cancelled */
    switch (c->end.kind) {
    case SBX_END_EXIT:
        inv->status = c->end.status;
        if (c->end.status != 0) {
            inv->outcome = HD_OUT_FAILED;
            snprintf(inv->message, sizeof(inv->message), "the function exited with status %d", c->end.status);
        }
        break;
    case SBX_END_SIGNAL:
        inv->outcome = HD_OUT_CRASHED;
        inv->status = c->end.status;
        snprintf(inv->message, sizeof(inv->message), "the function was killed by signal %d (%s)", c->end.status,
                 strsignal(c->end.status));
        break;
    case SBX_END_OOM:
        inv->outcome = HD_OUT_OOM;
        snprintf(inv->message, sizeof(inv->message), "the function ran out of memory (limit %u MiB)",
                 inv->fn->spec->memory_mb);
        break;
    case SBX_END_PIDS:
        inv->outcome = HD_OUT_FAILED;
        inv->status = c->end.status;
        snprintf(inv->message, sizeof(inv->message), "the function hit its pids limit (%u)", inv->fn->spec->pids);
        break;
    case SBX_END_TIMEOUT:
        inv->outcome = HD_OUT_TIMEOUT;
        break;
    case SBX_END_LOST:
        inv->outcome = HD_OUT_LOST;
        snprintf(inv->message, sizeof(inv->message), "the function's sandbox died");
        break;
    }
}

/* Done when the process has ended and both its pipes are drained — or at
 * once when the sandbox was killed or the process never started. */
static void maybe_finish(stdio_call_t *c)
{
    if (c->finished || !c->ended || (!c->killed && (c->out_fd >= 0 || c->err_fd >= 0)))
        return;
    c->finished = true;
    close_fd(&c->ev_in, &c->in_fd);
    close_fd(&c->ev_out, &c->out_fd);
    close_fd(&c->ev_err, &c->err_fd);
    if (c->ev_timeout != NULL) {
        event_free(c->ev_timeout);
        c->ev_timeout = NULL;
    }
    set_outcome(c);
    hd_call_done(c->sb, c->inv);
}

static void on_stdin(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    stdio_call_t *c = arg;
    while (evbuffer_get_length(c->inv->payload) > 0) {
        int n = evbuffer_write(c->inv->payload, c->in_fd);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return; /* the persistent event calls us again */
            break;     /* EPIPE: the function does not read all its input; fine */
        }
    }
    close_fd(&c->ev_in, &c->in_fd);
}

static void kill_processes(stdio_call_t *c)
{
    hearth_error_t err;
    if (c->sb->sbx == NULL || !sbx_alive(c->sb->sbx))
        return;
    if (sbx_reset(c->sb->sbx, &err) < 0)
        hearth_log(HEARTH_LOG_WARN, "reset of %s: %s", sbx_cgroup_name(c->sb->sbx), err.msg);
    /* The reset read init's messages itself, our process's end among
     * them: they wait in the sandbox's queue, and the control socket will
     * not become readable for them. Have them delivered. */
    if (c->sb->ev_ctl != NULL)
        event_active(c->sb->ev_ctl, EV_READ, 0);
}

/* More output than the cap: the call fails and its processes go. */
static void too_large(stdio_call_t *c, const char *stream)
{
    hd_inv_t *inv = c->inv;
    if (inv->outcome == HD_OUT_OK) {
        inv->outcome = HD_OUT_TOO_LARGE;
        snprintf(inv->message, sizeof(inv->message), "the function's %s exceeds %zu bytes", stream, c->out_cap);
    }
    kill_processes(c);
}

static void on_stdout(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    stdio_call_t *c = arg;
    hd_inv_t *inv = c->inv;
    for (;;) {
        int n = evbuffer_read(inv->output, fd, 65536);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            close_fd(&c->ev_out, &c->out_fd);
            break;
        }
        if (evbuffer_get_length(inv->output) > c->out_cap) {
            evbuffer_drain(inv->output, evbuffer_get_length(inv->output));
            close_fd(&c->ev_out, &c->out_fd);
            too_large(c, "output");
            break;
        }
    }
    maybe_finish(c);
}

static void on_stderr(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    stdio_call_t *c = arg;
    hd_inv_t *inv = c->inv;
    char buf[16384];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            close_fd(&c->ev_err, &c->err_fd);
            break;
        }
        /* Keep the last LOG_TAIL bytes. */
        size_t take = (size_t)n;
        const char *src = buf;
        if (take >= LOG_TAIL) {
            src += take - LOG_TAIL;
            take = LOG_TAIL;
            inv->log_len = 0;
        } else if (inv->log_len + take > LOG_TAIL) {
            size_t drop = inv->log_len + take - LOG_TAIL;
            memmove(inv->log_tail, inv->log_tail + drop, inv->log_len - drop);
            inv->log_len -= drop;
        }
        memcpy(inv->log_tail + inv->log_len, src, take);
        inv->log_len += take;
        /* Only the tail is kept, but reading an endless stream is the
         * daemon's CPU, not the tenant's: it is capped like stdout. */
        c->err_bytes += (size_t)n;
        if (c->err_bytes > c->out_cap) {
            close_fd(&c->ev_err, &c->err_fd);
            too_large(c, "stderr");
            break;
        }
    }
    maybe_finish(c);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    stdio_call_t *c = arg;
    hd_inv_t *inv = c->inv;
    hearth_error_t err;
    /* Kill through the cgroup: everything, init included; the sandbox is
     * then replaced. */
    if (c->sb->sbx != NULL && sbx_kill(c->sb->sbx, &err) < 0)
        hearth_log(HEARTH_LOG_ERROR, "kill at timeout: %s", err.msg);
    /* An outcome already decided (output too large, say) stands. */
    if (inv->outcome == HD_OUT_OK) {
        inv->outcome = HD_OUT_TIMEOUT;
        snprintf(inv->message, sizeof(inv->message), "the function ran past its timeout of %u ms",
                 inv->fn->spec->timeout_ms);
    }
    c->killed = true;
    c->ended = true;
    maybe_finish(c);
}

static void stdio_on_event(proto_call_t *pc, const sbx_event_t *ev)
{
    stdio_call_t *c = (stdio_call_t *)pc;
    if (c->finished)
        return;
    switch (ev->kind) {
    case SBX_EV_STARTED:
        c->pid = ev->pid;
        break;
    case SBX_EV_START_FAILED:
        c->inv->outcome = HD_OUT_START;
        snprintf(c->inv->message, sizeof(c->inv->message), "cannot start `%s` (%s): %s",
                 c->inv->fn->spec->command[0], ev->what, strerror(ev->err));
        c->ended = true;
        c->killed = true; /* nothing will write to the pipes */
        break;
    case SBX_EV_END:
        if (ev->pid != c->pid)
            return;
        c->end = ev->end;
        c->ended = true;
        /* Leftovers (double-forked children) die now, and with them the
         * last writers of our pipes; init says when there are none. */
        if (!ev->end.alone)
            kill_processes(c);
        break;
    case SBX_EV_DIED:
        c->end = ev->end;
        c->ended = true;
        c->killed = true;
        break;
    }
    maybe_finish(c);
}

static void stdio_cancel(proto_call_t *pc)
{
    stdio_call_t *c = (stdio_call_t *)pc;
    if (c->finished)
        return;
    c->inv->outcome = HD_OUT_CANCELLED;
    snprintf(c->inv->message, sizeof(c->inv->message), "the client went away");
    kill_processes(c);
}

static void stdio_free(proto_call_t *pc)
{
    stdio_call_t *c = (stdio_call_t *)pc;
    if (c == NULL)
        return;
    close_fd(&c->ev_in, &c->in_fd);
    close_fd(&c->ev_out, &c->out_fd);
    close_fd(&c->ev_err, &c->err_fd);
    if (c->ev_timeout != NULL)
        event_free(c->ev_timeout);
    free(c);
}

static const proto_ops_t stdio_ops = {
    .on_event = stdio_on_event,
    .cancel = stdio_cancel,
    .free = stdio_free,
};

static int make_pipe(int fds[2], int our_end, hearth_error_t *err)
{
    if (pipe2(fds, O_CLOEXEC) < 0)
        return hearth_error_sys(err, "pipe");
    if (fcntl(fds[our_end], F_SETFL, O_NONBLOCK) < 0)
        return hearth_error_sys(err, "set O_NONBLOCK");
    return 0;
}

int proto_stdio_start(hd_sandbox_t *sb, hd_inv_t *inv, hearth_error_t *err)
{
    /* The sandbox's version of the function: a call queued before an
     * update runs the new version, on a sandbox built for it. */
    const cfg_function_t *fn = sb->fn != NULL ? sb->fn->spec : inv->fn->spec;
    hearth_t *hd = sb->hd;
    stdio_call_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return hearth_error_set(err, ENOMEM, "invocation");
    c->base.ops = &stdio_ops;
    c->sb = sb;
    c->inv = inv;
    c->in_fd = c->out_fd = c->err_fd = -1;
    c->out_cap = hd->cfg->max_body_bytes;

    int in[2] = {-1, -1}, out[2] = {-1, -1}, er[2] = {-1, -1};
    cleanup_free const char **envp = NULL;
    if (make_pipe(in, 1, err) < 0 || make_pipe(out, 0, err) < 0 || make_pipe(er, 0, err) < 0)
        goto fail;

    /* The environment: the spec's, then ours (names HEARTH_* are refused in
     * specs), PATH and HOME unless the spec sets them. */
    char inv_env[64], fn_env[128], deadline_env[64];
    snprintf(inv_env, sizeof(inv_env), "HEARTH_INVOCATION_ID=%s", inv->id);
    snprintf(fn_env, sizeof(fn_env), "HEARTH_FUNCTION=%s", fn->name);
    uint64_t deadline = (uint64_t)wall_ms() + fn->timeout_ms;
    snprintf(deadline_env, sizeof(deadline_env), "HEARTH_DEADLINE_MS=%" PRIu64, deadline);
    static const char *const defaults[] = {HD_DEFAULT_PATH, "HOME=/tmp", NULL};
    const char *const ours[] = {inv_env, fn_env, deadline_env, NULL};
    if ((envp = hd_function_env(fn, NULL, defaults, ours)) == NULL) {
        hearth_error_set(err, ENOMEM, "environment");
        goto fail;
    }

    if (sbx_cpu_ns(sb->sbx, &c->base.cpu_before, err) < 0)
        goto fail;
    sbx_exec_t ex = {
        .argv = (const char *const *)fn->command,
        .envp = envp,
        .cwd = "/",
        .stdin_fd = in[0],
        .stdout_fd = out[1],
        .stderr_fd = er[1],
    };
    if (sbx_exec_send(sb->sbx, &ex, err) < 0)
        goto fail;
    close(in[0]);
    close(out[1]);
    close(er[1]);
    c->in_fd = in[1];
    c->out_fd = out[0];
    c->err_fd = er[0];
    c->ev_in = event_new(hd->base, c->in_fd, EV_WRITE | EV_PERSIST, on_stdin, c);
    c->ev_out = event_new(hd->base, c->out_fd, EV_READ | EV_PERSIST, on_stdout, c);
    c->ev_err = event_new(hd->base, c->err_fd, EV_READ | EV_PERSIST, on_stderr, c);
    c->ev_timeout = evtimer_new(hd->base, on_timeout, c);
    struct timeval tv = {fn->timeout_ms / 1000, (fn->timeout_ms % 1000) * 1000};
    if (c->ev_in == NULL || c->ev_out == NULL || c->ev_err == NULL || c->ev_timeout == NULL ||
        event_add(c->ev_in, NULL) < 0 || event_add(c->ev_out, NULL) < 0 || event_add(c->ev_err, NULL) < 0 ||
        event_add(c->ev_timeout, &tv) < 0) {
        /* The request is already with init: the call must run its course;
         * without events it cannot, so kill what was started. */
        hearth_error_set(err, ENOMEM, "events for the invocation");
        kill_processes(c);
        stdio_free(&c->base);
        return -1;
    }
    sb->call = &c->base;
    return 0;

fail:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
        if (er[i] >= 0)
            close(er[i]);
    }
    free(c);
    return -1;
}
