/* hearthd's core: the scheduler's provider (sandboxes built, specialised,
 * destroyed), invocations from submit to response, accounting and metrics.
 *
 * The provider's callbacks run inside scheduler calls and may not call
 * back into it; what they have to report (a sandbox ready or failed, an
 * invocation that could not start) is queued and reported from
 * ev_deferred. Likewise a finished invocation is reported from there, never
 * from inside its sandbox's own callback, since the report may destroy
 * the sandbox. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "orchestrator/daemon.h"


/* The daemon itself, as a caller of the registry: sees every function. */
static const auth_tenant_t system_caller = {.name = (char *)"hearthd", .admin = true};


static void store_usage(hearth_t *hd, const reg_function_t *fn, const store_usage_t *delta)
{
    hearth_error_t err = {0};
    if (store_add_usage(hd->store, fn->spec->tenant, fn->spec->name, delta, &err) < 0)
        hearth_log(HEARTH_LOG_ERROR, "usage of %s/%s not stored: %s", fn->spec->tenant, fn->spec->name, err.msg);
}

/* Queue usage for the store (see hd_usage_flush): one pending record a
 * function, which every charge until the flush adds to. */
static void add_usage(hearth_t *hd, const reg_function_t *fn, const store_usage_t *delta)
{
    if (hd->ev_usage == NULL) { /* not started, or shut down */
        store_usage(hd, fn, delta);
        return;
    }
    hd_usage_t *u = idmap_get(&hd->usage, fn->id);
    if (u != NULL) {
        u->delta.cpu_ns_invocation += delta->cpu_ns_invocation;
        u->delta.cpu_ns_overhead += delta->cpu_ns_overhead;
        u->delta.memory_mb_ms += delta->memory_mb_ms;
        u->delta.invocations += delta->invocations;
        u->delta.errors += delta->errors;
        u->delta.cold_starts += delta->cold_starts;
        return;
    }
    bool first = hd->usage.n == 0;
    u = malloc(sizeof(*u));
    if (u == NULL || idmap_put(&hd->usage, fn->id, u) < 0) {
        free(u);
        store_usage(hd, fn, delta);
        return;
    }
    u->fn = reg_function_ref(fn);
    u->delta = *delta;
    if (first) {
        struct timeval later = {0, USAGE_FLUSH_US};
        event_add(hd->ev_usage, &later);
    }
}

void hd_usage_flush(hearth_t *hd)
{
    if (hd->usage.n == 0)
        return;
    hearth_error_t err = {0};
    bool tx = store_begin(hd->store, &err) == 0;
    if (!tx)
        hearth_log(HEARTH_LOG_ERROR, "usage: %s", err.msg);
    void *v;
    for (uint32_t pos = 0; idmap_next(&hd->usage, &pos, &v);) {
        hd_usage_t *u = v;
        store_usage(hd, u->fn, &u->delta);
        reg_function_unref(u->fn);
        free(u);
    }
    idmap_clear(&hd->usage);
    if (tx && store_commit(hd->store, &err) < 0) {
        hearth_log(HEARTH_LOG_ERROR, "usage not stored: %s", err.msg);
        store_rollback(hd->store);
    }
    if (hd->ev_usage != NULL)
        event_del(hd->ev_usage);
}

static void on_usage(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hd_usage_flush(arg);
}

/* Start-up, idle and tear-down CPU of a sandbox: its tenant's overhead,
 * in the scheduler's totals and in the store's. */
static void charge_overhead(hearth_t *hd, const reg_function_t *fn, uint64_t sandbox_id, uint64_t cpu_ns)
{
    hearth_error_t err = {0};
    if (cpu_ns == 0 || fn == NULL)
        return;
    if (sandbox_id != 0)
        sched_sandbox_overhead(hd->sched, sandbox_id, cpu_ns, &err);
    else
        sched_fn_overhead(hd->sched, fn->id, cpu_ns, &err);
    store_usage_t delta = {.cpu_ns_overhead = (int64_t)cpu_ns};
    add_usage(hd, fn, &delta);
}

/* Remember why a sandbox of fn failed to start: its callers' 502 names it
 * (only theirs: another tenant's failure never shows). */
static void note_start_error(hearth_t *hd, const reg_function_t *fn, const char *why)
{
    if (fn == NULL)
        return;
    char *copy = strdup(why);
    if (copy == NULL)
        return;
    free(idmap_del(&hd->start_errors, fn->id));
    if (idmap_put(&hd->start_errors, fn->id, copy) < 0)
        free(copy);
}

const char *hd_start_error(hearth_t *hd, uint64_t fn_id)
{
    const char *e = idmap_get(&hd->start_errors, fn_id);
    return e ? e : "";
}

static void defer_sandbox(hd_sandbox_t *sb, int report)
{
    hearth_t *hd = sb->hd;
    sb->report = report;
    sb->deferred_next = hd->deferred;
    hd->deferred = sb;
    event_active(hd->ev_deferred, 0, 0);
}

static void defer_inv(hd_inv_t *inv)
{
    hearth_t *hd = inv->hd;
    inv->deferred_next = hd->deferred_inv;
    hd->deferred_inv = inv;
    event_active(hd->ev_deferred, 0, 0);
}

uint64_t hd_tenant_id(hearth_t *hd, const char *tenant)
{
    /* Only tenants of the current config count; ids come from a table that
     * only grows, so a tenant keeps its id across reloads. */
    if (cfg_daemon_tenant(hd->cfg, tenant) == NULL)
        return 0;
    for (size_t i = 0; i < hd->n_tenant_names; i++)
        if (strcmp(hd->tenant_names[i], tenant) == 0)
            return i + 1;
    return 0;
}

/* Give every tenant of the config an id (new ones at the end). */
static int number_tenants(hearth_t *hd, hearth_error_t *err)
{
    for (size_t i = 0; i < hd->cfg->n_tenants; i++) {
        const char *name = hd->cfg->tenants[i].name;
        bool known = false;
        for (size_t j = 0; j < hd->n_tenant_names && !known; j++)
            known = strcmp(hd->tenant_names[j], name) == 0;
        if (known)
            continue;
        char **grown = realloc(hd->tenant_names, (hd->n_tenant_names + 1) * sizeof(char *));
        if (grown == NULL || (grown[hd->n_tenant_names] = strdup(name)) == NULL) {
            if (grown != NULL)
                hd->tenant_names = grown;
            return hearth_error_set(err, ENOMEM, "tenants");
        }
        hd->tenant_names = grown;
        hd->n_tenant_names++;
    }
    return 0;
}

