/* A small blocking HTTP/1.1 client for the `hearth` CLI: one request, one
 * response, over the daemon's Unix socket or over TCP.
 *
 * TCP goes through libevent's evhttp client. The Unix socket cannot: in
 * libevent 2.1, evhttp_make_request() on a connection that is not yet in a
 * connected state calls evhttp_connection_connect_(), which first resets the
 * connection (closing whatever fd the bufferevent carries) and then resolves
 * the address with bufferevent_socket_connect_hostname(), which accepts only
 * AF_INET, AF_INET6 and AF_UNSPEC. There is no public way to mark a
 * connection as already connected; Unix sockets arrived in 2.2
 * (evhttp_connection_base_bufferevent_unix_new). So over the socket the
 * request is written by hand and the response parsed from an evbuffer:
 * status line, headers, then a body delimited by Content-Length, chunked
 * encoding or the end of the connection (we always send Connection: close),
 * every part bounded.
 *
 * Both paths share the limits, the timeouts and the result shape. */
#ifndef HEARTH_CLIENT_H
#define HEARTH_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/keyvalq_struct.h>

#include "common/util.h"

/* Where the daemon is and how to talk to it. */
typedef struct client_opts {
    const char *socket_path;      /* Unix socket; used when url is NULL */
    const char *url;              /* "http://host[:port][/prefix]"; NULL for the socket */
    const char *token;            /* bearer token, or NULL (the socket then authenticates by uid) */
    uint32_t connect_timeout_ms;  /* 0: 5000 */
    uint32_t request_timeout_ms;  /* whole exchange after connecting; 0: 15 minutes */
    size_t max_response_bytes;    /* body cap; 0: 64 MiB */
} client_opts_t;

/* One extra request header. Values must not contain CR, LF or NUL. */
typedef struct client_header {
    const char *name;
    const char *value;
} client_header_t;

typedef struct client_response {
    int status;                /* HTTP status code */
    struct evkeyvalq headers;  /* read with client_header() */
    char *body;                /* NUL-terminated (the NUL is not counted) */
    size_t body_len;
} client_response_t;

/* Failure kinds, in err->code next to an errno-like cause:
 *   ECONNREFUSED, ENOENT, EACCES, ETIMEDOUT, EHOSTUNREACH...: not reached (connect failed or timed out)
 *   ECONNRESET: the connection broke before a whole response came
 *   EPROTO: the answer is not HTTP we understand
 *   EFBIG: the response is over max_response_bytes (or its headers over 64 KiB)
 *   EINVAL: bad options (URL, header value) */

/* Send one request and wait for the whole response. path starts with "/"
 * (a URL's path prefix is put in front of it). body may be NULL when
 * body_len is 0. On success resp is filled (release it with
 * client_response_free) whatever the HTTP status; on failure resp is left
 * empty and -1 is returned with err set. */
int client_request(const client_opts_t *opts, const char *method, const char *path, const client_header_t *headers,
                   size_t n_headers, const void *body, size_t body_len, client_response_t *resp,
                   hearth_error_t *err);

void client_response_free(client_response_t *resp);

/* The Unix-socket path's response parser, driven from memory (fuzzing,
 * tests): data arrives in pieces of the given sizes (the rest in one
 * piece once they run out), then the connection ends. Returns and fills
 * resp exactly as client_request would for that byte stream; head: the
 * request was HEAD; max_body 0: the default. */
int client_parse_response(const void *data, size_t len, const size_t *pieces, size_t n_pieces, bool head,
                          size_t max_body, client_response_t *resp, hearth_error_t *err);

/* A response header's value (case-insensitive name), or NULL. */
const char *client_header(const client_response_t *resp, const char *name);

/* Describes where opts points ("unix:/run/hearth/hearth.sock" or the URL). */
const char *client_target(const client_opts_t *opts);

#endif
