/*-------------------------------------------------------------------------
 *
 * stream.h
 *	  The chronicle table access method: what other components need of it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CHRONICLE_STREAM_H
#define CHRONICLE_STREAM_H

#include "postgres.h"
#include "access/relscan.h"
#include "executor/tuptable.h"
#include "utils/rel.h"

#include "tabplus/rowcodec.h"

/* stream_am.c */
extern bool relation_is_stream(Relation rel);
extern bool relid_is_stream(Oid relid);
extern Relation stream_open(Oid relid, LOCKMODE lockmode);
extern void stream_lock(Relation rel, bool exclusive);
extern void stream_unlock(Relation rel, bool exclusive);
extern StreamLayout *stream_layout(Relation rel);
extern void stream_scan_set_range(TableScanDesc sscan, bool has_lo, int64 lo,
								  bool has_hi, int64 hi, bool empty);

/* staging.c */
extern void staging_add_slot(Relation rel, TupleTableSlot *slot);
extern void staging_truncate(Oid relid);
extern bool cluster_stream_known(Oid relid);
extern void staging_register_callbacks(void);

/* guard.c */
extern void guard_install_hooks(void);

/* timescan.c */
extern void timescan_install_hooks(void);

#endif							/* CHRONICLE_STREAM_H */
