/*-------------------------------------------------------------------------
 *
 * raft_int.h
 *	  Private structures of the Raft engine, shared by the files of
 *	  src/raft/.  Nothing outside src/raft/ may include this header.
 *
 * src/raft/raft_int.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CHRONICLE_RAFT_INT_H
#define CHRONICLE_RAFT_INT_H

#include "raft.h"

/*
 * A broken internal invariant means the node's state can no longer be
 * trusted; continuing could lose committed data, so we stop the process.
 * The worker runs the engine in its own process, where this is a PANIC.
 */
extern void raft_panic(const char *file, int line, const char *cond);

#define RAFT_ASSERT(cond) \
	do { \
		if (!(cond)) \
			raft_panic(__FILE__, __LINE__, #cond); \
	} while (0)

/*----------
 * Memory: allocator wrappers, a bump arena for ready-lifetime data, and a
 * "graveyard" of entry payloads whose freeing waits for raft_advance().
 *----------
 */
typedef struct raft_arena_block
{
	struct raft_arena_block *next;
	size_t		used;
	size_t		cap;
	/* data follows, aligned to 16 bytes */
} raft_arena_block;

typedef struct raft_arena
{
	raft_arena_block *head;
} raft_arena;

typedef struct raft_ptr_array
{
	void	  **items;
	size_t		count;
	size_t		cap;
} raft_ptr_array;

/*----------
 * In-memory log.  entries[k] holds index snap_index + 1 + k.  The entry at
 * snap_index has been compacted away; only its term is remembered.  Normal
 * entries below cache_from may have had their payload dropped (data NULL,
 * len kept): they are applied and durable, and are read back through
 * cfg.entry_read when needed.  snap_index < cache_from <= applied + 1.
 *----------
 */
typedef struct raft_log
{
	raft_entry *entries;
	size_t		count;
	size_t		cap;
	raft_index	snap_index;
	raft_term	snap_term;
	raft_index	cache_from;
} raft_log;

/*----------
 * Leader's view of one member (voter or learner, itself included).
 *----------
 */
typedef enum raft_progress_state
{
	RAFT_PR_PROBE = 0,			/* one APPEND per heartbeat until a match */
	RAFT_PR_REPLICATE = 1,		/* pipelined, bounded by inflight caps */
	RAFT_PR_SNAPSHOT = 2		/* sending an InstallSnapshot, chunk by chunk */
} raft_progress_state;

typedef struct raft_progress
{
	raft_node_id id;
	bool		is_voter;
	raft_progress_state state;
	raft_index	match;			/* highest index known durable there */
	raft_index	next;			/* next index to send */
	bool		probe_sent;		/* PROBE: waiting for the answer */
	bool		recent_active;	/* heard from since last quorum check */
	uint64_t	read_ack;		/* highest read round it confirmed */

	/* REPLICATE: ring of in-flight APPENDs (last index and payload bytes) */
	raft_index *inflight_last;
	uint64_t   *inflight_bytes;
	uint32_t	inflight_head;
	uint32_t	inflight_count;
	uint64_t	inflight_total_bytes;

	/* SNAPSHOT: the transfer in progress */
	raft_snapshot_meta snap_meta;
	uint64_t	snap_offset;	/* next byte to send */
	bool		snap_chunk_inflight;
	uint32_t	snap_wait_ticks;
} raft_progress;

typedef struct raft_read_request
{
	uint64_t	context;
	raft_node_id from;			/* RAFT_NO_NODE: requested locally */
	raft_index	index;
	uint64_t	round;
} raft_read_request;

typedef struct raft_proposal
{
	raft_term	term;
	raft_index	index;
} raft_proposal;

typedef struct raft_conf_history
{
	raft_index	index;
	raft_conf_state conf;
} raft_conf_history;

/* Growable array of fixed-size items, used for the output queues. */
typedef struct raft_vec
{
	void	   *items;
	size_t		count;
	size_t		cap;
	size_t		item_size;
} raft_vec;

struct raft_node
{
	raft_config cfg;
	uint64_t	rng_state;
	bool		broken;			/* allocation failed: recreate the node */
	bool		in_ready;		/* between raft_ready_get and raft_advance */

	/* persistent state (mirrored by the application's storage) */
	raft_term	term;
	raft_node_id vote;
	raft_index	commit;
	raft_log	log;
	raft_snapshot_meta snapshot;	/* newest snapshot available here */

	/* volatile state */
	raft_role	role;
	raft_node_id leader;
	raft_index	applied;		/* handed to the application */
	uint64_t	applied_cached_bytes;	/* payload bytes in memory of normal
										 * entries log.cache_from..applied */
	raft_index	stable;			/* log prefix confirmed durable */
	raft_index	persist_from;	/* first index not yet handed to storage */
	raft_hard_state last_hard_state;	/* last one handed to storage */
	bool		install_pending;	/* snapshot received, not yet handed out */
	raft_snapshot_meta install_meta;

	raft_conf_state conf;		/* membership as of applied */
	raft_conf_history *conf_history;	/* applied changes after snapshot */
	size_t		conf_history_count;
	size_t		conf_history_cap;

	uint32_t	election_elapsed;
	uint32_t	heartbeat_elapsed;
	uint32_t	randomized_timeout;

	/* candidate and pre-candidate */
	raft_node_id votes_granted[RAFT_MAX_MEMBERS];
	uint32_t	num_granted;
	raft_node_id votes_rejected[RAFT_MAX_MEMBERS];
	uint32_t	num_rejected;

	/* leader: one slot per member; slots keep their inflight buffers */
	raft_progress progress[RAFT_MAX_MEMBERS];
	size_t		num_progress;
	bool		bcast_pending;	/* new entries to send at next ready */
	bool		bcast_commit;	/* commit advanced: tell everyone */
	bool		heartbeat_pending;	/* read-index round to confirm */
	raft_index	pending_conf_index;
	uint64_t	uncommitted_bytes;	/* payload proposed in this term, not yet
									 * committed (flow control toward clients) */
	raft_node_id transferee;
	uint32_t	transfer_elapsed;
	uint64_t	read_round;
	raft_vec	read_requests;	/* raft_read_request, FIFO */

	/* follower receiving a snapshot */
	bool		recv_active;
	raft_snapshot_meta recv_meta;
	uint64_t	recv_offset;

	/* proposals made here whose outcome is not known yet (FIFO) */
	raft_vec	proposals;		/* raft_proposal */

	/* outputs, reset by raft_advance */
	raft_vec	out_messages;	/* raft_message */
	raft_vec	out_persist_messages;	/* raft_message */
	raft_vec	out_chunks;		/* raft_snapshot_chunk */
	raft_vec	out_read_states;	/* raft_read_state */
	raft_vec	out_outcomes;	/* raft_proposal_outcome */
	raft_arena	arena;
	raft_ptr_array graveyard;
};

/* memory (raft_mem.c) */
extern void *raft_mem_alloc(raft_node *node, size_t size);
extern void *raft_mem_realloc(raft_node *node, void *ptr, size_t size);
extern void raft_mem_free(raft_node *node, void *ptr);
extern void *raft_arena_alloc(raft_node *node, size_t size);
extern void raft_arena_reset(raft_node *node);
extern void raft_arena_destroy(raft_node *node);
extern void raft_graveyard_add(raft_node *node, void *ptr);
extern void raft_graveyard_flush(raft_node *node);
extern void raft_vec_init(raft_vec *vec, size_t item_size);
extern void *raft_vec_push(raft_node *node, raft_vec *vec);
extern void raft_vec_free(raft_node *node, raft_vec *vec);

/* log (raft_log.c) */
extern raft_index raft_log_first_index(const raft_log *log);
extern raft_index raft_log_last_index(const raft_log *log);
extern raft_term raft_log_last_term(const raft_log *log);
extern bool raft_log_term_at(const raft_log *log, raft_index index,
							 raft_term *term);
extern raft_term raft_log_term_or_zero(const raft_log *log, raft_index index);
extern const raft_entry *raft_log_entry(const raft_log *log, raft_index index);
extern bool raft_log_append(raft_node *node, raft_log *log,
							const raft_entry *entry, bool adopt);
extern void raft_log_truncate_from(raft_node *node, raft_log *log,
								   raft_index index);
extern void raft_log_compact_to(raft_node *node, raft_log *log,
								raft_index index);
extern void raft_log_reset(raft_node *node, raft_log *log,
						   raft_index snap_index, raft_term snap_term);
extern size_t raft_log_drop_oldest_payload(raft_node *node, raft_log *log);
extern void raft_log_destroy(raft_node *node, raft_log *log);

/* configuration (raft_conf.c) */
extern uint32_t raft_conf_quorum(const raft_conf_state *conf);
extern bool raft_conf_is_member(const raft_conf_state *conf, raft_node_id id);
extern int	raft_conf_apply_change(const raft_conf_state *conf,
								   raft_conf_change_type type,
								   raft_node_id id, raft_conf_state *result);

#endif							/* CHRONICLE_RAFT_INT_H */
