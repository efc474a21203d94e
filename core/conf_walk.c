/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The configuration walker and the generic setters (conf.h, layer 2), on
 * nginx's ngx_conf_handler() model: each node's name is looked up in the
 * directive tables of the registered modules, in module order; the first
 * entry with that name whose context bits include the current block's is
 * checked for the block/non-block shape and the argument count, then its
 * handler runs with the module's conf for the block. A name that exists
 * only in other contexts is "not allowed here", a name no module knows is
 * "unknown". Lookup is a linear scan: it runs once per directive at load
 * time over a few hundred entries.
 *
 * The generic setters store into (char *)conf + cmd->offset, refuse a
 * second setting of the same field ("is duplicate", found through the unset
 * sentinel) and parse values as nginx does: sizes with k/m/g, times with
 * ms s m h d w M y in decreasing order ("1h 30m"), a bare number meaning
 * seconds. Every value is checked for overflow; no value may be the unset
 * sentinel itself.
 *
 * Runs on whichever thread loads the configuration; no globals.
 */
#include "core/conf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/err.h"

/* nginx's argument_number[]: the bit for 0..7 arguments after the name. */
static const uint32_t argument_number[] = {
    SH_CONF_NOARGS, SH_CONF_TAKE1, SH_CONF_TAKE2, SH_CONF_TAKE3,
    SH_CONF_TAKE4,  SH_CONF_TAKE5, SH_CONF_TAKE6, SH_CONF_TAKE7,
};

void sh_conf_init(sh_conf_t *cf, sh_conf_module_t *const *modules, unsigned n, const char *prefix,
                  const char *conf_dir, void *user)
{
    memset(cf, 0, sizeof(*cf));
    cf->modules = modules;
    cf->nmodules = n;
    cf->prefix = prefix != NULL ? prefix : "";
    cf->conf_dir = conf_dir != NULL ? conf_dir : "";
    cf->user = user;
    cf->warn_fd = 2;
    for (unsigned i = 0; i < n; i++)
        modules[i]->index = i;
}

static void vformat(sh_conf_t *cf, char *buf, size_t size, const char *fmt, va_list ap)
{
    int n = 0;
    if (cf->node != NULL)
        n = snprintf(buf, size, "%s:%u: ", cf->node->file, cf->node->line);
    if (n < 0)
        n = 0;
    if ((size_t)n < size)
        vsnprintf(buf + n, size - (size_t)n, fmt, ap);
}

int sh_conf_error(sh_conf_t *cf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vformat(cf, cf->err, sizeof(cf->err), fmt, ap);
    va_end(ap);
    return SH_EINVAL;
}

void sh_conf_warn(sh_conf_t *cf, const char *fmt, ...)
{
    static const char head[] = "shoal: [warn] ";
    char line[SH_CONF_ERRLEN + sizeof(head) + 1];
    memcpy(line, head, sizeof(head) - 1);
    va_list ap;
    va_start(ap, fmt);
    /* Leave room for the newline so the line is one write(2). */
    vformat(cf, line + sizeof(head) - 1, sizeof(line) - sizeof(head), fmt, ap);
    va_end(ap);
    size_t n = strlen(line);
    line[n++] = '\n';
    cf->warnings++;
    if (cf->warn_buf != NULL && cf->warn_used + 1 < cf->warn_size) {
        size_t room = cf->warn_size - cf->warn_used - 1, k = n - (sizeof(head) - 1);
        if (k > room)
            k = room;
        memcpy(cf->warn_buf + cf->warn_used, line + sizeof(head) - 1, k);
        cf->warn_used += k;
        cf->warn_buf[cf->warn_used] = '\0';
    }
    if (cf->warn_fd >= 0) {
        ssize_t w = write(cf->warn_fd, line, n);
        (void)w; /* a lost warning must not fail the load */
    }
}

/* Is the node's argument count one the command accepts? */
static int args_ok(const sh_conf_cmd_t *cmd, unsigned nargs)
{
    unsigned n = nargs - 1; /* after the name */
    if (cmd->type & SH_CONF_ANY)
        return 1;
    if (cmd->type & SH_CONF_FLAG)
        return n == 1;
    if (cmd->type & SH_CONF_1MORE)
        return n >= 1;
    if (cmd->type & SH_CONF_2MORE)
        return n >= 2;
    if (n >= sizeof(argument_number) / sizeof(argument_number[0]))
        return 0;
    return (cmd->type & argument_number[n]) != 0;
}

