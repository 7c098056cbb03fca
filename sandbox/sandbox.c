/* The sandbox layer's public face (sandbox.h): host context, sandbox
 * life cycle, process control through the sandbox's init. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_EVENTS 64

typedef struct seccomp_entry {
    char *profile; /* "default" or a path */
    sbx_seccomp_t *sc;
    struct seccomp_entry *next;
} seccomp_entry_t;

struct sbx_host {
    sbx_cgroups_t cgs;
    bool cg_open;
    uid_t uid_base;
    uint32_t uid_count;
    uint64_t *uid_used;         /* one bit per uid slot (8 KiB for 65,536: a byte each was 64 KiB
                                   to zero at every `hearth run`) */
    uint32_t uid_next;          /* where the next slot search starts */
    int uid_lock;               /* SBX_LOCK_DIR/uids.lock, opened at the first take_uid, or -1 */
    uint64_t next_id;           /* names cgroups sbx-<id> */
    seccomp_entry_t *seccomps;  /* compiled once per profile */
    sbx_spawner_t *spawner;     /* NULL: clone from this process */
    sbx_cgroup_t cg_ready[SBX_CG_AHEAD_MAX]; /* empty cgroups made ahead (with a spawner) */
    int n_cg_ready;
    int cg_ahead;               /* keep this many */
    sbx_t *live;                /* every sandbox not yet destroyed */
    sbx_t *pending;             /* asked of the spawner, not yet answered (via ->next) */
    bool shared_root;           /* see sbx_host_config_t */
    int root_lock;              /* the root ours alone: our flock'ed lock file (lock_root), else -1 */
    char root_lock_path[320];
    uint64_t n_cloned_ahead;    /* sandboxes whose init was cloned ahead */
    char *seccomp_cache;        /* see sbx_host_config_t */
};

struct sbx {
    sbx_host_t *host;
    sbx_cgroup_t cg;
    uint64_t ticket;            /* creation request id; names the cgroup */
    pid_t init_pid;
    int pidfd;                  /* readable once init is gone */
    int ctl;                    /* control socket to init */
    uint32_t uid_slot;
    bool dead;                  /* init gone or killed */
    pid_t last_pid;             /* process started last by sbx_exec */
    bool ran;                   /* a process was started: the counters may have moved */
    sbx_usage_t base;           /* counters when last_pid started (all 0 in a fresh sandbox) */
    sbx_event_t events[MAX_EVENTS]; /* read from init, not yet taken */
    int n_events;
    bool died_reported;         /* the DIED event was queued */
    bool reset_done;            /* init answered the last reset */
    bool socket_done;           /* init answered the last sbx_socket */
    bool late_failed;           /* asked of the spawner, then failed here: reported with its answer, */
    char *late_error;           /* for this reason (NULL: no memory to keep it) */
    int socket_fd;              /* its fd, or -1 */
    int socket_err;             /* its errno */
    sbx_t *prev, *next;         /* host->live */
};

/* --- cgroups left by a killed predecessor -------------------------------- */

static int open_existing(sbx_cgroups_t *cgs, const char *name, sbx_cgroup_t *cg)
{
    sbx_cg_init(cg, cgs);
    snprintf(cg->name, sizeof(cg->name), "%s", name);
    int found = 0;
    for (int i = 0; i < cgs->n_hier; i++) {
        cg->dirfd[i] = openat(cgs->hier_dirfd[i], name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        found += cg->dirfd[i] >= 0;
    }
    cg->created = found > 0;
    return found;
}

static bool pid_alive(pid_t pid)
{
    return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

/* Destroy stale children of our root: every sbx-* when the root is ours
 * alone, and run-<pid>-<n> of `hearth run` processes that no longer exist. */
static void clean_stale(sbx_cgroups_t *cgs, bool exclusive)
{
    int fd = openat(cgs->hier_dirfd[0], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_type != DT_DIR)
            continue;
        bool stale = (exclusive && strncmp(de->d_name, "sbx-", 4) == 0) ||
                     (strncmp(de->d_name, "run-", 4) == 0 && !pid_alive((pid_t)atoi(de->d_name + 4)));
        if (!stale)
            continue;
        sbx_cgroup_t cg;
        hearth_error_t err;
        if (open_existing(cgs, de->d_name, &cg) > 0)
            cgs->ops->destroy(&cg, &err);
        sbx_cg_close(&cg);
    }
    closedir(d);
}

static void discard(sbx_t *sb);
static bool cgroup_ahead(sbx_host_t *h);

/* A root-only lock file under SBX_LOCK_DIR, made if missing: an fd, or -1. */
static int open_lock_file(const char *path, hearth_error_t *err)
{
    if (mkdir(SBX_LOCK_DIR, 0755) < 0 && errno != EEXIST)
        return hearth_error_sys(err, "mkdir %s", SBX_LOCK_DIR);
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return hearth_error_sys(err, "open %s", path);
    return fd;
}

/* The root's lock: a root-only file under /run/hearth (the cgroup
 * directory itself would do, but anyone may open it and hold a lock on
 * it). Removed at close: after taking the lock, check that the file is
 * still the one at the path, or a closing holder removed it meanwhile. */
static int lock_root(sbx_host_t *h, const char *root, hearth_error_t *err)
{
    char path[sizeof(h->root_lock_path)];
    int n = snprintf(path, sizeof(path), "%s/root-", SBX_LOCK_DIR);
    for (const char *c = root; *c && n < (int)sizeof(path) - 6; c++)
        path[n++] = *c == '/' ? '+' : *c; /* '+' is not allowed in a root */
    snprintf(path + n, sizeof(path) - (size_t)n, ".lock");
    for (;;) {
        int fd = open_lock_file(path, err);
        if (fd < 0)
            return -1;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            int e = errno;
            close(fd);
            if (e == EWOULDBLOCK)
                return hearth_error_tag(err, EBUSY,
                                        "cgroup root `%s` is in use by another hearthd: give each daemon its own "
                                        "cgroup_root",
                                        root);
            errno = e;
            return hearth_error_sys(err, "lock %s", path);
        }
        struct stat held, now;
        if (fstat(fd, &held) == 0 && stat(path, &now) == 0 && held.st_dev == now.st_dev &&
            held.st_ino == now.st_ino) {
            h->root_lock = fd;
            snprintf(h->root_lock_path, sizeof(h->root_lock_path), "%s", path);
            return 0;
        }
        close(fd);
    }
}

