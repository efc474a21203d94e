/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keyring replication over the keyring channel: see keysync.h for the
 * rules, the wire format and the ring file. The ring (keys[0] primary) held
 * here is always what the keyring holds: every change goes through apply().
 */
#include "cluster/keysync.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cluster/strmap.h"
#include "cluster/wire.h"
#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"

#define MSG_RING   1u
#define MSG_REPORT 2u
#define MAX_MSG    (1u + 8u + 1u + 255u + 1u + SH_KEYRING_MAX_KEYS * SH_KEYRING_KEYLEN)

typedef struct {
    uint8_t keys[SH_KEYRING_MAX_KEYS][SH_KEYRING_KEYLEN]; /* keys[0]: primary */
    unsigned n;
    uint64_t gen;
    char origin[SH_WIRE_MAX_NAME + 1];
} ring_t;

typedef struct {
    char name[SH_WIRE_MAX_NAME + 1];
    uint64_t seq;
    uint32_t primary;
    uint32_t ids[SH_KEYRING_MAX_KEYS];
    unsigned nids;
} report_t;

struct sh_keysync_s {
    sh_keyring_t *kr;
    sh_swim_t *swim;
    char *self;
    char *ring_path;
    ring_t ring;
    report_t **reports; /* by arrival; looked up through by_name */
    size_t nreports;
    sh_strmap_t by_name;
    uint64_t my_seq;
    int joining;
    void (*on_change)(void *ud, const char *what);
    void *ud;
    sh_keysync_stats_t st;
};

/* ------------------------------------------------------------- codec -- */

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}
static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}
static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static uint32_t get_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static size_t encode_ring(const ring_t *r, uint8_t *out)
{
    size_t ol = strlen(r->origin), n = 0;
    out[n++] = MSG_RING;
    put_u64(out + n, r->gen);
    n += 8;
    out[n++] = (uint8_t)ol;
    memcpy(out + n, r->origin, ol);
    n += ol;
    out[n++] = (uint8_t)r->n;
    memcpy(out + n, r->keys, r->n * SH_KEYRING_KEYLEN);
    return n + r->n * SH_KEYRING_KEYLEN;
}

static size_t encode_report(const report_t *h, uint8_t *out)
{
    size_t nl = strlen(h->name), n = 0;
    out[n++] = MSG_REPORT;
    put_u64(out + n, h->seq);
    n += 8;
    out[n++] = (uint8_t)nl;
    memcpy(out + n, h->name, nl);
    n += nl;
    put_u32(out + n, h->primary);
    n += 4;
    out[n++] = (uint8_t)h->nids;
    for (unsigned i = 0; i < h->nids; i++, n += 4)
        put_u32(out + n, h->ids[i]);
    return n;
}

/* A length-prefixed name at p[0..len): 0 and the name in out, or -1. */
static int get_name(const uint8_t *p, size_t len, size_t *off, char *out)
{
    if (*off >= len)
        return -1;
    size_t nl = p[(*off)++];
    if (nl == 0 || nl > SH_WIRE_MAX_NAME || *off + nl > len)
        return -1;
    memcpy(out, p + *off, nl);
    out[nl] = 0;
    *off += nl;
    return sh_wire_valid_name(out, SH_WIRE_MAX_NAME) ? 0 : -1;
}

static int decode_ring(const uint8_t *p, size_t len, ring_t *r)
{
    size_t off = 1;
    if (len < 1 + 8 || p[0] != MSG_RING)
        return -1;
    r->gen = get_u64(p + off);
    off += 8;
    if (get_name(p, len, &off, r->origin) != 0 || off >= len)
        return -1;
    r->n = p[off++];
    if (r->n == 0 || r->n > SH_KEYRING_MAX_KEYS || off + r->n * SH_KEYRING_KEYLEN != len)
        return -1;
    memcpy(r->keys, p + off, r->n * SH_KEYRING_KEYLEN);
    /* the same key twice would make apply() fight itself */
    for (unsigned i = 0; i < r->n; i++)
        for (unsigned j = i + 1; j < r->n; j++)
            if (sh_keyring_key_id(r->keys[i]) == sh_keyring_key_id(r->keys[j]))
                return -1;
    return 0;
}

