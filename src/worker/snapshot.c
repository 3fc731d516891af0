/*-------------------------------------------------------------------------
 *
 * snapshot.c
 *	  Raft snapshots of a replicated server: the replicated state at one
 *	  applied index as a file, written in slices, served in chunks, staged
 *	  on the receiver and installed in one transaction.
 *
 * What a snapshot holds.  On a replicated server the worker is the only
 * writer of stream data and of the replicated catalog (backends' DDL on
 * streams and their inserts go through the log), so between two applies the
 * state is exactly the state at the applied index.  A snapshot at index A is
 * that state: chronicle.cluster_members, and for every stream in
 * chronicle.cluster_streams its definition (a CREATE TABLE statement built
 * from the catalog) and its main fork, page by page.  TAB+ pages hold only
 * block numbers of their own relation, so a copy of the fork is a valid tree
 * under any relfilenode; copying pages instead of decoding events makes a
 * snapshot sequential I/O at both ends.
 *
 * File format (native byte order: snapshots only travel between servers of
 * one build, which the header's block size and version check):
 *
 *	header	"CHRSNAP1", uint32 version, uint32 BLCKSZ, uint64 cluster id,
 *			uint64 index, uint64 term, uint32 members, uint32 streams
 *	member	uint64 node id, uint8 removed, uint16 length, address
 *	stream	uint16 length, qualified name, uint32 length, CREATE statement,
 *			uint32 blocks, then the blocks (BLCKSZ each, block 0 first)
 *	trailer	uint32 CRC-32C of every byte before it, "CHRSEND1"
 *
 * Files live in $PGDATA/chronicle_raft_snapshots as "snapshot-<index, 16 hex
 * digits>", written as "<name>.tmp", fsync'd and renamed (durable_rename),
 * so a file under its final name is complete.  A receiver stages chunks in
 * "receiving.tmp" the same way.
 *
 * Invariants and rules.
 *	- The writer reads pages through shared buffers under a share content
 *	  lock; its caller applies nothing between snapshot_write_begin() and the
 *	  last snapshot_write_step(), so every page belongs to the state at A.
 *	- Install verifies the whole file (CRC, cluster id, index, block size)
 *	  before it changes anything.  It then runs in one transaction: streams
 *	  whose definition matches keep their OID (views and grants stay) and get
 *	  a new relfilenode, others are dropped and created; pages are written
 *	  with smgrextend() behind log_newpages() WAL records and synced with
 *	  smgrimmedsync() (the pattern of index builds), so the install is crash
 *	  safe and an aborted install leaves the old files in place.  Block 0's
 *	  applied index is set to A, so entries up to A are never applied again.
 *	  The transaction also replaces cluster_streams, cluster_members and
 *	  raft_applied, and its commit is flushed before returning.
 *	- The worker makes the staged file durable, then records the snapshot in
 *	  the Raft log (raftlog_install_snapshot), then installs; a crash after
 *	  the log record and before the install commits is repaired at start by
 *	  installing the file again (the log says A, raft_applied says less).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/relation.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xloginsert.h"
#include "catalog/namespace.h"
#include "common/file_perm.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "port/pg_crc32c.h"
#include "storage/bufmgr.h"
#include "storage/fd.h"
#include "storage/smgr.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/regproc.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "am/stream.h"
#include "tabplus/tabplus.h"
#include "worker/cluster.h"
#include "worker/snapshot.h"

#define SNAP_MAGIC		"CHRSNAP1"
#define SNAP_END_MAGIC	"CHRSEND1"
#define SNAP_VERSION	1
#define SNAP_IO_BUFFER	(1024 * 1024)
#define SNAP_WAL_BATCH	32
#define SNAP_WRITEBACK_BLOCKS 1024	/* a multiple of SNAP_WAL_BATCH */

/*
 * Definitions of the replicated streams, fully qualified (run with
 * search_path = pg_catalog): the writer ships them, the installer compares
 * them with its own to decide whether a stream can be kept.
 */
