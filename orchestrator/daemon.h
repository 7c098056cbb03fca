/* hearthd's core: the context every part of the daemon shares, the
 * sandboxes it runs (the scheduler's provider), and invocations from
 * acceptance to response. One libevent loop owns all of it, without locks. */
#ifndef HEARTH_DAEMON_H
#define HEARTH_DAEMON_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "common/idmap.h"
#include "common/util.h"
#include "common/version.h"
#include "orchestrator/auth.h"
#include "orchestrator/config.h"
#include "orchestrator/journal.h"
#include "orchestrator/metrics.h"
#include "orchestrator/registry.h"
#include "orchestrator/store.h"
#include "sandbox/sandbox.h"
#include "scheduler/scheduler.h"

typedef struct hd_sandbox hd_sandbox_t;
typedef struct hd_inv hd_inv_t;
typedef struct proto_call proto_call_t;
typedef struct hd_http hd_http_t;

/* CPU a destroyed sandbox burnt since its last charge, charged later. */
typedef struct hd_overhead {
    reg_function_t *fn;
    uint64_t cpu_ns;
    struct hd_overhead *next;
} hd_overhead_t;

/* A sandbox whose init was killed, torn down once it is gone (sandbox_free). */
typedef struct hd_retiring {
    struct hearth *hd;
    sbx_t *sbx;
    reg_function_t *fn;      /* a reference, or NULL (prewarm) */
    uint64_t cpu_charged_ns; /* what was charged already */
    struct event *ev;        /* init's end */
    bool gone;               /* init is gone: torn down at the next loop turn (on_retired) */
    struct hd_retiring *prev, *next;
} hd_retiring_t;

/* Usage to add to the store (hd_usage_flush): a function's charges since
 * the last flush, summed. */
typedef struct hd_usage {
    const reg_function_t *fn; /* a reference */
    store_usage_t delta;
} hd_usage_t;

/* Metric families, registered once at start. */
typedef struct hd_metrics {
    metrics_t *m;
    metrics_family_t *invocations;  /* hearth_invocations_total{tenant,function,start,outcome} */
    metrics_family_t *duration;     /* hearth_invocation_duration_seconds{tenant,function} */
    metrics_family_t *cold_start;   /* hearth_cold_start_seconds{start} */
    metrics_family_t *queue_depth;  /* hearth_queue_depth{tenant,function} */
    metrics_family_t *sandboxes;    /* hearth_sandboxes{tenant,function,state} */
    metrics_family_t *tenant_cpu;   /* hearth_tenant_cpu_seconds_total{tenant} */
    metrics_family_t *fn_cpu;       /* hearth_function_cpu_seconds_total{tenant,function} */
    metrics_family_t *desired;      /* hearth_scaler_desired{tenant,function} */
    metrics_family_t *panic;        /* hearth_scaler_panic{tenant,function} */
    metrics_family_t *rejected;     /* hearth_rejected_total{tenant,function,reason} */
    metrics_family_t *connections;  /* hearth_open_connections */
    metrics_family_t *uptime;       /* hearth_uptime_seconds */
    metrics_family_t *build;        /* hearth_build_info{version,cgroup} */
    metrics_family_t *host_sbx;     /* hearth_host_sandboxes{kind} */
    metrics_family_t *sandbox_fail; /* hearth_sandbox_start_failures_total */
    metrics_family_t *async_depth;  /* hearth_async_queue_depth{state} */
    metrics_family_t *async_age;    /* hearth_async_oldest_age_seconds */
    metrics_family_t *async_retries; /* hearth_async_retries_total */
    metrics_family_t *async_dead;   /* hearth_async_dead_letters_total */
    metrics_family_t *async_accepted; /* hearth_async_accepted_total */
} hd_metrics_t;

