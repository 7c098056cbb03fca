/* The spawner: a small fork server started before the daemon grows, so
 * that cloning a sandbox copies a few megabytes of page tables instead of
 * the daemon's (FIELD-NOTES: 164 µs from a small parent, 13 ms from a
 * 512 MB one). It is the parent of every sandbox's init, reaps them, and
 * dies with the daemon (and so do they, through PR_SET_PDEATHSIG).
 *
 * Request (one SOCK_SEQPACKET datagram): a JSON object with the spec and
 * the uid, followed by the raw BPF program; the cgroup dirfds ride along
 * as SCM_RIGHTS. Reply: JSON {"ok", "pid" | "error"} with the pidfd and
 * the control socket attached. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* A request the socket had no room for yet, with its own copies of the fds. */
typedef struct unsent {
    char *buf;
    size_t len;
    int fds[SBX_CG_MAX_HIER];
    int n_fds;
    struct unsent *next;
} unsent_t;

struct sbx_spawner {
    pid_t pid;
    int sock;
    unsent_t *unsent, *unsent_tail; /* oldest first */
};

static ssize_t send_msg(int sock, const void *buf, size_t len, const int *fds, int n_fds, int flags)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    char ctrl[CMSG_SPACE(sizeof(int) * 8)];
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n_fds > 0) {
        if (n_fds > 8) {
            errno = EINVAL;
            return -1;
        }
        memset(ctrl, 0, sizeof(ctrl));
        mh.msg_control = ctrl;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n_fds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n_fds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n_fds);
    }
    ssize_t n;
    do
        n = sendmsg(sock, &mh, MSG_NOSIGNAL | flags);
    while (n < 0 && errno == EINTR);
    return n;
}

ssize_t sbx_send_msg(int sock, const void *buf, size_t len, const int *fds, int n_fds)
{
    return send_msg(sock, buf, len, fds, n_fds, 0);
}

/* A peer that exits with messages of ours unread makes our next receive
 * fail once with ECONNRESET, although what it sent before is still queued
 * (a child's report of why it failed): receive again then. */
static bool retry_recv(bool *reset)
{
    if (errno == EINTR)
        return true;
    if (errno != ECONNRESET || *reset)
        return false;
    *reset = true;
    return true;
}

ssize_t sbx_recv(int sock, void *buf, size_t len, int flags)
{
    ssize_t n;
    bool reset = false;
    do
        n = recv(sock, buf, len, flags);
    while (n < 0 && retry_recv(&reset));
    return n;
}

ssize_t sbx_recv_msg(int sock, void *buf, size_t len, int *fds, int max_fds, int *n_fds)
{
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    char ctrl[CMSG_SPACE(sizeof(int) * 8)];
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl, .msg_controllen = sizeof(ctrl)};
    ssize_t n;
    bool reset = false;
    do
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && retry_recv(&reset));
    *n_fds = 0;
    if (n < 0)
        return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        int cnt = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *in = (int *)CMSG_DATA(c);
        for (int i = 0; i < cnt; i++) {
            if (*n_fds < max_fds)
                fds[(*n_fds)++] = in[i];
            else
                close(in[i]);
        }
    }
    if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        for (int i = 0; i < *n_fds; i++)
            close(fds[i]);
        *n_fds = 0;
        errno = EMSGSIZE;
        return -1;
    }
    return n;
}

/* --- the spawner process ------------------------------------------------ */

#define MAX_INFLIGHT 64
#define AHEAD_IDLE_MS 5 /* idle this long, clone a child ahead */

typedef struct inflight {
    uint64_t ticket;
    sbx_spawning_t sp;
    bool ahead; /* on the child cloned ahead */
} inflight_t;

/* ahead: the init was cloned ahead (said for tests and counts). */
static void reply(int sock, uint64_t ticket, pid_t pid, bool ahead, const char *error, const int *fds, int n_fds)
{
    json_t *o = error ? json_pack("{s:I,s:b,s:s}", "ticket", (json_int_t)ticket, "ok", 0, "error", error)
                      : json_pack("{s:I,s:b,s:i,s:b}", "ticket", (json_int_t)ticket, "ok", 1, "pid", pid, "ahead",
                                  (int)ahead);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (s != NULL)
        sbx_send_msg(sock, s, strlen(s), fds, n_fds);
    free(s);
    json_decref(o);
}

