/*-------------------------------------------------------------------------
 *
 * codec.c
 *	  Converts between the Raft core's structs (src/raft/raft.h) plus the
 *	  transport's frames (codec.h) and the protobuf schema in
 *	  proto/chronicle.proto.
 *
 * This file owns the wire contract of docs/protocol.md.  Its invariants:
 *
 *	- decoding never trusts the peer: every value the core relies on is
 *	  range-checked after protobuf-c has parsed the bytes, and anything out
 *	  of range is an error code, never an assertion or abort;
 *	- encode and decode apply the same checks (validate_*), so whatever
 *	  encode accepts, decode accepts and reproduces field for field;
 *	- on any error nothing stays allocated and the output struct is zeroed,
 *	  so the caller may always call the free function;
 *	- all memory of a decode, including protobuf-c's temporary tree, comes
 *	  from the caller's allocator, so a counting allocator sees everything.
 *
 * A decoded raft_message owns two allocations at most: one block holding
 * the entries array followed by all entry payloads (entries points to it),
 * and the snapshot chunk's data.
 *
 * src/net/codec.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chronicle.pb-c.h"
#include "net/codec.h"

/* protobuf-c's allocator interface routed to a raft_allocator. */
typedef struct pb_alloc_ctx
{
	raft_allocator alloc;
	bool		failed;			/* an allocation returned NULL */
} pb_alloc_ctx;

/*
 * Every protobuf-c struct an encode may need, so that building the tree
 * costs no allocation except the entries arrays.
 */
typedef struct pb_build
{
	Chronicle__Frame frame;
	Chronicle__RaftMessage raft;
	Chronicle__VoteRequest vote;
	Chronicle__VoteResponse vote_resp;
	Chronicle__AppendEntries append;
	Chronicle__AppendResponse append_resp;
	Chronicle__Heartbeat heartbeat;
	Chronicle__HeartbeatResponse heartbeat_resp;
	Chronicle__SnapshotChunk snapshot;
	Chronicle__SnapshotMeta snapshot_meta;
	Chronicle__ConfState conf;
	Chronicle__SnapshotResponse snapshot_resp;
	Chronicle__TimeoutNow timeout_now;
	Chronicle__ReadIndex read_index;
	Chronicle__ReadIndexResponse read_index_resp;
	Chronicle__HandshakeChallenge challenge;
	Chronicle__HandshakeResponse response;
	Chronicle__ForwardBatch forward_batch;
	Chronicle__ForwardBatchResult forward_result;
	Chronicle__Entry *entries;	/* malloc'd, num_entries of them */
	Chronicle__Entry **entry_ptrs;	/* malloc'd */
} pb_build;

static void *pb_alloc(void *ctx, size_t size);
static void pb_free(void *ctx, void *ptr);
static bool body_matches_type(raft_message_type type,
							  Chronicle__RaftMessage__BodyCase body);
static int	validate_conf(const raft_conf_state *conf);
static int	validate_frame(const codec_frame *f);
static int	build_pb(const codec_frame *f, pb_build *b);
static void release_pb(pb_build *b);
static int	build_raft(const raft_message *m, pb_build *b);
static int	convert_conf(const Chronicle__ConfState *pc, raft_conf_state *conf);
static int	convert_raft(const Chronicle__RaftMessage *pm, raft_message *m,
						 const raft_allocator *a);
static int	convert_frame(const Chronicle__Frame *pf, codec_frame *f,
						  const raft_allocator *a);

/* Unchecked-cast helper: protobuf-c's pack only reads these buffers. */
#define UNCONST(p)	((void *) (uintptr_t) (p))

static void *
pb_alloc(void *ctx, size_t size)
{
	pb_alloc_ctx *c = (pb_alloc_ctx *) ctx;
	void	   *p;

	/* malloc(0) may legally return NULL; protobuf-c would call that OOM */
	p = c->alloc.alloc(c->alloc.ctx, size > 0 ? size : 1);
	if (p == NULL)
		c->failed = true;
	return p;
}

static void
pb_free(void *ctx, void *ptr)
{
	pb_alloc_ctx *c = (pb_alloc_ctx *) ctx;

	if (ptr != NULL)
		c->alloc.free(c->alloc.ctx, ptr);
}

/*----------
 * Validation shared by encode and decode
 *----------
 */

/* Which RaftMessage body each raft_message_type travels in. */
static bool
body_matches_type(raft_message_type type, Chronicle__RaftMessage__BodyCase body)
{
	switch (type)
	{
		case RAFT_MSG_VOTE:
		case RAFT_MSG_PREVOTE:
			return body == CHRONICLE__RAFT_MESSAGE__BODY_VOTE;
		case RAFT_MSG_VOTE_RESP:
		case RAFT_MSG_PREVOTE_RESP:
			return body == CHRONICLE__RAFT_MESSAGE__BODY_VOTE_RESP;
		case RAFT_MSG_APPEND:
			return body == CHRONICLE__RAFT_MESSAGE__BODY_APPEND;
		case RAFT_MSG_APPEND_RESP:
			return body == CHRONICLE__RAFT_MESSAGE__BODY_APPEND_RESP;
		case RAFT_MSG_HEARTBEAT:
			return body == CHRONICLE__RAFT_MESSAGE__BODY_HEARTBEAT;
		case RAFT_MSG_HEARTBEAT_RESP:
			return body == CHRONICLE__RAFT_MESSAGE__BODY_HEARTBEAT_RESP;
		case RAFT_MSG_SNAPSHOT:
			return body == CHRONICLE__RAFT_MESSAGE__BODY_SNAPSHOT;
		case RAFT_MSG_SNAPSHOT_RESP:
			return body == CHRONICLE__RAFT_MESSAGE__BODY_SNAPSHOT_RESP;
		case RAFT_MSG_TIMEOUT_NOW:
			return body == CHRONICLE__RAFT_MESSAGE__BODY_TIMEOUT_NOW;
		case RAFT_MSG_READ_INDEX:
			return body == CHRONICLE__RAFT_MESSAGE__BODY_READ_INDEX;
		case RAFT_MSG_READ_INDEX_RESP:
			return body == CHRONICLE__RAFT_MESSAGE__BODY_READ_INDEX_RESP;
		case RAFT_MSG_NONE:
			break;
	}
	return false;
}

