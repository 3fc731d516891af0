/*-------------------------------------------------------------------------
 *
 * tabplus_xlog.c
 *	  Multi-page atomic changes to TAB+ pages and their WAL resource manager.
 *
 * Every change to the tree is one WAL record covering every page it touches
 * (a leaf, the index entries on its path and the meta page, or all pages of
 * a split cascade), so the tree and its aggregates are consistent at every
 * record boundary: crash recovery never sees a leaf whose parent aggregates
 * disagree with it.  Generic WAL would do, but it caps a record at four
 * pages, fewer than a split cascade of a tall tree needs; this resource
 * manager (id RM_CHRONICLE_ID) takes up to TABPLUS_WAL_MAX_PAGES.
 *
 * Protocol, as with generic WAL: tabplus_wal_register() exclusive-locks a
 * buffer and hands back a private working copy; all edits go to copies; an
 * ERROR before tabplus_wal_finish() leaves shared buffers untouched.
 * Until then the locked buffer is the original image, so tabplus_wal_finish()
 * encodes each page's delta (tabplus_page.c) against it and, inside a
 * critical section, copies in only the changed regions, dirties the buffers
 * and writes one record carrying the deltas, then releases the buffers.
 *
 * Record layout: main data = uint16 number of pages; per changed page, block
 * data = its delta fragments (absent when the page is logged as a full-page
 * image).  New pages are registered REGBUF_WILL_INIT and replayed onto a
 * zeroed page.  Registered pages that did not change are left out.  A record
 * that completes a single-node commit intent carries the intent's id after
 * the page count (tabplus_intent.c).  The library must be preloaded
 * (shared_preload_libraries) so that the startup process can replay these
 * records; the rmgr is registered from _PG_init.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/bufmask.h"
#include "access/xlog_internal.h"
#include "access/xloginsert.h"
#include "access/xlogreader.h"
#include "access/xlogutils.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "utils/memutils.h"

#include "tabplus/tabplus.h"

#define DELTA_SPACE (BLCKSZ + 64)

/*
 * Working copies and delta space, allocated once per backend: about 500 kB
 * that a single-row commit would otherwise allocate and free every time.
 */
static PGAlignedBlock *wal_work = NULL;
static char *wal_deltas = NULL;

void
tabplus_wal_init(TabPlusWal *w, Relation rel)
{
	if (wal_work == NULL)
	{
		wal_work = MemoryContextAlloc(TopMemoryContext,
									  sizeof(PGAlignedBlock) * TABPLUS_WAL_MAX_PAGES);
		wal_deltas = MemoryContextAlloc(TopMemoryContext,
										DELTA_SPACE * TABPLUS_WAL_MAX_PAGES);
	}
	w->rel = rel;
	w->npages = 0;
	w->work = wal_work;
	w->deltas = wal_deltas;
	w->completes_intent = 0;
	w->logical = NULL;
	w->logical_len = 0;
}

/*
 * Copy a page without its hole (between pd_lower and pd_upper): no page
 * primitive reads the hole, and a nearly empty meta or flank page is then
 * a few hundred bytes to copy instead of BLCKSZ.  The copy's hole is left
 * as it was; tabplus_wal_finish() zeroes it before a whole-page copy back.
 */
static bool
page_has_hole(Page page)
{
	PageHeader	hdr = (PageHeader) page;

	return hdr->pd_lower >= SizeOfPageHeaderData && hdr->pd_lower <= hdr->pd_upper &&
		hdr->pd_upper <= BLCKSZ;
}

static void
copy_page_contents(char *dst, Page src)
{
	PageHeader	hdr = (PageHeader) src;

	if (!page_has_hole(src))
	{
		memcpy(dst, src, BLCKSZ);
		return;
	}
	memcpy(dst, src, hdr->pd_lower);
	memcpy(dst + hdr->pd_upper, (char *) src + hdr->pd_upper, BLCKSZ - hdr->pd_upper);
}

