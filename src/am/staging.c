/*-------------------------------------------------------------------------
 *
 * staging.c
 *	  Per-transaction staging of inserted events and their apply at commit.
 *
 * Every event inserted into a stream is encoded (rowcodec.c) into memory
 * owned by the top-level transaction.  At XACT_EVENT_PRE_COMMIT each
 * stream's staged events are sorted by (event time, arrival) and WAL-logged
 * as a commit intent (tabplus_intent.c); at XACT_EVENT_COMMIT, after the
 * commit record, they are applied as one batch (tabplus_apply_batch) under
 * the stream's exclusive lock, streams in OID order.  So the tree only ever
 * holds committed events: a crash before the commit record leaves nothing,
 * and a crash after it is finished from the intent at the next start.
 * Committers of one stream still group-commit: no stream lock is held
 * across the commit record's flush.
 *
 * Savepoints: a stream keeps a list of marks, one pushed whenever a
 * different subtransaction first stages into it and one at every TRUNCATE.
 * Subtransaction ids only grow within a transaction and children have larger
 * ids than their parents, so aborting subtransaction S restores the stream
 * to its first mark with subxid >= S: that drops exactly the events staged
 * by S and its children.  TRUNCATE discards the events staged before it by
 * moving apply_from, which a rolled-back savepoint also restores.
 *
 * The apply after the commit record is the point where a transaction's
 * events become visible to others; COMMIT returns once it is done.
 * Replicated operation replaces the intent and the apply by a proposal to
 * the Raft log and a wait (see docs/architecture.md).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <malloc.h>

#include "access/relation.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "am/stream.h"
#include "tabplus/tabplus.h"
#include "utils/lsyscache.h"
#include "worker/cluster.h"

/*
 * A session that inserts into streams allocates and frees batch-sized
 * memory in every transaction (chunks, the replicated batch).  With glibc's
 * defaults that memory comes from fresh mmaps or a heap top trimmed at every
 * transaction end, and the kernel zero-fills every page again: about a
 * twentieth of a COPY session's CPU.  Such a session keeps it in its heap
 * (see docs/operations.md, "Memory").
 */
#define STAGING_MMAP_THRESHOLD	(32 * 1024 * 1024)	/* glibc's largest */
#define STAGING_TRIM_THRESHOLD	(64 * 1024 * 1024)

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

/* a stream's batch logged at pre-commit, applied after the commit record */
typedef struct CommitApply
{
	Relation	rel;
	StreamLayout *layout;
	StagedRow  *rows;
	int64		nrows;
	uint64		intent_id;
} CommitApply;

static HTAB *stages = NULL;
static CommitApply *commit_applies = NULL;
static int	ncommit_applies = 0;
static bool delaying_checkpoint = false;
static LocalTransactionId committing_lxid = InvalidLocalTransactionId;
static StreamStage *last_stage = NULL;	/* cache for runs of inserts */
static StringInfoData encode_buf;
static bool encode_buf_ready = false;

/*
 * Was the relation created through the Raft log (is it listed in
 * chronicle.cluster_streams)?  Needs a transaction; uses SPI.
 */
bool
cluster_stream_known(Oid relid)
{
	char		sql[160];
	bool		known;

	snprintf(sql, sizeof(sql), "SELECT 1 FROM chronicle.cluster_streams WHERE relid = %u", relid);
	SPI_connect();
	if (SPI_execute(sql, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read chronicle.cluster_streams");
	known = SPI_processed > 0;
	SPI_finish();
	return known;
}

/*
 * On a replicated server only streams created through the Raft log may
 * take events: any other would exist on this node alone, and replicating
 * its events would make the nodes diverge.  The check costs a query, so a
 * yes is remembered with the relcache entry.
 */
static void
check_stream_replicated(Relation rel)
{
	static Oid	cluster_dboid = InvalidOid;

	if (stream_relcache(rel)->cluster_known)
		return;
	if (!OidIsValid(cluster_dboid))
		cluster_dboid = get_database_oid(chronicle_database, true);
	if (MyDatabaseId != cluster_dboid)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("stream \"%s\" is not in the replicated database \"%s\"",
						RelationGetRelationName(rel), chronicle_database),
				 errhint("Replicated streams live in the database named by chronicle_raft.database.")));
	if (!cluster_stream_known(RelationGetRelid(rel)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream \"%s\" is not known cluster-wide", RelationGetRelationName(rel)),
				 errhint("Streams of a replicated server must be created with CREATE TABLE ... USING chronicle while the cluster is configured; this one exists on this node only.")));
	/* a stream leaves cluster_streams only by DROP, which invalidates this */
	stream_relcache(rel)->cluster_known = true;
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
		mallopt(M_MMAP_THRESHOLD, STAGING_MMAP_THRESHOLD);
		mallopt(M_TRIM_THRESHOLD, STAGING_TRIM_THRESHOLD);
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

