/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `mirror URI|off` and `mirror_request_body on|off` (nginx's mirror
 * module): shadow traffic through background subrequests.
 */
#ifndef SH_MIRROR_H
#define SH_MIRROR_H

#include "core/conf.h"

extern sh_conf_module_t sh_mirror_module;

#endif
