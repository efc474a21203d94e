/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nginx's `expires` (ngx_http_headers_module): a response header filter
 * that sets Expires and Cache-Control on 200, 201, 204, 206, 301, 302,
 * 303, 304, 307 and 308 responses. Forms: `off`, `epoch`, `max`, a time
 * (`1y`, `30d 12h`, `-1`, `+1h`: from the request's time), `modified TIME`
 * (from the response's Last-Modified, the request's time without one) and
 * `@TIME-OF-DAY` (the next such local time). A negative result gives
 * "Cache-Control: no-cache", else "max-age=SECONDS"; `epoch` gives
 * 1970-01-01 00:00:01 and no-cache, `max` 2037-12-31 23:55:55 and ten
 * years. An Expires from the upstream is replaced, and of its
 * Cache-Control fields only the first stays, with the new value.
 *
 * The filter is attached only to locations where `expires` is on.
 * Configuration at load; the filter runs on the worker of the request.
 */
#ifndef SH_EXPIRES_H
#define SH_EXPIRES_H

#include "core/conf.h"

extern sh_conf_module_t sh_expires_module;

#endif