/* --- sandboxes ------------------------------------------------------------- */

static hd_sandbox_t *sandbox_new(hearth_t *hd, uint64_t id, const reg_function_t *fn)
{
    hd_sandbox_t *sb = calloc(1, sizeof(*sb));
    if (sb == NULL)
        return NULL;
    sb->hd = hd;
    sb->id = id;
    sb->fn = fn ? reg_function_ref(fn) : NULL;
    sb->generic = fn == NULL;
    sb->created_ns = now_ns();
    if (idmap_put(&hd->sandboxes, id, sb) < 0) {
        if (sb->fn)
            reg_function_unref(sb->fn);
        free(sb);
        return NULL;
    }
    return sb;
}

/* The end of a sandbox whose processes are gone or being killed. */
static void retire(hearth_t *hd, sbx_t *sbx, const reg_function_t *fn, uint64_t cpu_charged_ns)
{
    /* Once nothing runs, the cgroup's CPU figure is final. What it burnt
     * since the last charge (idle, tear-down) is overhead, charged from
     * ev_deferred: we may be inside a provider callback. */
    sbx_usage_t u;
    hearth_error_t err;
    if (sbx_kill(sbx, &err) == 0 && sbx_usage(sbx, &u, &err) == 0 && u.cpu_ns > cpu_charged_ns && fn != NULL) {
        hd_overhead_t *o = malloc(sizeof(*o));
        if (o != NULL) {
            o->fn = reg_function_ref(fn);
            o->cpu_ns = u.cpu_ns - cpu_charged_ns;
            o->next = hd->overheads;
            hd->overheads = o;
            event_active(hd->ev_deferred, 0, 0);
        }
    }
    sbx_destroy(sbx);
}

static void retiring_free(hd_retiring_t *r)
{
    hearth_t *hd = r->hd;
    if (r->prev)
        r->prev->next = r->next;
    else
        hd->retiring = r->next;
    if (r->next)
        r->next->prev = r->prev;
    event_free(r->ev);
    retire(hd, r->sbx, r->fn, r->cpu_charged_ns);
    if (r->fn)
        reg_function_unref(r->fn);
    free(r);
}

/* Init is gone, and its pidfd's event with it. Libevent removes the fd
 * from epoll at the start of the next loop turn (main.c: the change list);
 * closed before that, the pidfd would stay registered, readable for ever,
 * if another copy of it is open: a sibling init cloned by the spawner holds
 * the spawner's fds until its first instructions close them. So the pidfd
 * is closed, and the sandbox torn down, from a timer: timers fire after a
 * turn has applied its changes. */
static void on_retired(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hd_retiring_t *r = arg;
    static const struct timeval now = {0, 0};
    r->gone = true;
    evtimer_add(r->hd->ev_retired, &now);
}

static void on_retired_turn(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hearth_t *hd = arg;
    for (hd_retiring_t *r = hd->retiring, *next; r != NULL; r = next) {
        next = r->next;
        if (r->gone)
            retiring_free(r);
    }
}

static void sandbox_free(hd_sandbox_t *sb)
{
    hearth_t *hd = sb->hd;
    idmap_del(&hd->sandboxes, sb->id);
    lambda_sandbox_free(sb);
    http_sandbox_free(sb);
    if (sb->ev_ctl)
        event_free(sb->ev_ctl);
    if (sb->sbx != NULL) {
        /* Init's end takes the sandbox's processes with it and costs the
         * kernel 0.3-1 ms (its namespaces): the rest waits for it off the
         * loop, unless the loop cannot watch for it. */
        int fd = sbx_kill_start(sb->sbx);
        hd_retiring_t *r = fd >= 0 ? calloc(1, sizeof(*r)) : NULL;
        if (r != NULL && (r->ev = event_new(hd->base, fd, EV_READ, on_retired, r)) != NULL &&
            event_add(r->ev, NULL) == 0) {
            r->hd = hd;
            r->sbx = sb->sbx;
            r->fn = sb->fn; /* our reference moves there */
            sb->fn = NULL;
            r->cpu_charged_ns = sb->cpu_charged_ns;
            r->next = hd->retiring;
            if (r->next)
                r->next->prev = r;
            hd->retiring = r;
        } else {
            if (r != NULL && r->ev != NULL)
                event_free(r->ev);
            free(r);
            retire(hd, sb->sbx, sb->fn, sb->cpu_charged_ns);
        }
        sb->sbx = NULL;
    }
    if (sb->fn)
        reg_function_unref(sb->fn);
    free(sb);
}

static void on_ctl(evutil_socket_t fd, short what, void *arg);

void hd_sandbox_up(hd_sandbox_t *sb)
{
    hearth_t *hd = sb->hd;
    hearth_error_t err = {0};
    /* Start-up CPU is the tenant's overhead. */
    uint64_t cpu;
    if (sbx_cpu_ns(sb->sbx, &cpu, &err) == 0) {
        sb->cpu_charged_ns = cpu;
        if (!sb->generic)
            charge_overhead(hd, sb->fn, sb->id, cpu);
    }
    if (sched_sandbox_ready(hd->sched, sb->id, now_ns(), &err) < 0)
        hearth_log(HEARTH_LOG_ERROR, "sandbox %" PRIu64 " ready: %s", sb->id, err.msg);
}

void hd_sandbox_failed(hd_sandbox_t *sb, const char *why)
{
    hearth_t *hd = sb->hd;
    hearth_error_t err = {0};
    note_start_error(hd, sb->fn, why);
    hearth_log(HEARTH_LOG_ERROR, "sandbox for %s/%s: %s", sb->fn ? sb->fn->spec->tenant : "-",
               sb->fn ? sb->fn->spec->name : "the prewarm pool", why);
    metrics_add(metrics_series(hd->met.sandbox_fail, (const char *[]){NULL}), 1);
    (void)err;
    /* Maybe inside the sandbox's own callbacks: free it from ev_deferred. */
    if (sb->report == HD_REPORT_NONE)
        defer_sandbox(sb, HD_REPORT_FAILED);
}

