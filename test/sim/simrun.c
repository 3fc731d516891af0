/*-------------------------------------------------------------------------
 *
 * simrun.c
 *	  Command-line driver of the random cluster simulation.
 *
 *	  simrun --seed=S [--nodes=N] [--steps=M] [--verbose]	replay one seed
 *	  simrun --first=A --count=C [--nodes=3|5|35] [--steps=M]	a seed range
 *
 * With --nodes=35 every seed runs once with 3 and once with 5 nodes.  Each
 * failure prints the seed and the exact command that replays it; the last
 * line is "N passed, M failed" and the exit status is non-zero on failure.
 * --expect-failure inverts the verdict: used by the "teeth" tests, where a
 * deliberately broken engine must be caught.
 *
 * test/sim/simrun.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim.h"

static bool
parse_u64(const char *arg, const char *name, uint64_t *value)
{
	size_t		len = strlen(name);

	if (strncmp(arg, name, len) != 0 || arg[len] != '=')
		return false;
	*value = strtoull(arg + len + 1, NULL, 10);
	return true;
}

static sim_run_stats totals;

static int
run_one(uint64_t seed, int nodes, int steps, bool verbose, bool quiet_fail)
{
	sim_options opts;
	char		why[600];
	int			rc;
	sim_run_stats stats;

	sim_options_default(&opts);
	opts.seed = seed;
	opts.num_nodes = nodes;
	opts.verbose = verbose;
	memset(&stats, 0, sizeof(stats));
	rc = sim_random_run(&opts, steps, why, sizeof(why), &stats);
	totals.leaderships += stats.leaderships;
	totals.committed += stats.committed;
	totals.ticks += stats.ticks;
	totals.crashes += stats.crashes;
	totals.snapshots_installed += stats.snapshots_installed;
	totals.read_backs += stats.read_backs;
	if (rc != 0 && !quiet_fail)
	{
		printf("FAIL seed=%llu nodes=%d steps=%d: %s\n",
			   (unsigned long long) seed, nodes, steps, why);
		printf("  replay: make -C test/sim build/simrun && "
			   "test/sim/build/simrun --seed=%llu --nodes=%d --steps=%d --verbose\n",
			   (unsigned long long) seed, nodes, steps);
	}
	else if (verbose)
		printf("seed=%llu nodes=%d: %s\n", (unsigned long long) seed, nodes, why);
	return rc;
}

int
main(int argc, char **argv)
{
	uint64_t	seed = 0;
	uint64_t	first = 1;
	uint64_t	count = 0;
	uint64_t	nodes = 3;
	uint64_t	steps = 4000;
	uint64_t	value;
	bool		have_seed = false;
	bool		verbose = false;
	bool		expect_failure = false;
	int			passed = 0;
	int			failed = 0;
	uint64_t	k;
	int			i;

	for (i = 1; i < argc; i++)
	{
		if (parse_u64(argv[i], "--seed", &value))
		{
			seed = value;
			have_seed = true;
		}
		else if (parse_u64(argv[i], "--first", &value))
			first = value;
		else if (parse_u64(argv[i], "--count", &value))
			count = value;
		else if (parse_u64(argv[i], "--nodes", &value))
			nodes = value;
		else if (parse_u64(argv[i], "--steps", &value))
			steps = value;
		else if (strcmp(argv[i], "--random-first") == 0)
			first = (uint64_t) time(NULL) * 1000;
		else if (strcmp(argv[i], "--verbose") == 0)
			verbose = true;
		else if (strcmp(argv[i], "--expect-failure") == 0)
			expect_failure = true;
		else
		{
			fprintf(stderr, "usage: simrun --seed=S | --first=A --count=C "
					"[--random-first] [--nodes=3|5|35] [--steps=M] [--verbose] "
					"[--expect-failure]\n");
			return 2;
		}
	}
	if (nodes != 3 && nodes != 5 && nodes != 35)
	{
		fprintf(stderr, "simrun: --nodes must be 3, 5 or 35\n");
		return 2;
	}
	if (have_seed)
	{
		first = seed;
		count = 1;
	}
	if (count == 0)
		count = 1;
	if (!have_seed)
		printf("simrun: seeds %llu..%llu, nodes %llu, %llu steps each\n",
			   (unsigned long long) first,
			   (unsigned long long) (first + count - 1),
			   (unsigned long long) nodes, (unsigned long long) steps);

	for (k = 0; k < count; k++)
	{
		int			sizes[2];
		int			num_sizes = 0;
		int			j;

		if (nodes == 3 || nodes == 35)
			sizes[num_sizes++] = 3;
		if (nodes == 5 || nodes == 35)
			sizes[num_sizes++] = 5;
		for (j = 0; j < num_sizes; j++)
		{
			if (run_one(first + k, sizes[j], (int) steps, verbose && have_seed,
						expect_failure) == 0)
				passed++;
			else
			{
				failed++;
				if (expect_failure)
				{
					printf("teeth: seed=%llu nodes=%d caught the broken build\n",
						   (unsigned long long) (first + k), sizes[j]);
					break;
				}
			}
		}
		if (expect_failure && failed > 0)
			break;
	}

	if (expect_failure)
	{
		/* teeth: a broken engine must fail at least one seed */
		if (failed > 0)
		{
			printf("teeth: the broken build failed %d of %d runs, as it must\n",
				   failed, passed + failed);
			printf("1 passed, 0 failed\n");
			return 0;
		}
		printf("teeth: the broken build passed all %d runs: the simulator has no teeth\n",
			   passed);
		printf("0 passed, 1 failed\n");
		return 1;
	}
	printf("simrun: %llu leaderships, %llu entries committed, %llu ticks, %llu crashes, %llu snapshots installed, %llu payloads read back\n",
		   (unsigned long long) totals.leaderships,
		   (unsigned long long) totals.committed,
		   (unsigned long long) totals.ticks,
		   (unsigned long long) totals.crashes,
		   (unsigned long long) totals.snapshots_installed,
		   (unsigned long long) totals.read_backs);
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
