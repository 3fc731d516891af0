/*-------------------------------------------------------------------------
 *
 * unit_core.c
 *	  Unit tests of the Raft core: scripted message sequences with exact
 *	  expected outputs (messages, persistence, commits, outcomes).
 *
 * Each test drives one or two raft_node instances by hand, collects every
 * ready, and compares what came out with what the protocol requires.  The
 * persistence contract is part of what is checked: which messages wait for
 * durability, and that nothing is applied or counted before it is durable.
 *
 *	  unit_core [test-name]
 *
 * test/sim/unit_core.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "raft.h"
#include "test_util.h"

#define CID			77
#define MAX_CAPTURE 64

typedef struct cap_msg
{
	raft_message m;				/* entries and data pointers cleared */
	bool		after_persist;
	raft_entry	first;			/* first entry, if any */
} cap_msg;

typedef struct capture
{
	cap_msg		msgs[MAX_CAPTURE];
	int			num_msgs;
	raft_entry	entries[MAX_CAPTURE];
	int			num_entries;
	raft_entry	committed[MAX_CAPTURE];
	int			num_committed;
	bool		hs_changed;
	raft_hard_state hs;
	bool		has_snapshot;
	raft_snapshot_meta snapshot;
	int			num_chunks;
	raft_read_state reads[MAX_CAPTURE];
	int			num_reads;
	raft_proposal_outcome outcomes[MAX_CAPTURE];
	int			num_outcomes;
} capture;

static const uint8_t snapshot_bytes[] = "0123456789";

/* flow-control overrides for the next make_node_full (0: defaults) */
static uint32_t test_max_inflight;
static uint32_t test_max_entries;

/*
 * Read-back of dropped payloads: with test_read_back set, the next
 * make_node_full keeps no applied payload in memory and reads them from
 * test_store (index -> payload); every call is recorded, and
 * test_read_fails makes them fail.
 */
static bool test_read_back;
static bool test_read_fails;
static const char *test_store[16];
static raft_index test_reads[64];
static int	test_num_reads;

static int
test_entry_read(void *ctx, raft_index index, raft_term term, uint8_t *buf, size_t len)
{
	(void) ctx;
	(void) term;
	if (test_num_reads < 64)
		test_reads[test_num_reads++] = index;
	if (test_read_fails || index >= 16 || test_store[index] == NULL ||
		strlen(test_store[index]) != len)
		return RAFT_ERR_INVALID;
	memcpy(buf, test_store[index], len);
	return RAFT_OK;
}

static int
test_snapshot_read(void *ctx, raft_index index, uint64_t offset, uint8_t *buf,
				   size_t cap, size_t *len, bool *done)
{
	size_t		total = 10;

	(void) ctx;
	(void) index;
	if (offset > total)
		return RAFT_ERR_INVALID;
	*len = total - (size_t) offset < cap ? total - (size_t) offset : cap;
	memcpy(buf, snapshot_bytes + offset, *len);
	*done = offset + *len == total;
	return RAFT_OK;
}

static void
conf_of(raft_conf_state *conf, const raft_node_id *voters, int nv,
		const raft_node_id *learners, int nl)
{
	int			i;

	memset(conf, 0, sizeof(*conf));
	for (i = 0; i < nv; i++)
		conf->voters[conf->num_voters++] = voters[i];
	for (i = 0; i < nl; i++)
		conf->learners[conf->num_learners++] = learners[i];
}

static raft_node *
make_node_full(raft_node_id id, const raft_conf_state *conf,
			   const raft_hard_state *hs, const raft_entry *entries, int n,
			   raft_index snap_index, raft_term snap_term)
{
	raft_config cfg;
	raft_restore rs;
	raft_node  *node = NULL;
	int			rc;

	raft_config_init(&cfg);
	cfg.id = id;
	cfg.cluster_id = CID;
	cfg.seed = 42;
	cfg.election_ticks = 10;
	cfg.heartbeat_ticks = 1;
	cfg.snapshot_chunk_bytes = 4;
	cfg.snapshot_read = test_snapshot_read;
	if (test_max_inflight > 0)
		cfg.max_inflight_msgs = test_max_inflight;
	if (test_max_entries > 0)
		cfg.max_msg_entries = test_max_entries;
	if (test_read_back)
	{
		cfg.entry_read = test_entry_read;
		cfg.max_cached_bytes = 0;
	}
	memset(&rs, 0, sizeof(rs));
	if (hs != NULL)
		rs.hard_state = *hs;
	rs.snapshot.conf = *conf;
	rs.snapshot.index = snap_index;
	rs.snapshot.term = snap_term;
	rs.entries = entries;
	rs.num_entries = (size_t) n;
	rs.applied = snap_index;
	rc = raft_node_create(&cfg, &rs, &node);
	CHECK_EQ(rc, RAFT_OK);
	return node;
}

static raft_node *
make_node(raft_node_id id, int num_voters)
{
	static const raft_node_id ids[] = {1, 2, 3, 4, 5};
	raft_conf_state conf;

	conf_of(&conf, ids, num_voters, NULL, 0);
	return make_node_full(id, &conf, NULL, NULL, 0, 0, 0);
}

static raft_message
msg(raft_message_type type, raft_node_id from, raft_node_id to, raft_term term)
{
	raft_message m;

	memset(&m, 0, sizeof(m));
	m.type = type;
	m.from = from;
	m.to = to;
	m.term = term;
	m.cluster_id = CID;
	return m;
}

static raft_entry
entry(raft_term term, raft_index index, const char *data)
{
	raft_entry	e;

	e.term = term;
	e.index = index;
	e.type = RAFT_ENTRY_NORMAL;
	e.data = (const uint8_t *) data;
	e.len = data == NULL ? 0 : strlen(data);
	return e;
}

static void
capture_msgs(capture *c, const raft_message *msgs, size_t n, bool after_persist)
{
	size_t		i;

	for (i = 0; i < n && c->num_msgs < MAX_CAPTURE; i++)
	{
		cap_msg    *cm = &c->msgs[c->num_msgs++];

		cm->m = msgs[i];
		cm->after_persist = after_persist;
		memset(&cm->first, 0, sizeof(cm->first));
		if (msgs[i].num_entries > 0)
			cm->first = msgs[i].entries[0];
		cm->first.data = NULL;
		cm->m.entries = NULL;
		cm->m.snapshot.data = NULL;
	}
}

/*
 * Collect every ready the node has.  With persist, each ready is confirmed
 * durable right after it is taken (an instant disk).
 */
static void
collect(raft_node *node, capture *c, bool persist)
{
	int			guard = 0;

	memset(c, 0, sizeof(*c));
	while (raft_has_ready(node) && guard++ < 32)
	{
		raft_ready	rd;
		size_t		i;

		raft_ready_get(node, &rd);
		capture_msgs(c, rd.messages, rd.num_messages, false);
		capture_msgs(c, rd.persist_messages, rd.num_persist_messages, true);
		for (i = 0; i < rd.num_entries && c->num_entries < MAX_CAPTURE; i++)
		{
			c->entries[c->num_entries] = rd.entries[i];
			c->entries[c->num_entries++].data = NULL;
		}
		for (i = 0; i < rd.num_committed && c->num_committed < MAX_CAPTURE; i++)
		{
			c->committed[c->num_committed] = rd.committed[i];
			c->committed[c->num_committed++].data = NULL;
		}
		if (rd.hard_state_changed)
		{
			c->hs_changed = true;
			c->hs = rd.hard_state;
		}
		if (rd.snapshot != NULL)
		{
			c->has_snapshot = true;
			c->snapshot = *rd.snapshot;
		}
		c->num_chunks += (int) rd.num_snapshot_chunks;
		for (i = 0; i < rd.num_read_states && c->num_reads < MAX_CAPTURE; i++)
			c->reads[c->num_reads++] = rd.read_states[i];
		for (i = 0; i < rd.num_outcomes && c->num_outcomes < MAX_CAPTURE; i++)
			c->outcomes[c->num_outcomes++] = rd.outcomes[i];
		raft_advance(node, &rd);
		if (persist && rd.must_persist)
			raft_persisted(node, rd.persist_term, rd.persist_index);
	}
}