#define STREAM_DEFS_SQL \
	"SELECT c.oid, format('%I.%I', n.nspname, c.relname), " \
	" format('CREATE SCHEMA IF NOT EXISTS %I; CREATE TABLE %I.%I (%s%s) USING chronicle', " \
	"  n.nspname, n.nspname, c.relname, " \
	"  (SELECT string_agg(format('%I %s%s%s%s', a.attname, format_type(a.atttypid, a.atttypmod), " \
	"     CASE WHEN a.attcollation <> t.typcollation " \
	"          THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END, " \
	"     CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END, " \
	"     COALESCE(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')), ', ' ORDER BY a.attnum) " \
	"   FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid " \
	"   LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum " \
	"   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), " \
	"  COALESCE((SELECT string_agg(format(', CONSTRAINT %I %s', co.conname, " \
	"             pg_get_constraintdef(co.oid)), '' ORDER BY co.conname) " \
	"   FROM pg_constraint co WHERE co.conrelid = c.oid AND co.contype = 'c'), '')) " \
	"FROM chronicle.cluster_streams s JOIN pg_class c ON c.oid = s.relid " \
	"JOIN pg_namespace n ON n.oid = c.relnamespace ORDER BY 2"

typedef struct StreamDef
{
	Oid			relid;
	char	   *name;
	char	   *ddl;
	BlockNumber nblocks;
	bool		seen;			/* installer: named by the snapshot */
} StreamDef;

typedef struct SnapMember
{
	uint64		id;
	bool		removed;
	char	   *address;
} SnapMember;

struct SnapshotWriter
{
	MemoryContext cxt;
	uint64		index;
	int			fd;
	char		path[MAXPGPATH];
	char		tmppath[MAXPGPATH];
	pg_crc32c	crc;
	uint64		bytes;			/* put so far */
	uint64		written;		/* of which in the file */
	char	   *buf;
	Size		buflen;
	StreamDef  *streams;
	int			nstreams;
	int			cur;			/* stream being copied */
	BlockNumber next_block;		/* its next block; 0 also: header not out */
	bool		cur_started;
	TimestampTz started;
};

void
snapshot_dir(char *path, Size len)
{
	snprintf(path, len, "%s/chronicle_raft_snapshots", DataDir);
}

static void
snapshot_path(uint64 index, char *path, Size len)
{
	char		dir[MAXPGPATH];

	snapshot_dir(dir, sizeof(dir));
	snprintf(path, len, "%s/snapshot-%016llX", dir, (unsigned long long) index);
}

