/*-------------------------------------------------------------------------
 *
 * tabplus.c
 *	  The TAB+ tree of one stream: applying sorted batches, reading pages,
 *	  and O(log n) range aggregates.
 *
 * The tree lives in the relation's main fork and is read and written through
 * shared buffers.  Block 0 is the meta page (root, height, flank leaves,
 * counters); every other block is a leaf or an internal page (formats in
 * tabplus_page.c).  The tree is created lazily by the first batch applied,
 * so an empty stream has no blocks.
 *
 * Invariants, true at every WAL record boundary:
 *	- leaves, read left to right through their next links, hold every event
 *	  exactly once in (event time, arrival) order;
 *	- every index entry's count, time range and column aggregates equal those
 *	  of the events below it; the meta counters equal those of the tree;
 *	- an event with time t is found by following, at each level, the last
 *	  entry whose low_key <= t (or the first entry).
 *
 * Appending in time order touches only the right flank: a full rightmost
 * leaf is left full and a new empty leaf is chained after it ("grow right"),
 * so pages are filled densely.  Older events are inserted in place.  A full
 * leaf that a long run of the batch enters at one place (a late batch that
 * falls in a gap between events already stored, as when several clients
 * load adjacent time ranges at once) is split at that place, and the run
 * then fills the leaf and new leaves densely; any other full leaf, and a
 * full index page, is split in half.  Splits propagate upward.
 *
 * Locking: a stream has one heavyweight lock, the page lock on the meta
 * block.  Applying a batch holds it in ExclusiveLock; full scans and
 * aggregates hold it in ShareLock.  So a reader sees a batch entirely or not
 * at all, and applying never races another apply.  Buffer content locks are
 * taken on top, one page at a time for readers, and for the pages of one
 * record at a time by the writer.
 *
 * WAL: each step of an apply (insert a run of events into one leaf and add
 * their aggregate to every entry on the path, or one split cascade) is one
 * tabplus_xlog.c record covering all its pages, so a crash at any point
 * leaves a consistent tree.  A batch spans several records and is only
 * applied once it is committed (single node: after the commit record, from
 * a WAL-logged intent; replicated: from the Raft log); its progress in the
 * meta page lets a restart resume it where it stopped.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>

#include "common/relpath.h"
#include "storage/bufmgr.h"
#include "storage/fd.h"
#include "storage/lmgr.h"
#include "storage/smgr.h"
#include "utils/memutils.h"

#include "tabplus/tabplus.h"

typedef struct TreePath
{
	int			height;
	BlockNumber blk[TABPLUS_MAX_HEIGHT];	/* [0] leaf ... [height-1] root */
	int			idx[TABPLUS_MAX_HEIGHT];	/* [L >= 1]: entry taken at level L */
	Buffer		pinned[TABPLUS_MAX_HEIGHT]; /* [L >= 1]: still pinned, or invalid */
	bool		has_hi;
	int64		hi;				/* events >= hi belong to a later leaf */
} TreePath;

static MemoryContext apply_step_context = NULL;

typedef struct TreeCtx
{
	Relation	rel;
	const StreamLayout *layout;
	TabPlusWal	wal;
	MemoryContext stepcxt;		/* reset after every WAL record */
	Buffer		metabuf;		/* registered meta buffer of this step */
	TabPlusMeta *meta;			/* its working copy */
} TreeCtx;

static Size
layout_rowlen(const void *arg, const char *row)
{
	return row_length((const StreamLayout *) arg, row);
}

static EventSummary *
summary_alloc(const StreamLayout *layout)
{
	EventSummary *s = palloc(event_summary_size(layout));

	event_summary_init(layout, s);
	return s;
}

/*
 * Reserve disk space for blocks [first, first + n) of one segment file,
 * which the caller just extended over them (a hole), so that a full disk
 * shows at extension time, as with PostgreSQL's own zero-filled extension,
 * and not when a checkpoint writes the page.  A file system without
 * fallocate keeps the hole.
 */
static void
tree_reserve_space(Relation rel, BlockNumber segno, BlockNumber first, BlockNumber n)
{
	char	   *path = relpathbackend(rel->rd_node, rel->rd_backend, MAIN_FORKNUM);
	char	   *segpath = segno == 0 ? path : psprintf("%s.%u", path, segno);
	int			fd;
	int			rc;

	fd = OpenTransientFile(segpath, O_RDWR | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", segpath)));
	rc = posix_fallocate(fd, (off_t) first * BLCKSZ, (off_t) n * BLCKSZ);
	CloseTransientFile(fd);
	if (rc != 0 && rc != EOPNOTSUPP && rc != ENOSYS && rc != EINVAL)
	{
		errno = rc;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not extend stream \"%s\" (file \"%s\"): %m",
						RelationGetRelationName(rel), segpath),
				 errhint("Check free disk space.")));
	}
}

/*
 * Make block blkno exist in the relation's file.
 *
 * PostgreSQL 15 extends a relation one zero-filled block write at a time;
 * for a stream growing by a whole batch that write cost as much as the
 * page's own later write.  Instead the file is extended ahead by up to
 * TABPLUS_EXTEND_MAX_BLOCKS (about 1/64 of its size, so a small stream
 * stays small) with one write of the chunk's last block and fallocate for
 * the rest; never past a segment boundary, so every segment but the last
 * stays full as md.c expects.  Blocks past meta->next_block are unused
 * zeroes: nothing reads them (the tree is reached through links), and WAL
 * replay extends the file itself for every block a record initializes.
 */
