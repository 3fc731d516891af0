/*-------------------------------------------------------------------------
 *
 * staging.c
 *	  Per-transaction staging of inserted events and their apply at commit.
 *
 * Every event inserted into a stream is encoded (rowcodec.c) into memory
 * owned by the top-level transaction.  At XACT_EVENT_PRE_COMMIT each
 * stream's staged events are sorted by (event time, arrival) and applied as
 * one batch (tabplus_apply_batch) under the stream's exclusive lock; the
 * lock is released right after so that other committers can apply while
 * this transaction flushes its commit record.  Streams are applied in OID
 * order so that two committers always take stream locks in the same order.
 *
 * Savepoints: a stream keeps a list of marks, one pushed whenever a
 * different subtransaction first stages into it and one at every TRUNCATE.
 * Subtransaction ids only grow within a transaction and children have larger
 * ids than their parents, so aborting subtransaction S restores the stream
 * to its first mark with subxid >= S: that drops exactly the events staged
 * by S and its children.  TRUNCATE discards the events staged before it by
 * moving apply_from, which a rolled-back savepoint also restores.
 *
 * The apply at pre-commit is the point where a transaction's events become
 * visible to others; it comes just before the commit record is written.
 * Replicated operation replaces tabplus_apply_batch here by a proposal to
 * the Raft log and a wait (see docs/architecture.md).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/xact.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "storage/predicate.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "am/stream.h"
#include "tabplus/tabplus.h"
#include "utils/lsyscache.h"
#include "worker/cluster.h"

/* encoded events live in chunks growing from 8 kB to 1 MB */
#define STAGE_CHUNK_MIN (8 * 1024)
#define STAGE_CHUNK_MAX (1024 * 1024)

typedef struct StageMark
{
	SubTransactionId subxid;
	int64		nrows;			/* rows staged before the mark */
	int64		apply_from;		/* apply_from before the mark */
} StageMark;

typedef struct StreamStage
{
	Oid			relid;			/* hash key */
	StreamLayout *layout;
	StagedRow  *rows;
	int64		nrows;
	int64		maxrows;
	int64		apply_from;		/* rows before this were truncated away */
	char	   *chunk;			/* encoded rows live in chunks */
	Size		chunk_used;
	Size		chunk_size;
	StageMark  *marks;
	int			nmarks;
	int			maxmarks;
} StreamStage;

static HTAB *stages = NULL;
static StreamStage *last_stage = NULL;	/* cache for runs of inserts */
static StringInfoData encode_buf;
static bool encode_buf_ready = false;

/*
 * On a replicated server only streams created through the Raft log may
 * take events: any other would exist on this node alone, and replicating
 * its events would make the nodes diverge.
 */
static void
check_stream_replicated(Relation rel)
{
	char		sql[160];
	bool		known;

	if (MyDatabaseId != get_database_oid(chronicle_database, true))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("stream \"%s\" is not in the replicated database \"%s\"",
						RelationGetRelationName(rel), chronicle_database),
				 errhint("Replicated streams live in the database named by chronicle_raft.database.")));
	snprintf(sql, sizeof(sql), "SELECT 1 FROM chronicle.cluster_streams WHERE relid = %u",
			 RelationGetRelid(rel));
	SPI_connect();
	if (SPI_execute(sql, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read chronicle.cluster_streams");
	known = SPI_processed > 0;
	SPI_finish();
	if (!known)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream \"%s\" is not known cluster-wide", RelationGetRelationName(rel)),
				 errhint("Streams of a replicated server must be created with CREATE TABLE ... USING chronicle while the cluster is configured; this one exists on this node only.")));
}

