/* What the protocols that start a function's process share: its
 * environment, and telling from a sandbox event that a long-lived process
 * (lambda's runtime, http's server) is gone. No daemon state: the fuzz
 * target of the Runtime API links this file as it is. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchestrator/daemon.h"

bool hd_process_gone(const sbx_event_t *ev, pid_t *pid)
{
    if (ev->kind == SBX_EV_STARTED && *pid == 0)
        *pid = ev->pid;
    return ev->kind == SBX_EV_DIED || (ev->kind == SBX_EV_END && ev->pid == *pid) ||
           ev->kind == SBX_EV_START_FAILED;
}

static size_t count_env(const char *const *v)
{
    size_t n = 0;
    while (v != NULL && v[n] != NULL)
        n++;
    return n;
}

static bool spec_sets(const cfg_function_t *fn, const char *pair)
{
    size_t len = strcspn(pair, "=");
    for (size_t i = 0; i < fn->n_env; i++)
        if (strlen(fn->env[i].name) == len && strncmp(fn->env[i].name, pair, len) == 0)
            return true;
    return false;
}

const char **hd_function_env(const cfg_function_t *fn, const char *const *first, const char *const *defaults,
                             const char *const *last)
{
    size_t nf = count_env(first), nd = count_env(defaults), nl = count_env(last);
    size_t slots = nf + fn->n_env + nd + nl + 1, bytes = 0;
    for (size_t i = 0; i < fn->n_env; i++)
        bytes += strlen(fn->env[i].name) + strlen(fn->env[i].value) + 2;
    const char **envp = malloc(slots * sizeof(*envp) + bytes);
    if (envp == NULL)
        return NULL;
    char *p = (char *)(envp + slots);
    size_t ne = 0;
    for (size_t i = 0; i < nf; i++)
        envp[ne++] = first[i];
    for (size_t i = 0; i < fn->n_env; i++) {
        envp[ne++] = p;
        p += sprintf(p, "%s=%s", fn->env[i].name, fn->env[i].value) + 1;
    }
    for (size_t i = 0; i < nd; i++)
        if (!spec_sets(fn, defaults[i]))
            envp[ne++] = defaults[i];
    for (size_t i = 0; i < nl; i++)
        envp[ne++] = last[i];
    envp[ne] = NULL;
    return envp;
}
