/* The HTTP API, on evhttp, the same routes on the Unix socket and on TCP.
 * Errors are JSON {"error": CODE, "message": TEXT}. Who calls: a bearer
 * token on either listener, or on the Unix socket the peer's uid.
 *
 * Connections are accepted by our own listeners so that we can count them
 * (max_connections) and give each a deadline for its first request: a
 * client that trickles bytes cannot hold a connection forever. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/queue.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "orchestrator/daemon.h"

typedef struct api_conn {
    hearth_t *hd;
    struct bufferevent *bev;       /* the connection's, with a reference of ours; the map's key */
    uint64_t accepted_ns;          /* 0: over max_connections, end at once */
    bool served;                   /* a request reached a handler */
    struct evhttp_request *pending; /* the request being answered */
    enum { PEER_UNKNOWN, PEER_NONE, PEER_UID } peer; /* the Unix-socket peer's uid, read once */
    uid_t peer_uid;
} api_conn_t;


/* --- replies ----------------------------------------------------------------- */

static void reply_json(struct evhttp_request *req, int code, const char *reason, json_t *body)
{
    struct evbuffer *buf = evbuffer_new();
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (buf != NULL && text != NULL) {
        evbuffer_add(buf, text, strlen(text));
        evbuffer_add(buf, "\n", 1);
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    hd_send_reply(req, code, reason, buf);
    free(text);
    json_decref(body);
    if (buf != NULL)
        evbuffer_free(buf);
}

static void reply_error(struct evhttp_request *req, int code, const char *error, const char *fmt, ...)
    HEARTH_PRINTF(4, 5);

static void reply_error(struct evhttp_request *req, int code, const char *error, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    static const struct {
        int code;
        const char *reason;
    } reasons[] = {{400, "Bad Request"},       {401, "Unauthorized"},       {403, "Forbidden"},
                   {404, "Not Found"},         {405, "Method Not Allowed"}, {409, "Conflict"},
                   {413, "Payload Too Large"}, {429, "Too Many Requests"},  {500, "Internal Server Error"},
                   {502, "Bad Gateway"},       {503, "Service Unavailable"}, {504, "Gateway Timeout"}};
    const char *reason = "Error";
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (reasons[i].code == code)
            reason = reasons[i].reason;
    reply_json(req, code, reason, json_pack("{s:s,s:s}", "error", error, "message", msg));
}

/* Map a module's errno to a status, as registry and config document. */
static void reply_err(struct evhttp_request *req, const hearth_error_t *err)
{
    switch (err->code) {
    case EINVAL:
        reply_error(req, 400, "bad_request", "%s", err->msg);
        break;
    case ENOENT:
        reply_error(req, 404, "not_found", "%s", err->msg);
        break;
    case EACCES:
    case EPERM:
        reply_error(req, 403, "forbidden", "%s", err->msg);
        break;
    case EEXIST:
        reply_error(req, 409, "conflict", "%s", err->msg);
        break;
    case ENOSPC:
        reply_error(req, 503, "storage_full", "%s", err->msg);
        break;
    default:
        hearth_log(HEARTH_LOG_ERROR, "request failed: %s", err->msg);
        reply_error(req, 500, "internal", "%s", err->msg);
    }
}

static api_conn_t *conn_of(hearth_t *hd, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    return bev ? idmap_get(&hd->conns, (uint64_t)(uintptr_t)bev) : NULL;
}

static bool is_unix(const api_conn_t *c)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd = (int)bufferevent_getfd(c->bev);
    return fd >= 0 && getsockname(fd, (struct sockaddr *)&ss, &len) == 0 && ss.ss_family == AF_UNIX;
}

static void answered(hearth_t *hd, struct evhttp_request *req)
{
    api_conn_t *c = conn_of(hd, req);
    if (c != NULL && c->pending == req)
        c->pending = NULL;
}

