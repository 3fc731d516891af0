/* RAFT_MSG_API_READY */
/*-------------------------------------------------------------------------
 *
 * raft.h
 *	  Public interface of the chronicle_raft consensus engine.
 *
 * The engine is a deterministic state machine written in plain C99.  It
 * includes no PostgreSQL header, performs no I/O, reads no clock and keeps
 * no global state: everything lives in one raft_node.  The caller (the
 * background worker, or the simulator in test/sim) feeds it inputs
 *
 *		raft_step()			a message received from a peer
 *		raft_tick()			one logical clock tick
 *		raft_propose()		a new entry to replicate (leader only)
 *		raft_read_index()	a linearizable read request
 *		raft_persisted()	"everything up to (term, index) is durable"
 *
 * and collects its outputs with raft_ready_get() / raft_advance().  See
 * docs/raft.md for the persistence contract; in short, for each ready:
 *
 *	1. install ready.snapshot (if any), then write ready.entries (truncating
 *	   the stored log from entries[0].index first), then ready.hard_state,
 *	   and make all of it durable in that order;
 *	2. messages in ready.messages may be sent at once; messages in
 *	   ready.persist_messages only after step 1 is durable;
 *	3. then call raft_persisted(node, ready.persist_term,
 *	   ready.persist_index) -- confirmations must arrive in ready order;
 *	4. ready.committed entries are already durable and may be applied now.
 *
 * Everything a ready points to stays valid until raft_advance() on it, and
 * the node must not receive other inputs between raft_ready_get() and
 * raft_advance().  Every message carries the cluster id; messages with a
 * different cluster id are dropped by raft_step().
 *
 * The message structs below are encoded on the wire by src/net/ (protobuf);
 * fields may be added but must not be changed or removed.
 *
 * src/raft/raft.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CHRONICLE_RAFT_H
#define CHRONICLE_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint64_t raft_node_id;	/* 0 means "nobody" */
typedef uint64_t raft_term;
typedef uint64_t raft_index;

#define RAFT_NO_NODE		((raft_node_id) 0)

/* Upper bounds of a configuration (voters + learners, and removed ids). */
#define RAFT_MAX_MEMBERS	16
#define RAFT_MAX_REMOVED	64

/* Result codes of the API functions. */
typedef enum raft_status_code
{
	RAFT_OK = 0,
	RAFT_ERR_NOMEM = -1,		/* allocator returned NULL */
	RAFT_ERR_INVALID = -2,		/* bad argument */
	RAFT_ERR_NOT_LEADER = -3,	/* proposal or read on a non-leader */
	RAFT_ERR_BUSY = -4,			/* conf change pending, transfer running */
	RAFT_ERR_NOT_READY = -5,	/* leader has not committed in its term */
	RAFT_ERR_CLUSTER_ID = -6,	/* message for another cluster: dropped */
	RAFT_ERR_CONF = -7,			/* membership change not allowed */
	RAFT_ERR_COMPACTED = -8		/* requested index already compacted */
} raft_status_code;

/*----------
 * Log entries
 *----------
 */
typedef enum raft_entry_type
{
	RAFT_ENTRY_NORMAL = 0,		/* application payload */
	RAFT_ENTRY_NOOP = 1,		/* appended by every new leader */
	RAFT_ENTRY_CONF_CHANGE = 2	/* payload: encoded raft_conf_change */
} raft_entry_type;

typedef struct raft_entry
{
	raft_term	term;
	raft_index	index;
	raft_entry_type type;
	const uint8_t *data;		/* payload, may be NULL when len == 0 */
	size_t		len;
} raft_entry;

/*----------
 * Membership
 *----------
 */
typedef struct raft_conf_state
{
	uint32_t	num_voters;
	uint32_t	num_learners;
	uint32_t	num_removed;
	raft_node_id voters[RAFT_MAX_MEMBERS];
	raft_node_id learners[RAFT_MAX_MEMBERS];
	raft_node_id removed[RAFT_MAX_REMOVED];	/* never to be reused */
} raft_conf_state;

typedef enum raft_conf_change_type
{
	RAFT_CONF_ADD_LEARNER = 0,
	RAFT_CONF_PROMOTE = 1,		/* learner -> voter */
	RAFT_CONF_REMOVE = 2		/* voter or learner -> removed forever */
} raft_conf_change_type;

/*
 * Decoded payload of a RAFT_ENTRY_CONF_CHANGE entry.  "result" is the full
 * configuration after the change, so that a node that joins late learns the
 * whole membership from the entry that added it.
 */
