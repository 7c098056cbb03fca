/* SigV4 verification against signatures made by botocore.
 *
 * The vectors below were produced offline by botocore 1.29.27 (Debian's
 * python3-botocore) with SigV4Auth(service "lambda") over AWSRequest, and by a
 * real botocore Lambda client whose request was captured in a "before-send"
 * hook; the clock was pinned to 2024-05-17T12:34:56Z by patching
 * botocore.auth.datetime. Host is the value urllib3 adds when sending.
 * Paths and queries are as they appear on the wire. The generator:
 *
 *   FIXED = datetime.datetime(2024, 5, 17, 12, 34, 56)
 *   creds = Credentials(AKID, SECRET)
 *   with mock.patch("botocore.auth.datetime") as dt:
 *       dt.datetime.utcnow.return_value = FIXED
 *       req = AWSRequest(method=..., url=..., data=body, headers=...)
 *       SigV4Auth(creds, "lambda", region).add_auth(req)
 *       p = req.prepare()   # then p.method, p.url, p.headers, p.body
 *   # and: session.create_client("lambda", endpoint_url="http://localhost:8080", ...)
 *   #      .invoke(FunctionName=..., Qualifier=..., Payload=...) with a
 *   #      "before-send" hook that records the request and raises.
 */
#include <string.h>
#include <strings.h>

#include "orchestrator/sigv4.h"
#include "tests/harness.h"

#define AKID "AKIAHEARTHTEST000001"
#define SECRET "hearthTestSecretKey/0123456789+abcdefghij"
#define T0 1715949296 /* 2024-05-17T12:34:56Z, when the vectors were signed */
#define MAX_H 12

typedef struct vector {
    const char *name, *method, *path, *query, *body;
    const char *headers[MAX_H][2];
} vector_t;

