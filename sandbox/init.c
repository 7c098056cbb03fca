/* A sandbox's pid 1. It starts processes on request, reaps everything
 * (orphans included), reports the ends of the processes it started, and
 * on request kills every other process in the namespace.
 *
 * It holds no capability, is not dumpable (so processes beside it cannot
 * ptrace it or reach its fds through /proc/1), and installs no signal
 * handler: the kernel drops every signal sent to a pid namespace's init
 * from inside when the handler is the default, so a tenant cannot kill it. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_TRACKED 1024

typedef struct init_state {
    int ctl;                    /* control socket to the sandbox's owner */
    int sigfd;                  /* SIGCHLD */
    const sbx_seccomp_t *seccomp;
    pid_t tracked[MAX_TRACKED]; /* processes started on request, still running */
    int n_tracked;
    char *buf;                  /* one control message */
} init_state_t;

/* Forget a process we started; false if it is not one of them. */
static bool untrack(init_state_t *st, pid_t pid)
{
    for (int i = 0; i < st->n_tracked; i++) {
        if (st->tracked[i] == pid) {
            st->tracked[i] = st->tracked[--st->n_tracked];
            return true;
        }
    }
    return false;
}

static void send_end(init_state_t *st, pid_t pid, int status, bool alone)
{
    struct sbx_msg_end m = {.type = SBX_MSG_END, .pid = pid, .status = status, .alone = alone};
    (void)!send(st->ctl, &m, sizeof(m), MSG_NOSIGNAL);
}

/* Every zombie, then the ENDs of the processes we started among them,
 * saying whether anything but us is left: nothing is when we have no
 * child, since every orphan of our pid namespace becomes ours. */
static void reap(init_state_t *st)
{
    pid_t pids[MAX_TRACKED];
    int statuses[MAX_TRACKED], n = 0, status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0 || (pid < 0 && errno == EINTR)) {
        if (pid > 0 && untrack(st, pid)) {
            pids[n] = pid;
            statuses[n++] = status;
        }
    }
    bool alone = pid < 0 && errno == ECHILD;
    for (int i = 0; i < n; i++)
        send_end(st, pids[i], statuses[i], alone);
}

static void send_started(init_state_t *st, pid_t pid, int err, const char *what)
{
    struct sbx_msg_started m = {.type = SBX_MSG_STARTED, .pid = pid, .err = err};
    snprintf(m.what, sizeof(m.what), "%s", what);
    (void)!send(st->ctl, &m, sizeof(m), MSG_NOSIGNAL);
}

/* Where a vforked child leaves the reason it could not exec. */
typedef struct exec_failure {
    const char *step; /* NULL: the child exec'd (or was killed before it could) */
    int err;
} exec_failure_t;

/* In the vforked child: become the requested process. It shares our
 * memory until execve, and we are suspended until then: it only makes
 * system calls that touch itself (its own fd table, session, cwd and
 * filter), and reports a failure in *fail before _exit. */
__attribute__((noreturn)) static void exec_child(init_state_t *st, volatile exec_failure_t *fail, const int stdio[3],
                                                 char **argv, char **envp, const char *cwd)
{
    const char *step = "setsid";
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* A new session with no controlling terminal: TIOCSTI and friends have
     * nothing to inject into. */
    if (setsid() < 0)
        goto fail;
    step = "stdio";
    for (int i = 0; i < 3; i++)
        if (dup2(stdio[i], i) < 0)
            goto fail;
    step = "chdir";
    if (chdir(cwd) < 0)
        goto fail;
    /* Every other fd closes at exec (CVE-2024-21626). */
    step = "close_range";
    if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
        goto fail;
    step = "seccomp";
    if (!st->seccomp->in_init && sbx_seccomp_install(st->seccomp) < 0)
        goto fail;
    step = "exec";
    /* execvpe searches the PATH of environ, not of envp: make them one
     * (our caller restores its own once we are gone). */
    environ = envp;
    execvpe(argv[0], argv, envp);
fail:
    fail->err = errno;
    fail->step = step;
    _exit(127);
}

/* vfork in a function of its own: only its arguments live across the
 * second return. */
static pid_t start_child(init_state_t *st, volatile exec_failure_t *fail, const int stdio[3], char **argv,
                         char **envp, const char *cwd)
{
    pid_t pid = vfork();
    if (pid == 0)
        exec_child(st, fail, stdio, argv, envp, cwd);
    return pid;
}

/* Split n NUL-terminated strings starting at *p (bounded by end). */
static int take_strings(char **p, const char *end, uint32_t n, char **out)
{
    for (uint32_t i = 0; i < n; i++) {
        char *nul = memchr(*p, '\0', (size_t)(end - *p));
        if (nul == NULL)
            return -1;
        out[i] = *p;
        *p = nul + 1;
    }
    out[n] = NULL;
    return 0;
}

