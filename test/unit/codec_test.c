/*-------------------------------------------------------------------------
 *
 * codec_test.c
 *	  Unit tests of src/net/codec.c: round trips of every message and frame
 *	  kind, and hostile input (truncation at every length, seeded random
 *	  mutations, random garbage, oversize frames, hand-built frames that
 *	  parse but break a rule, allocation failures).
 *
 * The property checked on every hostile input: decode either fails with an
 * error code, or yields a message that re-encodes and decodes to itself
 * (that is, one that passes every check).  Either way the counting
 * allocator must show no live allocation afterwards, and the sanitizers
 * (the Makefile's default) or valgrind catch anything else.
 *
 * Randomness comes from one xorshift generator seeded with a fixed value,
 * so a failure reproduces; CODEC_TEST_SEED overrides the seed.
 *
 * test/unit/codec_test.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chronicle.pb-c.h"
#include "net/codec.h"

#include "unit_test.h"

#define DEFAULT_SEED	UINT64_C(0x5eed0c0dec2026)
#define ROUNDTRIPS_PER_TYPE	400
#define MUTATIONS		20000
#define GARBAGE_INPUTS	5000

/*----------
 * Test bookkeeping
 *----------
 */


/* Values of every varint length, not only huge ones. */
static uint64_t
rnd_varied(void)
{
	unsigned	bits = (unsigned) rnd_below(65);

	if (bits == 0)
		return 0;
	if (bits == 64)
		return rnd();
	return rnd() & ((UINT64_C(1) << bits) - 1);
}

static uint64_t
rnd_nonzero(void)
{
	uint64_t	v;

	do
		v = rnd_varied();
	while (v == 0);
	return v;
}

/* Uniform in [lo, hi]. */
static uint64_t
rnd_range(uint64_t lo, uint64_t hi)
{
	if (hi - lo == UINT64_MAX)
		return rnd();
	return lo + rnd_below(hi - lo + 1);
}

static void
rnd_bytes(uint8_t *buf, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
		buf[i] = (uint8_t) rnd();
}

/*----------
 * Counting allocator: every block has a header so that frees of foreign
 * pointers are caught, and allocation number fail_at can be made to fail.
 *----------
 */
#define ALLOC_MAGIC UINT64_C(0xa110cb10cca11ed0)

typedef struct alloc_header
{
	uint64_t	magic;
	size_t		size;
} alloc_header;

typedef struct counting_alloc
{
	long		live;			/* blocks not yet freed */
	long		calls;			/* allocations attempted */
	long		fail_at;		/* calls number to fail, -1 = never */
	long		bad_frees;
} counting_alloc;

static counting_alloc counter;

static void *
count_alloc(void *ctx, size_t size)
{
	counting_alloc *c = (counting_alloc *) ctx;
	alloc_header *h;

	if (c->calls++ == c->fail_at)
		return NULL;
	h = malloc(sizeof(alloc_header) + size);
	if (h == NULL)
		return NULL;
	h->magic = ALLOC_MAGIC;
	h->size = size;
	c->live++;
	return h + 1;
}

static void *
count_realloc(void *ctx, void *ptr, size_t size)
{
	(void) ctx;
	(void) ptr;
	(void) size;
	/* the codec has no use for realloc; reaching here is a finding */
	abort();
}

static void
count_free(void *ctx, void *ptr)
{
	counting_alloc *c = (counting_alloc *) ctx;
	alloc_header *h;

	if (ptr == NULL)
		return;
	h = (alloc_header *) ptr - 1;
	if (h->magic != ALLOC_MAGIC)
	{
		c->bad_frees++;
		return;
	}
	h->magic = 0;
	c->live--;
	free(h);
}

static raft_allocator test_allocator = {count_alloc, count_realloc, count_free, &counter};

static void
counter_reset(void)
{
	counter.live = 0;
	counter.calls = 0;
	counter.fail_at = -1;
	counter.bad_frees = 0;
}

/*----------
 * Random messages
 *----------
 */

/* Buffers the generated messages point into; rewritten by each generator. */
#define MAX_GEN_ENTRIES 300
static raft_entry gen_entries[MAX_GEN_ENTRIES];
static uint8_t gen_data[MAX_GEN_ENTRIES * 64 + 4096];

static void
random_conf(raft_conf_state *conf)
{
	raft_node_id ids[RAFT_MAX_MEMBERS + RAFT_MAX_REMOVED];
	uint32_t	total;
	uint32_t	i;
	uint32_t	j;

	memset(conf, 0, sizeof(*conf));
	conf->num_voters = (uint32_t) rnd_range(1, 7);
	conf->num_learners = (uint32_t) rnd_below(RAFT_MAX_MEMBERS - conf->num_voters + 1);
	conf->num_removed = (uint32_t) rnd_below(RAFT_MAX_REMOVED + 1);
	total = conf->num_voters + conf->num_learners + conf->num_removed;

	/* distinct nonzero ids */
	for (i = 0; i < total; i++)
	{
		bool		dup;

		do
		{
			ids[i] = rnd_nonzero();
			dup = false;
			for (j = 0; j < i; j++)
				if (ids[j] == ids[i])
					dup = true;
		} while (dup);
	}
	memcpy(conf->voters, ids, conf->num_voters * sizeof(raft_node_id));
	memcpy(conf->learners, ids + conf->num_voters,
		   conf->num_learners * sizeof(raft_node_id));
	memcpy(conf->removed, ids + conf->num_voters + conf->num_learners,
		   conf->num_removed * sizeof(raft_node_id));
}

/* A random message of the given type that satisfies every codec rule. */
static void
random_message(raft_message *m, raft_message_type type)
{
	size_t		i;
	size_t		n;
	size_t		used;

	memset(m, 0, sizeof(*m));

	/*
	 * Fill every field, including ones the type does not carry: the codec
	 * must drop those, and the comparison checks they come back zero.
	 */
	m->type = type;
	m->from = rnd_nonzero();
	m->to = rnd_nonzero();
	m->cluster_id = rnd_varied();
	m->term = rnd_varied();
	m->log_term = rnd_range(0, m->term);
	m->index = rnd_varied();
	m->commit = rnd_varied();
	m->reject = rnd() & 1;
	m->reject_hint = rnd_varied();
	m->reject_hint_term = rnd_varied();
	m->leader_transfer = rnd() & 1;
	m->context = rnd_varied();
	m->snapshot.done = rnd() & 1;

	if (type == RAFT_MSG_APPEND)
	{
		raft_term	t;

		n = (rnd() % 8 == 0) ? rnd_below(MAX_GEN_ENTRIES + 1) : rnd_below(9);
		if (m->index > UINT64_MAX - n)
			m->index = UINT64_MAX - n;
		t = m->log_term;
		used = 0;
		for (i = 0; i < n; i++)
		{
			raft_entry *e = &gen_entries[i];
			size_t		len = (rnd() % 4 == 0) ? 0 : rnd_below(64);

			t = rnd_range(t, m->term);
			e->term = t;
			e->index = m->index + 1 + i;
			e->type = (raft_entry_type) rnd_below(3);
			e->len = len;
			e->data = len > 0 ? gen_data + used : NULL;
			rnd_bytes(gen_data + used, len);
			used += len;
		}
		m->num_entries = n;
		m->entries = n > 0 ? gen_entries : NULL;
	}
	else if (type == RAFT_MSG_SNAPSHOT)
	{
		random_conf(&m->snapshot.meta.conf);
		m->snapshot.meta.index = rnd_nonzero();
		m->snapshot.meta.term = rnd_range(0, m->term);
		m->snapshot.len = (rnd() % 4 == 0) ? 0 : rnd_below(4096);
		m->snapshot.data = m->snapshot.len > 0 ? gen_data : NULL;
		rnd_bytes(gen_data, m->snapshot.len);
		m->snapshot.offset = rnd_range(0, UINT64_MAX - m->snapshot.len);
	}
}

