/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nodectl's output for people: aligned tables from the admin API's JSON.
 * Column widths come from the data; colour codes wrap already-padded cells
 * so they never shift the alignment, and are used only when the caller says
 * the output is a terminal. Scripts use --json instead, which prints the
 * API's own JSON, so nothing here is a stable format.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "nodectl.h"

#define NCOLS 7

static const char *const heads[NCOLS] = {"NAME",  "ADDRESS", "STATUS", "INCARNATION",
                                         "SINCE", "VERSION", "TAGS"};

typedef struct {
    char *cell[NCOLS];
    const char *status;
} row;

static const char *str_or(const json_t *o, const char *k, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s && *s ? s : dflt;
}

static char *dup_printf(const char *fmt, const char *a, long long b)
{
    char tmp[64];
    if (a != NULL)
        snprintf(tmp, sizeof(tmp), fmt, a);
    else
        snprintf(tmp, sizeof(tmp), fmt, b);
    return strdup(tmp);
}

/* A duration for people: 850ms, 42s, 3m07s, 5h12m, 3d04h. */
static char *since(long long ms)
{
    char tmp[32];
    if (ms < 0)
        ms = 0;
    long long s = ms / 1000;
    if (ms < 1000)
        snprintf(tmp, sizeof(tmp), "%lldms", ms);
    else if (s < 60)
        snprintf(tmp, sizeof(tmp), "%llds", s);
    else if (s < 3600)
        snprintf(tmp, sizeof(tmp), "%lldm%02llds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(tmp, sizeof(tmp), "%lldh%02lldm", s / 3600, (s % 3600) / 60);
    else
        snprintf(tmp, sizeof(tmp), "%lldd%02lldh", s / 86400, (s % 86400) / 3600);
    return strdup(tmp);
}

static char *tags_cell(const json_t *tags)
{
    size_t cap = 1, len = 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)tags, k, v)
    {
        const char *val = json_string_value(v);
        cap += strlen(k) + 2 + (val ? strlen(val) : 0);
    }
    char *s = malloc(cap + 1);
    if (s == NULL)
        abort();
    s[0] = 0;
    /* Keys sorted, so the same cluster always prints the same line. */
    size_t n = json_object_size(tags), i = 0;
    const char **keys = calloc(n ? n : 1, sizeof(*keys));
    if (keys == NULL)
        abort();
    json_object_foreach((json_t *)tags, k, v) keys[i++] = k;
    (void)v;
    for (size_t a = 1; a < n; a++)
        for (size_t b = a; b > 0 && strcmp(keys[b - 1], keys[b]) > 0; b--) {
            const char *t = keys[b];
            keys[b] = keys[b - 1];
            keys[b - 1] = t;
        }
    for (i = 0; i < n; i++) {
        const char *val = json_string_value(json_object_get(tags, keys[i]));
        len += (size_t)snprintf(s + len, cap + 1 - len, "%s%s=%s", i ? "," : "", keys[i],
                                val ? val : "");
    }
    free(keys);
    if (len == 0) {
        free(s);
        return strdup("-");
    }
    return s;
}

static const char *status_color(const char *st)
{
    if (strcmp(st, "alive") == 0)
        return "\033[32m";
    if (strcmp(st, "suspect") == 0)
        return "\033[33m";
    if (strcmp(st, "dead") == 0)
        return "\033[31m";
    return "\033[90m"; /* left, or anything newer */
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const row *)a)->cell[0], ((const row *)b)->cell[0]);
}

