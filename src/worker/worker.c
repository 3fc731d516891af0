/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The replication worker: one per server, hosting the Raft engine.
 *
 * Started from shared_preload_libraries when chronicle_raft.initial_cluster
 * is set.  It connects to chronicle_raft.database, opens the durable Raft
 * log ($PGDATA/chronicle_raft, src/raftlog/), restores the engine from it and
 * runs one loop: wait for its latch (or a timeout of one tick), advance the
 * Raft clock, drain the insert queue into one proposal, and process the
 * engine's ready output in the order of the persistence contract in
 * src/raft/raft.h: make entries and hard state durable, send messages,
 * apply committed entries, report proposal outcomes, then confirm
 * persistence to the engine.
 *
 * Applying an entry runs in a transaction of the worker: each stream's
 * events of the entry are sorted by (time, arrival) and applied with
 * tabplus_apply_batch(), which records the entry's index in the stream's
 * meta page in the same WAL records, so a restart never applies an entry
 * twice and resumes one that was cut short.  The worker's own applied index
 * is a hint kept in memory; the streams' meta pages are the truth.
 *
 * Entry payload: uint32 magic, uint32 kind (1 = batches), uint32 count,
 * then per batch uint64 origin node, int32 slot, uint64 batch id, uint32
 * length and the batch bytes as the backend encoded them (staging.c):
 * per stream uint16 name length, the qualified name, uint32 event count,
 * then per event uint16 length and the encoded event (rowcodec.c).  A batch
 * of a large transaction starts with a PartHeader (cluster.h): its parts are
 * noted in chronicle.open_parts (their entry and place in it; copied there
 * only if the log is compacted first) until the final one applies them all.
 *
 * Snapshots (snapshot.c): when the engine must send a follower entries that
 * were compacted away, the worker writes a snapshot file at its applied
 * index, a slice per loop iteration; committed entries wait in the Raft log
 * meanwhile (ws.apply_target above ws.applied) and are applied from it
 * afterwards, always in log order.  A received snapshot is staged, recorded
 * in the Raft log and then installed in one transaction.
 *
 * Every node must reach the same outcome for every entry.  A batch whose
 * stream is gone where it stands in the log is refused everywhere alike.
 * Replicated DDL that fails for a reason of this node's own (an object not
 * replicated in the way, a local session's lock) stops applying at that
 * entry (stop_apply) instead of skipping it: the entry is retried while the
 * engine runs on, so the node lags but never differs.
 *
 * A worker that exits or errors out marks every waiting batch failed or
 * unknown (queue.c) so no backend waits forever; the postmaster restarts it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <malloc.h>
#include <sys/stat.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "access/relation.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "parser/parser.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "am/stream.h"
#include "raftlog/raftlog.h"
#include "net/codec.h"
#include "net/transport.h"
#include "raft/raft.h"
#include "tabplus/tabplus.h"
#include "worker/cluster.h"
#include "worker/snapshot.h"

#define ENTRY_MAGIC		0x31455243	/* "CRE1" */
#define ENTRY_BATCHES	1
#define ENTRY_COMPACT	2
#define TICK_MS			10
#define APPLY_RETRY_MS	2000		/* a stopped apply is retried this often */
#define LOCK_RETRY_MS	200			/* ... or this, when it waits for a lock */
#define SNAPSHOT_CHUNK_BYTES (4 * 1024 * 1024)
#define ENTRY_MAX_BYTES		((Size) 40 * 1024 * 1024)	/* below the 64 MB frame */
#define OVERLAP_SEND_BYTES	((Size) 256 * 1024)	/* see process_ready */
#define APPLY_DURING_WRITE_BYTES	((Size) 64 * 1024)	/* see process_ready */
#define COMPACTED_FILE_INTERVAL_MS	50	/* see remove_compacted_files */
#define COMPACTED_FILE_BYTES		((uint64) 16 * 1024 * 1024)
#define ENGINE_CACHE_BYTES	((uint64) 16 * 1024 * 1024)	/* see engine_entry_read */
#define WORKER_MMAP_THRESHOLD	(32 * 1024 * 1024)	/* glibc's largest */
#define WORKER_TRIM_THRESHOLD	(128 * 1024 * 1024)

PGDLLEXPORT void chronicle_worker_main(Datum main_arg);

bool		am_cluster_worker = false;

typedef struct WorkerState
{
	raft_node  *node;
	raftlog    *log;
	uint64		cluster_id;
	ClusterMember members[CLUSTER_MAX_MEMBERS];
	int			nmembers;
	raft_index	applied;
	MemoryContext cxt;			/* reset after every loop */
	/* batches proposed by this node, by log index */
	struct PendingProposal
	{
		raft_index	index;
		raft_term	term;
		int			nbatches;
		int		   *slots;
		uint64	   *batch_ids;
		uint64	   *origins;
	}		   *pending;
	int			npending;
	int			maxpending;
	TimestampTz oldest_queued;

	/* network */
	int			listen_fd;
	transport_config tcfg;
	struct Peer
	{
		ClusterMember member;
		peer_conn  *conn;		/* established or in progress, or NULL */
		transport_backoff backoff;
		uint64		next_dial_ms;
		TimestampTz last_contact;
	}			peers[CLUSTER_MAX_MEMBERS];
	int			npeers;
	peer_conn  *inbound[64];	/* accepted, handshake not finished */
	int			ninbound;

	/* batches forwarded to this node while it leads, for the next entry */
	StringInfoData forwarded;
	uint32		nforwarded;

	/* this node's batches sent to a leader, not yet applied here */
	struct Forwarded
	{
		int			slot;
		uint64		batch_id;
		raft_term	term;		/* the term they were sent in */
	}			fwd[1024];
	int			nfwd;

	/* membership as replicated through the log (initial + chronicle.add_node) */
	struct Desired
	{
		uint64		id;
		char		host[64];
		int			port;
		bool		removed;
	}			desired[CLUSTER_MAX_MEMBERS * 2];
	int			ndesired;
	raft_node_id transfer_to;	/* requested leadership transfer */

	/* log compaction */
	uint64		log_bytes;		/* payload bytes appended since the last compaction */
	raft_index	compacted;		/* log discarded up to here */
	raft_index	compact_proposed;	/* a compaction entry is in flight up to here */
	raft_index	compact_to;		/* applied compaction entry, to carry out */
	bool		compacted_files;	/* compacted segment files remain */
	TimestampTz last_file_removal;
	uint64		segment_size;	/* of the Raft log's segment files */

	/*
	 * Snapshots.  Committed entries up to apply_target were handed out by the
	 * engine; those above ws.applied wait in the log while a snapshot is
	 * being written (the streams must not change) and are applied from the
	 * log afterwards.
	 */
	raft_index	apply_target;
	raft_index	ddl_committed;	/* last committed entry holding DDL (mark_committed) */
	SnapshotWriter *writer;		/* a snapshot being written, or NULL */
	bool		snapshot_wanted;	/* the engine asked for one we lack */
	raft_index	snapshot_ready; /* index of our complete snapshot file */

	/* applying stopped by an object of this node's own (stop_apply) */
	raft_index	stopped_at;		/* the entry that waits, 0: applying */
	TimestampTz stopped_since;
	TimestampTz stop_retry_at;
	TimestampTz stop_logged_at;
	char		stop_reason[256];

	/* hard state: term and vote are saved at once, a commit-only change lazily */
	TimestampTz applied_saved_at;	/* last write of chronicle.raft_applied */
	raft_hard_state saved_hs;
	bool		hs_pending;
	raft_hard_state pending_hs;
	TimestampTz hs_saved_at;

	/* read barriers in progress */
	struct PendingRead
	{
		uint64		id;			/* the ReadIndex context */
		int			slot;
		bool		has_index;
		raft_index	index;
	}			reads[64];
	int			nreads;
} WorkerState;

static WorkerState ws;

/*
 * The loop's wait set, kept across iterations: creating one costs an
 * epoll_create, an epoll_ctl per socket and a close, on every wakeup.  It
 * is rebuilt when the sockets change (a connection opened, closed or
 * freed: conn_epoch, which also tells a reused fd and address apart) and
 * otherwise only has the masks that changed modified.
 */
typedef struct WaitSlot
{
	int			fd;
	void	   *user;
	uint32		mask;
	int			pos;			/* position in wait_set */
} WaitSlot;

static WaitEventSet *wait_set = NULL;
static WaitSlot wait_slots[1 + CLUSTER_MAX_MEMBERS + lengthof(ws.inbound)];
static int	nwait_slots = 0;
static uint64 wait_set_epoch = 0;
static uint64 conn_epoch = 1;

static void
worker_conn_free(peer_conn *c)
{
	conn_free(c);
	conn_epoch++;
}

static void
want_socket(WaitSlot *want, int *nwant, int fd, void *user, uint32 mask)
{
	WaitSlot   *w = &want[(*nwant)++];

	w->fd = fd;
	w->user = user;
	w->mask = mask;
	w->pos = -1;
}

static WaitEventSet *
wait_set_update(WaitSlot *want, int nwant)
{
	bool		same = wait_set != NULL && wait_set_epoch == conn_epoch &&
		nwant == nwait_slots;
	int			i;

	for (i = 0; same && i < nwant; i++)
		same = want[i].fd == wait_slots[i].fd && want[i].user == wait_slots[i].user;
	if (same)
	{
		for (i = 0; i < nwant; i++)
		{
			if (want[i].mask != wait_slots[i].mask)
			{
				ModifyWaitEvent(wait_set, wait_slots[i].pos, want[i].mask, NULL);
				wait_slots[i].mask = want[i].mask;
			}
		}
		return wait_set;
	}

	if (wait_set != NULL)
		FreeWaitEventSet(wait_set);
	wait_set = CreateWaitEventSet(TopMemoryContext, 2 + lengthof(wait_slots));
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (i = 0; i < nwant; i++)
	{
		wait_slots[i] = want[i];
		wait_slots[i].pos = AddWaitEventToSet(wait_set, want[i].mask, want[i].fd,
											  NULL, want[i].user);
	}
	nwait_slots = nwant;
	wait_set_epoch = conn_epoch;
	return wait_set;
}

