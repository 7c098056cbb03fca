/* Config and function specs. Each JSON object is read against a table of
 * its known keys (type, bounds, default), so the unknown-key check, the
 * defaults and the messages come from one place; the few keys whose shape
 * is not a scalar (command, mounts, env, tenants...) have their own
 * readers. */
#include "config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_BUF 256      /* JSON paths in messages; keys are truncated to fit */
#define MAX_TENANTS 1024
#define MAX_TOKENS 64     /* per tenant */
#define MAX_UIDS 256      /* per tenant */
#define MAX_AWS_KEYS 16   /* per tenant */
#define MAX_ARGV 256
#define MAX_ARG_LEN 4096
#define MAX_MOUNTS 32
#define MAX_ENV 256
#define MAX_ENV_VALUE 32768
#define MAX_ENV_TOTAL (128u << 10)
#define MAX_FUNCTION_FILES 10000
#define MAX_ALLOWED_DIRS 64 /* entries of mount_sources, rootfs_dirs */

/* Refusals of input carry EINVAL without a strerror suffix. */
#define invalid(err, ...) hearth_error_tag(err, EINVAL, __VA_ARGS__)

static int nomem(hearth_error_t *err)
{
    return hearth_error_set(err, ENOMEM, "out of memory");
}

/* A key as it may appear in a message: printable ASCII only, bounded. */
static void printable_key(char *buf, size_t cap, const char *key)
{
    size_t j = 0;
    for (const unsigned char *p = (const unsigned char *)key; *p && j + 1 < cap; p++)
        buf[j++] = (*p >= 0x20 && *p < 0x7f) ? (char)*p : '?';
    if (*key && strlen(key) >= cap - 1 && cap > 4)
        memcpy(buf + cap - 4, "...", 3), j = cap - 1;
    buf[j] = '\0';
}

static void path_key(char *buf, const char *parent, const char *key)
{
    char k[80];
    printable_key(k, sizeof(k), key);
    if (parent[0] == '\0')
        snprintf(buf, PATH_BUF, "%s", k);
    else
        if (snprintf(buf, PATH_BUF, "%s.%s", parent, k) >= PATH_BUF)
            buf[PATH_BUF - 1] = '\0';
}

static void path_index(char *buf, const char *parent, size_t i)
{
    /* Paths are bounded by the nesting of the schema: never truncated in
     * practice, and a truncated message would still be safe. */
    if (snprintf(buf, PATH_BUF, "%s[%zu]", parent, i) >= PATH_BUF)
        buf[PATH_BUF - 1] = '\0';
}

/* ---- string checks: return NULL when fine, else the reason ---- */

typedef const char *(*str_check_fn)(const char *s);

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CFG_NAME_MAX)
        return false;
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
        return false;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static const char *check_name(const char *s)
{
    return name_ok(s) ? NULL : "must match [a-z0-9][a-z0-9_-]{0,62}";
}

/* Absolute, bounded, without "." or ".." components: paths that mean what
 * they say, so that what we log and check is what the kernel resolves. */
static bool abs_path_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CFG_PATH_MAX || s[0] != '/')
        return false;
    for (const char *p = s; *p;) {
        while (*p == '/')
            p++;
        const char *e = strchrnul(p, '/');
        size_t len = (size_t)(e - p);
        if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        for (const char *q = p; q < e; q++)
            if ((unsigned char)*q < 0x20)
                return false;
        p = e;
    }
    return true;
}

static const char *check_abs_path(const char *s)
{
    return abs_path_ok(s) ? NULL
                          : "must be an absolute path of at most 4095 bytes without . or .. components";
}

/* Relative to the daemon's working directory is allowed here (the example
 * config says configs/functions for `make run`). */
static const char *check_path_or_empty(const char *s)
{
    size_t n = strlen(s);
    if (n > CFG_PATH_MAX)
        return "must be a path of at most 4095 bytes";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20)
            return "must not contain control characters";
    return NULL;
}

static const char *check_dir_path(const char *s)
{
    if (s[0] == '\0')
        return "must not be empty";
    return check_path_or_empty(s);
}

static const char *check_unix_path(const char *s)
{
    if (s[0] == '\0')
        return NULL;
    /* sun_path holds 108 bytes including the NUL. */
    if (strlen(s) > 107 || !abs_path_ok(s))
        return "must be empty or an absolute path of at most 107 bytes";
    return NULL;
}

static const char *check_cgroup_root(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 255 || s[0] == '/' || s[n - 1] == '/')
        return "must be a relative cgroup path of 1 to 255 bytes of [A-Za-z0-9_.-/]";
    for (const char *p = s; *p;) {
        const char *e = strchrnul(p, '/');
        size_t len = (size_t)(e - p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return "must not contain empty, . or .. components";
        for (const char *q = p; q < e; q++) {
            char c = *q;
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '.'))
                return "must be a relative cgroup path of 1 to 255 bytes of [A-Za-z0-9_.-/]";
        }
        p = *e ? e + 1 : e;
    }
    return NULL;
}

static const char *check_seccomp(const char *s)
{
    if (strcmp(s, "default") == 0 || abs_path_ok(s))
        return NULL;
    return "must be \"default\" or an absolute path to a profile";
}

static const char *check_log_level(const char *s)
{
    if (strcmp(s, "debug") == 0 || strcmp(s, "info") == 0 || strcmp(s, "warn") == 0 ||
        strcmp(s, "error") == 0)
        return NULL;
    return "must be one of debug, info, warn, error";
}

static const char *check_protocol(const char *s)
{
    if (strcmp(s, "stdio") == 0 || strcmp(s, "lambda") == 0 || strcmp(s, "http") == 0)
        return NULL;
    return "must be one of stdio, lambda, http";
}

/* "host:port" or "[v6]:port"; host an IP literal or a DNS name. Splitting
 * is done again in listen_split() once the value is known to be sound. */
static bool split_listen(const char *s, char *host, size_t hostcap, uint16_t *port)
{
    const char *colon;
    const char *h;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return false;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return false;
        h = s;
        hlen = (size_t)(colon - s);
        if (memchr(h, ':', hlen) != NULL)
            return false; /* bare IPv6 needs brackets */
    }
    if (hlen == 0 || hlen >= hostcap || hlen > 253)
        return false;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    const char *ps = colon + 1;
    size_t plen = strlen(ps);
    if (plen == 0 || plen > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < plen; i++) {
        if (ps[i] < '0' || ps[i] > '9')
            return false;
        v = v * 10 + (unsigned)(ps[i] - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *port = (uint16_t)v;
    unsigned char addr[16];
    if (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1)
        return true;
    if (s[0] == '[')
        return false;
    for (const char *p = host; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '.'))
            return false;
    return true;
}

static const char *check_listen_http(const char *s)
{
    char host[256];
    uint16_t port;
    if (s[0] == '\0' || split_listen(s, host, sizeof(host), &port))
        return NULL;
    return "must be empty or host:port (IPv6 as [addr]:port) with a port from 1 to 65535";
}

/* ---- the table reader ---- */

typedef enum { F_STR, F_U32, F_U64, F_DBL, F_BOOL, F_SKIP } ftype_t;

