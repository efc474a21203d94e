/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The health channel: shares the registry's observations (health.h)
 * between the cluster's members over a cluster service
 * (cluster/service.h). Built only with the cluster.
 */
#ifndef SH_HEALTH_GOSSIP_H
#define SH_HEALTH_GOSSIP_H

#define SH_HEALTH_CHANNEL 4u /* 1 keyring, 3 global limits, 5 TLS ticket keys */

/* Register the service (once, before or after the cluster starts). 0 or
 * -1 when the service registry refused it (logged). */
int sh_health_gossip_register(void);

#endif
