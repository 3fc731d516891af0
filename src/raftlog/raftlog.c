/*-------------------------------------------------------------------------
 *
 * raftlog.c
 *	  Durable Raft log store: the entries, the hard state (term, vote,
 *	  commit) and the compaction point (snapshot index, term, membership)
 *	  of one node, in one directory of plain files.
 *
 * What it owns.  In its directory: "raftlog.lock" (an fcntl lock held while
 * open, so two processes never write the same log), "raft-state" (hard state
 * and snapshot meta), "log-<first index, 16 hex digits>.seg" (segments),
 * "spare-<16 hex digits>" (compacted segment files kept for reuse, see
 * opts.spare_bytes) and "*.tmp" files while a file is being created.  Other
 * files are left alone.
 * Formats (all integers little-endian; docs/raft-log.md has the tables):
 *
 *	raft-state: two 852-byte copies at offsets 0 and 4096, each with magic,
 *	version, sequence number, cluster id, term, vote, commit, snapshot index
 *	and term, the snapshot's membership and a CRC-32C.  The copy with the
 *	highest sequence number among those that pass their CRC is current.
 *
 *	segment: a 48-byte header (magic, version, cluster id, first index,
 *	term of the entry before the first one, flags, CRC-32C), then records:
 *	a 32-byte header (CRC-32C of everything after the CRC field including
 *	the payload, payload length, term, index, entry type, zero) and the
 *	payload.  Flag 1: made from a spare, so older records (of lower
 *	indexes) may follow the last one.
 *
 * Invariants after raftlog_open() and after every call that returns OK:
 *	- Segments hold consecutive indexes; each header's prev_term is the term
 *	  of the entry before its first one; terms never decrease.
 *	- The log's logical start is snapshot index + 1.  The first segment may
 *	  still hold entries at or below the snapshot index (a segment is only
 *	  deleted when every entry in it is covered); they are never returned.
 *	- Only the last segment is open for writing; every earlier segment is
 *	  complete and fsync'd, and so is its directory entry.
 *	- The file ends of all segments but the last were fsync'd when they were
 *	  closed, so only the last segment can have a torn tail.
 *
 * Durability rules (the order of operations matters for crash recovery):
 *	1. A file is created complete: write "<name>.tmp", fsync it, rename it,
 *	   fsync the directory.  A segment or state file under its final name
 *	   therefore always has a valid header; a leftover *.tmp is deleted at
 *	   open.
 *	2. Appends are buffered.  raftlog_sync() writes the buffer and fsyncs
 *	   the active segment once (fdatasync: the file size is part of it);
 *	   only after that does it report the entries durable.  Starting a new
 *	   segment (when the current one is full) first writes and fsyncs the
 *	   old one, then creates the new one by rule 1, so at most one fsync of
 *	   data plus a file creation is added per segment_size bytes.  With
 *	   opts.preallocate a new segment is created at segment_size (zeros
 *	   after the header), so that appends change neither the size nor the
 *	   block map and fdatasync writes data only; sealing cuts the old
 *	   segment to its last record before its fsync, so only the last
 *	   segment ever has such a zero tail.
 *	3. The hard state is updated in place, alternating between the two
 *	   copies and fsync'ing after each write: a torn write damages only the
 *	   copy being written, and the other one still holds the previous state.
 *	   This is one fsync per save instead of the two (file plus directory)
 *	   a write-and-rename would cost, and the hard state is saved often.
 *	4. raftlog_truncate_from() deletes whole segments from the highest down,
 *	   fsync'ing the directory after each, then cuts the segment holding the
 *	   index and fsyncs it, all before returning: the removal is durable
 *	   before any replacement entry is written, and a crash in between
 *	   leaves a shorter but contiguous log.
 *	5. raftlog_compact() and raftlog_install_snapshot() write the new
 *	   snapshot meta to the state file and fsync it FIRST, then delete the
 *	   segments it covers (install: all of them; compact: it only forgets
 *	   them, and raftlog_remove_compacted() deletes their files later, a
 *	   few at a time, without a directory fsync).  A crash in between
 *	   leaves segments that recovery recognises and deletes: those wholly
 *	   at or below the snapshot index (never validated, so a zero tail in
 *	   one is no damage), and, when the log's term at the snapshot index is
 *	   not the snapshot's term (a snapshot from the leader that replaced a
 *	   conflicting log), all of them.  Deleting first would lose
 *	   acknowledged entries if the node died before the snapshot was
 *	   recorded.
 *	6. After any failed write, fsync, truncate, rename or unlink the handle
 *	   is broken (see raftlog.h): the kernel may have dropped the dirty
 *	   pages, so nothing is retried and nothing more is acknowledged.
 *	7. Spares: raftlog_remove_compacted() renames a compacted segment to
 *	   "spare-N" (no fsync: a crash that undoes it leaves a covered segment,
 *	   which recovery deletes) while the spares stay within
 *	   opts.spare_bytes and RL_MAX_SPARES files, else deletes it.  A new
 *	   segment takes a spare by renaming it to "<name>.tmp" and writing a
 *	   header with flag 1, then goes on by rule 1.  Only compacted segments become spares, so the
 *	   older records in a spare all have indexes below any new segment's
 *	   first one; sealing cuts them off a segment (rule 2), and so does
 *	   raftlog_close() for the last one.
 *
 * Recovery (raftlog_open) first reads everything and decides, and only then
 * repairs, so that an error leaves the files as they were for inspection.  A
 * short record, a length beyond the file or RAFTLOG_MAX_ENTRY_SIZE, or a CRC
 * mismatch in the last segment ends the log there: that is what a torn write
 * looks like, unless everything from there on is zero, which is the unused
 * preallocated space (kept, not reported; zeros never pass a CRC).  Records
 * after the damaged one are dropped even if they look valid: writeback of an
 * unsynced tail may reach the disk out of order, so a later valid record
 * proves nothing, and nothing after a hole may be applied.  The same damage
 * in an earlier segment, a record that passes its CRC but has the wrong
 * index or a decreasing term, a bad header, or a log that ends before the
 * stored commit index is an error: the node must not start on it.  In a
 * last segment made from a spare, a valid record of an index below the
 * segment's first one also ends the log (an older record of the spare);
 * whatever follows the log there is cut, counted as stale rather than torn
 * (a torn write cannot be told from the spare's older records).
 *
 * src/raftlog/raftlog.c
 *
 *-------------------------------------------------------------------------
 */
/* for F_OFD_SETLK; PostgreSQL's own build also defines it on Linux */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif

#include "raftlog/raftlog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "raftlog/crc32c.h"

/*----------
 * On-disk format
 *----------
 */
#define RL_FORMAT_VERSION	1

#define RL_SEG_MAGIC		UINT32_C(0x474C5243)	/* "CRLG" */
#define RL_STATE_MAGIC		UINT32_C(0x54535243)	/* "CRST" */

#define RL_SEG_HEADER_SIZE	48
#define RL_SEG_HDR_CRC_OFF	40	/* CRC covers bytes [0, 40) */
#define RL_SEG_FLAG_RECYCLED UINT64_C(1)	/* header bytes 32..39 */

#define RL_REC_HEADER_SIZE	32	/* CRC covers bytes [4, 32) + payload */

#define RL_STATE_SLOT_SIZE	852
#define RL_STATE_CRC_OFF	848 /* CRC covers bytes [0, 848) */
#define RL_STATE_SLOT_STRIDE 4096	/* each copy in its own page */
#define RL_STATE_FILE_SIZE	(2 * RL_STATE_SLOT_STRIDE)

#define RL_STATE_FILE		"raft-state"
#define RL_STATE_TMP		"raft-state.tmp"
#define RL_LOCK_FILE		"raftlog.lock"
#define RL_SEG_NAME_LEN		24	/* "log-" + 16 hex + ".seg" */
#define RL_SPARE_PREFIX		"spare-"
#define RL_SPARE_NAME_LEN	22	/* "spare-" + 16 hex */
#define RL_MAX_SPARES		64	/* however small they are */

#define RL_READ_CHUNK		((size_t) 256 * 1024)
#define RL_ARENA_CHUNK		((size_t) 1024 * 1024)

/* Sequential reader of one segment file. */
typedef struct rl_reader
{
	int			fd;
	uint64_t	file_size;
	uint64_t	pos;			/* offset of the next record */
	uint8_t    *buf;
	size_t		cap;
	uint64_t	buf_off;
	size_t		buf_len;
	const char *name;
} rl_reader;

typedef struct rl_segment
{
	raft_index	first;			/* index of its first record */
	raft_index	last;			/* index of its last record; first-1 if none */
	raft_term	prev_term;		/* term of entry first-1 */
	uint64_t	size;			/* bytes, including still-buffered ones */
	bool		recycled;		/* made from a spare (header flag 1) */
} rl_segment;

struct raftlog
{
	char	   *dir;
	int			dirfd;
	int			lockfd;
	int			statefd;
	uint64_t	cluster_id;
	raftlog_options opts;

	raft_hard_state hs;
	raft_snapshot_meta snap;
	uint64_t	state_seq;		/* sequence number of the current copy */

	rl_segment *segs;			/* ordered by first index */
	size_t		nsegs;
	size_t		segs_cap;
	int			active_fd;		/* segs[nsegs - 1], or -1 when nsegs == 0 */
	raft_index *doomed;			/* first indexes of compacted segments whose
								 * files are still to remove, oldest first */
	size_t		ndoomed;
	size_t		doomed_cap;
	uint64_t   *spare_ids;		/* "spare-<id>" files, newest last */
	uint64_t   *spare_sizes;
	size_t		nspares;
	size_t		spares_cap;
	uint64_t	spare_total;	/* bytes of all spares */
	uint64_t	next_spare_id;

	uint8_t    *wbuf;			/* records not yet written to active_fd */
	size_t		wlen;
	uint64_t	wbuf_off;		/* file offset where wbuf[0] belongs */

	/*
	 * raftlog_read_payload() keeps its place: the segment it reads (file
	 * and buffer in rb), and the index of the record at rb.pos, so reads
	 * of consecutive entries never scan a segment again.  Closed by
	 * anything that removes or cuts segments.
	 */
	rl_reader	rb;
	raft_index	rb_seg;			/* first index of that segment; 0: closed */
	raft_index	rb_index;
	char		rb_name[64];

	raft_index	last_index;
	raft_term	last_term;
	raft_index	synced_index;
	raft_term	synced_term;
	bool		unsynced;		/* appended since the last fsync */
	bool		broken;

	char		errmsg[RAFTLOG_ERRMSG_SIZE];
};

/* Result of reading one record. */
typedef enum rl_rec_result
{
	RL_REC_OK,
	RL_REC_END,					/* clean end of file */
	RL_REC_TORN					/* short or checksum-failing record */
} rl_rec_result;

typedef struct rl_record
{
	uint64_t	offset;			/* of the record header in the file */
	uint32_t	len;
	uint32_t	type;
	raft_term	term;
	raft_index	index;
	const uint8_t *payload;		/* valid until the next read */
} rl_record;

