/* The CLI's HTTP/1.1 client: evhttp over TCP, a hand-written exchange over
 * the Unix socket (client.h says why). One event_base per request; the
 * caller blocks in event_base_dispatch() until the response is whole, the
 * connection fails or a timer fires. */
#include "orchestrator/client.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#define DEFAULT_CONNECT_MS 5000u
#define DEFAULT_REQUEST_MS (15u * 60u * 1000u)
#define DEFAULT_MAX_RESPONSE ((size_t)64 << 20)
#define MAX_LINE 8192                /* status line, one header, one chunk-size line */
#define MAX_HEADER_BYTES (64 * 1024) /* all response headers together */
#define MAX_HEADERS 128

typedef enum {
    ST_STATUS,      /* waiting for "HTTP/1.1 200 OK" */
    ST_HEADERS,     /* header lines until the empty one */
    ST_BODY_LENGTH, /* Content-Length bytes */
    ST_CHUNK_SIZE,  /* hex size line of the next chunk */
    ST_CHUNK_DATA,  /* the chunk's bytes */
    ST_CHUNK_END,   /* the CRLF after a chunk */
    ST_TRAILERS,    /* trailer lines after the last chunk, until the empty one */
    ST_BODY_EOF,    /* no length given: the body runs until the connection closes */
    ST_DONE,
} parse_state_t;

typedef struct exchange {
    struct event_base *base;
    const client_opts_t *opts;
    size_t max_body;            /* opts->max_response_bytes or the default */
    client_response_t *resp;    /* filled as the answer arrives */
    hearth_error_t *err;
    int rc;                     /* 1 running, 0 done, -1 failed (err set) */
    struct evbuffer *body;      /* the response body so far */
    struct event *deadline;     /* the whole exchange */
    /* Unix socket */
    struct bufferevent *bev;
    parse_state_t state;
    bool head;                  /* HEAD request: no body whatever the headers say */
    bool chunked;               /* Transfer-Encoding: chunked */
    bool have_length;           /* Content-Length seen */
    uint64_t length;            /* its value */
    uint64_t remaining;         /* bytes of the current body or chunk still to come */
    size_t header_bytes;        /* so far, for the bound */
    size_t n_headers;
    /* TCP */
    struct evhttp_connection *evcon;
    struct event *connect_timer; /* fires once: connected by now? */
    bool req_failed;             /* evhttp reported an error through the error callback */
    enum evhttp_request_error req_error;
} exchange_t;

static void finish(exchange_t *x, int rc)
{
    if (x->rc != 1)
        return;
    x->rc = rc;
    if (x->base != NULL) /* NULL: client_parse_response, no loop */
        event_base_loopbreak(x->base);
}

static void fail(exchange_t *x, int code, const char *fmt, ...) HEARTH_PRINTF(3, 4);
static void fail(exchange_t *x, int code, const char *fmt, ...)
{
    if (x->rc != 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->err->msg, sizeof(x->err->msg), fmt, ap);
    va_end(ap);
    x->err->code = code;
    finish(x, -1);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    exchange_t *x = arg;
    uint32_t ms = x->opts->request_timeout_ms ? x->opts->request_timeout_ms : DEFAULT_REQUEST_MS;
    fail(x, ETIMEDOUT, "no complete response from %s within %u s", client_target(x->opts), (ms + 999) / 1000);
}

/* Header names and values we send: no control characters (CR and LF would
 * let a token inject headers), tabs allowed in values. */
static bool header_text_ok(const char *s, bool is_name)
{
    if (is_name && *s == '\0')
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == 0x7f || (*p < 0x20 && !(*p == '\t' && !is_name)))
            return false;
        if (is_name && (*p == ':' || *p == ' ' || *p == '\t'))
            return false;
    }
    return true;
}

/* ---- Unix socket: the hand-written exchange ---------------------------------------- */

/* The next CRLF- (or LF-) terminated line, bounded by MAX_LINE. NULL when
 * none is complete yet (or on failure: x->rc is then -1). */
