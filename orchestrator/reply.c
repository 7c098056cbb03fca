/* hd_send_reply: an HTTP reply that leaves at once (see daemon.h). Its own
 * file so that whatever speaks HTTP can link it alone (tests/fuzz). */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>

#include "orchestrator/daemon.h"

void hd_send_reply(struct evhttp_request *req, int code, const char *reason, struct evbuffer *body)
{
    /* Taken first: without a connection evhttp frees req at once. */
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    evhttp_send_reply(req, code, reason, body);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd < 0)
        return;
    /* A socket bufferevent keeps its output's start frozen, and unfreezes
     * it around its own writes. What cannot go now goes as before. */
    struct evbuffer *out = bufferevent_get_output(bev);
    evbuffer_unfreeze(out, 1);
    evbuffer_write(out, fd);
    evbuffer_freeze(out, 1);
}