typedef struct raft_conf_change
{
	raft_conf_change_type type;
	raft_node_id node_id;
	raft_conf_state result;
} raft_conf_change;

/*----------
 * Snapshots
 *----------
 */
typedef struct raft_snapshot_meta
{
	raft_index	index;			/* last log index the snapshot covers */
	raft_term	term;			/* term of that entry */
	raft_conf_state conf;		/* membership as of index */
} raft_snapshot_meta;

/* One piece of an InstallSnapshot transfer (one chunk in flight at a time). */
typedef struct raft_snapshot_chunk
{
	raft_snapshot_meta meta;
	uint64_t	offset;			/* byte offset of data in the snapshot */
	const uint8_t *data;
	size_t		len;
	bool		done;			/* last chunk */
} raft_snapshot_chunk;

/*----------
 * Messages
 *----------
 */
typedef enum raft_message_type
{
	RAFT_MSG_NONE = 0,
	RAFT_MSG_VOTE = 1,			/* RequestVote */
	RAFT_MSG_VOTE_RESP = 2,
	RAFT_MSG_PREVOTE = 3,		/* pre-vote: "would you vote for me?" */
	RAFT_MSG_PREVOTE_RESP = 4,
	RAFT_MSG_APPEND = 5,		/* AppendEntries */
	RAFT_MSG_APPEND_RESP = 6,
	RAFT_MSG_HEARTBEAT = 7,
	RAFT_MSG_HEARTBEAT_RESP = 8,
	RAFT_MSG_SNAPSHOT = 9,		/* one InstallSnapshot chunk */
	RAFT_MSG_SNAPSHOT_RESP = 10,
	RAFT_MSG_TIMEOUT_NOW = 11,	/* leadership transfer: campaign now */
	RAFT_MSG_READ_INDEX = 12,	/* follower forwards a read to the leader */
	RAFT_MSG_READ_INDEX_RESP = 13
} raft_message_type;

#define RAFT_MSG_TYPE_COUNT 14

/*
 * One message.  Field use by type:
 *
 *	VOTE, PREVOTE:		term (PREVOTE: the term the sender would campaign in),
 *						log_term/index = sender's last log entry,
 *						leader_transfer = campaign started by TimeoutNow.
 *	*_RESP to votes:	term, reject.
 *	APPEND:				log_term/index = entry preceding entries[],
 *						commit = leader's commit, entries.
 *	APPEND_RESP:		accept: index = last index now matching the leader.
 *						reject: index = the rejected prev index,
 *						reject_hint = follower's guess of the last index that
 *						may match, reject_hint_term = its term there.
 *	HEARTBEAT:			commit (capped at the follower's match), context =
 *						read-index round being confirmed.
 *	HEARTBEAT_RESP:		context echoed.
 *	SNAPSHOT:			snapshot = chunk (meta + offset + data + done).
 *	SNAPSHOT_RESP:		index = snapshot index, reject = false: chunk ending
 *						at reject_hint (byte offset) accepted; reject = true:
 *						restart at byte offset reject_hint.  After the last
 *						chunk is installed: snapshot.done = true.
 *	TIMEOUT_NOW:		term.
 *	READ_INDEX:			context = caller's read id.
 *	READ_INDEX_RESP:	context, index = read index, reject = leader refused.
 */
typedef struct raft_message
{
	raft_message_type type;
	raft_node_id from;
	raft_node_id to;
	uint64_t	cluster_id;
	raft_term	term;
	raft_term	log_term;
	raft_index	index;
	raft_index	commit;
	bool		reject;
	raft_index	reject_hint;
	raft_term	reject_hint_term;
	bool		leader_transfer;
	uint64_t	context;
	size_t		num_entries;
	raft_entry *entries;
	raft_snapshot_chunk snapshot;
} raft_message;

/*----------
 * Configuration, restore state and allocator
 *----------
 */
typedef struct raft_allocator
{
	void	   *(*alloc) (void *ctx, size_t size);
	void	   *(*realloc) (void *ctx, void *ptr, size_t size);
	void		(*free) (void *ctx, void *ptr);
	void	   *ctx;
} raft_allocator;

/*
 * Called by the leader to read snapshot bytes it sends to a follower.  Copy
 * at most cap bytes of the snapshot ending at snapshot_index, starting at
 * offset, into buf; set *len and *done (true when the end is reached).
 * Return RAFT_OK, or an error to retry later.
 */
