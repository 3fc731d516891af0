/*-------------------------------------------------------------------------
 *
 * chronicle_raft.c
 *	  Library entry point: registers the WAL resource manager, the
 *	  transaction callbacks and the hooks.
 *
 * The library must be loaded through shared_preload_libraries: the startup
 * process needs the WAL resource manager to replay stream changes, and
 * custom resource managers can only be registered while preloading.  Loading
 * it any other way (CREATE EXTENSION without preloading) is an error that
 * says so.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "am/stream.h"
#include "tabplus/tabplus.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("chronicle_raft must be loaded via shared_preload_libraries"),
				 errhint("Add chronicle_raft to shared_preload_libraries in postgresql.conf and restart the server.")));

	tabplus_register_rmgr();
	staging_register_callbacks();
	guard_install_hooks();
	timescan_install_hooks();
	MarkGUCPrefixReserved("chronicle_raft");
}