static int decode_report(const uint8_t *p, size_t len, report_t *h)
{
    size_t off = 1;
    if (len < 1 + 8 || p[0] != MSG_REPORT)
        return -1;
    h->seq = get_u64(p + off);
    off += 8;
    if (get_name(p, len, &off, h->name) != 0 || off + 5 > len)
        return -1;
    h->primary = get_u32(p + off);
    off += 4;
    h->nids = p[off++];
    if (h->nids > SH_KEYRING_MAX_KEYS || off + 4 * h->nids != len)
        return -1;
    for (unsigned i = 0; i < h->nids; i++, off += 4)
        h->ids[i] = get_u32(p + off);
    return 0;
}

/* -------------------------------------------------------- persistence -- */

static void persist(sh_keysync_t *k)
{
    if (k->ring_path == NULL)
        return;
    size_t pl = strlen(k->ring_path) + 32;
    char *tmp = sh_malloc(pl);
    snprintf(tmp, pl, "%s.tmp.%ld", k->ring_path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    int ok = f != NULL;
    if (ok) {
        fprintf(f, "# shoal keyring, written by node %s: the first key is the primary\n", k->self);
        fprintf(f, "# gen %llu origin %s\n", (unsigned long long)k->ring.gen, k->ring.origin);
        char hex[2 * SH_KEYRING_KEYLEN + 1];
        for (unsigned i = 0; i < k->ring.n; i++) {
            sodium_bin2hex(hex, sizeof(hex), k->ring.keys[i], SH_KEYRING_KEYLEN);
            fprintf(f, "%s\n", hex);
        }
        sodium_memzero(hex, sizeof(hex));
        ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
        ok = (fclose(f) == 0) && ok;
    } else if (fd >= 0) {
        close(fd);
    }
    if (ok && rename(tmp, k->ring_path) != 0)
        ok = 0;
    if (!ok) {
        k->st.persist_failed++;
        sh_log_err("cluster: cannot write the keyring to \"%s\": %s", k->ring_path,
                   strerror(errno));
        unlink(tmp);
    } else {
        /* the rename itself must survive a crash: fsync the directory */
        char *dir = sh_strdup(k->ring_path), *slash = strrchr(dir, '/');
        if (slash != NULL) {
            *(slash == dir ? slash + 1 : slash) = 0;
            int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0) {
                (void)fsync(dfd);
                close(dfd);
            }
        }
        sh_free(dir);
    }
    sh_free(tmp);
}

/* Read a ring file: 1 read, 0 absent, -1 malformed. */
static int read_ring(const char *path, ring_t *r, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return errno == ENOENT
                   ? 0
                   : (snprintf(err, errlen, "cannot read \"%s\": %s", path, strerror(errno)), -1);
    char line[512];
    memset(r, 0, sizeof(*r));
    int rc = 1;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long gen;
        char origin[SH_WIRE_MAX_NAME + 1];
        if (sscanf(line, "# gen %llu origin %128s", &gen, origin) == 2) {
            r->gen = gen;
            snprintf(r->origin, sizeof(r->origin), "%s", origin);
            continue;
        }
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '#' || *p == '\n' || *p == 0)
            continue;
        if (r->n >= SH_KEYRING_MAX_KEYS || sh_keyring_parse_key(p, r->keys[r->n]) != 0) {
            snprintf(err, errlen, "\"%s\": invalid key or more than %u keys", path,
                     SH_KEYRING_MAX_KEYS);
            rc = -1;
            break;
        }
        r->n++;
    }
    fclose(f);
    sodium_memzero(line, sizeof(line));
    if (rc == 1 && r->n == 0) {
        snprintf(err, errlen, "\"%s\" holds no key", path);
        rc = -1;
    }
    return rc;
}

/* ------------------------------------------------------------- state -- */

static int ring_find(const ring_t *r, uint32_t id)
{
    for (unsigned i = 0; i < r->n; i++)
        if (sh_keyring_key_id(r->keys[i]) == id)
            return (int)i;
    return -1;
}

static report_t *report_get(sh_keysync_t *k, const char *name)
{
    report_t *h = sh_strmap_get(&k->by_name, name);
    if (h != NULL || k->nreports >= SH_KEYSYNC_MAX_HOLDERS)
        return h;
    h = sh_new(report_t);
    snprintf(h->name, sizeof(h->name), "%s", name);
    k->reports = sh_realloc(k->reports, (k->nreports + 1) * sizeof(*k->reports));
    k->reports[k->nreports++] = h;
    sh_strmap_put(&k->by_name, h->name, h);
    return h;
}

