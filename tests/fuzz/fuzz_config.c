/* libFuzzer entry point: bytes → the daemon config parser. */
#include <stddef.h>
#include <stdint.h>

#include "orchestrator/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cfg_daemon_t *cfg = NULL;
    hearth_error_t err;
    if (cfg_daemon_parse((const char *)data, size, &cfg, &err) == 0)
        cfg_daemon_free(cfg);
    return 0;
}