/*
 * A membership the core can hold: counts within its fixed arrays, no node
 * id 0, nobody both voter and learner, and no removed id still a member.
 * Quadratic, but bounded by RAFT_MAX_MEMBERS * RAFT_MAX_REMOVED.
 */
static int
validate_conf(const raft_conf_state *conf)
{
	uint32_t	i;
	uint32_t	j;
	uint32_t	nmembers;
	raft_node_id members[2 * RAFT_MAX_MEMBERS];

	if (conf->num_voters > RAFT_MAX_MEMBERS ||
		conf->num_learners > RAFT_MAX_MEMBERS ||
		conf->num_voters + conf->num_learners > RAFT_MAX_MEMBERS ||
		conf->num_removed > RAFT_MAX_REMOVED)
		return CODEC_ERR_RANGE;

	nmembers = 0;
	for (i = 0; i < conf->num_voters; i++)
		members[nmembers++] = conf->voters[i];
	for (i = 0; i < conf->num_learners; i++)
		members[nmembers++] = conf->learners[i];

	for (i = 0; i < nmembers; i++)
	{
		if (members[i] == RAFT_NO_NODE)
			return CODEC_ERR_RANGE;
		for (j = i + 1; j < nmembers; j++)
			if (members[i] == members[j])
				return CODEC_ERR_RANGE;
		for (j = 0; j < conf->num_removed; j++)
			if (members[i] == conf->removed[j])
				return CODEC_ERR_RANGE;
	}
	for (i = 0; i < conf->num_removed; i++)
	{
		if (conf->removed[i] == RAFT_NO_NODE)
			return CODEC_ERR_RANGE;
		for (j = i + 1; j < conf->num_removed; j++)
			if (conf->removed[i] == conf->removed[j])
				return CODEC_ERR_RANGE;
	}
	return CODEC_OK;
}

/*
 * Checks the fields the message's type carries on the wire (others are not
 * transmitted and so not looked at).  The entry checks restate the log
 * matching property: an APPEND carries the leader's consecutive entries
 * after (log_term, index), with terms that never decrease and never exceed
 * the leader's term.  A message failing them cannot come from a correct
 * leader, so the core never has to cope with it.
 */
int
codec_validate_raft_msg(const raft_message *m)
{
	size_t		i;
	int			rc;

	if (m == NULL)
		return CODEC_ERR_INVALID;
	if ((int) m->type <= (int) RAFT_MSG_NONE ||
		(int) m->type >= RAFT_MSG_TYPE_COUNT)
		return CODEC_ERR_UNKNOWN_TYPE;
	if (m->from == RAFT_NO_NODE || m->to == RAFT_NO_NODE)
		return CODEC_ERR_RANGE;

	switch (m->type)
	{
		case RAFT_MSG_APPEND:
			if (m->num_entries > CODEC_MAX_ENTRIES)
				return CODEC_ERR_RANGE;
			if (m->num_entries > 0 && m->entries == NULL)
				return CODEC_ERR_INVALID;
			if (m->log_term > m->term)
				return CODEC_ERR_RANGE;
			if (m->num_entries > 0 && m->index > UINT64_MAX - m->num_entries)
				return CODEC_ERR_RANGE;
			for (i = 0; i < m->num_entries; i++)
			{
				const raft_entry *e = &m->entries[i];
				raft_term	prev_term = (i == 0) ? m->log_term : m->entries[i - 1].term;

				if ((int) e->type < (int) RAFT_ENTRY_NORMAL ||
					(int) e->type > (int) RAFT_ENTRY_CONF_CHANGE)
					return CODEC_ERR_UNKNOWN_TYPE;
				if (e->index != m->index + 1 + i)
					return CODEC_ERR_RANGE;
				if (e->term < prev_term || e->term > m->term)
					return CODEC_ERR_RANGE;
				if (e->len > 0 && e->data == NULL)
					return CODEC_ERR_INVALID;
				if (e->len > CODEC_MAX_FRAME_SIZE)
					return CODEC_ERR_TOO_LARGE;
			}
			break;

		case RAFT_MSG_SNAPSHOT:
			rc = validate_conf(&m->snapshot.meta.conf);
			if (rc != CODEC_OK)
				return rc;
			/* index 0 is the empty log: nothing a snapshot could cover */
			if (m->snapshot.meta.index == 0 || m->snapshot.meta.term > m->term)
				return CODEC_ERR_RANGE;
			if (m->snapshot.len > 0 && m->snapshot.data == NULL)
				return CODEC_ERR_INVALID;
			if (m->snapshot.len > CODEC_MAX_FRAME_SIZE)
				return CODEC_ERR_TOO_LARGE;
			if (m->snapshot.offset > UINT64_MAX - m->snapshot.len)
				return CODEC_ERR_RANGE;
			break;

		default:
			break;
	}
	return CODEC_OK;
}