/*
 * Register a pinned buffer for modification: lock it and return a working
 * copy.  A buffer registered twice returns the same copy.  For a new page the
 * copy starts zeroed and the caller initialises it.
 */
Page
tabplus_wal_register(TabPlusWal *w, Buffer buf, bool isnew)
{
	int			i;

	for (i = 0; i < w->npages; i++)
	{
		if (w->buffers[i] == buf)
		{
			ReleaseBuffer(buf);	/* the caller's extra pin */
			return (Page) w->work[i].data;
		}
	}
	if (w->npages >= TABPLUS_WAL_MAX_PAGES)
		elog(ERROR, "TAB+ change touches more than %d pages", TABPLUS_WAL_MAX_PAGES);

	LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	i = w->npages++;
	w->buffers[i] = buf;
	w->isnew[i] = isnew;
	/* the locked buffer itself stays the original until the step is done */
	if (isnew)
		memset(w->work[i].data, 0, BLCKSZ);
	else
		copy_page_contents(w->work[i].data, BufferGetPage(buf));
	return (Page) w->work[i].data;
}

/* Drop all registrations without changing anything. */
void
tabplus_wal_release(TabPlusWal *w)
{
	int			i;

	for (i = 0; i < w->npages; i++)
		UnlockReleaseBuffer(w->buffers[i]);
	w->npages = 0;
}

void
tabplus_wal_finish(TabPlusWal *w)
{
	bool		needwal = RelationNeedsWAL(w->rel);
	Size		dlen[TABPLUS_WAL_MAX_PAGES];
	bool		changed[TABPLUS_WAL_MAX_PAGES];
	int			nchanged = 0;
	int			i;

	if (w->npages == 0)
		return;

	for (i = 0; i < w->npages; i++)
	{
		/* a logical record names every page and needs no byte deltas */
		if (w->logical != NULL)
		{
			dlen[i] = 0;
			changed[i] = true;
			nchanged++;
			continue;
		}
		dlen[i] = tabplus_delta_encode(w->isnew[i] ? NULL : BufferGetPage(w->buffers[i]),
									   w->work[i].data, w->deltas + i * DELTA_SPACE);
		changed[i] = w->isnew[i] || dlen[i] > 0;
		if (changed[i])
			nchanged++;
	}
	if (nchanged == 0)
	{
		tabplus_wal_release(w);
		return;
	}
	if (needwal)
		XLogEnsureRecordSpace(w->npages - 1, w->npages + 1);

	START_CRIT_SECTION();
	for (i = 0; i < w->npages; i++)
	{
		if (!changed[i])
			continue;
		if (w->logical != NULL && !w->isnew[i])
			copy_page_contents(BufferGetPage(w->buffers[i]), w->work[i].data);
		/* only the changed regions move: the delta just computed says which */
		else if (w->isnew[i] ||
			!tabplus_delta_apply(BufferGetPage(w->buffers[i]), w->deltas + i * DELTA_SPACE, dlen[i]))
		{
			PageHeader	hdr = (PageHeader) w->work[i].data;

			if (page_has_hole(w->work[i].data))
				memset(w->work[i].data + hdr->pd_lower, 0, hdr->pd_upper - hdr->pd_lower);
			memcpy(BufferGetPage(w->buffers[i]), w->work[i].data, BLCKSZ);
		}
		MarkBufferDirty(w->buffers[i]);
	}
	if (needwal)
	{
		XLogRecPtr	lsn;
		uint16		npages = (uint16) nchanged;
		int			block_id = 0;

		XLogBeginInsert();
		if (w->logical != NULL)
		{
			/* every page in registration order; redo recomputes them */
			if (w->completes_intent != 0)
				w->logical[0] |= TABPLUS_INSERT_COMPLETES_INTENT;
			XLogRegisterData(w->logical, w->logical_len);
			if (w->completes_intent != 0)
				XLogRegisterData((char *) &w->completes_intent, sizeof(uint64));
			for (i = 0; i < w->npages; i++)
				XLogRegisterBuffer(i, w->buffers[i], REGBUF_STANDARD);
			lsn = XLogInsert(RM_CHRONICLE_ID, XLOG_TABPLUS_INSERT);
		}
		else
		{
			XLogRegisterData((char *) &npages, sizeof(npages));
			if (w->completes_intent != 0)
				XLogRegisterData((char *) &w->completes_intent, sizeof(uint64));
			for (i = 0; i < w->npages; i++)
			{
				if (!changed[i])
					continue;
				XLogRegisterBuffer(block_id, w->buffers[i],
								   REGBUF_STANDARD | (w->isnew[i] ? REGBUF_WILL_INIT : 0));
				/* not logged when the page goes in as a full-page image */
				if (dlen[i] > 0)
					XLogRegisterBufData(block_id, w->deltas + i * DELTA_SPACE, dlen[i]);
				block_id++;
			}
			lsn = XLogInsert(RM_CHRONICLE_ID, XLOG_TABPLUS_PAGES);
		}
		for (i = 0; i < w->npages; i++)
			if (changed[i])
				PageSetLSN(BufferGetPage(w->buffers[i]), lsn);
	}
	END_CRIT_SECTION();

	w->completes_intent = 0;
	w->logical = NULL;
	w->logical_len = 0;
	tabplus_wal_release(w);
}