typedef struct field {
    const char *key;
    ftype_t type;
    size_t off;          /* offset of the struct member */
    uint64_t min, max;   /* integers */
    double dmin, dmax;   /* reals */
    const char *dstr;    /* default of a string; NULL: none (NULL member) */
    uint64_t dint;       /* default of an integer or a bool */
    double ddbl;         /* default of a real */
    str_check_fn check;  /* strings */
    bool required;
} field_t;

#define END_FIELDS {NULL, F_SKIP, 0, 0, 0, 0, 0, NULL, 0, 0, NULL, false}

static const field_t *find_field(const field_t *t, const char *key)
{
    for (; t->key != NULL; t++)
        if (strcmp(t->key, key) == 0)
            return t;
    return NULL;
}

/* Set every default, so that a missing key reads like an explicit one. */
static int apply_defaults(const field_t *t, void *obj, hearth_error_t *err)
{
    char *base = obj;
    for (; t->key != NULL; t++) {
        void *m = base + t->off;
        switch (t->type) {
        case F_STR:
            if (t->dstr != NULL && (*(char **)m = strdup(t->dstr)) == NULL)
                return nomem(err);
            break;
        case F_U32: *(uint32_t *)m = (uint32_t)t->dint; break;
        case F_U64: *(uint64_t *)m = t->dint; break;
        case F_DBL: *(double *)m = t->ddbl; break;
        case F_BOOL: *(bool *)m = t->dint != 0; break;
        case F_SKIP: break;
        }
    }
    return 0;
}

/* A JSON string without NUL bytes (jansson refuses \u0000 unless asked to,
 * but values may also come from json_t built elsewhere). */
static const char *plain_string(json_t *v)
{
    if (!json_is_string(v))
        return NULL;
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v))
        return NULL;
    return s;
}

static int read_field(const field_t *f, json_t *v, const char *path, void *obj, hearth_error_t *err)
{
    void *m = (char *)obj + f->off;
    switch (f->type) {
    case F_STR: {
        const char *s = plain_string(v);
        if (s == NULL)
            return invalid(err, "%s: must be a string", path);
        const char *why = f->check ? f->check(s) : NULL;
        if (why != NULL)
            return invalid(err, "%s: %s", path, why);
        char *dup = strdup(s);
        if (dup == NULL)
            return nomem(err);
        free(*(char **)m);
        *(char **)m = dup;
        return 0;
    }
    case F_U32:
    case F_U64: {
        json_int_t n;
        if (!json_is_integer(v) || (n = json_integer_value(v)) < 0 || (uint64_t)n < f->min ||
            (uint64_t)n > f->max)
            return invalid(err, "%s: must be an integer from %llu to %llu", path,
                           (unsigned long long)f->min, (unsigned long long)f->max);
        if (f->type == F_U32)
            *(uint32_t *)m = (uint32_t)n;
        else
            *(uint64_t *)m = (uint64_t)n;
        return 0;
    }
    case F_DBL: {
        double d;
        if (!json_is_number(v) || !((d = json_number_value(v)) >= f->dmin && d <= f->dmax))
            return invalid(err, "%s: must be a number from %g to %g", path, f->dmin, f->dmax);
        *(double *)m = d;
        return 0;
    }
    case F_BOOL:
        if (!json_is_boolean(v))
            return invalid(err, "%s: must be true or false", path);
        *(bool *)m = json_is_true(v);
        return 0;
    case F_SKIP:
        return 0; /* read by a dedicated reader */
    }
    return 0;
}

/* Read every key of obj against table t. Keys of type F_SKIP are left for
 * the caller. */
static int read_object(const field_t *t, json_t *o, const char *path, void *obj, hearth_error_t *err)
{
    char kp[PATH_BUF];
    if (!json_is_object(o))
        return invalid(err, "%s: must be a JSON object", path[0] ? path : "(root)");
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        path_key(kp, path, key);
        const field_t *f = find_field(t, key);
        if (f == NULL)
            return invalid(err, "%s: unknown key", kp);
        if (read_field(f, v, kp, obj, err) < 0)
            return -1;
    }
    for (const field_t *f = t; f->key != NULL; f++) {
        if (f->required && json_object_get(o, f->key) == NULL) {
            path_key(kp, path, f->key);
            return invalid(err, "%s: required", kp);
        }
    }
    return 0;
}

static json_t *load_json(const char *text, size_t len, size_t cap, hearth_error_t *err)
{
    if (len > cap)
        return invalid(err, "document of %zu bytes is larger than the limit of %zu", len, cap), NULL;
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL)
        invalid(err, "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
    return root;
}

/* ---- daemon config ---- */

#define D(m) offsetof(cfg_daemon_t, m)
static const field_t daemon_fields[] = {
    {"listen_unix", F_STR, D(listen_unix), 0, 0, 0, 0, "/run/hearth/hearth.sock", 0, 0, check_unix_path, false},
    {"listen_http", F_STR, D(listen_http), 0, 0, 0, 0, "", 0, 0, check_listen_http, false},
    {"state_dir", F_STR, D(state_dir), 0, 0, 0, 0, "/var/lib/hearth", 0, 0, check_dir_path, false},
    {"functions_dir", F_STR, D(functions_dir), 0, 0, 0, 0, "", 0, 0, check_path_or_empty, false},
    {"cgroup_root", F_STR, D(cgroup_root), 0, 0, 0, 0, "hearth", 0, 0, check_cgroup_root, false},
    {"max_sandboxes", F_U32, D(max_sandboxes), 1, 65536, 0, 0, NULL, 256, 0, NULL, false},
    {"memory_budget_mb", F_U64, D(memory_budget_mb), 64, 1ull << 24, 0, 0, NULL, 8192, 0, NULL, false},
    {"max_body_bytes", F_U64, D(max_body_bytes), 1, 1ull << 30, 0, 0, NULL, 6291456, 0, NULL, false},
    {"max_header_bytes", F_U32, D(max_header_bytes), 1024, 1u << 20, 0, 0, NULL, 16384, 0, NULL, false},
    {"max_connections", F_U32, D(max_connections), 1, 1000000, 0, 0, NULL, 1024, 0, NULL, false},
    {"read_timeout_ms", F_U32, D(read_timeout_ms), 100, 3600000, 0, 0, NULL, 30000, 0, NULL, false},
    {"write_timeout_ms", F_U32, D(write_timeout_ms), 100, 3600000, 0, 0, NULL, 30000, 0, NULL, false},
    {"drain_timeout_ms", F_U32, D(drain_timeout_ms), 0, 3600000, 0, 0, NULL, 30000, 0, NULL, false},
    {"uid_base", F_U32, D(uid_base), 1000, 4294967294u, 0, 0, NULL, 100000, 0, NULL, false},
    {"uid_count", F_U32, D(uid_count), 1, 1u << 24, 0, 0, NULL, 65536, 0, NULL, false},
    {"prewarm_pool", F_U32, D(prewarm_pool), 0, 1024, 0, 0, NULL, 16, 0, NULL, false},
    {"result_ttl_s", F_U32, D(result_ttl_s), 60, 31536000, 0, 0, NULL, 86400, 0, NULL, false},
    {"log_level", F_SKIP, 0, 0, 0, 0, 0, NULL, 0, 0, NULL, false},
    {"tenants", F_SKIP, 0, 0, 0, 0, 0, NULL, 0, 0, NULL, true},
    {"mount_sources", F_SKIP, 0, 0, 0, 0, 0, NULL, 0, 0, NULL, false},
    {"rootfs_dirs", F_SKIP, 0, 0, 0, 0, 0, NULL, 0, 0, NULL, false},
    {"seccomp_dirs", F_SKIP, 0, 0, 0, 0, 0, NULL, 0, 0, NULL, false},
    END_FIELDS,
};
#undef D

