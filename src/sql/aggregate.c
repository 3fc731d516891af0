/*-------------------------------------------------------------------------
 *
 * aggregate.c
 *	  SQL functions over a stream's TAB+ tree: range aggregates (plain and
 *	  bucketed), the time range and per-stream statistics.
 *
 * Bounds are polymorphic (anycompatible) so that one function serves every
 * event-time type and bare literals work: an unknown literal arrives as
 * text and is parsed with the stream's time type.  Intervals are half-open,
 * [from, to); a NULL bound is unbounded.  Every aggregate takes the stream
 * lock in ShareLock so it sees whole batches only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "am/stream.h"
#include "tabplus/tabplus.h"

PG_FUNCTION_INFO_V1(chronicle_aggregate);
PG_FUNCTION_INFO_V1(chronicle_aggregate_buckets);
PG_FUNCTION_INFO_V1(chronicle_aggregate_pages_read);
PG_FUNCTION_INFO_V1(chronicle_time_range);
PG_FUNCTION_INFO_V1(chronicle_stream_stats);

#define MAX_BUCKETS 1000000

static Oid
arg_relid(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream must not be NULL"),
				 errhint("Pass the stream's name, e.g. 'readings'.")));
	return PG_GETARG_OID(0);
}

static void
read_bounds(FunctionCallInfo fcinfo, const StreamLayout *layout,
			bool *has_from, int64 *from, bool *has_to, int64 *to)
{
	*has_from = !PG_ARGISNULL(2);
	*has_to = !PG_ARGISNULL(3);
	*from = *has_from ? row_time_value_to_key(layout->timetype,
									 get_fn_expr_argtype(fcinfo->flinfo, 2),
									 PG_GETARG_DATUM(2)) : 0;
	*to = *has_to ? row_time_value_to_key(layout->timetype,
								 get_fn_expr_argtype(fcinfo->flinfo, 3),
								 PG_GETARG_DATUM(3)) : 0;
	if (*has_from && *has_to && *from > *to)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lower bound is after upper bound"),
				 errhint("The interval is [from, to): pass from <= to.")));
}

/* The aggregated column's slot; errors for unknown or non-numeric columns. */
static int
column_aggslot(Relation rel, const StreamLayout *layout, FunctionCallInfo fcinfo)
{
	const char *colname;
	int			i;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("column must not be NULL"),
				 errhint("Pass the name of a numeric column of the stream.")));
	colname = NameStr(*PG_GETARG_NAME(1));
	for (i = 0; i < layout->natts; i++)
	{
		if (strcmp(NameStr(layout->cols[i].name), colname) != 0)
			continue;
		if (layout->cols[i].aggslot < 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" of stream \"%s\" is not numeric",
							colname, RelationGetRelationName(rel)),
					 errhint("Aggregates need an int2, int4, int8, float4, float8 or numeric column; use chronicle.time_range() for event times.")));
		return layout->cols[i].aggslot;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("stream \"%s\" has no column \"%s\"", RelationGetRelationName(rel), colname),
			 errhint("Column names are case-sensitive as stored; see \\d %s.",
					 RelationGetRelationName(rel))));
	return -1;
}