int nodectl_render_members(FILE *out, const json_t *members, int color)
{
    if (!json_is_array(members))
        return -1;
    size_t n = json_array_size(members);
    row *rows = calloc(n ? n : 1, sizeof(row));
    if (rows == NULL)
        abort();
    struct timeval tv;
    gettimeofday(&tv, NULL);
    long long now = (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    size_t w[NCOLS];
    for (int c = 0; c < NCOLS; c++)
        w[c] = strlen(heads[c]);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(members, i);
        if (!json_is_object(m) || !json_is_string(json_object_get(m, "name"))) {
            n = i;
            rc = -1;
            break;
        }
        row *r = &rows[i];
        r->status = str_or(m, "status", "?");
        r->cell[0] = strdup(str_or(m, "name", "?"));
        r->cell[1] = strdup(str_or(m, "addr", "-"));
        r->cell[2] = strdup(r->status);
        r->cell[3] = dup_printf("%lld", NULL,
                                (long long)json_integer_value(json_object_get(m, "incarnation")));
        json_t *lc = json_object_get(m, "last_change_unix_ms");
        r->cell[4] =
            json_is_integer(lc) ? since(now - (long long)json_integer_value(lc)) : strdup("-");
        r->cell[5] = strdup(str_or(m, "version", "-"));
        json_t *tags = json_object_get(m, "tags");
        r->cell[6] = json_is_object(tags) ? tags_cell(tags) : strdup("-");
        for (int c = 0; c < NCOLS; c++) {
            if (r->cell[c] == NULL)
                abort();
            if (strlen(r->cell[c]) > w[c])
                w[c] = strlen(r->cell[c]);
        }
    }
    if (rc == 0) {
        qsort(rows, n, sizeof(row), by_name);
        for (int c = 0; c < NCOLS; c++)
            if (c + 1 < NCOLS)
                fprintf(out, "%-*s  ", (int)w[c], heads[c]);
            else
                fprintf(out, "%s\n", heads[c]);
        for (size_t i = 0; i < n; i++) {
            for (int c = 0; c < NCOLS; c++) {
                const char *cell = rows[i].cell[c];
                if (c + 1 == NCOLS)
                    fprintf(out, "%s\n", cell);
                else if (c == 2 && color)
                    fprintf(out, "%s%-*s\033[0m  ", status_color(rows[i].status), (int)w[c], cell);
                else
                    fprintf(out, "%-*s  ", (int)w[c], cell);
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < NCOLS; c++)
            free(rows[i].cell[c]);
    free(rows);
    return rc;
}

static int by_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int nodectl_render_stats(FILE *out, const json_t *stats)
{
    if (!json_is_object(stats))
        return -1;
    size_t n = json_object_size(stats), i = 0, w = 0;
    const char **keys = calloc(n ? n : 1, sizeof(*keys));
    if (keys == NULL)
        abort();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)stats, k, v)
    {
        keys[i++] = k;
        if (strlen(k) > w)
            w = strlen(k);
    }
    qsort(keys, n, sizeof(*keys), by_key);
    for (i = 0; i < n; i++) {
        v = json_object_get(stats, keys[i]);
        char *s = json_is_string(v) ? strdup(json_string_value(v))
                                    : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        fprintf(out, "%-*s  %s\n", (int)w, keys[i], s ? s : "?");
        free(s);
    }
    free(keys);
    return 0;
}

int nodectl_render_keyring(FILE *out, const json_t *kr)
{
    json_t *keys = json_object_get(kr, "keys");
    json_t *holders = json_object_get(kr, "holders");
    const char *primary = json_string_value(json_object_get(kr, "primary"));
    long long members = (long long)json_integer_value(json_object_get(kr, "members"));
    if (!json_is_array(keys))
        return -1;
    fprintf(out, "%-8s  %-7s  %s\n", "KEY ID", "PRIMARY", "HELD BY");
    size_t i;
    json_t *v;
    json_array_foreach(keys, i, v)
    {
        const char *id = json_string_value(v);
        if (id == NULL)
            return -1;
        json_t *h = json_object_get(holders, id);
        char held[64] = "-";
        if (json_is_integer(h))
            snprintf(held, sizeof(held), "%lld/%lld members", (long long)json_integer_value(h),
                     members);
        fprintf(out, "%-8s  %-7s  %s\n", id, primary && strcmp(primary, id) == 0 ? "yes" : "",
                held);
    }
    return 0;
}