static void
ensure_dir(void)
{
	char		dir[MAXPGPATH];

	snapshot_dir(dir, sizeof(dir));
	if (MakePGDirectory(dir) < 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", dir)));
}

/* Run STREAM_DEFS_SQL (inside SPI); results in cxt. */
static StreamDef *
read_stream_defs(MemoryContext cxt, int *n)
{
	StreamDef  *defs;
	uint64		i;

	if (SPI_execute("SET LOCAL search_path = pg_catalog", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not set search_path for the snapshot");
	if (SPI_execute(STREAM_DEFS_SQL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the replicated stream definitions");
	defs = MemoryContextAllocZero(cxt, sizeof(StreamDef) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *ddl = SPI_getvalue(tup, desc, 3);

		if (ddl == NULL)
			elog(ERROR, "could not build the definition of a replicated stream");
		defs[i].relid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
		defs[i].name = MemoryContextStrdup(cxt, SPI_getvalue(tup, desc, 2));
		defs[i].ddl = MemoryContextStrdup(cxt, ddl);
	}
	*n = (int) SPI_processed;
	return defs;
}

/* ---------------------------------------------------------------- writing */

static void
writer_flush(SnapshotWriter *w)
{
	Size		off = 0;

	while (off < w->buflen)
	{
		ssize_t		rc = write(w->fd, w->buf + off, w->buflen - off);

		if (rc < 0)
		{
			if (errno == EINTR)
				continue;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not write snapshot file \"%s\": %m", w->tmppath)));
		}
		off += rc;
	}
	/* start writeback now, so the final fsync does not stall the loop */
	pg_flush_data(w->fd, (off_t) w->written, (off_t) w->buflen);
	w->written += w->buflen;
	w->buflen = 0;
}

static void
writer_put(SnapshotWriter *w, const void *data, Size len)
{
	const char *p = data;

	COMP_CRC32C(w->crc, data, len);
	w->bytes += len;
	while (len > 0)
	{
		Size		n = Min(len, SNAP_IO_BUFFER - w->buflen);

		memcpy(w->buf + w->buflen, p, n);
		w->buflen += n;
		p += n;
		len -= n;
		if (w->buflen == SNAP_IO_BUFFER)
			writer_flush(w);
	}
}

static void
writer_put_u16(SnapshotWriter *w, uint16 v)
{
	writer_put(w, &v, sizeof(v));
}

static void
writer_put_u32(SnapshotWriter *w, uint32 v)
{
	writer_put(w, &v, sizeof(v));
}

static void
writer_put_u64(SnapshotWriter *w, uint64 v)
{
	writer_put(w, &v, sizeof(v));
}

SnapshotWriter *
snapshot_write_begin(uint64 cluster_id, uint64 index, uint64 term)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "chronicle_raft snapshot writer",
											  ALLOCSET_DEFAULT_SIZES);
	SnapshotWriter *w = MemoryContextAllocZero(cxt, sizeof(SnapshotWriter));
	SnapMember *members;
	int			nmembers;
	int			i;

	w->cxt = cxt;
	w->index = index;
	w->fd = -1;
	w->buf = MemoryContextAlloc(cxt, SNAP_IO_BUFFER);
	w->started = GetCurrentTimestamp();
	INIT_CRC32C(w->crc);
	ensure_dir();
	snapshot_path(index, w->path, sizeof(w->path));
	snprintf(w->tmppath, sizeof(w->tmppath), "%s.tmp", w->path);

	worker_xact_start();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	w->streams = read_stream_defs(cxt, &w->nstreams);
	if (SPI_execute("SELECT node_id, address, removed FROM chronicle.cluster_members ORDER BY node_id",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read chronicle.cluster_members");
	nmembers = (int) SPI_processed;
	members = MemoryContextAllocZero(cxt, sizeof(SnapMember) * Max(nmembers, 1));
	for (i = 0; i < nmembers; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		members[i].id = (uint64) DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		members[i].address = MemoryContextStrdup(cxt, SPI_getvalue(tup, desc, 2));
		members[i].removed = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
	}
	PopActiveSnapshot();
	SPI_finish();
	/* sizes now: nothing changes them until the last step */
	for (i = 0; i < w->nstreams; i++)
	{
		Relation	rel = relation_open(w->streams[i].relid, AccessShareLock);

		/* not the file size: the file is extended ahead (tabplus.c) */
		w->streams[i].nblocks = tabplus_blocks_in_use(rel);
		relation_close(rel, AccessShareLock);
	}
	worker_xact_commit();

	w->fd = BasicOpenFilePerm(w->tmppath, O_RDWR | O_CREAT | O_TRUNC | PG_BINARY, pg_file_create_mode);
	if (w->fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create snapshot file \"%s\": %m", w->tmppath)));

	writer_put(w, SNAP_MAGIC, 8);
	writer_put_u32(w, SNAP_VERSION);
	writer_put_u32(w, BLCKSZ);
	writer_put_u64(w, cluster_id);
	writer_put_u64(w, index);
	writer_put_u64(w, term);
	writer_put_u32(w, (uint32) nmembers);
	writer_put_u32(w, (uint32) w->nstreams);
	for (i = 0; i < nmembers; i++)
	{
		uint8		removed = members[i].removed ? 1 : 0;

		writer_put_u64(w, members[i].id);
		writer_put(w, &removed, 1);
		writer_put_u16(w, (uint16) strlen(members[i].address));
		writer_put(w, members[i].address, strlen(members[i].address));
	}
	return w;
}

