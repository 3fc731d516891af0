/*-------------------------------------------------------------------------
 *
 * chronicle_raft.c
 *	  Library entry point: registers the WAL resource manager, the
 *	  transaction callbacks and the hooks.
 *
 * The library must be loaded through shared_preload_libraries: the startup
 * process needs the WAL resource manager to replay stream changes, and
 * custom resource managers can only be registered while preloading.  Loading
 * it any other way (CREATE EXTENSION without preloading) is an error that
 * says so.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "am/stream.h"
#include "tabplus/tabplus.h"
#include "worker/cluster.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("chronicle_raft must be loaded via shared_preload_libraries"),
				 errhint("Add chronicle_raft to shared_preload_libraries in postgresql.conf and restart the server.")));

	cluster_define_gucs();
	if (cluster_enabled())
	{
		ClusterMember members[CLUSTER_MAX_MEMBERS];
		char	   *parse_error = NULL;
		int			n = cluster_parse_members(chronicle_initial_cluster, members,
											  CLUSTER_MAX_MEMBERS, &parse_error);
		bool		found = false;
		int			i;

		for (i = 0; i < n; i++)
			if (members[i].id == (uint64) chronicle_node_id)
				found = true;
		if (!found && chronicle_initial_cluster_state == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("chronicle_raft.node_id %d is not a member of chronicle_raft.initial_cluster",
							chronicle_node_id),
					 errhint("List this node as %d=host:port in chronicle_raft.initial_cluster.",
							 chronicle_node_id)));
		if (n > 1 && (chronicle_cluster_secret == NULL || chronicle_cluster_secret[0] == '\0'))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("chronicle_raft.cluster_secret must be set for a cluster of %d nodes", n),
					 errhint("Set the same secret on every node.")));
		if (chronicle_heartbeat_interval * 2 > chronicle_election_timeout)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("chronicle_raft.heartbeat_interval (%d ms) must be at most half of chronicle_raft.election_timeout (%d ms)",
							chronicle_heartbeat_interval, chronicle_election_timeout),
					 errhint("Lower the heartbeat interval or raise the election timeout.")));
		cluster_register_worker();
		/* the insert queue's shared memory only where there is a worker */
		queue_shmem_request();
	}
	tabplus_register_rmgr();
	tabplus_intent_shmem_request();
	staging_register_callbacks();
	guard_install_hooks();
	timescan_install_hooks();
}