/*
 * The message as it must come back: the fields its type carries on the
 * wire (see docs/protocol.md), everything else zero.
 */
static void
wire_view(const raft_message *m, raft_message *v)
{
	memset(v, 0, sizeof(*v));
	v->type = m->type;
	v->from = m->from;
	v->to = m->to;
	v->cluster_id = m->cluster_id;
	v->term = m->term;
	switch (m->type)
	{
		case RAFT_MSG_VOTE:
		case RAFT_MSG_PREVOTE:
			v->log_term = m->log_term;
			v->index = m->index;
			v->leader_transfer = m->leader_transfer;
			break;
		case RAFT_MSG_VOTE_RESP:
		case RAFT_MSG_PREVOTE_RESP:
			v->reject = m->reject;
			break;
		case RAFT_MSG_APPEND:
			v->log_term = m->log_term;
			v->index = m->index;
			v->commit = m->commit;
			v->num_entries = m->num_entries;
			v->entries = m->entries;
			break;
		case RAFT_MSG_APPEND_RESP:
			v->index = m->index;
			v->reject = m->reject;
			v->reject_hint = m->reject_hint;
			v->reject_hint_term = m->reject_hint_term;
			break;
		case RAFT_MSG_HEARTBEAT:
			v->commit = m->commit;
			v->context = m->context;
			break;
		case RAFT_MSG_HEARTBEAT_RESP:
			v->context = m->context;
			break;
		case RAFT_MSG_SNAPSHOT:
			v->snapshot = m->snapshot;
			break;
		case RAFT_MSG_SNAPSHOT_RESP:
			v->index = m->index;
			v->reject = m->reject;
			v->reject_hint = m->reject_hint;
			v->snapshot.done = m->snapshot.done;
			break;
		case RAFT_MSG_TIMEOUT_NOW:
			break;
		case RAFT_MSG_READ_INDEX:
			v->context = m->context;
			break;
		case RAFT_MSG_READ_INDEX_RESP:
			v->context = m->context;
			v->index = m->index;
			v->reject = m->reject;
			break;
		case RAFT_MSG_NONE:
			break;
	}
}

static bool
bytes_equal(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	if (alen != blen)
		return false;
	if (alen == 0)
		return a == NULL && b == NULL;	/* decode yields NULL for empty */
	return a != NULL && b != NULL && memcmp(a, b, alen) == 0;
}

static bool
conf_equal(const raft_conf_state *a, const raft_conf_state *b)
{
	return a->num_voters == b->num_voters &&
		a->num_learners == b->num_learners &&
		a->num_removed == b->num_removed &&
		memcmp(a->voters, b->voters, a->num_voters * sizeof(raft_node_id)) == 0 &&
		memcmp(a->learners, b->learners, a->num_learners * sizeof(raft_node_id)) == 0 &&
		memcmp(a->removed, b->removed, a->num_removed * sizeof(raft_node_id)) == 0;
}

/* Field-by-field equality of two messages already in wire view. */
static bool
messages_equal(const raft_message *a, const raft_message *b)
{
	size_t		i;

	if (a->type != b->type || a->from != b->from || a->to != b->to ||
		a->cluster_id != b->cluster_id || a->term != b->term ||
		a->log_term != b->log_term || a->index != b->index ||
		a->commit != b->commit || a->reject != b->reject ||
		a->reject_hint != b->reject_hint ||
		a->reject_hint_term != b->reject_hint_term ||
		a->leader_transfer != b->leader_transfer ||
		a->context != b->context || a->num_entries != b->num_entries)
		return false;
	for (i = 0; i < a->num_entries; i++)
	{
		const raft_entry *x = &a->entries[i];
		const raft_entry *y = &b->entries[i];

		if (x->term != y->term || x->index != y->index || x->type != y->type ||
			!bytes_equal(x->data, x->len, y->data, y->len))
			return false;
	}
	if (a->snapshot.meta.index != b->snapshot.meta.index ||
		a->snapshot.meta.term != b->snapshot.meta.term ||
		!conf_equal(&a->snapshot.meta.conf, &b->snapshot.meta.conf) ||
		a->snapshot.offset != b->snapshot.offset ||
		a->snapshot.done != b->snapshot.done ||
		!bytes_equal(a->snapshot.data, a->snapshot.len,
					 b->snapshot.data, b->snapshot.len))
		return false;
	return true;
}

/*----------
 * Random frames of the other kinds
 *----------
 */
static void
random_frame(codec_frame *f, codec_frame_kind kind)
{
	memset(f, 0, sizeof(*f));
	f->kind = kind;
	f->version = CODEC_PROTOCOL_VERSION;
	switch (kind)
	{
		case CODEC_FRAME_RAFT:
			random_message(&f->u.raft, (raft_message_type) rnd_range(1, RAFT_MSG_TYPE_COUNT - 1));
			break;
		case CODEC_FRAME_CHALLENGE:
			f->u.challenge.cluster_id = rnd_varied();
			f->u.challenge.node_id = rnd_nonzero();
			f->u.challenge.min_version = (uint32_t) rnd_range(1, 1000);
			f->u.challenge.max_version = (uint32_t) rnd_range(f->u.challenge.min_version, UINT32_MAX);
			rnd_bytes(f->u.challenge.nonce, CODEC_NONCE_LEN);
			break;
		case CODEC_FRAME_RESPONSE:
			f->u.response.cluster_id = rnd_varied();
			f->u.response.node_id = rnd_nonzero();
			f->u.response.peer_id = rnd_nonzero();
			f->u.response.version = (uint32_t) rnd_range(1, UINT32_MAX);
			rnd_bytes(f->u.response.hmac, CODEC_HMAC_LEN);
			break;
		case CODEC_FRAME_FORWARD_BATCH:
			f->u.forward_batch.batch_id = rnd_varied();
			f->u.forward_batch.origin = rnd_nonzero();
			f->u.forward_batch.term = rnd_varied();
			f->u.forward_batch.len = (rnd() % 4 == 0) ? 0 : rnd_below(2048);
			f->u.forward_batch.payload = f->u.forward_batch.len > 0 ? gen_data : NULL;
			rnd_bytes(gen_data, f->u.forward_batch.len);
			break;
		case CODEC_FRAME_FORWARD_RESULT:
			f->u.forward_result.batch_id = rnd_varied();
			f->u.forward_result.origin = rnd_nonzero();
			f->u.forward_result.outcome = (codec_forward_outcome) rnd_below(4);
			f->u.forward_result.term = rnd_varied();
			f->u.forward_result.index = rnd_varied();
			f->u.forward_result.leader_hint = rnd_varied();
			break;
		case CODEC_FRAME_NONE:
			break;
	}
}

