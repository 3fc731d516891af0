/*-------------------------------------------------------------------------
 *
 * raftlog_test.c
 *	  Unit tests of the durable Raft log store (src/raftlog/raftlog.c):
 *	  round trips across segments and reopen, hard-state persistence,
 *	  truncation, compaction and snapshot install, interrupted compaction,
 *	  torn tails cut at every byte, bit flips, corruption that must be an
 *	  error, foreign cluster ids, locking, write failures that break the
 *	  handle, and crash simulation: a forked child appends and syncs, is
 *	  SIGKILLed at a random moment, and the parent checks that every entry
 *	  the child reported as synced is there, intact, and nothing torn is.
 *
 * Every test works in its own mkdtemp() directory under /tmp (the log goes
 * to a not-yet-existing subdirectory, so creating it is tested everywhere)
 * and removes it afterwards.  Randomness comes from a fixed-seed xorshift
 * generator, so a failure reproduces; RAFTLOG_TEST_SEED overrides the seed.
 *
 * With RAFTLOG_TEST_BENCH=1 in the environment the program also measures
 * append+sync throughput (not part of "make check").
 *
 * test/unit/raftlog_test.c
 *
 *-------------------------------------------------------------------------
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "raftlog/crc32c.h"
#include "raftlog/raftlog.h"

#include "unit_test.h"

#define DEFAULT_SEED	UINT64_C(0x10657a6e5eed)
#define MODEL_MAX		20000
#define CLUSTER			UINT64_C(0xC1A57E12)
#define CRASH_ROUNDS	40

/*----------
 * Test bookkeeping
 *----------
 */
/* A raftlog call that must succeed. */
#define CHECK_OK(call) \
	do { \
		int _rc = (call); \
		if (_rc != RAFTLOG_OK) \
			check_failed(__FILE__, __LINE__, #call, "returned %s", \
						 raftlog_status_name(_rc)); \
	} while (0)



/* A stateless hash for deterministic payloads (splitmix64 finaliser). */
static uint64_t
mix(uint64_t x)
{
	x += UINT64_C(0x9E3779B97F4A7C15);
	x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
	return x ^ (x >> 31);
}

/*----------
 * Files and directories
 *----------
 */
static char test_root[256];		/* the mkdtemp() directory of this case */
static char log_dir[512];		/* test_root/log, created by raftlog_open */

static void
rm_rf(const char *path)
{
	DIR		   *d = opendir(path);
	struct dirent *de;
	char		sub[1024];
	struct stat st;

	if (d == NULL)
	{
		unlink(path);
		return;
	}
	while ((de = readdir(d)) != NULL)
	{
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
			rm_rf(sub);
		else
			unlink(sub);
	}
	closedir(d);
	rmdir(path);
}

static void
setup_dir(void)
{
	snprintf(test_root, sizeof(test_root), "/tmp/raftlog_test.XXXXXX");
	if (mkdtemp(test_root) == NULL)
	{
		perror("mkdtemp");
		exit(2);
	}
	snprintf(log_dir, sizeof(log_dir), "%s/log", test_root);
}

static void
cleanup_dir(void)
{
	rm_rf(test_root);
}

static void
path_in(char *buf, size_t size, const char *name)
{
	snprintf(buf, size, "%s/%s", log_dir, name);
}

static uint8_t *
slurp(const char *path, size_t *size)
{
	struct stat st;
	uint8_t    *buf;
	int			fd = open(path, O_RDONLY);

	*size = 0;
	if (fd < 0 || fstat(fd, &st) != 0)
	{
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	buf = malloc((size_t) st.st_size + 1);
	if (buf != NULL &&
		read(fd, buf, (size_t) st.st_size) != (ssize_t) st.st_size)
	{
		free(buf);
		buf = NULL;
	}
	else
		*size = (size_t) st.st_size;
	close(fd);
	return buf;
}

static bool
spit(const char *path, const uint8_t *buf, size_t size)
{
	int			fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	bool		ok;

	if (fd < 0)
		return false;
	ok = write(fd, buf, size) == (ssize_t) size;
	close(fd);
	return ok;
}

static long
file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (long) st.st_size : -1;
}

static bool
file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Sorted segment file names of log_dir; free with free_names(). */
static size_t
list_segments(char ***names_out)
{
	DIR		   *d = opendir(log_dir);
	struct dirent *de;
	char	  **names = NULL;
	size_t		n = 0;

	*names_out = NULL;
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
	{
		size_t		len = strlen(de->d_name);

		if (len == 24 && strncmp(de->d_name, "log-", 4) == 0 &&
			strcmp(de->d_name + 20, ".seg") == 0)
		{
			names = realloc(names, (n + 1) * sizeof(char *));
			names[n++] = strdup(de->d_name);
		}
	}
	closedir(d);
	if (n > 1)
		qsort(names, n, sizeof(char *), cmp_str);
	*names_out = names;
	return n;
}

static void
free_names(char **names, size_t n)
{
	size_t		i;

	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* Full path of the i-th segment (negative: from the end); "" if none. */
static void
segment_path(char *buf, size_t size, long i)
{
	char	  **names;
	size_t		n = list_segments(&names);

	buf[0] = '\0';
	if (i < 0)
		i += (long) n;
	if (i >= 0 && (size_t) i < n)
		path_in(buf, size, names[i]);
	free_names(names, n);
}

/* Record offsets of a segment image; returns the count. */
static size_t
record_offsets(const uint8_t *buf, size_t size, size_t *offs, size_t max)
{
	size_t		off = 48;
	size_t		n = 0;

	while (off + 32 <= size && n < max)
	{
		uint32_t	len = (uint32_t) buf[off + 4] | (uint32_t) buf[off + 5] << 8 |
			(uint32_t) buf[off + 6] << 16 | (uint32_t) buf[off + 7] << 24;

		if (off + 32 + len > size)
			break;
		offs[n++] = off;
		off += 32 + len;
	}
	return n;
}

/*
 * Where the records of a segment image end: at the file's end, or at a
 * header of zeros (the preallocated rest of the segment).
 */
static size_t
records_end(const uint8_t *buf, size_t size)
{
	static const uint8_t zeros[32];
	size_t		off = 48;

	while (off + 32 <= size && memcmp(buf + off, zeros, 32) != 0)
	{
		uint32_t	len = (uint32_t) buf[off + 4] | (uint32_t) buf[off + 5] << 8 |
			(uint32_t) buf[off + 6] << 16 | (uint32_t) buf[off + 7] << 24;

		if (off + 32 + len > size)
			break;
		off += 32 + len;
	}
	return off;
}

static bool
all_zero(const uint8_t *buf, size_t from, size_t to)
{
	for (; from < to; from++)
		if (buf[from] != 0)
			return false;
	return true;
}

/*
 * With preallocation: every segment but the last ends at its last record;
 * the last one is segment_size long, zeros after its last record.
 */
static void
check_preallocated_files(uint64_t segment_size, const char *when)
{
	char	  **names;
	size_t		n = list_segments(&names);
	size_t		i;

	for (i = 0; i < n; i++)
	{
		char		path[1024];
		size_t		size;
		uint8_t    *img;
		size_t		end;

		path_in(path, sizeof(path), names[i]);
		img = slurp(path, &size);
		CHECK(img != NULL, "%s: read %s", when, names[i]);
		if (img == NULL)
			continue;
		end = records_end(img, size);
		if (i + 1 < n)
			CHECK(end == size, "%s: sealed %s is %zu bytes, its records end at %zu",
				  when, names[i], size, end);
		else
			CHECK(size == (size_t) segment_size && all_zero(img, end, size),
				  "%s: last segment %s is %zu bytes (want %" PRIu64
				  "), records end at %zu, zeros after: %d", when, names[i],
				  size, segment_size, end, (int) all_zero(img, end, size));
		free(img);
	}
	free_names(names, n);
}

/*----------
 * A model of what the log must hold
 *----------
 */
typedef struct model
{
	raft_index	snap_index;
	raft_term	snap_term;
	raft_index	last;
	size_t		maxlen;			/* payload length is hash % (maxlen + 1) */
	raft_term	term[MODEL_MAX];
	uint32_t	salt[MODEL_MAX];
} model;

static model M;

static size_t
payload_len(uint32_t salt, raft_index index, size_t maxlen)
{
	return (size_t) (mix(((uint64_t) salt << 40) ^ index) % (maxlen + 1));
}

static void
payload_fill(uint32_t salt, raft_index index, uint8_t *buf, size_t len)
{
	size_t		i;
	uint64_t	x = mix(((uint64_t) salt << 40) ^ index ^ UINT64_C(0x5a5a));

	for (i = 0; i < len; i++)
	{
		if (i % 8 == 0)
			x = mix(x);
		buf[i] = (uint8_t) (x >> (8 * (i % 8)));
	}
}

static void
model_reset(size_t maxlen)
{
	memset(&M, 0, sizeof(M));
	M.maxlen = maxlen;
}

/* Append [from, to] with term and salt to the log and the model. */
static int
model_append(raftlog *log, raft_index from, raft_index to, raft_term term,
			 uint32_t salt)
{
	raft_entry	batch[64];
	uint8_t    *bufs[64];
	raft_index	i = from;
	int			rc = RAFTLOG_OK;

	while (i <= to && rc == RAFTLOG_OK)
	{
		size_t		n = 0;
		size_t		k;

		while (i <= to && n < 64)
		{
			size_t		len = payload_len(salt, i, M.maxlen);

			bufs[n] = malloc(len + 1);
			payload_fill(salt, i, bufs[n], len);
			batch[n].term = term;
			batch[n].index = i;
			batch[n].type = (raft_entry_type) ((i + salt) % 3);
			batch[n].data = len ? bufs[n] : NULL;
			batch[n].len = len;
			n++;
			i++;
		}
		rc = raftlog_append(log, batch, n);
		for (k = 0; k < n; k++)
		{
			if (rc == RAFTLOG_OK)
			{
				M.term[batch[k].index] = term;
				M.salt[batch[k].index] = salt;
				M.last = batch[k].index;
			}
			free(bufs[k]);
		}
	}
	return rc;
}

static void
model_truncate(raft_index from)
{
	if (from <= M.last)
		M.last = from - 1;
}

/* Does the log hold exactly the model? */
static void
model_check(raftlog *log)
{
	raftlog_entries got;
	raft_index	i;
	int			rc;
	int			bad = 0;

	CHECK(raftlog_first_index(log) == M.snap_index + 1, "first %" PRIu64
		  " model snapshot %" PRIu64, raftlog_first_index(log), M.snap_index);
	CHECK(raftlog_last_index(log) == M.last, "last %" PRIu64 " model %" PRIu64,
		  raftlog_last_index(log), M.last);
	CHECK(raftlog_last_term(log) ==
		  (M.last > M.snap_index ? M.term[M.last] : M.snap_term),
		  "last term %" PRIu64, raftlog_last_term(log));
	rc = raftlog_read(log, M.snap_index + 1, M.last, &got);
	CHECK(rc == RAFTLOG_OK, "read: %s: %s", raftlog_status_name(rc),
		  raftlog_errmsg(log));
	if (rc == RAFTLOG_OK)
	{
		CHECK(got.count == M.last - M.snap_index, "read %zu entries", got.count);
		for (i = 0; i < got.count && bad < 3; i++)
		{
			const raft_entry *e = &got.entries[i];
			raft_index	idx = M.snap_index + 1 + i;
			size_t		len = payload_len(M.salt[idx], idx, M.maxlen);
			uint8_t    *want = malloc(len + 1);

			payload_fill(M.salt[idx], idx, want, len);
			if (e->index != idx || e->term != M.term[idx] || e->len != len ||
				e->type != (raft_entry_type) ((idx + M.salt[idx]) % 3) ||
				(len > 0 && memcmp(e->data, want, len) != 0))
			{
				CHECK(false, "entry %" PRIu64 " differs (term %" PRIu64
					  " want %" PRIu64 ", len %zu want %zu)", idx, e->term,
					  M.term[idx], e->len, len);
				bad++;
			}
			free(want);
		}
	}
	raftlog_entries_free(&got);
}

static raftlog_options
small_opts(uint64_t segment_size, size_t wbuf)
{
	raftlog_options o;

	raftlog_options_init(&o);
	o.segment_size = segment_size;
	o.write_buffer_size = wbuf;
	return o;
}

static raftlog *
open_ok(const raftlog_options *opts, raftlog_recovery *rec)
{
	raftlog    *log = NULL;
	char		err[RAFTLOG_ERRMSG_SIZE];
	int			rc = raftlog_open(log_dir, CLUSTER, opts, &log, rec, err, sizeof(err));

	CHECK(rc == RAFTLOG_OK && log != NULL, "open: %s: %s",
		  raftlog_status_name(rc), err);
	return log;
}

/* Open must fail with want; returns the message. */
static void
open_fails(const raftlog_options *opts, uint64_t cluster, int want,
		   const char *what)
{
	raftlog    *log = NULL;
	char		err[RAFTLOG_ERRMSG_SIZE];
	int			rc = raftlog_open(log_dir, cluster, opts, &log, NULL, err,
								  sizeof(err));

	CHECK(rc == want && log == NULL, "%s: open returned %s (%s), wanted %s",
		  what, raftlog_status_name(rc), err, raftlog_status_name(want));
	CHECK(err[0] != '\0', "%s: no error message", what);
	if (log != NULL)
		raftlog_close(log);
}

/*----------
 * Cases
 *----------
 */
static void
test_crc32c(void)
{
	uint8_t		buf[1000];
	size_t		i;

	CHECK(raftlog_crc32c(0, "123456789", 9) == UINT32_C(0xE3069283),
		  "check value %08x", raftlog_crc32c(0, "123456789", 9));
	CHECK(raftlog_crc32c_sw(0, "123456789", 9) == UINT32_C(0xE3069283),
		  "software check value");
	CHECK(raftlog_crc32c(0, buf, 0) == 0, "empty input");
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t) rnd();
	for (i = 0; i < 300; i++)
	{
		size_t		off = rnd_below(8);	/* unaligned starts too */
		size_t		a = rnd_below(sizeof(buf) - off);
		size_t		b = rnd_below(sizeof(buf) - off - a + 1);

		CHECK(raftlog_crc32c_sw(0, buf + off, a + b) ==
			  raftlog_crc32c(0, buf + off, a + b), "paths differ at %zu", a + b);
		CHECK(raftlog_crc32c(raftlog_crc32c(0, buf + off, a), buf + off + a, b) ==
			  raftlog_crc32c(0, buf + off, a + b),
			  "continuation differs at %zu+%zu", a, b);
	}
}

