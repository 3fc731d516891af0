/*-------------------------------------------------------------------------
 *
 * hmac_test.c
 *	  Unit tests of src/net/hmac.c: SHA-256 against the FIPS 180-4 / NIST
 *	  example vectors (including the padding edge lengths 55, 56, 57 and 64
 *	  and the million-byte messages), HMAC-SHA256 against all seven RFC 4231
 *	  test cases, incremental hashing split at every position, and the
 *	  constant-time comparison.
 *
 * test/unit/hmac_test.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/hmac.h"

#include "unit_test.h"

/*----------
 * Test bookkeeping
 *----------
 */

/* Lower-case hex of a digest, for comparing with the published values. */
static void
to_hex(const uint8_t *d, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t		i;

	for (i = 0; i < len; i++)
	{
		out[2 * i] = digits[d[i] >> 4];
		out[2 * i + 1] = digits[d[i] & 15];
	}
	out[2 * len] = '\0';
}

static void
check_sha256(const void *msg, size_t len, const char *want, const char *what)
{
	uint8_t		d[CHR_SHA256_DIGEST_LEN];
	char		hex[2 * CHR_SHA256_DIGEST_LEN + 1];

	chr_sha256(msg, len, d);
	to_hex(d, sizeof(d), hex);
	CHECK(strcmp(hex, want) == 0, "%s: got %s want %s", what, hex, want);
}

/* A message of n copies of byte c, hashed in one call. */
static void
check_sha256_fill(int c, size_t n, const char *want, const char *what)
{
	uint8_t    *buf = malloc(n > 0 ? n : 1);

	if (buf == NULL)
	{
		CHECK(false, "malloc");
		return;
	}
	memset(buf, c, n);
	check_sha256(buf, n, want, what);
	free(buf);
}

/*----------
 * SHA-256: FIPS 180-4 examples (csrc.nist.gov "SHA256.pdf"), the FIPS
 * 180-2 additional examples and the NIST byte-oriented short messages.
 *----------
 */
static void
test_sha256_vectors(void)
{
	static const uint8_t bd[] = {0xbd};
	static const uint8_t c98c8e55[] = {0xc9, 0x8c, 0x8e, 0x55};

	check_sha256("abc", 3,
				 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
				 "one block \"abc\"");
	check_sha256("", 0,
				 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
				 "empty message");
	check_sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
				 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
				 "two blocks, 448 bits");
	check_sha256("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
				 "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu", 112,
				 "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
				 "896 bits");
	check_sha256(bd, 1,
				 "68325720aabd7c82f30f554b313d0570c95accbb7dc4b5aae11204c08ffe732b",
				 "one byte 0xbd");
	check_sha256(c98c8e55, 4,
				 "7abc22c0ae5af26ce93dbb94433a0e0b2e119d014f8e7f65bd56c61ccccd9504",
				 "four bytes c98c8e55");
	/* padding boundaries: 55 fits with the length, 56 and 57 need a block */
	check_sha256_fill(0, 55,
					  "02779466cdec163811d078815c633f21901413081449002f24aa3e80f0b88ef7",
					  "55 zero bytes");
	check_sha256_fill(0, 56,
					  "d4817aa5497628e7c77e6b606107042bbba3130888c5f47a375e6179be789fbb",
					  "56 zero bytes");
	check_sha256_fill(0, 57,
					  "65a16cb7861335d5ace3c60718b5052e44660726da4cd13bb745381b235a1785",
					  "57 zero bytes");
	check_sha256_fill(0, 64,
					  "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b",
					  "64 zero bytes");
	check_sha256_fill('A', 1000,
					  "c2e686823489ced2017f6059b8b239318b6364f6dcd835d0a519105a1eadd6e4",
					  "1000 x 'A'");
	check_sha256_fill('U', 1005,
					  "f4d62ddec0f3dd90ea1380fa16a5ff8dc4c54b21740650f24afc4120903552b0",
					  "1005 x 'U'");
	check_sha256_fill(0, 1000000,
					  "d29751f2649b32ff572b5e0a9f541ea660a50f94ff0beedfb0b692b924cc8025",
					  "one million zero bytes");
}

