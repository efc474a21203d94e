/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS to upstream servers (`proxy_pass https://...`): nginx's proxy_ssl_*
 * directives, one client SSL_CTX per location that proxies to https
 * (built at load, so a bad file is a load error), and the TLS layer of one
 * upstream connection.
 *
 * The layer works on byte buffers (memory BIOs): the proxy hands it the
 * ciphertext it read and gets plaintext back, hands it plaintext and gets
 * the ciphertext to write; it does no I/O. Verification follows nginx: the
 * handshake completes, then the chain's result (proxy_ssl_verify,
 * proxy_ssl_trusted_certificate, proxy_ssl_verify_depth, proxy_ssl_crl) and
 * the name (proxy_ssl_name, $proxy_host by default) are checked, and a
 * failure says why in nginx's words. Sessions are kept per upstream server
 * in each worker (proxy_ssl_session_reuse, on by default) and offered on the
 * next handshake to it, TLS 1.3 tickets included.
 *
 * Worker thread only, except the configuration part (loading thread).
 */
#ifndef SH_PROXY_SSL_H
#define SH_PROXY_SSL_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "core/buf.h"
#include "core/conf.h"
#include "node/pipeline/node.h"
#include "node/proxy/upstream.h"

typedef struct sh_upssl_s sh_upssl_t;

extern sh_conf_module_t sh_proxy_ssl_module;
/* grpc_ssl_*: the same directives for `grpc_pass grpcs://` (ALPN h2; the
 * default name is grpc_pass's host) */
extern sh_conf_module_t sh_grpc_ssl_module;

/* Whether a pooled connection made with key `key` may carry r's request:
 * the key of r's TLS settings (its location's context and the server name
 * it verifies and sends). */
uint64_t sh_upssl_key(sh_request_t *r);

/* A TLS client for r's location to server peer of rt (its session slot).
 * NULL when r's location has no upstream TLS context (logged). */
sh_upssl_t *sh_upssl_create(sh_request_t *r, sh_ups_rt_t *rt, int peer);
/* The same for a grpcs:// connection of r's location (grpc_ssl_*); host
 * is grpc_pass's host, the name verified and sent by default. */
uint64_t sh_upssl_grpc_key(sh_request_t *r, const char *host);
sh_upssl_t *sh_upssl_grpc_create(sh_request_t *r, sh_ups_rt_t *rt, int peer, const char *host);
void sh_upssl_destroy(sh_upssl_t *t);
/* Before closing a connection whose handshake completed: our close_notify
 * appended to out (SSL_shutdown over the memory BIOs, never waits for the
 * server's). Returns 1 when out got bytes to send. */
int sh_upssl_shutdown(sh_upssl_t *t, sh_buf_t *out);
/* Whether the server selected ALPN "h2". */
int sh_upssl_alpn_h2(const sh_upssl_t *t);

/* Drive the handshake: in/len is ciphertext read (len 0 to start); the
 * ciphertext to send is appended to out. Returns 1 when the handshake is
 * done and the server verified, 0 while it needs more, -1 on failure
 * (*why says why, nginx's words; valid until t is destroyed). */
int sh_upssl_handshake(sh_upssl_t *t, const char *in, size_t len, sh_buf_t *out, const char **why);
/* Decrypt: plaintext appended to plain, ciphertext to send (alerts,
 * post-handshake messages) to out. Returns 0, SH_ECLOSED (the server's
 * close_notify), or SH_EIO (a TLS error, logged by the caller with why). */
int sh_upssl_read(sh_upssl_t *t, const char *in, size_t len, sh_buf_t *plain, sh_buf_t *out,
                  const char **why);
/* Encrypt n buffers: the ciphertext is appended to out. 0 or SH_EIO. */
int sh_upssl_write(sh_upssl_t *t, const uv_buf_t *bufs, unsigned n, sh_buf_t *out);
/* Whether the handshake resumed a session. */
int sh_upssl_reused(const sh_upssl_t *t);
/* A stored session (sh_peer_rt_t.ssl_sess), for sh_upstream_rt_dispose. */
void sh_upssl_session_free(void *sess);

#endif
