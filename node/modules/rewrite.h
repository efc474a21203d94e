/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The rewrite module: `return` as a rewrite phase handler (see rewrite.c).
 */
#ifndef SH_REWRITE_H
#define SH_REWRITE_H

#include "core/conf.h"

extern sh_conf_module_t sh_rewrite_module;

#endif