static char *next_line(exchange_t *x, struct evbuffer *in)
{
    size_t eol_len = 0;
    struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
    if (p.pos < 0) {
        if (evbuffer_get_length(in) > MAX_LINE)
            fail(x, EPROTO, "malformed response from %s: a line longer than %d bytes", client_target(x->opts),
                 MAX_LINE);
        return NULL;
    }
    if ((size_t)p.pos > MAX_LINE) {
        fail(x, EPROTO, "malformed response from %s: a line longer than %d bytes", client_target(x->opts),
             MAX_LINE);
        return NULL;
    }
    x->header_bytes += (size_t)p.pos + eol_len;
    char *line = evbuffer_readln(in, NULL, EVBUFFER_EOL_CRLF);
    if (line == NULL)
        fail(x, ENOMEM, "out of memory");
    return line;
}

static int parse_status_line(exchange_t *x, const char *line)
{
    /* HTTP/1.x SSS[ reason] */
    if (strncmp(line, "HTTP/1.", 7) != 0 || (line[7] != '0' && line[7] != '1') || line[8] != ' ')
        goto bad;
    const char *s = line + 9;
    for (int i = 0; i < 3; i++)
        if (s[i] < '0' || s[i] > '9')
            goto bad;
    if (s[3] != '\0' && s[3] != ' ')
        goto bad;
    x->resp->status = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    if (x->resp->status < 100)
        goto bad;
    return 0;
bad:
    fail(x, EPROTO, "malformed response from %s: status line `%.80s`", client_target(x->opts), line);
    return -1;
}

static int parse_header_line(exchange_t *x, char *line)
{
    if (++x->n_headers > MAX_HEADERS) {
        fail(x, EFBIG, "response from %s has more than %d headers", client_target(x->opts), MAX_HEADERS);
        return -1;
    }
    char *colon = strchr(line, ':');
    /* Obsolete line folding (a leading space) is refused, as RFC 9112 allows. */
    if (colon == NULL || colon == line || line[0] == ' ' || line[0] == '\t') {
        fail(x, EPROTO, "malformed response from %s: header line `%.80s`", client_target(x->opts), line);
        return -1;
    }
    *colon = '\0';
    if (!header_text_ok(line, true)) {
        fail(x, EPROTO, "malformed response from %s: header name `%.80s`", client_target(x->opts), line);
        return -1;
    }
    char *v = colon + 1;
    v += strspn(v, " \t");
    size_t vl = strlen(v);
    while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        v[--vl] = '\0';

    if (strcasecmp(line, "Content-Length") == 0) {
        uint64_t n = 0;
        if (*v == '\0' || vl > 19 || strspn(v, "0123456789") != vl)
            goto bad_length;
        for (const char *p = v; *p; p++)
            n = n * 10 + (uint64_t)(*p - '0');
        if (x->have_length && n != x->length)
            goto bad_length;
        x->have_length = true;
        x->length = n;
    } else if (strcasecmp(line, "Transfer-Encoding") == 0) {
        /* The last coding must be chunked for us to find the end; anything
         * else (gzip alone, say) we do not decode. */
        const char *last = strrchr(v, ',');
        last = last ? last + 1 : v;
        last += strspn(last, " \t");
        if (strcasecmp(last, "chunked") != 0) {
            fail(x, EPROTO, "response from %s uses Transfer-Encoding `%.40s`, which hearth cannot read",
                 client_target(x->opts), v);
            return -1;
        }
        x->chunked = true;
    }
    if (evhttp_add_header(&x->resp->headers, line, v) < 0) {
        fail(x, EPROTO, "malformed response from %s: header `%.80s`", client_target(x->opts), line);
        return -1;
    }
    return 0;
bad_length:
    fail(x, EPROTO, "malformed response from %s: Content-Length `%.40s`", client_target(x->opts), v);
    return -1;
}

