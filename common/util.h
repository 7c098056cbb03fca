/* Shared by every module: the error type, cleanup attributes, logging,
 * and a few I/O helpers that retry on EINTR and short counts. */
#ifndef HEARTH_UTIL_H
#define HEARTH_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>

#define HEARTH_PRINTF(a, b) __attribute__((format(printf, a, b)))

typedef struct hearth_error {
    int code;       /* errno of the failing call, 0 when not from a syscall */
    char msg[1024]; /* "outer context: inner context: cause" */
} hearth_error_t;

/* Fill err with a message (and ": strerror(errnum)" when errnum != 0).
 * Always returns -1 so that callers can `return hearth_error_set(...)`. */
int hearth_error_set(hearth_error_t *err, int errnum, const char *fmt, ...) HEARTH_PRINTF(3, 4);
/* Like hearth_error_set, but code is a kind for the caller to act on
 * (EINVAL: the input was refused, ENOENT: no such thing, …), not the cause
 * of a failed call: the message gets no strerror suffix. Returns -1. */
int hearth_error_tag(hearth_error_t *err, int code, const char *fmt, ...) HEARTH_PRINTF(3, 4);
/* Same as hearth_error_set, with errno as the cause. */
int hearth_error_sys(hearth_error_t *err, const char *fmt, ...) HEARTH_PRINTF(2, 3);
/* Prefix the message already in err with more context. Returns -1. */
int hearth_error_wrap(hearth_error_t *err, const char *fmt, ...) HEARTH_PRINTF(2, 3);

/* Cleanup attributes (crun style). */
void hearth_freep(void *p);
void hearth_closep(int *fd);
void hearth_fclosep(void *f);
#define cleanup_free __attribute__((cleanup(hearth_freep)))
#define cleanup_close __attribute__((cleanup(hearth_closep)))
#define cleanup_fclose __attribute__((cleanup(hearth_fclosep)))

static inline void *steal_ptr_(void **p)
{
    void *v = *p;
    *p = NULL;
    return v;
}
#define steal_pointer(pp) ((__typeof__(*(pp)))steal_ptr_((void **)(pp)))

static inline int get_and_reset(int *fd)
{
    int v = *fd;
    *fd = -1;
    return v;
}

/* Logging: one JSON object per line on stderr. level is "debug", "info",
 * "warn" or "error". */
typedef enum { HEARTH_LOG_DEBUG, HEARTH_LOG_INFO, HEARTH_LOG_WARN, HEARTH_LOG_ERROR } hearth_log_level_t;
void hearth_log_set_level(hearth_log_level_t lvl);
void hearth_log(hearth_log_level_t lvl, const char *fmt, ...) HEARTH_PRINTF(2, 3);

/* I/O that retries on EINTR and short counts. Return 0 or -1 with errno. */
int write_all(int fd, const void *buf, size_t len);
/* Reads until len bytes or EOF; returns bytes read or -1. */
ssize_t read_all(int fd, void *buf, size_t len);
/* Write a string to a file (O_WRONLY|O_CLOEXEC, no create). 0 or -1/errno. */
int write_file_at(int dirfd, const char *path, const char *data);
/* Read a small file (up to cap bytes, NUL-terminated). Returns length or -1/errno. */
ssize_t read_file_at(int dirfd, const char *path, char *buf, size_t cap);

/* Parse "64M", "1G", "512k", "100" (bytes) into bytes. -1 on error. */
int parse_size(const char *s, uint64_t *out);

uint64_t now_ns(void); /* CLOCK_MONOTONIC */
int64_t wall_ms(void); /* CLOCK_REALTIME, ms since the epoch */

#endif