void
cluster_register_worker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	strlcpy(worker.bgw_library_name, "chronicle_raft", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "chronicle_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "chronicle_raft replication worker", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "chronicle_raft", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

static void
worker_on_exit(int code, Datum arg)
{
	queue_worker_detach();
}

/* ------------------------------------------------------------------ apply */

typedef struct StreamRows
{
	char	   *name;
	StagedRow  *rows;
	int64		nrows;
	int64		maxrows;
} StreamRows;

static bool
take(const char **p, const char *end, void *dst, Size n)
{
	if (end - *p < (long) n)
		return false;
	memcpy(dst, *p, n);
	*p += n;
	return true;
}

/* One batch of an ENTRY_BATCHES entry (layout in the header comment). */
typedef struct EntryBatch
{
	uint64		origin;
	int32		slot;
	uint64		batch_id;
	const char *data;
	uint32		len;
} EntryBatch;

/* Read the batch at *p; false if the bytes end before a whole one. */
static bool
take_batch(const char **p, const char *end, EntryBatch *b)
{
	if (!take(p, end, &b->origin, 8) || !take(p, end, &b->slot, 4) ||
		!take(p, end, &b->batch_id, 8) || !take(p, end, &b->len, 4) ||
		end - *p < (long) b->len)
		return false;
	b->data = *p;
	*p += b->len;
	return true;
}

typedef enum PartsScope
{
	PARTS_OF_TXN,
	PARTS_OF_OTHER_RUNS,
	PARTS_OF_ORIGIN
} PartsScope;

static void parts_discard(const PartHeader *hdr, PartsScope scope);
static void peer_add(uint64 id, const char *host, int port);
static void forwarded_done(uint64 batch_id);
static void peer_drop(uint64 id);
static void load_membership(void);
static struct Peer *peer_by_id(uint64 id);

static struct Desired *
desired_find(uint64 id)
{
	int			i;

	for (i = 0; i < ws.ndesired; i++)
		if (ws.desired[i].id == id)
			return &ws.desired[i];
	return NULL;
}

/*
 * Apply a membership command of the log (chronicle.add_node/remove_node/
 * transfer_leadership).  Every node checks it against the same replicated
 * state (the initial members plus chronicle.cluster_members), so all come
 * to the same verdict; the leader then carries it out (reconcile_membership).
 * Runs in the apply transaction.  Returns false with errbuf set on refusal.
 */
static bool
apply_membership(const char *cmd, char *errbuf, Size errlen)
{
	char		verb[16];
	long		id;
	char		address[80] = "";
	struct Desired *d;
	char		sql[256];
	int			members = 0;
	int			i;

	if (sscanf(cmd, "%15s %ld %79s", verb, &id, address) < 2)
	{
		snprintf(errbuf, errlen, "malformed membership command");
		return false;
	}
	d = desired_find((uint64) id);
	for (i = 0; i < ws.ndesired; i++)
		if (!ws.desired[i].removed)
			members++;

	if (strcmp(verb, "add") == 0)
	{
		ClusterMember m;
		char	   *perr = NULL;
		char	   *spec = psprintf("%ld=%s", id, address);

		if (d != NULL)
		{
			snprintf(errbuf, errlen, d->removed ?
					 "node id %ld was removed; node ids are never reused" :
					 "node id %ld is already a member", id);
			return false;
		}
		if (cluster_parse_members(spec, &m, 1, &perr) != 1)
		{
			snprintf(errbuf, errlen, "invalid address \"%s\"", address);
			return false;
		}
		for (i = 0; i < ws.ndesired; i++)
			if (!ws.desired[i].removed && strcmp(ws.desired[i].host, m.host) == 0 &&
				ws.desired[i].port == m.port)
			{
				snprintf(errbuf, errlen, "address %s is already used by node %llu",
						 address, (unsigned long long) ws.desired[i].id);
				return false;
			}
		if (ws.ndesired >= (int) lengthof(ws.desired) || members >= CLUSTER_MAX_MEMBERS)
		{
			snprintf(errbuf, errlen, "a cluster has at most %d members", CLUSTER_MAX_MEMBERS);
			return false;
		}
		d = &ws.desired[ws.ndesired++];
		d->id = (uint64) id;
		strlcpy(d->host, m.host, sizeof(d->host));
		d->port = m.port;
		d->removed = false;
		snprintf(sql, sizeof(sql),
				 "INSERT INTO chronicle.cluster_members VALUES (%ld, '%s:%d', false) "
				 "ON CONFLICT (node_id) DO UPDATE SET address = EXCLUDED.address, removed = false",
				 id, m.host, m.port);
		if (d->id != (uint64) chronicle_node_id)
			peer_add(d->id, d->host, d->port);
	}
	else if (strcmp(verb, "remove") == 0)
	{
		if (d == NULL || d->removed)
		{
			snprintf(errbuf, errlen, "node %ld is not a member", id);
			return false;
		}
		if (members <= 1)
		{
			snprintf(errbuf, errlen, "node %ld is the last member and cannot be removed", id);
			return false;
		}
		d->removed = true;
		snprintf(sql, sizeof(sql),
				 "INSERT INTO chronicle.cluster_members VALUES (%ld, '%s:%d', true) "
				 "ON CONFLICT (node_id) DO UPDATE SET removed = true",
				 id, d->host, d->port);
		/* its connection goes once the change commits: prune_removed_peers */
	}
	else if (strcmp(verb, "transfer") == 0)
	{
		if (d == NULL || d->removed)
		{
			snprintf(errbuf, errlen, "node %ld is not a member", id);
			return false;
		}
		ws.transfer_to = (raft_node_id) id;
		return true;
	}
	else
	{
		snprintf(errbuf, errlen, "unknown membership command \"%s\"", verb);
		return false;
	}

	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute(sql, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record the membership change");
	PopActiveSnapshot();
	SPI_finish();
	if (strcmp(verb, "remove") == 0)
	{
		PartHeader	hdr;

		/* its sessions can never send their final parts */
		memset(&hdr, 0, sizeof(hdr));
		hdr.origin = (uint64) id;
		parts_discard(&hdr, PARTS_OF_ORIGIN);
	}
	return true;
}

/*
 * A removed member keeps its connection until the configuration without it
 * is in effect here: until then its vote or acknowledgement may be what
 * commits the removal itself (with another member down, say).
 */
static void
prune_removed_peers(void)
{
	raft_status st;
	int			i;

	raft_get_status(ws.node, &st);
	for (i = 0; i < ws.ndesired; i++)
	{
		struct Desired *d = &ws.desired[i];

		if (d->removed && d->id != (uint64) chronicle_node_id &&
			peer_by_id(d->id) != NULL &&
			!raft_conf_is_voter(&st.conf, d->id) && !raft_conf_is_learner(&st.conf, d->id))
			peer_drop(d->id);
	}
}

/*
 * Leader: bring the Raft configuration to the replicated membership, one
 * change at a time: add missing members as learners, promote learners that
 * caught up, remove removed ones; then any requested leadership transfer.
 */
static void
reconcile_membership(void)
{
	raft_status st;
	int			i;
	raft_term	term;
	raft_index	index;

	raft_get_status(ws.node, &st);
	if (st.role != RAFT_LEADER)
		return;
	for (i = 0; i < ws.ndesired; i++)
	{
		struct Desired *d = &ws.desired[i];
		bool		in_conf = raft_conf_is_voter(&st.conf, d->id) ||
			raft_conf_is_learner(&st.conf, d->id);
		raft_index	match;

		if (d->removed)
		{
			if (in_conf)
			{
				(void) raft_propose_conf_change(ws.node, RAFT_CONF_REMOVE, d->id, &term, &index);
				return;
			}
			continue;
		}
		if (!in_conf && !raft_conf_is_removed(&st.conf, d->id))
		{
			(void) raft_propose_conf_change(ws.node, RAFT_CONF_ADD_LEARNER, d->id, &term, &index);
			return;
		}
		if (raft_conf_is_learner(&st.conf, d->id) &&
			raft_get_match(ws.node, d->id, &match) && match >= st.commit)
		{
			(void) raft_propose_conf_change(ws.node, RAFT_CONF_PROMOTE, d->id, &term, &index);
			return;
		}
	}
	if (ws.transfer_to != 0)
	{
		if (ws.transfer_to != st.id && raft_conf_is_voter(&st.conf, ws.transfer_to))
			(void) raft_transfer_leadership(ws.node, ws.transfer_to);
		ws.transfer_to = 0;
	}
}

/*
 * The rest of a stream section's header, after its uint16 name length: the
 * qualified name (NUL-terminated into name) and the event count.
 */
static bool
take_section(const char **p, const char *end, uint16 namelen, char *name, Size namecap,
			 uint32 *nrows)
{
	if (namelen >= namecap || !take(p, end, name, namelen))
		return false;
	name[namelen] = '\0';
	return take(p, end, nrows, sizeof(*nrows));
}

/*
 * Collect the events of one batch into per-stream arrays.  A DDL chunk
 * (name length 0xFFFF) is returned through *ddl / *search_path instead; a
 * DDL batch carries nothing else.
 */
static void
collect_batch(const char *p, const char *end, StreamRows **streams, int *nstreams,
			  uint32 *seq, char **ddl, char **search_path)
{
	*ddl = NULL;
	while (p < end)
	{
		uint16		namelen;
		char		name[NAMEDATALEN * 2 + 8];
		uint32		nrows;
		uint32		r;
		StreamRows *s = NULL;
		int			k;

		if (!take(&p, end, &namelen, sizeof(namelen)))
			elog(ERROR, "malformed batch in Raft entry");
		if (namelen == 0xFFFF)
		{
			uint32		len;

			if (!take(&p, end, &len, sizeof(len)) || end - p < len)
				elog(ERROR, "malformed DDL in Raft entry");
			*search_path = pnstrdup(p, len);
			p += len;
			if (!take(&p, end, &len, sizeof(len)) || end - p < len)
				elog(ERROR, "malformed DDL in Raft entry");
			*ddl = pnstrdup(p, len);
			return;
		}
		if (!take_section(&p, end, namelen, name, sizeof(name), &nrows))
			elog(ERROR, "malformed batch in Raft entry");
		for (k = 0; k < *nstreams; k++)
			if (strcmp((*streams)[k].name, name) == 0)
				s = &(*streams)[k];
		if (s == NULL)
		{
			*streams = repalloc(*streams, sizeof(StreamRows) * (*nstreams + 1));
			s = &(*streams)[(*nstreams)++];
			s->name = pstrdup(name);
			s->maxrows = Max(nrows, 16);
			s->rows = palloc(sizeof(StagedRow) * s->maxrows);
			s->nrows = 0;
		}
		for (r = 0; r < nrows; r++)
		{
			uint16		len;
			StagedRow  *row;

			if (!take(&p, end, &len, sizeof(len)) || end - p < len || len < sizeof(int64) + 1)
				elog(ERROR, "malformed event in Raft entry");
			if (s->nrows == s->maxrows)
			{
				s->maxrows *= 2;
				s->rows = repalloc_huge(s->rows, sizeof(StagedRow) * s->maxrows);
			}
			row = &s->rows[s->nrows++];
			row->data = p;
			row->len = len;
			row->ts = row_get_time(p);
			row->seq = (*seq)++;
			p += len;
		}
	}
}

/*
 * Where the collected events stood before a batch (or a large transaction's
 * parts) was collected, so that it can be taken back whole.
 */
typedef struct CollectMark
{
	int			nstreams;
	int64	   *nrows;
	uint32		seq;
} CollectMark;

static void
collect_mark(CollectMark *m, const StreamRows *streams, int nstreams, uint32 seq)
{
	int			k;

	m->nstreams = nstreams;
	m->nrows = palloc(sizeof(int64) * Max(nstreams, 1));
	for (k = 0; k < nstreams; k++)
		m->nrows[k] = streams[k].nrows;
	m->seq = seq;
}

static void
collect_undo(const CollectMark *m, StreamRows *streams, int *nstreams, uint32 *seq)
{
	int			k;

	for (k = 0; k < m->nstreams; k++)
		streams[k].nrows = m->nrows[k];
	*nstreams = m->nstreams;
	*seq = m->seq;
}

/*
 * The first stream collected since the mark that is not a stream here, or
 * NULL.  Called where the batch stands in the log (the entry's earlier DDL
 * is applied), and every node holds the same streams there, so a batch
 * whose stream was dropped or renamed before it is refused alike
 * everywhere.  Streams collected before the mark (since the entry's last
 * DDL) were checked then.
 */
static char *
collected_missing_stream(const CollectMark *m, const StreamRows *streams, int nstreams)
{
	int			k;

	for (k = m->nstreams; k < nstreams; k++)
	{
		Oid			relid;

		relid = RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(streams[k].name)),
								 NoLock, true);
		if (!OidIsValid(relid) || !relid_is_stream(relid))
			return streams[k].name;
	}
	return NULL;
}

/* ---------------------------------------------------------------- parts */

/*
 * At worker start: sessions of this server's earlier runs are gone (a crash
 * restart) or were told their commit failed (a worker restart), so parts
 * they sent will never get their final part.  Ask the cluster to discard
 * them; the entry goes through the log like any batch.
 */
static void
discard_parts_of_earlier_runs(void)
{
	PartHeader	hdr;

	memset(&hdr, 0, sizeof(hdr));
	hdr.marker = BATCH_PART_MARKER;
	hdr.kind = PART_ABORT_ORIGIN;
	hdr.origin = (uint64) chronicle_node_id;
	hdr.boot = queue_boot_id();
	if (!queue_submit_detached((const char *) &hdr, sizeof(hdr)))
		elog(LOG, "chronicle_raft: could not queue the discard of earlier runs' parts");
}

static bool
batch_is_part(const EntryBatch *batch)
{
	uint16		marker;

	if (batch->len < sizeof(PartHeader))
		return false;
	memcpy(&marker, batch->data, sizeof(marker));
	return marker == BATCH_PART_MARKER;
}

/*
 * Keep a part of a large transaction until its final part (or an abort):
 * where it is, not its events.  The Raft log holds them already; they are
 * copied into the table only if the log is compacted first
 * (parts_materialize).
 */
static void
part_keep(const PartHeader *hdr, raft_index index, Size offset, Size len)
{
	Oid			types[7] = {INT8OID, INT8OID, INT4OID, INT8OID, INT8OID, INT4OID, INT4OID};
	Datum		values[7];

	values[0] = Int64GetDatum((int64) hdr->origin);
	values[1] = Int64GetDatum((int64) hdr->txn);
	values[2] = Int32GetDatum((int32) hdr->part);
	values[3] = Int64GetDatum((int64) hdr->boot);
	values[4] = Int64GetDatum((int64) index);
	values[5] = Int32GetDatum((int32) offset);
	values[6] = Int32GetDatum((int32) len);
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	if (SPI_execute_with_args("INSERT INTO chronicle.open_parts "
							  "(origin, txn, part, boot, entry_index, entry_offset, entry_length) "
							  "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
							  7, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not keep a part of a replicated transaction");
	SPI_finish();
	PopActiveSnapshot();
}

/*
 * A kept part's events from the Raft log entry that carried them, copied
 * into cxt.  *cache holds the last entry read (parts often share one).
 */
static char *
part_from_log(raftlog_entries *cache, raft_index index, int32 offset, int32 len,
			  MemoryContext cxt)
{
	char	   *copy;

	if (cache->count != 1 || cache->entries[0].index != index)
	{
		raftlog_entries_free(cache);
		memset(cache, 0, sizeof(*cache));
		if (index < raftlog_first_index(ws.log) ||
			raftlog_read(ws.log, index, index, cache) != RAFTLOG_OK || cache->count != 1)
			elog(ERROR, "the Raft log no longer holds entry %llu, which carries a kept part",
				 (unsigned long long) index);
	}
	if (offset < 0 || len < 0 || (Size) offset + (Size) len > cache->entries[0].len)
		elog(ERROR, "a kept part lies outside Raft entry %llu", (unsigned long long) index);
	copy = MemoryContextAlloc(cxt, Max(len, 1));
	memcpy(copy, (const char *) cache->entries[0].data + offset, len);
	return copy;
}

/*
 * The kept parts of hdr's transaction, in order, copied into the current
 * memory context; returns how many.  Their rows are then collected like a
 * batch's.
 */
static int
parts_load(const PartHeader *hdr, char ***datas, Size **lens)
{
	MemoryContext outer = CurrentMemoryContext;
	raftlog_entries cache;
	char		sql[240];
	int			n = 0;
	uint64		i;

	snprintf(sql, sizeof(sql),
			 "SELECT part, entry_index, entry_offset, entry_length, data FROM chronicle.open_parts "
			 "WHERE origin = %lld AND txn = %lld ORDER BY part",
			 (long long) hdr->origin, (long long) hdr->txn);
	memset(&cache, 0, sizeof(cache));
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	if (SPI_execute(sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the kept parts of a replicated transaction");
	*datas = MemoryContextAlloc(outer, sizeof(char *) * Max(SPI_processed, 1));
	*lens = MemoryContextAlloc(outer, sizeof(Size) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int32		part = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		Datum		data = SPI_getbinval(tup, desc, 5, &isnull);

		if (part != (int32) i)
			break;				/* a gap: a part was never committed */
		if (isnull)
		{
			(*lens)[n] = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
			(*datas)[n] = part_from_log(&cache,
										(raft_index) DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull)),
										DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull)),
										(int32) (*lens)[n], outer);
		}
		else
		{
			bytea	   *b = DatumGetByteaPP(data);

			(*lens)[n] = VARSIZE_ANY_EXHDR(b);
			(*datas)[n] = MemoryContextAlloc(outer, Max((*lens)[n], 1));
			memcpy((*datas)[n], VARDATA_ANY(b), (*lens)[n]);
		}
		n++;
	}
	SPI_finish();
	PopActiveSnapshot();
	raftlog_entries_free(&cache);
	return n;
}

/*
 * Before the log forgets the entries up to upto: copy into
 * chronicle.open_parts the events of the kept parts those entries carry,
 * in a transaction of its own (the caller flushes its commit before
 * compacting).  Rare: only a large transaction still open when the log is
 * compacted pays for a second copy of its parts.
 */
