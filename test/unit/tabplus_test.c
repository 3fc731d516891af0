/*-------------------------------------------------------------------------
 *
 * tabplus_test.c
 *	  Server-free unit tests of the TAB+ page primitives and the page-delta
 *	  WAL encoding (src/tabplus/tabplus_page.c).
 *
 * The page code needs a few backend symbols (PageInit, elog, the summary
 * merge); minimal stand-ins are defined here.  Rows in these tests are
 * [int64 time][uint8 payload length][payload], which is all the page code
 * needs to know of a row: its time key at offset 0 and its length through
 * the callback.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdio.h>
#include <stdlib.h>

#include "tabplus/tabplus.h"

/* the stand-ins below keep the backend signatures, used or not */
#pragma GCC diagnostic ignored "-Wunused-parameter"

/* use libc stdio, not libpgport's replacements */
#undef printf
#undef fprintf

static int	tests_passed = 0;
static int	tests_failed = 0;
static int	checks_failed_in_test = 0;

#define CHECK(cond) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			checks_failed_in_test++; \
		} \
	} while (0)

static void
run_test(const char *name, void (*fn) (void))
{
	checks_failed_in_test = 0;
	fn();
	if (checks_failed_in_test == 0)
	{
		tests_passed++;
		printf("ok   %s\n", name);
	}
	else
	{
		tests_failed++;
		printf("FAIL %s\n", name);
	}
}

/* ---- stand-ins for backend symbols the page code links against ---- */

void
PageInit(Page page, Size pageSize, Size specialSize)
{
	PageHeader	p = (PageHeader) page;

	specialSize = MAXALIGN(specialSize);
	memset(p, 0, pageSize);
	p->pd_flags = 0;
	p->pd_lower = SizeOfPageHeaderData;
	p->pd_upper = pageSize - specialSize;
	p->pd_special = pageSize - specialSize;
	PageSetPageSizeAndVersion(page, pageSize, PG_PAGE_LAYOUT_VERSION);
}

bool
errstart(int elevel, const char *domain)
{
	return elevel >= ERROR;
}

bool
errstart_cold(int elevel, const char *domain)
{
	return errstart(elevel, domain);
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	fprintf(stderr, "elog(ERROR) at %s:%d\n", filename, lineno);
	abort();
}

int
errmsg_internal(const char *fmt,...)
{
	return 0;
}

void
event_summary_init(const StreamLayout *layout, EventSummary *sum)
{
	int			i;

	sum->count = 0;
	sum->min_ts = PG_INT64_MAX;
	sum->max_ts = PG_INT64_MIN;
	for (i = 0; i < layout->nagg; i++)
		memset(&sum->cols[i], 0, sizeof(ColumnAgg));
}

void
event_summary_merge(const StreamLayout *layout, EventSummary *into, const EventSummary *from)
{
	int			i;

	into->count += from->count;
	into->min_ts = Min(into->min_ts, from->min_ts);
	into->max_ts = Max(into->max_ts, from->max_ts);
	for (i = 0; i < layout->nagg; i++)
	{
		into->cols[i].count += from->cols[i].count;
		into->cols[i].isum += from->cols[i].isum;
		into->cols[i].fsum += from->cols[i].fsum;
	}
}

/* ---- helpers ---- */

static Size
test_rowlen(const void *arg, const char *row)
{
	return 9 + (uint8) row[8];
}

static Size
make_row(char *buf, int64 ts, uint8 payload, char fill)
{
	memcpy(buf, &ts, 8);
	buf[8] = (char) payload;
	memset(buf + 9, fill, payload);
	return 9 + payload;
}

static uint64 rng_state = 0x9E3779B97F4A7C15ULL;

static uint64
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static StreamLayout *
make_layout(int nagg)
{
	StreamLayout *l = calloc(1, offsetof(StreamLayout, cols) + sizeof(StreamColumn));
	int			i;

	l->nagg = nagg;
	l->aggkinds = calloc(Max(nagg, 1), sizeof(StreamAggKind));
	for (i = 0; i < nagg; i++)
		l->aggkinds[i] = (i % 2 == 0) ? STREAM_AGG_INT : STREAM_AGG_FLOAT;
	return l;
}

static void
free_layout(StreamLayout *l)
{
	free(l->aggkinds);
	free(l);
}

static EventSummary *
make_summary(const StreamLayout *l)
{
	return calloc(1, offsetof(EventSummary, cols) + sizeof(ColumnAgg) * Max(l->nagg, 1));
}

