/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The rewrite module (nginx's): rewrite, return, set, if, break,
 * rewrite_log, uninitialized_variable_warn (see rewrite.c).
 */
#ifndef SH_REWRITE_H
#define SH_REWRITE_H

#include "core/buf.h"
#include "core/conf.h"
#include "node/pipeline/http_conf.h"

extern sh_conf_module_t sh_rewrite_module;

typedef struct sh_request_s sh_request_t;
/* nginx's absolute_redirect: loc[0..len) into out, with scheme, Host (or
 * server name) and port when it starts with '/'. Worker thread. */
void sh_absolute_location(sh_request_t *r, const char *loc, size_t len, sh_buf_t *out);

/* The text of the first `return` of loc's own script, or NULL (tests). */
const sh_cv_t *sh_rewrite_return_text(const sh_http_loc_t *loc);

#endif