static const cap_msg *
find_msg(const capture *c, raft_message_type type, raft_node_id to)
{
	int			i;

	for (i = 0; i < c->num_msgs; i++)
	{
		if (c->msgs[i].m.type == type && c->msgs[i].m.to == to)
			return &c->msgs[i];
	}
	return NULL;
}

static int
count_msgs(const capture *c, raft_message_type type)
{
	int			i;
	int			n = 0;

	for (i = 0; i < c->num_msgs; i++)
		n += c->msgs[i].m.type == type;
	return n;
}

static raft_status
status_of(raft_node *node)
{
	raft_status st;

	raft_get_status(node, &st);
	return st;
}

static void
step_ok(raft_node *node, const raft_message *m)
{
	CHECK_EQ(raft_step(node, m), RAFT_OK);
}

/*
 * Elect node 1 of a cluster with voters 1..n through pre-vote and vote,
 * with node 2 granting.  The leader's own ready is persisted only if asked.
 */
static void
elect_node1(raft_node *node, bool persist)
{
	capture		c;
	raft_message m;
	raft_status st = status_of(node);

	CHECK_EQ(raft_campaign(node), RAFT_OK);
	collect(node, &c, true);
	m = msg(RAFT_MSG_PREVOTE_RESP, 2, 1, st.term + 1);
	step_ok(node, &m);
	collect(node, &c, true);
	m = msg(RAFT_MSG_VOTE_RESP, 2, 1, st.term + 1);
	step_ok(node, &m);
	collect(node, &c, persist);
	CHECK_EQ(status_of(node).role, RAFT_LEADER);
}

/* Leader node 1 with its noop committed (acknowledged by node 2). */
static void
leader_with_commit(raft_node *node)
{
	capture		c;
	raft_message m;
	raft_status st;

	elect_node1(node, true);
	st = status_of(node);
	m = msg(RAFT_MSG_APPEND_RESP, 2, 1, st.term);
	m.index = st.last_index;
	step_ok(node, &m);
	collect(node, &c, true);
	CHECK_EQ(status_of(node).commit, st.last_index);
}

/*----------
 * Tests
 *----------
 */

static void
test_single_node_commits_only_after_fsync(void)
{
	raft_node  *node = make_node(1, 1);
	capture		c;

	CHECK_EQ(raft_campaign(node), RAFT_OK);
	CHECK_EQ(status_of(node).role, RAFT_LEADER);
	collect(node, &c, false);
	CHECK(c.hs_changed);
	CHECK_EQ(c.hs.term, 1);
	CHECK_EQ(c.hs.vote, 1);
	CHECK_EQ(c.hs.commit, 0);
	CHECK_EQ(c.num_entries, 1);
	CHECK_EQ(c.entries[0].index, 1);
	CHECK_EQ(c.entries[0].type, RAFT_ENTRY_NOOP);
	CHECK_EQ(c.num_committed, 0);
	CHECK_EQ(c.num_msgs, 0);
	/* not durable yet: a one-node cluster must not commit */
	CHECK_EQ(status_of(node).commit, 0);
	raft_persisted(node, 1, 1);
	collect(node, &c, false);
	CHECK_EQ(c.hs.commit, 1);
	CHECK_EQ(c.num_committed, 1);
	CHECK_EQ(c.committed[0].index, 1);
	raft_node_destroy(node);
}

static void
test_prevote_then_vote_messages(void)
{
	raft_node  *node = make_node(1, 3);
	capture		c;
	raft_message m;
	const cap_msg *cm;

	CHECK_EQ(raft_campaign(node), RAFT_OK);
	collect(node, &c, false);
	CHECK_EQ(status_of(node).role, RAFT_PRE_CANDIDATE);
	CHECK_EQ(status_of(node).term, 0);
	CHECK(!c.hs_changed);
	CHECK_EQ(c.num_msgs, 2);
	cm = find_msg(&c, RAFT_MSG_PREVOTE, 2);
	CHECK(cm != NULL && !cm->after_persist && cm->m.term == 1 &&
		  cm->m.index == 0 && cm->m.log_term == 0);
	CHECK(find_msg(&c, RAFT_MSG_PREVOTE, 3) != NULL);

	m = msg(RAFT_MSG_PREVOTE_RESP, 2, 1, 1);
	step_ok(node, &m);
	collect(node, &c, false);
	CHECK_EQ(status_of(node).role, RAFT_CANDIDATE);
	CHECK(c.hs_changed && c.hs.term == 1 && c.hs.vote == 1);
	cm = find_msg(&c, RAFT_MSG_VOTE, 3);
	/* the self-vote must be durable before anyone hears of it */
	CHECK(cm != NULL && cm->after_persist && cm->m.term == 1);
	CHECK_EQ(count_msgs(&c, RAFT_MSG_VOTE), 2);

	m = msg(RAFT_MSG_VOTE_RESP, 3, 1, 1);
	step_ok(node, &m);
	collect(node, &c, false);
	CHECK_EQ(status_of(node).role, RAFT_LEADER);
	CHECK_EQ(c.num_entries, 1);
	CHECK(c.entries[0].type == RAFT_ENTRY_NOOP && c.entries[0].term == 1);
	cm = find_msg(&c, RAFT_MSG_APPEND, 2);
	CHECK(cm != NULL && !cm->after_persist && cm->m.index == 0 &&
		  cm->m.log_term == 0 && cm->m.num_entries == 1 && cm->first.index == 1);
	CHECK(find_msg(&c, RAFT_MSG_APPEND, 3) != NULL);
	raft_node_destroy(node);
}

static void
test_vote_rules(void)
{
	raft_node  *node = make_node(1, 3);
	capture		c;
	raft_message m;
	const cap_msg *cm;
	raft_conf_state conf;
	static const raft_node_id ids[] = {1, 2, 3};
	raft_entry	log[2];
	raft_hard_state hs = {2, 0, 0};
	raft_node  *other;

	m = msg(RAFT_MSG_VOTE, 2, 1, 1);
	step_ok(node, &m);
	collect(node, &c, false);
	cm = find_msg(&c, RAFT_MSG_VOTE_RESP, 2);
	CHECK(cm != NULL && cm->after_persist && !cm->m.reject && cm->m.term == 1);
	CHECK(c.hs_changed && c.hs.term == 1 && c.hs.vote == 2);

	/* one vote per term */
	m = msg(RAFT_MSG_VOTE, 3, 1, 1);
	step_ok(node, &m);
	collect(node, &c, false);
	cm = find_msg(&c, RAFT_MSG_VOTE_RESP, 3);
	CHECK(cm != NULL && cm->m.reject);

	/* the same candidate may ask again (lost answer) */
	m = msg(RAFT_MSG_VOTE, 2, 1, 1);
	step_ok(node, &m);
	collect(node, &c, false);
	cm = find_msg(&c, RAFT_MSG_VOTE_RESP, 2);
	CHECK(cm != NULL && !cm->m.reject);

	/* check-quorum lease: a live leader is not deposed */
	m = msg(RAFT_MSG_HEARTBEAT, 2, 1, 1);
	step_ok(node, &m);
	collect(node, &c, false);
	m = msg(RAFT_MSG_VOTE, 3, 1, 2);
	step_ok(node, &m);
	collect(node, &c, false);
	CHECK_EQ(c.num_msgs, 0);
	CHECK_EQ(status_of(node).term, 1);
	raft_node_destroy(node);

	/* a candidate with an older log loses */
	conf_of(&conf, ids, 3, NULL, 0);
	log[0] = entry(1, 1, NULL);
	log[1] = entry(2, 2, NULL);
	other = make_node_full(1, &conf, &hs, log, 2, 0, 0);
	m = msg(RAFT_MSG_VOTE, 3, 1, 3);
	m.log_term = 1;
	m.index = 5;
	step_ok(other, &m);
	collect(other, &c, false);
	cm = find_msg(&c, RAFT_MSG_VOTE_RESP, 3);
	CHECK(cm != NULL && cm->m.reject && cm->m.term == 3);
	CHECK_EQ(status_of(other).vote, 0);
	raft_node_destroy(other);
}

