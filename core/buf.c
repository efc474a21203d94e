/* SPDX-License-Identifier: Apache-2.0 */
/* Growable buffer: see buf.h. Growth doubles, so appends are amortised O(1). */
#include "core/buf.h"

#include <stdarg.h>
#include <stdio.h>

#include "core/alloc.h"

char *sh_buf_reserve(sh_buf_t *b, size_t n)
{
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n)
            cap *= 2;
        b->data = sh_realloc(b->data, cap);
        b->cap = cap;
    }
    return b->data + b->len;
}

void sh_buf_append(sh_buf_t *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    memcpy(sh_buf_reserve(b, n), p, n);
    b->len += n;
}

void sh_buf_appends(sh_buf_t *b, const char *s)
{
    sh_buf_append(b, s, strlen(s));
}

void sh_buf_appendf(sh_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(tmp)) {
        sh_buf_append(b, tmp, (size_t)n);
        return;
    }
    char *w = sh_buf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(w, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sh_buf_append_u64(sh_buf_t *b, uint64_t v)
{
    char tmp[20];
    sh_buf_append(b, tmp, sh_fmt_u64(tmp, v));
}

size_t sh_fmt_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[sizeof(tmp) - ++n] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    memcpy(out, tmp + sizeof(tmp) - n, n);
    return n;
}

size_t sh_fmt_hex(char *out, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    char tmp[16];
    size_t n = 0;
    do {
        tmp[n++] = digits[v & 15];
        v >>= 4;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

void sh_buf_append_json_str(sh_buf_t *b, const char *s)
{
    sh_buf_appends(b, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            sh_buf_appendf(b, "\\%c", ch);
        else if (ch < 0x20)
            sh_buf_appendf(b, "\\u%04x", ch);
        else
            sh_buf_append(b, s, 1);
    }
    sh_buf_appends(b, "\"");
}

char *sh_buf_take_cstr(sh_buf_t *b)
{
    char *out = sh_strndup(b->data != NULL ? b->data : "", b->len);
    sh_buf_dispose(b);
    return out;
}

void sh_buf_consume(sh_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void sh_buf_dispose(sh_buf_t *b)
{
    sh_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