void hd_sandbox_died(hd_sandbox_t *sb)
{
    sb->state = HD_SBX_DEAD;
    if (sb->ev_ctl != NULL)
        event_del(sb->ev_ctl);
    if (sb->report == HD_REPORT_NONE)
        defer_sandbox(sb, HD_REPORT_DIED);
}

static void spec_of(const cfg_function_t *fn, sbx_mount_t *mounts, sbx_spec_t *spec)
{
    cfg_function_sbx_spec(fn, mounts, spec);
}

/* The generic shells of the prewarm pool: default rootfs, no mounts, the
 * default seccomp profile and /tmp size. A function can take one over when
 * its spec asks for nothing else. */
static bool fits_generic(const cfg_function_t *fn)
{
    return fn->protocol == CFG_PROTO_STDIO && (fn->rootfs == NULL || strcmp(fn->rootfs, "/") == 0) &&
           fn->n_mounts == 0 &&
           (fn->seccomp == NULL || strcmp(fn->seccomp, "default") == 0) && fn->tmp_mb == 64;
}

/* After a creation, a cold start's usual length (docs/benchmarks.md). */
#define AHEAD_AFTER_US 5000

/* One cgroup ahead of need a turn (0.1-0.3 ms each on v1), until the
 * host has as many as it keeps. */
static void on_ahead(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hearth_t *hd = arg;
    if (sbx_host_make_ahead(hd->host)) {
        struct timeval next = {0, 1000};
        evtimer_add(hd->ev_ahead, &next);
    }
}

static int start_create(hd_sandbox_t *sb, hearth_error_t *err)
{
    hearth_t *hd = sb->hd;
    sbx_spec_t spec = {0};
    sbx_mount_t mounts[sb->fn ? sb->fn->spec->n_mounts + 1 : 1];
    __attribute__((cleanup(cfg_host_paths_clear))) cfg_host_paths_t paths = {0};
    if (sb->fn != NULL) {
        spec_of(sb->fn->spec, mounts, &spec);
        /* Checked again for every sandbox, and the sandbox binds the paths
         * as resolved now: what was allowed at deploy may have become a
         * symlink to elsewhere since (a sandbox with a writable mount can
         * make one), and the allowlist may have changed on SIGHUP. */
        if (cfg_function_check_paths(hd->cfg, sb->fn->spec, sb->fn->source == REG_SOURCE_FILE, &paths, err) < 0)
            return -1;
        cfg_host_paths_apply(&paths, mounts, &spec);
        spec.paths_resolved = true;
    }
    if (sbx_create_async(hd->host, &spec, &sb->ticket, err) < 0)
        return -1;
    if (idmap_put(&hd->tickets, sb->ticket, sb) < 0)
        return hearth_error_set(err, ENOMEM, "ticket map");
    sb->state = HD_SBX_CREATING;
    /* The cgroup this creation took is replaced once it is done, not now:
     * the spawner, woken on our CPU, would wait for those directories. */
    if (hd->ev_ahead != NULL && !evtimer_pending(hd->ev_ahead, NULL)) {
        struct timeval later = {0, AHEAD_AFTER_US};
        evtimer_add(hd->ev_ahead, &later);
    }
    return 0;
}

static void prov_spawn(void *ctx, uint64_t fn_id, uint32_t version, uint64_t sandbox_id, bool from_prewarm)
{
    (void)version;
    hearth_t *hd = ctx;
    const reg_function_t *fn = reg_by_id(hd->reg, fn_id);
    hearth_error_t err = {0};
    hd_sandbox_t *sb;
    if (from_prewarm && (sb = idmap_get(&hd->sandboxes, sandbox_id)) != NULL && sb->generic && fn != NULL &&
        fits_generic(fn->spec) && sb->state == HD_SBX_READY) {
        /* Specialise: the function's limits on the shell's cgroup. */
        sbx_spec_t spec = {0};
        sbx_mount_t mounts[1];
        spec_of(fn->spec, mounts, &spec);
        if (sbx_set_limits(sb->sbx, &spec, &err) == 0) {
            sb->generic = false;
            sb->fn = reg_function_ref(fn);
            defer_sandbox(sb, HD_REPORT_READY);
            return;
        }
        hearth_log(HEARTH_LOG_WARN, "specialise %s: %s", sbx_cgroup_name(sb->sbx), err.msg);
    }
    if (from_prewarm && (sb = idmap_get(&hd->sandboxes, sandbox_id)) != NULL) {
        /* Not a fit: the shell goes, a sandbox built for the function takes
         * its id. */
        sandbox_free(sb);
    }
    sb = sandbox_new(hd, sandbox_id, fn);
    if (sb == NULL || fn == NULL) {
        hearth_log(HEARTH_LOG_ERROR, "spawn: %s", fn == NULL ? "unknown function" : "out of memory");
        if (sb != NULL)
            defer_sandbox(sb, HD_REPORT_FAILED);
        return;
    }
    if (start_create(sb, &err) < 0) {
        note_start_error(hd, fn, err.msg);
        hearth_log(HEARTH_LOG_ERROR, "sandbox for %s/%s: %s", fn->spec->tenant, fn->spec->name, err.msg);
        defer_sandbox(sb, HD_REPORT_FAILED);
    }
}

static void prov_spawn_generic(void *ctx, uint64_t sandbox_id)
{
    hearth_t *hd = ctx;
    hearth_error_t err = {0};
    hd_sandbox_t *sb = sandbox_new(hd, sandbox_id, NULL);
    if (sb == NULL)
        return; /* the scheduler sees it never become ready; it is destroyed at shutdown */
    if (start_create(sb, &err) < 0) {
        hearth_log(HEARTH_LOG_ERROR, "prewarm sandbox: %s", err.msg);
        defer_sandbox(sb, HD_REPORT_FAILED);
    }
}