static const vector_t vectors[] = {
    {"post_body", "POST", "/2015-03-31/functions/my-fn/invocations", "", "{\"hello\":\"world\"}",
     {{"Content-Type", "application/json"},
      {"X-Amz-Date", "20240517T123456Z"},
      {"Authorization", "AWS4-HMAC-SHA256 Credential=AKIAHEARTHTEST000001/20240517/us-east-1/lambda/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=fa62c91cce7d114684425d9507c0be75bbc9135253efa953a03a63beadd3cdd4"},
      {"Content-Length", "17"},
      {"Host", "localhost:8080"}}},
    {"query", "POST", "/2015-03-31/functions/my-fn/invocations", "Qualifier=v1&a=b%20c&A=z&a=a&e=&flag&t=~%2A&p=%2B", "{\"hello\":\"world\"}",
     {{"X-Amz-Date", "20240517T123456Z"},
      {"Authorization", "AWS4-HMAC-SHA256 Credential=AKIAHEARTHTEST000001/20240517/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=6b8b748496d47a6ff4a5fd80fbbc75c4c6e7278dbb9f9cfcb6823d22f44f0706"},
      {"Content-Length", "17"},
      {"Host", "localhost:8080"}}},
    {"spaces", "POST", "/2015-03-31/functions/my-fn/invocations", "", "{\"hello\":\"world\"}",
     {{"X-Amz-Client-Context", "  a   b  c  "},
      {"X-Custom", "x\t y"},
      {"X-Amz-Date", "20240517T123456Z"},
      {"Authorization", "AWS4-HMAC-SHA256 Credential=AKIAHEARTHTEST000001/20240517/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-client-context;x-amz-date;x-custom, Signature=b677ae5ecf4d40093fa018a09d957f3005cfbfe448bdfbc1a75ac5093b4af84f"},
      {"Content-Length", "17"},
      {"Host", "localhost:8080"}}},
    {"empty_get", "GET", "/2015-03-31/functions/my-fn", "", "",
     {{"X-Amz-Date", "20240517T123456Z"},
      {"Authorization", "AWS4-HMAC-SHA256 Credential=AKIAHEARTHTEST000001/20240517/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=adc8cb4519fab0b043a59949ce981a919465ceff300f13f6bada55646940f73e"},
      {"Host", "localhost:8080"}}},
    {"colon_raw", "POST", "/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:my-fn/invocations", "", "{\"hello\":\"world\"}",
     {{"X-Amz-Date", "20240517T123456Z"},
      {"Authorization", "AWS4-HMAC-SHA256 Credential=AKIAHEARTHTEST000001/20240517/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=ebef6656521cea9cfbf6509fb2774687afe6c44f9261f0852b9ed95f2956de05"},
      {"Content-Length", "17"},
      {"Host", "localhost:8080"}}},
    {"pct_path", "POST", "/2015-03-31/functions/my-fn%3Av1/invocations", "", "{\"hello\":\"world\"}",
     {{"X-Amz-Date", "20240517T123456Z"},
      {"Authorization", "AWS4-HMAC-SHA256 Credential=AKIAHEARTHTEST000001/20240517/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=997f04eb60baffc9e532735b0ad9ed2f5d1447ecfc2bf6b591be26c5e896b2c3"},
      {"Content-Length", "17"},
      {"Host", "localhost:8080"}}},
    {"dots", "POST", "/2015-03-31//functions/./x/../my-fn/invocations/", "", "{\"hello\":\"world\"}",
     {{"X-Amz-Date", "20240517T123456Z"},
      {"Authorization", "AWS4-HMAC-SHA256 Credential=AKIAHEARTHTEST000001/20240517/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=5bbda5ac887f0983de80495a54af9d94a4b54d2a4d3dc55201246ed98d6a30ed"},
      {"Content-Length", "17"},
      {"Host", "localhost:8080"}}},
    {"content_sha", "POST", "/2015-03-31/functions/my-fn/invocations", "", "{\"hello\":\"world\"}",
     {{"X-Amz-Content-SHA256", "93a23971a914e5eacbf0a8d25154cda309c3c1c72fbb9914d47c60f3cb681588"},
      {"X-Amz-Date", "20240517T123456Z"},
      {"Authorization", "AWS4-HMAC-SHA256 Credential=AKIAHEARTHTEST000001/20240517/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=73cf5b947e4453185b35437868a063d2afe4807b30d377e12a1aff9397f9be73"},
      {"Content-Length", "17"},
      {"Host", "localhost:8080"}}},
    {"eu_region", "POST", "/2015-03-31/functions/my-fn/invocations", "", "{\"hello\":\"world\"}",
     {{"X-Amz-Date", "20240517T123456Z"},
      {"Authorization", "AWS4-HMAC-SHA256 Credential=AKIAHEARTHTEST000001/20240517/eu-west-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=2defcfb0767b0dfb1b4f2cbf47d73383efe003b9e077e5e1b0d72ed3f0dcee4a"},
      {"Content-Length", "17"},
      {"Host", "localhost:8080"}}},
    {"client_invoke_arn_qualifier", "POST", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Amy-fn/invocations", "Qualifier=v1", "{\"hello\":\"world\"}",
     {{"X-Amz-Invocation-Type", "RequestResponse"},
      {"X-Amz-Log-Type", "Tail"},
      {"User-Agent", "Botocore/1.29.27 Python/3.11.2 Linux/6.18.44-fc-v595"},
      {"X-Amz-Date", "20240517T123456Z"},
      {"Authorization", "AWS4-HMAC-SHA256 Credential=AKIAHEARTHTEST000001/20240517/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date;x-amz-invocation-type;x-amz-log-type, Signature=f38cb0ec4c85e507ceaafa067727f4336850392f66f43358a70795b9fe603275"},
      {"amz-sdk-request", "attempt=1"},
      {"Content-Length", "17"},
      {"Host", "localhost:8080"}}},
    {"client_invoke", "POST", "/2015-03-31/functions/my-fn/invocations", "", "{\"hello\":\"world\"}",
     {{"X-Amz-Invocation-Type", "RequestResponse"},
      {"X-Amz-Log-Type", "Tail"},
      {"User-Agent", "Botocore/1.29.27 Python/3.11.2 Linux/6.18.44-fc-v595"},
      {"X-Amz-Date", "20240517T123456Z"},
      {"Authorization", "AWS4-HMAC-SHA256 Credential=AKIAHEARTHTEST000001/20240517/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date;x-amz-invocation-type;x-amz-log-type, Signature=ee6c2751897fc8f3d1b266632d3a9e848fb171f5d6c323b8dd3fc8e6ef9b50da"},
      {"amz-sdk-request", "attempt=1"},
      {"Content-Length", "17"},
      {"Host", "localhost:8080"}}},
};
#define N_VECTORS (sizeof(vectors) / sizeof(vectors[0]))

static const char tenant_a[] = "tenant-a"; /* what the lookup hands back */

typedef struct keyring {
    const char *akid;
    const char *secret;
} keyring_t;

static const char *lookup(void *ctx, const char *akid, const void **owner)
{
    const keyring_t *k = ctx;
    if (strcmp(akid, k->akid) != 0)
        return NULL;
    *owner = tenant_a;
    return k->secret;
}

static keyring_t good_keys = {AKID, SECRET};

/* A mutable copy of a vector as a sigv4_request_t. */
typedef struct req {
    sigv4_header_t h[MAX_H + 4];
    char *owned[MAX_H + 4]; /* values replaced by set_header */
    sigv4_request_t r;
    sigv4_result_t res;
    hearth_error_t err;
} req_t;

static const vector_t *vec(const char *name)
{
    for (size_t i = 0; i < N_VECTORS; i++)
        if (strcmp(vectors[i].name, name) == 0)
            return &vectors[i];
    return NULL;
}

static void load(req_t *q, const char *name)
{
    const vector_t *v = vec(name);
    memset(q, 0, sizeof(*q));
    if (v == NULL)
        return;
    size_t n = 0;
    while (n < MAX_H && v->headers[n][0] != NULL) {
        q->h[n] = (sigv4_header_t){v->headers[n][0], v->headers[n][1]};
        n++;
    }
    q->r = (sigv4_request_t){
        .method = v->method, .path = v->path, .query = v->query, .headers = q->h, .n_headers = n,
        .body = v->body, .body_len = strlen(v->body), .now = T0, .lookup = lookup, .lookup_ctx = &good_keys,
    };
}

static void unload(req_t *q)
{
    for (size_t i = 0; i < MAX_H + 4; i++)
        free(q->owned[i]);
}

/* Replace the value of header name (NULL removes it), or add it. */
static void set_header(req_t *q, const char *name, const char *value)
{
    for (size_t i = 0; i < q->r.n_headers; i++) {
        if (strcasecmp(q->h[i].name, name) != 0)
            continue;
        if (value == NULL) {
            memmove(&q->h[i], &q->h[i + 1], (q->r.n_headers - i - 1) * sizeof(q->h[0]));
            q->r.n_headers--;
            return;
        }
        free(q->owned[i]);
        q->owned[i] = strdup(value);
        q->h[i].value = q->owned[i];
        return;
    }
    if (value != NULL && q->r.n_headers < MAX_H + 4) {
        size_t i = q->r.n_headers++;
        free(q->owned[i]);
        q->owned[i] = strdup(value);
        q->h[i] = (sigv4_header_t){name, q->owned[i]};
    }
}

static sigv4_status_t verify(req_t *q)
{
    strcpy(q->err.msg, "(untouched)");
    int rc = sigv4_verify(&q->r, &q->res, &q->err);
    /* Contract: 0 iff OK; the owner only on success; never the secret in a message. */
    if ((rc == 0) != (q->res.status == SIGV4_OK))
        q->res.status = (sigv4_status_t)-1;
    if (q->res.status != SIGV4_OK && q->res.owner != NULL)
        q->res.status = (sigv4_status_t)-2;
    if (rc != 0 && strstr(q->err.msg, SECRET) != NULL)
        q->res.status = (sigv4_status_t)-3;
    return q->res.status;
}

/* Verify with the Authorization header replaced. */
static sigv4_status_t verify_auth(const char *vector, const char *authorization, char *msg, size_t msg_len)
{
    req_t q;
    load(&q, vector);
    set_header(&q, "Authorization", authorization);
    sigv4_status_t st = verify(&q);
    if (msg)
        snprintf(msg, msg_len, "%s", q.err.msg);
    unload(&q);
    return st;
}

static void t_botocore_vectors_verify(void)
{
    for (size_t i = 0; i < N_VECTORS; i++) {
        req_t q;
        load(&q, vectors[i].name);
        sigv4_status_t st = verify(&q);
        CHECK(st == SIGV4_OK, "%s: status %d: %s", vectors[i].name, st, q.err.msg);
        CHECK(q.res.owner == tenant_a, "%s: owner", vectors[i].name);
        CHECK(strcmp(q.res.access_key_id, AKID) == 0, "%s: akid %s", vectors[i].name, q.res.access_key_id);
        CHECK(q.res.signed_at == T0, "%s: signed_at %lld", vectors[i].name, (long long)q.res.signed_at);
        unload(&q);
    }
    req_t q;
    load(&q, "eu_region");
    CHECK(verify(&q) == SIGV4_OK && strcmp(q.res.region, "eu-west-1") == 0, "region %s", q.res.region);
    unload(&q);
}

/* The canonical URI is the raw path, dot segments and empty segments
 * removed, encoded once more: botocore signed a raw ':' as %3A and a
 * received %3A as %253A. So the same name sent with the other spelling
 * must not verify. */
static void t_canonical_uri_encodes_raw_path_again(void)
{
    req_t q;
    load(&q, "colon_raw");
    q.r.path = "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Amy-fn/invocations";
    CHECK(verify(&q) == SIGV4_INVALID, "%%3A for a signed ':' verified: %s", q.err.msg);
    unload(&q);

    load(&q, "client_invoke_arn_qualifier");
    q.r.path = "/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:my-fn/invocations";
    CHECK(verify(&q) == SIGV4_INVALID, "':' for a signed %%3A verified: %s", q.err.msg);
    unload(&q);

    load(&q, "pct_path");
    q.r.path = "/2015-03-31/functions/my-fn%3av1/invocations"; /* escapes are not normalised */
    CHECK(verify(&q) == SIGV4_INVALID, "%%3a for a signed %%3A verified: %s", q.err.msg);
    unload(&q);

    load(&q, "dots");
    q.r.path = "/2015-03-31/functions/my-fn/invocations/"; /* what the dots resolve to */
    CHECK(verify(&q) == SIGV4_OK, "resolved dots: %s", q.err.msg);
    q.r.path = "/2015-03-31/functions/my-fn/invocations"; /* but the trailing slash counts */
    CHECK(verify(&q) == SIGV4_INVALID, "trailing slash dropped: %s", q.err.msg);
    unload(&q);

    load(&q, "empty_get");
    q.r.path = "/2015-03-31/functions/my-fn/.";
    CHECK(verify(&q) == SIGV4_OK, "trailing '.': %s", q.err.msg);
    unload(&q);
}

/* Query parameters are decoded and re-encoded, then sorted: any spelling of
 * the same parameters in any order verifies. */
static void t_query_canonical_form(void)
{
    static const char *const same[] = {
        "Qualifier=v1&a=b%20c&A=z&a=a&e=&flag&t=~%2A&p=%2B",
        "p=%2b&t=%7e%2a&flag=&e&a=a&A=z&a=b%20c&Qualifier=v1",
        "&&Qualifier=%76%31&a=b%20c&A=z&a=a&e=&flag&t=~*&p=%2B&",
        "Qualifier=v1&a=b%20c&A=z&a=a&e=&flag&t=~%2A&p=+", /* a raw '+' is a '+', not a space */
    };
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        req_t q;
        load(&q, "query");
        q.r.query = same[i];
        CHECK(verify(&q) == SIGV4_OK, "%s: %s", same[i], q.err.msg);
        unload(&q);
    }
    static const char *const other[] = {
        "Qualifier=v2&a=b%20c&A=z&a=a&e=&flag&t=~%2A&p=%2B", /* tampered value */
        "Qualifier=v1&a=b+c&A=z&a=a&e=&flag&t=~%2A&p=%2B",
        "Qualifier=v1&a=b%20c&a=z&a=a&e=&flag&t=~%2A&p=%2B", /* names are case-sensitive */
        "",
    };
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        req_t q;
        load(&q, "query");
        q.r.query = other[i];
        CHECK(verify(&q) == SIGV4_INVALID, "'%s' verified: %s", other[i], q.err.msg);
        unload(&q);
    }
}

