/*-------------------------------------------------------------------------
 *
 * tabplus.h
 *	  The TAB+ tree: on-page formats, the page primitives and the tree API.
 *
 * See docs/storage.md for the on-disk format and the WAL strategy.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CHRONICLE_TABPLUS_H
#define CHRONICLE_TABPLUS_H

#include "postgres.h"
#include "storage/block.h"
#include "storage/bufpage.h"
#include "access/xlogreader.h"
#include "utils/rel.h"

#include "tabplus/rowcodec.h"

#define TABPLUS_MAGIC		0x43485442	/* "CHTB" */
#define TABPLUS_VERSION		4
#define TABPLUS_VERSION_NO_NEXT_BLOCK 3	/* older: blocks in use = file size */
#define TABPLUS_META_BLOCK	0
#define TABPLUS_MAX_HEIGHT	15

/* page kinds, in TabPlusPageOpaque.flags */
#define TABPLUS_PAGE_META		0x0001
#define TABPLUS_PAGE_LEAF		0x0002
#define TABPLUS_PAGE_INTERNAL	0x0004

/* Special space of every TAB+ page. */
typedef struct TabPlusPageOpaqueData
{
	BlockNumber next;			/* right sibling on the same level */
	uint16		level;			/* 0 for leaves */
	uint16		flags;
	uint32		magic;
	uint32		reserved;
} TabPlusPageOpaqueData;

typedef TabPlusPageOpaqueData *TabPlusPageOpaque;

/* bytes of a page between its header and its special space */
#define TABPLUS_PAGE_SPACE \
	(BLCKSZ - SizeOfPageHeaderData - MAXALIGN(sizeof(TabPlusPageOpaqueData)))

#define TabPlusPageGetOpaque(page) \
	((TabPlusPageOpaque) PageGetSpecialPointer(page))

/* Contents of the meta page (block 0), right after the page header. */
typedef struct TabPlusMeta
{
	uint32		magic;
	uint32		version;
	BlockNumber root;
	uint32		height;			/* levels; 1 = the root is a leaf */
	BlockNumber leftmost_leaf;
	BlockNumber rightmost_leaf;
	uint32		natts;
	uint32		nagg;
	int64		count;			/* events in the tree */
	int64		min_ts;
	int64		max_ts;
	int64		out_of_order;	/* events older than the newest at arrival */
	int64		batches;		/* batches applied */
	uint64		applied_index;	/* last apply position fully applied */
	uint64		applying_index; /* apply position being applied ... */
	int64		applying_done;	/* ... and how many of its events are in */
	uint64		intent_id;		/* single node: commit intent being applied ... */
	int64		intent_done;	/* ... and how many of its events are in */
	BlockNumber next_block;		/* blocks [0, next_block) are in use; the file
								 * may be longer (extended ahead, zeroes) */
	uint32		reserved;
} TabPlusMeta;

#define TabPlusPageGetMeta(page) ((TabPlusMeta *) PageGetContents(page))

/*
 * Apply positions in the Raft log, as the meta page records them.  An entry
 * applies a stream's events in one step per replicated DDL statement it
 * crosses (events before the DDL, then the ones after it), and a step must
 * not be mistaken for another one of the same entry when an apply is
 * repeated, so a position is (entry index, step).
 */
#define TABPLUS_APPLY_STEP_BITS		20
#define TABPLUS_APPLY_MAX_STEP		((1 << TABPLUS_APPLY_STEP_BITS) - 1)
#define TABPLUS_APPLY_POSITION(index, step) \
	(((uint64) (index) << TABPLUS_APPLY_STEP_BITS) | (uint64) (step))
/* every step of the entry at index, and all before it, is applied */
#define TABPLUS_APPLY_ENTRY_DONE(index) \
	TABPLUS_APPLY_POSITION(index, TABPLUS_APPLY_MAX_STEP)

/* Fixed part of an index entry; ColumnAgg images follow, one per agg column. */
typedef struct TabPlusEntryHeader
{
	BlockNumber child;
	uint32		reserved;
	int64		low_key;		/* routing separator: child's keys are >= */
	int64		count;
	int64		min_ts;
	int64		max_ts;
} TabPlusEntryHeader;

/* On-page image of one ColumnAgg: 40 bytes, 8-byte fields only. */
typedef struct TabPlusPackedAgg
{
	int64		count;
	uint64		sum_lo;			/* int128 low half, or the float8 sum bits */
	int64		sum_hi;			/* int128 high half */
	int64		min;			/* int64, or float8 bits */
	int64		max;
} TabPlusPackedAgg;

