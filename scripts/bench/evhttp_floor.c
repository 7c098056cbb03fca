/* The floors of the warm-invocation benchmark (issue 3, issue 7 item 3): a bare
 * evhttp server (libevent 2.1) that answers every request with a fixed body, on
 * a Unix socket and on TCP — what hearthd's HTTP layer cannot beat — and, with
 * -H, the same server forwarding each request over one Unix-socket hop to a
 * worker process, which answers it: what a daemon that hands work to another
 * process cannot beat either.
 *
 *   evhttp_floor [-H] [-u SOCKET] [-p PORT] [-b BODY]
 *
 *   -u SOCKET  listen on this Unix socket path (removed first and at exit)
 *   -p PORT    listen on 127.0.0.1:PORT; 0 picks a free port (default: no TCP)
 *   -H         hop mode: the request body goes to a worker process over a
 *              socketpair (a 4-byte length, then the bytes); the worker answers
 *              with the fixed body the same way, and that is the reply
 *   -b BODY    the fixed body (default "hello, hearth!\n")
 *
 * Once listening it prints "ready PORT" (0 without TCP) on stdout. SIGTERM or
 * SIGINT stops it. Every answer is 200 with Content-Type
 * application/octet-stream; keep-alive as evhttp does it (HTTP/1.1 default).
 *
 * Build: gcc -std=gnu11 -O2 -o build/bench/evhttp_floor scripts/bench/evhttp_floor.c -levent
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *body = "hello, hearth!\n";
static const char *unix_path;

/* ------------------------------------------------------------ the worker */

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads framed requests, answers each with the framed fixed body; batches the
 * answers to every request that one read brought in. Exits on EOF. */
static void worker(int fd)
{
    size_t cap = 1 << 20, len = 0;
    char *in = malloc(cap);
    uint32_t blen = (uint32_t)strlen(body);
    size_t frame = 4 + blen;
    size_t ocap = 1 << 16;
    char *out = malloc(ocap);
    if (!in || !out)
        _exit(1);
    for (;;) {
        ssize_t n = read(fd, in + len, cap - len);
        if (n == 0)
            _exit(0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            _exit(1);
        }
        len += (size_t)n;
        size_t off = 0, olen = 0;
        while (len - off >= 4) {
            uint32_t l;
            memcpy(&l, in + off, 4);
            if (l > cap - 4)
                _exit(1); /* larger than a frame may be */
            if (len - off < 4 + (size_t)l)
                break;
            off += 4 + l;
            if (olen + frame > ocap) {
                ocap *= 2;
                if (!(out = realloc(out, ocap)))
                    _exit(1);
            }
            memcpy(out + olen, &blen, 4);
            memcpy(out + olen + 4, body, blen);
            olen += frame;
        }
        memmove(in, in + off, len - off);
        len -= off;
        if (olen && write_all(fd, out, olen) < 0)
            _exit(1);
    }
}

/* ------------------------------------------------------------ the server */

struct pending { /* a request waiting for the worker's answer, in order */
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    int dead; /* its connection closed: evhttp freed the request */
    struct pending *next;
};
static struct pending *head, *tail;
static struct bufferevent *hop; /* to the worker; NULL without -H */

static void reply(struct evhttp_request *req, const void *p, size_t n)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, p, n);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/octet-stream");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

static void conn_closed(struct evhttp_connection *evcon, void *arg)
{
    (void)arg;
    for (struct pending *p = head; p; p = p->next)
        if (p->evcon == evcon)
            p->dead = 1;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    (void)arg;
    if (!hop) {
        reply(req, body, strlen(body));
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    uint32_t l = (uint32_t)evbuffer_get_length(in);
    struct pending *p = calloc(1, sizeof *p);
    if (!p) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    p->req = req;
    p->evcon = evhttp_request_get_connection(req);
    evhttp_connection_set_closecb(p->evcon, conn_closed, NULL);
    if (tail)
        tail->next = p;
    else
        head = p;
    tail = p;
    struct evbuffer *out = bufferevent_get_output(hop);
    evbuffer_add(out, &l, 4);
    evbuffer_add_buffer(out, in);
}

static void on_worker_answer(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        uint32_t l;
        if (evbuffer_copyout(in, &l, 4) < 4 || evbuffer_get_length(in) < 4 + (size_t)l)
            return;
        evbuffer_drain(in, 4);
        struct pending *p = head;
        if (!p) {
            fprintf(stderr, "evhttp_floor: an answer from the worker with nothing pending\n");
            exit(1);
        }
        if (!(head = p->next))
            tail = NULL;
        if (!p->dead) {
            char buf[4096];
            if (l <= sizeof buf) {
                evbuffer_remove(in, buf, l);
                reply(p->req, buf, l);
            } else {
                evbuffer_drain(in, l);
                evhttp_send_error(p->req, 500, NULL);
            }
        } else {
            evbuffer_drain(in, l);
        }
        free(p);
    }
}

