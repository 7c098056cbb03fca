/* The daemon's config file and function specs: JSON in, plain validated
 * structs out, and function specs back to JSON (for GET and for storage).
 *
 * Both parsers take outside input (the config at start and on SIGHUP, specs
 * from the API and from functions_dir) and are fuzzed. Every key is known,
 * every number, string and array is bounded, and a refusal names the key's
 * JSON path and the reason, e.g. `tenants[1].weight: must be an integer from
 * 1 to 1000`. Refusals set err->code to EINVAL. The key-by-key reference with
 * defaults and bounds is configs/README.md. */
#ifndef HEARTH_CONFIG_H
#define HEARTH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "../common/util.h"
#include "../sandbox/sandbox.h"

#define CFG_CONFIG_MAX_BYTES (1u << 20) /* a config file larger than this is refused */
#define CFG_SPEC_MAX_BYTES (256u << 10) /* likewise one function spec */
#define CFG_NAME_MAX 63                 /* function and tenant names */
#define CFG_PATH_MAX 4095               /* file system paths */

typedef enum cfg_protocol {
    CFG_PROTO_STDIO,  /* a fresh process per invocation, payload on stdin */
    CFG_PROTO_LAMBDA, /* a long-lived runtime polling the Lambda Runtime API */
    CFG_PROTO_HTTP,   /* a long-lived server on 127.0.0.1:8080 in the sandbox */
} cfg_protocol_t;

typedef struct cfg_aws_key {
    char *access_key_id;     /* 16 to 128 of [A-Z0-9] */
    char *secret_access_key; /* 16 to 128 printable ASCII, no spaces */
} cfg_aws_key_t;

typedef struct cfg_tenant {
    char *name;                   /* [a-z0-9][a-z0-9_-]{0,62}, unique */
    uint8_t (*tokens_sha256)[32]; /* SHA-256 of each accepted bearer token */
    size_t n_tokens;
    uid_t *uids;                  /* peer uids accepted on the Unix socket */
    size_t n_uids;
    bool admin;                   /* may act for every tenant */
    uint32_t max_concurrency;     /* invocations running at once, all functions */
    uint32_t weight;              /* share under contention, 1..1000 */
    uint64_t cpu_ms_per_minute;   /* CPU budget; 0: none */
    cfg_aws_key_t *aws_keys;      /* SigV4 credentials (Lambda-compatible endpoint) */
    size_t n_aws_keys;
} cfg_tenant_t;

typedef struct cfg_daemon {
    char *listen_unix;          /* socket path; "" disables */
    char *listen_http;          /* "host:port"; "" disables TCP */
    char *http_host;            /* listen_http split: host without brackets, NULL if disabled */
    uint16_t http_port;         /* listen_http split: port */
    char *state_dir;            /* SQLite database lives here */
    char *functions_dir;        /* *.json specs re-read on SIGHUP; "" for none */
    char *cgroup_root;          /* our subtree under each cgroup hierarchy */
    uint32_t max_sandboxes;     /* live sandboxes on this host */
    uint64_t memory_budget_mb;  /* sum of sandboxes' memory limits on this host */
    uint64_t max_body_bytes;    /* request bodies over this answer 413 */
    uint32_t max_header_bytes;  /* request headers over this are refused */
    uint32_t max_connections;   /* open client connections, both listeners */
    uint32_t read_timeout_ms;   /* a client must send its request within this */
    uint32_t write_timeout_ms;  /* and take our response within this */
    uint32_t drain_timeout_ms;  /* SIGTERM: in-flight calls get this long */
    uid_t uid_base;             /* first host uid for sandboxes */
    uint32_t uid_count;         /* host uids reserved for sandboxes */
    uint32_t prewarm_pool;      /* spare empty sandbox shells (cgroup + namespaces) kept ready */
    uint32_t result_ttl_s;      /* async results are kept this long */
    hearth_log_level_t log_level;
    cfg_tenant_t *tenants;      /* at least one */
    size_t n_tenants;
    char **mount_sources;       /* dirs an API spec's mounts may bind from (or below); see cfg_function_check_paths */
    size_t n_mount_sources;
    char **rootfs_dirs;         /* likewise for an API spec's rootfs other than "/" */
    size_t n_rootfs_dirs;
    char **seccomp_dirs;        /* likewise for an API spec's seccomp profile other than "default" */
    size_t n_seccomp_dirs;
} cfg_daemon_t;

typedef struct cfg_mount {
    char *source;  /* absolute host path */
    char *target;  /* absolute path inside the sandbox */
    bool readonly; /* default true */
} cfg_mount_t;

typedef struct cfg_env {
    char *name;  /* [A-Za-z_][A-Za-z0-9_]{0,127}, not HEARTH_* */
    char *value;
} cfg_env_t;

