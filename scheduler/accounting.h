/* What a tenant or a function has used: CPU of its invocations, CPU spent
 * starting and idling its sandboxes (overhead, reported apart), memory-time,
 * counts. And the optional per-tenant CPU budget per minute.
 *
 * Pure bookkeeping: the daemon measures (cgroup usage after minus before) and
 * passes the figures in; it persists totals and loads them back at start. */
#ifndef HEARTH_SCHED_ACCOUNTING_H
#define HEARTH_SCHED_ACCOUNTING_H

#include <stdbool.h>
#include <stdint.h>

typedef struct sched_usage {
    uint64_t cpu_ns;          /* CPU of invocations */
    uint64_t overhead_cpu_ns; /* start-up and idle CPU of sandboxes */
    uint64_t memory_mb_ms;    /* memory limit x invocation time (shared by concurrent invocations) */
    uint64_t invocations;     /* finished invocations, errors included */
    uint64_t errors;          /* invocations that failed or crashed */
    uint64_t cold_starts;     /* invocations that started on a new sandbox (cold or prewarm) */
    uint64_t rejected;        /* invocations turned away (429, queue timeout, removed) */
} sched_usage_t;

/* CPU in whole milliseconds, as the API and metrics show it. */
static inline uint64_t sched_usage_cpu_ms(const sched_usage_t *u)
{
    return u->cpu_ns / 1000000;
}
static inline uint64_t sched_usage_overhead_ms(const sched_usage_t *u)
{
    return u->overhead_cpu_ns / 1000000;
}

/* Charge one finished invocation that used cpu_ns of CPU and held a
 * memory_mb sandbox for duration_ns; share is the sandbox's concurrency,
 * since concurrent invocations share one memory limit. */
void sched_usage_charge(sched_usage_t *u, uint64_t cpu_ns, uint32_t memory_mb, uint64_t duration_ns,
                        uint32_t share, bool failed);

/* Add b into a. */
void sched_usage_add(sched_usage_t *a, const sched_usage_t *b);

/* A CPU budget over fixed one-minute windows. The window starts with the
 * first spending after the previous one ended. */
typedef struct sched_budget {
    uint64_t limit_ms;     /* CPU-ms allowed per minute; 0 = no budget */
    uint64_t window_start; /* start of the current window (ns) */
    uint64_t spent_ns;     /* CPU spent in the current window */
} sched_budget_t;

#define SCHED_BUDGET_WINDOW_NS (60ull * 1000000000ull)

/* May the tenant start another invocation at now? If not, *retry_ms tells
 * when the window moves on. */
bool sched_budget_allows(sched_budget_t *b, uint64_t now, uint32_t *retry_ms);

/* Record cpu_ns spent at now. */
void sched_budget_spend(sched_budget_t *b, uint64_t cpu_ns, uint64_t now);

#endif