bool
snapshot_write_step(SnapshotWriter *w, int budget_ms)
{
	TimestampTz deadline = GetCurrentTimestamp() + (TimestampTz) budget_ms * 1000;
	PGAlignedBlock page;
	pg_crc32c	crc;

	worker_xact_start();
	while (w->cur < w->nstreams && GetCurrentTimestamp() < deadline)
	{
		StreamDef  *s = &w->streams[w->cur];
		Relation	rel;
		BufferAccessStrategy strategy;
		int			n = 0;

		if (!w->cur_started)
		{
			writer_put_u16(w, (uint16) strlen(s->name));
			writer_put(w, s->name, strlen(s->name));
			writer_put_u32(w, (uint32) strlen(s->ddl));
			writer_put(w, s->ddl, strlen(s->ddl));
			writer_put_u32(w, s->nblocks);
			w->cur_started = true;
			w->next_block = 0;
		}
		rel = relation_open(s->relid, AccessShareLock);
		strategy = GetAccessStrategy(BAS_BULKREAD);
		while (w->next_block < s->nblocks)
		{
			Buffer		buf = ReadBufferExtended(rel, MAIN_FORKNUM, w->next_block,
												 RBM_NORMAL, strategy);

			LockBuffer(buf, BUFFER_LOCK_SHARE);
			memcpy(page.data, BufferGetPage(buf), BLCKSZ);
			UnlockReleaseBuffer(buf);
			writer_put(w, page.data, BLCKSZ);
			w->next_block++;
			if (++n % 128 == 0 && GetCurrentTimestamp() >= deadline)
				break;
		}
		FreeAccessStrategy(strategy);
		relation_close(rel, AccessShareLock);
		if (w->next_block == s->nblocks)
		{
			w->cur++;
			w->cur_started = false;
		}
		CHECK_FOR_INTERRUPTS();
	}
	worker_xact_commit();
	if (w->cur < w->nstreams)
		return false;

	crc = w->crc;
	FIN_CRC32C(crc);
	writer_put_u32(w, crc);
	writer_put(w, SNAP_END_MAGIC, 8);
	writer_flush(w);
	if (pg_fsync(w->fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not fsync snapshot file \"%s\": %m", w->tmppath)));
	close(w->fd);
	w->fd = -1;
	(void) durable_rename(w->tmppath, w->path, ERROR);
	return true;
}

void
snapshot_write_abort(SnapshotWriter *w)
{
	if (w->fd >= 0)
		close(w->fd);
	(void) unlink(w->tmppath);
	MemoryContextDelete(w->cxt);
}

uint64
snapshot_writer_index(SnapshotWriter *w)
{
	return w->index;
}

void
snapshot_writer_report(SnapshotWriter *w, int *nstreams, uint64 *bytes, long *elapsed_ms)
{
	*nstreams = w->nstreams;
	*bytes = w->bytes;
	*elapsed_ms = (long) ((GetCurrentTimestamp() - w->started) / 1000);
}

/* ---------------------------------------------------------------- serving */

static int	read_fd = -1;
static uint64 read_fd_index = 0;

bool
snapshot_read(uint64 index, uint64 offset, char *buf, Size cap, Size *len, bool *done)
{
	struct stat st;
	ssize_t		n;

	if (read_fd < 0 || read_fd_index != index)
	{
		char		path[MAXPGPATH];

		if (read_fd >= 0)
			close(read_fd);
		read_fd_index = 0;
		snapshot_path(index, path, sizeof(path));
		read_fd = BasicOpenFile(path, O_RDONLY | PG_BINARY);
		if (read_fd < 0)
			return false;
		read_fd_index = index;
	}
	if (fstat(read_fd, &st) != 0 || offset > (uint64) st.st_size)
		return false;
	n = pg_pread(read_fd, buf, Min(cap, (uint64) st.st_size - offset), (off_t) offset);
	if (n < 0)
		return false;
	*len = (Size) n;
	*done = offset + n >= (uint64) st.st_size;
	return true;
}