static void
test_roundtrip(void)
{
	raftlog_options o = small_opts(4096, 1000);
	raftlog_recovery rec;
	raftlog    *log;
	raft_index	i;
	char	  **names;
	size_t		nseg;
	raft_entry	big;
	uint8_t    *bigbuf;
	raft_restore restore;
	raftlog_entries storage;
	raft_term	t;

	setup_dir();
	model_reset(300);
	log = open_ok(&o, &rec);
	if (log == NULL)
		goto done;
	CHECK(rec.created && rec.segments == 0, "fresh store");
	CHECK(raftlog_last_index(log) == 0 && raftlog_first_index(log) == 1,
		  "empty log");
	for (i = 1; i <= 2000; i += 100)
	{
		CHECK_OK(model_append(log, i, i + 99, 1 + i / 500, 7));
		if (i % 200 == 1)
		{
			/* a started writeback is not durable yet: synced stays put */
			raft_index	before = raftlog_synced_index(log);

			CHECK_OK(raftlog_start_sync(log));
			CHECK(raftlog_synced_index(log) == before && before < i + 99,
				  "start_sync moved synced to %" PRIu64, raftlog_synced_index(log));
		}
		CHECK_OK(raftlog_sync(log));
		CHECK(raftlog_synced_index(log) == i + 99, "synced %" PRIu64,
			  raftlog_synced_index(log));
	}
	/* an entry larger than a segment and the write buffer */
	bigbuf = malloc(10000);
	payload_fill(99, 2001, bigbuf, 10000);
	big.term = 5;
	big.index = 2001;
	big.type = RAFT_ENTRY_NORMAL;
	big.data = bigbuf;
	big.len = 10000;
	CHECK_OK(raftlog_append(log, &big, 1));
	CHECK_OK(raftlog_term(log, 1000, &t));
	CHECK(t == M.term[1000], "term of 1000 is %" PRIu64, t);
	CHECK_OK(raftlog_term(log, 2001, &t));
	CHECK(t == 5, "term of 2001");
	CHECK_OK(model_append(log, 2002, 2100, 5, 8));
	/* entry 2001 is outside the model's payload scheme: check it apart */
	CHECK_OK(raftlog_read(log, 2001, 2001, &storage));
	CHECK(storage.count == 1 && storage.entries[0].len == 10000 &&
		  memcmp(storage.entries[0].data, bigbuf, 10000) == 0, "big entry");
	raftlog_entries_free(&storage);
	CHECK_OK(raftlog_close(log));

	nseg = list_segments(&names);
	CHECK(nseg > 30, "only %zu segments", nseg);
	free_names(names, nseg);

	log = open_ok(&o, &rec);
	if (log == NULL)
		goto done_free;
	CHECK(!rec.created && rec.segments == nseg && rec.torn_bytes == 0 &&
		  rec.compacted_segments_removed == 0 && rec.tmp_files_removed == 0,
		  "recovery report: %u segments, %" PRIu64 " torn", rec.segments,
		  rec.torn_bytes);
	CHECK(raftlog_last_index(log) == 2100, "last after reopen");
	CHECK(raftlog_synced_index(log) == 2100, "synced after reopen");
	CHECK_OK(raftlog_read(log, 2001, 2001, &storage));
	CHECK(storage.count == 1 && memcmp(storage.entries[0].data, bigbuf, 10000) == 0,
		  "big entry after reopen");
	raftlog_entries_free(&storage);

	/* check the model on 1..2000 and 2002..2100 via two reads */
	CHECK_OK(raftlog_read(log, 1, 2000, &storage));
	CHECK(storage.count == 2000, "count");
	for (i = 0; i < storage.count; i++)
	{
		const raft_entry *e = &storage.entries[i];
		size_t		len = payload_len(7, i + 1, 300);
		uint8_t		want[301];

		payload_fill(7, i + 1, want, len);
		if (e->index != i + 1 || e->len != len || e->term != M.term[i + 1] ||
			(len && memcmp(e->data, want, len) != 0))
		{
			CHECK(false, "entry %" PRIu64 " differs", i + 1);
			break;
		}
	}
	raftlog_entries_free(&storage);

	/* restore for the Raft engine */
	CHECK_OK(raftlog_load(log, 1, &restore, &storage));
	CHECK(restore.num_entries == 2100 && restore.entries[0].index == 1 &&
		  restore.entries[2099].index == 2100 && restore.snapshot.index == 0 &&
		  restore.applied == 0, "raft_restore");
	raftlog_entries_free(&storage);

	/* without the payloads of what the state machine holds (1..2000) */
	CHECK_OK(raftlog_load(log, 2001, &restore, &storage));
	CHECK(restore.num_entries == 2100, "restore without payloads: %zu entries",
		  restore.num_entries);
	for (i = 0; i < restore.num_entries; i++)
	{
		const raft_entry *e = &restore.entries[i];
		bool		want_data = e->len > 0 &&
			(e->index >= 2001 || e->type != RAFT_ENTRY_NORMAL);

		if (e->index != i + 1 || (e->data != NULL) != want_data ||
			(e->index < 2001 && e->len != payload_len(7, i + 1, 300)))
		{
			CHECK(false, "restored entry %" PRIu64 ": len %zu, data %s",
				  e->index, e->len, e->data ? "present" : "absent");
			break;
		}
	}
	CHECK(restore.entries[2000].len == 10000 &&
		  memcmp(restore.entries[2000].data, bigbuf, 10000) == 0, "2001 restored");
	raftlog_entries_free(&storage);

	/*
	 * Read-back of single payloads: forwards through many segments, then
	 * backwards, then a wrong term or length is refused.
	 */
	{
		uint8_t		got[10000];
		raft_index	k;
		bool		ok = true;

		for (k = 1; k <= 2000 && ok; k += (k < 100 ? 1 : 37))
		{
			size_t		len = payload_len(7, k, 300);
			uint8_t		want[301];

			payload_fill(7, k, want, len);
			ok = raftlog_read_payload(log, k, M.term[k], got, len) == RAFTLOG_OK &&
				memcmp(got, want, len) == 0;
			CHECK(ok, "read back %" PRIu64 ": %s", k, raftlog_errmsg(log));
		}
		for (k = 1990; k > 290 && ok; k -= 290)
		{
			size_t		len = payload_len(7, k, 300);
			uint8_t		want[301];

			payload_fill(7, k, want, len);
			ok = raftlog_read_payload(log, k, M.term[k], got, len) == RAFTLOG_OK &&
				memcmp(got, want, len) == 0;
			CHECK(ok, "read back %" PRIu64 " going backwards", k);
		}
		CHECK_OK(raftlog_read_payload(log, 2001, 5, got, 10000));
		CHECK(memcmp(got, bigbuf, 10000) == 0, "read back 2001");
		CHECK(raftlog_read_payload(log, 2001, 4, got, 10000) == RAFTLOG_ERR_INVALID,
			  "wrong term refused");
		CHECK(raftlog_read_payload(log, 2001, 5, got, 9999) == RAFTLOG_ERR_INVALID,
			  "wrong length refused");
		CHECK(raftlog_read_payload(log, 2101, 5, got, 1) == RAFTLOG_ERR_INVALID,
			  "beyond the end refused");
	}

	/* keep appending after recovery, then reopen once more */
	CHECK_OK(model_append(log, 2101, 2300, 6, 9));
	CHECK_OK(raftlog_close(log));
	log = open_ok(&o, &rec);
	if (log != NULL)
	{
		CHECK(raftlog_last_index(log) == 2300 && raftlog_last_term(log) == 6,
			  "close syncs");
		CHECK_OK(raftlog_read(log, 2101, 2300, &storage));
		CHECK(storage.count == 200 && storage.entries[0].term == 6, "tail");
		raftlog_entries_free(&storage);
		/* read back from the last segment while it grows, across a cut */
		{
			uint8_t		got[301];
			size_t		len = payload_len(9, 2300, 300);
			uint8_t		want[301];

			payload_fill(9, 2300, want, len);
			CHECK_OK(raftlog_read_payload(log, 2300, 6, got, len));
			CHECK(memcmp(got, want, len) == 0, "read back 2300");
			CHECK_OK(model_append(log, 2301, 2310, 6, 10));
			len = payload_len(10, 2305, 300);
			payload_fill(10, 2305, want, len);
			CHECK_OK(raftlog_read_payload(log, 2305, 6, got, len));
			CHECK(memcmp(got, want, len) == 0, "read back appended 2305");
			CHECK_OK(raftlog_truncate_from(log, 2303));
			CHECK_OK(model_append(log, 2303, 2306, 7, 11));
			len = payload_len(11, 2305, 300);
			payload_fill(11, 2305, want, len);
			CHECK_OK(raftlog_read_payload(log, 2305, 7, got, len));
			CHECK(memcmp(got, want, len) == 0, "read back 2305 after the cut");
		}
		CHECK_OK(raftlog_close(log));
	}
done_free:
	free(bigbuf);
done:
	cleanup_dir();
}

