/*-------------------------------------------------------------------------
 *
 * raft_mem.c
 *	  Memory management of the Raft engine: the injectable allocator, the
 *	  ready-lifetime arena and the deferred-free graveyard.
 *
 * Everything a ready points to must stay valid until raft_advance().  Two
 * mechanisms guarantee that:
 *	- data created while stepping (message entry arrays, staged snapshot
 *	  chunks, snapshot bytes read for sending) is carved from the arena,
 *	  which is reset only by raft_advance();
 *	- entry payloads removed from the log (truncation, compaction) may still
 *	  be referenced by an outgoing message, so they go to the graveyard and
 *	  are freed only by raft_advance().
 *
 * An allocation failure marks the node broken (node->broken).  A broken
 * node produces no further output; the caller must destroy it and recreate
 * it from durable state, exactly as after a crash.  This keeps every path
 * simple and never hands out a half-updated state.  No persistence rules
 * live here.
 *
 * src/raft/raft_mem.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "raft_int.h"

static void *
default_alloc(void *ctx, size_t size)
{
	(void) ctx;
	return malloc(size);
}

static void *
default_realloc(void *ctx, void *ptr, size_t size)
{
	(void) ctx;
	return realloc(ptr, size);
}

static void
default_free(void *ctx, void *ptr)
{
	(void) ctx;
	free(ptr);
}

void
raft_allocator_resolve(const raft_allocator *in, raft_allocator *out)
{
	if (in != NULL && in->alloc != NULL && in->realloc != NULL && in->free != NULL)
		*out = *in;
	else
	{
		out->alloc = default_alloc;
		out->realloc = default_realloc;
		out->free = default_free;
		out->ctx = NULL;
	}
}

#define RAFT_ARENA_BLOCK_SIZE	(64 * 1024)
#define RAFT_ARENA_HEADER		((sizeof(raft_arena_block) + 15) & ~(size_t) 15)

void *
raft_mem_alloc(raft_node *node, size_t size)
{
	void	   *ptr;

	if (size == 0)
		size = 1;
	ptr = node->cfg.allocator.alloc(node->cfg.allocator.ctx, size);
	if (ptr == NULL)
		node->broken = true;
	return ptr;
}

void *
raft_mem_realloc(raft_node *node, void *ptr, size_t size)
{
	void	   *result;

	if (size == 0)
		size = 1;
	result = node->cfg.allocator.realloc(node->cfg.allocator.ctx, ptr, size);
	if (result == NULL)
		node->broken = true;
	return result;
}

void
raft_mem_free(raft_node *node, void *ptr)
{
	if (ptr != NULL)
		node->cfg.allocator.free(node->cfg.allocator.ctx, ptr);
}

/*
 * Carve size bytes (16-byte aligned) from the arena.  Blocks are kept after
 * a reset, so a steady-state node allocates nothing here.
 */
void *
raft_arena_alloc(raft_node *node, size_t size)
{
	raft_arena_block *block = node->arena.head;
	raft_arena_block *prev = NULL;
	size_t		aligned = (size + 15) & ~(size_t) 15;
	size_t		block_cap;

	/* first fit among the existing blocks */
	while (block != NULL)
	{
		if (block->cap - block->used >= aligned)
		{
			void	   *ptr = (char *) block + RAFT_ARENA_HEADER + block->used;

			block->used += aligned;
			return ptr;
		}
		prev = block;
		block = block->next;
	}

	block_cap = aligned > RAFT_ARENA_BLOCK_SIZE ? aligned : RAFT_ARENA_BLOCK_SIZE;
	block = raft_mem_alloc(node, RAFT_ARENA_HEADER + block_cap);
	if (block == NULL)
		return NULL;
	block->next = NULL;
	block->cap = block_cap;
	block->used = aligned;
	if (prev == NULL)
		node->arena.head = block;
	else
		prev->next = block;
	return (char *) block + RAFT_ARENA_HEADER;
}

/*
 * Forget all arena data.  Oversized blocks are returned to the allocator so
 * that one huge message does not pin memory forever.
 */
void
raft_arena_reset(raft_node *node)
{
	raft_arena_block *block = node->arena.head;
	raft_arena_block **link = &node->arena.head;

	while (block != NULL)
	{
		raft_arena_block *next = block->next;

		if (block->cap > RAFT_ARENA_BLOCK_SIZE)
		{
			*link = next;
			raft_mem_free(node, block);
		}
		else
		{
			block->used = 0;
			link = &block->next;
		}
		block = next;
	}
}

void
raft_arena_destroy(raft_node *node)
{
	raft_arena_block *block = node->arena.head;

	while (block != NULL)
	{
		raft_arena_block *next = block->next;

		raft_mem_free(node, block);
		block = next;
	}
	node->arena.head = NULL;
}

void
raft_graveyard_add(raft_node *node, void *ptr)
{
	raft_ptr_array *gy = &node->graveyard;

	if (ptr == NULL)
		return;
	if (gy->count == gy->cap)
	{
		size_t		new_cap = gy->cap == 0 ? 64 : gy->cap * 2;
		void	  **items = raft_mem_realloc(node, gy->items,
											 new_cap * sizeof(void *));

		if (items == NULL)
		{
			/*
			 * Leaking is safer than freeing memory a message may still
			 * point to; the node is broken anyway.
			 */
			return;
		}
		gy->items = items;
		gy->cap = new_cap;
	}
	gy->items[gy->count++] = ptr;
}

void
raft_graveyard_flush(raft_node *node)
{
	size_t		i;

	for (i = 0; i < node->graveyard.count; i++)
		raft_mem_free(node, node->graveyard.items[i]);
	node->graveyard.count = 0;
}

void
raft_vec_init(raft_vec *vec, size_t item_size)
{
	vec->items = NULL;
	vec->count = 0;
	vec->cap = 0;
	vec->item_size = item_size;
}

/* Append one zeroed item; NULL (and node broken) when out of memory. */
void *
raft_vec_push(raft_node *node, raft_vec *vec)
{
	void	   *item;

	if (vec->count == vec->cap)
	{
		size_t		new_cap = vec->cap == 0 ? 16 : vec->cap * 2;
		void	   *items = raft_mem_realloc(node, vec->items,
											 new_cap * vec->item_size);

		if (items == NULL)
			return NULL;
		vec->items = items;
		vec->cap = new_cap;
	}
	item = (char *) vec->items + vec->count * vec->item_size;
	memset(item, 0, vec->item_size);
	vec->count++;
	return item;
}

void
raft_vec_free(raft_node *node, raft_vec *vec)
{
	raft_mem_free(node, vec->items);
	vec->items = NULL;
	vec->count = 0;
	vec->cap = 0;
}
