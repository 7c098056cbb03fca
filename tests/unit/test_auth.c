/* Tenants: tokens, uids, the Authorization header, permissions. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "orchestrator/auth.h"
#include "tests/harness.h"


static char *hex_sha256(const char *s)
{
    static char out[65];
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "printf %%s '%s' | sha256sum", s);
    FILE *p = popen(cmd, "r");
    if (p == NULL || fread(out, 1, 64, p) != 64)
        out[0] = '\0';
    else
        out[64] = '\0';
    if (p)
        pclose(p);
    return out;
}

static auth_t *make_auth(void)
{
    char json[2048];
    char acme1[65], acme2[65], root[65], beta[65];
    strcpy(acme1, hex_sha256("acme-secret"));
    strcpy(acme2, hex_sha256("acme-second"));
    strcpy(root, hex_sha256("root-secret"));
    strcpy(beta, hex_sha256("beta-secret"));
    snprintf(json, sizeof(json),
             "{\"tenants\":[{\"name\":\"acme\",\"tokens_sha256\":[\"%s\",\"%s\"],\"uids\":[1000]},"
             "{\"name\":\"beta\",\"tokens_sha256\":[\"%s\"],\"uids\":[1001,1002],"
             "\"aws_keys\":[{\"access_key_id\":\"AKIAIOSFODNN7EXAMPLE\",\"secret_access_key\":\"0123456789abcdef/+\"}]},"
             "{\"name\":\"root\",\"admin\":true,\"tokens_sha256\":[\"%s\"],\"uids\":[0]}]}",
             acme1, acme2, beta, root);
    cfg_daemon_t *cfg = NULL;
    hearth_error_t err = {0};
    if (cfg_daemon_parse(json, strlen(json), &cfg, &err) < 0) {
        printf("# config: %s\n", err.msg);
        return NULL;
    }
    auth_t *a = NULL;
    if (auth_new(cfg, &a, &err) < 0)
        printf("# auth: %s\n", err.msg);
    cfg_daemon_free(cfg); /* auth keeps its own copy */
    return a;
}

static const auth_tenant_t *tok(const auth_t *a, const char *t)
{
    return auth_by_token(a, t, strlen(t));
}

static void t_tokens(void)
{
    auth_t *a = make_auth();
    REQUIRE(a != NULL, "auth");
    const auth_tenant_t *acme = auth_by_name(a, "acme");
    const auth_tenant_t *beta = auth_by_name(a, "beta");
    REQUIRE(acme != NULL && beta != NULL, "names");
    CHECK(tok(a, "acme-secret") == acme, "right token");
    CHECK(tok(a, "acme-second") == acme, "second token");
    CHECK(tok(a, "beta-secret") == beta, "other tenant's token names the other tenant");
    CHECK(tok(a, "acme-secreT") == NULL, "wrong token");
    CHECK(tok(a, "acme-secret ") == NULL, "token with a trailing byte");
    CHECK(tok(a, "") == NULL, "empty");
    CHECK(auth_by_token(a, "acme-secret", 4) == NULL, "prefix");
    CHECK(auth_by_token(a, NULL, 0) == NULL, "null");
    char big[AUTH_TOKEN_MAX + 2];
    memset(big, 'a', sizeof(big));
    CHECK(auth_by_token(a, big, sizeof(big)) == NULL, "too long");
    CHECK(strcmp(tok(a, "root-secret")->name, "root") == 0 && tok(a, "root-secret")->admin, "admin");
    auth_unref(a);
}

static void t_uids_and_keys(void)
{
    auth_t *a = make_auth();
    REQUIRE(a != NULL, "auth");
    CHECK(auth_by_uid(a, 1000) == auth_by_name(a, "acme"), "1000");
    CHECK(auth_by_uid(a, 1002) == auth_by_name(a, "beta"), "1002");
    CHECK(auth_by_uid(a, 0) == auth_by_name(a, "root"), "0");
    CHECK(auth_by_uid(a, 4242) == NULL, "unknown uid");
    CHECK(auth_by_name(a, "nobody") == NULL, "unknown name");
    const cfg_aws_key_t *key = NULL;
    CHECK(auth_by_access_key(a, "AKIAIOSFODNN7EXAMPLE", &key) == auth_by_name(a, "beta") && key != NULL &&
              strcmp(key->secret_access_key, "0123456789abcdef/+") == 0,
          "aws key");
    CHECK(auth_by_access_key(a, "AKIAIOSFODNN7EXAMPLF", NULL) == NULL, "unknown key");
    CHECK(auth_count(a) == 3 && auth_at(a, 2) == auth_by_name(a, "root") && auth_at(a, 3) == NULL, "at");
    /* A reference keeps tenants alive past the daemon's unref. */
    auth_t *r = auth_ref(a);
    auth_unref(a);
    CHECK(strcmp(auth_by_uid(r, 1000)->name, "acme") == 0, "ref");
    auth_unref(r);
}