/* Every disposition of ours that is not the default. */
static const int spawner_ignored[] = {SIGCHLD, SIGPIPE, SIGINT, SIGTERM, SIGHUP, 0};
/* The mount template (sbx_template_open), or -1. */
static int spawner_template = -1;

/* A request, decoded; req points into it. */
typedef struct decoded {
    json_t *json;
    sbx_spec_t spec;
    sbx_mount_t *mounts;
    sbx_seccomp_t sc;
    uint64_t ticket;
} decoded_t;

static void decoded_free(decoded_t *d)
{
    free(d->mounts);
    json_decref(d->json);
}

/* buf stays in use: the BPF program is read where it lies. */
static int decode(char *buf, size_t n, int n_cg_fds, decoded_t *d, sbx_spawn_req_t *req, hearth_error_t *err)
{
    *d = (decoded_t){0};
    uint32_t jlen;
    if (n < 4 || (memcpy(&jlen, buf, 4), jlen > n - 4))
        return hearth_error_set(err, EINVAL, "spawner: malformed request");
    d->json = json_loadb(buf + 4, jlen, 0, NULL);
    int uid = 0, into = 0, resolved = 0, sc_init = 0;
    json_int_t tmp = 0, nofile = 0, ticket = 0;
    json_t *mounts = NULL;
    if (d->json == NULL ||
        json_unpack(d->json, "{s:I,s?:s,s:s,s:I,s:I,s:i,s:b,s:b,s:b,s:o}", "ticket", &ticket, "rootfs",
                    &d->spec.rootfs, "hostname", &d->spec.hostname, "tmp_bytes", &tmp, "nofile", &nofile, "uid", &uid,
                    "into_cgroup", &into, "paths_resolved", &resolved, "seccomp_in_init", &sc_init, "mounts",
                    &mounts) < 0 ||
        !json_is_array(mounts))
        return hearth_error_set(err, EINVAL, "spawner: malformed request");
    d->ticket = (uint64_t)ticket;
    size_t nm = json_array_size(mounts);
    d->mounts = calloc(nm ? nm : 1, sizeof(*d->mounts));
    if (d->mounts == NULL)
        return hearth_error_set(err, ENOMEM, "spawner: out of memory");
    for (size_t i = 0; i < nm; i++) {
        int ro = 0;
        if (json_unpack(json_array_get(mounts, i), "[ssb]", &d->mounts[i].source, &d->mounts[i].target, &ro) < 0)
            d->mounts[i].source = d->mounts[i].target = "";
        d->mounts[i].readonly = ro;
    }
    d->spec.tmp_bytes = (uint64_t)tmp;
    d->spec.paths_resolved = resolved;
    d->spec.nofile = (uint32_t)nofile;
    d->spec.mounts = d->mounts;
    d->spec.n_mounts = nm;
    /* The BPF program follows the JSON; the child keeps its copy. */
    d->sc = (sbx_seccomp_t){.prog = {.len = (unsigned short)((n - 4 - jlen) / sizeof(struct sock_filter)),
                                     .filter = (struct sock_filter *)(buf + 4 + jlen)},
                            .in_init = sc_init};
    *req = (sbx_spawn_req_t){.spec = &d->spec, .uid = (uid_t)uid, .seccomp = &d->sc, .into_cgroup = into,
                             .n_cg_fds = n_cg_fds < SBX_CG_MAX_HIER ? n_cg_fds : SBX_CG_MAX_HIER,
                             .mount_template = sbx_template_fits(&d->spec) ? spawner_template : -1,
                             .changed_signals = spawner_ignored};
    return 0;
}

/* A child cloned ahead decodes its request itself, and keeps it. It was
 * not born into a cgroup: a request that says so is not for it. */
static int decode_in_child(char *msg, size_t len, int n_cg_fds, sbx_spawn_req_t *req, hearth_error_t *err)
{
    static decoded_t d;
    if (decode(msg, len, n_cg_fds, &d, req, err) < 0)
        return -1;
    if (req->into_cgroup)
        return hearth_error_set(err, EINVAL, "spawner: a child cloned ahead cannot be cloned into its cgroup");
    return 0;
}

/* Decode a request and start its init: on the child cloned ahead if
 * there is one (only where requests are not into_cgroup: v1), else on a
 * fresh clone. 1 if it is now in flight. */
