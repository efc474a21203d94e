/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Directives of nginx configurations that Shoal does not implement yet
 * (cache, gzip, headers, static files, status). They
 * are accepted with a warning that names the directive and its file:line,
 * so an nginx configuration loads and `shoal -t` lists exactly what is
 * not honoured yet. This module is last in the module list: when a real
 * module implements a name, it is found first and this entry is dead.
 * Each entry leaves as its issue lands.
 */
#include "core/conf.h"

#define LOC   (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION)
#define LOCIF (LOC | SH_CTX_IF)
#define P(name, type)                                                                              \
    {                                                                                              \
        name, (type), sh_conf_set_unsupported, 0, NULL                                             \
    }

static const sh_conf_cmd_t pending_cmds[] = {
    /* cache */
    P("proxy_cache_path", SH_CTX_HTTP | SH_CONF_2MORE),
    P("proxy_cache", LOC | SH_CONF_TAKE1),
    P("proxy_cache_valid", LOC | SH_CONF_1MORE),
    P("proxy_cache_use_stale", LOC | SH_CONF_1MORE),
    P("proxy_cache_key", LOC | SH_CONF_TAKE1),
    P("proxy_cache_bypass", LOC | SH_CONF_1MORE),
    P("proxy_no_cache", LOC | SH_CONF_1MORE),
    P("proxy_cache_lock", LOC | SH_CONF_FLAG),
    /* gzip */
    P("gzip", LOCIF | SH_CONF_FLAG),
    P("gzip_vary", LOC | SH_CONF_FLAG),
    P("gzip_proxied", LOC | SH_CONF_1MORE),
    P("gzip_comp_level", LOC | SH_CONF_TAKE1),
    P("gzip_types", LOC | SH_CONF_1MORE),
    P("gzip_min_length", LOC | SH_CONF_TAKE1),
    P("gzip_buffers", LOC | SH_CONF_TAKE2),
    P("gzip_http_version", LOC | SH_CONF_TAKE1),
    P("gzip_disable", LOC | SH_CONF_1MORE),
    /* static files, error pages, status */
    P("log_not_found", LOC | SH_CONF_FLAG),
    /* logs */
    P("log_format", SH_CTX_HTTP | SH_CONF_2MORE),
    P("access_log", LOCIF | SH_CONF_1MORE),
    P("map", SH_CTX_HTTP | SH_CONF_BLOCK | SH_CONF_TAKE2),
    {NULL, 0, NULL, 0, NULL}};

sh_conf_module_t sh_pending_module = {
    .name = "pending",
    .cmds = pending_cmds,
};
