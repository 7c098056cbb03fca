/* The messages between a sandbox's creator and the child that sets it up
 * (sandbox/spawner.c): a child that fails sends its reason and exits, often
 * with a message of ours still unread. Its reason must still be read. */
#include <errno.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/internal.h"
#include "tests/harness.h"

static const char report[] = "Eopen /x: Too many levels of symbolic links";
#define REPORT_LEN ((ssize_t)sizeof(report) - 1)

/* Our end of a socket whose peer, a child, waited until we had sent it a
 * message, then reported and exited without reading it: the kernel marks
 * our end ECONNRESET because our message died unread, while the report is
 * still queued. -1 if that could not be set up. */
static int reset_with_report(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        char c;
        while (recv(sv[1], &c, 1, MSG_PEEK) != 1)
            ;
        (void)!send(sv[1], report, (size_t)REPORT_LEN, MSG_NOSIGNAL);
        _exit(1);
    }
    close(sv[1]);
    if (pid < 0 || sbx_send_msg(sv[0], "N", 1, NULL, 0) != 1) {
        close(sv[0]);
        return -1;
    }
    waitpid(pid, NULL, 0);
    return sv[0];
}

static void t_report_after_reset(void)
{
    int fd = reset_with_report();
    REQUIRE(fd >= 0, "socketpair, fork or send: %s", strerror(errno));
    char buf[128];
    ssize_t n = sbx_recv(fd, buf, sizeof(buf) - 1, 0);
    CHECK(n == REPORT_LEN && memcmp(buf, report, (size_t)REPORT_LEN) == 0, "recv after the child's exit: %zd (%s)", n,
          n < 0 ? strerror(errno) : "short");
    CHECK(sbx_recv(fd, buf, sizeof(buf), 0) == 0, "then end of file");
    close(fd);
}

static void t_report_after_reset_msg(void)
{
    int fd = reset_with_report();
    REQUIRE(fd >= 0, "socketpair, fork or send: %s", strerror(errno));
    char buf[128];
    int fds[2], n_fds = -1;
    ssize_t n = sbx_recv_msg(fd, buf, sizeof(buf) - 1, fds, 2, &n_fds);
    CHECK(n == REPORT_LEN && n_fds == 0 && memcmp(buf, report, (size_t)REPORT_LEN) == 0,
          "recvmsg after the child's exit: %zd (%s)", n, n < 0 ? strerror(errno) : "short");
    close(fd);
}

/* Without a report the peer's end is still an end: nothing is invented. */
static void t_reset_without_report(void)
{
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0, "socketpair: %s", strerror(errno));
    CHECK(sbx_send_msg(sv[0], "N", 1, NULL, 0) == 1, "send: %s", strerror(errno));
    close(sv[1]); /* closed with our message unread */
    char buf[16];
    CHECK(sbx_recv(sv[0], buf, sizeof(buf), 0) == 0, "end of file after the reset");
    close(sv[0]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN(t_report_after_reset);
    RUN(t_report_after_reset_msg);
    RUN(t_reset_without_report);
    return harness_done();
}
