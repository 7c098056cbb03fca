/* Asynchronous invocations: accepted into the journal (one fsync per
 * loop iteration for every accept of it) before 202 is sent, claimed when
 * due, run through the same scheduler as synchronous calls but behind
 * them (SCHED_ASYNC), their results recorded in the journal with the
 * state change in one transaction, failures retried with backoff, then
 * dead-lettered; callbacks POSTed; old results pruned. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "orchestrator/daemon.h"

#define ASYNC_TICK_MS 100
#define PRUNE_EVERY_NS (30ULL * 1000000000ULL)
#define CALLBACK_ATTEMPTS 5
#define CALLBACKS_PER_TICK 16

static const auth_tenant_t system_caller = {.name = (char *)"hearthd", .admin = true};

/* --- accept ------------------------------------------------------------------ */

static void on_durable(jnl_ticket_t *t, void *arg)
{
    struct evhttp_request *req = arg;
    if (jnl_ticket_state(t) == JNL_TICKET_DURABLE) {
        char loc[64];
        snprintf(loc, sizeof(loc), "/v1/invocations/%s", jnl_ticket_id(t));
        struct evkeyvalq *h = evhttp_request_get_output_headers(req);
        evhttp_add_header(h, "Location", loc);
        evhttp_add_header(h, "X-Hearth-Invocation-Id", jnl_ticket_id(t));
        evhttp_add_header(h, "Content-Type", "application/json");
        json_t *body = json_pack("{s:s,s:s,s:b}", "id", jnl_ticket_id(t), "status", "queued", "duplicate",
                                 jnl_ticket_duplicate(t));
        char *text = json_dumps(body, JSON_COMPACT);
        struct evbuffer *buf = evbuffer_new();
        if (buf != NULL && text != NULL)
            evbuffer_add_printf(buf, "%s\n", text);
        hd_send_reply(req, 202, "Accepted", buf);
        if (buf)
            evbuffer_free(buf);
        free(text);
        json_decref(body);
    } else {
        const hearth_error_t *e = jnl_ticket_error(t);
        hearth_log(HEARTH_LOG_ERROR, "async accept not stored: %s", e ? e->msg : "?");
        json_t *body = json_pack("{s:s,s:s}", "error", "storage_unavailable", "message",
                                 "the invocation could not be stored durably (state disk full or unwritable); "
                                 "nothing was accepted");
        char *text = json_dumps(body, JSON_COMPACT);
        struct evbuffer *buf = evbuffer_new();
        if (buf != NULL && text != NULL)
            evbuffer_add_printf(buf, "%s\n", text);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "5");
        hd_send_reply(req, 503, "Service Unavailable", buf);
        if (buf)
            evbuffer_free(buf);
        free(text);
        json_decref(body);
    }
    jnl_ticket_free(t);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hearth_t *hd = arg;
    hearth_error_t err = {0};
    /* Every accept staged during this loop iteration shares this fsync. */
    if (jnl_flush(hd->jnl, &err) < 0)
        hearth_log(HEARTH_LOG_ERROR, "journal group commit: %s", err.msg);
    event_active(hd->ev_async, 0, 0);
}

int async_accept(hearth_t *hd, struct evhttp_request *req, const reg_function_t *fn, struct evbuffer *payload,
                 const char *idempotency_key, const char *callback_url, hearth_error_t *err)
{
    char id[33];
    hd_random_id(id);
    size_t len = evbuffer_get_length(payload);
    jnl_new_t in = {
        .id = id,
        .tenant = fn->spec->tenant,
        .function = fn->spec->name,
        .payload = len ? evbuffer_pullup(payload, -1) : NULL,
        .payload_len = len,
        .idempotency_key = idempotency_key,
        .callback_url = callback_url,
        .max_attempts = (int)fn->spec->max_attempts,
        .created = wall_ms(),
        .on_done = on_durable,
        .arg = req,
    };
    jnl_ticket_t *t;
    if (jnl_accept(hd->jnl, &in, &t, err) < 0)
        return -1;
    event_active(hd->ev_flush, 0, 0);
    return 0;
}

/* --- run ------------------------------------------------------------------------ */

static void record_failure(hearth_t *hd, const char *id, const char *why)
{
    hearth_error_t err = {0};
    jnl_status_t st;
    if (jnl_finish(hd->jnl, id, JNL_OUTCOME_FAILED, why, strlen(why), wall_ms(), NULL, &st, &err) < 0)
        hearth_log(HEARTH_LOG_ERROR, "async %s: %s", id, err.msg);
}

