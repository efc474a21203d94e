/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The headers filter: `add_header NAME VALUE [always]` with nginx's rules.
 * The list of a level replaces the outer one as soon as that level has any
 * add_header (no merging); an empty value adds nothing; without `always`
 * the fields go only on 200, 201, 204, 206, 301, 302, 303, 304, 307 and
 * 308 responses, with it on every response, errors included (local 4xx
 * and 5xx, proxied ones, 502/504 of a failed upstream).
 *
 * Two response header filters (node/pipeline.h), registered at load and
 * attached to a location only when they apply: add_header (where the
 * location has any), and the $sent_http_NAME capture (last, when the
 * configuration reads those variables). Both protocols share them.
 * Configuration at load; evaluation on the worker that owns the request.
 */
#ifndef SH_HEADERS_H
#define SH_HEADERS_H

#include "core/conf.h"

extern sh_conf_module_t sh_headers_module;

#endif
