/*-------------------------------------------------------------------------
 *
 * insert_json.c
 *	  chronicle.insert(stream, events jsonb): insert events given as JSON.
 *
 * Accepts one object or an array of objects keyed by column name.  All
 * events are converted and checked before the first one is inserted, so a
 * bad event inserts nothing.  Conversion is strict: a string is parsed with
 * the column type's input function, a number only fits a numeric column, a
 * boolean only a bool column, a nested object or array only a jsonb column;
 * JSON null is SQL NULL.  Missing columns take their defaults.  Insertion
 * goes through ExecSimpleRelationInsert like a plain INSERT: privileges,
 * BEFORE ROW triggers, NOT NULL and CHECK constraints all apply.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_relation.h"
#include "rewrite/rewriteHandler.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/rel.h"

#include "am/stream.h"

PG_FUNCTION_INFO_V1(chronicle_insert);

static int
column_index(TupleDesc desc, const char *name, int len)
{
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strlen(NameStr(att->attname)) == (size_t) len &&
			strncmp(NameStr(att->attname), name, len) == 0)
			return i;
	}
	return -1;
}

static Datum
json_to_datum(Relation rel, Form_pg_attribute att, JsonbValue *v, int eventno, bool *isnull)
{
	Oid			typinput;
	Oid			typioparam;
	char	   *str;

	*isnull = false;
	if (v->type == jbvNull)
	{
		*isnull = true;
		return (Datum) 0;
	}
	if (att->atttypid == JSONBOID)
		return JsonbPGetDatum(JsonbValueToJsonb(v));

	switch (v->type)
	{
		case jbvString:
			str = pnstrdup(v->val.string.val, v->val.string.len);
			break;
		case jbvNumeric:
			if (att->atttypid != INT2OID && att->atttypid != INT4OID &&
				att->atttypid != INT8OID && att->atttypid != FLOAT4OID &&
				att->atttypid != FLOAT8OID && att->atttypid != NUMERICOID)
				goto mismatch;
			str = DatumGetCString(DirectFunctionCall1(numeric_out,
													  NumericGetDatum(v->val.numeric)));
			break;
		case jbvBool:
			if (att->atttypid != BOOLOID)
				goto mismatch;
			str = v->val.boolean ? "true" : "false";
			break;
		default:
			goto mismatch;
	}
	getTypeInputInfo(att->atttypid, &typinput, &typioparam);
	return OidInputFunctionCall(typinput, str, typioparam, att->atttypmod);

mismatch:
	ereport(ERROR,
			(errcode(ERRCODE_DATATYPE_MISMATCH),
			 errmsg("event %d: JSON %s does not fit column \"%s\" of type %s",
					eventno,
					v->type == jbvNumeric ? "number" :
					v->type == jbvBool ? "boolean" : "object or array",
					NameStr(att->attname), format_type_be(att->atttypid)),
			 errhint("Pass the value as a JSON string in the column type's input format.")));
	return (Datum) 0;
}

typedef struct ParsedEvent
{
	Datum	   *values;
	bool	   *isnull;
	bool	   *given;
} ParsedEvent;

static void
parse_event(Relation rel, JsonbContainer *obj, int eventno, ParsedEvent *ev)
{
	TupleDesc	desc = RelationGetDescr(rel);
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			col = -1;

	ev->values = palloc0(sizeof(Datum) * desc->natts);
	ev->isnull = palloc(sizeof(bool) * desc->natts);
	ev->given = palloc0(sizeof(bool) * desc->natts);
	memset(ev->isnull, true, sizeof(bool) * desc->natts);

	it = JsonbIteratorInit(obj);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			col = column_index(desc, v.val.string.val, v.val.string.len);
			if (col < 0)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("event %d: stream \"%s\" has no column \"%.*s\"",
								eventno, RelationGetRelationName(rel),
								v.val.string.len, v.val.string.val),
						 errhint("Keys must be column names of the stream.")));
			if (TupleDescAttr(desc, col)->attgenerated)
				ereport(ERROR,
						(errcode(ERRCODE_GENERATED_ALWAYS),
						 errmsg("event %d: cannot insert a value into generated column \"%s\"",
								eventno, NameStr(TupleDescAttr(desc, col)->attname)),
						 errhint("Leave the generated column out of the event.")));
		}
		else if (tok == WJB_VALUE)
		{
			ev->values[col] = json_to_datum(rel, TupleDescAttr(desc, col), &v, eventno,
											&ev->isnull[col]);
			ev->given[col] = true;
		}
	}
	if (!ev->given[0])
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("event %d has no event time \"%s\"",
						eventno, NameStr(TupleDescAttr(desc, 0)->attname)),
				 errhint("Every event needs its event time column.")));
}

/* chronicle.insert(stream regclass, events jsonb) returns bigint */
Datum
chronicle_insert(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Jsonb	   *events;
	Relation	rel;
	TupleDesc	desc;
	int			nevents;
	ParsedEvent *parsed;
	int			i;
	int			c;
	EState	   *estate;
	RangeTblEntry *rte;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	ExprState **defaults;
	AclResult	aclresult;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream and events must not be NULL"),
				 errhint("Pass a stream and a JSON object or array of objects.")));
	relid = PG_GETARG_OID(0);
	events = PG_GETARG_JSONB_P(1);

	rel = stream_open(relid, RowExclusiveLock);
	aclresult = pg_class_aclcheck(relid, GetUserId(), ACL_INSERT);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, RelationGetRelationName(rel));
	desc = RelationGetDescr(rel);

	/* parse everything first: a bad event inserts nothing */
	if (JB_ROOT_IS_OBJECT(events))
	{
		nevents = 1;
		parsed = palloc(sizeof(ParsedEvent));
		parse_event(rel, &events->root, 1, &parsed[0]);
	}
	else if (JB_ROOT_IS_ARRAY(events) && !JB_ROOT_IS_SCALAR(events))
	{
		JsonbIterator *it = JsonbIteratorInit(&events->root);
		JsonbValue	v;
		JsonbIteratorToken tok;

		nevents = JB_ROOT_COUNT(events);
		parsed = palloc(sizeof(ParsedEvent) * Max(nevents, 1));
		i = 0;
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("event %d is not a JSON object", i + 1),
						 errhint("Pass an array of objects keyed by column name.")));
			parse_event(rel, v.val.binary.data, i + 1, &parsed[i]);
			i++;
		}
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must be a JSON object or an array of objects"),
				 errhint("For example: '{\"ts\": \"2026-01-01 00:00:00+00\", \"value\": 1.5}'.")));

	/* executor state for defaults, constraints and BEFORE ROW triggers */
	estate = CreateExecutorState();
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = relid;
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	ExecInitRangeTable(estate, list_make1(rte));
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	estate->es_output_cid = GetCurrentCommandId(true);
	slot = table_slot_create(rel, &estate->es_tupleTable);

	defaults = palloc0(sizeof(ExprState *) * desc->natts);
	for (c = 0; c < desc->natts; c++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, c);
		Node	   *defexpr;

		if (att->attisdropped || att->attgenerated)
			continue;
		defexpr = build_column_default(rel, c + 1);
		if (defexpr != NULL)
			defaults[c] = ExecPrepareExpr((Expr *) expression_planner((Expr *) defexpr), estate);
	}

	AfterTriggerBeginQuery();
	for (i = 0; i < nevents; i++)
	{
		ExecClearTuple(slot);
		for (c = 0; c < desc->natts; c++)
		{
			if (!parsed[i].given[c] && defaults[c] != NULL)
				slot->tts_values[c] = ExecEvalExprSwitchContext(defaults[c],
																GetPerTupleExprContext(estate),
																&slot->tts_isnull[c]);
			else
			{
				slot->tts_values[c] = parsed[i].values[c];
				slot->tts_isnull[c] = parsed[i].isnull[c];
			}
		}
		ExecStoreVirtualTuple(slot);
		ExecSimpleRelationInsert(rri, estate, slot);
	}
	AfterTriggerEndQuery(estate);

	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
	PG_RETURN_INT64(nevents);
}