void api_respond_invocation(hd_inv_t *inv)
{
    struct evhttp_request *req = inv->req;
    answered(inv->hd, req);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char v[64];
    evhttp_add_header(h, "X-Hearth-Invocation-Id", inv->id);
    evhttp_add_header(h, "X-Hearth-Start", sched_start_name(inv->start_kind));
    uint64_t dur = inv->started_ns ? now_ns() - inv->started_ns : 0;
    snprintf(v, sizeof(v), "%.3f", (double)dur / 1e6);
    evhttp_add_header(h, "X-Hearth-Duration-Ms", v);
    snprintf(v, sizeof(v), "%.3f", (double)inv->cpu_ns / 1e6);
    evhttp_add_header(h, "X-Hearth-Cpu-Ms", v);
    if (inv->http != NULL && inv->http->status != 0) {
        /* An http function's answer, as its server gave it. */
        struct evkeyval *kv;
        TAILQ_FOREACH(kv, &inv->http->resp_headers, next)
        evhttp_add_header(h, kv->key, kv->value);
        if (evhttp_find_header(h, "Content-Type") == NULL && evbuffer_get_length(inv->output) > 0)
            evhttp_add_header(h, "Content-Type", "application/octet-stream");
        hd_send_reply(req, inv->http->status, inv->http->reason[0] ? inv->http->reason : NULL, inv->output);
        return;
    }
    json_t *log = json_stringn_nocheck(inv->log_tail, inv->log_len);
    switch (inv->outcome) {
    case HD_OUT_OK:
        evhttp_add_header(h, "Content-Type", "application/octet-stream");
        hd_send_reply(req, 200, "OK", inv->output);
        json_decref(log);
        return;
    case HD_OUT_FAILED:
        if (inv->error_type[0]) { /* a runtime's reported error: no process exited */
            reply_json(req, 502, "Bad Gateway",
                       json_pack("{s:s,s:s,s:s,s:o}", "error", "function_failed", "message", inv->message,
                                 "error_type", inv->error_type, "stderr", log));
            return;
        }
        /* fall through */
    case HD_OUT_CRASHED:
        reply_json(req, 502, "Bad Gateway",
                   json_pack("{s:s,s:s,s:i,s:o}", "error", "function_failed", "message", inv->message,
                             inv->outcome == HD_OUT_FAILED ? "exit_status" : "signal", inv->status, "stderr", log));
        return;
    case HD_OUT_OOM:
        reply_json(req, 502, "Bad Gateway",
                   json_pack("{s:s,s:s,s:o}", "error", "out_of_memory", "message", inv->message, "stderr", log));
        return;
    case HD_OUT_TIMEOUT:
        reply_json(req, 504, "Gateway Timeout",
                   json_pack("{s:s,s:s,s:o}", "error", "timeout", "message", inv->message, "stderr", log));
        return;
    case HD_OUT_TOO_LARGE:
        reply_json(req, 502, "Bad Gateway",
                   json_pack("{s:s,s:s,s:o}", "error", "output_too_large", "message", inv->message, "stderr", log));
        return;
    case HD_OUT_START:
        json_decref(log);
        reply_error(req, 502, "start_failed", "%s", inv->message);
        return;
    case HD_OUT_LOST:
        reply_json(req, 502, "Bad Gateway",
                   json_pack("{s:s,s:s,s:o}", "error", "sandbox_lost", "message", inv->message, "stderr", log));
        return;
    case HD_OUT_CANCELLED:
        json_decref(log);
        /* Nobody reads this; answering frees the request. */
        reply_error(req, 499, "cancelled", "the client went away");
        return;
    }
}

void api_respond_rejected(hd_inv_t *inv, sched_reject_reason_t reason, uint32_t retry_after_ms)
{
    struct evhttp_request *req = inv->req;
    answered(inv->hd, req);
    char v[32];
    snprintf(v, sizeof(v), "%u", (retry_after_ms + 999) / 1000 ? (retry_after_ms + 999) / 1000 : 1);
    switch (reason) {
    case SCHED_REJECT_QUEUE_FULL:
    case SCHED_REJECT_QUEUE_TIMEOUT:
    case SCHED_REJECT_CPU_BUDGET:
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", v);
        reply_error(req, 429, sched_reject_name(reason), "%s",
                    reason == SCHED_REJECT_CPU_BUDGET ? "the tenant's CPU budget for this minute is spent"
                    : reason == SCHED_REJECT_QUEUE_FULL
                        ? "no capacity: the function's queue is full"
                        : "no sandbox became free within the queue timeout");
        break;
    case SCHED_REJECT_REMOVED:
        reply_error(req, 404, "not_found", "the function was removed");
        break;
    case SCHED_REJECT_START_FAILED:
        reply_error(req, 502, "start_failed", "the function's sandboxes fail to start: %s",
                    hd_start_error(inv->hd, inv->fn->id));
        break;
    case SCHED_REJECT_SHUTDOWN:
        reply_error(req, 503, "shutting_down", "hearthd is shutting down");
        break;
    }
}

/* --- who calls ---------------------------------------------------------------- */

static const auth_tenant_t *caller_of(hearth_t *hd, struct evhttp_request *req, api_conn_t *c)
{
    const char *authz = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (authz != NULL) {
        const char *tok;
        size_t len;
        hearth_error_t err;
        if (auth_parse_bearer(authz, &tok, &len, &err) < 0)
            return NULL;
        return auth_by_token(hd->auth, tok, len);
    }
    if (c == NULL)
        return NULL;
    if (c->peer == PEER_UNKNOWN) {
        /* SO_PEERCRED is the peer as it connected: the same for every
         * request on the connection. */
        hearth_error_t err;
        c->peer = is_unix(c) && auth_peer_uid((int)bufferevent_getfd(c->bev), &c->peer_uid, NULL, &err) == 0
                      ? PEER_UID
                      : PEER_NONE;
    }
    return c->peer == PEER_UID ? auth_by_uid(hd->auth, c->peer_uid) : NULL;
}

/* --- routes -------------------------------------------------------------------- */

/* Split "/v1/a/b/c" into at most max segments (decoded). Returns count or -1. */
static int split_path(const char *path, char seg[][128], int max)
{
    int n = 0;
    const char *p = path;
    while (*p == '/')
        p++;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (n == max || len == 0 || len >= 128)
            return -1;
        char raw[128];
        memcpy(raw, p, len);
        raw[len] = '\0';
        char *dec = evhttp_uridecode(raw, 0, NULL);
        if (dec == NULL || strlen(dec) >= 128 || strchr(dec, '/') != NULL) {
            free(dec);
            return -1;
        }
        strcpy(seg[n++], dec);
        free(dec);
        p += len;
        if (*p == '/')
            p++;
    }
    return n;
}