/* FIPS 180-4's long example, fed through update in uneven pieces. */
static void
test_sha256_million_a_incremental(void)
{
	static const size_t pieces[] = {1, 63, 64, 65, 127, 1000, 4096};
	uint8_t		chunk[4096];
	uint8_t		d[CHR_SHA256_DIGEST_LEN];
	char		hex[2 * CHR_SHA256_DIGEST_LEN + 1];
	chr_sha256_ctx ctx;
	size_t		left = 1000000;
	size_t		n;
	int			i = 0;

	memset(chunk, 'a', sizeof(chunk));
	chr_sha256_init(&ctx);
	while (left > 0)
	{
		n = pieces[i++ % (sizeof(pieces) / sizeof(pieces[0]))];
		if (n > left)
			n = left;
		chr_sha256_update(&ctx, chunk, n);
		left -= n;
	}
	chr_sha256_final(&ctx, d);
	to_hex(d, sizeof(d), hex);
	CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0,
		  "one million 'a': got %s", hex);
}

/*
 * Splitting a message into two or three update calls at every position
 * gives the one-shot digest (covers every partial-block path).
 */
static void
test_sha256_splits(void)
{
	uint8_t		msg[200];
	uint8_t		want[CHR_SHA256_DIGEST_LEN];
	uint8_t		got[CHR_SHA256_DIGEST_LEN];
	chr_sha256_ctx ctx;
	size_t		len;
	size_t		i;
	size_t		j;

	for (i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t) (i * 37 + 11);

	for (len = 0; len <= sizeof(msg); len += 7)
	{
		chr_sha256(msg, len, want);
		for (i = 0; i <= len; i++)
		{
			chr_sha256_init(&ctx);
			chr_sha256_update(&ctx, msg, i);
			chr_sha256_update(&ctx, msg + i, len - i);
			chr_sha256_final(&ctx, got);
			CHECK(memcmp(got, want, sizeof(want)) == 0, "len %zu split %zu", len, i);
		}
		for (i = 0; i <= len; i += 5)
			for (j = i; j <= len; j += 3)
			{
				chr_sha256_init(&ctx);
				chr_sha256_update(&ctx, msg, i);
				chr_sha256_update(&ctx, msg + i, j - i);
				chr_sha256_update(&ctx, msg + j, len - j);
				chr_sha256_final(&ctx, got);
				CHECK(memcmp(got, want, sizeof(want)) == 0,
					  "len %zu splits %zu %zu", len, i, j);
			}
	}
}

/*----------
 * HMAC-SHA256: RFC 4231 section 4, test cases 1..7
 *----------
 */
typedef struct hmac_case
{
	const char *name;
	uint8_t		key[131];
	size_t		keylen;
	const uint8_t *data;
	size_t		datalen;
	size_t		outlen;			/* case 5 truncates to 128 bits */
	const char *want;
} hmac_case;

static void
test_hmac_rfc4231(void)
{
	static const char data6[] =
		"Test Using Larger Than Block-Size Key - Hash Key First";
	static const char data7[] =
		"This is a test using a larger than block-size key and a larger than "
		"block-size data. The key needs to be hashed before being used by "
		"the HMAC algorithm.";
	uint8_t		dd[50];
	uint8_t		cd[50];
	hmac_case	c[7];
	uint8_t		d[CHR_SHA256_DIGEST_LEN];
	char		hex[2 * CHR_SHA256_DIGEST_LEN + 1];
	chr_hmac_sha256_ctx ctx;
	int			i;

	memset(dd, 0xdd, sizeof(dd));
	memset(cd, 0xcd, sizeof(cd));
	memset(c, 0, sizeof(c));

	c[0].name = "test case 1";
	memset(c[0].key, 0x0b, 20);
	c[0].keylen = 20;
	c[0].data = (const uint8_t *) "Hi There";
	c[0].datalen = 8;
	c[0].want = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7";

	c[1].name = "test case 2 (key shorter than the output)";
	memcpy(c[1].key, "Jefe", 4);
	c[1].keylen = 4;
	c[1].data = (const uint8_t *) "what do ya want for nothing?";
	c[1].datalen = 28;
	c[1].want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

	c[2].name = "test case 3 (50 bytes 0xdd)";
	memset(c[2].key, 0xaa, 20);
	c[2].keylen = 20;
	c[2].data = dd;
	c[2].datalen = sizeof(dd);
	c[2].want = "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe";

	c[3].name = "test case 4 (25-byte key 0x01..0x19)";
	for (i = 0; i < 25; i++)
		c[3].key[i] = (uint8_t) (i + 1);
	c[3].keylen = 25;
	c[3].data = cd;
	c[3].datalen = sizeof(cd);
	c[3].want = "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b";

	c[4].name = "test case 5 (truncated to 128 bits)";
	memset(c[4].key, 0x0c, 20);
	c[4].keylen = 20;
	c[4].data = (const uint8_t *) "Test With Truncation";
	c[4].datalen = 20;
	c[4].outlen = 16;
	c[4].want = "a3b6167473100ee06e0c796c2955552b";

	c[5].name = "test case 6 (131-byte key, hashed first)";
	memset(c[5].key, 0xaa, 131);
	c[5].keylen = 131;
	c[5].data = (const uint8_t *) data6;
	c[5].datalen = sizeof(data6) - 1;
	c[5].want = "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54";

	c[6].name = "test case 7 (131-byte key, 152-byte data)";
	memset(c[6].key, 0xaa, 131);
	c[6].keylen = 131;
	c[6].data = (const uint8_t *) data7;
	c[6].datalen = sizeof(data7) - 1;
	c[6].want = "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2";

	for (i = 0; i < 7; i++)
	{
		size_t		outlen = c[i].outlen ? c[i].outlen : CHR_SHA256_DIGEST_LEN;
		size_t		k;

		chr_hmac_sha256(c[i].key, c[i].keylen, c[i].data, c[i].datalen, d);
		to_hex(d, outlen, hex);
		CHECK(strcmp(hex, c[i].want) == 0, "%s: got %s want %s",
			  c[i].name, hex, c[i].want);

		/* the incremental interface, one byte at a time */
		chr_hmac_sha256_init(&ctx, c[i].key, c[i].keylen);
		for (k = 0; k < c[i].datalen; k++)
			chr_hmac_sha256_update(&ctx, c[i].data + k, 1);
		chr_hmac_sha256_final(&ctx, d);
		to_hex(d, outlen, hex);
		CHECK(strcmp(hex, c[i].want) == 0, "%s (bytewise): got %s",
			  c[i].name, hex);
	}
}

