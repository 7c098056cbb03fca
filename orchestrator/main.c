/* hearthd: flags, config, start-up, signals, shut-down. */
#include <errno.h>
#include <inttypes.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>

#include "orchestrator/daemon.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: hearthd --config FILE [--check] [--log-level LEVEL]\n"
               "\n"
               "Runs functions for tenants in sandboxes; serves the API on the Unix socket and\n"
               "the TCP address the config names. See README.md and configs/README.md.\n"
               "\n"
               "  -c, --config FILE     daemon config (JSON)\n"
               "      --check           validate the config and the functions_dir specs, then exit\n"
               "      --log-level L     debug, info, warn or error (overrides the config)\n"
               "  -V, --version         print the version\n"
               "  -h, --help            this text\n"
               "\n"
               "Signals: SIGTERM/SIGINT drain (stop accepting, let running calls finish up to\n"
               "drain_timeout_ms, destroy sandboxes) and exit 0; SIGHUP reloads tenants and\n"
               "functions_dir.\n");
}

static int parse_level(const char *s, hearth_log_level_t *out)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (hearth_log_level_t)i;
            return 0;
        }
    return -1;
}

static void on_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hearth_t *hd = arg;
    hearth_log(HEARTH_LOG_WARN, "drain deadline passed with calls still running; stopping them");
    event_base_loopbreak(hd->base);
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    hearth_t *hd = arg;
    if (hd->draining) {
        hearth_log(HEARTH_LOG_WARN, "second signal %d: stopping now", (int)sig);
        event_base_loopbreak(hd->base);
        return;
    }
    hearth_log(HEARTH_LOG_INFO, "signal %d: draining (up to %u ms)", (int)sig, hd->cfg->drain_timeout_ms);
    hd->draining = true;
    api_stop_listening(hd);
    if (hd_idle(hd)) {
        /* A moment for replies already queued to reach their clients. */
        struct timeval flush = {0, 100000};
        event_base_loopexit(hd->base, &flush);
        return;
    }
    hd->ev_drain = evtimer_new(hd->base, on_drain_deadline, hd);
    struct timeval tv = {hd->cfg->drain_timeout_ms / 1000, (hd->cfg->drain_timeout_ms % 1000) * 1000};
    if (hd->ev_drain == NULL || evtimer_add(hd->ev_drain, &tv) < 0)
        event_base_loopbreak(hd->base);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    hearth_t *hd = arg;
    hearth_error_t err = {0};
    cfg_daemon_t *cfg = NULL;
    auth_t *auth = NULL;
    if (cfg_daemon_load(hd->config_path, &cfg, &err) < 0 || auth_new(cfg, &auth, &err) < 0) {
        hearth_log(HEARTH_LOG_ERROR, "reload refused, keeping the running config: %s", err.msg);
        cfg_daemon_free(cfg);
        return;
    }
    /* Tenants and functions_dir are what a reload changes; listeners,
     * state_dir and cgroup_root stay as started. */
    cfg_daemon_t *old = hd->cfg;
    hd->cfg = cfg;
    auth_t *old_auth = hd->auth;
    hd->auth = auth;
    if (hd_sched_tenants(hd, &err) < 0)
        hearth_log(HEARTH_LOG_ERROR, "reload: %s", err.msg);
    reg_reload_stats_t st;
    if (reg_reload_dir(hd->reg, &st, &err) < 0)
        hearth_log(HEARTH_LOG_ERROR, "reload of functions_dir refused: %s", err.msg);
    else
        hearth_log(HEARTH_LOG_INFO, "reloaded: %zu tenants; functions %zu added, %zu changed, %zu removed",
                   cfg->n_tenants, st.added, st.changed, st.removed);
    /* Keep what the listeners and the store were started with: the state
     * directory, above all, stays refused to mounts while it is in use. */
    free(cfg->listen_unix);
    cfg->listen_unix = steal_pointer(&old->listen_unix);
    free(cfg->state_dir);
    cfg->state_dir = steal_pointer(&old->state_dir);
    auth_unref(old_auth);
    cfg_daemon_free(old);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"check", no_argument, NULL, 'k'},
        {"log-level", required_argument, NULL, 'l'}, {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *level = NULL;
    bool check = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'k':
            check = true;
            break;
        case 'l':
            level = optarg;
            break;
        case 'V':
            printf("hearthd %s\n", HEARTH_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (config == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }

    hearth_t hd = {.config_path = (char *)config, .started_ns = now_ns()};
    hearth_error_t err = {0};
    if (cfg_daemon_load(config, &hd.cfg, &err) < 0) {
        fprintf(stderr, "hearthd: %s\n", err.msg);
        return 2;
    }
    hearth_log_level_t lvl = hd.cfg->log_level;
    if (level != NULL && parse_level(level, &lvl) < 0) {
        fprintf(stderr, "hearthd: --log-level `%s`: debug, info, warn or error\n", level);
        return 2;
    }
    hearth_log_set_level(lvl);
    if (check) {
        cfg_function_list_t fl = {0};
        if (hd.cfg->functions_dir[0] != '\0' && cfg_functions_load_dir(hd.cfg->functions_dir, &fl, &err) < 0) {
            fprintf(stderr, "hearthd: %s\n", err.msg);
            return 2;
        }
        printf("%s: ok (%zu tenants, %zu functions in %s)\n", config, hd.cfg->n_tenants, fl.n,
               hd.cfg->functions_dir[0] ? hd.cfg->functions_dir : "no functions_dir");
        cfg_function_list_clear(&fl);
        cfg_daemon_free(hd.cfg);
        return 0;
    }

    /* Each live sandbox holds a few descriptors here and in the spawner
     * (pidfd, control socket, a cgroup directory per hierarchy: seven on
     * v1), each connection one: the usual soft limit of 1,024 would cap a
     * host at about 140 sandboxes. Take what the hard limit allows. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &nofile) < 0)
            hearth_log(HEARTH_LOG_WARN, "cannot raise the open files limit: %s", strerror(errno));
    }

    /* Each live sandbox holds a uid: fewer than the host may keep would
     * refuse creations under load, long after the start. */
    uint64_t want_uids = (uint64_t)hd.cfg->max_sandboxes + hd.cfg->prewarm_pool;
    if (hd.cfg->uid_count < want_uids)
        hearth_log(HEARTH_LOG_WARN,
                   "uid_count %u is below max_sandboxes + prewarm_pool (%" PRIu64
                   "): creations fail once %u sandboxes live",
                   hd.cfg->uid_count, want_uids, hd.cfg->uid_count);

    /* The spawner first, while we are small: every sandbox is cloned from it. */
    sbx_host_config_t hc = {
        .cgroup_root = hd.cfg->cgroup_root,
        .uid_base = hd.cfg->uid_base,
        .uid_count = hd.cfg->uid_count,
        .spawner = true,
        .seccomp_cache = "/run/hearth/seccomp",
        /* A cold start finds its network namespace made: the dearest
         * namespace off its path. A few, for bursts; each idle one holds
         * a little kernel memory. */
        .netns_ahead = 4,
        /* Likewise their cgroups, made while the spawner clones. */
        .cgroups_ahead = 4,
        /* And on v1 the clone itself: a cold start begins with its init
         * already forked. */
        .inits_ahead = true,
    };
    if (sbx_host_open(&hc, &hd.host, &err) < 0) {
        hearth_log(HEARTH_LOG_ERROR, "sandboxes: %s", err.msg);
        cfg_daemon_free(hd.cfg);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    int rc = 1;
    reg_reload_stats_t st = {0};
    /* epoll's interest list changes in batches, at the start of each
     * loop turn: a warm call re-armed reads and writes about 12 times
     * (epoll_ctl was a tenth of our CPU under wrk), and 4 times this way.
     * libevent warns that the batch goes wrong for an fd whose open file
     * another fd shares (dup, fork, SCM_RIGHTS kept by the sender): closed
     * in the turn that removed its event, it would stay registered. Ours
     * are our own (the spawner forks before any exists; the Runtime API
     * socket's sender closes its copy at once) but for the pidfds and
     * control sockets the spawner sends: its children hold copies until
     * their first instructions close them. Those are closed a turn after
     * their events go (daemon.c: on_retired), unless a tear-down cannot
     * wait (no memory, no pidfd): then a child not yet run may leave the
     * loop waking for a closed control socket until it runs. Keep it so. */
    struct event_config *ev_cfg = event_config_new();
    if (ev_cfg != NULL) {
        event_config_set_flag(ev_cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        hd.base = event_base_new_with_config(ev_cfg);
        event_config_free(ev_cfg);
    }
    if (hd.base == NULL) {
        hearth_log(HEARTH_LOG_ERROR, "cannot create the event loop");
        goto out;
    }
    jnl_open_stats_t js = {0};
    if (store_open(hd.cfg->state_dir, &hd.store, &err) < 0 || jnl_open(hd.cfg->state_dir, &hd.jnl, &js, &err) < 0 ||
        auth_new(hd.cfg, &hd.auth, &err) < 0 ||
        reg_open(hd.store, hd.cfg->functions_dir[0] ? hd.cfg->functions_dir : NULL, &hd.reg, &st, &err) < 0 ||
        hd_init(&hd, &err) < 0 || async_start(&hd, &err) < 0 || api_start(&hd, &err) < 0) {
        hearth_log(HEARTH_LOG_ERROR, "start-up: %s", err.msg);
        goto out;
    }
    if (js.requeued > 0 || js.dead > 0)
        hearth_log(HEARTH_LOG_WARN, "async: %" PRId64 " invocations left running by a previous hearthd queued again, %" PRId64
                   " on their last attempt dead-lettered", js.requeued, js.dead);
    if (st.invalid > 0)
        hearth_log(HEARTH_LOG_WARN, "%zu stored functions no longer validate and were skipped; first: %s", st.invalid,
                   st.first_invalid);
    hd.ev_sigterm = evsignal_new(hd.base, SIGTERM, on_term, &hd);
    hd.ev_sigint = evsignal_new(hd.base, SIGINT, on_term, &hd);
    hd.ev_sighup = evsignal_new(hd.base, SIGHUP, on_hup, &hd);
    if (hd.ev_sigterm == NULL || hd.ev_sigint == NULL || hd.ev_sighup == NULL || event_add(hd.ev_sigterm, NULL) < 0 ||
        event_add(hd.ev_sigint, NULL) < 0 || event_add(hd.ev_sighup, NULL) < 0) {
        hearth_log(HEARTH_LOG_ERROR, "signal events failed");
        goto out;
    }
    hearth_log(HEARTH_LOG_INFO, "hearthd %s ready: unix %s, http %s, cgroup %s, %zu functions, %zu tenants",
               HEARTH_VERSION, hd.cfg->listen_unix[0] ? hd.cfg->listen_unix : "(off)",
               hd.cfg->listen_http[0] ? hd.cfg->listen_http : "(off)", sbx_host_cgroup_mode(hd.host),
               reg_count(hd.reg), hd.cfg->n_tenants);
    event_base_dispatch(hd.base);
    hearth_log(HEARTH_LOG_INFO, "shutting down");
    rc = 0;

out:
    if (hd.sched != NULL)
        hd_shutdown(&hd);
    async_stop(&hd);
    /* Commits what was still staged: never lose an accept. */
    jnl_close(hd.jnl);
    api_free(&hd);
    if (hd.ev_sigterm)
        event_free(hd.ev_sigterm);
    if (hd.ev_sigint)
        event_free(hd.ev_sigint);
    if (hd.ev_sighup)
        event_free(hd.ev_sighup);
    if (hd.ev_drain)
        event_free(hd.ev_drain);
    reg_close(hd.reg);
    store_close(hd.store);
    if (hd.auth)
        auth_unref(hd.auth);
    sbx_host_close(hd.host);
    if (hd.base)
        event_base_free(hd.base);
    cfg_daemon_free(hd.cfg);
    return rc;
}
