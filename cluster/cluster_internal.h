/* SPDX-License-Identifier: Apache-2.0 */
/* What cluster.c and cluster_conf.c share: the parsed `cluster {}` block. */
#ifndef SH_CLUSTER_INTERNAL_H
#define SH_CLUSTER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/keyring.h"
#include "cluster/swim.h"

#define SH_CLUSTER_MAX_JOIN 32u
#define SH_CLUSTER_MAX_TAGS 32u

enum { SH_CLUSTER_LAN, SH_CLUSTER_WAN, SH_CLUSTER_LOCAL };

typedef struct {
    int present;     /* a cluster block was seen */
    char *name;      /* cluster name (part of the log lines) */
    char *node_name; /* default: hostname */
    char *bind;      /* default 0.0.0.0:7946 */
    char *advertise; /* default: bind's host, or 127.0.0.1 for a wildcard */
    char *admin_listen; /* default 127.0.0.1:9901; "off" disables */
    char *encrypt_key_file;
    char *region, *zone;
    char *join[SH_CLUSTER_MAX_JOIN];
    unsigned njoin;
    char *tag_k[SH_CLUSTER_MAX_TAGS], *tag_v[SH_CLUSTER_MAX_TAGS];
    unsigned ntags;
    int profile;
    /* knobs: unset sentinels until init_main fills them from the profile */
    uint64_t probe_interval, probe_timeout, gossip_interval, pushpull_interval;
    uint64_t gossip_to_dead, reconnect_interval, join_retry_max;
    int indirect_checks, retransmit_mult, suspicion_mult, suspicion_max_mult, gossip_nodes;
    int awareness_max, lifeguard;
    size_t mtu;
    /* filled by init_main */
    sh_swim_conf_t swim;
    uint8_t keys[SH_KEYRING_MAX_KEYS][SH_KEYRING_KEYLEN];
    unsigned nkeys;
} sh_cluster_conf_t;

#endif