#define TABPLUS_EXTEND_MAX_BLOCKS	128
#define TABPLUS_EXTEND_FRACTION		64

static void
tree_reserve_block(Relation rel, BlockNumber blkno)
{
	BlockNumber nblocks = RelationGetNumberOfBlocks(rel);
	BlockNumber target;
	BlockNumber first;
	PGAlignedBlock zero;

	if (blkno < nblocks)
		return;
	LockRelationForExtension(rel, ExclusiveLock);
	nblocks = RelationGetNumberOfBlocks(rel);
	if (blkno >= nblocks)
	{
		target = Max(blkno + 1,
					 nblocks + Min(TABPLUS_EXTEND_MAX_BLOCKS, nblocks / TABPLUS_EXTEND_FRACTION));
		target = Min(target, (blkno / RELSEG_SIZE + 1) * RELSEG_SIZE);
		memset(zero.data, 0, BLCKSZ);
		smgrextend(RelationGetSmgr(rel), MAIN_FORKNUM, target - 1, zero.data, false);
		first = Max(nblocks, (target - 1) / RELSEG_SIZE * RELSEG_SIZE);
		if (first < target - 1)
			tree_reserve_space(rel, (target - 1) / RELSEG_SIZE, first % RELSEG_SIZE,
							   target - 1 - first);
	}
	UnlockRelationForExtension(rel, ExclusiveLock);
}

/* Block blkno as a pinned, unlocked zeroed buffer, extending the file if needed. */
static Buffer
tree_zeroed_block(Relation rel, BlockNumber blkno)
{
	Buffer		buf;

	tree_reserve_block(rel, blkno);
	buf = ReadBufferExtended(rel, MAIN_FORKNUM, blkno, RBM_ZERO_AND_LOCK, NULL);
	LockBuffer(buf, BUFFER_LOCK_UNLOCK);
	return buf;
}

/*
 * A new block for this step: the meta page's next_block, taken in the
 * step's working copy, so a step that fails takes nothing.
 */
static Buffer
tree_new_block(TreeCtx *ctx)
{
	BlockNumber blkno = ctx->meta->next_block;

	ctx->meta->next_block = blkno + 1;
	return tree_zeroed_block(ctx->rel, blkno);
}

/*
 * Copy a tree page under a share lock.  The block number comes from the
 * tree itself; the meta page is read by tabplus_read_meta().
 */
void
tabplus_read_page(Relation rel, BlockNumber blkno, char *copy)
{
	Buffer		buf = ReadBuffer(rel, blkno);

	LockBuffer(buf, BUFFER_LOCK_SHARE);
	memcpy(copy, BufferGetPage(buf), BLCKSZ);
	UnlockReleaseBuffer(buf);
}

/*
 * The meta page contents; false for a stream that has no tree yet.
 *
 * Once a relation file has a valid meta page it keeps one, so the answer
 * is remembered (StreamRelCache) and the file size (an lseek) is only asked
 * until then; tabplus_forget_tree() covers the one truncation that does
 * not invalidate the relcache entry.
 */
bool
tabplus_read_meta(Relation rel, TabPlusMeta *meta)
{
	Buffer		buf;
	Page		page;

	if ((rel->rd_amcache == NULL || !stream_relcache(rel)->tree_exists) &&
		RelationGetNumberOfBlocks(rel) == 0)
		return false;
	buf = ReadBuffer(rel, TABPLUS_META_BLOCK);
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);

	/*
	 * A zeroed block 0: the first batch extended the relation but its WAL
	 * never reached disk before a crash.  The stream is still empty.
	 */
	if (PageIsNew(page))
	{
		UnlockReleaseBuffer(buf);
		return false;
	}
	if (!tabplus_page_is(page, TABPLUS_PAGE_META) ||
		TabPlusPageGetMeta(page)->magic != TABPLUS_MAGIC)
	{
		UnlockReleaseBuffer(buf);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("stream \"%s\" has an invalid meta page",
						RelationGetRelationName(rel)),
				 errhint("The relation was not written by chronicle_raft or is damaged; restore it from a backup.")));
	}
	*meta = *TabPlusPageGetMeta(page);
	UnlockReleaseBuffer(buf);
	stream_relcache(rel)->tree_exists = true;
	if (meta->version != TABPLUS_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("stream \"%s\" has storage version %u, this build reads version %d",
						RelationGetRelationName(rel), meta->version, TABPLUS_VERSION),
				 errhint("Install the chronicle_raft version that wrote the stream.")));
	return true;
}

StreamRelCache *
stream_relcache(Relation rel)
{
	if (rel->rd_amcache == NULL)
		rel->rd_amcache = MemoryContextAllocZero(CacheMemoryContext, sizeof(StreamRelCache));
	return (StreamRelCache *) rel->rd_amcache;
}

/* Whether the stream has a tree, without reading the meta page once known. */
bool
tabplus_tree_exists(Relation rel)
{
	TabPlusMeta meta;

	return stream_relcache(rel)->tree_exists || tabplus_read_meta(rel, &meta);
}

/* Blocks the tree uses (the file may be longer); 0 for a stream without a tree. */
BlockNumber
tabplus_blocks_in_use(Relation rel)
{
	TabPlusMeta meta;

	return tabplus_read_meta(rel, &meta) ? meta.next_block : 0;
}

/* The relation was truncated to nothing in place (same relfilenode). */
void
tabplus_forget_tree(Relation rel)
{
	if (rel->rd_amcache != NULL)
		stream_relcache(rel)->tree_exists = false;
}

