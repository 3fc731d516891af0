/*-------------------------------------------------------------------------
 *
 * timescan.c
 *	  Event-time range pushdown: a custom scan that reads only the part of a
 *	  stream's TAB+ tree that a WHERE clause on the event time can match.
 *
 * The planner hook looks at a stream's restriction clauses for comparisons
 * of the event-time column (attribute 1) with a value that is constant
 * during the scan (a constant, a parameter, a stable expression):
 * <, <=, =, >=, > in the time type's btree family, either side.  With at
 * least one such bound it offers a ChronicleTimeRangeScan path, cheaper than
 * the sequential scan by the bounds' selectivity.  At execution the bounds
 * are evaluated, converted to time keys (row_time_value_to_key) and handed
 * to the table AM scan (stream_scan_set_range), which descends the tree to
 * the first event in range and stops after the last one.
 *
 * Every restriction clause, pushed or not, stays in the plan's qual and is
 * rechecked on each row: the bounds only narrow what is read, so a bound
 * that is wider than the clause (for example after a cross-type conversion)
 * can never return a wrong row.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/nbtree.h"
#include "access/relation.h"
#include "access/tableam.h"
#include "catalog/pg_am.h"
#include "catalog/pg_opfamily.h"
#include "commands/defrem.h"
#include "executor/executor.h"
#include "nodes/extensible.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/restrictinfo.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "am/stream.h"
#include "tabplus/rowcodec.h"

static set_rel_pathlist_hook_type prev_set_rel_pathlist_hook = NULL;
static bool enable_time_range_scan = true;

typedef struct TimeScanState
{
	CustomScanState css;
	List	   *bound_exprs;	/* ExprState per pushed bound */
	List	   *strategies;		/* btree strategy per bound (int) */
	List	   *valtypes;		/* type of each bound value (oid) */
	Oid			timetype;
	TableScanDesc scan;
} TimeScanState;

static Plan *timescan_plan(PlannerInfo *root, RelOptInfo *rel, CustomPath *best_path,
						   List *tlist, List *clauses, List *custom_plans);
static Node *timescan_create_state(CustomScan *cscan);
static void timescan_begin(CustomScanState *node, EState *estate, int eflags);
static TupleTableSlot *timescan_exec(CustomScanState *node);
static void timescan_end(CustomScanState *node);
static void timescan_rescan(CustomScanState *node);

static const CustomPathMethods timescan_path_methods = {
	.CustomName = "ChronicleTimeRangeScan",
	.PlanCustomPath = timescan_plan,
};

static const CustomScanMethods timescan_scan_methods = {
	.CustomName = "ChronicleTimeRangeScan",
	.CreateCustomScanState = timescan_create_state,
};

static const CustomExecMethods timescan_exec_methods = {
	.CustomName = "ChronicleTimeRangeScan",
	.BeginCustomScan = timescan_begin,
	.ExecCustomScan = timescan_exec,
	.EndCustomScan = timescan_end,
	.ReScanCustomScan = timescan_rescan,
};

/*
 * If clause compares the event time with a scan-constant value, return the
 * value expression and the btree strategy as "time <op> value".
 */
static bool
clause_time_bound(Expr *clause, Index relid, Oid timetype, Oid opfamily,
				  Expr **value, int *strategy)
{
	OpExpr	   *op;
	Node	   *left;
	Node	   *right;
	Oid			opno;
	Oid			lefttype;
	Oid			righttype;
	Var		   *var;

	if (!IsA(clause, OpExpr) || list_length(((OpExpr *) clause)->args) != 2)
		return false;
	op = (OpExpr *) clause;
	left = strip_implicit_coercions(linitial(op->args));
	right = strip_implicit_coercions(lsecond(op->args));
	opno = op->opno;

	if (!(IsA(left, Var) && ((Var *) left)->varno == relid &&
		  ((Var *) left)->varattno == 1 && ((Var *) left)->varlevelsup == 0))
	{
		Node	   *tmp = left;

		left = right;
		right = tmp;
		opno = get_commutator(opno);
		if (!OidIsValid(opno))
			return false;
	}
	if (!IsA(left, Var))
		return false;
	var = (Var *) left;
	if (var->varno != relid || var->varattno != 1 || var->varlevelsup != 0)
		return false;
	if (contain_var_clause(right) || contain_volatile_functions(right) ||
		contain_subplans(right))
		return false;
	if (!row_time_value_type_ok(timetype, exprType(right)))
		return false;
	if (!op_in_opfamily(opno, opfamily))
		return false;
	get_op_opfamily_properties(opno, opfamily, false, strategy, &lefttype, &righttype);
	if (lefttype != timetype)
		return false;
	*value = (Expr *) right;
	return true;
}

