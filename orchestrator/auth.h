/* Tenants and who may call what.
 *
 * An auth_t is built from a validated daemon config and is immutable
 * afterwards: SIGHUP builds a new one and swaps it in. It is refcounted so
 * that a request that authenticated against the old one can finish with
 * its tenant pointer still valid (auth_ref when a request starts,
 * auth_unref when it ends). */
#ifndef HEARTH_AUTH_H
#define HEARTH_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "../common/util.h"
#include "config.h"

#define AUTH_TOKEN_MAX 4096   /* longer bearer tokens are refused unhashed */
#define AUTH_HEADER_MAX 8192  /* longer Authorization values are refused */

typedef struct auth auth_t;
typedef cfg_tenant_t auth_tenant_t; /* a deep copy owned by the auth_t */

/* Copy the tenants of cfg; cfg may be freed afterwards. */
int auth_new(const cfg_daemon_t *cfg, auth_t **out, hearth_error_t *err);
auth_t *auth_ref(auth_t *a);
/* Drops one reference; the last frees every tenant. NULL is fine. */
void auth_unref(auth_t *a);

/* The tenant whose token this is, or NULL. Hashes the token with SHA-256
 * and compares it with every stored hash in constant time, without
 * stopping at a match, so timing says nothing about which tenant (or
 * whether any) matched. Empty or over-long tokens are NULL. */
const auth_tenant_t *auth_by_token(const auth_t *a, const char *token, size_t len);
/* The tenant listing this peer uid, or NULL. */
const auth_tenant_t *auth_by_uid(const auth_t *a, uid_t uid);
/* The tenant called name, or NULL. */
const auth_tenant_t *auth_by_name(const auth_t *a, const char *name);
/* The tenant owning this SigV4 access key id (and the key), or NULL. */
const auth_tenant_t *auth_by_access_key(const auth_t *a, const char *access_key_id,
                                        const cfg_aws_key_t **key);
size_t auth_count(const auth_t *a);
const auth_tenant_t *auth_at(const auth_t *a, size_t i);

/* Split an Authorization header value "Bearer <token>" (scheme matched
 * case-insensitively, token68 syntax, surrounding blanks allowed). On
 * success *token points into value and *len is its length. Returns 0, or
 * -1 with err->code EINVAL for anything else (missing, another scheme,
 * malformed, too long). */
int auth_parse_bearer(const char *value, const char **token, size_t *len, hearth_error_t *err);

/* May caller act on functions and usage of tenant? Its own, or any when
 * caller is admin. A caller that may not must be answered as if the
 * function did not exist (404), so that names do not leak. */
bool auth_may_act(const auth_tenant_t *caller, const char *tenant);

/* The uid (and pid, may be NULL) of the process at the other end of a
 * connected Unix socket, from SO_PEERCRED: what it was when it connected. */
int auth_peer_uid(int fd, uid_t *uid, pid_t *pid, hearth_error_t *err);

#endif