static void
test_hard_state(void)
{
	raftlog    *log;
	raftlog_recovery rec;
	raft_hard_state hs;
	raft_hard_state got;
	char		path[1024];
	uint8_t    *img;
	size_t		size;
	int			i;

	setup_dir();
	log = open_ok(NULL, NULL);
	if (log == NULL)
		goto done;
	raftlog_get_hard_state(log, &got);
	CHECK(got.term == 0 && got.vote == 0 && got.commit == 0, "fresh hard state");
	for (i = 1; i <= 10; i++)
	{
		hs.term = (raft_term) i;
		hs.vote = (raft_node_id) (i % 3 + 1);
		hs.commit = 0;
		CHECK_OK(raftlog_save_hard_state(log, &hs));
	}
	CHECK_OK(raftlog_save_hard_state(log, &hs));	/* unchanged: no-op */
	hs.term = 3;
	CHECK(raftlog_save_hard_state(log, &hs) == RAFTLOG_ERR_INVALID,
		  "term going back");
	CHECK_OK(raftlog_close(log));

	log = open_ok(NULL, &rec);
	if (log == NULL)
		goto done;
	raftlog_get_hard_state(log, &got);
	CHECK(got.term == 10 && got.vote == 2 && got.commit == 0,
		  "after reopen: term %" PRIu64 " vote %" PRIu64, got.term, got.vote);
	CHECK(rec.state_copies_invalid == 0, "both copies valid");
	hs.term = 11;
	hs.vote = 3;
	hs.commit = 0;
	CHECK_OK(raftlog_save_hard_state(log, &hs));
	CHECK_OK(raftlog_close(log));

	/* tear the newest copy: the previous state comes back */
	path_in(path, sizeof(path), "raft-state");
	img = slurp(path, &size);
	CHECK(img != NULL && size == 8192, "state file is %zu bytes", size);
	if (img != NULL && size == 8192)
	{
		uint8_t    *copy = malloc(size);

		memcpy(copy, img, size);
		/* term 11 is sequence 12 (creation was 1): the copy at 0 */
		copy[30] ^= 0x40;
		spit(path, copy, size);
		log = open_ok(NULL, &rec);
		if (log != NULL)
		{
			raftlog_get_hard_state(log, &got);
			CHECK(got.term == 10 && got.vote == 2, "fell back to term %" PRIu64,
				  got.term);
			CHECK(rec.state_copies_invalid == 1, "one torn copy reported");
			/* the next save overwrites the torn copy */
			CHECK_OK(raftlog_save_hard_state(log, &hs));
			CHECK_OK(raftlog_close(log));
			log = open_ok(NULL, &rec);
			if (log != NULL)
			{
				raftlog_get_hard_state(log, &got);
				CHECK(got.term == 11 && rec.state_copies_invalid == 0,
					  "repaired");
				raftlog_close(log);
			}
		}
		/* both copies damaged: an error, never a silent empty state */
		memcpy(copy, img, size);
		copy[30] ^= 0x40;
		copy[4096 + 30] ^= 0x40;
		spit(path, copy, size);
		open_fails(NULL, CLUSTER, RAFTLOG_ERR_CORRUPT, "both copies torn");
		spit(path, img, size);
		free(copy);
	}
	free(img);

	/* another cluster's store */
	open_fails(NULL, CLUSTER + 1, RAFTLOG_ERR_CLUSTER_ID, "wrong cluster id");
	open_fails(NULL, 0, RAFTLOG_ERR_INVALID, "cluster id 0");
	/* and ours still opens */
	log = open_ok(NULL, NULL);
	if (log != NULL)
		raftlog_close(log);
done:
	cleanup_dir();
}

static void
test_truncate(void)
{
	raftlog_options o = small_opts(4096, 512);
	raftlog    *log;
	raft_hard_state hs = {3, 1, 0};
	raft_entry	e;
	char	  **names;
	size_t		n;
	raft_index	boundary = 0;
	raft_term	t;

	setup_dir();
	model_reset(200);
	log = open_ok(&o, NULL);
	if (log == NULL)
		goto done;
	CHECK_OK(model_append(log, 1, 500, 1, 1));
	CHECK_OK(raftlog_sync(log));

	/* inside the last segment */
	CHECK_OK(raftlog_truncate_from(log, 490));
	model_truncate(490);
	CHECK(raftlog_last_index(log) == 489 && raftlog_last_term(log) == 1, "cut");
	CHECK_OK(model_append(log, 490, 520, 2, 2));
	CHECK_OK(raftlog_sync(log));
	model_check(log);

	/* exactly at a segment boundary */
	n = list_segments(&names);
	if (n > 4)
		boundary = strtoull(names[n - 3] + 4, NULL, 16);
	free_names(names, n);
	CHECK(boundary > 0, "no segment boundary found");
	CHECK_OK(raftlog_truncate_from(log, boundary));
	model_truncate(boundary);
	n = list_segments(&names);
	CHECK(n > 0 && strtoull(names[n - 1] + 4, NULL, 16) < boundary,
		  "segment at the boundary removed");
	free_names(names, n);
	CHECK(raftlog_last_term(log) == M.term[boundary - 1], "term after cut");
	CHECK_OK(model_append(log, boundary, boundary + 40, 3, 3));
	model_check(log);

	/* unsynced entries, then a cut into them */
	CHECK_OK(model_append(log, M.last + 1, M.last + 30, 3, 4));
	CHECK_OK(raftlog_truncate_from(log, M.last - 10));
	model_truncate(M.last - 10);
	CHECK(raftlog_synced_index(log) == M.last, "truncate leaves a synced log");

	/* across many segments */
	CHECK_OK(raftlog_truncate_from(log, 100));
	model_truncate(100);
	CHECK_OK(model_append(log, 100, 300, 4, 5));
	CHECK_OK(raftlog_term(log, 99, &t));
	CHECK(t == 1, "term 99");
	CHECK_OK(raftlog_sync(log));
	model_check(log);

	/* guards: nothing below the commit index, no gaps, no going back */
	CHECK_OK(model_append(log, 301, 301, 4, 5));
	hs.commit = 301;
	CHECK(raftlog_save_hard_state(log, &hs) == RAFTLOG_ERR_INVALID,
		  "commit beyond the durable log");
	CHECK_OK(raftlog_truncate_from(log, 301));
	model_truncate(301);
	hs.commit = 150;
	CHECK_OK(raftlog_save_hard_state(log, &hs));
	CHECK(raftlog_truncate_from(log, 150) == RAFTLOG_ERR_INVALID, "cut committed");
	CHECK(raftlog_truncate_from(log, 0) == RAFTLOG_ERR_INVALID, "cut at 0");
	CHECK_OK(raftlog_truncate_from(log, 1000));		/* past the end: no-op */
	memset(&e, 0, sizeof(e));
	e.term = 4;
	e.index = 302;
	CHECK(raftlog_append(log, &e, 1) == RAFTLOG_ERR_INVALID, "gap");
	e.index = 301;
	e.term = 3;
	CHECK(raftlog_append(log, &e, 1) == RAFTLOG_ERR_INVALID, "term going back");
	e.term = 4;
	e.len = 5;
	e.data = NULL;
	CHECK(raftlog_append(log, &e, 1) == RAFTLOG_ERR_INVALID, "NULL payload");
	CHECK(strlen(raftlog_errmsg(log)) > 0, "message");
	model_check(log);
	CHECK_OK(raftlog_truncate_from(log, 151));
	model_truncate(151);
	CHECK_OK(model_append(log, 151, 160, 6, 6));
	CHECK_OK(raftlog_close(log));

	log = open_ok(&o, NULL);
	if (log != NULL)
	{
		model_check(log);
		raftlog_get_hard_state(log, &hs);
		CHECK(hs.commit == 150 && hs.term == 3, "hard state");
		raftlog_close(log);
	}
done:
	cleanup_dir();
}

