/* SPDX-License-Identifier: Apache-2.0 */
/* Aborting allocator: see alloc.h. */
#include "core/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n)
{
    fprintf(stderr, "shoal: out of memory allocating %zu bytes\n", n);
    abort();
}

void *sh_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *sh_calloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (p == NULL)
        oom(count * size);
    return p;
}

void *sh_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

void sh_free(void *p)
{
    free(p);
}

char *sh_strdup(const char *s)
{
    return sh_strndup(s, strlen(s));
}

char *sh_strndup(const char *s, size_t n)
{
    char *d = sh_malloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void *sh_memdup(const void *p, size_t n)
{
    void *d = sh_malloc(n);
    if (n)
        memcpy(d, p, n);
    return d;
}

#ifdef __GLIBC__
#include <malloc.h>
#endif

void sh_alloc_tune(void)
{
#ifdef __GLIBC__
    const char *t = getenv("GLIBC_TUNABLES");
    if (t != NULL && strstr(t, "glibc.malloc.") != NULL)
        return;
    /* Setting either turns off glibc's dynamic thresholds, so both are set:
     * with the defaults, 64 HTTP/2 streams of 100 KB bodies over TLS took
     * 6 page faults a request, the CPU per request doubling. */
    mallopt(M_MMAP_THRESHOLD, (int)SH_ALLOC_MMAP);
    mallopt(M_TRIM_THRESHOLD, (int)SH_ALLOC_TRIM);
#endif
}
