/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The PROXY protocol preface (HAProxy's spec, versions 1 and 2), what a
 * load balancer (AWS NLB, HAProxy) sends before anything else on a
 * connection to say whose it is. `listen ... proxy_protocol` makes the
 * connection layer feed its first bytes here, before TLS on TLS ports.
 *
 *   v1  "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" or "PROXY UNKNOWN...\r\n",
 *       at most 107 bytes (the spec's limit);
 *   v2  the 12-byte signature, version/command, family, length, the
 *       addresses (TCP/UDP over IPv4 or IPv6), then TLVs, which are
 *       checked to lie inside the header and skipped. LOCAL, UNSPEC and
 *       unix-socket families carry no client address: the connection's
 *       own is kept, as nginx does.
 *
 * A header is at most SH_PP_MAX bytes (longer v2 headers are refused);
 * bytes after it belong to the client's stream. Anything else is
 * malformed: the caller closes the connection and counts it. Pure code:
 * no I/O, any thread; the state is the caller's.
 */
#ifndef SH_PROXYPROTO_H
#define SH_PROXYPROTO_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#define SH_PP_MAX 1024

typedef struct {
    int family;                   /* AF_INET, AF_INET6, or AF_UNSPEC: no address given */
    int version;                  /* 1 or 2 */
    struct sockaddr_in6 src, dst; /* a sockaddr_in in the first bytes for AF_INET */
    uint16_t blen;
    char *buf; /* the header so far, only when it spans reads (sh_pp_release) */
} sh_pp_t;

/* Feed len bytes of the connection's start. Returns 1 when the header is
 * complete (*used: how many of these bytes were its end; the rest are the
 * client's), 0 when all of them were taken and more are needed, or
 * SH_EPARSE for a malformed or too long header. */
int sh_pp_input(sh_pp_t *pp, const char *data, size_t len, size_t *used);

/* Free what a header split over reads needed (the result stays). */
void sh_pp_release(sh_pp_t *pp);

/* The address text of sa ("192.0.2.1", "2001:db8::1") into out. */
void sh_pp_addr_text(const struct sockaddr_in6 *sa, char *out, size_t outlen);

#endif