/* --- host ----------------------------------------------------------------- */

int sbx_host_open(const sbx_host_config_t *cfg, sbx_host_t **out, hearth_error_t *err)
{
    if (geteuid() != 0)
        return hearth_error_set(err, EPERM, "sandboxes need root (namespaces, cgroups, uid maps)");
    sbx_host_t *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return hearth_error_set(err, ENOMEM, "sandbox host");
    h->uid_base = cfg->uid_base ? cfg->uid_base : 100000;
    h->uid_count = cfg->uid_count ? cfg->uid_count : 65536;
    h->uid_used = calloc(((size_t)h->uid_count + 63) / 64, sizeof(uint64_t));
    if (h->uid_used == NULL) {
        free(h);
        return hearth_error_set(err, ENOMEM, "sandbox host");
    }
    h->next_id = 1;
    h->root_lock = -1;
    h->uid_lock = -1;
    /* Processes sharing a root also share the uid range: start each one's
     * search somewhere else. */
    if (cfg->shared_root)
        h->uid_next = (uint32_t)getpid() % h->uid_count;
    const char *root = cfg->cgroup_root && *cfg->cgroup_root ? cfg->cgroup_root : "hearth";
    if (sbx_cgroups_detect(&h->cgs, root, err) < 0 || h->cgs.ops->open_root(&h->cgs, err) < 0) {
        hearth_error_wrap(err, "cgroups");
        sbx_host_close(h);
        return -1;
    }
    h->cg_open = true;
    h->shared_root = cfg->shared_root;
    /* Before anything of the root is cleaned: a second daemon on the same
     * root would take the first one's sandboxes for a dead predecessor's
     * and destroy them. The lock goes with the open file: a killed
     * daemon's is released with it (its spawner closes the copy), and its
     * file stays for the next one to take. */
    if (!cfg->shared_root && lock_root(h, root, err) < 0) {
        sbx_host_close(h);
        return -1;
    }
    if (cfg->seccomp_cache != NULL && (h->seccomp_cache = strdup(cfg->seccomp_cache)) == NULL) {
        sbx_host_close(h);
        return hearth_error_set(err, ENOMEM, "sandbox host");
    }
    clean_stale(&h->cgs, !cfg->shared_root);
    if (cfg->spawner)
        h->cg_ahead = cfg->cgroups_ahead < SBX_CG_AHEAD_MAX ? cfg->cgroups_ahead : SBX_CG_AHEAD_MAX;
    /* A child cloned ahead cannot be born into its cgroup (v2's clone3). */
    if (cfg->spawner &&
        sbx_spawner_start(cfg->netns_ahead, cfg->inits_ahead && !h->cgs.ops->clone_into, &h->spawner, err) < 0) {
        sbx_host_close(h);
        return -1;
    }
    for (int i = 0; i < h->cg_ahead; i++)
        cgroup_ahead(h);
    *out = h;
    return 0;
}

void sbx_host_close(sbx_host_t *h)
{
    if (h == NULL)
        return;
    while (h->live != NULL)
        sbx_destroy(h->live);
    /* Stopping the spawner kills the inits still being set up. */
    sbx_spawner_stop(h->spawner);
    while (h->n_cg_ready > 0) {
        hearth_error_t ignore;
        sbx_cgroup_t *cg = &h->cg_ready[--h->n_cg_ready];
        h->cgs.ops->destroy(cg, &ignore);
        sbx_cg_close(cg);
    }
    while (h->pending != NULL) {
        sbx_t *sb = h->pending;
        h->pending = sb->next;
        discard(sb);
    }
    for (seccomp_entry_t *e = h->seccomps, *next; e != NULL; e = next) {
        next = e->next;
        sbx_seccomp_free(e->sc);
        free(e->profile);
        free(e);
    }
    /* The root is removed only by the one daemon it belongs to. */
    if (h->cg_open)
        h->cgs.ops->close_root(&h->cgs, h->root_lock >= 0);
    if (h->root_lock >= 0) {
        unlink(h->root_lock_path); /* before the lock goes: see lock_root */
        close(h->root_lock);
    }
    if (h->uid_lock >= 0)
        close(h->uid_lock); /* and with it every uid lock still held */
    free(h->uid_used);
    free(h->seccomp_cache);
    free(h);
}

const char *sbx_host_cgroup_mode(const sbx_host_t *h)
{
    return h->cgs.ops->name;
}

uint64_t sbx_host_cloned_ahead(const sbx_host_t *h)
{
    return h->n_cloned_ahead;
}

static const sbx_seccomp_t *seccomp_for(sbx_host_t *h, const char *profile, hearth_error_t *err)
{
    if (profile == NULL || *profile == '\0')
        profile = "default";
    for (seccomp_entry_t *e = h->seccomps; e != NULL; e = e->next)
        if (strcmp(e->profile, profile) == 0)
            return e->sc;
    seccomp_entry_t *e = calloc(1, sizeof(*e));
    if (e == NULL || (e->profile = strdup(profile)) == NULL) {
        free(e);
        hearth_error_set(err, ENOMEM, "seccomp profile");
        return NULL;
    }
    if (sbx_seccomp_compile_cached(strcmp(profile, "default") == 0 ? NULL : profile, h->seccomp_cache, &e->sc,
                                   err) < 0) {
        free(e->profile);
        free(e);
        hearth_error_wrap(err, "seccomp profile `%s`", profile);
        return NULL;
    }
    e->sc->in_init = strcmp(profile, "default") == 0;
    e->next = h->seccomps;
    h->seccomps = e;
    return e->sc;
}

