
# Copyright (c) chronicle_raft authors
#
# Crash safety of streams: committed events survive an immediate shutdown
# (crash) and WAL replay, the TAB+ aggregates agree with a plain recount
# afterwards, event order is kept, uncommitted events are gone, and the
# stream keeps working after recovery.
#
# Covers WAL replay of full-page images (stream r has pages from before a
# CHECKPOINT in the middle of its load and is modified after it) and of page
# deltas only (stream b is created after that checkpoint), the skip-WAL path
# of wal_level = minimal (streams created and loaded in one transaction), a
# crash while a committed big transaction is applying its events (all of
# them survive: recovery keeps the batch in a side file that the first read
# of the stream finishes, even after a clean restart in between), and
# durability of an acknowledged COMMIT when only the committing backend can
# flush WAL.
#
# wal_consistency_checking makes the startup process compare every replayed
# TAB+ page with the image the primary wrote, so a redo that builds a
# different page fails recovery instead of going unnoticed.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use ChronicleTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use File::Path qw(rmtree);
use File::Basename qw(basename);

my $node = new_node('crash');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'chronicle_raft'");
$node->append_conf(
	'postgresql.conf', qq{
wal_consistency_checking = 'chronicle_raft'
checkpoint_timeout = '1h'
max_wal_size = '4GB'
log_statement = 'none'
max_parallel_workers_per_gather = 0
TimeZone = 'UTC'
});
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION chronicle_raft');

# ---------------------------------------------------------------- helpers

# Restart after a crash; on failure show the end of the server log and stop
# the test file instead of bailing out the whole run.
sub crash_and_restart
{
	my ($label) = @_;
	$node->stop('immediate');
	my $ok = $node->start(fail_ok => 1);
	ok($ok, "$label: server restarts after the crash (WAL replay succeeds)");
	if (!$ok)
	{
		my $log = slurp_file($node->logfile);
		my @lines = split /\n/, $log;
		splice(@lines, 0, @lines - 40) if @lines > 40;
		diag("server log tail:\n" . join("\n", @lines));
		done_testing();
		exit 0;
	}
	return;
}

# Run $sql in a transaction of a background session and send its COMMIT,
# followed by \echo $marker, without waiting.  Returns that session, a
# second session to watch with, and the transaction's id.
sub start_commit
{
	my ($sql, $marker) = @_;
	my $committer = $node->background_psql('postgres', on_error_stop => 1);
	my $watcher = $node->background_psql('postgres', on_error_stop => 1);
	my $xid;

	$committer->query_safe("BEGIN; $sql;");
	$xid = $committer->query_safe("SELECT pg_current_xact_id()");
	$xid =~ s/\s+//g;
	$committer->{stdin} .= "COMMIT;\n\\echo $marker\n";
	$committer->{run}->pump_nb();
	return ($committer, $watcher, $xid);
}

# Wait (up to 60 s) until transaction $xid, whose COMMIT session $committer
# runs and then echoes $marker, is committed while COMMIT has not returned
# yet: its events are being applied.  True if seen so; false if COMMIT
# returned first.
sub wait_applying
{
	my ($committer, $watcher, $xid, $marker) = @_;
	my $deadline = time() + 60;
	while (time() < $deadline)
	{
		$committer->{run}->pump_nb();
		return 0 if $committer->{stdout} =~ /$marker/;
		if ($watcher->query_safe("SELECT pg_xact_status('$xid')") eq 'committed')
		{
			$committer->{run}->pump_nb();
			return $committer->{stdout} =~ /$marker/ ? 0 : 1;
		}
		usleep(2_000);
	}
	return 0;
}

