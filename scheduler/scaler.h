/* Observed concurrency of one function averaged over a stable and a panic
 * window, and the desired pool size derived from it (Knative's model).
 *
 * The windows are rings of fixed-width buckets holding the time integral of
 * the observed value (value x ns), with running sums over the last n_stable
 * and n_panic buckets: an observation costs O(1) amortised and never scans
 * events. Pure arithmetic: time comes in as an argument. */
#ifndef HEARTH_SCHED_SCALER_H
#define HEARTH_SCHED_SCALER_H

#include <stdbool.h>
#include <stdint.h>

#define SCHED_SCALER_MAX_BUCKETS 64

typedef struct sched_scaler_cfg {
    uint64_t bucket_ns;  /* width of one bucket */
    uint32_t n_stable;   /* buckets in the stable window (<= SCHED_SCALER_MAX_BUCKETS) */
    uint32_t n_panic;    /* buckets in the panic window (<= n_stable) */
    uint64_t stable_ns;  /* n_stable * bucket_ns, kept for the panic hold */
} sched_scaler_cfg_t;

typedef struct sched_scaler {
    uint64_t area[SCHED_SCALER_MAX_BUCKETS]; /* value x ns per bucket, ring indexed by bucket % n_stable */
    uint64_t stable_sum;     /* area over the last n_stable buckets, current one included */
    uint64_t panic_sum;      /* area over the last n_panic buckets, current one included */
    uint64_t cur_bucket;     /* absolute number (now / bucket_ns) of the current bucket */
    uint64_t last_ns;        /* time up to which the value has been integrated */
    uint64_t born_ns;        /* first observation: a young window is averaged over its age */
    uint32_t value;          /* observed concurrency now: in flight + queued */
    uint32_t desired;        /* last decision, in sandboxes */
    bool panic;              /* in panic mode */
    uint64_t panic_last_ns;  /* last time the panic condition held */
} sched_scaler_t;

typedef struct sched_scaler_view {
    double avg_stable;      /* mean concurrency over the stable window */
    double avg_panic;       /* mean concurrency over the panic window */
    uint32_t want_stable;   /* ceil(avg_stable / concurrency) */
    uint32_t want_panic;    /* ceil(avg_panic / concurrency) */
} sched_scaler_view_t;

/* Derive bucket width and counts from the two windows. The panic window is
 * cut into at least one bucket, the stable window into at most
 * SCHED_SCALER_MAX_BUCKETS. Returns -1 if a window is zero or panic > stable. */
int sched_scaler_cfg_init(sched_scaler_cfg_t *cfg, uint64_t stable_ns, uint64_t panic_ns);

/* Start with value 0 at time now. */
void sched_scaler_init(sched_scaler_t *sc, const sched_scaler_cfg_t *cfg, uint64_t now);

/* Integrate the current value up to now (now never goes back; an older now
 * is treated as the last one). */
void sched_scaler_advance(sched_scaler_t *sc, const sched_scaler_cfg_t *cfg, uint64_t now);

/* The observed value changes at now. */
static inline void sched_scaler_observe(sched_scaler_t *sc, const sched_scaler_cfg_t *cfg, uint64_t now,
                                        uint32_t value)
{
    if (value == sc->value)
        return;
    sched_scaler_advance(sc, cfg, now);
    sc->value = value;
}

/* Count one event at now (the window then holds event counts x bucket_ns;
 * used with value 0 for the rate of sandbox starts). */
void sched_scaler_count(sched_scaler_t *sc, const sched_scaler_cfg_t *cfg, uint64_t now);

/* Averages at now (after sched_scaler_advance) and the sandbox counts they ask for. */
void sched_scaler_view(const sched_scaler_t *sc, const sched_scaler_cfg_t *cfg, uint64_t now,
                       uint32_t concurrency, sched_scaler_view_t *out);

/* One scaling decision: updates sc->panic and sc->desired from the windows and
 * the number of ready sandboxes, clamped to [min_warm, max_sandboxes].
 * Panic starts when want_panic >= 2 x max(ready, 1); while in panic the
 * desired count never goes down, and panic ends only a full stable window
 * after the condition last held. Returns sc->desired. */
uint32_t sched_scaler_decide(sched_scaler_t *sc, const sched_scaler_cfg_t *cfg, uint64_t now,
                             uint32_t concurrency, uint32_t ready, uint32_t min_warm,
                             uint32_t max_sandboxes, sched_scaler_view_t *view);

/* True when the windows hold nothing and nothing is observed: the function
 * needs no periodic evaluation. */
static inline bool sched_scaler_quiet(const sched_scaler_t *sc)
{
    return sc->value == 0 && sc->stable_sum == 0 && !sc->panic;
}

#endif
