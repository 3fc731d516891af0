/*-------------------------------------------------------------------------
 *
 * raftlog.h
 *	  Durable Raft log store: segment files plus a hard-state file in one
 *	  directory (normally $PGDATA/chronicle_raft).
 *
 * Plain C99 with POSIX file I/O and no PostgreSQL header, so that the unit
 * tests run without a server and the background worker can call it from
 * its event loop.  One raftlog handle is used by one thread; one process
 * at a time may open a directory (an fcntl lock enforces it).
 *
 * How the worker drives it for each raft_ready (see the persistence
 * contract at the top of src/raft/raft.h):
 *
 *	if (ready.snapshot)			raftlog_install_snapshot(log, ready.snapshot)
 *								(after the snapshot data itself is durable)
 *	if (ready.num_entries)		raftlog_truncate_from(log, entries[0].index)
 *								raftlog_append(log, entries, n)
 *	raftlog_sync(log)
 *	if (ready.hard_state_changed) raftlog_save_hard_state(log, &hs)
 *	then raft_persisted(node, ready.persist_term, ready.persist_index)
 *
 * and after raft_snapshot_taken() + raft_compact(node, index) succeed,
 * raftlog_compact(log, meta of that snapshot).
 *
 * Every function returns RAFTLOG_OK or a negative raftlog_status; on error
 * raftlog_errmsg() says what failed (with the errno text for system calls).
 * Nothing here aborts or exits.  After a failed write, fsync, truncate or
 * unlink the handle is "broken": every later call fails with
 * RAFTLOG_ERR_BROKEN, because after a failed fsync the kernel may have
 * dropped the dirty pages and a retry could report success for lost data.
 * The caller must close the handle and open the directory again, which
 * re-reads what is really on disk.
 *
 * The file format and the durability rules are described in
 * src/raftlog/raftlog.c and docs/raft-log.md.
 *
 * src/raftlog/raftlog.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CHRONICLE_RAFTLOG_H
#define CHRONICLE_RAFTLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"

typedef enum raftlog_status
{
	RAFTLOG_OK = 0,
	RAFTLOG_ERR_IO = -1,		/* a system call failed */
	RAFTLOG_ERR_CORRUPT = -2,	/* stored data is damaged (not a torn tail) */
	RAFTLOG_ERR_CLUSTER_ID = -3,	/* the files belong to another cluster */
	RAFTLOG_ERR_INVALID = -4,	/* bad argument or call out of order */
	RAFTLOG_ERR_NOMEM = -5,		/* malloc failed */
	RAFTLOG_ERR_LOCKED = -6,	/* another process has the directory open */
	RAFTLOG_ERR_BROKEN = -7,	/* an earlier write failed: close, reopen */
	RAFTLOG_ERR_COMPACTED = -8	/* index is covered by the snapshot */
} raftlog_status;

/* Size of the error message buffers (raftlog_open's errbuf may be smaller). */
#define RAFTLOG_ERRMSG_SIZE			512

#define RAFTLOG_DEFAULT_SEGMENT_SIZE	((uint64_t) 16 * 1024 * 1024)
#define RAFTLOG_DEFAULT_WRITE_BUFFER	((size_t) 1024 * 1024)

/*
 * Largest payload of one entry.  A format constant, not an option: recovery
 * uses it to recognise a garbage length field, so it must not depend on
 * how the log was opened.
 */
#define RAFTLOG_MAX_ENTRY_SIZE		((uint32_t) 256 * 1024 * 1024)

typedef struct raftlog_options
{
	/*
	 * A segment is closed and a new one started before an append that would
	 * make it larger than this (a single larger entry gets a segment of its
	 * own).  At least 1024.
	 */
	uint64_t	segment_size;

	/*
	 * Appended records collect in a buffer of this size and reach the file
	 * when it fills or at raftlog_sync().  At least 64.
	 */
	size_t		write_buffer_size;

	/*
	 * Allocate every new segment at segment_size when it is created, so
	 * that the space after the last record reads as zeros: appending then
	 * changes neither the file size nor its block map, and an fsync writes
	 * only data (one I/O instead of two on ext4).  Recovery tells such a
	 * zero tail from a torn one.  Off by default.
	 */
	bool		preallocate;

	/*
	 * Compacted segment files are kept as spares, up to this many bytes in
	 * all, and a new segment takes one instead of a new file: it is
	 * overwritten where its blocks and cached pages already are, and
	 * compaction renames a file instead of deleting it (deleting a 16 MB
	 * segment stalled the caller 8-28 ms).  0 (the default): deleted.
	 */
	uint64_t	spare_bytes;
} raftlog_options;

