/* SPDX-License-Identifier: Apache-2.0 */
/* The one list of configuration modules (style.md, rule 10). */
#ifndef SH_MODULES_H
#define SH_MODULES_H

#include "core/conf.h"

extern sh_conf_module_t *const sh_modules[];
extern const unsigned sh_nmodules;
extern const char sh_default_conf[];

#endif
