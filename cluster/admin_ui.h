/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The cluster dashboard served by the admin API at /ui/ (issue 17): plain
 * HTML, CSS and JavaScript kept in cluster/ui/, embedded in the binary at
 * build time (no CDN, nothing fetched) and served from memory.
 *
 * The files hold no secret, so they are served without the admin token;
 * the page asks the operator for the token and sends it as
 * "Authorization: Bearer" with every API request it makes, which the API
 * checks as always. The page reads only the admin API (GET /v1/members,
 * /v1/info, /v1/events, /v1/upstreams, /v1/stats, /metrics); it changes
 * nothing. Its responses carry a Content-Security-Policy that allows only
 * the node's own scripts, styles and API, and no framing.
 */
#ifndef SH_ADMIN_UI_H
#define SH_ADMIN_UI_H

#include <stddef.h>

typedef struct {
    const char *head; /* the Content-Type value, then the further header
                         lines ("\r\n"-separated, no final "\r\n") that
                         the admin API writes after "Content-Type: " */
    const char *body; /* NUL-terminated text */
    size_t len;
} sh_admin_ui_file_t;

/* The file served at path ("/ui", "/ui/", "/ui/index.html", "/ui/app.js",
 * ...; the query already cut off): 1 with *out filled (pointers to static
 * data, never freed), or 0 when path is not the dashboard's. Any thread. */
int sh_admin_ui_find(const char *path, sh_admin_ui_file_t *out);

/* A malloc'd copy of f's body (what the admin API's respond() takes and
 * frees). Aborts on out of memory. */
char *sh_admin_ui_body(const sh_admin_ui_file_t *f);

#endif
