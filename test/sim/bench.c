/*-------------------------------------------------------------------------
 *
 * bench.c
 *	  Micro-benchmark of the Raft engine: committed entries per second in a
 *	  3-node cluster, 100-byte entries, batching on, with an instant
 *	  network and an instant disk (the engine's own cost only).
 *
 * The leader proposes a batch, then every node's ready is processed:
 * messages are stepped straight into their target, every write is
 * confirmed durable at once, and each node compacts its log now and then
 * so that memory stays flat.  The rate is measured on the leader's applied
 * entries.
 *
 *	  bench [entries] [batch]
 *
 * test/sim/bench.c
 *
 *-------------------------------------------------------------------------
 */
#define _POSIX_C_SOURCE 199309L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "raft.h"

#define NODES		3
#define ENTRY_BYTES 100
#define COMPACT_EVERY 20000

static raft_node *nodes[NODES + 1];
static uint64_t applied_count[NODES + 1];
static raft_index last_compact[NODES + 1];

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void
deliver(const raft_message *msgs, size_t count)
{
	size_t		i;

	for (i = 0; i < count; i++)
	{
		if (raft_step(nodes[msgs[i].to], &msgs[i]) != RAFT_OK)
		{
			fprintf(stderr, "bench: raft_step failed\n");
			exit(1);
		}
	}
}

/* Process every node's ready until the cluster is quiet. */
static void
pump(void)
{
	bool		busy = true;
	int			guard = 0;

	while (busy && guard++ < 1000)
	{
		int			id;

		busy = false;
		for (id = 1; id <= NODES; id++)
		{
			raft_ready	rd;

			if (!raft_has_ready(nodes[id]))
				continue;
			busy = true;
			raft_ready_get(nodes[id], &rd);
			/* the "disk" is instant: durable as soon as handed over */
			deliver(rd.messages, rd.num_messages);
			deliver(rd.persist_messages, rd.num_persist_messages);
			applied_count[id] += rd.num_committed;
			raft_advance(nodes[id], &rd);
			if (rd.must_persist)
				raft_persisted(nodes[id], rd.persist_term, rd.persist_index);
		}
	}
}

static void
maybe_compact(int id)
{
	raft_status st;

	raft_get_status(nodes[id], &st);
	if (st.applied >= last_compact[id] + COMPACT_EVERY)
	{
		if (raft_snapshot_taken(nodes[id], st.applied) == RAFT_OK &&
			raft_compact(nodes[id], st.applied) == RAFT_OK)
			last_compact[id] = st.applied;
	}
}

int
main(int argc, char **argv)
{
	long		total = argc > 1 ? atol(argv[1]) : 3000000;
	long		batch = argc > 2 ? atol(argv[2]) : 4096;
	uint8_t		payload[ENTRY_BYTES];
	raft_conf_state conf;
	int			id;
	double		start;
	double		elapsed;
	long		proposed = 0;
	raft_status st;

	memset(&conf, 0, sizeof(conf));
	for (id = 1; id <= NODES; id++)
		conf.voters[conf.num_voters++] = (raft_node_id) id;
	for (id = 1; id <= NODES; id++)
	{
		raft_config cfg;
		raft_restore rs;

		raft_config_init(&cfg);
		cfg.id = (raft_node_id) id;
		cfg.cluster_id = 1;
		cfg.seed = 7;
		cfg.max_msg_entries = 4096;
		cfg.max_msg_bytes = 1024 * 1024;
		memset(&rs, 0, sizeof(rs));
		rs.snapshot.conf = conf;
		if (raft_node_create(&cfg, &rs, &nodes[id]) != RAFT_OK)
		{
			fprintf(stderr, "bench: cannot create node\n");
			return 1;
		}
	}
	raft_campaign(nodes[1]);
	pump();
	raft_get_status(nodes[1], &st);
	if (st.role != RAFT_LEADER)
	{
		fprintf(stderr, "bench: no leader\n");
		return 1;
	}
	memset(payload, 'x', sizeof(payload));

	applied_count[1] = 0;
	start = now_seconds();
	while (applied_count[1] < (uint64_t) total)
	{
		long		k;

		for (k = 0; k < batch && proposed < total; k++, proposed++)
		{
			memcpy(payload, &proposed, sizeof(proposed));
			if (raft_propose(nodes[1], payload, sizeof(payload), NULL, NULL) != RAFT_OK)
			{
				fprintf(stderr, "bench: proposal refused\n");
				return 1;
			}
		}
		pump();
		for (id = 1; id <= NODES; id++)
			maybe_compact(id);
	}
	elapsed = now_seconds() - start;

	printf("bench: %d nodes, %d-byte entries, batch %ld: %llu entries committed in %.3f s\n",
		   NODES, ENTRY_BYTES, batch, (unsigned long long) applied_count[1], elapsed);
	printf("bench: %.0f committed entries/s\n", (double) applied_count[1] / elapsed);
	for (id = 1; id <= NODES; id++)
		raft_node_destroy(nodes[id]);
	return 0;
}
