/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keyring replication (issue 6): the keyring channel. A keyring change
 * made on one node (`nodectl keys install|use|remove`) is disseminated by
 * gossip, so an operator rotates the cluster's key through any one node;
 * each node also reports which key ids it holds, so the admin API can say
 * how many members hold each key.
 *
 * State and rules:
 * - The ring: the whole desired keyring (keys, primary) with a Lamport
 *   generation and the name of the node that made it. A local change sets
 *   gen + 1; a received ring replaces ours when (gen, origin) is greater, so
 *   every node converges on the last change wherever it was made. Applying
 *   a ring installs the keys we lack, makes its primary ours, then removes
 *   the keys it does not list. The one exception: a node that is joining
 *   (after a start, before its first successful join) takes the ring of the
 *   cluster it joins whatever its generation, so a node that was down
 *   during a rotation, once given the new key, does not push its stale ring
 *   back onto the cluster.
 * - Holder reports: (node, seq, primary id, ids); seq is a wall-clock ms
 *   stamp made strictly increasing, so it survives restarts without being
 *   stored. The newest report per node wins.
 * Both travel as channel updates (ring under key "ring", a report under
 * "h:NAME", so a newer one replaces a queued older one) and as the full
 * push-pull state (anti-entropy). Everything rides inside the sealed gossip
 * packets, so a key is never on the wire in clear.
 *
 * Wire format (big endian), one message:
 *   ring:   0x01 gen:u64 olen:u8 origin[olen] nkeys:u8 key[32]*nkeys
 *           (key 0 is the primary; 1..SH_KEYRING_MAX_KEYS keys)
 *   report: 0x02 seq:u64 nlen:u8 name[nlen] primary:u32 nids:u8 id:u32*nids
 * The push-pull state is a sequence of [len:u16][message]. Anything short,
 * of an unknown type, with a bad name or too many keys is dropped and
 * counted (sh_keysync_stats).
 *
 * Persistence: after every change of the ring, the keyring is written to
 * ring_path (encrypt_key_file + ".NODE_NAME.keyring") through a temporary
 * file, fsync and rename, mode 0600: "# gen N origin NAME" and one hex key a
 * line, the primary first. At start the persisted ring, when present, is
 * the keyring; encrypt_key_file is read instead when there is no ring file
 * or when it was modified after the ring file (an operator handing a node
 * the new key), its keys then installed into the persisted ring with its
 * first key as primary.
 *
 * Runs on the cluster thread; not locked.
 */
#ifndef SH_KEYSYNC_H
#define SH_KEYSYNC_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/keyring.h"
#include "cluster/swim.h"

#define SH_CHANNEL_KEYRING     1u
#define SH_KEYSYNC_MAX_HOLDERS 4096u

typedef struct sh_keysync_s sh_keysync_t;

typedef struct {
    uint64_t rings_applied;  /* remote rings that replaced ours */
    uint64_t rings_stale;    /* remote rings older than ours */
    uint64_t reports;        /* holder reports merged */
    uint64_t malformed;      /* messages refused at decode */
    uint64_t persist_failed; /* ring file writes that failed */
} sh_keysync_stats_t;

/*
 * A keysync for kr (kept, not owned) on node `self` (copied). ring_path:
 * the persisted ring (NULL: none). on_change(ud, what) is called after the
 * keyring changed ("local" or "gossip"); may be NULL.
 */
sh_keysync_t *sh_keysync_create(sh_keyring_t *kr, const char *self, const char *ring_path,
                                void (*on_change)(void *ud, const char *what), void *ud);
void sh_keysync_destroy(sh_keysync_t *k);

/*
 * Fill the (empty) keyring at start: the persisted ring and/or the
 * configured keys (keys[0] primary), as the module comment says. Returns 0,
 * or SH_EPARSE with the reason in err (the ring file is unreadable).
 * now_ms: wall clock.
 */
int sh_keysync_load(sh_keysync_t *k, const uint8_t (*keys)[SH_KEYRING_KEYLEN], unsigned nkeys,
                    const char *key_path, uint64_t now_ms, char *err, size_t errlen);

/* Register the channel on s and queue our ring and holder report. */
int sh_keysync_attach(sh_keysync_t *k, sh_swim_t *s);

/*
 * A local change: op is "install", "use" or "remove" (sh_keyring_* codes:
 * SH_EEXIST, SH_ENOENT, SH_ESTATE, SH_ELIMIT, SH_EINVAL for another op).
 * On success the new ring is persisted and gossiped. now_ms: wall clock.
 */
int sh_keysync_op(sh_keysync_t *k, const char *op, const uint8_t *key, uint64_t now_ms);

/* The next full state merged is that of the cluster we join (see above). */
void sh_keysync_set_joining(sh_keysync_t *k, int joining);

/*
 * How many of the named members hold key id: live(ud, name) says whether
 * a member counts (alive or suspect). *members gets how many counted.
 */
unsigned sh_keysync_holders(const sh_keysync_t *k, uint32_t id,
                            int (*live)(void *ud, const char *name), void *ud, unsigned *members);
/* How many of the counted members report key id as their primary. */
unsigned sh_keysync_primary_users(const sh_keysync_t *k, uint32_t id,
                                  int (*live)(void *ud, const char *name), void *ud);
uint64_t sh_keysync_gen(const sh_keysync_t *k);
const sh_keysync_stats_t *sh_keysync_stats(const sh_keysync_t *k);

#endif
