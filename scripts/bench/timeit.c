/* timeit — start commands as whole processes, N times each, interleaved, and
 * record the wall-clock time of every run, from spawn to reaped.
 *
 *   timeit [-n N] [-w W] [-t SEC] [-o FILE] [-P NAME]... ::: NAME CMD [ARG...] [::: NAME CMD [ARG...]]...
 *
 * Every subject is measured the same way, so the harness's own cost is the
 * same for each: posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK), independent
 * of this process's size) with stdin and stdout on /dev/null and stderr
 * inherited, then waitpid; CLOCK_MONOTONIC read just before the spawn and
 * just after the reap.
 *
 * Runs are interleaved: round r runs every subject once, starting with
 * subject r mod K, so slow drift (network namespaces torn down later in a
 * kernel workqueue, page cache, CPU frequency) spreads over all subjects
 * instead of landing on whichever would have run last.
 *
 * -P NAME runs subject NAME inside a private mount namespace in which
 * /sys/fs/cgroup/unified is unmounted: crun refuses hybrid cgroup hosts
 * ("cgroups in hybrid mode not supported"). timeit creates that namespace
 * once at start, enters it before the clock starts and returns to the
 * original one after the clock stops, so the switch is not measured.
 * setns(CLONE_NEWNS) resets the working directory, so subjects should be
 * given absolute paths (timeit chdirs back to the same path anyway).
 *
 * -t SEC: a run still going after SEC seconds (default 30) is killed with
 * SIGKILL and recorded with status 137; the timer is armed before the clock
 * starts and disarmed after it stops.
 *
 * Output: one line per measured run, "NAME<TAB>RUN<TAB>NANOSECONDS<TAB>STATUS"
 * (STATUS: exit code, or 128+N for signal N), on FILE or stdout; a summary
 * (median, p99) on stderr. Exit status 0 if every run exited 0, 1 if any did
 * not, 2 on a usage or setup error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_SUBJECTS 32

typedef struct subject {
    const char *name;  /* label written with every sample */
    char **argv;       /* command, NULL-terminated, points into main's argv */
    int private_mnt;   /* run inside the private mount namespace (-P) */
    uint64_t *samples; /* ns per measured run */
    int nsamples;      /* measured runs so far */
    int failures;      /* measured runs that did not exit 0 */
} subject_t;

static volatile sig_atomic_t timed_out;

