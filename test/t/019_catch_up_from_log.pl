
# Copyright (c) chronicle_raft authors
#
# A replication worker's memory does not grow with what it replicates: the
# Raft engine keeps only the newest 16 MB of applied payloads in memory and
# reads older ones back from its durable log when a follower that was down
# needs them (src/raft/raft.h, max_cached_bytes), and the worker's memory
# contexts do not grow with the transactions it serves.  About 150 MB of
# events go through the leader while a follower is down; then the leader
# restarts (it starts without loading the payloads it has applied), takes
# the leadership back, and the follower catches up from the leader's log,
# not by snapshot, ending identical to the others.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use ChronicleTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# no compaction: the returning follower must catch up from the log
my ($nodes_ref) = start_cluster('r', 3, "chronicle_raft.max_log_size = '1GB'\n");
my @nodes = @$nodes_ref;

sub role { return $_[0]->safe_psql('postgres', 'SELECT role FROM chronicle.status()'); }
sub node_id { return $_[0]->safe_psql('postgres', 'SELECT node_id FROM chronicle.status()'); }

sub worker_pid
{
	return $_[0]->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'chronicle_raft'");
}

# Resident anonymous memory of a process in kB (its heap), from /proc.
sub rss_anon_kb
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/status") or return -1;
	while (<$fh>)
	{
		return $1 if /^RssAnon:\s+(\d+)\s+kB/;
	}
	return -1;
}

# The worker's PostgreSQL memory contexts in bytes, as it logs them.
sub context_bytes
{
	my ($node, $pid) = @_;
	my $off = -s $node->logfile;
	$node->safe_psql('postgres', "SELECT pg_log_backend_memory_contexts($pid)");
	my $total = -1;
	wait_for(sub {
		my $log = slurp_file($node->logfile, $off);
		return 0 unless $log =~ /Grand total: (\d+) bytes/;
		$total = $1;
		return 1;
	});
	return $total;
}

# Run each [node, SQL file] with psql at the same time; how many failed.
sub run_files_at_once
{
	my @jobs = @_;
	my $bindir = $jobs[0][0]->config_data('--bindir');
	my @pids;
	for my $job (@jobs)
	{
		my ($n, $file) = @$job;
		my $child = fork();
		die "fork failed" unless defined $child;
		if ($child == 0)
		{
			exec("$bindir/psql", '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', $n->host,
				'-p', $n->port, '-d', 'postgres', '-o', '/dev/null', '-f', $file);
		}
		push @pids, $child;
	}
	my $failed = 0;
	for my $child (@pids)
	{
		waitpid($child, 0);
		$failed++ if $? != 0;
	}
	return $failed;
}

ok(wait_for(sub { grep { role($_) eq 'leader' } @nodes }), 'a leader is elected');
my ($leader) = grep { role($_) eq 'leader' } @nodes;
my ($down) = grep { $_ != $leader } @nodes;
my ($other) = grep { $_ != $leader && $_ != $down } @nodes;
$leader->safe_psql('postgres', 'CREATE TABLE ev (ts bigint NOT NULL, v int8, pad text) USING chronicle');
ok(wait_for(sub { $down->safe_psql('postgres', "SELECT count(*) FROM pg_class WHERE relname = 'ev'") eq '1' }),
	'the stream exists everywhere');
$down->stop;
my $down_log_off = -s $down->logfile;

# 24 transactions of 200000 events of about 30 bytes (about 150 MB of
# entries), four at a time: the worker then also proposes right after it
# applied, in the same loop iteration
my $per = 200000;
my $rounds = 24;
for my $wave (0 .. 5)
{
	my @pids;
	for my $k (1 .. 4)
	{
		my $round = $wave * 4 + $k;
		push @pids, psql_in_background($leader,
			"INSERT INTO ev SELECT $round * 1000000 + g, g % 1000, repeat('p', 10) FROM generate_series(1, $per) g",
			$leader->basedir . "/insert_$round.err");
	}
	for my $p (@pids)
	{
		waitpid($p, 0);
		is($? >> 8, 0, "a concurrent insert of wave $wave committed");
	}
}
my $total = $per * $rounds;

# many small transactions from eight sessions: the worker proposes after
# an apply in the same loop iteration all the time, and what it allocates
# then must still be freed with its loop's memory
my $pid = worker_pid($leader);
my $cxt_before = context_bytes($leader, $pid);
my $script = $leader->basedir . '/small.sql';
open(my $fh, '>', $script) or die "could not write $script: $!";
print $fh "INSERT INTO ev VALUES (900000000 + $_, 1, 'small');\n" for 1 .. 500;
close $fh;
is(run_files_at_once(map { [ $leader, $script ] } 1 .. 8), 0,
	'eight sessions committed 500 single-row transactions each');
