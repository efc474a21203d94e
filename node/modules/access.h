/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `allow` / `deny`: an access phase handler (403), rules compiled at load;
 * and `satisfy all|any`, which every access-phase check goes through
 * (allow/deny, auth_basic, auth_jwt, auth_request).
 */
#ifndef SH_ACCESS_H
#define SH_ACCESS_H

#include "core/conf.h"

extern sh_conf_module_t sh_access_module;

typedef struct sh_request_s sh_request_t;

/* An access check's verdict, under the location's `satisfy` (nginx's
 * access phase): status 0 allowed, 401 or 403 refused (any other status
 * is returned as it is: 500). Returns what the check's phase handler
 * returns. `satisfy all`: allowed goes on to the next check, refused
 * answers now. `satisfy any`: allowed skips the other checks, refused is
 * remembered (401 before 403) and answered when no check allowed. A check
 * that does not apply returns SH_PH_DECLINED without calling this. */
int sh_access_decide(sh_request_t *r, int status);

#endif
