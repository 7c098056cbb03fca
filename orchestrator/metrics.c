#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

struct metrics_series {
    metrics_family_t *family;
    char **values;                /* one per label of the family */
    uint64_t hash;                /* of family name and values */
    double value;                 /* counter or gauge; histogram sum */
    unsigned long long count;     /* histogram observations */
    unsigned long long *buckets;  /* histogram, per bucket (not cumulative), n_buckets of the family */
    metrics_series_t *hnext;      /* hash chain */
    metrics_series_t *prev, *next; /* family's series in creation order, for stable output */
};

struct metrics_family {
    metrics_t *owner;
    metrics_type_t type;
    char *name;
    char *help;
    char *labels[METRICS_MAX_LABELS]; /* label names */
    size_t n_labels;
    double *bounds;                   /* histogram upper bounds, +Inf implied */
    size_t n_buckets;
    metrics_series_t *first, *last;   /* series in creation order */
    metrics_family_t *next;           /* registration order */
};

struct metrics {
    metrics_family_t *families, *last_family;
    metrics_series_t **table; /* hash table of every series of every family */
    size_t table_size;        /* power of two */
    size_t n_series;
};

metrics_t *metrics_new(void)
{
    metrics_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->table_size = 256;
    m->table = calloc(m->table_size, sizeof(*m->table));
    if (m->table == NULL) {
        free(m);
        return NULL;
    }
    return m;
}

static void series_free(metrics_series_t *s)
{
    for (size_t i = 0; i < s->family->n_labels; i++)
        free(s->values[i]);
    free(s->values);
    free(s->buckets);
    free(s);
}

void metrics_free(metrics_t *m)
{
    if (m == NULL)
        return;
    metrics_family_t *f = m->families;
    while (f != NULL) {
        metrics_family_t *nf = f->next;
        for (metrics_series_t *s = f->first, *ns; s != NULL; s = ns) {
            ns = s->next;
            series_free(s);
        }
        for (size_t i = 0; i < f->n_labels; i++)
            free(f->labels[i]);
        free(f->name);
        free(f->help);
        free(f->bounds);
        free(f);
        f = nf;
    }
    free(m->table);
    free(m);
}

static bool valid_name(const char *s, bool colons)
{
    if (s == NULL || *s == '\0' || strlen(s) > 200)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colons && c == ':') ||
                  (p != s && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

metrics_family_t *metrics_register(metrics_t *m, metrics_type_t type, const char *name, const char *help,
                                   const char *const *labels, const double *buckets, size_t n_buckets,
                                   hearth_error_t *err)
{
    if (!valid_name(name, true))
        return hearth_error_set(err, EINVAL, "metric name `%s`", name ? name : "(null)"), NULL;
    if (type == METRICS_COUNTER && !ends_with(name, "_total"))
        return hearth_error_set(err, EINVAL, "counter `%s` must end in _total", name), NULL;
    for (metrics_family_t *f = m->families; f != NULL; f = f->next)
        if (strcmp(f->name, name) == 0)
            return hearth_error_set(err, EEXIST, "metric `%s`", name), NULL;
    if (type == METRICS_HISTOGRAM) {
        if (buckets == NULL || n_buckets == 0 || n_buckets > METRICS_MAX_BUCKETS)
            return hearth_error_set(err, EINVAL, "histogram `%s`: 1 to %d buckets", name, METRICS_MAX_BUCKETS),
                   NULL;
        for (size_t i = 0; i < n_buckets; i++)
            if (!isfinite(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1])))
                return hearth_error_set(err, EINVAL, "histogram `%s`: buckets must be finite and increasing",
                                        name),
                       NULL;
    }
    metrics_family_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return hearth_error_set(err, ENOMEM, "metric `%s`", name), NULL;
    f->owner = m;
    f->type = type;
    if ((f->name = strdup(name)) == NULL || (f->help = strdup(help ? help : "")) == NULL)
        goto nomem;
    for (size_t i = 0; labels != NULL && labels[i] != NULL; i++) {
        if (i == METRICS_MAX_LABELS || !valid_name(labels[i], false) || strncmp(labels[i], "__", 2) == 0 ||
            (type == METRICS_HISTOGRAM && strcmp(labels[i], "le") == 0)) {
            hearth_error_set(err, EINVAL, "metric `%s`: label `%s`", name, labels[i]);
            goto fail;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(labels[j], labels[i]) == 0) {
                hearth_error_set(err, EINVAL, "metric `%s`: duplicate label `%s`", name, labels[i]);
                goto fail;
            }
        if ((f->labels[i] = strdup(labels[i])) == NULL)
            goto nomem;
        f->n_labels = i + 1;
    }
    if (type == METRICS_HISTOGRAM) {
        if ((f->bounds = malloc(n_buckets * sizeof(double))) == NULL)
            goto nomem;
        memcpy(f->bounds, buckets, n_buckets * sizeof(double));
        f->n_buckets = n_buckets;
    }
    if (m->last_family)
        m->last_family->next = f;
    else
        m->families = f;
    m->last_family = f;
    return f;
