/*-------------------------------------------------------------------------
 *
 * scenarios.c
 *	  Scripted cluster scenarios run in the simulator: the Raft paper's
 *	  figure 8, an isolated leader, a learner that never catches up, removing
 *	  the leader, snapshot catch-up, leadership transfer, linearizable reads
 *	  and a one-node cluster.
 *
 * Every scenario runs with the simulator's invariant checks on, and also
 * asserts its own expected end state.  Built against a deliberately broken
 * engine (RAFT_BUG_*), at least one scenario must fail: that is how the
 * "teeth" tests know the checks catch the bug.
 *
 *	  scenarios [scenario-name]
 *
 * test/sim/scenarios.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "sim.h"
#include "test_util.h"

static sim *
scripted(int nodes, bool check_quorum, uint64_t seed)
{
	sim_options opts;

	sim_options_default(&opts);
	opts.seed = seed;
	opts.num_nodes = nodes;
	opts.max_nodes = SIM_MAX_NODES;
	opts.manual = true;
	opts.check_quorum = check_quorum;
	opts.max_msg_entries = 1;
	opts.verbose = getenv("SIM_VERBOSE") != NULL;
	return sim_create(&opts);
}

/* Let time pass: every tick, deliver everything and complete every fsync. */
static void
run_ticks(sim *s, int ticks)
{
	int			i;

	for (i = 0; i < ticks && sim_failure(s) == NULL; i++)
	{
		sim_tick_all(s);
		sim_sync_all(s);
		sim_deliver_all(s, 100000);
		sim_sync_all(s);
		sim_deliver_all(s, 100000);
	}
}

static void
settle(sim *s)
{
	int			i;

	for (i = 0; i < 50 && sim_messages_in_flight(s) > 0; i++)
	{
		sim_sync_all(s);
		sim_deliver_all(s, 100000);
	}
	sim_sync_all(s);
}

/* Make node id campaign and deliver messages until it leads. */
static bool
elect(sim *s, int id)
{
	raft_status st;
	int			i;

	sim_campaign(s, id);
	for (i = 0; i < 1000; i++)
	{
		sim_status(s, id, &st);
		if (st.role == RAFT_LEADER)
			return true;
		if (sim_deliver_all(s, 1) == 0)
		{
			sim_sync_all(s);
			if (sim_messages_in_flight(s) == 0)
			{
				sim_status(s, id, &st);
				if (st.role == RAFT_LEADER)
					return true;
				/* a rejected pre-vote taught us a newer term: try again */
				sim_campaign(s, id);
				if (sim_messages_in_flight(s) == 0)
					return false;
			}
		}
	}
	return false;
}

/* Propose on the leader and run until the outcome is known. */
static bool
propose_and_commit(sim *s, int leader, const char *payload, int max_ticks)
{
	raft_term	term;
	raft_index	index;
	raft_outcome outcome;
	int			i;

	if (sim_propose(s, leader, payload, &term, &index) != RAFT_OK)
		return false;
	for (i = 0; i < max_ticks; i++)
	{
		settle(s);
		if (sim_outcome(s, index, term, &outcome))
			return outcome == RAFT_OUTCOME_COMMITTED;
		run_ticks(s, 1);
	}
	return false;
}

static int
wait_for_leader(sim *s, int max_ticks)
{
	int			i;

	for (i = 0; i < max_ticks; i++)
	{
		int			leader = sim_leader(s);

		if (leader != 0)
		{
			raft_status st;

			sim_status(s, leader, &st);
			if (st.commit > 0 && st.last_term == st.term && st.commit == st.last_index)
				return leader;
		}
		run_ticks(s, 1);
	}
	return 0;
}

static void
expect_clean(sim *s)
{
	const char *why = sim_failure(s);

	if (why != NULL)
		printf("    simulator: %s\n", why);
	CHECK(why == NULL);
}

