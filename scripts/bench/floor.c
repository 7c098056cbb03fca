/* floor — the kernel's floor for starting an isolated process: clone with the
 * namespaces a hearth sandbox gets (user, pid, mount, net, uts, ipc, cgroup),
 * exec a static binary, wait for it; N times, one sample per iteration.
 *
 *   floor [-n N] [-w W] [-o FILE] [-N NAME] [-m] -- CMD [ARG...]
 *   floor -r SECONDS [-k K] [-m]
 *
 * Nothing else: no uid map (the child runs as the overflow uid unless -m),
 * no rootfs, no /proc, no cgroup, no seccomp, no capability drop. Anything a
 * real sandbox runtime does costs time on top of this.
 *
 * -m adds the one step every useful user namespace needs: the parent writes
 * uid_map and gid_map (root inside = host uid 100000) while the child waits on
 * a pipe, and the child execs only after that.
 *
 * The clone is fork-like (raw clone syscall, no new stack) from this small
 * process, with the child's stdin and stdout on /dev/null like timeit's.
 * Output lines match timeit's: "NAME<TAB>RUN<TAB>NANOSECONDS<TAB>STATUS";
 * a summary on stderr. Exit status 0 if every run exited 0, 1 if not, 2 on
 * a usage or setup error.
 *
 * -r is the floor of the sandbox creation rate: for SECONDS, K processes
 * each clone a child with the same namespaces (and with -m map its uid and
 * gid), the child exits at once, and the process reaps it and clones the
 * next; K creations are thus always in flight, and the namespaces are made
 * and torn down as fast as the kernel can on every CPU. One line on stdout:
 * "floor-rate inflight=K map=0|1 seconds=S created=N per_s=R".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NS_FLAGS (CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | \
                  CLONE_NEWIPC | CLONE_NEWCGROUP)
#define MAP_HOST_ID 100000

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double median(const uint64_t *v, int n)
{
    return n % 2 ? (double)v[n / 2] : ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2;
}

static uint64_t percentile(const uint64_t *v, int n, double p)
{
    int rank = (int)((p / 100.0) * n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

static int write_proc(pid_t pid, const char *file, const char *data)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t len = (ssize_t)strlen(data);
    ssize_t w = write(fd, data, (size_t)len);
    int saved = errno;
    close(fd);
    errno = saved;
    return w == len ? 0 : -1;
}

/* One iteration; returns 0 and fills *ns and *status, or -1 on a setup error.
 * With cmd NULL the child exits at once instead of exec'ing (devnull unused). */
static int run_once(char **cmd, int devnull, int map, uint64_t *ns, int *status)
{
    int sync[2] = {-1, -1};
    int ws;

    uint64_t t0 = now_ns();
    if (map && pipe2(sync, O_CLOEXEC) < 0) {
        perror("floor: pipe2");
        return -1;
    }
    pid_t pid = (pid_t)syscall(SYS_clone, NS_FLAGS | SIGCHLD, NULL, NULL, NULL, 0);
    if (pid < 0) {
        perror("floor: clone");
        return -1;
    }
    if (pid == 0) {
        if (map) {
            char c;
            close(sync[1]);
            /* EOF once the parent has written the maps and closed its end. */
            if (read(sync[0], &c, 1) < 0)
                _exit(125);
        }
        if (cmd == NULL)
            _exit(0);
        if (dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0)
            _exit(126);
        execv(cmd[0], cmd);
        _exit(127);
    }
    if (map) {
        char line[64];
        close(sync[0]);
        snprintf(line, sizeof(line), "0 %d 65536\n", MAP_HOST_ID);
        if (write_proc(pid, "uid_map", line) < 0 || write_proc(pid, "gid_map", line) < 0) {
            perror("floor: write uid_map/gid_map");
            kill(pid, SIGKILL);
        }
        close(sync[1]);
    }
    while (waitpid(pid, &ws, 0) < 0) {
        if (errno != EINTR) {
            perror("floor: waitpid");
            return -1;
        }
    }
    *ns = now_ns() - t0;
    *status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: floor [-n N] [-w WARMUP] [-o FILE] [-N NAME] [-m] -- CMD [ARG...]\n"
                    "       floor -r SECONDS [-k K] [-m]\n");
    exit(2);
}