#define T(m) offsetof(cfg_tenant_t, m)
static const field_t tenant_fields[] = {
    {"name", F_STR, T(name), 0, 0, 0, 0, NULL, 0, 0, check_name, true},
    {"tokens_sha256", F_SKIP, 0, 0, 0, 0, 0, NULL, 0, 0, NULL, false},
    {"uids", F_SKIP, 0, 0, 0, 0, 0, NULL, 0, 0, NULL, false},
    {"admin", F_BOOL, T(admin), 0, 0, 0, 0, NULL, 0, 0, NULL, false},
    {"max_concurrency", F_U32, T(max_concurrency), 1, 100000, 0, 0, NULL, 100, 0, NULL, false},
    {"weight", F_U32, T(weight), 1, 1000, 0, 0, NULL, 1, 0, NULL, false},
    {"cpu_ms_per_minute", F_U64, T(cpu_ms_per_minute), 0, 60000ull * 1024, 0, 0, NULL, 0, 0, NULL, false},
    {"aws_keys", F_SKIP, 0, 0, 0, 0, 0, NULL, 0, 0, NULL, false},
    END_FIELDS,
};
#undef T

#define K(m) offsetof(cfg_aws_key_t, m)
static const char *check_access_key_id(const char *s)
{
    size_t n = strlen(s);
    if (n < 16 || n > 128)
        return "must be 16 to 128 characters of [A-Z0-9]";
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
            return "must be 16 to 128 characters of [A-Z0-9]";
    return NULL;
}

static const char *check_secret(const char *s)
{
    size_t n = strlen(s);
    if (n < 16 || n > 128)
        return "must be 16 to 128 printable ASCII characters without spaces";
    for (size_t i = 0; i < n; i++)
        if (s[i] <= 0x20 || s[i] >= 0x7f)
            return "must be 16 to 128 printable ASCII characters without spaces";
    return NULL;
}

static const field_t aws_key_fields[] = {
    {"access_key_id", F_STR, K(access_key_id), 0, 0, 0, 0, NULL, 0, 0, check_access_key_id, true},
    {"secret_access_key", F_STR, K(secret_access_key), 0, 0, 0, 0, NULL, 0, 0, check_secret, true},
    END_FIELDS,
};
#undef K

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int read_array(json_t *v, const char *path, size_t max, const char *what, hearth_error_t *err)
{
    if (!json_is_array(v) || json_array_size(v) > max)
        return invalid(err, "%s: must be an array of at most %zu %s", path, max, what);
    return 0;
}

void cfg_tenant_clear(cfg_tenant_t *t)
{
    free(t->name);
    free(t->tokens_sha256);
    free(t->uids);
    for (size_t i = 0; i < t->n_aws_keys; i++) {
        free(t->aws_keys[i].access_key_id);
        if (t->aws_keys[i].secret_access_key != NULL)
            explicit_bzero(t->aws_keys[i].secret_access_key, strlen(t->aws_keys[i].secret_access_key));
        free(t->aws_keys[i].secret_access_key);
    }
    free(t->aws_keys);
    memset(t, 0, sizeof(*t));
}

static int read_tenant(json_t *o, const char *path, cfg_tenant_t *t, hearth_error_t *err)
{
    char kp[PATH_BUF], ip[PATH_BUF];
    if (apply_defaults(tenant_fields, t, err) < 0 || read_object(tenant_fields, o, path, t, err) < 0)
        return -1;

    json_t *a = json_object_get(o, "tokens_sha256");
    if (a != NULL) {
        path_key(kp, path, "tokens_sha256");
        if (read_array(a, kp, MAX_TOKENS, "hex SHA-256 strings", err) < 0)
            return -1;
        t->tokens_sha256 = calloc(json_array_size(a) + 1, 32);
        if (t->tokens_sha256 == NULL)
            return nomem(err);
        size_t i;
        json_t *h;
        json_array_foreach(a, i, h) {
            path_index(ip, kp, i);
            const char *s = plain_string(h);
            if (s == NULL || strlen(s) != 64)
                return invalid(err, "%s: must be 64 hex digits (the SHA-256 of the token)", ip);
            for (size_t j = 0; j < 32; j++) {
                int hi = hexval(s[2 * j]), lo = hexval(s[2 * j + 1]);
                if (hi < 0 || lo < 0)
                    return invalid(err, "%s: must be 64 hex digits (the SHA-256 of the token)", ip);
                t->tokens_sha256[i][j] = (uint8_t)(hi << 4 | lo);
            }
            for (size_t j = 0; j < i; j++)
                if (memcmp(t->tokens_sha256[j], t->tokens_sha256[i], 32) == 0)
                    return invalid(err, "%s: duplicate token hash", ip);
            t->n_tokens = i + 1;
        }
    }

    a = json_object_get(o, "uids");
    if (a != NULL) {
        path_key(kp, path, "uids");
        if (read_array(a, kp, MAX_UIDS, "uids", err) < 0)
            return -1;
        t->uids = calloc(json_array_size(a) + 1, sizeof(uid_t));
        if (t->uids == NULL)
            return nomem(err);
        size_t i;
        json_t *u;
        json_array_foreach(a, i, u) {
            path_index(ip, kp, i);
            json_int_t n;
            /* (uid_t)-1 means "no change" to the kernel: never a real uid. */
            if (!json_is_integer(u) || (n = json_integer_value(u)) < 0 || n > 4294967294LL)
                return invalid(err, "%s: must be an integer from 0 to 4294967294", ip);
            for (size_t j = 0; j < i; j++)
                if (t->uids[j] == (uid_t)n)
                    return invalid(err, "%s: duplicate uid", ip);
            t->uids[i] = (uid_t)n;
            t->n_uids = i + 1;
        }
    }

    a = json_object_get(o, "aws_keys");
    if (a != NULL) {
        path_key(kp, path, "aws_keys");
        if (read_array(a, kp, MAX_AWS_KEYS, "keys", err) < 0)
            return -1;
        t->aws_keys = calloc(json_array_size(a) + 1, sizeof(cfg_aws_key_t));
        if (t->aws_keys == NULL)
            return nomem(err);
        size_t i;
        json_t *k;
        json_array_foreach(a, i, k) {
            path_index(ip, kp, i);
            t->n_aws_keys = i + 1;
            if (read_object(aws_key_fields, k, ip, &t->aws_keys[i], err) < 0)
                return -1;
        }
    }
    return 0;
}

