/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP configuration: the `http`, `server` and `location` levels in
 * nginx's model. Every HTTP module (sh_http_module_t in its sh_conf_module_t
 * ctx) may create a conf object per level and merge a location's from its
 * parent's after the walk. While walking an HTTP block, cf->confs is that
 * level's loc-conf array (by module index) and cf->user points at the
 * sh_http_block_t of the level, so server-level directives (listen,
 * server_name) reach their server and main-level ones (upstream) reach the
 * http main conf.
 *
 * Once loaded, everything here is immutable and shared by all workers.
 */
#ifndef SH_HTTP_CONF_H
#define SH_HTTP_CONF_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/conf.h"

#define SH_HTTP_MODULE_MAGIC 0x48545450u /* "HTTP" */

typedef struct sh_http_main_s sh_http_main_t;
typedef struct sh_http_srv_s sh_http_srv_t;
typedef struct sh_http_loc_s sh_http_loc_t;
typedef struct sh_pipeline_s sh_pipeline_t; /* node/pipeline.h */
typedef struct sh_filter_s sh_filter_t;

typedef struct {
    uint32_t magic; /* SH_HTTP_MODULE_MAGIC */
    void *(*create_main)(void);
    void (*destroy_main)(void *conf);
    /* After the http block is walked (all servers known): final checks. */
    int (*init_main)(sh_conf_t *cf, sh_http_main_t *main, void *conf);
    void *(*create_loc)(void);
    /* Fill unset fields of conf from parent (which is already merged). */
    int (*merge_loc)(sh_conf_t *cf, void *parent, void *conf);
    void (*destroy_loc)(void *conf);
    /* Before the http block is walked: register the module's variables
     * (sh_vars_define, node/vars.h), so directives can use them. */
    int (*preconfiguration)(sh_conf_t *cf, sh_http_main_t *main);
    /* After every level is merged and every init_main ran: register
     * phase handlers, filters (node/pipeline.h) into main->pipeline. */
    int (*postconfiguration)(sh_conf_t *cf, sh_http_main_t *main);
} sh_http_module_t;

/* What the walker's cf->user points at inside http blocks. */
typedef struct {
    sh_http_main_t *main;
    sh_http_srv_t *srv; /* NULL at the http level */
    sh_http_loc_t *loc; /* the level's location (the http and server levels have one too) */
} sh_http_block_t;

typedef struct {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char text[64]; /* "127.0.0.1:8080" */
    int backlog;
    unsigned default_server : 1;
    unsigned ssl : 1;
    unsigned http2 : 1;
    unsigned reuseport : 1;
    unsigned proxy_protocol : 1; /* a PROXY protocol header precedes the stream */
} sh_listen_opt_t;

/* One listening address and the servers on it, in config order. */
typedef struct {
    sh_listen_opt_t opt;
    sh_http_srv_t **servers;
    size_t nservers;
    sh_http_srv_t *default_srv;
} sh_http_addr_t;

enum sh_loc_match {
    SH_LOC_PREFIX = 0,
    SH_LOC_EXACT,          /* = */
    SH_LOC_PREFERRED,      /* ^~ */
    SH_LOC_REGEX,          /* ~ */
    SH_LOC_REGEX_CASELESS, /* ~* */
    SH_LOC_NAMED,          /* @name: reached only by error_page / try_files */
    SH_LOC_IF              /* an `if` block's implicit location (rewrite module): entered when its
                              condition holds, never by the router; named as its parent */
};

typedef struct sh_regex_s sh_regex_t;
typedef struct sh_var_reg_s sh_var_reg_t;

/* A complex value: text with $variables, compiled once at load time. */
typedef struct sh_cv_s sh_cv_t;

struct sh_http_loc_s {
    char *name; /* the location's pattern ("" for the http/server levels) */
    size_t name_len;
    int match; /* enum sh_loc_match */
    const char *file;
    unsigned line;
    sh_http_srv_t *srv;
    sh_http_loc_t *parent;
    sh_regex_t *regex;        /* ~ and ~* locations: compiled (and JIT-ed) at load */
    sh_http_loc_t **children; /* nested locations, in config order */
    size_t nchildren;
    void **confs;                /* per module index; NULL for modules without loc confs */
    const sh_filter_t **filters; /* header filters that apply here (built after the merge) */
    unsigned nfilters;
    unsigned internal : 1; /* `internal`: reached only by internal redirects */
};

struct sh_http_srv_s {
    char **names;         /* server_name values, lower-cased (regexes as written) */
    sh_regex_t **name_re; /* name_re[i]: names[i]'s regex ("~..."), else NULL */
    size_t nnames;
    sh_listen_opt_t *listens;
    size_t nlistens;
    sh_http_loc_t *loc; /* server-level conf and root of the location tree */
    const char *file;
    unsigned line;
};