/* ------------------------------------------------------------------ redo */

/*
 * One event's delta, compactly, for the insert record of a single event:
 * per aggregated column one byte (1: a value follows, 0: NULL) and the
 * value's 8 bytes as that event's summary holds it (imin, or fmin's bits);
 * the count and time range come from the event itself.  A single-row
 * commit logs this instead of the packed summary (about 100 bytes less
 * for two numeric columns).
 *
 * Encode writes at most TABPLUS_SINGLE_DELTA_MAX bytes to out and sets
 * *outlen; it returns false when the summary is not one event's or when
 * decoding would not give back exactly the packed bytes (redo must write
 * what the primary wrote): the caller then logs the packed summary.
 */
bool
tabplus_single_delta_encode(const StreamLayout *layout, const char *packed, char *out,
							Size *outlen)
{
	EventSummary *sum = palloc(event_summary_size(layout));
	char	   *check = palloc(tabplus_summary_packed_size(layout));
	Size		len = 0;
	bool		ok;
	int			k;

	tabplus_summary_unpack(layout, packed, sum);
	if (sum->count != 1)
		return false;
	for (k = 0; k < layout->nagg; k++)
	{
		const ColumnAgg *c = &sum->cols[k];
		int64		raw;

		out[len++] = c->count > 0 ? 1 : 0;
		if (c->count == 0)
			continue;
		if (layout->aggkinds[k] == STREAM_AGG_INT)
			raw = c->imin;
		else
			memcpy(&raw, &c->fmin, sizeof(raw));
		memcpy(out + len, &raw, sizeof(raw));
		len += sizeof(raw);
	}
	ok = tabplus_single_delta_decode(layout, sum->min_ts, out, len, check) == len &&
		memcmp(check, packed, tabplus_summary_packed_size(layout)) == 0;
	pfree(sum);
	pfree(check);
	*outlen = len;
	return ok;
}

/*
 * The packed summary of the event with time ts from its compact delta;
 * returns the bytes read, or 0 when in is malformed.
 */
