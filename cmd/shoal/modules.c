/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every configuration module of the node, once, in one list. Order
 * matters where nginx's does: a module's init runs after those above it.
 */
#include "cmd/shoal/modules.h"

#include "node/conn/http2.h"
#include "node/conn/tls.h"
#include "node/conn/tls_tickets.h"
#include "node/modules/access.h"
#include "node/modules/accesslog.h"
#include "node/modules/auth_basic.h"
#include "node/modules/auth_jwt.h"
#include "node/modules/auth_request.h"
#include "node/modules/errpage.h"
#include "node/modules/expires.h"
#include "node/modules/geo.h"
#include "node/modules/gzip.h"
#include "node/modules/headers.h"
#include "node/modules/limit_conn.h"
#include "node/modules/limit_req.h"
#include "node/modules/map.h"
#include "node/modules/proxy_cache.h"
#include "node/modules/realip.h"
#include "node/modules/rewrite.h"
#include "node/modules/split_clients.h"
#include "node/modules/static.h"
#include "node/modules/status.h"
#include "node/modules/sub_filter.h"
#include "node/pipeline/http_conf.h"
#include "node/pipeline/metrics.h"
#include "node/pipeline/pipeline.h"
#include "node/pipeline/runtime.h"
#include "node/proxy/grpc.h"
#include "node/proxy/health.h"
#include "node/proxy/proxy.h"
#include "node/proxy/proxy_redirect.h"
#include "node/proxy/proxy_ssl.h"
#include "node/proxy/resolver.h"
#include "node/proxy/upstream.h"

extern sh_conf_module_t sh_pending_module;
#ifdef SHOAL_WITH_CLUSTER
extern sh_conf_module_t sh_cluster_module;
#endif

sh_conf_module_t *const sh_modules[] = {
    &sh_core_module,
    &sh_http_core_module,
    &sh_map_module,
    &sh_geo_module,
    &sh_split_clients_module,
    &sh_realip_module, /* before every preaccess and access handler */
    &sh_rewrite_module,
    &sh_accesslog_module,
    &sh_metrics_module, /* counts every request at its end (log phase) */
    &sh_upstream_module,
    &sh_proxy_module,
    &sh_grpc_module, /* grpc_pass: its content handler after proxy_pass */
    &sh_proxy_redirect_module,
    &sh_resolver_module,
    &sh_proxy_cache_module, /* its store filter before gzip and headers (early) */
    &sh_health_module,      /* after upstream and proxy: its load reads both */
    &sh_proxy_ssl_module,
    &sh_grpc_ssl_module, /* grpc_ssl_*: grpc_pass grpcs:// */
    /* preaccess: nginx runs limit_req before limit_conn (its phase
     * handlers run in reverse module order, limit_conn being listed first) */
    &sh_limit_req_module,
    &sh_limit_conn_module,
    &sh_access_module, /* access checks in nginx's order: allow/deny first */
    &sh_auth_basic_module,
    &sh_auth_jwt_module,
    &sh_auth_request_module,
    &sh_status_module,
    &sh_static_module, /* after every other content handler */
    &sh_errpage_module,
    &sh_ssl_module,
    &sh_tls_tickets_module,
    &sh_headers_module,
    &sh_expires_module,
    &sh_sub_filter_module, /* before gzip: its body filter sees the body first */
    &sh_gzip_module,
    &sh_http2_module,
#ifdef SHOAL_WITH_CLUSTER
    &sh_cluster_module,
#endif
    /* last: accepted-with-a-warning names of later issues */
    &sh_pending_module,
};

const unsigned sh_nmodules = sizeof(sh_modules) / sizeof(sh_modules[0]);

/* every module has a context slot in a request (sh_request_ctx) */
_Static_assert(sizeof(sh_modules) / sizeof(sh_modules[0]) <= SH_REQUEST_SLOTS,
               "more modules than SH_REQUEST_SLOTS (node/pipeline/pipeline.h)");