static int start_one(int sock, char *buf, ssize_t n, const int *fds, int n_fds, sbx_netns_stock_t *netns,
                     sbx_spawning_t *ahead, inflight_t *slot)
{
    hearth_error_t err = {0};
    decoded_t d;
    sbx_spawn_req_t sreq;
    int started = 0;
    /* The child first: it decodes while we do. */
    bool given = ahead->pid > 0 && sbx_spawn_give(ahead, n_fds, buf, (size_t)n, &slot->sp, &err) == 0;
    if (decode(buf, (size_t)n, n_fds, &d, &sreq, &err) < 0) {
        if (given)
            sbx_spawn_abort(&slot->sp);
        reply(sock, d.ticket, 0, false, err.msg, NULL, 0);
        decoded_free(&d);
        return 0;
    }
    sreq.netns = netns;
    for (int i = 0; i < sreq.n_cg_fds; i++)
        sreq.cg_fds[i] = fds[i];
    int rc = given ? sbx_spawn_begin_given(&sreq, &slot->sp, &err) : sbx_spawn_begin(&sreq, &slot->sp, &err);
    if (rc < 0) {
        reply(sock, d.ticket, 0, false, err.msg, NULL, 0);
    } else {
        slot->ticket = d.ticket;
        slot->ahead = given;
        fcntl(slot->sp.sock, F_SETFL, O_NONBLOCK);
        started = 1;
    }
    decoded_free(&d);
    return started;
}

__attribute__((noreturn)) static void spawner_main(int sock, int netns_ahead, bool inits_ahead)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    prctl(PR_SET_NAME, "hearth-spawner");
    /* From the defaults (whatever the daemon's starter ignored included),
     * so that each init has only spawner_ignored to undo. Inits are reaped
     * by the kernel; their owners watch pidfds. A Ctrl-C or `pkill hearthd`
     * reaches us too: the daemon drains on it and needs us meanwhile. We go
     * when it goes (PDEATHSIG, or EOF). */
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sbx_signal_default(sig);
    for (const int *sig = spawner_ignored; *sig; sig++)
        signal(*sig, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (sock != 3 && dup3(sock, 3, O_CLOEXEC) < 0)
        _exit(1);
    syscall(SYS_close_range, 4, ~0U, 0);
    char *buf = malloc(SBX_MAX_MSG);
    inflight_t *fl = calloc(MAX_INFLIGHT, sizeof(*fl));
    if (buf == NULL || fl == NULL)
        _exit(1);
    /* The mount template first: it forks, and the stock below is a thread.
     * Without it every sandbox builds its root from the host's mount
     * table: slower, not wrong. */
    hearth_error_t tmpl_err;
    if (sbx_template_open(&spawner_template, &tmpl_err) < 0)
        fprintf(stderr, "hearth-spawner: no mount template (%s): each sandbox builds its whole root\n",
                tmpl_err.msg);
    /* Network namespaces made while nobody waits (netns.c). Without the
     * stock every creation makes its own: slower, not wrong. */
    hearth_error_t stock_err;
    sbx_netns_stock_t *netns = NULL;
    if (sbx_netns_stock_start(netns_ahead, &netns, &stock_err) < 0)
        netns = NULL;
    int n_fl = 0;
    struct pollfd pfd[MAX_INFLIGHT + 2];
    sbx_spawning_t ahead = {.pid = 0, .pidfd = -1, .sock = -1};
    bool ahead_failed = false; /* cloning one failed: not again until a request came */
    for (;;) {
        /* Stop taking requests while every slot is busy. */
        pfd[0] = (struct pollfd){3, n_fl < MAX_INFLIGHT ? POLLIN : 0, 0};
        for (int i = 0; i < n_fl; i++)
            pfd[i + 1] = (struct pollfd){fl[i].sp.sock, POLLIN, 0};
        /* The child cloned ahead says nothing while it waits: anything on
         * its socket (a hang-up above all) means it is gone. */
        nfds_t n_pfd = (nfds_t)n_fl + 1;
        if (ahead.pid > 0)
            pfd[n_pfd++] = (struct pollfd){ahead.sock, POLLIN, 0};
        /* A child cloned ahead once we have been idle a moment: not on the
         * CPU the sandbox just made needs for its first call. */
        bool want_ahead = inits_ahead && !ahead_failed && ahead.pid == 0 && n_fl == 0;
        int np = poll(pfd, n_pfd, want_ahead ? AHEAD_IDLE_MS : -1);
        if (np < 0) {
            if (errno == EINTR)
                continue;
            _exit(1);
        }
        if (np == 0) {
            hearth_error_t err;
            if (sbx_spawn_ahead(spawner_ignored, decode_in_child, spawner_template, &ahead, &err) < 0) {
                fprintf(stderr, "hearth-spawner: cannot clone an init ahead (%s); the next creation clones its own\n",
                        err.msg);
                ahead_failed = true;
            }
            continue;
        }
        if (ahead.pid > 0 && pfd[n_pfd - 1].revents != 0) {
            sbx_spawn_abort(&ahead);
            ahead.pid = 0;
        }
        for (int i = n_fl - 1; i >= 0; i--) {
            if (!(pfd[i + 1].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            hearth_error_t err = {0};
            sbx_spawn_res_t res;
            int rc = sbx_spawn_advance(&fl[i].sp, &res, &err);
            if (rc == 0)
                continue;
            if (rc > 0) {
                int out[2] = {res.pidfd, res.ctl};
                reply(3, fl[i].ticket, res.pid, fl[i].ahead, NULL, out, 2);
                close(res.pidfd);
                close(res.ctl);
            } else {
                reply(3, fl[i].ticket, 0, false, err.msg, NULL, 0);
            }
            fl[i] = fl[--n_fl];
        }
        if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            int fds[SBX_CG_MAX_HIER], n_fds;
            ssize_t n = sbx_recv_msg(3, buf, SBX_MAX_MSG, fds, SBX_CG_MAX_HIER, &n_fds);
            if (n == 0 || (n < 0 && errno != EMSGSIZE))
                _exit(0); /* the daemon is gone; PDEATHSIG takes the inits */
            if (n > 0) {
                ahead_failed = false;
                sbx_netns_stock_busy(netns, n_fl + 1); /* before it takes one */
                n_fl += start_one(3, buf, n, fds, n_fds, netns, &ahead, &fl[n_fl]);
            } else {
                reply(3, 0, 0, false, "spawner: request too large", NULL, 0);
            }
            for (int i = 0; i < n_fds; i++)
                close(fds[i]);
        }
        sbx_netns_stock_busy(netns, n_fl);
    }
}

int sbx_spawner_start(int netns_ahead, bool inits_ahead, sbx_spawner_t **out, hearth_error_t *err)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return hearth_error_sys(err, "spawner socketpair");
    pid_t pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        return hearth_error_sys(err, "fork spawner");
    }
    if (pid == 0) {
        close(sv[0]);
        spawner_main(sv[1], netns_ahead, inits_ahead);
    }
    close(sv[1]);
    sbx_spawner_t *sp = calloc(1, sizeof(*sp));
    if (sp == NULL) {
        close(sv[0]);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return hearth_error_set(err, ENOMEM, "spawner");
    }
    sp->pid = pid;
    sp->sock = sv[0];
    *out = sp;
    return 0;
}

