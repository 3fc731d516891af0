/*-------------------------------------------------------------------------
 *
 * tabplus_page.c
 *	  Page primitives of the TAB+ tree and the page-delta WAL encoding.
 *
 * Every TAB+ page uses the standard page layout so that full-page images
 * compress the hole between pd_lower and pd_upper and so that checksums and
 * page verification work unchanged:
 *
 *	  leaf page:	  header | uint16 row offsets, in (event time, arrival)
 *					  order, growing up | free | rows, growing down | opaque
 *	  internal page:  header | fixed-size index entries, in key order | free
 *					  | opaque
 *	  meta page:	  header | TabPlusMeta | free | opaque
 *
 * A leaf row offset points at an encoded event (rowcodec.c).  An internal
 * entry is a TabPlusEntryHeader (child, routing low key, count, time range)
 * followed by one TabPlusPackedAgg per aggregated column.  The routing rule:
 * an event with time t belongs to the last entry whose low_key <= t, or to
 * the first entry when none qualifies.  Ties therefore go right, which keeps
 * equal-time events in arrival order.
 *
 * These functions touch only the page image given to them: no buffer
 * manager, no WAL, no locks.  Callers (tabplus.c) hold the locks and log the
 * change.  That keeps this file testable without a server (test/unit).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "tabplus/tabplus.h"

#define LEAF_OFFSETS(page) TABPLUS_LEAF_OFFSETS(page)
#define INTERNAL_ENTRY(page, idx, esize) \
	((char *) (page) + SizeOfPageHeaderData + (Size) (idx) * (esize))

void
tabplus_page_init(Page page, uint16 flags, uint16 level)
{
	TabPlusPageOpaque opaque;

	PageInit(page, BLCKSZ, sizeof(TabPlusPageOpaqueData));
	opaque = TabPlusPageGetOpaque(page);
	opaque->next = InvalidBlockNumber;
	opaque->level = level;
	opaque->flags = flags;
	opaque->magic = TABPLUS_MAGIC;
	opaque->reserved = 0;
}

bool
tabplus_page_is(Page page, uint16 flags)
{
	PageHeader	hdr = (PageHeader) page;

	if (PageIsNew(page) ||
		hdr->pd_special != BLCKSZ - MAXALIGN(sizeof(TabPlusPageOpaqueData)))
		return false;
	return TabPlusPageGetOpaque(page)->magic == TABPLUS_MAGIC &&
		(TabPlusPageGetOpaque(page)->flags & flags) != 0;
}

/* ---------------------------------------------------------------- leaves */

