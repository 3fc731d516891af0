/*-------------------------------------------------------------------------
 *
 * stream_am.c
 *	  The "chronicle" table access method: append-only event streams stored
 *	  in a TAB+ tree.
 *
 * Writes never touch the tree directly: tuple_insert and multi_insert stage
 * encoded events for the transaction (staging.c), which applies them as one
 * sorted batch right after the commit record.  So rows of aborted transactions or rolled
 * back savepoints never reach storage, and a transaction does not see its
 * own uncommitted events.
 *
 * Scans walk the leaves left to right, copying one leaf at a time, while
 * holding the stream lock (see tabplus.c) in ShareLock from the first row to
 * the end of the scan: a scan sees each batch entirely or not at all and
 * never sees an event twice.  Scanned rows get TIDs derived from their leaf
 * position ((leaf * 4 + pos / 256), pos % 256 + 1); they are unique within a
 * scan but not stable across inserts, which is why everything that would
 * fetch a row by TID (indexes, row locks, UPDATE/DELETE, AFTER ROW triggers,
 * TID scans) is refused, here as a backstop and earlier in guard.c with a
 * precise message.
 *
 * No visibility information is stored: the tree only ever holds committed
 * events, so every snapshot sees everything in it.  stream_lock() first
 * applies batches committed before a crash (tabplus_intent.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/multixact.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/storage.h"
#include "catalog/storage_xlog.h"
#include "commands/defrem.h"
#include "commands/vacuum.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "optimizer/plancat.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "storage/smgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "am/stream.h"
#include "tabplus/tabplus.h"

PG_FUNCTION_INFO_V1(chronicle_am_handler);

static const TableAmRoutine stream_am_methods;

typedef struct StreamScanDescData
{
	TableScanDescData base;
	StreamLayout *layout;
	bool		started;
	bool		locked;
	BlockNumber next_leaf;
	BlockNumber cur_leaf;
	int			pos;
	int			nrows;
	/* optional event-time range [lo, hi], both inclusive (timescan.c) */
	bool		has_lo;
	bool		has_hi;
	bool		empty_range;
	bool		seek_lo;		/* position the first leaf at lo */
	int64		lo;
	int64		hi;
	MemoryContext rowcxt;		/* decoded values of the current row */
	PGAlignedBlock page;		/* copy of the current leaf */
} StreamScanDescData;

typedef StreamScanDescData *StreamScanDesc;

bool
relation_is_stream(Relation rel)
{
	return rel->rd_tableam == &stream_am_methods;
}

bool
relid_is_stream(Oid relid)
{
	HeapTuple	tup;
	Oid			amoid;
	bool		result = false;

	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		return false;
	amoid = ((Form_pg_class) GETSTRUCT(tup))->relam;
	ReleaseSysCache(tup);
	if (OidIsValid(amoid))
	{
		char	   *amname = get_am_name(amoid);

		result = (amname != NULL && strcmp(amname, "chronicle") == 0);
	}
	return result;
}

/* Open a relation that must be a stream. */
Relation
stream_open(Oid relid, LOCKMODE lockmode)
{
	Relation	rel = relation_open(relid, lockmode);

	if (rel->rd_rel->relkind != RELKIND_RELATION || !relation_is_stream(rel))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a stream", RelationGetRelationName(rel)),
				 errhint("Streams are tables created with CREATE TABLE ... USING chronicle.")));
	return rel;
}

void
stream_lock(Relation rel, bool exclusive)
{
	/* events committed before a crash are applied before anyone looks */
	tabplus_intent_resume(rel);
	LockPage(rel, TABPLUS_META_BLOCK, exclusive ? ExclusiveLock : ShareLock);
}

void
stream_unlock(Relation rel, bool exclusive)
{
	UnlockPage(rel, TABPLUS_META_BLOCK, exclusive ? ExclusiveLock : ShareLock);
}

