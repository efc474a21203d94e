/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared TLS session-ticket keys (issue 13): the keys that encrypt session
 * tickets when a TLS server has `ssl_session_tickets on` (the default) and
 * no `ssl_session_ticket_key` file. One process-wide set, the same on
 * every member of the cluster, so a ticket issued by node A resumes on
 * node B.
 *
 * Lifetime, as nginx 1.23.2+ rotates its own keys: a key encrypts new
 * tickets for one period R, then only decrypts (a ticket under it is
 * renewed under the current key) for two more, then is gone; at most
 * three keys live. In a cluster the maker makes each key a lead ahead of
 * its turn (R/4, at most 2 s): it travels to every member while it only
 * decrypts, and all start encrypting with it when its time (`created`)
 * comes, so a ticket issued just after a rotation resumes everywhere; the
 * oldest key then leaves the lead early (it decrypts for 2R - lead). R is
 * `ssl_session_ticket_key_rotation` (http level, Shoal's) or else the ssl_session_timeout of the
 * TLS servers (nginx's rule; default 5m).
 *
 * Who makes keys: without a cluster, this node, every R. In a cluster,
 * the live member with the smallest name makes the next key when the
 * newest is R old, and the keys travel on the ticket-key channel
 * (tls_tickets_sync.c) inside the sealed gossip, never in clear; another
 * node makes one itself only if none came R + grace after the last (the
 * maker died). Every node encrypts with the newest key it knows (ties:
 * the larger name), so two keys made at once converge. Ages are taken on
 * the wall clock of the maker: the members' clocks must agree to well
 * under R (NTP).
 *
 * Threads: any (one mutex, held for a copy; workers take it per full
 * handshake or resumption, never for I/O).
 */
#ifndef SH_TLS_TICKETS_H
#define SH_TLS_TICKETS_H

#include <stddef.h>
#include <stdint.h>

#include "core/conf.h"

#define SH_TLS_TICKET_KEYS 3 /* one encrypting, two decrypting: nginx's */

extern sh_conf_module_t sh_tls_tickets_module;

/* One shared key. */
typedef struct {
    unsigned char name[16];
    unsigned char hmac[32];
    unsigned char aes[32];
    uint64_t created; /* wall clock ms, the maker's */
    char origin[64];  /* the node that made it */
} sh_tls_shared_key_t;

/* The OpenSSL ticket callback (SSL_CTX_set_tlsext_ticket_key_evp_cb) for
 * servers without ssl_session_ticket_key; tls.c installs it. The opaque
 * types keep OpenSSL's headers out of this one. */
struct ssl_st;
struct evp_cipher_ctx_st;
struct evp_mac_ctx_st;
int sh_tls_tickets_cb(struct ssl_st *ssl, unsigned char *name, unsigned char *iv,
                      struct evp_cipher_ctx_st *ectx, struct evp_mac_ctx_st *hctx, int enc);

/* tls.c, at load: a TLS server uses the shared keys with this
 * ssl_session_timeout (R when no rotation is set). */
void sh_tls_tickets_note_timeout(uint64_t ms);

/* ---- for the ticket-key channel (tls_tickets_sync.c) */

/* The rotation period R in ms. */
uint64_t sh_tls_tickets_period(void);
/* Say whether this node makes the keys on time (the cluster's maker, or
 * alone) or only as a fallback. */
void sh_tls_tickets_set_maker(int maker, const char *self);
/* Make a key now if one is due (now: wall clock ms); 1 if made. */
int sh_tls_tickets_rotate(uint64_t now);
/* Encode the live keys (sh_malloc'd), and their version (bumped by each
 * change). */
uint8_t *sh_tls_tickets_encode(size_t *len, uint64_t *version);
/* Merge keys from a peer; 1 if any was new, 0 if not, SH_EPARSE. */
int sh_tls_tickets_merge(const uint8_t *data, size_t len);
uint64_t sh_tls_tickets_version(void);
/* Copy the live keys (newest first) into out (at most max); how many. */
size_t sh_tls_tickets_list(sh_tls_shared_key_t *out, size_t max, uint64_t now);

#endif