nomem:
    hearth_error_set(err, ENOMEM, "metric `%s`", name);
fail:
    for (size_t i = 0; i < f->n_labels; i++)
        free(f->labels[i]);
    free(f->name);
    free(f->help);
    free(f->bounds);
    free(f);
    return NULL;
}

/* FNV-1a over the family name and the values, each followed by a byte
 * that cannot occur in UTF-8, so ("ab","c") and ("a","bc") differ. */
static uint64_t series_hash(const metrics_family_t *f, const char *const *values)
{
    uint64_t h = 1469598103934665603ULL;
    const unsigned char sep = 0xff;
    for (const unsigned char *p = (const unsigned char *)f->name; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    for (size_t i = 0; i < f->n_labels; i++) {
        h = (h ^ sep) * 1099511628211ULL;
        for (const unsigned char *p = (const unsigned char *)values[i]; *p; p++)
            h = (h ^ *p) * 1099511628211ULL;
    }
    return h;
}

static bool series_matches(const metrics_series_t *s, const metrics_family_t *f, uint64_t h,
                           const char *const *values)
{
    if (s->family != f || s->hash != h)
        return false;
    for (size_t i = 0; i < f->n_labels; i++)
        if (strcmp(s->values[i], values[i]) != 0)
            return false;
    return true;
}

static void table_grow(metrics_t *m)
{
    size_t size = m->table_size * 2;
    metrics_series_t **t = calloc(size, sizeof(*t));
    if (t == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < m->table_size; i++) {
        for (metrics_series_t *s = m->table[i], *n; s != NULL; s = n) {
            n = s->hnext;
            s->hnext = t[s->hash & (size - 1)];
            t[s->hash & (size - 1)] = s;
        }
    }
    free(m->table);
    m->table = t;
    m->table_size = size;
}

metrics_series_t *metrics_series(metrics_family_t *f, const char *const *values)
{
    static const char *const none[1] = {NULL};
    if (values == NULL)
        values = none;
    for (size_t i = 0; i < f->n_labels; i++)
        if (values[i] == NULL || strnlen(values[i], METRICS_MAX_VALUE_LEN + 1) > METRICS_MAX_VALUE_LEN)
            return NULL;
    metrics_t *m = f->owner;
    uint64_t h = series_hash(f, values);
    for (metrics_series_t *s = m->table[h & (m->table_size - 1)]; s != NULL; s = s->hnext)
        if (series_matches(s, f, h, values))
            return s;

    metrics_series_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->family = f;
    s->hash = h;
    if ((s->values = calloc(f->n_labels + 1, sizeof(char *))) == NULL)
        goto fail;
    for (size_t i = 0; i < f->n_labels; i++)
        if ((s->values[i] = strdup(values[i])) == NULL)
            goto fail;
    if (f->type == METRICS_HISTOGRAM && (s->buckets = calloc(f->n_buckets, sizeof(*s->buckets))) == NULL)
        goto fail;
    if (m->n_series + 1 > m->table_size)
        table_grow(m);
    size_t b = h & (m->table_size - 1);
    s->hnext = m->table[b];
    m->table[b] = s;
    m->n_series++;
    s->prev = f->last;
    if (f->last)
        f->last->next = s;
    else
        f->first = s;
    f->last = s;
    return s;
fail:
    if (s->values != NULL)
        for (size_t i = 0; i < f->n_labels; i++)
            free(s->values[i]);
    free(s->values);
    free(s);
    return NULL;
}

void metrics_add(metrics_series_t *s, double v)
{
    if (s == NULL || s->family->type == METRICS_HISTOGRAM)
        return;
    if (s->family->type == METRICS_COUNTER && !(v >= 0))
        return; /* a counter that went down would read as a reset */
    s->value += v;
}

void metrics_set(metrics_series_t *s, double v)
{
    if (s != NULL && s->family->type == METRICS_GAUGE)
        s->value = v;
}

void metrics_observe(metrics_series_t *s, double v)
{
    if (s == NULL || s->family->type != METRICS_HISTOGRAM || isnan(v))
        return;
    const metrics_family_t *f = s->family;
    /* Binary search for the first bound >= v; past the last is +Inf. */
    size_t lo = 0, hi = f->n_buckets;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v <= f->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    if (lo < f->n_buckets)
        s->buckets[lo]++;
    s->count++;
    s->value += v;
}

double metrics_value(const metrics_series_t *s)
{
    return s ? s->value : 0;
}

unsigned long long metrics_count(const metrics_series_t *s)
{
    return s ? s->count : 0;
}

static void series_unlink(metrics_t *m, metrics_series_t *s)
{
    metrics_series_t **pp = &m->table[s->hash & (m->table_size - 1)];
    while (*pp != s)
        pp = &(*pp)->hnext;
    *pp = s->hnext;
    metrics_family_t *f = s->family;
    if (s->prev)
        s->prev->next = s->next;
    else
        f->first = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        f->last = s->prev;
    m->n_series--;
}

size_t metrics_forget(metrics_t *m, const char *const *names, const char *const *values, size_t n)
{
    size_t removed = 0;
    for (metrics_family_t *f = m->families; f != NULL; f = f->next) {
        /* Where each wanted label sits in this family; a family without
         * one of them has no series to forget. */
        size_t idx[METRICS_MAX_LABELS];
        bool has_all = n <= METRICS_MAX_LABELS;
        for (size_t k = 0; has_all && k < n; k++) {
            has_all = false;
            for (size_t i = 0; i < f->n_labels; i++)
                if (strcmp(f->labels[i], names[k]) == 0) {
                    idx[k] = i;
                    has_all = true;
                }
        }
        if (!has_all)
            continue;
        for (metrics_series_t *s = f->first, *next; s != NULL; s = next) {
            next = s->next;
            bool match = true;
            for (size_t k = 0; match && k < n; k++)
                match = strcmp(s->values[idx[k]], values[k]) == 0;
            if (match) {
                series_unlink(m, s);
                series_free(s);
                removed++;
            }
        }
    }
    return removed;
}

/* The shortest text that reads back as the same double. */
static void format_double(char *buf, size_t cap, double v)
{
    if (isnan(v)) {
        snprintf(buf, cap, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, cap, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    /* Integers as integers: "10", not "1e+01". */
    if (v == (double)(long long)v && fabs(v) < 1e15) {
        snprintf(buf, cap, "%lld", (long long)v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

/* Label values escape backslash, double quote and newline; HELP text
 * escapes backslash and newline only. */
static int add_escaped(struct evbuffer *out, const char *s, bool quote)
{
    const char *run = s;
    for (const char *p = s;; p++) {
        const char *rep = NULL;
        if (*p == '\\')
            rep = "\\\\";
        else if (*p == '\n')
            rep = "\\n";
        else if (quote && *p == '"')
            rep = "\\\"";
        else if (*p != '\0')
            continue;
        if (p > run && evbuffer_add(out, run, (size_t)(p - run)) < 0)
            return -1;
        if (*p == '\0')
            return 0;
        if (evbuffer_add(out, rep, strlen(rep)) < 0)
            return -1;
        run = p + 1;
    }
}

/* name{a="x",b="y"[,le="z"]} value */
static int add_sample(struct evbuffer *out, const metrics_series_t *s, const char *suffix, const char *le,
                      const char *value)
{
    const metrics_family_t *f = s->family;
    if (evbuffer_add_printf(out, "%s%s", f->name, suffix) < 0)
        return -1;
    if (f->n_labels > 0 || le != NULL) {
        if (evbuffer_add(out, "{", 1) < 0)
            return -1;
        for (size_t i = 0; i < f->n_labels; i++) {
            if (evbuffer_add_printf(out, "%s%s=\"", i ? "," : "", f->labels[i]) < 0 ||
                add_escaped(out, s->values[i], true) < 0 || evbuffer_add(out, "\"", 1) < 0)
                return -1;
        }
        if (le != NULL && evbuffer_add_printf(out, "%sle=\"%s\"", f->n_labels ? "," : "", le) < 0)
            return -1;
        if (evbuffer_add(out, "}", 1) < 0)
            return -1;
    }
    return evbuffer_add_printf(out, " %s\n", value) < 0 ? -1 : 0;
}

static int render_family(const metrics_family_t *f, struct evbuffer *out)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    if (evbuffer_add_printf(out, "# HELP %s ", f->name) < 0 || add_escaped(out, f->help, false) < 0 ||
        evbuffer_add_printf(out, "\n# TYPE %s %s\n", f->name, types[f->type]) < 0)
        return -1;
    char num[64], le[64];
    for (const metrics_series_t *s = f->first; s != NULL; s = s->next) {
        if (f->type != METRICS_HISTOGRAM) {
            format_double(num, sizeof(num), s->value);
            if (add_sample(out, s, "", NULL, num) < 0)
                return -1;
            continue;
        }
        unsigned long long cum = 0;
        for (size_t i = 0; i < f->n_buckets; i++) {
            cum += s->buckets[i];
            format_double(le, sizeof(le), f->bounds[i]);
            snprintf(num, sizeof(num), "%llu", cum);
            if (add_sample(out, s, "_bucket", le, num) < 0)
                return -1;
        }
        snprintf(num, sizeof(num), "%llu", s->count);
        if (add_sample(out, s, "_bucket", "+Inf", num) < 0)
            return -1;
        format_double(num, sizeof(num), s->value);
        if (add_sample(out, s, "_sum", NULL, num) < 0)
            return -1;
        snprintf(num, sizeof(num), "%llu", s->count);
        if (add_sample(out, s, "_count", NULL, num) < 0)
            return -1;
    }
    return 0;
}

int metrics_render(const metrics_t *m, struct evbuffer *out, hearth_error_t *err)
{
    for (const metrics_family_t *f = m->families; f != NULL; f = f->next)
        if (render_family(f, out) < 0)
            return hearth_error_set(err, ENOMEM, "render metric `%s`", f->name);
    return 0;
}