StreamLayout *
stream_layout(Relation rel)
{
	return stream_layout_build(RelationGetDescr(rel), NULL);
}

static void
unsupported(Relation rel, const char *what, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("%s is not supported on stream \"%s\"", what,
					rel ? RelationGetRelationName(rel) : "?"),
			 errhint("%s", hint)));
}

#define HINT_APPEND_ONLY "Streams are append-only: use INSERT, COPY or chronicle.insert(), TRUNCATE or DROP TABLE."
#define HINT_NO_TID "Stream rows have no stable row identifier; query them by event time instead."

/* ------------------------------------------------------------------ slots */

static const TupleTableSlotOps *
stream_slot_callbacks(Relation relation)
{
	return &TTSOpsVirtual;
}

/* ------------------------------------------------------------------ scans */

static TableScanDesc
stream_scan_begin(Relation relation, Snapshot snapshot, int nkeys,
				  ScanKey key, ParallelTableScanDesc parallel_scan, uint32 flags)
{
	StreamScanDesc scan = palloc0(sizeof(StreamScanDescData));

	scan->base.rs_rd = relation;
	scan->base.rs_snapshot = snapshot;
	scan->base.rs_nkeys = nkeys;
	scan->base.rs_key = key;
	scan->base.rs_flags = flags;
	scan->base.rs_parallel = parallel_scan;
	scan->layout = stream_layout(relation);
	scan->rowcxt = AllocSetContextCreate(CurrentMemoryContext, "stream scan row",
										 ALLOCSET_SMALL_SIZES);
	scan->next_leaf = InvalidBlockNumber;
	return (TableScanDesc) scan;
}

/*
 * Restrict a scan that has not started to events with lo <= time <= hi
 * (each bound optional).  The scan starts at the leaf found by descending
 * the tree and stops at the first later event, so it reads O(log n + k)
 * pages for k matching events.
 */
void
stream_scan_set_range(TableScanDesc sscan, bool has_lo, int64 lo,
					  bool has_hi, int64 hi, bool empty)
{
	StreamScanDesc scan = (StreamScanDesc) sscan;

	Assert(!scan->started);
	scan->has_lo = has_lo;
	scan->lo = lo;
	scan->has_hi = has_hi;
	scan->hi = hi;
	scan->empty_range = empty || (has_lo && has_hi && lo > hi);
}

static void
stream_scan_release_lock(StreamScanDesc scan)
{
	if (scan->locked)
	{
		stream_unlock(scan->base.rs_rd, false);
		scan->locked = false;
	}
}

static void
stream_scan_end(TableScanDesc sscan)
{
	StreamScanDesc scan = (StreamScanDesc) sscan;

	stream_scan_release_lock(scan);
	MemoryContextDelete(scan->rowcxt);
	pfree(scan->layout);
	pfree(scan);
}

static void
stream_scan_rescan(TableScanDesc sscan, ScanKey key, bool set_params,
				   bool allow_strat, bool allow_sync, bool allow_pagemode)
{
	StreamScanDesc scan = (StreamScanDesc) sscan;

	stream_scan_release_lock(scan);
	scan->started = false;
	scan->seek_lo = false;
	scan->pos = 0;
	scan->nrows = 0;
	scan->next_leaf = InvalidBlockNumber;
}

static void
stream_store_row(StreamScanDesc scan, TupleTableSlot *slot)
{
	MemoryContext oldcxt;
	char	   *row = tabplus_leaf_row(scan->page.data, scan->pos);

	ExecClearTuple(slot);
	MemoryContextReset(scan->rowcxt);
	oldcxt = MemoryContextSwitchTo(scan->rowcxt);
	row_decode(scan->layout, row, slot->tts_values, slot->tts_isnull);
	MemoryContextSwitchTo(oldcxt);
	ExecStoreVirtualTuple(slot);
	ItemPointerSet(&slot->tts_tid, scan->cur_leaf * 4 + scan->pos / 256,
				   scan->pos % 256 + 1);
	scan->pos++;
}