static void t_header_values_trimmed_and_names_any_case(void)
{
    req_t q;
    load(&q, "spaces");
    set_header(&q, "X-Amz-Client-Context", "a b\t\t c");
    set_header(&q, "X-Custom", " x y ");
    CHECK(verify(&q) == SIGV4_OK, "collapsed spaces: %s", q.err.msg);
    set_header(&q, "X-Custom", "x  y z");
    CHECK(verify(&q) == SIGV4_INVALID, "changed value verified");
    unload(&q);

    load(&q, "post_body");
    for (size_t i = 0; i < q.r.n_headers; i++)
        if (strcasecmp(q.h[i].name, "Host") == 0)
            q.h[i].name = "HOST";
        else if (strcasecmp(q.h[i].name, "Content-Type") == 0)
            q.h[i].name = "content-type";
    CHECK(verify(&q) == SIGV4_OK, "header name case: %s", q.err.msg);
    unload(&q);
}

static void t_signed_and_unsigned_headers(void)
{
    req_t q;
    load(&q, "client_invoke");
    set_header(&q, "User-Agent", "something else"); /* not signed */
    set_header(&q, "X-Extra", "added");
    CHECK(verify(&q) == SIGV4_OK, "unsigned header change: %s", q.err.msg);
    set_header(&q, "X-Amz-Invocation-Type", "Event");
    CHECK(verify(&q) == SIGV4_INVALID, "signed header tampered");
    unload(&q);

    load(&q, "spaces");
    q.h[q.r.n_headers++] = (sigv4_header_t){"x-custom", "again"}; /* a repeat joins with ',' */
    CHECK(verify(&q) == SIGV4_INVALID, "repeated signed header verified");
    unload(&q);

    load(&q, "post_body");
    set_header(&q, "Content-Type", NULL);
    CHECK(verify(&q) == SIGV4_INVALID && strstr(q.err.msg, "content-type") != NULL, "absent signed header: %s",
          q.err.msg);
    unload(&q);
}