static void prov_dispatch(void *ctx, uint64_t inv_id, void *opaque, uint64_t sandbox_id, sched_start_t kind)
{
    (void)inv_id;
    hearth_t *hd = ctx;
    hd_inv_t *inv = opaque;
    hd_sandbox_t *sb = idmap_get(&hd->sandboxes, sandbox_id);
    hearth_error_t err = {0};
    inv->start_kind = kind;
    inv->started_ns = now_ns();
    inv->sb = sb;
    if (sb == NULL || sb->sbx == NULL) {
        inv->outcome = HD_OUT_LOST;
        snprintf(inv->message, sizeof(inv->message), "internal error: no such sandbox");
        defer_inv(inv);
        return;
    }
    if (kind != SCHED_START_WARM) {
        /* From when this call began waiting for the sandbox: its creation
         * (cold), or the call's arrival (prewarm: the sandbox was made
         * before, and its time in the pool is not a start's). */
        const char *k = sched_start_name(kind);
        uint64_t from = sb->created_ns > inv->accepted_ns ? sb->created_ns : inv->accepted_ns;
        metrics_observe(metrics_series(hd->met.cold_start, (const char *[]){k}),
                        (double)(inv->started_ns - from) / 1e9);
    }
    if (inv->client_gone) {
        inv->outcome = HD_OUT_CANCELLED;
        defer_inv(inv);
        return;
    }
    /* Recorded before the process can run: a hearthd killed right after
     * it started must charge the attempt (a payload that kills hearthd
     * then runs out of attempts instead of looping). */
    if (inv->async)
        async_started(hd, inv);
    cfg_protocol_t proto = sb->fn != NULL ? sb->fn->spec->protocol : CFG_PROTO_STDIO;
    int started = proto == CFG_PROTO_LAMBDA ? proto_lambda_start(sb, inv, &err)
                  : proto == CFG_PROTO_HTTP ? proto_http_start(sb, inv, &err)
                                            : proto_stdio_start(sb, inv, &err);
    if (started < 0) {
        inv->outcome = HD_OUT_START;
        snprintf(inv->message, sizeof(inv->message), "%s", err.msg);
        defer_inv(inv);
    }
}

static void prov_destroy(void *ctx, uint64_t sandbox_id, sched_destroy_reason_t reason)
{
    hearth_t *hd = ctx;
    hd_sandbox_t *sb = idmap_get(&hd->sandboxes, sandbox_id);
    if (sb == NULL)
        return;
    hearth_log(HEARTH_LOG_DEBUG, "destroy sandbox %" PRIu64 " (%s)", sandbox_id, sched_destroy_name(reason));
    if (sb->state == HD_SBX_CREATING) {
        sb->destroy_requested = true; /* when the spawner answers */
        return;
    }
    if (sb->report != HD_REPORT_NONE) {
        /* A report is pending in the deferred list: free it from there. */
        sb->destroy_requested = true;
        return;
    }
    sandbox_free(sb);
}

static void free_inv(hd_inv_t *inv)
{
    if (inv->payload)
        evbuffer_free(inv->payload);
    if (inv->output)
        evbuffer_free(inv->output);
    if (inv->fn)
        reg_function_unref(inv->fn);
    http_request_free(inv->http);
    free(inv);
}

static void prov_reject(void *ctx, uint64_t inv_id, void *opaque, sched_reject_reason_t reason,
                        uint32_t retry_after_ms)
{
    hearth_t *hd = ctx;
    hd_inv_t *inv = opaque;
    idmap_del(&hd->invocations, inv_id);
    const cfg_function_t *fn = inv->fn->spec;
    metrics_add(metrics_series(hd->met.rejected, (const char *[]){fn->tenant, fn->name, sched_reject_name(reason)}),
                1);
    if (inv->async)
        async_finished(hd, inv, sched_reject_name(reason));
    else if (inv->req != NULL && inv->lambda)
        lambda_respond_rejected(inv, reason == SCHED_REJECT_REMOVED ? 404 : reason == SCHED_REJECT_START_FAILED ? 502
                                     : reason == SCHED_REJECT_SHUTDOWN ? 503 : 429,
                                reason == SCHED_REJECT_REMOVED ? "ResourceNotFoundException" : "TooManyRequestsException",
                                sched_reject_name(reason));
    else if (inv->req != NULL)
        api_respond_rejected(inv, reason, retry_after_ms);
    free_inv(inv);
}

/* --- the spawner's answers and init's messages ------------------------------ */

static void on_host(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hearth_t *hd = arg;
    sbx_t *sbx;
    uint64_t ticket;
    hearth_error_t err = {0};
    int rc;
    while ((rc = sbx_host_poll(hd->host, &sbx, &ticket, &err)) > 0) {
        hd_sandbox_t *sb = idmap_del(&hd->tickets, ticket);
        if (sb == NULL) {
            if (sbx != NULL)
                sbx_destroy(sbx);
            continue;
        }
        if (sb->destroy_requested) {
            sb->sbx = sbx;
            sandbox_free(sb);
            continue;
        }
        uint64_t now = now_ns();
        if (sbx == NULL) {
            note_start_error(hd, sb->fn, err.msg);
            hearth_log(HEARTH_LOG_ERROR, "sandbox for %s: %s", sb->fn ? sb->fn->spec->name : "the prewarm pool",
                       err.msg);
            metrics_add(metrics_series(hd->met.sandbox_fail, (const char *[]){NULL}), 1);
            uint64_t id = sb->id;
            sandbox_free(sb);
            sched_sandbox_failed(hd->sched, id, now, &err);
            continue;
        }
        sb->sbx = sbx;
        sb->state = HD_SBX_READY;
        sb->ready_ns = now;
        sb->ev_ctl = event_new(hd->base, sbx_ctl_fd(sbx), EV_READ | EV_PERSIST, on_ctl, sb);
        if (sb->ev_ctl == NULL || event_add(sb->ev_ctl, NULL) < 0) {
            uint64_t id = sb->id;
            sandbox_free(sb);
            sched_sandbox_failed(hd->sched, id, now, &err);
            continue;
        }
        if (sb->fn != NULL && sb->fn->spec->protocol == CFG_PROTO_LAMBDA) {
            /* Ready once its runtime asks for an invocation (hd_sandbox_up). */
            if (lambda_runtime_start(sb, &err) < 0)
                hd_sandbox_failed(sb, err.msg);
            continue;
        }
        if (sb->fn != NULL && sb->fn->spec->protocol == CFG_PROTO_HTTP) {
            /* Ready once its server accepts on 127.0.0.1:8080 (hd_sandbox_up). */
            if (http_server_start(sb, &err) < 0)
                hd_sandbox_failed(sb, err.msg);
            continue;
        }
        hd_sandbox_up(sb);
    }
    if (rc < 0) {
        hearth_log(HEARTH_LOG_ERROR, "the spawner failed: %s; shutting down", err.msg);
        event_base_loopbreak(hd->base);
    }
}