static void
test_append_ack_waits_for_persist(void)
{
	raft_node  *node = make_node(1, 3);
	capture		c;
	raft_message m;
	raft_entry	ents[2];
	const cap_msg *cm;

	ents[0] = entry(1, 1, "a");
	ents[1] = entry(1, 2, "b");
	m = msg(RAFT_MSG_APPEND, 2, 1, 1);
	m.entries = ents;
	m.num_entries = 2;
	step_ok(node, &m);
	collect(node, &c, false);
	CHECK_EQ(c.num_entries, 2);
	CHECK(c.hs_changed && c.hs.term == 1 && c.hs.vote == 0);
	CHECK_EQ(count_msgs(&c, RAFT_MSG_APPEND_RESP), 1);
	cm = find_msg(&c, RAFT_MSG_APPEND_RESP, 2);
	CHECK(cm != NULL && cm->after_persist && !cm->m.reject && cm->m.index == 2);

	m = msg(RAFT_MSG_APPEND, 2, 1, 1);
	m.index = 2;
	m.log_term = 1;
	m.commit = 2;
	step_ok(node, &m);
	collect(node, &c, false);
	CHECK_EQ(c.hs.commit, 2);
	/* committed but not durable here: nothing may be applied yet */
	CHECK_EQ(c.num_committed, 0);
	raft_persisted(node, 1, 2);
	collect(node, &c, false);
	CHECK_EQ(c.num_committed, 2);
	raft_node_destroy(node);
}

static void
test_reject_hint_and_truncate(void)
{
	raft_conf_state conf;
	static const raft_node_id ids[] = {1, 2, 3};
	raft_entry	log[4];
	raft_hard_state hs = {2, 0, 0};
	raft_node  *node;
	raft_message m;
	capture		c;
	const cap_msg *cm;
	raft_entry	ents[2];

	conf_of(&conf, ids, 3, NULL, 0);
	log[0] = entry(1, 1, NULL);
	log[1] = entry(1, 2, NULL);
	log[2] = entry(2, 3, NULL);
	log[3] = entry(2, 4, NULL);
	node = make_node_full(1, &conf, &hs, log, 4, 0, 0);

	m = msg(RAFT_MSG_APPEND, 2, 1, 3);
	m.index = 4;
	m.log_term = 3;
	step_ok(node, &m);
	collect(node, &c, true);
	cm = find_msg(&c, RAFT_MSG_APPEND_RESP, 2);
	CHECK(cm != NULL && cm->m.reject && cm->m.index == 4 &&
		  cm->m.reject_hint == 4 && cm->m.reject_hint_term == 2);

	/* the leader backs up to index 2 and overwrites the term-2 suffix */
	ents[0] = entry(3, 3, "x");
	ents[1] = entry(3, 4, "y");
	m = msg(RAFT_MSG_APPEND, 2, 1, 3);
	m.index = 2;
	m.log_term = 1;
	m.entries = ents;
	m.num_entries = 2;
	step_ok(node, &m);
	collect(node, &c, true);
	CHECK_EQ(c.num_entries, 2);
	CHECK(c.entries[0].index == 3 && c.entries[0].term == 3);
	cm = find_msg(&c, RAFT_MSG_APPEND_RESP, 2);
	CHECK(cm != NULL && !cm->m.reject && cm->m.index == 4);

	/* a probe beyond our log gets our last index as the hint */
	m = msg(RAFT_MSG_APPEND, 2, 1, 3);
	m.index = 7;
	m.log_term = 3;
	step_ok(node, &m);
	collect(node, &c, true);
	cm = find_msg(&c, RAFT_MSG_APPEND_RESP, 2);
	CHECK(cm != NULL && cm->m.reject && cm->m.reject_hint == 4 &&
		  cm->m.reject_hint_term == 3);
	raft_node_destroy(node);
}

static void
test_leader_counts_itself_after_persist(void)
{
	raft_node  *node = make_node(1, 3);
	raft_message m;
	capture		c;

	elect_node1(node, false);
	m = msg(RAFT_MSG_APPEND_RESP, 2, 1, 1);
	m.index = 1;
	step_ok(node, &m);
	collect(node, &c, false);
	/* one follower + a leader whose noop is not durable: no quorum */
	CHECK_EQ(status_of(node).commit, 0);
	raft_persisted(node, 1, 1);
	collect(node, &c, false);
	CHECK_EQ(status_of(node).commit, 1);
	raft_node_destroy(node);
}

static void
test_no_commit_of_old_term_by_counting(void)
{
	raft_conf_state conf;
	static const raft_node_id ids[] = {1, 2, 3};
	raft_entry	log[2];
	raft_hard_state hs = {2, 0, 1};
	raft_node  *node;
	raft_message m;
	capture		c;

	conf_of(&conf, ids, 3, NULL, 0);
	log[0] = entry(1, 1, NULL);
	log[1] = entry(2, 2, NULL);
	node = make_node_full(1, &conf, &hs, log, 2, 0, 0);
	elect_node1(node, true);
	CHECK_EQ(status_of(node).term, 3);
	CHECK_EQ(status_of(node).last_index, 3);

	/* a majority holds index 2 (term 2), but term 2 is not ours */
	m = msg(RAFT_MSG_APPEND_RESP, 2, 1, 3);
	m.index = 2;
	step_ok(node, &m);
	collect(node, &c, true);
	CHECK_EQ(status_of(node).commit, 1);

	/* once our own noop is on a majority, both commit */
	m = msg(RAFT_MSG_APPEND_RESP, 2, 1, 3);
	m.index = 3;
	step_ok(node, &m);
	collect(node, &c, true);
	CHECK_EQ(status_of(node).commit, 3);
	raft_node_destroy(node);
}

static void
test_learner_never_counts(void)
{
	raft_conf_state conf;
	static const raft_node_id voters[] = {1, 2};
	static const raft_node_id learners[] = {3};
	raft_node  *node;
	raft_node  *learner;
	raft_message m;
	capture		c;
	int			i;

	conf_of(&conf, voters, 2, learners, 1);
	node = make_node_full(1, &conf, NULL, NULL, 0, 0, 0);
	elect_node1(node, true);
	m = msg(RAFT_MSG_APPEND_RESP, 3, 1, 1);
	m.index = 1;
	step_ok(node, &m);
	collect(node, &c, true);
	CHECK_EQ(status_of(node).commit, 0);
	m = msg(RAFT_MSG_APPEND_RESP, 2, 1, 1);
	m.index = 1;
	step_ok(node, &m);
	collect(node, &c, true);
	CHECK_EQ(status_of(node).commit, 1);
	raft_node_destroy(node);

	/* a learner never campaigns */
	learner = make_node_full(3, &conf, NULL, NULL, 0, 0, 0);
	for (i = 0; i < 100; i++)
		raft_tick(learner);
	collect(learner, &c, true);
	CHECK_EQ(c.num_msgs, 0);
	CHECK_EQ(status_of(learner).role, RAFT_FOLLOWER);
	CHECK_EQ(raft_campaign(learner), RAFT_ERR_CONF);
	raft_node_destroy(learner);
}

static void
test_check_quorum_steps_down(void)
{
	raft_node  *node = make_node(1, 3);
	capture		c;
	int			i;

	elect_node1(node, true);
	for (i = 0; i < 10; i++)
	{
		raft_tick(node);
		collect(node, &c, true);
	}
	CHECK_EQ(status_of(node).role, RAFT_FOLLOWER);
	CHECK_EQ(status_of(node).term, 1);
	raft_node_destroy(node);
}

static void
test_wrong_cluster_and_removed_dropped(void)
{
	raft_conf_state conf;
	static const raft_node_id ids[] = {1, 2, 3};
	raft_node  *node;
	raft_message m;
	capture		c;

	conf_of(&conf, ids, 3, NULL, 0);
	conf.removed[conf.num_removed++] = 9;
	node = make_node_full(1, &conf, NULL, NULL, 0, 0, 0);

	m = msg(RAFT_MSG_APPEND, 2, 1, 5);
	m.cluster_id = CID + 1;
	CHECK_EQ(raft_step(node, &m), RAFT_ERR_CLUSTER_ID);
	CHECK(!raft_has_ready(node));
	CHECK_EQ(status_of(node).term, 0);

	/* node 9 was removed: no vote, no term change, ever */
	m = msg(RAFT_MSG_PREVOTE, 9, 1, 5);
	step_ok(node, &m);
	m = msg(RAFT_MSG_VOTE, 9, 1, 5);
	step_ok(node, &m);
	m = msg(RAFT_MSG_APPEND_RESP, 9, 1, 7);
	step_ok(node, &m);
	collect(node, &c, true);
	CHECK_EQ(c.num_msgs, 0);
	CHECK_EQ(status_of(node).term, 0);

	/* malformed input is refused before it touches anything */
	m = msg(RAFT_MSG_APPEND, 1, 1, 5);
	CHECK_EQ(raft_step(node, &m), RAFT_ERR_INVALID);
	m = msg((raft_message_type) 99, 2, 1, 5);
	CHECK_EQ(raft_step(node, &m), RAFT_ERR_INVALID);
	raft_node_destroy(node);
}

