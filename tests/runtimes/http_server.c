/* A small HTTP/1.1 server for the `http` protocol's tests and benchmarks:
 * keep-alive, one thread, plain sockets, no libraries. Build it static for
 * any sandbox:
 *     gcc -O2 -static -o http_server tests/runtimes/http_server.c
 * It listens on 127.0.0.1:$PORT (default 8080; --port N). Routes (the path
 * is what the function sees, below /v1/functions/{name}/invocations):
 *   GET /            a fixed small answer, "hello from http_server\n" (benchmarks)
 *   /status/NNN      answers status NNN with X-Test-Status: NNN
 *   /hop             answers 200 with hop-by-hop headers and X-Custom-Back: yes
 *   /sleep?ms=N      sleeps N ms, then echoes
 *   /burn?ms=N       burns N ms of CPU, then echoes (with its cpu_ms)
 *   /big?bytes=N     N bytes of 'x' (&chunked=1: sent chunked)
 *   /crash           abort()s; /exit?code=N exits N; /hangup closes without answering
 *   /stats           {"connections", "connections_with_requests", "requests"}
 *   anything else    echoes the request as JSON: method, path, query, headers
 *                    (names lowercased), body, and which connection carried it
 * Start-up: --delay-ms N waits N ms before listening; --never-listen never
 * listens; --exit-at-start N exits N at once (after a line on stderr).
 * --root-status N: requests to / other than the plain GET echo with status N. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 64

typedef struct conn {
    int fd;
    unsigned id;        /* 1, 2, ... in accept order */
    unsigned requests;  /* served on this connection */
    char *in;
    size_t len, cap;
} conn_t;

static conn_t conns[MAX_CONNS];
static unsigned accepted, with_requests, served;
static int root_status = 200;

/* A growing output buffer. */
typedef struct buf {
    char *p;
    size_t len, cap;
} buf_t;

static void put(buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (b->p == NULL)
            abort();
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void putf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(buf_t *b, const char *fmt, ...)
{
    char tmp[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    put(b, tmp, n < (int)sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static void put_json_string(buf_t *b, const char *s, size_t n)
{
    put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            char e[2] = {'\\', (char)ch};
            put(b, e, 2);
        } else if (ch < 0x20 || ch >= 0x7f) {
            putf(b, "\\u%04x", ch);
        } else {
            put(b, (const char *)&ch, 1);
        }
    }
    put(b, "\"", 1);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The value of query parameter name, as a number (def if absent). */
static long query_num(const char *query, const char *name, long def)
{
    size_t n = strlen(name);
    for (const char *p = query; p != NULL && *p;) {
        if (strncmp(p, name, n) == 0 && p[n] == '=')
            return strtol(p + n + 1, NULL, 10);
        p = strchr(p, '&');
        if (p != NULL)
            p++;
    }
    return def;
}

typedef struct request {
    char method[16];
    char path[4096];
    char query[4096];
    const char *headers; /* the raw header lines */
    size_t headers_len;
    const char *body;
    size_t body_len;
    bool close;          /* Connection: close, or HTTP/1.0 */
} request_t;

/* The value of header name in r's raw header lines, or NULL (into out). */
static const char *header(const request_t *r, const char *name, char *out, size_t len)
{
    size_t n = strlen(name);
    const char *p = r->headers, *end = r->headers + r->headers_len;
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - p) > n && strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            snprintf(out, len, "%.*s", (int)(eol - v), v);
            return out;
        }
        p = eol + 2;
    }
    return NULL;
}

static void respond(conn_t *c, const request_t *r, int status, const char *type, const char *extra,
                    const char *body, size_t body_len)
{
    buf_t out = {0};
    putf(&out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n", status,
         status == 200 ? "OK" : "Status", type, body_len, extra ? extra : "", r->close ? "Connection: close\r\n" : "");
    if (strcmp(r->method, "HEAD") != 0)
        put(&out, body, body_len);
    write_all(c->fd, out.p, out.len);
    free(out.p);
}

