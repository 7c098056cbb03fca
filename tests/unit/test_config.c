/* Daemon config and function spec parsing: defaults, every refusal with its
 * message, round trips, functions_dir loading. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orchestrator/config.h"
#include "tests/harness.h"

#define HASH_A "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define HASH_B "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"

static cfg_daemon_t *daemon_ok(const char *json)
{
    cfg_daemon_t *cfg = NULL;
    hearth_error_t err = {0};
    int rc = cfg_daemon_parse(json, strlen(json), &cfg, &err);
    CHECK(rc == 0, "parse failed: %s", err.msg);
    return cfg;
}

/* Parse must fail with exactly this message. */
static void daemon_bad(const char *json, const char *want)
{
    cfg_daemon_t *cfg = NULL;
    hearth_error_t err = {0};
    int rc = cfg_daemon_parse(json, strlen(json), &cfg, &err);
    CHECK(rc < 0, "accepted: %s", json);
    CHECK(cfg == NULL, "out set on failure");
    CHECK(strcmp(err.msg, want) == 0, "for %s\n#     got  `%s`\n#     want `%s`", json, err.msg, want);
    CHECK(err.code == EINVAL, "code %d", err.code);
    cfg_daemon_free(cfg);
}

#define T1 "{\"name\":\"acme\",\"tokens_sha256\":[\"" HASH_A "\"],\"uids\":[1000]}"

static void t_daemon_defaults(void)
{
    cfg_daemon_t *cfg = daemon_ok("{\"tenants\":[" T1 "]}");
    REQUIRE(cfg != NULL, "no config");
    CHECK(strcmp(cfg->listen_unix, "/run/hearth/hearth.sock") == 0, "%s", cfg->listen_unix);
    CHECK(strcmp(cfg->listen_http, "") == 0 && cfg->http_host == NULL, "http");
    CHECK(strcmp(cfg->state_dir, "/var/lib/hearth") == 0, "state_dir");
    CHECK(strcmp(cfg->functions_dir, "") == 0, "functions_dir");
    CHECK(strcmp(cfg->cgroup_root, "hearth") == 0, "cgroup_root");
    CHECK(cfg->max_sandboxes == 256 && cfg->memory_budget_mb == 8192, "limits");
    CHECK(cfg->max_body_bytes == 6291456, "max_body_bytes");
    CHECK(cfg->uid_base == 100000 && cfg->uid_count == 65536, "uids");
    CHECK(cfg->drain_timeout_ms == 30000 && cfg->read_timeout_ms == 30000, "timeouts");
    CHECK(cfg->max_connections == 1024 && cfg->prewarm_pool == 16, "conns");
    CHECK(cfg->result_ttl_s == 86400 && cfg->log_level == HEARTH_LOG_INFO, "ttl/log");
    REQUIRE(cfg->n_tenants == 1, "tenants %zu", cfg->n_tenants);
    const cfg_tenant_t *t = &cfg->tenants[0];
    CHECK(strcmp(t->name, "acme") == 0 && !t->admin, "tenant");
    CHECK(t->max_concurrency == 100 && t->weight == 1 && t->cpu_ms_per_minute == 0, "tenant limits");
    CHECK(t->n_tokens == 1 && t->tokens_sha256[0][0] == 0x9f && t->tokens_sha256[0][31] == 0x08, "hash");
    CHECK(t->n_uids == 1 && t->uids[0] == 1000, "uids");
    CHECK(cfg_daemon_tenant(cfg, "acme") == t && cfg_daemon_tenant(cfg, "x") == NULL, "lookup");
    cfg_daemon_free(cfg);
}