/* Payload storage of a raftlog_entries. */
typedef struct rl_chunk
{
	struct rl_chunk *next;
	size_t		used;
	size_t		cap;
	uint8_t		data[];
} rl_chunk;

/*----------
 * Small helpers
 *----------
 */
static void
put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) v;
	p[1] = (uint8_t) (v >> 8);
	p[2] = (uint8_t) (v >> 16);
	p[3] = (uint8_t) (v >> 24);
}

static void
put_u64(uint8_t *p, uint64_t v)
{
	put_u32(p, (uint32_t) v);
	put_u32(p + 4, (uint32_t) (v >> 32));
}

static uint32_t
get_u32(const uint8_t *p)
{
	return (uint32_t) p[0] | (uint32_t) p[1] << 8 |
		(uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static uint64_t
get_u64(const uint8_t *p)
{
	return (uint64_t) get_u32(p) | (uint64_t) get_u32(p + 4) << 32;
}

#if defined(__GNUC__) || defined(__clang__)
#define RL_PRINTF_ATTR(f, a) __attribute__((format(printf, f, a)))
#else
#define RL_PRINTF_ATTR(f, a)
#endif

static void set_err(raftlog *log, const char *fmt,...) RL_PRINTF_ATTR(2, 3);

static void
set_err(raftlog *log, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(log->errmsg, sizeof(log->errmsg), fmt, ap);
	va_end(ap);
}

/* Report a failed system call; errno must still be the call's. */
static int
err_sys(raftlog *log, const char *what, const char *name)
{
	int			save = errno;

	set_err(log, "could not %s \"%s/%s\": %s", what, log->dir,
			name ? name : "", strerror(save));
	errno = save;
	return RAFTLOG_ERR_IO;
}

/*
 * The same for a call that changes the files: the handle becomes unusable
 * (rule 6 of the header comment).
 */
static int
err_sys_broken(raftlog *log, const char *what, const char *name)
{
	log->broken = true;
	return err_sys(log, what, name);
}

static int
check_usable(raftlog *log)
{
	if (log->broken)
	{
		/* keep the original message: it says what failed */
		return RAFTLOG_ERR_BROKEN;
	}
	return RAFTLOG_OK;
}

static void
seg_name(char *buf, size_t size, raft_index first, bool tmp)
{
	snprintf(buf, size, "log-%016" PRIx64 ".seg%s", (uint64_t) first,
			 tmp ? ".tmp" : "");
}

/* 16 lowercase hex digits at p, as in file names; false if not */
static bool
parse_hex16(const char *p, uint64_t *value)
{
	uint64_t	v = 0;
	int			i;

	for (i = 0; i < 16; i++)
	{
		char		c = p[i];

		if (c >= '0' && c <= '9')
			v = v << 4 | (uint64_t) (c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v << 4 | (uint64_t) (c - 'a' + 10);
		else
			return false;
	}
	*value = v;
	return true;
}

static bool
parse_seg_name(const char *name, raft_index *first)
{
	return strlen(name) == RL_SEG_NAME_LEN && strncmp(name, "log-", 4) == 0 &&
		strcmp(name + 20, ".seg") == 0 && parse_hex16(name + 4, first);
}

static void
spare_name(char *buf, size_t size, uint64_t id)
{
	snprintf(buf, size, RL_SPARE_PREFIX "%016" PRIx64, id);
}

static bool
parse_spare_name(const char *name, uint64_t *id)
{
	return strlen(name) == RL_SPARE_NAME_LEN &&
		strncmp(name, RL_SPARE_PREFIX, strlen(RL_SPARE_PREFIX)) == 0 &&
		parse_hex16(name + strlen(RL_SPARE_PREFIX), id);
}

/* Remember spare file id of size bytes (newest last). */
static int
spare_add(raftlog *log, uint64_t id, uint64_t size)
{
	if (log->nspares == log->spares_cap)
	{
		size_t		cap = log->spares_cap ? log->spares_cap * 2 : 16;
		uint64_t   *ids = realloc(log->spare_ids, cap * sizeof(uint64_t));
		uint64_t   *sizes;

		if (ids == NULL)
			return RAFTLOG_ERR_NOMEM;
		log->spare_ids = ids;
		sizes = realloc(log->spare_sizes, cap * sizeof(uint64_t));
		if (sizes == NULL)
			return RAFTLOG_ERR_NOMEM;
		log->spare_sizes = sizes;
		log->spares_cap = cap;
	}
	log->spare_ids[log->nspares] = id;
	log->spare_sizes[log->nspares] = size;
	log->nspares++;
	log->spare_total += size;
	if (id >= log->next_spare_id)
		log->next_spare_id = id + 1;
	return RAFTLOG_OK;
}

/* pwrite all of buf; -1 with errno on failure. */
static int
write_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len > 0)
	{
		ssize_t		n = pwrite(fd, p, len, (off_t) off);

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
		{
			errno = ENOSPC;		/* no progress: treat as a full disk */
			return -1;
		}
		p += n;
		len -= (size_t) n;
		off += (uint64_t) n;
	}
	return 0;
}

/* pread up to len bytes (fewer only at end of file); -1 with errno. */
static ssize_t
read_full(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t    *p = buf;
	size_t		got = 0;

	while (got < len)
	{
		ssize_t		n = pread(fd, p + got, len - got, (off_t) (off + got));

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		got += (size_t) n;
	}
	return (ssize_t) got;
}

/* Flush file data and the metadata needed to read it (size). */
static int
sync_data(int fd)
{
	int			rc;

	do
	{
#if defined(__APPLE__)
		rc = fcntl(fd, F_FULLFSYNC);
#elif defined(__linux__)
		rc = fdatasync(fd);
#else
		rc = fsync(fd);
#endif
	} while (rc != 0 && errno == EINTR);
	return rc;
}

static int
sync_dir(raftlog *log)
{
	int			rc;

	do
		rc = fsync(log->dirfd);
	while (rc != 0 && errno == EINTR);
	if (rc != 0)
		return err_sys_broken(log, "fsync directory", NULL);
	return RAFTLOG_OK;
}

static void
close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static rl_segment *
last_seg(raftlog *log)
{
	return log->nsegs > 0 ? &log->segs[log->nsegs - 1] : NULL;
}

static int
segs_reserve(raftlog *log, size_t n)
{
	rl_segment *p;
	size_t		cap;

	if (n <= log->segs_cap)
		return RAFTLOG_OK;
	cap = log->segs_cap ? log->segs_cap * 2 : 16;
	while (cap < n)
		cap *= 2;
	p = realloc(log->segs, cap * sizeof(rl_segment));
	if (p == NULL)
	{
		set_err(log, "out of memory");
		return RAFTLOG_ERR_NOMEM;
	}
	log->segs = p;
	log->segs_cap = cap;
	return RAFTLOG_OK;
}

/*----------
 * Hard-state file
 *----------
 */
static void
state_encode(const raftlog *log, uint64_t seq, const raft_hard_state *hs,
			 const raft_snapshot_meta *snap, uint8_t *p)
{
	uint32_t	i;

	memset(p, 0, RL_STATE_SLOT_SIZE);
	put_u32(p + 0, RL_STATE_MAGIC);
	put_u32(p + 4, RL_FORMAT_VERSION);
	put_u64(p + 8, seq);
	put_u64(p + 16, log->cluster_id);
	put_u64(p + 24, hs->term);
	put_u64(p + 32, hs->vote);
	put_u64(p + 40, hs->commit);
	put_u64(p + 48, snap->index);
	put_u64(p + 56, snap->term);
	put_u32(p + 64, snap->conf.num_voters);
	put_u32(p + 68, snap->conf.num_learners);
	put_u32(p + 72, snap->conf.num_removed);
	for (i = 0; i < snap->conf.num_voters; i++)
		put_u64(p + 80 + 8 * i, snap->conf.voters[i]);
	for (i = 0; i < snap->conf.num_learners; i++)
		put_u64(p + 208 + 8 * i, snap->conf.learners[i]);
	for (i = 0; i < snap->conf.num_removed; i++)
		put_u64(p + 336 + 8 * i, snap->conf.removed[i]);
	put_u32(p + RL_STATE_CRC_OFF, raftlog_crc32c(0, p, RL_STATE_CRC_OFF));
}

/*
 * Decode one copy.  Returns false if it is not a valid copy (torn, never
 * written); *cluster_id is set whenever the CRC passes.
 */
static bool
state_decode(const uint8_t *p, uint64_t *seq, uint64_t *cluster_id,
			 raft_hard_state *hs, raft_snapshot_meta *snap)
{
	uint32_t	i;

	if (get_u32(p + RL_STATE_CRC_OFF) != raftlog_crc32c(0, p, RL_STATE_CRC_OFF))
		return false;
	if (get_u32(p + 0) != RL_STATE_MAGIC ||
		get_u32(p + 4) != RL_FORMAT_VERSION)
		return false;
	*seq = get_u64(p + 8);
	*cluster_id = get_u64(p + 16);
	memset(hs, 0, sizeof(*hs));
	memset(snap, 0, sizeof(*snap));
	hs->term = get_u64(p + 24);
	hs->vote = get_u64(p + 32);
	hs->commit = get_u64(p + 40);
	snap->index = get_u64(p + 48);
	snap->term = get_u64(p + 56);
	snap->conf.num_voters = get_u32(p + 64);
	snap->conf.num_learners = get_u32(p + 68);
	snap->conf.num_removed = get_u32(p + 72);
	if (snap->conf.num_voters > RAFT_MAX_MEMBERS ||
		snap->conf.num_learners > RAFT_MAX_MEMBERS ||
		snap->conf.num_removed > RAFT_MAX_REMOVED)
		return false;
	for (i = 0; i < snap->conf.num_voters; i++)
		snap->conf.voters[i] = get_u64(p + 80 + 8 * i);
	for (i = 0; i < snap->conf.num_learners; i++)
		snap->conf.learners[i] = get_u64(p + 208 + 8 * i);
	for (i = 0; i < snap->conf.num_removed; i++)
		snap->conf.removed[i] = get_u64(p + 336 + 8 * i);
	return true;
}

/* Rule 3: write the next copy in place and fsync it. */
static int
state_write(raftlog *log, const raft_hard_state *hs,
			const raft_snapshot_meta *snap)
{
	uint8_t		slot[RL_STATE_SLOT_SIZE];
	uint64_t	seq = log->state_seq + 1;

	state_encode(log, seq, hs, snap, slot);
	if (write_full(log->statefd, slot, sizeof(slot),
				   (seq % 2) * RL_STATE_SLOT_STRIDE) != 0)
		return err_sys_broken(log, "write", RL_STATE_FILE);
	if (sync_data(log->statefd) != 0)
		return err_sys_broken(log, "fsync", RL_STATE_FILE);
	log->state_seq = seq;
	log->hs = *hs;
	log->snap = *snap;
	return RAFTLOG_OK;
}

/* Rule 1 for the state file: the first copy, sequence number 1. */
static int
state_create(raftlog *log)
{
	uint8_t    *file;
	raft_hard_state hs;
	raft_snapshot_meta snap;
	int			fd;

	memset(&hs, 0, sizeof(hs));
	memset(&snap, 0, sizeof(snap));
	file = calloc(1, RL_STATE_FILE_SIZE);
	if (file == NULL)
	{
		set_err(log, "out of memory");
		return RAFTLOG_ERR_NOMEM;
	}
	state_encode(log, 1, &hs, &snap, file + RL_STATE_SLOT_STRIDE);

	fd = openat(log->dirfd, RL_STATE_TMP, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
				0600);
	if (fd < 0)
	{
		free(file);
		return err_sys_broken(log, "create", RL_STATE_TMP);
	}
	if (write_full(fd, file, RL_STATE_FILE_SIZE, 0) != 0 || sync_data(fd) != 0)
	{
		int			save = errno;

		close(fd);
		free(file);
		errno = save;
		return err_sys_broken(log, "write", RL_STATE_TMP);
	}
	free(file);
	close(fd);
	if (renameat(log->dirfd, RL_STATE_TMP, log->dirfd, RL_STATE_FILE) != 0)
		return err_sys_broken(log, "rename", RL_STATE_TMP);
	return sync_dir(log);
}

/* Read the state file, choose the current copy. */
static int
state_load(raftlog *log, raftlog_recovery *rec)
{
	uint8_t    *file;
	ssize_t		got;
	int			i;
	bool		found = false;

	file = calloc(1, RL_STATE_FILE_SIZE);
	if (file == NULL)
	{
		set_err(log, "out of memory");
		return RAFTLOG_ERR_NOMEM;
	}
	got = read_full(log->statefd, file, RL_STATE_FILE_SIZE, 0);
	if (got < 0)
	{
		free(file);
		return err_sys(log, "read", RL_STATE_FILE);
	}
	for (i = 0; i < 2; i++)
	{
		uint64_t	seq;
		uint64_t	cid;
		raft_hard_state hs;
		raft_snapshot_meta snap;

		if ((size_t) got < (size_t) i * RL_STATE_SLOT_STRIDE + RL_STATE_SLOT_SIZE ||
			!state_decode(file + i * RL_STATE_SLOT_STRIDE, &seq, &cid, &hs, &snap))
		{
			rec->state_copies_invalid++;
			continue;
		}
		if (cid != log->cluster_id)
		{
			free(file);
			set_err(log, "\"%s/%s\" belongs to cluster %" PRIu64
					", not to cluster %" PRIu64,
					log->dir, RL_STATE_FILE, cid, log->cluster_id);
			return RAFTLOG_ERR_CLUSTER_ID;
		}
		if ((seq % 2) != (uint64_t) i)
			continue;			/* a copy in the wrong place is not ours */
		if (!found || seq > log->state_seq)
		{
			found = true;
			log->state_seq = seq;
			log->hs = hs;
			log->snap = snap;
		}
	}
	free(file);
	if (!found)
	{
		set_err(log, "\"%s/%s\" has no valid copy of the hard state",
				log->dir, RL_STATE_FILE);
		return RAFTLOG_ERR_CORRUPT;
	}
	/* never written: the other copy of a new file, not damage */
	if (log->state_seq == 1 && rec->state_copies_invalid == 1)
		rec->state_copies_invalid = 0;
	if (log->snap.index == 0 && log->snap.term != 0)
	{
		set_err(log, "\"%s/%s\": snapshot index 0 with term %" PRIu64,
				log->dir, RL_STATE_FILE, (uint64_t) log->snap.term);
		return RAFTLOG_ERR_CORRUPT;
	}
	return RAFTLOG_OK;
}

/*----------
 * Segment files
 *----------
 */
static void
seg_header_encode(const raftlog *log, raft_index first, raft_term prev_term,
				  uint64_t flags, uint8_t *p)
{
	memset(p, 0, RL_SEG_HEADER_SIZE);
	put_u32(p + 0, RL_SEG_MAGIC);
	put_u32(p + 4, RL_FORMAT_VERSION);
	put_u64(p + 8, log->cluster_id);
	put_u64(p + 16, first);
	put_u64(p + 24, prev_term);
	put_u64(p + 32, flags);
	put_u32(p + RL_SEG_HDR_CRC_OFF, raftlog_crc32c(0, p, RL_SEG_HDR_CRC_OFF));
	/* bytes 44..47 reserved, zero */
}

/* Open a segment and check its header against its name and cluster. */
static int
seg_open_check(raftlog *log, raft_index first, int flags, int *fd_out,
			   raft_term *prev_term, uint64_t *file_size, bool *recycled)
{
	char		name[64];
	uint8_t		h[RL_SEG_HEADER_SIZE];
	struct stat st;
	ssize_t		got;
	int			fd;

	seg_name(name, sizeof(name), first, false);
	fd = openat(log->dirfd, name, flags | O_CLOEXEC);
	if (fd < 0)
		return err_sys(log, "open", name);
	if (fstat(fd, &st) != 0)
	{
		err_sys(log, "stat", name);
		close(fd);
		return RAFTLOG_ERR_IO;
	}
	got = read_full(fd, h, sizeof(h), 0);
	if (got < 0)
	{
		err_sys(log, "read", name);
		close(fd);
		return RAFTLOG_ERR_IO;
	}
	if (got < RL_SEG_HEADER_SIZE || get_u32(h) != RL_SEG_MAGIC ||
		get_u32(h + RL_SEG_HDR_CRC_OFF) != raftlog_crc32c(0, h, RL_SEG_HDR_CRC_OFF))
	{
		close(fd);
		set_err(log, "segment \"%s/%s\" has no valid header", log->dir, name);
		return RAFTLOG_ERR_CORRUPT;
	}
	if (get_u64(h + 8) != log->cluster_id)
	{
		close(fd);
		set_err(log, "segment \"%s/%s\" belongs to cluster %" PRIu64
				", not to cluster %" PRIu64,
				log->dir, name, get_u64(h + 8), log->cluster_id);
		return RAFTLOG_ERR_CLUSTER_ID;
	}
	if (get_u32(h + 4) != RL_FORMAT_VERSION ||
		(get_u64(h + 32) & ~RL_SEG_FLAG_RECYCLED) != 0 || get_u32(h + 44) != 0)
	{
		close(fd);
		set_err(log, "segment \"%s/%s\" has unsupported format version %u",
				log->dir, name, get_u32(h + 4));
		return RAFTLOG_ERR_CORRUPT;
	}
	if (get_u64(h + 16) != first)
	{
		close(fd);
		set_err(log, "segment \"%s/%s\" says it starts at index %" PRIu64,
				log->dir, name, get_u64(h + 16));
		return RAFTLOG_ERR_CORRUPT;
	}
	*prev_term = get_u64(h + 24);
	*file_size = (uint64_t) st.st_size;
	*recycled = (get_u64(h + 32) & RL_SEG_FLAG_RECYCLED) != 0;
	*fd_out = fd;
	return RAFTLOG_OK;
}

/*
 * Make [off, off + need) available in the reader's buffer.  Returns the
 * number of those bytes available (fewer only at end of file), or -1 on a
 * read error (message set).
 */
static ssize_t
reader_fill(raftlog *log, rl_reader *r, uint64_t off, size_t need)
{
	size_t		want;
	ssize_t		got;

	if (off >= r->buf_off && off + need <= r->buf_off + r->buf_len)
		return (ssize_t) need;
	if (need > r->cap)
	{
		uint8_t    *p = realloc(r->buf, need);

		if (p == NULL)
		{
			set_err(log, "out of memory");
			errno = ENOMEM;
			return -1;
		}
		r->buf = p;
		r->cap = need;
	}
	want = r->cap;
	if (off >= r->file_size)
		want = 0;
	else if (r->file_size - off < want)
		want = (size_t) (r->file_size - off);
	got = read_full(r->fd, r->buf, want, off);
	if (got < 0)
	{
		err_sys(log, "read", r->name);
		return -1;
	}
	r->buf_off = off;
	r->buf_len = (size_t) got;
	return (ssize_t) (need < (size_t) got ? need : (size_t) got);
}

static int
reader_init(raftlog *log, rl_reader *r, int fd, uint64_t file_size,
			const char *name)
{
	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->file_size = file_size;
	r->pos = RL_SEG_HEADER_SIZE;
	r->name = name;
	r->cap = RL_READ_CHUNK;
	r->buf = malloc(r->cap);
	if (r->buf == NULL)
	{
		set_err(log, "out of memory");
		return RAFTLOG_ERR_NOMEM;
	}
	return RAFTLOG_OK;
}

static void
reader_free(rl_reader *r)
{
	free(r->buf);
	r->buf = NULL;
}

/*
 * Read the record at r->pos.  RL_REC_OK fills *rec and advances; END and
 * TORN leave r->pos at the record.  Returns a negative status on an I/O or
 * memory error.
 */
static int
reader_next(raftlog *log, rl_reader *r, rl_record *rec)
{
	ssize_t		avail;
	const uint8_t *h;
	uint32_t	len;
	uint32_t	crc;

	if (r->pos >= r->file_size)
		return RL_REC_END;
	avail = reader_fill(log, r, r->pos, RL_REC_HEADER_SIZE);
	if (avail < 0)
		return errno == ENOMEM ? RAFTLOG_ERR_NOMEM : RAFTLOG_ERR_IO;
	if (avail < RL_REC_HEADER_SIZE)
		return RL_REC_TORN;
	h = r->buf + (r->pos - r->buf_off);
	len = get_u32(h + 4);
	if (len > RAFTLOG_MAX_ENTRY_SIZE ||
		r->file_size - r->pos - RL_REC_HEADER_SIZE < len)
		return RL_REC_TORN;
	avail = reader_fill(log, r, r->pos, RL_REC_HEADER_SIZE + (size_t) len);
	if (avail < 0)
		return errno == ENOMEM ? RAFTLOG_ERR_NOMEM : RAFTLOG_ERR_IO;
	if ((size_t) avail < RL_REC_HEADER_SIZE + (size_t) len)
		return RL_REC_TORN;		/* the file shrank under us */
	h = r->buf + (r->pos - r->buf_off);
	crc = raftlog_crc32c(0, h + 4, RL_REC_HEADER_SIZE - 4 + (size_t) len);
	if (crc != get_u32(h))
		return RL_REC_TORN;
	rec->offset = r->pos;
	rec->len = len;
	rec->term = get_u64(h + 8);
	rec->index = get_u64(h + 16);
	rec->type = get_u32(h + 24);
	rec->payload = h + RL_REC_HEADER_SIZE;
	if (get_u32(h + 28) != 0 || rec->type > RAFT_ENTRY_CONF_CHANGE)
	{
		set_err(log, "segment \"%s/%s\": record at offset %" PRIu64
				" has unknown type %u or flags %u",
				log->dir, r->name, r->pos, rec->type, get_u32(h + 28));
		return RAFTLOG_ERR_CORRUPT;
	}
	r->pos += RL_REC_HEADER_SIZE + (uint64_t) len;
	return RL_REC_OK;
}

/* Write out the append buffer (not fsync'd). */
static int
wbuf_flush(raftlog *log)
{
	char		name[64];

	if (log->wlen == 0)
		return RAFTLOG_OK;
	if (write_full(log->active_fd, log->wbuf, log->wlen, log->wbuf_off) != 0)
	{
		seg_name(name, sizeof(name), last_seg(log)->first, false);
		return err_sys_broken(log, "write", name);
	}
	log->wbuf_off += log->wlen;
	log->wlen = 0;
	return RAFTLOG_OK;
}

static int
wbuf_put(raftlog *log, const void *data, size_t len)
{
	const uint8_t *p = data;

	/*
	 * An entry at least the buffer's size (a COPY batch) is written from
	 * where it is: copying it through the buffer first cost a memcpy of
	 * every replicated byte on every node.
	 */
	if (len >= log->opts.write_buffer_size)
	{
		char		name[64];
		int			rc = wbuf_flush(log);

		if (rc != RAFTLOG_OK)
			return rc;
		if (write_full(log->active_fd, p, len, log->wbuf_off) != 0)
		{
			seg_name(name, sizeof(name), last_seg(log)->first, false);
			return err_sys_broken(log, "write", name);
		}
		log->wbuf_off += len;
		return RAFTLOG_OK;
	}

	while (len > 0)
	{
		size_t		room = log->opts.write_buffer_size - log->wlen;
		size_t		n = len < room ? len : room;
		int			rc;

		if (room == 0)
		{
			rc = wbuf_flush(log);
			if (rc != RAFTLOG_OK)
				return rc;
			continue;
		}
		memcpy(log->wbuf + log->wlen, p, n);
		log->wlen += n;
		p += n;
		len -= n;
	}
	return RAFTLOG_OK;
}

/*
 * Rule 2: write and fsync the active segment.  Everything appended is then
 * durable.
 */
static int
active_sync(raftlog *log)
{
	char		name[64];
	int			rc;

	rc = wbuf_flush(log);
	if (rc != RAFTLOG_OK || !log->unsynced)
		return rc;
	if (sync_data(log->active_fd) != 0)
	{
		seg_name(name, sizeof(name), last_seg(log)->first, false);
		return err_sys_broken(log, "fsync", name);
	}
	log->unsynced = false;
	log->synced_index = log->last_index;
	log->synced_term = log->last_term;
	return RAFTLOG_OK;
}

/*
 * Preallocation (opts.preallocate): give the segment open on fd its full
 * size from offset from on.  The space reads as zeros until written.  It
 * is only an optimisation: when the file system refuses, the segment grows
 * with its appends as without the option.
 */
static int
seg_preallocate(raftlog *log, int fd, uint64_t from, const char *name)
{
	if (!log->opts.preallocate || from >= log->opts.segment_size)
		return RAFTLOG_OK;
	if (posix_fallocate(fd, (off_t) from, (off_t) (log->opts.segment_size - from)) != 0 &&
		ftruncate(fd, (off_t) from) != 0)
		return err_sys_broken(log, "truncate", name);
	return RAFTLOG_OK;
}

/*
 * Is [from, to) of the file all zeros: the unused, preallocated rest of a
 * segment rather than a torn record?  -1 on a read error.
 */
static int
range_is_zero(int fd, uint64_t from, uint64_t to)
{
	uint8_t		buf[65536];

	while (from < to)
	{
		size_t		want = to - from < sizeof(buf) ? (size_t) (to - from) : sizeof(buf);
		ssize_t		got = read_full(fd, buf, want, from);
		size_t		k;

		if (got < 0)
			return -1;
		if (got == 0)
			break;				/* the file shrank under us: nothing there */
		for (k = 0; k < (size_t) got; k++)
			if (buf[k] != 0)
				return 0;
		from += (uint64_t) got;
	}
	return 1;
}

/*
 * Start a new segment at first (rule 1), after sealing the current one
 * (rule 2).  It becomes the active segment.
 */
static int
seg_start(raftlog *log, raft_index first, raft_term prev_term)
{
	char		name[64];
	char		tmp[64];
	uint8_t		h[RL_SEG_HEADER_SIZE];
	int			rc;
	int			fd;
	bool		recycled;
	rl_segment *s;

	rc = segs_reserve(log, log->nsegs + 1);
	if (rc != RAFTLOG_OK)
		return rc;
	if (log->active_fd >= 0)
	{
		struct stat st;

		/*
		 * A sealed segment ends at its last record: only the last segment
		 * may have a (preallocated) tail, recovery rejects one elsewhere.
		 * The cut goes before the sealing fsync, which then covers both.
		 */
		rc = wbuf_flush(log);
		if (rc != RAFTLOG_OK)
			return rc;
		seg_name(name, sizeof(name), last_seg(log)->first, false);
		if (fstat(log->active_fd, &st) != 0)
			return err_sys_broken(log, "stat", name);
		if ((uint64_t) st.st_size > last_seg(log)->size)
		{
			if (ftruncate(log->active_fd, (off_t) last_seg(log)->size) != 0)
				return err_sys_broken(log, "truncate", name);
			log->unsynced = true;
		}
		rc = active_sync(log);
		if (rc != RAFTLOG_OK)
			return rc;
		close_fd(&log->active_fd);
	}

	seg_name(name, sizeof(name), first, false);
	seg_name(tmp, sizeof(tmp), first, true);

	/* rule 7: the newest spare, whose pages are the likeliest still cached */
	fd = -1;
	recycled = false;
	if (log->nspares > 0)
	{
		char		sname[64];

		log->nspares--;
		log->spare_total -= log->spare_sizes[log->nspares];
		spare_name(sname, sizeof(sname), log->spare_ids[log->nspares]);
		if (renameat(log->dirfd, sname, log->dirfd, tmp) == 0)
		{
			fd = openat(log->dirfd, tmp, O_RDWR | O_CLOEXEC);
			if (fd < 0)
				return err_sys_broken(log, "open", tmp);
			recycled = true;
		}
		else if (errno != ENOENT)
			return err_sys_broken(log, "rename", sname);
	}
	if (fd < 0)
	{
		fd = openat(log->dirfd, tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0)
			return err_sys_broken(log, "create", tmp);
	}
	seg_header_encode(log, first, prev_term, recycled ? RL_SEG_FLAG_RECYCLED : 0, h);
	if (write_full(fd, h, sizeof(h), 0) != 0)
	{
		int			save = errno;

		close(fd);
		errno = save;
		return err_sys_broken(log, "write", tmp);
	}
	rc = seg_preallocate(log, fd, RL_SEG_HEADER_SIZE, tmp);
	if (rc != RAFTLOG_OK)
	{
		close(fd);
		return rc;
	}
	if (sync_data(fd) != 0)
	{
		int			save = errno;

		close(fd);
		errno = save;
		return err_sys_broken(log, "fsync", tmp);
	}
	if (renameat(log->dirfd, tmp, log->dirfd, name) != 0)
	{
		int			save = errno;

		close(fd);
		errno = save;
		return err_sys_broken(log, "rename", tmp);
	}
	rc = sync_dir(log);
	if (rc != RAFTLOG_OK)
	{
		close(fd);
		return rc;
	}
	s = &log->segs[log->nsegs++];
	s->first = first;
	s->last = first - 1;
	s->prev_term = prev_term;
	s->size = RL_SEG_HEADER_SIZE;
	s->recycled = recycled;
	log->active_fd = fd;
	log->wbuf_off = RL_SEG_HEADER_SIZE;
	log->wlen = 0;
	return RAFTLOG_OK;
}

/*
 * Delete the segment at position i of the array and fsync the directory
 * (rules 4 and 5).  The caller fixes the array afterwards.
 */
static int
seg_unlink(raftlog *log, size_t i)
{
	char		name[64];

	seg_name(name, sizeof(name), log->segs[i].first, false);
	if (unlinkat(log->dirfd, name, 0) != 0)
		return err_sys_broken(log, "remove", name);
	return sync_dir(log);
}

/* Make segs[nsegs - 1] the active one again, appending at its end. */
static int
seg_reopen_last(raftlog *log)
{
	char		name[64];
	rl_segment *s = last_seg(log);

	close_fd(&log->active_fd);
	log->wlen = 0;
	if (s == NULL)
		return RAFTLOG_OK;
	seg_name(name, sizeof(name), s->first, false);
	log->active_fd = openat(log->dirfd, name, O_RDWR | O_CLOEXEC);
	if (log->active_fd < 0)
		return err_sys_broken(log, "open", name);
	log->wbuf_off = s->size;
	return RAFTLOG_OK;
}

/*
 * Find the record at index in segment i: its offset, its term, and the
 * term of the entry before it.  The append buffer must be flushed.
 */
static int
seg_find(raftlog *log, size_t i, raft_index index, uint64_t *offset,
		 raft_term *term, raft_term *prev_term)
{
	rl_segment *s = &log->segs[i];
	char		name[64];
	rl_reader	r;
	rl_record	rec;
	raft_term	before = s->prev_term;
	int			fd;
	int			rc;

	seg_name(name, sizeof(name), s->first, false);
	fd = openat(log->dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_sys(log, "open", name);
	rc = reader_init(log, &r, fd, s->size, name);
	if (rc != RAFTLOG_OK)
	{
		close(fd);
		return rc;
	}
	for (;;)
	{
		rc = reader_next(log, &r, &rec);
		if (rc == RL_REC_OK && rec.index != index)
		{
			before = rec.term;
			continue;
		}
		break;
	}
	if (rc == RL_REC_OK)
	{
		*offset = rec.offset;
		*term = rec.term;
		*prev_term = before;
		rc = RAFTLOG_OK;
	}
	else if (rc == RL_REC_END || rc == RL_REC_TORN)
	{
		set_err(log, "segment \"%s/%s\" lost index %" PRIu64
				" (damaged at offset %" PRIu64 " since it was opened)",
				log->dir, name, (uint64_t) index, r.pos);
		rc = RAFTLOG_ERR_CORRUPT;
	}
	reader_free(&r);
	close(fd);
	return rc;
}

/* Position in segs of the segment holding index (which must be stored). */
static size_t
seg_lookup(const raftlog *log, raft_index index)
{
	size_t		lo = 0;
	size_t		hi = log->nsegs;

	/* last segment whose first <= index */
	while (hi - lo > 1)
	{
		size_t		mid = lo + (hi - lo) / 2;

		if (log->segs[mid].first <= index)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/*----------
 * Open and recovery
 *----------
 */
void
raftlog_options_init(raftlog_options *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->segment_size = RAFTLOG_DEFAULT_SEGMENT_SIZE;
	opts->write_buffer_size = RAFTLOG_DEFAULT_WRITE_BUFFER;
}

/* mkdir -p with mode 0700; fsyncs each parent of a directory it creates. */
static int
make_dirs(raftlog *log, const char *path)
{
	char	   *p = strdup(path);
	size_t		len;
	size_t		i;
	int			rc = RAFTLOG_OK;

	if (p == NULL)
	{
		set_err(log, "out of memory");
		return RAFTLOG_ERR_NOMEM;
	}
	len = strlen(p);
	for (i = 1; i <= len && rc == RAFTLOG_OK; i++)
	{
		if (p[i] != '/' && p[i] != '\0')
			continue;
		if (p[i - 1] == '/')
			continue;
		p[i] = '\0';
		if (mkdir(p, 0700) == 0)
		{
			/* make the new entry durable in its parent */
			char	   *slash = strrchr(p, '/');
			int			pfd;

			if (slash == p)
				pfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			else if (slash != NULL)
			{
				*slash = '\0';
				pfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
				*slash = '/';
			}
			else
				pfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (pfd < 0 || fsync(pfd) != 0)
			{
				set_err(log, "could not fsync the parent of \"%s\": %s", p,
						strerror(errno));
				rc = RAFTLOG_ERR_IO;
			}
			if (pfd >= 0)
				close(pfd);
		}
		else if (errno != EEXIST)
		{
			set_err(log, "could not create directory \"%s\": %s", p,
					strerror(errno));
			rc = RAFTLOG_ERR_IO;
		}
		if (i < len)
			p[i] = '/';
	}
	free(p);
	return rc;
}

static int
cmp_index(const void *a, const void *b)
{
	raft_index x = *(const raft_index *) a;
	raft_index y = *(const raft_index *) b;

	return x < y ? -1 : x > y;
}

/*
 * List the directory: collect segment first indexes (sorted) and remove
 * our *.tmp files (rule 1: never complete, never acknowledged).
 */
static int
scan_dir(raftlog *log, raft_index **firsts, size_t *n, raftlog_recovery *rec)
{
	DIR		   *d;
	struct dirent *de;
	int			fd;
	size_t		cap = 0;
	int			rc = RAFTLOG_OK;

	*firsts = NULL;
	*n = 0;
	fd = dup(log->dirfd);
	if (fd < 0 || (d = fdopendir(fd)) == NULL)
	{
		if (fd >= 0)
			close(fd);
		return err_sys(log, "read directory", NULL);
	}
	rewinddir(d);
	while ((errno = 0, de = readdir(d)) != NULL)
	{
		raft_index first;
		uint64_t	spare_id;
		size_t		len = strlen(de->d_name);

		if (parse_seg_name(de->d_name, &first))
		{
			if (*n == cap)
			{
				raft_index *p;

				cap = cap ? cap * 2 : 64;
				p = realloc(*firsts, cap * sizeof(raft_index));
				if (p == NULL)
				{
					set_err(log, "out of memory");
					rc = RAFTLOG_ERR_NOMEM;
					break;
				}
				*firsts = p;
			}
			(*firsts)[(*n)++] = first;
		}
		else if (parse_spare_name(de->d_name, &spare_id))
		{
			struct stat st;

			/* beyond opts.spare_bytes (it may have changed): deleted */
			if (fstatat(log->dirfd, de->d_name, &st, 0) != 0)
			{
				rc = err_sys(log, "stat", de->d_name);
				break;
			}
			if (log->nspares >= RL_MAX_SPARES ||
				log->spare_total + (uint64_t) st.st_size > log->opts.spare_bytes)
			{
				if (unlinkat(log->dirfd, de->d_name, 0) != 0)
				{
					rc = err_sys(log, "remove", de->d_name);
					break;
				}
			}
			else if ((rc = spare_add(log, spare_id, (uint64_t) st.st_size)) != RAFTLOG_OK)
			{
				set_err(log, "out of memory");
				break;
			}
			else
				rec->spares++;
		}
		else if (strcmp(de->d_name, RL_STATE_TMP) == 0 ||
				 (len == RL_SEG_NAME_LEN + 4 &&
				  strcmp(de->d_name + RL_SEG_NAME_LEN, ".tmp") == 0 &&
				  strncmp(de->d_name, "log-", 4) == 0))
		{
			if (unlinkat(log->dirfd, de->d_name, 0) != 0)
			{
				rc = err_sys(log, "remove", de->d_name);
				break;
			}
			rec->tmp_files_removed++;
		}
	}
	if (rc == RAFTLOG_OK && errno != 0)
		rc = err_sys(log, "read directory", NULL);
	closedir(d);
	if (rc == RAFTLOG_OK && *n > 1)
		qsort(*firsts, *n, sizeof(raft_index), cmp_index);
	return rc;
}

/*
 * Validate the records of segment i (already header-checked).  Fills in
 * its last index and size.  For the last segment a torn record ends it:
 * *torn_at is set to the offset to cut at (else to the file size).
 */
static int
seg_validate(raftlog *log, size_t i, int fd, uint64_t file_size,
			 bool is_last, raft_term *running_term, raft_term *term_at_snap,
			 uint64_t *torn_at)
{
	rl_segment *s = &log->segs[i];
	char		name[64];
	rl_reader	r;
	rl_record	rec;
	raft_index	expect = s->first;
	int			rc;

	seg_name(name, sizeof(name), s->first, false);
	rc = reader_init(log, &r, fd, file_size, name);
	if (rc != RAFTLOG_OK)
		return rc;
	for (;;)
	{
		rc = reader_next(log, &r, &rec);
		if (rc != RL_REC_OK)
			break;
		if (is_last && s->recycled && rec.index < s->first)
		{
			/* an older record of the spare this segment was made from */
			r.pos = rec.offset;
			rc = RL_REC_END;
			break;
		}
		if (rec.index != expect || rec.term < *running_term)
		{
			set_err(log, "segment \"%s/%s\": record at offset %" PRIu64
					" has index %" PRIu64 " term %" PRIu64
					", expected index %" PRIu64 " and term >= %" PRIu64,
					log->dir, name, rec.offset, (uint64_t) rec.index,
					(uint64_t) rec.term, (uint64_t) expect,
					(uint64_t) *running_term);
			rc = RAFTLOG_ERR_CORRUPT;
			break;
		}
		if (rec.index == log->snap.index)
			*term_at_snap = rec.term;
		*running_term = rec.term;
		expect++;
	}
	if (rc == RL_REC_TORN && !is_last)
	{
		set_err(log, "segment \"%s/%s\" is damaged at offset %" PRIu64
				" (index %" PRIu64 ") and is not the last segment",
				log->dir, name, r.pos, (uint64_t) expect);
		rc = RAFTLOG_ERR_CORRUPT;
	}
	else if (rc == RL_REC_TORN || rc == RL_REC_END)
	{
		*torn_at = r.pos;
		rc = RAFTLOG_OK;
	}
	s->last = expect - 1;
	s->size = r.pos;
	reader_free(&r);
	return rc;
}

/* The body of raftlog_open() once the handle exists. */
static int
do_open(raftlog *log, raftlog_recovery *rec)
{
	raft_index *firsts = NULL;
	size_t		nfirst = 0;
	size_t		i;
	size_t		k;
	int			rc;
	struct flock fl;
	raft_term	running_term;
	raft_term	term_at_snap = 0;
	uint64_t	torn_at = 0;
	uint64_t	last_file_size = 0;
	bool		zero_tail = false;	/* preallocated, not torn */
	bool		discard_all = false;
	raft_index	log_last;

	rc = make_dirs(log, log->dir);
	if (rc != RAFTLOG_OK)
		return rc;
	log->dirfd = open(log->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (log->dirfd < 0)
		return err_sys(log, "open directory", NULL);

	/* one process at a time; the lock goes away with the process */
	log->lockfd = openat(log->dirfd, RL_LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC,
						 0600);
	if (log->lockfd < 0)
		return err_sys(log, "open", RL_LOCK_FILE);
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
#ifdef F_OFD_SETLK
	/* an open-file-description lock also stops a second open in-process */
	if (fcntl(log->lockfd, F_OFD_SETLK, &fl) != 0)
#else
	if (fcntl(log->lockfd, F_SETLK, &fl) != 0)
#endif
	{
		if (errno == EACCES || errno == EAGAIN)
		{
			set_err(log, "Raft log \"%s\" is in use by another process",
					log->dir);
			return RAFTLOG_ERR_LOCKED;
		}
		return err_sys(log, "lock", RL_LOCK_FILE);
	}

	rc = scan_dir(log, &firsts, &nfirst, rec);
	if (rc != RAFTLOG_OK)
		goto out;

	log->statefd = openat(log->dirfd, RL_STATE_FILE, O_RDWR | O_CLOEXEC);
	if (log->statefd < 0 && errno == ENOENT)
	{
		if (nfirst > 0)
		{
			set_err(log, "\"%s\" has log segments but no %s file",
					log->dir, RL_STATE_FILE);
			rc = RAFTLOG_ERR_CORRUPT;
			goto out;
		}
		rc = state_create(log);
		if (rc != RAFTLOG_OK)
			goto out;
		rec->created = true;
		log->statefd = openat(log->dirfd, RL_STATE_FILE, O_RDWR | O_CLOEXEC);
	}
	if (log->statefd < 0)
	{
		rc = err_sys(log, "open", RL_STATE_FILE);
		goto out;
	}
	rc = state_load(log, rec);
	if (rc != RAFTLOG_OK)
		goto out;

	/*
	 * Check every header first: a segment of another cluster is an error
	 * even if it would otherwise be deleted as covered by the snapshot.
	 */
	rc = segs_reserve(log, nfirst);
	if (rc != RAFTLOG_OK)
		goto out;
	for (i = 0; i < nfirst; i++)
	{
		int			fd;
		uint64_t	size;

		rc = seg_open_check(log, firsts[i], O_RDONLY, &fd, &log->segs[i].prev_term,
							&size, &log->segs[i].recycled);
		if (rc != RAFTLOG_OK)
			goto out;
		close(fd);
		log->segs[i].first = firsts[i];
		log->segs[i].last = firsts[i] - 1;
		log->segs[i].size = size;
	}
	log->nsegs = nfirst;

	/*
	 * Segments before k are wholly covered by the snapshot (the next one
	 * starts at or below snapshot index + 1): leftovers of rule 5.
	 */
	k = 0;
	while (k + 1 < log->nsegs && log->segs[k + 1].first <= log->snap.index + 1)
		k++;

	/* validate the records of the rest */
	running_term = log->nsegs > k ? log->segs[k].prev_term : 0;
	for (i = k; i < log->nsegs; i++)
	{
		rl_segment *s = &log->segs[i];
		bool		is_last = (i + 1 == log->nsegs);
		int			fd;
		uint64_t	size;
		raft_term	pt;
		bool		recycled;

		if (i > k && (s->first != log->segs[i - 1].last + 1 ||
					  s->prev_term != running_term))
		{
			char		name[64];

			seg_name(name, sizeof(name), s->first, false);
			set_err(log, "segment \"%s/%s\" starts at index %" PRIu64
					" after term %" PRIu64 ", but the log before it ends at %"
					PRIu64 " with term %" PRIu64,
					log->dir, name, (uint64_t) s->first,
					(uint64_t) s->prev_term,
					(uint64_t) log->segs[i - 1].last, (uint64_t) running_term);
			rc = RAFTLOG_ERR_CORRUPT;
			goto out;
		}
		rc = seg_open_check(log, s->first, O_RDONLY, &fd, &pt, &size, &recycled);
		if (rc != RAFTLOG_OK)
			goto out;
		rc = seg_validate(log, i, fd, size, is_last, &running_term,
						  &term_at_snap, &torn_at);
		if (rc == RAFTLOG_OK && is_last && torn_at < size)
		{
			int			zero = range_is_zero(fd, torn_at, size);

			if (zero < 0)
			{
				char		name[64];

				seg_name(name, sizeof(name), s->first, false);
				rc = err_sys(log, "read", name);
			}
			zero_tail = zero == 1;
		}
		close(fd);
		if (rc != RAFTLOG_OK)
			goto out;
		if (is_last)
			last_file_size = size;
	}

	/* where does the stored log stand against the snapshot? */
	if (log->nsegs > k)
	{
		rl_segment *first = &log->segs[k];

		log_last = log->segs[log->nsegs - 1].last;
		if (first->first > log->snap.index + 1)
		{
			char		name[64];

			seg_name(name, sizeof(name), first->first, false);
			set_err(log, "the log starts at index %" PRIu64 " (\"%s\") but the "
					"snapshot ends at %" PRIu64 ": entries are missing",
					(uint64_t) first->first, name, (uint64_t) log->snap.index);
			rc = RAFTLOG_ERR_CORRUPT;
			goto out;
		}
		if (log_last <= log->snap.index)
		{
			/* every entry is covered (rule 5 was interrupted) */
			discard_all = true;
		}
		else
		{
			/* else seg_validate saw the entry at the snapshot index */
			if (first->first == log->snap.index + 1)
				term_at_snap = first->prev_term;
			if (term_at_snap != log->snap.term)
			{
				/* an installed snapshot replaced a conflicting log */
				discard_all = true;
				rec->conflicting_log_discarded = true;
			}
		}
	}
	else
		log_last = log->snap.index;

	if (discard_all)
		log_last = log->snap.index;
	if (log->hs.commit > log_last)
	{
		set_err(log, "the log ends at index %" PRIu64 " but commit index %"
				PRIu64 " is stored: acknowledged entries are missing%s",
				(uint64_t) log_last, (uint64_t) log->hs.commit,
				torn_at < last_file_size && !zero_tail ?
				" (the last segment is damaged, not just torn)" : "");
		rc = RAFTLOG_ERR_CORRUPT;
		goto out;
	}

	/*
	 * Everything checked: now repair.  First finish an interrupted
	 * compaction, then cut a torn tail.
	 */
	for (i = discard_all ? log->nsegs : k; i-- > 0;)
	{
		rc = seg_unlink(log, i);
		if (rc != RAFTLOG_OK)
			goto out;
		if (!rec->conflicting_log_discarded)
			rec->compacted_segments_removed++;
	}
	if (discard_all)
		log->nsegs = 0;
	else if (k > 0)
	{
		memmove(log->segs, log->segs + k, (log->nsegs - k) * sizeof(rl_segment));
		log->nsegs -= k;
	}

	if (log->nsegs > 0)
	{
		rl_segment *s = last_seg(log);
		char		name[64];

		seg_name(name, sizeof(name), s->first, false);
		log->active_fd = openat(log->dirfd, name, O_RDWR | O_CLOEXEC);
		if (log->active_fd < 0)
		{
			rc = err_sys(log, "open", name);
			goto out;
		}
		if (torn_at < last_file_size && !zero_tail)
		{
			/* the torn tail must be gone before anything is appended */
			if (ftruncate(log->active_fd, (off_t) torn_at) != 0 ||
				sync_data(log->active_fd) != 0)
			{
				rc = err_sys_broken(log, "truncate", name);
				goto out;
			}
			if (s->recycled)
				rec->stale_bytes = last_file_size - torn_at;
			else
			{
				rec->torn_bytes = last_file_size - torn_at;
				rec->torn_index = s->last + 1;
			}
		}
		rc = seg_preallocate(log, log->active_fd, s->size, name);
		if (rc != RAFTLOG_OK)
			goto out;
		log->wbuf_off = s->size;
		log->last_index = s->last;
		log->last_term = running_term;
	}
	else
	{
		log->last_index = log->snap.index;
		log->last_term = log->snap.term;
	}
	log->synced_index = log->last_index;
	log->synced_term = log->last_term;
	rec->segments = (uint32_t) log->nsegs;
	rc = RAFTLOG_OK;

out:
	free(firsts);
	return rc;
}

/* Forget raftlog_read_payload()'s place (its segment may be going). */
static void
rb_close(raftlog *log)
{
	if (log->rb_seg != 0)
		close(log->rb.fd);
	log->rb_seg = 0;
}

static void
log_release(raftlog *log)
{
	rb_close(log);
	reader_free(&log->rb);
	close_fd(&log->active_fd);
	close_fd(&log->statefd);
	close_fd(&log->lockfd);		/* drops the fcntl lock */
	close_fd(&log->dirfd);
	free(log->segs);
	free(log->doomed);
	free(log->spare_ids);
	free(log->spare_sizes);
	free(log->wbuf);
	free(log->dir);
	free(log);
}

int
raftlog_open(const char *dir, uint64_t cluster_id, const raftlog_options *opts,
			 raftlog **log_out, raftlog_recovery *recovery,
			 char *errbuf, size_t errbuf_size)
{
	raftlog    *log;
	raftlog_recovery rec_local;
	raftlog_recovery *rec = recovery ? recovery : &rec_local;
	int			rc;

	memset(rec, 0, sizeof(*rec));
	if (errbuf != NULL && errbuf_size > 0)
		errbuf[0] = '\0';
	if (log_out == NULL)
		return RAFTLOG_ERR_INVALID;
	*log_out = NULL;
	if (dir == NULL || dir[0] == '\0' || cluster_id == 0 ||
		(opts != NULL && (opts->segment_size < 1024 ||
						  opts->write_buffer_size < 64)))
	{
		if (errbuf != NULL && errbuf_size > 0)
			snprintf(errbuf, errbuf_size, "invalid argument to raftlog_open: "
					 "need a directory, a non-zero cluster id, "
					 "segment_size >= 1024 and write_buffer_size >= 64");
		return RAFTLOG_ERR_INVALID;
	}

	log = calloc(1, sizeof(raftlog));
	if (log == NULL || (log->dir = strdup(dir)) == NULL)
	{
		free(log);
		if (errbuf != NULL && errbuf_size > 0)
			snprintf(errbuf, errbuf_size, "out of memory");
		return RAFTLOG_ERR_NOMEM;
	}
	log->dirfd = log->lockfd = log->statefd = log->active_fd = -1;
	log->cluster_id = cluster_id;
	if (opts != NULL)
		log->opts = *opts;
	else
		raftlog_options_init(&log->opts);
	log->wbuf = malloc(log->opts.write_buffer_size);
	if (log->wbuf == NULL)
	{
		set_err(log, "out of memory");
		rc = RAFTLOG_ERR_NOMEM;
	}
	else
		rc = do_open(log, rec);
	if (rc != RAFTLOG_OK)
	{
		if (errbuf != NULL && errbuf_size > 0)
			snprintf(errbuf, errbuf_size, "%s", log->errmsg);
		log_release(log);
		return rc;
	}
	log->errmsg[0] = '\0';
	*log_out = log;
	return RAFTLOG_OK;
}

int
raftlog_close(raftlog *log)
{
	int			rc = RAFTLOG_OK;

	if (log == NULL)
		return RAFTLOG_OK;
	if (!log->broken && log->active_fd >= 0 && last_seg(log)->recycled)
	{
		char		name[64];

		/*
		 * Rule 7: the spare's older records after the last one go, so that
		 * a clean restart finds nothing to cut.
		 */
		rc = wbuf_flush(log);
		seg_name(name, sizeof(name), last_seg(log)->first, false);
		if (rc == RAFTLOG_OK && ftruncate(log->active_fd, (off_t) last_seg(log)->size) != 0)
			rc = err_sys_broken(log, "truncate", name);
		if (rc == RAFTLOG_OK)
			rc = seg_preallocate(log, log->active_fd, last_seg(log)->size, name);
		log->unsynced = true;
	}
	if (rc == RAFTLOG_OK && !log->broken && log->unsynced)
		rc = active_sync(log);
	else if (log->broken)
		rc = RAFTLOG_ERR_BROKEN;
	if (rc == RAFTLOG_OK)
		rc = raftlog_remove_compacted(log, UINT32_MAX, NULL);
	log_release(log);
	return rc;
}

const char *
raftlog_errmsg(const raftlog *log)
{
	return log ? log->errmsg : "no Raft log handle";
}

/*----------
 * Writing
 *----------
 */
int
raftlog_append(raftlog *log, const raft_entry *entries, size_t n)
{
	raft_index	expect;
	raft_term	term;
	size_t		i;
	int			rc;

	if ((rc = check_usable(log)) != RAFTLOG_OK)
		return rc;
	if (n == 0)
		return RAFTLOG_OK;
	if (entries == NULL)
	{
		set_err(log, "raftlog_append: entries is NULL");
		return RAFTLOG_ERR_INVALID;
	}

	/* validate the whole batch before writing any of it */
	expect = log->last_index + 1;
	term = log->last_term;
	for (i = 0; i < n; i++)
	{
		const raft_entry *e = &entries[i];

		if (e->index != expect || e->term < term || e->term == 0 ||
			(uint32_t) e->type > RAFT_ENTRY_CONF_CHANGE ||
			e->len > RAFTLOG_MAX_ENTRY_SIZE || (e->len > 0 && e->data == NULL))
		{
			set_err(log, "raftlog_append: entry %zu (index %" PRIu64 ", term %"
					PRIu64 ", type %d, %zu bytes) does not follow index %"
					PRIu64 " term %" PRIu64 " or is malformed",
					i, (uint64_t) e->index, (uint64_t) e->term, (int) e->type,
					e->len, (uint64_t) (expect - 1), (uint64_t) term);
			return RAFTLOG_ERR_INVALID;
		}
		expect++;
		term = e->term;
	}

	for (i = 0; i < n; i++)
	{
		const raft_entry *e = &entries[i];
		uint64_t	rec_size = RL_REC_HEADER_SIZE + (uint64_t) e->len;
		rl_segment *s = last_seg(log);
		uint8_t		h[RL_REC_HEADER_SIZE];
		uint32_t	crc;

		if (s == NULL ||
			(s->last >= s->first && s->size + rec_size > log->opts.segment_size))
		{
			rc = seg_start(log, e->index, log->last_term);
			if (rc != RAFTLOG_OK)
				return rc;
			s = last_seg(log);
		}
		put_u32(h + 4, (uint32_t) e->len);
		put_u64(h + 8, e->term);
		put_u64(h + 16, e->index);
		put_u32(h + 24, (uint32_t) e->type);
		put_u32(h + 28, 0);
		crc = raftlog_crc32c(0, h + 4, RL_REC_HEADER_SIZE - 4);
		if (e->len > 0)
			crc = raftlog_crc32c(crc, e->data, e->len);
		put_u32(h, crc);
		rc = wbuf_put(log, h, sizeof(h));
		if (rc == RAFTLOG_OK && e->len > 0)
			rc = wbuf_put(log, e->data, e->len);
		if (rc != RAFTLOG_OK)
			return rc;
		s->size += rec_size;
		s->last = e->index;
		log->last_index = e->index;
		log->last_term = e->term;
		log->unsynced = true;
	}
	return RAFTLOG_OK;
}

/*
 * Write what is buffered and start its writeback without waiting (Linux:
 * sync_file_range), so that a raftlog_sync() a little later finds less or
 * nothing left to wait for.  Makes nothing durable by itself; a failure to
 * start the writeback is left to that raftlog_sync() to find.
 */
int
raftlog_start_sync(raftlog *log)
{
	int			rc;

	if ((rc = check_usable(log)) != RAFTLOG_OK)
		return rc;
	rc = wbuf_flush(log);
	if (rc != RAFTLOG_OK || !log->unsynced)
		return rc;
#if defined(__linux__) && defined(SYNC_FILE_RANGE_WRITE)
	(void) sync_file_range(log->active_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#endif
	return RAFTLOG_OK;
}

int
raftlog_sync(raftlog *log)
{
	int			rc;

	if ((rc = check_usable(log)) != RAFTLOG_OK)
		return rc;
	return active_sync(log);
}

int
raftlog_truncate_from(raftlog *log, raft_index index)
{
	int			rc;
	raft_term	new_last_term;

	if ((rc = check_usable(log)) != RAFTLOG_OK)
		return rc;
	if (index <= log->snap.index || index <= log->hs.commit)
	{
		set_err(log, "raftlog_truncate_from(%" PRIu64 "): cannot remove "
				"entries at or below the snapshot index %" PRIu64
				" or the commit index %" PRIu64,
				(uint64_t) index, (uint64_t) log->snap.index,
				(uint64_t) log->hs.commit);
		return RAFTLOG_ERR_INVALID;
	}
	if (index > log->last_index)
		return RAFTLOG_OK;

	/* the buffered tail is about to be cut or deleted: write it first */
	rc = wbuf_flush(log);
	if (rc != RAFTLOG_OK)
		return rc;
	rb_close(log);

	/* rule 4: whole segments from the highest down */
	new_last_term = log->last_term;
	while (log->nsegs > 0 && last_seg(log)->first >= index)
	{
		close_fd(&log->active_fd);
		new_last_term = last_seg(log)->prev_term;
		rc = seg_unlink(log, log->nsegs - 1);
		if (rc != RAFTLOG_OK)
			return rc;
		log->nsegs--;
	}
	if (log->active_fd < 0)
	{
		rc = seg_reopen_last(log);
		if (rc != RAFTLOG_OK)
			return rc;
	}

	/* then cut inside the segment that holds index, if any */
	if (log->nsegs > 0 && last_seg(log)->last >= index)
	{
		rl_segment *s = last_seg(log);
		char		name[64];
		uint64_t	off;
		raft_term	t;

		rc = seg_find(log, log->nsegs - 1, index, &off, &t, &new_last_term);
		if (rc != RAFTLOG_OK)
		{
			log->broken = true; /* the log no longer matches what we hold */
			return rc;
		}
		seg_name(name, sizeof(name), s->first, false);
		if (ftruncate(log->active_fd, (off_t) off) != 0 ||
			sync_data(log->active_fd) != 0)
			return err_sys_broken(log, "truncate", name);
		rc = seg_preallocate(log, log->active_fd, off, name);
		if (rc != RAFTLOG_OK)
			return rc;
		s->size = off;
		s->last = index - 1;
		log->wbuf_off = off;
	}

	/*
	 * What remains is durable: either the cut segment was just fsync'd, or
	 * the last remaining one was sealed (fsync'd) when its successor began.
	 */
	log->last_index = log->synced_index = index - 1;
	log->last_term = log->synced_term = new_last_term;
	log->unsynced = false;
	return RAFTLOG_OK;
}

int
raftlog_save_hard_state(raftlog *log, const raft_hard_state *hs)
{
	int			rc;

	if ((rc = check_usable(log)) != RAFTLOG_OK)
		return rc;
	if (hs == NULL || hs->term < log->hs.term)
	{
		set_err(log, "raftlog_save_hard_state: term may not go back from %"
				PRIu64, (uint64_t) log->hs.term);
		return RAFTLOG_ERR_INVALID;
	}

	/*
	 * A commit index beyond the durable log would make the next recovery
	 * after a power loss refuse the store: the entries must be synced first.
	 */
	if (hs->commit > log->synced_index && hs->commit > log->snap.index)
	{
		set_err(log, "raftlog_save_hard_state: commit %" PRIu64
				" is beyond the durable log (%" PRIu64 "): sync first",
				(uint64_t) hs->commit, (uint64_t) log->synced_index);
		return RAFTLOG_ERR_INVALID;
	}
	if (hs->term == log->hs.term && hs->vote == log->hs.vote &&
		hs->commit == log->hs.commit)
		return RAFTLOG_OK;
	return state_write(log, hs, &log->snap);
}

/* The body of raftlog_compact() and raftlog_install_snapshot(). */
static int
do_compact(raftlog *log, const raft_snapshot_meta *meta, bool install)
{
	int			rc;
	bool		keep;
	raft_term	t;
	size_t		drop;
	size_t		i;

	if ((rc = check_usable(log)) != RAFTLOG_OK)
		return rc;
	if (meta == NULL || meta->index < log->snap.index ||
		(meta->index == log->snap.index && meta->term != log->snap.term) ||
		(meta->index == 0 && meta->term != 0) ||
		meta->conf.num_voters > RAFT_MAX_MEMBERS ||
		meta->conf.num_learners > RAFT_MAX_MEMBERS ||
		meta->conf.num_removed > RAFT_MAX_REMOVED)
	{
		set_err(log, "raftlog_compact: invalid snapshot meta (current "
				"snapshot index %" PRIu64 " term %" PRIu64 ")",
				(uint64_t) log->snap.index, (uint64_t) log->snap.term);
		return RAFTLOG_ERR_INVALID;
	}

	rc = wbuf_flush(log);
	if (rc != RAFTLOG_OK)
		return rc;
	rb_close(log);

	/* does the log agree with the snapshot at its index? */
	keep = false;
	if (meta->index == log->snap.index)
		keep = true;			/* only the membership changes */
	else if (!install && meta->index <= log->last_index)
	{
		rc = raftlog_term(log, meta->index, &t);
		if (rc != RAFTLOG_OK)
			return rc;
		keep = (t == meta->term);
	}

	/* room to forget every segment, before anything changes */
	if (log->ndoomed + log->nsegs > log->doomed_cap)
	{
		size_t		cap = (log->ndoomed + log->nsegs) * 2 + 16;
		raft_index *d = realloc(log->doomed, cap * sizeof(raft_index));

		if (d == NULL)
		{
			set_err(log, "out of memory");
			return RAFTLOG_ERR_NOMEM;
		}
		log->doomed = d;
		log->doomed_cap = cap;
	}
	/* rule 5: record the snapshot first */
	rc = state_write(log, &log->hs, meta);
	if (rc != RAFTLOG_OK)
		return rc;

	if (!keep)
	{
		/* the whole log goes; any deletion order is recoverable */
		close_fd(&log->active_fd);
		while (log->nsegs > 0)
		{
			rc = seg_unlink(log, log->nsegs - 1);
			if (rc != RAFTLOG_OK)
				return rc;
			log->nsegs--;
		}
		log->wlen = 0;
		log->last_index = log->synced_index = meta->index;
		log->last_term = log->synced_term = meta->term;
		log->unsynced = false;
		return RAFTLOG_OK;
	}

	/* drop the segments wholly covered, lowest first */
	drop = 0;
	while (drop < log->nsegs && log->segs[drop].last <= meta->index)
		drop++;
	if (drop == log->nsegs)
	{
		/*
		 * The active segment goes too: the log ends exactly at the snapshot
		 * index, so all it holds is covered.
		 */
		close_fd(&log->active_fd);
		log->wlen = 0;
		log->unsynced = false;
		log->synced_index = log->last_index;
		log->synced_term = log->last_term;
	}
	/*
	 * Their files go later (raftlog_remove_compacted): the snapshot meta
	 * is durable, so a crash before that leaves covered segments, which
	 * recovery removes (rule 5).
	 */
	for (i = 0; i < drop; i++)
		log->doomed[log->ndoomed++] = log->segs[i].first;
	if (drop > 0)
	{
		memmove(log->segs, log->segs + drop,
				(log->nsegs - drop) * sizeof(rl_segment));
		log->nsegs -= drop;
	}
	return RAFTLOG_OK;
}

int
raftlog_compact(raftlog *log, const raft_snapshot_meta *meta)
{
	return do_compact(log, meta, false);
}

int
raftlog_remove_compacted(raftlog *log, unsigned max_files, unsigned *remaining)
{
	int			rc = check_usable(log);
	unsigned	removed = 0;
	size_t		k = 0;

	while (rc == RAFTLOG_OK && k < log->ndoomed && removed < max_files)
	{
		char		name[64];
		struct stat st;

		/*
		 * No directory fsync: a removal a crash undoes, recovery redoes.
		 * Rule 7: kept as a spare while the spares fit.
		 */
		seg_name(name, sizeof(name), log->doomed[k], false);
		if (fstatat(log->dirfd, name, &st, 0) == 0 && log->nspares < RL_MAX_SPARES &&
			log->spare_total + (uint64_t) st.st_size <= log->opts.spare_bytes)
		{
			char		sname[64];

			spare_name(sname, sizeof(sname), log->next_spare_id);
			if (renameat(log->dirfd, name, log->dirfd, sname) != 0)
				rc = err_sys_broken(log, "rename", name);
			else if ((rc = spare_add(log, log->next_spare_id, (uint64_t) st.st_size)) != RAFTLOG_OK)
				set_err(log, "out of memory");
			else
			{
				k++;
				removed++;
			}
			continue;
		}
		if (unlinkat(log->dirfd, name, 0) != 0 && errno != ENOENT)
			rc = err_sys_broken(log, "remove", name);
		else
		{
			k++;
			removed++;
		}
	}
	if (k > 0)
	{
		memmove(log->doomed, log->doomed + k, (log->ndoomed - k) * sizeof(raft_index));
		log->ndoomed -= k;
	}
	if (remaining != NULL)
		*remaining = (unsigned) log->ndoomed;
	return rc;
}

int
raftlog_install_snapshot(raftlog *log, const raft_snapshot_meta *meta)
{
	return do_compact(log, meta, true);
}

/*----------
 * Reading
 *----------
 */
void
raftlog_get_hard_state(const raftlog *log, raft_hard_state *hs)
{
	*hs = log->hs;
}

void
raftlog_get_snapshot_meta(const raftlog *log, raft_snapshot_meta *meta)
{
	*meta = log->snap;
}

raft_index
raftlog_first_index(const raftlog *log)
{
	return log->snap.index + 1;
}

raft_index
raftlog_last_index(const raftlog *log)
{
	return log->last_index;
}

raft_term
raftlog_last_term(const raftlog *log)
{
	return log->last_term;
}

raft_index
raftlog_synced_index(const raftlog *log)
{
	return log->synced_index;
}

raft_term
raftlog_synced_term(const raftlog *log)
{
	return log->synced_term;
}

int
raftlog_term(raftlog *log, raft_index index, raft_term *term)
{
	size_t		i;
	uint64_t	off;
	raft_term	before;
	int			rc;

	if ((rc = check_usable(log)) != RAFTLOG_OK)
		return rc;
	if (index < log->snap.index)
	{
		set_err(log, "index %" PRIu64 " is compacted (snapshot at %" PRIu64 ")",
				(uint64_t) index, (uint64_t) log->snap.index);
		return RAFTLOG_ERR_COMPACTED;
	}
	if (index > log->last_index)
	{
		set_err(log, "index %" PRIu64 " is past the end of the log (%" PRIu64 ")",
				(uint64_t) index, (uint64_t) log->last_index);
		return RAFTLOG_ERR_INVALID;
	}
	if (index == log->snap.index)
	{
		*term = log->snap.term;
		return RAFTLOG_OK;
	}
	if (index == log->last_index)
	{
		*term = log->last_term;
		return RAFTLOG_OK;
	}
	i = seg_lookup(log, index);
	if (i + 1 < log->nsegs && log->segs[i + 1].first == index + 1)
	{
		*term = log->segs[i + 1].prev_term;
		return RAFTLOG_OK;
	}
	rc = wbuf_flush(log);
	if (rc != RAFTLOG_OK)
		return rc;
	return seg_find(log, i, index, &off, term, &before);
}

static uint8_t *
arena_alloc(raftlog_entries *out, size_t len)
{
	rl_chunk   *c = out->storage;

	if (c == NULL || c->cap - c->used < len)
	{
		size_t		cap = len > RL_ARENA_CHUNK ? len : RL_ARENA_CHUNK;

		c = malloc(sizeof(rl_chunk) + cap);
		if (c == NULL)
			return NULL;
		c->next = out->storage;
		c->used = 0;
		c->cap = cap;
		out->storage = c;
	}
	c->used += len;
	return c->data + c->used - len;
}

static int read_entries(raftlog *log, raft_index lo, raft_index hi,
						raft_index payloads_from, raftlog_entries *out);

int
raftlog_read(raftlog *log, raft_index lo, raft_index hi, raftlog_entries *out)
{
	return read_entries(log, lo, hi, lo, out);
}

/*
 * raftlog_read(), except that normal entries below payloads_from come
 * without their payload (data NULL, len as stored).
 */
static int
read_entries(raftlog *log, raft_index lo, raft_index hi,
			 raft_index payloads_from, raftlog_entries *out)
{
	size_t		cap;
	size_t		i;
	int			rc;

	if (out == NULL)
		return RAFTLOG_ERR_INVALID;
	memset(out, 0, sizeof(*out));
	if ((rc = check_usable(log)) != RAFTLOG_OK)
		return rc;
	if (lo <= log->snap.index)
	{
		set_err(log, "index %" PRIu64 " is compacted (snapshot at %" PRIu64 ")",
				(uint64_t) lo, (uint64_t) log->snap.index);
		return RAFTLOG_ERR_COMPACTED;
	}
	if (hi > log->last_index || hi + 1 < lo)
	{
		set_err(log, "raftlog_read(%" PRIu64 ", %" PRIu64 "): the log ends at %"
				PRIu64, (uint64_t) lo, (uint64_t) hi,
				(uint64_t) log->last_index);
		return RAFTLOG_ERR_INVALID;
	}
	if (hi < lo)
		return RAFTLOG_OK;
	if (hi - lo + 1 > SIZE_MAX / sizeof(raft_entry))
		return RAFTLOG_ERR_NOMEM;
	cap = (size_t) (hi - lo + 1);
	out->entries = malloc(cap * sizeof(raft_entry));
	if (out->entries == NULL)
	{
		set_err(log, "out of memory");
		return RAFTLOG_ERR_NOMEM;
	}
	rc = wbuf_flush(log);
	if (rc != RAFTLOG_OK)
		return rc;

	for (i = seg_lookup(log, lo); i < log->nsegs && log->segs[i].first <= hi; i++)
	{
		rl_segment *s = &log->segs[i];
		char		name[64];
		rl_reader	r;
		rl_record	rec;
		int			fd;

		seg_name(name, sizeof(name), s->first, false);
		fd = openat(log->dirfd, name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return err_sys(log, "open", name);
		rc = reader_init(log, &r, fd, s->size, name);
		if (rc != RAFTLOG_OK)
		{
			close(fd);
			return rc;
		}
		while (out->count < cap)
		{
			raft_entry *e;

			rc = reader_next(log, &r, &rec);
			if (rc != RL_REC_OK)
				break;
			if (rec.index < lo)
				continue;
			if (rec.index != lo + out->count)
			{
				set_err(log, "segment \"%s/%s\": index %" PRIu64 " where %"
						PRIu64 " was expected", log->dir, name,
						(uint64_t) rec.index, (uint64_t) (lo + out->count));
				rc = RAFTLOG_ERR_CORRUPT;
				break;
			}
			e = &out->entries[out->count];
			e->term = rec.term;
			e->index = rec.index;
			e->type = (raft_entry_type) rec.type;
			e->len = rec.len;
			e->data = NULL;
			if (rec.len > 0 &&
				(rec.index >= payloads_from || e->type != RAFT_ENTRY_NORMAL))
			{
				uint8_t    *p = arena_alloc(out, rec.len);

				if (p == NULL)
				{
					set_err(log, "out of memory");
					rc = RAFTLOG_ERR_NOMEM;
					break;
				}
				memcpy(p, rec.payload, rec.len);
				e->data = p;
			}
			out->count++;
			rc = RL_REC_OK;
		}
		reader_free(&r);
		close(fd);
		if (rc == RL_REC_TORN ||
			(rc == RL_REC_END && out->count < cap && s->last >= lo + out->count))
		{
			set_err(log, "segment \"%s/%s\" is damaged at offset %" PRIu64
					" (changed since it was opened)", log->dir, name, r.pos);
			return RAFTLOG_ERR_CORRUPT;
		}
		if (rc < 0)
			return rc;
	}
	if (out->count != cap)
	{
		set_err(log, "raftlog_read: found %zu of %zu entries", out->count, cap);
		return RAFTLOG_ERR_CORRUPT;
	}
	return RAFTLOG_OK;
}

void
raftlog_entries_free(raftlog_entries *entries)
{
	rl_chunk   *c;

	if (entries == NULL)
		return;
	c = entries->storage;
	while (c != NULL)
	{
		rl_chunk   *next = c->next;

		free(c);
		c = next;
	}
	free(entries->entries);
	memset(entries, 0, sizeof(*entries));
}

int
raftlog_read_payload(raftlog *log, raft_index index, raft_term term,
					 void *buf, size_t len)
{
	rl_segment *s;
	rl_record	rec;
	int			rc;

	if ((rc = check_usable(log)) != RAFTLOG_OK)
		return rc;
	if (index <= log->snap.index || index > log->last_index)
	{
		set_err(log, "raftlog_read_payload(%" PRIu64 "): the log holds %" PRIu64
				"..%" PRIu64, (uint64_t) index, (uint64_t) log->snap.index + 1,
				(uint64_t) log->last_index);
		return index <= log->snap.index ? RAFTLOG_ERR_COMPACTED : RAFTLOG_ERR_INVALID;
	}
	rc = wbuf_flush(log);
	if (rc != RAFTLOG_OK)
		return rc;
	s = &log->segs[seg_lookup(log, index)];
	if (log->rb_seg != s->first || log->rb_index > index)
	{
		int			fd;

		rb_close(log);
		seg_name(log->rb_name, sizeof(log->rb_name), s->first, false);
		fd = openat(log->dirfd, log->rb_name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return err_sys(log, "open", log->rb_name);
		if (log->rb.buf == NULL)
		{
			rc = reader_init(log, &log->rb, fd, s->size, log->rb_name);
			if (rc != RAFTLOG_OK)
			{
				close(fd);
				return rc;
			}
		}
		log->rb.fd = fd;
		log->rb.pos = RL_SEG_HEADER_SIZE;
		log->rb.buf_len = 0;
		log->rb_seg = s->first;
		log->rb_index = s->first;
	}
	/* the last segment grows; what it held when read never changes */
	log->rb.file_size = s->size;
	for (;;)
	{
		rc = reader_next(log, &log->rb, &rec);
		if (rc == RL_REC_OK && rec.index != log->rb_index)
		{
			set_err(log, "segment \"%s/%s\": index %" PRIu64 " where %" PRIu64
					" was expected", log->dir, log->rb_name, (uint64_t) rec.index,
					(uint64_t) log->rb_index);
			rc = RAFTLOG_ERR_CORRUPT;
		}
		else if (rc == RL_REC_END || rc == RL_REC_TORN)
		{
			set_err(log, "segment \"%s/%s\" is damaged at offset %" PRIu64
					" (changed since it was opened)", log->dir, log->rb_name,
					log->rb.pos);
			rc = RAFTLOG_ERR_CORRUPT;
		}
		if (rc != RL_REC_OK)
		{
			rb_close(log);
			return rc;
		}
		log->rb_index++;
		if (rec.index == index)
			break;
	}
	if (rec.term != term || rec.len != len)
	{
		set_err(log, "index %" PRIu64 " has term %" PRIu64 " and %u bytes, not term %"
				PRIu64 " and %zu bytes", (uint64_t) index, (uint64_t) rec.term,
				rec.len, (uint64_t) term, len);
		return RAFTLOG_ERR_INVALID;
	}
	if (len > 0)
		memcpy(buf, rec.payload, len);
	return RAFTLOG_OK;
}

int
raftlog_load(raftlog *log, raft_index payloads_from, raft_restore *restore,
			 raftlog_entries *storage)
{
	int			rc;

	if (restore == NULL || storage == NULL)
		return RAFTLOG_ERR_INVALID;
	memset(restore, 0, sizeof(*restore));
	rc = read_entries(log, log->snap.index + 1, log->last_index, payloads_from,
					  storage);
	if (rc != RAFTLOG_OK)
		return rc;
	restore->hard_state = log->hs;
	restore->snapshot = log->snap;
	restore->entries = storage->entries;
	restore->num_entries = storage->count;
	restore->applied = log->snap.index;
	return RAFTLOG_OK;
}

const char *
raftlog_status_name(int status)
{
	switch (status)
	{
		case RAFTLOG_OK:
			return "OK";
		case RAFTLOG_ERR_IO:
			return "I/O error";
		case RAFTLOG_ERR_CORRUPT:
			return "corrupt";
		case RAFTLOG_ERR_CLUSTER_ID:
			return "wrong cluster id";
		case RAFTLOG_ERR_INVALID:
			return "invalid argument";
		case RAFTLOG_ERR_NOMEM:
			return "out of memory";
		case RAFTLOG_ERR_LOCKED:
			return "locked";
		case RAFTLOG_ERR_BROKEN:
			return "broken handle";
		case RAFTLOG_ERR_COMPACTED:
			return "compacted";
	}
	return "unknown";
}
