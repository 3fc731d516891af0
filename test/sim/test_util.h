/*-------------------------------------------------------------------------
 *
 * test_util.h
 *	  A minimal test runner for the Raft unit tests and scenarios.
 *
 * Each test is a function; CHECK records a failure and keeps going so one
 * run reports every broken expectation.  run_tests() prints one line per
 * test and ends with "N passed, M failed".
 *
 * test/sim/test_util.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CHRONICLE_RAFT_TEST_UTIL_H
#define CHRONICLE_RAFT_TEST_UTIL_H

#include <stdio.h>
#include <string.h>

typedef void (*test_fn) (void);

typedef struct test_case
{
	const char *name;
	test_fn		fn;
} test_case;

static int	test_current_failed;

#define CHECK(cond) \
	do { \
		if (!(cond)) \
		{ \
			printf("    check failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
			test_current_failed = 1; \
		} \
	} while (0)

#define CHECK_EQ(a, b) \
	do { \
		unsigned long long check_a_ = (unsigned long long) (a); \
		unsigned long long check_b_ = (unsigned long long) (b); \
		if (check_a_ != check_b_) \
		{ \
			printf("    check failed at %s:%d: %s == %s (%llu != %llu)\n", \
				   __FILE__, __LINE__, #a, #b, check_a_, check_b_); \
			test_current_failed = 1; \
		} \
	} while (0)

static inline int
run_tests(const char *suite, const test_case *cases, int count, const char *only)
{
	int			passed = 0;
	int			failed = 0;
	int			i;

	for (i = 0; i < count; i++)
	{
		if (only != NULL && strcmp(only, cases[i].name) != 0)
			continue;
		test_current_failed = 0;
		cases[i].fn();
		if (test_current_failed)
		{
			printf("FAIL %s/%s\n", suite, cases[i].name);
			failed++;
		}
		else
		{
			printf("ok   %s/%s\n", suite, cases[i].name);
			passed++;
		}
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}

#endif							/* CHRONICLE_RAFT_TEST_UTIL_H */