/* ---- leaves ---- */

static void
test_leaf_insert_order_and_ties(void)
{
	PGAlignedBlock page;
	char		row[300];
	int64		times[] = {50, 10, 30, 30, 70, 10, 30};
	int			i;
	int			n;

	tabplus_page_init(page.data, TABPLUS_PAGE_LEAF, 0);
	CHECK(tabplus_page_is(page.data, TABPLUS_PAGE_LEAF));
	CHECK(!tabplus_page_is(page.data, TABPLUS_PAGE_INTERNAL));
	for (i = 0; i < 7; i++)
	{
		Size		len = make_row(row, times[i], 1, (char) ('a' + i));
		int			pos = tabplus_leaf_upper_bound(page.data, times[i], 0);

		CHECK(tabplus_leaf_insert(page.data, pos, row, len));
	}
	n = tabplus_leaf_nrows(page.data);
	CHECK(n == 7);
	/* time order, and ties in arrival order: 30 arrived as c, d, g */
	{
		const char *expect = "bfcdgae";

		for (i = 0; i < n; i++)
			CHECK(tabplus_leaf_row(page.data, i)[9] == expect[i]);
	}
	CHECK(tabplus_leaf_lower_bound(page.data, 30) == 2);
	CHECK(tabplus_leaf_upper_bound(page.data, 30, 0) == 5);
	CHECK(tabplus_leaf_lower_bound(page.data, 5) == 0);
	CHECK(tabplus_leaf_upper_bound(page.data, 100, 0) == 7);
}

static void
test_leaf_full_and_free_space(void)
{
	PGAlignedBlock page;
	char		row[300];
	Size		free0;
	int			count = 0;
	Size		len = make_row(row, 1, 100, 'x');

	tabplus_page_init(page.data, TABPLUS_PAGE_LEAF, 0);
	free0 = tabplus_leaf_free(page.data);
	CHECK(free0 == BLCKSZ - SizeOfPageHeaderData - MAXALIGN(sizeof(TabPlusPageOpaqueData)));
	while (tabplus_leaf_insert(page.data, tabplus_leaf_nrows(page.data), row, len))
		count++;
	CHECK(count == (int) (free0 / (len + sizeof(uint16))));
	CHECK(tabplus_leaf_free(page.data) < len + sizeof(uint16));
	/* a refused insert changes nothing */
	CHECK(tabplus_leaf_nrows(page.data) == count);
}

static void
test_leaf_split(void)
{
	PGAlignedBlock left;
	PGAlignedBlock right;
	char		row[300];
	int			i;
	int			n = 0;

	tabplus_page_init(left.data, TABPLUS_PAGE_LEAF, 0);
	tabplus_page_init(right.data, TABPLUS_PAGE_LEAF, 0);
	for (i = 0; i < 200; i++)
	{
		int64		ts = (int64) (rng() % 1000);
		Size		len = make_row(row, ts, (uint8) (i % 17), (char) i);

		if (!tabplus_leaf_insert(left.data, tabplus_leaf_upper_bound(left.data, ts, 0), row, len))
			break;
		n++;
	}
	tabplus_leaf_split(left.data, right.data, n / 2, test_rowlen, NULL);
	CHECK(tabplus_leaf_nrows(left.data) == n / 2);
	CHECK(tabplus_leaf_nrows(right.data) == n - n / 2);
	for (i = 1; i < n / 2; i++)
		CHECK(row_get_time(tabplus_leaf_row(left.data, i - 1)) <=
			  row_get_time(tabplus_leaf_row(left.data, i)));
	for (i = 1; i < n - n / 2; i++)
		CHECK(row_get_time(tabplus_leaf_row(right.data, i - 1)) <=
			  row_get_time(tabplus_leaf_row(right.data, i)));
	CHECK(row_get_time(tabplus_leaf_row(left.data, n / 2 - 1)) <=
		  row_get_time(tabplus_leaf_row(right.data, 0)));
	/* compaction gave the left page back its space */
	CHECK(tabplus_leaf_free(left.data) > BLCKSZ / 3);
	/* every row keeps its payload intact */
	for (i = 0; i < n / 2; i++)
	{
		char	   *r = tabplus_leaf_row(left.data, i);
		int			k;

		for (k = 0; k < (uint8) r[8]; k++)
			CHECK(r[9 + k] == r[9]);
	}
}

/* ---- internal pages ---- */