static void on_ctl(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hd_sandbox_t *sb = arg;
    hearth_t *hd = sb->hd;
    sbx_event_t ev;
    hearth_error_t err;
    while (sb->sbx != NULL && sbx_next_event(sb->sbx, &ev, &err) > 0) {
        if (sb->rt != NULL || sb->srv != NULL) {
            /* The runtime or server lives across invocations: its news go to it. */
            if (sb->rt != NULL)
                lambda_sandbox_event(sb, &ev);
            else
                http_sandbox_event(sb, &ev);
            if (sb->state == HD_SBX_DEAD || idmap_get(&hd->sandboxes, sb->id) != sb)
                return;
            continue;
        }
        if (sb->call != NULL) {
            proto_on_event(sb->call, &ev);
            continue;
        }
        if (ev.kind == SBX_EV_DIED && sb->state == HD_SBX_READY) {
            /* Died idle (say, killed from outside): no call to fail. */
            hd_sandbox_died(sb);
            return;
        }
    }
}

/* --- invocations ------------------------------------------------------------ */

static sched_done_t done_kind(hd_outcome_t o)
{
    switch (o) {
    case HD_OUT_OK:
        return SCHED_DONE_OK;
    case HD_OUT_TIMEOUT:
    case HD_OUT_OOM:
    case HD_OUT_LOST:
        return SCHED_DONE_CRASHED; /* the sandbox is gone or suspect: replaced */
    default:
        return SCHED_DONE_ERROR;
    }
}

static const char *outcome_name(hd_outcome_t o)
{
    static const char *const names[] = {"ok",        "error",   "crashed",   "out_of_memory", "timeout",
                                        "too_large", "start",   "lost",      "cancelled"};
    return names[o];
}

void hd_call_done(hd_sandbox_t *sb, hd_inv_t *inv)
{
    (void)sb;
    defer_inv(inv);
}

/* Report a finished invocation: accounting, metrics, the response, the
 * scheduler. From ev_deferred only. */
static void finish_inv(hearth_t *hd, hd_inv_t *inv)
{
    hd_sandbox_t *sb = inv->sb;
    const cfg_function_t *fn = inv->fn->spec;
    uint64_t now = now_ns();
    hearth_error_t err = {0};

    /* CPU: the cgroup's usage after minus before; the process and all it
     * started have exited (or been killed), so the figure is exact. The
     * call is freed once the client has its answer: what the protocol
     * still owes its process (lambda's 202) goes out after it. */
    proto_call_t *call = NULL;
    if (sb != NULL && sb->call != NULL) {
        uint64_t before = sb->call->cpu_before, after;
        if (sb->sbx != NULL && sbx_cpu_ns(sb->sbx, &after, &err) == 0 && after >= before) {
            inv->cpu_ns = after - before;
            if (before > sb->cpu_charged_ns)
                charge_overhead(hd, sb->fn, sb->id, before - sb->cpu_charged_ns);
            sb->cpu_charged_ns = after;
        }
        call = sb->call;
        sb->call = NULL;
    }
    uint64_t dur = inv->started_ns ? now - inv->started_ns : 0;

    store_usage_t delta = {
        .cpu_ns_invocation = (int64_t)inv->cpu_ns,
        .memory_mb_ms = (int64_t)((uint64_t)fn->memory_mb * dur / 1000000),
        .invocations = 1,
        .errors = inv->outcome != HD_OUT_OK,
        .cold_starts = inv->start_kind != SCHED_START_WARM,
    };
    add_usage(hd, inv->fn, &delta);
    const char *labels[] = {fn->tenant, fn->name, sched_start_name(inv->start_kind), outcome_name(inv->outcome)};
    metrics_add(metrics_series(hd->met.invocations, labels), 1);
    metrics_observe(metrics_series(hd->met.duration, (const char *[]){fn->tenant, fn->name}), (double)dur / 1e9);
    metrics_add(metrics_series(hd->met.tenant_cpu, (const char *[]){fn->tenant}), (double)inv->cpu_ns / 1e9);
    metrics_add(metrics_series(hd->met.fn_cpu, (const char *[]){fn->tenant, fn->name}), (double)inv->cpu_ns / 1e9);

    if (inv->async)
        async_finished(hd, inv, NULL);
    else if (inv->req != NULL && inv->lambda)
        lambda_respond(inv);
    else if (inv->req != NULL)
        api_respond_invocation(inv);
    if (call != NULL)
        proto_free(call);
    idmap_del(&hd->invocations, inv->sched_id);
    if (!inv->done && sched_invocation_done(hd->sched, inv->sched_id, inv->cpu_ns, done_kind(inv->outcome), now,
                                            &err) < 0)
        hearth_log(HEARTH_LOG_ERROR, "invocation %s done: %s", inv->id, err.msg);
    free_inv(inv);
}

static void on_deferred(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hearth_t *hd = arg;
    hearth_error_t err = {0};
    uint64_t now = now_ns();
    while (hd->deferred != NULL) {
        hd_sandbox_t *sb = hd->deferred;
        hd->deferred = sb->deferred_next;
        int report = sb->report;
        sb->report = HD_REPORT_NONE;
        uint64_t id = sb->id;
        if (report == HD_REPORT_FAILED) {
            bool destroyed = sb->destroy_requested;
            sandbox_free(sb);
            if (!destroyed)
                sched_sandbox_failed(hd->sched, id, now, &err);
        } else if (report == HD_REPORT_READY) {
            if (sb->destroy_requested)
                sandbox_free(sb);
            else
                sched_sandbox_ready(hd->sched, id, now, &err);
        } else if (report == HD_REPORT_DIED) {
            if (sb->destroy_requested)
                sandbox_free(sb);
            else
                sched_sandbox_died(hd->sched, id, now, &err);
        }
    }
    while (hd->deferred_inv != NULL) {
        hd_inv_t *inv = hd->deferred_inv;
        hd->deferred_inv = inv->deferred_next;
        finish_inv(hd, inv);
    }
    while (hd->overheads != NULL) {
        hd_overhead_t *o = hd->overheads;
        hd->overheads = o->next;
        charge_overhead(hd, o->fn, 0, o->cpu_ns);
        reg_function_unref(o->fn);
        free(o);
    }
    if (hd->draining && hd_idle(hd)) {
        /* A moment for the last answers to reach their clients. */
        struct timeval flush = {0, 100000};
        event_base_loopexit(hd->base, &flush);
    }
}

