/*-------------------------------------------------------------------------
 *
 * rowcodec.c
 *	  The stream column layout and the compact event row format.
 *
 * One encoded event is
 *
 *	  int64   event time key (timestamp microseconds, or the bigint value)
 *	  uint8   flags (ROW_HAS_NULLS)
 *	  [null bitmap of layout->nullbytes bytes, only with ROW_HAS_NULLS;
 *	   bit i set means attribute i+2 is NULL]
 *	  values of the non-null attributes 2..natts in attribute order:
 *		fixed-width types as their typlen raw bytes (unaligned),
 *		variable-length types as uint16 length + the detoasted payload.
 *
 * Rows are byte-packed with no alignment padding: readers memcpy fields out.
 * The time key sits first so that ordering and routing read 8 bytes at a
 * fixed offset.  The format is the same in the staging buffer, in TAB+ leaf
 * pages and in replicated batches, so applying a batch copies bytes.
 *
 * Only the types listed in stream_type_allowed() may appear; anything else is
 * refused when the stream is created, so decoding never meets an unknown
 * type.  Values larger than CHRONICLE_MAX_VALUE_BYTES and rows larger than
 * CHRONICLE_MAX_ROW_BYTES are refused at encode time (never truncated).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/float.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "tabplus/rowcodec.h"

#define ROW_HAS_NULLS	0x01
#define ROW_HEADER_BYTES (sizeof(int64) + 1)

bool
stream_type_is_time(Oid typid)
{
	return typid == TIMESTAMPTZOID || typid == TIMESTAMPOID || typid == INT8OID;
}

static bool
stream_type_allowed(Oid typid)
{
	switch (typid)
	{
		case BOOLOID:
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
		case TIMESTAMPTZOID:
		case TIMESTAMPOID:
		case DATEOID:
		case UUIDOID:
		case TEXTOID:
		case VARCHAROID:
		case BYTEAOID:
		case JSONBOID:
			return true;
		default:
			return false;
	}
}

static StreamAggKind
stream_type_agg_kind(Oid typid)
{
	switch (typid)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
			return STREAM_AGG_INT;
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
			return STREAM_AGG_FLOAT;
		default:
			return STREAM_AGG_NONE;
	}
}

/*
 * Build the layout of a stream from its tuple descriptor.  With relname set
 * the descriptor is being validated for a new stream and every violation is a
 * user error; without it the layout of an existing stream is derived.
 */
StreamLayout *
stream_layout_build(TupleDesc desc, const char *relname)
{
	StreamLayout *layout;
	int			i;
	int			nagg = 0;

	if (desc->natts < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("stream \"%s\" needs an event time column", relname ? relname : "?"),
				 errhint("The first column must be the event time: timestamptz, timestamp or bigint, NOT NULL.")));

	layout = palloc0(offsetof(StreamLayout, cols) + sizeof(StreamColumn) * desc->natts);
	layout->natts = desc->natts;
	layout->nullbytes = (desc->natts - 1 + 7) / 8;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		StreamColumn *col = &layout->cols[i];

		if (att->attisdropped)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("stream \"%s\" has a dropped column", relname ? relname : "?")));

		if (i == 0)
		{
			if (!stream_type_is_time(att->atttypid))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
						 errmsg("the first column of stream \"%s\" must be the event time, not type %s",
								relname ? relname : "?", format_type_be(att->atttypid)),
						 errhint("Declare the first column as timestamptz, timestamp or bigint, NOT NULL.")));
			if (relname && !att->attnotnull)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
						 errmsg("event time column \"%s\" of stream \"%s\" must be NOT NULL",
								NameStr(att->attname), relname),
						 errhint("Declare it as \"%s %s NOT NULL\".",
								 NameStr(att->attname), format_type_be(att->atttypid))));
			layout->timetype = att->atttypid;
		}
		else if (!stream_type_allowed(att->atttypid))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("column \"%s\" of stream \"%s\" has unsupported type %s",
							NameStr(att->attname), relname ? relname : "?",
							format_type_be(att->atttypid)),
					 errhint("Stream columns may be bool, int2, int4, int8, float4, float8, numeric, "
							 "timestamptz, timestamp, date, uuid, text, varchar, bytea or jsonb.")));

		col->typid = att->atttypid;
		col->typlen = att->attlen;
		col->typbyval = att->attbyval;
		col->name = att->attname;
		col->agg = (i == 0) ? STREAM_AGG_NONE : stream_type_agg_kind(att->atttypid);
		col->aggslot = (col->agg != STREAM_AGG_NONE) ? nagg++ : -1;
		if (i > 0 && col->typlen > 0)
			layout->fixed_bytes += col->typlen;
	}
	layout->nagg = nagg;
	layout->aggkinds = palloc0(sizeof(StreamAggKind) * Max(nagg, 1));
	layout->aggtypid = palloc0(sizeof(Oid) * Max(nagg, 1));
	layout->aggoffset = palloc0(sizeof(int) * Max(nagg, 1));
	for (i = 1; i < desc->natts; i++)
	{
		StreamColumn *col = &layout->cols[i];

		if (col->aggslot < 0)
			continue;
		layout->aggkinds[col->aggslot] = col->agg;
		layout->aggtypid[col->aggslot] = col->typid;
	}
	{
		int			offset = 0;	/* of column i's value in an event without NULLs */
		bool		fixed = nagg > 0;

		for (i = 1; i < desc->natts && fixed; i++)
		{
			StreamColumn *col = &layout->cols[i];

			/* a length-prefixed value moves every later one: no fixed offsets */
			if (col->aggslot >= 0)
			{
				layout->aggoffset[col->aggslot] = offset;
				fixed = col->typlen > 0;
			}
			if (col->typlen > 0)
				offset += col->typlen;
			else
				break;
		}
		for (; i < desc->natts && fixed; i++)
			fixed = layout->cols[i].aggslot < 0;	/* an aggregated value after it */
		if (!fixed)
		{
			pfree(layout->aggoffset);
			layout->aggoffset = NULL;
		}
	}
	return layout;
}

