/* SPDX-License-Identifier: Apache-2.0 */
/* Request-context error log lines (see reqlog.h). */
#include "node/pipeline/reqlog.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "node/pipeline/http_conf.h"

static void addr_text(const struct sockaddr_in6 *p6, char *out, size_t len)
{
    if (p6->sin6_family == AF_INET6) {
        const uint8_t *b = p6->sin6_addr.s6_addr;
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(b, v4mapped, 12) == 0)
            inet_ntop(AF_INET, b + 12, out, (socklen_t)len);
        else
            inet_ntop(AF_INET6, &p6->sin6_addr, out, (socklen_t)len);
    } else if (p6->sin6_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)p6)->sin_addr, out,
                  (socklen_t)len);
    } else {
        snprintf(out, len, "unix:");
    }
}

void sh_req_log_client(const sh_conn_t *c, char *out, size_t len)
{
    addr_text(&c->peer, out, len);
}

/* Append at most n bytes of s, quotes and control bytes escaped as nginx's
 * error log does (\xHH), so a line stays one line. */
static size_t put(char *buf, size_t off, size_t cap, const char *s, size_t n)
{
    for (size_t i = 0; i < n && off + 5 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\')
            off += (size_t)snprintf(buf + off, cap - off, "\\x%02X", ch);
        else
            buf[off++] = (char)ch;
    }
    buf[off] = '\0';
    return off;
}

static size_t puts_(char *buf, size_t off, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (off + n >= cap)
        n = cap - off - 1;
    memcpy(buf + off, s, n);
    buf[off + n] = '\0';
    return off + n;
}

void sh_req_log(int level, const sh_conn_t *c, const sh_request_t *r, const char *upstream,
                const char *fmt, ...)
{
    if (level > sh_log_get_level())
        return;
    if (c == NULL && r != NULL)
        c = r->c;
    char line[1800];
    size_t cap = sizeof(line), off = 0;
    int k = snprintf(line, cap, "*%llu ", c ? (unsigned long long)c->id : 0ull);
    off = k > 0 ? (size_t)k : 0;
    va_list ap;
    va_start(ap, fmt);
    k = vsnprintf(line + off, cap - off, fmt, ap);
    va_end(ap);
    if (k > 0)
        off = off + (size_t)k < cap ? off + (size_t)k : cap - 1;
    if (c != NULL) {
        char ip[INET6_ADDRSTRLEN + 8];
        /* realip's address when it set one, as nginx's "client:" */
        addr_text(r != NULL && r->c == c ? sh_request_peer(r) : &c->peer, ip, sizeof(ip));
        off = puts_(line, off, cap, ", client: ");
        off = puts_(line, off, cap, ip);
    }
    off = puts_(line, off, cap, ", server: ");
    if (r != NULL && r->srv != NULL && r->srv->nnames > 0)
        off = put(line, off, cap, r->srv->names[0], strlen(r->srv->names[0]));
    if (r != NULL && r->h.method != NULL && r->h.target != NULL) {
        off = puts_(line, off, cap, ", request: \"");
        off = put(line, off, cap, r->h.method, r->h.method_len);
        off = puts_(line, off, cap, " ");
        off = put(line, off, cap, r->h.target, r->h.target_len);
        off = puts_(line, off, cap,
                    r->h.version == 20   ? " HTTP/2.0\""
                    : r->h.version == 10 ? " HTTP/1.0\""
                                         : " HTTP/1.1\"");
    }
    if (upstream != NULL) {
        off = puts_(line, off, cap, ", upstream: \"");
        off = put(line, off, cap, upstream, strlen(upstream));
        off = puts_(line, off, cap, "\"");
    }
    if (r != NULL && r->h.host != NULL) {
        off = puts_(line, off, cap, ", host: \"");
        off = put(line, off, cap, r->h.host, r->h.host_len);
        off = puts_(line, off, cap, "\"");
    }
    sh_log(level, "%s", line);
}