/* What raftlog_open() found and repaired. */
typedef struct raftlog_recovery
{
	bool		created;		/* the store did not exist: created empty */
	uint32_t	segments;		/* segment files in use after recovery */
	uint32_t	compacted_segments_removed; /* leftovers of a compaction */
	bool		conflicting_log_discarded;	/* leftovers of a snapshot install */
	uint32_t	tmp_files_removed;	/* *.tmp of an interrupted create */
	uint32_t	state_copies_invalid;	/* 1: the last hard-state write was torn */
	uint64_t	torn_bytes;		/* bytes cut from the end of the last segment */
	raft_index	torn_index;		/* first index not recovered, if torn_bytes */

	/*
	 * The same for a last segment made from a spare after a crash: what
	 * follows its records is mostly the spare's older records, and a torn
	 * write cannot be told from them, so all of it is cut and counted here.
	 */
	uint64_t	stale_bytes;
	uint32_t	spares;			/* spare files found */
} raftlog_recovery;

typedef struct raftlog raftlog;

/*
 * Entries read back from the log.  entries[i].data points into storage
 * owned by the struct; free all of it with raftlog_entries_free().
 */
typedef struct raftlog_entries
{
	raft_entry *entries;
	size_t		count;
	void	   *storage;		/* private */
} raftlog_entries;

extern void raftlog_options_init(raftlog_options *opts);

/*
 * Open the store in dir, creating the directory (mode 0700, parents too)
 * and an empty store if missing, else recovering it: every file must carry
 * cluster_id (else RAFTLOG_ERR_CLUSTER_ID), every header and record must
 * be valid and the indexes contiguous (else RAFTLOG_ERR_CORRUPT), except
 * that a short or checksum-failing record in the last segment is taken for
 * a torn write: the segment is cut there, durably, and the cut reported in
 * *recovery.  Recovery also finishes an interrupted compaction or snapshot
 * install.  It refuses (RAFTLOG_ERR_CORRUPT) a log that ends before the
 * stored commit index, since that means acknowledged entries are gone, and
 * then changes nothing on disk.
 *
 * opts and recovery may be NULL.  On failure *log_out is NULL and errbuf
 * (if not NULL) holds the message.
 */
extern int	raftlog_open(const char *dir, uint64_t cluster_id,
						 const raftlog_options *opts, raftlog **log_out,
						 raftlog_recovery *recovery,
						 char *errbuf, size_t errbuf_size);

/*
 * Sync what was appended (unless the handle is broken), then release
 * everything.  The handle is freed even when the sync fails.
 */
extern int	raftlog_close(raftlog *log);

/* Message of the last failure on this handle ("" if none). */
extern const char *raftlog_errmsg(const raftlog *log);

/*
 * Append entries; entries[0].index must be raftlog_last_index() + 1 (use
 * raftlog_truncate_from() first to replace a suffix), indexes consecutive,
 * terms not decreasing and not below raftlog_last_term().  Buffered: not
 * durable until raftlog_sync() returns RAFTLOG_OK.  The entries are checked
 * before anything is written, so an invalid batch changes nothing.
 */
extern int	raftlog_append(raftlog *log, const raft_entry *entries, size_t n);

/* Make every appended entry durable; a no-op when nothing is pending. */
extern int	raftlog_sync(raftlog *log);

/*
 * Write the appended entries and start their writeback without waiting;
 * raftlog_sync() still makes them durable.  Lets the caller do other work
 * (send them to followers) while the disk writes.
 */
extern int	raftlog_start_sync(raftlog *log);

/*
 * Durably remove the entries at index and after (a no-op if index is past
 * the end).  Refuses to remove an entry at or below the snapshot index or
 * the stored commit index.
 */
