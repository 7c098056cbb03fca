/* Round-trip latency of sequential HTTP/1.1 requests over one persistent
 * (keep-alive) connection, on a Unix socket or TCP: the warm-invocation
 * benchmark's client, the same for hearthd and for the evhttp floors.
 *
 *   httplat (-u SOCKET | -t HOST:PORT) -P PATH [-M METHOD] [-T TOKEN] [-d BODY] [-e EXPECT]
 *           -n N [-w WARMUP] [-k KEY] [-o FILE] [-C SPEC [-s PAUSE_MS]]
 *
 * Sends N (after WARMUP untimed) POST (or METHOD) PATH requests with BODY (and
 * "Authorization: Bearer TOKEN" when given), one at a time, each timed with
 * CLOCK_MONOTONIC from before the write of the request to the last byte of the
 * answer. Appends one line per timed request to FILE (default stdout):
 *     KEY <TAB> RUN <TAB> NS <TAB> STATUS <TAB> X-Hearth-Start or "-"
 * If the server closes the connection, the client reconnects (outside the
 * timing of the request that follows; counted on stderr). With -e, an answer
 * whose status is 200 but whose body differs from EXPECT is recorded with
 * status 0.
 *
 * With -C (cold starts through hearthd), PATH is a function-name prefix:
 * before request i, `PUT /v1/functions/PATH-i` deploys SPEC (a JSON spec
 * without "name"), untimed, and must answer 201; the timed request is then
 * `POST /v1/functions/PATH-i/invocations`, the function's first call, so it
 * finds no sandbox of its own; after it, `DELETE /v1/functions/PATH-i`
 * (untimed, must answer 204) and a pause of PAUSE_MS (default 0) let the
 * daemon tear the sandbox down before the next sample.
 *
 * Exit: 0 all requests answered, 1 an I/O or protocol error after
 * the start (what was measured so far is written), 2 cannot connect at all.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <time.h>
#include <unistd.h>

static const char *sock_path, *host_port;
static int reconnects;

static int dial(void)
{
    int fd;
    if (sock_path) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(sock_path) >= sizeof sa.sun_path)
            return -1;
        strcpy(sa.sun_path, sock_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            if (fd >= 0)
                close(fd);
            return -1;
        }
        return fd;
    }
    char host[256];
    const char *colon = strrchr(host_port, ':');
    if (!colon || (size_t)(colon - host_port) >= sizeof host)
        return -1;
    memcpy(host, host_port, (size_t)(colon - host_port));
    host[colon - host_port] = 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0)
        return -1;
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

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

struct answer {
    int status;
    int close; /* "Connection: close" */
    char start[16];
    char *body;
    size_t body_len;
};

static char buf[1 << 20];
static size_t blen; /* bytes of buf holding the answer being read (and beyond) */

/* One answer from fd: 0, or -1 on EOF/error/malformed (then *eof says whether
 * the connection was closed before any byte of the answer arrived). */
static int read_answer(int fd, struct answer *a, int *eof)
{
    char *end;
    *eof = 0;
    memset(a, 0, sizeof *a);
    strcpy(a->start, "-");
    for (;;) {
        buf[blen] = 0;
        if ((end = strstr(buf, "\r\n\r\n")))
            break;
        if (blen >= sizeof buf - 1)
            return -1;
        ssize_t n = read(fd, buf + blen, sizeof buf - 1 - blen);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            *eof = blen == 0;
            return -1;
        }
        blen += (size_t)n;
    }
    size_t hlen = (size_t)(end - buf) + 4;
    if (sscanf(buf, "HTTP/1.%*d %d", &a->status) != 1)
        return -1;
    long clen = -1;
    for (char *line = strstr(buf, "\r\n") + 2; line < end; line = strstr(line, "\r\n") + 2) {
        char *eol = strstr(line, "\r\n");
        *eol = 0;
        if (!strncasecmp(line, "Content-Length:", 15))
            clen = strtol(line + 15, NULL, 10);
        else if (!strncasecmp(line, "X-Hearth-Start:", 15))
            snprintf(a->start, sizeof a->start, "%s", line + 15 + strspn(line + 15, " "));
        else if (!strncasecmp(line, "Connection:", 11) && strcasestr(line + 11, "close"))
            a->close = 1;
        *eol = '\r';
    }
    if (clen < 0 && (a->status == 204 || a->status == 304))
        clen = 0; /* no body, and evhttp sends no Content-Length */
    if (clen < 0 || (size_t)clen > sizeof buf - 1 - hlen)
        return -1; /* no Content-Length (chunked) is not expected of either server */
    while (blen < hlen + (size_t)clen) {
        ssize_t n = read(fd, buf + blen, sizeof buf - 1 - blen);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        blen += (size_t)n;
    }
    a->body = buf + hlen;
    a->body_len = (size_t)clen;
    return 0;
}