static void on_claim(const jnl_claim_t *c, void *arg)
{
    hearth_t *hd = arg;
    hearth_error_t err = {0};
    const reg_function_t *fn = reg_get(hd->reg, &system_caller, c->tenant, c->function);
    if (fn == NULL) {
        record_failure(hd, c->id, "the function no longer exists");
        return;
    }
    struct evbuffer *payload = evbuffer_new();
    if (payload == NULL || (c->payload_len && evbuffer_add(payload, c->payload, c->payload_len) < 0)) {
        if (payload)
            evbuffer_free(payload);
        record_failure(hd, c->id, "out of memory");
        return;
    }
    hd->async_in_flight++;
    if (hd_submit(hd, NULL, fn, payload, c->id, SCHED_ASYNC, 0, &err) < 0) {
        hd->async_in_flight--;
        evbuffer_free(payload);
        record_failure(hd, c->id, err.msg);
    }
}

void async_started(hearth_t *hd, hd_inv_t *inv)
{
    hearth_error_t err = {0};
    if (jnl_started(hd->jnl, inv->id, wall_ms(), &err) < 0)
        hearth_log(HEARTH_LOG_ERROR, "async %s: start not recorded: %s", inv->id, err.msg);
}

void async_finished(hearth_t *hd, hd_inv_t *inv, const char *rejected)
{
    hearth_error_t err = {0};
    jnl_status_t st = JNL_QUEUED;
    int rc;
    if (rejected == NULL && inv->outcome == HD_OUT_OK) {
        size_t len = evbuffer_get_length(inv->output);
        rc = jnl_finish(hd->jnl, inv->id, JNL_OUTCOME_SUCCEEDED, len ? evbuffer_pullup(inv->output, -1) : NULL, len,
                        wall_ms(), NULL, &st, &err);
    } else {
        char why[512];
        if (rejected != NULL)
            snprintf(why, sizeof(why), "turned away: %s", rejected);
        else
            snprintf(why, sizeof(why), "%s%s%.*s", inv->message[0] ? inv->message : "failed",
                     inv->log_len ? "; stderr: " : "", (int)(inv->log_len > 256 ? 256 : inv->log_len),
                     inv->log_len > 256 ? inv->log_tail + inv->log_len - 256 : inv->log_tail);
        rc = jnl_finish(hd->jnl, inv->id, JNL_OUTCOME_FAILED, why, strlen(why), wall_ms(), NULL, &st, &err);
    }
    if (rc < 0)
        hearth_log(HEARTH_LOG_ERROR, "async %s not recorded: %s", inv->id, err.msg);
    if (hd->async_in_flight > 0)
        hd->async_in_flight--;
    event_active(hd->ev_async, 0, 0);
}

/* --- callbacks ------------------------------------------------------------------ */

typedef struct cb_call {
    hearth_t *hd;
    char id[33];
    struct evhttp_connection *evcon;
} cb_call_t;

static void free_evcon(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    evhttp_connection_free(arg);
}

static void on_callback_reply(struct evhttp_request *req, void *arg)
{
    cb_call_t *cc = arg;
    hearth_error_t err = {0};
    int code = req ? evhttp_request_get_response_code(req) : 0;
    bool ok = code >= 200 && code < 300;
    if (jnl_callback_done(cc->hd->jnl, cc->id, ok, wall_ms(), NULL, CALLBACK_ATTEMPTS, &err) < 0)
        hearth_log(HEARTH_LOG_WARN, "callback of %s: %s", cc->id, err.msg);
    if (!ok)
        hearth_log(HEARTH_LOG_INFO, "callback of %s failed (HTTP %d); retried later", cc->id, code);
    /* Not from inside the connection's own callback. */
    event_base_once(cc->hd->base, -1, EV_TIMEOUT, free_evcon, cc->evcon, NULL);
    free(cc);
}

