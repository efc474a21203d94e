/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: auth_jwt's token parser and verifier, its key set parser, and
 * the cheap htpasswd schemes of auth_basic. The first byte picks: a token
 * checked against a fixed key set (an HMAC key and a P-256 key, with and
 * without kid), the bytes as a JWK set or PEM text, or an htpasswd hash
 * ({SHA}, {SSHA}, {PLAIN}, $apr1$) with a password. Nothing may crash or
 * leak; a token that verifies must have an object payload. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "node/modules/auth_basic.h"
#include "node/modules/jwt.h"

static const char keys_json[] =
    "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"hs\",\"k\":\"c2VjcmV0LWtleS1mb3ItZnV6emluZw\"},"
    "{\"kty\":\"EC\",\"kid\":\"ec\",\"crv\":\"P-256\","
    "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
    "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"},"
    "{\"kty\":\"oct\",\"k\":\"YW5vdGhlcg\"}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sh_jwks_t keys;
    static int ready;
    char err[256];
    if (!ready) {
        if (sh_jwks_add(&keys, keys_json, sizeof(keys_json) - 1, err, sizeof(err)) != 0)
            abort();
        ready = 1;
    }
    if (size < 1)
        return 0;
    int mode = data[0] % 3;
    data++;
    size--;
    if (mode == 0) {
        const sh_jwks_t *sets[] = {&keys};
        sh_jwt_t t;
        const char *reason = NULL;
        if (sh_jwt_verify((const char *)data, size, sets, 1, 1700000000, 60, &t, &reason) == 0) {
            if (!json_is_object(t.payload) || !json_is_object(t.header))
                abort();
            sh_buf_t b = {0};
            sh_jwt_value_text(t.payload, &b);
            sh_buf_dispose(&b);
            sh_jwt_clear(&t);
        } else if (reason == NULL) {
            abort();
        }
    } else if (mode == 1) {
        sh_jwks_t s = {0};
        if (sh_jwks_add(&s, (const char *)data, size, err, sizeof(err)) == 0 && s.n == 0)
            abort();
        sh_jwks_clear(&s);
    } else {
        /* "hash\npassword": only the schemes that cost microseconds */
        const uint8_t *nl = memchr(data, '\n', size);
        if (nl == NULL)
            return 0;
        char *hash = sh_strndup((const char *)data, (size_t)(nl - data));
        if (strncmp(hash, "{SHA}", 5) == 0 || strncmp(hash, "{SSHA}", 6) == 0 ||
            strncmp(hash, "{PLAIN}", 7) == 0 || strncmp(hash, "$apr1$", 6) == 0)
            sh_htpasswd_check(hash, (const char *)nl + 1, size - (size_t)(nl - data) - 1);
        sh_free(hash);
    }
    return 0;
}