/* The headers are in: decide how the body ends. */
static void headers_done(exchange_t *x)
{
    int st = x->resp->status;
    if (st >= 100 && st < 200) {
        /* An interim answer (100 Continue and the like): the real one follows. */
        evhttp_clear_headers(&x->resp->headers);
        x->have_length = x->chunked = false;
        x->n_headers = 0;
        x->state = ST_STATUS;
        return;
    }
    if (x->head || st == 204 || st == 304) {
        x->state = ST_DONE;
    } else if (x->chunked) {
        x->state = ST_CHUNK_SIZE;
    } else if (x->have_length) {
        if (x->length > x->max_body) {
            fail(x, EFBIG, "response from %s is %" PRIu64 " bytes, more than the %zu this client accepts",
                 client_target(x->opts), x->length, x->max_body);
            return;
        }
        x->remaining = x->length;
        x->state = x->length ? ST_BODY_LENGTH : ST_DONE;
    } else {
        x->state = ST_BODY_EOF;
    }
}

static bool take_body(exchange_t *x, struct evbuffer *in, size_t n)
{
    if (evbuffer_get_length(x->body) + n > x->max_body) {
        fail(x, EFBIG, "response from %s is larger than the %zu bytes this client accepts", client_target(x->opts),
             x->max_body);
        return false;
    }
    if (evbuffer_remove_buffer(in, x->body, n) != (int)n) {
        fail(x, ENOMEM, "out of memory");
        return false;
    }
    return true;
}

/* Consume as much of in as the state machine can. */
static void parse(exchange_t *x, struct evbuffer *in)
{
    while (x->rc == 1 && x->state != ST_DONE) {
        size_t avail = evbuffer_get_length(in);
        switch (x->state) {
        case ST_STATUS:
        case ST_HEADERS:
        case ST_CHUNK_SIZE:
        case ST_CHUNK_END:
        case ST_TRAILERS: {
            cleanup_free char *line = next_line(x, in);
            if (line == NULL)
                return;
            if (x->state != ST_CHUNK_SIZE && x->state != ST_CHUNK_END && x->header_bytes > MAX_HEADER_BYTES) {
                fail(x, EFBIG, "response headers from %s are over %d bytes", client_target(x->opts),
                     MAX_HEADER_BYTES);
                return;
            }
            if (x->state == ST_STATUS) {
                if (parse_status_line(x, line) == 0)
                    x->state = ST_HEADERS;
            } else if (x->state == ST_HEADERS) {
                if (line[0] == '\0')
                    headers_done(x);
                else
                    parse_header_line(x, line);
            } else if (x->state == ST_CHUNK_SIZE) {
                char *end;
                errno = 0;
                unsigned long long n = strtoull(line, &end, 16);
                if (end == line || errno != 0 || (*end != '\0' && *end != ';' && *end != ' ' && *end != '\t')) {
                    fail(x, EPROTO, "malformed response from %s: chunk size `%.40s`", client_target(x->opts),
                         line);
                    return;
                }
                if (n > x->max_body || evbuffer_get_length(x->body) + n > x->max_body) {
                    fail(x, EFBIG, "response from %s is larger than the %zu bytes this client accepts",
                         client_target(x->opts), x->max_body);
                    return;
                }
                x->remaining = n;
                x->state = n ? ST_CHUNK_DATA : ST_TRAILERS;
            } else if (x->state == ST_CHUNK_END) {
                if (line[0] != '\0') {
                    fail(x, EPROTO, "malformed response from %s: no CRLF after a chunk", client_target(x->opts));
                    return;
                }
                x->state = ST_CHUNK_SIZE;
            } else if (line[0] == '\0') { /* ST_TRAILERS: ignored until the empty line */
                x->state = ST_DONE;
            }
            break;
        }
        case ST_BODY_LENGTH:
        case ST_CHUNK_DATA: {
            if (avail == 0)
                return;
            size_t n = avail < x->remaining ? avail : (size_t)x->remaining;
            if (!take_body(x, in, n))
                return;
            x->remaining -= n;
            if (x->remaining == 0)
                x->state = x->state == ST_BODY_LENGTH ? ST_DONE : ST_CHUNK_END;
            break;
        }
        case ST_BODY_EOF:
            if (avail == 0 || !take_body(x, in, avail))
                return;
            break;
        case ST_DONE:
            break;
        }
    }
    if (x->rc == 1 && x->state == ST_DONE)
        finish(x, 0);
}