static void
test_read_index(void)
{
	raft_node  *node = make_node(1, 3);
	raft_node  *follower = make_node(2, 3);
	raft_message m;
	capture		c;
	const cap_msg *cm;

	/* a new leader has not committed in its term: no read point yet */
	elect_node1(node, true);
	CHECK_EQ(raft_read_index(node, 7), RAFT_ERR_NOT_READY);
	m = msg(RAFT_MSG_APPEND_RESP, 2, 1, 1);
	m.index = 1;
	step_ok(node, &m);
	collect(node, &c, true);

	CHECK_EQ(raft_read_index(node, 7), RAFT_OK);
	collect(node, &c, true);
	CHECK_EQ(c.num_reads, 0);
	cm = find_msg(&c, RAFT_MSG_HEARTBEAT, 3);
	CHECK(cm != NULL && cm->m.context == 1 && cm->m.commit == 0);
	cm = find_msg(&c, RAFT_MSG_HEARTBEAT, 2);
	CHECK(cm != NULL && cm->m.context == 1 && cm->m.commit == 1);
	m = msg(RAFT_MSG_HEARTBEAT_RESP, 3, 1, 1);
	m.context = 1;
	step_ok(node, &m);
	collect(node, &c, true);
	CHECK_EQ(c.num_reads, 1);
	CHECK(c.reads[0].context == 7 && c.reads[0].index == 1 && !c.reads[0].failed);

	/* a follower forwards the read to its leader */
	m = msg(RAFT_MSG_HEARTBEAT, 1, 2, 1);
	step_ok(follower, &m);
	collect(follower, &c, true);
	CHECK_EQ(raft_read_index(follower, 9), RAFT_OK);
	collect(follower, &c, true);
	cm = find_msg(&c, RAFT_MSG_READ_INDEX, 1);
	CHECK(cm != NULL && cm->m.context == 9);
	m = msg(RAFT_MSG_READ_INDEX_RESP, 1, 2, 1);
	m.context = 9;
	m.index = 5;
	step_ok(follower, &m);
	collect(follower, &c, true);
	CHECK(c.num_reads == 1 && c.reads[0].index == 5 && c.reads[0].context == 9);
	raft_node_destroy(node);
	raft_node_destroy(follower);
}

static void
test_leadership_transfer(void)
{
	raft_node  *node = make_node(1, 3);
	raft_node  *target = make_node(2, 3);
	raft_node  *voter = make_node(3, 3);
	raft_message m;
	capture		c;
	const cap_msg *cm;

	leader_with_commit(node);
	CHECK_EQ(raft_transfer_leadership(node, 2), RAFT_OK);
	collect(node, &c, true);
	cm = find_msg(&c, RAFT_MSG_TIMEOUT_NOW, 2);
	CHECK(cm != NULL && cm->m.term == 1);
	CHECK_EQ(raft_propose(node, "x", 1, NULL, NULL), RAFT_ERR_BUSY);

	/* the target campaigns at once, without pre-vote */
	m = msg(RAFT_MSG_HEARTBEAT, 1, 2, 1);
	step_ok(target, &m);
	collect(target, &c, true);
	m = msg(RAFT_MSG_TIMEOUT_NOW, 1, 2, 1);
	step_ok(target, &m);
	collect(target, &c, true);
	CHECK_EQ(status_of(target).role, RAFT_CANDIDATE);
	cm = find_msg(&c, RAFT_MSG_VOTE, 3);
	CHECK(cm != NULL && cm->m.leader_transfer && cm->m.term == 2);

	/* a voter in its lease still votes for a sanctioned transfer */
	m = msg(RAFT_MSG_HEARTBEAT, 1, 3, 1);
	step_ok(voter, &m);
	collect(voter, &c, true);
	m = msg(RAFT_MSG_VOTE, 2, 3, 2);
	m.leader_transfer = true;
	step_ok(voter, &m);
	collect(voter, &c, true);
	cm = find_msg(&c, RAFT_MSG_VOTE_RESP, 2);
	CHECK(cm != NULL && !cm->m.reject);
	raft_node_destroy(node);
	raft_node_destroy(target);
	raft_node_destroy(voter);
}

/* Commit everything the leader has, with node 2 acknowledging. */
static void
commit_all(raft_node *node)
{
	raft_message m;
	capture		c;

	collect(node, &c, true);
	m = msg(RAFT_MSG_APPEND_RESP, 2, 1, status_of(node).term);
	m.index = status_of(node).last_index;
	step_ok(node, &m);
	m.from = 3;
	step_ok(node, &m);
	collect(node, &c, true);
}

static void
test_membership_one_at_a_time(void)
{
	raft_node  *node = make_node(1, 3);
	raft_status st;
	raft_term	term;
	raft_index	index;

	elect_node1(node, true);
	CHECK_EQ(raft_propose_conf_change(node, RAFT_CONF_ADD_LEARNER, 4, NULL, NULL),
			 RAFT_ERR_NOT_READY);
	commit_all(node);
	CHECK_EQ(raft_propose_conf_change(node, RAFT_CONF_ADD_LEARNER, 4, &term, &index),
			 RAFT_OK);
	CHECK_EQ(index, 2);
	CHECK_EQ(raft_propose_conf_change(node, RAFT_CONF_PROMOTE, 4, NULL, NULL),
			 RAFT_ERR_BUSY);
	commit_all(node);
	st = status_of(node);
	CHECK(raft_conf_is_learner(&st.conf, 4));
	CHECK_EQ(raft_propose_conf_change(node, RAFT_CONF_PROMOTE, 4, NULL, NULL), RAFT_OK);
	commit_all(node);
	st = status_of(node);
	CHECK(raft_conf_is_voter(&st.conf, 4) && st.conf.num_voters == 4);
	CHECK_EQ(raft_propose_conf_change(node, RAFT_CONF_REMOVE, 4, NULL, NULL), RAFT_OK);
	commit_all(node);
	st = status_of(node);
	CHECK(raft_conf_is_removed(&st.conf, 4) && st.conf.num_voters == 3);
	/* ids are never reused */
	CHECK_EQ(raft_propose_conf_change(node, RAFT_CONF_ADD_LEARNER, 4, NULL, NULL),
			 RAFT_ERR_CONF);
	CHECK_EQ(raft_propose_conf_change(node, RAFT_CONF_PROMOTE, 2, NULL, NULL),
			 RAFT_ERR_CONF);
	raft_node_destroy(node);
}

static void
test_leader_removes_itself(void)
{
	raft_node  *node = make_node(1, 3);
	capture		c;
	raft_message m;

	leader_with_commit(node);
	CHECK_EQ(raft_propose_conf_change(node, RAFT_CONF_REMOVE, 1, NULL, NULL), RAFT_OK);
	collect(node, &c, true);
	m = msg(RAFT_MSG_APPEND_RESP, 2, 1, 1);
	m.index = 2;
	step_ok(node, &m);
	collect(node, &c, true);
	/* applied: no longer a voter, so no longer the leader; hand-off sent */
	CHECK_EQ(status_of(node).role, RAFT_FOLLOWER);
	CHECK(!status_of(node).is_voter);
	CHECK(find_msg(&c, RAFT_MSG_TIMEOUT_NOW, 2) != NULL);
	CHECK_EQ(raft_campaign(node), RAFT_ERR_CONF);
	raft_node_destroy(node);
}

