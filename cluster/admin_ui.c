/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The dashboard's routes (admin_ui.h): /ui/NAME -> the embedded file NAME,
 * /ui and /ui/ -> index.html, from the assets the build embedded
 * (admin_ui_assets.h); names are compared whole, so nothing outside that
 * table can be named. No state: any thread.
 */
#include "cluster/admin_ui.h"

#include <stdlib.h>
#include <string.h>

#include "cluster/admin_ui_assets.h"

/* Only the node's own files and API; no inline script, no framing, no
 * form posting anywhere, no referrer leaving the page. */
#define UI_HEADERS                                                                                 \
    "\r\nContent-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "       \
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "                    \
    "frame-ancestors 'none'"                                                                       \
    "\r\nX-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\nReferrer-Policy: no-referrer"

#define HEAD_HTML "text/html; charset=utf-8" UI_HEADERS
#define HEAD_JS   "text/javascript; charset=utf-8" UI_HEADERS
#define HEAD_CSS  "text/css; charset=utf-8" UI_HEADERS
#define HEAD_SVG  "image/svg+xml" UI_HEADERS

/* admin.c's respond() sizes its buffer as the body plus 512 bytes for the
 * status line and the headers (about 110 besides these). */
_Static_assert(sizeof(HEAD_JS) < 360 && sizeof(HEAD_HTML) < 360 && sizeof(HEAD_CSS) < 360 &&
                   sizeof(HEAD_SVG) < 360,
               "the dashboard's header lines must fit respond()'s 512 spare bytes");

static const struct {
    const char *ext;
    const char *head;
} types[] = {
    {".html", HEAD_HTML},
    {".js", HEAD_JS},
    {".css", HEAD_CSS},
    {".svg", HEAD_SVG},
};

static int file_of(const char *name, sh_admin_ui_file_t *out)
{
    size_t n = strlen(name);
    for (const sh_admin_ui_asset_t *a = sh_admin_ui__assets; a->name; a++) {
        if (strcmp(a->name, name) != 0)
            continue;
        for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
            size_t e = strlen(types[t].ext);
            if (n > e && strcmp(name + n - e, types[t].ext) == 0) {
                out->head = types[t].head;
                out->body = (const char *)a->data;
                out->len = a->len;
                return 1;
            }
        }
        return 0; /* a file of a type we do not serve */
    }
    return 0;
}

int sh_admin_ui_find(const char *path, sh_admin_ui_file_t *out)
{
    if (strcmp(path, "/ui") == 0 || strcmp(path, "/ui/") == 0)
        return file_of("index.html", out);
    if (strncmp(path, "/ui/", 4) != 0 || strchr(path + 4, '/') != NULL)
        return 0;
    return file_of(path + 4, out);
}

char *sh_admin_ui_body(const sh_admin_ui_file_t *f)
{
    char *s = malloc(f->len + 1);
    if (s == NULL)
        abort();
    memcpy(s, f->body, f->len + 1);
    return s;
}