void hd_random_id(char out[33])
{
    uint8_t b[16];
    /* getrandom with 16 bytes never returns short once the pool is ready. */
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
        uint64_t t = now_ns();
        memcpy(b, &t, 8);
        memcpy(b + 8, &t, 8);
    }
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[32] = '\0';
}

int hd_invoke(hearth_t *hd, struct evhttp_request *req, const reg_function_t *fn, struct evbuffer *payload,
              hearth_error_t *err)
{
    return hd_submit(hd, req, fn, payload, NULL, SCHED_SYNC, 0, err);
}

static int submit(hearth_t *hd, struct evhttp_request *req, const reg_function_t *fn, struct evbuffer *payload,
                  hd_http_t *http, const char *id, sched_prio_t prio, unsigned flags, hearth_error_t *err);

int hd_submit(hearth_t *hd, struct evhttp_request *req, const reg_function_t *fn, struct evbuffer *payload,
              const char *id, sched_prio_t prio, unsigned flags, hearth_error_t *err)
{
    return submit(hd, req, fn, payload, NULL, id, prio, flags, err);
}

int hd_invoke_http(hearth_t *hd, struct evhttp_request *req, const reg_function_t *fn, struct evbuffer *payload,
                   hd_http_t *http, hearth_error_t *err)
{
    return submit(hd, req, fn, payload, http, NULL, SCHED_SYNC, 0, err);
}

/* The scheduler may dispatch at once, from inside sched_submit: every
 * field the protocol reads is set before. */
static int submit(hearth_t *hd, struct evhttp_request *req, const reg_function_t *fn, struct evbuffer *payload,
                  hd_http_t *http, const char *id, sched_prio_t prio, unsigned flags, hearth_error_t *err)
{
    hd_inv_t *inv = calloc(1, sizeof(*inv));
    if (inv == NULL)
        return hearth_error_set(err, ENOMEM, "invocation");
    inv->hd = hd;
    inv->req = req;
    inv->fn = reg_function_ref(fn);
    inv->payload = payload;
    inv->http = http;
    inv->output = evbuffer_new();
    inv->accepted_ns = now_ns();
    inv->sched_id = ++hd->next_inv;
    inv->async = prio == SCHED_ASYNC;
    inv->lambda = flags & HD_INV_LAMBDA;
    inv->want_log = flags & HD_INV_LOG_TAIL;
    if (id != NULL)
        snprintf(inv->id, sizeof(inv->id), "%s", id);
    else
        hd_random_id(inv->id);
    if (inv->output == NULL || idmap_put(&hd->invocations, inv->sched_id, inv) < 0) {
        inv->payload = NULL;
        inv->http = NULL;
        free_inv(inv);
        return hearth_error_set(err, ENOMEM, "invocation");
    }
    if (sched_submit(hd->sched, inv->sched_id, fn->id, prio, inv, inv->accepted_ns, err) < 0) {
        idmap_del(&hd->invocations, inv->sched_id);
        inv->payload = NULL; /* the caller keeps them */
        inv->http = NULL;
        free_inv(inv);
        return -1;
    }
    return 0;
}

/* The client of a running or queued invocation went away. */
void hd_client_gone(hearth_t *hd, struct evhttp_request *req)
{
    uint32_t pos = 0;
    void *v;
    while (idmap_next(&hd->invocations, &pos, &v)) {
        hd_inv_t *inv = v;
        if (inv->req != req)
            continue;
        inv->client_gone = true;
        inv->req = NULL; /* evhttp frees it with its connection: nobody to answer */
        if (inv->sb != NULL && inv->sb->call != NULL)
            proto_cancel(inv->sb->call);
    }
}

/* --- functions and tenants into the scheduler ------------------------------- */

int hd_sched_function(hearth_t *hd, const reg_function_t *fn, hearth_error_t *err)
{
    const cfg_function_t *s = fn->spec;
    uint64_t tid = hd_tenant_id(hd, s->tenant);
    if (tid == 0)
        return hearth_error_set(err, ENOENT, "function %s: no tenant `%s` in the config", s->name, s->tenant);
    sched_fn_spec_t fs = {
        .tenant_id = tid,
        .name = s->name,
        .version = (uint32_t)fn->generation,
        .memory_mb = s->memory_mb,
        .concurrency = s->concurrency,
        .min_warm = s->min_warm,
        .max_sandboxes = s->max_sandboxes,
        .keep_alive_ms = s->keep_alive_ms,
        .no_prewarm = !fits_generic(s),
    };
    return sched_fn_put(hd->sched, fn->id, &fs, now_ns(), err);
}

int hd_sched_tenants(hearth_t *hd, hearth_error_t *err)
{
    if (number_tenants(hd, err) < 0)
        return -1;
    for (size_t i = 0; i < hd->cfg->n_tenants; i++) {
        const cfg_tenant_t *t = &hd->cfg->tenants[i];
        sched_tenant_spec_t ts = {
            .name = t->name,
            .weight = t->weight,
            .max_concurrency = t->max_concurrency,
            .cpu_ms_per_minute = t->cpu_ms_per_minute,
        };
        if (sched_tenant_put(hd->sched, hd_tenant_id(hd, t->name), &ts, err) < 0)
            return hearth_error_wrap(err, "tenant %s", t->name);
    }
    return 0;
}

