/*-------------------------------------------------------------------------
 *
 * tabplus_intent.c
 *	  Commit intents: a single-node batch is applied after its commit
 *	  record, exactly once, whatever the crash point.
 *
 * On a single server a transaction's events reach the tree only after its
 * commit record (staging.c), so a crash never leaves events of a
 * transaction that did not commit.  What makes applying after the commit
 * safe is the intent: at pre-commit the sorted batch of each stream is
 * WAL-logged in the committing transaction as XLOG_TABPLUS_INTENT records
 * (chunks of at most INTENT_CHUNK bytes; the intent's id is the end LSN of
 * the first chunk; format below).  The steps applied after the commit carry the id: a
 * step taken under the stream lock stores (id, events done) in the meta
 * page, and the step that completes the batch names the id in its record.
 *
 * Invariants:
 *	- a stream's tree holds events of committed transactions only;
 *	- the batch of a committed intent is applied exactly once: by the
 *	  committing backend, or after a crash from a side file, resuming at the
 *	  meta page's progress.
 *
 * Checkpoints: the committing backend holds DELAY_CHKPT_COMPLETE from
 * before its first intent record until its batch is applied.  A checkpoint
 * whose redo pointer is past the intent so completes only once the whole
 * batch is in shared buffers and WAL, and recovery from it never needs the
 * intent; recovery from an earlier checkpoint replays the intent.  (The
 * checkpointer honours the flag only for a valid virtual transaction id,
 * which the commit clears before the apply; staging.c restores it for the
 * apply and re-logs the batch as INTENT_COMMITTED if a checkpoint began in
 * between.)
 *
 * Recovery: redo of an intent keeps its events in the startup process's
 * memory, and redo of the step that completes it drops them.  At the end
 * of recovery every intent left whose transaction committed is written to
 * $PGDATA/chronicle_raft_pending/ (CRC-checked, fsynced, renamed into
 * place); the others are dropped.  The next backend that locks the stream
 * (stream_lock) applies that stream's side files under the stream's
 * exclusive lock, flushes the WAL of the completing step, and only then
 * removes the file and fsyncs the directory: a file is never applied twice
 * because its removal is durable before another batch can move the meta
 * page's progress.  A shared counter of side files keeps the check to one
 * atomic read when there are none, which is always but after a crash.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "access/parallel.h"
#include "access/relation.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xloginsert.h"
#include "access/xlogreader.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "port/pg_crc32c.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "tabplus/tabplus.h"

#define PENDING_DIR		"chronicle_raft_pending"
#define PENDING_MAGIC	0x43485049	/* "CHPI" */
#define PENDING_VERSION 1
#define INTENT_CHUNK	(1024 * 1024)

/*
 * Main data of an XLOG_TABPLUS_INTENT record, packed (no padding):
 *	 uint8 flags
 *	 first chunk:	Oid relid, RelFileNode node, uint32 nrows,
 *					uint32 nrows_total (only without INTENT_LAST)
 *	 continuation:	uint64 intent_id, uint32 nrows
 * then nrows events, each as uint16 length + encoded bytes.  The database
 * is node.dbNode.  A single-event intent is 21 bytes + the event.
 */
#define INTENT_FIRST		0x01	/* else a continuation of intent_id */
#define INTENT_LAST			0x02	/* the intent's last chunk */
#define INTENT_COMMITTED	0x04	/* logged after the commit record */

#define INTENT_HEADER_MAX	(1 + sizeof(Oid) + sizeof(RelFileNode) + 2 * sizeof(uint32))

/* Header of a side file; rows follow, then a CRC-32C of all before it. */
typedef struct PendingFileHeader
{
	uint32		magic;
	uint32		version;
	uint64		intent_id;
	Oid			dbid;
	Oid			relid;
	RelFileNode node;
	TransactionId xid;
	uint32		nrows;
	uint64		datalen;
} PendingFileHeader;

/* An intent seen by redo and not yet completed. */
typedef struct RedoIntent
{
	uint64		intent_id;		/* hash key */
	TransactionId xid;
	Oid			dbid;
	Oid			relid;
	RelFileNode node;
	bool		committed;		/* logged as INTENT_COMMITTED */
	uint32		nrows_total;
	uint32		nrows;
	StringInfoData data;
} RedoIntent;

typedef struct IntentShared
{
	pg_atomic_uint32 npending;	/* side files not yet applied */
} IntentShared;