/* For /v1[/tenants/{t}]/functions/{name}/invocations/SUB: the offset of
 * /SUB in the raw path, or -1 when nothing follows .../invocations. SUB
 * stays undecoded: it is an http function's own path. */
static ssize_t invocations_sub(const char *path)
{
    const char *p = path;
    if (strncmp(p, "/v1/", 4) != 0)
        return -1;
    p += 4;
    if (strncmp(p, "tenants/", 8) == 0) {
        size_t t = strcspn(p + 8, "/");
        if (t == 0 || p[8 + t] != '/')
            return -1;
        p += 8 + t + 1;
    }
    if (strncmp(p, "functions/", 10) != 0)
        return -1;
    p += 10;
    size_t n = strcspn(p, "/");
    if (n == 0 || p[n] != '/' || strncmp(p + n + 1, "invocations/", 12) != 0)
        return -1;
    return (p + n + 12) - path;
}

static json_t *function_json(const reg_function_t *f)
{
    json_t *o = cfg_function_to_json(f->spec);
    if (o != NULL) {
        json_object_set_new(o, "version", json_integer(f->version));
        json_object_set_new(o, "source", json_string(f->source == REG_SOURCE_FILE ? "file" : "api"));
    }
    return o;
}

static void handle_put(hearth_t *hd, struct evhttp_request *req, const auth_tenant_t *caller, const char *tenant,
                       const char *name)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    json_error_t jerr;
    json_t *obj = json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES, &jerr);
    if (obj == NULL || !json_is_object(obj)) {
        json_decref(obj);
        reply_error(req, 400, "bad_request", "the body must be a JSON object: %s",
                    obj ? "not an object" : jerr.text);
        return;
    }
    json_t *jn = json_object_get(obj, "name");
    if (jn == NULL)
        json_object_set_new(obj, "name", json_string(name));
    else if (!json_is_string(jn) || strcmp(json_string_value(jn), name) != 0) {
        json_decref(obj);
        reply_error(req, 400, "bad_request", "name: must match the URL's `%s`", name);
        return;
    }
    json_t *jt = json_object_get(obj, "tenant");
    const char *spec_tenant = tenant ? tenant : jt && json_is_string(jt) ? json_string_value(jt) : caller->name;
    if (tenant != NULL && jt != NULL && (!json_is_string(jt) || strcmp(json_string_value(jt), tenant) != 0)) {
        json_decref(obj);
        reply_error(req, 400, "bad_request", "tenant: must match the URL's `%s`", tenant);
        return;
    }
    if (!auth_may_act(caller, spec_tenant)) {
        reply_error(req, 403, "forbidden", "only an admin tenant may deploy for tenant `%s`", spec_tenant);
        json_decref(obj); /* after: spec_tenant may point into it */
        return;
    }
    if (hd_tenant_id(hd, spec_tenant) == 0) {
        reply_error(req, 400, "bad_request", "tenant: no tenant `%s` in the daemon's config", spec_tenant);
        json_decref(obj); /* after: spec_tenant may point into it */
        return;
    }
    hearth_error_t err = {0};
    cfg_function_t *spec = NULL;
    int rc = cfg_function_from_json(obj, spec_tenant, &spec, &err);
    json_decref(obj);
    /* A spec from the API names host paths only where the operator's
     * mount_sources and rootfs_dirs allow (functions_dir specs are the
     * operator's own and skip the allowlist). */
    if (rc == 0 && (rc = cfg_function_check_paths(hd->cfg, spec, false, NULL, &err)) < 0)
        cfg_function_free(spec);
    if (rc < 0) {
        reply_error(req, 400, "bad_spec", "%s", err.msg);
        return;
    }
    bool created = false;
    const reg_function_t *out = NULL;
    if (reg_put(hd->reg, hd->auth, caller, spec, &created, &out, &err) < 0) {
        reply_err(req, &err);
        return;
    }
    reply_json(req, created ? 201 : 200, created ? "Created" : "OK", function_json(out));
}

