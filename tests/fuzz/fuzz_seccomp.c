/* libFuzzer entry point for seccomp profiles: any bytes must compile to a
 * program or fail with a message, within bounded memory and time.
 *
 *   clang -fsanitize=fuzzer,address -std=gnu11 -D_GNU_SOURCE -I. \
 *       tests/fuzz/fuzz_seccomp.c sandbox/seccomp.c common/util.c \
 *       $(pkg-config --cflags --libs jansson libseccomp)
 *   LSAN_OPTIONS=suppressions=<(echo leak:libseccomp.so) \
 *       ./a.out -max_total_time=60 -max_len=24000 tests/fuzz/corpus/seccomp
 *
 * The suppression is for libseccomp 2.5.4 itself, which leaks ~100 bytes
 * per rule with argument comparisons on the multiplexed socket calls when
 * x86 is in the filter (corpus/seccomp/leak-libseccomp-socketcall-x86.json;
 * reproduced with libseccomp alone: seccomp_rule_add + seccomp_release). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sandbox/seccomp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hearth_error_t err;
    sbx_seccomp_t *sc = NULL;
    if (sbx_seccomp_compile_json((const char *)data, size, &sc, &err) == 0) {
        /* A compiled program is within the kernel's bounds. */
        if (sc == NULL || sc->prog.len == 0 || sc->prog.len > BPF_MAXINSNS || sc->prog.filter == NULL)
            __builtin_trap();
        sbx_seccomp_free(sc);
    } else if (sc != NULL || memchr(err.msg, '\0', sizeof(err.msg)) == NULL || err.msg[0] == '\0') {
        __builtin_trap(); /* failure leaves no program and always says why */
    }
    return 0;
}