static int
validate_frame(const codec_frame *f)
{
	const codec_handshake_challenge *c;

	if (f->version < CODEC_MIN_PROTOCOL_VERSION ||
		f->version > CODEC_PROTOCOL_VERSION)
		return CODEC_ERR_VERSION;

	switch (f->kind)
	{
		case CODEC_FRAME_RAFT:
			return codec_validate_raft_msg(&f->u.raft);
		case CODEC_FRAME_CHALLENGE:
			c = &f->u.challenge;
			if (c->node_id == RAFT_NO_NODE)
				return CODEC_ERR_RANGE;
			if (c->min_version < 1 || c->min_version > c->max_version)
				return CODEC_ERR_RANGE;
			return CODEC_OK;
		case CODEC_FRAME_RESPONSE:
			if (f->u.response.node_id == RAFT_NO_NODE ||
				f->u.response.peer_id == RAFT_NO_NODE ||
				f->u.response.version < 1)
				return CODEC_ERR_RANGE;
			return CODEC_OK;
		case CODEC_FRAME_FORWARD_BATCH:
			if (f->u.forward_batch.origin == RAFT_NO_NODE)
				return CODEC_ERR_RANGE;
			if (f->u.forward_batch.len > 0 && f->u.forward_batch.payload == NULL)
				return CODEC_ERR_INVALID;
			if (f->u.forward_batch.len > CODEC_MAX_FRAME_SIZE)
				return CODEC_ERR_TOO_LARGE;
			return CODEC_OK;
		case CODEC_FRAME_FORWARD_RESULT:
			if (f->u.forward_result.origin == RAFT_NO_NODE)
				return CODEC_ERR_RANGE;
			if ((int) f->u.forward_result.outcome < (int) CODEC_FORWARD_COMMITTED ||
				(int) f->u.forward_result.outcome > (int) CODEC_FORWARD_NOT_LEADER)
				return CODEC_ERR_UNKNOWN_TYPE;
			return CODEC_OK;
		case CODEC_FRAME_NONE:
			break;
	}
	return CODEC_ERR_UNKNOWN_TYPE;
}

/*----------
 * Encoding
 *----------
 */