static void handle_list(hearth_t *hd, struct evhttp_request *req, const auth_tenant_t *caller, const char *tenant)
{
    reg_function_t **list = NULL;
    size_t n = 0;
    hearth_error_t err = {0};
    if (tenant != NULL && !auth_may_act(caller, tenant)) {
        reply_json(req, 200, "OK", json_pack("{s:[]}", "functions"));
        return;
    }
    if (reg_list(hd->reg, caller, tenant, &list, &n, &err) < 0) {
        reply_err(req, &err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, function_json(list[i]));
    reg_list_free(list, n);
    reply_json(req, 200, "OK", json_pack("{s:o}", "functions", arr));
}

/* sub: for an http function, the raw path below .../invocations (NULL: none). */
static void handle_invoke(hearth_t *hd, struct evhttp_request *req, api_conn_t *c, const reg_function_t *fn,
                          const char *sub)
{
    if (hd->draining) {
        reply_error(req, 503, "shutting_down", "hearthd is shutting down");
        return;
    }
    bool http = fn->spec->protocol == CFG_PROTO_HTTP;
    struct evbuffer *payload = evbuffer_new();
    if (payload == NULL) {
        reply_error(req, 500, "internal", "out of memory");
        return;
    }
    evbuffer_add_buffer(payload, evhttp_request_get_input_buffer(req));
    hearth_error_t err = {0};
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *prefer = evhttp_find_header(in, "Prefer");
    if (prefer != NULL && strcasestr(prefer, "respond-async") != NULL) {
        /* The journal keeps a payload, nothing else: an http function's
         * stored invocation is a POST of it to `/`. */
        if (http && (sub != NULL || evhttp_request_get_command(req) != EVHTTP_REQ_POST)) {
            evbuffer_free(payload);
            reply_error(req, 400, "bad_request",
                        "Prefer: respond-async: an http function's asynchronous invocation is a POST to "
                        "/v1/functions/%s/invocations (its body is stored, and POSTed to / when it runs)",
                        fn->spec->name);
            return;
        }
        const char *key = evhttp_find_header(in, "Idempotency-Key");
        const char *cb = evhttp_find_header(in, "X-Callback-Url");
        if (cb != NULL && strncmp(cb, "http://", 7) != 0) {
            evbuffer_free(payload);
            reply_error(req, 400, "bad_request", "X-Callback-Url: only http:// URLs are supported");
            return;
        }
        int rc = async_accept(hd, req, fn, payload, key, cb, &err);
        evbuffer_free(payload);
        if (rc < 0) {
            if (err.code == EINVAL || err.code == EMSGSIZE)
                reply_error(req, 400, "bad_request", "%s", err.msg);
            else
                reply_err(req, &err);
        }
        return; /* 202 or 503 after the group commit */
    }
    hd_http_t *h = NULL;
    if (http && (h = http_request_new(req, sub, &err)) == NULL) {
        evbuffer_free(payload);
        reply_err(req, &err);
        return;
    }
    if (c != NULL)
        c->pending = req;
    if ((h != NULL ? hd_invoke_http(hd, req, fn, payload, h, &err) : hd_invoke(hd, req, fn, payload, &err)) < 0) {
        http_request_free(h);
        if (c != NULL)
            c->pending = NULL;
        evbuffer_free(payload);
        reply_err(req, &err);
    }
}

static json_t *usage_json(hearth_t *hd, const char *tenant)
{
    store_usage_t u = {0};
    hearth_error_t err;
    hd_usage_flush(hd);
    if (store_read_usage(hd->store, tenant, NULL, &u, &err) < 0)
        hearth_log(HEARTH_LOG_WARN, "usage of %s: %s", tenant, err.msg);
    return json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "tenant", tenant, "cpu_ms",
                     (json_int_t)(u.cpu_ns_invocation / 1000000), "overhead_cpu_ms",
                     (json_int_t)(u.cpu_ns_overhead / 1000000), "invocations", (json_int_t)u.invocations, "errors",
                     (json_int_t)u.errors, "cold_starts", (json_int_t)u.cold_starts, "memory_mb_ms",
                     (json_int_t)u.memory_mb_ms);
}

static void handle_status(hearth_t *hd, struct evhttp_request *req, const auth_tenant_t *caller)
{
    reg_function_t **list = NULL;
    size_t n = 0;
    hearth_error_t err = {0};
    if (reg_list(hd->reg, caller, NULL, &list, &n, &err) < 0) {
        reply_err(req, &err);
        return;
    }
    json_t *fns = json_array();
    for (size_t i = 0; i < n; i++) {
        sched_fn_status_t st;
        if (sched_fn_status(hd->sched, list[i]->id, &st, &err) < 0)
            continue;
        json_array_append_new(
            fns, json_pack("{s:s,s:s,s:I,s:{s:i,s:i,s:i,s:i},s:i,s:i,s:i,s:b,s:f,s:f,s:s}", "tenant",
                           list[i]->spec->tenant, "name", list[i]->spec->name, "version",
                           (json_int_t)list[i]->version, "sandboxes", "creating", st.creating, "idle", st.idle, "busy",
                           st.busy, "draining", st.draining, "queued", st.queued, "in_flight", st.in_flight,
                           "desired", st.desired, "panic", st.panic, "avg_stable", st.avg_stable, "avg_panic",
                           st.avg_panic, "reason", st.reason));
    }
    reg_list_free(list, n);
    json_t *host = json_null();
    if (caller->admin) {
        sched_host_status_t hs;
        sched_host_status(hd->sched, &hs);
        host = json_pack("{s:i,s:I,s:i,s:i,s:i,s:i,s:s}", "sandboxes", hs.sandboxes, "memory_mb",
                         (json_int_t)hs.memory_mb, "prewarm_ready", hs.generic_ready, "prewarm_target",
                         hs.prewarm_target, "queued", hs.queued, "in_flight", hs.in_flight, "cgroup",
                         sbx_host_cgroup_mode(hd->host));
    }
    reply_json(req, 200, "OK", json_pack("{s:o,s:o}", "host", host, "functions", fns));
}

