
# Copyright (c) chronicle_raft authors
#
# Raft log compaction on a three-node cluster with a small
# chronicle_raft.max_log_size: under continuous ingest the log directories
# stay bounded, a follower that is down holds compaction back and catches up
# from the retained log when it returns, and a restart restores from the
# compacted log without losing or repeating events.

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

sub log_bytes
{
	my ($node) = @_;
	my $dir = $node->data_dir . '/chronicle_raft';
	my $total = 0;
	opendir(my $dh, $dir) or return -1;
	for my $f (readdir $dh)
	{
		$total += -s "$dir/$f" if $f =~ /\.seg$/;
	}
	closedir $dh;
	return $total;
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
my @sizes = map { log_bytes($_) } @nodes;
note("log bytes after the load: @sizes");
ok((grep { $_ >= 0 && $_ < 4 * 1024 * 1024 } @sizes) == 3,
	'every Raft log stays under 4 MB (bound 1 MB, about 12 MB ingested)');

# a follower that is down keeps the entries it misses
my ($leader) = grep { role($_) eq 'leader' } @nodes;
my ($down) = grep { $_ != $leader } @nodes;
$down->stop;
for my $round (25 .. 30)
{
	$leader->safe_psql('postgres',
		"INSERT INTO ev SELECT $round * 100000 + g, g, repeat('x', 10) FROM generate_series(1, 20000) g");
	$total += 20000;
}
$down->start;
ok(counts_are($total, @nodes), 'the follower that was down catches up from the retained log');

# compaction resumes once it is back
for my $round (31 .. 40)
{
	$leader->safe_psql('postgres',
		"INSERT INTO ev SELECT $round * 100000 + g, g, repeat('x', 10) FROM generate_series(1, 20000) g");
	$total += 20000;
}
ok(counts_are($total, @nodes), "all $total events on every node");
ok(wait_for(sub { (grep { log_bytes($_) < 4 * 1024 * 1024 } @nodes) == 3 }),
	'the logs shrink again once every member has the entries');

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
