/* Counters, gauges and histograms with label sets, and their Prometheus
 * text exposition (format 0.0.4).
 *
 * A family (name, help, type, label names) is registered once at start;
 * its series (one per combination of label values) are found by a hash of
 * family and values, created on first use. Series pointers stay valid until
 * metrics_forget removes them or metrics_free, so hot paths look a series
 * up once and keep it. Single-threaded: the daemon's loop owns it. */
#ifndef HEARTH_METRICS_H
#define HEARTH_METRICS_H

#include <stddef.h>

#include "../common/util.h"

struct evbuffer;

#define METRICS_MAX_LABELS 8
#define METRICS_MAX_BUCKETS 64
#define METRICS_MAX_VALUE_LEN 256 /* longer label values are refused */

typedef enum metrics_type {
    METRICS_COUNTER,   /* only goes up; name must end in _total */
    METRICS_GAUGE,     /* goes up and down */
    METRICS_HISTOGRAM, /* observations counted in cumulative buckets */
} metrics_type_t;

typedef struct metrics metrics_t;
typedef struct metrics_family metrics_family_t;
typedef struct metrics_series metrics_series_t;

metrics_t *metrics_new(void);
void metrics_free(metrics_t *m);

/* Register a family. labels is NULL-terminated (NULL for none); buckets
 * (histograms only) are finite upper bounds in strictly increasing order,
 * +Inf is implied. Names follow Prometheus rules, counters end in _total,
 * "le" is reserved; a bad definition or a duplicate name is an error. */
metrics_family_t *metrics_register(metrics_t *m, metrics_type_t type, const char *name, const char *help,
                                   const char *const *labels, const double *buckets, size_t n_buckets,
                                   hearth_error_t *err);
/* The series with these label values (one per label name of the family, in
 * the same order), created at zero on first use. NULL on ENOMEM, a NULL or
 * over-long value. */
metrics_series_t *metrics_series(metrics_family_t *f, const char *const *values);

/* Counters: add v >= 0 (negative or NaN is ignored). Gauges: add any v. */
void metrics_add(metrics_series_t *s, double v);
/* Gauges only. */
void metrics_set(metrics_series_t *s, double v);
/* Histograms only. */
void metrics_observe(metrics_series_t *s, double v);
/* A counter's or gauge's value; a histogram's sum. */
double metrics_value(const metrics_series_t *s);
/* A histogram's number of observations. */
unsigned long long metrics_count(const metrics_series_t *s);

/* Remove, in every family, each series whose labels include all n pairs
 * names[i]=values[i] (e.g. tenant=acme, function=echo once that function is
 * deleted). Pointers to removed series become invalid. Returns how many. */
size_t metrics_forget(metrics_t *m, const char *const *names, const char *const *values, size_t n);

/* Append the text exposition of every family to out. -1 on ENOMEM. */
int metrics_render(const metrics_t *m, struct evbuffer *out, hearth_error_t *err);

/* Content-Type of the rendered text. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
