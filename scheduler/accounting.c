#include "scheduler/accounting.h"

void sched_usage_charge(sched_usage_t *u, uint64_t cpu_ns, uint32_t memory_mb, uint64_t duration_ns,
                        uint32_t share, bool failed)
{
    u->cpu_ns += cpu_ns;
    /* mb x ns / 1e6 = mb x ms; divide last to keep sub-millisecond runs. */
    u->memory_mb_ms += (uint64_t)memory_mb * duration_ns / 1000000 / (share ? share : 1);
    u->invocations++;
    if (failed)
        u->errors++;
}

void sched_usage_add(sched_usage_t *a, const sched_usage_t *b)
{
    a->cpu_ns += b->cpu_ns;
    a->overhead_cpu_ns += b->overhead_cpu_ns;
    a->memory_mb_ms += b->memory_mb_ms;
    a->invocations += b->invocations;
    a->errors += b->errors;
    a->cold_starts += b->cold_starts;
    a->rejected += b->rejected;
}

static void roll(sched_budget_t *b, uint64_t now)
{
    if (b->spent_ns > 0 && (now - b->window_start >= SCHED_BUDGET_WINDOW_NS || now < b->window_start))
        b->spent_ns = 0;
}

bool sched_budget_allows(sched_budget_t *b, uint64_t now, uint32_t *retry_ms)
{
    if (b->limit_ms == 0)
        return true;
    roll(b, now);
    if (b->spent_ns < b->limit_ms * 1000000)
        return true;
    uint64_t left = b->window_start + SCHED_BUDGET_WINDOW_NS - now;
    *retry_ms = (uint32_t)((left + 999999) / 1000000);
    return false;
}

void sched_budget_spend(sched_budget_t *b, uint64_t cpu_ns, uint64_t now)
{
    if (b->limit_ms == 0)
        return;
    roll(b, now);
    if (b->spent_ns == 0)
        b->window_start = now; /* a window opens with its first spending */
    b->spent_ns += cpu_ns;
}