/* The peer closed: whatever is buffered counts before the end does. */
static void parse_eof(exchange_t *x, struct evbuffer *in)
{
    parse(x, in);
    if (x->rc != 1)
        return;
    if (x->state == ST_BODY_EOF)
        finish(x, 0);
    else
        fail(x, ECONNRESET, "%s closed the connection before a whole response", client_target(x->opts));
}

static void unix_read_cb(struct bufferevent *bev, void *arg)
{
    parse(arg, bufferevent_get_input(bev));
}

static void unix_event_cb(struct bufferevent *bev, short what, void *arg)
{
    exchange_t *x = arg;
    int e = errno;
    if (what & BEV_EVENT_TIMEOUT) {
        fail(x, ETIMEDOUT, "%s did not answer in time", client_target(x->opts));
        return;
    }
    if ((what & BEV_EVENT_ERROR) && (what & BEV_EVENT_WRITING)) {
        /* The daemon may answer early and close (401, 413) while the body is
         * still going out: stop writing and read what it said. */
        evbuffer_drain(bufferevent_get_output(bev), evbuffer_get_length(bufferevent_get_output(bev)));
        return;
    }
    if (what & BEV_EVENT_EOF) {
        parse_eof(x, bufferevent_get_input(bev));
        return;
    }
    /* Whatever is buffered counts before the error does. */
    parse(x, bufferevent_get_input(bev));
    if (x->rc == 1)
        fail(x, ECONNRESET, "reading from %s: %s", client_target(x->opts), strerror(e ? e : ECONNRESET));
}

/* Connect with a bounded wait. A blocking connect on a Unix socket waits
 * while the listener's backlog is full; SO_SNDTIMEO bounds that wait (it then
 * fails with EAGAIN). A non-blocking one would fail with EAGAIN at once
 * rather than wait, so a busy daemon would look unreachable. */
static int unix_connect(const char *path, uint32_t timeout_ms, hearth_error_t *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return hearth_error_tag(err, EINVAL, "socket path `%s` is longer than %zu bytes", path,
                                sizeof(sa.sun_path) - 1);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return hearth_error_sys(err, "socket");
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
        return hearth_error_sys(err, "setsockopt(SO_SNDTIMEO)");
    int rc;
    do
        rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        if (errno == EAGAIN || errno == EINPROGRESS)
            return hearth_error_tag(err, ETIMEDOUT, "cannot connect to %s: its queue stayed full for %u ms", path,
                                    timeout_ms);
        return hearth_error_sys(err, "cannot connect to %s", path);
    }
    if (evutil_make_socket_nonblocking(fd) < 0)
        return hearth_error_sys(err, "fcntl(O_NONBLOCK)");
    return get_and_reset(&fd);
}

