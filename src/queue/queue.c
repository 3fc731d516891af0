/*-------------------------------------------------------------------------
 *
 * queue.c
 *	  The shared insert queue between committing backends and the worker.
 *
 * At pre-commit a backend of a replicated server copies its encoded batch
 * into a byte ring in shared memory, sets the worker's latch and sleeps on
 * a condition variable until the batch's slot says what happened to it.
 * The worker drains the ring, proposes the batches as one Raft entry and
 * moves each slot through PROPOSED -> COMMITTED -> APPLIED (or FAILED when
 * the entry was provably not committed, UNKNOWN when that cannot be known).
 *
 * A backend owns exactly one slot (its BackendId) and has at most one batch
 * in flight that it waits for.  Record in the ring: uint32 length, int32
 * slot, uint64 batch id, then the bytes.  Slot 0 (no backend has it) marks
 * a batch nobody waits for (commit_wait = off); the worker always takes it.  Everything is protected by one LWLock; the ring never
 * drops a batch: a backend that finds it full waits (backpressure).
 *
 * Waiting: a batch still QUEUED when the wait times out is CANCELLED (the
 * worker skips it), so the error "no leader" is honest: it was never
 * proposed.  A wait interrupted after the batch was proposed ends with
 * SQLSTATE 08007: the outcome is unknown; so does a session terminated
 * (pg_terminate_backend, fast shutdown) in that wait, as a FATAL.
 *
 * No pointers live in shared memory except the worker's latch, which is in
 * its PGPROC and is cleared when the worker exits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/memutils.h"

#include "worker/cluster.h"

typedef struct BatchSlot
{
	uint64		batch_id;
	BatchState	state;
	uint64		read_index;		/* result of a read barrier */
	char		msg[128];
	bool		wait_committed; /* its backend returns at BATCH_COMMITTED */
	ConditionVariable cv;		/* its backend sleeps here: no herd wakes */
} BatchSlot;

typedef struct QueueShared
{
	LWLock	   *lock;
	ConditionVariable cv;
	Latch	   *worker_latch;
	uint64		next_batch_id;
	uint64		boot_id;		/* random, chosen when the worker attaches */
	uint64		head;			/* byte position of the oldest record */
	uint64		tail;			/* byte position after the newest */
	Size		capacity;
	ClusterStatus status;
	int			nslots;
	BatchSlot  *slots;			/* offsets into this segment; set at startup */
	char	   *ring;
} QueueShared;

#define RECORD_HEADER (sizeof(uint32) + sizeof(int32) + sizeof(uint64))

static QueueShared *queue = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
queue_capacity(void)
{
	return Max((Size) 64 * 1024 * 1024, (Size) chronicle_buffer_size * 4);
}

static Size
queue_shmem_size(void)
{
	return MAXALIGN(sizeof(QueueShared)) +
		MAXALIGN(sizeof(BatchSlot) * (MaxBackends + 1)) + queue_capacity();
}

static void
queue_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(queue_shmem_size());
	RequestNamedLWLockTranche("chronicle_raft queue", 1);
}

static void
queue_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	queue = ShmemInitStruct("chronicle_raft queue", queue_shmem_size(), &found);
	if (!found)
	{
		char	   *base = (char *) queue;
		int			i;

		memset(queue, 0, sizeof(QueueShared));
		queue->lock = &(GetNamedLWLockTranche("chronicle_raft queue"))->lock;
		ConditionVariableInit(&queue->cv);
		queue->capacity = queue_capacity();
		queue->nslots = MaxBackends + 1;
		queue->slots = (BatchSlot *) (base + MAXALIGN(sizeof(QueueShared)));
		memset(queue->slots, 0, sizeof(BatchSlot) * queue->nslots);
		for (i = 0; i < queue->nslots; i++)
			ConditionVariableInit(&queue->slots[i].cv);
		queue->ring = base + MAXALIGN(sizeof(QueueShared)) +
			MAXALIGN(sizeof(BatchSlot) * queue->nslots);
		queue->next_batch_id = 1;
	}
	LWLockRelease(AddinShmemInitLock);
}

void
queue_shmem_request(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = queue_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = queue_startup;
}