my $cxt_after = context_bytes($leader, $pid);
note("leader worker memory contexts: $cxt_before bytes before, $cxt_after after 4000 small transactions");
ok($cxt_after - $cxt_before < 256 * 1024,
	"the worker's memory contexts did not grow with 4000 transactions ($cxt_before -> $cxt_after bytes)");
$total += 8 * 500;

is($leader->safe_psql('postgres', 'SELECT count(*) FROM ev'), $total, "the leader holds $total events");
my $anon = rss_anon_kb($pid);
note("leader worker $pid: RssAnon $anon kB after about 150 MB of entries");
ok($anon > 0 && $anon < 120 * 1024,
	"the leader's worker keeps under 120 MB of heap after about 150 MB of entries ($anon kB)");

# the leader restarts: it reloads only the payloads it has not applied
my $leader_id = node_id($leader);
$leader->restart;
ok(wait_for(sub { grep { role($_) eq 'leader' } ($leader, $other) }, 60), 'a leader again after the restart');
if (role($leader) ne 'leader')
{
	my ($now) = grep { role($_) eq 'leader' } ($leader, $other);
	$now->safe_psql('postgres', "SELECT chronicle.transfer_leadership($leader_id)");
}
ok(wait_for(sub { role($leader) eq 'leader' }, 60), 'the restarted node leads');
$anon = rss_anon_kb(worker_pid($leader));
ok($anon > 0 && $anon < 120 * 1024, "after the restart its worker holds under 120 MB of heap ($anon kB)");

# the follower returns and catches up from that log
my $leader_log_off = -s $leader->logfile;
$down->start;
ok(wait_for(sub { $down->safe_psql('postgres', 'SELECT count(*) FROM ev') eq $total }, 120),
	"the returning follower catches up to $total events");
my $down_log = slurp_file($down->logfile, $down_log_off);
unlike($down_log, qr/installed snapshot/, 'it caught up from the log, without a snapshot');
unlike(slurp_file($leader->logfile, $leader_log_off), qr/could not read back entry/,
	'the leader read every entry back from its log');

my $agg = "SELECT count(*), sum(v), min(ts), max(ts), count(DISTINCT ts) FROM ev";
my $want = $leader->safe_psql('postgres', $agg);
is($want, "$total|" . (($per / 1000) * 499500 * $rounds + 4000) . "|1000001|900000500|" . ($total - 3500),
	'the leader holds exactly the events inserted');
is($down->safe_psql('postgres', $agg), $want, 'the returning follower is identical');
is($other->safe_psql('postgres', $agg), $want, 'the other follower is identical');

# Applies leave their stream WAL to the WAL writer's own rounds (nothing
# waits for it: the Raft log has the entries).  Every node crashes right
# after a burst of commits, with applied WAL not yet flushed: each node
# applies the lost tail again from its Raft log, nothing lost or repeated.
$leader->safe_psql('postgres', 'CREATE TABLE burst (ts bigint NOT NULL, v int8) USING chronicle');
ok(wait_for(sub { (grep { $_->safe_psql('postgres', "SELECT count(*) FROM pg_class WHERE relname = 'burst'") eq '1' } @nodes) == 3 }),
	'stream burst exists everywhere');
{
	my @jobs;
	for my $k (0 .. 2)
	{
		my $file = $nodes[$k]->basedir . '/burst.sql';
		open(my $bf, '>', $file) or die "could not write $file: $!";
		print $bf "INSERT INTO burst VALUES (" . ($k * 100000 + $_) . ", $_);\n" for 1 .. 300;
		close $bf;
		push @jobs, [ $nodes[$k], $file ];
	}
	is(run_files_at_once(@jobs), 0,
		'three sessions committed 300 single-row transactions each, one per node');
}
my @unflushed = map {
	$_->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn() > pg_current_wal_flush_lsn()')
} @nodes;
note('stream WAL written but not flushed at the crash, per node: ' . join(' ', @unflushed));
$_->stop('immediate') for @nodes;
$_->start for @nodes;
ok(wait_for(sub { grep { role($_) eq 'leader' } @nodes }, 60), 'a leader after all nodes crashed');
my $burst = 'SELECT count(*), count(DISTINCT ts), sum(v) FROM burst';
ok(wait_for(sub { (grep { $_->safe_psql('postgres', $burst) eq '900|900|135450' } @nodes) == 3 }, 60),
	'after the crash every node holds the 900 committed events exactly once');
is(join(',', map { $_->safe_psql('postgres', 'SELECT count(*) FROM ev') } @nodes),
	join(',', ($total) x 3), 'and the earlier stream is intact everywhere');

$_->stop for @nodes;
done_testing();
