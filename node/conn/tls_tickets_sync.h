/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ticket-key channel: shares the TLS session-ticket keys
 * (tls_tickets.h) between the members over a cluster service. Built only
 * with the cluster.
 */
#ifndef SH_TLS_TICKETS_SYNC_H
#define SH_TLS_TICKETS_SYNC_H

#define SH_TLS_TICKETS_CHANNEL 5u /* 1 keyring, 3 global limits, 4 health */

/* Register the service (once). 0, or -1 when the registry refused it. */
int sh_tls_tickets_sync_register(void);

#endif