static void
test_snapshot_receive_in_chunks(void)
{
	raft_node  *node = make_node(1, 3);
	raft_message m;
	capture		c;
	const cap_msg *cm;
	static const raft_node_id ids[] = {1, 2, 3};
	raft_status st;

	m = msg(RAFT_MSG_SNAPSHOT, 2, 1, 1);
	m.snapshot.meta.index = 10;
	m.snapshot.meta.term = 1;
	conf_of(&m.snapshot.meta.conf, ids, 3, NULL, 0);
	m.snapshot.offset = 0;
	m.snapshot.data = (const uint8_t *) "abcd";
	m.snapshot.len = 4;
	step_ok(node, &m);
	collect(node, &c, true);
	CHECK_EQ(c.num_chunks, 1);
	cm = find_msg(&c, RAFT_MSG_SNAPSHOT_RESP, 2);
	CHECK(cm != NULL && cm->after_persist && !cm->m.reject &&
		  cm->m.index == 10 && cm->m.reject_hint == 4);

	/* a gap: the follower says where to resume */
	m.snapshot.offset = 8;
	step_ok(node, &m);
	collect(node, &c, true);
	CHECK_EQ(c.num_chunks, 0);
	cm = find_msg(&c, RAFT_MSG_SNAPSHOT_RESP, 2);
	CHECK(cm != NULL && cm->m.reject && cm->m.reject_hint == 4);

	m.snapshot.offset = 4;
	m.snapshot.data = (const uint8_t *) "efgh";
	m.snapshot.done = true;
	step_ok(node, &m);
	collect(node, &c, true);
	CHECK_EQ(c.num_chunks, 1);
	CHECK(c.has_snapshot && c.snapshot.index == 10 && c.snapshot.term == 1);
	CHECK(c.hs_changed && c.hs.commit == 10);
	cm = find_msg(&c, RAFT_MSG_SNAPSHOT_RESP, 2);
	CHECK(cm != NULL && cm->after_persist && cm->m.snapshot.done);
	st = status_of(node);
	CHECK_EQ(st.first_index, 11);
	CHECK_EQ(st.applied, 10);
	CHECK_EQ(st.stable, 10);
	CHECK_EQ(st.conf.num_voters, 3);
	raft_node_destroy(node);
}

static void
test_snapshot_send_with_backpressure(void)
{
	raft_conf_state conf;
	static const raft_node_id ids[] = {1, 2, 3};
	raft_hard_state hs = {1, 0, 5};
	raft_node  *node;
	raft_message m;
	capture		c;
	const cap_msg *cm;

	conf_of(&conf, ids, 3, NULL, 0);
	node = make_node_full(1, &conf, &hs, NULL, 0, 5, 1);
	elect_node1(node, true);
	CHECK_EQ(status_of(node).last_index, 6);

	/* follower 2 has nothing: the leader must fall back to the snapshot */
	m = msg(RAFT_MSG_APPEND_RESP, 2, 1, 2);
	m.reject = true;
	m.index = 5;
	m.reject_hint = 0;
	step_ok(node, &m);
	collect(node, &c, true);
	cm = find_msg(&c, RAFT_MSG_SNAPSHOT, 2);
	CHECK(cm != NULL && cm->m.snapshot.offset == 0 && cm->m.snapshot.len == 4 &&
		  !cm->m.snapshot.done && cm->m.snapshot.meta.index == 5);
	CHECK_EQ(count_msgs(&c, RAFT_MSG_SNAPSHOT), 1);

	/* one chunk in flight: heartbeats do not send more */
	raft_tick(node);
	collect(node, &c, true);
	CHECK_EQ(count_msgs(&c, RAFT_MSG_SNAPSHOT), 0);

	m = msg(RAFT_MSG_SNAPSHOT_RESP, 2, 1, 2);
	m.index = 5;
	m.reject_hint = 4;
	step_ok(node, &m);
	collect(node, &c, true);
	cm = find_msg(&c, RAFT_MSG_SNAPSHOT, 2);
	CHECK(cm != NULL && cm->m.snapshot.offset == 4 && cm->m.snapshot.len == 4);

	m.reject_hint = 8;
	step_ok(node, &m);
	collect(node, &c, true);
	cm = find_msg(&c, RAFT_MSG_SNAPSHOT, 2);
	CHECK(cm != NULL && cm->m.snapshot.offset == 8 && cm->m.snapshot.len == 2 &&
		  cm->m.snapshot.done);

	m.snapshot.done = true;
	m.reject_hint = 10;
	step_ok(node, &m);
	collect(node, &c, true);
	cm = find_msg(&c, RAFT_MSG_APPEND, 2);
	CHECK(cm != NULL && cm->m.index == 5 && cm->m.log_term == 1 &&
		  cm->m.num_entries == 1 && cm->first.index == 6);
	raft_node_destroy(node);
}

static void
test_proposal_outcomes(void)
{
	raft_node  *node = make_node(1, 3);
	raft_message m;
	capture		c;
	raft_term	term;
	raft_index	index;
	raft_entry	ents[1];

	leader_with_commit(node);
	CHECK_EQ(raft_propose(node, "x", 1, &term, &index), RAFT_OK);
	CHECK(term == 1 && index == 2);
	commit_all(node);
	CHECK_EQ(status_of(node).commit, 2);
	/* reported when applied */
	CHECK_EQ(raft_propose(node, "y", 1, &term, &index), RAFT_OK);
	CHECK(term == 1 && index == 3);
	collect(node, &c, true);

	/* a new leader overwrites index 3 and commits its own entry there */
	ents[0] = entry(2, 3, "z");
	m = msg(RAFT_MSG_APPEND, 2, 1, 2);
	m.index = 2;
	m.log_term = 1;
	m.commit = 3;
	m.entries = ents;
	m.num_entries = 1;
	step_ok(node, &m);
	collect(node, &c, true);
	CHECK_EQ(status_of(node).role, RAFT_FOLLOWER);
	CHECK_EQ(c.num_outcomes, 1);
	CHECK(c.outcomes[0].index == 3 && c.outcomes[0].term == 1 &&
		  c.outcomes[0].outcome == RAFT_OUTCOME_LOST);
	CHECK_EQ(raft_propose(node, "w", 1, NULL, NULL), RAFT_ERR_NOT_LEADER);
	raft_node_destroy(node);
}

static void
test_proposal_committed_outcome(void)
{
	raft_node  *node = make_node(1, 3);
	capture		c;
	raft_message m;
	raft_term	term;
	raft_index	index;

	leader_with_commit(node);
	CHECK_EQ(raft_propose(node, "x", 1, &term, &index), RAFT_OK);
	collect(node, &c, true);
	m = msg(RAFT_MSG_APPEND_RESP, 3, 1, 1);
	m.index = index;
	step_ok(node, &m);
	collect(node, &c, true);
	CHECK_EQ(c.num_outcomes, 1);
	CHECK(c.outcomes[0].index == index && c.outcomes[0].term == term &&
		  c.outcomes[0].outcome == RAFT_OUTCOME_COMMITTED);
	raft_node_destroy(node);
}

static void
test_stale_persist_confirmation_ignored(void)
{
	raft_node  *node = make_node(1, 3);
	raft_message m;
	raft_ready	rd;
	raft_entry	ents[3];
	raft_term	first_term;
	raft_index	first_index;

	ents[0] = entry(1, 1, "a");
	ents[1] = entry(1, 2, "b");
	ents[2] = entry(1, 3, "c");
	m = msg(RAFT_MSG_APPEND, 2, 1, 1);
	m.entries = ents;
	m.num_entries = 3;
	step_ok(node, &m);
	raft_ready_get(node, &rd);
	CHECK_EQ(rd.num_entries, 3);
	first_term = rd.persist_term;
	first_index = rd.persist_index;
	raft_advance(node, &rd);

	/* before that write is durable, a new leader replaces index 2.. */
	ents[0] = entry(2, 2, "x");
	m = msg(RAFT_MSG_APPEND, 3, 1, 2);
	m.index = 1;
	m.log_term = 1;
	m.entries = ents;
	m.num_entries = 1;
	step_ok(node, &m);
	raft_ready_get(node, &rd);
	CHECK(rd.num_entries == 1 && rd.entries[0].index == 2 && rd.entries[0].term == 2);
	raft_advance(node, &rd);

	/* the first confirmation names entries that are gone: no effect */
	raft_persisted(node, first_term, first_index);
	CHECK_EQ(status_of(node).stable, 0);
	raft_persisted(node, 2, 2);
	CHECK_EQ(status_of(node).stable, 2);
	raft_node_destroy(node);
}