/*
 * Raft paper, figure 8 (five servers).  An entry from an older term that a
 * new leader has replicated to a majority may still be overwritten, so the
 * leader must not count replicas of it to commit it.  A build that does
 * (RAFT_BUG_COMMIT_OLD_TERM) is caught here by the simulator's checks.
 */
static void
scenario_figure8(void)
{
	sim		   *s = scripted(5, false, 8);
	raft_status st;
	int			i;

	CHECK(elect(s, 1));
	settle(s);

	/* (a) S1 leads term t1 and gets index 2 onto S2 only */
	sim_isolate(s, 1);
	sim_set_link(s, 1, 2, true);
	sim_set_link(s, 2, 1, true);
	CHECK(sim_propose(s, 1, "from-S1", NULL, NULL) == RAFT_OK);
	settle(s);
	sim_status(s, 2, &st);
	CHECK_EQ(st.last_index, 2);

	/* (b) S1 crashes; S5 wins with S3, S4 and writes index 2 alone */
	sim_crash(s, 1);
	sim_heal_links(s);
	sim_isolate(s, 2);
	sim_campaign(s, 5);
	for (i = 0; i < 200; i++)
	{
		sim_status(s, 5, &st);
		if (st.role == RAFT_LEADER)
			break;
		if (sim_deliver_all(s, 1) == 0)
		{
			sim_campaign(s, 5);
			sim_sync_all(s);
		}
	}
	CHECK_EQ(st.role, RAFT_LEADER);
	sim_drop_all(s);
	sim_sync_all(s);
	sim_drop_all(s);
	sim_crash(s, 5);

	/*
	 * (c) S1 returns and wins with S2, S3.  S2 gets S1's new-term entry;
	 * S3 gets only the old index 2, one message at a time.  Index 2 is now
	 * on a majority (S1, S2, S3) but must not count as committed.
	 */
	sim_heal_links(s);
	sim_isolate(s, 4);
	sim_isolate(s, 5);
	sim_restart(s, 1);
	CHECK(elect(s, 1));
	sim_sync_all(s);
	CHECK(sim_deliver_one(s, 1, 2));	/* probe + S1's noop */
	sim_sync_all(s);
	CHECK(sim_deliver_one(s, 2, 1));	/* S2 acknowledges it */
	CHECK(sim_deliver_one(s, 1, 3));	/* probe + noop: S3 rejects */
	sim_sync_all(s);
	CHECK(sim_deliver_one(s, 3, 1));
	sim_sync_all(s);
	CHECK(sim_deliver_one(s, 1, 3));	/* old index 2 alone */
	sim_sync_all(s);
	CHECK(sim_deliver_one(s, 3, 1));	/* S3 acknowledges index 2 */
	sim_sync_all(s);
	sim_status(s, 3, &st);
	CHECK_EQ(st.last_index, 2);
	sim_status(s, 1, &st);
	/* the correct engine does not count replicas of the old entry */
	CHECK_EQ(st.commit, 1);
	sim_drop_all(s);
	sim_crash(s, 1);

	/* (d) S5 returns and wins with S3, S4: it overwrites index 2 */
	sim_heal_links(s);
	sim_isolate(s, 1);
	sim_restart(s, 5);
	CHECK(elect(s, 5));
	settle(s);
	sim_status(s, 5, &st);
	CHECK_EQ(st.role, RAFT_LEADER);
	CHECK(propose_and_commit(s, 5, "after", 50));

	/* everyone converges once S1 is back */
	sim_heal_links(s);
	sim_restart(s, 1);
	run_ticks(s, 30);
	CHECK_EQ(sim_applied(s, 1), sim_applied(s, 5));
	expect_clean(s);
	sim_destroy(s);
}