/* -r: K processes creating and reaping namespaced children for `secs`. */
static int rate(double secs, int k, int map)
{
    int res[2];
    if (pipe2(res, O_CLOEXEC) < 0) {
        perror("floor: pipe2");
        return 2;
    }
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9);
    for (int i = 0; i < k; i++) {
        pid_t w = fork();
        if (w < 0) {
            perror("floor: fork");
            return 2;
        }
        if (w == 0) {
            /* A count, or -1 when a creation failed (the error is on stderr). */
            int64_t n = 0;
            uint64_t ns;
            int status;
            while (now_ns() < end) {
                if (run_once(NULL, -1, map, &ns, &status) < 0 || status != 0) {
                    n = -1;
                    break;
                }
                n++;
            }
            _exit(write(res[1], &n, sizeof(n)) == sizeof(n) ? 0 : 1);
        }
    }
    close(res[1]);
    int64_t total = 0, n;
    bool failed = false;
    for (int i = 0; i < k; i++) {
        if (read(res[0], &n, sizeof(n)) != sizeof(n) || n < 0)
            failed = true;
        else
            total += n;
    }
    while (wait(NULL) > 0)
        ;
    double el = (double)(now_ns() - t0) / 1e9;
    if (failed) {
        fprintf(stderr, "floor: a worker failed\n");
        return 1;
    }
    printf("floor-rate inflight=%d map=%d seconds=%.3f created=%lld per_s=%.1f\n", k, map, el, (long long)total,
           (double)total / el);
    return 0;
}

int main(int argc, char **argv)
{
    int n = 100, warmup = 3, map = 0, k = 1, opt;
    double secs = 0;
    const char *out_path = NULL, *name = "floor";

    while ((opt = getopt(argc, argv, "+n:w:o:N:mr:k:")) != -1) {
        switch (opt) {
        case 'r': secs = atof(optarg); if (secs <= 0) usage(); break;
        case 'k': k = atoi(optarg); if (k < 1 || k > 1024) usage(); break;
        case 'n': n = atoi(optarg); break;
        case 'w': warmup = atoi(optarg); break;
        case 'o': out_path = optarg; break;
        case 'N': name = optarg; break;
        case 'm': map = 1; break;
        default: usage();
        }
    }
    if (secs > 0)
        return optind == argc ? rate(secs, k, map) : (usage(), 2);
    if (n < 1 || warmup < 0 || optind >= argc)
        usage();
    char **cmd = &argv[optind];

    FILE *out = stdout;
    if (out_path && !(out = fopen(out_path, "we"))) {
        perror(out_path);
        return 2;
    }
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    uint64_t *samples = calloc((size_t)n, sizeof(uint64_t));
    if (devnull < 0 || !samples) {
        perror("floor");
        return 2;
    }
    /* Flush before cloning so buffered output is not duplicated. */
    fflush(out);

    int failures = 0;
    for (int i = 0; i < warmup + n; i++) {
        uint64_t ns;
        int status;
        if (run_once(cmd, devnull, map, &ns, &status) < 0)
            return 2;
        if (i < warmup)
            continue;
        samples[i - warmup] = ns;
        if (status != 0)
            failures++;
        fprintf(out, "%s\t%d\t%llu\t%d\n", name, i - warmup, (unsigned long long)ns, status);
        fflush(out);
    }
    if (out != stdout && fclose(out) != 0) {
        perror("floor: write samples");
        return 2;
    }
    qsort(samples, (size_t)n, sizeof(uint64_t), cmp_u64);
    fprintf(stderr, "%-24s n=%-5d median %8.3f ms  p99 %8.3f ms  failed %d\n", name, n,
            median(samples, n) / 1e6, percentile(samples, n, 99) / 1e6, failures);
    return failures ? 1 : 0;
}
