/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of the authentication checks: htpasswd schemes as nginx reads
 * them (auth_basic), Apache's $apr1$ against openssl passwd's output, and
 * the JWT verifier (auth_jwt) on RFC 7515's HS256 example: time checks
 * with leeway, alg none, JWE, kid, size, and the variable texts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "node/modules/auth_basic.h"
#include "node/modules/jwt.h"

static void apr1_vector(void **st)
{
    (void)st;
    char out[64];
    /* openssl passwd -apr1 -salt abcdefgh password */
    assert_int_equal(sh_apr1("password", 8, "$apr1$abcdefgh$", out), 0);
    assert_string_equal(out, "$apr1$abcdefgh$FBwExRW4dCc8aL.OvjpIE1");
    assert_int_equal(sh_htpasswd_check("$apr1$abcdefgh$FBwExRW4dCc8aL.OvjpIE1", "password", 8), 1);
    assert_int_equal(sh_htpasswd_check("$apr1$abcdefgh$FBwExRW4dCc8aL.OvjpIE1", "passwore", 8), 0);
}

static void schemes(void **st)
{
    (void)st;
    assert_int_equal(sh_htpasswd_check("{PLAIN}password", "password", 8), 1);
    assert_int_equal(sh_htpasswd_check("{PLAIN}password", "passwor", 7), 0);
    assert_int_equal(sh_htpasswd_check("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "password", 8), 1);
    assert_int_equal(sh_htpasswd_check("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "Password", 8), 0);
    assert_int_equal(sh_htpasswd_check("{SSHA}QCdIktL+AaarHg+95cIrgxLRB4BOYUNs", "password", 8), 1);
    assert_int_equal(sh_htpasswd_check("{SHA}short", "password", 8), -1);
    /* openssl passwd -5 -salt saltsalt password (crypt(3)) */
    assert_int_equal(
        sh_htpasswd_check("$5$saltsalt$gOjOtoMpVhru2uyjeJSEc/JaLQWOXMNmlOnj6T4AtC.", "password", 8),
        1);
    assert_int_equal(sh_htpasswd_check("$5$saltsalt$gOjOtoMpVhru2uyjeJSEc/JaLQWOXMNmlOnj6T4AtC.",
                                       "password\0x", 10),
                     0);
    assert_int_equal(sh_htpasswd_check("*", "x", 1), -1);
    assert_false(sh_htpasswd_slow("{SSHA}x"));
    assert_true(sh_htpasswd_slow("$2y$10$x"));
    assert_true(sh_htpasswd_slow("$apr1$x"));
}

/* RFC 7515 A.1 */
static const char rfc_key[] = "{\"kty\":\"oct\",\"k\":\"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_"
                              "T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow\"}";
static const char rfc_tok[] =
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0"
    "dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

static int verify(const sh_jwks_t *s, const char *tok, size_t len, int64_t now, int64_t leeway,
                  const char **reason)
{
    const sh_jwks_t *sets[] = {s};
    sh_jwt_t t;
    int rc = sh_jwt_verify(tok, len, sets, 1, now, leeway, &t, reason);
    if (rc == 0)
        sh_jwt_clear(&t);
    return rc;
}

static void jwt_rfc(void **st)
{
    (void)st;
    sh_jwks_t s = {0};
    char err[256];
    assert_int_equal(sh_jwks_add(&s, rfc_key, strlen(rfc_key), err, sizeof(err)), 0);
    const char *why = NULL;
    size_t tl = strlen(rfc_tok);
    assert_int_equal(verify(&s, rfc_tok, tl, 1300819000, 0, &why), 0);
    assert_int_equal(verify(&s, rfc_tok, tl, 1300819400, 0, &why), -1);
    assert_string_equal(why, "token expired");
    assert_int_equal(verify(&s, rfc_tok, tl, 1300819400, 60, &why), 0);
    char bad[sizeof(rfc_tok)];
    memcpy(bad, rfc_tok, sizeof(rfc_tok));
    bad[tl - 2] = bad[tl - 2] == 'X' ? 'Y' : 'X';
    assert_int_equal(verify(&s, bad, tl, 1300819000, 0, &why), -1);
    assert_string_equal(why, "signature verification failed");
    /* alg none: the same payload, no signature */
    const char *none = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJqb2UifQ.";
    assert_int_equal(verify(&s, none, strlen(none), 0, 0, &why), -1);
    assert_string_equal(why, "unsigned tokens (alg none) are refused");
    assert_int_equal(verify(&s, "a.b.c.d.e", 9, 0, 0, &why), -1);
    assert_string_equal(why, "encrypted tokens (JWE) are not supported");
    assert_int_equal(verify(&s, rfc_tok, SH_JWT_MAX + 1, 0, 0, &why), -1);
    assert_string_equal(why, "token too long");
    /* {"alg":"HS256","kid":"other"} with the RFC's payload and signature */
    const char *kid = "eyJhbGciOiJIUzI1NiIsImtpZCI6Im90aGVyIn0.eyJpc3MiOiJqb2UifQ.AAAA";
    assert_int_equal(verify(&s, kid, strlen(kid), 0, 0, &why), -1);
    assert_string_equal(why, "no key with the token's kid for its algorithm");
    sh_jwks_clear(&s);
}

static void jwks_errors(void **st)
{
    (void)st;
    sh_jwks_t s = {0};
    char err[256];
    assert_int_equal(sh_jwks_add(&s, "{", 1, err, sizeof(err)), -1);
    const char *rsa = "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"\",\"e\":\"AQAB\"}]}";
    assert_int_equal(sh_jwks_add(&s, rsa, strlen(rsa), err, sizeof(err)), -1);
    const char *enc = "{\"keys\":[{\"kty\":\"oct\",\"use\":\"enc\",\"k\":\"AAAA\"}]}";
    assert_int_equal(sh_jwks_add(&s, enc, strlen(enc), err, sizeof(err)), -1);
    assert_string_equal(err, "no usable signing key");
    assert_int_equal(sh_jwks_add(&s, "-----BEGIN x", 12, err, sizeof(err)), -1);
    sh_jwks_clear(&s);
}

static void value_text(void **st)
{
    (void)st;
    json_t *j =
        json_loads("{\"a\":[\"x\",\"y\",3],\"b\":{\"c\":true},\"n\":1.5,\"t\":false}", 0, NULL);
    sh_buf_t b = {0};
    sh_jwt_value_text(json_object_get(j, "a"), &b);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "x,y,3", 5);
    b.len = 0;
    sh_jwt_value_text(json_object_get(j, "b"), &b);
    assert_memory_equal(b.data, "{\"c\":true}", b.len);
    b.len = 0;
    sh_jwt_value_text(json_object_get(j, "t"), &b);
    assert_memory_equal(b.data, "false", 5);
    sh_buf_dispose(&b);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(apr1_vector), cmocka_unit_test(schemes),    cmocka_unit_test(jwt_rfc),
        cmocka_unit_test(jwks_errors), cmocka_unit_test(value_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
