/*-------------------------------------------------------------------------
 *
 * raft_conf.c
 *	  Cluster membership: queries, single-server changes, and the payload
 *	  format of conf-change entries.
 *
 * Invariants of a raft_conf_state:
 *	- a node id is at most in one of voters, learners, removed;
 *	- an id in removed never comes back (ids are never reused), so the
 *	  removed list only grows;
 *	- RAFT_NO_NODE (0) appears nowhere.
 *
 * A change touches exactly one node (add learner, promote, remove), which
 * keeps every majority of the old voters intersecting every majority of the
 * new voters.  The encoded entry carries the resulting configuration, so a
 * node that joins late learns the full membership from the entry that
 * added it.  The payload is a fixed little-endian layout, independent of
 * the host, because it is stored in the log and sent to other nodes.
 *
 * Persistence: none here; conf-change entries are ordinary log entries.
 *
 * src/raft/raft_conf.c
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "raft_int.h"

#define RAFT_CONF_FORMAT_VERSION 1
#define RAFT_CONF_HEADER_SIZE	(1 + 1 + 8 + 4 + 4 + 4)

static bool
id_in(const raft_node_id *ids, uint32_t count, raft_node_id id)
{
	uint32_t	i;

	for (i = 0; i < count; i++)
	{
		if (ids[i] == id)
			return true;
	}
	return false;
}

static void
id_remove(raft_node_id *ids, uint32_t *count, raft_node_id id)
{
	uint32_t	i;

	for (i = 0; i < *count; i++)
	{
		if (ids[i] == id)
		{
			/* keep the order stable: it is part of the encoded entry */
			memmove(&ids[i], &ids[i + 1], (*count - i - 1) * sizeof(raft_node_id));
			(*count)--;
			return;
		}
	}
}

bool
raft_conf_is_voter(const raft_conf_state *conf, raft_node_id id)
{
	return id != RAFT_NO_NODE && id_in(conf->voters, conf->num_voters, id);
}

bool
raft_conf_is_learner(const raft_conf_state *conf, raft_node_id id)
{
	return id != RAFT_NO_NODE && id_in(conf->learners, conf->num_learners, id);
}

bool
raft_conf_is_removed(const raft_conf_state *conf, raft_node_id id)
{
	return id != RAFT_NO_NODE && id_in(conf->removed, conf->num_removed, id);
}

bool
raft_conf_is_member(const raft_conf_state *conf, raft_node_id id)
{
	return raft_conf_is_voter(conf, id) || raft_conf_is_learner(conf, id);
}

/* Votes (or acknowledgements) needed for a majority of the voters. */
uint32_t
raft_conf_quorum(const raft_conf_state *conf)
{
	return conf->num_voters / 2 + 1;
}

/*
 * Compute the configuration after one change.  Returns RAFT_ERR_CONF when
 * the change is not allowed: adding an id that is or was a member, promoting
 * a non-learner, removing a non-member or the last voter, or running out of
 * room.
 */
int
raft_conf_apply_change(const raft_conf_state *conf, raft_conf_change_type type,
					   raft_node_id id, raft_conf_state *result)
{
	if (id == RAFT_NO_NODE)
		return RAFT_ERR_CONF;
	*result = *conf;

	switch (type)
	{
		case RAFT_CONF_ADD_LEARNER:
			if (raft_conf_is_member(conf, id) || raft_conf_is_removed(conf, id))
				return RAFT_ERR_CONF;
			if (conf->num_voters + conf->num_learners >= RAFT_MAX_MEMBERS)
				return RAFT_ERR_CONF;
			result->learners[result->num_learners++] = id;
			return RAFT_OK;

		case RAFT_CONF_PROMOTE:
			if (!raft_conf_is_learner(conf, id))
				return RAFT_ERR_CONF;
			id_remove(result->learners, &result->num_learners, id);
			result->voters[result->num_voters++] = id;
			return RAFT_OK;

		case RAFT_CONF_REMOVE:
			if (!raft_conf_is_member(conf, id))
				return RAFT_ERR_CONF;
			if (raft_conf_is_voter(conf, id) && conf->num_voters == 1)
				return RAFT_ERR_CONF;
			if (conf->num_removed >= RAFT_MAX_REMOVED)
				return RAFT_ERR_CONF;
			id_remove(result->voters, &result->num_voters, id);
			id_remove(result->learners, &result->num_learners, id);
			result->removed[result->num_removed++] = id;
			return RAFT_OK;
	}
	return RAFT_ERR_INVALID;
}