static void t_daemon_full(void)
{
    cfg_daemon_t *cfg = daemon_ok(
        "{\"listen_unix\":\"/run/h/h.sock\",\"listen_http\":\"[::1]:8081\",\"state_dir\":\"/tmp/s\","
        "\"functions_dir\":\"configs/functions\",\"cgroup_root\":\"hearth/test\",\"max_sandboxes\":10,"
        "\"memory_budget_mb\":1024,\"max_body_bytes\":1000,\"uid_base\":200000,\"uid_count\":100,"
        "\"drain_timeout_ms\":0,\"max_connections\":5,\"read_timeout_ms\":1000,\"write_timeout_ms\":2000,"
        "\"max_header_bytes\":4096,\"prewarm_pool\":0,\"result_ttl_s\":60,\"log_level\":\"debug\","
        "\"tenants\":[" T1 ",{\"name\":\"root\",\"admin\":true,\"uids\":[0],\"tokens_sha256\":[\"" HASH_B
        "\"],\"max_concurrency\":7,\"weight\":1000,\"cpu_ms_per_minute\":60000,"
        "\"aws_keys\":[{\"access_key_id\":\"AKIAIOSFODNN7EXAMPLE\","
        "\"secret_access_key\":\"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"}]}]}");
    REQUIRE(cfg != NULL, "no config");
    CHECK(strcmp(cfg->http_host, "::1") == 0 && cfg->http_port == 8081, "%s", cfg->http_host);
    CHECK(cfg->log_level == HEARTH_LOG_DEBUG, "log");
    CHECK(cfg->n_tenants == 2 && cfg->tenants[1].admin && cfg->tenants[1].weight == 1000, "admin");
    CHECK(cfg->tenants[1].n_aws_keys == 1 &&
              strcmp(cfg->tenants[1].aws_keys[0].access_key_id, "AKIAIOSFODNN7EXAMPLE") == 0,
          "aws");
    cfg_daemon_free(cfg);

    cfg = daemon_ok("{\"listen_http\":\"127.0.0.1:8080\",\"tenants\":[" T1 "]}");
    REQUIRE(cfg != NULL, "no config");
    CHECK(strcmp(cfg->http_host, "127.0.0.1") == 0 && cfg->http_port == 8080, "v4");
    cfg_daemon_free(cfg);
}