static void
timescan_set_rel_pathlist(PlannerInfo *root, RelOptInfo *rel, Index rti,
						  RangeTblEntry *rte)
{
	Relation	relation;
	Oid			timetype;
	Oid			opfamily;
	ListCell   *lc;
	List	   *bounds = NIL;
	List	   *pushed = NIL;
	CustomPath *cpath;
	Selectivity sel;
	QualCost	qcost;

	if (prev_set_rel_pathlist_hook)
		prev_set_rel_pathlist_hook(root, rel, rti, rte);

	if (!enable_time_range_scan ||
		rte->rtekind != RTE_RELATION || rte->relkind != RELKIND_RELATION ||
		rel->reloptkind != RELOPT_BASEREL || rel->baserestrictinfo == NIL ||
		rte->tablesample != NULL || !relid_is_stream(rte->relid))
		return;

	relation = relation_open(rte->relid, NoLock);
	timetype = TupleDescAttr(RelationGetDescr(relation), 0)->atttypid;
	relation_close(relation, NoLock);
	opfamily = get_opclass_family(GetDefaultOpClass(timetype, BTREE_AM_OID));

	foreach(lc, rel->baserestrictinfo)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);
		Expr	   *value;
		int			strategy;

		if (rinfo->pseudoconstant)
			continue;
		if (clause_time_bound(rinfo->clause, rel->relid, timetype, opfamily,
							  &value, &strategy))
		{
			bounds = lappend(bounds, list_make2(value, makeInteger(strategy)));
			pushed = lappend(pushed, rinfo);
		}
	}
	if (bounds == NIL)
		return;

	sel = clauselist_selectivity(root, pushed, rel->relid, JOIN_INNER, NULL);
	cost_qual_eval(&qcost, rel->baserestrictinfo, root);

	cpath = makeNode(CustomPath);
	cpath->path.pathtype = T_CustomScan;
	cpath->path.parent = rel;
	cpath->path.pathtarget = rel->reltarget;
	cpath->path.param_info = NULL;
	cpath->path.parallel_aware = false;
	cpath->path.parallel_safe = false;
	cpath->path.parallel_workers = 0;
	cpath->path.rows = rel->rows;
	/* a descent of a few pages, then the matching fraction of the leaves */
	cpath->path.startup_cost = qcost.startup + 4 * random_page_cost;
	cpath->path.total_cost = cpath->path.startup_cost +
		sel * (seq_page_cost * rel->pages +
			   (cpu_tuple_cost + qcost.per_tuple) * rel->tuples);
	cpath->path.pathkeys = NIL;
	cpath->flags = 0;
	cpath->custom_paths = NIL;
	cpath->custom_private = bounds;
	cpath->methods = &timescan_path_methods;
	add_path(rel, &cpath->path);
}

static Plan *
timescan_plan(PlannerInfo *root, RelOptInfo *rel, CustomPath *best_path,
			  List *tlist, List *clauses, List *custom_plans)
{
	CustomScan *cscan = makeNode(CustomScan);
	List	   *exprs = NIL;
	List	   *strategies = NIL;
	ListCell   *lc;

	foreach(lc, best_path->custom_private)
	{
		List	   *bound = lfirst(lc);

		exprs = lappend(exprs, linitial(bound));
		strategies = lappend_int(strategies, intVal(lsecond(bound)));
	}
	cscan->scan.plan.targetlist = tlist;
	cscan->scan.plan.qual = extract_actual_clauses(clauses, false);
	cscan->scan.scanrelid = rel->relid;
	cscan->flags = best_path->flags;
	cscan->custom_plans = NIL;
	cscan->custom_exprs = exprs;
	cscan->custom_private = list_make1(strategies);
	cscan->custom_scan_tlist = NIL;
	cscan->methods = &timescan_scan_methods;
	return &cscan->scan.plan;
}

static Node *
timescan_create_state(CustomScan *cscan)
{
	TimeScanState *state = palloc0(sizeof(TimeScanState));

	NodeSetTag(state, T_CustomScanState);
	state->css.methods = &timescan_exec_methods;
	return (Node *) state;
}