# Aggregates of $col over every interval of @$ranges, from
# chronicle.aggregate(), one line per interval "i|count|sum|min|max|avg|ok"
# where ok says whether the plain SQL recount over the same stream gives the
# same count, sum, min, max and avg (numerically).
sub aggregates
{
	my ($stream, $col, $type, $ranges) = @_;
	my $i = 0;
	my $values = join(
		",\n",
		map {
			$i++;
			my ($f, $t) = @$_;
			"($i, (" . (defined $f ? $f : 'NULL') . ")::$type, ("
			  . (defined $t ? $t : 'NULL') . ")::$type)"
		} @$ranges);
	return $node->safe_psql(
		'postgres', qq{
WITH iv(i, f, t) AS (VALUES $values),
c AS (SELECT iv.i, a.* FROM iv, LATERAL chronicle.aggregate('$stream', '$col', iv.f, iv.t) a),
s AS (SELECT iv.i, count(x.$col) AS count, sum(x.$col)::numeric AS sum,
             min(x.$col)::numeric AS min, max(x.$col)::numeric AS max
        FROM iv LEFT JOIN $stream x
          ON (iv.f IS NULL OR x.ts >= iv.f) AND (iv.t IS NULL OR x.ts < iv.t)
       GROUP BY iv.i)
SELECT c.i, c.count, c.sum, c.min, c.max, c.avg,
       (c.count, c.sum, c.min, c.max) IS NOT DISTINCT FROM (s.count, s.sum, s.min, s.max)
       AND c.avg IS NOT DISTINCT FROM s.sum / NULLIF(s.count, 0)
  FROM c JOIN s USING (i) ORDER BY c.i});
}

# Check that every line of an aggregates() result says the recount agrees.
sub all_match
{
	my ($result, $label) = @_;
	my @bad = grep { !/\|t$/ } split /\n/, $result;
	my $n = () = $result =~ /\n/g;
	ok(@bad == 0 && $result ne '', "$label: chronicle.aggregate equals a plain SQL recount ("
		  . ($n + 1) . " intervals)")
	  or diag("mismatching intervals (i|count|sum|min|max|avg|ok):\n" . join("\n", @bad));
	return;
}

# Number of adjacent rows of a full scan that are out of event-time order.
sub disorder
{
	my ($stream) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM (SELECT ts < lag(ts) OVER () AS bad FROM $stream) x WHERE bad");
}

# ------------------------------------------------------------ the streams

my $T0 = "'2024-01-01 00:00:00+00'::timestamptz";

$node->safe_psql(
	'postgres', qq{
CREATE TABLE r (ts timestamptz NOT NULL, sensor_id int, value float8) USING chronicle;
CREATE TABLE big (ts bigint NOT NULL, x int) USING chronicle;
});

# 1. bulk, in time order; sensor_id has NULLs; value = i / 4 is exact in float8
$node->safe_psql(
	'postgres', qq{
INSERT INTO r SELECT $T0 + i * interval '1 second',
                     CASE WHEN i % 101 = 0 THEN NULL ELSE i % 17 END, i * 0.25
  FROM generate_series(1, 120000) i;
});

# 2. multi-row INSERT: duplicates of existing times, an older and a newer event
$node->safe_psql(
	'postgres', qq{
INSERT INTO r VALUES
  ($T0 + interval '50000 seconds', 100, -1.5),
  ($T0 + interval '50000 seconds', 101, -2.5),
  ($T0 - interval '1 day', 102, 1e6),
  ($T0 + interval '120000 seconds', 103, 0.75),
  ($T0 + interval '7 days', 104, NULL);
});

# 3. COPY FROM STDIN: 2000 events scattered over the loaded range (out of order)
sub epoch_ts
{
	my ($sec) = @_;
	my ($d, $h, $m, $s) =
	  (int($sec / 86400), int($sec % 86400 / 3600), int($sec % 3600 / 60), $sec % 60);
	return sprintf("2024-01-%02d %02d:%02d:%02d.5+00", 1 + $d, $h, $m, $s);
}

my $copy = "COPY r (ts, sensor_id, value) FROM STDIN;\n";
for my $j (1 .. 2000)
{
	$copy .= sprintf("%s\t%d\t%s\n", epoch_ts(($j * 7919) % 120000), 200 + $j % 5, $j * 0.5);
}
$copy .= "\\.\n";
$node->safe_psql('postgres', $copy);

# the CHECKPOINT in the middle of the loads: pages of r written so far are
# on disk, their next change is logged with a full-page image
$node->safe_psql('postgres', 'CHECKPOINT');

