/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `allow` / `deny`: an access phase handler (403), rules compiled at load.
 */
#ifndef SH_ACCESS_H
#define SH_ACCESS_H

#include "core/conf.h"

extern sh_conf_module_t sh_access_module;

#endif
