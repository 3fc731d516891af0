/*-------------------------------------------------------------------------
 *
 * status.c
 *	  chronicle.status(): this node's view of the Raft cluster.
 *
 * Reads what the worker publishes in shared memory after every loop; a
 * server without a cluster reports itself as the leader of a cluster of
 * one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "raft/raft.h"
#include "worker/cluster.h"

PG_FUNCTION_INFO_V1(chronicle_status);

Datum
chronicle_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[8];
	bool		nulls[8] = {false, false, false, false, false, false, false, false};
	ClusterStatus cs;
	const char *role;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	if (!cluster_enabled())
	{
		memset(&cs, 0, sizeof(cs));
		cs.node_id = chronicle_node_id;
		cs.leader_id = chronicle_node_id;
		cs.running = false;
		role = "single";
	}
	else
	{
		queue_read_status(&cs);
		if (!cs.running)
			role = "stopped";
		else
			role = raft_role_name((raft_role) cs.role);
		cs.node_id = chronicle_node_id;
	}
	values[0] = Int64GetDatum((int64) cs.node_id);
	values[1] = CStringGetTextDatum(role);
	values[2] = Int64GetDatum((int64) cs.term);
	values[3] = Int64GetDatum((int64) cs.leader_id);
	nulls[3] = cs.leader_id == 0;
	values[4] = Int64GetDatum((int64) cs.commit_index);
	values[5] = Int64GetDatum((int64) cs.applied_index);
	values[6] = Int64GetDatum((int64) cs.last_log_index);
	values[7] = BoolGetDatum(cluster_enabled());
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