/*
 * A key of exactly the block size is used as is, one byte longer is hashed:
 * the two must differ from each other and from the hashed-key equivalent
 * only where RFC 2104 says so (a key longer than B equals its hash as key).
 */
static void
test_hmac_key_lengths(void)
{
	uint8_t		key[65];
	uint8_t		hkey[CHR_SHA256_DIGEST_LEN];
	uint8_t		a[CHR_SHA256_DIGEST_LEN];
	uint8_t		b[CHR_SHA256_DIGEST_LEN];

	memset(key, 0x42, sizeof(key));

	chr_hmac_sha256(key, 65, "x", 1, a);
	chr_sha256(key, 65, hkey);
	chr_hmac_sha256(hkey, sizeof(hkey), "x", 1, b);
	CHECK(memcmp(a, b, sizeof(a)) == 0, "65-byte key must equal its hash as key");

	chr_hmac_sha256(key, 64, "x", 1, a);
	chr_sha256(key, 64, hkey);
	chr_hmac_sha256(hkey, sizeof(hkey), "x", 1, b);
	CHECK(memcmp(a, b, sizeof(a)) != 0, "64-byte key is used as is, not hashed");

	/* zero padding: a key and the same key plus trailing zeros agree */
	memset(key, 0, sizeof(key));
	memcpy(key, "secret", 6);
	chr_hmac_sha256(key, 6, "x", 1, a);
	chr_hmac_sha256(key, 10, "x", 1, b);
	CHECK(memcmp(a, b, sizeof(a)) == 0, "short keys are zero padded");
}

static void
test_ct_equal(void)
{
	uint8_t		a[32];
	uint8_t		b[32];
	int			i;

	for (i = 0; i < 32; i++)
		a[i] = b[i] = (uint8_t) (i * 7);
	CHECK(chr_ct_equal(a, b, 32), "equal buffers");
	CHECK(chr_ct_equal(a, b, 0), "empty buffers are equal");
	for (i = 0; i < 32; i++)
	{
		b[i] ^= 0x80;
		CHECK(!chr_ct_equal(a, b, 32), "difference at byte %d", i);
		b[i] ^= 0x81;
		CHECK(!chr_ct_equal(a, b, 32), "low-bit difference at byte %d", i);
		b[i] ^= 0x01;
	}
	CHECK(chr_ct_equal(a, b, 32), "restored");

	chr_secure_zero(a, sizeof(a));
	memset(b, 0, sizeof(b));
	CHECK(memcmp(a, b, sizeof(a)) == 0, "secure_zero zeroes");
}

int
main(void)
{
	run_case("SHA-256: FIPS 180-4 and NIST vectors", test_sha256_vectors);
	run_case("SHA-256: one million 'a' in uneven pieces", test_sha256_million_a_incremental);
	run_case("SHA-256: incremental at every split", test_sha256_splits);
	run_case("HMAC-SHA256: RFC 4231 test cases 1-7", test_hmac_rfc4231);
	run_case("HMAC-SHA256: key length rules", test_hmac_key_lengths);
	run_case("constant-time compare", test_ct_equal);

	return unit_summary();
}