static void
test_entry_roundtrip(void)
{
	StreamLayout *l = make_layout(3);
	PGAlignedBlock page;
	TabPlusEntry in;
	TabPlusEntry out;
	int128		big = ((int128) 1 << 100) + 12345;

	in.sum = make_summary(l);
	out.sum = make_summary(l);
	tabplus_page_init(page.data, TABPLUS_PAGE_INTERNAL, 1);
	in.child = 42;
	in.low_key = -7;
	in.sum->count = 99;
	in.sum->min_ts = -7;
	in.sum->max_ts = 1000;
	in.sum->cols[0].count = 98;
	in.sum->cols[0].isum = -big;
	in.sum->cols[0].imin = PG_INT64_MIN;
	in.sum->cols[0].imax = PG_INT64_MAX;
	in.sum->cols[1].count = 97;
	in.sum->cols[1].fsum = 0.25;
	in.sum->cols[1].fmin = -1.5;
	in.sum->cols[1].fmax = 1e300;
	in.sum->cols[2].count = 1;
	in.sum->cols[2].isum = big;
	CHECK(tabplus_entry_insert(page.data, 0, l, &in));
	tabplus_entry_get(page.data, 0, l, &out);
	CHECK(out.child == 42 && out.low_key == -7);
	CHECK(out.sum->count == 99 && out.sum->min_ts == -7 && out.sum->max_ts == 1000);
	CHECK(out.sum->cols[0].count == 98 && out.sum->cols[0].isum == -big);
	CHECK(out.sum->cols[0].imin == PG_INT64_MIN && out.sum->cols[0].imax == PG_INT64_MAX);
	CHECK(out.sum->cols[1].count == 97 && out.sum->cols[1].fsum == 0.25);
	CHECK(out.sum->cols[1].fmin == -1.5 && out.sum->cols[1].fmax == 1e300);
	CHECK(out.sum->cols[2].isum == big);
	CHECK(TABPLUS_ENTRY_SIZE(3) == 40 + 3 * 40);
	free(in.sum);
	free(out.sum);
	free_layout(l);
}

/*
 * The logical insert-step WAL record carries the step's delta packed; redo
 * merges the unpacked delta.  Both must write the same entry bytes as the
 * original delta did.
 */
static void
test_summary_pack_roundtrip(void)
{
	StreamLayout *l = make_layout(3);
	EventSummary *delta = make_summary(l);
	EventSummary *back = make_summary(l);
	TabPlusEntry e;
	PGAlignedBlock a;
	PGAlignedBlock b;
	char		packed[3 * 8 + 3 * 40];
	int128		big = ((int128) 1 << 90) - 3;

	CHECK(tabplus_summary_packed_size(l) == sizeof(packed));
	delta->count = 5;
	delta->min_ts = -3;
	delta->max_ts = 77;
	delta->cols[0].count = 4;
	delta->cols[0].isum = big;
	delta->cols[0].imin = -9;
	delta->cols[0].imax = 1234567890123LL;
	delta->cols[1].count = 5;
	delta->cols[1].fsum = 2.5e-7;
	delta->cols[1].fmin = -0.0;
	delta->cols[1].fmax = 3.25;
	delta->cols[2].count = 0;
	tabplus_summary_pack(l, delta, packed);
	tabplus_summary_unpack(l, packed, back);
	CHECK(back->count == 5 && back->min_ts == -3 && back->max_ts == 77);
	CHECK(back->cols[0].count == 4 && back->cols[0].isum == big);
	CHECK(back->cols[0].imin == -9 && back->cols[0].imax == 1234567890123LL);
	CHECK(back->cols[1].count == 5 && back->cols[1].fsum == 2.5e-7);
	CHECK(back->cols[1].fmin == -0.0 && back->cols[1].fmax == 3.25);
	CHECK(back->cols[2].count == 0);

	/* one entry merged with each: same bytes */
	e.sum = make_summary(l);
	tabplus_page_init(a.data, TABPLUS_PAGE_INTERNAL, 1);
	e.child = 7;
	e.low_key = 100;
	e.sum->count = 10;
	e.sum->cols[0].count = 10;
	e.sum->cols[0].isum = 1000;
	e.sum->cols[1].count = 10;
	e.sum->cols[1].fsum = 1.5;
	CHECK(tabplus_entry_insert(a.data, 0, l, &e));
	memcpy(b.data, a.data, BLCKSZ);
	tabplus_entry_get(a.data, 0, l, &e);
	event_summary_merge(l, e.sum, delta);
	tabplus_entry_put(a.data, 0, l, &e);
	tabplus_entry_get(b.data, 0, l, &e);
	event_summary_merge(l, e.sum, back);
	tabplus_entry_put(b.data, 0, l, &e);
	CHECK(memcmp(a.data, b.data, BLCKSZ) == 0);
	free(e.sum);
	free(delta);
	free(back);
	free_layout(l);
}