/* Begin a step: register the meta page. */
static void
step_begin(TreeCtx *ctx)
{
	Page		metapage;

	ctx->metabuf = ReadBuffer(ctx->rel, TABPLUS_META_BLOCK);
	metapage = tabplus_wal_register(&ctx->wal, ctx->metabuf, false);
	ctx->meta = TabPlusPageGetMeta(metapage);
}

static void
step_finish(TreeCtx *ctx)
{
	tabplus_wal_finish(&ctx->wal);
	MemoryContextReset(ctx->stepcxt);
}

/*
 * Create the meta page and an empty root leaf: one record.  Block 0 may
 * exist already, zeroed, when a crash lost the WAL of the first batch.
 */
static void
tree_create(TreeCtx *ctx)
{
	Buffer		metabuf;
	Buffer		leafbuf;
	Page		metapage;
	Page		leafpage;
	TabPlusMeta *meta;

	metabuf = tree_zeroed_block(ctx->rel, TABPLUS_META_BLOCK);
	leafbuf = tree_zeroed_block(ctx->rel, TABPLUS_META_BLOCK + 1);

	metapage = tabplus_wal_register(&ctx->wal, metabuf, true);
	leafpage = tabplus_wal_register(&ctx->wal, leafbuf, true);
	tabplus_page_init(metapage, TABPLUS_PAGE_META, 0);
	tabplus_page_init(leafpage, TABPLUS_PAGE_LEAF, 0);

	meta = TabPlusPageGetMeta(metapage);
	memset(meta, 0, sizeof(TabPlusMeta));
	meta->magic = TABPLUS_MAGIC;
	meta->version = TABPLUS_VERSION;
	meta->root = BufferGetBlockNumber(leafbuf);
	meta->height = 1;
	meta->leftmost_leaf = meta->root;
	meta->rightmost_leaf = meta->root;
	meta->natts = ctx->layout->natts;
	meta->nagg = ctx->layout->nagg;
	meta->min_ts = PG_INT64_MAX;
	meta->max_ts = PG_INT64_MIN;
	meta->next_block = TABPLUS_META_BLOCK + 2;
	((PageHeader) metapage)->pd_lower =
		(char *) meta + sizeof(TabPlusMeta) - (char *) metapage;
	step_finish(ctx);
}

/*
 * Find the leaf for an event with time ts, recording the path and the
 * exclusive upper bound of the leaf's key range.  Reads each index page in
 * place under a share lock; the pages on the path are registered for change
 * afterwards (nothing else changes the tree: we hold the stream lock).
 */
static void
tree_descend(TreeCtx *ctx, int64 ts, TreePath *path)
{
	const StreamLayout *layout = ctx->layout;
	BlockNumber blk = ctx->meta->root;
	int			level;
	TabPlusEntry e;

	e.sum = summary_alloc(layout);
	path->height = ctx->meta->height;
	path->has_hi = false;
	if (path->height > TABPLUS_MAX_HEIGHT)
		elog(ERROR, "TAB+ tree of \"%s\" is taller than %d levels",
			 RelationGetRelationName(ctx->rel), TABPLUS_MAX_HEIGHT);
	for (level = 0; level < TABPLUS_MAX_HEIGHT; level++)
		path->pinned[level] = InvalidBuffer;

	for (level = path->height - 1; level >= 1; level--)
	{
		Buffer		buf = ReadBuffer(ctx->rel, blk);
		Page		page;
		int			idx;

		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		if (!tabplus_page_is(page, TABPLUS_PAGE_INTERNAL))
			elog(ERROR, "TAB+ block %u of \"%s\" is not an index page",
				 blk, RelationGetRelationName(ctx->rel));
		idx = tabplus_internal_route(page, layout, ts);
		path->blk[level] = blk;
		path->idx[level] = idx;
		if (idx + 1 < tabplus_internal_nentries(page, layout))
		{
			tabplus_entry_get(page, idx + 1, layout, &e);
			path->has_hi = true;
			path->hi = e.low_key;
		}
		tabplus_entry_get(page, idx, layout, &e);
		/* the pin is kept for path_buffer(): no second buffer lookup */
		LockBuffer(buf, BUFFER_LOCK_UNLOCK);
		path->pinned[level] = buf;
		blk = e.child;
	}
	path->blk[0] = blk;
}

/*
 * The pinned buffer of the path's page on a level >= 1, for registering it;
 * its pin passes to the caller.  The pages cannot change in between: the
 * step holds the meta page exclusively.
 */
static Buffer
path_buffer(TreeCtx *ctx, TreePath *path, int level)
{
	Buffer		buf = path->pinned[level];

	if (BufferIsValid(buf))
	{
		path->pinned[level] = InvalidBuffer;
		return buf;
	}
	return ReadBuffer(ctx->rel, path->blk[level]);
}

/* Drop the pins that path_buffer() did not hand out. */
static void
path_release(TreePath *path)
{
	int			level;

	for (level = 1; level < path->height; level++)
	{
		if (BufferIsValid(path->pinned[level]))
			ReleaseBuffer(path->pinned[level]);
		path->pinned[level] = InvalidBuffer;
	}
}