static void on_registry_change(void *arg, const reg_function_t *old, const reg_function_t *now)
{
    hearth_t *hd = arg;
    hearth_error_t err = {0};
    if (now != NULL) {
        if (hd_sched_function(hd, now, &err) < 0)
            hearth_log(HEARTH_LOG_ERROR, "schedule %s/%s: %s", now->spec->tenant, now->spec->name, err.msg);
    } else if (old != NULL) {
        if (sched_fn_remove(hd->sched, old->id, now_ns(), &err) < 0)
            hearth_log(HEARTH_LOG_WARN, "unschedule %s/%s: %s", old->spec->tenant, old->spec->name, err.msg);
        const char *names[] = {"tenant", "function"};
        const char *values[] = {old->spec->tenant, old->spec->name};
        metrics_forget(hd->met.m, names, values, 2);
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hearth_t *hd = arg;
    sched_tick(hd->sched, now_ns());
}

bool hd_idle(const hearth_t *hd)
{
    sched_host_status_t st;
    sched_host_status(hd->sched, &st);
    return st.in_flight == 0 && st.queued == 0 && hd->deferred_inv == NULL;
}

void hd_metrics_refresh(hearth_t *hd)
{
    reg_function_t **list = NULL;
    size_t n = 0;
    hearth_error_t err;
    if (reg_list(hd->reg, &system_caller, NULL, &list, &n, &err) < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        sched_fn_status_t st;
        const cfg_function_t *f = list[i]->spec;
        if (sched_fn_status(hd->sched, list[i]->id, &st, &err) < 0)
            continue;
        const char *tf[] = {f->tenant, f->name};
        metrics_set(metrics_series(hd->met.queue_depth, tf), st.queued);
        metrics_set(metrics_series(hd->met.desired, tf), st.desired);
        metrics_set(metrics_series(hd->met.panic, tf), st.panic);
        static const char *const states[] = {"creating", "idle", "busy", "draining"};
        uint32_t counts[] = {st.creating, st.idle, st.busy, st.draining};
        for (int k = 0; k < 4; k++)
            metrics_set(metrics_series(hd->met.sandboxes, (const char *[]){f->tenant, f->name, states[k]}),
                        counts[k]);
    }
    reg_list_free(list, n);
    sched_host_status_t hs;
    sched_host_status(hd->sched, &hs);
    metrics_set(metrics_series(hd->met.host_sbx, (const char *[]){"all"}), hs.sandboxes);
    metrics_set(metrics_series(hd->met.host_sbx, (const char *[]){"prewarm_ready"}), hs.generic_ready);
    metrics_set(metrics_series(hd->met.connections, (const char *[]){NULL}), hd->connections);
    metrics_set(metrics_series(hd->met.uptime, (const char *[]){NULL}), (double)(now_ns() - hd->started_ns) / 1e9);
    if (hd->jnl != NULL)
        async_metrics(hd);
}

static int register_metrics(hearth_t *hd, hearth_error_t *err)
{
    hd_metrics_t *m = &hd->met;
    static const double dur_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25,   0.5,   1,      2.5,   5,    10,    30,   60};
    static const double cold_buckets[] = {0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.5, 1};
    m->m = metrics_new();
    if (m->m == NULL)
        return hearth_error_set(err, ENOMEM, "metrics");
#define REG(field, type, name, help, labels, b, nb)                                                   \
    if ((m->field = metrics_register(m->m, type, name, help, labels, b, nb, err)) == NULL)        \
        return -1;
    REG(invocations, METRICS_COUNTER, "hearth_invocations_total", "Invocations finished, by start kind and outcome.",
        ((const char *[]){"tenant", "function", "start", "outcome", NULL}), NULL, 0);
    REG(duration, METRICS_HISTOGRAM, "hearth_invocation_duration_seconds",
        "Time from dispatch to the end of the invocation.", ((const char *[]){"tenant", "function", NULL}),
        dur_buckets, sizeof(dur_buckets) / sizeof(dur_buckets[0]));
    REG(cold_start, METRICS_HISTOGRAM, "hearth_cold_start_seconds",
        "Time from asking for a sandbox to dispatching onto it (cold and prewarm starts).",
        ((const char *[]){"start", NULL}), cold_buckets, sizeof(cold_buckets) / sizeof(cold_buckets[0]));
    REG(queue_depth, METRICS_GAUGE, "hearth_queue_depth", "Invocations waiting for a sandbox.",
        ((const char *[]){"tenant", "function", NULL}), NULL, 0);
    REG(sandboxes, METRICS_GAUGE, "hearth_sandboxes", "Sandboxes of a function by state.",
        ((const char *[]){"tenant", "function", "state", NULL}), NULL, 0);
    REG(tenant_cpu, METRICS_COUNTER, "hearth_tenant_cpu_seconds_total", "CPU time of a tenant's invocations.",
        ((const char *[]){"tenant", NULL}), NULL, 0);
    REG(fn_cpu, METRICS_COUNTER, "hearth_function_cpu_seconds_total", "CPU time of a function's invocations.",
        ((const char *[]){"tenant", "function", NULL}), NULL, 0);
    REG(desired, METRICS_GAUGE, "hearth_scaler_desired", "Sandboxes the scaler wants for a function.",
        ((const char *[]){"tenant", "function", NULL}), NULL, 0);
    REG(panic, METRICS_GAUGE, "hearth_scaler_panic", "1 while the function's scaler is in panic mode.",
        ((const char *[]){"tenant", "function", NULL}), NULL, 0);
    REG(rejected, METRICS_COUNTER, "hearth_rejected_total", "Invocations turned away, by reason.",
        ((const char *[]){"tenant", "function", "reason", NULL}), NULL, 0);
    REG(connections, METRICS_GAUGE, "hearth_open_connections", "Open client connections.",
        ((const char *[]){NULL}), NULL, 0);
    REG(uptime, METRICS_GAUGE, "hearth_uptime_seconds", "Seconds since hearthd started.", ((const char *[]){NULL}),
        NULL, 0);
    REG(build, METRICS_GAUGE, "hearth_build_info", "Always 1; the labels say what runs.",
        ((const char *[]){"version", "cgroup", NULL}), NULL, 0);
    REG(host_sbx, METRICS_GAUGE, "hearth_host_sandboxes", "Live sandboxes on this host.",
        ((const char *[]){"kind", NULL}), NULL, 0);
    REG(sandbox_fail, METRICS_COUNTER, "hearth_sandbox_start_failures_total", "Sandboxes that failed to start.",
        ((const char *[]){NULL}), NULL, 0);
    REG(async_depth, METRICS_GAUGE, "hearth_async_queue_depth", "Async invocations accepted and not finished.",
        ((const char *[]){"state", NULL}), NULL, 0);
    REG(async_age, METRICS_GAUGE, "hearth_async_oldest_age_seconds",
        "How long the oldest due async invocation has waited.", ((const char *[]){NULL}), NULL, 0);
    REG(async_retries, METRICS_COUNTER, "hearth_async_retries_total", "Failed async attempts queued again.",
        ((const char *[]){NULL}), NULL, 0);
    REG(async_dead, METRICS_COUNTER, "hearth_async_dead_letters_total", "Async invocations out of attempts.",
        ((const char *[]){NULL}), NULL, 0);
    REG(async_accepted, METRICS_COUNTER, "hearth_async_accepted_total", "Async invocations stored durably.",
        ((const char *[]){NULL}), NULL, 0);
#undef REG
    metrics_set(metrics_series(m->build, (const char *[]){HEARTH_VERSION, sbx_host_cgroup_mode(hd->host)}), 1);
    return 0;
}