/*
 * Event time key of a time-column value.  Infinite timestamps have no place
 * on a time axis and are refused.
 */
int64
row_time_datum_to_key(Oid timetype, Datum value)
{
	int64		key = DatumGetInt64(value);

	if (timetype != INT8OID && TIMESTAMP_NOT_FINITE(key))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("event time must be finite"),
				 errhint("Use a finite %s value for the event time column.",
						 format_type_be(timetype))));
	return key;
}

/*
 * Time key of a value compared with the event time: a value of the time type
 * itself, a text literal parsed as the time type, a smaller integer for
 * bigint streams, or another date/time type converted the way PostgreSQL's
 * cross-type comparison operators convert it.  Anything else is an error.
 */
int64
row_time_value_to_key(Oid timetype, Oid valtype, Datum value)
{
	if (valtype == TEXTOID || valtype == UNKNOWNOID || valtype == VARCHAROID)
	{
		char	   *str = (valtype == UNKNOWNOID) ? DatumGetCString(value) : TextDatumGetCString(value);
		Oid			typinput;
		Oid			typioparam;

		getTypeInputInfo(timetype, &typinput, &typioparam);
		return DatumGetInt64(OidInputFunctionCall(typinput, str, typioparam, -1));
	}
	if (timetype == INT8OID)
	{
		switch (valtype)
		{
			case INT8OID:
				return DatumGetInt64(value);
			case INT4OID:
				return DatumGetInt32(value);
			case INT2OID:
				return DatumGetInt16(value);
			default:
				break;
		}
	}
	else
	{
		switch (valtype)
		{
			case TIMESTAMPTZOID:
				if (timetype == TIMESTAMPOID)
					return DatumGetInt64(DirectFunctionCall1(timestamptz_timestamp, value));
				return DatumGetInt64(value);
			case TIMESTAMPOID:
				if (timetype == TIMESTAMPTZOID)
					return DatumGetInt64(DirectFunctionCall1(timestamp_timestamptz, value));
				return DatumGetInt64(value);
			case DATEOID:
				if (timetype == TIMESTAMPTZOID)
					return DatumGetInt64(DirectFunctionCall1(date_timestamptz, value));
				return DatumGetInt64(DirectFunctionCall1(date_timestamp, value));
			default:
				break;
		}
	}
	ereport(ERROR,
			(errcode(ERRCODE_DATATYPE_MISMATCH),
			 errmsg("a bound of type %s does not fit event time type %s",
					format_type_be(valtype), format_type_be(timetype)),
			 errhint("Pass bounds of the stream's event time type (%s) or as text literals.",
					 format_type_be(timetype))));
	return 0;					/* keep compiler quiet */
}