static void handle_exec(init_state_t *st, size_t len, const int *fds, int n_fds)
{
    /* 'E', fd mask, argc u32, envc u32, then argv, envp, cwd strings. */
    int stdio[3] = {-1, -1, -1};
    int nextfd = 0;
    if (len < 10) {
        send_started(st, 0, EINVAL, "malformed exec request");
        return;
    }
    unsigned char mask = (unsigned char)st->buf[1];
    for (int i = 0; i < 3; i++)
        stdio[i] = (mask & (1u << i)) && nextfd < n_fds ? fds[nextfd++] : -1;
    uint32_t argc, envc;
    memcpy(&argc, st->buf + 2, 4);
    memcpy(&envc, st->buf + 6, 4);
    if (argc == 0 || argc > 4096 || envc > 4096) {
        send_started(st, 0, EINVAL, "malformed exec request");
        return;
    }
    char **argv = calloc(argc + 1, sizeof(char *));
    char **envp = calloc(envc + 1, sizeof(char *));
    char *cwd[2];
    char *p = st->buf + 10;
    const char *end = st->buf + len;
    if (argv == NULL || envp == NULL || take_strings(&p, end, argc, argv) < 0 ||
        take_strings(&p, end, envc, envp) < 0 || take_strings(&p, end, 1, cwd) < 0) {
        send_started(st, 0, EINVAL, "malformed exec request");
        goto out;
    }
    int devnull = -1;
    for (int i = 0; i < 3; i++) {
        if (stdio[i] >= 0)
            continue;
        if (devnull < 0)
            devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        stdio[i] = devnull;
    }
    if (st->n_tracked == MAX_TRACKED) {
        send_started(st, 0, EAGAIN, "too many processes started");
        goto close_null;
    }
    /* vfork: no copy of our page tables, and we resume exactly when the
     * child has exec'd or failed, which makes a pipe to learn which
     * unnecessary. */
    volatile exec_failure_t fail = {NULL, 0};
    char **saved_environ = environ;
    pid_t pid = start_child(st, &fail, stdio, argv, envp, cwd[0]);
    int fork_errno = errno;
    environ = saved_environ;
    if (pid < 0) {
        send_started(st, 0, fork_errno, "fork");
    } else if (fail.step != NULL) {
        /* exec failed: the child has exited; it is reaped, not reported. */
        send_started(st, 0, fail.err, fail.step);
    } else {
        st->tracked[st->n_tracked++] = pid;
        send_started(st, pid, 0, "");
    }
close_null:
    if (devnull >= 0)
        close(devnull);
out:
    free(argv);
    free(envp);
}

/* A TCP socket on the sandbox's own loopback, made here because only we
 * live in its network namespace: the owner serves the Lambda Runtime API on
 * a listening one, or talks to the function's HTTP server through a
 * connected one. No capability is needed for either (ports above 1023). */
static void handle_socket(init_state_t *st, const struct sbx_msg_socket *req)
{
    struct sbx_msg_socket_fd rep = {.type = SBX_MSG_SOCKET_FD};
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(req->port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (req->connect ? SOCK_NONBLOCK : 0), 0);
    int one = 1;
    if (fd < 0) {
        rep.err = errno;
    } else if (req->connect) {
        if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 && errno != EINPROGRESS)
            rep.err = errno;
    } else if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
               bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 64) < 0) {
        rep.err = errno;
    }
    sbx_send_msg(st->ctl, &rep, sizeof(rep), rep.err == 0 ? &fd : NULL, rep.err == 0 ? 1 : 0);
    if (fd >= 0)
        close(fd);
}

static void handle_reset(init_state_t *st)
{
    /* kill(-1) reaches every process in our pid namespace but us, and
     * forks racing with it fail: nothing started before survives. */
    kill(-1, SIGKILL);
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, 0)) > 0 || (pid < 0 && errno == EINTR))
        if (pid > 0 && untrack(st, pid))
            send_end(st, pid, status, false);
    char done = SBX_MSG_RESET_DONE;
    (void)!send(st->ctl, &done, 1, MSG_NOSIGNAL);
}

void sbx_init_main(int ctl, const sbx_seccomp_t *seccomp, uint32_t nofile)
{
    init_state_t st = {.seccomp = seccomp};
    /* Nothing of our creator's environment stays with us. */
    clearenv();
    /* Keep only the control socket (as fd 3) and a /dev/null stdio: the
     * fds of whoever cloned us must not reach the sandbox. */
    if (ctl != 3) {
        if (dup3(ctl, 3, O_CLOEXEC) < 0)
            _exit(1);
    }
    st.ctl = 3;
    syscall(SYS_close_range, 4, ~0U, 0);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
        _exit(1);
    if (null > 3)
        close(null);

    struct rlimit core = {0, 0}, files = {nofile, nofile};
    if (setrlimit(RLIMIT_CORE, &core) < 0 || setrlimit(RLIMIT_NOFILE, &files) < 0)
        _exit(1);

    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    st.sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    st.buf = malloc(SBX_MAX_MSG);
    if (st.sigfd < 0 || st.buf == NULL)
        _exit(1);

    char ready = 'K';
    if (send(st.ctl, &ready, 1, MSG_NOSIGNAL) != 1)
        _exit(1);
    /* The filter for ourselves too, while our owner reads the 'K' and
     * sends the first exec: nothing of the tenant's runs before it is in
     * place, and a failure takes the sandbox down (fail closed). */
    if (seccomp->in_init && sbx_seccomp_install(seccomp) < 0)
        _exit(1);

    for (;;) {
        struct pollfd pfd[2] = {{st.ctl, POLLIN, 0}, {st.sigfd, POLLIN, 0}};
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pfd[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(st.sigfd, &si, sizeof(si)) == sizeof(si))
                ;
            reap(&st);
        }
        if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            int fds[3], n_fds = 0;
            ssize_t n = sbx_recv_msg(st.ctl, st.buf, SBX_MAX_MSG, fds, 3, &n_fds);
            if (n <= 0)
                break; /* owner gone: take everything down with us */
            if (st.buf[0] == SBX_MSG_EXEC)
                handle_exec(&st, (size_t)n, fds, n_fds);
            else if (st.buf[0] == SBX_MSG_RESET)
                handle_reset(&st);
            else if (st.buf[0] == SBX_MSG_SOCKET && (size_t)n >= sizeof(struct sbx_msg_socket))
                handle_socket(&st, (const struct sbx_msg_socket *)st.buf);
            for (int i = 0; i < n_fds; i++)
                close(fds[i]);
        }
    }
    kill(-1, SIGKILL);
    _exit(0);
}