static void
parts_materialize(raft_index upto)
{
	MemoryContext outer = CurrentMemoryContext;
	raftlog_entries cache;
	char		sql[200];
	uint64		n;
	uint64		i;
	int64	   *origin;
	int64	   *txn;
	int32	   *part;
	int64	   *index;
	int32	   *offset;
	int32	   *len;

	snprintf(sql, sizeof(sql),
			 "SELECT origin, txn, part, entry_index, entry_offset, entry_length FROM chronicle.open_parts "
			 "WHERE data IS NULL AND entry_index <= %llu", (unsigned long long) upto);
	memset(&cache, 0, sizeof(cache));
	worker_xact_start();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	if (SPI_execute(sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read chronicle.open_parts");
	n = SPI_processed;
	origin = MemoryContextAlloc(outer, sizeof(int64) * Max(n, 1));
	txn = MemoryContextAlloc(outer, sizeof(int64) * Max(n, 1));
	part = MemoryContextAlloc(outer, sizeof(int32) * Max(n, 1));
	index = MemoryContextAlloc(outer, sizeof(int64) * Max(n, 1));
	offset = MemoryContextAlloc(outer, sizeof(int32) * Max(n, 1));
	len = MemoryContextAlloc(outer, sizeof(int32) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		origin[i] = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		txn[i] = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		part[i] = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		index[i] = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
		offset[i] = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
		len[i] = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
	}
	for (i = 0; i < n; i++)
	{
		Oid			types[4] = {BYTEAOID, INT8OID, INT8OID, INT4OID};
		Datum		values[4];
		char	   *events = part_from_log(&cache, (raft_index) index[i], offset[i], len[i],
										   CurrentMemoryContext);
		bytea	   *b = palloc(VARHDRSZ + len[i]);

		SET_VARSIZE(b, VARHDRSZ + len[i]);
		memcpy(VARDATA(b), events, len[i]);
		pfree(events);
		values[0] = PointerGetDatum(b);
		values[1] = Int64GetDatum(origin[i]);
		values[2] = Int64GetDatum(txn[i]);
		values[3] = Int32GetDatum(part[i]);
		if (SPI_execute_with_args("UPDATE chronicle.open_parts SET data = $1 "
								  "WHERE origin = $2 AND txn = $3 AND part = $4",
								  4, types, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not copy a kept part out of the Raft log");
		pfree(b);
	}
	SPI_finish();
	PopActiveSnapshot();
	worker_xact_commit();
	raftlog_entries_free(&cache);
	if (n > 0)
		ereport(LOG,
				(errmsg("chronicle_raft: copied %llu parts of open large transactions out of the Raft log before compacting it",
						(unsigned long long) n)));
}

/* Discard kept parts: of one transaction, of an origin's other runs, or all of an origin's. */
static void
parts_discard(const PartHeader *hdr, PartsScope scope)
{
	char		sql[200];

	if (scope == PARTS_OF_OTHER_RUNS)
		snprintf(sql, sizeof(sql),
				 "DELETE FROM chronicle.open_parts WHERE origin = %lld AND boot <> %lld",
				 (long long) hdr->origin, (long long) hdr->boot);
	else if (scope == PARTS_OF_ORIGIN)
		snprintf(sql, sizeof(sql),
				 "DELETE FROM chronicle.open_parts WHERE origin = %lld",
				 (long long) hdr->origin);
	else
		snprintf(sql, sizeof(sql),
				 "DELETE FROM chronicle.open_parts WHERE origin = %lld AND txn = %lld",
				 (long long) hdr->origin, (long long) hdr->txn);
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	if (SPI_execute(sql, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not discard kept parts of a replicated transaction");
	SPI_finish();
	PopActiveSnapshot();
}

/*
 * Apply a batch that starts with a part header.  Returns NULL, or why the
 * transaction failed (the same on every node: the kept parts are).  Events
 * of a final part are collected into the entry's streams like any batch's.
 */
static const char *
apply_part(const raft_entry *e, const EntryBatch *batch, StreamRows **streams, int *nstreams,
		   uint32 *seq)
{
	PartHeader	hdr;
	const char *body = batch->data + sizeof(PartHeader);
	const char *end = batch->data + batch->len;
	char	  **datas;
	Size	   *lens;
	int			nparts;
	int			i;
	char	   *ddl;
	char	   *search_path;
	char	   *missing;
	CollectMark mark;

	memcpy(&hdr, batch->data, sizeof(hdr));
	switch (hdr.kind)
	{
		case PART_EVENTS:
			{
				struct Desired *d = desired_find(hdr.origin);

				/* a removed member's parts were discarded with it (apply_membership) */
				if (d == NULL || !d->removed)
					part_keep(&hdr, e->index, body - (const char *) e->data, end - body);
				return NULL;
			}
		case PART_ABORT:
		case PART_ABORT_ORIGIN:
			parts_discard(&hdr, hdr.kind == PART_ABORT_ORIGIN ? PARTS_OF_OTHER_RUNS : PARTS_OF_TXN);
			return NULL;
		case PART_FINAL:
			break;
		default:
			elog(ERROR, "unknown part kind %u in a Raft entry", hdr.kind);
	}

	nparts = parts_load(&hdr, &datas, &lens);
	parts_discard(&hdr, PARTS_OF_TXN);
	if (hdr.nparts == 0 || nparts != (int) hdr.nparts - 1)
		return "a part of the transaction's events was not committed (the leader changed meanwhile)";
	collect_mark(&mark, *streams, *nstreams, *seq);
	for (i = 0; i < nparts; i++)
		collect_batch(datas[i], datas[i] + lens[i], streams, nstreams, seq, &ddl, &search_path);
	collect_batch(body, end, streams, nstreams, seq, &ddl, &search_path);
	/* all or nothing: none of the transaction's events is applied */
	if ((missing = collected_missing_stream(&mark, *streams, *nstreams)) != NULL)
	{
		missing = psprintf("stream %s was dropped or renamed before its events were applied", missing);
		collect_undo(&mark, *streams, nstreams, seq);
	}
	return missing;
}

/*
 * Apply the collected events of each stream, then forget them.  step
 * counts the DDL statements of the entry before these events (see
 * TABPLUS_APPLY_POSITION).
 */
static void
apply_streams(raft_index index, int step, StreamRows *streams, int *nstreams)
{
	int			k;

	if (step >= TABPLUS_APPLY_MAX_STEP)
		elog(ERROR, "Raft entry %llu has more than %d DDL statements",
			 (unsigned long long) index, TABPLUS_APPLY_MAX_STEP - 1);

	for (k = 0; k < *nstreams; k++)
	{
		StreamRows *s = &streams[k];
		List	   *names = stringToQualifiedNameList(s->name);
		Oid			relid = RangeVarGetRelid(makeRangeVarFromNameList(names), RowExclusiveLock, true);
		Relation	rel;

		/* collected_missing_stream() refused batches of missing streams */
		if (!OidIsValid(relid) || !relid_is_stream(relid))
			elog(ERROR, "Raft entry %llu has events for \"%s\", which is not a stream here",
				 (unsigned long long) index, s->name);
		rel = relation_open(relid, NoLock);
		tabplus_sort_batch(s->rows, s->nrows);
		stream_lock(rel, true);
		{
			bool		locked = true;

			tabplus_apply_batch(rel, stream_layout(rel), s->rows, s->nrows,
								TABPLUS_APPLY_POSITION(index, step), 0, &locked);
		}
		stream_unlock(rel, true);
		relation_close(rel, NoLock);
	}
	*nstreams = 0;
}

/*
 * Keep chronicle.cluster_streams in step with replicated DDL: a created
 * stream is added, dropped ones disappear.  Runs inside apply_ddl's SPI
 * connection, with the DDL's search_path.
 */
static void
record_cluster_streams(const char *ddl)
{
	List	   *stmts = raw_parser(ddl, RAW_PARSE_DEFAULT);
	ListCell   *lc;

	foreach(lc, stmts)
	{
		RawStmt    *raw = lfirst_node(RawStmt, lc);
		char		sql[128];

		if (IsA(raw->stmt, CreateStmt))
		{
			Oid			relid = RangeVarGetRelid(((CreateStmt *) raw->stmt)->relation, NoLock, false);

			snprintf(sql, sizeof(sql), "INSERT INTO chronicle.cluster_streams VALUES (%u)", relid);
			if (SPI_execute(sql, false, 0) != SPI_OK_INSERT)
				elog(ERROR, "could not record replicated stream %u", relid);
		}
	}
	if (SPI_execute("DELETE FROM chronicle.cluster_streams c WHERE NOT EXISTS "
					"(SELECT FROM pg_catalog.pg_class r WHERE r.oid = c.relid)", false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not prune chronicle.cluster_streams");
}

/*
 * Schemas are not replicated: a schema the user created on the origin only
 * would make a replicated CREATE TABLE or SET SCHEMA succeed there and fail
 * everywhere else.  So every node creates the schemas such a statement
 * names, alike, before running it.
 */
static void
ensure_schemas(const char *ddl)
{
	List	   *stmts = raw_parser(ddl, RAW_PARSE_DEFAULT);
	ListCell   *lc;

	foreach(lc, stmts)
	{
		Node	   *stmt = lfirst_node(RawStmt, lc)->stmt;
		const char *schema = NULL;

		if (IsA(stmt, CreateStmt))
			schema = ((CreateStmt *) stmt)->relation->schemaname;
		else if (IsA(stmt, AlterObjectSchemaStmt))
			schema = ((AlterObjectSchemaStmt *) stmt)->newschema;
		if (schema != NULL &&
			SPI_execute(psprintf("CREATE SCHEMA IF NOT EXISTS %s", quote_identifier(schema)),
						false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "could not create schema \"%s\"", schema);
	}
}

/*
 * Run replicated DDL in a subtransaction.  On failure, returns false with
 * the message and the SQLSTATE; the caller decides whether the failure is
 * the same on every node (ddl_failure_is_local).
 */
static bool
apply_ddl(const char *search_path, const char *ddl, char *errbuf, Size errlen,
		  int *sqlerrcode)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	bool		ok = true;

	BeginInternalSubTransaction(NULL);
	PG_TRY();
	{
		SPI_connect();
		SetConfigOption("search_path", search_path, PGC_USERSET, PGC_S_SESSION);
		/* a lock held by a session here must not stop this process: see stop_apply */
		SetConfigOption("lock_timeout", "100", PGC_USERSET, PGC_S_SESSION);
		PushActiveSnapshot(GetTransactionSnapshot());
		ensure_schemas(ddl);
		if (SPI_execute(ddl, false, 0) < 0)
			elog(ERROR, "SPI_execute failed");
		CommandCounterIncrement();
		record_cluster_streams(ddl);
		PopActiveSnapshot();
		SPI_finish();
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		strlcpy(errbuf, edata->message, errlen);
		*sqlerrcode = edata->sqlerrcode;
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	SetConfigOption("search_path", "\"$user\", public", PGC_USERSET, PGC_S_SESSION);
	SetConfigOption("lock_timeout", "0", PGC_USERSET, PGC_S_SESSION);
	return ok;
}

/*
 * Is this failure of replicated DDL caused by an object of this node's own?
 * Only streams (and the schemas they name, created alike) are replicated,
 * so whatever depends on a stream is local, and a name taken by anything
 * but a stream the cluster created is taken locally.  Every other failure
 * follows from replicated state (the streams, their events) and so happens
 * on every node alike.  Runs in the apply transaction after the failed
 * subtransaction was rolled back.
 */
static bool
ddl_failure_is_local(const char *search_path, const char *ddl, int sqlerrcode)
{
	List	   *stmts;
	ListCell   *lc;
	bool		local = false;

	if (sqlerrcode == ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST)
		return true;
	if (sqlerrcode != ERRCODE_DUPLICATE_TABLE && sqlerrcode != ERRCODE_DUPLICATE_OBJECT)
		return false;

	SetConfigOption("search_path", search_path, PGC_USERSET, PGC_S_SESSION);
	PushActiveSnapshot(GetTransactionSnapshot());
	stmts = raw_parser(ddl, RAW_PARSE_DEFAULT);
	foreach(lc, stmts)
	{
		Node	   *stmt = lfirst_node(RawStmt, lc)->stmt;
		Oid			nsp = InvalidOid;
		const char *name = NULL;
		Oid			taken;

		if (IsA(stmt, CreateStmt))
		{
			RangeVar   *rv = ((CreateStmt *) stmt)->relation;

			nsp = rv->schemaname ? get_namespace_oid(rv->schemaname, true) :
				RangeVarGetCreationNamespace(rv);
			name = rv->relname;
		}
		else if (IsA(stmt, RenameStmt) && ((RenameStmt *) stmt)->relation != NULL &&
				 ((RenameStmt *) stmt)->renameType == OBJECT_TABLE)
		{
			RenameStmt *rs = (RenameStmt *) stmt;
			Oid			relid = RangeVarGetRelid(rs->relation, NoLock, true);

			nsp = OidIsValid(relid) ? get_rel_namespace(relid) : InvalidOid;
			name = rs->newname;
		}
		else if (IsA(stmt, AlterObjectSchemaStmt) &&
				 ((AlterObjectSchemaStmt *) stmt)->relation != NULL)
		{
			AlterObjectSchemaStmt *as = (AlterObjectSchemaStmt *) stmt;

			nsp = get_namespace_oid(as->newschema, true);
			name = as->relation->relname;
		}
		if (name == NULL || !OidIsValid(nsp))
			continue;
		taken = get_relname_relid(name, nsp);

		/*
		 * A stream the cluster created holds the name on every node; a
		 * relation that is not one, or a type of that name (no relation),
		 * is this node's own.
		 */
		if (!OidIsValid(taken) || !cluster_stream_known(taken))
			local = true;
	}
	PopActiveSnapshot();
	SetConfigOption("search_path", "\"$user\", public", PGC_USERSET, PGC_S_SESSION);
	return local;
}

/*
 * The relations a replicated DDL statement names that exist here.
 */
static List *
ddl_relations(const char *search_path, const char *ddl)
{
	List	   *relids = NIL;
	ListCell   *lc;

	SetConfigOption("search_path", search_path, PGC_USERSET, PGC_S_SESSION);
	foreach(lc, raw_parser(ddl, RAW_PARSE_DEFAULT))
	{
		Node	   *stmt = lfirst_node(RawStmt, lc)->stmt;
		List	   *rvs = NIL;
		ListCell   *lc2;

		if (IsA(stmt, AlterTableStmt))
			rvs = list_make1(((AlterTableStmt *) stmt)->relation);
		else if (IsA(stmt, RenameStmt) && ((RenameStmt *) stmt)->relation)
			rvs = list_make1(((RenameStmt *) stmt)->relation);
		else if (IsA(stmt, AlterObjectSchemaStmt) && ((AlterObjectSchemaStmt *) stmt)->relation)
			rvs = list_make1(((AlterObjectSchemaStmt *) stmt)->relation);
		else if (IsA(stmt, DropStmt))
		{
			foreach(lc2, ((DropStmt *) stmt)->objects)
				if (IsA(lfirst(lc2), List))
					rvs = lappend(rvs, makeRangeVarFromNameList((List *) lfirst(lc2)));
		}
		foreach(lc2, rvs)
		{
			Oid			relid = RangeVarGetRelid((RangeVar *) lfirst(lc2), NoLock, true);

			if (OidIsValid(relid))
				relids = lappend_oid(relids, relid);
		}
	}
	SetConfigOption("search_path", "\"$user\", public", PGC_USERSET, PGC_S_SESSION);
	return relids;
}

/*
 * Sessions of this node holding a lock on any of relids: their pids as
 * "pid, pid" in buf.  Those among them waiting for their own batch would
 * wait for this process, which waits for them: their batches are abandoned
 * (queue_abandon_slot), so they end their transactions and release the
 * lock.  Their batches, if in the log, apply in order afterwards.
 */
static void
release_lock_holders(List *relids, char *buf, Size len)
{
	StringInfoData sql;
	ListCell   *lc;
	uint64		i;

	buf[0] = '\0';
	if (relids == NIL)
		return;
	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT DISTINCT pid FROM pg_catalog.pg_locks "
						   "WHERE granted AND pid <> pg_backend_pid() AND relation IN (");
	foreach(lc, relids)
		appendStringInfo(&sql, "%s%u", lc == list_head(relids) ? "" : ", ", lfirst_oid(lc));
	appendStringInfoString(&sql, ") ORDER BY pid");
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	if (SPI_execute(sql.data, true, 0) == SPI_OK_SELECT)
	{
		for (i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			int			pid = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
														  SPI_tuptable->tupdesc, 1, &isnull));
			PGPROC	   *proc = isnull ? NULL : BackendPidGetProc(pid);

			if (strlen(buf) + 16 < len)
				snprintf(buf + strlen(buf), len - strlen(buf), "%s%d", i > 0 ? ", " : "", pid);
			if (proc != NULL)
				queue_abandon_slot(proc->backendId,
								   "replicated DDL ordered before these events needs this session's lock on the stream");
		}
	}
	SPI_finish();
	PopActiveSnapshot();
}

/*
 * Stop applying at an entry that cannot be applied here yet: an object of
 * this node's own is in the way of its DDL (skipping the entry would make
 * this node differ from the others for good; stopping keeps it behind but
 * identical up to that entry), or a session of this node holds a lock the
 * DDL needs (waiting for it inside this process would stop the Raft engine
 * too).  The engine goes on (the node still votes and stores the log),
 * committed entries wait in the log, and the entry is retried, so ending
 * the session or removing the object is all an operator has to do.
 */
static void
stop_apply(raft_index index, const char *ddl, const char *why, bool lock_wait)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		first = ws.stopped_at != index;

	if (first)
		ws.stopped_since = now;
	ws.stopped_at = index;
	ws.stop_retry_at = now + (TimestampTz) (lock_wait ? LOCK_RETRY_MS : APPLY_RETRY_MS) * 1000;
	snprintf(ws.stop_reason, sizeof(ws.stop_reason),
			 "Raft entry %llu: %s", (unsigned long long) index, why);
	if (lock_wait)
	{
		/* a short wait is normal; say something once it is not */
		if (now - ws.stopped_since < (TimestampTz) 5 * 1000 * 1000 ||
			now - ws.stop_logged_at < (TimestampTz) 60 * 1000 * 1000)
			return;
		ws.stop_logged_at = now;
		ereport(WARNING,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("replicated DDL of Raft entry %llu has waited %ld seconds: %s",
						(unsigned long long) index,
						(long) ((now - ws.stopped_since) / 1000000), why),
				 errdetail("The statement is \"%s\".  Later entries are applied once it is.", ddl),
				 errhint("End the sessions holding the lock, e.g. with pg_terminate_backend().")));
		return;
	}
	if (first || now - ws.stop_logged_at >= (TimestampTz) 60 * 1000 * 1000)
	{
		ws.stop_logged_at = now;
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("replicated DDL of Raft entry %llu cannot be applied on this node: %s",
						(unsigned long long) index, why),
				 errdetail("The statement is \"%s\".  It succeeds on the nodes without this node's own object, so this node stops applying here instead of skipping it; it retries every %d seconds.",
						   ddl, APPLY_RETRY_MS / 1000),
				 errhint("Drop or rename the object of this node's own that is in the way (see chronicle.status(), column apply_error).")));
	}
}

/* Record the applied index in the apply transaction (see the header). */
static void
set_applied_index(raft_index index)
{
	char		sql[128];

	SPI_connect();
	snprintf(sql, sizeof(sql), "UPDATE chronicle.raft_applied SET applied_index = %llu",
			 (unsigned long long) index);
	if (SPI_execute(sql, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record the applied Raft index");
	SPI_finish();
}

static raft_index
get_applied_index(void)
{
	raft_index	index = 0;
	bool		isnull;

	worker_xact_start();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute("SELECT max(applied_index) FROM chronicle.raft_applied", true, 0) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			index = (raft_index) DatumGetInt64(d);
	}
	PopActiveSnapshot();
	SPI_finish();
	worker_xact_commit();
	return index;
}

/*
 * Apply one committed entry: its batches in order, each stream's events
 * sorted by (time, arrival), DDL where it stands.  Then tell this node's
 * waiting backends (batches with this node as origin).  Returns false when
 * an object of this node's own keeps the entry from applying (stop_apply).
 */
static bool
apply_entry(const raft_entry *e)
{
	const char *p = (const char *) e->data;
	const char *end = p + e->len;
	uint32		magic;
	uint32		kind;
	uint32		count;
	uint32		b;
	uint32		seq = 0;
	int			step = 0;
	bool		had_ddl = false;
	StreamRows *streams = palloc(sizeof(StreamRows));
	int			nstreams = 0;
	int			ndone = 0;
	struct
	{
		int			slot;
		uint64		batch_id;
		bool		failed;
		char		msg[128];
	}		   *done;

	if (e->type != RAFT_ENTRY_NORMAL || e->len == 0)
		return true;
	if (!take(&p, end, &magic, 4) || magic != ENTRY_MAGIC || !take(&p, end, &kind, 4))
		elog(ERROR, "Raft entry %llu has an unknown format", (unsigned long long) e->index);
	if (kind == ENTRY_COMPACT)
	{
		uint64		upto;

		if (!take(&p, end, &upto, 8))
			elog(ERROR, "malformed compaction entry %llu", (unsigned long long) e->index);
		/* carried out after this ready (the engine takes no input meanwhile) */
		if (upto > ws.compacted && upto < e->index)
			ws.compact_to = upto;
		worker_xact_start();
		PushActiveSnapshot(GetTransactionSnapshot());
		set_applied_index(e->index);
		PopActiveSnapshot();
		worker_xact_commit();
		return true;
	}
	if (kind != ENTRY_BATCHES || !take(&p, end, &count, 4))
		elog(ERROR, "Raft entry %llu has an unknown format", (unsigned long long) e->index);
	done = palloc0(sizeof(*done) * Max(count, 1));

	worker_xact_start();
	PushActiveSnapshot(GetTransactionSnapshot());
	for (b = 0; b < count; b++)
	{
		EntryBatch	batch;
		char	   *ddl;
		char	   *search_path = NULL;
		char	   *missing;
		CollectMark mark;

		if (!take_batch(&p, end, &batch))
			elog(ERROR, "malformed batch header in Raft entry %llu", (unsigned long long) e->index);
		if (batch_is_part(&batch))
		{
			const char *failure = apply_part(e, &batch, &streams, &nstreams, &seq);

			/* kept parts are not idempotent under re-delivery: record the index */
			had_ddl = true;
			if (batch.origin == (uint64) chronicle_node_id)
			{
				done[ndone].slot = batch.slot;
				done[ndone].batch_id = batch.batch_id;
				done[ndone].failed = failure != NULL;
				if (failure)
					strlcpy(done[ndone].msg, failure, sizeof(done[ndone].msg));
				ndone++;
			}
			continue;
		}
		collect_mark(&mark, streams, nstreams, seq);
		collect_batch(batch.data, batch.data + batch.len, &streams, &nstreams, &seq,
					  &ddl, &search_path);
		if ((missing = collected_missing_stream(&mark, streams, nstreams)) != NULL)
		{
			/* all or nothing: none of the transaction's events is applied */
			if (batch.origin == (uint64) chronicle_node_id)
			{
				done[ndone].slot = batch.slot;
				done[ndone].batch_id = batch.batch_id;
				done[ndone].failed = true;
				snprintf(done[ndone].msg, sizeof(done[ndone].msg),
						 "stream %s was dropped or renamed before its events were applied", missing);
				ndone++;
			}
			collect_undo(&mark, streams, &nstreams, &seq);
			continue;
		}
		if (batch.origin == (uint64) chronicle_node_id)
		{
			done[ndone].slot = batch.slot;
			done[ndone].batch_id = batch.batch_id;
		}
		if (ddl != NULL)
		{
			char		errbuf[128];
			int			sqlerrcode = 0;
			bool		membership = strcmp(search_path, MEMBERSHIP_MARKER) == 0;

			had_ddl = true;
			apply_streams(e->index, step++, streams, &nstreams);
			PopActiveSnapshot();
			CommandCounterIncrement();
			if (membership ?
				!apply_membership(ddl, errbuf, sizeof(errbuf)) :
				!apply_ddl(search_path, ddl, errbuf, sizeof(errbuf), &sqlerrcode))
			{
				bool		lock_wait = !membership && sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE;

				if (lock_wait || (!membership && ddl_failure_is_local(search_path, ddl, sqlerrcode)))
				{
					char		why[200];

					if (lock_wait)
					{
						char		pids[128];

						release_lock_holders(ddl_relations(search_path, ddl), pids, sizeof(pids));
						snprintf(why, sizeof(why), "waiting for a lock held by %s%s",
								 pids[0] ? "process " : "another session", pids);
					}
					else
						strlcpy(why, errbuf, sizeof(why));

					/*
					 * Nothing of this entry may stay: its events applied so
					 * far are recorded by position in their meta pages and
					 * are not applied again when it is retried.
					 */
					stop_apply(e->index, ddl, why, lock_wait);
					worker_xact_abort();
					return false;
				}
				ereport(LOG,
						(errmsg("replicated DDL of Raft entry %llu failed: %s",
								(unsigned long long) e->index, errbuf)));
				if (batch.origin == (uint64) chronicle_node_id)
				{
					done[ndone].failed = true;
					strlcpy(done[ndone].msg, errbuf, sizeof(done[ndone].msg));
				}
			}
			CommandCounterIncrement();
			PushActiveSnapshot(GetTransactionSnapshot());
		}
		if (batch.origin == (uint64) chronicle_node_id)
			ndone++;
	}
	apply_streams(e->index, step, streams, &nstreams);

	/*
	 * Events carry their entry's index in each stream's meta page, so
	 * re-delivering an entry after a restart applies none of them twice;
	 * raft_applied only saves re-delivery, and is written at most every
	 * 100 ms instead of an UPDATE per entry.  DDL is not idempotent: an
	 * entry with DDL records its index in its own transaction.
	 */
	if (had_ddl || GetCurrentTimestamp() - ws.applied_saved_at >= 100 * 1000)
	{
		set_applied_index(e->index);
		ws.applied_saved_at = GetCurrentTimestamp();
	}
	PopActiveSnapshot();

	/*
	 * An apply that took no transaction id wrote only stream WAL, whose
	 * flush nothing waits for: the Raft log holds the entry durably, and a
	 * crash re-applies it (the meta pages record how far).  Forget where
	 * that WAL ends, so that committing does not wake the WAL writer for
	 * every page of it: a signal per page, ahead of waking the sessions
	 * below, and an fsync of the WAL competing with the Raft log's (8-client
	 * single-row INSERT through a follower: 8,400-8,740 -> 9,180-9,840 tps).
	 * The WAL writer's own rounds, and the write of any page it covers,
	 * still flush it.
	 */
	if (!TransactionIdIsValid(GetTopTransactionIdIfAny()))
		XactLastRecEnd = InvalidXLogRecPtr;
	worker_xact_commit();

	for (b = 0; b < (uint32) ndone; b++)
	{
		forwarded_done(done[b].batch_id);
		queue_set_state(done[b].slot, done[b].batch_id,
						done[b].failed ? BATCH_FAILED : BATCH_APPLIED,
						done[b].failed ? done[b].msg : NULL);
	}
	return true;
}

/* ------------------------------------------------------------ transactions */

static MemoryContext xact_outer;

void
worker_xact_start(void)
{
	xact_outer = CurrentMemoryContext;
	StartTransactionCommand();
}

void
worker_xact_commit(void)
{
	CommitTransactionCommand();
	MemoryContextSwitchTo(xact_outer);
}

void
worker_xact_abort(void)
{
	AbortCurrentTransaction();
	MemoryContextSwitchTo(xact_outer);
}

/* ---------------------------------------------------------------- network */

static uint64
now_ms(void)
{
	return (uint64) (GetCurrentTimestamp() / 1000);
}

static struct Peer *
peer_by_id(uint64 id)
{
	int			i;

	for (i = 0; i < ws.npeers; i++)
		if (ws.peers[i].member.id == id)
			return &ws.peers[i];
	return NULL;
}

static bool
peer_allowed(void *arg, raft_node_id id)
{
	return peer_by_id(id) != NULL;
}

static void
send_frame(uint64 to, const codec_frame *f)
{
	struct Peer *peer = peer_by_id(to);

	if (peer == NULL || peer->conn == NULL || conn_get_state(peer->conn) != CONN_ESTABLISHED ||
		chronicle_debug_isolate)
		return;					/* Raft retransmits; forwarding times out */
	(void) conn_queue_codec_frame(peer->conn, f);
}

static void
send_messages(const raft_message *msgs, size_t n)
{
	size_t		i;

	for (i = 0; i < n; i++)
	{
		codec_frame f;

		memset(&f, 0, sizeof(f));
		f.kind = CODEC_FRAME_RAFT;
		f.u.raft = msgs[i];
		send_frame(msgs[i].to, &f);
	}
}

/* Write what the connections have queued, as far as the sockets take it. */
/* Write out what is queued for up to max_peers peers, in peer order. */
static void
flush_outputs(int max_peers)
{
	int			i;
	int			flushed = 0;

	for (i = 0; i < ws.npeers && flushed < max_peers; i++)
	{
		peer_conn  *c = ws.peers[i].conn;

		if (c != NULL && conn_get_state(c) == CONN_ESTABLISHED && conn_wants_write(c))
		{
			conn_on_writable(c);
			flushed++;
		}
	}
}

static void
send_forward_result(uint64 origin, uint64 batch_id, codec_forward_outcome outcome)
{
	codec_frame f;
	raft_status st;

	raft_get_status(ws.node, &st);
	memset(&f, 0, sizeof(f));
	f.kind = CODEC_FRAME_FORWARD_RESULT;
	f.u.forward_result.batch_id = batch_id;
	f.u.forward_result.origin = origin;
	f.u.forward_result.outcome = outcome;
	f.u.forward_result.leader_hint = st.leader;
	send_frame(origin, &f);
}

/*
 * Lower node ids dial higher ones, so each pair has one connection; the
 * dialer redials with backoff, the other side waits.
 */
static void
network_start(void)
{
	char		err[256];
	char		host[64];
	int			port = 0;
	int			i;

	memset(&ws.tcfg, 0, sizeof(ws.tcfg));
	ws.tcfg.cluster_id = ws.cluster_id;
	ws.tcfg.self_id = (raft_node_id) chronicle_node_id;
	ws.tcfg.secret = (const uint8_t *) chronicle_cluster_secret;
	ws.tcfg.secret_len = strlen(chronicle_cluster_secret);
	ws.tcfg.peer_allowed = peer_allowed;
	/* a vanished peer host must not keep a half-open connection for long */
	ws.tcfg.tcp_user_timeout_ms = (unsigned int) chronicle_election_timeout * 4;
	ws.listen_fd = -1;
	initStringInfo(&ws.forwarded);

	for (i = 0; i < ws.ndesired; i++)
	{
		struct Desired *d = &ws.desired[i];

		if (d->id == (uint64) chronicle_node_id)
		{
			strlcpy(host, d->host, sizeof(host));
			port = d->port;
			continue;
		}
		if (!d->removed)
			peer_add(d->id, d->host, d->port);
	}
	if (ws.npeers == 0 && chronicle_initial_cluster_state == 0)
		return;					/* a cluster of one talks to nobody */
	if (ws.tcfg.secret_len == 0)
		ereport(FATAL,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("chronicle_raft.cluster_secret must be set")));
	if (chronicle_listen_address && chronicle_listen_address[0])
	{
		const char *colon = strrchr(chronicle_listen_address, ':');

		strlcpy(host, chronicle_listen_address, Min(sizeof(host), (size_t) (colon - chronicle_listen_address + 1)));
		port = atoi(colon + 1);
	}
	if (port == 0)
		ereport(FATAL,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("chronicle_raft.listen_address must be set on a node that joins an existing cluster")));
	if (transport_listen(host, port, &ws.listen_fd, err, sizeof(err)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("chronicle_raft could not listen on %s:%d: %s", host, port, err)));
	ereport(LOG, (errmsg("chronicle_raft listening on %s:%d", host, port)));
}

static void
peer_add(uint64 id, const char *host, int port)
{
	struct Peer *peer;

	if (peer_by_id(id) != NULL || ws.npeers >= CLUSTER_MAX_MEMBERS)
		return;
	peer = &ws.peers[ws.npeers++];
	memset(peer, 0, sizeof(*peer));
	peer->member.id = id;
	strlcpy(peer->member.host, host, sizeof(peer->member.host));
	peer->member.port = port;
	backoff_init(&peer->backoff, 0, 0, (uint64) chronicle_node_id * 1000003 + id);
}

/* A removed member: no traffic either way any more. */
static void
peer_drop(uint64 id)
{
	int			i;

	for (i = 0; i < ws.npeers; i++)
	{
		if (ws.peers[i].member.id != id)
			continue;
		if (ws.peers[i].conn)
			worker_conn_free(ws.peers[i].conn);
		ws.peers[i] = ws.peers[--ws.npeers];
		return;
	}
}

static void
peer_closed(struct Peer *peer)
{
	const char *reason = conn_close_reason(peer->conn);

	ereport(LOG,
			(errmsg("chronicle_raft connection to node %llu closed: %s",
					(unsigned long long) peer->member.id, reason ? reason : "closed")));
	worker_conn_free(peer->conn);
	peer->conn = NULL;
	peer->next_dial_ms = backoff_next(&peer->backoff, now_ms());
}

static void
network_dial(void)
{
	uint64		now = now_ms();
	int			i;

	for (i = 0; i < ws.npeers; i++)
	{
		struct Peer *peer = &ws.peers[i];
		int			fd;
		char		err[256];

		if (peer->conn != NULL || peer->member.id < (uint64) chronicle_node_id ||
			now < peer->next_dial_ms)
			continue;
		if (transport_connect_start(peer->member.host, peer->member.port, &fd, err, sizeof(err)) != 0)
		{
			peer->next_dial_ms = backoff_next(&peer->backoff, now);
			continue;
		}
		peer->conn = conn_new_outbound(&ws.tcfg, fd, peer->member.id, now, err, sizeof(err));
		conn_epoch++;
		if (peer->conn == NULL)
			peer->next_dial_ms = backoff_next(&peer->backoff, now);
	}
}

static void forwarded_batch_received(const codec_forward_batch *fb);
static void read_state_received(const raft_read_state *rs);
static void forward_result_received(const codec_forward_result *fr);

/* Deliver the frames a connection has buffered. */
static void
drain_frames(peer_conn *c)
{
	codec_frame f;
	struct Peer *peer = peer_by_id(conn_peer_id(c));


	while (conn_next_frame(c, &f) == 1)
	{
		if (chronicle_debug_isolate)
			f.kind = CODEC_FRAME_NONE;	/* partitioned: drop it */
		else if (peer != NULL)
			peer->last_contact = GetCurrentTimestamp();
		switch (f.kind)
		{
			case CODEC_FRAME_RAFT:
				(void) raft_step(ws.node, &f.u.raft);
				break;
			case CODEC_FRAME_FORWARD_BATCH:
				forwarded_batch_received(&f.u.forward_batch);
				break;
			case CODEC_FRAME_FORWARD_RESULT:
				forward_result_received(&f.u.forward_result);
				break;
			default:
				break;
		}
		codec_frame_free(&f, NULL);
	}
}

/* An inbound connection finished its handshake: it becomes the peer's. */
static void
adopt_inbound(peer_conn *c)
{
	struct Peer *peer = peer_by_id(conn_peer_id(c));

	if (peer == NULL)
	{
		worker_conn_free(c);
		return;
	}
	if (peer->conn != NULL)
		worker_conn_free(peer->conn);	/* the peer restarted: keep the new one */
	peer->conn = c;
	backoff_reset(&peer->backoff);
}

/*
 * Wait for the latch, the listener and every connection (PG15 cannot
 * remove events from a set, so it is built anew each time), then serve
 * what is ready.
 */
static void
network_wait_and_serve(long timeout_ms)
{
	WaitEventSet *set;
	WaitEvent	events[80];
	WaitSlot	want[lengthof(wait_slots)];
	int			nwant = 0;
	int			nevents;
	int			i;
	uint64		now;

	if (ws.listen_fd >= 0)
		want_socket(want, &nwant, ws.listen_fd, (void *) -1, WL_SOCKET_READABLE);
	for (i = 0; i < ws.npeers && nwant < (int) lengthof(want); i++)
	{
		peer_conn  *c = ws.peers[i].conn;
		uint32		mask = 0;

		if (c == NULL || conn_fd(c) < 0)
			continue;
		if (conn_wants_read(c))
			mask |= WL_SOCKET_READABLE;
		if (conn_wants_write(c))
			mask |= WL_SOCKET_WRITEABLE;
		if (mask)
			want_socket(want, &nwant, conn_fd(c), c, mask);
	}
	for (i = 0; i < ws.ninbound && nwant < (int) lengthof(want); i++)
	{
		peer_conn  *c = ws.inbound[i];
		uint32		mask = WL_SOCKET_READABLE;

		if (conn_fd(c) < 0)
			continue;
		if (conn_wants_write(c))
			mask |= WL_SOCKET_WRITEABLE;
		want_socket(want, &nwant, conn_fd(c), c, mask);
	}
	set = wait_set_update(want, nwant);

	nevents = WaitEventSetWait(set, timeout_ms, events, lengthof(events), PG_WAIT_EXTENSION);
	for (i = 0; i < nevents; i++)
	{
		WaitEvent  *ev = &events[i];

		if (ev->events & WL_LATCH_SET)
			ResetLatch(MyLatch);
		if (ev->user_data == (void *) -1)
		{
			int			fd;
			char		err[256];

			/* at the cap, the oldest unauthenticated connection makes room */
			if (ws.ninbound == (int) lengthof(ws.inbound))
			{
				worker_conn_free(ws.inbound[0]);
				ws.inbound[0] = ws.inbound[--ws.ninbound];
			}
			while (ws.ninbound < (int) lengthof(ws.inbound) &&
				   transport_accept(ws.listen_fd, &fd, err, sizeof(err)) == 1)
			{
				peer_conn  *c = conn_new_inbound(&ws.tcfg, fd, now_ms(), err, sizeof(err));

				conn_epoch++;

				if (c != NULL)
					ws.inbound[ws.ninbound++] = c;
			}
			continue;
		}
		if (ev->user_data != NULL)
		{
			peer_conn  *c = (peer_conn *) ev->user_data;

			if (ev->events & WL_SOCKET_READABLE)
				conn_on_readable(c);
			if (ev->events & WL_SOCKET_WRITEABLE)
				conn_on_writable(c);
		}
	}
	/* handshakes of accepted connections */
	now = now_ms();
	for (i = 0; i < ws.ninbound; i++)
	{
		peer_conn  *c = ws.inbound[i];

		conn_tick(c, now);
		if (conn_get_state(c) == CONN_ESTABLISHED)
		{
			ws.inbound[i--] = ws.inbound[--ws.ninbound];
			adopt_inbound(c);
		}
		else if (conn_get_state(c) == CONN_CLOSED)
		{
			ereport(LOG,
					(errmsg("chronicle_raft refused a connection from %s: %s",
							conn_peer_addr(c), conn_close_reason(c))));
			ws.inbound[i--] = ws.inbound[--ws.ninbound];
			worker_conn_free(c);
		}
	}
	for (i = 0; i < ws.npeers; i++)
	{
		struct Peer *peer = &ws.peers[i];

		if (peer->conn == NULL)
			continue;
		conn_tick(peer->conn, now);
		if (conn_get_state(peer->conn) == CONN_ESTABLISHED)
		{
			backoff_reset(&peer->backoff);
			drain_frames(peer->conn);
			conn_on_writable(peer->conn);
		}
		if (conn_get_state(peer->conn) == CONN_CLOSED)
			peer_closed(peer);
	}
	network_dial();
}

/* -------------------------------------------------------------- proposing */

/* A proposal's batches, to report outcomes to their origins. */
static void
remember_proposal(raft_index index, raft_term term, int n, const int *slots,
				  const uint64 *batch_ids, const uint64 *origins)
{
	struct PendingProposal *pp;

	if (ws.npending == ws.maxpending)
	{
		ws.maxpending = Max(16, ws.maxpending * 2);
		ws.pending = ws.pending ?
			repalloc(ws.pending, sizeof(struct PendingProposal) * ws.maxpending) :
			MemoryContextAlloc(TopMemoryContext, sizeof(struct PendingProposal) * ws.maxpending);
	}
	pp = &ws.pending[ws.npending++];
	pp->index = index;
	pp->term = term;
	pp->nbatches = n;
	pp->slots = MemoryContextAlloc(TopMemoryContext, sizeof(int) * Max(n, 1));
	pp->batch_ids = MemoryContextAlloc(TopMemoryContext, sizeof(uint64) * Max(n, 1));
	pp->origins = MemoryContextAlloc(TopMemoryContext, sizeof(uint64) * Max(n, 1));
	memcpy(pp->slots, slots, sizeof(int) * n);
	memcpy(pp->batch_ids, batch_ids, sizeof(uint64) * n);
	memcpy(pp->origins, origins, sizeof(uint64) * n);
}

/* Drop pending proposal i (order does not matter). */
static void
pending_remove(int i)
{
	struct PendingProposal *pp = &ws.pending[i];

	pfree(pp->slots);
	pfree(pp->batch_ids);
	pfree(pp->origins);
	ws.pending[i] = ws.pending[--ws.npending];
}

/* A proposal ended without being applied here: tell its batches' origins. */
static void
report_outcome(raft_index index, raft_term term, BatchState state, const char *msg)
{
	int			i;

	for (i = 0; i < ws.npending; i++)
	{
		struct PendingProposal *pp = &ws.pending[i];
		int			b;

		if (pp->index != index || pp->term != term)
			continue;
		for (b = 0; b < pp->nbatches; b++)
		{
			if (pp->origins[b] == (uint64) chronicle_node_id)
				queue_set_state(pp->slots[b], pp->batch_ids[b], state, msg);
			else if (state == BATCH_FAILED || state == BATCH_UNKNOWN)
				send_forward_result(pp->origins[b], pp->batch_ids[b],
									state == BATCH_FAILED ? CODEC_FORWARD_FAILED : CODEC_FORWARD_UNKNOWN);
		}
		pending_remove(i);
		return;
	}
}

/* Forget proposals at or below the applied index (their batches are done). */
static void
forget_applied_proposals(raft_index applied)
{
	int			i;

	for (i = 0; i < ws.npending; i++)
		if (ws.pending[i].index <= applied)
			pending_remove(i--);
}

/*
 * A follower's batch arrived: its payload is int32 slot + the batch bytes.
 * The leader adds it to its next entry; anyone else answers "not leader".
 * So does a leader of another term than the sender's: the sender declares
 * the batch failed once it applies an entry of a later term than the one
 * it sent in (forwarded_fail_older), which is only sound if the batch can
 * only ever be proposed in that term.
 */
static void
forwarded_batch_received(const codec_forward_batch *fb)
{
	raft_status st;
	int32		slot;
	uint32		len;

	raft_get_status(ws.node, &st);
	if (st.role != RAFT_LEADER || st.term != fb->term || fb->len < sizeof(int32))
	{
		send_forward_result(fb->origin, fb->batch_id, CODEC_FORWARD_NOT_LEADER);
		return;
	}
	memcpy(&slot, fb->payload, sizeof(int32));
	len = (uint32) (fb->len - sizeof(int32));
	appendBinaryStringInfo(&ws.forwarded, (const char *) &fb->origin, 8);
	appendBinaryStringInfo(&ws.forwarded, (const char *) &slot, 4);
	appendBinaryStringInfo(&ws.forwarded, (const char *) &fb->batch_id, 8);
	appendBinaryStringInfo(&ws.forwarded, (const char *) &len, 4);
	appendBinaryStringInfo(&ws.forwarded, (const char *) fb->payload + sizeof(int32), len);
	ws.nforwarded++;
	SetLatch(MyLatch);
}

/* The leader could not take or commit a batch this node forwarded. */
static void
forward_result_received(const codec_forward_result *fr)
{
	if (fr->origin != (uint64) chronicle_node_id)
		return;
	forwarded_done(fr->batch_id);
	/* slot is not carried back: find the waiting slot by batch id */
	queue_set_state_by_batch(fr->batch_id,
							 fr->outcome == CODEC_FORWARD_UNKNOWN ? BATCH_UNKNOWN : BATCH_FAILED,
							 fr->outcome == CODEC_FORWARD_NOT_LEADER ?
							 "the node it was sent to is no longer the leader" :
							 "the leader could not commit it");
}

/* Follower: send queued batches to the leader. */
static void
forward_queued(uint64 leader)
{
	QueuedBatch *batches;
	struct Peer *peer = peer_by_id(leader);
	raft_status st;
	int			n;
	int			i;

	if (peer == NULL || peer->conn == NULL || conn_get_state(peer->conn) != CONN_ESTABLISHED ||
		chronicle_debug_isolate)
		return;					/* keep them queued until a leader is reachable */
	raft_get_status(ws.node, &st);
	n = queue_drain(&batches, (Size) chronicle_buffer_size * 4, NULL, NULL);
	for (i = 0; i < n; i++)
	{
		codec_frame f;
		StringInfoData buf;

		initStringInfo(&buf);
		appendBinaryStringInfo(&buf, (char *) &batches[i].slot, sizeof(int32));
		appendBinaryStringInfo(&buf, batches[i].data, batches[i].len);
		memset(&f, 0, sizeof(f));
		f.kind = CODEC_FRAME_FORWARD_BATCH;
		f.u.forward_batch.batch_id = batches[i].batch_id;
		f.u.forward_batch.origin = (raft_node_id) chronicle_node_id;
		f.u.forward_batch.payload = (const uint8_t *) buf.data;
		f.u.forward_batch.len = buf.len;
		f.u.forward_batch.term = st.term;
		if (conn_queue_codec_frame(peer->conn, &f) != CONN_OK)
			queue_set_state(batches[i].slot, batches[i].batch_id, BATCH_FAILED,
							"could not send it to the leader");
		else if (ws.nfwd < (int) lengthof(ws.fwd))
		{
			ws.fwd[ws.nfwd].slot = batches[i].slot;
			ws.fwd[ws.nfwd].batch_id = batches[i].batch_id;
			ws.fwd[ws.nfwd].term = st.term;
			ws.nfwd++;
		}
	}
	/* out now, not after one more wait for a writable socket */
	if (n > 0)
		conn_on_writable(peer->conn);
}

/* A forwarded batch was applied here (or its fate is known otherwise). */
static void
forwarded_done(uint64 batch_id)
{
	int			i;

	for (i = 0; i < ws.nfwd; i++)
		if (ws.fwd[i].batch_id == batch_id)
		{
			ws.fwd[i] = ws.fwd[--ws.nfwd];
			return;
		}
}

/*
 * An entry of a later term than a forwarded batch was applied and the batch
 * was not: the leader it was sent to lost leadership, and its entry (if it
 * made one) is either committed before this one or never.  So it failed,
 * provably, and its backend need not wait for a timeout.
 */
static void
forwarded_fail_older(raft_term term)
{
	int			i;

	for (i = 0; i < ws.nfwd; i++)
	{
		if (ws.fwd[i].term >= term)
			continue;
		queue_set_state(ws.fwd[i].slot, ws.fwd[i].batch_id, BATCH_FAILED,
						"the leader changed before the events were committed");
		ws.fwd[i--] = ws.fwd[--ws.nfwd];
	}
}

/* No longer leader: batches forwarded to us will not be proposed by us. */
static void
refuse_forwarded(void)
{
	const char *p = ws.forwarded.data;
	const char *end = p + ws.forwarded.len;

	while (end - p >= 24)
	{
		uint64		origin;
		uint64		batch_id;
		uint32		len;

		memcpy(&origin, p, 8);
		memcpy(&batch_id, p + 12, 8);
		memcpy(&len, p + 20, 4);
		send_forward_result(origin, batch_id, CODEC_FORWARD_NOT_LEADER);
		p += 24 + len;
	}
	resetStringInfo(&ws.forwarded);
	ws.nforwarded = 0;
}

/*
 * A Raft entry being built for raft_propose_take(): malloc'd (the engine's
 * allocator), sized once for everything that can go in.
 */
typedef struct EntryBuilder
{
	char	   *data;
	Size		len;
	Size		cap;
} EntryBuilder;

/* queue_drain() callback: a local batch's header in the entry, then its events */
static char *
place_in_entry(void *arg, int slot, uint64 batch_id, Size len)
{
	EntryBuilder *b = arg;
	uint64		self = (uint64) chronicle_node_id;
	int32		slot32 = (int32) slot;
	uint32		len32 = (uint32) len;
	char	   *p;

	if (b->len + 24 + len > b->cap)
		return NULL;
	p = b->data + b->len;
	memcpy(p, &self, 8);
	memcpy(p + 8, &slot32, 4);
	memcpy(p + 12, &batch_id, 8);
	memcpy(p + 20, &len32, 4);
	b->len += 24 + len;
	return p + 24;
}

/*
 * Leader: propose queued and forwarded batches as one entry.  Local batches
 * are drained straight into the entry, which the engine then takes over: no
 * batch is copied on its way from the shared queue into the Raft log.
 */
static void
propose_queued(void)
{
	QueuedBatch *batches = NULL;
	int			n = 0;
	int			i;
	EntryBuilder b;
	uint32		magic = ENTRY_MAGIC;
	uint32		kind = ENTRY_BATCHES;
	uint32		count;
	raft_term	term;
	raft_index	index;
	int			rc;
	raft_status st;
	int		   *slots;
	uint64	   *ids;
	uint64	   *origins;
	int			nall;
	int			nfwd = 0;
	Size		fwd_bytes = 0;
	Size		waiting;

	raft_get_status(ws.node, &st);
	if (st.role != RAFT_LEADER)
	{
		if (ws.nforwarded > 0)
			refuse_forwarded();
		if (st.leader != 0 && ws.npeers > 0)
			forward_queued(st.leader);
		return;
	}

	waiting = queue_bytes_waiting();
	if (waiting == 0 && ws.nforwarded == 0)
		return;

	/*
	 * Room for what waits in the queue (a batch's 16-byte ring header
	 * becomes a 24-byte one here) and for the forwarded batches, which are
	 * already in the entry's batch layout.
	 */
	b.cap = 12 + waiting + waiting / 2 + 24 + Min((Size) ws.forwarded.len, ENTRY_MAX_BYTES);
	b.data = malloc(b.cap);
	if (b.data == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory for a Raft entry of %zu bytes", b.cap)));
	b.len = 12;
	if (waiting > 0)
		n = queue_drain(&batches, (Size) chronicle_buffer_size * 4, place_in_entry, &b);

	/*
	 * Forwarded batches join the entry while it stays within
	 * ENTRY_MAX_BYTES (a frame must carry it); the others wait for the next.
	 */
	while (nfwd < ws.nforwarded)
	{
		uint32		len;

		memcpy(&len, ws.forwarded.data + fwd_bytes + 20, 4);
		if ((n > 0 || nfwd > 0) && b.len + fwd_bytes + 24 + len > ENTRY_MAX_BYTES)
			break;
		if (b.len + fwd_bytes + 24 + len > b.cap)
			break;
		fwd_bytes += 24 + len;
		nfwd++;
	}
	if (n == 0 && nfwd == 0)
	{
		free(b.data);
		return;
	}

	count = (uint32) (n + nfwd);
	memcpy(b.data, &magic, 4);
	memcpy(b.data + 4, &kind, 4);
	memcpy(b.data + 8, &count, 4);
	nall = (int) count;
	slots = palloc(sizeof(int) * nall);
	ids = palloc(sizeof(uint64) * nall);
	origins = palloc(sizeof(uint64) * nall);
	for (i = 0; i < n; i++)
	{
		slots[i] = batches[i].slot;
		ids[i] = batches[i].batch_id;
		origins[i] = (uint64) chronicle_node_id;
	}
	/* forwarded batches are already in the entry's batch layout */
	{
		const char *p = ws.forwarded.data;

		for (i = n; i < nall; i++)
		{
			uint32		len;

			memcpy(&origins[i], p, 8);
			memcpy(&slots[i], p + 8, 4);
			memcpy(&ids[i], p + 12, 8);
			memcpy(&len, p + 20, 4);
			p += 24 + len;
		}
		memcpy(b.data + b.len, ws.forwarded.data, fwd_bytes);
		b.len += fwd_bytes;
		memmove(ws.forwarded.data, ws.forwarded.data + fwd_bytes, ws.forwarded.len - fwd_bytes);
		ws.forwarded.len -= fwd_bytes;
		ws.forwarded.data[ws.forwarded.len] = '\0';
		ws.nforwarded -= nfwd;
	}

	/* the engine owns b.data from here on, whatever the result */
	rc = raft_propose_take(ws.node, b.data, b.len, &term, &index);
	if (rc != RAFT_OK)
	{
		for (i = 0; i < nall; i++)
		{
			if (origins[i] == (uint64) chronicle_node_id)
				queue_set_state(slots[i], ids[i], BATCH_FAILED,
								rc == RAFT_ERR_BUSY ? "the leader's backlog is full" :
								"this node lost leadership before proposing");
			else
				send_forward_result(origins[i], ids[i], CODEC_FORWARD_FAILED);
		}
		return;
	}
	remember_proposal(index, term, nall, slots, ids, origins);
}

/* --------------------------------------------------------------- ready */

static void
log_fail(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_IO_ERROR),
			 errmsg("chronicle_raft log: %s failed: %s", what, raftlog_errmsg(ws.log))));
}