/* --- sandboxes ------------------------------------------------------------- */

/* A uid is ours while we hold a write lock on one byte of a file every
 * creator shares, at the uid's own offset: concurrent `hearth run`s, and
 * runs or daemons whose ranges overlap (`hearth run` and hearthd both
 * default to 100000 on), never map two live sandboxes to one host uid.
 * An OFD lock belongs to the open file, so a killed holder's go with it,
 * and two hosts in one process exclude each other too. The file is never
 * removed: another process may hold locks on it. */
static int set_uid_lock(sbx_host_t *h, uid_t uid, short type)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = (off_t)uid, .l_len = 1};
    return fcntl(h->uid_lock, F_OFD_SETLK, &fl);
}

static int take_uid(sbx_host_t *h, uint32_t *slot, hearth_error_t *err)
{
    if (h->uid_lock < 0 && (h->uid_lock = open_lock_file(SBX_LOCK_DIR "/uids.lock", err)) < 0)
        return -1;
    uint32_t elsewhere = 0;
    for (uint32_t i = 0; i < h->uid_count; i++) {
        uint32_t s = (h->uid_next + i) % h->uid_count;
        if (h->uid_used[s / 64] & (1ULL << (s % 64)))
            continue;
        if (set_uid_lock(h, h->uid_base + s, F_WRLCK) < 0) {
            if (errno != EAGAIN && errno != EACCES)
                return hearth_error_sys(err, "lock uid %u in %s/uids.lock", (unsigned)(h->uid_base + s),
                                        SBX_LOCK_DIR);
            elsewhere++;
            continue;
        }
        h->uid_used[s / 64] |= 1ULL << (s % 64);
        h->uid_next = s + 1;
        *slot = s;
        return 0;
    }
    return hearth_error_set(err, EAGAIN,
                            "no free uid in the sandbox uid range %u-%u (%u of them held by another hearthd or "
                            "hearth run)",
                            (unsigned)h->uid_base, (unsigned)(h->uid_base + h->uid_count - 1), (unsigned)elsewhere);
}

static void put_uid(sbx_host_t *h, uint32_t slot)
{
    set_uid_lock(h, h->uid_base + slot, F_UNLCK);
    h->uid_used[slot / 64] &= ~(1ULL << (slot % 64));
}

static void limits_of(const sbx_spec_t *spec, sbx_cgroup_limits_t *lim);

/* Validate the spec, fill in defaults, name the cgroup and take a uid:
 * everything up to the clone but the cgroup itself (make_cgroup). */
static int prepare(sbx_host_t *h, const sbx_spec_t *in, sbx_t **out, sbx_spec_t *spec,
                   const sbx_seccomp_t **sc, hearth_error_t *err)
{
    *spec = *in;
    if (spec->hostname == NULL)
        spec->hostname = "hearth";
    if (spec->memory_bytes == 0)
        spec->memory_bytes = 128ULL << 20;
    if (spec->cpus <= 0)
        spec->cpus = 1.0;
    if (spec->pids == 0)
        spec->pids = 64;
    if (spec->tmp_bytes == 0)
        spec->tmp_bytes = 64ULL << 20;
    if (spec->nofile == 0)
        spec->nofile = 1024;
    if (strlen(spec->hostname) > 64)
        return hearth_error_set(err, EINVAL, "hostname longer than 64 bytes");
    if (spec->memory_bytes < (4ULL << 20))
        return hearth_error_set(err, EINVAL, "memory limit below 4 MiB");
    if (spec->rootfs != NULL && spec->rootfs[0] != '/')
        return hearth_error_set(err, EINVAL, "rootfs `%s`: must be an absolute path", spec->rootfs);
    for (size_t i = 0; i < spec->n_mounts; i++)
        if (spec->mounts[i].source[0] != '/' || spec->mounts[i].target[0] != '/')
            return hearth_error_set(err, EINVAL, "bind mount %s:%s: paths must be absolute",
                                    spec->mounts[i].source, spec->mounts[i].target);
    *sc = seccomp_for(h, spec->seccomp, err);
    if (*sc == NULL)
        return -1;

    sbx_t *sb = calloc(1, sizeof(*sb));
    if (sb == NULL)
        return hearth_error_set(err, ENOMEM, "sandbox");
    sb->host = h;
    sb->pidfd = sb->ctl = -1;
    sbx_cg_init(&sb->cg, &h->cgs);
    sb->ticket = h->next_id++;
    if (h->shared_root)
        snprintf(sb->cg.name, sizeof(sb->cg.name), "run-%d-%" PRIu64, (int)getpid(), sb->ticket);
    else
        snprintf(sb->cg.name, sizeof(sb->cg.name), "sbx-%" PRIu64, sb->ticket);
    if (take_uid(h, &sb->uid_slot, err) < 0) {
        free(sb);
        return -1;
    }
    *out = sb;
    return 0;
}

/* Create the sandbox's cgroup with its limits (rolled back by discard). */
static int make_cgroup(sbx_t *sb, const sbx_spec_t *spec, hearth_error_t *err)
{
    sbx_host_t *h = sb->host;
    sbx_cgroup_limits_t lim;
    limits_of(spec, &lim);
    if (h->cgs.ops->create(&h->cgs, &sb->cg, err) < 0 || h->cgs.ops->set_limits(&sb->cg, &lim, err) < 0)
        return hearth_error_wrap(err, "cgroup %s", sb->cg.name);
    return 0;
}

/* Make one empty cgroup ahead of need if the host keeps fewer than it
 * wants: creating a cgroup (a directory in each v1 hierarchy, a memory
 * cgroup above all) is the dearest step a creation's caller takes. A
 * failure here is not the caller's: the next creation makes its own. */
