/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Static files: nginx's `root`, `alias`, `index`, `try_files`,
 * `default_type` and `types` (with `include mime.types`), as the content
 * handler of every location that has no other (nginx's default root is
 * PREFIX/html). GET and HEAD (POST to a file: 405), Last-Modified, ETag in
 * nginx's format, If-None-Match / If-Modified-Since -> 304, a single
 * Range -> 206 (416 when it cannot be satisfied; several ranges get the
 * whole file), a directory without its slash -> 301. Paths come from the
 * normalized URI, so `..` and its encodings cannot climb out of the root;
 * symbolic links are followed (nginx's default, disable_symlinks off).
 * See static.c for the I/O rules.
 */
#ifndef SH_STATIC_H
#define SH_STATIC_H

#include "core/conf.h"

extern sh_conf_module_t sh_static_module;

#endif