/*
 * An entry is committed: this node's event batches in it are durable on a
 * quorum, which is all commit_wait = committed waits for (applying follows
 * in log order).  DDL and membership batches, and the final parts of large
 * transactions, wait for their apply, whose verdict they report.
 *
 * So do event batches behind DDL not applied here yet, in an earlier entry
 * or earlier in this one: that DDL may drop or rename their stream, and
 * then their apply refuses them on every node, so "committed" would be a
 * lie.  Behind applied DDL it cannot: the session still holds its lock on
 * the stream, which a DROP or RENAME applied here would have waited for.
 */
static void
mark_committed(const raft_entry *e)
{
	const char *p = (const char *) e->data;
	const char *end = p + e->len;
	uint32		magic;
	uint32		kind;
	uint32		count;
	uint32		b;
	bool		behind_ddl = ws.ddl_committed > ws.applied;

	if (e->type != RAFT_ENTRY_NORMAL || !take(&p, end, &magic, 4) || magic != ENTRY_MAGIC ||
		!take(&p, end, &kind, 4) || kind != ENTRY_BATCHES || !take(&p, end, &count, 4))
		return;
	for (b = 0; b < count; b++)
	{
		EntryBatch	batch;
		uint16		first;

		if (!take_batch(&p, end, &batch))
			return;				/* apply_entry reports the damage */
		if (batch.len < sizeof(first))
			continue;
		memcpy(&first, batch.data, sizeof(first));
		if (first == 0xFFFF)
		{
			ws.ddl_committed = Max(ws.ddl_committed, e->index);
			behind_ddl = true;
			continue;
		}
		if (batch.origin != (uint64) chronicle_node_id || behind_ddl)
			continue;
		if (batch_is_part(&batch))
		{
			PartHeader	hdr;

			/* the final part's verdict comes from its apply (parts present?) */
			memcpy(&hdr, batch.data, sizeof(hdr));
			if (hdr.kind == PART_FINAL)
				continue;
		}
		queue_set_state(batch.slot, batch.batch_id, BATCH_COMMITTED, NULL);
	}
}

