/*-------------------------------------------------------------------------
 *
 * hmac.h
 *	  SHA-256 (FIPS 180-4), HMAC-SHA256 (RFC 2104) and a constant-time
 *	  comparison, for the transport's handshake (docs/protocol.md).
 *
 * Plain C99, no PostgreSQL header and no third-party library, so the
 * transport builds in the server-free unit tests.  The symbols carry a
 * chr_ prefix: PostgreSQL and libcrypto, which share the process with the
 * extension, have SHA-256 functions of their own.
 *
 * src/net/hmac.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CHRONICLE_HMAC_H
#define CHRONICLE_HMAC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHR_SHA256_DIGEST_LEN	32
#define CHR_SHA256_BLOCK_LEN	64

typedef struct chr_sha256_ctx
{
	uint32_t	h[8];			/* intermediate hash value H(i) */
	uint64_t	total;			/* message bytes so far */
	uint8_t		block[CHR_SHA256_BLOCK_LEN];	/* partial block */
	size_t		used;			/* bytes in block, < 64 */
} chr_sha256_ctx;

typedef struct chr_hmac_sha256_ctx
{
	chr_sha256_ctx inner;		/* H((K ^ ipad) || text) in progress */
	uint8_t		okey[CHR_SHA256_BLOCK_LEN];	/* K ^ opad */
} chr_hmac_sha256_ctx;

/* Incremental SHA-256; final wipes the context. */
extern void chr_sha256_init(chr_sha256_ctx *ctx);
extern void chr_sha256_update(chr_sha256_ctx *ctx, const void *data, size_t len);
extern void chr_sha256_final(chr_sha256_ctx *ctx,
							 uint8_t out[CHR_SHA256_DIGEST_LEN]);
extern void chr_sha256(const void *data, size_t len,
					   uint8_t out[CHR_SHA256_DIGEST_LEN]);

/* Incremental HMAC-SHA256; any key length; final wipes the context. */
extern void chr_hmac_sha256_init(chr_hmac_sha256_ctx *ctx,
								 const void *key, size_t keylen);
extern void chr_hmac_sha256_update(chr_hmac_sha256_ctx *ctx,
								   const void *data, size_t len);
extern void chr_hmac_sha256_final(chr_hmac_sha256_ctx *ctx,
								  uint8_t out[CHR_SHA256_DIGEST_LEN]);
extern void chr_hmac_sha256(const void *key, size_t keylen,
							const void *data, size_t len,
							uint8_t out[CHR_SHA256_DIGEST_LEN]);

/*
 * true if a and b hold the same len bytes.  The time taken depends on len
 * only, never on where the buffers differ, so comparing a received MAC
 * with the expected one leaks nothing about the expected value.
 */
extern bool chr_ct_equal(const void *a, const void *b, size_t len);

/* Overwrite len bytes with zeros in a way the compiler may not drop. */
extern void chr_secure_zero(void *p, size_t len);

#endif							/* CHRONICLE_HMAC_H */
