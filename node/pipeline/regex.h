/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Regular expressions for routing, server names and maps: a thin wrapper
 * over PCRE2 (8-bit), the one module that talks to the library (style.md,
 * rule 4). A pattern is compiled and JIT-compiled once, at configuration
 * load; matching runs on workers with a match-data block of our own per
 * call (on the stack), so a compiled sh_regex_t is immutable and shared by
 * every worker thread.
 *
 * Captures are reported as an ovector of byte offsets into the subject
 * (pairs: start, end; group 0 is the whole match; an unset group has
 * both offsets SH_REGEX_UNSET), the same numbering as $0..$9 in nginx.
 */
#ifndef SH_REGEX_H
#define SH_REGEX_H

#include <stddef.h>

#define SH_REGEX_MAX_CAPTURES 10 /* $0..$9, as nginx exposes them */
#define SH_REGEX_OVEC         (2 * SH_REGEX_MAX_CAPTURES)
#define SH_REGEX_UNSET        ((size_t)-1)

typedef struct sh_regex_s sh_regex_t;

/*
 * Compile pattern (NUL-terminated). caseless: ~* semantics. On failure
 * returns SH_EINVAL and writes PCRE2's message ("... at offset N") into
 * err[errlen]; *out stays NULL. The result is owned by the caller.
 */
int sh_regex_compile(const char *pattern, int caseless, sh_regex_t **out, char *err, size_t errlen);
void sh_regex_destroy(sh_regex_t *re);

/*
 * Match subject[0..len). Returns 1 on a match, 0 on none, SH_EIO on a
 * matching error (match limit hit: counted as no match by callers). When
 * ovec is not NULL it receives SH_REGEX_OVEC offsets (groups past the
 * pattern's count are SH_REGEX_UNSET). Any thread.
 */
int sh_regex_match(const sh_regex_t *re, const char *subject, size_t len, size_t *ovec);

/* Number of capture groups in the pattern (not counting group 0). */
int sh_regex_ngroups(const sh_regex_t *re);
/* Named groups: count, and the i-th name and its group number. */
int sh_regex_nnames(const sh_regex_t *re);
const char *sh_regex_name(const sh_regex_t *re, int i, int *group);
/* The group number for name[0..len), or -1. */
int sh_regex_group(const sh_regex_t *re, const char *name, size_t len);
/* The pattern as written. */
const char *sh_regex_pattern(const sh_regex_t *re);

#endif
