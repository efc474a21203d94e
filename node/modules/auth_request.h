/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `auth_request` / `auth_request_set`: an access phase check through a
 * subrequest to an auth location (nginx's module), under `satisfy`.
 */
#ifndef SH_AUTH_REQUEST_H
#define SH_AUTH_REQUEST_H

#include "core/conf.h"

extern sh_conf_module_t sh_auth_request_module;

#endif
