/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `auth_basic` / `auth_basic_user_file`: HTTP Basic authentication against
 * an htpasswd file, as nginx reads it (an access phase check, under
 * `satisfy`). The password checks are exported for the unit tests and the
 * fuzz target.
 */
#ifndef SH_AUTH_BASIC_H
#define SH_AUTH_BASIC_H

#include <stddef.h>

#include "core/conf.h"

extern sh_conf_module_t sh_auth_basic_module;

/* Whether password pw matches the htpasswd hash (NUL-terminated): 1 yes,
 * 0 no, -1 a hash no scheme can read. Schemes: {PLAIN}, {SHA}, {SSHA},
 * $apr1$ (here), else crypt(3) (libcrypt: $2y$/$2b$, $5$, $6$, $1$,
 * yescrypt, DES). Any thread. */
int sh_htpasswd_check(const char *hash, const char *pw, size_t pwlen);
/* Whether checking hash costs more than a few microseconds (everything
 * but {PLAIN}, {SHA} and {SSHA}): it then runs on the thread pool. */
int sh_htpasswd_slow(const char *hash);
/* Apache's $apr1$ MD5: the hash of pw with the salt of setting ("$apr1$SALT
 * [$...]") into out (at least 38 bytes). 0, or -1 for a bad setting. */
int sh_apr1(const char *pw, size_t pwlen, const char *setting, char out[64]);

#endif