int sbx_spawner_fd(const sbx_spawner_t *sp)
{
    return sp->sock;
}

int sbx_spawner_send(sbx_spawner_t *sp, uint64_t ticket, const sbx_spawn_req_t *req, hearth_error_t *err)
{
    const sbx_spec_t *spec = req->spec;
    json_t *mounts = json_array();
    for (size_t i = 0; mounts && i < spec->n_mounts; i++)
        json_array_append_new(mounts, json_pack("[ssb]", spec->mounts[i].source, spec->mounts[i].target,
                                                (int)spec->mounts[i].readonly));
    json_t *o = json_pack("{s:I,s:s*,s:s,s:I,s:I,s:i,s:b,s:b,s:b,s:o}", "ticket", (json_int_t)ticket, "rootfs",
                          spec->rootfs, "hostname", spec->hostname, "tmp_bytes", (json_int_t)spec->tmp_bytes, "nofile",
                          (json_int_t)spec->nofile, "uid", (int)req->uid, "into_cgroup", (int)req->into_cgroup,
                          "paths_resolved", (int)spec->paths_resolved, "seccomp_in_init", (int)req->seccomp->in_init,
                          "mounts", mounts);
    cleanup_free char *js = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (js == NULL)
        return hearth_error_set(err, ENOMEM, "spawner request");
    uint32_t jlen = (uint32_t)strlen(js);
    size_t blen = (size_t)req->seccomp->prog.len * sizeof(struct sock_filter);
    size_t len = 4 + jlen + blen;
    if (len > SBX_MAX_MSG)
        return hearth_error_set(err, E2BIG, "spawner request too large");
    cleanup_free char *buf = malloc(len);
    if (buf == NULL)
        return hearth_error_set(err, ENOMEM, "spawner request");
    memcpy(buf, &jlen, 4);
    memcpy(buf + 4, js, jlen);
    memcpy(buf + 4 + jlen, req->seccomp->prog.filter, blen);
    /* Never wait for room: the spawner may itself be waiting to send us
     * answers, which our caller reads only once we return (a burst of
     * hundreds of creations deadlocked both). What does not fit waits
     * here for sbx_spawner_flush, in order. */
    if (sp->unsent == NULL) {
        if (send_msg(sp->sock, buf, len, req->cg_fds, req->n_cg_fds, MSG_DONTWAIT) == (ssize_t)len)
            return 0;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return hearth_error_sys(err, "send to spawner");
    }
    unsent_t *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return hearth_error_set(err, ENOMEM, "spawner request");
    for (int i = 0; i < req->n_cg_fds; i++) {
        if ((u->fds[i] = fcntl(req->cg_fds[i], F_DUPFD_CLOEXEC, 0)) < 0) {
            hearth_error_sys(err, "spawner request");
            while (i-- > 0)
                close(u->fds[i]);
            free(u);
            return -1;
        }
        u->n_fds++;
    }
    u->buf = steal_pointer(&buf);
    u->len = len;
    if (sp->unsent_tail != NULL)
        sp->unsent_tail->next = u;
    else
        sp->unsent = u;
    sp->unsent_tail = u;
    return 0;
}