/* -------------------------------------------------------------- receiving */

void
snapshot_stage_chunk(uint64 index, uint64 offset, const char *data, Size len, bool done)
{
	char		dir[MAXPGPATH];
	char		tmppath[MAXPGPATH];
	int			fd;
	Size		off = 0;

	ensure_dir();
	snapshot_dir(dir, sizeof(dir));
	snprintf(tmppath, sizeof(tmppath), "%s/receiving.tmp", dir);
	/* a transient file: closed for us if an error ends the worker */
	fd = OpenTransientFilePerm(tmppath, O_RDWR | O_CREAT | (offset == 0 ? O_TRUNC : 0) | PG_BINARY,
							   pg_file_create_mode);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open snapshot file \"%s\": %m", tmppath)));
	while (off < len)
	{
		ssize_t		rc = pg_pwrite(fd, data + off, len - off, (off_t) (offset + off));

		if (rc < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not write snapshot file \"%s\": %m", tmppath)));
		off += rc;
	}
	if (done)
	{
		char		path[MAXPGPATH];

		/* a chunk ends the file: drop anything of an older, longer transfer */
		if (ftruncate(fd, (off_t) (offset + len)) != 0 || pg_fsync(fd) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not fsync snapshot file \"%s\": %m", tmppath)));
		CloseTransientFile(fd);
		snapshot_path(index, path, sizeof(path));
		(void) durable_rename(tmppath, path, ERROR);
		return;
	}
	CloseTransientFile(fd);
}

bool
snapshot_exists(uint64 index)
{
	char		path[MAXPGPATH];
	struct stat st;

	snapshot_path(index, path, sizeof(path));
	return stat(path, &st) == 0;
}

void
snapshot_remove_others(uint64 keep, uint64 keep_also)
{
	char		dir[MAXPGPATH];
	char		keepname[64];
	char		keepname2[64];
	DIR		   *d;
	struct dirent *de;

	snapshot_dir(dir, sizeof(dir));
	snprintf(keepname, sizeof(keepname), "snapshot-%016llX", (unsigned long long) keep);
	snprintf(keepname2, sizeof(keepname2), "snapshot-%016llX", (unsigned long long) keep_also);
	d = AllocateDir(dir);
	if (d == NULL)
		return;
	while ((de = ReadDirExtended(d, dir, LOG)) != NULL)
	{
		char		path[MAXPGPATH];

		/* a transfer to us may be under way unless nothing is kept */
		if (strncmp(de->d_name, "snapshot-", 9) != 0 &&
			(keep != 0 || strcmp(de->d_name, "receiving.tmp") != 0))
			continue;
		if ((keep != 0 && strcmp(de->d_name, keepname) == 0) ||
			(keep_also != 0 && strcmp(de->d_name, keepname2) == 0))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (unlink(path) != 0 && errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not remove snapshot file \"%s\": %m", path)));
	}
	FreeDir(d);
	if (read_fd >= 0 && read_fd_index != keep && read_fd_index != keep_also)
	{
		close(read_fd);
		read_fd = -1;
		read_fd_index = 0;
	}
}

/* ------------------------------------------------------------- installing */

typedef struct SnapReader
{
	int			fd;
	const char *path;
	char	   *buf;
	Size		len;
	Size		pos;
	uint64		offset;			/* file offset of buf[0] */
	uint64		limit;			/* bytes of the file that may be read */
	pg_crc32c	crc;
} SnapReader;

static void
reader_fail(SnapReader *r, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("snapshot file \"%s\" is damaged: %s", r->path, what),
			 errhint("The worker restarts and the leader sends the snapshot again.")));
}