static Datum
int128_numeric(int128 v)
{
	char		buf[48];
	char	   *p = buf + sizeof(buf) - 1;
	bool		neg = v < 0;
	uint128		u = neg ? (uint128) (-(v + 1)) + 1 : (uint128) v;

	*p = '\0';
	do
	{
		*--p = '0' + (int) (u % 10);
		u /= 10;
	} while (u != 0);
	if (neg)
		*--p = '-';
	return DirectFunctionCall3(numeric_in, CStringGetDatum(p),
							   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
}

/* Fill (count, sum, min, max, avg) from one column aggregate. */
static void
agg_values(StreamAggKind kind, const ColumnAgg *c, Datum *values, bool *nulls)
{
	Datum		sum;

	values[0] = Int64GetDatum(c->count);
	nulls[0] = false;
	if (c->count == 0)
	{
		nulls[1] = nulls[2] = nulls[3] = nulls[4] = true;
		return;
	}
	if (kind == STREAM_AGG_INT)
	{
		sum = int128_numeric(c->isum);
		values[2] = NumericGetDatum(int64_to_numeric(c->imin));
		values[3] = NumericGetDatum(int64_to_numeric(c->imax));
	}
	else
	{
		sum = DirectFunctionCall1(float8_numeric, Float8GetDatum(c->fsum));
		values[2] = DirectFunctionCall1(float8_numeric, Float8GetDatum(c->fmin));
		values[3] = DirectFunctionCall1(float8_numeric, Float8GetDatum(c->fmax));
	}
	values[1] = sum;
	values[4] = DirectFunctionCall2(numeric_div, sum,
									NumericGetDatum(int64_to_numeric(c->count)));
	nulls[1] = nulls[2] = nulls[3] = nulls[4] = false;
}

static void
aggregate_range(Relation rel, const StreamLayout *layout, bool has_from, int64 from,
				bool has_to, int64 to, EventSummary *sum, int64 *pages)
{
	stream_lock(rel, false);
	tabplus_aggregate(rel, layout, has_from, from, has_to, to, sum, pages);
	stream_unlock(rel, false);
}

/* chronicle.aggregate(stream, column, from, to) */
Datum
chronicle_aggregate(PG_FUNCTION_ARGS)
{
	Relation	rel = stream_open(arg_relid(fcinfo), AccessShareLock);
	StreamLayout *layout = stream_layout(rel);
	int			slot = column_aggslot(rel, layout, fcinfo);
	bool		has_from;
	bool		has_to;
	int64		from;
	int64		to;
	EventSummary *sum = palloc(event_summary_size(layout));
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5];

	read_bounds(fcinfo, layout, &has_from, &from, &has_to, &to);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	aggregate_range(rel, layout, has_from, from, has_to, to, sum, NULL);
	agg_values(layout->aggkinds[slot], &sum->cols[slot], values, nulls);
	relation_close(rel, AccessShareLock);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/* chronicle.aggregate_pages_read(stream, from, to): pages an aggregate reads */
Datum
chronicle_aggregate_pages_read(PG_FUNCTION_ARGS)
{
	Relation	rel = stream_open(arg_relid(fcinfo), AccessShareLock);
	StreamLayout *layout = stream_layout(rel);
	bool		has_from = !PG_ARGISNULL(1);
	bool		has_to = !PG_ARGISNULL(2);
	int64		from = 0;
	int64		to = 0;
	int64		pages;
	EventSummary *sum = palloc(event_summary_size(layout));

	if (has_from)
		from = row_time_value_to_key(layout->timetype, get_fn_expr_argtype(fcinfo->flinfo, 1),
							PG_GETARG_DATUM(1));
	if (has_to)
		to = row_time_value_to_key(layout->timetype, get_fn_expr_argtype(fcinfo->flinfo, 2),
						  PG_GETARG_DATUM(2));
	aggregate_range(rel, layout, has_from, from, has_to, to, sum, &pages);
	relation_close(rel, AccessShareLock);
	PG_RETURN_INT64(pages);
}

/*
 * chronicle.aggregate(stream, column, from, to, bucket): one row per bucket
 * [b, b + bucket) from `from` (or the first event) up to `to` (or past the
 * last event).  The bucket is an interval for timestamp streams and a
 * bigint width for bigint streams.
 */
Datum
chronicle_aggregate_buckets(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Relation	rel = stream_open(arg_relid(fcinfo), AccessShareLock);
	StreamLayout *layout = stream_layout(rel);
	int			slot = column_aggslot(rel, layout, fcinfo);
	Oid			buckettype = get_fn_expr_argtype(fcinfo->flinfo, 4);
	bool		has_from;
	bool		has_to;
	int64		from;
	int64		to;
	int64		b;
	int64		nbuckets = 0;
	TabPlusMeta meta;
	EventSummary *sum = palloc(event_summary_size(layout));

	if (PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("bucket must not be NULL"),
				 errhint("Pass a bucket width such as interval '1 hour'.")));
	if ((layout->timetype == INT8OID) != (buckettype == INT8OID))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("bucket of type %s does not fit event time type %s",
						format_type_be(buckettype), format_type_be(layout->timetype)),
				 errhint("Use an interval bucket for timestamp streams and a bigint bucket for bigint streams.")));
	read_bounds(fcinfo, layout, &has_from, &from, &has_to, &to);

	InitMaterializedSRF(fcinfo, 0);

	/* one lock for the bounds and every bucket: one consistent view */
	stream_lock(rel, false);
	if (!has_from || !has_to)
	{
		if (!tabplus_read_meta(rel, &meta) || meta.count == 0)
		{
			stream_unlock(rel, false);
			relation_close(rel, AccessShareLock);
			return (Datum) 0;
		}
		if (!has_from)
			from = meta.min_ts;
		if (!has_to)
			to = meta.max_ts + 1;
	}

	b = from;
	while (b < to)
	{
		int64		next;
		Datum		values[6];
		bool		nulls[6];

		CHECK_FOR_INTERRUPTS();
		if (buckettype == INT8OID)
		{
			int64		width = PG_GETARG_INT64(4);

			if (width <= 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("bucket width must be positive"),
						 errhint("Pass a width greater than zero.")));
			if (pg_add_s64_overflow(b, width, &next))
				next = PG_INT64_MAX;
		}
		else
		{
			Interval   *iv = PG_GETARG_INTERVAL_P(4);
			Datum		nd;

			nd = DirectFunctionCall2(layout->timetype == TIMESTAMPTZOID ?
									 timestamptz_pl_interval : timestamp_pl_interval,
									 Int64GetDatum(b), IntervalPGetDatum(iv));
			next = DatumGetInt64(nd);
			if (next <= b)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("bucket must be a positive interval"),
						 errhint("Pass an interval such as '1 hour'.")));
		}
		if (++nbuckets > MAX_BUCKETS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("more than %d buckets requested", MAX_BUCKETS),
					 errhint("Use a wider bucket or a narrower interval.")));

		tabplus_aggregate(rel, layout, true, b, true, Min(next, to), sum, NULL);
		values[0] = Int64GetDatum(b);
		nulls[0] = false;
		if (layout->timetype == TIMESTAMPOID)
			values[0] = DirectFunctionCall1(timestamp_timestamptz, values[0]);
		agg_values(layout->aggkinds[slot], &sum->cols[slot], values + 1, nulls + 1);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		b = next;
	}
	stream_unlock(rel, false);
	relation_close(rel, AccessShareLock);
	return (Datum) 0;
}