static void
leaf_summary(const StreamLayout *layout, Page page, EventSummary *sum)
{
	int			n = tabplus_leaf_nrows(page);
	StagedRow  *rows = palloc(sizeof(StagedRow) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
	{
		rows[i].data = tabplus_leaf_row(page, i);
		rows[i].ts = row_get_time(rows[i].data);
	}
	event_summary_init(layout, sum);
	event_summary_add_rows(layout, sum, rows, n);
	pfree(rows);
}

/*
 * The node at path->blk[level] was split: its entry in the parent now
 * summarises left_sum (NULL: the node kept everything and its entry stays,
 * never the case for the root), and a new entry (newblk, new_low,
 * right_sum) goes right after it.  Splits the parent when full,
 * recursively; grows a new root when the root was split.
 */
static void
propagate_split(TreeCtx *ctx, TreePath *path, int level,
				EventSummary *left_sum, BlockNumber newblk, int64 new_low,
				EventSummary *right_sum)
{
	const StreamLayout *layout = ctx->layout;
	TabPlusEntry e;
	TabPlusEntry newe;
	Page		parent;
	int			pidx;
	int			pn;
	bool		grow;
	int			splitpos;
	Buffer		nbuf;
	Page		npage;
	TabPlusPageOpaque popaque;
	EventSummary *lsum;
	EventSummary *rsum;
	EventSummary *scratch;

	newe.child = newblk;
	newe.low_key = new_low;
	newe.sum = right_sum;

	if (level == path->height - 1)
	{
		Buffer		rootbuf = tree_new_block(ctx);
		Page		root = tabplus_wal_register(&ctx->wal, rootbuf, true);

		if (path->height + 1 > TABPLUS_MAX_HEIGHT)
			elog(ERROR, "TAB+ tree of \"%s\" would exceed %d levels",
				 RelationGetRelationName(ctx->rel), TABPLUS_MAX_HEIGHT);
		if (left_sum == NULL)
			elog(ERROR, "TAB+ root split without the summary of its left part");
		tabplus_page_init(root, TABPLUS_PAGE_INTERNAL, level + 1);
		e.child = path->blk[level];
		e.low_key = PG_INT64_MIN;
		e.sum = left_sum;
		if (!tabplus_entry_insert(root, 0, layout, &e) ||
			!tabplus_entry_insert(root, 1, layout, &newe))
			elog(ERROR, "TAB+ index entry does not fit an empty page");
		ctx->meta->root = BufferGetBlockNumber(rootbuf);
		ctx->meta->height++;
		return;
	}

	parent = tabplus_wal_register(&ctx->wal, path_buffer(ctx, path, level + 1), false);
	pidx = path->idx[level + 1];
	if (left_sum != NULL)
	{
		e.sum = summary_alloc(layout);
		tabplus_entry_get(parent, pidx, layout, &e);
		e.sum = left_sum;
		tabplus_entry_put(parent, pidx, layout, &e);
	}
	if (tabplus_entry_insert(parent, pidx + 1, layout, &newe))
		return;

	/* the parent is full: split it, or grow the right flank */
	pn = tabplus_internal_nentries(parent, layout);
	popaque = TabPlusPageGetOpaque(parent);
	grow = (popaque->next == InvalidBlockNumber && pidx + 1 == pn);
	splitpos = grow ? pn : pn / 2;

	nbuf = tree_new_block(ctx);
	npage = tabplus_wal_register(&ctx->wal, nbuf, true);
	tabplus_page_init(npage, TABPLUS_PAGE_INTERNAL, level + 1);
	tabplus_internal_split(parent, npage, splitpos, layout);
	if (!grow && pidx + 1 <= splitpos)
	{
		if (!tabplus_entry_insert(parent, pidx + 1, layout, &newe))
			elog(ERROR, "TAB+ index split left no room");
	}
	else if (!tabplus_entry_insert(npage, pidx + 1 - splitpos, layout, &newe))
		elog(ERROR, "TAB+ index split left no room");

	TabPlusPageGetOpaque(npage)->next = popaque->next;
	popaque->next = BufferGetBlockNumber(nbuf);

	lsum = summary_alloc(layout);
	rsum = summary_alloc(layout);
	scratch = summary_alloc(layout);
	tabplus_internal_summary(parent, layout, lsum, scratch);
	tabplus_internal_summary(npage, layout, rsum, scratch);
	e.sum = scratch;
	tabplus_entry_get(npage, 0, layout, &e);
	propagate_split(ctx, path, level + 1, lsum, BufferGetBlockNumber(nbuf),
					e.low_key, rsum);
}

/*
 * Where the newer events of a full leaf at the end of the tree are cut off
 * for a late event that goes at position gap (in its newer half): at the
 * event's place, or before the leaf's newest eighth if that comes first, so
 * the next late events find room without another structural step (each takes
 * the stream lock and logs several pages; cutting off only the events after
 * the gap cost 8 single-row clients 9% of their tps).
 */
static inline int
before_newest_eighth(int n, int gap)
{
	return Min(gap, n - n / 8);
}

/*
 * Where to split the full leaf on path, before inserting rows[0 .. nrows)
 * (sorted; rows[0] belongs in this leaf, at position gap).  The events that
 * go into the same gap of the leaf as rows[0] (after the leaf's events up to
 * its time, before the next one, or before the leaf's upper bound) form a
 * run.  A run of at least half a page is split around: the leaf keeps the
 * events before the gap and the new page gets those after it (either part
 * may be empty), so the run fills the leaf and then, split again at its end,
 * new leaves, all of them full.  Splitting in half instead would leave every
 * page the run passes through half empty.  A late event in the newer half of
 * the rightmost leaf (concurrent sessions) splits at before_newest_eighth():
 * the events after it keep going to the new rightmost leaf, so halving would
 * leave the left one half empty for good.  Other short runs (random late
 * events) split in half, which leaves room on both sides.
 */
static int
leaf_split_position(Page leaf, const TreePath *path, const StagedRow *rows, int64 nrows,
					int gap)
{
	int			n = tabplus_leaf_nrows(leaf);
	bool		bounded = true;
	int64		gap_end = 0;
	Size		run = 0;
	int64		i;

	if (n < 2)
		return gap;				/* halving a single event makes no room */
	if (TabPlusPageGetOpaque(leaf)->next == InvalidBlockNumber && gap >= n / 2)
		return before_newest_eighth(n, gap);
	if (gap < n)
		gap_end = row_get_time(tabplus_leaf_row(leaf, gap));
	else if (path->has_hi)
		gap_end = path->hi;
	else
		bounded = false;
	for (i = 0; i < nrows && run < TABPLUS_PAGE_SPACE / 2; i++)
	{
		if (bounded && rows[i].ts >= gap_end)
			break;
		run += rows[i].len + sizeof(uint16);
	}
	return run >= TABPLUS_PAGE_SPACE / 2 ? gap : n / 2;
}

/*
 * Whether moving the events of leaf from position from on to the front of
 * right leaves room for row: in leaf when row stays there (it goes before
 * position gap and from == gap), otherwise in right.
 */
static bool
shift_fits(const StreamLayout *layout, Page leaf, Page right, int from, int gap,
		   const StagedRow *row)
{
	int			n = tabplus_leaf_nrows(leaf);
	Size		tail = 0;
	Size		rowneed = row->len + sizeof(uint16);
	int			i;

	for (i = from; i < n; i++)
		tail += layout_rowlen(layout, tabplus_leaf_row(leaf, i)) + sizeof(uint16);
	if (from == gap && gap < n)
		return tabplus_leaf_free(right) >= tail &&
			tabplus_leaf_free(leaf) + tail >= rowneed;
	return tabplus_leaf_free(right) >= tail + rowneed;
}

/*
 * Late events at the end of the tree: the leaf just before the rightmost
 * one is full and row goes at position gap, in its newer half.  That is what
 * concurrent sessions do (one commits an event just older than another's),
 * and a split there would leave a half-empty leaf behind for good, since the
 * events after it go to the rightmost leaf.  Instead the leaf's newer events
 * (before_newest_eighth(), or only those after the gap when the rightmost
 * leaf has no room for more) move to the front of the rightmost leaf, when
 * both hang under the same parent: the parent's two entries get their new
 * summaries and the rightmost leaf a lower low key, nothing else changes.
 * False when that does not apply; the caller splits.
 */
static bool
leaf_shift_tail_right(TreeCtx *ctx, TreePath *path, Page leaf, const StagedRow *row, int gap)
{
	const StreamLayout *layout = ctx->layout;
	BlockNumber next = TabPlusPageGetOpaque(leaf)->next;
	int			n = tabplus_leaf_nrows(leaf);
	int			from = before_newest_eighth(n, gap);
	int			pidx = path->idx[1];
	bool		same_parent;
	Buffer		rbuf;
	Page		parent;
	Page		right;
	TabPlusEntry e;

	if (path->height < 2 || next == InvalidBlockNumber || next != ctx->meta->rightmost_leaf ||
		!BufferIsValid(path->pinned[1]) || gap < n / 2)
		return false;

	e.sum = summary_alloc(layout);
	LockBuffer(path->pinned[1], BUFFER_LOCK_SHARE);
	parent = BufferGetPage(path->pinned[1]);
	same_parent = pidx + 1 < tabplus_internal_nentries(parent, layout);
	if (same_parent)
	{
		tabplus_entry_get(parent, pidx + 1, layout, &e);
		same_parent = (e.child == next);
	}
	LockBuffer(path->pinned[1], BUFFER_LOCK_UNLOCK);
	if (!same_parent)
		return false;

	rbuf = ReadBuffer(ctx->rel, next);
	LockBuffer(rbuf, BUFFER_LOCK_SHARE);
	if (!shift_fits(layout, leaf, BufferGetPage(rbuf), from, gap, row))
		from = gap;
	if (from == gap && !shift_fits(layout, leaf, BufferGetPage(rbuf), from, gap, row))
		from = -1;
	LockBuffer(rbuf, BUFFER_LOCK_UNLOCK);
	if (from < 0)
	{
		ReleaseBuffer(rbuf);
		return false;
	}

	parent = tabplus_wal_register(&ctx->wal, path_buffer(ctx, path, 1), false);
	right = tabplus_wal_register(&ctx->wal, rbuf, false);
	tabplus_leaf_split(leaf, right, from, layout_rowlen, layout);

	tabplus_entry_get(parent, pidx, layout, &e);
	leaf_summary(layout, leaf, e.sum);
	tabplus_entry_put(parent, pidx, layout, &e);
	tabplus_entry_get(parent, pidx + 1, layout, &e);
	leaf_summary(layout, right, e.sum);
	e.low_key = from < n ? row_get_time(tabplus_leaf_row(right, 0)) : row->ts;
	tabplus_entry_put(parent, pidx + 1, layout, &e);
	return true;
}

/*
 * The leaf on path has no room for rows[0]: grow the right flank (in-order
 * append at the rightmost leaf), move its tail into the rightmost leaf
 * (leaf_shift_tail_right), or split the leaf (leaf_split_position).
 */
static void
leaf_make_room(TreeCtx *ctx, TreePath *path, Page leaf, const StagedRow *rows, int64 nrows)
{
	const StreamLayout *layout = ctx->layout;
	TabPlusPageOpaque opaque = TabPlusPageGetOpaque(leaf);
	int			n = tabplus_leaf_nrows(leaf);
	int64		next_ts = rows[0].ts;
	bool		grow;
	int			splitpos = 0;
	Buffer		nbuf;
	Page		npage;
	int64		new_low;
	EventSummary *lsum = summary_alloc(layout);
	EventSummary *rsum = summary_alloc(layout);

	grow = (opaque->next == InvalidBlockNumber && n > 0 &&
			next_ts >= row_get_time(tabplus_leaf_row(leaf, n - 1)));
	if (!grow)
	{
		int			gap = tabplus_leaf_upper_bound(leaf, next_ts, 0);

		if (n < 1)
			elog(ERROR, "TAB+ leaf with no events has no room for one");
		if (leaf_shift_tail_right(ctx, path, leaf, &rows[0], gap))
			return;
		splitpos = leaf_split_position(leaf, path, rows, nrows, gap);
	}

	nbuf = tree_new_block(ctx);
	npage = tabplus_wal_register(&ctx->wal, nbuf, true);
	tabplus_page_init(npage, TABPLUS_PAGE_LEAF, 0);
	if (grow || splitpos == n)
		new_low = next_ts;		/* the new page starts empty, at the gap */
	else
	{
		tabplus_leaf_split(leaf, npage, splitpos, layout_rowlen, layout);
		new_low = row_get_time(tabplus_leaf_row(npage, 0));
	}
	TabPlusPageGetOpaque(npage)->next = opaque->next;
	if (opaque->next == InvalidBlockNumber)
		ctx->meta->rightmost_leaf = BufferGetBlockNumber(nbuf);
	opaque->next = BufferGetBlockNumber(nbuf);

	/*
	 * Growing right leaves the full leaf as it was, and its index entry
	 * already summarises it: recounting it would visit every event a second
	 * time on every in-order append.
	 */
	if (grow && path->height > 1)
		lsum = NULL;
	else
		leaf_summary(layout, leaf, lsum);
	leaf_summary(layout, npage, rsum);
	propagate_split(ctx, path, 0, lsum, BufferGetBlockNumber(nbuf), new_low, rsum);
}

static int
staged_row_cmp(const void *a, const void *b)
{
	const StagedRow *ra = a;
	const StagedRow *rb = b;

	if (ra->ts != rb->ts)
		return ra->ts < rb->ts ? -1 : 1;
	return ra->seq < rb->seq ? -1 : (ra->seq > rb->seq ? 1 : 0);
}

/*
 * Put a batch in apply order: event time, then arrival (seq).  In-order
 * batches, the common case, are only checked.
 */
void
tabplus_sort_batch(StagedRow *rows, int64 nrows)
{
	int64		i;

	for (i = 1; i < nrows; i++)
		if (staged_row_cmp(&rows[i - 1], &rows[i]) > 0)
			break;
	if (i < nrows)
		qsort(rows, nrows, sizeof(StagedRow), staged_row_cmp);
}

/*
 * Describe an insert step logically for its WAL record (XLOG_TABPLUS_INSERT,
 * redone by tabplus_insert_redo): the events, the entry taken at each level
 * and the packed delta, instead of byte deltas of every page on the path.
 * Redo runs the same page primitives in the same order, so it writes the
 * same bytes; the meta page's progress fields go in as their new values.
 * Pages must have been registered as meta, leaf, then levels 1 and up.
 */
static void
insert_step_record(TreeCtx *ctx, const TreePath *path, const char *packed,
				   const StagedRow *rows, int64 nrows, bool batch_done,
				   bool raft_progress, bool intent_progress)
{
	const StreamLayout *layout = ctx->layout;
	TabPlusMeta *meta = ctx->meta;
	StringInfoData buf;
	uint8		flags = 0;
	uint8		nlevels = (uint8) (path->height - 1);
	uint16		nagg = (uint16) layout->nagg;
	uint32		n32 = (uint32) nrows;
	char	   *single = palloc(TABPLUS_SINGLE_DELTA_MAX(layout->nagg) + 1);
	Size		single_len = 0;
	int			k;

	/* a single-row commit's step: the event's compact delta instead */
	if (nrows == 1 && tabplus_single_delta_encode(layout, packed, single, &single_len))
		flags |= TABPLUS_INSERT_SINGLE_DELTA;
	if (batch_done)
		flags |= TABPLUS_INSERT_BATCH_DONE;
	if (raft_progress)
		flags |= TABPLUS_INSERT_RAFT_PROGRESS;
	if (intent_progress)
		flags |= TABPLUS_INSERT_INTENT_PROGRESS;

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, (char *) &flags, 1);
	appendBinaryStringInfo(&buf, (char *) &nlevels, 1);
	appendBinaryStringInfo(&buf, (char *) &nagg, sizeof(nagg));
	for (k = 0; k < layout->nagg; k++)
	{
		uint8		kind = (uint8) layout->aggkinds[k];

		appendBinaryStringInfo(&buf, (char *) &kind, 1);
	}
	for (k = 1; k < path->height; k++)
	{
		uint16		idx = (uint16) path->idx[k];

		appendBinaryStringInfo(&buf, (char *) &idx, sizeof(idx));
	}
	if (flags & TABPLUS_INSERT_SINGLE_DELTA)
		appendBinaryStringInfo(&buf, single, single_len);
	else
		appendBinaryStringInfo(&buf, packed, tabplus_summary_packed_size(layout));
	if (raft_progress)
	{
		appendBinaryStringInfo(&buf, (char *) &meta->applying_index, sizeof(uint64));
		appendBinaryStringInfo(&buf, (char *) &meta->applying_done, sizeof(int64));
		appendBinaryStringInfo(&buf, (char *) &meta->applied_index, sizeof(uint64));
	}
	if (intent_progress)
	{
		appendBinaryStringInfo(&buf, (char *) &meta->intent_id, sizeof(uint64));
		appendBinaryStringInfo(&buf, (char *) &meta->intent_done, sizeof(int64));
	}
	appendBinaryStringInfo(&buf, (char *) &n32, sizeof(n32));
	{
		Size		bytes = 0;
		char	   *p;

		for (k = 0; k < nrows; k++)
			bytes += sizeof(uint16) + rows[k].len;
		enlargeStringInfo(&buf, bytes);
		p = buf.data + buf.len;
		for (k = 0; k < nrows; k++)
		{
			uint16		len = (uint16) rows[k].len;

			memcpy(p, &len, sizeof(len));
			memcpy(p + sizeof(len), rows[k].data, len);
			p += sizeof(len) + len;
		}
		buf.len += bytes;
	}
	ctx->wal.logical = buf.data;
	ctx->wal.logical_len = buf.len;
}