static int
build_raft(const raft_message *m, pb_build *b)
{
	Chronicle__RaftMessage *r = &b->raft;
	size_t		i;

	chronicle__raft_message__init(r);
	r->type = (Chronicle__MessageType) m->type;
	r->from = m->from;
	r->to = m->to;
	r->cluster_id = m->cluster_id;
	r->term = m->term;

	switch (m->type)
	{
		case RAFT_MSG_VOTE:
		case RAFT_MSG_PREVOTE:
			chronicle__vote_request__init(&b->vote);
			b->vote.last_log_term = m->log_term;
			b->vote.last_log_index = m->index;
			b->vote.leader_transfer = m->leader_transfer;
			r->body_case = CHRONICLE__RAFT_MESSAGE__BODY_VOTE;
			r->vote = &b->vote;
			break;
		case RAFT_MSG_VOTE_RESP:
		case RAFT_MSG_PREVOTE_RESP:
			chronicle__vote_response__init(&b->vote_resp);
			b->vote_resp.reject = m->reject;
			r->body_case = CHRONICLE__RAFT_MESSAGE__BODY_VOTE_RESP;
			r->vote_resp = &b->vote_resp;
			break;
		case RAFT_MSG_APPEND:
			chronicle__append_entries__init(&b->append);
			b->append.prev_log_term = m->log_term;
			b->append.prev_log_index = m->index;
			b->append.commit = m->commit;
			if (m->num_entries > 0)
			{
				b->entries = malloc(m->num_entries * sizeof(Chronicle__Entry));
				b->entry_ptrs = malloc(m->num_entries * sizeof(Chronicle__Entry *));
				if (b->entries == NULL || b->entry_ptrs == NULL)
					return CODEC_ERR_NOMEM;
				for (i = 0; i < m->num_entries; i++)
				{
					Chronicle__Entry *e = &b->entries[i];

					chronicle__entry__init(e);
					e->term = m->entries[i].term;
					e->index = m->entries[i].index;
					e->type = (Chronicle__EntryType) m->entries[i].type;
					e->data.len = m->entries[i].len;
					e->data.data = UNCONST(m->entries[i].data);
					b->entry_ptrs[i] = e;
				}
				b->append.n_entries = m->num_entries;
				b->append.entries = b->entry_ptrs;
			}
			r->body_case = CHRONICLE__RAFT_MESSAGE__BODY_APPEND;
			r->append = &b->append;
			break;
		case RAFT_MSG_APPEND_RESP:
			chronicle__append_response__init(&b->append_resp);
			b->append_resp.index = m->index;
			b->append_resp.reject = m->reject;
			b->append_resp.reject_hint = m->reject_hint;
			b->append_resp.reject_hint_term = m->reject_hint_term;
			r->body_case = CHRONICLE__RAFT_MESSAGE__BODY_APPEND_RESP;
			r->append_resp = &b->append_resp;
			break;
		case RAFT_MSG_HEARTBEAT:
			chronicle__heartbeat__init(&b->heartbeat);
			b->heartbeat.commit = m->commit;
			b->heartbeat.context = m->context;
			r->body_case = CHRONICLE__RAFT_MESSAGE__BODY_HEARTBEAT;
			r->heartbeat = &b->heartbeat;
			break;
		case RAFT_MSG_HEARTBEAT_RESP:
			chronicle__heartbeat_response__init(&b->heartbeat_resp);
			b->heartbeat_resp.context = m->context;
			r->body_case = CHRONICLE__RAFT_MESSAGE__BODY_HEARTBEAT_RESP;
			r->heartbeat_resp = &b->heartbeat_resp;
			break;
		case RAFT_MSG_SNAPSHOT:
			chronicle__conf_state__init(&b->conf);
			b->conf.n_voters = m->snapshot.meta.conf.num_voters;
			b->conf.voters = UNCONST(m->snapshot.meta.conf.voters);
			b->conf.n_learners = m->snapshot.meta.conf.num_learners;
			b->conf.learners = UNCONST(m->snapshot.meta.conf.learners);
			b->conf.n_removed = m->snapshot.meta.conf.num_removed;
			b->conf.removed = UNCONST(m->snapshot.meta.conf.removed);
			chronicle__snapshot_meta__init(&b->snapshot_meta);
			b->snapshot_meta.index = m->snapshot.meta.index;
			b->snapshot_meta.term = m->snapshot.meta.term;
			b->snapshot_meta.conf = &b->conf;
			chronicle__snapshot_chunk__init(&b->snapshot);
			b->snapshot.meta = &b->snapshot_meta;
			b->snapshot.offset = m->snapshot.offset;
			b->snapshot.data.len = m->snapshot.len;
			b->snapshot.data.data = UNCONST(m->snapshot.data);
			b->snapshot.done = m->snapshot.done;
			r->body_case = CHRONICLE__RAFT_MESSAGE__BODY_SNAPSHOT;
			r->snapshot = &b->snapshot;
			break;
		case RAFT_MSG_SNAPSHOT_RESP:
			chronicle__snapshot_response__init(&b->snapshot_resp);
			b->snapshot_resp.index = m->index;
			b->snapshot_resp.reject = m->reject;
			b->snapshot_resp.offset = m->reject_hint;
			b->snapshot_resp.done = m->snapshot.done;
			r->body_case = CHRONICLE__RAFT_MESSAGE__BODY_SNAPSHOT_RESP;
			r->snapshot_resp = &b->snapshot_resp;
			break;
		case RAFT_MSG_TIMEOUT_NOW:
			chronicle__timeout_now__init(&b->timeout_now);
			r->body_case = CHRONICLE__RAFT_MESSAGE__BODY_TIMEOUT_NOW;
			r->timeout_now = &b->timeout_now;
			break;
		case RAFT_MSG_READ_INDEX:
			chronicle__read_index__init(&b->read_index);
			b->read_index.context = m->context;
			r->body_case = CHRONICLE__RAFT_MESSAGE__BODY_READ_INDEX;
			r->read_index = &b->read_index;
			break;
		case RAFT_MSG_READ_INDEX_RESP:
			chronicle__read_index_response__init(&b->read_index_resp);
			b->read_index_resp.context = m->context;
			b->read_index_resp.index = m->index;
			b->read_index_resp.reject = m->reject;
			r->body_case = CHRONICLE__RAFT_MESSAGE__BODY_READ_INDEX_RESP;
			r->read_index_resp = &b->read_index_resp;
			break;
		case RAFT_MSG_NONE:
			return CODEC_ERR_UNKNOWN_TYPE;
	}
	return CODEC_OK;
}