static bool
frames_equal(const codec_frame *a, const codec_frame *b)
{
	raft_message va;
	raft_message vb;

	if (a->kind != b->kind || a->version != b->version)
		return false;
	switch (a->kind)
	{
		case CODEC_FRAME_RAFT:
			wire_view(&a->u.raft, &va);
			wire_view(&b->u.raft, &vb);
			return messages_equal(&va, &vb);
		case CODEC_FRAME_CHALLENGE:
			return memcmp(&a->u.challenge, &b->u.challenge, sizeof(a->u.challenge)) == 0;
		case CODEC_FRAME_RESPONSE:
			return a->u.response.cluster_id == b->u.response.cluster_id &&
				a->u.response.node_id == b->u.response.node_id &&
				a->u.response.peer_id == b->u.response.peer_id &&
				a->u.response.version == b->u.response.version &&
				memcmp(a->u.response.hmac, b->u.response.hmac, CODEC_HMAC_LEN) == 0;
		case CODEC_FRAME_FORWARD_BATCH:
			return a->u.forward_batch.batch_id == b->u.forward_batch.batch_id &&
				a->u.forward_batch.origin == b->u.forward_batch.origin &&
				a->u.forward_batch.term == b->u.forward_batch.term &&
				bytes_equal(a->u.forward_batch.payload, a->u.forward_batch.len,
							b->u.forward_batch.payload, b->u.forward_batch.len);
		case CODEC_FRAME_FORWARD_RESULT:
			return a->u.forward_result.batch_id == b->u.forward_result.batch_id &&
				a->u.forward_result.origin == b->u.forward_result.origin &&
				a->u.forward_result.outcome == b->u.forward_result.outcome &&
				a->u.forward_result.term == b->u.forward_result.term &&
				a->u.forward_result.index == b->u.forward_result.index &&
				a->u.forward_result.leader_hint == b->u.forward_result.leader_hint;
		case CODEC_FRAME_NONE:
			break;
	}
	return true;
}

/*
 * Decode buf as hostile input.  Returns the decode status; on success also
 * checks that the result re-encodes and decodes to itself.  Checks that no
 * allocation survives either way.
 */
static int
decode_hostile(const uint8_t *buf, size_t len)
{
	codec_frame f;
	codec_frame g;
	uint8_t    *re;
	size_t		relen;
	int			rc;
	int			rc2;

	counter_reset();
	rc = codec_frame_decode(buf, len, &f, &test_allocator);
	if (rc == CODEC_OK)
	{
		rc2 = codec_frame_encode(&f, &re, &relen);
		CHECK(rc2 == CODEC_OK, "decoded frame does not re-encode: %s",
			  codec_status_name(rc2));
		if (rc2 == CODEC_OK)
		{
			rc2 = codec_frame_decode(re, relen, &g, &test_allocator);
			CHECK(rc2 == CODEC_OK, "re-encoded frame does not decode: %s",
				  codec_status_name(rc2));
			if (rc2 == CODEC_OK)
			{
				CHECK(frames_equal(&f, &g), "re-decoded frame differs");
				codec_frame_free(&g, &test_allocator);
			}
			codec_buf_free(re);
		}
		codec_frame_free(&f, &test_allocator);
	}
	else
	{
		CHECK(rc < 0, "unexpected status %d", rc);
		CHECK(f.kind == CODEC_FRAME_NONE, "output not zeroed on error");
	}
	CHECK(counter.live == 0, "%ld allocations leaked (len %zu, status %s)",
		  counter.live, len, codec_status_name(rc));
	CHECK(counter.bad_frees == 0, "foreign pointer freed");
	return rc;
}

/* A set of valid encodings to mutate: every kind, several of each. */
#define CORPUS_SIZE 64
static uint8_t *corpus[CORPUS_SIZE];
static size_t corpus_len[CORPUS_SIZE];

static void
build_corpus(void)
{
	int			i;
	int			rc;
	codec_frame f;

	for (i = 0; i < CORPUS_SIZE; i++)
	{
		if (i < 2 * (RAFT_MSG_TYPE_COUNT - 1))
		{
			memset(&f, 0, sizeof(f));
			f.kind = CODEC_FRAME_RAFT;
			f.version = CODEC_PROTOCOL_VERSION;
			random_message(&f.u.raft, (raft_message_type) (1 + i % (RAFT_MSG_TYPE_COUNT - 1)));
		}
		else
			random_frame(&f, (codec_frame_kind) (1 + i % 5));
		rc = codec_frame_encode(&f, &corpus[i], &corpus_len[i]);
		if (rc != CODEC_OK)
		{
			fprintf(stderr, "corpus entry %d does not encode: %s\n", i,
					codec_status_name(rc));
			exit(2);
		}
	}
}

/*----------
 * Test cases
 *----------
 */

/* Every message type, random field values: encode, decode, compare. */
static void
test_roundtrip_raft_messages(void)
{
	int			type;
	int			i;

	for (type = 1; type < RAFT_MSG_TYPE_COUNT; type++)
	{
		for (i = 0; i < ROUNDTRIPS_PER_TYPE; i++)
		{
			raft_message m;
			raft_message want;
			raft_message got;
			raft_message gotv;
			uint8_t    *buf;
			uint8_t    *buf2;
			size_t		len;
			size_t		size;
			size_t		len2;
			int			rc;

			random_message(&m, (raft_message_type) type);
			rc = raft_msg_encode(&m, &buf, &len);
			CHECK(rc == CODEC_OK, "type %d: encode: %s", type,
				  codec_status_name(rc));
			if (rc != CODEC_OK)
				continue;

			/* the other encoders agree byte for byte */
			{
				codec_frame f;

				memset(&f, 0, sizeof(f));
				f.kind = CODEC_FRAME_RAFT;
				f.u.raft = m;
				CHECK(codec_frame_encoded_size(&f, &size) == CODEC_OK && size == len,
					  "encoded size %zu != %zu", size, len);
				buf2 = malloc(len);
				CHECK(codec_frame_encode_into(&f, buf2, len, &len2) == CODEC_OK &&
					  len2 == len && memcmp(buf, buf2, len) == 0,
					  "encode_into differs");
				CHECK(len == 0 || codec_frame_encode_into(&f, buf2, len - 1, &len2) == CODEC_ERR_INVALID,
					  "encode_into accepted a short buffer");
				free(buf2);
			}

			counter_reset();
			rc = raft_msg_decode(buf, len, &got, &test_allocator);
			CHECK(rc == CODEC_OK, "type %d: decode: %s", type, codec_status_name(rc));
			if (rc == CODEC_OK)
			{
				wire_view(&m, &want);
				/* wire_view of the decoded message must be the identity */
				wire_view(&got, &gotv);
				CHECK(messages_equal(&got, &gotv),
					  "type %d: decoded a field its type does not carry", type);
				CHECK(messages_equal(&want, &got), "type %d: round trip differs", type);
				raft_msg_free(&got, &test_allocator);
			}
			CHECK(counter.live == 0, "type %d: %ld allocations leaked", type, counter.live);
			codec_buf_free(buf);
		}
	}
}