static bool cgroup_ahead(sbx_host_t *h)
{
    if (h->n_cg_ready >= h->cg_ahead)
        return false;
    sbx_cgroup_t *cg = &h->cg_ready[h->n_cg_ready];
    sbx_cg_init(cg, &h->cgs);
    snprintf(cg->name, sizeof(cg->name), "sbx-%" PRIu64, h->next_id++);
    hearth_error_t err;
    if (h->cgs.ops->create(&h->cgs, cg, &err) < 0) {
        hearth_error_t ignore;
        h->cgs.ops->destroy(cg, &ignore);
        sbx_cg_close(cg);
        return false;
    }
    h->n_cg_ready++;
    return true;
}

/* Undo prepare() for a sandbox whose init never came up. */
static void discard(sbx_t *sb)
{
    hearth_error_t ignore;
    sb->host->cgs.ops->destroy(&sb->cg, &ignore);
    sbx_cg_close(&sb->cg);
    put_uid(sb->host, sb->uid_slot);
    free(sb->late_error);
    free(sb);
}

/* cg_later: the cgroup is made after the clone (v1; see create_local). */
static void fill_req(sbx_t *sb, const sbx_spec_t *spec, const sbx_seccomp_t *sc, bool cg_later,
                     sbx_spawn_req_t *req)
{
    sbx_host_t *h = sb->host;
    *req = (sbx_spawn_req_t){.spec = spec, .uid = h->uid_base + sb->uid_slot, .seccomp = sc, .mount_template = -1};
    if (cg_later) {
        req->cg_later = true;
        req->n_cg_fds = h->cgs.n_hier;
        return;
    }
    int cfd = h->cgs.ops->clone_fd(&sb->cg);
    if (cfd >= 0) {
        req->into_cgroup = true;
        req->cg_fds[0] = cfd;
        req->n_cg_fds = 1;
    } else {
        for (int i = 0; i < h->cgs.n_hier; i++)
            req->cg_fds[req->n_cg_fds++] = sb->cg.dirfd[i];
    }
}

/* The init is up: the sandbox goes live. */
static void go_live(sbx_t *sb, const sbx_spawn_res_t *res)
{
    sbx_host_t *h = sb->host;
    sb->init_pid = res->pid;
    sb->pidfd = res->pidfd;
    sb->ctl = res->ctl;
    /* The spawner drove the handshake non-blocking; the flag lives on the
     * shared file description. Our reads choose per call (MSG_DONTWAIT). */
    int fl = fcntl(sb->ctl, F_GETFL);
    if (fl >= 0)
        fcntl(sb->ctl, F_SETFL, fl & ~O_NONBLOCK);
    sb->prev = NULL;
    sb->next = h->live;
    if (h->live)
        h->live->prev = sb;
    h->live = sb;
}

/* An exec request sent ahead, with the stdio fds it carries. */
typedef struct exec_msg {
    char *buf;
    size_t len;
    int fds[3];
    int n_fds;
    int send_errno; /* set when sending it failed */
} exec_msg_t;

/* Create a sandbox from this process. On cgroup v1 the clone comes first
 * and the cgroup is made while the child builds its root (the child joins
 * it when it takes its network namespace, before it gives up host root and
 * long before anything of the tenant's runs); v2 clones straight into a
 * cgroup that must exist first. With ex, the exec request is sent as soon
 * as init is about to read its socket, saving init's first round trip. */
static int create_local(sbx_host_t *h, const sbx_spec_t *in, exec_msg_t *ex, sbx_t **out, hearth_error_t *err)
{
    sbx_spec_t spec;
    const sbx_seccomp_t *sc;
    sbx_t *sb;
    if (prepare(h, in, &sb, &spec, &sc, err) < 0)
        return -1;
    bool later = !h->cgs.ops->clone_into;
    if (!later && make_cgroup(sb, &spec, err) < 0) {
        discard(sb);
        return -1;
    }
    sbx_spawn_req_t req;
    fill_req(sb, &spec, sc, later, &req);
    sbx_spawning_t sp;
    if (sbx_spawn_begin(&req, &sp, err) < 0)
        goto fail;
    if (later) {
        if (make_cgroup(sb, &spec, err) < 0) {
            sbx_spawn_abort(&sp);
            discard(sb);
            return -1;
        }
        if (sbx_spawn_release(&sp, sb->cg.dirfd, h->cgs.n_hier, err) < 0)
            goto fail;
    }
    sbx_spawn_res_t res;
    int rc;
    bool sent = ex == NULL;
    while ((rc = sbx_spawn_advance(&sp, &res, err)) == 0) {
        /* After 'G', init's next read is its control socket. */
        if (!sent && sp.mapped) {
            sent = true;
            if (sbx_send_msg(sp.sock, ex->buf, ex->len, ex->fds, ex->n_fds) < 0)
                ex->send_errno = errno;
        }
    }
    if (rc < 0)
        goto fail;
    go_live(sb, &res);
    *out = sb;
    return 0;
fail:
    hearth_error_wrap(err, "sandbox set-up");
    discard(sb);
    return -1;
}

int sbx_create(sbx_host_t *h, const sbx_spec_t *in, sbx_t **out, hearth_error_t *err)
{
    if (h->spawner != NULL) {
        uint64_t ticket;
        if (sbx_create_async(h, in, &ticket, err) < 0)
            return -1;
        for (;;) {
            struct pollfd p = {sbx_host_fd(h), POLLIN, 0};
            if (poll(&p, 1, -1) < 0 && errno != EINTR)
                return hearth_error_sys(err, "poll spawner");
            sbx_t *sb;
            uint64_t t;
            int rc;
            while ((rc = sbx_host_poll(h, &sb, &t, err)) > 0) {
                if (t != ticket) {
                    /* Not ours: sync and async creates are not mixed. */
                    sbx_destroy(sb);
                    continue;
                }
                if (sb == NULL)
                    return -1;
                *out = sb;
                return 0;
            }
            if (rc < 0)
                return -1;
        }
    }
    return create_local(h, in, NULL, out, err);
}