static void echo(conn_t *c, const request_t *r, int status, const char *extra_json)
{
    buf_t b = {0};
    put(&b, "{\"method\": ", 11);
    put_json_string(&b, r->method, strlen(r->method));
    put(&b, ", \"path\": ", 10);
    put_json_string(&b, r->path, strlen(r->path));
    put(&b, ", \"query\": ", 11);
    put_json_string(&b, r->query, strlen(r->query));
    put(&b, ", \"headers\": {", 14);
    const char *p = r->headers, *end = r->headers + r->headers_len;
    bool first = true;
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (eol == NULL)
            eol = end;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon != NULL) {
            char name[256];
            size_t n = (size_t)(colon - p) < sizeof(name) - 1 ? (size_t)(colon - p) : sizeof(name) - 1;
            for (size_t i = 0; i < n; i++)
                name[i] = (char)tolower((unsigned char)p[i]);
            const char *v = colon + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            if (!first)
                put(&b, ", ", 2);
            first = false;
            put_json_string(&b, name, n);
            put(&b, ": ", 2);
            put_json_string(&b, v, (size_t)(eol - v));
        }
        p = eol + 2;
    }
    put(&b, "}, \"body\": ", 11);
    put_json_string(&b, r->body, r->body_len);
    const char *port = getenv("PORT"), *fn = getenv("HEARTH_FUNCTION");
    putf(&b, ", \"body_len\": %zu, \"conn\": %u, \"req_on_conn\": %u, \"requests\": %u, \"connections\": %u, "
         "\"connections_with_requests\": %u, \"pid\": %d, \"port_env\": \"%s\", \"function_env\": \"%s\"%s}\n",
         r->body_len, c->id, c->requests, served, accepted, with_requests, (int)getpid(), port ? port : "",
         fn ? fn : "", extra_json ? extra_json : "");
    respond(c, r, status, "application/json", "X-Echo: 1\r\n", b.p, b.len);
    free(b.p);
}