static int unix_exchange(exchange_t *x, const char *method, const char *path, const client_header_t *headers,
                         size_t n_headers, const void *body, size_t body_len)
{
    const client_opts_t *o = x->opts;
    int fd = unix_connect(o->socket_path, o->connect_timeout_ms ? o->connect_timeout_ms : DEFAULT_CONNECT_MS, x->err);
    if (fd < 0)
        return -1;
    x->bev = bufferevent_socket_new(x->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (x->bev == NULL) {
        close(fd);
        return hearth_error_tag(x->err, ENOMEM, "bufferevent_socket_new failed");
    }
    x->head = strcmp(method, "HEAD") == 0;
    struct evbuffer *out = bufferevent_get_output(x->bev);
    int rc = evbuffer_add_printf(out, "%s %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: hearth\r\nConnection: close\r\n",
                                 method, path);
    if (rc >= 0 && (body_len > 0 || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0))
        rc = evbuffer_add_printf(out, "Content-Length: %zu\r\n", body_len);
    if (rc >= 0 && o->token != NULL && o->token[0] != '\0')
        rc = evbuffer_add_printf(out, "Authorization: Bearer %s\r\n", o->token);
    for (size_t i = 0; rc >= 0 && i < n_headers; i++)
        rc = evbuffer_add_printf(out, "%s: %s\r\n", headers[i].name, headers[i].value);
    if (rc >= 0)
        rc = evbuffer_add(out, "\r\n", 2);
    /* By reference: a payload can be large, and it outlives the exchange. */
    if (rc >= 0 && body_len > 0)
        rc = evbuffer_add_reference(out, body, body_len, NULL, NULL);
    if (rc < 0)
        return hearth_error_tag(x->err, ENOMEM, "cannot build the request");
    bufferevent_setcb(x->bev, unix_read_cb, NULL, unix_event_cb, x);
    if (bufferevent_enable(x->bev, EV_READ | EV_WRITE) < 0)
        return hearth_error_tag(x->err, EIO, "bufferevent_enable failed");
    return 0;
}

/* ---- TCP: evhttp ---------------------------------------------------------------------- */

static void http_error_cb(enum evhttp_request_error e, void *arg)
{
    exchange_t *x = arg;
    x->req_failed = true;
    x->req_error = e;
}

static void http_done_cb(struct evhttp_request *req, void *arg)
{
    exchange_t *x = arg;
    const char *t = client_target(x->opts);
    if (req == NULL || evhttp_request_get_response_code(req) == 0) {
        if (!x->req_failed) /* the connect failed: evhttp calls back without an error code */
            fail(x, ECONNREFUSED, "cannot connect to %s", t);
        else if (x->req_error == EVREQ_HTTP_TIMEOUT)
            fail(x, ETIMEDOUT, "%s did not answer in time", t);
        else if (x->req_error == EVREQ_HTTP_DATA_TOO_LONG)
            fail(x, EFBIG, "response from %s is larger than the %zu bytes this client accepts (or its headers over %d)",
                 t, x->max_body, MAX_HEADER_BYTES);
        else if (x->req_error == EVREQ_HTTP_INVALID_HEADER)
            fail(x, EPROTO, "malformed response from %s", t);
        else
            fail(x, ECONNRESET, "%s closed the connection before a whole response", t);
        return;
    }
    x->resp->status = evhttp_request_get_response_code(req);
    const struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    for (const struct evkeyval *kv = h->tqh_first; kv != NULL; kv = kv->next.tqe_next)
        if (evhttp_add_header(&x->resp->headers, kv->key, kv->value) < 0) {
            fail(x, EPROTO, "malformed response from %s: header `%.80s`", t, kv->key);
            return;
        }
    if (evbuffer_add_buffer(x->body, evhttp_request_get_input_buffer(req)) < 0) {
        fail(x, ENOMEM, "out of memory");
        return;
    }
    finish(x, 0);
}

static void on_connect_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    exchange_t *x = arg;
    /* evhttp 2.1 has one timeout for connecting and for each read; reads may
     * wait as long as the function runs, so the connect phase is bounded
     * here: by now the socket must have a peer. */
    struct bufferevent *bev = evhttp_connection_get_bufferevent(x->evcon);
    int s = bev ? bufferevent_getfd(bev) : -1;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (s < 0 || getpeername(s, (struct sockaddr *)&ss, &len) < 0) {
        uint32_t ms = x->opts->connect_timeout_ms ? x->opts->connect_timeout_ms : DEFAULT_CONNECT_MS;
        fail(x, ETIMEDOUT, "cannot connect to %s within %u ms", client_target(x->opts), ms);
    }
}

