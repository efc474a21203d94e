/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The map module: `map $source $variable { ... }` in the http block, with
 * nginx's semantics. The variable is evaluated lazily, when a value that
 * names it is evaluated, and its result is kept for the rest of the
 * request (unless the map says `volatile;`).
 *
 * Lookup order (nginx's): the exact string (a hash, case-insensitive);
 * with `hostnames`, the longest "*.name"/".name" mask, then the longest
 * "name.*" mask; then `~regex` / `~*regex` lines in config order (their
 * captures usable in the value); then `default` (empty when absent).
 * Values may contain variables. `include FILE;` inside the block is the
 * parser's include. Loaded on the main thread; evaluated on workers.
 */
#ifndef SH_MAP_H
#define SH_MAP_H

#include "core/conf.h"

extern sh_conf_module_t sh_map_module;

#endif