/*
 * Apply one committed entry and settle what waited for it.  False when the
 * apply stopped at it (stop_apply): later entries then wait in the log.
 */
static bool
apply_committed(const raft_entry *e)
{
	if (!apply_entry(e))
		return false;
	if (ws.stopped_at != 0)
	{
		if (ws.stop_logged_at >= ws.stopped_since)
			ereport(LOG,
					(errmsg("applying resumed: Raft entry %llu is applied on this node",
							(unsigned long long) e->index)));
		ws.stopped_at = 0;
		ws.stop_logged_at = 0;
		ws.stop_reason[0] = '\0';
	}
	ws.applied = e->index;
	if (ws.nfwd > 0)
		forwarded_fail_older(e->term);
	forget_applied_proposals(ws.applied);
	return true;
}

/*
 * Apply committed entries that waited in the log (while a snapshot was
 * being written), for at most 50 ms per call so the loop stays responsive.
 */
static void
apply_from_log(void)
{
	TimestampTz deadline;

	if (ws.writer != NULL || ws.applied >= ws.apply_target)
		return;
	if (ws.stopped_at != 0 && GetCurrentTimestamp() < ws.stop_retry_at)
		return;
	deadline = GetCurrentTimestamp() + 50 * 1000;
	while (ws.applied < ws.apply_target && GetCurrentTimestamp() < deadline)
	{
		raftlog_entries batch;
		raft_index	hi = Min(ws.apply_target, ws.applied + 16);
		size_t		i;
		bool		stopped = false;

		memset(&batch, 0, sizeof(batch));
		if (raftlog_read(ws.log, ws.applied + 1, hi, &batch) != RAFTLOG_OK)
			log_fail("reading committed entries");
		for (i = 0; i < batch.count && !stopped; i++)
			stopped = !apply_committed(&batch.entries[i]);
		raftlog_entries_free(&batch);
		if (stopped)
			break;
	}
}