/*
 * Apply a batch of events sorted by (time, arrival).
 *
 * The caller normally holds the stream lock in ExclusiveLock
 * (*stream_locked true).  A single event may come without it: one insert
 * step is atomic for readers, whose page-at-a-time reads then see it or
 * not.  A split or a new leaf is not (an aggregate descending through a
 * parent read before the split would miss the moved events), so before a
 * structural step the lock is taken here and *stream_locked set; the
 * caller releases it.
 *
 * A single-node batch applied after its commit (intent_id > 0, see
 * tabplus_intent.c) is tracked the same way in intent_id/intent_done, and
 * the step that completes it names the intent in its WAL record.
 *
 * A batch from the Raft log (log_index > 0) is applied exactly once: every
 * step records in the meta page, in the same WAL record, how many of the
 * entry's events are in, so after a crash the same entry (sorted the same
 * way) resumes where it stopped, and an entry already applied is skipped.
 */
void
tabplus_apply_batch(Relation rel, const StreamLayout *layout,
					StagedRow *rows, int64 nrows, uint64 log_index,
					uint64 intent_id, bool *stream_locked)
{
	TreeCtx		ctx;
	MemoryContext oldcxt;
	int64		i = 0;

	if (nrows == 0)
		return;

	ctx.rel = rel;
	ctx.layout = layout;
	/* kept for the backend's life: a single-event commit would otherwise create and delete one */
	if (apply_step_context == NULL)
		apply_step_context = AllocSetContextCreate(TopMemoryContext, "TAB+ apply step",
												   ALLOCSET_DEFAULT_SIZES);
	MemoryContextReset(apply_step_context);
	ctx.stepcxt = apply_step_context;
	tabplus_wal_init(&ctx.wal, rel);
	oldcxt = MemoryContextSwitchTo(ctx.stepcxt);

	{
		TabPlusMeta meta;

		if (!tabplus_read_meta(rel, &meta))
			tree_create(&ctx);
		else if (log_index > 0)
		{
			if (meta.applied_index >= log_index)
				i = nrows;		/* applied before a restart */
			else if (meta.applying_index == log_index)
				i = Min(meta.applying_done, nrows);
		}
		else if (intent_id > 0 && meta.intent_id == intent_id)
			i = Min(meta.intent_done, nrows);	/* resumed after a crash */
	}

	while (i < nrows)
	{
		TreePath	path;
		Page		leaf;
		EventSummary *delta;
		TabPlusEntry e;
		char	   *packed;
		int64		first;
		int			pos;
		int			level;
		TabPlusMeta *meta;

		step_begin(&ctx);
		meta = ctx.meta;
		tree_descend(&ctx, rows[i].ts, &path);
		leaf = tabplus_wal_register(&ctx.wal, ReadBuffer(rel, path.blk[0]), false);

		if (tabplus_leaf_free(leaf) < rows[i].len + sizeof(uint16))
		{
			if (!*stream_locked)
			{
				/* never wait for a heavyweight lock holding buffer locks */
				path_release(&path);
				tabplus_wal_release(&ctx.wal);
				MemoryContextReset(ctx.stepcxt);
				LockPage(rel, TABPLUS_META_BLOCK, ExclusiveLock);
				*stream_locked = true;
				continue;
			}
			leaf_make_room(&ctx, &path, leaf, rows + i, nrows - i);
			path_release(&path);
			step_finish(&ctx);
			continue;
		}

		delta = summary_alloc(layout);
		first = i;
		pos = 0;
		while (i < nrows)
		{
			StagedRow  *r = &rows[i];

			if (path.has_hi && r->ts >= path.hi)
				break;
			if (tabplus_leaf_free(leaf) < r->len + sizeof(uint16))
				break;
			pos = tabplus_leaf_upper_bound(leaf, r->ts, pos);
			if (!tabplus_leaf_insert(leaf, pos, r->data, r->len))
				elog(ERROR, "TAB+ leaf insert failed");
			pos++;
			tabplus_meta_add_event(meta, r->ts);
			i++;
		}
		event_summary_add_rows(layout, delta, rows + first, i - first);

		/*
		 * The path gets the delta as the WAL record carries it (packed), so
		 * that redo, which merges the same packed delta, writes the same
		 * bytes.
		 */
		packed = palloc(tabplus_summary_packed_size(layout));
		tabplus_summary_pack(layout, delta, packed);
		tabplus_summary_unpack(layout, packed, delta);
		e.sum = summary_alloc(layout);
		for (level = 1; level < path.height; level++)
		{
			Page		node = tabplus_wal_register(&ctx.wal,
													path_buffer(&ctx, &path, level), false);

			tabplus_entry_get(node, path.idx[level], layout, &e);
			event_summary_merge(layout, e.sum, delta);
			tabplus_entry_put(node, path.idx[level], layout, &e);
		}
		if (log_index > 0)
		{
			meta->applying_index = log_index;
			meta->applying_done = i;
			if (i == nrows)
				meta->applied_index = log_index;
		}
		if (intent_id > 0)
		{
			/*
			 * Progress goes in the meta page only under the stream lock:
			 * an unlocked single event completes in this one step, and
			 * must not overwrite the progress of a locked batch.
			 */
			if (*stream_locked)
			{
				meta->intent_id = intent_id;
				meta->intent_done = i;
			}
			if (i == nrows)
				ctx.wal.completes_intent = intent_id;
		}
		if (i == nrows)
			meta->batches++;
		insert_step_record(&ctx, &path, packed, rows + first, i - first,
						   i == nrows, log_index > 0,
						   intent_id > 0 && *stream_locked);
		step_finish(&ctx);
	}

	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(ctx.stepcxt);
}