static void bearer_ok(const char *v, const char *want)
{
    const char *t = NULL;
    size_t n = 0;
    hearth_error_t err = {0};
    CHECK(auth_parse_bearer(v, &t, &n, &err) == 0, "`%s`: %s", v, err.msg);
    CHECK(t != NULL && n == strlen(want) && memcmp(t, want, n) == 0, "`%s` gave `%.*s`", v, (int)n, t ? t : "");
}

static void bearer_bad(const char *v, const char *want)
{
    const char *t = NULL;
    size_t n = 0;
    hearth_error_t err = {0};
    CHECK(auth_parse_bearer(v, &t, &n, &err) < 0, "`%s` accepted", v ? v : "(null)");
    CHECK(strcmp(err.msg, want) == 0 && err.code == EINVAL, "`%s`: got `%s`", v ? v : "(null)", err.msg);
}

static void t_bearer(void)
{
    bearer_ok("Bearer abc", "abc");
    bearer_ok("bearer abc", "abc");
    bearer_ok("BEARER\tabc", "abc");
    bearer_ok("  Bearer   a-b.c_d~e+f/g==  ", "a-b.c_d~e+f/g==");
    bearer_bad(NULL, "Authorization: missing");
    bearer_bad("", "Authorization: expected `Bearer <token>`");
    bearer_bad("Basic YWxhZGRpbjpvcGVuc2VzYW1l", "Authorization: expected `Bearer <token>`");
    bearer_bad("Bearer", "Authorization: expected `Bearer <token>`");
    bearer_bad("Bearerabc", "Authorization: expected `Bearer <token>`");
    bearer_bad("Bearer ", "Authorization: malformed bearer token");
    bearer_bad("Bearer a b", "Authorization: malformed bearer token");
    bearer_bad("Bearer a=b", "Authorization: malformed bearer token");
    bearer_bad("Bearer a\"b", "Authorization: malformed bearer token");
    char big[AUTH_HEADER_MAX + 16];
    memcpy(big, "Bearer ", 7);
    memset(big + 7, 'a', AUTH_TOKEN_MAX + 1);
    big[7 + AUTH_TOKEN_MAX + 1] = '\0';
    bearer_bad(big, "Authorization: bearer token too long");
    memset(big + 7, 'a', sizeof(big) - 8);
    big[sizeof(big) - 1] = '\0';
    bearer_bad(big, "Authorization: too long");
}

static void t_permissions(void)
{
    auth_t *a = make_auth();
    REQUIRE(a != NULL, "auth");
    const auth_tenant_t *acme = auth_by_name(a, "acme"), *root = auth_by_name(a, "root");
    CHECK(auth_may_act(acme, "acme"), "own");
    CHECK(!auth_may_act(acme, "beta"), "foreign");
    CHECK(!auth_may_act(acme, "acm"), "prefix");
    CHECK(auth_may_act(root, "beta") && auth_may_act(root, "acme") && auth_may_act(root, "none"), "admin");
    CHECK(!auth_may_act(NULL, "acme") && !auth_may_act(acme, NULL), "null");
    auth_unref(a);
}

static void t_peer_uid(void)
{
    int sv[2];
    int rc = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
    REQUIRE(rc == 0, "socketpair");
    uid_t uid = 12345;
    pid_t pid = 0;
    hearth_error_t err = {0};
    CHECK(auth_peer_uid(sv[0], &uid, &pid, &err) == 0, "%s", err.msg);
    CHECK(uid == getuid() && pid == getpid(), "uid %u pid %d", (unsigned)uid, (int)pid);
    close(sv[0]);
    close(sv[1]);
    CHECK(auth_peer_uid(sv[0], &uid, NULL, &err) < 0 && err.code == EBADF, "closed fd: %s", err.msg);
}

int main(void)
{
    RUN(t_tokens);
    RUN(t_uids_and_keys);
    RUN(t_bearer);
    RUN(t_permissions);
    RUN(t_peer_uid);
    return harness_done();
}