static void
test_compaction(void)
{
	raftlog_options o = small_opts(4096, 4096);
	raftlog    *log;
	raftlog_recovery rec;
	raft_snapshot_meta meta;
	raft_snapshot_meta got;
	raftlog_entries ents;
	raft_term	t;
	raft_index	i;
	size_t		before;
	size_t		after;
	unsigned	remaining;
	char	  **names;

	setup_dir();
	model_reset(150);
	log = open_ok(&o, NULL);
	if (log == NULL)
		goto done;

	/* bootstrap: the initial membership at index 0 */
	memset(&meta, 0, sizeof(meta));
	meta.conf.num_voters = 3;
	meta.conf.voters[0] = 1;
	meta.conf.voters[1] = 2;
	meta.conf.voters[2] = 3;
	CHECK_OK(raftlog_compact(log, &meta));

	for (i = 1; i <= 1000; i += 100)
		CHECK_OK(model_append(log, i, i + 99, 1 + i / 100, 11));
	CHECK_OK(raftlog_sync(log));
	before = list_segments(&names);
	free_names(names, before);

	meta.index = 400;
	meta.term = M.term[400];
	meta.conf.num_learners = 1;
	meta.conf.learners[0] = 4;
	meta.conf.num_removed = 1;
	meta.conf.removed[0] = 9;
	CHECK_OK(raftlog_compact(log, &meta));
	M.snap_index = 400;
	M.snap_term = M.term[400];
	/* the covered files go only when asked, a few at a time */
	after = list_segments(&names);
	free_names(names, after);
	CHECK(after == before, "compaction removed files itself: %zu -> %zu", before, after);
	CHECK_OK(raftlog_remove_compacted(log, 2, &remaining));
	after = list_segments(&names);
	free_names(names, after);
	CHECK(after == before - 2 && remaining > 0, "removed 2: %zu -> %zu, %u remain",
		  before, after, remaining);
	model_check(log);
	CHECK_OK(raftlog_remove_compacted(log, UINT32_MAX, &remaining));
	CHECK(remaining == 0, "%u remain", remaining);
	after = list_segments(&names);
	CHECK(after < before && after > 0, "segments %zu -> %zu", before, after);
	CHECK(after == 0 || strtoull(names[0] + 4, NULL, 16) <= 401,
		  "first segment still holds 401");
	free_names(names, after);
	model_check(log);
	CHECK(raftlog_read(log, 400, 401, &ents) == RAFTLOG_ERR_COMPACTED,
		  "read compacted");
	raftlog_entries_free(&ents);
	CHECK(raftlog_term(log, 399, &t) == RAFTLOG_ERR_COMPACTED, "term compacted");
	CHECK_OK(raftlog_term(log, 400, &t));
	CHECK(t == M.snap_term, "snapshot term");
	meta.index = 300;
	CHECK(raftlog_compact(log, &meta) == RAFTLOG_ERR_INVALID, "going back");
	CHECK(raftlog_truncate_from(log, 400) == RAFTLOG_ERR_INVALID,
		  "truncate into the snapshot");
	CHECK_OK(raftlog_close(log));

	log = open_ok(&o, &rec);
	if (log == NULL)
		goto done;
	model_check(log);
	raftlog_get_snapshot_meta(log, &got);
	CHECK(got.index == 400 && got.term == M.snap_term &&
		  got.conf.num_voters == 3 && got.conf.voters[2] == 3 &&
		  got.conf.num_learners == 1 && got.conf.learners[0] == 4 &&
		  got.conf.num_removed == 1 && got.conf.removed[0] == 9,
		  "snapshot meta round trip");

	/* compact to the very end: no segment left, appends go on */
	meta.index = 1000;
	meta.term = M.term[1000];
	CHECK_OK(raftlog_compact(log, &meta));
	M.snap_index = 1000;
	M.snap_term = M.term[1000];
	CHECK_OK(raftlog_remove_compacted(log, UINT32_MAX, &remaining));
	after = list_segments(&names);
	free_names(names, after);
	CHECK(after == 0 && remaining == 0, "%zu segments left", after);
	model_check(log);
	CHECK_OK(model_append(log, 1001, 1100, 12, 12));
	CHECK_OK(raftlog_close(log));
	log = open_ok(&o, &rec);
	if (log == NULL)
		goto done;
	model_check(log);

	/* a snapshot from the leader that agrees with our log: it all goes too */
	meta.index = 1050;
	meta.term = 12;
	CHECK_OK(raftlog_install_snapshot(log, &meta));
	M.snap_index = 1050;
	M.snap_term = 12;
	M.last = 1050;
	after = list_segments(&names);
	free_names(names, after);
	CHECK(after == 0, "install left %zu segments", after);
	model_check(log);
	CHECK_OK(model_append(log, 1051, 1060, 12, 15));

	/* a snapshot from the leader beyond our log: everything goes */
	meta.index = 5000;
	meta.term = 20;
	CHECK_OK(raftlog_compact(log, &meta));
	M.snap_index = 5000;
	M.snap_term = 20;
	M.last = 5000;
	model_check(log);
	CHECK_OK(model_append(log, 5001, 5050, 20, 13));
	CHECK_OK(raftlog_sync(log));

	/* one that conflicts with our log at its index: everything goes too */
	meta.index = 5040;
	meta.term = 21;
	CHECK_OK(raftlog_compact(log, &meta));
	M.snap_index = 5040;
	M.snap_term = 21;
	M.last = 5040;
	model_check(log);
	CHECK_OK(model_append(log, 5041, 5060, 21, 14));
	CHECK_OK(raftlog_close(log));
	log = open_ok(&o, &rec);
	if (log != NULL)
	{
		model_check(log);
		raftlog_close(log);
	}
done:
	cleanup_dir();
}

/* Copy every segment file of log_dir into test_root/saved. */
static void
save_segments(void)
{
	char	  **names;
	size_t		n = list_segments(&names);
	size_t		i;
	char		src[1024];
	char		dst[1024];

	snprintf(dst, sizeof(dst), "%s/saved", test_root);
	mkdir(dst, 0700);
	for (i = 0; i < n; i++)
	{
		uint8_t    *buf;
		size_t		size;

		path_in(src, sizeof(src), names[i]);
		snprintf(dst, sizeof(dst), "%s/saved/%s", test_root, names[i]);
		buf = slurp(src, &size);
		if (buf)
			spit(dst, buf, size);
		free(buf);
	}
	free_names(names, n);
}

/* Put back the saved segments that are gone: an unfinished deletion. */
static size_t
restore_segments(void)
{
	char		dir[512];
	DIR		   *d;
	struct dirent *de;
	size_t		n = 0;

	snprintf(dir, sizeof(dir), "%s/saved", test_root);
	d = opendir(dir);
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
	{
		char		src[1024];
		char		dst[1024];
		uint8_t    *buf;
		size_t		size;

		if (de->d_name[0] == '.')
			continue;
		snprintf(src, sizeof(src), "%s/%s", dir, de->d_name);
		path_in(dst, sizeof(dst), de->d_name);
		if (file_exists(dst))
			continue;
		buf = slurp(src, &size);
		if (buf && spit(dst, buf, size))
			n++;
		free(buf);
	}
	closedir(d);
	rm_rf(dir);
	return n;
}

static void
test_interrupted_compaction(void)
{
	raftlog_options o = small_opts(2048, 4096);
	raftlog    *log;
	raftlog_recovery rec;
	raft_snapshot_meta meta;
	size_t		back;

	setup_dir();
	model_reset(100);
	log = open_ok(&o, NULL);
	if (log == NULL)
		goto done;
	CHECK_OK(model_append(log, 1, 600, 2, 21));
	CHECK_OK(raftlog_close(log));

	/* local compaction whose deletions never reached the disk */
	save_segments();
	log = open_ok(&o, NULL);
	if (log == NULL)
		goto done;
	memset(&meta, 0, sizeof(meta));
	meta.index = 300;
	meta.term = 2;
	CHECK_OK(raftlog_compact(log, &meta));
	M.snap_index = 300;
	M.snap_term = 2;
	CHECK_OK(raftlog_close(log));
	back = restore_segments();
	CHECK(back > 0, "nothing was deleted");
	log = open_ok(&o, &rec);
	if (log == NULL)
		goto done;
	CHECK(rec.compacted_segments_removed == back && !rec.conflicting_log_discarded,
		  "removed %u of %zu leftovers", rec.compacted_segments_removed, back);
	model_check(log);
	CHECK_OK(raftlog_close(log));

	/* a snapshot install that replaced a conflicting log, interrupted */
	save_segments();
	log = open_ok(&o, NULL);
	if (log == NULL)
		goto done;
	meta.index = 450;
	meta.term = 3;				/* our entry 450 has term 2 */
	CHECK_OK(raftlog_compact(log, &meta));
	M.snap_index = 450;
	M.snap_term = 3;
	M.last = 450;
	CHECK_OK(raftlog_close(log));
	back = restore_segments();
	CHECK(back > 0, "nothing was deleted");
	log = open_ok(&o, &rec);
	if (log == NULL)
		goto done;
	CHECK(rec.conflicting_log_discarded && rec.segments == 0,
		  "conflicting log not discarded (%u segments)", rec.segments);
	model_check(log);
	CHECK_OK(model_append(log, 451, 470, 3, 22));
	CHECK_OK(raftlog_close(log));
	log = open_ok(&o, &rec);
	if (log != NULL)
	{
		model_check(log);
		raftlog_close(log);
	}
done:
	cleanup_dir();
}

/* Build a log of n entries (small segments) and close it. */
static bool
build_log(raftlog_options *o, raft_index n, size_t maxlen)
{
	raftlog    *log;

	model_reset(maxlen);
	log = open_ok(o, NULL);
	if (log == NULL)
		return false;
	CHECK_OK(model_append(log, 1, n, 1, 31));
	CHECK_OK(model_append(log, n + 1, n + 1, 2, 31));
	CHECK_OK(raftlog_close(log));
	return true;
}

