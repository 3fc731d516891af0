
# Copyright (c) chronicle_raft authors
#
# Concurrent writers and readers on one stream.  Eight psql sessions each
# commit 200 transactions of 50 events (two INSERTs of 25, so a reader that
# saw half a transaction would find a count that is not a multiple of 50),
# with event times interleaved between sessions, descending inside each
# transaction and some transactions back-filling an hour earlier.
# Meanwhile a reader repeatedly scans the stream and checks that every scan
# sees, per session, exactly a prefix of its committed transactions (whole
# batches, no duplicates, no gaps) in event-time order, and that aggregates
# see whole batches too.  At the end all 80000 events are there exactly once.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use ChronicleTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use File::Path qw(rmtree);
use File::Basename qw(basename);
use IPC::Run;
use Time::HiRes qw(time usleep);

my $SESSIONS = 8;
my $TXNS = 200;
my $ROWS = 50;
my $TOTAL = $SESSIONS * $TXNS * $ROWS;

my $node = new_node('conc');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'chronicle_raft'");
$node->append_conf(
	'postgresql.conf', qq{
log_statement = 'none'
max_connections = 40
max_parallel_workers_per_gather = 0
TimeZone = 'UTC'
});
$node->start;

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION chronicle_raft;
CREATE TABLE c (ts timestamptz NOT NULL, sid int, txn int, seq int) USING chronicle;
});

# ------------------------------------------------------------- writers