static IntentShared *intent_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* startup process only */
static MemoryContext redo_cxt = NULL;
static HTAB *redo_intents = NULL;
static bool redo_side_files = false;	/* side files existed when redo began */

static StringInfoData chunk_buf;
static bool chunk_buf_ready = false;

/* ------------------------------------------------------------ writing */

/*
 * WAL-log the sorted batch of one stream as a commit intent and return its
 * id.  Called at pre-commit, in the committing transaction (the records
 * carry its XID), with DELAY_CHKPT_COMPLETE held by the caller; or after
 * the commit record with committed = true (staging.c explains when).
 */
uint64
tabplus_intent_log(Relation rel, StagedRow *rows, int64 nrows, bool committed)
{
	uint64		intent_id = 0;
	int64		i = 0;

	Assert(nrows > 0 && nrows <= PG_UINT32_MAX);
	if (!chunk_buf_ready)
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(TopMemoryContext);

		initStringInfo(&chunk_buf);
		chunk_buf_ready = true;
		MemoryContextSwitchTo(oldcxt);
	}

	while (i < nrows)
	{
		int64		first = i;
		Size		bytes = 0;
		uint8		flags;
		uint32		chunk_rows;
		char	   *p;
		XLogRecPtr	end;

		while (i < nrows &&
			   (i == first || INTENT_HEADER_MAX + bytes + sizeof(uint16) + rows[i].len <= INTENT_CHUNK))
		{
			bytes += sizeof(uint16) + rows[i].len;
			i++;
		}
		chunk_rows = (uint32) (i - first);
		flags = (intent_id == 0 ? INTENT_FIRST : 0) | (i == nrows ? INTENT_LAST : 0) |
			(committed ? INTENT_COMMITTED : 0);

		resetStringInfo(&chunk_buf);
		enlargeStringInfo(&chunk_buf, INTENT_HEADER_MAX + bytes);
		p = chunk_buf.data;
		*p++ = (char) flags;
		if (flags & INTENT_FIRST)
		{
			Oid			relid = RelationGetRelid(rel);
			uint32		total = (uint32) nrows;

			memcpy(p, &relid, sizeof(relid));
			p += sizeof(relid);
			memcpy(p, &rel->rd_node, sizeof(RelFileNode));
			p += sizeof(RelFileNode);
			memcpy(p, &chunk_rows, sizeof(chunk_rows));
			p += sizeof(chunk_rows);
			if (!(flags & INTENT_LAST))
			{
				memcpy(p, &total, sizeof(total));
				p += sizeof(total);
			}
		}
		else
		{
			memcpy(p, &intent_id, sizeof(intent_id));
			p += sizeof(intent_id);
			memcpy(p, &chunk_rows, sizeof(chunk_rows));
			p += sizeof(chunk_rows);
		}
		for (; first < i; first++)
		{
			uint16		len = (uint16) rows[first].len;

			memcpy(p, &len, sizeof(len));
			memcpy(p + sizeof(len), rows[first].data, len);
			p += sizeof(len) + len;
		}

		XLogBeginInsert();
		XLogRegisterData(chunk_buf.data, p - chunk_buf.data);
		end = XLogInsert(RM_CHRONICLE_ID, XLOG_TABPLUS_INTENT);
		if (intent_id == 0)
			intent_id = end;
	}
	return intent_id;
}

/* ------------------------------------------------------------ redo */

static void
pending_path(char *path, Oid dbid, Oid relid, uint64 intent_id)
{
	snprintf(path, MAXPGPATH, PENDING_DIR "/%u_%u_%016llX",
			 dbid, relid, (unsigned long long) intent_id);
}

/* Count the side files, removing leftovers of an interrupted write. */
static uint32
pending_scan_dir(void)
{
	DIR		   *dir;
	struct dirent *de;
	uint32		n = 0;

	dir = AllocateDir(PENDING_DIR);
	if (dir == NULL)
		return 0;
	while ((de = ReadDir(dir, PENDING_DIR)) != NULL)
	{
		char		path[MAXPGPATH];

		if (de->d_name[0] == '.')
			continue;
		if (strstr(de->d_name, ".tmp") != NULL)
		{
			snprintf(path, sizeof(path), PENDING_DIR "/%s", de->d_name);
			unlink(path);
			continue;
		}
		n++;
	}
	FreeDir(dir);
	return n;
}