typedef struct cfg_function {
    char *name;              /* [a-z0-9][a-z0-9_-]{0,62}, unique per tenant */
    char *tenant;            /* owner */
    cfg_protocol_t protocol; /* default stdio */
    char **command;          /* argv, NULL-terminated, n_command >= 1 */
    size_t n_command;
    char *rootfs;            /* absolute path; "/" is the host's root, read-only */
    cfg_mount_t *mounts;
    size_t n_mounts;
    cfg_env_t *env;          /* sorted by name */
    size_t n_env;
    uint32_t memory_mb;      /* 128 */
    double cpus;             /* 1.0 */
    uint32_t pids;           /* 64 */
    uint32_t timeout_ms;     /* 30000 */
    uint32_t tmp_mb;         /* 64 */
    uint32_t concurrency;    /* invocations per sandbox at once; 1 (always 1 for stdio) */
    uint32_t min_warm;       /* 0 */
    uint32_t max_sandboxes;  /* 10 */
    uint32_t keep_alive_ms;  /* idle sandboxes live this long; 60000 */
    char *seccomp;           /* "default" or an absolute profile path */
    uint32_t max_attempts;   /* async tries before dead letter; 3 */
} cfg_function_t;

typedef struct cfg_function_list {
    cfg_function_t **items; /* owned */
    char **paths;           /* file each item came from, owned */
    size_t n;
} cfg_function_list_t;

/* Parse and validate a daemon config held in memory (len bytes, need not
 * be NUL-terminated). On success *out is owned by the caller. */
int cfg_daemon_parse(const char *json, size_t len, cfg_daemon_t **out, hearth_error_t *err);
/* Read and parse a config file; errors are prefixed with its path. */
int cfg_daemon_load(const char *path, cfg_daemon_t **out, hearth_error_t *err);
void cfg_daemon_free(cfg_daemon_t *cfg);
/* Free what a tenant owns (secrets wiped) and zero it. */
void cfg_tenant_clear(cfg_tenant_t *t);
/* The tenant called name, or NULL. */
const cfg_tenant_t *cfg_daemon_tenant(const cfg_daemon_t *cfg, const char *name);

/* Parse and validate one function spec. A spec without "tenant" gets
 * default_tenant (the caller's); if both are missing the spec is refused.
 * Whether the caller may deploy for the spec's tenant is auth's question,
 * not the parser's. */
int cfg_function_parse(const char *json, size_t len, const char *default_tenant, cfg_function_t **out,
                       hearth_error_t *err);
/* The same from an already parsed JSON value. */
int cfg_function_from_json(json_t *obj, const char *default_tenant, cfg_function_t **out,
                           hearth_error_t *err);
void cfg_function_free(cfg_function_t *fn);
/* Every key with defaults filled in; a new reference, NULL only on ENOMEM. */
json_t *cfg_function_to_json(const cfg_function_t *fn);
/* The same as compact text with sorted keys (stable: equal specs give equal
 * text). malloc'd; NULL only on ENOMEM. */
char *cfg_function_dump(const cfg_function_t *fn);
/* A deep copy; NULL only on ENOMEM. */
cfg_function_t *cfg_function_dup(const cfg_function_t *fn);
/* True when both specs mean the same function. */
bool cfg_function_equal(const cfg_function_t *a, const cfg_function_t *b);
const char *cfg_protocol_name(cfg_protocol_t p);

/* Fill a sandbox spec from a function spec. mounts must have room for
 * fn->n_mounts entries; spec points into fn and mounts, so both must
 * outlive it. */
void cfg_function_sbx_spec(const cfg_function_t *fn, sbx_mount_t *mounts, sbx_spec_t *spec);

/* A function's host paths, resolved (realpath): what the sandbox binds. */
typedef struct cfg_host_paths {
    char *rootfs;   /* NULL: the host's / */
    char *seccomp;  /* NULL: the default profile */
    char **sources; /* one per mount, in order */
    size_t n;
} cfg_host_paths_t;

/* Check the host paths fn names (mounts[].source, rootfs, seccomp) against
 * cfg, and resolve them into *out (may be NULL; else cleared with
 * cfg_host_paths_clear, also on failure).
 *
 * Every spec: each path is resolved, and a path at, under or above /proc,
 * /sys, /dev, state_dir or the Unix socket's directory is refused (binds
 * are recursive, so containing one is as bad as naming it). A rootfs of
 * "/" (the default) is the host's root, which the sandbox builds itself,
 * and is not checked; nor is the "default" seccomp profile.
 * Unless trusted (a functions_dir spec: written by the operator), a mount
 * source must, both as written and resolved, lie at or under one of
 * cfg->mount_sources, a rootfs other than "/" under cfg->rootfs_dirs and a
 * seccomp profile file under cfg->seccomp_dirs; an empty list allows
 * nothing. Paths outside the list are refused before the file system is
 * asked, so that the answer says nothing about them.
 *
 * Run at deploy and again at every sandbox creation: a checked path may
 * have become a symlink since. Refusals are EINVAL and name the key. */
int cfg_function_check_paths(const cfg_daemon_t *cfg, const cfg_function_t *fn, bool trusted,
                             cfg_host_paths_t *out, hearth_error_t *err);
void cfg_host_paths_clear(cfg_host_paths_t *p);
/* Point spec (from cfg_function_sbx_spec) and its mounts at the resolved
 * paths; p must outlive spec. */
void cfg_host_paths_apply(const cfg_host_paths_t *p, sbx_mount_t *mounts, sbx_spec_t *spec);

/* Load every *.json file of dir (not recursive, hidden files skipped),
 * each one spec with an explicit tenant, sorted by file name. Any bad file
 * fails the whole load with its path in the message, so that a reload
 * never half-applies. Two files defining the same tenant/name are refused. */
int cfg_functions_load_dir(const char *dir, cfg_function_list_t *out, hearth_error_t *err);
void cfg_function_list_clear(cfg_function_list_t *list);

#endif
