/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Timeout queues: one uv_timer_t per worker instead of one per connection.
 * A connection's timeouts come from a handful of configured durations
 * (keepalive_timeout, client_header_timeout, ...), so entries are kept in
 * one FIFO per duration: appending keeps each FIFO sorted by deadline, and
 * adding, refreshing and removing an entry are O(1). The worker's timer is
 * armed for the earliest head. An entry costs 32 bytes where a uv_timer_t
 * costs 152, which is most of what an idle keep-alive connection weighs.
 * Worker thread only.
 */
#ifndef SH_TIMEQ_H
#define SH_TIMEQ_H

#include <stdint.h>
#include <uv.h>

#include "node/pipeline/node.h"

/* sh_timeq_entry_t and sh_timers_t are declared in node/node.h, where
 * the connection embeds them. */

/* expire(e) runs for each due entry, already removed from its queue. */
void sh_timers_init(sh_timers_t *t, uv_loop_t *loop, void (*expire)(sh_timeq_entry_t *e));
void sh_timeq_entry_init(sh_timeq_entry_t *e);
/* (Re)start e to expire after ms from now. */
void sh_timers_add(sh_timers_t *t, sh_timeq_entry_t *e, uint64_t ms);
/* (Re)start e to expire at the absolute deadline (uv_now() time), at most
 * ms from now, in the queue of duration ms: for a timeout that runs from
 * an earlier event and must not be pushed back when re-armed. */
void sh_timers_add_at(sh_timers_t *t, sh_timeq_entry_t *e, uint64_t ms, uint64_t deadline);
/* Whether e is queued to expire at deadline. */
int sh_timers_armed_at(const sh_timeq_entry_t *e, uint64_t deadline);
/* Stop e; a no-op when it is not queued. */
void sh_timers_remove(sh_timeq_entry_t *e);
/* Close the timer handle and free the queues (entries must be gone). */
void sh_timers_close(sh_timers_t *t);

#endif