/* Handshake, forwarded batches and their results. */
static void
test_roundtrip_other_frames(void)
{
	int			kind;
	int			i;

	for (kind = CODEC_FRAME_CHALLENGE; kind <= CODEC_FRAME_FORWARD_RESULT; kind++)
	{
		for (i = 0; i < ROUNDTRIPS_PER_TYPE; i++)
		{
			codec_frame f;
			codec_frame g;
			raft_message m;
			uint8_t    *buf;
			size_t		len;
			int			rc;

			random_frame(&f, (codec_frame_kind) kind);
			if (i % 2)
				f.version = 0;	/* 0 asks for the current version */
			rc = codec_frame_encode(&f, &buf, &len);
			CHECK(rc == CODEC_OK, "kind %d: encode: %s", kind, codec_status_name(rc));
			if (rc != CODEC_OK)
				continue;
			f.version = CODEC_PROTOCOL_VERSION;
			counter_reset();
			rc = codec_frame_decode(buf, len, &g, &test_allocator);
			CHECK(rc == CODEC_OK, "kind %d: decode: %s", kind, codec_status_name(rc));
			if (rc == CODEC_OK)
			{
				CHECK(frames_equal(&f, &g), "kind %d: round trip differs", kind);
				codec_frame_free(&g, &test_allocator);
			}

			/* a non-raft frame is not a raft message */
			rc = raft_msg_decode(buf, len, &m, &test_allocator);
			CHECK(rc == CODEC_ERR_WRONG_KIND, "kind %d: raft_msg_decode gave %s",
				  kind, codec_status_name(rc));
			CHECK(counter.live == 0, "kind %d: %ld allocations leaked", kind, counter.live);
			codec_buf_free(buf);
		}
	}
}

/* Unknown fields (a newer peer's additions) are skipped, not rejected. */
static void
test_unknown_fields_ignored(void)
{
	raft_message m;
	raft_message got;
	raft_message want;
	uint8_t    *buf;
	uint8_t    *ext;
	size_t		len;
	int			rc;

	random_message(&m, RAFT_MSG_HEARTBEAT);
	rc = raft_msg_encode(&m, &buf, &len);
	CHECK(rc == CODEC_OK, "encode: %s", codec_status_name(rc));
	if (rc != CODEC_OK)
		return;
	/* append Frame field 100 (varint 7) and field 101 (2 bytes) */
	ext = malloc(len + 8);
	memcpy(ext, buf, len);
	ext[len] = 0xa0;			/* (100 << 3) | 0, as a varint */
	ext[len + 1] = 0x06;
	ext[len + 2] = 0x07;
	ext[len + 3] = 0xaa;		/* (101 << 3) | 2 */
	ext[len + 4] = 0x06;
	ext[len + 5] = 0x02;
	ext[len + 6] = 'h';
	ext[len + 7] = 'i';
	counter_reset();
	rc = raft_msg_decode(ext, len + 8, &got, &test_allocator);
	CHECK(rc == CODEC_OK, "decode with unknown fields: %s", codec_status_name(rc));
	if (rc == CODEC_OK)
	{
		wire_view(&m, &want);
		CHECK(messages_equal(&want, &got), "unknown fields changed the message");
		raft_msg_free(&got, &test_allocator);
	}
	CHECK(counter.live == 0, "%ld allocations leaked", counter.live);
	free(ext);
	codec_buf_free(buf);
}

