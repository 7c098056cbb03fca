/* Seccomp filters: hearth's built-in default profile, and profiles in the
 * OCI / Docker JSON format (defaultAction, defaultErrnoRet, architectures /
 * archMap, syscalls[] with names, action, errnoRet, args, includes and
 * excludes). Compiled once with libseccomp into a BPF program that any
 * number of processes can then install cheaply. */
#ifndef HEARTH_SECCOMP_H
#define HEARTH_SECCOMP_H

#include <linux/filter.h>
#include <stdbool.h>

#include "../common/util.h"

typedef struct sbx_seccomp {
    struct sock_fprog prog; /* ready for prctl(PR_SET_SECCOMP) / seccomp(2) */
    bool in_init;           /* allows all a sandbox's init does once set up (the built-in profile):
                               init installs it once and the processes it starts inherit it, instead
                               of each installing it (0.15-0.4 ms: the kernel runs the program for
                               every system call number to prepare its cache) */
} sbx_seccomp_t;

/* Compile the built-in profile (profile NULL or "default") or the JSON
 * profile at that path. Processes under the filter have no capabilities,
 * so rules conditioned on capabilities are resolved as "none held". */
int sbx_seccomp_compile(const char *profile, sbx_seccomp_t **out, hearth_error_t *err);
/* Same, from a JSON text already in memory (for tests and fuzzing). */
int sbx_seccomp_compile_json(const char *json, size_t len, sbx_seccomp_t **out, hearth_error_t *err);
/* sbx_seccomp_compile through a cache of compiled programs in cache_dir
 * (created 0700 if missing; ignored unless root-owned and not writable by
 * others; NULL: no cache). Keyed by the identity (device, inode, size,
 * mtime) of the profile file and of this executable, libseccomp's version
 * and the kernel's release. */
int sbx_seccomp_compile_cached(const char *profile, const char *cache_dir, sbx_seccomp_t **out,
                               hearth_error_t *err);
/* Install on the calling thread (requires no_new_privs or CAP_SYS_ADMIN).
 * Async-signal-safe: no allocation; usable between fork and exec. */
int sbx_seccomp_install(const sbx_seccomp_t *sc);
void sbx_seccomp_free(sbx_seccomp_t *sc);

#endif