static void t_daemon_refusals(void)
{
    daemon_bad("", "invalid JSON at line 1 column 0: '[' or '{' expected near end of file");
    daemon_bad("[]", "(root): must be a JSON object");
    daemon_bad("{}", "tenants: required");
    daemon_bad("{\"tenants\":[" T1 "],\"colour\":1}", "colour: unknown key");
    daemon_bad("{\"tenants\":[" T1 "],\"a\":1,\"a\":2}",
               "invalid JSON at line 1 column 137: duplicate object key near '\"a\"'");
    daemon_bad("{\"tenants\":[]}", "tenants: must be an array of 1 to 1024 tenants");
    daemon_bad("{\"tenants\":{}}", "tenants: must be an array of 1 to 1024 tenants");
    daemon_bad("{\"tenants\":[" T1 ",{\"name\":\"b\",\"weight\":0}]}",
               "tenants[1].weight: must be an integer from 1 to 1000");
    daemon_bad("{\"tenants\":[" T1 ",{\"name\":\"b\",\"weight\":1.5}]}",
               "tenants[1].weight: must be an integer from 1 to 1000");
    daemon_bad("{\"tenants\":[{\"name\":\"Acme\"}]}", "tenants[0].name: must match [a-z0-9][a-z0-9_-]{0,62}");
    daemon_bad("{\"tenants\":[{\"weight\":2}]}", "tenants[0].name: required");
    daemon_bad("{\"tenants\":[{\"name\":\"a\",\"extra\":2}]}", "tenants[0].extra: unknown key");
    daemon_bad("{\"tenants\":[{\"name\":\"a\",\"admin\":1}]}", "tenants[0].admin: must be true or false");
    daemon_bad("{\"tenants\":[{\"name\":\"a\",\"tokens_sha256\":[\"abc\"]}]}",
               "tenants[0].tokens_sha256[0]: must be 64 hex digits (the SHA-256 of the token)");
    daemon_bad("{\"tenants\":[{\"name\":\"a\",\"tokens_sha256\":[\"" HASH_A "\",\"" HASH_A "\"]}]}",
               "tenants[0].tokens_sha256[1]: duplicate token hash");
    daemon_bad("{\"tenants\":[{\"name\":\"a\",\"tokens_sha256\":\"x\"}]}",
               "tenants[0].tokens_sha256: must be an array of at most 64 hex SHA-256 strings");
    daemon_bad("{\"tenants\":[{\"name\":\"a\",\"uids\":[-1]}]}",
               "tenants[0].uids[0]: must be an integer from 0 to 4294967294");
    daemon_bad("{\"tenants\":[{\"name\":\"a\",\"uids\":[5,5]}]}", "tenants[0].uids[1]: duplicate uid");
    daemon_bad("{\"tenants\":[" T1 ",{\"name\":\"acme\"}]}", "tenants[1].name: duplicate tenant `acme`");
    daemon_bad("{\"tenants\":[" T1 ",{\"name\":\"b\",\"tokens_sha256\":[\"" HASH_A "\"]}]}",
               "tenants[1].tokens_sha256[0]: also a token of tenant `acme`");
    daemon_bad("{\"tenants\":[" T1 ",{\"name\":\"b\",\"uids\":[1000]}]}",
               "tenants[1].uids[0]: uid 1000 also belongs to tenant `acme`");
    daemon_bad("{\"tenants\":[{\"name\":\"a\",\"aws_keys\":[{\"access_key_id\":\"short\","
               "\"secret_access_key\":\"xxxxxxxxxxxxxxxxxxxx\"}]}]}",
               "tenants[0].aws_keys[0].access_key_id: must be 16 to 128 characters of [A-Z0-9]");
    daemon_bad("{\"tenants\":[{\"name\":\"a\",\"aws_keys\":[{\"access_key_id\":\"AKIAIOSFODNN7EXAMPLE\"}]}]}",
               "tenants[0].aws_keys[0].secret_access_key: required");
    daemon_bad("{\"tenants\":[{\"name\":\"a\",\"cpu_ms_per_minute\":true}]}",
               "tenants[0].cpu_ms_per_minute: must be an integer from 0 to 61440000");
    daemon_bad("{\"tenants\":[" T1 "],\"listen_unix\":\"rel.sock\"}",
               "listen_unix: must be empty or an absolute path of at most 107 bytes");
    daemon_bad("{\"tenants\":[" T1 "],\"listen_unix\":\"\"}",
               "listen_unix: must not be empty when listen_http is empty too");
    daemon_bad("{\"tenants\":[" T1 "],\"listen_http\":\"localhost\"}",
               "listen_http: must be empty or host:port (IPv6 as [addr]:port) with a port from 1 to 65535");
    daemon_bad("{\"tenants\":[" T1 "],\"listen_http\":\"127.0.0.1:70000\"}",
               "listen_http: must be empty or host:port (IPv6 as [addr]:port) with a port from 1 to 65535");
    daemon_bad("{\"tenants\":[" T1 "],\"listen_http\":\"::1:80\"}",
               "listen_http: must be empty or host:port (IPv6 as [addr]:port) with a port from 1 to 65535");
    daemon_bad("{\"tenants\":[" T1 "],\"state_dir\":\"\"}", "state_dir: must not be empty");
    daemon_bad("{\"tenants\":[" T1 "],\"state_dir\":7}", "state_dir: must be a string");
    daemon_bad("{\"tenants\":[" T1 "],\"cgroup_root\":\"/hearth\"}",
               "cgroup_root: must be a relative cgroup path of 1 to 255 bytes of [A-Za-z0-9_.-/]");
    daemon_bad("{\"tenants\":[" T1 "],\"cgroup_root\":\"a/../b\"}",
               "cgroup_root: must not contain empty, . or .. components");
    daemon_bad("{\"tenants\":[" T1 "],\"max_sandboxes\":0}", "max_sandboxes: must be an integer from 1 to 65536");
    daemon_bad("{\"tenants\":[" T1 "],\"max_sandboxes\":99999999999999999999}",
               "invalid JSON at line 1 column 164: too big integer near '99999999999999999999'");
    daemon_bad("{\"tenants\":[" T1 "],\"memory_budget_mb\":1}",
               "memory_budget_mb: must be an integer from 64 to 16777216");
    daemon_bad("{\"tenants\":[" T1 "],\"max_body_bytes\":0}", "max_body_bytes: must be an integer from 1 to 1073741824");
    daemon_bad("{\"tenants\":[" T1 "],\"uid_base\":0}", "uid_base: must be an integer from 1000 to 4294967294");
    daemon_bad("{\"tenants\":[" T1 "],\"uid_base\":4294967000,\"uid_count\":65536}",
               "uid_count: uid_base + uid_count must not exceed 4294967295");
    daemon_bad("{\"tenants\":[" T1 "],\"log_level\":\"loud\"}", "log_level: must be one of debug, info, warn, error");
    daemon_bad("{\"tenants\":[" T1 "],\"read_timeout_ms\":1}", "read_timeout_ms: must be an integer from 100 to 3600000");
    /* Keys are printable and bounded in messages whatever the input. */
    daemon_bad("{\"tenants\":[" T1 "],\"\\u0001x\":1}", "?x: unknown key");
}