/* Whether row_time_value_to_key() accepts values of type valtype. */
bool
row_time_value_type_ok(Oid timetype, Oid valtype)
{
	if (timetype == INT8OID)
		return valtype == INT8OID || valtype == INT4OID || valtype == INT2OID;
	return valtype == TIMESTAMPTZOID || valtype == TIMESTAMPOID || valtype == DATEOID;
}

Datum
row_time_key_to_datum(Oid timetype, int64 key)
{
	return Int64GetDatum(key);
}

/* Append n bytes; the caller has made room with enlargeStringInfo(). */
static inline void
put_bytes(StringInfo out, const void *src, int n)
{
	memcpy(out->data + out->len, src, n);
	out->len += n;
}

static void
store_fixed(StringInfo out, const StreamColumn *col, Datum value)
{
	if (col->typbyval)
	{
		switch (col->typlen)
		{
			case 1:
				{
					char		v = DatumGetChar(value);

					put_bytes(out, &v, 1);
					break;
				}
			case 2:
				{
					int16		v = DatumGetInt16(value);

					put_bytes(out, &v, 2);
					break;
				}
			case 4:
				{
					int32		v = DatumGetInt32(value);

					put_bytes(out, &v, 4);
					break;
				}
			case 8:
				{
					int64		v = DatumGetInt64(value);

					put_bytes(out, &v, 8);
					break;
				}
			default:
				elog(ERROR, "unexpected by-value length %d", col->typlen);
		}
	}
	else
		put_bytes(out, DatumGetPointer(value), col->typlen);
}

void
row_encode(const StreamLayout *layout, const Datum *values,
		   const bool *isnull, StringInfo out)
{
	int			start = out->len;
	int			i;
	uint8		flags = 0;
	int64		ts;
	uint8		bitmap[(MaxTupleAttributeNumber + 7) / 8];

	if (isnull[0])
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("event time column \"%s\" must not be NULL",
						NameStr(layout->cols[0].name)),
				 errhint("Every event needs an event time.")));

	ts = row_time_datum_to_key(layout->timetype, values[0]);

	memset(bitmap, 0, layout->nullbytes);
	for (i = 1; i < layout->natts; i++)
	{
		if (isnull[i])
		{
			bitmap[(i - 1) / 8] |= (uint8) (1 << ((i - 1) % 8));
			flags |= ROW_HAS_NULLS;
		}
	}

	/* room for the header and every fixed-width value at once */
	enlargeStringInfo(out, ROW_HEADER_BYTES + layout->nullbytes + layout->fixed_bytes);
	put_bytes(out, &ts, sizeof(int64));
	put_bytes(out, &flags, 1);
	if (flags & ROW_HAS_NULLS)
		put_bytes(out, bitmap, layout->nullbytes);

	for (i = 1; i < layout->natts; i++)
	{
		const StreamColumn *col = &layout->cols[i];

		if (isnull[i])
			continue;
		if (col->typlen > 0)
			store_fixed(out, col, values[i]);
		else
		{
			struct varlena *v = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(values[i]));
			Size		len = VARSIZE_ANY_EXHDR(v);
			uint16		len16;

			if (len > CHRONICLE_MAX_VALUE_BYTES)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("value of column \"%s\" is %zu bytes, more than the limit of %d bytes",
								NameStr(col->name), len, CHRONICLE_MAX_VALUE_BYTES),
						 errhint("Stream values are stored inline; store larger payloads in a regular table and reference them.")));
			len16 = (uint16) len;
			enlargeStringInfo(out, sizeof(uint16) + len);
			put_bytes(out, &len16, sizeof(uint16));
			put_bytes(out, VARDATA_ANY(v), len);
			if ((Pointer) v != DatumGetPointer(values[i]))
				pfree(v);
		}
	}

	if (out->len - start > CHRONICLE_MAX_ROW_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("event is %d bytes, more than the limit of %d bytes",
						out->len - start, CHRONICLE_MAX_ROW_BYTES),
				 errhint("Reduce the size of the variable-length values of the event.")));
}

