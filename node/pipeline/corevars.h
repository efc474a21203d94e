/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The http core's variables that live outside the central table of vars.c
 * (registered with sh_vars_define by the core module's preconfiguration):
 * $request_id, $connection_time, $pipe, $request_body, $request_body_file,
 * $request_completion, $limit_rate.
 */
#ifndef SH_COREVARS_H
#define SH_COREVARS_H

#include "core/conf.h"
#include "node/pipeline/http_conf.h"

int sh_core_vars_define(sh_conf_t *cf, sh_http_main_t *m);

#endif
