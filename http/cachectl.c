/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Response cacheability from the upstream's head, nginx's rules (see the
 * header). nginx matches Cache-Control directives as substrings; here the
 * value is split into directives, which gives the same answers on every
 * value nginx documents (a "no-cache" inside a quoted argument of another
 * directive is the difference, and nginx's answer there is "not cached"
 * too: any directive named no-cache/no-store/private counts). Pure.
 */
#include "http/cachectl.h"

#include <string.h>
#include <strings.h>

#include "core/err.h"
#include "http/httpdate.h"

static int ieq(const char *a, size_t al, const char *b)
{
    size_t bl = strlen(b);
    return al == bl && strncasecmp(a, b, bl) == 0;
}

/* A delta-seconds argument: -2 on a non-digit (nginx: not cacheable). */
static int64_t delta(const char *v, size_t len)
{
    if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
        v++;
        len -= 2;
    }
    if (len == 0)
        return -2;
    int64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -2;
        if (n < (int64_t)1 << 40) /* large enough: clamp, never overflow */
            n = n * 10 + (v[i] - '0');
    }
    return n;
}

void sh_cachectl_parse_cc(const char *v, size_t len, sh_cc_t *cc)
{
    *cc = (sh_cc_t){0, -1, -1, -1, -1};
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t ns = i;
        while (i < len && v[i] != '=' && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        size_t nl = i - ns;
        const char *arg = NULL;
        size_t al = 0;
        while (i < len && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (i < len && v[i] == '=') {
            i++;
            while (i < len && (v[i] == ' ' || v[i] == '\t'))
                i++;
            size_t as = i;
            if (i < len && v[i] == '"') {
                i++;
                while (i < len && v[i] != '"')
                    i++;
                if (i < len)
                    i++;
            } else {
                while (i < len && v[i] != ',' && v[i] != ' ' && v[i] != '\t' && v[i] != ';')
                    i++;
            }
            arg = v + as;
            al = i - as;
        }
        while (i < len && v[i] != ',')
            i++; /* anything else up to the next directive */
        const char *name = v + ns;
        if (nl == 0)
            continue;
        if (ieq(name, nl, "no-cache"))
            cc->flags |= SH_CC_NO_CACHE;
        else if (ieq(name, nl, "no-store"))
            cc->flags |= SH_CC_NO_STORE;
        else if (ieq(name, nl, "private"))
            cc->flags |= SH_CC_PRIVATE;
        else if (ieq(name, nl, "max-age") && cc->max_age == -1)
            cc->max_age = arg ? delta(arg, al) : -2;
        else if (ieq(name, nl, "s-maxage") && cc->s_maxage == -1)
            cc->s_maxage = arg ? delta(arg, al) : -2;
        else if (ieq(name, nl, "stale-while-revalidate") && cc->swr == -1)
            cc->swr = arg ? delta(arg, al) : -2;
        else if (ieq(name, nl, "stale-if-error") && cc->sie == -1)
            cc->sie = arg ? delta(arg, al) : -2;
    }
}

int sh_cachectl_parse_xae(const char *v, size_t len, int64_t now, int64_t *until)
{
    int abs = len > 0 && v[0] == '@';
    int64_t n = abs ? delta(v + 1, len - 1) : delta(v, len);
    if (n < 0 || (len > 0 && v[0] == '"'))
        return SH_EPARSE;
    *until = abs ? n : n == 0 ? 0 : now + n;
    return 0;
}

void sh_cachectl_eval(const sh_http1_header_t *hs, size_t n, int64_t now, unsigned ignore,
                      sh_cachectl_t *out)
{
    *out = (sh_cachectl_t){.cacheable = 1, .updating = -1, .error = -1};
    const sh_http1_header_t *xae = NULL, *exp = NULL;
    int no_cache = 0, expired = 0;
    int64_t cc_valid = 0;
    size_t vary_total = 0;
    for (size_t i = 0; i < n; i++) {
        const sh_http1_header_t *h = &hs[i];
        if (ieq(h->name, h->name_len, "set-cookie")) {
            if (!(ignore & SH_CACHECTL_IGN_SET_COOKIE)) {
                out->cacheable = 0;
                out->reason = "Set-Cookie";
            }
        } else if (ieq(h->name, h->name_len, "x-accel-expires")) {
            if (!(ignore & SH_CACHECTL_IGN_XA_EXPIRES) && xae == NULL)
                xae = h;
        } else if (ieq(h->name, h->name_len, "expires")) {
            if (!(ignore & SH_CACHECTL_IGN_EXPIRES) && exp == NULL)
                exp = h;
        } else if (ieq(h->name, h->name_len, "cache-control")) {
            if (ignore & SH_CACHECTL_IGN_CACHE_CONTROL)
                continue;
            sh_cc_t cc;
            sh_cachectl_parse_cc(h->value, h->value_len, &cc);
            if (cc.flags)
                no_cache = 1;
            int64_t age = cc.s_maxage != -1 ? cc.s_maxage : cc.max_age;
            if (age == -2) {
                out->cacheable = 0;
                out->reason = "Cache-Control max-age";
            } else if (age == 0) {
                no_cache = 1;
            } else if (age > 0 && cc_valid == 0) {
                cc_valid = now + age;
            }
            if (cc.swr >= 0) {
                out->updating = cc.swr;
                out->error = cc.swr;
            }
            if (cc.sie >= 0)
                out->error = cc.sie;
        } else if (ieq(h->name, h->name_len, "vary")) {
            if (ignore & SH_CACHECTL_IGN_VARY)
                continue;
            vary_total += h->value_len + (vary_total ? 1 : 0);
            if (out->vary == NULL) {
                out->vary = h->value;
                out->vary_len = h->value_len;
            }
            if (sh_http1_has_token(h->value, h->value_len, "*") ||
                vary_total > SH_CACHECTL_VARY_MAX) {
                out->cacheable = 0;
                out->reason = "Vary";
            }
        }
    }
    if (!out->cacheable)
        return;
    /* X-Accel-Expires first: a valid one decides alone */
    if (xae != NULL) {
        int64_t until;
        if (sh_cachectl_parse_xae(xae->value, xae->value_len, now, &until) == 0) {
            if (until == 0) {
                out->cacheable = 0;
                out->reason = "X-Accel-Expires";
            } else {
                out->valid_until = until;
            }
            return;
        }
    }
    if (no_cache) {
        out->cacheable = 0;
        out->reason = "Cache-Control";
        return;
    }
    if (cc_valid != 0) {
        out->valid_until = cc_valid;
        return;
    }
    if (exp != NULL) {
        int64_t t;
        if (sh_http_date_parse(exp->value, exp->value_len, &t) != 0 || t < now)
            expired = 1;
        else
            out->valid_until = t;
    }
    if (expired) {
        out->cacheable = 0;
        out->reason = "Expires";
    }
}

int sh_cachectl_etag_match(const char *inm, size_t inm_len, const char *etag, size_t etag_len)
{
    if (etag_len >= 2 && etag[0] == 'W' && etag[1] == '/') {
        etag += 2;
        etag_len -= 2;
    }
    const char *v = inm, *e = inm + inm_len;
    while (v < e) {
        while (v < e && (*v == ' ' || *v == ',' || *v == '\t'))
            v++;
        const char *t = v;
        while (v < e && *v != ',')
            v++;
        const char *te = v;
        while (te > t && (te[-1] == ' ' || te[-1] == '\t'))
            te--;
        size_t tl = (size_t)(te - t);
        if (tl == 1 && t[0] == '*')
            return etag_len > 0;
        if (tl >= 2 && t[0] == 'W' && t[1] == '/') {
            t += 2;
            tl -= 2;
        }
        if (tl > 0 && tl == etag_len && memcmp(t, etag, tl) == 0)
            return 1;
    }
    return 0;
}

int sh_cachectl_range(const char *v, size_t len, int64_t size, int64_t *from, int64_t *to)
{
    if (len < 6 || strncasecmp(v, "bytes=", 6) != 0)
        return 0;
    const char *p = v + 6, *e = v + len;
    if (memchr(p, ',', (size_t)(e - p)) != NULL)
        return 0; /* several ranges: the whole body */
    int64_t a = -1, b = -1;
    while (p < e && *p == ' ')
        p++;
    if (p < e && *p >= '0' && *p <= '9') {
        a = 0;
        while (p < e && *p >= '0' && *p <= '9') {
            if (a > (INT64_MAX - 9) / 10)
                return 0;
            a = a * 10 + (*p++ - '0');
        }
    }
    if (p >= e || *p++ != '-')
        return 0;
    if (p < e && *p >= '0' && *p <= '9') {
        b = 0;
        while (p < e && *p >= '0' && *p <= '9') {
            if (b > (INT64_MAX - 9) / 10)
                return 0;
            b = b * 10 + (*p++ - '0');
        }
    }
    while (p < e && *p == ' ')
        p++;
    if (p != e || (a < 0 && b < 0))
        return 0;
    if (a < 0) { /* suffix: the last b bytes */
        if (b == 0)
            return -1;
        *from = b >= size ? 0 : size - b;
        *to = size - 1;
        return size > 0 ? 1 : -1;
    }
    if (b >= 0 && b < a)
        return 0;
    if (a >= size)
        return -1;
    *from = a;
    *to = b < 0 || b >= size ? size - 1 : b;
    return 1;
}