struct sh_http_main_s {
    sh_http_loc_t *loc; /* http-level conf */
    sh_http_srv_t **servers;
    size_t nservers;
    sh_http_addr_t *addrs; /* distinct listen addresses */
    size_t naddrs;
    void **main_confs;  /* per module index: HTTP modules' main confs */
    sh_var_reg_t *vars; /* named variables: map results, regex named captures */
    sh_conf_module_t *const *modules;
    unsigned nmodules;
    sh_pipeline_t *pipeline; /* phase handlers and filters of this generation */
    int want_fields;         /* $sent_http_* / $upstream_http_* are used: keep the fields */
};

/* Settings of the http core module, at every level. */
typedef struct {
    uint64_t keepalive_timeout;
    int keepalive_requests;
    uint64_t client_header_timeout;
    uint64_t client_body_timeout;
    uint64_t send_timeout;
    size_t client_max_body_size;
    size_t client_body_buffer_size; /* request bodies up to this are read whole first */
    size_t client_header_buffer_size;
    size_t large_header_buffer_size; /* large_client_header_buffers: size */
    int large_header_buffers;        /* large_client_header_buffers: number */
    int server_tokens;
    int ignore_invalid_headers;
} sh_http_core_loc_t;

extern sh_conf_module_t sh_http_core_module;

/* The http main conf of the loaded configuration (NULL without http {}). */
sh_http_main_t *sh_http_main(void **main_confs);

/* A module's loc conf in a location. */
static inline void *sh_http_loc_conf(const sh_http_loc_t *loc, const sh_conf_module_t *m)
{
    return loc->confs[m->index];
}
/* A module's main conf (HTTP-level). */
static inline void *sh_http_main_conf(const sh_http_main_t *main, const sh_conf_module_t *m)
{
    return main->main_confs[m->index];
}

/* Routing, for the workers (read-only; any thread).
 *
 * The server for a Host (port and a trailing dot stripped; NULL or empty
 * when the request has none), in nginx's order: exact name, the longest
 * wildcard starting with `*` (or `.name`), the longest wildcard ending
 * with `*`, then `~regex` names in config order; names compare
 * case-insensitively; otherwise the address's default server. When
 * name_re is not NULL it receives the regex that selected the server
 * (NULL when none did), for $1..$9 and named captures. */
sh_http_srv_t *sh_http_find_server_ex(const sh_http_addr_t *addr, const char *host, size_t len,
                                      const sh_regex_t **name_re);
sh_http_srv_t *sh_http_find_server(const sh_http_addr_t *addr, const char *host, size_t len);

/* The location for a request path (the raw path, up to '?'), in nginx's
 * order: `=` exact; else the longest prefix, remembered (its nested
 * locations are searched first); unless it is `^~`, the `~`/`~*` regexes
 * in config order (each with its nested locations); else the remembered
 * prefix. Matching is against the normalized URI ($uri: see below); a
 * path that cannot be normalized is matched as it is. Never NULL: the
 * server level answers when no location matches. */
sh_http_loc_t *sh_http_find_location(const sh_http_srv_t *srv, const char *path, size_t len);
/* The same on an already normalized URI. */
sh_http_loc_t *sh_http_find_location_uri(const sh_http_srv_t *srv, const char *uri, size_t len);
/* The implicit location of an `if` block at the level being walked
 * (cf->user), for the rewrite module: created with every module's conf,
 * added to the level's children (merged from it, never routed to). */
sh_http_loc_t *sh_http_loc_create_if(sh_conf_t *cf);
/* The location whose name and match an `if` location stands for (itself
 * for others): its first ancestor that is not an `if`. */
const sh_http_loc_t *sh_http_loc_real(const sh_http_loc_t *loc);

/* The server's named location `@name` (name with its '@'), or NULL. */
sh_http_loc_t *sh_http_find_named(const sh_http_srv_t *srv, const char *name, size_t len);

/* nginx's URI normalization ($uri): percent-decoding (%2F included),
 * merging of slashes, "." and ".." segments resolved. out needs len
 * bytes (the result is never longer). Returns 0 and *outlen, or SH_EINVAL
 * for a path that does not start with '/', a decoded NUL, or ".." above
 * the root (nginx answers 400 for both). */
int sh_http_normalize_uri(const char *in, size_t len, char *out, size_t *outlen);

/* Parse "addr:port", "port", "[v6]:port", "*:port", "localhost:port". */
int sh_parse_addr(const char *s, int default_port, struct sockaddr_storage *ss, socklen_t *len);
void sh_addr_text(const struct sockaddr *sa, char *out, size_t outlen);

#endif