/*
 * Replace this node's state by the snapshot the leader sent (staged and
 * durable by now).  The log records the snapshot first, then the streams
 * are replaced; a crash in between is finished at start (see
 * worker_start_engine).
 */
static void
install_received_snapshot(const raft_snapshot_meta *meta)
{
	SnapshotInstallResult res;
	TimestampTz start = GetCurrentTimestamp();
	int			i;

	if (ws.writer != NULL)
	{
		snapshot_write_abort(ws.writer);
		ws.writer = NULL;
	}
	if (!snapshot_exists(meta->index))
		elog(ERROR, "the snapshot at index %llu to install was not received",
			 (unsigned long long) meta->index);
	/*
	 * This node's batches may or may not be inside the snapshot.  Say so
	 * first: their backends then end their transactions and release the
	 * stream locks the install needs.
	 */
	for (i = 0; i < ws.nfwd; i++)
		queue_set_state(ws.fwd[i].slot, ws.fwd[i].batch_id, BATCH_UNKNOWN,
						"a snapshot from the leader replaced this node's state before the events were seen applied");
	ws.nfwd = 0;
	if (raftlog_install_snapshot(ws.log, meta) != RAFTLOG_OK)
		log_fail("recording a received snapshot");
	snapshot_install(ws.cluster_id, meta->index, &res);
	ws.applied = ws.apply_target = meta->index;
	ws.compacted = meta->index;
	ws.log_bytes = 0;
	/* installed and flushed: the file is not needed any more */
	ws.snapshot_ready = 0;
	snapshot_remove_others(0, 0);
	load_membership();
	forget_applied_proposals(ws.applied);
	ereport(LOG,
			(errmsg("chronicle_raft: installed snapshot at index %llu: %d streams, %llu bytes in %ld ms",
					(unsigned long long) meta->index, res.nstreams,
					(unsigned long long) res.bytes,
					(long) ((GetCurrentTimestamp() - start) / 1000))));
}

/*
 * The engine asks for snapshot bytes to send.  Served from our complete
 * snapshot file; if we have none at that index, one is written at the
 * applied index (drive_snapshot_writer) and the engine retries with it.
 */
static int
engine_snapshot_read(void *ctx, raft_index index, uint64_t offset, uint8_t *buf,
					 size_t cap, size_t *len, bool *done)
{
	raft_status st;

	/* a transfer in progress goes on from its file, even an older one */
	if (index != 0 && snapshot_read(index, offset, (char *) buf, cap, len, done))
		return RAFT_OK;
	/* a stale index: the engine switches to its current snapshot itself */
	raft_get_status(ws.node, &st);
	if (st.snapshot_index != ws.snapshot_ready)
		ws.snapshot_wanted = true;
	return RAFT_ERR_BUSY;
}

/*
 * The engine keeps the payloads of applied entries in memory only up to
 * ENGINE_CACHE_BYTES (the newest ones) and reads older ones back from the
 * log when a follower that lags behind needs them.  Otherwise it would hold
 * the whole log (up to max_log_size) in memory, and every new entry would
 * take fresh pages from the kernel instead of the memory of a freed one.
 */
static int
engine_entry_read(void *ctx, raft_index index, raft_term term, uint8_t *buf, size_t len)
{
	if (raftlog_read_payload(ws.log, index, term, buf, len) != RAFTLOG_OK)
	{
		ereport(WARNING,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("chronicle_raft log: could not read back entry %llu: %s",
						(unsigned long long) index, raftlog_errmsg(ws.log))));
		return RAFT_ERR_INVALID;
	}
	return RAFT_OK;
}

/*
 * A snapshot file holds the streams and the replicated catalog, not the
 * kept parts of open large transactions; so one is written only while none
 * is open (between two applies, the state is exactly the state at the
 * applied index).  Open transactions end within seconds as a rule; after a
 * minute of waiting the leader discards the ones still open (their sessions
 * then fail at their final part, everywhere alike), since the follower
 * that needs the snapshot cannot catch up otherwise.
 */