# stream b: created after the checkpoint, so its whole history is replayed
# from page deltas; int8 sums overflow int64 (exact int128), numeric is
# aggregated in float8 (values exact)
$node->safe_psql(
	'postgres', qq{
CREATE TABLE b (ts bigint NOT NULL, qty int8, price numeric) USING chronicle;
INSERT INTO b SELECT i * 10, 4611686018427387904 + i, i * 0.5 FROM generate_series(1, 30000) i;
INSERT INTO b SELECT i * 10 - 5, -4611686018427387904 + i * 3, -i * 0.25
  FROM generate_series(1, 30000) i WHERE i % 7 = 0;
INSERT INTO b SELECT i * 10, NULL, NULL FROM generate_series(1, 30000, 1000) i;
});
# then 200 transactions at its end that each overlap the previous one by
# half (a little late, as from concurrent sessions): the rightmost leaf
# splits before its newest eighth, and a full leaf before it moves its newer
# events into it instead of splitting
$node->safe_psql(
	'postgres', q{
DO $$
BEGIN
  FOR k IN 1 .. 200 LOOP
    INSERT INTO b SELECT 300000 + (k * 50 + j) * 10, j, j * 0.5 FROM generate_series(0, 99) j;
    COMMIT;
  END LOOP;
END $$;
});

# 4. bulk in order after the checkpoint
$node->safe_psql(
	'postgres', qq{
INSERT INTO r SELECT $T0 + i * interval '1 second', i % 13, i * 0.25
  FROM generate_series(120001, 220000) i;
});

# 5. out-of-order transactions of varying sizes spread over the whole range:
#    many leaf splits at many places (ties with existing times included)
for my $k (1 .. 8)
{
	my $n = 100 * $k * $k;
	$node->safe_psql(
		'postgres', qq{
INSERT INTO r SELECT $T0 + ((j * 104729 + $k * 7919) % 220000) * interval '1 second'
                     + CASE WHEN j % 3 = 0 THEN interval '0' ELSE interval '250 ms' END,
                     1000 + $k, -j * 0.5
  FROM generate_series(1, $n) j;
});
}

# 6. late transactions of adjacent ranges (3000 events each): each lands in
#    one gap between stored events (between two ranges, between the first
#    event and the rest, or before all of them), and the full leaf there is
#    split at the gap so the run fills leaves densely
my @late_ranges = (306000, 300000, 303000, -9000, -3000, -6000, -95000);
for my $k (0 .. $#late_ranges)
{
	my $start = $late_ranges[$k];
	$node->safe_psql(
		'postgres', qq{
INSERT INTO r SELECT $T0 + ($start + j) * interval '1 second', 2000 + $k, j * 0.125
  FROM generate_series(1, 3000) j;
});
}

# streams created and loaded in the same transaction: with wal_level =
# minimal (the test default) their pages skip WAL and are synced at commit,
# below (WAL-logged at commit) and above wal_skip_threshold (2MB, flushed)
$node->safe_psql(
	'postgres', qq{
BEGIN;
CREATE TABLE m_small (ts bigint NOT NULL, v int4) USING chronicle;
INSERT INTO m_small SELECT i, i FROM generate_series(1, 5000) i;
COMMIT;
BEGIN;
CREATE TABLE m_large (ts bigint NOT NULL, v int4) USING chronicle;
INSERT INTO m_large SELECT i, i FROM generate_series(1, 150000) i;
COMMIT;
INSERT INTO m_small SELECT i * 2 + 1, 7 FROM generate_series(1, 500) i;
INSERT INTO m_large SELECT i * 3 + 1, 7 FROM generate_series(1, 500) i;
});

my $height = $node->safe_psql('postgres',
	"SELECT tree_height FROM chronicle.streams WHERE stream = 'r'::regclass");
cmp_ok($height, '>=', 3, "stream r has a tree of height >= 3 (got $height)");

my $expected_r =
  120000 + 5 + 2000 + 100000 + 100 * (1 + 4 + 9 + 16 + 25 + 36 + 49 + 64) + 3000 * @late_ranges;
is($node->safe_psql('postgres', 'SELECT count(*) FROM r'), $expected_r, 'r: all events loaded');

# the intervals: unbounded, half-bounded, narrow, empty, on duplicated and
# on scattered out-of-order times, before all events and after all events
my @ts_ranges = (
	[ undef, undef ],
	[ undef, "$T0 + interval '50000 seconds'" ],
	[ "$T0 + interval '50000 seconds'", undef ],
	[ "$T0 + interval '50000 seconds'", "$T0 + interval '50001 seconds'" ],
	[ "$T0 + interval '1000 seconds'", "$T0 + interval '1000.6 seconds'" ],
	[ "$T0 + interval '12345 seconds'", "$T0 + interval '123456 seconds'" ],
	[ "$T0 + interval '119990 seconds'", "$T0 + interval '120010 seconds'" ],
	[ "$T0 + interval '30000 seconds'", "$T0 + interval '30000 seconds'" ],
	[ "$T0 - interval '2 days'", "$T0" ],
	[ "$T0 - interval '94000 seconds'", "$T0 - interval '4500 seconds'" ],
	[ "$T0 + interval '299999.5 seconds'", "$T0 + interval '307000 seconds'" ],
	[ "$T0 + interval '30 days'", undef ],
	[ "$T0 + interval '777.25 seconds'", "$T0 + interval '215000.5 seconds'" ],);
my @int_ranges = (
	[ undef, undef ],
	[ undef, 150000 ],
	[ 150000, undef ],
	[ 69, 70 ],
	[ 65, 75 ],
	[ 1234, 234567 ],
	[ 299995, 300011 ],
	[ 500, 500 ],
	[ 400000, undef ],);

# Everything compared before and after a crash: counts, aggregates of every
# numeric column over the intervals, the stream statistics.
sub snapshot
{
	my %s;
	$s{counts} = $node->safe_psql(
		'postgres', q{
SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM b),
       (SELECT count(*) FROM m_small), (SELECT count(*) FROM m_large)});
	$s{r_value} = aggregates('r', 'value', 'timestamptz', \@ts_ranges);
	$s{r_sensor} = aggregates('r', 'sensor_id', 'timestamptz', \@ts_ranges);
	$s{b_qty} = aggregates('b', 'qty', 'bigint', \@int_ranges);
	$s{b_price} = aggregates('b', 'price', 'bigint', \@int_ranges);
	$s{m_small} = aggregates('m_small', 'v', 'bigint', \@int_ranges);
	$s{m_large} = aggregates('m_large', 'v', 'bigint', \@int_ranges);
	$s{stats} = $node->safe_psql(
		'postgres', q{
SELECT stream, events, first_event, last_event, out_of_order_events, batches, tree_height
  FROM chronicle.streams WHERE stream::text <> 'big' ORDER BY stream::text});
	return \%s;
}

