/*-------------------------------------------------------------------------
 *
 * rowcodec.h
 *	  Column layout of a stream and the compact binary row format shared by
 *	  the staging buffer, the TAB+ leaves and (later) Raft batch payloads.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CHRONICLE_ROWCODEC_H
#define CHRONICLE_ROWCODEC_H

#include "postgres.h"
#include "access/tupdesc.h"
#include "lib/stringinfo.h"

/* Largest variable-length value stored inline in an event, in bytes. */
#define CHRONICLE_MAX_VALUE_BYTES	1024
/* Largest encoded event; keeps at least four events on every leaf page. */
#define CHRONICLE_MAX_ROW_BYTES		2000

/* How a column takes part in the per-child aggregates of the TAB+ tree. */
typedef enum StreamAggKind
{
	STREAM_AGG_NONE = 0,		/* not aggregated */
	STREAM_AGG_INT,				/* int2/int4/int8: exact int128 sums */
	STREAM_AGG_FLOAT			/* float4/float8/numeric: float8 sums */
} StreamAggKind;

typedef struct StreamColumn
{
	Oid			typid;
	int16		typlen;			/* > 0 fixed width, -1 varlena */
	bool		typbyval;
	StreamAggKind agg;
	int			aggslot;		/* index among aggregated columns, or -1 */
	NameData	name;
} StreamColumn;

/*
 * Layout derived from the relation's tuple descriptor.  Attribute 1 is the
 * event time, stored as int64 (timestamp microseconds or the bigint itself).
 */
typedef struct StreamLayout
{
	int			natts;
	int			nagg;			/* number of aggregated columns */
	Oid			timetype;
	int			nullbytes;		/* bytes of the null bitmap when present */
	int			fixed_bytes;	/* sum of the fixed-width columns' sizes */
	StreamAggKind *aggkinds;	/* kind of each aggregated column */
	Oid		   *aggtypid;		/* type of each aggregated column */
	int		   *aggoffset;		/* where each aggregated value starts in an
								 * event without NULLs, or NULL when some
								 * has no fixed place (after a varlena) */
	StreamColumn cols[FLEXIBLE_ARRAY_MEMBER];
} StreamLayout;

/*
 * Aggregate of one numeric column over a set of events.  NULLs are skipped:
 * count is the number of non-null values.
 */
typedef struct ColumnAgg
{
	int64		count;
	int128		isum;			/* STREAM_AGG_INT */
	double		fsum;			/* STREAM_AGG_FLOAT */
	int64		imin;
	int64		imax;
	double		fmin;
	double		fmax;
} ColumnAgg;

/* An encoded event on its way into a tree: staged, or from a Raft entry. */
typedef struct StagedRow
{
	int64		ts;
	const char *data;
	uint32		len;
	uint32		seq;			/* arrival order, the tie-break */
} StagedRow;

/* Aggregate of a set of events: event count, time range, numeric columns. */
typedef struct EventSummary
{
	int64		count;
	int64		min_ts;
	int64		max_ts;
	ColumnAgg	cols[FLEXIBLE_ARRAY_MEMBER];
} EventSummary;

extern StreamLayout *stream_layout_build(TupleDesc desc, const char *relname);
extern bool stream_type_is_time(Oid typid);

extern int64 row_time_datum_to_key(Oid timetype, Datum value);
extern Datum row_time_key_to_datum(Oid timetype, int64 key);
extern int64 row_time_value_to_key(Oid timetype, Oid valtype, Datum value);
extern bool row_time_value_type_ok(Oid timetype, Oid valtype);

extern void row_encode(const StreamLayout *layout, const Datum *values,
					   const bool *isnull, StringInfo out);
extern void row_decode(const StreamLayout *layout, const char *row,
					   Datum *values, bool *isnull);
extern Size row_length(const StreamLayout *layout, const char *row);

static inline int64
row_get_time(const char *row)
{
	int64		ts;

	memcpy(&ts, row, sizeof(int64));
	return ts;
}

extern Size event_summary_size(const StreamLayout *layout);
extern void event_summary_init(const StreamLayout *layout, EventSummary *sum);
extern void event_summary_add_rows(const StreamLayout *layout, EventSummary *sum,
								   const StagedRow *rows, int64 nrows);
extern void event_summary_add_values(const StreamLayout *layout, EventSummary *sum,
									 int64 ts, const bool *present, const int64 *raw);
extern void event_summary_add_row(const StreamLayout *layout,
								  EventSummary *sum, const char *row);
extern void event_summary_merge(const StreamLayout *layout,
								EventSummary *into, const EventSummary *from);

#endif							/* CHRONICLE_ROWCODEC_H */
