/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The http core module's variables, registered with sh_vars_define by its
 * preconfiguration ($host, $remote_addr, $uri, $args, $status,
 * $request_time, $time_local, $request_id, ... : the list is in
 * corevars.c). vars.c keeps only the registry and the generic families
 * ($http_NAME, $arg_NAME, $cookie_NAME, $sent_http_NAME,
 * $upstream_http_NAME, $1..$9, named captures).
 */
#ifndef SH_COREVARS_H
#define SH_COREVARS_H

#include "core/buf.h"
#include "core/conf.h"
#include "node/pipeline/http_conf.h"

typedef struct sh_request_s sh_request_t;

int sh_core_vars_define(sh_conf_t *cf, sh_http_main_t *m);
/* Append $remote_addr's text ($proxy_add_x_forwarded_for uses it). */
void sh_core_var_remote_addr(sh_request_t *r, sh_buf_t *out);

#endif
