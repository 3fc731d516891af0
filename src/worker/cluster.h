/*-------------------------------------------------------------------------
 *
 * cluster.h
 *	  Replication settings, the shared insert queue and the background
 *	  worker that hosts the Raft engine.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CHRONICLE_CLUSTER_H
#define CHRONICLE_CLUSTER_H

#include "postgres.h"
#include "datatype/timestamp.h"
#include "lib/stringinfo.h"

#define CLUSTER_MAX_MEMBERS 16

typedef enum CommitWait
{
	COMMIT_WAIT_APPLIED,
	COMMIT_WAIT_COMMITTED,
	COMMIT_WAIT_OFF
} CommitWait;

typedef struct ClusterMember
{
	uint64		id;
	char		host[64];
	int			port;
} ClusterMember;

/* settings (guc.c) */
extern int	chronicle_node_id;
extern char *chronicle_listen_address;
extern char *chronicle_initial_cluster;
extern char *chronicle_cluster_secret;
extern char *chronicle_cluster_name;
extern int	chronicle_buffer_size;
extern int	chronicle_flush_interval;
extern int	chronicle_commit_wait;
extern int	chronicle_election_timeout;
extern int	chronicle_heartbeat_interval;
extern char *chronicle_database;
extern bool chronicle_debug_isolate;
extern int	chronicle_max_log_size;
extern int	chronicle_initial_cluster_state;

/* marks a membership command in a replicated DDL chunk */
#define MEMBERSHIP_MARKER "\x01membership"

extern void cluster_define_gucs(void);
extern bool cluster_enabled(void);
extern int	cluster_parse_members(const char *spec, ClusterMember *members,
								  int max, char **errmsg);
extern uint64 cluster_id_from_name(const char *name);

/* the shared insert queue (queue.c) */
typedef enum BatchState
{
	BATCH_FREE = 0,
	BATCH_QUEUED,				/* in the queue, not yet proposed */
	BATCH_CANCELLED,			/* its backend gave up before it was proposed */
	BATCH_PROPOSED,				/* in a Raft entry, outcome pending */
	BATCH_COMMITTED,			/* the entry is committed by a quorum */
	BATCH_APPLIED,				/* ... and applied on this node */
	BATCH_FAILED,				/* provably not committed */
	BATCH_UNKNOWN,				/* outcome unknown (leader change) */
	READ_REQUESTED,				/* a read barrier waits for the worker */
	READ_SENT					/* the worker asked the leader */
} BatchState;

typedef struct QueuedBatch
{
	int			slot;
	uint64		batch_id;
	char	   *data;
	Size		len;
} QueuedBatch;

typedef struct MemberStatus
{
	uint64		id;
	char		address[80];
	bool		connected;		/* an authenticated connection is up */
	bool		voter;
	bool		has_match;
	uint64		match_index;	/* known on the leader only */
	TimestampTz last_contact;	/* last frame received, 0 = never */
} MemberStatus;

typedef struct ClusterStatus
{
	uint64		node_id;
	int			role;			/* raft_role */
	uint64		term;
	uint64		leader_id;
	uint64		commit_index;
	uint64		applied_index;
	uint64		last_log_index;
	bool		running;
	uint64		changing_node;	/* member being added or removed, 0: none */
	char		apply_error[256];	/* why applying stopped, "" when it did not */
	int			nmembers;
	MemberStatus members[CLUSTER_MAX_MEMBERS];
} ClusterStatus;

extern void queue_shmem_request(void);
extern void queue_shmem_startup(void);
/*
 * A replicated transaction too large for one batch travels as parts of at
 * most PART_BYTES; each part's batch starts with a PartHeader (marker
 * BATCH_PART_MARKER where a stream section would have its name length).
 * Every node keeps PART_EVENTS parts in chronicle.open_parts; the
 * PART_FINAL part (number nparts - 1) applies them all with its own events
 * as one batch, or fails alike everywhere if one is missing.  PART_ABORT
 * discards a transaction's parts; PART_ABORT_ORIGIN discards those of an
 * origin's earlier runs (boot other than the header's).
 */
#define PART_BYTES			((Size) 8 * 1024 * 1024)
#define BATCH_PART_MARKER	0xFFFE

typedef enum PartKind
{
	PART_EVENTS = 1,
	PART_FINAL = 2,
	PART_ABORT = 3,
	PART_ABORT_ORIGIN = 4
} PartKind;

typedef struct PartHeader
{
	uint16		marker;			/* BATCH_PART_MARKER */
	uint16		kind;			/* PartKind */
	uint32		part;			/* 0, 1, ... */
	uint32		nparts;			/* PART_FINAL: how many, itself included */
	uint32		reserved;
	uint64		origin;			/* node of the sending session */
	uint64		txn;			/* random, chosen by the session */
	uint64		boot;			/* the origin server's run (queue_boot_id) */
} PartHeader;

extern void queue_submit_and_wait(const char *data, Size len, bool decides);
extern bool queue_submit_detached(const char *data, Size len);
extern Size queue_max_batch(void);
extern uint64 queue_boot_id(void);
/* where queue_drain() puts a batch's len bytes, or NULL: no room */
typedef char *(*queue_place_fn) (void *arg, int slot, uint64 batch_id, Size len);
extern int	queue_drain(QueuedBatch **batches, Size max_bytes, queue_place_fn place,
						void *arg);
extern void queue_set_state(int slot, uint64 batch_id, BatchState state, const char *msg);
extern void queue_set_state_by_batch(uint64 batch_id, BatchState state, const char *msg);
extern void queue_abandon_slot(int slot, const char *msg);
/*
 * The worker's transactions (worker.c).  CommitTransactionCommand() and
 * AbortCurrentTransaction() leave TopMemoryContext current; these return to
 * the context current at worker_xact_start(), so that what the worker
 * allocates after a transaction still goes to its loop context (reset
 * every iteration) instead of staying for good.
 */
extern void worker_xact_start(void);
extern void worker_xact_commit(void);
extern void worker_xact_abort(void);

extern void queue_worker_attach(void);
extern void queue_worker_detach(void);
extern void queue_publish_status(const ClusterStatus *status);
extern void queue_read_status(ClusterStatus *status);
extern Size queue_bytes_waiting(void);
extern uint64 queue_read_barrier(void);
extern int	queue_collect_reads(int *slots, uint64 *ids, int max);
extern void queue_finish_read(int slot, uint64 id, bool ok, uint64 index, const char *msg);

/* the worker (worker.c) */
extern void cluster_register_worker(void);
extern bool am_cluster_worker;

#endif							/* CHRONICLE_CLUSTER_H */
