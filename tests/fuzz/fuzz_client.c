/* libFuzzer entry point: bytes → the CLI's HTTP/1.1 response parser (the
 * hand-written one of the Unix-socket path in orchestrator/client.c).
 *
 * The first byte picks the options: bit 0 a HEAD request, bits 1-2 the
 * body cap (the default 64 MiB, 0 → default, 16 B, 1 KiB, 64 KiB); the
 * second seeds the sizes of the pieces the rest arrives in (1-64 bytes each,
 * or one piece when it is 0). The response must be the same whatever the
 * pieces: the parser is a state machine fed as reads complete, and a
 * response split differently by the kernel must not be read differently. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "orchestrator/client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PIECES 4096

static bool known_code(int code)
{
    return code == ECONNRESET || code == EPROTO || code == EFBIG || code == ENOMEM;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    static const size_t caps[] = {0, 16, 1024, 65536};
    bool head = data[0] & 1;
    size_t cap = caps[(data[0] >> 1) & 3];
    uint32_t seed = data[1];
    data += 2;
    size -= 2;

    static size_t pieces[MAX_PIECES];
    size_t n_pieces = 0;
    if (seed != 0) {
        uint32_t r = seed * 2654435761u;
        for (size_t total = 0; total < size && n_pieces < MAX_PIECES; n_pieces++) {
            r = r * 1103515245u + 12345u;
            pieces[n_pieces] = 1 + (r >> 16) % 64;
            total += pieces[n_pieces];
        }
    }

    client_response_t whole, split;
    hearth_error_t err_whole = {0}, err_split = {0};
    int rc_whole = client_parse_response(data, size, NULL, 0, head, cap, &whole, &err_whole);
    int rc_split = client_parse_response(data, size, pieces, n_pieces, head, cap, &split, &err_split);

    if (rc_whole != rc_split)
        abort();
    if (rc_whole < 0) {
        if (err_whole.code != err_split.code || !known_code(err_whole.code) ||
            memchr(err_whole.msg, '\0', sizeof(err_whole.msg)) == NULL || whole.body != NULL)
            abort();
        return 0;
    }
    size_t max = cap ? cap : (size_t)64 << 20;
    if (whole.status < 200 || whole.status > 999 || whole.status != split.status || whole.body == NULL ||
        whole.body[whole.body_len] != '\0' || whole.body_len > max || whole.body_len != split.body_len ||
        memcmp(whole.body, split.body, whole.body_len) != 0)
        abort();
    if (head && whole.body_len != 0)
        abort();
    /* Headers survive as the parser stored them; lookups must not trip. */
    (void)client_header(&whole, "Content-Type");
    (void)client_header(&whole, "X-Hearth-Invocation-Id");
    client_response_free(&whole);
    client_response_free(&split);
    return 0;
}
