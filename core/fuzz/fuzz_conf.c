/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the configuration parser and walker (conf.h).
 *
 * Each input is parsed with sh_conf_parse_buffer(); includes resolve in a
 * private temporary directory holding three fixed files (a plain one, one
 * that includes itself, one with a syntax error), so the include code runs
 * without reading the machine's files. In an input that has the word
 * "include", every '/' becomes '_' first: with no '/' a pattern can only
 * name something inside the directory, or the directory itself (`..`,
 * which is refused as not a regular file). Any other input is parsed as is.
 *
 * The tree is checked (file and line set, at least the name, arguments
 * within the limits, no children without a block, depth within the limit),
 * then walked with a tiny schema that exercises every generic setter and a
 * nested block walk. Errors must be NUL-terminated and start with a file
 * name. Everything is freed, so LeakSanitizer checks ownership too.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/conf.h"
#include "core/err.h"

#define NAME "fuzz.conf"

static char tmpdir[64];
static char tmpfiles[3][128];

static void cleanup(void)
{
    for (int i = 0; i < 3; i++)
        unlink(tmpfiles[i]);
    rmdir(tmpdir);
}

static void write_file(int i, const char *name, const char *text)
{
    snprintf(tmpfiles[i], sizeof(tmpfiles[i]), "%s/%s", tmpdir, name);
    FILE *f = fopen(tmpfiles[i], "w");
    if (f == NULL)
        abort();
    fputs(text, f);
    fclose(f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    strcpy(tmpdir, "/tmp/fuzz_conf.XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        abort();
    write_file(0, "a.conf", "a 1;\nhttp {\n  server { flag on; size 8k; }\n}\n");
    write_file(1, "loop.conf", "x;\ninclude loop.conf;\n");
    write_file(2, "bad.conf", "y {\n}\n}\n");
    atexit(cleanup);
    return 0;
}

/* ------------------------------------------------------------- schema -- */

typedef struct {
    int flag;
    int num;
    int mode;
    size_t size;
    uint64_t msec;
    char *str;
} fconf_t;

static void fconf_init(fconf_t *c)
{
    c->flag = SH_CONF_UNSET;
    c->num = SH_CONF_UNSET;
    c->mode = SH_CONF_UNSET;
    c->size = SH_CONF_UNSET_SIZE;
    c->msec = SH_CONF_UNSET_MSEC;
    c->str = NULL;
}

static const sh_conf_enum_t modes[] = {{"a", 1}, {"b", 2}, {NULL, 0}};

static int block(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    /* A fresh conf per block, as a module's create would make. */
    fconf_t child;
    fconf_init(&child);
    void *confs[2] = {NULL, &child};
    uint32_t ctx = cf->ctx == SH_CTX_MAIN ? SH_CTX_HTTP : SH_CTX_SERVER;
    const sh_conf_node_t *self = cf->node;
    int rc = sh_conf_walk(cf, cf->node->child, ctx, confs);
    if (cf->node != self)
        abort();
    sh_free(child.str);
    return rc;
}

static int params(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    /* Handlers that parse key=value parameters themselves. */
    for (unsigned i = 1; i < cf->node->nargs; i++) {
        const char *a = cf->node->args[i];
        size_t sz;
        uint64_t ms;
        int n;
        if (sh_conf_parse_size(a, &sz) == 0 && sz == SH_CONF_UNSET_SIZE)
            abort();
        if (sh_conf_parse_msec(a, &ms) == 0 && ms == SH_CONF_UNSET_MSEC)
            abort();
        if (sh_conf_parse_int(a, &n) == 0 && n < 0)
            abort();
    }
    return 0;
}

#define ALL (SH_CTX_MAIN | SH_CTX_HTTP | SH_CTX_SERVER)
static const sh_conf_cmd_t cmds[] = {
    {"http", SH_CTX_MAIN | SH_CONF_BLOCK | SH_CONF_NOARGS, block, 0, NULL},
    {"server", SH_CTX_HTTP | SH_CONF_BLOCK | SH_CONF_TAKE12, block, 0, NULL},
    {"flag", ALL | SH_CONF_FLAG, sh_conf_set_flag, offsetof(fconf_t, flag), NULL},
    {"num", ALL | SH_CONF_TAKE1, sh_conf_set_num, offsetof(fconf_t, num), NULL},
    {"size", ALL | SH_CONF_TAKE1, sh_conf_set_size, offsetof(fconf_t, size), NULL},
    {"msec", ALL | SH_CONF_TAKE1, sh_conf_set_msec, offsetof(fconf_t, msec), NULL},
    {"str", ALL | SH_CONF_TAKE1, sh_conf_set_str, offsetof(fconf_t, str), NULL},
    {"mode", ALL | SH_CONF_TAKE1, sh_conf_set_enum, offsetof(fconf_t, mode), modes},
    {"p", ALL | SH_CONF_ANY, params, 0, NULL},
    {"p2", SH_CTX_SERVER | SH_CONF_2MORE, params, 0, NULL},
    {"p3", SH_CTX_HTTP | SH_CONF_TAKE23, params, 0, NULL},
    {"ign", ALL | SH_CONF_1MORE, sh_conf_set_ignore, 0, NULL},
    {"unsup", ALL | SH_CONF_ANY, sh_conf_set_unsupported, 0, NULL},
    {NULL, 0, NULL, 0, NULL},
};

static sh_conf_module_t mod = {.name = "fuzz", .cmds = cmds};
static sh_conf_module_t mod_none = {.name = "none"};

/* --------------------------------------------------------- invariants -- */

static int from_us(const char *s)
{
    return strncmp(s, NAME, strlen(NAME)) == 0 || strncmp(s, tmpdir, strlen(tmpdir)) == 0;
}

static void check_err(const char *err)
{
    if (memchr(err, '\0', SH_CONF_ERRLEN) == NULL)
        abort();
    if (!from_us(err))
        abort();
}

static void check_tree(const sh_conf_node_t *n, unsigned depth)
{
    if (depth > 32)
        abort();
    for (; n != NULL; n = n->next) {
        if (n->file == NULL || !from_us(n->file) || n->line < 1)
            abort();
        if (n->nargs < 1 || n->nargs > 65 || n->args == NULL || n->quoted == NULL)
            abort();
        for (unsigned i = 0; i < n->nargs; i++) {
            if (n->args[i] == NULL || strlen(n->args[i]) > 4096 || n->quoted[i] > 1)
                abort();
        }
        if (strcmp(n->args[0], "include") == 0)
            abort(); /* includes are expanded, never kept */
        if (!n->block && n->child != NULL)
            abort();
        check_tree(n->child, depth + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = sh_memdup(data, size);
    if (memmem(text, size, "include", 7) != NULL) {
        for (char *p = text; (p = memchr(p, '/', size - (size_t)(p - text))) != NULL; p++)
            *p = '_';
    }

    sh_conf_doc_t *doc = NULL;
    char err[SH_CONF_ERRLEN];
    memset(err, 'X', sizeof(err));
    int rc = sh_conf_parse_buffer(NAME, text, size, tmpdir, &doc, err);
    sh_free(text);
    if (rc != 0) {
        if (rc > 0 || doc != NULL)
            abort();
        check_err(err);
        return 0;
    }
    const sh_conf_node_t *root = sh_conf_doc_root(doc);
    check_tree(root, 0);

    static sh_conf_module_t *const mods[] = {&mod_none, &mod};
    sh_conf_t cf;
    sh_conf_init(&cf, mods, 2, "", "", NULL);
    cf.warn_fd = -1;
    fconf_t top;
    fconf_init(&top);
    void *confs[2] = {NULL, &top};
    memset(cf.err, 'X', sizeof(cf.err));
    rc = sh_conf_walk(&cf, root, SH_CTX_MAIN, confs);
    if (cf.node != NULL || cf.ctx != 0 || cf.confs != NULL)
        abort();
    if (rc != 0) {
        if (rc > 0)
            abort();
        check_err(cf.err);
    }
    sh_free(top.str);
    sh_conf_doc_destroy(doc);
    return 0;
}