/* Our own report, from the keyring, with a fresh seq; gossiped. */
static void report_self(sh_keysync_t *k, uint64_t now_ms)
{
    report_t *h = report_get(k, k->self);
    if (h == NULL)
        return;
    k->my_seq = now_ms > k->my_seq ? now_ms : k->my_seq + 1;
    h->seq = k->my_seq;
    h->primary = sh_keyring_primary_id(k->kr);
    h->nids = sh_keyring_ids(k->kr, h->ids, SH_KEYRING_MAX_KEYS);
    if (h->nids > SH_KEYRING_MAX_KEYS)
        h->nids = SH_KEYRING_MAX_KEYS;
    if (k->swim != NULL) {
        uint8_t buf[MAX_MSG];
        char key[SH_WIRE_MAX_NAME + 4];
        snprintf(key, sizeof(key), "h:%s", k->self);
        sh_swim_channel_broadcast(k->swim, SH_CHANNEL_KEYRING, key, buf, encode_report(h, buf));
    }
}

static void gossip_ring(sh_keysync_t *k)
{
    if (k->swim == NULL)
        return;
    uint8_t buf[MAX_MSG];
    size_t n = encode_ring(&k->ring, buf);
    sh_swim_channel_broadcast(k->swim, SH_CHANNEL_KEYRING, "ring", buf, n);
    sodium_memzero(buf, sizeof(buf));
}