static int http_exchange(exchange_t *x, const char *method, const char *path, const client_header_t *headers,
                         size_t n_headers, const void *body, size_t body_len)
{
    const client_opts_t *o = x->opts;
    enum evhttp_cmd_type type;
    if (strcmp(method, "GET") == 0)
        type = EVHTTP_REQ_GET;
    else if (strcmp(method, "POST") == 0)
        type = EVHTTP_REQ_POST;
    else if (strcmp(method, "PUT") == 0)
        type = EVHTTP_REQ_PUT;
    else if (strcmp(method, "DELETE") == 0)
        type = EVHTTP_REQ_DELETE;
    else if (strcmp(method, "HEAD") == 0)
        type = EVHTTP_REQ_HEAD;
    else
        return hearth_error_tag(x->err, EINVAL, "method %s is not supported", method);

    struct evhttp_uri *uri = evhttp_uri_parse_with_flags(o->url, 0);
    if (uri == NULL)
        return hearth_error_tag(x->err, EINVAL, "`%s` is not a URL (e.g. http://127.0.0.1:8080)", o->url);
    int rc = -1;
    const char *scheme = evhttp_uri_get_scheme(uri);
    const char *host = evhttp_uri_get_host(uri);
    const char *prefix = evhttp_uri_get_path(uri);
    int port = evhttp_uri_get_port(uri);
    char hostbuf[256], hosthdr[300];
    cleanup_free char *target = NULL;
    if (scheme == NULL || strcasecmp(scheme, "http") != 0) {
        hearth_error_tag(x->err, EINVAL, "`%s`: only http:// URLs are supported", o->url);
        goto out;
    }
    if (host == NULL || host[0] == '\0' || strlen(host) >= sizeof(hostbuf)) {
        hearth_error_tag(x->err, EINVAL, "`%s`: no host", o->url);
        goto out;
    }
    if (evhttp_uri_get_query(uri) != NULL || evhttp_uri_get_fragment(uri) != NULL ||
        evhttp_uri_get_userinfo(uri) != NULL) {
        hearth_error_tag(x->err, EINVAL, "`%s`: a daemon URL has no user, query or fragment", o->url);
        goto out;
    }
    if (port < 0)
        port = 80;
    if (port == 0 || port > 65535) {
        hearth_error_tag(x->err, EINVAL, "`%s`: bad port", o->url);
        goto out;
    }
    snprintf(hosthdr, sizeof(hosthdr), "%s:%d", host, port);
    /* evhttp keeps an IPv6 literal's brackets; the resolver wants it bare. */
    size_t hl = strlen(host);
    if (host[0] == '[' && hl > 2) {
        memcpy(hostbuf, host + 1, hl - 2);
        hostbuf[hl - 2] = '\0';
    } else {
        memcpy(hostbuf, host, hl + 1);
    }
    size_t pl = prefix ? strlen(prefix) : 0;
    while (pl > 0 && prefix[pl - 1] == '/')
        pl--;
    if (asprintf(&target, "%.*s%s", (int)pl, pl ? prefix : "", path) < 0) {
        target = NULL;
        hearth_error_tag(x->err, ENOMEM, "out of memory");
        goto out;
    }

    x->evcon = evhttp_connection_base_new(x->base, NULL, hostbuf, (uint16_t)port);
    if (x->evcon == NULL) {
        hearth_error_tag(x->err, ENOMEM, "evhttp_connection_base_new failed");
        goto out;
    }
    uint32_t req_ms = o->request_timeout_ms ? o->request_timeout_ms : DEFAULT_REQUEST_MS;
    struct timeval tv = {.tv_sec = req_ms / 1000, .tv_usec = (req_ms % 1000) * 1000};
    evhttp_connection_set_timeout_tv(x->evcon, &tv);
    evhttp_connection_set_retries(x->evcon, 0);
    evhttp_connection_set_max_body_size(x->evcon, (ev_ssize_t)x->max_body);
    evhttp_connection_set_max_headers_size(x->evcon, MAX_HEADER_BYTES);

    struct evhttp_request *req = evhttp_request_new(http_done_cb, x);
    if (req == NULL) {
        hearth_error_tag(x->err, ENOMEM, "evhttp_request_new failed");
        goto out;
    }
    evhttp_request_set_error_cb(req, http_error_cb);
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    bool ok = evhttp_add_header(oh, "Host", hosthdr) == 0 && evhttp_add_header(oh, "User-Agent", "hearth") == 0 &&
              evhttp_add_header(oh, "Connection", "close") == 0;
    char auth[4200];
    if (ok && o->token != NULL && o->token[0] != '\0') {
        snprintf(auth, sizeof(auth), "Bearer %s", o->token);
        ok = evhttp_add_header(oh, "Authorization", auth) == 0;
    }
    for (size_t i = 0; ok && i < n_headers; i++)
        ok = evhttp_add_header(oh, headers[i].name, headers[i].value) == 0;
    if (ok && body_len > 0)
        ok = evbuffer_add_reference(evhttp_request_get_output_buffer(req), body, body_len, NULL, NULL) == 0;
    if (!ok) {
        evhttp_request_free(req);
        hearth_error_tag(x->err, ENOMEM, "cannot build the request");
        goto out;
    }
    /* From here evhttp owns req. */
    if (evhttp_make_request(x->evcon, req, type, target) < 0) {
        hearth_error_tag(x->err, ECONNREFUSED, "cannot connect to %s", o->url);
        goto out;
    }
    uint32_t conn_ms = o->connect_timeout_ms ? o->connect_timeout_ms : DEFAULT_CONNECT_MS;
    struct timeval ctv = {.tv_sec = conn_ms / 1000, .tv_usec = (conn_ms % 1000) * 1000};
    x->connect_timer = evtimer_new(x->base, on_connect_check, x);
    if (x->connect_timer == NULL || evtimer_add(x->connect_timer, &ctv) < 0) {
        hearth_error_tag(x->err, ENOMEM, "evtimer_new failed");
        goto out;
    }
    rc = 0;
out:
    evhttp_uri_free(uri);
    return rc;
}