void
tabplus_intent_recovery_start(void)
{
	HASHCTL		ctl;

	if (redo_cxt != NULL)
		return;
	redo_cxt = AllocSetContextCreate(TopMemoryContext, "chronicle_raft intents",
									 ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(RedoIntent);
	ctl.hcxt = redo_cxt;
	redo_intents = hash_create("chronicle_raft redo intents", 64, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	redo_side_files = pending_scan_dir() > 0;
}

void
tabplus_intent_redo(XLogReaderState *record)
{
	char	   *data = XLogRecGetData(record);
	char	   *end = data + XLogRecGetDataLen(record);
	char	   *p = data;
	RedoIntent *intent;
	uint64		intent_id;
	uint32		nrows;
	uint8		flags;

	if (redo_intents == NULL)
		tabplus_intent_recovery_start();
	tabplus_redo_take(&p, end, &flags, sizeof(flags));
	if (flags & INTENT_FIRST)
	{
		Oid			relid;
		RelFileNode node;
		uint32		total;
		bool		found;
		MemoryContext oldcxt;

		tabplus_redo_take(&p, end, &relid, sizeof(relid));
		tabplus_redo_take(&p, end, &node, sizeof(node));
		tabplus_redo_take(&p, end, &nrows, sizeof(nrows));
		total = nrows;
		if (!(flags & INTENT_LAST))
			tabplus_redo_take(&p, end, &total, sizeof(total));
		intent_id = record->EndRecPtr;
		intent = hash_search(redo_intents, &intent_id, HASH_ENTER, &found);
		intent->xid = XLogRecGetXid(record);
		intent->dbid = node.dbNode;
		intent->relid = relid;
		intent->node = node;
		intent->committed = (flags & INTENT_COMMITTED) != 0;
		intent->nrows_total = total;
		intent->nrows = 0;
		oldcxt = MemoryContextSwitchTo(redo_cxt);
		initStringInfo(&intent->data);
		MemoryContextSwitchTo(oldcxt);
	}
	else
	{
		tabplus_redo_take(&p, end, &intent_id, sizeof(intent_id));
		tabplus_redo_take(&p, end, &nrows, sizeof(nrows));
		/* a continuation whose first chunk precedes the redo start is not needed */
		intent = hash_search(redo_intents, &intent_id, HASH_FIND, NULL);
		if (intent == NULL)
			return;
	}
	intent->nrows += nrows;
	appendBinaryStringInfo(&intent->data, p, end - p);
}

void
tabplus_intent_redo_completed(uint64 intent_id)
{
	RedoIntent *intent;

	if (redo_intents == NULL)
		tabplus_intent_recovery_start();
	intent = hash_search(redo_intents, &intent_id, HASH_FIND, NULL);
	if (intent != NULL)
	{
		pfree(intent->data.data);
		hash_search(redo_intents, &intent_id, HASH_REMOVE, NULL);
		return;
	}

	/*
	 * Completed from a side file (on the primary, after its crash): remove
	 * our copy of that file, if we have one (a base backup taken meanwhile).
	 */
	if (redo_side_files)
	{
		DIR		   *dir = AllocateDir(PENDING_DIR);
		struct dirent *de;
		char		suffix[32];

		snprintf(suffix, sizeof(suffix), "_%016llX", (unsigned long long) intent_id);
		while (dir != NULL && (de = ReadDir(dir, PENDING_DIR)) != NULL)
		{
			size_t		l = strlen(de->d_name);

			if (l > strlen(suffix) && strcmp(de->d_name + l - strlen(suffix), suffix) == 0)
			{
				char		path[MAXPGPATH];

				snprintf(path, sizeof(path), PENDING_DIR "/%s", de->d_name);
				if (unlink(path) == 0 && intent_shared != NULL)
					pg_atomic_fetch_sub_u32(&intent_shared->npending, 1);
			}
		}
		if (dir != NULL)
			FreeDir(dir);
	}
}

static void
write_side_file(RedoIntent *intent)
{
	PendingFileHeader hdr;
	char		path[MAXPGPATH];
	char		tmppath[MAXPGPATH];
	pg_crc32c	crc;
	int			fd;

	memset(&hdr, 0, sizeof(hdr));
	hdr.magic = PENDING_MAGIC;
	hdr.version = PENDING_VERSION;
	hdr.intent_id = intent->intent_id;
	hdr.dbid = intent->dbid;
	hdr.relid = intent->relid;
	hdr.node = intent->node;
	hdr.xid = intent->xid;
	hdr.nrows = intent->nrows;
	hdr.datalen = intent->data.len;
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, &hdr, sizeof(hdr));
	COMP_CRC32C(crc, intent->data.data, intent->data.len);
	FIN_CRC32C(crc);

	pending_path(path, intent->dbid, intent->relid, intent->intent_id);
	snprintf(tmppath, sizeof(tmppath), "%s.tmp", path);
	fd = OpenTransientFile(tmppath, O_CREAT | O_TRUNC | O_WRONLY | PG_BINARY);
	if (fd < 0)
		ereport(FATAL,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", tmppath)));
	errno = 0;
	if (write(fd, &hdr, sizeof(hdr)) != sizeof(hdr) ||
		write(fd, intent->data.data, intent->data.len) != intent->data.len ||
		write(fd, &crc, sizeof(crc)) != sizeof(crc))
	{
		if (errno == 0)
			errno = ENOSPC;
		ereport(FATAL,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", tmppath)));
	}
	if (pg_fsync(fd) != 0)
		ereport(FATAL,
				(errcode_for_file_access(),
				 errmsg("could not fsync file \"%s\": %m", tmppath)));
	CloseTransientFile(fd);
	durable_rename(tmppath, path, FATAL);
}

/*
 * End of recovery: intents of committed transactions whose batch is not
 * complete become side files; the rest (never committed) are dropped.
 */
void
tabplus_intent_recovery_end(void)
{
	HASH_SEQ_STATUS status;
	RedoIntent *intent;
	uint32		written = 0;
	uint32		dropped = 0;

	if (redo_intents == NULL)
		return;
	hash_seq_init(&status, redo_intents);
	while ((intent = hash_seq_search(&status)) != NULL)
	{
		if (intent->nrows == intent->nrows_total &&
			(intent->committed || TransactionIdDidCommit(intent->xid)))
		{
			if (written == 0)
			{
				if (MakePGDirectory(PENDING_DIR) < 0 && errno != EEXIST)
					ereport(FATAL,
							(errcode_for_file_access(),
							 errmsg("could not create directory \"%s\": %m", PENDING_DIR)));
			}
			write_side_file(intent);
			written++;
		}
		else
			dropped++;
	}
	if (written > 0)
	{
		fsync_fname(PENDING_DIR, true);
		if (intent_shared != NULL)
			pg_atomic_fetch_add_u32(&intent_shared->npending, written);
	}
	if (written > 0 || dropped > 0)
		ereport(LOG,
				(errmsg("chronicle_raft: %u committed stream batches to finish after recovery, %u uncommitted ones dropped",
						written, dropped)));
	MemoryContextDelete(redo_cxt);
	redo_cxt = NULL;
	redo_intents = NULL;
}

/* ------------------------------------------------------------ resume */

static int
uint64_cmp(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return x < y ? -1 : (x > y ? 1 : 0);
}

static void
pending_remove(const char *path)
{
	if (unlink(path) != 0 && errno != ENOENT)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not remove file \"%s\": %m", path)));
	fsync_fname(PENDING_DIR, true);
	pg_atomic_fetch_sub_u32(&intent_shared->npending, 1);
}