static inline bool
row_att_isnull(const char *row, int attidx)
{
	const uint8 *bitmap;

	if (!(((const uint8 *) row)[sizeof(int64)] & ROW_HAS_NULLS))
		return false;
	bitmap = (const uint8 *) row + ROW_HEADER_BYTES;
	return (bitmap[(attidx - 1) / 8] & (1 << ((attidx - 1) % 8))) != 0;
}

static inline const char *
row_values_start(const StreamLayout *layout, const char *row)
{
	if (((const uint8 *) row)[sizeof(int64)] & ROW_HAS_NULLS)
		return row + ROW_HEADER_BYTES + layout->nullbytes;
	return row + ROW_HEADER_BYTES;
}

static Datum
fetch_fixed(const StreamColumn *col, const char *p)
{
	if (col->typbyval)
	{
		switch (col->typlen)
		{
			case 1:
				return CharGetDatum(*p);
			case 2:
				{
					int16		v;

					memcpy(&v, p, 2);
					return Int16GetDatum(v);
				}
			case 4:
				{
					int32		v;

					memcpy(&v, p, 4);
					return Int32GetDatum(v);
				}
			case 8:
				{
					int64		v;

					memcpy(&v, p, 8);
					return Int64GetDatum(v);
				}
			default:
				elog(ERROR, "unexpected by-value length %d", col->typlen);
		}
	}
	else
	{
		char	   *copy = palloc(col->typlen);

		memcpy(copy, p, col->typlen);
		return PointerGetDatum(copy);
	}
	return (Datum) 0;			/* keep compiler quiet */
}

/* Decode one event; variable-length values are palloc'd in the current context. */
void
row_decode(const StreamLayout *layout, const char *row, Datum *values, bool *isnull)
{
	const char *p = row_values_start(layout, row);
	int			i;

	values[0] = row_time_key_to_datum(layout->timetype, row_get_time(row));
	isnull[0] = false;

	for (i = 1; i < layout->natts; i++)
	{
		const StreamColumn *col = &layout->cols[i];

		if (row_att_isnull(row, i))
		{
			values[i] = (Datum) 0;
			isnull[i] = true;
			continue;
		}
		isnull[i] = false;
		if (col->typlen > 0)
		{
			values[i] = fetch_fixed(col, p);
			p += col->typlen;
		}
		else
		{
			uint16		len;
			struct varlena *v;

			memcpy(&len, p, sizeof(uint16));
			p += sizeof(uint16);
			v = palloc(len + VARHDRSZ);
			SET_VARSIZE(v, len + VARHDRSZ);
			memcpy(VARDATA(v), p, len);
			p += len;
			values[i] = PointerGetDatum(v);
		}
	}
}

Size
row_length(const StreamLayout *layout, const char *row)
{
	const char *p = row_values_start(layout, row);
	int			i;

	for (i = 1; i < layout->natts; i++)
	{
		const StreamColumn *col = &layout->cols[i];

		if (row_att_isnull(row, i))
			continue;
		if (col->typlen > 0)
			p += col->typlen;
		else
		{
			uint16		len;

			memcpy(&len, p, sizeof(uint16));
			p += sizeof(uint16) + len;
		}
	}
	return p - row;
}

/* ----------------------------------------------------------------
 * Event summaries: count, time range and per-column aggregates.
 * ----------------------------------------------------------------
 */

Size
event_summary_size(const StreamLayout *layout)
{
	return offsetof(EventSummary, cols) + sizeof(ColumnAgg) * layout->nagg;
}

void
event_summary_init(const StreamLayout *layout, EventSummary *sum)
{
	int			i;

	sum->count = 0;
	sum->min_ts = PG_INT64_MAX;
	sum->max_ts = PG_INT64_MIN;
	for (i = 0; i < layout->nagg; i++)
	{
		ColumnAgg  *c = &sum->cols[i];

		c->count = 0;
		c->isum = 0;
		c->fsum = 0;
		c->imin = PG_INT64_MAX;
		c->imax = PG_INT64_MIN;
		c->fmin = get_float8_infinity();
		c->fmax = -get_float8_infinity();
	}
}

/* float8 ordering as PostgreSQL defines it: NaN sorts above everything. */
static inline bool
float_less(double a, double b)
{
	return float8_lt(a, b);
}

