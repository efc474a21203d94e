/* SPDX-License-Identifier: Apache-2.0 */
/* The PROXY protocol v1/v2 decoder (see proxyproto.h). */
#include "node/conn/proxyproto.h"

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

#include "core/alloc.h"
#include "core/err.h"

#define V1_MAX 107
static const char v2_sig[12] = "\r\n\r\n\0\r\nQUIT\n";

/* A decimal port, 0..65535, no sign or leading garbage. */
static int parse_port(const char *s, size_t n, uint16_t *out)
{
    if (n == 0 || n > 5)
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

static int set_addr(struct sockaddr_in6 *sa, int family, const char *s, size_t n, uint16_t port)
{
    char tmp[64];
    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    memset(sa, 0, sizeof(*sa));
    if (family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        return inet_pton(AF_INET, tmp, &s4->sin_addr) == 1 ? 0 : -1;
    }
    sa->sin6_family = AF_INET6;
    sa->sin6_port = htons(port);
    return inet_pton(AF_INET6, tmp, &sa->sin6_addr) == 1 ? 0 : -1;
}

/* v1 in b[0..n): header length, 0 (need more) or SH_EPARSE. */
static int parse_v1(sh_pp_t *pp, const char *b, size_t n)
{
    size_t k = n < 6 ? n : 6;
    if (memcmp(b, "PROXY ", k) != 0)
        return SH_EPARSE;
    const char *crlf = NULL;
    for (size_t i = 0; i + 1 < n && i + 1 < V1_MAX; i++)
        if (b[i] == '\r' && b[i + 1] == '\n') {
            crlf = b + i;
            break;
        }
    if (crlf == NULL)
        return n >= V1_MAX ? SH_EPARSE : 0;
    size_t total = (size_t)(crlf - b) + 2;
    const char *p = b + 6, *e = crlf;
    pp->version = 1;
    if ((size_t)(e - p) >= 7 && memcmp(p, "UNKNOWN", 7) == 0) {
        pp->family = AF_UNSPEC; /* whatever follows is ignored (spec) */
        return (int)total;
    }
    int fam;
    if ((size_t)(e - p) >= 5 && memcmp(p, "TCP4 ", 5) == 0)
        fam = AF_INET;
    else if ((size_t)(e - p) >= 5 && memcmp(p, "TCP6 ", 5) == 0)
        fam = AF_INET6;
    else
        return SH_EPARSE;
    p += 5;
    /* four fields separated by single spaces */
    const char *f[4];
    size_t fl[4];
    for (int i = 0; i < 4; i++) {
        const char *s = p;
        while (p < e && *p != ' ')
            p++;
        f[i] = s;
        fl[i] = (size_t)(p - s);
        if (i < 3) {
            if (p >= e)
                return SH_EPARSE;
            p++;
        }
    }
    if (p != e)
        return SH_EPARSE;
    uint16_t sport, dport;
    if (parse_port(f[2], fl[2], &sport) != 0 || parse_port(f[3], fl[3], &dport) != 0 ||
        set_addr(&pp->src, fam, f[0], fl[0], sport) != 0 ||
        set_addr(&pp->dst, fam, f[1], fl[1], dport) != 0)
        return SH_EPARSE;
    pp->family = fam;
    return (int)total;
}

/* v2 in b[0..n): header length, 0 (need more) or SH_EPARSE. */
static int parse_v2(sh_pp_t *pp, const unsigned char *b, size_t n)
{
    size_t k = n < 12 ? n : 12;
    if (memcmp(b, v2_sig, k) != 0)
        return SH_EPARSE;
    if (n < 16)
        return 0;
    if ((b[12] >> 4) != 2)
        return SH_EPARSE;
    unsigned cmd = b[12] & 0x0f;
    if (cmd > 1)
        return SH_EPARSE;
    size_t len = ((size_t)b[14] << 8) | b[15];
    size_t total = 16 + len;
    if (total > SH_PP_MAX)
        return SH_EPARSE;
    if (n < total)
        return 0;
    pp->version = 2;
    pp->family = AF_UNSPEC;
    unsigned fam = b[13] >> 4, proto = b[13] & 0x0f;
    if (fam > 3 || proto > 2)
        return SH_EPARSE;
    size_t alen = 0;
    const unsigned char *a = b + 16;
    if (fam == 1)
        alen = 12;
    else if (fam == 2)
        alen = 36;
    else if (fam == 3)
        alen = 216;
    if (len < alen)
        return SH_EPARSE;
    /* TLVs: type, 16-bit length, value; each inside the header */
    size_t off = alen;
    while (off < len) {
        if (len - off < 3)
            return SH_EPARSE;
        size_t tl = ((size_t)a[off + 1] << 8) | a[off + 2];
        if (len - off - 3 < tl)
            return SH_EPARSE;
        off += 3 + tl;
    }
    if (cmd == 0 || proto == 0) /* LOCAL, or UNSPEC transport: no client address */
        return (int)total;
    if (fam == 1) {
        struct sockaddr_in *s = (struct sockaddr_in *)&pp->src, *d = (struct sockaddr_in *)&pp->dst;
        memset(&pp->src, 0, sizeof(pp->src));
        memset(&pp->dst, 0, sizeof(pp->dst));
        s->sin_family = d->sin_family = AF_INET;
        memcpy(&s->sin_addr, a, 4);
        memcpy(&d->sin_addr, a + 4, 4);
        memcpy(&s->sin_port, a + 8, 2);
        memcpy(&d->sin_port, a + 10, 2);
        pp->family = AF_INET;
    } else if (fam == 2) {
        memset(&pp->src, 0, sizeof(pp->src));
        memset(&pp->dst, 0, sizeof(pp->dst));
        pp->src.sin6_family = pp->dst.sin6_family = AF_INET6;
        memcpy(&pp->src.sin6_addr, a, 16);
        memcpy(&pp->dst.sin6_addr, a + 16, 16);
        memcpy(&pp->src.sin6_port, a + 32, 2);
        memcpy(&pp->dst.sin6_port, a + 34, 2);
        pp->family = AF_INET6;
    }
    return (int)total; /* unix sockets: the connection's own address */
}

static int parse(sh_pp_t *pp, const char *b, size_t n)
{
    return b[0] == 'P'    ? parse_v1(pp, b, n)
           : b[0] == '\r' ? parse_v2(pp, (const unsigned char *)b, n)
                          : SH_EPARSE;
}

int sh_pp_input(sh_pp_t *pp, const char *data, size_t len, size_t *used)
{
    if (len == 0)
        return 0;
    size_t old = pp->blen;
    size_t take = len < (size_t)(SH_PP_MAX - old) ? len : (size_t)(SH_PP_MAX - old);
    int rc;
    if (old == 0) { /* the usual case: the whole header in the first read */
        rc = parse(pp, data, take);
        if (rc > 0) {
            *used = (size_t)rc;
            return 1;
        }
        if (rc < 0 || take >= SH_PP_MAX)
            return SH_EPARSE;
        pp->buf = sh_malloc(SH_PP_MAX);
    }
    memcpy(pp->buf + old, data, take);
    pp->blen = (uint16_t)(old + take);
    rc = parse(pp, pp->buf, pp->blen);
    if (rc < 0)
        return SH_EPARSE;
    if (rc == 0)
        return pp->blen >= SH_PP_MAX ? SH_EPARSE : 0;
    *used = (size_t)rc - old;
    return 1;
}

void sh_pp_release(sh_pp_t *pp)
{
    sh_free(pp->buf);
    pp->buf = NULL;
    pp->blen = 0;
}

void sh_pp_addr_text(const struct sockaddr_in6 *sa, char *out, size_t outlen)
{
    if (sa->sin6_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)outlen);
    else if (sa->sin6_family == AF_INET6)
        inet_ntop(AF_INET6, &sa->sin6_addr, out, (socklen_t)outlen);
    else if (outlen > 0)
        out[0] = '\0';
}