static void t_wrong_secret(void)
{
    keyring_t wrong = {AKID, "hearthTestSecretKey/0123456789+abcdefghiJ"};
    req_t q;
    load(&q, "post_body");
    q.r.lookup_ctx = &wrong;
    CHECK(verify(&q) == SIGV4_INVALID, "status %d", q.res.status);
    CHECK(strstr(q.err.msg, "signature we calculated does not match") != NULL, "%s", q.err.msg);
    CHECK(sigv4_status_http(q.res.status) == 403, "http");
    CHECK(strcmp(sigv4_status_type(q.res.status), "InvalidSignatureException") == 0, "type");
    unload(&q);
}

static void t_tampered_body(void)
{
    req_t q;
    load(&q, "post_body");
    q.r.body = "{\"hello\":\"World\"}";
    CHECK(verify(&q) == SIGV4_INVALID, "tampered body verified");
    q.r.body_len = 0;
    CHECK(verify(&q) == SIGV4_INVALID, "empty body verified");
    unload(&q);

    /* The caller may hash the body itself. */
    static const uint8_t good[32] = {0x93, 0xa2, 0x39, 0x71, 0xa9, 0x14, 0xe5, 0xea, 0xcb, 0xf0, 0xa8,
                                     0xd2, 0x51, 0x54, 0xcd, 0xa3, 0x09, 0xc3, 0xc1, 0xc7, 0x2f, 0xbb,
                                     0x99, 0x14, 0xd4, 0x7c, 0x60, 0xf3, 0xcb, 0x68, 0x15, 0x88};
    uint8_t bad[32];
    memcpy(bad, good, 32);
    bad[31] ^= 1;
    load(&q, "post_body");
    q.r.body = NULL;
    q.r.body_len = 0;
    q.r.body_sha256 = good;
    CHECK(verify(&q) == SIGV4_OK, "caller-hashed body: %s", q.err.msg);
    q.r.body_sha256 = bad;
    CHECK(verify(&q) == SIGV4_INVALID, "wrong caller hash verified");
    unload(&q);
}