void
queue_shmem_startup(void)
{
	/* hooks do the work; kept for symmetry with queue_shmem_request */
}

static void
ring_write(uint64 pos, const void *src, Size len)
{
	Size		off = pos % queue->capacity;
	Size		first = Min(len, queue->capacity - off);

	memcpy(queue->ring + off, src, first);
	if (first < len)
		memcpy(queue->ring, (const char *) src + first, len - first);
}

static void
ring_read(uint64 pos, void *dst, Size len)
{
	Size		off = pos % queue->capacity;
	Size		first = Min(len, queue->capacity - off);

	memcpy(dst, queue->ring + off, first);
	if (first < len)
		memcpy((char *) dst + first, queue->ring, len - first);
}

/* Append one record (the caller holds the lock and checked the room). */
static uint64
ring_append(int32 slotno, const char *data, Size len)
{
	uint32		len32 = (uint32) len;
	uint64		batch_id = queue->next_batch_id++;

	ring_write(queue->tail, &len32, sizeof(uint32));
	ring_write(queue->tail + sizeof(uint32), &slotno, sizeof(int32));
	ring_write(queue->tail + sizeof(uint32) + sizeof(int32), &batch_id, sizeof(uint64));
	ring_write(queue->tail + RECORD_HEADER, data, len);
	queue->tail += RECORD_HEADER + len;
	return batch_id;
}

static BatchSlot *
my_slot(void)
{
	if (MyBackendId <= 0 || MyBackendId >= queue->nslots)
		elog(ERROR, "backend id %d has no insert queue slot", MyBackendId);
	return &queue->slots[MyBackendId];
}

/*
 * The session is being terminated while it waits for its batch.  A batch
 * not yet proposed is withdrawn, and the ordinary FATAL follows; one that
 * may be in the Raft log ends the session with SQLSTATE 08007, so a client
 * checks before it retries.  A batch whose outcome already arrived is left
 * to the caller.
 */
static void
terminate_while_waiting(BatchSlot *slot, bool decides)
{
	BatchState	state;

	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	state = slot->state;
	if (state == BATCH_QUEUED)
		slot->state = BATCH_CANCELLED;
	LWLockRelease(queue->lock);
	if (decides && (state == BATCH_PROPOSED || state == BATCH_COMMITTED))
	{
		ConditionVariableCancelSleep();
		ereport(FATAL,
				(errcode(ERRCODE_TRANSACTION_RESOLUTION_UNKNOWN),
				 errmsg("terminating connection while waiting for the replicated commit; the events may or may not be committed"),
				 state == BATCH_COMMITTED ?
				 errdetail("A quorum already has them; every node will apply them.") : 0,
				 errhint("Check whether the events are present before retrying.")));
	}
}

/* The largest batch queue_submit_and_wait() takes. */
Size
queue_max_batch(void)
{
	return queue->capacity / 2 - RECORD_HEADER;
}

/* Random id of the worker's current run: each (re)start chooses a new one. */
uint64
queue_boot_id(void)
{
	uint64		id;

	LWLockAcquire(queue->lock, LW_SHARED);
	id = queue->boot_id;
	LWLockRelease(queue->lock);
	return id;
}

/*
 * Queue a batch nobody waits for (slot 0), from a backend's abort path or
 * the worker: never waits and never errors.  False when it could not be
 * queued (no worker, or no room).
 */
bool
queue_submit_detached(const char *data, Size len)
{
	bool		ok = false;

	if (queue == NULL || len + RECORD_HEADER > queue->capacity / 2)
		return false;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	if (queue->worker_latch != NULL &&
		queue->capacity - (queue->tail - queue->head) >= len + RECORD_HEADER)
	{
		(void) ring_append(0, data, len);
		SetLatch(queue->worker_latch);
		ok = true;
	}
	LWLockRelease(queue->lock);
	return ok;
}

/*
 * Queue one batch and wait for its outcome as chronicle_raft.commit_wait
 * says.  Errors (and so aborts the transaction) when the batch provably did
 * not commit; SQLSTATE 08007 when its outcome is unknown and the batch
 * decides the transaction.  A batch that does not decide it (a part of a
 * large transaction before its final one) turns an unknown outcome into an
 * ordinary error: whatever happened to it, the transaction did not commit.
 */
