/*-------------------------------------------------------------------------
 *
 * crc32c.h
 *	  CRC-32C (Castagnoli) for the Raft log store.
 *
 * Plain C99, no PostgreSQL header: the log store must build in the unit
 * tests without a server.  The polynomial and bit order are those of
 * PostgreSQL's pg_crc32c (and of iSCSI/ext4), so the same bytes give the
 * same value in both, but the symbols are our own to avoid a clash when the
 * store is linked into the extension.
 *
 * src/raftlog/crc32c.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CHRONICLE_RAFTLOG_CRC32C_H
#define CHRONICLE_RAFTLOG_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/*
 * Continue a CRC over len more bytes.  Start with crc = 0 and pass the
 * previous result to continue; the value returned is final (the usual
 * pre- and post-inversion are done inside).
 */
extern uint32_t raftlog_crc32c(uint32_t crc, const void *data, size_t len);

/* The portable path alone, so that the unit test can compare the two. */
extern uint32_t raftlog_crc32c_sw(uint32_t crc, const void *data, size_t len);

#endif							/* CHRONICLE_RAFTLOG_CRC32C_H */