static json_t *record_json(const jnl_record_t *r)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:i,s:i,s:I}", "id", r->id, "tenant", r->tenant, "function", r->function,
                          "status", jnl_status_name(r->status), "attempts", r->attempts, "max_attempts",
                          r->max_attempts, "created", (json_int_t)r->created);
    json_object_set_new(o, "started", r->started ? json_integer(r->started) : json_null());
    json_object_set_new(o, "finished", r->finished ? json_integer(r->finished) : json_null());
    if (r->status == JNL_SUCCEEDED && r->result != NULL) {
        json_t *res = json_stringn(r->result, r->result_len);
        if (res != NULL) {
            json_object_set_new(o, "result", res);
        } else {
            /* Not UTF-8: the bytes, base64-encoded (libcrypto's encoder). */
            size_t n = 4 * ((r->result_len + 2) / 3) + 1;
            unsigned char *b64 = malloc(n);
            if (b64 != NULL && r->result_len <= INT32_MAX) {
                EVP_EncodeBlock(b64, r->result, (int)r->result_len);
                json_object_set_new(o, "result_base64", json_string((const char *)b64));
            }
            free(b64);
        }
    }
    if (r->error != NULL)
        json_object_set_new(o, "error", json_string(r->error));
    if (r->callback_url != NULL)
        json_object_set_new(o, "callback", json_pack("{s:s,s:s}", "url", r->callback_url, "state",
                                                     jnl_cb_state_name(r->callback_state)));
    return o;
}

static int list_one(const jnl_record_t *r, void *arg)
{
    json_array_append_new(arg, record_json(r));
    return 0;
}

/* /v1/invocations/{id}[/retry] */
static void handle_invocation(hearth_t *hd, struct evhttp_request *req, const auth_tenant_t *caller, const char *id,
                              bool retry)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    const char *tenant = caller->admin ? NULL : caller->name;
    hearth_error_t err = {0};
    if (retry) {
        if (m != EVHTTP_REQ_POST) {
            reply_error(req, 405, "method_not_allowed", "use POST");
        } else if (jnl_retry(hd->jnl, id, tenant, wall_ms(), &err) < 0) {
            if (err.code == ENOENT)
                reply_error(req, 404, "not_found", "no invocation `%s`", id);
            else if (err.code == EINVAL)
                reply_error(req, 409, "conflict", "invocation `%s` is not dead: only dead ones are retried", id);
            else
                reply_err(req, &err);
        } else {
            reply_json(req, 200, "OK", json_pack("{s:s,s:s}", "id", id, "status", "queued"));
        }
        return;
    }
    if (m != EVHTTP_REQ_GET) {
        reply_error(req, 405, "method_not_allowed", "use GET");
        return;
    }
    jnl_record_t r;
    int rc = jnl_get(hd->jnl, id, tenant, &r, &err);
    if (rc < 0) {
        reply_err(req, &err);
    } else if (rc == 0) {
        reply_error(req, 404, "not_found", "no invocation `%s`", id);
    } else {
        reply_json(req, 200, "OK", record_json(&r));
        jnl_record_clear(&r);
    }
}

static void handle_list_invocations(hearth_t *hd, struct evhttp_request *req, const reg_function_t *fn)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *q = evhttp_uri_get_query(uri);
    struct evkeyvalq params;
    TAILQ_INIT(&params);
    int status = -1, limit = 100;
    if (q != NULL && evhttp_parse_query_str(q, &params) == 0) {
        const char *st = evhttp_find_header(&params, "status");
        const char *lim = evhttp_find_header(&params, "limit");
        if (st != NULL) {
            for (int i = 0; i < JNL_N_STATUS; i++)
                if (strcmp(st, jnl_status_name((jnl_status_t)i)) == 0)
                    status = i;
            if (status < 0) {
                evhttp_clear_headers(&params);
                reply_error(req, 400, "bad_request", "status: one of queued, running, succeeded, dead");
                return;
            }
        }
        if (lim != NULL && (limit = atoi(lim)) < 1)
            limit = 1;
        if (limit > 1000)
            limit = 1000;
    }
    evhttp_clear_headers(&params);
    json_t *arr = json_array();
    hearth_error_t err = {0};
    if (jnl_list(hd->jnl, fn->spec->tenant, fn->spec->name, status, limit, list_one, arr, &err) < 0) {
        json_decref(arr);
        reply_err(req, &err);
        return;
    }
    reply_json(req, 200, "OK", json_pack("{s:o}", "invocations", arr));
}

/* A reply went out: the connection's next request gets read_timeout_ms
 * from now to arrive whole, like a first one (see sweep). */
static void on_request_complete(struct evhttp_request *req, void *arg)
{
    (void)req;
    api_conn_t *c = arg;
    c->accepted_ns = now_ns();
    c->served = false;
}