typedef struct hearth {
    struct event_base *base;
    char *config_path;
    cfg_daemon_t *cfg;
    auth_t *auth;            /* swapped on SIGHUP; requests hold their own ref */
    store_t *store;
    jnl_t *jnl;              /* async invocations, durable */
    registry_t *reg;
    sched_t *sched;
    sbx_host_t *host;
    hd_metrics_t met;
    struct evhttp *http;     /* both listeners */
    struct evhttp_bound_socket *unix_sock;
    struct evhttp_bound_socket *tcp_sock;
    struct event *ev_host;   /* spawner answers */
    struct event *ev_tick;   /* scheduler timers */
    struct event *ev_deferred; /* reports the provider may not make from its callbacks */
    struct event *ev_sigterm, *ev_sigint, *ev_sighup;
    struct event *ev_drain;  /* drain deadline */
    struct event *ev_sweep;  /* api.c: connections let go, slow first requests */
    struct event *ev_flush;  /* async.c: group commit of accepts, once per loop iteration */
    struct event *ev_async;  /* async.c: claim due invocations, deliver callbacks, prune */
    uint32_t async_in_flight; /* async invocations submitted to the scheduler */
    int64_t async_seen_retries, async_seen_dead, async_seen_accepted; /* for the counters */
    uint64_t last_prune_ns;
    idmap_t sandboxes;       /* sandbox id → hd_sandbox_t */
    idmap_t tickets;         /* spawner ticket → hd_sandbox_t */
    idmap_t invocations;     /* scheduler invocation id → hd_inv_t */
    uint64_t next_inv;       /* scheduler invocation ids */
    hd_sandbox_t *deferred;  /* sandboxes with a report to make (via ->deferred_next) */
    hd_inv_t *deferred_inv;  /* invocations to finish outside provider callbacks */
    hd_overhead_t *overheads; /* tear-down CPU to charge outside provider callbacks */
    idmap_t usage;           /* function id → its hd_usage_t: usage not yet in the store */
    struct event *ev_usage;  /* its group commit, USAGE_FLUSH_US after the first charge */
    struct event *ev_ahead;  /* cgroups made ahead of need, after creations (start_create) */
    hd_retiring_t *retiring; /* sandboxes being torn down */
    struct event *ev_retired; /* tears down the gone ones, a loop turn later (on_retired) */
    bool draining;           /* SIGTERM: no new calls, /readyz 503 */
    uint64_t started_ns;     /* monotonic start, for uptime */
    uint32_t connections;    /* open client connections */
    idmap_t conns;           /* our bufferevent → api.c's connection record */
    idmap_t start_errors;    /* function id → its last sandbox start failure (malloc'd), for 502s */
    char **tenant_names;     /* scheduler tenant id - 1 → name; only grows, so ids survive SIGHUP */
    size_t n_tenant_names;
    int host_netns;          /* our own network namespace: protocol http returns to it after making a
                                socket inside a sandbox's */
} hearth_t;

/* A sandbox as the daemon sees it. */
typedef enum { HD_SBX_CREATING, HD_SBX_READY, HD_SBX_DEAD } hd_sbx_state_t;

struct hd_sandbox {
    hearth_t *hd;
    uint64_t id;               /* the scheduler's sandbox id */
    uint64_t ticket;           /* spawner ticket while creating */
    hd_sbx_state_t state;
    sbx_t *sbx;                /* NULL while creating */
    reg_function_t *fn;        /* the version it serves; NULL for a generic one */
    bool generic;              /* prewarmed, not yet tied to a function */
    bool destroy_requested;    /* the scheduler asked while it was creating */
    uint64_t created_ns;       /* when creation was asked for */
    uint64_t ready_ns;
    uint64_t cpu_charged_ns;   /* cgroup CPU already charged (invocations and overhead) */
    struct event *ev_ctl;      /* init's messages */
    proto_call_t *call;        /* the invocation running here (concurrency 1) */
    struct hd_runtime *rt;     /* protocol lambda: the runtime and its API server */
    struct hd_httpsrv *srv;    /* protocol http: the function's server and our connection to it */
    enum { HD_REPORT_NONE, HD_REPORT_READY, HD_REPORT_FAILED, HD_REPORT_DIED } report;
    hd_sandbox_t *deferred_next;
};

typedef enum {
    HD_OUT_OK,         /* exit 0 */
    HD_OUT_FAILED,     /* non-zero exit: 502 */
    HD_OUT_CRASHED,    /* killed by a signal: 502 */
    HD_OUT_OOM,        /* 502 out_of_memory */
    HD_OUT_TIMEOUT,    /* 504 */
    HD_OUT_TOO_LARGE,  /* output over the cap: 502 */
    HD_OUT_START,      /* could not start the process: 502 */
    HD_OUT_LOST,       /* the sandbox died: 502 */
    HD_OUT_CANCELLED,  /* the client went away */
} hd_outcome_t;

