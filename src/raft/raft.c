/*-------------------------------------------------------------------------
 *
 * raft.c
 *	  The Raft state machine: elections, replication, commit, reads,
 *	  leadership transfer, membership and snapshots.
 *
 * This file owns every rule of the protocol.  It reads no clock, does no
 * I/O and draws randomness only from the node's own seeded generator, so a
 * run is a pure function of its inputs.
 *
 * Invariants kept here (the simulator in test/sim checks their effects):
 *	- at most one vote per term, and the vote is durable before any node
 *	  can learn of it (VOTE and VOTE_RESP travel in persist_messages);
 *	- a node acknowledges entries (APPEND_RESP) only after they are durable;
 *	- the leader counts itself toward a quorum only up to its own durable
 *	  index ("stable", learned through raft_persisted());
 *	- the leader advances commit only to an entry of its own term (Raft
 *	  paper section 5.4.2); older entries commit indirectly;
 *	- a committed entry is never truncated (such a message is refused);
 *	- only voters count toward elections and commit; learners never do;
 *	- at most one membership change is uncommitted or unapplied at a time;
 *	- entries are handed to the application for applying only once they are
 *	  both committed and durable locally (applied <= min(commit, stable)).
 *
 * Persistence rules (see raft.h and docs/raft.md): the application makes
 * each ready's snapshot, entries and hard state durable in that order, then
 * sends persist_messages, then confirms with raft_persisted().
 *
 * Build flags RAFT_BUG_COMMIT_OLD_TERM, RAFT_BUG_ACK_BEFORE_PERSIST,
 * RAFT_BUG_COUNT_LEARNERS and RAFT_BUG_VOTE_BEFORE_PERSIST each break one
 * rule on purpose; they exist only so the simulator can prove that it
 * catches such bugs, and must never be used in a real build.
 *
 * src/raft/raft.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft_int.h"

#define RAFT_MAX_PROPOSAL_BYTES ((size_t) 1 << 30)

static void become_follower(raft_node *node, raft_term term, raft_node_id leader);
static bool send_append(raft_node *node, raft_progress *pr, bool send_if_empty);
static void release_applied_payloads(raft_node *node);

/*----------
 * Small utilities
 *----------
 */

void
raft_panic(const char *file, int line, const char *cond)
{
	fprintf(stderr, "raft: invariant violated at %s:%d: %s\n", file, line, cond);
	fflush(stderr);
	abort();
}