static void t_tampered_path_and_method(void)
{
    req_t q;
    load(&q, "post_body");
    q.r.path = "/2015-03-31/functions/my-fo/invocations";
    CHECK(verify(&q) == SIGV4_INVALID, "tampered path verified");
    q.r.path = "/2015-03-31/functions/my-fn/invocations";
    q.r.method = "PUT";
    CHECK(verify(&q) == SIGV4_INVALID, "tampered method verified");
    q.r.method = "post";
    CHECK(verify(&q) == SIGV4_BAD_REQUEST, "lowercase method: %d", q.res.status);
    unload(&q);
}

static void t_unknown_access_key(void)
{
    keyring_t other = {"AKIAOTHER00000000001", SECRET};
    req_t q;
    load(&q, "post_body");
    q.r.lookup_ctx = &other;
    CHECK(verify(&q) == SIGV4_UNKNOWN_KEY, "status %d: %s", q.res.status, q.err.msg);
    CHECK(strcmp(q.err.msg, "The security token included in the request is invalid.") == 0, "%s", q.err.msg);
    CHECK(strcmp(sigv4_status_type(q.res.status), "UnrecognizedClientException") == 0, "type");
    CHECK(strcmp(q.res.access_key_id, AKID) == 0, "akid still reported for logs");
    q.r.lookup = NULL;
    CHECK(verify(&q) == SIGV4_UNKNOWN_KEY, "no lookup: %d", q.res.status);
    unload(&q);
}

static void t_clock_skew(void)
{
    req_t q;
    load(&q, "post_body");
    q.r.now = T0 + 300;
    CHECK(verify(&q) == SIGV4_OK, "exactly 5 min late: %s", q.err.msg);
    q.r.now = T0 - 300;
    CHECK(verify(&q) == SIGV4_OK, "exactly 5 min early: %s", q.err.msg);
    q.r.now = T0 + 301;
    CHECK(verify(&q) == SIGV4_EXPIRED, "stale: %d", q.res.status);
    CHECK(strcmp(q.err.msg, "Signature expired: 20240517T123456Z is now earlier than 20240517T123457Z "
                            "(20240517T123957Z - 5 min.)") == 0,
          "%s", q.err.msg);
    CHECK(sigv4_status_http(q.res.status) == 403 &&
              strcmp(sigv4_status_type(q.res.status), "InvalidSignatureException") == 0,
          "mapping");
    q.r.now = T0 - 3600;
    CHECK(verify(&q) == SIGV4_EXPIRED && strstr(q.err.msg, "not yet current") != NULL, "future: %s", q.err.msg);
    q.r.now = T0 + 61;
    q.r.max_skew = 60;
    CHECK(verify(&q) == SIGV4_EXPIRED, "custom skew: %d", q.res.status);
    q.r.now = INT64_MIN;
    CHECK(verify(&q) == SIGV4_EXPIRED, "absurd now");
    q.r.now = INT64_MAX;
    q.r.max_skew = INT64_MAX;
    CHECK(verify(&q) == SIGV4_OK, "absurd skew: %s", q.err.msg);
    unload(&q);
}

static void t_date_scope_mismatch(void)
{
    req_t q;
    load(&q, "post_body");
    set_header(&q, "X-Amz-Date", "20240518T000000Z");
    q.r.now = 1715990400;
    CHECK(verify(&q) == SIGV4_INVALID, "status %d", q.res.status);
    CHECK(strstr(q.err.msg, "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
                            "HTTP: '20240517' != '20240518', from '20240518T000000Z'.") != NULL,
          "%s", q.err.msg);
    unload(&q);

    /* Same day, another second: the date matches the scope, the signature not. */
    load(&q, "post_body");
    set_header(&q, "X-Amz-Date", "20240517T123457Z");
    CHECK(verify(&q) == SIGV4_INVALID && strstr(q.err.msg, "signature we calculated") != NULL, "%s", q.err.msg);
    unload(&q);
}

