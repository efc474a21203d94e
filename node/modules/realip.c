/* SPDX-License-Identifier: Apache-2.0 */
/* set_real_ip_from, real_ip_header, real_ip_recursive (see realip.h). */
#include "node/modules/realip.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "core/alloc.h"
#include "core/err.h"
#include "node/pipeline/node.h"
#include "node/pipeline/vars.h"

enum { H_UNSET = -1, H_REAL_IP = 0, H_XFF, H_PROXY, H_OTHER };

typedef struct {
    int family; /* AF_INET, AF_INET6, AF_UNIX */
    uint8_t addr[16], mask[16];
} cidr_t;

typedef struct {
    cidr_t *from;
    size_t nfrom;
    int from_set; /* this level owns from */
    int type;     /* H_* */
    char *header; /* H_OTHER: the field name */
    int recursive;
} realip_loc_t;

static void *realip_create_loc(void)
{
    realip_loc_t *c = sh_new(realip_loc_t);
    c->type = H_UNSET;
    c->recursive = SH_CONF_UNSET;
    return c;
}

static void realip_destroy_loc(void *conf)
{
    realip_loc_t *c = conf;
    if (c->from_set)
        sh_free(c->from);
    sh_free(c->header);
    sh_free(c);
}

static int realip_merge_loc(sh_conf_t *cf, void *parent, void *conf)
{
    realip_loc_t *p = parent, *c = conf;
    (void)cf;
    if (!c->from_set) {
        c->from = p->from;
        c->nfrom = p->nfrom;
    }
    if (c->type == H_UNSET) {
        c->type = p->type == H_UNSET ? H_REAL_IP : p->type;
        c->header = p->type == H_OTHER ? sh_strdup(p->header) : NULL;
    }
    if (c->recursive == SH_CONF_UNSET)
        c->recursive = p->recursive == SH_CONF_UNSET ? 0 : p->recursive;
    return 0;
}

/* "A.B.C.D", "A.B.C.D/N", "V6", "V6/N", "unix:". */
static int parse_cidr(const char *s, cidr_t *out)
{
    memset(out, 0, sizeof(*out));
    if (strcmp(s, "unix:") == 0) {
        out->family = AF_UNIX;
        return 0;
    }
    char tmp[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    int bits;
    if (inet_pton(AF_INET, tmp, out->addr) == 1) {
        out->family = AF_INET;
        bits = 32;
    } else if (inet_pton(AF_INET6, tmp, out->addr) == 1) {
        out->family = AF_INET6;
        bits = 128;
    } else {
        return -1;
    }
    int len = bits;
    if (slash != NULL && (sh_conf_parse_int(slash + 1, &len) != 0 || len > bits))
        return -1;
    for (int i = 0; i < bits / 8; i++) {
        int b = len - i * 8;
        out->mask[i] = b >= 8 ? 0xff : b <= 0 ? 0 : (uint8_t)(0xff << (8 - b));
        out->addr[i] &= out->mask[i]; /* nginx: "low address bits are meaningless" */
    }
    return 0;
}

static int from_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    realip_loc_t *c = conf;
    const char *v = cf->node->args[1];
    if (!c->from_set) {
        c->from = NULL;
        c->nfrom = 0;
        c->from_set = 1;
    }
    cidr_t x;
    if (parse_cidr(v, &x) != 0)
        return sh_conf_error(cf, "invalid parameter \"%s\" (an address, a CIDR or \"unix:\")", v);
    c->from = sh_realloc(c->from, (c->nfrom + 1) * sizeof(*c->from));
    c->from[c->nfrom++] = x;
    return 0;
}

static int header_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    realip_loc_t *c = conf;
    const char *v = cf->node->args[1];
    if (c->type != H_UNSET)
        return sh_conf_error(cf, "\"real_ip_header\" directive is duplicate");
    if (strcasecmp(v, "X-Real-IP") == 0) {
        c->type = H_REAL_IP;
    } else if (strcasecmp(v, "X-Forwarded-For") == 0) {
        c->type = H_XFF;
    } else if (strcmp(v, "proxy_protocol") == 0) {
        c->type = H_PROXY;
    } else {
        for (const char *q = v; *q; q++)
            if (*q <= ' ' || *q == ':' || *q == 0x7f)
                return sh_conf_error(cf, "invalid header name \"%s\"", v);
        c->type = H_OTHER;
        c->header = sh_strdup(v);
    }
    return 0;
}

/* ------------------------------------------------------ request -- */

typedef struct {
    struct sockaddr_in6 addr;
} realip_ctx_t;