/*
 * The leaf where an event with time ts would be inserted: every event before
 * that position has a time <= ts, every event after it a time > ts.  The
 * caller holds the stream lock.
 */
BlockNumber
tabplus_find_leaf(Relation rel, const StreamLayout *layout, const TabPlusMeta *meta, int64 ts)
{
	PGAlignedBlock page;
	BlockNumber blk = meta->root;
	int			level;
	TabPlusEntry e;

	e.sum = palloc(event_summary_size(layout));
	for (level = meta->height - 1; level >= 1; level--)
	{
		tabplus_read_page(rel, blk, page.data);
		if (!tabplus_page_is(page.data, TABPLUS_PAGE_INTERNAL))
			elog(ERROR, "TAB+ block %u of \"%s\" is not an index page",
				 blk, RelationGetRelationName(rel));
		tabplus_entry_get(page.data, tabplus_internal_route(page.data, layout, ts), layout, &e);
		blk = e.child;
	}
	pfree(e.sum);
	return blk;
}

/* ------------------------------------------------------------ aggregates */

typedef struct AggWalk
{
	Relation	rel;
	const StreamLayout *layout;
	bool		has_from;
	int64		from;
	bool		has_to;
	int64		to;
	EventSummary *result;
	EventSummary *scratch;
	int64		pages;
} AggWalk;