static bool
stream_scan_getnextslot(TableScanDesc sscan, ScanDirection direction,
						TupleTableSlot *slot)
{
	StreamScanDesc scan = (StreamScanDesc) sscan;
	Relation	rel = scan->base.rs_rd;

	if (direction == BackwardScanDirection)
		unsupported(rel, "scanning backward", "Use a WITH HOLD or non-scrollable cursor, or ORDER BY ... DESC.");

	if (!scan->started)
	{
		TabPlusMeta meta;

		scan->started = true;
		if (scan->empty_range)
		{
			ExecClearTuple(slot);
			return false;
		}
		stream_lock(rel, false);
		scan->locked = true;
		if (tabplus_read_meta(rel, &meta))
		{
			scan->next_leaf = meta.leftmost_leaf;
			if (scan->has_lo && scan->lo > PG_INT64_MIN)
			{
				/* the insertion point of lo - 1 precedes every event >= lo */
				scan->next_leaf = tabplus_find_leaf(rel, scan->layout, &meta, scan->lo - 1);
				scan->seek_lo = true;
			}
		}
	}

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (scan->pos < scan->nrows)
		{
			if (scan->has_hi &&
				row_get_time(tabplus_leaf_row(scan->page.data, scan->pos)) > scan->hi)
			{
				/* events are in time order: nothing further matches */
				scan->nrows = 0;
				scan->next_leaf = InvalidBlockNumber;
				continue;
			}
			stream_store_row(scan, slot);
			return true;
		}
		if (scan->next_leaf == InvalidBlockNumber)
		{
			stream_scan_release_lock(scan);
			ExecClearTuple(slot);
			return false;
		}
		tabplus_read_page(rel, scan->next_leaf, scan->page.data);
		if (!tabplus_page_is(scan->page.data, TABPLUS_PAGE_LEAF))
			elog(ERROR, "TAB+ block %u of \"%s\" is not a leaf",
				 scan->next_leaf, RelationGetRelationName(rel));
		scan->cur_leaf = scan->next_leaf;
		scan->next_leaf = TabPlusPageGetOpaque(scan->page.data)->next;
		scan->nrows = tabplus_leaf_nrows(scan->page.data);
		scan->pos = 0;
		if (scan->seek_lo)
		{
			scan->pos = tabplus_leaf_lower_bound(scan->page.data, scan->lo);
			scan->seek_lo = false;
		}
	}
}

/* ---------------------------------------------------------------- analyze */

static bool
stream_scan_analyze_next_block(TableScanDesc sscan, BlockNumber blockno,
							   BufferAccessStrategy bstrategy)
{
	StreamScanDesc scan = (StreamScanDesc) sscan;
	Buffer		buf;

	scan->nrows = 0;
	scan->pos = 0;
	if (blockno == TABPLUS_META_BLOCK)
		return false;
	buf = ReadBufferExtended(sscan->rs_rd, MAIN_FORKNUM, blockno, RBM_NORMAL, bstrategy);
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	memcpy(scan->page.data, BufferGetPage(buf), BLCKSZ);
	UnlockReleaseBuffer(buf);
	if (!tabplus_page_is(scan->page.data, TABPLUS_PAGE_LEAF))
		return false;
	scan->cur_leaf = blockno;
	scan->nrows = tabplus_leaf_nrows(scan->page.data);
	return true;
}

static bool
stream_scan_analyze_next_tuple(TableScanDesc sscan, TransactionId OldestXmin,
							   double *liverows, double *deadrows,
							   TupleTableSlot *slot)
{
	StreamScanDesc scan = (StreamScanDesc) sscan;

	if (scan->pos >= scan->nrows)
		return false;
	stream_store_row(scan, slot);
	/* the sample outlives the row context: materialize */
	ExecMaterializeSlot(slot);
	*liverows += 1;
	return true;
}