/* Meta counters: count, time range, and events older than the newest. */
static void
test_meta_add_event(void)
{
	TabPlusMeta meta;
	int64		ts[] = {10, 20, 15, 5, 30, 30};
	int			i;

	memset(&meta, 0, sizeof(meta));
	meta.min_ts = PG_INT64_MAX;
	meta.max_ts = PG_INT64_MIN;
	for (i = 0; i < (int) lengthof(ts); i++)
		tabplus_meta_add_event(&meta, ts[i]);
	CHECK(meta.count == 6);
	CHECK(meta.min_ts == 5 && meta.max_ts == 30);
	CHECK(meta.out_of_order == 2);	/* 15 and 5; a tie is not out of order */
}

static void
test_internal_route_capacity_split(void)
{
	StreamLayout *l = make_layout(2);
	PGAlignedBlock page;
	PGAlignedBlock right;
	TabPlusEntry e;
	int			cap = tabplus_internal_capacity(l);
	int			i;

	e.sum = make_summary(l);
	tabplus_page_init(page.data, TABPLUS_PAGE_INTERNAL, 1);
	/* low keys 0, 10, 20, 20, 40 ... inserted in order */
	for (i = 0; i < cap; i++)
	{
		e.child = 100 + i;
		e.low_key = (i == 3) ? 20 : i * 10;
		CHECK(tabplus_entry_insert(page.data, i, l, &e));
	}
	CHECK(tabplus_internal_nentries(page.data, l) == cap);
	CHECK(!tabplus_entry_insert(page.data, cap, l, &e));
	CHECK(cap == (int) ((BLCKSZ - SizeOfPageHeaderData - 16) / TABPLUS_ENTRY_SIZE(2)));

	CHECK(tabplus_internal_route(page.data, l, -5) == 0);	/* before all */
	CHECK(tabplus_internal_route(page.data, l, 0) == 0);
	CHECK(tabplus_internal_route(page.data, l, 9) == 0);
	CHECK(tabplus_internal_route(page.data, l, 10) == 1);
	CHECK(tabplus_internal_route(page.data, l, 20) == 3);	/* ties go right */
	CHECK(tabplus_internal_route(page.data, l, 39) == 3);
	CHECK(tabplus_internal_route(page.data, l, PG_INT64_MAX) == cap - 1);

	tabplus_page_init(right.data, TABPLUS_PAGE_INTERNAL, 1);
	tabplus_internal_split(page.data, right.data, cap / 2, l);
	CHECK(tabplus_internal_nentries(page.data, l) == cap / 2);
	CHECK(tabplus_internal_nentries(right.data, l) == cap - cap / 2);
	tabplus_entry_get(right.data, 0, l, &e);
	CHECK(e.child == (BlockNumber) (100 + cap / 2));
	/* insert in the middle shifts later entries */
	e.child = 7;
	e.low_key = 15;
	CHECK(tabplus_entry_insert(page.data, 2, l, &e));
	tabplus_entry_get(page.data, 3, l, &e);
	CHECK(e.child == 102);
	CHECK(tabplus_internal_route(page.data, l, 16) == 2);
	free(e.sum);
	free_layout(l);
}

static void
test_internal_summary(void)
{
	StreamLayout *l = make_layout(1);
	PGAlignedBlock page;
	TabPlusEntry e;
	EventSummary *sum = make_summary(l);
	EventSummary *scratch = make_summary(l);
	int			i;

	e.sum = make_summary(l);
	tabplus_page_init(page.data, TABPLUS_PAGE_INTERNAL, 1);
	for (i = 0; i < 5; i++)
	{
		e.child = i;
		e.low_key = i * 100;
		e.sum->count = 10;
		e.sum->min_ts = i * 100;
		e.sum->max_ts = i * 100 + 99;
		e.sum->cols[0].count = 10;
		e.sum->cols[0].isum = i;
		CHECK(tabplus_entry_insert(page.data, i, l, &e));
	}
	tabplus_internal_summary(page.data, l, sum, scratch);
	CHECK(sum->count == 50 && sum->min_ts == 0 && sum->max_ts == 499);
	CHECK(sum->cols[0].count == 50 && sum->cols[0].isum == 10);
	free(e.sum);
	free(sum);
	free(scratch);
	free_layout(l);
}

