/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sub_filter (nginx's ngx_http_sub_module): `sub_filter STRING REPLACEMENT`
 * (several; case-insensitive; the replacement may use variables),
 * `sub_filter_once on|off`, `sub_filter_types MIME...`,
 * `sub_filter_last_modified on|off`: strings replaced in response bodies as
 * they stream (a match may span pieces).
 */
#ifndef SH_SUB_FILTER_H
#define SH_SUB_FILTER_H

#include "core/conf.h"

extern sh_conf_module_t sh_sub_filter_module;

#endif
