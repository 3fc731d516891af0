/*-------------------------------------------------------------------------
 *
 * guard.c
 *	  Early, precise refusal of what streams do not support.
 *
 * The table AM refuses unsupported callbacks as a backstop, but by then the
 * user has waited for planning or a table rewrite has started, and the
 * message cannot say which statement was wrong.  Here the parse-analysis
 * hook rejects UPDATE, DELETE, MERGE, ON CONFLICT, row locks and
 * TABLESAMPLE on streams anywhere in a query tree (subqueries, CTEs,
 * sublinks), the utility hook rejects indexes, foreign keys from or to a
 * stream, AFTER ROW triggers, table rewrites and ALTER TABLE subcommands
 * that would change the stored format, and the planner hook keeps parallel
 * scans away from streams.  Every refusal is ERRCODE_FEATURE_NOT_SUPPORTED
 * with a hint.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_trigger.h"
#include "commands/defrem.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/plancat.h"
#include "parser/analyze.h"
#include "parser/parsetree.h"
#include "tcop/utility.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "am/stream.h"
#include "access/xact.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "tcop/cmdtag.h"
#include "worker/cluster.h"

static post_parse_analyze_hook_type prev_post_parse_analyze_hook = NULL;
static ProcessUtility_hook_type prev_ProcessUtility_hook = NULL;
static get_relation_info_hook_type prev_get_relation_info_hook = NULL;

#define HINT_APPEND_ONLY "Streams are append-only: use INSERT, COPY or chronicle.insert(), TRUNCATE or DROP TABLE."

static void
refuse(const char *what, Oid relid, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("%s is not supported on stream \"%s\"", what, get_rel_name(relid)),
			 errhint("%s", hint)));
}

static bool
rte_is_stream(RangeTblEntry *rte)
{
	return rte->rtekind == RTE_RELATION && rte->relkind == RELKIND_RELATION &&
		relid_is_stream(rte->relid);
}

static void
guard_query(Query *query)
{
	ListCell   *lc;

	if (query->resultRelation > 0)
	{
		RangeTblEntry *rte = rt_fetch(query->resultRelation, query->rtable);

		if (rte_is_stream(rte))
		{
			switch (query->commandType)
			{
				case CMD_UPDATE:
					refuse("UPDATE", rte->relid, HINT_APPEND_ONLY);
					break;
				case CMD_DELETE:
					refuse("DELETE", rte->relid, HINT_APPEND_ONLY);
					break;
				case CMD_MERGE:
					refuse("MERGE", rte->relid, HINT_APPEND_ONLY);
					break;
				default:
					break;
			}
			if (query->onConflict != NULL)
				refuse("INSERT ... ON CONFLICT", rte->relid,
					   "Streams have no unique constraints; insert plainly.");
		}
	}

	foreach(lc, query->rowMarks)
	{
		RowMarkClause *rc = lfirst_node(RowMarkClause, lc);
		RangeTblEntry *rte = rt_fetch(rc->rti, query->rtable);

		if (rte_is_stream(rte))
			refuse("SELECT ... FOR UPDATE/SHARE", rte->relid,
				   "Stream events are immutable; there is nothing to lock.");
	}
}

static bool
guard_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		guard_query((Query *) node);
		return query_tree_walker((Query *) node, guard_walker, context,
								 QTW_EXAMINE_RTES_BEFORE);
	}
	if (IsA(node, RangeTblEntry))
	{
		RangeTblEntry *rte = (RangeTblEntry *) node;

		if (rte->tablesample != NULL && rte_is_stream(rte))
			refuse("TABLESAMPLE", rte->relid,
				   "Use chronicle.aggregate() over a time range instead.");
		return false;
	}
	return expression_tree_walker(node, guard_walker, context);
}

static void
guard_post_parse_analyze(ParseState *pstate, Query *query, JumbleState *jstate)
{
	if (prev_post_parse_analyze_hook)
		prev_post_parse_analyze_hook(pstate, query, jstate);
	guard_walker((Node *) query, NULL);
}

static Oid
rangevar_stream(RangeVar *rv)
{
	Oid			relid;

	if (rv == NULL)
		return InvalidOid;
	relid = RangeVarGetRelid(rv, NoLock, true);
	return (OidIsValid(relid) && relid_is_stream(relid)) ? relid : InvalidOid;
}

/* Foreign keys referencing a stream, wherever a constraint can appear. */
static void
guard_constraint(Node *node, Oid owner_stream)
{
	Constraint *con;
	Oid			pk;

	if (node == NULL || !IsA(node, Constraint))
		return;
	con = (Constraint *) node;
	if (con->contype != CONSTR_FOREIGN)
		return;
	if (OidIsValid(owner_stream))
		refuse("a foreign key", owner_stream,
			   "Foreign key checks fetch rows by identifier, which streams do not have; validate references before inserting.");
	pk = rangevar_stream(con->pktable);
	if (OidIsValid(pk))
		refuse("a foreign key referencing a stream", pk,
			   "Streams have no unique constraints; reference a regular table.");
}

