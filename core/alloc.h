/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Allocation that never returns NULL: on out-of-memory the process logs and
 * aborts, so call sites stay simple (style.md, rule 6). All of Shoal and the
 * libraries we hand an allocator to (nghttp2, protobuf-c, OpenSSL) go through
 * these, so tests can count allocations. Thread-safe.
 */
#ifndef SH_ALLOC_H
#define SH_ALLOC_H

#include <stddef.h>

void *sh_malloc(size_t n);
void *sh_calloc(size_t count, size_t size);
void *sh_realloc(void *p, size_t n);
void sh_free(void *p);
char *sh_strdup(const char *s);
char *sh_strndup(const char *s, size_t n);
void *sh_memdup(const void *p, size_t n);

/* Tune glibc's malloc for a server's steady state, once at start-up: freed
 * memory stays in the thread's arena (up to SH_ALLOC_TRIM above its top)
 * instead of going back to the kernel and faulting in again on the next
 * burst, and blocks up to SH_ALLOC_MMAP come from the heap, not a fresh
 * mmap each. Left to the operator when GLIBC_TUNABLES sets a malloc
 * parameter. A no-op on other C libraries. */
#define SH_ALLOC_TRIM (32u << 20)
#define SH_ALLOC_MMAP (4u << 20)
void sh_alloc_tune(void);

/* Allocate one zeroed T. */
#define sh_new(T) ((T *)sh_calloc(1, sizeof(T)))

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

#endif
