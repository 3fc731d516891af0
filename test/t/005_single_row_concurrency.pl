
# Copyright (c) chronicle_raft authors
#
# Single-event commits apply without the stream lock unless they split a
# page.  Six pgbench clients commit single events at random times (most of
# them out of order, so leaves split all the time) while a reader runs
# whole-stream aggregates and scans: their counts must never go backwards
# (an aggregate reading a parent from before a split would lose the moved
# events) and must agree with each other; at the end every committed event
# is there exactly once and random intervals agree with a scan.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use ChronicleTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep time);

my $node = new_node('single_row');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'chronicle_raft'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION chronicle_raft');
$node->safe_psql('postgres', 'CREATE TABLE s (ts bigint NOT NULL, v int8) USING chronicle');
$node->safe_psql('postgres', 'INSERT INTO s SELECT g * 10, 1 FROM generate_series(1, 100000) g');

my $script = "$PostgreSQL::Test::Utils::tmp_check/single_row.sql";
open(my $fh, '>', $script) or die;
print $fh "\\set t random(1, 2000000)\nINSERT INTO s VALUES (:t, 1);\n";
close $fh;

my $bindir = $node->config_data('--bindir');
my ($out, $err) = ('', '');
my $bench = IPC::Run::start(
	[ "$bindir/pgbench", '-n', '-c', '6', '-j', '2', '-T', '8', '-f', $script,
	  '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$out, '2>', \$err);

# ranges whose bounds cut through the tree, so aggregates descend into the
# pages that splits change; only inserts happen, so no count may go down
my @ranges = ([0, 2000001], [333333, 1444444], [777777, 777977], [1000000, 1300000], [5, 999999]);
my @last = map { 0 } 0 .. 2 * $#ranges + 1;
my ($reads, $backwards, $disagree) = (0, 0, 0);
my $t_end = time() + 7;
while (time() < $t_end)
{
	my $sql = join(' UNION ALL ', map {
		"SELECT a.count, a.sum, (SELECT count(*) FROM s WHERE ts >= $_->[0] AND ts < $_->[1]) " .
		"FROM chronicle.aggregate('s', 'v', $_->[0]::bigint, $_->[1]) a" } @ranges);
	my @rows = split /\n/, $node->safe_psql('postgres', $sql);
	$reads++;
	for my $r (0 .. $#rows)
	{
		my ($agg, $sum, $scan) = split /\|/, $rows[$r];
		$backwards++ if $agg < $last[2 * $r] || $scan < $last[2 * $r + 1];
		$disagree++ if $agg != $sum;
		$last[2 * $r] = $agg;
		$last[2 * $r + 1] = $scan;
	}
}
$bench->finish;
my ($tx) = $out =~ /number of transactions actually processed: (\d+)/;
note("$reads reads while $tx single-event commits ran");
ok($tx > 1000, "pgbench committed $tx single events");
is($backwards, 0, 'aggregates and scans never lost events while pages split');
is($disagree, 0, 'count and sum of v = 1 always agree');

my $total = 100000 + $tx;
is($node->safe_psql('postgres', 'SELECT count(*), sum(v) FROM s'), "$total|$total",
	'every committed event is there exactly once');
is($node->safe_psql('postgres', "SELECT count FROM chronicle.aggregate('s', 'v', NULL::bigint, NULL)"),
	"$total", 'the aggregate agrees');
my $mismatch = $node->safe_psql('postgres', q{
SELECT count(*) FROM (
  SELECT lo, lo + w AS hi FROM (SELECT (random() * 2000000)::bigint AS lo, (random() * 300000)::bigint AS w
                                  FROM generate_series(1, 300)) r) b
 CROSS JOIN LATERAL chronicle.aggregate('s', 'v', b.lo, b.hi) a
 WHERE a.count <> (SELECT count(*) FROM s WHERE ts >= b.lo AND ts < b.hi)});
is($mismatch, '0', '300 random intervals agree with a scan');
is($node->safe_psql('postgres', 'SELECT count(*) FROM (SELECT ts < lag(ts) OVER () AS bad FROM s) x WHERE bad'),
	'0', 'the stream is in time order');

$node->stop;
done_testing();