sub check_snapshot
{
	my ($s, $label) = @_;
	for my $k (qw(r_value r_sensor b_qty b_price m_small m_large))
	{
		all_match($s->{$k}, "$label, $k");
	}
	is(disorder($_), 0, "$label: full scan of $_ returns events in time order")
	  for qw(r b m_small m_large);
	return;
}

my $before = snapshot();
check_snapshot($before, 'before crash 1');

# sanity: the int8 sums really need more than 64 bits
like($before->{b_qty}, qr/^1\|\d+\|\d{22,}\|/, 'b: qty sum over everything exceeds int64');

# ------------------------------------------- crash 1: in-flight transactions

# an open transaction with staged events in r and b, inside a savepoint too
my $open = $node->background_psql('postgres', on_error_stop => 1);
$open->query_safe(
	qq{BEGIN;
INSERT INTO r SELECT $T0 + i * interval '1 second', 999, 1 FROM generate_series(1, 3000) i;
SAVEPOINT s1;
INSERT INTO b SELECT i, 999, 1 FROM generate_series(1, 3000) i;
INSERT INTO r VALUES ($T0 + interval '1 year', 999, 1);});

# a transaction committing 1.5M events into stream big: crash while COMMIT
# applies them to the tree, after its commit record.  Afterwards the stream
# must hold all of them (if the commit record made it) or none (if it did
# not), never a part: the events are applied only after the commit record,
# and a crash in the middle is finished from the WAL-logged intent.
my $nbig = 1500000;
my ($bigs, $watch, $bigxid) = start_commit(
	"INSERT INTO big SELECT i, 1 FROM generate_series(1, $nbig) i", 'big_committed');

# wait until the transaction is committed but COMMIT has not returned: the
# backend is applying the events; let part of that reach the WAL, then crash
my $applying = wait_applying($bigs, $watch, $bigxid, 'big_committed');
usleep(100_000) if $applying;
$bigs->{run}->pump_nb();
my $big_acked = ($bigs->{stdout} =~ /big_committed/) ? 1 : 0;
note("crash 1: apply of big observed in progress: $applying, COMMIT acknowledged: $big_acked");
ok($applying || $big_acked, 'crash 1: the big transaction committed before the crash');