static void t_amz_date_required_and_well_formed(void)
{
    static const char *const bad[] = {
        "2024-05-17T12:34:56Z", "20240517T123456", "20240517 123456Z", "20240230T123456Z", "20240517T243456Z",
        "20240517T126056Z",     "2024051T1234567Z", "",                "20240517t123456z", "+0240517T123456Z",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        req_t q;
        load(&q, "post_body");
        set_header(&q, "X-Amz-Date", bad[i]);
        CHECK(verify(&q) == SIGV4_INCOMPLETE, "'%s': %d %s", bad[i], q.res.status, q.err.msg);
        unload(&q);
    }
    req_t q;
    load(&q, "post_body");
    set_header(&q, "X-Amz-Date", " 20240517T123456Z "); /* surrounding blanks are not part of the value */
    CHECK(verify(&q) == SIGV4_OK, "blanks: %s", q.err.msg);
    set_header(&q, "X-Amz-Date", NULL);
    CHECK(verify(&q) == SIGV4_INCOMPLETE && strstr(q.err.msg, "X-Amz-Date") != NULL, "%s", q.err.msg);
    q.h[q.r.n_headers++] = (sigv4_header_t){"X-Amz-Date", "20240517T123456Z"};
    q.h[q.r.n_headers++] = (sigv4_header_t){"x-amz-date", "20240517T123456Z"};
    CHECK(verify(&q) == SIGV4_INCOMPLETE, "two X-Amz-Date: %d", q.res.status);
    unload(&q);
}

#define CRED "Credential=" AKID "/20240517/us-east-1/lambda/aws4_request"
#define SH "SignedHeaders=content-type;host;x-amz-date"
#define SIG "Signature=fa62c91cce7d114684425d9507c0be75bbc9135253efa953a03a63beadd3cdd4"

static void t_authorization_layout(void)
{
    static const char *const good[] = {
        "AWS4-HMAC-SHA256 " CRED ", " SH ", " SIG,
        "AWS4-HMAC-SHA256 " CRED "," SH "," SIG,
        "  AWS4-HMAC-SHA256   " SIG " ,\t" CRED ",  " SH "  ",
        "AWS4-HMAC-SHA256 " CRED ", " SH ", Signature=FA62C91CCE7D114684425D9507C0BE75BBC9135253EFA953A03A63BEADD3CDD4",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char msg[1024];
        sigv4_status_t st = verify_auth("post_body", good[i], msg, sizeof(msg));
        CHECK(st == SIGV4_OK, "'%s': %d %s", good[i], st, msg);
    }
}