static void on_worker_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)arg;
    fprintf(stderr, "evhttp_floor: the worker went away (events 0x%x)\n", what);
    exit(1);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopbreak(arg);
}

static int listen_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "evhttp_floor: socket path too long: %s\n", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 1024) < 0) {
        fprintf(stderr, "evhttp_floor: %s: %s\n", path, strerror(errno));
        return -1;
    }
    return fd;
}

static void usage(void)
{
    fprintf(stderr, "usage: evhttp_floor [-H] [-u SOCKET] [-p PORT] [-b BODY]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int hop_mode = 0, port = -1, c;
    while ((c = getopt(argc, argv, "Hu:p:b:")) != -1) {
        switch (c) {
        case 'H': hop_mode = 1; break;
        case 'u': unix_path = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'b': body = optarg; break;
        default: usage();
        }
    }
    if (optind != argc || (!unix_path && port < 0))
        usage();
    signal(SIGPIPE, SIG_IGN);

    int sv[2] = {-1, -1};
    pid_t wpid = -1;
    if (hop_mode) { /* fork the worker before the server grows */
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
            perror("evhttp_floor: socketpair");
            return 1;
        }
        if ((wpid = fork()) < 0) {
            perror("evhttp_floor: fork");
            return 1;
        }
        if (wpid == 0) {
            close(sv[0]);
            signal(SIGTERM, SIG_DFL);
            signal(SIGINT, SIG_IGN); /* the server's exit (EOF) ends it */
            worker(sv[1]);
        }
        close(sv[1]);
    }

    struct event_base *base = event_base_new();
    struct evhttp *http = base ? evhttp_new(base) : NULL;
    if (!http) {
        fprintf(stderr, "evhttp_floor: cannot create the event base\n");
        return 1;
    }
    evhttp_set_gencb(http, on_request, NULL);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT);

    if (hop_mode) {
        evutil_make_socket_nonblocking(sv[0]);
        hop = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
        bufferevent_setcb(hop, on_worker_answer, NULL, on_worker_event, NULL);
        bufferevent_enable(hop, EV_READ | EV_WRITE);
    }
    if (unix_path) {
        int fd = listen_unix(unix_path);
        if (fd < 0 || evhttp_accept_socket(http, fd) < 0) {
            fprintf(stderr, "evhttp_floor: cannot serve on %s\n", unix_path);
            return 1;
        }
    }
    int bound = 0;
    if (port >= 0) {
        struct evhttp_bound_socket *h = evhttp_bind_socket_with_handle(http, "127.0.0.1", (uint16_t)port);
        if (!h) {
            fprintf(stderr, "evhttp_floor: cannot listen on 127.0.0.1:%d\n", port);
            return 1;
        }
        struct sockaddr_in sa;
        socklen_t sl = sizeof sa;
        if (getsockname(evhttp_bound_socket_get_fd(h), (struct sockaddr *)&sa, &sl) == 0)
            bound = ntohs(sa.sin_port);
    }
    struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, base);
    struct event *sigint = evsignal_new(base, SIGINT, on_signal, base);
    event_add(sigterm, NULL);
    event_add(sigint, NULL);

    printf("ready %d\n", bound);
    fflush(stdout);
    event_base_dispatch(base);

    if (unix_path)
        unlink(unix_path);
    if (hop)
        shutdown(sv[0], SHUT_RDWR); /* EOF: the worker exits */
    if (wpid > 0)
        waitpid(wpid, NULL, 0);
    return 0;
}
