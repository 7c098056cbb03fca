/* The Lambda-compatible invoke endpoint, as AWS documents it:
 *   POST /2015-03-31/functions/{FunctionName}/invocations
 * authenticated with AWS Signature Version 4 against the tenants'
 * aws_keys, so that the AWS CLI and SDKs pointed at --endpoint-url work.
 * X-Amz-Invocation-Type: RequestResponse (default), Event (async: 202),
 * DryRun (204). X-Amz-Log-Type: Tail returns the last 4 KB of the log in
 * X-Amz-Log-Result. A function error answers 200 with
 * X-Amz-Function-Error, as Lambda does. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "orchestrator/daemon.h"
#include "orchestrator/sigv4.h"

#define MAX_HEADERS 256

static void reply(struct evhttp_request *req, int code, const char *type, json_t *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char rid[33];
    hd_random_id(rid);
    evhttp_add_header(h, "x-amzn-RequestId", rid);
    evhttp_add_header(h, "Content-Type", "application/json");
    if (type != NULL)
        evhttp_add_header(h, "x-amzn-ErrorType", type);
    struct evbuffer *buf = evbuffer_new();
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (buf != NULL && text != NULL)
        evbuffer_add(buf, text, strlen(text));
    hd_send_reply(req, code, code == 200 ? "OK" : code == 202 ? "Accepted" : code == 204 ? "No Content" : "Error",
                  buf);
    free(text);
    json_decref(body);
    if (buf)
        evbuffer_free(buf);
}

static void reply_error(struct evhttp_request *req, int code, const char *type, const char *msg)
{
    reply(req, code, type, json_pack("{s:s,s:s}", "Type", code >= 500 ? "Service" : "User", "message", msg));
}

void lambda_respond_rejected(hd_inv_t *inv, int status, const char *type, const char *message)
{
    reply_error(inv->req, status, type, message);
}

void lambda_respond(hd_inv_t *inv)
{
    struct evhttp_request *req = inv->req;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "X-Amz-Executed-Version", "$LATEST");
    evhttp_add_header(h, "X-Hearth-Invocation-Id", inv->id);
    if (inv->want_log) {
        unsigned char b64[4 * ((sizeof(inv->log_tail) + 2) / 3) + 1];
        EVP_EncodeBlock(b64, (const unsigned char *)inv->log_tail, (int)inv->log_len);
        evhttp_add_header(h, "X-Amz-Log-Result", (const char *)b64);
    }
    if (inv->outcome == HD_OUT_OK) {
        evhttp_add_header(h, "Content-Type", "application/json");
        hd_send_reply(req, 200, "OK", inv->output);
        return;
    }
    if (inv->outcome == HD_OUT_CANCELLED) {
        hd_send_reply(req, 499, "Client Closed Request", NULL);
        return;
    }
    /* Lambda answers a function's failure with 200 and says so in a header. */
    const char *type = inv->error_type[0]              ? inv->error_type
                       : inv->outcome == HD_OUT_TIMEOUT  ? "Sandbox.Timedout"
                       : inv->outcome == HD_OUT_OOM    ? "Runtime.OutOfMemory"
                       : inv->outcome == HD_OUT_START  ? "Runtime.InvalidEntrypoint"
                       : inv->outcome == HD_OUT_FAILED ? "Runtime.ExitError"
                                                       : "Runtime.Unknown";
    evhttp_add_header(h, "X-Amz-Function-Error", "Unhandled");
    evhttp_add_header(h, "Content-Type", "application/json");
    json_t *body = json_pack("{s:s,s:s}", "errorMessage", inv->message[0] ? inv->message : "the function failed",
                             "errorType", type);
    char *text = json_dumps(body, JSON_COMPACT);
    struct evbuffer *buf = evbuffer_new();
    if (buf != NULL && text != NULL)
        evbuffer_add(buf, text, strlen(text));
    hd_send_reply(req, 200, "OK", buf);
    free(text);
    json_decref(body);
    if (buf)
        evbuffer_free(buf);
}

static const char *lookup_secret(void *ctx, const char *akid, const void **owner)
{
    hearth_t *hd = ctx;
    const cfg_aws_key_t *key = NULL;
    const auth_tenant_t *t = auth_by_access_key(hd->auth, akid, &key);
    if (t == NULL || key == NULL)
        return NULL;
    *owner = t;
    return key->secret_access_key;
}