static bool
create_stmt_makes_stream(CreateStmt *stmt)
{
	const char *am = stmt->accessMethod ? stmt->accessMethod : default_table_access_method;

	return am != NULL && strcmp(am, "chronicle") == 0;
}

static void
guard_create_stmt(CreateStmt *stmt)
{
	ListCell   *lc;
	bool		stream = create_stmt_makes_stream(stmt);

	if (stream && stmt->inhRelations != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a stream cannot inherit from or be a partition of another table"),
				 errhint("Create the stream as a standalone table.")));

	foreach(lc, stmt->tableElts)
	{
		Node	   *elt = lfirst(lc);

		if (IsA(elt, ColumnDef))
		{
			ListCell   *lc2;

			foreach(lc2, ((ColumnDef *) elt)->constraints)
			{
				Constraint *con = lfirst(lc2);

				if (stream && con->contype == CONSTR_FOREIGN)
					ereport(ERROR,
							(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							 errmsg("a foreign key is not supported on a stream"),
							 errhint("Foreign key checks fetch rows by identifier, which streams do not have; validate references before inserting.")));
				guard_constraint((Node *) con, InvalidOid);
			}
		}
		else if (IsA(elt, Constraint))
		{
			if (stream && ((Constraint *) elt)->contype == CONSTR_FOREIGN)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("a foreign key is not supported on a stream"),
						 errhint("Foreign key checks fetch rows by identifier, which streams do not have; validate references before inserting.")));
			guard_constraint(elt, InvalidOid);
		}
	}
	foreach(lc, stmt->constraints)
		guard_constraint(lfirst(lc), InvalidOid);
}

static void
guard_alter_table(AlterTableStmt *stmt)
{
	Oid			relid = rangevar_stream(stmt->relation);
	ListCell   *lc;

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

		if (cmd->subtype == AT_AddConstraint)
			guard_constraint(cmd->def, relid);
		if (cmd->subtype == AT_SetAccessMethod && !OidIsValid(relid) &&
			cmd->name && strcmp(cmd->name, "chronicle") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("converting a table into a stream with SET ACCESS METHOD is not supported"),
					 errhint("Create a stream with CREATE TABLE ... USING chronicle and copy the rows with INSERT ... SELECT.")));
		if (cmd->subtype == AT_AttachPartition && cmd->def && IsA(cmd->def, PartitionCmd))
		{
			Oid			part = rangevar_stream(((PartitionCmd *) cmd->def)->name);

			if (OidIsValid(part))
				refuse("attaching as a partition", part, "Create the stream as a standalone table.");
		}
		if (!OidIsValid(relid))
			continue;

		switch (cmd->subtype)
		{
			case AT_ChangeOwner:
			case AT_SetStatistics:
			case AT_ColumnDefault:
			case AT_CookedColumnDefault:
			case AT_SetNotNull:
			case AT_AddConstraint:
			case AT_DropConstraint:
			case AT_ValidateConstraint:
			case AT_EnableTrig:
			case AT_EnableAlwaysTrig:
			case AT_EnableReplicaTrig:
			case AT_DisableTrig:
			case AT_EnableTrigAll:
			case AT_DisableTrigAll:
			case AT_EnableTrigUser:
			case AT_DisableTrigUser:
				break;
			case AT_SetAccessMethod:
				refuse("ALTER TABLE ... SET ACCESS METHOD", relid,
					   "Copy the events into a new table with INSERT ... SELECT.");
				break;
			case AT_AlterColumnType:
				refuse("ALTER COLUMN ... TYPE", relid,
					   "Create a new stream with the new type and copy the events with INSERT ... SELECT.");
				break;
			case AT_AddColumn:
			case AT_DropColumn:
				refuse("adding or dropping columns", relid,
					   "Create a new stream with the new columns and copy the events with INSERT ... SELECT.");
				break;
			case AT_DropNotNull:
				refuse("ALTER COLUMN ... DROP NOT NULL", relid,
					   "The event time column is always NOT NULL; other columns accept NULL unless declared otherwise.");
				break;
			default:
				refuse("this ALTER TABLE subcommand", relid,
					   "Streams support RENAME, OWNER TO, SET STATISTICS, defaults, CHECK constraints and trigger enabling.");
		}
	}
}

