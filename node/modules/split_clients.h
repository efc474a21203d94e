/* SPDX-License-Identifier: Apache-2.0 */
/*
 * split_clients (nginx's, for A/B testing): `split_clients STRING $var {
 * PERCENT% VALUE; ... * VALUE; }` sets $var by MurmurHash2 of STRING, as
 * nginx's, so a client lands in the same bucket on both.
 */
#ifndef SH_SPLIT_CLIENTS_H
#define SH_SPLIT_CLIENTS_H

#include <stddef.h>
#include <stdint.h>

#include "core/conf.h"

extern sh_conf_module_t sh_split_clients_module;

/* nginx's ngx_murmur_hash2 (MurmurHash2, seed 0, length mixed in). */
uint32_t sh_murmur_hash2(const unsigned char *data, size_t len);

#endif