/* The encoder refuses structs that break the contract. */
static void
test_encode_rejects_invalid(void)
{
	raft_message m;
	codec_frame f;
	uint8_t    *buf;
	size_t		len;
	raft_entry	e[3];

#define EXPECT_ENCODE(msg, want) \
	do { \
		int			rc_ = raft_msg_encode((msg), &buf, &len); \
		CHECK(rc_ == (want), "got %s, want %s", codec_status_name(rc_), \
			  codec_status_name(want)); \
		if (rc_ == CODEC_OK) \
			codec_buf_free(buf); \
		else \
			CHECK(buf == NULL && len == 0, "output set on error"); \
	} while (0)

	CHECK(raft_msg_encode(NULL, &buf, &len) == CODEC_ERR_INVALID, "NULL message");

	random_message(&m, RAFT_MSG_VOTE);
	m.type = RAFT_MSG_NONE;
	EXPECT_ENCODE(&m, CODEC_ERR_UNKNOWN_TYPE);
	m.type = (raft_message_type) RAFT_MSG_TYPE_COUNT;
	EXPECT_ENCODE(&m, CODEC_ERR_UNKNOWN_TYPE);
	m.type = (raft_message_type) -1;
	EXPECT_ENCODE(&m, CODEC_ERR_UNKNOWN_TYPE);

	random_message(&m, RAFT_MSG_VOTE);
	m.from = RAFT_NO_NODE;
	EXPECT_ENCODE(&m, CODEC_ERR_RANGE);
	random_message(&m, RAFT_MSG_VOTE);
	m.to = RAFT_NO_NODE;
	EXPECT_ENCODE(&m, CODEC_ERR_RANGE);

	/* APPEND entry rules */
	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_APPEND;
	m.from = 1;
	m.to = 2;
	m.term = 5;
	m.log_term = 2;
	m.index = 10;
	m.entries = e;
	m.num_entries = 3;
	memset(e, 0, sizeof(e));
	e[0].term = 2;
	e[0].index = 11;
	e[1].term = 3;
	e[1].index = 12;
	e[2].term = 5;
	e[2].index = 13;
	EXPECT_ENCODE(&m, CODEC_OK);
	e[1].index = 13;			/* gap */
	EXPECT_ENCODE(&m, CODEC_ERR_RANGE);
	e[1].index = 12;
	e[0].index = 10;			/* overlaps prev index */
	EXPECT_ENCODE(&m, CODEC_ERR_RANGE);
	e[0].index = 11;
	e[2].term = 6;				/* above the leader's term */
	EXPECT_ENCODE(&m, CODEC_ERR_RANGE);
	e[2].term = 2;				/* decreasing */
	EXPECT_ENCODE(&m, CODEC_ERR_RANGE);
	e[2].term = 5;
	e[0].term = 1;				/* below prev log term */
	EXPECT_ENCODE(&m, CODEC_ERR_RANGE);
	e[0].term = 2;
	e[1].type = (raft_entry_type) 3;
	EXPECT_ENCODE(&m, CODEC_ERR_UNKNOWN_TYPE);
	e[1].type = RAFT_ENTRY_NORMAL;
	e[1].len = 4;				/* data NULL with a length */
	EXPECT_ENCODE(&m, CODEC_ERR_INVALID);
	e[1].len = 0;
	m.log_term = 6;				/* prev term above the leader's term */
	EXPECT_ENCODE(&m, CODEC_ERR_RANGE);
	m.log_term = 2;
	m.index = UINT64_MAX - 1;	/* indexes would wrap */
	EXPECT_ENCODE(&m, CODEC_ERR_RANGE);
	m.index = 10;
	m.num_entries = CODEC_MAX_ENTRIES + 1;
	EXPECT_ENCODE(&m, CODEC_ERR_RANGE);
	m.num_entries = 1;
	m.entries = NULL;
	EXPECT_ENCODE(&m, CODEC_ERR_INVALID);

	/* SNAPSHOT membership rules */
	random_message(&m, RAFT_MSG_SNAPSHOT);
	m.snapshot.meta.conf.num_voters = RAFT_MAX_MEMBERS + 1;
	EXPECT_ENCODE(&m, CODEC_ERR_RANGE);
	random_message(&m, RAFT_MSG_SNAPSHOT);
	m.snapshot.meta.conf.num_voters = 10;
	m.snapshot.meta.conf.num_learners = RAFT_MAX_MEMBERS - 9;
	EXPECT_ENCODE(&m, CODEC_ERR_RANGE);
	random_message(&m, RAFT_MSG_SNAPSHOT);
	m.snapshot.meta.conf.num_removed = RAFT_MAX_REMOVED + 1;
	EXPECT_ENCODE(&m, CODEC_ERR_RANGE);
	random_message(&m, RAFT_MSG_SNAPSHOT);
	m.snapshot.meta.conf.voters[0] = RAFT_NO_NODE;
	EXPECT_ENCODE(&m, CODEC_ERR_RANGE);
	random_message(&m, RAFT_MSG_SNAPSHOT);
	m.snapshot.meta.conf.num_learners = 1;
	m.snapshot.meta.conf.learners[0] = m.snapshot.meta.conf.voters[0];
	EXPECT_ENCODE(&m, CODEC_ERR_RANGE);
	random_message(&m, RAFT_MSG_SNAPSHOT);
	m.snapshot.meta.conf.num_removed = 1;
	m.snapshot.meta.conf.removed[0] = m.snapshot.meta.conf.voters[0];
	EXPECT_ENCODE(&m, CODEC_ERR_RANGE);
	random_message(&m, RAFT_MSG_SNAPSHOT);
	m.snapshot.meta.conf.num_removed = 2;
	m.snapshot.meta.conf.removed[0] = 77;
	m.snapshot.meta.conf.removed[1] = 77;
	m.snapshot.meta.conf.voters[0] = 1;
	EXPECT_ENCODE(&m, CODEC_ERR_RANGE);
	random_message(&m, RAFT_MSG_SNAPSHOT);
	m.snapshot.meta.term = m.term + 1;
	if (m.term != UINT64_MAX)
		EXPECT_ENCODE(&m, CODEC_ERR_RANGE);
	random_message(&m, RAFT_MSG_SNAPSHOT);
	m.snapshot.meta.index = 0;
	EXPECT_ENCODE(&m, CODEC_ERR_RANGE);
	random_message(&m, RAFT_MSG_SNAPSHOT);
	m.snapshot.len = 5;
	m.snapshot.data = NULL;
	EXPECT_ENCODE(&m, CODEC_ERR_INVALID);
	random_message(&m, RAFT_MSG_SNAPSHOT);
	m.snapshot.len = 5;
	m.snapshot.data = gen_data;
	m.snapshot.offset = UINT64_MAX - 4;
	EXPECT_ENCODE(&m, CODEC_ERR_RANGE);

	/* other frame kinds */
#define EXPECT_FRAME(fr, want) \
	do { \
		int			rc_ = codec_frame_encode((fr), &buf, &len); \
		CHECK(rc_ == (want), "frame: got %s, want %s", codec_status_name(rc_), \
			  codec_status_name(want)); \
		if (rc_ == CODEC_OK) \
			codec_buf_free(buf); \
	} while (0)

	CHECK(codec_frame_encode(NULL, &buf, &len) == CODEC_ERR_INVALID, "NULL frame");
	random_frame(&f, CODEC_FRAME_CHALLENGE);
	f.kind = CODEC_FRAME_NONE;
	EXPECT_FRAME(&f, CODEC_ERR_UNKNOWN_TYPE);
	f.kind = (codec_frame_kind) 99;
	EXPECT_FRAME(&f, CODEC_ERR_UNKNOWN_TYPE);
	random_frame(&f, CODEC_FRAME_CHALLENGE);
	f.version = CODEC_PROTOCOL_VERSION + 1;
	EXPECT_FRAME(&f, CODEC_ERR_VERSION);
	random_frame(&f, CODEC_FRAME_CHALLENGE);
	f.u.challenge.node_id = 0;
	EXPECT_FRAME(&f, CODEC_ERR_RANGE);
	random_frame(&f, CODEC_FRAME_CHALLENGE);
	f.u.challenge.min_version = 0;
	EXPECT_FRAME(&f, CODEC_ERR_RANGE);
	random_frame(&f, CODEC_FRAME_CHALLENGE);
	f.u.challenge.min_version = 3;
	f.u.challenge.max_version = 2;
	EXPECT_FRAME(&f, CODEC_ERR_RANGE);
	random_frame(&f, CODEC_FRAME_RESPONSE);
	f.u.response.peer_id = 0;
	EXPECT_FRAME(&f, CODEC_ERR_RANGE);
	random_frame(&f, CODEC_FRAME_RESPONSE);
	f.u.response.version = 0;
	EXPECT_FRAME(&f, CODEC_ERR_RANGE);
	random_frame(&f, CODEC_FRAME_FORWARD_BATCH);
	f.u.forward_batch.origin = 0;
	EXPECT_FRAME(&f, CODEC_ERR_RANGE);
	random_frame(&f, CODEC_FRAME_FORWARD_BATCH);
	f.u.forward_batch.len = 3;
	f.u.forward_batch.payload = NULL;
	EXPECT_FRAME(&f, CODEC_ERR_INVALID);
	random_frame(&f, CODEC_FRAME_FORWARD_RESULT);
	f.u.forward_result.outcome = (codec_forward_outcome) 4;
	EXPECT_FRAME(&f, CODEC_ERR_UNKNOWN_TYPE);
}

/* Every proper prefix of every corpus encoding. */
static void
test_truncation(void)
{
	int			i;
	size_t		cut;
	long		rejected = 0;
	long		accepted = 0;

	for (i = 0; i < CORPUS_SIZE; i++)
	{
		for (cut = 0; cut < corpus_len[i]; cut++)
		{
			/* a fresh exact-size copy, so ASan sees any read past the end */
			uint8_t    *p = malloc(cut > 0 ? cut : 1);

			memcpy(p, corpus[i], cut);
			if (decode_hostile(p, cut) == CODEC_OK)
				accepted++;
			else
				rejected++;
			free(p);
		}
	}
	printf("# truncation: %ld prefixes rejected, %ld decoded to valid messages\n",
		   rejected, accepted);
	CHECK(rejected > 0, "no prefix rejected");
}