static void on_alarm(int sig)
{
    (void)sig;
    timed_out = 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void usage(void)
{
    fprintf(stderr, "usage: timeit [-n N] [-w WARMUP] [-t SEC] [-o FILE] [-P NAME]... "
                    "::: NAME CMD [ARG...] [::: NAME CMD [ARG...]]...\n");
    exit(2);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Median of a sorted array (mean of the middle two when n is even). */
static double median(const uint64_t *v, int n)
{
    return n % 2 ? (double)v[n / 2] : ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2;
}

/* Nearest-rank percentile of a sorted array. */
static uint64_t percentile(const uint64_t *v, int n, double p)
{
    int rank = (int)((p / 100.0) * n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

/* Create the private mount namespace without /sys/fs/cgroup/unified and
 * return an fd for it; the caller stays in (returns to) its own namespace. */
static int make_private_mntns(int orig_fd)
{
    if (unshare(CLONE_NEWNS) < 0) {
        perror("timeit: unshare(CLONE_NEWNS)");
        return -1;
    }
    /* Private first, so the umount below does not propagate to the host. */
    if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        perror("timeit: make / private");
        return -1;
    }
    /* Not a mount point (a pure v1 or pure v2 host): nothing to hide. */
    if (umount2("/sys/fs/cgroup/unified", MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) {
        perror("timeit: umount /sys/fs/cgroup/unified");
        return -1;
    }
    int fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        perror("timeit: open private mount namespace");
        return -1;
    }
    if (setns(orig_fd, CLONE_NEWNS) < 0) {
        perror("timeit: return to the original mount namespace");
        return -1;
    }
    return fd;
}

static int enter_mntns(int fd, const char *cwd)
{
    if (setns(fd, CLONE_NEWNS) < 0) {
        perror("timeit: setns");
        return -1;
    }
    if (chdir(cwd) < 0) {
        perror("timeit: chdir");
        return -1;
    }
    return 0;
}

/* One run: spawn, wait, return elapsed ns; *status gets the exit code. */
static int run_once(subject_t *s, posix_spawn_file_actions_t *fa, unsigned timeout, uint64_t *ns,
                    int *status)
{
    pid_t pid;
    int ws;
    timed_out = 0;
    alarm(timeout);
    uint64_t t0 = now_ns();
    int rc = posix_spawn(&pid, s->argv[0], fa, NULL, s->argv, environ);
    if (rc != 0) {
        alarm(0);
        fprintf(stderr, "timeit: %s: spawn %s: %s\n", s->name, s->argv[0], strerror(rc));
        return -1;
    }
    while (waitpid(pid, &ws, 0) < 0) {
        if (errno != EINTR) {
            perror("timeit: waitpid");
            return -1;
        }
        if (timed_out) {
            fprintf(stderr, "timeit: %s: still running after %u s, killed\n", s->name, timeout);
            kill(pid, SIGKILL);
            timed_out = 0;
        }
    }
    *ns = now_ns() - t0;
    alarm(0);
    *status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    return 0;
}

int main(int argc, char **argv)
{
    int n = 100, warmup = 3, timeout = 30, opt;
    const char *out_path = NULL;
    const char *private_names[MAX_SUBJECTS];
    int nprivate = 0;
    subject_t subj[MAX_SUBJECTS];
    int nsubj = 0;

    while ((opt = getopt(argc, argv, "+n:w:t:o:P:")) != -1) {
        switch (opt) {
        case 'n': n = atoi(optarg); break;
        case 'w': warmup = atoi(optarg); break;
        case 't': timeout = atoi(optarg); break;
        case 'o': out_path = optarg; break;
        case 'P':
            if (nprivate == MAX_SUBJECTS)
                usage();
            private_names[nprivate++] = optarg;
            break;
        default: usage();
        }
    }
    if (n < 1 || warmup < 0 || timeout < 1 || optind >= argc || strcmp(argv[optind], ":::") != 0)
        usage();

    /* Split "::: NAME CMD ARGS ::: NAME CMD ARGS" in place: each marker
     * becomes the NULL that ends the previous subject's argv. */
    for (int i = optind; i < argc;) {
        if (strcmp(argv[i], ":::") != 0 || i + 2 >= argc || strcmp(argv[i + 2], ":::") == 0 ||
            nsubj == MAX_SUBJECTS)
            usage();
        argv[i] = NULL;
        subject_t *s = &subj[nsubj++];
        memset(s, 0, sizeof(*s));
        s->name = argv[i + 1];
        s->argv = &argv[i + 2];
        i += 2;
        while (i < argc && strcmp(argv[i], ":::") != 0)
            i++;
        s->samples = calloc((size_t)n, sizeof(uint64_t));
        if (!s->samples) {
            perror("timeit");
            return 2;
        }
        for (int k = 0; k < nprivate; k++)
            if (strcmp(private_names[k], s->name) == 0)
                s->private_mnt = 1;
    }

    FILE *out = stdout;
    if (out_path && !(out = fopen(out_path, "we"))) {
        perror(out_path);
        return 2;
    }

    char cwd[4096];
    if (!getcwd(cwd, sizeof(cwd))) {
        perror("timeit: getcwd");
        return 2;
    }
    int orig_mnt = -1, priv_mnt = -1;
    for (int k = 0; k < nsubj; k++) {
        if (!subj[k].private_mnt || priv_mnt >= 0)
            continue;
        orig_mnt = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
        if (orig_mnt < 0 || (priv_mnt = make_private_mntns(orig_mnt)) < 0)
            return 2;
        if (chdir(cwd) < 0) {
            perror("timeit: chdir");
            return 2;
        }
    }

    /* No SA_RESTART: the alarm must interrupt waitpid. */
    struct sigaction sa = {.sa_handler = on_alarm};
    sigaction(SIGALRM, &sa, NULL);

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);

    int any_failed = 0;
    for (int round = 0; round < warmup + n; round++) {
        for (int step = 0; step < nsubj; step++) {
            subject_t *s = &subj[(round + step) % nsubj];
            uint64_t ns;
            int status;
            if (s->private_mnt && enter_mntns(priv_mnt, cwd) < 0)
                return 2;
            int rc = run_once(s, &fa, (unsigned)timeout, &ns, &status);
            if (s->private_mnt && enter_mntns(orig_mnt, cwd) < 0)
                return 2;
            if (rc < 0)
                return 2;
            if (round < warmup)
                continue;
            s->samples[s->nsamples++] = ns;
            if (status != 0) {
                s->failures++;
                any_failed = 1;
            }
            fprintf(out, "%s\t%d\t%llu\t%d\n", s->name, round - warmup, (unsigned long long)ns, status);
        }
    }
    if (fflush(out) != 0 || (out != stdout && fclose(out) != 0)) {
        perror("timeit: write samples");
        return 2;
    }

    for (int k = 0; k < nsubj; k++) {
        subject_t *s = &subj[k];
        qsort(s->samples, (size_t)s->nsamples, sizeof(uint64_t), cmp_u64);
        fprintf(stderr, "%-24s n=%-5d median %8.3f ms  p99 %8.3f ms  failed %d\n", s->name,
                s->nsamples, median(s->samples, s->nsamples) / 1e6,
                percentile(s->samples, s->nsamples, 99) / 1e6, s->failures);
    }
    return any_failed;
}