/* Removes the answer just read from buf (keeping any bytes after it). */
static void consume(const struct answer *a)
{
    size_t used = (size_t)(a->body - buf) + a->body_len;
    memmove(buf, buf + used, blen - used);
    blen -= used;
}

static void usage(void)
{
    fprintf(stderr, "usage: httplat (-u SOCKET | -t HOST:PORT) -P PATH [-M METHOD] [-T TOKEN] [-d BODY] "
                    "[-e EXPECT] -n N [-w WARMUP] [-k KEY] [-o FILE] [-C SPEC [-s PAUSE_MS]]\n");
    exit(2);
}

/* One request on *fd, reconnecting once if the server had closed the kept-
 * alive connection before it; the answer stays in buf until consume().
 * *t0 and *t1 bracket the successful attempt. 0, or -1 on error. */
static int roundtrip(int *fd, const char *req, size_t rlen, struct answer *a, uint64_t *t0, uint64_t *t1,
                     const char *key, long i)
{
    int eof, tries = 0;
    for (;;) {
        *t0 = now_ns();
        if (write_all(*fd, req, rlen) == 0 && read_answer(*fd, a, &eof) == 0)
            break;
        /* The server closed a kept-alive connection before this request:
         * reconnect once and send it again; anything else is an error. */
        if (!eof || tries++ > 0 || blen) {
            fprintf(stderr, "httplat: %s: request %ld: I/O or protocol error\n", key, i);
            return -1;
        }
        close(*fd);
        blen = 0;
        reconnects++;
        if ((*fd = dial()) < 0) {
            fprintf(stderr, "httplat: %s: cannot reconnect\n", key);
            return -1;
        }
    }
    *t1 = now_ns();
    return 0;
}

/* After an answer: reconnect if the server said it closes. */
static int after(int *fd, const struct answer *a, const char *key)
{
    if (!a->close)
        return 0;
    close(*fd);
    blen = 0;
    reconnects++;
    if ((*fd = dial()) < 0) {
        fprintf(stderr, "httplat: %s: cannot reconnect\n", key);
        return -1;
    }
    return 0;
}

/* An untimed request of the cold mode (deploy or delete) that must answer
 * `want`. */
static int admin(int *fd, const char *method, const char *path, const char *auth, const char *body, int want,
                 const char *key, long i)
{
    char *req;
    int rlen = asprintf(&req, "%s %s HTTP/1.1\r\nHost: bench\r\n%sContent-Type: application/json\r\n"
                              "Content-Length: %zu\r\n\r\n%s", method, path, auth, strlen(body), body);
    if (rlen < 0)
        return -1;
    struct answer a;
    uint64_t t0, t1;
    int rc = roundtrip(fd, req, (size_t)rlen, &a, &t0, &t1, key, i);
    free(req);
    if (rc < 0)
        return -1;
    if (a.status != want) {
        fprintf(stderr, "httplat: %s: %s %s answered %d, not %d: %.*s\n", key, method, path, a.status, want,
                (int)a.body_len, a.body);
        return -1;
    }
    consume(&a);
    return after(fd, &a, key);
}