/*
 * A transaction too large for one batch travels as parts (see
 * docs/architecture.md): its id while parts are out and the final part is
 * not, so that an abort can tell the cluster to discard them.
 */
static uint64 parts_txn = 0;

/* Build one batch: a part header (when split), then stream sections. */
typedef struct BatchBuilder
{
	StringInfoData buf;
	int			section_at;		/* offset of the open section */
	int			count_at;		/* offset of its event count, or -1 */
	uint32		count;
} BatchBuilder;

static void
builder_start(BatchBuilder *b, const PartHeader *hdr)
{
	resetStringInfo(&b->buf);
	if (hdr)
		appendBinaryStringInfo(&b->buf, (const char *) hdr, sizeof(PartHeader));
	b->count_at = -1;
}

static void
builder_close_section(BatchBuilder *b)
{
	if (b->count_at >= 0 && b->count == 0)
		b->buf.len = b->section_at;	/* an empty section says nothing */
	else if (b->count_at >= 0)
		memcpy(b->buf.data + b->count_at, &b->count, sizeof(uint32));
	b->count_at = -1;
}

static void
builder_open_section(BatchBuilder *b, const char *name)
{
	uint16		namelen = (uint16) strlen(name);

	builder_close_section(b);
	b->section_at = b->buf.len;
	appendBinaryStringInfo(&b->buf, (char *) &namelen, sizeof(namelen));
	appendBinaryStringInfo(&b->buf, name, namelen);
	b->count_at = b->buf.len;
	b->count = 0;
	appendBinaryStringInfo(&b->buf, (char *) &b->count, sizeof(uint32));
}

/*
 * Send a finished part and wait for it (not the last: it decides nothing).
 * The header's part number and kind are filled in here.
 */
static void
send_part(BatchBuilder *b, PartHeader *hdr, bool final)
{
	builder_close_section(b);
	hdr->kind = final ? PART_FINAL : PART_EVENTS;
	memcpy(b->buf.data, hdr, sizeof(PartHeader));
	parts_txn = hdr->txn;
	queue_submit_and_wait(b->buf.data, b->buf.len, final);
	hdr->part++;
}

/*
 * Replicated server: hand every stream's staged events to the worker and
 * wait for the outcome (queue.c).  Usually one batch.  A transaction larger
 * than the queue takes at once goes as parts of PART_BYTES: every node keeps
 * them (chronicle.open_parts) until the final part, which applies all of
 * them as one batch, so the final part is the commit point.
 */
static void
staging_replicate_all(void)
{
	HASH_SEQ_STATUS status;
	StreamStage *stage;
	BatchBuilder b;
	PartHeader	hdr;
	Size		total = 0;
	bool		split;
	Size		limit;

	/* what one batch would take: split only when it does not fit */
	hash_seq_init(&status, stages);
	while ((stage = hash_seq_search(&status)) != NULL)
	{
		int64		i;

		total += NAMEDATALEN * 2 + 8;
		for (i = stage->apply_from; i < stage->nrows; i++)
			total += sizeof(uint16) + stage->rows[i].len;
	}
	split = total > queue_max_batch();
	limit = split ? Min(PART_BYTES, queue_max_batch() / 2) : queue_max_batch();

	memset(&hdr, 0, sizeof(hdr));
	hdr.marker = BATCH_PART_MARKER;
	if (split)
	{
		hdr.origin = (uint64) chronicle_node_id;
		hdr.boot = queue_boot_id();
		if (!pg_strong_random(&hdr.txn, sizeof(hdr.txn)))
			elog(ERROR, "could not generate a random transaction id");
	}
	initStringInfo(&b.buf);
	builder_start(&b, split ? &hdr : NULL);

	hash_seq_init(&status, stages);
	while ((stage = hash_seq_search(&status)) != NULL)
	{
		int64		n = stage->nrows - stage->apply_from;
		int64		i;
		char	   *name;
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
		builder_open_section(&b, name);
		for (i = stage->apply_from; i < stage->nrows; i++)
		{
			uint16		len = (uint16) stage->rows[i].len;

			if (split && b.buf.len + sizeof(uint16) + len > limit)
			{
				send_part(&b, &hdr, false);
				builder_start(&b, &hdr);
				builder_open_section(&b, name);
			}
			appendBinaryStringInfo(&b.buf, (char *) &len, sizeof(len));
			appendBinaryStringInfo(&b.buf, stage->rows[i].data, len);
			b.count++;
		}
	}
	builder_close_section(&b);
	if (split)
	{
		hdr.nparts = hdr.part + 1;
		send_part(&b, &hdr, true);
	}
	else if (b.buf.len > 0)
		queue_submit_and_wait(b.buf.data, b.buf.len, true);
	parts_txn = 0;
	pfree(b.buf.data);
}