/* One invocation, from submit to response. */
struct hd_inv {
    hearth_t *hd;
    uint64_t sched_id;         /* the scheduler's id */
    char id[33];               /* X-Hearth-Invocation-Id: 128 random bits, hex */
    struct evhttp_request *req; /* answered exactly once (evhttp frees it then) */
    bool client_gone;          /* the connection closed before the answer */
    bool async;                /* from the journal: the result goes there, not to a client */
    bool lambda;               /* came in on the Lambda-compatible endpoint: answer as AWS does */
    bool want_log;             /* X-Amz-Log-Type: Tail */
    reg_function_t *fn;        /* the version it was submitted for */
    struct evbuffer *payload;
    uint64_t accepted_ns;
    uint64_t started_ns;
    sched_start_t start_kind;
    hd_sandbox_t *sb;          /* where it runs */
    bool done;                 /* reported to the scheduler */
    /* the result */
    hd_outcome_t outcome;
    int status;                /* exit code or signal */
    struct evbuffer *output;   /* stdout */
    char log_tail[4096];       /* end of stderr */
    size_t log_len;
    uint64_t cpu_ns;
    char message[256];         /* for errors */
    char error_type[64];       /* lambda: the runtime's own errorType, when it reported one */
    hd_http_t *http;           /* protocol http over /v1: the request to pass on, and the answer back */
    hd_inv_t *deferred_next;
};

/* Protocol http, invoked over /v1: the caller's request as the function's
 * server gets it, and the server's answer as the caller gets it back. */
struct hd_http {
    enum evhttp_cmd_type method;
    char *target;               /* path and query below .../invocations: "/a/b?x=1", at least "/" */
    struct evkeyvalq headers;   /* the caller's, minus hop-by-hop ones and Authorization */
    int status;                 /* the server's answer; 0 until a complete one came */
    char reason[64];            /* its reason phrase */
    struct evkeyvalq resp_headers; /* its headers, minus hop-by-hop ones */
};

/* daemon.c */
int hd_init(hearth_t *hd, hearth_error_t *err);   /* scheduler, provider, maps, events */
void hd_shutdown(hearth_t *hd);
/* Write the usage not yet in the store, in one transaction. Usage is
 * stored at most USAGE_FLUSH_US after it was charged, long after the
 * answers that charged it went out, one transaction for every call of that
 * window; whoever reads the store's usage flushes first. */
#define USAGE_FLUSH_US 10000
void hd_usage_flush(hearth_t *hd);
/* Put a function (new or new version) and its tenant into the scheduler. */
int hd_sched_function(hearth_t *hd, const reg_function_t *fn, hearth_error_t *err);
int hd_sched_tenants(hearth_t *hd, hearth_error_t *err);
/* Accept an invocation of fn for the request; the response comes later. */
int hd_invoke(hearth_t *hd, struct evhttp_request *req, const reg_function_t *fn, struct evbuffer *payload,
              hearth_error_t *err);
/* The same for either priority; id NULL: a fresh one (async ones keep the journal's). */
enum { HD_INV_LAMBDA = 1 << 0, HD_INV_LOG_TAIL = 1 << 1 }; /* how to answer */
int hd_submit(hearth_t *hd, struct evhttp_request *req, const reg_function_t *fn, struct evbuffer *payload,
              const char *id, sched_prio_t prio, unsigned flags, hearth_error_t *err);
/* hd_invoke for an http function over /v1; takes http over on success. */
int hd_invoke_http(hearth_t *hd, struct evhttp_request *req, const reg_function_t *fn, struct evbuffer *payload,
                   hd_http_t *http, hearth_error_t *err);
/* 128 random bits as 32 hex digits: invocation ids unique across hosts. */
void hd_random_id(char out[33]);

/* For protocols that keep one process running (lambda, http): notes its
 * pid from its STARTED event into *pid (while 0), and says whether ev
 * means it is gone: it ended, it could not start, or the sandbox died. */
bool hd_process_gone(const sbx_event_t *ev, pid_t *pid);

#define HD_DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* The environment of a function's process, as NAME=VALUE strings: first,
 * then the spec's env, then each of defaults whose name the spec does not
 * set, then last (each NULL-terminated, or NULL). One allocation holds the
 * array and its strings: free() it. NULL when out of memory. */
const char **hd_function_env(const cfg_function_t *fn, const char *const *first, const char *const *defaults,
                             const char *const *last);
uint64_t hd_tenant_id(hearth_t *hd, const char *tenant);
/* Refresh gauges (queue depth, sandboxes by state, scaler) before /metrics. */
void hd_metrics_refresh(hearth_t *hd);
bool hd_idle(const hearth_t *hd); /* nothing running or queued */
/* The client of req went away: forget req, stop its invocation. */
void hd_client_gone(hearth_t *hd, struct evhttp_request *req);

/* A protocol's invocation in flight: the protocols behind one table. The
 * result lands in inv, then the protocol calls hd_call_done (from the loop). */