static cfg_function_t *spec_ok(const char *json, const char *tenant)
{
    cfg_function_t *fn = NULL;
    hearth_error_t err = {0};
    int rc = cfg_function_parse(json, strlen(json), tenant, &fn, &err);
    CHECK(rc == 0, "parse failed: %s (%s)", err.msg, json);
    return fn;
}

static void spec_bad(const char *json, const char *want)
{
    cfg_function_t *fn = NULL;
    hearth_error_t err = {0};
    int rc = cfg_function_parse(json, strlen(json), "acme", &fn, &err);
    CHECK(rc < 0, "accepted: %s", json);
    CHECK(strcmp(err.msg, want) == 0, "for %s\n#     got  `%s`\n#     want `%s`", json, err.msg, want);
    CHECK(err.code == EINVAL, "code %d", err.code);
    cfg_function_free(fn);
}

#define CMD "\"command\":[\"/bin/cat\"]"

static void t_spec_defaults(void)
{
    cfg_function_t *fn = spec_ok("{\"name\":\"echo\"," CMD "}", "acme");
    REQUIRE(fn != NULL, "no spec");
    CHECK(strcmp(fn->name, "echo") == 0 && strcmp(fn->tenant, "acme") == 0, "names");
    CHECK(fn->protocol == CFG_PROTO_STDIO, "protocol");
    CHECK(fn->n_command == 1 && strcmp(fn->command[0], "/bin/cat") == 0 && fn->command[1] == NULL, "argv");
    CHECK(strcmp(fn->rootfs, "/") == 0 && fn->n_mounts == 0 && fn->n_env == 0, "rootfs");
    CHECK(fn->memory_mb == 128 && fn->cpus == 1.0 && fn->pids == 64, "limits");
    CHECK(fn->timeout_ms == 30000 && fn->tmp_mb == 64 && fn->concurrency == 1, "more");
    CHECK(fn->min_warm == 0 && fn->max_sandboxes == 10 && fn->keep_alive_ms == 60000, "pool");
    CHECK(strcmp(fn->seccomp, "default") == 0 && fn->max_attempts == 3, "seccomp");

    sbx_spec_t spec;
    cfg_function_sbx_spec(fn, NULL, &spec);
    CHECK(spec.rootfs == NULL && spec.memory_bytes == 128u << 20 && spec.tmp_bytes == 64u << 20, "sbx");
    CHECK(spec.pids == 64 && spec.cpus == 1.0 && strcmp(spec.seccomp, "default") == 0, "sbx 2");

    /* An explicit tenant wins over the caller's: auth decides if allowed. */
    cfg_function_t *fn2 = spec_ok("{\"name\":\"echo\",\"tenant\":\"other\"," CMD "}", "acme");
    CHECK(fn2 != NULL && strcmp(fn2->tenant, "other") == 0, "tenant");
    cfg_function_free(fn2);
    cfg_function_free(fn);
}

