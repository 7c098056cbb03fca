#include "auth.h"

#include <errno.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

struct auth {
    int refs;               /* owners: the daemon plus requests in flight */
    cfg_tenant_t *tenants;  /* deep copies */
    size_t n_tenants;
};

static void *memdup(const void *p, size_t n)
{
    void *q = malloc(n ? n : 1);
    if (q != NULL && n)
        memcpy(q, p, n);
    return q;
}

static int tenant_copy(cfg_tenant_t *dst, const cfg_tenant_t *src)
{
    *dst = *src;
    dst->name = NULL;
    dst->tokens_sha256 = NULL;
    dst->uids = NULL;
    dst->aws_keys = NULL;
    dst->n_aws_keys = 0;
    if ((dst->name = strdup(src->name)) == NULL ||
        (dst->tokens_sha256 = memdup(src->tokens_sha256, src->n_tokens * 32)) == NULL ||
        (dst->uids = memdup(src->uids, src->n_uids * sizeof(uid_t))) == NULL ||
        (dst->aws_keys = calloc(src->n_aws_keys + 1, sizeof(cfg_aws_key_t))) == NULL)
        return -1;
    for (size_t i = 0; i < src->n_aws_keys; i++) {
        dst->n_aws_keys = i + 1;
        if ((dst->aws_keys[i].access_key_id = strdup(src->aws_keys[i].access_key_id)) == NULL ||
            (dst->aws_keys[i].secret_access_key = strdup(src->aws_keys[i].secret_access_key)) == NULL)
            return -1;
    }
    return 0;
}

int auth_new(const cfg_daemon_t *cfg, auth_t **out, hearth_error_t *err)
{
    auth_t *a = calloc(1, sizeof(*a));
    if (a == NULL || (a->tenants = calloc(cfg->n_tenants + 1, sizeof(cfg_tenant_t))) == NULL) {
        free(a);
        return hearth_error_set(err, ENOMEM, "auth: copy tenants");
    }
    a->refs = 1;
    for (size_t i = 0; i < cfg->n_tenants; i++) {
        a->n_tenants = i + 1;
        if (tenant_copy(&a->tenants[i], &cfg->tenants[i]) < 0) {
            auth_unref(a);
            return hearth_error_set(err, ENOMEM, "auth: copy tenants");
        }
    }
    *out = a;
    return 0;
}

auth_t *auth_ref(auth_t *a)
{
    a->refs++;
    return a;
}

void auth_unref(auth_t *a)
{
    if (a == NULL || --a->refs > 0)
        return;
    for (size_t i = 0; i < a->n_tenants; i++)
        cfg_tenant_clear(&a->tenants[i]);
    free(a->tenants);
    free(a);
}

const auth_tenant_t *auth_by_token(const auth_t *a, const char *token, size_t len)
{
    if (token == NULL || len == 0 || len > AUTH_TOKEN_MAX)
        return NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(token, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return NULL;
    /* Visit every hash whatever matches, and pick the match without a
     * branch on it. Comparing hashes (not tokens) already means an early
     * exit would leak only bits of a hash; this removes even that. */
    uintptr_t found = 0;
    for (size_t i = 0; i < a->n_tenants; i++) {
        const cfg_tenant_t *t = &a->tenants[i];
        for (size_t j = 0; j < t->n_tokens; j++) {
            uintptr_t same = (uintptr_t)(CRYPTO_memcmp(md, t->tokens_sha256[j], 32) == 0);
            uintptr_t mask = (uintptr_t)0 - same;
            found = (found & ~mask) | ((uintptr_t)t & mask);
        }
    }
    OPENSSL_cleanse(md, sizeof(md));
    return (const auth_tenant_t *)found;
}

const auth_tenant_t *auth_by_uid(const auth_t *a, uid_t uid)
{
    for (size_t i = 0; i < a->n_tenants; i++)
        for (size_t j = 0; j < a->tenants[i].n_uids; j++)
            if (a->tenants[i].uids[j] == uid)
                return &a->tenants[i];
    return NULL;
}

const auth_tenant_t *auth_by_name(const auth_t *a, const char *name)
{
    for (size_t i = 0; i < a->n_tenants; i++)
        if (strcmp(a->tenants[i].name, name) == 0)
            return &a->tenants[i];
    return NULL;
}

const auth_tenant_t *auth_by_access_key(const auth_t *a, const char *access_key_id,
                                        const cfg_aws_key_t **key)
{
    /* Key ids are not secret (they travel in clear in every request). */
    for (size_t i = 0; i < a->n_tenants; i++)
        for (size_t j = 0; j < a->tenants[i].n_aws_keys; j++)
            if (strcmp(a->tenants[i].aws_keys[j].access_key_id, access_key_id) == 0) {
                if (key != NULL)
                    *key = &a->tenants[i].aws_keys[j];
                return &a->tenants[i];
            }
    return NULL;
}

size_t auth_count(const auth_t *a)
{
    return a->n_tenants;
}

const auth_tenant_t *auth_at(const auth_t *a, size_t i)
{
    return i < a->n_tenants ? &a->tenants[i] : NULL;
}

static int bad_header(hearth_error_t *err, const char *why)
{
    return hearth_error_tag(err, EINVAL, "Authorization: %s", why);
}

/* RFC 6750 b64token / RFC 7235 token68. */
static bool token68_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
}

int auth_parse_bearer(const char *value, const char **token, size_t *len, hearth_error_t *err)
{
    if (value == NULL)
        return bad_header(err, "missing");
    size_t n = strnlen(value, AUTH_HEADER_MAX + 1);
    if (n > AUTH_HEADER_MAX)
        return bad_header(err, "too long");
    const char *p = value;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strncasecmp(p, "bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t'))
        return bad_header(err, "expected `Bearer <token>`");
    p += 6;
    while (*p == ' ' || *p == '\t')
        p++;
    const char *start = p;
    while (token68_char(*p))
        p++;
    while (*p == '=')
        p++;
    const char *end = p;
    while (*p == ' ' || *p == '\t')
        p++;
    if (end == start || *p != '\0')
        return bad_header(err, "malformed bearer token");
    if ((size_t)(end - start) > AUTH_TOKEN_MAX)
        return bad_header(err, "bearer token too long");
    *token = start;
    *len = (size_t)(end - start);
    return 0;
}

bool auth_may_act(const auth_tenant_t *caller, const char *tenant)
{
    if (caller == NULL || tenant == NULL)
        return false;
    return caller->admin || strcmp(caller->name, tenant) == 0;
}

int auth_peer_uid(int fd, uid_t *uid, pid_t *pid, hearth_error_t *err)
{
    struct ucred cred;
    socklen_t sl = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &sl) < 0)
        return hearth_error_sys(err, "SO_PEERCRED");
    if (sl != sizeof(cred))
        return hearth_error_set(err, EPROTO, "SO_PEERCRED: short answer");
    *uid = cred.uid;
    if (pid != NULL)
        *pid = cred.pid;
    return 0;
}
