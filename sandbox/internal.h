/* Private to sandbox/: the pieces behind sandbox.h. */
#ifndef HEARTH_SANDBOX_INTERNAL_H
#define HEARTH_SANDBOX_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cgroup.h"
#include "sandbox.h"
#include "seccomp.h"

/* Control messages between the caller and a sandbox's init, one per
 * SOCK_SEQPACKET datagram. The first byte is the type. */
enum {
    SBX_MSG_EXEC = 'E',   /* caller → init: argv/envp/cwd, stdio fds attached */
    SBX_MSG_RESET = 'R',  /* caller → init: kill everything but init, reap */
    SBX_MSG_STARTED = 'S', /* init → caller: pid, or errno of a failed exec */
    SBX_MSG_END = 'X',    /* init → caller: pid and wait status */
    SBX_MSG_RESET_DONE = 'D',
    SBX_MSG_SOCKET = 'L', /* caller → init: a TCP socket on 127.0.0.1:port inside, listening or connecting */
    SBX_MSG_SOCKET_FD = 'F', /* init → caller: that socket (SCM_RIGHTS), or errno */
};

struct sbx_msg_started {
    char type;
    int32_t pid; /* > 0, or 0 with err set */
    int32_t err; /* errno of the failed fork/exec */
    char what[64];
};

struct sbx_msg_socket {
    char type;
    char connect;  /* 0: listen; 1: connect (non-blocking: may still be in progress) */
    uint16_t port;
};

struct sbx_msg_socket_fd {
    char type;
    int32_t err;   /* 0: the fd is attached */
};

struct sbx_msg_end {
    char type;
    int32_t pid;
    int32_t status; /* as from waitpid */
    bool alone;     /* init had no other process left once this one was reaped */
};

#define SBX_MAX_MSG (256 * 1024)

/* Where a daemon's cgroup root is locked (sandbox.c: lock_root). */
#define SBX_LOCK_DIR "/run/hearth"

/* What the spawner needs to create a sandbox (spec already validated). */
typedef struct sbx_spawn_req {
    const sbx_spec_t *spec;
    uid_t uid;                 /* host uid/gid that root inside maps to */
    const sbx_seccomp_t *seccomp;
    int cg_fds[SBX_CG_MAX_HIER]; /* v1: cgroup dirs to attach to; v2: cg_fds[0] for clone3 */
    int n_cg_fds;
    bool into_cgroup;          /* v2: clone3(CLONE_INTO_CGROUP) with cg_fds[0] */
    bool cg_later;             /* v1: the cgroups are made while the child builds its root; their
                                  n_cg_fds fds come with sbx_spawn_release (cg_fds unused) */
    struct sbx_netns_stock *netns; /* network namespaces made ahead, or NULL */
    int mount_template;        /* the mount template (sbx_template_open) for a spec it fits, or -1 */
    const int *changed_signals; /* the only signals (0-terminated) whose disposition the creator
                                   changed from the default, or NULL: not known, reset every one */
} sbx_spawn_req_t;

typedef struct sbx_spawn_res {
    pid_t pid;   /* host pid of init */
    int pidfd;
    int ctl;     /* our end of the control socket */
    bool ahead;  /* init was a child cloned ahead (sbx_spawn_ahead) */
} sbx_spawn_res_t;

/* namespaces.c: clone init into fresh namespaces, set up its root and
 * identity, and wait until it is ready. Runs in whichever process holds
 * the sandboxes' parent role (the spawner, or `hearth run` itself).
 * A creation in progress is a small state machine driven by the child's
 * messages, so that the spawner can have many under way at once. */
/* netns.c: network namespaces (only lo, up) for new sandboxes. A stock is
 * a thread making them ahead of need: it keeps target of them ready. */
typedef struct sbx_netns_stock sbx_netns_stock_t;
int sbx_netns_stock_start(int target, sbx_netns_stock_t **out, hearth_error_t *err);
void sbx_netns_stock_stop(sbx_netns_stock_t *st);
/* How many creations are under way: while any are, the stock makes only
 * what one of them waits for, and refills once none is. */
void sbx_netns_stock_busy(sbx_netns_stock_t *st, int under_way);
/* One sandbox's namespace: promised from the stock (st may be NULL) if it
 * has one to spare, else made on a thread of its own. finish returns the
 * namespace's fd (waiting for it), or -1 with err filled; the job is freed. */
typedef struct sbx_netns_job sbx_netns_job_t;
int sbx_netns_job_start(sbx_netns_stock_t *st, sbx_netns_job_t **out, hearth_error_t *err);
int sbx_netns_job_finish(sbx_netns_job_t *job, hearth_error_t *err);

typedef struct sbx_spawning {
    pid_t pid;  /* host pid of the child */
    int pidfd;
    int sock;   /* our end of the handshake (later: control) socket */
    uid_t uid;  /* host uid/gid to map root to */
    sbx_netns_job_t *net; /* the child's network namespace on its way, until released */
    int n_cg;   /* cgroup fds the child expects with the release (v1) */
    bool mapped; /* uid/gid maps written and 'G' sent: init reads its control socket next */
} sbx_spawning_t;
/* Clone the child (it starts building its root at once) and, beside it,
 * make its network namespace on a thread of ours. Unless req->cg_later,
 * release it too (below). */