static void
reader_get(SnapReader *r, void *dst, Size n)
{
	char	   *p = dst;

	while (n > 0)
	{
		Size		take;

		if (r->pos == r->len)
		{
			ssize_t		rc;
			Size		want = SNAP_IO_BUFFER;

			r->offset += r->len;
			r->pos = r->len = 0;
			if (r->offset >= r->limit)
				reader_fail(r, "unexpected end");
			want = Min(want, r->limit - r->offset);
			rc = pg_pread(r->fd, r->buf, want, (off_t) r->offset);
			if (rc < 0)
				ereport(ERROR,
						(errcode_for_file_access(),
						 errmsg("could not read snapshot file \"%s\": %m", r->path)));
			if (rc == 0)
				reader_fail(r, "unexpected end");
			r->len = (Size) rc;
		}
		take = Min(n, r->len - r->pos);
		memcpy(p, r->buf + r->pos, take);
		COMP_CRC32C(r->crc, r->buf + r->pos, take);
		r->pos += take;
		p += take;
		n -= take;
	}
}

static uint16
reader_u16(SnapReader *r)
{
	uint16		v;

	reader_get(r, &v, sizeof(v));
	return v;
}

static uint32
reader_u32(SnapReader *r)
{
	uint32		v;

	reader_get(r, &v, sizeof(v));
	return v;
}

static uint64
reader_u64(SnapReader *r)
{
	uint64		v;

	reader_get(r, &v, sizeof(v));
	return v;
}

static char *
reader_str(SnapReader *r, Size len)
{
	char	   *s = palloc(len + 1);

	reader_get(r, s, len);
	s[len] = '\0';
	return s;
}

static void
reader_open(SnapReader *r, const char *path)
{
	struct stat st;

	memset(r, 0, sizeof(*r));
	r->path = path;
	r->fd = BasicOpenFile(path, O_RDONLY | PG_BINARY);
	if (r->fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open snapshot file \"%s\": %m", path)));
	if (fstat(r->fd, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat snapshot file \"%s\": %m", path)));
	if (st.st_size < 12)
		reader_fail(r, "too short");
	r->limit = (uint64) st.st_size - 12;
	r->buf = palloc(SNAP_IO_BUFFER);
	INIT_CRC32C(r->crc);
}

/* Header fields, checked against what the caller expects. */
static void
reader_header(SnapReader *r, uint64 cluster_id, uint64 index,
			  uint32 *nmembers, uint32 *nstreams)
{
	char		magic[8];

	reader_get(r, magic, 8);
	if (memcmp(magic, SNAP_MAGIC, 8) != 0)
		reader_fail(r, "bad magic number");
	if (reader_u32(r) != SNAP_VERSION)
		reader_fail(r, "unknown format version");
	if (reader_u32(r) != BLCKSZ)
		reader_fail(r, "written with another block size");
	if (reader_u64(r) != cluster_id)
		reader_fail(r, "it belongs to another cluster");
	if (reader_u64(r) != index)
		reader_fail(r, "it is not the snapshot at the expected index");
	(void) reader_u64(r);		/* term */
	*nmembers = reader_u32(r);
	*nstreams = reader_u32(r);
}

/* Pass 1: the CRC and the end marker cover the whole file. */
static void
verify_file(const char *path, uint64 cluster_id, uint64 index)
{
	SnapReader	r;
	uint32		nmembers;
	uint32		nstreams;
	char		tail[12];
	uint32		stored;
	char		chunk[8192];

	reader_open(&r, path);
	reader_header(&r, cluster_id, index, &nmembers, &nstreams);
	while (r.offset + r.pos < r.limit)
		reader_get(&r, chunk, Min(sizeof(chunk), (Size) (r.limit - (r.offset + r.pos))));
	FIN_CRC32C(r.crc);
	if (pg_pread(r.fd, tail, 12, (off_t) r.limit) != 12)
		reader_fail(&r, "no trailer");
	memcpy(&stored, tail, 4);
	if (memcmp(tail + 4, SNAP_END_MAGIC, 8) != 0)
		reader_fail(&r, "no end marker");
	if (stored != r.crc)
		reader_fail(&r, "checksum mismatch");
	close(r.fd);
	pfree(r.buf);
}