static inline void
column_agg_add_float(ColumnAgg *c, double v)
{
	if (c->count == 0)
	{
		c->fmin = v;
		c->fmax = v;
	}
	else
	{
		if (float_less(v, c->fmin))
			c->fmin = v;
		if (float_less(c->fmax, v))
			c->fmax = v;
	}
	c->fsum += v;
	c->count++;
}

static inline void
column_agg_add_int(ColumnAgg *c, int64 v)
{
	if (v < c->imin)
		c->imin = v;
	if (v > c->imax)
		c->imax = v;
	c->isum += v;
	c->count++;
}

static double
numeric_payload_to_double(const char *p, uint16 len)
{
	union
	{
		struct varlena hdr;
		char		buf[CHRONICLE_MAX_VALUE_BYTES + VARHDRSZ];
	}			tmp;

	SET_VARSIZE(&tmp.hdr, len + VARHDRSZ);
	memcpy(tmp.buf + VARHDRSZ, p, len);
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
											  PointerGetDatum(&tmp.hdr)));
}

/* Add one non-NULL value of an aggregated column (its encoded bytes at p). */
static inline void
column_agg_add_value(ColumnAgg *c, Oid typid, const char *p, uint16 len)
{
	switch (typid)
	{
		case INT2OID:
			{
				int16		v;

				memcpy(&v, p, 2);
				column_agg_add_int(c, v);
				break;
			}
		case INT4OID:
			{
				int32		v;

				memcpy(&v, p, 4);
				column_agg_add_int(c, v);
				break;
			}
		case INT8OID:
			{
				int64		v;

				memcpy(&v, p, 8);
				column_agg_add_int(c, v);
				break;
			}
		case FLOAT4OID:
			{
				float4		v;

				memcpy(&v, p, 4);
				column_agg_add_float(c, (double) v);
				break;
			}
		case FLOAT8OID:
			{
				float8		v;

				memcpy(&v, p, 8);
				column_agg_add_float(c, v);
				break;
			}
		case NUMERICOID:
			column_agg_add_float(c, numeric_payload_to_double(p, len));
			break;
		default:
			elog(ERROR, "unexpected aggregated type %u", typid);
	}
}

/*
 * Add one encoded event to a summary.  Every event of every batch passes
 * here on every node (the leaf deltas of the index entries), so an event
 * without NULLs in a layout whose aggregated values sit at fixed offsets
 * (layout->aggoffset) takes a path that visits the aggregated columns only.
 */
void
event_summary_add_row(const StreamLayout *layout, EventSummary *sum, const char *row)
{
	const char *p = row_values_start(layout, row);
	int64		ts = row_get_time(row);
	int			i;

	sum->count++;
	if (ts < sum->min_ts)
		sum->min_ts = ts;
	if (ts > sum->max_ts)
		sum->max_ts = ts;

	if (layout->nagg == 0)
		return;

	if (layout->aggoffset != NULL && !(((const uint8 *) row)[sizeof(int64)] & ROW_HAS_NULLS))
	{
		for (i = 0; i < layout->nagg; i++)
			column_agg_add_value(&sum->cols[i], layout->aggtypid[i], p + layout->aggoffset[i], 0);
		return;
	}

	for (i = 1; i < layout->natts; i++)
	{
		const StreamColumn *col = &layout->cols[i];
		uint16		len = 0;

		if (row_att_isnull(row, i))
			continue;
		if (col->typlen < 0)
		{
			memcpy(&len, p, sizeof(uint16));
			p += sizeof(uint16);
		}
		if (col->aggslot >= 0)
			column_agg_add_value(&sum->cols[col->aggslot], col->typid, p, len);
		p += (col->typlen > 0) ? col->typlen : len;
	}
}

/*
 * Fold the aggregated values of n events without NULLs, each at offset off
 * of its row, into c: one column at a time with the type known outside the
 * loop.  The steps per value, and their order, are column_agg_add_value's,
 * so the result is the same bit for bit.
 */
#define FOLD_FIXED_COLUMN(ctype, add) \
	for (i = 0; i < n; i++) \
	{ \
		ctype		v; \
\
		memcpy(&v, rows[i].data + off, sizeof(ctype)); \
		add(c, v); \
	}