my $T0 = "'2024-01-01 00:00:00+00'::timestamptz";
my $dir = PostgreSQL::Test::Utils::tempdir();
my @writers;
my (@out, @err);
for my $sid (0 .. $SESSIONS - 1)
{
	my $sql = '';
	for my $txn (0 .. $TXNS - 1)
	{
		my $shift = ($txn % 7 == 3) ? " - interval '1 hour'" : '';
		my $ev =
		  "$T0 + ((($txn * $ROWS + ($ROWS - 1 - g)) * $SESSIONS + $sid) * interval '1 millisecond')$shift";
		$sql .= "BEGIN;\n";
		$sql .= "INSERT INTO c SELECT $ev, $sid, $txn, $txn * $ROWS + g FROM generate_series(0, 24) g;\n";
		$sql .= "INSERT INTO c SELECT $ev, $sid, $txn, $txn * $ROWS + g FROM generate_series(25, 49) g;\n";
		$sql .= "COMMIT;\n";
		# pace the writers a little so that the reader gets many scans in
		$sql .= "SELECT pg_sleep(0.01) \\g /dev/null\n";
	}
	my $file = "$dir/writer_$sid.sql";
	open my $fh, '>', $file or die "could not write $file: $!";
	print $fh $sql;
	close $fh;

	local $ENV{PGAPPNAME} = "writer_$sid";
	$out[$sid] = '';
	$err[$sid] = '';
	push @writers,
	  IPC::Run::start(
		[
			'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
			'-d', $node->connstr('postgres'), '-f', $file
		],
		'>', \$out[$sid], '2>', \$err[$sid],
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
}

# -------------------------------------------------------------- reader

my $reader = $node->background_psql('postgres', on_error_stop => 1);
my $scans = 0;
my $partial_seen = 0;    # scans that saw some but not all events
my @scan_problems;
my @agg_problems;
my @bucket_problems;
my @nbucket_problems;
my @order_problems;
my %last_count;
my $last_total = 0;
my $deadline = time() + 150;

while (time() < $deadline)
{
	my $running = $reader->query_safe(
		"SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'writer\\_%'");

	# one scan: per session count, distinct sequence numbers, range, batches
	my $res = $reader->query_safe(
		q{SELECT sid, count(*), count(DISTINCT seq), min(seq), max(seq),
		         count(DISTINCT txn), max(txn)
		    FROM c GROUP BY sid ORDER BY sid});
	my $total = 0;
	for my $line (split /\n/, $res)
	{
		my ($sid, $n, $nd, $mn, $mx, $nt, $mt) = split /\|/, $line;
		$total += $n;
		push @scan_problems, "scan $scans session $sid: $line"
		  unless $n % $ROWS == 0
		  && $nd == $n
		  && $mn == 0
		  && $mx == $n - 1
		  && $nt * $ROWS == $n
		  && $mt == $nt - 1
		  && $n >= ($last_count{$sid} // 0);
		$last_count{$sid} = $n;
	}
	push @scan_problems, "scan $scans: total $total went back from $last_total"
	  if $total < $last_total;
	$last_total = $total;
	$partial_seen++ if $total > 0 && $total < $TOTAL;

	# an aggregate sees whole batches: its count is a multiple of 50
	my ($acount, $asum) = split /\|/,
	  $reader->query_safe(
		"SELECT count, coalesce(sum, 0) FROM chronicle.aggregate('c', 'seq', NULL::timestamptz, NULL)");
	push @agg_problems, "scan $scans: aggregate count $acount" if $acount % $ROWS != 0;

	# so does one bucketed aggregate call, over all its buckets (bounds
	# cover every event: only the consistency between buckets matters)
	my $bcount = $reader->query_safe(
		"SELECT coalesce(sum(count), 0) FROM chronicle.aggregate('c', 'seq', $T0 - interval '2 hours', $T0 + interval '20 minutes', interval '1 second')"
	);
	push @bucket_problems, "scan $scans: bucket counts add up to $bcount"
	  if $bcount % $ROWS != 0;

	# the same with NULL bounds (first event to last event), every third
	# time (narrow buckets: a call takes a while)
	if ($scans % 3 == 1)
	{
		my $ncount = $reader->query_safe(
			"SELECT coalesce(sum(count), 0) FROM chronicle.aggregate('c', 'seq', NULL::timestamptz, NULL, interval '100 ms')"
		);
		push @nbucket_problems, "scan $scans: bucket counts add up to $ncount"
		  if $ncount % $ROWS != 0;
	}

	# every scan returns events in time order
	if ($scans % 3 == 0)
	{
		my $bad = $reader->query_safe(
			"SELECT count(*) FROM (SELECT ts < lag(ts) OVER () AS bad FROM c) x WHERE bad");
		push @order_problems, "scan $scans: $bad events out of order" if $bad != 0;
	}

	$scans++;
	last if $running == 0;
}
$reader->quit;

my @failed;
for my $sid (0 .. $SESSIONS - 1)
{
	my $ok = eval { $writers[$sid]->finish; 1 };
	push @failed, "writer $sid: " . ($ok ? "exit " . $writers[$sid]->result : "$@") . " $err[$sid]"
	  if !$ok || $writers[$sid]->result != 0;
}
is(scalar(@failed), 0, 'all writer sessions committed their transactions without error')
  or diag(join("\n", @failed));

note("$scans scans, $partial_seen of them during the inserts");
cmp_ok($partial_seen, '>=', 3, 'the reader scanned while the writers were inserting');
is(scalar(@scan_problems), 0,
	'every scan saw, per session, a growing prefix of whole transactions without duplicates')
  or diag(join("\n", @scan_problems[ 0 .. ($#scan_problems < 9 ? $#scan_problems : 9) ]));
is(scalar(@agg_problems), 0, 'every aggregate saw whole transactions only')
  or diag(join("\n", @agg_problems[ 0 .. ($#agg_problems < 9 ? $#agg_problems : 9) ]));
is(scalar(@order_problems), 0, 'every scan during the inserts returned events in time order')
  or diag(join("\n", @order_problems));
is(scalar(@bucket_problems), 0,
	'a bucketed aggregate sees whole transactions only (its buckets add up to a multiple of 50)')
  or diag(join("\n", @bucket_problems[ 0 .. ($#bucket_problems < 9 ? $#bucket_problems : 9) ]));
is(scalar(@nbucket_problems), 0,
	'a bucketed aggregate with NULL bounds sees whole transactions only')
  or diag(join("\n", @nbucket_problems[ 0 .. ($#nbucket_problems < 9 ? $#nbucket_problems : 9) ]));

# ------------------------------------------------------------ the end

is( $node->safe_psql(
		'postgres', 'SELECT count(*), count(DISTINCT (sid, seq)), count(DISTINCT (sid, txn)) FROM c'),
	"$TOTAL|$TOTAL|" . ($SESSIONS * $TXNS),
	'every event is present exactly once');
is( $node->safe_psql(
		'postgres',
		'SELECT string_agg(n::text, \',\' ORDER BY sid) FROM (SELECT sid, count(*) AS n FROM c GROUP BY sid) x'
	),
	join(',', ($TXNS * $ROWS) x $SESSIONS),
	'every session has all its events');
is( $node->safe_psql(
		'postgres', 'SELECT count(*) FROM (SELECT ts < lag(ts) OVER () AS bad FROM c) x WHERE bad'),
	0,
	'the final scan returns events in time order');

# each event's time is determined by (sid, seq): check the stored times
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM c
 WHERE ts <> $T0 + (((txn * $ROWS + ($ROWS - 1 - (seq - txn * $ROWS))) * $SESSIONS + sid)
                    * interval '1 millisecond')
                 - CASE WHEN txn % 7 = 3 THEN interval '1 hour' ELSE interval '0' END}),
	0,
	'every event kept its event time and columns');

my $n_per = $TXNS * $ROWS;
is( $node->safe_psql(
		'postgres', q{
SELECT s.count, s.sum, s.min, s.max, q.count, q.sum
  FROM chronicle.aggregate('c', 'seq', NULL::timestamptz, NULL) s,
       chronicle.aggregate('c', 'sid', NULL::timestamptz, NULL) q}),
	join('|',
		$TOTAL, $SESSIONS * ($n_per - 1) * $n_per / 2,
		0, $n_per - 1, $TOTAL, $n_per * ($SESSIONS - 1) * $SESSIONS / 2),
	'aggregates over the whole stream are exact');
is( $node->safe_psql(
		'postgres', "SELECT events, batches FROM chronicle.streams WHERE stream = 'c'::regclass"),
	"$TOTAL|" . ($SESSIONS * $TXNS),
	'stream statistics: one batch per committed transaction');

$node->stop;
done_testing();