/* Validate f and build the protobuf-c tree for it in b; see release_pb(). */
static int
build_pb(const codec_frame *f, pb_build *b)
{
	codec_frame checked;
	int			rc;

	memset(b, 0, sizeof(*b));
	if (f == NULL)
		return CODEC_ERR_INVALID;

	/* version 0 asks for the current one; validate with that filled in */
	checked = *f;
	if (checked.version == 0)
		checked.version = CODEC_PROTOCOL_VERSION;
	rc = validate_frame(&checked);
	if (rc != CODEC_OK)
		return rc == CODEC_ERR_MALFORMED ? CODEC_ERR_INVALID : rc;

	chronicle__frame__init(&b->frame);
	b->frame.version = checked.version;

	switch (f->kind)
	{
		case CODEC_FRAME_RAFT:
			rc = build_raft(&f->u.raft, b);
			if (rc != CODEC_OK)
				return rc;
			b->frame.body_case = CHRONICLE__FRAME__BODY_RAFT;
			b->frame.raft = &b->raft;
			break;
		case CODEC_FRAME_CHALLENGE:
			chronicle__handshake_challenge__init(&b->challenge);
			b->challenge.cluster_id = f->u.challenge.cluster_id;
			b->challenge.node_id = f->u.challenge.node_id;
			b->challenge.min_version = f->u.challenge.min_version;
			b->challenge.max_version = f->u.challenge.max_version;
			b->challenge.nonce.len = CODEC_NONCE_LEN;
			b->challenge.nonce.data = UNCONST(f->u.challenge.nonce);
			b->frame.body_case = CHRONICLE__FRAME__BODY_CHALLENGE;
			b->frame.challenge = &b->challenge;
			break;
		case CODEC_FRAME_RESPONSE:
			chronicle__handshake_response__init(&b->response);
			b->response.cluster_id = f->u.response.cluster_id;
			b->response.node_id = f->u.response.node_id;
			b->response.peer_id = f->u.response.peer_id;
			b->response.version = f->u.response.version;
			b->response.hmac.len = CODEC_HMAC_LEN;
			b->response.hmac.data = UNCONST(f->u.response.hmac);
			b->frame.body_case = CHRONICLE__FRAME__BODY_RESPONSE;
			b->frame.response = &b->response;
			break;
		case CODEC_FRAME_FORWARD_BATCH:
			chronicle__forward_batch__init(&b->forward_batch);
			b->forward_batch.batch_id = f->u.forward_batch.batch_id;
			b->forward_batch.origin = f->u.forward_batch.origin;
			b->forward_batch.term = f->u.forward_batch.term;
			b->forward_batch.payload.len = f->u.forward_batch.len;
			b->forward_batch.payload.data = UNCONST(f->u.forward_batch.payload);
			b->frame.body_case = CHRONICLE__FRAME__BODY_FORWARD_BATCH;
			b->frame.forward_batch = &b->forward_batch;
			break;
		case CODEC_FRAME_FORWARD_RESULT:
			chronicle__forward_batch_result__init(&b->forward_result);
			b->forward_result.batch_id = f->u.forward_result.batch_id;
			b->forward_result.origin = f->u.forward_result.origin;
			b->forward_result.outcome =
				(Chronicle__ForwardOutcome) f->u.forward_result.outcome;
			b->forward_result.term = f->u.forward_result.term;
			b->forward_result.index = f->u.forward_result.index;
			b->forward_result.leader_hint = f->u.forward_result.leader_hint;
			b->frame.body_case = CHRONICLE__FRAME__BODY_FORWARD_RESULT;
			b->frame.forward_result = &b->forward_result;
			break;
		case CODEC_FRAME_NONE:
			return CODEC_ERR_UNKNOWN_TYPE;
	}
	return CODEC_OK;
}

static void
release_pb(pb_build *b)
{
	free(b->entries);
	free(b->entry_ptrs);
	b->entries = NULL;
	b->entry_ptrs = NULL;
}

int
codec_frame_encoded_size(const codec_frame *f, size_t *len)
{
	pb_build	b;
	size_t		size;
	int			rc;

	if (len == NULL)
		return CODEC_ERR_INVALID;
	*len = 0;
	rc = build_pb(f, &b);
	if (rc == CODEC_OK)
	{
		size = chronicle__frame__get_packed_size(&b.frame);
		if (size > CODEC_MAX_FRAME_SIZE)
			rc = CODEC_ERR_TOO_LARGE;
		else
			*len = size;
	}
	release_pb(&b);
	return rc;
}

/*
 * Serialize f into buf.  If cap is too small, returns CODEC_ERR_INVALID
 * with *len set to the size needed.
 */
int
codec_frame_encode_into(const codec_frame *f, uint8_t *buf, size_t cap,
						size_t *len)
{
	pb_build	b;
	size_t		size;
	int			rc;

	if (len == NULL)
		return CODEC_ERR_INVALID;
	*len = 0;
	rc = build_pb(f, &b);
	if (rc == CODEC_OK)
	{
		size = chronicle__frame__get_packed_size(&b.frame);
		if (size > CODEC_MAX_FRAME_SIZE)
			rc = CODEC_ERR_TOO_LARGE;
		else if (buf == NULL || size > cap)
		{
			*len = size;
			rc = CODEC_ERR_INVALID;
		}
		else
			*len = chronicle__frame__pack(&b.frame, buf);
	}
	release_pb(&b);
	return rc;
}

int
codec_frame_encode(const codec_frame *f, uint8_t **out, size_t *len)
{
	pb_build	b;
	size_t		size;
	uint8_t    *buf;
	int			rc;

	if (out == NULL || len == NULL)
		return CODEC_ERR_INVALID;
	*out = NULL;
	*len = 0;
	rc = build_pb(f, &b);
	if (rc == CODEC_OK)
	{
		size = chronicle__frame__get_packed_size(&b.frame);
		if (size > CODEC_MAX_FRAME_SIZE)
			rc = CODEC_ERR_TOO_LARGE;
		else if ((buf = malloc(size > 0 ? size : 1)) == NULL)
			rc = CODEC_ERR_NOMEM;
		else
		{
			*len = chronicle__frame__pack(&b.frame, buf);
			*out = buf;
		}
	}
	release_pb(&b);
	return rc;
}

int
raft_msg_encode(const raft_message *m, uint8_t **out, size_t *len)
{
	codec_frame f;

	if (out != NULL)
		*out = NULL;
	if (len != NULL)
		*len = 0;
	if (m == NULL)
		return CODEC_ERR_INVALID;
	memset(&f, 0, sizeof(f));
	f.kind = CODEC_FRAME_RAFT;
	f.version = CODEC_PROTOCOL_VERSION;
	f.u.raft = *m;
	return codec_frame_encode(&f, out, len);
}

void
codec_buf_free(uint8_t *buf)
{
	free(buf);
}

/*----------
 * Decoding
 *----------
 */
