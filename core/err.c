/* SPDX-License-Identifier: Apache-2.0 */
/* The table behind sh_strerror(); generated from SH_ERRNO_MAP in err.h. */
#include "core/err.h"

const char *sh_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define X(name, code, text)                                                                        \
    case code:                                                                                     \
        return text;
        SH_ERRNO_MAP(X)
#undef X
    default:
        return "unknown error";
    }
}