#define TABPLUS_ENTRY_SIZE(nagg) \
	(sizeof(TabPlusEntryHeader) + sizeof(TabPlusPackedAgg) * (nagg))

/* An unpacked index entry. */
typedef struct TabPlusEntry
{
	BlockNumber child;
	int64		low_key;
	EventSummary *sum;			/* caller-provided, layout-sized */
} TabPlusEntry;

/* Length of an encoded row, for page primitives that move rows. */
typedef Size (*tabplus_rowlen_fn) (const void *arg, const char *row);

/* ---- page primitives (tabplus_page.c; no buffer manager, unit tested) ---- */
extern void tabplus_page_init(Page page, uint16 flags, uint16 level);
extern bool tabplus_page_is(Page page, uint16 flags);

/*
 * A leaf's row offsets follow the page header (one uint16 each); rows are
 * stored from the end of the page down.  The accessors and the insert are
 * inline: the apply loop calls them for every event.
 */
#define TABPLUS_LEAF_OFFSETS(page) ((uint16 *) ((char *) (page) + SizeOfPageHeaderData))

static inline int
tabplus_leaf_nrows(Page page)
{
	return (((PageHeader) page)->pd_lower - SizeOfPageHeaderData) / sizeof(uint16);
}

static inline char *
tabplus_leaf_row(Page page, int pos)
{
	return (char *) page + TABPLUS_LEAF_OFFSETS(page)[pos];
}

static inline Size
tabplus_leaf_free(Page page)
{
	PageHeader	hdr = (PageHeader) page;

	return hdr->pd_upper - hdr->pd_lower;
}