static void
test_stale_leader_learns_new_term(void)
{
	raft_node  *node = make_node(1, 3);
	raft_node  *follower;
	raft_conf_state conf;
	static const raft_node_id ids[] = {1, 2, 3};
	raft_hard_state hs = {3, 0, 0};
	raft_message m;
	capture		c;
	const cap_msg *cm;

	conf_of(&conf, ids, 3, NULL, 0);
	follower = make_node_full(2, &conf, &hs, NULL, 0, 0, 0);
	m = msg(RAFT_MSG_APPEND, 1, 2, 2);
	step_ok(follower, &m);
	collect(follower, &c, true);
	cm = find_msg(&c, RAFT_MSG_APPEND_RESP, 1);
	CHECK(cm != NULL && cm->m.term == 3);
	raft_node_destroy(follower);

	elect_node1(node, true);
	m = msg(RAFT_MSG_APPEND_RESP, 2, 1, 3);
	step_ok(node, &m);
	CHECK_EQ(status_of(node).role, RAFT_FOLLOWER);
	CHECK_EQ(status_of(node).term, 3);
	raft_node_destroy(node);
}

static void
test_conf_change_codec(void)
{
	raft_conf_change cc;
	raft_conf_change out;
	static const raft_node_id voters[] = {1, 2, 3};
	uint8_t		buf[2048];
	size_t		len;

	memset(&cc, 0, sizeof(cc));
	cc.type = RAFT_CONF_ADD_LEARNER;
	cc.node_id = 4;
	conf_of(&cc.result, voters, 3, NULL, 0);
	cc.result.learners[cc.result.num_learners++] = 4;
	cc.result.removed[cc.result.num_removed++] = 9;
	len = raft_conf_change_encode(&cc, buf);
	CHECK_EQ(len, raft_conf_change_encoded_size(&cc));
	CHECK_EQ(raft_conf_change_decode(buf, len, &out), RAFT_OK);
	CHECK(out.type == cc.type && out.node_id == 4);
	CHECK(memcmp(&out.result, &cc.result, sizeof(cc.result)) == 0);
	CHECK_EQ(raft_conf_change_decode(buf, len - 1, &out), RAFT_ERR_INVALID);
	buf[0] = 99;
	CHECK_EQ(raft_conf_change_decode(buf, len, &out), RAFT_ERR_INVALID);
}

/* A toy durable store: what a restart may rely on. */
typedef struct toy_store
{
	raft_entry	entries[16];
	uint8_t		data[16][256];
	int			count;
	raft_hard_state hs;
} toy_store;

static void
drain_to_store(raft_node *node, toy_store *store)
{
	int			guard = 0;

	while (raft_has_ready(node) && guard++ < 32)
	{
		raft_ready	rd;
		size_t		i;

		raft_ready_get(node, &rd);
		for (i = 0; i < rd.num_entries; i++)
		{
			/* truncate from the first index, then append */
			int			slot = (int) rd.entries[i].index - 1;

			if (slot < 0 || slot >= 16 || rd.entries[i].len > 256)
				continue;
			store->entries[slot] = rd.entries[i];
			memcpy(store->data[slot], rd.entries[i].data, rd.entries[i].len);
			store->entries[slot].data = store->data[slot];
			store->count = slot + 1;
		}
		if (rd.hard_state_changed)
			store->hs = rd.hard_state;
		raft_advance(node, &rd);
		if (rd.must_persist)
			raft_persisted(node, rd.persist_term, rd.persist_index);
	}
}

static void
test_restart_restores_membership_and_commit(void)
{
	raft_node  *node = make_node(1, 1);
	raft_node  *again;
	toy_store	store;
	raft_conf_state conf;
	static const raft_node_id ids[] = {1};
	raft_status st;
	capture		c;

	memset(&store, 0, sizeof(store));
	CHECK_EQ(raft_campaign(node), RAFT_OK);
	drain_to_store(node, &store);
	CHECK_EQ(raft_propose(node, "a", 1, NULL, NULL), RAFT_OK);
	CHECK_EQ(raft_propose_conf_change(node, RAFT_CONF_ADD_LEARNER, 4, NULL, NULL), RAFT_OK);
	drain_to_store(node, &store);
	st = status_of(node);
	CHECK(raft_conf_is_learner(&st.conf, 4));
	raft_node_destroy(node);
	CHECK_EQ(store.count, 3);
	CHECK_EQ(store.hs.commit, 3);

	/* restart from the store: commit survives, entries come back to apply */
	conf_of(&conf, ids, 1, NULL, 0);
	again = make_node_full(1, &conf, &store.hs, store.entries, store.count, 0, 0);
	st = status_of(again);
	CHECK_EQ(st.commit, 3);
	CHECK_EQ(st.applied, 0);
	CHECK_EQ(st.role, RAFT_FOLLOWER);
	CHECK(!raft_conf_is_learner(&st.conf, 4));
	collect(again, &c, true);
	CHECK_EQ(c.num_committed, 3);
	st = status_of(again);
	CHECK(raft_conf_is_learner(&st.conf, 4));
	/* it wins the next election and keeps the log */
	CHECK_EQ(raft_campaign(again), RAFT_OK);
	collect(again, &c, true);
	st = status_of(again);
	CHECK(st.role == RAFT_LEADER && st.term == 2 && st.last_index == 4);
	raft_node_destroy(again);
}

static void
test_flow_control_inflight_cap(void)
{
	raft_node  *node;
	raft_message m;
	capture		c;
	const cap_msg *cm;
	int			i;

	test_max_inflight = 2;
	test_max_entries = 1;
	node = make_node(1, 3);
	test_max_inflight = 0;
	test_max_entries = 0;
	leader_with_commit(node);
	for (i = 0; i < 5; i++)
		CHECK_EQ(raft_propose(node, "e", 1, NULL, NULL), RAFT_OK);
	collect(node, &c, true);
	/* node 2 replicates: two single-entry appends fill its pipeline */
	CHECK_EQ(count_msgs(&c, RAFT_MSG_APPEND), 2);
	cm = find_msg(&c, RAFT_MSG_APPEND, 2);
	CHECK(cm != NULL && cm->m.num_entries == 1 && cm->first.index == 2);
	/* node 3 never answered its probe: nothing more for it */
	CHECK(find_msg(&c, RAFT_MSG_APPEND, 3) == NULL);

	m = msg(RAFT_MSG_APPEND_RESP, 2, 1, 1);
	m.index = 2;
	step_ok(node, &m);
	collect(node, &c, true);
	/* one slot freed: exactly one more append, carrying the new commit */
	cm = find_msg(&c, RAFT_MSG_APPEND, 2);
	CHECK(cm != NULL && cm->first.index == 4 && cm->m.commit == 2);
	CHECK_EQ(count_msgs(&c, RAFT_MSG_APPEND), 1);
	raft_node_destroy(node);
}

static void
test_outcome_unknown_after_snapshot(void)
{
	raft_node  *node = make_node(1, 3);
	raft_message m;
	capture		c;
	raft_term	term;
	raft_index	index;
	static const raft_node_id ids[] = {1, 2, 3};

	leader_with_commit(node);
	CHECK_EQ(raft_propose(node, "x", 1, &term, &index), RAFT_OK);
	collect(node, &c, true);

	/* deposed, and then a snapshot covers our proposal: we cannot know */
	m = msg(RAFT_MSG_SNAPSHOT, 2, 1, 2);
	m.snapshot.meta.index = 5;
	m.snapshot.meta.term = 2;
	conf_of(&m.snapshot.meta.conf, ids, 3, NULL, 0);
	m.snapshot.data = (const uint8_t *) "s";
	m.snapshot.len = 1;
	m.snapshot.done = true;
	step_ok(node, &m);
	collect(node, &c, true);
	CHECK(c.has_snapshot);
	CHECK_EQ(c.num_outcomes, 1);
	CHECK(c.outcomes[0].index == index && c.outcomes[0].term == term &&
		  c.outcomes[0].outcome == RAFT_OUTCOME_UNKNOWN);
	raft_node_destroy(node);
}

