/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: the decoders of issue 13's channels and the health check's
 * response test. The first byte picks the target: the health channel's
 * observations (sh_health_merge_remote), the ticket-key channel's keys
 * (sh_tls_tickets_merge), or a check response against a match block and
 * the default rule (sh_hc_match_test). None may crash or read past the
 * input; a message that merges must encode again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/conf.h"
#include "node/conn/tls_tickets.h"
#include "node/proxy/health.h"
#include "node/proxy/health_match.h"

static sh_hc_match_t *match;

static void init(void)
{
    static const char text[] = "match m { status 200-399; header Content-Type ~ \"^text/\";"
                               " header ! X-Bad; header X-A != b; body ~ \"o+k\"; }";
    sh_conf_doc_t *doc = NULL;
    char err[SH_CONF_ERRLEN];
    if (sh_conf_parse_buffer("f.conf", text, sizeof(text) - 1, NULL, &doc, err) != 0)
        abort();
    match = sh_hc_match_build("m", sh_conf_doc_root(doc)->child, err, sizeof(err));
    sh_conf_doc_destroy(doc);
    if (match == NULL)
        abort();
    const char *members[] = {"a", "b", "c"};
    sh_health_set_self("a");
    sh_health_set_members(members, 3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (match == NULL)
        init();
    if (size < 1)
        return 0;
    uint8_t which = data[0] % 3;
    data++;
    size--;
    /* a copy of exactly size bytes, so reads past it are caught */
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    if (which == 0) {
        sh_health_merge_remote(buf, size);
        size_t len;
        uint64_t v;
        sh_free(sh_health_encode_local(0, 1, &len, &v));
    } else if (which == 1) {
        if (sh_tls_tickets_merge(buf, size) >= 0) {
            size_t len;
            uint64_t v;
            uint8_t *enc = sh_tls_tickets_encode(&len, &v);
            if (sh_tls_tickets_merge(enc, len) < 0)
                abort(); /* what we encode we must decode */
            sh_free(enc);
        }
    } else {
        char why[128];
        sh_hc_match_test(match, (const char *)buf, size, why, sizeof(why));
        sh_hc_match_test(NULL, (const char *)buf, size, why, sizeof(why));
    }
    free(buf);
    return 0;
}
