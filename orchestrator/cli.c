/* `hearth` — the command-line client. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "sandbox/sandbox.h"

enum { EXIT_OK = 0, EXIT_FUNCTION = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

static void usage_main(FILE *f)
{
    fprintf(f, "usage: hearth COMMAND [OPTIONS]\n"
               "\n"
               "commands:\n"
               "  run       run one command in a fresh sandbox (needs root)\n"
               "\n"
               "`hearth COMMAND --help` describes each command.\n");
}

static void usage_run(FILE *f)
{
    fprintf(f,
            "usage: hearth run [OPTIONS] -- CMD [ARG...]\n"
            "\n"
            "Run CMD in a fresh sandbox: its own user (root inside = an unprivileged host uid),\n"
            "pid, mount, network (only lo), uts, ipc and cgroup namespaces; the host's / (or\n"
            "--rootfs) read-only; fresh /proc, minimal /dev, tmpfs /tmp; every capability\n"
            "dropped; no_new_privs; seccomp. stdin, stdout and stderr are passed through.\n"
            "Exits with CMD's status, 128+N if signal N killed it, 137 if a limit killed it.\n"
            "\n"
            "options:\n"
            "  --memory SIZE       memory limit, no swap (default 128M; k, M, G suffixes)\n"
            "  --cpus N            CPU quota in cores (default 1.0)\n"
            "  --pids N            most processes at once (default 64)\n"
            "  --timeout SEC       time limit; everything is killed when it passes (default none)\n"
            "  --tmp SIZE          size of the tmpfs on /tmp (default 64M)\n"
            "  --rootfs DIR        root directory (default the host's /, read-only)\n"
            "  --bind SRC:DST[:ro] bind-mount host SRC on DST (which must exist); repeatable\n"
            "  --env K=V           set an environment variable; repeatable\n"
            "  --cwd DIR           working directory inside (default /)\n"
            "  --hostname NAME     host name inside (default hearth)\n"
            "  --seccomp FILE      an OCI/Docker seccomp JSON profile (default: hearth's own)\n"
            "  --cgroup-root PATH  cgroup subtree to work under (default hearth)\n"
            "  --stats             print CPU time and peak memory to stderr at the end\n"
            "  -h, --help          this text\n");
}

static volatile sig_atomic_t run_init_pid;
static volatile sig_atomic_t run_signal;

static void on_signal(int sig)
{
    run_signal = sig;
    if (run_init_pid > 0)
        kill((pid_t)run_init_pid, SIGKILL);
}

static int cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"memory", required_argument, NULL, 'm'}, {"cpus", required_argument, NULL, 'c'},
        {"pids", required_argument, NULL, 'p'},   {"timeout", required_argument, NULL, 't'},
        {"tmp", required_argument, NULL, 'T'},    {"rootfs", required_argument, NULL, 'r'},
        {"bind", required_argument, NULL, 'b'},   {"env", required_argument, NULL, 'e'},
        {"cwd", required_argument, NULL, 'w'},    {"hostname", required_argument, NULL, 'H'},
        {"seccomp", required_argument, NULL, 's'}, {"cgroup-root", required_argument, NULL, 'g'},
        {"stats", no_argument, NULL, 'S'},        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    sbx_spec_t spec = {0};
    sbx_mount_t mounts[64];
    size_t n_mounts = 0;
    const char *envv[256];
    size_t n_env = 0;
    const char *cwd = "/";
    const char *cg_root = "hearth";
    double timeout_s = 0;
    bool stats = false;

    envv[n_env++] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    envv[n_env++] = "HOME=/tmp";
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'm':
            if (parse_size(optarg, &spec.memory_bytes) < 0 || spec.memory_bytes < (4ULL << 20)) {
                fprintf(stderr, "hearth run: --memory `%s`: a size of at least 4M, e.g. 64M or 1G\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'T':
            if (parse_size(optarg, &spec.tmp_bytes) < 0 || spec.tmp_bytes < 4096) {
                fprintf(stderr, "hearth run: --tmp `%s`: a size of at least 4k, e.g. 16M\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'c':
            spec.cpus = strtod(optarg, &end);
            if (*end || spec.cpus < 0.01 || spec.cpus > 1024) {
                fprintf(stderr, "hearth run: --cpus `%s`: a number from 0.01 to 1024\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'p': {
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v < 1 || v > 1000000) {
                fprintf(stderr, "hearth run: --pids `%s`: a number from 1 to 1000000\n", optarg);
                return EXIT_USAGE;
            }
            spec.pids = (uint32_t)v;
            break;
        }
        case 't':
            timeout_s = strtod(optarg, &end);
            if (*end || timeout_s <= 0 || timeout_s > 86400 * 365) {
                fprintf(stderr, "hearth run: --timeout `%s`: seconds, more than 0\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'r':
            spec.rootfs = optarg;
            break;
        case 'b': {
            if (n_mounts == sizeof(mounts) / sizeof(mounts[0])) {
                fprintf(stderr, "hearth run: too many --bind\n");
                return EXIT_USAGE;
            }
            char *src = optarg, *dst = strchr(optarg, ':');
            if (dst == NULL || dst == src || dst[1] == '\0') {
                fprintf(stderr, "hearth run: --bind `%s`: SRC:DST[:ro]\n", optarg);
                return EXIT_USAGE;
            }
            *dst++ = '\0';
            char *ro = strchr(dst, ':');
            if (ro != NULL) {
                *ro++ = '\0';
                if (strcmp(ro, "ro") != 0 && strcmp(ro, "rw") != 0) {
                    fprintf(stderr, "hearth run: --bind: `%s` is neither ro nor rw\n", ro);
                    return EXIT_USAGE;
                }
            }
            mounts[n_mounts++] = (sbx_mount_t){src, dst, ro != NULL && strcmp(ro, "ro") == 0};
            break;
        }
        case 'e':
            if (strchr(optarg, '=') == NULL || optarg[0] == '=') {
                fprintf(stderr, "hearth run: --env `%s`: K=V\n", optarg);
                return EXIT_USAGE;
            }
            if (n_env == sizeof(envv) / sizeof(envv[0]) - 1) {
                fprintf(stderr, "hearth run: too many --env\n");
                return EXIT_USAGE;
            }
            envv[n_env++] = optarg;
            break;
        case 'w':
            cwd = optarg;
            break;
        case 'H':
            spec.hostname = optarg;
            break;
        case 's':
            spec.seccomp = optarg;
            break;
        case 'g':
            cg_root = optarg;
            break;
        case 'S':
            stats = true;
            break;
        case 'h':
            usage_run(stdout);
            return EXIT_OK;
        default:
            usage_run(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "hearth run: no command given\n");
        usage_run(stderr);
        return EXIT_USAGE;
    }
    envv[n_env] = NULL;
    spec.mounts = mounts;
    spec.n_mounts = n_mounts;

    /* A shared root: concurrent runs and a daemon on the same root never
     * touch each other's cgroups. */
    sbx_host_config_t hc = {.cgroup_root = cg_root, .uid_base = 100000, .uid_count = 65536, .shared_root = true,
                             .seccomp_cache = "/run/hearth/seccomp"};
    hearth_error_t err = {0};
    sbx_host_t *host = NULL;
    if (sbx_host_open(&hc, &host, &err) < 0) {
        fprintf(stderr, "hearth run: %s\n", err.msg);
        return 125;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    int rc = 125;
    sbx_t *sb = NULL;
    if (sbx_create(host, &spec, &sb, &err) < 0) {
        fprintf(stderr, "hearth run: %s\n", err.msg);
        goto out;
    }
    run_init_pid = sbx_init_pid(sb);
    sbx_exec_t ex = {
        .argv = (const char *const *)&argv[optind],
        .envp = envv,
        .cwd = cwd,
        .stdin_fd = 0,
        .stdout_fd = 1,
        .stderr_fd = 2,
    };
    if (sbx_exec(sb, &ex, NULL, &err) < 0) {
        fprintf(stderr, "hearth run: %s\n", err.msg);
        rc = err.code == ENOENT ? 127 : 126;
        goto out;
    }
    sbx_end_t end;
    uint64_t timeout_ms = (uint64_t)(timeout_s * 1000.0 + 0.5);
    if (sbx_wait(sb, timeout_ms, &end, &err) < 0) {
        fprintf(stderr, "hearth run: %s\n", err.msg);
        goto out;
    }
    if (run_signal) {
        rc = 128 + run_signal;
        goto out;
    }
    char why[128];
    sbx_end_describe(&end, &spec, timeout_ms, why, sizeof(why));
    switch (end.kind) {
    case SBX_END_EXIT:
        rc = end.status;
        break;
    case SBX_END_SIGNAL:
        rc = 128 + end.status;
        break;
    case SBX_END_PIDS:
        fprintf(stderr, "hearth: %s\n", why);
        rc = 137;
        break;
    default:
        fprintf(stderr, "hearth: %s\n", why);
        rc = 137;
        break;
    }
    if (stats) {
        /* Kill leftovers first: CPU usage is exact only once nothing runs. */
        sbx_usage_t u;
        if (sbx_kill(sb, &err) == 0 && sbx_usage(sb, &u, &err) == 0)
            fprintf(stderr, "hearth: cpu %.3f ms, peak memory %.1f MiB\n", (double)u.cpu_ns / 1e6,
                    (double)u.memory_peak / (1024.0 * 1024.0));
        else
            fprintf(stderr, "hearth: no stats: %s\n", err.msg);
    }
out:
    sbx_destroy(sb);
    sbx_host_close(host);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage_main(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage_main(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    fprintf(stderr, "hearth: unknown command `%s`\n", argv[1]);
    usage_main(stderr);
    return EXIT_USAGE;
}