my $log_offset = -s $node->logfile;
crash_and_restart('crash 1');
eval { $open->quit; };
eval { $bigs->quit; };
eval { $watch->quit; };

is($node->safe_psql('postgres', 'SELECT count(*) FROM r WHERE sensor_id = 999')
	  . '/' . $node->safe_psql('postgres', 'SELECT count(*) FROM b WHERE qty = 999'),
	'0/0', 'crash 1: events of the uncommitted transaction are absent');

my $after = snapshot();
is($after->{counts}, $before->{counts}, 'crash 1: every committed event is present (counts equal)');
is($after->{stats}, $before->{stats}, 'crash 1: stream statistics unchanged');
for my $k (qw(r_value r_sensor b_qty b_price m_small m_large))
{
	is($after->{$k}, $before->{$k}, "crash 1: aggregates of $k identical to before the crash");
}
check_snapshot($after, 'after crash 1');

# the unfinished batch waits in a side file; it must survive a clean restart
# (no recovery) before anyone reads the stream
my $recovery_log = substr(slurp_file($node->logfile), $log_offset);
if (!$big_acked)
{
	like($recovery_log, qr/1 committed stream batches to finish after recovery/,
		'crash 1: recovery keeps the unfinished committed batch for later');
}
$node->restart;

my $bigcount = $node->safe_psql('postgres', 'SELECT count(*) FROM big');
my $bigagg = $node->safe_psql('postgres',
	"SELECT count FROM chronicle.aggregate('big', 'x', NULL::bigint, NULL)");
note("crash 1: stream big holds $bigcount of $nbig events after the crash");
is($bigcount, $nbig, 'crash 1: the committed big transaction is complete after the crash');
if (!$big_acked)
{
	like(substr(slurp_file($node->logfile), $log_offset),
		qr/applied \d+ events of stream "big" committed before a crash/,
		'crash 1: the first read of big finished its batch from the side file');
}
is($node->safe_psql('postgres',
		"SELECT count(*) = count(DISTINCT ts) AND min(ts) = 1 AND max(ts) = $nbig AND sum(x) = $nbig FROM big"),
	't', 'crash 1: no event of big is duplicated or missing');
is($bigagg, $bigcount, 'crash 1: aggregate count of big agrees with its scan');

# ------------------------------------------------- life after the restart

$node->safe_psql(
	'postgres', qq{
INSERT INTO r SELECT $T0 + (220000 + i) * interval '1 second', 7, i * 0.25 FROM generate_series(1, 5000) i;
INSERT INTO r SELECT $T0 + ((i * 48611) % 220000) * interval '1 second', 8, 0.5 FROM generate_series(1, 3000) i;
INSERT INTO b VALUES (15, 1, 1), (300001, 2, 2), (-7, 3, 3);
INSERT INTO m_small VALUES (2, 2), (6000, 6000);
INSERT INTO m_large VALUES (2, 2), (160000, 160000);
});
is($node->safe_psql('postgres', 'SELECT count(*) FROM r'),
	$expected_r + 8000, 'inserts after the restart are applied');
is( $node->safe_psql(
		'postgres',
		"SELECT count, sum FROM chronicle.aggregate('r', 'value', $T0 + interval '220000.5 seconds', $T0 + interval '225000.5 seconds')"
	),
	'5000|3125625',
	'aggregate over the events appended after the restart');

my $before2 = snapshot();
check_snapshot($before2, 'before crash 2');

# ------------------------------------------- crash 2: no checkpoint since
# the end-of-recovery one: replay of full-page images then deltas

crash_and_restart('crash 2');
my $after2 = snapshot();
is($after2->{counts}, $before2->{counts}, 'crash 2: every committed event is present');
is($after2->{stats}, $before2->{stats}, 'crash 2: stream statistics unchanged');
for my $k (qw(r_value r_sensor b_qty b_price m_small m_large))
{
	is($after2->{$k}, $before2->{$k}, "crash 2: aggregates of $k identical to before the crash");
}
check_snapshot($after2, 'after crash 2');