static void
test_torn_tail(void)
{
	raftlog_options o = small_opts(2048, 256);
	raftlog    *log;
	raftlog_recovery rec;
	char		path[1024];
	uint8_t    *img;
	size_t		size;
	size_t		offs[256];
	size_t		nrec;
	size_t		start;
	size_t		cut;
	raft_index	n_full;
	int			g;

	setup_dir();
	if (!build_log(&o, 60, 120))
		goto done;
	n_full = M.last;
	/* make sure the last record has a payload worth cutting */
	segment_path(path, sizeof(path), -1);
	img = slurp(path, &size);
	CHECK(img != NULL, "read last segment");
	if (img == NULL)
		goto done;
	nrec = record_offsets(img, size, offs, 256);
	CHECK(nrec > 0, "records in the last segment");
	start = offs[nrec - 1];

	for (cut = start; cut < size; cut++)
	{
		int			before = case_failures;

		if (!spit(path, img, cut))
			CHECK(false, "rewrite");
		log = open_ok(&o, &rec);
		if (log == NULL)
			break;
		M.last = n_full - 1;
		CHECK(rec.torn_bytes == cut - start, "cut at %zu: torn %" PRIu64,
			  cut, rec.torn_bytes);
		CHECK(cut == start || rec.torn_index == n_full, "torn index %" PRIu64,
			  rec.torn_index);
		CHECK(raftlog_last_index(log) == n_full - 1, "cut at %zu: last %" PRIu64,
			  cut, raftlog_last_index(log));
		CHECK(file_size(path) == (long) start, "file cut back to %zu", start);
		/* the full check is slow-ish: every few cuts, and at the ends */
		if (cut == start || cut + 1 == size || cut % 7 == 0)
			model_check(log);
		if (cut % 16 == 0)
		{
			/* the log goes on after recovery */
			CHECK_OK(model_append(log, n_full, n_full + 2, 3, 32));
			CHECK_OK(raftlog_sync(log));
			model_check(log);
			/* and back, so that the next cut hits the last segment again */
			CHECK_OK(raftlog_truncate_from(log, n_full));
			model_truncate(n_full);
		}
		raftlog_close(log);
		if (case_failures > before + 4)
			break;
	}

	/* after the last good record: random garbage, zeros, a fake header */
	for (g = 0; g < 6; g++)
	{
		size_t		glen = 1 + rnd_below(300);
		uint8_t    *buf = malloc(size + glen);
		size_t		k;

		memcpy(buf, img, size);
		for (k = 0; k < glen; k++)
			buf[size + k] = g == 1 ? 0 : (uint8_t) rnd();
		if (g == 2 && glen >= 8)
			memset(buf + size + 4, 0, 4);	/* length 0: header-only record */
		spit(path, buf, size + glen);
		free(buf);
		log = open_ok(&o, &rec);
		if (log == NULL)
			break;
		M.last = n_full;
		M.term[n_full] = 2;
		M.salt[n_full] = 31;
		if (g == 1)
		{
			/* zeros are unused (preallocated) space, not a torn record */
			CHECK(rec.torn_bytes == 0, "zeros %zu: torn %" PRIu64, glen,
				  rec.torn_bytes);
			CHECK(file_size(path) == (long) (size + glen), "zeros kept");
		}
		else
		{
			CHECK(rec.torn_bytes == glen, "garbage %zu: torn %" PRIu64, glen,
				  rec.torn_bytes);
			CHECK(file_size(path) == (long) size, "garbage cut");
		}
		model_check(log);
		raftlog_close(log);
	}

	/* a torn tail that takes a committed entry is an error, not a repair */
	spit(path, img, size);
	log = open_ok(&o, NULL);
	if (log != NULL)
	{
		raft_hard_state hs = {2, 1, n_full};

		CHECK_OK(raftlog_save_hard_state(log, &hs));
		raftlog_close(log);
		spit(path, img, size - 3);
		open_fails(&o, CLUSTER, RAFTLOG_ERR_CORRUPT, "commit beyond the log");
		CHECK(file_size(path) == (long) size - 3, "failed open changed the file");
	}
	free(img);
done:
	cleanup_dir();
}

/*
 * Preallocated segments: sealed ones end at their last record, the last one
 * has a zero tail that is neither torn nor data, through reopen, a torn
 * record in the preallocated space, truncate_from, and logs opened with and
 * without the option in turn.
 */
static void
test_preallocate(void)
{
	raftlog_options o = small_opts(4096, 512);
	raftlog_options plain = small_opts(4096, 512);
	raftlog_recovery rec;
	raftlog    *log;
	char		path[1024];
	uint8_t    *img;
	size_t		size;
	size_t		end;
	size_t		k;

	o.preallocate = true;
	setup_dir();
	model_reset(200);
	log = open_ok(&o, &rec);
	if (log == NULL)
		goto done;
	CHECK_OK(model_append(log, 1, 120, 1, 41));
	CHECK_OK(raftlog_sync(log));
	check_preallocated_files(o.segment_size, "after appends");
	CHECK_OK(raftlog_close(log));

	/* the zero tail is not a torn one */
	log = open_ok(&o, &rec);
	if (log == NULL)
		goto done;
	CHECK(rec.torn_bytes == 0, "zero tail reported as %" PRIu64 " torn bytes",
		  rec.torn_bytes);
	model_check(log);
	CHECK_OK(model_append(log, 121, 130, 2, 42));
	CHECK_OK(raftlog_sync(log));
	model_check(log);
	CHECK_OK(raftlog_close(log));
	check_preallocated_files(o.segment_size, "after reopen and appends");

	/* a torn record in the preallocated space is cut, the space renewed */
	segment_path(path, sizeof(path), -1);
	img = slurp(path, &size);
	CHECK(img != NULL, "read last segment");
	if (img == NULL)
		goto done;
	end = records_end(img, size);
	CHECK(end + 100 < size, "room after the records (%zu of %zu)", end, size);
	for (k = 0; k < 60 && end + k < size; k++)
		img[end + k] = (uint8_t) (0x5a ^ k);
	spit(path, img, size);
	free(img);
	log = open_ok(&o, &rec);
	if (log == NULL)
		goto done;
	CHECK(rec.torn_bytes == size - end && rec.torn_index == 131,
		  "torn %" PRIu64 " bytes from %" PRIu64 ", want %zu from 131",
		  rec.torn_bytes, rec.torn_index, size - end);
	model_check(log);
	CHECK(file_size(path) == (long) o.segment_size, "renewed to %ld bytes",
		  file_size(path));
	CHECK_OK(model_append(log, 131, 140, 2, 43));
	CHECK_OK(raftlog_sync(log));

	/* truncate_from keeps the segment preallocated */
	CHECK_OK(raftlog_truncate_from(log, 136));
	model_truncate(136);
	model_check(log);
	check_preallocated_files(o.segment_size, "after truncate_from");
	CHECK_OK(raftlog_close(log));
	log = open_ok(&o, &rec);
	if (log == NULL)
		goto done;
	CHECK(rec.torn_bytes == 0, "torn after truncate_from: %" PRIu64, rec.torn_bytes);
	model_check(log);
	CHECK_OK(raftlog_close(log));

	/* opened without the option: the zero tail is still no torn tail */
	log = open_ok(&plain, &rec);
	if (log == NULL)
		goto done;
	CHECK(rec.torn_bytes == 0, "torn without the option: %" PRIu64, rec.torn_bytes);
	model_check(log);
	/* and sealing that segment cuts its tail: reopening must accept it */
	CHECK_OK(model_append(log, 136, 220, 3, 44));
	CHECK_OK(raftlog_sync(log));
	CHECK_OK(raftlog_close(log));
	log = open_ok(&plain, &rec);
	if (log == NULL)
		goto done;
	CHECK(rec.torn_bytes == 0, "torn after sealing: %" PRIu64, rec.torn_bytes);
	model_check(log);
	CHECK_OK(raftlog_close(log));

	/* and with it again */
	log = open_ok(&o, &rec);
	if (log == NULL)
		goto done;
	model_check(log);
	CHECK_OK(model_append(log, 221, 300, 3, 45));
	CHECK_OK(raftlog_sync(log));
	model_check(log);
	CHECK_OK(raftlog_close(log));
	check_preallocated_files(o.segment_size, "after switching back");

	/*
	 * Compaction to the very end drops the active segment, zero tail and
	 * all; new segments follow before its file is removed.  Put it back
	 * after close, as a crash would have left it: the next open removes it.
	 */
	log = open_ok(&o, &rec);
	if (log == NULL)
		goto done;
	{
		raft_snapshot_meta meta;
		char		covered[1024];
		uint8_t    *cimg;
		size_t		csize;

		memset(&meta, 0, sizeof(meta));
		meta.index = 300;
		meta.term = M.term[300];
		segment_path(covered, sizeof(covered), -1);
		CHECK_OK(raftlog_compact(log, &meta));
		M.snap_index = 300;
		M.snap_term = M.term[300];
		CHECK_OK(model_append(log, 301, 400, 4, 46));
		CHECK_OK(raftlog_sync(log));
		cimg = slurp(covered, &csize);
		CHECK(cimg != NULL && csize == (size_t) o.segment_size,
			  "covered active segment kept until removal (%zu bytes)", csize);
		CHECK_OK(raftlog_close(log));
		CHECK(!file_exists(covered), "close removed the covered segment");
		if (cimg != NULL)
		{
			spit(covered, cimg, csize);
			free(cimg);
		}
		log = open_ok(&o, &rec);
		if (log == NULL)
			goto done;
		CHECK(rec.compacted_segments_removed >= 1 && rec.torn_bytes == 0,
			  "leftover removed at open: %u, torn %" PRIu64,
			  rec.compacted_segments_removed, rec.torn_bytes);
		CHECK(!file_exists(covered), "leftover gone");
		model_check(log);
		CHECK_OK(raftlog_close(log));
		check_preallocated_files(o.segment_size, "after compaction");
	}
done:
	cleanup_dir();
}

static void
test_bit_flip(void)
{
	raftlog_options o = small_opts(8192, 1024);
	raftlog    *log;
	raftlog_recovery rec;
	char		path[1024];
	uint8_t    *img;
	size_t		size;
	size_t		offs[512];
	size_t		nrec;
	size_t		mid;
	raft_index	first_in_seg;
	int			field;

	setup_dir();
	if (!build_log(&o, 200, 100))
		goto done;
	segment_path(path, sizeof(path), -1);
	img = slurp(path, &size);
	if (img == NULL)
		goto done;
	nrec = record_offsets(img, size, offs, 512);
	CHECK(nrec >= 5, "need records in the last segment (%zu)", nrec);
	first_in_seg = M.last - nrec + 1;
	mid = nrec / 2;

	/* flip a bit in the CRC, the length, the term, the index, the payload */
	for (field = 0; field < 5; field++)
	{
		static const size_t where[] = {1, 4, 9, 17, 33};
		uint8_t    *copy = malloc(size);
		size_t		at = offs[mid] + where[field];

		memcpy(copy, img, size);
		if (at >= size || (field == 4 && offs[mid] + 32 >= offs[mid + 1]))
			at = offs[mid] + 2; /* empty payload: hit the CRC instead */
		copy[at] ^= (uint8_t) (1u << (field + 1));
		spit(path, copy, size);
		free(copy);
		log = open_ok(&o, &rec);
		if (log == NULL)
			break;
		CHECK(raftlog_last_index(log) == first_in_seg + mid - 1,
			  "flip in field %d: last %" PRIu64 ", want %" PRIu64, field,
			  raftlog_last_index(log), first_in_seg + mid - 1);
		CHECK(rec.torn_bytes == size - offs[mid], "torn %" PRIu64,
			  rec.torn_bytes);
		M.last = first_in_seg + mid - 1;
		model_check(log);
		raftlog_close(log);
		spit(path, img, size);
		M.last = first_in_seg + nrec - 1;
	}
	free(img);
done:
	cleanup_dir();
}