static void t_authorization_malformed(void)
{
    static char oversized[SIGV4_AUTH_MAX + 64];
    snprintf(oversized, sizeof(oversized), "AWS4-HMAC-SHA256 " CRED ", " SH ", " SIG ", %*s", SIGV4_AUTH_MAX, "x");
    static const char *const bad[] = {
        "AWS4-HMAC-SHA256 " CRED ", " SH,                                     /* no Signature */
        "AWS4-HMAC-SHA256 " CRED ", " SIG,                                    /* no SignedHeaders */
        "AWS4-HMAC-SHA256 " SH ", " SIG,                                      /* no Credential */
        "AWS4-HMAC-SHA256",                                                   /* nothing */
        "AWS4-HMAC-SHA256 ",
        "",
        "AWS4-HMAC-SHA256 " CRED ", " SH ", Signature=",                      /* empty */
        "AWS4-HMAC-SHA256 " CRED ", " SH ", Signature=fa62c91cce7d114684425d9507c0be75bbc9135253efa953a03a63beadd3cdd", /* 63 */
        "AWS4-HMAC-SHA256 " CRED ", " SH ", " SIG "0",                         /* 65 */
        "AWS4-HMAC-SHA256 " CRED ", " SH ", Signature=ga62c91cce7d114684425d9507c0be75bbc9135253efa953a03a63beadd3cdd4",
        "AWS4-HMAC-SHA256 " CRED ", " SH ", Signature=fa62c91cce7d114684425d9507c0be75bbc9135253efa953a03a63beadd3cd 4",
        "AWS4-HMAC-SHA256 " CRED ", " CRED ", " SH ", " SIG,                  /* duplicates */
        "AWS4-HMAC-SHA256 " CRED ", " SH ", " SH ", " SIG,
        "AWS4-HMAC-SHA256 " CRED ", " SH ", " SIG ", " SIG,
        "AWS4-HMAC-SHA1 " CRED ", " SH ", " SIG,                              /* algorithms */
        "aws4-hmac-sha256 " CRED ", " SH ", " SIG,
        "AWS4-HMAC-SHA256," CRED ", " SH ", " SIG,
        "Bearer abc",
        "AWS4-HMAC-SHA256 " CRED ", " SH ", " SIG ",",                        /* stray commas */
        "AWS4-HMAC-SHA256 " CRED ",, " SH ", " SIG,
        "AWS4-HMAC-SHA256 " CRED ", " SH ", " SIG ", Foo=bar",                /* unknown parameter */
        "AWS4-HMAC-SHA256 " CRED ", " SH ", signature=fa62c91cce7d114684425d9507c0be75bbc9135253efa953a03a63beadd3cdd4",
        "AWS4-HMAC-SHA256 " CRED ", " SH " " SIG,                             /* no comma */
        "AWS4-HMAC-SHA256 Credential " CRED ", " SH ", " SIG,
        "AWS4-HMAC-SHA256 Credential=" AKID "/20240517/us-east-1/lambda, " SH ", " SIG, /* credential shape */
        "AWS4-HMAC-SHA256 Credential=" AKID "/20240517/us-east-1/lambda/aws4_request/x, " SH ", " SIG,
        "AWS4-HMAC-SHA256 Credential=/20240517/us-east-1/lambda/aws4_request, " SH ", " SIG,
        "AWS4-HMAC-SHA256 Credential=AKIA-BAD/20240517/us-east-1/lambda/aws4_request, " SH ", " SIG,
        "AWS4-HMAC-SHA256 Credential=" AKID "/2024051/us-east-1/lambda/aws4_request, " SH ", " SIG,
        "AWS4-HMAC-SHA256 Credential=" AKID "/2024051x/us-east-1/lambda/aws4_request, " SH ", " SIG,
        "AWS4-HMAC-SHA256 Credential=" AKID "/20240517//lambda/aws4_request, " SH ", " SIG,
        "AWS4-HMAC-SHA256 Credential=" AKID "/20240517/US-EAST-1/lambda/aws4_request, " SH ", " SIG,
        "AWS4-HMAC-SHA256 " CRED ", SignedHeaders=host;content-type;x-amz-date, " SIG, /* unsorted */
        "AWS4-HMAC-SHA256 " CRED ", SignedHeaders=content-type;host;host;x-amz-date, " SIG,
        "AWS4-HMAC-SHA256 " CRED ", SignedHeaders=Content-Type;host;x-amz-date, " SIG,
        "AWS4-HMAC-SHA256 " CRED ", SignedHeaders=content-type;;host;x-amz-date, " SIG,
        "AWS4-HMAC-SHA256 " CRED ", SignedHeaders=content-type;host;x-amz-date;, " SIG,
        "AWS4-HMAC-SHA256 " CRED ", SignedHeaders=content type;host;x-amz-date, " SIG,
        "AWS4-HMAC-SHA256 " CRED ", " SH ", " SIG " ",                        /* fine but... */
        oversized,
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char msg[1024];
        sigv4_status_t st = verify_auth("post_body", bad[i], msg, sizeof(msg));
        if (i == sizeof(bad) / sizeof(bad[0]) - 2) {
            CHECK(st == SIGV4_OK, "trailing blank is OWS: %d %s", st, msg); /* ...trailing blanks are OWS */
            continue;
        }
        CHECK(st == SIGV4_INCOMPLETE, "#%zu '%.120s': %d %s", i, bad[i], st, msg);
        CHECK(sigv4_status_http(st) == 403 && strcmp(sigv4_status_type(st), "IncompleteSignatureException") == 0,
              "mapping");
    }
    char msg[1024];
    CHECK(verify_auth("post_body", "AWS4-HMAC-SHA256 " CRED, msg, sizeof(msg)) == SIGV4_INCOMPLETE &&
              strcmp(msg, "Authorization header requires 'SignedHeaders' parameter. Authorization header requires "
                          "'Signature' parameter.") == 0,
          "%s", msg);
    CHECK(verify_auth("post_body", "AWS4-HMAC-SHA1 x", msg, sizeof(msg)) == SIGV4_INCOMPLETE &&
              strstr(msg, "'AWS4-HMAC-SHA1'") != NULL,
          "%s", msg);
}

static void t_authorization_missing_or_repeated(void)
{
    req_t q;
    load(&q, "post_body");
    set_header(&q, "Authorization", NULL);
    CHECK(verify(&q) == SIGV4_MISSING, "status %d", q.res.status);
    CHECK(sigv4_status_http(q.res.status) == 403 &&
              strcmp(sigv4_status_type(q.res.status), "MissingAuthenticationTokenException") == 0,
          "mapping");
    q.h[q.r.n_headers++] = (sigv4_header_t){"authorization", "AWS4-HMAC-SHA256 " CRED ", " SH ", " SIG};
    CHECK(verify(&q) == SIGV4_OK, "lowercase name: %s", q.err.msg);
    q.h[q.r.n_headers++] = (sigv4_header_t){"Authorization", "AWS4-HMAC-SHA256 " CRED ", " SH ", " SIG};
    CHECK(verify(&q) == SIGV4_INCOMPLETE, "two Authorization: %d", q.res.status);
    unload(&q);
}

static void t_host_and_date_must_be_signed(void)
{
    char msg[1024];
    CHECK(verify_auth("post_body", "AWS4-HMAC-SHA256 " CRED ", SignedHeaders=content-type;x-amz-date, " SIG, msg,
                      sizeof(msg)) == SIGV4_INCOMPLETE &&
              strstr(msg, "'Host'") != NULL,
          "no host: %s", msg);
    CHECK(verify_auth("post_body", "AWS4-HMAC-SHA256 " CRED ", SignedHeaders=content-type;host, " SIG, msg,
                      sizeof(msg)) == SIGV4_INCOMPLETE &&
              strstr(msg, "'X-Amz-Date'") != NULL,
          "no x-amz-date: %s", msg);
    req_t q;
    load(&q, "post_body");
    set_header(&q, "Host", NULL);
    CHECK(verify(&q) == SIGV4_INVALID && strstr(q.err.msg, "'host'") != NULL, "host absent: %s", q.err.msg);
    unload(&q);
}