int hd_init(hearth_t *hd, hearth_error_t *err)
{
    /* This thread's (the loop's) namespace: setns applies per thread. */
    hd->host_netns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (hd->host_netns < 0)
        return hearth_error_sys(err, "open /proc/thread-self/ns/net");
    if (idmap_init(&hd->sandboxes, 64) < 0 || idmap_init(&hd->tickets, 64) < 0 ||
        idmap_init(&hd->invocations, 256) < 0 || idmap_init(&hd->start_errors, 16) < 0 ||
        idmap_init(&hd->usage, 16) < 0)
        return hearth_error_set(err, ENOMEM, "maps");
    if (register_metrics(hd, err) < 0)
        return hearth_error_wrap(err, "metrics");
    sched_config_t sc;
    sched_config_default(&sc);
    sc.max_sandboxes = hd->cfg->max_sandboxes;
    sc.memory_budget_mb = hd->cfg->memory_budget_mb;
    sc.prewarm_min = 0;
    sc.prewarm_max = hd->cfg->prewarm_pool;
    sc.generic_memory_mb = 128;
    sched_provider_t prov = {
        .spawn = prov_spawn,
        .spawn_generic = prov_spawn_generic,
        .dispatch = prov_dispatch,
        .destroy = prov_destroy,
        .reject = prov_reject,
        .ctx = hd,
    };
    hd->sched = sched_new(&sc, &prov, now_ns(), err);
    if (hd->sched == NULL)
        return hearth_error_wrap(err, "scheduler");
    if (hd_sched_tenants(hd, err) < 0)
        return -1;
    reg_function_t **list = NULL;
    size_t n = 0;
    if (reg_list(hd->reg, &system_caller, NULL, &list, &n, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (hd_sched_function(hd, list[i], err) < 0)
            hearth_log(HEARTH_LOG_WARN, "%s", err->msg);
    reg_list_free(list, n);
    reg_set_listener(hd->reg, on_registry_change, hd);

    hd->ev_host = event_new(hd->base, sbx_host_fd(hd->host), EV_READ | EV_PERSIST, on_host, hd);
    hd->ev_tick = event_new(hd->base, -1, EV_PERSIST, on_tick, hd);
    hd->ev_deferred = event_new(hd->base, -1, 0, on_deferred, hd);
    hd->ev_usage = evtimer_new(hd->base, on_usage, hd);
    hd->ev_ahead = evtimer_new(hd->base, on_ahead, hd);
    hd->ev_retired = evtimer_new(hd->base, on_retired_turn, hd);
    struct timeval tick = {0, 50000};
    if (hd->ev_host == NULL || hd->ev_tick == NULL || hd->ev_deferred == NULL || hd->ev_usage == NULL ||
        hd->ev_ahead == NULL || hd->ev_retired == NULL ||
        event_add(hd->ev_host, NULL) < 0 ||
        event_add(hd->ev_tick, &tick) < 0)
        return hearth_error_set(err, ENOMEM, "events");
    return 0;
}

void hd_shutdown(hearth_t *hd)
{
    /* Finished invocations not yet reported are answered normally. */
    while (hd->deferred_inv != NULL) {
        hd_inv_t *inv = hd->deferred_inv;
        hd->deferred_inv = inv->deferred_next;
        finish_inv(hd, inv);
    }
    /* Past the drain deadline: what still runs is stopped and answered 503. */
    uint32_t pos = 0;
    void *v;
    while (idmap_next(&hd->invocations, &pos, &v)) {
        hd_inv_t *inv = v;
        if (inv->sb == NULL || inv->sb->call == NULL)
            continue; /* queued: sched_free rejects it */
        proto_cancel(inv->sb->call);
        proto_free(inv->sb->call);
        inv->sb->call = NULL;
        /* An async one stays `running` in the journal: the next start
         * requeues it, its attempt counted. */
        if (inv->req != NULL && inv->lambda)
            lambda_respond_rejected(inv, 503, "ServiceException", "hearthd is shutting down");
        else if (inv->req != NULL && !inv->async)
            api_respond_rejected(inv, SCHED_REJECT_SHUTDOWN, 0);
        idmap_del(&hd->invocations, inv->sched_id);
        free_inv(inv);
        pos = 0; /* the map moved */
    }
    /* Rejects what waits and destroys every sandbox through the provider. */
    if (hd->sched != NULL) {
        sched_free(hd->sched);
        hd->sched = NULL;
    }
    pos = 0;
    while (idmap_next(&hd->sandboxes, &pos, &v)) {
        sandbox_free(v);
        pos = 0; /* sandbox_free changed the map */
    }
    while (hd->retiring != NULL)
        retiring_free(hd->retiring);
    pos = 0;
    while (idmap_next(&hd->start_errors, &pos, &v))
        free(v);
    idmap_free(&hd->start_errors);
    idmap_free(&hd->sandboxes);
    idmap_free(&hd->tickets);
    idmap_free(&hd->invocations);
    if (hd->ev_host)
        event_free(hd->ev_host);
    if (hd->ev_tick)
        event_free(hd->ev_tick);
    if (hd->ev_deferred)
        event_free(hd->ev_deferred);
    if (hd->ev_ahead)
        event_free(hd->ev_ahead);
    if (hd->ev_retired)
        event_free(hd->ev_retired);
    hd_usage_flush(hd);
    if (hd->ev_usage) {
        event_free(hd->ev_usage);
        hd->ev_usage = NULL;
    }
    idmap_free(&hd->usage);
    metrics_free(hd->met.m);
    while (hd->overheads != NULL) {
        hd_overhead_t *o = hd->overheads;
        hd->overheads = o->next;
        if (o->fn->spec != NULL) {
            store_usage_t delta = {.cpu_ns_overhead = (int64_t)o->cpu_ns};
            store_usage(hd, o->fn, &delta);
        }
        reg_function_unref(o->fn);
        free(o);
    }
    for (size_t i = 0; i < hd->n_tenant_names; i++)
        free(hd->tenant_names[i]);
    free(hd->tenant_names);
    if (hd->host_netns >= 0)
        close(hd->host_netns);
    hd->host_netns = -1;
}