static void
guard_utility(Node *parsetree)
{
	switch (nodeTag(parsetree))
	{
		case T_IndexStmt:
			{
				Oid			relid = rangevar_stream(((IndexStmt *) parsetree)->relation);

				if (OidIsValid(relid))
					refuse("an index (including PRIMARY KEY and UNIQUE)", relid,
						   "Streams are ordered by event time; use chronicle.aggregate() for range aggregates.");
				break;
			}
		case T_CreateStmt:
			guard_create_stmt((CreateStmt *) parsetree);
			break;
		case T_AlterTableStmt:
			guard_alter_table((AlterTableStmt *) parsetree);
			break;
		case T_ClusterStmt:
			{
				Oid			relid = rangevar_stream(((ClusterStmt *) parsetree)->relation);

				if (OidIsValid(relid))
					refuse("CLUSTER", relid, "Streams are always stored in event-time order.");
				break;
			}
		case T_VacuumStmt:
			{
				VacuumStmt *stmt = (VacuumStmt *) parsetree;
				ListCell   *lc;
				bool		full = false;

				foreach(lc, stmt->options)
				{
					DefElem    *opt = lfirst_node(DefElem, lc);

					if (strcmp(opt->defname, "full") == 0 && defGetBoolean(opt))
						full = true;
				}
				if (!full)
					break;
				foreach(lc, stmt->rels)
				{
					VacuumRelation *vrel = lfirst_node(VacuumRelation, lc);
					Oid			relid = rangevar_stream(vrel->relation);

					if (OidIsValid(relid))
						refuse("VACUUM FULL", relid,
							   "Streams are never fragmented by deletes; plain VACUUM and ANALYZE work.");
				}
				break;
			}
		case T_CreateTrigStmt:
			{
				CreateTrigStmt *stmt = (CreateTrigStmt *) parsetree;
				Oid			relid = rangevar_stream(stmt->relation);

				if (OidIsValid(relid) && stmt->row &&
					(stmt->timing & TRIGGER_TYPE_BEFORE) == 0)
					refuse("an AFTER or INSTEAD OF row trigger", relid,
						   "Use a BEFORE ROW trigger or a statement-level trigger.");
				break;
			}
		default:
			break;
	}
}

/*
 * On a replicated server, CREATE TABLE ... USING chronicle, DROP TABLE,
 * RENAME, SET SCHEMA and ALTER TABLE of streams go through the Raft log: the statement text (with the session's
 * search_path) is proposed like a batch and the worker of every node runs
 * it, this one included, in log order with the inserts.  Such DDL is not
 * transactional across the cluster, so it must run outside a transaction
 * block.  Returns true when the statement was replicated.
 */