/* Seeded random edits of valid encodings. */
static void
test_mutations(void)
{
	long		rejected = 0;
	long		accepted = 0;
	int			n;

	for (n = 0; n < MUTATIONS; n++)
	{
		int			src = (int) rnd_below(CORPUS_SIZE);
		size_t		len = corpus_len[src];
		size_t		cap = len + 64;
		uint8_t    *p = malloc(cap);
		int			edits = (int) rnd_range(1, 4);
		int			k;

		memcpy(p, corpus[src], len);
		for (k = 0; k < edits; k++)
		{
			size_t		pos = len > 0 ? rnd_below(len) : 0;
			size_t		cnt;

			switch (rnd_below(6))
			{
				case 0:			/* flip one bit */
					if (len > 0)
						p[pos] ^= (uint8_t) (1u << rnd_below(8));
					break;
				case 1:			/* overwrite a byte */
					if (len > 0)
						p[pos] = (uint8_t) rnd();
					break;
				case 2:			/* set a byte to an edge value */
					if (len > 0)
						p[pos] = (rnd() & 1) ? 0xff : 0x00;
					break;
				case 3:			/* delete a run */
					cnt = rnd_range(1, 8);
					if (pos + cnt > len)
						cnt = len - pos;
					memmove(p + pos, p + pos + cnt, len - pos - cnt);
					len -= cnt;
					break;
				case 4:			/* insert random bytes */
					cnt = rnd_range(1, 8);
					if (len + cnt > cap)
						break;
					memmove(p + pos + cnt, p + pos, len - pos);
					rnd_bytes(p + pos, cnt);
					len += cnt;
					break;
				case 5:			/* truncate */
					len = pos;
					break;
			}
		}
		{
			/* exact-size copy for ASan */
			uint8_t    *q = malloc(len > 0 ? len : 1);

			memcpy(q, p, len);
			if (decode_hostile(q, len) == CODEC_OK)
				accepted++;
			else
				rejected++;
			free(q);
		}
		free(p);
		if (case_failures > 0)
		{
			printf("# first failure at mutation %d\n", n);
			break;
		}
	}
	printf("# mutations: %ld rejected, %ld decoded to valid messages\n",
		   rejected, accepted);
}

/* Random bytes, and random sequences of well-formed tags and values. */
static void
test_garbage(void)
{
	long		rejected = 0;
	long		accepted = 0;
	int			n;

	for (n = 0; n < GARBAGE_INPUTS; n++)
	{
		size_t		len = rnd_below(512);
		uint8_t    *p = malloc(len > 0 ? len : 1);

		if (n % 2 == 0)
			rnd_bytes(p, len);
		else
		{
			/* tag/value soup: small field numbers, every wire type */
			size_t		i = 0;

			while (i < len)
			{
				p[i++] = (uint8_t) ((rnd_below(21) << 3) | rnd_below(6));
				if (i < len)
					p[i++] = (uint8_t) rnd_below(rnd() & 1 ? 0x80 : 0x100);
			}
		}
		if (decode_hostile(p, len) == CODEC_OK)
			accepted++;
		else
			rejected++;
		free(p);
	}
	printf("# garbage: %ld rejected, %ld decoded to valid messages\n",
		   rejected, accepted);
}

/* Over the frame limit on both sides, and the length prefix. */
static void
test_oversize(void)
{
	uint8_t    *big;
	uint8_t    *buf;
	uint8_t		hdr[CODEC_FRAME_HEADER_SIZE];
	size_t		len;
	raft_message m;
	raft_message out;
	raft_entry *e;
	size_t		i;
	size_t		n;
	int			rc;

	/* decode refuses before parsing */
	big = calloc(1, CODEC_MAX_FRAME_SIZE + 1);
	counter_reset();
	rc = raft_msg_decode(big, CODEC_MAX_FRAME_SIZE + 1, &out, &test_allocator);
	CHECK(rc == CODEC_ERR_TOO_LARGE, "oversize decode: %s", codec_status_name(rc));
	CHECK(counter.calls == 0, "oversize decode allocated");

	/* encode refuses an APPEND whose payloads add up past the limit */
	n = CODEC_MAX_FRAME_SIZE / (1024 * 1024) + 1;
	e = calloc(n, sizeof(raft_entry));
	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_APPEND;
	m.from = 1;
	m.to = 2;
	m.term = 1;
	m.entries = e;
	m.num_entries = n;
	for (i = 0; i < n; i++)
	{
		e[i].term = 1;
		e[i].index = i + 1;
		e[i].data = big;
		e[i].len = 1024 * 1024;
	}
	rc = raft_msg_encode(&m, &buf, &len);
	CHECK(rc == CODEC_ERR_TOO_LARGE, "oversize encode: %s", codec_status_name(rc));
	CHECK(buf == NULL, "oversize encode returned a buffer");

	/* two entries less fit, and decode */
	m.num_entries = n - 2;
	rc = raft_msg_encode(&m, &buf, &len);
	CHECK(rc == CODEC_OK, "near-limit encode: %s", codec_status_name(rc));
	if (rc == CODEC_OK)
	{
		CHECK(len <= CODEC_MAX_FRAME_SIZE, "frame above the limit");
		counter_reset();
		rc = raft_msg_decode(buf, len, &out, &test_allocator);
		CHECK(rc == CODEC_OK, "near-limit decode: %s", codec_status_name(rc));
		if (rc == CODEC_OK)
		{
			CHECK(out.num_entries == n - 2, "entry count");
			raft_msg_free(&out, &test_allocator);
		}
		CHECK(counter.live == 0, "leak");
		codec_buf_free(buf);
	}
	free(e);
	free(big);

	/* length prefix */
	codec_put_frame_len(hdr, 0x01020304);
	CHECK(hdr[0] == 1 && hdr[1] == 2 && hdr[2] == 3 && hdr[3] == 4, "big-endian");
	CHECK(codec_get_frame_len(hdr, &len) == CODEC_OK && len == 0x01020304, "get");
	codec_put_frame_len(hdr, CODEC_MAX_FRAME_SIZE);
	CHECK(codec_get_frame_len(hdr, &len) == CODEC_OK && len == CODEC_MAX_FRAME_SIZE,
		  "max length");
	codec_put_frame_len(hdr, CODEC_MAX_FRAME_SIZE + 1);
	CHECK(codec_get_frame_len(hdr, &len) == CODEC_ERR_TOO_LARGE, "max + 1");
	memset(hdr, 0xff, sizeof(hdr));
	CHECK(codec_get_frame_len(hdr, &len) == CODEC_ERR_TOO_LARGE, "0xffffffff");
	memset(hdr, 0, sizeof(hdr));
	CHECK(codec_get_frame_len(hdr, &len) == CODEC_ERR_MALFORMED, "zero length");
}

/*
 * Frames that protobuf parses but that break a codec rule, built directly
 * with the generated protobuf-c structs as a hostile peer would.
 */
static int
decode_pb_frame(const Chronicle__Frame *pf)
{
	size_t		len = chronicle__frame__get_packed_size(pf);
	uint8_t    *buf = malloc(len > 0 ? len : 1);
	int			rc;

	chronicle__frame__pack(pf, buf);
	rc = decode_hostile(buf, len);
	free(buf);
	return rc;
}