/* ---- page deltas ---- */

static void
check_delta_reproduces(const char *orig, const char *page, bool isnew)
{
	static char delta[BLCKSZ * 2];
	PGAlignedBlock replay;
	Size		len;
	PageHeader	h = (PageHeader) page;

	len = tabplus_delta_encode(isnew ? NULL : orig, page, delta);
	if (isnew)
		memset(replay.data, 0, BLCKSZ);
	else
	{
		memcpy(replay.data, orig, BLCKSZ);
		/* the replaying side's hole may hold anything */
		memset(replay.data + ((PageHeader) orig)->pd_lower, 0x5A,
			   ((PageHeader) orig)->pd_upper - ((PageHeader) orig)->pd_lower);
	}
	CHECK(tabplus_delta_apply(replay.data, delta, len));
	CHECK(memcmp(replay.data, page, h->pd_lower) == 0);
	CHECK(memcmp(replay.data + h->pd_upper, page + h->pd_upper, BLCKSZ - h->pd_upper) == 0);
}

static void
test_delta_leaf_changes(void)
{
	PGAlignedBlock orig;
	PGAlignedBlock page;
	char		row[300];
	int			round;

	tabplus_page_init(page.data, TABPLUS_PAGE_LEAF, 0);
	memcpy(orig.data, page.data, BLCKSZ);
	check_delta_reproduces(orig.data, page.data, true);
	for (round = 0; round < 200; round++)
	{
		int			k;
		int			nins = 1 + (int) (rng() % 20);

		memcpy(orig.data, page.data, BLCKSZ);
		for (k = 0; k < nins; k++)
		{
			int64		ts = (int64) (rng() % 10000);
			Size		len = make_row(row, ts, (uint8) (rng() % 40), (char) rng());

			if (!tabplus_leaf_insert(page.data, tabplus_leaf_upper_bound(page.data, ts, 0), row, len))
			{
				PGAlignedBlock right;

				tabplus_page_init(right.data, TABPLUS_PAGE_LEAF, 0);
				tabplus_leaf_split(page.data, right.data, tabplus_leaf_nrows(page.data) / 2,
								   test_rowlen, NULL);
				check_delta_reproduces(NULL, right.data, true);
				break;
			}
		}
		check_delta_reproduces(orig.data, page.data, false);
	}
	/* an unchanged page has an empty delta */
	{
		char		d[64];

		CHECK(tabplus_delta_encode(page.data, page.data, d) == 0);
	}
}

static void
test_delta_rejects_malformed(void)
{
	PGAlignedBlock page;
	char		d[16];
	uint16		off = BLCKSZ - 2;
	uint16		len = 4;

	memset(page.data, 0, BLCKSZ);
	memcpy(d, &off, 2);
	memcpy(d + 2, &len, 2);
	CHECK(!tabplus_delta_apply(page.data, d, 8));	/* past the page end */
	off = 0;
	len = 10;
	memcpy(d, &off, 2);
	memcpy(d + 2, &len, 2);
	CHECK(!tabplus_delta_apply(page.data, d, 8));	/* truncated bytes */
	CHECK(!tabplus_delta_apply(page.data, d, 3));	/* truncated header */
	CHECK(tabplus_delta_apply(page.data, d, 0));	/* empty is fine */
}

int
main(void)
{
	run_test("leaf insert keeps time order and arrival order of ties", test_leaf_insert_order_and_ties);
	run_test("leaf fills to capacity and refuses without change", test_leaf_full_and_free_space);
	run_test("leaf split keeps order, content and compacts", test_leaf_split);
	run_test("index entry round-trips int128 and float aggregates", test_entry_roundtrip);
	run_test("packed summary round-trips and merges to the same entry bytes", test_summary_pack_roundtrip);
	run_test("meta counters count events, time range and out-of-order ones", test_meta_add_event);
	run_test("internal routing, capacity and split", test_internal_route_capacity_split);
	run_test("internal node summary merges its entries", test_internal_summary);
	run_test("page delta reproduces leaf changes over any hole", test_delta_leaf_changes);
	run_test("page delta rejects malformed input", test_delta_rejects_malformed);
	printf("%d passed, %d failed\n", tests_passed, tests_failed);
	return tests_failed == 0 ? 0 : 1;
}