Size
tabplus_single_delta_decode(const StreamLayout *layout, int64 ts, const char *in, Size avail,
							char *packed)
{
	EventSummary *sum = palloc(event_summary_size(layout));
	bool	   *present = palloc(sizeof(bool) * Max(layout->nagg, 1));
	int64	   *raw = palloc0(sizeof(int64) * Max(layout->nagg, 1));
	Size		len = 0;
	int			k;

	for (k = 0; k < layout->nagg; k++)
	{
		if (len + 1 > avail)
			return 0;
		present[k] = in[len++] != 0;
		if (!present[k])
			continue;
		if (len + sizeof(int64) > avail)
			return 0;
		memcpy(&raw[k], in + len, sizeof(int64));
		len += sizeof(int64);
	}
	event_summary_init(layout, sum);
	event_summary_add_values(layout, sum, ts, present, raw);
	tabplus_summary_pack(layout, sum, packed);
	pfree(sum);
	pfree(present);
	pfree(raw);
	return len;
}

/*
 * Redo of an insert step (see insert_step_record in tabplus.c): block 0 is
 * the meta page, block 1 the leaf, block 1 + L the page on level L.  Each
 * page is changed by the same primitives, in the same order, as when the
 * step was applied.
 */
static void
tabplus_insert_redo(XLogReaderState *record)
{
	char	   *p = XLogRecGetData(record);
	char	   *end = p + XLogRecGetDataLen(record);
	XLogRecPtr	lsn = record->EndRecPtr;
	uint8		flags;
	uint8		nlevels;
	uint16		nagg;
	uint16	   *idx;
	char	   *packed;
	char	   *single = NULL;	/* TABPLUS_INSERT_SINGLE_DELTA */
	Size		single_len = 0;
	uint64		applying_index = 0;
	int64		applying_done = 0;
	uint64		applied_index = 0;
	uint64		intent_id = 0;
	int64		intent_done = 0;
	uint64		completes = 0;
	uint32		nrows;
	char	   *rowdata;
	StreamLayout *layout;
	EventSummary *delta;
	TabPlusEntry e;
	int			block_id;
	int			k;


	tabplus_redo_take(&p, end, &flags, 1);
	tabplus_redo_take(&p, end, &nlevels, 1);
	tabplus_redo_take(&p, end, &nagg, sizeof(nagg));
	layout = palloc0(offsetof(StreamLayout, cols));
	layout->nagg = nagg;
	layout->aggkinds = palloc(sizeof(StreamAggKind) * Max(nagg, 1));
	for (k = 0; k < nagg; k++)
	{
		uint8		kind;

		tabplus_redo_take(&p, end, &kind, 1);
		layout->aggkinds[k] = (StreamAggKind) kind;
	}
	idx = palloc(sizeof(uint16) * Max(nlevels, 1));
	tabplus_redo_take(&p, end, idx, sizeof(uint16) * nlevels);
	if (flags & TABPLUS_INSERT_SINGLE_DELTA)
	{
		/* decoded below, once the event (its time) is at hand */
		single = p;
		for (k = 0; k < nagg; k++)
		{
			uint8		present;

			tabplus_redo_take(&p, end, &present, 1);
			if (present)
			{
				if (p + sizeof(int64) > end)
					elog(PANIC, "chronicle_raft redo: insert record too short");
				p += sizeof(int64);
			}
		}
		single_len = p - single;
		packed = NULL;
	}
	else
	{
		packed = p;
		p += tabplus_summary_packed_size(layout);
	}
	if (flags & TABPLUS_INSERT_RAFT_PROGRESS)
	{
		tabplus_redo_take(&p, end, &applying_index, sizeof(uint64));
		tabplus_redo_take(&p, end, &applying_done, sizeof(int64));
		tabplus_redo_take(&p, end, &applied_index, sizeof(uint64));
	}
	if (flags & TABPLUS_INSERT_INTENT_PROGRESS)
	{
		tabplus_redo_take(&p, end, &intent_id, sizeof(uint64));
		tabplus_redo_take(&p, end, &intent_done, sizeof(int64));
	}
	tabplus_redo_take(&p, end, &nrows, sizeof(nrows));
	rowdata = p;
	if (flags & TABPLUS_INSERT_COMPLETES_INTENT)
	{
		if (end - p < (ptrdiff_t) sizeof(uint64))
			elog(PANIC, "chronicle_raft redo: insert record too short");
		memcpy(&completes, end - sizeof(uint64), sizeof(uint64));
		end -= sizeof(uint64);
	}
	if (single != NULL)
	{
		if (nrows != 1 || rowdata + sizeof(uint16) + sizeof(int64) > end)
			elog(PANIC, "chronicle_raft redo: malformed single-event insert record");
		packed = palloc(tabplus_summary_packed_size(layout));
		if (tabplus_single_delta_decode(layout, row_get_time(rowdata + sizeof(uint16)),
										single, single_len, packed) != single_len)
			elog(PANIC, "chronicle_raft redo: malformed single-event delta");
	}
	else if (packed > end)
		elog(PANIC, "chronicle_raft redo: insert record too short");
	delta = palloc(event_summary_size(layout));
	tabplus_summary_unpack(layout, packed, delta);
	e.sum = palloc(event_summary_size(layout));

	for (block_id = 0; block_id <= XLogRecMaxBlockId(record); block_id++)
	{
		Buffer		buf;
		Page		page;

		if (XLogReadBufferForRedo(record, block_id, &buf) == BLK_NEEDS_REDO)
		{
			const char *r = rowdata;
			int			pos = 0;
			uint32		n;

			page = BufferGetPage(buf);
			for (n = 0; n < nrows && (block_id == 0 || block_id == 1); n++)
			{
				uint16		len;

				if (r + sizeof(len) > end)
					elog(PANIC, "chronicle_raft redo: insert record too short");
				memcpy(&len, r, sizeof(len));
				r += sizeof(len);
				if (r + len > end || len < sizeof(int64))
					elog(PANIC, "chronicle_raft redo: insert record too short");
				if (block_id == 0)
					tabplus_meta_add_event(TabPlusPageGetMeta(page), row_get_time(r));
				else
				{
					pos = tabplus_leaf_upper_bound(page, row_get_time(r), pos);
					if (!tabplus_leaf_insert(page, pos, r, len))
						elog(PANIC, "chronicle_raft redo: leaf insert failed");
					pos++;
				}
				r += len;
			}
			if (block_id == 0)
			{
				TabPlusMeta *meta = TabPlusPageGetMeta(page);

				if (flags & TABPLUS_INSERT_RAFT_PROGRESS)
				{
					meta->applying_index = applying_index;
					meta->applying_done = applying_done;
					meta->applied_index = applied_index;
				}
				if (flags & TABPLUS_INSERT_INTENT_PROGRESS)
				{
					meta->intent_id = intent_id;
					meta->intent_done = intent_done;
				}
				if (flags & TABPLUS_INSERT_BATCH_DONE)
					meta->batches++;
			}
			else if (block_id >= 2)
			{
				if (block_id - 2 >= nlevels)
					elog(PANIC, "chronicle_raft redo: insert record has too many blocks");
				tabplus_entry_get(page, idx[block_id - 2], layout, &e);
				event_summary_merge(layout, e.sum, delta);
				tabplus_entry_put(page, idx[block_id - 2], layout, &e);
			}
			PageSetLSN(page, lsn);
			MarkBufferDirty(buf);
		}
		if (BufferIsValid(buf))
			UnlockReleaseBuffer(buf);
	}
	if (completes != 0)
		tabplus_intent_redo_completed(completes);
	pfree(idx);
	pfree(delta);
	pfree(e.sum);
	if (single != NULL)
		pfree(packed);
	pfree(layout->aggkinds);
	pfree(layout);
}