typedef struct proto_ops {
    void (*on_event)(proto_call_t *c, const sbx_event_t *ev); /* the sandbox's init reported */
    void (*cancel)(proto_call_t *c);                          /* the client went away */
    void (*free)(proto_call_t *c);
} proto_ops_t;
struct proto_call {
    const proto_ops_t *ops; /* first member of every protocol's call */
    uint64_t cpu_before;    /* the sandbox's cgroup CPU when the call started */
};
static inline void proto_on_event(proto_call_t *c, const sbx_event_t *ev) { c->ops->on_event(c, ev); }
static inline void proto_cancel(proto_call_t *c) { c->ops->cancel(c); }
static inline void proto_free(proto_call_t *c) { if (c != NULL) c->ops->free(c); }
void hd_call_done(hd_sandbox_t *sb, hd_inv_t *inv);

/* protocol_stdio.c: a fresh process of the command per invocation. */
int proto_stdio_start(hd_sandbox_t *sb, hd_inv_t *inv, hearth_error_t *err);

/* protocol_lambda.c: a long-lived runtime polling the Lambda Runtime API,
 * served by us on 127.0.0.1:9001 inside the sandbox's own network. */
int lambda_runtime_start(hd_sandbox_t *sb, hearth_error_t *err); /* the sandbox is up: start its runtime */
int proto_lambda_start(hd_sandbox_t *sb, hd_inv_t *inv, hearth_error_t *err);
void lambda_sandbox_event(hd_sandbox_t *sb, const sbx_event_t *ev); /* init's news about the runtime */
void lambda_sandbox_free(hd_sandbox_t *sb);
/* protocol_http.c: a long-lived server on 127.0.0.1:8080 inside the
 * sandbox, proxied over one keep-alive connection per sandbox. */
int http_server_start(hd_sandbox_t *sb, hearth_error_t *err); /* the sandbox is up: start its server */
int proto_http_start(hd_sandbox_t *sb, hd_inv_t *inv, hearth_error_t *err);
void http_sandbox_event(hd_sandbox_t *sb, const sbx_event_t *ev); /* init's news about the server */
void http_sandbox_free(hd_sandbox_t *sb);
/* The caller's request for the function's server: its method, path (the
 * raw path below .../invocations; NULL: none) and query, headers filtered.
 * NULL with err on a method the protocol does not pass on. */
hd_http_t *http_request_new(struct evhttp_request *req, const char *path, hearth_error_t *err);
void http_request_free(hd_http_t *h);
/* daemon.c: the runtime or server came up (first `next`, port accepts) or did not. */
void hd_sandbox_up(hd_sandbox_t *sb);
void hd_sandbox_failed(hd_sandbox_t *sb, const char *why);
/* It died on its own while idle: report it (from ev_deferred). */
void hd_sandbox_died(hd_sandbox_t *sb);
/* The last reason a sandbox of function fn_id failed to start, or "". */
const char *hd_start_error(hearth_t *hd, uint64_t fn_id);

/* async.c: invocations accepted with `Prefer: respond-async` */
int async_start(hearth_t *hd, hearth_error_t *err); /* after hd_init; the journal is open */
void async_stop(hearth_t *hd);
/* Stage an accept; the 202 (or 503) goes out after the group commit. */
int async_accept(hearth_t *hd, struct evhttp_request *req, const reg_function_t *fn, struct evbuffer *payload,
                 const char *idempotency_key, const char *callback_url, hearth_error_t *err);
/* A claimed invocation's process is about to start: its attempt counts from now. */
void async_started(hearth_t *hd, hd_inv_t *inv);
/* A claimed invocation ended (or was turned away): record it. */
void async_finished(hearth_t *hd, hd_inv_t *inv, const char *rejected);
void async_metrics(hearth_t *hd);

/* reply.c: evhttp_send_reply, and the reply written to the socket now
 * rather than when the loop next finds the socket writable: one loop turn
 * less before the client has it. evhttp still finishes the request on that
 * turn (its write callback runs once the output is empty, whoever emptied
 * it). Every reply of hearthd's goes through it. */
void hd_send_reply(struct evhttp_request *req, int code, const char *reason, struct evbuffer *body);

/* api.c */
int api_start(hearth_t *hd, hearth_error_t *err);
void api_stop_listening(hearth_t *hd);
void api_free(hearth_t *hd);
void api_respond_invocation(hd_inv_t *inv);
/* lambda.c: the Lambda-compatible invoke endpoint (POST /2015-03-31/functions/{name}/invocations). */
void lambda_invoke(hearth_t *hd, struct evhttp_request *req, const char *name);
void lambda_respond(hd_inv_t *inv);
void lambda_respond_rejected(hd_inv_t *inv, int status, const char *type, const char *message);
void api_respond_rejected(hd_inv_t *inv, sched_reject_reason_t reason, uint32_t retry_after_ms);

#endif
