/*-------------------------------------------------------------------------
 *
 * sim.h
 *	  Deterministic cluster simulator for the Raft engine.
 *
 * Several raft_node instances run in one process over a simulated clock,
 * network and disk.  Everything random comes from one seed, so a failing
 * run replays exactly.  After every event the simulator checks the safety
 * invariants listed in docs/raft.md and records the first violation.
 *
 * test/sim/sim.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CHRONICLE_RAFT_SIM_H
#define CHRONICLE_RAFT_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft.h"

#define SIM_MAX_NODES	9
#define SIM_CLUSTER_ID	UINT64_C(0xC4B0C4B0)

typedef struct sim_options
{
	uint64_t	seed;
	int			num_nodes;		/* initial voters, ids 1..num_nodes */
	int			max_nodes;		/* node slots, for joiners (<= SIM_MAX_NODES) */
	uint32_t	election_ticks;
	uint32_t	heartbeat_ticks;
	bool		pre_vote;
	bool		check_quorum;
	uint32_t	max_msg_entries;
	uint32_t	max_inflight_msgs;
	uint32_t	snapshot_chunk_bytes;
	uint64_t	max_uncommitted_bytes;
	bool		read_back;		/* engine drops applied payloads beyond */
	uint64_t	cache_bytes;	/* cache_bytes and reads them back from disk */

	/* faults, in parts per million per opportunity */
	uint32_t	drop_ppm;
	uint32_t	dup_ppm;
	uint32_t	max_net_delay;	/* ticks */
	uint32_t	max_disk_delay; /* ticks */
	uint32_t	storm_ppm;		/* extra leader crashes and isolations */
	bool		manual;			/* scripted: no automatic delivery or fsync */
	bool		verbose;
} sim_options;

typedef struct sim sim;

extern void sim_options_default(sim_options *opts);
extern sim *sim_create(const sim_options *opts);
extern void sim_destroy(sim *s);

/* first invariant violation, or NULL */
extern const char *sim_failure(const sim *s);

/* scripted control */
extern void sim_tick(sim *s, int node_id);	/* one tick of one node (no clock) */
extern void sim_tick_all(sim *s);	/* clock advances one tick */
extern int	sim_deliver_all(sim *s, int max_rounds);	/* until quiet */
extern int	sim_deliver_one(sim *s, int from, int to);	/* oldest from->to */
extern void sim_drop_all(sim *s);	/* lose every message in flight */
extern void sim_sync_all(sim *s);	/* complete every pending fsync */
extern void sim_sync_node(sim *s, int node_id);
extern void sim_set_link(sim *s, int from, int to, bool up);
extern void sim_isolate(sim *s, int node_id);
extern void sim_heal_links(sim *s);
extern void sim_crash(sim *s, int node_id);
extern void sim_restart(sim *s, int node_id);
extern bool sim_is_up(const sim *s, int node_id);
extern int	sim_campaign(sim *s, int node_id);
extern int	sim_propose(sim *s, int node_id, const char *payload,
						raft_term *term, raft_index *index);
extern int	sim_conf_change(sim *s, int node_id, raft_conf_change_type type,
							int target);
extern int	sim_add_node(sim *s, int node_id);	/* create a joiner slot */
extern int	sim_snapshot(sim *s, int node_id);	/* snapshot + compact */
extern int	sim_transfer(sim *s, int node_id, int target);
extern int	sim_read_index(sim *s, int node_id, uint64_t context);
extern void sim_status(const sim *s, int node_id, raft_status *status);
extern int	sim_leader(const sim *s);	/* highest-term live leader, or 0 */
extern raft_index sim_applied(const sim *s, int node_id);
extern bool sim_read_done(const sim *s, uint64_t context, raft_index *index,
						  bool *failed);
extern bool sim_outcome(const sim *s, raft_index index, raft_term term,
						raft_outcome *outcome);
extern uint64_t sim_now(const sim *s);
extern int	sim_messages_in_flight(const sim *s);

typedef struct sim_run_stats
{
	uint64_t	leaderships;	/* distinct (term, leader) pairs seen */
	uint64_t	committed;		/* highest committed index */
	uint64_t	ticks;
	uint64_t	crashes;
	uint64_t	snapshots_installed;
	uint64_t	read_backs;		/* dropped payloads read back from disk */
} sim_run_stats;

/* random run: returns 0 on success; on failure fills why */
extern int	sim_random_run(const sim_options *opts, int steps, char *why,
						   size_t why_len, sim_run_stats *stats);

#endif							/* CHRONICLE_RAFT_SIM_H */