static void t_credential_scope(void)
{
    char msg[1024];
    CHECK(verify_auth("post_body",
                      "AWS4-HMAC-SHA256 Credential=" AKID "/20240517/us-east-1/s3/aws4_request, " SH ", " SIG, msg,
                      sizeof(msg)) == SIGV4_INVALID &&
              strcmp(msg, "Credential should be scoped to correct service: 'lambda'.") == 0,
          "%s", msg);
    CHECK(verify_auth("post_body",
                      "AWS4-HMAC-SHA256 Credential=" AKID "/20240517/us-east-1/lambda/aws4_reques, " SH ", " SIG,
                      msg, sizeof(msg)) == SIGV4_INVALID &&
              strstr(msg, "valid terminator") != NULL,
          "%s", msg);
    /* Any region verifies if it was signed so (eu_region), but not a swapped one. */
    CHECK(verify_auth("post_body",
                      "AWS4-HMAC-SHA256 Credential=" AKID "/20240517/us-west-2/lambda/aws4_request, " SH ", " SIG,
                      msg, sizeof(msg)) == SIGV4_INVALID,
          "swapped region: %s", msg);
}

static void t_content_sha256_header(void)
{
    req_t q;
    load(&q, "content_sha");
    q.r.body = "{\"hello\":\"World\"}"; /* header says the old body */
    CHECK(verify(&q) == SIGV4_BAD_REQUEST, "mismatching x-amz-content-sha256: %d", q.res.status);
    CHECK(sigv4_status_http(q.res.status) == 400, "400");
    unload(&q);

    static const char *const refused[] = {
        "UNSIGNED-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "93A23971A914E5EACBF0A8D25154CDA309C3C1C72FBB9914D47C60F3CB681588",
        "",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        load(&q, "post_body");
        set_header(&q, "X-Amz-Content-SHA256", refused[i]);
        CHECK(verify(&q) == SIGV4_BAD_REQUEST, "'%s': %d %s", refused[i], q.res.status, q.err.msg);
        unload(&q);
    }
}

static void t_bounds(void)
{
    static char long_path[SIGV4_PATH_MAX + 2];
    memset(long_path, 'a', sizeof(long_path) - 1);
    long_path[0] = '/';
    req_t q;
    load(&q, "post_body");
    q.r.path = long_path;
    CHECK(verify(&q) == SIGV4_BAD_REQUEST, "long path: %d", q.res.status);
    q.r.path = "/2015-03-31/functions/my-fn/invocations";
    q.r.n_headers = SIGV4_HEADERS_MAX + 1;
    CHECK(verify(&q) == SIGV4_BAD_REQUEST, "many headers: %d", q.res.status);
    unload(&q);

    static char long_query[SIGV4_QUERY_MAX + 2];
    memset(long_query, '&', sizeof(long_query) - 1);
    load(&q, "query");
    q.r.query = long_query;
    CHECK(verify(&q) == SIGV4_BAD_REQUEST, "long query: %d", q.res.status);
    long_query[SIGV4_QUERY_MAX] = '\0';
    CHECK(verify(&q) == SIGV4_INVALID, "empty params only: %d", q.res.status);
    unload(&q);
}

static void t_status_mapping(void)
{
    CHECK(sigv4_status_http(SIGV4_OK) == 200, "ok");
    CHECK(sigv4_status_http(SIGV4_INTERNAL) == 500 && strcmp(sigv4_status_type(SIGV4_INTERNAL), "ServiceException") == 0,
          "internal");
    CHECK(strcmp(sigv4_status_type(SIGV4_BAD_REQUEST), "ValidationException") == 0, "bad request");
    CHECK(strcmp(sigv4_status_type(SIGV4_EXPIRED), "InvalidSignatureException") == 0, "expired");
}

int main(void)
{
    RUN(t_botocore_vectors_verify);
    RUN(t_canonical_uri_encodes_raw_path_again);
    RUN(t_query_canonical_form);
    RUN(t_header_values_trimmed_and_names_any_case);
    RUN(t_signed_and_unsigned_headers);
    RUN(t_wrong_secret);
    RUN(t_tampered_body);
    RUN(t_tampered_path_and_method);
    RUN(t_unknown_access_key);
    RUN(t_clock_skew);
    RUN(t_date_scope_mismatch);
    RUN(t_amz_date_required_and_well_formed);
    RUN(t_authorization_layout);
    RUN(t_authorization_malformed);
    RUN(t_authorization_missing_or_repeated);
    RUN(t_host_and_date_must_be_signed);
    RUN(t_credential_scope);
    RUN(t_content_sha256_header);
    RUN(t_bounds);
    RUN(t_status_mapping);
    return harness_done();
}