void
queue_submit_and_wait(const char *data, Size len, bool decides)
{
	BatchSlot  *slot;
	uint64		batch_id;
	bool		detached = chronicle_commit_wait == COMMIT_WAIT_OFF;
	int32		slotno = detached ? 0 : MyBackendId;
	TimestampTz deadline;
	BatchState	state;
	char		msg[128];
	volatile bool proposed = false;

	if (queue == NULL)
		elog(ERROR, "chronicle_raft insert queue is not initialized");
	if (len + RECORD_HEADER > queue->capacity / 2)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("transaction's stream events take %zu bytes, more than the insert queue takes at once (%zu)",
						len, queue->capacity / 2),
				 errhint("Split the load into smaller transactions or raise chronicle_raft.buffer_size.")));
	slot = my_slot();
	deadline = GetCurrentTimestamp() +
		(TimestampTz) (chronicle_election_timeout * 4 + 5000) * 1000;

	/* wait for room (backpressure) and queue the record */
	for (;;)
	{
		LWLockAcquire(queue->lock, LW_EXCLUSIVE);
		if (queue->worker_latch == NULL)
		{
			LWLockRelease(queue->lock);
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("the chronicle_raft replication worker is not running"),
					 errhint("Check the server log; the worker restarts by itself after a failure.")));
		}
		if (queue->capacity - (queue->tail - queue->head) >= len + RECORD_HEADER)
			break;
		LWLockRelease(queue->lock);
		if (GetCurrentTimestamp() > deadline)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("the insert queue stayed full; nothing was committed"),
					 errhint("The cluster may have no leader; see chronicle.status().")));
		ConditionVariableTimedSleep(&queue->cv, 100, PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	batch_id = ring_append(slotno, data, len);
	if (!detached)
	{
		slot->batch_id = batch_id;
		slot->state = BATCH_QUEUED;
		slot->wait_committed = chronicle_commit_wait == COMMIT_WAIT_COMMITTED;
		slot->msg[0] = '\0';
	}
	SetLatch(queue->worker_latch);
	LWLockRelease(queue->lock);

	/*
	 * commit_wait = off: queued is enough (documented: a crash may lose it).
	 * The record names no slot: the session's next batch or read barrier,
	 * or the next session in this slot, must not make it look abandoned.
	 */
	if (detached)
		return;

	PG_TRY();
	{
		for (;;)
		{
			LWLockAcquire(queue->lock, LW_SHARED);
			state = slot->state;
			strlcpy(msg, slot->msg, sizeof(msg));
			LWLockRelease(queue->lock);
			if (state >= BATCH_PROPOSED)
				proposed = true;
			if (state == BATCH_APPLIED || state == BATCH_FAILED || state == BATCH_UNKNOWN)
				break;
			if (state == BATCH_COMMITTED && chronicle_commit_wait != COMMIT_WAIT_APPLIED)
				break;
			if (state >= BATCH_PROPOSED && state <= BATCH_COMMITTED &&
				GetCurrentTimestamp() > deadline + (TimestampTz) chronicle_election_timeout * 10 * 1000)
			{
				strlcpy(msg, "no answer from the cluster in time", sizeof(msg));
				state = BATCH_UNKNOWN;
				break;
			}
			if (state == BATCH_QUEUED && GetCurrentTimestamp() > deadline)
			{
				LWLockAcquire(queue->lock, LW_EXCLUSIVE);
				if (slot->state == BATCH_QUEUED)
				{
					slot->state = BATCH_CANCELLED;
					LWLockRelease(queue->lock);
					ereport(ERROR,
							(errcode(ERRCODE_CONNECTION_FAILURE),
							 errmsg("no Raft leader accepted the transaction's events in time; nothing was committed"),
							 errhint("Check chronicle.status() on the cluster's nodes.")));
				}
				LWLockRelease(queue->lock);
				continue;
			}

			/*
			 * A termination request (pg_terminate_backend, a fast shutdown)
			 * would otherwise end the session with a plain FATAL from inside
			 * the sleep, and a client would take that for "not committed".
			 * Hold it over the sleep and say what is true instead.
			 */
			HOLD_INTERRUPTS();
			ConditionVariableTimedSleep(&slot->cv, 100, PG_WAIT_EXTENSION);
			RESUME_INTERRUPTS();
			if (ProcDiePending)
				terminate_while_waiting(slot, decides);
			CHECK_FOR_INTERRUPTS();
		}
		ConditionVariableCancelSleep();
	}
	PG_CATCH();
	{
		ConditionVariableCancelSleep();
		LWLockAcquire(queue->lock, LW_EXCLUSIVE);
		if (slot->state == BATCH_QUEUED)
			slot->state = BATCH_CANCELLED;
		else if (slot->state >= BATCH_PROPOSED)
			proposed = true;
		LWLockRelease(queue->lock);
		if (proposed && decides)
		{
			FlushErrorState();
			ereport(ERROR,
					(errcode(ERRCODE_TRANSACTION_RESOLUTION_UNKNOWN),
					 errmsg("the wait for the replicated commit was interrupted; the events may or may not be committed"),
					 errhint("Check whether the events are present before retrying.")));
		}
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (state == BATCH_FAILED)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("replicated change not committed: %s", msg),
				 errhint("Nothing of it was applied.")));
	if (state == BATCH_UNKNOWN && !decides)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("replicated change not committed: a part of the transaction's events had an unknown outcome: %s",
						msg),
				 errhint("Nothing of it was applied; the transaction may be retried.")));
	if (state == BATCH_UNKNOWN)
		ereport(ERROR,
				(errcode(ERRCODE_TRANSACTION_RESOLUTION_UNKNOWN),
				 errmsg("the outcome of the transaction's events is unknown: %s", msg),
				 errhint("Check whether the events are present before retrying.")));
}

