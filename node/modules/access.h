/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `allow` / `deny`: an access phase handler (403), rules compiled at load;
 * and `satisfy all|any`, which every access-phase check goes through
 * (allow/deny, auth_basic, auth_jwt, auth_request).
 */
#ifndef SH_ACCESS_H
#define SH_ACCESS_H

#include "core/buf.h"
#include "core/conf.h"
#include "node/pipeline/pipeline.h"

extern sh_conf_module_t sh_access_module;

/* An access check's verdict, under the location's `satisfy` (nginx's
 * access phase): status 0 allowed, 401 or 403 refused (any other status
 * is returned as it is: 500). Returns what the check's phase handler
 * returns. `satisfy all`: allowed goes on to the next check, refused
 * answers now. `satisfy any`: allowed skips the other checks, refused is
 * remembered (401 before 403) and answered when no check allowed. A check
 * that does not apply returns SH_PH_DECLINED without calling this. */
int sh_access_decide(sh_request_t *r, int status);

/* What auth_basic, auth_jwt and auth_request register in their
 * postconfiguration: their check h in the access phase, then their
 * WWW-Authenticate header filter www. 0 or an error written into cf. */
int sh_access_check_add(sh_conf_t *cf, sh_http_main_t *m, sh_phase_handler_pt h,
                        const sh_filter_t *www);

/* The body of such a header filter: on a 401, a WWW-Authenticate field
 * with the check's challenge www (kept in the request's context; nothing
 * when www is NULL or empty) added to h. Returns what a header filter
 * returns. */
int sh_access_www_authenticate(sh_request_t *r, sh_resp_head_t *h, const sh_buf_t *www);

#endif