static const char *FULL =
    "{\"name\":\"img-2\",\"tenant\":\"acme\",\"protocol\":\"http\",\"command\":[\"/srv/app\",\"--port\",\"8080\",\"\"],"
    "\"rootfs\":\"/srv/rootfs\",\"mounts\":[{\"source\":\"/data\",\"target\":\"/mnt/data\"},"
    "{\"source\":\"/out\",\"target\":\"/mnt/out\",\"readonly\":false}],\"env\":{\"Z\":\"1\",\"A_B\":\"x y\"},"
    "\"memory_mb\":512,\"cpus\":0.5,\"pids\":100,\"timeout_ms\":1000,\"tmp_mb\":8,\"concurrency\":1,"
    "\"min_warm\":2,\"max_sandboxes\":3,\"keep_alive_ms\":0,\"seccomp\":\"/etc/hearth/p.json\",\"max_attempts\":1}";

static void t_spec_round_trip(void)
{
    cfg_function_t *fn = spec_ok(FULL, NULL);
    REQUIRE(fn != NULL, "no spec");
    CHECK(fn->protocol == CFG_PROTO_HTTP && fn->n_command == 4 && fn->command[3][0] == '\0', "argv");
    CHECK(fn->n_mounts == 2 && fn->mounts[0].readonly && !fn->mounts[1].readonly, "mounts");
    CHECK(fn->n_env == 2 && strcmp(fn->env[0].name, "A_B") == 0 && strcmp(fn->env[1].value, "1") == 0,
          "env sorted");
    CHECK(fn->cpus == 0.5 && fn->concurrency == 1 && fn->min_warm == 2, "numbers");

    char *text = cfg_function_dump(fn);
    REQUIRE(text != NULL, "dump");
    cfg_function_t *back = spec_ok(text, NULL);
    REQUIRE(back != NULL, "reparse of %s", text);
    char *text2 = cfg_function_dump(back);
    CHECK(text2 != NULL && strcmp(text, text2) == 0, "round trip differs:\n# %s\n# %s", text, text2);
    CHECK(cfg_function_equal(fn, back), "equal");
    cfg_function_t *dup = cfg_function_dup(fn);
    CHECK(dup != NULL && cfg_function_equal(fn, dup), "dup");
    back->memory_mb = 256;
    CHECK(!cfg_function_equal(fn, back), "differs");

    sbx_mount_t mounts[2];
    sbx_spec_t spec;
    cfg_function_sbx_spec(fn, mounts, &spec);
    CHECK(spec.rootfs != NULL && strcmp(spec.rootfs, "/srv/rootfs") == 0, "rootfs");
    CHECK(spec.n_mounts == 2 && strcmp(spec.mounts[1].target, "/mnt/out") == 0 && !spec.mounts[1].readonly,
          "mounts");
    free(text);
    free(text2);
    cfg_function_free(dup);
    cfg_function_free(back);

    /* Defaults are written out in full. */
    cfg_function_t *d = spec_ok("{\"name\":\"e\"," CMD "}", "acme");
    char *dt = cfg_function_dump(d);
    CHECK(dt != NULL &&
              strcmp(dt, "{\"command\":[\"/bin/cat\"],\"concurrency\":1,\"cpus\":1.0,\"env\":{},"
                         "\"keep_alive_ms\":60000,\"max_attempts\":3,\"max_sandboxes\":10,\"memory_mb\":128,"
                         "\"min_warm\":0,\"mounts\":[],\"name\":\"e\",\"pids\":64,\"protocol\":\"stdio\","
                         "\"rootfs\":\"/\",\"seccomp\":\"default\",\"tenant\":\"acme\",\"timeout_ms\":30000,"
                         "\"tmp_mb\":64}") == 0,
          "defaults: %s", dt);
    free(dt);
    cfg_function_free(d);
    cfg_function_free(fn);
}