static bool
parts_allow_snapshot(bool leader)
{
	static TimestampTz waiting_since = 0;
	static TimestampTz checked_at = 0;
	TimestampTz now = GetCurrentTimestamp();
	PartHeader *open = NULL;
	uint64		nopen = 0;
	uint64		i;

	if (waiting_since != 0 && now - checked_at < 1000 * 1000)
		return false;
	checked_at = now;
	worker_xact_start();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	if (SPI_execute("SELECT DISTINCT origin, txn FROM chronicle.open_parts", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read chronicle.open_parts");
	nopen = SPI_processed;
	if (nopen > 0)
	{
		open = MemoryContextAllocZero(ws.cxt, sizeof(PartHeader) * nopen);
		for (i = 0; i < nopen; i++)
		{
			bool		isnull;

			open[i].marker = BATCH_PART_MARKER;
			open[i].kind = PART_ABORT;
			open[i].origin = (uint64) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
			open[i].txn = (uint64) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		}
	}
	SPI_finish();
	PopActiveSnapshot();
	worker_xact_commit();

	if (nopen == 0)
	{
		waiting_since = 0;
		return true;
	}
	if (waiting_since == 0)
		waiting_since = now;
	else if (leader && now - waiting_since >= (TimestampTz) 60 * 1000 * 1000)
	{
		ereport(LOG,
				(errmsg("chronicle_raft: discarding %llu large transactions still open after a minute, so that a snapshot can be written",
						(unsigned long long) nopen)));
		for (i = 0; i < nopen; i++)
			(void) queue_submit_detached((const char *) &open[i], sizeof(PartHeader));
		waiting_since = now;
	}
	return false;
}

/*
 * Write a wanted snapshot a slice per loop iteration.  Applying waits
 * meanwhile (entries stay in the log), so the file is the state at one
 * index while heartbeats and replication go on.
 */
static void
drive_snapshot_writer(void)
{
	if (ws.writer == NULL)
	{
		raft_status st;
		raft_term	term;

		if (!ws.snapshot_wanted)
			return;
		raft_get_status(ws.node, &st);
		/* our file is the engine's snapshot: nothing newer is needed */
		if (ws.applied == 0 || ws.applied > st.stable ||
			st.snapshot_index == ws.snapshot_ready ||
			raftlog_term(ws.log, ws.applied, &term) != RAFTLOG_OK)
		{
			ws.snapshot_wanted = false;
			return;
		}
		if (!parts_allow_snapshot(st.role == RAFT_LEADER))
			return;				/* still wanted */
		ws.snapshot_wanted = false;
		ws.writer = snapshot_write_begin(ws.cluster_id, ws.applied, term);
	}
	if (snapshot_write_step(ws.writer, 20))
	{
		raft_index	index = snapshot_writer_index(ws.writer);
		int			nstreams;
		uint64		bytes;
		long		ms;
		int			rc;

		snapshot_writer_report(ws.writer, &nstreams, &bytes, &ms);
		snapshot_write_abort(ws.writer);	/* frees it; the file stays */
		ws.writer = NULL;
		/* the previous file may still be on its way to a follower */
		snapshot_remove_others(index, ws.snapshot_ready);
		ws.snapshot_ready = index;
		rc = raft_snapshot_taken(ws.node, index);
		ereport(LOG,
				(errmsg("chronicle_raft: snapshot at index %llu written: %d streams, %llu bytes in %ld ms%s",
						(unsigned long long) index, nstreams, (unsigned long long) bytes, ms,
						rc == RAFT_OK ? "" : " (not usable: the engine refused it)")));
	}
}

/* A ready's committed entries: tell their waiters, then apply them. */
static void
apply_ready_committed(const raft_ready *rd)
{
	size_t		i;

	for (i = 0; i < rd->num_committed; i++)
		mark_committed(&rd->committed[i]);
	for (i = 0; i < rd->num_committed; i++)
	{
		const raft_entry *e = &rd->committed[i];

		/* in log order: none may overtake entries waiting in the log */
		if (ws.writer == NULL && ws.apply_target <= ws.applied)
			(void) apply_committed(e);
		ws.apply_target = Max(ws.apply_target, e->index);
	}
}

static void
process_ready(void)
{
	while (raft_has_ready(ws.node))
	{
		raft_ready rd;
		size_t		i;
		raft_term	pterm;
		raft_index	pindex;
		bool		must_persist;
		Size		entry_bytes;
		Size		committed_bytes;
		bool		overlap;
		bool		apply_first;

		raft_ready_get(ws.node, &rd);
		for (i = 0; i < rd.num_snapshot_chunks; i++)
		{
			const raft_snapshot_chunk *c = &rd.snapshot_chunks[i];

			snapshot_stage_chunk(c->meta.index, c->offset, (const char *) c->data,
								 c->len, c->done);
		}
		if (rd.snapshot != NULL)
			install_received_snapshot(rd.snapshot);
		/*
		 * Out before our own fsync, so followers write in parallel.  Over
		 * TCP a large entry costs its sender milliseconds per follower (the
		 * kernel copies it), so then only the followers a quorum needs
		 * (with this node) get theirs first; this node writes its copy and
		 * starts the writeback, which proceeds while the others are sent,
		 * and waits for it last.  Small entries go to every follower at
		 * once: the first of them to answer commits.
		 */
		entry_bytes = 0;
		for (i = 0; i < rd.num_entries; i++)
			entry_bytes += rd.entries[i].len;
		overlap = entry_bytes >= OVERLAP_SEND_BYTES;

		/*
		 * Committed entries are durable here already, so they may be applied
		 * before this ready's own entries are: when they are small, while
		 * the disk writes those (a follower's APPEND usually carries the
		 * commit of the previous entry with the next one).  Their sessions
		 * then need not wait for that write, and its acknowledgement waits
		 * for nothing, the apply taking less time than the write.  A large
		 * apply would hold the acknowledgement back: it comes after.
		 */
		committed_bytes = 0;
		for (i = 0; i < rd.num_committed; i++)
			committed_bytes += rd.committed[i].len;
		apply_first = rd.num_committed > 0 && rd.num_entries > 0 &&
			committed_bytes < APPLY_DURING_WRITE_BYTES;

		send_messages(rd.messages, rd.num_messages);
		flush_outputs(overlap ? (ws.npeers + 1) / 2 : ws.npeers);
		if (rd.num_entries > 0)
		{
			if (rd.entries[0].index <= raftlog_last_index(ws.log) &&
				raftlog_truncate_from(ws.log, rd.entries[0].index) != RAFTLOG_OK)
				log_fail("truncate");
			if (raftlog_append(ws.log, rd.entries, rd.num_entries) != RAFTLOG_OK)
				log_fail("append");
			for (i = 0; i < rd.num_entries; i++)
				ws.log_bytes += rd.entries[i].len + 32;
			if ((overlap || apply_first) && rd.must_persist &&
				raftlog_start_sync(ws.log) != RAFTLOG_OK)
				log_fail("write");
		}
		if (overlap)
			flush_outputs(ws.npeers);
		if (apply_first)
			apply_ready_committed(&rd);
		if (rd.must_persist && raftlog_sync(ws.log) != RAFTLOG_OK)
			log_fail("fsync");
		if (rd.hard_state_changed)
		{
			/*
			 * Term and vote must be durable before any answer goes out; the
			 * commit index need not be (after a crash it is found again, and
			 * the stored one never goes backwards), so a change of commit
			 * alone is saved at most every 100 ms instead of an fsync per
			 * entry.
			 */
			if (rd.hard_state.term != ws.saved_hs.term || rd.hard_state.vote != ws.saved_hs.vote)
			{
				if (raftlog_save_hard_state(ws.log, &rd.hard_state) != RAFTLOG_OK)
					log_fail("saving the hard state");
				ws.saved_hs = rd.hard_state;
				ws.hs_pending = false;
				ws.hs_saved_at = GetCurrentTimestamp();
			}
			else
			{
				ws.pending_hs = rd.hard_state;
				ws.hs_pending = true;
			}
		}
		send_messages(rd.persist_messages, rd.num_persist_messages);
		flush_outputs(ws.npeers);

		if (!apply_first)
			apply_ready_committed(&rd);
		for (i = 0; i < rd.num_read_states; i++)
			read_state_received(&rd.read_states[i]);
		for (i = 0; i < rd.num_outcomes; i++)
		{
			const raft_proposal_outcome *o = &rd.outcomes[i];

			if (o->outcome == RAFT_OUTCOME_LOST)
				report_outcome(o->index, o->term, BATCH_FAILED,
							   "a new leader replaced the entry before it was committed");
			else if (o->outcome == RAFT_OUTCOME_UNKNOWN)
				report_outcome(o->index, o->term, BATCH_UNKNOWN,
							   "the entry was covered by a snapshot");
		}

		must_persist = rd.must_persist;
		pterm = rd.persist_term;
		pindex = rd.persist_index;
		raft_advance(ws.node, &rd);
		if (must_persist)
			raft_persisted(ws.node, pterm, pindex);
	}
}

/*
 * Leader: when the log outgrows half of max_log_size, propose discarding
 * applied entries.  Every node compacts when it applies that entry.  Below
 * the full max_log_size the entries that connected members still lack are
 * kept (they catch up from the log, which is cheaper); members that are
 * away do not hold the log back, and beyond max_log_size nobody does: a
 * member that needs a discarded entry gets a snapshot instead.
 */
static void
maybe_propose_compaction(void)
{
	raft_status st;
	raft_index	upto;
	int			i;
	StringInfoData buf;
	uint32		magic = ENTRY_MAGIC;
	uint32		kind = ENTRY_COMPACT;
	raft_term	term;
	raft_index	index;

	raft_get_status(ws.node, &st);
	if (st.role != RAFT_LEADER)
	{
		ws.compact_proposed = ws.compacted;	/* a lost proposal is not pending */
		return;
	}
	if (ws.log_bytes < (uint64) chronicle_max_log_size * 1024 / 2 ||
		ws.compact_proposed > ws.compacted)
		return;
	upto = Min(ws.applied, st.stable);
	if (ws.log_bytes < (uint64) chronicle_max_log_size * 1024)
	{
		for (i = 0; i < ws.npeers; i++)
		{
			struct Peer *peer = &ws.peers[i];
			raft_index	match;

			if (peer->conn == NULL || conn_get_state(peer->conn) != CONN_ESTABLISHED)
				continue;
			if (raft_get_match(ws.node, peer->member.id, &match))
				upto = Min(upto, match);
		}
	}
	if (upto <= ws.compacted)
		return;
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, (char *) &magic, 4);
	appendBinaryStringInfo(&buf, (char *) &kind, 4);
	appendBinaryStringInfo(&buf, (char *) &upto, 8);
	if (raft_propose(ws.node, buf.data, buf.len, &term, &index) == RAFT_OK)
		ws.compact_proposed = upto;
}

/* Discard the log up to ws.compact_to: engine, then durable log. */
static void
carry_out_compaction(void)
{
	raft_index	upto = ws.compact_to;
	raft_status st;
	raft_snapshot_meta meta;
	int			rc;

	ws.compact_to = 0;
	if (upto <= ws.compacted)
		return;
	raft_get_status(ws.node, &st);
	if (upto > ws.applied || upto > st.stable)
		return;
	memset(&meta, 0, sizeof(meta));
	meta.index = upto;
	if (raftlog_term(ws.log, upto, &meta.term) != RAFTLOG_OK)
		return;
	meta.conf = st.conf;

	/*
	 * Entries are applied with asynchronous commit (the log can replay
	 * them); before the log forgets them, what they did must be on disk.
	 * The compaction entry's own apply committed last, so WAL up to its
	 * commit record covers every earlier apply.  (Not the insert position:
	 * at a page boundary it points past the page header, beyond any
	 * record, and XLogFlush() refuses it.)  Kept parts of large
	 * transactions that the discarded entries carry are copied out first.
	 */
	parts_materialize(upto);
	XLogFlush(XactLastCommitEnd);
	rc = raft_snapshot_taken(ws.node, upto);
	if (rc == RAFT_OK)
		rc = raft_compact(ws.node, upto);
	if (rc != RAFT_OK)
	{
		ereport(LOG, (errmsg("chronicle_raft: compaction to %llu skipped (engine error %d)",
							 (unsigned long long) upto, rc)));
		return;
	}
	if (raftlog_compact(ws.log, &meta) != RAFTLOG_OK)
		log_fail("compaction");
	ws.compacted_files = true;
	ws.last_file_removal = 0;	/* the first files go at once */
	ws.compacted = upto;
	ws.log_bytes = 0;
	ereport(DEBUG1, (errmsg("chronicle_raft: log compacted up to %llu", (unsigned long long) upto)));
}

/*
 * Remove the files of compacted segments COMPACTED_FILE_BYTES at a time, at
 * most every COMPACTED_FILE_INTERVAL_MS: the kernel takes milliseconds to
 * free a 16 MB file's cached pages, and removing the eight or so of a
 * compaction at once stalled this process, and every commit waiting on it,
 * for about 60 ms.  That pace keeps up with a log growing at 300 MB/s.
 */
static void
remove_compacted_files(TimestampTz now)
{
	unsigned	remaining;
	unsigned	files = (unsigned) Max(1, COMPACTED_FILE_BYTES / Max(ws.segment_size, 1));

	if (!ws.compacted_files ||
		now - ws.last_file_removal < (TimestampTz) COMPACTED_FILE_INTERVAL_MS * 1000)
		return;
	ws.last_file_removal = now;
	if (raftlog_remove_compacted(ws.log, files, &remaining) != RAFTLOG_OK)
		log_fail("removing a compacted segment");
	ws.compacted_files = remaining > 0;
}

/* Start the read barriers backends asked for (ReadIndex rounds). */
static void
start_reads(void)
{
	int			slots[64];
	uint64		ids[64];
	int			n = queue_collect_reads(slots, ids, 64 - ws.nreads);
	int			i;

	for (i = 0; i < n; i++)
	{
		if (raft_read_index(ws.node, ids[i]) != RAFT_OK)
		{
			queue_finish_read(slots[i], ids[i], false, 0, "no leader to confirm the read");
			continue;
		}
		ws.reads[ws.nreads].id = ids[i];
		ws.reads[ws.nreads].slot = slots[i];
		ws.reads[ws.nreads].has_index = false;
		ws.nreads++;
	}
}

static void
read_state_received(const raft_read_state *rs)
{
	int			i;

	for (i = 0; i < ws.nreads; i++)
	{
		struct PendingRead *r = &ws.reads[i];

		if (r->id != rs->context)
			continue;
		if (rs->failed)
		{
			queue_finish_read(r->slot, r->id, false, 0, "the leader refused the read");
			ws.reads[i] = ws.reads[--ws.nreads];
		}
		else
		{
			r->has_index = true;
			r->index = rs->index;
		}
		return;
	}
}

/* Reads whose index is applied here are served. */
static void
finish_reads(void)
{
	int			i;

	for (i = 0; i < ws.nreads; i++)
	{
		struct PendingRead *r = &ws.reads[i];

		if (r->has_index && ws.applied >= r->index)
		{
			queue_finish_read(r->slot, r->id, true, r->index, NULL);
			ws.reads[i--] = ws.reads[--ws.nreads];
		}
	}
}

/* Save a commit-only hard state change that has waited long enough. */
static void
flush_hard_state(bool force)
{
	TimestampTz now;

	if (!ws.hs_pending)
		return;
	now = GetCurrentTimestamp();
	if (!force && now - ws.hs_saved_at < 100 * 1000)
		return;
	if (ws.pending_hs.commit > raftlog_synced_index(ws.log))
		ws.pending_hs.commit = raftlog_synced_index(ws.log);
	if (raftlog_save_hard_state(ws.log, &ws.pending_hs) != RAFTLOG_OK)
		log_fail("saving the hard state");
	ws.saved_hs = ws.pending_hs;
	ws.hs_pending = false;
	ws.hs_saved_at = now;
}

static void
publish_status(void)
{
	raft_status st;
	ClusterStatus cs;
	int			i;

	raft_get_status(ws.node, &st);
	memset(&cs, 0, sizeof(cs));
	cs.node_id = st.id;
	cs.role = st.role;
	cs.term = st.term;
	cs.leader_id = st.leader;
	cs.commit_index = st.commit;
	cs.applied_index = ws.applied;
	cs.last_log_index = st.last_index;
	strlcpy(cs.apply_error, ws.stop_reason, sizeof(cs.apply_error));
	for (i = 0; i < ws.ndesired && cs.nmembers < CLUSTER_MAX_MEMBERS; i++)
	{
		MemberStatus *m;
		struct Peer *peer = peer_by_id(ws.desired[i].id);
		raft_index	match;
		bool		in_conf = raft_conf_is_voter(&st.conf, ws.desired[i].id) ||
			raft_conf_is_learner(&st.conf, ws.desired[i].id);

		/* an add not yet promoted to voter, or a removal not yet in effect */
		if (ws.desired[i].removed ? in_conf : !raft_conf_is_voter(&st.conf, ws.desired[i].id))
			cs.changing_node = ws.desired[i].id;
		if (ws.desired[i].removed)
			continue;
		m = &cs.members[cs.nmembers++];
		m->id = ws.desired[i].id;
		snprintf(m->address, sizeof(m->address), "%s:%d", ws.desired[i].host, ws.desired[i].port);
		m->voter = raft_conf_is_voter(&st.conf, m->id);
		if (m->id == (uint64) chronicle_node_id)
		{
			/* this node */
			m->connected = true;
			m->has_match = true;
			m->match_index = st.last_index;
			m->last_contact = GetCurrentTimestamp();
			continue;
		}
		m->connected = peer->conn != NULL && conn_get_state(peer->conn) == CONN_ESTABLISHED;
		m->has_match = raft_get_match(ws.node, m->id, &match);
		m->match_index = m->has_match ? match : 0;
		m->last_contact = peer->last_contact;
	}
	queue_publish_status(&cs);
}

/* ------------------------------------------------------------------ main */

/* Members added or removed through the log, from chronicle.cluster_members. */
static void
load_cluster_members(void)
{
	uint64		i;

	worker_xact_start();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute("SELECT node_id, address, removed FROM chronicle.cluster_members ORDER BY node_id",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read chronicle.cluster_members");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		uint64		id = (uint64) DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		char	   *addr = SPI_getvalue(tup, desc, 2);
		bool		removed = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
		struct Desired *d = desired_find(id);
		ClusterMember m;
		char	   *perr = NULL;

		if (cluster_parse_members(psprintf("%llu=%s", (unsigned long long) id, addr), &m, 1, &perr) != 1)
			continue;
		if (d == NULL)
		{
			if (ws.ndesired >= (int) lengthof(ws.desired))
				break;
			d = &ws.desired[ws.ndesired++];
			d->id = id;
		}
		strlcpy(d->host, m.host, sizeof(d->host));
		d->port = m.port;
		d->removed = removed;
	}
	PopActiveSnapshot();
	SPI_finish();
	worker_xact_commit();
}

/* The replicated membership: the initial members plus what the log changed. */
static void
load_membership(void)
{
	int			i;

	ws.ndesired = 0;
	for (i = 0; i < ws.nmembers; i++)
	{
		ws.desired[ws.ndesired].id = ws.members[i].id;
		strlcpy(ws.desired[ws.ndesired].host, ws.members[i].host, sizeof(ws.desired[0].host));
		ws.desired[ws.ndesired].port = ws.members[i].port;
		ws.desired[ws.ndesired].removed = false;
		ws.ndesired++;
	}
	load_cluster_members();
	/* once the network runs, keep the peers in step */
	if (ws.forwarded.data == NULL)
		return;
	for (i = 0; i < ws.ndesired; i++)
	{
		struct Desired *d = &ws.desired[i];

		if (d->id == (uint64) chronicle_node_id)
			continue;
		if (!d->removed)
			peer_add(d->id, d->host, d->port);
	}
}

static void
worker_start_engine(void)
{
	char		dir[MAXPGPATH];
	char		errbuf[RAFTLOG_ERRMSG_SIZE];
	raftlog_recovery recovery;
	raft_restore restore;
	raftlog_entries storage;
	raft_config cfg;
	raft_snapshot_meta snap;
	raft_hard_state hs;
	char	   *parse_error = NULL;
	int			rc;
	int			i;
	raft_index	applied;

	ws.nmembers = cluster_parse_members(chronicle_initial_cluster, ws.members,
										CLUSTER_MAX_MEMBERS, &parse_error);
	if (ws.nmembers <= 0)
		ereport(FATAL,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid chronicle_raft.initial_cluster: %s", parse_error ? parse_error : "empty")));
	ws.cluster_id = cluster_id_from_name(chronicle_cluster_name);

	snprintf(dir, sizeof(dir), "%s/chronicle_raft", DataDir);
	{
		raftlog_options opts;

		/* segments small enough that compaction can keep the log near its bound */
		raftlog_options_init(&opts);
		opts.segment_size = Min(opts.segment_size,
								Max((uint64) 64 * 1024, (uint64) chronicle_max_log_size * 1024 / 4));
		/* an fsync per entry then writes data only, no file size */
		opts.preallocate = true;
		/*
		 * Compacted segments are reused rather than deleted: the log
		 * compacts at half of max_log_size, so that much is written between
		 * two compactions.
		 */
		opts.spare_bytes = (uint64) chronicle_max_log_size * 1024 / 2;
		ws.segment_size = opts.segment_size;
		rc = raftlog_open(dir, ws.cluster_id, &opts, &ws.log, &recovery, errbuf, sizeof(errbuf));
	}
	if (rc != RAFTLOG_OK)
		ereport(FATAL,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("could not open the chronicle_raft log in \"%s\": %s", dir, errbuf),
				 errhint("A log of another cluster (chronicle_raft.cluster_name) is refused.")));
	if (recovery.torn_bytes > 0)
		ereport(LOG,
				(errmsg("chronicle_raft log: discarded a torn tail of %llu bytes from index %llu",
						(unsigned long long) recovery.torn_bytes,
						(unsigned long long) recovery.torn_index)));
	if (recovery.stale_bytes > 0)
		ereport(LOG,
				(errmsg("chronicle_raft log: cut %llu bytes after index %llu in a reused segment file (its older records, or an unsynced write)",
						(unsigned long long) recovery.stale_bytes,
						(unsigned long long) raftlog_last_index(ws.log))));

	raftlog_get_snapshot_meta(ws.log, &snap);
	raftlog_get_hard_state(ws.log, &hs);
	/* entries up to the applied index need not be delivered again */
	applied = get_applied_index();
	if (snap.index > applied)
	{
		/*
		 * The log records a received snapshot the streams do not have yet: a
		 * crash interrupted its install.  Finish it from the staged file.
		 */
		SnapshotInstallResult res;

		if (!snapshot_exists(snap.index))
			ereport(FATAL,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("the chronicle_raft log starts after index %llu but the streams are at %llu and the snapshot file is missing",
							(unsigned long long) snap.index, (unsigned long long) applied),
					 errhint("Remove this node with chronicle.remove_node() and add it again with a new node id and an empty data directory.")));
		snapshot_install(ws.cluster_id, snap.index, &res);
		ereport(LOG,
				(errmsg("chronicle_raft: installed snapshot at index %llu: %d streams, %llu bytes (interrupted install finished)",
						(unsigned long long) snap.index, res.nstreams,
						(unsigned long long) res.bytes)));
		applied = snap.index;
	}
	if (applied < snap.index || applied > hs.commit)
		applied = snap.index;

	/*
	 * The engine needs the payloads of what is not applied yet; the rest it
	 * reads back from the log if a follower still needs them, so starting
	 * does not load the whole log into memory.
	 */
	if (raftlog_load(ws.log, applied + 1, &restore, &storage) != RAFTLOG_OK)
		log_fail("loading");
	restore.applied = applied;
	if (restore.snapshot.index > 0 && snapshot_exists(restore.snapshot.index))
		ws.snapshot_ready = restore.snapshot.index;
	snapshot_remove_others(ws.snapshot_ready, 0);

	/* membership: the initial members, then what the log added or removed */
	load_membership();

	if (chronicle_initial_cluster_state == 0 &&
		(recovery.created || (restore.snapshot.index == 0 && restore.snapshot.conf.num_voters == 0)))
	{
		/* a brand-new member of the initial cluster */
		restore.snapshot.conf.num_voters = ws.nmembers;
		for (i = 0; i < ws.nmembers; i++)
			restore.snapshot.conf.voters[i] = ws.members[i].id;
	}

	raft_config_init(&cfg);
	cfg.id = (raft_node_id) chronicle_node_id;
	cfg.cluster_id = ws.cluster_id;
	cfg.seed = (uint64) chronicle_node_id * UINT64CONST(0x9E3779B97F4A7C15) ^ (uint64) GetCurrentTimestamp();
	cfg.election_ticks = Max(2, chronicle_election_timeout / TICK_MS);
	cfg.heartbeat_ticks = Max(1, chronicle_heartbeat_interval / TICK_MS);
	cfg.snapshot_chunk_bytes = SNAPSHOT_CHUNK_BYTES;
	cfg.snapshot_read = engine_snapshot_read;
	cfg.entry_read = engine_entry_read;
	cfg.max_cached_bytes = ENGINE_CACHE_BYTES;
	rc = raft_node_create(&cfg, &restore, &ws.node);
	if (rc != RAFT_OK)
		ereport(FATAL,
				(errmsg("could not start the Raft engine (error %d)", rc)));
	raftlog_entries_free(&storage);
	ws.applied = ws.apply_target = restore.applied;
	ws.compacted = restore.snapshot.index;
	ws.saved_hs = restore.hard_state;
	ereport(LOG,
			(errmsg("chronicle_raft node %d started: %d members, log %llu..%llu",
					chronicle_node_id, ws.nmembers,
					(unsigned long long) raftlog_first_index(ws.log),
					(unsigned long long) raftlog_last_index(ws.log))));
}