static int read_tenants(json_t *a, cfg_daemon_t *cfg, hearth_error_t *err)
{
    char ip[PATH_BUF];
    if (!json_is_array(a) || json_array_size(a) == 0 || json_array_size(a) > MAX_TENANTS)
        return invalid(err, "tenants: must be an array of 1 to %d tenants", MAX_TENANTS);
    cfg->tenants = calloc(json_array_size(a), sizeof(cfg_tenant_t));
    if (cfg->tenants == NULL)
        return nomem(err);
    size_t i;
    json_t *o;
    json_array_foreach(a, i, o) {
        path_index(ip, "tenants", i);
        cfg->n_tenants = i + 1;
        cfg_tenant_t *t = &cfg->tenants[i];
        if (read_tenant(o, ip, t, err) < 0)
            return -1;
        /* Credentials must name one tenant each, or who is calling would
         * depend on the order of the list. Quadratic, but bounded and
         * run once per (re)load. */
        for (size_t j = 0; j < i; j++) {
            const cfg_tenant_t *p = &cfg->tenants[j];
            if (strcmp(p->name, t->name) == 0)
                return invalid(err, "%s.name: duplicate tenant `%s`", ip, t->name);
            for (size_t x = 0; x < t->n_tokens; x++)
                for (size_t y = 0; y < p->n_tokens; y++)
                    if (memcmp(t->tokens_sha256[x], p->tokens_sha256[y], 32) == 0)
                        return invalid(err, "%s.tokens_sha256[%zu]: also a token of tenant `%s`", ip,
                                       x, p->name);
            for (size_t x = 0; x < t->n_uids; x++)
                for (size_t y = 0; y < p->n_uids; y++)
                    if (t->uids[x] == p->uids[y])
                        return invalid(err, "%s.uids[%zu]: uid %u also belongs to tenant `%s`", ip, x,
                                       (unsigned)t->uids[x], p->name);
            for (size_t x = 0; x < t->n_aws_keys; x++)
                for (size_t y = 0; y < p->n_aws_keys; y++)
                    if (strcmp(t->aws_keys[x].access_key_id, p->aws_keys[y].access_key_id) == 0)
                        return invalid(err, "%s.aws_keys[%zu].access_key_id: also a key of tenant `%s`",
                                       ip, x, p->name);
        }
        for (size_t x = 0; x < t->n_aws_keys; x++)
            for (size_t y = 0; y < x; y++)
                if (strcmp(t->aws_keys[x].access_key_id, t->aws_keys[y].access_key_id) == 0)
                    return invalid(err, "%s.aws_keys[%zu].access_key_id: duplicate key", ip, x);
    }
    return 0;
}

/* An operator's list of absolute directories (mount_sources, rootfs_dirs). */
static int read_dir_list(json_t *a, const char *key, char ***out, size_t *n, hearth_error_t *err)
{
    char ip[PATH_BUF];
    if (a == NULL)
        return 0;
    if (read_array(a, key, MAX_ALLOWED_DIRS, "absolute paths", err) < 0)
        return -1;
    if ((*out = calloc(json_array_size(a) + 1, sizeof(char *))) == NULL)
        return nomem(err);
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) {
        path_index(ip, key, i);
        const char *s = plain_string(v);
        const char *why = s ? check_abs_path(s) : "must be a string";
        if (why != NULL)
            return invalid(err, "%s: %s", ip, why);
        if (((*out)[i] = strdup(s)) == NULL)
            return nomem(err);
        *n = i + 1;
    }
    return 0;
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void cfg_daemon_free(cfg_daemon_t *cfg)
{
    if (cfg == NULL)
        return;
    free_strings(cfg->mount_sources, cfg->n_mount_sources);
    free_strings(cfg->rootfs_dirs, cfg->n_rootfs_dirs);
    free_strings(cfg->seccomp_dirs, cfg->n_seccomp_dirs);
    free(cfg->listen_unix);
    free(cfg->listen_http);
    free(cfg->http_host);
    free(cfg->state_dir);
    free(cfg->functions_dir);
    free(cfg->cgroup_root);
    for (size_t i = 0; i < cfg->n_tenants; i++)
        cfg_tenant_clear(&cfg->tenants[i]);
    free(cfg->tenants);
    free(cfg);
}

static void daemon_freep(cfg_daemon_t **p)
{
    cfg_daemon_free(*p);
}


int cfg_daemon_parse(const char *json, size_t len, cfg_daemon_t **out, hearth_error_t *err)
{
    json_auto_t *root = load_json(json, len, CFG_CONFIG_MAX_BYTES, err);
    if (root == NULL)
        return -1;
    __attribute__((cleanup(daemon_freep))) cfg_daemon_t *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        return nomem(err);
    cfg->log_level = HEARTH_LOG_INFO;
    if (apply_defaults(daemon_fields, cfg, err) < 0 || read_object(daemon_fields, root, "", cfg, err) < 0)
        return -1;

    json_t *v = json_object_get(root, "log_level");
    if (v != NULL) {
        const char *s = plain_string(v);
        if (s == NULL || check_log_level(s) != NULL)
            return invalid(err, "log_level: must be one of debug, info, warn, error");
        static const char *names[] = {"debug", "info", "warn", "error"};
        for (int i = 0; i < 4; i++)
            if (strcmp(s, names[i]) == 0)
                cfg->log_level = (hearth_log_level_t)i;
    }
    if (read_tenants(json_object_get(root, "tenants"), cfg, err) < 0 ||
        read_dir_list(json_object_get(root, "mount_sources"), "mount_sources", &cfg->mount_sources,
                      &cfg->n_mount_sources, err) < 0 ||
        read_dir_list(json_object_get(root, "rootfs_dirs"), "rootfs_dirs", &cfg->rootfs_dirs, &cfg->n_rootfs_dirs,
                      err) < 0 ||
        read_dir_list(json_object_get(root, "seccomp_dirs"), "seccomp_dirs", &cfg->seccomp_dirs,
                      &cfg->n_seccomp_dirs, err) < 0)
        return -1;

    if (cfg->listen_unix[0] == '\0' && cfg->listen_http[0] == '\0')
        return invalid(err, "listen_unix: must not be empty when listen_http is empty too");
    if (cfg->listen_http[0] != '\0') {
        char host[256];
        if (!split_listen(cfg->listen_http, host, sizeof(host), &cfg->http_port))
            return invalid(err, "listen_http: must be host:port");
        if ((cfg->http_host = strdup(host)) == NULL)
            return nomem(err);
    }
    if ((uint64_t)cfg->uid_base + cfg->uid_count > 4294967295ull)
        return invalid(err, "uid_count: uid_base + uid_count must not exceed 4294967295");
    *out = steal_pointer(&cfg);
    return 0;
}

int cfg_daemon_load(const char *path, cfg_daemon_t **out, hearth_error_t *err)
{
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return hearth_error_sys(err, "open config %s", path);
    cleanup_free char *buf = malloc(CFG_CONFIG_MAX_BYTES + 1);
    if (buf == NULL)
        return nomem(err);
    ssize_t n = read_all(fd, buf, CFG_CONFIG_MAX_BYTES + 1);
    if (n < 0)
        return hearth_error_sys(err, "read config %s", path);
    if (cfg_daemon_parse(buf, (size_t)n, out, err) < 0)
        return hearth_error_wrap(err, "config %s", path);
    return 0;
}

