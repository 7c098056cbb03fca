/* libFuzzer entry point: bytes → the SigV4 verifier.
 *
 * The input is split on '\n' into: the Authorization value, the raw path,
 * the raw query, the X-Amz-Date value, then up to 8 "name:value" headers;
 * whatever follows the last split is the body. Host is always present and a
 * fixed secret is returned for any access key id starting with 'A', so that
 * inputs reach the canonical request and the HMAC chain, not only the
 * Authorization parser. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "orchestrator/sigv4.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define T0 1715949296 /* 2024-05-17T12:34:56Z: the seeds' X-Amz-Date */
#define MAX_PARTS 12

static const char *lookup(void *ctx, const char *akid, const void **owner)
{
    *owner = ctx;
    return akid[0] == 'A' ? "hearthTestSecretKey/0123456789+abcdefghij" : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';

    char *parts[MAX_PARTS] = {0};
    size_t n = 0;
    char *p = buf;
    while (n < MAX_PARTS - 1) {
        parts[n++] = p;
        char *nl = memchr(p, '\n', (size_t)(buf + size - p));
        if (nl == NULL)
            break;
        *nl = '\0';
        p = nl + 1;
    }
    const char *body = "";
    size_t body_len = 0;
    if (n == MAX_PARTS - 1 && p > parts[n - 1]) {
        body = p; /* may hold NULs: it is bytes */
        body_len = (size_t)(buf + size - p);
    }

    sigv4_header_t h[3 + 8];
    size_t nh = 0;
    h[nh++] = (sigv4_header_t){"Host", "localhost:8080"};
    h[nh++] = (sigv4_header_t){"Authorization", parts[0]};
    h[nh++] = (sigv4_header_t){"X-Amz-Date", n > 3 ? parts[3] : "20240517T123456Z"};
    for (size_t i = 4; i < n && nh < sizeof(h) / sizeof(h[0]); i++) {
        char *colon = strchr(parts[i], ':');
        if (colon == NULL)
            continue;
        *colon = '\0';
        h[nh++] = (sigv4_header_t){parts[i], colon + 1};
    }
    sigv4_request_t req = {
        .method = "POST",
        .path = n > 1 ? parts[1] : "/2015-03-31/functions/my-fn/invocations",
        .query = n > 2 ? parts[2] : "",
        .headers = h,
        .n_headers = nh,
        .body = body,
        .body_len = body_len,
        .now = T0,
        .lookup = lookup,
        .lookup_ctx = buf,
    };
    sigv4_result_t res;
    hearth_error_t err;
    int rc = sigv4_verify(&req, &res, &err);
    if ((rc == 0) != (res.status == SIGV4_OK) || (rc != 0 && res.owner != NULL) ||
        (rc != 0 && memchr(err.msg, '\0', sizeof(err.msg)) == NULL))
        abort();
    (void)sigv4_status_http(res.status);
    (void)sigv4_status_type(res.status);
    free(buf);
    return 0;
}