int main(int argc, char **argv)
{
    const char *path = NULL, *token = NULL, *data = "", *expect = NULL, *key = "x", *out = NULL, *spec = NULL;
    const char *method = "POST";
    long n = -1, warmup = 0, pause_ms = 0;
    int c;
    while ((c = getopt(argc, argv, "u:t:P:M:T:d:e:n:w:k:o:C:s:")) != -1) {
        switch (c) {
        case 'u': sock_path = optarg; break;
        case 't': host_port = optarg; break;
        case 'P': path = optarg; break;
        case 'M': method = optarg; break;
        case 'T': token = optarg; break;
        case 'd': data = optarg; break;
        case 'e': expect = optarg; break;
        case 'n': n = atol(optarg); break;
        case 'w': warmup = atol(optarg); break;
        case 'k': key = optarg; break;
        case 'o': out = optarg; break;
        case 'C': spec = optarg; break;
        case 's': pause_ms = atol(optarg); break;
        default: usage();
        }
    }
    if (optind != argc || !path || n < 0 || warmup < 0 || !sock_path == !host_port)
        usage();

    char auth[512] = "";
    if (token)
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", token);
    char *req = NULL;
    int rlen = 0;

    FILE *o = out ? fopen(out, "a") : stdout;
    if (!o) {
        perror(out);
        return 2;
    }
    uint64_t *ns = calloc((size_t)n + 1, sizeof *ns);
    int *status = calloc((size_t)n + 1, sizeof *status);
    char (*start)[16] = calloc((size_t)n + 1, sizeof *start);
    if (!ns || !status || !start)
        return 2;

    int fd = dial();
    if (fd < 0) {
        fprintf(stderr, "httplat: cannot connect to %s: %s\n", sock_path ? sock_path : host_port, strerror(errno));
        return 2;
    }
    long done = 0, mismatched = 0;
    int rc = 0;
    for (long i = 0; i < warmup + n; i++) {
        char fn[256], url[320];
        if (spec) {
            snprintf(fn, sizeof fn, "/v1/functions/%s-%ld", path, i);
            snprintf(url, sizeof url, "%s/invocations", fn);
            if (admin(&fd, "PUT", fn, auth, spec, 201, key, i) < 0) {
                rc = 1;
                goto finish;
            }
        }
        if (req == NULL || spec) {
            free(req);
            rlen = asprintf(&req, "%s %s HTTP/1.1\r\nHost: bench\r\n%sContent-Type: application/octet-stream\r\n"
                                  "Content-Length: %zu\r\n\r\n%s", method, spec ? url : path, auth, strlen(data),
                            data);
            if (rlen < 0)
                return 2;
        }
        struct answer a;
        uint64_t t0, t1;
        if (roundtrip(&fd, req, (size_t)rlen, &a, &t0, &t1, key, i) < 0) {
            rc = 1;
            goto finish;
        }
        int st = a.status;
        if (expect && st == 200 && (a.body_len != strlen(expect) || memcmp(a.body, expect, a.body_len))) {
            st = 0;
            mismatched++;
        }
        consume(&a);
        if (i >= warmup) {
            ns[done] = t1 - t0;
            status[done] = st;
            snprintf(start[done], sizeof start[done], "%s", a.start);
            done++;
        }
        if (after(&fd, &a, key) < 0) {
            rc = 1;
            goto finish;
        }
        if (spec) {
            if (admin(&fd, "DELETE", fn, auth, "", 204, key, i) < 0) {
                rc = 1;
                goto finish;
            }
            if (pause_ms > 0)
                usleep((useconds_t)pause_ms * 1000);
        }
    }
finish:
    for (long i = 0; i < done; i++)
        fprintf(o, "%s\t%ld\t%llu\t%d\t%s\n", key, i, (unsigned long long)ns[i], status[i], start[i]);
    if (o != stdout)
        fclose(o);
    if (reconnects || mismatched)
        fprintf(stderr, "httplat: %s: %d reconnects, %ld answers with an unexpected body\n", key, reconnects,
                mismatched);
    close(fd);
    free(req);
    return rc;
}
