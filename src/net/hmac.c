/*-------------------------------------------------------------------------
 *
 * hmac.c
 *	  SHA-256 after FIPS 180-4 (section 6.2) and HMAC after RFC 2104, with
 *	  the constant-time comparison the handshake verifies MACs with.
 *
 * Written from the two specifications; test/unit/hmac_test.c checks the
 * FIPS 180-4 / NIST example vectors and every RFC 4231 HMAC-SHA256 case.
 * Invariants:
 *
 *	- a chr_sha256_ctx holds fewer than 64 buffered bytes between calls
 *	  (a full block is compressed at once), so final always has room for
 *	  the 0x80 pad byte;
 *	- the message length is kept in bytes and converted to the 64-bit bit
 *	  count only when padding (messages up to 2^61 - 1 bytes, far beyond any
 *	  handshake);
 *	- nothing here branches or indexes on secret data, and key-derived
 *	  buffers are wiped before they go out of scope.
 *
 * src/net/hmac.c
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "net/hmac.h"

/*
 * FIPS 180-4 4.2.2: the first 32 bits of the fractional parts of the cube
 * roots of the first 64 primes.
 */
static const uint32_t sha256_k[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5,
	0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
	0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
	0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
	0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
	0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
	0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
	0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
	0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};

/*
 * FIPS 180-4 5.3.3: the first 32 bits of the fractional parts of the
 * square roots of the first 8 primes.
 */
static const uint32_t sha256_h0[8] = {
	0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
};

#define ROTR(x, n)	(((x) >> (n)) | ((x) << (32 - (n))))

/* FIPS 180-4 4.1.2 */
#define CH(x, y, z)		(((x) & (y)) ^ (~(x) & (z)))
#define MAJ(x, y, z)	(((x) & (y)) ^ ((x) & (z)) ^ ((y) & (z)))
#define BSIG0(x)		(ROTR(x, 2) ^ ROTR(x, 13) ^ ROTR(x, 22))
#define BSIG1(x)		(ROTR(x, 6) ^ ROTR(x, 11) ^ ROTR(x, 25))
#define SSIG0(x)		(ROTR(x, 7) ^ ROTR(x, 18) ^ ((x) >> 3))
#define SSIG1(x)		(ROTR(x, 17) ^ ROTR(x, 19) ^ ((x) >> 10))

/* FIPS 180-4 6.2.2: process one 512-bit block. */
static void
sha256_compress(uint32_t h[8], const uint8_t *block)
{
	uint32_t	w[64];
	uint32_t	a,
				b,
				c,
				d,
				e,
				f,
				g,
				hh,
				t1,
				t2;
	int			t;

	/* 1. message schedule; words are big-endian (FIPS 180-4 3.1) */
	for (t = 0; t < 16; t++)
		w[t] = ((uint32_t) block[4 * t] << 24) |
			((uint32_t) block[4 * t + 1] << 16) |
			((uint32_t) block[4 * t + 2] << 8) |
			(uint32_t) block[4 * t + 3];
	for (t = 16; t < 64; t++)
		w[t] = SSIG1(w[t - 2]) + w[t - 7] + SSIG0(w[t - 15]) + w[t - 16];

	/* 2. working variables */
	a = h[0];
	b = h[1];
	c = h[2];
	d = h[3];
	e = h[4];
	f = h[5];
	g = h[6];
	hh = h[7];

	/* 3. the 64 rounds */
	for (t = 0; t < 64; t++)
	{
		t1 = hh + BSIG1(e) + CH(e, f, g) + sha256_k[t] + w[t];
		t2 = BSIG0(a) + MAJ(a, b, c);
		hh = g;
		g = f;
		f = e;
		e = d + t1;
		d = c;
		c = b;
		b = a;
		a = t1 + t2;
	}

	/* 4. intermediate hash value */
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
	h[4] += e;
	h[5] += f;
	h[6] += g;
	h[7] += hh;

	/* the schedule derives from the message, which may be key material */
	chr_secure_zero(w, sizeof(w));
}

void
chr_sha256_init(chr_sha256_ctx *ctx)
{
	memcpy(ctx->h, sha256_h0, sizeof(ctx->h));
	ctx->total = 0;
	ctx->used = 0;
}

void
chr_sha256_update(chr_sha256_ctx *ctx, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t		n;

	if (len == 0)
		return;
	ctx->total += len;

	/* top up a partial block first */
	if (ctx->used > 0)
	{
		n = CHR_SHA256_BLOCK_LEN - ctx->used;
		if (n > len)
			n = len;
		memcpy(ctx->block + ctx->used, p, n);
		ctx->used += n;
		p += n;
		len -= n;
		if (ctx->used < CHR_SHA256_BLOCK_LEN)
			return;
		sha256_compress(ctx->h, ctx->block);
		ctx->used = 0;
	}

	/* whole blocks straight from the input */
	while (len >= CHR_SHA256_BLOCK_LEN)
	{
		sha256_compress(ctx->h, p);
		p += CHR_SHA256_BLOCK_LEN;
		len -= CHR_SHA256_BLOCK_LEN;
	}

	if (len > 0)
	{
		memcpy(ctx->block, p, len);
		ctx->used = len;
	}
}