typedef int (*raft_snapshot_read_fn) (void *ctx, raft_index snapshot_index,
									  uint64_t offset, uint8_t *buf,
									  size_t cap, size_t *len, bool *done);

/*
 * Called by the leader to read back the payload of a durable, applied log
 * entry whose in-memory copy it dropped (see max_cached_bytes), because a
 * follower still needs it.  Copy the len payload bytes of the entry at
 * index, which must have the given term, into buf.  Return RAFT_OK, or an
 * error: the message is then not sent and is retried later.
 */
typedef int (*raft_entry_read_fn) (void *ctx, raft_index index,
								   raft_term term, uint8_t *buf, size_t len);

typedef struct raft_config
{
	raft_node_id id;
	uint64_t	cluster_id;
	uint64_t	seed;			/* all randomness derives from this */
	uint32_t	election_ticks;	/* timeout is random in [n, 2n) */
	uint32_t	heartbeat_ticks;
	bool		pre_vote;		/* default true */
	bool		check_quorum;	/* default true */
	uint32_t	max_msg_entries;	/* entries per APPEND */
	uint64_t	max_msg_bytes;	/* payload bytes per APPEND */
	uint32_t	max_inflight_msgs;	/* per follower */
	uint64_t	max_inflight_bytes; /* per follower */
	uint32_t	snapshot_chunk_bytes;
	uint64_t	max_uncommitted_bytes;	/* leader refuses proposals beyond
										 * this (RAFT_ERR_BUSY); 0: no limit */
	raft_allocator allocator;	/* all NULL: malloc/realloc/free */
	raft_snapshot_read_fn snapshot_read;
	void	   *snapshot_read_ctx;

	/*
	 * With entry_read set, the payloads of applied entries are kept in
	 * memory only up to max_cached_bytes (the newest ones); older ones are
	 * read back through entry_read when a lagging follower needs them, so
	 * the engine's memory no longer grows with the log.  Without it every
	 * payload stays in memory until compaction.  Membership changes always
	 * stay.
	 */
	uint64_t	max_cached_bytes;
	raft_entry_read_fn entry_read;
	void	   *entry_read_ctx;
} raft_config;

typedef struct raft_hard_state
{
	raft_term	term;
	raft_node_id vote;
	raft_index	commit;
} raft_hard_state;

/*
 * What a node recovers from its durable storage at start.  A brand-new
 * member of the initial cluster has snapshot.index = 0 and snapshot.conf =
 * the initial voters; a node that joins later starts with an empty conf and
 * learns the membership from the leader.  With config.entry_read set,
 * normal entries up to applied may come without their payload (data NULL,
 * len as stored): the engine reads them back when it needs them.
 */
typedef struct raft_restore
{
	raft_hard_state hard_state;
	raft_snapshot_meta snapshot;	/* log is compacted up to this */
	const raft_entry *entries;	/* snapshot.index + 1 onwards */
	size_t		num_entries;
	raft_index	applied;		/* state machine already contains up to */
} raft_restore;

/*----------
 * Outputs
 *----------
 */
typedef enum raft_role
{
	RAFT_FOLLOWER = 0,
	RAFT_PRE_CANDIDATE = 1,
	RAFT_CANDIDATE = 2,
	RAFT_LEADER = 3
} raft_role;

typedef struct raft_read_state
{
	uint64_t	context;		/* caller's read id */
	raft_index	index;			/* serve the read once applied >= index */
	bool		failed;			/* leader refused: retry elsewhere */
} raft_read_state;

typedef enum raft_outcome
{
	RAFT_OUTCOME_COMMITTED = 0, /* the proposed entry committed */
	RAFT_OUTCOME_LOST = 1,		/* a different entry committed there */
	RAFT_OUTCOME_UNKNOWN = 2	/* skipped by a snapshot: ask the state */
} raft_outcome;

typedef struct raft_proposal_outcome
{
	raft_term	term;
	raft_index	index;
	raft_outcome outcome;
} raft_proposal_outcome;