static void
test_max_uncommitted_bytes(void)
{
	raft_conf_state conf;
	static const raft_node_id ids[] = {1, 2, 3};
	raft_config cfg;
	raft_restore rs;
	raft_node  *node = NULL;

	conf_of(&conf, ids, 3, NULL, 0);
	raft_config_init(&cfg);
	cfg.id = 1;
	cfg.cluster_id = CID;
	cfg.max_uncommitted_bytes = 3;
	memset(&rs, 0, sizeof(rs));
	rs.snapshot.conf = conf;
	CHECK_EQ(raft_node_create(&cfg, &rs, &node), RAFT_OK);
	leader_with_commit(node);
	/* one proposal always fits, even if larger than the limit */
	CHECK_EQ(raft_propose(node, "abcd", 4, NULL, NULL), RAFT_OK);
	CHECK_EQ(raft_propose(node, "e", 1, NULL, NULL), RAFT_ERR_BUSY);
	commit_all(node);
	CHECK_EQ(status_of(node).commit, 2);
	CHECK_EQ(raft_propose(node, "ab", 2, NULL, NULL), RAFT_OK);
	CHECK_EQ(raft_propose(node, "c", 1, NULL, NULL), RAFT_OK);
	CHECK_EQ(raft_propose(node, "d", 1, NULL, NULL), RAFT_ERR_BUSY);
	raft_node_destroy(node);
}

static uint64_t fuzz_state;

static uint32_t
fuzz_below(uint32_t bound)
{
	uint64_t	z;

	fuzz_state += UINT64_C(0x9E3779B97F4A7C15);
	z = fuzz_state;
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return (uint32_t) ((z ^ (z >> 31)) % bound);
}

/*
 * Hostile input: well-formed but arbitrary messages, ticks, proposals and
 * persistence confirmations, in any order.  The engine must neither crash
 * nor move term or commit backwards.
 */
static void
test_fuzz_arbitrary_messages(void)
{
	static const raft_node_id ids[] = {1, 2, 3};
	static const raft_node_id senders[] = {2, 3, 4, 9};
	int			round;

	fuzz_state = 12345;
	for (round = 0; round < 200; round++)
	{
		raft_conf_state conf;
		raft_node  *node;
		raft_term	last_term = 0;
		raft_index	last_commit = 0;
		int			i;

		conf_of(&conf, ids, 3, NULL, 0);
		conf.removed[conf.num_removed++] = 9;
		node = make_node_full(1, &conf, NULL, NULL, 0, 0, 0);
		for (i = 0; i < 2000; i++)
		{
			uint32_t	what = fuzz_below(40);
			raft_status st = status_of(node);
			raft_term	near = st.term + fuzz_below(2);

			if (what < 4)
				raft_tick(node);
			else if (what < 8)
				(void) raft_propose(node, "f", 1, NULL, NULL);
			else if (what == 8)
				(void) raft_campaign(node);
			else if (what == 9)
				(void) raft_read_index(node, fuzz_below(100));
			else
			{
				raft_message m;
				raft_entry	ents[3];
				uint32_t	k;
				uint32_t	n = fuzz_below(4);

				/* mostly near our own term, so that answers are not all stale */
				m = msg((raft_message_type) (1 + fuzz_below(RAFT_MSG_TYPE_COUNT - 1)),
						senders[fuzz_below(4)], 1,
						fuzz_below(4) == 0 ? fuzz_below(6) : near);
				m.index = fuzz_below((uint32_t) st.last_index + 3);
				m.log_term = fuzz_below((uint32_t) m.term + 1);
				if (m.log_term > m.term)
					m.log_term = m.term;
				m.commit = fuzz_below(12);
				m.reject = fuzz_below(2) == 1;
				m.reject_hint = fuzz_below(12);
				m.reject_hint_term = fuzz_below(6);
				m.context = fuzz_below(5);
				m.leader_transfer = fuzz_below(4) == 0;
				if (m.type == RAFT_MSG_APPEND)
				{
					for (k = 0; k < n; k++)
					{
						ents[k] = entry(m.log_term + (k == n - 1 ? fuzz_below(2) : 0),
										m.index + 1 + k, "z");
						if (ents[k].term > m.term)
							ents[k].term = m.term;
					}
					m.entries = ents;
					m.num_entries = n;
				}
				if (m.type == RAFT_MSG_SNAPSHOT)
				{
					m.snapshot.meta.index = 1 + fuzz_below(12);
					m.snapshot.meta.term = fuzz_below(6);
					m.snapshot.meta.conf = conf;
					m.snapshot.offset = fuzz_below(3) * 4;
					m.snapshot.data = (const uint8_t *) "abcd";
					m.snapshot.len = 4;
					m.snapshot.done = fuzz_below(3) == 0;
				}
				m.snapshot.done = m.snapshot.done || fuzz_below(8) == 0;
				(void) raft_step(node, &m);
			}
			/* drain; confirm durability sometimes late, sometimes never */
			while (raft_has_ready(node))
			{
				raft_ready	rd;

				raft_ready_get(node, &rd);
				raft_advance(node, &rd);
				if (rd.must_persist && fuzz_below(4) != 0)
					raft_persisted(node, rd.persist_term, rd.persist_index);
			}
			st = status_of(node);
			CHECK(st.term >= last_term);
			CHECK(st.commit >= last_commit);
			CHECK(st.commit <= st.last_index);
			CHECK(st.applied <= st.commit);
			last_term = st.term;
			last_commit = st.commit;
		}
		raft_node_destroy(node);
	}
}

/*
 * Take every ready of a leader (an instant disk), keeping the payload of
 * the last APPEND to node "to" in buf (entries joined by '|'); returns how
 * many entries it carried, -1 if none was sent.
 */
static int
collect_append_to(raft_node *node, raft_node_id to, char *buf, size_t cap)
{
	int			found = -1;
	int			guard = 0;

	buf[0] = '\0';
	while (raft_has_ready(node) && guard++ < 32)
	{
		raft_ready	rd;
		size_t		i;
		size_t		k;

		raft_ready_get(node, &rd);
		for (i = 0; i < rd.num_messages; i++)
		{
			const raft_message *m = &rd.messages[i];

			if (m->type != RAFT_MSG_APPEND || m->to != to)
				continue;
			buf[0] = '\0';
			for (k = 0; k < m->num_entries; k++)
			{
				size_t		used = strlen(buf);

				if (used + m->entries[k].len + 2 > cap)
					break;
				if (k > 0)
					buf[used++] = '|';
				memcpy(buf + used, m->entries[k].data, m->entries[k].len);
				buf[used + m->entries[k].len] = '\0';
			}
			found = (int) m->num_entries;
		}
		raft_advance(node, &rd);
		if (rd.must_persist)
			raft_persisted(node, rd.persist_term, rd.persist_index);
	}
	return found;
}

/*
 * A leader that keeps no applied payload in memory (max_cached_bytes 0)
 * reads the payloads back, exactly once per entry sent, when a lagging
 * follower needs them; a failed read sends nothing and the next heartbeat
 * answer tries again.
 */
static void
test_dropped_payloads_read_back(void)
{
	raft_node  *node;
	raft_message m;
	raft_term	term;
	raft_index	index;
	char		buf[256];
	raft_status st;

	test_read_back = true;
	test_read_fails = false;
	test_num_reads = 0;
	memset(test_store, 0, sizeof(test_store));
	node = make_node(1, 3);
	test_read_back = false;
	leader_with_commit(node);	/* noop at 1, acknowledged by node 2 */
	st = status_of(node);
	CHECK_EQ(raft_propose(node, "alpha", 5, &term, &index), RAFT_OK);
	CHECK_EQ(index, 2);
	CHECK_EQ(raft_propose(node, "beta", 4, &term, &index), RAFT_OK);
	CHECK_EQ(index, 3);
	test_store[2] = "alpha";
	test_store[3] = "beta";
	/* node 2 is replicating: it gets both from memory */
	CHECK_EQ(collect_append_to(node, 2, buf, sizeof(buf)), 2);
	CHECK(strcmp(buf, "alpha|beta") == 0);
	m = msg(RAFT_MSG_APPEND_RESP, 2, 1, st.term);
	m.index = 3;
	step_ok(node, &m);
	(void) collect_append_to(node, 2, buf, sizeof(buf));
	CHECK_EQ(status_of(node).applied, 3);
	CHECK_EQ(test_num_reads, 0);

	/* node 3 answered nothing so far; now it holds the noop only */
	test_read_fails = true;
	m = msg(RAFT_MSG_APPEND_RESP, 3, 1, st.term);
	m.index = 1;
	step_ok(node, &m);
	CHECK_EQ(collect_append_to(node, 3, buf, sizeof(buf)), -1);
	CHECK(test_num_reads >= 1 && test_reads[0] == 2);

	/* the read works again: the next heartbeat answer sends both */
	test_read_fails = false;
	test_num_reads = 0;
	m = msg(RAFT_MSG_HEARTBEAT_RESP, 3, 1, st.term);
	step_ok(node, &m);
	CHECK_EQ(collect_append_to(node, 3, buf, sizeof(buf)), 2);
	CHECK(strcmp(buf, "alpha|beta") == 0);
	CHECK_EQ(test_num_reads, 2);
	CHECK(test_reads[0] == 2 && test_reads[1] == 3);
	raft_node_destroy(node);
}