extern int	raftlog_truncate_from(raftlog *log, raft_index index);

/*
 * Durably record term, vote and commit (skipped when unchanged).  The term
 * may not go back, and commit may not exceed raftlog_synced_index() (or the
 * snapshot index): sync the entries first.
 */
extern int	raftlog_save_hard_state(raftlog *log, const raft_hard_state *hs);

/*
 * Durably record meta as the snapshot the log starts after, then drop the
 * entries it covers.  meta->index must not be below the current snapshot
 * index.  If the log holds meta->index with meta->term, the entries after
 * it are kept (a local compaction); otherwise the whole log is discarded
 * and restarts at meta->index + 1 (a snapshot installed from the leader).
 * Also used once at bootstrap to store the initial membership at index 0.
 * The snapshot data itself must be durable before this is called.
 */
extern int	raftlog_compact(raftlog *log, const raft_snapshot_meta *meta);

/*
 * raftlog_compact() only forgets the segment files it covers; this removes
 * up to max_files of them (oldest first) and sets *remaining (may be NULL)
 * to how many wait.  Removing a 16 MB file takes the kernel milliseconds
 * (it frees its cached pages), so a caller that must stay responsive
 * removes a few at a time.  A crash before they are gone leaves segments
 * that recovery removes, as after an interrupted compaction.
 * raftlog_close() removes what is left.
 */
extern int	raftlog_remove_compacted(raftlog *log, unsigned max_files,
									 unsigned *remaining);

/*
 * The same for a snapshot received from the leader (ready.snapshot): the
 * whole log is discarded even where it agrees with the snapshot, as the
 * engine discards its in-memory log.  (Should a crash interrupt the
 * deletion, recovery keeps any remaining entries after the snapshot whose
 * log agrees with it at the snapshot index, as the Raft paper allows.)
 * meta->index must not be below the current snapshot index.
 */
extern int	raftlog_install_snapshot(raftlog *log,
									 const raft_snapshot_meta *meta);

extern void raftlog_get_hard_state(const raftlog *log, raft_hard_state *hs);
extern void raftlog_get_snapshot_meta(const raftlog *log,
									  raft_snapshot_meta *meta);

/* snapshot index + 1 */
extern raft_index raftlog_first_index(const raftlog *log);

/* Last appended index (the snapshot index when the log is empty). */
extern raft_index raftlog_last_index(const raftlog *log);
extern raft_term raftlog_last_term(const raftlog *log);

/* Last index known durable, and its term (for raft_persisted()). */
extern raft_index raftlog_synced_index(const raftlog *log);
extern raft_term raftlog_synced_term(const raftlog *log);

/*
 * Term of the entry at index (snapshot index .. last index); the snapshot
 * term for the snapshot index, RAFTLOG_ERR_COMPACTED below it.
 */
extern int	raftlog_term(raftlog *log, raft_index index, raft_term *term);

/*
 * Read entries lo..hi (inclusive; first index <= lo, hi <= last index,
 * hi = lo - 1 reads nothing).  *out must be freed with raftlog_entries_free()
 * whatever the result.
 */
extern int	raftlog_read(raftlog *log, raft_index lo, raft_index hi,
						 raftlog_entries *out);
extern void raftlog_entries_free(raftlog_entries *entries);

/*
 * Copy the payload of the entry at index, which must have the given term
 * and len bytes, into buf (the engine's raft_config.entry_read).  Reads of
 * consecutive indexes continue where the last one stopped.
 */
extern int	raftlog_read_payload(raftlog *log, raft_index index, raft_term term,
								 void *buf, size_t len);

/*
 * Fill a raft_restore from the store: hard state, snapshot meta, and every
 * entry after the snapshot (read into *storage, which must outlive the
 * restore's use and be freed with raftlog_entries_free()); normal entries
 * below payloads_from come without their payload (see raft_restore).
 * restore->applied is set to the snapshot index; the caller raises it to
 * what its state machine already contains.
 */
extern int	raftlog_load(raftlog *log, raft_index payloads_from,
						 raft_restore *restore, raftlog_entries *storage);

extern const char *raftlog_status_name(int status);

#endif							/* CHRONICLE_RAFTLOG_H */
