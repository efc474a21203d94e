/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The `match NAME { ... }` block of active health checks (NGINX Plus's
 * ngx_http_upstream_hc_module) and the test of a check's response against
 * it. A block holds conditions, all of which must hold:
 *
 *   status 200;            status ! 500;        status 200 204;
 *   status 200-399;        status ! 400-599;    status 301-303 307;
 *   header Content-Type = text/html;            header Content-Type != text/html;
 *   header Connection ~ close;                  header Connection !~ close;
 *   header Host;           header ! X-Shadowy-Header;
 *   body ~ "Welcome to nginx!";                 body !~ "Welcome to nginx!";
 *
 * Without a match block a check passes on a 2xx or 3xx status. Header
 * names compare case-insensitively; `=` compares the value exactly; the
 * regexes are PCRE2 (node/pipeline/regex.h); the body tested is its first
 * SH_HC_BODY_MAX bytes, as NGINX Plus reads the first 256k. `require
 * $var` (NGINX Plus) is refused at load. Any thread once built.
 */
#ifndef SH_HEALTH_MATCH_H
#define SH_HEALTH_MATCH_H

#include <stddef.h>

#include "core/conf.h"

#define SH_HC_BODY_MAX (256 * 1024)

typedef struct sh_hc_match_s sh_hc_match_t;

/* Build a match from the children of a `match` block node. NULL with
 * err set (line-prefixed message) on a bad condition. */
sh_hc_match_t *sh_hc_match_build(const char *name, const sh_conf_node_t *first, char *err,
                                 size_t errlen);
/* Take one more reference; destroy drops one (the last frees). */
sh_hc_match_t *sh_hc_match_ref(sh_hc_match_t *m);
void sh_hc_match_destroy(sh_hc_match_t *m);
const char *sh_hc_match_name(const sh_hc_match_t *m);

/*
 * Test a complete response (head and body as read, up to the cap) against
 * m (NULL: 2xx or 3xx). Returns 1 when it passes, 0 when not, with a short
 * reason in why (static text or a formatted line).
 */
int sh_hc_match_test(const sh_hc_match_t *m, const char *resp, size_t len, char *why,
                     size_t whylen);

#endif