int sbx_create_async(sbx_host_t *h, const sbx_spec_t *in, uint64_t *ticket, hearth_error_t *err)
{
    if (h->spawner == NULL)
        return hearth_error_set(err, EINVAL, "asynchronous creation needs the spawner");
    sbx_spec_t spec;
    const sbx_seccomp_t *sc;
    sbx_t *sb;
    if (prepare(h, in, &sb, &spec, &sc, err) < 0)
        return -1;
    bool made_ahead = h->n_cg_ready > 0;
    if (made_ahead) {
        sb->cg = h->cg_ready[--h->n_cg_ready];
    } else if (make_cgroup(sb, &spec, err) < 0) {
        discard(sb);
        return -1;
    }
    sbx_spawn_req_t req;
    fill_req(sb, &spec, sc, false, &req);
    if (sbx_spawner_send(h->spawner, sb->ticket, &req, err) < 0) {
        discard(sb);
        return -1;
    }
    sb->next = h->pending;
    h->pending = sb;
    *ticket = sb->ticket;
    /* A cgroup made ahead has only its limits left to write: written now,
     * while the spawner starts the sandbox. They are in force before the
     * function's first instruction all the same: that waits for the
     * sandbox to be answered ready, which sbx_host_poll does after this. */
    if (made_ahead) {
        sbx_cgroup_limits_t lim;
        limits_of(&spec, &lim);
        hearth_error_t why = {0};
        if (h->cgs.ops->set_limits(&sb->cg, &lim, &why) < 0) {
            hearth_error_wrap(&why, "cgroup %s", sb->cg.name);
            sb->late_failed = true;
            sb->late_error = strdup(why.msg);
        }
    }
    return 0;
}

bool sbx_host_make_ahead(sbx_host_t *h)
{
    return cgroup_ahead(h) && h->n_cg_ready < h->cg_ahead;
}

int sbx_host_fd(const sbx_host_t *h)
{
    return h->spawner ? sbx_spawner_fd(h->spawner) : -1;
}

int sbx_host_poll(sbx_host_t *h, sbx_t **out, uint64_t *ticket, hearth_error_t *err)
{
    if (h->spawner == NULL)
        return 0;
    /* Requests that did not fit go out as answers make room. */
    if (sbx_spawner_flush(h->spawner, err) < 0)
        return -1;
    struct pollfd p = {sbx_host_fd(h), POLLIN, 0};
    if (poll(&p, 1, 0) <= 0)
        return 0;
    bool failed;
    sbx_spawn_res_t res;
    hearth_error_t why = {0};
    int rc = sbx_spawner_recv(h->spawner, ticket, &failed, &res, &why);
    if (rc <= 0) {
        if (rc < 0)
            *err = why;
        return rc;
    }
    sbx_t **pp = &h->pending;
    while (*pp != NULL && (*pp)->ticket != *ticket)
        pp = &(*pp)->next;
    sbx_t *sb = *pp;
    if (sb == NULL) {
        if (!failed) {
            close(res.pidfd);
            close(res.ctl);
        }
        return hearth_error_set(err, EPROTO, "spawner answered unknown ticket %" PRIu64, *ticket);
    }
    *pp = sb->next;
    if (failed) {
        *err = why;
        hearth_error_wrap(err, "sandbox set-up");
        discard(sb);
        *out = NULL;
        return 1;
    }
    go_live(sb, &res);
    if (res.ahead)
        h->n_cloned_ahead++;
    if (sb->late_failed) {
        hearth_error_tag(err, EINVAL, "%s", sb->late_error ? sb->late_error : "cgroup limits refused");
        free(sb->late_error);
        sbx_destroy(sb);
        *out = NULL;
        return 1;
    }
    *out = sb;
    return 1;
}

/* --- events from init -------------------------------------------------------
 * Init's messages are turned into sbx_event_t and queued; the sync calls
 * (sbx_exec, sbx_wait, sbx_reset) take what they wait for and leave the
 * rest for sbx_next_event. */

static void push_event(sbx_t *sb, const sbx_event_t *ev)
{
    if (sb->n_events == MAX_EVENTS) {
        /* Nobody is reading: the oldest goes. */
        memmove(sb->events, sb->events + 1, sizeof(sb->events[0]) * (MAX_EVENTS - 1));
        sb->n_events--;
    }
    sb->events[sb->n_events++] = *ev;
}

/* Turn a raw end into its cause, using the counters since the start. */
static void classify(sbx_t *sb, sbx_end_t *e)
{
    bool failed = e->kind == SBX_END_SIGNAL || e->kind == SBX_END_LOST || (e->kind == SBX_END_EXIT && e->status != 0);
    if (!failed)
        return;
    sbx_usage_t now;
    hearth_error_t ignore;
    if (sbx_usage(sb, &now, &ignore) < 0)
        return;
    if (now.oom_kills > sb->base.oom_kills)
        e->kind = SBX_END_OOM;
    else if (now.pids_max_hits > sb->base.pids_max_hits)
        e->kind = SBX_END_PIDS;
}

/* init is gone: one DIED event, once. */
static void mark_dead(sbx_t *sb)
{
    if (sb->died_reported)
        return;
    sb->dead = true;
    sb->died_reported = true;
    sbx_event_t ev = {.kind = SBX_EV_DIED, .pid = sb->last_pid};
    ev.end.kind = SBX_END_LOST;
    ev.end.pid = sb->last_pid;
    classify(sb, &ev.end);
    push_event(sb, &ev);
}

/* Read one message from init into the queue. block: wait for it.
 * Returns 1 when one was queued (or init died), 0 when none was there. */