/* A leader cut off from the others steps down; its write is lost, honestly. */
static void
scenario_isolated_leader(void)
{
	sim		   *s = scripted(3, true, 11);
	raft_term	old_term;
	raft_index	old_index;
	raft_outcome outcome;
	raft_status st;
	int			leader;
	int			other;

	leader = wait_for_leader(s, 100);
	CHECK(leader != 0);
	sim_isolate(s, leader);
	CHECK_EQ(sim_propose(s, leader, "doomed", &old_term, &old_index), RAFT_OK);
	run_ticks(s, 40);
	sim_status(s, leader, &st);
	/* check-quorum: it noticed it lost the majority */
	CHECK(st.role != RAFT_LEADER);
	other = wait_for_leader(s, 100);
	CHECK(other != 0 && other != leader);
	CHECK(propose_and_commit(s, other, "survivor", 50));

	sim_heal_links(s);
	run_ticks(s, 40);
	CHECK(sim_outcome(s, old_index, old_term, &outcome));
	CHECK_EQ(outcome, RAFT_OUTCOME_LOST);
	CHECK_EQ(sim_applied(s, leader), sim_applied(s, other));
	expect_clean(s);
	sim_destroy(s);
}

/* A learner that never catches up never counts toward a commit. */
static void
scenario_learner_never_counts(void)
{
	sim		   *s = scripted(3, false, 12);
	int			leader;
	raft_status st;
	raft_term	term;
	raft_index	index;
	raft_outcome outcome;
	int			i;
	int			a;
	int			b;

	leader = wait_for_leader(s, 100);
	CHECK(leader != 0);
	CHECK_EQ(sim_add_node(s, 4), RAFT_OK);
	CHECK_EQ(sim_conf_change(s, leader, RAFT_CONF_ADD_LEARNER, 4), RAFT_OK);
	run_ticks(s, 5);
	sim_status(s, leader, &st);
	CHECK(raft_conf_is_learner(&st.conf, 4));
	CHECK_EQ(sim_applied(s, 4), sim_applied(s, leader));

	/* the learner is cut off: commits go on without it */
	sim_isolate(s, 4);
	CHECK(propose_and_commit(s, leader, "without-learner", 20));
	CHECK(sim_applied(s, 4) < sim_applied(s, leader));

	/* both other voters down, learner back: nothing may commit */
	sim_heal_links(s);
	a = leader == 1 ? 2 : 1;
	b = leader == 3 ? 2 : 3;
	sim_crash(s, a);
	sim_crash(s, b);
	CHECK_EQ(sim_propose(s, leader, "needs-a-voter", &term, &index), RAFT_OK);
	for (i = 0; i < 5; i++)
	{
		settle(s);
		sim_tick(s, leader);
		sim_tick(s, 4);
	}
	settle(s);
	sim_status(s, leader, &st);
	CHECK(st.commit < index);
	CHECK(!sim_outcome(s, index, term, &outcome));
	CHECK(sim_applied(s, 4) < index);

	/* one voter back: now it commits */
	sim_restart(s, a);
	run_ticks(s, 30);
	leader = wait_for_leader(s, 100);
	CHECK(leader != 0);
	CHECK(propose_and_commit(s, leader, "with-voter", 30));
	expect_clean(s);
	sim_destroy(s);
}

