/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JSON Web Tokens, signed (JWS compact form, RFC 7515/7519), and the keys
 * that verify them (JWK sets, RFC 7517, and PEM public keys): the parser
 * and verifier auth_jwt uses, pure (no request, no I/O), so the fuzz
 * target drives it as it is.
 *
 * Algorithms: HS256/384/512 (oct keys only: a public key is never an HMAC
 * secret, which closes the RS256-as-HS256 confusion), RS256/384/512,
 * PS256/384/512, ES256/384/512 (the curve must match) and EdDSA (Ed25519,
 * Ed448), verified with OpenSSL 3 EVP. `alg: none`, a `crit` header, and
 * the five-part JWE form are refused. Keys are immutable once loaded and
 * shared by the workers.
 */
#ifndef SH_JWT_H
#define SH_JWT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define SH_JWT_MAX 16384 /* bytes of a token; longer ones are refused */

typedef struct sh_jwk_s sh_jwk_t;

typedef struct {
    sh_jwk_t *keys;
    size_t n;
    uint64_t id; /* unique in the process: the verified-token cache's key */
} sh_jwks_t;

/* Add the keys of text to set: a JWK set ({"keys": [...]}), one JWK, or
 * PEM public keys (several may follow each other). 0, or -1 with a
 * message in err. Keys of an unknown type in a set are skipped (RFC 7517
 * 5); the set must end with at least one key. */
int sh_jwks_add(sh_jwks_t *set, const char *text, size_t len, char *err, size_t errlen);
void sh_jwks_clear(sh_jwks_t *set);

/* A verified token. */
typedef struct {
    json_t *header;
    json_t *payload;
} sh_jwt_t;

/* Verify token (len bytes) with the keys of the sets (the header's kid
 * picks the key; without kid every key of the right type is tried), then
 * exp, nbf and iat against now (seconds) with leeway. 0 and *out filled
 * (sh_jwt_clear it), or -1 with *reason a static text for the log.
 * A token whose signature verified is remembered per thread (SHA-256 of
 * the token and the sets' ids, 1024 entries): the same token again skips
 * the signature check (tens of microseconds for ES256 and RS256), never
 * the header, payload and time checks. */
int sh_jwt_verify(const char *token, size_t len, const sh_jwks_t *const *sets, size_t nsets,
                  int64_t now, int64_t leeway, sh_jwt_t *out, const char **reason);
void sh_jwt_clear(sh_jwt_t *t);

/* A JSON value as nginx Plus puts it in a variable: a string as it is,
 * numbers and true/false/null as text, an array's elements joined by ','
 * and an object as compact JSON. Appends to out. */
void sh_jwt_value_text(const json_t *v, sh_buf_t *out);

#endif