static void t_spec_refusals(void)
{
    spec_bad("{" CMD "}", "name: required");
    spec_bad("{\"name\":\"x\"}", "command: required");
    spec_bad("{\"name\":\"x\",\"command\":[]}", "command: must be a non-empty array of strings (at most 256)");
    spec_bad("{\"name\":\"x\",\"command\":\"/bin/cat\"}", "command: must be a non-empty array of strings (at most 256)");
    spec_bad("{\"name\":\"x\",\"command\":[\"\"]}", "command[0]: must be a non-empty string of at most 4096 bytes");
    spec_bad("{\"name\":\"x\",\"command\":[\"a\",3]}", "command[1]: must be a string of at most 4096 bytes");
    spec_bad("{\"name\":\"X\"," CMD "}", "name: must match [a-z0-9][a-z0-9_-]{0,62}");
    spec_bad("{\"name\":\"-x\"," CMD "}", "name: must match [a-z0-9][a-z0-9_-]{0,62}");
    spec_bad("{\"name\":\"a234567890123456789012345678901234567890123456789012345678901234\"," CMD "}",
             "name: must match [a-z0-9][a-z0-9_-]{0,62}");
    spec_bad("{\"name\":\"x\",\"tenant\":\"A\"," CMD "}", "tenant: must match [a-z0-9][a-z0-9_-]{0,62}");
    spec_bad("{\"name\":\"x\",\"color\":1," CMD "}", "color: unknown key");
    spec_bad("{\"name\":\"x\",\"protocol\":\"grpc\"," CMD "}", "protocol: must be one of stdio, lambda, http");
    spec_bad("{\"name\":\"x\",\"rootfs\":\"rel\"," CMD "}",
             "rootfs: must be an absolute path of at most 4095 bytes without . or .. components");
    spec_bad("{\"name\":\"x\",\"rootfs\":\"/a/../b\"," CMD "}",
             "rootfs: must be an absolute path of at most 4095 bytes without . or .. components");
    spec_bad("{\"name\":\"x\",\"mounts\":{}," CMD "}", "mounts: must be an array of at most 32 mounts");
    spec_bad("{\"name\":\"x\",\"mounts\":[{\"target\":\"/a\"}]," CMD "}", "mounts[0].source: required");
    spec_bad("{\"name\":\"x\",\"mounts\":[{\"source\":\"/a\",\"target\":\"/a\",\"rw\":1}]," CMD "}",
             "mounts[0].rw: unknown key");
    spec_bad("{\"name\":\"x\",\"mounts\":[{\"source\":\"/a\",\"target\":\"/proc/x\"}]," CMD "}",
             "mounts[0].target: must not be /, nor at or under /proc, /sys or /dev");
    spec_bad("{\"name\":\"x\",\"mounts\":[{\"source\":\"/a\",\"target\":\"//\"}]," CMD "}",
             "mounts[0].target: must not be /, nor at or under /proc, /sys or /dev");
    spec_bad("{\"name\":\"x\",\"mounts\":[{\"source\":\"/a\",\"target\":\"/a\"},{\"source\":\"/b\",\"target\":\"/a\"}]," CMD "}",
             "mounts[1].target: duplicate of mounts[0].target");
    spec_bad("{\"name\":\"x\",\"mounts\":[{\"source\":\"/a\",\"target\":\"/a\",\"readonly\":\"yes\"}]," CMD "}",
             "mounts[0].readonly: must be true or false");
    spec_bad("{\"name\":\"x\",\"env\":[]," CMD "}", "env: must be an object of at most 256 string values");
    spec_bad("{\"name\":\"x\",\"env\":{\"A\":1}," CMD "}", "env.A: must be a string of at most 32768 bytes");
    spec_bad("{\"name\":\"x\",\"env\":{\"1A\":\"v\"}," CMD "}", "env.1A: name must match [A-Za-z_][A-Za-z0-9_]{0,127}");
    spec_bad("{\"name\":\"x\",\"env\":{\"A=B\":\"v\"}," CMD "}", "env.A=B: name must match [A-Za-z_][A-Za-z0-9_]{0,127}");
    spec_bad("{\"name\":\"x\",\"env\":{\"HEARTH_FUNCTION\":\"v\"}," CMD "}",
             "env.HEARTH_FUNCTION: names starting with HEARTH_ are set by hearth");
    spec_bad("{\"name\":\"x\",\"memory_mb\":8," CMD "}", "memory_mb: must be an integer from 16 to 65536");
    spec_bad("{\"name\":\"x\",\"cpus\":0," CMD "}", "cpus: must be a number from 0.01 to 1024");
    spec_bad("{\"name\":\"x\",\"cpus\":\"1\"," CMD "}", "cpus: must be a number from 0.01 to 1024");
    spec_bad("{\"name\":\"x\",\"pids\":1," CMD "}", "pids: must be an integer from 2 to 65536");
    spec_bad("{\"name\":\"x\",\"timeout_ms\":0," CMD "}", "timeout_ms: must be an integer from 1 to 3600000");
    spec_bad("{\"name\":\"x\",\"tmp_mb\":0," CMD "}", "tmp_mb: must be an integer from 1 to 65536");
    spec_bad("{\"name\":\"x\",\"concurrency\":2," CMD "}", "concurrency: must be 1 for protocol stdio");
    spec_bad("{\"name\":\"x\",\"concurrency\":0,\"protocol\":\"http\"," CMD "}",
             "concurrency: must be an integer from 1 to 1000");
    spec_bad("{\"name\":\"x\",\"min_warm\":11," CMD "}", "min_warm: must not exceed max_sandboxes (10)");
    spec_bad("{\"name\":\"x\",\"max_sandboxes\":0," CMD "}", "max_sandboxes: must be an integer from 1 to 10000");
    spec_bad("{\"name\":\"x\",\"keep_alive_ms\":-1," CMD "}", "keep_alive_ms: must be an integer from 0 to 86400000");
    spec_bad("{\"name\":\"x\",\"seccomp\":\"none\"," CMD "}", "seccomp: must be \"default\" or an absolute path to a profile");
    spec_bad("{\"name\":\"x\",\"max_attempts\":0," CMD "}", "max_attempts: must be an integer from 1 to 100");
    spec_bad("{\"name\":\"x\"," CMD ",\"name\":\"y\"}",
             "invalid JSON at line 1 column 41: duplicate object key near '\"name\"'");
    spec_bad("{\"name\":\"x\\u0000y\"," CMD "}",
             "invalid JSON at line 1 column 18: \\u0000 is not allowed without JSON_ALLOW_NUL near '\"x\\u0000y\"'");

    cfg_function_t *fn = NULL;
    hearth_error_t err = {0};
    const char *j = "{\"name\":\"x\"," CMD "}";
    CHECK(cfg_function_parse(j, strlen(j), NULL, &fn, &err) < 0 && strcmp(err.msg, "tenant: required") == 0,
          "no tenant: %s", err.msg);
}

