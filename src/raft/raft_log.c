/*-------------------------------------------------------------------------
 *
 * raft_log.c
 *	  The engine's in-memory copy of the Raft log.
 *
 * The log holds the entries after the last compaction point (snap_index),
 * in index order without gaps, each with a private copy of its payload.
 * Invariants:
 *	- entries[k].index == snap_index + 1 + k;
 *	- terms never decrease along the log;
 *	- the term of the compacted entry at snap_index is kept (snap_term) so
 *	  that an APPEND whose previous entry is exactly snap_index can still be
 *	  checked.
 *
 * Payloads of applied entries may be dropped oldest first (cache_from
 * moves up; raft.c decides when, within cfg.max_cached_bytes); such an
 * entry keeps its term, type and length and has data NULL.
 *
 * Persistence: this file does no I/O.  The caller (raft.c) decides which
 * suffix must be handed to storage; removed payloads are not freed here but
 * put into the node's graveyard, because an outgoing message may still
 * point at them until raft_advance().
 *
 * src/raft/raft_log.c
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "raft_int.h"

raft_index
raft_log_first_index(const raft_log *log)
{
	return log->snap_index + 1;
}

raft_index
raft_log_last_index(const raft_log *log)
{
	return log->snap_index + log->count;
}

raft_term
raft_log_last_term(const raft_log *log)
{
	if (log->count == 0)
		return log->snap_term;
	return log->entries[log->count - 1].term;
}

/*
 * Term of the entry at index.  Returns false when the index is compacted
 * (below snap_index) or beyond the end of the log.
 */
bool
raft_log_term_at(const raft_log *log, raft_index index, raft_term *term)
{
	if (index == log->snap_index)
	{
		*term = log->snap_term;
		return true;
	}
	if (index < log->snap_index || index > raft_log_last_index(log))
		return false;
	*term = log->entries[index - log->snap_index - 1].term;
	return true;
}

/* Term at index, 0 when unknown: 0 never matches a real term. */
raft_term
raft_log_term_or_zero(const raft_log *log, raft_index index)
{
	raft_term	term;

	if (!raft_log_term_at(log, index, &term))
		return 0;
	return term;
}

const raft_entry *
raft_log_entry(const raft_log *log, raft_index index)
{
	if (index <= log->snap_index || index > raft_log_last_index(log))
		return NULL;
	return &log->entries[index - log->snap_index - 1];
}

/*
 * Append a copy of entry.  Its payload is copied too, or with adopt taken
 * over as it is (allocated with the node's allocator); a restored entry may
 * come without one, see raft_restore.  The entry must carry the next
 * index.  Returns false on allocation failure (an adopted payload is then
 * still the caller's).
 */
bool
raft_log_append(raft_node *node, raft_log *log, const raft_entry *entry, bool adopt)
{
	raft_entry *slot;
	uint8_t    *data = NULL;

	RAFT_ASSERT(entry->index == raft_log_last_index(log) + 1);
	RAFT_ASSERT(entry->term >= raft_log_last_term(log));

	if (log->count == log->cap)
	{
		size_t		new_cap = log->cap == 0 ? 256 : log->cap * 2;
		raft_entry *entries = raft_mem_realloc(node, log->entries,
											   new_cap * sizeof(raft_entry));

		if (entries == NULL)
			return false;
		log->entries = entries;
		log->cap = new_cap;
	}
	if (entry->len > 0 && entry->data != NULL && adopt)
		data = (uint8_t *) entry->data;
	else if (entry->len > 0 && entry->data != NULL)
	{
		data = raft_mem_alloc(node, entry->len);
		if (data == NULL)
			return false;
		memcpy(data, entry->data, entry->len);
	}
	slot = &log->entries[log->count];
	slot->term = entry->term;
	slot->index = entry->index;
	slot->type = entry->type;
	slot->data = data;
	slot->len = entry->len;
	log->count++;
	return true;
}

/* Remove the entries at index and after (a conflicting suffix). */
void
raft_log_truncate_from(raft_node *node, raft_log *log, raft_index index)
{
	size_t		keep;
	size_t		k;

	RAFT_ASSERT(index > log->snap_index);
	if (index > raft_log_last_index(log))
		return;
	keep = (size_t) (index - log->snap_index - 1);
	for (k = keep; k < log->count; k++)
		raft_graveyard_add(node, (void *) log->entries[k].data);
	log->count = keep;
	if (log->cache_from > index)
		log->cache_from = index;
}

/* Drop the entries up to and including index (covered by a snapshot). */
void
raft_log_compact_to(raft_node *node, raft_log *log, raft_index index)
{
	size_t		drop;
	size_t		k;
	raft_term	term;

	if (index <= log->snap_index)
		return;
	RAFT_ASSERT(index <= raft_log_last_index(log));
	term = raft_log_term_or_zero(log, index);
	drop = (size_t) (index - log->snap_index);
	for (k = 0; k < drop; k++)
		raft_graveyard_add(node, (void *) log->entries[k].data);
	memmove(log->entries, log->entries + drop,
			(log->count - drop) * sizeof(raft_entry));
	log->count -= drop;
	log->snap_index = index;
	log->snap_term = term;
	if (log->cache_from <= index)
		log->cache_from = index + 1;
}

/* Discard everything: the log restarts right after a snapshot. */
void
raft_log_reset(raft_node *node, raft_log *log, raft_index snap_index,
			   raft_term snap_term)
{
	size_t		k;

	for (k = 0; k < log->count; k++)
		raft_graveyard_add(node, (void *) log->entries[k].data);
	log->count = 0;
	log->snap_index = snap_index;
	log->snap_term = snap_term;
	log->cache_from = snap_index + 1;
}

/*
 * Drop the payload of the entry at cache_from (the caller checked it is
 * applied) unless it is a membership change, and move cache_from past it.
 * Returns the payload bytes that left memory.
 */
size_t
raft_log_drop_oldest_payload(raft_node *node, raft_log *log)
{
	raft_entry *e;
	size_t		len = 0;

	RAFT_ASSERT(log->cache_from > log->snap_index &&
				log->cache_from <= raft_log_last_index(log));
	e = &log->entries[log->cache_from - log->snap_index - 1];
	if (e->type == RAFT_ENTRY_NORMAL && e->data != NULL)
	{
		raft_graveyard_add(node, (void *) e->data);
		e->data = NULL;
		len = e->len;
	}
	log->cache_from++;
	return len;
}

void
raft_log_destroy(raft_node *node, raft_log *log)
{
	size_t		k;

	for (k = 0; k < log->count; k++)
		raft_mem_free(node, (void *) log->entries[k].data);
	raft_mem_free(node, log->entries);
	log->entries = NULL;
	log->count = 0;
	log->cap = 0;
}