# a clean restart for good measure, and one more insert
$node->restart;
$node->safe_psql('postgres', "INSERT INTO b VALUES (1, 10, 10)");
is( $node->safe_psql(
		'postgres', "SELECT count, sum FROM chronicle.aggregate('b', 'qty', 1::bigint, 2::bigint)"),
	'1|10',
	'insert after a clean restart');

# ------------------------- crash 3: an acknowledged COMMIT must be durable
#
# The WAL writer is stopped (SIGSTOP) so that only the committing backend
# can flush WAL; then the server crashes (SIGKILL of the WAL writer makes the
# postmaster kill everything, like any crashed child).  A COMMIT that
# returned must have flushed its WAL: both the stream-only transaction and
# the one that also writes a heap table must survive.

$node->safe_psql('postgres', 'CREATE TABLE h (x int)');
my $walwriter = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'");
like($walwriter, qr/^\d+$/, 'crash 3: found the WAL writer');
kill 'STOP', $walwriter;
$node->safe_psql(
	'postgres', qq{
BEGIN; INSERT INTO b VALUES (700001, 11, 11); INSERT INTO h VALUES (1); COMMIT;
INSERT INTO b VALUES (700002, 12, 12), (700003, 13, 13);
});
my $seen = $node->safe_psql('postgres', 'SELECT count(*) FROM b WHERE ts > 700000');
kill 'KILL', $walwriter;
kill 'CONT', $walwriter;
# wait for the postmaster to go (restart_after_crash = off)
my $pidfile = $node->data_dir . '/postmaster.pid';
for (my $i = 0; $i < 600 && -e $pidfile; $i++)
{
	usleep(50_000);
}
$node->stop('immediate', fail_ok => 1);    # only forgets the old pid
my $ok = $node->start(fail_ok => 1);
ok($ok, 'crash 3: server restarts');
is($seen, 3, 'crash 3: the committed events were visible before the crash');
is( $node->safe_psql('postgres', 'SELECT count(*) FROM h'),
	1, 'crash 3: the heap row of the acknowledged commit survived');
is($node->safe_psql('postgres', 'SELECT string_agg(ts::text, \',\' ORDER BY ts) FROM b WHERE ts > 700000'),
	'700001,700002,700003',
	'crash 3: the events of acknowledged commits survived (stream-only transaction included)');

# ---------------- crash 4: a checkpoint while a committed batch is applied
#
# A CHECKPOINT issued while a big committed batch is being applied must not
# complete before the batch is in (its redo pointer is past the batch's
# intent, so recovery from it would never see the intent again).  Crash the
# moment CHECKPOINT returns: every event must be there, with no help from a
# side file.

$node->safe_psql('postgres', 'TRUNCATE big');
my $nbig4 = 1000000;
my ($s4, $w4, $xid4) = start_commit(
	"INSERT INTO big SELECT i, 2 FROM generate_series(1, $nbig4) i", 'big4_committed');
my $applying4 = wait_applying($s4, $w4, $xid4, 'big4_committed');
$w4->query_safe('CHECKPOINT');
$s4->{run}->pump_nb();
my $acked4 = ($s4->{stdout} =~ /big4_committed/) ? 1 : 0;
note("crash 4: apply observed in progress when CHECKPOINT began: $applying4");
$log_offset = -s $node->logfile;
crash_and_restart('crash 4');
eval { $s4->quit; };
eval { $w4->quit; };
ok($applying4, 'crash 4: CHECKPOINT was issued while the committed batch was being applied');
unlike(substr(slurp_file($node->logfile), $log_offset), qr/committed stream batches to finish/,
	'crash 4: recovery from that checkpoint has nothing left to finish');
is($node->safe_psql('postgres',
		"SELECT count(*), count(DISTINCT ts), sum(x) FROM big"),
	"$nbig4|$nbig4|" . (2 * $nbig4),
	'crash 4: the batch applied across the checkpoint is complete');

# ------------- crash 5: side files of streams dropped or truncated since
#
# With the WAL writer stopped, a COMMIT flushes its intent and commit
# record, but the apply steps after it stay in WAL buffers: the crash
# loses them, and recovery keeps each batch in a side file.  A stream
# dropped, or truncated, before anyone reads it must not get its events
# back, and its side file must go.