/* Removing the leader: it steps down and the rest carry on. */
static void
scenario_remove_leader(void)
{
	sim		   *s = scripted(3, true, 13);
	int			leader;
	int			next;
	raft_status st;

	leader = wait_for_leader(s, 100);
	CHECK(leader != 0);
	CHECK_EQ(sim_add_node(s, 4), RAFT_OK);
	CHECK_EQ(sim_conf_change(s, leader, RAFT_CONF_ADD_LEARNER, 4), RAFT_OK);
	run_ticks(s, 5);
	CHECK_EQ(sim_conf_change(s, leader, RAFT_CONF_PROMOTE, 4), RAFT_OK);
	run_ticks(s, 5);
	sim_status(s, leader, &st);
	CHECK_EQ(st.conf.num_voters, 4);

	CHECK_EQ(sim_conf_change(s, leader, RAFT_CONF_REMOVE, leader), RAFT_OK);
	run_ticks(s, 5);
	sim_status(s, leader, &st);
	CHECK(st.role != RAFT_LEADER);
	CHECK(!st.is_voter);
	CHECK(raft_conf_is_removed(&st.conf, (raft_node_id) leader));
	next = wait_for_leader(s, 100);
	CHECK(next != 0 && next != leader);
	CHECK(propose_and_commit(s, next, "after-removal", 30));

	/* the removed node cannot campaign, and is ignored if it tries */
	CHECK_EQ(sim_campaign(s, leader), RAFT_ERR_CONF);
	run_ticks(s, 60);
	CHECK_EQ(sim_leader(s), next);
	sim_status(s, next, &st);
	CHECK_EQ(st.conf.num_voters, 3);
	/* ids are never reused */
	CHECK_EQ(sim_conf_change(s, next, RAFT_CONF_ADD_LEARNER, leader), RAFT_ERR_CONF);
	expect_clean(s);
	sim_destroy(s);
}

/* A follower that missed compacted entries catches up by snapshot chunks. */
static void
scenario_snapshot_catch_up(void)
{
	sim		   *s = scripted(3, true, 14);
	int			leader;
	int			lagging;
	int			i;
	raft_status st;
	char		payload[32];

	leader = wait_for_leader(s, 100);
	CHECK(leader != 0);
	lagging = leader == 3 ? 2 : 3;
	sim_crash(s, lagging);
	for (i = 0; i < 30; i++)
	{
		snprintf(payload, sizeof(payload), "entry-%d", i);
		CHECK(propose_and_commit(s, leader, payload, 20));
	}
	settle(s);
	CHECK_EQ(sim_snapshot(s, leader), RAFT_OK);
	sim_status(s, leader, &st);
	CHECK(st.first_index > 20);
	sim_restart(s, lagging);
	run_ticks(s, 40);
	sim_status(s, lagging, &st);
	CHECK(st.snapshot_index > 20);
	CHECK_EQ(sim_applied(s, lagging), sim_applied(s, leader));
	CHECK(propose_and_commit(s, leader, "after-snapshot", 20));
	run_ticks(s, 5);
	CHECK_EQ(sim_applied(s, lagging), sim_applied(s, leader));
	expect_clean(s);
	sim_destroy(s);
}

static void
scenario_leadership_transfer(void)
{
	sim		   *s = scripted(3, true, 15);
	int			leader;
	int			target;
	raft_status before;
	raft_status after;

	leader = wait_for_leader(s, 100);
	CHECK(leader != 0);
	target = leader == 1 ? 2 : 1;
	sim_status(s, leader, &before);
	CHECK_EQ(sim_transfer(s, leader, target), RAFT_OK);
	settle(s);
	CHECK_EQ(sim_leader(s), target);
	sim_status(s, target, &after);
	CHECK_EQ(after.term, before.term + 1);
	CHECK_EQ(sim_propose(s, leader, "old-leader", NULL, NULL), RAFT_ERR_NOT_LEADER);
	CHECK(propose_and_commit(s, target, "new-leader", 20));
	expect_clean(s);
	sim_destroy(s);
}

