/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Configuration in nginx syntax, in two layers (style.md, rule 10):
 *
 * 1. The parser turns text into a directive tree and knows no semantics:
 *    tokens, "double" and 'single' quoting with nginx's escapes (\" \' \\ \t
 *    \r \n inside quotes; outside quotes a backslash takes the next character
 *    literally), # comments, { } blocks, and `include PATTERN;` expanded in
 *    place (relative patterns resolve against the directory of the main
 *    file, as nginx's conf prefix; globs with glob(3); a glob that matches
 *    nothing is fine, a plain missing file is an error). `$variables` are
 *    kept verbatim for later expansion. Limits: 1 MiB per file, 4096 bytes
 *    per token, 64 arguments per directive, block depth 32, include depth 16.
 *
 * 2. The walker dispatches each node to the directive table of the module
 *    that owns it (nginx's ngx_command_t model): the name is looked up among
 *    the registered modules; the context and argument count are checked; the
 *    handler gets the module's conf object for the current block. Block
 *    handlers (http, server, location, ...) create child confs and call
 *    sh_conf_walk() on the children. Errors are "file:line: message".
 *
 * Runs on whichever thread loads the configuration; no globals.
 */
#ifndef SH_CONF_H
#define SH_CONF_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- tree -- */

typedef struct sh_conf_node_s sh_conf_node_t;
struct sh_conf_node_s {
    const char *file;      /* file the directive is in; owned by the doc */
    unsigned line;         /* line of the directive's first token */
    unsigned nargs;        /* number of tokens, args[0] is the name */
    char **args;           /* NUL-terminated, quotes removed, escapes done */
    unsigned char *quoted; /* quoted[i] is 1 if args[i] was quoted */
    int block;             /* 1 if the directive had a { } block */
    sh_conf_node_t *child; /* first directive inside the block, or NULL */
    sh_conf_node_t *next;  /* next directive at the same level, or NULL */
};

typedef struct sh_conf_doc_s sh_conf_doc_t;

#define SH_CONF_ERRLEN 512

/*
 * Parse the file at path (and what it includes). On success returns 0 and
 * *out owns the tree. On failure returns a negative SH_E* code and writes
 * "file:line: message" (or "path: strerror" for an unreadable main file)
 * into err (SH_CONF_ERRLEN bytes); *out is left NULL.
 */
int sh_conf_parse_file(const char *path, sh_conf_doc_t **out, char *err);

/*
 * Parse text[0..len) named `name` in error messages; includes resolve
 * against include_dir (NULL: the current directory). Same results as above.
 */
int sh_conf_parse_buffer(const char *name, const char *text, size_t len, const char *include_dir,
                         sh_conf_doc_t **out, char *err);

/* First top-level directive, or NULL for an empty document. */
const sh_conf_node_t *sh_conf_doc_root(const sh_conf_doc_t *doc);
/* The names of the files read (the main file, then each include as it was
 * read), into out[0..max); returns how many there are (may exceed max). */
unsigned sh_conf_doc_files(const sh_conf_doc_t *doc, const char **out, unsigned max);
/* Free the tree. NULL is a no-op. */
void sh_conf_doc_destroy(sh_conf_doc_t *doc);

/* ------------------------------------------------------------- schema -- */

/* Contexts a directive may appear in (bits of sh_conf_cmd_t.type). */
#define SH_CTX_MAIN         0x00000001u
#define SH_CTX_EVENTS       0x00000002u
#define SH_CTX_HTTP         0x00000004u
#define SH_CTX_SERVER       0x00000008u
#define SH_CTX_LOCATION     0x00000010u
#define SH_CTX_UPSTREAM     0x00000020u
#define SH_CTX_CLUSTER      0x00000040u
#define SH_CTX_LIMIT_EXCEPT 0x00000080u
#define SH_CTX_IF           0x00000100u
#define SH_CTX_MAP          0x00000200u /* inside map { } (handled by map itself) */
#define SH_CTX_TYPES        0x00000400u /* inside types { } (handled by types) */
#define SH_CTX_MASK         0x0000ffffu

/* Argument counts (not counting the name), as nginx's NGX_CONF_TAKE*. */
#define SH_CONF_NOARGS   0x00010000u
#define SH_CONF_TAKE1    0x00020000u
#define SH_CONF_TAKE2    0x00040000u
#define SH_CONF_TAKE3    0x00080000u
#define SH_CONF_TAKE4    0x00100000u
#define SH_CONF_TAKE5    0x00200000u
#define SH_CONF_TAKE6    0x00400000u
#define SH_CONF_TAKE7    0x00800000u
#define SH_CONF_TAKE12   (SH_CONF_TAKE1 | SH_CONF_TAKE2)
#define SH_CONF_TAKE13   (SH_CONF_TAKE1 | SH_CONF_TAKE3)
#define SH_CONF_TAKE23   (SH_CONF_TAKE2 | SH_CONF_TAKE3)
#define SH_CONF_TAKE123  (SH_CONF_TAKE1 | SH_CONF_TAKE2 | SH_CONF_TAKE3)
#define SH_CONF_TAKE1234 (SH_CONF_TAKE123 | SH_CONF_TAKE4)
#define SH_CONF_TAKE34   (SH_CONF_TAKE3 | SH_CONF_TAKE4)
#define SH_CONF_1MORE    0x01000000u /* one or more */
#define SH_CONF_2MORE    0x02000000u /* two or more */
#define SH_CONF_ANY      0x04000000u /* any number, zero included */
#define SH_CONF_FLAG     0x08000000u /* exactly one: on | off */
#define SH_CONF_BLOCK    0x10000000u /* must have a { } block; without it, must not */

/* Unset sentinels for create/merge (nginx's NGX_CONF_UNSET*). */
#define SH_CONF_UNSET      (-1)
#define SH_CONF_UNSET_SIZE ((size_t)-1)
#define SH_CONF_UNSET_MSEC ((uint64_t)-1)
#define SH_CONF_MERGE(conf, prev, def)                                                             \
    do {                                                                                           \
        if ((conf) == SH_CONF_UNSET)                                                               \
            (conf) = ((prev) == SH_CONF_UNSET) ? (def) : (prev);                                   \
    } while (0)
#define SH_CONF_MERGE_SIZE(conf, prev, def)                                                        \
    do {                                                                                           \
        if ((conf) == SH_CONF_UNSET_SIZE)                                                          \
            (conf) = ((prev) == SH_CONF_UNSET_SIZE) ? (def) : (prev);                              \
    } while (0)
#define SH_CONF_MERGE_MSEC(conf, prev, def)                                                        \
    do {                                                                                           \
        if ((conf) == SH_CONF_UNSET_MSEC)                                                          \
            (conf) = ((prev) == SH_CONF_UNSET_MSEC) ? (def) : (prev);                              \
    } while (0)
#define SH_CONF_MERGE_PTR(conf, prev, def)                                                         \
    do {                                                                                           \
        if ((conf) == NULL)                                                                        \
            (conf) = ((prev) == NULL) ? (def) : (prev);                                            \
    } while (0)

typedef struct sh_conf_s sh_conf_t;
typedef struct sh_conf_cmd_s sh_conf_cmd_t;
typedef struct sh_conf_module_s sh_conf_module_t;

/*
 * A directive handler. cf->node is the directive being set; conf is the
 * owning module's conf object for the current block (NULL if the block
 * made none for that module). Returns 0, or a negative code after
 * sh_conf_error() wrote the message.
 */
typedef int (*sh_conf_set_pt)(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf);

struct sh_conf_cmd_s {
    const char *name; /* NULL ends a table */
    uint32_t type;    /* SH_CTX_* | SH_CONF_* */
    sh_conf_set_pt set;
    size_t offset;    /* for the generic setters: field offset in conf */
    const void *post; /* setter-specific (enum table, bounds, ...) */
};

struct sh_conf_module_s {
    const char *name;
    const sh_conf_cmd_t *cmds; /* table ending with a NULL name, or NULL */
    /* Main-level conf: created before the walk (NULL: none), checked and
     * completed after it (init_main may fail with sh_conf_error), freed with
     * the configuration. All three may be NULL. */
    void *(*create_main)(void);
    int (*init_main)(sh_conf_t *cf, void *conf);
    void (*destroy_main)(void *conf);
    const void *ctx; /* kind-specific table, e.g. the HTTP module's levels */
    unsigned index;  /* set by sh_conf_init(): position in the list */
};

/* The walk state handed to every handler. */
struct sh_conf_s {
    const sh_conf_node_t *node; /* directive being handled */
    uint32_t ctx;               /* SH_CTX_* bit of the current block */
    void **confs;               /* current block's confs, by module index */
    sh_conf_module_t *const *modules;
    unsigned nmodules;
    const char *prefix;       /* -p prefix, ends with '/' (or "") */
    const char *conf_dir;     /* directory of the main file, ends with '/' */
    void *user;               /* the owner's whole-configuration object */
    int warnings;             /* number of sh_conf_warn() calls */
    int warn_fd;              /* where warnings go (default 2) */
    char *warn_buf;           /* if set, warnings are also appended here, one */
    size_t warn_size;         /* "file:line: message\n" each, truncated to fit */
    size_t warn_used;         /* (a reload reports them in its answer) */
    char err[SH_CONF_ERRLEN]; /* "file:line: message" after a failure */
};

/*
 * Prepare cf for walking with the given module list (indices are assigned
 * in order). prefix and conf_dir are copied by pointer and must outlive cf.
 */
void sh_conf_init(sh_conf_t *cf, sh_conf_module_t *const *modules, unsigned n, const char *prefix,
                  const char *conf_dir, void *user);

/*
 * Dispatch every directive from `first` along its `next` chain in context
 * ctx, with confs[module->index] as each module's conf. Restores cf->node,
 * cf->ctx and cf->confs before returning. 0 or negative with cf->err set.
 */
int sh_conf_walk(sh_conf_t *cf, const sh_conf_node_t *first, uint32_t ctx, void **confs);

/* Write "file:line: message" for cf->node into cf->err; returns SH_EINVAL. */
int sh_conf_error(sh_conf_t *cf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print "shoal: [warn] file:line: message" to cf->warn_fd; counts it. */
void sh_conf_warn(sh_conf_t *cf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* -------------------------------------------------- generic setters -- */
/* Each stores into (char *)conf + cmd->offset and reports "is duplicate"
 * when the field is already set (not the unset sentinel). */

int sh_conf_set_flag(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf); /* int: on=1 off=0 */
int sh_conf_set_num(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf);  /* int, >= 0 */
int sh_conf_set_size(sh_conf_t *cf, const sh_conf_cmd_t *cmd,
                     void *conf); /* size_t: 512 8k 10m 1g */
int sh_conf_set_msec(sh_conf_t *cf, const sh_conf_cmd_t *cmd,
                     void *conf); /* uint64_t ms: 500ms 30s 1m 1h 1d 1y "1h 30m"; bare number = s */
int sh_conf_set_str(sh_conf_t *cf, const sh_conf_cmd_t *cmd,
                    void *conf); /* char *, sh_strdup'd, must be NULL */
int sh_conf_set_enum(sh_conf_t *cf, const sh_conf_cmd_t *cmd,
                     void *conf); /* int; post: const sh_conf_enum_t[] ending with NULL name */
/* A file named in the configuration, as nginx resolves it: path itself
 * when absolute (or without a main file's directory), else relative to
 * the directory of the main configuration file (cf->conf_dir). A copy
 * the caller frees. */
char *sh_conf_full_path(const sh_conf_t *cf, const char *path);
/* Accept and ignore (e.g. `use epoll`, `sendfile on`), silently. */
int sh_conf_set_ignore(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf);
/* Accept, warn "\"NAME\" is not supported yet, ignored" with file:line; when
 * cmd->post is a string, " (POST)" follows, saying what is ignored. */
int sh_conf_set_unsupported(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf);
/* Refuse a directive that restricts access or traffic and is not
 * implemented yet (fail closed): "file:line: \"NAME\" is not implemented
 * yet: POST, ..." where cmd->post says what would go unenforced. */
int sh_conf_set_refused(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf);

typedef struct {
    const char *name;
    int value;
} sh_conf_enum_t;

/* Value parsers shared with handlers that parse parameters themselves
 * (e.g. `fail_timeout=10s`). Return 0 or SH_EINVAL. */
int sh_conf_parse_size(const char *s, size_t *out);
int sh_conf_parse_msec(const char *s, uint64_t *out);
int sh_conf_parse_int(const char *s, int *out); /* decimal, >= 0, fits int */

#endif
