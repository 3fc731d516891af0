/*-------------------------------------------------------------------------
 *
 * sim.c
 *	  Deterministic cluster simulator: simulated clock, network and disk,
 *	  fault injection, and the invariant checks run after every event.
 *
 * What it owns: one sim_node per node slot, each with
 *	- a raft_node (the engine under test), absent while crashed;
 *	- a "disk": hard state, snapshot (meta + bytes) and log entries, which
 *	  changes only when the simulator completes a pending fsync;
 *	- a FIFO of pending fsyncs built from readies; a crash discards it, so
 *	  everything the engine asked to persist but was not yet fsynced is lost;
 *	- a state machine (applied index + rolling hash of applied entries);
 *	- a shadow of the engine's in-memory log (term + chain hash per index).
 *
 * The chain hash of entry i is H(chain(i-1), entry i), so two logs agree
 * on a prefix exactly when their chain hashes at its end agree.  That turns
 * log matching and "committed entries never change" into O(1) checks.
 *
 * Persistence rules the simulator enforces on the engine's behalf: the
 * persist_messages of a ready leave only when its fsync completes, and
 * raft_persisted() is called in fsync order.
 *
 * Invariants checked after every event (docs/raft.md lists them):
 *	I1 at most one leader per term;
 *	I2 log matching: equal (index, term) means equal prefix;
 *	I3 a leader never truncates its own log within its term;
 *	I4 committed entries are unique per index on every node and never
 *	   change; a new leader holds every entry known committed;
 *	I5 a leader's commit index only covers entries durable on a quorum;
 *	I6 applied sequences are contiguous prefixes of the one committed log,
 *	   and only durable entries are applied;
 *	I7 commit never decreases within an incarnation; after a restart it
 *	   starts at the durable commit, which itself never decreases, and
 *	   every entry up to the durable commit is on the durable log;
 *	I8 proposal outcomes are honest: COMMITTED only if that entry
 *	   committed, LOST only if another entry committed at its index;
 *	I9 read indexes are at least the commit index known anywhere when the
 *	   read was requested (no stale reads);
 *	I10 after faults heal, a leader emerges and a proposal commits within
 *	   a bounded number of ticks;
 *	I11 an engine that dropped applied payloads (half the seeds) reads back
 *	   only entries of its own durable log, with their term and length.
 *
 * test/sim/sim.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define SNAP_HEADER_BYTES	32
#define HEAL_BOUND_ELECTIONS	30

typedef struct disk_entry
{
	raft_entry	entry;			/* data owned */
	uint64_t	chain;
} disk_entry;

typedef struct shadow_slot
{
	raft_term	term;
	uint64_t	chain;
	bool		known;
} shadow_slot;

typedef struct pending_sync
{
	bool		has_snapshot;
	raft_snapshot_meta snap_meta;
	uint8_t    *snap_data;
	size_t		snap_len;
	uint64_t	snap_chain;
	disk_entry *entries;
	size_t		num_entries;
	bool		hs_changed;
	raft_hard_state hs;
	raft_message *msgs;
	size_t		num_msgs;
	raft_term	persist_term;
	raft_index	persist_index;
	uint64_t	ready_at;
} pending_sync;

typedef struct net_msg
{
	raft_message msg;			/* deep copy */
	uint64_t	deliver_at;
	uint64_t	seq;
} net_msg;

typedef struct sim_node
{
	int			id;
	bool		exists;
	bool		up;
	raft_node  *raft;
	int			incarnation;

	/* durable disk */
	raft_hard_state disk_hs;
	raft_snapshot_meta disk_snap;
	uint8_t    *disk_snap_data;
	size_t		disk_snap_len;
	uint64_t	disk_snap_chain;
	disk_entry *disk_log;		/* index disk_snap.index + 1 + k */
	size_t		disk_count;
	size_t		disk_cap;

	pending_sync *syncs;
	size_t		num_syncs;
	size_t		syncs_cap;

	/* received snapshot bytes, volatile */
	uint8_t    *staging;
	size_t		staging_len;
	size_t		staging_cap;

	/* state machine, volatile (rebuilt from the disk snapshot) */
	raft_index	sm_index;
	uint64_t	sm_chain;

	/* shadow of the engine's in-memory log */
	shadow_slot *shadow;
	size_t		shadow_cap;
	raft_index	shadow_last;

	struct sim *owner;			/* for the checks of entry_read_cb */

	/* per incarnation checks */
	raft_index	last_commit;
	raft_index	recorded_commit;
	raft_role	last_role;
	raft_term	last_term;
} sim_node;

typedef struct committed_slot
{
	raft_term	term;
	uint64_t	chain;
	bool		known;
} committed_slot;

typedef struct reg_slot
{
	raft_index	index;
	raft_term	term;
	uint64_t	chain;
	bool		used;
} reg_slot;

typedef struct outcome_rec
{
	raft_term	term;
	raft_index	index;
	raft_outcome outcome;
} outcome_rec;

typedef struct read_rec
{
	uint64_t	context;
	raft_index	min_index;		/* commit known anywhere at request */
	raft_index	index;
	bool		done;
	bool		failed;
} read_rec;

struct sim
{
	sim_options opts;
	uint64_t	rng;
	uint64_t	now;
	uint64_t	msg_seq;
	char		failure[512];
	bool		failed;

	sim_node	nodes[SIM_MAX_NODES];
	bool		removed[SIM_MAX_NODES + 1];
	int			next_id;

	net_msg    *net;
	size_t		net_count;
	size_t		net_cap;
	bool		link_down[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1];

	/* global registries for the checks */
	int		   *leader_of_term;
	size_t		leader_of_term_cap;
	reg_slot   *registry;
	size_t		registry_cap;
	size_t		registry_count;
	committed_slot *committed;
	size_t		committed_cap;
	raft_index	max_committed;

	outcome_rec *outcomes;
	size_t		num_outcomes;
	size_t		outcomes_cap;
	read_rec   *reads;
	size_t		num_reads;
	size_t		reads_cap;

	uint64_t	elections;		/* leaderships observed, for reports */
	uint64_t	crashes;
	uint64_t	installs;
	uint64_t	read_backs;		/* payloads the engines read back */
};

/*----------
 * Helpers
 *----------
 */

static void *
xmalloc(size_t size)
{
	void	   *p = malloc(size == 0 ? 1 : size);

	if (p == NULL)
	{
		fprintf(stderr, "sim: out of memory\n");
		exit(2);
	}
	return p;
}

static void *
xrealloc(void *ptr, size_t size)
{
	void	   *p = realloc(ptr, size == 0 ? 1 : size);

	if (p == NULL)
	{
		fprintf(stderr, "sim: out of memory\n");
		exit(2);
	}
	return p;
}

static void *
xmemdup(const void *src, size_t len)
{
	void	   *p;

	if (len == 0)
		return NULL;
	p = xmalloc(len);
	memcpy(p, src, len);
	return p;
}

/* Grow *items to hold at least need items of item_size bytes. */
static void
grow(void **items, size_t *cap, size_t need, size_t item_size)
{
	size_t		new_cap;

	if (need <= *cap)
		return;
	new_cap = *cap == 0 ? 16 : *cap;
	while (new_cap < need)
		new_cap *= 2;
	*items = xrealloc(*items, new_cap * item_size);
	memset((char *) *items + *cap * item_size, 0, (new_cap - *cap) * item_size);
	*cap = new_cap;
}

static uint64_t
mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

static uint64_t
rng_next(sim *s)
{
	s->rng += UINT64_C(0x9E3779B97F4A7C15);
	return mix64(s->rng);
}

static uint32_t
rng_below(sim *s, uint32_t bound)
{
	return bound == 0 ? 0 : (uint32_t) (rng_next(s) % bound);
}

static bool
rng_ppm(sim *s, uint32_t ppm)
{
	return ppm > 0 && rng_below(s, 1000000) < ppm;
}

static uint64_t
data_hash(const uint8_t *data, size_t len)
{
	uint64_t	h = UINT64_C(0xCBF29CE484222325);
	size_t		i;

	for (i = 0; i < len; i++)
	{
		h ^= data[i];
		h *= UINT64_C(0x100000001B3);
	}
	return h;
}

static uint64_t
chain_next(uint64_t prev, const raft_entry *e)
{
	return mix64(prev ^ mix64(e->term * UINT64_C(0x9E37) + (uint64_t) e->type) ^
				 mix64(data_hash(e->data, e->len) + e->index));
}

