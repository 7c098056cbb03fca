#include "scheduler/scaler.h"

#include <string.h>

int sched_scaler_cfg_init(sched_scaler_cfg_t *cfg, uint64_t stable_ns, uint64_t panic_ns)
{
    if (stable_ns == 0 || panic_ns == 0 || panic_ns > stable_ns)
        return -1;
    /* Six buckets per panic window keeps the panic figure smooth; widen the
     * buckets when that would make the stable ring too long. */
    uint64_t width = panic_ns / 6 ? panic_ns / 6 : 1;
    if (stable_ns / width > SCHED_SCALER_MAX_BUCKETS)
        width = (stable_ns + SCHED_SCALER_MAX_BUCKETS - 1) / SCHED_SCALER_MAX_BUCKETS;
    cfg->bucket_ns = width;
    cfg->n_stable = (uint32_t)(stable_ns / width);
    if (cfg->n_stable == 0)
        cfg->n_stable = 1;
    cfg->n_panic = (uint32_t)(panic_ns / width);
    if (cfg->n_panic == 0)
        cfg->n_panic = 1;
    if (cfg->n_panic > cfg->n_stable)
        cfg->n_panic = cfg->n_stable;
    cfg->stable_ns = stable_ns;
    return 0;
}

void sched_scaler_init(sched_scaler_t *sc, const sched_scaler_cfg_t *cfg, uint64_t now)
{
    memset(sc, 0, sizeof(*sc));
    sc->cur_bucket = now / cfg->bucket_ns;
    sc->last_ns = now;
    sc->born_ns = now;
}

static void add_area(sched_scaler_t *sc, const sched_scaler_cfg_t *cfg, uint64_t a)
{
    sc->area[sc->cur_bucket % cfg->n_stable] += a;
    sc->stable_sum += a;
    sc->panic_sum += a;
}

void sched_scaler_advance(sched_scaler_t *sc, const sched_scaler_cfg_t *cfg, uint64_t now)
{
    if (now <= sc->last_ns)
        return;
    uint64_t b_now = now / cfg->bucket_ns;
    if (b_now >= sc->cur_bucket + cfg->n_stable + 1) {
        /* Quiet for longer than the whole window: everything in it is the
         * constant value, so restart the ring instead of walking it. */
        memset(sc->area, 0, sizeof(sc->area));
        sc->stable_sum = sc->panic_sum = 0;
        uint64_t full = (uint64_t)sc->value * cfg->bucket_ns;
        sc->cur_bucket = b_now;
        for (uint32_t i = 1; i < cfg->n_stable; i++) {
            sc->area[(b_now - i) % cfg->n_stable] = full;
            sc->stable_sum += full;
            if (i < cfg->n_panic)
                sc->panic_sum += full;
        }
        sc->last_ns = b_now * cfg->bucket_ns;
    }
    while (sc->cur_bucket < b_now) {
        uint64_t end = (sc->cur_bucket + 1) * cfg->bucket_ns;
        add_area(sc, cfg, (uint64_t)sc->value * (end - sc->last_ns));
        sc->last_ns = end;
        uint64_t c = ++sc->cur_bucket;
        /* Bucket c - n_panic leaves the panic window, c - n_stable (same slot
         * as c) leaves the stable one; clear the slot last. */
        sc->panic_sum -= sc->area[(c - cfg->n_panic) % cfg->n_stable];
        sc->stable_sum -= sc->area[c % cfg->n_stable];
        sc->area[c % cfg->n_stable] = 0;
    }
    add_area(sc, cfg, (uint64_t)sc->value * (now - sc->last_ns));
    sc->last_ns = now;
}

static uint32_t ceil_div(double avg, uint32_t concurrency)
{
    double d = avg / (concurrency ? concurrency : 1);
    uint32_t n = (uint32_t)d;
    /* Integral areas make exact multiples common; a tiny epsilon keeps 2.0000001 from becoming 3. */
    if (d - n > 1e-9)
        n++;
    return n;
}

void sched_scaler_view(const sched_scaler_t *sc, const sched_scaler_cfg_t *cfg, uint64_t now,
                       uint32_t concurrency, sched_scaler_view_t *out)
{
    uint64_t into = now - (now / cfg->bucket_ns) * cfg->bucket_ns;
    uint64_t age = now - sc->born_ns;
    uint64_t len_s = (uint64_t)(cfg->n_stable - 1) * cfg->bucket_ns + into;
    uint64_t len_p = (uint64_t)(cfg->n_panic - 1) * cfg->bucket_ns + into;
    if (len_s > age)
        len_s = age;
    if (len_p > age)
        len_p = age;
    out->avg_stable = len_s ? (double)sc->stable_sum / (double)len_s : sc->value;
    out->avg_panic = len_p ? (double)sc->panic_sum / (double)len_p : sc->value;
    out->want_stable = ceil_div(out->avg_stable, concurrency);
    out->want_panic = ceil_div(out->avg_panic, concurrency);
}

uint32_t sched_scaler_decide(sched_scaler_t *sc, const sched_scaler_cfg_t *cfg, uint64_t now,
                             uint32_t concurrency, uint32_t ready, uint32_t min_warm,
                             uint32_t max_sandboxes, sched_scaler_view_t *view)
{
    sched_scaler_advance(sc, cfg, now);
    sched_scaler_view(sc, cfg, now, concurrency, view);
    uint32_t base = ready ? ready : 1;
    if (view->want_panic >= 2 * base) {
        sc->panic = true;
        sc->panic_last_ns = now;
    } else if (sc->panic && now - sc->panic_last_ns >= cfg->stable_ns) {
        sc->panic = false;
    }
    uint32_t want = view->want_stable;
    if (sc->panic) {
        if (view->want_panic > want)
            want = view->want_panic;
        if (sc->desired > want)
            want = sc->desired;
    }
    if (want < min_warm)
        want = min_warm;
    if (want > max_sandboxes)
        want = max_sandboxes;
    sc->desired = want;
    return want;
}

void sched_scaler_count(sched_scaler_t *sc, const sched_scaler_cfg_t *cfg, uint64_t now)
{
    sched_scaler_advance(sc, cfg, now);
    add_area(sc, cfg, cfg->bucket_ns);
}