int sbx_spawn_begin(const sbx_spawn_req_t *req, sbx_spawning_t *sp, hearth_error_t *err);
/* Hand the child its network namespace and (v1) its cgroups, which it
 * joins before it gives up host root: cg_later's second half. Aborts the
 * spawn on failure. */
int sbx_spawn_release(sbx_spawning_t *sp, const int *cg_fds, int n_cg_fds, hearth_error_t *err);
/* Handle one message from the child (blocks if sp->sock is blocking).
 * 0: still in progress; 1: ready, res filled; -1: failed, child gone. */
int sbx_spawn_advance(sbx_spawning_t *sp, sbx_spawn_res_t *res, hearth_error_t *err);
void sbx_spawn_abort(sbx_spawning_t *sp);
/* A child cloned ahead of any request, in new pid, uts and ipc
 * namespaces, waiting for one (namespaces.c explains). Only for requests
 * whose cgroups the child joins (not into_cgroup). It closes every fd but
 * stdio, its socket and keep_fd (-1: none), and runs decode on the request
 * handed to it: 0 with req filled, or -1 with err. */
typedef int (*sbx_ahead_decode_fn)(char *msg, size_t len, int n_cg_fds, sbx_spawn_req_t *req, hearth_error_t *err);
int sbx_spawn_ahead(const int *changed_signals, sbx_ahead_decode_fn decode, int keep_fd, sbx_spawning_t *ahead,
                    hearth_error_t *err);
/* Hand a child cloned ahead its request (msg/len, which it decodes) and
 * move it into *sp (*ahead is emptied: pid 0, fds -1). On failure the
 * child is gone and nothing started: clone one with sbx_spawn_begin. */
int sbx_spawn_give(sbx_spawning_t *ahead, int n_cg_fds, const void *msg, size_t len, sbx_spawning_t *sp,
                   hearth_error_t *err);
/* Then the rest of sbx_spawn_begin for it (req as the child decoded it). */
int sbx_spawn_begin_given(const sbx_spawn_req_t *req, sbx_spawning_t *sp, hearth_error_t *err);
/* begin + advance until done. */
int sbx_spawn_local(const sbx_spawn_req_t *req, sbx_spawn_res_t *res, hearth_error_t *err);
/* The mount template: a mount namespace holding the common part of every
 * root on the host's / without bind mounts (read-only /, /dev), built once
 * by a short-lived child; *fd_out is its nsfs fd. Call while the process
 * has no other threads (it forks). */
int sbx_template_open(int *fd_out, hearth_error_t *err);
bool sbx_template_fits(const sbx_spec_t *spec);

/* Set sig's disposition to the default. Through the system call: glibc's
 * signal() and sigaction() refuse its own two (32 and 33), which a process
 * may have inherited ignored across execve. */
void sbx_signal_default(int sig);

/* init.c: the loop of a sandbox's pid 1. Never returns. */
__attribute__((noreturn)) void sbx_init_main(int ctl, const sbx_seccomp_t *seccomp, uint32_t nofile);

/* caps.c: drop every capability (bounding, ambient, inheritable,
 * permitted, effective), lock securebits, set no_new_privs. */
int sbx_caps_drop_all(hearth_error_t *err);

/* spawner.c: requests carry a ticket; answers come back, possibly out of
 * order, with theirs. */
typedef struct sbx_spawner sbx_spawner_t;
/* netns_ahead: network namespaces the spawner keeps ready. inits_ahead:
 * keep a child cloned ahead (sbx_spawn_ahead) for requests that are not
 * into_cgroup. */
int sbx_spawner_start(int netns_ahead, bool inits_ahead, sbx_spawner_t **out, hearth_error_t *err);
int sbx_spawner_fd(const sbx_spawner_t *sp);
/* Never blocks: what the socket has no room for is kept, in order, until
 * sbx_spawner_flush sends it (call it whenever answers are read: while
 * requests wait, answers keep coming). */
int sbx_spawner_send(sbx_spawner_t *sp, uint64_t ticket, const sbx_spawn_req_t *req, hearth_error_t *err);
int sbx_spawner_flush(sbx_spawner_t *sp, hearth_error_t *err);
/* Read one answer (blocking unless the fd is non-blocking: then 0 when
 * none is there). 1: *ticket set; ok → res filled, else err filled and
 * *failed set. -1: the spawner is gone. */
int sbx_spawner_recv(sbx_spawner_t *sp, uint64_t *ticket, bool *failed, sbx_spawn_res_t *res,
                     hearth_error_t *err);
void sbx_spawner_stop(sbx_spawner_t *sp);

/* SCM_RIGHTS helpers (fds may be NULL/0). Return bytes or -1/errno. */
ssize_t sbx_send_msg(int sock, const void *buf, size_t len, const int *fds, int n_fds);
/* recv / recvmsg past EINTR, and past the ECONNRESET of a peer that exited
 * with our messages unread: what it sent before is still read. */
ssize_t sbx_recv(int sock, void *buf, size_t len, int flags);
ssize_t sbx_recv_msg(int sock, void *buf, size_t len, int *fds, int max_fds, int *n_fds);

#endif