static void
test_corruption_errors(void)
{
	raftlog_options o = small_opts(2048, 4096);
	char		path[1024];
	char		path2[1024];
	uint8_t    *img;
	size_t		size;
	size_t		offs[128];
	size_t		nrec;

	setup_dir();
	if (!build_log(&o, 300, 100))
		goto done;

	/* a bad record in a segment that is not the last */
	segment_path(path, sizeof(path), 2);
	img = slurp(path, &size);
	if (img == NULL)
		goto done;
	nrec = record_offsets(img, size, offs, 128);
	CHECK(nrec > 2, "records");
	img[offs[nrec / 2] + 20] ^= 0x10;
	spit(path, img, size);
	open_fails(&o, CLUSTER, RAFTLOG_ERR_CORRUPT, "middle segment bit flip");
	CHECK(file_size(path) == (long) size, "not repaired");
	img[offs[nrec / 2] + 20] ^= 0x10;

	/* a torn tail in a segment that is not the last */
	spit(path, img, size - 5);
	open_fails(&o, CLUSTER, RAFTLOG_ERR_CORRUPT, "middle segment short");
	spit(path, img, size);

	/* a bad segment header */
	img[2] ^= 1;
	spit(path, img, size);
	open_fails(&o, CLUSTER, RAFTLOG_ERR_CORRUPT, "bad magic");
	img[2] ^= 1;
	img[41] ^= 1;
	spit(path, img, size);
	open_fails(&o, CLUSTER, RAFTLOG_ERR_CORRUPT, "bad header CRC");
	img[41] ^= 1;
	spit(path, img, size);

	/* the last segment's header counts as much as any other */
	segment_path(path2, sizeof(path2), -1);
	{
		size_t		s2;
		uint8_t    *last = slurp(path2, &s2);

		if (last != NULL)
		{
			last[10] ^= 4;
			spit(path2, last, s2);
			open_fails(&o, CLUSTER, RAFTLOG_ERR_CORRUPT, "last header");
			last[10] ^= 4;
			spit(path2, last, s2);
			free(last);
		}
	}

	/* a gap: a middle segment missing */
	unlink(path);
	open_fails(&o, CLUSTER, RAFTLOG_ERR_CORRUPT, "missing middle segment");
	spit(path, img, size);

	/* a segment whose name and header disagree */
	{
		char		moved[1024];

		segment_path(path2, sizeof(path2), 1);
		path_in(moved, sizeof(moved), "log-00000000000fffff.seg");
		rename(path2, moved);
		open_fails(&o, CLUSTER, RAFTLOG_ERR_CORRUPT, "renamed segment");
		rename(moved, path2);
	}

	/* segments without a state file */
	{
		char		st[1024];
		char		st2[1024];

		path_in(st, sizeof(st), "raft-state");
		snprintf(st2, sizeof(st2), "%s/raft-state.moved", test_root);
		rename(st, st2);
		open_fails(&o, CLUSTER, RAFTLOG_ERR_CORRUPT, "no state file");
		rename(st2, st);
	}
	free(img);

	/* everything put back: it opens */
	{
		raftlog    *log = open_ok(&o, NULL);

		if (log != NULL)
		{
			model_check(log);
			raftlog_close(log);
		}
	}
done:
	cleanup_dir();
}

/* A segment written for another cluster (valid CRC): refused. */
static void
test_foreign_segment(void)
{
	raftlog_options o = small_opts(2048, 4096);
	raftlog    *log;
	char		other[512];
	char		path[1024];
	char		dst[1024];
	char	  **names;
	size_t		n;
	uint8_t    *img;
	size_t		size;

	setup_dir();
	if (!build_log(&o, 100, 100))
		goto done;
	/* a second store of another cluster, its first segment copied in */
	snprintf(other, sizeof(other), "%s/other", test_root);
	{
		raftlog    *olog = NULL;
		char		err[RAFTLOG_ERRMSG_SIZE];
		raft_entry	e;

		memset(&e, 0, sizeof(e));
		e.term = 1;
		CHECK_OK(raftlog_open(other, CLUSTER + 7, &o, &olog, NULL, err, sizeof(err)));
		if (olog == NULL)
			goto done;
		for (e.index = 1; e.index <= 5; e.index++)
			CHECK_OK(raftlog_append(olog, &e, 1));
		CHECK_OK(raftlog_close(olog));
	}
	snprintf(path, sizeof(path), "%s/log-0000000000000001.seg", other);
	path_in(dst, sizeof(dst), "log-0000000000000001.seg");
	img = slurp(dst, &size);
	{
		size_t		osize;
		uint8_t    *oimg = slurp(path, &osize);

		if (oimg != NULL)
			spit(dst, oimg, osize);
		free(oimg);
	}
	open_fails(&o, CLUSTER, RAFTLOG_ERR_CLUSTER_ID, "foreign segment");
	if (img != NULL)
		spit(dst, img, size);
	free(img);

	/* our store opens with our id, the other with its own */
	log = open_ok(&o, NULL);
	if (log != NULL)
		raftlog_close(log);
	n = list_segments(&names);
	CHECK(n > 1, "segments");
	free_names(names, n);
done:
	cleanup_dir();
}

static void
test_directory_and_tmp_files(void)
{
	raftlog    *log;
	raftlog_recovery rec;
	struct stat st;
	char		path[1024];
	char		keep[512];

	setup_dir();
	snprintf(log_dir, sizeof(log_dir), "%s/a/b/c", test_root);
	log = open_ok(NULL, &rec);
	if (log == NULL)
		goto done;
	CHECK(rec.created, "created");
	CHECK(stat(log_dir, &st) == 0 && S_ISDIR(st.st_mode) &&
		  (st.st_mode & 0777) == 0700, "directory mode %o",
		  (unsigned) (st.st_mode & 0777));
	{
		raft_entry	e = {1, 1, RAFT_ENTRY_NOOP, NULL, 0};

		CHECK_OK(raftlog_append(log, &e, 1));
	}
	CHECK_OK(raftlog_close(log));

	/* leftovers of an interrupted file creation, and a stranger's file */
	path_in(path, sizeof(path), "log-0000000000000002.seg.tmp");
	spit(path, (const uint8_t *) "partial", 7);
	path_in(path, sizeof(path), "raft-state.tmp");
	spit(path, (const uint8_t *) "partial", 7);
	path_in(keep, sizeof(keep), "keep.me");
	spit(keep, (const uint8_t *) "x", 1);
	log = open_ok(NULL, &rec);
	if (log == NULL)
		goto done;
	CHECK(!rec.created && rec.tmp_files_removed == 2 && rec.segments == 1,
		  "tmp files %u", rec.tmp_files_removed);
	CHECK(!file_exists(path) && file_exists(keep), "right files removed");
	CHECK(raftlog_last_index(log) == 1, "entry kept");
	raftlog_close(log);

	/* a file where the directory should be */
	snprintf(log_dir, sizeof(log_dir), "%s", keep);
	open_fails(NULL, CLUSTER, RAFTLOG_ERR_IO, "not a directory");
done:
	snprintf(log_dir, sizeof(log_dir), "%s/log", test_root);
	cleanup_dir();
}

static void
test_lock(void)
{
	raftlog    *log;
	int			to_parent[2];
	int			to_child[2];
	pid_t		pid;
	char		c;
	int			status;

	setup_dir();
	log = open_ok(NULL, NULL);
	if (log == NULL)
		goto done;
	raftlog_close(log);
	if (pipe(to_parent) != 0 || pipe(to_child) != 0)
	{
		CHECK(false, "pipe");
		goto done;
	}
	pid = fork();
	if (pid == 0)
	{
		raftlog    *clog = NULL;

		close(to_parent[0]);
		close(to_child[1]);
		c = raftlog_open(log_dir, CLUSTER, NULL, &clog, NULL, NULL, 0) ==
			RAFTLOG_OK ? 'y' : 'n';
		if (write(to_parent[1], &c, 1) != 1)
			_exit(3);
		/* hold the store until the parent is done */
		if (read(to_child[0], &c, 1) < 0)
			_exit(3);
		raftlog_close(clog);
		_exit(0);
	}
	close(to_parent[1]);
	close(to_child[0]);
	CHECK(read(to_parent[0], &c, 1) == 1 && c == 'y', "child opened");
	open_fails(NULL, CLUSTER, RAFTLOG_ERR_LOCKED, "held by another process");
	close(to_child[1]);
	close(to_parent[0]);
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status");
	log = open_ok(NULL, NULL);	/* free again */
	if (log != NULL)
		raftlog_close(log);
done:
	cleanup_dir();
}

/*
 * A write that fails (the file size limit, as a full disk would) breaks the
 * handle; reopening recovers a valid prefix holding every synced entry.
 * Runs in a child so the limit does not touch the test process.
 */
static void
test_write_failure(void)
{
	pid_t		pid;
	int			status;

	setup_dir();
	pid = fork();
	if (pid == 0)
	{
		raftlog_options o = small_opts(1 << 20, 8192);
		raftlog    *log = NULL;
		struct rlimit rl;
		raft_entry	e;
		uint8_t		buf[1000];
		raft_index	synced;
		int			rc = RAFTLOG_OK;

		signal(SIGXFSZ, SIG_IGN);
		if (raftlog_open(log_dir, CLUSTER, &o, &log, NULL, NULL, 0) != RAFTLOG_OK)
			_exit(10);
		memset(buf, 0xab, sizeof(buf));
		memset(&e, 0, sizeof(e));
		e.term = 1;
		e.data = buf;
		e.len = sizeof(buf);
		for (e.index = 1; e.index <= 50; e.index++)
			if (raftlog_append(log, &e, 1) != RAFTLOG_OK)
				_exit(11);
		if (raftlog_sync(log) != RAFTLOG_OK)
			_exit(12);
		synced = raftlog_synced_index(log);
		getrlimit(RLIMIT_FSIZE, &rl);
		rl.rlim_cur = 100 * 1024;
		setrlimit(RLIMIT_FSIZE, &rl);
		for (; e.index <= 200 && rc == RAFTLOG_OK; e.index++)
			rc = raftlog_append(log, &e, 1);
		if (rc == RAFTLOG_OK)
			rc = raftlog_sync(log);
		if (rc != RAFTLOG_ERR_IO ||
			strstr(raftlog_errmsg(log), "File too large") == NULL)
			_exit(13);
		if (raftlog_sync(log) != RAFTLOG_ERR_BROKEN ||
			raftlog_append(log, &e, 1) != RAFTLOG_ERR_BROKEN ||
			raftlog_close(log) != RAFTLOG_ERR_BROKEN)
			_exit(14);
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_FSIZE, &rl);
		if (raftlog_open(log_dir, CLUSTER, &o, &log, NULL, NULL, 0) != RAFTLOG_OK)
			_exit(15);
		if (raftlog_last_index(log) < synced)
			_exit(16);
		raftlog_close(log);
		_exit(0);
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child exit %d",
		  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	cleanup_dir();
}