/*
 * FIPS 180-4 5.1.1: append the bit 1, then zeros up to 56 mod 64 bytes,
 * then the message length in bits as a 64-bit big-endian integer.
 */
void
chr_sha256_final(chr_sha256_ctx *ctx, uint8_t out[CHR_SHA256_DIGEST_LEN])
{
	uint64_t	bits = ctx->total << 3;
	int			i;

	ctx->block[ctx->used++] = 0x80;
	if (ctx->used > 56)
	{
		memset(ctx->block + ctx->used, 0, CHR_SHA256_BLOCK_LEN - ctx->used);
		sha256_compress(ctx->h, ctx->block);
		ctx->used = 0;
	}
	memset(ctx->block + ctx->used, 0, 56 - ctx->used);
	for (i = 0; i < 8; i++)
		ctx->block[56 + i] = (uint8_t) (bits >> (56 - 8 * i));
	sha256_compress(ctx->h, ctx->block);

	for (i = 0; i < 8; i++)
	{
		out[4 * i] = (uint8_t) (ctx->h[i] >> 24);
		out[4 * i + 1] = (uint8_t) (ctx->h[i] >> 16);
		out[4 * i + 2] = (uint8_t) (ctx->h[i] >> 8);
		out[4 * i + 3] = (uint8_t) ctx->h[i];
	}
	chr_secure_zero(ctx, sizeof(*ctx));
}

void
chr_sha256(const void *data, size_t len, uint8_t out[CHR_SHA256_DIGEST_LEN])
{
	chr_sha256_ctx ctx;

	chr_sha256_init(&ctx);
	chr_sha256_update(&ctx, data, len);
	chr_sha256_final(&ctx, out);
}

/*----------
 * HMAC (RFC 2104): H((K ^ opad) || H((K ^ ipad) || text)), where K is the
 * key padded with zeros to the block size B = 64, or first hashed if it is
 * longer than B.
 *----------
 */
void
chr_hmac_sha256_init(chr_hmac_sha256_ctx *ctx, const void *key, size_t keylen)
{
	uint8_t		k[CHR_SHA256_BLOCK_LEN];
	uint8_t		ikey[CHR_SHA256_BLOCK_LEN];
	int			i;

	memset(k, 0, sizeof(k));
	if (keylen > CHR_SHA256_BLOCK_LEN)
		chr_sha256(key, keylen, k);
	else if (keylen > 0)
		memcpy(k, key, keylen);

	for (i = 0; i < CHR_SHA256_BLOCK_LEN; i++)
	{
		ikey[i] = k[i] ^ 0x36;
		ctx->okey[i] = k[i] ^ 0x5c;
	}
	chr_sha256_init(&ctx->inner);
	chr_sha256_update(&ctx->inner, ikey, sizeof(ikey));

	chr_secure_zero(k, sizeof(k));
	chr_secure_zero(ikey, sizeof(ikey));
}

void
chr_hmac_sha256_update(chr_hmac_sha256_ctx *ctx, const void *data, size_t len)
{
	chr_sha256_update(&ctx->inner, data, len);
}

void
chr_hmac_sha256_final(chr_hmac_sha256_ctx *ctx,
					  uint8_t out[CHR_SHA256_DIGEST_LEN])
{
	uint8_t		ihash[CHR_SHA256_DIGEST_LEN];
	chr_sha256_ctx outer;

	chr_sha256_final(&ctx->inner, ihash);
	chr_sha256_init(&outer);
	chr_sha256_update(&outer, ctx->okey, sizeof(ctx->okey));
	chr_sha256_update(&outer, ihash, sizeof(ihash));
	chr_sha256_final(&outer, out);

	chr_secure_zero(ihash, sizeof(ihash));
	chr_secure_zero(ctx, sizeof(*ctx));
}

void
chr_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
				uint8_t out[CHR_SHA256_DIGEST_LEN])
{
	chr_hmac_sha256_ctx ctx;

	chr_hmac_sha256_init(&ctx, key, keylen);
	chr_hmac_sha256_update(&ctx, data, len);
	chr_hmac_sha256_final(&ctx, out);
}

/*
 * OR together the XOR of every byte pair: no early exit, no data-dependent
 * branch.  The volatile accumulator keeps the compiler from turning the
 * loop back into one that stops at the first difference.
 */
bool
chr_ct_equal(const void *a, const void *b, size_t len)
{
	const uint8_t *pa = a;
	const uint8_t *pb = b;
	volatile uint8_t diff = 0;
	size_t		i;

	for (i = 0; i < len; i++)
		diff |= (uint8_t) (pa[i] ^ pb[i]);
	return diff == 0;
}

void
chr_secure_zero(void *p, size_t len)
{
	volatile uint8_t *v = p;
	size_t		i;

	for (i = 0; i < len; i++)
		v[i] = 0;
}