/*
 * The transaction ends without its final part having decided it: tell the
 * cluster to discard the parts it keeps.  Best effort (an abort must not
 * fail); what is left is discarded when this server's worker restarts, or
 * by the leader before it writes a snapshot.
 */
static void
discard_sent_parts(void)
{
	PartHeader	hdr;

	if (parts_txn == 0)
		return;
	memset(&hdr, 0, sizeof(hdr));
	hdr.marker = BATCH_PART_MARKER;
	hdr.kind = PART_ABORT;
	hdr.origin = (uint64) chronicle_node_id;
	hdr.txn = parts_txn;
	parts_txn = 0;
	(void) queue_submit_detached((const char *) &hdr, sizeof(hdr));
}

/*
 * Pre-commit of a single-node transaction: WAL-log every stream's sorted
 * batch as a commit intent (tabplus_intent.c), to be applied once the
 * commit record is written.  Everything that can fail happens here, so an
 * error still aborts the transaction with no stream touched.  From the
 * first intent until the apply is done this backend delays checkpoint
 * completion: a checkpoint past an intent must find its batch applied.
 */
static void
staging_log_intents(void)
{
	HASH_SEQ_STATUS status;
	StreamStage *stage;
	long		n = hash_get_num_entries(stages);
	Oid		   *relids = palloc(sizeof(Oid) * n);
	long		k = 0;
	long		i;

	hash_seq_init(&status, stages);
	while ((stage = hash_seq_search(&status)) != NULL)
		if (stage->nrows > stage->apply_from)
			relids[k++] = stage->relid;
	if (k == 0)
		return;
	qsort(relids, k, sizeof(Oid), oid_cmp);

	commit_applies = MemoryContextAllocZero(TopTransactionContext, sizeof(CommitApply) * k);
	ncommit_applies = 0;
	for (i = 0; i < k; i++)
	{
		CommitApply *ca;
		Relation	rel;
		StagedRow  *rows;
		int64		nrows;

		/* a stream dropped later in this transaction has nothing to apply */
		rel = try_relation_open(relids[i], RowExclusiveLock);
		if (rel == NULL)
			continue;
		stage = hash_search(stages, &relids[i], HASH_FIND, NULL);
		rows = stage->rows + stage->apply_from;
		nrows = stage->nrows - stage->apply_from;
		tabplus_sort_batch(rows, nrows);

		/* batches committed before a crash go first */
		tabplus_intent_resume(rel);

		if (!RelationNeedsWAL(rel))
		{
			bool		locked = true;

			/*
			 * wal_level = minimal and the stream's storage was created in
			 * this transaction: it only survives if we commit, so applying
			 * now is atomic (and after the commit its sync is done).
			 */
			LockPage(rel, TABPLUS_META_BLOCK, ExclusiveLock);
			tabplus_apply_batch(rel, stage->layout, rows, nrows, 0, 0, &locked);
			UnlockPage(rel, TABPLUS_META_BLOCK, ExclusiveLock);
			relation_close(rel, NoLock);
			continue;
		}

		if (!delaying_checkpoint)
		{
			MyProc->delayChkptFlags |= DELAY_CHKPT_COMPLETE;
			delaying_checkpoint = true;
			committing_lxid = MyProc->lxid;
		}
		ca = &commit_applies[ncommit_applies++];
		ca->rel = rel;
		ca->layout = stage->layout;
		ca->rows = rows;
		ca->nrows = nrows;
		ca->intent_id = tabplus_intent_log(rel, rows, nrows, false);

		/*
		 * Wait here, cancellably, for scans that hold the stream: the lock
		 * is taken again after the commit record, where a wait cannot be
		 * interrupted.
		 */
		if (k > 1 || nrows > 1)
		{
			LockPage(rel, TABPLUS_META_BLOCK, ExclusiveLock);
			UnlockPage(rel, TABPLUS_META_BLOCK, ExclusiveLock);
		}
	}
	pfree(relids);
}