static int
convert_conf(const Chronicle__ConfState *pc, raft_conf_state *conf)
{
	memset(conf, 0, sizeof(*conf));
	if (pc == NULL)
		return CODEC_OK;		/* absent: empty membership */
	if (pc->n_voters > RAFT_MAX_MEMBERS || pc->n_learners > RAFT_MAX_MEMBERS ||
		pc->n_removed > RAFT_MAX_REMOVED)
		return CODEC_ERR_RANGE;
	conf->num_voters = (uint32_t) pc->n_voters;
	conf->num_learners = (uint32_t) pc->n_learners;
	conf->num_removed = (uint32_t) pc->n_removed;
	if (pc->n_voters > 0)
		memcpy(conf->voters, pc->voters, pc->n_voters * sizeof(uint64_t));
	if (pc->n_learners > 0)
		memcpy(conf->learners, pc->learners, pc->n_learners * sizeof(uint64_t));
	if (pc->n_removed > 0)
		memcpy(conf->removed, pc->removed, pc->n_removed * sizeof(uint64_t));
	return CODEC_OK;
}

/*
 * Copy a parsed RaftMessage into m, allocating its arrays with a.  Only
 * structural checks happen here; value checks are codec_validate_raft_msg's.
 * On error, whatever was allocated is left in m for the caller to free.
 */
static int
convert_raft(const Chronicle__RaftMessage *pm, raft_message *m,
			 const raft_allocator *a)
{
	const Chronicle__AppendEntries *ap;
	const Chronicle__SnapshotChunk *sc;
	size_t		i;
	size_t		total;
	uint8_t    *block;
	uint8_t    *p;

	/* protobuf-c leaves unknown enum numbers in place: check first */
	if ((int) pm->type <= (int) RAFT_MSG_NONE ||
		(int) pm->type >= RAFT_MSG_TYPE_COUNT)
		return CODEC_ERR_UNKNOWN_TYPE;
	m->type = (raft_message_type) pm->type;
	if (!body_matches_type(m->type, pm->body_case))
		return CODEC_ERR_MALFORMED;

	m->from = pm->from;
	m->to = pm->to;
	m->cluster_id = pm->cluster_id;
	m->term = pm->term;

	switch (pm->body_case)
	{
		case CHRONICLE__RAFT_MESSAGE__BODY_VOTE:
			if (pm->vote == NULL)
				return CODEC_ERR_MALFORMED;
			m->log_term = pm->vote->last_log_term;
			m->index = pm->vote->last_log_index;
			m->leader_transfer = pm->vote->leader_transfer != 0;
			break;
		case CHRONICLE__RAFT_MESSAGE__BODY_VOTE_RESP:
			if (pm->vote_resp == NULL)
				return CODEC_ERR_MALFORMED;
			m->reject = pm->vote_resp->reject != 0;
			break;
		case CHRONICLE__RAFT_MESSAGE__BODY_APPEND:
			ap = pm->append;
			if (ap == NULL)
				return CODEC_ERR_MALFORMED;
			m->log_term = ap->prev_log_term;
			m->index = ap->prev_log_index;
			m->commit = ap->commit;
			if (ap->n_entries > CODEC_MAX_ENTRIES)
				return CODEC_ERR_RANGE;
			if (ap->n_entries == 0)
				break;

			/*
			 * One block: the array, then every payload.  The sum is bounded
			 * by the frame size because each payload was in the frame.
			 */
			total = ap->n_entries * sizeof(raft_entry);
			for (i = 0; i < ap->n_entries; i++)
			{
				if (ap->entries[i] == NULL)
					return CODEC_ERR_MALFORMED;
				if (ap->entries[i]->data.len > CODEC_MAX_FRAME_SIZE)
					return CODEC_ERR_TOO_LARGE;
				total += ap->entries[i]->data.len;
			}
			block = a->alloc(a->ctx, total);
			if (block == NULL)
				return CODEC_ERR_NOMEM;
			m->entries = (raft_entry *) block;
			m->num_entries = ap->n_entries;
			p = block + ap->n_entries * sizeof(raft_entry);
			for (i = 0; i < ap->n_entries; i++)
			{
				const Chronicle__Entry *pe = ap->entries[i];
				raft_entry *e = &m->entries[i];

				e->term = pe->term;
				e->index = pe->index;
				e->type = (raft_entry_type) pe->type;
				e->len = pe->data.len;
				e->data = NULL;
				if (pe->data.len > 0)
				{
					memcpy(p, pe->data.data, pe->data.len);
					e->data = p;
					p += pe->data.len;
				}
			}
			break;
		case CHRONICLE__RAFT_MESSAGE__BODY_APPEND_RESP:
			if (pm->append_resp == NULL)
				return CODEC_ERR_MALFORMED;
			m->index = pm->append_resp->index;
			m->reject = pm->append_resp->reject != 0;
			m->reject_hint = pm->append_resp->reject_hint;
			m->reject_hint_term = pm->append_resp->reject_hint_term;
			break;
		case CHRONICLE__RAFT_MESSAGE__BODY_HEARTBEAT:
			if (pm->heartbeat == NULL)
				return CODEC_ERR_MALFORMED;
			m->commit = pm->heartbeat->commit;
			m->context = pm->heartbeat->context;
			break;
		case CHRONICLE__RAFT_MESSAGE__BODY_HEARTBEAT_RESP:
			if (pm->heartbeat_resp == NULL)
				return CODEC_ERR_MALFORMED;
			m->context = pm->heartbeat_resp->context;
			break;
		case CHRONICLE__RAFT_MESSAGE__BODY_SNAPSHOT:
			sc = pm->snapshot;
			if (sc == NULL || sc->meta == NULL)
				return CODEC_ERR_MALFORMED;
			m->snapshot.meta.index = sc->meta->index;
			m->snapshot.meta.term = sc->meta->term;
			if (convert_conf(sc->meta->conf, &m->snapshot.meta.conf) != CODEC_OK)
				return CODEC_ERR_RANGE;
			m->snapshot.offset = sc->offset;
			m->snapshot.done = sc->done != 0;
			if (sc->data.len > CODEC_MAX_FRAME_SIZE)
				return CODEC_ERR_TOO_LARGE;
			if (sc->data.len > 0)
			{
				block = a->alloc(a->ctx, sc->data.len);
				if (block == NULL)
					return CODEC_ERR_NOMEM;
				memcpy(block, sc->data.data, sc->data.len);
				m->snapshot.data = block;
				m->snapshot.len = sc->data.len;
			}
			break;
		case CHRONICLE__RAFT_MESSAGE__BODY_SNAPSHOT_RESP:
			if (pm->snapshot_resp == NULL)
				return CODEC_ERR_MALFORMED;
			m->index = pm->snapshot_resp->index;
			m->reject = pm->snapshot_resp->reject != 0;
			m->reject_hint = pm->snapshot_resp->offset;
			m->snapshot.done = pm->snapshot_resp->done != 0;
			break;
		case CHRONICLE__RAFT_MESSAGE__BODY_TIMEOUT_NOW:
			if (pm->timeout_now == NULL)
				return CODEC_ERR_MALFORMED;
			break;
		case CHRONICLE__RAFT_MESSAGE__BODY_READ_INDEX:
			if (pm->read_index == NULL)
				return CODEC_ERR_MALFORMED;
			m->context = pm->read_index->context;
			break;
		case CHRONICLE__RAFT_MESSAGE__BODY_READ_INDEX_RESP:
			if (pm->read_index_resp == NULL)
				return CODEC_ERR_MALFORMED;
			m->context = pm->read_index_resp->context;
			m->index = pm->read_index_resp->index;
			m->reject = pm->read_index_resp->reject != 0;
			break;
		default:
			return CODEC_ERR_MALFORMED;
	}
	return CODEC_OK;
}

