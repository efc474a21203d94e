/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The rewrite module (nginx's): rewrite, return, set, if, break,
 * rewrite_log, uninitialized_variable_warn (see rewrite.c).
 */
#ifndef SH_REWRITE_H
#define SH_REWRITE_H

#include "core/conf.h"
#include "node/pipeline/http_conf.h"

extern sh_conf_module_t sh_rewrite_module;

/* The text of the first `return` of loc's own script, or NULL (tests). */
const sh_cv_t *sh_rewrite_return_text(const sh_http_loc_t *loc);

#endif
