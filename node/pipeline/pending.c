/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Directives of nginx configurations that Shoal does not implement yet, in
 * two kinds (issue 16, "fail closed"):
 *
 * - Directives that restrict access or traffic (limits, authentication,
 *   `internal`, `satisfy`, referer and secure-link checks, upstream
 *   certificate verification, ...) are REFUSED with file:line: accepting
 *   and ignoring them would serve what the operator meant to protect.
 * - Directives that only tune (buffers, temp paths, caches of open files,
 *   compression, static files not served yet, ...) are accepted with a
 *   warning that names the directive, its file:line and what is ignored, so
 *   an nginx configuration loads and `shoal -t` (and the answer of a reload)
 *   lists exactly what is not honoured.
 *
 * This module is last in the module list: when a real module implements a
 * name, it is found first and the entry here is dead. Each entry leaves as
 * its issue lands. Runs on the thread that loads the configuration.
 */
#include "core/conf.h"

#define LOC   (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION)
#define LOCIF (LOC | SH_CTX_IF)
/* Tuning: warn "NAME is not supported yet, ignored (WHAT)". */
#define W(name, type, what)                                                                        \
    {                                                                                              \
        name, (type), sh_conf_set_unsupported, 0, what                                             \
    }
/* Restricting: refuse "NAME is not implemented yet: WHAT". */
#define R(name, type, what)                                                                        \
    {                                                                                              \
        name, (type), sh_conf_set_refused, 0, what                                                 \
    }

#define LIMCONN "connections would not be limited"
#define AUTH    "requests would not be authenticated"

static const sh_conf_cmd_t pending_cmds[] = {
    /* ---- refused: access and traffic restrictions ---- */
    R("limit_zone", SH_CTX_HTTP | SH_CONF_TAKE3, LIMCONN),
    R("limit_rate", LOCIF | SH_CONF_TAKE1, "responses would not be rate limited"),
    R("limit_rate_after", LOCIF | SH_CONF_TAKE1, "responses would not be rate limited"),
    R("limit_except", SH_CTX_LOCATION | SH_CONF_BLOCK | SH_CONF_1MORE,
      "methods would not be restricted"),
    R("auth_http", LOC | SH_CONF_TAKE1, AUTH),
    R("secure_link", LOC | SH_CONF_TAKE1, "links would not be checked"),
    R("secure_link_md5", LOC | SH_CONF_TAKE1, "links would not be checked"),
    R("secure_link_secret", SH_CTX_LOCATION | SH_CONF_TAKE1, "links would not be checked"),
    R("valid_referers", SH_CTX_SERVER | SH_CTX_LOCATION | SH_CONF_1MORE,
      "referers would not be checked"),
    R("ssl_ocsp", SH_CTX_HTTP | SH_CTX_SERVER | SH_CONF_TAKE1,
      "client certificates would not be checked for revocation by OCSP"),
    R("ssl_ocsp_responder", SH_CTX_HTTP | SH_CTX_SERVER | SH_CONF_TAKE1,
      "client certificates would not be checked for revocation by OCSP"),
    R("ssl_ocsp_cache", SH_CTX_HTTP | SH_CTX_SERVER | SH_CONF_TAKE1,
      "client certificates would not be checked for revocation by OCSP"),
    R("client_body_in_file_only", LOC | SH_CONF_TAKE1, "request bodies would not be kept"),

    /* ---- accepted with a warning: tuning ---- */
    /* static files: what is not tuned yet */
    W("open_file_cache", LOC | SH_CONF_TAKE12, "tuning only"),
    W("open_file_cache_valid", LOC | SH_CONF_TAKE1, "tuning only"),
    W("open_file_cache_min_uses", LOC | SH_CONF_TAKE1, "tuning only"),
    W("open_file_cache_errors", LOC | SH_CONF_FLAG, "tuning only"),
    W("aio", LOC | SH_CONF_TAKE1, "tuning only"),
    W("directio", LOC | SH_CONF_TAKE1, "tuning only"),
    W("output_buffers", LOC | SH_CONF_TAKE2, "tuning only"),
    /* buffers and temp files: responses are streamed, bodies kept in memory */
    W("proxy_buffers", LOC | SH_CONF_TAKE2, "responses are streamed with backpressure"),
    W("proxy_buffer_size", LOC | SH_CONF_TAKE1, "responses are streamed with backpressure"),
    W("proxy_busy_buffers_size", LOC | SH_CONF_TAKE1, "responses are streamed with backpressure"),
    W("proxy_temp_path", SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION | SH_CONF_1MORE,
      "no temp files"),
    W("proxy_max_temp_file_size", LOC | SH_CONF_TAKE1, "no temp files"),
    W("proxy_temp_file_write_size", LOC | SH_CONF_TAKE1, "no temp files"),
    W("client_body_temp_path", LOC | SH_CONF_1MORE, "no temp files"),
    W("reset_timedout_connection", LOC | SH_CONF_FLAG, "tuning only"),
    W("lingering_close", LOC | SH_CONF_TAKE1, "tuning only"),
    W("lingering_time", LOC | SH_CONF_TAKE1, "tuning only"),
    W("lingering_timeout", LOC | SH_CONF_TAKE1, "tuning only"),
    W("worker_cpu_affinity", SH_CTX_MAIN | SH_CONF_1MORE, "tuning only"),
    W("worker_priority", SH_CTX_MAIN | SH_CONF_TAKE1, "tuning only"),
    {NULL, 0, NULL, 0, NULL}};

sh_conf_module_t sh_pending_module = {
    .name = "pending",
    .cmds = pending_cmds,
};
