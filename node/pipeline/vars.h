/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Variables and complex values. A complex value ("text $var ${var}text")
 * is compiled once at load time into literal and variable parts; a
 * variable is evaluated lazily, only when a value that names it is
 * evaluated for a request. Unknown variables are a load-time error with
 * file:line, as in nginx.
 *
 * Every named variable is registered, with its getter, by the module that
 * owns it (sh_vars_define from its preconfiguration: the http core's
 * $host, $uri, $status, ... in corevars.c, $ssl_* in tls.c, $upstream_* in
 * proxy.c, ...), or by the configuration: map results (map.c), `set`
 * (rewrite.c) and the named captures of the regexes it compiles
 * (locations, server names, maps). They live in a registry per http block
 * (sh_http_main_t.vars); a value may name one before the directive that
 * defines it (`map` after its use), and the check at the end of the http
 * block reports those never defined. vars.c itself knows only the generic
 * families whose NAME is in the value: $http_NAME, $arg_NAME,
 * $cookie_NAME, $sent_http_NAME, $upstream_http_NAME, $1..$9.
 *
 * A name is looked up once, when the value is compiled: a compiled part
 * points at its registry entry, so evaluating it is one getter call.
 *
 * Worker threads evaluate; the compiled form and the registry are
 * immutable after load.
 */
#ifndef SH_VARS_H
#define SH_VARS_H

#include "core/buf.h"
#include "core/conf.h"
#include "http/http1.h"
#include "node/pipeline/http_conf.h"

typedef struct sh_request_s sh_request_t;

/* Compile text; on an unknown variable writes the error into cf and
 * returns SH_EINVAL. */
int sh_cv_compile(sh_conf_t *cf, const char *text, sh_cv_t **out);
void sh_cv_destroy(sh_cv_t *cv);
/* 1 if the value has no variables; then *lit is its text. */
int sh_cv_is_literal(const sh_cv_t *cv, sh_str_t *lit);
/* The text the value was compiled from. */
const char *sh_cv_source(const sh_cv_t *cv);
/* Append the value for r to out. */
void sh_cv_eval(const sh_cv_t *cv, sh_request_t *r, sh_buf_t *out);

/* Captures of a regex match that a value is evaluated under (a map's
 * `~regex value` line): $1..$9 and named groups come from it first. */
typedef struct sh_captures_s {
    const sh_regex_t *re;
    const char *subject;
    const size_t *ovec; /* SH_REGEX_OVEC offsets, see regex.h */
} sh_captures_t;
void sh_cv_eval_captures(const sh_cv_t *cv, sh_request_t *r, const sh_captures_t *caps,
                         sh_buf_t *out);

/* Escaping of variable values in access log lines (log_format escape=). */
enum sh_cv_escape { SH_ESCAPE_DEFAULT = 0, SH_ESCAPE_JSON, SH_ESCAPE_NONE };
/* Evaluate for a log line: a variable that is not set ($http_x without
 * the header, $upstream_addr without an upstream, ...) is "-" (empty with
 * escape=json), and values are escaped as nginx does: default turns '"',
 * '\\' and bytes outside 0x20..0x7e into \xHH; json escapes for a JSON
 * string; none leaves them. */
void sh_cv_eval_log(const sh_cv_t *cv, sh_request_t *r, int escape, sh_buf_t *out);

/* A named variable's getter: append the value for r to out and return 1,
 * or return 0 when it is not set. data is what was registered. */
typedef int (*sh_var_get_pt)(sh_request_t *r, const void *data, sh_buf_t *out);

/* Define $name (without '$') in the http block being walked (cf->user is
 * its sh_http_block_t). Errors (written into cf): a built-in name, or a
 * name already defined. */
int sh_vars_define(sh_conf_t *cf, const char *name, sh_var_get_pt get, const void *data);
/* The http block's preconfigurations are done (http_conf.c): the variables
 * defined so far are the modules' built-in ones, whose getters read the
 * request and evaluate no configuration value; a value calls them
 * directly. Those the configuration defines (map, geo, set, ...) go
 * through the registry entry with the cycle check. */
void sh_vars_preconf_done(sh_http_main_t *m);
/* Define the family $PREFIXNAME (auth_jwt's $jwt_claim_NAME): a variable
 * of the configuration that starts with prefix and is not defined
 * otherwise gets get, with data the NAME after the prefix (a string that
 * lives as long as the configuration). */
int sh_vars_define_prefix(sh_conf_t *cf, const char *prefix, sh_var_get_pt get);
/* Define the named groups of re as variables (idempotent per name). */
int sh_vars_define_captures(sh_conf_t *cf, const sh_regex_t *re);
/* After the http block: every named variable used is defined; else the
 * error names the first use's file:line. */
int sh_vars_check(sh_conf_t *cf, sh_http_main_t *m);

/* The request field named lname (lower case, '-'), case-insensitively:
 * the first one, or NULL (what $http_NAME reads). */
const sh_http1_header_t *sh_vars_request_field(const sh_request_t *r, const char *lname,
                                               size_t len);

/* Whether the configuration uses $sent_http_NAME or $upstream_http_NAME
 * is sh_http_main_t.want_fields (one per generation, immutable once
 * loaded): the response paths then keep r->sent_fields, r->up_fields. */
void sh_vars_reg_destroy(sh_var_reg_t *reg);

#endif