static int trusted(const realip_loc_t *c, const struct sockaddr_in6 *sa)
{
    int fam = sa->sin6_family;
    const uint8_t *a = fam == AF_INET ? (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr
                                      : (const uint8_t *)&sa->sin6_addr;
    size_t len = fam == AF_INET ? 4 : 16;
    for (size_t i = 0; i < c->nfrom; i++) {
        const cidr_t *x = &c->from[i];
        if (x->family != fam)
            continue;
        if (fam == AF_UNIX)
            return 1;
        size_t k = 0;
        while (k < len && (a[k] & x->mask[k]) == x->addr[k])
            k++;
        if (k == len)
            return 1;
    }
    return 0;
}

/* An address with an optional port: "1.2.3.4", "1.2.3.4:80", "::1",
 * "[::1]:80" (nginx's ngx_parse_addr_port). */
static int parse_addr(const char *s, size_t n, struct sockaddr_in6 *out)
{
    char tmp[64];
    unsigned port = 0;
    memset(out, 0, sizeof(*out));
    if (n > 0 && s[0] == '[') {
        const char *e = memchr(s, ']', n);
        if (e == NULL)
            return -1;
        const char *p = e + 1;
        if (p < s + n) {
            if (*p++ != ':' || p == s + n)
                return -1;
            for (; p < s + n; p++) {
                if (*p < '0' || *p > '9' || (port = port * 10 + (unsigned)(*p - '0')) > 65535)
                    return -1;
            }
        }
        s++;
        n = (size_t)(e - s);
    } else {
        const char *colon = memchr(s, ':', n);
        if (colon != NULL && memchr(colon + 1, ':', (size_t)(s + n - colon - 1)) == NULL) {
            for (const char *p = colon + 1; p < s + n; p++)
                if (*p < '0' || *p > '9' || (port = port * 10 + (unsigned)(*p - '0')) > 65535)
                    return -1;
            if (colon + 1 == s + n)
                return -1;
            n = (size_t)(colon - s);
        }
    }
    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    struct sockaddr_in *s4 = (struct sockaddr_in *)out;
    if (inet_pton(AF_INET, tmp, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        return 0;
    }
    if (inet_pton(AF_INET6, tmp, &out->sin6_addr) == 1) {
        out->sin6_family = AF_INET6;
        out->sin6_port = htons((uint16_t)port);
        return 0;
    }
    return -1;
}

/* nginx's ngx_http_get_forwarded_addr_internal(): with *addr trusted,
 * the last address of the list replaces it; with recursion, on to the
 * left while the new one is trusted too. 1: *addr was replaced (0: it
 * was not; -1: the list is bad where it was looked at). */
static int forwarded(const realip_loc_t *c, struct sockaddr_in6 *addr, const char *v, size_t len)
{
    int replaced = 0;
    while (trusted(c, addr)) {
        const char *p = v + len;
        while (p > v && (p[-1] == ' ' || p[-1] == ','))
            p--;
        const char *e = p;
        while (p > v && p[-1] != ' ' && p[-1] != ',')
            p--;
        struct sockaddr_in6 a;
        if (e == p || parse_addr(p, (size_t)(e - p), &a) != 0)
            return replaced ? 1 : -1;
        *addr = a;
        replaced = 1;
        if (!c->recursive || p == v)
            break;
        len = (size_t)(p - v);
    }
    return replaced;
}

static const sh_http1_header_t *req_header(const sh_request_t *r, const char *name)
{
    for (size_t i = 0; i < r->h.nheaders; i++)
        if (sh_http1_name_is(&r->headers[i], name))
            return &r->headers[i];
    return NULL;
}

static void ctx_cleanup(sh_request_t *r, void *data)
{
    r->client = NULL;
    sh_free(data);
}

static int realip_handler(sh_request_t *r)
{
    if (r->client != NULL || sh_request_ctx(r, &sh_realip_module) != NULL)
        return SH_PH_DECLINED; /* once per request */
    const sh_http_loc_t *loc = r->loc ? r->loc : r->srv ? r->srv->loc : sh_request_loc(r);
    const realip_loc_t *c = sh_http_loc_conf(loc, &sh_realip_module);
    if (c == NULL || c->nfrom == 0)
        return SH_PH_DECLINED;
    struct sockaddr_in6 addr = r->c->peer;
    char pbuf[INET6_ADDRSTRLEN];
    const char *v;
    size_t vl;
    if (c->type == H_PROXY) {
        const sh_pp_t *pp = r->c->pp;
        if (pp == NULL || pp->family == AF_UNSPEC)
            return SH_PH_DECLINED;
        sh_pp_addr_text(&pp->src, pbuf, sizeof(pbuf));
        v = pbuf;
        vl = strlen(pbuf);
    } else if (c->type == H_XFF) {
        /* every X-Forwarded-For field, as one list (nginx 1.22 joins them) */
        sh_buf_t *b = &r->scratch;
        b->len = 0;
        for (size_t i = 0; i < r->h.nheaders; i++)
            if (sh_http1_name_is(&r->headers[i], "x-forwarded-for")) {
                if (b->len > 0)
                    sh_buf_append(b, ", ", 2);
                sh_buf_append(b, r->headers[i].value, r->headers[i].value_len);
            }
        if (b->len == 0)
            return SH_PH_DECLINED;
        v = b->data;
        vl = b->len;
    } else {
        const sh_http1_header_t *h = req_header(r, c->type == H_REAL_IP ? "x-real-ip" : c->header);
        if (h == NULL)
            return SH_PH_DECLINED;
        v = h->value;
        vl = h->value_len;
    }
    int rc = forwarded(c, &addr, v, vl);
    if (rc <= 0)
        return SH_PH_DECLINED;
    if (c->type == H_PROXY)
        addr.sin6_port = r->c->pp->src.sin6_port;
    realip_ctx_t *x = sh_new(realip_ctx_t);
    if (sh_request_cleanup_add(r, ctx_cleanup, x) != 0) {
        sh_free(x);
        return SH_PH_DECLINED;
    }
    x->addr = addr;
    sh_request_ctx(r, &sh_realip_module) = x;
    r->client = &x->addr;
    return SH_PH_DECLINED;
}

/* ------------------------------------------------------ variables -- */

enum { VAR_REALIP_ADDR, VAR_REALIP_PORT, VAR_PP_ADDR, VAR_PP_PORT, VAR_PP_SADDR, VAR_PP_SPORT };
static const int var_ids[] = {VAR_REALIP_ADDR, VAR_REALIP_PORT, VAR_PP_ADDR,
                              VAR_PP_PORT,     VAR_PP_SADDR,    VAR_PP_SPORT};

static void append_addr(const struct sockaddr_in6 *sa, sh_buf_t *out)
{
    char ip[INET6_ADDRSTRLEN];
    sh_pp_addr_text(sa, ip, sizeof(ip));
    sh_buf_appends(out, ip);
}

/* $realip_remote_*: the connection's peer, whatever realip did;
 * $proxy_protocol_*: the PROXY header's (empty for UNKNOWN and LOCAL,
 * unset without proxy_protocol on the address). */
static int var_get(sh_request_t *r, const void *data, sh_buf_t *out)
{
    int id = *(const int *)data;
    const sh_pp_t *pp = r->c->pp;
    switch (id) {
    case VAR_REALIP_ADDR:
        append_addr(&r->c->peer, out);
        return 1;
    case VAR_REALIP_PORT:
        sh_buf_appendf(out, "%u", ntohs(r->c->peer.sin6_port));
        return 1;
    default:
        break;
    }
    if (pp == NULL)
        return 0;
    if (pp->family == AF_UNSPEC)
        return 1;
    const struct sockaddr_in6 *sa = id == VAR_PP_ADDR || id == VAR_PP_PORT ? &pp->src : &pp->dst;
    if (id == VAR_PP_ADDR || id == VAR_PP_SADDR)
        append_addr(sa, out);
    else
        sh_buf_appendf(out, "%u", ntohs(sa->sin6_port));
    return 1;
}

static int realip_preconf(sh_conf_t *cf, sh_http_main_t *m)
{
    (void)m;
    static const char *const names[] = {"realip_remote_addr",         "realip_remote_port",
                                        "proxy_protocol_addr",        "proxy_protocol_port",
                                        "proxy_protocol_server_addr", "proxy_protocol_server_port"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int rc = sh_vars_define(cf, names[i], var_get, &var_ids[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int realip_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    int rc = sh_phase_add(cf, m, SH_PHASE_POST_READ, realip_handler);
    return rc != 0 ? rc : sh_phase_add(cf, m, SH_PHASE_PREACCESS, realip_handler);
}

#define LOC (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION)

static const sh_conf_cmd_t realip_cmds[] = {
    {"set_real_ip_from", LOC | SH_CONF_TAKE1, from_set, 0, NULL},
    {"real_ip_header", LOC | SH_CONF_TAKE1, header_set, 0, NULL},
    {"real_ip_recursive", LOC | SH_CONF_FLAG, sh_conf_set_flag, offsetof(realip_loc_t, recursive),
     NULL},
    {NULL, 0, NULL, 0, NULL}};

static const sh_http_module_t realip_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_loc = realip_create_loc,
    .merge_loc = realip_merge_loc,
    .destroy_loc = realip_destroy_loc,
    .preconfiguration = realip_preconf,
    .postconfiguration = realip_postconf,
};

sh_conf_module_t sh_realip_module = {
    .name = "realip",
    .cmds = realip_cmds,
    .ctx = &realip_ctx,
};
