/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS termination: the `ssl_*` directives (a module with its own conf at
 * the http and server levels) and the per-connection TLS layer, OpenSSL 3
 * over our own BIO so that ciphertext goes straight from the worker's
 * read buffer into OpenSSL and from OpenSSL into the connection's write
 * path, with no socket inside OpenSSL.
 *
 * Configuration: every server on a `listen ... ssl` address gets one
 * SSL_CTX built at load (several certificate/key pairs per server, e.g.
 * ECDSA and RSA). A connection starts on the address's default server's
 * SSL_CTX; SNI switches it to the SSL_CTX of the server that name
 * selects (nginx's rules, sh_http_find_server). The session cache and
 * the session-ticket keys are those of that first SSL_CTX (OpenSSL keeps
 * them on the "session context"), which is shared by all worker threads:
 * a session made on one worker resumes on any other.
 *
 * Reload: SIGHUP loads the whole configuration again (cmd/shoal/main.c),
 * so every certificate, key, ticket key and stapling file is read again
 * into new SSL_CTXs; connections already open keep theirs (each SSL
 * holds a reference) and finish on the previous configuration.
 *
 * OpenSSL's error queue is read, translated and logged here only.
 */
#ifndef SH_TLS_H
#define SH_TLS_H

#include <openssl/types.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "core/conf.h"
#include "node/pipeline/http_conf.h"

extern sh_conf_module_t sh_ssl_module;

/* Give OpenSSL our allocator. Call once, first thing in main(), before
 * anything else touches OpenSSL. Returns 0 or SH_ESTATE when OpenSSL had
 * already allocated (it then keeps its own). */
int sh_tls_global_init(void);

/* ------------------------------------------------ per connection -- */

typedef struct sh_tls_s sh_tls_t;

/* A piece of plaintext for the connection. Returns 0 to go on, -1 when
 * the connection closed (no more callbacks then). */
typedef int (*sh_tls_plain_cb)(void *arg, const char *data, size_t len);

/* Start TLS on an accepted connection of addr (which has opt.ssl).
 * stream is where ciphertext is written; sent_cb is handed to
 * sh_stream_send for those writes. Returns NULL (logged) when the
 * address has no usable SSL_CTX. Worker thread. */
sh_tls_t *sh_tls_create(const sh_http_addr_t *addr, uv_stream_t *stream,
                        void (*sent_cb)(uv_stream_t *, int), uint64_t conn_id);
void sh_tls_destroy(sh_tls_t *t);

/* Ciphertext arrived: handshake or decrypt. Plaintext is decrypted into
 * buf[0..cap) and handed to cb piece by piece; all of data is consumed.
 * Output the handshake needs is sent. Returns 0, SH_ECLOSED when the peer
 * closed the TLS session (close_notify), SH_EIO on a TLS error (logged
 * here; the caller closes the connection), or -1 passed on from cb. */
int sh_tls_input(sh_tls_t *t, const char *data, size_t len, char *buf, size_t cap,
                 sh_tls_plain_cb cb, void *arg);

/* Encrypt and send (backpressure: the stream's write queue, as plain
 * writes). Returns 0 or SH_EIO. */
int sh_tls_send(sh_tls_t *t, const uv_buf_t *bufs, unsigned n);

/* Send close_notify (once). */
void sh_tls_shutdown(sh_tls_t *t);

int sh_tls_handshake_done(const sh_tls_t *t);
/* Whether plaintext now comes from TLS 1.3 early data (0-RTT, `ssl_early_data
 * on`): accepted, and the client's Finished not in yet. Such data may be a
 * replay (RFC 8446 8, RFC 8470). */
int sh_tls_in_early_data(const sh_tls_t *t);
/* The handshake completed: resume the requests the ssl module held at
 * post-read because they came in early data with a method that is not
 * safe (a no-op before, or when none is held). The connection calls it
 * after sh_tls_input. */
void sh_tls_resume_held(sh_tls_t *t);
/* The ALPN protocol chosen: "h2", "http/1.1", or NULL. */
const char *sh_tls_alpn(const sh_tls_t *t);

/* ssl_verify_client, checked per request as nginx does (the handshake
 * goes on whatever the verification said): 0 when the request may go on;
 * 421 when srv (the server the Host chose) verifies clients and is not the
 * server the handshake chose (SNI); 495 when the client certificate
 * failed verification; 496 when `ssl_verify_client on` and the client sent
 * none. Logged here. */
int sh_tls_client_check(const sh_tls_t *t, const sh_http_srv_t *srv);

/* Variables: $ssl_protocol, $ssl_cipher, $ssl_server_name,
 * $ssl_session_reused ("r" or "."), $ssl_alpn_protocol, $ssl_early_data.
 * Append and return 1, or 0 when not set. */
enum sh_tls_var {
    SH_TLS_VAR_PROTOCOL,
    SH_TLS_VAR_CIPHER,
    SH_TLS_VAR_SERVER_NAME,
    SH_TLS_VAR_SESSION_REUSED,
    SH_TLS_VAR_ALPN,
    SH_TLS_VAR_EARLY_DATA, /* "1" in early data, else not set */
    SH_TLS_VAR_SESSION_ID, /* hex */
    SH_TLS_VAR_CURVE,      /* the key exchange group: X25519, prime256v1, ... */
    /* the client certificate (ssl_verify_client), nginx's formats */
    SH_TLS_VAR_CLIENT_VERIFY, /* SUCCESS, FAILED:reason, NONE */
    SH_TLS_VAR_CLIENT_S_DN,   /* RFC 2253 */
    SH_TLS_VAR_CLIENT_I_DN,
    SH_TLS_VAR_CLIENT_SERIAL,       /* hex */
    SH_TLS_VAR_CLIENT_FINGERPRINT,  /* SHA-1 of the DER, hex */
    SH_TLS_VAR_CLIENT_RAW_CERT,     /* PEM */
    SH_TLS_VAR_CLIENT_CERT,         /* PEM, lines after the first start with a tab */
    SH_TLS_VAR_CLIENT_ESCAPED_CERT, /* PEM, URL-encoded */
    SH_TLS_VAR_CLIENT_V_START,
    SH_TLS_VAR_CLIENT_V_END,
    SH_TLS_VAR_CLIENT_V_REMAIN /* days */
};
int sh_tls_var(const sh_tls_t *t, int which, sh_buf_t *out);

/* ------------------------------------------------ shared with proxy_ssl -- */
/* What the upstream side (node/proxy/proxy_ssl.c: proxy_ssl_*, grpc_ssl_*)
 * does the same way; OpenSSL's error queue is read here only. */

/* ssl_protocols and its upstream forms, as bits */
#define SH_TLS_PROTO_TLSv1   0x01
#define SH_TLS_PROTO_TLSv1_1 0x02
#define SH_TLS_PROTO_TLSv1_2 0x04
#define SH_TLS_PROTO_TLSv1_3 0x08

/* The setter (sh_conf_cmd_t) of ssl_protocols, proxy_ssl_protocols and
 * grpc_ssl_protocols: the arguments as SH_TLS_PROTO_* bits into the int at
 * cmd->offset (SH_CONF_UNSET until set: "is duplicate" after); SSLv2 and
 * SSLv3 are warned about and ignored (OpenSSL 3 has neither). */
int sh_tls_set_protocols(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf);

/* OpenSSL's error queue (this thread's) as one string "(SSL: error:...
 * ...)" into out[0..cap), "" when empty; the queue is emptied. */
void sh_tls_errors(char *out, size_t cap);

/* ssl_conf_command and its upstream forms: n name/value pairs
 * (pairs[2i], pairs[2i + 1]) given to ctx in order with SSL_CONF_cmd, for
 * a server context (server) or a client's. 0, or -1 with err set
 * ("SSL_CONF_cmd(\"NAME\", \"VALUE\") failed (SSL: ...)"). Loading thread. */
int sh_tls_conf_commands(SSL_CTX *ctx, int server, char *const *pairs, size_t n, char *err,
                         size_t errlen);

/* SSL_new(ctx); NULL with "SSL_new() failed (SSL: ...)" logged. */
SSL *sh_tls_ssl_new(SSL_CTX *ctx);

/* OpenSSL's pem_password_cb for a *_password_file: ud is the passphrase
 * being tried (NUL-terminated), or NULL for none; never asks a terminal. */
int sh_tls_passwd_cb(char *buf, int size, int rwflag, void *ud);

/* ------------------------------------------------ pure helpers -- */
/* Exposed for the fuzz harness and unit tests. */

/* Parse an nginx session-ticket key file: 48 bytes (16 name, 16 HMAC,
 * 16 AES-128) or 80 bytes (16 name, 32 HMAC, 32 AES-256). Returns 0 and
 * fills the key, or SH_EINVAL with *why set. */
typedef struct {
    unsigned char name[16];
    unsigned char hmac[32];
    unsigned char aes[32];
    size_t key_len; /* 16 or 32 */
} sh_tls_ticket_key_t;
int sh_tls_parse_ticket_key(const unsigned char *data, size_t len, sh_tls_ticket_key_t *key,
                            const char **why);

/* ALPN selection on the client's list (wire format: length-prefixed
 * names). h2: whether h2 may be chosen. Returns 1 with *out and *outlen set
 * to the chosen name inside in, 0 when nothing matches, SH_EPARSE when
 * the list is malformed. */
int sh_tls_alpn_select(const unsigned char *in, unsigned inlen, int h2, const unsigned char **out,
                       unsigned char *outlen);

#endif