static void route(struct evhttp_request *req, void *arg)
{
    hearth_t *hd = arg;
    api_conn_t *c = conn_of(hd, req);
    if (c != NULL) {
        c->served = true;
        evhttp_request_set_on_complete_cb(req, on_request_complete, c);
    }
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    if (path == NULL) {
        reply_error(req, 400, "bad_request", "no path");
        return;
    }
    if (strcmp(path, "/healthz") == 0) {
        reply_json(req, 200, "OK", json_pack("{s:s}", "status", "ok"));
        return;
    }
    if (strcmp(path, "/readyz") == 0) {
        if (hd->draining)
            reply_error(req, 503, "draining", "hearthd is shutting down");
        else
            reply_json(req, 200, "OK", json_pack("{s:s}", "status", "ready"));
        return;
    }
    if (strcmp(path, "/metrics") == 0) {
        hd_metrics_refresh(hd);
        struct evbuffer *buf = evbuffer_new();
        hearth_error_t err;
        if (buf == NULL || metrics_render(hd->met.m, buf, &err) < 0) {
            reply_error(req, 500, "internal", "metrics");
        } else {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", METRICS_CONTENT_TYPE);
            hd_send_reply(req, 200, "OK", buf);
        }
        if (buf)
            evbuffer_free(buf);
        return;
    }

    char seg[8][128];
    /* The Lambda-compatible endpoint authenticates with SigV4 on the raw
     * path: its name segment is taken undecoded. */
    if (strncmp(path, "/2015-03-31/functions/", 22) == 0) {
        const char *name = path + 22;
        const char *slash = strchr(name, '/');
        if (slash != NULL && strcmp(slash, "/invocations") == 0 && slash - name < 512) {
            char raw[512];
            snprintf(raw, sizeof(raw), "%.*s", (int)(slash - name), name);
            lambda_invoke(hd, req, raw);
            return;
        }
    }
    /* Below .../invocations, an http function's own path: the route is
     * what comes before it. A lone trailing slash is no path. */
    char head[1024];
    const char *sub = NULL;
    ssize_t sub_off = invocations_sub(path);
    if (sub_off >= 0 && (size_t)sub_off < sizeof(head) && strcmp(path + sub_off, "/") != 0) {
        memcpy(head, path, (size_t)sub_off);
        head[sub_off] = '\0';
        sub = path + sub_off;
    }
    int n = split_path(sub != NULL ? head : path, seg, 8);
    if (n < 2 || strcmp(seg[0], "v1") != 0) {
        reply_error(req, 404, "not_found", "no route for %s", path);
        return;
    }
    const auth_tenant_t *caller = caller_of(hd, req, c);
    if (caller == NULL) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
        reply_error(req, 401, "unauthorized",
                    "missing or bad credentials: send `Authorization: Bearer TOKEN`, or call over the Unix socket "
                    "as a uid the config lists");
        return;
    }

    /* /v1/tenants/{t}/... is the same as /v1/... on behalf of t. */
    const char *tenant = NULL;
    int off = 1;
    if (strcmp(seg[1], "tenants") == 0) {
        if (n < 4) {
            reply_error(req, 404, "not_found", "no route for %s", path);
            return;
        }
        tenant = seg[2];
        off = 3;
        if (n == 4 && strcmp(seg[3], "usage") == 0) {
            if (m != EVHTTP_REQ_GET) {
                reply_error(req, 405, "method_not_allowed", "use GET");
            } else if (!auth_may_act(caller, tenant) || hd_tenant_id(hd, tenant) == 0) {
                reply_error(req, 404, "not_found", "no tenant `%s`", tenant);
            } else {
                reply_json(req, 200, "OK", usage_json(hd, tenant));
            }
            return;
        }
    }
    int rest = n - off;
    const char *what = seg[off];
    if (tenant == NULL && rest == 1 && strcmp(what, "usage") == 0 && m == EVHTTP_REQ_GET) {
        if (!caller->admin) {
            reply_json(req, 200, "OK", usage_json(hd, caller->name));
            return;
        }
        json_t *arr = json_array();
        for (size_t i = 0; i < hd->cfg->n_tenants; i++)
            json_array_append_new(arr, usage_json(hd, hd->cfg->tenants[i].name));
        reply_json(req, 200, "OK", json_pack("{s:o}", "tenants", arr));
        return;
    }
    if (tenant == NULL && strcmp(what, "invocations") == 0 && (rest == 2 || (rest == 3 && strcmp(seg[off + 2], "retry") == 0))) {
        handle_invocation(hd, req, caller, seg[off + 1], rest == 3);
        return;
    }
    if (tenant == NULL && rest == 1 && strcmp(what, "status") == 0 && m == EVHTTP_REQ_GET) {
        handle_status(hd, req, caller);
        return;
    }
    if (strcmp(what, "functions") != 0 || rest > 3) {
        reply_error(req, 404, "not_found", "no route for %s", path);
        return;
    }
    if (rest == 1) {
        if (m == EVHTTP_REQ_GET)
            handle_list(hd, req, caller, tenant);
        else
            reply_error(req, 405, "method_not_allowed", "use GET");
        return;
    }
    const char *name = seg[off + 1];
    const char *owner = tenant ? tenant : caller->name;
    if (rest == 2 && m == EVHTTP_REQ_PUT) {
        handle_put(hd, req, caller, tenant, name);
        return;
    }
    const reg_function_t *fn = reg_get(hd->reg, caller, owner, name);
    if (fn == NULL) {
        reply_error(req, 404, "not_found", "no function `%s`", name);
        return;
    }
    if (rest == 2) {
        hearth_error_t err = {0};
        if (m == EVHTTP_REQ_GET) {
            reply_json(req, 200, "OK", function_json(fn));
        } else if (m == EVHTTP_REQ_DELETE) {
            if (reg_delete(hd->reg, caller, owner, name, &err) < 0)
                reply_err(req, &err);
            else
                hd_send_reply(req, 204, "No Content", NULL);
        } else {
            reply_error(req, 405, "method_not_allowed", "use GET, PUT or DELETE");
        }
        return;
    }
    if (strcmp(seg[off + 2], "invocations") != 0) {
        reply_error(req, 404, "not_found", "no route for %s", path);
        return;
    }
    if (fn->spec->protocol == CFG_PROTO_HTTP) {
        /* Every method and path below goes to the function's server. */
        handle_invoke(hd, req, c, fn, sub);
        return;
    }
    if (sub != NULL) {
        reply_error(req, 404, "not_found", "no route for %s (only http functions have paths below invocations)",
                    path);
        return;
    }
    if (m == EVHTTP_REQ_GET) {
        handle_list_invocations(hd, req, fn);
        return;
    }
    if (m != EVHTTP_REQ_POST) {
        reply_error(req, 405, "method_not_allowed", "use POST, or GET for the async ones");
        return;
    }
    handle_invoke(hd, req, c, fn, NULL);
}