/* ------------------------------------------------------- parallel scans */

/* Never planned (see guard.c); these keep the executor's contract. */
static Size
stream_parallelscan_estimate(Relation rel)
{
	return sizeof(ParallelBlockTableScanDescData);
}

static Size
stream_parallelscan_initialize(Relation rel, ParallelTableScanDesc pscan)
{
	unsupported(rel, "parallel scan", "Set max_parallel_workers_per_gather = 0.");
	return 0;
}

static void
stream_parallelscan_reinitialize(Relation rel, ParallelTableScanDesc pscan)
{
	unsupported(rel, "parallel scan", "Set max_parallel_workers_per_gather = 0.");
}

/* ------------------------------------------------------ fetch by TID */

static IndexFetchTableData *
stream_index_fetch_begin(Relation rel)
{
	unsupported(rel, "an index", "Streams are ordered by event time; use chronicle.aggregate() for ranges.");
	return NULL;
}

static void
stream_index_fetch_reset(IndexFetchTableData *scan)
{
}

static void
stream_index_fetch_end(IndexFetchTableData *scan)
{
}

static bool
stream_index_fetch_tuple(struct IndexFetchTableData *scan, ItemPointer tid,
						 Snapshot snapshot, TupleTableSlot *slot,
						 bool *call_again, bool *all_dead)
{
	unsupported(scan->rel, "an index", "Streams are ordered by event time; use chronicle.aggregate() for ranges.");
	return false;
}

static bool
stream_tuple_fetch_row_version(Relation relation, ItemPointer tid,
							   Snapshot snapshot, TupleTableSlot *slot)
{
	unsupported(relation, "fetching a row by ctid", HINT_NO_TID);
	return false;
}

static bool
stream_tuple_tid_valid(TableScanDesc scan, ItemPointer tid)
{
	unsupported(scan->rs_rd, "fetching a row by ctid", HINT_NO_TID);
	return false;
}

static void
stream_tuple_get_latest_tid(TableScanDesc sscan, ItemPointer tid)
{
	unsupported(sscan->rs_rd, "fetching a row by ctid", HINT_NO_TID);
}

static bool
stream_tuple_satisfies_snapshot(Relation rel, TupleTableSlot *slot, Snapshot snapshot)
{
	return true;
}

static TransactionId
stream_index_delete_tuples(Relation rel, TM_IndexDeleteOp *delstate)
{
	unsupported(rel, "an index", "Streams have no indexes.");
	return InvalidTransactionId;
}

/* ----------------------------------------------------------------- writes */

static void
stream_tuple_insert(Relation relation, TupleTableSlot *slot, CommandId cid,
					int options, BulkInsertState bistate)
{
	staging_add_slot(relation, slot);
}

static void
stream_tuple_insert_speculative(Relation relation, TupleTableSlot *slot,
								CommandId cid, int options,
								BulkInsertState bistate, uint32 specToken)
{
	unsupported(relation, "INSERT ... ON CONFLICT", HINT_APPEND_ONLY);
}

static void
stream_tuple_complete_speculative(Relation relation, TupleTableSlot *slot,
								  uint32 specToken, bool succeeded)
{
	unsupported(relation, "INSERT ... ON CONFLICT", HINT_APPEND_ONLY);
}

static void
stream_multi_insert(Relation relation, TupleTableSlot **slots, int ntuples,
					CommandId cid, int options, BulkInsertState bistate)
{
	int			i;

	for (i = 0; i < ntuples; i++)
		staging_add_slot(relation, slots[i]);
}

static TM_Result
stream_tuple_delete(Relation relation, ItemPointer tid, CommandId cid,
					Snapshot snapshot, Snapshot crosscheck, bool wait,
					TM_FailureData *tmfd, bool changingPart)
{
	unsupported(relation, "DELETE", HINT_APPEND_ONLY);
	return TM_Invisible;
}

