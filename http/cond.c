/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Conditional requests and byte ranges, nginx's rules (http/cond.h).
 */
#include "http/cond.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "http/httpdate.h"

int sh_http_etag_match(const char *list, size_t len, const char *etag, size_t etag_len, int weak)
{
    if (etag == NULL)
        return 0;
    const char *p = list, *e = list + len;
    if (len == 1 && *p == '*')
        return 1;
    if (weak && etag_len > 2 && etag[0] == 'W' && etag[1] == '/') {
        etag += 2;
        etag_len -= 2;
    }
    while (p < e) {
        if (weak && e - p > 2 && p[0] == 'W' && p[1] == '/')
            p += 2;
        if (etag_len > (size_t)(e - p))
            return 0;
        if (memcmp(p, etag, etag_len) == 0) {
            const char *q = p + etag_len;
            while (q < e && (*q == ' ' || *q == '\t'))
                q++;
            if (q == e || *q == ',')
                return 1;
        }
        while (p < e && *p != ',')
            p++;
        while (p < e && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
    }
    return 0;
}

int sh_http_cond_eval(const sh_http_cond_t *c, const char *etag, size_t etag_len, int64_t mtime,
                      int ims_mode)
{
    int64_t t;
    if (c->if_unmodified_since != NULL) {
        /* modified since (or no date to compare): the precondition fails */
        if (mtime < 0 ||
            sh_http_date_parse(c->if_unmodified_since, c->if_unmodified_since_len, &t) != 0 ||
            t < mtime)
            return 412;
    }
    if (c->if_match != NULL && !sh_http_etag_match(c->if_match, c->if_match_len, etag, etag_len, 0))
        return 412;
    if (c->if_modified_since == NULL && c->if_none_match == NULL)
        return 200;
    if (c->if_modified_since != NULL) {
        if (ims_mode == SH_IMS_OFF || mtime < 0 ||
            sh_http_date_parse(c->if_modified_since, c->if_modified_since_len, &t) != 0)
            return 200;
        if (ims_mode == SH_IMS_EXACT ? t != mtime : mtime > t)
            return 200;
    }
    if (c->if_none_match != NULL &&
        !sh_http_etag_match(c->if_none_match, c->if_none_match_len, etag, etag_len, 1))
        return 200;
    return 304;
}

int sh_http_if_range(const char *v, size_t len, const char *etag, size_t etag_len, int64_t mtime)
{
    if (len >= 2 && v[len - 1] == '"')
        return etag != NULL && etag_len == len && memcmp(etag, v, len) == 0;
    int64_t t;
    return mtime >= 0 && sh_http_date_parse(v, len, &t) == 0 && t == mtime;
}

static int digits(const char **pp, const char *e, int64_t *out)
{
    const char *p = *pp;
    int64_t n = 0;
    if (p >= e || *p < '0' || *p > '9')
        return -1;
    while (p < e && *p >= '0' && *p <= '9') {
        if (n > (INT64_MAX - 9) / 10)
            return -1;
        n = n * 10 + (*p++ - '0');
    }
    *pp = p;
    *out = n;
    return 0;
}

int sh_http_range_parse(const char *v, size_t len, int64_t size, int max_ranges,
                        sh_http_range_t *out)
{
    if (len < 7 || strncasecmp(v, "bytes=", 6) != 0)
        return SH_RANGE_IGNORE;
    const char *p = v + 6, *e = v + len;
    int n = 0;
    int64_t total = 0;
    int64_t left = max_ranges < 0 ? INT64_MAX : max_ranges;
    for (;;) {
        int64_t start = 0, end = 0;
        while (p < e && *p == ' ')
            p++;
        if (p < e && *p == '-') { /* suffix: the last N bytes */
            p++;
            if (digits(&p, e, &end) != 0)
                return SH_RANGE_UNSATISFIABLE;
            while (p < e && *p == ' ')
                p++;
            if (p < e && *p != ',')
                return SH_RANGE_UNSATISFIABLE;
            start = end < size ? size - end : 0;
            end = size;
        } else {
            if (digits(&p, e, &start) != 0)
                return SH_RANGE_UNSATISFIABLE;
            while (p < e && *p == ' ')
                p++;
            if (p >= e || *p++ != '-')
                return SH_RANGE_UNSATISFIABLE;
            while (p < e && *p == ' ')
                p++;
            if (p == e || *p == ',') {
                end = size;
            } else {
                if (digits(&p, e, &end) != 0)
                    return SH_RANGE_UNSATISFIABLE;
                while (p < e && *p == ' ')
                    p++;
                if (p < e && *p != ',')
                    return SH_RANGE_UNSATISFIABLE;
                end = end >= size ? size : end + 1;
            }
        }
        if (start < end) {
            if (n == SH_RANGES_MAX || left-- == 0)
                return SH_RANGE_IGNORE;
            out[n].start = start;
            out[n].end = end;
            n++;
            if (total > INT64_MAX - (end - start))
                return SH_RANGE_UNSATISFIABLE;
            total += end - start;
        } else if (start == 0) {
            return SH_RANGE_IGNORE; /* "bytes=0-" of an empty body, "-0" */
        }
        if (p >= e || *p++ != ',')
            break;
    }
    if (n == 0)
        return SH_RANGE_UNSATISFIABLE;
    return total > size ? SH_RANGE_IGNORE : n;
}
