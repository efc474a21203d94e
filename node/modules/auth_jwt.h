/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `auth_jwt` and its directives (NGINX Plus names and semantics): an access
 * phase check of a signed JSON Web Token (node/modules/jwt.h), under
 * `satisfy`, with the $jwt_claim_NAME, $jwt_header_NAME and $jwt_payload
 * variables.
 */
#ifndef SH_AUTH_JWT_H
#define SH_AUTH_JWT_H

#include "core/conf.h"

extern sh_conf_module_t sh_auth_jwt_module;

#endif