const cfg_tenant_t *cfg_daemon_tenant(const cfg_daemon_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_tenants; i++)
        if (strcmp(cfg->tenants[i].name, name) == 0)
            return &cfg->tenants[i];
    return NULL;
}

/* ---- function specs ---- */

#define FN(m) offsetof(cfg_function_t, m)
static const field_t function_fields[] = {
    {"name", F_STR, FN(name), 0, 0, 0, 0, NULL, 0, 0, check_name, true},
    {"tenant", F_STR, FN(tenant), 0, 0, 0, 0, NULL, 0, 0, check_name, false},
    {"protocol", F_SKIP, 0, 0, 0, 0, 0, NULL, 0, 0, NULL, false},
    {"command", F_SKIP, 0, 0, 0, 0, 0, NULL, 0, 0, NULL, true},
    {"rootfs", F_STR, FN(rootfs), 0, 0, 0, 0, "/", 0, 0, check_abs_path, false},
    {"mounts", F_SKIP, 0, 0, 0, 0, 0, NULL, 0, 0, NULL, false},
    {"env", F_SKIP, 0, 0, 0, 0, 0, NULL, 0, 0, NULL, false},
    {"memory_mb", F_U32, FN(memory_mb), 16, 65536, 0, 0, NULL, 128, 0, NULL, false},
    {"cpus", F_DBL, FN(cpus), 0, 0, 0.01, 1024, NULL, 0, 1.0, NULL, false},
    {"pids", F_U32, FN(pids), 2, 65536, 0, 0, NULL, 64, 0, NULL, false},
    {"timeout_ms", F_U32, FN(timeout_ms), 1, 3600000, 0, 0, NULL, 30000, 0, NULL, false},
    {"tmp_mb", F_U32, FN(tmp_mb), 1, 65536, 0, 0, NULL, 64, 0, NULL, false},
    {"concurrency", F_U32, FN(concurrency), 1, 1000, 0, 0, NULL, 1, 0, NULL, false},
    {"min_warm", F_U32, FN(min_warm), 0, 10000, 0, 0, NULL, 0, 0, NULL, false},
    {"max_sandboxes", F_U32, FN(max_sandboxes), 1, 10000, 0, 0, NULL, 10, 0, NULL, false},
    {"keep_alive_ms", F_U32, FN(keep_alive_ms), 0, 86400000, 0, 0, NULL, 60000, 0, NULL, false},
    {"seccomp", F_STR, FN(seccomp), 0, 0, 0, 0, "default", 0, 0, check_seccomp, false},
    {"max_attempts", F_U32, FN(max_attempts), 1, 100, 0, 0, NULL, 3, 0, NULL, false},
    END_FIELDS,
};
#undef FN

static const field_t mount_fields[] = {
    {"source", F_STR, offsetof(cfg_mount_t, source), 0, 0, 0, 0, NULL, 0, 0, check_abs_path, true},
    {"target", F_STR, offsetof(cfg_mount_t, target), 0, 0, 0, 0, NULL, 0, 0, check_abs_path, true},
    {"readonly", F_BOOL, offsetof(cfg_mount_t, readonly), 0, 0, 0, 0, NULL, 1, 0, NULL, false},
    END_FIELDS,
};

void cfg_function_free(cfg_function_t *fn)
{
    if (fn == NULL)
        return;
    free(fn->name);
    free(fn->tenant);
    for (size_t i = 0; i < fn->n_command; i++)
        free(fn->command[i]);
    free(fn->command);
    free(fn->rootfs);
    for (size_t i = 0; i < fn->n_mounts; i++) {
        free(fn->mounts[i].source);
        free(fn->mounts[i].target);
    }
    free(fn->mounts);
    for (size_t i = 0; i < fn->n_env; i++) {
        free(fn->env[i].name);
        free(fn->env[i].value);
    }
    free(fn->env);
    free(fn->seccomp);
    free(fn);
}

static void function_freep(cfg_function_t **p)
{
    cfg_function_free(*p);
}
#define cleanup_function __attribute__((cleanup(function_freep)))

static int read_command(json_t *a, cfg_function_t *fn, hearth_error_t *err)
{
    if (!json_is_array(a) || json_array_size(a) == 0 || json_array_size(a) > MAX_ARGV)
        return invalid(err, "command: must be a non-empty array of strings (at most %d)", MAX_ARGV);
    fn->command = calloc(json_array_size(a) + 1, sizeof(char *));
    if (fn->command == NULL)
        return nomem(err);
    size_t i;
    json_t *s;
    json_array_foreach(a, i, s) {
        const char *v = plain_string(s);
        if (v == NULL || strlen(v) > MAX_ARG_LEN || (i == 0 && v[0] == '\0'))
            return invalid(err, "command[%zu]: must be a%s string of at most %d bytes", i,
                           i == 0 ? " non-empty" : "", MAX_ARG_LEN);
        if ((fn->command[i] = strdup(v)) == NULL)
            return nomem(err);
        fn->n_command = i + 1;
    }
    return 0;
}

/* Targets the sandbox builds itself; a bind mount there would hide or be
 * hidden by them. */
static bool reserved_target(const char *t)
{
    static const char *const reserved[] = {"/proc", "/sys", "/dev"};
    if (strspn(t, "/") == strlen(t))
        return true;
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
        size_t n = strlen(reserved[i]);
        if (strncmp(t, reserved[i], n) == 0 && (t[n] == '\0' || t[n] == '/'))
            return true;
    }
    return false;
}

static int read_mounts(json_t *a, cfg_function_t *fn, hearth_error_t *err)
{
    char ip[PATH_BUF];
    if (read_array(a, "mounts", MAX_MOUNTS, "mounts", err) < 0)
        return -1;
    fn->mounts = calloc(json_array_size(a) + 1, sizeof(cfg_mount_t));
    if (fn->mounts == NULL)
        return nomem(err);
    size_t i;
    json_t *o;
    json_array_foreach(a, i, o) {
        path_index(ip, "mounts", i);
        cfg_mount_t *m = &fn->mounts[i];
        fn->n_mounts = i + 1;
        if (apply_defaults(mount_fields, m, err) < 0 || read_object(mount_fields, o, ip, m, err) < 0)
            return -1;
        if (reserved_target(m->target))
            return invalid(err, "%s.target: must not be /, nor at or under /proc, /sys or /dev", ip);
        for (size_t j = 0; j < i; j++)
            if (strcmp(fn->mounts[j].target, m->target) == 0)
                return invalid(err, "%s.target: duplicate of mounts[%zu].target", ip, j);
    }
    return 0;
}

static bool env_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128 || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

static int env_cmp(const void *a, const void *b)
{
    return strcmp(((const cfg_env_t *)a)->name, ((const cfg_env_t *)b)->name);
}

