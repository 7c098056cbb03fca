/* A tiny TAP-style harness: every runner ends with "N passed, N failed".
 *
 *   static void t_something(void) { CHECK(x == 1, "x is %d", x); }
 *   int main(void) { RUN(t_something); return harness_done(); }
 *
 * CHECK records one assertion; a test passes when all its CHECKs pass.
 * SKIP(reason) ends a test as skipped (counted apart, never as passed). */
#ifndef HEARTH_TEST_HARNESS_H
#define HEARTH_TEST_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int harness_passed, harness_failed, harness_skipped, harness_n;
static int harness_cur_failed, harness_cur_skipped;
static char harness_skip_reason[256];

#define HARNESS_FAIL_(text, ...)                                                             \
    do {                                                                                     \
        harness_cur_failed++;                                                                \
        printf("#   %s:%d: %s failed: ", __FILE__, __LINE__, text);                          \
        printf(__VA_ARGS__);                                                                 \
        printf("\n");                                                                        \
        fflush(stdout);                                                                      \
    } while (0)

#define CHECK(cond, ...)                                                                     \
    do {                                                                                     \
        if (!(cond))                                                                         \
            HARNESS_FAIL_("CHECK(" #cond ")", __VA_ARGS__);                                  \
    } while (0)

/* Evaluates cond once (it may have side effects: REQUIRE(pipe(fds) == 0)). */
#define REQUIRE(cond, ...)                                                                   \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            HARNESS_FAIL_("REQUIRE(" #cond ")", __VA_ARGS__);                                \
            return;                                                                          \
        }                                                                                    \
    } while (0)

#define SKIP(...)                                                                            \
    do {                                                                                     \
        harness_cur_skipped = 1;                                                             \
        snprintf(harness_skip_reason, sizeof(harness_skip_reason), __VA_ARGS__);             \
        return;                                                                              \
    } while (0)

#define RUN(fn) harness_run(#fn, fn)

static inline void harness_run(const char *name, void (*fn)(void))
{
    harness_cur_failed = 0;
    harness_cur_skipped = 0;
    fn();
    harness_n++;
    if (harness_cur_skipped && !harness_cur_failed) {
        harness_skipped++;
        printf("ok %d - %s # SKIP %s\n", harness_n, name, harness_skip_reason);
    } else if (harness_cur_failed) {
        harness_failed++;
        printf("not ok %d - %s\n", harness_n, name);
    } else {
        harness_passed++;
        printf("ok %d - %s\n", harness_n, name);
    }
    fflush(stdout);
}

static inline int harness_done(void)
{
    printf("1..%d\n", harness_n);
    if (harness_skipped)
        printf("%d passed, %d failed, %d skipped\n", harness_passed, harness_failed, harness_skipped);
    else
        printf("%d passed, %d failed\n", harness_passed, harness_failed);
    return harness_failed ? 1 : 0;
}

#endif