static StreamStage *
stage_for(Relation rel, bool create)
{
	StreamStage *stage;
	bool		found;
	Oid			relid = RelationGetRelid(rel);

	if (last_stage != NULL && last_stage->relid == relid)
		return last_stage;
	if (stages == NULL)
	{
		HASHCTL		ctl;

		if (!create)
			return NULL;
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(StreamStage);
		ctl.hcxt = TopTransactionContext;
		stages = hash_create("chronicle staged streams", 8, &ctl,
							 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	stage = hash_search(stages, &relid, create ? HASH_ENTER : HASH_FIND, &found);
	if (stage && !found)
	{
		MemoryContext oldcxt;

		if (cluster_enabled() && !am_cluster_worker)
			check_stream_replicated(rel);
		oldcxt = MemoryContextSwitchTo(TopTransactionContext);

		stage->layout = stream_layout(rel);
		stage->maxrows = 64;
		stage->rows = palloc(sizeof(StagedRow) * stage->maxrows);
		stage->nrows = 0;
		stage->apply_from = 0;
		stage->chunk = NULL;
		stage->chunk_used = stage->chunk_size = 0;
		stage->maxmarks = 8;
		stage->marks = palloc(sizeof(StageMark) * stage->maxmarks);
		stage->nmarks = 0;
		MemoryContextSwitchTo(oldcxt);
	}
	if (stage)
		last_stage = stage;
	return stage;
}

static void
stage_push_mark(StreamStage *stage, SubTransactionId subxid)
{
	if (stage->nmarks == stage->maxmarks)
	{
		stage->maxmarks *= 2;
		stage->marks = repalloc(stage->marks, sizeof(StageMark) * stage->maxmarks);
	}
	stage->marks[stage->nmarks].subxid = subxid;
	stage->marks[stage->nmarks].nrows = stage->nrows;
	stage->marks[stage->nmarks].apply_from = stage->apply_from;
	stage->nmarks++;
}

void
staging_add_slot(Relation rel, TupleTableSlot *slot)
{
	StreamStage *stage = stage_for(rel, true);
	SubTransactionId subxid = GetCurrentSubTransactionId();
	StagedRow  *row;

	/*
	 * Applied locally, the transaction needs an XID: without one, COMMIT
	 * writes no commit record and does not flush WAL, so the stream's WAL
	 * records of this batch would only reach disk asynchronously.  On a
	 * replicated server the Raft log makes the events durable instead.
	 */
	if (!cluster_enabled() || am_cluster_worker)
		(void) GetTopTransactionId();

	if (!encode_buf_ready)
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(TopMemoryContext);

		initStringInfo(&encode_buf);
		encode_buf_ready = true;
		MemoryContextSwitchTo(oldcxt);
	}
	resetStringInfo(&encode_buf);
	slot_getallattrs(slot);
	row_encode(stage->layout, slot->tts_values, slot->tts_isnull, &encode_buf);

	if (stage->nmarks == 0 || stage->marks[stage->nmarks - 1].subxid != subxid)
		stage_push_mark(stage, subxid);

	if (stage->chunk == NULL || stage->chunk_size - stage->chunk_used < (Size) encode_buf.len)
	{
		Size		size = stage->chunk ? Min(stage->chunk_size * 2, STAGE_CHUNK_MAX) : STAGE_CHUNK_MIN;

		size = Max(size, (Size) encode_buf.len);
		stage->chunk = MemoryContextAlloc(TopTransactionContext, size);
		stage->chunk_size = size;
		stage->chunk_used = 0;
	}
	if (stage->nrows == stage->maxrows)
	{
		if (stage->maxrows >= (int64) PG_UINT32_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("too many events in one transaction for stream \"%s\"",
							RelationGetRelationName(rel)),
					 errhint("Split the load into several transactions.")));
		stage->maxrows *= 2;
		stage->rows = repalloc_huge(stage->rows, sizeof(StagedRow) * stage->maxrows);
	}

	row = &stage->rows[stage->nrows];
	memcpy(stage->chunk + stage->chunk_used, encode_buf.data, encode_buf.len);
	row->data = stage->chunk + stage->chunk_used;
	row->len = encode_buf.len;
	row->ts = row_get_time(row->data);
	row->seq = (uint32) stage->nrows;
	stage->chunk_used += encode_buf.len;
	stage->nrows++;

	/* virtual TID: unique among this transaction's staged rows */
	ItemPointerSet(&slot->tts_tid, MaxBlockNumber - (BlockNumber) (row->seq / 256),
				   row->seq % 256 + 1);
}

void
staging_truncate(Oid relid)
{
	StreamStage *stage;

	if (stages == NULL)
		return;
	stage = hash_search(stages, &relid, HASH_FIND, NULL);
	if (stage == NULL)
		return;
	stage_push_mark(stage, GetCurrentSubTransactionId());
	stage->apply_from = stage->nrows;
}

/* Sort a stream's staged events by (time, arrival) and apply them. */
static void
stage_apply(StreamStage *stage, Relation rel, bool *locked)
{
	StagedRow  *rows = stage->rows + stage->apply_from;
	int64		n = stage->nrows - stage->apply_from;

	tabplus_sort_batch(rows, n);
	tabplus_apply_batch(rel, stage->layout, rows, n, 0, locked);
}

/*
 * Replicated server: hand every stream's staged events to the worker as one
 * batch and wait for its outcome (queue.c).  The worker applies them on
 * every node, this one included.
 */