static int read_env(json_t *o, cfg_function_t *fn, hearth_error_t *err)
{
    char kp[PATH_BUF];
    if (!json_is_object(o) || json_object_size(o) > MAX_ENV)
        return invalid(err, "env: must be an object of at most %d string values", MAX_ENV);
    fn->env = calloc(json_object_size(o) + 1, sizeof(cfg_env_t));
    if (fn->env == NULL)
        return nomem(err);
    size_t total = 0;
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        path_key(kp, "env", key);
        if (!env_name_ok(key))
            return invalid(err, "%s: name must match [A-Za-z_][A-Za-z0-9_]{0,127}", kp);
        if (strncmp(key, "HEARTH_", 7) == 0)
            return invalid(err, "%s: names starting with HEARTH_ are set by hearth", kp);
        const char *s = plain_string(v);
        if (s == NULL || strlen(s) > MAX_ENV_VALUE)
            return invalid(err, "%s: must be a string of at most %d bytes", kp, MAX_ENV_VALUE);
        total += strlen(key) + strlen(s) + 2;
        if (total > MAX_ENV_TOTAL)
            return invalid(err, "env: must total at most %u bytes", MAX_ENV_TOTAL);
        cfg_env_t *e = &fn->env[fn->n_env++];
        if ((e->name = strdup(key)) == NULL || (e->value = strdup(s)) == NULL)
            return nomem(err);
    }
    qsort(fn->env, fn->n_env, sizeof(cfg_env_t), env_cmp);
    return 0;
}

int cfg_function_from_json(json_t *root, const char *default_tenant, cfg_function_t **out,
                           hearth_error_t *err)
{
    cleanup_function cfg_function_t *fn = calloc(1, sizeof(*fn));
    if (fn == NULL)
        return nomem(err);
    if (apply_defaults(function_fields, fn, err) < 0 || read_object(function_fields, root, "", fn, err) < 0)
        return -1;

    json_t *v = json_object_get(root, "protocol");
    if (v != NULL) {
        const char *s = plain_string(v);
        const char *why = s ? check_protocol(s) : "must be one of stdio, lambda, http";
        if (why != NULL)
            return invalid(err, "protocol: %s", why);
        fn->protocol = strcmp(s, "stdio") == 0 ? CFG_PROTO_STDIO
                       : strcmp(s, "lambda") == 0 ? CFG_PROTO_LAMBDA
                                                  : CFG_PROTO_HTTP;
    }
    if (read_command(json_object_get(root, "command"), fn, err) < 0)
        return -1;
    if ((v = json_object_get(root, "mounts")) != NULL && read_mounts(v, fn, err) < 0)
        return -1;
    if ((v = json_object_get(root, "env")) != NULL && read_env(v, fn, err) < 0)
        return -1;

    if (fn->tenant == NULL) {
        if (default_tenant == NULL)
            return invalid(err, "tenant: required");
        if (!name_ok(default_tenant))
            return invalid(err, "tenant: must match [a-z0-9][a-z0-9_-]{0,62}");
        if ((fn->tenant = strdup(default_tenant)) == NULL)
            return nomem(err);
    }
    /* One process per invocation reads one payload from stdin: there is
     * nothing to share a sandbox between. An http function's sandbox has
     * one keep-alive connection to its server, and CPU is measured per
     * sandbox: one invocation at a time; it scales by sandboxes. */
    /* One invocation per sandbox at a time, whatever the protocol: a Lambda
     * runtime polls for one at a time, and CPU is charged per sandbox. */
    if (fn->concurrency != 1)
        return invalid(err, "concurrency: must be 1 for protocol %s", cfg_protocol_name(fn->protocol));
    if (fn->min_warm > fn->max_sandboxes)
        return invalid(err, "min_warm: must not exceed max_sandboxes (%u)", fn->max_sandboxes);
    *out = steal_pointer(&fn);
    return 0;
}

int cfg_function_parse(const char *json, size_t len, const char *default_tenant, cfg_function_t **out,
                       hearth_error_t *err)
{
    json_auto_t *root = load_json(json, len, CFG_SPEC_MAX_BYTES, err);
    if (root == NULL)
        return -1;
    return cfg_function_from_json(root, default_tenant, out, err);
}

const char *cfg_protocol_name(cfg_protocol_t p)
{
    switch (p) {
    case CFG_PROTO_STDIO: return "stdio";
    case CFG_PROTO_LAMBDA: return "lambda";
    case CFG_PROTO_HTTP: return "http";
    }
    return "stdio";
}

/* json_object_set_new that remembers a failure instead of returning it at
 * every line. */
static void put(json_t *o, const char *key, json_t *v, bool *ok)
{
    if (v == NULL || json_object_set_new(o, key, v) < 0)
        *ok = false;
}