static void
test_hostile_wellformed(void)
{
	Chronicle__Frame pf;
	Chronicle__RaftMessage pr;
	Chronicle__AppendEntries pa;
	Chronicle__Heartbeat ph;
	Chronicle__SnapshotChunk ps;
	Chronicle__SnapshotMeta pmeta;
	Chronicle__ConfState pconf;
	Chronicle__HandshakeChallenge pc;
	Chronicle__HandshakeResponse presp;
	Chronicle__ForwardBatchResult pfr;
	Chronicle__Entry *pe;
	Chronicle__Entry **pep;
	uint64_t	ids[RAFT_MAX_REMOVED + 1];
	uint8_t		nonce[CODEC_NONCE_LEN + 1];
	size_t		i;
	size_t		n;
	int			rc;

#define EXPECT_DECODE(want) \
	do { \
		rc = decode_pb_frame(&pf); \
		CHECK(rc == (want), "got %s, want %s", codec_status_name(rc), \
			  codec_status_name(want)); \
	} while (0)

	/* a good heartbeat to start from */
	chronicle__frame__init(&pf);
	chronicle__raft_message__init(&pr);
	chronicle__heartbeat__init(&ph);
	pf.version = CODEC_PROTOCOL_VERSION;
	pf.body_case = CHRONICLE__FRAME__BODY_RAFT;
	pf.raft = &pr;
	pr.type = CHRONICLE__MESSAGE_TYPE__MSG_HEARTBEAT;
	pr.from = 1;
	pr.to = 2;
	pr.term = 3;
	pr.body_case = CHRONICLE__RAFT_MESSAGE__BODY_HEARTBEAT;
	pr.heartbeat = &ph;
	EXPECT_DECODE(CODEC_OK);

	pf.version = 0;
	EXPECT_DECODE(CODEC_ERR_VERSION);
	pf.version = CODEC_PROTOCOL_VERSION + 1;
	EXPECT_DECODE(CODEC_ERR_VERSION);
	pf.version = CODEC_PROTOCOL_VERSION;

	pf.body_case = CHRONICLE__FRAME__BODY__NOT_SET;
	EXPECT_DECODE(CODEC_ERR_UNKNOWN_TYPE);
	pf.body_case = CHRONICLE__FRAME__BODY_RAFT;

	pr.type = CHRONICLE__MESSAGE_TYPE__MSG_NONE;
	EXPECT_DECODE(CODEC_ERR_UNKNOWN_TYPE);
	pr.type = (Chronicle__MessageType) 14;
	EXPECT_DECODE(CODEC_ERR_UNKNOWN_TYPE);
	pr.type = (Chronicle__MessageType) -5;
	EXPECT_DECODE(CODEC_ERR_UNKNOWN_TYPE);
	pr.type = CHRONICLE__MESSAGE_TYPE__MSG_VOTE;	/* heartbeat body */
	EXPECT_DECODE(CODEC_ERR_MALFORMED);
	pr.type = CHRONICLE__MESSAGE_TYPE__MSG_HEARTBEAT;
	pr.body_case = CHRONICLE__RAFT_MESSAGE__BODY__NOT_SET;
	EXPECT_DECODE(CODEC_ERR_MALFORMED);
	pr.body_case = CHRONICLE__RAFT_MESSAGE__BODY_HEARTBEAT;
	pr.from = 0;
	EXPECT_DECODE(CODEC_ERR_RANGE);
	pr.from = 1;
	pr.to = 0;
	EXPECT_DECODE(CODEC_ERR_RANGE);
	pr.to = 2;

	/* APPEND with too many entries, and with a bad entry type */
	n = CODEC_MAX_ENTRIES + 1;
	pe = calloc(n, sizeof(Chronicle__Entry));
	pep = calloc(n, sizeof(Chronicle__Entry *));
	for (i = 0; i < n; i++)
	{
		chronicle__entry__init(&pe[i]);
		pe[i].term = 1;
		pe[i].index = i + 1;
		pep[i] = &pe[i];
	}
	chronicle__append_entries__init(&pa);
	pa.entries = pep;
	pa.n_entries = n;
	pr.type = CHRONICLE__MESSAGE_TYPE__MSG_APPEND;
	pr.body_case = CHRONICLE__RAFT_MESSAGE__BODY_APPEND;
	pr.append = &pa;
	EXPECT_DECODE(CODEC_ERR_RANGE);
	pa.n_entries = CODEC_MAX_ENTRIES;
	EXPECT_DECODE(CODEC_OK);
	pa.n_entries = 2;
	pe[1].type = (Chronicle__EntryType) 9;
	EXPECT_DECODE(CODEC_ERR_UNKNOWN_TYPE);
	pe[1].type = CHRONICLE__ENTRY_TYPE__ENTRY_NOOP;
	pe[1].index = 5;
	EXPECT_DECODE(CODEC_ERR_RANGE);
	pe[1].index = 2;
	pe[1].term = 4;				/* above the message term (3) */
	EXPECT_DECODE(CODEC_ERR_RANGE);
	pe[1].term = 1;
	EXPECT_DECODE(CODEC_OK);
	free(pe);
	free(pep);

	/* SNAPSHOT: missing meta, oversized or broken membership */
	chronicle__snapshot_chunk__init(&ps);
	chronicle__snapshot_meta__init(&pmeta);
	chronicle__conf_state__init(&pconf);
	for (i = 0; i <= RAFT_MAX_REMOVED; i++)
		ids[i] = 100 + i;
	pr.type = CHRONICLE__MESSAGE_TYPE__MSG_SNAPSHOT;
	pr.body_case = CHRONICLE__RAFT_MESSAGE__BODY_SNAPSHOT;
	pr.snapshot = &ps;
	EXPECT_DECODE(CODEC_ERR_MALFORMED);
	ps.meta = &pmeta;
	EXPECT_DECODE(CODEC_ERR_RANGE); /* index 0 */
	pmeta.index = 5;
	EXPECT_DECODE(CODEC_OK);	/* no conf: empty membership */
	pmeta.conf = &pconf;
	pconf.voters = ids;
	pconf.n_voters = RAFT_MAX_MEMBERS + 1;
	EXPECT_DECODE(CODEC_ERR_RANGE);
	pconf.n_voters = 3;
	pconf.learners = ids + 2;	/* overlaps the voters */
	pconf.n_learners = 2;
	EXPECT_DECODE(CODEC_ERR_RANGE);
	pconf.learners = ids + 3;
	EXPECT_DECODE(CODEC_OK);
	pconf.removed = ids;
	pconf.n_removed = RAFT_MAX_REMOVED + 1;
	EXPECT_DECODE(CODEC_ERR_RANGE);
	pconf.removed = ids + 5;
	pconf.n_removed = RAFT_MAX_REMOVED - 5;
	EXPECT_DECODE(CODEC_OK);
	ids[0] = 0;
	EXPECT_DECODE(CODEC_ERR_RANGE);
	ids[0] = 100;
	pmeta.term = 4;
	EXPECT_DECODE(CODEC_ERR_RANGE);
	pmeta.term = 3;
	ps.offset = UINT64_MAX;
	ps.data.data = nonce;
	ps.data.len = 1;
	EXPECT_DECODE(CODEC_ERR_RANGE);

	/* handshake fields of the wrong size, bad versions */
	memset(nonce, 7, sizeof(nonce));
	chronicle__handshake_challenge__init(&pc);
	pc.node_id = 1;
	pc.min_version = 1;
	pc.max_version = 1;
	pc.nonce.data = nonce;
	pc.nonce.len = CODEC_NONCE_LEN;
	pf.body_case = CHRONICLE__FRAME__BODY_CHALLENGE;
	pf.challenge = &pc;
	EXPECT_DECODE(CODEC_OK);
	pc.nonce.len = CODEC_NONCE_LEN - 1;
	EXPECT_DECODE(CODEC_ERR_RANGE);
	pc.nonce.len = CODEC_NONCE_LEN + 1;
	EXPECT_DECODE(CODEC_ERR_RANGE);
	pc.nonce.len = 0;
	EXPECT_DECODE(CODEC_ERR_RANGE);
	pc.nonce.len = CODEC_NONCE_LEN;
	pc.max_version = 0;
	EXPECT_DECODE(CODEC_ERR_RANGE);

	chronicle__handshake_response__init(&presp);
	presp.node_id = 1;
	presp.peer_id = 2;
	presp.version = 1;
	presp.hmac.data = nonce;
	presp.hmac.len = CODEC_HMAC_LEN;
	pf.body_case = CHRONICLE__FRAME__BODY_RESPONSE;
	pf.response = &presp;
	EXPECT_DECODE(CODEC_OK);
	presp.hmac.len = 16;
	EXPECT_DECODE(CODEC_ERR_RANGE);

	chronicle__forward_batch_result__init(&pfr);
	pfr.origin = 1;
	pf.body_case = CHRONICLE__FRAME__BODY_FORWARD_RESULT;
	pf.forward_result = &pfr;
	EXPECT_DECODE(CODEC_OK);
	pfr.outcome = (Chronicle__ForwardOutcome) 4;
	EXPECT_DECODE(CODEC_ERR_UNKNOWN_TYPE);
}