static void
staging_replicate_all(void)
{
	HASH_SEQ_STATUS status;
	StreamStage *stage;
	StringInfoData buf;

	initStringInfo(&buf);
	hash_seq_init(&status, stages);
	while ((stage = hash_seq_search(&status)) != NULL)
	{
		int64		n = stage->nrows - stage->apply_from;
		int64		i;
		char	   *name;
		uint16		namelen;
		uint32		n32;
		Relation	rel;

		if (n <= 0)
			continue;
		rel = try_relation_open(stage->relid, AccessShareLock);
		if (rel == NULL)
			continue;
		if (CheckRelationLockedByMe(rel, ShareLock, true))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot insert into replicated stream \"%s\" in a transaction that also locks it exclusively",
							RelationGetRelationName(rel)),
					 errhint("Run TRUNCATE, ALTER or CREATE of a replicated stream in its own transaction.")));
		name = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
										  RelationGetRelationName(rel));
		relation_close(rel, AccessShareLock);
		namelen = (uint16) strlen(name);
		n32 = (uint32) n;
		appendBinaryStringInfo(&buf, (char *) &namelen, sizeof(namelen));
		appendBinaryStringInfo(&buf, name, namelen);
		appendBinaryStringInfo(&buf, (char *) &n32, sizeof(n32));
		for (i = stage->apply_from; i < stage->nrows; i++)
		{
			uint16		len = (uint16) stage->rows[i].len;

			appendBinaryStringInfo(&buf, (char *) &len, sizeof(len));
			appendBinaryStringInfo(&buf, stage->rows[i].data, len);
		}
	}
	if (buf.len > 0)
		queue_submit_and_wait(buf.data, buf.len);
	pfree(buf.data);
}

/*
 * Apply every stream's staged events at pre-commit.  Everything that can
 * fail for reasons outside our control is done before the first event is
 * applied: the serialization check of a SERIALIZABLE transaction (which
 * CommitTransaction would otherwise run after us) and taking every stream's
 * lock, in OID order.  So an error leaves no stream half written.
 */
static void
staging_apply_all(void)
{
	HASH_SEQ_STATUS status;
	StreamStage *stage;
	long		n = hash_get_num_entries(stages);
	Oid		   *relids = palloc(sizeof(Oid) * n);
	Relation   *rels = palloc0(sizeof(Relation) * n);
	bool	   *locked = palloc0(sizeof(bool) * n);
	long		k = 0;
	long		i;

	hash_seq_init(&status, stages);
	while ((stage = hash_seq_search(&status)) != NULL)
		if (stage->nrows > stage->apply_from)
			relids[k++] = stage->relid;
	if (k == 0)
		return;
	qsort(relids, k, sizeof(Oid), oid_cmp);

	if (IsolationIsSerializable())
		PreCommit_CheckForSerializationFailure();

	for (i = 0; i < k; i++)
	{
		TabPlusMeta meta;

		/* a stream dropped later in this transaction has nothing to apply */
		rels[i] = try_relation_open(relids[i], RowExclusiveLock);
		if (rels[i] == NULL)
			continue;

		/*
		 * A single event into an existing tree needs no stream lock unless
		 * it splits a page (tabplus_apply_batch then takes it): committing
		 * single rows neither queue behind each other's lock nor wait for
		 * scans.  Everything else is applied under the lock.
		 */
		stage = hash_search(stages, &relids[i], HASH_FIND, NULL);
		if (k == 1 && stage->nrows - stage->apply_from == 1 &&
			tabplus_read_meta(rels[i], &meta))
			continue;
		stream_lock(rels[i], true);
		locked[i] = true;
	}
	for (i = 0; i < k; i++)
	{
		if (rels[i] == NULL)
			continue;
		stage = hash_search(stages, &relids[i], HASH_FIND, NULL);
		stage_apply(stage, rels[i], &locked[i]);
	}
	for (i = 0; i < k; i++)
	{
		if (rels[i] == NULL)
			continue;
		if (locked[i])
			stream_unlock(rels[i], true);
		relation_close(rels[i], NoLock);
	}
	pfree(relids);
	pfree(rels);
	pfree(locked);
}

static void
staging_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			if (stages != NULL)
			{
				if (cluster_enabled() && !am_cluster_worker)
					staging_replicate_all();
				else
					staging_apply_all();
				stages = NULL;
				last_stage = NULL;
			}
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (stages != NULL && hash_get_num_entries(stages) > 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that inserted into a stream"),
						 errhint("Commit stream inserts with a plain COMMIT.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* the memory goes with TopTransactionContext */
			stages = NULL;
			last_stage = NULL;
			break;
	}
}

static void
staging_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	HASH_SEQ_STATUS status;
	StreamStage *stage;

	if (event != SUBXACT_EVENT_ABORT_SUB || stages == NULL)
		return;

	hash_seq_init(&status, stages);
	while ((stage = hash_seq_search(&status)) != NULL)
	{
		int			m;

		for (m = 0; m < stage->nmarks; m++)
		{
			if (stage->marks[m].subxid >= mySubid)
			{
				stage->nrows = stage->marks[m].nrows;
				stage->apply_from = stage->marks[m].apply_from;
				stage->nmarks = m;
				break;
			}
		}
	}
}

void
staging_register_callbacks(void)
{
	RegisterXactCallback(staging_xact_callback, NULL);
	RegisterSubXactCallback(staging_subxact_callback, NULL);
}