/*
 * A node may be restored without the payloads of normal entries it has
 * applied, if it can read them back; never without those of unapplied
 * entries or of membership changes.
 */
static void
test_restore_without_applied_payloads(void)
{
	static const raft_node_id ids[] = {1, 2, 3};
	raft_conf_state conf;
	raft_hard_state hs = {3, 0, 2};
	raft_entry	log[3];
	raft_config cfg;
	raft_restore rs;
	raft_node  *node = NULL;
	raft_message m;
	char		buf[256];

	conf_of(&conf, ids, 3, NULL, 0);
	log[0] = entry(1, 1, "one");
	log[1] = entry(2, 2, "two");
	log[2] = entry(3, 3, "three");
	log[0].data = NULL;
	log[1].data = NULL;
	raft_config_init(&cfg);
	cfg.id = 1;
	cfg.cluster_id = CID;
	cfg.election_ticks = 10;
	cfg.heartbeat_ticks = 1;
	memset(&rs, 0, sizeof(rs));
	rs.hard_state = hs;
	rs.snapshot.conf = conf;
	rs.entries = log;
	rs.num_entries = 3;
	rs.applied = 2;
	/* no way to read them back */
	CHECK_EQ(raft_node_create(&cfg, &rs, &node), RAFT_ERR_INVALID);
	cfg.entry_read = test_entry_read;
	/* entry 2 is not applied yet */
	rs.applied = 1;
	CHECK_EQ(raft_node_create(&cfg, &rs, &node), RAFT_ERR_INVALID);
	/* a membership change keeps its payload */
	rs.applied = 2;
	log[1].type = RAFT_ENTRY_CONF_CHANGE;
	CHECK_EQ(raft_node_create(&cfg, &rs, &node), RAFT_ERR_INVALID);
	log[1].type = RAFT_ENTRY_NORMAL;
	CHECK(node == NULL);

	/* as leader, it sends 1 and 2 from storage, 3 (not committed) from memory */
	memset(test_store, 0, sizeof(test_store));
	test_store[1] = "one";
	test_store[2] = "two";
	test_read_fails = false;
	test_num_reads = 0;
	cfg.seed = 42;
	CHECK_EQ(raft_node_create(&cfg, &rs, &node), RAFT_OK);
	if (node == NULL)
		return;
	CHECK_EQ(test_num_reads, 0);
	elect_node1(node, true);
	m = msg(RAFT_MSG_APPEND_RESP, 2, 1, status_of(node).term);
	m.reject = true;
	m.index = 3;
	m.reject_hint = 0;
	step_ok(node, &m);
	CHECK_EQ(collect_append_to(node, 2, buf, sizeof(buf)), 4);
	CHECK(strncmp(buf, "one|two|three|", 14) == 0);
	CHECK_EQ(test_num_reads, 2);
	CHECK(test_reads[0] == 1 && test_reads[1] == 2);
	raft_node_destroy(node);
}

/*
 * raft_propose_take() adopts the caller's buffer: the log entry, the
 * APPEND that carries it and the ready's entries point at it (no copy);
 * refused proposals free it (run under valgrind or ASan to see a leak).
 */
static void
test_propose_take_adopts_buffer(void)
{
	raft_node  *node = make_node(1, 3);
	raft_node  *follower = make_node(2, 3);
	uint8_t    *buf = malloc(6);
	uint8_t    *refused = malloc(4);
	raft_term	term;
	raft_index	index;
	bool		seen_entry = false;
	bool		seen_append = false;
	int			guard = 0;

	memcpy(refused, "nope", 4);
	/* not the leader: refused, and freed by the engine */
	CHECK_EQ(raft_propose_take(follower, refused, 4, &term, &index), RAFT_ERR_NOT_LEADER);
	leader_with_commit(node);
	memcpy(buf, "adopt!", 6);
	CHECK_EQ(raft_propose_take(node, buf, 6, &term, &index), RAFT_OK);
	CHECK_EQ(index, 2);
	while (raft_has_ready(node) && guard++ < 8)
	{
		raft_ready	rd;
		size_t		i;

		raft_ready_get(node, &rd);
		for (i = 0; i < rd.num_entries; i++)
			if (rd.entries[i].index == 2)
				seen_entry = rd.entries[i].data == buf && rd.entries[i].len == 6;
		for (i = 0; i < rd.num_messages; i++)
			if (rd.messages[i].type == RAFT_MSG_APPEND && rd.messages[i].num_entries == 1 &&
				rd.messages[i].entries[0].index == 2)
				seen_append = rd.messages[i].entries[0].data == buf;
		raft_advance(node, &rd);
		if (rd.must_persist)
			raft_persisted(node, rd.persist_term, rd.persist_index);
	}
	CHECK(seen_entry);
	CHECK(seen_append);
	raft_node_destroy(node);
	raft_node_destroy(follower);
}

static const test_case tests[] = {
	{"single_node_commits_only_after_fsync", test_single_node_commits_only_after_fsync},
	{"prevote_then_vote_messages", test_prevote_then_vote_messages},
	{"vote_rules", test_vote_rules},
	{"append_ack_waits_for_persist", test_append_ack_waits_for_persist},
	{"reject_hint_and_truncate", test_reject_hint_and_truncate},
	{"leader_counts_itself_after_persist", test_leader_counts_itself_after_persist},
	{"no_commit_of_old_term_by_counting", test_no_commit_of_old_term_by_counting},
	{"learner_never_counts", test_learner_never_counts},
	{"check_quorum_steps_down", test_check_quorum_steps_down},
	{"wrong_cluster_and_removed_dropped", test_wrong_cluster_and_removed_dropped},
	{"read_index", test_read_index},
	{"leadership_transfer", test_leadership_transfer},
	{"membership_one_at_a_time", test_membership_one_at_a_time},
	{"leader_removes_itself", test_leader_removes_itself},
	{"snapshot_receive_in_chunks", test_snapshot_receive_in_chunks},
	{"snapshot_send_with_backpressure", test_snapshot_send_with_backpressure},
	{"proposal_outcomes_lost", test_proposal_outcomes},
	{"proposal_outcomes_committed", test_proposal_committed_outcome},
	{"stale_persist_confirmation_ignored", test_stale_persist_confirmation_ignored},
	{"stale_leader_learns_new_term", test_stale_leader_learns_new_term},
	{"conf_change_codec", test_conf_change_codec},
	{"restart_restores_membership_and_commit", test_restart_restores_membership_and_commit},
	{"flow_control_inflight_cap", test_flow_control_inflight_cap},
	{"outcome_unknown_after_snapshot", test_outcome_unknown_after_snapshot},
	{"max_uncommitted_bytes", test_max_uncommitted_bytes},
	{"fuzz_arbitrary_messages", test_fuzz_arbitrary_messages},
	{"dropped_payloads_read_back", test_dropped_payloads_read_back},
	{"restore_without_applied_payloads", test_restore_without_applied_payloads},
	{"propose_take_adopts_buffer", test_propose_take_adopts_buffer},
};

int
main(int argc, char **argv)
{
	return run_tests("unit_core", tests, (int) (sizeof(tests) / sizeof(tests[0])),
					 argc > 1 ? argv[1] : NULL);
}
