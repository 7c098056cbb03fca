/* Dropping every capability with libcap, in the order the kernel needs:
 * the bounding set and securebits while we still hold CAP_SETPCAP, then
 * the ambient set, then effective/permitted/inheritable. */
#include "internal.h"

#include <errno.h>
#include <linux/securebits.h>
#include <sys/capability.h>
#include <sys/prctl.h>

int sbx_caps_drop_all(hearth_error_t *err)
{
    /* cap_max_bits() is what the running kernel knows, which may exceed
     * what this libcap was built with. */
    for (cap_value_t c = 0; c < (cap_value_t)cap_max_bits(); c++) {
        if (cap_drop_bound(c) < 0 && errno != EINVAL)
            return hearth_error_sys(err, "drop capability %d from the bounding set", c);
    }
    /* Root inside gets no capability back through exec, setuid fix-ups
     * or ambient raising; locked so that nothing can undo it. */
    unsigned bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                    SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
                    SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    if (cap_set_secbits(bits) < 0)
        return hearth_error_sys(err, "set securebits");
    /* One call: libcap's cap_reset_ambient() first asks the kernel about
     * each capability in turn (some forty system calls). */
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
        return hearth_error_sys(err, "clear the ambient capabilities");
    cap_t none = cap_init();
    if (none == NULL)
        return hearth_error_sys(err, "cap_init");
    int rc = cap_set_proc(none);
    int saved = errno;
    cap_free(none);
    if (rc < 0) {
        errno = saved;
        return hearth_error_sys(err, "drop effective, permitted and inheritable capabilities");
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return hearth_error_sys(err, "set no_new_privs");
    return 0;
}