static Datum
key_to_timestamptz(Oid timetype, int64 key, bool *isnull)
{
	*isnull = (timetype == INT8OID);
	if (timetype == TIMESTAMPOID)
		return DirectFunctionCall1(timestamp_timestamptz, Int64GetDatum(key));
	return Int64GetDatum(key);
}

/* chronicle.time_range(stream): first and last event time */
Datum
chronicle_time_range(PG_FUNCTION_ARGS)
{
	Relation	rel = stream_open(arg_relid(fcinfo), AccessShareLock);
	StreamLayout *layout = stream_layout(rel);
	TabPlusMeta meta;
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {true, true, true, true};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	stream_lock(rel, false);
	if (tabplus_read_meta(rel, &meta) && meta.count > 0)
	{
		values[0] = key_to_timestamptz(layout->timetype, meta.min_ts, &nulls[0]);
		values[1] = key_to_timestamptz(layout->timetype, meta.max_ts, &nulls[1]);
		values[2] = Int64GetDatum(meta.min_ts);
		values[3] = Int64GetDatum(meta.max_ts);
		nulls[2] = nulls[3] = false;
	}
	stream_unlock(rel, false);
	relation_close(rel, AccessShareLock);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/* chronicle.stream_stats(stream): the row of the chronicle.streams view */
Datum
chronicle_stream_stats(PG_FUNCTION_ARGS)
{
	Relation	rel = stream_open(arg_relid(fcinfo), AccessShareLock);
	StreamLayout *layout = stream_layout(rel);
	TabPlusMeta meta;
	TupleDesc	tupdesc;
	Datum		values[7];
	bool		nulls[7] = {false, true, true, false, false, false, false};
	bool		found;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	stream_lock(rel, false);
	found = tabplus_read_meta(rel, &meta);
	stream_unlock(rel, false);
	if (!found)
		memset(&meta, 0, sizeof(meta));
	values[0] = Int64GetDatum(meta.count);
	if (meta.count > 0)
	{
		values[1] = key_to_timestamptz(layout->timetype, meta.min_ts, &nulls[1]);
		values[2] = key_to_timestamptz(layout->timetype, meta.max_ts, &nulls[2]);
	}
	values[3] = Int64GetDatum(meta.out_of_order);
	values[4] = Int64GetDatum(meta.batches);
	values[5] = Int32GetDatum(found ? (int32) meta.height : 0);
	values[6] = Int64GetDatum((int64) RelationGetNumberOfBlocks(rel) * BLCKSZ);
	relation_close(rel, AccessShareLock);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}