static void
stop_delaying_checkpoint(void)
{
	if (delaying_checkpoint)
	{
		MyProc->delayChkptFlags &= ~DELAY_CHKPT_COMPLETE;
		delaying_checkpoint = false;
	}
}

/*
 * After the commit record: apply the batches logged at pre-commit.  The
 * transaction can no longer abort, so an ERROR here would PANIC (and
 * recovery would then finish the batch from its intent).  Interrupts are
 * held by CommitTransaction.  A lock wait must not end in an error either:
 * no deadlock check or lock timeout of our own; a cycle through this
 * backend is broken by the other waiter's deadlock check.  Locks are taken
 * in OID order.  A single event into an existing tree needs no stream lock
 * unless it splits a page (tabplus_apply_batch then takes it).
 */
static void
staging_apply_committed(void)
{
	int			saved_deadlock_timeout = DeadlockTimeout;
	int			saved_lock_timeout = LockTimeout;
	XLogRecPtr	redo;
	bool	   *locked;
	int			i;

	if (ncommit_applies == 0)
	{
		stop_delaying_checkpoint();
		return;
	}
	/*
	 * ProcArrayEndTransaction has just cleared our DELAY_CHKPT_COMPLETE and
	 * our virtual transaction id, without which the checkpointer ignores
	 * the flag.  Put both back until the batches are applied, so that a
	 * checkpoint whose redo pointer is past our intents waits for them.  A
	 * checkpoint that looked in between may have missed us; if its redo
	 * pointer is past an intent, log that batch again (now as committed)
	 * so that recovery from it still finds the events.  The spinlock in
	 * GetRedoRecPtr() orders our stores before that read.
	 */
	MyProc->lxid = committing_lxid;
	MyProc->delayChkptFlags |= DELAY_CHKPT_COMPLETE;
	delaying_checkpoint = true;
	redo = GetRedoRecPtr();
	for (i = 0; i < ncommit_applies; i++)
	{
		CommitApply *ca = &commit_applies[i];

		if (redo >= ca->intent_id)
			ca->intent_id = tabplus_intent_log(ca->rel, ca->rows, ca->nrows, true);
	}

	DeadlockTimeout = INT_MAX;
	LockTimeout = 0;

	locked = palloc0(sizeof(bool) * ncommit_applies);
	if (ncommit_applies > 1 || commit_applies[0].nrows > 1 ||
		!tabplus_tree_exists(commit_applies[0].rel))
	{
		for (i = 0; i < ncommit_applies; i++)
		{
			LockPage(commit_applies[i].rel, TABPLUS_META_BLOCK, ExclusiveLock);
			locked[i] = true;
		}
	}
	for (i = 0; i < ncommit_applies; i++)
	{
		CommitApply *ca = &commit_applies[i];

		tabplus_apply_batch(ca->rel, ca->layout, ca->rows, ca->nrows, 0,
							ca->intent_id, &locked[i]);
	}
	stop_delaying_checkpoint();
	MyProc->lxid = InvalidLocalTransactionId;
	for (i = 0; i < ncommit_applies; i++)
	{
		if (locked[i])
			UnlockPage(commit_applies[i].rel, TABPLUS_META_BLOCK, ExclusiveLock);
		relation_close(commit_applies[i].rel, NoLock);
	}
	DeadlockTimeout = saved_deadlock_timeout;
	LockTimeout = saved_lock_timeout;
	commit_applies = NULL;
	ncommit_applies = 0;
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
					staging_log_intents();
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
			staging_apply_committed();
			stages = NULL;
			last_stage = NULL;
			break;
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			discard_sent_parts();
			/* the memory and relation references go with the transaction */
			stop_delaying_checkpoint();
			commit_applies = NULL;
			ncommit_applies = 0;
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
