
# Copyright (c) chronicle_raft authors
#
# Raft log compaction on a three-node cluster with a small
# chronicle_raft.max_log_size: under continuous ingest the log directories
# stay bounded, a follower that is down does not hold compaction back (the
# live logs stay bounded while it is away) and catches up by a snapshot when
# it returns, and a restart restores from the compacted log without losing
# or repeating events.  Snapshots in detail: 015_snapshot.pl.

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
use Time::HiRes qw(usleep time);

my ($nodes_ref, $ports_ref) = start_cluster('c', 3, "chronicle_raft.max_log_size = '1MB'\n");
my @nodes = @$nodes_ref;
my @ports = @$ports_ref;

sub role { return $_[0]->safe_psql('postgres', 'SELECT role FROM chronicle.status()'); }

sub counts_are
{
	my ($expect, @live) = @_;
	return wait_for(sub {
		for my $n (@live)
		{
			return 0 if $n->safe_psql('postgres', 'SELECT count(*) FROM ev') ne $expect;
		}
		return 1;
	});
}

ok(wait_for(sub { grep { role($_) eq 'leader' } @nodes }), 'a leader is elected');
$nodes[0]->safe_psql('postgres', 'CREATE TABLE ev (ts bigint NOT NULL, v int8, pad text) USING chronicle');
ok(wait_for(sub { $nodes[2]->safe_psql('postgres', "SELECT count(*) FROM pg_class WHERE relname = 'ev'") eq '1' }),
	'the stream exists everywhere');

# about 12 MB of entries, eight times the bound
my $total = 0;
for my $round (1 .. 24)
{
	my $n = $nodes[$round % 3];
	$n->safe_psql('postgres',
		"INSERT INTO ev SELECT $round * 100000 + g, g, repeat('x', 10) FROM generate_series(1, 20000) g");
	$total += 20000;
}
ok(counts_are($total, @nodes), "all $total events on every node");
my @sizes = map { raft_log_bytes($_) } @nodes;
note("log bytes after the load: @sizes");
ok((grep { $_ >= 0 && $_ < 4 * 1024 * 1024 } @sizes) == 3,
	'every Raft log stays under 4 MB (bound 1 MB, about 12 MB ingested)');

# a follower that is down no longer holds compaction back: the live logs
# stay bounded while it misses about 4 MB, and it returns by a snapshot
my ($leader) = grep { role($_) eq 'leader' } @nodes;
my ($down) = grep { $_ != $leader } @nodes;
my @live = grep { $_ != $down } @nodes;
$down->stop;
my $logfile = $down->logfile;
my $log_off = -e $logfile ? -s $logfile : 0;
for my $round (25 .. 32)
{
	$leader->safe_psql('postgres',
		"INSERT INTO ev SELECT $round * 100000 + g, g, repeat('x', 10) FROM generate_series(1, 20000) g");
	$total += 20000;
}
ok(counts_are($total, @live), "all $total events on the two live nodes");
@sizes = map { raft_log_bytes($_) } @live;
note("live log bytes with a follower down: @sizes");
ok((grep { $_ >= 0 && $_ < 2 * 1024 * 1024 } @sizes) == 2,
	'the live Raft logs stay under 2 MB while a follower is down (about 4 MB ingested meanwhile)');
$down->start;
ok(wait_for(sub { slurp_file($logfile, $log_off) =~ /chronicle_raft: installed snapshot at index \d+/ }, 60),
	'the follower that was down catches up by a snapshot');
ok(counts_are($total, @nodes), 'and then holds every event');
is($down->safe_psql('postgres', 'SELECT count(*) - count(DISTINCT ts) FROM ev'), '0', 'each once');

# with the follower back, compaction goes on for all three
for my $round (33 .. 42)
{
	$leader->safe_psql('postgres',
		"INSERT INTO ev SELECT $round * 100000 + g, g, repeat('x', 10) FROM generate_series(1, 20000) g");
	$total += 20000;
}
ok(counts_are($total, @nodes), "all $total events on every node");
ok(wait_for(sub { (grep { raft_log_bytes($_) < 4 * 1024 * 1024 } @nodes) == 3 }),
	'every log stays bounded with all three members');
# compacted segments are kept for reuse, within half the bound
my @spares = map { [ raft_spares($_) ] } @nodes;
note('spares (bytes, files) per node: ' . join(' ', map { "$_->[0]/$_->[1]" } @spares));
ok((grep { $_->[1] >= 1 && $_->[0] <= 512 * 1024 } @spares) == 3,
	'every node keeps spare segment files, within half of max_log_size');

# restart everything: restored from the compacted logs, nothing lost or repeated
$_->stop('immediate') for @nodes;
$_->start for @nodes;
ok(wait_for(sub { grep { role($_) eq 'leader' } @nodes }), 'a leader after restarting all nodes');
my $sum = $nodes[1]->safe_psql('postgres', 'SELECT count(*), count(DISTINCT ts) FROM ev');
is($sum, "$total|$total", 'after the restart every event is there exactly once');
$nodes[2]->safe_psql('postgres', 'INSERT INTO ev VALUES (1, 1, NULL)');
ok(counts_are($total + 1, @nodes), 'and the cluster still commits');

$_->stop for @nodes;
done_testing();