/* Serve one complete request; false: close the connection. */
static bool serve(conn_t *c, const request_t *r)
{
    if (c->requests++ == 0)
        with_requests++;
    served++;
    char extra[256];
    if (strcmp(r->method, "GET") == 0 && strcmp(r->path, "/") == 0 && r->query[0] == '\0') {
        static const char hello[] = "hello from http_server\n";
        respond(c, r, 200, "text/plain", NULL, hello, sizeof(hello) - 1);
    } else if (strncmp(r->path, "/status/", 8) == 0) {
        int st = atoi(r->path + 8);
        char body[64];
        int n = snprintf(body, sizeof(body), "status %d\n", st);
        snprintf(extra, sizeof(extra), "X-Test-Status: %d\r\n", st);
        respond(c, r, st, "text/plain", extra, body, (size_t)n);
    } else if (strcmp(r->path, "/hop") == 0) {
        respond(c, r, 200, "text/plain",
                "Keep-Alive: timeout=99\r\nProxy-Authenticate: Basic\r\nUpgrade: nothing\r\n"
                "X-Named-In-Connection: drop-me\r\nConnection: keep-alive, X-Named-In-Connection\r\n"
                "X-Custom-Back: yes\r\nX-Hearth-Invocation-Id: spoofed\r\n",
                "hop\n", 4);
    } else if (strcmp(r->path, "/sleep") == 0) {
        usleep((useconds_t)query_num(r->query, "ms", 1000) * 1000);
        echo(c, r, 200, NULL);
    } else if (strcmp(r->path, "/burn") == 0) {
        double start = cpu_ms(), want = (double)query_num(r->query, "ms", 100);
        volatile unsigned long x = 0;
        while (cpu_ms() - start < want)
            for (int i = 0; i < 100000; i++)
                x += (unsigned long)i;
        snprintf(extra, sizeof(extra), ", \"cpu_ms\": %.3f", cpu_ms() - start);
        echo(c, r, 200, extra);
    } else if (strcmp(r->path, "/big") == 0) {
        long n = query_num(r->query, "bytes", 1 << 20);
        char *big = malloc((size_t)n + 1);
        if (big == NULL)
            abort();
        memset(big, 'x', (size_t)n);
        if (query_num(r->query, "chunked", 0)) {
            buf_t out = {0};
            putf(&out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n");
            for (long off = 0; off < n; off += 65536) {
                long k = n - off < 65536 ? n - off : 65536;
                putf(&out, "%lx\r\n", k);
                put(&out, big + off, (size_t)k);
                put(&out, "\r\n", 2);
            }
            put(&out, "0\r\n\r\n", 5);
            write_all(c->fd, out.p, out.len);
            free(out.p);
        } else {
            respond(c, r, 200, "text/plain", NULL, big, (size_t)n);
        }
        free(big);
    } else if (strcmp(r->path, "/crash") == 0) {
        fprintf(stderr, "http_server: crashing on purpose\n");
        abort();
    } else if (strcmp(r->path, "/exit") == 0) {
        fprintf(stderr, "http_server: exiting on purpose\n");
        _exit((int)query_num(r->query, "code", 7));
    } else if (strcmp(r->path, "/hangup") == 0) {
        return false;
    } else if (strcmp(r->path, "/stats") == 0) {
        char body[160];
        int n = snprintf(body, sizeof(body), "{\"connections\": %u, \"connections_with_requests\": %u, \"requests\": %u}\n",
                         accepted, with_requests, served);
        respond(c, r, 200, "application/json", NULL, body, (size_t)n);
    } else {
        echo(c, r, strcmp(r->path, "/") == 0 ? root_status : 200, NULL);
    }
    return !r->close;
}

/* Serve what c's buffer holds. -1: close it. */
static int handle(conn_t *c)
{
    for (;;) {
        char *hend = memmem(c->in, c->len, "\r\n\r\n", 4);
        if (hend == NULL)
            return c->len > (1 << 20) ? -1 : 0;
        request_t r = {0};
        char *eol = memmem(c->in, (size_t)(hend - c->in) + 2, "\r\n", 2);
        char target[4096], version[16];
        char line[4200];
        snprintf(line, sizeof(line), "%.*s", (int)(eol - c->in), c->in);
        if (sscanf(line, "%15s %4095s %15s", r.method, target, version) != 3)
            return -1;
        char *q = strchr(target, '?');
        if (q != NULL)
            *q++ = '\0';
        snprintf(r.path, sizeof(r.path), "%s", target);
        snprintf(r.query, sizeof(r.query), "%s", q ? q : "");
        r.headers = eol + 2;
        r.headers_len = (size_t)(hend - (eol + 2));
        char v[256];
        const char *conn = header(&r, "Connection", v, sizeof(v));
        r.close = strcmp(version, "HTTP/1.0") == 0 || (conn != NULL && strcasestr(conn, "close") != NULL);
        if (header(&r, "Transfer-Encoding", v, sizeof(v)) != NULL)
            return -1; /* chunked requests: not needed here */
        const char *cl = header(&r, "Content-Length", v, sizeof(v));
        size_t body_len = cl ? strtoul(cl, NULL, 10) : 0;
        size_t total = (size_t)(hend + 4 - c->in) + body_len;
        if (c->len < total)
            return 0;
        r.body = hend + 4;
        r.body_len = body_len;
        bool keep = serve(c, &r);
        memmove(c->in, c->in + total, c->len - total);
        c->len -= total;
        if (!keep)
            return -1;
    }
}

static void close_conn(conn_t *c)
{
    close(c->fd);
    free(c->in);
    *c = (conn_t){.fd = -1};
}

int main(int argc, char **argv)
{
    const char *port_env = getenv("PORT");
    int port = port_env ? atoi(port_env) : 8080;
    long delay_ms = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--delay-ms") == 0 && i + 1 < argc) {
            delay_ms = atol(argv[++i]);
        } else if (strcmp(argv[i], "--root-status") == 0 && i + 1 < argc) {
            root_status = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--never-listen") == 0) {
            fprintf(stderr, "http_server: not listening, on purpose\n");
            for (;;)
                pause();
        } else if (strcmp(argv[i], "--exit-at-start") == 0 && i + 1 < argc) {
            fprintf(stderr, "http_server: failing at start, on purpose\n");
            return atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: http_server [--port N] [--delay-ms N] [--root-status N] [--never-listen] "
                            "[--exit-at-start N]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    if (delay_ms > 0)
        usleep((useconds_t)delay_ms * 1000);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(lfd, 64) < 0) {
        fprintf(stderr, "http_server: listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        return 1;
    }
    fprintf(stderr, "http_server: listening on 127.0.0.1:%d\n", port);
    for (int i = 0; i < MAX_CONNS; i++)
        conns[i].fd = -1;
    for (;;) {
        struct pollfd pfd[MAX_CONNS + 1];
        int map[MAX_CONNS + 1];
        int n = 0;
        pfd[n] = (struct pollfd){.fd = lfd, .events = POLLIN};
        map[n++] = -1;
        for (int i = 0; i < MAX_CONNS; i++)
            if (conns[i].fd >= 0) {
                pfd[n] = (struct pollfd){.fd = conns[i].fd, .events = POLLIN};
                map[n++] = i;
            }
        if (poll(pfd, (nfds_t)n, -1) < 0 && errno != EINTR)
            return 1;
        for (int k = 0; k < n; k++) {
            if (!(pfd[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            if (map[k] < 0) {
                int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                    continue;
                int slot = -1;
                for (int i = 0; i < MAX_CONNS && slot < 0; i++)
                    if (conns[i].fd < 0)
                        slot = i;
                if (slot < 0) {
                    close(fd);
                    continue;
                }
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                conns[slot] = (conn_t){.fd = fd, .id = ++accepted};
                continue;
            }
            conn_t *c = &conns[map[k]];
            if (c->cap - c->len < 65536) {
                c->cap = c->cap ? c->cap * 2 : 131072;
                c->in = realloc(c->in, c->cap);
                if (c->in == NULL)
                    abort();
            }
            ssize_t r = read(c->fd, c->in + c->len, c->cap - c->len);
            if (r <= 0) {
                if (r < 0 && errno == EINTR)
                    continue;
                close_conn(c);
                continue;
            }
            c->len += (size_t)r;
            if (handle(c) < 0)
                close_conn(c);
        }
    }
}