static void
column_agg_add_fixed(ColumnAgg *c, Oid typid, const StagedRow *rows, int64 n, int off)
{
	int64		i;

	switch (typid)
	{
		case INT2OID:
			FOLD_FIXED_COLUMN(int16, column_agg_add_int);
			break;
		case INT4OID:
			FOLD_FIXED_COLUMN(int32, column_agg_add_int);
			break;
		case INT8OID:
			FOLD_FIXED_COLUMN(int64, column_agg_add_int);
			break;
		case FLOAT4OID:
			FOLD_FIXED_COLUMN(float4, column_agg_add_float);
			break;
		case FLOAT8OID:
			FOLD_FIXED_COLUMN(float8, column_agg_add_float);
			break;
		default:
			for (i = 0; i < n; i++)
				column_agg_add_value(c, typid, rows[i].data + off, 0);
			break;
	}
}

/*
 * Add a run of encoded events to a summary: the same result as
 * event_summary_add_row on each in turn.  This is the apply path's
 * kernel (every event of every batch on every node), so when no event of
 * the run has a NULL and the layout puts the aggregated values at fixed
 * offsets, it folds column by column.
 */
void
event_summary_add_rows(const StreamLayout *layout, EventSummary *sum,
					   const StagedRow *rows, int64 nrows)
{
	int64		i;
	int			k;

	if (layout->aggoffset == NULL || layout->nagg == 0)
	{
		for (i = 0; i < nrows; i++)
			event_summary_add_row(layout, sum, rows[i].data);
		return;
	}
	for (i = 0; i < nrows; i++)
		if (((const uint8 *) rows[i].data)[sizeof(int64)] & ROW_HAS_NULLS)
			break;
	if (i < nrows)
	{
		for (i = 0; i < nrows; i++)
			event_summary_add_row(layout, sum, rows[i].data);
		return;
	}

	sum->count += nrows;
	for (i = 0; i < nrows; i++)
	{
		if (rows[i].ts < sum->min_ts)
			sum->min_ts = rows[i].ts;
		if (rows[i].ts > sum->max_ts)
			sum->max_ts = rows[i].ts;
	}
	for (k = 0; k < layout->nagg; k++)
		column_agg_add_fixed(&sum->cols[k], layout->aggtypid[k], rows, nrows,
							 ROW_HEADER_BYTES + layout->aggoffset[k]);
}

/*
 * Add one event given its time and, per aggregated column, whether it has a
 * value and that value as the summary of that one event holds it (imin, or
 * fmin's bits): the same steps as event_summary_add_row, so that WAL redo
 * can rebuild a single event's delta without the stream's layout.
 */
void
event_summary_add_values(const StreamLayout *layout, EventSummary *sum, int64 ts,
						 const bool *present, const int64 *raw)
{
	int			i;

	sum->count++;
	if (ts < sum->min_ts)
		sum->min_ts = ts;
	if (ts > sum->max_ts)
		sum->max_ts = ts;
	for (i = 0; i < layout->nagg; i++)
	{
		if (!present[i])
			continue;
		if (layout->aggkinds[i] == STREAM_AGG_INT)
			column_agg_add_int(&sum->cols[i], raw[i]);
		else
		{
			double		v;

			memcpy(&v, &raw[i], sizeof(v));
			column_agg_add_float(&sum->cols[i], v);
		}
	}
}

void
event_summary_merge(const StreamLayout *layout, EventSummary *into, const EventSummary *from)
{
	int			i;

	if (from->count == 0)
		return;
	into->count += from->count;
	if (from->min_ts < into->min_ts)
		into->min_ts = from->min_ts;
	if (from->max_ts > into->max_ts)
		into->max_ts = from->max_ts;
	for (i = 0; i < layout->nagg; i++)
	{
		ColumnAgg  *a = &into->cols[i];
		const ColumnAgg *b = &from->cols[i];

		if (b->count == 0)
			continue;
		if (a->count == 0)
		{
			*a = *b;
			continue;
		}
		a->count += b->count;
		a->isum += b->isum;
		a->fsum += b->fsum;
		if (b->imin < a->imin)
			a->imin = b->imin;
		if (b->imax > a->imax)
			a->imax = b->imax;
		if (float_less(b->fmin, a->fmin))
			a->fmin = b->fmin;
		if (float_less(a->fmax, b->fmax))
			a->fmax = b->fmax;
	}
}