/* Copy a parsed Frame into f; on error f may hold allocations to free. */
static int
convert_frame(const Chronicle__Frame *pf, codec_frame *f,
			  const raft_allocator *a)
{
	uint8_t    *payload;

	f->version = pf->version;
	switch (pf->body_case)
	{
		case CHRONICLE__FRAME__BODY_RAFT:
			if (pf->raft == NULL)
				return CODEC_ERR_MALFORMED;
			f->kind = CODEC_FRAME_RAFT;
			return convert_raft(pf->raft, &f->u.raft, a);
		case CHRONICLE__FRAME__BODY_CHALLENGE:
			if (pf->challenge == NULL)
				return CODEC_ERR_MALFORMED;
			f->kind = CODEC_FRAME_CHALLENGE;
			if (pf->challenge->nonce.len != CODEC_NONCE_LEN)
				return CODEC_ERR_RANGE;
			f->u.challenge.cluster_id = pf->challenge->cluster_id;
			f->u.challenge.node_id = pf->challenge->node_id;
			f->u.challenge.min_version = pf->challenge->min_version;
			f->u.challenge.max_version = pf->challenge->max_version;
			memcpy(f->u.challenge.nonce, pf->challenge->nonce.data, CODEC_NONCE_LEN);
			return CODEC_OK;
		case CHRONICLE__FRAME__BODY_RESPONSE:
			if (pf->response == NULL)
				return CODEC_ERR_MALFORMED;
			f->kind = CODEC_FRAME_RESPONSE;
			if (pf->response->hmac.len != CODEC_HMAC_LEN)
				return CODEC_ERR_RANGE;
			f->u.response.cluster_id = pf->response->cluster_id;
			f->u.response.node_id = pf->response->node_id;
			f->u.response.peer_id = pf->response->peer_id;
			f->u.response.version = pf->response->version;
			memcpy(f->u.response.hmac, pf->response->hmac.data, CODEC_HMAC_LEN);
			return CODEC_OK;
		case CHRONICLE__FRAME__BODY_FORWARD_BATCH:
			if (pf->forward_batch == NULL)
				return CODEC_ERR_MALFORMED;
			f->kind = CODEC_FRAME_FORWARD_BATCH;
			f->u.forward_batch.batch_id = pf->forward_batch->batch_id;
			f->u.forward_batch.origin = pf->forward_batch->origin;
			f->u.forward_batch.term = pf->forward_batch->term;
			if (pf->forward_batch->payload.len > 0)
			{
				payload = a->alloc(a->ctx, pf->forward_batch->payload.len);
				if (payload == NULL)
					return CODEC_ERR_NOMEM;
				memcpy(payload, pf->forward_batch->payload.data,
					   pf->forward_batch->payload.len);
				f->u.forward_batch.payload = payload;
				f->u.forward_batch.len = pf->forward_batch->payload.len;
			}
			return CODEC_OK;
		case CHRONICLE__FRAME__BODY_FORWARD_RESULT:
			if (pf->forward_result == NULL)
				return CODEC_ERR_MALFORMED;
			f->kind = CODEC_FRAME_FORWARD_RESULT;
			f->u.forward_result.batch_id = pf->forward_result->batch_id;
			f->u.forward_result.origin = pf->forward_result->origin;
			f->u.forward_result.outcome =
				(codec_forward_outcome) pf->forward_result->outcome;
			f->u.forward_result.term = pf->forward_result->term;
			f->u.forward_result.index = pf->forward_result->index;
			f->u.forward_result.leader_hint = pf->forward_result->leader_hint;
			return CODEC_OK;
		default:
			/* unset, or a body added by a newer version we do not know */
			return CODEC_ERR_UNKNOWN_TYPE;
	}
}

