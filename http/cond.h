/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Conditional requests and byte ranges as nginx answers them (its
 * not_modified and range filters), pure so that every producer of a
 * response with validators and a known length shares them: static files
 * (they seek in the file) and the response cache (it seeks in the stored
 * body). No I/O, no clock, no allocation.
 */
#ifndef SH_HTTP_COND_H
#define SH_HTTP_COND_H

#include <stddef.h>
#include <stdint.h>

/* if_modified_since */
enum { SH_IMS_OFF = 0, SH_IMS_EXACT = 1, SH_IMS_BEFORE = 2 };

/* The request's validators; a NULL value means the field is absent. */
typedef struct {
    const char *if_none_match, *if_match, *if_modified_since, *if_unmodified_since;
    size_t if_none_match_len, if_match_len, if_modified_since_len, if_unmodified_since_len;
} sh_http_cond_t;

/*
 * nginx's not-modified filter for a 200 whose ETag is etag (NULL: none)
 * and whose Last-Modified is mtime (-1: none): 412 (If-Unmodified-Since
 * or If-Match fail), 304 (If-Modified-Since and If-None-Match, those that
 * are present, all say not modified), or 200 (send the response).
 */
int sh_http_cond_eval(const sh_http_cond_t *c, const char *etag, size_t etag_len, int64_t mtime,
                      int ims_mode);

/* nginx's entity-tag list test: 1 if etag is in the list (or the list is
 * exactly "*"); weak: the weak comparison of If-None-Match. */
int sh_http_etag_match(const char *list, size_t len, const char *etag, size_t etag_len, int weak);

/* A range [start, end) of the representation. */
typedef struct {
    int64_t start, end;
} sh_http_range_t;

#define SH_RANGE_IGNORE        0    /* serve the whole representation (200) */
#define SH_RANGE_UNSATISFIABLE (-1) /* 416 with Content-Range: bytes *\/SIZE */
#define SH_RANGES_MAX          256  /* more ranges than this: the whole file */

/*
 * nginx's Range parse against a representation of size bytes: the number
 * of ranges written to out (1: a single-part 206, more: multipart), or
 * SH_RANGE_IGNORE (no "bytes=" unit, more than max_ranges ranges
 * (max_ranges < 0: no limit), ranges adding up to more than the size) or
 * SH_RANGE_UNSATISFIABLE (a syntax error, nothing satisfiable). out holds
 * SH_RANGES_MAX entries.
 */
int sh_http_range_parse(const char *v, size_t len, int64_t size, int max_ranges,
                        sh_http_range_t *out);

/* If-Range: 1 when the range applies to this representation (an entity
 * tag equal to etag, strong comparison, or a date equal to mtime). */
int sh_http_if_range(const char *v, size_t len, const char *etag, size_t etag_len, int64_t mtime);

#endif