/* Every allocation a decode makes, failed in turn: NOMEM, nothing leaked. */
static void
test_allocation_failures(void)
{
	int			i;
	long		total_failures = 0;

	for (i = 0; i < CORPUS_SIZE; i++)
	{
		long		k;

		for (k = 0;; k++)
		{
			codec_frame f;
			int			rc;

			counter_reset();
			counter.fail_at = k;
			rc = codec_frame_decode(corpus[i], corpus_len[i], &f, &test_allocator);
			if (rc == CODEC_OK)
			{
				/* k is past the last allocation: done with this input */
				CHECK(counter.calls <= k, "succeeded despite a failed allocation");
				codec_frame_free(&f, &test_allocator);
				CHECK(counter.live == 0, "leak after success");
				break;
			}
			CHECK(rc == CODEC_ERR_NOMEM, "input %d, failing allocation %ld: %s",
				  i, k, codec_status_name(rc));
			CHECK(counter.live == 0, "input %d, failing allocation %ld: %ld leaked",
				  i, k, counter.live);
			total_failures++;
			if (k > 100000)
			{
				CHECK(false, "input %d never succeeds", i);
				break;
			}
		}
	}
	printf("# allocation failures: %ld injected\n", total_failures);
}

/* NULL and odd arguments get error codes, not crashes. */
static void
test_bad_arguments(void)
{
	raft_message m;
	codec_frame f;
	uint8_t		b[4] = {0};
	size_t		len;

	CHECK(raft_msg_decode(NULL, 5, &m, NULL) == CODEC_ERR_INVALID, "NULL buffer");
	CHECK(raft_msg_decode(b, sizeof(b), NULL, NULL) == CODEC_ERR_INVALID, "NULL out");
	CHECK(raft_msg_decode(NULL, 0, &m, NULL) == CODEC_ERR_VERSION, "empty frame");
	CHECK(codec_frame_decode(b, 0, &f, NULL) == CODEC_ERR_VERSION, "empty frame");
	CHECK(codec_frame_encoded_size(NULL, &len) == CODEC_ERR_INVALID, "NULL frame");
	CHECK(codec_frame_encode_into(NULL, b, sizeof(b), &len) == CODEC_ERR_INVALID, "NULL frame");
	raft_msg_free(NULL, NULL);
	codec_frame_free(NULL, NULL);
	memset(&m, 0, sizeof(m));
	raft_msg_free(&m, NULL);	/* freeing a zeroed message is a no-op */
	CHECK(strcmp(codec_status_name(CODEC_ERR_RANGE), "value out of range") == 0, "name");
	CHECK(strcmp(codec_status_name(12345), "unknown status") == 0, "name");
}

/* The default allocator (NULL) works too; ASan watches its frees. */
static void
test_default_allocator(void)
{
	raft_message m;
	raft_message got;
	raft_message want;
	uint8_t    *buf;
	size_t		len;
	int			i;

	for (i = 0; i < 200; i++)
	{
		random_message(&m, (i % 2) ? RAFT_MSG_APPEND : RAFT_MSG_SNAPSHOT);
		if (raft_msg_encode(&m, &buf, &len) != CODEC_OK)
		{
			CHECK(false, "encode");
			continue;
		}
		CHECK(raft_msg_decode(buf, len, &got, NULL) == CODEC_OK, "decode");
		wire_view(&m, &want);
		CHECK(messages_equal(&want, &got), "round trip");
		raft_msg_free(&got, NULL);
		codec_buf_free(buf);
	}
}

int
main(void)
{
	const char *seed_env = getenv("CODEC_TEST_SEED");
	uint64_t	seed = DEFAULT_SEED;
	int			i;

	if (seed_env != NULL && *seed_env != '\0')
		seed = strtoull(seed_env, NULL, 0);
	if (seed == 0)
		seed = DEFAULT_SEED;	/* xorshift must not start at 0 */
	rng_state = seed;
	printf("# codec_test seed 0x%llx\n", (unsigned long long) seed);

	build_corpus();

	run_case("round trip: every raft message type", test_roundtrip_raft_messages);
	run_case("round trip: handshake and forward frames", test_roundtrip_other_frames);
	run_case("unknown fields are ignored", test_unknown_fields_ignored);
	run_case("encode rejects invalid structs", test_encode_rejects_invalid);
	run_case("bad arguments", test_bad_arguments);
	run_case("default allocator", test_default_allocator);
	run_case("truncation at every length", test_truncation);
	run_case("random mutations", test_mutations);
	run_case("random garbage", test_garbage);
	run_case("oversize frames and length prefix", test_oversize);
	run_case("well-formed but invalid frames", test_hostile_wellformed);
	run_case("allocation failures", test_allocation_failures);

	for (i = 0; i < CORPUS_SIZE; i++)
		codec_buf_free(corpus[i]);

	return unit_summary();
}
