/* Network namespaces for new sandboxes: only lo, up.
 *
 * A new network namespace is the one expensive namespace (FIELD-NOTES:
 * +300-450 us, about 500 us of CPU here), and clone3 would make it in the
 * caller before the child exists. We make it on a thread instead, beside
 * the child building its root, and the child enters it with setns while
 * still host root.
 *
 * Better still, a stock made ahead of need: a thread of the spawner makes
 * namespaces before anyone asks, so a creation finds one ready and the
 * spawner's CPU goes to the child. Every namespace serves one sandbox and
 * is never reused: nothing a tenant did in one can reach the next. When the stock has none
 * to spare, a creation makes its own on a thread of its own, as before, so
 * a burst still uses every CPU.
 *
 * Threads and clone3: the children are cloned from a process whose other
 * threads may be running. A child copies the memory of a lock another
 * thread held at that instant (malloc's, say) and would wait forever on
 * it. The threads here therefore call no allocator and take no lock but
 * the stock's own mutex, which the child never touches. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define STOCK_MAX 16

struct sbx_netns_stock {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;     /* a namespace was made or taken, or stop */
    int ready[STOCK_MAX];  /* namespaces made, not yet taken */
    int n_ready;
    int reserved;          /* promised to creations that will take them */
    int target;            /* keep this many ready or promised-and-coming */
    int busy;              /* creations under way in the spawner */
    bool making;           /* the thread is making one now */
    bool done;             /* the thread has ended (failed or stopped) */
    bool stop;
    int err;               /* errno of the thread's last failure */
    const char *err_what;  /* and which step failed */
};

struct sbx_netns_job {
    pthread_t thread;
    bool threaded;             /* a thread of its own makes it */
    sbx_netns_stock_t *stock;  /* else a namespace reserved in this stock */
    int fd;                    /* the namespace, or -1 */
    int err;                   /* when fd is -1 */
    const char *err_what;
};

/* Move the calling thread into a new network namespace with lo up and
 * return its fd. No allocation (see above): errors as errno and a step. */
static int make_netns(const char **what)
{
    *what = "unshare network namespace";
    if (unshare(CLONE_NEWNET) < 0)
        return -1;
    *what = "open the new network namespace";
    int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    *what = "bring lo up";
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    memcpy(ifr.ifr_name, "lo", 3);
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        goto fail;
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        goto fail;
    close(s);
    return fd;
fail:;
    int e = errno;
    if (s >= 0)
        close(s);
    close(fd);
    errno = e;
    return -1;
}

static void *stock_main(void *arg)
{
    sbx_netns_stock_t *st = arg;
    pthread_mutex_lock(&st->mu);
    for (;;) {
        /* While creations are under way, only what they wait for: making
         * one takes a CPU for 0.5 ms, and a child being set up would wait
         * for it (2 CPUs here). */
        while (!st->stop && (st->n_ready - st->reserved >= st->target || st->n_ready == STOCK_MAX ||
                             (st->busy > 0 && st->n_ready > st->reserved)))
            pthread_cond_wait(&st->cv, &st->mu);
        if (st->stop)
            break;
        st->making = true;
        pthread_mutex_unlock(&st->mu);
        const char *what;
        int fd = make_netns(&what);
        int e = errno;
        pthread_mutex_lock(&st->mu);
        st->making = false;
        if (fd < 0) {
            st->err = e;
            st->err_what = what;
            break;
        }
        st->ready[st->n_ready++] = fd;
        pthread_cond_broadcast(&st->cv);
    }
    st->done = true;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

int sbx_netns_stock_start(int target, sbx_netns_stock_t **out, hearth_error_t *err)
{
    *out = NULL;
    if (target <= 0)
        return 0;
    sbx_netns_stock_t *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return hearth_error_set(err, ENOMEM, "network namespace stock");
    st->target = target < STOCK_MAX ? target : STOCK_MAX;
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    /* A small stack: the thread makes a few system calls in a loop. */
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc == 0) {
        pthread_attr_setstacksize(&attr, 64 * 1024);
        rc = pthread_create(&st->thread, &attr, stock_main, st);
        pthread_attr_destroy(&attr);
    }
    if (rc != 0) {
        free(st);
        return hearth_error_set(err, rc, "start the network namespace thread");
    }
    *out = st;
    return 0;
}