/* Make the keyring hold exactly nr (install, use, then remove). */
static void apply(sh_keysync_t *k, const ring_t *nr)
{
    for (unsigned i = 0; i < nr->n; i++)
        if (ring_find(&k->ring, sh_keyring_key_id(nr->keys[i])) < 0)
            sh_keyring_install(k->kr, nr->keys[i]);
    sh_keyring_use(k->kr, nr->keys[0]);
    for (unsigned i = 0; i < k->ring.n; i++)
        if (ring_find(nr, sh_keyring_key_id(k->ring.keys[i])) < 0)
            sh_keyring_remove(k->kr, k->ring.keys[i]);
    if (&k->ring != nr)
        k->ring = *nr;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A remote ring: adopt it if newer (or if we are joining). 1 if adopted. */
static int merge_ring(sh_keysync_t *k, const ring_t *nr, int force)
{
    int cmp = nr->gen > k->ring.gen   ? 1
              : nr->gen < k->ring.gen ? -1
                                      : strcmp(nr->origin, k->ring.origin);
    if (cmp == 0 && !force)
        return 0;
    if (cmp < 0 && !force) {
        k->st.rings_stale++;
        return 0;
    }
    if (cmp == 0) /* the same ring */
        return 0;
    apply(k, nr);
    k->st.rings_applied++;
    sh_log_notice("cluster: keyring gen %llu from %s applied (%u keys, primary %08x)",
                  (unsigned long long)nr->gen, nr->origin, nr->n,
                  (unsigned)sh_keyring_primary_id(k->kr));
    persist(k);
    report_self(k, wall_ms());
    if (k->on_change)
        k->on_change(k->ud, "gossip");
    return 1;
}

static int merge_report(sh_keysync_t *k, const report_t *in)
{
    if (strcmp(in->name, k->self) == 0)
        return 0; /* only we speak for ourselves */
    report_t *h = report_get(k, in->name);
    if (h == NULL || in->seq <= h->seq)
        return 0;
    *h = *in;
    k->st.reports++;
    return 1;
}

/* ----------------------------------------------------------- channel -- */

static int ch_merge(void *ud, const char *from, const uint8_t *data, size_t len)
{
    sh_keysync_t *k = ud;
    if (len > 0 && data[0] == MSG_RING) {
        ring_t r;
        if (decode_ring(data, len, &r) != 0) {
            k->st.malformed++;
            return 0;
        }
        int rc = merge_ring(k, &r, 0);
        sodium_memzero(&r, sizeof(r));
        return rc;
    }
    if (len > 0 && data[0] == MSG_REPORT) {
        report_t h;
        if (decode_report(data, len, &h) != 0) {
            k->st.malformed++;
            return 0;
        }
        return merge_report(k, &h);
    }
    k->st.malformed++;
    return 0;
}

static int ch_local_state(void *ud, int join, uint8_t **out, size_t *len)
{
    sh_keysync_t *k = ud;
    size_t cap = 2 + MAX_MSG + k->nreports * (2 + MAX_MSG), n = 0;
    uint8_t *b = sh_malloc(cap);
    size_t m = encode_ring(&k->ring, b + 2);
    b[0] = (uint8_t)(m >> 8);
    b[1] = (uint8_t)m;
    n = 2 + m;
    for (size_t i = 0; i < k->nreports; i++) {
        /* A joiner needs every holder report; the periodic exchange only
         * carries our own (the others reach everyone by gossip when they
         * change, and each member repairs its own this way), so the
         * anti-entropy traffic does not grow with N twice over. */
        if (!join && strcmp(k->reports[i]->name, k->self) != 0)
            continue;
        m = encode_report(k->reports[i], b + n + 2);
        b[n] = (uint8_t)(m >> 8);
        b[n + 1] = (uint8_t)m;
        n += 2 + m;
    }
    *out = b;
    *len = n;
    return 0;
}

static void ch_merge_state(void *ud, const uint8_t *data, size_t len, int join)
{
    sh_keysync_t *k = ud;
    size_t off = 0;
    int force = k->joining;
    k->joining = 0;
    while (off + 2 <= len) {
        size_t m = ((size_t)data[off] << 8) | data[off + 1];
        off += 2;
        if (m == 0 || off + m > len) {
            k->st.malformed++;
            return;
        }
        const uint8_t *p = data + off;
        off += m;
        if (p[0] == MSG_RING) {
            ring_t r;
            if (decode_ring(p, m, &r) != 0)
                k->st.malformed++;
            else if (merge_ring(k, &r, force))
                gossip_ring(k); /* we changed: tell the others too */
            sodium_memzero(&r, sizeof(r));
            force = 0;
        } else if (p[0] == MSG_REPORT) {
            report_t h;
            if (decode_report(p, m, &h) != 0)
                k->st.malformed++;
            else
                merge_report(k, &h);
        } else {
            k->st.malformed++;
        }
    }
}

static const sh_channel_ops_t ops = {"keyring", ch_merge, ch_local_state, ch_merge_state};

/* --------------------------------------------------------------- api -- */

sh_keysync_t *sh_keysync_create(sh_keyring_t *kr, const char *self, const char *ring_path,
                                void (*on_change)(void *ud, const char *what), void *ud)
{
    sh_keysync_t *k = sh_new(sh_keysync_t);
    k->kr = kr;
    k->self = sh_strdup(self);
    k->ring_path = ring_path ? sh_strdup(ring_path) : NULL;
    k->on_change = on_change;
    k->ud = ud;
    snprintf(k->ring.origin, sizeof(k->ring.origin), "%s", self);
    sh_strmap_init(&k->by_name);
    return k;
}

void sh_keysync_destroy(sh_keysync_t *k)
{
    if (k == NULL)
        return;
    sodium_memzero(&k->ring, sizeof(k->ring));
    for (size_t i = 0; i < k->nreports; i++)
        sh_free(k->reports[i]);
    sh_free(k->reports);
    sh_strmap_dispose(&k->by_name);
    sh_free(k->self);
    sh_free(k->ring_path);
    sh_free(k);
}

static time_t mtime_of(const char *path)
{
    struct stat st;
    return path && stat(path, &st) == 0 ? st.st_mtime : 0;
}

int sh_keysync_load(sh_keysync_t *k, const uint8_t (*keys)[SH_KEYRING_KEYLEN], unsigned nkeys,
                    const char *key_path, uint64_t now_ms, char *err, size_t errlen)
{
    ring_t r;
    int have = k->ring_path ? read_ring(k->ring_path, &r, err, errlen) : 0;
    if (have < 0)
        return SH_EPARSE;
    if (have == 0) {
        memset(&r, 0, sizeof(r));
        for (unsigned i = 0; i < nkeys && r.n < SH_KEYRING_MAX_KEYS; i++)
            if (ring_find(&r, sh_keyring_key_id(keys[i])) < 0)
                memcpy(r.keys[r.n++], keys[i], SH_KEYRING_KEYLEN);
        snprintf(r.origin, sizeof(r.origin), "%s", k->self);
        r.gen = 0;
    } else if (nkeys > 0 && mtime_of(key_path) > mtime_of(k->ring_path)) {
        /* The key file is newer than the ring: the operator handed this node
         * a key. Its keys join the ring, its first key becomes the primary. */
        sh_log_notice("cluster: %s is newer than %s: adding its keys, its first key primary",
                      key_path, k->ring_path);
        for (unsigned i = nkeys; i-- > 0;) {
            int at = ring_find(&r, sh_keyring_key_id(keys[i]));
            if (at < 0 && r.n >= SH_KEYRING_MAX_KEYS)
                continue;
            if (at < 0)
                at = (int)r.n++;
            /* move it to the front */
            uint8_t tmp[SH_KEYRING_KEYLEN];
            memcpy(tmp, keys[i], SH_KEYRING_KEYLEN);
            memmove(r.keys[1], r.keys[0], (size_t)at * SH_KEYRING_KEYLEN);
            memcpy(r.keys[0], tmp, SH_KEYRING_KEYLEN);
            sodium_memzero(tmp, sizeof(tmp));
        }
        r.gen++;
        snprintf(r.origin, sizeof(r.origin), "%s", k->self);
    }
    if (r.n == 0) {
        snprintf(err, errlen, "no gossip key");
        return SH_EPARSE;
    }
    for (unsigned i = 0; i < r.n; i++)
        sh_keyring_install(k->kr, r.keys[i]);
    sh_keyring_use(k->kr, r.keys[0]);
    k->ring = r;
    sodium_memzero(&r, sizeof(r));
    persist(k);
    report_self(k, now_ms);
    return 0;
}

int sh_keysync_attach(sh_keysync_t *k, sh_swim_t *s)
{
    int rc = sh_swim_channel_register(s, SH_CHANNEL_KEYRING, &ops, k);
    if (rc != 0)
        return rc;
    k->swim = s;
    gossip_ring(k);
    report_self(k, wall_ms());
    return 0;
}

int sh_keysync_op(sh_keysync_t *k, const char *op, const uint8_t *key, uint64_t now_ms)
{
    ring_t nr = k->ring;
    int at = ring_find(&nr, sh_keyring_key_id(key));
    int rc = 0;
    if (strcmp(op, "install") == 0) {
        if (at >= 0)
            rc = SH_EEXIST;
        else if (nr.n >= SH_KEYRING_MAX_KEYS)
            rc = SH_ELIMIT;
        else
            memcpy(nr.keys[nr.n++], key, SH_KEYRING_KEYLEN);
    } else if (strcmp(op, "use") == 0) {
        if (at < 0) {
            rc = SH_ENOENT;
        } else if (at > 0) {
            uint8_t tmp[SH_KEYRING_KEYLEN];
            memcpy(tmp, nr.keys[at], SH_KEYRING_KEYLEN);
            memcpy(nr.keys[at], nr.keys[0], SH_KEYRING_KEYLEN);
            memcpy(nr.keys[0], tmp, SH_KEYRING_KEYLEN);
            sodium_memzero(tmp, sizeof(tmp));
        }
    } else if (strcmp(op, "remove") == 0) {
        if (at < 0)
            rc = SH_ENOENT;
        else if (at == 0)
            rc = SH_ESTATE;
        else {
            memmove(nr.keys[at], nr.keys[at + 1], (nr.n - (unsigned)at - 1) * SH_KEYRING_KEYLEN);
            nr.n--;
        }
    } else {
        rc = SH_EINVAL;
    }
    if (rc == 0) {
        nr.gen = k->ring.gen + 1;
        snprintf(nr.origin, sizeof(nr.origin), "%s", k->self);
        apply(k, &nr);
        persist(k);
        gossip_ring(k);
        report_self(k, now_ms);
        if (k->on_change)
            k->on_change(k->ud, "local");
    }
    sodium_memzero(&nr, sizeof(nr));
    return rc;
}

void sh_keysync_set_joining(sh_keysync_t *k, int joining)
{
    k->joining = joining;
}

unsigned sh_keysync_holders(const sh_keysync_t *k, uint32_t id,
                            int (*live)(void *ud, const char *name), void *ud, unsigned *members)
{
    unsigned n = 0, m = 0;
    for (size_t i = 0; i < k->nreports; i++) {
        const report_t *h = k->reports[i];
        if (!live(ud, h->name))
            continue;
        m++;
        for (unsigned j = 0; j < h->nids; j++)
            if (h->ids[j] == id) {
                n++;
                break;
            }
    }
    if (members)
        *members = m;
    return n;
}

unsigned sh_keysync_primary_users(const sh_keysync_t *k, uint32_t id,
                                  int (*live)(void *ud, const char *name), void *ud)
{
    unsigned n = 0;
    for (size_t i = 0; i < k->nreports; i++)
        n += live(ud, k->reports[i]->name) && k->reports[i]->primary == id;
    return n;
}

uint64_t sh_keysync_gen(const sh_keysync_t *k)
{
    return k->ring.gen;
}
const sh_keysync_stats_t *sh_keysync_stats(const sh_keysync_t *k)
{
    return &k->st;
}