static void
tabplus_redo(XLogReaderState *record)
{
	uint8		info = XLogRecGetInfo(record) & ~XLR_INFO_MASK;
	XLogRecPtr	lsn = record->EndRecPtr;
	int			block_id;

	if (info == XLOG_TABPLUS_INTENT)
	{
		tabplus_intent_redo(record);
		return;
	}
	if (info == XLOG_TABPLUS_INSERT)
	{
		tabplus_insert_redo(record);
		return;
	}
	if (info != XLOG_TABPLUS_PAGES)
		elog(PANIC, "chronicle_raft redo: unknown record type %u", info);

	for (block_id = 0; block_id <= XLogRecMaxBlockId(record); block_id++)
	{
		Buffer		buf;
		XLogRedoAction action;

		if (!XLogRecHasBlockRef(record, block_id))
			continue;

		if (XLogRecGetBlock(record, block_id)->flags & BKPBLOCK_WILL_INIT)
		{
			buf = XLogInitBufferForRedo(record, block_id);
			action = BLK_NEEDS_REDO;
		}
		else
			action = XLogReadBufferForRedo(record, block_id, &buf);

		if (action == BLK_NEEDS_REDO)
		{
			Page		page = BufferGetPage(buf);
			Size		len = 0;
			char	   *data = XLogRecGetBlockData(record, block_id, &len);

			if (len > 0 && !tabplus_delta_apply(page, data, len))
				elog(PANIC, "chronicle_raft redo: malformed page delta");
			PageSetLSN(page, lsn);
			MarkBufferDirty(buf);
		}
		if (BufferIsValid(buf))
			UnlockReleaseBuffer(buf);
	}

	if (XLogRecGetDataLen(record) >= sizeof(uint16) + sizeof(uint64))
	{
		uint64		intent_id;

		memcpy(&intent_id, XLogRecGetData(record) + sizeof(uint16), sizeof(uint64));
		tabplus_intent_redo_completed(intent_id);
	}
}

