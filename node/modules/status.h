/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `stub_status`: a content handler answering nginx's status page.
 */
#ifndef SH_STATUS_H
#define SH_STATUS_H

#include "core/conf.h"

extern sh_conf_module_t sh_status_module;

#endif
