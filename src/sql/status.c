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
#include "utils/timestamp.h"

#include "raft/raft.h"
#include "worker/cluster.h"

PG_FUNCTION_INFO_V1(chronicle_status);
PG_FUNCTION_INFO_V1(chronicle_nodes);
PG_FUNCTION_INFO_V1(chronicle_read_barrier);
PG_FUNCTION_INFO_V1(chronicle_add_node);
PG_FUNCTION_INFO_V1(chronicle_remove_node);
PG_FUNCTION_INFO_V1(chronicle_transfer_leadership);

Datum
chronicle_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[9];
	bool		nulls[9] = {false, false, false, false, false, false, false, false, false};
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
	values[8] = CStringGetTextDatum(cs.apply_error);
	nulls[8] = cs.apply_error[0] == '\0';
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* chronicle.nodes: every member as this node sees it */
Datum
chronicle_nodes(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ClusterStatus cs;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (!cluster_enabled())
	{
		Datum		values[6];
		bool		nulls[6] = {false, true, false, false, true, true};

		values[0] = Int64GetDatum(chronicle_node_id);
		values[2] = CStringGetTextDatum("single");
		values[3] = BoolGetDatum(true);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		return (Datum) 0;
	}
	queue_read_status(&cs);
	for (i = 0; i < cs.nmembers; i++)
	{
		MemberStatus *m = &cs.members[i];
		Datum		values[6];
		bool		nulls[6] = {false, false, false, false, false, false};
		const char *role;

		if (m->id == cs.leader_id)
			role = "leader";
		else if (!m->voter)
			role = "learner";
		else
			role = "follower";
		if (m->id != (uint64) chronicle_node_id && !m->connected)
			role = "unreachable";
		values[0] = Int64GetDatum((int64) m->id);
		values[1] = CStringGetTextDatum(m->address);
		values[2] = CStringGetTextDatum(role);
		values[3] = BoolGetDatum(m->voter);
		values[4] = Int64GetDatum((int64) m->match_index);
		nulls[4] = !m->has_match;
		values[5] = TimestampTzGetDatum(m->last_contact);
		nulls[5] = m->last_contact == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* chronicle.read_barrier(): makes the reads that follow linearizable */
Datum
chronicle_read_barrier(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64((int64) queue_read_barrier());
}

/*
 * Membership commands travel through the Raft log like replicated DDL (a
 * DDL chunk whose search_path is MEMBERSHIP_MARKER); every node checks them
 * against the same replicated state, and the leader carries them out with
 * one-at-a-time Raft configuration changes (worker.c).
 */
static void
submit_membership(const char *command)
{
	StringInfoData buf;
	uint16		marker = 0xFFFF;
	uint32		len;

	if (!cluster_enabled())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cluster membership functions need a replicated server"),
				 errhint("Set chronicle_raft.initial_cluster on every member first.")));
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, (char *) &marker, sizeof(marker));
	len = strlen(MEMBERSHIP_MARKER);
	appendBinaryStringInfo(&buf, (char *) &len, sizeof(len));
	appendBinaryStringInfo(&buf, MEMBERSHIP_MARKER, len);
	len = strlen(command);
	appendBinaryStringInfo(&buf, (char *) &len, sizeof(len));
	appendBinaryStringInfo(&buf, command, len);
	queue_submit_and_wait(buf.data, buf.len, true);
}

/*
 * Membership changes are carried out one at a time.  Refuse a new one while
 * the previous is under way (this node's view; the log serializes the rare
 * race), except removing the node being added: that cancels the addition
 * of a server that never comes up.
 */
static void
check_no_change_in_progress(int32 id)
{
	ClusterStatus cs;

	if (!cluster_enabled())
		return;
	queue_read_status(&cs);
	if (cs.running && cs.changing_node != 0 && cs.changing_node != (uint64) id)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("another membership change is in progress (node %llu)",
						(unsigned long long) cs.changing_node),
				 errhint("Wait until chronicle.nodes shows node %llu voting (or gone) and retry; "
						 "an added node that never comes up can be taken out with chronicle.remove_node(%llu).",
						 (unsigned long long) cs.changing_node,
						 (unsigned long long) cs.changing_node)));
}

static void
check_node_id(int32 id)
{
	if (id < 1 || id > 1000000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("node id %d is out of range", id),
				 errhint("Node ids are between 1 and 1000000.")));
}

Datum
chronicle_add_node(PG_FUNCTION_ARGS)
{
	int32		id = PG_GETARG_INT32(0);
	char	   *address = text_to_cstring(PG_GETARG_TEXT_PP(1));
	ClusterMember m;
	char	   *err = NULL;
	char	   *spec;

	check_node_id(id);
	spec = psprintf("%d=%s", id, address);
	if (cluster_parse_members(spec, &m, 1, &err) != 1 || strchr(address, ',') || strchr(address, ' '))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not a host:port address", address),
				 errhint("Pass the new server's chronicle_raft.listen_address, e.g. '127.0.0.1:7004'.")));
	check_no_change_in_progress(0);
	submit_membership(psprintf("add %d %s", id, address));
	PG_RETURN_VOID();
}

Datum
chronicle_remove_node(PG_FUNCTION_ARGS)
{
	int32		id = PG_GETARG_INT32(0);

	check_node_id(id);
	check_no_change_in_progress(id);
	submit_membership(psprintf("remove %d", id));
	PG_RETURN_VOID();
}

Datum
chronicle_transfer_leadership(PG_FUNCTION_ARGS)
{
	int32		id = PG_GETARG_INT32(0);

	check_node_id(id);
	submit_membership(psprintf("transfer %d", id));
	PG_RETURN_VOID();
}