static void
fail(sim *s, const char *fmt,...)
{
	va_list		ap;
	int			len;

	if (s->failed)
		return;
	s->failed = true;
	len = snprintf(s->failure, sizeof(s->failure), "t=%llu: ",
				   (unsigned long long) s->now);
	va_start(ap, fmt);
	vsnprintf(s->failure + len, sizeof(s->failure) - (size_t) len, fmt, ap);
	va_end(ap);
}

static void
trace(sim *s, const char *fmt,...)
{
	va_list		ap;

	if (!s->opts.verbose)
		return;
	fprintf(stderr, "[t=%llu] ", (unsigned long long) s->now);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static sim_node *
node_of(sim *s, int id)
{
	if (id < 1 || id > SIM_MAX_NODES)
		return NULL;
	return &s->nodes[id - 1];
}

static void
msg_copy(raft_message *dst, const raft_message *src)
{
	size_t		i;

	*dst = *src;
	dst->entries = NULL;
	if (src->num_entries > 0)
	{
		dst->entries = xmalloc(src->num_entries * sizeof(raft_entry));
		for (i = 0; i < src->num_entries; i++)
		{
			dst->entries[i] = src->entries[i];
			dst->entries[i].data = xmemdup(src->entries[i].data, src->entries[i].len);
		}
	}
	dst->snapshot.data = xmemdup(src->snapshot.data, src->snapshot.len);
}

static void
msg_free(raft_message *m)
{
	size_t		i;

	for (i = 0; i < m->num_entries; i++)
		free((void *) m->entries[i].data);
	free(m->entries);
	free((void *) m->snapshot.data);
	m->entries = NULL;
	m->num_entries = 0;
	m->snapshot.data = NULL;
}

/*----------
 * Registries
 *----------
 */

static committed_slot *
committed_at(sim *s, raft_index index)
{
	grow((void **) &s->committed, &s->committed_cap, (size_t) index + 1,
		 sizeof(committed_slot));
	return &s->committed[index];
}

/* I2: one chain hash per (index, term) across all nodes and all time. */
static void
registry_check(sim *s, int node_id, raft_index index, raft_term term,
			   uint64_t chain)
{
	size_t		pos;

	if (s->registry_count * 2 >= s->registry_cap)
	{
		reg_slot   *old = s->registry;
		size_t		old_cap = s->registry_cap;
		size_t		i;

		s->registry_cap = old_cap == 0 ? 1024 : old_cap * 2;
		s->registry = xmalloc(s->registry_cap * sizeof(reg_slot));
		memset(s->registry, 0, s->registry_cap * sizeof(reg_slot));
		s->registry_count = 0;
		for (i = 0; i < old_cap; i++)
		{
			if (old[i].used)
			{
				pos = mix64(old[i].index * 31 + old[i].term) & (s->registry_cap - 1);
				while (s->registry[pos].used)
					pos = (pos + 1) & (s->registry_cap - 1);
				s->registry[pos] = old[i];
				s->registry_count++;
			}
		}
		free(old);
	}
	pos = mix64(index * 31 + term) & (s->registry_cap - 1);
	while (s->registry[pos].used)
	{
		if (s->registry[pos].index == index && s->registry[pos].term == term)
		{
			if (s->registry[pos].chain != chain)
				fail(s, "I2 log matching violated: node %d entry (index %llu, term %llu) has a different prefix than another log",
					 node_id, (unsigned long long) index, (unsigned long long) term);
			return;
		}
		pos = (pos + 1) & (s->registry_cap - 1);
	}
	s->registry[pos].used = true;
	s->registry[pos].index = index;
	s->registry[pos].term = term;
	s->registry[pos].chain = chain;
	s->registry_count++;
}

/* I4: record or compare the committed entry at index. */
static void
committed_check(sim *s, int node_id, raft_index index, raft_term term,
				uint64_t chain, const char *what)
{
	committed_slot *slot = committed_at(s, index);

	if (slot->known)
	{
		if (slot->chain != chain || slot->term != term)
			fail(s, "I4 committed entry changed: node %d %s index %llu term %llu, but term %llu was committed there",
				 node_id, what, (unsigned long long) index,
				 (unsigned long long) term, (unsigned long long) slot->term);
		return;
	}
	slot->known = true;
	slot->term = term;
	slot->chain = chain;
	if (index > s->max_committed)
		s->max_committed = index;
}

/*----------
 * Disk and shadow
 *----------
 */

static void
shadow_set(sim_node *n, raft_index index, raft_term term, uint64_t chain)
{
	grow((void **) &n->shadow, &n->shadow_cap, (size_t) index + 1, sizeof(shadow_slot));
	n->shadow[index].term = term;
	n->shadow[index].chain = chain;
	n->shadow[index].known = true;
}

static const shadow_slot *
shadow_at(const sim_node *n, raft_index index)
{
	if (index > n->shadow_last || index >= n->shadow_cap || !n->shadow[index].known)
		return NULL;
	return &n->shadow[index];
}

static void
shadow_reset(sim_node *n)
{
	if (n->shadow != NULL)
		memset(n->shadow, 0, n->shadow_cap * sizeof(shadow_slot));
	n->shadow_last = 0;
	shadow_set(n, 0, 0, 0);
}

static raft_index
disk_last_index(const sim_node *n)
{
	return n->disk_snap.index + n->disk_count;
}

/* chain of the durable entry at index, false if not on disk */
static bool
disk_chain_at(const sim_node *n, raft_index index, uint64_t *chain)
{
	if (index == n->disk_snap.index)
	{
		*chain = n->disk_snap_chain;
		return true;
	}
	if (index < n->disk_snap.index || index > disk_last_index(n))
		return false;
	*chain = n->disk_log[index - n->disk_snap.index - 1].chain;
	return true;
}

static void
disk_entry_free(disk_entry *d)
{
	free((void *) d->entry.data);
	d->entry.data = NULL;
}

static void
disk_truncate_from(sim_node *n, raft_index index)
{
	size_t		keep;
	size_t		k;

	if (index > disk_last_index(n))
		return;
	keep = index <= n->disk_snap.index ? 0 : (size_t) (index - n->disk_snap.index - 1);
	for (k = keep; k < n->disk_count; k++)
		disk_entry_free(&n->disk_log[k]);
	n->disk_count = keep;
}

static void
disk_compact_to(sim_node *n, raft_index index)
{
	size_t		drop;
	size_t		k;

	if (index <= n->disk_snap.index)
		return;
	drop = (size_t) (index - n->disk_snap.index);
	if (drop > n->disk_count)
		drop = n->disk_count;
	for (k = 0; k < drop; k++)
		disk_entry_free(&n->disk_log[k]);
	memmove(n->disk_log, n->disk_log + drop, (n->disk_count - drop) * sizeof(disk_entry));
	n->disk_count -= drop;
}

static void
disk_clear(sim_node *n)
{
	size_t		k;

	for (k = 0; k < n->disk_count; k++)
		disk_entry_free(&n->disk_log[k]);
	n->disk_count = 0;
}

static void
sync_free(pending_sync *ps)
{
	size_t		i;

	free(ps->snap_data);
	for (i = 0; i < ps->num_entries; i++)
		disk_entry_free(&ps->entries[i]);
	free(ps->entries);
	for (i = 0; i < ps->num_msgs; i++)
		msg_free(&ps->msgs[i]);
	free(ps->msgs);
	memset(ps, 0, sizeof(*ps));
}

/*----------
 * Snapshots: a deterministic blob derived from the state machine, so the
 * receiver can verify every byte after a chunked transfer.
 *----------
 */

static void
put64(uint8_t *p, uint64_t v)
{
	int			i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}

static uint64_t
get64(const uint8_t *p)
{
	uint64_t	v = 0;
	int			i;

	for (i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint8_t
blob_byte(uint64_t chain, size_t pos)
{
	return (uint8_t) mix64(chain + pos * UINT64_C(0x9E3779B97F4A7C15));
}

static uint8_t *
snapshot_blob(raft_index index, raft_term term, uint64_t chain, size_t body,
			  size_t *len)
{
	uint8_t    *blob = xmalloc(SNAP_HEADER_BYTES + body);
	size_t		i;

	put64(blob, index);
	put64(blob + 8, term);
	put64(blob + 16, chain);
	put64(blob + 24, body);
	for (i = 0; i < body; i++)
		blob[SNAP_HEADER_BYTES + i] = blob_byte(chain, i);
	*len = SNAP_HEADER_BYTES + body;
	return blob;
}

static bool
snapshot_blob_verify(const uint8_t *blob, size_t len, const raft_snapshot_meta *meta,
					 uint64_t *chain)
{
	size_t		body;
	size_t		i;

	if (len < SNAP_HEADER_BYTES)
		return false;
	body = (size_t) get64(blob + 24);
	if (get64(blob) != meta->index || get64(blob + 8) != meta->term ||
		len != SNAP_HEADER_BYTES + body)
		return false;
	*chain = get64(blob + 16);
	for (i = 0; i < body; i++)
	{
		if (blob[SNAP_HEADER_BYTES + i] != blob_byte(*chain, i))
			return false;
	}
	return true;
}

static int
snapshot_read_cb(void *ctx, raft_index index, uint64_t offset, uint8_t *buf,
				 size_t cap, size_t *len, bool *done)
{
	sim_node   *n = ctx;
	size_t		avail;

	if (n->disk_snap.index != index || n->disk_snap_data == NULL ||
		offset > n->disk_snap_len)
		return RAFT_ERR_INVALID;
	avail = n->disk_snap_len - (size_t) offset;
	*len = avail < cap ? avail : cap;
	memcpy(buf, n->disk_snap_data + offset, *len);
	*done = (offset + *len == n->disk_snap_len);
	return RAFT_OK;
}

/*
 * The engine reads back a payload it dropped.  I11: it may ask only for an
 * entry that is on this node's durable log with that term and length (it
 * dropped only applied, hence durable, payloads).
 */
static int
entry_read_cb(void *ctx, raft_index index, raft_term term, uint8_t *buf, size_t len)
{
	sim_node   *n = ctx;
	const raft_entry *e;

	if (index <= n->disk_snap.index || index > disk_last_index(n))
	{
		fail(n->owner, "I11 node %d read back entry %llu, not on its durable log %llu..%llu",
			 n->id, (unsigned long long) index,
			 (unsigned long long) n->disk_snap.index + 1,
			 (unsigned long long) disk_last_index(n));
		return RAFT_ERR_INVALID;
	}
	e = &n->disk_log[index - n->disk_snap.index - 1].entry;
	if (e->term != term || e->len != len)
	{
		fail(n->owner, "I11 node %d read back entry %llu as term %llu, %zu bytes; its disk has term %llu, %zu bytes",
			 n->id, (unsigned long long) index, (unsigned long long) term, len,
			 (unsigned long long) e->term, e->len);
		return RAFT_ERR_INVALID;
	}
	memcpy(buf, e->data, len);
	n->owner->read_backs++;
	return RAFT_OK;
}

/*----------
 * Network
 *----------
 */

static void
net_push(sim *s, const raft_message *m, uint64_t delay)
{
	net_msg    *slot;

	grow((void **) &s->net, &s->net_cap, s->net_count + 1, sizeof(net_msg));
	slot = &s->net[s->net_count++];
	msg_copy(&slot->msg, m);
	slot->deliver_at = s->now + delay;
	slot->seq = s->msg_seq++;
}

static void
net_send(sim *s, const raft_message *m)
{
	if (m->to < 1 || m->to > SIM_MAX_NODES)
	{
		fail(s, "message to invalid node %llu", (unsigned long long) m->to);
		return;
	}
	if (s->link_down[m->from][m->to])
		return;
	if (!s->opts.manual && rng_ppm(s, s->opts.drop_ppm))
		return;
	net_push(s, m, s->opts.manual ? 0 : rng_below(s, s->opts.max_net_delay + 1));
	if (!s->opts.manual && rng_ppm(s, s->opts.dup_ppm))
		net_push(s, m, rng_below(s, s->opts.max_net_delay + 2));
}

static void process_ready(sim *s, sim_node *n);

static void
net_remove(sim *s, size_t pos, net_msg *out)
{
	*out = s->net[pos];
	s->net[pos] = s->net[s->net_count - 1];
	s->net_count--;
}

static void
deliver(sim *s, net_msg *nm)
{
	sim_node   *dst = node_of(s, (int) nm->msg.to);
	int			rc;

	if (dst == NULL || !dst->exists || !dst->up ||
		s->link_down[nm->msg.from][nm->msg.to])
	{
		msg_free(&nm->msg);
		return;
	}
	trace(s, "deliver %s %llu->%llu term %llu idx %llu n=%zu commit %llu rej %d",
		  raft_message_type_name(nm->msg.type),
		  (unsigned long long) nm->msg.from, (unsigned long long) nm->msg.to,
		  (unsigned long long) nm->msg.term, (unsigned long long) nm->msg.index,
		  nm->msg.num_entries, (unsigned long long) nm->msg.commit, nm->msg.reject);
	rc = raft_step(dst->raft, &nm->msg);
	msg_free(&nm->msg);
	if (rc != RAFT_OK)
	{
		fail(s, "raft_step on node %d returned %d", dst->id, rc);
		return;
	}
	process_ready(s, dst);
}

/*----------
 * Ready processing and checks
 *----------
 */

static int
count_voters_with(sim *s, const raft_conf_state *conf, raft_index index,
				  uint64_t chain)
{
	uint32_t	i;
	int			count = 0;

	for (i = 0; i < conf->num_voters; i++)
	{
		sim_node   *v = node_of(s, (int) conf->voters[i]);
		uint64_t	c;

		if (v == NULL || !v->exists)
			continue;
		if (v->disk_snap.index > index ||
			(disk_chain_at(v, index, &c) && c == chain))
			count++;
	}
	return count;
}

static void
check_ready(sim *s, sim_node *n, const raft_ready *rd, const raft_status *st)
{
	size_t		i;
	raft_index	c;
	bool		new_leadership;

	/* I1 */
	if (rd->role == RAFT_LEADER)
	{
		grow((void **) &s->leader_of_term, &s->leader_of_term_cap,
			 (size_t) st->term + 1, sizeof(int));
		if (s->leader_of_term[st->term] == 0)
		{
			s->leader_of_term[st->term] = n->id;
			s->elections++;
			trace(s, "node %d leads term %llu", n->id, (unsigned long long) st->term);
		}
		else if (s->leader_of_term[st->term] != n->id)
			fail(s, "I1 two leaders in term %llu: nodes %d and %d",
				 (unsigned long long) st->term, s->leader_of_term[st->term], n->id);
	}

	/* shadow update: snapshot install, then entries (I2, I3) */
	if (rd->snapshot != NULL)
	{
		uint64_t	chain;

		if (!snapshot_blob_verify(n->staging, n->staging_len, rd->snapshot, &chain))
		{
			fail(s, "node %d: received snapshot at %llu is corrupt or incomplete",
				 n->id, (unsigned long long) rd->snapshot->index);
			return;
		}
		shadow_reset(n);
		shadow_set(n, rd->snapshot->index, rd->snapshot->term, chain);
		n->shadow_last = rd->snapshot->index;
		registry_check(s, n->id, rd->snapshot->index, rd->snapshot->term, chain);
		/* a snapshot is committed state */
		committed_check(s, n->id, rd->snapshot->index, rd->snapshot->term, chain,
						"installed snapshot at");
		n->sm_index = rd->snapshot->index;
		n->sm_chain = chain;
		s->installs++;
	}
	if (rd->num_entries > 0)
	{
		raft_index	first = rd->entries[0].index;

		if (first <= n->shadow_last && rd->role == RAFT_LEADER &&
			n->last_role == RAFT_LEADER && n->last_term == st->term)
			fail(s, "I3 leader %d truncated its own log at %llu in term %llu",
				 n->id, (unsigned long long) first, (unsigned long long) st->term);
		if (first > n->shadow_last + 1 || shadow_at(n, first - 1) == NULL)
		{
			fail(s, "node %d: ready entries start at %llu, log ends at %llu",
				 n->id, (unsigned long long) first, (unsigned long long) n->shadow_last);
			return;
		}
		for (i = 0; i < rd->num_entries; i++)
		{
			const raft_entry *e = &rd->entries[i];
			uint64_t	chain = chain_next(n->shadow[e->index - 1].chain, e);

			shadow_set(n, e->index, e->term, chain);
			n->shadow_last = e->index;
			registry_check(s, n->id, e->index, e->term, chain);
		}
	}

	/* I7: commit is monotonic within an incarnation */
	if (st->commit < n->last_commit)
		fail(s, "I7 node %d commit went back from %llu to %llu",
			 n->id, (unsigned long long) n->last_commit, (unsigned long long) st->commit);

	/* I5: a leader commits only what a quorum has durably */
	if (rd->role == RAFT_LEADER && st->commit > n->last_commit)
	{
		const shadow_slot *slot = shadow_at(n, st->commit);

		if (slot != NULL &&
			count_voters_with(s, &st->conf, st->commit, slot->chain) <
			(int) (st->conf.num_voters / 2 + 1))
			fail(s, "I5 leader %d committed %llu (term %llu) but it is durable on less than a quorum",
				 n->id, (unsigned long long) st->commit, (unsigned long long) slot->term);
	}

	/* I4: committed entries, as seen by this node */
	for (c = n->recorded_commit + 1; c <= st->commit; c++)
	{
		const shadow_slot *slot = shadow_at(n, c);

		if (slot != NULL)
			committed_check(s, n->id, c, slot->term, slot->chain, "commits");
	}
	if (st->commit > n->recorded_commit)
		n->recorded_commit = st->commit;

	/* I4: a new leader holds every entry known to be committed */
	new_leadership = rd->role == RAFT_LEADER &&
		(n->last_role != RAFT_LEADER || n->last_term != st->term);
	if (new_leadership && s->max_committed > 0)
	{
		const committed_slot *cs = committed_at(s, s->max_committed);
		const shadow_slot *slot = shadow_at(n, s->max_committed);

		if (s->max_committed > n->shadow_last)
			fail(s, "I4 new leader %d (term %llu) lacks committed index %llu (log ends at %llu)",
				 n->id, (unsigned long long) st->term,
				 (unsigned long long) s->max_committed, (unsigned long long) n->shadow_last);
		else if (slot != NULL && cs->known && slot->chain != cs->chain)
			fail(s, "I4 new leader %d (term %llu) has a different entry at committed index %llu",
				 n->id, (unsigned long long) st->term, (unsigned long long) s->max_committed);
	}
	n->last_commit = st->commit;
}

static void
apply_committed(sim *s, sim_node *n, const raft_ready *rd)
{
	size_t		i;

	for (i = 0; i < rd->num_committed; i++)
	{
		const raft_entry *e = &rd->committed[i];
		uint64_t	chain;
		uint64_t	durable;

		if (e->index != n->sm_index + 1)
		{
			fail(s, "I6 node %d applies %llu after %llu", n->id,
				 (unsigned long long) e->index, (unsigned long long) n->sm_index);
			return;
		}
		chain = chain_next(n->sm_chain, e);
		if (!(n->disk_snap.index >= e->index ||
			  (disk_chain_at(n, e->index, &durable) && durable == chain)))
			fail(s, "I6 node %d applies %llu which is not durable locally",
				 n->id, (unsigned long long) e->index);
		committed_check(s, n->id, e->index, e->term, chain, "applies");
		n->sm_index = e->index;
		n->sm_chain = chain;
	}
}

static void
record_outcomes(sim *s, sim_node *n, const raft_ready *rd)
{
	size_t		i;

	for (i = 0; i < rd->num_outcomes; i++)
	{
		const raft_proposal_outcome *o = &rd->outcomes[i];
		const committed_slot *cs = committed_at(s, o->index);
		outcome_rec *rec;

		if (o->outcome == RAFT_OUTCOME_COMMITTED && (!cs->known || cs->term != o->term))
			fail(s, "I8 node %d reported (term %llu, index %llu) committed, but it was not",
				 n->id, (unsigned long long) o->term, (unsigned long long) o->index);
		if (o->outcome == RAFT_OUTCOME_LOST && (!cs->known || cs->term == o->term))
			fail(s, "I8 node %d reported (term %llu, index %llu) lost, but it committed or is unknown",
				 n->id, (unsigned long long) o->term, (unsigned long long) o->index);
		grow((void **) &s->outcomes, &s->outcomes_cap, s->num_outcomes + 1,
			 sizeof(outcome_rec));
		rec = &s->outcomes[s->num_outcomes++];
		rec->term = o->term;
		rec->index = o->index;
		rec->outcome = o->outcome;
	}
	for (i = 0; i < rd->num_read_states; i++)
	{
		const raft_read_state *rs = &rd->read_states[i];
		size_t		k;

		for (k = 0; k < s->num_reads; k++)
		{
			read_rec   *r = &s->reads[k];

			if (r->context != rs->context || r->done)
				continue;
			r->done = true;
			r->failed = rs->failed;
			r->index = rs->index;
			if (!rs->failed && rs->index < r->min_index)
				fail(s, "I9 stale read on node %d: read index %llu below commit %llu known at request",
					 n->id, (unsigned long long) rs->index, (unsigned long long) r->min_index);
			break;
		}
	}
}

static void
stage_chunks(sim_node *n, const raft_ready *rd)
{
	size_t		i;

	for (i = 0; i < rd->num_snapshot_chunks; i++)
	{
		const raft_snapshot_chunk *c = &rd->snapshot_chunks[i];

		if (c->offset == 0)
			n->staging_len = 0;
		grow((void **) &n->staging, &n->staging_cap, (size_t) c->offset + c->len, 1);
		if (c->len > 0)
			memcpy(n->staging + c->offset, c->data, c->len);
		n->staging_len = (size_t) c->offset + c->len;
	}
}

static void
queue_sync(sim *s, sim_node *n, const raft_ready *rd)
{
	pending_sync *ps;
	size_t		i;

	if (!rd->must_persist && rd->num_persist_messages == 0)
		return;
	if (!rd->must_persist && n->num_syncs == 0)
	{
		/* nothing to wait for: the messages may leave now */
		for (i = 0; i < rd->num_persist_messages; i++)
			net_send(s, &rd->persist_messages[i]);
		return;
	}
	grow((void **) &n->syncs, &n->syncs_cap, n->num_syncs + 1, sizeof(pending_sync));
	ps = &n->syncs[n->num_syncs++];
	memset(ps, 0, sizeof(*ps));
	if (rd->snapshot != NULL)
	{
		ps->has_snapshot = true;
		ps->snap_meta = *rd->snapshot;
		ps->snap_data = xmemdup(n->staging, n->staging_len);
		ps->snap_len = n->staging_len;
		snapshot_blob_verify(n->staging, n->staging_len, rd->snapshot, &ps->snap_chain);
	}
	if (rd->num_entries > 0)
	{
		ps->entries = xmalloc(rd->num_entries * sizeof(disk_entry));
		ps->num_entries = rd->num_entries;
		for (i = 0; i < rd->num_entries; i++)
		{
			const shadow_slot *slot = shadow_at(n, rd->entries[i].index);

			ps->entries[i].entry = rd->entries[i];
			ps->entries[i].entry.data = xmemdup(rd->entries[i].data, rd->entries[i].len);
			ps->entries[i].chain = slot != NULL ? slot->chain : 0;
		}
	}
	ps->hs_changed = rd->hard_state_changed;
	ps->hs = rd->hard_state;
	if (rd->num_persist_messages > 0)
	{
		ps->msgs = xmalloc(rd->num_persist_messages * sizeof(raft_message));
		ps->num_msgs = rd->num_persist_messages;
		for (i = 0; i < rd->num_persist_messages; i++)
			msg_copy(&ps->msgs[i], &rd->persist_messages[i]);
	}
	ps->persist_term = rd->persist_term;
	ps->persist_index = rd->persist_index;
	trace(s, "node %d queues fsync: snapshot %d, entries %llu..%llu, commit %llu, %zu msgs",
		  n->id, rd->snapshot != NULL,
		  (unsigned long long) (rd->num_entries ? rd->entries[0].index : 0),
		  (unsigned long long) (rd->num_entries ? rd->entries[rd->num_entries - 1].index : 0),
		  (unsigned long long) rd->hard_state.commit, rd->num_persist_messages);
	ps->ready_at = s->now + (s->opts.manual ? 0 : rng_below(s, s->opts.max_disk_delay + 1));
}

static void
process_ready(sim *s, sim_node *n)
{
	int			guard = 0;

	while (n->up && !s->failed && raft_has_ready(n->raft) && guard++ < 1000)
	{
		raft_ready	rd;
		raft_status st;
		size_t		i;

		raft_ready_get(n->raft, &rd);
		raft_get_status(n->raft, &st);
		stage_chunks(n, &rd);
		check_ready(s, n, &rd, &st);
		for (i = 0; i < rd.num_messages; i++)
			net_send(s, &rd.messages[i]);
		queue_sync(s, n, &rd);
		apply_committed(s, n, &rd);
		record_outcomes(s, n, &rd);
		raft_advance(n->raft, &rd);
		n->last_role = rd.role;
		n->last_term = st.term;
	}
}

/* Make the oldest pending fsync of a node durable. */
static void
complete_sync(sim *s, sim_node *n)
{
	pending_sync ps;
	size_t		i;
	raft_term	persist_term;
	raft_index	persist_index;

	if (n->num_syncs == 0)
		return;
	ps = n->syncs[0];
	memmove(n->syncs, n->syncs + 1, (n->num_syncs - 1) * sizeof(pending_sync));
	n->num_syncs--;
	trace(s, "node %d fsync done: persisted (%llu, %llu), durable log %llu..%llu",
		  n->id, (unsigned long long) ps.persist_term,
		  (unsigned long long) ps.persist_index,
		  (unsigned long long) n->disk_snap.index + 1,
		  (unsigned long long) disk_last_index(n));

	if (ps.has_snapshot)
	{
		disk_clear(n);
		free(n->disk_snap_data);
		n->disk_snap = ps.snap_meta;
		n->disk_snap_data = ps.snap_data;
		n->disk_snap_len = ps.snap_len;
		n->disk_snap_chain = ps.snap_chain;
		ps.snap_data = NULL;
	}
	if (ps.num_entries > 0)
	{
		raft_index	first = ps.entries[0].entry.index;

		if (first <= n->disk_snap.index || first > disk_last_index(n) + 1)
			fail(s, "node %d: write at %llu leaves a gap after durable log end %llu",
				 n->id, (unsigned long long) first, (unsigned long long) disk_last_index(n));
		else
		{
			disk_truncate_from(n, first);
			grow((void **) &n->disk_log, &n->disk_cap, n->disk_count + ps.num_entries,
				 sizeof(disk_entry));
			for (i = 0; i < ps.num_entries; i++)
			{
				n->disk_log[n->disk_count++] = ps.entries[i];
				ps.entries[i].entry.data = NULL;
			}
		}
	}
	if (ps.hs_changed)
	{
		if (ps.hs.commit < n->disk_hs.commit || ps.hs.term < n->disk_hs.term)
			fail(s, "I7 node %d durable hard state went back (commit %llu->%llu, term %llu->%llu)",
				 n->id, (unsigned long long) n->disk_hs.commit,
				 (unsigned long long) ps.hs.commit,
				 (unsigned long long) n->disk_hs.term, (unsigned long long) ps.hs.term);
		if (ps.hs.commit > disk_last_index(n))
			fail(s, "I7 node %d durable commit %llu beyond durable log end %llu",
				 n->id, (unsigned long long) ps.hs.commit,
				 (unsigned long long) disk_last_index(n));
		n->disk_hs = ps.hs;
	}
	for (i = 0; i < ps.num_msgs; i++)
		net_send(s, &ps.msgs[i]);
	persist_term = ps.persist_term;
	persist_index = ps.persist_index;
	sync_free(&ps);
	if (n->up)
	{
		raft_persisted(n->raft, persist_term, persist_index);
		process_ready(s, n);
	}
}

static void
complete_due_syncs(sim *s, sim_node *n)
{
	int			guard = 0;

	while (n->up && n->num_syncs > 0 && n->syncs[0].ready_at <= s->now &&
		   guard++ < 10000 && !s->failed)
		complete_sync(s, n);
}

/*----------
 * Node lifecycle
 *----------
 */

static void
node_config(sim *s, sim_node *n, raft_config *cfg)
{
	raft_config_init(cfg);
	cfg->id = (raft_node_id) n->id;
	cfg->cluster_id = SIM_CLUSTER_ID;
	cfg->seed = s->opts.seed * 1000003 + (uint64_t) n->incarnation * 7919 + (uint64_t) n->id;
	cfg->election_ticks = s->opts.election_ticks;
	cfg->heartbeat_ticks = s->opts.heartbeat_ticks;
	cfg->pre_vote = s->opts.pre_vote;
	cfg->check_quorum = s->opts.check_quorum;
	cfg->max_msg_entries = s->opts.max_msg_entries;
	cfg->max_msg_bytes = 4096;
	cfg->max_inflight_msgs = s->opts.max_inflight_msgs;
	cfg->max_inflight_bytes = 64 * 1024;
	cfg->snapshot_chunk_bytes = s->opts.snapshot_chunk_bytes;
	cfg->max_uncommitted_bytes = s->opts.max_uncommitted_bytes;
	cfg->snapshot_read = snapshot_read_cb;
	cfg->snapshot_read_ctx = n;
	n->owner = s;
	if (s->opts.read_back)
	{
		cfg->entry_read = entry_read_cb;
		cfg->entry_read_ctx = n;
		cfg->max_cached_bytes = s->opts.cache_bytes;
	}
}

/* Start (or restart) the engine of a node from its disk. */
static void
node_start(sim *s, sim_node *n)
{
	raft_config cfg;
	raft_restore restore;
	raft_entry *entries = NULL;
	raft_status st;
	size_t		k;
	raft_index	i;
	int			rc;

	n->incarnation++;
	node_config(s, n, &cfg);
	memset(&restore, 0, sizeof(restore));
	restore.hard_state = n->disk_hs;
	restore.snapshot = n->disk_snap;
	if (n->disk_count > 0)
	{
		entries = xmalloc(n->disk_count * sizeof(raft_entry));
		for (k = 0; k < n->disk_count; k++)
			entries[k] = n->disk_log[k].entry;
	}
	restore.entries = entries;
	restore.num_entries = n->disk_count;
	restore.applied = n->disk_snap.index;
	rc = raft_node_create(&cfg, &restore, &n->raft);
	free(entries);
	if (rc != RAFT_OK)
	{
		fail(s, "node %d: raft_node_create failed with %d", n->id, rc);
		return;
	}
	n->up = true;

	/* the state machine restarts from the durable snapshot */
	n->sm_index = n->disk_snap.index;
	n->sm_chain = n->disk_snap_chain;
	n->staging_len = 0;

	/* the shadow restarts from the durable log */
	shadow_reset(n);
	shadow_set(n, n->disk_snap.index, n->disk_snap.term, n->disk_snap_chain);
	for (k = 0; k < n->disk_count; k++)
		shadow_set(n, n->disk_log[k].entry.index, n->disk_log[k].entry.term,
				   n->disk_log[k].chain);
	n->shadow_last = disk_last_index(n);

	raft_get_status(n->raft, &st);
	if (st.commit < n->disk_hs.commit)
		fail(s, "I7 node %d restarted with commit %llu below durable commit %llu",
			 n->id, (unsigned long long) st.commit, (unsigned long long) n->disk_hs.commit);
	/* I7: every entry up to the durable commit is durable and unchanged */
	for (i = n->disk_snap.index + 1; i <= n->disk_hs.commit && !s->failed; i++)
	{
		const shadow_slot *slot = shadow_at(n, i);

		if (slot == NULL)
			fail(s, "I7 node %d durable commit %llu but durable log lacks %llu",
				 n->id, (unsigned long long) n->disk_hs.commit, (unsigned long long) i);
		else
			committed_check(s, n->id, i, slot->term, slot->chain, "restarts with");
	}
	n->last_commit = st.commit;
	n->recorded_commit = st.commit;
	n->last_role = RAFT_FOLLOWER;
	n->last_term = st.term;
	trace(s, "node %d starts (incarnation %d) term %llu commit %llu log %llu..%llu",
		  n->id, n->incarnation, (unsigned long long) st.term,
		  (unsigned long long) st.commit, (unsigned long long) st.first_index,
		  (unsigned long long) st.last_index);
	process_ready(s, n);
}

static void
node_init_disk(sim_node *n, int id, const raft_conf_state *conf)
{
	memset(n, 0, sizeof(*n));
	n->id = id;
	n->exists = true;
	if (conf != NULL)
		n->disk_snap.conf = *conf;
}

/*----------
 * Public API
 *----------
 */

void
sim_options_default(sim_options *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->seed = 1;
	opts->num_nodes = 3;
	opts->max_nodes = 3;
	opts->election_ticks = 10;
	opts->heartbeat_ticks = 2;
	opts->pre_vote = true;
	opts->check_quorum = true;
	opts->max_msg_entries = 8;
	opts->max_inflight_msgs = 4;
	opts->snapshot_chunk_bytes = 64;
}

sim *
sim_create(const sim_options *opts)
{
	sim		   *s = xmalloc(sizeof(sim));
	raft_conf_state conf;
	int			i;

	memset(s, 0, sizeof(*s));
	s->opts = *opts;
	if (s->opts.max_nodes < s->opts.num_nodes)
		s->opts.max_nodes = s->opts.num_nodes;
	if (s->opts.max_nodes > SIM_MAX_NODES)
		s->opts.max_nodes = SIM_MAX_NODES;
	s->rng = opts->seed * UINT64_C(0x2545F4914F6CDD1D) + 17;
	memset(&conf, 0, sizeof(conf));
	for (i = 0; i < s->opts.num_nodes; i++)
		conf.voters[conf.num_voters++] = (raft_node_id) (i + 1);
	for (i = 0; i < SIM_MAX_NODES; i++)
		s->nodes[i].id = i + 1;
	for (i = 0; i < s->opts.num_nodes; i++)
		node_init_disk(&s->nodes[i], i + 1, &conf);
	s->next_id = s->opts.num_nodes + 1;
	for (i = 0; i < s->opts.num_nodes; i++)
		node_start(s, &s->nodes[i]);
	return s;
}

static void
node_free(sim_node *n)
{
	size_t		k;

	if (n->raft != NULL)
		raft_node_destroy(n->raft);
	n->raft = NULL;
	for (k = 0; k < n->num_syncs; k++)
		sync_free(&n->syncs[k]);
	free(n->syncs);
	disk_clear(n);
	free(n->disk_log);
	free(n->disk_snap_data);
	free(n->staging);
	free(n->shadow);
}

void
sim_destroy(sim *s)
{
	size_t		k;
	int			i;

	for (i = 0; i < SIM_MAX_NODES; i++)
		node_free(&s->nodes[i]);
	for (k = 0; k < s->net_count; k++)
		msg_free(&s->net[k].msg);
	free(s->net);
	free(s->leader_of_term);
	free(s->registry);
	free(s->committed);
	free(s->outcomes);
	free(s->reads);
	free(s);
}

const char *
sim_failure(const sim *s)
{
	return s->failed ? s->failure : NULL;
}

uint64_t
sim_now(const sim *s)
{
	return s->now;
}

int
sim_messages_in_flight(const sim *s)
{
	return (int) s->net_count;
}

bool
sim_is_up(const sim *s, int node_id)
{
	return node_id >= 1 && node_id <= SIM_MAX_NODES &&
		s->nodes[node_id - 1].exists && s->nodes[node_id - 1].up;
}

void
sim_tick(sim *s, int node_id)
{
	sim_node   *n = node_of(s, node_id);

	if (n == NULL || !n->exists || !n->up || s->failed)
		return;
	raft_tick(n->raft);
	process_ready(s, n);
}

void
sim_tick_all(sim *s)
{
	int			i;

	s->now++;
	for (i = 0; i < SIM_MAX_NODES && !s->failed; i++)
	{
		sim_node   *n = &s->nodes[i];

		if (!n->exists || !n->up)
			continue;
		if (!s->opts.manual)
			complete_due_syncs(s, n);
		raft_tick(n->raft);
		process_ready(s, n);
	}
}

/* Deliver messages in send order until none is left (or max_rounds). */
int
sim_deliver_all(sim *s, int max_rounds)
{
	int			delivered = 0;
	int			round;

	for (round = 0; round < max_rounds && s->net_count > 0 && !s->failed; round++)
	{
		size_t		best = 0;
		size_t		k;
		net_msg		nm;

		for (k = 1; k < s->net_count; k++)
		{
			if (s->net[k].seq < s->net[best].seq)
				best = k;
		}
		net_remove(s, best, &nm);
		deliver(s, &nm);
		delivered++;
		if (s->opts.manual)
			sim_sync_all(s);
	}
	return delivered;
}

int
sim_deliver_one(sim *s, int from, int to)
{
	size_t		best = SIZE_MAX;
	size_t		k;
	net_msg		nm;

	for (k = 0; k < s->net_count; k++)
	{
		if ((int) s->net[k].msg.from == from && (int) s->net[k].msg.to == to &&
			(best == SIZE_MAX || s->net[k].seq < s->net[best].seq))
			best = k;
	}
	if (best == SIZE_MAX)
		return 0;
	net_remove(s, best, &nm);
	deliver(s, &nm);
	return 1;
}

void
sim_drop_all(sim *s)
{
	size_t		k;

	for (k = 0; k < s->net_count; k++)
		msg_free(&s->net[k].msg);
	s->net_count = 0;
}

void
sim_sync_node(sim *s, int node_id)
{
	sim_node   *n = node_of(s, node_id);
	int			guard = 0;

	while (n != NULL && n->up && n->num_syncs > 0 && guard++ < 100000 && !s->failed)
		complete_sync(s, n);
}

void
sim_sync_all(sim *s)
{
	int			i;

	for (i = 1; i <= SIM_MAX_NODES; i++)
		sim_sync_node(s, i);
}

void
sim_set_link(sim *s, int from, int to, bool up)
{
	if (from >= 1 && from <= SIM_MAX_NODES && to >= 1 && to <= SIM_MAX_NODES)
		s->link_down[from][to] = !up;
}

void
sim_isolate(sim *s, int node_id)
{
	int			i;

	for (i = 1; i <= SIM_MAX_NODES; i++)
	{
		sim_set_link(s, node_id, i, false);
		sim_set_link(s, i, node_id, false);
	}
}

void
sim_heal_links(sim *s)
{
	memset(s->link_down, 0, sizeof(s->link_down));
}

void
sim_crash(sim *s, int node_id)
{
	sim_node   *n = node_of(s, node_id);
	size_t		k;

	if (n == NULL || !n->exists || !n->up)
		return;
	trace(s, "crash node %d (%zu pending fsyncs lost)", node_id, n->num_syncs);
	s->crashes++;
	raft_node_destroy(n->raft);
	n->raft = NULL;
	n->up = false;
	for (k = 0; k < n->num_syncs; k++)
		sync_free(&n->syncs[k]);
	n->num_syncs = 0;
	n->staging_len = 0;
}

void
sim_restart(sim *s, int node_id)
{
	sim_node   *n = node_of(s, node_id);

	if (n == NULL || !n->exists || n->up || s->failed)
		return;
	node_start(s, n);
}

int
sim_campaign(sim *s, int node_id)
{
	sim_node   *n = node_of(s, node_id);
	int			rc;

	if (n == NULL || !n->up)
		return RAFT_ERR_INVALID;
	rc = raft_campaign(n->raft);
	process_ready(s, n);
	return rc;
}

int
sim_propose(sim *s, int node_id, const char *payload, raft_term *term,
			raft_index *index)
{
	sim_node   *n = node_of(s, node_id);
	int			rc;

	if (n == NULL || !n->up)
		return RAFT_ERR_INVALID;
	rc = raft_propose(n->raft, payload, strlen(payload), term, index);
	process_ready(s, n);
	return rc;
}

int
sim_conf_change(sim *s, int node_id, raft_conf_change_type type, int target)
{
	sim_node   *n = node_of(s, node_id);
	int			rc;

	if (n == NULL || !n->up)
		return RAFT_ERR_INVALID;
	rc = raft_propose_conf_change(n->raft, type, (raft_node_id) target, NULL, NULL);
	if (rc == RAFT_OK && type == RAFT_CONF_REMOVE)
		s->removed[target] = true;
	trace(s, "node %d proposes conf change %d for %d: %d", node_id, type, target, rc);
	process_ready(s, n);
	return rc;
}

/* A new, empty node joins: no membership, no log; the leader feeds it. */
int
sim_add_node(sim *s, int node_id)
{
	sim_node   *n = node_of(s, node_id);

	if (n == NULL || n->exists)
		return RAFT_ERR_INVALID;
	node_init_disk(n, node_id, NULL);
	if (node_id >= s->next_id)
		s->next_id = node_id + 1;
	node_start(s, n);
	return RAFT_OK;
}

/*
 * Take a snapshot of the state machine at its applied index, make it
 * durable, then let the engine and the disk drop the covered log.
 */
int
sim_snapshot(sim *s, int node_id)
{
	sim_node   *n = node_of(s, node_id);
	raft_status st;
	const shadow_slot *slot;
	size_t		len;
	int			rc;

	if (n == NULL || !n->up)
		return RAFT_ERR_INVALID;
	raft_get_status(n->raft, &st);
	/* only state resting on the durable log may become a durable snapshot */
	if (n->sm_index <= n->disk_snap.index || n->sm_index != st.applied ||
		n->sm_index > st.stable)
		return RAFT_ERR_INVALID;
	slot = shadow_at(n, n->sm_index);
	if (slot == NULL)
		return RAFT_ERR_INVALID;
	/* drop the covered durable log first: it is indexed from disk_snap */
	disk_compact_to(n, n->sm_index);
	free(n->disk_snap_data);
	n->disk_snap_data = snapshot_blob(n->sm_index, slot->term, n->sm_chain,
									  (size_t) rng_below(s, 300), &len);
	n->disk_snap_len = len;
	n->disk_snap.index = n->sm_index;
	n->disk_snap.term = slot->term;
	n->disk_snap.conf = st.conf;
	n->disk_snap_chain = n->sm_chain;
	rc = raft_snapshot_taken(n->raft, n->sm_index);
	if (rc == RAFT_OK)
		rc = raft_compact(n->raft, n->sm_index);
	trace(s, "node %d snapshot at %llu", node_id, (unsigned long long) n->sm_index);
	process_ready(s, n);
	return rc;
}

int
sim_transfer(sim *s, int node_id, int target)
{
	sim_node   *n = node_of(s, node_id);
	int			rc;

	if (n == NULL || !n->up)
		return RAFT_ERR_INVALID;
	rc = raft_transfer_leadership(n->raft, (raft_node_id) target);
	process_ready(s, n);
	return rc;
}

int
sim_read_index(sim *s, int node_id, uint64_t context)
{
	sim_node   *n = node_of(s, node_id);
	read_rec   *r;
	int			rc;

	if (n == NULL || !n->up)
		return RAFT_ERR_INVALID;
	grow((void **) &s->reads, &s->reads_cap, s->num_reads + 1, sizeof(read_rec));
	r = &s->reads[s->num_reads++];
	memset(r, 0, sizeof(*r));
	r->context = context;
	r->min_index = s->max_committed;
	rc = raft_read_index(n->raft, context);
	if (rc != RAFT_OK)
		s->num_reads--;
	process_ready(s, n);
	return rc;
}

bool
sim_read_done(const sim *s, uint64_t context, raft_index *index, bool *failed)
{
	size_t		k;

	for (k = 0; k < s->num_reads; k++)
	{
		if (s->reads[k].context == context && s->reads[k].done)
		{
			*index = s->reads[k].index;
			*failed = s->reads[k].failed;
			return true;
		}
	}
	return false;
}

bool
sim_outcome(const sim *s, raft_index index, raft_term term, raft_outcome *outcome)
{
	size_t		k;

	for (k = 0; k < s->num_outcomes; k++)
	{
		if (s->outcomes[k].index == index && s->outcomes[k].term == term)
		{
			*outcome = s->outcomes[k].outcome;
			return true;
		}
	}
	return false;
}

void
sim_status(const sim *s, int node_id, raft_status *status)
{
	const sim_node *n;

	memset(status, 0, sizeof(*status));
	if (node_id < 1 || node_id > SIM_MAX_NODES)
		return;
	n = &s->nodes[node_id - 1];
	if (n->exists && n->up)
		raft_get_status(n->raft, status);
}

raft_index
sim_applied(const sim *s, int node_id)
{
	if (node_id < 1 || node_id > SIM_MAX_NODES)
		return 0;
	return s->nodes[node_id - 1].sm_index;
}

int
sim_leader(const sim *s)
{
	int			best = 0;
	raft_term	best_term = 0;
	int			i;

	for (i = 1; i <= SIM_MAX_NODES; i++)
	{
		raft_status st;

		sim_status(s, i, &st);
		if (st.role == RAFT_LEADER && st.id != 0 && st.term >= best_term)
		{
			best = i;
			best_term = st.term;
		}
	}
	return best;
}

/*----------
 * Random run
 *----------
 */

static int
random_node(sim *s, bool want_up)
{
	int			candidates[SIM_MAX_NODES];
	int			count = 0;
	int			i;

	for (i = 1; i <= SIM_MAX_NODES; i++)
	{
		sim_node   *n = node_of(s, i);

		if (n->exists && n->up == want_up)
			candidates[count++] = i;
	}
	if (count == 0)
		return 0;
	return candidates[rng_below(s, (uint32_t) count)];
}

static void
deliver_random(sim *s)
{
	size_t		eligible = 0;
	size_t		k;
	size_t		pick;
	net_msg		nm;

	for (k = 0; k < s->net_count; k++)
	{
		if (s->net[k].deliver_at <= s->now)
			eligible++;
	}
	if (eligible == 0)
		return;
	pick = rng_below(s, (uint32_t) eligible);
	for (k = 0; k < s->net_count; k++)
	{
		if (s->net[k].deliver_at <= s->now && pick-- == 0)
			break;
	}
	net_remove(s, k, &nm);
	deliver(s, &nm);
}

static bool
has_eligible(const sim *s)
{
	size_t		k;

	for (k = 0; k < s->net_count; k++)
	{
		if (s->net[k].deliver_at <= s->now)
			return true;
	}
	return false;
}

static void
random_partition(sim *s)
{
	int			i;
	int			j;
	int			kind = (int) rng_below(s, 3);

	sim_heal_links(s);
	if (kind == 0)
	{
		/* symmetric split into two groups */
		bool		side[SIM_MAX_NODES + 1];

		for (i = 1; i <= SIM_MAX_NODES; i++)
			side[i] = rng_below(s, 2) == 1;
		for (i = 1; i <= SIM_MAX_NODES; i++)
			for (j = 1; j <= SIM_MAX_NODES; j++)
				if (side[i] != side[j])
					s->link_down[i][j] = true;
		trace(s, "partition: symmetric split");
	}
	else if (kind == 1)
	{
		/* asymmetric: some directed links fail */
		int			cuts = 1 + (int) rng_below(s, 4);

		for (i = 0; i < cuts; i++)
			s->link_down[1 + rng_below(s, SIM_MAX_NODES)][1 + rng_below(s, SIM_MAX_NODES)] = true;
		trace(s, "partition: %d directed links cut", cuts);
	}
	else
	{
		int			victim = 1 + (int) rng_below(s, (uint32_t) s->opts.max_nodes);

		sim_isolate(s, victim);
		trace(s, "partition: node %d isolated", victim);
	}
}

static void
random_membership(sim *s)
{
	int			leader = sim_leader(s);
	raft_status st;
	uint32_t	choice = rng_below(s, 3);

	if (leader == 0)
		return;
	sim_status(s, leader, &st);
	if (choice == 0 && st.conf.num_learners > 0)
	{
		sim_conf_change(s, leader, RAFT_CONF_PROMOTE,
						(int) st.conf.learners[rng_below(s, st.conf.num_learners)]);
	}
	else if (choice == 1 && s->next_id <= s->opts.max_nodes)
	{
		int			id = s->next_id;

		/* the id is spent even if the change never commits */
		sim_add_node(s, id);
		sim_conf_change(s, leader, RAFT_CONF_ADD_LEARNER, id);
	}
	else if (choice == 2)
	{
		uint32_t	members = st.conf.num_voters + st.conf.num_learners;
		uint32_t	pick;
		raft_node_id target;

		if (members == 0)
			return;
		pick = rng_below(s, members);
		target = pick < st.conf.num_voters ? st.conf.voters[pick] :
			st.conf.learners[pick - st.conf.num_voters];
		/* keep at least three voters so that one crash never stalls */
		if (raft_conf_is_voter(&st.conf, target) && st.conf.num_voters <= 3)
			return;
		sim_conf_change(s, leader, RAFT_CONF_REMOVE, (int) target);
	}
}

static void
random_event(sim *s, uint64_t *proposals)
{
	uint32_t	r;

	if (rng_ppm(s, s->opts.storm_ppm))
	{
		/* storm: leaders die or get cut off and come back, often */
		int			leader = sim_leader(s);

		r = rng_below(s, 4);
		if (r == 0)
			sim_crash(s, leader);
		else if (r == 1 && leader != 0)
		{
			sim_heal_links(s);
			sim_isolate(s, leader);
			trace(s, "storm: leader %d isolated", leader);
		}
		else if (r == 2)
			sim_restart(s, random_node(s, false));
		else
			sim_heal_links(s);
		return;
	}
	if (has_eligible(s) && rng_below(s, 100) < 80)
	{
		deliver_random(s);
		return;
	}
	r = rng_below(s, 1000);
	if (r < 450)
		sim_tick_all(s);
	else if (r < 700)
	{
		int			leader = sim_leader(s);
		char		payload[64];

		if (leader != 0)
		{
			snprintf(payload, sizeof(payload), "p%llu-%u",
					 (unsigned long long) (*proposals)++, rng_below(s, 1000000));
			sim_propose(s, leader, payload, NULL, NULL);
		}
	}
	else if (r < 850)
	{
		int			id = random_node(s, true);

		if (id != 0)
			complete_sync(s, node_of(s, id));
	}
	else if (r < 854)
		sim_crash(s, random_node(s, true));
	else if (r < 858)
		sim_crash(s, sim_leader(s));
	else if (r < 880)
		sim_restart(s, random_node(s, false));
	else if (r < 883)
		random_partition(s);
	else if (r < 886)
	{
		int			leader = sim_leader(s);

		/* cut a leader off, often right after its election */
		if (leader != 0)
		{
			sim_heal_links(s);
			sim_isolate(s, leader);
			trace(s, "partition: leader %d isolated", leader);
		}
	}
	else if (r < 896)
	{
		sim_heal_links(s);
		trace(s, "links healed");
	}
	else if (r < 906)
		random_membership(s);
	else if (r < 930)
		sim_snapshot(s, random_node(s, true));
	else if (r < 935)
	{
		int			leader = sim_leader(s);

		if (leader != 0)
			sim_transfer(s, leader, 1 + (int) rng_below(s, (uint32_t) s->opts.max_nodes));
	}
	else if (r < 960)
	{
		int			id = random_node(s, true);

		if (id != 0)
			sim_read_index(s, id, rng_next(s));
	}
	else if (r < 965)
	{
		int			id = random_node(s, true);

		if (id != 0)
			sim_campaign(s, id);
	}
	else
		sim_tick_all(s);
}

static void
dump_status(sim *s)
{
	int			i;

	for (i = 1; i <= SIM_MAX_NODES && s->opts.verbose; i++)
	{
		raft_status st;
		uint32_t	v;

		if (!node_of(s, i)->exists)
			continue;
		sim_status(s, i, &st);
		fprintf(stderr, "  node %d: %s term %llu vote %llu leader %llu commit %llu applied %llu stable %llu log %llu..%llu voters",
				i, raft_role_name(st.role), (unsigned long long) st.term,
				(unsigned long long) st.vote, (unsigned long long) st.leader,
				(unsigned long long) st.commit, (unsigned long long) st.applied,
				(unsigned long long) st.stable, (unsigned long long) st.first_index,
				(unsigned long long) st.last_index);
		for (v = 0; v < st.conf.num_voters; v++)
			fprintf(stderr, " %llu", (unsigned long long) st.conf.voters[v]);
		fprintf(stderr, " learners");
		for (v = 0; v < st.conf.num_learners; v++)
			fprintf(stderr, " %llu", (unsigned long long) st.conf.learners[v]);
		fprintf(stderr, "\n");
	}
}

/*
 * A member of the leader's configuration whose state machine has not
 * reached index yet; 0 when all have, -1 while there is no leader.
 */
static int
lagging_member(sim *s, raft_index index)
{
	int			leader = sim_leader(s);
	raft_status st;
	uint32_t	k;

	if (leader == 0)
		return -1;
	sim_status(s, leader, &st);
	for (k = 0; k < st.conf.num_voters + st.conf.num_learners; k++)
	{
		int			id = (int) (k < st.conf.num_voters ? st.conf.voters[k] :
								st.conf.learners[k - st.conf.num_voters]);

		if (sim_is_up(s, id) && node_of(s, id)->sm_index < index)
			return id;
	}
	return 0;
}

/*
 * I10: remove every fault and require a leader and a committed proposal
 * within HEAL_BOUND_ELECTIONS election timeouts, and then every member to
 * catch up with that proposal (by entries or by snapshot) within as many
 * again.
 */
static void
heal_and_check_progress(sim *s)
{
	sim_options saved = s->opts;
	uint64_t	start = s->now;
	uint64_t	bound = (uint64_t) HEAL_BOUND_ELECTIONS * s->opts.election_ticks;
	raft_term	probe_term = 0;
	raft_index	probe_index = 0;
	int			i;

	sim_heal_links(s);
	s->opts.drop_ppm = 0;
	s->opts.dup_ppm = 0;
	s->opts.max_net_delay = 0;
	s->opts.max_disk_delay = 0;
	for (i = 1; i <= SIM_MAX_NODES; i++)
	{
		if (node_of(s, i)->exists && !node_of(s, i)->up)
			sim_restart(s, i);
	}
	trace(s, "heal: all faults removed");
	while (!s->failed && s->now - start <= bound)
	{
		int			leader;
		raft_outcome outcome;

		sim_deliver_all(s, 100000);
		sim_sync_all(s);
		sim_deliver_all(s, 100000);
		if (probe_index != 0 && sim_outcome(s, probe_index, probe_term, &outcome))
		{
			if (outcome == RAFT_OUTCOME_COMMITTED)
				break;
			probe_index = 0;
		}
		leader = sim_leader(s);
		if (leader != 0)
		{
			raft_status st;

			sim_status(s, leader, &st);
			if (probe_index == 0 || st.term != probe_term)
			{
				raft_term	term;
				raft_index	index;

				if (sim_propose(s, leader, "heal-probe", &term, &index) == RAFT_OK)
				{
					probe_term = term;
					probe_index = index;
				}
			}
		}
		sim_tick_all(s);
	}
	if (!s->failed && s->now - start > bound)
	{
		dump_status(s);
		fail(s, "I10 no committed proposal within %llu ticks after healing",
			 (unsigned long long) bound);
	}
	start = s->now;
	while (!s->failed)
	{
		int			lagging = lagging_member(s, probe_index);

		if (lagging == 0)
			break;
		if (s->now - start > bound)
		{
			dump_status(s);
			fail(s, "I10 member %d did not catch up with index %llu within %llu ticks after healing",
				 lagging, (unsigned long long) probe_index, (unsigned long long) bound);
			break;
		}
		sim_tick_all(s);
		sim_deliver_all(s, 100000);
		sim_sync_all(s);
		sim_deliver_all(s, 100000);
	}
	trace(s, "heal: progress after %llu ticks", (unsigned long long) (s->now - start));
	s->opts.drop_ppm = saved.drop_ppm;
	s->opts.dup_ppm = saved.dup_ppm;
	s->opts.max_net_delay = saved.max_net_delay;
	s->opts.max_disk_delay = saved.max_disk_delay;
}

int
sim_random_run(const sim_options *base, int steps, char *why, size_t why_len,
			   sim_run_stats *stats)
{
	sim_options opts = *base;
	sim		   *s;
	uint64_t	regime;
	uint64_t	proposals = 0;
	int			step;
	int			next_heal;
	int			result = 0;
	static const uint32_t drops[] = {0, 10000, 50000, 200000};
	static const uint32_t dups[] = {0, 10000, 50000};
	static const uint32_t net_delays[] = {0, 1, 3, 6};
	static const uint32_t disk_delays[] = {0, 1, 3};

	/* each seed also picks its own fault regime */
	regime = mix64(opts.seed ^ UINT64_C(0x5EED));
	opts.drop_ppm = drops[regime % 4];
	opts.dup_ppm = dups[(regime >> 8) % 3];
	opts.max_net_delay = net_delays[(regime >> 16) % 4];
	opts.max_disk_delay = disk_delays[(regime >> 24) % 3];
	/* a quarter of the seeds run without pre-vote or check-quorum */
	opts.pre_vote = ((regime >> 48) % 8) != 0;
	opts.check_quorum = ((regime >> 52) % 8) != 1;
	/* small batches and pipelines split a new leader's catch-up traffic */
	opts.max_msg_entries = (uint32_t[]) {1, 2, 4, 8, 64}[(regime >> 32) % 5];
	opts.max_inflight_msgs = (uint32_t[]) {1, 2, 4, 16}[(regime >> 40) % 4];
	opts.storm_ppm = (uint32_t[]) {0, 2000, 10000}[(regime >> 56) % 3];
	opts.max_uncommitted_bytes = ((regime >> 60) % 2) ? 512 : 0;
	/* half the seeds drop applied payloads: all of them, or beyond a few */
	regime = mix64(opts.seed ^ UINT64_C(0xCAC4E));
	opts.read_back = (regime % 2) != 0;
	opts.cache_bytes = (uint64_t[]) {0, 16, 64, 256}[(regime >> 8) % 4];
	opts.max_nodes = opts.num_nodes + 2;
	if (opts.max_nodes > SIM_MAX_NODES)
		opts.max_nodes = SIM_MAX_NODES;

	s = sim_create(&opts);
	next_heal = 300 + (int) rng_below(s, 1500);
	for (step = 0; step < steps && !s->failed; step++)
	{
		if (step == next_heal)
		{
			heal_and_check_progress(s);
			next_heal = step + 300 + (int) rng_below(s, 1500);
		}
		random_event(s, &proposals);
	}
	if (!s->failed)
		heal_and_check_progress(s);
	if (s->failed)
	{
		snprintf(why, why_len, "%s", s->failure);
		result = 1;
	}
	else
		snprintf(why, why_len, "ok: %llu leaderships, commit %llu, %llu ticks",
				 (unsigned long long) s->elections,
				 (unsigned long long) s->max_committed,
				 (unsigned long long) s->now);
	if (stats != NULL)
	{
		stats->leaderships = s->elections;
		stats->committed = s->max_committed;
		stats->ticks = s->now;
		stats->crashes = s->crashes;
		stats->snapshots_installed = s->installs;
		stats->read_backs = s->read_backs;
	}
	sim_destroy(s);
	return result;
}
