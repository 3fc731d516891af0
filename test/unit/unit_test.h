/*-------------------------------------------------------------------------
 *
 * unit_test.h
 *	  The bookkeeping every server-free unit test program shares: checks
 *	  that report without stopping, named cases, the closing "N passed, M
 *	  failed" line the Makefile adds up, and a seeded random generator.
 *
 * Header-only (static inline functions): each test program is one translation
 * unit.  A program may set unit_before_case / unit_after_case, e.g. to
 * check that a case freed everything it allocated.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CHRONICLE_UNIT_TEST_H
#define CHRONICLE_UNIT_TEST_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

static int	n_passed;
static int	n_failed;
static int	case_failures;		/* failed checks in the running case */

/* CHECK(condition, printf-style explanation, ...) */
#define CHECK(cond, ...) \
	do { \
		if (!(cond)) \
			check_failed(__FILE__, __LINE__, #cond, __VA_ARGS__); \
	} while (0)

static inline void check_failed(const char *file, int line, const char *cond,
								const char *fmt,...) __attribute__((format(printf, 4, 5)));

static inline void
check_failed(const char *file, int line, const char *cond, const char *fmt,...)
{
	va_list		ap;

	/* the first few failures of a case tell the story; more are noise */
	if (case_failures++ < 8)
	{
		fprintf(stderr, "%s:%d: check failed: %s: ", file, line, cond);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
}

typedef void (*test_fn) (void);

static test_fn unit_before_case = NULL;
static test_fn unit_after_case = NULL;

static inline void
run_case(const char *name, test_fn fn)
{
	case_failures = 0;
	if (unit_before_case)
		unit_before_case();
	fn();
	if (unit_after_case)
		unit_after_case();
	if (case_failures == 0)
	{
		n_passed++;
		printf("ok - %s\n", name);
	}
	else
	{
		n_failed++;
		printf("FAILED - %s (%d failed checks)\n", name, case_failures);
	}
	fflush(stdout);
}

/* The closing line the Makefile reads; returns the exit status. */
static inline int
unit_summary(void)
{
	printf("%d passed, %d failed\n", n_passed, n_failed);
	return n_failed == 0 ? 0 : 1;
}

/* xorshift64*: seeded by setting rng_state (never 0) */
static uint64_t rng_state = UINT64_C(0x9E3779B97F4A7C15);

static inline uint64_t
rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * UINT64_C(2685821657736338717);
}

/* Uniform in [0, n); n > 0.  The modulo bias does not matter here. */
static inline uint64_t
rnd_below(uint64_t n)
{
	return rnd() % n;
}

#endif							/* CHRONICLE_UNIT_TEST_H */
