/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the purge channel's decoders (purge.h): the first byte picks the
 * path, the rest is the data a member's message or push-pull state carries
 * (already opened: only key holders reach it). Each input runs on a fresh
 * engine whose apply, send and broadcast do nothing.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "cluster/purge.h"
#include "core/alloc.h"

static int f_send(void *ud, const char *to, const uint8_t *d, size_t n)
{
    (void)ud;
    (void)to;
    (void)d;
    (void)n;
    return 0;
}

static int f_apply(void *ud, const sh_purge_rec_t *r, uint64_t *count)
{
    (void)ud;
    (void)r;
    *count = 0;
    return 0;
}

static void f_flush(void *ud)
{
    (void)ud;
}

static void f_done(void *ud, void *w, uint64_t seq, int timed_out)
{
    (void)ud;
    (void)w;
    (void)seq;
    (void)timed_out;
}

static int f_bcast(void *ud, const char *key, const uint8_t *d, size_t n)
{
    return f_send(ud, key, d, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    sh_pe_io_t io = {NULL, f_send, f_bcast, f_apply, f_flush, f_done};
    sh_pe_t *e = sh_pe_create("self", &io, 8, 3600000);
    const char *live[] = {"a", "b"};
    sh_pe_set_live(e, live, 2);
    int w;
    sh_pe_issue(e, 0, 0, "", "k", 1, 1000, &w, 2000);
    if (data[0] & 1) {
        sh_pe_merge(e, data + 1, size - 1, 1500);
    } else {
        sh_pe_recv(e, "a", data + 1, size - 1, 1500);
        sh_pe_recv(e, "b", data + 1, size - 1, 1600);
    }
    sh_pe_tick(e, 3000);
    uint8_t *st;
    size_t len;
    if (sh_pe_state(e, &st, &len) == 0) {
        sh_pe_merge(e, st, len, 3000); /* its own state reads back */
        sh_free(st);
    }
    sh_pe_destroy(e);
    return 0;
}