static TM_Result
stream_tuple_update(Relation relation, ItemPointer otid, TupleTableSlot *slot,
					CommandId cid, Snapshot snapshot, Snapshot crosscheck,
					bool wait, TM_FailureData *tmfd, LockTupleMode *lockmode,
					bool *update_indexes)
{
	unsupported(relation, "UPDATE", HINT_APPEND_ONLY);
	return TM_Invisible;
}

static TM_Result
stream_tuple_lock(Relation relation, ItemPointer tid, Snapshot snapshot,
				  TupleTableSlot *slot, CommandId cid, LockTupleMode mode,
				  LockWaitPolicy wait_policy, uint8 flags,
				  TM_FailureData *tmfd)
{
	unsupported(relation, "locking rows", HINT_NO_TID);
	return TM_Invisible;
}

/* ---------------------------------------------------- storage and DDL */

static void
stream_relation_set_new_filenode(Relation rel, const RelFileNode *newrnode,
								 char persistence, TransactionId *freezeXid,
								 MultiXactId *minmulti)
{
	SMgrRelation srel;

	/* validate the definition: the first column is the event time etc. */
	pfree(stream_layout_build(RelationGetDescr(rel), RelationGetRelationName(rel)));
	if (persistence != RELPERSISTENCE_PERMANENT)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("stream \"%s\" must be a permanent table", RelationGetRelationName(rel)),
				 errhint("Streams are durable and replicated; TEMPORARY and UNLOGGED streams are not supported.")));
	if (rel->rd_rel->relispartition)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("stream \"%s\" cannot be a partition", RelationGetRelationName(rel)),
				 errhint("Create the stream as a standalone table.")));

	*freezeXid = InvalidTransactionId;
	*minmulti = InvalidMultiXactId;
	srel = RelationCreateStorage(*newrnode, persistence, true);
	smgrclose(srel);

	/* TRUNCATE: events staged earlier in this transaction go with the data */
	staging_truncate(RelationGetRelid(rel));
}

static void
stream_relation_nontransactional_truncate(Relation rel)
{
	RelationTruncate(rel, 0);
	tabplus_forget_tree(rel);
	staging_truncate(RelationGetRelid(rel));
}

static void
stream_relation_copy_data(Relation rel, const RelFileNode *newrnode)
{
	unsupported(rel, "ALTER TABLE ... SET TABLESPACE", "Create the stream in the target tablespace instead.");
}

static void
stream_relation_copy_for_cluster(Relation OldTable, Relation NewTable,
								 Relation OldIndex, bool use_sort,
								 TransactionId OldestXmin,
								 TransactionId *xid_cutoff,
								 MultiXactId *multi_cutoff,
								 double *num_tuples,
								 double *tups_vacuumed,
								 double *tups_recently_dead)
{
	unsupported(OldTable, "rewriting (VACUUM FULL, CLUSTER)",
				"Streams are never fragmented by deletes; plain VACUUM has nothing to do either.");
}

static void
stream_relation_vacuum(Relation rel, struct VacuumParams *params,
					   BufferAccessStrategy bstrategy)
{
	/* append-only and never updated: there is nothing to reclaim */
}

static double
stream_index_build_range_scan(Relation table_rel, Relation index_rel,
							  struct IndexInfo *index_info, bool allow_sync,
							  bool anyvisible, bool progress,
							  BlockNumber start_blockno, BlockNumber numblocks,
							  IndexBuildCallback callback, void *callback_state,
							  TableScanDesc scan)
{
	unsupported(table_rel, "an index", "Streams are ordered by event time; use chronicle.aggregate() for ranges.");
	return 0;
}

static void
stream_index_validate_scan(Relation table_rel, Relation index_rel,
						   struct IndexInfo *index_info, Snapshot snapshot,
						   struct ValidateIndexState *state)
{
	unsupported(table_rel, "an index", "Streams are ordered by event time; use chronicle.aggregate() for ranges.");
}