int
codec_frame_decode(const uint8_t *buf, size_t len, codec_frame *out,
				   const raft_allocator *allocator)
{
	static const uint8_t empty[1] = {0};
	pb_alloc_ctx actx;
	ProtobufCAllocator pba;
	Chronicle__Frame *pf;
	int			rc;

	if (out == NULL)
		return CODEC_ERR_INVALID;
	memset(out, 0, sizeof(*out));
	if (buf == NULL && len > 0)
		return CODEC_ERR_INVALID;
	if (len > CODEC_MAX_FRAME_SIZE)
		return CODEC_ERR_TOO_LARGE;

	raft_allocator_resolve(allocator, &actx.alloc);
	actx.failed = false;
	pba.alloc = pb_alloc;
	pba.free = pb_free;
	pba.allocator_data = &actx;

	pf = chronicle__frame__unpack(&pba, len, buf != NULL ? buf : empty);
	if (pf == NULL)
		return actx.failed ? CODEC_ERR_NOMEM : CODEC_ERR_MALFORMED;

	/* the version decides how to read the rest, so check it first */
	if (pf->version < CODEC_MIN_PROTOCOL_VERSION ||
		pf->version > CODEC_PROTOCOL_VERSION)
		rc = CODEC_ERR_VERSION;
	else
		rc = convert_frame(pf, out, &actx.alloc);
	chronicle__frame__free_unpacked(pf, &pba);

	if (rc == CODEC_OK)
		rc = validate_frame(out);
	if (rc != CODEC_OK)
		codec_frame_free(out, &actx.alloc);
	return rc;
}

int
raft_msg_decode(const uint8_t *buf, size_t len, raft_message *out,
				const raft_allocator *allocator)
{
	codec_frame f;
	int			rc;

	if (out == NULL)
		return CODEC_ERR_INVALID;
	memset(out, 0, sizeof(*out));
	rc = codec_frame_decode(buf, len, &f, allocator);
	if (rc != CODEC_OK)
		return rc;
	if (f.kind != CODEC_FRAME_RAFT)
	{
		codec_frame_free(&f, allocator);
		return CODEC_ERR_WRONG_KIND;
	}
	*out = f.u.raft;
	return CODEC_OK;
}

void
raft_msg_free(raft_message *m, const raft_allocator *allocator)
{
	raft_allocator a;

	if (m == NULL)
		return;
	raft_allocator_resolve(allocator, &a);
	if (m->entries != NULL)
		a.free(a.ctx, m->entries);
	if (m->snapshot.data != NULL)
		a.free(a.ctx, UNCONST(m->snapshot.data));
	memset(m, 0, sizeof(*m));
}

void
codec_frame_free(codec_frame *f, const raft_allocator *allocator)
{
	raft_allocator a;

	if (f == NULL)
		return;
	raft_allocator_resolve(allocator, &a);
	switch (f->kind)
	{
		case CODEC_FRAME_RAFT:
			raft_msg_free(&f->u.raft, &a);
			break;
		case CODEC_FRAME_FORWARD_BATCH:
			if (f->u.forward_batch.payload != NULL)
				a.free(a.ctx, UNCONST(f->u.forward_batch.payload));
			break;
		default:
			break;
	}
	memset(f, 0, sizeof(*f));
}

/*----------
 * Length prefix
 *----------
 */
void
codec_put_frame_len(uint8_t *hdr, size_t len)
{
	hdr[0] = (uint8_t) (len >> 24);
	hdr[1] = (uint8_t) (len >> 16);
	hdr[2] = (uint8_t) (len >> 8);
	hdr[3] = (uint8_t) len;
}

/* A length the reader must refuse before allocating or reading the body. */
int
codec_get_frame_len(const uint8_t *hdr, size_t *len)
{
	uint32_t	v;

	v = ((uint32_t) hdr[0] << 24) | ((uint32_t) hdr[1] << 16) |
		((uint32_t) hdr[2] << 8) | (uint32_t) hdr[3];
	*len = v;
	if (v == 0)
		return CODEC_ERR_MALFORMED;	/* a Frame has at least its version */
	if (v > CODEC_MAX_FRAME_SIZE)
		return CODEC_ERR_TOO_LARGE;
	return CODEC_OK;
}

const char *
codec_status_name(int status)
{
	switch (status)
	{
		case CODEC_OK:
			return "ok";
		case CODEC_ERR_NOMEM:
			return "out of memory";
		case CODEC_ERR_INVALID:
			return "invalid argument";
		case CODEC_ERR_MALFORMED:
			return "malformed frame";
		case CODEC_ERR_TOO_LARGE:
			return "frame too large";
		case CODEC_ERR_VERSION:
			return "unsupported protocol version";
		case CODEC_ERR_UNKNOWN_TYPE:
			return "unknown frame or message type";
		case CODEC_ERR_RANGE:
			return "value out of range";
		case CODEC_ERR_WRONG_KIND:
			return "not a raft message frame";
	}
	return "unknown status";
}