/*----------
 * Crash simulation
 *----------
 */
typedef struct crash_report
{
	raft_index	synced_index;
	raft_term	synced_term;
	raft_term	hs_term;
} crash_report;

static size_t
crash_len(raft_term term, raft_index index)
{
	uint64_t	h = mix(term * UINT64_C(1000003) ^ index);

	/* mostly small, sometimes a few KiB */
	return (h % 8 == 0) ? (size_t) (h >> 8) % 5000 : (size_t) (h >> 8) % 200;
}

static void
crash_fill(raft_term term, raft_index index, uint8_t *buf, size_t len)
{
	payload_fill((uint32_t) term, index, buf, len);
}

/*
 * The child's options: half the rounds preallocate, two thirds keep spares
 * (so new segments are mostly made from them).
 */
static raftlog_options
crash_opts(uint64_t seed)
{
	raftlog_options o = small_opts(16384 + (seed % 4) * 8192, 256 + (seed % 7) * 300);

	o.preallocate = (seed >> 3) % 2 == 0;
	o.spare_bytes = (seed >> 7) % 3 != 0 ? 4 * o.segment_size : 0;
	return o;
}

static void
crash_child(uint64_t seed, int fd)
{
	raftlog_options o = crash_opts(seed);
	raftlog    *log = NULL;
	raft_term	term = 1;
	raft_hard_state hs = {0, 0, 0};
	uint8_t    *bufs[40];
	raft_entry	batch[40];
	unsigned	round;

	rng_state = seed;
	if (raftlog_open(log_dir, CLUSTER, &o, &log, NULL, NULL, 0) != RAFTLOG_OK)
		_exit(20);
	for (round = 0; round < 1000000; round++)
	{
		unsigned	calls = 1 + (unsigned) rnd_below(6);
		size_t		n = 0;
		size_t		k;
		raft_index	next = 0;
		crash_report r;

		if (rnd_below(10) == 0)
			term++;				/* a new leader */

		/*
		 * Several appends per sync, so that a good share of the child's time
		 * is spent writing records (where a kill tears one), not in fsync.
		 */
		while (calls-- > 0)
		{
			n = 1 + rnd_below(40);
			next = raftlog_last_index(log) + 1;
			for (k = 0; k < n; k++)
			{
				batch[k].term = term;
				batch[k].index = next + k;
				batch[k].type = RAFT_ENTRY_NORMAL;
				batch[k].len = crash_len(term, next + k);
				bufs[k] = malloc(batch[k].len + 1);
				crash_fill(term, next + k, bufs[k], batch[k].len);
				batch[k].data = bufs[k];
			}
			if (raftlog_append(log, batch, n) != RAFTLOG_OK)
				_exit(21);
			for (k = 0; k < n; k++)
				free(bufs[k]);
		}

		if (rnd_below(6) == 0 && n > 2)
		{
			/* a conflicting suffix replaced by the next leader */
			if (raftlog_truncate_from(log, next + n / 2) != RAFTLOG_OK)
				_exit(22);
			term++;
			continue;
		}
		/* the worker starts the writeback, sends, then syncs: both orders */
		if (rnd_below(2) == 0)
		{
			raft_index	before = raftlog_synced_index(log);

			if (raftlog_start_sync(log) != RAFTLOG_OK)
				_exit(27);
			if (raftlog_synced_index(log) != before)
				_exit(28);		/* started is not durable */
		}
		if (raftlog_sync(log) != RAFTLOG_OK)
			_exit(23);
		hs.term = term;
		hs.vote = 1;
		hs.commit = raftlog_synced_index(log);
		if (raftlog_save_hard_state(log, &hs) != RAFTLOG_OK)
			_exit(24);
		if (rnd_below(15) == 0 && hs.commit > 100)
		{
			raft_snapshot_meta meta;

			memset(&meta, 0, sizeof(meta));
			meta.index = hs.commit - 50;
			if (raftlog_term(log, meta.index, &meta.term) != RAFTLOG_OK ||
				raftlog_compact(log, &meta) != RAFTLOG_OK)
				_exit(25);
		}
		/* the files of compacted segments go a few at a time, like the worker's */
		if (rnd_below(3) == 0 &&
			raftlog_remove_compacted(log, 1 + (unsigned) rnd_below(2), NULL) != RAFTLOG_OK)
			_exit(29);
		r.synced_index = raftlog_synced_index(log);
		r.synced_term = raftlog_synced_term(log);
		r.hs_term = hs.term;
		if (write(fd, &r, sizeof(r)) != (ssize_t) sizeof(r))
			_exit(26);
	}
	_exit(0);
}

static void
test_crash(void)
{
	int			round;
	unsigned	torn_rounds = 0;
	unsigned	stale_rounds = 0;
	unsigned	spare_rounds = 0;
	unsigned	prealloc_rounds = 0;
	unsigned	leftover_rounds = 0;
	uint64_t	total_synced = 0;

	for (round = 0; round < CRASH_ROUNDS; round++)
	{
		uint64_t	seed = mix(DEFAULT_SEED + (uint64_t) round);
		int			fds[2];
		pid_t		pid;
		crash_report r;
		crash_report best;
		unsigned	want = 1 + (unsigned) (seed % 60);
		unsigned	seen = 0;
		int			status;
		raftlog    *log;
		raftlog_recovery rec;
		raftlog_options ropts;
		raftlog_entries ents;
		raft_hard_state hs;
		raft_term	t;
		size_t		i;
		int			before = case_failures;
		raft_index	recovered;

		setup_dir();
		memset(&best, 0, sizeof(best));
		if (pipe(fds) != 0)
		{
			CHECK(false, "pipe");
			cleanup_dir();
			return;
		}
		fflush(stdout);
		pid = fork();
		if (pid == 0)
		{
			close(fds[0]);
			crash_child(seed, fds[1]);
		}
		close(fds[1]);
		while (seen < want && read(fds[0], &r, sizeof(r)) == (ssize_t) sizeof(r))
		{
			best = r;
			seen++;
		}
		/* let it run on a little, then kill it wherever it is */
		usleep((useconds_t) (mix(seed) % 3000));
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
			  "round %d: child ended on its own (status %d)", round, status);
		/* everything the child reported before dying */
		while (read(fds[0], &r, sizeof(r)) == (ssize_t) sizeof(r))
			best = r;
		close(fds[0]);

		/* recovery with the child's options, or with the other choice */
		ropts = crash_opts(seed);
		if ((seed >> 5) % 3 == 0)
			ropts.preallocate = !ropts.preallocate;
		if ((seed >> 9) % 5 == 0)
			ropts.spare_bytes = 0;	/* turned off: the spares go */
		prealloc_rounds += ropts.preallocate;
		log = open_ok(&ropts, &rec);
		if (log == NULL)
		{
			cleanup_dir();
			continue;
		}
		recovered = raftlog_last_index(log);
		CHECK(raftlog_last_index(log) >= best.synced_index,
			  "round %d: synced %" PRIu64 " but the log ends at %" PRIu64,
			  round, best.synced_index, raftlog_last_index(log));
		/* (the child may have compacted past its last report before dying) */
		if (raftlog_last_index(log) >= best.synced_index &&
			best.synced_index >= raftlog_first_index(log) - 1 &&
			best.synced_index > 0)
		{
			CHECK_OK(raftlog_term(log, best.synced_index, &t));
			CHECK(t == best.synced_term, "round %d: term of the synced entry", round);
		}
		raftlog_get_hard_state(log, &hs);
		CHECK(hs.term >= best.hs_term, "round %d: hard state went back", round);
		CHECK_OK(raftlog_read(log, raftlog_first_index(log),
							  raftlog_last_index(log), &ents));
		for (i = 0; i < ents.count; i++)
		{
			const raft_entry *e = &ents.entries[i];
			size_t		len = crash_len(e->term, e->index);
			uint8_t    *want_buf = malloc(len + 1);
			bool		ok;

			crash_fill(e->term, e->index, want_buf, len);
			ok = e->len == len && (len == 0 || memcmp(e->data, want_buf, len) == 0) &&
				(i == 0 || e->term >= ents.entries[i - 1].term);
			free(want_buf);
			if (!ok)
			{
				CHECK(false, "round %d: entry %" PRIu64 " is not what was written",
					  round, e->index);
				break;
			}
		}
		raftlog_entries_free(&ents);
		/*
		 * and the recovered log takes new entries, past the end of its
		 * segment (sealing it), and opens again with nothing torn
		 */
		{
			uint8_t		pad[1000];
			raft_entry	e = {raftlog_last_term(log) + 1, raftlog_last_index(log) + 1,
			RAFT_ENTRY_NORMAL, pad, sizeof(pad)};
			raft_index	last;
			raftlog_recovery rec2;
			uint64_t	k;

			memset(pad, 0x33, sizeof(pad));
			for (k = 0; k < ropts.segment_size / sizeof(pad) + 2; k++)
			{
				CHECK_OK(raftlog_append(log, &e, 1));
				e.index++;
			}
			CHECK_OK(raftlog_sync(log));
			last = raftlog_last_index(log);
			raftlog_close(log);
			log = open_ok(&ropts, &rec2);
			if (log != NULL)
			{
				CHECK(raftlog_last_index(log) == last && rec2.torn_bytes == 0 &&
					  rec2.stale_bytes == 0,
					  "round %d: reopened at %" PRIu64 " (want %" PRIu64
					  "), torn %" PRIu64 ", stale %" PRIu64, round,
					  raftlog_last_index(log), last, rec2.torn_bytes, rec2.stale_bytes);
				CHECK(ropts.spare_bytes > 0 || rec2.spares == 0,
					  "round %d: %u spares kept with spare_bytes 0", round, rec2.spares);
				raftlog_close(log);
			}
		}
		torn_rounds += rec.torn_bytes > 0;
		stale_rounds += rec.stale_bytes > 0;
		spare_rounds += rec.spares > 0;
		leftover_rounds += rec.compacted_segments_removed > 0;
		total_synced += best.synced_index;
		if (case_failures > before || getenv("RAFTLOG_TEST_VERBOSE"))
			printf("# crash round %d (seed 0x%" PRIx64 "): %u reports, synced %"
				   PRIu64 ", recovered up to %" PRIu64 ", torn %" PRIu64
				   " bytes\n", round, seed, seen, best.synced_index,
				   recovered, rec.torn_bytes);
		cleanup_dir();
	}
	printf("# crash: %d rounds, %u ended in a torn record, %u in a segment made"
		   " from a spare (stale tail), %u found spares, %u in an unfinished"
		   " compaction, %u recovered with preallocation, %" PRIu64
		   " entries synced in all\n", CRASH_ROUNDS, torn_rounds, stale_rounds,
		   spare_rounds, leftover_rounds, prealloc_rounds, total_synced);
}