static void
spi_exec(const char *sql, int expect)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc != expect)
		elog(ERROR, "snapshot install: \"%s\" failed (%d)", sql, rc);
}

static void
drop_stream(const char *name)
{
	char	   *sql = psprintf("DROP TABLE %s", name);
	MemoryContext oldcxt = CurrentMemoryContext;

	PG_TRY();
	{
		if (SPI_execute(sql, false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "could not drop stream %s", name);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* name the way out: objects of this node depend on the stream */
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("cannot install the Raft snapshot: %s", edata->message),
				 edata->detail ? errdetail("%s", edata->detail) : 0,
				 errhint("Drop the objects on this node that depend on stream %s: the cluster "
						 "dropped or redefined it while this node was away.", name)));
	}
	PG_END_TRY();
}

/* Copy nblocks pages from the file into rel's (empty) main fork. */
static void
install_pages(SnapReader *r, Relation rel, BlockNumber nblocks, uint64 index)
{
	PGAlignedBlock *pages = palloc(sizeof(PGAlignedBlock) * SNAP_WAL_BATCH);
	BlockNumber blknos[SNAP_WAL_BATCH];
	char	   *ptrs[SNAP_WAL_BATCH];
	BlockNumber blk = 0;
	SMgrRelation smgr;

	if (RelationGetNumberOfBlocks(rel) != 0)
		elog(ERROR, "snapshot install: stream \"%s\" is not empty", RelationGetRelationName(rel));
	while (blk < nblocks)
	{
		int			n = 0;
		int			i;

		while (n < SNAP_WAL_BATCH && blk + n < nblocks)
		{
			Page		page = pages[n].data;

			reader_get(r, page, BLCKSZ);
			if (blk + n == TABPLUS_META_BLOCK)
			{
				TabPlusMeta *meta = TabPlusPageGetMeta(page);

				if (!tabplus_page_is(page, TABPLUS_PAGE_META) || meta->magic != TABPLUS_MAGIC)
					reader_fail(r, "a stream's first page is not a TAB+ meta page");
				/* entries up to the snapshot are in; none is half applied */
				meta->applied_index = TABPLUS_APPLY_ENTRY_DONE(index);
				meta->applying_index = 0;
				meta->applying_done = 0;
			}
			blknos[n] = blk + n;
			ptrs[n] = page;
			n++;
		}
		log_newpages(&rel->rd_node, MAIN_FORKNUM, n, blknos, ptrs, false);
		smgr = RelationGetSmgr(rel);
		for (i = 0; i < n; i++)
		{
			PageSetChecksumInplace(ptrs[i], blknos[i]);
			smgrextend(smgr, MAIN_FORKNUM, blknos[i], ptrs[i], true);
		}
		blk += n;
		/* start writeback as we go, so the final sync does not do it all */
		if (blk % SNAP_WRITEBACK_BLOCKS == 0)
			smgrwriteback(smgr, MAIN_FORKNUM, blk - SNAP_WRITEBACK_BLOCKS, SNAP_WRITEBACK_BLOCKS);
		CHECK_FOR_INTERRUPTS();
	}
	/* the pages bypassed shared buffers: a checkpoint did not see them */
	smgrimmedsync(RelationGetSmgr(rel), MAIN_FORKNUM);
	pfree(pages);
}