/* Apply one side file to rel; the caller holds the stream's exclusive lock. */
static void
resume_one(Relation rel, uint64 intent_id)
{
	char		path[MAXPGPATH];
	PendingFileHeader hdr;
	char	   *data;
	pg_crc32c	crc;
	pg_crc32c	stored;
	StagedRow  *rows;
	StreamLayout *layout;
	struct stat st;
	Size		off = 0;
	uint32		i;
	int			fd;
	bool		locked = true;

	pending_path(path, MyDatabaseId, RelationGetRelid(rel), intent_id);
	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		if (errno == ENOENT)
			return;				/* applied by another backend meanwhile */
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", path)));
	}
	if (fstat(fd, &st) != 0 || st.st_size < (off_t) (sizeof(hdr) + sizeof(crc)) ||
		read(fd, &hdr, sizeof(hdr)) != sizeof(hdr) ||
		hdr.magic != PENDING_MAGIC || hdr.version != PENDING_VERSION ||
		(off_t) (sizeof(hdr) + hdr.datalen + sizeof(crc)) != st.st_size)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("committed batch file \"%s\" of stream \"%s\" is corrupt",
						path, RelationGetRelationName(rel)),
				 errhint("Restore the stream from a backup; the file holds events committed before a crash.")));
	data = palloc_extended(hdr.datalen + 1, MCXT_ALLOC_HUGE);
	if (read(fd, data, hdr.datalen) != (ssize_t) hdr.datalen ||
		read(fd, &stored, sizeof(stored)) != sizeof(stored))
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read file \"%s\": %m", path)));
	CloseTransientFile(fd);
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, &hdr, sizeof(hdr));
	COMP_CRC32C(crc, data, hdr.datalen);
	FIN_CRC32C(crc);
	if (!EQ_CRC32C(crc, stored))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("committed batch file \"%s\" of stream \"%s\" fails its checksum",
						path, RelationGetRelationName(rel)),
				 errhint("Restore the stream from a backup; the file holds events committed before a crash.")));

	/* TRUNCATE since the crash: those events are gone with the rest */
	if (!RelFileNodeEquals(hdr.node, rel->rd_node))
	{
		pending_remove(path);
		pfree(data);
		return;
	}

	rows = palloc_extended(sizeof(StagedRow) * Max(hdr.nrows, 1), MCXT_ALLOC_HUGE);
	for (i = 0; i < hdr.nrows; i++)
	{
		uint16		len;

		if (off + sizeof(len) > hdr.datalen)
			elog(ERROR, "committed batch file \"%s\" ends early", path);
		memcpy(&len, data + off, sizeof(len));
		off += sizeof(len);
		if (off + len > hdr.datalen || len < sizeof(int64))
			elog(ERROR, "committed batch file \"%s\" ends early", path);
		rows[i].data = data + off;
		rows[i].len = len;
		rows[i].ts = row_get_time(rows[i].data);
		rows[i].seq = i;
		off += len;
	}
	layout = stream_layout_build(RelationGetDescr(rel), NULL);
	tabplus_apply_batch(rel, layout, rows, hdr.nrows, 0, intent_id, &locked);

	/* the completing step must be durable before the file goes */
	if (XactLastRecEnd != InvalidXLogRecPtr)
		XLogFlush(XactLastRecEnd);
	pending_remove(path);
	ereport(LOG,
			(errmsg("chronicle_raft: applied %u events of stream \"%s\" committed before a crash",
					hdr.nrows, RelationGetRelationName(rel))));
	pfree(rows);
	pfree(data);
}