static int dispatch(sh_conf_t *cf, const sh_conf_node_t *n)
{
    const char *name = n->args[0];
    int found = 0;
    for (unsigned m = 0; m < cf->nmodules; m++) {
        const sh_conf_module_t *mod = cf->modules[m];
        if (mod->cmds == NULL)
            continue;
        for (const sh_conf_cmd_t *cmd = mod->cmds; cmd->name != NULL; cmd++) {
            if (strcmp(cmd->name, name) != 0)
                continue;
            found = 1;
            /* Another module may own the same name in this context. */
            if (!(cmd->type & cf->ctx & SH_CTX_MASK))
                continue;
            if (!(cmd->type & SH_CONF_BLOCK) && n->block)
                return sh_conf_error(cf, "directive \"%s\" is not terminated by \";\"", name);
            if ((cmd->type & SH_CONF_BLOCK) && !n->block)
                return sh_conf_error(cf, "directive \"%s\" has no opening \"{\"", name);
            if (!args_ok(cmd, n->nargs))
                return sh_conf_error(cf, "invalid number of arguments in \"%s\" directive", name);
            if (cmd->set == NULL)
                return 0;
            void *conf = cf->confs != NULL ? cf->confs[mod->index] : NULL;
            cf->err[0] = '\0';
            int rc = cmd->set(cf, cmd, conf);
            if (rc < 0) {
                /* A handler that forgot the message still names the spot.
                 * A nested walk restored cf->node, so this is our node. */
                if (cf->err[0] == '\0')
                    sh_conf_error(cf, "\"%s\" directive failed (%s)", name, sh_strerror(rc));
                return rc;
            }
            return 0;
        }
    }
    if (found)
        return sh_conf_error(cf, "\"%s\" directive is not allowed here", name);
    return sh_conf_error(cf, "unknown directive \"%s\"", name);
}

int sh_conf_walk(sh_conf_t *cf, const sh_conf_node_t *first, uint32_t ctx, void **confs)
{
    const sh_conf_node_t *saved_node = cf->node;
    uint32_t saved_ctx = cf->ctx;
    void **saved_confs = cf->confs;
    int rc = 0;

    cf->ctx = ctx;
    cf->confs = confs;
    for (const sh_conf_node_t *n = first; n != NULL; n = n->next) {
        cf->node = n;
        /* Restore the walk state a nested walk may have left. */
        cf->ctx = ctx;
        cf->confs = confs;
        rc = dispatch(cf, n);
        if (rc < 0)
            break;
        rc = 0;
    }
    cf->node = saved_node;
    cf->ctx = saved_ctx;
    cf->confs = saved_confs;
    return rc;
}

/* ------------------------------------------------------ value parsers -- */

int sh_conf_parse_int(const char *s, int *out)
{
    if (s == NULL || *s == '\0')
        return SH_EINVAL;
    long long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return SH_EINVAL;
        v = v * 10 + (*p - '0');
        if (v > 2147483647LL)
            return SH_EINVAL;
    }
    *out = (int)v;
    return 0;
}

/* Largest size or time accepted: far from the unset sentinels. */
#define SIZE_LIMIT (SIZE_MAX / 2)
#define MSEC_LIMIT ((uint64_t)INT64_MAX)

int sh_conf_parse_size(const char *s, size_t *out)
{
    if (s == NULL)
        return SH_EINVAL;
    size_t len = strlen(s);
    if (len == 0)
        return SH_EINVAL;
    size_t scale = 1;
    switch (s[len - 1]) {
    case 'k':
    case 'K':
        scale = 1024;
        len--;
        break;
    case 'm':
    case 'M':
        scale = 1024 * 1024;
        len--;
        break;
    case 'g':
    case 'G':
        scale = (size_t)1024 * 1024 * 1024;
        len--;
        break;
    default:
        break;
    }
    if (len == 0)
        return SH_EINVAL;
    size_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return SH_EINVAL;
        size_t d = (size_t)(s[i] - '0');
        if (v > (SIZE_LIMIT - d) / 10)
            return SH_EINVAL;
        v = v * 10 + d;
    }
    if (v > SIZE_LIMIT / scale)
        return SH_EINVAL;
    *out = v * scale;
    return 0;
}

