/* AWS Signature Version 4 verification for the Lambda-compatible endpoint.
 *
 * Independent of any HTTP library: the caller describes the request as it
 * was received (raw percent-encoded path, raw query, headers as sent, the
 * body or its SHA-256) and gets back a verdict that maps onto AWS's own
 * answers (HTTP status, x-amzn-ErrorType, message).
 *
 * What is accepted, and why where it differs from "anything AWS accepts":
 * - Only the Authorization header form (AWS4-HMAC-SHA256); presigned URLs
 *   (X-Amz-Signature in the query) and the Date header in place of
 *   X-Amz-Date are not supported: no Lambda SDK uses them.
 * - Any region in the credential scope; the service must be req->service
 *   ("lambda" by default).
 * - host and x-amz-date must be signed; every signed header must be present.
 *   SignedHeaders must be lowercase and sorted without repeats, as every SDK
 *   sends it.
 * - The payload is always signed: x-amz-content-sha256, when present, must
 *   be the lowercase hex SHA-256 of the body. UNSIGNED-PAYLOAD and the
 *   STREAMING-* forms are refused, so that a captured request cannot be
 *   replayed within the skew window with another body.
 * - Canonical URI (non-S3 rule, checked against botocore): the raw path has
 *   its dot segments and empty segments removed (a trailing '/' is kept),
 *   then every byte outside [A-Za-z0-9-_.~/] is percent-encoded (uppercase
 *   hex) once more, whether or not it is already part of an escape. So a
 *   raw ':' is signed as %3A and a received %3A as %253A.
 * - Canonical query: split on '&' (empty parts dropped), each name and value
 *   percent-decoded (a '%' not followed by two hex digits is taken
 *   literally, '+' is a literal '+') and re-encoded with the RFC 3986
 *   unreserved set, then sorted by name, then value.
 *
 * Usage with hearth's tenants:
 *
 *   static const char *lookup(void *ctx, const char *akid, const void **owner)
 *   {
 *       const cfg_aws_key_t *key;
 *       const auth_tenant_t *t = auth_by_access_key(ctx, akid, &key);
 *       *owner = t;
 *       return t ? key->secret_access_key : NULL;
 *   }
 */
#ifndef HEARTH_SIGV4_H
#define HEARTH_SIGV4_H

#include <stddef.h>
#include <stdint.h>

#include "../common/util.h"

#define SIGV4_DEFAULT_SKEW 300     /* seconds either way, as AWS */
#define SIGV4_AUTH_MAX 8192        /* longer Authorization values are refused */
#define SIGV4_AKID_MAX 128         /* access key id length */
#define SIGV4_SCOPE_PART_MAX 63    /* region and service length */
#define SIGV4_SIGNED_MAX 64        /* names in SignedHeaders */
#define SIGV4_HEADER_NAME_MAX 128  /* one signed header name */
#define SIGV4_HEADERS_MAX 256      /* headers in a request */
#define SIGV4_PATH_MAX 8192        /* raw path length */
#define SIGV4_QUERY_MAX 8192       /* raw query length */
#define SIGV4_CANONICAL_MAX 65536  /* the whole canonical request */

typedef enum sigv4_status {
    SIGV4_OK = 0,          /* 200: signature good, res->owner is the key's owner */
    SIGV4_MISSING,         /* 403 MissingAuthenticationTokenException: no Authorization */
    SIGV4_INCOMPLETE,      /* 403 IncompleteSignatureException: malformed Authorization,
                              no X-Amz-Date, host or x-amz-date not signed */
    SIGV4_UNKNOWN_KEY,     /* 403 UnrecognizedClientException: no such access key */
    SIGV4_EXPIRED,         /* 403 InvalidSignatureException: "Signature expired" / not yet current */
    SIGV4_INVALID,         /* 403 InvalidSignatureException: mismatch, wrong scope */
    SIGV4_BAD_REQUEST,     /* 400 ValidationException: over a bound, unsigned payload,
                              x-amz-content-sha256 not the body's */
    SIGV4_INTERNAL,        /* 500 ServiceException: out of memory, libcrypto failure */
} sigv4_status_t;

typedef struct sigv4_header {
    const char *name;  /* as received; matched case-insensitively */
    const char *value; /* as received (NULL counts as "") */
} sigv4_header_t;

/* The secret of access_key_id, or NULL if unknown. *owner is handed back
 * in res->owner when the signature is good (e.g. the tenant). The secret
 * must stay valid until sigv4_verify returns. */
typedef const char *(*sigv4_lookup_fn)(void *ctx, const char *access_key_id, const void **owner);

typedef struct sigv4_request {
    const char *method;            /* "POST" */
    const char *path;              /* raw, percent-encoded, no query; NULL or "" is "/" */
    const char *query;             /* raw, after '?'; NULL or "" when none */
    const sigv4_header_t *headers; /* every header as received, Authorization included */
    size_t n_headers;
    const void *body;              /* the body, hashed unless body_sha256 is set */
    size_t body_len;
    const uint8_t *body_sha256;    /* 32 bytes when the caller hashed the body, else NULL */
    int64_t now;                   /* unix seconds */
    int64_t max_skew;              /* seconds either way; 0 or less: SIGV4_DEFAULT_SKEW */
    const char *service;           /* credential scope service; NULL: "lambda" */
    sigv4_lookup_fn lookup;        /* access key id -> secret */
    void *lookup_ctx;              /* first argument of lookup */
} sigv4_request_t;

typedef struct sigv4_result {
    sigv4_status_t status;                    /* always set */
    char access_key_id[SIGV4_AKID_MAX + 1];   /* once the Authorization parsed, else "" */
    char region[SIGV4_SCOPE_PART_MAX + 1];    /* likewise */
    int64_t signed_at;                        /* X-Amz-Date in unix seconds, once parsed */
    const void *owner;                        /* from lookup, only when SIGV4_OK */
} sigv4_result_t;

/* Verify the SigV4 signature of req. Returns 0 (res->status SIGV4_OK), or -1
 * with res->status saying which kind of refusal and err->msg a message fit
 * for the client (AWS wording where AWS has one; never the secret or the
 * expected signature); err->code is 0 (ENOMEM for SIGV4_INTERNAL).
 * Comparison of signatures is constant-time. */
int sigv4_verify(const sigv4_request_t *req, sigv4_result_t *res, hearth_error_t *err);

/* HTTP status and x-amzn-ErrorType value for a status. */
int sigv4_status_http(sigv4_status_t s);
const char *sigv4_status_type(sigv4_status_t s);

#endif