static void unsent_free(unsent_t *u)
{
    for (int i = 0; i < u->n_fds; i++)
        close(u->fds[i]);
    free(u->buf);
    free(u);
}

int sbx_spawner_flush(sbx_spawner_t *sp, hearth_error_t *err)
{
    while (sp->unsent != NULL) {
        unsent_t *u = sp->unsent;
        if (send_msg(sp->sock, u->buf, u->len, u->fds, u->n_fds, MSG_DONTWAIT) != (ssize_t)u->len) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return hearth_error_sys(err, "send to spawner");
        }
        sp->unsent = u->next;
        if (sp->unsent == NULL)
            sp->unsent_tail = NULL;
        unsent_free(u);
    }
    return 0;
}

int sbx_spawner_recv(sbx_spawner_t *sp, uint64_t *ticket, bool *failed, sbx_spawn_res_t *res, hearth_error_t *err)
{
    char rep[2048];
    int fds[2], n_fds;
    ssize_t n = sbx_recv_msg(sp->sock, rep, sizeof(rep) - 1, fds, 2, &n_fds);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    if (n <= 0)
        return hearth_error_set(err, n < 0 ? errno : EPIPE, "the spawner is gone");
    json_t *r = json_loadb(rep, (size_t)n, 0, NULL);
    int ok = 0, pid = 0, ahead = 0;
    json_int_t t = 0;
    const char *e = NULL;
    if (r == NULL || json_unpack(r, "{s:I,s:b,s?:i,s?:b,s?:s}", "ticket", &t, "ok", &ok, "pid", &pid, "ahead", &ahead,
                                 "error", &e) < 0) {
        json_decref(r);
        for (int i = 0; i < n_fds; i++)
            close(fds[i]);
        return hearth_error_set(err, EPROTO, "spawner: malformed answer");
    }
    *ticket = (uint64_t)t;
    *failed = !ok || n_fds != 2;
    if (*failed) {
        hearth_error_set(err, 0, "%s", e ? e : "spawner: answer without fds");
        for (int i = 0; i < n_fds; i++)
            close(fds[i]);
    } else {
        res->pid = pid;
        res->pidfd = fds[0];
        res->ctl = fds[1];
        res->ahead = ahead;
    }
    json_decref(r);
    return 1;
}

void sbx_spawner_stop(sbx_spawner_t *sp)
{
    if (sp == NULL)
        return;
    close(sp->sock); /* EOF: the spawner exits */
    waitpid(sp->pid, NULL, 0);
    while (sp->unsent != NULL) {
        unsent_t *u = sp->unsent;
        sp->unsent = u->next;
        unsent_free(u);
    }
    free(sp);
}
