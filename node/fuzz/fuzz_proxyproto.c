/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: the PROXY protocol decoder, fed whole and split in two at a
 * point the input's first byte chooses; both ways must agree. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "node/conn/proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t cut = data[0] % (size);
    data++;
    size--;
    sh_pp_t a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    size_t ua = 0, ub = 0;
    int ra = sh_pp_input(&a, (const char *)data, size, &ua);
    if (cut > size)
        cut = size;
    int rb = sh_pp_input(&b, (const char *)data, cut, &ub);
    size_t off = 0;
    if (rb == 0) {
        off = cut;
        rb = sh_pp_input(&b, (const char *)data + cut, size - cut, &ub);
    }
    if (ra != rb)
        abort();
    sh_pp_release(&a);
    sh_pp_release(&b);
    if (ra == 1) {
        if (ua > size || off + ub != ua || a.family != b.family)
            abort();
        char t[64];
        sh_pp_addr_text(&a.src, t, sizeof(t));
    }
    return 0;
}
