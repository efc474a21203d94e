/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A growable byte buffer (aborts on out-of-memory like sh_malloc) and a
 * borrowed string slice. Not thread-safe; owned by one user.
 */
#ifndef SH_BUF_H
#define SH_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const char *p;
    size_t len;
} sh_str_t;

#define SH_STR(lit) ((sh_str_t){(lit), sizeof(lit) - 1})

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} sh_buf_t;

/* Make room for n more bytes; returns the write position. */
char *sh_buf_reserve(sh_buf_t *b, size_t n);
void sh_buf_append(sh_buf_t *b, const void *p, size_t n);
void sh_buf_appends(sh_buf_t *b, const char *s);
void sh_buf_appendf(sh_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append v in decimal / lower-case hex, without printf. */
void sh_buf_append_u64(sh_buf_t *b, uint64_t v);
/* Write v in decimal to out (at least 20 bytes); returns length. */
size_t sh_fmt_u64(char *out, uint64_t v);
/* Write v in lower-case hex to out (at least 17 bytes); returns length. */
size_t sh_fmt_hex(char *out, uint64_t v);
/* Append s as a JSON string: quoted, '"' and '\\' escaped with a
 * backslash, bytes below 0x20 as \u00XX; other bytes as they are. */
void sh_buf_append_json_str(sh_buf_t *b, const char *s);
/* The contents as a NUL-terminated string the caller frees with free();
 * b is left empty, as after sh_buf_dispose. */
char *sh_buf_take_cstr(sh_buf_t *b);
/* Drop the first n bytes. */
void sh_buf_consume(sh_buf_t *b, size_t n);
/* Free the memory; the buffer is empty and reusable afterwards. */
void sh_buf_dispose(sh_buf_t *b);

static inline int sh_str_eq_lit_ci(sh_str_t s, const char *lit)
{
    size_t n = strlen(lit);
    if (s.len != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char a = (unsigned char)s.p[i], b = (unsigned char)lit[i];
        if (a >= 'A' && a <= 'Z')
            a = (unsigned char)(a + 32);
        if (b >= 'A' && b <= 'Z')
            b = (unsigned char)(b + 32);
        if (a != b)
            return 0;
    }
    return 1;
}

#endif
