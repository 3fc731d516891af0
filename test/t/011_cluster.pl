
# Copyright (c) chronicle_raft authors
#
# A replicated cluster of three PostgreSQL servers on loopback.  Checks that
# stream DDL and inserts on any node reach every node in the same order,
# that a restarted follower catches up, that losing the leader (SIGKILL)
# elects another and loses no acknowledged event, that a node with the
# wrong secret is refused while the majority goes on, and that random bytes
# sent to a Raft port change nothing.

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
use IO::Socket::INET;
use Time::HiRes qw(usleep time);

# wal_consistency_checking: the killed leader's recovery replays the Raft
# apply's TAB+ records and compares every page with the one it logged
my ($nodes_ref, $ports_ref) =
  start_cluster('n', 3, "wal_consistency_checking = 'chronicle_raft'\n");
my @nodes = @$nodes_ref;
my @ports = @$ports_ref;

sub status
{
	my ($node) = @_;
	my $s = $node->safe_psql('postgres',
		'SELECT role, leader_id, term, applied_index FROM chronicle.status()');
	return split /\|/, $s;
}

# wait until the given nodes agree on a leader among them
sub wait_leader
{
	my @live = @_;
	my $deadline = time() + 30;
	while (time() < $deadline)
	{
		my %leaders;
		my $leading = 0;
		for my $n (@live)
		{
			my ($role, $leader) = status($n);
			$leaders{$leader // ''}++;
			$leading++ if $role eq 'leader';
		}
		my @ids = keys %leaders;
		return $ids[0] if $leading == 1 && @ids == 1 && $ids[0] ne '';
		usleep(100_000);
	}
	return undef;
}

sub wait_count
{
	my ($sql, $expect, @live) = @_;
	my $deadline = time() + 30;
	while (time() < $deadline)
	{
		my $ok = 1;
		for my $n (@live)
		{
			my $got = $n->safe_psql('postgres', $sql);
			$ok = 0 if $got ne $expect;
		}
		return 1 if $ok;
		usleep(100_000);
	}
	return 0;
}

my $leader = wait_leader(@nodes);
ok(defined $leader, "the three nodes elect one leader (node $leader)");

# ---------------------------------------------- DDL and inserts from any node

$nodes[1]->safe_psql('postgres',
	'CREATE TABLE ev (ts bigint NOT NULL, node int, seq int, v int8) USING chronicle');
ok(wait_count("SELECT count(*) FROM pg_class WHERE relname = 'ev'", '1', @nodes),
	'a stream created on node 2 exists on every node');

for my $round (1 .. 5)
{
	for my $i (0 .. 2)
	{
		my $n = $i + 1;
		$nodes[$i]->safe_psql('postgres',
			"INSERT INTO ev SELECT (g * 37 + $round * 11 + $n) % 10000, $n, $round * 1000 + g, g FROM generate_series(1, 200) g");
	}
}
my $expect = '3000';
ok(wait_count('SELECT count(*) FROM ev', $expect, @nodes), 'inserts on each node appear on all nodes');

my $digest_sql = "SELECT md5(string_agg(ts || ':' || node || ':' || seq, ',')) FROM ev";
my @digests = map { $_->safe_psql('postgres', $digest_sql) } @nodes;
is($digests[1], $digests[0], 'node 2 holds the same events in the same order as node 1');
is($digests[2], $digests[0], 'node 3 holds the same events in the same order as node 1');
is($nodes[2]->safe_psql('postgres', "SELECT count, sum FROM chronicle.aggregate('ev', 'v', NULL::bigint, NULL)"),
	'3000|301500', 'aggregates on a follower');

# a stream in a schema that exists on the origin only: schemas are not
# replicated, so every node creates the schema the statement names
$nodes[0]->safe_psql('postgres', 'CREATE SCHEMA "Local Only"');
$nodes[0]->safe_psql('postgres',
	'CREATE TABLE "Local Only".ev2 (ts bigint NOT NULL, v int) USING chronicle');
ok(wait_count("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
		. "WHERE n.nspname = 'Local Only' AND c.relname = 'ev2'", '1', @nodes),
	'a stream in a schema created on one node only is created on every node');
$nodes[2]->safe_psql('postgres', 'INSERT INTO "Local Only".ev2 SELECT g, g FROM generate_series(1, 50) g');
ok(wait_count('SELECT count(*) FROM "Local Only".ev2', '50', @nodes),
	'and takes events on every node');
$nodes[1]->safe_psql('postgres', 'DROP TABLE "Local Only".ev2');

# linearizable reads: after read_barrier() a follower has every committed event
{
	my ($ldr) = grep { (status($_))[0] eq 'leader' } @nodes;
	my ($fol) = grep { $_ != $ldr } @nodes;
	$ldr->safe_psql('postgres', 'INSERT INTO ev VALUES (19999, 0, 0, 0)');
	my $r = $fol->safe_psql('postgres',
		"SELECT chronicle.read_barrier() > 0, (SELECT count(*) FROM ev WHERE ts = 19999)");
	is($r, 't|1', 'a read after read_barrier() on a follower sees the latest commit');
	is($ldr->safe_psql('postgres',
		"SELECT count(*), count(*) FILTER (WHERE role = 'leader'), bool_and(voting), count(match_index) FROM chronicle.nodes"),
		'3|1|t|3', 'chronicle.nodes on the leader: three voters, one leader, match indexes');
	like($fol->safe_psql('postgres',
		"SELECT string_agg(address, ',' ORDER BY node_id) FROM chronicle.nodes"),
		qr/^127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+$/, 'chronicle.nodes lists the addresses');
}
$expect = '3001';

# ---------------------------------------------- a follower restarts and catches up

my ($l) = grep { (status($_))[0] eq 'leader' } @nodes;
my @followers = grep { $_ != $l } @nodes;
$followers[0]->stop;
$l->safe_psql('postgres', 'INSERT INTO ev SELECT 20000 + g, 0, g, 1 FROM generate_series(1, 500) g');
$followers[0]->start;
ok(wait_count('SELECT count(*) FROM ev', '3501', @nodes), 'a restarted follower catches up');

# ---------------------------------------------- leader SIGKILL

my $old_leader = $l;
my $before_term = (status($followers[1]))[2];
$old_leader->kill9;
my $t0 = time();
my $new_leader_id = wait_leader(@followers);
my $elapsed = time() - $t0;
ok(defined $new_leader_id, sprintf('a new leader (node %s) after the leader was killed, in %.1f s',
	$new_leader_id // '?', $elapsed));
ok((status($followers[1]))[2] > $before_term, 'in a higher term');

# writes resume through a surviving node; every acknowledged event is kept
my $acked = 0;
for my $g (1 .. 20)
{
	my ($rc) = $followers[0]->psql('postgres', "INSERT INTO ev VALUES (30000 + $g, 9, $g, 1)");
	$acked++ if $rc == 0;
}
is($acked, 20, 'every insert after the failover is acknowledged');
ok(wait_count('SELECT count(*) FROM ev', '3521', @followers), 'the survivors hold all 3521 events');

# the killed postmaster's children exit when they notice; then restart
usleep(1_500_000);
unlink($old_leader->data_dir . '/postmaster.pid');
my $started = 0;
for (1 .. 20)
{
	if ($old_leader->start(fail_ok => 1))
	{
		$started = 1;
		last;
	}
	usleep(500_000);
}
ok($started, 'the killed node restarts');
ok(wait_count('SELECT count(*) FROM ev', '3521', @nodes), 'the old leader rejoins and catches up');
@digests = map { $_->safe_psql('postgres', $digest_sql) } @nodes;
ok($digests[0] eq $digests[1] && $digests[1] eq $digests[2], 'all nodes identical after the rejoin');

# ---------------------------------------------- wrong secret, random bytes

my $impostor = $nodes[2];
$impostor->stop;
$impostor->append_conf('postgresql.conf', "chronicle_raft.cluster_secret = 'wrong'\n");
$impostor->start;
$nodes[0]->safe_psql('postgres', 'INSERT INTO ev VALUES (40000, 1, 1, 1)');
ok(wait_count('SELECT count(*) FROM ev', '3522', @nodes[0, 1]), 'the majority commits without the impostor');
usleep(500_000);
is($impostor->safe_psql('postgres', 'SELECT count(*) FROM ev'), '3521',
	'a node with the wrong secret receives nothing');
my $refused = slurp_file($nodes[0]->logfile) . slurp_file($nodes[1]->logfile) . slurp_file($impostor->logfile);
like($refused, qr/chronicle_raft (refused a connection|connection to node \d+ closed)/,
	'the refused handshake is logged');

for my $i (0 .. 1)
{
	my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$ports[$i]", Proto => 'tcp');
	if ($sock)
	{
		my $junk = join('', map { chr(int(rand(256))) } 1 .. 4096);
		print $sock "\xff\xff\xff\xff" . $junk;
		close $sock;
	}
}
$nodes[1]->safe_psql('postgres', 'INSERT INTO ev VALUES (40001, 2, 1, 1)');
ok(wait_count('SELECT count(*) FROM ev', '3523', @nodes[0, 1]), 'random bytes on the Raft ports change nothing');

# a node configured for another cluster id refuses this cluster's log
$impostor->stop;
$impostor->append_conf('postgresql.conf',
	"chronicle_raft.cluster_secret = 'chronicle test secret n'\nchronicle_raft.cluster_name = 'other'\n");
$impostor->start;
my $refused_log = 0;
for (1 .. 50)
{
	if (slurp_file($impostor->logfile) =~ /could not open the chronicle_raft log.*another cluster|cluster id/s)
	{
		$refused_log = 1;
		last;
	}
	usleep(100_000);
}
ok($refused_log, 'a node with another cluster id refuses to run on this cluster\'s log');
$nodes[0]->safe_psql('postgres', 'INSERT INTO ev VALUES (40002, 1, 2, 1)');
ok(wait_count('SELECT count(*) FROM ev', '3524', @nodes[0, 1]), 'the majority is not disturbed');

$impostor->stop;
$impostor->append_conf('postgresql.conf', "chronicle_raft.cluster_name = 'chronicle'\n");
$impostor->start;
ok(wait_count('SELECT count(*) FROM ev', '3524', @nodes), 'with the right secret the node catches up');

# ---------------------------------------------- minority partition

($l) = grep { (status($_))[0] eq 'leader' } @nodes;
@followers = grep { $_ != $l } @nodes;
$l->append_conf('postgresql.conf', "chronicle_raft.debug_isolate = on\n");
$l->reload;
my $new = wait_leader(@followers);
ok(defined $new, "the majority elects a new leader (node $new) around the isolated leader");
my ($rc, $out, $err) = $l->psql('postgres',
	"SET statement_timeout = '3s'; INSERT INTO ev VALUES (50000, 7, 1, 1)");
isnt($rc, 0, 'the isolated old leader cannot commit');
($rc, $out, $err) = $l->psql('postgres',
	"SET statement_timeout = '3s'; SET chronicle_raft.commit_wait = committed; INSERT INTO ev VALUES (50002, 7, 1, 1)");
isnt($rc, 0, 'nor with commit_wait = committed (it waits for a quorum, not for the proposal)');
$followers[0]->safe_psql('postgres', 'INSERT INTO ev VALUES (50001, 8, 1, 1)');
ok(wait_count('SELECT count(*) FROM ev', '3525', @followers), 'the majority keeps committing');
$followers[1]->safe_psql('postgres',
	'SET chronicle_raft.commit_wait = committed; INSERT INTO ev VALUES (50003, 8, 1, 1)');
$new = (grep { (status($_))[0] eq 'leader' } @followers)[0];
$new->safe_psql('postgres',
	'SET chronicle_raft.commit_wait = committed; INSERT INTO ev VALUES (50004, 8, 1, 1)');
ok(wait_count('SELECT count(*) FROM ev', '3527', @followers),
	'commit_wait = committed commits through a follower and through the leader');
$l->append_conf('postgresql.conf', "chronicle_raft.debug_isolate = off\n");
$l->reload;
ok(wait_count('SELECT count(*) FROM ev', '3527', @nodes), 'after healing the old leader catches up');
is($l->safe_psql('postgres', 'SELECT count(*) FROM ev WHERE ts IN (50000, 50002)'), '0',
	'the writes refused during the partition never appear');
isnt((status($l))[0], 'leader', 'the healed old leader is a follower');

# ---------------------------------------------- a commit forwarded to a leader that stops

($l) = grep { (status($_))[0] eq 'leader' } @nodes;
@followers = grep { $_ != $l } @nodes;
my $stopped = $l->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'chronicle_raft'");
kill 'STOP', $stopped;
my $t_fwd = time();
($rc, $out, $err) = $followers[0]->psql('postgres', 'INSERT INTO ev VALUES (60000, 6, 6, 6)');
my $dt_fwd = time() - $t_fwd;
isnt($rc, 0, 'a commit forwarded to a leader that stopped answering fails');
like($err, qr/leader changed before the events were committed/, 'with a definite "not committed"');
ok($dt_fwd < 10, sprintf('within %.1f s (after a new election, not a timeout)', $dt_fwd));
kill 'CONT', $stopped;
ok(wait_count('SELECT count(*) FROM ev WHERE ts = 60000', '0', @nodes), 'and it never appears');

# ---------------------------------------------- leader SIGSTOP / SIGCONT

($l) = grep { (status($_))[0] eq 'leader' } @nodes;
@followers = grep { $_ != $l } @nodes;
my $wpid = $l->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'chronicle_raft'");
kill 'STOP', $wpid;
$new = wait_leader(@followers);
ok(defined $new, "a stopped leader is replaced (node $new)");
$followers[1]->safe_psql('postgres', 'INSERT INTO ev VALUES (50002, 9, 1, 1)');
ok(wait_count('SELECT count(*) FROM ev', '3528', @followers), 'writes go on without it');
kill 'CONT', $wpid;
ok(wait_count('SELECT count(*) FROM ev', '3528', @nodes), 'the resumed old leader catches up');
my $deadline = time() + 10;
usleep(200_000) while (status($l))[0] eq 'leader' && time() < $deadline;
isnt((status($l))[0], 'leader', 'and steps down');
@digests = map { $_->safe_psql('postgres', $digest_sql) } @nodes;
ok($digests[0] eq $digests[1] && $digests[1] eq $digests[2], 'all nodes identical at the end');

# ---------------------------------------------- a session terminated in its commit wait
#
# The leader proposes a batch that cannot commit (both followers' workers
# stopped) and the waiting session is terminated.  The events may still
# commit once the followers return, so the session must end with 08007, not
# with a plain FATAL that a client would take for "not committed".

($l) = grep { (status($_))[0] eq 'leader' } @nodes;
@followers = grep { $_ != $l } @nodes;
my @frozen = map {
	$_->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'chronicle_raft'")
} @followers;
my $last_before = $l->safe_psql('postgres', 'SELECT last_log_index FROM chronicle.status()');
kill 'STOP', @frozen;
my $term_err = "$PostgreSQL::Test::Utils::tmp_check/terminated_commit.err";
my $cpid = psql_in_background($l, 'INSERT INTO ev VALUES (61000, 6, 6, 6)', $term_err);
my $waiter;
ok(wait_for(sub {
	$waiter = $l->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE query LIKE 'INSERT INTO ev VALUES (61000%' AND wait_event_type = 'Extension'");
	$waiter ne '' && $l->safe_psql('postgres', 'SELECT last_log_index FROM chronicle.status()') > $last_before;
}), 'the batch is proposed and its session waits for a quorum');
$l->safe_psql('postgres', "SELECT pg_terminate_backend($waiter)");
waitpid($cpid, 0);
my $term_out = slurp_file($term_err);
like($term_out, qr/FATAL:  08007: terminating connection while waiting for the replicated commit/,
	'the terminated session ends with SQLSTATE 08007');
like($term_out, qr/Check whether the events are present before retrying/, 'with a hint');
kill 'CONT', @frozen;
ok(defined wait_leader(@nodes), 'the cluster has a leader again');
my @seen = map { $_->safe_psql('postgres', 'SELECT chronicle.read_barrier(); SELECT count(*) FROM ev WHERE ts = 61000') } @nodes;
s/.*\n// for @seen;
note("the terminated session's event is " . ($seen[0] eq '1' ? 'committed' : 'not committed'));
ok($seen[0] =~ /^[01]$/ && $seen[0] eq $seen[1] && $seen[1] eq $seen[2],
	'every node agrees on its outcome, and it is there at most once');

$_->stop for @nodes;
done_testing();