static void
timescan_begin(CustomScanState *node, EState *estate, int eflags)
{
	TimeScanState *state = (TimeScanState *) node;
	CustomScan *cscan = (CustomScan *) node->ss.ps.plan;
	ListCell   *lc;

	state->bound_exprs = ExecInitExprList(cscan->custom_exprs, &node->ss.ps);
	state->strategies = linitial(cscan->custom_private);
	state->valtypes = NIL;
	foreach(lc, cscan->custom_exprs)
		state->valtypes = lappend_oid(state->valtypes, exprType(lfirst(lc)));
	state->timetype = TupleDescAttr(RelationGetDescr(node->ss.ss_currentRelation), 0)->atttypid;
	state->scan = NULL;
}

/* Evaluate the bounds and start the range scan. */
static void
timescan_start(TimeScanState *state)
{
	ExprContext *econtext = state->css.ss.ps.ps_ExprContext;
	bool		has_lo = false;
	bool		has_hi = false;
	bool		empty = false;
	int64		lo = PG_INT64_MIN;
	int64		hi = PG_INT64_MAX;
	ListCell   *le;
	ListCell   *ls;
	ListCell   *lt;

	forthree(le, state->bound_exprs, ls, state->strategies, lt, state->valtypes)
	{
		bool		isnull;
		Datum		value = ExecEvalExprSwitchContext(lfirst(le), econtext, &isnull);
		int64		key;
		int64		blo = PG_INT64_MIN;
		int64		bhi = PG_INT64_MAX;

		if (isnull)
		{
			/* a comparison with NULL is never true */
			empty = true;
			continue;
		}
		key = row_time_value_to_key(state->timetype, lfirst_oid(lt), value);
		switch (lfirst_int(ls))
		{
			case BTLessStrategyNumber:
				if (key == PG_INT64_MIN)
					empty = true;
				else
					bhi = key - 1;
				break;
			case BTLessEqualStrategyNumber:
				bhi = key;
				break;
			case BTEqualStrategyNumber:
				blo = bhi = key;
				break;
			case BTGreaterEqualStrategyNumber:
				blo = key;
				break;
			case BTGreaterStrategyNumber:
				if (key == PG_INT64_MAX)
					empty = true;
				else
					blo = key + 1;
				break;
		}
		if (blo > PG_INT64_MIN)
		{
			has_lo = true;
			lo = Max(lo, blo);
		}
		if (bhi < PG_INT64_MAX)
		{
			has_hi = true;
			hi = Min(hi, bhi);
		}
	}

	state->scan = table_beginscan(state->css.ss.ss_currentRelation,
								  state->css.ss.ps.state->es_snapshot, 0, NULL);
	stream_scan_set_range(state->scan, has_lo, lo, has_hi, hi, empty);
}

static TupleTableSlot *
timescan_next(ScanState *node)
{
	TimeScanState *state = (TimeScanState *) node;
	TupleTableSlot *slot = node->ss_ScanTupleSlot;

	if (state->scan == NULL)
		timescan_start(state);
	if (table_scan_getnextslot(state->scan, ForwardScanDirection, slot))
		return slot;
	return NULL;
}

static bool
timescan_recheck(ScanState *node, TupleTableSlot *slot)
{
	return true;
}

static TupleTableSlot *
timescan_exec(CustomScanState *node)
{
	return ExecScan(&node->ss, timescan_next, timescan_recheck);
}

static void
timescan_end(CustomScanState *node)
{
	TimeScanState *state = (TimeScanState *) node;

	if (state->scan)
		table_endscan(state->scan);
	state->scan = NULL;
}

static void
timescan_rescan(CustomScanState *node)
{
	/* parameters may have changed: re-evaluate the bounds on the next row */
	timescan_end(node);
}

void
timescan_install_hooks(void)
{
	DefineCustomBoolVariable("chronicle_raft.enable_time_range_scan",
							 "Lets the planner read only the event-time range a WHERE clause selects.",
							 "Off makes every stream scan read the whole stream.",
							 &enable_time_range_scan, true, PGC_USERSET, 0,
							 NULL, NULL, NULL);
	RegisterCustomScanMethods(&timescan_scan_methods);
	prev_set_rel_pathlist_hook = set_rel_pathlist_hook;
	set_rel_pathlist_hook = timescan_set_rel_pathlist;
}