static bool
stream_relation_needs_toast_table(Relation rel)
{
	return false;
}

static void
stream_relation_estimate_size(Relation rel, int32 *attr_widths,
							  BlockNumber *pages, double *tuples,
							  double *allvisfrac)
{
	TabPlusMeta meta;

	*pages = RelationGetNumberOfBlocks(rel);
	*tuples = tabplus_read_meta(rel, &meta) ? (double) meta.count : 0;
	*allvisfrac = 0;
}

static bool
stream_scan_sample_next_block(TableScanDesc scan, struct SampleScanState *scanstate)
{
	unsupported(scan->rs_rd, "TABLESAMPLE", "Use chronicle.aggregate() over a time range instead.");
	return false;
}

static bool
stream_scan_sample_next_tuple(TableScanDesc scan, struct SampleScanState *scanstate,
							  TupleTableSlot *slot)
{
	unsupported(scan->rs_rd, "TABLESAMPLE", "Use chronicle.aggregate() over a time range instead.");
	return false;
}

static const TableAmRoutine stream_am_methods = {
	.type = T_TableAmRoutine,

	.slot_callbacks = stream_slot_callbacks,

	.scan_begin = stream_scan_begin,
	.scan_end = stream_scan_end,
	.scan_rescan = stream_scan_rescan,
	.scan_getnextslot = stream_scan_getnextslot,

	.parallelscan_estimate = stream_parallelscan_estimate,
	.parallelscan_initialize = stream_parallelscan_initialize,
	.parallelscan_reinitialize = stream_parallelscan_reinitialize,

	.index_fetch_begin = stream_index_fetch_begin,
	.index_fetch_reset = stream_index_fetch_reset,
	.index_fetch_end = stream_index_fetch_end,
	.index_fetch_tuple = stream_index_fetch_tuple,

	.tuple_fetch_row_version = stream_tuple_fetch_row_version,
	.tuple_tid_valid = stream_tuple_tid_valid,
	.tuple_get_latest_tid = stream_tuple_get_latest_tid,
	.tuple_satisfies_snapshot = stream_tuple_satisfies_snapshot,
	.index_delete_tuples = stream_index_delete_tuples,

	.tuple_insert = stream_tuple_insert,
	.tuple_insert_speculative = stream_tuple_insert_speculative,
	.tuple_complete_speculative = stream_tuple_complete_speculative,
	.multi_insert = stream_multi_insert,
	.tuple_delete = stream_tuple_delete,
	.tuple_update = stream_tuple_update,
	.tuple_lock = stream_tuple_lock,
	.finish_bulk_insert = NULL,

	.relation_set_new_filenode = stream_relation_set_new_filenode,
	.relation_nontransactional_truncate = stream_relation_nontransactional_truncate,
	.relation_copy_data = stream_relation_copy_data,
	.relation_copy_for_cluster = stream_relation_copy_for_cluster,
	.relation_vacuum = stream_relation_vacuum,
	.scan_analyze_next_block = stream_scan_analyze_next_block,
	.scan_analyze_next_tuple = stream_scan_analyze_next_tuple,
	.index_build_range_scan = stream_index_build_range_scan,
	.index_validate_scan = stream_index_validate_scan,

	.relation_size = table_block_relation_size,
	.relation_needs_toast_table = stream_relation_needs_toast_table,

	.relation_estimate_size = stream_relation_estimate_size,

	.scan_bitmap_next_block = NULL,
	.scan_bitmap_next_tuple = NULL,
	.scan_sample_next_block = stream_scan_sample_next_block,
	.scan_sample_next_tuple = stream_scan_sample_next_tuple
};

Datum
chronicle_am_handler(PG_FUNCTION_ARGS)
{
	PG_RETURN_POINTER(&stream_am_methods);
}