static bool
replicate_stream_ddl(PlannedStmt *pstmt, const char *queryString,
					 ProcessUtilityContext context, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	CommandTag	tag = CMDTAG_DROP_TABLE;
	const char *what = "DROP TABLE of a replicated stream";
	char	   *ddl;
	const char *search_path;
	StringInfoData buf;
	uint16		marker = 0xFFFF;
	uint32		len;

	if (!cluster_enabled() || am_cluster_worker)
		return false;
	if (IsA(parsetree, CreateStmt) && create_stmt_makes_stream((CreateStmt *) parsetree))
	{
		tag = CMDTAG_CREATE_TABLE;
		what = "CREATE TABLE ... USING chronicle on a replicated server";
	}
	else if (IsA(parsetree, RenameStmt) && ((RenameStmt *) parsetree)->relation &&
			 OidIsValid(rangevar_stream(((RenameStmt *) parsetree)->relation)))
	{
		/* streams are known by name on every node: rename them everywhere */
		tag = CMDTAG_ALTER_TABLE;
		what = "renaming a replicated stream";
	}
	else if (IsA(parsetree, AlterObjectSchemaStmt) &&
			 ((AlterObjectSchemaStmt *) parsetree)->relation &&
			 OidIsValid(rangevar_stream(((AlterObjectSchemaStmt *) parsetree)->relation)))
	{
		tag = CMDTAG_ALTER_TABLE;
		what = "ALTER TABLE ... SET SCHEMA of a replicated stream";
	}
	else if (IsA(parsetree, AlterTableStmt) &&
			 OidIsValid(rangevar_stream(((AlterTableStmt *) parsetree)->relation)))
	{
		/* defaults and constraints must be the same on every node */
		tag = CMDTAG_ALTER_TABLE;
		what = "ALTER TABLE of a replicated stream";
	}
	else if (IsA(parsetree, DropStmt) && ((DropStmt *) parsetree)->removeType == OBJECT_TABLE)
	{
		DropStmt   *stmt = (DropStmt *) parsetree;
		ListCell   *lc;
		int			streams = 0;

		foreach(lc, stmt->objects)
		{
			RangeVar   *rv = makeRangeVarFromNameList((List *) lfirst(lc));

			if (OidIsValid(rangevar_stream(rv)))
				streams++;
		}
		if (streams == 0)
			return false;
		if (streams < list_length(stmt->objects))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot drop replicated streams and other tables in one statement"),
					 errhint("Drop the streams with a DROP TABLE of their own.")));
	}
	else if (IsA(parsetree, TruncateStmt))
	{
		ListCell   *lc;

		foreach(lc, ((TruncateStmt *) parsetree)->relations)
		{
			Oid			relid = rangevar_stream(lfirst_node(RangeVar, lc));

			if (OidIsValid(relid))
				refuse("TRUNCATE of a replicated stream", relid,
					   "Drop and re-create the stream; both are replicated.");
		}
		return false;
	}
	else
		return false;

	if (strcmp(get_database_name(MyDatabaseId), chronicle_database) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("replicated streams live in database \"%s\"", chronicle_database),
				 errhint("Connect to that database, or set chronicle_raft.database.")));
	PreventInTransactionBlock(context == PROCESS_UTILITY_TOPLEVEL, what);

	if (pstmt->stmt_location >= 0 && pstmt->stmt_len > 0)
		ddl = pnstrdup(queryString + pstmt->stmt_location, pstmt->stmt_len);
	else if (pstmt->stmt_location >= 0)
		ddl = pstrdup(queryString + pstmt->stmt_location);
	else
		ddl = pstrdup(queryString);
	search_path = GetConfigOption("search_path", false, false);

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, (char *) &marker, sizeof(marker));
	len = (uint32) strlen(search_path);
	appendBinaryStringInfo(&buf, (char *) &len, sizeof(len));
	appendBinaryStringInfo(&buf, search_path, len);
	len = (uint32) strlen(ddl);
	appendBinaryStringInfo(&buf, (char *) &len, sizeof(len));
	appendBinaryStringInfo(&buf, ddl, len);
	queue_submit_and_wait(buf.data, buf.len, true);

	if (qc)
		SetQueryCompletion(qc, tag, 0);
	return true;
}

static void
guard_process_utility(PlannedStmt *pstmt, const char *queryString,
					  bool readOnlyTree, ProcessUtilityContext context,
					  ParamListInfo params, QueryEnvironment *queryEnv,
					  DestReceiver *dest, QueryCompletion *qc)
{
	guard_utility(pstmt->utilityStmt);
	if (replicate_stream_ddl(pstmt, queryString, context, qc))
		return;
	if (prev_ProcessUtility_hook)
		prev_ProcessUtility_hook(pstmt, queryString, readOnlyTree, context,
								 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

static void
guard_get_relation_info(PlannerInfo *root, Oid relationObjectId,
						bool inhparent, RelOptInfo *rel)
{
	if (prev_get_relation_info_hook)
		prev_get_relation_info_hook(root, relationObjectId, inhparent, rel);
	if (relid_is_stream(relationObjectId))
		rel->rel_parallel_workers = 0;
}

void
guard_install_hooks(void)
{
	prev_post_parse_analyze_hook = post_parse_analyze_hook;
	post_parse_analyze_hook = guard_post_parse_analyze;
	prev_ProcessUtility_hook = ProcessUtility_hook;
	ProcessUtility_hook = guard_process_utility;
	prev_get_relation_info_hook = get_relation_info_hook;
	get_relation_info_hook = guard_get_relation_info;
}