/* Reads see every write committed before them; a deposed leader serves none. */
static void
scenario_read_index(void)
{
	sim		   *s = scripted(3, true, 16);
	int			leader;
	int			follower;
	int			other;
	raft_index	index;
	bool		failed;
	raft_status st;

	leader = wait_for_leader(s, 100);
	CHECK(leader != 0);
	follower = leader == 1 ? 2 : 1;
	CHECK(propose_and_commit(s, leader, "w1", 20));
	sim_status(s, leader, &st);

	CHECK_EQ(sim_read_index(s, leader, 100), RAFT_OK);
	settle(s);
	CHECK(sim_read_done(s, 100, &index, &failed));
	CHECK(!failed && index >= st.commit);

	CHECK_EQ(sim_read_index(s, follower, 101), RAFT_OK);
	settle(s);
	CHECK(sim_read_done(s, 101, &index, &failed));
	CHECK(!failed && index >= st.commit);

	/* isolated, the old leader cannot confirm its leadership */
	sim_isolate(s, leader);
	CHECK_EQ(sim_read_index(s, leader, 102), RAFT_OK);
	settle(s);
	CHECK(!sim_read_done(s, 102, &index, &failed));
	run_ticks(s, 40);
	other = sim_leader(s);
	CHECK(other != 0 && other != leader);
	CHECK(propose_and_commit(s, other, "w2", 20));
	/* the pending read was failed when the old leader stepped down */
	CHECK(sim_read_done(s, 102, &index, &failed));
	CHECK(failed);
	expect_clean(s);
	sim_destroy(s);
}

/* One node: a write commits only once it is durable on the single disk. */
static void
scenario_single_node(void)
{
	sim		   *s = scripted(1, true, 17);
	raft_term	term;
	raft_index	index;
	raft_outcome outcome;
	raft_status st;

	CHECK(elect(s, 1));
	sim_sync_all(s);
	CHECK_EQ(sim_propose(s, 1, "solo", &term, &index), RAFT_OK);
	sim_status(s, 1, &st);
	CHECK(st.commit < index);
	CHECK(!sim_outcome(s, index, term, &outcome));
	/* crash before the fsync: the write is gone, and nobody was told */
	sim_crash(s, 1);
	sim_restart(s, 1);
	sim_status(s, 1, &st);
	CHECK(st.last_index < index);
	CHECK(elect(s, 1));
	sim_sync_all(s);
	CHECK(propose_and_commit(s, 1, "solo-again", 5));
	expect_clean(s);
	sim_destroy(s);
}

/*
 * A vote must be durable before the candidate hears of it: a voter that
 * crashes before its fsync must not have granted anything, or it could vote
 * again in the same term after restarting and elect a second leader.
 */
static void
scenario_vote_survives_crash(void)
{
	sim		   *s = scripted(3, false, 18);
	raft_status st;

	/* node 1 asks node 3 only; node 3 grants, but its disk is slow */
	sim_isolate(s, 2);
	sim_campaign(s, 1);
	CHECK(sim_deliver_one(s, 1, 3));	/* pre-vote */
	CHECK(sim_deliver_one(s, 3, 1));	/* pre-vote granted */
	sim_sync_node(s, 1);		/* node 1's own vote is durable */
	CHECK(sim_deliver_one(s, 1, 3));	/* vote request */
	sim_deliver_one(s, 3, 1);	/* a grant may only leave after fsync */
	sim_status(s, 1, &st);
	CHECK(st.role == RAFT_CANDIDATE && st.term == 1);

	/* node 3 crashes before its fsync; node 2 campaigns in the same term */
	sim_crash(s, 3);
	sim_restart(s, 3);
	sim_heal_links(s);
	sim_isolate(s, 1);
	CHECK(elect(s, 2));
	sim_status(s, 2, &st);
	CHECK_EQ(st.term, 1);
	settle(s);
	expect_clean(s);
	sim_destroy(s);
}

static const test_case scenarios[] = {
	{"figure8", scenario_figure8},
	{"isolated_leader", scenario_isolated_leader},
	{"learner_never_counts", scenario_learner_never_counts},
	{"remove_leader", scenario_remove_leader},
	{"snapshot_catch_up", scenario_snapshot_catch_up},
	{"leadership_transfer", scenario_leadership_transfer},
	{"read_index", scenario_read_index},
	{"single_node", scenario_single_node},
	{"vote_survives_crash", scenario_vote_survives_crash},
};

int
main(int argc, char **argv)
{
	return run_tests("scenarios", scenarios,
					 (int) (sizeof(scenarios) / sizeof(scenarios[0])),
					 argc > 1 ? argv[1] : NULL);
}