/* Propose queued and forwarded batches at buffer_size bytes or after flush_interval. */
static void
maybe_flush_queue(TimestampTz now)
{
	Size		waiting = queue_bytes_waiting();

	if (ws.nforwarded > 0)
		propose_queued();
	if (waiting == 0)
		ws.oldest_queued = 0;
	else
	{
		if (ws.oldest_queued == 0)
			ws.oldest_queued = now;
		if (waiting >= (Size) chronicle_buffer_size ||
			now - ws.oldest_queued >= (TimestampTz) chronicle_flush_interval * 1000)
		{
			propose_queued();
			ws.oldest_queued = 0;
		}
	}
}

void
chronicle_worker_main(Datum main_arg)
{
	TimestampTz last_tick;

	am_cluster_worker = true;
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(chronicle_database, NULL, 0);

	/*
	 * The Raft log is what makes applied entries durable: re-applying an
	 * entry after a crash is idempotent (stream meta pages, raft_applied in
	 * the same transaction as replicated DDL), so the apply transactions
	 * need not wait for their own WAL flush.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	/* the extension must exist in the replicated database */
	worker_xact_start();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute("CREATE EXTENSION IF NOT EXISTS chronicle_raft", false, 0) < 0)
		elog(ERROR, "could not create extension chronicle_raft");
	PopActiveSnapshot();
	SPI_finish();
	worker_xact_commit();

	/*
	 * Every loop iteration allocates and frees batch-sized buffers (queue
	 * drain, Raft entries, decoded rows).  With glibc's defaults those come
	 * from fresh mmaps or a heap top trimmed after each reset, and the
	 * kernel zeroes every page again: about a tenth of the worker's CPU
	 * under COPY load.  Keep them in the heap and keep the heap.
	 */
	mallopt(M_MMAP_THRESHOLD, WORKER_MMAP_THRESHOLD);
	mallopt(M_TRIM_THRESHOLD, WORKER_TRIM_THRESHOLD);

	memset(&ws, 0, sizeof(ws));
	ws.cxt = AllocSetContextCreate(TopMemoryContext, "chronicle_raft worker loop",
								   ALLOCSET_DEFAULT_SIZES);
	worker_start_engine();
	network_start();
	before_shmem_exit(worker_on_exit, (Datum) 0);
	queue_worker_attach();
	discard_parts_of_earlier_runs();

	last_tick = GetCurrentTimestamp();
	for (;;)
	{
		TimestampTz now;
		MemoryContext old;

		{
			long		timeout = TICK_MS;


			/* queued events must not wait for the next tick */
			if (ws.oldest_queued != 0)
			{
				long		waited = (long) ((GetCurrentTimestamp() - ws.oldest_queued) / 1000);

				timeout = Max(0, Min(timeout, chronicle_flush_interval - waited));
			}
			network_wait_and_serve(timeout);
		}
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		old = MemoryContextSwitchTo(ws.cxt);

		/*
		 * Propose what queued up before processing the ready: the new
		 * entry's messages then leave first, and followers persist it while
		 * this process fsyncs and applies what the last answers committed.
		 */
		maybe_flush_queue(GetCurrentTimestamp());
		process_ready();
		now = GetCurrentTimestamp();
		/* a stall of this process (a long apply) is not time without a leader */
		if (now - last_tick > 5 * TICK_MS * 1000)
			last_tick = now - TICK_MS * 1000;
		while (now - last_tick >= TICK_MS * 1000)
		{
			raft_tick(ws.node);
			last_tick += TICK_MS * 1000;
		}
		maybe_flush_queue(now);
		drive_snapshot_writer();
		apply_from_log();
		start_reads();
		reconcile_membership();
		prune_removed_peers();
		maybe_propose_compaction();
		process_ready();
		if (ws.compact_to > 0)
		{
			carry_out_compaction();
			process_ready();
		}
		remove_compacted_files(now);
		finish_reads();
		flush_hard_state(false);
		publish_status();
		MemoryContextSwitchTo(old);
		MemoryContextReset(ws.cxt);
	}
}
