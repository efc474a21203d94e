/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nginx's realip module: `set_real_ip_from` (addresses, CIDRs, `unix:`),
 * `real_ip_header` (X-Real-IP, X-Forwarded-For, proxy_protocol, or any
 * field name) and `real_ip_recursive`. When the connection's peer is
 * trusted, the client address is taken from the field (its last address;
 * with recursion, the last one that is not itself trusted) or from the
 * PROXY protocol header, and becomes the request's (r->client): from then
 * on $remote_addr, $remote_port, allow/deny, logs and limits see it;
 * $realip_remote_addr and $realip_remote_port keep the peer's.
 *
 * Handlers in the post-read phase (the server's configuration, as nginx)
 * and in the preaccess phase (a location's own settings), once per
 * request. Configuration at load; handlers on the request's worker.
 */
#ifndef SH_REALIP_H
#define SH_REALIP_H

#include "core/conf.h"

extern sh_conf_module_t sh_realip_module;

#endif
