/*-------------------------------------------------------------------------
 *
 * snapshot.h
 *	  Raft snapshots of a replicated server: writing one at the applied
 *	  index, serving it in chunks, staging a received one and installing it.
 *
 * See src/worker/snapshot.c for the file format and docs/cluster.md for
 * when snapshots are taken and sent.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CHRONICLE_SNAPSHOT_H
#define CHRONICLE_SNAPSHOT_H

#include "postgres.h"

typedef struct SnapshotWriter SnapshotWriter;

typedef struct SnapshotInstallResult
{
	int			nstreams;
	uint64		bytes;
} SnapshotInstallResult;

/* $PGDATA/chronicle_raft_snapshots */
extern void snapshot_dir(char *path, Size len);

/*
 * Writing (any node, normally the leader).  begin() reads the replicated
 * catalog and writes the header; each step() copies stream pages for about
 * budget_ms and returns true once the file is complete, durable and under
 * its final name.  Between begin() and the last step() nothing may change
 * the streams: the caller defers applying entries.
 */
extern SnapshotWriter *snapshot_write_begin(uint64 cluster_id, uint64 index, uint64 term);
extern bool snapshot_write_step(SnapshotWriter *w, int budget_ms);
extern void snapshot_write_abort(SnapshotWriter *w);
extern uint64 snapshot_writer_index(SnapshotWriter *w);
extern void snapshot_writer_report(SnapshotWriter *w, int *nstreams, uint64 *bytes,
								   long *elapsed_ms);

/* Serve bytes of the complete snapshot file at index (false: not there). */
extern bool snapshot_read(uint64 index, uint64 offset, char *buf, Size cap,
						  Size *len, bool *done);

/* Receiving: stage chunks in order; done makes the staged file durable. */
extern void snapshot_stage_chunk(uint64 index, uint64 offset, const char *data,
								 Size len, bool done);

/* Is the complete snapshot file for index present? */
extern bool snapshot_exists(uint64 index);

/*
 * Replace the replicated state (streams, their events, membership, applied
 * index) by the snapshot file at index, in one transaction that is flushed
 * before returning.  Verifies the file first and changes nothing if it is
 * damaged or of another cluster.
 */
extern void snapshot_install(uint64 cluster_id, uint64 index,
							 SnapshotInstallResult *result);

/*
 * Delete snapshot files other than keep and keep_also (0: none), and with
 * keep = 0 also a partly received one.
 */
extern void snapshot_remove_others(uint64 keep, uint64 keep_also);

#endif							/* CHRONICLE_SNAPSHOT_H */