/* First position at or after start whose event time is > ts. */
static inline int
tabplus_leaf_upper_bound(Page page, int64 ts, int start)
{
	int			lo = start;
	int			hi = tabplus_leaf_nrows(page);

	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (row_get_time(tabplus_leaf_row(page, mid)) <= ts)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

extern int	tabplus_leaf_lower_bound(Page page, int64 ts);

/* Insert row at position pos; false (nothing changed) if it does not fit. */
static inline bool
tabplus_leaf_insert(Page page, int pos, const char *row, Size len)
{
	PageHeader	hdr = (PageHeader) page;
	uint16	   *offsets = TABPLUS_LEAF_OFFSETS(page);
	int			nrows = tabplus_leaf_nrows(page);

	Assert(pos >= 0 && pos <= nrows);
	if (tabplus_leaf_free(page) < len + sizeof(uint16))
		return false;

	hdr->pd_upper -= len;
	memcpy((char *) page + hdr->pd_upper, row, len);
	if (pos < nrows)
		memmove(&offsets[pos + 1], &offsets[pos], (nrows - pos) * sizeof(uint16));
	offsets[pos] = hdr->pd_upper;
	hdr->pd_lower += sizeof(uint16);
	return true;
}
extern void tabplus_leaf_split(Page left, Page right, int splitpos,
							   tabplus_rowlen_fn rowlen, const void *arg);

extern int	tabplus_internal_nentries(Page page, const StreamLayout *layout);
extern int	tabplus_internal_capacity(const StreamLayout *layout);
extern void tabplus_entry_get(Page page, int idx, const StreamLayout *layout,
							  TabPlusEntry *e);
extern void tabplus_entry_put(Page page, int idx, const StreamLayout *layout,
							  const TabPlusEntry *e);
extern bool tabplus_entry_insert(Page page, int idx, const StreamLayout *layout,
								 const TabPlusEntry *e);
extern void tabplus_internal_split(Page left, Page right, int splitpos,
								   const StreamLayout *layout);
extern int	tabplus_internal_route(Page page, const StreamLayout *layout, int64 ts);
extern void tabplus_internal_summary(Page page, const StreamLayout *layout,
									 EventSummary *sum, EventSummary *scratch);
extern void tabplus_meta_add_event(TabPlusMeta *meta, int64 ts);
extern Size tabplus_summary_packed_size(const StreamLayout *layout);
extern void tabplus_summary_pack(const StreamLayout *layout, const EventSummary *sum,
								 char *out);
extern void tabplus_summary_unpack(const StreamLayout *layout, const char *in,
								   EventSummary *sum);

/* page deltas for WAL (tabplus_page.c) */
extern Size tabplus_delta_encode(const char *orig, const char *page, char *out);
extern bool tabplus_delta_apply(char *page, const char *delta, Size len);

/* ---- the tree (tabplus.c; needs the buffer manager) ---- */

/* One event to apply: its time key and its encoded bytes. */
extern void tabplus_sort_batch(StagedRow *rows, int64 nrows);
extern void tabplus_apply_batch(Relation rel, const StreamLayout *layout,
								StagedRow *rows, int64 nrows, uint64 log_index,
								uint64 intent_id, bool *stream_locked);
extern bool tabplus_read_meta(Relation rel, TabPlusMeta *meta);
extern BlockNumber tabplus_blocks_in_use(Relation rel);
/*
 * Facts about a stream that stay true until its relcache entry is
 * invalidated (which every DROP, TRUNCATE and relfilenode change does): kept
 * in rd_amcache, which the relcache frees then.  Only positive answers are
 * kept.
 */
typedef struct StreamRelCache
{
	bool		tree_exists;	/* the relation file has a valid meta page */
	bool		cluster_known;	/* listed in chronicle.cluster_streams */
} StreamRelCache;

extern StreamRelCache *stream_relcache(Relation rel);
extern bool tabplus_tree_exists(Relation rel);
extern void tabplus_forget_tree(Relation rel);
extern BlockNumber tabplus_find_leaf(Relation rel, const StreamLayout *layout,
									 const TabPlusMeta *meta, int64 ts);
extern void tabplus_read_page(Relation rel, BlockNumber blkno, char *copy);
extern void tabplus_aggregate(Relation rel, const StreamLayout *layout,
							  bool has_from, int64 from, bool has_to, int64 to,
							  EventSummary *result, int64 *pages_read);

/* ---- WAL (tabplus_xlog.c) ---- */
#define RM_CHRONICLE_ID		213
#define XLOG_TABPLUS_PAGES	0x10
#define XLOG_TABPLUS_INTENT	0x20
#define XLOG_TABPLUS_INSERT	0x30
#define TABPLUS_WAL_MAX_PAGES 32

typedef struct TabPlusWal
{
	Relation	rel;
	int			npages;
	Buffer		buffers[TABPLUS_WAL_MAX_PAGES];
	bool		isnew[TABPLUS_WAL_MAX_PAGES];
	PGAlignedBlock *work;		/* TABPLUS_WAL_MAX_PAGES working copies */
	char	   *deltas;			/* delta encoding space */
	uint64		completes_intent;	/* the record completes this intent */
	char	   *logical;		/* an insert step's logical record, or NULL */
	Size		logical_len;
} TabPlusWal;

/* flags of an XLOG_TABPLUS_INSERT record */
#define TABPLUS_INSERT_BATCH_DONE		0x01	/* meta: batches++ */
#define TABPLUS_INSERT_RAFT_PROGRESS	0x02	/* meta: Raft progress follows */
#define TABPLUS_INSERT_INTENT_PROGRESS	0x04	/* meta: intent progress follows */
#define TABPLUS_INSERT_COMPLETES_INTENT 0x08	/* the intent id is last */
#define TABPLUS_INSERT_SINGLE_DELTA		0x10	/* one event's compact delta, not
												 * the packed summary */

/* at most 9 bytes per aggregated column (tabplus_single_delta_encode) */
#define TABPLUS_SINGLE_DELTA_MAX(nagg)	((Size) (nagg) * 9)

extern void tabplus_wal_init(TabPlusWal *w, Relation rel);
extern Page tabplus_wal_register(TabPlusWal *w, Buffer buf, bool isnew);
extern void tabplus_wal_finish(TabPlusWal *w);
extern void tabplus_wal_release(TabPlusWal *w);
extern void tabplus_register_rmgr(void);
extern bool tabplus_single_delta_encode(const StreamLayout *layout, const char *packed,
										char *out, Size *outlen);
extern Size tabplus_single_delta_decode(const StreamLayout *layout, int64 ts,
										const char *in, Size avail, char *packed);

/*
 * Copy the next n bytes of a WAL record's data into dst and step past them.
 * A record shorter than its own fields say cannot have been written by us.
 */
static inline void
tabplus_redo_take(char **p, const char *end, void *dst, Size n)
{
	if (*p + n > end)
		elog(PANIC, "chronicle_raft redo: record too short");
	memcpy(dst, *p, n);
	*p += n;
}

/* ---- commit intents (tabplus_intent.c) ---- */
extern uint64 tabplus_intent_log(Relation rel, StagedRow *rows, int64 nrows,
								 bool committed);
extern void tabplus_intent_resume(Relation rel);
extern void tabplus_intent_shmem_request(void);
extern void tabplus_intent_redo(XLogReaderState *record);
extern void tabplus_intent_redo_completed(uint64 intent_id);
extern void tabplus_intent_recovery_start(void);
extern void tabplus_intent_recovery_end(void);

#endif							/* CHRONICLE_TABPLUS_H */