static void
tabplus_desc(StringInfo buf, XLogReaderState *record)
{
	uint8		info = XLogRecGetInfo(record) & ~XLR_INFO_MASK;
	uint16		npages;

	if (info == XLOG_TABPLUS_INTENT || info == XLOG_TABPLUS_INSERT)
	{
		appendStringInfo(buf, "%s %u bytes",
						 info == XLOG_TABPLUS_INTENT ? "intent" : "insert step",
						 XLogRecGetDataLen(record));
		return;
	}
	memcpy(&npages, XLogRecGetData(record), sizeof(npages));
	appendStringInfo(buf, "pages %u", npages);
	if (XLogRecGetDataLen(record) >= sizeof(uint16) + sizeof(uint64))
	{
		uint64		intent_id;

		memcpy(&intent_id, XLogRecGetData(record) + sizeof(uint16), sizeof(uint64));
		appendStringInfo(buf, ", completes intent %X/%X",
						 (uint32) (intent_id >> 32), (uint32) intent_id);
	}
}

static const char *
tabplus_identify(uint8 info)
{
	if ((info & ~XLR_INFO_MASK) == XLOG_TABPLUS_PAGES)
		return "TABPLUS_PAGES";
	if ((info & ~XLR_INFO_MASK) == XLOG_TABPLUS_INTENT)
		return "TABPLUS_INTENT";
	if ((info & ~XLR_INFO_MASK) == XLOG_TABPLUS_INSERT)
		return "TABPLUS_INSERT";
	return NULL;
}

static void
tabplus_mask(char *pagedata, BlockNumber blkno)
{
	mask_page_lsn_and_checksum(pagedata);
	mask_page_hint_bits(pagedata);
	mask_unused_space(pagedata);
}

static RmgrData tabplus_rmgr = {
	.rm_name = "chronicle_raft",
	.rm_redo = tabplus_redo,
	.rm_desc = tabplus_desc,
	.rm_identify = tabplus_identify,
	.rm_startup = tabplus_intent_recovery_start,
	.rm_cleanup = tabplus_intent_recovery_end,
	.rm_mask = tabplus_mask,
	.rm_decode = NULL
};

void
tabplus_register_rmgr(void)
{
	RegisterCustomRmgr(RM_CHRONICLE_ID, &tabplus_rmgr);
}
