/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A deterministic in-process simulator for the SWIM state machine (issue 5):
 * N real sh_swim_t instances exchange their real encoded packets over a
 * virtual network with virtual time (10 ms steps), seeded randomness, per-link
 * loss and delay, partitions, killed nodes and CPU-starved nodes. Push-pull
 * is an immediate state exchange (TCP is reliable) unless the link is cut.
 * Node i has address "n<i>" and name "node-<i>". Test code only.
 */
#ifndef SH_SIM_H
#define SH_SIM_H

#include <stdint.h>

#include "cluster/swim.h"

typedef struct sim sim_t;

#define SIM_STEP_MS 10u

typedef struct {
    uint64_t packets, bytes; /* UDP, payload incl. the seal overhead */
    uint64_t pushpulls, pushpull_bytes;
    uint64_t lost;
} sim_net_stats_t;

/* n nodes with conf (name/addr/seed are set per node). */
sim_t *sim_create(unsigned n, const sh_swim_conf_t *conf, uint64_t seed);
void sim_destroy(sim_t *sim);
/* Bootstrap: every node joins node 0 and learns the full membership, then
 * queues are emptied (a converged cluster). */
void sim_converge(sim_t *sim);
void sim_run(sim_t *sim, uint64_t ms);
uint64_t sim_now(const sim_t *sim);
sh_swim_t *sim_node(sim_t *sim, unsigned i);
unsigned sim_size(const sim_t *sim);

void sim_set_loss(sim_t *sim, double p); /* every link */
void sim_set_delay(sim_t *sim, unsigned min_ms, unsigned max_ms);
/* Cut links between nodes of different groups (group[i] for each node). */
void sim_partition(sim_t *sim, const unsigned char *group);
void sim_heal(sim_t *sim);
void sim_kill(sim_t *sim, unsigned i); /* like kill -9 */
/* A fresh process under the same name and address, joining join_to. */
void sim_restart(sim_t *sim, unsigned i, const sh_swim_conf_t *conf, unsigned join_to);
/* CPU-starved: the node runs (timers and its inbox) only every lag_ms. */
void sim_slow(sim_t *sim, unsigned i, unsigned lag_ms);
int sim_is_down(const sim_t *sim, unsigned i);

/* Observer callbacks: every status change seen by node `obs`. */
typedef void (*sim_observe_fn)(void *arg, unsigned obs, const sh_swim_member_t *m, int old);
void sim_observe(sim_t *sim, sim_observe_fn fn, void *arg);
/* Subject index from a member name ("node-<i>"). */
unsigned sim_index(const char *name);

const sim_net_stats_t *sim_net(const sim_t *sim);

/* Regions (issue 13): node i's meta becomes its region byte (before
 * sim_converge); aware: the transport's distance() tells regions apart
 * (else every member is near, as without regions); delay_ms is added to
 * every packet between regions. */
void sim_set_region(sim_t *sim, unsigned i, uint8_t region);
void sim_regions(sim_t *sim, int aware, unsigned delay_ms);

#endif
