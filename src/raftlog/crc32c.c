/*-------------------------------------------------------------------------
 *
 * crc32c.c
 *	  CRC-32C (Castagnoli polynomial 0x1EDC6F41, reflected 0x82F63B78).
 *
 * Every record of the Raft log carries one, so appending a 64 KiB entry
 * costs a CRC over 64 KiB: the software path is slicing-by-8 (about eight
 * times faster than a byte table), and on x86-64 with SSE4.2 the crc32
 * instruction is used when the CPU reports it at run time.  Both give
 * bit-identical results; the unit test checks the standard check value
 * ("123456789" -> 0xE3069283) and that the two paths agree.
 *
 * The tables are built on first use.  The store is used by one thread (the
 * background worker); two threads racing here would compute the same
 * values, but we do not rely on that.
 *
 * src/raftlog/crc32c.c
 *
 *-------------------------------------------------------------------------
 */
#include "raftlog/crc32c.h"

#include <stdbool.h>
#include <string.h>

#define CRC32C_POLY_REFLECTED	UINT32_C(0x82F63B78)

static uint32_t crc_table[8][256];
static bool crc_table_ready = false;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CRC32C_HAVE_SSE42_PATH 1
static int	crc_use_sse42 = -1;	/* -1: not probed yet */
#endif

static void
crc_build_tables(void)
{
	uint32_t	i;
	int			k;

	for (i = 0; i < 256; i++)
	{
		uint32_t	c = i;

		for (k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ CRC32C_POLY_REFLECTED : c >> 1;
		crc_table[0][i] = c;
	}
	for (i = 0; i < 256; i++)
	{
		uint32_t	c = crc_table[0][i];

		for (k = 1; k < 8; k++)
		{
			c = crc_table[0][c & 0xFF] ^ (c >> 8);
			crc_table[k][i] = c;
		}
	}
	crc_table_ready = true;
}

/* Raw (no inversion) slicing-by-8 update; little-endian load order. */
static uint32_t
crc_update_sw(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len >= 8)
	{
		uint32_t	lo = crc ^ ((uint32_t) p[0] | (uint32_t) p[1] << 8 |
								(uint32_t) p[2] << 16 | (uint32_t) p[3] << 24);
		uint32_t	hi = (uint32_t) p[4] | (uint32_t) p[5] << 8 |
			(uint32_t) p[6] << 16 | (uint32_t) p[7] << 24;

		crc = crc_table[7][lo & 0xFF] ^
			crc_table[6][(lo >> 8) & 0xFF] ^
			crc_table[5][(lo >> 16) & 0xFF] ^
			crc_table[4][lo >> 24] ^
			crc_table[3][hi & 0xFF] ^
			crc_table[2][(hi >> 8) & 0xFF] ^
			crc_table[1][(hi >> 16) & 0xFF] ^
			crc_table[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len-- > 0)
		crc = crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
	return crc;
}

#ifdef CRC32C_HAVE_SSE42_PATH
__attribute__((target("sse4.2")))
static uint32_t
crc_update_sse42(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t	c = crc;

	while (len >= 8)
	{
		uint64_t	v;

		memcpy(&v, p, 8);		/* unaligned-safe load */
		c = __builtin_ia32_crc32di(c, v);
		p += 8;
		len -= 8;
	}
	crc = (uint32_t) c;
	while (len-- > 0)
		crc = __builtin_ia32_crc32qi(crc, *p++);
	return crc;
}
#endif

uint32_t
raftlog_crc32c_sw(uint32_t crc, const void *data, size_t len)
{
	if (!crc_table_ready)
		crc_build_tables();
	return ~crc_update_sw(~crc, (const uint8_t *) data, len);
}

uint32_t
raftlog_crc32c(uint32_t crc, const void *data, size_t len)
{
#ifdef CRC32C_HAVE_SSE42_PATH
	if (crc_use_sse42 < 0)
	{
		__builtin_cpu_init();
		crc_use_sse42 = __builtin_cpu_supports("sse4.2") ? 1 : 0;
	}
	if (crc_use_sse42)
		return ~crc_update_sse42(~crc, (const uint8_t *) data, len);
#endif
	return raftlog_crc32c_sw(crc, data, len);
}