void sbx_netns_stock_stop(sbx_netns_stock_t *st)
{
    if (st == NULL)
        return;
    pthread_mutex_lock(&st->mu);
    st->stop = true;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    pthread_join(st->thread, NULL);
    for (int i = 0; i < st->n_ready; i++)
        close(st->ready[i]);
    pthread_cond_destroy(&st->cv);
    pthread_mutex_destroy(&st->mu);
    free(st);
}

void sbx_netns_stock_busy(sbx_netns_stock_t *st, int under_way)
{
    if (st == NULL)
        return;
    pthread_mutex_lock(&st->mu);
    bool wake = st->busy > 0 && under_way == 0;
    st->busy = under_way;
    if (wake)
        pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

/* Promise one of the stock's namespaces to a creation if one is there
 * unpromised, or on its way and nobody else waits for it. */
static bool stock_reserve(sbx_netns_stock_t *st)
{
    pthread_mutex_lock(&st->mu);
    bool ok = st->n_ready + (st->making ? 1 : 0) > st->reserved;
    if (ok) {
        st->reserved++;
        pthread_cond_broadcast(&st->cv); /* the thread may refill */
    }
    pthread_mutex_unlock(&st->mu);
    return ok;
}

/* Take the promised namespace, waiting while it is being made. */
static int stock_take(sbx_netns_stock_t *st, int *e, const char **what)
{
    pthread_mutex_lock(&st->mu);
    while (st->n_ready == 0 && !st->done)
        pthread_cond_wait(&st->cv, &st->mu);
    st->reserved--;
    int fd = -1;
    if (st->n_ready > 0) {
        fd = st->ready[0];
        memmove(st->ready, st->ready + 1, sizeof(int) * (size_t)--st->n_ready);
        pthread_cond_broadcast(&st->cv);
    } else {
        *e = st->err;
        *what = st->err_what ? st->err_what : "network namespace stock stopped";
    }
    pthread_mutex_unlock(&st->mu);
    return fd;
}

static void *job_main(void *arg)
{
    sbx_netns_job_t *job = arg;
    /* Only this thread moves; it ends right after, and the fd keeps the
     * namespace alive. */
    job->fd = make_netns(&job->err_what);
    job->err = errno;
    return NULL;
}

int sbx_netns_job_start(sbx_netns_stock_t *st, sbx_netns_job_t **out, hearth_error_t *err)
{
    sbx_netns_job_t *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return hearth_error_set(err, ENOMEM, "network namespace");
    job->fd = -1;
    if (st != NULL && stock_reserve(st)) {
        job->stock = st;
        *out = job;
        return 0;
    }
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc == 0) {
        pthread_attr_setstacksize(&attr, 64 * 1024);
        rc = pthread_create(&job->thread, &attr, job_main, job);
        pthread_attr_destroy(&attr);
    }
    if (rc != 0) {
        free(job);
        return hearth_error_set(err, rc, "start the network namespace thread");
    }
    job->threaded = true;
    *out = job;
    return 0;
}

int sbx_netns_job_finish(sbx_netns_job_t *job, hearth_error_t *err)
{
    int fd;
    int e = 0;
    const char *what = NULL;
    if (job->threaded) {
        pthread_join(job->thread, NULL);
        fd = job->fd;
        e = job->err;
        what = job->err_what;
    } else {
        fd = stock_take(job->stock, &e, &what);
    }
    free(job);
    if (fd < 0)
        hearth_error_set(err, e, "%s", what);
    return fd;
}
