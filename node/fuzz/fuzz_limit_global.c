/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: the global limit channel's decoder (limit_global.h). What
 * decodes must encode back to the same bytes when its varints were
 * minimal; and an engine with one global zone takes the message as a
 * REPORT, REPLY or RATE from a member without crashing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "node/modules/limit_global.h"
#include "node/modules/limit_zone.h"

static uint8_t sent[2048];

static int io_send(void *ud, const char *to, const uint8_t *data, size_t len)
{
    (void)ud;
    (void)to;
    if (len > sizeof(sent))
        abort();
    memcpy(sent, data, len);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sh_lg_msg_t m;
    static uint8_t out[SH_LG_HDR + SH_LG_MAX_ITEMS * SH_LG_MAX_ITEM_SIZE];
    static sh_limit_zone_t *z;
    static sh_lg_t *g;
    if (z == NULL) {
        z = sh_limit_zone_create(SH_LIMIT_ZONE_MIN);
        sh_limit_zone_set_global(z, 10000);
        sh_lg_io_t io = {NULL, io_send, NULL, 1300};
        g = sh_lg_create("self", &io);
        sh_lg_member(g, "peer", 0, 0);
        sh_lg_zone_add(g, z);
    }
    const char *why = NULL;
    if (sh_lg_decode(data, size, &m, &why) == 0) {
        size_t n = sh_lg_encode(&m, out, sizeof(out));
        if (n == 0 || n > size)
            abort(); /* a decoded message always encodes, never longer */
        sh_lg_msg_t back;
        if (sh_lg_decode(out, n, &back, &why) != 0 || back.n != m.n || back.type != m.type ||
            back.zone != m.zone || back.seq != m.seq)
            abort();
        /* aim it at our zone so the engine's paths run */
        m.zone = sh_limit_zone_global_id(z);
        n = sh_lg_encode(&m, out, sizeof(out));
        sh_lg_recv(g, "peer", out, n, 1000);
    } else if (why == NULL) {
        abort(); /* every refusal has a reason */
    }
    sh_lg_recv(g, "peer", data, size, 1000);
    return 0;
}