static void on_callback_due(const jnl_callback_t *c, void *arg)
{
    hearth_t *hd = arg;
    hearth_error_t err = {0};
    struct evhttp_uri *uri = evhttp_uri_parse(c->url);
    const char *scheme = uri ? evhttp_uri_get_scheme(uri) : NULL;
    const char *host = uri ? evhttp_uri_get_host(uri) : NULL;
    if (uri == NULL || scheme == NULL || strcmp(scheme, "http") != 0 || host == NULL) {
        if (uri)
            evhttp_uri_free(uri);
        jnl_callback_done(hd->jnl, c->id, false, wall_ms(), NULL, 1, &err); /* never deliverable */
        return;
    }
    int port = evhttp_uri_get_port(uri) > 0 ? evhttp_uri_get_port(uri) : 80;
    const char *path = evhttp_uri_get_path(uri);
    char target[2048];
    const char *q = evhttp_uri_get_query(uri);
    snprintf(target, sizeof(target), "%s%s%s", path && *path ? path : "/", q ? "?" : "", q ? q : "");
    cb_call_t *cc = calloc(1, sizeof(*cc));
    struct evhttp_connection *evcon = cc ? evhttp_connection_base_new(hd->base, NULL, host, (ev_uint16_t)port) : NULL;
    struct evhttp_request *req = evcon ? evhttp_request_new(on_callback_reply, cc) : NULL;
    if (req == NULL) {
        if (evcon)
            evhttp_connection_free(evcon);
        free(cc);
        evhttp_uri_free(uri);
        return; /* the lease runs out and it is handed out again */
    }
    snprintf(cc->id, sizeof(cc->id), "%s", c->id);
    cc->hd = hd;
    cc->evcon = evcon;
    evhttp_connection_set_timeout(evcon, 10);
    json_t *body = json_pack("{s:s,s:s,s:s,s:s,s:i}", "id", c->id, "tenant", c->tenant, "function", c->function,
                             "status", jnl_status_name(c->status), "attempts", c->attempts);
    if (c->status == JNL_SUCCEEDED)
        json_object_set_new(body, "result", json_stringn(c->result ? c->result : "", c->result_len));
    else if (c->error != NULL)
        json_object_set_new(body, "error", json_string(c->error));
    if (json_object_get(body, "result") == NULL && c->status == JNL_SUCCEEDED)
        json_object_set_new(body, "result_note", json_string("the result is not UTF-8; fetch it from the API"));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", host);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "X-Hearth-Invocation-Id", c->id);
    if (text)
        evbuffer_add(evhttp_request_get_output_buffer(req), text, strlen(text));
    free(text);
    evhttp_uri_free(uri);
    if (evhttp_make_request(evcon, req, EVHTTP_REQ_POST, target) < 0) {
        /* evhttp freed the request; the lease runs out, it is tried again. */
        evhttp_connection_free(evcon);
        free(cc);
    }
}

/* --- the tick --------------------------------------------------------------------- */

static void on_async(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hearth_t *hd = arg;
    hearth_error_t err = {0};
    int64_t now = wall_ms();
    if (!hd->draining) {
        /* Claim as many as the host could start: more would only wait in
         * the scheduler's queues, holding their claim. */
        uint32_t room = hd->cfg->max_sandboxes > hd->async_in_flight ? hd->cfg->max_sandboxes - hd->async_in_flight : 0;
        if (room > 0 && jnl_claim_due(hd->jnl, now, (int)room, on_claim, hd, &err) < 0)
            hearth_log(HEARTH_LOG_ERROR, "async claim: %s", err.msg);
        if (jnl_callbacks_due(hd->jnl, now, CALLBACKS_PER_TICK, on_callback_due, hd, &err) < 0)
            hearth_log(HEARTH_LOG_ERROR, "async callbacks: %s", err.msg);
    }
    uint64_t mono = now_ns();
    if (mono - hd->last_prune_ns > PRUNE_EVERY_NS) {
        hd->last_prune_ns = mono;
        for (int i = 0; i < 8; i++) { /* bounded: the rest waits for the next round */
            int n = jnl_prune(hd->jnl, now, hd->cfg->result_ttl_s, &err);
            if (n < JNL_PRUNE_BATCH)
                break;
        }
    }
}

void async_metrics(hearth_t *hd)
{
    jnl_counters_t c;
    hearth_error_t err;
    if (jnl_counters(hd->jnl, wall_ms(), &c, &err) < 0)
        return;
    metrics_set(metrics_series(hd->met.async_depth, (const char *[]){"queued"}), (double)c.queued);
    metrics_set(metrics_series(hd->met.async_depth, (const char *[]){"running"}), (double)c.running);
    metrics_set(metrics_series(hd->met.async_age, (const char *[]){NULL}), (double)c.oldest_due_age_ms / 1000.0);
    metrics_add(metrics_series(hd->met.async_retries, (const char *[]){NULL}),
                (double)(c.retries_total - hd->async_seen_retries));
    metrics_add(metrics_series(hd->met.async_dead, (const char *[]){NULL}), (double)(c.dead_total - hd->async_seen_dead));
    metrics_add(metrics_series(hd->met.async_accepted, (const char *[]){NULL}),
                (double)(c.accepted_total - hd->async_seen_accepted));
    hd->async_seen_retries = c.retries_total;
    hd->async_seen_dead = c.dead_total;
    hd->async_seen_accepted = c.accepted_total;
}

int async_start(hearth_t *hd, hearth_error_t *err)
{
    hd->ev_flush = event_new(hd->base, -1, 0, on_flush, hd);
    hd->ev_async = event_new(hd->base, -1, EV_PERSIST, on_async, hd);
    struct timeval tv = {0, ASYNC_TICK_MS * 1000};
    if (hd->ev_flush == NULL || hd->ev_async == NULL || event_add(hd->ev_async, &tv) < 0)
        return hearth_error_set(err, ENOMEM, "async events");
    hd->last_prune_ns = now_ns();
    event_active(hd->ev_async, 0, 0);
    return 0;
}

void async_stop(hearth_t *hd)
{
    if (hd->ev_flush) {
        event_free(hd->ev_flush);
        hd->ev_flush = NULL;
    }
    if (hd->ev_async) {
        event_free(hd->ev_async);
        hd->ev_async = NULL;
    }
}