/* A generic aligned table: rows of ncols strings. */
static void table(FILE *out, const char *const *hd, int ncols, char **cells, size_t nrows,
                  int color_col, int color)
{
    size_t w[16] = {0};
    for (int c = 0; c < ncols; c++)
        w[c] = strlen(hd[c]);
    for (size_t r = 0; r < nrows; r++)
        for (int c = 0; c < ncols; c++)
            if (strlen(cells[r * (size_t)ncols + (size_t)c]) > w[c])
                w[c] = strlen(cells[r * (size_t)ncols + (size_t)c]);
    for (int c = 0; c < ncols; c++)
        fprintf(out, c + 1 < ncols ? "%-*s  " : "%-*s\n", c + 1 < ncols ? (int)w[c] : 0, hd[c]);
    for (size_t r = 0; r < nrows; r++)
        for (int c = 0; c < ncols; c++) {
            const char *cell = cells[r * (size_t)ncols + (size_t)c];
            const char *col = "";
            if (color && c == color_col)
                col = strcmp(cell, "up") == 0         ? "\033[32m"
                      : strncmp(cell, "down", 4) == 0 ? "\033[31m"
                                                      : "\033[33m";
            if (c + 1 == ncols)
                fprintf(out, "%s%s%s\n", col, cell, *col ? "\033[0m" : "");
            else
                fprintf(out, "%s%-*s%s  ", col, (int)w[c], cell, *col ? "\033[0m" : "");
        }
}

/* The health checks' and the cluster's view (issue 13): one row per
 * server that is checked or that someone reported failing. */
static void render_health(FILE *out, const json_t *ups, int color)
{
    static const char *const hh[] = {"UPSTREAM", "SERVER",    "CLUSTER",
                                     "HERE",     "PROBED BY", "OBSERVED"};
    enum { NH = 6 };
    size_t nrows = 0, cap = 16, i, k, q;
    char **cells = malloc(cap * NH * sizeof(char *));
    json_t *u, *sv, *o;
    if (cells == NULL)
        abort();
    json_array_foreach(ups, i, u)
    {
        const char *name = str_or(u, "name", "?");
        json_array_foreach(json_object_get(u, "servers"), k, sv)
        {
            json_t *h = json_object_get(sv, "health");
            json_t *obs = json_object_get(h, "observers");
            if (!json_is_object(h) ||
                (!json_is_true(json_object_get(h, "checked")) && json_array_size(obs) == 0))
                continue;
            if (nrows == cap) {
                cap *= 2;
                cells = realloc(cells, cap * NH * sizeof(char *));
                if (cells == NULL)
                    abort();
            }
            char **rw = cells + nrows * NH;
            char pb[256] = "", ob[512] = "";
            size_t pl = 0, ol = 0;
            json_array_foreach(json_object_get(h, "probed_by"), q, o)
            {
                const char *pn = json_string_value(o);
                if (pl < sizeof(pb))
                    pl += (size_t)snprintf(pb + pl, sizeof(pb) - pl, "%s%s", q ? "," : "",
                                           pn ? pn : "?");
            }
            json_array_foreach(obs, q, o)
            {
                const char *act = str_or(o, "active", "unknown");
                int pas = json_is_true(json_object_get(o, "passive"));
                if (ol < sizeof(ob))
                    ol += (size_t)snprintf(
                        ob + ol, sizeof(ob) - ol, "%s%s:%s%s%s", q ? " " : "",
                        str_or(o, "node", "?"), strcmp(act, "unknown") == 0 ? "-" : act,
                        pas ? "+passive" : "",
                        json_is_true(json_object_get(o, "stale")) ? "(stale)" : "");
            }
            rw[0] = strdup(name);
            rw[1] = strdup(str_or(sv, "addr", "?"));
            rw[2] = strdup(str_or(h, "cluster", "?"));
            rw[3] = strdup(str_or(h, "local", "?"));
            rw[4] = strdup(pl ? pb : "-");
            rw[5] = strdup(ol ? ob : "-");
            for (int c = 0; c < NH; c++)
                if (rw[c] == NULL)
                    abort();
            nrows++;
        }
    }
    if (nrows > 0) {
        fputs("\n", out);
        table(out, hh, NH, cells, nrows, 2, color);
    }
    for (size_t x = 0; x < nrows * NH; x++)
        free(cells[x]);
    free(cells);
}