$node->safe_psql('postgres', q{
CREATE TABLE gone (ts bigint NOT NULL, v int) USING chronicle;
CREATE TABLE emptied (ts bigint NOT NULL, v int) USING chronicle;
CREATE TABLE kept (ts bigint NOT NULL, v int) USING chronicle;
INSERT INTO emptied VALUES (1, 1);
CHECKPOINT;
});
$walwriter = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'");
kill 'STOP', $walwriter;
# one transaction: a later commit would flush the earlier applies
$node->safe_psql('postgres', q{
BEGIN;
INSERT INTO gone SELECT i, i FROM generate_series(1, 500) i;
INSERT INTO emptied SELECT i, i FROM generate_series(2, 500) i;
INSERT INTO kept SELECT i, i FROM generate_series(1, 500) i;
COMMIT;
});
kill 'KILL', $walwriter;
kill 'CONT', $walwriter;
for (my $i = 0; $i < 600 && -e $pidfile; $i++)
{
	usleep(50_000);
}
$node->stop('immediate', fail_ok => 1);
$log_offset = -s $node->logfile;
ok($node->start(fail_ok => 1), 'crash 5: server restarts');
like(substr(slurp_file($node->logfile), $log_offset),
	qr/3 committed stream batches to finish after recovery/,
	'crash 5: recovery keeps the three unapplied committed batches');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_ls_dir('chronicle_raft_pending')"),
	'3', 'crash 5: one side file per batch');
$node->safe_psql('postgres', 'DROP TABLE gone; TRUNCATE emptied');
is($node->safe_psql('postgres', 'SELECT count(*), sum(v) FROM kept'),
	'500|125250', 'crash 5: the batch of a stream that is still there is applied');
is($node->safe_psql('postgres', 'SELECT count(*) FROM emptied'),
	'0', 'crash 5: a stream truncated since the crash does not get its old batch back');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_ls_dir('chronicle_raft_pending')"),
	'0', 'crash 5: the side files of the dropped and the truncated stream are removed');

# ---------------------------------------------------------------- crash 6
# Single-row commits log their insert step with the event's compact delta
# instead of the packed summary (TABPLUS_INSERT_SINGLE_DELTA).  Replay them
# after a crash, with wal_consistency_checking comparing every page, over
# a tree with index levels and values that a sloppy delta would get wrong:
# NULLs, -0.0, integer extremes, float4 and numeric columns.
$node->safe_psql('postgres', q{
CREATE TABLE single (ts bigint NOT NULL, i int8, f float8, r float4, n numeric) USING chronicle;
INSERT INTO single SELECT g * 10, g, g * 0.5, g * 0.25, g * 1.5 FROM generate_series(1, 20000) g;
CHECKPOINT;
});
my @single_rows;
for my $k (1 .. 150)
{
	my $ts = ($k * 7919) % 200000 + 5;    # out of order, all over the tree
	my $i = $k % 3 == 0 ? 'NULL' : $k % 5 == 0 ? '9223372036854775807' : $k % 7 == 0 ? '-9223372036854775808' : $k;
	my $f = $k % 4 == 0 ? "'-0'" : $k % 6 == 0 ? 'NULL' : $k * -1.25;
	my $r = $k % 8 == 0 ? 'NULL' : $k * 0.125;
	my $n = $k % 9 == 0 ? 'NULL' : "$k.5";
	push @single_rows, "INSERT INTO single VALUES ($ts, $i, $f, $r, $n)";
}
$node->safe_psql('postgres', join(";
", @single_rows) . ';');
my $single_before = $node->safe_psql('postgres',
	q{SELECT count(*), count(i), sum(i), min(i), max(i), sum(f), min(f), max(f), sum(r), sum(n) FROM single});
crash_and_restart('crash 6');
is($node->safe_psql('postgres',
		q{SELECT count(*), count(i), sum(i), min(i), max(i), sum(f), min(f), max(f), sum(r), sum(n) FROM single}),
	$single_before, 'crash 6: 150 single-row commits replayed: every event once');
# (not r: SQL sums a float4 column in float4, the stream in float8)
for my $col (qw(i f n))
{
	all_match(aggregates('single', $col, 'bigint',
			[ [ undef, undef ], [ 0, 100000 ], [ 100000, undef ], [ 5, 6 ], [ 77, 150000 ] ]),
		"crash 6: column $col");
}

$node->stop;
done_testing();