static uint8_t *
put_u32(uint8_t *p, uint32_t v)
{
	int			i;

	for (i = 0; i < 4; i++)
		*p++ = (uint8_t) (v >> (8 * i));
	return p;
}

static uint8_t *
put_u64(uint8_t *p, uint64_t v)
{
	int			i;

	for (i = 0; i < 8; i++)
		*p++ = (uint8_t) (v >> (8 * i));
	return p;
}

static uint32_t
get_u32(const uint8_t *p)
{
	uint32_t	v = 0;
	int			i;

	for (i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t
get_u64(const uint8_t *p)
{
	uint64_t	v = 0;
	int			i;

	for (i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

size_t
raft_conf_change_encoded_size(const raft_conf_change *cc)
{
	return RAFT_CONF_HEADER_SIZE +
		8 * ((size_t) cc->result.num_voters + cc->result.num_learners +
			 cc->result.num_removed);
}

/* Write the payload into buf (raft_conf_change_encoded_size bytes). */
size_t
raft_conf_change_encode(const raft_conf_change *cc, uint8_t *buf)
{
	uint8_t    *p = buf;
	uint32_t	i;

	*p++ = RAFT_CONF_FORMAT_VERSION;
	*p++ = (uint8_t) cc->type;
	p = put_u64(p, cc->node_id);
	p = put_u32(p, cc->result.num_voters);
	p = put_u32(p, cc->result.num_learners);
	p = put_u32(p, cc->result.num_removed);
	for (i = 0; i < cc->result.num_voters; i++)
		p = put_u64(p, cc->result.voters[i]);
	for (i = 0; i < cc->result.num_learners; i++)
		p = put_u64(p, cc->result.learners[i]);
	for (i = 0; i < cc->result.num_removed; i++)
		p = put_u64(p, cc->result.removed[i]);
	return (size_t) (p - buf);
}

int
raft_conf_change_decode(const uint8_t *buf, size_t len, raft_conf_change *cc)
{
	const uint8_t *p = buf;
	uint32_t	i;

	memset(cc, 0, sizeof(*cc));
	if (buf == NULL || len < RAFT_CONF_HEADER_SIZE ||
		buf[0] != RAFT_CONF_FORMAT_VERSION || buf[1] > RAFT_CONF_REMOVE)
		return RAFT_ERR_INVALID;
	cc->type = (raft_conf_change_type) buf[1];
	cc->node_id = get_u64(buf + 2);
	cc->result.num_voters = get_u32(buf + 10);
	cc->result.num_learners = get_u32(buf + 14);
	cc->result.num_removed = get_u32(buf + 18);
	if (cc->result.num_voters > RAFT_MAX_MEMBERS ||
		cc->result.num_learners > RAFT_MAX_MEMBERS ||
		cc->result.num_removed > RAFT_MAX_REMOVED ||
		len != raft_conf_change_encoded_size(cc))
		return RAFT_ERR_INVALID;
	p = buf + RAFT_CONF_HEADER_SIZE;
	for (i = 0; i < cc->result.num_voters; i++, p += 8)
		cc->result.voters[i] = get_u64(p);
	for (i = 0; i < cc->result.num_learners; i++, p += 8)
		cc->result.learners[i] = get_u64(p);
	for (i = 0; i < cc->result.num_removed; i++, p += 8)
		cc->result.removed[i] = get_u64(p);
	return RAFT_OK;
}