typedef struct raft_ready
{
	/* soft state, for information */
	raft_role	role;
	raft_node_id leader;

	/* durable state changes, in the order they must be made durable */
	const raft_snapshot_meta *snapshot; /* install staged snapshot, or NULL */
	const raft_entry *entries;	/* truncate from entries[0].index, append */
	size_t		num_entries;
	bool		hard_state_changed;
	raft_hard_state hard_state;
	bool		must_persist;	/* any of the above present */
	raft_term	persist_term;	/* pass to raft_persisted() when durable */
	raft_index	persist_index;

	/* received snapshot chunks, to stage before persist_messages are sent */
	const raft_snapshot_chunk *snapshot_chunks;
	size_t		num_snapshot_chunks;

	const raft_message *messages;	/* may be sent at once */
	size_t		num_messages;
	const raft_message *persist_messages;	/* send after durability */
	size_t		num_persist_messages;

	const raft_entry *committed;	/* durable and committed: apply in order */
	size_t		num_committed;

	const raft_read_state *read_states;
	size_t		num_read_states;

	const raft_proposal_outcome *outcomes;
	size_t		num_outcomes;
} raft_ready;

typedef struct raft_status
{
	raft_node_id id;
	raft_role	role;
	raft_term	term;
	raft_node_id vote;
	raft_node_id leader;
	raft_index	commit;
	raft_index	applied;
	raft_index	stable;			/* durable log prefix */
	raft_index	first_index;	/* first index still in the log */
	raft_index	last_index;
	raft_term	last_term;
	raft_index	snapshot_index;
	raft_term	snapshot_term;
	raft_conf_state conf;		/* membership as of applied */
	bool		is_voter;
	bool		transferring;
} raft_status;

typedef struct raft_node raft_node;

/*----------
 * Functions
 *----------
 */
extern void raft_config_init(raft_config *cfg);

/*
 * The allocator rule of raft_config.allocator, for every module that takes
 * one (src/net/ too): *in if all three functions are set, else libc.
 */
extern void raft_allocator_resolve(const raft_allocator *in, raft_allocator *out);
extern int	raft_node_create(const raft_config *cfg, const raft_restore *restore,
							 raft_node **node_out);
extern void raft_node_destroy(raft_node *node);

extern int	raft_step(raft_node *node, const raft_message *msg);
extern void raft_tick(raft_node *node);
extern int	raft_propose(raft_node *node, const void *data, size_t len,
						 raft_term *term_out, raft_index *index_out);

/*
 * raft_propose() without the copy: data, allocated with the node's
 * allocator (raft_config.allocator; malloc by default), becomes the log
 * entry's payload.  The engine owns it from the call on, whatever the
 * result, and frees it when the entry leaves memory.
 */
extern int	raft_propose_take(raft_node *node, void *data, size_t len,
							  raft_term *term_out, raft_index *index_out);
extern int	raft_propose_conf_change(raft_node *node, raft_conf_change_type type,
									 raft_node_id node_id,
									 raft_term *term_out, raft_index *index_out);
extern int	raft_read_index(raft_node *node, uint64_t context);
extern int	raft_transfer_leadership(raft_node *node, raft_node_id target);
extern int	raft_campaign(raft_node *node);
/* Also confirms an installed snapshot: pass ready.persist_term/_index. */
extern void raft_persisted(raft_node *node, raft_term term, raft_index index);

/*
 * The application holds a durable snapshot of its state at index, which
 * must be <= applied and <= the durable log (raft_status.stable).
 */
extern int	raft_snapshot_taken(raft_node *node, raft_index index);

/* Discard log entries up to index (<= latest snapshot index). */
extern int	raft_compact(raft_node *node, raft_index index);

extern bool raft_has_ready(const raft_node *node);
extern void raft_ready_get(raft_node *node, raft_ready *ready);
extern void raft_advance(raft_node *node, const raft_ready *ready);

extern void raft_get_status(const raft_node *node, raft_status *status);

/* On a leader: the highest index known durable on member id (false otherwise). */
extern bool raft_get_match(const raft_node *node, raft_node_id id, raft_index *match);

/* Helpers for conf-change payloads (fixed little-endian layout). */
extern size_t raft_conf_change_encoded_size(const raft_conf_change *cc);
extern size_t raft_conf_change_encode(const raft_conf_change *cc, uint8_t *buf);
extern int	raft_conf_change_decode(const uint8_t *buf, size_t len,
									raft_conf_change *cc);
extern bool raft_conf_is_voter(const raft_conf_state *conf, raft_node_id id);
extern bool raft_conf_is_learner(const raft_conf_state *conf, raft_node_id id);
extern bool raft_conf_is_removed(const raft_conf_state *conf, raft_node_id id);

extern const char *raft_message_type_name(raft_message_type type);
extern const char *raft_role_name(raft_role role);

#endif							/* CHRONICLE_RAFT_H */