/* --- connections ------------------------------------------------------------------
 * libevent 2.1's evhttp has no connection cap and tells nobody when a
 * connection without a request goes away. So evhttp gets its bufferevents
 * from us (make_bev), we keep a reference on each, and a sweep notices
 * the ones evhttp has let go (their callbacks cleared by bufferevent_free):
 * only then does our reference free them, close the socket and uncount
 * the connection. The same sweep ends connections that have not sent a
 * complete request within read_timeout_ms of being accepted or of their
 * last answer (slow clients, slowloris on a kept-alive connection), at
 * once those accepted over max_connections, and those whose client left
 * while its invocation ran (which evhttp would notice only at the end). */

#define SWEEP_MS 100

static void on_evcon_close(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    api_conn_t *c = arg;
    if (c->pending != NULL) {
        hd_client_gone(c->hd, c->pending);
        c->pending = NULL;
    }
}

/* The client of an unanswered request has closed its end (or reset it).
 * A half-close while awaiting the answer counts as leaving, as nginx counts
 * it; bytes of a pipelined next request do not. */
static bool client_left(const api_conn_t *c)
{
    int sock = (int)bufferevent_getfd(c->bev);
    if (sock < 0)
        return false;
    char b;
    ssize_t n = recv(sock, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hearth_t *hd = arg;
    uint64_t now = now_ns(), limit = (uint64_t)hd->cfg->read_timeout_ms * 1000000ULL;
    /* Deleting moves the map: the let-go ones are collected, then freed,
     * in batches, so that the sweep stays linear under churn. */
    api_conn_t *gone[256];
    size_t n_gone;
    do {
        n_gone = 0;
        uint32_t pos = 0;
        void *v;
        while (n_gone < sizeof(gone) / sizeof(gone[0]) && idmap_next(&hd->conns, &pos, &v)) {
            api_conn_t *c = v;
            bufferevent_data_cb rd, wr;
            bufferevent_event_cb ev;
            void *cbarg;
            bufferevent_getcb(c->bev, &rd, &wr, &ev, &cbarg);
            if (rd == NULL && wr == NULL && ev == NULL)
                gone[n_gone++] = c;
        }
        for (size_t i = 0; i < n_gone; i++) {
            idmap_del(&hd->conns, (uint64_t)(uintptr_t)gone[i]->bev);
            bufferevent_decref(gone[i]->bev);
            hd->connections--;
            free(gone[i]);
        }
    } while (n_gone == sizeof(gone) / sizeof(gone[0]));

    uint32_t pos = 0;
    void *v;
    while (idmap_next(&hd->conns, &pos, &v)) {
        api_conn_t *c = v;
        if (!c->served && now - c->accepted_ns > limit) {
            int sock = (int)bufferevent_getfd(c->bev);
            if (sock >= 0)
                shutdown(sock, SHUT_RDWR); /* evhttp sees the end and lets go */
            c->served = true;              /* once is enough */
        } else if (c->pending != NULL && client_left(c)) {
            /* evhttp reads nothing while a request awaits its answer, so it
             * would notice only when it writes it: end the connection now;
             * its close callback cancels the invocation. */
            evhttp_connection_free(evhttp_request_get_connection(c->pending));
        }
    }
}

static struct bufferevent *make_bev(struct event_base *base, void *arg)
{
    hearth_t *hd = arg;
    api_conn_t *c = calloc(1, sizeof(*c));
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL || c == NULL || idmap_put(&hd->conns, (uint64_t)(uintptr_t)bev, c) < 0) {
        free(c);
        return bev; /* served, not counted */
    }
    bufferevent_incref(bev);
    c->hd = hd;
    c->bev = bev;
    c->accepted_ns = now_ns();
    if (hd->connections >= hd->cfg->max_connections || hd->draining) {
        c->accepted_ns = 0; /* the next sweep ends it */
        hearth_log(HEARTH_LOG_WARN, "max_connections (%u) reached: closing a new connection",
                   hd->cfg->max_connections);
    }
    hd->connections++;
    return bev;
}

/* Every request: hook its connection's close (for invocations in flight). */
static void gencb(struct evhttp_request *req, void *arg)
{
    hearth_t *hd = arg;
    api_conn_t *c = conn_of(hd, req);
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (c != NULL && evcon != NULL)
        evhttp_connection_set_closecb(evcon, on_evcon_close, c);
    route(req, arg);
}