/*
 * Units in the order they must appear, largest first. A time is groups of
 * digits with a unit, optionally separated by spaces, each unit smaller
 * than the one before; a last group without a unit is seconds.
 */
enum { U_YEAR, U_MONTH, U_WEEK, U_DAY, U_HOUR, U_MIN, U_SEC, U_MSEC, U_NONE };
static const uint64_t unit_ms[] = {
    [U_YEAR] = 365ull * 24 * 3600 * 1000,
    [U_MONTH] = 30ull * 24 * 3600 * 1000,
    [U_WEEK] = 7ull * 24 * 3600 * 1000,
    [U_DAY] = 24ull * 3600 * 1000,
    [U_HOUR] = 3600ull * 1000,
    [U_MIN] = 60ull * 1000,
    [U_SEC] = 1000,
    [U_MSEC] = 1,
};

int sh_conf_parse_msec(const char *s, uint64_t *out)
{
    if (s == NULL)
        return SH_EINVAL;
    const char *p = s;
    uint64_t total = 0;
    int last = -1; /* unit of the previous group */
    int groups = 0;
    while (*p != '\0') {
        if (*p < '0' || *p > '9')
            return SH_EINVAL;
        uint64_t v = 0;
        while (*p >= '0' && *p <= '9') {
            uint64_t d = (uint64_t)(*p - '0');
            if (v > (MSEC_LIMIT - d) / 10)
                return SH_EINVAL;
            v = v * 10 + d;
            p++;
        }
        int unit;
        switch (*p) {
        case 'y':
            unit = U_YEAR;
            break;
        case 'M':
            unit = U_MONTH;
            break;
        case 'w':
            unit = U_WEEK;
            break;
        case 'd':
            unit = U_DAY;
            break;
        case 'h':
            unit = U_HOUR;
            break;
        case 'm':
            if (p[1] == 's') {
                unit = U_MSEC;
                p++;
            } else {
                unit = U_MIN;
            }
            break;
        case 's':
            unit = U_SEC;
            break;
        case ' ':
        case '\0':
            unit = U_NONE; /* bare number: seconds, and only last */
            break;
        default:
            return SH_EINVAL;
        }
        if (unit != U_NONE)
            p++;
        while (*p == ' ')
            p++;
        if (unit == U_NONE) {
            if (*p != '\0' || last >= U_SEC)
                return SH_EINVAL;
            unit = U_SEC;
        } else if (unit <= last) {
            return SH_EINVAL; /* "30s 1h", "1h 1h" */
        }
        if (v > MSEC_LIMIT / unit_ms[unit])
            return SH_EINVAL;
        v *= unit_ms[unit];
        if (total > MSEC_LIMIT - v)
            return SH_EINVAL;
        total += v;
        last = unit;
        groups++;
    }
    if (groups == 0)
        return SH_EINVAL;
    *out = total;
    return 0;
}

/* ---------------------------------------------------- generic setters -- */

/* The checks every generic setter shares: one argument, a conf to set. */
static int setter_check(sh_conf_t *cf, void *conf)
{
    if (cf->node == NULL || cf->node->nargs != 2)
        return sh_conf_error(cf, "invalid number of arguments in \"%s\" directive",
                             cf->node != NULL ? cf->node->args[0] : "?");
    if (conf == NULL)
        return sh_conf_error(cf, "\"%s\" directive is not allowed here", cf->node->args[0]);
    return 0;
}

int sh_conf_set_flag(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    int rc = setter_check(cf, conf);
    if (rc != 0)
        return rc;
    int *fp = (int *)((char *)conf + cmd->offset);
    const char *name = cf->node->args[0], *v = cf->node->args[1];
    if (*fp != SH_CONF_UNSET)
        return sh_conf_error(cf, "\"%s\" directive is duplicate", name);
    if (strcasecmp(v, "on") == 0)
        *fp = 1;
    else if (strcasecmp(v, "off") == 0)
        *fp = 0;
    else
        return sh_conf_error(
            cf, "invalid value \"%s\" in \"%s\" directive, it must be \"on\" or \"off\"", v, name);
    return 0;
}