/* splitmix64: tiny, fast and good enough for election jitter. */
static uint64_t
rng_next(raft_node *node)
{
	uint64_t	z;

	node->rng_state += UINT64_C(0x9E3779B97F4A7C15);
	z = node->rng_state;
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

static void
reset_randomized_timeout(raft_node *node)
{
	node->randomized_timeout = node->cfg.election_ticks +
		(uint32_t) (rng_next(node) % node->cfg.election_ticks);
}

static raft_index
min_index(raft_index a, raft_index b)
{
	return a < b ? a : b;
}

static raft_index
max_index(raft_index a, raft_index b)
{
	return a > b ? a : b;
}

static raft_index
last_index(const raft_node *node)
{
	return raft_log_last_index(&node->log);
}

static raft_term
term_at(const raft_node *node, raft_index index)
{
	return raft_log_term_or_zero(&node->log, index);
}

static bool
is_voter_self(const raft_node *node)
{
	return raft_conf_is_voter(&node->conf, node->cfg.id);
}

/*
 * Messages that depend on state which must be durable first go to the
 * persist queue: a vote request or grant (term and vote), acknowledgements
 * of entries or snapshot chunks, and any answer that reveals a term we may
 * not have persisted yet.  Leader traffic carries only durable facts (its
 * term became durable before it could collect votes), so it may leave at
 * once, in parallel with the leader's own disk write.
 */
static bool
message_needs_persist(raft_message_type type)
{
	switch (type)
	{
		case RAFT_MSG_VOTE_RESP:
#ifdef RAFT_BUG_VOTE_BEFORE_PERSIST
			return false;
#else
			return true;
#endif
		case RAFT_MSG_VOTE:
		case RAFT_MSG_HEARTBEAT_RESP:
		case RAFT_MSG_SNAPSHOT_RESP:
			return true;
		case RAFT_MSG_APPEND_RESP:
#ifdef RAFT_BUG_ACK_BEFORE_PERSIST
			return false;
#else
			return true;
#endif
		default:
			return false;
	}
}

static raft_message *
new_message(raft_node *node, raft_message_type type, raft_node_id to)
{
	raft_vec   *queue;
	raft_message *msg;

	queue = message_needs_persist(type) ?
		&node->out_persist_messages : &node->out_messages;
	msg = raft_vec_push(node, queue);
	if (msg == NULL)
		return NULL;
	msg->type = type;
	msg->from = node->cfg.id;
	msg->to = to;
	msg->cluster_id = node->cfg.cluster_id;
	msg->term = node->term;
	return msg;
}

static void
push_read_state(raft_node *node, uint64_t context, raft_index index, bool failed)
{
	raft_read_state *rs = raft_vec_push(node, &node->out_read_states);

	if (rs == NULL)
		return;
	rs->context = context;
	rs->index = index;
	rs->failed = failed;
}

static void
push_outcome(raft_node *node, const raft_proposal *prop, raft_outcome outcome)
{
	raft_proposal_outcome *out = raft_vec_push(node, &node->out_outcomes);

	if (out == NULL)
		return;
	out->term = prop->term;
	out->index = prop->index;
	out->outcome = outcome;
}

static size_t
pending_proposals(const raft_node *node)
{
	return node->proposals.count;
}

static raft_proposal *
proposal_at(raft_node *node, size_t k)
{
	return (raft_proposal *) node->proposals.items + k;
}

/*
 * Proposals at or below index were skipped by an installed snapshot: we
 * cannot tell whether our entry or another one was committed there.
 */
static void
resolve_proposals_unknown(raft_node *node, raft_index index)
{
	size_t		count = pending_proposals(node);
	size_t		keep = 0;
	size_t		k;
	raft_proposal *props = proposal_at(node, 0);

	for (k = 0; k < count; k++)
	{
		if (props[k].index <= index)
			push_outcome(node, &props[k], RAFT_OUTCOME_UNKNOWN);
		else
			props[keep++] = props[k];
	}
	node->proposals.count = keep;
}

/*
 * Report the outcome of every proposal at or below apply_to, which is about
 * to be applied.  The FIFO is not sorted by index: a proposal made in an
 * earlier term may sit at a higher index than a later one, when its entry
 * was overwritten, so we scan it all and keep the unresolved in order.
 */
static void
resolve_proposals(raft_node *node, raft_index apply_to)
{
	size_t		count = pending_proposals(node);
	size_t		keep = 0;
	size_t		k;
	raft_proposal *props = proposal_at(node, 0);

	for (k = 0; k < count; k++)
	{
		raft_proposal prop = props[k];
		raft_term	term;

		if (prop.index > apply_to)
		{
			props[keep++] = prop;
			continue;
		}
		if (!raft_log_term_at(&node->log, prop.index, &term))
			push_outcome(node, &prop, RAFT_OUTCOME_UNKNOWN);
		else
			push_outcome(node, &prop, term == prop.term ?
						 RAFT_OUTCOME_COMMITTED : RAFT_OUTCOME_LOST);
	}
	node->proposals.count = keep;
}

/*
 * Is there a committed membership change the application has not applied
 * yet?  Campaigning with a stale membership could count the wrong voters,
 * so a node waits until it has applied such changes.
 */
static bool
has_unapplied_conf_change(const raft_node *node)
{
	raft_index	index;
	raft_index	upto = min_index(node->commit, last_index(node));

	for (index = node->applied + 1; index <= upto; index++)
	{
		const raft_entry *entry = raft_log_entry(&node->log, index);

		if (entry != NULL && entry->type == RAFT_ENTRY_CONF_CHANGE)
			return true;
	}
	return false;
}

/*----------
 * Progress tracking (leader)
 *----------
 */

static raft_progress *
progress_find(raft_node *node, raft_node_id id)
{
	size_t		i;

	for (i = 0; i < node->num_progress; i++)
	{
		if (node->progress[i].id == id)
			return &node->progress[i];
	}
	return NULL;
}

static void
progress_inflight_reset(raft_progress *pr)
{
	pr->inflight_head = 0;
	pr->inflight_count = 0;
	pr->inflight_total_bytes = 0;
}

static bool
progress_inflight_full(const raft_node *node, const raft_progress *pr)
{
	return pr->inflight_count >= node->cfg.max_inflight_msgs ||
		pr->inflight_total_bytes >= node->cfg.max_inflight_bytes;
}

static void
progress_inflight_add(const raft_node *node, raft_progress *pr,
					  raft_index last, uint64_t bytes)
{
	uint32_t	slot;

	RAFT_ASSERT(pr->inflight_count < node->cfg.max_inflight_msgs);
	slot = (pr->inflight_head + pr->inflight_count) % node->cfg.max_inflight_msgs;
	pr->inflight_last[slot] = last;
	pr->inflight_bytes[slot] = bytes;
	pr->inflight_count++;
	pr->inflight_total_bytes += bytes;
}

/* Forget in-flight APPENDs acknowledged up to index. */
static void
progress_inflight_free_to(const raft_node *node, raft_progress *pr,
						  raft_index index)
{
	while (pr->inflight_count > 0 &&
		   pr->inflight_last[pr->inflight_head] <= index)
	{
		pr->inflight_total_bytes -= pr->inflight_bytes[pr->inflight_head];
		pr->inflight_head = (pr->inflight_head + 1) % node->cfg.max_inflight_msgs;
		pr->inflight_count--;
	}
}

static void
progress_inflight_free_first(const raft_node *node, raft_progress *pr)
{
	if (pr->inflight_count > 0)
		progress_inflight_free_to(node, pr, pr->inflight_last[pr->inflight_head]);
}

static bool
progress_is_paused(const raft_node *node, const raft_progress *pr)
{
	switch (pr->state)
	{
		case RAFT_PR_PROBE:
			return pr->probe_sent;
		case RAFT_PR_REPLICATE:
			return progress_inflight_full(node, pr);
		case RAFT_PR_SNAPSHOT:
			return true;
	}
	return true;
}

static void
progress_become_probe(raft_progress *pr)
{
	pr->state = RAFT_PR_PROBE;
	pr->next = pr->match + 1;
	pr->probe_sent = false;
	pr->snap_chunk_inflight = false;
	progress_inflight_reset(pr);
}

static void
progress_become_replicate(raft_progress *pr)
{
	pr->state = RAFT_PR_REPLICATE;
	pr->next = pr->match + 1;
	pr->probe_sent = false;
	progress_inflight_reset(pr);
}

static void
progress_init_slot(raft_node *node, raft_progress *pr, raft_node_id id,
				   bool is_voter)
{
	pr->id = id;
	pr->is_voter = is_voter;
	pr->match = 0;
	pr->next = last_index(node) + 1;
	pr->state = RAFT_PR_PROBE;
	pr->probe_sent = false;
	pr->recent_active = (id == node->cfg.id);
	pr->read_ack = 0;
	pr->snap_chunk_inflight = false;
	pr->snap_offset = 0;
	pr->snap_wait_ticks = 0;
	memset(&pr->snap_meta, 0, sizeof(pr->snap_meta));
	progress_inflight_reset(pr);
	if (id == node->cfg.id)
	{
		/* the leader's own match is its durable log, nothing more */
#ifdef RAFT_BUG_ACK_BEFORE_PERSIST
		pr->match = last_index(node);
#else
		pr->match = node->stable;
#endif
		pr->state = RAFT_PR_REPLICATE;
	}
}

/*
 * Make the progress slots mirror the membership: keep the slots of members
 * that stay (with their replication state), drop the others, add new ones.
 * A dropped slot is swapped with the last one so that each slot keeps its
 * own inflight buffers.
 */
static void
progress_sync_with_conf(raft_node *node, bool reset_all)
{
	size_t		i = 0;
	uint32_t	k;

	if (reset_all)
		node->num_progress = 0;
	while (i < node->num_progress)
	{
		raft_progress *pr = &node->progress[i];

		if (!raft_conf_is_member(&node->conf, pr->id))
		{
			raft_progress tmp = node->progress[node->num_progress - 1];

			node->progress[node->num_progress - 1] = *pr;
			*pr = tmp;
			node->num_progress--;
			continue;
		}
		pr->is_voter = raft_conf_is_voter(&node->conf, pr->id);
		i++;
	}
	for (k = 0; k < node->conf.num_voters + node->conf.num_learners; k++)
	{
		raft_node_id id = k < node->conf.num_voters ?
			node->conf.voters[k] :
			node->conf.learners[k - node->conf.num_voters];

		if (progress_find(node, id) == NULL)
		{
			RAFT_ASSERT(node->num_progress < RAFT_MAX_MEMBERS);
			progress_init_slot(node, &node->progress[node->num_progress], id,
							   raft_conf_is_voter(&node->conf, id));
			node->num_progress++;
		}
	}
}

/*
 * Entries (from, to] just committed: their payload no longer counts against
 * max_uncommitted_bytes.  Entries of earlier terms were never counted, hence
 * the clamp.
 */
static void
release_uncommitted(raft_node *node, raft_index from, raft_index to)
{
	raft_index	index;

	for (index = from + 1; index <= to && node->uncommitted_bytes > 0; index++)
	{
		const raft_entry *entry = raft_log_entry(&node->log, index);
		uint64_t	len = entry != NULL ? entry->len : 0;

		node->uncommitted_bytes -= len < node->uncommitted_bytes ?
			len : node->uncommitted_bytes;
	}
}

/*
 * Advance commit to the highest index durable on a majority of voters, but
 * only if that entry belongs to the current term (an entry of an older
 * term may still be overwritten: Raft paper figure 8).
 */
static bool
leader_maybe_commit(raft_node *node)
{
	raft_index	matches[RAFT_MAX_MEMBERS];
	uint32_t	count = 0;
	uint32_t	i;
	raft_index	candidate;
	size_t		p;

	for (p = 0; p < node->num_progress; p++)
	{
#ifdef RAFT_BUG_COUNT_LEARNERS
		matches[count++] = node->progress[p].match;
#else
		if (node->progress[p].is_voter)
			matches[count++] = node->progress[p].match;
#endif
	}
	if (count == 0)
		return false;
	/* insertion sort, descending; count <= RAFT_MAX_MEMBERS */
	for (i = 1; i < count; i++)
	{
		raft_index	value = matches[i];
		uint32_t	j = i;

		while (j > 0 && matches[j - 1] < value)
		{
			matches[j] = matches[j - 1];
			j--;
		}
		matches[j] = value;
	}
#ifdef RAFT_BUG_COUNT_LEARNERS
	/* the quorum size still comes from the voters, as in a real bug */
	candidate = matches[raft_conf_quorum(&node->conf) - 1];
#else
	candidate = matches[count / 2];
#endif
	if (candidate <= node->commit)
		return false;
#ifndef RAFT_BUG_COMMIT_OLD_TERM
	if (term_at(node, candidate) != node->term)
		return false;
#endif
	release_uncommitted(node, node->commit, candidate);
	node->commit = candidate;
	return true;
}

/*----------
 * Sending (leader)
 *----------
 */

static bool
send_snapshot_chunk(raft_node *node, raft_progress *pr)
{
	uint8_t    *buf;
	size_t		len = 0;
	bool		done = false;
	int			rc = RAFT_ERR_INVALID;
	raft_message *msg;

	buf = raft_arena_alloc(node, node->cfg.snapshot_chunk_bytes);
	if (buf == NULL)
		return false;
	if (node->cfg.snapshot_read != NULL)
		rc = node->cfg.snapshot_read(node->cfg.snapshot_read_ctx,
									 pr->snap_meta.index, pr->snap_offset,
									 buf, node->cfg.snapshot_chunk_bytes,
									 &len, &done);
	if (rc != RAFT_OK || len > node->cfg.snapshot_chunk_bytes)
	{
		/*
		 * The snapshot we were sending may have been replaced by a newer one;
		 * start over with that.  Either way the next tick retries.
		 */
		if (node->snapshot.index != pr->snap_meta.index)
		{
			pr->snap_meta = node->snapshot;
			pr->snap_offset = 0;
		}
		pr->snap_chunk_inflight = false;
		pr->snap_wait_ticks = 0;
		return false;
	}
	msg = new_message(node, RAFT_MSG_SNAPSHOT, pr->id);
	if (msg == NULL)
		return false;
	msg->snapshot.meta = pr->snap_meta;
	msg->snapshot.offset = pr->snap_offset;
	msg->snapshot.data = buf;
	msg->snapshot.len = len;
	msg->snapshot.done = done;
	pr->snap_chunk_inflight = true;
	pr->snap_wait_ticks = 0;
	return true;
}

static bool
start_snapshot(raft_node *node, raft_progress *pr)
{
	RAFT_ASSERT(node->snapshot.index >= node->log.snap_index);
	pr->state = RAFT_PR_SNAPSHOT;
	pr->snap_meta = node->snapshot;
	pr->snap_offset = 0;
	pr->snap_chunk_inflight = false;
	progress_inflight_reset(pr);
	return send_snapshot_chunk(node, pr);
}

/*
 * Send the next APPEND to a follower if its flow control allows.  Returns
 * true if a message went out (callers loop to fill the pipeline).
 */
/*
 * Give e (a copy in an outgoing message) back the payload its log entry
 * dropped, read from storage into the arena: it lives as long as the
 * message.  False if that fails; the message is then not sent, and the
 * next heartbeat answer or proposal tries again.
 */
static bool
read_back_payload(raft_node *node, raft_entry *e)
{
	uint8_t    *buf = raft_arena_alloc(node, e->len);

	if (buf == NULL ||
		node->cfg.entry_read(node->cfg.entry_read_ctx, e->index, e->term,
							 buf, e->len) != RAFT_OK)
		return false;
	e->data = buf;
	return true;
}

static bool
send_append(raft_node *node, raft_progress *pr, bool send_if_empty)
{
	raft_index	prev;
	raft_term	prev_term;
	raft_index	last = last_index(node);
	raft_index	index;
	size_t		count = 0;
	uint64_t	bytes = 0;
	raft_entry *entries = NULL;
	raft_message *msg;

	if (pr->id == node->cfg.id || progress_is_paused(node, pr))
		return false;
	RAFT_ASSERT(pr->next >= 1 && pr->next <= last + 1);
	prev = pr->next - 1;
	if (!raft_log_term_at(&node->log, prev, &prev_term))
		return start_snapshot(node, pr);

	for (index = pr->next; index <= last && count < node->cfg.max_msg_entries; index++)
	{
		const raft_entry *entry = raft_log_entry(&node->log, index);

		/* always send at least one entry, however large */
		if (count > 0 && bytes + entry->len > node->cfg.max_msg_bytes)
			break;
		bytes += entry->len;
		count++;
	}
	if (count == 0 && !send_if_empty)
		return false;

	if (count > 0)
	{
		size_t		i;

		entries = raft_arena_alloc(node, count * sizeof(raft_entry));
		if (entries == NULL)
			return false;
		memcpy(entries, raft_log_entry(&node->log, pr->next),
			   count * sizeof(raft_entry));
		for (i = 0; i < count; i++)
		{
			if (entries[i].len > 0 && entries[i].data == NULL &&
				!read_back_payload(node, &entries[i]))
				return false;
		}
	}
	msg = new_message(node, RAFT_MSG_APPEND, pr->id);
	if (msg == NULL)
		return false;
	msg->log_term = prev_term;
	msg->index = prev;
	msg->commit = node->commit;
	msg->entries = entries;
	msg->num_entries = count;

	if (pr->state == RAFT_PR_REPLICATE)
	{
		if (count > 0)
		{
			pr->next = entries[count - 1].index + 1;
			progress_inflight_add(node, pr, entries[count - 1].index, bytes);
		}
	}
	else
		pr->probe_sent = true;
	return true;
}

/* Fill one follower's pipeline as far as flow control allows. */
static void
send_append_all(raft_node *node, raft_progress *pr, bool send_if_empty)
{
	uint32_t	guard = node->cfg.max_inflight_msgs + 2;

	if (!send_append(node, pr, send_if_empty))
		return;
	/* bounded: each round fills one inflight slot or stops */
	while (guard-- > 0 && send_append(node, pr, false))
		;
}

static void
send_heartbeat(raft_node *node, raft_progress *pr)
{
	raft_message *msg = new_message(node, RAFT_MSG_HEARTBEAT, pr->id);

	if (msg == NULL)
		return;
	/* never tell a follower to commit beyond what it is known to hold */
	msg->commit = min_index(pr->match, node->commit);
	msg->context = node->read_round;
}

static void
bcast_heartbeat(raft_node *node)
{
	size_t		i;

	for (i = 0; i < node->num_progress; i++)
	{
		if (node->progress[i].id != node->cfg.id)
			send_heartbeat(node, &node->progress[i]);
	}
}

/*
 * Deferred broadcasts: proposals and commit advances only set flags, and
 * the messages are built once per ready.  That is what batches many
 * proposals into one APPEND per follower.
 */
static void
flush_broadcasts(raft_node *node)
{
	size_t		i;

	if (node->role != RAFT_LEADER)
	{
		node->bcast_pending = false;
		node->bcast_commit = false;
		node->heartbeat_pending = false;
		return;
	}
	if (node->bcast_pending || node->bcast_commit)
	{
		for (i = 0; i < node->num_progress; i++)
			send_append_all(node, &node->progress[i], node->bcast_commit);
	}
	if (node->heartbeat_pending)
		bcast_heartbeat(node);
	node->bcast_pending = false;
	node->bcast_commit = false;
	node->heartbeat_pending = false;
}

/* Append one entry to the leader's log. Returns its index, 0 on OOM. */
static raft_index
leader_append(raft_node *node, raft_entry_type type, const void *data,
			  size_t len, bool adopt)
{
	raft_entry	entry;

	entry.term = node->term;
	entry.index = last_index(node) + 1;
	entry.type = type;
	entry.data = data;
	entry.len = len;
	if (!raft_log_append(node, &node->log, &entry, adopt))
		return 0;
#ifdef RAFT_BUG_ACK_BEFORE_PERSIST
	{
		raft_progress *self = progress_find(node, node->cfg.id);

		if (self != NULL)
			self->match = entry.index;
		if (leader_maybe_commit(node))
			node->bcast_commit = true;
	}
#endif
	node->bcast_pending = true;
	return entry.index;
}

/*----------
 * Reads
 *----------
 */

static void
answer_read(raft_node *node, const raft_read_request *req, bool failed)
{
	if (req->from == RAFT_NO_NODE)
		push_read_state(node, req->context, req->index, failed);
	else
	{
		raft_message *msg = new_message(node, RAFT_MSG_READ_INDEX_RESP, req->from);

		if (msg == NULL)
			return;
		msg->context = req->context;
		msg->index = req->index;
		msg->reject = failed;
	}
}

static void
fail_pending_reads(raft_node *node)
{
	size_t		i;

	for (i = 0; i < node->read_requests.count; i++)
		answer_read(node, (raft_read_request *) node->read_requests.items + i, true);
	node->read_requests.count = 0;
}

/*
 * Release the reads whose heartbeat round a quorum of voters confirmed:
 * the leader was still the leader after those reads arrived.
 */
static void
release_confirmed_reads(raft_node *node)
{
	uint64_t	acks[RAFT_MAX_MEMBERS];
	uint32_t	count = 0;
	uint32_t	i;
	uint64_t	confirmed;
	size_t		p;
	size_t		done = 0;
	raft_read_request *reqs = node->read_requests.items;

	if (node->read_requests.count == 0)
		return;
	for (p = 0; p < node->num_progress; p++)
	{
		const raft_progress *pr = &node->progress[p];

		if (!pr->is_voter)
			continue;
		acks[count++] = pr->id == node->cfg.id ? node->read_round : pr->read_ack;
	}
	if (count == 0)
		return;
	for (i = 1; i < count; i++)
	{
		uint64_t	value = acks[i];
		uint32_t	j = i;

		while (j > 0 && acks[j - 1] < value)
		{
			acks[j] = acks[j - 1];
			j--;
		}
		acks[j] = value;
	}
	confirmed = acks[count / 2];
	while (done < node->read_requests.count && reqs[done].round <= confirmed)
	{
		answer_read(node, &reqs[done], false);
		done++;
	}
	if (done > 0)
	{
		memmove(reqs, reqs + done,
				(node->read_requests.count - done) * sizeof(raft_read_request));
		node->read_requests.count -= done;
	}
}

static int
leader_read(raft_node *node, uint64_t context, raft_node_id from)
{
	raft_read_request *req;

	/*
	 * Until the leader commits an entry of its own term it does not know
	 * the full committed prefix, so its commit index is no safe read point.
	 */
	if (term_at(node, node->commit) != node->term)
		return RAFT_ERR_NOT_READY;
	req = raft_vec_push(node, &node->read_requests);
	if (req == NULL)
		return RAFT_ERR_NOMEM;
	req->context = context;
	req->from = from;
	req->index = node->commit;
	req->round = ++node->read_round;
	node->heartbeat_pending = true;
	/* a single voter confirms itself */
	release_confirmed_reads(node);
	return RAFT_OK;
}

/*----------
 * Role changes
 *----------
 */

static void
reset_votes(raft_node *node)
{
	node->num_granted = 0;
	node->num_rejected = 0;
}

static void
reset_common(raft_node *node, raft_term term)
{
	if (term != node->term)
	{
		node->term = term;
		node->vote = RAFT_NO_NODE;
	}
	node->leader = RAFT_NO_NODE;
	node->election_elapsed = 0;
	node->heartbeat_elapsed = 0;
	reset_randomized_timeout(node);
	reset_votes(node);
	node->transferee = RAFT_NO_NODE;
	node->transfer_elapsed = 0;
	node->bcast_pending = false;
	node->bcast_commit = false;
	node->heartbeat_pending = false;
	if (node->read_requests.count > 0)
		fail_pending_reads(node);
}

static void
become_follower(raft_node *node, raft_term term, raft_node_id leader)
{
	reset_common(node, term);
	node->role = RAFT_FOLLOWER;
	node->leader = leader;
}

static void
become_pre_candidate(raft_node *node)
{
	/* term and vote stay untouched: a pre-vote changes nothing durable */
	node->role = RAFT_PRE_CANDIDATE;
	node->leader = RAFT_NO_NODE;
	reset_votes(node);
	node->transferee = RAFT_NO_NODE;
	if (node->read_requests.count > 0)
		fail_pending_reads(node);
}

static void
become_candidate(raft_node *node)
{
	reset_common(node, node->term + 1);
	node->vote = node->cfg.id;
	node->role = RAFT_CANDIDATE;
}

static void
become_leader(raft_node *node)
{
	RAFT_ASSERT(node->role == RAFT_CANDIDATE);
	node->role = RAFT_LEADER;
	node->leader = node->cfg.id;
	node->election_elapsed = 0;
	node->heartbeat_elapsed = 0;
	node->transferee = RAFT_NO_NODE;
	node->uncommitted_bytes = 0;
	progress_sync_with_conf(node, true);

	/*
	 * Any membership change in our log may still be unapplied; allow the
	 * next one only after everything up to here has been applied.
	 */
	node->pending_conf_index = last_index(node);

	/*
	 * Commit an entry of the new term as soon as possible (section 8): until
	 * then older entries cannot commit and reads have no safe index.  On
	 * allocation failure the node is marked broken by leader_append.
	 */
	(void) leader_append(node, RAFT_ENTRY_NOOP, NULL, 0, false);
}

static bool
record_vote(raft_node *node, raft_node_id from, bool granted)
{
	uint32_t	i;

	if (!raft_conf_is_voter(&node->conf, from))
		return false;
	for (i = 0; i < node->num_granted; i++)
		if (node->votes_granted[i] == from)
			return false;
	for (i = 0; i < node->num_rejected; i++)
		if (node->votes_rejected[i] == from)
			return false;
	if (granted)
		node->votes_granted[node->num_granted++] = from;
	else
		node->votes_rejected[node->num_rejected++] = from;
	return true;
}

static void
campaign(raft_node *node, bool pre_vote, bool transfer)
{
	raft_term	vote_term;
	raft_message_type type;
	uint32_t	i;

	if (!is_voter_self(node) || has_unapplied_conf_change(node))
		return;
	if (pre_vote)
	{
		become_pre_candidate(node);
		vote_term = node->term + 1;
		type = RAFT_MSG_PREVOTE;
	}
	else
	{
		become_candidate(node);
		vote_term = node->term;
		type = RAFT_MSG_VOTE;
	}
	node->election_elapsed = 0;
	reset_randomized_timeout(node);
	record_vote(node, node->cfg.id, true);
	if (node->num_granted >= raft_conf_quorum(&node->conf))
	{
		if (pre_vote)
			campaign(node, false, transfer);
		else
			become_leader(node);
		return;
	}
	for (i = 0; i < node->conf.num_voters; i++)
	{
		raft_message *msg;

		if (node->conf.voters[i] == node->cfg.id)
			continue;
		msg = new_message(node, type, node->conf.voters[i]);
		if (msg == NULL)
			return;
		msg->term = vote_term;
		msg->log_term = raft_log_last_term(&node->log);
		msg->index = last_index(node);
		msg->leader_transfer = transfer;
	}
}

/*----------
 * Membership and snapshots applied locally
 *----------
 */

static bool
conf_history_push(raft_node *node, raft_index index, const raft_conf_state *conf)
{
	raft_conf_history *slot;

	if (node->conf_history_count == node->conf_history_cap)
	{
		size_t		new_cap = node->conf_history_cap == 0 ?
			4 : node->conf_history_cap * 2;
		raft_conf_history *items;

		items = raft_mem_realloc(node, node->conf_history,
								 new_cap * sizeof(raft_conf_history));

		if (items == NULL)
			return false;
		node->conf_history = items;
		node->conf_history_cap = new_cap;
	}
	slot = &node->conf_history[node->conf_history_count++];
	slot->index = index;
	slot->conf = *conf;
	return true;
}

/* Membership as of index (index >= snapshot index, <= applied). */
static const raft_conf_state *
conf_at(const raft_node *node, raft_index index)
{
	const raft_conf_state *conf = &node->snapshot.conf;
	size_t		i;

	for (i = 0; i < node->conf_history_count; i++)
	{
		if (node->conf_history[i].index <= index)
			conf = &node->conf_history[i].conf;
	}
	return conf;
}

static void
conf_history_prune(raft_node *node, raft_index upto)
{
	size_t		keep = 0;
	size_t		i;

	for (i = 0; i < node->conf_history_count; i++)
	{
		if (node->conf_history[i].index > upto)
			node->conf_history[keep++] = node->conf_history[i];
	}
	node->conf_history_count = keep;
}

/*
 * A leader that removed itself hands leadership to the most up-to-date
 * voter at once, instead of leaving the cluster to wait for a timeout.
 */
static void
hand_off_after_removal(raft_node *node)
{
	raft_progress *best = NULL;
	size_t		i;

	for (i = 0; i < node->num_progress; i++)
	{
		raft_progress *pr = &node->progress[i];

		if (pr->id == node->cfg.id || !raft_conf_is_voter(&node->conf, pr->id))
			continue;
		if (best == NULL || pr->match > best->match)
			best = pr;
	}
	if (best != NULL && best->match == last_index(node))
		(void) new_message(node, RAFT_MSG_TIMEOUT_NOW, best->id);
}

static void
apply_conf_change(raft_node *node, const raft_entry *entry)
{
	raft_conf_change cc;
	int			rc;

	rc = raft_conf_change_decode(entry->data, entry->len, &cc);
	/* the leader encoded it; a committed entry that fails to decode is rot */
	RAFT_ASSERT(rc == RAFT_OK);
	node->conf = cc.result;
	if (!conf_history_push(node, entry->index, &cc.result))
		return;
	if (node->role != RAFT_LEADER)
		return;
	if (!is_voter_self(node))
	{
		hand_off_after_removal(node);
		become_follower(node, node->term, RAFT_NO_NODE);
		return;
	}
	progress_sync_with_conf(node, false);
	if (node->transferee != RAFT_NO_NODE &&
		!raft_conf_is_voter(&node->conf, node->transferee))
		node->transferee = RAFT_NO_NODE;
	/* a smaller quorum may commit more now; a new member needs entries */
	if (leader_maybe_commit(node))
		node->bcast_commit = true;
	node->bcast_pending = true;
}

/*
 * Replace our state by a received snapshot.  The staged chunks become the
 * state machine; the log restarts right after the snapshot.
 */
static void
install_snapshot(raft_node *node, const raft_snapshot_meta *meta)
{
	raft_log_reset(node, &node->log, meta->index, meta->term);
	node->applied_cached_bytes = 0;
	node->persist_from = meta->index + 1;
	node->stable = min_index(node->stable, meta->index);
	node->commit = max_index(node->commit, meta->index);
	node->applied = meta->index;
	node->conf = meta->conf;
	node->conf_history_count = 0;
	node->snapshot = *meta;
	node->install_pending = true;
	node->install_meta = *meta;
	resolve_proposals_unknown(node, meta->index);
}

/*----------
 * Message handlers
 *----------
 */

static void
handle_vote_request(raft_node *node, const raft_message *m)
{
	bool		pre_vote = (m->type == RAFT_MSG_PREVOTE);
	bool		can_vote;
	bool		up_to_date;
	raft_term	last_term = raft_log_last_term(&node->log);
	raft_message *resp;

	can_vote = node->vote == m->from ||
		(node->vote == RAFT_NO_NODE && node->leader == RAFT_NO_NODE) ||
		(pre_vote && m->term > node->term);
	up_to_date = m->log_term > last_term ||
		(m->log_term == last_term && m->index >= last_index(node));

	resp = new_message(node, pre_vote ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP,
					   m->from);
	if (resp == NULL)
		return;
	if (can_vote && up_to_date)
	{
		/* a pre-vote answer uses the term the candidate would run in */
		resp->term = m->term;
		resp->reject = false;
		if (!pre_vote)
		{
			node->vote = m->from;
			node->election_elapsed = 0;
		}
	}
	else
	{
		resp->term = node->term;
		resp->reject = true;
	}
}

/* Largest index <= index whose term is <= term (terms rise along the log). */
static raft_index
find_conflict_by_term(const raft_node *node, raft_index index, raft_term term)
{
	raft_index	lo = node->log.snap_index;
	raft_index	hi = min_index(index, last_index(node));

	if (hi <= lo)
		return hi;
	if (term_at(node, hi) <= term)
		return hi;
	/* invariant: term_at(lo) <= term or lo is the compaction point */
	while (hi - lo > 1)
	{
		raft_index	mid = lo + (hi - lo) / 2;

		if (term_at(node, mid) <= term)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

static void
handle_append(raft_node *node, const raft_message *m)
{
	raft_message *resp;
	raft_term	prev_term;
	size_t		i;
	raft_index	last_new;

	if (m->index < node->commit)
	{
		/* everything up to commit matches the leader already */
		resp = new_message(node, RAFT_MSG_APPEND_RESP, m->from);
		if (resp != NULL)
			resp->index = node->commit;
		return;
	}
	if (!raft_log_term_at(&node->log, m->index, &prev_term) ||
		prev_term != m->log_term)
	{
		raft_index	hint = find_conflict_by_term(node, m->index, m->log_term);

		resp = new_message(node, RAFT_MSG_APPEND_RESP, m->from);
		if (resp == NULL)
			return;
		resp->reject = true;
		resp->index = m->index;
		resp->reject_hint = hint;
		resp->reject_hint_term = term_at(node, hint);
		return;
	}

	for (i = 0; i < m->num_entries; i++)
	{
		const raft_entry *e = &m->entries[i];
		raft_term	existing;

		if (raft_log_term_at(&node->log, e->index, &existing) && existing == e->term)
			continue;
		/* first conflict or first new entry: truncate and append the rest */
		if (e->index <= last_index(node))
		{
			/*
			 * A committed entry never changes.  A leader that says otherwise
			 * is broken or not one of us: refuse the whole message rather
			 * than destroy committed data (and rather than crash on input
			 * from the network).  Nothing was modified yet.
			 */
			if (e->index <= node->commit)
				return;
			raft_log_truncate_from(node, &node->log, e->index);
			node->stable = min_index(node->stable, e->index - 1);
			node->persist_from = min_index(node->persist_from, e->index);
		}
		for (; i < m->num_entries; i++)
		{
			if (!raft_log_append(node, &node->log, &m->entries[i], false))
				return;
		}
		break;
	}
	last_new = m->index + m->num_entries;
	node->commit = max_index(node->commit, min_index(m->commit, last_new));
	resp = new_message(node, RAFT_MSG_APPEND_RESP, m->from);
	if (resp != NULL)
		resp->index = last_new;
}

static void
handle_heartbeat(raft_node *node, const raft_message *m)
{
	raft_message *resp;

	node->commit = max_index(node->commit, min_index(m->commit, last_index(node)));
	resp = new_message(node, RAFT_MSG_HEARTBEAT_RESP, m->from);
	if (resp != NULL)
		resp->context = m->context;
}

static void
handle_snapshot(raft_node *node, const raft_message *m)
{
	const raft_snapshot_chunk *chunk = &m->snapshot;
	raft_snapshot_chunk *staged;
	raft_message *resp;
	uint8_t    *copy = NULL;
	raft_term	existing;

	if (chunk->meta.index <= node->commit)
	{
		/* we already have all of it: let the leader probe from commit */
		node->recv_active = false;
		resp = new_message(node, RAFT_MSG_APPEND_RESP, m->from);
		if (resp != NULL)
			resp->index = node->commit;
		return;
	}
	if (raft_log_term_at(&node->log, chunk->meta.index, &existing) &&
		existing == chunk->meta.term)
	{
		/* our log already holds the snapshot's last entry: no need for it */
		node->recv_active = false;
		node->commit = chunk->meta.index;
		resp = new_message(node, RAFT_MSG_APPEND_RESP, m->from);
		if (resp != NULL)
			resp->index = chunk->meta.index;
		return;
	}

	if (chunk->offset == 0)
	{
		/* offset 0 always starts a new transfer; staged bytes are dropped */
		node->recv_active = true;
		node->recv_meta = chunk->meta;
		node->recv_offset = 0;
	}
	else if (!node->recv_active ||
			 node->recv_meta.index != chunk->meta.index ||
			 node->recv_meta.term != chunk->meta.term ||
			 chunk->offset != node->recv_offset)
	{
		bool		same = node->recv_active &&
			node->recv_meta.index == chunk->meta.index &&
			node->recv_meta.term == chunk->meta.term;

		resp = new_message(node, RAFT_MSG_SNAPSHOT_RESP, m->from);
		if (resp == NULL)
			return;
		resp->index = chunk->meta.index;
		resp->reject = true;
		resp->reject_hint = same ? node->recv_offset : 0;
		return;
	}

	if (chunk->len > 0)
	{
		copy = raft_arena_alloc(node, chunk->len);
		if (copy == NULL)
			return;
		memcpy(copy, chunk->data, chunk->len);
	}
	staged = raft_vec_push(node, &node->out_chunks);
	if (staged == NULL)
		return;
	*staged = *chunk;
	staged->data = copy;
	node->recv_offset += chunk->len;

	resp = new_message(node, RAFT_MSG_SNAPSHOT_RESP, m->from);
	if (resp == NULL)
		return;
	resp->index = chunk->meta.index;
	resp->reject_hint = node->recv_offset;
	if (chunk->done)
	{
		node->recv_active = false;
		install_snapshot(node, &chunk->meta);
		resp->snapshot.done = true;
	}
}

static void
handle_append_resp(raft_node *node, raft_progress *pr, const raft_message *m)
{
	pr->recent_active = true;
	if (m->reject)
	{
		raft_index	next_probe;

		/* ignore answers to messages we have since superseded */
		if (m->index > last_index(node))
			return;				/* we never sent such a message */
		if (pr->state == RAFT_PR_REPLICATE && m->index <= pr->match)
			return;
		if (pr->state == RAFT_PR_PROBE && m->index != pr->next - 1)
			return;
		if (pr->state == RAFT_PR_SNAPSHOT)
			return;
		next_probe = m->reject_hint;
		if (m->reject_hint_term > 0)
			next_probe = find_conflict_by_term(node, m->reject_hint,
											   m->reject_hint_term);
		pr->next = max_index(min_index(m->index, next_probe + 1), pr->match + 1);
		pr->state = RAFT_PR_PROBE;
		pr->probe_sent = false;
		progress_inflight_reset(pr);
		send_append(node, pr, true);
		return;
	}

	if (m->index > last_index(node))
		return;					/* cannot be an answer to us */
	if (m->index > pr->match)
	{
		pr->match = m->index;
		if (leader_maybe_commit(node))
			node->bcast_commit = true;
	}
	pr->next = max_index(pr->next, m->index + 1);
	switch (pr->state)
	{
		case RAFT_PR_PROBE:
			progress_become_replicate(pr);
			break;
		case RAFT_PR_REPLICATE:
			progress_inflight_free_to(node, pr, m->index);
			break;
		case RAFT_PR_SNAPSHOT:
			progress_become_probe(pr);
			break;
	}
	send_append_all(node, pr, false);
	if (node->transferee == pr->id && pr->match == last_index(node))
		(void) new_message(node, RAFT_MSG_TIMEOUT_NOW, pr->id);
}

static void
handle_heartbeat_resp(raft_node *node, raft_progress *pr, const raft_message *m)
{
	pr->recent_active = true;
	pr->probe_sent = false;
	if (pr->state == RAFT_PR_REPLICATE && progress_inflight_full(node, pr))
		progress_inflight_free_first(node, pr);
	if (pr->match < last_index(node))
		send_append(node, pr, true);
	if (m->context > pr->read_ack)
	{
		pr->read_ack = m->context;
		release_confirmed_reads(node);
	}
}

static void
handle_snapshot_resp(raft_node *node, raft_progress *pr, const raft_message *m)
{
	pr->recent_active = true;
	if (pr->state != RAFT_PR_SNAPSHOT || m->index != pr->snap_meta.index)
		return;
	if (m->snapshot.done && !m->reject)
	{
		pr->match = max_index(pr->match, pr->snap_meta.index);
		progress_become_probe(pr);
		if (leader_maybe_commit(node))
			node->bcast_commit = true;
		send_append(node, pr, true);
		return;
	}
	/* the follower says where it wants the next chunk to start */
	pr->snap_offset = m->reject_hint;
	pr->snap_chunk_inflight = false;
	send_snapshot_chunk(node, pr);
}

static void
step_leader(raft_node *node, const raft_message *m)
{
	raft_progress *pr;

	if (m->type == RAFT_MSG_READ_INDEX)
	{
		if (leader_read(node, m->context, m->from) != RAFT_OK)
		{
			raft_message *resp = new_message(node, RAFT_MSG_READ_INDEX_RESP, m->from);

			if (resp != NULL)
			{
				resp->context = m->context;
				resp->reject = true;
			}
		}
		return;
	}
	pr = progress_find(node, m->from);
	if (pr == NULL || pr->id == node->cfg.id)
		return;
	switch (m->type)
	{
		case RAFT_MSG_APPEND_RESP:
			handle_append_resp(node, pr, m);
			break;
		case RAFT_MSG_HEARTBEAT_RESP:
			handle_heartbeat_resp(node, pr, m);
			break;
		case RAFT_MSG_SNAPSHOT_RESP:
			handle_snapshot_resp(node, pr, m);
			break;
		default:
			/* another leader in our term cannot exist; ignore the rest */
			break;
	}
}

static void
step_candidate(raft_node *node, const raft_message *m)
{
	raft_message_type expected = node->role == RAFT_PRE_CANDIDATE ?
		RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
	raft_term	expected_term = node->role == RAFT_PRE_CANDIDATE ?
		node->term + 1 : node->term;
	uint32_t	quorum = raft_conf_quorum(&node->conf);

	if (m->type != expected || m->term != expected_term)
		return;
	if (!record_vote(node, m->from, !m->reject))
		return;
	if (node->num_granted >= quorum)
	{
		if (node->role == RAFT_PRE_CANDIDATE)
			campaign(node, false, false);
		else
			become_leader(node);
	}
	else if (node->num_rejected > node->conf.num_voters - quorum)
		become_follower(node, node->term, RAFT_NO_NODE);
}

static void
step_follower(raft_node *node, const raft_message *m)
{
	switch (m->type)
	{
		case RAFT_MSG_APPEND:
			node->leader = m->from;
			node->election_elapsed = 0;
			handle_append(node, m);
			break;
		case RAFT_MSG_HEARTBEAT:
			node->leader = m->from;
			node->election_elapsed = 0;
			handle_heartbeat(node, m);
			break;
		case RAFT_MSG_SNAPSHOT:
			node->leader = m->from;
			node->election_elapsed = 0;
			handle_snapshot(node, m);
			break;
		case RAFT_MSG_TIMEOUT_NOW:
			campaign(node, false, true);
			break;
		case RAFT_MSG_READ_INDEX_RESP:
			push_read_state(node, m->context, m->index, m->reject);
			break;
		case RAFT_MSG_READ_INDEX:
			{
				raft_message *resp = new_message(node, RAFT_MSG_READ_INDEX_RESP, m->from);

				if (resp != NULL)
				{
					resp->context = m->context;
					resp->reject = true;
				}
			}
			break;
		default:
			break;
	}
}

/* Reject malformed input before it can touch any state. */
static bool
message_is_valid(const raft_node *node, const raft_message *m)
{
	size_t		i;

	if (m->type <= RAFT_MSG_NONE || m->type >= RAFT_MSG_TYPE_COUNT)
		return false;
	if (m->to != node->cfg.id || m->from == RAFT_NO_NODE || m->from == node->cfg.id)
		return false;
	if (m->num_entries > 0 && m->entries == NULL)
		return false;
	if (m->type == RAFT_MSG_APPEND)
	{
		raft_term	prev_term = m->log_term;

		for (i = 0; i < m->num_entries; i++)
		{
			const raft_entry *e = &m->entries[i];

			if (e->index != m->index + 1 + i || e->term < prev_term ||
				e->term > m->term || (e->len > 0 && e->data == NULL) ||
				e->type > RAFT_ENTRY_CONF_CHANGE)
				return false;
			prev_term = e->term;
		}
	}
	else if (m->num_entries != 0)
		return false;
	if (m->type == RAFT_MSG_SNAPSHOT)
	{
		const raft_snapshot_chunk *c = &m->snapshot;

		if ((c->len > 0 && c->data == NULL) ||
			c->meta.conf.num_voters > RAFT_MAX_MEMBERS ||
			c->meta.conf.num_learners > RAFT_MAX_MEMBERS ||
			c->meta.conf.num_removed > RAFT_MAX_REMOVED ||
			c->meta.index == 0)
			return false;
	}
	return true;
}

/*----------
 * Public API
 *----------
 */

void
raft_config_init(raft_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->election_ticks = 10;
	cfg->heartbeat_ticks = 1;
	cfg->pre_vote = true;
	cfg->check_quorum = true;
	cfg->max_msg_entries = 256;
	cfg->max_msg_bytes = 1024 * 1024;
	cfg->max_inflight_msgs = 64;
	cfg->max_inflight_bytes = 32 * 1024 * 1024;
	cfg->snapshot_chunk_bytes = 256 * 1024;
}

int
raft_node_create(const raft_config *cfg, const raft_restore *restore,
				 raft_node **node_out)
{
	raft_allocator allocator;
	raft_node  *node;
	size_t		i;
	raft_index	expected;

	*node_out = NULL;
	if (cfg->id == RAFT_NO_NODE || cfg->election_ticks < 2 ||
		cfg->heartbeat_ticks == 0 || cfg->heartbeat_ticks >= cfg->election_ticks ||
		cfg->max_msg_entries == 0 || cfg->max_inflight_msgs == 0 ||
		cfg->max_inflight_bytes == 0 || cfg->snapshot_chunk_bytes == 0)
		return RAFT_ERR_INVALID;

	/*
	 * The restored state must be self-consistent.  An entry without its
	 * payload must be a normal one the state machine has already applied,
	 * which the engine can read back.
	 */
	expected = restore->snapshot.index + 1;
	for (i = 0; i < restore->num_entries; i++)
	{
		const raft_entry *e = &restore->entries[i];

		if (e->index != expected + i)
			return RAFT_ERR_INVALID;
		if (e->len > 0 && e->data == NULL &&
			(cfg->entry_read == NULL || e->type != RAFT_ENTRY_NORMAL ||
			 e->index > max_index(restore->applied, restore->snapshot.index)))
			return RAFT_ERR_INVALID;
	}
	if (restore->hard_state.commit > restore->snapshot.index + restore->num_entries ||
		restore->applied > max_index(restore->hard_state.commit, restore->snapshot.index))
		return RAFT_ERR_INVALID;

	raft_allocator_resolve(&cfg->allocator, &allocator);
	node = allocator.alloc(allocator.ctx, sizeof(raft_node));
	if (node == NULL)
		return RAFT_ERR_NOMEM;
	memset(node, 0, sizeof(*node));
	node->cfg = *cfg;
	node->cfg.allocator = allocator;
	node->rng_state = cfg->seed ^ (cfg->id * UINT64_C(0xD1B54A32D192ED03));

	raft_vec_init(&node->read_requests, sizeof(raft_read_request));
	raft_vec_init(&node->proposals, sizeof(raft_proposal));
	raft_vec_init(&node->out_messages, sizeof(raft_message));
	raft_vec_init(&node->out_persist_messages, sizeof(raft_message));
	raft_vec_init(&node->out_chunks, sizeof(raft_snapshot_chunk));
	raft_vec_init(&node->out_read_states, sizeof(raft_read_state));
	raft_vec_init(&node->out_outcomes, sizeof(raft_proposal_outcome));

	for (i = 0; i < RAFT_MAX_MEMBERS; i++)
	{
		node->progress[i].inflight_last =
			raft_mem_alloc(node, cfg->max_inflight_msgs * sizeof(raft_index));
		node->progress[i].inflight_bytes =
			raft_mem_alloc(node, cfg->max_inflight_msgs * sizeof(uint64_t));
	}

	node->term = restore->hard_state.term;
	node->vote = restore->hard_state.vote;
	node->snapshot = restore->snapshot;
	node->log.snap_index = restore->snapshot.index;
	node->log.snap_term = restore->snapshot.term;
	node->log.cache_from = restore->snapshot.index + 1;
	node->conf = restore->snapshot.conf;
	for (i = 0; i < restore->num_entries && !node->broken; i++)
	{
		const raft_entry *e = &restore->entries[i];

		raft_log_append(node, &node->log, e, false);
		if (e->len > 0 && e->data == NULL)
			node->log.cache_from = e->index + 1;
	}

	node->commit = max_index(restore->hard_state.commit, restore->snapshot.index);
	node->applied = max_index(restore->applied, restore->snapshot.index);
	for (i = 0; i < restore->num_entries; i++)
	{
		const raft_entry *e = &restore->entries[i];

		if (e->index >= node->log.cache_from && e->index <= node->applied &&
			e->type == RAFT_ENTRY_NORMAL)
			node->applied_cached_bytes += e->len;
	}
	release_applied_payloads(node);
	node->stable = last_index(node);
	node->persist_from = last_index(node) + 1;
	node->last_hard_state = restore->hard_state;

	/* membership as of applied: later changes come back through apply */
	for (i = 0; i < restore->num_entries && !node->broken; i++)
	{
		const raft_entry *e = &restore->entries[i];
		raft_conf_change cc;

		if (e->index > node->applied)
			break;
		if (e->type != RAFT_ENTRY_CONF_CHANGE)
			continue;
		if (raft_conf_change_decode(e->data, e->len, &cc) != RAFT_OK)
		{
			node->broken = true;
			break;
		}
		node->conf = cc.result;
		conf_history_push(node, e->index, &cc.result);
	}

	if (node->broken)
	{
		raft_node_destroy(node);
		return RAFT_ERR_NOMEM;
	}
	node->role = RAFT_FOLLOWER;
	reset_randomized_timeout(node);
	*node_out = node;
	return RAFT_OK;
}

void
raft_node_destroy(raft_node *node)
{
	size_t		i;

	if (node == NULL)
		return;
	for (i = 0; i < RAFT_MAX_MEMBERS; i++)
	{
		raft_mem_free(node, node->progress[i].inflight_last);
		raft_mem_free(node, node->progress[i].inflight_bytes);
	}
	raft_log_destroy(node, &node->log);
	raft_graveyard_flush(node);
	raft_mem_free(node, node->graveyard.items);
	raft_arena_destroy(node);
	raft_mem_free(node, node->conf_history);
	raft_vec_free(node, &node->read_requests);
	raft_vec_free(node, &node->proposals);
	raft_vec_free(node, &node->out_messages);
	raft_vec_free(node, &node->out_persist_messages);
	raft_vec_free(node, &node->out_chunks);
	raft_vec_free(node, &node->out_read_states);
	raft_vec_free(node, &node->out_outcomes);
	node->cfg.allocator.free(node->cfg.allocator.ctx, node);
}

static int
api_entry_check(const raft_node *node)
{
	if (node->broken)
		return RAFT_ERR_NOMEM;
	if (node->in_ready)
		return RAFT_ERR_INVALID;
	return RAFT_OK;
}

int
raft_step(raft_node *node, const raft_message *m)
{
	int			rc = api_entry_check(node);
	bool		vote_request;

	if (rc != RAFT_OK)
		return rc;
	if (m->cluster_id != node->cfg.cluster_id)
		return RAFT_ERR_CLUSTER_ID;
	if (!message_is_valid(node, m))
		return RAFT_ERR_INVALID;

	vote_request = (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE);

	/*
	 * A node we know to be removed can never lead again (ids are never
	 * reused), so nothing it says may move our term or win our vote.  A node
	 * that is merely unknown to us is answered normally: it may be a voter
	 * whose promotion we have not applied yet, and ignoring it could stall
	 * elections (the simulator found exactly that).  Pre-vote and the
	 * check-quorum lease keep such nodes from disturbing a live leader.
	 */
	if (raft_conf_is_removed(&node->conf, m->from))
		return RAFT_OK;

	if (m->term > node->term)
	{
		if (vote_request)
		{
			/*
			 * Check-quorum lease: while we hear from a live leader we refuse
			 * to help anyone depose it, unless the leader itself asked for
			 * the transfer.
			 */
			bool		in_lease = node->cfg.check_quorum &&
				node->leader != RAFT_NO_NODE &&
				node->election_elapsed < node->cfg.election_ticks;

			if (in_lease && !m->leader_transfer)
				return RAFT_OK;
		}
		if (m->type == RAFT_MSG_PREVOTE ||
			(m->type == RAFT_MSG_PREVOTE_RESP && !m->reject))
		{
			/* pre-vote traffic never changes our term */
		}
		else if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
				 m->type == RAFT_MSG_SNAPSHOT)
			become_follower(node, m->term, m->from);
		else
			become_follower(node, m->term, RAFT_NO_NODE);
	}
	else if (m->term < node->term)
	{
		if ((node->cfg.check_quorum || node->cfg.pre_vote) &&
			(m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT))
		{
			/*
			 * A stale leader (e.g. healed from a partition) must learn our
			 * term, or it would never step down: pre-vote keeps our term
			 * from reaching it through elections.
			 */
			(void) new_message(node, RAFT_MSG_APPEND_RESP, m->from);
		}
		else if (m->type == RAFT_MSG_PREVOTE)
		{
			raft_message *resp = new_message(node, RAFT_MSG_PREVOTE_RESP, m->from);

			if (resp != NULL)
				resp->reject = true;
		}
		return node->broken ? RAFT_ERR_NOMEM : RAFT_OK;
	}

	if (vote_request)
		handle_vote_request(node, m);
	else
	{
		switch (node->role)
		{
			case RAFT_LEADER:
				step_leader(node, m);
				break;
			case RAFT_CANDIDATE:
			case RAFT_PRE_CANDIDATE:
				if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
					m->type == RAFT_MSG_SNAPSHOT)
				{
					become_follower(node, m->term, m->from);
					step_follower(node, m);
				}
				else
					step_candidate(node, m);
				break;
			case RAFT_FOLLOWER:
				step_follower(node, m);
				break;
		}
	}
	return node->broken ? RAFT_ERR_NOMEM : RAFT_OK;
}

static void
tick_leader(raft_node *node)
{
	size_t		i;

	node->heartbeat_elapsed++;
	node->election_elapsed++;
	if (node->transferee != RAFT_NO_NODE &&
		++node->transfer_elapsed >= node->cfg.election_ticks)
	{
		/* the transfer did not happen in time: take proposals again */
		node->transferee = RAFT_NO_NODE;
		node->transfer_elapsed = 0;
	}
	if (node->election_elapsed >= node->cfg.election_ticks)
	{
		uint32_t	active = 0;

		node->election_elapsed = 0;
		for (i = 0; i < node->num_progress; i++)
		{
			raft_progress *pr = &node->progress[i];

			if (pr->is_voter && pr->recent_active)
				active++;
			pr->recent_active = (pr->id == node->cfg.id);
		}
		if (node->cfg.check_quorum && active < raft_conf_quorum(&node->conf))
		{
			/* we cannot reach a majority: stop acting as leader */
			become_follower(node, node->term, RAFT_NO_NODE);
			return;
		}
	}
	for (i = 0; i < node->num_progress; i++)
	{
		raft_progress *pr = &node->progress[i];

		if (pr->state != RAFT_PR_SNAPSHOT)
			continue;
		/* one chunk in flight; resend it if its answer got lost */
		if (!pr->snap_chunk_inflight ||
			++pr->snap_wait_ticks >= node->cfg.election_ticks / 2)
			send_snapshot_chunk(node, pr);
	}
	if (node->heartbeat_elapsed >= node->cfg.heartbeat_ticks)
	{
		node->heartbeat_elapsed = 0;
		bcast_heartbeat(node);
	}
}

void
raft_tick(raft_node *node)
{
	if (api_entry_check(node) != RAFT_OK)
		return;
	if (node->role == RAFT_LEADER)
	{
		tick_leader(node);
		return;
	}
	node->election_elapsed++;
	if (node->election_elapsed >= node->randomized_timeout && is_voter_self(node))
	{
		node->election_elapsed = 0;
		campaign(node, node->cfg.pre_vote, false);
	}
}

/* raft_propose() and raft_propose_take(): with adopt, data is taken over */
static int
propose_normal(raft_node *node, const void *data, size_t len, bool adopt,
			   raft_term *term_out, raft_index *index_out)
{
	int			rc = api_entry_check(node);
	raft_index	index;
	raft_proposal *prop;

	if (rc != RAFT_OK)
		return rc;
	if (len > RAFT_MAX_PROPOSAL_BYTES || (len > 0 && data == NULL))
		return RAFT_ERR_INVALID;
	if (node->role != RAFT_LEADER)
		return RAFT_ERR_NOT_LEADER;
	if (node->transferee != RAFT_NO_NODE)
		return RAFT_ERR_BUSY;
	/* bound the leader's memory when followers cannot keep up; one always fits */
	if (node->cfg.max_uncommitted_bytes > 0 && node->uncommitted_bytes > 0 &&
		node->uncommitted_bytes + len > node->cfg.max_uncommitted_bytes)
		return RAFT_ERR_BUSY;
	index = leader_append(node, RAFT_ENTRY_NORMAL, data, len, adopt);
	if (index == 0)
		return RAFT_ERR_NOMEM;
	node->uncommitted_bytes += len;
	prop = raft_vec_push(node, &node->proposals);
	if (prop == NULL)
		return RAFT_ERR_NOMEM;
	prop->term = node->term;
	prop->index = index;
	if (term_out != NULL)
		*term_out = node->term;
	if (index_out != NULL)
		*index_out = index;
	return RAFT_OK;
}

int
raft_propose(raft_node *node, const void *data, size_t len,
			 raft_term *term_out, raft_index *index_out)
{
	return propose_normal(node, data, len, false, term_out, index_out);
}

int
raft_propose_take(raft_node *node, void *data, size_t len,
				  raft_term *term_out, raft_index *index_out)
{
	raft_index	before = last_index(node);
	int			rc = propose_normal(node, data, len, true, term_out, index_out);

	/* the engine owns data either way: free it unless the log holds it */
	if (last_index(node) == before && data != NULL)
		raft_mem_free(node, data);
	return rc;
}

int
raft_propose_conf_change(raft_node *node, raft_conf_change_type type,
						 raft_node_id node_id, raft_term *term_out,
						 raft_index *index_out)
{
	int			rc = api_entry_check(node);
	raft_conf_change cc;
	uint8_t		buf[1024];
	size_t		len;
	raft_index	index;
	raft_proposal *prop;

	if (rc != RAFT_OK)
		return rc;
	if (node->role != RAFT_LEADER)
		return RAFT_ERR_NOT_LEADER;
	if (node->transferee != RAFT_NO_NODE || node->pending_conf_index > node->applied)
		return RAFT_ERR_BUSY;
	/* the single-server change rule needs a commit in our own term first */
	if (term_at(node, node->commit) != node->term)
		return RAFT_ERR_NOT_READY;
	memset(&cc, 0, sizeof(cc));
	cc.type = type;
	cc.node_id = node_id;
	rc = raft_conf_apply_change(&node->conf, type, node_id, &cc.result);
	if (rc != RAFT_OK)
		return rc;
	len = raft_conf_change_encoded_size(&cc);
	RAFT_ASSERT(len <= sizeof(buf));
	raft_conf_change_encode(&cc, buf);
	index = leader_append(node, RAFT_ENTRY_CONF_CHANGE, buf, len, false);
	if (index == 0)
		return RAFT_ERR_NOMEM;
	node->pending_conf_index = index;
	prop = raft_vec_push(node, &node->proposals);
	if (prop == NULL)
		return RAFT_ERR_NOMEM;
	prop->term = node->term;
	prop->index = index;
	if (term_out != NULL)
		*term_out = node->term;
	if (index_out != NULL)
		*index_out = index;
	return RAFT_OK;
}

int
raft_read_index(raft_node *node, uint64_t context)
{
	int			rc = api_entry_check(node);
	raft_message *msg;

	if (rc != RAFT_OK)
		return rc;
	if (node->role == RAFT_LEADER)
		return leader_read(node, context, RAFT_NO_NODE);
	if (node->role != RAFT_FOLLOWER || node->leader == RAFT_NO_NODE)
		return RAFT_ERR_NOT_LEADER;
	msg = new_message(node, RAFT_MSG_READ_INDEX, node->leader);
	if (msg == NULL)
		return RAFT_ERR_NOMEM;
	msg->context = context;
	return RAFT_OK;
}

int
raft_transfer_leadership(raft_node *node, raft_node_id target)
{
	int			rc = api_entry_check(node);
	raft_progress *pr;

	if (rc != RAFT_OK)
		return rc;
	if (node->role != RAFT_LEADER)
		return RAFT_ERR_NOT_LEADER;
	if (target == node->cfg.id)
		return RAFT_OK;
	if (!raft_conf_is_voter(&node->conf, target))
		return RAFT_ERR_CONF;
	if (node->transferee != RAFT_NO_NODE)
		return RAFT_ERR_BUSY;
	pr = progress_find(node, target);
	RAFT_ASSERT(pr != NULL);
	node->transferee = target;
	node->transfer_elapsed = 0;
	/* proposals stop now, so the target can catch up with a fixed log */
	if (pr->match == last_index(node))
		(void) new_message(node, RAFT_MSG_TIMEOUT_NOW, target);
	else
		send_append(node, pr, true);
	return node->broken ? RAFT_ERR_NOMEM : RAFT_OK;
}

int
raft_campaign(raft_node *node)
{
	int			rc = api_entry_check(node);

	if (rc != RAFT_OK)
		return rc;
	if (node->role == RAFT_LEADER)
		return RAFT_OK;
	if (!is_voter_self(node))
		return RAFT_ERR_CONF;
	campaign(node, node->cfg.pre_vote, false);
	return node->broken ? RAFT_ERR_NOMEM : RAFT_OK;
}

/*
 * The log up to (term, index) is durable.  Confirmations arrive in ready
 * order; one that no longer matches our log (the suffix was replaced in the
 * meantime) proves nothing about the current entries and is ignored: a
 * later confirmation covers them.
 */
void
raft_persisted(raft_node *node, raft_term term, raft_index index)
{
	raft_term	actual;
	raft_progress *self;

	if (node->broken)
		return;
	RAFT_ASSERT(!node->in_ready);
	if (index <= node->stable || index >= node->persist_from)
		return;
	if (!raft_log_term_at(&node->log, index, &actual) || actual != term)
		return;
	node->stable = index;
	if (node->role != RAFT_LEADER)
		return;
	self = progress_find(node, node->cfg.id);
	if (self != NULL && index > self->match)
	{
		self->match = index;
		if (leader_maybe_commit(node))
			node->bcast_commit = true;
	}
}

int
raft_snapshot_taken(raft_node *node, raft_index index)
{
	int			rc = api_entry_check(node);
	raft_term	term;

	if (rc != RAFT_OK)
		return rc;
	/* the snapshot must describe applied state resting on a durable log */
	if (index > node->applied || index > node->stable)
		return RAFT_ERR_INVALID;
	if (index <= node->snapshot.index)
		return RAFT_OK;
	if (!raft_log_term_at(&node->log, index, &term))
		return RAFT_ERR_COMPACTED;
	node->snapshot.conf = *conf_at(node, index);
	node->snapshot.index = index;
	node->snapshot.term = term;
	conf_history_prune(node, index);
	return RAFT_OK;
}

int
raft_compact(raft_node *node, raft_index index)
{
	int			rc = api_entry_check(node);
	raft_index	i;

	if (rc != RAFT_OK)
		return rc;
	if (index > node->snapshot.index)
		return RAFT_ERR_INVALID;
	if (index <= node->log.snap_index)
		return RAFT_OK;
	/* only durable, applied entries may leave memory */
	RAFT_ASSERT(index <= node->applied && index <= node->stable);
	for (i = node->log.cache_from; i <= index; i++)
	{
		const raft_entry *e = raft_log_entry(&node->log, i);

		if (e->type == RAFT_ENTRY_NORMAL && e->data != NULL)
			node->applied_cached_bytes -= e->len;
	}
	raft_log_compact_to(node, &node->log, index);
	return RAFT_OK;
}

/*
 * With cfg.entry_read, keep at most cfg.max_cached_bytes of applied payload
 * in memory, the newest; older payloads are durable and send_append reads
 * them back when a follower still needs them.  They go through the
 * graveyard: a message of the current ready may point at them.
 */
static void
release_applied_payloads(raft_node *node)
{
	if (node->cfg.entry_read == NULL)
		return;
	while (node->applied_cached_bytes > node->cfg.max_cached_bytes &&
		   node->log.cache_from <= node->applied)
		node->applied_cached_bytes -= raft_log_drop_oldest_payload(node, &node->log);
}

static bool
hard_state_equal(const raft_hard_state *a, const raft_hard_state *b)
{
	return a->term == b->term && a->vote == b->vote && a->commit == b->commit;
}

bool
raft_has_ready(const raft_node *node)
{
	raft_hard_state hs;

	if (node->broken || node->in_ready)
		return false;
	hs.term = node->term;
	hs.vote = node->vote;
	hs.commit = node->commit;
	return node->bcast_pending || node->bcast_commit || node->heartbeat_pending ||
		node->install_pending ||
		node->persist_from <= last_index(node) ||
		!hard_state_equal(&hs, &node->last_hard_state) ||
		node->out_messages.count > 0 ||
		node->out_persist_messages.count > 0 ||
		node->out_chunks.count > 0 ||
		node->out_read_states.count > 0 ||
		node->out_outcomes.count > 0 ||
		min_index(node->commit, node->stable) > node->applied;
}

void
raft_ready_get(raft_node *node, raft_ready *rd)
{
	raft_index	last;
	raft_index	apply_to;

	memset(rd, 0, sizeof(*rd));
	if (node->broken || node->in_ready)
		return;
	flush_broadcasts(node);
	if (node->broken)
		return;
	node->in_ready = true;
	last = last_index(node);

	rd->role = node->role;
	rd->leader = node->leader;
	if (node->install_pending)
		rd->snapshot = &node->install_meta;
	if (node->persist_from <= last)
	{
		RAFT_ASSERT(node->persist_from > node->log.snap_index);
		rd->entries = raft_log_entry(&node->log, node->persist_from);
		rd->num_entries = (size_t) (last - node->persist_from + 1);
	}
	rd->hard_state.term = node->term;
	rd->hard_state.vote = node->vote;
	rd->hard_state.commit = node->commit;
	rd->hard_state_changed = !hard_state_equal(&rd->hard_state, &node->last_hard_state);
	rd->must_persist = rd->snapshot != NULL || rd->num_entries > 0 ||
		rd->hard_state_changed;
	rd->persist_term = raft_log_last_term(&node->log);
	rd->persist_index = last;

	/* entries are applied only once committed and durable here */
	apply_to = min_index(node->commit, node->stable);
	if (apply_to > node->applied)
	{
		RAFT_ASSERT(node->applied >= node->log.snap_index);
		rd->committed = raft_log_entry(&node->log, node->applied + 1);
		rd->num_committed = (size_t) (apply_to - node->applied);
		resolve_proposals(node, apply_to);
	}

	rd->snapshot_chunks = node->out_chunks.items;
	rd->num_snapshot_chunks = node->out_chunks.count;
	rd->messages = node->out_messages.items;
	rd->num_messages = node->out_messages.count;
	rd->persist_messages = node->out_persist_messages.items;
	rd->num_persist_messages = node->out_persist_messages.count;
	rd->read_states = node->out_read_states.items;
	rd->num_read_states = node->out_read_states.count;
	rd->outcomes = node->out_outcomes.items;
	rd->num_outcomes = node->out_outcomes.count;
}

void
raft_advance(raft_node *node, const raft_ready *rd)
{
	size_t		i;

	if (!node->in_ready)
		return;
	node->in_ready = false;
	if (rd->snapshot != NULL)
		node->install_pending = false;
	node->persist_from = last_index(node) + 1;
	if (rd->hard_state_changed)
		node->last_hard_state = rd->hard_state;
	node->out_messages.count = 0;
	node->out_persist_messages.count = 0;
	node->out_chunks.count = 0;
	node->out_read_states.count = 0;
	node->out_outcomes.count = 0;
	raft_arena_reset(node);
	raft_graveyard_flush(node);

	/* membership changes take effect when applied, in log order */
	for (i = 0; i < rd->num_committed; i++)
	{
		const raft_entry *entry = &rd->committed[i];

		RAFT_ASSERT(entry->index == node->applied + 1);
		node->applied = entry->index;
		if (entry->type == RAFT_ENTRY_CONF_CHANGE)
			apply_conf_change(node, entry);
		else
			node->applied_cached_bytes += entry->len;
	}
	release_applied_payloads(node);
}

void
raft_get_status(const raft_node *node, raft_status *status)
{
	memset(status, 0, sizeof(*status));
	status->id = node->cfg.id;
	status->role = node->role;
	status->term = node->term;
	status->vote = node->vote;
	status->leader = node->leader;
	status->commit = node->commit;
	status->applied = node->applied;
	status->stable = node->stable;
	status->first_index = raft_log_first_index(&node->log);
	status->last_index = last_index(node);
	status->last_term = raft_log_last_term(&node->log);
	status->snapshot_index = node->snapshot.index;
	status->snapshot_term = node->snapshot.term;
	status->conf = node->conf;
	status->is_voter = is_voter_self(node);
	status->transferring = node->transferee != RAFT_NO_NODE;
}

bool
raft_get_match(const raft_node *node, raft_node_id id, raft_index *match)
{
	size_t		i;

	if (node->role != RAFT_LEADER)
		return false;
	for (i = 0; i < node->num_progress; i++)
	{
		if (node->progress[i].id == id)
		{
			*match = node->progress[i].match;
			return true;
		}
	}
	return false;
}

const char *
raft_message_type_name(raft_message_type type)
{
	static const char *const names[RAFT_MSG_TYPE_COUNT] = {
		"None", "Vote", "VoteResp", "PreVote", "PreVoteResp", "App", "AppResp",
		"Heartbeat", "HeartbeatResp", "Snap", "SnapResp", "TimeoutNow",
		"ReadIndex", "ReadIndexResp"
	};

	if ((int) type < 0 || type >= RAFT_MSG_TYPE_COUNT)
		return "Invalid";
	return names[type];
}

const char *
raft_role_name(raft_role role)
{
	switch (role)
	{
		case RAFT_FOLLOWER:
			return "follower";
		case RAFT_PRE_CANDIDATE:
			return "pre-candidate";
		case RAFT_CANDIDATE:
			return "candidate";
		case RAFT_LEADER:
			return "leader";
	}
	return "invalid";
}