static struct evconnlistener *listen_unix(hearth_t *hd, const char *path, hearth_error_t *err)
{
    /* The socket's directory carries the access control: created 0750 if
     * missing, never a chmod after bind (racy). */
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    if (strlen(path) >= sizeof(dir)) {
        hearth_error_set(err, ENAMETOOLONG, "listen_unix `%s`: path too long", path);
        return NULL;
    }
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
            hearth_error_sys(err, "mkdir %s", dir);
            return NULL;
        }
    }
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    /* A stale socket from a killed predecessor: remove it, but only if
     * nobody answers on it. */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0) {
        if (connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
            close(probe);
            hearth_error_set(err, EADDRINUSE, "listen_unix `%s`: another hearthd answers there", path);
            return NULL;
        }
        close(probe);
        unlink(path);
    }
    struct evconnlistener *l = evconnlistener_new_bind(
        hd->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 512, (struct sockaddr *)&sun,
        sizeof(sun));
    if (l == NULL)
        hearth_error_sys(err, "listen on %s", path);
    return l;
}

static struct evconnlistener *listen_tcp(hearth_t *hd, const char *host, uint16_t port, hearth_error_t *err)
{
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags =
                                                                                           EVUTIL_AI_NUMERICHOST};
    struct evutil_addrinfo *ai = NULL;
    char ps[16];
    snprintf(ps, sizeof(ps), "%u", port);
    if (evutil_getaddrinfo(host, ps, &hints, &ai) != 0 || ai == NULL) {
        hearth_error_set(err, EINVAL, "listen_http: `%s` is not a numeric address", host);
        return NULL;
    }
    struct evconnlistener *l = evconnlistener_new_bind(
        hd->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE, 512,
        ai->ai_addr, (int)ai->ai_addrlen);
    if (l == NULL)
        hearth_error_sys(err, "listen on %s:%u", host, port);
    evutil_freeaddrinfo(ai);
    return l;
}

int api_start(hearth_t *hd, hearth_error_t *err)
{
    if (idmap_init(&hd->conns, 256) < 0)
        return hearth_error_set(err, ENOMEM, "connections");
    hd->http = evhttp_new(hd->base);
    if (hd->http == NULL)
        return hearth_error_set(err, ENOMEM, "evhttp");
    evhttp_set_max_body_size(hd->http, (ev_ssize_t)hd->cfg->max_body_bytes);
    evhttp_set_max_headers_size(hd->http, (ev_ssize_t)hd->cfg->max_header_bytes);
    struct timeval tv = {hd->cfg->read_timeout_ms / 1000, (hd->cfg->read_timeout_ms % 1000) * 1000};
    evhttp_set_timeout_tv(hd->http, &tv);
    /* PATCH and OPTIONS: for http functions. */
    evhttp_set_allowed_methods(hd->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                             EVHTTP_REQ_HEAD | EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS);
    evhttp_set_bevcb(hd->http, make_bev, hd);
    evhttp_set_gencb(hd->http, gencb, hd);
    hd->ev_sweep = event_new(hd->base, -1, EV_PERSIST, sweep, hd);
    struct timeval every = {0, SWEEP_MS * 1000};
    if (hd->ev_sweep == NULL || event_add(hd->ev_sweep, &every) < 0)
        return hearth_error_set(err, ENOMEM, "connection sweep");
    const cfg_daemon_t *cfg = hd->cfg;
    struct evconnlistener *l;
    if (cfg->listen_unix[0] != '\0') {
        if ((l = listen_unix(hd, cfg->listen_unix, err)) == NULL)
            return -1;
        if ((hd->unix_sock = evhttp_bind_listener(hd->http, l)) == NULL)
            return hearth_error_set(err, ENOMEM, "bind evhttp to %s", cfg->listen_unix);
    }
    if (cfg->http_host != NULL) {
        if ((l = listen_tcp(hd, cfg->http_host, cfg->http_port, err)) == NULL)
            return -1;
        if ((hd->tcp_sock = evhttp_bind_listener(hd->http, l)) == NULL)
            return hearth_error_set(err, ENOMEM, "bind evhttp to %s", cfg->listen_http);
    }
    return 0;
}

void api_stop_listening(hearth_t *hd)
{
    /* evhttp frees the listeners; open connections stay and are answered. */
    if (hd->unix_sock) {
        evhttp_del_accept_socket(hd->http, hd->unix_sock);
        hd->unix_sock = NULL;
        unlink(hd->cfg->listen_unix);
    }
    if (hd->tcp_sock) {
        evhttp_del_accept_socket(hd->http, hd->tcp_sock);
        hd->tcp_sock = NULL;
    }
}

void api_free(hearth_t *hd)
{
    api_stop_listening(hd);
    if (hd->http) {
        evhttp_free(hd->http);
        hd->http = NULL;
    }
    /* evhttp has let go of every connection: drop our references. */
    uint32_t pos = 0;
    void *v;
    while (idmap_next(&hd->conns, &pos, &v)) {
        api_conn_t *c = v;
        bufferevent_decref(c->bev);
        free(c);
    }
    idmap_free(&hd->conns);
    if (hd->ev_sweep) {
        event_free(hd->ev_sweep);
        hd->ev_sweep = NULL;
    }
}