/*
 * Worker: take every queued batch (up to max_bytes) out of the ring.  The
 * events are copied to where place() says (it may write a header there
 * first, so that a leader drains straight into the Raft entry), or, with
 * place NULL, into palloc'd chunks of the current memory context.  A
 * batch place() has no room for (it returns NULL) stays queued, and the
 * drain stops there.
 */
int
queue_drain(QueuedBatch **batches, Size max_bytes, queue_place_fn place, void *arg)
{
	int			n = 0;
	int			cap = 16;
	Size		taken = 0;
	QueuedBatch *out = palloc(sizeof(QueuedBatch) * cap);

	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	while (queue->head < queue->tail)
	{
		uint32		len32;
		int32		slotno;
		uint64		batch_id;
		BatchSlot  *slot;

		ring_read(queue->head, &len32, sizeof(uint32));
		if (n > 0 && taken + len32 > max_bytes)
			break;
		ring_read(queue->head + sizeof(uint32), &slotno, sizeof(int32));
		ring_read(queue->head + sizeof(uint32) + sizeof(int32), &batch_id, sizeof(uint64));
		slot = &queue->slots[slotno];
		if (slotno == 0 || (slot->batch_id == batch_id && slot->state == BATCH_QUEUED))
		{
			char	   *dst = place ? place(arg, slotno, batch_id, len32) : palloc(len32);

			if (dst == NULL)
				break;
			if (n == cap)
			{
				cap *= 2;
				out = repalloc(out, sizeof(QueuedBatch) * cap);
			}
			out[n].slot = slotno;
			out[n].batch_id = batch_id;
			out[n].len = len32;
			out[n].data = dst;
			ring_read(queue->head + RECORD_HEADER, dst, len32);
			if (slotno != 0)
				slot->state = BATCH_PROPOSED;
			taken += len32;
			n++;
		}
		queue->head += RECORD_HEADER + len32;
	}
	LWLockRelease(queue->lock);
	if (n > 0)
		ConditionVariableBroadcast(&queue->cv);	/* room in the ring */
	*batches = out;
	return n;
}

Size
queue_bytes_waiting(void)
{
	Size		n;

	LWLockAcquire(queue->lock, LW_SHARED);
	n = queue->tail - queue->head;
	LWLockRelease(queue->lock);
	return n;
}