/* "my-fn", "my-fn:$LATEST" or "arn:aws:lambda:REGION:ACCOUNT:function:my-fn[:QUALIFIER]" → "my-fn". */
static int function_name(const char *raw, char *out, size_t len)
{
    char *dec = evhttp_uridecode(raw, 0, NULL);
    if (dec == NULL)
        return -1;
    const char *p = dec;
    const char *fn = strstr(dec, ":function:");
    if (fn != NULL)
        p = fn + strlen(":function:");
    const char *colon = strchr(p, ':');
    size_t n = colon ? (size_t)(colon - p) : strlen(p);
    int rc = 0;
    if (colon != NULL && strcmp(colon + 1, "$LATEST") != 0)
        rc = -2; /* versions and aliases: not supported */
    else if (n == 0 || n >= len)
        rc = -1;
    else
        snprintf(out, len, "%.*s", (int)n, p);
    free(dec);
    return rc;
}

void lambda_invoke(hearth_t *hd, struct evhttp_request *req, const char *raw_name)
{
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        reply_error(req, 405, "ValidationException", "use POST");
        return;
    }
    /* SigV4 over the request exactly as received. */
    const char *uri = evhttp_request_get_uri(req);
    char path[8192];
    snprintf(path, sizeof(path), "%s", uri ? uri : "/");
    char *q = strchr(path, '?');
    if (q != NULL)
        *q++ = '\0';
    sigv4_header_t hdrs[MAX_HEADERS];
    size_t nh = 0;
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, evhttp_request_get_input_headers(req), next)
    {
        if (nh == MAX_HEADERS) {
            reply_error(req, 400, "ValidationException", "too many headers");
            return;
        }
        hdrs[nh++] = (sigv4_header_t){kv->key, kv->value};
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t blen = evbuffer_get_length(in);
    sigv4_request_t sr = {
        .method = "POST",
        .path = path,
        .query = q,
        .headers = hdrs,
        .n_headers = nh,
        .body = blen ? (const void *)evbuffer_pullup(in, -1) : (const void *)"",
        .body_len = blen,
        .now = (int64_t)time(NULL),
        .lookup = lookup_secret,
        .lookup_ctx = hd,
    };
    sigv4_result_t res;
    hearth_error_t err = {0};
    if (sigv4_verify(&sr, &res, &err) < 0) {
        reply_error(req, sigv4_status_http(res.status), sigv4_status_type(res.status), err.msg);
        return;
    }
    const auth_tenant_t *caller = res.owner;

    char name[CFG_NAME_MAX + 1];
    int rc = function_name(raw_name, name, sizeof(name));
    if (rc == -2) {
        reply_error(req, 400, "InvalidParameterValueException", "only the $LATEST version exists here");
        return;
    }
    const reg_function_t *fn = rc == 0 ? reg_get(hd->reg, caller, caller->name, name) : NULL;
    if (fn == NULL) {
        char msg[256];
        snprintf(msg, sizeof(msg), "Function not found: %s", rc == 0 ? name : "(malformed name)");
        reply_error(req, 404, "ResourceNotFoundException", msg);
        return;
    }
    struct evkeyvalq *ih = evhttp_request_get_input_headers(req);
    const char *type = evhttp_find_header(ih, "X-Amz-Invocation-Type");
    const char *log = evhttp_find_header(ih, "X-Amz-Log-Type");
    if (type == NULL)
        type = "RequestResponse";
    if (strcmp(type, "DryRun") == 0) {
        reply(req, 204, NULL, NULL);
        return;
    }
    if (hd->draining) {
        reply_error(req, 503, "ServiceException", "hearthd is shutting down");
        return;
    }
    struct evbuffer *payload = evbuffer_new();
    if (payload == NULL) {
        reply_error(req, 500, "ServiceException", "out of memory");
        return;
    }
    evbuffer_add_buffer(payload, in);
    if (strcmp(type, "Event") == 0) {
        /* Stored durably first; the 202 follows the group commit. */
        rc = async_accept(hd, req, fn, payload, NULL, NULL, &err);
        evbuffer_free(payload);
        if (rc < 0)
            reply_error(req, err.code == EINVAL || err.code == EMSGSIZE ? 400 : 500,
                        err.code == EMSGSIZE ? "RequestTooLargeException" : "ServiceException", err.msg);
        return;
    }
    if (strcmp(type, "RequestResponse") != 0) {
        evbuffer_free(payload);
        reply_error(req, 400, "InvalidParameterValueException",
                    "X-Amz-Invocation-Type: RequestResponse, Event or DryRun");
        return;
    }
    unsigned flags = HD_INV_LAMBDA | (log != NULL && strcmp(log, "Tail") == 0 ? HD_INV_LOG_TAIL : 0);
    if (hd_submit(hd, req, fn, payload, NULL, SCHED_SYNC, flags, &err) < 0) {
        evbuffer_free(payload);
        reply_error(req, 500, "ServiceException", err.msg);
    }
}
