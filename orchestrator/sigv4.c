#include "sigv4.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define ALGORITHM "AWS4-HMAC-SHA256"
#define TERMINATOR "aws4_request"
#define AMZ_DATE_LEN 16 /* 20240517T123456Z */
#define SIGV4_SECRET_MAX 4096

typedef struct span {
    const char *p; /* into the Authorization value; not NUL-terminated */
    size_t len;
} span_t;

typedef struct parsed_auth {
    span_t akid;                          /* Credential, first part */
    span_t date;                          /* YYYYMMDD */
    span_t region;
    span_t service;
    span_t terminator;                    /* must be aws4_request */
    span_t signed_headers;                /* the whole "a;b;c" */
    span_t names[SIGV4_SIGNED_MAX];       /* each signed header name */
    size_t n_names;
    uint8_t signature[32];
} parsed_auth_t;

/* A growable string with a hard cap, so that no input can make the
 * canonical request grow without bound. */
typedef struct buf {
    char *p;       /* NUL-terminated */
    size_t len;
    size_t cap;    /* allocated */
    size_t max;    /* refuse to grow past this */
    bool too_big;  /* something was refused for max */
    bool oom;      /* something was refused for lack of memory */
} buf_t;

static void buf_put(buf_t *b, const char *s, size_t n)
{
    if (b->too_big || b->oom)
        return;
    if (n > b->max - b->len) {
        b->too_big = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_release(buf_t *b)
{
    free(b->p);
}

static void buf_puts(buf_t *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

static void buf_putc(buf_t *b, char c)
{
    buf_put(b, &c, 1);
}

static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

static void buf_put_encoded(buf_t *b, const char *s, size_t n, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            buf_putc(b, (char)c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_put(b, e, 3);
        }
    }
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool span_eq(span_t s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

/* Up to 64 bytes of s for a message, bytes outside printable ASCII as '?':
 * messages go back to the client in JSON, which must be valid UTF-8. */
static const char *printable(span_t s, char out[68])
{
    size_t n = s.len > 64 ? 64 : s.len;
    for (size_t i = 0; i < n; i++)
        out[i] = s.p[i] >= 0x20 && s.p[i] < 0x7f ? s.p[i] : '?';
    strcpy(out + n, s.len > 64 ? "..." : "");
    return out;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c != 0 && strchr("!#$%&'*+-.^_`|~", c));
}

static int fail(sigv4_result_t *res, hearth_error_t *err, sigv4_status_t st, const char *fmt, ...)
    HEARTH_PRINTF(4, 5);
static int fail(sigv4_result_t *res, hearth_error_t *err, sigv4_status_t st, const char *fmt, ...)
{
    va_list ap;
    res->status = st;
    err->code = st == SIGV4_INTERNAL ? ENOMEM : 0;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- Authorization ------------------------------------------------------ */

/* Credential=AKID/YYYYMMDD/region/service/aws4_request */
static const char *parse_credential(span_t v, parsed_auth_t *a)
{
    span_t *parts[5] = {&a->akid, &a->date, &a->region, &a->service, &a->terminator};
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= v.len; i++) {
        if (i < v.len && v.p[i] != '/')
            continue;
        if (n == 5)
            return "Credential must have five parts: access key id, date, region, service and 'aws4_request'";
        *parts[n++] = (span_t){v.p + start, i - start};
        start = i + 1;
    }
    if (n != 5)
        return "Credential must have five parts: access key id, date, region, service and 'aws4_request'";
    if (a->akid.len == 0 || a->akid.len > SIGV4_AKID_MAX)
        return "Credential has a malformed access key id";
    for (size_t i = 0; i < a->akid.len; i++)
        if (!((a->akid.p[i] >= 'A' && a->akid.p[i] <= 'Z') || (a->akid.p[i] >= 'a' && a->akid.p[i] <= 'z') ||
              (a->akid.p[i] >= '0' && a->akid.p[i] <= '9')))
            return "Credential has a malformed access key id";
    if (a->date.len != 8)
        return "Credential has a malformed date (want YYYYMMDD)";
    for (size_t i = 0; i < 8; i++)
        if (a->date.p[i] < '0' || a->date.p[i] > '9')
            return "Credential has a malformed date (want YYYYMMDD)";
    span_t *scope[2] = {&a->region, &a->service};
    for (size_t k = 0; k < 2; k++) {
        if (scope[k]->len == 0 || scope[k]->len > SIGV4_SCOPE_PART_MAX)
            return k == 0 ? "Credential has a malformed region" : "Credential has a malformed service";
        for (size_t i = 0; i < scope[k]->len; i++) {
            char c = scope[k]->p[i];
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
                return k == 0 ? "Credential has a malformed region" : "Credential has a malformed service";
        }
    }
    return NULL;
}

/* SignedHeaders=a;b;c: lowercase names, strictly ascending (so no repeats). */
static const char *parse_signed_headers(span_t v, parsed_auth_t *a)
{
    size_t start = 0;
    a->signed_headers = v;
    a->n_names = 0;
    for (size_t i = 0; i <= v.len; i++) {
        if (i < v.len && v.p[i] != ';') {
            if (!is_tchar((unsigned char)v.p[i]))
                return "SignedHeaders must be lowercase header names separated by ';'";
            continue;
        }
        span_t name = {v.p + start, i - start};
        start = i + 1;
        if (name.len == 0 || name.len > SIGV4_HEADER_NAME_MAX)
            return "SignedHeaders has an empty or over-long name";
        if (a->n_names == SIGV4_SIGNED_MAX)
            return "SignedHeaders names too many headers";
        if (a->n_names > 0) {
            span_t prev = a->names[a->n_names - 1];
            size_t m = prev.len < name.len ? prev.len : name.len;
            int c = memcmp(prev.p, name.p, m);
            if (c > 0 || (c == 0 && prev.len >= name.len))
                return "SignedHeaders must be sorted and without repeats";
        }
        a->names[a->n_names++] = name;
    }
    return NULL;
}

static const char *parse_signature(span_t v, parsed_auth_t *a)
{
    if (v.len != 64)
        return "Signature must be 64 hexadecimal digits";
    for (size_t i = 0; i < 32; i++) {
        int hi = hexval((unsigned char)v.p[2 * i]), lo = hexval((unsigned char)v.p[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return "Signature must be 64 hexadecimal digits";
        a->signature[i] = (uint8_t)(hi << 4 | lo);
    }
    return NULL;
}

/* "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..." in any
 * order, each exactly once. Returns NULL or what is wrong. */
static const char *parse_authorization(const char *value, parsed_auth_t *a, char *why, size_t why_len)
{
    char pr[68];
    size_t len = strnlen(value, SIGV4_AUTH_MAX + 1);
    if (len > SIGV4_AUTH_MAX)
        return "Authorization header is too long";
    while (len > 0 && is_blank(value[len - 1]))
        len--;
    size_t i = 0;
    while (i < len && is_blank(value[i]))
        i++;
    size_t alg = i;
    while (i < len && !is_blank(value[i]))
        i++;
    span_t algorithm = {value + alg, i - alg};
    if (!span_eq(algorithm, ALGORITHM)) {
        snprintf(why, why_len, "Unsupported AWS 'algorithm': '%s' (want '" ALGORITHM "')", printable(algorithm, pr));
        return why;
    }
    static const char *const names[3] = {"Credential", "SignedHeaders", "Signature"};
    span_t vals[3] = {{0}};
    bool seen[3] = {false};
    while (i < len) {
        size_t end = i;
        while (end < len && value[end] != ',')
            end++;
        size_t s = i, e = end;
        while (s < e && is_blank(value[s]))
            s++;
        while (e > s && is_blank(value[e - 1]))
            e--;
        if (s == e)
            return "Authorization header has an empty parameter";
        const char *eq = memchr(value + s, '=', e - s);
        if (eq == NULL)
            return "Authorization parameters must be Name=value";
        span_t name = {value + s, (size_t)(eq - (value + s))};
        span_t val = {eq + 1, (size_t)(value + e - (eq + 1))};
        size_t k;
        for (k = 0; k < 3 && !span_eq(name, names[k]); k++)
            ;
        if (k == 3) {
            snprintf(why, why_len, "Authorization header has an unknown parameter '%s'", printable(name, pr));
            return why;
        }
        if (seen[k]) {
            snprintf(why, why_len, "Authorization header has '%s' more than once", names[k]);
            return why;
        }
        if (val.len == 0) {
            snprintf(why, why_len, "Authorization header has an empty '%s'", names[k]);
            return why;
        }
        seen[k] = true;
        vals[k] = val;
        i = end < len ? end + 1 : end;
        /* A trailing comma leaves an empty last parameter. */
        if (end < len && i == len)
            return "Authorization header has an empty parameter";
    }
    if (!seen[0] || !seen[1] || !seen[2]) {
        size_t n = 0;
        why[0] = '\0';
        for (size_t k = 0; k < 3; k++)
            if (!seen[k] && n < why_len)
                n += (size_t)snprintf(why + n, why_len - n, "%sAuthorization header requires '%s' parameter.",
                                      n ? " " : "", names[k]);
        return why;
    }
    const char *bad;
    if ((bad = parse_credential(vals[0], a)) != NULL || (bad = parse_signed_headers(vals[1], a)) != NULL ||
        (bad = parse_signature(vals[2], a)) != NULL)
        return bad;
    return NULL;
}

/* ---- X-Amz-Date --------------------------------------------------------- */

/* YYYYMMDDTHHMMSSZ, a real UTC date and time (no leap seconds). */
static bool parse_amz_date(const char *s, size_t len, int64_t *out)
{
    if (len != AMZ_DATE_LEN || s[8] != 'T' || s[15] != 'Z')
        return false;
    int f[6];
    static const int pos[6] = {0, 4, 6, 9, 11, 13}, width[6] = {4, 2, 2, 2, 2, 2};
    for (int k = 0; k < 6; k++) {
        f[k] = 0;
        for (int j = 0; j < width[k]; j++) {
            char c = s[pos[k] + j];
            if (c < '0' || c > '9')
                return false;
            f[k] = f[k] * 10 + (c - '0');
        }
    }
    if (f[0] < 1970 || f[1] < 1 || f[1] > 12 || f[2] < 1 || f[2] > 31 || f[3] > 23 || f[4] > 59 || f[5] > 59)
        return false;
    struct tm tm = {.tm_year = f[0] - 1900, .tm_mon = f[1] - 1, .tm_mday = f[2],
                    .tm_hour = f[3], .tm_min = f[4], .tm_sec = f[5]};
    time_t t = timegm(&tm);
    /* timegm normalises 31 February into March: a changed day means invalid. */
    if (t == (time_t)-1 || tm.tm_mday != f[2] || tm.tm_mon != f[1] - 1)
        return false;
    *out = (int64_t)t;
    return true;
}

static void format_amz_date(int64_t t, char out[AMZ_DATE_LEN + 1])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL || strftime(out, AMZ_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm) != AMZ_DATE_LEN)
        snprintf(out, AMZ_DATE_LEN + 1, "?");
}

/* ---- Canonical request -------------------------------------------------- */

/* The only header of this name, trimmed. 0 found, 1 absent, -1 repeated. */
static int single_header(const sigv4_request_t *req, const char *name, const char **v, size_t *len)
{
    int found = 0;
    for (size_t i = 0; i < req->n_headers; i++) {
        if (req->headers[i].name == NULL || strcasecmp(req->headers[i].name, name) != 0)
            continue;
        if (found)
            return -1;
        found = 1;
        const char *s = req->headers[i].value ? req->headers[i].value : "";
        size_t n = strlen(s);
        while (n > 0 && is_space(s[n - 1]))
            n--;
        while (n > 0 && is_space(*s))
            s++, n--;
        *v = s;
        *len = n;
    }
    return found ? 0 : 1;
}

static bool has_name(const parsed_auth_t *a, const char *name)
{
    for (size_t i = 0; i < a->n_names; i++)
        if (span_eq(a->names[i], name))
            return true;
    return false;
}

/* RFC 3986 dot-segment removal as botocore does it for non-S3 services,
 * which also drops empty segments ("//"), then one more URI-encoding. */
static void put_canonical_uri(buf_t *b, const char *path)
{
    size_t len = path ? strlen(path) : 0;
    if (len == 0) {
        buf_putc(b, '/');
        return;
    }
    cleanup_free char *out = malloc(len + 1);
    if (out == NULL) {
        b->oom = true;
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && path[j] != '/')
            j++;
        size_t seg = j - i;
        if (seg == 0 || (seg == 1 && path[i] == '.')) {
            /* empty and "." segments vanish */
        } else if (seg == 2 && path[i] == '.' && path[i + 1] == '.') {
            while (n > 0 && out[n - 1] != '/')
                n--;
            if (n > 0)
                n--; /* the separator before the popped segment */
        } else {
            if (n > 0)
                out[n++] = '/';
            memcpy(out + n, path + i, seg);
            n += seg;
        }
        i = j + 1;
    }
    if (path[0] == '/')
        buf_putc(b, '/');
    buf_put_encoded(b, out, n, true);
    if (path[len - 1] == '/' && n > 0)
        buf_putc(b, '/');
}

/* Percent-decode then re-encode with the unreserved set. A '%' that does not
 * start a valid escape stands for itself. NULL when out of memory. */
static char *canonical_query_part(const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(3 * n + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int hi, lo;
        if (c == '%' && i + 2 < n && (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
            (lo = hexval((unsigned char)s[i + 2])) >= 0) {
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        if (is_unreserved(c)) {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}

typedef struct qparam {
    char *name;  /* canonical (re-encoded) */
    char *value; /* likewise */
} qparam_t;

static int qparam_cmp(const void *x, const void *y)
{
    const qparam_t *a = x, *b = y;
    int c = strcmp(a->name, b->name);
    return c ? c : strcmp(a->value, b->value);
}

/* Sorted name=value pairs joined by '&'. Returns false when out of memory.
 * The caller bounds the query's length, hence the number of pairs. */
static bool put_canonical_query(buf_t *b, const char *query)
{
    size_t len = query ? strlen(query) : 0;
    if (len == 0)
        return true;
    size_t cap = 1;
    for (size_t i = 0; i < len; i++)
        cap += query[i] == '&';
    cleanup_free qparam_t *ps = calloc(cap, sizeof(*ps));
    if (ps == NULL)
        return false;
    size_t n = 0;
    bool ok = true;
    for (size_t i = 0; i < len && ok; i++) {
        size_t j = i;
        while (j < len && query[j] != '&')
            j++;
        if (j > i) {
            const char *eq = memchr(query + i, '=', j - i);
            const char *v = eq ? eq + 1 : query + j;
            ps[n].name = canonical_query_part(query + i, (size_t)((eq ? eq : query + j) - (query + i)));
            ps[n].value = canonical_query_part(v, (size_t)(query + j - v));
            ok = ps[n].name != NULL && ps[n].value != NULL;
            n++;
        }
        i = j;
    }
    if (ok) {
        qsort(ps, n, sizeof(*ps), qparam_cmp);
        for (size_t k = 0; k < n; k++) {
            if (k)
                buf_putc(b, '&');
            buf_puts(b, ps[k].name);
            buf_putc(b, '=');
            buf_puts(b, ps[k].value);
        }
    }
    for (size_t k = 0; k < n; k++) {
        free(ps[k].name);
        free(ps[k].value);
    }
    return ok;
}

/* name:v1,v2\n — each value trimmed, inner whitespace runs made one space.
 * Returns false if no header of this name was received. */
static bool put_canonical_header(buf_t *b, const sigv4_request_t *req, span_t name)
{
    bool found = false;
    buf_put(b, name.p, name.len);
    buf_putc(b, ':');
    for (size_t i = 0; i < req->n_headers; i++) {
        const char *hn = req->headers[i].name;
        if (hn == NULL || strlen(hn) != name.len || strncasecmp(hn, name.p, name.len) != 0)
            continue;
        if (found)
            buf_putc(b, ',');
        found = true;
        const char *v = req->headers[i].value ? req->headers[i].value : "";
        bool pending_space = false, any = false;
        for (; *v; v++) {
            if (is_space(*v)) {
                pending_space = any;
                continue;
            }
            if (pending_space)
                buf_putc(b, ' ');
            pending_space = false;
            any = true;
            buf_putc(b, *v);
        }
    }
    buf_putc(b, '\n');
    return found;
}

static void to_hex(const uint8_t *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static bool sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 0;
    return EVP_Digest(data ? data : "", len, out, &n, EVP_sha256(), NULL) == 1 && n == 32;
}

static bool hmac(const void *key, size_t key_len, const void *msg, size_t msg_len, uint8_t out[32])
{
    unsigned int n = 0;
    return HMAC(EVP_sha256(), key, (int)key_len, msg, msg_len, out, &n) != NULL && n == 32;
}

/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request") */
static bool signing_key(const char *secret, const parsed_auth_t *a, uint8_t out[32])
{
    size_t slen = strlen(secret);
    cleanup_free char *k0 = malloc(slen + 4);
    if (k0 == NULL)
        return false;
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret, slen);
    uint8_t k1[32], k2[32], k3[32];
    bool ok = hmac(k0, slen + 4, a->date.p, a->date.len, k1) && hmac(k1, 32, a->region.p, a->region.len, k2) &&
              hmac(k2, 32, a->service.p, a->service.len, k3) && hmac(k3, 32, TERMINATOR, strlen(TERMINATOR), out);
    OPENSSL_cleanse(k0, slen + 4);
    OPENSSL_cleanse(k1, sizeof(k1));
    OPENSSL_cleanse(k2, sizeof(k2));
    OPENSSL_cleanse(k3, sizeof(k3));
    return ok;
}

static bool is_method(const char *m)
{
    size_t n = m ? strnlen(m, 33) : 0;
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(m[i] >= 'A' && m[i] <= 'Z'))
            return false;
    return true;
}

/* ---- The verifier ------------------------------------------------------- */

int sigv4_verify(const sigv4_request_t *req, sigv4_result_t *res, hearth_error_t *err)
{
    *res = (sigv4_result_t){.status = SIGV4_INTERNAL};
    const char *service = req->service ? req->service : "lambda";
    int64_t skew = req->max_skew > 0 ? req->max_skew : SIGV4_DEFAULT_SKEW;

    if (req->n_headers > SIGV4_HEADERS_MAX)
        return fail(res, err, SIGV4_BAD_REQUEST, "Too many headers (at most %d)", SIGV4_HEADERS_MAX);
    const char *auth;
    size_t auth_len;
    int r = single_header(req, "authorization", &auth, &auth_len);
    if (r > 0)
        return fail(res, err, SIGV4_MISSING, "Missing Authentication Token");
    if (r < 0)
        return fail(res, err, SIGV4_INCOMPLETE, "Authorization header appears more than once");

    parsed_auth_t a;
    char why[512];
    const char *bad = parse_authorization(auth, &a, why, sizeof(why));
    if (bad != NULL)
        return fail(res, err, SIGV4_INCOMPLETE, "%s", bad);
    snprintf(res->access_key_id, sizeof(res->access_key_id), "%.*s", (int)a.akid.len, a.akid.p);
    snprintf(res->region, sizeof(res->region), "%.*s", (int)a.region.len, a.region.p);

    const char *date;
    size_t date_len;
    r = single_header(req, "x-amz-date", &date, &date_len);
    if (r > 0)
        return fail(res, err, SIGV4_INCOMPLETE, "Authorization header requires existence of a 'X-Amz-Date' header.");
    if (r < 0)
        return fail(res, err, SIGV4_INCOMPLETE, "X-Amz-Date header appears more than once");
    int64_t t;
    if (!parse_amz_date(date, date_len, &t))
        return fail(res, err, SIGV4_INCOMPLETE, "X-Amz-Date must be an ISO 8601 basic UTC time, YYYYMMDDTHHMMSSZ");
    res->signed_at = t;
    if (!has_name(&a, "host"))
        return fail(res, err, SIGV4_INCOMPLETE, "'Host' must be a 'SignedHeader' in the AWS Authorization.");
    if (!has_name(&a, "x-amz-date"))
        return fail(res, err, SIGV4_INCOMPLETE, "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.");

    if (memcmp(a.date.p, date, 8) != 0)
        return fail(res, err, SIGV4_INVALID,
                    "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                    "'%.8s' != '%.8s', from '%.16s'.",
                    a.date.p, date, date);
    if (!span_eq(a.service, service))
        return fail(res, err, SIGV4_INVALID, "Credential should be scoped to correct service: '%s'.", service);
    char pr[68];
    if (!span_eq(a.terminator, TERMINATOR))
        return fail(res, err, SIGV4_INVALID,
                    "Credential should be scoped with a valid terminator: 'aws4_request', not '%s'.",
                    printable(a.terminator, pr));

    char then[AMZ_DATE_LEN + 1], limit[AMZ_DATE_LEN + 1], now[AMZ_DATE_LEN + 1];
    char skew_text[32];
    if (skew % 60 == 0)
        snprintf(skew_text, sizeof(skew_text), "%lld min.", (long long)(skew / 60));
    else
        snprintf(skew_text, sizeof(skew_text), "%lld s", (long long)skew);
    /* Compare without overflow whatever now and skew the caller gives. */
    if (t < req->now && (uint64_t)req->now - (uint64_t)t > (uint64_t)skew) {
        format_amz_date(t, then);
        format_amz_date(req->now - skew, limit);
        format_amz_date(req->now, now);
        return fail(res, err, SIGV4_EXPIRED, "Signature expired: %s is now earlier than %s (%s - %s)", then, limit,
                    now, skew_text);
    }
    if (t > req->now && (uint64_t)t - (uint64_t)req->now > (uint64_t)skew) {
        format_amz_date(t, then);
        format_amz_date(req->now + skew, limit);
        format_amz_date(req->now, now);
        return fail(res, err, SIGV4_EXPIRED, "Signature not yet current: %s is still later than %s (%s + %s)", then,
                    limit, now, skew_text);
    }

    const void *owner = NULL;
    const char *secret = req->lookup ? req->lookup(req->lookup_ctx, res->access_key_id, &owner) : NULL;
    if (secret == NULL)
        return fail(res, err, SIGV4_UNKNOWN_KEY, "The security token included in the request is invalid.");
    if (strnlen(secret, SIGV4_SECRET_MAX + 1) > SIGV4_SECRET_MAX)
        return fail(res, err, SIGV4_INTERNAL, "The secret access key is over-long");

    /* The payload is always signed: see the header. */
    uint8_t body_hash[32];
    char body_hex[65];
    if (req->body_sha256 != NULL)
        memcpy(body_hash, req->body_sha256, 32);
    else if (!sha256(req->body, req->body_len, body_hash))
        return fail(res, err, SIGV4_INTERNAL, "SHA-256 of the body failed");
    to_hex(body_hash, 32, body_hex);
    const char *csum;
    size_t csum_len;
    r = single_header(req, "x-amz-content-sha256", &csum, &csum_len);
    if (r < 0)
        return fail(res, err, SIGV4_BAD_REQUEST, "x-amz-content-sha256 header appears more than once");
    if (r == 0 && ((csum_len == 16 && memcmp(csum, "UNSIGNED-PAYLOAD", 16) == 0) ||
                   (csum_len >= 10 && memcmp(csum, "STREAMING-", 10) == 0)))
        return fail(res, err, SIGV4_BAD_REQUEST, "Unsigned and streaming payloads are not accepted: sign the body");
    if (r == 0 && (csum_len != 64 || memcmp(csum, body_hex, 64) != 0))
        return fail(res, err, SIGV4_BAD_REQUEST,
                    "The provided 'x-amz-content-sha256' header does not match what was computed.");

    if (!is_method(req->method))
        return fail(res, err, SIGV4_BAD_REQUEST, "Malformed request method");
    if (req->path != NULL && strnlen(req->path, SIGV4_PATH_MAX + 1) > SIGV4_PATH_MAX)
        return fail(res, err, SIGV4_BAD_REQUEST, "Request path is too long (at most %d bytes)", SIGV4_PATH_MAX);
    if (req->query != NULL && strnlen(req->query, SIGV4_QUERY_MAX + 1) > SIGV4_QUERY_MAX)
        return fail(res, err, SIGV4_BAD_REQUEST, "Query string is too long (at most %d bytes)", SIGV4_QUERY_MAX);

    __attribute__((cleanup(buf_release))) buf_t cr = {.max = SIGV4_CANONICAL_MAX};
    buf_puts(&cr, req->method);
    buf_putc(&cr, '\n');
    put_canonical_uri(&cr, req->path);
    buf_putc(&cr, '\n');
    bool ok = put_canonical_query(&cr, req->query);
    buf_putc(&cr, '\n');
    span_t missing = {NULL, 0};
    for (size_t i = 0; i < a.n_names; i++)
        if (!put_canonical_header(&cr, req, a.names[i]) && missing.p == NULL)
            missing = a.names[i];
    buf_putc(&cr, '\n');
    buf_put(&cr, a.signed_headers.p, a.signed_headers.len);
    buf_putc(&cr, '\n');
    buf_put(&cr, body_hex, 64);
    if (!ok || cr.oom)
        return fail(res, err, SIGV4_INTERNAL, "Out of memory building the canonical request");
    if (cr.too_big)
        return fail(res, err, SIGV4_BAD_REQUEST, "Request is too large to verify (canonical request over %d bytes)",
                    SIGV4_CANONICAL_MAX);
    if (missing.p != NULL)
        return fail(res, err, SIGV4_INVALID, "Signed header '%s' is not in the request", printable(missing, pr));

    /* StringToSign = algorithm \n amz-date \n scope \n hex(SHA-256(canonical request)) */
    uint8_t cr_hash[32];
    char cr_hex[65];
    if (!sha256(cr.p, cr.len, cr_hash))
        return fail(res, err, SIGV4_INTERNAL, "SHA-256 of the canonical request failed");
    to_hex(cr_hash, 32, cr_hex);
    char sts[512];
    int sts_len = snprintf(sts, sizeof(sts), ALGORITHM "\n%.16s\n%.8s/%.*s/%.*s/" TERMINATOR "\n%s", date, a.date.p,
                           (int)a.region.len, a.region.p, (int)a.service.len, a.service.p, cr_hex);
    if (sts_len < 0 || (size_t)sts_len >= sizeof(sts))
        return fail(res, err, SIGV4_INTERNAL, "String to sign does not fit");

    uint8_t key[32], mac[32];
    bool signed_ok = signing_key(secret, &a, key) && hmac(key, 32, sts, (size_t)sts_len, mac);
    OPENSSL_cleanse(key, sizeof(key));
    if (!signed_ok)
        return fail(res, err, SIGV4_INTERNAL, "HMAC-SHA256 failed");
    int differ = CRYPTO_memcmp(mac, a.signature, 32);
    OPENSSL_cleanse(mac, sizeof(mac));
    if (differ)
        return fail(res, err, SIGV4_INVALID,
                    "The request signature we calculated does not match the signature you provided. Check your AWS "
                    "Secret Access Key and signing method. Consult the service documentation for details.");
    res->status = SIGV4_OK;
    res->owner = owner;
    return 0;
}

int sigv4_status_http(sigv4_status_t s)
{
    switch (s) {
    case SIGV4_OK:
        return 200;
    case SIGV4_MISSING:
    case SIGV4_INCOMPLETE:
    case SIGV4_UNKNOWN_KEY:
    case SIGV4_EXPIRED:
    case SIGV4_INVALID:
        return 403;
    case SIGV4_BAD_REQUEST:
        return 400;
    case SIGV4_INTERNAL:
        break;
    }
    return 500;
}

const char *sigv4_status_type(sigv4_status_t s)
{
    switch (s) {
    case SIGV4_OK:
        return "";
    case SIGV4_MISSING:
        return "MissingAuthenticationTokenException";
    case SIGV4_INCOMPLETE:
        return "IncompleteSignatureException";
    case SIGV4_UNKNOWN_KEY:
        return "UnrecognizedClientException";
    case SIGV4_EXPIRED:
    case SIGV4_INVALID:
        return "InvalidSignatureException";
    case SIGV4_BAD_REQUEST:
        return "ValidationException";
    case SIGV4_INTERNAL:
        break;
    }
    return "ServiceException";
}