/* ---- the shared part ------------------------------------------------------------------ */

const char *client_target(const client_opts_t *opts)
{
    return opts->url ? opts->url : opts->socket_path;
}

const char *client_header(const client_response_t *resp, const char *name)
{
    return evhttp_find_header(&resp->headers, name);
}

void client_response_free(client_response_t *resp)
{
    evhttp_clear_headers(&resp->headers);
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
}

/* The exchange succeeded: the body into resp. */
static int take_response(exchange_t *x)
{
    size_t n = evbuffer_get_length(x->body);
    x->resp->body = malloc(n + 1);
    if (x->resp->body == NULL)
        return hearth_error_tag(x->err, ENOMEM, "out of memory for a %zu-byte response", n);
    evbuffer_remove(x->body, x->resp->body, n);
    x->resp->body[n] = '\0';
    x->resp->body_len = n;
    return 0;
}

int client_request(const client_opts_t *opts, const char *method, const char *path, const client_header_t *headers,
                   size_t n_headers, const void *body, size_t body_len, client_response_t *resp,
                   hearth_error_t *err)
{
    memset(resp, 0, sizeof(*resp));
    TAILQ_INIT(&resp->headers);
    if (path[0] != '/')
        return hearth_error_tag(err, EINVAL, "request path `%s` does not start with /", path);
    if (strpbrk(path, " \r\n\t") != NULL)
        return hearth_error_tag(err, EINVAL, "request path `%s` has spaces or line breaks", path);
    if (opts->url == NULL && (opts->socket_path == NULL || opts->socket_path[0] == '\0'))
        return hearth_error_tag(err, EINVAL, "neither a socket nor a URL to reach the daemon");
    if (opts->token != NULL && (!header_text_ok(opts->token, false) || strlen(opts->token) > 4096))
        return hearth_error_tag(err, EINVAL, "the token has control characters or is over 4096 bytes");
    for (size_t i = 0; i < n_headers; i++)
        if (!header_text_ok(headers[i].name, true) || !header_text_ok(headers[i].value, false))
            return hearth_error_tag(err, EINVAL, "header `%s` has characters HTTP does not allow", headers[i].name);

    /* A write to a daemon that already closed must be an error, not death. */
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);

    exchange_t x = {
        .opts = opts,
        .max_body = opts->max_response_bytes ? opts->max_response_bytes : DEFAULT_MAX_RESPONSE,
        .resp = resp,
        .err = err,
        .rc = 1,
        .state = ST_STATUS,
    };
    int rc = -1;
    x.base = event_base_new();
    x.body = evbuffer_new();
    x.deadline = x.base ? evtimer_new(x.base, on_deadline, &x) : NULL;
    if (x.base == NULL || x.body == NULL || x.deadline == NULL) {
        hearth_error_tag(err, ENOMEM, "cannot set up an event loop");
        goto out;
    }
    uint64_t total_ms = (uint64_t)(opts->connect_timeout_ms ? opts->connect_timeout_ms : DEFAULT_CONNECT_MS) +
                        (opts->request_timeout_ms ? opts->request_timeout_ms : DEFAULT_REQUEST_MS);
    struct timeval tv = {.tv_sec = (time_t)(total_ms / 1000), .tv_usec = (suseconds_t)(total_ms % 1000) * 1000};
    evtimer_add(x.deadline, &tv);

    if (opts->url != NULL)
        rc = http_exchange(&x, method, path, headers, n_headers, body, body_len);
    else
        rc = unix_exchange(&x, method, path, headers, n_headers, body, body_len);
    if (rc < 0)
        goto out;
    if (event_base_dispatch(x.base) < 0 && x.rc == 1)
        fail(&x, EIO, "event loop failed");
    if (x.rc == 1) /* nothing left to wait for, yet no answer: cannot happen, but never report success */
        fail(&x, ECONNRESET, "no response from %s", client_target(opts));
    rc = x.rc == 0 ? take_response(&x) : -1;