static void t_spec_bounds(void)
{
    /* 257 argv entries, an oversized document. */
    char *big = malloc(CFG_SPEC_MAX_BYTES + 64);
    REQUIRE(big != NULL, "malloc");
    size_t n = (size_t)sprintf(big, "{\"name\":\"x\",\"command\":[");
    for (int i = 0; i < 257; i++)
        n += (size_t)sprintf(big + n, "%s\"a\"", i ? "," : "");
    strcpy(big + n, "]}");
    spec_bad(big, "command: must be a non-empty array of strings (at most 256)");
    memset(big, ' ', CFG_SPEC_MAX_BYTES + 1);
    big[CFG_SPEC_MAX_BYTES + 1] = '\0';
    spec_bad(big, "document of 262145 bytes is larger than the limit of 262144");
    free(big);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}

static void t_functions_dir(void)
{
    char dir[] = "/tmp/hearth-cfg-XXXXXX";
    char *made = mkdtemp(dir);
    REQUIRE(made != NULL, "mkdtemp");
    char p[512];
    snprintf(p, sizeof(p), "%s/b.json", dir);
    write_text(p, "{\"name\":\"b\",\"tenant\":\"acme\"," CMD "}");
    snprintf(p, sizeof(p), "%s/a.json", dir);
    write_text(p, "{\"name\":\"a\",\"tenant\":\"acme\"," CMD "}");
    snprintf(p, sizeof(p), "%s/notes.txt", dir);
    write_text(p, "ignored");
    snprintf(p, sizeof(p), "%s/.hidden.json", dir);
    write_text(p, "ignored");

    cfg_function_list_t list;
    hearth_error_t err = {0};
    CHECK(cfg_functions_load_dir(dir, &list, &err) == 0, "load: %s", err.msg);
    CHECK(list.n == 2 && strcmp(list.items[0]->name, "a") == 0 && strcmp(list.items[1]->name, "b") == 0,
          "sorted");
    cfg_function_list_clear(&list);

    /* A spec without tenant is refused with the file's name. */
    snprintf(p, sizeof(p), "%s/c.json", dir);
    write_text(p, "{\"name\":\"c\"," CMD "}");
    char want[600];
    snprintf(want, sizeof(want), "%s/c.json: tenant: required", dir);
    CHECK(cfg_functions_load_dir(dir, &list, &err) < 0 && strcmp(err.msg, want) == 0, "got %s", err.msg);
    write_text(p, "{\"name\":\"a\",\"tenant\":\"acme\"," CMD "}");
    snprintf(want, sizeof(want), "%s/c.json: function acme/a is already defined in %s/a.json", dir, dir);
    CHECK(cfg_functions_load_dir(dir, &list, &err) < 0 && strcmp(err.msg, want) == 0, "got %s", err.msg);
    unlink(p);

    CHECK(cfg_functions_load_dir("/nonexistent-hearth", &list, &err) < 0 && err.code == ENOENT,
          "missing dir: %s", err.msg);

    snprintf(p, sizeof(p), "rm -rf %s", dir);
    CHECK(system(p) == 0, "cleanup");
}

static void t_example_configs(void)
{
    cfg_daemon_t *cfg = NULL;
    hearth_error_t err = {0};
    if (access("configs/hearthd.json", R_OK) != 0)
        SKIP("run from the repository root to check configs/");
    CHECK(cfg_daemon_load("configs/hearthd.json", &cfg, &err) == 0, "%s", err.msg);
    cfg_daemon_free(cfg);
    cfg_function_list_t list;
    CHECK(cfg_functions_load_dir("configs/functions", &list, &err) == 0, "%s", err.msg);
    CHECK(list.n >= 2, "examples: %zu", list.n);
    cfg_function_list_clear(&list);
}

int main(void)
{
    RUN(t_daemon_defaults);
    RUN(t_daemon_full);
    RUN(t_daemon_refusals);
    RUN(t_spec_defaults);
    RUN(t_spec_round_trip);
    RUN(t_spec_refusals);
    RUN(t_spec_bounds);
    RUN(t_functions_dir);
    RUN(t_example_configs);
    return harness_done();
}
