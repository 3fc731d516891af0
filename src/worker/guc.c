/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  The chronicle_raft.* settings of replicated operation.
 *
 * An empty chronicle_raft.initial_cluster (the default) means a cluster of
 * one: no worker runs and commits apply locally, exactly as without
 * replication.  Every setting is checked when it is set; a bad value stops
 * the server at startup with a message naming the setting.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <limits.h>

#include "utils/guc.h"

#include "worker/cluster.h"

int			chronicle_node_id = 1;
char	   *chronicle_listen_address = NULL;
char	   *chronicle_initial_cluster = NULL;
char	   *chronicle_cluster_secret = NULL;
char	   *chronicle_cluster_name = NULL;
int			chronicle_buffer_size = 1024 * 1024;
int			chronicle_flush_interval = 0;
int			chronicle_commit_wait = COMMIT_WAIT_APPLIED;
int			chronicle_election_timeout = 1000;
int			chronicle_heartbeat_interval = 100;
char	   *chronicle_database = NULL;
bool		chronicle_debug_isolate = false;
int			chronicle_max_log_size = 256 * 1024;	/* kB */
int			chronicle_initial_cluster_state = 0;	/* 0 new, 1 existing */

static const struct config_enum_entry cluster_state_options[] = {
	{"new", 0, false},
	{"existing", 1, false},
	{NULL, 0, false}
};

static const struct config_enum_entry commit_wait_options[] = {
	{"applied", COMMIT_WAIT_APPLIED, false},
	{"committed", COMMIT_WAIT_COMMITTED, false},
	{"off", COMMIT_WAIT_OFF, false},
	{NULL, 0, false}
};

bool
cluster_enabled(void)
{
	return chronicle_initial_cluster != NULL && chronicle_initial_cluster[0] != '\0';
}

/* FNV-1a of the cluster name: the cluster id carried by every message */
uint64
cluster_id_from_name(const char *name)
{
	uint64		h = UINT64CONST(0xcbf29ce484222325);

	for (; *name; name++)
	{
		h ^= (unsigned char) *name;
		h *= UINT64CONST(0x100000001b3);
	}
	return h == 0 ? 1 : h;
}

static bool
parse_host_port(const char *s, int len, char *host, int hostsize, int *port)
{
	const char *colon = NULL;
	int			i;
	long		p;
	char	   *end;
	char		buf[16];

	for (i = len - 1; i >= 0; i--)
		if (s[i] == ':')
		{
			colon = s + i;
			break;
		}
	if (colon == NULL || colon == s || colon - s >= hostsize || len - (colon - s) - 1 <= 0 ||
		len - (colon - s) - 1 >= (int) sizeof(buf))
		return false;
	memcpy(host, s, colon - s);
	host[colon - s] = '\0';
	memcpy(buf, colon + 1, len - (colon - s) - 1);
	buf[len - (colon - s) - 1] = '\0';
	p = strtol(buf, &end, 10);
	if (*end != '\0' || p < 1 || p > 65535)
		return false;
	*port = (int) p;
	return true;
}

/*
 * Parse "1=127.0.0.1:7001,2=127.0.0.1:7002": returns the number of members,
 * or -1 with *errmsg set.
 */
int
cluster_parse_members(const char *spec, ClusterMember *members, int max, char **errmsg)
{
	const char *p = spec;
	int			n = 0;

	while (*p)
	{
		const char *item = p;
		const char *comma = strchr(p, ',');
		int			len = comma ? (int) (comma - p) : (int) strlen(p);
		const char *eq = memchr(item, '=', len);
		char	   *end;
		long		id;
		int			i;

		while (len > 0 && isspace((unsigned char) *item))
		{
			item++;
			len--;
		}
		eq = memchr(item, '=', len);
		if (eq == NULL)
		{
			*errmsg = psprintf("member \"%.*s\" is not of the form id=host:port", len, item);
			return -1;
		}
		id = strtol(item, &end, 10);
		if (end != eq || id < 1 || id > 1000000)
		{
			*errmsg = psprintf("member \"%.*s\" has no node id between 1 and 1000000", len, item);
			return -1;
		}
		if (n >= max)
		{
			*errmsg = psprintf("more than %d members", max);
			return -1;
		}
		members[n].id = (uint64) id;
		if (!parse_host_port(eq + 1, len - (int) (eq + 1 - item), members[n].host,
							 sizeof(members[n].host), &members[n].port))
		{
			*errmsg = psprintf("member \"%.*s\" has no valid host:port", len, item);
			return -1;
		}
		for (i = 0; i < n; i++)
			if (members[i].id == members[n].id)
			{
				*errmsg = psprintf("node id %ld appears twice", id);
				return -1;
			}
		n++;
		p = comma ? comma + 1 : p + strlen(p);
	}
	return n;
}

static bool
check_initial_cluster(char **newval, void **extra, GucSource source)
{
	ClusterMember members[CLUSTER_MAX_MEMBERS];
	char	   *errmsg = NULL;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (cluster_parse_members(*newval, members, CLUSTER_MAX_MEMBERS, &errmsg) < 0)
	{
		GUC_check_errdetail("%s.", errmsg);
		GUC_check_errhint("Use a comma-separated list such as 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003.");
		return false;
	}
	return true;
}

