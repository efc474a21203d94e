/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Variables and complex values. A complex value ("text $var ${var}text")
 * is compiled once at load time into literal and variable parts; a
 * variable is evaluated lazily, only when a value that names it is
 * evaluated for a request. Unknown variables are a load-time error, as in
 * nginx. Worker thread for evaluation; the compiled form is immutable.
 */
#ifndef SH_VARS_H
#define SH_VARS_H

#include "core/buf.h"
#include "core/conf.h"
#include "node/http_conf.h"

typedef struct sh_request_s sh_request_t;

/* Compile text; on an unknown variable writes the error into cf and
 * returns SH_EINVAL. */
int sh_cv_compile(sh_conf_t *cf, const char *text, sh_cv_t **out);
void sh_cv_destroy(sh_cv_t *cv);
/* 1 if the value has no variables; then *lit is its text. */
int sh_cv_is_literal(const sh_cv_t *cv, sh_str_t *lit);
/* Append the value for r to out. */
void sh_cv_eval(const sh_cv_t *cv, sh_request_t *r, sh_buf_t *out);

#endif