json_t *cfg_function_to_json(const cfg_function_t *fn)
{
    bool ok = true;
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    put(o, "name", json_string(fn->name), &ok);
    put(o, "tenant", json_string(fn->tenant), &ok);
    put(o, "protocol", json_string(cfg_protocol_name(fn->protocol)), &ok);
    json_t *cmd = json_array();
    for (size_t i = 0; cmd != NULL && i < fn->n_command; i++)
        if (json_array_append_new(cmd, json_string(fn->command[i])) < 0)
            ok = false;
    put(o, "command", cmd, &ok);
    put(o, "rootfs", json_string(fn->rootfs), &ok);
    json_t *mounts = json_array();
    for (size_t i = 0; mounts != NULL && i < fn->n_mounts; i++) {
        json_t *m = json_object();
        if (m == NULL) {
            ok = false;
            break;
        }
        put(m, "source", json_string(fn->mounts[i].source), &ok);
        put(m, "target", json_string(fn->mounts[i].target), &ok);
        put(m, "readonly", json_boolean(fn->mounts[i].readonly), &ok);
        if (json_array_append_new(mounts, m) < 0)
            ok = false;
    }
    put(o, "mounts", mounts, &ok);
    json_t *env = json_object();
    for (size_t i = 0; env != NULL && i < fn->n_env; i++)
        put(env, fn->env[i].name, json_string(fn->env[i].value), &ok);
    put(o, "env", env, &ok);
    for (const field_t *f = function_fields; f->key != NULL; f++) {
        const char *m = (const char *)fn + f->off;
        if (strcmp(f->key, "name") == 0 || strcmp(f->key, "tenant") == 0 ||
            strcmp(f->key, "rootfs") == 0)
            continue;
        switch (f->type) {
        case F_STR: put(o, f->key, json_string(*(char *const *)m), &ok); break;
        case F_U32: put(o, f->key, json_integer(*(const uint32_t *)m), &ok); break;
        case F_U64: put(o, f->key, json_integer((json_int_t) * (const uint64_t *)m), &ok); break;
        case F_DBL: put(o, f->key, json_real(*(const double *)m), &ok); break;
        case F_BOOL: put(o, f->key, json_boolean(*(const bool *)m), &ok); break;
        case F_SKIP: break;
        }
    }
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

char *cfg_function_dump(const cfg_function_t *fn)
{
    json_auto_t *o = cfg_function_to_json(fn);
    if (o == NULL)
        return NULL;
    return json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
}

cfg_function_t *cfg_function_dup(const cfg_function_t *fn)
{
    json_auto_t *o = cfg_function_to_json(fn);
    if (o == NULL)
        return NULL;
    cfg_function_t *copy = NULL;
    hearth_error_t err;
    if (cfg_function_from_json(o, NULL, &copy, &err) < 0)
        return NULL;
    return copy;
}

bool cfg_function_equal(const cfg_function_t *a, const cfg_function_t *b)
{
    cleanup_free char *x = cfg_function_dump(a);
    cleanup_free char *y = cfg_function_dump(b);
    return x != NULL && y != NULL && strcmp(x, y) == 0;
}

void cfg_function_sbx_spec(const cfg_function_t *fn, sbx_mount_t *mounts, sbx_spec_t *spec)
{
    memset(spec, 0, sizeof(*spec));
    for (size_t i = 0; i < fn->n_mounts; i++) {
        mounts[i].source = fn->mounts[i].source;
        mounts[i].target = fn->mounts[i].target;
        mounts[i].readonly = fn->mounts[i].readonly;
    }
    spec->rootfs = strcmp(fn->rootfs, "/") == 0 ? NULL : fn->rootfs;
    spec->mounts = fn->n_mounts ? mounts : NULL;
    spec->n_mounts = fn->n_mounts;
    spec->memory_bytes = (uint64_t)fn->memory_mb << 20;
    spec->cpus = fn->cpus;
    spec->pids = fn->pids;
    spec->tmp_bytes = (uint64_t)fn->tmp_mb << 20;
    spec->seccomp = fn->seccomp;
}

/* ---- host paths: what a spec may bind into its sandbox ---- */

/* The next component of *p (NULL-free: len 0 at the end), past any run of
 * slashes. */
static const char *component(const char **p, size_t *len)
{
    while (**p == '/')
        (*p)++;
    const char *c = *p;
    *p = strchrnul(c, '/');
    *len = (size_t)(*p - c);
    return c;
}

/* path is dir or lies below it; both absolute without . or .. components.
 * By component, so that "/a//b" is within "/a" and "/ab" is not. */
static bool path_within(const char *path, const char *dir)
{
    for (;;) {
        size_t dl, pl;
        const char *d = component(&dir, &dl);
        if (dl == 0)
            return true;
        const char *p = component(&path, &pl);
        if (pl != dl || memcmp(p, d, dl) != 0)
            return false;
    }
}

/* A place no sandbox may see, whoever wrote the spec. */
typedef struct forbidden {
    const char *what; /* for messages */
    char *path;       /* resolved */
} forbidden_t;

typedef struct path_policy {
    forbidden_t forbidden[5];
    size_t n_forbidden;
    char **allowed;     /* resolved entries of the list checked now; NULL where an entry does not resolve */
    size_t n_allowed;
} path_policy_t;

static void policy_clear(path_policy_t *pol)
{
    for (size_t i = 0; i < pol->n_forbidden; i++)
        free(pol->forbidden[i].path);
    free_strings(pol->allowed, pol->n_allowed);
    memset(pol, 0, sizeof(*pol));
}

/* A path that does not resolve is not there to be reached through: left
 * out. */
static int forbid(path_policy_t *pol, const char *what, const char *path, hearth_error_t *err)
{
    char *r = realpath(path, NULL);
    if (r == NULL)
        return errno == ENOMEM ? nomem(err) : 0;
    pol->forbidden[pol->n_forbidden].what = what;
    pol->forbidden[pol->n_forbidden++].path = r;
    return 0;
}

/* /proc and /sys would hand the sandbox the host's processes (their
 * command lines carry tokens) and kernel knobs; /dev its devices;
 * state_dir every tenant's specs, payloads and results; the socket's
 * directory the daemon's API without the peer-uid check the directory's
 * mode stands for. */
static int policy_init(path_policy_t *pol, const cfg_daemon_t *cfg, hearth_error_t *err)
{
    memset(pol, 0, sizeof(*pol));
    if (forbid(pol, "/proc", "/proc", err) < 0 || forbid(pol, "/sys", "/sys", err) < 0 ||
        forbid(pol, "/dev", "/dev", err) < 0 || forbid(pol, "the daemon's state_dir", cfg->state_dir, err) < 0)
        return -1;
    if (cfg->listen_unix[0] != '\0') {
        cleanup_free char *dir = strdup(cfg->listen_unix);
        if (dir == NULL)
            return nomem(err);
        char *slash = strrchr(dir, '/'); /* listen_unix is absolute */
        slash[slash == dir] = '\0';
        if (forbid(pol, "the daemon's socket directory", dir, err) < 0)
            return -1;
    }
    return 0;
}

/* Resolve the entries of an allowlist once per check. */
static int policy_allow(path_policy_t *pol, char *const *dirs, size_t n, hearth_error_t *err)
{
    free_strings(pol->allowed, pol->n_allowed);
    pol->n_allowed = 0;
    if ((pol->allowed = calloc(n + 1, sizeof(char *))) == NULL)
        return nomem(err);
    for (size_t i = 0; i < n; i++, pol->n_allowed++)
        if ((pol->allowed[i] = realpath(dirs[i], NULL)) == NULL && errno == ENOMEM)
            return nomem(err);
    return 0;
}

/* path (as written) against the allowlist as written and as resolved. */
static bool listed(const char *path, char *const *dirs, const path_policy_t *pol)
{
    for (size_t i = 0; i < pol->n_allowed; i++)
        if (path_within(path, dirs[i]) || (pol->allowed[i] != NULL && path_within(path, pol->allowed[i])))
            return true;
    return false;
}

/* One host path: key names it in messages; dirs (pol->n_allowed of them)
 * is the allowlist called list_key, list_key NULL for a trusted spec.
 * *resolved is malloc'd. */
static int check_host_path(const path_policy_t *pol, const char *key, const char *path, char *const *dirs,
                           const char *list_key, char **resolved, hearth_error_t *err)
{
    if (list_key != NULL && !listed(path, dirs, pol))
        return invalid(err, "%s: %s is not under any of the daemon's %s%s", key, path, list_key,
                       pol->n_allowed == 0 ? " (none configured: only the operator's functions_dir specs may "
                                             "name host paths)"
                                           : "");
    cleanup_free char *r = realpath(path, NULL);
    if (r == NULL)
        return errno == ENOMEM ? nomem(err) : invalid(err, "%s: cannot resolve %s: %s", key, path, strerror(errno));
    bool same = strcmp(path, r) == 0;
    for (size_t i = 0; i < pol->n_forbidden; i++) {
        const forbidden_t *f = &pol->forbidden[i];
        bool inside = path_within(r, f->path);
        if (inside || path_within(f->path, r))
            return invalid(err, "%s: %s%s%s%s %s %s, which is never mounted into a sandbox", key, path,
                           same ? "" : " (resolved: ", same ? "" : r, same ? "" : ")",
                           !inside ? "contains" : strcmp(r, f->path) == 0 ? "is" : "is inside", f->what);
    }
    if (list_key != NULL) {
        bool ok = false;
        for (size_t i = 0; i < pol->n_allowed && !ok; i++)
            ok = pol->allowed[i] != NULL && path_within(r, pol->allowed[i]);
        if (!ok)
            return invalid(err, "%s: %s resolves to %s, which is not under any of the daemon's %s", key, path, r,
                           list_key);
    }
    *resolved = steal_pointer(&r);
    return 0;
}

void cfg_host_paths_clear(cfg_host_paths_t *p)
{
    free(p->rootfs);
    free(p->seccomp);
    free_strings(p->sources, p->n);
    memset(p, 0, sizeof(*p));
}

int cfg_function_check_paths(const cfg_daemon_t *cfg, const cfg_function_t *fn, bool trusted,
                             cfg_host_paths_t *out, hearth_error_t *err)
{
    char kp[PATH_BUF];
    __attribute__((cleanup(policy_clear))) path_policy_t pol = {0};
    __attribute__((cleanup(cfg_host_paths_clear))) cfg_host_paths_t p = {0};
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    /* Most specs name no host path: no file system work for them (this
     * runs at every cold start). */
    if (strcmp(fn->rootfs, "/") == 0 && strcmp(fn->seccomp, "default") == 0 && fn->n_mounts == 0)
        return 0;
    if (policy_init(&pol, cfg, err) < 0)
        return -1;
    /* "/" is the host's root as the sandbox builds it (non-recursive, its
     * own /proc, /dev and /tmp): not a bind of a tenant's choosing. */
    if (strcmp(fn->rootfs, "/") != 0) {
        if ((!trusted && policy_allow(&pol, cfg->rootfs_dirs, cfg->n_rootfs_dirs, err) < 0) ||
            check_host_path(&pol, "rootfs", fn->rootfs, cfg->rootfs_dirs, trusted ? NULL : "rootfs_dirs",
                            &p.rootfs, err) < 0)
            return -1;
    }
    /* The daemon itself opens and parses a profile: any file would be an
     * oracle on its first bytes (the parser's messages quote them), and a
     * FIFO or a device would block or act on open. */
    if (strcmp(fn->seccomp, "default") != 0) {
        if ((!trusted && policy_allow(&pol, cfg->seccomp_dirs, cfg->n_seccomp_dirs, err) < 0) ||
            check_host_path(&pol, "seccomp", fn->seccomp, cfg->seccomp_dirs, trusted ? NULL : "seccomp_dirs",
                            &p.seccomp, err) < 0)
            return -1;
        struct stat st;
        if (stat(p.seccomp, &st) < 0 || !S_ISREG(st.st_mode))
            return invalid(err, "seccomp: %s is not a regular file", fn->seccomp);
    }
    if (fn->n_mounts > 0) {
        if ((p.sources = calloc(fn->n_mounts + 1, sizeof(char *))) == NULL ||
            (!trusted && policy_allow(&pol, cfg->mount_sources, cfg->n_mount_sources, err) < 0))
            return p.sources == NULL ? nomem(err) : -1;
        for (size_t i = 0; i < fn->n_mounts; i++, p.n++) {
            path_index(kp, "mounts", i);
            strcat(kp, ".source");
            if (check_host_path(&pol, kp, fn->mounts[i].source, cfg->mount_sources,
                                trusted ? NULL : "mount_sources", &p.sources[i], err) < 0)
                return -1;
        }
    }
    if (out != NULL) {
        *out = p;
        memset(&p, 0, sizeof(p));
    }
    return 0;
}

void cfg_host_paths_apply(const cfg_host_paths_t *p, sbx_mount_t *mounts, sbx_spec_t *spec)
{
    for (size_t i = 0; i < p->n; i++)
        mounts[i].source = p->sources[i];
    if (p->rootfs != NULL)
        spec->rootfs = p->rootfs;
    if (p->seccomp != NULL)
        spec->seccomp = p->seccomp;
}

/* ---- functions_dir ---- */

void cfg_function_list_clear(cfg_function_list_t *list)
{
    for (size_t i = 0; i < list->n; i++) {
        cfg_function_free(list->items[i]);
        free(list->paths[i]);
    }
    free(list->items);
    free(list->paths);
    memset(list, 0, sizeof(*list));
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void closedirp(DIR **d)
{
    if (*d != NULL)
        closedir(*d);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static int load_file(int dfd, const char *dir, const char *name, cfg_function_t **out, hearth_error_t *err)
{
    cleanup_close int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return hearth_error_sys(err, "%s/%s", dir, name);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return hearth_error_sys(err, "%s/%s", dir, name);
    if (!S_ISREG(st.st_mode))
        return invalid(err, "%s/%s: not a regular file", dir, name);
    cleanup_free char *buf = malloc(CFG_SPEC_MAX_BYTES + 1);
    if (buf == NULL)
        return nomem(err);
    ssize_t n = read_all(fd, buf, CFG_SPEC_MAX_BYTES + 1);
    if (n < 0)
        return hearth_error_sys(err, "%s/%s", dir, name);
    if (cfg_function_parse(buf, (size_t)n, NULL, out, err) < 0)
        return hearth_error_wrap(err, "%s/%s", dir, name);
    return 0;
}

int cfg_functions_load_dir(const char *dir, cfg_function_list_t *out, hearth_error_t *err)
{
    memset(out, 0, sizeof(*out));
    __attribute__((cleanup(closedirp))) DIR *d = opendir(dir);
    if (d == NULL)
        return hearth_error_sys(err, "functions_dir %s", dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
            continue;
        if (n == MAX_FUNCTION_FILES) {
            free_names(names, n);
            return invalid(err, "functions_dir %s: more than %d files", dir, MAX_FUNCTION_FILES);
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, cap * sizeof(char *));
            if (nn == NULL) {
                free_names(names, n);
                return nomem(err);
            }
            names = nn;
        }
        if ((names[n] = strdup(de->d_name)) == NULL) {
            free_names(names, n);
            return nomem(err);
        }
        n++;
    }
    if (errno != 0) {
        int e = errno;
        free_names(names, n);
        return hearth_error_set(err, e, "read functions_dir %s", dir);
    }
    if (n > 0)
        qsort(names, n, sizeof(char *), name_cmp);

    cfg_function_list_t list = {0};
    list.items = calloc(n + 1, sizeof(cfg_function_t *));
    list.paths = calloc(n + 1, sizeof(char *));
    if (list.items == NULL || list.paths == NULL) {
        free_names(names, n);
        cfg_function_list_clear(&list);
        return nomem(err);
    }
    for (size_t i = 0; i < n; i++) {
        cfg_function_t *fn = NULL;
        if (load_file(dirfd(d), dir, names[i], &fn, err) < 0)
            goto fail;
        list.items[list.n] = fn;
        if (asprintf(&list.paths[list.n], "%s/%s", dir, names[i]) < 0) {
            list.paths[list.n] = NULL;
            list.n++;
            nomem(err);
            goto fail;
        }
        list.n++;
        for (size_t j = 0; j + 1 < list.n; j++) {
            if (strcmp(list.items[j]->tenant, fn->tenant) == 0 && strcmp(list.items[j]->name, fn->name) == 0) {
                invalid(err, "%s: function %s/%s is already defined in %s", list.paths[list.n - 1],
                        fn->tenant, fn->name, list.paths[j]);
                goto fail;
            }
        }
    }
    free_names(names, n);
    *out = list;
    return 0;
fail:
    free_names(names, n);
    cfg_function_list_clear(&list);
    return -1;
}
