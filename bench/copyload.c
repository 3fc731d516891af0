/*
 * bench/copyload.c - parallel COPY load generator for bench_cluster.sh.
 *
 * Streams ROWS events (ts timestamptz, sensor_id int4, value float8) into a
 * table with COPY ... FROM STDIN over libpq, from CLIENTS connections at
 * once.  The events are the ones bench_streams.sh generates: event i has
 * ts = 2026-01-01 00:00:00+00 + (FIRST + i) * 10 ms, sensor_id = i % 1000
 * and value = a slow sine plus noise, rounded to 3 decimals.
 *
 * The events are cut into batches of BATCH rows; batch k is one COPY
 * statement in its own transaction (autocommit), sent by client k % CLIENTS.
 * So concurrent clients send neighbouring time ranges and the load arrives
 * roughly in time order, like several producers of one live stream.
 *
 * The client is kept out of the measurement: every client formats all its
 * COPY text in memory before the clock starts (connections are open, the
 * threads wait on a barrier), so the timed part only copies bytes into
 * libpq's buffer and waits for the server.  The process's CPU time during
 * the timed part is reported so that this can be checked.
 *
 *   cc -O2 -o copyload copyload.c -I$(pg_config --includedir) -lpq -lpthread -lm
 *   copyload -d 'host=/tmp port=5432 dbname=postgres' -t events -n 2000000 -c 4 -b 100000
 *
 * Output (one line, key=value): rows, seconds, rows_per_s, batches,
 * batch_p50_ms, batch_max_ms, client_cpu_s, client_cpu_pct (of one core).
 * Exit status 0 on success, 1 on any error (the first error is printed),
 * 2 on bad usage, 3 when the time limit (-T) is exceeded.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#define T0_EPOCH	1767225600LL	/* 2026-01-01 00:00:00 UTC */
#define EVENT_US	10000LL
#define CHUNK		(64 * 1024)

typedef struct Client
{
	int			id;
	pthread_t	thread;
	PGconn	   *conn;
	char	   *text;			/* all of this client's COPY text */
	size_t	   *batch_off;		/* offset of each batch in text, plus the end */
	int64_t    *batch_rows;
	int			nbatches;
	double	   *batch_ms;		/* measured latency of each batch */
	int			failed;
	char		err[512];
} Client;

static const char *conninfo;
static const char *table = "events";
static int64_t nrows = 1000000;
static int64_t first = 0;
static int	nclients = 1;
static int64_t batch = 100000;
static int	time_limit = 0;
static pthread_barrier_t start_barrier;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double
cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
		ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* deterministic noise in [0, 1) from the event number (splitmix64) */
static double
noise(uint64_t i)
{
	uint64_t	z = i + 0x9E3779B97F4A7C15ULL;

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	z ^= z >> 31;
	return (z >> 11) * (1.0 / 9007199254740992.0);
}

/* Append event i (absolute number) as a COPY text line; returns bytes. */
static int
format_event(char *out, int64_t i)
{
	int64_t		us = i * EVENT_US;
	time_t		secs = (time_t) (T0_EPOCH + us / 1000000);
	struct tm	tm;
	double		v = floor((20.0 + 10.0 * sin(i / 6000.0) + noise((uint64_t) i)) * 1000.0) / 1000.0;

	gmtime_r(&secs, &tm);
	return sprintf(out, "%04d-%02d-%02d %02d:%02d:%02d.%06d+00\t%d\t%.3f\n",
				   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
				   tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (us % 1000000),
				   (int) (i % 1000), v);
}

/* Format every batch of this client (batch k goes to client k % nclients). */
static int
prepare(Client *c)
{
	int64_t		total_batches = (nrows + batch - 1) / batch;
	int64_t		k;
	int64_t		myrows = 0;
	size_t		cap;
	size_t		len = 0;
	int			n = 0;

	for (k = c->id; k < total_batches; k += nclients)
	{
		int64_t		lo = k * batch;
		int64_t		hi = lo + batch < nrows ? lo + batch : nrows;

		myrows += hi - lo;
		n++;
	}
	/* at most ~48 bytes per line: "YYYY-MM-DD HH:MM:SS.uuuuuu+00\t999\t-99.999\n" */
	cap = (size_t) myrows * 64 + 1;
	c->text = malloc(cap);
	c->batch_off = calloc(n + 1, sizeof(size_t));
	c->batch_rows = calloc(n + 1, sizeof(int64_t));
	c->batch_ms = calloc(n + 1, sizeof(double));
	if (!c->text || !c->batch_off || !c->batch_rows || !c->batch_ms)
	{
		snprintf(c->err, sizeof(c->err), "out of memory");
		return -1;
	}
	n = 0;
	for (k = c->id; k < total_batches; k += nclients)
	{
		int64_t		lo = k * batch;
		int64_t		hi = lo + batch < nrows ? lo + batch : nrows;
		int64_t		i;

		c->batch_off[n] = len;
		c->batch_rows[n] = hi - lo;
		for (i = lo; i < hi; i++)
			len += format_event(c->text + len, first + i);
		n++;
	}
	c->batch_off[n] = len;
	c->nbatches = n;
	return 0;
}

