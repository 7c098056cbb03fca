/* libFuzzer entry point: bytes → the function spec parser, and every spec
 * it accepts must survive spec → JSON → spec unchanged. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "orchestrator/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cfg_function_t *fn = NULL;
    hearth_error_t err;
    if (cfg_function_parse((const char *)data, size, "fuzz", &fn, &err) < 0)
        return 0;
    char *text = cfg_function_dump(fn);
    if (text == NULL)
        abort();
    cfg_function_t *back = NULL;
    if (cfg_function_parse(text, strlen(text), NULL, &back, &err) < 0)
        abort(); /* what we write we must read back */
    char *again = cfg_function_dump(back);
    if (again == NULL || strcmp(text, again) != 0)
        abort();
    free(again);
    free(text);
    cfg_function_free(back);
    cfg_function_free(fn);
    return 0;
}
