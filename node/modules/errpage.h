/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `error_page`, `recursive_error_pages`, `internal` and named locations'
 * use (see errpage.c for nginx's rules). Registers the generation's error
 * pages with the pipeline (sh_error_pages_t in node/pipeline.h).
 */
#ifndef SH_ERRPAGE_H
#define SH_ERRPAGE_H

#include "core/conf.h"

extern sh_conf_module_t sh_errpage_module;

#endif