static int pump(sbx_t *sb, bool block)
{
    union {
        char type;
        struct sbx_msg_started s;
        struct sbx_msg_end e;
        struct sbx_msg_socket_fd f;
    } m;
    ssize_t n;
    int fd = -1, n_fds = 0;
    if (block) {
        n = sbx_recv_msg(sb->ctl, &m, sizeof(m), &fd, 1, &n_fds);
    } else {
        /* Only sbx_socket's answer carries an fd, and it reads blocking. */
        n = sbx_recv(sb->ctl, &m, sizeof(m), MSG_DONTWAIT);
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    if (m.type == SBX_MSG_SOCKET_FD && n >= (ssize_t)sizeof(m.f)) {
        sb->socket_fd = n_fds == 1 ? fd : -1;
        sb->socket_err = n_fds == 1 ? 0 : (m.f.err ? m.f.err : EPROTO);
        sb->socket_done = true;
        return 1;
    }
    if (n_fds > 0)
        close(fd);
    if (n <= 0) {
        mark_dead(sb);
        return 1;
    }
    sbx_event_t ev = {0};
    if (m.type == SBX_MSG_END && (size_t)n >= sizeof(m.e)) {
        ev.kind = SBX_EV_END;
        ev.pid = ev.end.pid = m.e.pid;
        ev.end.alone = m.e.alone;
        if (WIFEXITED(m.e.status)) {
            ev.end.kind = SBX_END_EXIT;
            ev.end.status = WEXITSTATUS(m.e.status);
        } else {
            ev.end.kind = SBX_END_SIGNAL;
            ev.end.status = WTERMSIG(m.e.status);
        }
        classify(sb, &ev.end);
    } else if (m.type == SBX_MSG_STARTED && (size_t)n >= sizeof(m.s)) {
        ev.pid = m.s.pid;
        if (m.s.pid > 0) {
            ev.kind = SBX_EV_STARTED;
            sb->last_pid = m.s.pid;
        } else {
            ev.kind = SBX_EV_START_FAILED;
            ev.err = m.s.err;
            m.s.what[sizeof(m.s.what) - 1] = '\0';
            snprintf(ev.what, sizeof(ev.what), "%s", m.s.what);
        }
    } else if (m.type == SBX_MSG_RESET_DONE) {
        sb->reset_done = true;
        return 1;
    } else {
        return 1; /* unknown: ignore */
    }
    push_event(sb, &ev);
    return 1;
}

/* Take the first queued event matching want (a bit mask of 1 << kind) and,
 * when pid != 0, that pid. */
static bool take_event(sbx_t *sb, unsigned want, pid_t pid, sbx_event_t *out)
{
    for (int i = 0; i < sb->n_events; i++) {
        sbx_event_t *ev = &sb->events[i];
        if (!(want & (1u << ev->kind)) || (pid != 0 && ev->kind != SBX_EV_DIED && ev->pid != pid))
            continue;
        *out = *ev;
        memmove(sb->events + i, sb->events + i + 1, sizeof(sb->events[0]) * (size_t)(sb->n_events - i - 1));
        sb->n_events--;
        return true;
    }
    return false;
}

static int msg_append(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t n = strlen(s) + 1;
    if (*len + n > *cap) {
        size_t nc = (*cap + n) * 2;
        if (nc > SBX_MAX_MSG)
            nc = SBX_MAX_MSG;
        if (*len + n > nc)
            return -1;
        char *nb = realloc(*buf, nc);
        if (nb == NULL)
            return -1;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    return 0;
}

static const char *const default_env[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                          "HOME=/tmp", NULL};

/* Encode an exec request: 'E', fd mask, argc, envc, then argv, envp and
 * cwd as C strings; the stdio fds travel beside it. */
static int build_exec(const sbx_exec_t *ex, exec_msg_t *m, hearth_error_t *err)
{
    if (ex->argv == NULL || ex->argv[0] == NULL)
        return hearth_error_set(err, EINVAL, "empty command");
    const char *const *envp = ex->envp ? ex->envp : default_env;
    uint32_t argc = 0, envc = 0;
    while (ex->argv[argc])
        argc++;
    while (envp[envc])
        envc++;

    size_t cap = 4096, len = 10;
    cleanup_free char *buf = malloc(cap);
    if (buf == NULL)
        return hearth_error_set(err, ENOMEM, "exec request");
    *m = (exec_msg_t){0};
    unsigned char mask = 0;
    const int io[3] = {ex->stdin_fd, ex->stdout_fd, ex->stderr_fd};
    for (int i = 0; i < 3; i++)
        if (io[i] >= 0) {
            mask |= (unsigned char)(1u << i);
            m->fds[m->n_fds++] = io[i];
        }
    buf[0] = SBX_MSG_EXEC;
    buf[1] = (char)mask;
    memcpy(buf + 2, &argc, 4);
    memcpy(buf + 6, &envc, 4);
    for (uint32_t i = 0; i < argc; i++)
        if (msg_append(&buf, &len, &cap, ex->argv[i]) < 0)
            return hearth_error_set(err, E2BIG, "command line too long");
    for (uint32_t i = 0; i < envc; i++)
        if (msg_append(&buf, &len, &cap, envp[i]) < 0)
            return hearth_error_set(err, E2BIG, "environment too large");
    if (msg_append(&buf, &len, &cap, ex->cwd ? ex->cwd : "/") < 0)
        return hearth_error_set(err, E2BIG, "cwd too long");
    m->buf = steal_pointer(&buf);
    m->len = len;
    return 0;
}

int sbx_exec_send(sbx_t *sb, const sbx_exec_t *ex, hearth_error_t *err)
{
    if (sb->dead)
        return hearth_error_set(err, ESRCH, "sandbox %s is dead", sb->cg.name);
    exec_msg_t m;
    if (build_exec(ex, &m, err) < 0)
        return -1;
    cleanup_free char *buf = m.buf;
    /* Baseline for telling an OOM or pids-limit end from an ordinary one.
     * Before the first process the counters of the new cgroup are all 0,
     * as sb->base already is. */
    if (sb->ran && sbx_usage(sb, &sb->base, err) < 0)
        return -1;
    if (sbx_send_msg(sb->ctl, m.buf, m.len, m.fds, m.n_fds) < 0)
        return hearth_error_sys(err, "send exec request to %s", sb->cg.name);
    sb->ran = true;
    return 0;
}

/* Wait for init's answer to the exec request sent last. */
static int exec_started(sbx_t *sb, const sbx_exec_t *ex, pid_t *pid_out, hearth_error_t *err)
{
    sbx_event_t ev;
    while (!take_event(sb, 1u << SBX_EV_STARTED | 1u << SBX_EV_START_FAILED | 1u << SBX_EV_DIED, 0, &ev))
        pump(sb, true);
    if (ev.kind == SBX_EV_DIED) {
        push_event(sb, &ev);
        return hearth_error_set(err, ESRCH, "sandbox %s died", sb->cg.name);
    }
    if (ev.kind == SBX_EV_START_FAILED)
        return hearth_error_set(err, ev.err, "cannot start `%s` (%s)", ex->argv[0], ev.what);
    if (pid_out)
        *pid_out = ev.pid;
    return 0;
}

int sbx_create_exec(sbx_host_t *h, const sbx_spec_t *spec, const sbx_exec_t *ex, sbx_t **out, pid_t *pid_out,
                    hearth_error_t *err)
{
    *out = NULL;
    if (h->spawner != NULL) {
        if (sbx_create(h, spec, out, err) < 0)
            return -1;
        return sbx_exec(*out, ex, pid_out, err);
    }
    exec_msg_t m;
    if (build_exec(ex, &m, err) < 0)
        return -1;
    cleanup_free char *buf = m.buf;
    sbx_t *sb;
    if (create_local(h, spec, &m, &sb, err) < 0)
        return -1;
    *out = sb;
    sb->ran = true; /* base: all 0, the fresh cgroup's counters */
    if (m.send_errno != 0) {
        errno = m.send_errno;
        return hearth_error_sys(err, "send exec request to %s", sb->cg.name);
    }
    return exec_started(sb, ex, pid_out, err);
}

int sbx_exec(sbx_t *sb, const sbx_exec_t *ex, pid_t *pid_out, hearth_error_t *err)
{
    if (sbx_exec_send(sb, ex, err) < 0)
        return -1;
    return exec_started(sb, ex, pid_out, err);
}

int sbx_ctl_fd(const sbx_t *sb)
{
    return sb->ctl;
}

int sbx_next_event(sbx_t *sb, sbx_event_t *ev, hearth_error_t *err)
{
    (void)err;
    for (;;) {
        if (take_event(sb, ~0u, 0, ev))
            return 1;
        if (sb->died_reported || pump(sb, false) == 0)
            return 0;
    }
}

int sbx_wait(sbx_t *sb, uint64_t timeout_ms, sbx_end_t *end, hearth_error_t *err)
{
    uint64_t deadline = timeout_ms ? now_ns() + timeout_ms * 1000000ULL : 0;
    sbx_event_t ev;
    for (;;) {
        if (take_event(sb, 1u << SBX_EV_END | 1u << SBX_EV_DIED, sb->last_pid, &ev)) {
            *end = ev.end;
            return 0;
        }
        int wait_ms = -1;
        if (deadline) {
            uint64_t now = now_ns();
            if (now >= deadline) {
                if (sbx_kill(sb, err) < 0)
                    return -1;
                end->kind = SBX_END_TIMEOUT;
                end->status = 0;
                end->pid = sb->last_pid;
                return 0;
            }
            wait_ms = (int)((deadline - now + 999999) / 1000000);
        }
        struct pollfd p[2] = {{sb->ctl, POLLIN, 0}, {sb->pidfd, POLLIN, 0}};
        int n = poll(p, 2, wait_ms);
        if (n < 0 && errno != EINTR)
            return hearth_error_sys(err, "poll sandbox %s", sb->cg.name);
        if (n > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            pump(sb, false);
        } else if (n > 0 && (p[1].revents & POLLIN)) {
            /* init is gone; take what it said before dying */
            while (!sb->died_reported && pump(sb, false) > 0)
                ;
            mark_dead(sb);
        }
    }
}

int sbx_reset(sbx_t *sb, hearth_error_t *err)
{
    if (sb->dead)
        return hearth_error_set(err, ESRCH, "sandbox %s is dead", sb->cg.name);
    char c = SBX_MSG_RESET;
    sb->reset_done = false;
    if (send(sb->ctl, &c, 1, MSG_NOSIGNAL) != 1)
        return hearth_error_sys(err, "reset %s", sb->cg.name);
    for (;;) {
        struct pollfd p = {sb->ctl, POLLIN, 0};
        if (poll(&p, 1, 5000) == 0)
            return hearth_error_set(err, ETIMEDOUT, "reset of %s took over 5 s", sb->cg.name);
        pump(sb, true);
        if (sb->dead)
            return hearth_error_set(err, 0, "sandbox %s died during reset", sb->cg.name);
        if (sb->reset_done)
            return 0;
    }
}

int sbx_socket(sbx_t *sb, uint16_t port, bool connect, int *fd_out, hearth_error_t *err)
{
    if (sb->dead)
        return hearth_error_set(err, ESRCH, "sandbox %s is dead", sb->cg.name);
    struct sbx_msg_socket m = {.type = SBX_MSG_SOCKET, .connect = connect, .port = port};
    sb->socket_done = false;
    if (send(sb->ctl, &m, sizeof(m), MSG_NOSIGNAL) != (ssize_t)sizeof(m))
        return hearth_error_sys(err, "socket request to %s", sb->cg.name);
    while (!sb->socket_done && !sb->dead)
        pump(sb, true);
    if (sb->dead)
        return hearth_error_set(err, ESRCH, "sandbox %s died", sb->cg.name);
    if (sb->socket_fd < 0)
        return hearth_error_set(err, sb->socket_err, "%s 127.0.0.1:%u in %s", connect ? "connect to" : "listen on",
                                port, sb->cg.name);
    *fd_out = sb->socket_fd;
    return 0;
}

int sbx_kill_start(sbx_t *sb)
{
    sb->dead = true;
    if (sb->pidfd < 0 || (syscall(SYS_pidfd_send_signal, sb->pidfd, SIGKILL, NULL, 0) < 0 && errno != ESRCH))
        return -1;
    return sb->pidfd;
}

/* Kill init and wait (up to 5 s) until it is gone. Every process of the
 * sandbox is in init's pid namespace, and init's end takes that down: the
 * kernel kills the others, forks racing with it fail, and init's pidfd
 * turns readable only once all of them are reaped. */
static void end_init(sbx_t *sb)
{
    int fd = sbx_kill_start(sb);
    if (fd >= 0) {
        struct pollfd p = {fd, POLLIN, 0};
        while (poll(&p, 1, 5000) < 0 && errno == EINTR)
            ;
    }
}

int sbx_kill(sbx_t *sb, hearth_error_t *err)
{
    /* Init first: cheaper than the cgroup's kill on v1 (two freezer state
     * changes). The cgroup's kill is still the check that nothing is left
     * (one read of cgroup.procs when nothing is), and the way when init's
     * pidfd is gone. */
    end_init(sb);
    if (sb->host->cgs.ops->kill(&sb->cg, err) < 0)
        return hearth_error_wrap(err, "kill %s", sb->cg.name);
    return 0;
}

static void limits_of(const sbx_spec_t *spec, sbx_cgroup_limits_t *lim)
{
    *lim = (sbx_cgroup_limits_t){
        .memory_bytes = spec->memory_bytes ? spec->memory_bytes : 128ULL << 20,
        .cpu_period_us = 100000,
        .cpu_quota_us = (uint64_t)((spec->cpus > 0 ? spec->cpus : 1.0) * 100000.0),
        .pids = spec->pids ? spec->pids : 64,
    };
}

int sbx_set_limits(sbx_t *sb, const sbx_spec_t *spec, hearth_error_t *err)
{
    sbx_cgroup_limits_t lim;
    limits_of(spec, &lim);
    if (lim.memory_bytes < (4ULL << 20))
        return hearth_error_set(err, EINVAL, "memory limit below 4 MiB");
    if (sb->host->cgs.ops->set_limits(&sb->cg, &lim, err) < 0)
        return hearth_error_wrap(err, "limits of %s", sb->cg.name);
    return 0;
}

int sbx_usage(sbx_t *sb, sbx_usage_t *out, hearth_error_t *err)
{
    sbx_cgroup_stats_t st = {0};
    if (sb->host->cgs.ops->stats(&sb->cg, &st, err) < 0)
        return -1;
    out->cpu_ns = st.cpu_ns;
    out->memory_peak = st.memory_peak;
    out->memory_current = st.memory_current;
    out->oom_kills = st.oom_kills;
    out->pids_max_hits = st.pids_max_hits;
    return 0;
}

int sbx_cpu_ns(sbx_t *sb, uint64_t *ns, hearth_error_t *err)
{
    return sb->host->cgs.ops->cpu_ns(&sb->cg, ns, err);
}

void sbx_destroy(sbx_t *sb)
{
    if (sb == NULL)
        return;
    sbx_host_t *h = sb->host;
    hearth_error_t err;
    if (sb->ctl >= 0)
        close(sb->ctl); /* init takes everything down when it sees EOF */
    end_init(sb);
    if (sb->pidfd >= 0)
        close(sb->pidfd);
    /* Without a spawner init is our own child: reap it. */
    if (h->spawner == NULL && sb->init_pid > 0)
        waitpid(sb->init_pid, NULL, 0);
    h->cgs.ops->destroy(&sb->cg, &err);
    sbx_cg_close(&sb->cg);
    put_uid(h, sb->uid_slot);
    if (sb->prev)
        sb->prev->next = sb->next;
    else
        h->live = sb->next;
    if (sb->next)
        sb->next->prev = sb->prev;
    free(sb);
}

pid_t sbx_init_pid(const sbx_t *sb)
{
    return sb->init_pid;
}

uid_t sbx_host_uid(const sbx_t *sb)
{
    return sb->host->uid_base + sb->uid_slot;
}

const char *sbx_cgroup_name(const sbx_t *sb)
{
    return sb->cg.name;
}

bool sbx_alive(const sbx_t *sb)
{
    return !sb->dead;
}

static void human_bytes(uint64_t b, char *buf, size_t len)
{
    if (b >= (1ULL << 30) && b % (1ULL << 30) == 0)
        snprintf(buf, len, "%" PRIu64 " GiB", b >> 30);
    else if (b >= (1ULL << 20))
        snprintf(buf, len, "%" PRIu64 " MiB", b >> 20);
    else
        snprintf(buf, len, "%" PRIu64 " KiB", b >> 10);
}

void sbx_end_describe(const sbx_end_t *end, const sbx_spec_t *spec, uint64_t timeout_ms, char *buf, size_t len)
{
    char lim[32];
    switch (end->kind) {
    case SBX_END_EXIT:
        snprintf(buf, len, "exited with status %d", end->status);
        break;
    case SBX_END_SIGNAL:
        snprintf(buf, len, "killed by signal %d (%s)", end->status, strsignal(end->status));
        break;
    case SBX_END_OOM:
        human_bytes(spec && spec->memory_bytes ? spec->memory_bytes : 128ULL << 20, lim, sizeof(lim));
        snprintf(buf, len, "out of memory (limit %s)", lim);
        break;
    case SBX_END_PIDS:
        snprintf(buf, len, "pids limit (%u) reached", spec && spec->pids ? spec->pids : 64);
        break;
    case SBX_END_TIMEOUT:
        if (timeout_ms % 1000 == 0)
            snprintf(buf, len, "time limit (%" PRIu64 " s) reached", timeout_ms / 1000);
        else
            snprintf(buf, len, "time limit (%" PRIu64 " ms) reached", timeout_ms);
        break;
    case SBX_END_LOST:
        snprintf(buf, len, "the sandbox died");
        break;
    }
}