static void
aggregate_node(AggWalk *walk, BlockNumber blk, int level)
{
	PGAlignedBlock *page = palloc(sizeof(PGAlignedBlock));
	const StreamLayout *layout = walk->layout;

	tabplus_read_page(walk->rel, blk, page->data);
	if (!tabplus_page_is(page->data, level == 0 ? TABPLUS_PAGE_LEAF : TABPLUS_PAGE_INTERNAL))
		elog(ERROR, "TAB+ block %u of \"%s\" is not a level %d page",
			 blk, RelationGetRelationName(walk->rel), level);
	walk->pages++;

	if (level == 0)
	{
		int			n = tabplus_leaf_nrows(page->data);
		int			pos = walk->has_from ? tabplus_leaf_lower_bound(page->data, walk->from) : 0;

		for (; pos < n; pos++)
		{
			char	   *row = tabplus_leaf_row(page->data, pos);

			if (walk->has_to && row_get_time(row) >= walk->to)
				break;
			event_summary_add_row(layout, walk->result, row);
		}
	}
	else
	{
		int			n = tabplus_internal_nentries(page->data, layout);
		int			i;
		TabPlusEntry e;

		e.sum = palloc(event_summary_size(layout));
		for (i = 0; i < n; i++)
		{
			bool		inside;
			bool		overlaps;

			tabplus_entry_get(page->data, i, layout, &e);
			if (e.sum->count == 0)
				continue;
			inside = (!walk->has_from || e.sum->min_ts >= walk->from) &&
				(!walk->has_to || e.sum->max_ts < walk->to);
			overlaps = (!walk->has_from || e.sum->max_ts >= walk->from) &&
				(!walk->has_to || e.sum->min_ts < walk->to);
			if (inside)
				event_summary_merge(layout, walk->result, e.sum);
			else if (overlaps)
				aggregate_node(walk, e.child, level - 1);
		}
		pfree(e.sum);
	}
	pfree(page);
}

/*
 * Aggregate the events with from <= time < to (a missing bound is
 * unbounded) into result, reading O(height) pages: entries wholly inside the
 * interval contribute their stored aggregates; only entries straddling a
 * bound are descended.  The caller holds the stream lock in ShareLock.
 */
void
tabplus_aggregate(Relation rel, const StreamLayout *layout,
				  bool has_from, int64 from, bool has_to, int64 to,
				  EventSummary *result, int64 *pages_read)
{
	TabPlusMeta meta;
	AggWalk		walk;

	event_summary_init(layout, result);
	if (pages_read)
		*pages_read = 0;
	if (!tabplus_read_meta(rel, &meta) || meta.count == 0)
		return;
	if (has_from && has_to && from >= to)
		return;

	walk.rel = rel;
	walk.layout = layout;
	walk.has_from = has_from;
	walk.from = from;
	walk.has_to = has_to;
	walk.to = to;
	walk.result = result;
	walk.pages = 1;
	aggregate_node(&walk, meta.root, meta.height - 1);
	if (pages_read)
		*pages_read = walk.pages;
}
