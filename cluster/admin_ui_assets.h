/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The dashboard's files as the build embeds them (cluster/ui/embed.cmake
 * writes admin_ui_assets.c in the build tree from the files in cluster/ui/): a table
 * ending with a {NULL} entry. Only admin_ui.c reads it.
 */
#ifndef SH_ADMIN_UI_ASSETS_H
#define SH_ADMIN_UI_ASSETS_H

#include <stddef.h>

typedef struct {
    const char *name;          /* file name in cluster/ui/, e.g. "app.js" */
    const unsigned char *data; /* the bytes, followed by a NUL */
    size_t len;                /* without the NUL */
} sh_admin_ui_asset_t;

extern const sh_admin_ui_asset_t sh_admin_ui__assets[];

#endif