static int
copy_batch(Client *c, int b, char *sql)
{
	PGresult   *res;
	size_t		off = c->batch_off[b];
	size_t		end = c->batch_off[b + 1];
	int			ok = 1;

	res = PQexec(c->conn, sql);
	if (PQresultStatus(res) != PGRES_COPY_IN)
	{
		snprintf(c->err, sizeof(c->err), "client %d: COPY did not start: %s", c->id, PQerrorMessage(c->conn));
		PQclear(res);
		return -1;
	}
	PQclear(res);
	while (off < end)
	{
		size_t		n = end - off < CHUNK ? end - off : CHUNK;

		if (PQputCopyData(c->conn, c->text + off, (int) n) != 1)
		{
			snprintf(c->err, sizeof(c->err), "client %d: PQputCopyData: %s", c->id, PQerrorMessage(c->conn));
			return -1;
		}
		off += n;
	}
	if (PQputCopyEnd(c->conn, NULL) != 1)
	{
		snprintf(c->err, sizeof(c->err), "client %d: PQputCopyEnd: %s", c->id, PQerrorMessage(c->conn));
		return -1;
	}
	while ((res = PQgetResult(c->conn)) != NULL)
	{
		if (PQresultStatus(res) != PGRES_COMMAND_OK && ok)
		{
			snprintf(c->err, sizeof(c->err), "client %d: COPY failed: %s", c->id, PQresultErrorMessage(res));
			ok = 0;
		}
		else if (ok && atoll(PQcmdTuples(res)) != c->batch_rows[b])
		{
			snprintf(c->err, sizeof(c->err), "client %d: COPY reported %s rows, sent %lld",
					 c->id, PQcmdTuples(res), (long long) c->batch_rows[b]);
			ok = 0;
		}
		PQclear(res);
	}
	return ok ? 0 : -1;
}

static void *
run_client(void *arg)
{
	Client	   *c = arg;
	char		sql[512];
	int			b;

	snprintf(sql, sizeof(sql), "COPY %s (ts, sensor_id, value) FROM STDIN", table);
	pthread_barrier_wait(&start_barrier);
	if (c->failed)
		return NULL;
	for (b = 0; b < c->nbatches; b++)
	{
		double		t0 = now_s();

		if (copy_batch(c, b, sql) != 0)
		{
			c->failed = 1;
			break;
		}
		c->batch_ms[b] = (now_s() - t0) * 1000.0;
	}
	return NULL;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return x < y ? -1 : (x > y);
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: copyload -d CONNINFO [-t TABLE] [-n ROWS] [-f FIRST] [-c CLIENTS] [-b BATCH] [-T SECONDS]\n"
			"  -t table (default events), -n events (default 1000000), -f number of the first event (0),\n"
			"  -c clients (1..64, default 1), -b events per COPY transaction (default 100000),\n"
			"  -T time limit in seconds for the whole run (0: none)\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	int			opt;
	Client	   *clients;
	int			i;
	double		t0, t1, c0, c1;
	int			failed = 0;
	double	   *all;
	int			nall = 0;

	while ((opt = getopt(argc, argv, "d:t:n:f:c:b:T:")) != -1)
	{
		switch (opt)
		{
			case 'd': conninfo = optarg; break;
			case 't': table = optarg; break;
			case 'n': nrows = atoll(optarg); break;
			case 'f': first = atoll(optarg); break;
			case 'c': nclients = atoi(optarg); break;
			case 'b': batch = atoll(optarg); break;
			case 'T': time_limit = atoi(optarg); break;
			default: usage();
		}
	}
	if (!conninfo || nrows < 1 || first < 0 || nclients < 1 || nclients > 64 || batch < 1 || time_limit < 0)
		usage();
	if (time_limit > 0)
		alarm((unsigned) time_limit);	/* SIGALRM ends the process: exit status 142 */

	clients = calloc(nclients, sizeof(Client));
	pthread_barrier_init(&start_barrier, NULL, nclients + 1);
	for (i = 0; i < nclients; i++)
	{
		Client	   *c = &clients[i];

		c->id = i;
		if (prepare(c) != 0)
		{
			fprintf(stderr, "copyload: %s\n", c->err);
			return 1;
		}
		c->conn = PQconnectdb(conninfo);
		if (PQstatus(c->conn) != CONNECTION_OK)
		{
			fprintf(stderr, "copyload: client %d could not connect: %s", i, PQerrorMessage(c->conn));
			return 1;
		}
	}
	for (i = 0; i < nclients; i++)
		if (pthread_create(&clients[i].thread, NULL, run_client, &clients[i]) != 0)
		{
			fprintf(stderr, "copyload: pthread_create: %s\n", strerror(errno));
			return 1;
		}

	/* everything is formatted and connected: start the clock */
	c0 = cpu_s();
	t0 = now_s();
	pthread_barrier_wait(&start_barrier);
	for (i = 0; i < nclients; i++)
		pthread_join(clients[i].thread, NULL);
	t1 = now_s();
	c1 = cpu_s();

	all = calloc((size_t) ((nrows + batch - 1) / batch) + 1, sizeof(double));
	for (i = 0; i < nclients; i++)
	{
		Client	   *c = &clients[i];
		int			b;

		if (c->failed)
		{
			if (!failed)
				fprintf(stderr, "copyload: %s", c->err);
			failed = 1;
		}
		for (b = 0; b < c->nbatches; b++)
			all[nall++] = c->batch_ms[b];
		PQfinish(c->conn);
	}
	if (failed)
		return 1;
	qsort(all, nall, sizeof(double), cmp_double);
	printf("rows=%lld seconds=%.6f rows_per_s=%.1f batches=%d batch_p50_ms=%.3f batch_max_ms=%.3f client_cpu_s=%.3f client_cpu_pct=%.1f\n",
		   (long long) nrows, t1 - t0, nrows / (t1 - t0), nall,
		   nall ? all[nall / 2] : 0.0, nall ? all[nall - 1] : 0.0,
		   c1 - c0, 100.0 * (c1 - c0) / (t1 - t0));
	return 0;
}
