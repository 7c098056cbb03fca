/* A minimal AWS Lambda custom runtime in C: it answers each invocation with
 * its payload, unchanged. Plain sockets, one HTTP/1.1 keep-alive connection
 * to the Runtime API (AWS_LAMBDA_RUNTIME_API, default 127.0.0.1:9001), no
 * libraries: build it static for any sandbox,
 *     gcc -O2 -static -o echo_runtime tests/runtimes/echo_runtime.c
 * Used by the lambda protocol's integration test and its benchmark. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_in api_addr;
static char host[128] = "127.0.0.1:9001";
static int fd = -1;

/* Buffered input on fd. */
static char *in;
static size_t in_cap, in_start, in_end;

static void die(const char *what)
{
    fprintf(stderr, "echo_runtime: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void connect_api(void)
{
    for (int tries = 0;; tries++) {
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            die("socket");
        if (connect(fd, (struct sockaddr *)&api_addr, sizeof(api_addr)) == 0)
            break;
        close(fd);
        if (tries > 100)
            die("connect");
        usleep(10000);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    in_start = in_end = 0;
}

static void reconnect(void)
{
    if (fd >= 0)
        close(fd);
    connect_api();
}

static int write_all(const char *p, size_t n)
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

/* More input: 0, or -1 at EOF / error. */
static int fill(void)
{
    if (in_start > 0 && in_start == in_end)
        in_start = in_end = 0;
    if (in_end == in_cap) {
        if (in_start > 0) {
            memmove(in, in + in_start, in_end - in_start);
            in_end -= in_start;
            in_start = 0;
        } else {
            in_cap = in_cap ? in_cap * 2 : 65536;
            in = realloc(in, in_cap);
            if (in == NULL)
                die("realloc");
        }
    }
    for (;;) {
        ssize_t r = read(fd, in + in_end, in_cap - in_end);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        in_end += (size_t)r;
        return 0;
    }
}

/* One line (without CRLF), NUL-terminated in place: its start, or NULL. */
static char *read_line(void)
{
    for (;;) {
        char *nl = memchr(in + in_start, '\n', in_end - in_start);
        if (nl != NULL) {
            char *line = in + in_start;
            *nl = '\0';
            if (nl > line && nl[-1] == '\r')
                nl[-1] = '\0';
            in_start = (size_t)(nl - in) + 1;
            return line;
        }
        if (fill() < 0)
            return NULL;
    }
}

/* n body bytes appended to *body. */
static int read_bytes(char **body, size_t *len, size_t *cap, size_t n)
{
    if (*len + n + 1 > *cap) {
        *cap = *len + n + 1;
        *body = realloc(*body, *cap);
        if (*body == NULL)
            die("realloc");
    }
    while (n > 0) {
        if (in_start == in_end && fill() < 0)
            return -1;
        size_t k = in_end - in_start < n ? in_end - in_start : n;
        memcpy(*body + *len, in + in_start, k);
        in_start += k;
        *len += k;
        n -= k;
    }
    return 0;
}

/* A response: its status, the request id header (if asked), the body. -1 if the connection broke. */
static int read_response(int *status, char *id, size_t id_len, char **body, size_t *len, size_t *cap, int *close_after)
{
    char *line = read_line();
    if (line == NULL)
        return -1;
    if (sscanf(line, "HTTP/%*d.%*d %d", status) != 1)
        return -1;
    long clen = -1;
    int chunked = 0;
    *close_after = strncmp(line, "HTTP/1.0", 8) == 0;
    if (id != NULL)
        id[0] = '\0';
    while ((line = read_line()) != NULL && line[0] != '\0') {
        char *colon = strchr(line, ':');
        if (colon == NULL)
            continue;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if (strcasecmp(line, "Content-Length") == 0)
            clen = strtol(v, NULL, 10);
        else if (strcasecmp(line, "Transfer-Encoding") == 0 && strcasestr(v, "chunked") != NULL)
            chunked = 1;
        else if (strcasecmp(line, "Connection") == 0 && strcasecmp(v, "close") == 0)
            *close_after = 1;
        else if (id != NULL && strcasecmp(line, "Lambda-Runtime-Aws-Request-Id") == 0)
            snprintf(id, id_len, "%s", v);
    }
    if (line == NULL)
        return -1;
    *len = 0;
    if (chunked) {
        for (;;) {
            if ((line = read_line()) == NULL)
                return -1;
            size_t n = strtoul(line, NULL, 16);
            if (n == 0) {
                while ((line = read_line()) != NULL && line[0] != '\0')
                    ; /* trailers */
                if (line == NULL)
                    return -1;
                break;
            }
            if (read_bytes(body, len, cap, n) < 0 || read_line() == NULL)
                return -1;
        }
    } else if (clen > 0) {
        if (read_bytes(body, len, cap, (size_t)clen) < 0)
            return -1;
    } else if (clen < 0 && *close_after) {
        while (fill() == 0)
            ;
        if (read_bytes(body, len, cap, in_end - in_start) < 0)
            return -1;
        return 0;
    }
    if (*body == NULL) {
        *cap = 1;
        *body = malloc(1);
    }
    return 0;
}

int main(void)
{
    const char *api = getenv("AWS_LAMBDA_RUNTIME_API");
    if (api != NULL && *api)
        snprintf(host, sizeof(host), "%s", api);
    char ip[128];
    snprintf(ip, sizeof(ip), "%s", host);
    char *colon = strrchr(ip, ':');
    int port = 9001;
    if (colon != NULL) {
        *colon = '\0';
        port = atoi(colon + 1);
    }
    memset(&api_addr, 0, sizeof(api_addr));
    api_addr.sin_family = AF_INET;
    api_addr.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, ip, &api_addr.sin_addr) != 1) {
        fprintf(stderr, "echo_runtime: AWS_LAMBDA_RUNTIME_API must be IPv4:PORT, not %s\n", host);
        return 1;
    }
    connect_api();

    char *payload = NULL, *reply = NULL;
    size_t plen = 0, pcap = 0, rlen = 0, rcap = 0;
    char id[256], head[1024];
    for (;;) {
        int status, close_after;
        snprintf(head, sizeof(head), "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: %s\r\n\r\n", host);
        if (write_all(head, strlen(head)) < 0 ||
            read_response(&status, id, sizeof(id), &payload, &plen, &pcap, &close_after) < 0) {
            reconnect();
            continue;
        }
        if (close_after)
            reconnect();
        if (status != 200 || id[0] == '\0') {
            fprintf(stderr, "echo_runtime: next answered %d\n", status);
            usleep(100000);
            continue;
        }
        int n = snprintf(head, sizeof(head),
                         "POST /2018-06-01/runtime/invocation/%s/response HTTP/1.1\r\nHost: %s\r\n"
                         "Content-Type: application/octet-stream\r\nContent-Length: %zu\r\n\r\n",
                         id, host, plen);
        if (write_all(head, (size_t)n) < 0 || write_all(payload, plen) < 0 ||
            read_response(&status, NULL, 0, &reply, &rlen, &rcap, &close_after) < 0) {
            /* The answer may be lost with the connection; the daemon times the call out. */
            reconnect();
            continue;
        }
        if (close_after)
            reconnect();
        if (status != 202)
            fprintf(stderr, "echo_runtime: response for %s answered %d\n", id, status);
    }
}