out:
    if (x.bev)
        bufferevent_free(x.bev);
    if (x.evcon) /* frees a request still pending, without calling back */
        evhttp_connection_free(x.evcon);
    if (x.connect_timer)
        event_free(x.connect_timer);
    if (x.deadline)
        event_free(x.deadline);
    if (x.body)
        evbuffer_free(x.body);
    if (x.base)
        event_base_free(x.base);
    if (rc < 0)
        client_response_free(resp);
    return rc < 0 ? -1 : 0;
}

int client_parse_response(const void *data, size_t len, const size_t *pieces, size_t n_pieces, bool head,
                          size_t max_body, client_response_t *resp, hearth_error_t *err)
{
    memset(resp, 0, sizeof(*resp));
    TAILQ_INIT(&resp->headers);
    const client_opts_t opts = {.socket_path = "(buffer)"};
    exchange_t x = {
        .opts = &opts,
        .max_body = max_body ? max_body : DEFAULT_MAX_RESPONSE,
        .resp = resp,
        .err = err,
        .rc = 1,
        .state = ST_STATUS,
        .head = head,
    };
    int rc = -1;
    struct evbuffer *in = evbuffer_new();
    x.body = evbuffer_new();
    if (in == NULL || x.body == NULL) {
        hearth_error_tag(err, ENOMEM, "out of memory");
        goto out;
    }
    const char *p = data;
    size_t left = len;
    for (size_t i = 0; x.rc == 1 && left > 0; i++) {
        size_t n = i < n_pieces && pieces[i] < left ? pieces[i] : left;
        if (evbuffer_add(in, p, n) < 0) {
            fail(&x, ENOMEM, "out of memory");
            break;
        }
        p += n;
        left -= n;
        parse(&x, in);
    }
    parse_eof(&x, in);
    rc = x.rc == 0 ? take_response(&x) : -1;
out:
    if (in)
        evbuffer_free(in);
    if (x.body)
        evbuffer_free(x.body);
    if (rc < 0)
        client_response_free(resp);
    return rc < 0 ? -1 : 0;
}