int nodectl_render_upstreams(FILE *out, const json_t *ups, int color)
{
    static const char *const uheads[] = {"UPSTREAM", "SERVER", "STATE",     "FAILS",
                                         "ACTIVE",   "WEIGHT", "MAX_FAILS", "FAIL_TIMEOUT"};
    enum { NC = 8 };
    if (!json_is_array(ups))
        return -1;
    size_t nrows = 0, cap = 16, i, k;
    char **cells = malloc(cap * NC * sizeof(char *));
    json_t *u, *sv;
    if (cells == NULL)
        abort();
    json_array_foreach(ups, i, u)
    {
        const char *name = json_string_value(json_object_get(u, "name"));
        json_t *servers = json_object_get(u, "servers");
        if (name == NULL || !json_is_array(servers)) {
            for (size_t q = 0; q < nrows * NC; q++)
                free(cells[q]);
            free(cells);
            return -1;
        }
        json_array_foreach(servers, k, sv)
        {
            if (nrows == cap) {
                cap *= 2;
                cells = realloc(cells, cap * NC * sizeof(char *));
                if (cells == NULL)
                    abort();
            }
            char **rw = cells + nrows * NC, tmp[64];
            rw[0] = strdup(name);
            rw[1] = strdup(str_or(sv, "addr", "?"));
            rw[2] = strdup(str_or(sv, "state", "?"));
            snprintf(tmp, sizeof(tmp), "%lld",
                     (long long)json_integer_value(json_object_get(sv, "fails")));
            rw[3] = strdup(tmp);
            snprintf(tmp, sizeof(tmp), "%lld",
                     (long long)json_integer_value(json_object_get(sv, "active")));
            rw[4] = strdup(tmp);
            snprintf(tmp, sizeof(tmp), "%lld%s",
                     (long long)json_integer_value(json_object_get(sv, "weight")),
                     json_is_true(json_object_get(sv, "backup")) ? " backup" : "");
            rw[5] = strdup(tmp);
            snprintf(tmp, sizeof(tmp), "%lld",
                     (long long)json_integer_value(json_object_get(sv, "max_fails")));
            rw[6] = strdup(tmp);
            rw[7] = since((long long)json_integer_value(json_object_get(sv, "fail_timeout_ms")));
            for (int c = 0; c < NC; c++)
                if (rw[c] == NULL)
                    abort();
            nrows++;
        }
    }
    table(out, uheads, NC, cells, nrows, 2, color);
    for (size_t q = 0; q < nrows * NC; q++)
        free(cells[q]);
    free(cells);
    render_health(out, ups, color);
    return 0;
}

int nodectl_render_info(FILE *out, const json_t *info)
{
    static const char *const keys[] = {"name",
                                       "addr",
                                       "status",
                                       "incarnation",
                                       "cluster",
                                       "version",
                                       "bind",
                                       "admin_listen",
                                       "region",
                                       "zone",
                                       "joined",
                                       "left",
                                       "members",
                                       "members_alive",
                                       "health_score",
                                       "keyring_primary",
                                       "keyring_keys",
                                       "uptime_ms",
                                       NULL};
    if (!json_is_object(info))
        return -1;
    for (int i = 0; keys[i]; i++) {
        json_t *v = json_object_get(info, keys[i]);
        if (v == NULL)
            continue;
        char *s = json_is_string(v) ? strdup(json_string_value(v))
                  : strcmp(keys[i], "uptime_ms") == 0
                      ? since((long long)json_integer_value(v))
                      : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        fprintf(out, "%-16s %s\n", strcmp(keys[i], "uptime_ms") == 0 ? "uptime" : keys[i],
                s && *s ? s : "-");
        free(s);
    }
    json_t *tags = json_object_get(info, "tags");
    if (json_is_object(tags)) {
        char *t = tags_cell(tags);
        fprintf(out, "%-16s %s\n", "tags", t);
        free(t);
    }
    return 0;
}
