
# Copyright (c) chronicle_raft authors
#
# A snapshot meets an object of the receiving node's own: a follower has a
# local view on a stream that the cluster drops while the follower is down.
# Installing the snapshot must not drop the view silently: it fails with an
# error naming the stream and a hint, changes nothing, and is retried by the
# restarting worker; once the view is gone the install goes through and the
# node ends identical to the others.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use ChronicleTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my ($nodes_ref, $ports_ref) = start_cluster('o', 3, "chronicle_raft.max_log_size = '1MB'\n");
my @nodes = @$nodes_ref;

sub role { return $_[0]->safe_psql('postgres', 'SELECT role FROM chronicle.status()'); }

sub digest
{
	my ($node, $stream) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) || ':' || coalesce(md5(string_agg(ts::text || '/' || v::text, ',')), '') FROM $stream");
}

ok(wait_for(sub { grep { role($_) eq 'leader' } @nodes }), 'a leader is elected');
my ($leader) = grep { role($_) eq 'leader' } @nodes;
$leader->safe_psql('postgres', 'CREATE TABLE keep (ts bigint NOT NULL, v int8) USING chronicle');
$leader->safe_psql('postgres', 'CREATE TABLE doomed (ts bigint NOT NULL, v int8) USING chronicle');
$leader->safe_psql('postgres', 'INSERT INTO doomed SELECT g, g FROM generate_series(1, 1000) g');
ok(wait_for(sub { (grep { (eval { $_->safe_psql('postgres', 'SELECT count(*) FROM doomed') } // '') eq '1000' } @nodes) == 3 }),
	'both streams exist everywhere');

my ($f) = grep { $_ != $leader } @nodes;
my @live = grep { $_ != $f } @nodes;
$f->safe_psql('postgres', 'CREATE VIEW doomed_view AS SELECT count(*) AS n FROM doomed');
is($f->safe_psql('postgres', 'SELECT n FROM doomed_view'), '1000', 'a local view on the follower');
$f->stop;

# while it is away: the stream goes, and enough is ingested to compact the log
$live[0]->safe_psql('postgres', 'DROP TABLE doomed');
my $total = 0;
for my $round (1 .. 10)
{
	$live[ $round % 2 ]->safe_psql('postgres',
		"INSERT INTO keep SELECT $round * 100000 + g, g FROM generate_series(1, 20000) g");
	$total += 20000;
}
ok(wait_for(sub { (grep { raft_log_bytes($_) < 2 * 1024 * 1024 } @live) == 2 }),
	'the live nodes compacted their logs');

my $off = -s $f->logfile;
$f->start;
my $refusal = '';
ok(wait_for(sub {
	my $log = slurp_file($f->logfile, $off);
	($refusal) = $log =~ /(ERROR:\s+cannot install the Raft snapshot[^\n]*\n(?:[^\n]*\n){0,3})/;
	return defined $refusal;
}, 60), 'the install is refused while a local view depends on the stream the cluster dropped');
like($refusal, qr/DETAIL:\s+view public\.doomed_view depends on table public\.doomed/, 'the error names the dependent view');
like($refusal, qr/HINT:\s+Drop the objects on this node that depend on stream public\.doomed/,
	'the hint names the stream and the way out');
is($f->safe_psql('postgres', 'SELECT n FROM doomed_view'), '1000',
	'nothing changed on the follower: the view and the old stream still answer');
isnt($f->safe_psql('postgres', 'SELECT count(*) FROM keep'), "$total",
	'and it does not hold the new events yet');

$f->safe_psql('postgres', 'DROP VIEW doomed_view');
ok(wait_for(sub { $f->safe_psql('postgres', 'SELECT count(*) FROM keep') eq "$total" }, 60),
	'once the view is gone the restarted worker installs the snapshot');
like(slurp_file($f->logfile, $off), qr/chronicle_raft: installed snapshot at index \d+/, 'by snapshot');
is($f->safe_psql('postgres', "SELECT count(*) FROM pg_class WHERE relname = 'doomed'"), '0',
	'the dropped stream is gone');
is(digest($f, 'keep'), digest($live[0], 'keep'), 'the follower is identical to the others');
$f->safe_psql('postgres', 'INSERT INTO keep VALUES (1, 1)');
ok(wait_for(sub { (grep { $_->safe_psql('postgres', 'SELECT count(*) FROM keep') eq $total + 1 } @nodes) == 3 }),
	'and it takes part in new commits');

$_->stop for @nodes;
done_testing();
