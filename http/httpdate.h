/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP dates (RFC 9110 5.6.7): formatting as IMF-fixdate and parsing of
 * the three forms a recipient must accept (IMF-fixdate, RFC 850 and
 * asctime). Pure: bytes and numbers in, no clock, no locale, any thread.
 * Part of the HTTP codec (the sh_http1 target) so every layer shares it.
 */
#ifndef SH_HTTPDATE_H
#define SH_HTTPDATE_H

#include <stddef.h>
#include <stdint.h>

#define SH_HTTP_DATE_LEN 29 /* "Sun, 06 Nov 1994 08:49:37 GMT" */

/* Write t (seconds since the epoch, UTC; years 1970..9999) as IMF-fixdate
 * into out (SH_HTTP_DATE_LEN + 1 bytes, NUL-terminated). Returns
 * SH_HTTP_DATE_LEN; times outside the range are clamped to it. */
size_t sh_http_date_format(char *out, int64_t t);

/* Parse an HTTP date of len bytes (no surrounding whitespace) into *t.
 * Returns 0, or SH_EPARSE for anything else (a bad field, a day that the
 * month does not have, a year before 1970). RFC 850's two-digit year is
 * taken as 19xx from 70 and 20xx below (RFC 9110 5.6.7's 50-year rule,
 * as nginx does). */
int sh_http_date_parse(const char *s, size_t len, int64_t *t);

#endif