void
queue_set_state(int slotno, uint64 batch_id, BatchState state, const char *msg)
{
	BatchSlot  *slot;
	bool		wake;

	if (slotno <= 0 || slotno >= queue->nslots)
		return;
	slot = &queue->slots[slotno];
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	if (slot->batch_id == batch_id && slot->state != BATCH_CANCELLED && slot->state < state)
	{
		slot->state = state;
		if (msg)
			strlcpy(slot->msg, msg, sizeof(slot->msg));
	}
	else
		state = BATCH_FREE;		/* nothing changed: nobody to wake */
	wake = state != BATCH_FREE && (state != BATCH_COMMITTED || slot->wait_committed);
	LWLockRelease(queue->lock);
	if (wake)
		ConditionVariableBroadcast(&slot->cv);
}

/*
 * chronicle.read_barrier(): ask the worker for a ReadIndex round (the
 * leader confirms it still leads with a quorum heartbeat) and wait until
 * this node has applied up to the returned index.  Reads after it are
 * linearizable.  Returns the index.
 */
uint64
queue_read_barrier(void)
{
	BatchSlot  *slot;
	uint64		id;
	BatchState	state;
	uint64		index;
	char		msg[128];
	TimestampTz deadline = GetCurrentTimestamp() +
		(TimestampTz) (chronicle_election_timeout * 4 + 5000) * 1000;

	if (queue == NULL || !cluster_enabled())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("chronicle.read_barrier() needs a replicated server"),
				 errhint("On a cluster of one every read is already linearizable.")));
	slot = my_slot();
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	if (queue->worker_latch == NULL)
	{
		LWLockRelease(queue->lock);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("the chronicle_raft replication worker is not running")));
	}
	id = queue->next_batch_id++;
	slot->batch_id = id;
	slot->state = READ_REQUESTED;
	slot->read_index = 0;
	slot->msg[0] = '\0';
	SetLatch(queue->worker_latch);
	LWLockRelease(queue->lock);

	for (;;)
	{
		LWLockAcquire(queue->lock, LW_SHARED);
		state = slot->state;
		index = slot->read_index;
		strlcpy(msg, slot->msg, sizeof(msg));
		LWLockRelease(queue->lock);
		if (state == BATCH_APPLIED || state == BATCH_FAILED)
			break;
		if (GetCurrentTimestamp() > deadline)
		{
			LWLockAcquire(queue->lock, LW_EXCLUSIVE);
			slot->state = BATCH_FAILED;
			LWLockRelease(queue->lock);
			state = BATCH_FAILED;
			strlcpy(msg, "no leader confirmed the read in time", sizeof(msg));
			break;
		}
		ConditionVariableTimedSleep(&slot->cv, 100, PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	if (state == BATCH_FAILED)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("linearizable read failed: %s", msg),
				 errhint("Check chronicle.status(); retry once the cluster has a leader.")));
	return index;
}

/* Worker: read barriers to start (moved to READ_SENT). */
int
queue_collect_reads(int *slots, uint64 *ids, int max)
{
	int			n = 0;
	int			i;

	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (i = 0; i < queue->nslots && n < max; i++)
	{
		if (queue->slots[i].state == READ_REQUESTED)
		{
			queue->slots[i].state = READ_SENT;
			slots[n] = i;
			ids[n] = queue->slots[i].batch_id;
			n++;
		}
	}
	LWLockRelease(queue->lock);
	return n;
}

/* Worker: a read barrier is served (ok: applied up to index) or refused. */
void
queue_finish_read(int slotno, uint64 id, bool ok, uint64 index, const char *msg)
{
	BatchSlot  *slot = &queue->slots[slotno];

	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	if (slot->batch_id == id && slot->state == READ_SENT)
	{
		slot->state = ok ? BATCH_APPLIED : BATCH_FAILED;
		slot->read_index = index;
		if (msg)
			strlcpy(slot->msg, msg, sizeof(slot->msg));
	}
	LWLockRelease(queue->lock);
	ConditionVariableBroadcast(&slot->cv);
}