void
snapshot_install(uint64 cluster_id, uint64 index, SnapshotInstallResult *result)
{
	char		path[MAXPGPATH];
	SnapReader	r;
	uint32		nmembers;
	uint32		nstreams;
	uint32		i;
	MemoryContext cxt;
	StreamDef  *local;
	int			nlocal;
	Oid		   *installed;
	StringInfoData sql;

	snapshot_path(index, path, sizeof(path));
	memset(result, 0, sizeof(*result));
	verify_file(path, cluster_id, index);

	worker_xact_start();
	cxt = CurTransactionContext;
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	local = read_stream_defs(cxt, &nlocal);

	reader_open(&r, path);
	reader_header(&r, cluster_id, index, &nmembers, &nstreams);

	initStringInfo(&sql);
	appendStringInfoString(&sql, "DELETE FROM chronicle.cluster_members");
	spi_exec(sql.data, SPI_OK_DELETE);
	for (i = 0; i < nmembers; i++)
	{
		uint64		id = reader_u64(&r);
		uint8		removed;
		char	   *address;

		reader_get(&r, &removed, 1);
		address = reader_str(&r, reader_u16(&r));
		resetStringInfo(&sql);
		appendStringInfo(&sql, "INSERT INTO chronicle.cluster_members VALUES (%llu, %s, %s)",
						 (unsigned long long) id, quote_literal_cstr(address),
						 removed ? "true" : "false");
		spi_exec(sql.data, SPI_OK_INSERT);
	}

	installed = palloc(sizeof(Oid) * Max(nstreams, 1));
	for (i = 0; i < nstreams; i++)
	{
		char	   *name = reader_str(&r, reader_u16(&r));
		char	   *ddl = reader_str(&r, reader_u32(&r));
		BlockNumber nblocks = reader_u32(&r);
		StreamDef  *keep = NULL;
		Relation	rel;
		Oid			relid;
		int			k;

		for (k = 0; k < nlocal; k++)
		{
			if (strcmp(local[k].name, name) != 0)
				continue;
			local[k].seen = true;
			if (strcmp(local[k].ddl, ddl) == 0)
				keep = &local[k];
			else
				drop_stream(name);
		}
		if (keep != NULL)
		{
			relid = keep->relid;
			rel = relation_open(relid, AccessExclusiveLock);
			RelationSetNewRelfilenode(rel, rel->rd_rel->relpersistence);
		}
		else
		{
			/* a stream of the same name that is not in cluster_streams */
			relid = RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(name)),
									 NoLock, true);
			if (OidIsValid(relid))
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_TABLE),
						 errmsg("cannot install the Raft snapshot: relation %s exists on this node but is not a replicated stream", name),
						 errhint("Rename or drop the local relation %s; the cluster has a stream of that name.", name)));
			if (SPI_execute(ddl, false, 0) != SPI_OK_UTILITY)
				elog(ERROR, "snapshot install: could not create stream %s", name);
			CommandCounterIncrement();
			relid = RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(name)),
									 NoLock, false);
			rel = relation_open(relid, AccessExclusiveLock);
		}
		install_pages(&r, rel, nblocks, index);
		relation_close(rel, NoLock);
		installed[i] = relid;
	}
	/* streams the cluster dropped (or renamed) while this node was away */
	for (i = 0; i < (uint32) nlocal; i++)
		if (!local[i].seen)
			drop_stream(local[i].name);

	spi_exec("DELETE FROM chronicle.cluster_streams", SPI_OK_DELETE);
	/* the state at the snapshot's index has no open large transaction */
	spi_exec("DELETE FROM chronicle.open_parts", SPI_OK_DELETE);
	for (i = 0; i < nstreams; i++)
	{
		resetStringInfo(&sql);
		appendStringInfo(&sql, "INSERT INTO chronicle.cluster_streams VALUES (%u)", installed[i]);
		spi_exec(sql.data, SPI_OK_INSERT);
	}
	resetStringInfo(&sql);
	appendStringInfo(&sql, "UPDATE chronicle.raft_applied SET applied_index = %llu",
					 (unsigned long long) index);
	spi_exec(sql.data, SPI_OK_UPDATE);

	close(r.fd);
	result->nstreams = (int) nstreams;
	result->bytes = r.limit + 12;
	PopActiveSnapshot();
	SPI_finish();
	worker_xact_commit();
	/* the worker commits asynchronously; this one must be on disk now */
	XLogFlush(XactLastCommitEnd);
}