/*
 * Apply the side files of this stream, if any, before the stream is read
 * or written.  Side files of streams or databases dropped since are removed.
 */
void
tabplus_intent_resume(Relation rel)
{
	DIR		   *dir;
	struct dirent *de;
	uint64	   *ids = NULL;
	int			nids = 0;
	int			maxids = 0;
	int			i;

	if (intent_shared == NULL || pg_atomic_read_u32(&intent_shared->npending) == 0)
		return;
	if (RecoveryInProgress() || IsParallelWorker())
		return;

	dir = AllocateDir(PENDING_DIR);
	while (dir != NULL && (de = ReadDir(dir, PENDING_DIR)) != NULL)
	{
		Oid			dbid;
		Oid			relid;
		unsigned long long id;
		char		tail;

		if (sscanf(de->d_name, "%u_%u_%llX%c", &dbid, &relid, &id, &tail) != 3)
			continue;
		if (dbid != MyDatabaseId)
		{
			if (!SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(dbid)))
			{
				char		path[MAXPGPATH];

				pending_path(path, dbid, relid, id);
				pending_remove(path);
			}
			continue;
		}
		if (relid != RelationGetRelid(rel))
		{
			if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
			{
				char		path[MAXPGPATH];

				pending_path(path, dbid, relid, id);
				pending_remove(path);
			}
			continue;
		}
		if (nids == maxids)
		{
			maxids = Max(8, maxids * 2);
			ids = ids ? repalloc(ids, sizeof(uint64) * maxids) : palloc(sizeof(uint64) * maxids);
		}
		ids[nids++] = id;
	}
	if (dir != NULL)
		FreeDir(dir);
	if (nids == 0)
		return;

	qsort(ids, nids, sizeof(uint64), uint64_cmp);
	LockPage(rel, TABPLUS_META_BLOCK, ExclusiveLock);
	for (i = 0; i < nids; i++)
		resume_one(rel, ids[i]);
	UnlockPage(rel, TABPLUS_META_BLOCK, ExclusiveLock);
	pfree(ids);
}

/* ------------------------------------------------------------ shared memory */

static void
intent_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(IntentShared)));
}

static void
intent_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	intent_shared = ShmemInitStruct("chronicle_raft intents", sizeof(IntentShared), &found);
	if (!found)
		pg_atomic_init_u32(&intent_shared->npending, pending_scan_dir());
	LWLockRelease(AddinShmemInitLock);
}

void
tabplus_intent_shmem_request(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = intent_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = intent_startup;
}