/* The same, for a batch known only by its id (batch ids are unique). */
void
queue_set_state_by_batch(uint64 batch_id, BatchState state, const char *msg)
{
	int			i;
	int			found = -1;

	LWLockAcquire(queue->lock, LW_SHARED);
	for (i = 0; i < queue->nslots; i++)
		if (queue->slots[i].batch_id == batch_id)
		{
			found = i;
			break;
		}
	LWLockRelease(queue->lock);
	if (found >= 0)
		queue_set_state(found, batch_id, state, msg);
}

/*
 * Worker: the backend in this slot holds something the worker waits for, so
 * its batch must not keep it waiting.  A batch still queued is withdrawn
 * (not committed); one that may be in the log gets an unknown outcome.
 * Either way the backend ends its transaction.  A slot with no batch in
 * flight is left alone.
 */
void
queue_abandon_slot(int slotno, const char *msg)
{
	BatchSlot  *slot;
	bool		wake = false;

	if (slotno <= 0 || slotno >= queue->nslots)
		return;
	slot = &queue->slots[slotno];
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	if (slot->state == BATCH_QUEUED)
	{
		slot->state = BATCH_FAILED;
		wake = true;
	}
	else if (slot->state == BATCH_PROPOSED || slot->state == BATCH_COMMITTED)
	{
		slot->state = BATCH_UNKNOWN;
		wake = true;
	}
	if (wake)
		strlcpy(slot->msg, msg, sizeof(slot->msg));
	LWLockRelease(queue->lock);
	if (wake)
		ConditionVariableBroadcast(&slot->cv);
}

/* Every slot's state may have changed: wake every waiter. */
static void
wake_all(void)
{
	int			i;

	for (i = 0; i < queue->nslots; i++)
		ConditionVariableBroadcast(&queue->slots[i].cv);
	ConditionVariableBroadcast(&queue->cv);
}

/* Worker start: become the queue's consumer. */
void
queue_worker_attach(void)
{
	int			i;

	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	queue->worker_latch = MyLatch;
	/* a new run: parts sent in earlier ones will never be finished */
	if (!pg_strong_random(&queue->boot_id, sizeof(queue->boot_id)))
		queue->boot_id ^= (uint64) GetCurrentTimestamp();
	/* batches a previous incarnation proposed have an unknown outcome */
	for (i = 0; i < queue->nslots; i++)
	{
		BatchSlot  *slot = &queue->slots[i];

		if (slot->state == BATCH_PROPOSED || slot->state == BATCH_COMMITTED)
		{
			slot->state = BATCH_UNKNOWN;
			strlcpy(slot->msg, "the replication worker restarted", sizeof(slot->msg));
		}
		else if (slot->state == READ_SENT)
			slot->state = READ_REQUESTED;	/* ask again */
	}
	queue->status.running = true;
	LWLockRelease(queue->lock);
	wake_all();
}

void
queue_worker_detach(void)
{
	int			i;

	if (queue == NULL)
		return;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	queue->worker_latch = NULL;
	queue->status.running = false;
	for (i = 0; i < queue->nslots; i++)
	{
		BatchSlot  *slot = &queue->slots[i];

		if (slot->state == BATCH_QUEUED)
		{
			slot->state = BATCH_FAILED;
			strlcpy(slot->msg, "the replication worker stopped", sizeof(slot->msg));
		}
		else if (slot->state == BATCH_PROPOSED || slot->state == BATCH_COMMITTED)
		{
			slot->state = BATCH_UNKNOWN;
			strlcpy(slot->msg, "the replication worker stopped", sizeof(slot->msg));
		}
		else if (slot->state == READ_REQUESTED || slot->state == READ_SENT)
		{
			slot->state = BATCH_FAILED;
			strlcpy(slot->msg, "the replication worker stopped", sizeof(slot->msg));
		}
	}
	queue->head = queue->tail;
	LWLockRelease(queue->lock);
	wake_all();
}

void
queue_publish_status(const ClusterStatus *status)
{
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	queue->status = *status;
	queue->status.running = queue->worker_latch != NULL;
	LWLockRelease(queue->lock);
}

void
queue_read_status(ClusterStatus *status)
{
	LWLockAcquire(queue->lock, LW_SHARED);
	*status = queue->status;
	LWLockRelease(queue->lock);
}