static bool
check_listen_address(char **newval, void **extra, GucSource source)
{
	char		host[64];
	int			port;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (!parse_host_port(*newval, strlen(*newval), host, sizeof(host), &port))
	{
		GUC_check_errdetail("\"%s\" is not of the form host:port.", *newval);
		GUC_check_errhint("For example 127.0.0.1:7001.");
		return false;
	}
	return true;
}

static const char *const setting_names[] = {
	"chronicle_raft.node_id", "chronicle_raft.listen_address",
	"chronicle_raft.initial_cluster", "chronicle_raft.cluster_secret",
	"chronicle_raft.cluster_name", "chronicle_raft.buffer_size",
	"chronicle_raft.flush_interval", "chronicle_raft.commit_wait",
	"chronicle_raft.election_timeout", "chronicle_raft.heartbeat_interval",
	"chronicle_raft.database", "chronicle_raft.max_log_size",
	"chronicle_raft.initial_cluster_state"
};

/*
 * PostgreSQL applies a configuration file value to a newly defined
 * extension setting with a WARNING when the value is invalid, and keeps the
 * default: a node with a typo in its cluster settings would start as a
 * cluster of one.  So the raw values are captured before the settings are
 * defined and validated again after, with ERROR: the server does not start.
 */
void
cluster_define_gucs(void)
{
	char	   *raw[lengthof(setting_names)];
	int			i;

	for (i = 0; i < (int) lengthof(setting_names); i++)
	{
		const char *v = GetConfigOption(setting_names[i], true, false);

		raw[i] = v ? pstrdup(v) : NULL;
	}

	DefineCustomIntVariable("chronicle_raft.node_id",
							"This server's Raft node id.",
							"Unique in the cluster and never reused.",
							&chronicle_node_id, 1, 1, 1000000,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("chronicle_raft.listen_address",
							   "host:port the Raft transport listens on.",
							   "Defaults to this node's address in chronicle_raft.initial_cluster.",
							   &chronicle_listen_address, "",
							   PGC_POSTMASTER, 0, check_listen_address, NULL, NULL);
	DefineCustomStringVariable("chronicle_raft.initial_cluster",
							   "Members of a new cluster: id=host:port,...",
							   "Empty (the default) means a cluster of one without replication.",
							   &chronicle_initial_cluster, "",
							   PGC_POSTMASTER, 0, check_initial_cluster, NULL, NULL);
	DefineCustomStringVariable("chronicle_raft.cluster_secret",
							   "Shared secret that authenticates cluster members.",
							   "Never sent over the network; required with a cluster.",
							   &chronicle_cluster_secret, "",
							   PGC_POSTMASTER, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("chronicle_raft.cluster_name",
							   "Name of the cluster; its hash is the cluster id in every file and message.",
							   NULL,
							   &chronicle_cluster_name, "chronicle",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("chronicle_raft.buffer_size",
							"Queued bytes that trigger a flush of the insert queue.",
							NULL,
							&chronicle_buffer_size, 1024 * 1024, 1024, 256 * 1024 * 1024,
							PGC_POSTMASTER, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("chronicle_raft.flush_interval",
							"Longest time queued events wait before they are proposed.",
							"0 proposes as soon as the worker is free; events that arrive meanwhile form the next batch.",
							&chronicle_flush_interval, 0, 0, 10000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomEnumVariable("chronicle_raft.commit_wait",
							 "What COMMIT waits for: applied on this node, committed by a quorum, or nothing.",
							 "off can lose recently committed events on a crash.",
							 &chronicle_commit_wait, COMMIT_WAIT_APPLIED, commit_wait_options,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("chronicle_raft.election_timeout",
							"Raft election timeout (randomized between this and twice this).",
							NULL,
							&chronicle_election_timeout, 1000, 50, 60000,
							PGC_POSTMASTER, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("chronicle_raft.heartbeat_interval",
							"Interval of leader heartbeats; must be below half the election timeout.",
							NULL,
							&chronicle_heartbeat_interval, 100, 10, 30000,
							PGC_POSTMASTER, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomStringVariable("chronicle_raft.database",
							   "The database whose streams are replicated.",
							   NULL,
							   &chronicle_database, "postgres",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("chronicle_raft.initial_cluster_state",
							 "new: this node founds the cluster in initial_cluster; existing: it joins a running cluster.",
							 "A joining node lists running members in initial_cluster and is added with chronicle.add_node().",
							 &chronicle_initial_cluster_state, 0, cluster_state_options,
							 PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("chronicle_raft.max_log_size",
							"Raft log size above which applied entries are compacted away.",
							"Compaction starts at half of it; a member that falls behind catches up by snapshot.",
							&chronicle_max_log_size, 256 * 1024, 1024, INT_MAX / 1024,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomBoolVariable("chronicle_raft.debug_isolate",
							 "Fault injection for tests: drop all Raft traffic to and from this node.",
							 "Simulates a network partition around this node; never use it in production.",
							 &chronicle_debug_isolate, false,
							 PGC_SIGHUP, GUC_NOT_IN_SAMPLE, NULL, NULL, NULL);
	MarkGUCPrefixReserved("chronicle_raft");

	for (i = 0; i < (int) lengthof(setting_names); i++)
		if (raw[i] != NULL)
			(void) set_config_option(setting_names[i], raw[i], PGC_POSTMASTER,
									 PGC_S_FILE, GUC_ACTION_SET, false, ERROR, false);
}