int sh_conf_set_num(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    int rc = setter_check(cf, conf);
    if (rc != 0)
        return rc;
    int *fp = (int *)((char *)conf + cmd->offset);
    const char *name = cf->node->args[0], *v = cf->node->args[1];
    if (*fp != SH_CONF_UNSET)
        return sh_conf_error(cf, "\"%s\" directive is duplicate", name);
    int n;
    if (sh_conf_parse_int(v, &n) != 0)
        return sh_conf_error(cf, "invalid number \"%s\" in \"%s\" directive", v, name);
    *fp = n;
    return 0;
}

int sh_conf_set_size(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    int rc = setter_check(cf, conf);
    if (rc != 0)
        return rc;
    size_t *fp = (size_t *)((char *)conf + cmd->offset);
    const char *name = cf->node->args[0], *v = cf->node->args[1];
    if (*fp != SH_CONF_UNSET_SIZE)
        return sh_conf_error(cf, "\"%s\" directive is duplicate", name);
    size_t n;
    if (sh_conf_parse_size(v, &n) != 0)
        return sh_conf_error(cf, "invalid value \"%s\" in \"%s\" directive", v, name);
    *fp = n;
    return 0;
}

int sh_conf_set_msec(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    int rc = setter_check(cf, conf);
    if (rc != 0)
        return rc;
    uint64_t *fp = (uint64_t *)((char *)conf + cmd->offset);
    const char *name = cf->node->args[0], *v = cf->node->args[1];
    if (*fp != SH_CONF_UNSET_MSEC)
        return sh_conf_error(cf, "\"%s\" directive is duplicate", name);
    uint64_t n;
    if (sh_conf_parse_msec(v, &n) != 0)
        return sh_conf_error(cf, "invalid value \"%s\" in \"%s\" directive", v, name);
    *fp = n;
    return 0;
}

int sh_conf_set_str(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    int rc = setter_check(cf, conf);
    if (rc != 0)
        return rc;
    char **fp = (char **)((char *)conf + cmd->offset);
    if (*fp != NULL)
        return sh_conf_error(cf, "\"%s\" directive is duplicate", cf->node->args[0]);
    *fp = sh_strdup(cf->node->args[1]);
    return 0;
}

char *sh_conf_full_path(const sh_conf_t *cf, const char *path)
{
    if (path[0] == '/' || cf->conf_dir == NULL || cf->conf_dir[0] == '\0')
        return sh_strdup(path);
    size_t a = strlen(cf->conf_dir), b = strlen(path);
    char *s = sh_malloc(a + b + 1);
    memcpy(s, cf->conf_dir, a);
    memcpy(s + a, path, b + 1);
    return s;
}

int sh_conf_set_enum(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    int rc = setter_check(cf, conf);
    if (rc != 0)
        return rc;
    int *fp = (int *)((char *)conf + cmd->offset);
    const char *name = cf->node->args[0], *v = cf->node->args[1];
    if (*fp != SH_CONF_UNSET)
        return sh_conf_error(cf, "\"%s\" directive is duplicate", name);
    for (const sh_conf_enum_t *e = cmd->post; e != NULL && e->name != NULL; e++) {
        if (strcasecmp(e->name, v) == 0) {
            *fp = e->value;
            return 0;
        }
    }
    return sh_conf_error(cf, "invalid value \"%s\" in \"%s\" directive", v, name);
}

int sh_conf_set_ignore(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    return 0;
}

int sh_conf_set_unsupported(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    if (cmd->post != NULL)
        sh_conf_warn(cf, "\"%s\" is not supported yet, ignored (%s)", cf->node->args[0],
                     (const char *)cmd->post);
    else
        sh_conf_warn(cf, "\"%s\" is not supported yet, ignored", cf->node->args[0]);
    return 0;
}

int sh_conf_set_refused(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    return sh_conf_error(cf,
                         "\"%s\" is not implemented yet: %s, so the configuration is refused "
                         "rather than served without it",
                         cf->node->args[0],
                         cmd->post ? (const char *)cmd->post : "it restricts access");
}