/* First position whose event time is >= ts. */
int
tabplus_leaf_lower_bound(Page page, int64 ts)
{
	int			lo = 0;
	int			hi = tabplus_leaf_nrows(page);

	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (row_get_time(tabplus_leaf_row(page, mid)) < ts)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * Move the rows at positions >= splitpos of left to the front of right (an
 * empty new leaf for a split, or left's right sibling), and compact left.
 * The caller links the pages and has checked that right has the room.
 */
void
tabplus_leaf_split(Page left, Page right, int splitpos,
				   tabplus_rowlen_fn rowlen, const void *arg)
{
	PGAlignedBlock copy;
	PageHeader	hdr = (PageHeader) left;
	int			nrows = tabplus_leaf_nrows(left);
	int			i;

	Assert(splitpos >= 0 && splitpos <= nrows);

	memcpy(copy.data, left, BLCKSZ);
	for (i = splitpos; i < nrows; i++)
	{
		char	   *row = tabplus_leaf_row(copy.data, i);

		if (!tabplus_leaf_insert(right, i - splitpos, row, rowlen(arg, row)))
			elog(ERROR, "TAB+ leaf split overflowed the right page");
	}

	hdr->pd_lower = SizeOfPageHeaderData;
	hdr->pd_upper = hdr->pd_special;
	for (i = 0; i < splitpos; i++)
	{
		char	   *row = tabplus_leaf_row(copy.data, i);

		if (!tabplus_leaf_insert(left, i, row, rowlen(arg, row)))
			elog(ERROR, "TAB+ leaf split overflowed the left page");
	}
}

/* ------------------------------------------------------------- internals */

int
tabplus_internal_nentries(Page page, const StreamLayout *layout)
{
	return (((PageHeader) page)->pd_lower - SizeOfPageHeaderData) /
		TABPLUS_ENTRY_SIZE(layout->nagg);
}

int
tabplus_internal_capacity(const StreamLayout *layout)
{
	return TABPLUS_PAGE_SPACE /
		TABPLUS_ENTRY_SIZE(layout->nagg);
}

static void
pack_agg(StreamAggKind kind, const ColumnAgg *c, TabPlusPackedAgg *p)
{
	p->count = c->count;
	if (kind == STREAM_AGG_INT)
	{
		p->sum_lo = (uint64) c->isum;
		p->sum_hi = (int64) (c->isum >> 64);
		p->min = c->imin;
		p->max = c->imax;
	}
	else
	{
		memcpy(&p->sum_lo, &c->fsum, sizeof(double));
		p->sum_hi = 0;
		memcpy(&p->min, &c->fmin, sizeof(double));
		memcpy(&p->max, &c->fmax, sizeof(double));
	}
}

static void
unpack_agg(StreamAggKind kind, const TabPlusPackedAgg *p, ColumnAgg *c)
{
	c->count = p->count;
	if (kind == STREAM_AGG_INT)
	{
		c->isum = (int128) ((uint128) p->sum_lo | ((uint128) (uint64) p->sum_hi << 64));
		c->imin = p->min;
		c->imax = p->max;
		c->fsum = 0;
		c->fmin = 0;
		c->fmax = 0;
	}
	else
	{
		memcpy(&c->fsum, &p->sum_lo, sizeof(double));
		memcpy(&c->fmin, &p->min, sizeof(double));
		memcpy(&c->fmax, &p->max, sizeof(double));
		c->isum = 0;
		c->imin = 0;
		c->imax = 0;
	}
}

/* Count one more event in the meta page's counters. */
void
tabplus_meta_add_event(TabPlusMeta *meta, int64 ts)
{
	if (meta->count > 0 && ts < meta->max_ts)
		meta->out_of_order++;
	if (ts < meta->min_ts)
		meta->min_ts = ts;
	if (ts > meta->max_ts)
		meta->max_ts = ts;
	meta->count++;
}

/*
 * An event summary in the packed form of an index entry's aggregates:
 * count, min and max time, then one TabPlusPackedAgg per aggregated column.
 * Unpacking what was packed gives back every field that merging and
 * storing read, so a summary carried in WAL merges to the same bytes.
 */
Size
tabplus_summary_packed_size(const StreamLayout *layout)
{
	return 3 * sizeof(int64) + sizeof(TabPlusPackedAgg) * layout->nagg;
}

void
tabplus_summary_pack(const StreamLayout *layout, const EventSummary *sum, char *out)
{
	int			i;

	memcpy(out, &sum->count, sizeof(int64));
	memcpy(out + sizeof(int64), &sum->min_ts, sizeof(int64));
	memcpy(out + 2 * sizeof(int64), &sum->max_ts, sizeof(int64));
	out += 3 * sizeof(int64);
	for (i = 0; i < layout->nagg; i++)
	{
		TabPlusPackedAgg packed;

		pack_agg(layout->aggkinds[i], &sum->cols[i], &packed);
		memcpy(out, &packed, sizeof(packed));
		out += sizeof(packed);
	}
}

void
tabplus_summary_unpack(const StreamLayout *layout, const char *in, EventSummary *sum)
{
	int			i;

	memcpy(&sum->count, in, sizeof(int64));
	memcpy(&sum->min_ts, in + sizeof(int64), sizeof(int64));
	memcpy(&sum->max_ts, in + 2 * sizeof(int64), sizeof(int64));
	in += 3 * sizeof(int64);
	for (i = 0; i < layout->nagg; i++)
	{
		TabPlusPackedAgg packed;

		memcpy(&packed, in, sizeof(packed));
		unpack_agg(layout->aggkinds[i], &packed, &sum->cols[i]);
		in += sizeof(packed);
	}
}

void
tabplus_entry_get(Page page, int idx, const StreamLayout *layout, TabPlusEntry *e)
{
	char	   *p = INTERNAL_ENTRY(page, idx, TABPLUS_ENTRY_SIZE(layout->nagg));
	TabPlusEntryHeader hdr;
	int			i;

	memcpy(&hdr, p, sizeof(hdr));
	e->child = hdr.child;
	e->low_key = hdr.low_key;
	e->sum->count = hdr.count;
	e->sum->min_ts = hdr.min_ts;
	e->sum->max_ts = hdr.max_ts;
	p += sizeof(hdr);
	for (i = 0; i < layout->nagg; i++)
	{
		TabPlusPackedAgg packed;

		memcpy(&packed, p, sizeof(packed));
		unpack_agg(layout->aggkinds[i], &packed, &e->sum->cols[i]);
		p += sizeof(packed);
	}
}

void
tabplus_entry_put(Page page, int idx, const StreamLayout *layout, const TabPlusEntry *e)
{
	char	   *p = INTERNAL_ENTRY(page, idx, TABPLUS_ENTRY_SIZE(layout->nagg));
	TabPlusEntryHeader hdr;
	int			i;

	memset(&hdr, 0, sizeof(hdr));
	hdr.child = e->child;
	hdr.low_key = e->low_key;
	hdr.count = e->sum->count;
	hdr.min_ts = e->sum->min_ts;
	hdr.max_ts = e->sum->max_ts;
	memcpy(p, &hdr, sizeof(hdr));
	p += sizeof(hdr);
	for (i = 0; i < layout->nagg; i++)
	{
		TabPlusPackedAgg packed;

		pack_agg(layout->aggkinds[i], &e->sum->cols[i], &packed);
		memcpy(p, &packed, sizeof(packed));
		p += sizeof(packed);
	}
}

bool
tabplus_entry_insert(Page page, int idx, const StreamLayout *layout, const TabPlusEntry *e)
{
	PageHeader	hdr = (PageHeader) page;
	Size		esize = TABPLUS_ENTRY_SIZE(layout->nagg);
	int			n = tabplus_internal_nentries(page, layout);

	Assert(idx >= 0 && idx <= n);
	if (n >= tabplus_internal_capacity(layout))
		return false;
	if (idx < n)
		memmove(INTERNAL_ENTRY(page, idx + 1, esize), INTERNAL_ENTRY(page, idx, esize),
				(n - idx) * esize);
	hdr->pd_lower += esize;
	tabplus_entry_put(page, idx, layout, e);
	return true;
}

/* Move entries >= splitpos of left to the empty internal page right. */
void
tabplus_internal_split(Page left, Page right, int splitpos, const StreamLayout *layout)
{
	Size		esize = TABPLUS_ENTRY_SIZE(layout->nagg);
	int			n = tabplus_internal_nentries(left, layout);

	Assert(splitpos >= 0 && splitpos <= n);
	Assert(tabplus_internal_nentries(right, layout) == 0);
	memcpy(INTERNAL_ENTRY(right, 0, esize), INTERNAL_ENTRY(left, splitpos, esize),
		   (n - splitpos) * esize);
	((PageHeader) right)->pd_lower += (n - splitpos) * esize;
	((PageHeader) left)->pd_lower -= (n - splitpos) * esize;
}

/* Index of the entry an event with time ts belongs to (see file header). */
int
tabplus_internal_route(Page page, const StreamLayout *layout, int64 ts)
{
	Size		esize = TABPLUS_ENTRY_SIZE(layout->nagg);
	int			lo = 0;
	int			hi = tabplus_internal_nentries(page, layout);

	/* find the first entry whose low_key > ts */
	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;
		TabPlusEntryHeader hdr;

		memcpy(&hdr, INTERNAL_ENTRY(page, mid, esize), sizeof(hdr));
		if (hdr.low_key <= ts)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 ? lo - 1 : 0;
}

/* Summary of a whole internal node: the merge of its entries. */
void
tabplus_internal_summary(Page page, const StreamLayout *layout,
						 EventSummary *sum, EventSummary *scratch)
{
	int			n = tabplus_internal_nentries(page, layout);
	int			i;
	TabPlusEntry e;

	event_summary_init(layout, sum);
	e.sum = scratch;
	for (i = 0; i < n; i++)
	{
		tabplus_entry_get(page, i, layout, &e);
		event_summary_merge(layout, sum, e.sum);
	}
}

/* ------------------------------------------------------------ page deltas */

/*
 * A page delta is a list of fragments (uint16 offset, uint16 length, bytes)
 * that turns the original image into the new one.  Only the new page's
 * meaningful areas, [0, pd_lower) and [pd_upper, BLCKSZ), are described; a
 * byte counts as unchanged only if it was also meaningful in the original,
 * because the hole of the page replaying the record may differ.
 */
typedef struct DeltaZones
{
	int			olower;			/* orig bytes [0, olower) are comparable */
	int			oupper;			/* and so are [oupper, BLCKSZ) */
} DeltaZones;

static inline bool
words_equal(const char *a, const char *b, int at)
{
	uint64		x;
	uint64		y;

	memcpy(&x, a + at, sizeof(uint64));
	memcpy(&y, b + at, sizeof(uint64));
	return x == y;
}

/* End of the comparable zone containing k, or -1 if k is not comparable. */
static inline int
comparable_end(const DeltaZones *z, int k)
{
	if (k < z->olower)
		return z->olower;
	if (k >= z->oupper)
		return BLCKSZ;
	return -1;
}

/*
 * Emit fragments covering every byte of [start, end) of page that differs
 * from orig or was not meaningful in orig.  Runs are found a word at a time:
 * a run may include a few unchanged bytes, never miss a changed one.
 */
static char *
delta_region(const char *orig, const char *page, int start, int end,
			 const DeltaZones *z, char *out)
{
	int			i = start;

	while (i < end)
	{
		int			run_start;
		int			j;
		uint16		off16;
		uint16		len16;

		/* skip bytes equal to comparable original bytes */
		for (;;)
		{
			int			lim = comparable_end(z, i);

			if (i >= end || lim < 0)
				break;
			lim = Min(lim, end);
			while (i + 8 <= lim && words_equal(orig, page, i))
				i += 8;
			while (i < lim && orig[i] == page[i])
				i++;
			if (i < lim)
				break;			/* a difference */
		}
		if (i >= end)
			break;

		/* extend the run up to the next equal comparable word */
		run_start = i;
		j = i;
		while (j < end)
		{
			int			lim = comparable_end(z, j);

			if (lim < 0)
			{
				j = Min(z->oupper, end);	/* not comparable: all of it */
				continue;
			}
			lim = Min(lim, end);
			while (j + 8 <= lim && !words_equal(orig, page, j))
				j += 8;
			if (j + 8 <= lim)
				break;			/* an equal word ends the run */
			j = lim;
		}
		off16 = (uint16) run_start;
		len16 = (uint16) (j - run_start);
		memcpy(out, &off16, sizeof(uint16));
		memcpy(out + 2, &len16, sizeof(uint16));
		memcpy(out + 4, page + run_start, len16);
		out += 4 + len16;
		i = j;
	}
	return out;
}

/*
 * Encode the delta from orig to page into out (at least BLCKSZ + 64 bytes
 * of space); returns its length.  orig == NULL means a new (zeroed) page.
 */
Size
tabplus_delta_encode(const char *orig, const char *page, char *out)
{
	PageHeader	nh = (PageHeader) page;
	DeltaZones	z;
	char	   *p = out;

	if (orig == NULL)
	{
		/* new page: nothing is comparable, everything meaningful is written */
		z.olower = 0;
		z.oupper = BLCKSZ;
		orig = page;
	}
	else
	{
		z.olower = ((PageHeader) orig)->pd_lower;
		z.oupper = ((PageHeader) orig)->pd_upper;
	}
	p = delta_region(orig, page, 0, nh->pd_lower, &z, p);
	p = delta_region(orig, page, nh->pd_upper, BLCKSZ, &z, p);
	return p - out;
}

/* Apply a delta; false if it is malformed (out-of-page fragment). */
bool
tabplus_delta_apply(char *page, const char *delta, Size len)
{
	const char *p = delta;
	const char *end = delta + len;

	while (p < end)
	{
		uint16		off16;
		uint16		len16;

		if (end - p < 4)
			return false;
		memcpy(&off16, p, sizeof(uint16));
		memcpy(&len16, p + 2, sizeof(uint16));
		p += 4;
		if ((Size) off16 + len16 > BLCKSZ || end - p < len16)
			return false;
		memcpy(page + off16, p, len16);
		p += len16;
	}
	return true;
}
