/* SPDX-License-Identifier: Apache-2.0 */
/*
 * geo (nginx's): `geo [$address] $var { default V; CIDR V; ADDR V;
 * delete CIDR; proxy CIDR; proxy_recursive; ranges; START-END V; include
 * FILE; }` sets $var from a client address (default $remote_addr), the
 * longest matching network winning (in `ranges` mode the last range
 * defined that holds it).
 */
#ifndef SH_GEO_H
#define SH_GEO_H

#include "core/conf.h"

extern sh_conf_module_t sh_geo_module;

#endif