/*----------
 * Spares (opts.spare_bytes)
 *----------
 */

/* Inode numbers of the files in log_dir whose name starts with prefix. */
static size_t
inodes_of(const char *prefix, ino_t *out, size_t cap)
{
	DIR		   *d = opendir(log_dir);
	struct dirent *de;
	size_t		n = 0;

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
	{
		char		path[1024];
		struct stat st;

		if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", log_dir, de->d_name);
		if (stat(path, &st) == 0 && n < cap)
			out[n++] = st.st_ino;
	}
	closedir(d);
	return n;
}

/* Append [from, to] as fixed-size entries of term 1: record boundaries of
 * a spare then line up with the new segment's, so its older records sit
 * exactly where the next record would. */
static int
append_fixed(raftlog *log, raft_index from, raft_index to)
{
	uint8_t		buf[500];
	raft_entry	e;
	raft_index	i;
	int			rc = RAFTLOG_OK;

	for (i = from; i <= to && rc == RAFTLOG_OK; i++)
	{
		payload_fill(3, i, buf, sizeof(buf));
		e.term = 1;
		e.index = i;
		e.type = RAFT_ENTRY_NORMAL;
		e.data = buf;
		e.len = sizeof(buf);
		rc = raftlog_append(log, &e, 1);
	}
	return rc == RAFTLOG_OK ? raftlog_sync(log) : rc;
}

static bool
fixed_entries_ok(raftlog *log, raft_index from, raft_index to)
{
	raftlog_entries ents;
	bool		ok = raftlog_read(log, from, to, &ents) == RAFTLOG_OK &&
		ents.count == to - from + 1;
	size_t		i;

	for (i = 0; ok && i < ents.count; i++)
	{
		uint8_t		want[500];

		payload_fill(3, from + i, want, sizeof(want));
		ok = ents.entries[i].len == sizeof(want) &&
			memcmp(ents.entries[i].data, want, sizeof(want)) == 0;
	}
	raftlog_entries_free(&ents);
	return ok;
}

/*
 * Compacted segments become spares up to spare_bytes (the rest is
 * deleted), new segments are made from them (the same files: no new inode),
 * a clean close leaves nothing to cut, and after a crash the older records
 * a spare holds past the last new one end the log without an error, even
 * when one of them sits exactly where the next record would, and are cut
 * (reported as stale, not torn).
 */
static void
test_spares(void)
{
	raftlog_options o = small_opts(8192, 256);
	raftlog_recovery rec;
	raftlog    *log;
	raft_snapshot_meta meta;
	ino_t		spare_ino[64];
	ino_t		seg_ino[64];
	size_t		nspare;
	size_t		nseg;
	size_t		i;
	size_t		j;
	size_t		reused;
	pid_t		pid;
	int			status;

	setup_dir();
	o.preallocate = true;
	o.spare_bytes = 3 * 8192;
	log = open_ok(&o, &rec);
	if (log == NULL)
		goto done;
	/* 500-byte entries, 15 to a segment: 120 entries in 8 segments */
	CHECK_OK(append_fixed(log, 1, 120));
	memset(&meta, 0, sizeof(meta));
	meta.index = 100;
	meta.term = 1;
	CHECK_OK(raftlog_compact(log, &meta));
	CHECK_OK(raftlog_remove_compacted(log, UINT32_MAX, NULL));
	nspare = inodes_of("spare-", spare_ino, 64);
	CHECK(nspare == 3, "%zu spares kept (3 fit in spare_bytes)", nspare);

	/* new segments take the spares */
	CHECK_OK(append_fixed(log, 121, 150));
	CHECK(inodes_of("spare-", spare_ino + nspare, 64 - nspare) == 1,
		  "two spares taken by two new segments");
	nseg = inodes_of("log-", seg_ino, 64);
	for (reused = 0, i = 0; i < nseg; i++)
		for (j = 0; j < nspare; j++)
			reused += seg_ino[i] == spare_ino[j];
	CHECK(reused == 2, "%zu segments are former spares (want 2)", reused);
	CHECK(fixed_entries_ok(log, 101, 150), "entries read back");
	CHECK_OK(raftlog_close(log));

	/* a clean close cut the spare's older records: nothing to report */
	log = open_ok(&o, &rec);
	if (log == NULL)
		goto done;
	CHECK(rec.torn_bytes == 0 && rec.stale_bytes == 0 && rec.spares == 1 &&
		  raftlog_last_index(log) == 150,
		  "clean reopen: torn %" PRIu64 ", stale %" PRIu64 ", %u spares, last %" PRIu64,
		  rec.torn_bytes, rec.stale_bytes, rec.spares, raftlog_last_index(log));
	CHECK(fixed_entries_ok(log, 101, 150), "entries after a clean reopen");

	/* a crash in a segment made from the last spare */
	CHECK_OK(raftlog_close(log));
	fflush(stdout);
	pid = fork();
	if (pid == 0)
	{
		raftlog    *child = NULL;
		raft_snapshot_meta m;

		if (raftlog_open(log_dir, CLUSTER, &o, &child, NULL, NULL, 0) != RAFTLOG_OK)
			_exit(1);
		memset(&m, 0, sizeof(m));
		m.index = 140;
		m.term = 1;
		/* 150 ends a segment: 151 starts the one made from the spare */
		if (raftlog_compact(child, &m) != RAFTLOG_OK ||
			raftlog_remove_compacted(child, UINT32_MAX, NULL) != RAFTLOG_OK ||
			append_fixed(child, 151, 155) != RAFTLOG_OK)
			_exit(2);
		_exit(0);				/* no close: as a crash */
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "crash child status %d", status);
	log = open_ok(&o, &rec);
	if (log == NULL)
		goto done;
	CHECK(raftlog_last_index(log) == 155 && rec.torn_bytes == 0 && rec.stale_bytes > 0,
		  "after the crash: last %" PRIu64 " (want 155), torn %" PRIu64 ", stale %" PRIu64,
		  raftlog_last_index(log), rec.torn_bytes, rec.stale_bytes);
	CHECK(fixed_entries_ok(log, 141, 155), "entries after the crash");
	/* the cut is durable and the log goes on */
	CHECK_OK(append_fixed(log, 156, 200));
	CHECK(fixed_entries_ok(log, 141, 200), "appended after the crash");
	CHECK_OK(raftlog_close(log));
	log = open_ok(&o, &rec);
	if (log != NULL)
	{
		CHECK(raftlog_last_index(log) == 200 && rec.stale_bytes == 0 && rec.torn_bytes == 0,
			  "reopened at %" PRIu64 ", stale %" PRIu64, raftlog_last_index(log),
			  rec.stale_bytes);
		CHECK_OK(raftlog_close(log));
	}

	/* spare_bytes turned off: the spares go at open */
	o.spare_bytes = 0;
	log = open_ok(&o, &rec);
	if (log != NULL)
	{
		CHECK(rec.spares == 0 && inodes_of("spare-", spare_ino, 64) == 0,
			  "spares deleted when the option is off");
		CHECK_OK(raftlog_close(log));
	}
done:
	cleanup_dir();
}

/*----------
 * Measurement (RAFTLOG_TEST_BENCH=1)
 *----------
 */
static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void
bench_one(size_t payload, size_t total, size_t per_sync)
{
	raftlog    *log;
	raft_entry *batch;
	uint8_t    *buf = malloc(payload);
	size_t		i;
	double		t0;
	double		dt;

	setup_dir();
	log = open_ok(NULL, NULL);
	batch = calloc(per_sync, sizeof(raft_entry));
	if (log == NULL || batch == NULL || buf == NULL)
		goto done;
	memset(buf, 0x5c, payload);
	t0 = now_seconds();
	for (i = 0; i < total; i += per_sync)
	{
		size_t		k;

		for (k = 0; k < per_sync; k++)
		{
			batch[k].term = 1;
			batch[k].index = i + k + 1;
			batch[k].type = RAFT_ENTRY_NORMAL;
			batch[k].data = buf;
			batch[k].len = payload;
		}
		/* the worker hands over a whole ready at once */
		CHECK_OK(raftlog_append(log, batch, per_sync));
		CHECK_OK(raftlog_sync(log));
	}
	dt = now_seconds() - t0;
	printf("# bench: %zu-byte entries, sync every %zu: %.0f entries/s, %.1f MB/s"
		   " (%zu entries in %.2f s)\n", payload, per_sync, (double) total / dt,
		   (double) total * (double) payload / dt / 1e6, total, dt);
	raftlog_close(log);
done:
	free(batch);
	free(buf);
	cleanup_dir();
}

static void
test_bench(void)
{
	bench_one(100, 1000000, 1000);
	bench_one(65536, 20000, 1000);
	bench_one(100, 20000, 1);
}

int
main(void)
{
	const char *seed_env = getenv("RAFTLOG_TEST_SEED");
	const char *bench_env = getenv("RAFTLOG_TEST_BENCH");
	uint64_t	seed = DEFAULT_SEED;

	if (seed_env != NULL && *seed_env != '\0')
		seed = strtoull(seed_env, NULL, 0);
	if (seed == 0)
		seed = DEFAULT_SEED;
	rng_state = seed;
	printf("# raftlog_test seed 0x%" PRIx64 "\n", seed);

	run_case("crc32c check value, both paths, continuation", test_crc32c);
	run_case("round trip across segments and reopen", test_roundtrip);
	run_case("hard state persists; a torn copy falls back", test_hard_state);
	run_case("truncate_from, append, reopen", test_truncate);
	run_case("compaction and snapshot install, reopen", test_compaction);
	run_case("interrupted compaction and install are finished",
			 test_interrupted_compaction);
	run_case("torn tail at every byte and trailing garbage", test_torn_tail);
	run_case("preallocated segments: zero tail, torn record, switch", test_preallocate);
	run_case("spares: kept within spare_bytes, reused, stale tail after a crash", test_spares);
	run_case("bit flip in the last segment cuts there", test_bit_flip);
	run_case("corruption outside the tail is an error", test_corruption_errors);
	run_case("segment of another cluster is an error", test_foreign_segment);
	run_case("directory created, tmp files removed", test_directory_and_tmp_files);
	run_case("one process at a time", test_lock);
	run_case("a failed write breaks the handle; reopen recovers", test_write_failure);
	run_case("SIGKILL during appends loses nothing synced", test_crash);
	if (bench_env != NULL && *bench_env != '\0' && *bench_env != '0')
		run_case("measurement", test_bench);

	return unit_summary();
}
